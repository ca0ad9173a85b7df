//! Faults during a capture, and the privileges it runs with. rxtxcpu runs
//! as root while something is already going wrong: it must never crash,
//! misattribute a packet, leave the machine changed, or lose count of a
//! packet. Each test has its own network namespaces.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use common::*;

/// `assert_files_match_report`, every packet one of `udp_send`'s datagrams.
fn assert_files_hold_our_datagrams(f: &Finished, template: &str) {
    assert_files_match_report(f, template, |cpu, p| {
        assert!(p.data.ends_with(PAYLOAD), "cpu{cpu}: not ours: {p:?}\n{f}");
    });
}

// ---------------------------------------------------------------------------
// The interface goes away

/// Captures with -w on a veth (with `extra` options), 3 datagrams
/// received on cpu0 and 2 on cpu1, then `actions` (`ip` commands, the
/// interface's name inserted after their first two words) take the
/// interface away: the capture stops by itself with one line naming the
/// interface, the report, valid files and exit 1.
fn interface_taken_away(extra: &[&str], actions: &[&[&str]], says: &str) {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let sink = UdpSink::bind(&b, vb.addr);
    let dir = TempDir::new();
    let out = dir.path("gone.pcap");
    let mut args = extra.to_vec();
    args.extend(["-w", &out, &vb.ifname]);
    let cap = Capture::start(&b, "rxtxcpu", &args);
    udp_send(&a, 0, va.addr, vb.addr, 3);
    udp_send(&a, 1, va.addr, vb.addr, 2);
    sink.expect(5);
    for action in actions {
        let mut argv = action.to_vec();
        argv.insert(2, &vb.ifname);
        b.ip(&argv);
    }
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(1), "{f}");
    assert_eq!(f.report().per_cpu, BTreeMap::from([(0, 3), (1, 2)]), "{f}");
    // One line says what happened (the report is on stdout).
    assert_eq!(
        f.after_ready().lines().collect::<Vec<_>>(),
        [format!("rxtxcpu: interface '{}' {says}", vb.ifname)],
        "one line after `listening on`\n{f}"
    );
    assert_files_hold_our_datagrams(&f, &out);
}

#[test]
fn interface_deleted_mid_capture_keeps_files_valid() {
    interface_taken_away(&[], &[&["link", "del"]], "disappeared: Network is down");
}

#[test]
fn interface_down_mid_capture_keeps_files_valid() {
    interface_taken_away(
        &[],
        &[&["link", "set", "down"]],
        "went down: Network is down",
    );
}

/// Down, then renamed (it must be down for that) before the capture ends:
/// the interface is still there under its index, and went down, as it
/// would under its old name.
#[test]
fn interface_down_and_renamed_mid_capture_went_down() {
    interface_taken_away(
        &[],
        &[
            &["link", "set", "down"],
            &["link", "set", "name", "renamed0"],
        ],
        "went down: Network is down",
    );
}

/// The XDP program stays attached to an interface that goes down, and
/// nothing comes; the capture ends as a packet socket's does.
#[test]
fn interface_down_mid_xdp_capture_keeps_files_valid() {
    interface_taken_away(
        &["--xdp=generic"],
        &[&["link", "set", "down"]],
        "went down: Network is down",
    );
}

/// Down and up again at once, between two of the capture's checks: it
/// went down all the same, and the capture ends as a packet socket's does
/// (its sockets got ENETDOWN).
#[test]
fn interface_down_and_up_mid_xdp_capture_went_down() {
    interface_taken_away(
        &["--xdp=generic"],
        &[&["link", "set", "down"], &["link", "set", "up"]],
        "went down: Network is down",
    );
}

#[test]
fn interface_deleted_mid_xdp_capture_keeps_files_valid() {
    interface_taken_away(
        &["--xdp=generic"],
        &[&["link", "del"]],
        "disappeared: No such device",
    );
}

