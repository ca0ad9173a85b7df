//! Vantages: how a capture splits packets into streams. Per cpu (the cpu
//! whose kernel context handled the packet), per device queue (the queue it
//! went through), or per NUMA node (the node of that cpu). A vantage says
//! how many streams there are, what they are called in messages and file
//! names, and how the kernel routes a packet to one: a fanout group whose
//! member `i` is stream `i`, by cpu or by a small eBPF fanout program
//! (`source::afpacket::fanout`).
//!
//! The program's invocation name picks the vantage (`rxtxqueue`,
//! `rxqueue`, `txqueue`, `rxtxnuma`, ...), and `--vantage` overrides it.

pub mod machine;

use std::io;

use crate::cpuset::CpuSet;
use crate::error::{Error, Result, Why};
use crate::options::Vantage;
use crate::options::{Direction, Options, Selection};

/// One stream of a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    /// Its member index in the fanout group.
    pub member: u32,
    pub kind: StreamKind,
    /// The cpus its worker runs on (None: wherever the scheduler likes).
    pub pin: Option<CpuSet>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    Cpu(u32),
    Queue(u32),
    /// Received packets whose device recorded no receive queue (or a queue
    /// beyond those it had when the capture started): never folded into a
    /// real queue.
    NoQueue,
    Numa(u32),
}

impl Stream {
    /// Where the report puts its packets: `on cpu3`, `on queue 2`, `on numa
    /// node 0`, `with no receive queue recorded`.
    pub fn place(&self) -> String {
        match self.kind {
            StreamKind::NoQueue => "with no receive queue recorded".to_string(),
            _ => format!("on {}", self.label()),
        }
    }

    /// Its name in messages: `cpu3`, `queue 2`, `numa node 0`, `no queue`.
    pub fn label(&self) -> String {
        match self.kind {
            StreamKind::Cpu(c) => format!("cpu{c}"),
            StreamKind::Queue(q) => format!("queue {q}"),
            StreamKind::NoQueue => "no queue".to_string(),
            StreamKind::Numa(n) => format!("numa node {n}"),
        }
    }

    /// Its name in tables, without spaces: `cpu3`, `queue2`, `node0`,
    /// `noqueue`.
    pub fn short_label(&self) -> String {
        match self.kind {
            StreamKind::NoQueue => "noqueue".to_string(),
            _ => short_label(Vantage::of(self.kind), self.id().unwrap_or(u32::MAX)),
        }
    }

    /// Its number in the flow tables: its id, [`NO_ID`] for the no-queue
    /// stream.
    pub fn flow_id(&self) -> u32 {
        self.id().unwrap_or(NO_ID)
    }

    /// What goes into its file name: `out.pcap` -> `out-<suffix>.pcap`.
    pub fn file_suffix(&self) -> String {
        match self.kind {
            StreamKind::Cpu(n) | StreamKind::Queue(n) | StreamKind::Numa(n) => n.to_string(),
            StreamKind::NoQueue => "noqueue".to_string(),
        }
    }

    /// Its number (cpu, queue or node); None for the no-queue stream.
    pub fn id(&self) -> Option<u32> {
        match self.kind {
            StreamKind::Cpu(n) | StreamKind::Queue(n) | StreamKind::Numa(n) => Some(n),
            StreamKind::NoQueue => None,
        }
    }
}

/// The flow-table number of the stream that has no id (no queue).
pub const NO_ID: u32 = u32::MAX;

/// The short name of stream `id` of `vantage`, also of one that is not
/// captured (a flow expected on it): `cpu3`, `queue2`, `node0`; `noqueue`
/// for [`NO_ID`].
pub fn short_label(vantage: Vantage, id: u32) -> String {
    match (vantage, id) {
        (_, NO_ID) => "noqueue".to_string(),
        (Vantage::Cpu, n) => format!("cpu{n}"),
        (Vantage::Queue, n) => format!("queue{n}"),
        (Vantage::Numa, n) => format!("node{n}"),
    }
}

