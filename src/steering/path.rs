//! `--path`: each flow's stages against the steering configuration, and
//! the matrices of all flows. The rules are [`crate::steering`]'s, applied
//! to what the kernel probes saw ([`crate::consumers::flows::path`]):
//!
//! - RSS: a received packet's recorded queue against the queue the NIC's
//!   RSS table gives the flow ([`Config::rss_queue_of`], where the device
//!   says enough to compute it), and the driver's cpu against the queue's
//!   interrupt cpu (where that is one cpu and NAPI is not threaded).
//! - RPS: the processing cpu (the capture's stream) against
//!   [`expected_rx_cpu`] of the packet's queue (0 where none was recorded,
//!   as get_rps_cpu() does), the flow's hash and the driver's cpu: where
//!   RPS (not RFS) decides, for every queue and driver cpu the flow had.
//! - RFS: the processing cpu against the cpus the application read the
//!   flow on: RFS exists to make them one, so a flow processed on a cpu
//!   where it was not read is named where RFS is off; where it is on
//!   (the flow's queues have `rps_flow_cnt`), the first packets go where
//!   RPS sends them until a read records the reader's cpu, so it is named
//!   only if no packet was processed where it was read.
//! - XPS: each sending cpu's transmit queue against [`expected_tx_queue`]
//!   of that cpu (the probe sees both at once, per packet).
//!
//! Only what was seen is judged: a stage without observations, or a
//! configuration that does not predict, names nothing.

use std::collections::{BTreeMap, BTreeSet};

use crate::consumers::flows::path::{FlowPath, PathStage, PathSummary, Process};
use crate::consumers::flows::table::FlowRecord;
use crate::consumers::flows::{Flows, Mechanism};
use crate::steering::expect::rss_input;
use crate::steering::{expected_rx_cpu, expected_tx_queue, Config};

/// Sets every flow's mismatches and the matrices in `flows.path` (which
/// the caller made, with what it could not attribute).
pub fn judge(config: Option<&Config>, flows: &mut Flows) {
    let mut summary = flows.path.take().unwrap_or_default();
    let mut paths = std::mem::take(&mut summary.flows);
    for r in &flows.records {
        let Some(p) = paths.get_mut(&r.key) else {
            continue;
        };
        if let Some(c) = config {
            p.mismatches = mismatches(c, r, p);
        }
        add_to_matrices(&mut summary, r, p);
    }
    summary.flows = paths;
    flows.path = Some(summary);
}

fn mismatches(c: &Config, r: &FlowRecord, p: &FlowPath) -> Vec<&'static str> {
    let mut out = Vec::new();
    let hash = r.hash.unwrap_or(0);
    let rx: Vec<_> = p
        .steps
        .iter()
        .filter(|s| s.stage == PathStage::RxDriver)
        .collect();
    // RSS: the queue and the interrupt's cpu.
    let rss_queue = rss_input(&r.key).and_then(|(t, f)| c.rss_queue_of(&t, f));
    if rx.iter().any(|s| {
        let off_queue = matches!((s.queue, rss_queue), (Some(q), Some(e)) if q != e);
        let off_irq = s
            .queue
            .and_then(|q| c.irq_cpu(q))
            .is_some_and(|cpu| cpu != s.cpu);
        off_queue || off_irq
    }) {
        out.push("RSS");
    }
    // What RPS or RFS does with the flow's packets, for every queue and
    // driver cpu seen (nothing when its hash changed: which hash steered
    // which packet is not known).
    let processing: BTreeSet<u32> = r.streams.iter().map(|&(cpu, _)| cpu).collect();
    let expected: Vec<_> = if r.hash_changed {
        Vec::new()
    } else {
        rx.iter()
            .map(|s| expected_rx_cpu(c, s.queue.unwrap_or(0), hash, Some(s.cpu)))
            .collect()
    };
    let all = |m: Mechanism| !expected.is_empty() && expected.iter().all(|e| e.by == m);
    if all(Mechanism::Rps) && expected.iter().all(|e| e.stream.is_some()) {
        let allowed: BTreeSet<u32> = expected.iter().filter_map(|e| e.stream).collect();
        if !processing.is_subset(&allowed) {
            out.push("RPS");
        }
    }
    // RFS: processed where the application did not read it. With RFS on,
    // a flow's first packets go where RPS sends them, until a read
    // records the reader's cpu: there it is off only if it never
    // followed the reader.
    let read: BTreeSet<u32> = p
        .steps
        .iter()
        .filter(|s| s.stage == PathStage::Read && matches!(s.process, Process::Named { .. }))
        .map(|s| s.cpu)
        .collect();
    let off = if all(Mechanism::Rfs) {
        processing.is_disjoint(&read)
    } else {
        !processing.is_subset(&read)
    };
    if !read.is_empty() && off {
        out.push("RFS");
    }
    // XPS: per sending cpu, the queue it chose.
    if p.steps.iter().any(|s| {
        s.stage == PathStage::Send
            && match expected_tx_queue(c, s.cpu, None, hash) {
                e if e.by == Mechanism::Xps => e.stream.is_some() && e.stream != s.queue,
                _ => false,
            }
    }) {
        out.push("XPS");
    }
    out
}

