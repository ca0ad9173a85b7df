//! One capture, whatever its source: the stop signals, the source
//! opened, the outputs created, packets let in, one thread per job (and
//! the merged file's merger, and `-c`'s coordinator), the wait for the
//! end (a signal, `--duration`, the count, a fault, `--live`'s ticks),
//! the shutdown in order, and the report.

mod drops;
mod metrics;
mod path;
mod signals;

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;

use crate::consumers::files::Format;
use crate::consumers::flows::{self, FlowBudget, FlowJoin, FlowTable, Predict, Role};
use crate::consumers::merged::{self, merge};
use crate::consumers::outputs::Outputs;
use crate::consumers::repeats::RepeatWindow;
use crate::consumers::{Consumers, FileFailure, IsNicHash, Leftovers, MergedStream};
use crate::error::{Error, Result, Why};
use crate::live::monitor::{Counters, Monitor};
use crate::options::Options;
use crate::report::{self, Report, StreamCount};
use crate::source::afpacket::FanoutSource;
use crate::source::xdp::XdpSource;
use crate::source::{self, Source, Target, RETIRE_MS};
use crate::steering::expect::{self, Steering};
use crate::steering::NicHash;
use crate::sys::afpacket;
use crate::sys::host::pin_to;
use crate::vantage::{Plan, StreamKind};
use crate::worker::count::{self, CountStats, Verdict};
use crate::worker::{Fault, Job, PanicGuard, Shared};

use signals::{signal_fd, stop_signal, Deadline};

/// Prints `-v` detail to stderr.
pub struct Verbose<'a> {
    pub name: &'a str,
    pub on: bool,
}

impl Verbose<'_> {
    pub fn say(&self, msg: impl AsRef<str>) {
        if self.on {
            errln!("{}: {}", self.name, msg.as_ref());
        }
    }
}

/// What one capture is working with, for the functions that run it.
struct Capture<'a> {
    opts: &'a Options,
    plan: &'a Plan,
    target: Target,
    v: Verbose<'a>,
    sigfd: SignalFd,
    deadline: Deadline,
}