// ---------------------------------------------------------------------------
// The disk fills up

#[test]
fn disk_full_stops_with_valid_files() {
    let ns = Netns::new();
    let disk = Tmpfs::mount("256k");
    let out = disk.dir.path("full.pcap");
    let cap = Capture::start(&ns, "rxtxcpu", &["-w", &out, "lo"]);
    // 6000 packets of about 80 bytes each in the file: more than fits.
    udp_send(&ns, 0, LO, LO, 3000);
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(1), "{f}");
    let full = cpu_file(&out, 0);
    // The report counts every packet captured; the line after the error
    // says how many of them are not in the file.
    let left_out = f.not_in_file()[&Place::Cpu(0)];
    assert!(left_out > 0, "{f}");
    assert_eq!(
        f.after_ready().lines().collect::<Vec<_>>(),
        [
            format!("rxtxcpu: error writing {full}: No space left on device"),
            format!("rxtxcpu: {}", not_in_file_line(left_out, "on cpu0")),
        ],
        "{f}"
    );
    assert_files_hold_our_datagrams(&f, &out);
}

// ---------------------------------------------------------------------------
// Stop signals

#[test]
fn sigterm_and_sighup_keep_files_valid() {
    for sig in [Signal::SIGTERM, Signal::SIGHUP] {
        let ns = Netns::new();
        let dir = TempDir::new();
        let out = dir.path("sig.pcap");
        let cap = Capture::start(&ns, "rxtxcpu", &["-w", &out, "lo"]);
        udp_send(&ns, 1, LO, LO, 3);
        udp_send(&ns, 0, LO, LO, 1);
        cap.signal(sig);
        let f = cap.wait();
        f.assert_report(&[(0, 2), (1, 6)]);
        assert_files_hold_our_datagrams(&f, &out);
    }
}

/// A capture with a big backlog to write (frozen while both cpus sent
/// `per_cpu` datagrams into a ring large enough for all of them) gets
/// `first` and then `second` again and again until it has exited: the
/// repeats land while it is shutting down. The report and the files must
/// still be complete, and every packet accounted for.
fn repeated_signal_during_shutdown(first: Signal, second: Signal) {
    let per_cpu = 30_000;
    let ns = Netns::new();
    let dir = TempDir::new();
    let out = dir.path("busy.pcap");
    let mut cap = Capture::start(&ns, "rxtxcpu", &["-B", "32768", "-w", &out, "lo"]);
    cap.signal(Signal::SIGSTOP);
    let senders = [0, 1].map(|cpu| spawn_udp_send(&ns, cpu, LO, LO, per_cpu));
    for s in senders {
        s.join().unwrap();
    }
    cap.signal(Signal::SIGCONT);
    cap.signal(first);
    let mut repeats = 0;
    while cap.is_running() {
        cap.signal(second);
        repeats += 1;
        thread::sleep(Duration::from_millis(1));
    }
    let f = cap.wait();
    let what = format!("{first} then {repeats} x {second}");
    assert_eq!(f.status.code(), Some(0), "{what}\n{f}");
    assert!(repeats > 0, "{what}: exited before the second signal\n{f}");
    // Nothing for any of the signals: not even SIGINT's lone newline,
    // which is for a terminal's `^C` line and stderr is a pipe here.
    let after = f.after_ready();
    let extra: Vec<&str> = after
        .lines()
        .filter(|l| !l.contains("dropped by kernel"))
        .collect();
    assert!(
        extra.is_empty(),
        "{what}: stderr after `listening on`: {extra:?}\n{f}"
    );
    for cpu in [0, 1] {
        assert_eq!(
            f.seen_on(cpu),
            2 * per_cpu as u64,
            "{what}: cpu{cpu} captured + dropped\n{f}"
        );
    }
    assert_files_hold_our_datagrams(&f, &out);
}

