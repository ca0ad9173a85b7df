//! The programs of `--path` ([`super::path`]): what each reads, from the
//! kernel's BTF, and their instructions.
//!
//! Every program builds one 48-byte key on its stack and adds one to the
//! current cpu's value of that key in a per-cpu hash map (the cpu is the
//! value's position, not part of the key):
//!
//! | bytes | what |
//! |-------|------|
//! | 0-15  | source address (IPv4: the first 4 bytes) |
//! | 16-31 | destination address |
//! | 32-35 | source and destination port, big-endian |
//! | 36    | IP protocol |
//! | 37    | IP version (4, 6; 0: an unconnected socket's read, no flow) |
//! | 38    | 1 when the ports are known |
//! | 39    | stage ([`Stage`]) |
//! | 40-41 | skb->queue_mapping (receive: the recorded queue plus one) |
//! | 42    | context ([`CTX_TASK`], [`CTX_IRQ`]; 0: not asked) |
//! | 44-47 | the process id (tgid) in task context |
//!
//! Most packets never reach the hash map: each cpu keeps a small
//! direct-mapped cache of keys and counts ([`SLOTS`] slots of one cache
//! line each, the cpu's own part of an array: `cpu << SLOT_BITS | slot`;
//! the slot chosen by a hash of the key's words). A packet whose key is
//! in its slot adds one there: one cache line touched, where the hash
//! map touches a bucket, an element and a per-cpu value (and a per-cpu
//! array a table of pointers before the value), and hashes the key; one
//! whose slot holds another key moves that key's count into the hash map
//! and takes the slot. The array is made mmap-able only for its layout:
//! its values then start on a page, so that every slot is one line. The
//! slots are shared by all the programs on a cpu, and a program may run
//! while another one is interrupted on the same cpu (a softirq's receive
//! over a send system call): a flag in the slot's own line says a
//! program is working on it, and one that finds it set counts in the
//! hash map directly. (The interrupting program always finishes before
//! the interrupted one goes on, so a flag read as clear and then set
//! cannot be taken by both.)
//! User space reads the slots and the map once the programs are
//! detached, and adds them up.
//!
//! The process's name is not in the key: the key is hashed and compared
//! for every packet, and the name is the same for all of a process's
//! packets. Where a program names a process (a send, a read), it puts the
//! name (its group leader's comm, what ps shows) into a second, small
//! map keyed by the process id, once: the first packet of a process
//! finds no entry and inserts one, every later one only looks it up. A
//! name is the one the process had at its first counted packet.
//!
//! The flow comes from the packet's own headers: the network header is
//! `skb->data` where a driver hands the packet to the stack
//! (eth_type_trans pulled the link header; `network_header` is not set
//! yet in NIC drivers' fresh buffers), `skb->head + skb->network_header`
//! on transmit (the IP layer set it) and at a TCP copy. Packet bytes have
//! no BTF type; since Linux 6.18 (verified by `path_tests`) a
//! typed program may still load them directly, as untrusted read-only
//! memory (a load that faults reads 0), which costs a few instructions;
//! older kernels refuse such a program, and it is built again with
//! bpf_probe_read_kernel copies instead ([`Reads`]). Which headers are
//! read, and how the tuple is made the flow table's
//! ([`crate::consumers::flows::key`]): [`super::path_headers`]. Frames
//! that are neither IPv4 nor IPv6 behind their VLAN tags (ARP, a third
//! tag) are not counted.

use crate::source::probes::drops::Filter;
use crate::source::probes::path_headers::headers;
use crate::source::probes::{deref, field};
use crate::sys::btf::Btf;
use crate::sys::ebpf::{self, Asm, Insn};
use crate::sys::tracing::ProbeError;

/// The stages of a packet's path a program counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// A driver handing a received packet to the stack (before RPS).
    RxDriver = 0,
    /// A sender queueing a packet on the device (`net:net_dev_queue`):
    /// the transmit queue is chosen.
    Send = 1,
    /// The packet handed to the driver (`net:net_dev_start_xmit`).
    TxDriver = 2,
    /// An application's read.
    Read = 3,
}

