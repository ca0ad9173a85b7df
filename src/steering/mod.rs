//! Where the kernel should put a packet: a device's steering configuration
//! (RPS, RFS, XPS from sysfs and procfs, RSS from ethtool, the queues'
//! interrupts), read once when a capture starts, and pure functions that
//! apply the kernel's rules to one packet.
//!
//! The rules are those of net/core/dev.c:
//! - RPS, `get_rps_cpu()`: the receive queue is the recorded one, else 0.
//!   With that queue's map (`rps_cpus`), a non-zero flow hash picks
//!   `map[(hash * len) >> 32]` (`reciprocal_scale`); a hash of 0 is not
//!   steered. If the picked cpu is offline, the packet stays on the cpu that
//!   received it. Which queue a packet came in on is not in the ring of a
//!   capture by cpu (tpacket3_hdr and PACKET_AUXDATA carry no
//!   queue_mapping; only a fanout program sees it) and virtual devices
//!   choose it from what the peer did (veth keeps the peer's transmit
//!   queue): where queues steer differently, the cpu is predicted only
//!   from a queue that is known ([`expected_rx_cpu`]), else only when
//!   every kind of queue agrees ([`expected_rx_cpu_any_queue`]).
//! - RFS: when the global socket flow table
//!   (`/proc/sys/net/core/rps_sock_flow_entries`) and the queue's flow table
//!   (`rps_flow_cnt`) both exist, a flow whose socket was read somewhere
//!   goes to the cpu that read it (and flows without a socket fall back to
//!   RPS). That depends on the application, so it is not predicted.
//! - XPS, `get_xps_queue()`: first, if any device has `xps_rxqs` and the
//!   sending socket has a recorded receive queue (TCP records the queue
//!   its last segment came in on), that receive queue's map; else the
//!   map of the sending cpu (`xps_cpus`). A map of one queue gives that
//!   queue, of several `queues[reciprocal_scale(hash, len)]`. No map: the
//!   socket hash (`skb_tx_hash`), i.e. nothing to predict. A device with one
//!   transmit queue always uses it, XPS or not.
//! - RSS (the NIC): `indirection[hash % size]` picks the receive queue; its
//!   interrupt's cpu runs the receive (and RPS may then move it). The hash
//!   is the NIC's, which the flow hash a capture sees is only sometimes:
//!   `skb_get_hash()` replaces a hash the driver marked as not covering the
//!   ports (PKT_HASH_TYPE_L3) with the kernel's own, and a device without
//!   NETIF_F_RXHASH reports none. So the queue is computed here, as the
//!   NIC's Toeplitz hash of the flow's tuple ([`Config::rss_queue_of`]).
//!
//! The RPS and XPS maps are built when `rps_cpus` / `xps_cpus` are
//! written, from the mask AND the cpus online at that moment, and reading
//! the file back shows that map, not the mask written (verified on 6.18:
//! writing 3 with cpu1 offline reads back 1, and still 1 once cpu1 is back;
//! a cpu that goes offline after the write stays in the map). So the map
//! read here is the kernel's, and a cpu of it that is offline now gets the
//! offline fallback. What sysfs does not show is the order of a cpu's
//! queues in its XPS map: the order in which the queues' `xps_cpus` were
//! written (verified: with tx-1 written before tx-0, every flow of a cpu
//! mapped to both goes to the other queue than increasing order predicts).

pub mod expect;
pub mod nic_hash;
pub mod path;
pub mod rss;

use std::io;
use std::path::{Path, PathBuf};

use crate::cpuset::CpuSet;
use crate::steering::rss::{Fields, Tuple};
use crate::sys::ethtool::{self, FlowType, QueueIrq, Rss};

pub use crate::consumers::flows::{Expectation, Mechanism};
pub use nic_hash::{rss_hash_command, NicHash};

/// One receive queue's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RxQueue {
    pub index: u32,
    /// The RPS map: the cpus of `rps_cpus` in increasing order, the order
    /// in which the kernel built the map. Empty: no RPS.
    pub rps_map: Vec<u32>,
    /// `rps_flow_cnt`: the size of the queue's RFS flow table.
    pub rps_flow_cnt: u32,
    /// The queue's interrupt, where the kernel or the driver's naming tells.
    pub irq: Option<QueueIrq>,
}

/// One transmit queue's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxQueue {
    pub index: u32,
    /// `xps_cpus`: the cpus that send on this queue. None when the file is
    /// absent or unreadable (devices with one transmit queue have none).
    pub xps_cpus: Option<CpuSet>,
    /// `xps_rxqs`: the receive queues whose sockets send on this queue.
    pub xps_rxqs: Option<CpuSet>,
}

/// A device's steering configuration, read when the capture starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub ifname: String,
    pub rx: Vec<RxQueue>,
    pub tx: Vec<TxQueue>,
    /// None when not visible: the file exists only in the initial network
    /// namespace (the table it sizes is global).
    pub rps_sock_flow_entries: Option<u32>,
    /// The cpus online when the configuration was read.
    pub online: CpuSet,
    /// The NIC's RSS table and key, if it has them.
    pub rss: Option<Rss>,
    /// The fields the NIC hashes, by flow type, where it says.
    pub hash_fields: Vec<(FlowType, Fields)>,
    /// What could not be read or does not apply, for `-v`.
    pub notes: Vec<String>,
}

/// `reciprocal_scale()`: `val` scaled to `0..n` by the high bits.
pub fn reciprocal_scale(val: u32, n: u32) -> u32 {
    ((u64::from(val) * u64::from(n)) >> 32) as u32
}

fn read_trimmed(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path).map(|s| s.trim().to_string())
}

/// Reads the queues under `dir` (`/sys/class/net/IF/queues`): `rx-N/`
/// and `tx-N/`, sorted by N. Files that cannot be read are left unset and
/// noted.
pub fn read_queues(dir: &Path, notes: &mut Vec<String>) -> (Vec<RxQueue>, Vec<TxQueue>) {
    let mut rx = Vec::new();
    let mut tx = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            notes.push(format!(
                "cannot read {}: {} (no RPS or XPS information)",
                dir.display(),
                crate::error::Why(e)
            ));
            return (rx, tx);
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if let Some(n) = name.strip_prefix("rx-").and_then(|n| n.parse::<u32>().ok()) {
            rx.push(read_rx_queue(n, &path, notes));
        } else if let Some(n) = name.strip_prefix("tx-").and_then(|n| n.parse::<u32>().ok()) {
            tx.push(read_tx_queue(n, &path, notes));
        }
    }
    rx.sort_by_key(|q| q.index);
    tx.sort_by_key(|q| q.index);
    (rx, tx)
}

fn read_mask(path: &Path, notes: &mut Vec<String>) -> Option<CpuSet> {
    match read_trimmed(path) {
        Ok(s) => {
            let set = CpuSet::parse_mask(&s);
            if set.is_none() {
                notes.push(format!("{}: cannot parse {s:?}", path.display()));
            }
            set
        }
        // xps_cpus of a device with one transmit queue: the kernel hides
        // it (ENOENT on reading; the file may still be listed).
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            notes.push(format!(
                "cannot read {}: {}",
                path.display(),
                crate::error::Why(e)
            ));
            None
        }
    }
}

fn read_rx_queue(index: u32, dir: &Path, notes: &mut Vec<String>) -> RxQueue {
    let rps_map = read_mask(&dir.join("rps_cpus"), notes)
        .map(|s| s.iter().collect())
        .unwrap_or_default();
    let rps_flow_cnt = match read_trimmed(&dir.join("rps_flow_cnt")) {
        Ok(s) => s.parse().unwrap_or(0),
        Err(_) => 0,
    };
    RxQueue {
        index,
        rps_map,
        rps_flow_cnt,
        irq: None,
    }
}

fn read_tx_queue(index: u32, dir: &Path, notes: &mut Vec<String>) -> TxQueue {
    TxQueue {
        index,
        xps_cpus: read_mask(&dir.join("xps_cpus"), notes),
        xps_rxqs: read_mask(&dir.join("xps_rxqs"), notes),
    }
}

/// `/proc/sys/net/core/rps_sock_flow_entries`; None where not visible.
pub fn read_sock_flow_entries(path: &Path) -> Option<u32> {
    read_trimmed(path).ok()?.parse().ok()
}

