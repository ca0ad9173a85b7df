//! Frames built byte by byte for the tests (the layouts are the RFCs').

use crate::packet::Packet;

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
pub const V6_A: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const V6_B: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const ARPHRD_ETHER: u16 = 1;
pub const ARPHRD_NONE: u16 = 0xfffe;

/// An Ethernet frame from `src` to `dst`.
pub fn eth_from(src: [u8; 6], dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An Ethernet frame from A to B.
pub fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    eth_from(MAC_A, MAC_B, ethertype, payload)
}

/// A VLAN tag (TCI, then the type of what follows) before `inner`.
pub fn tag(tci: u16, ethertype: u16, inner: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&tci.to_be_bytes());
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(inner);
    f
}

/// The Internet checksum of `b`.
pub fn checksum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in b.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 from 192.0.2.1 to 192.0.2.2 with `ttl`, TOS `tos`, ID `id`, its
/// header checksum right.
pub fn ipv4_ttl(proto: u8, ttl: u8, tos: u8, id: u16, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut p = vec![0x45, tos];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x40, 0]); // DF
    p.extend_from_slice(&[ttl, proto, 0, 0]);
    p.extend_from_slice(&[192, 0, 2, 1]);
    p.extend_from_slice(&[192, 0, 2, 2]);
    let c = checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

pub fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_ttl(proto, 64, 0, 0x1234, payload)
}

/// IPv6 from 2001:db8::1 to 2001:db8::2 with `hops`, traffic class `tc`.
pub fn ipv6_hops(next: u8, hops: u8, tc: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60 | tc >> 4, tc << 4, 0x12, 0x34];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, hops]);
    p.extend_from_slice(&V6_A);
    p.extend_from_slice(&V6_B);
    p.extend_from_slice(payload);
    p
}

pub fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    ipv6_hops(next, 64, 0, payload)
}

/// An 8-byte hop-by-hop, routing or destination options header.
pub fn ext8(next: u8, inner: &[u8]) -> Vec<u8> {
    let mut p = vec![next, 0, 1, 4, 0, 0, 0, 0]; // PadN option
    p.extend_from_slice(inner);
    p
}

/// An IPv6 fragment header.
pub fn frag6(next: u8, offset: u16, more: bool, inner: &[u8]) -> Vec<u8> {
    let mut p = vec![next, 0];
    p.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x56, 0x78]);
    p.extend_from_slice(inner);
    p
}

/// UDP with `data` (checksum left 0: not checked here).
pub fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(data);
    p
}

/// TCP with `flags`, seq, ack, window, `options` (a multiple of 4) and
/// `data`.
pub fn tcp_full(
    ports: (u16, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    win: u16,
    options: &[u8],
    data: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let mut p = Vec::new();
    p.extend_from_slice(&ports.0.to_be_bytes());
    p.extend_from_slice(&ports.1.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    p.push((((20 + options.len()) / 4) as u8) << 4);
    p.push(flags);
    p.extend_from_slice(&win.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    p.extend_from_slice(options);
    p.extend_from_slice(data);
    p
}

/// The ACK.
pub fn ack() -> Vec<u8> {
    tcp_full((54517, 80), 1, 3_787_879_787, 0x10, 6551, &[], &[])
}

/// ICMP (or ICMPv6) echo of type `ty`, `len` bytes in all.
pub fn echo(ty: u8, id: u16, seq: u16, len: usize) -> Vec<u8> {
    let mut p = vec![ty, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend((8..len).map(|i| i as u8));
    p
}

/// An ARP request for 192.0.2.2 from A at 192.0.2.1.
pub fn arp_request() -> Vec<u8> {
    let mut p = vec![0, 1, 8, 0, 6, 4, 0, 1];
    p.extend_from_slice(&MAC_A);
    p.extend_from_slice(&[192, 0, 2, 1]);
    p.extend_from_slice(&[0; 6]);
    p.extend_from_slice(&[192, 0, 2, 2]);
    p
}

/// A ring packet of `data` at time `ns`; the one place that knows all
/// of Packet's fields.
pub fn pkt_at(data: &[u8], ns: u64) -> Packet<'_> {
    Packet {
        sec: (ns / 1_000_000_000) as u32,
        nsec: (ns % 1_000_000_000) as u32,
        len: data.len() as u32,
        data,
        net_offset: 14,
        ifindex: 2,
        hatype: ARPHRD_ETHER,
        pkttype: 0,
        protocol: 0x0800u16.to_be(),
        halen: 6,
        addr: [2, 0, 0, 0, 0, 0x0a, 0, 0],
        vlan: None,
        hash: 0,
    }
}

pub fn pkt(data: &[u8]) -> Packet<'_> {
    pkt_at(data, 1_000_000_000)
}
