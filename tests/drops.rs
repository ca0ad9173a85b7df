//! --drops: the kernel's drops of packets on the captured interface, per
//! cpu and reason, counted by the program's own eBPF probe at
//! skb:kfree_skb. Exact counts from pinned senders in private namespaces.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;

/// The UDP flow to `port` in a JSON report's flows.
fn udp_flow(r: &serde_json::Value, port: u16) -> &serde_json::Value {
    let end = format!(":{port}");
    r["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["proto"] == "udp" && f["dst"].as_str().unwrap().ends_with(&end))
        .unwrap_or_else(|| panic!("no flow to port {port}: {r}"))
}

/// The DROPS cell of the text table's row of the UDP flow to `port`, and
/// its PACKETS.
fn drops_cell(stdout: &str, port: u16) -> (String, String) {
    let end = format!(":{port}");
    let row = flow_row(stdout, |c| {
        c.first() == Some(&"udp") && c[2].ends_with(&end)
    });
    (row["DROPS"].clone(), row["PACKETS"].clone())
}

/// Datagrams to a port nobody listens on are dropped as NO_SOCKET, on
/// the cpu that received them (a veth receives on the sender's cpu); with
/// --flows their flow says so, and a flow whose datagrams a socket took
/// has no drops.
#[test]
fn no_socket_drops_on_the_receiving_cpu() {
    const CLOSED: u16 = 9;
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let sink = UdpSink::bind(&b, vb.addr);
    let json = Capture::start(&b, "rxcpu", &["--drops", "--flows", "--json", &vb.ifname]);
    let text = Capture::start(&b, "rxcpu", &["--drops", "--flows", &vb.ifname]);
    udp_send_port(&a, 1, va.addr, vb.addr, CLOSED, 5);
    udp_send(&a, 1, va.addr, vb.addr, 3);
    sink.expect(3);
    // Drops on another interface of the same namespace (lo) are not vb's.
    in_netns(&b, || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..3 {
            s.send_to(b"x", "127.0.0.1:9").unwrap();
        }
    });
    // Each datagram reached the stack (and was dropped there).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while b.link_stat(&vb.ifname, "rx_packets") < 8 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));

    let f = json.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r = f.json();
    assert_eq!(
        r["kernel_drops"],
        serde_json::json!([{"stream": 1, "cpu": 1, "reason": "NO_SOCKET", "namespace_known": true,
                            "packets": 5}]),
        "{f}"
    );
    let closed = udp_flow(&r, CLOSED);
    assert_eq!(closed["packets"], 5, "{f}");
    assert_eq!(closed["drops"], serde_json::json!({"NO_SOCKET": 5}), "{f}");
    assert_eq!(
        udp_flow(&r, UDP_PORT)["drops"],
        serde_json::json!({}),
        "{f}"
    );
    assert_eq!(r["flow_summary"]["dropped"], 1, "{f}");
    assert_eq!(r["flow_summary"]["drops_overflow"], 0, "{f}");
    let t = text.interrupt();
    assert_eq!(t.status.code(), Some(0), "{t}");
    let dropped: Vec<&str> = t.stderr.lines().filter(|l| l.contains("dropped")).collect();
    assert_eq!(
        dropped,
        ["5 packets dropped by the kernel on cpu1: NO_SOCKET."],
        "{t}"
    );
    assert!(t.stdout.contains("8 packets captured on cpu1."), "{t}");
    assert_eq!(
        drops_cell(&t.stdout, CLOSED),
        ("NO_SOCKET:5".to_string(), "5".to_string()),
        "{t}"
    );
    assert_eq!(drops_cell(&t.stdout, UDP_PORT).0, "-", "{t}");
    assert!(
        t.stdout
            .contains("1 flow with packets dropped by the kernel (DROPS).\n"),
        "{t}"
    );
}

/// The `drops` column of /proc/net/udp for the socket bound to `port`
/// in namespace `ns`.
fn udp_socket_drops(ns: &Netns, port: u16) -> u64 {
    let want = format!(":{port:04X}");
    let table = ns.exec(&["cat", "/proc/net/udp"]);
    let line = table
        .lines()
        .skip(1)
        .find(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&want))
        })
        .unwrap_or_else(|| panic!("no UDP socket on port {port}:\n{table}"));
    line.split_whitespace().last().unwrap().parse().unwrap()
}

