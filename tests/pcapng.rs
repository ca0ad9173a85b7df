//! The merged pcapng file (--pcapng) and tcpdump-style rotation (-C, -G,
//! -W): read back with pcap-file and with tshark/capinfos, counts against
//! the report, on every kind of end.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Pings from cpu0 and datagrams from cpu1 on lo: 8 packets on cpu0 (4 tx,
/// 4 rx), 6 on cpu1 (3 tx, 3 rx).
fn traffic(ns: &Netns) {
    ping(ns, 0, LO, 2);
    udp_send(ns, 1, LO, LO, 3);
}

fn by_interface(file: &PcapNg) -> BTreeMap<u32, u64> {
    let mut n = BTreeMap::new();
    for p in &file.packets {
        *n.entry(p.0).or_default() += 1;
    }
    n
}

/// One timeline: how many packets in the file are older than one before
/// them, and how many the report says were written out of order (a
/// packet held up past the merger's window, which a loaded machine can
/// do, or the clock set back). Equal with nanosecond timestamps; the
/// file may show fewer with microseconds.
fn out_of_order(file: &PcapNg, f: &Finished) -> (u64, u64) {
    let mut newest = Duration::ZERO;
    let mut in_file = 0;
    for p in &file.packets {
        if p.1 < newest {
            in_file += 1;
        }
        newest = newest.max(p.1);
    }
    let said = f
        .stderr
        .lines()
        .find_map(|l| l.strip_suffix(" packets written out of timestamp order in the merged file."))
        .map_or(0, |n| n.parse().unwrap());
    (in_file, said)
}

#[test]
fn merged_file_has_one_interface_per_stream() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let path = dir.path("all.pcapng");
    let cap = Capture::start(&ns, "rxtxcpu", &["--pcapng", "-w", &path, "lo"]);
    traffic(&ns);
    let f = cap.interrupt();
    f.assert_report(&[(0, 8), (1, 6)]);
    // Exactly FILE, no stream suffix.
    assert_eq!(dir.files(), ["all.pcapng"], "{f}");
    let file = read_pcapng(std::fs::File::open(&path).unwrap());
    assert_eq!(
        file.interfaces,
        [
            ("lo".to_string(), "lo cpu0".to_string()),
            ("lo".to_string(), "lo cpu1".to_string())
        ]
    );
    assert_eq!(by_interface(&file), [(0, 8), (1, 6)].into(), "{f}");
    // lo has no receive hash: each flow hash is in the packet's comment,
    // none is called Toeplitz.
    for o in &file.options {
        assert!(o.hashes.is_empty(), "{o:?}");
        assert!(o.comments.len() == 1 && o.comments[0].len() == 20, "{o:?}");
        assert!(o.comments[0].starts_with("flow hash 0x"), "{o:?}");
    }
    // One timeline.
    let (in_file, said) = out_of_order(&file, &f);
    assert!(in_file <= said, "{in_file} packets out of order\n{f}");
    // Statistics per stream: what it received, nothing dropped.
    let stats: Vec<_> = file.stats.iter().map(|s| (s.0, s.1, s.2, s.3)).collect();
    assert_eq!(
        stats,
        [(0, Some(8), Some(0), None), (1, Some(6), Some(0), None)],
        "{f}"
    );

    // tshark agrees, and sees the direction and the stream of each packet.
    let Some(rows) = tshark_fields(
        &path,
        &[
            "frame.interface_name",
            "frame.interface_description",
            "frame.packet_flags_direction",
        ],
    ) else {
        eprintln!("tshark not installed; skipping its checks");
        return;
    };
    let mut per: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in &rows {
        *per.entry((r[1].clone(), r[2].clone())).or_default() += 1;
        assert_eq!(r[0], "lo");
    }
    // 0x1 inbound, 0x2 outbound: half of each stream's packets each way.
    assert_eq!(
        per,
        [
            (("lo cpu0".into(), "0x00000001".into()), 4),
            (("lo cpu0".into(), "0x00000002".into()), 4),
            (("lo cpu1".into(), "0x00000001".into()), 3),
            (("lo cpu1".into(), "0x00000002".into()), 3),
        ]
        .into(),
        "{rows:?}"
    );
    let caps = Command::new("capinfos").arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&caps.stdout);
    assert!(text.contains("Number of interfaces in file: 2"), "{text}");
    assert!(text.contains("Capture application: rxtxcpu "), "{text}");
    assert!(text.contains("Strict time order:   True"), "{text}");
}

