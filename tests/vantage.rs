//! The per-queue and per-numa-node vantages (rxtxqueue, rxqueue, txqueue,
//! rxtxnuma, rxnuma, txnuma): exact counts per queue from a multi-queue tun
//! (receive) and a veth with XPS (transmit), packets without a recorded
//! receive queue on their own line, per-node counts, the files, the usage
//! errors of every name. Each capture test has its own namespace.

mod common;

use std::collections::BTreeMap;

use common::*;

/// 1, 2, 3 and 4 datagrams written into queues 0-3 of a 4-queue tun (from
/// cpu0 and cpu1 alternately), each queue's with its own source port
/// 1000 + q, and received by a socket so they have passed every tap.
fn tun_traffic(ns: &Netns, tun: &MqTun) {
    let sink = UdpSink::bind(ns, tun.addr);
    for q in 0..4 {
        tun.write_udp(q, q % 2, 1000 + q as u16, q + 1);
    }
    sink.expect(10);
}

#[test]
fn receive_queues_of_a_multiqueue_tun_are_exact() {
    let ns = Netns::new();
    let tun = MqTun::new(&ns, 4);
    let cap = Capture::start(&ns, "rxqueue", &[&tun.ifname]);
    tun_traffic(&ns, &tun);
    let f = cap.interrupt();
    f.assert_queue_report(&[(0, 1), (1, 2), (2, 3), (3, 4)], Some(0));
    assert!(
        f.stdout.starts_with(
            "1 packets captured on queue 0.\n2 packets captured on queue 1.\n\
             3 packets captured on queue 2.\n4 packets captured on queue 3.\n\
             0 packets captured with no receive queue recorded.\n10 packets captured total.\n"
        ),
        "{f}"
    );
    assert!(f.stderr.contains("rxqueue: Found '4' queues.\n"), "{f}");
}

#[test]
fn queue_list_and_mask_select_queues() {
    for (args, want) in [
        (&["-l", "1,3"][..], &[(1, 2), (3, 4)][..]),
        (&["--queue-list=0-1"], &[(0, 1), (1, 2)]),
        (&["-m", "5"], &[(0, 1), (2, 3)]),
        (&["--queue-mask=0x8"], &[(3, 4)]),
        // Queues the device does not have are ignored (with a warning).
        (&["-l", "2,9"], &[(2, 3)]),
    ] {
        let ns = Netns::new();
        let tun = MqTun::new(&ns, 4);
        let mut argv = args.to_vec();
        argv.push(&tun.ifname);
        let cap = Capture::start(&ns, "rxqueue", &argv);
        tun_traffic(&ns, &tun);
        let f = cap.interrupt();
        // A selection names queues: the no-queue stream is not among them.
        f.assert_queue_report(want, None);
        let total: u64 = want.iter().map(|(_, n)| n).sum();
        assert_eq!(f.report().total, total, "{args:?}\n{f}");
    }
}

#[test]
fn queue_files_hold_exactly_their_queue_packets() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let tun = MqTun::new(&ns, 4);
    let template = dir.path("q.pcap");
    let cap = Capture::start(&ns, "rxqueue", &["-w", &template, &tun.ifname]);
    tun_traffic(&ns, &tun);
    let f = cap.interrupt();
    f.assert_queue_report(&[(0, 1), (1, 2), (2, 3), (3, 4)], Some(0));
    assert_eq!(
        dir.files(),
        [
            "q-0.pcap",
            "q-1.pcap",
            "q-2.pcap",
            "q-3.pcap",
            "q-noqueue.pcap"
        ],
        "{f}"
    );
    for q in 0..4u32 {
        let (header, packets) = read_pcap(&dir.path(&format!("q-{q}.pcap")));
        assert_eq!(header.datalink, pcap_file::DataLink::RAW);
        assert_eq!(packets.len(), q as usize + 1, "queue {q}\n{f}");
        for p in &packets {
            // Raw IP: the UDP source port at 20..22 says the queue.
            let sport = u16::from_be_bytes([p.data[20], p.data[21]]);
            assert_eq!(sport, 1000 + q as u16, "queue {q}\n{f}");
        }
    }
    assert!(read_pcap(&dir.path("q-noqueue.pcap")).1.is_empty());
}

