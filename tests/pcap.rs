//! Pcap output (-w): per-cpu file names, contents, stdout stream, -U, the
//! snapshot length and timestamp options, link types, interoperability with
//! tcpdump, and what happens when writing fails. Each test has its own
//! namespace; every file written is read back with pcap-file.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pcap_file::{DataLink, TsResolution};

use common::*;

/// Ethernet + IPv4 + UDP headers and `PAYLOAD`: one of `udp_send`'s
/// datagrams on an Ethernet link.
const UDP_FRAME_LEN: usize = 14 + 20 + 8 + PAYLOAD.len();
/// The largest UDP payload of one IPv4 packet: 65535 bytes of IP, which lo
/// (MTU 65536) carries in one piece.
const MAX_UDP_PAYLOAD: usize = 65_507;
/// tcpdump's default snapshot length.
const DEFAULT_SNAPLEN: u32 = 262_144;

// ---------------------------------------------------------------------------
// Reading pcap

/// The file's magic number, in the byte order it was written in (native,
/// as libpcap writes).
fn magic(path: &str) -> u32 {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    u32::from_ne_bytes(bytes[..4].try_into().unwrap())
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Every timestamp lies in the test's wall-clock window (a microsecond
/// file truncates, so up to 1 us before `start`).
fn assert_in_window(what: &str, packets: &[Packet], start: Duration, end: Duration) {
    let earliest = start.saturating_sub(Duration::from_micros(1));
    for (i, p) in packets.iter().enumerate() {
        assert!(
            earliest <= p.timestamp && p.timestamp <= end,
            "{what} packet {i}: timestamp {:?} not within {earliest:?}..{end:?}",
            p.timestamp
        );
    }
}

/// Timestamps never go back within one file. A cpu's packets reach its
/// ring one after the other (the kernel stamps each with the real-time
/// clock as it copies it in, with bottom halves off), so their times rise.
/// Strictly in a nanosecond file; a microsecond file legitimately repeats a
/// timestamp: on lo the tx and rx copies of a datagram are often taken
/// within the same microsecond (about one packet in six in a ping flood).
fn assert_ordered(what: &str, packets: &[Packet], strict: bool) {
    for (i, w) in packets.windows(2).enumerate() {
        let ok = if strict {
            w[0].timestamp < w[1].timestamp
        } else {
            w[0].timestamp <= w[1].timestamp
        };
        assert!(
            ok,
            "{what}: packet {} at {:?} is not after packet {i} at {:?}",
            i + 1,
            w[1].timestamp,
            w[0].timestamp
        );
    }
}

/// Each packet is one of our UDP datagrams on an Ethernet link, whole.
fn assert_udp_packets(what: &str, packets: &[Packet]) {
    for (i, p) in packets.iter().enumerate() {
        let ctx = format!("{what} packet {i}: {p:?}");
        assert_eq!(p.orig_len as usize, p.data.len(), "{ctx}");
        assert_eq!(p.data.len(), UDP_FRAME_LEN, "{ctx}");
        assert_eq!(
            &p.data[12..14],
            &[0x08, 0x00],
            "not IPv4 in Ethernet: {ctx}"
        );
        assert!(p.data.ends_with(PAYLOAD), "{ctx}");
    }
}

/// `assert_files_match_report` for a capture at the default snapshot
/// length, each file's packets in time order within the window. Returns
/// the packets per cpu.
fn assert_files_in_window(
    f: &Finished,
    template: &str,
    start: Duration,
    end: Duration,
) -> Vec<(u32, Vec<Packet>)> {
    let mut by_cpu: BTreeMap<u32, Vec<Packet>> = BTreeMap::new();
    let headers = assert_files_match_report(f, template, |cpu, p| {
        by_cpu.entry(cpu).or_default().push(p);
    });
    let mut all = Vec::new();
    for (cpu, header) in headers {
        let path = cpu_file(template, cpu);
        let packets = by_cpu.remove(&cpu).unwrap_or_default();
        assert_eq!(header.snaplen, DEFAULT_SNAPLEN, "{path}");
        assert_in_window(&path, &packets, start, end);
        assert_ordered(&path, &packets, false);
        all.push((cpu, packets));
    }
    all
}

// ---------------------------------------------------------------------------
// Traffic and tools

/// Sends one datagram of `len` bytes of payload on lo from a thread pinned
/// to `cpu` and receives it: 2 packets (tx, rx) on `cpu`.
fn big_udp_on_lo(ns: &Netns, cpu: usize, len: usize) {
    in_netns(ns, move || {
        pin_to_cpu(cpu);
        let rx = UdpSocket::bind((LO, 0)).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let tx = UdpSocket::bind((LO, 0)).unwrap();
        tx.send_to(&vec![0xa5; len], rx.local_addr().unwrap())
            .unwrap();
        let mut buf = vec![0u8; 65_536];
        assert_eq!(rx.recv(&mut buf).unwrap(), len);
    })
}

/// When one datagram was sent and received.
#[derive(Debug, Clone, Copy)]
struct Sent {
    /// Just before and just after send_to().
    before: Duration,
    after: Duration,
    /// Just after the receiver had it.
    received: Duration,
}

/// Sends `count` of `udp_send`'s datagrams on lo, `gap` apart, from a
/// thread pinned to `cpu`, each received before the next is sent; returns
/// when each was sent.
fn timed_udp_on_lo(ns: &Netns, cpu: usize, count: usize, gap: Duration) -> Vec<Sent> {
    in_netns(ns, move || {
        pin_to_cpu(cpu);
        let rx = UdpSocket::bind((LO, 0)).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let tx = UdpSocket::bind((LO, 0)).unwrap();
        let to = rx.local_addr().unwrap();
        let mut buf = [0u8; 64];
        let mut sent = Vec::new();
        for i in 0..count {
            if i > 0 {
                thread::sleep(gap);
            }
            let before = now();
            tx.send_to(PAYLOAD, to).unwrap();
            let after = now();
            rx.recv(&mut buf).unwrap();
            sent.push(Sent {
                before,
                after,
                received: now(),
            });
        }
        sent
    })
}

/// `tcpdump -nn -r FILE` (inside `ns` if given, so that interface indexes
/// get their names); panics unless it succeeds. Returns (stdout, stderr).
fn tcpdump_read(ns: Option<&Netns>, path: &str) -> (String, String) {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.name, "tcpdump"]);
            c
        }
        None => Command::new("tcpdump"),
    };
    let out = cmd
        .args(["-nn", "-r", path])
        .stdin(Stdio::null())
        .output()
        .expect("run tcpdump");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "tcpdump -r {path}: {}\n{stdout}{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// `02:00:00:00:00:01` -> its six bytes.
