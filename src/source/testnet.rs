//! Test support for the sources' kernel-facing tests (probes, XDP):
//! network namespaces of the test's own (deleted on drop), running code
//! in them, pinning, the machine lock, UDP helpers. Tests run as root.

use std::fs::File;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};

/// Runs a command to completion, panicking with its stderr unless it
/// succeeds.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The machine-wide test lock (tests/common's MachineLock), held shared:
/// a test that takes cpus offline or changes global settings holds it
/// exclusively, and so never overlaps these tests.
pub struct SharedLock(#[allow(dead_code)] nix::fcntl::Flock<File>);

impl SharedLock {
    pub fn take() -> SharedLock {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/rxtxcpu-tests.lock")
            .expect("open the machine lock");
        SharedLock(
            nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockShared)
                .unwrap_or_else(|(_, e)| panic!("flock: {e}")),
        )
    }
}

/// A network namespace with `lo` up and IPv6 off (no stray traffic).
pub struct Ns {
    pub name: String,
    _lock: SharedLock,
}

impl Ns {
    pub fn new() -> Ns {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let ns = Ns {
            name: format!("rxtxcpu-probe-{}-{n}", std::process::id()),
            _lock: SharedLock::take(),
        };
        sh(&["ip", "netns", "add", &ns.name]);
        #[rustfmt::skip]
        sh(&["ip", "netns", "exec", &ns.name, "sysctl", "-q", "-w",
             "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]);
        sh(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Runs `f` on a thread in this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(format!("/var/run/netns/{}", self.name)).unwrap();
                setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// The namespace's inode (what the probes compare).
    pub fn inode(&self) -> u32 {
        self.run(|| crate::source::probes::drops::current_netns().unwrap())
    }

    /// The ifindex of `ifname` in this namespace.
    pub fn ifindex(&self, ifname: &str) -> u32 {
        self.run(|| crate::sys::afpacket::ifindex(ifname).unwrap())
    }

    /// Runs `sh -c script` in this namespace.
    pub fn sh(&self, script: &str) {
        sh(&["ip", "netns", "exec", &self.name, "sh", "-c", script]);
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two namespaces joined by a veth: `a` has va 192.0.2.1, `b` vb
/// 192.0.2.2, static neighbours; `rx_queues` receive queues on vb.
pub struct Pair {
    pub a: Ns,
    pub b: Ns,
}

impl Pair {
    pub fn new(queues: u32) -> Pair {
        Pair::make(queues, None)
    }

    /// With vb's ifindex `index` (rather than the first free one).
    pub fn with_index(queues: u32, index: u32) -> Pair {
        Pair::make(queues, Some(index))
    }

    fn make(queues: u32, index: Option<u32>) -> Pair {
        let (a, b) = (Ns::new(), Ns::new());
        let q = queues.to_string();
        // Created from b's side, so that `index` is vb's.
        let index = index.map(|i| i.to_string());
        let index: &[&str] = match &index {
            Some(i) => &["index", i],
            None => &[],
        };
        #[rustfmt::skip]
        let args = [&["ip", "-n", &b.name, "link", "add", "vb", "address", "02:00:00:00:00:02"],
            index,
            &["numtxqueues", &q, "numrxqueues", &q, "type", "veth",
              "peer", "name", "va", "address", "02:00:00:00:00:01",
              "numtxqueues", &q, "numrxqueues", &q, "netns", &a.name]].concat();
        sh(&args);
        for (ns, me, addr, peer, mac) in [
            (&a, "va", "192.0.2.1/24", "192.0.2.2", "02:00:00:00:00:02"),
            (&b, "vb", "192.0.2.2/24", "192.0.2.1", "02:00:00:00:00:01"),
        ] {
            sh(&["ip", "-n", &ns.name, "addr", "add", addr, "dev", me]);
            sh(&["ip", "-n", &ns.name, "link", "set", me, "up"]);
            #[rustfmt::skip]
            sh(&["ip", "-n", &ns.name, "neigh", "replace", peer, "lladdr", mac, "dev", me,
                 "nud", "permanent"]);
        }
        crate::sys::testutil::wait_link_active(&a.name, "va");
        crate::sys::testutil::wait_link_active(&b.name, "vb");
        Pair { a, b }
    }
}

/// Pins the calling thread to `cpu`, waiting a while if it is offline.
pub fn pin(cpu: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = crate::sys::host::pin_to(&std::iter::once(cpu).collect()) {
        assert!(Instant::now() < deadline, "pin to cpu{cpu}: {e}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `n` datagrams of `len` bytes from `from` to `to`, from the
/// calling thread's namespace, on a thread pinned to `cpu`.
pub fn send_udp(cpu: u32, from: &str, to: (&str, u16), n: u32, len: usize) {
    std::thread::scope(|s| {
        s.spawn(|| {
            pin(cpu);
            let sock = UdpSocket::bind((from, 0)).unwrap();
            let buf = vec![0u8; len];
            for _ in 0..n {
                sock.send_to(&buf, to).unwrap();
            }
        });
    });
}

/// The `drops` column of the UDP socket bound to `port` in the calling
/// thread's namespace (/proc/thread-self/net/udp: /proc/net is the
/// process's namespace, not the thread's).
pub fn udp_socket_drops(port: u16) -> u64 {
    let want = format!(":{port:04X}");
    // The file is a walk of the kernel's socket table, which a socket
    // closing meanwhile (the sender's) can make skip one: look again
    // before concluding it is not there.
    let mut text = String::new();
    for _ in 0..20 {
        text = std::fs::read_to_string("/proc/thread-self/net/udp").unwrap();
        let line = text.lines().skip(1).find(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|local| local.ends_with(&want))
        });
        if let Some(line) = line {
            return line.split_whitespace().last().unwrap().parse().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("no UDP socket on port {port}:\n{text}");
}

pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

pub use crate::sys::testutil::limit_caps;