/// A veth whose sending end has 4 transmit queues, XPS steering cpu0 to
/// tx-0 and cpu1 to tx-1 (and no cpu to tx-2, tx-3).
fn xps_veth() -> (Netns, Netns, Veth, Veth) {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair_with_queues(&a, &b, 4);
    for (q, mask) in [(0, "1"), (1, "2"), (2, "0"), (3, "0")] {
        set_sysfs(&a, &va.ifname, &format!("queues/tx-{q}/xps_cpus"), mask);
    }
    (a, b, va, vb)
}

#[test]
fn transmit_queues_follow_xps() {
    let (a, b, va, vb) = xps_veth();
    let sink = UdpSink::bind(&b, vb.addr);
    let cap = Capture::start(&a, "txqueue", &[&va.ifname]);
    udp_send(&a, 0, va.addr, vb.addr, 3);
    udp_send(&a, 1, va.addr, vb.addr, 5);
    sink.expect(8);
    cap.interrupt()
        .assert_queue_report(&[(0, 3), (1, 5), (2, 0), (3, 0)], None);
}

/// veth records no receive queue: a received packet keeps the queue its
/// peer sent it on in the kernel's field, which then reads one off (peer
/// tx-1 looks like receive queue 0, peer tx-0 like none at all). What the
/// report shows is what the kernel (and RPS) sees.
#[test]
fn veth_receive_shows_the_peer_queue_off_by_one() {
    let (a, b, va, vb) = xps_veth();
    let sink = UdpSink::bind(&b, vb.addr);
    let cap = Capture::start(&b, "rxqueue", &[&vb.ifname]);
    udp_send(&a, 0, va.addr, vb.addr, 3);
    udp_send(&a, 1, va.addr, vb.addr, 5);
    sink.expect(8);
    cap.interrupt()
        .assert_queue_report(&[(0, 5), (1, 0), (2, 0), (3, 0)], Some(3));
}

#[test]
fn loopback_records_no_receive_queue() {
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxqueue", &["lo"]);
    udp_send(&ns, 0, LO, LO, 3);
    udp_send(&ns, 1, LO, LO, 2);
    // Transmitted on lo's one queue; received with no queue recorded.
    cap.interrupt().assert_queue_report(&[(0, 5)], Some(5));
}

#[test]
fn rxqueue_and_txqueue_side_by_side() {
    let (a, b, va, vb) = xps_veth();
    let sink = UdpSink::bind(&b, vb.addr);
    let tx = Capture::start(&a, "txqueue", &[&va.ifname]);
    let rx = Capture::start(&b, "rxqueue", &[&vb.ifname]);
    let tx2 = Capture::start(&a, "rxtxqueue", &["-d", "tx", &va.ifname]);
    udp_send(&a, 1, va.addr, vb.addr, 4);
    sink.expect(4);
    tx.interrupt()
        .assert_queue_report(&[(0, 0), (1, 4), (2, 0), (3, 0)], None);
    tx2.interrupt()
        .assert_queue_report(&[(0, 0), (1, 4), (2, 0), (3, 0)], None);
    rx.interrupt()
        .assert_queue_report(&[(0, 4), (1, 0), (2, 0), (3, 0)], Some(0));
}

/// Packets already flowing into queue 1 while the capture sets up are
/// never counted on queue 0 (while the group is incomplete, `% members`
/// would put them there).
#[test]
fn traffic_before_start_is_never_misattributed() {
    let ns = Netns::new();
    let tun = std::sync::Arc::new(MqTun::new(&ns, 2));
    let _sink = UdpSink::bind(&ns, tun.addr);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (t, s) = (tun.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            t.write_udp(1, 1, 3000, 50);
        }
    });
    let cap = Capture::start(&ns, "rxqueue", &[&tun.ifname]);
    std::thread::sleep(std::time::Duration::from_millis(100));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let f = cap.interrupt();
    let r = f.report();
    assert_eq!(r.per_queue.get(&0), Some(&0), "{f}");
    assert_eq!(r.no_queue, Some(0), "{f}");
    assert!(r.per_queue.get(&1).is_some_and(|&n| n > 0), "{f}");
}

#[test]
fn every_packet_is_on_numa_node_0_here() {
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxnuma", &["lo"]);
    udp_send(&ns, 0, LO, LO, 3);
    udp_send(&ns, 1, LO, LO, 4);
    let f = cap.interrupt();
    f.assert_node_report(&[(0, 14)]);
    assert_eq!(
        f.stdout,
        "14 packets captured on numa node 0.\n14 packets captured total.\n"
    );
    // The worker stays on the node's cpus.
    assert!(
        f.stderr
            .contains("worker for numa node 0 running on cpus 0-1"),
        "{f}"
    );
}