impl Stage {
    pub fn from_u8(v: u8) -> Option<Stage> {
        Some(match v {
            0 => Stage::RxDriver,
            1 => Stage::Send,
            2 => Stage::TxDriver,
            3 => Stage::Read,
            _ => return None,
        })
    }
}

pub const KEY_SIZE: u32 = 48;
/// Where each part of the key is (see the table above).
pub const K_SRC: usize = 0;
pub const K_DST: usize = 16;
pub const K_PORTS: usize = 32;
pub const K_PROTO: usize = 36;
pub const K_VERSION: usize = 37;
pub const K_HAS_PORTS: usize = 38;
pub const K_STAGE: usize = 39;
pub const K_QUEUE: usize = 40;
pub const K_CTX: usize = 42;
pub const K_PID: usize = 44;
/// A process's name as the names map holds it (task_struct.comm).
pub const NAME_SIZE: u32 = 16;
/// The slots of each cpu's cache: a power of two. 4096 hold 512 flows
/// per cpu with 88% of them alone in their slot, in 256 KiB per cpu.
pub const SLOT_BITS: u32 = 12;
pub const SLOTS: u32 = 1 << SLOT_BITS;
/// A slot: a key, its count on this cpu (0: empty), the busy flag: one
/// cache line.
pub const SLOT_SIZE: u32 = 64;
pub const SLOT_COUNT: usize = KEY_SIZE as usize;
const SLOT_BUSY: i16 = SLOT_COUNT as i16 + 8;
/// Key byte 42: the event ran in a task (a system call), not an interrupt.
pub const CTX_TASK: u8 = 1;
/// Key byte 42: not in a process's own context: an interrupt or softirq
/// (the current task is whatever it interrupted) or a kernel thread
/// (ksoftirqd, a NAPI thread, a kworker).
pub const CTX_IRQ: u8 = 2;

/// How far above `task->stack` a frame on the task's own kernel stack
/// is at most: THREAD_SIZE, 16 KiB on x86-64 (and arm64 with 4 KiB
/// pages). A kernel with bigger stacks (KASAN doubles them) has task
/// frames beyond it, which are then not named: a process is missed, never
/// misnamed.
const TASK_STACK: i32 = 16384;
/// task_struct.flags: a kernel thread.
const PF_KTHREAD: i32 = 0x0020_0000;

/// Stack offsets: the key, scratch for header bytes (and a name), the
/// value 1, the scratch word of bpf_probe_read_kernel, a map index.
const KEY: i16 = -48;
pub(super) const SCRATCH: i16 = -96;
const ONE: i16 = -104;
const DEREF: i16 = -112;
const INDEX: i16 = -120;

/// The stack offset of byte `at` of the key.
pub(super) fn k(at: usize) -> i16 {
    KEY + at as i16
}

/// How a program reads packet bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// Loads straight from the packet (untrusted read-only memory, Linux
    /// 6.18).
    Direct,
    /// bpf_probe_read_kernel copies to the stack (any kernel with BTF).
    Helper,
}

/// The maps a program counts into: `counts` (per-cpu hash by key),
/// `missed` (an array of one u64: packets whose key the full map could
/// not take), `names` (hash: process id -> name) and `slots` (array of
/// [`SLOTS`] slots per cpu).
#[derive(Clone, Copy, Debug)]
pub struct Maps {
    pub counts: i32,
    pub missed: i32,
    pub names: i32,
    pub slots: i32,
}

/// Where a program's packet begins its network header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L3 {
    /// `skb->data`: a driver's packet after eth_type_trans.
    Data,
    /// `skb->head + skb->network_header`.
    NetworkHeader,
}

/// How a packet program picks the interface's packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// `skb->dev`'s ifindex and namespace.
    Device,
    /// A packet being copied to a TCP socket: `skb->skb_iif` (the device
    /// it came in on; `skb->dev` is not kept) and the socket's namespace.
    TcpSocket,
}

