//! A whole capture: the source (the fanout group), the outputs, one worker
//! per stream and its consumers, the stop signals, the report. What the
//! streams are comes from the [`Plan`] of the vantage.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use std::collections::HashMap;
use std::sync::Arc;

use crate::consumers::destination::Destination;
use crate::consumers::files::{Format, StreamFile};
use crate::consumers::flows::{FlowBudget, FlowKey, FlowTable};
use crate::consumers::merged::merge;
use crate::consumers::merged::{self, Merged};
use crate::consumers::{Consumers, FileFailure, MergedStream};
use crate::error::{Error, Result, Why};
use crate::filter;
use crate::live::monitor::{Monitor, SocketCounters};
use crate::options::{Direction, Options};
use crate::report::{self, Report, StreamCount};
use crate::source::afpacket::group::{self as source, Group, Target};
use crate::steering::expect::{self, Steering};
use crate::steering::NicHash;
use crate::sys::afpacket::{self, Filter, PacketSocket};
use crate::sys::ring::{Geometry, Ring};
use crate::vantage::{self, Plan, StreamKind};
use crate::worker::count::{self, CountStats, Verdict};
use crate::worker::{pin_to, Fault, Leftovers, PanicGuard, Shared, Worker};

/// How long the kernel may hold a partly filled block before handing it
/// over: the latency of a trickle of packets. While the interface is idle
/// the kernel timer still fires, but an empty block is not handed over, so
/// the worker is never woken.
pub(crate) const RETIRE_MS: u32 = 20;

/// Prints `-v` detail to stderr.
pub(crate) struct Verbose<'a> {
    pub(crate) name: &'a str,
    pub(crate) on: bool,
}

impl Verbose<'_> {
    pub(crate) fn say(&self, msg: impl AsRef<str>) {
        if self.on {
            errln!("{}: {}", self.name, msg.as_ref());
        }
    }
}

/// Everything a capture writes, opened before the first packet is let in
/// and started (headers written) once nothing else can fail: the
/// per-stream pcap files, or the merged pcapng file. See
/// [`crate::consumers::destination`] for why a start that fails changes no file that
/// was there.
pub(crate) struct Outputs<'a> {
    pub(crate) files: Vec<Option<StreamFile>>,
    pub(crate) merged: Option<Merged<'a>>,
}

