//! --xdp: the XDP vantage point. Native XDP sees a received frame on the
//! cpu that ran the driver's receive, before RPS moves it; AF_PACKET sees
//! it after. Exact counts from pinned senders across a veth, the files,
//! and that the program never stays behind.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;

/// `count` datagrams from `va` to `vb`'s sink, from `cpu`, in bursts the
/// veth's XDP ring (256 frames) always has room for.
fn send(a: &Netns, sink: &UdpSink, cpu: usize, va: &Veth, vb: &Veth, count: usize) {
    let mut left = count;
    while left > 0 {
        let n = left.min(50);
        udp_send(a, cpu, va.addr, vb.addr, n);
        sink.expect(n);
        left -= n;
    }
}

/// Whether interface `ifname` of `ns` has an XDP program attached.
fn has_xdp(ns: &Netns, ifname: &str) -> bool {
    ns.ip(&["-d", "link", "show", "dev", ifname])
        .contains("prog/xdp")
}

/// The headline: RPS on the receiving end sends everything to cpu1; the
/// sender and so veth's receive run on cpu0. AF_PACKET and native XDP,
/// run at the same time, each tell their half of the story.
#[test]
fn xdp_sees_the_cpu_before_rps_moved_the_packets() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    set_sysfs(&b, &vb.ifname, "queues/rx-0/rps_cpus", "2");
    let sink = UdpSink::bind(&b, vb.addr);
    let xdp = Capture::start(&b, "rxcpu", &["--xdp=native", &vb.ifname]);
    let packet = Capture::start(&b, "rxcpu", &[&vb.ifname]);
    assert!(
        xdp.stderr_now()
            .contains("native (driver) mode: frames as the driver received them, before RPS/RFS"),
        "{}",
        xdp.stderr_now()
    );
    send(&a, &sink, 0, &va, &vb, 500);
    packet.interrupt().assert_report(&[(0, 0), (1, 500)]);
    xdp.interrupt().assert_report(&[(0, 500), (1, 0)]);
    assert!(!has_xdp(&b, &vb.ifname));
}

/// A veth with a queue per cpu and XPS keeping each sender's frames on
/// its own queue (native XDP runs per receive queue's poll).
fn per_cpu_queues() -> (Netns, Netns, Veth, Veth) {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair_with_queues(&a, &b, 2);
    set_sysfs(&a, &va.ifname, "queues/tx-0/xps_cpus", "1");
    set_sysfs(&a, &va.ifname, "queues/tx-1/xps_cpus", "2");
    (a, b, va, vb)
}

#[test]
fn without_rps_xdp_and_packet_sockets_agree() {
    for mode in ["--xdp=native", "--xdp=generic", "--xdp"] {
        let (a, b, va, vb) = per_cpu_queues();
        let sink = UdpSink::bind(&b, vb.addr);
        let xdp = Capture::start(&b, "rxcpu", &[mode, &vb.ifname]);
        let packet = Capture::start(&b, "rxcpu", &[&vb.ifname]);
        send(&a, &sink, 0, &va, &vb, 30);
        send(&a, &sink, 1, &va, &vb, 20);
        packet.interrupt().assert_report(&[(0, 30), (1, 20)]);
        let f = xdp.interrupt();
        f.assert_report(&[(0, 30), (1, 20)]);
        let hook = if mode.ends_with("generic") {
            "generic"
        } else {
            "native"
        };
        assert!(f.stderr.contains(&format!("{hook} (")), "{mode}\n{f}");
    }
}

#[test]
fn files_hold_the_frames_with_wall_clock_times() {
    let (a, b, va, vb) = per_cpu_queues();
    let dir = TempDir::new();
    let template = dir.path("x.pcap");
    let sink = UdpSink::bind(&b, vb.addr);
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let cap = Capture::start(
        &b,
        "rxcpu",
        &["--xdp", "-s", "50", "-w", &template, &vb.ifname],
    );
    send(&a, &sink, 0, &va, &vb, 12);
    send(&a, &sink, 1, &va, &vb, 7);
    let f = cap.interrupt();
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    f.assert_report(&[(0, 12), (1, 7)]);
    assert_files_match_report(&f, &template, |_, _| {});
    for cpu in [0, 1] {
        let (header, packets) = read_pcap(&cpu_file(&template, cpu));
        assert_eq!(header.snaplen, 50);
        let mut last = Duration::ZERO;
        for p in &packets {
            assert_eq!(p.data.len(), 50, "caplen");
            assert_eq!(p.orig_len as usize, 14 + 20 + 8 + PAYLOAD.len());
            assert!(
                start <= p.timestamp + Duration::from_micros(1) && p.timestamp <= end,
                "{p:?}"
            );
            assert!(p.timestamp >= last, "out of order");
            last = p.timestamp;
        }
    }
}

