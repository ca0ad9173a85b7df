//! A whole capture: the fanout group, the workers, the stop signals, the
//! report. What the streams are comes from the [`Plan`] of the vantage.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::afpacket::{self, FanoutMode, Filter, PacketSocket, PACKET_FANOUT_MAX};
use crate::bpf::Program;
use crate::cli::Options;
use crate::error::{Error, Result, Why};
use crate::fanout;
use crate::output::{stream_path, Format, LinkType, PcapOutput};
use crate::pcapfilter;
use crate::report::{self, StreamCount};
use crate::ring::{Geometry, Ring};
use crate::vantage::{Plan, Route, Stream};
use crate::worker::{pin_to, Fault, PanicGuard, Shared, Worker};

/// How long the kernel may hold a partly filled block before handing it
/// over: the latency of a trickle of packets. While the interface is idle
/// the kernel timer still fires, but an empty block is not handed over, so
/// the worker is never woken.
const RETIRE_MS: u32 = 20;

/// Room for the longest link-layer header in front of the network header
/// (Ethernet with two VLAN tags is 22 bytes; radiotap and friends are not
/// captured cooked in practice).
const MAX_LINK_HEADER: u32 = 64;

/// Prints `-v` detail to stderr.
struct Verbose<'a> {
    name: &'a str,
    on: bool,
}

impl Verbose<'_> {
    fn say(&self, msg: impl AsRef<str>) {
        if self.on {
            errln!("{}: {}", self.name, msg.as_ref());
        }
    }
}

/// The interface to capture on.
struct Target {
    /// 0: every interface.
    ifindex: u32,
    /// For messages: the interface name, or `any`.
    label: String,
    link: LinkType,
}

fn target(opts: &Options) -> Result<Target> {
    let Some(name) = &opts.interface else {
        return Ok(Target {
            ifindex: 0,
            label: "any".into(),
            link: LinkType::LinuxSll2,
        });
    };
    let bad = |e: io::Error, hint: String| Error::Interface {
        name: name.clone(),
        why: Why(e),
        hint,
    };
    let ifindex = afpacket::ifindex(name).map_err(|e| bad(e, String::new()))?;
    let hatype = afpacket::hardware_type(name).map_err(|e| bad(e, String::new()))?;
    if !afpacket::is_up(name) {
        return Err(bad(
            io::Error::from_raw_os_error(libc::ENETDOWN),
            format!(" (bring it up first: ip link set dev {name} up)"),
        ));
    }
    Ok(Target {
        ifindex,
        label: name.clone(),
        link: LinkType::for_hatype(hatype),
    })
}

/// One socket per possible stream, in one fanout group, member i =
/// stream i (cpu i, queue i, node i).
struct Group {
    sockets: Vec<PacketSocket>,
    /// Rings of the captured streams, in the plan's order.
    rings: Vec<Ring>,
    /// The eBPF fanout program, if the route has one. The group holds its
    /// own reference once it is set; this one only lives as long.
    _program: Option<Program>,
}

/// Builds the group with the setup race closed: every socket drops all
/// packets from before bind() until the group is complete, so nothing that
/// arrived while `cpu % members` still pointed at the wrong member is ever
/// seen. Only then do the captured streams get their real filter.
fn build_group(plan: &Plan, target: &Target, geometry: Geometry, v: &Verbose) -> Result<Group> {
    let members = plan.members;
    let program = fanout::program(plan.route)?;
    let mode = match plan.route {
        Route::Cpu => FanoutMode::Cpu,
        Route::Queue { .. } | Route::Numa => FanoutMode::Ebpf,
    };
    let mut sockets = Vec::with_capacity(members as usize);
    let mut rings: Vec<Option<Ring>> = plan.streams.iter().map(|_| None).collect();
    let mut id = 0u16;
    for member in 0..members {
        let sock = PacketSocket::new().map_err(|e| Error::os("error creating packet socket", e))?;
        sock.attach_filter(&Filter::drop_all())
            .map_err(|e| Error::os("error attaching filter", e))?;
        if let Some(slot) = plan.streams.iter().position(|s| s.member == member) {
            // Streams that are not captured need no ring: their member only
            // holds stream i's place in the group and drops everything.
            let ring = Ring::new(&sock, geometry).map_err(|e| {
                Error::os(
                    format!(
                        "error setting up the ring for {} ({} blocks of {} KiB)",
                        plan.streams[slot].label(),
                        geometry.blocks,
                        geometry.block_size / 1024
                    ),
                    e,
                )
            })?;
            rings[slot] = Some(ring);
        }
        sock.bind(target.ifindex)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENODEV) | Some(libc::ENXIO) => Error::Interface {
                    name: target.label.clone(),
                    why: Why(e),
                    hint: String::new(),
                },
                _ => Error::os(format!("error binding to {}", target.label), e),
            })?;
        if member == 0 {
            id = join_first(&sock, mode, members)?;
            if let Some(p) = &program {
                sock.set_fanout_program(p)
                    .map_err(|e| Error::os("error setting the eBPF fanout program", e))?;
            }
        } else {
            sock.join_fanout(id, mode, false, members)
                .map_err(|e| fanout_error(e, members))?;
        }
        sockets.push(sock);
    }
    let by = match plan.route {
        Route::Cpu => "by cpu",
        Route::Queue { .. } => "by queue, eBPF",
        Route::Numa => "by numa node, eBPF",
    };
    v.say(format!("fanout group id {id} ({by}, {members} members)"));
    Ok(Group {
        sockets,
        rings: rings.into_iter().flatten().collect(),
        _program: program,
    })
}

