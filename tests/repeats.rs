//! --repeats: the packet stuck in a transmit path, the packet circling in
//! a routing loop, and ordinary traffic that must not be reported. Each
//! test in its own namespaces, with traffic from pinned senders.

mod common;

use std::net::{Ipv4Addr, TcpListener, TcpStream};

use common::*;

/// An Ethernet frame from `va` to `vb` carrying one UDP datagram.
fn udp_frame(va: &Veth, vb: &Veth, sport: u16, payload: &[u8]) -> Vec<u8> {
    let mac = |m: &str| -> Vec<u8> {
        m.split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    };
    let mut f = mac(&vb.mac);
    f.extend(mac(&va.mac));
    f.extend([0x08, 0x00]);
    f.extend(ipv4_udp(va.addr, sport, vb.addr, UDP_PORT, payload));
    f
}

/// The war story: one frame sent again and again from cpu1 while cpu0
/// sends ordinary traffic (many flows, nothing twice). The report names
/// the frame and cpu1, exactly, and nothing on cpu0.
#[test]
fn a_stuck_transmit_packet_is_named_with_its_cpu() {
    const COPIES: usize = 50_000;
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let text = Capture::start(&a, "txcpu", &["--repeats", &va.ifname]);
    let cap = Capture::start(&a, "txcpu", &["--repeats", "--json", &va.ifname]);
    // Ordinary traffic on cpu0: 400 datagrams of 200 flows, each frame
    // different from every other (its port or its payload).
    let ordinary: Vec<Vec<u8>> = (0..400u16)
        .map(|i| udp_frame(&va, &vb, 1000 + i % 200, &i.to_be_bytes()))
        .collect();
    send_frames(&a, 0, &va.ifname, ordinary);
    let stuck = udp_frame(&va, &vb, 54517, b"the same bytes every time");
    send_frames(&a, 1, &va.ifname, vec![stuck; COPIES]);

    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r = f.json();
    let streams = r["streams"].as_array().unwrap();
    let captured = |cpu: u64| {
        streams
            .iter()
            .find(|s| s["id"] == cpu)
            .map_or(0, |s| s["captured"].as_u64().unwrap())
    };
    assert_eq!((captured(0), captured(1)), (400, COPIES as u64), "{f}");
    let repeats = r["repeats"].as_array().unwrap_or_else(|| panic!("{f}"));
    assert_eq!(repeats.len(), 1, "{f}");
    let p = &repeats[0];
    assert_eq!(p["copies"], COPIES as u64, "{f}");
    assert_eq!(p["streams"], serde_json::json!({"1": COPIES}), "{f}");
    assert_eq!(p["streams_by_name"], serde_json::json!({"cpu1": COPIES}));
    assert_eq!(
        p["summary"],
        format!("udp {}.54517 > {}.{UDP_PORT}: length 25", va.addr, vb.addr)
    );
    assert!(p["first"].as_f64().unwrap() <= p["last"].as_f64().unwrap());
    assert!(p["rate"].as_f64().unwrap() > 0.0);
    let summary = &r["repeat_summary"];
    assert_eq!(summary["min"], 10);
    assert_eq!(summary["packets"], 1);
    for s in summary["streams"].as_array().unwrap() {
        let (repeated, repeating) = if s["id"] == 1 { (COPIES, 1) } else { (0, 0) };
        assert_eq!(s["repeated"], repeated, "{s}");
        assert_eq!(s["repeating"], repeating, "{s}");
    }

    let t = text.interrupt();
    assert_eq!(t.status.code(), Some(0), "{t}");
    let lines: Vec<&str> = t.stdout.lines().collect();
    assert!(
        lines.contains(&"50000 repeated copies on cpu1 (1 packet, 100.0% of its packets)."),
        "{t}"
    );
    assert!(
        !t.stdout.contains("on cpu0 ("),
        "nothing repeats on cpu0: {t}"
    );
    let row = lines
        .iter()
        .find(|l| l.contains(" cpu1:50000 "))
        .unwrap_or_else(|| panic!("no row for the packet: {t}"));
    assert!(row.trim_start().starts_with("50000 "), "{row}");
    assert!(
        row.ends_with(&format!(
            "udp {}.54517 > {}.{UDP_PORT}: length 25",
            va.addr, vb.addr
        )),
        "{row}"
    );
}

