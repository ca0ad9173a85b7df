//! The kernel's copy of a filter: libpcap's program rewritten for the
//! capture socket's view of a packet ([`for_kernel`]), with the direction
//! check in front; see the module above for what differs and why.

use crate::filter::{FilterError, Insn, Result, BPF_MAXINSNS, SLL2_LEN};
use crate::options::Direction;
use crate::packet::LinkType;

// ---------------------------------------------------------------------------
// Classic BPF, <linux/filter.h> and <linux/bpf_common.h>

pub(super) const BPF_LD: u16 = 0x00;
pub(super) const BPF_LDX: u16 = 0x01;
pub(super) const BPF_ST: u16 = 0x02;
pub(super) const BPF_STX: u16 = 0x03;
pub(super) const BPF_ALU: u16 = 0x04;
pub(super) const BPF_JMP: u16 = 0x05;
pub(super) const BPF_RET: u16 = 0x06;
pub(super) const BPF_MISC: u16 = 0x07;

pub(super) const BPF_W: u16 = 0x00;
pub(super) const BPF_H: u16 = 0x08;
pub(super) const BPF_B: u16 = 0x10;

pub(super) const BPF_IMM: u16 = 0x00;
pub(super) const BPF_ABS: u16 = 0x20;
pub(super) const BPF_IND: u16 = 0x40;
pub(super) const BPF_MEM: u16 = 0x60;
pub(super) const BPF_LEN: u16 = 0x80;
pub(super) const BPF_MSH: u16 = 0xa0;

pub(super) const BPF_ADD: u16 = 0x00;
pub(super) const BPF_OR: u16 = 0x40;
pub(super) const BPF_AND: u16 = 0x50;
pub(super) const BPF_LSH: u16 = 0x60;
pub(super) const BPF_RSH: u16 = 0x70;

pub(super) const BPF_JA: u16 = 0x00;
pub(super) const BPF_JEQ: u16 = 0x10;
pub(super) const BPF_JGT: u16 = 0x20;
pub(super) const BPF_JGE: u16 = 0x30;

pub(super) const BPF_K: u16 = 0x00;
pub(super) const BPF_X: u16 = 0x08;
pub(super) const BPF_A: u16 = 0x10;

pub(super) const BPF_TAX: u16 = 0x00;
pub(super) const BPF_TXA: u16 = 0x80;

/// Scratch memory words (BPF_MEMWORDS).
pub(super) const BPF_MEMWORDS: u32 = 16;

// Ancillary loads: an absolute load at SKF_AD_OFF + n reads skb metadata.
pub(super) const SKF_AD_OFF: u32 = (-0x1000i32) as u32;
pub(super) const SKF_AD_PROTOCOL: u32 = 0;
pub(super) const SKF_AD_PKTTYPE: u32 = 4;
pub(super) const SKF_AD_IFINDEX: u32 = 8;
pub(super) const SKF_AD_HATYPE: u32 = 28;
pub(super) const SKF_AD_VLAN_TAG: u32 = 44;
pub(super) const SKF_AD_VLAN_TAG_PRESENT: u32 = 48;
pub(super) const SKF_AD_VLAN_TPID: u32 = 60;
/// A load at SKF_NET_OFF + n reads byte n of the network header (linear
/// skb data only).
pub(super) const SKF_NET_OFF: u32 = (-0x100000i32) as u32;

pub(super) const PACKET_OUTGOING: u32 = crate::sys::afpacket::PACKET_OUTGOING as u32;

// ARPHRD_* (<linux/if_arp.h>) of the devices whose link header length the
// cooked rewrite knows: with a header_ops->create (dev_has_header) a
// SOCK_RAW socket sees the frame from its link header, without one from the
// network header.
pub(super) const ARPHRD_ETHER: u32 = crate::packet::ARPHRD_ETHER as u32;
pub(super) const ARPHRD_LOOPBACK: u32 = crate::packet::ARPHRD_LOOPBACK as u32;
pub(super) const HEADERLESS: [u32; 6] = [
    0xfffe, // ARPHRD_NONE: tun, wireguard
    519,    // ARPHRD_RAWIP
    768,    // ARPHRD_TUNNEL: ipip
    769,    // ARPHRD_TUNNEL6: ip6tnl
    776,    // ARPHRD_SIT
    512,    // ARPHRD_PPP
];

/// Offsets at or past this are past any packet a pcap record can hold
/// (snap lengths stop at 256 KiB): the compiled program's load fails there,
/// which ends it with 0. Rewritten, such offsets could land in the kernel's
/// special negative ranges, so the rewrite ends the program with 0 itself.
pub(super) const MAX_OFFSET: u32 = 0x000f_0000;