/// Creates the group with the first socket. The kernel picks a free id
/// (PACKET_FANOUT_FLAG_UNIQUEID, Linux 4.16+), so a group another program
/// holds is never joined by mistake, and two captures never share one.
/// There is no fallback to guessing ids: a guessed id that another program
/// holds with the same settings would be joined silently.
fn join_first(sock: &PacketSocket, mode: FanoutMode, members: u32) -> Result<u16> {
    sock.join_fanout(0, mode, true, members)
        .map_err(|e| fanout_error(e, members))?;
    sock.fanout_id()
        .map_err(|e| Error::os("error reading fanout group id", e))
}

fn fanout_error(e: io::Error, members: u32) -> Error {
    let hint = if members > PACKET_FANOUT_MAX {
        format!(
            " (this capture needs {members} fanout members, more than a group holds on this \
             kernel, {PACKET_FANOUT_MAX}; Linux 5.13+ raises the limit)"
        )
    } else {
        match e.raw_os_error() {
            // The socket is not running (its interface went down meanwhile),
            // or the kernel predates PACKET_FANOUT_FLAG_UNIQUEID.
            Some(libc::EINVAL) => " (is the interface up? Linux 4.16 or later is needed)".into(),
            Some(libc::ENOMEM) => " (no free fanout group id)".into(),
            _ => String::new(),
        }
    };
    Error::Message(format!("error joining fanout group: {}{hint}", Why(e)))
}

/// Creates every output before the capture starts; on failure removes the
/// files already created, so a bad path leaves nothing behind.
fn create_outputs(
    opts: &Options,
    streams: &[Stream],
    format: Format,
) -> Result<Vec<Option<PcapOutput>>> {
    let Some(template) = &opts.write else {
        return Ok(streams.iter().map(|_| None).collect());
    };
    let mut outs = Vec::new();
    for stream in streams {
        let path = if template == "-" {
            "-".to_string()
        } else {
            stream_path(template, stream.file_suffix())
        };
        match PcapOutput::create(&path, format) {
            Ok(o) => outs.push(Some(o)),
            Err(e) => {
                remove_files(&outs);
                return Err(Error::file(&path, e));
            }
        }
    }
    Ok(outs)
}

/// The signals that end a capture. They are blocked in every thread and
/// read from a signalfd by the main thread, which knows which one came
/// (only SIGINT gets the newline) and is never interrupted mid-write: a
/// second Ctrl-C during shutdown cannot cut a file short.
///
/// A SIGHUP that was ignored when the program started (`nohup rxtxcpu`)
/// stays ignored, as tcpdump does: blocking it would make the kernel queue
/// it instead of discarding it.
fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    if !inherited_ignore(Signal::SIGHUP) {
        set.add(Signal::SIGHUP);
    }
    set
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

