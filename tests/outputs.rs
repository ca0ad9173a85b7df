//! What `-w FILE` may touch and what the report says about it: a start
//! that fails never destroys a file that was there before it (per-stream
//! files, rotation's first names, the merged file, the XDP path); a FILE
//! that names a character device or FIFO is written as it is, never a
//! template (the null device takes every stream, any other device or FIFO
//! one); and after a failed write the report still counts every packet
//! captured and says, per stream, how many are not in the file. Each test
//! has its own namespace; device nodes are made on a tmpfs of its own.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::thread;

use common::*;

/// Fills the file system of `dir` to the last page with a file `filler`.
fn fill(dir: &TempDir) {
    let mut f = File::create(dir.path("filler")).unwrap();
    let page = [0u8; 4096];
    loop {
        match f.write(&page) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", dir.0.display()),
        }
    }
}

/// A tmpfs with the null device, /dev/full's device and a FIFO on it:
/// `null`, `full`, `fifo` (a tmpfs is mounted without nodev, so its device
/// nodes open; nothing under /dev is touched).
fn devices() -> Tmpfs {
    let fs = Tmpfs::mount("1m");
    sh("mknod", &[&fs.dir.path("null"), "c", "1", "3"]);
    sh("mknod", &[&fs.dir.path("full"), "c", "1", "7"]);
    sh("mkfifo", &[&fs.dir.path("fifo")]);
    fs
}

const NODES: [&str; 3] = ["fifo", "full", "null"];

// ---------------------------------------------------------------------------
// A failed start destroys nothing

/// The case: `x-0.pcap` holds something, `x-1.pcap` is a
/// directory. The start fails on the directory, and `x-0.pcap` is as it
/// was: nothing is truncated before every output is open.
#[test]
fn a_failed_start_keeps_a_file_that_was_there() {
    let ns = Netns::new();
    let dir = TempDir::new();
    std::fs::write(dir.path("x-0.pcap"), "precious\n").unwrap();
    std::fs::create_dir(dir.path("x-1.pcap")).unwrap();
    let f = run_in(&ns, "rxtxcpu", &["-w", &dir.path("x.pcap"), "lo"]);
    f.assert_runtime_error(&format!(
        "rxtxcpu: {}: Is a directory",
        dir.path("x-1.pcap")
    ));
    assert_eq!(
        std::fs::read_to_string(dir.path("x-0.pcap")).unwrap(),
        "precious\n"
    );
    assert_eq!(dir.files(), ["x-0.pcap"]);
}

/// A FILE that names a directory by its form (`dir/`, `.`): numbered, the
/// streams' files were `dir/-0`, `dir/-1`, names the user never typed. It
/// is refused as opening it is (and as `--pcapng -w dir/` and tcpdump
/// refuse it), and nothing is made.
#[test]
fn a_directory_is_no_file_template() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let slash = format!("{}/", dir.0.display());
    let f = run_in(&ns, "rxtxcpu", &["-w", &slash, "lo"]);
    f.assert_runtime_error(&format!("rxtxcpu: {slash}: Is a directory"));
    let dot = format!("{}/.", dir.0.display());
    let f = run_in(&ns, "rxcpu", &["-l0", "-w", &dot, "lo"]);
    f.assert_runtime_error(&format!("rxcpu: {dot}: Is a directory"));
    let f = run_in(&ns, "rxtxcpu", &["--pcapng", "-w", &slash, "lo"]);
    f.assert_runtime_error(&format!("rxtxcpu: {slash}: Is a directory"));
    assert!(dir.files().is_empty(), "{:?}", dir.files());
}

/// The same for the first names of a rotation (`-C 1 -W 2`: `x-0.pcap0`),
/// and the message names the file that failed, not the stream's template.
#[test]
fn a_failed_start_keeps_a_rotated_file_that_was_there() {
    let ns = Netns::new();
    let dir = TempDir::new();
    std::fs::write(dir.path("x-0.pcap0"), "precious\n").unwrap();
    std::fs::create_dir(dir.path("x-1.pcap0")).unwrap();
    #[rustfmt::skip]
    let f = run_in(&ns, "rxtxcpu", &["-C", "1", "-W", "2", "-w", &dir.path("x.pcap"), "lo"]);
    f.assert_runtime_error(&format!(
        "rxtxcpu: {}: Is a directory",
        dir.path("x-1.pcap0")
    ));
    assert_eq!(
        std::fs::read_to_string(dir.path("x-0.pcap0")).unwrap(),
        "precious\n"
    );
    assert_eq!(dir.files(), ["x-0.pcap0"]);
}

