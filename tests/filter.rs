//! Filter expressions (--filter, -F): compiled by libpcap, applied in the
//! kernel after the direction check, in every vantage. Exact counts from
//! pinned senders, files holding only matching packets, and the errors.
//! (That the compiled programs equal tcpdump's, and that the kernel
//! program accepts exactly what it should on each link type, is tested in
//! src/pcapfilter.rs.)

mod common;

use common::*;

/// On lo: 2 pings from cpu0 (8 ICMP packets), 3 datagrams to port 9999
/// from cpu1 and 2 from cpu0 (6 and 4 UDP packets), all taken by sockets.
fn mixed_traffic(ns: &Netns) {
    let sink = UdpSink::bind(ns, LO);
    ping(ns, 0, LO, 2);
    udp_send_port(ns, 1, LO, LO, UDP_PORT, 3);
    udp_send_port(ns, 0, LO, LO, UDP_PORT, 2);
    sink.expect(5);
}

fn filtered(args: &[&str]) -> Finished {
    let ns = Netns::new();
    let mut argv = args.to_vec();
    argv.push("lo");
    let cap = Capture::start(&ns, "rxtxcpu", &argv);
    mixed_traffic(&ns);
    cap.interrupt()
}

#[test]
fn icmp_filter_counts_only_icmp() {
    let f = filtered(&["--filter", "icmp"]);
    f.assert_report(&[(0, 8), (1, 0)]);
    assert!(f.stderr.contains("rxtxcpu: filter 'icmp': "), "{f}");
}

#[test]
fn port_filter_counts_only_that_port() {
    filtered(&["--filter=udp port 9999"]).assert_report(&[(0, 4), (1, 6)]);
    filtered(&["--filter", "udp and not port 9999"]).assert_report(&[(0, 0), (1, 0)]);
    // After the direction check: only the received copies.
    filtered(&["-d", "rx", "--filter", "udp port 9999 or icmp"]).assert_report(&[(0, 6), (1, 3)]);
}

#[test]
fn filter_file_with_comments() {
    let dir = TempDir::new();
    let file = dir.path("f.bpf");
    std::fs::write(&file, "# ICMP only\nicmp # echo and reply\n").unwrap();
    filtered(&["-F", &file]).assert_report(&[(0, 8), (1, 0)]);
    filtered(&["--filter-file", &file, "-l1"]).assert_report(&[(1, 0)]);
}

#[test]
fn files_hold_only_matching_packets() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let template = dir.path("f.pcap");
    let cap = Capture::start(&ns, "rxtxcpu", &["--filter", "udp", "-w", &template, "lo"]);
    mixed_traffic(&ns);
    let f = cap.interrupt();
    f.assert_report(&[(0, 4), (1, 6)]);
    assert_files_match_report(&f, &template, |cpu, p| {
        // Ethernet, IPv4, protocol 17.
        assert_eq!(p.data[23], 17, "cpu{cpu}: not UDP: {p:?}");
    });
}

#[test]
fn count_counts_only_matching_packets() {
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxcpu", &["-c", "5", "--filter", "icmp", "lo"]);
    let sink = UdpSink::bind(&ns, LO);
    udp_send_port(&ns, 1, LO, LO, UDP_PORT, 50);
    sink.expect(50);
    ping(&ns, 0, LO, 2);
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
    assert_eq!(f.report().per_cpu, [(0, 5), (1, 0)].into(), "{f}");
}

#[test]
fn filter_in_the_queue_vantage() {
    let ns = Netns::new();
    let tun = MqTun::new(&ns, 4);
    let cap = Capture::start(
        &ns,
        "rxqueue",
        &["--filter", "udp src port 1002", &tun.ifname],
    );
    let sink = UdpSink::bind(&ns, tun.addr);
    for q in 0..4 {
        tun.write_udp(q, q % 2, 1000 + q as u16, q + 1);
    }
    sink.expect(10);
    // Raw IP link type: libpcap compiled for it.
    cap.interrupt()
        .assert_queue_report(&[(0, 0), (1, 0), (2, 3), (3, 0)], Some(0));
}

#[test]
fn filter_on_every_interface() {
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxnuma", &["--filter", "icmp"]);
    mixed_traffic(&ns);
    cap.interrupt().assert_node_report(&[(0, 8)]);
}

