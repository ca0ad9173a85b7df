//! The kernel's own drops of packets on one interface, per cpu and per
//! drop reason: an eBPF program at the `skb:kfree_skb` tracepoint counting
//! into a per-cpu array keyed by the reason.
//!
//! The kernel frees a packet it drops with kfree_skb_reason(), which fires
//! `skb:kfree_skb` with the packet, the caller's address and an `enum
//! skb_drop_reason` (and, in later kernels, 6.18 among them, the receiving
//! socket); packets it is
//! done with normally go through `skb:consume_skb` instead, so the program
//! runs only for drops. Everything it needs from the kernel comes from the
//! kernel's BTF ([`crate::sys::btf`]), read when the probe is attached:
//!
//! - the positions of the skb, reason and receiving socket arguments, from
//!   the tracepoint's prototype (`btf_trace_kfree_skb`): kernels before
//!   5.17 have no reason (refused, by name), older ones no socket;
//! - the offsets of `sk_buff.dev`, `sk_buff.skb_iif`, `sk_buff.sk`,
//!   `net_device.ifindex`, `net_device.nd_net.net`, `sock.__sk_common.
//!   skc_net.net` and `net.ns.inum`;
//! - the reasons' names, from `enum skb_drop_reason` (prefix stripped:
//!   `NO_SOCKET`, `SOCKET_RCVBUFF`), never from a table of ours; the map
//!   has one slot per reason below `SKB_DROP_REASON_MAX` and one for any
//!   other value (subsystem reasons, in the enum's upper 16 bits), and as
//!   many again for drops whose namespace is unknown (below).
//!
//! Which drops are the interface's: ifindex alone is not enough, every
//! namespace has its `lo` with ifindex 1 and a veth moved between
//! namespaces keeps its number, so the device's namespace must be the
//! capture's too (the inode of /proc/thread-self/ns/net, which the kernel
//! keeps as `net.ns.inum`):
//!
//! - `skb->dev` set (received and sent packets, through the stack): its
//!   ifindex and namespace decide. The first drop whose device passes
//!   both checks leaves the device's address in a one-word array
//!   ([`Fds::device`]); from then on a drop whose `skb->dev` is that
//!   address is the interface's without reading anything more (one
//!   compare where there were three dependent loads), and another
//!   device's drop still leaves after reading its ifindex. A `struct
//!   net_device` keeps its address for as long as the device exists; the
//!   captured interface going away ends the capture.
//! - `skb->dev` NULL, or not a device: the word is shared with
//!   `dev_scratch`, which UDP fills while a datagram waits in a socket
//!   queue (truesize, length and two flags: never a kernel address, which
//!   the program tells by the word's sign, and were it read as one, the
//!   program's fault-safe load of "ifindex" would read 0). The packet was
//!   received: `skb_iif` (the ifindex it arrived on, set in
//!   __netif_receive_skb_core) must match, and the namespace is the
//!   receiving socket's (the tracepoint's `rx_sk`, else `skb->sk`).
//!   Without a socket the namespace is unknown: such a drop is counted
//!   apart (with its reason, [`DropCount::namespace_known`] false), by
//!   every probe on that ifindex, never as the interface's. Seen here:
//!   datagrams left unread when a UDP socket closes (NOT_SPECIFIED on
//!   6.18, freed after an RCU grace period, neither device nor socket).
//!   Locally sent packets dropped before a device is chosen (netfilter
//!   OUTPUT) have neither device nor skb_iif and are not counted;
//!   `skb_dst(skb)->dev` would name the route's device (left for later).
//! - Packets held in a tree (IP fragment queues, TCP's out-of-order
//!   queue) have the tree node's pointer in that word: a kernel address,
//!   not a device. A drop of one is counted only if what the program reads
//!   through it matches both the ifindex and the namespace inode, which a
//!   stray pointer does not do except by coincidence; otherwise it is
//!   missed (the reason is then usually a fragment or TCP one).
//! - Verified here (tests): NO_SOCKET and SOCKET_RCVBUFF drops of UDP on
//!   lo and on a veth carry their device.
//!
//! Cost: the program runs for every drop on the machine (the tracepoint
//! has no filter). Another device's drop leaves after two loads (the
//! skb's device and its ifindex) and a compare with the remembered
//! device; the interface's drops, once its device is remembered, after
//! one load and that compare, then one per-cpu map lookup (which the
//! verifier inlines) and an add; the counts are read by user space when
//! asked, nothing per packet goes to user space.
//! The increment is not atomic: per-cpu values are only written on their
//! cpu, and a raw tracepoint program does not nest on a cpu (the kernel
//! skips a run that would, counting it in the program's recursion_misses,
//! which [`DropProbe::run_stats`] reports). Measured on 6.18 (the
//! `cost_of_the_device_check` test: floods of UDP datagrams to a closed
//! port over a veth, three programs on each drop, BPF run-time statistics
//! on, which add their own clock reads, about 40 ns of each figure; six
//! rounds, medians, the counting program run last): 55 ns per counted
//! drop with the device remembered, 59 checked in full; 46 per drop of
//! another namespace with the same ifindex, 43 of another ifindex. The
//! tracepoint's first program pays some 20 ns more (run first: 74
//! remembered, 82 in full), presumably for the lines the later ones then
//! find in the caches. No recursion misses.
//!
//! Variants ([`Variant`]): with `--flows` the program also keys the
//! interface's drops by flow ([`super::drop_flows`]), reading the
//! packet's headers; without it that code is not in the program at all.
//! With `-v` it keeps, per cpu and reason, the tracepoint's `location`
//! (the caller's address: where the kernel dropped the packet) beside
//! the count, one store more; without it, not.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;