/// A full file system: `x-0.pcap` was there, `x-1.pcap` is new and cannot
/// take its header. The new file is started first, so the start fails
/// before the old one changed (it is not truncated, which would have made
/// room), and only the new one is removed.
#[test]
fn a_full_file_system_at_the_start_keeps_a_file_that_was_there() {
    let ns = Netns::new();
    let fs = Tmpfs::mount("64k");
    std::fs::write(fs.dir.path("x-0.pcap"), "precious\n").unwrap();
    fill(&fs.dir);
    let f = run_in(&ns, "rxtxcpu", &["-w", &fs.dir.path("x.pcap"), "lo"]);
    f.assert_runtime_error(&format!(
        "rxtxcpu: error writing {}: No space left on device",
        fs.dir.path("x-1.pcap")
    ));
    assert_eq!(
        std::fs::read_to_string(fs.dir.path("x-0.pcap")).unwrap(),
        "precious\n"
    );
    assert_eq!(fs.dir.files(), ["filler", "x-0.pcap"]);
}

/// The merged file: one that was there (1 MiB, sparse: truncating it frees
/// nothing) on a full file system. Its header cannot be written over it, so
/// the start fails, and it is as it was rather than emptied.
#[test]
fn a_failed_start_keeps_a_merged_file_that_was_there() {
    let ns = Netns::new();
    let fs = Tmpfs::mount("64k");
    let path = fs.dir.path("m.pcapng");
    File::create(&path).unwrap().set_len(1 << 20).unwrap();
    fill(&fs.dir);
    let f = run_in(&ns, "rxtxcpu", &["--pcapng", "-w", &path, "lo"]);
    f.assert_runtime_error(&format!(
        "rxtxcpu: error writing {path}: No space left on device"
    ));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
    assert_eq!(fs.dir.files(), ["filler", "m.pcapng"]);
}

/// The XDP path opens its outputs the same way.
#[test]
fn a_failed_xdp_start_keeps_a_file_that_was_there() {
    let (a, b) = (Netns::new(), Netns::new());
    let (_va, vb) = veth_pair(&a, &b);
    let dir = TempDir::new();
    std::fs::write(dir.path("x-0.pcap"), "precious\n").unwrap();
    std::fs::create_dir(dir.path("x-1.pcap")).unwrap();
    #[rustfmt::skip]
    let f = run_in(&b, "rxcpu", &["--xdp=generic", "-w", &dir.path("x.pcap"), &vb.ifname]);
    f.assert_runtime_error(&format!("rxcpu: {}: Is a directory", dir.path("x-1.pcap")));
    assert_eq!(
        std::fs::read_to_string(dir.path("x-0.pcap")).unwrap(),
        "precious\n"
    );
    assert_eq!(dir.files(), ["x-0.pcap"]);
}

/// A start that succeeds replaces a file that was there, as tcpdump does:
/// the file is the new capture, with nothing of the old one after it.
#[test]
fn a_file_that_was_there_is_replaced_when_the_capture_starts() {
    let ns = Netns::new();
    let dir = TempDir::new();
    std::fs::write(dir.path("x-0.pcap"), vec![b'x'; 100_000]).unwrap();
    let cap = Capture::start(&ns, "rxtxcpu", &["-l0", "-w", &dir.path("x.pcap"), "lo"]);
    udp_send(&ns, 0, LO, LO, 2);
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    f.assert_report(&[(0, 4)]);
    assert_files_match_report(&f, &dir.path("x.pcap"), |_, p| {
        assert!(p.data.ends_with(PAYLOAD), "{p:?}");
    });
}

// ---------------------------------------------------------------------------
// Devices and FIFOs

