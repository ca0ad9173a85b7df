//! [`EpbBatch`]: the enhanced packet blocks a worker encodes from one ring
//! block, handed to the merger thread, whose file writes them from where
//! they lie (see [`crate::consumers::merged::file::PcapngOutput`]).

use std::sync::Arc;

use crate::consumers::merged::merge;
use crate::format::pcapng::{encode_epb_at, epb_len, PacketInfo};
use crate::options::Precision;
use crate::packet::Frame;

/// Enhanced packet blocks of one stream, encoded by its worker from one
/// ring block, for the merger: the bytes in one buffer, and per block its
/// timestamp and place. Reused through the merger's spare batches, so the
/// worker allocates nothing per packet (and, once warm, nothing per block).
///
/// The worker fills `data`; [`EpbBatch::seal`] (once per ring block, before
/// the batch goes to the merger) moves the bytes behind an [`Arc`], so the
/// merged file can list a run of blocks for its writev(2) instead of
/// copying them into a buffer of its own, and keep them past the batch's
/// own trip through the merger: the batch goes back to its worker only
/// once no write still needs its bytes (the file's
/// [`crate::consumers::merged::merge::Sink::keep`]), and
/// [`EpbBatch::clear`] takes the bytes back out without an allocation.
#[derive(Debug, Default)]
pub struct EpbBatch {
    /// The blocks in `data[..used]` while the worker fills the batch; past
    /// that, stale bytes of earlier use: `data` only grows, so a block is
    /// written over memory that is already there, never zeroed first (a
    /// memset per packet).
    data: Vec<u8>,
    /// The same bytes once sealed (`data` is then empty).
    shared: Arc<Vec<u8>>,
    sealed: bool,
    used: usize,
    /// (timestamp ns, offset, length) of each block.
    blocks: Vec<(u64, u32, u32)>,
}

impl EpbBatch {
    pub fn new() -> EpbBatch {
        EpbBatch::default()
    }

    /// Encodes one packet.
    pub fn push(&mut self, precision: Precision, info: &PacketInfo, frame: &Frame) {
        debug_assert!(
            !self.sealed,
            "a sealed batch is filled again only after clear()"
        );
        let offset = self.used;
        let len = epb_len(info, frame.caplen());
        let end = offset + len;
        if self.data.len() < end {
            // Once per batch's high-water mark, doubling.
            self.data.resize(end.max(2 * self.data.len()), 0);
        }
        // The batch's memory was last written here a batch ago and read by
        // the merger thread since, on another cpu as often as not: asked
        // for ahead, it is here when the encoding gets to it.
        crate::sys::cache::write_ahead(&self.data, offset + crate::sys::cache::READ_AHEAD, 2);
        encode_epb_at(&mut self.data[offset..end], precision, info, frame);
        self.used = end;
        self.blocks
            .push((info.timestamp_ns(), offset as u32, len as u32));
    }

    /// Puts the bytes behind the shared pointer, for the merger (once per
    /// ring block: no allocation once the batch has been round once).
    pub fn seal(&mut self) {
        if self.sealed {
            return;
        }
        match Arc::get_mut(&mut self.shared) {
            Some(v) => std::mem::swap(v, &mut self.data),
            // Still shared: never, as batches come back only unshared
            // (see the file's keep); a new one is then the safe answer.
            None => self.shared = Arc::new(std::mem::take(&mut self.data)),
        }
        self.sealed = true;
    }

    /// The bytes of the blocks, for the merger's file to write from, if
    /// the batch is sealed.
    pub fn shared(&self) -> Option<&Arc<Vec<u8>>> {
        self.sealed.then_some(&self.shared)
    }

    /// Whether no write still holds the batch's bytes: it may go back to
    /// its worker.
    pub fn unshared(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
    }

    fn bytes(&self) -> &[u8] {
        if self.sealed {
            &self.shared[..self.used]
        } else {
            &self.data[..self.used]
        }
    }

    /// Asks the cpu for the bytes a little past block `i`'s start, so the
    /// blocks after it are in the cache when they are copied: a batch
    /// waits in the merger until every stream has shown it has nothing
    /// older, and has left the caches by then. The merger's
    /// micro-benchmark (merge_per_packet_cost): 26-28 ns per packet
    /// without, 20-21 with.
    #[inline]
    pub fn read_ahead(&self, i: usize) {
        let at = self.blocks[i].1 as usize + crate::sys::cache::READ_AHEAD;
        crate::sys::cache::read_ahead(self.bytes(), at, 2);
    }

    /// Block `i`, whole.
    #[cfg(test)]
    pub fn block(&self, i: usize) -> &[u8] {
        let (_, offset, len) = self.blocks[i];
        &self.bytes()[offset as usize..offset as usize + len as usize]
    }

    /// Where blocks `range` lie together, in the batch's bytes: a worker
    /// encodes its blocks one after another, so a run of them is one
    /// piece of memory.
    pub fn span(&self, range: std::ops::Range<usize>) -> std::ops::Range<usize> {
        let (_, first, _) = self.blocks[range.start];
        let (_, last, len) = self.blocks[range.end - 1];
        first as usize..(last + len) as usize
    }

    /// Blocks `range`, whole, one after another.
    pub fn blocks(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.bytes()[self.span(range)]
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Empties it for reuse, keeping its memory (taken back from behind
    /// the shared pointer, which no write holds any more).
    pub fn clear(&mut self) {
        if self.sealed {
            if let Some(v) = Arc::get_mut(&mut self.shared) {
                std::mem::swap(v, &mut self.data);
            }
            self.sealed = false;
        }
        self.used = 0;
        self.blocks.clear();
    }
}

impl merge::Batch for EpbBatch {
    fn len(&self) -> usize {
        self.blocks.len()
    }

    fn timestamp(&self, i: usize) -> u64 {
        self.blocks[i].0
    }

    fn size(&self, i: usize) -> usize {
        self.blocks[i].2 as usize
    }
}
