//! rxtxcpu: capture packets in per-cpu streams.
//!
//! One AF_PACKET socket per cpu in a PACKET_FANOUT_CPU group, each captured
//! cpu read from a TPACKET_V3 ring by a worker thread pinned to it.
//!
//! - [`cli`]: command line, invocation name, help and usage
//! - [`cpuset`]: cpu lists, masks, configured and online cpus
//! - [`afpacket`], [`ring`]: the kernel interface (sockets, filters,
//!   fanout, the mmap ring)
//! - [`capture`]: the fanout group, workers and signals of one capture
//! - [`worker`]: reading one cpu's ring
//! - [`output`]: pcap files and naming
//! - [`pcapng`], [`merge`]: the merged pcapng file and its timeline
//! - [`rotate`]: tcpdump's -C/-G/-W file rotation
//! - [`report`]: the end-of-capture report

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

pub mod afpacket;
pub mod capture;
pub mod cli;
pub mod cpuset;
pub mod error;
pub mod merge;
pub mod output;
pub mod pcapng;
pub mod report;
pub mod ring;
pub mod rotate;
pub mod worker;

use std::ffi::OsString;
use std::io::Write;

/// Runs the program with `args` (argv[0] first); returns the exit status.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let name = cli::invoked_name(args.first());
    let rest = args.get(1..).unwrap_or(&[]);
    match cli::parse(&name, rest) {
        Err(cli::UsageError(msg)) => {
            errln!("{name}: {msg}");
            err!("{}", cli::usage(&name));
            2
        }
        Ok(cli::Invocation::Print(text)) => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`rxtxcpu --help | head -1`) is not an error.
            let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
            0
        }
        Ok(cli::Invocation::Run(opts)) => match capture::run(&opts) {
            Ok(status) => status,
            Err(e) => {
                errln!("{name}: {e}");
                1
            }
        },
    }
}