/// Runs the capture described by `opts`; returns the exit status. Errors
/// before the capture starts are returned; after that, faults are printed
/// and the report still comes.
pub fn run(opts: &Options, plan: &Plan) -> Result<i32> {
    // `-w -`, a device or a FIFO takes one stream.
    crate::consumers::destination::check(opts, plan.streams.len()).map_err(Error::Usage)?;
    let v = Verbose {
        name: &opts.name,
        on: opts.verbose,
    };
    // The stop signals are blocked into a signalfd before any thread
    // exists (threads inherit the mask): a Ctrl-C during setup is read
    // like any other and ends the capture with a report, not with
    // half-made files.
    let sigfd = signal_fd(opts)?;
    let deadline = Deadline::new(opts)?;
    let target = source::target(opts)?;
    for note in opts.notes.iter().chain(&plan.notes) {
        v.say(note);
    }
    for warning in &plan.warnings {
        errln!("{}: {warning}", opts.name);
    }
    let say = |s: String| v.say(s);
    let mut source: Box<dyn Source> = match opts.xdp {
        Some(_) => Box::new(XdpSource::open(opts, plan, &target, &say)?),
        None => Box::new(FanoutSource::open(opts, plan, &target, &say)?),
    };
    // The steering configuration the flows are compared with, read as the
    // capture starts.
    let steering = match (&opts.interface, opts.flows) {
        (Some(name), Some(_)) if source.steered() => {
            let s = Steering::read(name, plan.vantage);
            for line in s.describe() {
                v.say(format!("steering: {line}"));
            }
            Some(Arc::new(s))
        }
        _ => None,
    };
    // `--metrics` with `--flows`: the tables joined as they change, for
    // the split and unexpected flows, compared with the same steering.
    let join = (opts.metrics.is_some() && opts.flows.is_some()).then(|| {
        FlowJoin::new(steering.clone().map(|s| {
            Box::new(move |key: &_, hash, directions, cpus: Option<&[u32]>| {
                s.expect(key, hash, directions, cpus).stream
            }) as Box<Predict>
        }))
    });
    let nic_hash = nic_hash(opts, &v);
    if steering.is_some() && expect::needs_sending_cpus(plan.vantage, opts.direction) {
        source.learn_senders(&say, join.clone())?;
    }
    // Before any output: a probe the kernel refuses, or a port in use,
    // changes nothing on disk.
    let drop_probe = drops::attach(opts, &target, &say)?;
    let mut path_probes = path::attach(opts, &target, &say)?;
    let counters_before = drops::before(opts);
    let metrics = metrics::bind(opts)?;
    if let Some(addr) = metrics.as_ref().and_then(|m| m.local_addr().ok()) {
        v.say(format!("metrics on http://{addr}/metrics"));
    }
    let live_asks = opts.live.is_some() && (opts.flows.is_some() || opts.repeats.is_some());
    let shared = Shared::with_flow_wake(plan.streams.len(), live_asks)
        .map_err(|e| Error::os("error creating eventfd", e))?;
    let verdict = match source.counts_itself() {
        true => None,
        false => count::Verdict::for_count(opts.count, plan.streams.len())
            .map_err(|e| Error::os("error creating eventfd", e))?,
    };
    let format = Format {
        link: target.link,
        snaplen: opts.snaplen,
        precision: opts.precision,
        packet_buffered: opts.packet_buffered,
    };
    // Outputs after everything else that can fail before packets come,
    // so that no setup failure leaves a file behind; still before a
    // single packet is let in.
    let mut outputs = Outputs::create(
        opts,
        &plan.streams,
        &target.label,
        format,
        RETIRE_MS,
        Box::new(|| shared.stop()),
    )?;
    if let Err(e) = source.start() {
        outputs.remove();
        return Err(e);
    }
    // Last: nothing that was there changes before every other step of the
    // start has succeeded. The packets let in meanwhile wait in the
    // source.
    outputs.start()?;

    let capture = Capture {
        opts,
        plan,
        target,
        v,
        sigfd,
        deadline,
    };
    let consumers = consumers(
        &capture,
        &shared,
        &mut outputs,
        (nic_hash, join.as_ref()),
        &*source,
    );
    let ended = run_jobs(
        &capture,
        &*source,
        &shared,
        verdict.as_ref(),
        consumers,
        outputs,
        (metrics, drop_probe.as_ref(), join.as_deref()),
    );
    let source_end = source.finish();
    let mut status = report_faults(&capture, &shared, &ended.failed, &source_end.errors);
    let streams = source.counts(plan, &shared)?;
    let mut report = finish(
        &capture,
        streams,
        ended,
        steering.as_deref(),
        source_end,
        &mut status,
    );
    if let (Some(probes), Some(flows)) = (path_probes.as_mut(), report.flows.as_mut()) {
        if let Err(line) = path::finish(probes, flows, steering.as_deref(), &|s| capture.v.say(s)) {
            errln!("{}: {line}", opts.name);
            status = 1;
        }
    }
    // Detached before the report is written.
    drop(path_probes);
    (report.counter_drops, report.counter_json) = counters_before.lines();
    if let Some(probe) = &drop_probe {
        if let Some(line) = drops::cost(probe) {
            capture.v.say(line);
        }
        if capture.v.on {
            for line in drops::sites(probe) {
                capture.v.say(line);
            }
        }
        match drops::read(probe) {
            Ok(mut k) => {
                for d in &mut k {
                    d.stream = drops::stream_of(plan, d.cpu);
                }
                let say = |s: String| capture.v.say(s);
                if let Err(line) = drops::join_flows(probe, report.flows.as_mut(), &k, &say) {
                    errln!("{}: {line}", opts.name);
                    status = 1;
                }
                report.kernel_drops = Some(k);
            }
            Err(line) => {
                errln!("{}: {line}", opts.name);
                status = 1;
            }
        }
    }
    for warning in plan.came_online() {
        errln!("{}: {warning}", opts.name);
    }
    Ok(report::print(opts, plan, &report).max(status))
}

