//! Merging the streams into one timeline: a k-way merge by timestamp with
//! a bounded reorder window, for the one merged pcapng file.
//!
//! Each worker (producer) hands in batches, one per ring block, whose
//! items are in timestamp order: the kernel fills one stream's ring in
//! arrival order. The merger emits items in timestamp order across
//! producers. An item is emitted as soon as every producer is known to
//! have nothing older to come:
//!
//! - a producer's *frontier* is the newest timestamp it has handed in, or
//!   the time up to which it reported itself complete (a watermark: its
//!   ring was empty at T, so whatever the kernel still holds for it is
//!   newer than [`complete_until`]`(T)`), whichever is later;
//! - everything not newer than the lowest frontier is safe (an item
//!   stamped exactly at another producer's frontier is safe only when
//!   that producer comes after its own in the producer order: ties go by
//!   producer, so the order does not depend on who reported first).
//!
//! A producer that is idle (its worker sleeps in poll() with an empty
//! ring) is asked: once the first item in order is older than an idle
//! producer's watermark could let go ([`complete_until`] of now), the
//! merger writes the eventfd of each producer holding it back
//! ([`Inbox::ask`], at most once a tick each); the worker wakes, finds its
//! ring empty and reports itself complete. So with a stream idle the
//! others' items wait about two block timeouts, not the whole window
//! (and a capture where every stream is idle wakes nobody). A producer
//! that is stuck must not hold the file back either: an item older than
//! `now - window` is emitted even if not known safe. A packet
//! that reaches the merger later than that, older than what was already
//! written, is written at once, out of order, and counted as late. The
//! window is a few ring block timeouts ([`Limits::for_retire_ms`]): a
//! packet reaches its worker within one block timeout of its timestamp,
//! plus the worker's wake-up.
//!
//! Memory is bounded: the bytes of items waiting in the merger never
//! exceed `max_bytes` for long; past it the oldest items are emitted early
//! (counted as forced). Batches waiting in the channel are bounded by its
//! capacity (in batches, each at most one ring block of data), so the
//! merged output holds at most `max_bytes + capacity * block_size` bytes
//! beyond what the kernel rings hold, plus the batches the sink keeps
//! until it has written their bytes ([`Sink::keep`]; for the pcapng file
//! those of at most one write, 256 KiB, each batch one ring block).
//!
//! Threading: one merger thread, fed by a bounded channel of batches
//! ([`channel`], [`run`]); it writes the merged output itself. Workers send
//! one message per ring block (never one per packet) and get their emptied
//! batches back through a channel of their own, so once warm nothing is
//! allocated. A worker blocks only when the channel is full: when the
//! merger thread cannot write as fast as packets come, the backlog then
//! stays in the kernel ring, and what does not fit there is a kernel drop,
//! as with a slow disk behind per-stream files.
//!
//! Cost per item: one heap pop and push over the producers (log k), and
//! whatever the sink does with it (for pcapng, a copy of a short run of
//! blocks, or an iovec for a long one, see [`crate::consumers::merged::file`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::eventfd::{EfdFlags, EventFd};

/// Items in timestamp order, handed in together.
pub trait Batch {
    /// Number of items.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Item `i`'s timestamp, nanoseconds since the epoch.
    fn timestamp(&self, i: usize) -> u64;
    /// Item `i`'s size in bytes, for the memory bound.
    fn size(&self, i: usize) -> usize;
    /// The sizes of items `range` together.
    fn sizes(&self, range: std::ops::Range<usize>) -> usize {
        range.map(|i| self.size(i)).sum()
    }
}

/// Where merged items go.
pub trait Sink<B> {
    /// Item `index` of `batch`, handed in by `producer`: the next in order.
    fn emit(&mut self, producer: usize, batch: &B, index: usize);
    /// Items `range` of `batch`, the next in order, one after another.
    fn emit_run(&mut self, producer: usize, batch: &B, range: std::ops::Range<usize>) {
        for i in range {
            self.emit(producer, batch, i);
        }
    }
    /// Every item of `batch` was emitted; it may be reused.
    fn done(&mut self, _producer: usize, _batch: B) {}
    /// After each round of emits: a point to flush (-U).
    fn round(&mut self) {}
    /// Every item of `batch` was emitted: the batch back, to be reused at
    /// once, or None while the sink still needs its bytes (a write that
    /// lists them rather than copying); it then hands it back through
    /// [`Sink::returned`] once it no longer does.
    fn keep(&mut self, _producer: usize, batch: B) -> Option<B> {
        Some(batch)
    }
    /// A batch [`Sink::keep`] kept that may be reused now, with its
    /// producer.
    fn returned(&mut self) -> Option<(usize, B)> {
        None
    }
}

/// How long items wait at most for other producers, in block timeouts.
pub const WINDOW_RETIRES: u64 = 5;
/// The default memory bound of waiting items.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// The reorder window and the memory bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// An item older than now minus this is emitted even if some producer
    /// has not shown it has nothing older.
    pub window_ns: u64,
    /// Past this many bytes waiting, the oldest items are emitted early.
    pub max_bytes: usize,
}

