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
//! The capture's life: [`XdpCapture::attach`] creates the maps and the
//! perf buffers, loads the program ([`super::program`]) and attaches it
//! with a BPF link (BPF_LINK_CREATE), so the kernel detaches it when the
//! process ends, however it ends; an interface that already has an XDP
//! program is refused and left alone. Nothing is counted until
//! [`XdpCapture::start`] opens the window; [`XdpCapture::stop`] closes it
//! and waits until no program run that saw it open is still going
//! (quiesce), after which the counts are final.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::cpuset::CpuSet;
use crate::options::XdpMode;
use crate::sys::bpf::{
    self, Link, LoadOptions, Map, MapMemory, MapType, ProgType, Program, BPF_F_MMAPABLE,
    BPF_F_XDP_HAS_FRAGS, BPF_XDP,
};
use crate::sys::host;
use crate::sys::netlink;
use crate::sys::perf::{self, PerfRing, Wakeup};

use super::error::{load_error, os_error, ring_error, XdpError};
use super::program::{
    program, ProgramMaps, CFG_BUDGET, CFG_ENABLED, CFG_LAST_SLOT, CFG_SIZE, CFG_SNAPLEN, CNT_BYTES,
    CNT_LOST, CNT_PACKETS, CNT_SIZE, MAX_SNAPLEN,
};
use super::record::{PerfReader, WallClock};

/// XDP_FLAGS_SKB_MODE / XDP_FLAGS_DRV_MODE (<linux/if_link.h>).
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

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
    /// `MAX_SNAPLEN`, what a perf record holds); None: count only.
    pub snaplen: Option<u32>,
    /// Bytes of perf ring per captured cpu (rounded down to a power of two
    /// pages, see `sys::perf::data_bytes_for`).
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
                    readers.push(PerfReader::new(ring, clock.clone()));
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

#[cfg(test)]
mod tests;