#[test]
fn second_sigint_during_shutdown() {
    repeated_signal_during_shutdown(Signal::SIGINT, Signal::SIGINT);
}

#[test]
fn sigint_sigterm_and_sighup_during_shutdown() {
    repeated_signal_during_shutdown(Signal::SIGTERM, Signal::SIGINT);
    repeated_signal_during_shutdown(Signal::SIGINT, Signal::SIGTERM);
    repeated_signal_during_shutdown(Signal::SIGHUP, Signal::SIGHUP);
}

/// A stop must be honoured while a flood keeps the ring full: here the
/// output (a pipe, read at about 12 MB/s) is slower than a flood on `lo`,
/// so every block the worker gives back is full again at once. Reading
/// what was queued before the stop is fine; chasing the flood is not.
#[test]
fn sigint_stops_a_flooded_capture_with_a_slow_output() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let out = dir.path("slow.pcap");
    let fifo = cpu_file(&out, 0);
    sh("mkfifo", &[&fifo]);
    let reader = thread::spawn(move || {
        let mut file = std::fs::File::open(&fifo).unwrap();
        let (mut all, mut buf) = (Vec::new(), vec![0u8; 64 * 1024]);
        loop {
            match file.read(&mut buf).unwrap() {
                0 => return all,
                n => all.extend_from_slice(&buf[..n]),
            }
            thread::sleep(Duration::from_millis(5));
        }
    });
    let mut cap = Capture::start(&ns, "rxtxcpu", &["-l0", "-w", &out, "lo"]);
    let flood = Flood::start(&ns, 0, LO);
    flood.wait_for_more(300_000);
    cap.signal(Signal::SIGINT);
    let stopped = cap.exited_within(Duration::from_secs(5));
    flood.stop();
    let f = cap.wait();
    assert!(
        stopped,
        "still running 5 s after SIGINT while flooded (it ended once the flood stopped)\n{f}"
    );
    assert_eq!(f.status.code(), Some(0), "{f}");
    let stream = reader.join().unwrap();
    let file = scan_pcap(stream.as_slice(), true, |_| ())
        .unwrap_or_else(|e| panic!("the stream: {e}\n{f}"));
    assert_eq!(file.packets, f.report().per_cpu[&0], "{f}");
}

/// Under nohup (SIGHUP ignored at start) a hangup does not end the
/// capture, as with tcpdump; SIGINT still does, with the full report.
#[test]
fn nohup_keeps_sighup_ignored() {
    let ns = Netns::new();
    let mut cap = Capture::start_via(&ns, &["nohup"], Path::new(BIN), &["lo"]);
    cap.signal(Signal::SIGHUP);
    assert!(
        !cap.exited_within(Duration::from_millis(500)),
        "SIGHUP ended it under nohup"
    );
    udp_send(&ns, 1, LO, LO, 3);
    cap.signal(Signal::SIGINT);
    cap.wait().assert_report(&[(0, 0), (1, 6)]);
}

/// A worker stuck for good in a write (`-w -` into a reader that stopped
/// reading): signals during the grace period are ignored, so a normal
/// shutdown never cuts a file short, but a signal after it ends the program
/// with a message and the report. Ctrl-C always works.
#[test]
fn signal_after_grace_ends_a_capture_stuck_writing() {
    let ns = Netns::new();
    let mut cap = Capture::spawn_with_stdout(&ns, &["-l0", "-w", "-", "lo"], Stdio::piped());
    cap.wait_ready();
    // Held open and never read: once the pipe is full, write() blocks.
    let _stalled = cap.take_stdout();
    let flood = Flood::start(&ns, 0, LO);
    flood.wait_for_more(50_000);
    flood.stop();
    cap.signal(Signal::SIGINT);
    assert!(
        !cap.exited_within(Duration::from_millis(500)),
        "exited while stuck writing"
    );
    cap.signal(Signal::SIGINT);
    assert!(
        !cap.exited_within(Duration::from_millis(500)),
        "a second signal within the grace period ended it"
    );
    thread::sleep(Duration::from_secs(2));
    cap.signal(Signal::SIGINT);
    let f = cap.wait_within(Duration::from_secs(3));
    assert_eq!(f.status.code(), Some(1), "{f}");
    assert!(
        f.stderr
            .contains("rxtxcpu: not waiting for the worker for cpu0 (stuck writing)"),
        "{f}"
    );
    // The report goes to stderr with -w -, and still adds up.
    Report::parse(f.stderr.split_once("incomplete\n").unwrap().1).unwrap();
}