/// Runs the capture described by `opts`; returns the exit status. Errors
/// before the capture starts are returned; after that, faults are printed
/// and the report still comes.
pub fn run(opts: &Options, plan: &Plan) -> Result<i32> {
    let v = Verbose {
        name: &opts.name,
        on: opts.verbose,
    };
    // Blocked before anything is created and before any thread starts (all
    // inherit the mask): a Ctrl-C during setup is then read like any other
    // and ends the capture with a report, not with half-made files.
    let signals = stop_signals();
    signals
        .thread_block()
        .map_err(|e| Error::os("error blocking signals", e.into()))?;
    let sigfd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::os("error creating signalfd", e.into()))?;

    let target = target(opts)?;
    for note in &plan.notes {
        v.say(note);
    }
    for warning in &plan.warnings {
        errln!("{}: {warning}", opts.name);
    }
    v.say(format!("direction {}", opts.direction.as_str()));
    v.say(format!(
        "interface {} (ifindex {})",
        target.label, target.ifindex
    ));

    // The kernel's snap length counts from the link-layer header. A cooked
    // record replaces that header with its own, so the kernel must keep
    // enough beyond the snap length for the longest link header; the
    // output then cuts the payload to the snap length.
    let kernel_snaplen = match target.link {
        LinkType::LinuxSll2 => opts.snaplen.saturating_add(MAX_LINK_HEADER),
        LinkType::Ethernet | LinkType::Raw => opts.snaplen,
    };
    let geometry = Geometry::new(kernel_snaplen, opts.buffer_bytes, RETIRE_MS);
    v.say(format!(
        "ring per {}: {} blocks of {} KiB ({} KiB), block timeout {} ms",
        plan.vantage.subject(),
        geometry.blocks,
        geometry.block_size / 1024,
        geometry.bytes() / 1024,
        geometry.retire_ms
    ));

    check_memory(geometry, plan)?;
    // Compiled before anything is created, so that a bad expression
    // leaves nothing behind.
    let (filter, said) = pcapfilter::capture_filter(
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
    let group = build_group(plan, &target, geometry, &v)?;

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
    let shared = Shared::new(group.rings.len(), opts.count)
        .map_err(|e| Error::os("error creating eventfd", e))?;

    // Files last, so that no setup failure leaves any behind; still before
    // a single packet is let in.
    let outputs = create_outputs(opts, &plan.streams, format)?;

    // The group is complete: let packets in on the captured streams.
    for stream in &plan.streams {
        if let Err(e) = group.sockets[stream.member as usize].attach_filter(&filter) {
            remove_files(&outputs);
            return Err(Error::os("error attaching filter", e));
        }
    }

    let failed = run_workers(
        opts,
        &v,
        &target,
        &group.sockets,
        group.rings,
        outputs,
        &shared,
        &sigfd,
        &plan.streams,
    );

    let status = report_faults(opts, &v, &target, &shared, &failed, &plan.streams);
    Ok(print_report(opts, &plan.streams, &shared).max(status))
}

