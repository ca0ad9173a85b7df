//! What a worker does with the packets it takes from its ring. Each
//! consumer is switched on by an option: the stream's pcap files (`-w`),
//! its share of the merged pcapng file (`--pcapng -w`), its flow table
//! (`--flows`), its repeat window (`--repeats`), its byte counter
//! (`--live`). A worker whose consumers are all off only counts whole
//! blocks and never looks at a packet.

pub mod destination;
pub mod files;
pub mod flows;
pub mod merged;
pub mod outputs;
pub mod repeats;
pub mod rotate;

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::consumers::files::{StreamFile, Written};
use crate::consumers::flows::FlowTable;
use crate::consumers::merged::file::EpbBatch;
use crate::consumers::merged::merge::Feed;
use crate::consumers::repeats::window::Digested;
use crate::consumers::repeats::{RepeatWindow, StreamRepeats};
use crate::format::pcapng::PacketInfo;
use crate::options::Precision;
use crate::packet::Frame;
use crate::packet::LinkType;
use crate::packet::Packet;

/// The line after a failed write: `1281 captured packets on cpu0 are
/// not in the file`, `1 captured packet on cpu0 is` (a line the original
/// did not print, so singular for one); `place` empty for the merged
/// file.
pub fn not_in_file_line(n: u64, place: &str) -> String {
    let (what, verb) = if n == 1 {
        ("packet", "is")
    } else {
        ("packets", "are")
    };
    let place = if place.is_empty() {
        String::new()
    } else {
        format!(" {place}")
    };
    format!("{n} captured {what}{place} {verb} not in the file")
}

/// One stream's consumers.
#[derive(Default)]
pub struct Consumers<'a> {
    /// `-w FILE`: the stream's own pcap files.
    pub file: Option<StreamFile>,
    /// `--pcapng -w FILE`: the stream's packets, for the merged file.
    pub merged: Option<MergedStream>,
    /// `--flows`: the flows of this stream.
    pub flows: Option<FlowTable>,
    /// `--repeats`: the stream's window of recent packets.
    pub repeats: Option<Box<RepeatWindow>>,
    /// `--live` with `--repeats`: the stream's repeated copies so far.
    pub repeated: Option<&'a AtomicU64>,
    /// `--metrics` with `--flows`: the flows the stream's table has seen
    /// and holds now, and the packets of flows it had no room for,
    /// published once a ring block.
    pub flow_counts: Option<(&'a AtomicU64, &'a AtomicU64, &'a AtomicU64)>,
    /// `--live`: the bytes (wire lengths) of the packets taken.
    pub bytes: Option<&'a AtomicU64>,
}

/// How taking a block's packets ended.
#[derive(Debug)]
pub enum Outcome {
    /// All taken.
    Taken,
    /// The -G -W file limit: the capture ends, the rest is not taken.
    FileLimit,
    /// Writing the stream's files failed: all the packets were still
    /// taken (counted, and given to the other consumers), but from the one
    /// that failed on nothing more goes to the files.
    Failed { path: String, error: io::Error },
}