#[test]
fn direction_flags_follow_the_direction() {
    for (args, flag) in [
        (&["-d", "rx"][..], "0x00000001"),
        (&["-d", "tx"], "0x00000002"),
    ] {
        let ns = Netns::new();
        let dir = TempDir::new();
        let path = dir.path("d.pcapng");
        let mut argv = args.to_vec();
        argv.extend(["--pcapng", "-w", &path, "lo"]);
        let cap = Capture::start(&ns, "rxtxcpu", &argv);
        traffic(&ns);
        cap.interrupt().assert_report(&[(0, 4), (1, 3)]);
        if let Some(rows) = tshark_fields(&path, &["frame.packet_flags_direction"]) {
            assert_eq!(rows.len(), 7);
            assert!(rows.iter().all(|r| r[0] == flag), "{args:?}: {rows:?}");
        }
    }
}

#[test]
fn queue_vantage_sets_the_queue() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let path = dir.path("q.pcapng");
    let tun = MqTun::new(&ns, 3);
    let cap = Capture::start(&ns, "rxqueue", &["--pcapng", "-w", &path, &tun.ifname]);
    let sink = UdpSink::bind(&ns, tun.addr);
    for q in 0..3 {
        tun.write_udp(q, q % 2, 1000 + q as u16, q + 1);
    }
    sink.expect(6);
    let f = cap.interrupt();
    f.assert_queue_report(&[(0, 1), (1, 2), (2, 3)], Some(0));
    let file = read_pcapng(std::fs::File::open(&path).unwrap());
    let descs: Vec<&str> = file.interfaces.iter().map(|i| i.1.as_str()).collect();
    assert_eq!(
        descs,
        [
            "mqtun0 queue 0",
            "mqtun0 queue 1",
            "mqtun0 queue 2",
            "mqtun0 no queue"
        ]
    );
    if let Some(rows) = tshark_fields(
        &path,
        &[
            "frame.interface_description",
            "frame.interface_queue",
            "udp.srcport",
        ],
    ) {
        assert_eq!(rows.len(), 6);
        for r in rows {
            let q: u16 = r[1].parse().unwrap_or_else(|_| panic!("no queue in {r:?}"));
            assert_eq!(r[0], format!("mqtun0 queue {q}"));
            assert_eq!(r[2], (1000 + q).to_string());
        }
    }
}

#[test]
fn nanosecond_merged_file() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let path = dir.path("n.pcapng");
    let cap = Capture::start(
        &ns,
        "rxtxcpu",
        &["--pcapng", "--time-stamp-precision=nano", "-w", &path, "lo"],
    );
    traffic(&ns);
    cap.interrupt().assert_report(&[(0, 8), (1, 6)]);
    let file = read_pcapng(std::fs::File::open(&path).unwrap());
    assert_eq!(file.packets.len(), 14);
    assert!(file.packets.iter().any(|p| p.1.subsec_nanos() % 1000 != 0));
}

