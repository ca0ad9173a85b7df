//! `-c N`: the capture holds the first N packets in timestamp order
//! across streams, not whichever N the kernel's rings handed over first.
//!
//! The kernel hands a ring's packets over a block at a time, when the
//! block is full or its timer retires it, each ring on its own: taking
//! packets from a shared budget as blocks come in (as this program once
//! did) splits N between the streams by which ring's block came first, so
//! with traffic spread evenly over two cpus `-c 20` gave 12/8, 0/20 or
//! 20/0. Which packets came first is known only from their timestamps,
//! and only once every stream has shown it has nothing older to come.
//!
//! So, with several streams:
//!
//! - each worker hands the coordinator thread the timestamps of each ring
//!   block's packets (8 bytes a packet, one message a block), and when
//!   asked, reports its ring empty if it finds it so (a watermark, see
//!   [`merge::complete_until`]);
//! - the coordinator merges them by timestamp ([`merge::Merger`]: per
//!   stream in ring order, ties by stream order), counts the first N in
//!   that order, and publishes per stream how many of its packets, in
//!   its ring order, are among them (an atomic per stream, [`Verdict`]);
//!   when the N-th is counted it stops the capture. While all that may
//!   go fits within N, it is counted stream by stream
//!   ([`merge::Merger::release_unordered`]): the count needs the order
//!   only at the cut, and a flood on every cpu interleaves the streams
//!   packet by packet, a heap operation each in order;
//! - a worker whose consumers look at packets (files, flows, the merged
//!   file) keeps a copy of each packet handed in until its fate is known,
//!   then hands those let in to its consumers; a count-only worker copies
//!   nothing. Ring blocks are never held: the kernel fills a ring's
//!   blocks strictly in order, so one block held back stops the whole
//!   ring (it drops until the block comes back).
//!
//! Knowledge, not a time window, decides: a packet is let in only when
//! every other stream has shown it has nothing older still to come.
//! A stream that is idle says nothing (its worker sleeps), so while a
//! decision waits on it, the coordinator wakes its worker (a *nudge*, at
//! most once per block timeout, and only once what the worker could say,
//! "empty two block timeouts ago", is past the packet waiting), which
//! looks at its ring and reports it empty. Decisions therefore come about
//! two block timeouts (40 ms) after a packet when another stream is idle,
//! with the next block when all are busy. What the workers hold
//! meanwhile is bounded: past [`merge::DEFAULT_MAX_BYTES`] of copies
//! waiting, the oldest are let in without waiting (counted, and said on
//! stderr, as order assumed rather than known).
//!
//! Wakeups are what such a hand-over costs most (measured under a
//! two-cpu flood: a context switch each): a worker sends one message a
//! block, tells its watermark only when asked, and is woken for the
//! count only when it sleeps holding copies and all of them are decided.
//! A count-only worker is never woken but by its ring, a nudge or the
//! end.
//!
//! With one stream its ring order is the order: the worker counts on its
//! own ([`Gate`] alone), exactly as cheaply as before, with no copies and
//! no coordinator. Without `-c` none of this exists: no per-packet work.
//!
//! What "timestamp order" can mean: a stream's packets are taken in its
//! ring order, a prefix of its ring, so that its files and counts are a
//! plain cut. Within one cpu's ring the kernel stamps packets as it
//! writes them (tpacket_rcv, unless the packet carries an earlier software
//! stamp), one after the other, so the ring is in timestamp order and the
//! cut is exact. A stream fed by several cpus (the queue and numa
//! vantages, or a packet stamped earlier on another cpu, as with RPS when
//! some socket asked for receive timestamps) can hold packets out of
//! timestamp order by the microseconds between stamping and writing: the
//! cut is then the merge of the streams in their ring order, and a packet
//! that turns out older than one of another stream already counted is
//! counted as out of order (said on stderr).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::consumers::merged::merge::{self, Batch, Inbox, Limits, Merger, Sink};

mod gate;

pub use gate::Gate;
use gate::Merged;

/// Messages the channel to the coordinator holds per stream (each a ring
/// block's timestamps): a worker blocks only if the coordinator falls this
/// far behind.
const CHANNEL_PER_STREAM: usize = 16;

/// One ring block's timestamps, and for the memory bound the bytes each
/// packet's copy holds in its worker (none without copies: then the
/// timestamp's own 8 bytes). The coordinator reads them from another
/// cpu's cache: the fewer bytes the better.
#[derive(Default)]
pub struct Stamps {
    ts: Vec<u64>,
    /// Empty without copies.
    sizes: Vec<u32>,
}

