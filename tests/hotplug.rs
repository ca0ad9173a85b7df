//! Cpu hotplug during a capture. Its tests are serialized and hold the
//! machine lock exclusively (no capture test of any test process on the
//! machine overlaps them), and cpu1 is always put back online.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

const CPU1_ONLINE: &str = "/sys/devices/system/cpu/cpu1/online";

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

/// Holds the hotplug lock and the machine lock (no capture test of another
/// test process runs meanwhile); cpu1 goes back online when dropped, even
/// when the test panics.
struct Cpu1 {
    _serial: std::sync::MutexGuard<'static, ()>,
    _machine: MachineLock,
}

impl Cpu1 {
    /// Serializes with the other tests and checks cpu1 can be offlined (a
    /// `None` means skip: the note is printed).
    fn acquire() -> Option<Cpu1> {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let cpu1 = Cpu1 {
            _serial: serial,
            _machine: MachineLock::exclusive(),
        };
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
    assert!(!f.stderr.contains("came online"), "{f}");
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
    // cpu1's packets are in nobody's count: not on cpu0 either; and the
    // capture says so rather than look complete.
    let f = cap.wait();
    f.assert_report(&[(0, 4)]);
    assert!(
        f.stderr.contains(
            "rxtxcpu: warning: cpu1 came online during the capture and was not captured \
             (it was offline when the capture started)\n"
        ),
        "{f}"
    );
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
    check_usage_errors(&[
        (
            "rxtxcpu",
            &["-l", "1"],
            "No online cpus present in cpu list.",
        ),
        ("rxcpu", &["-m", "2"], "No online cpus present in cpu mask."),
        (
            "rxtxcpu",
            &["-m", "6"],
            "No online cpus present in cpu mask.",
        ),
    ]);
}

/// Datagram payloads that tell the two floods apart in the pcap files.
const FROM_CPU0: &[u8] = b"hotplug flood from cpu0";
const FROM_CPU1: &[u8] = b"hotplug flood from cpu1";

/// cpu1 goes offline and back online again and again while a flood runs on
/// each cpu. The capture neither crashes nor hangs, stops cleanly on
/// SIGINT, and never counts a packet of the cpu0 flood on cpu1. (The cpu1
/// flood is moved to cpu0 while cpu1 is offline, and packets cpu1 had
/// queued are handled by cpu0 when it goes, so cpu0 may see cpu1's.)
#[test]
fn cpu1_flapping_under_flood() {
    const CYCLES: usize = 25;
    let Some(cpu1) = Cpu1::acquire() else { return };
    let ns = Netns::new();
    let dir = TempDir::new();
    let out = dir.path("flap.pcap");
    let mut cap = Capture::start(&ns, "rxtxcpu", &["-s", "128", "-w", &out, "lo"]);
    let flood = |cpu, payload| {
        #[rustfmt::skip]
        let opts = FloodOptions { payload, per_sec: Some(20_000), ..FloodOptions::default() };
        Flood::start_with(&ns, cpu, LO, opts)
    };
    let (flood0, flood1) = (flood(0, FROM_CPU0), flood(1, FROM_CPU1));
    flood0.wait_for_more(1_000);
    flood1.wait_for_more(1_000);
    for cycle in 0..CYCLES {
        cpu1.offline().unwrap();
        flood0.wait_for_more(200);
        cpu1.online();
        flood0.wait_for_more(200);
        assert!(
            cap.is_running(),
            "capture ended in cycle {cycle}; stderr:\n{}",
            cap.stderr_now()
        );
    }
    let (sent0, _) = (flood0.stop(), flood1.stop());
    // Its datagram comes back only after cpu0's backlog has been handled.
    udp_send(&ns, 0, LO, LO, 1);
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let report = f.report();
    assert_eq!(
        report.per_cpu.keys().copied().collect::<Vec<_>>(),
        [0, 1],
        "{f}"
    );
    let mut from = [[0u64; 2]; 2]; // from[file cpu][flood cpu]
    assert_files_match_report(&f, &out, |cpu, p| {
        for (flood, payload) in [FROM_CPU0, FROM_CPU1].iter().enumerate() {
            if p.data.ends_with(payload) {
                from[cpu as usize][flood] += 1;
            }
        }
    });
    assert_eq!(from[1][0], 0, "cpu0's flood counted on cpu1\n{f}");
    // Each datagram of cpu0's flood is a tx and an rx packet on cpu0: in
    // cpu0's file, or counted in cpu0's drops when its ring was full (the
    // kernel counts every packet it had no room for, tp_drops). Whether the
    // ring fills is the scheduler's: a loaded machine can keep the worker
    // off the cpu for longer than the ring lasts, so no number of drops is
    // assumed; a drop does not say whose packet it was (cpu1's flood runs
    // on cpu0 while cpu1 is offline), hence the bounds.
    let drops = f.drops();
    let dropped = |cpu: u32| drops.get(&cpu).copied().unwrap_or(0);
    assert!(
        from[0][0] <= 2 * sent0 && from[0][0] + dropped(0) >= 2 * sent0,
        "cpu0's flood on cpu0: {} in the file, {} dropped, {sent0} sent\n{f}",
        from[0][0],
        dropped(0)
    );
    // cpu1's flood was on cpu1 for its first 1000 datagrams at least (their
    // tx packets are taken on the sending cpu).
    assert!(
        from[1][1] + dropped(1) >= 1_000,
        "cpu1's flood on cpu1: {}, {} dropped\n{f}",
        from[1][1],
        dropped(1)
    );
    assert_eq!(
        std::fs::read_to_string(CPU1_ONLINE).unwrap().trim(),
        "1",
        "cpu1 left offline"
    );
}