/// Under a flood from both cpus, with rings small enough to overflow: one
/// timeline, and the statistics blocks' drops are the report's drop lines.
#[test]
fn flood_timeline_and_drops() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let path = dir.path("flood.pcapng");
    let cap = Capture::start(
        &ns,
        "rxtxcpu",
        &[
            "--pcapng",
            "-v",
            "-B",
            "1",
            "-s",
            "64",
            "--time-stamp-precision=nano",
            "-w",
            &path,
            "lo",
        ],
    );
    let opts = FloodOptions {
        per_sec: Some(50_000),
        limit: Duration::from_secs(20),
        ..FloodOptions::default()
    };
    let floods = [0, 1].map(|cpu| Flood::start_with(&ns, cpu, LO, opts));
    for f in &floods {
        f.wait_for_more(40_000);
    }
    for f in floods {
        f.stop();
    }
    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let report = f.report();
    let drops = f.drops();
    let file = read_pcapng(std::fs::File::open(&path).unwrap());
    assert_eq!(
        by_interface(&file).values().sum::<u64>(),
        report.total,
        "{f}"
    );
    // Nanosecond timestamps: the file shows every inversion the merger
    // counted.
    let (in_file, said) = out_of_order(&file, &f);
    assert_eq!(in_file, said, "{f}");
    for (iface, recv, drop, _) in &file.stats {
        let cpu = *iface;
        let captured = report.per_cpu[&cpu];
        let dropped = drops.get(&cpu).copied().unwrap_or(0);
        assert_eq!(*drop, Some(dropped), "cpu{cpu} isb_ifdrop\n{f}");
        assert_eq!(*recv, Some(captured + dropped), "cpu{cpu} isb_ifrecv\n{f}");
    }
    eprintln!("drops: {drops:?}, out of order: {said}");
}

#[test]
fn stdout_into_tshark_with_two_cpus() {
    let ns = Netns::new();
    let mut cap = Capture::spawn_with_stdout(&ns, &["--pcapng", "-w", "-", "lo"], Stdio::piped());
    let stdout = cap.take_stdout();
    let tshark = Command::new("tshark")
        .args([
            "-n",
            "-r",
            "-",
            "-T",
            "fields",
            "-e",
            "frame.interface_description",
        ])
        .stdin(stdout)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(tshark) = tshark else {
        eprintln!("tshark not installed; skipping");
        return;
    };
    cap.wait_ready();
    traffic(&ns);
    let f = cap.interrupt();
    // The report goes to stderr: stdout is the pcapng stream.
    assert!(
        f.stderr
            .contains("8 packets captured on cpu0.\n6 packets captured on cpu1.\n"),
        "{f}"
    );
    let out = tshark.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().filter(|l| *l == "lo cpu0").count(),
        8,
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| *l == "lo cpu1").count(),
        6,
        "{text}"
    );
}

#[test]
fn stdout_reader_going_away_ends_the_capture() {
    let ns = Netns::new();
    let mut cap = Capture::spawn_with_stdout(&ns, &["--pcapng", "-w", "-", "lo"], Stdio::piped());
    let stdout = cap.take_stdout();
    cap.wait_ready();
    drop(stdout);
    assert!(cap.exited_within(Duration::from_secs(10)), "still running");
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
    f.report_from_stderr();
}

#[test]
fn rotation_by_size_names_files_as_tcpdump() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let template = dir.path("r.pcap");
    let cap = Capture::start(&ns, "rxtxcpu", &["-l0", "-C", "1", "-w", &template, "lo"]);
    // About 2.7 MB: 1300 datagrams of 1000 bytes, each captured twice.
    let sink = UdpSink::bind(&ns, LO);
    for _ in 0..26 {
        udp_send_port_with(&ns, 0, LO, UDP_PORT, &[7u8; 1000], 50);
        sink.expect(50);
    }
    let f = cap.interrupt();
    f.assert_report(&[(0, 2600)]);
    assert_eq!(dir.files(), ["r-0.pcap", "r-0.pcap1", "r-0.pcap2"], "{f}");
    let total: usize = dir
        .files()
        .iter()
        .map(|n| {
            let (header, packets) = read_pcap(&dir.path(n));
            assert_eq!(header.datalink, pcap_file::DataLink::ETHERNET);
            packets.len()
        })
        .sum();
    assert_eq!(total, 2600);
    for name in ["r-0.pcap", "r-0.pcap1"] {
        let size = std::fs::metadata(dir.path(name)).unwrap().len();
        assert!(
            (1_000_000..1_010_000).contains(&size),
            "{name}: {size} bytes"
        );
    }
}