use super::drop_flows::{self, Flow};
use crate::sys::bpf::{Map, MapType, Program};
use crate::sys::btf::Btf;
use crate::sys::ebpf::{self, Insn};
use crate::sys::tracing::{self, Attached, Hook, ProbeError, RunStats};

use super::{deref, field};

/// The tracepoint (`skb:kfree_skb`, by its name without the group).
pub const TRACEPOINT: &str = "kfree_skb";
/// The enum the reason argument is.
const REASON_ENUM: &str = "skb_drop_reason";
/// At most this many reason slots (the kernel has ~130).
const MAX_SLOTS: u32 = 1024;

/// Which drops count: those on interface `ifindex` (every interface when
/// None) of the network namespace whose inode is `netns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    pub ifindex: Option<u32>,
    pub netns: u32,
}

/// The inode of the calling thread's network namespace (what the kernel
/// keeps as `net.ns.inum`). /proc/thread-self, not /proc/self: a thread
/// that entered another namespace with setns() differs from its process.
pub fn current_netns() -> io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata("/proc/thread-self/ns/net")?.ino();
    u32::try_from(ino).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// Where the program finds what it reads, from the kernel's BTF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Argument positions (u64 slots of the context).
    pub skb_arg: usize,
    pub reason_arg: usize,
    pub rx_sk_arg: Option<usize>,
    pub skb_dev: i16,
    pub skb_iif: i16,
    pub skb_sk: i16,
    pub dev_ifindex: i16,
    pub dev_net: i16,
    pub sk_net: i16,
    pub net_inum: i16,
    /// The `location` argument (`void *`, the caller's address).
    pub location_arg: Option<usize>,
    /// For the flow of a dropped packet: the buffer, the data, the
    /// network header's offset in the buffer, the ethertype.
    pub skb_head: i16,
    pub skb_data: i16,
    pub skb_network_header: i16,
    pub skb_protocol: i16,
}

