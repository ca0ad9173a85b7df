//! The window: what one stream remembers of its recent packets, to find
//! the ones that repeat.
//!
//! Two tables, both of fixed size, set-associative (a digest's bucket is
//! a few ways in one or two cache lines; nothing else is looked at):
//!
//! - the **recent** packets: [`RECENT`] digests with the time of their
//!   last copy, in buckets of 4 (one cache line), the least recently
//!   seen of a bucket replaced by a new digest. Every packet looks here
//!   once; nothing else is stored for a packet seen once.
//! - the **repeating** packets: [`RUNS`] entries in buckets of 8, for
//!   digests seen at least twice, each with its copies, the time of the
//!   first and last, and a sample of the packet's bytes ([`SAMPLE`]
//!   bytes of its record, taken at the second copy, for the decode line).
//!
//! # When copies count
//!
//! A second copy that comes within [`GAP_NS`] of the first, while the
//! first is still in the window, moves the packet to the repeating table.
//! There its copies count as long as each comes within [`GAP_NS`] of the
//! one before (a longer gap starts the count again), until they reach
//! MIN: from then on the packet *repeats*, and every later copy counts,
//! however far apart, for as long as the packet stays in the table.
//!
//! So a copy farther from the one before than [`GAP_NS`], or than the
//! window's reach, is not seen as a copy until the packet is known to
//! repeat: until then such a copy counts as a new packet. The window's
//! reach is in packets of the stream: a digest leaves the window when 4
//! newer ones have come into its bucket, so with k other packets between
//! two copies the first is gone with the chance that 4 or more of k land
//! in one given bucket of [`RECENT`]/4: 2% for k = [`RECENT`]/4 (4,096
//! packets, 4 ms of a stream at 1 Mpps), 57% for k = [`RECENT`]. A packet
//! stuck in a transmit path repeats thousands of times a second, a packet
//! in a routing loop every few microseconds: both well within.
//!
//! Ordinary traffic does not reach MIN: what repeats byte for byte on a
//! normal machine repeats seconds apart (ARP and neighbour solicitations
//! retried every second, periodic protocols) or a few times at most
//! (see [`super::DEFAULT_MIN`]).
//!
//! # Eviction
//!
//! The repeating table never lets ordinary traffic push out a packet
//! that repeats: a packet seen once never gets there. A new entry takes,
//! in this order, a free way; a count that stopped before MIN (its last
//! copy more than [`GAP_NS`] ago), the oldest first; a packet that
//! repeated but has stopped (last copy more than [`GAP_NS`] ago), the one
//! with the fewest copies first: it leaves the list (its copies still
//! count in the stream's totals: [`super::Totals::unlisted`]); a
//! count still under way, the one with the fewest copies first. A packet
//! still repeating is never evicted; when all 8 ways of a bucket hold
//! one, a new packet is not counted
//! ([`super::Totals::untracked`]). In a routing loop every packet
//! repeats for microseconds, so ways keep freeing; the list then keeps
//! about the packets with the most copies.
//!
//! # Memory
//!
//! Fixed, per stream: [`RECENT`] x 16 bytes (256 KiB), [`RUNS`] x 48
//! bytes (24 KiB) and the samples, [`RUNS`] x [`SAMPLE`] bytes (96 KiB,
//! allocated at the first repeat): 376 KiB at most.

use super::digest::Digester;
use super::{Listed, StreamRepeats, Totals};
use crate::packet::Frame;
use crate::packet::LinkType;
use crate::packet::Packet;
use crate::sys::cache::{prefetch, prefetch_write, LINE};

/// Digests in the window of recent packets (by default).
pub const RECENT: usize = 16_384;
/// Ways of a bucket of the window: one cache line of digests and times.
const RECENT_WAYS: usize = 4;
/// Entries of the table of repeating packets.
pub const RUNS: usize = 512;
/// Ways of a bucket of repeating packets: its digests fill a cache line.
const RUN_WAYS: usize = 8;
/// The longest gap between two copies that still continues a count, in
/// nanoseconds: 100 ms. Ordinary periodic traffic repeats a second or
/// more apart (ARP and neighbour solicitation retries, VRRP, LACP,
/// spanning tree), and some of it in fractions of a second (BFD at its
/// common 300 ms, mDNS probes 250 ms apart); a stuck packet repeats in
/// microseconds, a packet in a routing loop once per round trip of the
/// loop: microseconds in a rack, milliseconds across a network (a loop
/// whose round trip is longer, across continents, is not found).
pub const GAP_NS: u64 = 100_000_000;
/// Bytes of a repeating packet kept for its decode: its record as the
/// pcap output writes it (a stripped VLAN tag put back, the LINUX_SLL2
/// header made), cut to this. Enough for the link header with two VLAN
/// tags or the SLL2 header, an IPv6 header, about 100 bytes of extension
/// headers and a TCP header.
pub const SAMPLE: usize = 192;

