//! The default source: one AF_PACKET socket per possible stream in a
//! fanout group (by cpu, or by a small eBPF program for queues and numa
//! nodes), a TPACKET_V3 ring for each captured stream, and a ring worker
//! per stream ([`worker`]). The group is built with the setup race closed
//! ([`group`]); packets are let in only once the group is complete and
//! the outputs exist.

pub mod fanout;
pub mod group;
pub mod ring_size;
mod tap;
pub mod worker;

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::consumers::flows::FlowJoin;
use crate::consumers::Consumers;
use crate::error::{Error, Result};
use crate::filter;
use crate::live::monitor::{Count, Counters};
use crate::options::Options;
use crate::report::StreamCount;
use crate::source::{Ended, Source, Target, RETIRE_MS};
use crate::sys::afpacket::{Filter, PacketSocket};
use crate::sys::ring::{Geometry, Ring};
use crate::vantage::{Plan, Stream};
use crate::worker::count::Gate;
use crate::worker::{Job, PanicGuard, Shared};

use group::Group;
use tap::SenderTap;
use worker::Worker;

/// The kernel's snap length when nothing reads the packets' bytes (see
/// [`Options::reads_packet_data`]): the least a packet socket's filter can
/// keep and still accept the packet.
const HEADERS_ONLY_SNAPLEN: u32 = 1;

/// The blocks of such a capture's ring, when it is large enough.
const HEADERS_ONLY_BLOCK: usize = 512 * 1024;

/// The fanout group and its rings.
pub struct FanoutSource {
    target: Target,
    streams: Vec<Stream>,
    group: Group,
    /// The captured streams' rings, until their jobs take them.
    rings: RefCell<Vec<Option<Ring>>>,
    /// What the captured streams' sockets run once packets are let in.
    filter: Filter,
    /// For the sender tap.
    opts: Options,
    tap: Option<SenderTap>,
}

impl FanoutSource {
    /// Builds the group for `plan` on `target`: every socket drops all
    /// packets until [`Source::start`].
    pub fn open(
        opts: &Options,
        plan: &Plan,
        target: &Target,
        say: &dyn Fn(String),
    ) -> Result<FanoutSource> {
        say(format!("direction {}", opts.direction.as_str()));
        say(format!(
            "interface {} (ifindex {})",
            target.label, target.ifindex
        ));
        // A capture that reads no packet's bytes asks the kernel for none
        // of them: the filter's return value is the length it copies into
        // the ring (0 would drop the packet, so 1), and the record's
        // header still says the packet's whole length. The kernel then
        // copies one byte instead of the packet, and the ring (sized for
        // snapped packets) holds more packets in less memory.
        let headers_only = !opts.reads_packet_data();
        let kernel_snaplen = if headers_only {
            HEADERS_ONLY_SNAPLEN
        } else {
            target.kernel_snaplen(opts.snaplen)
        };
        // The kernel computes a flow hash per packet only for what uses it.
        let want_hash = opts.pcapng && opts.write.is_some() || opts.flows.is_some();
        let (ring_bytes, why) = match opts.buffer_bytes {
            Some(b) => (b, "-B".to_string()),
            None => ring_size::default_bytes(plan.streams.len(), kernel_snaplen),
        };
        let mut geometry =
            Geometry::new(kernel_snaplen, ring_bytes, RETIRE_MS).with_hash(want_hash);
        if headers_only {
            // Records of a byte: the blocks of a whole-frame ring (512 KiB)
            // while 16 of them fit, so a block still hands over thousands
            // of packets at a wakeup (at 128 KiB, counting 64-byte frames
            // cost 2-3 ns a packet more, the wakeups' share).
            geometry = geometry.with_blocks_of(HEADERS_ONLY_BLOCK, 16);
        }
        say(format!(
            "ring per {}: {} blocks of {} KiB ({} KiB; {} in all, {why}), block timeout {} ms",
            plan.vantage.subject(),
            geometry.blocks,
            geometry.block_size / 1024,
            geometry.bytes() / 1024,
            crate::error::mib(geometry.bytes() as u64 * plan.streams.len() as u64),
            geometry.retire_ms
        ));
        if headers_only {
            say(format!(
                "nothing reads the packets' bytes: the kernel copies {HEADERS_ONLY_SNAPLEN} byte of each \
                 into the ring (counts, lengths and times come from the records' headers)"
            ));
        }
        group::check_memory(geometry, plan)?;
        // Compiled before anything is created, so that a bad expression
        // leaves nothing behind.
        let (filter, said) = filter::capture_filter(
            opts.filter.as_ref(),
            target.link,
            opts.direction,
            target.link.snaplen(opts.snaplen),
            kernel_snaplen,
        )?;
        if let Some(said) = said {
            say(said);
        }
        let (group, rings) = group::build_group(plan, target, geometry, say)?;
        if opts.promiscuous {
            if target.ifindex == 0 {
                say("promiscuous mode skipped: capturing on all interfaces".into());
            } else {
                group.sockets[0]
                    .add_promiscuous(target.ifindex)
                    .map_err(|e| {
                        Error::os(format!("error setting {} promiscuous", target.label), e)
                    })?;
                say(format!(
                    "{}: promiscuous mode on for this capture",
                    target.label
                ));
            }
        }
        let rings = rings.into_iter().map(Some).collect();
        Ok(FanoutSource {
            target: target.clone(),
            streams: plan.streams.clone(),
            group,
            rings: RefCell::new(rings),
            filter,
            opts: opts.clone(),
            tap: None,
        })
    }