impl Stamps {
    fn clear(&mut self) {
        self.ts.clear();
        self.sizes.clear();
    }
}

impl Batch for Stamps {
    fn len(&self) -> usize {
        self.ts.len()
    }
    fn timestamp(&self, i: usize) -> u64 {
        self.ts[i]
    }
    fn size(&self, i: usize) -> usize {
        self.sizes.get(i).map_or(8, |&s| s as usize)
    }
    fn sizes(&self, range: std::ops::Range<usize>) -> usize {
        if self.sizes.is_empty() {
            8 * range.len()
        } else {
            self.sizes[range].iter().map(|&s| s as usize).sum()
        }
    }
}

/// What the coordinator publishes: per stream, how many of its packets (in
/// its ring order) are among the first N; whether that is final. Each
/// stream's worker has an eventfd the coordinator writes when its count
/// grows, when it wants the worker's watermark (a nudge) and at the end.
pub struct Verdict {
    allowed: Vec<AtomicU64>,
    wake: Vec<EventFd>,
    /// Per stream: its worker sleeps holding copies the count has not
    /// decided on, and wants to be woken once the count reaches this
    /// (all it handed in; 0: not waiting). A busy worker, or one that
    /// holds none (count only), is not woken for every count, and one
    /// that waits is woken once, not for every part decided.
    waiting: Vec<AtomicU64>,
    /// Per stream: the coordinator wants its watermark (a nudge). A
    /// worker that finds its ring empty tells only when asked: otherwise
    /// every empty ring under a flood would wake the coordinator for a
    /// watermark it cannot use (see [`Coordinator::run`]).
    asked: Vec<AtomicBool>,
    done: AtomicBool,
}

impl Verdict {
    /// For `-c count` over `streams` streams: None unless there is a
    /// count and more than one stream (one stream counts alone).
    pub fn for_count(count: u64, streams: usize) -> io::Result<Option<Verdict>> {
        if count == 0 || streams < 2 {
            return Ok(None);
        }
        let wake = (0..streams)
            .map(|_| {
                EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            })
            .collect::<nix::Result<Vec<_>>>()?;
        Ok(Some(Verdict {
            allowed: (0..streams).map(|_| AtomicU64::new(0)).collect(),
            wake,
            waiting: (0..streams).map(|_| AtomicU64::new(0)).collect(),
            asked: (0..streams).map(|_| AtomicBool::new(false)).collect(),
            done: AtomicBool::new(false),
        }))
    }

    fn wake(&self, stream: usize) {
        // A full counter (never: 2^64 - 2 wakeups) would only mean the
        // worker is woken already.
        let _ = self.wake[stream].write(1);
    }

    /// Asks a stream's worker for its watermark.
    fn nudge(&self, stream: usize) {
        self.asked[stream].store(true, Ordering::Release);
        self.wake(stream);
    }

    fn publish(&self, stream: usize, allowed: u64) {
        // SeqCst, with the worker's in [`Gate::sleep`]: either it sees
        // the new count before it sleeps, or this sees it waiting.
        self.allowed[stream].store(allowed, Ordering::SeqCst);
        let until = self.waiting[stream].load(Ordering::SeqCst);
        if until != 0
            && allowed >= until
            && self.waiting[stream]
                .compare_exchange(until, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            self.wake(stream);
        }
    }

    /// Nothing more will be let in: every worker may end.
    fn finish(&self) {
        self.done.store(true, Ordering::Release);
        for s in 0..self.wake.len() {
            self.wake(s);
        }
    }

    fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }
}

/// Sets the verdict final when the coordinator ends, also by unwinding:
/// workers waiting for it must never wait for a thread that is gone.
struct Finish<'a>(&'a Verdict);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// What the coordinator did, for `-v` and the notes on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountStats {
    /// Packets let in (N, unless the capture stopped before).
    pub taken: u64,
    /// Let in at the memory bound, before every stream had shown it had
    /// nothing older: order assumed, not known.
    pub forced: u64,
    /// Let in after a packet of another stream with a later timestamp.
    pub late: u64,
    /// The most bytes of copies that waited at once (timestamps only,
    /// without copies).
    pub peak_bytes: usize,
    /// Times an idle stream's worker was woken for its watermark.
    pub nudges: u64,
}

impl CountStats {
    /// The `-v` line.
    pub fn describe(&self) -> String {
        format!(
            "-c: {} packets let in by timestamp across streams, {} at the {} MiB bound, {} out of order; \
             at most {} KiB waited; {} idle workers woken",
            self.taken,
            self.forced,
            merge::DEFAULT_MAX_BYTES >> 20,
            self.late,
            self.peak_bytes / 1024,
            self.nudges
        )
    }

