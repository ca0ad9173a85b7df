//! AF_PACKET sockets: creation, classic BPF filters, fanout, promiscuous
//! membership, statistics. The mmap ring is in [`crate::sys::ring`].
//!
//! This and `ring.rs` are the only modules that talk to the packet socket
//! API; each unsafe block states the kernel fact it relies on.

use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::options::Direction;

// <linux/if_packet.h>, <linux/filter.h>, <linux/if_arp.h>. Spelled out here
// rather than taken from libc so that the values the code depends on are in
// one place, next to the comments that explain them.
const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
pub const PACKET_VERSION: libc::c_int = 10;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
pub const TPACKET_V3: libc::c_int = 2;
const PACKET_FANOUT_DATA: libc::c_int = 22;
const PACKET_FANOUT_CPU: u16 = 2;
const PACKET_FANOUT_EBPF: u16 = 7;
const PACKET_FANOUT_FLAG_UNIQUEID: u16 = 0x2000;
/// The member limit of a fanout group created without `fanout_args`.
pub const PACKET_FANOUT_MAX: u32 = 256;
pub const PACKET_OUTGOING: u8 = 4;
const ETH_P_ALL: u16 = 0x0003;
const SO_ATTACH_FILTER: libc::c_int = 26;
const SKF_AD_OFF: i32 = -0x1000;
const SKF_AD_PKTTYPE: i32 = 4;
// Opcodes: class | size | mode. BPF_LD = 0x00, BPF_W = 0x00, BPF_ABS = 0x20;
// BPF_JMP = 0x05, BPF_JEQ = 0x10, BPF_K = 0x00; BPF_RET = 0x06.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;

#[repr(C)]
#[derive(Clone, Copy)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

#[repr(C)]
struct PacketMreq {
    mr_ifindex: libc::c_int,
    mr_type: libc::c_ushort,
    mr_alen: libc::c_ushort,
    mr_address: [u8; 8],
}

#[repr(C)]
#[derive(Default)]
struct TpacketStatsV3 {
    tp_packets: u32,
    tp_drops: u32,
    tp_freeze_q_cnt: u32,
}

/// struct tpacket_req3: the geometry of a TPACKET_V3 ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TpacketReq3 {
    pub tp_block_size: u32,
    pub tp_block_nr: u32,
    pub tp_frame_size: u32,
    pub tp_frame_nr: u32,
    pub tp_retire_blk_tov: u32,
    pub tp_sizeof_priv: u32,
    pub tp_feature_req_word: u32,
}

/// `struct fanout_args` (Linux 5.13+): lets a group hold more than
/// PACKET_FANOUT_MAX members.
#[repr(C)]
struct FanoutArgs {
    id: u16,
    type_flags: u16,
    max_num_members: u32,
}

/// A classic BPF program.
#[derive(Clone, Debug)]
pub struct Filter(Vec<(u16, u8, u8, u32)>);

impl Filter {
    /// Accepts nothing. Attached before bind() so that no packet reaches
    /// the socket while the fanout group is incomplete (the setup race).
    pub fn drop_all() -> Filter {
        Filter(vec![(BPF_RET_K, 0, 0, 0)])
    }

    /// A program built elsewhere (the user's filter, see
    /// [`crate::filter::for_kernel`]).
    pub fn from_insns(insns: Vec<(u16, u8, u8, u32)>) -> Filter {
        Filter(insns)
    }

    /// Accepts packets of `direction`, cut to `snaplen` bytes: the filter's
    /// return value is the number of bytes the kernel copies to the ring, so
    /// snapping costs nothing. Direction is the skb's packet type, loaded as
    /// ancillary data: PACKET_OUTGOING is transmit, everything else receive.
    pub fn direction(direction: Direction, snaplen: u32) -> Filter {
        let load = (BPF_LD_W_ABS, 0, 0, (SKF_AD_OFF + SKF_AD_PKTTYPE) as u32);
        let outgoing = u32::from(PACKET_OUTGOING);
        let keep = (BPF_RET_K, 0, 0, snaplen);
        let drop = (BPF_RET_K, 0, 0, 0);
        Filter(match direction {
            Direction::RxTx => vec![keep],
            // Outgoing jumps over `keep` to `drop`.
            Direction::Rx => vec![load, (BPF_JMP_JEQ_K, 1, 0, outgoing), keep, drop],
            // Anything but outgoing jumps to `drop`.
            Direction::Tx => vec![load, (BPF_JMP_JEQ_K, 0, 1, outgoing), keep, drop],
        })
    }
}