impl<'a> Outputs<'a> {
    /// Opens every output without changing any; on failure removes what
    /// this run created, so a bad path leaves nothing behind and harms
    /// nothing that was there.
    pub(crate) fn create(
        opts: &Options,
        plan: &Plan,
        target: &Target,
        format: Format,
        shared: &'a Shared,
    ) -> Result<Outputs<'a>> {
        let none = || plan.streams.iter().map(|_| None).collect();
        let Some(template) = &opts.write else {
            return Ok(Outputs {
                files: none(),
                merged: None,
            });
        };
        let dest = Destination::of(template);
        if dest == (Destination::Device { fifo: true }) && opts.verbose {
            // open(2) of a FIFO waits for its reader, as tcpdump's does.
            errln!(
                "{}: {template} is a FIFO: waiting for its reader",
                opts.name
            );
        }
        if opts.pcapng {
            let merged = Merged::create(
                opts,
                template,
                &plan.streams,
                &target.label,
                target.link,
                RETIRE_MS,
                Box::new(|| shared.stop()),
            )?;
            return Ok(Outputs {
                files: none(),
                merged: Some(merged),
            });
        }
        let mut files = Vec::new();
        for stream in &plan.streams {
            let path = dest.stream_file(template, stream.file_suffix());
            match StreamFile::open(&path, format, opts.rotation) {
                Ok(f) => files.push(Some(f)),
                Err(e) => {
                    let made = Outputs {
                        files,
                        merged: None,
                    };
                    made.remove();
                    let name = StreamFile::first_name(&path, opts.rotation).unwrap_or(path);
                    return Err(Error::file(&name, e));
                }
            }
        }
        Ok(Outputs {
            files,
            merged: None,
        })
    }

    /// Writes every output's header: the files this run created first,
    /// then those that were there (each overwritten only once its header
    /// is written over it). So a file system that cannot take a header
    /// fails the start on a new file, before any old one has changed. On
    /// failure removes what this run created.
    pub(crate) fn start(&mut self) -> Result<()> {
        if let Some(m) = &mut self.merged {
            return m.start();
        }
        for existed in [false, true] {
            for f in self.files.iter_mut().flatten() {
                if f.existed() != existed {
                    continue;
                }
                if let Err(e) = f.start() {
                    let e = Error::write(f.path(), e);
                    self.remove();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Removes the files this run created (the capture could not start);
    /// those that were there stay.
    pub(crate) fn remove(&self) {
        for f in self.files.iter().flatten() {
            f.remove_created();
        }
        if let Some(m) = &self.merged {
            m.remove();
        }
    }
}

/// The signals that end a capture. They are blocked in every thread and
/// read from a signalfd by the main thread, which knows which one came
/// (only SIGINT gets the newline) and is never interrupted mid-write: a
/// second Ctrl-C during shutdown cannot cut a file short.
///
/// A SIGHUP that was ignored when the program started (`nohup rxtxcpu`)
/// stays ignored, as tcpdump does: blocking it would make the kernel queue
/// it instead of discarding it.
///
/// With `--live` on a terminal, SIGWINCH (redraw at the new size) and
/// SIGTSTP (give the terminal back before stopping) are read the same way.
pub(crate) fn stop_signals(live_on_terminal: bool) -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    if !inherited_ignore(Signal::SIGHUP) {
        set.add(Signal::SIGHUP);
    }
    if live_on_terminal {
        set.add(Signal::SIGWINCH);
        set.add(Signal::SIGTSTP);
    }
    set
}

/// Blocks the signals of [`stop_signals`] and opens the signalfd that
/// reads them. Blocked before anything is created and before any thread
/// starts (all inherit the mask): a Ctrl-C during setup is then read like
/// any other and ends the capture with a report, not with half-made files.
fn signal_fd(opts: &Options) -> Result<SignalFd> {
    let signals = stop_signals(opts.live.is_some() && crate::live::term::stderr_is_terminal());
    signals
        .thread_block()
        .map_err(|e| Error::os("error blocking signals", e.into()))?;
    SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::os("error creating signalfd", e.into()))
}

/// Reads the signals that came: true when one of them ends the capture
/// (SIGINT first puts its newline on stderr when that is a terminal, so
/// the report does not start on its `^C` line; a file or pipe has no `^C`
/// and gets nothing); the live view takes its own.
pub(crate) fn stop_signal(sigfd: &SignalFd, mut monitor: Option<&mut Monitor>) -> bool {
    while let Ok(Some(info)) = sigfd.read_signal() {
        let signo = info.ssi_signo as i32;
        if let Some(m) = monitor.as_deref_mut() {
            if m.signal(signo) {
                continue;
            }
        }
        if signo == libc::SIGINT && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            errln!();
        }
        return true;
    }
    false
}

/// `--duration`: a one-shot CLOCK_MONOTONIC timerfd, created with the
/// signalfd and armed once the capture listens. The main thread polls it
/// next to the signalfd, so it costs one wakeup, when it expires; without
/// `--duration` there is no timer.
pub(crate) struct Deadline(Option<(TimerFd, Duration)>);

