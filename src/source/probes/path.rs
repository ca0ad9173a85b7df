//! The path of each flow through the kernel (`--path`): eBPF programs of
//! our own at the kernel's stable tracepoints count, per flow and cpu, the
//! stages a capture by cpu does not see itself. Verified on Linux 6.18
//! ([`super::facts`], and this module's tests):
//!
//! - Receive, the driver: `net:netif_rx_entry`,
//!   `net:netif_receive_skb_entry`, `net:netif_receive_skb_list_entry`
//!   and `net:napi_gro_receive_entry` fire where a driver hands a packet
//!   to the stack, before RPS or RFS move it: the cpu they fire on is the
//!   driver's (a veth's is the sender's: veth_xmit calls netif_rx in the
//!   sender's context; with GRO or XDP on, veth_poll hands it to
//!   napi_gro_receive in the sender's softirq, and only
//!   `napi_gro_receive_entry` fires: one entry point per packet, before
//!   GRO merges it). The receive queue is the one the driver recorded
//!   (`skb->queue_mapping` minus one; 0 is none), which is also the queue
//!   whose `rps_cpus` get_rps_cpu() applies. A veth records none, and
//!   leaves its peer's transmit queue in that field, which the kernel's
//!   RPS then reads as the receive queue as well: what is shown is what
//!   RPS used. (`napi_gro_frags_entry` is not probed: its packet has no
//!   headers yet.)
//! - The cpu that processed it is the capture's own stream (a packet
//!   socket sees the packet after RPS, in `__netif_receive_skb_core`).
//! - The application's read: `skb:skb_copy_datagram_iovec` for TCP (the
//!   segment being copied to the reader, in its system call; counted per
//!   copy, so a segment read in two calls counts twice and coalesced
//!   segments once); for UDP, whose datagrams are copied without that
//!   tracepoint (copy_linear_skb), and that no other tracepoint in the
//!   read carries (on 6.18 skb_consume_udp frees them with
//!   skb_attempt_defer_free: no `skb:consume_skb` in the reader's
//!   context, [`super::facts`]), `sock:sock_recv_length`, which has the
//!   socket and not the datagram: a read of a connected UDP socket is
//!   counted for the flow of its 4-tuple (the kernel delivers only that
//!   peer's datagrams to it, one per read); reads of unconnected sockets
//!   cannot be told apart by flow and are only counted, per process.
//! - Transmit: `net:net_dev_queue` fires in `__dev_queue_xmit` once the
//!   transmit queue is chosen (XPS), on the sending cpu: in task context
//!   (a send system call) the current task is the sender; in an interrupt
//!   (a TCP segment sent on an ACK or a timer, a forwarded packet) it is
//!   not, and no process is named. `net:net_dev_start_xmit` fires where
//!   the packet is handed to the driver: the cpu is the driver's (another
//!   one when a qdisc deferred it to NET_TX), the queue the one it goes
//!   out on.
//!
//! Cost: each program runs for every packet of every device at its hook,
//! and for the interface's reads the packet's headers with plain loads
//! (where the kernel allows it: [`super::path_program`]) and adds one to
//! its 48-byte key's count in the cpu's slot cache, or, when the slot
//! holds another key, moves that one's count to a per-cpu hash map; a
//! send or a read also looks the process's name up by its id. Nothing
//! per packet goes to user space; the maps are read once the capture has
//! ended and the programs are detached. The hash map holds at most
//! [`MAX_ENTRIES`] keys (flow, stage, queue, process id); packets of keys
//! beyond are counted as missed. The names hold at most [`MAX_NAMES`]
//! processes; a process beyond is shown by its id alone, named `?`.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use crate::consumers::flows::FlowKey;
use crate::source::probes::drops::Filter;
use crate::source::probes::path_program::{
    program, Layout, Maps, Pick, Shape, CTX_IRQ, CTX_TASK, KEY_SIZE, K_CTX, K_DST, K_HAS_PORTS,
    K_PID, K_PORTS, K_PROTO, K_QUEUE, K_SRC, K_STAGE, K_VERSION, L3, NAME_SIZE, SLOTS, SLOT_BITS,
    SLOT_COUNT, SLOT_SIZE,
};
use crate::sys::bpf::{Map, MapType, Program};
use crate::sys::btf::Btf;
use crate::sys::tracing::{self, Attached, Hook, ProbeError, RunStats};

pub use crate::consumers::flows::path::{PathStage, Process};
pub use crate::source::probes::path_program::Reads;
use crate::source::probes::path_program::Stage;