/// Stderr that cannot be written (here /dev/full; in life `2>&1 | tee log`
/// whose reader died with the same Ctrl-C) must not keep the capture from
/// stopping: SIGINT still ends it with the report on stdout.
#[test]
fn broken_stderr_does_not_prevent_stopping() {
    let ns = Netns::new();
    let wrapper = ["sh", "-c", "exec \"$0\" \"$@\" 2>/dev/full"];
    let mut cap = Capture::spawn_via(Some(&ns), &wrapper, Path::new(BIN), &["-v", "lo"]);
    // No `listening on` to wait for: ready once both worker threads run.
    let tasks = format!("/proc/{}/task", cap.pid());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&tasks).map_or(0, |d| d.count()) < 3 {
        assert!(cap.is_running(), "exited before it was ready");
        assert!(
            std::time::Instant::now() < deadline,
            "never started its workers"
        );
        thread::sleep(Duration::from_millis(10));
    }
    cap.signal(Signal::SIGINT);
    let f = cap.wait_within(Duration::from_secs(5));
    assert_eq!(f.status.code(), Some(0), "{f}");
    f.assert_report(&[(0, 0), (1, 0)]);
}

// ---------------------------------------------------------------------------
// A worker panics

/// The debug build's fault injection (`RXTXCPU_TEST_PANIC_CPU`) makes one
/// cpu's worker panic at its first block. The other worker still stops and
/// keeps what it captured, files are flushed and valid, promiscuous mode
/// goes, and the exit status says something went wrong.
#[test]
fn worker_panic_stops_the_others_cleanly() {
    if !has_test_hooks() {
        return;
    }
    for cpu in [0, 1] {
        let other = 1 - cpu;
        let (a, b) = (Netns::new(), Netns::new());
        let (va, vb) = veth_pair(&a, &b);
        let sink = UdpSink::bind(&b, vb.addr);
        let dir = TempDir::new();
        let out = dir.path("panic.pcap");
        let env = format!("RXTXCPU_TEST_PANIC_CPU={cpu}");
        #[rustfmt::skip]
        let cap = Capture::start_via(&b, &["env", &env], &program("rxtxcpu"),
                                     &["-p", "-w", &out, &vb.ifname]);
        assert_eq!(b.promiscuity(&vb.ifname), 1, "{}", cap.stderr_now());
        // The other cpu's packets first: they are in its ring before the
        // panic stops the capture.
        udp_send(&a, other, va.addr, vb.addr, 3);
        sink.expect(3);
        udp_send(&a, cpu, va.addr, vb.addr, 2);
        sink.expect(2);
        let f = cap.wait();
        let what = format!("panic on cpu{cpu}");
        assert_eq!(f.status.code(), Some(1), "{what}\n{f}");
        let message = format!("rxtxcpu: worker for cpu{cpu} failed");
        assert!(
            f.stderr.lines().any(|l| l.starts_with(&message)),
            "{what}: no `{message}` line\n{f}"
        );
        assert_eq!(
            f.report().per_cpu,
            BTreeMap::from([(other as u32, 3), (cpu as u32, 0)]),
            "{what}\n{f}"
        );
        assert_files_hold_our_datagrams(&f, &out);
        assert_eq!(b.promiscuity(&vb.ifname), 0, "{what}\n{f}");
    }
}

