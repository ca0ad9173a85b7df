//! rxtxcpu: capture packets in per-cpu (per-queue, per-node) streams.
//!
//! One AF_PACKET socket per possible stream in a fanout group (by cpu, or
//! by an eBPF program for queues and numa nodes), each captured stream read
//! from a TPACKET_V3 ring by a worker thread; or, with `--xdp`, an XDP
//! program counting (and copying) received frames per cpu.
//!
//! The data flows one way: command line -> options -> vantage -> source ->
//! one worker per stream -> its consumers -> the report.
//!
//! - command line: [`cli`] (options, names, help, usage)
//! - vantage: [`vantage`] (what the streams are and how the kernel routes
//!   packets to them), [`cpuset`] (cpu lists, masks, numa nodes)
//! - source: [`source`] (the fanout group), over the kernel interface
//!   [`afpacket`] and [`ring`]; [`bpf`], [`ebpf`], [`fanout`] (eBPF
//!   programs: loading, writing, the fanout programs); [`pcapfilter`]
//!   (tcpdump filters, compiled by libpcap loaded at run time); the XDP
//!   source: [`xdp`], [`perf`] (the program, its per-cpu buffers) and
//!   [`xdprun`] (running such a capture)
//! - workers: [`capture`] (one capture: outputs, workers, signals),
//!   [`worker`] (one stream's ring), [`count`] (`-c`: the first N packets
//!   in timestamp order across streams, with [`merge`])
//! - consumers: [`consumers`] (what a worker does with each packet):
//!   [`output`] (pcap files, naming, rotation with [`rotate`]; what `-w`
//!   names and how outputs open with [`destination`]), [`merged`]
//!   with [`pcapng`] and [`merge`] (one time-ordered pcapng file),
//!   [`flows`] (flow tables), [`repeats`] (repeating packets), live
//!   counters
//! - kernel probes (groundwork for kernel drops and a flow's path):
//!   [`btf`] (the kernel's types), [`tracing`] (tracing programs and
//!   their links), [`probe_drops`] (the kernel's drops per cpu and reason)
//! - [`cache`]: prefetch hints, for the ring walk, the flow tables and
//!   the merged file's batches
//! - report: [`report`] (text or JSON), [`expect`] with [`steering`],
//!   [`rss`], [`ethtool`] (where flows should have landed); [`monitor`]
//!   feeding [`live`] (the `--live` view)

// Every `unsafe` block lives in the kernel-facing layer, src/sys/, which
// alone is allowed it (each block with its SAFETY comment).
#![deny(unsafe_code)]

/// `eprintln!` that cannot panic: stderr may be a pipe whose reader died
/// with the same Ctrl-C that stops the capture (`2>&1 | tee log`), and a
/// panic on the main thread then would leave workers nobody stops.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// `eprint!` that cannot panic; see `errln!`.
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr().lock(), $($arg)*);
    }};
}

pub mod capture;
pub mod cli;
pub mod consumers;
pub mod count;
pub mod cpuset;
pub mod destination;
pub mod error;
pub mod expect;
pub mod fanout;
pub mod flows;
pub mod live;
pub mod merge;
pub mod merged;
pub mod metrics;
pub mod monitor;
pub mod options;
pub mod output;
pub mod packet;
pub mod pcapfilter;
pub mod pcapng;
pub mod probe_drops;
#[cfg(test)]
mod probe_facts;
#[cfg(test)]
mod probe_testnet;
pub mod repeats;
pub mod report;
pub mod rotate;
pub mod rss;
pub mod source;
pub mod steering;
#[allow(unsafe_code)]
pub mod sys;
pub mod vantage;
pub mod worker;
pub mod xdp;
pub mod xdprun;

use std::ffi::OsString;
use std::io::Write;

/// Runs the program with `args` (`argv[0]` first); returns the exit status.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let name = cli::invoked_name(args.first());
    let rest = args.get(1..).unwrap_or(&[]);
    let usage_error = |msg: &str| {
        errln!("{name}: {msg}");
        err!("{}", cli::usage(&name, cli::vantage_of(&name, rest)));
        2
    };
    match cli::parse(&name, rest) {
        Err(cli::UsageError(msg)) => usage_error(&msg),
        Ok(cli::Invocation::Print(text)) => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`rxtxcpu --help | head -1`) is not an error.
            let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
            0
        }
        Ok(cli::Invocation::RssHash(q)) => {
            let interface = q.interface.as_deref();
            match steering::rss_hash_command(&q.tuple, q.key.as_deref(), interface) {
                Ok(report) => {
                    if q.verbose {
                        for line in report.verbose(interface) {
                            errln!("{name}: {line}");
                        }
                    }
                    let text = if q.json {
                        report.to_json(interface)
                    } else {
                        report.to_string()
                    };
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
                    0
                }
                Err(e) => {
                    errln!("{name}: {e}");
                    1
                }
            }
        }
        Ok(cli::Invocation::Run(opts)) => {
            match vantage::plan(&opts).and_then(|plan| capture::run(&opts, &plan)) {
                Ok(status) => status,
                Err(error::Error::Usage(msg)) => usage_error(&cli::escape_controls(&msg)),
                Err(error::Error::Invalid(msg)) => {
                    errln!("{name}: {}", cli::escape_controls(&msg));
                    2
                }
                Err(e) => {
                    errln!("{name}: {e}");
                    1
                }
            }
        }
    }
}