fn mac_octets(mac: &str) -> Vec<u8> {
    mac.split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect()
}

/// The index of `ifname` in `ns`.
fn ifindex(ns: &Netns, ifname: &str) -> u32 {
    let out = ns.ip(&["-o", "link", "show", "dev", ifname]);
    out.split(':').next().unwrap().trim().parse().unwrap()
}

/// A capture that ended because its stdout reader went away: exit 0, the
/// report on stderr, and no error, panic or complaint about the pipe.
fn assert_quiet_end(f: &Finished) {
    assert_eq!(f.status.code(), Some(0), "{f}");
    let report = f
        .stderr
        .lines()
        .skip_while(|l| !l.contains("packets captured on cpu"))
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    Report::parse(&report).unwrap_or_else(|e| panic!("no report on stderr: {e}\n{f}"));
    for bad in ["panic", "error", "Error", "Broken pipe", "EPIPE"] {
        assert!(!f.stderr.contains(bad), "{bad:?} on stderr:\n{f}");
    }
}

// ---------------------------------------------------------------------------
// Files and streams

#[test]
fn per_cpu_files_hold_each_cpus_packets() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let out = dir.path("out.pcap");
    let cap = Capture::start(&ns, "rxtxcpu", &["-w", &out, "lo"]);
    let start = now();
    udp_send(&ns, 0, LO, LO, 3);
    udp_send(&ns, 1, LO, LO, 2);
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    let end = now();
    f.assert_report(&[(0, 6), (1, 4)]);
    assert_eq!(dir.files(), ["out-0.pcap", "out-1.pcap"], "{f}");
    for (cpu, packets) in assert_files_in_window(&f, &out, start, end) {
        let path = dir.path(&format!("out-{cpu}.pcap"));
        // Microsecond pcap, as every reader knows it.
        assert_eq!(magic(&path), 0xa1b2_c3d4, "{path}");
        let (header, _) = read_pcap(&path);
        assert_eq!(header.datalink, DataLink::ETHERNET, "{path}");
        assert_eq!(header.ts_resolution, TsResolution::MicroSecond, "{path}");
        assert_eq!((header.version_major, header.version_minor), (2, 4));
        assert_udp_packets(&path, &packets);
    }
}

#[test]
fn file_names() {
    let ns = Netns::new();
    let dir = TempDir::new();
    std::fs::create_dir(dir.0.join("x.y")).unwrap();
    for (args, files) in [
        (&["-w", "out.pcap"][..], &["out-0.pcap", "out-1.pcap"][..]),
        (&["-w", "out"], &["out-0", "out-1"]),
        (&["-w", ".cap"], &[".cap-0", ".cap-1"]),
        (&["-w", "x.y/out"], &["x.y/out-0", "x.y/out-1"]),
        (&["-l0", "-w", "one.pcap"], &["one-0.pcap"]),
        (&["-m", "2", "--write", "two.pcap"], &["two-1.pcap"]),
    ] {
        let mut argv = args.to_vec();
        let target = dir.path(argv.pop().unwrap());
        argv.extend([target.as_str(), "lo"]);
        let cap = Capture::start(&ns, "rxtxcpu", &argv);
        cap.signal(Signal::SIGINT);
        let f = cap.wait();
        assert_eq!(f.status.code(), Some(0), "{argv:?}\n{f}");
        let found = dir.files();
        for file in files {
            assert!(
                found.contains(&file.to_string()),
                "{argv:?}: no {file} in {found:?}"
            );
            let (_, packets) = read_pcap(&dir.path(file));
            assert!(packets.is_empty(), "{file}");
            std::fs::remove_file(dir.path(file)).unwrap();
        }
        assert_eq!(dir.files(), Vec::<String>::new(), "{argv:?}: extra files");
    }
}

#[test]
fn write_to_stdout_with_one_cpu() {
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxcpu", &["-l1", "-w", "-", "lo"]);
    let start = now();
    udp_send(&ns, 1, LO, LO, 2);
    udp_send(&ns, 0, LO, LO, 1);
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    let end = now();
    assert_eq!(f.status.code(), Some(0), "{f}");
    // The report goes to stderr, the pcap stream alone to stdout.
    assert!(
        f.stderr
            .ends_with("\n4 packets captured on cpu1.\n4 packets captured total.\n"),
        "{f}"
    );
    let mut packets = Vec::new();
    let stream = scan_pcap(f.stdout_bytes.as_slice(), true, |p| packets.push(p))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stream.header.datalink, DataLink::ETHERNET);
    assert_eq!(packets.len(), 4, "{f}");
    assert_udp_packets("stdout", &packets);
    assert_in_window("stdout", &packets, start, end);
    assert_ordered("stdout", &packets, false);
}