    /// Lines for stderr when the order was not kept or not known.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        // Lines the original did not print: `1 packet ... was`.
        let packets = |n: u64| match n {
            1 => ("1 packet".to_string(), "was"),
            n => (format!("{n} packets"), "were"),
        };
        if self.late > 0 {
            notes.push(format!(
                "{} counted by -c came out of timestamp order across streams.",
                packets(self.late).0
            ));
        }
        if self.forced > 0 {
            let (n, verb) = packets(self.forced);
            notes.push(format!(
                "{n} counted by -c {verb} let in at the {} MiB bound, before every stream had shown it had nothing older.",
                merge::DEFAULT_MAX_BYTES >> 20
            ));
        }
        notes
    }
}

/// The sink of the coordinator's merge: counts the first N.
struct Budget {
    left: u64,
    allowed: Vec<u64>,
    published: Vec<u64>,
    /// The latest (timestamp, stream) let in.
    newest: Option<(u64, usize)>,
    late: u64,
    /// During an unordered release ([`Merger::release_unordered`]): the
    /// latest let in before it, the only one the runs can be compared
    /// with (they come stream by stream, not in order).
    unordered: Option<Option<(u64, usize)>>,
}

impl Sink<Stamps> for Budget {
    fn emit(&mut self, stream: usize, batch: &Stamps, index: usize) {
        self.emit_run(stream, batch, index..index + 1);
    }

    /// A run of one stream's packets: counted together, up to N.
    fn emit_run(&mut self, stream: usize, batch: &Stamps, range: std::ops::Range<usize>) {
        let take = (range.len() as u64).min(self.left) as usize;
        if take == 0 {
            return;
        }
        let run = &batch.ts[range.start..range.start + take];
        // Out of order: older than the newest packet of another stream
        // let in before. Once one of the run is not, the newest is this
        // stream's and the rest of the run follows it in ring order.
        let newest_run = run.iter().copied().max().unwrap_or(0);
        if let Some(before) = self.unordered {
            if let Some((t, _)) = before.filter(|&(_, s)| s != stream) {
                self.late += run.iter().filter(|&&ts| ts < t).count() as u64;
            }
            self.newest = self.newest.max(Some((newest_run, stream)));
            self.allowed[stream] += take as u64;
            self.left -= take as u64;
            return;
        }
        match self.newest {
            Some((t, s)) if s != stream => {
                let older = run.iter().take_while(|&&ts| ts < t).count();
                self.late += older as u64;
                if older < run.len() {
                    self.newest = Some((newest_run, stream));
                }
            }
            Some((t, _)) => self.newest = Some((t.max(newest_run), stream)),
            None => self.newest = Some((newest_run, stream)),
        }
        self.allowed[stream] += take as u64;
        self.left -= take as u64;
    }
}

impl Budget {
    /// Publishes the counts that grew since the last time.
    fn publish(&mut self, verdict: &Verdict) {
        for (s, (&now, was)) in self.allowed.iter().zip(&mut self.published).enumerate() {
            if now != *was {
                *was = now;
                verdict.publish(s, now);
            }
        }
    }
}

/// The coordinator thread's work, before it starts.
pub struct Coordinator<'a> {
    inbox: Inbox<Stamps>,
    verdict: &'a Verdict,
    count: u64,
    streams: usize,
    retire_ms: u32,
}

/// The gates of a capture's streams (None without `-c`), and the
/// coordinator when there is one (`-c` and more than one stream).
pub fn gates<'a>(
    count: u64,
    verdict: Option<&'a Verdict>,
    streams: usize,
    retire_ms: u32,
) -> (Vec<Option<Gate<'a>>>, Option<Coordinator<'a>>) {
    if count == 0 {
        return ((0..streams).map(|_| None).collect(), None);
    }
    let Some(verdict) = verdict else {
        return (
            (0..streams)
                .map(|_| Some(Gate::Alone { left: count }))
                .collect(),
            None,
        );
    };
    let (feeds, inbox) = merge::channel(streams, CHANNEL_PER_STREAM * streams);
    let gates = feeds
        .into_iter()
        .enumerate()
        .map(|(slot, feed)| {
            Some(Gate::Merged(Box::new(Merged::new(
                slot, feed, verdict, retire_ms,
            ))))
        })
        .collect();
    let coordinator = Coordinator {
        inbox,
        verdict,
        count,
        streams,
        retire_ms,
    };
    (gates, Some(coordinator))
}

