//! The XDP vantage point: received frames counted (and, when wanted,
//! copied out) by an eBPF program at the interface's XDP hook, per cpu,
//! where the driver delivers them.
//!
//! What each mode sees (verified on Linux 6.18 with a veth pair whose
//! receiving end has rps_cpus naming only cpu1, sender pinned to cpu0):
//!
//! - native (driver) mode runs in the driver's receive, before RPS and
//!   RFS: on veth, veth's NAPI poll on the cpu that transmitted into the
//!   peer (cpu0), while AF_PACKET sees the same frames on cpu1.
//! - generic (skb) mode runs in __netif_receive_skb_core, after RPS moved
//!   the packet: it sees the frames on cpu1, like AF_PACKET. It is the
//!   fallback for drivers without native XDP, not a view before RPS.
//!
//! Native XDP runs in the NAPI poll of the receive queue, on the cpu that
//! scheduled that poll. On veth the poll is scheduled by the first cpu to
//! transmit into an idle queue, and frames other cpus transmit meanwhile
//! join the same poll: with one queue, a flood from cpu0 and cpu1 was seen
//! 398611/1389 (AF_PACKET, with the program attached, agrees exactly, as
//! RPS is then applied after that poll). A veth with one queue per cpu and
//! XPS on the sender (cpu c on tx-c, which veth maps to rx queue c) keeps
//! each sender's frames on its own cpu. Without XDP, veth hands frames to
//! the transmitting cpu's backlog, so generic mode stays per sending cpu.
//! The rx queue a record carries is veth's queue in native mode; generic
//! mode on veth reports queue 0 (veth records no rx queue on that path).
//!
//! The program ([`program`]) returns XDP_PASS for every frame: the traffic
//! is never changed. It counts in a per-cpu array map (exact, no atomics,
//! read at the end), only while user space has the window open, only on the
//! selected cpus (and queues); with a snap length it also writes each frame
//! (a small header, then the first snaplen bytes) to the current cpu's
//! perf event ring ([`crate::sys::perf`]), counting per cpu the records that did
//! not fit. With `-c N` a shared budget caps the total at exactly N.
//!
//! The program is attached with a BPF link (BPF_LINK_CREATE), so the kernel
//! detaches it when the process ends, however it ends. An interface that
//! already has an XDP program is refused and left alone.

use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::cpuset::CpuSet;
use crate::error::Why;
use crate::options::XdpMode;
use crate::packet::Packet;
use crate::sys::bpf::{
    self, Link, LoadOptions, Map, MapMemory, MapType, ProgType, Program, BPF_F_MMAPABLE,
    BPF_F_XDP_HAS_FRAGS, BPF_XDP,
};
use crate::sys::ebpf::{self, helper, xdp_md, Asm, Cond, Insn, Reg, Size};
use crate::sys::host::{self, clock_ns, Clock};
use crate::sys::netlink;
use crate::sys::perf::{self, PerfRing, ReadStats, Record, Wakeup};

/// XDP_FLAGS_SKB_MODE / XDP_FLAGS_DRV_MODE (<linux/if_link.h>).
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_PASS: i32 = 2;
/// BPF_RB_FORCE_WAKEUP: wake the ring buffer's poller for this record.
const BPF_RB_FORCE_WAKEUP: i32 = 2;

/// The largest snap length a record can carry: the perf record header's
/// size is a u16, and the record also holds its 8-byte header, the raw
/// size word, [`META_LEN`] bytes of metadata and up to 7 bytes of padding.
pub const MAX_SNAPLEN: u32 = (perf::MAX_RECORD - 8 - 4 - META_LEN - 7) as u32 & !7;

/// The hook the program is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Native,
    Generic,
}

impl Hook {
    fn flags(self) -> u32 {
        match self {
            Hook::Native => XDP_FLAGS_DRV_MODE,
            Hook::Generic => XDP_FLAGS_SKB_MODE,
        }
    }

    /// For -v: the mode and the view it gives.
    pub fn describe(self) -> &'static str {
        match self {
            Hook::Native => {
                "native (driver) mode: frames as the driver received them, before RPS/RFS"
            }
            Hook::Generic => {
                "generic (skb) mode: frames in the core receive path, after RPS/RFS moved them"
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Native => "native",
            Hook::Generic => "generic",
        }
    }
}

/// What to capture.
#[derive(Clone, Debug)]
pub struct Options {
    pub mode: XdpMode,
    /// The cpus captured (selected and online); frames on other cpus are
    /// neither counted nor copied.
    pub cpus: CpuSet,
    /// Counts are kept per receive queue for queues 0..queues; frames of
    /// higher queues share one more slot. 0: no per-queue counts.
    pub queues: u32,
    /// Only these receive queues are captured (None: all).
    pub queue_list: Option<CpuSet>,
    /// Some: copy frames out, cut to this many bytes (at most
    /// [`MAX_SNAPLEN`]); None: count only.
    pub snaplen: Option<u32>,
    /// Bytes of perf ring per captured cpu (rounded down to a power of two
    /// pages, see [`perf::data_bytes_for`]).
    pub ring_bytes: usize,
    pub wakeup: Wakeup,
    /// Stop after exactly this many frames in total (0: no limit).
    pub count: u64,
}

impl Options {
    /// Count-only capture of `cpus` in `mode`.
    pub fn new(mode: XdpMode, cpus: CpuSet) -> Options {
        Options {
            mode,
            cpus,
            queues: 0,
            queue_list: None,
            snaplen: None,
            ring_bytes: 8 << 20,
            wakeup: Wakeup::Bytes(64 * 1024),
            count: 0,
        }
    }
}

/// Why the capture could not be set up. Messages are `<what>: <why>`.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("{what}: {why} (the XDP capture needs root, or CAP_BPF and CAP_NET_ADMIN{perfmon})")]
    Permission {
        what: String,
        why: Why,
        /// ", and CAP_PERFMON for the packets (-w)" where it applies.
        perfmon: &'static str,
    },
    #[error("interface '{ifname}' already has an XDP program{id}; rxtxcpu leaves it alone")]
    Busy { ifname: String, id: String },
    #[error(
        "interface '{ifname}' does not support native XDP: its driver has no XDP hook (try --xdp=generic)"
    )]
    NoNative { ifname: String },
    #[error("error loading the XDP program: {why}{log}")]
    Load { why: Why, log: String },
    #[error("{what}: {why}{hint}")]
    Os {
        what: String,
        why: Why,
        hint: &'static str,
    },
}

impl From<XdpError> for crate::error::Error {
    fn from(e: XdpError) -> crate::error::Error {
        crate::error::Error::Message(e.to_string())
    }
}

fn is_permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

fn os_error(what: impl Into<String>, e: io::Error, perfmon: &'static str) -> XdpError {
    if is_permission(&e) {
        XdpError::Permission {
            what: what.into(),
            why: Why(e),
            perfmon,
        }
    } else {
        XdpError::Os {
            what: what.into(),
            why: Why(e),
            hint: "",
        }
    }
}

// The config map: one mmapable array value that user space and the
// program share. Offsets in it:
/// u32: nonzero while the window is open.
const CFG_ENABLED: i16 = 0;
/// u32: bytes of each frame to copy (capture programs only).
const CFG_SNAPLEN: i16 = 4;
/// u64: the -c budget, 0 for none.
const CFG_BUDGET: i16 = 8;
/// u32: the highest count slot (frames of higher queues go there).
const CFG_LAST_SLOT: i16 = 16;
/// u64: budget slots taken (a slot is given back when its record is lost);
/// on a cache line of its own with CFG_DONE: the words every cpu writes.
const CFG_TAKEN: i16 = 64;
/// u64: frames captured under the budget; the one that makes it reach the
/// budget signals the end.
const CFG_DONE: i16 = 72;
const CFG_SIZE: u32 = 80;

// The counts map: per-cpu values, one key per queue slot.
/// u64: nonzero when this cpu and slot are captured (set by user space).
const CNT_SELECTED: i16 = 0;
const CNT_PACKETS: i16 = 8;
const CNT_BYTES: i16 = 16;
/// u64: records that did not fit in the perf ring.
const CNT_LOST: i16 = 24;
const CNT_SIZE: usize = 32;

// The record's header (the raw sample's first bytes), on the program's
// stack at META:
/// u64 bpf_ktime_get_ns(): CLOCK_MONOTONIC.
const META_TIME: usize = 0;
/// u32: the frame's length.
const META_LEN_OFF: usize = 8;
/// u32: the bytes that follow the header.
const META_CAPLEN: usize = 12;
/// u32: xdp_md.rx_queue_index.
const META_QUEUE: usize = 16;
/// u32: xdp_md.ingress_ifindex.
const META_IFINDEX: usize = 20;
pub const META_LEN: usize = 24;
/// Stack offsets: the map key, then the record header.
const STACK_KEY: i16 = -4;
const STACK_META: i16 = -32;

/// The maps a program refers to, by descriptor.
#[derive(Clone, Copy, Debug)]
pub struct ProgramMaps {
    pub config: i32,
    pub counts: i32,
    /// The perf event array: Some for a capture that copies frames.
    pub perf: Option<i32>,
    /// The ring buffer that signals the end of a -c budget.
    pub done: i32,
}

