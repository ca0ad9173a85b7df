//! `--drops` with `--flows`: the drop probe's second part, which keys the
//! interface's drops by flow and reason in a bounded kernel map, so that
//! the flow table can say which flows lost what.
//!
//! The flow is read from the dropped packet as the capture reads it from
//! a frame (see [`crate::consumers::flows::key`]): the IP header, found at
//! `skb->head + skb->network_header` (offsets from BTF), copied with
//! bpf_probe_read_kernel (packet data has no BTF type, and a typed
//! program may not walk it); where that is unset (~0, or 0 in a new
//! skb) or holds no IP
//! header of the version `skb->protocol` names (a packet dropped before
//! the stack reset it, at the backlog say), at `skb->data`, where a
//! received packet's network header is once the link header is pulled.
//! The ports are read behind the IP header (its own length for IPv4,
//! 40 bytes for IPv6): `skb->transport_header` is unset for drops before
//! ip_rcv, and the header's length gives the place the user-space key
//! uses.
//!
//! What is keyed, as the flow table keys it: IPv4 and IPv6, addresses
//! and protocol, the ports of TCP, UDP, SCTP, UDP-Lite and DCCP (not for
//! an IPv4 fragment after the first); ICMP and other protocols by
//! addresses and protocol. Not keyed (counted per cpu and reason only,
//! as without `--flows`): packets that are not IP by `skb->protocol`
//! (ARP, a VLAN tag still in the packet), and headers that cannot be
//! read. IPv6 extension headers are walked as the user-space key walks
//! them (hop by hop, routing, destination options, fragment,
//! authentication), up to 4 of them (an MLD report has one). VLAN ids
//! are not part of an IP flow's key, here as there.
//!
//! The map is a per-cpu hash of [`MAX_ENTRIES`] (flow, reason) keys:
//! each cpu adds to its own value, no atomics; preallocated, about
//! 120 bytes per entry plus 8 per possible cpu (1.1 MiB on two cpus).
//! A new key is inserted with BPF_NOEXIST (a cpu that lost the race to
//! insert it adds to the winner's element); once the map is full the
//! drop is counted in the per-reason array's overflow slot instead, so
//! that the report says how many drops have no flow rather than losing
//! them silently. The per-cpu and per-reason totals are counted before
//! and are exact whatever happens here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::sys::ebpf::{self, Asm, Reg};

use super::drops::Layout;

/// (flow, reason) pairs the map holds.
pub const MAX_ENTRIES: u32 = 8192;

// The key: source and destination addresses (16 bytes each, IPv4 in the
// first 4, network order), ports (network order), IP protocol, family
// (4 or 6, | HAS_PORTS), the reason's slot.
pub const KEY_SIZE: u32 = 40;
const K_SRC: i16 = 0;
const K_DST: i16 = 16;
const K_PORTS: i16 = 32;
const K_PROTO: i16 = 36;
const K_FAMILY: i16 = 37;
const K_REASON: i16 = 38;
const HAS_PORTS: i32 = 0x80;

/// Stack places (below those of [`super::drops`]'s key and scratch word,
/// at -4 and -16): the key, the IP header copied, the value inserted.
const STACK_FLOW: i16 = -56;
const STACK_HDR: i16 = -96;
const HDR_LEN: i32 = 40;
const STACK_ONE: i16 = -104;
/// bpf_probe_read_kernel's scratch word (as [`super::drops`]' own).
const STACK_SCRATCH: i16 = -16;

/// [`super::deref`] with this program's scratch word.
fn deref(a: &mut Asm, typed: bool, dst: Reg, base: Reg, off: i16, size: ebpf::Size) {
    super::deref(a, typed, dst, base, off, size, STACK_SCRATCH);
}

/// map_update flag: only if the key is not there.
const BPF_NOEXIST: i32 = 1;

/// An ethertype as `skb->protocol` (__be16) reads in a 16-bit load.
fn be16(v: u16) -> i32 {
    i32::from(u16::from_ne_bytes(v.to_be_bytes()))
}

/// IP protocols whose first 4 bytes are the ports (as the flow key's).
const PORT_PROTOCOLS: [i32; 5] = [6, 17, 132, 136, 33];

/// `r1 = &stack[at]; r2 = len; r3 = src; call bpf_probe_read_kernel`.
fn read_kernel(a: &mut Asm, at: i16, len: i32, src: Reg) {
    use ebpf::*;
    a.push([
        mov(Reg::R1, Reg::R10),
        add_imm(Reg::R1, at.into()),
        mov_imm(Reg::R2, len),
        mov(Reg::R3, src),
        call(helper::PROBE_READ_KERNEL),
    ]);
}