impl Layout {
    pub fn from_btf(btf: &Btf) -> Result<Layout, ProbeError> {
        let params = btf.raw_tp_params(TRACEPOINT)?;
        let arg = |ty: &str| btf.param_position(&params, ty);
        let missing = |what: &str| {
            ProbeError::Kernel(format!(
                "the kernel's skb:{TRACEPOINT} has no {what} argument"
            ))
        };
        let skb_arg = arg("struct sk_buff *").ok_or_else(|| missing("packet"))?;
        let reason_arg = arg(&format!("enum {REASON_ENUM}")).ok_or_else(|| missing("reason"))?;
        let field = |outer: &str, path: &str, size: u32| field(btf, outer, path, size);
        Ok(Layout {
            skb_arg,
            reason_arg,
            rx_sk_arg: arg("struct sock *"),
            skb_dev: field("sk_buff", "dev", 8)?,
            skb_iif: field("sk_buff", "skb_iif", 4)?,
            skb_sk: field("sk_buff", "sk", 8)?,
            dev_ifindex: field("net_device", "ifindex", 4)?,
            dev_net: field("net_device", "nd_net.net", 8)?,
            sk_net: field("sock", "__sk_common.skc_net.net", 8)?,
            net_inum: field("net", "ns.inum", 4)?,
            location_arg: arg("void *"),
            skb_head: field("sk_buff", "head", 8)?,
            skb_data: field("sk_buff", "data", 8)?,
            skb_network_header: field("sk_buff", "network_header", 2)?,
            skb_protocol: field("sk_buff", "protocol", 2)?,
        })
    }
}

/// The kernel's drop reasons by value, from its BTF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reasons {
    /// Index: the reason's value; below `SKB_DROP_REASON_MAX`.
    names: Vec<String>,
}

impl Reasons {
    pub fn from_btf(btf: &Btf) -> Result<Reasons, ProbeError> {
        let values = btf.enum_values(REASON_ENUM)?;
        // SKB_DROP_REASON_MAX ends the core reasons; values above it are
        // masks and subsystem reasons (SKB_DROP_REASON_SUBSYS_MASK).
        let max = values
            .iter()
            .find(|(n, _)| n == "SKB_DROP_REASON_MAX")
            .map(|&(_, v)| v)
            .unwrap_or_else(|| {
                values
                    .iter()
                    .map(|&(_, v)| v)
                    .filter(|&v| v < 1 << 16)
                    .max()
                    .map_or(0, |v| v + 1)
            })
            .min(u64::from(MAX_SLOTS - 2));
        let mut names: Vec<String> = (0..max).map(|v| format!("REASON_{v}")).collect();
        for (name, v) in values {
            if v < max {
                names[v as usize] = strip(&name).to_string();
            }
        }
        Ok(Reasons { names })
    }

    /// The name of reason `code` (None beyond the known ones).
    pub fn name(&self, code: u32) -> Option<&str> {
        self.names.get(code as usize).map(String::as_str)
    }

    /// The value of the reason named `name` (prefix stripped).
    #[cfg(test)]
    pub fn code(&self, name: &str) -> Option<u32> {
        self.names.iter().position(|n| n == name).map(|i| i as u32)
    }

    /// The map slot for reasons beyond the named ones.
    fn other_slot(&self) -> u32 {
        self.names.len() as u32
    }

    /// Slots per attribution: the named reasons and the other slot. The
    /// map has twice as many: the interface's drops, then those whose
    /// namespace is unknown.
    fn per_attribution(&self) -> u32 {
        self.other_slot() + 1
    }

    fn slots(&self) -> u32 {
        2 * self.per_attribution()
    }

    /// The slot after the others: drops of the interface that the flow
    /// map had no room for.
    fn overflow_slot(&self) -> u32 {
        self.slots()
    }
}

/// `SKB_DROP_REASON_NO_SOCKET` -> `NO_SOCKET`, `SKB_CONSUMED` ->
/// `CONSUMED`.
fn strip(name: &str) -> &str {
    name.strip_prefix("SKB_DROP_REASON_")
        .or_else(|| name.strip_prefix("SKB_"))
        .unwrap_or(name)
}

/// Why the kernel dropped packets.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// A reason of the kernel's enum: its value and name.
    Kernel { code: u32, name: String },
    /// A reason value beyond the kernel's enum (a subsystem's).
    Other,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Kernel { name, .. } => f.write_str(name),
            Reason::Other => f.write_str("OTHER"),
        }
    }
}

/// Packets dropped on one cpu for one reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropCount {
    pub cpu: u32,
    pub reason: Reason,
    /// False for packets received on the interface's ifindex whose
    /// namespace the kernel no longer knew when it dropped them (no
    /// device, no socket): those of any namespace with that ifindex, so
    /// not known to be the interface's.
    pub namespace_known: bool,
    pub packets: u64,
}