/// `args` with `-C 1 -w DIR/w.pcap lo` after them, while 6000 datagrams
/// of 1000 bytes go from cpu0 over lo (1058-byte records: 7 files of 1 MB
/// at -C 1): the capture, interrupted, and its directory.
fn ring_of_files(args: &[&str]) -> (Finished, TempDir) {
    let ns = Netns::new();
    let dir = TempDir::new();
    let template = dir.path("w.pcap");
    let args = [args, &["-C", "1", "-w", &template, "lo"]].concat();
    let cap = Capture::start(&ns, "rxtxcpu", &args);
    let sink = UdpSink::bind(&ns, LO);
    for _ in 0..60 {
        udp_send_port_with(&ns, 0, LO, UDP_PORT, &[7u8; 1000], 50);
        sink.expect(50);
    }
    (cap.interrupt(), dir)
}

#[test]
fn file_count_keeps_a_ring_of_files() {
    let (f, dir) = ring_of_files(&["-l0", "-W", "3"]);
    f.assert_report(&[(0, 6000)]);
    assert_eq!(dir.files(), ["w-0.pcap0", "w-0.pcap1", "w-0.pcap2"], "{f}");
    let kept: u64 = dir
        .files()
        .iter()
        .map(|n| read_pcap(&dir.path(n)).1.len() as u64)
        .sum();
    // The report's count is what remains plus what the ring overwrote.
    let line = f
        .stderr
        .lines()
        .find(|l| l.ends_with("files rotated away on cpu0."))
        .unwrap_or_else(|| panic!("no rotated-away line\n{f}"));
    let lost: u64 = line.split(' ').next().unwrap().parse().unwrap();
    assert_eq!(kept + lost, 6000, "{f}");
    // 6000 records of 1058 bytes fill 7 files of 1 MB: 4 were overwritten.
    assert!(line.contains(" packets in 4 files rotated away"), "{line}");
}

/// One file rotated away is `1 file`.
#[test]
fn one_file_rotated_away_is_singular() {
    let (f, _dir) = ring_of_files(&["-l0", "-W", "6"]);
    f.assert_report(&[(0, 6000)]);
    // 6000 records of 1058 bytes fill 7 files of 1 MB: 1 was overwritten.
    let line = f
        .stderr
        .lines()
        .find(|l| l.contains("rotated away"))
        .unwrap_or_else(|| panic!("no rotated-away line\n{f}"));
    assert!(
        line.ends_with(" packets in 1 file rotated away on cpu0."),
        "{line}"
    );
}

/// A -G 1 -W 2 capture on lo with `args` (then `-w template lo`), fed a
/// datagram every 50 ms from cpu1 until it has made its two files and
/// ends by itself (once the second file's second is over and another
/// packet comes), at most 8 s; checks that it said so. Returns how it
/// ended and the two files' names.
fn capture_past_two_files(
    ns: &Netns,
    dir: &TempDir,
    args: &[&str],
    template: &str,
) -> (Finished, Vec<String>) {
    let mut argv = args.to_vec();
    argv.extend(["-G", "1", "-W", "2", "-w", template, "lo"]);
    let cap = Capture::start(ns, "rxtxcpu", &argv);
    let sink = UdpSink::bind(ns, LO);
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        udp_send_port(ns, 1, LO, LO, UDP_PORT, 1);
        sink.expect(1);
        std::thread::sleep(Duration::from_millis(50));
        if dir.files().len() >= 2 && start.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
    assert!(
        f.stderr.contains("rxtxcpu: maximum file limit reached: 2"),
        "{f}"
    );
    let files = dir.files();
    assert_eq!(files.len(), 2, "{files:?}");
    (f, files)
}

#[test]
fn rotation_by_time_with_strftime_names() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let template = dir.path("t-%s.pcap");
    let (f, files) = capture_past_two_files(&ns, &dir, &["-l1"], &template);
    let mut total = 0;
    for n in &files {
        // t-<epoch seconds>-1.pcap: the stream suffix first, then strftime.
        let secs = n.strip_prefix("t-").and_then(|r| r.strip_suffix("-1.pcap"));
        assert!(secs.is_some_and(|s| s.parse::<u64>().is_ok()), "{n}");
        total += read_pcap(&dir.path(n)).1.len() as u64;
    }
    assert_eq!(total, f.report().total, "{f}");
}

