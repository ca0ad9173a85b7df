//! Live captures, each test in its own network namespace (so they run in
//! parallel and see only their own, deterministic traffic).
//!
//! On `lo` a packet is handled entirely by the sending cpu: a UDP datagram
//! is 2 packets (tx + rx), a ping echo 4, all on the sender's cpu.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use common::*;

/// Stops a capture with SIGINT and returns how it ended.
#[test]
fn ping_from_cpu0_is_four_packets_on_cpu0() {
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxcpu", &["lo"]);
    ping(&ns, 0, LO, 1);
    cap.interrupt().assert_report(&[(0, 4), (1, 0)]);
}

#[test]
fn ping_from_cpu1_is_four_packets_on_cpu1() {
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxcpu", &["lo"]);
    ping(&ns, 1, LO, 2);
    cap.interrupt().assert_report(&[(0, 0), (1, 8)]);
}

#[test]
fn udp_bursts_on_both_cpus() {
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxcpu", &["lo"]);
    udp_send(&ns, 0, LO, LO, 6);
    udp_send(&ns, 1, LO, LO, 3);
    let f = cap.interrupt();
    f.assert_report(&[(0, 12), (1, 6)]);
    // stderr is a pipe here: no `^C` to step off, so no lone newline
    // either (a script testing `[ -s err ]` sees nothing amiss).
    assert_eq!(f.after_ready(), "", "{f}");
}

/// On a terminal, SIGINT still puts a lone newline on stderr, so the
/// report does not start on the `^C` line.
#[test]
fn sigint_newline_on_a_terminal() {
    use std::process::{Command, Stdio};
    let ns = Netns::new();
    let mut pty = Pty::new(80, 24);
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, BIN, "-v", "lo"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(pty.stdio())
        .spawn()
        .unwrap();
    let lines = pty.lines();
    let mut setup = String::new();
    while !setup.contains("listening on") {
        match lines.recv_timeout(std::time::Duration::from_secs(15)) {
            Ok(l) => setup.push_str(&l),
            Err(e) => {
                let _ = child.kill();
                panic!("no `listening on` ({e}):\n{setup}");
            }
        }
    }
    udp_send(&ns, 1, LO, LO, 2);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGINT).unwrap();
    let after = read_terminal(&lines);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{after}");
    assert_eq!(after, "\n", "stderr after `listening on`");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0 packets captured on cpu0.\n4 packets captured on cpu1.\n4 packets captured total.\n"
    );
}

/// `--duration` ends the capture as SIGINT does: every packet captured in
/// time is in the report and the files, exit 0, and no lone newline.
#[test]
fn duration_ends_the_capture() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let out = dir.path("d.pcap");
    // Long enough for the datagrams below to be sent well inside it.
    let cap = Capture::start(&ns, "rxtxcpu", &["--duration=3", "-w", &out, "lo"]);
    udp_send(&ns, 0, LO, LO, 3);
    udp_send(&ns, 1, LO, LO, 2);
    let f = cap.wait();
    f.assert_report(&[(0, 6), (1, 4)]);
    assert_eq!(f.after_ready(), "", "{f}");
    // The stop notice follows the line a script waits for.
    assert!(
        f.stderr
            .contains(", snapshot length 262144 bytes\nrxtxcpu: stopping after 3 s (--duration)\n"),
        "{f}"
    );
    for (cpu, n) in [(0, 6), (1, 4)] {
        assert_eq!(read_pcap(&cpu_file(&out, cpu)).1.len(), n, "{f}");
    }
    // Fractions, and the XDP-free all-interfaces capture.
    let f = Capture::start(&ns, "rxtxcpu", &["--duration=.5"]).wait();
    f.assert_report(&[(0, 0), (1, 0)]);
}