/// Prints the drop lines and the report; returns 1 if the report could
/// not be written.
fn print_report(opts: &Options, streams: &[Stream], shared: &Shared) -> i32 {
    let counts: Vec<StreamCount> = streams
        .iter()
        .enumerate()
        .map(|(slot, stream)| StreamCount {
            place: stream.place(),
            packets: shared.captured[slot].load(Ordering::Relaxed),
            drops: shared.drops[slot].load(Ordering::Relaxed),
            unread: shared.unread[slot].load(Ordering::Relaxed),
        })
        .collect();
    err!("{}", report::drops(&counts));
    let text = report::counts(&counts);
    if opts.write.as_deref() == Some("-") {
        err!("{text}");
        return 0;
    }
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Runs one worker per captured stream until the capture stops (a signal,
/// the count, a fault). Returns the streams (by slot) whose worker could
/// not start or panicked.
#[allow(clippy::too_many_arguments)]
fn run_workers(
    opts: &Options,
    v: &Verbose,
    target: &Target,
    sockets: &[PacketSocket],
    rings: Vec<Ring>,
    outputs: Vec<Option<PcapOutput>>,
    shared: &Shared,
    sigfd: &SignalFd,
    streams: &[Stream],
) -> Vec<usize> {
    let mut failed = Vec::new();
    std::thread::scope(|s| {
        let _guard = PanicGuard::main(shared);
        // Each worker says when it is pinned, so that the ready line comes
        // last; a worker that never starts or dies drops its sender, which
        // also counts, so this can never wait for a thread that is gone.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let mut handles = Vec::new();
        for (slot, ((stream, ring), output)) in streams.iter().zip(rings).zip(outputs).enumerate() {
            let sock = &sockets[stream.member as usize];
            let worker = Worker::new(
                stream.member,
                stream.pin.clone(),
                slot,
                sock,
                ring,
                output,
                shared,
            );
            let ready = ready_tx.clone();
            let label = stream.label();
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
                    worker.run();
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
        // Returns once every sender is gone.
        let _ = ready_rx.recv();
        if failed.is_empty() {
            v.say(format!(
                "listening on {}, link-type {}, snapshot length {} bytes",
                target.label,
                target.link.describe(),
                opts.snaplen
            ));
        }
        wait_for_stop(shared, sigfd);
        shared.stop();
        wait_for_workers(opts, &handles, shared, sigfd, streams);
        for (slot, h) in handles {
            if h.join().is_err() {
                failed.push(slot);
            }
        }
    });
    failed.sort_unstable();
    failed
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
fn wait_for_workers<T>(
    opts: &Options,
    handles: &[(usize, std::thread::ScopedJoinHandle<'_, T>)],
    shared: &Shared,
    sigfd: &SignalFd,
    streams: &[Stream],
) {
    let stopped = Instant::now();
    while !handles.iter().all(|(_, h)| h.is_finished()) {
        let mut fds = [PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(100u16));
        if let Ok(Some(_)) = sigfd.read_signal() {
            if stopped.elapsed() >= GRACE {
                let busy: Vec<String> = handles
                    .iter()
                    .filter(|(_, h)| !h.is_finished())
                    .map(|(slot, _)| streams[*slot].label())
                    .collect();
                errln!(
                    "{}: not waiting for the worker for {} (stuck writing); its output is incomplete",
                    opts.name,
                    busy.join(", ")
                );
                print_report(opts, streams, shared);
                std::process::exit(1);
            }
        }
    }
}

/// Prints what ended the capture early; returns the exit status.
fn report_faults(
    opts: &Options,
    v: &Verbose,
    target: &Target,
    shared: &Shared,
    failed: &[usize],
    streams: &[Stream],
) -> i32 {
    let mut status = 0;
    for slot in failed {
        errln!(
            "{}: worker for {} failed; its count may be short",
            opts.name,
            streams[*slot].label()
        );
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
            Fault::Write { path, error }
                if path == "-" && error.kind() == io::ErrorKind::BrokenPipe =>
            {
                // The reader of `-w -` went away (`| tcpdump -c 3 -r -`):
                // an ordinary end.
                v.say("stdout closed; stopping");
            }
            Fault::Write { path, error } => {
                errln!("{}: error writing {path}: {}", opts.name, Why(error));
                status = 1;
            }
        }
    }
    status
}

/// Refuses rings that would take more than half the memory available: the
/// kernel allocates ring blocks in ways that wake the OOM killer rather
/// than fail, and on a production machine it may kill something else.
fn check_memory(geometry: Geometry, plan: &Plan) -> Result<()> {
    let streams = plan.streams.len();
    let need = geometry.bytes() as u64 * streams as u64;
    let Some(available) = mem_available() else {
        return Ok(());
    };
    if need > available / 2 {
        return Err(Error::Message(format!(
            "error setting up rings: {streams} x {} MiB is more than half of the available memory \
             ({} MiB); use a smaller -B or fewer {} (-l)",
            geometry.bytes() >> 20,
            available >> 20,
            plan.vantage.plural()
        )));
    }
    Ok(())
}

/// MemAvailable from /proc/meminfo, in bytes.
fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn remove_files(outputs: &[Option<PcapOutput>]) {
    for o in outputs.iter().flatten() {
        if o.path != "-" {
            let _ = std::fs::remove_file(&o.path);
        }
    }
}

/// Waits for a stop signal or for the workers to stop by themselves.
fn wait_for_stop(shared: &Shared, sigfd: &SignalFd) {
    loop {
        let mut fds = [
            PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(shared.stop_fd().as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
        if let Ok(Some(info)) = sigfd.read_signal() {
            // The report must not start on the terminal's `^C` line.
            if info.ssi_signo == libc::SIGINT as u32 {
                errln!();
            }
            return;
        }
        if shared.stopping() {
            return;
        }
    }
}