impl Deadline {
    fn new(opts: &Options) -> Result<Deadline> {
        let Some(d) = opts.duration else {
            return Ok(Deadline(None));
        };
        let t = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_CLOEXEC | TimerFlags::TFD_NONBLOCK,
        )
        .map_err(|e| Error::os("error creating the --duration timer", e.into()))?;
        Ok(Deadline(Some((t, d))))
    }

    /// Starts the clock: called when the capture starts listening.
    pub(crate) fn arm(&self, v: &Verbose) {
        if let Some((t, d)) = &self.0 {
            let expiration = Expiration::OneShot(TimeSpec::from_duration(*d));
            match t.set(expiration, TimerSetTimeFlags::empty()) {
                Ok(()) => v.say(format!("stopping after {} s (--duration)", d.as_secs_f64())),
                // Cannot happen for a positive duration; if it did, the
                // capture would run until a signal, so say so.
                Err(e) => errln!(
                    "{}: error setting the --duration timer: {}; stop with Ctrl-C",
                    v.name,
                    Why(e.into())
                ),
            }
        }
    }

    /// What to poll: the timer, if there is one.
    pub(crate) fn poll_fd(&self) -> Option<PollFd<'_>> {
        self.0
            .as_ref()
            .map(|(t, _)| PollFd::new(t.as_fd(), PollFlags::POLLIN))
    }
}

/// Whether `sig` is ignored, from the SigIgn mask in /proc/self/status.
fn inherited_ignore(sig: Signal) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (sig as i32 - 1)) != 0)
}

/// With `--flows` in the queue vantage, transmitted packets: a second,
/// small fanout group by cpu on the same interface, only to learn which
/// cpus sent each flow (what XPS maps to a queue), which the queue
/// streams cannot see.
struct SenderTap {
    plan: Plan,
    group: Group,
    shared: Shared,
    filter: Filter,
}

/// Bytes the sender tap keeps of a packet: enough for the flow key.
const TAP_SNAPLEN: u32 = 256;
/// The sender tap's ring per cpu.
const TAP_RING: usize = 1 << 20;

impl SenderTap {
    fn build(opts: &Options, target: &Target, say: &dyn Fn(String)) -> Result<SenderTap> {
        let plan = vantage::every_cpu(Direction::Tx);
        let kernel_snaplen = target.kernel_snaplen(TAP_SNAPLEN);
        let geometry = Geometry::new(kernel_snaplen, TAP_RING, RETIRE_MS);
        let (filter, _) = filter::capture_filter(
            opts.filter.as_ref(),
            target.link,
            Direction::Tx,
            target.link.snaplen(TAP_SNAPLEN),
            kernel_snaplen,
        )?;
        say(format!(
            "sender tap: a fanout group by cpu ({} KiB per cpu) learns which cpu sent each flow",
            geometry.bytes() / 1024
        ));
        let group = source::build_group(&plan, target, geometry, say)?;
        let shared =
            Shared::new(plan.streams.len()).map_err(|e| Error::os("error creating eventfd", e))?;
        Ok(SenderTap {
            plan,
            group,
            shared,
            filter,
        })
    }
}

/// What one capture is working with, for the functions that run it.
struct Capture<'a> {
    opts: &'a Options,
    plan: &'a Plan,
    target: Target,
    v: Verbose<'a>,
    shared: &'a Shared,
    /// `-c` over several streams: the coordinator's verdict.
    verdict: Option<&'a Verdict>,
    sigfd: &'a SignalFd,
    /// For the merged file: the device's RSS hash, where a packet's flow
    /// hash can be it.
    nic_hash: Option<Arc<NicHash>>,
    deadline: &'a Deadline,
}

/// What every run path does first: the stop signals blocked into a signalfd
/// before any thread exists (threads inherit the mask), the interface
/// looked up, the plan's notes and warnings said.
pub(crate) fn begin<'a>(
    opts: &'a Options,
    plan: &Plan,
) -> Result<(Verbose<'a>, SignalFd, Deadline, source::Target)> {
    let v = Verbose {
        name: &opts.name,
        on: opts.verbose,
    };
    let sigfd = signal_fd(opts)?;
    let deadline = Deadline::new(opts)?;
    let target = source::target(opts)?;
    for note in opts.notes.iter().chain(&plan.notes) {
        v.say(note);
    }
    for warning in &plan.warnings {
        errln!("{}: {warning}", opts.name);
    }
    Ok((v, sigfd, deadline, target))
}