impl Limits {
    /// The window for rings whose blocks are retired after `retire_ms`.
    pub fn for_retire_ms(retire_ms: u32) -> Limits {
        Limits {
            window_ns: WINDOW_RETIRES * retire_ms.max(1) as u64 * 1_000_000,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// The watermark of a producer that found its ring empty at `at_ns`: the
/// kernel hands over a block at most one block timeout after its first
/// packet, so anything still in the kernel's open block came after `at_ns`
/// minus one timeout; one more timeout covers the timer's slack and the
/// time between a packet's timestamp and its copy into the ring.
pub fn complete_until(at_ns: u64, retire_ms: u32) -> u64 {
    at_ns.saturating_sub(2 * retire_ms as u64 * 1_000_000)
}

/// Now, on the clock packet timestamps use (CLOCK_REALTIME: the kernel
/// stamps packets with ktime_get_real()).
pub fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// What the merger did, for the report and the documentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Items emitted.
    pub items: u64,
    /// Emitted because they were older than the window while some producer
    /// had not shown it had nothing older: order was assumed, not known.
    pub by_window: u64,
    /// Emitted early because the memory bound was reached.
    pub forced: u64,
    /// Emitted older than an item emitted before them: out of order in the
    /// output (after the window or the bound gave order up).
    pub late: u64,
    /// The most bytes that were waiting at once.
    pub peak_bytes: usize,
}

struct Stream<B> {
    queue: VecDeque<B>,
    /// Next item in the front batch.
    pos: usize,
    /// Nothing older than this will come from this producer.
    frontier: u64,
    ended: bool,
}

/// The merge itself, without threads or clocks: time is passed in.
pub struct Merger<B> {
    streams: Vec<Stream<B>>,
    /// (head timestamp, producer) of every producer with waiting items.
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    bytes: usize,
    limits: Limits,
    stats: MergeStats,
    /// The newest timestamp emitted.
    last: u64,
    /// Per producer, for [`Merger::release_unordered`] (kept for its
    /// memory).
    scratch: Vec<usize>,
}

/// Why an item is emitted.
enum Why {
    Safe,
    Window,
    Forced,
}

impl<B: Batch> Merger<B> {
    pub fn new(producers: usize, limits: Limits) -> Merger<B> {
        Merger {
            streams: (0..producers)
                .map(|_| Stream {
                    queue: VecDeque::new(),
                    pos: 0,
                    frontier: 0,
                    ended: false,
                })
                .collect(),
            heap: BinaryHeap::with_capacity(producers),
            bytes: 0,
            limits,
            stats: MergeStats::default(),
            last: 0,
            scratch: Vec::with_capacity(producers),
        }
    }

    /// Takes a batch from `producer`. An empty batch is handed back.
    pub fn push(&mut self, producer: usize, batch: B) -> Option<B> {
        if batch.is_empty() {
            return Some(batch);
        }
        let n = batch.len();
        let s = &mut self.streams[producer];
        // The newest item, not the last: a stream fed by several cpus can
        // hand in items out of order, and every item a producer handed in
        // must lie at or before its frontier (the merge relies on it).
        let newest = (0..n).map(|i| batch.timestamp(i)).max().unwrap_or(0);
        s.frontier = s.frontier.max(newest);
        self.bytes += batch.sizes(0..n);
        self.stats.peak_bytes = self.stats.peak_bytes.max(self.bytes);
        if s.queue.is_empty() {
            self.heap.push(Reverse((batch.timestamp(0), producer)));
        }
        s.queue.push_back(batch);
        None
    }

    /// `producer` has nothing older than `ns` still to come.
    pub fn complete_until(&mut self, producer: usize, ns: u64) {
        let s = &mut self.streams[producer];
        s.frontier = s.frontier.max(ns);
    }

    /// `producer` will hand in nothing more.
    pub fn end(&mut self, producer: usize) {
        self.streams[producer].ended = true;
    }

    /// Whether every producer has ended.
    pub fn all_ended(&self) -> bool {
        self.streams.iter().all(|s| s.ended)
    }

    /// Bytes of the items waiting.
    #[cfg(test)]
    pub fn pending_bytes(&self) -> usize {
        self.bytes
    }

    pub fn stats(&self) -> MergeStats {
        self.stats
    }

    /// The two smallest (frontier, producer) of the producers that have
    /// not ended ((MAX, MAX) where there are fewer): an item (ts, p) is
    /// known to come first when it sorts before the smallest of the
    /// *other* producers' (see [`Merger::is_safe`]).
    fn lowest_frontiers(&self) -> [(u64, usize); 2] {
        let mut low = [(u64::MAX, usize::MAX); 2];
        for (p, s) in self.streams.iter().enumerate() {
            if s.ended {
                continue;
            }
            let f = (s.frontier, p);
            if f < low[0] {
                low = [f, low[0]];
            } else if f < low[1] {
                low[1] = f;
            }
        }
        low
    }

    /// Whether item (ts, producer) is known to come before anything still
    /// to come from the other producers. A producer whose frontier is F
    /// may still hand in an item stamped exactly F, which sorts before
    /// ours when it has the lower index (ties go by producer): so the
    /// comparison is on (timestamp, producer), not the timestamp alone.
    /// The producer's own later items come after it in its order anyway.
    fn is_safe(low: &[(u64, usize); 2], ts: u64, producer: usize) -> bool {
        let other = if low[0].1 == producer { low[1] } else { low[0] };
        (ts, producer) < other
    }

    /// The next item in order, as (timestamp, producer), if any waits.
    pub fn head(&self) -> Option<(u64, usize)> {
        self.heap.peek().map(|&Reverse(h)| h)
    }

    /// The producers (not ended) that hold item (ts, producer) back: those
    /// that have not shown they have nothing to come before it.
    pub fn lagging(&self, ts: u64, producer: usize) -> impl Iterator<Item = usize> + '_ {
        self.streams
            .iter()
            .enumerate()
            .filter(move |&(q, s)| q != producer && !s.ended && (ts, producer) >= (s.frontier, q))
            .map(|(q, _)| q)
    }

    /// Emits, in order, every item that may go at `now_ns`: those every
    /// producer is known to have nothing older than, those older than the
    /// window, and the oldest ones while over the memory bound. Returns
    /// how many were emitted.
    pub fn release<S: Sink<B>>(&mut self, now_ns: u64, sink: &mut S) -> usize {
        let low = self.lowest_frontiers();
        let horizon = now_ns.saturating_sub(self.limits.window_ns);
        let max_bytes = self.limits.max_bytes;
        let mut n = 0;
        while let Some(Reverse((_, producer))) = self.heap.pop() {
            // The producer's items go while they stay first in order and
            // may go, a run of its front batch at a time, without a trip
            // through the heap each.
            loop {
                let next_other = self.heap.peek().map(|&Reverse(o)| o);
                let s = &mut self.streams[producer];
                let Some(batch) = s.queue.front() else {
                    break;
                };
                let start = s.pos;
                let mut end = start;
                while end < batch.len() {
                    let ts = batch.timestamp(end);
                    if end > start && next_other.is_some_and(|o| o < (ts, producer)) {
                        break;
                    }
                    let why = if Self::is_safe(&low, ts, producer) {
                        Why::Safe
                    } else if ts <= horizon {
                        Why::Window
                    } else if self.bytes > max_bytes {
                        Why::Forced
                    } else {
                        break;
                    };
                    match why {
                        Why::Safe => {}
                        Why::Window => self.stats.by_window += 1,
                        Why::Forced => self.stats.forced += 1,
                    }
                    if ts < self.last {
                        self.stats.late += 1;
                    }
                    self.last = self.last.max(ts);
                    self.bytes -= batch.size(end);
                    end += 1;
                }
                if end == start {
                    // The first in order may not go: nothing may.
                    self.heap.push(Reverse((batch.timestamp(start), producer)));
                    return n;
                }
                sink.emit_run(producer, batch, start..end);
                self.stats.items += (end - start) as u64;
                n += end - start;
                s.pos = end;
                if end == batch.len() {
                    s.pos = 0;
                    if let Some(done) = s.queue.pop_front() {
                        sink.done(producer, done);
                    }
                }
                let Some(ts) = s.queue.front().map(|b| b.timestamp(s.pos)) else {
                    break;
                };
                if next_other.is_some_and(|o| o < (ts, producer)) {
                    self.heap.push(Reverse((ts, producer)));
                    break;
                }
            }
        }
        n
    }

    /// Emits what [`Merger::release`] would emit by knowledge alone
    /// (every other producer known to have nothing older), if that is at
    /// most `limit` items and the memory bound is not passed, producer by
    /// producer instead of interleaved; else emits nothing and returns
    /// None ([`Merger::release`] then finds the exact cut, in order).
    ///
    /// For a sink that needs only how many of each producer's items go
    /// (each producer's go in its order), not their order across
    /// producers: where producers interleave finely, as under a flood on
    /// every cpu, the ordered merge takes a heap operation per item. The
    /// items are the same: a producer's items that sort before every
    /// other producer's frontier are a prefix of it, and the first item
    /// in order that may not go sorts after all of them (it is some
    /// producer's, whose frontier is at least its own items').
    pub fn release_unordered<S: Sink<B>>(&mut self, limit: u64, sink: &mut S) -> Option<usize> {
        if self.bytes > self.limits.max_bytes {
            return None;
        }
        let low = self.lowest_frontiers();
        let mut counts = std::mem::take(&mut self.scratch);
        counts.clear();
        let mut total = 0u64;
        for (p, s) in self.streams.iter().enumerate() {
            let bound = if low[0].1 == p { low[1] } else { low[0] };
            let mut n = 0;
            let mut start = s.pos;
            'batches: for batch in &s.queue {
                for i in start..batch.len() {
                    if (batch.timestamp(i), p) >= bound {
                        break 'batches;
                    }
                    n += 1;
                }
                start = 0;
            }
            counts.push(n);
            total += n as u64;
        }
        if total > limit {
            self.scratch = counts;
            return None;
        }
        for (p, &n) in counts.iter().enumerate() {
            let mut left = n;
            let s = &mut self.streams[p];
            while left > 0 {
                let Some(batch) = s.queue.front() else {
                    break;
                };
                let start = s.pos;
                let end = batch.len().min(start + left);
                self.bytes -= batch.sizes(start..end);
                sink.emit_run(p, batch, start..end);
                left -= end - start;
                s.pos = end;
                if end == batch.len() {
                    s.pos = 0;
                    if let Some(done) = s.queue.pop_front() {
                        sink.done(p, done);
                    }
                }
            }
        }
        self.scratch = counts;
        self.stats.items += total;
        if total > 0 {
            self.heap.clear();
            for (p, s) in self.streams.iter().enumerate() {
                if let Some(b) = s.queue.front() {
                    self.heap.push(Reverse((b.timestamp(s.pos), p)));
                }
            }
        }
        Some(total as usize)
    }