/// The flow part: r7 the skb, r9 the reason's slot; jumps to label
/// `out`, which the caller defines right after it (where the last
/// instruction falls through: no jump goes back). Registers: r8
/// the family, r9 the IP header's address, then where the ports are.
pub fn emit(
    a: &mut Asm,
    layout: &Layout,
    typed: bool,
    (flows, counts): (i32, i32),
    overflow_slot: u32,
) {
    use ebpf::*;
    use Reg::*;
    let key = |off: i16| STACK_FLOW + off;
    let hdr = |off: i16| STACK_HDR + off;
    for i in 0..KEY_SIZE as i16 / 8 {
        a.push([store_imm(Size::DW, R10, STACK_FLOW + 8 * i, 0)]);
    }
    a.push([store(Size::H, R10, key(K_REASON), R9)]);
    deref(a, typed, R8, R7, layout.skb_protocol, Size::H);
    a.jump_to(jump_imm(Cond::Eq, R8, be16(0x0800), 0), "ipv4");
    a.jump_to(jump_imm(Cond::Ne, R8, be16(0x86dd), 0), "out");
    a.push([mov_imm(R8, 6)]);
    a.jump_to(ja(0), "family");
    a.label("ipv4").push([mov_imm(R8, 4)]);
    a.label("family");
    deref(a, typed, R9, R7, layout.skb_head, Size::DW);
    deref(a, typed, R1, R7, layout.skb_network_header, Size::H);
    // Unset: ~0 (skb_reset_network_header not yet called), or 0 (a new
    // skb's, which the headroom makes never a real offset).
    a.jump_to(jump_imm(Cond::Eq, R1, 0xffff, 0), "at_data");
    a.jump_to(jump_imm(Cond::Eq, R1, 0, 0), "at_data");
    a.push([add(R9, R1)]);
    read_kernel(a, STACK_HDR, HDR_LEN, R9);
    a.push([load(Size::B, R1, R10, STACK_HDR), rsh_imm(R1, 4)]);
    a.jump_to(jump(Cond::Eq, R1, R8, 0), "parsed");
    a.label("at_data");
    deref(a, typed, R9, R7, layout.skb_data, Size::DW);
    read_kernel(a, STACK_HDR, HDR_LEN, R9);
    a.push([load(Size::B, R1, R10, STACK_HDR), rsh_imm(R1, 4)]);
    a.jump_to(jump(Cond::Ne, R1, R8, 0), "out");

    a.label("parsed");
    a.push([store(Size::B, R10, key(K_FAMILY), R8)]);
    a.jump_to(jump_imm(Cond::Eq, R8, 6, 0), "ipv6");
    a.push([
        load(Size::W, R1, R10, hdr(12)),
        store(Size::W, R10, key(K_SRC), R1),
        load(Size::W, R1, R10, hdr(16)),
        store(Size::W, R10, key(K_DST), R1),
        load(Size::B, R1, R10, hdr(9)),
        store(Size::B, R10, key(K_PROTO), R1),
        // A fragment after the first (offset, the low 13 bits of bytes
        // 6-7) has no ports.
        load(Size::B, R1, R10, hdr(6)),
        and_imm(R1, 0x1f),
    ]);
    a.jump_to(jump_imm(Cond::Ne, R1, 0, 0), "keyed");
    a.push([load(Size::B, R1, R10, hdr(7))]);
    a.jump_to(jump_imm(Cond::Ne, R1, 0, 0), "keyed");
    // The header's length; a bad one (< 20 bytes) gives no ports, as the
    // user-space key's fallback.
    a.push([load(Size::B, R1, R10, hdr(0)), and_imm(R1, 0x0f)]);
    a.jump_to(jump_imm(Cond::Lt, R1, 5, 0), "keyed");
    a.push([lsh_imm(R1, 2), add(R9, R1)]);
    a.jump_to(ja(0), "ports");
    a.label("ipv6");
    for i in 0..4 {
        a.push([
            load(Size::DW, R1, R10, hdr(8 + 8 * i)),
            store(Size::DW, R10, key(K_SRC + 8 * i), R1),
        ]);
    }
    a.push([
        load(Size::B, R1, R10, hdr(6)),
        store(Size::B, R10, key(K_PROTO), R1),
        add_imm(R9, 40),
    ]);
    ipv6_extensions(a);
    a.label("ports");
    a.push([load(Size::B, R1, R10, key(K_PROTO))]);
    for p in PORT_PROTOCOLS {
        a.jump_to(jump_imm(Cond::Eq, R1, p, 0), "read_ports");
    }
    a.jump_to(ja(0), "keyed");
    a.label("read_ports");
    read_kernel(a, STACK_SCRATCH, 4, R9);
    a.jump_to(jump_imm(Cond::Ne, R0, 0, 0), "keyed");
    a.push([
        load(Size::W, R1, R10, STACK_SCRATCH),
        store(Size::W, R10, key(K_PORTS), R1),
        mov(R1, R8),
        or_imm(R1, HAS_PORTS),
        store(Size::B, R10, key(K_FAMILY), R1),
    ]);

    // Add one to this cpu's value of the key, inserting it if need be.
    a.label("keyed");
    let lookup = |a: &mut Asm| {
        a.push([mov(R2, R10), add_imm(R2, STACK_FLOW.into())])
            .push(load_map_fd(R1, flows))
            .push([call(helper::MAP_LOOKUP_ELEM)]);
    };
    lookup(a);
    a.jump_to(jump_imm(Cond::Ne, R0, 0, 0), "add");
    a.push([
        store_imm(Size::DW, R10, STACK_ONE, 1),
        mov(R2, R10),
        add_imm(R2, STACK_FLOW.into()),
        mov(R3, R10),
        add_imm(R3, STACK_ONE.into()),
        mov_imm(R4, BPF_NOEXIST),
    ])
    .push(load_map_fd(R1, flows))
    .push([call(helper::MAP_UPDATE_ELEM)]);
    a.jump_to(jump_imm(Cond::Eq, R0, 0, 0), "out");
    // Another cpu inserted it meanwhile (EEXIST), or the map is full.
    lookup(a);
    a.jump_to(jump_imm(Cond::Ne, R0, 0, 0), "add");
    a.push([
        mov_imm(R1, overflow_slot as i32),
        store(Size::W, R10, -4, R1),
        mov(R2, R10),
        add_imm(R2, -4),
    ])
    .push(load_map_fd(R1, counts))
    .push([call(helper::MAP_LOOKUP_ELEM)]);
    a.jump_to(jump_imm(Cond::Eq, R0, 0, 0), "out");
    a.label("add").push([
        load(Size::DW, R1, R0, 0),
        add_imm(R1, 1),
        store(Size::DW, R0, 0, R1),
    ]);
}

