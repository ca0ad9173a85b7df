//! The digest: one 64-bit number per packet that two copies of the same
//! packet share, whatever router or stuck queue made the copy.
//!
//! # What is covered
//!
//! - the first [`COVER`] bytes of the network-layer packet (for an IPv4
//!   TCP segment without options: the IP and TCP headers and the first
//!   88 bytes of payload; for IPv6 TCP: 68), read as they were captured
//!   (bytes past the snap length are not there to compare);
//! - the network-layer packet's length on the wire (so two packets that
//!   differ only past [`COVER`] bytes still differ if their lengths do);
//! - the link layer's type field and its VLAN tags (TPID and VLAN id of
//!   each, outer first), whether a tag is still in the frame or the
//!   device took it off (`Packet::vlan`): the same frame counts as one
//!   packet either way;
//! - the interface index: in the all-interfaces capture a packet that is
//!   forwarded or bridged is seen once on each interface it crosses, and
//!   those are not repeats (on one interface the index is the same for
//!   every packet);
//! - for a frame that is not IP (ARP, LLDP, ...): its MAC addresses.
//!
//! # What is not
//!
//! What a router changes when it forwards a packet, so that a packet
//! circling in a routing loop is one packet:
//!
//! - the IPv4 TTL, the IPv4 header checksum (which changes with it) and
//!   the IPv6 hop limit;
//! - the ECN bits of the IPv4 TOS and IPv6 traffic class (a congested
//!   router sets CE on a packet of an ECN-capable transport, RFC 3168:
//!   once, but a looping packet may meet such a router on any pass);
//! - the Ethernet addresses of an IP packet: every router rewrites them.
//!   Two namespaces (or routers) forwarding a packet back and forth over
//!   one link put it on the link with their own source address and the
//!   other's destination address, so a capture on either end sees the
//!   copies with the two address pairs alternating; with the addresses
//!   the loop would be two packets of half the copies each.
//!
//! The transport checksums stay: they do not cover the TTL (the IPv4
//! pseudo-header has no TTL, the IPv6 one no hop limit), so a router does
//! not change them. Not covered either, as they are rare: IPv4 options
//! that routers fill in (record route, timestamp), IPv6 hop-by-hop
//! options marked as changing en route, MPLS label TTLs, and anything a
//! NAT rewrites (a loop through a NAT changes addresses or ports: each
//! pass is another packet).
//!
//! # Size
//!
//! 64 bits: a repeat is a match of a new packet's digest against the few
//! digests of its table bucket (4 in the window of recent packets, 8 in
//! the table of repeating ones), so a false match takes one chance in
//! 2^64 / 12 per packet: at 10 million packets a second, once in 4,800
//! years. And a false match is one false copy, not a report: a packet is
//! reported after [`super::DEFAULT_MIN`] copies. The digest is seeded at
//! random per run (all streams of a capture share the seed, so the merge
//! can match their digests): nobody can craft packets that collide with
//! another packet's digest, or that all fall in one table bucket.

use std::sync::OnceLock;

use crate::consumers::flows::key::{ethertype_by_version, framing, skip_vlan_tags, Framing};
use crate::packet::LinkType;
use crate::packet::Packet;

/// Bytes of the network-layer packet covered.
pub const COVER: usize = 128;

const ETH_HLEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;

/// What of the first 16 bytes of an IPv4 header is compared, as the two
/// little-endian words the hash reads them in: byte 1 without its ECN bits
/// (the low two), byte 8 (TTL) and bytes 10-11 (checksum) not at all.
const IPV4_MASK: [u64; 2] = [!(0x03 << 8), 0xffff_ffff_0000_ff00];
/// The same for IPv6: byte 1 without the ECN bits (bits 4 and 5: the
/// traffic class straddles bytes 0 and 1), byte 7 (hop limit) not at all.
const IPV6_MASK: [u64; 2] = [!(0x30 << 8 | 0xff << 56), !0];
const NO_MASK: [u64; 2] = [!0, !0];

/// Kinds, in the digest (an IP packet and a non-IP frame with the same
/// bytes differ).
const KIND_OTHER: u64 = 0;
const KIND_IPV4: u64 = 1;
const KIND_IPV6: u64 = 2;

/// Secrets: a word per word hashed (two per 16 bytes of [`COVER`], two
/// for the MAC addresses, two for the link fields, two for the lengths).
const SECRETS: usize = COVER / 8 + 6;

/// Digits of e: arbitrary constants, xored with the run's seed.
const E: [u64; 4] = [
    0xb7e1_5162_8aed_2a6a,
    0xbf71_5880_9cf4_f3c7,
    0x62e7_160f_38b4_da56,
    0xa784_d904_5190_cfef,
];

/// Computes digests with one seed.
#[derive(Clone, Debug)]
pub struct Digester {
    secret: [u64; SECRETS],
}

/// The seed of this run: every [`Digester::new`] gets it, so all streams'
/// digests agree.
fn run_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        use std::hash::{BuildHasher, RandomState};
        // std's RandomState takes its keys from the kernel's random
        // source (getrandom) once per process, then varies them per
        // instance.
        RandomState::new().hash_one(0x0072_6570_6561_7473_u64)
    })
}

impl Default for Digester {
    fn default() -> Digester {
        Digester::new()
    }
}

impl Digester {
    /// With the run's seed.
    pub fn new() -> Digester {
        Digester::with_seed(run_seed())
    }

    /// With a given seed (tests, and anything that must reproduce
    /// digests).
    pub fn with_seed(seed: u64) -> Digester {
        let mut secret = [0u64; SECRETS];
        let mut s = seed;
        for (i, w) in secret.iter_mut().enumerate() {
            // splitmix64: well-mixed words, all different.
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *w = z ^ (z >> 31) ^ E[i % 4];
        }
        Digester { secret }
    }

