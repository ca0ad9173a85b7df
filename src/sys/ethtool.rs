//! What a device says about its receive queues: the RSS indirection table,
//! key and hash function and the fields it hashes (SIOCETHTOOL ioctls),
//! and which interrupt serves a queue (the netdev generic netlink family,
//! else a conservative reading of /proc/interrupts).
//!
//! The ioctls and netlink requests are answered for the calling thread's
//! network namespace, like everything in [`crate::sys::afpacket`]. Devices that
//! implement none of this (veth, lo, tun, most virtual devices) answer
//! EOPNOTSUPP; that is `Ok(None)` here, never an error.
//!
//! Every answer is parsed from a byte buffer by a pure function, so the
//! parsers are tested with recorded kernel answers.

use std::io;

use super::netlink::{self, NLMSG_ERROR, NLMSG_HDRLEN};
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::cpuset::CpuSet;

// <linux/ethtool.h>, <linux/sockios.h>
const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_GRXFH: u32 = 0x29;
#[cfg(test)]
const ETHTOOL_GRXRINGS: u32 = 0x2d;
const ETHTOOL_GRSSH: u32 = 0x46;
/// ETH_RSS_HASH_*: bit n is the function ETH_RSS_HASH_*_BIT = n.
pub const ETH_RSS_HASH_TOP: u8 = 1 << 0;
pub const ETH_RSS_HASH_XOR: u8 = 1 << 1;
pub const ETH_RSS_HASH_CRC32: u8 = 1 << 2;

/// sizeof(struct ethtool_rxfh) without its flexible rss_config[]: cmd,
/// rss_context, indir_size, key_size (u32 each), hfunc, input_xfrm (Linux
/// 6.8+; a reserved zero byte before), 2 reserved bytes, a reserved u32.
const RXFH_HEADER: usize = 24;
const RXFH_INDIR_SIZE: usize = 8;
const RXFH_KEY_SIZE: usize = 12;
const RXFH_HFUNC: usize = 16;
const RXFH_INPUT_XFRM: usize = 17;
/// sizeof(struct ethtool_rxnfc) on 64-bit and 32-bit alike: cmd,
/// flow_type, data (u64 at offset 8), a 168-byte ethtool_rx_flow_spec and
/// rule_cnt, padded to 8. For ETHTOOL_GRXFH the kernel copies only cmd,
/// flow_type and data (the struct's old size) unless flow_type asks for an
/// RSS context; the rest is room to spare.
const RXNFC_SIZE: usize = 192;
const RXNFC_FLOW_TYPE: usize = 4;
const RXNFC_DATA: usize = 8;
/// The largest table and key accepted from a driver (the kernel allows a
/// u32 of each; real devices have at most a few thousand entries).
const MAX_INDIR: u32 = 1 << 16;
const MAX_KEY: u32 = 1 << 10;

/// A device's RSS configuration (ETHTOOL_GRSSH, context 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rss {
    /// Receive queue by table slot; empty when the device has no table.
    pub indirection: Vec<u32>,
    /// The hash key; empty when the device has none (or hides it).
    pub key: Vec<u8>,
    /// ETH_RSS_HASH_* bit of the function in use; 0 when the driver does
    /// not say.
    pub hfunc: u8,
    /// RXH_XFRM_* bits (Linux 6.8+): the device transforms the input
    /// (symmetric XOR of source and destination) before hashing, so a
    /// plain Toeplitz hash of the tuple will not match its hash.
    pub input_xfrm: u8,
}

/// The hash function a device reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashFunction {
    Toeplitz,
    Xor,
    Crc32,
    /// The driver reports none (hfunc 0): most likely Toeplitz, the only
    /// function of older drivers.
    Unreported,
    /// A function this program does not know (the bits as reported).
    Other(u8),
}

impl HashFunction {
    /// ethtool's name for it (`ethtool -x`).
    pub fn name(&self) -> String {
        match self {
            HashFunction::Toeplitz => "toeplitz".into(),
            HashFunction::Xor => "xor".into(),
            HashFunction::Crc32 => "crc32".into(),
            HashFunction::Unreported => "unreported".into(),
            HashFunction::Other(bits) => format!("unknown (0x{bits:02x})"),
        }
    }
}

impl Rss {
    pub fn hash_function(&self) -> HashFunction {
        match self.hfunc {
            0 => HashFunction::Unreported,
            ETH_RSS_HASH_TOP => HashFunction::Toeplitz,
            ETH_RSS_HASH_XOR => HashFunction::Xor,
            ETH_RSS_HASH_CRC32 => HashFunction::Crc32,
            other => HashFunction::Other(other),
        }
    }

    /// Whether a software Toeplitz hash of the tuple can reproduce the
    /// device's: Toeplitz (or unreported), a key, no input transform.
    pub fn hash_is_reproducible(&self) -> bool {
        matches!(
            self.hash_function(),
            HashFunction::Toeplitz | HashFunction::Unreported
        ) && !self.key.is_empty()
            && self.input_xfrm == 0
    }
}

/// The table and key sizes from the first ETHTOOL_GRSSH answer (the one
/// asked with both sizes 0).
pub fn parse_rxfh_sizes(buf: &[u8]) -> Option<(u32, u32)> {
    Some((u32_at(buf, RXFH_INDIR_SIZE)?, u32_at(buf, RXFH_KEY_SIZE)?))
}