/// IPv6 extension headers walked, at most (an unrolled loop: the
/// program has no loops). Past them the key has the header type it
/// stopped at and no ports, as the user-space key where a header is cut.
const IPV6_EXTENSIONS: usize = 4;
const EXT: [&str; IPV6_EXTENSIONS + 1] = ["ext0", "ext1", "ext2", "ext3", "ext4"];
const EXT_OPTS: [&str; IPV6_EXTENSIONS] = ["opts0", "opts1", "opts2", "opts3"];
const EXT_AH: [&str; IPV6_EXTENSIONS] = ["ah0", "ah1", "ah2", "ah3"];
const EXT_FRAG: [&str; IPV6_EXTENSIONS] = ["frag0", "frag1", "frag2", "frag3"];
const EXT_NEXT: [&str; IPV6_EXTENSIONS] = ["next0", "next1", "next2", "next3"];

/// From r9 on the header after IPv6's fixed one, whose type is the key's
/// protocol: skips the extension headers the user-space key skips (hop
/// by hop, routing, destination options, fragment, authentication),
/// setting the protocol to each one's next header; ends with r9 on the
/// transport header and at label `ports`, or at `keyed` (no ports) for a
/// fragment after the first or a header that cannot be read.
fn ipv6_extensions(a: &mut Asm) {
    use ebpf::*;
    use Reg::*;
    let proto = STACK_FLOW + K_PROTO;
    for i in 0..IPV6_EXTENSIONS {
        a.label(EXT[i]);
        a.push([load(Size::B, R1, R10, proto)]);
        for t in [0, 43, 60] {
            a.jump_to(jump_imm(Cond::Eq, R1, t, 0), EXT_OPTS[i]);
        }
        a.jump_to(jump_imm(Cond::Eq, R1, 44, 0), EXT_FRAG[i]);
        a.jump_to(jump_imm(Cond::Eq, R1, 51, 0), EXT_AH[i]);
        a.jump_to(ja(0), "ports");
        // Options and routing: (length + 1) * 8 bytes.
        a.label(EXT_OPTS[i]);
        read_kernel(a, STACK_SCRATCH, 8, R9);
        a.jump_to(jump_imm(Cond::Ne, R0, 0, 0), "keyed");
        a.push([
            load(Size::B, R2, R10, STACK_SCRATCH + 1),
            add_imm(R2, 1),
            lsh_imm(R2, 3),
        ]);
        a.jump_to(ja(0), EXT_NEXT[i]);
        // Authentication: (length + 2) * 4 bytes.
        a.label(EXT_AH[i]);
        read_kernel(a, STACK_SCRATCH, 8, R9);
        a.jump_to(jump_imm(Cond::Ne, R0, 0, 0), "keyed");
        a.push([
            load(Size::B, R2, R10, STACK_SCRATCH + 1),
            add_imm(R2, 2),
            lsh_imm(R2, 2),
        ]);
        a.jump_to(ja(0), EXT_NEXT[i]);
        // Fragment: 8 bytes; the offset in the top 13 bits of bytes 2-3.
        a.label(EXT_FRAG[i]);
        read_kernel(a, STACK_SCRATCH, 8, R9);
        a.jump_to(jump_imm(Cond::Ne, R0, 0, 0), "keyed");
        a.push([mov_imm(R2, 8), load(Size::B, R1, R10, STACK_SCRATCH + 2)]);
        a.jump_to(jump_imm(Cond::Ne, R1, 0, 0), "later_fragment");
        a.push([load(Size::B, R1, R10, STACK_SCRATCH + 3), and_imm(R1, 0xf8)]);
        a.jump_to(jump_imm(Cond::Ne, R1, 0, 0), "later_fragment");
        a.label(EXT_NEXT[i]).push([
            load(Size::B, R1, R10, STACK_SCRATCH),
            store(Size::B, R10, proto, R1),
            add(R9, R2),
        ]);
    }
    a.label(EXT[IPV6_EXTENSIONS]);
    a.jump_to(ja(0), "ports");
    // A later fragment: its protocol, no ports.
    a.label("later_fragment").push([
        load(Size::B, R1, R10, STACK_SCRATCH),
        store(Size::B, R10, proto, R1),
    ]);
    a.jump_to(ja(0), "keyed");
}