    /// The socket of stream `stream`.
    fn socket(&self, stream: &Stream) -> &PacketSocket {
        &self.group.sockets[stream.member as usize]
    }
}

impl Source for FanoutSource {
    fn steered(&self) -> bool {
        true
    }

    fn counts_itself(&self) -> bool {
        false
    }

    fn learn_senders(&mut self, say: &dyn Fn(String), join: Option<Arc<FlowJoin>>) -> Result<()> {
        self.tap = Some(SenderTap::build(&self.opts, &self.target, say)?.joined(join));
        Ok(())
    }

    fn start(&mut self) -> Result<()> {
        // The group is complete: let packets in on the captured streams.
        for stream in &self.streams {
            self.socket(stream)
                .attach_filter(&self.filter)
                .map_err(|e| Error::os("error attaching filter", e))?;
        }
        if let Some(t) = &mut self.tap {
            t.start(self.target.link, self.opts.flows_max)?;
        }
        Ok(())
    }

    fn jobs<'a>(
        &'a self,
        consumers: Vec<Consumers<'a>>,
        gates: Vec<Option<Gate<'a>>>,
        shared: &'a Shared,
    ) -> Vec<Job<'a>> {
        let mut rings = self.rings.borrow_mut();
        let mut jobs = Vec::new();
        for (slot, ((stream, consumers), gate)) in
            self.streams.iter().zip(consumers).zip(gates).enumerate()
        {
            let Some(ring) = rings.get_mut(slot).and_then(Option::take) else {
                continue;
            };
            let sock = self.socket(stream);
            let worker = Worker::new(
                stream.member,
                stream.pin.clone(),
                slot,
                sock,
                ring,
                consumers,
                shared,
            )
            .counting(gate);
            let label = stream.label();
            jobs.push(Job {
                thread: label.clone(),
                slots: vec![slot],
                pin: stream.pin.clone(),
                say_pin: true,
                name: format!("worker for {label}"),
                failed: format!("worker for {label} failed; its count may be short"),
                run: Box::new(move || {
                    let _guard = PanicGuard::worker(shared, sock, slot);
                    vec![(slot, worker.run())]
                }),
            });
        }
        jobs
    }

    fn counters<'a>(&'a self, shared: &'a Shared) -> Box<dyn Counters + Sync + 'a> {
        Box::new(SocketCounters {
            shared,
            sockets: self.streams.iter().map(|s| self.socket(s)).collect(),
        })
    }

    fn counts(&self, plan: &Plan, shared: &Shared) -> Result<Vec<StreamCount>> {
        Ok(counts(plan, shared))
    }

    fn finish(&mut self) -> Ended {
        Ended {
            senders: self.tap.take().map(SenderTap::finish),
            errors: Vec::new(),
        }
    }
}

/// The report's counts, as the workers left them.
pub fn counts(plan: &Plan, shared: &Shared) -> Vec<StreamCount> {
    plan.streams
        .iter()
        .enumerate()
        .map(|(slot, stream)| StreamCount {
            place: stream.place(),
            packets: shared.captured[slot].load(Ordering::Relaxed),
            drops: shared.drops[slot].load(Ordering::Relaxed),
            unread: shared.unread[slot].load(Ordering::Relaxed),
            lost: 0,
        })
        .collect()
}

/// The counters the live view shows: what the workers took, and the
/// kernel's counters of each stream's socket (read here so drops show as
/// they happen; the workers read them too, and nothing is counted twice).
struct SocketCounters<'a> {
    shared: &'a Shared,
    /// One per stream, in order.
    sockets: Vec<&'a PacketSocket>,
}

impl Counters for SocketCounters<'_> {
    fn read(&self) -> Vec<Count> {
        let shared = self.shared;
        (0..shared.captured.len())
            .map(|slot| {
                if let Some(sock) = self.sockets.get(slot) {
                    shared.read_kernel(slot, sock);
                }
                Count {
                    packets: shared.captured[slot].load(Ordering::Relaxed),
                    bytes: shared.bytes[slot].load(Ordering::Relaxed),
                    drops: shared.drops[slot].load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}