/// One flow's share of the matrices. Stages counted together by one
/// probe (queue and driver cpu; sending cpu and queue) are exact per
/// packet; the others are joined per flow, exactly where one side of the
/// flow is a single cpu, else counted as unjoined.
fn add_to_matrices(m: &mut PathSummary, r: &FlowRecord, p: &FlowPath) {
    for s in &p.steps {
        match s.stage {
            PathStage::RxDriver => {
                *m.queue_driver.entry((s.queue, s.cpu)).or_default() += s.packets
            }
            PathStage::TxDriver => {
                *m.queue_tx_driver.entry((s.queue, s.cpu)).or_default() += s.packets
            }
            PathStage::Send if matches!(s.process, Process::Named { .. }) => {
                if let Some(q) = s.queue {
                    *m.app_queue.entry((Some(s.cpu), q)).or_default() += s.packets;
                }
            }
            _ => {}
        }
    }
    let per_cpu = |stage: PathStage| -> Vec<(u32, u64)> {
        let mut v: BTreeMap<u32, u64> = BTreeMap::new();
        for s in p.steps.iter().filter(|s| s.stage == stage) {
            if stage != PathStage::Read || matches!(s.process, Process::Named { .. }) {
                *v.entry(s.cpu).or_default() += s.packets;
            }
        }
        v.into_iter().collect()
    };
    let processing = if r.directions == crate::consumers::flows::RECEIVED {
        r.streams.clone()
    } else {
        Vec::new()
    };
    join(
        &mut m.driver_cpu,
        &mut m.unjoined,
        &per_cpu(PathStage::RxDriver),
        &processing,
    );
    join(
        &mut m.cpu_app,
        &mut m.unjoined,
        &processing,
        &per_cpu(PathStage::Read),
    );
}

/// Adds `from` -> `to` of one flow: where one side is a single cpu, every
/// packet of the other side went from (or to) it.
fn join(
    m: &mut crate::consumers::flows::path::Matrix,
    unjoined: &mut u64,
    from: &[(u32, u64)],
    to: &[(u32, u64)],
) {
    match (from, to) {
        ([], _) | (_, []) => {}
        ([(f, _)], to) => {
            for &(t, n) in to {
                *m.entry((Some(*f), t)).or_default() += n;
            }
        }
        (from, [(t, _)]) => {
            for &(f, n) in from {
                *m.entry((Some(f), *t)).or_default() += n;
            }
        }
        (_, to) => *unjoined += to.iter().map(|(_, n)| n).sum::<u64>(),
    }
}