/// Runs the capture described by `opts`; returns the exit status. Errors
/// before the capture starts are returned; after that, faults are printed
/// and the report still comes.
pub fn run(opts: &Options, plan: &Plan) -> Result<i32> {
    if opts.xdp.is_some() {
        return crate::source::xdp::run::run(opts, plan);
    }
    let (v, sigfd, deadline, target) = begin(opts, plan)?;
    v.say(format!("direction {}", opts.direction.as_str()));
    v.say(format!(
        "interface {} (ifindex {})",
        target.label, target.ifindex
    ));

    let kernel_snaplen = target.kernel_snaplen(opts.snaplen);
    // The kernel computes a flow hash per packet only for what uses it.
    let want_hash = opts.pcapng && opts.write.is_some() || opts.flows.is_some();
    let (ring_bytes, why) = match opts.buffer_bytes {
        Some(b) => (b, "-B".to_string()),
        None => crate::sys::ring::default_bytes(plan.streams.len(), kernel_snaplen),
    };
    let geometry = Geometry::new(kernel_snaplen, ring_bytes, RETIRE_MS).with_hash(want_hash);
    v.say(format!(
        "ring per {}: {} blocks of {} KiB ({} KiB; {} in all, {why}), block timeout {} ms",
        plan.vantage.subject(),
        geometry.blocks,
        geometry.block_size / 1024,
        geometry.bytes() / 1024,
        mib(geometry.bytes() as u64 * plan.streams.len() as u64),
        geometry.retire_ms
    ));

    source::check_memory(geometry, plan)?;
    // Compiled before anything is created, so that a bad expression
    // leaves nothing behind.
    let (filter, said) = filter::capture_filter(
        opts.filter.as_ref(),
        target.link,
        opts.direction,
        target.link.snaplen(opts.snaplen),
        kernel_snaplen,
    )?;
    if let Some(said) = said {
        v.say(said);
    }

    let format = Format {
        link: target.link,
        snaplen: opts.snaplen,
        precision: opts.precision,
        packet_buffered: opts.packet_buffered,
    };
    let group = source::build_group(plan, &target, geometry, &|s| v.say(s))?;

    if opts.promiscuous {
        if target.ifindex == 0 {
            v.say("promiscuous mode skipped: capturing on all interfaces");
        } else {
            group.sockets[0]
                .add_promiscuous(target.ifindex)
                .map_err(|e| Error::os(format!("error setting {} promiscuous", target.label), e))?;
            v.say(format!(
                "{}: promiscuous mode on for this capture",
                target.label
            ));
        }
    }
    let shared =
        Shared::new(group.rings.len()).map_err(|e| Error::os("error creating eventfd", e))?;
    let verdict = count::Verdict::for_count(opts.count, plan.streams.len())
        .map_err(|e| Error::os("error creating eventfd", e))?;
    // The steering configuration the flows are compared with, read as the
    // capture starts.
    let steering = match (&opts.interface, opts.flows) {
        (Some(name), Some(_)) => {
            let s = Steering::read(name, plan.vantage);
            for line in s.describe() {
                v.say(format!("steering: {line}"));
            }
            Some(s)
        }
        _ => None,
    };
    let nic_hash = nic_hash(opts, &v);
    let tap = if steering.is_some() && expect::needs_sending_cpus(plan.vantage, opts.direction) {
        Some(SenderTap::build(opts, &target, &|s| v.say(s))?)
    } else {
        None
    };

    // Files last, so that no setup failure leaves any behind; still before
    // a single packet is let in.
    let mut outputs = Outputs::create(opts, plan, &target, format, &shared)?;

    // The group is complete: let packets in on the captured streams.
    for stream in &plan.streams {
        if let Err(e) = group.sockets[stream.member as usize].attach_filter(&filter) {
            outputs.remove();
            return Err(Error::os("error attaching filter", e));
        }
    }
    if let Some(t) = &tap {
        for stream in &t.plan.streams {
            if let Err(e) = t.group.sockets[stream.member as usize].attach_filter(&t.filter) {
                outputs.remove();
                return Err(Error::os("error attaching filter", e));
            }
        }
    }
    // Last: nothing that was there changes before every other step of the
    // start has succeeded. The packets let in meanwhile wait in the rings.
    outputs.start()?;

    let capture = Capture {
        opts,
        plan,
        target,
        v,
        shared: &shared,
        verdict: verdict.as_ref(),
        sigfd: &sigfd,
        nic_hash,
        deadline: &deadline,
    };
    let ended = run_workers(&capture, &group.sockets, group.rings, outputs, tap);
    let mut status = report_faults(&capture, &ended.failed);
    let report = finish(&capture, ended, steering.as_ref(), &mut status);
    Ok(report::print(opts, plan, &report).max(status))
}