pub(super) fn class(code: u16) -> u16 {
    code & 0x07
}
pub(super) fn size_of(code: u16) -> u32 {
    match code & 0x18 {
        BPF_W => 4,
        BPF_H => 2,
        BPF_B => 1,
        _ => 0,
    }
}
pub(super) fn mode(code: u16) -> u16 {
    code & 0xe0
}

pub(super) fn stmt(code: u16, k: u32) -> Insn {
    (code, 0, 0, k)
}
pub(super) fn ld_anc(field: u32) -> Insn {
    stmt(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF.wrapping_add(field))
}
pub(super) fn ret_k(k: u32) -> Insn {
    stmt(BPF_RET | BPF_K, k)
}

// ---------------------------------------------------------------------------
// A tiny assembler with forward labels: rewriting may turn one instruction
// into several, and cBPF jumps are relative (u8 for conditionals), so jumps
// are laid out by label and resolved at the end.

#[derive(Clone, Copy)]
pub(super) struct Label(usize);

pub(super) enum Item {
    Plain(Insn),
    Cond {
        code: u16,
        k: u32,
        jt: Label,
        jf: Label,
    },
    Ja(Label),
}

#[derive(Default)]
pub(super) struct Asm {
    items: Vec<Item>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.items.len());
    }
    fn push(&mut self, i: Insn) {
        self.items.push(Item::Plain(i));
    }
    fn cond(&mut self, code: u16, k: u32, jt: Label, jf: Label) {
        self.items.push(Item::Cond { code, k, jt, jf });
    }
    fn ja(&mut self, to: Label) {
        self.items.push(Item::Ja(to));
    }
    /// `if A op k goto to` (else fall through).
    fn jump_if(&mut self, code: u16, k: u32, to: Label) {
        let next = self.label();
        self.cond(code, k, to, next);
        self.bind(next);
    }

    fn finish(self) -> Result<Vec<Insn>> {
        if self.items.len() > BPF_MAXINSNS {
            return Err(FilterError::TooLong {
                len: self.items.len(),
            });
        }
        let offset = |at: usize, l: Label| -> Result<u32> {
            match self.labels[l.0] {
                Some(t) if t > at && t < self.items.len() => Ok((t - at - 1) as u32),
                _ => Err(not_in_kernel("the program jumps outside itself")),
            }
        };
        let short = |at: usize, l: Label| -> Result<u8> {
            u8::try_from(offset(at, l)?).map_err(|_| {
                not_in_kernel("rewriting it for the kernel made a conditional jump too long")
            })
        };
        self.items
            .iter()
            .enumerate()
            .map(|(at, item)| match *item {
                Item::Plain(i) => Ok(i),
                Item::Cond { code, k, jt, jf } => Ok((code, short(at, jt)?, short(at, jf)?, k)),
                Item::Ja(to) => Ok((BPF_JMP | BPF_JA, 0, 0, offset(at, to)?)),
            })
            .collect()
    }
}

pub(super) fn not_in_kernel(why: &str) -> FilterError {
    FilterError::NotInKernel { why: why.into() }
}

// ---------------------------------------------------------------------------
// The kernel program

/// How the kernel's packet relates to the packet the user's program was
/// compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum View {
    /// The same bytes (Ethernet without a stripped tag, Raw).
    AsIs,
    /// Ethernet whose outer VLAN tag (4 bytes at offset 12 in the file) the
    /// kernel holds as metadata.
    Tagged,
    /// Cooked: the SLL2 header's fields are metadata, and the network
    /// header is `Some(n)` bytes into the kernel's data, or `None`: unknown,
    /// reached through SKF_NET_OFF.
    Cooked(Option<u32>),
}

impl View {
    /// Offsets below this are the link header the view replaces.
    fn header(self) -> u32 {
        match self {
            View::AsIs => 0,
            View::Tagged => 16,
            View::Cooked(_) => SLL2_LEN,
        }
    }

    /// Where byte `k` (>= header()) of the user's packet is for the kernel.
    fn data(self, k: u32) -> u32 {
        match self {
            View::AsIs => k,
            View::Tagged => k.wrapping_sub(4),
            View::Cooked(Some(n)) => k.wrapping_sub(SLL2_LEN).wrapping_add(n),
            View::Cooked(None) => SKF_NET_OFF.wrapping_add(k).wrapping_sub(SLL2_LEN),
        }
    }