/// How the kernel picks a packet's fanout member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// PACKET_FANOUT_CPU: the cpu handling the packet, modulo the members.
    Cpu,
    /// An eBPF program returning the packet's queue, or `queues` (the
    /// no-queue member) when it has none.
    Queue { queues: u32 },
    /// An eBPF program returning the numa node of the cpu handling it.
    Numa,
}

/// The streams of one capture and how packets reach them.
#[derive(Clone, Debug)]
pub struct Plan {
    pub vantage: Vantage,
    /// Members of the fanout group: one per possible stream, captured or
    /// not, so that member `i` always means stream `i`.
    pub members: u32,
    pub route: Route,
    /// The captured streams, in order.
    pub streams: Vec<Stream>,
    /// Setup detail for -v.
    pub notes: Vec<String>,
    /// Said whether or not -v is given.
    pub warnings: Vec<String>,
    /// Members left out for being offline when the plan was made (cpus;
    /// numa nodes without an online cpu): their packets are not captured
    /// should they come online during the capture ([`Plan::came_online`]).
    pub offline: CpuSet,
}

impl Plan {
    /// Warnings for the members that were offline when the capture
    /// started and are online at its end: the kernel handled packets on
    /// them that no stream captured, and the report must not read as if
    /// it covered them.
    pub fn came_online(&self) -> Vec<String> {
        let (online, noun) = match self.vantage {
            Vantage::Cpu => (machine::online(), "cpu"),
            Vantage::Numa => (machine::numa_nodes().with_cpus, "numa node "),
            Vantage::Queue => return Vec::new(),
        };
        self.offline
            .intersection(&online)
            .iter()
            .map(|m| {
                format!(
                    "warning: {noun}{m} came online during the capture and was not captured \
                     (it was offline when the capture started)"
                )
            })
            .collect()
    }
}

/// Works out the streams `opts` asks for on this machine (and, per queue,
/// on its interface). Usage errors come as [`Error::Usage`].
pub fn plan(opts: &Options) -> Result<Plan> {
    match opts.vantage {
        Vantage::Cpu => cpu_plan(opts.selection.as_ref()),
        Vantage::Queue => queue_plan(opts),
        Vantage::Numa => numa_plan(opts),
    }
}

/// Which of `configured` ids to capture: the selection (or all) that is
/// configured and online. Fails as the original does when the selection
/// names nothing configured, or nothing online.
fn select(
    v: Vantage,
    selection: Option<&Selection>,
    configured: &CpuSet,
    online: &CpuSet,
) -> Result<(CpuSet, CpuSet, CpuSet)> {
    match selection {
        None => Ok((online.clone(), configured.difference(online), CpuSet::new())),
        Some(sel) => {
            let kind = sel.kind.as_str();
            let present = sel.set.intersection(configured);
            if present.is_empty() {
                return Err(Error::Usage(format!(
                    "No configured {} present in {} {kind}.",
                    v.plural(),
                    v.list_word()
                )));
            }
            let chosen = present.intersection(online);
            if chosen.is_empty() {
                return Err(Error::Usage(format!(
                    "No online {} present in {} {kind}.",
                    v.plural(),
                    v.list_word()
                )));
            }
            Ok((
                chosen,
                present.difference(online),
                sel.set.difference(configured),
            ))
        }
    }
}

/// Every online cpu, as a cpu vantage: for a side capture that must know
/// the cpu of each packet whatever the main vantage is.
pub fn every_cpu() -> Plan {
    // With no selection the cpu plan cannot fail.
    cpu_plan(None).unwrap_or_else(|_| unreachable!("a cpu plan without a selection"))
}

/// `cpu 5` or `cpus 5-7`: a set in a message, its noun singular for one.
fn named(set: &CpuSet, noun: &str) -> String {
    let s = if set.len() == 1 { "" } else { "s" };
    format!("{noun}{s} {set}")
}