// ---------------------------------------------------------------------------
// Accounting under load

/// Floods `vtest1` with `per_cpu` datagrams from each cpu (through a veth,
/// so each is one received frame on the sender's cpu), then one ping per
/// cpu (its echo request comes back only once that cpu's backlog is
/// empty). What the capture counted plus what the kernel dropped must be
/// exactly the frames that reached the interface.
fn flood_is_accounted_for(args: &[&str], per_cpu: usize) -> Finished {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let _sink = UdpSink::bind(&b, vb.addr); // never read: no ICMP errors
    let dir = TempDir::new();
    let out = dir.path("load.pcap");
    let before = b.tapped_frames(&vb.ifname);
    let mut argv = args.to_vec();
    argv.extend(["-w", &out, &vb.ifname]);
    let cap = Capture::start(&b, "rxtxcpu", &argv);
    let senders = [0, 1].map(|cpu| spawn_udp_send(&a, cpu, va.addr, vb.addr, per_cpu));
    for s in senders {
        s.join().unwrap();
    }
    for cpu in [0, 1] {
        ping(&a, cpu, vb.addr, 1);
    }
    let reached = b.tapped_frames(&vb.ifname) - before;
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    // Per cpu: the datagrams, a ping request (rx) and its reply (tx).
    let what = format!("{args:?} on {}", vb.ifname);
    f.assert_accounted_for(&what, reached, [per_cpu as u64 + 2; 2]);
    assert_files_match_report(&f, &out, |_, _| ());
    f
}

#[test]
fn flood_is_accounted_for_with_a_large_ring() {
    flood_is_accounted_for(&[], 100_000);
}

#[test]
fn flood_is_accounted_for_with_a_tiny_ring() {
    // Two small blocks per cpu: the kernel drops while the worker writes.
    let f = flood_is_accounted_for(&["-B", "1", "-s", "96"], 100_000);
    eprintln!("tiny ring: drops {:?}", f.drops());
}

// ---------------------------------------------------------------------------
// Setup failures: exit 1, one line, nothing left behind

#[test]
fn interface_down_at_start() {
    let (a, b) = (Netns::new(), Netns::new());
    let (_va, vb) = veth_pair(&a, &b);
    b.ip(&["link", "set", &vb.ifname, "down"]);
    let f = run_in(&b, "rxtxcpu", &[&vb.ifname]);
    let name = &vb.ifname;
    f.assert_runtime_error(&format!(
        "rxtxcpu: error setting ifname '{name}': Network is down \
         (bring it up first: ip link set dev {name} up)"
    ));
}

/// A ring larger than the machine can spare is refused with a message,
/// before any allocation could wake the OOM killer.
#[test]
fn ring_larger_than_available_memory_is_refused() {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let available_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    // The largest -B (16 GiB per cpu), on every cpu of this 2-cpu machine.
    if 2 * (16u64 << 20) <= available_kib / 2 {
        eprintln!("skipped: this machine has memory for 2 x 16 GiB rings");
        return;
    }
    let ns = Netns::new();
    let dir = TempDir::new();
    let f = run_in(
        &ns,
        "rxtxcpu",
        &["-B", "16777216", "-w", &dir.path("never.pcap"), "lo"],
    );
    assert_eq!(f.status.code(), Some(1), "{f}");
    assert_eq!(f.stdout, "", "{f}");
    assert!(
        f.stderr.starts_with(
            "rxtxcpu: error setting up rings: 2 x 16384 MiB = 32768 MiB is more than half"
        ) && f
            .stderr
            .trim_end()
            .ends_with("use a smaller -B or fewer cpus (-l)")
            && f.stderr.lines().count() == 1,
        "{f}"
    );
    assert_eq!(dir.files(), Vec::<String>::new(), "files left behind");
}

// ---------------------------------------------------------------------------
// Privileges

const NOBODY: &str = "65534";

