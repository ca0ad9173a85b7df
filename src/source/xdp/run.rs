//! `--xdp`: a capture whose source is the XDP program ([`crate::source::xdp::program`])
//! instead of the fanout group of packet sockets. The program counts every
//! received frame per cpu (and per queue) in a map, exactly; with `-w` or
//! `--flows` it also copies each frame into its cpu's perf buffer, which a
//! worker per stream reads and hands to the same consumers as a packet
//! socket capture (pcap files, the merged pcapng file, flow tables). The
//! program is attached by a BPF link: the kernel removes it when the
//! process ends, however it ends.

use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;

use crate::consumers::files::Format;
use crate::consumers::flows::{FlowBudget, FlowTable};
use crate::consumers::{Consumers, Leftovers, MergedStream, Outcome};
use crate::cpuset::CpuSet;
use crate::error::{Error, Result, Why};
use crate::live::monitor::{Count, Counters, Monitor};
use crate::options::Options;
use crate::packet::Packet;
use crate::report::{self, Report, StreamCount};
use crate::run::{stop_signal, Deadline, Outputs, Verbose, RETIRE_MS};
use crate::source::afpacket::group::Target;
use crate::source::xdp::program::{self as xdp, Counts, PerfReader, XdpCapture, XdpRecord};
use crate::sys::afpacket::{self, Filter, PacketSocket};
use crate::sys::perf::Wakeup;
use crate::vantage::{Plan, Route, StreamKind};
use crate::worker::{pin_to, test_hooks, Fault, PanicGuard, Shared};

/// How often the main thread checks that the program is still attached
/// (a link cannot be polled: an interface that goes away says nothing).
const ATTACHED_CHECK: Duration = Duration::from_millis(200);

/// Runs the capture; as [`crate::run::run`].
pub fn run(opts: &Options, plan: &Plan) -> Result<i32> {
    let (v, sigfd, deadline, target) = crate::run::begin(opts, plan)?;
    let ifname = target.label.clone();
    let hatype = afpacket::hardware_type(&ifname).map_err(|e| Error::Interface {
        name: ifname.clone(),
        why: Why(e),
        hint: String::new(),
    })?;
    v.say(format!(
        "interface {} (ifindex {}), received packets at its XDP hook",
        target.label, target.ifindex
    ));

    let xopts = xdp_options(opts, plan);
    if let Some(s) = xopts.snaplen {
        if s < opts.snaplen {
            v.say(format!(
                "XDP records keep at most {} bytes of each frame",
                xdp::MAX_SNAPLEN
            ));
        }
    }
    let mut xdp = XdpCapture::attach(target.ifindex, &xopts)?;
    match xdp.ids() {
        Ok((prog, link)) => v.say(format!(
            "XDP program id {prog}, link id {link}: {}",
            xdp.hook().describe()
        )),
        Err(_) => v.say(xdp.hook().describe()),
    }
    // Promiscuous mode is a packet socket's membership; XDP has none, so
    // one socket that receives nothing holds it.
    let _promiscuous = promiscuous(opts, &target, &v)?;

    let shared =
        Shared::new(plan.streams.len()).map_err(|e| Error::os("error creating eventfd", e))?;
    let format = Format {
        link: target.link,
        snaplen: opts.snaplen,
        precision: opts.precision,
        packet_buffered: opts.packet_buffered,
    };
    let mut outputs = Outputs::create(opts, plan, &target, format, &shared)?;
    let readers = xdp.take_readers();
    if let Err(e) = xdp.start() {
        outputs.remove();
        return Err(Error::os("error starting the XDP capture", e));
    }
    // Last: nothing that was there changes before every other step of the
    // start has succeeded.
    outputs.start()?;
    let ended = run_workers(
        opts, plan, &target, &v, &xdp, &shared, &sigfd, &deadline, hatype, readers, outputs,
    );

    let counts = xdp
        .counts()
        .map_err(|e| Error::os("error reading the XDP counters", e))?;
    let mut status = report_faults(opts, &target, &shared, &ended);
    let report = finish(opts, &v, plan, &shared, &counts, ended, &mut status);
    drop(xdp);
    Ok(report::print(opts, plan, &report).max(status))
}

