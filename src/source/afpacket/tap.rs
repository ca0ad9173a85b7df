//! With `--flows` in the queue vantage, transmitted packets: a second,
//! small fanout group by cpu on the same interface, only to learn which
//! cpus sent each flow (what XPS maps to a queue), which the queue
//! streams cannot see. Its workers keep a flow table each and run on
//! threads of their own until the capture's workers are done.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::consumers::flows::{self, FlowBudget, FlowJoin, FlowKey, FlowTable, Role};
use crate::consumers::Consumers;
use crate::error::{Error, Result};
use crate::filter;
use crate::options::{Direction, Options};
use crate::packet::LinkType;
use crate::source::afpacket::group::{self, Group};
use crate::source::afpacket::worker::Worker;
use crate::source::Target;
use crate::source::RETIRE_MS;
use crate::sys::afpacket::Filter;
use crate::sys::host::pin_to;
use crate::sys::ring::Geometry;
use crate::vantage::{self, Plan};
use crate::worker::{PanicGuard, Shared};

/// Bytes the sender tap keeps of a packet: enough for the flow key.
const TAP_SNAPLEN: u32 = 256;
/// The sender tap's ring per cpu.
const TAP_RING: usize = 1 << 20;

/// The group and what its threads share.
struct Tap {
    plan: Plan,
    group: Group,
    shared: Shared,
}

pub struct SenderTap {
    tap: Arc<Tap>,
    rings: Vec<crate::sys::ring::Ring>,
    filter: Filter,
    threads: Vec<JoinHandle<Option<FlowTable>>>,
    /// `--metrics`: the capture's tables joined, told of each flow's
    /// sending cpus as they are learnt.
    join: Option<Arc<FlowJoin>>,
    /// `--flows-idle`: the tap's tables expire idle flows as the
    /// capture's do, so that a long run keeps learning new flows' senders
    /// rather than filling its budget with flows long gone.
    idle: Option<u32>,
}

impl SenderTap {
    pub fn build(opts: &Options, target: &Target, say: &dyn Fn(String)) -> Result<SenderTap> {
        let plan = vantage::every_cpu();
        let kernel_snaplen = target.kernel_snaplen(TAP_SNAPLEN);
        let geometry = Geometry::new(kernel_snaplen, TAP_RING, RETIRE_MS);
        let (filter, _) = filter::capture_filter(
            opts.filter.as_ref(),
            target.link,
            Direction::Tx,
            target.link.snaplen(TAP_SNAPLEN),
            kernel_snaplen,
        )?;
        say(format!(
            "sender tap: a fanout group by cpu ({} KiB per cpu) learns which cpu sent each flow",
            geometry.bytes() / 1024
        ));
        let (group, rings) = group::build_group(&plan, target, geometry, say)?;
        let shared =
            Shared::new(plan.streams.len()).map_err(|e| Error::os("error creating eventfd", e))?;
        Ok(SenderTap {
            tap: Arc::new(Tap {
                plan,
                group,
                shared,
            }),
            rings,
            filter,
            threads: Vec::new(),
            join: None,
            idle: opts.flows_idle,
        })
    }

    /// With `--metrics`: tells `join` which cpus sent each flow.
    pub fn joined(mut self, join: Option<Arc<FlowJoin>>) -> SenderTap {
        self.join = join;
        self
    }

    /// Lets packets in and starts the workers, one per cpu, each keeping a
    /// flow table only.
    pub fn start(&mut self, link: LinkType, flows_max: u64) -> Result<()> {
        let tap = &self.tap;
        for stream in &tap.plan.streams {
            tap.group.sockets[stream.member as usize]
                .attach_filter(&self.filter)
                .map_err(|e| Error::os("error attaching filter", e))?;
        }
        let budget = FlowBudget::new(flows_max);
        for (slot, ring) in std::mem::take(&mut self.rings).into_iter().enumerate() {
            let tap = Arc::clone(&self.tap);
            let budget = budget.clone();
            let join = self.join.clone();
            let idle = self.idle;
            let spawned = std::thread::Builder::new()
                .name(format!("tap {}", tap.plan.streams[slot].label()))
                .spawn(move || {
                    let stream = &tap.plan.streams[slot];
                    let sock = &tap.group.sockets[stream.member as usize];
                    let _guard = PanicGuard::worker(&tap.shared, sock, slot);
                    if let Some(cpus) = &stream.pin {
                        let _ = pin_to(cpus);
                    }
                    let mut table = FlowTable::new(stream.flow_id(), link, budget);
                    if let Some(idle) = idle {
                        table = table.expiring(idle);
                    }
                    if let Some(join) = join {
                        table = table.joined(join, Role::Sender);
                    }
                    let consumers = Consumers {
                        flows: Some(table),
                        ..Consumers::default()
                    };
                    Worker::new(
                        stream.member,
                        stream.pin.clone(),
                        slot,
                        sock,
                        ring,
                        consumers,
                        &tap.shared,
                    )
                    .run()
                    .flows
                });
            if let Ok(h) = spawned {
                self.threads.push(h);
            }
        }
        Ok(())
    }

    /// Stops the tap's workers (the capture's are done): the cpus that
    /// sent each flow.
    pub fn finish(self) -> HashMap<FlowKey, Vec<u32>> {
        self.tap.shared.stop();
        let tables: Vec<FlowTable> = self
            .threads
            .into_iter()
            .filter_map(|h| h.join().ok().flatten())
            .collect();
        let mut by_flow: HashMap<FlowKey, Vec<u32>> = HashMap::new();
        for r in flows::merge(tables).records {
            by_flow.insert(r.key, r.streams.iter().map(|&(cpu, _)| cpu).collect());
        }
        by_flow
    }
}