/// One datagram in ten matches: the report counts exactly those.
#[test]
fn one_in_ten_matching_is_counted_exactly() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let wanted = UdpSink::bind_port(&b, vb.addr, 9);
    let other = UdpSink::bind(&b, vb.addr);
    let cap = Capture::start(&b, "rxcpu", &["--filter", "udp dst port 9", &vb.ifname]);
    for round in 0..100 {
        udp_send_port(&a, round % 2, va.addr, vb.addr, UDP_PORT, 9);
        udp_send_port(&a, round % 2, va.addr, vb.addr, 9, 1);
        other.expect(9);
        wanted.expect(1);
    }
    cap.interrupt().assert_report(&[(0, 50), (1, 50)]);
}

#[test]
fn bad_expressions() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let out = dir.path("x.pcap");
    for (args, line) in [
        (
            vec!["--filter", "tcp port", "-w", &out, "lo"],
            "rxtxcpu: invalid filter expression 'tcp port': can't parse filter expression: syntax error",
        ),
        // After the interface, words that begin like a filter are one:
        // libpcap's message, not the one about interfaces.
        (
            vec!["lo", "udp", "prot", "9"],
            "rxtxcpu: invalid filter expression 'udp prot 9': can't parse filter expression: syntax error",
        ),
        (
            vec!["--filter", "host nosuchhost.invalid", "lo"],
            "rxtxcpu: invalid filter expression 'host nosuchhost.invalid': unknown host 'nosuchhost.invalid'",
        ),
        (
            vec!["--filter", "ip6 and arp[0] = 1", "lo"],
            "rxtxcpu: invalid filter expression 'ip6 and arp[0] = 1': expression rejects all packets",
        ),
    ] {
        let f = run_in(&ns, "rxtxcpu", &args);
        assert_eq!(f.status.code(), Some(2), "{args:?}\n{f}");
        assert_eq!(f.stdout, "", "{f}");
        assert_eq!(f.stderr, format!("{line}\n"), "{args:?}\n{f}");
    }
    assert!(
        dir.files().is_empty(),
        "files left behind: {:?}",
        dir.files()
    );
}

#[test]
fn filter_usage_errors() {
    check_usage_errors(&[
        (
            "rxtxcpu",
            &["--filter", "", "lo"][..],
            "Invalid filter expression ''.",
        ),
        (
            "rxtxcpu",
            &["--filter= ", "lo"],
            "Invalid filter expression ' '.",
        ),
        (
            "rxtxcpu",
            &["--filter", "icmp", "-F", "f", "lo"],
            "--filter and -F [--filter-file] are mutually exclusive.",
        ),
        ("rxtxcpu", &["-F"], "Option '-F' requires an argument."),
        (
            "rxqueue",
            &["--filter"],
            "Option '--filter' requires an argument.",
        ),
    ]);
}

#[test]
fn filter_file_errors() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let missing = dir.path("missing");
    run_in(&ns, "rxtxcpu", &["-F", &missing, "lo"]).assert_runtime_error(&format!(
        "rxtxcpu: error reading filter file '{missing}': No such file or directory"
    ));
    let empty = dir.path("empty");
    std::fs::write(&empty, "# nothing but a comment\n").unwrap();
    let f = run_in(&ns, "rxtxcpu", &["-F", &empty, "lo"]);
    assert_eq!(f.status.code(), Some(2), "{f}");
    assert_eq!(
        f.stderr,
        format!("rxtxcpu: filter file '{empty}' holds no filter expression\n")
    );
}

#[test]
fn without_libpcap_the_error_names_the_package() {
    let ns = Netns::new();
    let f = Capture::spawn_via(
        Some(&ns),
        &["env", "RXTXCPU_LIBPCAP=/nonexistent/libpcap.so.1"],
        &program("rxtxcpu"),
        &["--filter", "icmp", "lo"],
    )
    .wait();
    f.assert_runtime_error(
        "rxtxcpu: cannot load libpcap, which compiles filter expressions: \
         /nonexistent/libpcap.so.1: cannot open shared object file: No such file or directory; \
         install libpcap0.8 (Debian, Ubuntu) or libpcap (Fedora, RHEL)",
    );
    // Without a filter, no libpcap is needed.
    let cap = Capture::start_via(
        &ns,
        &["env", "RXTXCPU_LIBPCAP=/nonexistent"],
        &program("rxtxcpu"),
        &["lo"],
    );
    ping(&ns, 1, LO, 1);
    cap.interrupt().assert_report(&[(0, 0), (1, 4)]);
}
