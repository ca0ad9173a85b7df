//! `--path`: what the kernel probes saw of each flow besides the stream
//! the capture saw it on (the processing cpu): its queue, the driver's
//! cpu, the application's cpu and process, the steering stages it was
//! off; and the steering matrices of all flows. Filled in by the run
//! ([`crate::steering::path`] judges the stages); shown here as text and
//! JSON.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::json::StreamPackets;

use super::key::FlowKey;

/// The stages the probes count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathStage {
    /// A driver handing a received packet to the stack (before RPS).
    RxDriver,
    /// A sender queueing a packet on the device, the transmit queue
    /// chosen (XPS).
    Send,
    /// The packet handed to the driver to transmit.
    TxDriver,
    /// An application's read.
    Read,
}

/// Who ran a stage.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Process {
    /// Not asked (the driver stages).
    None,
    /// A process in its own system call: its id and name.
    Named { pid: u32, name: String },
    /// An interrupt, a softirq or a kernel thread: no process's doing.
    Kernel,
    /// The context could not be read.
    Unknown,
}

/// Packets of a flow at one stage, queue, process and cpu.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub stage: PathStage,
    /// Received: the recorded receive queue (None: none recorded); sent:
    /// the transmit queue; reads: None.
    pub queue: Option<u32>,
    pub process: Process,
    pub cpu: u32,
    pub packets: u64,
}

/// One flow's path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowPath {
    pub steps: Vec<Step>,
    /// The stages steering did not do what its configuration says:
    /// `RSS`, `RPS`, `RFS`, `XPS`.
    pub mismatches: Vec<&'static str>,
}

/// (from, to) -> packets, for one stage of all flows.
pub type Matrix = BTreeMap<(Option<u32>, u32), u64>;

/// The flows' paths, the matrices of all flows, and what the probes
/// could not attribute.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathSummary {
    /// Each flow of the table's path (empty steps where the probes saw
    /// none of it).
    pub flows: HashMap<FlowKey, FlowPath>,
    /// Receive queue (None: not recorded) -> the driver's cpu.
    pub queue_driver: Matrix,
    /// The driver's cpu -> the processing cpu (the stream).
    pub driver_cpu: Matrix,
    /// The processing cpu -> the application's cpu.
    pub cpu_app: Matrix,
    /// The sending cpu -> the transmit queue (keyed (cpu, queue)).
    pub app_queue: Matrix,
    /// Transmit queue -> the driver's cpu.
    pub queue_tx_driver: Matrix,
    /// Packets of flows whose two stages were both on several cpus: the
    /// probes count per flow, not per packet, so which went where is not
    /// known.
    pub unjoined: u64,
    /// Reads of unconnected UDP sockets (no flow): (process, cpu) ->
    /// reads.
    pub unattributed_reads: BTreeMap<(String, u32, u32), u64>,
    /// Packets the probes' table had no room for.
    pub missed: u64,
}

impl FlowPath {
    fn sum<K: Ord>(&self, pick: impl Fn(&Step) -> Option<K>) -> Vec<(K, u64)> {
        let mut m: BTreeMap<K, u64> = BTreeMap::new();
        for s in &self.steps {
            if let Some(k) = pick(s) {
                *m.entry(k).or_default() += s.packets;
            }
        }
        m.into_iter().collect()
    }

    /// Receive queues (`rx-0`, `-` none recorded) then transmit queues
    /// (`tx-1`), with packets.
    pub fn queues(&self) -> Vec<(String, u64)> {
        self.sum(|s| match s.stage {
            PathStage::RxDriver => Some((0, s.queue, "rx")),
            PathStage::TxDriver => Some((1, s.queue, "tx")),
            _ => None,
        })
        .into_iter()
        .map(|((_, q, dir), n)| (q.map_or("-".to_string(), |q| format!("{dir}-{q}")), n))
        .collect()
    }

    /// The driver's cpus (receive and transmit), with packets.
    pub fn driver_cpus(&self) -> Vec<(u32, u64)> {
        self.sum(|s| matches!(s.stage, PathStage::RxDriver | PathStage::TxDriver).then_some(s.cpu))
    }

    /// The application's cpus: where a process read or sent the flow.
    pub fn app_cpus(&self) -> Vec<(u32, u64)> {
        self.sum(|s| {
            (matches!(s.stage, PathStage::Read | PathStage::Send)
                && matches!(s.process, Process::Named { .. }))
            .then_some(s.cpu)
        })
    }

    /// The processes that read or sent it (`name[pid]`), with packets.
    pub fn apps(&self) -> Vec<(String, u64)> {
        self.sum(|s| match (&s.stage, &s.process) {
            (PathStage::Read | PathStage::Send, Process::Named { pid, name }) => {
                Some(format!("{name}[{pid}]"))
            }
            _ => None,
        })
    }
}

/// `cpu0:48 cpu1:2`, `-` for none.
pub fn cpus_cell(v: &[(u32, u64)]) -> String {
    cell(v.iter().map(|(c, n)| (format!("cpu{c}"), *n)))
}

/// `name:48 ...`, `-` for none.
pub fn cell(v: impl IntoIterator<Item = (String, u64)>) -> String {
    let parts: Vec<String> = v.into_iter().map(|(k, n)| format!("{k}:{n}")).collect();
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(" ")
    }
}

/// The path columns of a flow row: QUEUE, DRIVER, (STREAMS comes
/// between), APP, PROCESS.
pub fn columns(p: Option<&FlowPath>) -> ([String; 2], [String; 2]) {
    let p = p.cloned().unwrap_or_default();
    (
        [cell(p.queues()), cpus_cell(&p.driver_cpus())],
        [cpus_cell(&p.app_cpus()), cell(p.apps())],
    )
}