/// How the workers ended.
struct Ended<'a> {
    /// Streams (by slot) whose worker could not start or panicked.
    failed: Vec<usize>,
    /// What each worker left (None where it panicked).
    leftovers: Vec<Option<Leftovers>>,
    /// The merged file, once its merger is done, and the capture's
    /// start and end (ns since the epoch).
    merged: Option<(merged::Written<'a>, u64, u64)>,
    /// From the sender tap: the cpus that sent each flow.
    senders: Option<HashMap<FlowKey, Vec<u32>>>,
    /// What the `-c` coordinator did.
    count: Option<CountStats>,
}

/// Runs one worker per captured stream (and the merger thread, with
/// `--pcapng`) until the capture stops: a signal, the count, a fault.
fn run_workers<'a>(
    c: &Capture<'a>,
    sockets: &[PacketSocket],
    rings: Vec<Ring>,
    mut outputs: Outputs<'a>,
    mut tap: Option<SenderTap>,
) -> Ended<'a> {
    let tap_rings = tap.as_mut().map(|t| std::mem::take(&mut t.group.rings));
    let (opts, shared, streams) = (c.opts, c.shared, &c.plan.streams);
    let mut failed = Vec::new();
    let mut feeds: Vec<Option<_>> = match &mut outputs.merged {
        Some(m) => m.take_feeds().into_iter().map(Some).collect(),
        None => streams.iter().map(|_| None).collect(),
    };
    let watch = outputs.merged.as_ref().and_then(|m| m.watch_fd());
    let budget = opts.flows.map(|_| FlowBudget::new(opts.flows_max));
    let file_snaplen = c.target.link.snaplen(opts.snaplen);
    let merged_path = opts.write.clone().unwrap_or_default();
    let (mut gates, coordinator) = count::gates(opts.count, c.verdict, streams.len(), RETIRE_MS);
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
        // Each worker says when it is pinned, so that the ready line comes
        // last; a worker that never starts or dies drops its sender, which
        // also counts, so this can never wait for a thread that is gone.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let mut handles = Vec::new();
        for (slot, (stream, ring)) in streams.iter().zip(rings).enumerate() {
            let sock = &sockets[stream.member as usize];
            let queue = match stream.kind {
                StreamKind::Queue(q) => Some(q),
                _ => None,
            };
            let consumers = Consumers {
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
                    .with_nic_hash(c.nic_hash.clone())
                }),
                flows: budget
                    .as_ref()
                    .map(|b| FlowTable::new(stream.flow_id(), c.target.link, b.clone())),
                bytes: opts.live.map(|_| &shared.bytes[slot]),
            };
            let worker = Worker::new(
                stream.member,
                stream.pin.clone(),
                slot,
                sock,
                ring,
                consumers,
                shared,
            )
            .counting(gates[slot].take());
            let ready = ready_tx.clone();
            let label = stream.label();
            let v = &c.v;
            let h = std::thread::Builder::new()
                .name(label.clone())
                .spawn_scoped(s, move || {
                    let _guard = PanicGuard::worker(shared, sock, slot);
                    match &stream.pin {
                        None => v.say(format!("worker for {label} not pinned")),
                        Some(cpus) => match pin_to(cpus) {
                            Ok(()) if cpus.len() == 1 => {
                                v.say(format!("worker for {label} running on cpu{cpus}"))
                            }
                            Ok(()) => v.say(format!("worker for {label} running on cpus {cpus}")),
                            Err(e) => v.say(format!("worker for {label} not pinned: {}", Why(e))),
                        },
                    }
                    drop(ready);
                    worker.run()
                });
            match h {
                Ok(h) => handles.push((slot, h)),
                Err(e) => {
                    errln!(
                        "{}: error starting worker for {}: {}",
                        opts.name,
                        stream.label(),
                        Why(e)
                    );
                    shared.stop();
                    failed.push(slot);
                }
            }
        }
        drop(ready_tx);
        // A worker that never started ends its merger feed (and its -c
        // gate) here.
        drop(feeds);
        drop(gates);
        let tap_handles = tap
            .as_ref()
            .zip(tap_rings)
            .map(|(t, rings)| spawn_tap(s, t, rings, c, opts.flows_max));
        // Returns once every sender is gone.
        let _ = ready_rx.recv();
        let started = merge::realtime_ns();
        c.deadline.arm(&c.v);
        if failed.is_empty() {
            c.v.say(format!(
                "listening on {}, link-type {}, snapshot length {} bytes",
                c.target.label,
                c.target.link.describe(),
                opts.snaplen
            ));
        }
        let stream_sockets: Vec<&PacketSocket> = streams
            .iter()
            .map(|st| &sockets[st.member as usize])
            .collect();
        let counters = SocketCounters {
            shared,
            sockets: stream_sockets,
        };
        let mut monitor = Monitor::new(opts, c.plan, &c.target.label);
        if let Some(m) = &mut monitor {
            m.begin(&counters, shared);
        }
        wait_for_stop(c, watch, monitor.as_mut(), &counters);
        if let Some(m) = &mut monitor {
            m.stopping();
        }
        shared.stop();
        let stopped = merge::realtime_ns();
        wait_for_workers(c, &handles);
        let mut leftovers: Vec<Option<Leftovers>> = streams.iter().map(|_| None).collect();
        for (slot, h) in handles {
            match h.join() {
                Ok(l) => leftovers[slot] = Some(l),
                Err(_) => failed.push(slot),
            }
        }
        failed.sort_unstable();
        if let Some(m) = monitor {
            m.finish(&counters, shared);
        }
        let merged = merger
            .and_then(|m| m.join().ok())
            .map(|w| (w, started, stopped));
        let count = counter.and_then(|h| h.join().ok());
        let senders = tap.as_ref().zip(tap_handles).map(|(t, handles)| {
            t.shared.stop();
            let tables: Vec<FlowTable> = handles
                .into_iter()
                .filter_map(|h| h.join().ok())
                .filter_map(|l| l.flows)
                .collect();
            let mut by_flow: HashMap<FlowKey, Vec<u32>> = HashMap::new();
            for r in crate::consumers::flows::merge(tables).records {
                by_flow.insert(r.key, r.streams.iter().map(|&(cpu, _)| cpu).collect());
            }
            by_flow
        });
        Ended {
            failed,
            leftovers,
            merged,
            senders,
            count,
        }
    })
}