/// What the program captures, for `opts`' streams.
fn xdp_options(opts: &Options, plan: &Plan) -> xdp::Options {
    let online = crate::cpuset::online();
    let cpus: CpuSet = match plan.vantage {
        crate::options::Vantage::Cpu => plan.streams.iter().filter_map(|s| s.id()).collect(),
        crate::options::Vantage::Numa => plan
            .streams
            .iter()
            .flat_map(|s| s.pin.iter().flat_map(|p| p.iter()).collect::<Vec<_>>())
            .collect(),
        crate::options::Vantage::Queue => online,
    };
    let (queues, queue_list) = match plan.route {
        Route::Queue { queues } => (
            queues,
            opts.selection.as_ref().map(|_| {
                plan.streams
                    .iter()
                    .filter_map(|s| match s.kind {
                        StreamKind::Queue(q) => Some(q),
                        _ => None,
                    })
                    .collect()
            }),
        ),
        _ => (0, None),
    };
    let records = opts.write.is_some() || opts.flows.is_some();
    xdp::Options {
        mode: opts.xdp.unwrap_or_default(),
        cpus,
        queues,
        queue_list,
        snaplen: records.then(|| opts.snaplen.min(xdp::MAX_SNAPLEN)),
        ring_bytes: opts
            .buffer_bytes
            .unwrap_or_else(|| crate::sys::ring::default_bytes(plan.streams.len(), 0).0),
        wakeup: if opts.packet_buffered {
            Wakeup::EveryRecord
        } else {
            Wakeup::Bytes(64 * 1024)
        },
        count: opts.count,
    }
}

/// With `-p`: a packet socket that receives nothing but holds the
/// interface's promiscuous membership for the capture's length.
fn promiscuous(opts: &Options, target: &Target, v: &Verbose) -> Result<Option<PacketSocket>> {
    if !opts.promiscuous {
        return Ok(None);
    }
    let sock = PacketSocket::new().map_err(|e| Error::os("error creating packet socket", e))?;
    sock.attach_filter(&Filter::drop_all())
        .map_err(|e| Error::os("error attaching filter", e))?;
    sock.add_promiscuous(target.ifindex)
        .map_err(|e| Error::os(format!("error setting {} promiscuous", target.label), e))?;
    v.say(format!(
        "{}: promiscuous mode on for this capture",
        target.label
    ));
    Ok(Some(sock))
}

/// How the workers ended.
struct Ended<'a> {
    /// The merged file once its merger is done, and the capture's start
    /// and end (ns since the epoch).
    merged: Option<(crate::consumers::merged::Written<'a>, u64, u64)>,
    leftovers: Vec<Option<Leftovers>>,
    failed: Vec<usize>,
    /// The interface went away during the capture.
    gone: bool,
    /// Records the perf buffers held that did not parse (never expected).
    malformed: u64,
}

/// The streams a worker serves and which of its readers' records go to
/// which of them.
struct Job {
    readers: Vec<PerfReader>,
    /// (stream slot, consumers), in slot order.
    streams: Vec<(usize, Consumers<'static>)>,
    /// Where the worker runs.
    pin: Option<CpuSet>,
    /// By queue (one worker for all queues): receive queue -> position in
    /// `streams`, and the position of the no-queue stream (queues beyond
    /// those counted at the start). None: every record to `streams[0]`.
    by_queue: Option<(std::collections::HashMap<u32, usize>, Option<usize>)>,
}

#[allow(clippy::too_many_arguments)]
fn run_workers<'a>(
    opts: &Options,
    plan: &Plan,
    target: &Target,
    v: &Verbose,
    xdp: &XdpCapture,
    shared: &Shared,
    sigfd: &SignalFd,
    deadline: &Deadline,
    hatype: u16,
    readers: Vec<PerfReader>,
    mut outputs: Outputs<'a>,
) -> Ended<'a> {
    let mut failed = Vec::new();
    let mut merged = outputs.merged.take();
    let mut feeds: Vec<Option<_>> = match &mut merged {
        Some(m) => m.take_feeds().into_iter().map(Some).collect(),
        None => plan.streams.iter().map(|_| None).collect(),
    };
    let watch = merged.as_ref().and_then(|m| m.watch_fd());
    let budget = opts.flows.map(|_| FlowBudget::new(opts.flows_max));
    let file_snaplen = target.link.snaplen(opts.snaplen);
    let path = opts.write.clone().unwrap_or_default();
    let mut consumers_of = |slot: usize| -> Consumers<'static> {
        let stream = &plan.streams[slot];
        let queue = match stream.kind {
            StreamKind::Queue(q) => Some(q),
            _ => None,
        };
        Consumers {
            file: outputs.files[slot].take(),
            merged: feeds[slot].take().map(|feed| {
                MergedStream::new(
                    feed,
                    queue,
                    target.link,
                    file_snaplen,
                    opts.precision,
                    &path,
                )
            }),
            flows: budget
                .as_ref()
                .map(|b| FlowTable::new(stream.flow_id(), target.link, b.clone())),
            bytes: None,
        }
    };
    let jobs = jobs(plan, readers, &mut consumers_of);
    drop(feeds);
    let mut leftovers: Vec<Option<Leftovers>> = plan.streams.iter().map(|_| None).collect();
    let mut gone = false;
    let mut malformed = 0;
    let mut written = None;
    std::thread::scope(|s| {
        let merger = merged.map(|m| s.spawn(move || m.run()));
        let mut handles = Vec::new();
        for job in jobs {
            let slots: Vec<usize> = job.streams.iter().map(|(slot, _)| *slot).collect();
            let h = std::thread::Builder::new()
                .name("xdp".into())
                .spawn_scoped(s, move || {
                    // A panic here must stop the capture, as any worker's.
                    let _guard = PanicGuard::main(shared);
                    if let Some(cpus) = &job.pin {
                        let _ = pin_to(cpus);
                    }
                    XdpWorker {
                        job,
                        shared,
                        hatype,
                    }
                    .run()
                });
            match h {
                Ok(h) => handles.push((slots, h)),
                Err(e) => {
                    errln!("{}: error starting an XDP worker: {}", opts.name, Why(e));
                    failed.extend(slots);
                    shared.stop();
                }
            }
        }
        deadline.arm(v);
        v.say(format!(
            "listening on {}, link-type {}, snapshot length {} bytes",
            target.label,
            target.link.describe(),
            opts.snaplen
        ));
        let started = crate::consumers::merged::merge::realtime_ns();
        let counters = XdpCounters { xdp, plan };
        let mut monitor = Monitor::new(opts, plan, &target.label);
        if let Some(m) = &mut monitor {
            m.begin(&counters, shared);
        }
        gone = wait_for_stop(
            xdp,
            shared,
            sigfd,
            deadline,
            watch,
            monitor.as_mut(),
            &counters,
        );
        if let Some(m) = &mut monitor {
            m.stopping();
        }
        // The window closes first, and every program run that saw it open
        // is over when stop() returns: then the workers' last reads take
        // every record there is.
        let _ = xdp.stop();
        shared.stop();
        let stopped = crate::consumers::merged::merge::realtime_ns();
        for (slots, h) in handles {
            match h.join() {
                Ok(done) => {
                    for (slot, l, bad) in done {
                        leftovers[slot] = Some(l);
                        malformed += bad;
                    }
                }
                Err(_) => failed.extend(slots),
            }
        }
        if let Some(m) = monitor {
            m.finish(&counters, shared);
        }
        written = merger
            .and_then(|m| m.join().ok())
            .map(|w| (w, started, stopped));
    });
    failed.sort_unstable();
    Ended {
        merged: written,
        leftovers,
        failed,
        gone,
        malformed,
    }
}

