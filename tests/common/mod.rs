//! Shared harness for the rxtxcpu integration tests: network namespaces,
//! running the binary, parsing its report, making deterministic traffic,
//! and reading back the pcap files it writes. Anything two test files need
//! lives here, once.
//!
//! Everything that opens sockets runs in its own network namespace, so tests
//! can run in parallel and see no traffic but their own (IPv6 is disabled and
//! neighbours are static, so there is no background noise at all).

// Each test binary uses a different part of the harness.
#![allow(dead_code)]

pub mod prometheus;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sched::{sched_setaffinity, setns, CloneFlags, CpuSet};
pub use nix::sys::signal::Signal;
use nix::unistd::Pid;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader};
use pcap_file::TsResolution;

pub const BIN: &str = env!("CARGO_BIN_EXE_rxtxcpu");
/// The names the binary answers to (its argv[0]); each has its own default
/// direction, and the name says what the streams are: cpus, queues or numa
/// nodes.
pub const NAMES: [&str; 9] = [
    "rxtxcpu",
    "rxcpu",
    "txcpu",
    "rxtxqueue",
    "rxqueue",
    "txqueue",
    "rxtxnuma",
    "rxnuma",
    "txnuma",
];

/// What a name's streams are, as its options name them: `cpu`, `queue`,
/// `numa` (`--cpu-list`, `--queue-list`, `--numa-list`).
pub fn list_word(name: &str) -> &'static str {
    if name.ends_with("queue") {
        "queue"
    } else if name.ends_with("numa") {
        "numa"
    } else {
        "cpu"
    }
}
/// `lo`'s address, where most tests send their traffic.
pub const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Port that `UdpSink`s listen on (senders to a local address use their own).
pub const UDP_PORT: u16 = 9999;
/// What `udp_send` puts in each datagram.
pub const PAYLOAD: &[u8] = b"rxtxcpu test datagram";

const READY_TIMEOUT: Duration = Duration::from_secs(15);
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

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

// ---------------------------------------------------------------------------
// Network namespaces

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
    (va, vb)
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

/// An IPv4 packet (header checksum set; UDP checksum 0, i.e. none) carrying
/// a UDP datagram.
pub fn ipv4_udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let mut sum: u32 = p
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let csum = !(sum as u16);
    p[10..12].copy_from_slice(&csum.to_be_bytes());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

// ---------------------------------------------------------------------------
// Threads inside a namespace, on a cpu