/// The merged file at the -G -W limit: the packet that would start the
/// third file (and any the workers took while the merger, up to its
/// window behind them, had not yet come to it) is in no file, so it is
/// not in the report either, as with a stream's own files (the report
/// counted them, and nothing said they were missing).
#[test]
fn merged_rotation_by_time_counts_what_the_files_hold() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let template = dir.path("m-%s.pcapng");
    let (f, files) = capture_past_two_files(&ns, &dir, &["--pcapng"], &template);
    let total: u64 = files
        .iter()
        .map(|n| {
            read_pcapng(std::fs::File::open(dir.path(n)).unwrap())
                .packets
                .len() as u64
        })
        .sum();
    assert_eq!(total, f.report().total, "{f}");
}

#[test]
fn merged_file_rotates_too() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let path = dir.path("m.pcapng");
    let cap = Capture::start(&ns, "rxtxcpu", &["--pcapng", "-C", "1", "-w", &path, "lo"]);
    let sink = UdpSink::bind(&ns, LO);
    for i in 0..26 {
        udp_send_port_with(&ns, i % 2, LO, UDP_PORT, &[7u8; 1000], 50);
        sink.expect(50);
    }
    let f = cap.interrupt();
    assert_eq!(f.report().total, 2600, "{f}");
    assert_eq!(dir.files(), ["m.pcapng", "m.pcapng1", "m.pcapng2"], "{f}");
    let mut total = 0;
    for n in dir.files() {
        // Each file stands alone: its own section and interfaces.
        let file = read_pcapng(std::fs::File::open(dir.path(&n)).unwrap());
        assert_eq!(file.interfaces.len(), 2, "{n}");
        total += file.packets.len();
    }
    assert_eq!(total, 2600);
}

#[test]
fn disk_full_during_rotation_leaves_valid_files() {
    let ns = Netns::new();
    let fs = Tmpfs::mount("2600k");
    let template = fs.dir.path("full.pcap");
    let cap = Capture::start(&ns, "rxtxcpu", &["-l0", "-C", "1", "-w", &template, "lo"]);
    let f = fill_until_full(&ns, cap, &[0]);
    assert!(
        f.stderr
            .lines()
            .any(|l| l.starts_with("rxtxcpu: error writing ")
                && l.ends_with(": No space left on device")),
        "{f}"
    );
    let mut total = 0;
    for n in fs.dir.files() {
        total += read_pcap(&fs.dir.path(&n)).1.len() as u64;
    }
    // Every packet captured is counted; those after the failure are not
    // in the files, and a line says how many.
    let left_out = f.not_in_file().get(&Place::Cpu(0)).copied().unwrap_or(0);
    assert_eq!(total + left_out, f.report().total, "{f}");
}

#[test]
fn disk_full_under_the_merged_file_counts_every_packet_left_out() {
    // The failed write takes the blocks it had buffered with it: they are
    // counted with the packets that came after, never lost silently.
    let ns = Netns::new();
    let fs = Tmpfs::mount("600k");
    let path = fs.dir.path("m.pcapng");
    let cap = Capture::start(&ns, "rxtxcpu", &["--pcapng", "-w", &path, "lo"]);
    let f = fill_until_full(&ns, cap, &[0, 1]);
    assert!(
        f.stderr
            .lines()
            .any(|l| l == format!("rxtxcpu: error writing {path}: No space left on device")),
        "{f}"
    );
    let in_file = read_pcapng(std::fs::File::open(&path).unwrap())
        .packets
        .len() as u64;
    let left_out = f.report().total - in_file;
    assert!(left_out > 0, "{f}");
    assert!(
        f.stderr
            .lines()
            .any(|l| l == format!("rxtxcpu: {}", not_in_file_line(left_out, ""))),
        "{in_file} in the file\n{f}"
    );
}

