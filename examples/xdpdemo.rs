//! xdpdemo: the XDP vantage point end to end, outside rxtxcpu's capture.
//!
//! Attaches rxtxcpu's XDP program to an interface (through a BPF link, so
//! it goes away with the process however it ends), counts received frames
//! per cpu where the driver delivered them and, with -w, writes them to one
//! pcap file per cpu from per-cpu perf buffers. Stops on SIGINT/SIGTERM,
//! after -c frames in total or after -t seconds; then prints the per-cpu
//! counts to stdout, and drops (records that did not fit in a cpu's
//! buffer) to stderr.
//!
//!     ip netns exec ns-rx target/debug/examples/xdpdemo vb --mode native \
//!         -w /tmp/x.pcap -s 96 -c 1000
//!
//! "xdpdemo: capturing on IF in MODE mode" goes to stderr once the window
//! is open (scripts wait for it). Exit status 0, 1 on a runtime error, 2 on
//! a usage error.

use std::ops::ControlFlow;
use std::os::fd::AsFd;
use std::process;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use rxtxcpu::cli::Precision;
use rxtxcpu::cpuset::{self, CpuSet};
use rxtxcpu::output::{stream_path, Format, LinkType, PcapOutput};
use rxtxcpu::perf::Wakeup;
use rxtxcpu::xdp::{Mode, Options, PerfReader, XdpCapture};

const USAGE: &str = "\
Usage: xdpdemo IFACE [--mode auto|native|generic] [-w FILE] [-s SNAPLEN]
               [-c COUNT] [-l CPULIST] [-B KIB] [-t SECONDS] [--queues N]
               [--every-record]
";

struct Config {
    ifname: String,
    mode: Mode,
    write: Option<String>,
    snaplen: u32,
    count: u64,
    cpus: Option<CpuSet>,
    ring_kib: usize,
    seconds: Option<u64>,
    queues: u32,
    every_record: bool,
}

fn usage_error(msg: &str) -> ! {
    eprintln!("xdpdemo: {msg}");
    eprint!("{USAGE}");
    process::exit(2);
}

fn parse() -> Config {
    let mut c = Config {
        ifname: String::new(),
        mode: Mode::Auto,
        write: None,
        snaplen: 262_144,
        count: 0,
        cpus: None,
        ring_kib: 8 * 1024,
        seconds: None,
        queues: 0,
        every_record: false,
    };
    let mut args = std::env::args().skip(1);
    let mut ifname = None;
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage_error(&format!("{name} needs a value")))
        };
        let num = |name: &str, v: String| -> u64 {
            v.parse()
                .unwrap_or_else(|_| usage_error(&format!("invalid {name} '{v}'")))
        };
        match a.as_str() {
            "--mode" => {
                let v = value("--mode");
                c.mode =
                    Mode::parse(&v).unwrap_or_else(|| usage_error(&format!("invalid mode '{v}'")));
            }
            "-w" => c.write = Some(value("-w")),
            "-s" => c.snaplen = num("snaplen", value("-s")) as u32,
            "-c" => c.count = num("count", value("-c")),
            "-l" => {
                let v = value("-l");
                c.cpus = Some(
                    CpuSet::parse_list(&v)
                        .unwrap_or_else(|| usage_error(&format!("invalid cpu list '{v}'"))),
                );
            }
            "-B" => c.ring_kib = num("buffer size", value("-B")) as usize,
            "-t" => c.seconds = Some(num("seconds", value("-t"))),
            "--queues" => c.queues = num("queues", value("--queues")) as u32,
            "--every-record" => c.every_record = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                process::exit(0);
            }
            s if s.starts_with('-') => usage_error(&format!("unrecognized option '{s}'")),
            s if ifname.is_none() => ifname = Some(s.to_string()),
            s => usage_error(&format!("unexpected argument '{s}'")),
        }
    }
    c.ifname = ifname.unwrap_or_else(|| usage_error("no interface given"));
    c
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("xdpdemo: {msg}");
    process::exit(1);
}

/// What one reader thread did.
struct Written {
    cpu: u32,
    records: u64,
    malformed: u64,
}

/// Reads one cpu's ring until `stop` is signalled, then drains it (the
/// main thread closed the window and quiesced before signalling).
fn read_cpu(
    mut reader: PerfReader,
    mut out: Option<PcapOutput>,
    hatype: u16,
    stop_fd: Arc<EventFd>,
    stopping: Arc<AtomicBool>,
) -> Written {
    let cpu = reader.cpu();
    let mut records = 0u64;
    let mut write = |reader: &mut PerfReader| {
        reader.read(|rec| {
            records += 1;
            if let Some(o) = &mut out {
                if let Err(e) = o.write(&rec.packet(hatype)) {
                    fail(format!("{}: {e}", o.path));
                }
            }
            ControlFlow::Continue(())
        });
    };
    loop {
        write(&mut reader);
        if stopping.load(Ordering::SeqCst) {
            while !reader.is_empty() {
                write(&mut reader);
            }
            break;
        }
        let mut fds = [
            PollFd::new(reader.fd(), PollFlags::POLLIN),
            PollFd::new(stop_fd.as_fd(), PollFlags::POLLIN),
        ];
        // The ring wakes us only past its watermark: look at a trickle
        // every 20 ms.
        let _ = poll(&mut fds, PollTimeout::from(20u16));
    }
    if let Some(o) = &mut out {
        if let Err(e) = o.flush() {
            fail(format!("{}: {e}", o.path));
        }
    }
    Written {
        cpu,
        records,
        malformed: reader.malformed(),
    }
}

