//! The flow key: what identifies a flow, read from the first bytes of a
//! packet without allocating.
//!
//! A flow is directional (A->B and B->A are two flows, as RSS sees them)
//! and is the 5-tuple after the link header and any VLAN tags: IPv4 or
//! IPv6 addresses (IPv6 extension headers skipped), the IP protocol, and
//! the ports of TCP, UDP, UDP-Lite, SCTP and DCCP. ICMP, ICMPv6 and other
//! IP protocols are keyed by addresses and protocol only. Frames that are
//! not IP (ARP, LLDP, ...) are keyed by ethertype, MAC addresses and VLAN
//! ids.
//!
//! VLAN ids are not part of an IP flow's key: a flow is the 5-tuple, and
//! a NIC's RSS (Toeplitz over addresses and ports) does not hash VLAN ids,
//! so one 5-tuple on two VLANs lands on one queue and is shown as one flow.
//! (The kernel's software hash, skb_get_hash(), does include the VLAN id:
//! FLOW_DISSECTOR_KEY_VLAN is among flow_keys_dissector_keys; such a flow
//! then shows up as REHASHED, which is what happened to it.) A frame that
//! is not IP has nothing but its MAC pair, and the same pair on two VLANs
//! is two separate conversations (a router's trunk answering ARP on each
//! VLAN with one MAC), so there the ids (outer first, at most two) are
//! kept.
//!
//! Packets cut by the snap length give the key whatever they still hold:
//! no ports when the transport header is cut, the link fields alone when
//! the IP header is cut. Parsing never panics.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    EtherType, IpNumber, Ipv4HeaderSlice, Ipv6ExtensionSlice, Ipv6ExtensionsSlice, Ipv6HeaderSlice,
};

use crate::packet::LinkType;
use crate::packet::Packet;
use crate::packet::{ARPHRD_ETHER, ARPHRD_LOOPBACK};

const KIND_LINK: u8 = 1;
const KIND_IPV4: u8 = 4;
const KIND_IPV6: u8 = 6;

/// `flags`: the ports are known.
const HAS_PORTS: u8 = 1;
/// `flags`: the MAC addresses are known (not on raw IP devices).
const HAS_MACS: u8 = 2;

/// `vlan` entries: tag present; the low 12 bits are the VLAN id.
const VLAN_PRESENT: u16 = 0x8000;

const ETH_HLEN: usize = 14;
/// Ethertype field values below this are 802.3 lengths, not types.
const ETH_P_802_3_MIN: u16 = 0x0600;

/// A flow's identity: a fixed-size value (48 bytes), cheap to hash and
/// compare, made per packet with no allocation.
///
/// Kept as six words so that comparing and hashing are six word
/// operations on the per-packet path:
///
/// - 0, 1: source: an IPv6 address, an IPv4 address (low 32 bits of word
///   0) or a MAC address (high 48 bits of word 0), big-endian, so word
///   order is address order
/// - 2, 3: destination, the same way
/// - 4: source port, destination port << 16, ethertype << 32, outer
///   VLAN << 48
/// - 5: inner VLAN, IP protocol << 16, kind << 24, flags << 32
///
/// Unused fields are zero, so two keys of the same flow are equal word for
/// word. Ethertype and VLANs are only set for frames that are not IP;
/// VLAN entries are VLAN_PRESENT | id.
#[derive(Clone, Copy)]
pub struct FlowKey {
    w: [u64; 6],
}

impl PartialEq for FlowKey {
    /// Branch-free: the array comparison calls memcmp, which cost as much
    /// as the rest of a table lookup.
    #[inline]
    fn eq(&self, o: &FlowKey) -> bool {
        let (a, b) = (&self.w, &o.w);
        ((a[0] ^ b[0])
            | (a[1] ^ b[1])
            | (a[2] ^ b[2])
            | (a[3] ^ b[3])
            | (a[4] ^ b[4])
            | (a[5] ^ b[5]))
            == 0
    }
}

impl Eq for FlowKey {}

impl Hash for FlowKey {
    /// One pre-mixed word: three independent folded multiplies (the core
    /// of wyhash and foldhash) instead of six dependent hasher rounds.
    /// The constants differ per pair, so swapping source and destination
    /// gives another hash.
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.hash64());
    }
}