/// A bucket of the window.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct RecentBucket {
    digest: [u64; RECENT_WAYS],
    /// Time of the last copy (ns since the epoch); 0 in a free way, so
    /// a free way is the first taken.
    last: [u64; RECENT_WAYS],
}

/// The digests of a bucket of the repeating table (0: free).
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct RunDigests([u64; RUN_WAYS]);

/// A repeating (or maybe repeating) packet.
#[derive(Clone, Copy, Debug, Default)]
struct Run {
    copies: u64,
    /// ns since the epoch.
    first: u64,
    last: u64,
    /// `copies` when [`RepeatWindow::interval_top`] last asked.
    base: u64,
    /// Length on the wire of the sample's record.
    len: u32,
    /// Bytes of the sample.
    sample_len: u32,
}

/// One stream's window. Owned by its worker: no locks, no allocation per
/// packet (one, of the samples, at the first packet that repeats).
pub struct RepeatWindow {
    link: LinkType,
    min: u64,
    digester: Digester,
    recent: Box<[RecentBucket]>,
    run_digests: Box<[RunDigests]>,
    runs: Box<[[Run; RUN_WAYS]]>,
    /// `RUNS` samples of `SAMPLE` bytes, way by way; empty until needed.
    samples: Vec<u8>,
    tally: Totals,
}

impl std::fmt::Debug for RepeatWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepeatWindow")
            .field("link", &self.link)
            .field("min", &self.min)
            .field("recent", &(self.recent.len() * RECENT_WAYS))
            .field("tally", &self.tally)
            .finish_non_exhaustive()
    }
}

impl RepeatWindow {
    /// The window of a stream of a capture of link type `link`, where a
    /// packet repeats at `min` copies (at least 2).
    pub fn new(link: LinkType, min: u64) -> RepeatWindow {
        RepeatWindow::with_sizes(link, min, RECENT, RUNS, Digester::new())
    }

    /// With other table sizes (rounded up to whole buckets, a power of
    /// two of them) and digests: for tests.
    pub(crate) fn with_sizes(
        link: LinkType,
        min: u64,
        recent: usize,
        runs: usize,
        digester: Digester,
    ) -> RepeatWindow {
        let recent = recent.div_ceil(RECENT_WAYS).next_power_of_two();
        let runs = runs.div_ceil(RUN_WAYS).next_power_of_two();
        RepeatWindow {
            link,
            min: min.max(2),
            digester,
            recent: vec![RecentBucket::default(); recent].into_boxed_slice(),
            run_digests: vec![RunDigests::default(); runs].into_boxed_slice(),
            runs: vec![[Run::default(); RUN_WAYS]; runs].into_boxed_slice(),
            samples: Vec::new(),
            tally: Totals::default(),
        }
    }

    /// The MIN in force.
    #[cfg(test)]
    pub fn min(&self) -> u64 {
        self.min
    }

    /// Looks at one packet of the stream. Returns how many copies became
    /// repeated copies with it: 0 for most packets; 1 for another copy of
    /// a packet known to repeat; MIN for the copy that makes a packet
    /// reach MIN (its earlier copies count from then on); for `--flows`,
    /// to count each flow's repeated copies.
    /// (Workers use [`RepeatWindow::record_digest`], the digest computed
    /// ahead.)
    #[cfg(test)]
    #[inline]
    pub fn record(&mut self, p: &Packet<'_>) -> u64 {
        let h = self.digester.digest(self.link, p);
        self.record_digest(p, h)
    }