fn main() {
    let c = parse();
    let ifindex = rxtxcpu::afpacket::ifindex(&c.ifname)
        .unwrap_or_else(|e| fail(format!("error setting ifname '{}': {e}", c.ifname)));
    let online = cpuset::online();
    let cpus = match &c.cpus {
        Some(l) => l.intersection(&online),
        None => online,
    };
    if cpus.is_empty() {
        usage_error("no online cpus in the cpu list");
    }
    let mut opts = Options::new(c.mode, cpus.clone());
    opts.count = c.count;
    opts.queues = c.queues;
    opts.ring_bytes = c.ring_kib * 1024;
    if c.every_record {
        opts.wakeup = Wakeup::EveryRecord;
    }
    if c.write.is_some() {
        opts.snaplen = Some(c.snaplen);
    }

    // Signals go to the signalfd only: block them before any thread starts.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals
        .thread_block()
        .unwrap_or_else(|e| fail(format!("error blocking signals: {e}")));
    let sigfd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC)
        .unwrap_or_else(|e| fail(format!("error creating signalfd: {e}")));

    let mut xdp = XdpCapture::attach(ifindex, &opts).unwrap_or_else(|e| fail(e));
    let (prog_id, link_id) = xdp.ids().unwrap_or((0, 0));
    let hatype = rxtxcpu::afpacket::hardware_type(&c.ifname).unwrap_or(1);
    let link = LinkType::for_hatype(hatype);
    let stop_fd = Arc::new(
        EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)
            .unwrap_or_else(|e| fail(format!("error creating eventfd: {e}"))),
    );
    let stopping = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for reader in xdp.take_readers() {
        let out = c.write.as_ref().map(|w| {
            let path = stream_path(w, reader.cpu());
            let format = Format {
                link,
                snaplen: c.snaplen,
                precision: Precision::Nano,
                packet_buffered: false,
            };
            PcapOutput::create(&path, format).unwrap_or_else(|e| fail(format!("{path}: {e}")))
        });
        let (stop_fd, stopping) = (stop_fd.clone(), stopping.clone());
        threads.push(thread::spawn(move || {
            read_cpu(reader, out, hatype, stop_fd, stopping)
        }));
    }

    xdp.start()
        .unwrap_or_else(|e| fail(format!("error opening the capture window: {e}")));
    let started = Instant::now();
    eprintln!(
        "xdpdemo: capturing on {} in {} mode (program id {prog_id}, link id {link_id})",
        c.ifname,
        xdp.hook().as_str()
    );
    eprintln!("xdpdemo: {}", xdp.hook().describe());

    let deadline = c.seconds.map(|s| started + Duration::from_secs(s));
    loop {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                PollTimeout::try_from(left.as_millis().min(60_000) as u32 + 1)
                    .unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [
            PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(xdp.done_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => fail(format!("poll: {e}")),
        }
        let ready = |i: usize| {
            fds[i]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN))
        };
        if ready(0) || ready(1) {
            break;
        }
    }

    xdp.stop()
        .unwrap_or_else(|e| fail(format!("error closing the capture window: {e}")));
    stopping.store(true, Ordering::SeqCst);
    let _ = stop_fd.write(1);
    let written: Vec<Written> = threads
        .into_iter()
        .map(|t| {
            t.join()
                .unwrap_or_else(|_| fail("a reader thread panicked"))
        })
        .collect();
    let counts = xdp
        .counts()
        .unwrap_or_else(|e| fail(format!("error reading the counters: {e}")));
    let mut total = 0;
    for cpu in cpus.iter() {
        let t = counts.cpu(cpu);
        println!("{} packets captured on cpu{cpu}.", t.packets);
        total += t.packets;
        if t.lost > 0 {
            eprintln!("{} packets dropped on cpu{cpu}.", t.lost);
        }
        if let Some(w) = written.iter().find(|w| w.cpu == cpu) {
            if w.records != t.packets || w.malformed > 0 {
                eprintln!(
                    "xdpdemo: cpu{cpu}: {} records read for {} counted ({} malformed)",
                    w.records, t.packets, w.malformed
                );
            }
        }
    }
    for q in 0..c.queues {
        eprintln!("{} packets on queue {q}.", counts.queue(q).packets);
    }
    println!("{total} packets captured total.");
}