/// The null device takes every stream: no numbered files appear next to
/// it, every packet is counted (and written, as `tcpdump -w /dev/null`
/// writes), exit 0.
#[test]
fn the_null_device_takes_every_stream() {
    let ns = Netns::new();
    let fs = devices();
    let cap = Capture::start(&ns, "rxtxcpu", &["-w", &fs.dir.path("null"), "lo"]);
    udp_send(&ns, 0, LO, LO, 3);
    udp_send(&ns, 1, LO, LO, 2);
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    f.assert_report(&[(0, 6), (1, 4)]);
    assert_eq!(fs.dir.files(), NODES, "{f}");
}

/// The same with the real /dev/null: no regular file appears in /dev.
#[test]
fn dev_null_makes_no_files_in_dev() {
    let regular_files_in_dev = || -> Vec<String> {
        std::fs::read_dir("/dev")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let before = regular_files_in_dev();
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxcpu", &["-w", "/dev/null", "lo"]);
    udp_send(&ns, 1, LO, LO, 2);
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    f.assert_report(&[(0, 0), (1, 4)]);
    let new: Vec<String> = regular_files_in_dev()
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert!(new.is_empty(), "new files in /dev: {new:?}");
    assert!(!Path::new("/dev/null-0").exists() && !Path::new("/dev/null-1").exists());
}

/// Any other device, or a FIFO, takes one stream, as `-w -` does, and says
/// so in its words; neither can be rotated.
#[test]
fn a_device_or_fifo_takes_one_stream() {
    let fs = devices();
    let (full, fifo, null) = (
        fs.dir.path("full"),
        fs.dir.path("fifo"),
        fs.dir.path("null"),
    );
    check_usage_errors(&[
        (
            "rxtxcpu",
            &["-w", &full, "lo"][..],
            format!(
                "Write file '{full}' (a character device) is only permitted when capturing on a single cpu."
            ),
        ),
        (
            "rxtxcpu",
            &["-w", &fifo, "lo"],
            format!("Write file '{fifo}' (a FIFO) is only permitted when capturing on a single cpu."),
        ),
        (
            "rxtxcpu",
            &["-C", "1", "-w", &null, "lo"],
            format!(
                "-C [--file-size] needs a file to write: '{null}' (a character device) cannot be rotated."
            ),
        ),
        (
            "rxtxcpu",
            &["-l0", "-G", "5", "-w", &fifo, "lo"],
            format!("-G [--rotate-seconds] needs a file to write: '{fifo}' (a FIFO) cannot be rotated."),
        ),
    ]);
    assert_eq!(fs.dir.files(), NODES);
}

/// /dev/full cannot take even the file header: the capture does not
/// start, and says so as it says any failed write (the same words with -U
/// or without, to a device or to stdout), with nothing captured to count.
#[test]
fn a_full_device_fails_the_start() {
    let ns = Netns::new();
    let fs = devices();
    let full = fs.dir.path("full");
    for u in [&[][..], &["-U"]] {
        let mut args = u.to_vec();
        args.extend(["-l0", "-w", &full, "lo"]);
        let f = run_in(&ns, "rxtxcpu", &args);
        f.assert_runtime_error(&format!(
            "rxtxcpu: error writing {full}: No space left on device"
        ));
        let mut args = u.to_vec();
        args.extend(["-l0", "-w", "-", "lo"]);
        let stdout = File::options().write(true).open(&full).unwrap();
        let f = Capture::spawn_with_stdout(&ns, &args, Stdio::from(stdout)).wait();
        assert_eq!(f.status.code(), Some(1), "{args:?}\n{f}");
        assert_eq!(
            f.stderr.lines().last(),
            Some("rxtxcpu: error writing -: No space left on device"),
            "{args:?}\n{f}"
        );
        assert!(!f.stderr.contains("packets captured"), "{args:?}\n{f}");
    }
    assert_eq!(fs.dir.files(), NODES);
}

/// The report on a stdout that cannot take it (`> /dev/full`): status 1
/// and the line that says why (it was a silent 1), and so for the help
/// and `--rss-hash`'s answer (they said nothing and exited 0, as if
/// written). A reader that went away (`| head -1`) is an ordinary end, as
/// for `-w -`.
#[test]
fn a_stdout_that_cannot_take_the_report() {
    let ns = Netns::new();
    let fs = devices();
    let full = fs.dir.path("full");
    let open = || Stdio::from(File::options().write(true).open(&full).unwrap());
    let line = "rxtxcpu: error writing stdout: No space left on device";
    let f = Capture::spawn_with_stdout(&ns, &["--duration=0.3", "lo"], open()).wait();
    assert_eq!(f.status.code(), Some(1), "{f}");
    assert_eq!(f.stderr.lines().last(), Some(line), "{f}");
    for args in [
        &["--help"][..],
        &["--rss-hash=66.9.149.187,2794,161.142.100.80,1766"],
    ] {
        let out = std::process::Command::new(BIN)
            .args(args)
            .stdout(open())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), format!("{line}\n"));
    }
    let mut cap = Capture::spawn_with_stdout(&ns, &["--duration=0.3", "lo"], Stdio::piped());
    drop(cap.take_stdout());
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
    assert!(!f.stderr.contains("error writing"), "{f}");
    assert_eq!(fs.dir.files(), NODES);
}