#[test]
fn packet_buffered_file_shows_packets_while_capturing() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let out = dir.path("live.pcap");
    let mut cap = Capture::start(&ns, "rxtxcpu", &["-U", "-l0", "-w", &out, "lo"]);
    ping(&ns, 0, LO, 1);
    let file = dir.path("live-0.pcap");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let bytes = std::fs::read(&file).unwrap_or_default();
        if scan_pcap(bytes.as_slice(), false, |_| ()).is_ok_and(|file| file.packets == 4) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{file} has not got the 4 packets while capturing; stderr:\n{}",
            cap.stderr_now()
        );
        thread::sleep(Duration::from_millis(10));
    }
    // tcpdump reads the file while the capture still runs.
    let (text, _) = tcpdump_read(None, &file);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.contains("ICMP echo request"), "{text}");
    assert!(cap.is_running(), "{}", cap.stderr_now());
    cap.signal(Signal::SIGINT);
    cap.wait().assert_report(&[(0, 4)]);
    assert_eq!(read_pcap(&file).1.len(), 4);
}

/// Without -U the output is buffered: nothing but the file header reaches
/// the file while a trickle of packets is captured, and a flood is written
/// in large chunks, not a write(2) per packet; the end writes the rest.
#[test]
fn buffered_output_uses_large_writes_and_is_complete_at_the_end() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let out = dir.path("buf.pcap");
    let file = dir.path("buf-0.pcap");
    let cap = Capture::start(&ns, "rxtxcpu", &["-l0", "-w", &out, "lo"]);
    let start = now();
    udp_send(&ns, 0, LO, LO, 3);
    // Ten block timeouts: the worker has long had the packets.
    thread::sleep(Duration::from_millis(200));
    let len = std::fs::metadata(&file).unwrap().len();
    assert!(
        len <= 24,
        "{file} has {len} bytes: packets written unbuffered"
    );

    let flood = Flood::start(&ns, 0, LO);
    flood.wait_for_more(40_000);
    let io = std::fs::read_to_string(format!("/proc/{}/io", cap.pid())).unwrap();
    let field = |name: &str| -> u64 {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/PID/io:\n{io}"))
    };
    let (writes, bytes) = (field("syscw:"), field("wchar:"));
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    drop(flood);
    let end = now();
    let packets = assert_files_in_window(&f, &out, start, end);
    let captured = packets[0].1.len() as u64;
    assert!(captured > 20_000, "{f}");
    // A few writes of -v lines to stderr, then chunks of at least 64 KiB.
    assert!(bytes > 1 << 20, "only {bytes} bytes written during a flood");
    assert!(
        writes <= 20 + bytes / 65_536,
        "{writes} write calls for {bytes} bytes ({captured} packets)"
    );
}

// ---------------------------------------------------------------------------
// Records: timestamps, lengths

/// Timestamps are the kernel's capture time, with sub-second precision:
/// each datagram's tx copy is stamped inside its send_to() call, its rx
/// copy before the receiver had it, and datagrams sent 50 ms apart are
/// 50 ms apart in the file (the original wrote whole seconds).
#[test]
fn timestamps_are_the_capture_time() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let out = dir.path("ts.pcap");
    let cap = Capture::start(&ns, "rxtxcpu", &["-l0", "-w", &out, "lo"]);
    let gap = Duration::from_millis(50);
    let sent = timed_udp_on_lo(&ns, 0, 6, gap);
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    f.assert_report(&[(0, 12)]);
    let path = dir.path("ts-0.pcap");
    let (_, packets) = read_pcap(&path);
    assert_udp_packets(&path, &packets);
    let us = Duration::from_micros(1);
    for (i, (s, pair)) in sent.iter().zip(packets.chunks(2)).enumerate() {
        let (tx, rx) = (pair[0].timestamp, pair[1].timestamp);
        let ctx = format!("datagram {i}: {s:?}, tx {tx:?}, rx {rx:?}");
        assert!(s.before - us <= tx && tx <= s.after, "tx: {ctx}");
        assert!(tx <= rx && rx <= s.received, "rx: {ctx}");
    }
    for (i, w) in packets.chunks(2).collect::<Vec<_>>().windows(2).enumerate() {
        // At least the sender's sleep apart; how much more is the
        // scheduler's, and the bracket above already bounds it.
        let d = w[1][0].timestamp - w[0][0].timestamp;
        assert!(
            gap - us <= d,
            "datagrams {i} and {} are {d:?} apart in the file, sent {gap:?} apart",
            i + 1
        );
    }
}

#[test]
fn nanosecond_timestamps() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let out = dir.path("ns.pcap");
    #[rustfmt::skip]
    let cap = Capture::start(&ns, "rxtxcpu",
                             &["--time-stamp-precision=nano", "-l1", "-w", &out, "lo"]);
    let start = now();
    let sent = timed_udp_on_lo(&ns, 1, 4, Duration::from_millis(5));
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    let end = now();
    f.assert_report(&[(1, 8)]);
    let path = dir.path("ns-1.pcap");
    assert_eq!(magic(&path), 0xa1b2_3c4d, "{path}");
    let (header, packets) = read_pcap(&path);
    assert_eq!(header.ts_resolution, TsResolution::NanoSecond);
    assert_eq!(packets.len(), 8);
    assert_udp_packets(&path, &packets);
    assert_in_window(&path, &packets, start, end);
    // Nanoseconds apart even on lo, where tx and rx of a datagram often
    // share a microsecond.
    assert_ordered(&path, &packets, true);
    for (s, pair) in sent.iter().zip(packets.chunks(2)) {
        let tx = pair[0].timestamp;
        assert!(s.before <= tx && tx <= s.after, "{s:?}: tx at {tx:?}");
    }
    // Real nanoseconds, not microseconds times 1000 (8 multiples of 1000
    // by chance: 1e-24).
    assert!(
        packets
            .iter()
            .any(|p| p.timestamp.subsec_nanos() % 1000 != 0),
        "{packets:?}"
    );
}

