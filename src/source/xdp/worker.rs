//! The XDP source's workers: each reads the perf buffers of its cpus,
//! copies the records of one pass, puts them in time order and hands
//! them to its streams' consumers.

use std::ops::ControlFlow;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::consumers::merged::merge;
use crate::consumers::{Consumers, Leftovers, Outcome};
use crate::cpuset::CpuSet;
use crate::packet::Packet;
use crate::source::xdp::record::{PerfReader, XdpRecord};
use crate::source::RETIRE_MS;
use crate::vantage::{Plan, Route, StreamKind};
use crate::worker::{answer_live, test_hooks, Shared};

/// The streams a worker serves and which of its readers' records go to
/// which of them.
pub(super) struct XdpJob<'a> {
    pub(super) readers: Vec<PerfReader>,
    /// (stream slot, consumers), in slot order.
    pub(super) streams: Vec<(usize, Consumers<'a>)>,
    /// Where the worker runs.
    pub(super) pin: Option<CpuSet>,
    /// By queue (one worker for all queues): receive queue -> position in
    /// `streams`, and the position of the no-queue stream (queues beyond
    /// those counted at the start). None: every record to `streams[0]`.
    by_queue: Option<(std::collections::HashMap<u32, usize>, Option<usize>)>,
}

/// The workers: per cpu stream its cpu's reader; per node its cpus'
/// readers; all queues together in one worker that sorts records by
/// queue.
pub(super) fn jobs<'a>(
    plan: &Plan,
    readers: Vec<PerfReader>,
    consumers: Vec<Consumers<'a>>,
) -> Vec<XdpJob<'a>> {
    let mut consumers: Vec<Option<Consumers<'a>>> = consumers.into_iter().map(Some).collect();
    let mut consumers_of = |slot: usize| consumers[slot].take().unwrap_or_default();
    if readers.is_empty() {
        return Vec::new();
    }
    let mut readers: Vec<Option<PerfReader>> = readers.into_iter().map(Some).collect();
    let mut take = |cpus: &dyn Fn(u32) -> bool| -> Vec<PerfReader> {
        readers
            .iter_mut()
            .filter(|r| r.as_ref().is_some_and(|r| cpus(r.cpu())))
            .filter_map(Option::take)
            .collect()
    };
    let mut jobs = Vec::new();
    match plan.route {
        Route::Queue { .. } => {
            let mut queues = std::collections::HashMap::new();
            let mut none = None;
            for (i, s) in plan.streams.iter().enumerate() {
                match s.kind {
                    StreamKind::Queue(q) => {
                        queues.insert(q, i);
                    }
                    _ => none = Some(i),
                }
            }
            jobs.push(XdpJob {
                readers: take(&|_| true),
                streams: (0..plan.streams.len())
                    .map(|s| (s, consumers_of(s)))
                    .collect(),
                pin: None,
                by_queue: Some((queues, none)),
            })
        }
        _ => {
            for (slot, stream) in plan.streams.iter().enumerate() {
                let cpus = stream.pin.clone().unwrap_or_default();
                jobs.push(XdpJob {
                    readers: take(&|c| cpus.contains(c)),
                    streams: vec![(slot, consumers_of(slot))],
                    pin: stream.pin.clone(),
                    by_queue: None,
                });
            }
        }
    }
    jobs
}

/// One worker: reads its perf buffers, hands the frames to its streams'
/// consumers.
pub(super) struct XdpWorker<'a> {
    pub(super) job: XdpJob<'a>,
    pub(super) shared: &'a Shared,
    pub(super) hatype: u16,
}

/// A frame copied out of a perf buffer, until the batch is written.
struct Copied {
    monotonic_ns: u64,
    sec: u32,
    nsec: u32,
    len: u32,
    queue: u32,
    ifindex: u32,
    cpu: u32,
    at: usize,
    caplen: usize,
}

/// Frames taken from the buffers per pass, at most: bounds the copy.
const BATCH: usize = 4096;