/// Reads all of `fifo` in a thread (opening it waits for the writer).
fn read_fifo(fifo: &str) -> thread::JoinHandle<Vec<u8>> {
    let fifo = fifo.to_string();
    thread::spawn(move || {
        let mut bytes = Vec::new();
        File::open(&fifo).unwrap().read_to_end(&mut bytes).unwrap();
        bytes
    })
}

/// A FIFO takes the one stream's pcap, written as it is (the capture waits
/// for its reader, as tcpdump does); the reader gets every packet the
/// report counts, and the report stays on stdout.
#[test]
fn a_fifo_takes_the_stream() {
    let ns = Netns::new();
    let fs = devices();
    let fifo = fs.dir.path("fifo");
    let reader = read_fifo(&fifo);
    let cap = Capture::start(&ns, "rxtxcpu", &["-l1", "-w", &fifo, "lo"]);
    assert!(
        cap.stderr_now().contains(&format!(
            "rxtxcpu: {fifo} is a FIFO: waiting for its reader"
        )),
        "{}",
        cap.stderr_now()
    );
    udp_send(&ns, 1, LO, LO, 3);
    udp_send(&ns, 0, LO, LO, 1);
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    f.assert_report(&[(1, 6)]);
    let bytes = reader.join().unwrap();
    let mut packets = 0;
    scan_pcap(bytes.as_slice(), true, |p| {
        assert!(p.data.ends_with(PAYLOAD), "{p:?}");
        packets += 1;
    })
    .unwrap_or_else(|e| panic!("{e}\n{f}"));
    assert_eq!(packets, 6, "{f}");
    assert_eq!(fs.dir.files(), NODES);
}

/// A FIFO takes the merged pcapng stream of any number of streams.
#[test]
fn a_fifo_takes_the_merged_file() {
    let ns = Netns::new();
    let fs = devices();
    let fifo = fs.dir.path("fifo");
    let reader = read_fifo(&fifo);
    let cap = Capture::start(&ns, "rxtxcpu", &["--pcapng", "-w", &fifo, "lo"]);
    udp_send(&ns, 0, LO, LO, 2);
    udp_send(&ns, 1, LO, LO, 1);
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    f.assert_report(&[(0, 4), (1, 2)]);
    let file = read_pcapng(reader.join().unwrap().as_slice());
    assert_eq!(file.interfaces.len(), 2, "{f}");
    assert_eq!(file.packets.len(), 6, "{f}");
}

// ---------------------------------------------------------------------------
// A failed write: every packet counted, those not in the file said

