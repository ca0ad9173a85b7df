//! `--metrics` in a capture: the endpoint bound before the capture starts
//! (a port in use ends the program before any file is made), then serving,
//! once per scrape, the counters the workers keep anyway.

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::consumers::flows::FlowJoin;
use crate::error::Result;
use crate::live::monitor::Counters;
use crate::metrics::kernel::KernelCpus;
use crate::metrics::{Description, FlowCounts, ReasonDrops, Server, Snapshot, StreamCounts};
use crate::options::{Options, Vantage};
use crate::source::probes::drops::DropProbe;
use crate::vantage::Plan;
use crate::worker::Shared;

/// The endpoint `--metrics` asks for, bound; None without it.
pub fn bind(opts: &Options) -> Result<Option<Server>> {
    Ok(opts.metrics.map(Server::bind).transpose()?)
}

/// The labels of the capture's series.
pub fn description(opts: &Options, plan: &Plan, interface: &str) -> Description {
    Description {
        interface: interface.to_string(),
        vantage: plan.vantage.as_str().to_string(),
        direction: opts.direction.as_str().to_string(),
        // As the report and the file names write them: "0", "noqueue".
        streams: plan
            .streams
            .iter()
            .map(|s| {
                s.id()
                    .map_or_else(|| "noqueue".to_string(), |id| id.to_string())
            })
            .collect(),
        start: SystemTime::now(),
    }
}

/// What a scrape reads: the source's per-stream counters (the live
/// view's), the workers' repeated copies, the kernel's per-cpu counters.
pub struct Scraped<'a> {
    counters: &'a (dyn Counters + Sync),
    shared: &'a Shared,
    repeats: bool,
    flows: bool,
    /// The cpu vantage: /proc/softirqs and /proc/net/softnet_stat.
    cpus: Option<Mutex<KernelCpus>>,
    /// `--drops`: the probe's counters.
    drops: Option<&'a DropProbe>,
    /// `--flows`: the tables joined (split and unexpected flows).
    join: Option<&'a FlowJoin>,
}

impl<'a> Scraped<'a> {
    pub fn new(
        opts: &Options,
        plan: &Plan,
        counters: &'a (dyn Counters + Sync),
        shared: &'a Shared,
        (drops, join): (Option<&'a DropProbe>, Option<&'a FlowJoin>),
    ) -> Scraped<'a> {
        Scraped {
            counters,
            shared,
            drops,
            join,
            repeats: opts.repeats.is_some(),
            flows: opts.flows.is_some(),
            cpus: (plan.vantage == Vantage::Cpu)
                .then(|| KernelCpus::open().ok().map(Mutex::new))
                .flatten(),
        }
    }
}

impl crate::metrics::Source for Scraped<'_> {
    fn snapshot(&self) -> Snapshot {
        let streams: Vec<StreamCounts> = self
            .counters
            .read()
            .into_iter()
            .map(StreamCounts::from)
            .collect();
        let repeated_copies = self.repeats.then(|| {
            self.shared
                .repeated
                .iter()
                .take(streams.len())
                .map(|r| r.load(Ordering::Relaxed))
                .collect()
        });
        // Some for the whole capture once the files opened, so that no
        // family comes and goes between scrapes.
        let cpus = self.cpus.as_ref().map(|k| {
            k.lock()
                .unwrap_or_else(|e| e.into_inner())
                .read()
                .unwrap_or_default()
        });
        Snapshot {
            streams,
            repeated_copies,
            // Every drop the report lists, those of an unknown namespace
            // (DropCount::namespace_known) marked as the report marks them.
            drop_reasons: self.drops.map(|p| {
                super::drops::read(p)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|d| ReasonDrops {
                        cpu: d.cpu,
                        reason: d.reason,
                        packets: d.packets,
                        namespace_unknown: !d.namespace_known,
                    })
                    .collect()
            }),
            // Seen and held, per stream; split and unexpected from the
            // tables joined (unexpected where the steering was read).
            flows: self.flows.then(|| FlowCounts {
                seen: sum(&self.shared.flows_seen),
                split: self.join.map(FlowJoin::split),
                unexpected: self.join.and_then(FlowJoin::unexpected),
                tracked: sum(&self.shared.flows_tracked),
                untracked_packets: sum(&self.shared.flows_untracked),
            }),
            cpus,
        }
    }
}

fn sum(counts: &[std::sync::atomic::AtomicU64]) -> u64 {
    counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
}