/// The workers: per cpu stream its cpu's reader; per node its cpus'
/// readers; all queues together in one worker that sorts records by
/// queue.
fn jobs(
    plan: &Plan,
    readers: Vec<PerfReader>,
    consumers_of: &mut dyn FnMut(usize) -> Consumers<'static>,
) -> Vec<Job> {
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
            jobs.push(Job {
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
                jobs.push(Job {
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
struct XdpWorker<'a> {
    job: Job,
    shared: &'a Shared,
    hatype: u16,
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
    fn run(mut self) -> Vec<(usize, Leftovers, u64)> {
        let mut arena = Vec::new();
        let mut batch = Vec::new();
        let mut failed = vec![false; self.job.streams.len()];
        loop {
            let stopping = self.shared.stopping();
            self.pass(&mut arena, &mut batch, &mut failed);
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

    /// Sleeps until a buffer has records past its wakeup mark, a stop, or
    /// a block timeout (a trickle below the mark must still be written
    /// promptly).
    fn wait(&self) {
        let stop = self.shared.stop_fd().as_fd();
        let mut fds: Vec<PollFd> = self
            .job
            .readers
            .iter()
            .map(|r| PollFd::new(r.fd(), PollFlags::POLLIN))
            .collect();
        fds.push(PollFd::new(stop, PollFlags::POLLIN));
        let _ = poll(&mut fds, PollTimeout::from(RETIRE_MS as u16));
    }

    /// One pass over the buffers: copies what is there (in time order
    /// across this worker's cpus), then writes it stream by stream.
    fn pass(&mut self, arena: &mut Vec<u8>, batch: &mut Vec<(usize, Copied)>, failed: &mut [bool]) {
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
        if batch.is_empty() {
            return;
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
    }
}

/// The XDP program's counters, per stream.
struct XdpCounters<'a> {
    xdp: &'a XdpCapture,
    plan: &'a Plan,
}

impl Counters for XdpCounters<'_> {
    fn read(&self) -> Vec<Count> {
        match self.xdp.counts() {
            Ok(c) => per_stream(self.plan, &c)
                .into_iter()
                .map(|t| Count {
                    packets: t.packets,
                    bytes: t.bytes,
                    drops: t.lost,
                })
                .collect(),
            Err(_) => self.plan.streams.iter().map(|_| Count::default()).collect(),
        }
    }
}

/// The program's counts, per stream of `plan`.
fn per_stream(plan: &Plan, counts: &Counts) -> Vec<xdp::Tally> {
    plan.streams
        .iter()
        .map(|s| match s.kind {
            StreamKind::Cpu(c) => counts.cpu(c),
            StreamKind::Numa(_) => {
                let mut t = xdp::Tally::default();
                for c in s.pin.iter().flat_map(|p| p.iter()) {
                    t += counts.cpu(c);
                }
                t
            }
            StreamKind::Queue(q) => counts.queue(q),
            StreamKind::NoQueue => counts.other_queues(),
        })
        .collect()
}

/// Waits for a signal, `--duration` to pass, the `-c` count, the
/// interface to go, or (with `--pcapng -w -`) the reader of stdout to go;
/// with `--live`, waking once per interval. Returns whether the interface
/// went away.
fn wait_for_stop(
    xdp: &XdpCapture,
    shared: &Shared,
    sigfd: &SignalFd,
    deadline: &Deadline,
    watch: Option<OwnedFd>,
    mut monitor: Option<&mut Monitor>,
    counters: &XdpCounters,
) -> bool {
    loop {
        let mut fds = vec![
            PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(shared.stop_fd().as_fd(), PollFlags::POLLIN),
            PollFd::new(xdp.done_fd(), PollFlags::POLLIN),
        ];
        let reader = watch.as_ref().map(|w| {
            fds.push(PollFd::new(w.as_fd(), PollFlags::empty()));
            fds.len() - 1
        });
        let timer = deadline.poll_fd().map(|t| {
            fds.push(t);
            fds.len() - 1
        });
        let check = ATTACHED_CHECK.as_millis() as i32;
        let ms = monitor
            .as_ref()
            .map_or(check, |m| m.timeout_ms().min(check));
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return false,
        }
        let done = fds[2]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        let reader_gone = reader
            .and_then(|i| fds[i].revents())
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP));
        let expired = timer.is_some_and(|i| fds[i].revents().is_some_and(|r| !r.is_empty()));
        if stop_signal(sigfd, monitor.as_deref_mut()) {
            return false;
        }
        if done || reader_gone || expired || shared.stopping() {
            return false;
        }
        if !xdp.is_attached() {
            return true;
        }
        if let Some(m) = monitor.as_deref_mut() {
            m.tick(counters, shared);
        }
    }
}

/// Prints what ended the capture early; returns the exit status.
fn report_faults(opts: &Options, target: &Target, shared: &Shared, ended: &Ended) -> i32 {
    let mut status = 0;
    for _ in &ended.failed {
        errln!(
            "{}: an XDP worker failed; its counts may be short",
            opts.name
        );
        status = 1;
    }
    if ended.gone {
        errln!(
            "{}: interface '{}' disappeared: {}",
            opts.name,
            target.label,
            Why(io::Error::from_raw_os_error(libc::ENODEV))
        );
        status = 1;
    }
    if ended.malformed > 0 {
        errln!(
            "{}: {} XDP records could not be read",
            opts.name,
            ended.malformed
        );
        status = 1;
    }
    let faults = std::mem::take(&mut *shared.faults.lock().unwrap_or_else(|e| e.into_inner()));
    for fault in faults {
        if let Fault::Write { path, error } = fault {
            // A pipe's reader went away: an ordinary end.
            if error.kind() == io::ErrorKind::BrokenPipe {
                continue;
            }
            errln!("{}: error writing {path}: {}", opts.name, Why(error));
            status = 1;
        }
    }
    status
}

/// The report: the program's exact counts (with `-w`, the records the
/// workers took from the buffers, every one of them whether or not a
/// write failed), its lost records as drops.
fn finish(
    opts: &Options,
    v: &Verbose,
    plan: &Plan,
    shared: &Shared,
    counts: &Counts,
    ended: Ended,
    status: &mut i32,
) -> Report {
    let tallies = per_stream(plan, counts);
    let streams = plan
        .streams
        .iter()
        .enumerate()
        .map(|(slot, s)| StreamCount {
            place: s.place(),
            packets: if opts.write.is_some() {
                shared.captured[slot].load(Ordering::Relaxed)
            } else {
                tallies[slot].packets
            },
            drops: 0,
            unread: 0,
            lost: tallies[slot].lost,
        })
        .collect();
    let mut report = Report {
        streams,
        ..Report::default()
    };
    let tables = crate::run::take_ends(
        &mut report,
        plan,
        ended.leftovers,
        ended.merged,
        opts,
        v,
        status,
    );
    if opts.flows.is_some() && !tables.is_empty() {
        report.flows = Some(crate::consumers::flows::merge(tables));
    }
    report
}