/// Each stream's consumers, as the options ask: its files, its share of
/// the merged file, its flow table, its byte counter for `--live`.
fn consumers<'a>(
    c: &Capture,
    shared: &'a Shared,
    outputs: &mut Outputs<'a>,
    (nic_hash, join): (Option<IsNicHash>, Option<&Arc<FlowJoin>>),
    source: &dyn Source,
) -> Vec<Consumers<'a>> {
    let opts = c.opts;
    let mut feeds: Vec<Option<_>> = match &mut outputs.merged {
        Some(m) => m.take_feeds().into_iter().map(Some).collect(),
        None => c.plan.streams.iter().map(|_| None).collect(),
    };
    let budget = opts.flows.map(|_| FlowBudget::new(opts.flows_max));
    let file_snaplen = c.target.link.snaplen(opts.snaplen);
    let merged_path = opts.write.clone().unwrap_or_default();
    // A source that counts in the kernel counts bytes there too.
    let bytes = (opts.live.is_some() || opts.metrics.is_some()) && !source.counts_itself();
    c.plan
        .streams
        .iter()
        .enumerate()
        .map(|(slot, stream)| {
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
                        c.target.link,
                        file_snaplen,
                        opts.precision,
                        &merged_path,
                    )
                    .with_nic_hash(nic_hash.clone())
                }),
                flows: budget.as_ref().map(|b| {
                    let mut t = FlowTable::new(stream.flow_id(), c.target.link, b.clone());
                    if opts.repeats.is_some() {
                        t = t.counting_repeats();
                    }
                    if let Some(idle) = opts.flows_idle {
                        t = t.expiring(idle);
                    }
                    if let Some(j) = join {
                        t = t.joined(Arc::clone(j), Role::Captured(slot as u32));
                    }
                    t
                }),
                repeats: opts
                    .repeats
                    .map(|min| Box::new(RepeatWindow::new(c.target.link, min))),
                repeated: ((opts.live.is_some() || opts.metrics.is_some())
                    && opts.repeats.is_some())
                .then(|| &shared.repeated[slot]),
                flow_counts: (opts.metrics.is_some() && opts.flows.is_some()).then(|| {
                    (
                        &shared.flows_seen[slot],
                        &shared.flows_tracked[slot],
                        &shared.flows_untracked[slot],
                    )
                }),
                bytes: bytes.then(|| &shared.bytes[slot]),
            }
        })
        .collect()
}

/// How the jobs ended.
struct JobsEnded<'a> {
    /// Streams (by slot) whose job could not start or panicked, with the
    /// job's line for stderr.
    failed: Vec<(usize, String)>,
    /// What each stream's consumers left (None where its job panicked).
    leftovers: Vec<Option<Leftovers>>,
    /// The merged file, once its merger is done, and the capture's
    /// start and end (ns since the epoch).
    merged: Option<(merged::Written<'a>, u64, u64)>,
    /// What the `-c` coordinator did.
    count: Option<CountStats>,
}