/// Offsets from the kernel's BTF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    skb_head: i16,
    skb_data: i16,
    skb_network_header: i16,
    skb_protocol: i16,
    skb_queue_mapping: i16,
    skb_dev: i16,
    skb_iif: i16,
    skb_sk: i16,
    dev_ifindex: i16,
    dev_net: i16,
    net_inum: i16,
    sk_net: i16,
    sk_family: i16,
    sk_protocol: i16,
    sk_type: i16,
    sk_dport: i16,
    sk_num: i16,
    sk_daddr: i16,
    sk_rcv_saddr: i16,
    sk_v6_daddr: i16,
    sk_v6_rcv_saddr: i16,
    task_group_leader: i16,
    task_comm: i16,
    task_stack: i16,
    task_flags: i16,
}

impl Layout {
    pub fn from_btf(btf: &Btf) -> Result<Layout, ProbeError> {
        let f = |outer: &str, path: &str, size: u32| field(btf, outer, path, size);
        Ok(Layout {
            skb_head: f("sk_buff", "head", 8)?,
            skb_data: f("sk_buff", "data", 8)?,
            skb_network_header: f("sk_buff", "network_header", 2)?,
            skb_protocol: f("sk_buff", "protocol", 2)?,
            skb_queue_mapping: f("sk_buff", "queue_mapping", 2)?,
            skb_dev: f("sk_buff", "dev", 8)?,
            skb_iif: f("sk_buff", "skb_iif", 4)?,
            skb_sk: f("sk_buff", "sk", 8)?,
            dev_ifindex: f("net_device", "ifindex", 4)?,
            dev_net: f("net_device", "nd_net.net", 8)?,
            net_inum: f("net", "ns.inum", 4)?,
            sk_net: f("sock", "__sk_common.skc_net.net", 8)?,
            sk_family: f("sock", "__sk_common.skc_family", 2)?,
            sk_protocol: f("sock", "sk_protocol", 2)?,
            sk_type: f("sock", "sk_type", 2)?,
            sk_dport: f("sock", "__sk_common.skc_dport", 2)?,
            sk_num: f("sock", "__sk_common.skc_num", 2)?,
            sk_daddr: f("sock", "__sk_common.skc_daddr", 4)?,
            sk_rcv_saddr: f("sock", "__sk_common.skc_rcv_saddr", 4)?,
            sk_v6_daddr: f("sock", "__sk_common.skc_v6_daddr", 16)?,
            sk_v6_rcv_saddr: f("sock", "__sk_common.skc_v6_rcv_saddr", 16)?,
            task_group_leader: f("task_struct", "group_leader", 8)?,
            task_comm: f("task_struct", "comm", 16)?,
            task_stack: f("task_struct", "stack", 8)?,
            task_flags: f("task_struct", "flags", 4)?,
        })
    }
}

/// What a program is for.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// A packet at `skb_arg`: its flow, the queue, for `Send` and `Read`
    /// the task.
    Packet {
        stage: Stage,
        skb_arg: usize,
        l3: L3,
        pick: Pick,
    },
    /// `sock:sock_recv_length` (socket, bytes read or an error, flags):
    /// a read of a UDP socket; connected ones are keyed by their 4-tuple.
    UdpRead {
        sock_arg: usize,
        ret_arg: usize,
        flags_arg: usize,
    },
}

const MSG_PEEK: i32 = 2;
const SOCK_DGRAM: i32 = 2;
const AF_INET: i32 = 2;
const AF_INET6: i32 = 10;