#[test]
fn numa_names_and_files() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let template = dir.path("n.pcap");
    let rx = Capture::start(&ns, "rxnuma", &["-w", &template, "lo"]);
    let tx = Capture::start(&ns, "txnuma", &["-l", "0", "lo"]);
    udp_send(&ns, 1, LO, LO, 5);
    rx.interrupt().assert_node_report(&[(0, 5)]);
    tx.interrupt().assert_node_report(&[(0, 5)]);
    assert_eq!(dir.files(), ["n-0.pcap"]);
    assert_eq!(read_pcap(&dir.path("n-0.pcap")).1.len(), 5);
}

#[test]
fn one_numa_node_may_go_to_stdout() {
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxnuma", &["-w", "-", "-c", "3", "lo"]);
    udp_send(&ns, 0, LO, LO, 3);
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let file = scan_pcap(&f.stdout_bytes[..], true, |_| {}).unwrap();
    assert_eq!(file.packets, 3);
    // The report goes to stderr with -w -.
    assert!(
        f.stderr
            .ends_with("3 packets captured on numa node 0.\n3 packets captured total.\n"),
        "{f}"
    );
}

#[test]
fn vantage_option_without_a_symlink() {
    let ns = Netns::new();
    let tun = MqTun::new(&ns, 2);
    let cap = Capture::start(
        &ns,
        "rxtxcpu",
        &["--vantage=queue", "-d", "rx", "--queue-list=1", &tun.ifname],
    );
    let sink = UdpSink::bind(&ns, tun.addr);
    tun.write_udp(1, 0, 1, 3);
    tun.write_udp(0, 0, 1, 2);
    sink.expect(5);
    cap.interrupt().assert_queue_report(&[(1, 3)], None);
    let cap = Capture::start(&ns, "rxqueue", &["--vantage", "cpu", "-l0", &tun.ifname]);
    tun.write_udp(1, 0, 1, 2);
    sink.expect(2);
    cap.interrupt().assert_report(&[(0, 2)]);
}