    /// What to add to the kernel's skb->len to get the record's length.
    fn len_delta(self) -> u32 {
        match self {
            View::AsIs => 0,
            View::Tagged => 4,
            // An unknown device is taken as headerless (exact for tun-like
            // devices, which is what most other types are).
            View::Cooked(n) => SLL2_LEN.wrapping_sub(n.unwrap_or(0)),
        }
    }

    /// The kernel's accept length for a record of `k` bytes.
    fn accept(self, k: u32, snaplen: u32) -> u32 {
        if k == 0 {
            return 0;
        }
        match self {
            View::AsIs | View::Tagged => k.min(snaplen),
            View::Cooked(Some(n)) => k
                .saturating_sub(SLL2_LEN)
                .saturating_add(n)
                .clamp(1, snaplen.max(1)),
            View::Cooked(None) => snaplen,
        }
    }

    /// Header fields that are metadata: (offset, length, ancillary field),
    /// or `None` for a field that is always zero.
    fn fields(self) -> &'static [(u32, u32, Option<u32>)] {
        match self {
            View::AsIs => &[],
            View::Tagged => &[
                (12, 2, Some(SKF_AD_VLAN_TPID)),
                (14, 2, Some(SKF_AD_VLAN_TAG)),
            ],
            // The header rxtxcpu writes: protocol, reserved (zero),
            // ifindex, hatype, pkttype, then the address length and address,
            // which have no ancillary load.
            View::Cooked(_) => &[
                (0, 2, Some(SKF_AD_PROTOCOL)),
                (2, 2, None),
                (4, 4, Some(SKF_AD_IFINDEX)),
                (8, 2, Some(SKF_AD_HATYPE)),
                (10, 1, Some(SKF_AD_PKTTYPE)),
            ],
        }
    }
}

/// A scratch memory word the user's program never touches, for sequences
/// that must keep A or X.
pub(super) fn free_scratch(user: &[Insn]) -> Option<u32> {
    let mut used = [false; BPF_MEMWORDS as usize];
    for &(code, _, _, k) in user {
        let touches = match class(code) {
            BPF_ST | BPF_STX => true,
            BPF_LD | BPF_LDX => mode(code) == BPF_MEM,
            _ => false,
        };
        if touches && k < BPF_MEMWORDS {
            used[k as usize] = true;
        }
    }
    (0..BPF_MEMWORDS).rev().find(|&m| !used[m as usize])
}

/// Emits one copy of the user's program for `view`.
pub(super) fn emit_copy(
    asm: &mut Asm,
    user: &[Insn],
    view: View,
    snaplen: u32,
    scratch: Option<u32>,
) -> Result<()> {
    let n = user.len();
    let starts: Vec<Label> = (0..n).map(|_| asm.label()).collect();
    let mut ret_a: Option<Label> = None;
    let target = |i: usize, off: u32| -> Result<Label> {
        let t = i + 1 + off as usize;
        starts
            .get(t)
            .copied()
            .ok_or_else(|| not_in_kernel("the program jumps outside itself"))
    };
    let scratch = || scratch.ok_or_else(|| not_in_kernel("it uses all 16 scratch memory words"));
    // The kernel starts a program with A = X = 0; a prologue (which only
    // ever uses A) may have changed A.
    if !asm.items.is_empty() {
        asm.push(stmt(BPF_LD | BPF_IMM, 0));
    }
    for (i, &(code, jt, jf, k)) in user.iter().enumerate() {
        asm.bind(starts[i]);
        let (cl, md, size) = (class(code), mode(code), size_of(code));
        match (cl, md) {
            (BPF_LD | BPF_LDX, BPF_ABS | BPF_IND | BPF_MSH) => {
                emit_load(asm, view, code, k, size, &scratch)?;
            }
            (BPF_LD | BPF_LDX, BPF_LEN) if view.len_delta() != 0 => {
                let delta = view.len_delta();
                if cl == BPF_LD {
                    asm.push(stmt(BPF_LD | BPF_W | BPF_LEN, 0));
                    asm.push(stmt(BPF_ALU | BPF_ADD | BPF_K, delta));
                } else {
                    let m = scratch()?;
                    asm.push(stmt(BPF_ST, m));
                    asm.push(stmt(BPF_LD | BPF_W | BPF_LEN, 0));
                    asm.push(stmt(BPF_ALU | BPF_ADD | BPF_K, delta));
                    asm.push(stmt(BPF_MISC | BPF_TAX, 0));
                    asm.push(stmt(BPF_LD | BPF_MEM, m));
                }
            }
            (BPF_RET, _) => match code & 0x18 {
                BPF_K => asm.push(ret_k(view.accept(k, snaplen))),
                BPF_A => {
                    let l = *ret_a.get_or_insert_with(|| asm.label());
                    asm.ja(l);
                }
                _ => return Err(not_in_kernel("it returns X")),
            },
            (BPF_JMP, _) if code & 0xf0 == BPF_JA => asm.ja(target(i, k)?),
            (BPF_JMP, _) => {
                let (jt, jf) = (target(i, u32::from(jt))?, target(i, u32::from(jf))?);
                asm.cond(code, k, jt, jf);
            }
            _ => asm.push((code, jt, jf, k)),
        }
    }
    if let Some(l) = ret_a {
        // `ret a` returns A bytes: 0 drops, more is capped.
        asm.bind(l);
        match view {
            View::AsIs | View::Tagged => {
                let cap = asm.label();
                asm.jump_if(BPF_JMP | BPF_JGT | BPF_K, snaplen, cap);
                asm.push(stmt(BPF_RET | BPF_A, 0));
                asm.bind(cap);
                asm.push(ret_k(snaplen));
            }
            View::Cooked(_) => {
                let drop = asm.label();
                asm.jump_if(BPF_JMP | BPF_JEQ | BPF_K, 0, drop);
                asm.push(ret_k(view.accept(snaplen, snaplen)));
                asm.bind(drop);
                asm.push(ret_k(0));
            }
        }
    }
    Ok(())
}

