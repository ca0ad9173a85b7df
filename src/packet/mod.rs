//! What every source yields and every consumer takes: a [`Packet`] (one
//! captured frame and what the kernel said about it), the [`LinkType`]
//! of a capture, and a packet's record bytes as pcap and pcapng hold
//! them ([`Frame`]).

mod frame;

pub use frame::Frame;

use pcap_file::DataLink;

/// A timestamp in nanoseconds since the epoch.
#[inline]
pub fn stamp_ns(sec: u32, nsec: u32) -> u64 {
    u64::from(sec) * 1_000_000_000 + u64::from(nsec)
}

/// One packet in a block.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    pub sec: u32,
    pub nsec: u32,
    /// Length on the wire.
    pub len: u32,
    /// The captured bytes, from the link-layer header.
    pub data: &'a [u8],
    /// Offset of the network header within `data`.
    pub net_offset: usize,
    pub ifindex: i32,
    pub hatype: u16,
    pub pkttype: u8,
    /// The link-layer protocol, network byte order as on the wire.
    pub protocol: u16,
    pub halen: u8,
    pub addr: [u8; 8],
    /// (TPID, TCI) of a VLAN tag the device stripped from the frame.
    pub vlan: Option<(u16, u16)>,
    /// The kernel's flow hash; 0 when not asked for (see
    /// `sys::ring::Geometry::with_hash`) or when the kernel has none (its own hash
    /// is never 0).
    pub hash: u32,
}

/// Length of a LINUX_SLL2 header.
pub const SLL2_LEN: usize = 20;

/// How packets are recorded, decided by the interface type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet headers: Ethernet devices and loopback.
    Ethernet,
    /// Bare IP, no link header: tun and other headerless IP devices.
    Raw,
    /// A synthesized LINUX_SLL2 header recording each packet's interface,
    /// hardware type and direction: the all-interfaces capture, where link
    /// types mix, and any device whose own headers pcap cannot name.
    LinuxSll2,
}

impl LinkType {
    /// The link type for a capture on one interface of hardware type
    /// `hatype` (ARPHRD_*), as libpcap maps them.
    pub fn for_hatype(hatype: u16) -> LinkType {
        const ARPHRD_TUNNEL: u16 = 768;
        const ARPHRD_TUNNEL6: u16 = 769;
        const ARPHRD_SIT: u16 = 776;
        const ARPHRD_IPGRE: u16 = 778;
        const ARPHRD_RAWIP: u16 = 519;
        const ARPHRD_NONE: u16 = 0xfffe;
        match hatype {
            ARPHRD_ETHER | ARPHRD_LOOPBACK => LinkType::Ethernet,
            ARPHRD_NONE | ARPHRD_RAWIP | ARPHRD_TUNNEL | ARPHRD_TUNNEL6 | ARPHRD_SIT
            | ARPHRD_IPGRE => LinkType::Raw,
            _ => LinkType::LinuxSll2,
        }
    }

    /// Its pcap link type.
    pub fn datalink(self) -> DataLink {
        match self {
            LinkType::Ethernet => DataLink::ETHERNET,
            LinkType::Raw => DataLink::RAW,
            LinkType::LinuxSll2 => DataLink::LINUX_SLL2,
        }
    }

    /// The snapshot length of the file for a requested `snaplen`: a
    /// cooked record holds its SLL2 header and at least one byte, so
    /// libpcap raises a smaller snap length to 21; so does this.
    pub fn snaplen(self, snaplen: u32) -> u32 {
        match self {
            LinkType::LinuxSll2 => snaplen.max(SLL2_LEN as u32 + 1),
            LinkType::Ethernet | LinkType::Raw => snaplen,
        }
    }

    /// tcpdump's name for it.
    pub fn describe(self) -> &'static str {
        match self {
            LinkType::Ethernet => "EN10MB (Ethernet)",
            LinkType::Raw => "RAW (Raw IP)",
            LinkType::LinuxSll2 => "LINUX_SLL2 (Linux cooked v2)",
        }
    }
}

pub const ARPHRD_ETHER: u16 = 1;

pub const ARPHRD_LOOPBACK: u16 = 772;
