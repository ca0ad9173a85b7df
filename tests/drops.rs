//! --drops: the kernel's drops of packets on the captured interface, per
//! cpu and reason, counted by the program's own eBPF probe at
//! skb:kfree_skb. Exact counts from pinned senders in private namespaces.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;

/// Datagrams to a port nobody listens on are dropped as NO_SOCKET, on
/// the cpu that received them (a veth receives on the sender's cpu).
#[test]
fn no_socket_drops_on_the_receiving_cpu() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let json = Capture::start(&b, "rxcpu", &["--drops", "--json", &vb.ifname]);
    let text = Capture::start(&b, "rxcpu", &["--drops", &vb.ifname]);
    udp_send(&a, 1, va.addr, vb.addr, 5);
    // Drops on another interface of the same namespace (lo) are not vb's.
    in_netns(&b, || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..3 {
            s.send_to(b"x", "127.0.0.1:9").unwrap();
        }
    });
    // Each datagram reached the stack (and was dropped there).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while b.link_stat(&vb.ifname, "rx_packets") < 5 {
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
    let t = text.interrupt();
    assert_eq!(t.status.code(), Some(0), "{t}");
    let dropped: Vec<&str> = t.stderr.lines().filter(|l| l.contains("dropped")).collect();
    assert_eq!(
        dropped,
        ["5 packets dropped by the kernel on cpu1: NO_SOCKET."],
        "{t}"
    );
    assert!(t.stdout.contains("5 packets captured on cpu1."), "{t}");
}

/// A socket whose receive buffer is full drops what comes next as
/// SOCKET_RCVBUFF: exactly the datagrams it did not queue.
#[test]
fn a_full_socket_buffer() {
    const SENT: usize = 2000;
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let addr = vb.addr;
    let sock = in_netns(&b, move || {
        let s = UdpSocket::bind((addr, UDP_PORT)).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
        let size: libc::c_int = 4096;
        // SAFETY: a valid socket and an int option of its size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        s
    });
    let cap = Capture::start(&b, "rxcpu", &["--drops", "--json", &vb.ifname]);
    udp_send(&a, 0, va.addr, vb.addr, SENT);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while b.link_stat(&vb.ifname, "rx_packets") < SENT as u64 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
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
    assert_eq!(
        r["kernel_drops"],
        serde_json::json!([{"stream": 0, "cpu": 0, "reason": "SOCKET_RCVBUFF",
                            "namespace_known": true, "packets": dropped}]),
        "{f}"
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
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "setpriv"])
        .args(["--inh-caps=-bpf,-perfmon,-sys_admin"])
        .args(["--bounding-set=-bpf,-perfmon,-sys_admin"])
        .args([BIN, "--drops", "lo"])
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("rxtxcpu: --drops: ")
            && stderr.contains("the probe needs CAP_BPF and CAP_PERFMON (or root): setcap cap_net_raw,cap_bpf,cap_perfmon+ep "),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
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
    assert_eq!(f.status.code(), Some(0), "{f}");
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
}