/// How a fanout group picks the member for a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanoutMode {
    /// PACKET_FANOUT_CPU: `smp_processor_id() % members`.
    Cpu,
    /// PACKET_FANOUT_EBPF: an eBPF program's return value `% members`.
    Ebpf,
}

/// Kernel statistics of one socket since the last read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets that passed the filter, including those dropped.
    pub packets: u64,
    /// Packets dropped because the ring was full.
    pub drops: u64,
}

/// An AF_PACKET socket.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens a raw packet socket with protocol 0: it receives nothing until
    /// bind() names a protocol, which is what lets the drop filter and the
    /// ring be set up before the first packet can arrive.
    pub fn new() -> io::Result<PacketSocket> {
        // SAFETY: socket() takes no pointers; the returned descriptor is
        // checked and then owned by OwnedFd.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
        Ok(PacketSocket {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// setsockopt with a plain-old-data value.
    fn set<T>(&self, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
        // SAFETY: value points to a live T of the length passed; every T
        // used here is a #[repr(C)] struct or integer of the layout the
        // kernel expects for that option.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (value as *const T).cast(),
                mem::size_of::<T>() as libc::socklen_t,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// getsockopt into a plain-old-data value.
    fn get<T: Default>(&self, level: libc::c_int, name: libc::c_int) -> io::Result<T> {
        let mut value = T::default();
        let mut len = mem::size_of::<T>() as libc::socklen_t;
        // SAFETY: value is a live, writable T and len its size; the kernel
        // writes at most len bytes.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&mut value as *mut T).cast(),
                &mut len,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(value)
        }
    }

    /// Attaches (or atomically replaces) the socket's filter.
    pub fn attach_filter(&self, filter: &Filter) -> io::Result<()> {
        let insns: Vec<SockFilter> = filter
            .0
            .iter()
            .map(|&(code, jt, jf, k)| SockFilter { code, jt, jf, k })
            .collect();
        let prog = SockFprog {
            len: insns.len() as u16,
            filter: insns.as_ptr(),
        };
        // The kernel copies the program during the call; insns outlives it.
        self.set(libc::SOL_SOCKET, SO_ATTACH_FILTER, &prog)
    }

    pub fn set_version(&self, version: libc::c_int) -> io::Result<()> {
        self.set(SOL_PACKET, PACKET_VERSION, &version)
    }

    /// Creates the socket's receive ring (PACKET_RX_RING). With TPACKET_V3
    /// set first, the kernel reads `req` as a struct tpacket_req3.
    pub fn set_rx_ring(&self, req: &TpacketReq3) -> io::Result<()> {
        self.set(SOL_PACKET, PACKET_RX_RING, req)
    }

    /// Binds to all protocols on `ifindex` (0: every interface). From here
    /// on the socket receives, subject to its filter.
    pub fn bind(&self, ifindex: u32) -> io::Result<()> {
        self.bind_protocol(ifindex, ETH_P_ALL)
    }

    /// Binds to the frames of one ethertype on `ifindex`. Bound to one
    /// that never arrives (and with a drop filter), the socket costs no
    /// packet anything and still gets ENETDOWN when the interface goes
    /// down, even if it comes up again before anyone looks
    /// ([`PacketSocket::take_error`]).
    pub fn bind_protocol(&self, ifindex: u32, protocol: u16) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = protocol.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is a valid sockaddr_ll and the length is its size.
        let r = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Joins fanout group `id` of `mode`. `unique` asks the kernel to choose
    /// a free id (only with id 0, for the group's first member);
    /// `max_members` above PACKET_FANOUT_MAX needs the `fanout_args` form.
    pub fn join_fanout(
        &self,
        id: u16,
        mode: FanoutMode,
        unique: bool,
        max_members: u32,
    ) -> io::Result<()> {
        let mut type_flags = match mode {
            FanoutMode::Cpu => PACKET_FANOUT_CPU,
            FanoutMode::Ebpf => PACKET_FANOUT_EBPF,
        };
        if unique {
            type_flags |= PACKET_FANOUT_FLAG_UNIQUEID;
        }
        if max_members > PACKET_FANOUT_MAX {
            let args = FanoutArgs {
                id,
                type_flags,
                max_num_members: max_members,
            };
            self.set(SOL_PACKET, PACKET_FANOUT, &args)
        } else {
            let v: u32 = u32::from(id) | (u32::from(type_flags) << 16);
            self.set(SOL_PACKET, PACKET_FANOUT, &v)
        }
    }

    /// Gives a PACKET_FANOUT_EBPF group its program. It applies to the whole
    /// group (any member may set it); until it is set the kernel sends every
    /// packet to member 0.
    pub fn set_fanout_program(&self, prog: &crate::sys::bpf::Program) -> io::Result<()> {
        let fd: u32 = prog.as_raw_fd() as u32;
        self.set(SOL_PACKET, PACKET_FANOUT_DATA, &fd)
    }

    /// The id of the fanout group this socket is in.
    pub fn fanout_id(&self) -> io::Result<u16> {
        let v: u32 = self.get(SOL_PACKET, PACKET_FANOUT)?;
        Ok((v & 0xffff) as u16)
    }

    /// Makes `ifindex` promiscuous for as long as this socket is open. The
    /// kernel counts the membership and drops it when the socket closes,
    /// also when the process dies, so a crash cannot leave it set.
    pub fn add_promiscuous(&self, ifindex: u32) -> io::Result<()> {
        let mreq = PacketMreq {
            mr_ifindex: ifindex as libc::c_int,
            mr_type: PACKET_MR_PROMISC,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        self.set(SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq)
    }

    /// Reads and resets the kernel's counters (TPACKET_V3 layout).
    pub fn take_stats(&self) -> io::Result<Stats> {
        let s: TpacketStatsV3 = self.get(SOL_PACKET, PACKET_STATISTICS)?;
        Ok(Stats {
            packets: u64::from(s.tp_packets),
            drops: u64::from(s.tp_drops),
        })
    }

    /// Reads and clears the pending socket error (SO_ERROR): the kernel sets
    /// ENETDOWN on every socket bound to an interface that goes down or
    /// away, and poll() reports it as POLLERR.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let e: libc::c_int = self.get(libc::SOL_SOCKET, libc::SO_ERROR)?;
        Ok((e != 0).then(|| io::Error::from_raw_os_error(e)))
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The index of interface `name`, or ENODEV.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    // SAFETY: c is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(i)
    }
}

/// The name of interface `ifindex`, if it still exists.
pub fn ifname(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(s.to_string_lossy().into_owned())
}

/// An SIOCGIF* request on interface `name`, answered for the calling
/// thread's network namespace (unlike /sys/class/net, which shows the
/// namespace sysfs was mounted in).
fn ifreq(name: &str, request: libc::c_ulong) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IF_NAMESIZE || bytes.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: socket() takes no pointers; the descriptor is checked and
    // owned by OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is fresh and owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: SIOCGIF* requests read the name from and write their answer
    // into the ifreq passed, which is live and writable.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, &mut req) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(req)
    }
}