/// tcpdump's habits: `-i INTERFACE`, and the words after the interface as
/// the filter expression.
#[test]
fn interface_option_and_trailing_expression() {
    let ns = Netns::new();
    // Only the datagrams match, not the pings.
    for (args, expr) in [
        (&["lo", "udp"][..], "udp"),
        (&["lo", "ip", "and", "udp"], "ip and udp"),
        (&["-i", "lo", "ip", "and", "udp"], "ip and udp"),
        (&["-i", "lo", "ip and udp"], "ip and udp"),
        (&["--interface=lo", "udp"], "udp"),
    ] {
        let cap = Capture::start(&ns, "rxtxcpu", args);
        udp_send(&ns, 0, LO, LO, 3);
        ping(&ns, 1, LO, 1);
        let f = cap.interrupt();
        f.assert_report(&[(0, 6), (1, 0)]);
        assert!(
            f.stderr.contains(&format!("rxtxcpu: filter '{expr}': ")),
            "{args:?}\n{f}"
        );
    }
    // -i alone, and `-i any`: every interface (here: lo).
    for args in [&["-i", "lo"][..], &["-i", "any"]] {
        let cap = Capture::start(&ns, "rxtxcpu", args);
        ping(&ns, 1, LO, 1);
        cap.interrupt().assert_report(&[(0, 0), (1, 4)]);
    }
    // With -i, every word is the expression: a bad one is libpcap's error.
    let f = run_in(&ns, "rxtxcpu", &["-i", "lo", "lo2"]);
    assert_eq!(f.status.code(), Some(2), "{f}");
    assert_eq!(
        f.stderr,
        "rxtxcpu: invalid filter expression 'lo2': can't parse filter expression: syntax error\n"
    );
}

#[test]
fn all_interfaces_when_none_is_given() {
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxcpu", &[]);
    ping(&ns, 1, LO, 1);
    udp_send(&ns, 0, LO, LO, 2);
    cap.interrupt().assert_report(&[(0, 4), (1, 4)]);
}

/// Traffic on both cpus (3 datagrams on cpu0, 5 on cpu1), captured with
/// `args`; `expected` report lines.
fn udp_on_lo(name: &str, args: &[&str], expected: &[(u32, u64)]) {
    let ns = Netns::new();
    let mut argv = args.to_vec();
    argv.push("lo");
    let cap = Capture::start(&ns, name, &argv);
    udp_send(&ns, 0, LO, LO, 3);
    udp_send(&ns, 1, LO, LO, 5);
    cap.interrupt().assert_report(expected);
}

#[test]
fn cpu_list_selects_cpu1() {
    udp_on_lo("rxtxcpu", &["-l", "1"], &[(1, 10)]);
}

#[test]
fn cpu_list_selects_cpu0() {
    udp_on_lo("rxtxcpu", &["-l0"], &[(0, 6)]);
}

#[test]
fn cpu_list_selects_both() {
    udp_on_lo("rxtxcpu", &["--cpu-list=0-1"], &[(0, 6), (1, 10)]);
}

#[test]
fn cpu_mask_selects_cpu1() {
    udp_on_lo("rxtxcpu", &["-m", "2"], &[(1, 10)]);
}

#[test]
fn cpu_mask_with_commas_and_upper_case() {
    udp_on_lo("rxtxcpu", &["--cpu-mask", "0,0,0,3"], &[(0, 6), (1, 10)]);
    udp_on_lo("rxtxcpu", &["-m", ",0F,"], &[(0, 6), (1, 10)]);
}

#[test]
fn direction_rx() {
    udp_on_lo("rxtxcpu", &["-d", "rx"], &[(0, 3), (1, 5)]);
}

#[test]
fn direction_tx() {
    udp_on_lo("rxtxcpu", &["--direction=tx"], &[(0, 3), (1, 5)]);
}

#[test]
fn direction_rxtx() {
    udp_on_lo("rxtxcpu", &["-drxtx"], &[(0, 6), (1, 10)]);
}

#[test]
fn invoked_as_rxcpu() {
    udp_on_lo("rxcpu", &[], &[(0, 3), (1, 5)]);
}

#[test]
fn invoked_as_txcpu() {
    udp_on_lo("txcpu", &[], &[(0, 3), (1, 5)]);
}

#[test]
fn direction_option_overrides_invocation_name() {
    udp_on_lo("rxcpu", &["-d", "rxtx"], &[(0, 6), (1, 10)]);
    udp_on_lo("txcpu", &["--direction", "rx"], &[(0, 3), (1, 5)]);
}

#[test]
fn buffer_size_option() {
    udp_on_lo("rxtxcpu", &["-B", "4096"], &[(0, 6), (1, 10)]);
    udp_on_lo("rxtxcpu", &["--buffer-size=1024", "-l1"], &[(1, 10)]);
}

