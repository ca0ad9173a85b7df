//! Shared harness for the rxtxcpu integration tests: network namespaces,
//! running the binary, parsing its report, making deterministic traffic,
//! and reading back the pcap files it writes. Anything two test files need
//! lives here, once.
//!
//! One module per concern: `netns` (namespaces, veths, tun devices, pinned
//! threads), `traffic`, `capture` (the process driver), `report`, `files`
//! (scratch directories, pcap and pcapng readers), `usage`, `terminal` and
//! `prometheus`. This file holds what they share and re-exports them, so a
//! test names everything as `common::X`.
//!
//! Everything that opens sockets runs in its own network namespace, so tests
//! can run in parallel and see no traffic but their own (IPv6 is disabled and
//! neighbours are static, so there is no background noise at all).

// Each test binary uses a different part of the harness.
#![allow(dead_code)]

pub mod prometheus;

mod capture;
mod files;
mod netns;
mod report;
mod terminal;
mod traffic;
mod usage;

// Every test file sees the whole harness as `common::X`; each uses part of
// it, so a module it does not use is an unused import there.
#[allow(unused_imports)]
pub use self::{capture::*, files::*, netns::*, report::*, terminal::*, traffic::*, usage::*};

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// `lo`'s address, where most tests send their traffic.
pub const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Port that `UdpSink`s listen on (senders to a local address use their own).
pub const UDP_PORT: u16 = 9999;
/// What `udp_send` puts in each datagram.
pub const PAYLOAD: &[u8] = b"rxtxcpu test datagram";

const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// A number unique within this test process.
fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The source tree: Makefile, man page, README.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// How a command ended, for a failure message: `what` ran, its status and
/// both outputs.
pub fn show(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `cmd`'s output, or None where its program is not installed: a check
/// that needs an optional tool is skipped on machines without it.
pub fn output_if_installed(cmd: &mut Command) -> Option<Output> {
    match cmd.output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("cannot run {cmd:?}: {e}"),
    }
}

/// Runs a command to completion, panicking (with its output) unless it succeeds.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let what = format!("{program} {}", args.join(" "));
    assert!(out.status.success(), "{}", show(&what, &out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (polling every 10 ms, at most 20 s) until `ok()` holds; panics
/// naming `what` when it never does. For states a test cannot be told
/// of, such as a table's sweep having run.
pub fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "waited for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