    /// Emits everything waiting, in order (the end of the capture, also
    /// when some producer never said it ended).
    pub fn flush<S: Sink<B>>(&mut self, sink: &mut S) -> usize {
        let mut n = 0;
        while let Some(Reverse((_, producer))) = self.heap.pop() {
            n += 1;
            if let Some(ts) = self.emit_head(producer, sink) {
                self.heap.push(Reverse((ts, producer)));
            }
        }
        n
    }

    /// Emits the head item of `producer`, whose heap entry was just taken;
    /// returns the timestamp of its next item, if it has one waiting (the
    /// caller puts that back in the heap, or emits it next).
    fn emit_head<S: Sink<B>>(&mut self, producer: usize, sink: &mut S) -> Option<u64> {
        let s = &mut self.streams[producer];
        let batch = s.queue.front()?;
        let i = s.pos;
        let ts = batch.timestamp(i);
        self.bytes -= batch.size(i);
        sink.emit(producer, batch, i);
        self.stats.items += 1;
        if ts < self.last {
            self.stats.late += 1;
        }
        self.last = self.last.max(ts);
        s.pos += 1;
        if s.pos == batch.len() {
            s.pos = 0;
            if let Some(done) = s.queue.pop_front() {
                sink.done(producer, done);
            }
        }
        s.queue.front().map(|next| next.timestamp(s.pos))
    }
}