impl Coordinator<'_> {
    /// Merges the streams' timestamps until N are counted (then calls
    /// `stop`) or every stream has ended (then counts what it handed in,
    /// in order, up to N). Publishes the counts as they grow, and sets the
    /// verdict final when it returns.
    pub fn run(self, stop: impl FnOnce()) -> CountStats {
        let finish = Finish(self.verdict);
        // No window: a stream that says nothing is asked (nudged), never
        // assumed to have nothing older. The memory bound stays.
        let limits = Limits {
            window_ns: u64::MAX,
            max_bytes: merge::DEFAULT_MAX_BYTES,
        };
        let mut merger = Merger::new(self.streams, limits);
        let mut budget = Budget {
            left: self.count,
            allowed: vec![0; self.streams],
            published: vec![0; self.streams],
            newest: None,
            late: 0,
            unordered: None,
        };
        let tick = Duration::from_millis(u64::from(self.retire_ms.max(1)));
        let mut nudged: Vec<Option<Instant>> = vec![None; self.streams];
        let mut nudges = 0;
        // Asleep until a message comes while nothing waits.
        let mut timeout = None;
        loop {
            let connected = self.inbox.receive(&mut merger, timeout);
            let ended = !connected || merger.all_ended();
            // What may go, stream by stream when all of it is within N
            // (the count needs no order across streams then), else in
            // order, to find the exact cut.
            budget.unordered = Some(budget.newest);
            let left = budget.left;
            let counted = !ended
                && merger
                    .release_unordered(left, &mut self.inbox.recycling(&mut budget))
                    .is_some();
            budget.unordered = None;
            if !counted {
                let mut sink = self.inbox.recycling(&mut budget);
                if ended {
                    merger.flush(&mut sink);
                } else {
                    merger.release(merge::realtime_ns(), &mut sink);
                }
            }
            budget.publish(self.verdict);
            if budget.left == 0 || ended {
                break;
            }
            timeout = None;
            if let Some((ts, stream)) = merger.head() {
                // What a worker finding its ring empty now can say: only
                // once that is past the packet waiting is a nudge any
                // use (under a flood it never is: batches move the
                // streams on). Until then, wake when it will be.
                let answer = merge::complete_until(merge::realtime_ns(), self.retire_ms);
                if answer < ts {
                    timeout = Some(tick.min(Duration::from_nanos(ts - answer)));
                    continue;
                }
                timeout = Some(tick);
                let now = Instant::now();
                for q in merger.lagging(ts, stream) {
                    if nudged[q].map_or(true, |t| now.duration_since(t) >= tick) {
                        nudged[q] = Some(now);
                        nudges += 1;
                        self.verdict.nudge(q);
                    }
                }
            }
        }
        let stats = merger.stats();
        drop(finish);
        if budget.left == 0 {
            stop();
        }
        CountStats {
            taken: self.count - budget.left,
            forced: stats.forced,
            late: budget.late,
            peak_bytes: stats.peak_bytes,
            nudges,
        }
    }
}

#[cfg(test)]
mod tests {
    /// The notes say `1 packet` for one, as the lines the original did
    /// not print do.
    #[test]
    fn notes_agree_with_their_counts() {
        let one = super::CountStats {
            late: 1,
            forced: 1,
            ..Default::default()
        };
        assert_eq!(
            one.notes(),
            [
                "1 packet counted by -c came out of timestamp order across streams.".to_string(),
                format!(
                    "1 packet counted by -c was let in at the {} MiB bound, before every stream had shown it had nothing older.",
                    super::merge::DEFAULT_MAX_BYTES >> 20
                ),
            ]
        );
        let two = super::CountStats {
            late: 2,
            ..Default::default()
        };
        assert_eq!(
            two.notes(),
            ["2 packets counted by -c came out of timestamp order across streams."]
        );
    }

    use super::*;
    use crate::consumers::merged::merge::Feed;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;

    fn stamps(ts: &[u64]) -> Stamps {
        Stamps {
            ts: ts.to_vec(),
            sizes: Vec::new(),
        }
    }