#[test]
fn usage_errors_of_the_queue_names() {
    let mut cases: Vec<(&str, Vec<&str>, String)> = Vec::new();
    for name in ["rxtxqueue", "rxqueue", "txqueue"] {
        // The cpu vantage's options are named, with the sibling to use.
        let cpu_option_message = format!(
            "Option '--cpu-list' is for the cpu vantage ({}cpu, or --vantage=cpu).",
            name.trim_end_matches("queue")
        );
        for (args, msg) in [
            (vec!["-l", "10j", "lo"], "Invalid queue list '10j'."),
            (vec!["--queue-list=x", "lo"], "Invalid queue list 'x'."),
            (vec!["-m", "10j", "lo"], "Invalid queue mask '10j'."),
            (vec!["-m", "", "lo"], "Invalid queue mask ''."),
            (
                vec!["-l", "0", "-m", "1", "lo"],
                "-l [--queue-list] and -m [--queue-mask] are mutually exclusive.",
            ),
            (
                vec!["-l", "5", "lo"],
                "No configured queues present in queue list.",
            ),
            (
                vec!["-m", "f0", "lo"],
                "No configured queues present in queue mask.",
            ),
            (vec!["--cpu-list=0", "lo"], &cpu_option_message),
            (vec!["-c", "x", "lo"], "Invalid count 'x'."),
            (
                vec![],
                "An interface argument is required when capturing per queue.",
            ),
        ] {
            cases.push((name, args, msg.to_string()));
        }
    }
    // lo has one queue: rxtxqueue and rxqueue add the no-queue stream.
    for name in ["rxtxqueue", "rxqueue"] {
        cases.push((
            name,
            vec!["-w", "-", "lo"],
            "Write file '-' (stdout) is only permitted when capturing on a single queue.".into(),
        ));
    }
    let ns = Netns::new();
    let mut failures = Vec::new();
    for (name, args, msg) in &cases {
        let f = run_in(&ns, name, args);
        if let Err(e) = std::panic::catch_unwind(|| f.assert_usage_error(name, msg)) {
            failures.push(format!("{name} {args:?}: {e:?}\n{f}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // One queue selected: stdout is fine.
    // (Queue 0 of lo sees the transmitted copies only.)
    let cap = Capture::start(&ns, "rxtxqueue", &["-l0", "-w", "-", "-c", "2", "lo"]);
    udp_send(&ns, 0, LO, LO, 2);
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
}

#[test]
fn usage_errors_of_the_numa_names() {
    let mut cases: Vec<(&str, Vec<&str>, String)> = Vec::new();
    for name in ["rxtxnuma", "rxnuma", "txnuma"] {
        let cpu_option_message = format!(
            "Option '--cpu-mask' is for the cpu vantage ({}cpu, or --vantage=cpu).",
            name.trim_end_matches("numa")
        );
        for (args, msg) in [
            (vec!["-l", "10j"], "Invalid numa list '10j'."),
            (vec!["--numa-list="], "Invalid numa list ''."),
            (vec!["-m", "zz"], "Invalid numa mask 'zz'."),
            (
                vec!["-l", "0", "-m", "1"],
                "-l [--numa-list] and -m [--numa-mask] are mutually exclusive.",
            ),
            // This machine has node 0 only.
            (
                vec!["-l", "1"],
                "No configured numa nodes present in numa list.",
            ),
            (
                vec!["-l", "3-5"],
                "No configured numa nodes present in numa list.",
            ),
            (
                vec!["-m", "2"],
                "No configured numa nodes present in numa mask.",
            ),
            (vec!["--cpu-mask=1"], &cpu_option_message),
        ] {
            cases.push((name, args, msg.to_string()));
        }
    }
    check_usage_errors(
        &cases
            .iter()
            .map(|(n, a, m)| (*n, a.as_slice(), m.clone()))
            .collect::<Vec<_>>(),
    );
}

#[test]
fn help_of_every_name() {
    let mut seen = BTreeMap::new();
    for name in NAMES {
        let f = run(name, &["--help"]);
        assert_eq!(f.status.code(), Some(0), "{f}");
        let word = list_word(name);
        // The queue names need an interface: their streams are its queues.
        let interface = match word {
            "queue" => "INTERFACE",
            _ => "[INTERFACE]",
        };
        assert!(
            f.stdout.starts_with(&format!(
                "Usage:\n  {name} [OPTIONS] {interface}\n\nOptions:\n"
            )),
            "{f}"
        );
        let up = word.to_uppercase();
        let plural = match word {
            "cpu" => "cpus",
            "queue" => "queues",
            _ => "numa nodes",
        };
        for entry in [
            format!("  -l, [--{word}-list={up}LIST]"),
            format!("  -m, [--{word}-mask={up}MASK]"),
        ] {
            assert!(
                f.stdout.lines().any(|l| l.starts_with(&entry)),
                "{name}: no `{entry}`\n{f}"
            );
        }
        assert!(
            f.stdout
                .contains(&format!("# Capture only on {plural} in {up}LIST.")),
            "{f}"
        );
        let direction = &name[..name.len() - word.len()];
        assert!(
            f.stdout.contains(&format!("#   Default: {direction}\n")),
            "{f}"
        );
        for line in f.stdout.lines() {
            assert!(line.len() <= 79, "{name}: {line}");
        }
        // And the short usage after an error names the same options.
        let e = run(name, &["-z"]);
        assert!(
            e.stderr
                .contains(&format!("[--{word}-list={up}LIST|--{word}-mask={up}MASK]")),
            "{e}"
        );
        seen.insert(name, f.stdout);
    }
    assert_ne!(seen["rxqueue"], seen["rxcpu"]);
}

/// A cpu list written for a bigger machine: the cpus it names that this
/// machine has not are named in a warning (not only with -v), singular
/// for one, and the others are captured.
#[test]
fn cpus_beyond_the_machine_are_named() {
    let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    let last: u32 = possible
        .trim()
        .rsplit(['-', ','])
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let ns = Netns::new();
    let beyond = last + 1;
    for (list, named) in [
        (format!("0,{beyond}"), format!("cpu {beyond}")),
        (
            format!("0,{beyond}-{}", beyond + 2),
            format!("cpus {beyond}-{}", beyond + 2),
        ),
    ] {
        let f = Capture::start(&ns, "rxtxcpu", &["-l", &list, "lo"]).interrupt();
        assert_eq!(f.status.code(), Some(0), "{f}");
        let all = if last == 0 {
            "cpu 0".to_string()
        } else {
            format!("cpus 0-{last}")
        };
        assert!(
            f.stderr.contains(&format!(
                "rxtxcpu: warning: ignoring {named}: this machine has {all}\n"
            )),
            "{f}"
        );
        assert_eq!(
            f.report().per_cpu.keys().copied().collect::<Vec<_>>(),
            [0],
            "{f}"
        );
    }
}