/// What a worker tells the merger thread.
pub enum Message<B> {
    Batch(usize, B),
    /// The producer has nothing older than this (ns) still to come.
    Complete(usize, u64),
    End(usize),
}

/// A worker's end of the channel.
pub struct Feed<B> {
    producer: usize,
    tx: SyncSender<Message<B>>,
    spares: Receiver<B>,
    /// Written by the merger when it waits for this producer to say it
    /// has nothing older (None: no eventfd could be made; the window
    /// alone lets the others' items go).
    asked: Option<Arc<EventFd>>,
    ended: bool,
}

impl<B> Feed<B> {
    pub fn producer(&self) -> usize {
        self.producer
    }

    /// For the worker's poll(): readable when the merger asks whether the
    /// producer has anything older still to come (see the module's
    /// description). The worker answers by looking at its ring:
    /// [`Feed::complete_until`] if it is empty.
    pub fn ask_fd(&self) -> Option<BorrowedFd<'_>> {
        self.asked.as_deref().map(|e| e.as_fd())
    }

    /// After a wake-up by [`Feed::ask_fd`]: clears it.
    pub fn answered(&self) {
        if let Some(e) = &self.asked {
            // Non-blocking: EAGAIN when it was not written.
            let _ = e.read();
        }
    }

    /// Hands a batch to the merger; blocks only while the channel is full.
    /// False when the merger thread is gone (the batch is dropped).
    pub fn send(&self, batch: B) -> bool {
        self.tx.send(Message::Batch(self.producer, batch)).is_ok()
    }

    /// Reports the producer complete up to `ns` (see [`complete_until`]).
    /// Never blocks: with the channel full the report is skipped, and the
    /// batches filling it move the frontier anyway.
    pub fn complete_until(&self, ns: u64) {
        match self.tx.try_send(Message::Complete(self.producer, ns)) {
            Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// An emptied batch to fill again, if the merger has handed one back.
    /// Its contents are stale: clear it first.
    pub fn spare(&self) -> Option<B> {
        self.spares.try_recv().ok()
    }

    /// Says this producer is done (dropping the feed does the same).
    pub fn end(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if !self.ended {
            self.ended = true;
            let _ = self.tx.send(Message::End(self.producer));
        }
    }
}

impl<B> Drop for Feed<B> {
    /// A worker that ends, also by unwinding, ends its producer.
    fn drop(&mut self) {
        self.finish();
    }
}

/// The merger thread's end of the channel.
pub struct Inbox<B> {
    rx: Receiver<Message<B>>,
    spares: Vec<Sender<B>>,
    /// Per producer: its eventfd, and when it was last asked (ns).
    asks: Vec<(Option<Arc<EventFd>>, u64)>,
}

/// A channel for `producers` workers holding at most `capacity` messages.
pub fn channel<B>(producers: usize, capacity: usize) -> (Vec<Feed<B>>, Inbox<B>) {
    let (tx, rx) = mpsc::sync_channel(capacity.max(1));
    let mut feeds = Vec::with_capacity(producers);
    let mut spares = Vec::with_capacity(producers);
    let mut asks = Vec::with_capacity(producers);
    for producer in 0..producers {
        let (spare_tx, spare_rx) = mpsc::channel();
        spares.push(spare_tx);
        let asked =
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .ok()
                .map(Arc::new);
        asks.push((asked.clone(), 0));
        feeds.push(Feed {
            producer,
            tx: tx.clone(),
            spares: spare_rx,
            asked,
            ended: false,
        });
    }
    (feeds, Inbox { rx, spares, asks })
}

/// Hands emptied batches back to their producers.
struct Recycling<'a, B, S> {
    sink: &'a mut S,
    spares: &'a [Sender<B>],
}