#[test]
fn snapshot_length_truncates_packets() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let out = dir.path("snap.pcap");
    let cap = Capture::start(&ns, "rxtxcpu", &["-s", "64", "-l0", "-w", &out, "lo"]);
    ping(&ns, 0, LO, 1);
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    f.assert_report(&[(0, 4)]);
    let (header, packets) = read_pcap(&dir.path("snap-0.pcap"));
    assert_eq!(header.snaplen, 64);
    assert_eq!(packets.len(), 4);
    for p in &packets {
        // A default ping is 98 bytes on the wire (Ethernet + IP + ICMP + 56).
        assert_eq!((p.data.len(), p.orig_len), (64, 98), "{p:?}");
    }
}

/// 64 KiB packets on lo: whole at the default snapshot length (also with
/// `-s 0`), cut to SNAPLEN with the wire length intact with `-s`.
#[test]
fn large_packets_with_and_without_snapshot_length() {
    let frame = (14 + 20 + 8 + MAX_UDP_PAYLOAD) as u32;
    for (args, snaplen, caplen) in [
        (&[][..], DEFAULT_SNAPLEN, frame),
        (&["-s", "0"], DEFAULT_SNAPLEN, frame),
        (&["--snapshot-length=1000"], 1000, 1000),
        (&["-s", "65549"], frame, frame),
        (&["-s", "65548"], frame - 1, frame - 1),
    ] {
        let ns = Netns::new();
        let dir = TempDir::new();
        let out = dir.path("big.pcap");
        let mut argv = args.to_vec();
        argv.extend(["-l0", "-w", &out, "lo"]);
        let cap = Capture::start(&ns, "rxtxcpu", &argv);
        big_udp_on_lo(&ns, 0, MAX_UDP_PAYLOAD);
        big_udp_on_lo(&ns, 0, 100);
        cap.signal(Signal::SIGINT);
        let f = cap.wait();
        f.assert_report(&[(0, 4)]);
        let path = dir.path("big-0.pcap");
        let (header, packets) = read_pcap(&path);
        assert_eq!(header.snaplen, snaplen, "{argv:?}");
        let lens: Vec<(usize, u32)> = packets.iter().map(|p| (p.data.len(), p.orig_len)).collect();
        let small = 14 + 20 + 8 + 100;
        #[rustfmt::skip]
        assert_eq!(lens, [(caplen as usize, frame), (caplen as usize, frame),
                          (small, small as u32), (small, small as u32)], "{argv:?}");
        for p in &packets[..2] {
            assert!(p.data[42..].iter().all(|&b| b == 0xa5), "{argv:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Link types

#[test]
fn loopback_is_ethernet_and_tcpdump_decodes_it() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let out = dir.path("lo.pcap");
    let cap = Capture::start(&ns, "rxtxcpu", &["-l0", "-w", &out, "lo"]);
    ping(&ns, 0, LO, 1);
    cap.signal(Signal::SIGINT);
    cap.wait().assert_report(&[(0, 4)]);
    let path = dir.path("lo-0.pcap");
    let (header, packets) = read_pcap(&path);
    assert_eq!(header.datalink, DataLink::ETHERNET);
    assert_eq!(packets.len(), 4);
    let (text, info) = tcpdump_read(None, &path);
    assert!(info.contains("link-type EN10MB (Ethernet)"), "{info}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for (line, what) in lines.iter().zip(["request", "request", "reply", "reply"]) {
        assert!(
            line.contains(&format!("IP 127.0.0.1 > 127.0.0.1: ICMP echo {what}, id ")),
            "{text}"
        );
    }
}

#[test]
fn veth_is_ethernet() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let dir = TempDir::new();
    let out = dir.path("veth.pcap");
    let cap = Capture::start(&a, "rxtxcpu", &["-l0", "-w", &out, &va.ifname]);
    let sink = UdpSink::bind(&b, vb.addr);
    udp_send(&a, 0, va.addr, vb.addr, 3);
    sink.expect(3);
    cap.signal(Signal::SIGINT);
    cap.wait().assert_report(&[(0, 3)]);
    let path = dir.path("veth-0.pcap");
    let (header, packets) = read_pcap(&path);
    assert_eq!(header.datalink, DataLink::ETHERNET);
    assert_udp_packets(&path, &packets);
    for p in &packets {
        assert_eq!(p.data[0..6], mac_octets(&vb.mac), "destination MAC");
        assert_eq!(p.data[6..12], mac_octets(&va.mac), "source MAC");
        assert_eq!(p.data[26..30], va.addr.octets(), "source IP");
        assert_eq!(p.data[30..34], vb.addr.octets(), "destination IP");
    }
}

/// A received 802.1Q frame reaches packet sockets with its tag taken off
/// (the stack untags before the taps; hardware offload does the same); the
/// file must show it as it was on the wire, tag included, as tcpdump does.
#[test]
fn stripped_vlan_tag_is_written_back() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let dir = TempDir::new();
    let out = dir.path("vlan.pcap");
    let cap = Capture::start(&b, "rxcpu", &["-l0", "-w", &out, &vb.ifname]);
    let mut frame = vec![0xff; 6]; // broadcast
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    frame.extend_from_slice(&[0x81, 0x00, 0x20, 0x05]); // VLAN 5, priority 1
    frame.extend_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    frame.extend_from_slice(&[0x5a; 46]);
    let (sent, ifname) = (frame.clone(), va.ifname.clone());
    in_netns(&a, move || {
        pin_to_cpu(0);
        // SAFETY: plain socket calls on a descriptor this block owns.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            let name = std::ffi::CString::new(ifname).unwrap();
            sll.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            let r = libc::sendto(
                fd,
                sent.as_ptr().cast(),
                sent.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(
                r,
                sent.len() as isize,
                "{}",
                std::io::Error::last_os_error()
            );
            libc::close(fd);
        }
    });
    cap.signal(Signal::SIGINT);
    cap.wait().assert_report(&[(0, 1)]);
    let (_, packets) = read_pcap(&dir.path("vlan-0.pcap"));
    assert_eq!(packets.len(), 1);
    assert_eq!(packets[0].data, frame);
    assert_eq!(packets[0].orig_len as usize, frame.len());
}

/// A tun device `name` in `ns` (IFF_TUN | IFF_NO_PI), attached to the
/// returned descriptor: it has carrier, and what it transmits is read here.
fn tun_device(ns: &Netns, name: &str) -> OwnedFd {
    let name = name.to_string();
    in_netns(ns, move || common::tun_fd(&name, false))
}

/// Reads one packet the tun device transmitted (waits up to 5 s).
fn tun_read(fd: &OwnedFd) -> Vec<u8> {
    let mut fds = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: fds is a live array of one pollfd.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), 1, 5000) };
    assert_eq!(r, 1, "nothing to read from the tun device");
    let mut buf = vec![0u8; 65_536];
    // SAFETY: buf is live and writable for its length.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n > 0, "read tun: {}", std::io::Error::last_os_error());
    buf.truncate(n as usize);
    buf
}