impl FlowKey {
    /// A key no packet makes (kind 0): what an empty table slot holds.
    pub(super) const NONE: FlowKey = FlowKey { w: [0; 6] };

    /// The key's hash: what [`Hash`] feeds a hasher, and what the flow
    /// tables index by.
    #[inline]
    pub(super) fn hash64(&self) -> u64 {
        let w = &self.w;
        fold(w[0] ^ K[0], w[1] ^ K[1])
            ^ fold(w[2] ^ K[2], w[3] ^ K[3])
            ^ fold(w[4] ^ K[4], w[5] ^ K[5])
    }
}

/// Digits of pi: arbitrary odd constants with mixed bits.
const K: [u64; 6] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7345,
    0xa409_3822_299f_31d1,
    0x082e_fa98_ec4e_6c89,
    0x4528_21e6_38d0_1377,
    0xbe54_66cf_34e9_0c6d,
];

/// The high and low halves of the 128-bit product, xored: every input bit
/// reaches most output bits.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Ord for FlowKey {
    /// Kind (non-IP, IPv4, IPv6), then the words: addresses, ports, the
    /// rest. Only for a deterministic display order.
    fn cmp(&self, other: &FlowKey) -> std::cmp::Ordering {
        (self.kind(), self.w).cmp(&(other.kind(), other.w))
    }
}

impl PartialOrd for FlowKey {
    fn partial_cmp(&self, other: &FlowKey) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FlowKey({} {} -> {}",
            self.proto().name(),
            self.src(),
            self.dst()
        )?;
        for v in self.vlans() {
            write!(f, " vlan {v}")?;
        }
        f.write_str(")")
    }
}

/// A flow's protocol, for display.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Proto {
    /// IPv4 or IPv6 with this IP protocol number (IPv6: after the
    /// extension headers).
    Ip(u8),
    /// Not IP: this ethertype (0 for 802.3 frames with a length field).
    Ether(u16),
}

impl Proto {
    /// The name used in the text table and in JSON: `tcp`, `udp`, `icmp`,
    /// `icmpv6`, `sctp`, `arp`, ...; `ip-proto-N` and `ethertype-0xNNNN`
    /// for the unnamed ones.
    pub fn name(self) -> String {
        match self {
            Proto::Ip(n) => match ip_proto_name(n) {
                Some(s) => s.to_string(),
                None => format!("ip-proto-{n}"),
            },
            Proto::Ether(t) => match ethertype_name(t) {
                Some(s) => s.to_string(),
                None => format!("ethertype-0x{t:04x}"),
            },
        }
    }
}

fn ip_proto_name(n: u8) -> Option<&'static str> {
    Some(match n {
        1 => "icmp",
        2 => "igmp",
        4 => "ipip",
        6 => "tcp",
        17 => "udp",
        33 => "dccp",
        41 => "ipv6",
        47 => "gre",
        50 => "esp",
        51 => "ah",
        58 => "icmpv6",
        89 => "ospf",
        103 => "pim",
        112 => "vrrp",
        132 => "sctp",
        136 => "udplite",
        _ => return None,
    })
}

fn ethertype_name(t: u16) -> Option<&'static str> {
    Some(match t {
        0 => "llc",
        // IP frames whose IP header was cut or malformed.
        0x0800 => "ipv4",
        0x86dd => "ipv6",
        0x0806 => "arp",
        0x8035 => "rarp",
        0x8100 | 0x88a8 | 0x9100 => "vlan",
        0x8809 => "slow",
        0x888e => "eapol",
        0x88cc => "lldp",
        0x88f7 => "ptp",
        0x8847 => "mpls",
        0x8848 => "mpls-mc",
        0x8863 => "pppoe-d",
        0x8864 => "pppoe-s",
        _ => return None,
    })
}

/// One end of a flow, for display.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Endpoint {
    V4(Ipv4Addr, Option<u16>),
    V6(Ipv6Addr, Option<u16>),
    Mac([u8; 6]),
    /// A frame that is not IP on a device without MAC addresses.
    None,
}

