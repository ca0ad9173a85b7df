//! One copy from the ring to the file: stream files are written from where
//! the packets lie in the ring (writev over the ring block, headers from a
//! side buffer), and must be byte for byte what copying them writes. Debug
//! builds (the binary these tests run) write a second set of files, each
//! stream file's name with `.copy` after it, when RXTXCPU_TEST_COPY=1 is
//! set: the same packets, copied. So every test compares the same capture
//! written both ways. (Two captures side by side would not do: each packet
//! socket takes its own timestamp of a packet.) Release builds have no such
//! hook, and these tests are not built there.
#![cfg(debug_assertions)]

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Starts `name -v args` in `ns` with the copying hook on, `{out}` in
/// `args` standing for `dir`'s `out.pcap`.
fn start_both(ns: &Netns, name: &str, args: &[&str], dir: &TempDir) -> Capture {
    let out = dir.path("out.pcap");
    let args: Vec<String> = args.iter().map(|a| a.replace("{out}", &out)).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Capture::start_via(ns, &["env", "RXTXCPU_TEST_COPY=1"], &program(name), &args)
}

/// Starts one capture per `args` (see `start_both`), each with a directory
/// of its own.
fn start_each(ns: &Netns, name: &str, runs: &[&[&str]]) -> Vec<(Capture, TempDir)> {
    runs.iter()
        .map(|args| {
            let dir = TempDir::new();
            (start_both(ns, name, args, &dir), dir)
        })
        .collect()
}

/// The copy's name of a file a stream wrote: `.copy` after the stream's
/// name, before a rotation number (`out-0.pcap2` -> `out-0.pcap.copy2`).
fn copy_name(name: &str) -> String {
    let at = name.len() - name.bytes().rev().take_while(u8::is_ascii_digit).count();
    format!("{}.copy{}", &name[..at], &name[at..])
}

/// Stops the capture (SIGINT); it must end well, and each file it wrote
/// must be byte for byte its copy, a valid pcap file, and together they
/// hold what the report counts. Returns the records per file.
fn stop_and_compare(cap: Capture, dir: &TempDir) -> Vec<(String, usize)> {
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    assert!(f.status.success(), "{f}");
    let all = files_under(&dir.0);
    let files: Vec<&String> = all.iter().filter(|n| !n.contains(".copy")).collect();
    assert!(!files.is_empty(), "no files:\n{f}");
    assert_eq!(
        files.len() * 2,
        all.len(),
        "not one copy each: {all:?}\n{f}"
    );
    let mut records = Vec::new();
    for name in files {
        let ring = std::fs::read(dir.path(name)).unwrap();
        let copy = std::fs::read(dir.path(&copy_name(name))).unwrap();
        if let Some(at) = ring.iter().zip(&copy).position(|(a, b)| a != b) {
            panic!(
                "{name} differs from its copy at byte {at} ({} and {} bytes)\n{f}",
                ring.len(),
                copy.len()
            );
        }
        assert_eq!(
            ring.len(),
            copy.len(),
            "{name}: one is a prefix of the other\n{f}"
        );
        let (_, packets) = read_pcap(&dir.path(name));
        records.push((name.clone(), packets.len()));
    }
    let total: usize = records.iter().map(|(_, n)| n).sum();
    let reported: u64 = f.report().per_cpu.values().sum();
    assert_eq!(total as u64, reported, "{records:?}\n{f}");
    records
}

/// An Ethernet frame of `len` bytes to broadcast, of the local
/// experimental ethertype, with an 802.1Q tag (VLAN 5, priority 1) if
/// `tagged`, its payload numbered by `seq`.
fn frame(len: usize, tagged: bool, seq: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    if tagged {
        f.extend_from_slice(&[0x81, 0x00, 0x20, 0x05]);
    }
    f.extend_from_slice(&[0x88, 0xb5]);
    let payload = len.max(f.len() + 1) - f.len();
    f.extend((0..payload).map(|i| (seq * 31 + i) as u8));
    f
}