/// The lines of a failed write, exactly: the error, then how many of the
/// stream's captured packets are not in the file. Returns that number.
fn assert_failed_write(f: &Finished, name: &str, file: &str) -> u64 {
    assert_eq!(f.status.code(), Some(1), "{f}");
    let left_out = f.not_in_file().get(&Place::Cpu(0)).copied().unwrap_or(0);
    let after = f.after_ready();
    let lines: Vec<&str> = after
        .lines()
        // The report, and the newline SIGINT puts before it.
        .filter(|l| !l.is_empty() && !l.contains(" packets captured "))
        .collect();
    assert_eq!(
        lines,
        [
            format!("{name}: error writing {file}: No space left on device"),
            format!("{name}: {}", not_in_file_line(left_out, "on cpu0")),
        ],
        "{f}"
    );
    assert!(left_out > 0, "{f}");
    left_out
}

/// The count: 1,000 datagrams (2,000 packets on lo) are captured,
/// buffered, and at the end do not all fit the file system. The report
/// says 2,000 (what was captured, not what the file holds), the line says
/// how many are not in the file, and the file is valid pcap holding
/// exactly the rest.
#[test]
fn a_full_file_system_does_not_shade_the_count() {
    let ns = Netns::new();
    let fs = Tmpfs::mount("64k");
    let out = fs.dir.path("out.pcap");
    let cap = Capture::start(&ns, "rxtxcpu", &["-l0", "-w", &out, "lo"]);
    udp_send(&ns, 0, LO, LO, 1000);
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    let file = fs.dir.path("out-0.pcap");
    let left_out = assert_failed_write(&f, "rxtxcpu", &file);
    assert_eq!(f.report().per_cpu[&0], 2000, "{f}");
    let records = read_pcap(&file).1.len() as u64;
    assert!(records > 100, "{records}\n{f}");
    assert_eq!(records + left_out, 2000, "{f}");
}

/// The same on stdout (`-w -` into a file on a full file system), with the
/// same words with -U and without: the report (on stderr) counts every
/// packet captured, the line says how many are not in the stream, and the
/// stream holds exactly the rest (stdout is never cut back, so its last
/// record may be partial).
#[test]
fn a_full_stdout_does_not_shade_the_count() {
    for u in [false, true] {
        let ns = Netns::new();
        let fs = Tmpfs::mount("64k");
        let path = fs.dir.path("stdout.pcap");
        let stdout = File::create(&path).unwrap();
        let mut args = vec!["-l0", "-w", "-", "lo"];
        if u {
            args.insert(0, "-U");
        }
        let mut cap = Capture::spawn_with_stdout(&ns, &args, Stdio::from(stdout));
        cap.wait_ready();
        udp_send(&ns, 0, LO, LO, 1000);
        cap.signal(Signal::SIGINT);
        let f = cap.wait();
        let left_out = assert_failed_write(&f, "rxtxcpu", "-");
        let captured = f.report_from_stderr().per_cpu[&0];
        if !u {
            // Buffered: everything was captured before the final write.
            assert_eq!(captured, 2000, "{f}");
        }
        let stream = scan_pcap(File::open(&path).unwrap(), false, |p| {
            assert!(p.data.ends_with(PAYLOAD), "{p:?}");
        })
        .unwrap_or_else(|e| panic!("{e}\n{f}"));
        assert!(stream.packets > 100, "-U {u}\n{f}");
        assert_eq!(stream.packets + left_out, captured, "-U {u}\n{f}");
    }
}

/// The XDP path counts the same way.
#[test]
fn a_full_file_system_does_not_shade_the_xdp_count() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let sink = UdpSink::bind(&b, vb.addr);
    let fs = Tmpfs::mount("64k");
    let out = fs.dir.path("out.pcap");
    #[rustfmt::skip]
    let cap = Capture::start(&b, "rxcpu", &["--xdp=generic", "-l0", "-w", &out, &vb.ifname]);
    // In bursts the veth's XDP ring always has room for.
    for _ in 0..20 {
        udp_send(&a, 0, va.addr, vb.addr, 50);
        sink.expect(50);
    }
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    let file = fs.dir.path("out-0.pcap");
    let left_out = assert_failed_write(&f, "rxcpu", &file);
    assert_eq!(f.report().per_cpu[&0], 1000, "{f}");
    let records = read_pcap(&file).1.len() as u64;
    assert_eq!(records + left_out, 1000, "{f}");
}
