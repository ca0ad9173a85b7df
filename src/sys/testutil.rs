//! What the unit tests need of the kernel beyond what the program uses:
//! tun devices, raw frames sent out of an interface, a thread's
//! capabilities narrowed, and a bare TPACKET_V3 ring that reports each
//! packet's flow hash. Compiled for tests only.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::options::Direction;
use crate::sys::afpacket::{Filter, PacketSocket, TpacketReq3, TPACKET_V3};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_MULTI_QUEUE: libc::c_int = 0x0100;

/// A tun device `name` (IFF_TUN | IFF_NO_PI), with `queues` queues
/// (IFF_MULTI_QUEUE when more than one): one descriptor per queue, in
/// queue order. A packet written to descriptor q is received on queue q.
/// The device has carrier while a descriptor is open.
pub fn tun(name: &str, queues: usize) -> Vec<OwnedFd> {
    (0..queues.max(1))
        .map(|_| {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/net/tun")
                .expect("open /dev/net/tun");
            // SAFETY: ifreq is plain old data; all-zero is a valid value.
            let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
            for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
                *d = s as libc::c_char;
            }
            let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
            if queues > 1 {
                flags |= IFF_MULTI_QUEUE;
            }
            req.ifr_ifru.ifru_flags = flags as libc::c_short;
            // SAFETY: TUNSETIFF reads the ifreq, which is live.
            let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) };
            assert_eq!(r, 0, "TUNSETIFF: {}", io::Error::last_os_error());
            OwnedFd::from(file)
        })
        .collect()
}

/// Sends `frame` as it is out of interface `ifindex` (a raw packet
/// socket of the calling thread's namespace).
pub fn inject(ifindex: u32, frame: &[u8]) {
    // SAFETY: plain socket calls on a descriptor this block owns; sll is
    // a valid sockaddr_ll and frame a live buffer of the length passed.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        let r = libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        let err = io::Error::last_os_error();
        libc::close(fd);
        assert_eq!(r, frame.len() as isize, "sendto: {err}");
    }
}

/// Waits until `ifname` (up, with carrier) of network namespace `netns`
/// (a name under /var/run/netns) transmits. Until the kernel's linkwatch
/// work has run (a kworker, later on a loaded machine) the device sends
/// through the noop qdisc, which drops every packet while sendto() reports
/// success. That work sets the operstate UP and then activates the qdisc,
/// under RTNL: so once the state is UP, one command that takes RTNL (`ip
/// link set up`, a no-op) returns only after the qdisc is active.
pub fn wait_link_active(netns: &str, ifname: &str) {
    wait_active(Some(netns), ifname);
}

/// [`wait_link_active`] for `ifname` of the calling thread's own network
/// namespace (one made by unshare(), which has no name).
pub fn wait_link_active_here(ifname: &str) {
    wait_active(None, ifname);
}

fn wait_active(netns: Option<&str>, ifname: &str) {
    let ip = |args: &[&str]| {
        let mut cmd = std::process::Command::new("ip");
        if let Some(netns) = netns {
            cmd.args(["-n", netns]);
        }
        let out = cmd
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run ip");
        assert!(out.status.success(), "ip {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !ip(&["-o", "link", "show", "dev", ifname]).contains(" state UP ") {
        assert!(
            std::time::Instant::now() < deadline,
            "{ifname} never came up"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    ip(&["link", "set", ifname, "up"]);
}

/// The next packet queued on `s` without waiting: (ifindex, pkttype,
/// bytes); None when none is queued.
pub fn recv_from(s: &PacketSocket) -> Option<(u32, u8, Vec<u8>)> {
    let mut buf = vec![0u8; 65536];
    // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: buf and sll are live and writable for the sizes passed;
    // recvfrom writes at most that much.
    let n = unsafe {
        libc::recvfrom(
            s.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&mut sll as *mut libc::sockaddr_ll).cast(),
            &mut len,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        return None;
    }
    buf.truncate(n as usize);
    Some((sll.sll_ifindex as u32, sll.sll_pkttype, buf))
}

pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_IPC_LOCK: u32 = 14;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// Narrows the calling thread's effective capabilities to `keep` (the
/// permitted set stays, this thread only): as a user with just those.
pub fn limit_caps(keep: &[u32]) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut h = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: capget writes two Data to d for version 3 headers.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) };
    assert_eq!(r, 0);
    let mut eff = [0u32; 2];
    for &c in keep {
        eff[(c / 32) as usize] |= 1 << (c % 32);
    }
    d[0].effective = eff[0] & d[0].permitted;
    d[1].effective = eff[1] & d[1].permitted;
    // SAFETY: capset reads the header and two Data.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) };
    assert_eq!(r, 0, "capset: {}", io::Error::last_os_error());
}

