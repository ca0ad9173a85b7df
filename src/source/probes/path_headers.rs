//! The packet headers a `--path` program ([`super::path_program`]) keys a
//! packet by: from the network header to the key's addresses, IP
//! protocol and ports, the same tuple the flow table keys the packet by
//! ([`crate::consumers::flows::key`]), so that the two meet:
//!
//! - VLAN tags left in the frame (802.1Q, 802.1ad, the old QinQ type: a
//!   device without VLAN offload, or frames sent through a packet socket)
//!   are skipped, at most [`VLAN_TAGS`]: at a receive entry point
//!   `skb->protocol` is the outer tag's type and `skb->data` the tag
//!   (eth_type_trans pulled the Ethernet header only); where the network
//!   header is set (transmit), it is already behind the tags, and the
//!   type in front of it is the inner one. A tag the device took out of
//!   the frame (`skb->vlan_tci`) is nowhere in the data. An IP flow's key
//!   holds no VLAN id (see the flow key), so tagged and untagged packets
//!   of a 5-tuple are one flow, here as there.
//! - IPv4: the ports after the header's own length, not in fragments
//!   after the first; a header length below 5 words keys no ports
//!   (etherparse refuses such a header, and the flow table then keys the
//!   fixed part alone).
//! - IPv6: the extension headers the flow table walks (hop-by-hop, first
//!   only; routing; destination options; fragment; authentication), at
//!   most [`EXT_HEADERS`] of them; the ports after them unless a
//!   fragment header says the packet is a fragment after the first
//!   (offset not 0). As in the flow table: a hop-by-hop header after the
//!   first position ends the walk with protocol 0 and no ports, and so
//!   does an authentication header of length 0 (protocol 51). A packet
//!   with more extension headers than [`EXT_HEADERS`] is keyed with the
//!   header type the walk stopped at and no ports, a key the flow table
//!   does not make.
//!
//! Packet bytes are read from the packet's linear data (where every
//! driver and the IP layer leave the headers: these hooks see the packet
//! after eth_type_trans or once the IP layer built it).

use crate::source::probes::path_program::{
    k, Reads, K_DST, K_HAS_PORTS, K_PORTS, K_PROTO, K_SRC, K_VERSION, L3, SCRATCH,
};
use crate::sys::ebpf::{self, Asm, Insn, Reg, Size};

/// VLAN tags skipped at most (an 802.1ad tag and an 802.1Q one): a frame
/// with more is not counted.
pub const VLAN_TAGS: usize = 2;
/// IPv6 extension headers walked at most.
pub const EXT_HEADERS: usize = 6;

/// The tag types the flow table skips (EtherType VLAN_TAGGED_FRAME,
/// PROVIDER_BRIDGING, VLAN_DOUBLE_TAGGED_FRAME).
const VLAN_TYPES: [u16; 3] = [0x8100, 0x88a8, 0x9100];
/// The ports of these IP protocols are keyed (as the flow table does).
const PORT_PROTOS: [i32; 5] = [6, 17, 33, 132, 136];
/// IPv6 extension header types.
const HOP_BY_HOP: i32 = 0;
const ROUTING: i32 = 43;
const FRAGMENT: i32 = 44;
const DEST_OPTIONS: i32 = 60;
const AUTH: i32 = 51;
/// Stack byte: 1 once a fragment header says "a later fragment".
const LATER_FRAGMENT: i16 = -128;

/// Labels of each unrolled step (the assembler's labels are static).
const TAG: [&str; VLAN_TAGS] = ["tag0", "tag1"];
const RAW: [&str; EXT_HEADERS] = ["raw0", "raw1", "raw2", "raw3", "raw4", "raw5"];
const FRAG: [&str; EXT_HEADERS] = ["frag0", "frag1", "frag2", "frag3", "frag4", "frag5"];
const FIRST: [&str; EXT_HEADERS] = ["first0", "first1", "first2", "first3", "first4", "first5"];
const AH: [&str; EXT_HEADERS] = ["ah0", "ah1", "ah2", "ah3", "ah4", "ah5"];
const NEXT: [&str; EXT_HEADERS] = ["next0", "next1", "next2", "next3", "next4", "next5"];

/// A u16 field as a plain load of its big-endian bytes reads it.
pub fn be16(v: u16) -> i32 {
    i32::from(u16::from_ne_bytes(v.to_be_bytes()))
}

/// Packet bytes from r8 + `at` on, readable with [`Bytes::load`].
#[derive(Clone, Copy)]
struct Bytes {
    reads: Reads,
    at: i16,
}