/// A copy of the binary that an unprivileged user can run, in a directory
/// of its own (given file capabilities `caps` if any), and a directory that
/// user can write to.
struct Unprivileged {
    dir: TempDir,
    binary: PathBuf,
    writable: String,
}

impl Unprivileged {
    fn new(caps: Option<&str>) -> Unprivileged {
        // Not under the work tree: its parents may be closed to nobody.
        let dir = TempDir::new_in(&std::env::temp_dir());
        let mode = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
        mode(&dir.0, 0o755).unwrap();
        let binary = dir.0.join("rxtxcpu");
        std::fs::copy(BIN, &binary).unwrap();
        mode(&binary, 0o755).unwrap();
        if let Some(caps) = caps {
            sh("setcap", &[caps, binary.to_str().unwrap()]);
        }
        let writable = dir.path("out");
        std::fs::create_dir(&writable).unwrap();
        sh("chown", &[&format!("{NOBODY}:{NOBODY}"), &writable]);
        Unprivileged {
            dir,
            binary,
            writable,
        }
    }

    /// `setpriv` running the copy as nobody, with no capabilities beyond
    /// the file's.
    const AS_NOBODY: [&'static str; 4] = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];

    fn run(&self, ns: &Netns, args: &[&str]) -> Finished {
        Capture::spawn_via(Some(ns), &Self::AS_NOBODY, &self.binary, args).wait()
    }

    fn start(&self, ns: &Netns, args: &[&str]) -> Capture {
        Capture::start_via(ns, &Self::AS_NOBODY, &self.binary, args)
    }
}

#[test]
fn not_root_names_cap_net_raw() {
    let ns = Netns::new();
    let user = Unprivileged::new(None);
    let message = "rxtxcpu: error creating packet socket: Operation not permitted \
                   (capturing needs root or the CAP_NET_RAW capability)";
    for args in [
        &["lo"][..],
        &[],
        &["-l1", "-w", &user.dir.path("x.pcap"), "lo"],
    ] {
        user.run(&ns, args).assert_runtime_error(message);
    }
    assert_eq!(std::fs::read_dir(&user.writable).unwrap().count(), 0);
}

#[test]
fn cap_net_raw_is_enough_to_capture() {
    let ns = Netns::new();
    let user = Unprivileged::new(Some("cap_net_raw=ep"));
    let out = format!("{}/raw.pcap", user.writable);
    let cap = user.start(&ns, &["-w", &out, "lo"]);
    ping(&ns, 0, LO, 1);
    udp_send(&ns, 1, LO, LO, 2);
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    f.assert_report(&[(0, 4), (1, 4)]);
    assert_files_match_report(&f, &out, |_, _| ());
}

/// A worker thread that cannot be started (here: nobody's process limit
/// reached) ends the capture at once with a message and the report, and
/// never leaves the other workers waiting for it.
#[test]
fn worker_that_cannot_start_ends_the_capture() {
    let ns = Netns::new();
    let user = Unprivileged::new(Some("cap_net_raw=ep"));
    // Main thread + one worker: the second worker cannot be created.
    let mut via = vec!["prlimit", "--nproc=2"];
    via.extend_from_slice(&Unprivileged::AS_NOBODY);
    let f = Capture::spawn_via(Some(&ns), &via, &user.binary, &["-l0,1", "lo"]).wait();
    assert_eq!(f.status.code(), Some(1), "{f}");
    assert!(f.stderr.contains("error starting worker for cpu"), "{f}");
    f.report();
}

/// Promiscuous mode is a packet-socket membership (PACKET_MR_PROMISC),
/// which the kernel grants to whoever may open the socket: CAP_NET_RAW is
/// enough for -p too.
#[test]
fn promiscuous_mode_needs_only_cap_net_raw() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let sink = UdpSink::bind(&b, vb.addr);
    let user = Unprivileged::new(Some("cap_net_raw=ep"));
    let cap = user.start(&b, &["-p", &vb.ifname]);
    assert_eq!(b.promiscuity(&vb.ifname), 1, "{}", cap.stderr_now());
    udp_send(&a, 1, va.addr, vb.addr, 2);
    sink.expect(2);
    cap.signal(Signal::SIGINT);
    cap.wait().assert_report(&[(0, 0), (1, 2)]);
    assert_eq!(b.promiscuity(&vb.ifname), 0);
}