#[test]
fn count_stops_after_exactly_n_packets() {
    for (args, n) in [
        (&["-c", "100", "lo"][..], 100),
        (&["--count=33", "lo"], 33),
        (&["-c7", "-drx", "lo"], 7),
    ] {
        let ns = Netns::new();
        let cap = Capture::start(&ns, "rxtxcpu", args);
        // 2 x 100 datagrams = 400 packets, far more than the count.
        let senders = [0, 1].map(|cpu| spawn_udp_send(&ns, cpu, LO, LO, 100));
        let f = cap.wait();
        for s in senders {
            s.join().unwrap();
        }
        assert_eq!(f.status.code(), Some(0), "{args:?}\n{f}");
        let report = f.report();
        assert_eq!(report.total, n, "{args:?}\n{f}");
        assert_eq!(
            report.per_cpu.keys().copied().collect::<Vec<_>>(),
            [0, 1],
            "{args:?}\n{f}"
        );
    }
}

#[test]
fn flood_on_cpu1_before_start_is_never_counted_on_cpu0() {
    let ns = Netns::new();
    let flood = Flood::start(&ns, 1, LO);
    flood.wait_for_more(20_000);
    let cap = Capture::start(&ns, "rxtxcpu", &["lo"]);
    flood.wait_for_more(20_000);
    flood.stop();
    let f = cap.interrupt();
    let report = f.report();
    assert_eq!(f.status.code(), Some(0), "{f}");
    assert_eq!(report.per_cpu.get(&0), Some(&0), "{f}");
    assert!(report.per_cpu.get(&1).is_some_and(|&n| n > 0), "{f}");
    assert!(f.stdout.starts_with("0 packets captured on cpu0.\n"), "{f}");
}

#[test]
fn concurrent_rxcpu_and_txcpu_on_lo() {
    let ns = Netns::new();
    let rx = Capture::start(&ns, "rxcpu", &["lo"]);
    let tx = Capture::start(&ns, "txcpu", &["lo"]);
    udp_send(&ns, 0, LO, LO, 5);
    udp_send(&ns, 1, LO, LO, 2);
    rx.signal(Signal::SIGINT);
    tx.signal(Signal::SIGINT);
    rx.wait().assert_report(&[(0, 5), (1, 2)]);
    tx.wait().assert_report(&[(0, 5), (1, 2)]);
}

const PACKET_FANOUT: libc::c_int = 18;
const PACKET_FANOUT_HASH: u32 = 0;
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;

/// A packet socket bound to `lo` (ETH_P_ALL), ready to join a fanout group.
fn packet_socket_on_lo() -> OwnedFd {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket/bind calls on a fresh fd with a zeroed sockaddr_ll.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as libc::c_int);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let fd = OwnedFd::from_raw_fd(fd);
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = libc::if_nametoindex(c"lo".as_ptr()) as i32;
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        let rc = libc::bind(
            fd.as_raw_fd(),
            &sll as *const _ as *const libc::sockaddr,
            len,
        );
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        fd
    }
}

/// Joins fanout group `id` with `type_flags`; returns the group's id.
fn join_fanout(fd: &OwnedFd, id: u16, type_flags: u32) -> std::io::Result<u16> {
    let mut val = (id as u32 | type_flags << 16) as libc::c_int;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: setsockopt/getsockopt with a c_int option value.
    unsafe {
        let p = &mut val as *mut _ as *mut libc::c_void;
        if libc::setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_FANOUT, p, len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::getsockopt(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_FANOUT, p, &mut len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(val as u16)
}

#[test]
fn fanout_group_ids_held_by_another_program() {
    let ns = Netns::new();
    // Another program's HASH groups on lo: a kernel-chosen id, the ids
    // after it, and the lowest ids.
    let held = in_netns(&ns, || {
        let first = packet_socket_on_lo();
        let id = join_fanout(&first, 0, PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID)
            .expect("PACKET_FANOUT_FLAG_UNIQUEID");
        let mut held = vec![(id, first)];
        for next in (1..=16).map(|i| id.wrapping_add(i)).chain(0..16) {
            if held.iter().all(|(h, _)| *h != next) {
                let fd = packet_socket_on_lo();
                join_fanout(&fd, next, PACKET_FANOUT_HASH).expect("join free fanout id");
                held.push((next, fd));
            }
        }
        held
    });
    let cap = Capture::start(&ns, "rxtxcpu", &["lo"]);
    udp_send(&ns, 0, LO, LO, 4);
    ping(&ns, 1, LO, 1);
    cap.interrupt().assert_report(&[(0, 8), (1, 4)]);
    drop(held);
}

#[test]
fn rps_steers_veth_receive_to_cpu1() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let rps = format!("/sys/class/net/{}/queues/rx-0/rps_cpus", vb.ifname);
    b.exec(&["sh", "-c", &format!("echo 2 > {rps}")]);
    let sink = UdpSink::bind(&b, vb.addr);
    let cap = Capture::start(&b, "rxtxcpu", &["-d", "rx", &vb.ifname]);
    udp_send(&a, 0, va.addr, vb.addr, 7);
    sink.expect(7);
    cap.interrupt().assert_report(&[(0, 0), (1, 7)]);
}

#[test]
fn veth_receive_without_rps_stays_on_sending_cpu() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let sink = UdpSink::bind(&b, vb.addr);
    let cap = Capture::start(&b, "rxcpu", &[&vb.ifname]);
    udp_send(&a, 1, va.addr, vb.addr, 3);
    udp_send(&a, 0, va.addr, vb.addr, 2);
    sink.expect(5);
    cap.interrupt().assert_report(&[(0, 2), (1, 3)]);
}