impl fmt::Display for Endpoint {
    /// `10.0.0.1:80`, `10.0.0.1`, `[fe80::1]:80`, `fe80::1`,
    /// `02:00:00:00:00:01`, `-`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::V4(a, Some(p)) => write!(f, "{a}:{p}"),
            Endpoint::V4(a, None) => write!(f, "{a}"),
            Endpoint::V6(a, Some(p)) => write!(f, "[{a}]:{p}"),
            Endpoint::V6(a, None) => write!(f, "{a}"),
            Endpoint::Mac(m) => write!(
                f,
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
            Endpoint::None => f.write_str("-"),
        }
    }
}

/// What the link layer gave a frame that is not IP: its MAC addresses and
/// VLAN tags.
#[derive(Clone, Copy, Default)]
struct Link<'a> {
    /// Destination and source MAC (the first 12 bytes of an Ethernet
    /// frame), or empty. Kept as a slice and read only for a key that
    /// needs them: copying them out for every packet cost a
    /// store-forwarding stall per packet.
    macs: &'a [u8],
    vlan: [u16; 2],
    tags: usize,
}

impl Link<'_> {
    fn push_vlan(&mut self, tci: u16) {
        if self.tags < 2 {
            self.vlan[self.tags] = VLAN_PRESENT | (tci & 0x0fff);
        }
        self.tags += 1;
    }
}

impl FlowKey {
    #[inline]
    fn zero(kind: u8) -> FlowKey {
        FlowKey {
            w: [0, 0, 0, 0, 0, u64::from(kind) << 24],
        }
    }

    fn kind(&self) -> u8 {
        (self.w[5] >> 24) as u8
    }

    fn flags(&self) -> u8 {
        (self.w[5] >> 32) as u8
    }

    #[inline]
    fn set_flag(&mut self, flag: u8) {
        self.w[5] |= u64::from(flag) << 32;
    }

    #[inline]
    fn set_proto(&mut self, proto: u8) {
        self.w[5] = (self.w[5] & !(0xff << 16)) | u64::from(proto) << 16;
    }

    fn ip_proto(&self) -> u8 {
        (self.w[5] >> 16) as u8
    }

    fn ethertype(&self) -> u16 {
        (self.w[4] >> 32) as u16
    }

    fn vlan(&self) -> [u16; 2] {
        [(self.w[4] >> 48) as u16, self.w[5] as u16]
    }

    #[inline]
    fn set_v4(&mut self, src: [u8; 4], dst: [u8; 4]) {
        self.w[0] = u64::from(u32::from_be_bytes(src));
        self.w[2] = u64::from(u32::from_be_bytes(dst));
    }

    #[inline]
    fn set_v6(&mut self, src: [u8; 16], dst: [u8; 16]) {
        let [a, b] = v6_words(src);
        let [c, d] = v6_words(dst);
        self.w[..4].copy_from_slice(&[a, b, c, d]);
    }

    /// The key of a packet read from a ring of a capture of link type
    /// `link`.
    ///
    /// Ethernet devices (the Ethernet link type, and Ethernet devices in
    /// the all-interfaces capture) are parsed from their Ethernet header:
    /// the frame itself (what the pcap output holds too) says which tags
    /// are left in it, while `net_offset` and `protocol` may disagree (a
    /// tagged frame sent through a packet socket shows the outer tag's
    /// type as `protocol` but the network header behind the tags; see
    /// kernel_tests.rs). Other
    /// devices are parsed from `net_offset` with `protocol` as the
    /// ethertype (the IP version deciding where the protocol is 0); on a
    /// raw IP device from `net_offset` by the IP version. A tag the kernel
    /// stripped (`vlan`) was the outermost.
    #[inline]
    pub fn of_packet(link: LinkType, p: &Packet<'_>) -> FlowKey {
        match framing(link, p) {
            Framing::Ethernet(frame, stripped) => {
                FlowKey::from_ethernet(frame, stripped.map(|(_tpid, tci)| tci))
            }
            Framing::Network(ethertype, data, stripped) => {
                let mut l = Link::default();
                if let Some((_tpid, tci)) = stripped {
                    l.push_vlan(tci);
                }
                FlowKey::from_l3(ethertype, data, l, true)
            }
        }
    }