/// The most (flow, stage, queue, process) keys counted.
pub const MAX_ENTRIES: u32 = 16384;
/// The most processes named.
pub const MAX_NAMES: u32 = 4096;
/// map_flags: an array whose values may be mapped to user space, and so
/// start on a page (used for that layout: slots never straddle lines).
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// The receive entry points, in driver context.
const RX_HOOKS: [&str; 4] = [
    "netif_rx_entry",
    "netif_receive_skb_entry",
    "netif_receive_skb_list_entry",
    "napi_gro_receive_entry",
];

/// Packets of one flow at one stage, queue, task and cpu.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathCount {
    pub stage: PathStage,
    /// None for a read of an unconnected UDP socket.
    pub flow: Option<FlowKey>,
    /// Received: the recorded receive queue (None: none recorded); sent:
    /// the transmit queue; reads: None.
    pub queue: Option<u32>,
    pub task: Process,
    pub cpu: u32,
    pub packets: u64,
}

/// The probes, attached; detached by [`PathProbes::detach`] or when
/// dropped (or when the process ends, however it ends: each is held by a
/// BPF link).
#[derive(Debug)]
pub struct PathProbes {
    attached: Vec<Attached>,
    /// Loaded, for their run statistics (kept after detaching).
    programs: Vec<Program>,
    counts: Map,
    missed: Map,
    names: Map,
    slots: Map,
    possible: Vec<u32>,
    /// Hooks this kernel does not have, for -v.
    pub absent: Vec<String>,
    /// How the programs read packet bytes, for -v.
    pub reads: Reads,
}

impl PathProbes {
    /// Loads and attaches the programs for `filter`, BTF-typed (tp_btf):
    /// the receiving ones (driver, reads) with `rx`, the sending ones
    /// with `tx`.
    pub fn attach(btf: &Btf, filter: Filter, rx: bool, tx: bool) -> Result<PathProbes, ProbeError> {
        PathProbes::attach_reading(btf, filter, rx, tx, Reads::Direct)
    }