/// The XDP program. Registers: r6 the context, r7 the config value, r8
/// this cpu's count slot, r9 whether a budget slot was taken. Per frame it
/// costs two inlined array lookups and a helper call for the length;
/// copying adds bpf_ktime_get_ns and bpf_perf_event_output; a budget adds
/// two atomic adds on a shared word.
pub fn program(maps: ProgramMaps) -> Vec<Insn> {
    use ebpf::{
        add, add_imm, atomic_add, atomic_fetch_add, call, exit, ja, jump, jump_imm, load,
        load_map_fd, load_map_value, lsh_imm, mov, mov32_imm, mov_imm, store, store_imm,
    };
    use Reg::*;
    let meta = |field: usize| STACK_META + field as i16;
    let mut a = Asm::new();
    a.push([mov(R6, R1)])
        .push(load_map_value(R7, maps.config, 0));
    // Nothing before start() or after stop().
    a.push([load(Size::W, R1, R7, CFG_ENABLED)])
        .jump_to(jump_imm(Cond::Eq, R1, 0, 0), "pass");
    // key = min(rx_queue_index, last slot)
    a.push([
        load(Size::W, R2, R6, xdp_md::RX_QUEUE_INDEX),
        load(Size::W, R3, R7, CFG_LAST_SLOT),
        jump(Cond::Ge, R3, R2, 1),
        mov(R2, R3),
        store(Size::W, R10, STACK_KEY, R2),
    ]);
    a.push(load_map_fd(R1, maps.counts)).push([
        mov(R2, R10),
        add_imm(R2, i32::from(STACK_KEY)),
        call(helper::MAP_LOOKUP_ELEM),
    ]);
    a.jump_to(jump_imm(Cond::Eq, R0, 0, 0), "pass");
    a.push([mov(R8, R0), load(Size::DW, R1, R8, CNT_SELECTED)])
        .jump_to(jump_imm(Cond::Eq, R1, 0, 0), "pass");
    // The budget: take a slot; when none is left, undo the increment (so a
    // slot given back below is really free again) and let the frame pass.
    a.push([mov_imm(R9, 0), load(Size::DW, R1, R7, CFG_BUDGET)])
        .jump_to(jump_imm(Cond::Eq, R1, 0, 0), "take");
    a.push([
        mov_imm(R2, 1),
        atomic_fetch_add(Size::DW, R7, CFG_TAKEN, R2),
    ])
    .jump_to(jump(Cond::Gt, R1, R2, 0), "took");
    a.push([mov_imm(R2, -1), atomic_add(Size::DW, R7, CFG_TAKEN, R2)])
        .jump_to(ja(0), "pass");
    a.label("took").push([mov_imm(R9, 1)]);
    a.label("take");
    a.push([
        mov(R1, R6),
        call(helper::XDP_GET_BUFF_LEN),
        store(Size::W, R10, meta(META_LEN_OFF), R0),
    ]);
    if let Some(perf_fd) = maps.perf {
        a.push([
            call(helper::KTIME_GET_NS),
            store(Size::DW, R10, meta(META_TIME), R0),
            load(Size::W, R1, R6, xdp_md::RX_QUEUE_INDEX),
            store(Size::W, R10, meta(META_QUEUE), R1),
            load(Size::W, R1, R6, xdp_md::INGRESS_IFINDEX),
            store(Size::W, R10, meta(META_IFINDEX), R1),
            // caplen = min(len, snaplen)
            load(Size::W, R2, R7, CFG_SNAPLEN),
            load(Size::W, R1, R10, meta(META_LEN_OFF)),
            jump(Cond::Ge, R1, R2, 1),
            mov(R2, R1),
            store(Size::W, R10, meta(META_CAPLEN), R2),
            // flags = caplen << 32 | BPF_F_CURRENT_CPU: the frame's first
            // caplen bytes follow the header, in this cpu's ring.
            lsh_imm(R2, 32),
            mov32_imm(R3, -1),
            add(R3, R2),
            mov(R1, R6),
        ])
        .push(load_map_fd(R2, perf_fd))
        .push([
            mov(R4, R10),
            add_imm(R4, i32::from(STACK_META)),
            mov_imm(R5, META_LEN as i32),
            call(helper::PERF_EVENT_OUTPUT),
        ])
        .jump_to(jump_imm(Cond::Eq, R0, 0, 0), "count");
        // The ring was full: count the loss, give the budget slot back.
        a.push([
            load(Size::DW, R1, R8, CNT_LOST),
            add_imm(R1, 1),
            store(Size::DW, R8, CNT_LOST, R1),
        ])
        .jump_to(jump_imm(Cond::Eq, R9, 0, 0), "pass");
        a.push([mov_imm(R2, -1), atomic_add(Size::DW, R7, CFG_TAKEN, R2)])
            .jump_to(ja(0), "pass");
    }
    a.label("count").push([
        load(Size::DW, R1, R8, CNT_PACKETS),
        add_imm(R1, 1),
        store(Size::DW, R8, CNT_PACKETS, R1),
        load(Size::DW, R1, R8, CNT_BYTES),
        load(Size::W, R2, R10, meta(META_LEN_OFF)),
        add(R1, R2),
        store(Size::DW, R8, CNT_BYTES, R1),
    ]);
    // The frame that completes the budget wakes user space.
    a.jump_to(jump_imm(Cond::Eq, R9, 0, 0), "pass").push([
        mov_imm(R2, 1),
        atomic_fetch_add(Size::DW, R7, CFG_DONE, R2),
        load(Size::DW, R1, R7, CFG_BUDGET),
        add_imm(R1, -1),
    ]);
    a.jump_to(jump(Cond::Ne, R2, R1, 0), "pass");
    a.push([store_imm(Size::DW, R10, meta(META_TIME), 0)])
        .push(load_map_fd(R1, maps.done))
        .push([
            mov(R2, R10),
            add_imm(R2, i32::from(STACK_META)),
            mov_imm(R3, 8),
            mov_imm(R4, BPF_RB_FORCE_WAKEUP),
            call(helper::RINGBUF_OUTPUT),
        ]);
    a.label("pass").push([mov_imm(R0, XDP_PASS), exit()]);
    a.finish()
}

/// CLOCK_REALTIME minus CLOCK_MONOTONIC, to turn bpf_ktime_get_ns() into
/// wall-clock time. Both clocks run at the same (NTP-slewed) rate, so the
/// offset holds until someone steps the wall clock.
#[derive(Debug, Default)]
pub struct WallClock {
    offset_ns: AtomicI64,
}

impl WallClock {
    /// Measures the offset: of a few (monotonic, realtime, monotonic)
    /// readings it takes the one with the shortest bracket, the realtime
    /// reading paired with the bracket's middle (the error is below half
    /// the bracket, typically tens of nanoseconds with the vDSO).
    pub fn calibrate(&self) {
        let mut best = (i64::MAX, 0);
        for _ in 0..8 {
            let a = clock_ns(Clock::Monotonic);
            let r = clock_ns(Clock::Realtime);
            let b = clock_ns(Clock::Monotonic);
            if b - a < best.0 {
                best = (b - a, r - (a + (b - a) / 2));
            }
        }
        self.offset_ns.store(best.1, Ordering::Release);
    }

    pub fn offset_ns(&self) -> i64 {
        self.offset_ns.load(Ordering::Acquire)
    }

    /// Wall-clock (sec, nsec) of a CLOCK_MONOTONIC time.
    pub fn to_wall(&self, monotonic_ns: u64) -> (u32, u32) {
        let t = monotonic_ns as i64 + self.offset_ns();
        (
            t.div_euclid(1_000_000_000) as u32,
            t.rem_euclid(1_000_000_000) as u32,
        )
    }
}

/// One frame as the program recorded it.
#[derive(Clone, Copy, Debug)]
pub struct XdpRecord<'a> {
    /// The cpu whose ring it came from: where the XDP program ran.
    pub cpu: u32,
    /// bpf_ktime_get_ns() when the program ran (CLOCK_MONOTONIC).
    pub monotonic_ns: u64,
    /// The same instant in wall-clock time.
    pub sec: u32,
    pub nsec: u32,
    /// The frame's length (all fragments).
    pub len: u32,
    /// The receive queue (xdp_md.rx_queue_index).
    pub queue: u32,
    pub ifindex: u32,
    /// The frame's first min(len, snaplen) bytes, from the link header.
    pub data: &'a [u8],
}