/// Frames of sizes around and well past the copy crossover, tagged and
/// not, `rounds` times over.
fn mixed_frames(rounds: usize) -> Vec<Vec<u8>> {
    let sizes = [60, 64, 200, 600, 1199, 1200, 1201, 1216, 1400, 1514];
    let mut frames = Vec::new();
    for round in 0..rounds {
        for (i, &len) in sizes.iter().enumerate() {
            for tagged in [false, true] {
                frames.push(frame(len, tagged, round * 100 + i));
            }
        }
    }
    frames
}

/// VLAN-tagged and untagged frames on a veth, received on both cpus: the
/// kernel takes each tag off into the packet's metadata and the file puts
/// it back (rebuilt bytes between ring pieces), at every snapshot length,
/// with -U and without.
#[test]
fn vlan_frames_on_veth_at_every_snap_length() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let extras: [&[&str]; 6] = [
        &[],
        &["-s", "100"],
        &["-s", "1210"],
        &["-s", "1000"],
        &["-U"],
        &["-U", "-s", "1205"],
    ];
    let argvs: Vec<Vec<&str>> = extras
        .iter()
        .map(|extra| [&["-w", "{out}"], *extra, &[vb.ifname.as_str()]].concat())
        .collect();
    let argvs: Vec<&[&str]> = argvs.iter().map(Vec::as_slice).collect();
    let runs = start_each(&b, "rxcpu", &argvs);
    for cpu in [0, 1] {
        send_frames(&a, cpu, &va.ifname, mixed_frames(10));
    }
    for (extra, (cap, dir)) in extras.iter().zip(runs) {
        let files = stop_and_compare(cap, &dir);
        assert_eq!(files.len(), 2, "{extra:?}: {files:?}");
        assert!(files.iter().all(|(_, n)| *n == 200), "{extra:?}: {files:?}");
        // The tags are back, as on the wire.
        if extra.is_empty() || *extra == ["-U"] {
            let (_, packets) = read_pcap(&dir.path("out-1.pcap"));
            assert_eq!(packets[1].data, frame(60, true, 0), "{extra:?}");
            assert_eq!(packets[17].data, frame(1400, true, 8), "{extra:?}");
        }
    }
}

/// UDP datagrams of `sizes` bytes of payload on lo, sent and received from
/// a thread on `cpu` (2 packets each on `cpu`); the payload of the i-th is
/// (i + j) as u8 for each j.
fn udp_on_lo(ns: &Netns, cpu: usize, sizes: &[usize]) {
    let sizes = sizes.to_vec();
    in_netns(ns, move || {
        pin_to_cpu(cpu);
        let rx = UdpSocket::bind((LO, 0)).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let tx = UdpSocket::bind((LO, 0)).unwrap();
        let mut buf = vec![0u8; 65_536];
        for (i, &len) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
            tx.send_to(&payload, rx.local_addr().unwrap()).unwrap();
            assert_eq!(rx.recv(&mut buf).unwrap(), len);
        }
    })
}

/// On lo: from one byte of payload to a whole 64 KiB datagram (one packet
/// on lo), around the crossover and far past it.
#[test]
fn lo_datagrams_of_every_size() {
    let ns = Netns::new();
    let sizes: Vec<usize> = [1, 100, 1157, 1158, 1159, 1300, 1400, 4000, 9000, 65_507]
        .iter()
        .cycle()
        .take(60)
        .copied()
        .collect();
    #[rustfmt::skip]
    let runs = start_each(&ns, "rxtxcpu", &[&["-w", "{out}", "lo"],
                                            &["-U", "-s", "2000", "-w", "{out}", "lo"]]);
    udp_on_lo(&ns, 0, &sizes);
    udp_on_lo(&ns, 1, &sizes);
    for (cap, dir) in runs {
        let files = stop_and_compare(cap, &dir);
        assert_eq!(
            files,
            [("out-0.pcap".into(), 120), ("out-1.pcap".into(), 120)]
        );
    }
}