/// With the capability to capture, a file the user may not create is a
/// file problem: the message must not send the user after capabilities.
#[test]
fn unwritable_file_is_not_blamed_on_capabilities() {
    let ns = Netns::new();
    let user = Unprivileged::new(Some("cap_net_raw=ep"));
    // The copy's directory belongs to root.
    let out = user.dir.path("denied.pcap");
    let f = user.run(&ns, &["-l0", "-w", &out, "lo"]);
    let first = user.dir.path("denied-0.pcap");
    assert_eq!(f.status.code(), Some(1), "{f}");
    assert_eq!(f.stdout, "", "{f}");
    assert_eq!(f.stderr.lines().count(), 1, "{f}");
    assert!(
        f.stderr.starts_with("rxtxcpu: ")
            && f.stderr.contains(&first)
            && f.stderr.contains("Permission denied"),
        "{f}"
    );
    assert!(
        !f.stderr.contains("CAP_NET_RAW"),
        "blames capabilities for a file permission\n{f}"
    );
}

/// The per-queue and per-node vantages load an eBPF fanout program, which
/// takes CAP_BPF where unprivileged eBPF is off (the usual setting): with
/// CAP_NET_RAW alone the message names what is missing; with both the
/// capture works.
#[test]
fn ebpf_vantages_need_cap_bpf() {
    let ns = Netns::new();
    let unprivileged_bpf = std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
        .is_ok_and(|s| s.trim() == "0");
    let raw_only = Unprivileged::new(Some("cap_net_raw=ep"));
    for vantage in ["--vantage=queue", "--vantage=numa"] {
        let f = raw_only.run(&ns, &[vantage, "-c1", "lo"]);
        if unprivileged_bpf {
            eprintln!("unprivileged eBPF is allowed here; only the capture is checked");
            continue;
        }
        f.assert_runtime_error(
            "rxtxcpu: error loading the eBPF fanout program: Operation not permitted \
             (the per-queue and per-node captures load an eBPF program: they need root, \
             or CAP_BPF with CAP_NET_RAW)",
        );
    }
    let both = Unprivileged::new(Some("cap_net_raw,cap_bpf=ep"));
    let cap = both.start(&ns, &["--vantage=queue", "lo"]);
    udp_send(&ns, 1, LO, LO, 2);
    cap.signal(Signal::SIGINT);
    cap.wait().assert_queue_report(&[(0, 2)], Some(2));
    let cap = both.start(&ns, &["--vantage=numa", "lo"]);
    udp_send(&ns, 0, LO, LO, 1);
    cap.signal(Signal::SIGINT);
    cap.wait().assert_node_report(&[(0, 2)]);
}

/// The XDP capture needs more than CAP_NET_RAW: the message says what.
#[test]
fn xdp_names_the_capabilities_it_needs() {
    let (a, b) = (Netns::new(), Netns::new());
    let (_va, vb) = veth_pair(&a, &b);
    let user = Unprivileged::new(Some("cap_net_raw=ep"));
    let f = user.run(&b, &["-d", "rx", "--xdp", &vb.ifname]);
    assert_eq!(f.status.code(), Some(1), "{f}");
    assert!(
        f.stderr
            .contains("(the XDP capture needs root, or CAP_BPF and CAP_NET_ADMIN)"),
        "{f}"
    );
    assert!(!b
        .ip(&["-d", "link", "show", "dev", &vb.ifname])
        .contains("prog/xdp"));
}