fn cpu_plan(selection: Option<&Selection>) -> Result<Plan> {
    let configured = machine::configured_count();
    let all = CpuSet::first(configured);
    let online = machine::online().intersection(&all);
    let (cpus, offline, unconfigured) = select(Vantage::Cpu, selection, &all, &online)?;
    let mut notes = vec![format!(
        "{configured} configured cpus ({all}), capturing on cpus {cpus}"
    )];
    for cpu in offline.iter() {
        notes.push(format!("cpu{cpu} is offline; not capturing on it"));
    }
    let mut warnings = Vec::new();
    if !unconfigured.is_empty() {
        // Not only with -v: a cpu list written for a bigger machine should
        // not silently capture less than it says.
        warnings.push(format!(
            "warning: ignoring {}: this machine has {}",
            named(&unconfigured, "cpu"),
            named(&all, "cpu")
        ));
    }
    Ok(Plan {
        vantage: Vantage::Cpu,
        members: configured,
        route: Route::Cpu,
        streams: cpus
            .iter()
            .map(|c| Stream {
                member: c,
                kind: StreamKind::Cpu(c),
                pin: Some(std::iter::once(c).collect()),
            })
            .collect(),
        notes,
        warnings,
        offline,
    })
}

fn queue_plan(opts: &Options) -> Result<Plan> {
    let Some(name) = &opts.interface else {
        return Err(Error::Usage(
            "An interface argument is required when capturing per queue.".into(),
        ));
    };
    let counts = queue_counts(name)?;
    let queues = match opts.direction {
        Direction::Rx => counts.rx,
        Direction::Tx => counts.tx,
        Direction::RxTx => counts.rx.max(counts.tx),
    };
    let all = CpuSet::first(queues);
    let (chosen, _, unconfigured) = select(opts.vantage, opts.selection.as_ref(), &all, &all)?;
    let mut notes = vec![
        format!("Found '{queues}' queues."),
        format!(
            "{name} has {} rx and {} tx queues; capturing on queues {chosen}",
            counts.rx, counts.tx
        ),
    ];
    let mut streams: Vec<Stream> = chosen
        .iter()
        .map(|q| Stream {
            member: q,
            kind: StreamKind::Queue(q),
            pin: None,
        })
        .collect();
    // Received packets may carry no queue: they get a stream of their own
    // (the last member), captured unless -l/-m chose queues.
    if opts.direction != Direction::Tx && opts.selection.is_none() {
        streams.push(Stream {
            member: queues,
            kind: StreamKind::NoQueue,
            pin: None,
        });
        notes.push("received packets without a recorded queue are counted on their own".into());
    }
    let mut warnings = Vec::new();
    if !unconfigured.is_empty() {
        warnings.push(format!(
            "warning: ignoring {}: {name} has {}",
            named(&unconfigured, "queue"),
            named(&all, "queue")
        ));
    }
    Ok(Plan {
        vantage: Vantage::Queue,
        members: queues + 1,
        route: Route::Queue { queues },
        streams,
        notes,
        warnings,
        offline: CpuSet::new(),
    })
}

fn numa_plan(opts: &Options) -> Result<Plan> {
    let nodes = machine::numa_nodes();
    let configured = CpuSet::first(nodes.possible);
    let (chosen, offline, unconfigured) = select(
        opts.vantage,
        opts.selection.as_ref(),
        &configured,
        &nodes.with_cpus,
    )?;
    let mut notes = vec![format!(
        "{} configured numa nodes ({configured}), capturing on numa nodes {chosen}",
        nodes.possible
    )];
    for n in offline.iter() {
        notes.push(format!(
            "numa node {n} has no online cpus; not capturing on it"
        ));
    }
    let mut warnings = Vec::new();
    if !unconfigured.is_empty() {
        warnings.push(format!(
            "warning: ignoring {}: this machine has {}",
            named(&unconfigured, "numa node"),
            named(&configured, "numa node")
        ));
    }
    let streams = chosen
        .iter()
        .map(|n| {
            let cpus = machine::node_cpus(n).intersection(&machine::online());
            notes.push(format!("numa node {n}: cpus {cpus}"));
            Stream {
                member: n,
                kind: StreamKind::Numa(n),
                pin: (!cpus.is_empty()).then_some(cpus),
            }
        })
        .collect();
    Ok(Plan {
        vantage: Vantage::Numa,
        members: nodes.possible,
        route: Route::Numa,
        streams,
        notes,
        warnings,
        offline,
    })
}