/// A tun device `name` in `ns` (IFF_TUN | IFF_NO_PI): what is written to
/// the returned descriptor, it receives.
fn tun_device(ns: &Netns, name: &str) -> OwnedFd {
    let name = name.to_string();
    in_netns(ns, move || common::tun_fd(&name, false))
}

/// A tun device records bare IP (link type RAW): the records are the IP
/// packets from their first byte.
#[test]
fn tun_packets_of_every_size() {
    let ns = Netns::new();
    let tun = tun_device(&ns, "tun0");
    ns.ip(&["addr", "add", "10.7.0.1/24", "dev", "tun0"]);
    ns.ip(&["link", "set", "tun0", "up"]);
    let dir = TempDir::new();
    let cap = start_both(&ns, "rxtxcpu", &["-w", "{out}", "tun0"], &dir);
    let (src, dst) = (Ipv4Addr::new(10, 7, 0, 2), Ipv4Addr::new(10, 7, 0, 9));
    for cpu in [0, 1] {
        let fd = tun.try_clone().unwrap();
        thread::spawn(move || {
            pin_to_cpu(cpu);
            let sizes = [0, 300, 1171, 1172, 1173, 600, 1200, 1472];
            for (i, len) in sizes.iter().cycle().take(40).enumerate() {
                // To a host that is not there: with forwarding off the
                // stack drops it, after the tap.
                let payload: Vec<u8> = (0..*len).map(|j| (i * 3 + j) as u8).collect();
                let p = ipv4_udp(src, 4000, dst, 9, &payload);
                // SAFETY: p is live for its length.
                let n = unsafe { libc::write(fd.as_raw_fd(), p.as_ptr().cast(), p.len()) };
                assert_eq!(n, p.len() as isize, "{}", std::io::Error::last_os_error());
            }
        })
        .join()
        .unwrap();
    }
    let files = stop_and_compare(cap, &dir);
    assert_eq!(
        files,
        [("out-0.pcap".into(), 40), ("out-1.pcap".into(), 40)]
    );
}

/// The all-interfaces capture records cooked LINUX_SLL2 headers, rebuilt
/// for each packet in front of its network header: here on lo and a veth,
/// at the full and at a cut snapshot length.
#[test]
fn all_interfaces_capture_with_cooked_headers() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let runs = start_each(
        &a,
        "rxtxcpu",
        &[&["-w", "{out}"], &["-s", "1250", "-w", "{out}"]],
    );
    udp_on_lo(&a, 0, &[10, 1171, 1400, 30_000]);
    let sink = UdpSink::bind(&b, vb.addr);
    in_netns(&a, move || {
        pin_to_cpu(1);
        let tx = UdpSocket::bind((va.addr, 0)).unwrap();
        for len in [10, 1171, 1172, 1000, 1472] {
            tx.send_to(&vec![0x5a; len], (vb.addr, UDP_PORT)).unwrap();
        }
    });
    sink.expect(5);
    for (cap, dir) in runs {
        let files = stop_and_compare(cap, &dir);
        assert_eq!(files, [("out-0.pcap".into(), 8), ("out-1.pcap".into(), 5)]);
    }
}

/// -C rotation in the middle of ring blocks: each file ends where the
/// copy's ends.
#[test]
fn rotation_by_size() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let dir = TempDir::new();
    let cap = start_both(&b, "rxcpu", &["-C", "1", "-w", "{out}", &vb.ifname], &dir);
    // About 3 MB per cpu: three files each.
    for cpu in [0, 1] {
        let frames = (0..3000).map(|i| frame([1400, 60, 1514, 900][i % 4], i % 3 == 0, i));
        send_frames(&a, cpu, &va.ifname, frames.collect());
    }
    let files = stop_and_compare(cap, &dir);
    assert!(files.len() >= 6, "{files:?}");
    assert!(
        files.iter().any(|(name, _)| name == "out-1.pcap2"),
        "{files:?}"
    );
}

