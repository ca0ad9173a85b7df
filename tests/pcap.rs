//! Pcap output (-w): per-cpu file names, contents, stdout stream, -U, and
//! the snapshot length / timestamp options. Each test has its own namespace.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapHeader, PcapParser};
use pcap_file::{DataLink, TsResolution};

use common::*;

const LO: std::net::Ipv4Addr = LOCALHOST;

/// A fresh directory under cargo's target tmpdir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pcap-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }

    /// File names in the directory (recursively, relative), sorted.
    fn files(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else {
                    let rel = path.strip_prefix(base).unwrap();
                    out.push(rel.to_str().unwrap().to_owned());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.0, &self.0, &mut out);
        out.sort();
        out
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A packet of a pcap stream.
#[derive(Debug)]
struct Packet {
    timestamp: Duration,
    orig_len: u32,
    data: Vec<u8>,
}

/// Header and the complete packets of a pcap stream; `complete` demands that
/// nothing follows the last packet (else a partial tail is ignored). Raw
/// packets are checked here: pcap-file 2.0 wrongly rejects packets longer
/// than the snapshot length (orig_len > snaplen).
fn parse_pcap(bytes: &[u8], complete: bool) -> Result<(PcapHeader, Vec<Packet>), String> {
    let (mut rest, parser) = PcapParser::new(bytes).map_err(|e| format!("pcap header: {e}"))?;
    let header = parser.header();
    let frac_unit = match header.ts_resolution {
        TsResolution::MicroSecond => 1000,
        TsResolution::NanoSecond => 1,
    };
    let mut packets = Vec::new();
    while !rest.is_empty() {
        let raw = match parser.next_raw_packet(rest) {
            Ok((r, raw)) => {
                rest = r;
                raw
            }
            Err(e) if complete => return Err(format!("after {} packets: {e}", packets.len())),
            Err(_) => break,
        };
        let bad = |what: &str| format!("packet {}: {what}: {raw:?}", packets.len());
        if raw.incl_len > header.snaplen || raw.incl_len > raw.orig_len {
            return Err(bad("incl_len above snaplen or orig_len"));
        }
        if u64::from(raw.ts_frac) * frac_unit >= 1_000_000_000 {
            return Err(bad("timestamp fraction out of range"));
        }
        packets.push(Packet {
            timestamp: Duration::new(raw.ts_sec.into(), raw.ts_frac * frac_unit as u32),
            orig_len: raw.orig_len,
            data: raw.data.into_owned(),
        });
    }
    Ok((header, packets))
}

fn read_pcap(path: &str) -> (PcapHeader, Vec<Packet>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    parse_pcap(&bytes, true).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Each packet is one of our UDP datagrams on `lo`, whole, with a real
/// (sub-second) timestamp between `start` and `end`.
fn assert_udp_packets(what: &str, packets: &[Packet], start: Duration, end: Duration) {
    for (i, p) in packets.iter().enumerate() {
        let ctx = format!("{what} packet {i}: {p:?}");
        assert_eq!(p.orig_len as usize, p.data.len(), "{ctx}");
        assert_eq!(p.data.len(), 14 + 20 + 8 + PAYLOAD.len(), "{ctx}");
        assert_eq!(
            &p.data[12..14],
            &[0x08, 0x00],
            "not IPv4 in Ethernet: {ctx}"
        );
        assert!(p.data.ends_with(PAYLOAD), "{ctx}");
        let earliest = start.saturating_sub(Duration::from_micros(1));
        assert!(
            earliest <= p.timestamp && p.timestamp <= end,
            "timestamp {:?} not within {earliest:?}..{end:?}: {ctx}",
            p.timestamp
        );
    }
}

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
    for (cpu, n) in [(0, 6), (1, 4)] {
        let path = dir.path(&format!("out-{cpu}.pcap"));
        let (header, packets) = read_pcap(&path);
        assert_eq!(header.datalink, DataLink::ETHERNET, "{path}");
        assert_eq!(header.ts_resolution, TsResolution::MicroSecond, "{path}");
        assert_eq!(packets.len(), n, "{path}\n{f}");
        assert_udp_packets(&path, &packets, start, end);
    }
}

#[test]
fn file_names() {
    let ns = Netns::new();
    let dir = TempDir::new();
    std::fs::create_dir(dir.0.join("x.y")).unwrap();
    for (args, files) in [
        (&["-w", "out"][..], &["out-0", "out-1"][..]),
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
    let (header, packets) = parse_pcap(&f.stdout_bytes, true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(header.datalink, DataLink::ETHERNET);
    assert_eq!(packets.len(), 4, "{f}");
    assert_udp_packets("stdout", &packets, start, end);
}

#[test]
fn packet_buffered_file_shows_packets_while_capturing() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let out = dir.path("live.pcap");
    let mut cap = Capture::start(&ns, "rxtxcpu", &["-U", "-l0", "-w", &out, "lo"]);
    udp_send(&ns, 0, LO, LO, 1);
    let file = dir.path("live-0.pcap");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let bytes = std::fs::read(&file).unwrap_or_default();
        if parse_pcap(&bytes, false).is_ok_and(|(_, p)| p.len() == 2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{file} has not got both packets while capturing; stderr:\n{}",
            cap.stderr_now()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(cap.is_running(), "{}", cap.stderr_now());
    cap.signal(Signal::SIGINT);
    cap.wait().assert_report(&[(0, 2)]);
    assert_eq!(read_pcap(&file).1.len(), 2);
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

#[test]
fn nanosecond_timestamps() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let out = dir.path("ns.pcap");
    #[rustfmt::skip]
    let cap = Capture::start(&ns, "rxtxcpu",
                             &["--time-stamp-precision=nano", "-l1", "-w", &out, "lo"]);
    let start = now();
    udp_send(&ns, 1, LO, LO, 2);
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    let end = now();
    f.assert_report(&[(1, 4)]);
    let (header, packets) = read_pcap(&dir.path("ns-1.pcap"));
    assert_eq!(header.ts_resolution, TsResolution::NanoSecond);
    assert_eq!(packets.len(), 4);
    assert_udp_packets("ns-1.pcap", &packets, start, end);
}
