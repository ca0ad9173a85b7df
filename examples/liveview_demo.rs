//! liveview_demo: the `--live` view fed with made-up packet counters and
//! this machine's real softirq counters, wired the way the capture's main
//! thread should wire it (signalfd for stop, resize and job-control
//! signals; one wakeup per interval; the terminal restored on every exit).
//!
//!     cargo run --example liveview_demo -- [--interval=SECONDS] [--json]
//!         [--streams=N] [--flows] [--panic-after=N] [--exit-after=N]
//!
//! Ctrl-C (or SIGTERM) ends it with a report on stdout, like a capture.
//! `--panic-after=N` panics on the main thread after N intervals and
//! `--exit-after=N` leaves through `std::process::exit`, to check that
//! the terminal comes back on those paths too.

use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{raise, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use rxtxcpu::live::{
    self, term, CpuReader, Header, LiveView, Mode, Snapshot, StreamCount, Ticker, Vantage,
};

struct Args {
    interval: Duration,
    json: bool,
    streams: u32,
    flows: bool,
    panic_after: Option<u64>,
    exit_after: Option<u64>,
}

fn args() -> Args {
    let mut a = Args {
        interval: Duration::from_secs(1),
        json: false,
        streams: 2,
        flows: false,
        panic_after: None,
        exit_after: None,
    };
    for arg in std::env::args().skip(1) {
        let (k, v) = arg.split_once('=').unwrap_or((&arg, ""));
        match k {
            "--interval" => {
                a.interval = live::parse_interval(v).unwrap_or_else(|| {
                    eprintln!("liveview_demo: Invalid interval '{v}'.");
                    std::process::exit(2)
                })
            }
            "--json" => a.json = true,
            "--flows" => a.flows = true,
            "--streams" => a.streams = v.parse().expect("--streams=N"),
            "--panic-after" => a.panic_after = Some(v.parse().expect("--panic-after=N")),
            "--exit-after" => a.exit_after = Some(v.parse().expect("--exit-after=N")),
            _ => {
                eprintln!("liveview_demo: Unrecognized option '{arg}'.");
                std::process::exit(2)
            }
        }
    }
    a
}

/// Made-up counters, zero at the start like a capture's: stream i gets
/// (i+1) x 1000 packets per second of 1000 bytes, plus a wobble; every 7th
/// packet of stream 0 is dropped.
fn counts(streams: u32, elapsed: Duration) -> Vec<StreamCount> {
    let t = elapsed.as_secs_f64();
    (0..streams)
        .map(|i| {
            let rate = f64::from(i + 1) * 1000.0;
            let packets = (rate * t + 300.0 * t.sin().powi(2)) as u64;
            StreamCount {
                id: i,
                label: format!("cpu{i}"),
                packets,
                bytes: packets * 1000,
                drops: if i == 0 { packets / 7 } else { 0 },
            }
        })
        .collect()
}

fn main() {
    let a = args();
    // Before any thread exists, so that every thread inherits the mask and
    // only the signalfd sees these.
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGWINCH,
        Signal::SIGTSTP,
    ] {
        set.add(s);
    }
    set.thread_block().expect("block signals");
    let sigfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .expect("signalfd");

    let mode = Mode::choose(term::stderr_is_terminal(), a.json);
    if mode == Mode::Table {
        term::install_panic_hook();
        term::install_fatal_signal_handlers().expect("signal handlers");
    }
    let header = Header {
        name: "liveview_demo".into(),
        interface: "lo".into(),
        direction: "rxtx".into(),
        vantage: Vantage::Cpu,
    };
    let mut view = LiveView::new(header, mode);
    // The softirq columns are optional: without /proc they go away.
    let mut reader = CpuReader::open().ok();
    let start = Instant::now();
    let snapshot = |reader: &mut Option<CpuReader>, flows: Option<Vec<(String, u64)>>| {
        let elapsed = start.elapsed();
        Snapshot {
            elapsed,
            streams: counts(a.streams, elapsed),
            cpus: reader.as_mut().and_then(|r| r.read().ok()),
            flows,
        }
    };
    let flows = |n: u64| {
        a.flows.then(|| {
            vec![
                ("udp 10.0.0.1:5000 > 10.0.0.2:9".to_string(), 900 + n % 100),
                ("tcp 10.0.0.3:443 > 10.0.0.4:51234".to_string(), 300),
                ("icmp 10.0.0.1 > 10.0.0.2".to_string(), 4),
            ]
        })
    };

    let _ = view.update(snapshot(&mut reader, None));
    let mut ticker = Ticker::new(start, a.interval);
    let mut ticks = 0u64;
    'run: loop {
        let timeout =
            PollTimeout::try_from(ticker.timeout_ms(Instant::now())).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => panic!("poll: {e}"),
        }
        while let Ok(Some(info)) = sigfd.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGWINCH) => {
                    let _ = view.resize();
                }
                Ok(Signal::SIGTSTP) => {
                    // Blocked, so it does not stop us: give the terminal
                    // back, stop for real, take it again on SIGCONT.
                    view.suspend();
                    let _ = raise(Signal::SIGSTOP);
                    let _ = view.resume();
                }
                Ok(Signal::SIGINT) => {
                    // Like the capture: the lone newline (into the table's
                    // screen, which is about to go).
                    let _ = writeln!(std::io::stderr());
                    break 'run;
                }
                _ => break 'run,
            }
        }
        if ticker.due(Instant::now()) {
            ticks += 1;
            let _ = view.update(snapshot(&mut reader, flows(ticks)));
            if a.panic_after == Some(ticks) {
                panic!("demo panic after {ticks} intervals");
            }
            if a.exit_after == Some(ticks) {
                // An exit that skips every Drop.
                term::restore();
                eprintln!("liveview_demo: exiting without unwinding");
                std::process::exit(1);
            }
        }
    }
    // The stop: off the terminal at once, then "wait for the workers",
    // then the last interval and the report.
    view.stopping();
    std::thread::sleep(Duration::from_millis(200));
    let last = snapshot(&mut reader, flows(ticks + 1));
    let report: Vec<(u32, u64)> = last.streams.iter().map(|s| (s.id, s.packets)).collect();
    let _ = view.finish(Some(last));
    let mut out = std::io::stdout().lock();
    let mut total = 0;
    for (cpu, n) in report {
        total += n;
        let _ = writeln!(out, "{n} packets captured on cpu{cpu}.");
    }
    let _ = writeln!(out, "{total} packets captured total.");
}