/// The packets' bytes after their Ethernet, IPv4 and UDP headers.
fn payloads(packets: &[Packet]) -> Vec<&[u8]> {
    packets.iter().map(|p| &p.data[42..]).collect()
}

/// `-w -`: the pcap stream on stdout, written from the ring (stdout has
/// no copy to compare with: the packets are checked instead).
#[test]
fn stdout_stream() {
    let ns = Netns::new();
    let mut cap = Capture::spawn_with_stdout(&ns, &["-l1", "-w", "-", "lo"], Stdio::piped());
    let mut stdout = cap.take_stdout();
    let reader = thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).unwrap();
        bytes
    });
    cap.wait_ready();
    let sizes = [1, 700, 1400, 65_507, 3, 1158];
    udp_on_lo(&ns, 1, &sizes);
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    assert!(f.status.success(), "{f}");
    let dir = TempDir::new();
    let path = dir.path("stdout.pcap");
    std::fs::write(&path, reader.join().unwrap()).unwrap();
    let (_, packets) = read_pcap(&path);
    let want: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .flat_map(|(i, &len)| {
            let p: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
            [p.clone(), p]
        })
        .collect();
    assert_eq!(payloads(&packets), want, "{f}");
}

/// A full disk with packets written from the ring: the file keeps the
/// whole records that fitted, exactly the frames sent first, and the
/// report says how many captured packets are not in it.
#[test]
fn disk_full_cuts_at_a_whole_record() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let disk = Tmpfs::mount("256k");
    let out = disk.dir.path("full.pcap");
    let cap = Capture::start(&b, "rxcpu", &["-l0", "-w", &out, &vb.ifname]);
    let frames: Vec<Vec<u8>> = (0..400)
        .map(|i| frame([1400, 60, 1514][i % 3], false, i))
        .collect();
    send_frames(&a, 0, &va.ifname, frames.clone());
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(1), "{f}");
    assert!(f.stderr.contains("No space left on device"), "{f}");
    let path = cpu_file(&out, 0);
    let (_, packets) = read_pcap(&path);
    // The report counts every packet captured; a line says how many of
    // them are not in the file.
    let left_out = f.not_in_file()[&Place::Cpu(0)];
    assert_eq!(
        f.report().per_cpu[&0],
        packets.len() as u64 + left_out,
        "{f}"
    );
    assert!(
        packets.len() > 100 && packets.len() < 400,
        "{} records",
        packets.len()
    );
    assert!(
        packets.iter().zip(&frames).all(|(p, sent)| p.data == *sent),
        "not the frames sent"
    );
    // Nothing after the last whole record.
    let len: usize = packets.iter().map(|p| 16 + p.data.len()).sum();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 24 + len as u64);
}

/// That the two ways differ where they should (so the tests above compare
/// two different paths): from the ring, a large packet is written with its
/// ring block; copied, it waits in the buffer until the end.
#[test]
fn large_packets_go_out_with_their_block() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let cap = start_both(&ns, "rxtxcpu", &["-l0", "-w", "{out}", "lo"], &dir);
    udp_on_lo(&ns, 0, &[1400]);
    let (file, copy) = (dir.path("out-0.pcap"), dir.path("out-0.pcap.copy"));
    let len = |path: &str| std::fs::metadata(path).unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while len(&file) == 24 {
        assert!(
            Instant::now() < deadline,
            "the block was not written:\n{}",
            cap.stderr_now()
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(len(&file), 24 + 2 * (16 + 14 + 28 + 1400));
    assert_eq!(
        len(&copy),
        24,
        "the copy was written before its buffer was full"
    );
    stop_and_compare(cap, &dir);
}