#[test]
fn count_is_exact() {
    let (a, b, va, vb) = per_cpu_queues();
    let sink = UdpSink::bind(&b, vb.addr);
    let cap = Capture::start(&b, "rxcpu", &["--xdp", "-c", "25", &vb.ifname]);
    send(&a, &sink, 0, &va, &vb, 20);
    send(&a, &sink, 1, &va, &vb, 20);
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
    assert_eq!(f.report().total, 25, "{f}");
}

#[test]
fn the_program_never_stays_behind() {
    let panic: &[&str] = if has_test_hooks() { &["panic"] } else { &[] };
    for &how in [&["SIGINT", "SIGTERM", "SIGKILL"][..], panic]
        .concat()
        .iter()
    {
        let (a, b, va, vb) = per_cpu_queues();
        let sink = UdpSink::bind(&b, vb.addr);
        let dir = TempDir::new();
        let out = dir.path("p.pcap");
        let cap = if how == "panic" {
            Capture::start_via(
                &b,
                &["env", "RXTXCPU_TEST_PANIC_CPU=0"],
                &program("rxcpu"),
                &["--xdp", "-w", &out, &vb.ifname],
            )
        } else {
            Capture::start(&b, "rxcpu", &["--xdp", &vb.ifname])
        };
        assert!(has_xdp(&b, &vb.ifname), "{how}: not attached");
        match how {
            "SIGINT" => cap.signal(Signal::SIGINT),
            "SIGTERM" => cap.signal(Signal::SIGTERM),
            "SIGKILL" => cap.signal(Signal::SIGKILL),
            _ => send(&a, &sink, 0, &va, &vb, 5),
        }
        let f = cap.wait();
        if how == "panic" {
            assert_eq!(f.status.code(), Some(1), "{f}");
        }
        assert!(
            !has_xdp(&b, &vb.ifname),
            "{how}: the program is still attached\n{f}"
        );
    }
}

#[test]
fn another_programs_xdp_is_left_alone() {
    let (_a, b) = (Netns::new(), Netns::new());
    let (_va, vb) = veth_pair(&_a, &b);
    let name = vb.ifname.clone();
    // Another program's XDP, attached from this test process.
    let other = in_netns(&b, move || {
        let ifindex = rxtxcpu::testing::ifindex(&name).unwrap();
        let opts =
            rxtxcpu::testing::XdpOptions::new(rxtxcpu::options::XdpMode::Native, (0..2).collect());
        rxtxcpu::testing::XdpCapture::attach(ifindex, &opts).unwrap()
    });
    let (id, _) = other.ids().unwrap();
    let f = run_in(&b, "rxcpu", &["--xdp", &vb.ifname]);
    f.assert_runtime_error(&format!(
        "rxcpu: interface '{}' already has an XDP program (id {id}, native); rxtxcpu leaves it alone",
        vb.ifname
    ));
    assert!(has_xdp(&b, &vb.ifname), "the other program was detached");
    drop(other);
    assert!(!has_xdp(&b, &vb.ifname));
}

#[test]
fn numa_and_queue_vantages_by_xdp() {
    let (a, b, va, vb) = per_cpu_queues();
    let sink = UdpSink::bind(&b, vb.addr);
    // One XDP program per interface: one capture after the other.
    let numa = Capture::start(&b, "rxnuma", &["--xdp", &vb.ifname]);
    send(&a, &sink, 0, &va, &vb, 8);
    send(&a, &sink, 1, &va, &vb, 5);
    numa.interrupt().assert_node_report(&[(0, 13)]);
    let dir = TempDir::new();
    let template = dir.path("q.pcap");
    let queue = Capture::start(
        &b,
        "rxqueue",
        &["--xdp=native", "-w", &template, &vb.ifname],
    );
    send(&a, &sink, 0, &va, &vb, 8);
    send(&a, &sink, 1, &va, &vb, 5);
    // Native XDP on veth reports veth's own receive queue: the sender's.
    queue
        .interrupt()
        .assert_queue_report(&[(0, 8), (1, 5)], Some(0));
    assert_eq!(read_pcap(&dir.path("q-0.pcap")).1.len(), 8);
    assert_eq!(read_pcap(&dir.path("q-1.pcap")).1.len(), 5);
}