/// Byte offset of the map key on the program's stack, and of the scratch
/// word bpf_probe_read_kernel reads into.
const STACK_KEY: i16 = -4;
const STACK_SCRATCH: i16 = -16;

/// A value of the per-reason array, per cpu: packets, then (with
/// [`Variant::locations`]) the `location` of the last one.
const VALUE_SIZE: u32 = 16;
const V_LOCATION: i16 = 8;

/// What the program does besides counting drops per cpu and reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Variant {
    /// Key the interface's drops by flow (`--flows`).
    pub flows: bool,
    /// Keep the location of each reason's last drop per cpu (`-v`).
    pub locations: bool,
}

/// The maps the program uses, by descriptor.
#[derive(Clone, Copy, Debug)]
pub struct Fds {
    pub counts: i32,
    /// With [`Variant::flows`].
    pub flows: Option<i32>,
    /// An array of one u64: the interface's device (its `struct
    /// net_device` address) once the program has seen it, for a filter
    /// on one interface. None: every drop is checked in full.
    pub device: Option<i32>,
}

/// The program. Registers: r6 the context, r7 the skb, r8 the device (or
/// socket), then the first slot of the attribution; r9 what is compared,
/// then the slot. `typed`: for tp_btf (plain loads), else for a raw
/// tracepoint (bpf_probe_read_kernel). `locations` and `fds.flows` make
/// the variants ([`Variant`]).
pub fn program(
    layout: &Layout,
    filter: &Filter,
    reasons: &Reasons,
    fds: Fds,
    locations: bool,
    typed: bool,
) -> Vec<Insn> {
    use ebpf::*;
    use Reg::*;
    let arg = |i: usize| (i * 8) as i16;
    let other = reasons.other_slot() as i32;
    let unknown_ns = reasons.per_attribution() as i32;
    let mut a = Asm::new();
    a.push([mov(R6, R1), load(Size::DW, R7, R6, arg(layout.skb_arg))]);
    deref(
        &mut a,
        typed,
        R8,
        R7,
        layout.skb_dev,
        Size::DW,
        STACK_SCRATCH,
    );
    if cfg!(target_arch = "s390x") {
        // Kernel addresses start at 0 here: only NULL is told apart now,
        // dev_scratch below (its ifindex reads 0).
        a.jump_to(jump_imm(Cond::Eq, R8, 0, 0), "no_dev");
    } else {
        // NULL, or the UDP dev_scratch (truesize, length and two flags:
        // below 2^57): not a kernel address, which is negative as an i64
        // on x86-64, arm64 and the other 64-bit architectures but s390.
        // No load to find out.
        a.jump_to(jump_imm(Cond::Sge, R8, 0, 0), "no_dev");
    }
    if let (Some(ifindex), Some(device)) = (filter.ifindex, fds.device) {
        // The interface's device, once a drop has shown where it is: one
        // compare instead of three dependent loads (ifindex, namespace,
        // its inode) for every drop of the interface.
        a.push(load_map_value(R1, device, 0))
            .push([load(Size::DW, R1, R1, 0)]);
        a.jump_to(jump(Cond::Eq, R8, R1, 0), "ours");
        deref(
            &mut a,
            typed,
            R9,
            R8,
            layout.dev_ifindex,
            Size::W,
            STACK_SCRATCH,
        );
        // Another device's drop leaves here, after one load.
        a.push([mov32_imm(R1, ifindex as i32)]);
        a.jump_to(jump(Cond::Ne, R9, R1, 0), "not_ours");
    } else {
        deref(
            &mut a,
            typed,
            R9,
            R8,
            layout.dev_ifindex,
            Size::W,
            STACK_SCRATCH,
        );
        a.jump_to(jump_imm(Cond::Eq, R9, 0, 0), "no_dev");
        if let Some(ifindex) = filter.ifindex {
            a.push([mov32_imm(R1, ifindex as i32)]);
            a.jump_to(jump(Cond::Ne, R9, R1, 0), "out");
        }
    }
    deref(
        &mut a,
        typed,
        R9,
        R8,
        layout.dev_net,
        Size::DW,
        STACK_SCRATCH,
    );
    a.jump_to(ja(0), "check_ns");
    if let (Some(_), Some(_)) = (filter.ifindex, fds.device) {
        // A word that is not a device (a tree node: below) reads ifindex
        // 0.
        a.label("not_ours");
        a.jump_to(jump_imm(Cond::Ne, R9, 0, 0), "out");
    }

    // No device (or a word that is not one): received here (skb_iif), in
    // the receiving socket's namespace.
    a.label("no_dev");
    deref(
        &mut a,
        typed,
        R9,
        R7,
        layout.skb_iif,
        Size::W,
        STACK_SCRATCH,
    );
    match filter.ifindex {
        Some(ifindex) => {
            a.push([mov32_imm(R1, ifindex as i32)]);
            a.jump_to(jump(Cond::Ne, R9, R1, 0), "out");
        }
        None => {
            a.jump_to(jump_imm(Cond::Eq, R9, 0, 0), "out");
        }
    }
    a.push([mov_imm(R8, 0)]);
    if let Some(i) = layout.rx_sk_arg {
        a.push([load(Size::DW, R8, R6, arg(i))]);
    }
    a.jump_to(jump_imm(Cond::Ne, R8, 0, 0), "sock");
    deref(
        &mut a,
        typed,
        R8,
        R7,
        layout.skb_sk,
        Size::DW,
        STACK_SCRATCH,
    );
    a.jump_to(jump_imm(Cond::Eq, R8, 0, 0), "unattributed");
    a.label("sock");
    deref(
        &mut a,
        typed,
        R9,
        R8,
        layout.sk_net,
        Size::DW,
        STACK_SCRATCH,
    );

    a.label("check_ns");
    a.jump_to(jump_imm(Cond::Eq, R9, 0, 0), "out");
    deref(
        &mut a,
        typed,
        R9,
        R9,
        layout.net_inum,
        Size::W,
        STACK_SCRATCH,
    );
    a.push([mov32_imm(R1, filter.netns as i32)]);
    a.jump_to(jump(Cond::Ne, R9, R1, 0), "out");
    if let (Some(_), Some(device)) = (filter.ifindex, fds.device) {
        // The device is the interface's (a skb's device is a device: the
        // namespace it says is the device's own). Remembered from here on;
        // the same value from every cpu, so no atomic is needed.
        a.push(load_map_value(R1, device, 0))
            .push([store(Size::DW, R1, 0, R8)]);
    }
    a.label("ours").push([mov_imm(R8, 0)]);
    a.jump_to(ja(0), "reason");
    a.label("unattributed").push([mov_imm(R8, unknown_ns)]);
    // The reason, as a u32 (the enum), or the other slot.
    a.label("reason");
    a.push([
        load(Size::DW, R9, R6, arg(layout.reason_arg)),
        mov32(R9, R9),
    ]);
    a.jump_to(jump_imm(Cond::Lt, R9, other, 0), "count");
    a.push([mov_imm(R9, other)]);
    a.label("count").push([
        add(R9, R8),
        store(Size::W, R10, STACK_KEY, R9),
        mov(R2, R10),
        add_imm(R2, STACK_KEY.into()),
    ]);
    a.push(load_map_fd(R1, fds.counts))
        .push([call(helper::MAP_LOOKUP_ELEM)]);
    a.jump_to(jump_imm(Cond::Eq, R0, 0, 0), "out");
    // Not atomic: this cpu's value, and the program does not nest on a cpu.
    a.push([
        load(Size::DW, R1, R0, 0),
        add_imm(R1, 1),
        store(Size::DW, R0, 0, R1),
    ]);
    if let (true, Some(i)) = (locations, layout.location_arg) {
        a.push([
            load(Size::DW, R1, R6, arg(i)),
            store(Size::DW, R0, V_LOCATION, R1),
        ]);
    }
    if let Some(flows) = fds.flows {
        // Only the interface's own drops (attribution 0): r9 is the
        // reason's slot.
        a.jump_to(jump_imm(Cond::Ne, R8, 0, 0), "out");
        super::drop_flows::emit(
            &mut a,
            layout,
            typed,
            (flows, fds.counts),
            reasons.overflow_slot(),
        );
    }
    a.label("out").push([mov_imm(R0, 0), exit()]);
    a.finish()
}