fn report_on_signal(sig: Signal) {
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxcpu", &["lo"]);
    udp_send(&ns, 1, LO, LO, 3);
    udp_send(&ns, 0, LO, LO, 1);
    cap.signal(sig);
    cap.wait().assert_report(&[(0, 2), (1, 6)]);
}

#[test]
fn sigterm_prints_report() {
    report_on_signal(Signal::SIGTERM);
}

#[test]
fn sighup_prints_report() {
    report_on_signal(Signal::SIGHUP);
}

#[test]
fn interface_deleted_mid_capture() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let sink = UdpSink::bind(&b, vb.addr);
    let cap = Capture::start(&b, "rxtxcpu", &[&vb.ifname]);
    udp_send(&a, 0, va.addr, vb.addr, 3);
    sink.expect(3);
    b.ip(&["link", "del", &vb.ifname]);
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(1), "{f}");
    let report = f.report();
    assert_eq!(
        report.per_cpu,
        [(0, 3), (1, 0)].into_iter().collect(),
        "{f}"
    );
    assert!(
        f.after_ready().lines().any(|l| l.contains(&vb.ifname)),
        "stderr does not name {}\n{f}",
        vb.ifname
    );
}

#[test]
fn promiscuous_on_veth() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let sink = UdpSink::bind(&b, vb.addr);
    assert_eq!(b.promiscuity(&vb.ifname), 0);
    let cap = Capture::start(&b, "rxtxcpu", &["-pU", &vb.ifname]);
    assert_eq!(b.promiscuity(&vb.ifname), 1, "{}", cap.stderr_now());
    udp_send(&a, 0, va.addr, vb.addr, 4);
    sink.expect(4);
    cap.interrupt().assert_report(&[(0, 4), (1, 0)]);
    assert_eq!(b.promiscuity(&vb.ifname), 0);
}

#[test]
fn promiscuous_is_undone_when_killed() {
    let (a, b) = (Netns::new(), Netns::new());
    let (_va, vb) = veth_pair(&a, &b);
    let cap = Capture::start(&b, "rxtxcpu", &["--promiscuous", &vb.ifname]);
    assert_eq!(b.promiscuity(&vb.ifname), 1, "{}", cap.stderr_now());
    cap.signal(Signal::SIGKILL);
    let f = cap.wait();
    assert_eq!(f.status.code(), None, "{f}");
    assert_eq!(b.promiscuity(&vb.ifname), 0);
}

/// A capture that cannot keep up (frozen with SIGSTOP while its two-block
/// ring overflows) reports the kernel's drops on stderr, and captured plus
/// dropped is exactly what was sent: nothing is lost silently.
#[test]
fn kernel_drops_are_reported_and_add_up() {
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxcpu", &["-B", "1", "-s", "100", "lo"]);
    cap.signal(Signal::SIGSTOP);
    udp_send(&ns, 0, LO, LO, 3000);
    cap.signal(Signal::SIGCONT);
    let f = cap.interrupt();
    let report = f.report();
    let dropped: u64 = *f
        .drops()
        .get(&0)
        .unwrap_or_else(|| panic!("no drop line for cpu0:\n{f}"));
    assert!(dropped > 0, "{f}");
    assert_eq!(report.per_cpu[&0] + dropped, 6000, "{f}");
    assert_eq!(report.per_cpu[&1], 0, "{f}");
    assert!(!f.stdout.contains("dropped"), "{f}");
}