impl Config {
    /// Reads `ifname`'s configuration: sysfs (which shows the network
    /// namespace it was mounted in: run inside `ip netns exec`, as
    /// usual), procfs, ethtool and the queues' interrupts. Never fails:
    /// what cannot be read is absent, with a note.
    pub fn read(ifname: &str) -> Config {
        let mut notes = Vec::new();
        let class = PathBuf::from(format!("/sys/class/net/{ifname}"));
        let ifindex = crate::sys::afpacket::ifindex(ifname);
        let sysfs_ifindex = read_trimmed(&class.join("ifindex"))
            .ok()
            .and_then(|s| s.parse::<u32>().ok());
        let (mut rx, tx) = match (&ifindex, sysfs_ifindex) {
            // sysfs shows the network namespace it was mounted in, which
            // may not be this thread's (nsenter, setns without a remount).
            (Ok(mine), Some(theirs)) if *mine != theirs => {
                notes.push(format!(
                    "{} is another network namespace's interface (ifindex {theirs}, not {mine}): \
                     no RPS or XPS information (run under `ip netns exec`, which mounts the \
                     namespace's sysfs)",
                    class.display()
                ));
                (Vec::new(), Vec::new())
            }
            _ => read_queues(&class.join("queues"), &mut notes),
        };
        let entries = read_sock_flow_entries(Path::new("/proc/sys/net/core/rps_sock_flow_entries"));
        if entries.is_none() {
            notes.push(
                "rps_sock_flow_entries is not visible in this network namespace: \
                 a queue with rps_flow_cnt may be steered by RFS"
                    .into(),
            );
        }
        let rss = match ethtool::rss(ifname) {
            Ok(Some(r)) => Some(r),
            Ok(None) => {
                notes.push("no RSS indirection table or key (the driver reports none)".into());
                None
            }
            Err(e) => {
                notes.push(format!(
                    "cannot read the RSS configuration: {}",
                    crate::error::Why(e)
                ));
                None
            }
        };
        let mut hash_fields = Vec::new();
        if rss.as_ref().is_some_and(|r| !r.key.is_empty()) {
            for flow in FlowType::ALL {
                if let Ok(Some(bits)) = ethtool::rx_hash_fields(ifname, flow) {
                    hash_fields.push((flow, Fields::from_rxh(bits)));
                }
            }
        }
        match ifindex {
            Ok(ifindex) => {
                for q in &mut rx {
                    q.irq = ethtool::rx_queue_irq(ifname, ifindex, q.index);
                }
            }
            Err(e) => notes.push(format!(
                "cannot find the interface: {}",
                crate::error::Why(e)
            )),
        }
        if rx.iter().all(|q| q.irq.is_none()) && !rx.is_empty() {
            notes.push("no receive queue interrupts found (a virtual device, or a driver that does not say)".into());
        }
        Config {
            ifname: ifname.to_string(),
            rx,
            tx,
            rps_sock_flow_entries: entries,
            online: crate::vantage::machine::online(),
            rss,
            hash_fields,
            notes,
        }
    }

    /// Receive queue `index` (sysfs lists them all, 0 to n-1).
    pub fn rx_queue(&self, index: u32) -> Option<&RxQueue> {
        self.rx
            .get(index as usize)
            .filter(|q| q.index == index)
            .or_else(|| self.rx.iter().find(|q| q.index == index))
    }

    fn rfs_on(&self, q: &RxQueue) -> bool {
        q.rps_flow_cnt > 0 && self.rps_sock_flow_entries != Some(0)
    }

    /// The receive queue the RSS table gives a flow of `tuple` and type
    /// `flow`: `table[hash % size]` of the NIC's Toeplitz hash of the
    /// tuple over the fields it hashes for the flow type, computed from
    /// the device's key. Not from the flow hash the capture saw, which is
    /// the NIC's only where the driver reported one covering the ports
    /// (see the module's notes). None where it cannot be computed: no
    /// table, no key, another function, a transformed input, no word from
    /// the device about the flow type's fields.
    pub fn rss_queue_of(&self, tuple: &Tuple, flow: FlowType) -> Option<u32> {
        let rss = self
            .rss
            .as_ref()
            .filter(|r| r.hash_is_reproducible() && !r.indirection.is_empty())?;
        let fields = self.hash_fields.iter().find(|(f, _)| *f == flow)?.1;
        let h = crate::steering::rss::hash(&rss.key, tuple, fields).ok()?;
        crate::steering::rss::queue_for(h, &rss.indirection)
    }

    /// One receive queue of each kind, in increasing order: queues with
    /// the same RPS map, RFS on or off alike and the same interrupt cpu
    /// steer every packet alike, so where a packet's queue is not known
    /// the prediction is sound when the kinds agree (a device with one
    /// queue, or with the same `rps_cpus` written to every queue: one
    /// kind). Empty when no queue is known.
    pub fn rx_queue_kinds(&self) -> Vec<u32> {
        // What steers a packet of queue q: its RPS map, RFS, its
        // interrupt's cpu (where nothing moves the packet on).
        let how = |q: &RxQueue| (q.rps_map.clone(), self.rfs_on(q), self.irq_cpu(q.index));
        let mut kinds: Vec<&RxQueue> = Vec::new();
        for q in &self.rx {
            if !kinds.iter().any(|k| how(k) == how(q)) {
                kinds.push(q);
            }
        }
        kinds.iter().map(|q| q.index).collect()
    }

    /// The one cpu that runs `queue`'s receive interrupt, if it is one.
    pub fn irq_cpu(&self, queue: u32) -> Option<u32> {
        let irq = self.rx_queue(queue)?.irq.as_ref()?;
        if irq.napi_pid.is_some() {
            return None; // threaded NAPI: a kernel thread, wherever it runs
        }
        let cpus = irq.affinity.as_ref()?.cpus();
        (cpus.len() == 1).then(|| cpus.iter().next()).flatten()
    }

    /// The mechanism that steers received packets, for `-v`: the first of
    /// rfs, rps, rss of any queue, else none.
    pub fn rx_mechanism(&self) -> Mechanism {
        if self.rx.iter().any(|q| self.rfs_on(q)) {
            Mechanism::Rfs
        } else if self.rx.iter().any(|q| !q.rps_map.is_empty()) {
            Mechanism::Rps
        } else if self.rss.as_ref().is_some_and(|r| !r.indirection.is_empty()) {
            Mechanism::Rss
        } else {
            Mechanism::None
        }
    }

    /// The mechanism that picks transmit queues: xps or none.
    pub fn tx_mechanism(&self) -> Mechanism {
        let any = |f: fn(&TxQueue) -> Option<&CpuSet>| {
            self.tx.iter().any(|q| f(q).is_some_and(|s| !s.is_empty()))
        };
        if self.tx.len() > 1 && (any(|q| q.xps_cpus.as_ref()) || any(|q| q.xps_rxqs.as_ref())) {
            Mechanism::Xps
        } else {
            Mechanism::None
        }
    }

    /// What was read, one line each, for `-v`.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        let dev = &self.ifname;
        for q in &self.rx {
            let map: CpuSet = q.rps_map.iter().copied().collect();
            let rps = if map.is_empty() {
                "none".to_string()
            } else {
                map.to_string()
            };
            let mut line = format!(
                "{dev}: rx-{}: rps_cpus {rps}, rps_flow_cnt {}",
                q.index, q.rps_flow_cnt
            );
            if let Some(irq) = &q.irq {
                let how = match (&irq.source, &irq.name) {
                    (ethtool::IrqSource::ProcInterrupts, Some(n)) => {
                        format!("{n} in /proc/interrupts")
                    }
                    (ethtool::IrqSource::ProcInterrupts, None) => "/proc/interrupts".to_string(),
                    (ethtool::IrqSource::Netlink, _) => "netdev netlink".to_string(),
                };
                line += &format!(", irq {} ({how})", irq.irq);
                if let Some(a) = &irq.affinity {
                    line += &format!(", irq cpus {}", a.cpus());
                }
                if let Some(pid) = irq.napi_pid {
                    line += &format!(", threaded napi pid {pid}");
                }
            }
            out.push(line);
        }
        for q in &self.tx {
            let show = |s: &Option<CpuSet>| match s {
                Some(s) if !s.is_empty() => s.to_string(),
                _ => "none".to_string(),
            };
            out.push(format!(
                "{dev}: tx-{}: xps_cpus {}, xps_rxqs {}",
                q.index,
                show(&q.xps_cpus),
                show(&q.xps_rxqs)
            ));
        }
        if let Some(n) = self.rps_sock_flow_entries {
            out.push(format!("rps_sock_flow_entries {n}"));
        }
        if let Some(r) = &self.rss {
            out.push(format!(
                "{dev}: rss: {} entries, {}-byte key, hash function {}{}",
                r.indirection.len(),
                r.key.len(),
                r.hash_function().name(),
                if r.input_xfrm != 0 {
                    ", input transformed (symmetric)"
                } else {
                    ""
                }
            ));
        }
        for (flow, fields) in &self.hash_fields {
            out.push(format!(
                "{dev}: rss hashes {} over {}",
                flow.name(),
                fields.letters()
            ));
        }
        out.extend(self.notes.iter().map(|n| format!("{dev}: {n}")));
        out.push(format!(
            "{dev}: receive steering {}, transmit steering {}",
            self.rx_mechanism(),
            self.tx_mechanism()
        ));
        out
    }
}

