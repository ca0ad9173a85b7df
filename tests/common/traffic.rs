//! Deterministic traffic: raw IPv4/UDP packets, datagrams sent from a
//! pinned thread in a namespace (counted, one flow, or raw frames), a
//! receiver that takes them, ping, and a flood that runs until stopped.

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;

use super::netns::{enter_netns, in_netns, pin_to_cpu, Netns};
use super::{PAYLOAD, UDP_PORT};

const RECV_TIMEOUT: Duration = Duration::from_secs(5);

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
    send_frames_refused(ns, cpu, ifname, frames, None);
}

/// `send_frames` where the device may refuse frames with `refused` (an
/// errno: ENOBUFS from a device that drops what it is given), which is
/// then no failure.
pub fn send_frames_refused(
    ns: &Netns,
    cpu: usize,
    ifname: &str,
    frames: Vec<Vec<u8>>,
    refused: Option<i32>,
) {
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
            let e = std::io::Error::last_os_error();
            assert!(
                n == frame.len() as isize || (refused.is_some() && e.raw_os_error() == refused),
                "sendto: {e}"
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

/// Many short UDP flows, spread evenly over `over`: from a thread pinned to
/// `cpu`, each of `sockets` sockets (on ports of their own) sends
/// `per_flow` datagrams to each port of `ports` on `dst` in turn, so that
/// every flow is new and, once its datagrams are sent, never seen again.
/// The thread returns how many datagrams it sent.
pub fn spawn_udp_churn(
    ns: &Netns,
    cpu: usize,
    dst: Ipv4Addr,
    ports: std::ops::Range<u16>,
    (sockets, per_flow): (usize, usize),
    over: Duration,
) -> JoinHandle<u64> {
    let name = ns.name.clone();
    thread::spawn(move || {
        pin_to_cpu(cpu);
        enter_netns(&name);
        let socks: Vec<UdpSocket> = (0..sockets)
            .map(|_| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap())
            .collect();
        let start = Instant::now();
        let total = ports.len() as u32;
        let mut sent = 0u64;
        for (i, port) in ports.enumerate() {
            if let Some(early) = (over * i as u32 / total).checked_sub(start.elapsed()) {
                thread::sleep(early);
            }
            for sock in &socks {
                for _ in 0..per_flow {
                    sock.send_to(PAYLOAD, (dst, port))
                        .unwrap_or_else(|e| panic!("send to {dst}:{port}: {e}"));
                    sent += 1;
                }
            }
        }
        sent
    })
}

/// Gives `sock` a receive buffer of 4 KiB (the kernel doubles it and
/// rounds up to its minimum): a few datagrams fill it, the rest are the
/// kernel's SOCKET_RCVBUFF drops.
pub fn small_receive_buffer(sock: &std::net::UdpSocket) {
    nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::RcvBuf, &4096)
        .expect("SO_RCVBUF");
}
