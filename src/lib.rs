//! rxtxcpu: capture packets in per-cpu (per-queue, per-node) streams.
//!
//! One AF_PACKET socket per possible stream in a fanout group (by cpu, or
//! by an eBPF program for queues and numa nodes), each captured stream read
//! from a TPACKET_V3 ring by a worker thread; or, with `--xdp`, an XDP
//! program counting (and copying) received frames per cpu.
//!
//! The data flows one way: command line -> options -> vantage -> source ->
//! one worker per stream -> its consumers -> the report. ARCHITECTURE.md
//! at the root of the source tree is the map: one folder per stage, each
//! importing only what lies below it, every system call under `sys`.

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

pub mod cli;
pub(crate) mod consumers;
pub mod cpuset;
pub mod error;
pub(crate) mod filter;
pub(crate) mod format;
pub(crate) mod live;
pub mod metrics;
pub mod options;
pub(crate) mod packet;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod source;
pub(crate) mod steering;
#[allow(unsafe_code)]
pub(crate) mod sys;
pub mod vantage;
pub(crate) mod worker;

/// What the integration tests and doctests reach besides the command
/// line: not an API.
#[doc(hidden)]
pub mod testing {
    pub use crate::consumers::destination::check as check_destination;
    pub use crate::consumers::files::{stream_path, BlockWriter, Format, StreamFile};
    pub use crate::packet::{LinkType, Packet};
    pub use crate::report::{counts, drops, StreamCount};
    pub use crate::source::xdp::capture::{Options as XdpOptions, XdpCapture};
    pub use crate::sys::afpacket::ifindex;
}

use std::ffi::OsString;

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
        // A closed pipe (`rxtxcpu --help | head -1`) is not an error; a
        // full disk is.
        Ok(cli::Invocation::Print(text)) => report::to_stdout(&name, &text),
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
                    report::to_stdout(&name, &text)
                }
                Err(e) => {
                    errln!("{name}: {e}");
                    1
                }
            }
        }
        Ok(cli::Invocation::Run(opts)) => {
            match vantage::plan(&opts).and_then(|plan| run::run(&opts, &plan)) {
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