/// A tun device carries bare IP: link type RAW, each record an IPv4 packet
/// exactly as the device sent or received it.
#[test]
fn tun_is_raw_ip() {
    let ns = Netns::new();
    let tun = tun_device(&ns, "tun0");
    let (local, remote) = (Ipv4Addr::new(10, 7, 0, 1), Ipv4Addr::new(10, 7, 0, 2));
    ns.ip(&["addr", "add", &format!("{local}/24"), "dev", "tun0"]);
    ns.ip(&["link", "set", "tun0", "up"]);
    let dir = TempDir::new();
    let out = dir.path("tun.pcap");
    let cap = Capture::start(&ns, "rxtxcpu", &["-w", &out, "tun0"]);
    // Transmitted on tun0 from cpu0, read by us from the device.
    udp_send(&ns, 0, local, remote, 3);
    let sent: Vec<Vec<u8>> = (0..3).map(|_| tun_read(&tun)).collect();
    // Received on tun0 on cpu1: the first datagram turned around. Swapping
    // the addresses keeps both checksums right (they are sums of words).
    let mut back = sent[0].clone();
    back[12..16].copy_from_slice(&remote.octets());
    back[16..20].copy_from_slice(&local.octets());
    let sink = UdpSink::bind(&ns, local);
    let fd = tun.try_clone().unwrap();
    let writer = thread::spawn(move || {
        pin_to_cpu(1);
        // SAFETY: back is live for its length.
        let n = unsafe { libc::write(fd.as_raw_fd(), back.as_ptr().cast(), back.len()) };
        assert_eq!(
            n as usize,
            back.len(),
            "{}",
            std::io::Error::last_os_error()
        );
        back
    });
    let back = writer.join().unwrap();
    sink.expect(1);
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    f.assert_report(&[(0, 3), (1, 1)]);

    let (header, tx) = read_pcap(&dir.path("tun-0.pcap"));
    assert_eq!(header.datalink, DataLink::RAW);
    let (header, rx) = read_pcap(&dir.path("tun-1.pcap"));
    assert_eq!(header.datalink, DataLink::RAW);
    let tx: Vec<&[u8]> = tx.iter().map(|p| &p.data[..]).collect();
    let sent: Vec<&[u8]> = sent.iter().map(|p| &p[..]).collect();
    assert_eq!(tx, sent, "tx records are not what tun0 sent");
    assert_eq!(rx.len(), 1);
    assert_eq!(rx[0].data, back, "rx record is not what tun0 received");
    assert_eq!(rx[0].orig_len as usize, back.len());
    assert_eq!(back.len(), 20 + 8 + PAYLOAD.len());

    let (text, info) = tcpdump_read(None, &dir.path("tun-0.pcap"));
    assert!(info.contains("link-type RAW (Raw IP)"), "{info}");
    assert_eq!(
        text.lines()
            .filter(|l| l.contains(&format!("IP {local}."))
                && l.contains(&format!(
                    "> {remote}.{UDP_PORT}: UDP, length {}",
                    PAYLOAD.len()
                )))
            .count(),
        3,
        "{text}"
    );
}

/// One LINUX_SLL2 record header.
#[derive(Debug, PartialEq, Eq)]
struct Sll2 {
    protocol: u16,
    ifindex: u32,
    hatype: u16,
    pkttype: u8,
    addr: Vec<u8>,
}

fn sll2(p: &Packet) -> Sll2 {
    let d = &p.data;
    assert!(d.len() >= 20, "{p:?}");
    assert_eq!(&d[2..4], &[0, 0], "reserved field: {p:?}");
    let halen = d[11] as usize;
    assert!(halen <= 8, "{p:?}");
    Sll2 {
        protocol: u16::from_be_bytes([d[0], d[1]]),
        ifindex: u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
        hatype: u16::from_be_bytes([d[8], d[9]]),
        pkttype: d[10],
        addr: d[12..12 + halen].to_vec(),
    }
}