    /// [`PathProbes::attach`], reading packet bytes as `reads` says (or
    /// copying them, where the kernel refuses plain loads).
    pub(crate) fn attach_reading(
        btf: &Btf,
        filter: Filter,
        rx: bool,
        tx: bool,
        reads: Reads,
    ) -> Result<PathProbes, ProbeError> {
        let layout = Layout::from_btf(btf)?;
        let possible: Vec<u32> = super::possible_cpus()?;
        let counts = Map::create(
            MapType::PercpuHash,
            "rxtxcpu_path",
            KEY_SIZE,
            8,
            MAX_ENTRIES,
            0,
        )
        .map_err(|e| ProbeError::os("error creating the path counters".into(), e))?;
        let missed = Map::create(MapType::Array, "rxtxcpu_pathmis", 4, 8, 1, 0)
            .map_err(|e| ProbeError::os("error creating the path counters".into(), e))?;
        let names = Map::create(MapType::Hash, "rxtxcpu_pathnam", 4, NAME_SIZE, MAX_NAMES, 0)
            .map_err(|e| ProbeError::os("error creating the path counters".into(), e))?;
        // Every cpu id the kernel may give (the possible cpus' largest,
        // plus one).
        let cpu_ids = possible.iter().max().map_or(1, |&c| c + 1);
        let slots = Map::create(
            MapType::Array,
            "rxtxcpu_pathslt",
            4,
            SLOT_SIZE,
            cpu_ids << SLOT_BITS,
            BPF_F_MMAPABLE,
        )
        .map_err(|e| ProbeError::os("error creating the path counters".into(), e))?;
        let mut probes = PathProbes {
            attached: Vec::new(),
            programs: Vec::new(),
            counts,
            missed,
            names,
            slots,
            possible,
            absent: Vec::new(),
            reads,
        };
        let skb = |tp: &str| -> Result<Option<usize>, ProbeError> {
            let params = match btf.raw_tp_params(tp) {
                Ok(p) => p,
                Err(crate::sys::btf::BtfError::Missing(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            btf.param_position(&params, "struct sk_buff *")
                .map(Some)
                .ok_or_else(|| ProbeError::Kernel(format!("the kernel's {tp} has no packet")))
        };
        let packet = |stage, l3, pick| {
            move |skb_arg| Shape::Packet {
                stage,
                skb_arg,
                l3,
                pick,
            }
        };
        let mut hooks: Vec<(&str, Option<Shape>)> = Vec::new();
        if rx {
            for tp in RX_HOOKS {
                let shape = skb(tp)?.map(packet(Stage::RxDriver, L3::Data, Pick::Device));
                hooks.push((tp, shape));
            }
            let shape = skb("skb_copy_datagram_iovec")?.map(packet(
                Stage::Read,
                L3::NetworkHeader,
                Pick::TcpSocket,
            ));
            hooks.push(("skb_copy_datagram_iovec", shape));
            hooks.push(("sock_recv_length", udp_read(btf)?));
        }
        if tx {
            let shape =
                skb("net_dev_queue")?.map(packet(Stage::Send, L3::NetworkHeader, Pick::Device));
            hooks.push(("net_dev_queue", shape));
            let shape = skb("net_dev_start_xmit")?.map(packet(
                Stage::TxDriver,
                L3::NetworkHeader,
                Pick::Device,
            ));
            hooks.push(("net_dev_start_xmit", shape));
        }
        for (tp, shape) in hooks {
            let Some(shape) = shape else {
                probes.absent.push(tp.to_string());
                continue;
            };
            let hook = Hook::tp_btf(tp);
            let maps = Maps {
                counts: probes.counts.as_raw_fd(),
                missed: probes.missed.as_raw_fd(),
                names: probes.names.as_raw_fd(),
                slots: probes.slots.as_raw_fd(),
            };
            let load = |reads| {
                let insns = program(&layout, &filter, shape, maps, reads);
                tracing::load(btf, &hook, "rxtxcpu_path", &insns)
            };
            let prog = match load(probes.reads) {
                // Kernels before 6.18 refuse plain loads of packet bytes
                // (no BTF type): the copying program, for this one and
                // the rest. Another refusal is the copying program's to
                // say.
                Err(ProbeError::Load { .. }) if probes.reads == Reads::Direct => {
                    probes.reads = Reads::Helper;
                    load(Reads::Helper)?
                }
                other => other?,
            };
            let attached = tracing::attach(&prog, &hook)?;
            probes.attached.push(attached);
            probes.programs.push(prog);
        }
        Ok(probes)
    }

    /// Where they are attached, for -v.
    pub fn attached(&self) -> impl Iterator<Item = &Attached> {
        self.attached.iter()
    }

    /// Detaches the programs (they stay loaded for their statistics):
    /// nothing moves between the slots and the hash map while
    /// [`PathProbes::counts`] reads them.
    pub fn detach(&mut self) {
        self.attached.clear();
    }

    /// The programs' run statistics, summed.
    pub fn run_stats(&self) -> io::Result<RunStats> {
        let mut sum = RunStats::default();
        for p in &self.programs {
            let s = tracing::run_stats(p)?;
            sum.run_time_ns += s.run_time_ns;
            sum.run_cnt += s.run_cnt;
            sum.recursion_misses += s.recursion_misses;
        }
        Ok(sum)
    }

    /// Packets not counted because the map was full.
    pub fn missed(&self) -> io::Result<u64> {
        let mut v = [0u8; 8];
        self.missed.lookup(&0u32.to_ne_bytes(), &mut v)?;
        Ok(u64::from_ne_bytes(v))
    }

    /// What was counted, per key and cpu (nonzero counts only), with
    /// the processes' names: the hash map's counts plus the slots'. Read
    /// once the programs are detached ([`PathProbes::detach`]); a map
    /// changing under the walk may skip keys.
    pub fn counts(&self) -> io::Result<Vec<PathCount>> {
        let key_size = KEY_SIZE as usize;
        let mut sums: HashMap<([u8; KEY_SIZE as usize], u32), u64> = HashMap::new();
        let mut key = [0u8; KEY_SIZE as usize];
        let mut next = [0u8; KEY_SIZE as usize];
        let mut values = vec![0u8; 8 * self.possible.len()];
        let mut first = true;
        while self
            .counts
            .next_key((!first).then_some(&key[..]), &mut next)?
        {
            first = false;
            key = next;
            match self.counts.lookup(&key, &mut values) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(e),
            }
            for (i, &cpu) in self.possible.iter().enumerate() {
                let packets = u64_at(&values, i * 8);
                if packets > 0 {
                    *sums.entry((key, cpu)).or_default() += packets;
                }
            }
        }
        // Each cpu's slots.
        let mut slot = [0u8; SLOT_SIZE as usize];
        for &cpu in &self.possible {
            for index in 0..SLOTS {
                self.slots
                    .lookup(&(cpu << SLOT_BITS | index).to_ne_bytes(), &mut slot)?;
                let packets = u64_at(&slot, SLOT_COUNT);
                if packets > 0 {
                    key.copy_from_slice(&slot[..key_size]);
                    *sums.entry((key, cpu)).or_default() += packets;
                }
            }
        }
        let mut out = Vec::new();
        for ((key, cpu), packets) in sums {
            let Some(mut k) = decode(&key) else { continue };
            if let Process::Named { pid, name } = &mut k.task {
                *name = self.name(*pid)?;
            }
            out.push(PathCount { cpu, packets, ..k });
        }
        Ok(out)
    }
}

#[cfg(test)]
impl PathProbes {
    /// Packets counted in the hash map (the rest are in the slots).
    pub(crate) fn in_hash(&self) -> u64 {
        let mut key = [0u8; KEY_SIZE as usize];
        let mut next = [0u8; KEY_SIZE as usize];
        let mut values = vec![0u8; 8 * self.possible.len()];
        let (mut first, mut sum) = (true, 0);
        while self
            .counts
            .next_key((!first).then_some(&key[..]), &mut next)
            .unwrap()
        {
            first = false;
            key = next;
            self.counts.lookup(&key, &mut values).unwrap();
            sum += (0..self.possible.len())
                .map(|i| u64_at(&values, i * 8))
                .sum::<u64>();
        }
        sum
    }
}

/// The native-endian u64 at `at`.
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

impl PathProbes {
    /// The name the programs recorded for process `pid` ("?" when the
    /// names map was full).
    fn name(&self, pid: u32) -> io::Result<String> {
        let mut v = [0u8; NAME_SIZE as usize];
        match self.names.lookup(&pid.to_ne_bytes(), &mut v) {
            Ok(()) => {
                let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
                Ok(String::from_utf8_lossy(&v[..end]).into_owned())
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok("?".into()),
            Err(e) => Err(e),
        }
    }
}

/// The shape of the `sock:sock_recv_length` program, if the kernel has
/// the tracepoint: (socket, length or error, flags).
fn udp_read(btf: &Btf) -> Result<Option<Shape>, ProbeError> {
    let params = match btf.raw_tp_params("sock_recv_length") {
        Ok(p) => p,
        Err(crate::sys::btf::BtfError::Missing(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let sock_arg = btf.param_position(&params, "struct sock *");
    let ints: Vec<usize> = params
        .iter()
        .enumerate()
        .filter(|(_, p)| btf.bare_type_name(p.type_id) == "int")
        .map(|(i, _)| i)
        .collect();
    match (sock_arg, ints.as_slice()) {
        (Some(sock_arg), [ret_arg, flags_arg]) => Ok(Some(Shape::UdpRead {
            sock_arg,
            ret_arg: *ret_arg,
            flags_arg: *flags_arg,
        })),
        _ => Err(ProbeError::Kernel(
            "the kernel's sock:sock_recv_length is not (socket, int, int)".into(),
        )),
    }
}

/// A key as the programs make it (see [`super::path_program`]), its cpu
/// and count left for the caller, the process's name for
/// [`PathProbes::counts`]. None for a key no program makes.
fn decode(k: &[u8; KEY_SIZE as usize]) -> Option<PathCount> {
    let stage = Stage::from_u8(k[K_STAGE])?;
    let queue_mapping = u16::from_ne_bytes([k[K_QUEUE], k[K_QUEUE + 1]]);
    let queue = match stage {
        Stage::RxDriver => queue_mapping.checked_sub(1).map(u32::from),
        Stage::Send | Stage::TxDriver => Some(u32::from(queue_mapping)),
        Stage::Read => None,
    };
    let task = match k[K_CTX] {
        0 => Process::None,
        CTX_TASK => Process::Named {
            pid: u32::from_ne_bytes([k[K_PID], k[K_PID + 1], k[K_PID + 2], k[K_PID + 3]]),
            name: String::new(),
        },
        CTX_IRQ => Process::Kernel,
        _ => Process::Unknown,
    };
    let ports = (k[K_HAS_PORTS] == 1).then(|| {
        (
            u16::from_be_bytes([k[K_PORTS], k[K_PORTS + 1]]),
            u16::from_be_bytes([k[K_PORTS + 2], k[K_PORTS + 3]]),
        )
    });
    let addr = |at: usize, v4: bool| -> IpAddr {
        if v4 {
            IpAddr::V4(Ipv4Addr::new(k[at], k[at + 1], k[at + 2], k[at + 3]))
        } else {
            let mut b = [0u8; 16];
            b.copy_from_slice(&k[at..at + 16]);
            let a = Ipv6Addr::from(b);
            // A v6 socket's peer that is an IPv4 address: the packets
            // are IPv4.
            a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4)
        }
    };
    let flow = match k[K_VERSION] {
        4 | 6 => {
            let v4 = k[K_VERSION] == 4;
            Some(FlowKey::ip(
                addr(K_SRC, v4),
                addr(K_DST, v4),
                k[K_PROTO],
                ports,
            ))
        }
        0 if stage == Stage::Read => None,
        _ => return None,
    };
    Some(PathCount {
        stage: match stage {
            Stage::RxDriver => PathStage::RxDriver,
            Stage::Send => PathStage::Send,
            Stage::TxDriver => PathStage::TxDriver,
            Stage::Read => PathStage::Read,
        },
        flow,
        queue,
        task,
        cpu: 0,
        packets: 0,
    })
}