/// The cpu a received packet that came in on receive queue `rx_queue`
/// should be processed (and captured) on. `rx_queue` is the recorded
/// queue, or the one the RSS table gives ([`Config::rss_queue_of`]); 0 for
/// a packet known to have none recorded (`get_rps_cpu()` then uses queue
/// 0). `hash` is the packet's flow hash (`tp_rxhash`, what RPS steers
/// by). `receiving_cpu` is the cpu that received the packet before any
/// steering, if known; None means the queue's interrupt cpu when that is
/// a single cpu.
pub fn expected_rx_cpu(
    config: &Config,
    rx_queue: u32,
    hash: u32,
    receiving_cpu: Option<u32>,
) -> Expectation {
    let receiving = receiving_cpu.or_else(|| config.irq_cpu(rx_queue));
    let Some(queue) = config.rx_queue(rx_queue) else {
        // A queue the device does not have: get_rps_cpu() warns and does
        // not steer.
        return Expectation {
            stream: receiving,
            by: Mechanism::None,
        };
    };
    let rfs = config.rfs_on(queue);
    let rps = !queue.rps_map.is_empty();
    // get_rps_cpu() does not steer a packet whose hash is 0.
    if hash == 0 && (rfs || rps) {
        return Expectation {
            stream: receiving,
            by: if rfs { Mechanism::Rfs } else { Mechanism::Rps },
        };
    }
    if rfs {
        return Expectation {
            stream: None,
            by: Mechanism::Rfs,
        };
    }
    if rps {
        let len = queue.rps_map.len() as u32;
        let cpu = queue.rps_map[reciprocal_scale(hash, len) as usize];
        let stream = if config.online.contains(cpu) {
            Some(cpu)
        } else {
            receiving
        };
        return Expectation {
            stream,
            by: Mechanism::Rps,
        };
    }
    let has_table = config
        .rss
        .as_ref()
        .is_some_and(|r| !r.indirection.is_empty());
    Expectation {
        stream: receiving,
        by: if has_table {
            Mechanism::Rss
        } else {
            Mechanism::None
        },
    }
}

/// The stream of a received packet whose receive queue is not known:
/// [`expected_rx_cpu`] on one queue of each kind (`kinds`, from
/// [`Config::rx_queue_kinds`]), each cpu turned into the vantage's stream
/// by `stream_of` (the cpu itself, or its numa node). Where the kinds
/// agree that is the prediction; where they differ the queue decides, and
/// nothing is predicted (a guess would mark flows that went exactly where
/// their queue sends them as off their stream). The mechanism is then the
/// device's ([`Config::rx_mechanism`]).
pub fn expected_rx_cpu_any_queue(
    config: &Config,
    kinds: &[u32],
    hash: u32,
    stream_of: impl Fn(u32) -> Option<u32>,
) -> Expectation {
    let each = |q: u32| {
        let e = expected_rx_cpu(config, q, hash, None);
        Expectation {
            stream: e.stream.and_then(&stream_of),
            by: e.by,
        }
    };
    // No queue known at all (sysfs unreadable): queue 0, which the device
    // may not have.
    let first = each(kinds.first().copied().unwrap_or(0));
    if kinds.iter().skip(1).all(|&q| each(q) == first) {
        first
    } else {
        Expectation {
            stream: None,
            by: config.rx_mechanism(),
        }
    }
}

/// The receive queue of a received packet (queue captures): the one the
/// RSS table gives its flow (`rss_queue`, from [`Config::rss_queue_of`]);
/// the only queue of a single-queue device.
pub fn expected_rx_queue(config: &Config, rss_queue: Option<u32>) -> Expectation {
    match rss_queue {
        Some(q) => Expectation {
            stream: Some(q),
            by: Mechanism::Rss,
        },
        None => Expectation {
            stream: (config.rx.len() == 1).then_some(0),
            by: Mechanism::None,
        },
    }
}