/// Moves the calling thread into namespace `ns` (only this thread).
fn enter_netns(ns: &str) {
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

/// Sends `count` UDP datagrams from `src` to `dst` in namespace `ns`, from a
/// thread pinned to `cpu`. If `dst` is local, a receiver bound to it takes
/// each datagram before the next is sent (so no ICMP port unreachable, and
/// every packet has been through the stack when this returns); on `lo` that
/// is exactly 2 packets (tx + rx) per datagram, on `cpu`. A remote `dst` gets
/// them on `UDP_PORT` (see `UdpSink`).
pub fn spawn_udp_send(
    ns: &Netns,
    cpu: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    count: usize,
) -> JoinHandle<()> {
    let name = ns.name.clone();
    thread::spawn(move || {
        pin_to_cpu(cpu);
        enter_netns(&name);
        let receiver = UdpSocket::bind((dst, 0)).ok(); // fails unless dst is local
        let port = match &receiver {
            Some(r) => {
                r.set_read_timeout(Some(RECV_TIMEOUT)).unwrap();
                r.local_addr().unwrap().port()
            }
            None => UDP_PORT,
        };
        let sock = UdpSocket::bind((src, 0)).unwrap();
        let mut buf = [0u8; 64];
        for i in 0..count {
            sock.send_to(PAYLOAD, (dst, port))
                .unwrap_or_else(|e| panic!("send {i} from {src} to {dst}: {e}"));
            if let Some(r) = &receiver {
                r.recv(&mut buf)
                    .unwrap_or_else(|e| panic!("datagram {i} to {dst} not received: {e}"));
            }
        }
    })
}

/// Sends `count` UDP datagrams from `src` (any port) to `dst:port` in
/// namespace `ns`, from a thread pinned to `cpu`; returns when all are sent.
/// Pair with a `UdpSink` (or `UdpSink::bind_port`) that takes them.
pub fn udp_send_port(
    ns: &Netns,
    cpu: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    port: u16,
    count: usize,
) {
    send_datagrams(ns, cpu, src, dst, port, PAYLOAD.to_vec(), count);
}

/// `udp_send_port` from `dst` to itself with `payload` in each datagram.
pub fn udp_send_port_with(
    ns: &Netns,
    cpu: usize,
    dst: Ipv4Addr,
    port: u16,
    payload: &[u8],
    count: usize,
) {
    send_datagrams(ns, cpu, dst, dst, port, payload.to_vec(), count);
}

fn send_datagrams(
    ns: &Netns,
    cpu: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    port: u16,
    payload: Vec<u8>,
    count: usize,
) {
    let name = ns.name.clone();
    thread::spawn(move || {
        pin_to_cpu(cpu);
        enter_netns(&name);
        let sock = UdpSocket::bind((src, 0)).unwrap();
        for i in 0..count {
            sock.send_to(&payload, (dst, port))
                .unwrap_or_else(|e| panic!("send {i} from {src} to {dst}:{port}: {e}"));
        }
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// Sends `count` datagrams of one flow, `src:sport` -> `dst:dport`, from a
/// socket bound to `src:sport` on a thread pinned to `cpu`; returns when
/// all are sent (and the socket is closed, so the port is free again).
pub fn udp_flow(
    ns: &Netns,
    cpu: usize,
    (src, sport): (std::net::IpAddr, u16),
    (dst, dport): (std::net::IpAddr, u16),
    count: usize,
) {
    let name = ns.name.clone();
    thread::spawn(move || {
        pin_to_cpu(cpu);
        enter_netns(&name);
        let sock = socket2_bind_reuse((src, sport));
        for i in 0..count {
            sock.send_to(PAYLOAD, (dst, dport))
                .unwrap_or_else(|e| panic!("send {i} from {src}:{sport} to {dst}:{dport}: {e}"));
        }
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// A UDP socket bound to `addr` with SO_REUSEADDR, so that one flow's
/// source port can be taken again right after.
fn socket2_bind_reuse(addr: (std::net::IpAddr, u16)) -> UdpSocket {
    use std::os::fd::FromRawFd;
    let family = if addr.0.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    // SAFETY: socket() takes no pointers; the fd is checked and then owned.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is fresh and owned by nothing else.
    let sock = unsafe { UdpSocket::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: a c_int option of its size on a live socket.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let sa = std::net::SocketAddr::from(addr);
    let (storage, len) = sockaddr(&sa);
    // SAFETY: storage holds a sockaddr of length len.
    let r = unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) };
    assert_eq!(r, 0, "bind {sa}: {}", std::io::Error::last_os_error());
    sock
}

fn sockaddr(sa: &std::net::SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match sa {
        std::net::SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Sends raw link-layer `frames` out of interface `ifname` of `ns` (an
/// AF_PACKET socket: what is written is what goes on the wire), from a
/// thread pinned to `cpu`.
pub fn send_frames(ns: &Netns, cpu: usize, ifname: &str, frames: Vec<Vec<u8>>) {
    let (name, ifname) = (ns.name.clone(), ifname.to_string());
    thread::spawn(move || {
        pin_to_cpu(cpu);
        enter_netns(&name);
        // SAFETY: socket() takes no pointers; checked below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        let cname = std::ffi::CString::new(ifname.clone()).unwrap();
        // SAFETY: a valid NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        assert!(ifindex > 0, "no interface {ifname}");
        for frame in &frames {
            // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = ifindex as i32;
            sll.sll_halen = 6;
            sll.sll_addr[..6].copy_from_slice(&frame[..6]);
            // SAFETY: frame and sll are live for the call, of the lengths given.
            let n = unsafe {
                libc::sendto(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            assert_eq!(
                n,
                frame.len() as isize,
                "sendto: {}",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// `spawn_udp_send` and wait for it.
pub fn udp_send(ns: &Netns, cpu: usize, src: Ipv4Addr, dst: Ipv4Addr, count: usize) {
    spawn_udp_send(ns, cpu, src, dst, count)
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// A UDP socket listening on `addr:UDP_PORT` in a namespace.
pub struct UdpSink(UdpSocket);

impl UdpSink {
    pub fn bind(ns: &Netns, addr: Ipv4Addr) -> UdpSink {
        UdpSink::bind_port(ns, addr, UDP_PORT)
    }

    /// A sink on `addr:port`.
    pub fn bind_port(ns: &Netns, addr: Ipv4Addr, port: u16) -> UdpSink {
        UdpSink(in_netns(ns, move || UdpSocket::bind((addr, port)).unwrap()))
    }

    /// Receives exactly `count` datagrams (so they have been through the
    /// receive path, and past every packet tap, on whichever cpu).
    pub fn expect(&self, count: usize) {
        self.0.set_read_timeout(Some(RECV_TIMEOUT)).unwrap();
        let mut buf = [0u8; 64];
        for i in 0..count {
            self.0
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("sink got {i} of {count} datagrams: {e}"));
        }
    }
}

/// `ip netns exec NS taskset -c CPU ping -c COUNT -i 0.2 -W 2 ADDR`; each
/// echo on `lo` is 4 packets on `cpu` (request tx+rx, reply tx+rx).
pub fn ping(ns: &Netns, cpu: usize, addr: Ipv4Addr, count: usize) {
    #[rustfmt::skip]
    ns.exec(&["taskset", "-c", &cpu.to_string(), "ping", "-q", "-c", &count.to_string(),
              "-i", "0.2", "-W", "2", &addr.to_string()]);
}

/// What a `Flood` sends, how fast and for how long at most.
#[derive(Clone, Copy, Debug)]
pub struct FloodOptions {
    /// Every datagram's payload (a distinctive one tells floods apart).
    pub payload: &'static [u8],
    /// Datagrams per second; None: as fast as possible.
    pub per_sec: Option<u64>,
    /// The flood stops by itself after this long.
    pub limit: Duration,
}

impl Default for FloodOptions {
    fn default() -> FloodOptions {
        FloodOptions {
            payload: b"flood",
            per_sec: None,
            limit: Duration::from_secs(60),
        }
    }
}

/// UDP datagrams sent as fast as possible (or at a set rate) from a thread
/// pinned to a cpu, until stopped (or dropped; at most a minute by
/// default). When the kernel moves the thread off its cpu (the cpu went
/// offline), it pins itself again as soon as the cpu is back.
pub struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl Flood {
    pub fn start(ns: &Netns, cpu: usize, dst: Ipv4Addr) -> Flood {
        Flood::start_with(ns, cpu, dst, FloodOptions::default())
    }

    pub fn start_with(ns: &Netns, cpu: usize, dst: Ipv4Addr, opts: FloodOptions) -> Flood {
        let (stop, sent) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (name, stop2, sent2) = (ns.name.clone(), stop.clone(), sent.clone());
        let handle = thread::spawn(move || {
            pin_to_cpu(cpu);
            enter_netns(&name);
            // Never read: it just keeps the stack from answering with ICMP.
            let receiver = UdpSocket::bind((dst, 0)).ok();
            let port = receiver
                .as_ref()
                .map_or(UDP_PORT, |r| r.local_addr().unwrap().port());
            let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            let mut on_cpu = CpuSet::new();
            on_cpu.set(cpu).unwrap();
            let start = Instant::now();
            let end = start + opts.limit;
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) && Instant::now() < end {
                if n % 256 == 0 {
                    if nix::sched::sched_getcpu().is_ok_and(|c| c != cpu) {
                        // Fails (EINVAL) while the cpu is offline.
                        let _ = sched_setaffinity(Pid::from_raw(0), &on_cpu);
                    }
                    if let Some(rate) = opts.per_sec {
                        let due = Duration::from_secs_f64(n as f64 / rate as f64);
                        if let Some(early) = due.checked_sub(start.elapsed()) {
                            thread::sleep(early);
                        }
                    }
                }
                if sock.send_to(opts.payload, (dst, port)).is_ok() {
                    sent2.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
        });
        Flood {
            stop,
            sent,
            handle: Some(handle),
        }
    }

    /// Waits until `n` more datagrams have been sent.
    pub fn wait_for_more(&self, n: u64) {
        let target = self.sent.load(Ordering::Relaxed) + n;
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.sent.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "flood stalled");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the flood; returns how many datagrams were sent.
    pub fn stop(mut self) -> u64 {
        self.halt();
        self.sent.load(Ordering::Relaxed)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().expect("flood thread panicked");
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.halt();
    }
}

// ---------------------------------------------------------------------------
// Running the binary

/// Path that invokes the binary as `name` (its argv[0] basename): the binary
/// itself for `rxtxcpu`, else a symlink `name` in the cargo target tmpdir.
pub fn program(name: &str) -> PathBuf {
    if name == "rxtxcpu" {
        return PathBuf::from(BIN);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("argv0");
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join(name);
    if std::fs::read_link(&link).ok().as_deref() != Some(Path::new(BIN)) {
        // Atomic replace: other tests (and test binaries) may race here.
        let tmp = dir.join(format!("{name}.{}.{}", std::process::id(), unique()));
        std::os::unix::fs::symlink(BIN, &tmp).unwrap();
        std::fs::rename(&tmp, &link).unwrap();
    }
    link
}

#[derive(Default)]
struct Collected {
    text: String,
    eof: bool,
}

/// A running rxtxcpu (killed on drop if still running).
pub struct Capture {
    child: Child,
    /// Its arguments, for messages.
    args: String,
    stderr: Arc<(Mutex<Collected>, Condvar)>,
    /// The threads reading stdout (unless it goes elsewhere) and stderr.
    stdout_reader: Option<JoinHandle<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
}

/// How a run of the binary ended.
pub struct Finished {
    pub status: ExitStatus,
    /// stdout as text (lossy: see `stdout_bytes` for a pcap stream).
    pub stdout: String,
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
}

impl Capture {
    /// Spawns the binary as `name` (inside `ns` if given) with exactly `args`;
    /// does not wait for anything.
    pub fn spawn(ns: Option<&Netns>, name: &str, args: &[&str]) -> Capture {
        Capture::spawn_via(ns, &[], &program(name), args)
    }

    /// Spawns `program` (inside `ns` if given) under the `wrapper` command
    /// line, if any (`env VAR=1`, `setpriv --reuid=...`), with exactly
    /// `args`; does not wait for anything.
    pub fn spawn_via(
        ns: Option<&Netns>,
        wrapper: &[&str],
        program: &Path,
        args: &[&str],
    ) -> Capture {
        Capture::launch(ns, wrapper, program, args, None)
    }

    /// Spawns `rxtxcpu -v args` in `ns` with its stdout going to `stdout`
    /// instead of being collected: a pipe the test hands to another
    /// program or closes (`Stdio::piped()`, then `take_stdout`). Does not
    /// wait for anything (`wait_ready` does).
    pub fn spawn_with_stdout(ns: &Netns, args: &[&str], stdout: Stdio) -> Capture {
        let mut argv = vec!["-v"];
        argv.extend_from_slice(args);
        Capture::launch(Some(ns), &[], Path::new(BIN), &argv, Some(stdout))
    }

    fn launch(
        ns: Option<&Netns>,
        wrapper: &[&str],
        program: &Path,
        args: &[&str],
        stdout: Option<Stdio>,
    ) -> Capture {
        let mut argv: Vec<&std::ffi::OsStr> = Vec::new();
        if let Some(ns) = ns {
            argv.extend(["netns", "exec", ns.name.as_str()].map(std::ffi::OsStr::new));
        }
        argv.extend(wrapper.iter().map(std::ffi::OsStr::new));
        argv.push(program.as_os_str());
        let mut cmd = match ns {
            Some(_) => Command::new("ip"),
            None => Command::new(argv.remove(0)),
        };
        let collect_stdout = stdout.is_none();
        // A test run under nohup (or from a shell that ignores SIGHUP) must
        // not pass that on: rxtxcpu keeps an inherited ignore, as tcpdump
        // does, and the SIGHUP tests would wait forever. The nohup test
        // sets it again through its wrapper.
        // SAFETY: between fork and exec only async-signal-safe calls are
        // allowed; signal(2) is one.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::signal(libc::SIGHUP, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = cmd
            .args(argv)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout.unwrap_or_else(Stdio::piped))
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rxtxcpu");
        let stdout_reader = collect_stdout.then(|| {
            let mut out = child.stdout.take().unwrap();
            thread::spawn(move || {
                let mut buf = Vec::new();
                out.read_to_end(&mut buf).unwrap();
                buf
            })
        });
        let collected = Arc::new((Mutex::new(Collected::default()), Condvar::new()));
        let shared = collected.clone();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let stderr_reader = thread::spawn(move || {
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = err.read_until(b'\n', &mut line).unwrap_or(0);
                let (lock, cv) = &*shared;
                let mut c = lock.lock().unwrap();
                c.text.push_str(&String::from_utf8_lossy(&line));
                c.eof = n == 0;
                cv.notify_all();
                if n == 0 {
                    return;
                }
            }
        });
        Capture {
            child,
            args: format!("{args:?}"),
            stderr: collected,
            stdout_reader,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// Starts a capture as `name` in `ns` with `-v` and `args`, and waits
    /// for its `listening on` line (panics if it exits or takes too long).
    pub fn start(ns: &Netns, name: &str, args: &[&str]) -> Capture {
        Capture::start_via(ns, &[], &program(name), args)
    }

    /// `start` for `program` run under `wrapper` (see `spawn_via`).
    pub fn start_via(ns: &Netns, wrapper: &[&str], program: &Path, args: &[&str]) -> Capture {
        let mut argv = vec!["-v"];
        argv.extend_from_slice(args);
        let mut cap = Capture::spawn_via(Some(ns), wrapper, program, &argv);
        cap.wait_ready();
        cap
    }

    /// Waits for the `listening on` line of `-v` (kills the process and
    /// panics if it exits first or takes too long).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let (lock, cv) = &*self.stderr;
        let mut c = lock.lock().unwrap();
        loop {
            if c.text.lines().any(|l| l.contains("listening on")) {
                return;
            }
            let now = Instant::now();
            if c.eof || now >= deadline {
                let why = if c.eof { "exited" } else { "timed out" };
                drop(c);
                let _ = self.child.kill();
                let status = self.child.wait().unwrap();
                panic!(
                    "capture {} {why} before `listening on` ({status}); stderr:\n{}",
                    self.args,
                    self.stderr_now()
                );
            }
            c = cv.wait_timeout(c, deadline - now).unwrap().0;
        }
    }

    /// The read end of the stdout pipe (see `spawn_with_stdout`).
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.child
            .stdout
            .take()
            .expect("stdout is not a pipe to take")
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Whether the process ends within `limit` (it is left running if not).
    pub fn exited_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.is_running() {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
        true
    }

    pub fn signal(&self, sig: Signal) {
        nix::sys::signal::kill(self.pid(), sig).unwrap_or_else(|e| panic!("kill {sig}: {e}"));
    }

    /// What the process wrote to stderr so far.
    pub fn stderr_now(&self) -> String {
        self.stderr.0.lock().unwrap().text.clone()
    }

    /// Waits for the process to end by itself (kills it and panics after a
    /// timeout).
    pub fn wait(self) -> Finished {
        self.wait_within(EXIT_TIMEOUT)
    }

    /// `wait`, for a process that must end by itself within `limit`.
    pub fn wait_within(mut self, limit: Duration) -> Finished {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "rxtxcpu did not exit within {limit:?}; stderr:\n{}",
                    self.stderr_now()
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        let stdout_bytes = self
            .stdout_reader
            .take()
            .map_or_else(Vec::new, |r| r.join().unwrap());
        self.stderr_reader.take().unwrap().join().unwrap();
        Finished {
            status,
            stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
            stdout_bytes,
            stderr: self.stderr_now(),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the binary as `name` with `args` outside any namespace (for
/// invocations that end before capturing anything).
pub fn run(name: &str, args: &[&str]) -> Finished {
    Capture::spawn(None, name, args).wait()
}

/// Runs the binary as `name` with `args` inside `ns`, to completion.
pub fn run_in(ns: &Netns, name: &str, args: &[&str]) -> Finished {
    Capture::spawn(Some(ns), name, args).wait()
}

impl fmt::Display for Finished {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}--- stderr ---\n{}--------------",
            self.status, self.stdout, self.stderr
        )
    }
}

impl Finished {
    /// The report on stdout (panics, with everything, if malformed): all
    /// of stdout, or with --flows what comes before the flow table.
    pub fn report(&self) -> Report {
        let end = self
            .stdout
            .find(" packets captured total.\n")
            .map_or(self.stdout.len(), |i| {
                i + " packets captured total.\n".len()
            });
        let (report, rest) = self.stdout.split_at(end);
        assert!(
            rest.is_empty()
                || rest.starts_with("PROTO ")
                || rest.ends_with(" flows seen, 0 on more than one stream (SPLIT).\n")
                || rest.contains("flow"),
            "stdout after the report is not a flow table:\n{self}"
        );
        Report::parse(report).unwrap_or_else(|e| panic!("bad report: {e}\n{self}"))
    }

    /// The report where `-w -` puts it: at the end of stderr.
    pub fn report_from_stderr(&self) -> Report {
        let start = self
            .stderr
            .lines()
            .position(|l| l.contains(" packets captured "))
            .unwrap_or_else(|| panic!("no report on stderr\n{self}"));
        let text: String = self
            .stderr
            .lines()
            .skip(start)
            .map(|l| format!("{l}\n"))
            .collect();
        Report::parse(&text).unwrap_or_else(|e| panic!("bad report on stderr: {e}\n{self}"))
    }

    /// The kernel drop lines on stderr (`N packets dropped by kernel on
    /// cpuX.`, `1 packet ...`), by cpu; cpus without drops have no line.
    pub fn drops(&self) -> BTreeMap<u32, u64> {
        self.drops_by_place()
            .into_iter()
            .filter_map(|(p, n)| match p {
                Place::Cpu(c) => Some((c, n)),
                _ => None,
            })
            .collect()
    }

    /// The lines on stderr after a stream's files failed (`rxtxcpu: N
    /// captured packets on cpu0 are not in the file`), by stream; streams
    /// whose files hold every packet they captured have none.
    pub fn not_in_file(&self) -> BTreeMap<Place, u64> {
        self.stderr
            .lines()
            .filter_map(|l| {
                let (_, rest) = l.split_once(": ")?;
                let (n, rest) = rest.split_once(" captured packets ")?;
                let place = rest.strip_suffix(" are not in the file")?;
                Some((Place::parse(place)?, n.parse().ok()?))
            })
            .collect()
    }

    /// The kernel drop lines on stderr, by stream, whatever the vantage.
    pub fn drops_by_place(&self) -> BTreeMap<Place, u64> {
        self.stderr
            .lines()
            .filter_map(|l| {
                let (n, place) = l
                    .split_once(" packets dropped by kernel ")
                    .or_else(|| l.split_once(" packet dropped by kernel "))?;
                Some((Place::parse(place.strip_suffix('.')?)?, n.parse().ok()?))
            })
            .collect()
    }

    /// Packets `cpu` saw: those its report line counts plus those its drop
    /// line says the kernel dropped.
    pub fn seen_on(&self, cpu: u32) -> u64 {
        self.report().per_cpu[&cpu] + self.drops().get(&cpu).copied().unwrap_or(0)
    }

    /// Stderr after the `listening on` line (empty without one): what the
    /// capture said once it was capturing.
    pub fn after_ready(&self) -> &str {
        self.stderr
            .split_once("listening on")
            .and_then(|(_, rest)| rest.split_once('\n'))
            .map_or("", |(_, rest)| rest)
    }

    /// Exit 0, and nothing lost silently: what the capture counted plus what
    /// the kernel dropped is exactly `reached`, the frames that reached the
    /// interface (`Netns::tapped_frames`). When nothing was lost before the
    /// taps either (`reached` is all that was sent), each cpu saw exactly
    /// its share, `per_cpu[cpu]`.
    pub fn assert_accounted_for(&self, what: &str, reached: u64, per_cpu: [u64; 2]) {
        assert_eq!(self.status.code(), Some(0), "{what}\n{self}");
        let captured = self.report().total;
        let dropped: u64 = self.drops().values().sum();
        assert_eq!(
            captured + dropped,
            reached,
            "{what}: captured {captured} + dropped {dropped} != {reached} frames\n{self}"
        );
        if reached == per_cpu.iter().sum::<u64>() {
            for cpu in [0, 1] {
                let want = per_cpu[cpu as usize];
                assert_eq!(self.seen_on(cpu), want, "{what}: cpu{cpu}\n{self}");
            }
        }
    }

    /// Exit 0 and exactly these `(cpu, packets)` report lines.
    pub fn assert_report(&self, expected: &[(u32, u64)]) {
        assert_eq!(self.status.code(), Some(0), "exit status\n{self}");
        let report = self.report();
        let expected: BTreeMap<u32, u64> = expected.iter().copied().collect();
        assert_eq!(report.per_cpu, expected, "per-cpu counts\n{self}");
    }

    /// Exit 0 and exactly these `(queue, packets)` report lines, and the
    /// no-queue line if `no_queue` is Some.
    pub fn assert_queue_report(&self, expected: &[(u32, u64)], no_queue: Option<u64>) {
        assert_eq!(self.status.code(), Some(0), "exit status\n{self}");
        let report = self.report();
        let expected: BTreeMap<u32, u64> = expected.iter().copied().collect();
        assert_eq!(report.per_queue, expected, "per-queue counts\n{self}");
        assert_eq!(report.no_queue, no_queue, "no-queue line\n{self}");
    }

    /// Exit 0 and exactly these `(node, packets)` report lines.
    pub fn assert_node_report(&self, expected: &[(u32, u64)]) {
        assert_eq!(self.status.code(), Some(0), "exit status\n{self}");
        let report = self.report();
        let expected: BTreeMap<u32, u64> = expected.iter().copied().collect();
        assert_eq!(report.per_node, expected, "per-node counts\n{self}");
    }

    /// Exit 1, nothing on stdout, and exactly `message` (one line) on stderr.
    pub fn assert_runtime_error(&self, message: &str) {
        assert_eq!(self.status.code(), Some(1), "{self}");
        assert_eq!(self.stdout, "", "{self}");
        assert_eq!(self.stderr, format!("{message}\n"), "{self}");
    }

    /// Exit 2, empty stdout, and stderr = `<name>: <message>` + the usage.
    pub fn assert_usage_error(&self, name: &str, message: &str) {
        assert_eq!(self.status.code(), Some(2), "exit status\n{self}");
        assert_eq!(self.stdout, "", "stdout\n{self}");
        let (first, usage) = self.stderr.split_once('\n').unwrap_or((&self.stderr, ""));
        assert_eq!(first, format!("{name}: {message}"), "message\n{self}");
        if let Err(e) = check_usage(name, usage) {
            panic!("usage block: {e}\n{self}");
        }
    }
}

/// Checks every `(name, args, message)` case with `run(name, args)
/// .assert_usage_error(name, message)`, then reports all the cases that
/// failed, not just the first: a table of cases is best fixed whole.
pub fn check_usage_errors<M: AsRef<str>>(cases: &[(&str, &[&str], M)]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(name, args, message)| {
            let (f, message) = (run(name, args), message.as_ref());
            std::panic::catch_unwind(|| f.assert_usage_error(name, message))
                .err()
                .map(|e| {
                    let why = e
                        .downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_else(|| format!("{:?}", e.downcast_ref::<&str>()));
                    format!("`{name} {}`: {why}", args.join(" "))
                })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// The usage options of the contract, in its order (new options may join),
/// for a name whose list word is `word` (`cpu`, `queue`, `numa`).
pub fn usage_options(word: &str) -> [String; 9] {
    let up = word.to_uppercase();
    [
        "[--help]".to_string(),
        "[--count=N]".to_string(),
        format!("[--{word}-list={up}LIST|--{word}-mask={up}MASK]"),
        "[--direction=DIRECTION]".to_string(),
        "[--packet-buffered]".to_string(),
        "[--promiscuous]".to_string(),
        "[--verbose]".to_string(),
        "[--version]".to_string(),
        "[--write=FILE]".to_string(),
    ]
}

/// Checks a usage block: `Usage: NAME [--help] ...`, greedily wrapped at 79
/// columns with continuation lines indented under the first bracket, naming
/// every option of the contract (in order) and `[--buffer-size=KIB]`.
pub fn check_usage(name: &str, usage: &str) -> Result<(), String> {
    let head = format!("Usage: {name} ");
    let indent = " ".repeat(head.len());
    let lines: Vec<&str> = usage
        .strip_suffix('\n')
        .ok_or("does not end with a newline")?
        .split('\n')
        .collect();
    if !lines[0].starts_with(&format!("{head}[--help]")) {
        return Err(format!("first line {:?}", lines[0]));
    }
    let mut tokens = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let body = if i == 0 {
            &line[head.len()..]
        } else {
            line.strip_prefix(indent.as_str())
                .filter(|b| b.starts_with('['))
                .ok_or(format!("line {i} not indented under the bracket: {line:?}"))?
        };
        if line.len() > 79 || line.ends_with(' ') || body.contains("  ") {
            return Err(format!("badly formatted line {i}: {line:?}"));
        }
        if let Some(next) = lines.get(i + 1) {
            let first_next = next.split_whitespace().next().unwrap_or("");
            if line.len() + 1 + first_next.len() <= 79 {
                return Err(format!("line {i} wrapped too early: {line:?}"));
            }
        }
        tokens.extend(body.split(' '));
    }
    if let Some(t) = tokens
        .iter()
        .find(|t| !(t.starts_with("[--") && t.ends_with(']')))
    {
        return Err(format!("token {t:?} is not `[--option...]`"));
    }
    let mut rest = tokens.iter();
    for want in usage_options(list_word(name)) {
        if !rest.any(|t| *t == want) {
            return Err(format!("{want} missing or out of order in {tokens:?}"));
        }
    }
    if !tokens.contains(&"[--buffer-size=KIB]") {
        return Err(format!("[--buffer-size=KIB] missing in {tokens:?}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// A terminal

/// A pseudo-terminal of `cols` x `rows`: what the program sees on a
/// user's terminal (isatty, a window size). Both ends close on exec, so a
/// program spawned elsewhere at the same time cannot hold the terminal
/// open; the program under test gets the slave end as one of its stdio.
pub struct Pty {
    master: File,
    slave: Option<std::os::fd::OwnedFd>,
}

impl Pty {
    pub fn new(cols: u16, rows: u16) -> Pty {
        use std::os::fd::FromRawFd;
        // SAFETY: plain libc calls on descriptors this function owns; each
        // result is checked before use, and ptsname_r writes at most
        // `name.len()` bytes into `name`.
        unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
            let master = File::from_raw_fd(m);
            assert_eq!(libc::grantpt(m), 0, "grantpt");
            assert_eq!(libc::unlockpt(m), 0, "unlockpt");
            let mut name = [0 as libc::c_char; 64];
            assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
            let ws = libc::winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            assert_eq!(libc::ioctl(m, libc::TIOCSWINSZ, &ws), 0, "TIOCSWINSZ");
            let s = libc::open(
                name.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            );
            assert!(s >= 0, "open slave: {}", std::io::Error::last_os_error());
            Pty {
                master,
                slave: Some(std::os::fd::OwnedFd::from_raw_fd(s)),
            }
        }
    }

    /// The terminal end, for a child's stdout or stderr (once).
    pub fn stdio(&mut self) -> Stdio {
        Stdio::from(self.slave.take().expect("the terminal end was given away"))
    }

    /// Reads, on a thread, everything written to the terminal until the
    /// last program holding it exits, one line at a time into the
    /// returned channel, with the terminal's `\r\n` as `\n`.
    pub fn lines(mut self) -> std::sync::mpsc::Receiver<String> {
        // Our copy of the terminal end must go, or the reads never end.
        drop(self.slave.take());
        let (tx, rx) = std::sync::mpsc::channel();
        let master = self.master;
        thread::spawn(move || {
            let mut r = BufReader::new(master);
            let mut line = Vec::new();
            // When the last slave closes the read fails with EIO: the end.
            while matches!(r.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let text = String::from_utf8_lossy(&line).replace("\r\n", "\n");
                if tx.send(text).is_err() {
                    return;
                }
                line.clear();
            }
        });
        rx
    }
}

/// Everything a [`Pty::lines`] channel brings until the terminal closes.
pub fn read_terminal(lines: &std::sync::mpsc::Receiver<String>) -> String {
    let mut text = String::new();
    while let Ok(l) = lines.recv_timeout(EXIT_TIMEOUT) {
        text.push_str(&l);
    }
    text
}

// ---------------------------------------------------------------------------
// The report

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// `N packets captured on cpuK.` lines.
    pub per_cpu: BTreeMap<u32, u64>,
    /// `N packets captured on queue K.` lines.
    pub per_queue: BTreeMap<u32, u64>,
    /// `N packets captured on numa node K.` lines.
    pub per_node: BTreeMap<u32, u64>,
    /// The `N packets captured with no receive queue recorded.` line.
    pub no_queue: Option<u64>,
    pub total: u64,
}

/// The stream a report, drop or file line names: `cpu3`, `queue 2`,
/// `numa node 0`, or the no-queue stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Place {
    Cpu(u32),
    Queue(u32),
    Node(u32),
    NoQueue,
}

impl Place {
    /// Parses what follows `captured ` / `dropped by kernel ` in a line,
    /// without the final dot: `on cpu3`, `on queue 2`, `on numa node 0`,
    /// `with no receive queue recorded`. Exact: no other spelling passes.
    pub fn parse(s: &str) -> Option<Place> {
        let num = |p: &str| -> Option<u32> {
            let n: u32 = p.parse().ok()?;
            (n.to_string() == p).then_some(n)
        };
        if s == "with no receive queue recorded" {
            return Some(Place::NoQueue);
        }
        let s = s.strip_prefix("on ")?;
        if let Some(n) = s.strip_prefix("numa node ") {
            return num(n).map(Place::Node);
        }
        if let Some(n) = s.strip_prefix("queue ") {
            return num(n).map(Place::Queue);
        }
        num(s.strip_prefix("cpu")?).map(Place::Cpu)
    }
}

impl Report {
    /// Parses `N packets captured on cpuX.` lines (or `on queue X`, `on
    /// numa node X`, in ascending order, one kind only, the no-queue line
    /// last) followed by `N packets captured total.`, which must be their
    /// sum, and nothing else.
    pub fn parse(text: &str) -> Result<Report, String> {
        let body = text.strip_suffix('\n').ok_or("no final newline")?;
        let mut lines: Vec<&str> = body.split('\n').collect();
        let last = lines.pop().unwrap();
        let total: u64 = last
            .strip_suffix(" packets captured total.")
            .and_then(|n| n.parse().ok())
            .filter(|n: &u64| format!("{n} packets captured total.") == last)
            .ok_or(format!("bad total line {last:?}"))?;
        let mut report = Report {
            total,
            ..Report::default()
        };
        let mut prev: Option<Place> = None;
        let mut sum = 0;
        for line in lines {
            let parsed = line.split_once(" packets captured ").and_then(|(n, rest)| {
                let n: u64 = n.parse().ok().filter(|v: &u64| v.to_string() == n)?;
                Some((Place::parse(rest.strip_suffix('.')?)?, n))
            });
            let (place, n) = parsed.ok_or(format!("bad stream line {line:?}"))?;
            let same_kind =
                |a: Place, b: Place| std::mem::discriminant(&a) == std::mem::discriminant(&b);
            if let Some(p) = prev {
                let ok = match (p, place) {
                    (Place::Queue(_), Place::NoQueue) => true,
                    (Place::NoQueue, _) => false,
                    (a, b) => same_kind(a, b) && a < b,
                };
                if !ok {
                    return Err(format!("stream lines out of order at {line:?}"));
                }
            }
            prev = Some(place);
            sum += n;
            match place {
                Place::Cpu(c) => report.per_cpu.insert(c, n),
                Place::Queue(q) => report.per_queue.insert(q, n),
                Place::Node(k) => report.per_node.insert(k, n),
                Place::NoQueue => report.no_queue.replace(n),
            };
        }
        if sum != total {
            return Err(format!("stream lines add up to {sum}, total says {total}"));
        }
        Ok(report)
    }
}

// ---------------------------------------------------------------------------
// Scratch directories and pcap files

/// A fresh directory under cargo's target tmpdir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        TempDir::new_in(Path::new(env!("CARGO_TARGET_TMPDIR")))
    }

    /// A fresh directory in `parent` (e.g. the system's temp directory, for
    /// files another user must reach).
    pub fn new_in(parent: &Path) -> TempDir {
        let name = format!("rxtxcpu-t-{}-{}", std::process::id(), unique());
        let dir = parent.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }

    /// `files_under` the directory.
    pub fn files(&self) -> Vec<String> {
        files_under(&self.0)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tmpfs of `size` (`64k`) mounted on a fresh directory, for a file
/// system that fills up; unmounted on drop, lazily: a capture that is still
/// being killed may hold a file open.
pub struct Tmpfs {
    pub dir: TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Tmpfs {
        let dir = TempDir::new();
        #[rustfmt::skip]
        sh("mount", &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", &dir.path("")]);
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.dir.0)
            .stderr(Stdio::null())
            .status();
    }
}

/// The files (and symlinks, not followed) under `dir`, as paths relative to
/// it, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap();
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The file `-w template` writes for `cpu`: `out.pcap` -> `out-<cpu>.pcap`
/// (every template here has an extension). Spelled out rather than taken
/// from `rxtxcpu::consumers::files::cpu_path`, so that the tests look where the
/// contract puts the files, not wherever the code does.
pub fn cpu_file(template: &str, cpu: u32) -> String {
    let (stem, ext) = template.rsplit_once('.').expect("template extension");
    format!("{stem}-{cpu}.{ext}")
}

/// A packet of a pcap stream.
#[derive(Debug)]
pub struct Packet {
    pub timestamp: Duration,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// A pcap stream but for its packets.
#[derive(Debug)]
pub struct PcapFile {
    pub header: PcapHeader,
    pub packets: u64,
}

/// Reads a pcap stream a record at a time (it may be large), checking each,
/// and hands every packet to `each`. Fails on a bad header or record, a
/// record longer than the snapshot length or than the packet, a timestamp
/// fraction out of range, and, if `complete`, a partial record at the end
/// (else that ends the stream: a file still being written).
///
/// Records are read raw and checked here, because pcap-file 2.0's checked
/// reader wrongly rejects packets longer than the snapshot length (orig_len
/// > snaplen); every other record must pass the checked reader too.
pub fn scan_pcap(
    input: impl Read,
    complete: bool,
    mut each: impl FnMut(Packet),
) -> Result<PcapFile, String> {
    let mut reader = PcapReader::new(input).map_err(|e| format!("pcap header: {e}"))?;
    let header = reader.header();
    let (resolution, snaplen) = (header.ts_resolution, header.snaplen);
    let frac_unit = match resolution {
        TsResolution::MicroSecond => 1000,
        TsResolution::NanoSecond => 1,
    };
    let mut packets = 0;
    while let Some(raw) = reader.next_raw_packet() {
        let raw = match raw {
            Ok(raw) => raw,
            Err(e) if complete => return Err(format!("after {packets} packets: {e}")),
            Err(_) => break,
        };
        let bad = |what: &str| format!("packet {packets}: {what}: {raw:?}");
        if raw.incl_len > snaplen || raw.incl_len > raw.orig_len {
            return Err(bad("incl_len above snaplen or orig_len"));
        }
        if u64::from(raw.ts_frac) * frac_unit >= 1_000_000_000 {
            return Err(bad("timestamp fraction out of range"));
        }
        let timestamp = Duration::new(raw.ts_sec.into(), raw.ts_frac * frac_unit as u32);
        if raw.orig_len <= snaplen {
            let checked = PcapPacket::try_from_raw_packet(raw.clone(), resolution, snaplen)
                .map_err(|e| bad(&format!("pcap-file rejects it ({e})")))?;
            if checked.timestamp != timestamp {
                return Err(bad(&format!("pcap-file reads {:?}", checked.timestamp)));
            }
        }
        each(Packet {
            timestamp,
            orig_len: raw.orig_len,
            data: raw.data.into_owned(),
        });
        packets += 1;
    }
    Ok(PcapFile { header, packets })
}

/// The header and packets of the complete pcap file at `path` (panics
/// unless `scan_pcap` accepts it).
pub fn read_pcap(path: &str) -> (PcapHeader, Vec<Packet>) {
    let input = File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut packets = Vec::new();
    let file =
        scan_pcap(input, true, |p| packets.push(p)).unwrap_or_else(|e| panic!("{path}: {e}"));
    (file.header, packets)
}

/// Checks the per-cpu files of a capture run with `-w template` against its
/// report: one complete, valid pcap file per report line, holding exactly
/// the packets that line counts, less those a line on stderr says are not
/// in the file (after a failed write). The files are read a packet at a
/// time (a flood makes large ones), and `each` gets every packet, with its
/// cpu, for the caller's own checks. Returns the files' headers by cpu.
pub fn assert_files_match_report(
    f: &Finished,
    template: &str,
    mut each: impl FnMut(u32, Packet),
) -> BTreeMap<u32, PcapHeader> {
    let mut headers = BTreeMap::new();
    let missing = f.not_in_file();
    for (&cpu, &n) in &f.report().per_cpu {
        let n = n - missing.get(&Place::Cpu(cpu)).copied().unwrap_or(0);
        let path = cpu_file(template, cpu);
        let input = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}\n{f}"));
        let file =
            scan_pcap(input, true, |p| each(cpu, p)).unwrap_or_else(|e| panic!("{path}: {e}\n{f}"));
        assert_eq!(file.packets, n, "{path} against the report\n{f}");
        headers.insert(cpu, file.header);
    }
    headers
}

// ---------------------------------------------------------------------------
// pcapng files, and tshark

/// What a pcapng file holds, read with pcap-file (which checks every
/// block).
#[derive(Debug, Default)]
pub struct PcapNg {
    /// (if_name, if_description) of each interface, in order.
    pub interfaces: Vec<(String, String)>,
    /// (interface, timestamp, epb_flags, data) of each packet.
    pub packets: Vec<(u32, Duration, Option<u32>, Vec<u8>)>,
    /// The other options of each packet, in the order of `packets`.
    pub options: Vec<EpbOptions>,
    /// (interface, isb_ifrecv, isb_ifdrop, isb_osdrop) of each statistics
    /// block.
    pub stats: Vec<IsbCounts>,
}

/// A packet's epb_hash options (algorithm octet, then the hash) and
/// comments.
#[derive(Debug, Default)]
pub struct EpbOptions {
    pub hashes: Vec<Vec<u8>>,
    pub comments: Vec<String>,
}

/// (interface, isb_ifrecv, isb_ifdrop, isb_osdrop) of a statistics block.
pub type IsbCounts = (u32, Option<u64>, Option<u64>, Option<u64>);

/// Reads the whole pcapng stream `input` (panics on anything invalid).
pub fn read_pcapng(input: impl Read) -> PcapNg {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    use pcap_file::pcapng::blocks::interface_statistics::InterfaceStatisticsOption;
    use pcap_file::pcapng::{Block, PcapNgReader};
    let mut reader = PcapNgReader::new(input).expect("pcapng section header");
    let mut file = PcapNg::default();
    while let Some(block) = reader.next_block() {
        match block.expect("a valid pcapng block") {
            Block::InterfaceDescription(idb) => {
                let (mut name, mut desc) = (String::new(), String::new());
                for o in &idb.options {
                    match o {
                        InterfaceDescriptionOption::IfName(n) => name = n.to_string(),
                        InterfaceDescriptionOption::IfDescription(d) => desc = d.to_string(),
                        _ => {}
                    }
                }
                file.interfaces.push((name, desc));
            }
            Block::EnhancedPacket(epb) => {
                let flags = epb.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Flags(f) => Some(*f),
                    _ => None,
                });
                let mut options = EpbOptions::default();
                for o in &epb.options {
                    match o {
                        EnhancedPacketOption::Hash(h) => options.hashes.push(h.to_vec()),
                        EnhancedPacketOption::Comment(c) => options.comments.push(c.to_string()),
                        _ => {}
                    }
                }
                file.options.push(options);
                file.packets.push((
                    epb.interface_id,
                    epb.timestamp,
                    flags,
                    epb.data.into_owned(),
                ));
            }
            Block::InterfaceStatistics(isb) => {
                let get = |want: fn(&InterfaceStatisticsOption) -> Option<u64>| {
                    isb.options.iter().find_map(want)
                };
                file.stats.push((
                    isb.interface_id,
                    get(|o| match o {
                        InterfaceStatisticsOption::IsbIfRecv(n) => Some(*n),
                        _ => None,
                    }),
                    get(|o| match o {
                        InterfaceStatisticsOption::IsbIfDrop(n) => Some(*n),
                        _ => None,
                    }),
                    get(|o| match o {
                        InterfaceStatisticsOption::IsbOsDrop(n) => Some(*n),
                        _ => None,
                    }),
                ));
            }
            _ => {}
        }
    }
    file
}

/// `tshark -r FILE -T fields -e F...` (FILE `-` reads `stdin`): one row of
/// field values per packet. None where tshark is not installed.
pub fn tshark_fields(file: &str, fields: &[&str]) -> Option<Vec<Vec<String>>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r", file, "-T", "fields", "-E", "separator=|"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = output_if_installed(&mut cmd)?;
    assert!(out.status.success(), "{}", show("tshark", &out));
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('|').map(str::to_string).collect())
            .collect(),
    )
}