/// Drops of one flow for one reason (all cpus), with `--flows`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowDrops {
    pub flow: Flow,
    pub reason: Reason,
    pub packets: u64,
}

/// Where the kernel last dropped a packet for a reason on a cpu (the
/// tracepoint's `location`, the caller's address), with `-v`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropSite {
    pub cpu: u32,
    pub reason: Reason,
    pub namespace_known: bool,
    pub location: u64,
}

/// The drop probe, attached; detached when dropped.
#[derive(Debug)]
pub struct DropProbe {
    attached: Attached,
    /// Held for the capture (the link holds it too; this is what
    /// [`DropProbe::run_stats`] asks about).
    #[allow(dead_code)]
    prog: Program,
    counts: Map,
    /// The device the program remembers (the program holds it too).
    #[allow(dead_code)]
    device: Map,
    /// With [`Variant::flows`]: (flow, reason) -> packets per cpu.
    flows: Option<Map>,
    reasons: Reasons,
    /// Per-cpu values come one per possible cpu, in this order.
    possible: Vec<u32>,
}

impl DropProbe {
    /// Loads and attaches the probe for `filter`, the `variant` asked
    /// for: BTF-typed (tp_btf) where the kernel takes it, else as a raw
    /// tracepoint by name.
    pub fn attach(btf: &Btf, filter: Filter, variant: Variant) -> Result<DropProbe, ProbeError> {
        match DropProbe::attach_at(btf, filter, variant, &Hook::tp_btf(TRACEPOINT)) {
            Err(e)
                if !e.is_permission()
                    && !matches!(e, ProbeError::Kernel(_) | ProbeError::Btf(_)) =>
            {
                DropProbe::attach_at(btf, filter, variant, &Hook::raw_tp(TRACEPOINT)).map_err(|_| e)
            }
            other => other,
        }
    }