/// Runs the source's jobs (and the merger thread, with `--pcapng`, and
/// `-c`'s coordinator) until the capture stops: a signal, the count, a
/// fault, `--duration`.
fn run_jobs<'a, 's>(
    c: &Capture,
    source: &'s dyn Source,
    shared: &'s Shared,
    verdict: Option<&'s Verdict>,
    consumers: Vec<Consumers<'s>>,
    mut outputs: Outputs<'a>,
    (metrics, drops, join): (
        Option<crate::metrics::Server>,
        Option<&crate::source::probes::drops::DropProbe>,
        Option<&FlowJoin>,
    ),
) -> JobsEnded<'a> {
    let (opts, streams) = (c.opts, &c.plan.streams);
    let counters = source.counters(shared);
    let scraped = metrics::Scraped::new(opts, c.plan, &*counters, shared, (drops, join));
    // --live with --drops: the probe's counters, read once per interval.
    let read_drops = |p: &crate::source::probes::drops::DropProbe| {
        drops::read(p)
            .unwrap_or_default()
            .into_iter()
            .filter(|d| d.namespace_known)
            .map(|d| (d.cpu, d.reason, d.packets))
            .collect::<Vec<_>>()
    };
    let kernel_drops = drops.map(|p| move || read_drops(p));
    let kernel_drops: Option<&dyn Fn() -> Vec<(u32, String, u64)>> =
        kernel_drops.as_ref().map(|f| f as _);
    let watch = outputs.merged.as_ref().and_then(|m| m.watch_fd());
    let (gates, coordinator) = count::gates(opts.count, verdict, streams.len(), RETIRE_MS);
    let jobs = source.jobs(consumers, gates, shared);
    let mut failed = Vec::new();
    std::thread::scope(|s| {
        let _guard = PanicGuard::main(shared);
        let merger = outputs.merged.take().map(|m| s.spawn(move || m.run()));
        // -c over several streams: the thread that lets the first N in.
        let counter = coordinator.map(|co| {
            s.spawn(move || {
                let _guard = PanicGuard::main(shared);
                co.run(|| shared.stop())
            })
        });
        // Each job says when it is pinned, so that the ready line comes
        // last; a job that never starts or dies drops its sender, which
        // also counts, so this can never wait for a thread that is gone.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let mut handles = Vec::new();
        for job in jobs {
            let Job {
                thread,
                slots,
                pin,
                say_pin,
                name,
                failed: failed_line,
                run,
            } = job;
            let ready = ready_tx.clone();
            let v = &c.v;
            let who = name.clone();
            let h = std::thread::Builder::new()
                .name(thread)
                .spawn_scoped(s, move || {
                    let _guard = PanicGuard::main(shared);
                    pin_job(pin.as_ref(), say_pin.then_some((v, who.as_str())));
                    drop(ready);
                    run()
                });
            match h {
                Ok(h) => handles.push((slots, failed_line, name, h)),
                Err(e) => {
                    errln!("{}: error starting {name}: {}", opts.name, Why(e));
                    shared.stop();
                    failed.extend(slots.into_iter().map(|slot| (slot, failed_line.clone())));
                }
            }
        }
        drop(ready_tx);
        // Returns once every sender is gone.
        let _ = ready_rx.recv();
        let started = merge::realtime_ns();
        if failed.is_empty() {
            c.v.say(format!(
                "listening on {}, link-type {}, snapshot length {} bytes",
                c.target.label,
                c.target.link.describe(),
                opts.snaplen
            ));
        }
        // After `listening on`: the stop notice says when this capture,
        // already listening, ends; the line a script waits for stays the
        // setup's last.
        c.deadline.arm(&c.v);
        let endpoint = metrics.and_then(|server| {
            let description = metrics::description(opts, c.plan, &c.target.label);
            let exporter = crate::metrics::Exporter::new(description, &scraped);
            server
                .spawn_scoped(s, exporter)
                .map_err(|e| {
                    errln!(
                        "{}: error starting the metrics server: {}",
                        opts.name,
                        Why(e)
                    )
                })
                .ok()
        });
        let mut monitor = Monitor::new(opts, c.plan, &c.target.label, c.target.link)
            .map(|m| m.with_kernel_drops(kernel_drops));
        if let Some(m) = &mut monitor {
            m.begin(&*counters, shared);
        }
        wait_for_stop(c, source, shared, watch, monitor.as_mut(), &*counters);
        if let Some(m) = &mut monitor {
            m.stopping();
        }
        source.stop();
        shared.stop();
        let stopped = merge::realtime_ns();
        wait_for_jobs(c, shared, &handles);
        let mut leftovers: Vec<Option<Leftovers>> = streams.iter().map(|_| None).collect();
        for (slots, failed_line, _, h) in handles {
            match h.join() {
                Ok(done) => {
                    for (slot, l) in done {
                        leftovers[slot] = Some(l);
                    }
                }
                Err(_) => failed.extend(slots.into_iter().map(|slot| (slot, failed_line.clone()))),
            }
        }
        failed.sort_unstable_by_key(|(slot, _)| *slot);
        if let Some(m) = monitor {
            m.finish(&*counters, shared);
        }
        if let Some(e) = endpoint {
            let _ = e.stop();
        }
        let merged = merger
            .and_then(|m| m.join().ok())
            .map(|w| (w, started, stopped));
        let count = counter.and_then(|h| h.join().ok());
        JobsEnded {
            failed,
            leftovers,
            merged,
            count,
        }
    })
}