/// An interface's receive and transmit queue counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueCounts {
    pub rx: u32,
    pub tx: u32,
}

/// The queues the device has now (real_num_rx/tx_queues), from the rx-N
/// and tx-N directories of /sys/class/net/IF/queues. sysfs shows the
/// network namespace it was mounted in, so its ifindex is checked against
/// the one the kernel gives this process for the name.
pub fn queue_counts(name: &str) -> Result<QueueCounts> {
    let bad = |e: io::Error, hint: &str| Error::Interface {
        name: name.to_string(),
        why: Why(e),
        hint: hint.to_string(),
    };
    let ifindex = crate::sys::afpacket::ifindex(name).map_err(|e| bad(e, ""))?;
    let dir = format!("/sys/class/net/{name}");
    let sys_index = std::fs::read_to_string(format!("{dir}/ifindex"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    if sys_index != Some(ifindex) {
        return Err(Error::Message(format!(
            "error reading the queues of '{name}': /sys/class/net belongs to another network \
             namespace (run the capture with `ip netns exec`, which mounts the right one)"
        )));
    }
    let entries = std::fs::read_dir(format!("{dir}/queues"))
        .map_err(|e| Error::os(format!("error reading {dir}/queues"), e))?;
    let (mut rx, mut tx) = (0, 0);
    for e in entries.flatten() {
        let n = e.file_name();
        let n = n.to_string_lossy();
        if n.starts_with("rx-") {
            rx += 1;
        } else if n.starts_with("tx-") {
            tx += 1;
        }
    }
    Ok(QueueCounts { rx, tx })
}

/// The vantage a stream belongs to.
impl Vantage {
    fn of(kind: StreamKind) -> Vantage {
        match kind {
            StreamKind::Cpu(_) => Vantage::Cpu,
            StreamKind::Queue(_) | StreamKind::NoQueue => Vantage::Queue,
            StreamKind::Numa(_) => Vantage::Numa,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pick_vantage_and_direction() {
        assert_eq!(Vantage::for_name("rxqueue"), Vantage::Queue);
        assert_eq!(Vantage::for_name("txnuma"), Vantage::Numa);
        assert_eq!(Vantage::for_name("rxtxcpu"), Vantage::Cpu);
        assert_eq!(Vantage::for_name("anything"), Vantage::Cpu);
        assert_eq!(Direction::for_name("txqueue"), Direction::Tx);
        assert_eq!(Direction::for_name("rxnuma"), Direction::Rx);
        assert_eq!(Direction::for_name("rxtxqueue"), Direction::RxTx);
    }

    #[test]
    fn stream_names() {
        let s = |kind| Stream {
            member: 0,
            kind,
            pin: None,
        };
        assert_eq!(s(StreamKind::Cpu(3)).place(), "on cpu3");
        assert_eq!(s(StreamKind::Queue(2)).place(), "on queue 2");
        assert_eq!(s(StreamKind::Numa(0)).place(), "on numa node 0");
        assert_eq!(
            s(StreamKind::NoQueue).place(),
            "with no receive queue recorded"
        );
        assert_eq!(s(StreamKind::Queue(2)).file_suffix(), "2");
        assert_eq!(s(StreamKind::NoQueue).file_suffix(), "noqueue");
    }
}