const SOL_PACKET: libc::c_int = 263;
const PACKET_FANOUT: libc::c_int = 18;
pub const PACKET_FANOUT_CPU: u32 = 2;
pub const PACKET_FANOUT_QM: u32 = 5;
const BLOCK: usize = 1 << 16;
const BLOCKS: usize = 8;
/// struct tpacket3_hdr: tp_snaplen at 12, tp_mac at 24, then
/// hv1.tp_rxhash at 28 (tp_vlan_tci follows at 32).
const H_SNAPLEN: usize = 12;
const H_MAC: usize = 24;
const H_RXHASH: usize = 28;

/// A TPACKET_V3 ring that asks the kernel for each packet's flow hash
/// (TP_FT_REQ_FILL_RXHASH).
pub struct HashRing {
    /// Keeps the socket (and so the ring) open.
    _sock: PacketSocket,
    base: *mut u8,
    next: usize,
}

impl HashRing {
    /// A ring on `ifindex` of `direction`, member of fanout group `id`
    /// of `mode` (members join in order: member i is the i-th made).
    pub fn new(ifindex: u32, direction: Direction, mode: u32, id: u16) -> HashRing {
        let sock = PacketSocket::new().unwrap();
        sock.attach_filter(&Filter::drop_all()).unwrap();
        sock.set_version(TPACKET_V3).unwrap();
        let req = TpacketReq3 {
            tp_block_size: BLOCK as u32,
            tp_block_nr: BLOCKS as u32,
            tp_frame_size: BLOCK as u32,
            tp_frame_nr: BLOCKS as u32,
            tp_retire_blk_tov: 5,
            tp_sizeof_priv: 0,
            tp_feature_req_word: libc::TP_FT_REQ_FILL_RXHASH,
        };
        sock.set_rx_ring(&req).unwrap();
        // SAFETY: a shared mapping of the ring just made, checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BLOCK * BLOCKS,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                sock.as_raw_fd(),
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "{}", io::Error::last_os_error());
        sock.bind(ifindex).unwrap();
        let arg: u32 = u32::from(id) | mode << 16;
        // SAFETY: PACKET_FANOUT reads one u32 (id | type << 16).
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                SOL_PACKET,
                PACKET_FANOUT,
                (&arg as *const u32).cast(),
                4,
            )
        };
        assert_eq!(r, 0, "PACKET_FANOUT: {}", io::Error::last_os_error());
        sock.attach_filter(&Filter::direction(direction, 65535))
            .unwrap();
        HashRing {
            _sock: sock,
            base: base.cast(),
            next: 0,
        }
    }

    /// Takes the packets of every block the kernel has handed over:
    /// (flow hash, frame from the link header).
    pub fn drain(&mut self, out: &mut Vec<(u32, Vec<u8>)>) {
        use std::sync::atomic::{AtomicU32, Ordering};
        loop {
            // SAFETY: next < BLOCKS: the block lies inside the mapping.
            let block = unsafe { self.base.add(self.next * BLOCK) };
            // SAFETY: the status word (offset 8 of a page-aligned
            // block) is 4-byte aligned, stays mapped while self lives,
            // and the kernel accesses it only as a whole u32.
            let status = unsafe { AtomicU32::from_ptr(block.add(8).cast()) };
            if status.load(Ordering::Acquire) & 1 == 0 {
                return;
            }
            {
                // SAFETY: user space owns the block until the store
                // below; the kernel does not write it meanwhile.
                let b = unsafe { std::slice::from_raw_parts(block, BLOCK) };
                let word =
                    |off: usize| u32::from_ne_bytes(b[off..off + 4].try_into().unwrap()) as usize;
                let mut at = word(16);
                for _ in 0..word(12) {
                    let h = &b[at..];
                    let mac = u16::from_ne_bytes([h[H_MAC], h[H_MAC + 1]]) as usize;
                    let snap = word(at + H_SNAPLEN);
                    out.push((word(at + H_RXHASH) as u32, h[mac..mac + snap].to_vec()));
                    at += word(at);
                }
            }
            status.store(0, Ordering::Release);
            self.next = (self.next + 1) % BLOCKS;
        }
    }
}

// SAFETY: the mapping belongs to this value alone; moving it to
// another thread is sound.
unsafe impl Send for HashRing {}

impl Drop for HashRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new(); nothing borrows it now.
        unsafe { libc::munmap(self.base.cast(), BLOCK * BLOCKS) };
    }
}

/// The name libtest knows test `test` of module `module_path` by (the
/// module path without the crate's name), for a test that runs one of
/// its siblings in a child process (`current_exe() --exact NAME`).
pub fn test_name(module_path: &str, test: &str) -> String {
    let path = module_path.split_once("::").map_or("", |(_, rest)| rest);
    format!("{path}::{test}")
}

/// Sets IPV6_HOPOPTS on `sock`: each datagram it sends then carries the
/// hop-by-hop options header `opts` (its first byte, the next header, the
/// kernel fills in).
pub fn set_ipv6_hopopts(sock: &std::net::UdpSocket, opts: &[u8]) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket; the option's value is `opts`, readable for
    // its length, which the kernel copies.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_HOPOPTS,
            opts.as_ptr().cast(),
            opts.len() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "IPV6_HOPOPTS: {}", std::io::Error::last_os_error());
}