    /// Before a ring block's `packets` packets are recorded: asks the cpu
    /// to bring in the repeating table's digests (4 KiB), where every
    /// packet looks first.
    #[inline]
    pub fn warm(&self, packets: usize) {
        let bytes = std::mem::size_of_val(&*self.run_digests);
        if bytes / LINE <= packets {
            let p: *const u8 = self.run_digests.as_ptr().cast();
            let mut off = 0;
            while off < bytes {
                prefetch(p.wrapping_add(off));
                off += LINE;
            }
        }
    }

    /// What computes digests and asks for their buckets ahead of
    /// [`RepeatWindow::record_digest`] (see [`Ahead`]).
    pub fn ahead(&self) -> Ahead {
        Ahead {
            link: self.link,
            digester: self.digester.clone(),
            recent: self.recent.as_ptr().cast(),
            recent_mask: self.recent.len() - 1,
        }
    }

    /// As [`RepeatWindow::record`], `h` being `p`'s digest (from
    /// [`Ahead::digest`]).
    #[inline]
    pub fn record_digest(&mut self, p: &Packet<'_>, h: u64) -> u64 {
        self.tally.packets += 1;
        let now = u64::from(p.sec) * 1_000_000_000 + u64::from(p.nsec);
        // Different bits of the digest pick the bucket of each table, so
        // digests that share a bucket of one are spread over the other.
        let b = (h >> 40) as usize & (self.run_digests.len() - 1);
        if let Some(w) = way_of(&self.run_digests[b].0, h) {
            return self.hit(b, w, now);
        }
        let r = recent_bucket(h, self.recent.len() - 1);
        let bucket = &mut self.recent[r];
        let Some(w) = way_of(&bucket.digest, h) else {
            // Seen for the first time (in the window): it takes the way
            // whose packet was seen the longest ago.
            let mut oldest = 0;
            for w in 1..RECENT_WAYS {
                if bucket.last[w] < bucket.last[oldest] {
                    oldest = w;
                }
            }
            bucket.digest[oldest] = h;
            bucket.last[oldest] = now;
            return 0;
        };
        let before = bucket.last[w];
        if now.saturating_sub(before) > GAP_NS {
            bucket.last[w] = now;
            return 0;
        }
        match self.promote(b, h, before, now, p) {
            Some(repeated) => {
                let bucket = &mut self.recent[r];
                bucket.digest[w] = 0;
                bucket.last[w] = 0;
                repeated
            }
            None => {
                self.recent[r].last[w] = now;
                0
            }
        }
    }

    /// Another copy of the packet in way `w` of repeating bucket `b`.
    #[inline]
    fn hit(&mut self, b: usize, w: usize, now: u64) -> u64 {
        let min = self.min;
        let run = &mut self.runs[b][w];
        if run.copies >= min {
            run.copies += 1;
            run.last = now;
            self.tally.repeated += 1;
            return 1;
        }
        if now.saturating_sub(run.last) > GAP_NS {
            // The count stopped short: it starts again.
            run.copies = 1;
            run.first = now;
            run.last = now;
            return 0;
        }
        run.copies += 1;
        run.last = now;
        if run.copies == min {
            self.tally.repeated += min;
            self.tally.repeating += 1;
            return min;
        }
        0
    }

    /// A second copy (the first at `first`): the packet gets an entry in
    /// the repeating table, with a sample. None if there is no room.
    #[cold]
    fn promote(&mut self, b: usize, h: u64, first: u64, now: u64, p: &Packet<'_>) -> Option<u64> {
        let min = self.min;
        let w = self.victim(b, now)?;
        let old = self.runs[b][w];
        if self.run_digests[b].0[w] != 0 && old.copies >= min {
            self.tally.unlisted += 1;
            self.tally.unlisted_copies += old.copies;
        }
        if self.samples.is_empty() {
            self.samples = vec![0; self.runs.len() * RUN_WAYS * SAMPLE];
        }
        let at = (b * RUN_WAYS + w) * SAMPLE;
        let frame = Frame::new(self.link, SAMPLE as u32, p);
        let mut n = 0;
        for part in frame.parts() {
            let take = part.len().min(SAMPLE - n);
            self.samples[at + n..at + n + take].copy_from_slice(&part[..take]);
            n += take;
        }
        self.run_digests[b].0[w] = h;
        self.runs[b][w] = Run {
            copies: 2,
            first,
            last: now,
            base: 0,
            len: frame.orig_len(),
            sample_len: n as u32,
        };
        if min == 2 {
            self.tally.repeated += 2;
            self.tally.repeating += 1;
            return Some(2);
        }
        Some(0)
    }