/// A full ETHTOOL_GRSSH answer: the header, then indir_size u32 entries
/// (host byte order), then key_size key bytes.
pub fn parse_rxfh(buf: &[u8]) -> Option<Rss> {
    let (indir_size, key_size) = parse_rxfh_sizes(buf)?;
    if indir_size > MAX_INDIR || key_size > MAX_KEY {
        return None;
    }
    let key_at = RXFH_HEADER + indir_size as usize * 4;
    let indirection = (0..indir_size as usize)
        .map(|i| u32_at(buf, RXFH_HEADER + i * 4))
        .collect::<Option<Vec<u32>>>()?;
    let key = buf.get(key_at..key_at + key_size as usize)?.to_vec();
    Some(Rss {
        indirection,
        key,
        hfunc: *buf.get(RXFH_HFUNC)?,
        input_xfrm: *buf.get(RXFH_INPUT_XFRM)?,
    })
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// A zeroed, 8-byte aligned buffer (ethtool structs hold u64s).
struct Buf(Vec<u64>);

impl Buf {
    fn new(bytes: usize) -> Buf {
        Buf(vec![0; bytes.div_ceil(8)])
    }
    fn bytes(&self) -> &[u8] {
        // SAFETY: any u64 storage is valid as bytes; the length is the
        // storage's size in bytes.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast(), self.0.len() * 8) }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in bytes(); the borrow is unique.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), self.0.len() * 8) }
    }
    fn put_u32(&mut self, off: usize, v: u32) {
        self.bytes_mut()[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }
}

/// SIOCETHTOOL on `ifname` with `buf` as the command's struct (its first
/// u32 the ETHTOOL_* command). EOPNOTSUPP (the driver lacks the
/// operation) is `Ok(false)`.
fn ethtool(ifname: &str, buf: &mut Buf) -> io::Result<bool> {
    let name = ifname.as_bytes();
    if name.is_empty() || name.len() >= libc::IF_NAMESIZE || name.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    req.ifr_ifru.ifru_data = buf.0.as_mut_ptr().cast();
    // SAFETY: socket() takes no pointers; the descriptor is checked and
    // owned by OwnedFd. Any socket will do for SIOCETHTOOL, which the
    // kernel resolves in the socket's network namespace.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is fresh and owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: SIOCETHTOOL reads the name from the live ifreq and reads and
    // writes the command struct ifru_data points to. The kernel never
    // touches more than the command's struct plus, for GRSSH, the
    // indir_size/key_size it was told about, and the buffers are sized for
    // exactly that by the callers; buf outlives the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// The device's RSS table, key and function (ETHTOOL_GRSSH), or None when
/// it has no RSS to report. Two calls, as ethtool makes them: the first
/// with zero sizes learns the sizes, the second fetches table and key.
pub fn rss(ifname: &str) -> io::Result<Option<Rss>> {
    // The kernel answers EINVAL when the sizes asked for are not the
    // device's: they changed in between (a channel count change). Asking
    // again reads the new ones.
    let mut tries = 3;
    loop {
        let mut head = Buf::new(RXFH_HEADER);
        head.put_u32(0, ETHTOOL_GRSSH);
        if !ethtool(ifname, &mut head)? {
            return Ok(None);
        }
        let (indir_size, key_size) = parse_rxfh_sizes(head.bytes()).unwrap_or((0, 0));
        if indir_size == 0 && key_size == 0 {
            return Ok(None);
        }
        if indir_size > MAX_INDIR || key_size > MAX_KEY {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        let mut full = Buf::new(RXFH_HEADER + indir_size as usize * 4 + key_size as usize);
        full.put_u32(0, ETHTOOL_GRSSH);
        full.put_u32(RXFH_INDIR_SIZE, indir_size);
        full.put_u32(RXFH_KEY_SIZE, key_size);
        match ethtool(ifname, &mut full) {
            Ok(true) => return Ok(parse_rxfh(full.bytes())),
            Ok(false) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && tries > 1 => tries -= 1,
            Err(e) => return Err(e),
        }
    }
}

/// Flow types for ETHTOOL_GRXFH (`ethtool -n IF rx-flow-hash tcp4`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowType {
    TcpV4 = 0x01,
    UdpV4 = 0x02,
    SctpV4 = 0x03,
    TcpV6 = 0x05,
    UdpV6 = 0x06,
    SctpV6 = 0x07,
    /// Other IPv4 traffic (`ip4`).
    Ipv4 = 0x10,
    /// Other IPv6 traffic (`ip6`).
    Ipv6 = 0x11,
}

impl FlowType {
    /// The flow type of a packet: IP protocol `proto` (6 TCP, 17 UDP, 132
    /// SCTP; anything else is plain IP) over IPv4 or IPv6.
    pub fn of(ipv4: bool, proto: u8) -> FlowType {
        match (ipv4, proto) {
            (true, 6) => FlowType::TcpV4,
            (true, 17) => FlowType::UdpV4,
            (true, 132) => FlowType::SctpV4,
            (true, _) => FlowType::Ipv4,
            (false, 6) => FlowType::TcpV6,
            (false, 17) => FlowType::UdpV6,
            (false, 132) => FlowType::SctpV6,
            (false, _) => FlowType::Ipv6,
        }
    }

    /// ethtool's name (`tcp4`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            FlowType::TcpV4 => "tcp4",
            FlowType::UdpV4 => "udp4",
            FlowType::SctpV4 => "sctp4",
            FlowType::TcpV6 => "tcp6",
            FlowType::UdpV6 => "udp6",
            FlowType::SctpV6 => "sctp6",
            FlowType::Ipv4 => "ip4",
            FlowType::Ipv6 => "ip6",
        }
    }

    pub const ALL: [FlowType; 8] = [
        FlowType::TcpV4,
        FlowType::UdpV4,
        FlowType::SctpV4,
        FlowType::Ipv4,
        FlowType::TcpV6,
        FlowType::UdpV6,
        FlowType::SctpV6,
        FlowType::Ipv6,
    ];
}

/// `data` of an ETHTOOL_GRXFH / ETHTOOL_GRXRINGS answer.
pub fn parse_rxnfc_data(buf: &[u8]) -> Option<u64> {
    u64_at(buf, RXNFC_DATA)
}

fn rxnfc(ifname: &str, cmd: u32, flow_type: u32) -> io::Result<Option<u64>> {
    let mut buf = Buf::new(RXNFC_SIZE);
    buf.put_u32(0, cmd);
    buf.put_u32(RXNFC_FLOW_TYPE, flow_type);
    match ethtool(ifname, &mut buf) {
        Ok(true) => Ok(parse_rxnfc_data(buf.bytes())),
        Ok(false) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The RXH_* bits of the fields the device hashes for `flow`
/// (ETHTOOL_GRXFH), which steering's `Fields::from_rxh` reads. None when
/// the device does not say (EOPNOTSUPP, or EINVAL: drivers answer that for
/// flow types they do not hash separately).
pub fn rx_hash_fields(ifname: &str, flow: FlowType) -> io::Result<Option<u64>> {
    match rxnfc(ifname, ETHTOOL_GRXFH, flow as u32) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        r => r,
    }
}

/// The number of receive rings RSS spreads over (ETHTOOL_GRXRINGS); only
/// the tests ask it, of devices without RSS.
#[cfg(test)]
pub fn rx_rings(ifname: &str) -> io::Result<Option<u32>> {
    Ok(rxnfc(ifname, ETHTOOL_GRXRINGS, 0)?.map(|n| n.min(u64::from(u32::MAX)) as u32))
}

/// ETH_FLAG_RXHASH of ETHTOOL_GFLAGS: NETIF_F_RXHASH.
const ETH_FLAG_RXHASH: u32 = 1 << 28;

/// Whether the device hands the kernel its receive hash (NETIF_F_RXHASH,
/// `ethtool -k`'s receive-hashing). Without it every flow hash is the
/// kernel's own (or one a veth peer's socket set). ETHTOOL_GFLAGS, the
/// legacy flags word the core answers from the device's features for
/// every device (struct ethtool_value: cmd, data); None where it does not.
pub fn rx_hashing(ifname: &str) -> io::Result<Option<bool>> {
    Ok(flags(ifname)?.map(|f| f & ETH_FLAG_RXHASH != 0))
}

/// The ETHTOOL_GFLAGS word (ETH_FLAG_*).
fn flags(ifname: &str) -> io::Result<Option<u32>> {
    let mut buf = Buf::new(8);
    buf.put_u32(0, ETHTOOL_GFLAGS);
    Ok(ethtool(ifname, &mut buf)?.then(|| u32_at(buf.bytes(), 4).unwrap_or(0)))
}

// ---------------------------------------------------------------------------
// Generic netlink: the netdev family's queue and napi objects (Linux 6.8+;
// a driver fills them in only if it links its queues to its NAPIs).

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const GENL_HDRLEN: usize = 4;

// <linux/netdev.h>
const NETDEV_CMD_QUEUE_GET: u8 = 10;
const NETDEV_CMD_NAPI_GET: u8 = 11;
const NETDEV_A_QUEUE_ID: u16 = 1;
const NETDEV_A_QUEUE_IFINDEX: u16 = 2;
const NETDEV_A_QUEUE_TYPE: u16 = 3;
const NETDEV_A_QUEUE_NAPI_ID: u16 = 4;
const NETDEV_QUEUE_TYPE_RX: u32 = 0;
const NETDEV_A_NAPI_ID: u16 = 2;
const NETDEV_A_NAPI_IRQ: u16 = 3;
const NETDEV_A_NAPI_PID: u16 = 4;

pub use super::netlink::attrs;

fn attr_u32(buf: &[u8], kind: u16) -> Option<u32> {
    attrs(buf)
        .find(|(k, _)| *k == kind)
        .and_then(|(_, p)| Some(u32::from_ne_bytes(p.get(..4)?.try_into().ok()?)))
}

/// One reply to a generic netlink request: the attributes of its message,
/// or the errno of an NLMSG_ERROR, checked to belong to request `seq`.
pub fn parse_genl_reply(buf: &[u8], seq: u32) -> io::Result<&[u8]> {
    let bad = || io::Error::from_raw_os_error(libc::EBADMSG);
    let len = u32_at(buf, 0).ok_or_else(bad)? as usize;
    let kind = u16::from_ne_bytes(
        buf.get(4..6)
            .ok_or_else(bad)?
            .try_into()
            .unwrap_or_default(),
    );
    let msg = buf
        .get(..len)
        .filter(|_| len >= NLMSG_HDRLEN)
        .ok_or_else(bad)?;
    if u32_at(msg, 8) != Some(seq) {
        return Err(bad());
    }
    if kind == NLMSG_ERROR {
        let code = i32::from_ne_bytes(
            msg.get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)
                .ok_or_else(bad)?
                .try_into()
                .unwrap_or_default(),
        );
        return Err(io::Error::from_raw_os_error(-code));
    }
    msg.get(NLMSG_HDRLEN + GENL_HDRLEN..).ok_or_else(bad)
}

/// A request message: netlink header, genl header, u32 or string attrs.
fn genl_request(family: u16, cmd: u8, seq: u32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = vec![cmd, 1, 0, 0];
    for (kind, payload) in attrs {
        body.extend(netlink::attr(*kind, payload));
    }
    netlink::message(family, 0, seq, &body)
}

/// A NETLINK_GENERIC socket of the calling thread's network namespace.
struct Genl {
    sock: netlink::Socket,
}

impl Genl {
    fn open() -> io::Result<Genl> {
        Ok(Genl {
            sock: netlink::Socket::open(libc::NETLINK_GENERIC)?,
        })
    }

    /// Sends one "do" request and returns its reply's attributes. The
    /// kernel answers a do request synchronously, before send() returns,
    /// so the reply is already queued when recv() runs.
    fn request(&mut self, family: u16, cmd: u8, attrs: &[(u16, &[u8])]) -> io::Result<Vec<u8>> {
        let seq = self.sock.next_seq();
        self.sock.send(&genl_request(family, cmd, seq, attrs))?;
        let mut buf = vec![0u8; 16384];
        let n = self.sock.recv(&mut buf, true)?;
        buf.truncate(n);
        parse_genl_reply(&buf, seq).map(<[u8]>::to_vec)
    }

    /// The id of generic netlink family `name`; None if the kernel has no
    /// such family.
    fn family(&mut self, name: &str) -> io::Result<Option<u16>> {
        let mut z = name.as_bytes().to_vec();
        z.push(0);
        match self.request(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            &[(CTRL_ATTR_FAMILY_NAME, &z)],
        ) {
            Ok(reply) => Ok(attrs(&reply)
                .find(|(k, _)| *k == CTRL_ATTR_FAMILY_ID)
                .and_then(|(_, p)| Some(u16::from_ne_bytes(p.get(..2)?.try_into().ok()?)))),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The NAPI instance of a receive queue, from the netdev family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueNapi {
    pub napi_id: u32,
    /// The interrupt that schedules it (drivers that tell).
    pub irq: Option<u32>,
    /// Set when the NAPI is threaded: then the kernel thread of this pid,
    /// not the interrupt's cpu, does the receive processing.
    pub pid: Option<u32>,
}

/// Parses a queue-get reply: the napi id, if the queue has a NAPI.
pub fn parse_queue_reply(attrs: &[u8]) -> Option<u32> {
    attr_u32(attrs, NETDEV_A_QUEUE_NAPI_ID)
}

/// Parses a napi-get reply: (irq, pid).
pub fn parse_napi_reply(attrs: &[u8]) -> (Option<u32>, Option<u32>) {
    (
        attr_u32(attrs, NETDEV_A_NAPI_IRQ),
        attr_u32(attrs, NETDEV_A_NAPI_PID),
    )
}

/// Receive queue `queue` of interface `ifindex` → its NAPI → its irq.
/// None when the kernel has no netdev family (before 6.3), the queue does
/// not exist, or the driver does not link the queue to a NAPI.
pub fn rx_queue_napi(ifindex: u32, queue: u32) -> io::Result<Option<QueueNapi>> {
    let mut genl = Genl::open()?;
    let Some(family) = genl.family("netdev")? else {
        return Ok(None);
    };
    let not_there = |e: &io::Error| {
        matches!(
            e.raw_os_error(),
            Some(libc::ENOENT) | Some(libc::EINVAL) | Some(libc::ENODEV) | Some(libc::EOPNOTSUPP)
        )
    };
    let reply = match genl.request(
        family,
        NETDEV_CMD_QUEUE_GET,
        &[
            (NETDEV_A_QUEUE_IFINDEX, &ifindex.to_ne_bytes()),
            (NETDEV_A_QUEUE_TYPE, &NETDEV_QUEUE_TYPE_RX.to_ne_bytes()),
            (NETDEV_A_QUEUE_ID, &queue.to_ne_bytes()),
        ],
    ) {
        Ok(r) => r,
        Err(e) if not_there(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(napi_id) = parse_queue_reply(&reply) else {
        return Ok(None);
    };
    let reply = match genl.request(
        family,
        NETDEV_CMD_NAPI_GET,
        &[(NETDEV_A_NAPI_ID, &napi_id.to_ne_bytes())],
    ) {
        Ok(r) => r,
        Err(e) if not_there(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let (irq, pid) = parse_napi_reply(&reply);
    Ok(Some(QueueNapi { napi_id, irq, pid }))
}

// ---------------------------------------------------------------------------
// /proc/interrupts: the fallback for drivers the netdev family says nothing
// about. Only names whose scheme is known are matched, and only a name that
// exactly one interrupt carries counts: no interrupt is better than a guess.

/// The interrupt names that, by driver convention, belong to receive
/// queue `queue` of `ifname`:
/// - `IF-TxRx-Q`, `IF-rx-Q`: Intel drivers (ixgbe, i40e, ice, igb, igc),
///   bnxt and others name a vector after the interface and the index of
///   the queue pair it serves. The index is the vector's, which is the
///   queue's when each vector serves one queue (the default).
/// - `virtioN-input.Q`: virtio_net names its receive virtqueues after the
///   virtio device (`virtio_dev`, the name of /sys/class/net/IF/device).
///
/// Names that do not say which queue (mlx5's `mlx5_compN@pci:...`, whose
/// completion vectors are assigned to channels by the driver) are not
/// matched.
pub fn rx_irq_names(ifname: &str, queue: u32, virtio_dev: Option<&str>) -> Vec<String> {
    let mut names = vec![
        format!("{ifname}-TxRx-{queue}"),
        format!("{ifname}-rx-{queue}"),
    ];
    if let Some(v) = virtio_dev {
        names.push(format!("{v}-input.{queue}"));
    }
    names
}

/// The interrupt in `/proc/interrupts` text that carries one of `names`
/// as its (whole) action name, and that name; None unless exactly one
/// interrupt does.
pub fn find_irq(proc_interrupts: &str, names: &[String]) -> Option<(u32, String)> {
    let mut found = None;
    for line in proc_interrupts.lines() {
        let Some((irq, rest)) = line.trim_start().split_once(':') else {
            continue;
        };
        let Ok(irq) = irq.parse::<u32>() else {
            continue; // NMI, LOC, ERR, ...: not numbered interrupts
        };
        // Action names come last, after the counts and chip columns, and
        // several actions on one line are separated by ", ".
        let hit = rest
            .split_whitespace()
            .map(|w| w.trim_end_matches(','))
            .find(|w| names.iter().any(|n| n == w));
        if let Some(name) = hit {
            if found.is_some() {
                return None;
            }
            found = Some((irq, name.to_string()));
        }
    }
    found
}

/// An interrupt's cpus: `effective_affinity_list` (where the interrupt
/// is delivered now: on x86 one cpu of the affinity) where the kernel has
/// it, else `smp_affinity_list` (the cpus it may go to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IrqAffinity {
    pub affinity: CpuSet,
    pub effective: Option<CpuSet>,
}

impl IrqAffinity {
    pub fn cpus(&self) -> &CpuSet {
        match &self.effective {
            Some(e) if !e.is_empty() => e,
            _ => &self.affinity,
        }
    }
}

/// Reads /proc/irq/IRQ's affinity; None if the interrupt is gone.
pub fn irq_affinity(irq: u32) -> Option<IrqAffinity> {
    let read = |f: &str| {
        std::fs::read_to_string(format!("/proc/irq/{irq}/{f}"))
            .ok()
            .and_then(|s| CpuSet::parse_list(&s))
    };
    Some(IrqAffinity {
        affinity: read("smp_affinity_list")?,
        effective: read("effective_affinity_list"),
    })
}

/// How a queue's interrupt was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqSource {
    /// The netdev family's queue and napi objects.
    Netlink,
    /// A conventional name in /proc/interrupts.
    ProcInterrupts,
}

/// A receive queue's interrupt and its cpus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueIrq {
    pub irq: u32,
    pub source: IrqSource,
    /// The interrupt's name where it was found by name.
    pub name: Option<String>,
    pub affinity: Option<IrqAffinity>,
    /// The receive thread's pid when the NAPI is threaded (netlink only).
    pub napi_pid: Option<u32>,
}

/// The virtio device under a virtio_net interface (`virtio2`), from
/// /sys/class/net/IF/device, which is a link to it.
fn virtio_device(ifname: &str) -> Option<String> {
    let dev = format!("/sys/class/net/{ifname}/device");
    let driver = std::fs::read_link(format!("{dev}/driver")).ok()?;
    if driver.file_name()? != "virtio_net" {
        return None;
    }
    let target = std::fs::canonicalize(&dev).ok()?;
    let name = target.file_name()?.to_str()?.to_string();
    name.starts_with("virtio").then_some(name)
}

/// Receive queue `queue`'s interrupt: from the netdev family if the
/// driver links queues to NAPIs with interrupts, else from a conventional
/// name in /proc/interrupts; None when neither says.
pub fn rx_queue_irq(ifname: &str, ifindex: u32, queue: u32) -> Option<QueueIrq> {
    let napi = rx_queue_napi(ifindex, queue).ok().flatten();
    if let Some(QueueNapi {
        irq: Some(irq),
        pid,
        ..
    }) = napi
    {
        return Some(QueueIrq {
            irq,
            source: IrqSource::Netlink,
            name: None,
            affinity: irq_affinity(irq),
            napi_pid: pid,
        });
    }
    // Interrupt names are the machine's, not the namespace's: only a
    // device on a bus (a `device` link in sysfs: not veth, tun or lo) can
    // own one, whatever its name.
    if !std::path::Path::new(&format!("/sys/class/net/{ifname}/device")).exists() {
        return None;
    }
    let text = std::fs::read_to_string("/proc/interrupts").ok()?;
    let names = rx_irq_names(ifname, queue, virtio_device(ifname).as_deref());
    let (irq, name) = find_irq(&text, &names)?;
    Some(QueueIrq {
        irq,
        source: IrqSource::ProcInterrupts,
        name: Some(name),
        affinity: irq_affinity(irq),
        napi_pid: napi.and_then(|n| n.pid),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A GRSSH answer as the kernel writes it: header, table, key.
    fn rxfh_answer(indir: &[u32], key: &[u8], hfunc: u8, xfrm: u8) -> Vec<u8> {
        let mut b = vec![0u8; RXFH_HEADER];
        b[0..4].copy_from_slice(&ETHTOOL_GRSSH.to_ne_bytes());
        b[8..12].copy_from_slice(&(indir.len() as u32).to_ne_bytes());
        b[12..16].copy_from_slice(&(key.len() as u32).to_ne_bytes());
        b[16] = hfunc;
        b[17] = xfrm;
        for q in indir {
            b.extend_from_slice(&q.to_ne_bytes());
        }
        b.extend_from_slice(key);
        b
    }

    #[test]
    fn parses_an_rss_answer() {
        // An ixgbe-like device: 128 entries over 4 queues, Microsoft key.
        let table: Vec<u32> = (0..128).map(|i| i % 4).collect();
        let b = rxfh_answer(
            &table,
            &crate::steering::rss::MICROSOFT_KEY,
            ETH_RSS_HASH_TOP,
            0,
        );
        assert_eq!(parse_rxfh_sizes(&b), Some((128, 40)));
        let rss = parse_rxfh(&b).unwrap();
        assert_eq!(rss.indirection, table);
        assert_eq!(rss.key, crate::steering::rss::MICROSOFT_KEY);
        assert_eq!(rss.hash_function(), HashFunction::Toeplitz);
        assert!(rss.hash_is_reproducible());
        let queue_for = |h| crate::steering::rss::queue_for(h, &rss.indirection);
        assert_eq!(queue_for(0x51ccc178), Some(0)); // slot 120
        assert_eq!(queue_for(0x0f0c461d), Some(1)); // slot 29
                                                    // The sizes-only answer (first call) has no table or key.
        assert_eq!(parse_rxfh_sizes(&b[..RXFH_HEADER]), Some((128, 40)));
        assert_eq!(parse_rxfh(&b[..RXFH_HEADER]), None);
        // Truncated answers are refused, not misread.
        assert_eq!(parse_rxfh(&b[..b.len() - 1]), None);
    }

    #[test]
    fn rss_functions_and_transforms() {
        let rss =
            |hfunc, xfrm, key: &[u8]| parse_rxfh(&rxfh_answer(&[0, 1], key, hfunc, xfrm)).unwrap();
        let key = [7u8; 40];
        assert_eq!(
            rss(ETH_RSS_HASH_XOR, 0, &key).hash_function(),
            HashFunction::Xor
        );
        assert_eq!(
            rss(ETH_RSS_HASH_CRC32, 0, &key).hash_function().name(),
            "crc32"
        );
        assert_eq!(rss(0, 0, &key).hash_function(), HashFunction::Unreported);
        assert_eq!(rss(0x18, 0, &key).hash_function().name(), "unknown (0x18)");
        assert!(!rss(ETH_RSS_HASH_XOR, 0, &key).hash_is_reproducible());
        assert!(rss(0, 0, &key).hash_is_reproducible());
        // Symmetric-xor input transform, or no key: a plain hash will not match.
        assert!(!rss(ETH_RSS_HASH_TOP, 1, &key).hash_is_reproducible());
        assert!(!rss(ETH_RSS_HASH_TOP, 0, &[]).hash_is_reproducible());
        // A key without a table (some devices): no queue for any hash.
        let keyonly = parse_rxfh(&rxfh_answer(&[], &key, ETH_RSS_HASH_TOP, 0)).unwrap();
        assert_eq!(
            crate::steering::rss::queue_for(1, &keyonly.indirection),
            None
        );
    }

    #[test]
    fn parses_rxnfc_data() {
        let mut b = vec![0u8; RXNFC_SIZE];
        b[0..4].copy_from_slice(&ETHTOOL_GRXFH.to_ne_bytes());
        b[4..8].copy_from_slice(&(FlowType::TcpV4 as u32).to_ne_bytes());
        let sdfn = crate::steering::rss::RXH_IP_SRC
            | crate::steering::rss::RXH_IP_DST
            | crate::steering::rss::RXH_L4_B_0_1
            | crate::steering::rss::RXH_L4_B_2_3;
        b[8..16].copy_from_slice(&sdfn.to_ne_bytes());
        assert_eq!(parse_rxnfc_data(&b), Some(0xf0));
        assert_eq!(
            crate::steering::rss::Fields::from_rxh(0xf0),
            crate::steering::rss::Fields::ALL
        );
        assert_eq!(parse_rxnfc_data(&b[..12]), None);
    }

    #[test]
    fn flow_types() {
        assert_eq!(FlowType::of(true, 6), FlowType::TcpV4);
        assert_eq!(FlowType::of(false, 17).name(), "udp6");
        assert_eq!(FlowType::of(true, 1), FlowType::Ipv4);
        assert_eq!(FlowType::of(false, 58), FlowType::Ipv6);
        assert_eq!(FlowType::SctpV6 as u32, 7);
    }

    /// Attributes as the kernel lays them out (4-byte aligned).
    fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
        netlink::attr(kind, payload)
    }

    fn reply(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; NLMSG_HDRLEN];
        m[0..4].copy_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        m[4..6].copy_from_slice(&kind.to_ne_bytes());
        m[8..12].copy_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn parses_netdev_replies() {
        // queue-get for rx-0 of ifindex 2 with napi 8193.
        let mut attrs = nla(NETDEV_A_QUEUE_ID, &0u32.to_ne_bytes());
        attrs.extend(nla(NETDEV_A_QUEUE_TYPE, &0u32.to_ne_bytes()));
        attrs.extend(nla(NETDEV_A_QUEUE_NAPI_ID, &8193u32.to_ne_bytes()));
        attrs.extend(nla(NETDEV_A_QUEUE_IFINDEX, &2u32.to_ne_bytes()));
        let mut body = vec![NETDEV_CMD_QUEUE_GET, 1, 0, 0];
        body.extend_from_slice(&attrs);
        let msg = reply(0x1c, 7, &body);
        let got = parse_genl_reply(&msg, 7).unwrap();
        assert_eq!(parse_queue_reply(got), Some(8193));
        // A reply for another request is refused.
        assert!(parse_genl_reply(&msg, 8).is_err());
        // A queue without a NAPI has no napi-id attribute.
        assert_eq!(
            parse_queue_reply(&nla(NETDEV_A_QUEUE_ID, &0u32.to_ne_bytes())),
            None
        );

        // napi-get: irq 38; a threaded NAPI also has a pid. A nested-flag
        // bit on a type does not hide it.
        let mut napi = nla(NETDEV_A_NAPI_ID, &8193u32.to_ne_bytes());
        napi.extend(nla(NETDEV_A_NAPI_IRQ | 1 << 15, &38u32.to_ne_bytes()));
        assert_eq!(parse_napi_reply(&napi), (Some(38), None));
        napi.extend(nla(NETDEV_A_NAPI_PID, &1234u32.to_ne_bytes()));
        assert_eq!(parse_napi_reply(&napi), (Some(38), Some(1234)));

        // NLMSG_ERROR carries -errno.
        let err = reply(NLMSG_ERROR, 3, &(-libc::ENOENT).to_ne_bytes());
        let e = parse_genl_reply(&err, 3).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        // Truncated or malformed.
        assert!(parse_genl_reply(&msg[..10], 7).is_err());
        assert_eq!(attrs_of(&[3, 0, 1, 0]), vec![]); // length below the header
    }

    fn attrs_of(b: &[u8]) -> Vec<(u16, Vec<u8>)> {
        attrs(b).map(|(k, p)| (k, p.to_vec())).collect()
    }

    #[test]
    fn request_layout() {
        let m = genl_request(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            5,
            &[(CTRL_ATTR_FAMILY_NAME, b"netdev\0")],
        );
        // 16 + 4 + (4 + 7 padded to 12) = 32.
        assert_eq!(m.len(), 32);
        assert_eq!(u32_at(&m, 0), Some(32));
        assert_eq!(&m[4..6], &GENL_ID_CTRL.to_ne_bytes());
        assert_eq!(u32_at(&m, 8), Some(5));
        assert_eq!(m[16], CTRL_CMD_GETFAMILY);
        assert_eq!(
            attrs_of(&m[20..]),
            vec![(CTRL_ATTR_FAMILY_NAME, b"netdev\0".to_vec())]
        );
    }

    /// /proc/interrupts of this VM (virtio_net eth0 is virtio2) with lines
    /// of other machines' drivers added.
    const INTERRUPTS: &str = "           CPU0       CPU1
  0:         45          0   IO-APIC   2-edge      timer
 28:          0          0 PCI-MSIX-0000:00:01.0   0-edge      virtio0-config
 36:       1109      60031 PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0
 37:          0          0 PCI-MSIX-0000:00:03.0   0-edge      virtio2-config
 38:        797       2404 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0
 39:       3075          0 PCI-MSIX-0000:00:03.0   2-edge      virtio2-output.0
 41:       3193          0 PCI-MSIX-0000:00:04.0   1-edge      virtio3-rx
 52:          0          0 IR-PCI-MSIX-0000:3b:00.0   1-edge      ens1f0-TxRx-0
 53:          0          0 IR-PCI-MSIX-0000:3b:00.0   2-edge      ens1f0-TxRx-1
 54:          0          0 IR-PCI-MSIX-0000:3b:00.0  11-edge      ens1f0-TxRx-10
 60:          0          0 IR-PCI-MSIX-0000:5e:00.0   1-edge      mlx5_comp0@pci:0000:5e:00.0
 70:          0          0 IR-PCI-MSI  524288-edge      eno1-rx-0, eno1-tx-0
 71:          0          0 IR-PCI-MSI  524289-edge      dup-rx-0
 72:          0          0 IR-PCI-MSI  524290-edge      dup-rx-0
NMI:          0          0   Non-maskable interrupts
LOC:      12345      67890   Local timer interrupts
";

    fn irq(ifname: &str, q: u32, virtio: Option<&str>) -> Option<u32> {
        find_irq(INTERRUPTS, &rx_irq_names(ifname, q, virtio)).map(|(irq, _)| irq)
    }

    #[test]
    fn finds_queue_interrupts_by_name() {
        assert_eq!(irq("eth0", 0, Some("virtio2")), Some(38));
        let names = rx_irq_names("eno1", 0, None);
        assert_eq!(
            find_irq(INTERRUPTS, &names),
            Some((70, "eno1-rx-0".to_string()))
        );
        assert_eq!(irq("eth0", 1, Some("virtio2")), None);
        // Without knowing the virtio device, eth0 matches nothing.
        assert_eq!(irq("eth0", 0, None), None);
        assert_eq!(irq("ens1f0", 0, None), Some(52));
        assert_eq!(irq("ens1f0", 1, None), Some(53));
        // Whole names only: queue 1 is not a prefix of queue 10.
        assert_eq!(irq("ens1f0", 10, None), Some(54));
        assert_eq!(irq("ens1f", 0, None), None);
        // One of several actions of a line.
        assert_eq!(irq("eno1", 0, None), Some(70));
        // Two interrupts with the name: no guess.
        assert_eq!(irq("dup", 0, None), None);
        // mlx5 names say nothing about queues.
        assert_eq!(irq("mlx5_comp0@pci:0000:5e:00.0", 0, None), None);
    }

    /// The generic netlink payloads (after the 16-byte netlink header) of
    /// this VM's kernel (6.18) answering queue-get and napi-get for rx-0 of
    /// eth0 (virtio_net, ifindex 4): the queue has NAPI 257, and the NAPI
    /// reports ifindex, threaded 0, defer-hard-irqs 0, irq-suspend-timeout
    /// 0 and gro-flush-timeout 0 but no irq: virtio_net does not tell.
    const VIRTIO_QUEUE_GET: &[u8] = b"\x0a\x01\x00\x00\x08\x00\x01\x00\x00\x00\x00\x00\x08\x00\x03\x00\x00\x00\x00\x00\x08\x00\x02\x00\x04\x00\x00\x00\x08\x00\x04\x00\x01\x01\x00\x00";
    const VIRTIO_NAPI_GET: &[u8] = b"\x0b\x01\x00\x00\x08\x00\x02\x00\x01\x01\x00\x00\x08\x00\x01\x00\x04\x00\x00\x00\x08\x00\x08\x00\x00\x00\x00\x00\x08\x00\x05\x00\x00\x00\x00\x00\x08\x00\x07\x00\x00\x00\x00\x00\x08\x00\x06\x00\x00\x00\x00\x00";

    #[test]
    fn parses_recorded_virtio_replies() {
        let msg = reply(0x14, 2, VIRTIO_QUEUE_GET);
        let q = parse_genl_reply(&msg, 2).unwrap();
        assert_eq!(attr_u32(q, NETDEV_A_QUEUE_IFINDEX), Some(4));
        assert_eq!(parse_queue_reply(q), Some(257));
        let msg = reply(0x14, 3, VIRTIO_NAPI_GET);
        let n = parse_genl_reply(&msg, 3).unwrap();
        assert_eq!(attr_u32(n, NETDEV_A_NAPI_ID), Some(257));
        assert_eq!(parse_napi_reply(n), (None, None));
    }

    /// A network namespace of one test (IPv6 off, lo up), deleted on drop.
    pub(crate) struct TestNs {
        pub name: String,
    }

    pub(crate) fn sh(program: &str, args: &[&str]) -> String {
        let out = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {}: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    impl TestNs {
        pub fn new() -> TestNs {
            use std::sync::atomic::{AtomicU32, Ordering};
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let ns = TestNs {
                name: format!("rxtxcpu-u-{}-{n}", std::process::id()),
            };
            sh("ip", &["netns", "add", &ns.name]);
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

        pub fn ip(&self, args: &[&str]) -> String {
            let mut argv = vec!["-n", &self.name];
            argv.extend_from_slice(args);
            sh("ip", &argv)
        }

        /// `ip netns exec`: the command also sees the namespace's sysfs.
        pub fn exec(&self, args: &[&str]) -> String {
            let mut argv = vec!["netns", "exec", &self.name];
            argv.extend_from_slice(args);
            sh("ip", &argv)
        }

        /// Moves the calling thread into the namespace.
        pub fn enter(&self) {
            let file = std::fs::File::open(format!("/var/run/netns/{}", self.name)).unwrap();
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        }

        /// Runs `f` on a thread inside the namespace. With `sysfs`, the
        /// thread also gets a mount namespace of its own with a sysfs of
        /// the network namespace on /sys, as `ip netns exec` does, so that
        /// /sys/class/net shows the namespace's devices.
        pub fn run<T: Send>(&self, sysfs: bool, f: impl FnOnce() -> T + Send) -> T {
            std::thread::scope(|s| {
                s.spawn(|| {
                    self.enter();
                    if sysfs {
                        own_sysfs();
                    }
                    f()
                })
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e))
            })
        }
    }

    pub(crate) fn own_sysfs() {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
        let c = |s: &str| std::ffi::CString::new(s).unwrap();
        let (root, sys, sysfs) = (c("/"), c("/sys"), c("sysfs"));
        // SAFETY: mount(2) with NUL-terminated strings that outlive the
        // calls; the first makes this thread's mounts private so nothing
        // propagates back to the machine's mount namespace.
        unsafe {
            assert_eq!(
                libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null()
                ),
                0,
                "{}",
                io::Error::last_os_error()
            );
            libc::umount2(sys.as_ptr(), libc::MNT_DETACH);
            assert_eq!(
                libc::mount(
                    sysfs.as_ptr(),
                    sys.as_ptr(),
                    sysfs.as_ptr(),
                    0,
                    std::ptr::null()
                ),
                0,
                "{}",
                io::Error::last_os_error()
            );
        }
    }

    impl Drop for TestNs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.name])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    #[test]
    fn virtual_devices_report_no_rss() {
        let ns = TestNs::new();
        ns.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
        ns.ip(&["tuntap", "add", "dev", "tn0", "mode", "tun"]);
        ns.ip(&["tuntap", "add", "dev", "tm0", "mode", "tun", "multi_queue"]);
        for dev in ["va", "vb", "tn0", "tm0"] {
            ns.ip(&["link", "set", dev, "up"]);
        }
        ns.run(false, || {
            for dev in ["lo", "va", "tn0", "tm0"] {
                assert_eq!(rss(dev).unwrap(), None, "{dev}");
                for flow in FlowType::ALL {
                    assert_eq!(rx_hash_fields(dev, flow).unwrap(), None, "{dev} {flow:?}");
                }
                let ifindex = crate::sys::afpacket::ifindex(dev).unwrap();
                // No NAPI (veth uses one only with GRO or XDP on).
                assert_eq!(rx_queue_napi(ifindex, 0).unwrap(), None, "{dev}");
                assert_eq!(rx_rings(dev).unwrap(), None, "{dev}");
                assert_eq!(rx_queue_irq(dev, ifindex, 0), None, "{dev}");
                // No receive hash of their own: the flow hash is the
                // kernel's.
                assert_eq!(rx_hashing(dev).unwrap(), Some(false), "{dev}");
            }
            // A device of another namespace is not found.
            assert_eq!(rss("eth0").unwrap_err().raw_os_error(), Some(libc::ENODEV));
        });
        // The flags word is the device's features as they are now: veth
        // has rx-vlan-offload (ETH_FLAG_RXVLAN, 1 << 8) on until turned
        // off.
        const ETH_FLAG_RXVLAN: u32 = 1 << 8;
        assert_ne!(
            ns.run(false, || flags("va").unwrap().unwrap()) & ETH_FLAG_RXVLAN,
            0
        );
        ns.exec(&["ethtool", "-K", "va", "rxvlan", "off"]);
        assert_eq!(
            ns.run(false, || flags("va").unwrap().unwrap()) & ETH_FLAG_RXVLAN,
            0
        );
    }

    #[test]
    fn affinity_prefers_the_effective_cpus() {
        let a = IrqAffinity {
            affinity: CpuSet::parse_list("0-1").unwrap(),
            effective: CpuSet::parse_list("1"),
        };
        assert_eq!(a.cpus().to_string(), "1");
        let b = IrqAffinity {
            effective: Some(CpuSet::new()),
            ..a.clone()
        };
        assert_eq!(b.cpus().to_string(), "0-1");
        let c = IrqAffinity {
            effective: None,
            ..a
        };
        assert_eq!(c.cpus().to_string(), "0-1");
    }
}