/// rxtxcpu's default (both directions) takes what the hook can give:
/// received packets, and -v says so.
#[test]
fn xdp_under_rxtxcpu_captures_received_packets() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let sink = UdpSink::bind(&b, vb.addr);
    let cap = Capture::start(&b, "rxtxcpu", &["--xdp", &vb.ifname]);
    assert!(
        cap.stderr_now().contains(
            "rxtxcpu: --xdp: capturing received packets only (the XDP hook sees no transmitted ones)\n"
        ),
        "{}",
        cap.stderr_now()
    );
    send(&a, &sink, 1, &va, &vb, 7);
    cap.interrupt().assert_report(&[(0, 0), (1, 7)]);
}

/// --duration ends an XDP capture too (its main thread polls the same
/// timer), report and all.
#[test]
fn duration_ends_an_xdp_capture() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let sink = UdpSink::bind(&b, vb.addr);
    let cap = Capture::start(&b, "rxcpu", &["--xdp", "--duration=3", &vb.ifname]);
    send(&a, &sink, 0, &va, &vb, 5);
    let f = cap.wait();
    f.assert_report(&[(0, 5), (1, 0)]);
    assert_eq!(f.after_ready(), "", "{f}");
    assert!(!has_xdp(&b, &vb.ifname));
}

#[test]
fn xdp_usage_errors() {
    check_usage_errors(&[
        ("rxcpu", &["--xdp"][..], "--xdp needs an interface."),
        // Transmit asked for: by -d, or by the name.
        (
            "rxtxcpu",
            &["-d", "rxtx", "--xdp", "lo"],
            "--xdp captures received packets only: use -d rx.",
        ),
        (
            "rxcpu",
            &["-d", "tx", "--xdp", "lo"],
            "--xdp captures received packets only: use -d rx.",
        ),
        (
            "txcpu",
            &["--xdp", "lo"],
            "--xdp captures received packets only: use -d rx.",
        ),
        ("rxcpu", &["--xdp=fast", "lo"], "Invalid xdp mode 'fast'."),
        (
            "rxcpu",
            &["--xdp", "--filter", "udp", "lo"],
            "--filter and -F [--filter-file] do not work with --xdp.",
        ),
    ]);
    // lo has no native XDP: said clearly; auto falls back to generic.
    let ns = Netns::new();
    run_in(&ns, "rxcpu", &["--xdp=native", "lo"]).assert_runtime_error(
        "rxcpu: interface 'lo' does not support native XDP: its driver has no XDP hook (try --xdp=generic)",
    );
    let cap = Capture::start(&ns, "rxcpu", &["--xdp", "lo"]);
    assert!(
        cap.stderr_now().contains("generic (skb) mode"),
        "{}",
        cap.stderr_now()
    );
    ping(&ns, 1, LO, 1);
    cap.interrupt().assert_report(&[(0, 0), (1, 2)]);
    let _ = IpAddr::V4(LO);
}

/// The merged file does not hold a busy cpu's packets for the reorder
/// window while another cpu has nothing: the idle cpu's worker says it has
/// nothing older (as the ring workers do), so the merger writes them as
/// soon as it knows. Each burst is read back from the file (-U) before the
/// next is sent: before the workers said so, every packet of every burst
/// waited out the 100 ms window (`-v`: "N let go by the 100 ms window").
#[test]
fn the_merged_file_does_not_wait_for_an_idle_cpu() {
    let (a, b, va, vb) = per_cpu_queues();
    let dir = TempDir::new();
    let out = dir.path("all.pcapng");
    let sink = UdpSink::bind(&b, vb.addr);
    let cap = Capture::start(
        &b,
        "rxcpu",
        &["--xdp", "--pcapng", "-U", "-v", "-w", &out, &vb.ifname],
    );
    let in_file = || {
        std::fs::File::open(&out)
            .map(|f| read_pcapng(std::io::BufReader::new(f)).packets.len())
            .unwrap_or(0)
    };
    for burst in 1..=3 {
        send(&a, &sink, 0, &va, &vb, 10);
        wait_until("the burst in the file", || in_file() == 10 * burst);
    }
    let f = cap.interrupt();
    f.assert_report(&[(0, 30), (1, 0)]);
    let line = f
        .stderr
        .lines()
        .find(|l| l.contains("let go by the"))
        .unwrap_or_else(|| panic!("no merged file line\n{f}"));
    let let_go: u64 = line
        .split("packets, ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    // Only a worker kept off its cpu for most of the window in every burst
    // could make it all of them.
    assert!(let_go < 30, "{line}");
    let packets = read_pcapng(std::fs::File::open(&out).unwrap()).packets;
    assert_eq!(packets.len(), 30);
    assert!(packets.windows(2).all(|w| w[0].1 <= w[1].1), "time order");
}