/// Pins the calling job thread to `pin`; with `say`, tells `-v` where it
/// runs.
fn pin_job(pin: Option<&crate::cpuset::CpuSet>, say: Option<(&Verbose, &str)>) {
    let result = pin.map(|cpus| (cpus, pin_to(cpus)));
    let Some((v, who)) = say else {
        return;
    };
    match result {
        None => v.say(format!("{who} not pinned")),
        Some((cpus, Ok(()))) if cpus.len() == 1 => v.say(format!("{who} running on cpu{cpus}")),
        Some((cpus, Ok(()))) => v.say(format!("{who} running on cpus {cpus}")),
        Some((_, Err(e))) => v.say(format!("{who} not pinned: {}", Why(e))),
    }
}

/// With `--pcapng -w` on an interface: the device's RSS hash, where a
/// packet's flow hash can be it (the merged file then claims Toeplitz for
/// the packets whose hash it is); `-v` says what the file claims.
fn nic_hash(opts: &Options, v: &Verbose) -> Option<IsNicHash> {
    if !opts.pcapng || opts.write.is_none() {
        return None;
    }
    let unclaimed = |why: &str| {
        v.say(format!(
            "pcapng: each packet's flow hash is in its comment, with no epb_hash (no \
             algorithm claimed): {why}"
        ))
    };
    let Some(name) = opts.interface.as_deref() else {
        unclaimed("capturing on every interface");
        return None;
    };
    match NicHash::read(name) {
        Ok(n) => {
            v.say(format!(
                "pcapng: {name} hands the kernel its Toeplitz RSS hash: a received packet \
                 whose flow hash is that hash of its addresses and ports (checked per packet) \
                 also gets epb_hash (Toeplitz); every flow hash is in the packet's comment"
            ));
            Some(Arc::new(move |l3: &[u8], h: u32| n.is_its_hash(l3, h)))
        }
        Err(why) => {
            unclaimed(&why);
            None
        }
    }
}

/// How long workers may take to finish after a stop before a second
/// signal may end the program without them.
const GRACE: Duration = Duration::from_secs(2);