/// Two routers that route a prefix to each other: a packet sent into
/// the loop from a third namespace crosses their link once per hop until
/// its TTL runs out. Sent with TTL 64, it reaches the second router with
/// TTLs 63, 61, ..., 1 and leaves it with 62, ..., 2: 63 copies on its
/// interface, all on the cpu of the sender (veth hands packets on
/// within the cpu's softirq).
#[test]
fn a_packet_in_a_routing_loop_counts_its_hops() {
    const SENT: usize = 5;
    let (h, r1, r2) = (Netns::new(), Netns::new(), Netns::new());
    for ns in [&h, &r1, &r2] {
        #[rustfmt::skip]
        ns.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
                  "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                  "net.ipv4.conf.all.send_redirects=0",
                  "net.ipv4.conf.default.send_redirects=0"]);
    }
    #[rustfmt::skip]
    h.ip(&["link", "add", "vh", "type", "veth", "peer", "name", "vr1h", "netns", &r1.name]);
    #[rustfmt::skip]
    r1.ip(&["link", "add", "vr1", "type", "veth", "peer", "name", "vr2", "netns", &r2.name]);
    for (ns, dev, addr) in [
        (&h, "vh", "10.2.0.2/24"),
        (&r1, "vr1h", "10.2.0.1/24"),
        (&r1, "vr1", "10.1.0.1/24"),
        (&r2, "vr2", "10.1.0.2/24"),
    ] {
        ns.ip(&["addr", "add", addr, "dev", dev]);
        ns.ip(&["link", "set", dev, "up"]);
    }
    for (ns, dev) in [(&h, "vh"), (&r1, "vr1h"), (&r1, "vr1"), (&r2, "vr2")] {
        wait_link_active(ns, dev);
    }
    h.ip(&["route", "add", "default", "via", "10.2.0.1"]);
    r1.ip(&["route", "add", "198.51.100.0/24", "via", "10.1.0.2"]);
    r2.ip(&["route", "add", "198.51.100.0/24", "via", "10.1.0.1"]);
    r2.ip(&["route", "add", "10.2.0.0/24", "via", "10.1.0.1"]);

    let cap = Capture::start(&r2, "rxtxcpu", &["--repeats", "--json", "vr2"]);
    let text = Capture::start(&r2, "rxtxcpu", &["--repeats", "vr2"]);
    // Resolve the neighbours first: the loop's packets are then the only
    // ones that repeat.
    ping(&h, 0, Ipv4Addr::new(10, 1, 0, 2), 1);
    let before = r2.tapped_frames("vr2");
    let dst = Ipv4Addr::new(198, 51, 100, 1);
    udp_send(&h, 1, Ipv4Addr::new(10, 2, 0, 2), dst, SENT);
    // Each packet's 63 copies, and the ICMP time exceeded of each.
    wait_until("the loop's packets", || {
        r2.tapped_frames("vr2") >= before + SENT as u64 * 64
    });

    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r = f.json();
    let repeats = r["repeats"].as_array().unwrap_or_else(|| panic!("{f}"));
    assert_eq!(
        repeats.len(),
        SENT,
        "one per packet sent into the loop: {f}"
    );
    for p in repeats {
        assert_eq!(p["copies"], 63, "{f}");
        assert_eq!(p["streams"], serde_json::json!({"1": 63}), "{f}");
        let summary = p["summary"].as_str().unwrap();
        assert!(
            summary.starts_with("udp 10.2.0.2.") && summary.contains(&format!(" > {dst}.")),
            "{summary}"
        );
    }
    let t = text.interrupt();
    assert!(
        t.stdout.lines().any(|l| l.starts_with(&format!(
            "{} repeated copies on cpu1 ({SENT} packets, ",
            63 * SENT
        ))),
        "{t}"
    );
}

/// Ordinary traffic is not reported at the default MIN: a TCP transfer,
/// pings, and ARP requests for an address nobody has.
#[test]
fn ordinary_traffic_reports_nothing() {
    let (a, b) = (Netns::new(), Netns::new());
    let (_va, vb) = veth_pair(&a, &b);
    let text = Capture::start(&b, "rxtxcpu", &["--repeats", &vb.ifname]);
    let cap = Capture::start(&b, "rxtxcpu", &["--repeats", "--json", &vb.ifname]);
    let listener = in_netns(&b, move || TcpListener::bind((vb.addr, 5001)).unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        std::io::copy(&mut s, &mut std::io::sink()).unwrap()
    });
    let dst = vb.addr;
    let sent = in_netns(&a, move || {
        let mut c = TcpStream::connect((dst, 5001)).unwrap();
        let chunk = vec![0x5au8; 64 * 1024];
        for _ in 0..64 {
            std::io::Write::write_all(&mut c, &chunk).unwrap();
        }
        64 * chunk.len() as u64
    });
    assert_eq!(server.join().unwrap(), sent);
    ping(&a, 0, vb.addr, 3);
    // Nobody has .99: ARP requests, a second apart.
    let _ = a.exec(&["sh", "-c", "ping -c 2 -i 0.2 -W 1 192.0.2.99 || true"]);

    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r = f.json();
    assert_eq!(r["repeats"], serde_json::json!([]), "{f}");
    for s in r["repeat_summary"]["streams"].as_array().unwrap() {
        assert_eq!(s["repeated"], 0, "{f}");
    }
    let t = text.interrupt();
    assert!(!t.stdout.contains("repeat"), "{t}");
}