/// A socket whose receive buffer is full drops what comes next as
/// SOCKET_RCVBUFF: exactly the datagrams it did not queue, what the
/// socket's own drop counter says, and, with --flows, its flow's DROPS.
#[test]
fn a_full_socket_buffer() {
    const SENT: usize = 2000;
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let addr = vb.addr;
    let sock = in_netns(&b, move || {
        let s = UdpSocket::bind((addr, UDP_PORT)).unwrap();
        small_receive_buffer(&s);
        s
    });
    let cap = Capture::start(&b, "rxcpu", &["--drops", "--flows", "--json", &vb.ifname]);
    let text = Capture::start(&b, "rxcpu", &["--drops", "--flows", &vb.ifname]);
    udp_send(&a, 0, va.addr, vb.addr, SENT);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while b.link_stat(&vb.ifname, "rx_packets") < SENT as u64 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    let socket_drops = udp_socket_drops(&b, UDP_PORT);
    sock.set_nonblocking(true).unwrap();
    let mut queued = 0u64;
    let mut buf = [0u8; 64];
    while sock.recv(&mut buf).is_ok() {
        queued += 1;
    }
    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r = f.json();
    let dropped = SENT as u64 - queued;
    assert!(dropped > 0, "the buffer never filled: {queued} queued");
    assert_eq!(socket_drops, dropped);
    assert_eq!(
        r["kernel_drops"],
        serde_json::json!([{"stream": 0, "cpu": 0, "reason": "SOCKET_RCVBUFF",
                            "namespace_known": true, "packets": dropped}]),
        "{f}"
    );
    let flow = udp_flow(&r, UDP_PORT);
    assert_eq!(flow["packets"], SENT as u64, "{f}");
    assert_eq!(
        flow["drops"],
        serde_json::json!({"SOCKET_RCVBUFF": socket_drops}),
        "{f}"
    );
    let t = text.interrupt();
    assert_eq!(t.status.code(), Some(0), "{t}");
    assert_eq!(
        drops_cell(&t.stdout, UDP_PORT).0,
        format!("SOCKET_RCVBUFF:{socket_drops}"),
        "{t}"
    );
}

/// -v names where the kernel dropped the packets of each reason: the
/// drop's call site, a UDP receive function for datagrams to a closed
/// port (the name read back from the kernel's own symbol table).
#[test]
fn verbose_names_the_call_site() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let cap = Capture::start(&b, "rxcpu", &["--drops", "-v", &vb.ifname]);
    udp_send_port(&a, 1, va.addr, vb.addr, 9, 4);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while b.link_stat(&vb.ifname, "rx_packets") < 4 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let sites: Vec<&str> = f
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("rxcpu: drops: NO_SOCKET at "))
        .collect();
    assert_eq!(sites.len(), 1, "{f}");
    let (place, cpus) = sites[0].split_once(' ').unwrap();
    assert_eq!(cpus, "(cpu1)", "{f}");
    let (symbol, offset) = place.split_once("+0x").unwrap_or_else(|| panic!("{f}"));
    assert!(u64::from_str_radix(offset, 16).is_ok(), "{f}");
    assert!(symbol.contains("udp"), "not a UDP function: {symbol}");
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap();
    assert!(
        kallsyms.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            matches!(f[1], "t" | "T") && f[2] == symbol
        }),
        "{symbol} is not a kernel function"
    );
}

#[test]
fn drops_need_an_interface() {
    check_usage_errors(&[
        ("rxtxcpu", &["--drops"][..], "--drops needs an interface."),
        (
            "rxcpu",
            &["--drops", "-i", "any"],
            "--drops needs an interface.",
        ),
    ]);
}

/// The interface's own drop counters, always (no --drops): a veth whose
/// peer is down drops what it is given to send, as tx_dropped.
#[test]
fn the_interface_counters_say_what_the_device_dropped() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    b.ip(&["link", "set", &vb.ifname, "down"]);
    // Once the kernel has seen the carrier go, frames are dropped before
    // the driver (and before the packet taps), still as tx_dropped; until
    // then the driver drops them after the taps. Wait, so it is one way.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let carrier = format!("/sys/class/net/{}/carrier", va.ifname);
    while a
        .exec(&["sh", "-c", &format!("cat {carrier} 2>/dev/null || echo 0")])
        .trim()
        != "0"
    {
        assert!(std::time::Instant::now() < deadline, "carrier still up");
        std::thread::sleep(Duration::from_millis(10));
    }
    let cap = Capture::start(&a, "txcpu", &[&va.ifname]);
    let frame = {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend(ipv4_udp(va.addr, 1000, vb.addr, UDP_PORT, b"x"));
        f
    };
    // The device refuses each (ENOBUFS): sent all the same.
    send_frames_refused(&a, 1, &va.ifname, vec![frame; 7], Some(libc::ENOBUFS));
    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let dropped: Vec<&str> = f.stderr.lines().filter(|l| l.contains("dropped")).collect();
    assert_eq!(
        dropped,
        [format!("7 packets dropped by {} (tx_dropped).", va.ifname)],
        "{f}"
    );
}