impl<'a> XdpRecord<'a> {
    /// Parses a raw sample: the header, then the bytes.
    pub fn parse(cpu: u32, raw: &'a [u8], clock: &WallClock) -> Option<XdpRecord<'a>> {
        let u32_at = |o: usize| {
            raw.get(o..o + 4)
                .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
        };
        let monotonic_ns = u64::from_ne_bytes(raw.get(META_TIME..META_TIME + 8)?.try_into().ok()?);
        let caplen = u32_at(META_CAPLEN)? as usize;
        let (sec, nsec) = clock.to_wall(monotonic_ns);
        Some(XdpRecord {
            cpu,
            monotonic_ns,
            sec,
            nsec,
            len: u32_at(META_LEN_OFF)?,
            queue: u32_at(META_QUEUE)?,
            ifindex: u32_at(META_IFINDEX)?,
            data: raw.get(META_LEN..META_LEN + caplen)?,
        })
    }

    /// The record as a [`Packet`] for [`crate::consumers::files::PcapOutput`], for
    /// an interface of hardware type `hatype` (ARPHRD_*). XDP knows no
    /// packet type: broadcast and multicast frames say so, the rest are
    /// PACKET_HOST. A VLAN tag the device stripped is not seen.
    pub fn packet(&self, hatype: u16) -> Packet<'a> {
        const PACKET_BROADCAST: u8 = 1;
        const PACKET_MULTICAST: u8 = 2;
        let d = self.data;
        let ether = hatype == crate::packet::ARPHRD_ETHER && d.len() >= 14;
        let mut addr = [0u8; 8];
        let (pkttype, protocol, net_offset, halen) = if ether {
            addr[..6].copy_from_slice(&d[6..12]);
            let pkttype = if d[..6] == [0xff; 6] {
                PACKET_BROADCAST
            } else if d[0] & 1 != 0 {
                PACKET_MULTICAST
            } else {
                0
            };
            (pkttype, u16::from_ne_bytes([d[12], d[13]]), 14, 6)
        } else {
            // Headerless (tun): the IP version says the protocol.
            let proto: u16 = match d.first().map(|b| b >> 4) {
                Some(6) => 0x86dd,
                _ => 0x0800,
            };
            (0, u16::from_ne_bytes(proto.to_be_bytes()), 0, 0)
        };
        Packet {
            sec: self.sec,
            nsec: self.nsec,
            len: self.len,
            data: d,
            net_offset,
            ifindex: self.ifindex as i32,
            hatype,
            pkttype,
            protocol,
            halen,
            addr,
            vlan: None,
            // XDP has no skb, so no kernel flow hash.
            hash: 0,
        }
    }
}

/// One captured cpu's stream of records.
pub struct PerfReader {
    ring: PerfRing,
    clock: Arc<WallClock>,
    malformed: u64,
}

impl PerfReader {
    pub fn cpu(&self) -> u32 {
        self.ring.cpu()
    }

    /// To poll for POLLIN (records past the wakeup mark; poll with a
    /// timeout to see a trickle below it).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.ring.fd()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Samples the reader could not parse (never expected).
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Hands the records written so far to `f`, in the order the cpu
    /// produced them; stops early when `f` breaks. `lost` in the result
    /// counts PERF_RECORD_LOST reports, which repeat (later) what the
    /// program's own lost count says: report the latter.
    pub fn read(&mut self, mut f: impl FnMut(XdpRecord<'_>) -> ControlFlow<()>) -> ReadStats {
        let cpu = self.ring.cpu();
        let clock = &*self.clock;
        let malformed = &mut self.malformed;
        self.ring.read(|rec| match rec {
            Record::Sample(raw) => match XdpRecord::parse(cpu, raw, clock) {
                Some(r) => f(r),
                None => {
                    *malformed += 1;
                    ControlFlow::Continue(())
                }
            },
            Record::Lost(_) => ControlFlow::Continue(()),
        })
    }
}

/// Per-cpu, per-slot counters as the program kept them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Frames counted (with a snap length: recorded in the ring).
    pub packets: u64,
    pub bytes: u64,
    /// Frames whose record did not fit in the ring.
    pub lost: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.lost += o.lost;
    }
}

/// Every counter of a capture.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// The possible cpus, in the order of each slot's tallies.
    cpus: Vec<u32>,
    /// slots[slot][i]: cpu cpus[i]'s tally for queue slot `slot`.
    slots: Vec<Vec<Tally>>,
}

impl Counts {
    /// Cpu `cpu`'s frames, all queues.
    pub fn cpu(&self, cpu: u32) -> Tally {
        let mut t = Tally::default();
        if let Some(i) = self.cpus.iter().position(|&c| c == cpu) {
            for s in &self.slots {
                t += s[i];
            }
        }
        t
    }

    /// Queue `queue`'s frames, all cpus; queues at or above the `queues`
    /// the capture was set up with are [`Counts::other_queues`].
    pub fn queue(&self, queue: u32) -> Tally {
        match self.slots.get(queue as usize) {
            Some(s) if queue as usize + 1 < self.slots.len() => Self::sum(s),
            _ => Tally::default(),
        }
    }

    /// Frames of queues beyond the per-queue slots (all frames when the
    /// capture kept no per-queue counts).
    pub fn other_queues(&self) -> Tally {
        self.slots.last().map(|s| Self::sum(s)).unwrap_or_default()
    }

    pub fn total(&self) -> Tally {
        let mut t = Tally::default();
        for s in &self.slots {
            t += Self::sum(s);
        }
        t
    }

    fn sum(s: &[Tally]) -> Tally {
        let mut t = Tally::default();
        for x in s {
            t += *x;
        }
        t
    }
}

/// An XDP capture on one interface: program, maps, perf rings, link.
/// Dropping it detaches the program (closing the link), as does the
/// process's end.
pub struct XdpCapture {
    ifindex: u32,
    hook: Hook,
    link: Link,
    prog: Program,
    config: MapMemory,
    counts: Map,
    slots: u32,
    possible: Vec<u32>,
    captured: CpuSet,
    done: Map,
    readers: Vec<PerfReader>,
    clock: Arc<WallClock>,
    // Kept open for the program's lifetime (it refers to them).
    _config_map: Map,
    _perf_map: Option<Map>,
}

impl XdpCapture {
    /// Sets the capture up on interface `ifindex` of the calling thread's
    /// network namespace and attaches the program; nothing is counted
    /// until [`XdpCapture::start`].
    pub fn attach(ifindex: u32, opts: &Options) -> Result<XdpCapture, XdpError> {
        let ifname = crate::sys::afpacket::ifname(ifindex).unwrap_or_else(|| format!("#{ifindex}"));
        let perfmon = if opts.snaplen.is_some() {
            ", and CAP_PERFMON to copy packets out"
        } else {
            ""
        };
        let possible: Vec<u32> = bpf::possible_cpus()
            .map_err(|e| os_error("error reading the possible cpus", e, ""))?
            .iter()
            .collect();
        let n_possible = possible.len();
        let highest = possible.iter().copied().max().unwrap_or(0);
        let map_error = |what: &str, e| os_error(format!("error creating the {what} map"), e, "");

        let config_map = Map::create(
            MapType::Array,
            "rxtxcpu_cfg",
            4,
            CFG_SIZE,
            1,
            BPF_F_MMAPABLE,
        )
        .map_err(|e| map_error("XDP config", e))?;
        let config = config_map
            .mmap(page_round(CFG_SIZE as usize))
            .map_err(|e| os_error("error mapping the XDP config map", e, ""))?;
        let slots = opts.queues + 1;
        let counts = Map::create(
            MapType::PercpuArray,
            "rxtxcpu_counts",
            4,
            CNT_SIZE as u32,
            slots,
            0,
        )
        .map_err(|e| map_error("XDP counter", e))?;
        let done = Map::create(
            MapType::RingBuf,
            "rxtxcpu_done",
            0,
            0,
            page_round(1) as u32,
            0,
        )
        .map_err(|e| map_error("XDP signal", e))?;

        // Rings first: the program may only write to cpus that have one,
        // and a ring that cannot be had is better known before attaching.
        let clock = Arc::new(WallClock::default());
        clock.calibrate();
        let mut readers = Vec::new();
        let perf_map = match opts.snaplen {
            None => None,
            Some(_) => {
                let map = Map::create(
                    MapType::PerfEventArray,
                    "rxtxcpu_perf",
                    4,
                    4,
                    highest + 1,
                    0,
                )
                .map_err(|e| map_error("perf event array", e))?;
                let bytes = perf::data_bytes_for(opts.ring_bytes);
                for cpu in opts.cpus.iter() {
                    let ring = PerfRing::open(cpu, bytes, opts.wakeup)
                        .map_err(|e| ring_error(cpu, bytes, e))?;
                    map.update(
                        &cpu.to_ne_bytes(),
                        &(ring.as_raw_fd() as u32).to_ne_bytes(),
                        0,
                    )
                    .map_err(|e| {
                        os_error(format!("error adding cpu{cpu}'s perf buffer"), e, perfmon)
                    })?;
                    readers.push(PerfReader {
                        ring,
                        clock: clock.clone(),
                        malformed: 0,
                    });
                }
                Some(map)
            }
        };

        // Which (cpu, slot) pairs count: one per-cpu value array per slot.
        for slot in 0..slots {
            let queue_ok = match &opts.queue_list {
                None => true,
                Some(list) => slot < opts.queues && list.contains(slot),
            };
            let mut values = vec![0u8; CNT_SIZE * n_possible];
            for (i, cpu) in possible.iter().enumerate() {
                if queue_ok && opts.cpus.contains(*cpu) {
                    values[i * CNT_SIZE..i * CNT_SIZE + 8].copy_from_slice(&1u64.to_ne_bytes());
                }
            }
            counts
                .update(&slot.to_ne_bytes(), &values, 0)
                .map_err(|e| os_error("error setting up the XDP counters", e, ""))?;
        }
        let snaplen = opts.snaplen.unwrap_or(0).min(MAX_SNAPLEN);
        config
            .u32_at(CFG_SNAPLEN as usize)
            .store(snaplen, Ordering::Relaxed);
        config
            .u64_at(CFG_BUDGET as usize)
            .store(opts.count, Ordering::Relaxed);
        config
            .u32_at(CFG_LAST_SLOT as usize)
            .store(slots - 1, Ordering::Relaxed);

        let insns = program(ProgramMaps {
            config: config_map.as_raw_fd(),
            counts: counts.as_raw_fd(),
            perf: perf_map.as_ref().map(|m| m.as_raw_fd()),
            done: done.as_raw_fd(),
        });
        let prog = Program::load_with(
            ProgType::Xdp,
            "rxtxcpu_xdp",
            &insns,
            LoadOptions {
                expected_attach_type: BPF_XDP,
                prog_flags: BPF_F_XDP_HAS_FRAGS,
                ..LoadOptions::default()
            },
        )
        .map_err(|e| load_error(e, perfmon))?;

        let (hook, link) = attach_link(&prog, ifindex, opts.mode, &ifname, perfmon)?;
        Ok(XdpCapture {
            ifindex,
            hook,
            link,
            prog,
            config,
            counts,
            slots,
            possible,
            captured: opts.cpus.clone(),
            done,
            readers,
            clock,
            _config_map: config_map,
            _perf_map: perf_map,
        })
    }