/// The program for `shape`, counting into `maps`, reading packet bytes
/// as `reads` says.
pub fn program(
    layout: &Layout,
    filter: &Filter,
    shape: Shape,
    maps: Maps,
    reads: Reads,
) -> Vec<Insn> {
    use ebpf::*;
    use Reg::*;
    let arg = |i: usize| (i * 8) as i16;
    // Typed (tp_btf) programs: a kernel pointer's fields are plain loads.
    let d = |a: &mut Asm, dst: Reg, base: Reg, off: i16, size: Size| {
        deref(a, true, dst, base, off, size, DEREF)
    };
    let ifindex = filter.ifindex.unwrap_or(0) as i32;
    let mut a = Asm::new();
    a.push([mov(R6, R1)]);
    // The key, zeroed: the map reads all of it.
    let zero_key = |a: &mut Asm| {
        for i in 0..(KEY_SIZE as i16 / 8) {
            a.push([store_imm(Size::DW, R10, KEY + 8 * i, 0)]);
        }
    };
    let stage = match shape {
        Shape::Packet {
            stage,
            skb_arg,
            l3,
            pick,
        } => {
            a.push([load(Size::DW, R7, R6, arg(skb_arg))]);
            a.jump_to(jump_imm(Cond::Eq, R7, 0, 0), "out");
            match pick {
                Pick::Device => {
                    d(&mut a, R8, R7, layout.skb_dev, Size::DW);
                    a.jump_to(jump_imm(Cond::Eq, R8, 0, 0), "out");
                    d(&mut a, R9, R8, layout.dev_ifindex, Size::W);
                    if filter.ifindex.is_some() {
                        a.push([mov32_imm(R1, ifindex)]);
                        a.jump_to(jump(Cond::Ne, R9, R1, 0), "out");
                    }
                    d(&mut a, R9, R8, layout.dev_net, Size::DW);
                }
                Pick::TcpSocket => {
                    d(&mut a, R9, R7, layout.skb_iif, Size::W);
                    if filter.ifindex.is_some() {
                        a.push([mov32_imm(R1, ifindex)]);
                        a.jump_to(jump(Cond::Ne, R9, R1, 0), "out");
                    }
                    d(&mut a, R8, R7, layout.skb_sk, Size::DW);
                    a.jump_to(jump_imm(Cond::Eq, R8, 0, 0), "out");
                    d(&mut a, R9, R8, layout.sk_protocol, Size::H);
                    a.jump_to(jump_imm(Cond::Ne, R9, 6, 0), "out");
                    d(&mut a, R9, R8, layout.sk_net, Size::DW);
                }
            }
            check_netns(&mut a, layout, filter);
            zero_key(&mut a);
            // The network header into r8.
            match l3 {
                L3::Data => d(&mut a, R8, R7, layout.skb_data, Size::DW),
                L3::NetworkHeader => {
                    d(&mut a, R9, R7, layout.skb_network_header, Size::H);
                    a.jump_to(jump_imm(Cond::Eq, R9, 0xffff, 0), "out");
                    // r8 is free again: the device's or socket's pointer
                    // was only for the filter.
                    d(&mut a, R8, R7, layout.skb_head, Size::DW);
                    a.push([add(R8, R9)]);
                }
            }
            d(&mut a, R9, R7, layout.skb_protocol, Size::H);
            headers(&mut a, l3, reads);
            // The queue: received, the recorded one plus one (0: none);
            // sent, the transmit queue.
            if stage != Stage::Read {
                d(&mut a, R1, R7, layout.skb_queue_mapping, Size::H);
                a.push([store(Size::H, R10, k(K_QUEUE), R1)]);
            }
            stage
        }
        Shape::UdpRead {
            sock_arg,
            ret_arg,
            flags_arg,
        } => {
            // A datagram read (a positive length), not a peek.
            a.push([load(Size::DW, R1, R6, arg(ret_arg)), mov32(R1, R1)]);
            a.jump_to(jump_imm(Cond::Eq, R1, 0, 0), "out");
            a.jump_to(jump_imm(Cond::Gt, R1, 0x7fff_ffff, 0), "out");
            a.push([
                load(Size::DW, R1, R6, arg(flags_arg)),
                and_imm(R1, MSG_PEEK),
            ]);
            a.jump_to(jump_imm(Cond::Ne, R1, 0, 0), "out");
            a.push([load(Size::DW, R7, R6, arg(sock_arg))]);
            a.jump_to(jump_imm(Cond::Eq, R7, 0, 0), "out");
            d(&mut a, R9, R7, layout.sk_protocol, Size::H);
            a.jump_to(jump_imm(Cond::Ne, R9, 17, 0), "out");
            d(&mut a, R9, R7, layout.sk_type, Size::H);
            a.jump_to(jump_imm(Cond::Ne, R9, SOCK_DGRAM, 0), "out");
            d(&mut a, R9, R7, layout.sk_net, Size::DW);
            check_netns(&mut a, layout, filter);
            zero_key(&mut a);
            // Connected (a peer port): the 4-tuple is the flow's, peer
            // first (the packets come from it). Else no flow (version 0).
            d(&mut a, R9, R7, layout.sk_dport, Size::H);
            a.jump_to(jump_imm(Cond::Eq, R9, 0, 0), "task");
            a.push([store(Size::H, R10, k(K_PORTS), R9)]);
            d(&mut a, R9, R7, layout.sk_num, Size::H);
            a.push([
                to_be16(R9),
                store(Size::H, R10, k(K_PORTS + 2), R9),
                store_imm(Size::B, R10, k(K_PROTO), 17),
                store_imm(Size::B, R10, k(K_HAS_PORTS), 1),
            ]);
            d(&mut a, R9, R7, layout.sk_family, Size::H);
            a.jump_to(jump_imm(Cond::Eq, R9, AF_INET6, 0), "sock6");
            a.jump_to(jump_imm(Cond::Ne, R9, AF_INET, 0), "out");
            d(&mut a, R9, R7, layout.sk_daddr, Size::W);
            a.push([store(Size::W, R10, k(K_SRC), R9)]);
            d(&mut a, R9, R7, layout.sk_rcv_saddr, Size::W);
            a.push([
                store(Size::W, R10, k(K_DST), R9),
                store_imm(Size::B, R10, k(K_VERSION), 4),
            ]);
            a.jump_to(ja(0), "task");
            a.label("sock6");
            // Typed fields: two 8-byte loads each.
            for (off, to) in [(layout.sk_v6_daddr, K_SRC), (layout.sk_v6_rcv_saddr, K_DST)] {
                for half in 0..2 {
                    d(&mut a, R9, R7, off + 8 * half, Size::DW);
                    a.push([store(Size::DW, R10, k(to) + 8 * half, R9)]);
                }
            }
            a.push([store_imm(Size::B, R10, k(K_VERSION), 6)]);
            Stage::Read
        }
    };
    a.label("task");
    a.push([store_imm(Size::B, R10, k(K_STAGE), stage as i32)]);
    if matches!(stage, Stage::Send | Stage::Read) {
        task(&mut a, layout, maps.names);
    }
    count(&mut a, maps);
    a.finish()
}