    /// The digest of `p`, captured on a capture of link type `link`.
    /// Never 0 (the tables' mark of a free slot).
    #[inline(always)]
    pub fn digest(&self, link: LinkType, p: &Packet<'_>) -> u64 {
        // VLAN tags, outer first (a stripped one was the outermost), as
        // TPID and VLAN id: the priority bits are left out, as a switch
        // or the sender's egress map may set them per hop.
        let mut tags = 0u64;
        let mut tag = |tpid: u16, tci: u16| {
            tags = tags.rotate_left(29) ^ (u64::from(tpid) << 16 | u64::from(tci & 0x0fff));
        };
        let (macs, ethertype, l3): (&[u8], u16, &[u8]) = match framing(link, p) {
            Framing::Ethernet(frame, stripped) => {
                if let Some((tpid, tci)) = stripped {
                    tag(tpid, tci);
                }
                if frame.len() >= ETH_HLEN {
                    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
                    let (e, l3) = skip_vlan_tags(ethertype, &frame[ETH_HLEN..], &mut tag);
                    (&frame[..12], e, l3)
                } else {
                    // Not even an Ethernet header: its bytes, as they are.
                    (&[], 0, frame)
                }
            }
            Framing::Network(ethertype, data, stripped) => {
                if let Some((tpid, tci)) = stripped {
                    tag(tpid, tci);
                }
                let (mut e, l3) = skip_vlan_tags(ethertype, data, &mut tag);
                if e == 0 {
                    e = ethertype_by_version(l3);
                }
                (&[], e, l3)
            }
        };
        // Where the network layer starts in the captured bytes, to know
        // its length on the wire from the packet's.
        let l3_at = p.data.len() - l3.len();
        let l3_len = p.len.saturating_sub(l3_at as u32);
        let version = l3.first().map_or(0, |b| b >> 4);
        let (kind, mask, macs) = match (ethertype, version) {
            (ETHERTYPE_IPV4, 4) => (KIND_IPV4, IPV4_MASK, &[][..]),
            (ETHERTYPE_IPV6, 6) => (KIND_IPV6, IPV6_MASK, &[][..]),
            _ => (KIND_OTHER, NO_MASK, macs),
        };
        let head = u64::from(ethertype) | kind << 16 | (p.ifindex as u32 as u64) << 32;
        self.hash(head, tags, macs, l3, mask, l3_len)
    }

    /// The hash: a folded multiply per 16 bytes (the core of wyhash and
    /// foldhash), the products independent of each other so the cpu
    /// does them side by side, summed, then mixed with the rest.
    #[inline(always)]
    fn hash(&self, head: u64, tags: u64, macs: &[u8], l3: &[u8], mask: [u64; 2], len: u32) -> u64 {
        let s = &self.secret;
        let body = &l3[..l3.len().min(COVER)];
        let n = body.len();
        let mut h;
        if n >= 32 {
            h = fold(
                (full_word(body, 0) & mask[0]) ^ s[0],
                (full_word(body, 8) & mask[1]) ^ s[1],
            );
            let mut i = 16;
            while i + 16 <= n {
                h = h.wrapping_add(fold(
                    full_word(body, i) ^ s[i / 8],
                    full_word(body, i + 8) ^ s[i / 8 + 1],
                ));
                i += 16;
            }
            if i < n {
                // The last 16 bytes, overlapping the chunk before (past
                // the first 16, whose masks they would miss): no byte
                // copying, and the length, hashed below, tells tails
                // apart.
                h = h.wrapping_add(fold(
                    full_word(body, n - 16) ^ s[i / 8],
                    full_word(body, n - 8) ^ s[i / 8 + 1],
                ));
            }
        } else {
            // Short (cut) packets: zero-padded words.
            h = fold(
                (word(body, 0) & mask[0]) ^ s[0],
                (word(body, 8) & mask[1]) ^ s[1],
            );
            if n > 16 {
                h = h.wrapping_add(fold(word(body, 16) ^ s[2], word(body, 24) ^ s[3]));
            }
        }
        if macs.len() == 12 {
            // Bytes 0-7 and 4-11: all twelve, overlapping.
            h = h.wrapping_add(fold(
                full_word(macs, 0) ^ s[COVER / 8],
                full_word(macs, 4) ^ s[COVER / 8 + 1],
            ));
        }
        // The link fields, and the lengths, each a fold operand of its own.
        h = h.wrapping_add(fold(head ^ s[COVER / 8 + 2], tags ^ s[COVER / 8 + 3]));
        let lens = u64::from(len) << 32 | n as u64;
        fold(h ^ s[COVER / 8 + 4], lens ^ s[COVER / 8 + 5]).max(1)
    }
}

/// The high and low halves of the 128-bit product, xored.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The little-endian word at `at`, whose 8 bytes lie in `b`.
#[inline(always)]
fn full_word(b: &[u8], at: usize) -> u64 {
    let w: [u8; 8] = b[at..at + 8].try_into().unwrap_or_default();
    u64::from_le_bytes(w)
}

/// The little-endian word at `at`, zero past the end of `b`.
#[inline(always)]
fn word(b: &[u8], at: usize) -> u64 {
    if let Some(w) = b.get(at..at + 8) {
        return u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
    }
    let mut w = [0u8; 8];
    if let Some(rest) = b.get(at..) {
        w[..rest.len()].copy_from_slice(rest);
    }
    u64::from_le_bytes(w)
}
