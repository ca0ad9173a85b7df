//! One stream's side of `-c` ([`Gate`]), held by its worker: alone, it
//! counts its ring's packets itself; with other streams, it hands each
//! ring block's timestamps to the coordinator ([`super::Coordinator`]),
//! keeps copies of the packets (when its consumers look at them) until
//! the count has decided on them, and hands those let in to its
//! consumers. Ring blocks are never held: the kernel fills a ring's
//! blocks strictly in order, so one block held back would stop the ring.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::consumers::merged::merge::Feed;
use crate::packet::{stamp_ns, Packet};
use crate::sys::ring::Block;

use super::{Stamps, Verdict};

/// Emptied chunks of copies a worker keeps for reuse.
const SPARE_CHUNKS: usize = 8;

/// One stream's side of `-c`, held by its worker.
pub enum Gate<'a> {
    /// The only stream: its ring order is the order; `left` packets may
    /// still be taken.
    Alone { left: u64 },
    /// One of several streams: the coordinator decides.
    Merged(Box<Merged<'a>>),
}

/// A stream's side of the coordinator.
pub struct Merged<'a> {
    slot: usize,
    /// None once the stream has ended.
    pub(super) feed: Option<Feed<Stamps>>,
    verdict: &'a Verdict,
    retire_ms: u32,
    /// Packets handed to the coordinator.
    handed: u64,
    /// Packets given to the consumers (or counted, without copies).
    consumed: u64,
    /// Copies of the packets handed in and not yet given to the consumers.
    held: Held,
}

impl<'a> Merged<'a> {
    /// Stream `slot`'s side, handing its timestamps in through `feed`.
    pub(super) fn new(
        slot: usize,
        feed: Feed<Stamps>,
        verdict: &'a Verdict,
        retire_ms: u32,
    ) -> Merged<'a> {
        Merged {
            slot,
            feed: Some(feed),
            verdict,
            retire_ms,
            handed: 0,
            consumed: 0,
            held: Held::default(),
        }
    }
}