/// Checks the namespace whose `struct net *` is in r9 (0: out).
fn check_netns(a: &mut Asm, layout: &Layout, filter: &Filter) {
    use ebpf::*;
    use Reg::*;
    a.jump_to(jump_imm(Cond::Eq, R9, 0, 0), "out");
    deref(a, true, R9, R9, layout.net_inum, Size::W, DEREF);
    a.push([mov32_imm(R1, filter.netns as i32)]);
    a.jump_to(jump(Cond::Ne, R9, R1, 0), "out");
}

/// The current task into the key, when the event runs in a process's
/// own context: its process id (and, the first time, its process's
/// name into map `names`); else the context.
///
/// Whether it does: the kernel's preempt count would say (in_task()),
/// but its per-cpu `__preempt_count` is not reachable on kernels without
/// CONFIG_KALLSYMS_ALL (the load fails with ENOENT: the variable is in
/// BTF, not in kallsyms; 6.18 here). So the program looks at where it
/// runs: a program's frame is on the kernel stack of whatever called it,
/// and interrupts and softirqs run on the cpu's own interrupt stack
/// (x86-64, arm64; ksoftirqd and NAPI threads are kernel threads). The
/// frame within [`TASK_STACK`] above the current task's `stack`, and the
/// task no kernel thread: a process's own system call.
fn task(a: &mut Asm, layout: &Layout, names: i32) {
    use ebpf::*;
    use Reg::*;
    // A typed pointer to the current task (bpf_get_current_task_btf):
    // its fields are plain loads.
    a.push([call(helper::GET_CURRENT_TASK_BTF), mov(R9, R0)]);
    a.push([
        load(Size::DW, R1, R9, layout.task_stack),
        mov32(R2, R10),
        sub32(R2, R1),
    ]);
    a.jump_to(jump_imm(Cond::Ge, R2, TASK_STACK, 0), "not_task");
    a.push([
        load(Size::W, R1, R9, layout.task_flags),
        and_imm(R1, PF_KTHREAD),
    ]);
    a.jump_to(jump_imm(Cond::Ne, R1, 0, 0), "not_task");
    a.push([
        store_imm(Size::B, R10, k(K_CTX), i32::from(CTX_TASK)),
        call(helper::GET_CURRENT_PID_TGID),
        rsh_imm(R0, 32),
        store(Size::W, R10, k(K_PID), R0),
    ]);
    // The name, once per process: looked up, inserted when absent.
    a.push(load_map_fd(R1, names)).push([
        mov(R2, R10),
        add_imm(R2, k(K_PID).into()),
        call(helper::MAP_LOOKUP_ELEM),
    ]);
    a.jump_to(jump_imm(Cond::Ne, R0, 0, 0), "count");
    a.push([load(Size::DW, R1, R9, layout.task_group_leader)]);
    a.jump_to(jump_imm(Cond::Eq, R1, 0, 0), "count");
    for half in 0..2 {
        a.push([
            load(Size::DW, R2, R1, layout.task_comm + 8 * half),
            store(Size::DW, R10, SCRATCH + 8 * half, R2),
        ]);
    }
    // BPF_NOEXIST: a name another cpu put first stays; a full map leaves
    // the process unnamed (user space says so).
    a.push(load_map_fd(R1, names)).push([
        mov(R2, R10),
        add_imm(R2, k(K_PID).into()),
        mov(R3, R10),
        add_imm(R3, SCRATCH.into()),
        mov_imm(R4, 1),
        call(helper::MAP_UPDATE_ELEM),
    ]);
    a.jump_to(ja(0), "count");
    a.label("not_task")
        .push([store_imm(Size::B, R10, k(K_CTX), i32::from(CTX_IRQ))]);
}