/// What both run paths (AF_PACKET and XDP) do once their threads are
/// done: each stream's leftovers go into the report (their flow tables
/// are returned), and the merged file is closed with its statistics.
fn take_ends(
    report: &mut Report,
    c: &Capture,
    leftovers: Vec<Option<Leftovers>>,
    merged_file: Option<(merged::Written<'_>, u64, u64)>,
    status: &mut i32,
) -> Vec<FlowTable> {
    let (plan, opts, v) = (c.plan, c.opts, &c.v);
    let mut tables = Vec::new();
    let mut repeats = Vec::new();
    for (slot, l) in leftovers.into_iter().enumerate() {
        if let Some(mut l) = l {
            if let Some(r) = l.repeats.take() {
                repeats.push((plan.streams[slot].flow_id(), r));
            }
            let place = plan.streams[slot].place();
            if let Some(n) = not_in_file(report.streams[slot].packets, l.file_failure.as_ref()) {
                errln!(
                    "{}: {}",
                    opts.name,
                    crate::consumers::not_in_file_line(n, &place)
                );
            }
            tables.extend(report.take_leftovers(slot, &place, l));
        }
    }
    if let Some(min) = opts.repeats {
        report.repeats = Some(report::repeats::Found {
            repeats: crate::consumers::repeats::merge(repeats),
            link: c.target.link,
            min,
        });
    }
    if let Some((written, start_ns, end_ns)) = merged_file {
        for (s, past) in report
            .streams
            .iter_mut()
            .zip(written.past_the_limit().unwrap_or_default())
        {
            s.packets = s.packets.saturating_sub(past);
        }
        let say = |s: &str| v.say(s);
        let counts: Vec<(u64, u64)> = report
            .streams
            .iter()
            .map(|s| (s.packets, s.drops + s.lost))
            .collect();
        let closed = merged::close(written, &counts, (start_ns, end_ns), &opts.name, &say);
        *status = (*status).max(report.take_merged(&closed));
    }
    tables
}

/// After a stream's files failed (not by their reader going away): how
/// many of the `captured` packets are not in them, if any. The same count
/// as the merged file's: the packets that came after the failure, and
/// those the failed write had buffered.
fn not_in_file(captured: u64, failure: Option<&FileFailure>) -> Option<u64> {
    let f = failure.filter(|f| !f.reader_gone)?;
    Some(captured.saturating_sub(f.records)).filter(|&n| n > 0)
}

/// Waits for the jobs to finish after a stop. Normally they finish within
/// a retire period or two, and further signals are ignored so that no
/// file is cut short. A job can only be stuck for good in a write that
/// never completes (a `-w -` reader that stopped reading): then a signal
/// after the grace period prints the report and exits, because Ctrl-C
/// must always end the program.
type Handle<'s, T> = (
    Vec<usize>,
    String,
    String,
    std::thread::ScopedJoinHandle<'s, T>,
);