    /// The way of bucket `b` a new entry takes (see the module's
    /// Eviction), if any.
    fn victim(&mut self, b: usize, now: u64) -> Option<usize> {
        let mut best: Option<(usize, (u8, u64))> = None;
        for w in 0..RUN_WAYS {
            let run = &self.runs[b][w];
            let stopped = now.saturating_sub(run.last) > GAP_NS;
            let rank = match (
                self.run_digests[b].0[w] == 0,
                run.copies >= self.min,
                stopped,
            ) {
                (true, _, _) => (0, 0),
                (false, false, true) => (1, run.last),
                (false, true, true) => (2, run.copies),
                (false, false, false) => (3, run.copies),
                (false, true, false) => continue,
            };
            if best.map_or(true, |(_, r)| rank < r) {
                best = Some((w, rank));
            }
        }
        if best.is_none() {
            self.tally.untracked += 1;
        }
        best.map(|(w, _)| w)
    }

    /// Copies of repeating packets so far (for a rate of repeated copies:
    /// the live view's REPEAT/S).
    pub fn repeated(&self) -> u64 {
        self.tally.repeated
    }

    /// Packets recorded so far.
    #[cfg(test)]
    pub fn packets(&self) -> u64 {
        self.tally.packets
    }

    /// The repeating packet with the most copies since the last call (the
    /// live view's interval), and those copies; the interval starts anew.
    /// A pass over the repeating table: once per interval, never per
    /// packet.
    pub fn interval_top(&mut self) -> Option<(u64, Listed)> {
        let mut top: Option<(u64, usize, usize)> = None;
        for b in 0..self.runs.len() {
            for w in 0..RUN_WAYS {
                let run = &mut self.runs[b][w];
                if self.run_digests[b].0[w] == 0 || run.copies < self.min {
                    continue;
                }
                let n = run.copies - run.base;
                run.base = run.copies;
                if n > 0 && top.map_or(true, |(t, _, _)| n > t) {
                    top = Some((n, b, w));
                }
            }
        }
        top.map(|(n, b, w)| (n, self.listed(b, w)))
    }

    /// Entry `w` of bucket `b` as the stream's result holds it.
    fn listed(&self, b: usize, w: usize) -> Listed {
        let run = &self.runs[b][w];
        let at = (b * RUN_WAYS + w) * SAMPLE;
        Listed {
            digest: self.run_digests[b].0[w],
            copies: run.copies,
            first: split_ns(run.first),
            last: split_ns(run.last),
            len: run.len,
            sample: self.samples[at..at + run.sample_len as usize].to_vec(),
        }
    }

    /// What the stream found: its repeating packets and totals. The
    /// window is empty afterwards (as new, with the same MIN).
    pub fn take(&mut self) -> StreamRepeats {
        let mut listed = Vec::new();
        for b in 0..self.runs.len() {
            for w in 0..RUN_WAYS {
                if self.run_digests[b].0[w] != 0 && self.runs[b][w].copies >= self.min {
                    listed.push(self.listed(b, w));
                }
            }
        }
        let totals = std::mem::take(&mut self.tally);
        self.recent.fill(RecentBucket::default());
        self.run_digests.fill(RunDigests::default());
        self.runs.fill([Run::default(); RUN_WAYS]);
        StreamRepeats { totals, listed }
    }
}

/// The bucket of the window of recent packets of digest `h`.
#[inline(always)]
fn recent_bucket(h: u64, mask: usize) -> usize {
    h as usize & mask
}

/// A window's digests, computed a few packets before the window records
/// them, each packet's bucket of recent packets asked for then: by the
/// time the packet is recorded its bucket has come in from memory (a
/// block's packets visit the buckets in no order, most of them once).
/// Holds no borrow of the window: only the address of its table, for
/// the cpu's hints.
#[derive(Clone, Debug)]
pub struct Ahead {
    link: LinkType,
    digester: Digester,
    recent: *const u8,
    recent_mask: usize,
}