    /// The hook the program went to (for `auto`: native if the driver has
    /// it).
    pub fn hook(&self) -> Hook {
        self.hook
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The program's id (as `ip link` shows it) and the link's.
    pub fn ids(&self) -> io::Result<(u32, u32)> {
        let (link, _) = self.link.ids()?;
        Ok((self.prog.id()?, link))
    }

    /// Whether the program is still attached: false once the interface is
    /// gone (deleted, or moved to another namespace), which nothing else
    /// reports (a link cannot be polled): check it at each wakeup.
    pub fn is_attached(&self) -> bool {
        self.link.xdp_ifindex().is_ok_and(|i| i != 0)
    }

    /// The captured cpus' readers (with a snap length; empty otherwise),
    /// in cpu order, to move to their worker threads. Once only.
    pub fn take_readers(&mut self) -> Vec<PerfReader> {
        std::mem::take(&mut self.readers)
    }

    /// Opens the window: frames from now on are captured. The clock offset
    /// is measured afresh. When this returns every cpu sees the window
    /// open (an RCU grace period passed since).
    pub fn start(&self) -> io::Result<()> {
        self.clock.calibrate();
        self.config
            .u32_at(CFG_ENABLED as usize)
            .store(1, Ordering::SeqCst);
        quiesce(&self.captured)
    }

    /// Closes the window and waits until no program run that saw it open is
    /// still going: afterwards the counters are final and every record is
    /// in its ring, for the readers to drain until empty.
    pub fn stop(&self) -> io::Result<()> {
        self.config
            .u32_at(CFG_ENABLED as usize)
            .store(0, Ordering::SeqCst);
        quiesce(&self.captured)
    }

    /// Readable (POLLIN) once the `-c` budget is reached: the frame that
    /// completed it has been counted (and recorded). Other cpus may still
    /// be finishing frames within the budget: call [`XdpCapture::stop`]
    /// before the final drain.
    pub fn done_fd(&self) -> BorrowedFd<'_> {
        self.done.as_fd()
    }

    /// Whether the budget has been reached (polls [`XdpCapture::done_fd`]).
    pub fn is_done(&self) -> bool {
        let mut fds = [nix::poll::PollFd::new(
            self.done.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// The counters now (exact after [`XdpCapture::stop`]).
    pub fn counts(&self) -> io::Result<Counts> {
        let n = self.possible.len();
        let mut slots = Vec::with_capacity(self.slots as usize);
        let mut buf = vec![0u8; CNT_SIZE * n];
        for slot in 0..self.slots {
            self.counts.lookup(&slot.to_ne_bytes(), &mut buf)?;
            let at = |i: usize, f: i16| {
                let o = i * CNT_SIZE + f as usize;
                u64::from_ne_bytes(buf[o..o + 8].try_into().unwrap_or([0; 8]))
            };
            slots.push(
                (0..n)
                    .map(|i| Tally {
                        packets: at(i, CNT_PACKETS),
                        bytes: at(i, CNT_BYTES),
                        lost: at(i, CNT_LOST),
                    })
                    .collect(),
            );
        }
        Ok(Counts {
            cpus: self.possible.clone(),
            slots,
        })
    }

    /// The wall clock the readers convert with.
    pub fn clock(&self) -> &WallClock {
        &self.clock
    }
}

fn page_round(n: usize) -> usize {
    let page = host::page_size();
    n.div_ceil(page).max(1) * page
}

fn ring_error(cpu: u32, bytes: usize, e: perf::OpenError) -> XdpError {
    let what = format!("error opening the perf buffer of cpu{cpu}");
    match e {
        perf::OpenError::Event(e) if is_permission(&e) => XdpError::Permission {
            what,
            why: Why(e),
            perfmon: ", and CAP_PERFMON to copy packets out",
        },
        perf::OpenError::Event(e) => XdpError::Os {
            what,
            why: Why(e),
            hint: "",
        },
        perf::OpenError::Map(e) => XdpError::Os {
            what: format!(
                "error mapping the perf buffer of cpu{cpu} ({} KiB)",
                bytes / 1024
            ),
            hint: match e.raw_os_error() {
                Some(libc::EPERM | libc::ENOMEM) => {
                    " (perf buffers beyond kernel.perf_event_mlock_kb per cpu count against \
                     RLIMIT_MEMLOCK unless CAP_IPC_LOCK: try a smaller -B)"
                }
                _ => "",
            },
            why: Why(e),
        },
    }
}

fn load_error(e: bpf::LoadError, perfmon: &'static str) -> XdpError {
    if e.is_permission() {
        return XdpError::Permission {
            what: "error loading the XDP program".into(),
            why: Why(e.error),
            perfmon,
        };
    }
    let log = if e.log.is_empty() {
        String::new()
    } else {
        format!("\n{}", e.log)
    };
    XdpError::Load {
        why: Why(e.error),
        log,
    }
}

/// BPF_LINK_CREATE in the mode asked for; `auto` tries native first and
/// falls back to generic where the driver has no XDP hook (EOPNOTSUPP).
fn attach_link(
    prog: &Program,
    ifindex: u32,
    mode: XdpMode,
    ifname: &str,
    perfmon: &'static str,
) -> Result<(Hook, Link), XdpError> {
    let try_hook = |hook: Hook| Link::xdp(prog, ifindex, hook.flags()).map(|l| (hook, l));
    let result = match mode {
        XdpMode::Native => try_hook(Hook::Native),
        XdpMode::Generic => try_hook(Hook::Generic),
        XdpMode::Auto => match try_hook(Hook::Native) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => try_hook(Hook::Generic),
            other => other,
        },
    };
    result.map_err(|e| match e.raw_os_error() {
        // The kernel will not replace an attached program with a link
        // (EBUSY), nor have native and generic programs at once (EEXIST).
        Some(libc::EBUSY | libc::EEXIST) => XdpError::Busy {
            ifname: ifname.to_string(),
            id: match attached_program(ifindex) {
                Ok(Some(p)) => format!(" (id {}, {})", p.id, p.mode),
                _ => String::new(),
            },
        },
        Some(libc::EOPNOTSUPP) if mode == XdpMode::Native => XdpError::NoNative {
            ifname: ifname.to_string(),
        },
        _ => os_error(
            format!("error attaching the XDP program to '{ifname}'"),
            e,
            perfmon,
        ),
    })
}

/// Waits until every program run that started before the call has ended:
/// XDP runs inside an RCU read-side section (NAPI poll and the core receive
/// path hold rcu_read_lock, in softirq), and membarrier(MEMBARRIER_CMD_
/// GLOBAL) is synchronize_rcu(). Kernels with nohz_full cpus refuse that
/// command; there one thread is run on each captured cpu instead, which
/// proves that cpu left any softirq it was in (softirqs are not preempted
/// by tasks, except on PREEMPT_RT).
fn quiesce(cpus: &CpuSet) -> io::Result<()> {
    if host::membarrier_global() {
        return Ok(());
    }
    quiesce_by_running_on(cpus);
    Ok(())
}

fn quiesce_by_running_on(cpus: &CpuSet) {
    std::thread::scope(|s| {
        let handles: Vec<_> = cpus
            .iter()
            .map(|cpu| {
                s.spawn(move || {
                    let one: CpuSet = std::iter::once(cpu).collect();
                    // An offline cpu runs no programs.
                    let _ = host::pin_to(&one);
                    std::thread::yield_now();
                })
            })
            .collect();
        for h in handles {
            let _ = h.join();
        }
    });
}

/// An XDP program attached to an interface, as netlink reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attached {
    pub id: u32,
    pub mode: AttachMode,
}

/// IFLA_XDP_ATTACHED.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Native,
    Generic,
    Offload,
    Multi,
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
            AttachMode::Offload => "offloaded",
            AttachMode::Multi => "several modes",
        })
    }
}