    /// The key of an Ethernet frame (starting at the destination MAC).
    /// `stripped_tci` is the TCI of a VLAN tag the kernel or the device
    /// took out of the frame (it was the outermost tag); tags still in the
    /// frame (802.1Q, 802.1ad, QinQ) are skipped.
    #[inline]
    pub fn from_ethernet(frame: &[u8], stripped_tci: Option<u16>) -> FlowKey {
        let mut l = Link::default();
        if let Some(tci) = stripped_tci {
            l.push_vlan(tci);
        }
        if frame.len() < ETH_HLEN {
            // Not even an Ethernet header: a key of nothing but the tag.
            return FlowKey::link(0, l);
        }
        l.macs = &frame[..12];
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        FlowKey::from_l3(ethertype, &frame[ETH_HLEN..], l, false)
    }

    /// The key of a bare IP packet (a raw IP device such as tun), by its
    /// version field.
    #[cfg(test)]
    #[inline]
    pub fn from_ip(packet: &[u8]) -> FlowKey {
        FlowKey::from_l3(ethertype_by_version(packet), packet, Link::default(), false)
    }

    /// The key of what follows a link header whose type field is
    /// `ethertype`; `by_version` lets the IP version decide when the
    /// device gave no protocol (0).
    #[inline]
    fn from_l3(ethertype: u16, data: &[u8], mut l: Link<'_>, by_version: bool) -> FlowKey {
        let (mut ethertype, data) = skip_vlan_tags(ethertype, data, |_tpid, tci| l.push_vlan(tci));
        if by_version && ethertype == 0 {
            ethertype = ethertype_by_version(data);
        }
        let ip = match EtherType(ethertype) {
            EtherType::IPV4 => ipv4(data),
            EtherType::IPV6 => ipv6(data),
            _ => None,
        };
        ip.unwrap_or_else(|| FlowKey::link(ethertype, l))
    }

    fn link(ethertype: u16, l: Link<'_>) -> FlowKey {
        let mut k = FlowKey::zero(KIND_LINK);
        let ethertype = if ethertype < ETH_P_802_3_MIN {
            0
        } else {
            ethertype
        };
        k.w[4] = u64::from(ethertype) << 32 | u64::from(l.vlan[0]) << 48;
        k.w[5] |= u64::from(l.vlan[1]);
        if let [d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5] = *l.macs {
            k.set_flag(HAS_MACS);
            k.w[0] = mac_word([s0, s1, s2, s3, s4, s5]);
            k.w[2] = mac_word([d0, d1, d2, d3, d4, d5]);
        }
        k
    }

    /// The protocol.
    pub fn proto(&self) -> Proto {
        match self.kind() {
            KIND_IPV4 | KIND_IPV6 => Proto::Ip(self.ip_proto()),
            _ => Proto::Ether(self.ethertype()),
        }
    }

    /// The source.
    pub fn src(&self) -> Endpoint {
        self.endpoint(self.w[0], self.w[1], self.w[4] as u16)
    }

    /// The destination.
    pub fn dst(&self) -> Endpoint {
        self.endpoint(self.w[2], self.w[3], (self.w[4] >> 16) as u16)
    }

    /// The ports (source, destination), where the protocol has them and
    /// the packet held them (not in later fragments).
    pub fn ports(&self) -> Option<(u16, u16)> {
        (self.flags() & HAS_PORTS != 0).then_some((self.w[4] as u16, (self.w[4] >> 16) as u16))
    }

    /// The source and destination addresses of an IP flow (to rebuild
    /// the tuple a NIC hashes, with [`FlowKey::ports`]).
    pub fn ip_addrs(&self) -> Option<(std::net::IpAddr, std::net::IpAddr)> {
        match (self.src(), self.dst()) {
            (Endpoint::V4(s, _), Endpoint::V4(d, _)) => Some((s.into(), d.into())),
            (Endpoint::V6(s, _), Endpoint::V6(d, _)) => Some((s.into(), d.into())),
            _ => None,
        }
    }

    /// VLAN ids of a frame that is not IP, outer first (at most two; IP
    /// flows have none).
    pub fn vlans(&self) -> Vec<u16> {
        self.vlan()
            .iter()
            .filter(|v| *v & VLAN_PRESENT != 0)
            .map(|v| v & 0x0fff)
            .collect()
    }