#[test]
fn bad_minimums_are_usage_errors() {
    check_usage_errors(&[
        (
            "rxtxcpu",
            &["--repeats=1"][..],
            "Invalid repeat count '1' (expected 2 or more copies).",
        ),
        (
            "txcpu",
            &["--repeats=x"],
            "Invalid repeat count 'x' (expected 2 or more copies).",
        ),
        (
            "rxtxcpu",
            &["--repeats=-3"],
            "Invalid repeat count '-3' (expected 2 or more copies).",
        ),
    ]);
}

/// With --flows, -w and --filter: the files hold every copy, the filter
/// keeps out what it should before the window sees it, and the flow of the
/// stuck packet carries its repeated copies.
#[test]
fn with_flows_files_and_a_filter() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let dir = TempDir::new();
    let out = dir.path("tx.pcap");
    #[rustfmt::skip]
    let cap = Capture::start(&a, "txcpu", &["--repeats", "--flows=0", "--json", "-w", &out,
                                            "--filter", "udp", &va.ifname]);
    let ordinary: Vec<Vec<u8>> = (0..100u16)
        .map(|i| udp_frame(&va, &vb, 1000 + i, b"x"))
        .collect();
    send_frames(&a, 0, &va.ifname, ordinary);
    let stuck = udp_frame(&va, &vb, 54517, b"stuck");
    // The same frame but as a non-UDP ethertype: the filter drops it.
    let mut other = stuck.clone();
    other[12..14].copy_from_slice(&[0x88, 0xb5]);
    send_frames(&a, 1, &va.ifname, vec![stuck; 1000]);
    send_frames(&a, 1, &va.ifname, vec![other; 1000]);

    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r = f.json();
    let repeats = r["repeats"].as_array().unwrap();
    assert_eq!(repeats.len(), 1, "{f}");
    assert_eq!(repeats[0]["streams"], serde_json::json!({"1": 1000}));
    for flow in r["flows"].as_array().unwrap() {
        let stuck = flow["src"] == format!("{}:54517", va.addr);
        assert_eq!(flow["repeated"], if stuck { 1000 } else { 0 }, "{flow}");
    }
    assert_eq!(read_pcap(&cpu_file(&out, 0)).1.len(), 100);
    assert_eq!(read_pcap(&cpu_file(&out, 1)).1.len(), 1000);
}

/// With -c and the merged pcapng file: the count ends the capture, the
/// repeats are those of the packets it kept, and the file holds them.
#[test]
fn with_a_count_and_the_merged_file() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let dir = TempDir::new();
    let out = dir.path("tx.pcapng");
    #[rustfmt::skip]
    let cap = Capture::start(&a, "txcpu", &["--repeats", "-c", "500", "--pcapng", "-w", &out,
                                            &va.ifname]);
    send_frames(
        &a,
        1,
        &va.ifname,
        vec![udp_frame(&va, &vb, 54517, b"stuck"); 1000],
    );
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
    assert!(
        f.stdout
            .lines()
            .any(|l| l == "500 repeated copies on cpu1 (1 packet, 100.0% of its packets)."),
        "{f}"
    );
    let file = read_pcapng(std::fs::File::open(&out).unwrap());
    assert_eq!(file.packets.len(), 500);
}

/// At the XDP hook (received frames, copied to user space for the window
/// even without -w or --flows).
#[test]
fn at_the_xdp_hook() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let cap = Capture::start(&b, "rxcpu", &["--xdp", "--repeats", "--json", &vb.ifname]);
    send_frames(
        &a,
        1,
        &va.ifname,
        vec![udp_frame(&va, &vb, 54517, b"stuck"); 300],
    );
    wait_until("the frames", || {
        b.link_stat(&vb.ifname, "rx_packets") >= 300
    });
    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r = f.json();
    let repeats = r["repeats"].as_array().unwrap();
    assert_eq!(repeats.len(), 1, "{f}");
    assert_eq!(repeats[0]["copies"], 300, "{f}");
    assert_eq!(repeats[0]["streams"], serde_json::json!({"1": 300}), "{f}");
}

/// RATE/S counts the gaps between copies, not the copies: 11 copies
/// span 10 gaps, so rate times (last - first) is 10. The copies are
/// spaced a few milliseconds apart only so that the span dwarfs the
/// microseconds of the JSON times; nothing here depends on how long the
/// gaps really are.
#[test]
fn the_rate_counts_the_gaps_between_copies() {
    const COPIES: usize = 11;
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let cap = Capture::start(&a, "txcpu", &["--repeats", "--json", &va.ifname]);
    let frame = udp_frame(&va, &vb, 40000, b"sent again and again");
    for _ in 0..COPIES {
        send_frames(&a, 1, &va.ifname, vec![frame.clone()]);
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r = f.json();
    let p = &r["repeats"][0];
    assert_eq!(p["copies"], COPIES as u64, "{f}");
    let span = p["last"].as_f64().unwrap() - p["first"].as_f64().unwrap();
    let gaps = p["rate"].as_f64().unwrap() * span;
    let expected = (COPIES - 1) as f64;
    assert!(
        (gaps - expected).abs() < 0.01 * expected,
        "{gaps} gaps: {f}"
    );
}