impl<B, S: Sink<B>> Recycling<'_, B, S> {
    /// Hands back what the sink no longer needs (a producer that has gone
    /// no longer takes spares).
    fn give_back(&mut self) {
        while let Some((producer, batch)) = self.sink.returned() {
            let _ = self.spares[producer].send(batch);
        }
    }
}

impl<B, S: Sink<B>> Sink<B> for Recycling<'_, B, S> {
    fn emit(&mut self, producer: usize, batch: &B, index: usize) {
        self.sink.emit(producer, batch, index);
        self.give_back();
    }

    fn emit_run(&mut self, producer: usize, batch: &B, range: std::ops::Range<usize>) {
        self.sink.emit_run(producer, batch, range);
        self.give_back();
    }

    fn done(&mut self, producer: usize, batch: B) {
        if let Some(batch) = self.sink.keep(producer, batch) {
            let _ = self.spares[producer].send(batch);
        }
    }

    fn round(&mut self) {
        self.sink.round();
        self.give_back();
    }
}

impl<B: Batch> Inbox<B> {
    /// Waits up to `timeout` (None: until one comes) for a message, then
    /// applies it and every other one already there to `merger` (fewer,
    /// larger rounds). False once every feed is gone.
    pub fn receive(&self, merger: &mut Merger<B>, timeout: Option<Duration>) -> bool {
        let first = match timeout {
            Some(t) => match self.rx.recv_timeout(t) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                // Every feed is gone (each said End first, unless it leaked).
                Err(RecvTimeoutError::Disconnected) => return false,
            },
            None => match self.rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return false,
            },
        };
        if let Some(m) = first {
            self.apply(merger, m);
        }
        while let Ok(m) = self.rx.try_recv() {
            self.apply(merger, m);
        }
        true
    }

    /// `sink`, handing every emptied batch back to its producer.
    pub fn recycling<'a, S: Sink<B>>(&'a self, sink: &'a mut S) -> impl Sink<B> + 'a {
        Recycling {
            sink,
            spares: &self.spares,
        }
    }

    /// Asks `producer` whether it has anything older than what waits
    /// (see the module's description), unless it was asked less than
    /// `every_ns` ago.
    pub fn ask(&mut self, producer: usize, now_ns: u64, every_ns: u64) {
        if let Some((Some(e), last)) = self.asks.get_mut(producer) {
            if now_ns.saturating_sub(*last) >= every_ns {
                *last = now_ns;
                let _ = e.write(1);
            }
        }
    }

    fn apply(&self, merger: &mut Merger<B>, m: Message<B>) {
        match m {
            Message::Batch(p, b) => {
                if let Some(empty) = merger.push(p, b) {
                    let _ = self.spares[p].send(empty);
                }
            }
            Message::Complete(p, ns) => merger.complete_until(p, ns),
            Message::End(p) => merger.end(p),
        }
    }
}