    fn endpoint(&self, hi: u64, lo: u64, port: u16) -> Endpoint {
        let port = (self.flags() & HAS_PORTS != 0).then_some(port);
        match self.kind() {
            KIND_IPV4 => Endpoint::V4(Ipv4Addr::from(hi as u32), port),
            KIND_IPV6 => Endpoint::V6(Ipv6Addr::from(u128::from(hi) << 64 | u128::from(lo)), port),
            _ if self.flags() & HAS_MACS != 0 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(&hi.to_be_bytes()[..6]);
                Endpoint::Mac(m)
            }
            _ => Endpoint::None,
        }
    }

    /// Builds the key of an IP flow (for callers that know a flow from
    /// elsewhere: the kernel probes of `--drops` and `--path`, tests).
    pub fn ip(
        src: std::net::IpAddr,
        dst: std::net::IpAddr,
        proto: u8,
        ports: Option<(u16, u16)>,
    ) -> FlowKey {
        use std::net::IpAddr;
        let mut k = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut k = FlowKey::zero(KIND_IPV4);
                k.set_v4(s.octets(), d.octets());
                k
            }
            (s, d) => {
                let mut k = FlowKey::zero(KIND_IPV6);
                k.set_v6(v6(s).octets(), v6(d).octets());
                k
            }
        };
        k.set_proto(proto);
        if let Some((s, d)) = ports {
            k.set_ports(s, d);
        }
        k
    }

    #[inline]
    fn set_ports(&mut self, sport: u16, dport: u16) {
        self.w[4] |= u64::from(sport) | u64::from(dport) << 16;
        self.set_flag(HAS_PORTS);
    }

    /// The ports of `proto` at the start of `payload`, if it has ports and
    /// they were captured.
    #[inline]
    fn read_ports(&mut self, payload: &[u8]) {
        let has_ports = matches!(
            IpNumber(self.ip_proto()),
            IpNumber::TCP | IpNumber::UDP | IpNumber::SCTP | IpNumber::UDP_LITE | IpNumber::DCCP
        );
        if has_ports && payload.len() >= 4 {
            self.set_ports(
                u16::from_be_bytes([payload[0], payload[1]]),
                u16::from_be_bytes([payload[2], payload[3]]),
            );
        }
    }
}

/// Where a packet's link layer is read from, for a capture of a given
/// link type: what [`FlowKey::of_packet`] and the repeats' digest
/// ([`crate::consumers::repeats`]) both walk.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Framing<'a> {
    /// An Ethernet frame from its destination MAC, and the (TPID, TCI) of
    /// a tag the device took off it (it was the outermost).
    Ethernet(&'a [u8], Option<(u16, u16)>),
    /// The network layer (`net_offset` on), the type the device gave it
    /// (0: the IP version decides), and a stripped tag as above.
    Network(u16, &'a [u8], Option<(u16, u16)>),
}

/// How to read a packet of a capture of link type `link` (see
/// [`FlowKey::of_packet`] for why Ethernet devices are read from their
/// Ethernet header). A raw IP device has no link header and no tags: the
/// IP version alone decides.
#[inline(always)]
pub(crate) fn framing<'a>(link: LinkType, p: &Packet<'a>) -> Framing<'a> {
    match link {
        LinkType::Ethernet => Framing::Ethernet(p.data, p.vlan),
        LinkType::Raw => Framing::Network(0, p.data.get(p.net_offset..).unwrap_or(&[]), None),
        LinkType::LinuxSll2 => {
            if matches!(p.hatype, ARPHRD_ETHER | ARPHRD_LOOPBACK) && p.net_offset >= ETH_HLEN {
                Framing::Ethernet(p.data, p.vlan)
            } else {
                let data = p.data.get(p.net_offset..).unwrap_or(&[]);
                Framing::Network(u16::from_be(p.protocol), data, p.vlan)
            }
        }
    }
}

/// Skips the VLAN tags (802.1Q, 802.1ad, the old QinQ type) at the start
/// of `data`, which a link header of type `ethertype` introduces; `tag`
/// gets each one's (TPID, TCI), outer first. Returns the type after the
/// tags and what follows them. A tag cut short ends the walk there.
#[inline(always)]
pub(crate) fn skip_vlan_tags(
    mut ethertype: u16,
    mut data: &[u8],
    mut tag: impl FnMut(u16, u16),
) -> (u16, &[u8]) {
    while matches!(
        EtherType(ethertype),
        EtherType::VLAN_TAGGED_FRAME
            | EtherType::PROVIDER_BRIDGING
            | EtherType::VLAN_DOUBLE_TAGGED_FRAME
    ) {
        let [t0, t1, e0, e1, ..] = *data else {
            break;
        };
        tag(ethertype, u16::from_be_bytes([t0, t1]));
        ethertype = u16::from_be_bytes([e0, e1]);
        data = &data[4..];
    }
    (ethertype, data)
}