/// Sends 1000-byte datagrams on lo from `cpus` in turn, 50 at a time,
/// until the capture stops on its full file system (at most 2,000); the
/// capture must then end with status 1.
fn fill_until_full(ns: &Netns, cap: Capture, cpus: &[usize]) -> Finished {
    let sink = UdpSink::bind(ns, LO);
    for i in 0..40 {
        udp_send_port_with(ns, cpus[i % cpus.len()], LO, UDP_PORT, &[7u8; 1000], 50);
        sink.expect(50);
        if !cap_is_running(&cap) {
            break;
        }
    }
    let f = interrupt_or_wait(cap);
    assert_eq!(f.status.code(), Some(1), "{f}");
    f
}

fn cap_is_running(cap: &Capture) -> bool {
    nix::sys::signal::kill(cap.pid(), None).is_ok() && !cap.stderr_now().contains("error writing")
}

fn interrupt_or_wait(cap: Capture) -> Finished {
    let _ = nix::sys::signal::kill(cap.pid(), Signal::SIGINT);
    cap.wait()
}

#[test]
fn rotation_usage_errors() {
    check_usage_errors(&[
        (
            "rxtxcpu",
            &["-C", "0", "-w", "x"][..],
            "Invalid file size '0'.",
        ),
        (
            "rxtxcpu",
            &["-C", "1M", "-w", "x"],
            "Invalid file size '1M'.",
        ),
        (
            "rxtxcpu",
            &["-G", "-1", "-w", "x"],
            "Invalid rotate seconds '-1'.",
        ),
        (
            "rxtxcpu",
            &["-W", "x", "-C", "1", "-w", "x"],
            "Invalid file count 'x'.",
        ),
        (
            "rxtxcpu",
            &["-W", "3", "-w", "x"],
            "-W [--file-count] needs -C [--file-size] or -G [--rotate-seconds].",
        ),
        (
            "rxtxcpu",
            &["-G", "5"],
            "-G [--rotate-seconds] needs -w [--write].",
        ),
        (
            "rxtxcpu",
            &["-C", "5"],
            "-C [--file-size] needs -w [--write].",
        ),
        (
            "rxtxcpu",
            &["-l0", "-C", "5", "-w", "-"],
            "-C [--file-size] needs a file to write: '-' (stdout) cannot be rotated.",
        ),
        ("rxtxcpu", &["--pcapng"], "--pcapng needs -w [--write]."),
        (
            "rxtxcpu",
            &["--pcapng", "-G", "1", "-w", "-"],
            "-G [--rotate-seconds] needs a file to write: '-' (stdout) cannot be rotated.",
        ),
    ]);
}