/// The interface's hardware type (ARPHRD_*), which decides the pcap link
/// type.
pub fn hardware_type(name: &str) -> io::Result<u16> {
    let req = ifreq(name, libc::SIOCGIFHWADDR as libc::c_ulong)?;
    // SAFETY: SIOCGIFHWADDR fills the hwaddr member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_hwaddr.sa_family })
}

/// Whether the interface is up. A socket bound to a down interface is not
/// running, and the kernel refuses to add it to a fanout group.
pub fn is_up(name: &str) -> bool {
    match ifreq(name, libc::SIOCGIFFLAGS as libc::c_ulong) {
        // SAFETY: SIOCGIFFLAGS fills the flags member of the union.
        Ok(req) => (unsafe { req.ifr_ifru.ifru_flags } as libc::c_int) & libc::IFF_UP != 0,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_filters_jump_to_the_right_return() {
        let Filter(rx) = Filter::direction(Direction::Rx, 100);
        assert_eq!(rx.len(), 4);
        // rx: outgoing (jt) skips one instruction to `ret #0`.
        assert_eq!((rx[1].1, rx[1].2), (1, 0));
        assert_eq!(rx[2].3, 100);
        assert_eq!(rx[3].3, 0);
        let Filter(tx) = Filter::direction(Direction::Tx, 100);
        assert_eq!((tx[1].1, tx[1].2), (0, 1));
        let Filter(both) = Filter::direction(Direction::RxTx, 7);
        assert_eq!(both, vec![(BPF_RET_K, 0, 0, 7)]);
    }
}