/// The XDP program attached to interface `ifindex` of the calling thread's
/// network namespace, if any (RTM_GETLINK, IFLA_XDP).
pub fn attached_program(ifindex: u32) -> io::Result<Option<Attached>> {
    let attrs = netlink::get_link(ifindex)?;
    let Some(xdp) = netlink::find_attr(&attrs, netlink::IFLA_XDP) else {
        return Ok(None);
    };
    let mode = match netlink::find_attr(xdp, netlink::IFLA_XDP_ATTACHED).and_then(|a| a.first()) {
        None | Some(0) => return Ok(None),
        Some(1) => AttachMode::Native,
        Some(2) => AttachMode::Generic,
        Some(3) => AttachMode::Offload,
        Some(_) => AttachMode::Multi,
    };
    let id = netlink::find_attr(xdp, netlink::IFLA_XDP_PROG_ID)
        .and_then(|a| a.get(..4))
        .map_or(0, |a| u32::from_ne_bytes([a[0], a[1], a[2], a[3]]));
    Ok(Some(Attached { id, mode }))
}

impl AsRawFd for PerfReader {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.ring.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    //! Kernel-facing tests run as root, each in a pair of private network
    //! namespaces joined by a veth: `a` (va, 192.0.2.1) sends, `b` (vb,
    //! 192.0.2.2) receives with the XDP program attached. IPv6 is off and
    //! the neighbours are static, so vb receives nothing but the test's
    //! frames. Senders are paced by a receiving socket in `b` (at most a
    //! few frames in flight), so veth never drops one.

    use super::*;
    use std::fs::File;
    use std::io::{BufRead, BufReader};
    use std::net::UdpSocket;
    use std::process::{Command, Stdio};
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    use nix::sched::{setns, CloneFlags};

    const UDP_PORT: u16 = 9999;
    /// Ethernet, IPv4 and UDP headers before the payload.
    const HEADERS: usize = 14 + 20 + 8;