impl Bytes {
    /// Makes `len` bytes at r8 + `at` readable: with [`Reads::Helper`]
    /// copied to the stack (clobbering r1-r5; a failed copy goes to
    /// `fail`), with [`Reads::Direct`] loaded where they are.
    fn fetch(a: &mut Asm, reads: Reads, at: i16, len: i32, fail: &'static str) -> Bytes {
        use ebpf::*;
        use Reg::*;
        if reads == Reads::Helper {
            a.push([
                mov(R1, R10),
                add_imm(R1, SCRATCH.into()),
                mov_imm(R2, len),
                mov(R3, R8),
                add_imm(R3, at.into()),
                call(helper::PROBE_READ_KERNEL),
            ]);
            a.jump_to(jump_imm(Cond::Ne, R0, 0, 0), fail);
        }
        Bytes { reads, at }
    }

    /// `dst` = the `size` bytes at `off` of the fetched ones.
    fn load(self, size: Size, dst: Reg, off: i16) -> Insn {
        match self.reads {
            Reads::Direct => ebpf::load(size, dst, Reg::R8, self.at + off),
            Reads::Helper => ebpf::load(size, dst, Reg::R10, SCRATCH + off),
        }
    }
}

/// Reads the headers of the packet whose network header is at r8
/// (`l3` says how it was found) and whose `skb->protocol` is in r9 into
/// the key; goes to `out` for a packet that is not IP, and otherwise
/// falls through to what follows (label `keyed`). Uses r1-r5, r8, r9.
pub fn headers(a: &mut Asm, l3: L3, reads: Reads) {
    use ebpf::*;
    use Reg::*;
    let tagged = |a: &mut Asm, to: &'static str| {
        for t in VLAN_TYPES {
            a.jump_to(jump_imm(Cond::Eq, R9, be16(t), 0), to);
        }
        a.jump_to(ja(0), "ip");
    };
    match l3 {
        // The tag at skb->data: TCI, then the next type.
        L3::Data => {
            for label in TAG {
                tagged(a, label);
                a.label(label);
                let b = Bytes::fetch(a, reads, 2, 2, "out");
                a.push([b.load(Size::H, R9, 0), add_imm(R8, 4)]);
            }
        }
        // The network header is behind the tags: the inner type is the
        // two bytes in front of it.
        L3::NetworkHeader => {
            tagged(a, "tagged");
            a.label("tagged");
            let b = Bytes::fetch(a, reads, -2, 2, "out");
            a.push([b.load(Size::H, R9, 0)]);
        }
    }
    a.label("ip")
        .push([store_imm(Size::B, R10, LATER_FRAGMENT, 0)]);
    a.jump_to(jump_imm(Cond::Eq, R9, be16(0x0800), 0), "v4");
    a.jump_to(jump_imm(Cond::Eq, R9, be16(0x86dd), 0), "v6");
    a.jump_to(ja(0), "out");

    a.label("v4");
    let b = Bytes::fetch(a, reads, 0, 20, "out");
    a.push([b.load(Size::B, R9, 0), rsh_imm(R9, 4)]);
    a.jump_to(jump_imm(Cond::Ne, R9, 4, 0), "out");
    a.push([
        store_imm(Size::B, R10, k(K_VERSION), 4),
        b.load(Size::B, R1, 9),
        store(Size::B, R10, k(K_PROTO), R1),
        b.load(Size::W, R1, 12),
        store(Size::W, R10, k(K_SRC), R1),
        b.load(Size::W, R1, 16),
        store(Size::W, R10, k(K_DST), R1),
        // A fragment after the first carries no ports.
        b.load(Size::B, R1, 6),
        and_imm(R1, 0x1f),
        b.load(Size::B, R2, 7),
        or(R1, R2),
    ]);
    a.jump_to(jump_imm(Cond::Ne, R1, 0, 0), "keyed");
    a.push([b.load(Size::B, R9, 0), and_imm(R9, 0xf)]);
    a.jump_to(jump_imm(Cond::Lt, R9, 5, 0), "keyed");
    a.push([lsh_imm(R9, 2), add(R8, R9)]);
    a.jump_to(ja(0), "ports");

    a.label("v6");
    let b = Bytes::fetch(a, reads, 0, 8, "out");
    a.push([b.load(Size::B, R9, 0), rsh_imm(R9, 4)]);
    a.jump_to(jump_imm(Cond::Ne, R9, 6, 0), "out");
    a.push([
        store_imm(Size::B, R10, k(K_VERSION), 6),
        b.load(Size::B, R1, 6),
        store(Size::B, R10, k(K_PROTO), R1),
    ]);
    match reads {
        Reads::Direct => {
            for i in 0..4 {
                a.push([
                    load(Size::DW, R1, R8, 8 + 8 * i),
                    store(Size::DW, R10, k(K_SRC) + 8 * i, R1),
                ]);
            }
        }
        Reads::Helper => {
            a.push([
                mov(R1, R10),
                add_imm(R1, k(K_SRC).into()),
                mov_imm(R2, 32),
                mov(R3, R8),
                add_imm(R3, 8),
                call(helper::PROBE_READ_KERNEL),
            ]);
            a.jump_to(jump_imm(Cond::Ne, R0, 0, 0), "out");
        }
    }
    a.push([add_imm(R8, 40)]);
    extension_headers(a, reads);

    // The ports, at r8, of a protocol that has them, unless a later
    // fragment.
    a.label("ports")
        .push([load(Size::B, R1, R10, LATER_FRAGMENT)]);
    a.jump_to(jump_imm(Cond::Ne, R1, 0, 0), "keyed");
    a.push([load(Size::B, R1, R10, k(K_PROTO))]);
    for p in PORT_PROTOS {
        a.jump_to(jump_imm(Cond::Eq, R1, p, 0), "read_ports");
    }
    a.jump_to(ja(0), "keyed");
    a.label("read_ports");
    let b = Bytes::fetch(a, reads, 0, 4, "keyed");
    a.push([
        b.load(Size::W, R1, 0),
        store(Size::W, R10, k(K_PORTS), R1),
        store_imm(Size::B, R10, k(K_HAS_PORTS), 1),
    ]);
    a.label("keyed");
}