/// The matrices as text, after the flow table.
pub fn summary_text(s: &PathSummary) -> String {
    let mut out = String::new();
    let cpu = |c: u32| format!("cpu{c}");
    let rxq = |q: Option<u32>| q.map_or("no recorded queue".to_string(), |q| format!("rx-{q}"));
    let txq = |q: u32| format!("tx-{q}");
    let opt_cpu = |c: Option<u32>| c.map_or("-".to_string(), cpu);
    let mut section = |title: &str,
                       m: &Matrix,
                       from: &dyn Fn(Option<u32>) -> String,
                       to: &dyn Fn(u32) -> String| {
        if m.is_empty() {
            return;
        }
        let _ = writeln!(out, "{title}:");
        let mut totals: BTreeMap<Option<u32>, u64> = BTreeMap::new();
        for (&(f, _), &n) in m {
            *totals.entry(f).or_default() += n;
        }
        for (&(f, t), &n) in m {
            let _ = writeln!(
                out,
                "  {} -> {}: {} ({} of {}'s).",
                from(f),
                to(t),
                super::text::count(n, "packet"),
                super::text::percent(n, totals[&f]),
                from(f)
            );
        }
    };
    section("Receive queue -> driver cpu", &s.queue_driver, &rxq, &cpu);
    section(
        "Driver cpu -> processing cpu",
        &s.driver_cpu,
        &opt_cpu,
        &cpu,
    );
    section(
        "Processing cpu -> application cpu",
        &s.cpu_app,
        &opt_cpu,
        &cpu,
    );
    section(
        "Application cpu -> transmit queue",
        &s.app_queue,
        &opt_cpu,
        &txq,
    );
    let tx_from = |q: Option<u32>| q.map_or("-".to_string(), txq);
    section(
        "Transmit queue -> driver cpu",
        &s.queue_tx_driver,
        &tx_from,
        &cpu,
    );
    if s.unjoined > 0 {
        let _ = writeln!(
            out,
            "{} of flows on several cpus at two stages not in the matrices (counted per flow, not per packet).",
            super::text::count(s.unjoined, "packet")
        );
    }
    if s.missed > 0 {
        let _ = writeln!(
            out,
            "{} not followed: the path table was full.",
            super::text::count(s.missed, "packet")
        );
    }
    out
}

/// A flow's `--path` keys in `--json`: ids as strings to packets, as
/// `streams` (`none`: no receive queue recorded), in increasing order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowPathJson {
    pub queues: StreamPackets,
    pub driver_cpus: StreamPackets,
    pub app_cpus: StreamPackets,
    /// `name[pid]` -> packets.
    pub apps: StreamPackets,
    pub mismatches: Vec<String>,
}

impl FlowPathJson {
    pub fn new(p: &FlowPath) -> FlowPathJson {
        let ids = |v: Vec<(u32, u64)>| {
            StreamPackets(v.into_iter().map(|(c, n)| (c.to_string(), n)).collect())
        };
        let queues = p.sum(|s| {
            matches!(s.stage, PathStage::RxDriver | PathStage::TxDriver)
                .then_some((s.queue.is_none(), s.queue))
        });
        FlowPathJson {
            queues: StreamPackets(
                queues
                    .into_iter()
                    .map(|((_, q), n)| (super::json::stream_key(q), n))
                    .collect(),
            ),
            driver_cpus: ids(p.driver_cpus()),
            app_cpus: ids(p.app_cpus()),
            apps: StreamPackets(p.apps()),
            mismatches: p.mismatches.iter().map(|m| m.to_string()).collect(),
        }
    }
}

/// One cell of a matrix in `--json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellJson {
    /// null: no recorded queue.
    pub from: Option<u32>,
    pub to: u32,
    pub packets: u64,
}

/// The top-level `"path"` object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathJson {
    pub rx_queue_to_driver_cpu: Vec<CellJson>,
    pub driver_cpu_to_cpu: Vec<CellJson>,
    pub cpu_to_app_cpu: Vec<CellJson>,
    pub app_cpu_to_tx_queue: Vec<CellJson>,
    pub tx_queue_to_driver_cpu: Vec<CellJson>,
    pub unjoined_packets: u64,
    pub missed_packets: u64,
    pub unattributed_reads: Vec<ReadJson>,
}

/// Reads of unconnected UDP sockets by one process on one cpu.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadJson {
    pub process: String,
    pub pid: u32,
    pub cpu: u32,
    pub reads: u64,
}

impl PathJson {
    pub fn new(s: &PathSummary) -> PathJson {
        let cells = |m: &Matrix| {
            m.iter()
                .map(|(&(from, to), &packets)| CellJson { from, to, packets })
                .collect()
        };
        PathJson {
            rx_queue_to_driver_cpu: cells(&s.queue_driver),
            driver_cpu_to_cpu: cells(&s.driver_cpu),
            cpu_to_app_cpu: cells(&s.cpu_app),
            app_cpu_to_tx_queue: cells(&s.app_queue),
            tx_queue_to_driver_cpu: cells(&s.queue_tx_driver),
            unjoined_packets: s.unjoined,
            missed_packets: s.missed,
            unattributed_reads: s
                .unattributed_reads
                .iter()
                .map(|((process, pid, cpu), &reads)| ReadJson {
                    process: process.clone(),
                    pid: *pid,
                    cpu: *cpu,
                    reads,
                })
                .collect(),
        }
    }
}