/// Emits the kernel's version of a packet load (LD ABS/IND, LDX MSH).
pub(super) fn emit_load(
    asm: &mut Asm,
    view: View,
    code: u16,
    k: u32,
    size: u32,
    scratch: &dyn Fn() -> Result<u32>,
) -> Result<()> {
    let md = mode(code);
    if k >= MAX_OFFSET {
        // The compiled program fails this load on every record.
        asm.push(ret_k(0));
        return Ok(());
    }
    let header = view.header();
    if md == BPF_IND {
        if k < header {
            // The offset is X + k; past the header in every program
            // libpcap writes (X is a header length). Should it fall inside,
            // treat it as the failed load it would be on a short packet.
            let ok = asm.label();
            asm.push(stmt(BPF_MISC | BPF_TXA, 0));
            asm.push(stmt(BPF_ALU | BPF_ADD | BPF_K, k));
            asm.jump_if(BPF_JMP | BPF_JGE | BPF_K, header, ok);
            asm.push(ret_k(0));
            asm.bind(ok);
        }
        asm.push((code, 0, 0, view.data(k)));
        return Ok(());
    }
    if k >= header {
        asm.push((code, 0, 0, view.data(k)));
        return Ok(());
    }
    // Inside the header the view replaces.
    if view == View::Tagged && k + size <= 12 {
        asm.push((code, 0, 0, k));
        return Ok(());
    }
    if md == BPF_MSH {
        // X = 4 * (byte & 0xf) from a header field, keeping A. libpcap
        // writes these only for IPv4 headers, so for headers this replaces
        // they sit on paths no packet of the view takes (the tagged copy
        // of an untagged `tcp` test); they must still be valid.
        let m = scratch()?;
        asm.push(stmt(BPF_ST, m));
        emit_load(asm, view, BPF_LD | BPF_B | BPF_ABS, k, 1, scratch)?;
        asm.push(stmt(BPF_ALU | BPF_AND | BPF_K, 0xf));
        asm.push(stmt(BPF_ALU | BPF_LSH | BPF_K, 2));
        asm.push(stmt(BPF_MISC | BPF_TAX, 0));
        asm.push(stmt(BPF_LD | BPF_MEM, m));
        return Ok(());
    }
    let field = view
        .fields()
        .iter()
        .find(|&&(off, len, _)| k >= off && k + size <= off + len);
    match field {
        Some(&(off, len, anc)) => {
            match anc {
                None => asm.push(stmt(BPF_LD | BPF_IMM, 0)),
                Some(anc) => {
                    asm.push(ld_anc(anc));
                    let shift = 8 * (off + len - (k + size));
                    if shift > 0 {
                        asm.push(stmt(BPF_ALU | BPF_RSH | BPF_K, shift));
                    }
                    if size < len {
                        asm.push(stmt(BPF_ALU | BPF_AND | BPF_K, (1u32 << (8 * size)) - 1));
                    }
                }
            }
            Ok(())
        }
        // The whole VLAN tag as one word: TPID << 16 | TCI, keeping X.
        None if view == View::Tagged && k == 12 && size == 4 => {
            let m = scratch()?;
            asm.push(stmt(BPF_STX, m));
            asm.push(ld_anc(SKF_AD_VLAN_TAG));
            asm.push(stmt(BPF_MISC | BPF_TAX, 0));
            asm.push(ld_anc(SKF_AD_VLAN_TPID));
            asm.push(stmt(BPF_ALU | BPF_LSH | BPF_K, 16));
            asm.push(stmt(BPF_ALU | BPF_OR | BPF_X, 0));
            asm.push(stmt(BPF_LDX | BPF_MEM, m));
            Ok(())
        }
        None => Err(not_in_kernel(match view {
            View::Tagged => "it reads part of a VLAN tag the kernel cannot load that way",
            _ => "it reads the cooked header's link-layer address, which the kernel cannot load",
        })),
    }
}