/// A flow of a map key, as the flow table keys flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub ports: Option<(u16, u16)>,
}

/// The flow and reason slot of map key `k` (None for a key the program
/// does not make).
pub fn decode(k: &[u8]) -> Option<(Flow, u32)> {
    if k.len() != KEY_SIZE as usize {
        return None;
    }
    let at = |off: i16| off as usize;
    let family = k[at(K_FAMILY)];
    let addr = |off: i16| -> Option<IpAddr> {
        let b = &k[at(off)..at(off) + 16];
        match family & !(HAS_PORTS as u8) {
            4 => Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]).into()),
            6 => Some(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?).into()),
            _ => None,
        }
    };
    let p = at(K_PORTS);
    let ports = (family & HAS_PORTS as u8 != 0).then(|| {
        (
            u16::from_be_bytes([k[p], k[p + 1]]),
            u16::from_be_bytes([k[p + 2], k[p + 3]]),
        )
    });
    let r = at(K_REASON);
    Some((
        Flow {
            src: addr(K_SRC)?,
            dst: addr(K_DST)?,
            proto: k[at(K_PROTO)],
            ports,
        },
        u32::from(u16::from_ne_bytes([k[r], k[r + 1]])),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_as_the_program_writes_them() {
        let mut k = [0u8; KEY_SIZE as usize];
        k[..4].copy_from_slice(&[192, 0, 2, 1]);
        k[16..20].copy_from_slice(&[192, 0, 2, 2]);
        k[32..36].copy_from_slice(&[0x9c, 0x40, 0x00, 0x35]);
        k[36] = 17;
        k[37] = 4 | 0x80;
        k[38..40].copy_from_slice(&7u16.to_ne_bytes());
        let (f, reason) = decode(&k).unwrap();
        assert_eq!(reason, 7);
        assert_eq!(
            f,
            Flow {
                src: "192.0.2.1".parse().unwrap(),
                dst: "192.0.2.2".parse().unwrap(),
                proto: 17,
                ports: Some((40000, 53)),
            }
        );
        k[37] = 6;
        k[36] = 58;
        let (f, _) = decode(&k).unwrap();
        assert_eq!(f.src, "c000:201::".parse::<IpAddr>().unwrap());
        assert_eq!((f.proto, f.ports), (58, None));
        k[37] = 0;
        assert!(decode(&k).is_none());
    }
}