/// The transmit queue XPS picks for a packet sent from `sending_cpu` with
/// flow hash `hash` (`tp_rxhash` of the captured packet: the socket's
/// transmit hash). `socket_rx_queue` is the receive queue the sending
/// socket recorded, which a capture cannot know: pass None, and on a
/// device with `xps_rxqs` a TCP socket's packets may go elsewhere.
///
/// The order of a cpu's queues in the kernel's map is the order in which
/// the queues' `xps_cpus` were written, which sysfs does not show; this
/// takes increasing queue order (how drivers and scripts write them). It
/// matters only for a cpu mapped to several queues.
pub fn expected_tx_queue(
    config: &Config,
    sending_cpu: u32,
    socket_rx_queue: Option<u32>,
    hash: u32,
) -> Expectation {
    if config.tx.len() == 1 {
        return Expectation {
            stream: Some(0),
            by: Mechanism::None,
        };
    }
    // The queues whose `set` holds `member`, in increasing order; no
    // allocation: this may run for every packet.
    let pick = |member: u32, set: fn(&TxQueue) -> Option<&CpuSet>| {
        let queues = || {
            config
                .tx
                .iter()
                .filter(move |q| set(q).is_some_and(|s| s.contains(member)))
                .map(|q| q.index)
        };
        match queues().count() {
            0 => None,
            1 => queues().next(),
            n => queues().nth(reciprocal_scale(hash, n as u32) as usize),
        }
    };
    let rxqs_configured = config
        .tx
        .iter()
        .any(|q| q.xps_rxqs.as_ref().is_some_and(|s| !s.is_empty()));
    let by_rxq = match socket_rx_queue {
        Some(rxq) if rxqs_configured => pick(rxq, |q| q.xps_rxqs.as_ref()),
        _ => None,
    };
    match by_rxq.or_else(|| pick(sending_cpu, |q| q.xps_cpus.as_ref())) {
        Some(q) => Expectation {
            stream: Some(q),
            by: Mechanism::Xps,
        },
        None => Expectation {
            stream: None,
            by: Mechanism::None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::nic_hash::*;
    use super::*;

    fn cpus(s: &str) -> CpuSet {
        CpuSet::parse_list(s).unwrap()
    }

    fn rxq(index: u32, map: &[u32]) -> RxQueue {
        RxQueue {
            index,
            rps_map: map.to_vec(),
            ..RxQueue::default()
        }
    }

    fn config(rx: Vec<RxQueue>) -> Config {
        Config {
            ifname: "t0".into(),
            rx,
            tx: vec![TxQueue::default()],
            rps_sock_flow_entries: Some(0),
            online: cpus("0-3"),
            ..Config::default()
        }
    }

    #[test]
    fn reciprocal_scale_is_the_kernels() {
        assert_eq!(reciprocal_scale(0, 3), 0);
        assert_eq!(reciprocal_scale(u32::MAX, 3), 2);
        assert_eq!(reciprocal_scale(0x8000_0000, 2), 1);
        assert_eq!(reciprocal_scale(0x7fff_ffff, 2), 0);
        assert_eq!(reciprocal_scale(0x5555_5556, 3), 1);
        assert_eq!(reciprocal_scale(12345, 1), 0);
    }

    #[test]
    fn rps_picks_from_the_map_by_the_high_bits() {
        let c = config(vec![rxq(0, &[1, 3])]);
        let e = |h| expected_rx_cpu(&c, 0, h, Some(0));
        assert_eq!(
            e(0x0000_0001),
            Expectation {
                stream: Some(1),
                by: Mechanism::Rps
            }
        );
        assert_eq!(
            e(0x7fff_ffff),
            Expectation {
                stream: Some(1),
                by: Mechanism::Rps
            }
        );
        assert_eq!(
            e(0x8000_0000),
            Expectation {
                stream: Some(3),
                by: Mechanism::Rps
            }
        );
        // Hash 0 is never steered: it stays where it was received.
        assert_eq!(
            e(0),
            Expectation {
                stream: Some(0),
                by: Mechanism::Rps
            }
        );
        assert_eq!(expected_rx_cpu(&c, 0, 0, None).stream, None);
        // One queue: which queue a packet came in on cannot matter.
        assert_eq!(c.rx_queue_kinds(), [0]);
        assert_eq!(
            expected_rx_cpu_any_queue(&c, &[0], 0x8000_0000, Some),
            e(0x8000_0000)
        );
    }

    #[test]
    fn rps_uses_the_queue_and_falls_back_for_offline_cpus() {
        let mut c = config(vec![rxq(0, &[0]), rxq(1, &[2, 3])]);
        assert_eq!(expected_rx_cpu(&c, 1, 0xffff_ffff, None).stream, Some(3));
        // Queue 0 (also: none recorded).
        assert_eq!(expected_rx_cpu(&c, 0, 0xffff_ffff, Some(1)).stream, Some(0));
        // A map cpu that went offline after rps_cpus was written.
        c.online = cpus("0-2");
        assert_eq!(
            expected_rx_cpu(&c, 1, 0xffff_ffff, Some(1)),
            Expectation {
                stream: Some(1),
                by: Mechanism::Rps
            }
        );
        assert_eq!(expected_rx_cpu(&c, 1, 0x7fff_ffff, Some(1)).stream, Some(2));
        // A queue the device does not have is not steered.
        assert_eq!(
            expected_rx_cpu(&c, 7, 1, Some(1)),
            Expectation {
                stream: Some(1),
                by: Mechanism::None
            }
        );
    }

    /// The veth: rx-0 steers to cpu1, rx-1 to cpu0, rx-2 not at
    /// all. Without the queue, no cpu is predicted, whatever the hash.
    #[test]
    fn queues_that_steer_differently_predict_nothing_without_the_queue() {
        let mut c = config(vec![rxq(0, &[1]), rxq(1, &[0]), rxq(2, &[])]);
        let kinds = c.rx_queue_kinds();
        assert_eq!(kinds, [0, 1, 2]);
        for hash in [0, 1, 0x8000_0000, u32::MAX] {
            assert_eq!(
                expected_rx_cpu_any_queue(&c, &kinds, hash, Some),
                Expectation {
                    stream: None,
                    by: Mechanism::Rps
                },
                "{hash:08x}"
            );
        }
        // Known, each queue has its own answer.
        assert_eq!(expected_rx_cpu(&c, 0, 1, None).stream, Some(1));
        assert_eq!(expected_rx_cpu(&c, 1, 1, None).stream, Some(0));
        // The same map on every queue (the usual way to set up RPS): one
        // kind, and a sound prediction.
        for q in &mut c.rx {
            q.rps_map = vec![2, 3];
        }
        let kinds = c.rx_queue_kinds();
        assert_eq!(kinds, [0]);
        assert_eq!(
            expected_rx_cpu_any_queue(&c, &kinds, 0x8000_0000, Some),
            Expectation {
                stream: Some(3),
                by: Mechanism::Rps
            }
        );
        // Maps that differ but name cpus of one node: the node is known.
        c.rx[1].rps_map = vec![3];
        let kinds = c.rx_queue_kinds();
        assert_eq!(kinds, [0, 1]);
        assert_eq!(expected_rx_cpu_any_queue(&c, &kinds, 1, Some).stream, None);
        assert_eq!(
            expected_rx_cpu_any_queue(&c, &kinds, 1, |_| Some(0)),
            Expectation {
                stream: Some(0),
                by: Mechanism::Rps
            }
        );
        // RFS on one queue only: another kind.
        c.rx[1].rps_map = vec![2, 3];
        c.rx[1].rps_flow_cnt = 64;
        c.rps_sock_flow_entries = Some(4096);
        assert_eq!(c.rx_queue_kinds(), [0, 1]);
    }

    #[test]
    fn rfs_is_said_not_predicted() {
        let mut c = config(vec![RxQueue {
            rps_flow_cnt: 4096,
            ..rxq(0, &[0, 1])
        }]);
        // The global table is off: plain RPS.
        assert_eq!(expected_rx_cpu(&c, 0, 1, None).by, Mechanism::Rps);
        c.rps_sock_flow_entries = Some(32768);
        assert_eq!(
            expected_rx_cpu(&c, 0, 1, None),
            Expectation {
                stream: None,
                by: Mechanism::Rfs
            }
        );
        // Hash 0: neither RFS nor RPS steers it.
        assert_eq!(
            expected_rx_cpu(&c, 0, 0, Some(1)),
            Expectation {
                stream: Some(1),
                by: Mechanism::Rfs
            }
        );
        // Not visible (a network namespace): possibly RFS, so no prediction.
        c.rps_sock_flow_entries = None;
        assert_eq!(expected_rx_cpu(&c, 0, 1, None).by, Mechanism::Rfs);
        assert_eq!(c.rx_mechanism(), Mechanism::Rfs);
        // RFS without a flow table on the queue: RPS.
        c.rx[0].rps_flow_cnt = 0;
        assert_eq!(expected_rx_cpu(&c, 0, 1, None).by, Mechanism::Rps);
    }

    fn irq_on(irq: u32, list: &str) -> Option<QueueIrq> {
        Some(QueueIrq {
            irq,
            source: ethtool::IrqSource::Netlink,
            name: None,
            affinity: Some(ethtool::IrqAffinity {
                affinity: cpus("0-3"),
                effective: CpuSet::parse_list(list),
            }),
            napi_pid: None,
        })
    }

    fn rss_device() -> Config {
        let mut c = config((0..4).map(|i| rxq(i, &[])).collect());
        for (i, q) in c.rx.iter_mut().enumerate() {
            q.irq = irq_on(40 + i as u32, &(3 - i).to_string());
        }
        c.rss = Some(Rss {
            indirection: (0..128).map(|i| i % 4).collect(),
            key: crate::steering::rss::MICROSOFT_KEY.to_vec(),
            hfunc: ethtool::ETH_RSS_HASH_TOP,
            input_xfrm: 0,
        });
        c
    }

    #[test]
    fn rss_queue_of_a_flow_and_its_interrupt_cpu() {
        let mut c = rss_device();
        let t = crate::steering::rss::parse_tuple("66.9.149.187,2794,161.142.100.80,1766").unwrap();
        // The device has not said which fields it hashes for tcp4.
        assert_eq!(c.rss_queue_of(&t, FlowType::TcpV4), None);
        c.hash_fields = vec![
            (FlowType::TcpV4, Fields::ALL),
            (FlowType::UdpV4, Fields::ADDRESSES),
        ];
        // 0x51ccc178 % 128 = 120 → queue 0; addresses only, 0x323e8fc2:
        // slot 66 → queue 2.
        assert_eq!(c.rss_queue_of(&t, FlowType::TcpV4), Some(0));
        assert_eq!(c.rss_queue_of(&t, FlowType::UdpV4), Some(2));
        assert_eq!(c.rss_queue_of(&t, FlowType::SctpV4), None);
        assert_eq!(
            expected_rx_queue(&c, Some(0)),
            Expectation {
                stream: Some(0),
                by: Mechanism::Rss
            }
        );
        // Queue 0's irq runs on cpu 3, queue 2's on cpu 1.
        assert_eq!(
            expected_rx_cpu(&c, 0, 0x51ccc178, None),
            Expectation {
                stream: Some(3),
                by: Mechanism::Rss
            }
        );
        assert_eq!(expected_rx_cpu(&c, 2, 0x1234, None).stream, Some(1));
        assert_eq!(c.rx_mechanism(), Mechanism::Rss);
        // Without the queue: four interrupt cpus, four kinds, nothing.
        let kinds = c.rx_queue_kinds();
        assert_eq!(kinds, [0, 1, 2, 3]);
        assert_eq!(
            expected_rx_cpu_any_queue(&c, &kinds, 0x51ccc178, Some),
            Expectation {
                stream: None,
                by: Mechanism::Rss
            }
        );
        // RPS on the RSS-picked queue moves it on.
        c.rx[0].rps_map = vec![1];
        assert_eq!(
            expected_rx_cpu(&c, 0, 0x51ccc178, None),
            Expectation {
                stream: Some(1),
                by: Mechanism::Rps
            }
        );
        // An interrupt spread over cpus, or a threaded NAPI: no cpu.
        c.rx[1].irq = irq_on(41, "0-1");
        assert_eq!(
            expected_rx_cpu(&c, 1, 0x51ccc179, None),
            Expectation {
                stream: None,
                by: Mechanism::Rss
            }
        );
        c.rx[2].irq.as_mut().unwrap().napi_pid = Some(99);
        assert_eq!(expected_rx_cpu(&c, 2, 0x51ccc17a, None).stream, None);
        // A hash that cannot be reproduced: no queue.
        c.rss.as_mut().unwrap().hfunc = ethtool::ETH_RSS_HASH_XOR;
        assert_eq!(c.rss_queue_of(&t, FlowType::TcpV4), None);
        c.rss.as_mut().unwrap().hfunc = ethtool::ETH_RSS_HASH_TOP;
        c.rss.as_mut().unwrap().indirection.clear();
        assert_eq!(c.rss_queue_of(&t, FlowType::TcpV4), None);
    }

    #[test]
    fn nothing_configured_is_none() {
        let c = config(vec![rxq(0, &[])]);
        assert_eq!(
            expected_rx_cpu(&c, 0, 5, Some(1)),
            Expectation {
                stream: Some(1),
                by: Mechanism::None
            }
        );
        assert_eq!(
            expected_rx_cpu(&c, 0, 5, None),
            Expectation {
                stream: None,
                by: Mechanism::None
            }
        );
        assert_eq!(
            expected_rx_queue(&c, None),
            Expectation {
                stream: Some(0),
                by: Mechanism::None
            }
        );
        assert_eq!(c.rx_mechanism(), Mechanism::None);
        assert_eq!(c.tx_mechanism(), Mechanism::None);
        // No queues known at all (sysfs unreadable).
        let empty = Config::default();
        assert_eq!(empty.rx_queue_kinds(), Vec::<u32>::new());
        assert_eq!(
            expected_rx_cpu(&empty, 0, 5, Some(1)),
            Expectation {
                stream: Some(1),
                by: Mechanism::None
            }
        );
        assert_eq!(
            expected_rx_cpu_any_queue(&empty, &[], 5, Some),
            Expectation {
                stream: None,
                by: Mechanism::None
            }
        );
        assert_eq!(expected_rx_queue(&empty, None).stream, None);
    }

    fn txq(index: u32, xps: &str, rxqs: &str) -> TxQueue {
        TxQueue {
            index,
            xps_cpus: CpuSet::parse_mask(xps),
            xps_rxqs: CpuSet::parse_mask(rxqs),
        }
    }

    #[test]
    fn xps_rules() {
        let mut c = config(vec![rxq(0, &[]), rxq(1, &[])]);
        // cpu0 → tx-0; cpu1 → tx-1 and tx-2; cpu2 → nothing.
        c.tx = vec![txq(0, "1", "0"), txq(1, "2", "0"), txq(2, "2", "2")];
        let e = |cpu, rxq, h| expected_tx_queue(&c, cpu, rxq, h);
        assert_eq!(
            e(0, None, 0xffff_ffff),
            Expectation {
                stream: Some(0),
                by: Mechanism::Xps
            }
        );
        assert_eq!(e(1, None, 0x7fff_ffff).stream, Some(1));
        assert_eq!(e(1, None, 0x8000_0000).stream, Some(2));
        assert_eq!(
            e(2, None, 1),
            Expectation {
                stream: None,
                by: Mechanism::None
            }
        );
        // A socket that recorded rx queue 1 uses the rxqs map first...
        assert_eq!(e(0, Some(1), 1).stream, Some(2));
        // ...and the cpu map when its rx queue has no entry.
        assert_eq!(e(0, Some(0), 1).stream, Some(0));
        assert_eq!(c.tx_mechanism(), Mechanism::Xps);
        // One transmit queue: always it.
        c.tx = vec![txq(0, "0", "0")];
        assert_eq!(
            expected_tx_queue(&c, 3, None, 9),
            Expectation {
                stream: Some(0),
                by: Mechanism::None
            }
        );
        assert_eq!(c.tx_mechanism(), Mechanism::None);
    }

    #[test]
    fn mechanism_names() {
        let names: Vec<&str> = [
            Mechanism::Rps,
            Mechanism::Rfs,
            Mechanism::Rss,
            Mechanism::Xps,
            Mechanism::None,
        ]
        .iter()
        .map(Mechanism::as_str)
        .collect();
        assert_eq!(names, ["rps", "rfs", "rss", "xps", "none"]);
        assert_eq!(Mechanism::Rfs.to_string(), "rfs");
    }

    #[test]
    fn rss_hash_verification() {
        let mut c = rss_device();
        let t = crate::steering::rss::parse_tuple("66.9.149.187,2794,161.142.100.80,1766").unwrap();
        // The device has not said which fields it hashes for tcp4.
        assert_eq!(rss_hash_matches(&c, &t, FlowType::TcpV4, 0x51ccc178), None);
        c.hash_fields = vec![
            (FlowType::TcpV4, Fields::ALL),
            (FlowType::UdpV4, Fields::ADDRESSES),
        ];
        assert_eq!(
            rss_hash_matches(&c, &t, FlowType::TcpV4, 0x51ccc178),
            Some(true)
        );
        assert_eq!(
            rss_hash_matches(&c, &t, FlowType::TcpV4, 0x51ccc179),
            Some(false)
        );
        assert_eq!(
            rss_hash_matches(&c, &t, FlowType::UdpV4, 0x323e8fc2),
            Some(true)
        );
        c.rss.as_mut().unwrap().hfunc = ethtool::ETH_RSS_HASH_XOR;
        assert_eq!(rss_hash_matches(&c, &t, FlowType::TcpV4, 0x51ccc178), None);
    }

    #[test]
    fn nic_hash_is_claimed_only_where_it_is_the_packets() {
        let rss = || rss_device().rss;
        let fields = vec![
            (FlowType::TcpV4, Fields::ALL),
            (FlowType::UdpV4, Fields::ADDRESSES),
            (FlowType::UdpV6, Fields::ALL),
        ];
        let no = |h: io::Result<Option<bool>>, r: io::Result<Option<Rss>>, f: Vec<_>| {
            NicHash::from_parts("eth9", h, r, f).err().unwrap()
        };
        // Why not, in the order a reader would look.
        assert_eq!(
            no(Ok(Some(false)), Ok(rss()), fields.clone()),
            "eth9 does not hand the kernel a receive hash (receive-hashing off)"
        );
        assert_eq!(
            no(
                Err(io::Error::from_raw_os_error(libc::ENODEV)),
                Ok(rss()),
                fields.clone()
            ),
            "cannot read eth9's features: No such device"
        );
        assert_eq!(
            no(Ok(Some(true)), Ok(None), fields.clone()),
            "eth9 reports no RSS key"
        );
        let mut xor = rss().unwrap();
        xor.hfunc = ethtool::ETH_RSS_HASH_XOR;
        assert_eq!(
            no(Ok(Some(true)), Ok(Some(xor)), fields.clone()),
            "eth9's RSS hash cannot be reproduced (hash function xor, a 40-byte key)"
        );
        assert_eq!(
            no(Ok(Some(true)), Ok(rss()), Vec::new()),
            "eth9 does not say which fields it hashes"
        );
        let nic = NicHash::from_parts("eth9", Ok(Some(true)), Ok(rss()), fields.clone()).unwrap();

        // 66.9.149.187:2794 -> 161.142.100.80:1766: the Microsoft vectors.
        let mut v4 = vec![
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 66, 9, 149, 187, 161, 142, 100, 80,
        ];
        v4.extend_from_slice(&[0x0a, 0xea, 0x06, 0xe6, 0, 0, 0, 0]);
        assert!(nic.is_its_hash(&v4, 0x51ccc178));
        assert!(!nic.is_its_hash(&v4, 0x51ccc179));
        // UDP hashed over the addresses only.
        v4[9] = 17;
        assert!(nic.is_its_hash(&v4, 0x323e8fc2));
        assert!(!nic.is_its_hash(&v4, 0x51ccc178));
        // A flow type the device did not report; not IP; ports cut off.
        v4[9] = 132;
        assert!(!nic.is_its_hash(&v4, 0x51ccc178));
        v4[9] = 6;
        assert!(!nic.is_its_hash(&v4[..22], 0x51ccc178));
        assert!(!nic.is_its_hash(&[0x12; 40], 0x51ccc178));
        assert!(!nic.is_its_hash(&[], 0));
        // IPv6 needs a 40-byte key.
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        for a in ["3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1"] {
            v6.extend_from_slice(&a.parse::<std::net::Ipv6Addr>().unwrap().octets());
        }
        v6.extend_from_slice(&[0x0a, 0xea, 0x06, 0xe6, 0, 8, 0, 0]);
        assert!(nic.is_its_hash(&v6, 0x40207d3d));
        let mut short = rss().unwrap();
        short.key.truncate(16);
        let nic16 = NicHash::from_parts("eth9", Ok(Some(true)), Ok(Some(short)), fields).unwrap();
        assert!(!nic16.is_its_hash(&v6, 0x40207d3d));
    }

    /// A /sys/class/net/IF/queues of a 2-queue device, as files.
    fn fixture(files: &[(&str, &str)]) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rxtxcpu-steering-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        for (path, content) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        dir
    }

    #[test]
    fn reads_queue_files() {
        let dir = fixture(&[
            ("rx-0/rps_cpus", "00000000,00000005\n"),
            ("rx-0/rps_flow_cnt", "0\n"),
            ("rx-10/rps_cpus", "0\n"),
            ("rx-10/rps_flow_cnt", "2048\n"),
            ("rx-1/rps_cpus", "zz\n"),
            ("tx-0/xps_cpus", "1\n"),
            ("tx-0/xps_rxqs", "0\n"),
            ("tx-1/xps_rxqs", "2\n"),
            ("unrelated", ""),
        ]);
        let mut notes = Vec::new();
        let (rx, tx) = read_queues(&dir, &mut notes);
        assert_eq!(rx.iter().map(|q| q.index).collect::<Vec<_>>(), [0, 1, 10]);
        assert_eq!(rx[0].rps_map, [0, 2]);
        assert_eq!(rx[1].rps_map, Vec::<u32>::new());
        assert_eq!((rx[2].rps_map.len(), rx[2].rps_flow_cnt), (0, 2048));
        assert_eq!(tx[0].xps_cpus, CpuSet::parse_list("0"));
        assert_eq!(tx[0].xps_rxqs, Some(CpuSet::new()));
        // tx-1 has no xps_cpus (a single-queue device's is hidden).
        assert_eq!(
            (tx[1].xps_cpus.clone(), tx[1].xps_rxqs.clone()),
            (None, CpuSet::parse_list("1"))
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("rx-1/rps_cpus: cannot parse \"zz\""),
            "{notes:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();

        let mut notes = Vec::new();
        let (rx, tx) = read_queues(&dir, &mut notes);
        assert!(rx.is_empty() && tx.is_empty());
        assert!(notes[0].contains("No such file or directory"), "{notes:?}");
        assert_eq!(read_sock_flow_entries(&dir.join("x")), None);
    }

    // -----------------------------------------------------------------------
    // Against the kernel: packets captured with their flow hash, in a group
    // whose member index is the stream (cpu or queue) the kernel put them in.

    use crate::options::Direction;

    use crate::sys::ethtool::tests::TestNs;

    use crate::sys::testutil::{HashRing, PACKET_FANOUT_CPU, PACKET_FANOUT_QM};

    /// UDP source port, destination port of an Ethernet IPv4 frame.
    fn udp_ports(frame: &[u8]) -> Option<(u16, u16)> {
        let ip = frame.get(14..)?;
        if frame.get(12..14)? != [0x08, 0x00] || ip[9] != 17 {
            return None;
        }
        let l4 = ip.get(usize::from(ip[0] & 0xf) * 4..)?;
        Some((
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ))
    }

    /// Reads every ring until `want` UDP packets to `port` are in; returns
    /// (member, hash, source port) of each.
    fn collect(rings: &mut [HashRing], port: u16, want: usize) -> Vec<(u32, u32, u16)> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut got = Vec::new();
        while got.len() < want {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} of {want} packets captured",
                got.len()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
            for (member, ring) in rings.iter_mut().enumerate() {
                let mut pkts = Vec::new();
                ring.drain(&mut pkts);
                for (hash, frame) in pkts {
                    if let Some((sport, dport)) = udp_ports(&frame) {
                        if dport == port {
                            got.push((member as u32, hash, sport));
                        }
                    }
                }
            }
        }
        got
    }

    fn pin_to_cpu(cpu: usize) {
        let mut set = nix::sched::CpuSet::new();
        set.set(cpu).unwrap();
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
    }

    /// Two namespaces joined by a veth pair `vs` (192.0.2.1, in `a`) and
    /// `vr` (192.0.2.2, in `b`), with `extra` added to both ends' `ip link
    /// add` arguments, and static neighbours.
    fn veth_pair(a: &TestNs, b: &TestNs, extra: &[&str]) {
        let mut add = vec!["link", "add", "vs", "address", "02:00:00:00:00:01"];
        add.extend_from_slice(extra);
        add.extend_from_slice(&[
            "type",
            "veth",
            "peer",
            "name",
            "vr",
            "address",
            "02:00:00:00:00:02",
        ]);
        add.extend_from_slice(extra);
        add.extend_from_slice(&["netns", &b.name]);
        a.ip(&add);
        for (ns, dev, me, peer, mac) in [
            (a, "vs", "192.0.2.1", "192.0.2.2", "02:00:00:00:00:02"),
            (b, "vr", "192.0.2.2", "192.0.2.1", "02:00:00:00:00:01"),
        ] {
            ns.ip(&["addr", "add", &format!("{me}/24"), "dev", dev]);
            ns.ip(&["link", "set", dev, "up"]);
            ns.ip(&[
                "neigh",
                "replace",
                peer,
                "lladdr",
                mac,
                "dev",
                dev,
                "nud",
                "permanent",
            ]);
        }
        // The veth drops what it is given until linkwatch has activated
        // its qdisc.
        crate::sys::testutil::wait_link_active(&a.name, "vs");
        crate::sys::testutil::wait_link_active(&b.name, "vr");
    }

    /// Sends one datagram from each of `flows` fresh sockets (so each has
    /// its own source port and transmit hash) in namespace `ns`, from cpu
    /// `cpu`, to 192.0.2.2:`port`.
    fn send_flows(ns: &TestNs, cpu: usize, flows: usize, port: u16) {
        std::thread::scope(|s| {
            s.spawn(|| {
                pin_to_cpu(cpu);
                ns.enter();
                for _ in 0..flows {
                    let sock = std::net::UdpSocket::bind("192.0.2.1:0").unwrap();
                    sock.send_to(b"steering test", ("192.0.2.2", port)).unwrap();
                }
            });
        });
    }

    fn cpu1_online() -> bool {
        crate::vantage::machine::online().contains(1)
    }

    /// RPS as the kernel does it: a veth's receiving end with rps_cpus 3;
    /// flows sent from cpu0 land on the cpu `expected_rx_cpu` names for
    /// their hash, as a PACKET_FANOUT_CPU group sees it.
    #[test]
    fn rps_prediction_matches_the_kernel() {
        if !cpu1_online() {
            eprintln!("note: skipping, cpu1 is offline");
            return;
        }
        const FLOWS: usize = 64;
        const PORT: u16 = 9999;
        let (a, b) = (TestNs::new(), TestNs::new());
        veth_pair(&a, &b, &[]);
        b.exec(&[
            "sh",
            "-c",
            "echo 3 > /sys/class/net/vr/queues/rx-0/rps_cpus",
        ]);
        b.run(true, || {
            let config = Config::read("vr");
            assert_eq!(config.rx.len(), 1, "{config:?}");
            assert_eq!(config.rx[0].rps_map, [0, 1]);
            assert_eq!(config.rx[0].rps_flow_cnt, 0);
            assert_eq!(config.rps_sock_flow_entries, None); // not in a netns
            assert_eq!(config.rss, None);
            assert_eq!(config.rx_mechanism(), Mechanism::Rps);
            let describe = config.describe().join("\n");
            assert!(
                describe.contains("vr: rx-0: rps_cpus 0-1, rps_flow_cnt 0"),
                "{describe}"
            );
            assert!(
                describe.contains("vr: no RSS indirection table"),
                "{describe}"
            );

            let ifindex = crate::sys::afpacket::ifindex("vr").unwrap();
            let mut rings: Vec<HashRing> = (0..2)
                .map(|_| HashRing::new(ifindex, Direction::Rx, PACKET_FANOUT_CPU, 1))
                .collect();
            let sink = std::net::UdpSocket::bind(("192.0.2.2", PORT)).unwrap();
            send_flows(&a, 0, FLOWS, PORT);
            let mut buf = [0u8; 64];
            sink.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            for _ in 0..FLOWS {
                sink.recv(&mut buf).unwrap();
            }
            let got = collect(&mut rings, PORT, FLOWS);
            let mut per_cpu = [0; 2];
            for &(cpu, hash, sport) in &got {
                let e = expected_rx_cpu(&config, 0, hash, Some(0));
                assert_eq!(e.by, Mechanism::Rps);
                assert_eq!(
                    e.stream,
                    Some(cpu),
                    "port {sport} hash {hash:08x} went to cpu{cpu}"
                );
                per_cpu[cpu as usize] += 1;
            }
            // The hashes are the kernel's own (random per boot), so both
            // cpus get some of 64 flows (all on one: probability 2^-63).
            assert!(per_cpu[0] > 0 && per_cpu[1] > 0, "{per_cpu:?}");
        });
    }

    /// Sends FLOWS flows from cpu0 over a 2-queue veth whose tx queues both
    /// serve cpu0, their xps_cpus written in `order`; returns the config
    /// read afterwards and (observed queue, hash) of each flow, the queue
    /// as a PACKET_FANOUT_QM group sees it (member = queue_mapping % 2).
    fn xps_flows(order: [u32; 2]) -> (Config, Vec<(u32, u32)>) {
        const FLOWS: usize = 64;
        const PORT: u16 = 9998;
        let (a, b) = (TestNs::new(), TestNs::new());
        veth_pair(&a, &b, &["numtxqueues", "2", "numrxqueues", "2"]);
        let writes: Vec<String> = order
            .iter()
            .map(|q| format!("echo 1 > /sys/class/net/vs/queues/tx-{q}/xps_cpus"))
            .collect();
        a.exec(&["sh", "-c", &writes.join("; ")]);
        let config = a.run(true, || Config::read("vs"));
        let ifindex = a.run(false, || crate::sys::afpacket::ifindex("vs").unwrap());
        let mut rings: Vec<HashRing> = a.run(false, || {
            (0..2)
                .map(|_| HashRing::new(ifindex, Direction::Tx, PACKET_FANOUT_QM, 2))
                .collect()
        });
        send_flows(&a, 0, FLOWS, PORT);
        let got = collect(&mut rings, PORT, FLOWS);
        (config, got.into_iter().map(|(q, h, _)| (q, h)).collect())
    }

    /// XPS as the kernel does it: cpu0 mapped to both tx queues picks
    /// queues[reciprocal_scale(hash, 2)], where the map lists the queues in
    /// the order their xps_cpus were written.
    #[test]
    fn xps_prediction_matches_the_kernel() {
        // Written in increasing order, as the prediction assumes.
        let (config, got) = xps_flows([0, 1]);
        assert_eq!(config.tx.len(), 2);
        assert_eq!(config.tx[0].xps_cpus, CpuSet::parse_list("0"));
        assert_eq!(config.tx[1].xps_cpus, CpuSet::parse_list("0"));
        assert_eq!(config.tx_mechanism(), Mechanism::Xps);
        let mut per_queue = [0; 2];
        for &(queue, hash) in &got {
            let e = expected_tx_queue(&config, 0, None, hash);
            assert_eq!(
                e,
                Expectation {
                    stream: Some(queue),
                    by: Mechanism::Xps
                },
                "hash {hash:08x}"
            );
            per_queue[queue as usize] += 1;
        }
        assert!(per_queue[0] > 0 && per_queue[1] > 0, "{per_queue:?}");

        // Written tx-1 first: the kernel's map is [1, 0], which sysfs does
        // not show; every flow goes to the other queue than predicted.
        let (config, got) = xps_flows([1, 0]);
        for &(queue, hash) in &got {
            let predicted = expected_tx_queue(&config, 0, None, hash).stream.unwrap();
            assert_eq!(queue, 1 - predicted, "hash {hash:08x}");
        }
    }

    #[test]
    fn rss_hash_command_without_an_interface() {
        // The Microsoft vectors, as `--rss-hash=SRC,SPORT,DST,DPORT` runs
        // them (default key, no interface).
        for (arg, want) in [
            ("66.9.149.187,2794,161.142.100.80,1766", "51ccc178"),
            ("66.9.149.187,0,161.142.100.80,0", "323e8fc2"),
            (
                "3ffe:2501:200:1fff::7,2794,3ffe:2501:200:3::1,1766",
                "40207d3d",
            ),
            ("3ffe:2501:200:1fff::7,0,3ffe:2501:200:3::1,0", "2cc18cd5"),
        ] {
            let t = crate::steering::rss::parse_tuple(arg).unwrap();
            assert_eq!(
                rss_hash_command(&t, None, None).unwrap().to_string(),
                format!("hash:  {want}\n")
            );
        }
        // The symmetric key: both directions alike.
        let key = crate::steering::rss::parse_key(&["6d:5a"; 20].join(":")).unwrap();
        let t = crate::steering::rss::parse_tuple("169.254.254.1,32768,169.254.254.2,443").unwrap();
        assert_eq!(
            rss_hash_command(&t, Some(&key), None).unwrap(),
            rss_hash_command(&t.reversed(), Some(&key), None).unwrap()
        );
        // A key of the wrong length.
        let e = rss_hash_command(&t, Some(&[0x6d; 16]), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid rss key length 16 (expected 40 bytes)."
        );
    }

    #[test]
    fn rss_hash_command_with_devices_without_rss() {
        let ns = TestNs::new();
        ns.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
        ns.run(false, || {
            let t =
                crate::steering::rss::parse_tuple("66.9.149.187,2794,161.142.100.80,1766").unwrap();
            // No table: the hash alone, with the default key.
            for dev in ["lo", "va"] {
                assert_eq!(
                    rss_hash_command(&t, None, Some(dev)).unwrap().to_string(),
                    "hash:  51ccc178\n"
                );
            }
            let e = rss_hash_command(&t, None, Some("nosuch0")).unwrap_err();
            assert_eq!(
                e.to_string(),
                "nosuch0: cannot read the RSS configuration: No such device"
            );
        });
    }

    #[test]
    fn devices_that_expose_nothing_degrade_with_notes() {
        let ns = TestNs::new();
        ns.ip(&["tuntap", "add", "dev", "tn0", "mode", "tun"]);
        ns.ip(&["link", "set", "tn0", "up"]);
        let config = ns.run(true, || Config::read("tn0"));
        assert_eq!(config.rx.len(), 1);
        assert_eq!(config.rss, None);
        assert_eq!(config.rx_mechanism(), Mechanism::None);
        assert_eq!(config.tx_mechanism(), Mechanism::None);
        let lines = config.describe();
        assert_eq!(lines[0], "tn0: rx-0: rps_cpus none, rps_flow_cnt 0");
        assert_eq!(lines[1], "tn0: tx-0: xps_cpus none, xps_rxqs none");
        assert!(
            lines.contains(
                &"tn0: no RSS indirection table or key (the driver reports none)".to_string()
            ),
            "{lines:?}"
        );
        assert_eq!(
            lines.last().unwrap(),
            "tn0: receive steering none, transmit steering none"
        );
        // lo in a namespace shows its sysfs too.
        let lo = ns.run(true, || Config::read("lo"));
        assert_eq!(lo.rx.len(), 1);
    }

    /// The RPS map and cpu hotplug (cpu1 goes offline and back; the test
    /// is not run by default, other captures on the machine would see
    /// it): `cargo test --lib -- --ignored rps_map_and_hotplug`.
    #[test]
    #[ignore = "takes cpu1 offline for a moment"]
    fn rps_map_and_hotplug() {
        struct Cpu1;
        impl Cpu1 {
            fn set(&self, online: bool) {
                std::fs::write(
                    "/sys/devices/system/cpu/cpu1/online",
                    if online { "1" } else { "0" },
                )
                .unwrap();
            }
        }
        impl Drop for Cpu1 {
            fn drop(&mut self) {
                let _ = std::fs::write("/sys/devices/system/cpu/cpu1/online", "1");
            }
        }
        const PORT: u16 = 9997;
        let cpu1 = Cpu1;
        let (a, b) = (TestNs::new(), TestNs::new());
        veth_pair(&a, &b, &[]);
        let rps = "/sys/class/net/vr/queues/rx-0/rps_cpus";
        let read = || b.exec(&["cat", rps]).trim().to_string();
        // Written with cpu1 online, offlined afterwards: the map keeps it.
        b.exec(&["sh", "-c", &format!("echo 3 > {rps}")]);
        cpu1.set(false);
        assert_eq!(read(), "3");
        b.run(true, || {
            let config = Config::read("vr");
            assert_eq!(config.rx[0].rps_map, [0, 1]);
            assert_eq!(config.online, CpuSet::parse_list("0").unwrap());
            let ifindex = crate::sys::afpacket::ifindex("vr").unwrap();
            let mut rings: Vec<HashRing> = (0..2)
                .map(|_| HashRing::new(ifindex, Direction::Rx, PACKET_FANOUT_CPU, 3))
                .collect();
            send_flows(&a, 0, 32, PORT);
            for (cpu, hash, _) in collect(&mut rings, PORT, 32) {
                // A flow for cpu1 stays on cpu0, which received it.
                assert_eq!(expected_rx_cpu(&config, 0, hash, Some(0)).stream, Some(0));
                assert_eq!(cpu, 0);
            }
        });
        // Written with cpu1 offline: the map (and the file) leaves it out,
        // and it stays out when cpu1 comes back.
        b.exec(&["sh", "-c", &format!("echo 3 > {rps}")]);
        assert_eq!(read(), "1");
        cpu1.set(true);
        assert_eq!(read(), "1");
        // A mask of offline cpus only is accepted and turns RPS off.
        cpu1.set(false);
        b.exec(&["sh", "-c", &format!("echo 2 > {rps}")]);
        assert_eq!(read(), "0");
        cpu1.set(true);
    }

    /// Reads the machine's own interfaces (its namespace, read only):
    /// nothing may fail. `cargo test --lib -- --ignored --nocapture
    /// machine_interfaces` shows what this VM's eth0 (virtio_net) says.
    #[test]
    #[ignore = "reads the machine's interfaces"]
    fn machine_interfaces() {
        for entry in std::fs::read_dir("/sys/class/net").unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let config = Config::read(&name);
            for line in config.describe() {
                eprintln!("{line}");
            }
        }
    }

    #[test]
    fn flows_of_packets() {
        // 66.9.149.187:2794 -> 161.142.100.80:1766, TCP.
        let mut v4 = vec![
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 66, 9, 149, 187, 161, 142, 100, 80,
        ];
        v4.extend_from_slice(&[0x0a, 0xea, 0x06, 0xe6, 0, 0, 0, 0]);
        let (t, flow) = packet_flow(&v4).unwrap();
        assert_eq!(flow, FlowType::TcpV4);
        assert_eq!(
            t,
            crate::steering::rss::parse_tuple("66.9.149.187,2794,161.142.100.80,1766").unwrap()
        );
        assert_eq!(
            crate::steering::rss::hash(&crate::steering::rss::MICROSOFT_KEY, &t, Fields::ALL),
            Ok(0x51ccc178)
        );
        // UDP; a fragment (MF set) has no ports; ICMP is plain ip4.
        v4[9] = 17;
        assert_eq!(packet_flow(&v4).unwrap().1, FlowType::UdpV4);
        v4[6] = 0x20;
        assert_eq!(
            packet_flow(&v4).unwrap(),
            (
                crate::steering::rss::parse_tuple("66.9.149.187,0,161.142.100.80,0").unwrap(),
                FlowType::Ipv4
            )
        );
        v4[6] = 0x40;
        v4[9] = 1;
        assert_eq!(packet_flow(&v4).unwrap().1, FlowType::Ipv4);
        // Options (IHL 6) move the ports.
        let mut opt = v4[..20].to_vec();
        opt[0] = 0x46;
        opt[9] = 6;
        opt.extend_from_slice(&[1, 1, 1, 0, 0x0a, 0xea, 0x06, 0xe6]);
        assert_eq!(packet_flow(&opt).unwrap().0.sport(), 2794);
        // IPv6 UDP, and with a hop-by-hop header (no ports).
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        v6.extend_from_slice(
            &"3ffe:2501:200:1fff::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        v6.extend_from_slice(
            &"3ffe:2501:200:3::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        v6.extend_from_slice(&[0x0a, 0xea, 0x06, 0xe6, 0, 8, 0, 0]);
        let (t, flow) = packet_flow(&v6).unwrap();
        assert_eq!((flow, t.sport(), t.dport()), (FlowType::UdpV6, 2794, 1766));
        assert_eq!(
            crate::steering::rss::hash(&crate::steering::rss::MICROSOFT_KEY, &t, Fields::ALL),
            Ok(0x40207d3d)
        );
        v6[6] = 0;
        assert_eq!(packet_flow(&v6).unwrap().1, FlowType::Ipv6);
        // Not IP, or cut short.
        assert_eq!(packet_flow(&[]), None);
        assert_eq!(packet_flow(&[0x45; 19]), None);
        assert_eq!(packet_flow(&v6[..39]), None);
        assert_eq!(packet_flow(&[0x12; 40]), None);
        // Ports not captured: unknown, not "no ports".
        let mut short = v4[..22].to_vec();
        short[9] = 6;
        assert_eq!(packet_flow(&short), None);
        short[9] = 1;
        assert_eq!(packet_flow(&short).unwrap().1, FlowType::Ipv4);
    }

    #[test]
    fn sysfs_of_another_namespace_is_not_believed() {
        let (a, b) = (TestNs::new(), TestNs::new());
        a.ip(&["tuntap", "add", "dev", "dx", "mode", "tun"]);
        b.ip(&["tuntap", "add", "dev", "dpad", "mode", "tun"]);
        b.ip(&["tuntap", "add", "dev", "dx", "mode", "tun"]);
        a.exec(&[
            "sh",
            "-c",
            "echo 1 > /sys/class/net/dx/queues/rx-0/rps_cpus",
        ]);
        let config = std::thread::scope(|s| {
            s.spawn(|| {
                // sysfs mounted in a, the thread then in b: /sys/class/net/dx
                // is a's dx.
                a.enter();
                crate::sys::ethtool::tests::own_sysfs();
                b.enter();
                Config::read("dx")
            })
            .join()
            .unwrap()
        });
        assert!(config.rx.is_empty(), "{config:?}");
        assert!(
            config.notes[0].starts_with(
                "/sys/class/net/dx is another network namespace's interface (ifindex 2, not 3)"
            ),
            "{:?}",
            config.notes
        );
        // In its own namespace, the same device reads fine.
        let config = a.run(true, || Config::read("dx"));
        assert_eq!(config.rx[0].rps_map, [0]);
    }

    #[test]
    fn rss_hash_report_with_a_device() {
        let t = crate::steering::rss::parse_tuple("66.9.149.187,2794,161.142.100.80,1766").unwrap();
        let mut rss = rss_device().rss.unwrap();
        let r = rss_hash_report(&t, None, Some(("eth9", &rss)), |q| {
            assert_eq!(q, 0);
            CpuSet::parse_list("3")
        });
        assert_eq!(
            r.unwrap().to_string(),
            "hash:  51ccc178\nidx:   120\nqueue: 0\ncpus:  3\n"
        );
        // The device's key is used when no --rss-key is given.
        rss.key = [0x6d, 0x5a].repeat(26);
        let sym = rss_hash_report(&t, None, Some(("eth9", &rss)), |_| None)
            .unwrap()
            .to_string();
        let back = rss_hash_report(&t.reversed(), None, Some(("eth9", &rss)), |_| None)
            .unwrap()
            .to_string();
        assert_eq!(sym.lines().next(), back.lines().next());
        assert_ne!(sym.lines().next(), Some("hash:  51ccc178"));
        // --rss-key wins, and may have the device's length (52) or 40.
        let ms52 = [&crate::steering::rss::MICROSOFT_KEY[..], &[0; 12]].concat();
        for k in [&crate::steering::rss::MICROSOFT_KEY[..], &ms52] {
            let r = rss_hash_report(&t, Some(k), Some(("eth9", &rss)), |_| None)
                .unwrap()
                .to_string();
            assert!(r.starts_with("hash:  51ccc178\n"), "{r}");
        }
        let e = rss_hash_report(&t, Some(&[0; 48]), Some(("eth9", &rss)), |_| None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid rss key length 48 (expected 40 or the interface's 52 bytes)."
        );
        // Not Toeplitz, or a transformed input: a clear refusal.
        rss.hfunc = ethtool::ETH_RSS_HASH_XOR;
        let e = rss_hash_report(&t, None, Some(("eth9", &rss)), |_| None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "eth9: hash function is xor, not toeplitz: only toeplitz is supported"
        );
        rss.hfunc = ethtool::ETH_RSS_HASH_TOP;
        rss.input_xfrm = 1;
        let e = rss_hash_report(&t, None, Some(("eth9", &rss)), |_| None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "eth9: hash input is transformed (symmetric xor): only plain toeplitz is supported"
        );
        // A device key too short for IPv6.
        let t6 = crate::steering::rss::parse_tuple("::1,1,::2,2").unwrap();
        rss.input_xfrm = 0;
        rss.key = vec![1; 16];
        let e = rss_hash_report(&t6, None, Some(("eth9", &rss)), |_| None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a 16-byte key is too short for an IPv6 tuple (40 bytes needed)"
        );
    }
}