impl XdpWorker<'_> {
    /// Reads until stopped, then until the buffers are empty. Returns per
    /// stream slot what its consumers leave and the records that did not
    /// parse.
    pub(super) fn run(mut self) -> Vec<(usize, Leftovers, u64)> {
        let mut arena = Vec::new();
        let mut batch = Vec::new();
        let mut failed = vec![false; self.job.streams.len()];
        // --pcapng: the merged file waits for each stream to show it has
        // nothing older to come.
        let wants_idle = self.job.streams.iter().any(|(_, c)| c.wants_idle());
        // Per stream: the live view's last request it answered.
        let mut answered = vec![0; self.job.streams.len()];
        loop {
            let stopping = self.shared.stopping();
            // Read before the pass: a record still to come was stamped
            // (bpf_ktime_get_ns) before it was written to its buffer, so
            // after a pass that emptied the buffers, what comes is stamped
            // no earlier than a moment before the pass began.
            let began = wants_idle.then(merge::realtime_ns);
            let drained = self.pass(&mut arena, &mut batch, &mut failed);
            if let (Some(began), true) = (began, drained) {
                let until = merge::complete_until(began, RETIRE_MS);
                for (i, (_, consumers)) in self.job.streams.iter().enumerate() {
                    if !failed[i] {
                        consumers.idle(until);
                    }
                }
            }
            // --live with --flows or --repeats: the wait below ends within
            // a block timeout, so a request is answered within the view's
            // wait even when no frame comes.
            self.answer_live(&mut answered, false);
            if stopping && self.job.readers.iter().all(|r| r.is_empty()) {
                break;
            }
            if stopping || failed.iter().all(|f| *f) {
                if failed.iter().all(|f| *f) {
                    break;
                }
                continue;
            }
            self.wait();
        }
        // The live view's last interval holds these frames' flows too.
        self.answer_live(&mut answered, true);
        let malformed: u64 = self.job.readers.iter().map(|r| r.malformed()).sum();
        let mut out = Vec::new();
        for (i, (slot, mut consumers)) in self.job.streams.into_iter().enumerate() {
            if !failed[i] {
                if let Err((path, error)) = consumers.flush() {
                    self.shared.fault_write(path, error);
                }
            }
            out.push((slot, consumers.finish(), if i == 0 { malformed } else { 0 }));
        }
        out
    }

    /// Each stream's side of the live view's request.
    fn answer_live(&mut self, answered: &mut [u64], last: bool) {
        for ((slot, consumers), answered) in self.job.streams.iter_mut().zip(answered) {
            answer_live(self.shared, *slot, consumers, answered, last);
        }
    }

    /// Sleeps until a buffer has records past its wakeup mark, a stop, the
    /// merged file asking whether a stream has nothing older (answered by
    /// the pass after it), or a block timeout (a trickle below the mark
    /// must still be written promptly).
    fn wait(&self) {
        let stop = self.shared.stop_fd().as_fd();
        let mut fds: Vec<PollFd> = self
            .job
            .readers
            .iter()
            .map(|r| PollFd::new(r.fd(), PollFlags::POLLIN))
            .collect();
        fds.push(PollFd::new(stop, PollFlags::POLLIN));
        let asks = fds.len();
        let asked: Vec<_> = self
            .job
            .streams
            .iter()
            .filter_map(|(_, c)| c.ask_fd().map(|fd| (c, fd)))
            .collect();
        fds.extend(
            asked
                .iter()
                .map(|(_, fd)| PollFd::new(*fd, PollFlags::POLLIN)),
        );
        let _ = poll(&mut fds, PollTimeout::from(RETIRE_MS as u16));
        for ((c, _), fd) in asked.iter().zip(&fds[asks..]) {
            if fd.revents().is_some_and(|r| r.contains(PollFlags::POLLIN)) {
                c.answered();
            }
        }
    }

    /// One pass over the buffers: copies what is there (in time order
    /// across this worker's cpus), then writes it stream by stream.
    /// Returns whether it emptied them (took fewer than a batch's worth).
    fn pass(
        &mut self,
        arena: &mut Vec<u8>,
        batch: &mut Vec<(usize, Copied)>,
        failed: &mut [bool],
    ) -> bool {
        arena.clear();
        batch.clear();
        let by_queue = &self.job.by_queue;
        for r in &mut self.job.readers {
            r.read(|rec: XdpRecord| {
                let target = match by_queue {
                    Some((queues, none)) => queues.get(&rec.queue).copied().or(*none),
                    None => Some(0),
                };
                if let Some(t) = target {
                    let at = arena.len();
                    arena.extend_from_slice(rec.data);
                    batch.push((
                        t,
                        Copied {
                            monotonic_ns: rec.monotonic_ns,
                            sec: rec.sec,
                            nsec: rec.nsec,
                            len: rec.len,
                            queue: rec.queue,
                            ifindex: rec.ifindex,
                            cpu: rec.cpu,
                            at,
                            caplen: rec.data.len(),
                        },
                    ));
                }
                if batch.len() >= BATCH {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
        }
        let drained = batch.len() < BATCH;
        if batch.is_empty() {
            return drained;
        }
        if let Some((_, c)) = batch.first() {
            test_hooks::maybe_panic(c.cpu);
        }
        if self.job.readers.len() > 1 {
            batch.sort_by_key(|(_, c)| c.monotonic_ns);
        }
        let hatype = self.hatype;
        for (i, (slot, consumers)) in self.job.streams.iter_mut().enumerate() {
            if failed[i] {
                continue;
            }
            let packets = batch.iter().filter(|(t, _)| *t == i).map(|(_, c)| {
                let rec = XdpRecord {
                    cpu: c.cpu,
                    monotonic_ns: c.monotonic_ns,
                    sec: c.sec,
                    nsec: c.nsec,
                    len: c.len,
                    queue: c.queue,
                    ifindex: c.ifindex,
                    data: &arena[c.at..c.at + c.caplen],
                };
                let p: Packet = rec.packet(hatype);
                p
            });
            let (taken, outcome) = consumers.take(packets);
            self.shared.captured[*slot].fetch_add(taken, Ordering::Relaxed);
            match outcome {
                Outcome::Taken => {}
                Outcome::FileLimit => {
                    failed[i] = true;
                    self.shared.stop();
                }
                Outcome::Failed { path, error } => {
                    // The capture stops; until the buffers are drained
                    // the stream's records are still counted (the report
                    // says how many are not in its file).
                    self.shared.fault_write(path, error);
                }
            }
        }
        drained
    }
}
