//! A bounded soak: minutes of steady traffic on both cpus into per-cpu
//! files. The capture's memory must stay flat after warm-up, and at the
//! end every frame that reached the interface must be either captured (and
//! in a file) or reported as dropped. Ignored by default; run it with
//!
//!     cargo test --release --test soak -- --ignored --nocapture
//!
//! `RXTXCPU_SOAK_SECS` sets the duration (default 180 s),
//! `RXTXCPU_SOAK_RATE` the datagrams per second sent on each cpu (default
//! 20000; about 60 bytes of pcap file each).

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A number from the environment, or `default`.
fn env_or(var: &str, default: u64) -> u64 {
    match std::env::var(var) {
        Ok(v) => v.parse().unwrap_or_else(|e| panic!("{var}={v:?}: {e}")),
        Err(_) => default,
    }
}

/// The process's resident set in KiB (VmRSS of /proc/PID/status).
fn rss_kib(pid: nix::unistd::Pid) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status:\n{status}"))
}

/// Growth of the resident set allowed after warm-up: a little allocator
/// slack, far below what a per-packet or per-block leak would show over
/// millions of packets.
const RSS_SLACK_KIB: u64 = 1024;

#[test]
#[ignore = "soak test, minutes long: cargo test --release --test soak -- --ignored"]
fn soak_both_cpus_into_files() {
    let secs = env_or("RXTXCPU_SOAK_SECS", 180).max(2);
    let rate = env_or("RXTXCPU_SOAK_RATE", 20_000).max(1);
    let warmup = (secs / 6).clamp(1, 30);

    let (a, b) = (Netns::new(), Netns::new());
    let (_va, vb) = veth_pair(&a, &b);
    let _sink = UdpSink::bind(&b, vb.addr); // never read: no ICMP errors
    let dir = TempDir::new();
    let out = dir.path("soak.pcap");
    let before = b.tapped_frames(&vb.ifname);
    let mut cap = Capture::start(&b, "rxtxcpu", &["-w", &out, &vb.ifname]);
    let pid = cap.pid();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "rxtxcpu", "sampling the wrong process");

    let opts = FloodOptions {
        payload: b"rxtxcpu soak datagram",
        per_sec: Some(rate),
        limit: Duration::from_secs(secs + 60),
    };
    let floods = [0, 1].map(|cpu| Flood::start_with(&a, cpu, vb.addr, opts));
    let start = Instant::now();
    let mut samples = Vec::new(); // (second, KiB)
    for second in 1..=secs {
        let due = start + Duration::from_secs(second);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        assert!(
            cap.is_running(),
            "capture ended after {second} s; stderr:\n{}",
            cap.stderr_now()
        );
        samples.push((second, rss_kib(pid)));
    }
    let sent = floods.map(Flood::stop);
    // Each ping comes back only once its cpu's backlog has been handled.
    for cpu in [0, 1] {
        ping(&a, cpu, vb.addr, 1);
    }
    let reached = b.tapped_frames(&vb.ifname) - before;
    cap.signal(Signal::SIGINT);
    let f = cap.wait();

    let after: Vec<u64> = samples[warmup as usize - 1..].iter().map(|s| s.1).collect();
    let (base, peak) = (after[0], *after.iter().max().unwrap());
    eprintln!(
        "soak: {secs} s, {rate}/s per cpu, sent {sent:?}, {reached} frames; \
         RSS after {warmup} s warm-up {base} KiB, peak {peak} KiB, \
         end {} KiB\n{f}",
        after[after.len() - 1]
    );
    // Per cpu: the datagrams, a ping request and its reply.
    let what = format!("soak on {}", vb.ifname);
    f.assert_accounted_for(&what, reached, sent.map(|n| n + 2));
    assert_files_match_report(&f, &out, |_, _| ());
    assert!(
        peak <= base + RSS_SLACK_KIB,
        "RSS grew from {base} KiB to {peak} KiB after warm-up; samples (s, KiB): {samples:?}"
    );
}
