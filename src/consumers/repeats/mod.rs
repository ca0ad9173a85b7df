//! Repeating packets for `--repeats`: packets whose bytes come again and
//! again on one stream, as a packet stuck in a transmit path or circling
//! in a routing loop does.
//!
//! Each worker owns a [`RepeatWindow`] for its stream and calls
//! [`RepeatWindow::record_digest`] for every packet it takes, the digest
//! computed a few packets ahead and the packet's bucket asked for then
//! ([`window::Digested`]), the repeating table's digests asked for when a
//! ring block comes ([`RepeatWindow::warm`]) (no locks, no allocation per
//! packet); at the end [`RepeatWindow::take`] gives the
//! stream's [`StreamRepeats`], the main thread [`merge`]s them into
//! [`Repeats`]: the repeating packets, most copies first, each with its
//! copies per stream, and each stream's totals. [`decode::summary`] is
//! the one-line decode of a packet's sample, in tcpdump's style.
//!
//! Two copies are the same packet when their [`digest`]s are equal: the
//! link, network and transport headers and the first bytes of payload,
//! with what a router changes left out (the TTL, hop limit, IPv4 header
//! checksum, ECN bits, and the MAC addresses of IP packets). A packet
//! *repeats* once MIN copies of it came on one stream, each within
//! [`window::GAP_NS`] (100 ms) of the one before and within the window's
//! reach; from then on every copy of it on that stream counts. See
//! [`window`] for the window's size and reach, its memory (376 KiB per
//! stream at most) and what it evicts.
//!
//! Streams are known here by a number the caller picks, as in
//! [`crate::consumers::flows`].
//!
//! - [`digest`]: what is compared
//! - [`window`]: one stream's tables
//! - [`decode`]: the decode line
//!
//! # Cost
//!
//! Per packet, measured with the ignored tests `per_packet_cost` and
//! `worker_repeats_per_packet_cost` (`cargo test --release --lib
//! per_packet_cost -- --ignored --nocapture`; the fastest of many short
//! passes, on a 2-cpu VM shared with other work), 64-byte UDP frames,
//! every one new to the window (the common case):
//!
//! - [`RepeatWindow::record`]: 16 to 23 ns, of which the digest 8 to 10
//!   ns; the flow table's `record` on the same packets in the same runs:
//!   15 to 19 ns;
//! - a copy of a packet that repeats: 10 to 16 ns;
//! - as a worker pays it (`Consumers::take`, the window alone, walking
//!   ring blocks of 3,276 such frames): 23 ns; recorded one by one as
//!   they come, 21 ns;
//! - the same with the window's tables cold at each block (EVICT=1: 8 MiB
//!   written elsewhere between blocks, as the kernel's work on a flood
//!   does between a worker's runs): 23 to 24 ns as a worker takes them,
//!   the digests of a batch of 8 packets computed and each one's bucket
//!   asked for before the batch is recorded ([`window::Digested`]); 27
//!   to 28 ns recorded as they come. Before the window had a loop of its
//!   own in `Consumers::take`, the batches, and the digest inlined there,
//!   29 ns.
//!
//! The window's tables (256 KiB and 4 KiB of digests) fit a cpu's
//! second-level cache but leave it while the kernel works on a flood:
//! every new packet visits a random bucket of the 256 KiB, so workers
//! ask for each packet's bucket ahead, and for the 4 KiB of the
//! repeating table's digests when a ring block comes. The digest reads
//! the packet's first 128 bytes, which the ring walk has already asked
//! for. Tried and not kept: a window of half the memory, 8 ways a cache
//! line of a 40-bit tag and a 24-bit time in µs (same reach), cost 2.5
//! ns a packet more in the micro-benchmark (the tags' and times'
//! arithmetic) and was no cheaper on the benchmark's flood; 128 KiB
//! windows of 4 ways neither; batches of 4 or 16 as 8.

