//! Network namespaces and the devices in them: the machine lock every
//! namespace holds, fresh namespaces, veth pairs, sysfs writes, tun
//! devices (one queue or many), and threads that run inside a namespace,
//! pinned to a cpu.

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sched::{sched_setaffinity, setns, CloneFlags, CpuSet};
use nix::unistd::Pid;

use super::traffic::ipv4_udp;
use super::{sh, unique, PAYLOAD, UDP_PORT};

// ---------------------------------------------------------------------------
// The machine lock

/// Where the machine lock lives: one file for every test process on the
/// machine (two `cargo test` runs from two checkouts share it).
const MACHINE_LOCK: &str = "/tmp/rxtxcpu-tests.lock";

thread_local! {
    /// Whether this thread holds the machine lock exclusively (its own
    /// namespaces then take no shared hold, which would wait for itself).
    static EXCLUSIVE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A hold on the machine lock (flock(2) on [`MACHINE_LOCK`]). Every
/// [`Netns`] holds it shared for its lifetime; a test that changes the
/// whole machine (a cpu offline, a global sysctl) holds it exclusively, so
/// it never overlaps a capture test, of this test binary or of any other
/// test process on the machine. Released when dropped (or when the process
/// dies: the kernel drops flock locks with the last descriptor).
pub struct MachineLock {
    _lock: nix::fcntl::Flock<File>,
    exclusive: bool,
}

impl MachineLock {
    fn take(exclusive: bool) -> MachineLock {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(MACHINE_LOCK)
            .unwrap_or_else(|e| panic!("{MACHINE_LOCK}: {e}"));
        let how = if exclusive {
            nix::fcntl::FlockArg::LockExclusive
        } else {
            nix::fcntl::FlockArg::LockShared
        };
        let lock = nix::fcntl::Flock::lock(file, how)
            .unwrap_or_else(|(_, e)| panic!("flock {MACHINE_LOCK}: {e}"));
        if exclusive {
            EXCLUSIVE.with(|x| x.set(true));
        }
        MachineLock {
            _lock: lock,
            exclusive,
        }
    }

    /// Waits until no capture test runs anywhere on the machine, then
    /// keeps them all out until dropped.
    pub fn exclusive() -> MachineLock {
        MachineLock::take(true)
    }

    /// A shared hold, unless this thread holds the lock exclusively.
    fn shared() -> Option<MachineLock> {
        (!EXCLUSIVE.with(|x| x.get())).then(|| MachineLock::take(false))
    }
}

impl Drop for MachineLock {
    fn drop(&mut self) {
        if self.exclusive {
            EXCLUSIVE.with(|x| x.set(false));
        }
    }
}

/// A fresh network namespace with only `lo` (up, IPv4 only); deleted on
/// drop. It holds the [`MachineLock`] shared while it exists.
pub struct Netns {
    pub name: String,
    _machine: Option<MachineLock>,
}

impl Netns {
    pub fn new() -> Netns {
        let ns = Netns {
            name: format!("rxtxcpu-t-{}-{}", std::process::id(), unique()),
            _machine: MachineLock::shared(),
        };
        sh("ip", &["netns", "add", &ns.name]);
        // IPv6 off before anything is up: no DAD, router or MLD traffic.
        ns.exec(&[
            "sysctl",
            "-q",
            "-w",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip netns exec NAME args...`; panics unless it succeeds; returns stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut argv = vec!["netns", "exec", &self.name];
        argv.extend_from_slice(args);
        sh("ip", &argv)
    }

    /// `ip -n NAME args...`; panics unless it succeeds; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut argv = vec!["-n", &self.name];
        argv.extend_from_slice(args);
        sh("ip", &argv)
    }

    /// The interface's promiscuity counter (`ip -d link`).
    pub fn promiscuity(&self, ifname: &str) -> u32 {
        let out = self.ip(&["-d", "link", "show", "dev", ifname]);
        let mut words = out.split_whitespace();
        words
            .find(|w| *w == "promiscuity")
            .and_then(|_| words.next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no promiscuity in `ip -d link` output:\n{out}"))
    }

    /// A counter of /sys/class/net/IF/statistics (`rx_packets`, ...).
    pub fn link_stat(&self, ifname: &str, stat: &str) -> u64 {
        let path = format!("/sys/class/net/{ifname}/statistics/{stat}");
        let out = self.exec(&["cat", &path]);
        out.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{path}: {out:?}: {e}"))
    }

    /// The frames the interface's packet taps have seen so far: received,
    /// sent, and sent but then dropped by the device (a veth whose peer's
    /// backlog is full drops after the tap).
    pub fn tapped_frames(&self, ifname: &str) -> u64 {
        ["rx_packets", "tx_packets", "tx_dropped"]
            .iter()
            .map(|s| self.link_stat(ifname, s))
            .sum()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// One end of a veth pair.
pub struct Veth {
    pub ifname: String,
    pub addr: Ipv4Addr,
    pub mac: String,
}

/// A veth pair from `a` (`vtest0`, 192.0.2.1/24) to `b` (`vtest1`,
/// 192.0.2.2/24), both up, each with a permanent neighbour entry for the
/// other, so no ARP is ever sent.
pub fn veth_pair(a: &Netns, b: &Netns) -> (Veth, Veth) {
    veth_pair_with_queues(a, b, 1)
}

/// `veth_pair` whose ends have `queues` receive and transmit queues each.
pub fn veth_pair_with_queues(a: &Netns, b: &Netns, queues: u32) -> (Veth, Veth) {
    let end = |i: u8| Veth {
        ifname: format!("vtest{i}"),
        addr: Ipv4Addr::new(192, 0, 2, i + 1),
        mac: format!("02:00:00:00:00:{:02x}", i + 1),
    };
    let (va, vb) = (end(0), end(1));
    let q = queues.to_string();
    #[rustfmt::skip]
    a.ip(&["link", "add", &va.ifname, "address", &va.mac, "numtxqueues", &q, "numrxqueues", &q,
           "type", "veth", "peer", "name", &vb.ifname, "address", &vb.mac,
           "numtxqueues", &q, "numrxqueues", &q, "netns", &b.name]);
    for (ns, me, peer) in [(a, &va, &vb), (b, &vb, &va)] {
        ns.ip(&["addr", "add", &format!("{}/24", me.addr), "dev", &me.ifname]);
        ns.ip(&["link", "set", &me.ifname, "up"]);
        #[rustfmt::skip]
        ns.ip(&["neigh", "replace", &peer.addr.to_string(), "lladdr", &peer.mac,
                "dev", &me.ifname, "nud", "permanent"]);
    }
    for (ns, me) in [(a, &va), (b, &vb)] {
        wait_link_active(ns, &me.ifname);
    }
    (va, vb)
}

/// Waits until `ifname` (up, with carrier) of `ns` transmits. Until the
/// kernel's linkwatch work has run (a kworker, later on a loaded machine)
/// the device sends through the noop qdisc, which drops every packet while
/// sendto() reports success. That work sets the operstate UP and then
/// activates the qdisc, under RTNL: so once the state is UP, one command
/// that takes RTNL (`ip link set up`, a no-op) returns only after the
/// qdisc is active.
pub fn wait_link_active(ns: &Netns, ifname: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ns
        .ip(&["-o", "link", "show", "dev", ifname])
        .contains(" state UP ")
    {
        assert!(Instant::now() < deadline, "{ifname} never came up");
        thread::sleep(Duration::from_millis(1));
    }
    ns.ip(&["link", "set", ifname, "up"]);
}

/// Writes `value` to /sys/class/net/IF/`file` in namespace `ns` (e.g.
/// `queues/tx-0/xps_cpus`).
pub fn set_sysfs(ns: &Netns, ifname: &str, file: &str, value: &str) {
    let path = format!("/sys/class/net/{ifname}/{file}");
    ns.exec(&["sh", "-c", &format!("echo {value} > {path}")]);
}

/// Opens /dev/net/tun and attaches it to the tun device `name` (IFF_TUN |
/// IFF_NO_PI, and IFF_MULTI_QUEUE for one more queue of a multi-queue
/// device), made if it does not exist, in the calling thread's network
/// namespace (see [`in_netns`]). While the descriptor is open the device
/// has carrier: what is written to it, the device receives; what the
/// device transmits, it reads.
pub fn tun_fd(name: &str, multi_queue: bool) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, OwnedFd};
    const IFF_TUN: libc::c_short = 0x0001;
    const IFF_NO_PI: libc::c_short = 0x1000;
    const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
    const TUNSETIFF: libc::c_ulong = 0x400454ca;
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: libc::c_short,
        pad: [u8; 22],
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .expect("open /dev/net/tun");
    let fd = OwnedFd::from(f);
    let mut req = IfReq {
        name: [0; 16],
        flags: IFF_TUN | IFF_NO_PI | if multi_queue { IFF_MULTI_QUEUE } else { 0 },
        pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads a struct ifreq, which IfReq lays out (name,
    // then the flags of the union); it lives through the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req) };
    assert_eq!(r, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
    fd
}

/// A multi-queue tun device (`mqtun0`, 10.9.0.1/24, up) with one fd per
/// queue: a packet written to the fd of queue q is received on queue q
/// (tun records it with skb_record_rx_queue), on the writing thread's cpu.
/// A deterministic receive-queue generator.
pub struct MqTun {
    pub ifname: String,
    /// The device's address.
    pub addr: Ipv4Addr,
    /// The (virtual) peer the written packets come from.
    pub peer: Ipv4Addr,
    fds: Vec<std::os::fd::OwnedFd>,
}

impl MqTun {
    pub fn new(ns: &Netns, queues: usize) -> MqTun {
        use std::os::fd::OwnedFd;
        let ifname = "mqtun0".to_string();
        let name = ifname.clone();
        let fds: Vec<OwnedFd> = in_netns(ns, move || {
            (0..queues).map(|_| tun_fd(&name, true)).collect()
        });
        let tun = MqTun {
            ifname,
            addr: Ipv4Addr::new(10, 9, 0, 1),
            peer: Ipv4Addr::new(10, 9, 0, 2),
            fds,
        };
        ns.ip(&[
            "addr",
            "add",
            &format!("{}/24", tun.addr),
            "dev",
            &tun.ifname,
        ]);
        ns.ip(&["link", "set", &tun.ifname, "up"]);
        tun
    }

    /// Writes `count` UDP datagrams from `peer:sport` to `addr:UDP_PORT`
    /// into queue `queue`, from a thread pinned to `cpu`.
    pub fn write_udp(&self, queue: usize, cpu: usize, sport: u16, count: usize) {
        use std::os::fd::AsRawFd;
        let packet = ipv4_udp(self.peer, sport, self.addr, UDP_PORT, PAYLOAD);
        let fd = self.fds[queue].as_raw_fd();
        thread::scope(|s| {
            s.spawn(|| {
                pin_to_cpu(cpu);
                for _ in 0..count {
                    // SAFETY: fd is an open tun queue; packet is a live
                    // buffer of its length.
                    let n = unsafe { libc::write(fd, packet.as_ptr().cast(), packet.len()) };
                    assert_eq!(
                        n,
                        packet.len() as isize,
                        "tun write: {}",
                        std::io::Error::last_os_error()
                    );
                }
            });
        });
    }
}

// ---------------------------------------------------------------------------
// Threads inside a namespace, on a cpu

/// Moves the calling thread into namespace `ns` (only this thread).
pub(super) fn enter_netns(ns: &str) {
    let file = File::open(format!("/var/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("open netns {ns}: {e}"));
    setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {ns}: {e}"));
}

/// Pins the calling thread to `cpu`, retrying for a while if the cpu is not
/// (yet) online.
pub fn pin_to_cpu(cpu: usize) {
    let mut set = CpuSet::new();
    set.set(cpu).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sched_setaffinity(Pid::from_raw(0), &set) {
            Ok(()) => return,
            Err(Errno::EINVAL) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("cannot pin thread to cpu{cpu}: {e}"),
        }
    }
}

/// Runs `f` on a new thread inside namespace `ns`; sockets it creates belong
/// to that namespace for their whole life.
pub fn in_netns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    let name = ns.name.clone();
    thread::spawn(move || {
        enter_netns(&name);
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// A global sysctl set for a test, put back however the test ends (hold
/// [`MachineLock::exclusive`] meanwhile: it is the machine's).
pub struct Sysctl(&'static str, String);

impl Sysctl {
    pub fn set(path: &'static str, value: &str) -> Sysctl {
        let old = std::fs::read_to_string(path).unwrap();
        std::fs::write(path, value).unwrap();
        Sysctl(path, old.trim().to_string())
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0, &self.1);
    }
}