fn wait_for_jobs<T>(c: &Capture, shared: &Shared, handles: &[Handle<'_, T>]) {
    let stopped = Instant::now();
    while !handles.iter().all(|(.., h)| h.is_finished()) {
        let mut fds = [PollFd::new(c.sigfd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(100u16));
        if let Ok(Some(_)) = c.sigfd.read_signal() {
            if stopped.elapsed() >= GRACE {
                let busy: Vec<String> = handles
                    .iter()
                    .filter(|(.., h)| !h.is_finished())
                    .flat_map(|(slots, ..)| slots.iter().map(|&s| c.plan.streams[s].label()))
                    .collect();
                errln!(
                    "{}: not waiting for the worker for {} (stuck writing); its output is incomplete",
                    c.opts.name,
                    busy.join(", ")
                );
                let report = Report {
                    streams: crate::source::afpacket::counts(c.plan, shared),
                    ..Report::default()
                };
                crate::live::term::restore();
                report::print(c.opts, c.plan, &report);
                std::process::exit(1);
            }
        }
    }
}

/// Puts the report together once every thread is done: closes the
/// merged file with its statistics, merges the flow tables and compares
/// them with the steering configuration.
fn finish(
    c: &Capture,
    streams: Vec<StreamCount>,
    ended: JobsEnded,
    steering: Option<&Steering>,
    source_end: source::Ended,
    status: &mut i32,
) -> Report {
    let opts = c.opts;
    let mut report = Report {
        streams,
        ..Report::default()
    };
    if let Some(stats) = ended.count {
        c.v.say(stats.describe());
        report.notes.extend(stats.notes());
    }
    let tables = take_ends(&mut report, c, ended.leftovers, ended.merged, status);
    if opts.flows.is_some() && !tables.is_empty() {
        let mut flows = flows::merge(tables);
        if let Some(s) = steering {
            s.predict(&mut flows, source_end.senders.as_ref());
        }
        report.flows = Some(flows);
    }
    report
}

/// Prints what ended the capture early; returns the exit status.
fn report_faults(
    c: &Capture,
    shared: &Shared,
    failed: &[(usize, String)],
    source_errors: &[String],
) -> i32 {
    let (opts, target) = (c.opts, &c.target);
    let mut status = 0;
    for (_, line) in failed {
        errln!("{}: {line}", opts.name);
        status = 1;
    }
    for line in source_errors {
        errln!("{}: {line}", opts.name);
        status = 1;
    }
    let faults = std::mem::take(&mut *shared.faults.lock().unwrap_or_else(|e| e.into_inner()));
    // Every captured stream's socket reports the same interface event: say
    // it once.
    let mut interface_reported = false;
    for fault in faults {
        match fault {
            Fault::Socket(_) if interface_reported => {}
            Fault::Socket(e) => {
                interface_reported = true;
                // By its index, as the sockets are bound: an interface
                // renamed after it went down (it must be down for that)
                // is still there.
                let gone = afpacket::ifname(target.ifindex).is_none();
                let what = if gone { "disappeared" } else { "went down" };
                errln!(
                    "{}: interface '{}' {what}: {}",
                    opts.name,
                    target.label,
                    Why(e)
                );
                status = 1;
            }
            Fault::Poll(e) => {
                errln!("{}: error waiting for packets: {}", opts.name, Why(e));
                status = 1;
            }
            Fault::Write { path, error } if error.kind() == io::ErrorKind::BrokenPipe => {
                // The reader of `-w -` (or of a FIFO) went away (`|
                // tcpdump -c 3 -r -`): an ordinary end. EPIPE comes from
                // nothing else.
                c.v.say(crate::consumers::destination::closed_note(&path));
            }
            Fault::Write { path, error } => {
                errln!("{}: error writing {path}: {}", opts.name, Why(error));
                status = 1;
            }
        }
    }
    status
}

/// Waits for a stop signal, for `--duration` to pass, for the workers to
/// stop by themselves, for the source to end (the XDP program's count,
/// its interface gone), or (`--pcapng -w -`) for the reader of stdout to
/// go away; with `--live`, waking once per interval to redraw.
fn wait_for_stop(
    c: &Capture,
    source: &dyn Source,
    shared: &Shared,
    watch: Option<OwnedFd>,
    mut monitor: Option<&mut Monitor>,
    counters: &dyn Counters,
) {
    loop {
        let mut fds = vec![
            PollFd::new(c.sigfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(shared.stop_fd().as_fd(), PollFlags::POLLIN),
        ];
        let reader = watch.as_ref().map(|w| {
            // No events asked for: POLLERR comes regardless once the pipe's
            // reader has gone.
            fds.push(PollFd::new(w.as_fd(), PollFlags::empty()));
            fds.len() - 1
        });
        let timer = c.deadline.poll_fd().map(|t| {
            fds.push(t);
            fds.len() - 1
        });
        let done = source.done_fd().map(|d| {
            fds.push(PollFd::new(d, PollFlags::POLLIN));
            fds.len() - 1
        });
        let check = source.check_every().map(|d| d.as_millis() as i32);
        let ms = match (monitor.as_ref().map(|m| m.timeout_ms()), check) {
            (Some(m), Some(c)) => Some(m.min(c)),
            (m, c) => m.or(c),
        };
        let timeout = ms.map_or(PollTimeout::NONE, |ms| {
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        });
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
        let fired =
            |i: Option<usize>| i.is_some_and(|i| fds[i].revents().is_some_and(|r| !r.is_empty()));
        let reader_gone = reader
            .and_then(|i| fds[i].revents())
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP));
        let (expired, source_done) = (fired(timer), fired(done));
        if stop_signal(&c.sigfd, monitor.as_deref_mut()) || expired || source_done {
            return;
        }
        if let Some(m) = monitor.as_deref_mut() {
            m.tick(counters, shared);
        }
        if reader_gone {
            c.v.say("stdout closed; stopping");
            return;
        }
        if shared.stopping() || (check.is_some() && source.gone()) {
            return;
        }
    }
}