/// Adds one to this cpu's count of the key: in its slot when the slot
/// holds it, or once it is free (a slot holding another key first moves
/// that key's count to the hash map); in the hash map when another
/// program on this cpu is working on the slot.
fn count(a: &mut Asm, maps: Maps) {
    use ebpf::*;
    use Reg::*;
    let words = KEY_SIZE as i16 / 8;
    let count_at = SLOT_COUNT as i16;
    a.label("count");
    // The slot: the key's words folded into one and mixed with
    // MurmurHash3's finalizer (fmix64: every bit of the word moves every
    // bit of the result; a bare multiplication leaves the ports, in the
    // middle of a word, crowding a few slots), its top bits, in this
    // cpu's part of the array.
    a.push([load(Size::DW, R1, R10, KEY)]);
    for i in 1..words {
        a.push([load(Size::DW, R2, R10, KEY + 8 * i), xor(R1, R2)]);
    }
    let fold = [mov(R2, R1), rsh_imm(R2, 33), xor(R1, R2)];
    a.push(fold);
    a.push(mov64_imm(R2, 0xff51_afd7_ed55_8ccd))
        .push([mul(R1, R2)]);
    a.push(fold);
    a.push(mov64_imm(R2, 0xc4ce_b9fe_1a85_ec53))
        .push([mul(R1, R2)]);
    a.push(fold);
    a.push([
        rsh_imm(R1, 64 - SLOT_BITS as i32),
        mov(R6, R1),
        call(helper::GET_SMP_PROCESSOR_ID),
        lsh_imm(R0, SLOT_BITS as i32),
        or(R0, R6),
        store(Size::W, R10, INDEX, R0),
    ]);
    a.push(load_map_fd(R1, maps.slots)).push([
        mov(R2, R10),
        add_imm(R2, INDEX.into()),
        call(helper::MAP_LOOKUP_ELEM),
    ]);
    a.jump_to(jump_imm(Cond::Eq, R0, 0, 0), "hash");
    a.push([load(Size::DW, R1, R0, SLOT_BUSY)]);
    a.jump_to(jump_imm(Cond::Ne, R1, 0, 0), "hash");
    // A program that interrupts this one from here on finds the flag
    // set; one that interrupted it before has finished.
    a.push([store_imm(Size::DW, R0, SLOT_BUSY, 1)]);
    a.push([mov(R8, R0)]);
    for i in 0..words {
        a.push([
            load(Size::DW, R1, R8, 8 * i),
            load(Size::DW, R2, R10, KEY + 8 * i),
        ]);
        a.jump_to(jump(Cond::Ne, R1, R2, 0), "other");
    }
    a.push([
        load(Size::DW, R1, R8, count_at),
        add_imm(R1, 1),
        store(Size::DW, R8, count_at, R1),
    ]);
    a.jump_to(ja(0), "release");
    // Another key in the slot (or none: count 0): its count to the hash
    // map, key and count passed straight from the slot.
    a.label("other");
    a.push([load(Size::DW, R1, R8, count_at)]);
    a.jump_to(jump_imm(Cond::Eq, R1, 0, 0), "take");
    a.push([mov(R7, R8), add_imm(R7, count_at.into())]);
    add_to_hash(a, maps, ["add_slot", "insert_slot"], "take");
    a.label("take");
    for i in 0..words {
        a.push([
            load(Size::DW, R1, R10, KEY + 8 * i),
            store(Size::DW, R8, 8 * i, R1),
        ]);
    }
    a.push([store_imm(Size::DW, R8, count_at, 1)]);
    a.label("release")
        .push([store_imm(Size::DW, R8, SLOT_BUSY, 0)]);
    a.jump_to(ja(0), "out");
    // The hash map directly: the key on the stack, a count of one.
    a.label("hash").push([
        store_imm(Size::DW, R10, ONE, 1),
        mov(R8, R10),
        add_imm(R8, KEY.into()),
        mov(R7, R10),
        add_imm(R7, ONE.into()),
    ]);
    add_to_hash(a, maps, ["add", "insert"], "out");
    a.label("out").push([mov_imm(R0, 0), exit()]);
}