pub mod decode;
pub mod digest;
pub mod json;
pub mod window;

pub use window::RepeatWindow;

use crate::packet::LinkType;

/// The default MIN: copies that make a packet a repeating one.
///
/// What matters is how ordinary traffic repeats within 100 ms gaps
/// ([`window::GAP_NS`]), byte for byte but for [`digest`]'s exceptions.
/// Measured (`scripts/repeats-traffic.sh` makes the captures, the
/// ignored test `repeats_in_a_capture` feeds one through a window and
/// prints what each MIN from 2 to 12 would report): two namespaces on a
/// veth, each direction rate-limited (tbf) with a short queue so that it
/// drops; four TCP transfers of 26 MB, IPv4 and IPv6 at once (about
/// 7,500 retransmissions and 13,000 to 15,000 duplicate ACKs by
/// tshark's count), pings every 200 ms both ways, pings to an address
/// nobody has (ARP and neighbour solicitations retried every second),
/// MLD reports; about 90,000 packets captured by tcpdump on one end.
/// Nothing repeats, in two runs, even at MIN 2: Linux's retransmissions
/// carry a new timestamp option (and, over IPv4, a new IP ID), its
/// duplicate ACKs new SACK blocks or timestamps, and ARP and neighbour
/// solicitations come a second apart. Known small bursts elsewhere: a
/// packet routed back out of the interface it came in on is seen twice,
/// an MLD report is retried once, SSDP sends its announcements two or
/// three times, keepalived 5 gratuitous ARPs back to back at a failover.
///
/// A routing loop, on the other hand, puts a packet sent with a TTL of 64
/// on each link of a loop of two routers 63 times (the script's loop
/// capture: exactly 63 copies of each ping), of three routers 21 times,
/// of six 10; a stuck packet repeats thousands of times. 10 is twice the
/// largest ordinary burst and still catches loops of up to six routers.
///
/// Not ordinary, and found: a receiver with SACK and timestamps off
/// (both are on by default in Linux, Windows and macOS) sends identical
/// duplicate ACKs over IPv6 (which has no IP ID), one per segment that
/// arrives after a loss. The same transfers with `net.ipv4.tcp_sack=0
/// net.ipv4.tcp_timestamps=0` showed 135 to 147 such ACKs repeating 10
/// to 606 times at MIN 10.
pub const DEFAULT_MIN: u64 = 10;

/// A repeating packet of one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Its digest (the same on every stream of a capture).
    pub digest: u64,
    /// Its copies on the stream: those of the count that reached MIN and
    /// every one after.
    pub copies: u64,
    /// Time of the first and last of those copies (sec, nsec).
    pub first: (u32, u32),
    pub last: (u32, u32),
    /// The wire length of the sample's record.
    pub len: u32,
    /// The start of one copy's record, as the pcap output writes it (at
    /// most [`window::SAMPLE`] bytes): for [`decode::summary`].
    pub sample: Vec<u8>,
}

/// One stream's totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Packets recorded.
    pub packets: u64,
    /// Of those, copies of repeating packets (listed or not).
    pub repeated: u64,
    /// Times a packet reached MIN (a packet evicted from the list that
    /// then repeats again counts twice).
    pub repeating: u64,
    /// Repeating packets that left the list to make room (see
    /// [`window`]'s Eviction), and their copies until then.
    pub unlisted: u64,
    pub unlisted_copies: u64,
    /// Second copies that found no room in the repeating table (every
    /// way of their bucket held a packet repeating at the time).
    pub untracked: u64,
}

impl Totals {
    /// Repeated copies in percent of the stream's packets.
    pub fn percent(&self) -> f64 {
        if self.packets == 0 {
            return 0.0;
        }
        self.repeated as f64 * 100.0 / self.packets as f64
    }
}

/// What one stream found: [`RepeatWindow::take`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamRepeats {
    pub totals: Totals,
    /// Its repeating packets, in no particular order.
    pub listed: Vec<Listed>,
}