/// Starts the sender tap's workers, one per cpu, each keeping a flow
/// table only.
fn spawn_tap<'s, 'e: 's>(
    s: &'s std::thread::Scope<'s, 'e>,
    tap: &'e SenderTap,
    rings: Vec<Ring>,
    c: &'e Capture,
    flows_max: u64,
) -> Vec<std::thread::ScopedJoinHandle<'s, Leftovers>> {
    let budget = FlowBudget::new(flows_max);
    let mut handles = Vec::new();
    for (slot, (stream, ring)) in tap.plan.streams.iter().zip(rings).enumerate() {
        let sock = &tap.group.sockets[stream.member as usize];
        let consumers = Consumers {
            flows: Some(FlowTable::new(
                stream.flow_id(),
                c.target.link,
                budget.clone(),
            )),
            ..Consumers::default()
        };
        let shared = &tap.shared;
        let worker = Worker::new(
            stream.member,
            stream.pin.clone(),
            slot,
            sock,
            ring,
            consumers,
            shared,
        );
        let pin = &stream.pin;
        let spawned = std::thread::Builder::new()
            .name(format!("tap {}", stream.label()))
            .spawn_scoped(s, move || {
                let _guard = PanicGuard::worker(shared, sock, slot);
                if let Some(cpus) = pin {
                    let _ = pin_to(cpus);
                }
                worker.run()
            });
        if let Ok(h) = spawned {
            handles.push(h);
        }
    }
    handles
}