impl Consumers<'_> {
    /// Whether any consumer looks at packets (else blocks are only
    /// counted).
    pub fn per_packet(&self) -> bool {
        self.file.is_some()
            || self.merged.is_some()
            || self.flows.is_some()
            || self.repeats.is_some()
            || self.bytes.is_some()
    }

    /// Whether the byte counter (`--live`, `--metrics`) is the only
    /// consumer: a block's packet lengths are then all that is read of it
    /// ([`crate::sys::ring::Block::wire_bytes`], handed to
    /// [`Consumers::count_bytes`]).
    pub fn bytes_only(&self) -> bool {
        self.bytes.is_some()
            && self.file.is_none()
            && self.merged.is_none()
            && self.flows.is_none()
            && self.repeats.is_none()
    }

    /// Adds a block's bytes to the byte counter (see
    /// [`Consumers::bytes_only`]).
    pub fn count_bytes(&self, bytes: u64) {
        if let Some(b) = self.bytes {
            b.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// How many bytes of each packet the consumers read, for a copy kept
    /// while `-c` decides (see [`crate::worker::count`]): None when no consumer
    /// looks at packets; the whole packet for the files and the flow
    /// table (whose key may lie past any fixed length: IPv6 extension
    /// headers) and the repeat window (whose digest and sample read the
    /// headers); none for the byte counter (the length is kept).
    pub fn keep(&self) -> Option<usize> {
        if self.file.is_some()
            || self.merged.is_some()
            || self.flows.is_some()
            || self.repeats.is_some()
        {
            Some(usize::MAX)
        } else if self.bytes.is_some() {
            Some(0)
        } else {
            None
        }
    }

    /// Takes the claimed packets of one ring block; returns how many were
    /// taken, and how it ended. The stream's files are written from the
    /// block itself (see [`StreamFile::block`]): what points into it is
    /// written before this returns, so the caller may then hand the block
    /// back to the kernel (the borrow of `'p` says so). Files whose
    /// writing failed are skipped: the packets are taken all the same,
    /// captured but not in the file, as the merged file counts them.
    pub fn take<'p>(&mut self, packets: impl Iterator<Item = Packet<'p>>) -> (u64, Outcome) {
        if let Some(t) = &mut self.flows {
            t.sweep_if_due();
            t.warm(packets.size_hint().1.unwrap_or(0));
        }
        if let Some(w) = &self.repeats {
            w.warm(packets.size_hint().1.unwrap_or(0));
        }
        if let (None, None, Some(t), None) =
            (&self.file, &self.merged, &mut self.flows, &self.repeats)
        {
            // Flows alone (with or without --live): a loop of its own, where
            // the packet fields nothing reads are never loaded.
            let (mut taken, mut bytes) = (0u64, 0u64);
            for p in packets {
                t.record(&p, p.hash);
                bytes += u64::from(p.len);
                taken += 1;
            }
            t.settle();
            if let Some((seen, tracked, untracked)) = self.flow_counts {
                seen.store(t.seen(), Ordering::Relaxed);
                tracked.store(t.len() as u64, Ordering::Relaxed);
                untracked.store(t.untracked_packets(), Ordering::Relaxed);
            }
            if let Some(b) = self.bytes {
                b.fetch_add(bytes, Ordering::Relaxed);
            }
            return (taken, Outcome::Taken);
        }
        if let (None, None, None, Some(w)) =
            (&self.file, &self.merged, &self.flows, &mut self.repeats)
        {
            // Repeats alone (with or without --live): the same for the
            // window (with the tests of the other consumers per packet
            // the micro-benchmark's cost was 1.5 ns a packet more).
            let (mut taken, mut bytes) = (0u64, 0u64);
            for (p, h) in Digested::new(packets, Some(&**w)) {
                w.record_digest(&p, h);
                bytes += u64::from(p.len);
                taken += 1;
            }
            if let Some(r) = self.repeated {
                r.store(w.repeated(), Ordering::Relaxed);
            }
            if let Some(b) = self.bytes {
                b.fetch_add(bytes, Ordering::Relaxed);
            }
            return (taken, Outcome::Taken);
        }
        let mut file = self
            .file
            .as_mut()
            .filter(|f| !f.failed())
            .map(|f| f.block());
        let (mut taken, mut bytes) = (0u64, 0u64);
        let mut outcome = Outcome::Taken;
        for (p, h) in Digested::new(packets, self.repeats.as_deref()) {
            if let Some(f) = &mut file {
                match f.write(&p) {
                    Ok(Written::Yes) => {}
                    Ok(Written::Limit) => {
                        outcome = Outcome::FileLimit;
                        break;
                    }
                    Err((path, error)) => {
                        // This packet and the rest of the block are taken
                        // from the ring all the same: counted, not written.
                        outcome = Outcome::Failed { path, error };
                        file = None;
                    }
                }
            }
            if let Some(m) = &mut self.merged {
                m.push(&p);
            }
            if let Some(t) = &mut self.flows {
                t.record(&p, p.hash);
            }
            if let Some(w) = &mut self.repeats {
                let n = w.record_digest(&p, h);
                if n > 0 {
                    if let Some(t) = &mut self.flows {
                        t.add_repeated(&p, n);
                    }
                }
            }
            bytes += u64::from(p.len);
            taken += 1;
        }
        if let Some(t) = &mut self.flows {
            t.settle();
            if let Some((seen, tracked, untracked)) = self.flow_counts {
                seen.store(t.seen(), Ordering::Relaxed);
                tracked.store(t.len() as u64, Ordering::Relaxed);
                untracked.store(t.untracked_packets(), Ordering::Relaxed);
            }
        }
        if let (Some(w), Some(r)) = (&self.repeats, self.repeated) {
            r.store(w.repeated(), Ordering::Relaxed);
        }
        if let Some(b) = self.bytes {
            b.fetch_add(bytes, Ordering::Relaxed);
        }
        let taken_all = matches!(outcome, Outcome::Taken);
        // Otherwise (the file limit) dropping the writer writes what points
        // into the block; a failed file's writer is gone already.
        let finished = file.map_or(Ok(()), |f| if taken_all { f.finish() } else { Ok(()) });
        if let Err(error) = finished {
            let path = self.path().unwrap_or_default().to_string();
            outcome = Outcome::Failed { path, error };
        }
        if let Some(m) = &mut self.merged {
            if !m.send() {
                outcome = Outcome::Failed {
                    path: m.path.clone(),
                    error: io::Error::other("the merged file's writer has stopped"),
                };
                // Said once; the packets are still counted.
                self.merged = None;
            }
        }
        (taken, outcome)
    }

    /// With `--flows-idle`: how long the worker may wait for a block
    /// before a sweep is due (see [`FlowTable::sweep_period_ms`]).
    pub fn sweep_period_ms(&self) -> Option<u32> {
        self.flows.as_ref().and_then(FlowTable::sweep_period_ms)
    }

    /// The ring is empty: sweeps idle flows out if a sweep is due. A sweep
    /// otherwise comes only before a block's packets, so after the last
    /// packet of a burst the table (and the served gauges) kept flows
    /// idle for far longer than `--flows-idle`. The table is settled
    /// between blocks.
    pub fn sweep_while_idle(&mut self) {
        if let Some(t) = &mut self.flows {
            let before = t.len();
            t.sweep_if_due();
            if let (Some((_, tracked, _)), true) = (self.flow_counts, t.len() != before) {
                tracked.store(t.len() as u64, Ordering::Relaxed);
            }
        }
    }

    /// Whether [`Consumers::idle`] has anyone to tell.
    pub fn wants_idle(&self) -> bool {
        self.merged.is_some()
    }

    /// For the worker's poll(): readable when the merged file's merger
    /// waits for this stream to say it has nothing older (see
    /// [`crate::consumers::merged::merge`]); the worker then looks at its
    /// ring, and [`Consumers::idle`] answers if it is empty.
    pub fn ask_fd(&self) -> Option<BorrowedFd<'_>> {
        self.merged.as_ref().and_then(|m| m.feed.ask_fd())
    }

    /// After a wake-up by [`Consumers::ask_fd`]: clears it.
    pub fn answered(&self) {
        if let Some(m) = &self.merged {
            m.feed.answered();
        }
    }

    /// The ring had nothing more: nothing older than `until_ns` (see
    /// [`crate::consumers::merged::merge::complete_until`]) will come; the merger may write what
    /// came before.
    pub fn idle(&self, until_ns: u64) {
        if let Some(m) = &self.merged {
            m.feed.complete_until(until_ns);
        }
    }

    /// Writes out what the files still buffer (unless their writing
    /// failed); an error names the file.
    pub fn flush(&mut self) -> Result<(), (String, io::Error)> {
        match &mut self.file {
            Some(f) if !f.failed() => f.flush().map_err(|e| (f.path().to_string(), e)),
            _ => Ok(()),
        }
    }

    /// For a pipe (stdout, a FIFO): the descriptor whose POLLERR says the
    /// reader has gone.
    pub fn watch_fd(&self) -> Option<BorrowedFd<'_>> {
        self.file.as_ref().and_then(|f| f.watch_fd())
    }

    /// The stream's file, if any, for messages.
    pub fn path(&self) -> Option<&str> {
        self.file.as_ref().map(|f| f.path())
    }

    /// The reader of the stream's pipe has gone: nothing more is written
    /// (what is buffered never gets there); the packets are still taken.
    pub fn abandon_file(&mut self, e: &io::Error) {
        if let Some(f) = &mut self.file {
            f.abandon(e);
        }
    }
}