impl Ahead {
    /// `p`'s digest; asks for its bucket of recent packets.
    #[inline(always)]
    pub fn digest(&self, p: &Packet<'_>) -> u64 {
        let h = self.digester.digest(self.link, p);
        let at = recent_bucket(h, self.recent_mask) * std::mem::size_of::<RecentBucket>();
        prefetch_write(self.recent.wrapping_add(at));
        h
    }
}

/// Packets per batch of [`Digested`]: a packet's bucket is asked for up
/// to this many digests and records before the packet is recorded (a few
/// hundred ns of work covers a memory access; 4, 8 and 16 alike in the
/// micro-benchmark).
const AHEAD: usize = 8;

/// A block's packets, each with its digest when there is a window; with
/// none, the packets as they come, and 0.
///
/// In batches of [`AHEAD`]: the batch's digests are computed first, each
/// packet's bucket asked for ([`Ahead::digest`]), then its packets are
/// handed out: by a packet's turn its bucket has had the rest of the
/// batch's digests and the records before it to come in. (A queue
/// refilled packet by packet, moving each packet in and out of an
/// `Option`, cost 3 ns a packet more in the micro-benchmark.)
pub struct Digested<'p, I> {
    packets: I,
    ahead: Option<Ahead>,
    batch: [(Packet<'p>, u64); AHEAD],
    at: usize,
    len: usize,
}

impl<'p, I: Iterator<Item = Packet<'p>>> Digested<'p, I> {
    /// `packets`, digested for `window` if there is one.
    pub fn new(packets: I, window: Option<&RepeatWindow>) -> Digested<'p, I> {
        let none = Packet {
            sec: 0,
            nsec: 0,
            len: 0,
            data: &[],
            net_offset: 0,
            ifindex: 0,
            hatype: 0,
            pkttype: 0,
            protocol: 0,
            halen: 0,
            addr: [0; 8],
            vlan: None,
            hash: 0,
        };
        Digested {
            packets,
            ahead: window.map(RepeatWindow::ahead),
            batch: [(none, 0); AHEAD],
            at: 0,
            len: 0,
        }
    }
}

impl<'p, I: Iterator<Item = Packet<'p>>> Iterator for Digested<'p, I> {
    type Item = (Packet<'p>, u64);

    // Into the consumers' loop (see `sys::ring::Packets::next`).
    #[inline(always)]
    fn next(&mut self) -> Option<(Packet<'p>, u64)> {
        let Some(ahead) = &self.ahead else {
            return self.packets.next().map(|p| (p, 0));
        };
        if self.at == self.len {
            self.at = 0;
            self.len = 0;
            while self.len < AHEAD {
                let Some(p) = self.packets.next() else { break };
                self.batch[self.len] = (p, ahead.digest(&p));
                self.len += 1;
            }
            if self.len == 0 {
                return None;
            }
        }
        let next = self.batch[self.at];
        self.at += 1;
        Some(next)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (lo, hi) = self.packets.size_hint();
        let held = self.len - self.at;
        (lo + held, hi.map(|h| h + held))
    }
}

/// The way of `ways` holding `h`. A digest is never 0, so free ways
/// never match.
#[inline(always)]
fn way_of<const N: usize>(ways: &[u64; N], h: u64) -> Option<usize> {
    ways.iter().position(|&d| d == h)
}

/// (seconds, nanoseconds) of a time in ns since the epoch.
fn split_ns(ns: u64) -> (u32, u32) {
    ((ns / 1_000_000_000) as u32, (ns % 1_000_000_000) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    #[test]
    fn memory_is_as_documented() {
        // The window: a digest and a time per packet.
        assert_eq!(size_of::<RecentBucket>(), RECENT_WAYS * 16);
        assert_eq!(RECENT * 16, 256 << 10);
        // The repeating table: a digest and its counts and times.
        assert_eq!(size_of::<RunDigests>(), RUN_WAYS * 8);
        assert_eq!(8 + size_of::<Run>(), 48);
        assert_eq!(RUNS * 48, 24 << 10);
        assert_eq!(RUNS * SAMPLE, 96 << 10);
        let w = RepeatWindow::new(LinkType::Ethernet, 10);
        assert_eq!(w.recent.len() * RECENT_WAYS, RECENT);
        assert_eq!(w.runs.len() * RUN_WAYS, RUNS);
        assert!(w.samples.is_empty());
    }
}