/// Adds the count at r7 to the hash map's entry for the key at r8
/// (inserting it when new; into `missed` when the full map cannot take
/// it), then goes to `then`. `labels` are this use's own.
fn add_to_hash(a: &mut Asm, maps: Maps, labels: [&'static str; 2], then: &'static str) {
    use ebpf::*;
    use Reg::*;
    let [add, insert] = labels;
    let lookup = |a: &mut Asm| {
        a.push(load_map_fd(R1, maps.counts))
            .push([mov(R2, R8), call(helper::MAP_LOOKUP_ELEM)]);
    };
    lookup(a);
    a.jump_to(jump_imm(Cond::Eq, R0, 0, 0), insert);
    a.label(add)
        .push([load(Size::DW, R1, R7, 0), atomic_add(Size::DW, R0, 0, R1)]);
    a.jump_to(ja(0), then);
    // BPF_NOEXIST: another cpu may have made the key meanwhile (its
    // program's insert wins, this one looks it up again).
    a.label(insert).push(load_map_fd(R1, maps.counts)).push([
        mov(R2, R8),
        mov(R3, R7),
        mov_imm(R4, 1),
        call(helper::MAP_UPDATE_ELEM),
    ]);
    a.jump_to(jump_imm(Cond::Eq, R0, 0, 0), then);
    lookup(a);
    a.jump_to(jump_imm(Cond::Ne, R0, 0, 0), add);
    a.push(load_map_value(R0, maps.missed, 0))
        .push([load(Size::DW, R1, R7, 0), atomic_add(Size::DW, R0, 0, R1)]);
    a.jump_to(ja(0), then);
}