/// A veth has no receive hash of its own: the flow hash of its packets is
/// the kernel's (or one its peer's socket set), never the Toeplitz hash
/// the epb_hash option would claim. Each packet carries the hash in its
/// comment instead (which readers show and Wireshark filters on, as
/// `frame.comment`), the same hash the flow table gives its flow, and -v
/// says why there is no epb_hash.
#[test]
fn veth_flow_hash_is_not_called_toeplitz() {
    use std::net::IpAddr;
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let dir = TempDir::new();
    let path = dir.path("v.pcapng");
    let sink = UdpSink::bind(&b, vb.addr);
    let cap = Capture::start(
        &b,
        "rxcpu",
        &[
            "-v",
            "--pcapng",
            "-w",
            &path,
            "--flows=0",
            "--json",
            &vb.ifname,
        ],
    );
    for i in 0..4u16 {
        udp_flow(
            &a,
            usize::from(i % 2),
            (IpAddr::V4(va.addr), 4600 + i),
            (IpAddr::V4(vb.addr), UDP_PORT),
            2,
        );
        sink.expect(2);
    }
    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r: serde_json::Value =
        serde_json::from_str(&f.stdout).unwrap_or_else(|e| panic!("{e}\n{f}"));
    // The flow table's hash, by source port.
    let hash_of: BTreeMap<u16, String> = r["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|fl| {
            let port = fl["src"].as_str().unwrap().rsplit(':').next().unwrap();
            (
                port.parse().unwrap(),
                fl["hash"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(hash_of.len(), 4, "{f}");
    let file = read_pcapng(std::fs::File::open(&path).unwrap());
    assert_eq!(file.packets.len(), 8, "{f}");
    for (p, o) in file.packets.iter().zip(&file.options) {
        assert!(o.hashes.is_empty(), "an epb_hash on a veth: {o:?}");
        // Ethernet, IPv4 without options: the source port at 34.
        let sport = u16::from_be_bytes([p.3[34], p.3[35]]);
        assert_eq!(
            o.comments,
            [format!("flow hash {}", hash_of[&sport])],
            "{o:?}"
        );
    }
    assert!(
        f.stderr.contains(&format!(
            "rxcpu: pcapng: each packet's flow hash is in its comment, with no epb_hash \
             (no algorithm claimed): {} does not hand the kernel a receive hash \
             (receive-hashing off)\n",
            vb.ifname
        )),
        "{f}"
    );
    // What a Wireshark user sees and filters on.
    let Some(rows) = tshark_fields(&path, &["udp.srcport", "frame.comment"]) else {
        eprintln!("tshark not installed; skipping its checks");
        return;
    };
    assert_eq!(rows.len(), 8);
    for row in rows {
        let sport: u16 = row[0].parse().unwrap();
        assert_eq!(row[1], format!("flow hash {}", hash_of[&sport]), "{row:?}");
    }
}

/// An Ethernet frame of `len` bytes to broadcast, of the local
/// experimental ethertype, its payload numbered by `seq`.
fn numbered_frame(len: usize, seq: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 0x88, 0xb5]);
    f.extend((0..len - f.len()).map(|i| (seq * 31 + i) as u8));
    f
}

/// Frames from 60 bytes to jumbo ones on a veth with its MTU raised,
/// from both cpus, into the merged file as it is written plain, with -U,
/// and rotated (-C): short runs of blocks are copied, long ones written
/// from the workers' batches (writev). Every frame must be in the files
/// once, byte for byte, in one timeline, with each stream's statistics;
/// and tshark must read the same frames.
#[test]
fn frames_of_every_size_reach_the_merged_file_whole() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    a.ip(&["link", "set", &va.ifname, "mtu", "9000"]);
    b.ip(&["link", "set", &vb.ifname, "mtu", "9000"]);
    let runs: [&[&str]; 3] = [&[], &["-U"], &["-C", "1"]];
    let caps: Vec<(Capture, TempDir)> = runs
        .iter()
        .map(|extra| {
            let dir = TempDir::new();
            let path = dir.path("m.pcapng");
            let args = [&["--pcapng", "-w", &path], *extra, &[vb.ifname.as_str()]].concat();
            (Capture::start(&b, "rxtxcpu", &args), dir)
        })
        .collect();
    let sizes = [60, 64, 512, 1000, 1100, 1514, 4000, 9014];
    let mut sent: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
    for round in 0..10 {
        for cpu in [0, 1] {
            // Runs of one size and of mixed sizes, from each cpu in turn.
            let frames: Vec<Vec<u8>> = (0..24)
                .map(|i| {
                    let len = sizes[if i < 8 { round % 8 } else { (i + round) % 8 }];
                    numbered_frame(len, round * 1000 + cpu * 100 + i)
                })
                .collect();
            for f in &frames {
                *sent.entry(f.clone()).or_default() += 1;
            }
            send_frames(&a, cpu, &va.ifname, frames);
        }
    }
    let total: u32 = sent.values().sum();
    for ((cap, dir), extra) in caps.into_iter().zip(runs) {
        let f = cap.interrupt();
        assert!(f.status.success(), "{extra:?}\n{f}");
        assert_eq!(f.report().total, u64::from(total), "{extra:?}\n{f}");
        let mut got: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
        let mut stats = Vec::new();
        let names = dir.files();
        if extra.contains(&"-C") {
            assert!(names.len() > 1, "{names:?}\n{f}");
        }
        let mut rows = 0;
        for name in &names {
            let path = dir.path(name);
            let file = read_pcapng(std::fs::File::open(&path).unwrap());
            let (in_file, said) = out_of_order(&file, &f);
            assert!(
                in_file <= said,
                "{extra:?} {name}: {in_file} out of order\n{f}"
            );
            for p in file.packets {
                *got.entry(p.3).or_default() += 1;
            }
            stats.extend(file.stats);
            if let Some(r) = tshark_fields(&path, &["frame.len", "frame.cap_len"]) {
                assert!(
                    r.iter().all(|r| r[0] == r[1]),
                    "{extra:?} {name}: cut frames"
                );
                rows += r.len();
            }
        }
        assert!(got == sent, "{extra:?}: the files hold other frames\n{f}");
        // The statistics (in the last file) count every frame received.
        let received: u64 = stats.iter().map(|s| s.1.unwrap()).sum();
        assert_eq!(received, u64::from(total), "{extra:?}: {stats:?}\n{f}");
        assert!(
            rows == 0 || rows == total as usize,
            "{extra:?}: tshark read {rows}"
        );
    }
}

