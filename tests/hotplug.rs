//! Cpu hotplug during a capture. A test binary of its own (cargo runs test
//! binaries one after another, so no other capture test overlaps it), with
//! its tests serialized and cpu1 always put back online.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

const CPU1_ONLINE: &str = "/sys/devices/system/cpu/cpu1/online";
const LO: std::net::Ipv4Addr = LOCALHOST;

static SERIAL: Mutex<()> = Mutex::new(());

fn set_cpu1_online(online: bool) -> std::io::Result<()> {
    std::fs::write(CPU1_ONLINE, if online { "1" } else { "0" })?;
    let want = if online { "1" } else { "0" };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(CPU1_ONLINE)?.trim() != want {
        assert!(Instant::now() < deadline, "cpu1 online never became {want}");
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Holds the hotplug lock; cpu1 goes back online when dropped, even when
/// the test panics.
struct Cpu1 {
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Cpu1 {
    /// Serializes with the other tests and checks cpu1 can be offlined (a
    /// `None` means skip: the note is printed).
    fn acquire() -> Option<Cpu1> {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let cpu1 = Cpu1 { _serial: serial };
        match cpu1.offline() {
            Ok(()) => {
                cpu1.online();
                Some(cpu1)
            }
            Err(e) => {
                eprintln!("note: skipping, cannot offline cpu1 ({CPU1_ONLINE}): {e}");
                None
            }
        }
    }

    fn offline(&self) -> std::io::Result<()> {
        set_cpu1_online(false)
    }

    fn online(&self) {
        set_cpu1_online(true).expect("cannot put cpu1 back online");
    }
}

impl Drop for Cpu1 {
    fn drop(&mut self) {
        if let Err(e) = set_cpu1_online(true) {
            eprintln!("cannot put cpu1 back online: {e}");
        }
    }
}

#[test]
fn cpu1_offline_at_start_gets_no_line() {
    let Some(cpu1) = Cpu1::acquire() else { return };
    cpu1.offline().unwrap();
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxcpu", &["lo"]);
    ping(&ns, 0, LO, 1);
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    f.assert_report(&[(0, 4)]);
    assert!(
        f.stderr
            .lines()
            .any(|l| l.contains("cpu1") && l.contains("offline")),
        "verbose output does not mention skipping cpu1\n{f}"
    );
}

#[test]
fn cpu1_online_during_capture_gets_no_line() {
    let Some(cpu1) = Cpu1::acquire() else { return };
    cpu1.offline().unwrap();
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxcpu", &["lo"]);
    cpu1.online();
    udp_send(&ns, 1, LO, LO, 3); // pinning waits until cpu1 is usable
    ping(&ns, 0, LO, 1);
    cap.signal(Signal::SIGINT);
    // cpu1's packets are in nobody's count: not on cpu0 either.
    cap.wait().assert_report(&[(0, 4)]);
}

#[test]
fn cpu1_offline_during_capture_keeps_its_count() {
    let Some(cpu1) = Cpu1::acquire() else { return };
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxcpu", &["lo"]);
    udp_send(&ns, 1, LO, LO, 3);
    cpu1.offline().unwrap();
    ping(&ns, 0, LO, 1);
    cap.signal(Signal::SIGINT);
    cap.wait().assert_report(&[(0, 4), (1, 6)]);
}

#[test]
fn selection_of_offline_cpus_only_is_a_usage_error() {
    let Some(cpu1) = Cpu1::acquire() else { return };
    cpu1.offline().unwrap();
    run("rxtxcpu", &["-l", "1"])
        .assert_usage_error("rxtxcpu", "No online cpus present in cpu list.");
    run("rxcpu", &["-m", "2"]).assert_usage_error("rxcpu", "No online cpus present in cpu mask.");
    run("rxtxcpu", &["-m", "6"])
        .assert_usage_error("rxtxcpu", "No online cpus present in cpu mask.");
}