    fn sh(args: &[&str]) {
        let out = Command::new(args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn enter(ns: &str) {
        let f = File::open(format!("/var/run/netns/{ns}")).unwrap();
        setns(&f, CloneFlags::CLONE_NEWNET).unwrap();
    }

    /// Pins the calling thread to `cpu`, waiting a while for it if it is
    /// offline (another test suite may be hot-plugging it).
    fn pin(cpu: u32) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while let Err(e) = host::pin_to(&std::iter::once(cpu).collect()) {
            assert!(std::time::Instant::now() < deadline, "pin to cpu{cpu}: {e}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Two namespaces and a veth between them; deleted on drop.
    struct Net {
        a: String,
        b: String,
        /// In `a`, for sending to vb.
        tx: UdpSocket,
        /// In `b`, bound to 192.0.2.2:UDP_PORT, for pacing.
        rx: UdpSocket,
    }

    impl Net {
        fn new() -> Net {
            Net::with_queues(1)
        }

        /// With `queues` > 1, each end has that many queues and va's XPS
        /// sends cpu c's frames on tx queue c, which veth hands to vb's rx
        /// queue c: one NAPI per sending cpu.
        fn with_queues(queues: u32) -> Net {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let (a, b) = (
                format!("rxtxcpu-xdp-{}-{n}a", std::process::id()),
                format!("rxtxcpu-xdp-{}-{n}b", std::process::id()),
            );
            for ns in [&a, &b] {
                sh(&["ip", "netns", "add", ns]);
                #[rustfmt::skip]
                sh(&["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                     "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]);
                sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            }
            let q = queues.to_string();
            #[rustfmt::skip]
            sh(&["ip", "-n", &a, "link", "add", "va", "address", "02:00:00:00:00:01",
                 "numtxqueues", &q, "numrxqueues", &q, "type", "veth",
                 "peer", "name", "vb", "address", "02:00:00:00:00:02",
                 "numtxqueues", &q, "numrxqueues", &q, "netns", &b]);
            for i in (0..queues).filter(|_| queues > 1) {
                let xps = format!(
                    "echo {:x} > /sys/class/net/va/queues/tx-{i}/xps_cpus",
                    1u64 << i
                );
                sh(&["ip", "netns", "exec", &a, "sh", "-c", &xps]);
            }
            for (ns, me, addr, peer, mac) in [
                (&a, "va", "192.0.2.1/24", "192.0.2.2", "02:00:00:00:00:02"),
                (&b, "vb", "192.0.2.2/24", "192.0.2.1", "02:00:00:00:00:01"),
            ] {
                sh(&["ip", "-n", ns, "addr", "add", addr, "dev", me]);
                sh(&["ip", "-n", ns, "link", "set", me, "up"]);
                #[rustfmt::skip]
                sh(&["ip", "-n", ns, "neigh", "replace", peer, "lladdr", mac, "dev", me,
                     "nud", "permanent"]);
            }
            let tx = in_ns(&a, || UdpSocket::bind("192.0.2.1:0").unwrap());
            let rx = in_ns(&b, || UdpSocket::bind(("192.0.2.2", UDP_PORT)).unwrap());
            rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            Net { a, b, tx, rx }
        }

        /// Runs `f` on a thread in namespace `b`.
        fn in_b<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
            in_ns(&self.b, f)
        }

        /// Waits until interface `ifindex` has no XDP program. Closing the
        /// last descriptor of a link detaches at once, but another test's
        /// fork() may hold a copy of the descriptor until its exec().
        fn assert_detached(&self, ifindex: u32) {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while let Some(p) = self.in_b(|| attached_program(ifindex)).unwrap() {
                assert!(std::time::Instant::now() < deadline, "{p:?} still attached");
                std::thread::sleep(Duration::from_millis(10));
            }
        }

        fn vb(&self) -> u32 {
            self.in_b(|| crate::sys::afpacket::ifindex("vb").unwrap())
        }

        /// Sends `n` datagrams of `payload` bytes from a thread pinned to
        /// `cpu`, each received before the next is sent. Datagram i starts
        /// with i (u32, little endian) and `tag`, then zeros.
        fn send(&self, cpu: u32, n: u32, payload: usize, tag: u8) {
            std::thread::scope(|s| {
                s.spawn(|| {
                    pin(cpu);
                    let mut buf = vec![0u8; payload.max(5)];
                    let mut got = vec![0u8; 65536];
                    for i in 0..n {
                        buf[..4].copy_from_slice(&i.to_le_bytes());
                        buf[4] = tag;
                        self.tx.send_to(&buf, ("192.0.2.2", UDP_PORT)).unwrap();
                        self.rx.recv(&mut got).expect("datagram not received");
                    }
                });
            });
        }

        /// Sends from both cpus at once.
        fn send_both(&self, n0: u32, n1: u32, payload: usize) {
            std::thread::scope(|s| {
                s.spawn(|| self.send(0, n0, payload, 0));
                s.spawn(|| self.send(1, n1, payload, 1));
            });
        }
    }

    impl Drop for Net {
        fn drop(&mut self) {
            for ns in [&self.a, &self.b] {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }

    fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                enter(ns);
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    fn both() -> CpuSet {
        [0, 1].into_iter().collect()
    }

    fn wall_ns() -> i64 {
        clock_ns(Clock::Realtime)
    }

    /// Reads every record of every reader (after stop(): until empty).
    /// A record, copied out of its ring.
    struct Rec {
        /// Wall-clock nanoseconds.
        ts: u64,
        len: u32,
        cpu: u32,
        data: Vec<u8>,
        queue: u32,
        ifindex: u32,
    }

    fn drain(readers: &mut [PerfReader]) -> Vec<Vec<Rec>> {
        readers
            .iter_mut()
            .map(|r| {
                let mut v = Vec::new();
                while !r.is_empty() {
                    r.read(|rec| {
                        let ts = rec.sec as u64 * 1_000_000_000 + rec.nsec as u64;
                        v.push(Rec {
                            ts,
                            len: rec.len,
                            cpu: rec.cpu,
                            data: rec.data.to_vec(),
                            queue: rec.queue,
                            ifindex: rec.ifindex,
                        });
                        ControlFlow::Continue(())
                    });
                }
                assert_eq!(r.malformed(), 0);
                v
            })
            .collect()
    }

    #[test]
    fn program_jumps_stay_inside_and_it_ends_in_exit() {
        for perf in [None, Some(7)] {
            let p = program(ProgramMaps {
                config: 4,
                counts: 5,
                perf,
                done: 6,
            });
            for (i, insn) in p.iter().enumerate() {
                let class = insn.code & 0x07;
                if class == 0x05 && insn.code != 0x95 && insn.code != 0x85 {
                    let target = i as i64 + 1 + i64::from(insn.off);
                    assert!((0..p.len() as i64).contains(&target), "insn {i}");
                }
            }
            assert_eq!(p.last().unwrap().code, 0x95);
            assert_eq!(p[p.len() - 2].imm, XDP_PASS);
        }
    }

    #[test]
    fn snaplen_limit_fits_a_perf_record() {
        let record = 8 + 4 + META_LEN + MAX_SNAPLEN as usize;
        assert!(record.next_multiple_of(8) <= perf::MAX_RECORD);
        assert_eq!(perf::data_bytes_for(8 << 20), 8 << 20);
        assert_eq!(perf::data_bytes_for(3 << 20), 2 << 20);
        assert_eq!(perf::data_bytes_for(1), perf::MIN_DATA_BYTES);
        assert_eq!(perf::data_bytes_for(usize::MAX), perf::MAX_DATA_BYTES);
    }

    #[test]
    fn wall_clock_conversion() {
        let c = WallClock::default();
        c.offset_ns
            .store(1_700_000_000_000_000_000, Ordering::Relaxed);
        assert_eq!(c.to_wall(1_500_000_001), (1_700_000_001, 500_000_001));
        c.calibrate();
        let mono = clock_ns(Clock::Monotonic) as u64;
        let (sec, nsec) = c.to_wall(mono);
        let wall = sec as i64 * 1_000_000_000 + nsec as i64;
        // The conversion of "now" lands within a millisecond of now.
        assert!((wall - wall_ns()).abs() < 1_000_000, "{wall}");
    }

    #[test]
    fn counts_add_up_by_cpu_and_queue() {
        let t = |p| Tally {
            packets: p,
            bytes: p * 10,
            lost: 1,
        };
        let c = Counts {
            cpus: vec![0, 1],
            slots: vec![vec![t(1), t(2)], vec![t(3), t(4)], vec![t(5), t(6)]],
        };
        assert_eq!(c.cpu(0).packets, 9);
        assert_eq!(c.cpu(1).packets, 12);
        assert_eq!(c.cpu(7), Tally::default());
        assert_eq!(c.queue(1).packets, 7);
        assert_eq!(c.queue(2), Tally::default());
        assert_eq!(c.other_queues().packets, 11);
        assert_eq!(
            c.total(),
            Tally {
                packets: 21,
                bytes: 210,
                lost: 6
            }
        );
    }

    /// Counts per cpu are exact, cover only the window, and the program is
    /// gone when the capture is dropped; both modes. Native XDP runs in the
    /// NAPI poll of the receive queue, on the cpu that scheduled it: with
    /// one queue, frames sent from cpu1 while cpu0 polls are handled (and
    /// counted) on cpu0, so the senders here get a queue each (XPS).
    #[test]
    fn counts_are_exact_per_cpu_in_both_modes() {
        for mode in [XdpMode::Native, XdpMode::Generic] {
            let net = Net::with_queues(2);
            let vb = net.vb();
            let xdp = net.in_b(|| XdpCapture::attach(vb, &Options::new(mode, both())).unwrap());
            let expect = if mode == XdpMode::Native {
                Hook::Native
            } else {
                Hook::Generic
            };
            assert_eq!(xdp.hook(), expect);
            let attached = net.in_b(|| attached_program(vb)).unwrap().unwrap();
            assert_eq!(attached.id, xdp.ids().unwrap().0);
            net.send_both(20, 20, 32); // before the window
            xdp.start().unwrap();
            net.send_both(300, 200, 32);
            xdp.stop().unwrap();
            net.send_both(20, 20, 32); // after it
            let c = xdp.counts().unwrap();
            assert_eq!(c.cpu(0).packets, 300, "{mode:?}");
            assert_eq!(c.cpu(1).packets, 200, "{mode:?}");
            assert_eq!(c.total().bytes, 500 * (HEADERS + 32) as u64);
            assert_eq!(c.total().lost, 0);
            drop(xdp);
            net.assert_detached(vb);
        }
    }

    /// -l: only the selected cpus count; a queue list: only the selected
    /// queues (cpu c sends on vb's rx queue c here); frames of queues past
    /// the per-queue slots count in the last slot.
    #[test]
    fn unselected_cpus_and_queues_count_nothing() {
        let net = Net::with_queues(2);
        let vb = net.vb();
        let mut opts = Options::new(XdpMode::Native, std::iter::once(1).collect());
        opts.queues = 2;
        let xdp = net.in_b(|| XdpCapture::attach(vb, &opts).unwrap());
        xdp.start().unwrap();
        net.send_both(50, 70, 10);
        xdp.stop().unwrap();
        let c = xdp.counts().unwrap();
        assert_eq!((c.cpu(0).packets, c.cpu(1).packets), (0, 70));
        assert_eq!((c.queue(0).packets, c.queue(1).packets), (0, 70));
        assert_eq!(c.other_queues().packets, 0);
        drop(xdp);
        net.assert_detached(vb);

        opts.cpus = both();
        opts.queue_list = Some(std::iter::once(1).collect());
        let xdp = net.in_b(|| XdpCapture::attach(vb, &opts).unwrap());
        xdp.start().unwrap();
        net.send_both(5, 6, 10);
        xdp.stop().unwrap();
        let c = xdp.counts().unwrap();
        assert_eq!((c.cpu(0).packets, c.cpu(1).packets), (0, 6));
        assert_eq!(c.queue(1).packets, 6);
        drop(xdp);
        net.assert_detached(vb);

        // One per-queue slot: queue 1 is beyond it.
        opts.queues = 1;
        opts.queue_list = None;
        let xdp = net.in_b(|| XdpCapture::attach(vb, &opts).unwrap());
        xdp.start().unwrap();
        net.send_both(5, 6, 10);
        xdp.stop().unwrap();
        let c = xdp.counts().unwrap();
        assert_eq!((c.queue(0).packets, c.other_queues().packets), (5, 6));
    }

    /// With a snap length every counted frame is a record: in order per
    /// cpu, wall-clock times inside the window, caplen = min(len, snaplen),
    /// the original length, the bytes themselves; both modes.
    #[test]
    fn records_match_counts_in_both_modes() {
        for mode in [XdpMode::Native, XdpMode::Generic] {
            let net = Net::with_queues(2);
            let vb = net.vb();
            let mut opts = Options::new(mode, both());
            opts.snaplen = Some(60);
            let mut xdp = net.in_b(|| XdpCapture::attach(vb, &opts).unwrap());
            let mut readers = xdp.take_readers();
            assert_eq!(readers.iter().map(|r| r.cpu()).collect::<Vec<_>>(), [0, 1]);
            let t0 = wall_ns() as u64;
            xdp.start().unwrap();
            std::thread::scope(|s| {
                s.spawn(|| net.send(0, 100, 4, 0)); // 46-byte frames: under the snaplen
                s.spawn(|| net.send(1, 150, 100, 1)); // 142-byte frames: cut
            });
            xdp.stop().unwrap();
            let t1 = wall_ns() as u64;
            let recs = drain(&mut readers);
            let c = xdp.counts().unwrap();
            for (cpu, n, len, tag) in [(0, 100, HEADERS + 5, 0u8), (1, 150, HEADERS + 100, 1)] {
                let r = &recs[cpu as usize];
                assert_eq!(c.cpu(cpu).packets, n as u64, "{mode:?} cpu{cpu}");
                assert_eq!(r.len(), n, "{mode:?} cpu{cpu}");
                for (i, rec) in r.iter().enumerate() {
                    let Rec {
                        ts,
                        len: l,
                        cpu: rcpu,
                        data,
                        queue,
                        ifindex,
                    } = rec;
                    assert!(
                        (t0..=t1).contains(ts),
                        "{mode:?} cpu{cpu} #{i}: {ts} not in {t0}..{t1}"
                    );
                    assert!(
                        i == 0 || r[i - 1].ts <= *ts,
                        "{mode:?} cpu{cpu} #{i} out of order"
                    );
                    // Native: veth's rx queue c, fed by va's tx queue c.
                    // Generic: veth records no rx queue (queue 0).
                    let q = if mode == XdpMode::Native { cpu } else { 0 };
                    assert_eq!((*l as usize, *rcpu, *queue, *ifindex), (len, cpu, q, vb));
                    assert_eq!(data.len(), len.min(60));
                    assert_eq!(&data[..6], &[2, 0, 0, 0, 0, 2]); // to vb
                    if data.len() >= HEADERS + 5 {
                        let seq =
                            u32::from_le_bytes(data[HEADERS..HEADERS + 4].try_into().unwrap());
                        assert_eq!((seq, data[HEADERS + 4]), (i as u32, tag));
                    }
                }
            }
            let p = XdpRecord {
                cpu: 0,
                monotonic_ns: 0,
                sec: 1,
                nsec: 2,
                len: 46,
                queue: 0,
                ifindex: vb,
                data: &recs[0][0].data,
            }
            .packet(crate::packet::ARPHRD_ETHER);
            assert_eq!(
                (p.net_offset, p.protocol, p.pkttype, p.halen),
                (14, 0x0008, 0, 6)
            );
            assert_eq!(&p.addr[..6], &[2, 0, 0, 0, 0, 1]);
        }
    }

    /// Records that wrap around the end of the ring come out whole.
    #[test]
    fn records_wrap_around_the_ring() {
        let net = Net::new();
        let vb = net.vb();
        let mut opts = Options::new(XdpMode::Native, std::iter::once(0).collect());
        opts.snaplen = Some(2000);
        opts.ring_bytes = 0; // the smallest ring
        let mut xdp = net.in_b(|| XdpCapture::attach(vb, &opts).unwrap());
        let mut readers = xdp.take_readers();
        xdp.start().unwrap();
        let mut seen = 0u32;
        // 7 rounds of 50 records of ~1030 bytes: 350 KiB through 128 KiB.
        for _ in 0..7 {
            net.send(0, 50, 1000 - 4, 9);
            readers[0].read(|rec| {
                assert_eq!(rec.data.len(), HEADERS + 996);
                assert_eq!(rec.data[HEADERS + 4], 9);
                assert!(rec.data[HEADERS + 5..].iter().all(|&b| b == 0));
                seen += 1;
                ControlFlow::Continue(())
            });
        }
        xdp.stop().unwrap();
        assert_eq!(seen, 350);
        assert_eq!(xdp.counts().unwrap().cpu(0).lost, 0);
    }

    /// A full ring loses records: the program counts them exactly
    /// (records plus lost make the frames sent), and the kernel's
    /// PERF_RECORD_LOST later reports the same number.
    #[test]
    fn lost_records_are_counted() {
        let net = Net::new();
        let vb = net.vb();
        let mut opts = Options::new(XdpMode::Native, std::iter::once(0).collect());
        opts.snaplen = Some(2000);
        opts.ring_bytes = 0;
        let mut xdp = net.in_b(|| XdpCapture::attach(vb, &opts).unwrap());
        let mut readers = xdp.take_readers();
        xdp.start().unwrap();
        net.send(0, 1000, 1000, 0); // ~1 MB into 128 KiB, nobody reading
        let mut records = 0u64;
        let mut stats = readers[0].read(|_| {
            records += 1;
            ControlFlow::Continue(())
        });
        let lost = xdp.counts().unwrap().cpu(0).lost;
        assert!(lost > 0);
        assert_eq!(records + lost, 1000);
        assert_eq!(stats.lost, 0); // not written yet: the ring was full
                                   // The next record that fits brings the kernel's report first.
        net.send(0, 1, 1000, 0);
        xdp.stop().unwrap();
        stats = readers[0].read(|_| {
            records += 1;
            ControlFlow::Continue(())
        });
        assert_eq!(stats.lost, lost);
        assert_eq!(records, 1001 - lost);
        assert_eq!(xdp.counts().unwrap().cpu(0).packets, 1001 - lost);
    }

    /// -c N: exactly N frames over all cpus, and the done signal comes.
    #[test]
    fn count_budget_is_exact() {
        for snaplen in [None, Some(64)] {
            let net = Net::new();
            let vb = net.vb();
            let mut opts = Options::new(XdpMode::Native, both());
            opts.count = 250;
            opts.snaplen = snaplen;
            let mut xdp = net.in_b(|| XdpCapture::attach(vb, &opts).unwrap());
            let mut readers = xdp.take_readers();
            xdp.start().unwrap();
            assert!(!xdp.is_done());
            net.send_both(200, 200, 10);
            assert!(xdp.is_done());
            xdp.stop().unwrap();
            let c = xdp.counts().unwrap();
            assert_eq!(c.total().packets, 250, "{snaplen:?}");
            if snaplen.is_some() {
                let recs = drain(&mut readers);
                assert_eq!(recs[0].len() + recs[1].len(), 250);
                assert_eq!(recs[0].len() as u64, c.cpu(0).packets);
            }
        }
    }

    /// Frames beyond a page (multi-buffer XDP on a 64 KiB MTU) are counted
    /// whole and cut to MAX_SNAPLEN in records; both modes.
    #[test]
    fn jumbo_frames() {
        for mode in [XdpMode::Native, XdpMode::Generic] {
            let net = Net::new();
            sh(&["ip", "-n", &net.a, "link", "set", "va", "mtu", "65535"]);
            sh(&["ip", "-n", &net.b, "link", "set", "vb", "mtu", "65535"]);
            let vb = net.vb();
            let mut opts = Options::new(mode, both());
            opts.snaplen = Some(262_144);
            let mut xdp = net.in_b(|| XdpCapture::attach(vb, &opts).unwrap());
            let mut readers = xdp.take_readers();
            xdp.start().unwrap();
            net.send(0, 3, 65_507, 7); // the largest IPv4 datagram
            xdp.stop().unwrap();
            let recs = drain(&mut readers);
            assert_eq!(recs[0].len(), 3, "{mode:?}");
            for r in &recs[0] {
                assert_eq!(r.len as usize, HEADERS + 65_507, "{mode:?}");
                assert_eq!(r.data.len(), MAX_SNAPLEN as usize, "{mode:?}");
                assert_eq!(r.data[HEADERS + 4], 7);
            }
            let c = xdp.counts().unwrap().cpu(0);
            assert_eq!((c.packets, c.bytes), (3, 3 * (HEADERS + 65_507) as u64));
        }
    }

    /// With rps_cpus on vb naming only cpu1 and the sender on cpu0, native
    /// XDP sees the frames on cpu0 (veth's NAPI, before RPS), generic XDP
    /// on cpu1 (after RPS moved them).
    #[test]
    fn rps_moves_generic_but_not_native() {
        for (mode, cpu) in [(XdpMode::Native, 0), (XdpMode::Generic, 1)] {
            let net = Net::new();
            #[rustfmt::skip]
            sh(&["ip", "netns", "exec", &net.b, "sh", "-c",
                 "echo 2 > /sys/class/net/vb/queues/rx-0/rps_cpus"]);
            let vb = net.vb();
            let xdp = net.in_b(|| XdpCapture::attach(vb, &Options::new(mode, both())).unwrap());
            xdp.start().unwrap();
            net.send(0, 200, 10, 0);
            xdp.stop().unwrap();
            let c = xdp.counts().unwrap();
            assert_eq!(c.cpu(cpu).packets, 200, "{mode:?}");
            assert_eq!(c.cpu(1 - cpu).packets, 0, "{mode:?}");
        }
    }

    /// A reader is woken after every record, or only past the watermark.
    #[test]
    fn wakeups() {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        for (wakeup, woken) in [
            (Wakeup::EveryRecord, true),
            (Wakeup::Bytes(64 * 1024), false),
        ] {
            let net = Net::new();
            let vb = net.vb();
            let mut opts = Options::new(XdpMode::Native, std::iter::once(0).collect());
            opts.snaplen = Some(100);
            opts.wakeup = wakeup;
            let mut xdp = net.in_b(|| XdpCapture::attach(vb, &opts).unwrap());
            let readers = xdp.take_readers();
            xdp.start().unwrap();
            net.send(0, 1, 10, 0);
            // perf_output_wakeup marks the ring readable before it returns.
            let mut fds = [PollFd::new(readers[0].fd(), PollFlags::POLLIN)];
            let n = poll(&mut fds, PollTimeout::ZERO).unwrap();
            assert_eq!(n > 0, woken, "{wakeup:?}");
            assert!(!readers[0].is_empty());
        }
    }

    #[test]
    fn capture_and_readers_can_be_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<XdpCapture>();
        send_sync::<PerfReader>();
    }

    /// A multi-queue tun (IFF_TUN) in namespace `b` with one fd per queue;
    /// a packet written to queue q's fd is received on queue q.
    fn mq_tun(net: &Net, queues: usize) -> Vec<std::os::fd::OwnedFd> {
        let fds = net.in_b(|| crate::sys::testutil::tun("mqtun", queues));
        sh(&[
            "ip",
            "-n",
            &net.b,
            "addr",
            "add",
            "10.9.0.1/24",
            "dev",
            "mqtun",
        ]);
        sh(&["ip", "-n", &net.b, "link", "set", "mqtun", "up"]);
        fds
    }

    /// An IPv4/UDP packet from 10.9.0.2 to 10.9.0.1:UDP_PORT.
    fn tun_packet() -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 33, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 9, 0, 2, 10, 9, 0, 1,
        ];
        let sum: u32 = p
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        let sum = (sum & 0xffff) + (sum >> 16);
        p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        p.extend_from_slice(&[
            0x30, 0x39, 0x27, 0x0f, 0, 13, 0, 0, b'x', b'd', b'p', b'!', b'!',
        ]);
        p
    }

    /// A multi-queue tun (IFF_TUN, no link header): no native XDP, so
    /// `auto` attaches in generic mode, and the rx queue in the XDP context
    /// is the queue the packet was written to (tun records it); the queue
    /// vantage can rely on it.
    #[test]
    fn tun_queues_in_generic_mode() {
        let net = Net::new();
        let fds = mq_tun(&net, 2);
        let tun = net.in_b(|| crate::sys::afpacket::ifindex("mqtun").unwrap());
        let mut opts = Options::new(XdpMode::Native, both());
        let e = net.in_b(|| XdpCapture::attach(tun, &opts)).err().unwrap();
        assert!(matches!(e, XdpError::NoNative { .. }), "{e}");
        opts.mode = XdpMode::Auto;
        opts.queues = 2;
        opts.snaplen = Some(100);
        let mut xdp = net.in_b(|| XdpCapture::attach(tun, &opts).unwrap());
        assert_eq!(xdp.hook(), Hook::Generic);
        let mut readers = xdp.take_readers();
        xdp.start().unwrap();
        let p = tun_packet();
        for (q, n) in [(0usize, 3), (1, 5)] {
            for _ in 0..n {
                let n = nix::unistd::write(&fds[q], &p).unwrap();
                assert_eq!(n, p.len());
            }
        }
        xdp.stop().unwrap();
        let c = xdp.counts().unwrap();
        assert_eq!((c.queue(0).packets, c.queue(1).packets), (3, 5));
        let recs: Vec<Rec> = drain(&mut readers).into_iter().flatten().collect();
        assert_eq!(recs.len(), 8);
        for r in &recs {
            assert_eq!((r.len as usize, &r.data[..]), (p.len(), &p[..]));
        }
        assert_eq!(recs.iter().filter(|r| r.queue == 1).count(), 5);
        let pk = XdpRecord {
            cpu: 0,
            monotonic_ns: 0,
            sec: 0,
            nsec: 0,
            len: p.len() as u32,
            queue: 0,
            ifindex: tun,
            data: &p,
        }
        .packet(0xfffe);
        assert_eq!((pk.net_offset, pk.protocol, pk.halen), (0, 0x0008, 0));
    }

    /// Deleting the interface detaches the program; the capture notices.
    #[test]
    fn interface_gone_is_noticed() {
        let net = Net::new();
        let vb = net.vb();
        let xdp =
            net.in_b(|| XdpCapture::attach(vb, &Options::new(XdpMode::Native, both())).unwrap());
        assert!(xdp.is_attached());
        sh(&["ip", "-n", &net.b, "link", "del", "vb"]);
        assert!(!xdp.is_attached());
        xdp.stop().unwrap();
        assert_eq!(xdp.counts().unwrap().total().packets, 0);
    }

    /// The fallback for kernels that refuse MEMBARRIER_CMD_GLOBAL runs on
    /// every cpu asked for, offline ones included (their pin fails).
    #[test]
    fn quiesce_by_running_everywhere_returns() {
        quiesce_by_running_on(&[0, 1, 4095].into_iter().collect());
    }

    /// A tiny XDP_PASS program of the test's own.
    fn foreign_program() -> Program {
        let insns = [ebpf::mov_imm(Reg::R0, XDP_PASS), ebpf::exit()];
        Program::load_with(
            ProgType::Xdp,
            "foreign",
            &insns,
            LoadOptions {
                expected_attach_type: BPF_XDP,
                prog_flags: 0,
                ..LoadOptions::default()
            },
        )
        .unwrap()
    }

    /// Another program on the interface, attached through netlink or a
    /// link, in either mode: refused with its id in the message, and it
    /// stays attached.
    #[test]
    fn existing_program_is_refused_and_left_alone() {
        let net = Net::new();
        let vb = net.vb();
        let foreign = foreign_program();
        let foreign_id = foreign.id().unwrap();
        for (how, flags) in [
            ("netlink", XDP_FLAGS_SKB_MODE),
            ("netlink", XDP_FLAGS_DRV_MODE),
            ("link", XDP_FLAGS_SKB_MODE),
            ("link", XDP_FLAGS_DRV_MODE),
        ] {
            let link = net.in_b(|| match how {
                "netlink" => {
                    netlink::set_xdp(vb, foreign.as_raw_fd(), flags).unwrap();
                    None
                }
                _ => Some(Link::xdp(&foreign, vb, flags).unwrap()),
            });
            for mode in [XdpMode::Auto, XdpMode::Native, XdpMode::Generic] {
                let e = net
                    .in_b(|| XdpCapture::attach(vb, &Options::new(mode, both())))
                    .err()
                    .unwrap_or_else(|| panic!("{how} {flags}: {mode:?} attached"));
                let kind = if flags == XDP_FLAGS_DRV_MODE {
                    "native"
                } else {
                    "generic"
                };
                assert_eq!(
                    e.to_string(),
                    format!(
                        "interface 'vb' already has an XDP program (id {foreign_id}, {kind}); \
                         rxtxcpu leaves it alone"
                    ),
                    "{how} {flags} {mode:?}"
                );
                let still = net.in_b(|| attached_program(vb)).unwrap().unwrap();
                assert_eq!(still.id, foreign_id);
            }
            // What the kernel said: EBUSY for the same mode, EEXIST for the
            // other one.
            let ours = foreign_program();
            for (f, errno) in [
                (flags, libc::EBUSY),
                (
                    flags ^ (XDP_FLAGS_SKB_MODE | XDP_FLAGS_DRV_MODE),
                    libc::EEXIST,
                ),
            ] {
                let e = net.in_b(|| Link::xdp(&ours, vb, f)).unwrap_err();
                assert_eq!(e.raw_os_error(), Some(errno), "{how} {flags} then {f}");
            }
            match link {
                None => net.in_b(|| netlink::set_xdp(vb, -1, flags)).unwrap(),
                Some(l) => drop(l),
            }
            net.assert_detached(vb);
        }
    }

    #[test]
    fn native_mode_on_lo_is_refused_auto_falls_back() {
        let net = Net::new();
        let lo = net.in_b(|| crate::sys::afpacket::ifindex("lo").unwrap());
        let e = net
            .in_b(|| XdpCapture::attach(lo, &Options::new(XdpMode::Native, both())))
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .starts_with("interface 'lo' does not support native XDP"),
            "{e}"
        );
        let xdp = net
            .in_b(|| XdpCapture::attach(lo, &Options::new(XdpMode::Auto, both())))
            .unwrap();
        assert_eq!(xdp.hook(), Hook::Generic);
    }

    /// Sets the calling thread's effective capabilities to `keep` (the
    /// permitted set stays, the thread only): as a user with just those.
    use crate::sys::testutil::{limit_caps, CAP_BPF, CAP_IPC_LOCK, CAP_NET_ADMIN, CAP_PERFMON};

    /// Without the privileges: the error names them. With exactly CAP_BPF
    /// and CAP_NET_ADMIN (and CAP_PERFMON, CAP_IPC_LOCK for the packets)
    /// it works.
    #[test]
    fn privileges() {
        let net = Net::new();
        let vb = net.vb();
        let mut opts = Options::new(XdpMode::Native, both());
        let attach = |caps: &'static [u32], opts: &Options| {
            let r = net.in_b(|| {
                limit_caps(caps);
                XdpCapture::attach(vb, opts).map(|_| ())
            });
            // Gone before the next try (see assert_detached).
            net.assert_detached(vb);
            r
        };
        for caps in [&[][..], &[CAP_BPF], &[CAP_NET_ADMIN]] {
            let e = attach(caps, &opts).unwrap_err();
            assert!(matches!(e, XdpError::Permission { .. }), "{caps:?}: {e}");
            assert!(
                e.to_string()
                    .contains("(the XDP capture needs root, or CAP_BPF and CAP_NET_ADMIN)"),
                "{e}"
            );
        }
        attach(&[CAP_BPF, CAP_NET_ADMIN], &opts).unwrap();
        opts.snaplen = Some(100);
        let e = attach(&[CAP_BPF, CAP_NET_ADMIN], &opts).unwrap_err();
        assert!(e.to_string().contains("CAP_PERFMON"), "{e}");
        // Default-sized rings are beyond the unprivileged lock limit.
        let e = attach(&[CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON], &opts).unwrap_err();
        assert!(e.to_string().contains("perf_event_mlock_kb"), "{e}");
        attach(&[CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_IPC_LOCK], &opts).unwrap();
    }