impl Gate<'_> {
    /// Alone: takes up to `want` of the packets still allowed. None when
    /// the coordinator decides (hand the block in instead).
    #[inline]
    pub fn claim(&mut self, want: u64) -> Option<u64> {
        match self {
            Gate::Alone { left } => {
                let take = want.min(*left);
                *left -= take;
                Some(take)
            }
            Gate::Merged(_) => None,
        }
    }

    /// Whether nothing more will be let in: the count is reached, or the
    /// coordinator is done.
    #[inline]
    pub fn is_final(&self) -> bool {
        match self {
            Gate::Alone { left } => *left == 0,
            Gate::Merged(m) => m.verdict.is_done(),
        }
    }

    /// Hands the first `want` packets of `block` to the coordinator,
    /// keeping a copy of `keep` bytes of each (None: no copies, the
    /// consumers look at no packet).
    pub fn hand_in(&mut self, block: &Block, want: usize, keep: Option<usize>) {
        let Gate::Merged(m) = self else {
            return;
        };
        let Some(feed) = &m.feed else {
            return;
        };
        let mut stamps = feed.spare().unwrap_or_default();
        stamps.clear();
        match keep {
            None => stamps.ts.extend(block.stamps().take(want)),
            Some(keep) => {
                let mut chunk = m.held.chunk();
                for p in block.packets().take(want) {
                    let bytes = chunk.push(&p, keep);
                    stamps.ts.push(stamp_ns(p.sec, p.nsec));
                    stamps.sizes.push(bytes as u32);
                }
                m.held.push(chunk);
            }
        }
        if stamps.ts.is_empty() {
            return;
        }
        m.handed += stamps.ts.len() as u64;
        // A coordinator that is gone has decided everything already.
        let _ = feed.send(stamps);
    }

    /// The ring was found empty: nothing older than `until_ns` (see
    /// [`merge::complete_until`]) is still to come from this stream. Said
    /// when the coordinator asked.
    pub fn idle(&self, until_ns: u64) {
        if let Gate::Merged(m) = self {
            if let Some(feed) = &m.feed {
                if m.verdict.asked[m.slot].swap(false, Ordering::AcqRel) {
                    feed.complete_until(until_ns);
                }
            }
        }
    }

    /// The watermark for the merged file when the ring is empty at
    /// `until_ns`: no later than the oldest packet still waiting for the
    /// count, which the merged file gets only once it is let in.
    pub fn held_until(&self, until_ns: u64) -> u64 {
        match self {
            Gate::Merged(m) => m.held.oldest().map_or(until_ns, |t| t.min(until_ns)),
            Gate::Alone { .. } => until_ns,
        }
    }

    /// The coordinator's eventfd for this stream, to poll.
    pub fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Gate::Merged(m) => Some(m.verdict.wake[m.slot].as_fd()),
            Gate::Alone { .. } => None,
        }
    }

    /// Before the worker sleeps: false if it must not, as packets it
    /// holds were let in meanwhile. A worker holding copies asks to be
    /// woken once the count has decided on all of them (if its ring
    /// hands it more first, it wakes for that anyway).
    pub fn sleep(&self) -> bool {
        let Gate::Merged(m) = self else {
            return true;
        };
        if m.held.is_empty() {
            return true;
        }
        m.verdict.waiting[m.slot].store(m.handed, Ordering::SeqCst);
        if m.verdict.allowed[m.slot].load(Ordering::SeqCst) > m.consumed {
            m.verdict.waiting[m.slot].store(0, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// After the worker's sleep: clears the eventfd if it was written.
    pub fn woken(&self, written: bool) {
        if let Gate::Merged(m) = self {
            m.verdict.waiting[m.slot].store(0, Ordering::Relaxed);
            if written {
                let _ = m.verdict.wake[m.slot].read();
            }
        }
    }

    /// Packets let in since the last [`Gate::consumed`]: they are the
    /// first ones of [`Gate::held`].
    #[inline]
    pub fn newly_allowed(&self) -> u64 {
        match self {
            Gate::Merged(m) => m.verdict.allowed[m.slot]
                .load(Ordering::Acquire)
                .saturating_sub(m.consumed),
            Gate::Alone { .. } => 0,
        }
    }

    /// The first `n` packets held, oldest first.
    pub fn held(&self, n: u64) -> impl Iterator<Item = Packet<'_>> {
        let held = match self {
            Gate::Merged(m) => Some(&m.held),
            Gate::Alone { .. } => None,
        };
        held.into_iter().flat_map(|h| h.iter()).take(n as usize)
    }

    /// The first `n` packets held have been given to the consumers (or
    /// counted).
    pub fn consumed(&mut self, n: u64) {
        if let Gate::Merged(m) = self {
            m.consumed += n;
            m.held.release(n as usize);
        }
    }

    /// This stream hands in nothing more (the capture stopped and its
    /// ring is drained, or it failed).
    pub fn end(&mut self) {
        match self {
            Gate::Merged(m) => {
                if let Some(feed) = m.feed.take() {
                    feed.end();
                }
            }
            Gate::Alone { left } => *left = 0,
        }
    }

    /// Waits until the coordinator's verdict is final (after
    /// [`Gate::end`]: it comes once every stream has ended, or at once if
    /// the count was reached).
    pub fn wait_final(&self) {
        let Gate::Merged(m) = self else {
            return;
        };
        while !m.verdict.is_done() {
            let fd = m.verdict.wake[m.slot].as_fd();
            let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {
                    let _ = m.verdict.wake[m.slot].read();
                }
                Err(nix::errno::Errno::EINTR) => {}
                // Should not happen; never spin on it.
                Err(_) => std::thread::sleep(Duration::from_millis(u64::from(m.retire_ms))),
            }
        }
    }
}

/// A packet's fields but its bytes, which lie in its chunk.
struct Desc {
    sec: u32,
    nsec: u32,
    len: u32,
    at: u32,
    caplen: u32,
    net_offset: u32,
    ifindex: i32,
    hatype: u16,
    pkttype: u8,
    protocol: u16,
    halen: u8,
    addr: [u8; 8],
    vlan: Option<(u16, u16)>,
    hash: u32,
}

/// Copies of one ring block's packets.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    packets: Vec<Desc>,
    /// The first packet not yet consumed.
    pos: usize,
}