/// The program to attach to a capture socket of `link`: packets of
/// `direction` that the user's program `user` (from [`compile`] for the
/// same link type) accepts, cut to at most `kernel_snaplen` bytes from the
/// start of the socket's data.
///
/// Layout: the direction check (dropping in place, so its jumps are
/// short), then for Ethernet and LINUX_SLL2 a dispatch to one rewritten
/// copy of the user's program per view of the packet; each copy starts
/// with A = X = 0 as the kernel starts a program.
pub fn for_kernel(
    user: &[Insn],
    link: LinkType,
    direction: Direction,
    kernel_snaplen: u32,
) -> Result<Vec<Insn>> {
    if user.is_empty() {
        return Err(not_in_kernel("the program is empty"));
    }
    if user.len() > BPF_MAXINSNS {
        return Err(FilterError::TooLong { len: user.len() });
    }
    let scratch = free_scratch(user);
    let mut asm = Asm::default();
    let outgoing = match direction {
        Direction::RxTx => None,
        Direction::Rx => Some(true),
        Direction::Tx => Some(false),
    };
    if let Some(drop_outgoing) = outgoing {
        // Packet type as ancillary data: PACKET_OUTGOING is tx.
        asm.push(ld_anc(SKF_AD_PKTTYPE));
        let (keep, drop) = (asm.label(), asm.label());
        if drop_outgoing {
            asm.cond(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING, drop, keep);
        } else {
            asm.cond(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING, keep, drop);
        }
        asm.bind(drop);
        asm.push(ret_k(0));
        asm.bind(keep);
    }
    match link {
        LinkType::Raw => emit_copy(&mut asm, user, View::AsIs, kernel_snaplen, scratch)?,
        LinkType::Ethernet => {
            // A stripped outer tag is metadata the kernel reports as
            // present; a tag the kernel left in the frame is just bytes.
            let (plain, tagged, jump) = (asm.label(), asm.label(), asm.label());
            asm.push(ld_anc(SKF_AD_VLAN_TAG_PRESENT));
            asm.cond(BPF_JMP | BPF_JEQ | BPF_K, 0, plain, jump);
            asm.bind(jump);
            asm.ja(tagged);
            asm.bind(plain);
            emit_copy(&mut asm, user, View::AsIs, kernel_snaplen, scratch)?;
            asm.bind(tagged);
            emit_copy(&mut asm, user, View::Tagged, kernel_snaplen, scratch)?;
        }
        LinkType::LinuxSll2 => {
            let (eth, bare, other) = (asm.label(), asm.label(), asm.label());
            let (to_eth, to_bare) = (asm.label(), asm.label());
            asm.push(ld_anc(SKF_AD_HATYPE));
            asm.jump_if(BPF_JMP | BPF_JEQ | BPF_K, ARPHRD_ETHER, to_eth);
            asm.jump_if(BPF_JMP | BPF_JEQ | BPF_K, ARPHRD_LOOPBACK, to_eth);
            for t in HEADERLESS {
                asm.jump_if(BPF_JMP | BPF_JEQ | BPF_K, t, to_bare);
            }
            asm.ja(other);
            asm.bind(to_eth);
            asm.ja(eth);
            asm.bind(to_bare);
            asm.ja(bare);
            // Ethernet devices: a SOCK_RAW socket sees the frame from its
            // 14-byte Ethernet header (the kernel strips outer VLAN tags on
            // receive before the packet taps).
            asm.bind(eth);
            emit_copy(
                &mut asm,
                user,
                View::Cooked(Some(14)),
                kernel_snaplen,
                scratch,
            )?;
            asm.bind(bare);
            emit_copy(
                &mut asm,
                user,
                View::Cooked(Some(0)),
                kernel_snaplen,
                scratch,
            )?;
            asm.bind(other);
            emit_copy(&mut asm, user, View::Cooked(None), kernel_snaplen, scratch)?;
        }
    }
    asm.finish()
}