    /// Helper process for `sigkill_leaves_no_program`: attaches in the
    /// namespace named by the environment, says so, then waits to be
    /// killed. Ignored unless run by that test.
    #[test]
    #[ignore]
    fn helper_attach_and_wait() {
        let Ok(ns) = std::env::var("RXTXCPU_XDP_HELPER_NS") else {
            return;
        };
        enter(&ns);
        let vb = crate::sys::afpacket::ifindex("vb").unwrap();
        let mut opts = Options::new(XdpMode::Native, both());
        opts.snaplen = Some(64);
        let xdp = XdpCapture::attach(vb, &opts).unwrap();
        xdp.start().unwrap();
        println!("attached {}", xdp.ids().unwrap().0);
        std::thread::sleep(Duration::from_secs(60));
    }

    #[test]
    fn sigkill_leaves_no_program() {
        let net = Net::new();
        let vb = net.vb();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                crate::sys::testutil::test_name(module_path!(), "helper_attach_and_wait").as_str(),
                "--ignored",
                "--nocapture",
            ])
            .env("RXTXCPU_XDP_HELPER_NS", &net.b)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        while !line.starts_with("attached ") {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "helper ended early");
        }
        let id: u32 = line["attached ".len()..].trim().parse().unwrap();
        assert_eq!(
            net.in_b(|| attached_program(vb)).unwrap().map(|a| a.id),
            Some(id)
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // The link's last descriptor closed when the process died.
        assert_eq!(net.in_b(|| attached_program(vb)).unwrap(), None);
    }
}