/// Capturing on every interface records cooked LINUX_SLL2 packets that
/// carry each packet's interface, hardware type and direction, as
/// `tcpdump -i any` does; tcpdump reads them.
#[test]
fn all_interfaces_capture_is_linux_sll2() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let dir = TempDir::new();
    let out = dir.path("any.pcap");
    let cap = Capture::start(&a, "rxtxcpu", &["-w", &out]);
    ping(&a, 0, LO, 1);
    let sink = UdpSink::bind(&b, vb.addr);
    udp_send(&a, 1, va.addr, vb.addr, 2);
    sink.expect(2);
    cap.signal(Signal::SIGINT);
    cap.wait().assert_report(&[(0, 4), (1, 2)]);

    let (lo, veth) = (ifindex(&a, "lo"), ifindex(&a, &va.ifname));
    let path0 = dir.path("any-0.pcap");
    let (header, packets) = read_pcap(&path0);
    assert_eq!(header.datalink, DataLink::LINUX_SLL2);
    let got: Vec<Sll2> = packets.iter().map(sll2).collect();
    let on_lo = |pkttype| Sll2 {
        protocol: 0x0800,
        ifindex: lo,
        hatype: 772,
        pkttype,
        addr: vec![0; 6],
    };
    // Request out and in, reply out and in.
    assert_eq!(got, [on_lo(4), on_lo(0), on_lo(4), on_lo(0)]);
    for (p, icmp_type) in packets.iter().zip([8, 8, 0, 0]) {
        assert_eq!(p.data.len(), 20 + 84, "{p:?}");
        assert_eq!(p.orig_len as usize, p.data.len());
        assert_eq!(p.data[20], 0x45, "IPv4 after the SLL2 header: {p:?}");
        assert_eq!(p.data[20 + 20], icmp_type, "{p:?}");
    }

    let path1 = dir.path("any-1.pcap");
    let (header, packets) = read_pcap(&path1);
    assert_eq!(header.datalink, DataLink::LINUX_SLL2);
    for p in &packets {
        #[rustfmt::skip]
        assert_eq!(sll2(p), Sll2 { protocol: 0x0800, ifindex: veth, hatype: 1, pkttype: 4,
                                   addr: mac_octets(&va.mac) });
        assert_eq!(p.data.len(), 20 + 20 + 8 + PAYLOAD.len(), "{p:?}");
        assert_eq!(p.orig_len as usize, p.data.len());
        assert!(p.data.ends_with(PAYLOAD), "{p:?}");
    }
    assert_eq!(packets.len(), 2);

    let (text, info) = tcpdump_read(Some(&a), &path0);
    assert!(info.contains("LINUX_SLL2"), "{info}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for (line, (dir, what)) in lines.iter().zip([
        ("Out", "request"),
        ("In", "request"),
        ("Out", "reply"),
        ("In", "reply"),
    ]) {
        // tcpdump 4.99: `lo    Out IP 127.0.0.1 > ...`.
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(
            words.get(1..3) == Some(&["lo", dir][..])
                && line.contains(&format!("IP 127.0.0.1 > 127.0.0.1: ICMP echo {what}")),
            "{text}"
        );
    }
    let (text, _) = tcpdump_read(Some(&a), &path1);
    let want = format!("Out IP {}.", va.addr);
    assert_eq!(
        text.lines()
            .filter(|l| l.contains(&va.ifname) && l.contains(&want))
            .count(),
        2,
        "{text}"
    );
}

/// The snapshot length of a cooked capture counts the SLL2 header, as in
/// tcpdump, and is raised to 21 (the header and a byte) when smaller; the
/// wire length stays.
#[test]
fn all_interfaces_capture_with_snapshot_length() {
    for (snap, file_snaplen) in [("100", 100), ("10", 21)] {
        let ns = Netns::new();
        let dir = TempDir::new();
        let out = dir.path("anys.pcap");
        let cap = Capture::start(&ns, "rxtxcpu", &["-s", snap, "-l0", "-w", &out]);
        big_udp_on_lo(&ns, 0, MAX_UDP_PAYLOAD);
        cap.signal(Signal::SIGINT);
        cap.wait().assert_report(&[(0, 2)]);
        let (header, packets) = read_pcap(&dir.path("anys-0.pcap"));
        assert_eq!(header.datalink, DataLink::LINUX_SLL2);
        assert_eq!(header.snaplen, file_snaplen, "-s {snap}");
        assert_eq!(packets.len(), 2);
        for p in &packets {
            assert_eq!(p.orig_len, 20 + 65_535, "-s {snap}: {p:?}");
            if file_snaplen == 100 {
                assert_eq!(p.data.len(), 100, "-s {snap}: {p:?}");
                assert_eq!(p.data[20], 0x45, "-s {snap}: {p:?}");
            } else {
                // tcpdump has 21 bytes; the kernel may have copied too
                // little for the first payload byte (see the report).
                assert!((20..=21).contains(&p.data.len()), "-s {snap}: {p:?}");
            }
            assert_eq!(sll2(p).ifindex, 1);
        }
    }
}

// ---------------------------------------------------------------------------
// Nothing lost

/// A flood on every cpu, ended by `sig`: each file holds exactly the
/// packets its report line counts.
fn flood_ended_by(sig: Signal) {
    let ns = Netns::new();
    let dir = TempDir::new();
    let out = dir.path("flood.pcap");
    let cap = Capture::start(&ns, "rxtxcpu", &["-w", &out, "lo"]);
    let start = now();
    let floods = [Flood::start(&ns, 0, LO), Flood::start(&ns, 1, LO)];
    for fl in &floods {
        fl.wait_for_more(20_000);
    }
    cap.signal(sig);
    let f = cap.wait();
    drop(floods);
    let end = now();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let files = assert_files_in_window(&f, &out, start, end);
    assert_eq!(files.len(), 2);
    for (cpu, packets) in files {
        assert!(packets.len() > 1000, "cpu{cpu}: {}\n{f}", packets.len());
    }
}