/// The ethertype of a packet with no link header, by its IP version (0
/// when it is neither 4 nor 6).
#[inline(always)]
pub(crate) fn ethertype_by_version(data: &[u8]) -> u16 {
    match data.first().map(|b| b >> 4) {
        Some(4) => EtherType::IPV4.0,
        Some(6) => EtherType::IPV6.0,
        _ => 0,
    }
}

fn v6_words(a: [u8; 16]) -> [u64; 2] {
    let x = u128::from_be_bytes(a);
    [(x >> 64) as u64, x as u64]
}

fn mac_word(m: [u8; 6]) -> u64 {
    u64::from_be_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0])
}

fn v6(a: std::net::IpAddr) -> Ipv6Addr {
    match a {
        std::net::IpAddr::V4(a) => a.to_ipv6_mapped(),
        std::net::IpAddr::V6(a) => a,
    }
}

/// IPv4: addresses and protocol; the ports unless this is a fragment
/// after the first (only the first carries the transport header).
#[inline]
fn ipv4(data: &[u8]) -> Option<FlowKey> {
    let mut k = FlowKey::zero(KIND_IPV4);
    match Ipv4HeaderSlice::from_slice(data) {
        Ok(h) => {
            k.set_v4(h.source(), h.destination());
            k.set_proto(h.protocol().0);
            if h.fragments_offset().value() == 0 {
                k.read_ports(&data[h.slice().len()..]);
            }
        }
        // Options cut by the snap length (or a bad header length): the
        // fixed part still names the addresses and protocol.
        Err(_) if data.len() >= 20 && data[0] >> 4 == 4 => {
            k.set_v4(
                [data[12], data[13], data[14], data[15]],
                [data[16], data[17], data[18], data[19]],
            );
            k.set_proto(data[9]);
        }
        Err(_) => return None,
    }
    Some(k)
}

/// IPv6: addresses and the protocol after the extension headers (hop by
/// hop, routing, destination options, fragment, authentication: the ones
/// the kernel's flow dissector also walks); the ports unless a fragment
/// header says this is a fragment after the first. An extension header
/// cut by the snap length ends the walk: the key then has the header type
/// it stopped at as protocol, and no ports.
#[inline]
fn ipv6(data: &[u8]) -> Option<FlowKey> {
    let h = Ipv6HeaderSlice::from_slice(data).ok()?;
    let mut k = FlowKey::zero(KIND_IPV6);
    k.set_v6(h.source(), h.destination());
    let rest = &data[h.slice().len()..];
    let next = h.next_header();
    if !is_ipv6_ext(next) {
        k.set_proto(next.0);
        k.read_ports(rest);
        return Some(k);
    }
    let (exts, next, payload, err) = Ipv6ExtensionsSlice::from_slice_lax(next, rest);
    k.set_proto(next.0);
    if err.is_some() {
        return Some(k);
    }
    // etherparse 0.17 decodes the fragment header's offset and M flag
    // from the wrong bits (fixed in 0.20.x, which needs Rust 1.83), so its
    // fragment_offset() and is_fragmenting_payload() are not used: RFC
    // 8200 puts the offset in the top 13 bits of bytes 2-3.
    let later_fragment = exts.into_iter().any(|e| match e {
        Ipv6ExtensionSlice::Fragment(f) => {
            let b = f.slice();
            u16::from_be_bytes([b[2], b[3]]) >> 3 != 0
        }
        _ => false,
    });
    if !later_fragment {
        k.read_ports(payload);
    }
    Some(k)
}

fn is_ipv6_ext(n: IpNumber) -> bool {
    matches!(
        n,
        IpNumber::IPV6_HEADER_HOP_BY_HOP
            | IpNumber::IPV6_ROUTE_HEADER
            | IpNumber::IPV6_FRAGMENTATION_HEADER
            | IpNumber::IPV6_DESTINATION_OPTIONS
            | IpNumber::AUTHENTICATION_HEADER
    )
}