impl Chunk {
    /// Copies `keep` bytes of `p` at most; returns the bytes the copy
    /// holds, its description and its timestamp's entry included.
    fn push(&mut self, p: &Packet, keep: usize) -> usize {
        let n = p.data.len().min(keep);
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&p.data[..n]);
        self.packets.push(Desc {
            sec: p.sec,
            nsec: p.nsec,
            len: p.len,
            at: at as u32,
            caplen: n as u32,
            net_offset: p.net_offset as u32,
            ifindex: p.ifindex,
            hatype: p.hatype,
            pkttype: p.pkttype,
            protocol: p.protocol,
            halen: p.halen,
            addr: p.addr,
            vlan: p.vlan,
            hash: p.hash,
        });
        n + std::mem::size_of::<Desc>() + std::mem::size_of::<(u64, u32)>()
    }

    fn packet(&self, d: &Desc) -> Packet<'_> {
        let at = d.at as usize;
        Packet {
            sec: d.sec,
            nsec: d.nsec,
            len: d.len,
            data: &self.bytes[at..at + d.caplen as usize],
            net_offset: d.net_offset as usize,
            ifindex: d.ifindex,
            hatype: d.hatype,
            pkttype: d.pkttype,
            protocol: d.protocol,
            halen: d.halen,
            addr: d.addr,
            vlan: d.vlan,
            hash: d.hash,
        }
    }
}

/// A worker's copies waiting for the count, a chunk per ring block.
#[derive(Default)]
struct Held {
    chunks: VecDeque<Chunk>,
    spare: Vec<Chunk>,
}

impl Held {
    /// An empty chunk (a spare one if there is one).
    fn chunk(&mut self) -> Chunk {
        self.spare.pop().unwrap_or_default()
    }

    fn push(&mut self, chunk: Chunk) {
        if chunk.packets.is_empty() {
            self.recycle(chunk);
        } else {
            self.chunks.push_back(chunk);
        }
    }

    fn recycle(&mut self, mut chunk: Chunk) {
        if self.spare.len() < SPARE_CHUNKS {
            chunk.bytes.clear();
            chunk.packets.clear();
            chunk.pos = 0;
            self.spare.push(chunk);
        }
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = Packet<'_>> {
        self.chunks
            .iter()
            .flat_map(|c| c.packets[c.pos..].iter().map(move |d| c.packet(d)))
    }

    /// Drops the first `n` packets.
    fn release(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            let here = (front.packets.len() - front.pos).min(n);
            front.pos += here;
            n -= here;
            if front.pos == front.packets.len() {
                if let Some(done) = self.chunks.pop_front() {
                    self.recycle(done);
                }
            }
        }
    }

    /// The oldest packet's timestamp.
    fn oldest(&self) -> Option<u64> {
        let c = self.chunks.front()?;
        c.packets.get(c.pos).map(|d| stamp_ns(d.sec, d.nsec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_copies_go_in_order_and_free_their_chunks() {
        let data: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100]).collect();
        let pkt = |i: usize| Packet {
            sec: 1,
            nsec: i as u32,
            len: 100,
            data: &data[i],
            net_offset: 14,
            ifindex: 1,
            hatype: 1,
            pkttype: 0,
            protocol: 8,
            halen: 6,
            addr: [0; 8],
            vlan: None,
            hash: 7,
        };
        let mut held = Held::default();
        for range in [0..3, 3..5] {
            let mut c = held.chunk();
            for i in range {
                c.push(&pkt(i), 10);
            }
            held.push(c);
        }
        assert_eq!(held.oldest(), Some(1_000_000_000));
        let first: Vec<(u32, Vec<u8>)> = held
            .iter()
            .take(4)
            .map(|p| (p.nsec, p.data.to_vec()))
            .collect();
        assert_eq!(first.len(), 4);
        assert_eq!(first[3], (3, vec![3; 10]));
        held.release(4);
        assert_eq!(held.chunks.len(), 1);
        assert_eq!(held.spare.len(), 1);
        assert_eq!(held.oldest(), Some(1_000_000_004));
        held.release(1);
        assert!(held.chunks.is_empty() && held.oldest().is_none());
    }
}