/// What a stream's consumers leave for the report.
#[derive(Default)]
pub struct Leftovers {
    /// The stream's flow table.
    pub flows: Option<FlowTable>,
    /// What the stream's repeat window found.
    pub repeats: Option<StreamRepeats>,
    /// Files of the stream's -W ring that were overwritten, and the
    /// packets they held.
    pub rotated_away: (u64, u64),
    /// The -G -W file limit ended the stream's files.
    pub file_limit: bool,
    /// Writing the stream's files failed.
    pub file_failure: Option<FileFailure>,
}

/// A stream whose files failed: the report still counts every packet the
/// stream took from its ring, and says how many of them are not in its
/// files.
#[derive(Debug)]
pub struct FileFailure {
    /// Records the stream's files got (those in files the -W ring
    /// overwrote included): the rest of its packets are not in them.
    pub records: u64,
    /// The failure was the reader of a pipe going away (`| tcpdump -c 3
    /// -r -`): an ordinary end, not an error.
    pub reader_gone: bool,
}

impl Consumers<'_> {
    /// At the end of the stream (the files already flushed).
    pub fn finish(mut self) -> Leftovers {
        let file_failure = self.file.as_ref().and_then(|f| {
            f.failure().map(|e| FileFailure {
                records: f.records(),
                reader_gone: e.kind() == io::ErrorKind::BrokenPipe,
            })
        });
        Leftovers {
            rotated_away: self.file.as_ref().map_or((0, 0), |f| f.rotated_away()),
            flows: self.flows.take(),
            repeats: self.repeats.as_mut().map(|w| w.take()),
            file_limit: false,
            file_failure,
        }
    }
}