    /// [`DropProbe::attach`] at a given hook (tp_btf or raw_tp of
    /// kfree_skb).
    pub fn attach_at(
        btf: &Btf,
        filter: Filter,
        variant: Variant,
        hook: &Hook,
    ) -> Result<DropProbe, ProbeError> {
        let layout = Layout::from_btf(btf)?;
        let reasons = Reasons::from_btf(btf)?;
        let possible: Vec<u32> = super::possible_cpus()?;
        let counts = Map::create(
            MapType::PercpuArray,
            "rxtxcpu_drops",
            4,
            VALUE_SIZE,
            reasons.slots() + 1,
            0,
        )
        .map_err(|e| ProbeError::os("error creating the drop counters".into(), e))?;
        let flows = variant
            .flows
            .then(|| {
                Map::create(
                    MapType::PercpuHash,
                    "rxtxcpu_dflows",
                    drop_flows::KEY_SIZE,
                    8,
                    drop_flows::MAX_ENTRIES,
                    0,
                )
                .map_err(|e| ProbeError::os("error creating the flows' drop counters".into(), e))
            })
            .transpose()?;
        let device = Map::create(MapType::Array, "rxtxcpu_ddev", 4, 8, 1, 0)
            .map_err(|e| ProbeError::os("error creating the drop probe's device".into(), e))?;
        let fds = Fds {
            counts: counts.as_raw_fd(),
            flows: flows.as_ref().map(|m| m.as_raw_fd()),
            device: Some(device.as_raw_fd()),
        };
        let insns = program(
            &layout,
            &filter,
            &reasons,
            fds,
            variant.locations,
            hook.is_typed(),
        );
        let prog = tracing::load(btf, hook, "rxtxcpu_drops", &insns)?;
        let attached = tracing::attach(&prog, hook)?;
        Ok(DropProbe {
            attached,
            prog,
            counts,
            device,
            flows,
            reasons,
            possible,
        })
    }

    /// Where and how it is attached (`tp_btf/kfree_skb (BPF_LINK_CREATE)`).
    pub fn attached(&self) -> &Attached {
        &self.attached
    }