#[test]
fn flood_on_every_cpu_then_sigint_every_packet_is_in_its_file() {
    flood_ended_by(Signal::SIGINT);
}

#[test]
fn flood_on_every_cpu_then_sigterm_every_packet_is_in_its_file() {
    flood_ended_by(Signal::SIGTERM);
}

#[test]
fn flood_on_every_cpu_then_sighup_every_packet_is_in_its_file() {
    flood_ended_by(Signal::SIGHUP);
}

#[test]
fn count_under_flood_every_packet_is_in_its_file() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let out = dir.path("count.pcap");
    let cap = Capture::start(&ns, "rxtxcpu", &["-c", "5000", "-w", &out, "lo"]);
    let start = now();
    let floods = [Flood::start(&ns, 0, LO), Flood::start(&ns, 1, LO)];
    let f = cap.wait();
    drop(floods);
    let end = now();
    assert_eq!(f.status.code(), Some(0), "{f}");
    assert_eq!(f.report().total, 5000, "{f}");
    assert_files_in_window(&f, &out, start, end);
}

// ---------------------------------------------------------------------------
// Interoperability: a pipe into tcpdump

/// `rxtxcpu -U -w - | tcpdump -c 3 -r -`: tcpdump shows three packets and
/// exits, and rxtxcpu then stops by itself, quietly, with its report.
#[test]
fn stdout_piped_into_tcpdump_c_3() {
    let ns = Netns::new();
    let mut cap = Capture::spawn_with_stdout(&ns, &["-U", "-l0", "-w", "-", "lo"], Stdio::piped());
    let stdout = cap.take_stdout();
    let mut tcpdump = Command::new("tcpdump")
        .args(["-nn", "-c", "3", "-r", "-"])
        .stdin(Stdio::from(stdout))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tcpdump");
    cap.wait_ready();
    ping(&ns, 0, LO, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = tcpdump.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "tcpdump -c 3 did not end");
        thread::sleep(Duration::from_millis(10));
    };
    let mut text = String::new();
    tcpdump
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(status.success(), "tcpdump: {status}\n{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines.iter().all(|l| l.contains("ICMP echo")), "{text}");
    // No more traffic: rxtxcpu notices the closed pipe by itself.
    let f = cap.wait_within(Duration::from_secs(5));
    assert_quiet_end(&f);
    // 4 packets, or 3 if the last came after tcpdump had gone.
    assert!(
        f.stderr.contains("4 packets captured on cpu0.\n")
            || f.stderr.contains("3 packets captured on cpu0.\n"),
        "{f}"
    );
}

// ---------------------------------------------------------------------------
// Faults

/// A file that cannot be created ends the run before any capture, with
/// exit 1, `<name>: <file>: <reason>`, and no file left behind.
#[test]
fn missing_directory() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let out = dir.path("missing/out.pcap");
    let f = run_in(&ns, "rxtxcpu", &["-w", &out, "lo"]);
    assert_eq!(f.status.code(), Some(1), "{f}");
    assert_eq!(f.stdout, "", "{f}");
    let file = dir.path("missing/out-0.pcap");
    assert!(
        f.stderr
            .starts_with(&format!("rxtxcpu: {file}: No such file or directory")),
        "{f}"
    );
    assert_eq!(f.stderr.lines().count(), 1, "{f}");
    assert_eq!(dir.files(), Vec::<String>::new());
}

/// The second file fails (its name is taken by a directory): the first,
/// already created, is removed again.
#[test]
fn second_file_cannot_be_created() {
    let ns = Netns::new();
    let dir = TempDir::new();
    std::fs::create_dir(dir.0.join("out-1.pcap")).unwrap();
    let f = run_in(&ns, "rxtxcpu", &["-w", &dir.path("out.pcap"), "lo"]);
    assert_eq!(f.status.code(), Some(1), "{f}");
    assert_eq!(f.stdout, "", "{f}");
    let file = dir.path("out-1.pcap");
    assert!(
        f.stderr
            .starts_with(&format!("rxtxcpu: {file}: Is a directory")),
        "{f}"
    );
    assert_eq!(f.stderr.lines().count(), 1, "{f}");
    assert_eq!(dir.files(), Vec::<String>::new(), "stray files");
}