/// Whether a flow hash is the device's RSS hash of the packet (its bytes
/// from the network header on): the steering stage's answer
/// ([`crate::steering::NicHash::is_its_hash`]), handed down.
pub type IsNicHash = Arc<dyn Fn(&[u8], u32) -> bool + Send + Sync>;

/// A stream's side of the merged pcapng file: its packets encoded as
/// enhanced packet blocks, a ring block at a time, handed to the merger
/// thread (see [`crate::consumers::merged::merge`]).
///
/// Unlike the stream's own files, the merged file keeps a copy (into the
/// batch) before its write; the merger writes long runs of blocks from
/// the batch itself (writev), so that is the only copy before the
/// kernel's. Writing from the ring would hold ring
/// blocks in user space until the merger has written them, and the
/// merger holds a packet until every stream has shown it has nothing
/// older: for two block timeouts (40 ms) whenever another stream is idle,
/// the common case, and up to the reorder window (100 ms) when one is
/// stuck. At 1500-byte line rate, 0.4 Mpps per cpu on a small VM, 40 ms
/// is 16,000 packets, 25 MiB: three default rings. The kernel fills a
/// ring's blocks strictly in order, so a held block stops the ring and it
/// drops until the block comes back; holding only part of the ring would
/// copy whenever a stream lags, that is always with an idle cpu. And the
/// blocks would cross to the merger thread, where only a run-time protocol
/// (no borrow) could keep them from going back before they are written.
pub struct MergedStream {
    feed: Feed<EpbBatch>,
    batch: EpbBatch,
    /// The stream's interface in the file.
    interface: u32,
    /// epb_queue, in the queue vantage.
    queue: Option<u32>,
    link: LinkType,
    /// The file's snapshot length (raised as the link type needs).
    snaplen: u32,
    precision: Precision,
    /// The merged file, for messages.
    path: String,
    /// The device's RSS hash, where a packet's flow hash may be it (see
    /// [`MergedStream::with_nic_hash`]).
    nic_hash: Option<IsNicHash>,
}

impl MergedStream {
    pub fn new(
        feed: Feed<EpbBatch>,
        queue: Option<u32>,
        link: LinkType,
        snaplen: u32,
        precision: Precision,
        path: &str,
    ) -> MergedStream {
        MergedStream {
            interface: feed.producer() as u32,
            feed,
            batch: EpbBatch::new(),
            queue,
            link,
            snaplen,
            precision,
            path: path.to_string(),
            nic_hash: None,
        }
    }

    /// Checks each received packet's flow hash against the device's RSS
    /// hash of its tuple, so that the file claims Toeplitz (epb_hash)
    /// exactly where it is (a table lookup per byte of the tuple, only on
    /// a device that hands the kernel a reproducible RSS hash).
    pub fn with_nic_hash(mut self, nic_hash: Option<IsNicHash>) -> MergedStream {
        self.nic_hash = nic_hash;
        self
    }

    fn push(&mut self, p: &Packet) {
        let hash = (p.hash != 0).then_some(p.hash);
        let info = PacketInfo {
            hash,
            // Received packets only: a sent one carries its socket's hash
            // (or one computed on the way out), never this NIC's.
            hash_is_toeplitz: match (&self.nic_hash, hash) {
                (Some(nic), Some(h)) if p.pkttype != crate::sys::afpacket::PACKET_OUTGOING => {
                    p.data.get(p.net_offset..).is_some_and(|l3| nic(l3, h))
                }
                _ => false,
            },
            queue: self.queue,
            ..PacketInfo::new(self.interface, p)
        };
        self.batch.push(
            self.precision,
            &info,
            &Frame::new(self.link, self.snaplen, p),
        );
    }

    /// Hands the block's packets to the merger; false if it has gone.
    fn send(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let mut next = self.feed.spare().unwrap_or_default();
        next.clear();
        let mut full = std::mem::replace(&mut self.batch, next);
        // The merged file then writes long runs from the batch itself.
        full.seal();
        self.feed.send(full)
    }
}

#[cfg(test)]
mod tests {
    /// The line after a failed write: one packet is singular, as the
    /// other lines the original did not print say it.
    #[test]
    fn not_in_file_line_agrees_with_its_count() {
        use super::not_in_file_line;
        assert_eq!(
            not_in_file_line(1281, "on cpu0"),
            "1281 captured packets on cpu0 are not in the file"
        );
        assert_eq!(
            not_in_file_line(1, "on cpu0"),
            "1 captured packet on cpu0 is not in the file"
        );
        assert_eq!(
            not_in_file_line(1, ""),
            "1 captured packet is not in the file"
        );
        assert_eq!(
            not_in_file_line(2, ""),
            "2 captured packets are not in the file"
        );
    }
}