/// The merger thread's loop: takes messages, emits what may go, until
/// every producer has ended; then emits the rest. `now` gives the time
/// (normally [`realtime_ns`]); the loop wakes at least every `tick` to let
/// the window release items while no message comes.
pub fn run<B: Batch, S: Sink<B>>(
    mut inbox: Inbox<B>,
    merger: &mut Merger<B>,
    sink: &mut S,
    tick: Duration,
    mut now: impl FnMut() -> u64,
) -> MergeStats {
    let tick_ns = tick.as_nanos() as u64;
    // What an idle producer's answer lets go: items older than this
    // before now (complete_until of the block timeout, the tick).
    let idle_lag = 2 * tick_ns;
    let mut timeout = tick;
    let mut lagging = Vec::new();
    while !merger.all_ended() {
        if !inbox.receive(merger, Some(timeout)) {
            break;
        }
        let at = now();
        if merger.release(at, &mut inbox.recycling(sink)) > 0 {
            inbox.recycling(sink).round();
        }
        timeout = tick;
        if let Some((ts, producer)) = merger.head() {
            let askable = ts.saturating_add(idle_lag);
            if askable <= at {
                lagging.clear();
                lagging.extend(merger.lagging(ts, producer));
                for &q in &lagging {
                    inbox.ask(q, at, tick_ns);
                }
            } else {
                // Back when the head may be asked about, not a tick later.
                timeout = Duration::from_nanos((askable - at).clamp(1_000_000, tick_ns));
            }
        }
    }
    let mut sink = inbox.recycling(sink);
    merger.flush(&mut sink);
    sink.round();
    merger.stats()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Items are (timestamp, size, tag).
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    struct V(Vec<(u64, usize, u32)>);

    impl Batch for V {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn timestamp(&self, i: usize) -> u64 {
            self.0[i].0
        }
        fn size(&self, i: usize) -> usize {
            self.0[i].1
        }
    }

    fn batch(items: &[(u64, u32)]) -> V {
        V(items.iter().map(|&(t, tag)| (t, 10, tag)).collect())
    }

    #[derive(Default)]
    struct Collect {
        out: Vec<(usize, u64, u32)>,
        done: usize,
        rounds: usize,
    }

    impl Sink<V> for Collect {
        fn emit(&mut self, producer: usize, batch: &V, index: usize) {
            let (t, _, tag) = batch.0[index];
            self.out.push((producer, t, tag));
        }
        fn done(&mut self, _producer: usize, _batch: V) {
            self.done += 1;
        }
        fn round(&mut self) {
            self.rounds += 1;
        }
    }

    impl Collect {
        fn times(&self) -> Vec<u64> {
            self.out.iter().map(|o| o.1).collect()
        }
    }

    const LIMITS: Limits = Limits {
        window_ns: 1_000,
        max_bytes: 1 << 20,
    };

    #[test]
    fn merges_in_timestamp_order() {
        let mut m = Merger::new(3, LIMITS);
        let mut sink = Collect::default();
        m.push(0, batch(&[(1, 0), (4, 1), (9, 2)]));
        m.push(1, batch(&[(2, 0), (3, 1)]));
        m.push(2, batch(&[(5, 0)]));
        m.push(1, batch(&[(8, 2), (12, 3)]));
        m.push(2, batch(&[(6, 1), (7, 2), (13, 3)]));
        // Frontiers 9, 12, 13: up to 9 is safe.
        assert_eq!(m.release(0, &mut sink), 9);
        assert_eq!(sink.times(), (1..=9).collect::<Vec<_>>());
        for p in 0..3 {
            m.end(p);
        }
        m.release(0, &mut sink);
        assert_eq!(sink.times(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13]);
        assert_eq!(sink.done, 5);
        assert_eq!(m.pending_bytes(), 0);
        let s = m.stats();
        assert_eq!((s.items, s.by_window, s.forced, s.late), (11, 0, 0, 0));
    }

    #[test]
    fn equal_timestamps_keep_producer_then_arrival_order() {
        let mut m = Merger::new(2, LIMITS);
        let mut sink = Collect::default();
        m.push(1, batch(&[(5, 0), (5, 1)]));
        m.push(0, batch(&[(5, 2), (5, 3)]));
        m.end(0);
        m.end(1);
        m.release(0, &mut sink);
        let order: Vec<(usize, u32)> = sink.out.iter().map(|o| (o.0, o.2)).collect();
        assert_eq!(order, [(0, 2), (0, 3), (1, 0), (1, 1)]);
    }

    /// A producer complete up to T may still hand in an item stamped T,
    /// which goes before an equal item of a later producer: that one
    /// waits; an equal item of an earlier producer does not.
    #[test]
    fn ties_with_a_frontier_go_by_producer() {
        let mut m = Merger::new(2, LIMITS);
        let mut sink = Collect::default();
        m.push(1, batch(&[(5, 0)]));
        m.complete_until(0, 5);
        assert_eq!(m.release(0, &mut sink), 0);
        assert_eq!(m.head(), Some((5, 1)));
        assert_eq!(m.lagging(5, 1).collect::<Vec<_>>(), [0]);
        // Producer 0's 5 sorts before anything producer 1 may still hand
        // in at 5: it goes. Producer 1's waits while producer 0 may still
        // hand in another 5.
        m.push(0, batch(&[(5, 1)]));
        assert_eq!(m.release(0, &mut sink), 1);
        m.complete_until(0, 6);
        m.release(0, &mut sink);
        let order: Vec<(usize, u32)> = sink.out.iter().map(|o| (o.0, o.2)).collect();
        assert_eq!(order, [(0, 1), (1, 0)]);
        assert_eq!(m.head(), None);
    }

    /// Released stream by stream, the same items go as in order, each
    /// producer's a prefix: also when producers hand in items out of
    /// order, and with ties. Over `limit`, nothing goes.
    #[test]
    fn unordered_release_lets_the_same_items_go() {
        #[derive(Default)]
        struct PerProducer(Vec<usize>);
        impl Sink<V> for PerProducer {
            fn emit(&mut self, producer: usize, _batch: &V, _index: usize) {
                self.0[producer] += 1;
            }
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut released = 0;
        for round in 0..500 {
            let producers = 2 + next(3) as usize;
            let (mut ordered, mut unordered) = (
                Merger::new(producers, LIMITS),
                Merger::new(producers, LIMITS),
            );
            // Above 0: at now 0 the window lets nothing go.
            let mut clock = vec![10u64; producers];
            for _ in 0..next(12) {
                let p = next(producers as u64) as usize;
                if next(4) == 0 {
                    let until = clock[p] + next(5);
                    ordered.complete_until(p, until);
                    unordered.complete_until(p, until);
                    continue;
                }
                let items: Vec<(u64, u32)> = (0..1 + next(6))
                    .map(|i| {
                        // Mostly rising, sometimes back a little (a
                        // stream fed by several cpus), often equal.
                        clock[p] += next(3);
                        let back = if round % 3 == 0 { next(3) } else { 0 };
                        (clock[p].saturating_sub(back), i as u32)
                    })
                    .collect();
                ordered.push(p, batch(&items));
                unordered.push(p, batch(&items));
            }
            let (mut a, mut b) = (
                PerProducer(vec![0; producers]),
                PerProducer(vec![0; producers]),
            );
            let n = ordered.release(0, &mut a);
            released += usize::from(n > 0);
            if n > 0 {
                assert_eq!(unordered.release_unordered(n as u64 - 1, &mut b), None);
            }
            assert_eq!(unordered.release_unordered(n as u64, &mut b), Some(n));
            assert_eq!(a.0, b.0, "round {round}");
            assert_eq!(ordered.pending_bytes(), unordered.pending_bytes());
            assert_eq!(ordered.head(), unordered.head(), "round {round}");
        }
        assert!(released > 200, "{released} rounds released anything");
    }

    #[test]
    fn waits_for_a_producer_that_has_said_nothing() {
        let mut m = Merger::new(2, LIMITS);
        let mut sink = Collect::default();
        m.push(0, batch(&[(10, 0), (20, 1)]));
        assert_eq!(m.release(500, &mut sink), 0);
        // Producer 1 shows it has nothing older than 15.
        m.push(1, batch(&[(15, 0)]));
        m.release(500, &mut sink);
        assert_eq!(sink.times(), [10, 15]);
        // Its watermark lets 20 go too.
        m.complete_until(1, 25);
        m.release(500, &mut sink);
        assert_eq!(sink.times(), [10, 15, 20]);
        assert_eq!(m.stats().by_window, 0);
    }

    #[test]
    fn a_stalled_producer_holds_nothing_back_past_the_window() {
        let mut m = Merger::new(3, LIMITS);
        let mut sink = Collect::default();
        m.push(0, batch(&[(100, 0), (900, 1), (1500, 2)]));
        m.push(1, batch(&[(200, 0), (1600, 1)]));
        // Producer 2 is silent. At 1950 the window (1000) lets go of what
        // is older than 950.
        assert_eq!(m.release(1950, &mut sink), 3);
        assert_eq!(sink.times(), [100, 200, 900]);
        assert_eq!(m.stats().by_window, 3);
        // Still before the window for 1500.
        assert_eq!(m.release(2400, &mut sink), 0);
        assert_eq!(m.release(2500, &mut sink), 1);
        // The stalled producer wakes with an old packet: written at once,
        // counted late, and its newer one waits for the others again.
        m.push(2, batch(&[(50, 0), (1700, 1)]));
        m.release(2500, &mut sink);
        assert_eq!(sink.times(), [100, 200, 900, 1500, 50]);
        let s = m.stats();
        assert_eq!((s.late, s.by_window), (1, 4));
        // Producer 0 is idle: its watermark, not the window, lets 1600 go.
        m.complete_until(0, 1650);
        m.release(2500, &mut sink);
        assert_eq!(sink.times(), [100, 200, 900, 1500, 50, 1600]);
        assert_eq!(m.stats().by_window, 4);
        m.end(0);
        m.end(1);
        m.end(2);
        m.release(2500, &mut sink);
        assert_eq!(sink.times().last(), Some(&1700));
    }

    #[test]
    fn memory_bound_gives_up_order_for_the_oldest() {
        let mut m = Merger::new(
            2,
            Limits {
                window_ns: u64::MAX,
                max_bytes: 35,
            },
        );
        let mut sink = Collect::default();
        // Producer 1 is silent; 5 items of 10 bytes wait from producer 0.
        m.push(0, batch(&[(1, 0), (2, 1), (3, 2), (4, 3), (5, 4)]));
        assert_eq!(m.release(0, &mut sink), 2);
        assert_eq!(sink.times(), [1, 2]);
        assert_eq!(m.pending_bytes(), 30);
        assert_eq!(m.stats().forced, 2);
        assert_eq!(m.stats().peak_bytes, 50);
        // Under the bound nothing more goes early.
        assert_eq!(m.release(0, &mut sink), 0);
        m.end(0);
        m.end(1);
        m.release(0, &mut sink);
        assert_eq!(sink.times(), [1, 2, 3, 4, 5]);
        assert_eq!(m.stats().forced, 2);
    }

    #[test]
    fn end_of_stream_flush_emits_everything_in_order() {
        let mut m = Merger::new(3, LIMITS);
        let mut sink = Collect::default();
        m.push(0, batch(&[(30, 0), (31, 1)]));
        m.push(2, batch(&[(10, 0), (40, 1)]));
        m.push(2, batch(&[(41, 2)]));
        // Producer 1 never ends (a worker that died): flush anyway.
        m.end(0);
        m.end(2);
        assert!(!m.all_ended());
        assert_eq!(m.release(0, &mut sink), 0);
        assert_eq!(m.flush(&mut sink), 5);
        assert_eq!(sink.times(), [10, 30, 31, 40, 41]);
        assert_eq!(sink.done, 3);
        assert_eq!(m.pending_bytes(), 0);
    }

    #[test]
    fn empty_batches_come_back() {
        let mut m: Merger<V> = Merger::new(1, LIMITS);
        assert_eq!(m.push(0, V::default()), Some(V::default()));
        assert_eq!(m.pending_bytes(), 0);
    }

    #[test]
    fn window_for_the_block_timeout() {
        let l = Limits::for_retire_ms(20);
        assert_eq!(l.window_ns, 100_000_000);
        assert_eq!(complete_until(1_000_000_000, 20), 960_000_000);
        assert_eq!(complete_until(5, 20), 0);
    }

    /// Threads feed the merger thread's loop: the output is in order by
    /// knowledge alone (the clock stands still, so the window never acts),
    /// the loop ends when every worker has ended, and batches come back.
    #[test]
    fn threaded_feeds_merge_in_order() {
        let producers = 3;
        let (feeds, inbox) = channel::<V>(producers, 4);
        let per = 200u64;
        let workers: Vec<_> = feeds
            .into_iter()
            .map(|feed| {
                std::thread::spawn(move || {
                    let p = feed.producer() as u64;
                    let mut reused = 0;
                    for b in 0..per / 10 {
                        let mut v = match feed.spare() {
                            Some(mut v) => {
                                reused += 1u32;
                                v.0.clear();
                                v
                            }
                            None => V::default(),
                        };
                        for i in 0..10 {
                            // Interleaved across producers: p, p+3, ...
                            let t = ((b * 10 + i) * 3 + p) * 10;
                            v.0.push((t, 100, p as u32));
                        }
                        assert!(feed.send(v));
                        feed.complete_until(((b * 10 + 9) * 3 + p) * 10);
                    }
                    feed.end();
                    reused
                })
            })
            .collect();
        let mut merger = Merger::new(producers, LIMITS);
        let mut sink = Collect::default();
        let stats = run(
            inbox,
            &mut merger,
            &mut sink,
            Duration::from_millis(5),
            || 0,
        );
        let reused: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        let times = sink.times();
        assert_eq!(times.len() as u64, per * producers as u64);
        assert!(times.windows(2).all(|w| w[0] < w[1]), "out of order");
        assert_eq!((stats.by_window, stats.forced, stats.late), (0, 0, 0));
        assert!(sink.rounds >= 1);
        // Whether batches came back in time to be reused depends on
        // scheduling; that they can is shown by the recycling test below.
        let _ = reused;
    }

    #[test]
    fn spare_batches_are_handed_back() {
        let (feeds, inbox) = channel::<V>(1, 8);
        let feed = &feeds[0];
        assert!(feed.send(batch(&[(1, 7), (2, 8)])));
        assert!(feed.send(V::default()));
        let mut merger = Merger::new(1, LIMITS);
        let mut sink = Collect::default();
        let mut recycling = Recycling {
            sink: &mut sink,
            spares: &inbox.spares,
        };
        for _ in 0..2 {
            let m = inbox.rx.try_recv().unwrap();
            inbox.apply(&mut merger, m);
        }
        merger.end(0);
        merger.release(0, &mut recycling);
        // The empty batch came back at once, the full one once emitted.
        assert_eq!(feed.spare(), Some(V::default()));
        assert_eq!(feed.spare(), Some(batch(&[(1, 7), (2, 8)])));
        assert_eq!(feed.spare(), None);
    }

    /// A producer whose worker sleeps (it reports nothing) holds another's
    /// items back: once they are older than its answer could let go, the
    /// merger asks it (its eventfd), and its answer lets them go, long
    /// before the window would. A producer that was not in the way is not
    /// asked.
    #[test]
    fn an_idle_producer_is_asked_for_its_watermark() {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let (mut feeds, inbox) = channel::<V>(3, 8);
        let tick = Duration::from_millis(20);
        let now = 10_000_000_000u64;
        // Older than two ticks, well inside the 100 ms window.
        let old = now - 50_000_000;
        let third = feeds.pop().unwrap();
        let idle = feeds.pop().unwrap();
        let busy = feeds.pop().unwrap();
        // The third one has said it is complete past the item.
        third.complete_until(now);
        assert!(busy.send(batch(&[(old, 1)])));
        let merging = std::thread::spawn(move || {
            let mut merger = Merger::new(3, Limits::for_retire_ms(20));
            let mut sink = Collect::default();
            run(inbox, &mut merger, &mut sink, tick, || now);
            sink
        });
        // Waits for the question (no timeout: the test hangs rather than
        // passes if it never comes).
        let fd = idle.ask_fd().unwrap();
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::NONE).unwrap();
        idle.answered();
        let third_fd = third.ask_fd().unwrap();
        let mut fds = [PollFd::new(third_fd, PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::ZERO).unwrap(), 0, "asked");
        // Its ring is empty: nothing older than now minus two ticks.
        idle.complete_until(complete_until(now, 20));
        // The item goes on that answer: the clock stands still, so not by
        // the window; it is out before anyone ends.
        let mut waited = 0;
        while busy.spare().is_none() {
            std::thread::sleep(Duration::from_millis(1));
            waited += 1;
            assert!(waited < 60_000, "the item never went");
        }
        for f in [busy, idle, third] {
            f.end();
        }
        let sink = merging.join().unwrap();
        assert_eq!(sink.times(), [old]);
    }
}