/// No permission to create the file (root without CAP_DAC_OVERRIDE in a
/// read-only directory): the message names the file and the reason, and
/// does not send the user hunting for capture privileges they have.
#[test]
fn no_permission_to_create_the_file() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let ro = dir.0.join("ro");
    std::fs::create_dir(&ro).unwrap();
    sh("chmod", &["0555", ro.to_str().unwrap()]);
    let out = dir.path("ro/out.pcap");
    #[rustfmt::skip]
    let run = Command::new("ip")
        .args(["netns", "exec", &ns.name, "setpriv",
               "--bounding-set=-dac_override,-dac_read_search", BIN, "-w", &out, "lo"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(run.stdout.is_empty(), "{stderr}");
    let file = dir.path("ro/out-0.pcap");
    assert!(
        stderr.starts_with(&format!("rxtxcpu: {file}: Permission denied")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("CAP_NET_RAW"),
        "a file error blamed on capture privileges: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(dir.files(), Vec::<String>::new(), "stray files");
}

/// The file system fills up mid-capture (-U, so cpu1's packets are on disk
/// before the flood on cpu0 fills it): the capture stops by itself, names
/// the file and the reason, prints the report and exits 1; cpu1's file is
/// complete, and cpu0's is still valid pcap, cut at a whole record. The
/// report counts every packet captured; a line says how many of cpu0's
/// are not in its file.
#[test]
fn file_system_fills_up_mid_capture() {
    let ns = Netns::new();
    let fs = Tmpfs::mount("64k");
    let out = fs.dir.path("out.pcap");
    let cap = Capture::start(&ns, "rxtxcpu", &["-U", "-w", &out, "lo"]);
    udp_send(&ns, 1, LO, LO, 2);
    let file1 = fs.dir.path("out-1.pcap");
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_pcap(&file1).1.len() < 4 {
        assert!(Instant::now() < deadline, "{}", cap.stderr_now());
        thread::sleep(Duration::from_millis(10));
    }
    let flood = Flood::start(&ns, 0, LO);
    let f = cap.wait();
    flood.stop();
    assert_eq!(f.status.code(), Some(1), "{f}");
    let file0 = fs.dir.path("out-0.pcap");
    let msg = format!("rxtxcpu: error writing {file0}: No space left on device\n");
    assert!(f.stderr.contains(&msg), "no {msg:?}\n{f}");
    assert!(!f.stderr.contains("panic"), "{f}");
    let report = f.report();
    assert_eq!(report.per_cpu[&1], 4, "{f}");
    assert_eq!(read_pcap(&file1).1.len(), 4, "{file1}");
    let n0 = read_pcap(&file0).1.len() as u64;
    assert!(n0 > 100, "{file0}: {n0} records\n{f}");
    let missing = f.not_in_file();
    assert!(!missing.contains_key(&Place::Cpu(1)), "{f}");
    let left_out = missing.get(&Place::Cpu(0)).copied().unwrap_or(0);
    assert!(left_out > 0, "no line for the packets not in {file0}\n{f}");
    assert_eq!(
        n0 + left_out,
        report.per_cpu[&0],
        "{file0}: the file and the packets not in it against the report\n{f}"
    );
    assert_eq!(fs.dir.files(), ["out-0.pcap", "out-1.pcap"]);
}

/// The same without -U, a flood on every cpu: whichever files could not be
/// written are named, every file is valid pcap, and each holds exactly
/// what its report line counts less what its line says is not in it.
#[test]
fn file_system_fills_up_buffered() {
    let ns = Netns::new();
    let fs = Tmpfs::mount("64k");
    let out = fs.dir.path("out.pcap");
    let cap = Capture::start(&ns, "rxtxcpu", &["-w", &out, "lo"]);
    let floods = [Flood::start(&ns, 0, LO), Flood::start(&ns, 1, LO)];
    let f = cap.wait();
    drop(floods);
    assert_eq!(f.status.code(), Some(1), "{f}");
    assert!(!f.stderr.contains("panic"), "{f}");
    let report = f.report();
    let missing = f.not_in_file();
    let mut failed = 0;
    for (&cpu, &n) in &report.per_cpu {
        let file = fs.dir.path(&format!("out-{cpu}.pcap"));
        let records = read_pcap(&file).1.len() as u64;
        let msg = format!("rxtxcpu: error writing {file}: No space left on device\n");
        let left_out = missing.get(&Place::Cpu(cpu)).copied().unwrap_or(0);
        if f.stderr.contains(&msg) {
            failed += 1;
            assert!(left_out > 0, "{file}: no line for what is not in it\n{f}");
        } else {
            assert_eq!(left_out, 0, "{file} did not fail\n{f}");
        }
        assert_eq!(
            records + left_out,
            n,
            "{file}: the file and the packets not in it against the report\n{f}"
        );
    }
    assert!(failed >= 1, "no file named\n{f}");
}

/// The reader of `-w -` closes the pipe without reading: the capture stops
/// promptly by itself (no packet needed to notice), exits 0, and says
/// nothing but its report.
#[test]
fn stdout_reader_goes_away_while_idle() {
    let ns = Netns::new();
    let mut cap = Capture::spawn_with_stdout(&ns, &["-l0", "-w", "-", "lo"], Stdio::piped());
    cap.wait_ready();
    drop(cap.take_stdout());
    assert_quiet_end(&cap.wait_within(Duration::from_secs(3)));
}

/// The same during a flood, with a full pipe buffer to write out.
#[test]
fn stdout_reader_goes_away_during_a_flood() {
    let ns = Netns::new();
    let mut cap = Capture::spawn_with_stdout(&ns, &["-l0", "-w", "-", "lo"], Stdio::piped());
    cap.wait_ready();
    let flood = Flood::start(&ns, 0, LO);
    flood.wait_for_more(20_000);
    drop(cap.take_stdout());
    let f = cap.wait_within(Duration::from_secs(5));
    drop(flood);
    assert_quiet_end(&f);
}

/// The reader is gone before the capture starts (`rxtxcpu -U -w - | true`):
/// the same quiet end, not an error; also when packets are there to be
/// written before the closed pipe is noticed.
#[test]
fn stdout_reader_gone_before_start() {
    for flooding in [false, true] {
        let ns = Netns::new();
        let flood = flooding.then(|| Flood::start(&ns, 0, LO));
        let (r, w) = nix::unistd::pipe().unwrap();
        drop(r);
        let cap = Capture::spawn_with_stdout(&ns, &["-U", "-l0", "-w", "-", "lo"], Stdio::from(w));
        let f = cap.wait_within(Duration::from_secs(5));
        drop(flood);
        assert_quiet_end(&f);
    }
}