    /// The program's kernel id.
    #[cfg(test)]
    pub fn program_id(&self) -> io::Result<u32> {
        self.prog.id()
    }

    /// The program's run statistics (its cost, and the runs it missed).
    pub fn run_stats(&self) -> io::Result<RunStats> {
        tracing::run_stats(&self.prog)
    }

    fn reason(&self, slot: u32) -> Reason {
        let s = slot % self.reasons.per_attribution();
        if s < self.reasons.other_slot() {
            Reason::Kernel {
                code: s,
                name: self.reasons.name(s).unwrap_or_default().to_string(),
            }
        } else {
            Reason::Other
        }
    }

    /// Each possible cpu's value of the per-reason array's `slot`:
    /// (cpu, packets, location).
    fn slot_values(&self, slot: u32) -> io::Result<Vec<(u32, u64, u64)>> {
        let size = VALUE_SIZE as usize;
        let mut buf = vec![0u8; size * self.possible.len()];
        self.counts.lookup(&slot.to_ne_bytes(), &mut buf)?;
        let word = |at: usize| u64::from_ne_bytes(buf[at..at + 8].try_into().unwrap_or([0; 8]));
        Ok(self
            .possible
            .iter()
            .enumerate()
            .map(|(i, &cpu)| (cpu, word(i * size), word(i * size + 8)))
            .collect())
    }

    /// The drops counted so far, per cpu and reason (nonzero ones, by cpu
    /// then slot).
    pub fn counts(&self) -> io::Result<Vec<DropCount>> {
        let mut out = Vec::new();
        let per = self.reasons.per_attribution();
        for slot in 0..self.reasons.slots() {
            for (cpu, packets, _) in self.slot_values(slot)? {
                if packets > 0 {
                    out.push(DropCount {
                        cpu,
                        reason: self.reason(slot),
                        namespace_known: slot < per,
                        packets,
                    });
                }
            }
        }
        out.sort_by(|a, b| {
            (a.cpu, !a.namespace_known, &a.reason).cmp(&(b.cpu, !b.namespace_known, &b.reason))
        });
        Ok(out)
    }

    /// With [`Variant::locations`]: where each reason's last drop on each
    /// cpu was (by cpu, then slot).
    pub fn sites(&self) -> io::Result<Vec<DropSite>> {
        let mut out = Vec::new();
        let per = self.reasons.per_attribution();
        for slot in 0..self.reasons.slots() {
            for (cpu, packets, location) in self.slot_values(slot)? {
                if packets > 0 && location != 0 {
                    out.push(DropSite {
                        cpu,
                        reason: self.reason(slot),
                        namespace_known: slot < per,
                        location,
                    });
                }
            }
        }
        out.sort_by(|a, b| (a.cpu, &a.reason).cmp(&(b.cpu, &b.reason)));
        Ok(out)
    }

    /// With [`Variant::flows`]: the interface's drops per flow and reason
    /// (summed over the cpus; by the map's order), and the drops the map
    /// had no room for. None without.
    pub fn flow_counts(&self) -> io::Result<Option<(Vec<FlowDrops>, u64)>> {
        let Some(map) = &self.flows else {
            return Ok(None);
        };
        let overflow = self
            .slot_values(self.reasons.overflow_slot())?
            .iter()
            .map(|v| v.1)
            .sum();
        let mut out = Vec::new();
        let mut key = vec![0u8; drop_flows::KEY_SIZE as usize];
        let mut next = key.clone();
        let mut values = vec![0u8; 8 * self.possible.len()];
        let mut first = true;
        while map.next_key((!first).then_some(&key[..]), &mut next)? {
            first = false;
            std::mem::swap(&mut key, &mut next);
            // A key is never deleted: a lookup finds it.
            map.lookup(&key, &mut values)?;
            let packets = values
                .chunks_exact(8)
                .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8])))
                .sum();
            if let Some((flow, slot)) = drop_flows::decode(&key) {
                out.push(FlowDrops {
                    flow,
                    reason: self.reason(slot),
                    packets,
                });
            }
        }
        Ok(Some((out, overflow)))
    }
}

#[cfg(test)]
#[path = "drops_tests.rs"]
mod tests;