/// A repeating packet, over all streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repeat {
    pub digest: u64,
    /// Copies on all streams.
    pub copies: u64,
    /// (stream, copies) of each stream it repeated on, in the order the
    /// streams were merged.
    pub streams: Vec<(u32, u64)>,
    /// Time of the first and last copy (sec, nsec), over all streams.
    pub first: (u32, u32),
    pub last: (u32, u32),
    /// The wire length of the sample's record.
    pub len: u32,
    /// The record of its earliest copy (see [`Listed::sample`]).
    pub sample: Vec<u8>,
}

impl Repeat {
    /// Copies per second between the first and the last; None when they
    /// came within the same nanosecond. N copies span N - 1 gaps: the
    /// first copy opens the span, so 5 copies 50 ms apart are 20 a
    /// second (counting it, the rate read 25).
    pub fn rate(&self) -> Option<f64> {
        let ns = |(s, n): (u32, u32)| u64::from(s) * 1_000_000_000 + u64::from(n);
        let span = ns(self.last).saturating_sub(ns(self.first));
        (span > 0).then(|| self.copies.saturating_sub(1) as f64 * 1e9 / span as f64)
    }

    /// The decode line of its sample, from a capture of link type `link`.
    pub fn summary(&self, link: LinkType) -> String {
        decode::summary(link, &self.sample)
    }
}

/// All streams' repeating packets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repeats {
    /// Most copies first (then the earliest first, then by digest).
    pub packets: Vec<Repeat>,
    /// (stream, totals) in the order they were merged.
    pub streams: Vec<(u32, Totals)>,
}

impl Repeats {
    /// Nothing repeated on any stream: nothing to print.
    pub fn is_empty(&self) -> bool {
        self.streams.iter().all(|(_, t)| t.repeated == 0)
    }

    /// Repeating packets on `stream`: those listed there, and those that
    /// left its list to make room.
    pub fn repeating_on(&self, stream: u32) -> u64 {
        let listed = self
            .packets
            .iter()
            .filter(|r| r.streams.iter().any(|&(s, _)| s == stream))
            .count() as u64;
        let unlisted = self
            .streams
            .iter()
            .find(|(s, _)| *s == stream)
            .map_or(0, |(_, t)| t.unlisted);
        listed + unlisted
    }
}

/// Merges the streams' results, given in stream order, by digest.
pub fn merge(streams: Vec<(u32, StreamRepeats)>) -> Repeats {
    let mut totals = Vec::with_capacity(streams.len());
    let mut all: Vec<(u32, Listed)> = Vec::new();
    for (stream, s) in streams {
        totals.push((stream, s.totals));
        all.extend(s.listed.into_iter().map(|l| (stream, l)));
    }
    // Stream order (the stable sort keeps it) within a digest.
    all.sort_by_key(|(_, l)| l.digest);
    let mut packets: Vec<Repeat> = Vec::new();
    for (stream, l) in all {
        match packets.last_mut() {
            Some(r) if r.digest == l.digest => {
                r.copies += l.copies;
                r.streams.push((stream, l.copies));
                if l.first < r.first {
                    r.first = l.first;
                    r.len = l.len;
                    r.sample = l.sample;
                }
                r.last = r.last.max(l.last);
            }
            _ => packets.push(Repeat {
                digest: l.digest,
                copies: l.copies,
                streams: vec![(stream, l.copies)],
                first: l.first,
                last: l.last,
                len: l.len,
                sample: l.sample,
            }),
        }
    }
    packets.sort_by(|a, b| {
        b.copies
            .cmp(&a.copies)
            .then(a.first.cmp(&b.first))
            .then(a.digest.cmp(&b.digest))
    });
    Repeats {
        packets,
        streams: totals,
    }
}

#[cfg(test)]
mod frames;
#[cfg(test)]
mod tests;