/// With `--pcapng -w` on an interface: the device's RSS hash, where a
/// packet's flow hash can be it (the merged file then claims Toeplitz for
/// the packets whose hash it is); `-v` says what the file claims.
fn nic_hash(opts: &Options, v: &Verbose) -> Option<Arc<NicHash>> {
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
            Some(Arc::new(n))
        }
        Err(why) => {
            unclaimed(&why);
            None
        }
    }
}

/// `12 MiB`, `1.5 MiB`, `768 KiB`.
pub(crate) fn mib(bytes: u64) -> String {
    if bytes >= 10 << 20 || bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// How long workers may take to finish after a stop before a second
/// signal may end the program without them.
const GRACE: Duration = Duration::from_secs(2);

/// Waits for the workers to finish after a stop. Normally they finish
/// within a retire period or two, and further signals are ignored so that
/// no file is cut short. A worker can only be stuck for good in a write
/// that never completes (a `-w -` reader that stopped reading): then a
/// signal after the grace period prints the report and exits, because
/// Ctrl-C must always end the program.
fn wait_for_workers<T>(c: &Capture, handles: &[(usize, std::thread::ScopedJoinHandle<'_, T>)]) {
    let stopped = Instant::now();
    while !handles.iter().all(|(_, h)| h.is_finished()) {
        let mut fds = [PollFd::new(c.sigfd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(100u16));
        if let Ok(Some(_)) = c.sigfd.read_signal() {
            if stopped.elapsed() >= GRACE {
                let busy: Vec<String> = handles
                    .iter()
                    .filter(|(_, h)| !h.is_finished())
                    .map(|(slot, _)| c.plan.streams[*slot].label())
                    .collect();
                errln!(
                    "{}: not waiting for the worker for {} (stuck writing); its output is incomplete",
                    c.opts.name,
                    busy.join(", ")
                );
                let report = Report {
                    streams: counts(c),
                    ..Report::default()
                };
                crate::live::term::restore();
                report::print(c.opts, c.plan, &report);
                std::process::exit(1);
            }
        }
    }
}

/// The report's counts, as the workers left them.
fn counts(c: &Capture) -> Vec<StreamCount> {
    let shared = c.shared;
    c.plan
        .streams
        .iter()
        .enumerate()
        .map(|(slot, stream)| StreamCount {
            place: stream.place(),
            packets: shared.captured[slot].load(Ordering::Relaxed),
            drops: shared.drops[slot].load(Ordering::Relaxed),
            unread: shared.unread[slot].load(Ordering::Relaxed),
            lost: 0,
        })
        .collect()
}

/// Puts the report together once every thread is done: closes the
/// merged file with its statistics, merges the flow tables.
fn finish(c: &Capture, ended: Ended, steering: Option<&Steering>, status: &mut i32) -> Report {
    let opts = c.opts;
    let mut report = Report {
        streams: counts(c),
        ..Report::default()
    };
    if let Some(stats) = ended.count {
        c.v.say(stats.describe());
        report.notes.extend(stats.notes());
    }
    let tables = take_ends(
        &mut report,
        c.plan,
        ended.leftovers,
        ended.merged,
        opts,
        &c.v,
        status,
    );
    if opts.flows.is_some() && !tables.is_empty() {
        let mut flows = crate::consumers::flows::merge(tables);
        if let Some(s) = steering {
            s.predict(&mut flows, ended.senders.as_ref());
        }
        report.flows = Some(flows);
    }
    report
}

/// What both run paths (AF_PACKET and XDP) do once their threads are
/// done: each stream's leftovers go into the report (their flow tables
/// are returned), and the merged file is closed with its statistics.
pub(crate) fn take_ends(
    report: &mut Report,
    plan: &Plan,
    leftovers: Vec<Option<Leftovers>>,
    merged_file: Option<(merged::Written<'_>, u64, u64)>,
    opts: &Options,
    v: &Verbose,
    status: &mut i32,
) -> Vec<FlowTable> {
    let mut tables = Vec::new();
    for (slot, l) in leftovers.into_iter().enumerate() {
        if let Some(l) = l {
            let place = plan.streams[slot].place();
            if let Some(n) = not_in_file(report.streams[slot].packets, l.file_failure.as_ref()) {
                errln!(
                    "{}: {n} captured packets {place} are not in the file",
                    opts.name
                );
            }
            tables.extend(report.take_leftovers(&place, l));
        }
    }
    if let Some((written, start_ns, end_ns)) = merged_file {
        let say = |s: &str| v.say(s);
        *status = (*status).max(merged::close(
            written,
            report,
            (start_ns, end_ns),
            &opts.name,
            &say,
        ));
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

/// Prints what ended the capture early; returns the exit status.
fn report_faults(c: &Capture, failed: &[usize]) -> i32 {
    let (opts, target) = (c.opts, &c.target);
    let mut status = 0;
    for slot in failed {
        errln!(
            "{}: worker for {} failed; its count may be short",
            opts.name,
            c.plan.streams[*slot].label()
        );
        status = 1;
    }
    let faults = std::mem::take(&mut *c.shared.faults.lock().unwrap_or_else(|e| e.into_inner()));
    // Every captured stream's socket reports the same interface event: say
    // it once.
    let mut interface_reported = false;
    for fault in faults {
        match fault {
            Fault::Socket(_) if interface_reported => {}
            Fault::Socket(e) => {
                interface_reported = true;
                let gone =
                    afpacket::ifname(target.ifindex).as_deref() != Some(target.label.as_str());
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
/// stop by themselves, or (`--pcapng -w -`) for the reader of stdout to go
/// away; with `--live`, waking once per interval to redraw.
fn wait_for_stop(
    c: &Capture,
    watch: Option<OwnedFd>,
    mut monitor: Option<&mut Monitor>,
    counters: &SocketCounters,
) {
    loop {
        let mut fds = vec![
            PollFd::new(c.sigfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(c.shared.stop_fd().as_fd(), PollFlags::POLLIN),
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
        let timeout = match &monitor {
            Some(m) => PollTimeout::try_from(m.timeout_ms()).unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
        let reader_gone = reader
            .and_then(|i| fds[i].revents())
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP));
        let expired = timer.is_some_and(|i| fds[i].revents().is_some_and(|r| !r.is_empty()));
        if stop_signal(c.sigfd, monitor.as_deref_mut()) {
            return;
        }
        if expired {
            return;
        }
        if let Some(m) = monitor.as_deref_mut() {
            m.tick(counters, c.shared);
        }
        if reader_gone {
            c.v.say("stdout closed; stopping");
            return;
        }
        if c.shared.stopping() {
            return;
        }
    }
}