    /// The coordinator counts the first N by timestamp, whichever stream
    /// handed its block in first, and publishes them per stream.
    #[test]
    fn the_first_n_by_timestamp_whoever_comes_first() {
        let verdict = Verdict::for_count(15, 2).unwrap().unwrap();
        let (mut gates, coordinator) = gates(15, Some(&verdict), 2, 20);
        let coordinator = coordinator.unwrap();
        let feed = |g: &mut Option<Gate>| match g.take() {
            Some(Gate::Merged(m)) => m.feed.unwrap(),
            _ => unreachable!(),
        };
        let f1 = feed(&mut gates[1]);
        let f0 = feed(&mut gates[0]);
        let stopped = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let c = s.spawn(|| coordinator.run(|| stopped.store(true, Ordering::SeqCst)));
            // Stream 1's block (20..30) comes in first; stream 0 holds
            // 0..10 and 30..40.
            f1.send(stamps(&(20..30).collect::<Vec<_>>()));
            f0.send(stamps(&(0..10).collect::<Vec<_>>()));
            f0.send(stamps(&(30..40).collect::<Vec<_>>()));
            let stats = c.join().unwrap();
            assert_eq!(stats.taken, 15);
            assert_eq!(stats.late, 0);
        });
        assert!(stopped.load(Ordering::SeqCst));
        assert!(verdict.is_done());
        assert_eq!(verdict.allowed[0].load(Ordering::SeqCst), 10);
        assert_eq!(verdict.allowed[1].load(Ordering::SeqCst), 5);
    }

    /// A stream that has said nothing holds everything back; its
    /// watermark lets the others' packets in. Ending early counts what
    /// was handed in, in order.
    #[test]
    fn waits_for_every_stream_then_ends_with_what_there_is() {
        let verdict = Verdict::for_count(100, 3).unwrap().unwrap();
        let (mut gates, coordinator) = gates(100, Some(&verdict), 3, 20);
        let coordinator = coordinator.unwrap();
        let mut feeds: Vec<Feed<Stamps>> = gates
            .iter_mut()
            .map(|g| match g.take() {
                Some(Gate::Merged(m)) => m.feed.unwrap(),
                _ => unreachable!(),
            })
            .collect();
        std::thread::scope(|s| {
            let c = s.spawn(|| coordinator.run(|| panic!("the count is not reached")));
            feeds[0].send(stamps(&[5, 6]));
            feeds[1].send(stamps(&[7]));
            // Stream 2 is idle: it is nudged, and answers.
            let mut fds = [PollFd::new(verdict.wake[2].as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::NONE).unwrap();
            assert!(verdict.asked[2].load(Ordering::SeqCst));
            assert_eq!(verdict.allowed[0].load(Ordering::SeqCst), 0);
            feeds[2].complete_until(6);
            // 5 and 6 are let in: 6 ties with stream 2's watermark, and a
            // 6 stream 2 may still hand in comes after stream 0's (ties
            // go by stream order). Stream 1's 7 waits for stream 2.
            while verdict.allowed[0].load(Ordering::SeqCst) < 2 {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(verdict.allowed[1].load(Ordering::SeqCst), 0);
            for f in feeds.drain(..) {
                f.end();
            }
            let stats = c.join().unwrap();
            assert_eq!(stats.taken, 3);
            assert!(stats.nudges >= 1);
        });
        assert!(verdict.is_done());
        assert_eq!(verdict.allowed[1].load(Ordering::SeqCst), 1);
    }

    /// Counted out of order: older than a packet of another stream
    /// counted before; up to N only.
    #[test]
    fn out_of_order_and_the_budget() {
        let mut b = Budget {
            left: 5,
            allowed: vec![0; 2],
            published: vec![0; 2],
            newest: None,
            late: 0,
            unordered: None,
        };
        let run = |b: &mut Budget, stream: usize, ts: &[u64]| {
            let s = stamps(ts);
            b.emit_run(stream, &s, 0..ts.len());
        };
        run(&mut b, 0, &[10]);
        run(&mut b, 1, &[20]);
        run(&mut b, 0, &[15, 25]);
        assert_eq!((b.late, b.newest), (1, Some((25, 0))));
        run(&mut b, 1, &[22, 30, 40]);
        assert_eq!((b.late, b.left), (2, 0));
        assert_eq!(b.allowed, [3, 2]);
    }

    #[test]
    fn one_stream_counts_alone() {
        assert!(Verdict::for_count(5, 1).unwrap().is_none());
        assert!(Verdict::for_count(0, 4).unwrap().is_none());
        let (mut gates, coordinator) = gates(5, None, 1, 20);
        assert!(coordinator.is_none());
        let g = gates[0].as_mut().unwrap();
        assert_eq!(g.claim(3), Some(3));
        assert!(!g.is_final());
        assert_eq!(g.claim(3), Some(2));
        assert!(g.is_final());
        let (gates, coordinator) = self::gates(0, None, 3, 20);
        assert!(gates.iter().all(Option::is_none) && coordinator.is_none());
    }
}