/// Walks the IPv6 extension headers from r8 (the key's protocol the type
/// of the first), unrolled [`EXT_HEADERS`] times: each leaves r8 at the
/// next header and its type as the key's protocol; goes to `ports` at
/// the first that is not an extension header, to `keyed` where the flow
/// table's walk fails (no ports then).
fn extension_headers(a: &mut Asm, reads: Reads) {
    use ebpf::*;
    use Reg::*;
    for i in 0..EXT_HEADERS {
        a.push([load(Size::B, R1, R10, k(K_PROTO))]);
        // Hop-by-hop only right after the IPv6 header.
        let hop_by_hop = if i == 0 { RAW[i] } else { "keyed" };
        a.jump_to(jump_imm(Cond::Eq, R1, HOP_BY_HOP, 0), hop_by_hop);
        a.jump_to(jump_imm(Cond::Eq, R1, ROUTING, 0), RAW[i]);
        a.jump_to(jump_imm(Cond::Eq, R1, DEST_OPTIONS, 0), RAW[i]);
        a.jump_to(jump_imm(Cond::Eq, R1, FRAGMENT, 0), FRAG[i]);
        a.jump_to(jump_imm(Cond::Eq, R1, AUTH, 0), AH[i]);
        a.jump_to(ja(0), "ports");
        // (next header, length in 8 bytes beyond the first 8)
        a.label(RAW[i]);
        let b = Bytes::fetch(a, reads, 0, 2, "keyed");
        a.push([b.load(Size::B, R9, 1), add_imm(R9, 1), lsh_imm(R9, 3)]);
        a.jump_to(ja(0), NEXT[i]);
        // (next header, length in 4 bytes beyond the first 8; 0 is
        // refused)
        a.label(AH[i]);
        let b = Bytes::fetch(a, reads, 0, 2, "keyed");
        a.push([b.load(Size::B, R9, 1)]);
        a.jump_to(jump_imm(Cond::Eq, R9, 0, 0), "keyed");
        a.push([add_imm(R9, 2), lsh_imm(R9, 2)]);
        a.jump_to(ja(0), NEXT[i]);
        // (next header, reserved, offset in the top 13 bits of bytes 2-3
        // and the M flag, id): 8 bytes.
        a.label(FRAG[i]);
        let b = Bytes::fetch(a, reads, 0, 4, "keyed");
        a.push([
            b.load(Size::B, R1, 2),
            b.load(Size::B, R2, 3),
            and_imm(R2, 0xf8),
            or(R1, R2),
        ]);
        a.jump_to(jump_imm(Cond::Eq, R1, 0, 0), FIRST[i]);
        a.push([store_imm(Size::B, R10, LATER_FRAGMENT, 1)]);
        a.label(FIRST[i]).push([mov_imm(R9, 8)]);
        // Each branch fetched the header's first bytes at r8.
        a.label(NEXT[i]).push([
            Bytes { reads, at: 0 }.load(Size::B, R1, 0),
            store(Size::B, R10, k(K_PROTO), R1),
            add(R8, R9),
        ]);
    }
}