/// With --json, each stream's object says what its -W ring overwrote
/// (`rotated_away`: files and the packets they held), so that a script
/// can tell how many of `captured` are still in files; a stream whose
/// ring overwrote nothing has no such key.
#[test]
fn json_says_what_the_ring_overwrote() {
    let (f, dir) = ring_of_files(&["-W", "3", "--json"]);
    let j = f.json();
    let kept: u64 = dir
        .files()
        .iter()
        .filter(|n| n.starts_with("w-0."))
        .map(|n| read_pcap(&dir.path(n)).1.len() as u64)
        .sum();
    let cpu0 = &j["streams"][0];
    assert_eq!(cpu0["captured"], 6000, "{f}");
    // 6000 records of 1058 bytes fill 7 files of 1 MB: 4 were overwritten.
    assert_eq!(cpu0["rotated_away"]["files"], 4, "{f}");
    assert_eq!(
        cpu0["rotated_away"]["packets"].as_u64(),
        Some(6000 - kept),
        "{f}"
    );
    assert!(j["streams"][1].get("rotated_away").is_none(), "{f}");
}

/// With --pcapng the merged file rotates as one: --json says what its -W
/// ring overwrote as `merged_file.rotated_away` (files and the packets
/// they held), as each stream's object does for its own files; the
/// streams, with no files of their own, have no such key.
#[test]
fn json_says_what_the_merged_files_ring_overwrote() {
    let (f, dir) = ring_of_files(&["--pcapng", "-W", "3", "--json"]);
    let j = f.json();
    assert_eq!(dir.files(), ["w.pcap0", "w.pcap1", "w.pcap2"], "{f}");
    let kept: u64 = dir
        .files()
        .iter()
        .map(|n| {
            read_pcapng(std::fs::File::open(dir.path(n)).unwrap())
                .packets
                .len() as u64
        })
        .sum();
    assert_eq!(j["total"], 6000, "{f}");
    let away = &j["merged_file"]["rotated_away"];
    let (files, packets) = (away["files"].as_u64(), away["packets"].as_u64());
    assert_eq!(packets, Some(6000 - kept), "{f}");
    // The same numbers as stderr's line.
    let line = format!(
        "{} packets in {} files rotated away.",
        packets.unwrap_or(0),
        files.unwrap_or(0)
    );
    assert!(f.stderr.lines().any(|l| l == line), "no `{line}`\n{f}");
    assert!(files.is_some_and(|n| n >= 1), "{f}");
    for s in j["streams"].as_array().unwrap() {
        assert!(s.get("rotated_away").is_none(), "{f}");
    }
    // Without the ring nothing is overwritten, and there is no key.
    let (f, _dir) = ring_of_files(&["--pcapng", "--json"]);
    assert!(f.json().get("merged_file").is_none(), "{f}");
}