/// Without CAP_BPF and CAP_PERFMON the probe cannot be had: one line that
/// says which privileges and how to grant them, exit 1, before capturing.
#[test]
fn without_the_privileges_it_says_which() {
    let ns = Netns::new();
    assert_needs_bpf_privileges(&ns, &["--drops", "lo"], "--drops", "the probe needs");
}

/// The probe is the kernel's to remove when the program dies, however it
/// dies: after SIGKILL no program of ours is left.
#[test]
fn nothing_left_after_sigkill() {
    if !bpftool_installed() {
        return;
    }
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxcpu", &["--drops", "lo"]);
    let ids = cap.bpf_programs();
    assert!(!ids.is_empty(), "no program held by the capture");
    cap.kill_and_check_programs_freed(&ids);
}

/// RPS sends a veth's flood to cpu1, whose backlog holds 8 packets: the
/// kernel drops the rest as CPU_BACKLOG (on the cpu that steered them),
/// exactly as many as softnet_stat counts for cpu1. A global setting: the
/// machine is this test's alone while it runs.
#[test]
fn backlog_drops_match_softnet_stat() {
    let _alone = MachineLock::exclusive();
    let _backlog = Sysctl::set("/proc/sys/net/core/netdev_max_backlog", "8");
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    set_sysfs(&b, &vb.ifname, "queues/rx-0/rps_cpus", "2");
    // A socket takes the datagrams: no ICMP goes back (whose drops at the
    // other end's backlog softnet_stat would count too).
    let _sink = UdpSink::bind(&b, vb.addr);
    let cap = Capture::start(&b, "rxcpu", &["--drops", "--json", &vb.ifname]);
    // softnet_stat's changes are in every report, --drops or not.
    let plain = Capture::start(&b, "rxcpu", &[&vb.ifname]);
    udp_send(&a, 0, va.addr, vb.addr, 20_000);
    // Each frame was received or dropped on the way in (veth counts a
    // frame its peer's backlog refused as the sender's tx_dropped).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while b.link_stat(&vb.ifname, "rx_packets") + a.link_stat(&va.ifname, "tx_dropped") < 20_000 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let f = cap.interrupt();
    let p = plain.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    assert_eq!(p.status.code(), Some(0), "{p}");
    let r = f.json();
    let backlog: u64 = r["kernel_drops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["reason"] == "CPU_BACKLOG")
        .map(|d| d["packets"].as_u64().unwrap())
        .sum();
    let softnet: u64 = r["softnet"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["cpu"] == 1)
        .map(|c| c["dropped"].as_u64().unwrap())
        .sum();
    assert!(backlog > 0, "nothing dropped: {f}");
    assert_eq!(backlog, softnet, "{f}");
    let line = format!(
        "{softnet} packets dropped by the kernel on cpu1: backlog full (softnet_stat, every device)."
    );
    assert!(p.stderr.lines().any(|l| l == line), "no {line:?}\n{p}");
}

/// In the queue vantage the live view has no per-stream kernel drops:
/// the probe counts per cpu, and a queue's number is not a cpu's (cpu1's
/// drops used to show on queue1 whatever queue the packets came in on).
/// The drops are still counted, per cpu, in the report.
#[test]
fn live_queue_streams_have_no_cpu_drops() {
    const CLOSED: u16 = 9;
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair_with_queues(&a, &b, 2);
    let cap = Capture::start(
        &b,
        "rxqueue",
        &["--live", "--interval=0.1", "--drops", "--json", &vb.ifname],
    );
    udp_send_port(&a, 1, va.addr, vb.addr, CLOSED, 5);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while b.link_stat(&vb.ifname, "rx_packets") < 5 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    // Two intervals after the drops.
    std::thread::sleep(Duration::from_millis(300));
    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r = f.json();
    assert_eq!(r["total"], 5, "{f}");
    assert_eq!(
        r["kernel_drops"],
        serde_json::json!([{"stream": null, "cpu": 1, "reason": "NO_SOCKET",
                            "namespace_known": true, "packets": 5}]),
        "{f}"
    );
    let mut lines = 0;
    for l in f.after_ready().lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        for s in v["streams"].as_array().unwrap() {
            assert_eq!(s["kernel_drops_ps"], serde_json::Value::Null, "{l}");
            lines += 1;
        }
    }
    assert!(lines > 0, "no live lines\n{f}");
}
