//! Where packets come from. A [`Source`] opens the kernel's side of a
//! capture for the plan's streams, lets packets in when told to, and
//! makes the [`Job`]s whose threads read its streams and hand each
//! packet to its stream's consumers; [`crate::run`] does the rest, the
//! same for every source.
//!
//! - [`afpacket`]: the fanout group of packet sockets, one TPACKET_V3
//!   ring per stream (the default)
//! - [`xdp`]: an XDP program counting (and copying) received frames per
//!   cpu (`--xdp`)
//! - [`probes`]: small eBPF programs on the kernel's tracepoints
//!
//! A new source is one module here implementing [`Source`].

pub mod afpacket;
pub mod probes;
mod target;
#[cfg(test)]
mod testnet;
pub mod xdp;

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

pub use target::{target, Target};

use crate::consumers::flows::{FlowJoin, FlowKey};
use crate::consumers::Consumers;
use crate::error::Result;
use crate::live::monitor::Counters;
use crate::report::StreamCount;
use crate::vantage::Plan;
use crate::worker::count::Gate;
use crate::worker::{Job, Shared};

/// How long the kernel may hold a partly filled ring block before handing
/// it over (and how long an XDP worker sleeps at most with records below
/// its wakeup mark): the latency of a trickle of packets. While the
/// interface is idle the kernel timer still fires, but an empty block is
/// not handed over, so the worker is never woken.
pub const RETIRE_MS: u32 = 20;

/// One capture's source of packets.
///
/// Its life: made (the kernel side set up, nothing let in yet), then the
/// outputs are created, then [`Source::start`] lets packets in and
/// [`Source::jobs`] gives the threads that read them; once the capture
/// stops, [`Source::stop`], the jobs end, and [`Source::counts`] and
/// [`Source::finish`] say what the source knows.
pub trait Source {
    /// Whether its streams are where the kernel's steering (RSS, RPS,
    /// RFS, XPS) put packets, so that `--flows` can compare them with the
    /// configuration. XDP's native hook sees frames before RPS: no.
    fn steered(&self) -> bool;

    /// Whether the source applies `-c` itself (in the kernel); otherwise
    /// the workers do, through [`crate::worker::count`].
    fn counts_itself(&self) -> bool;

    /// With `--flows` where the streams cannot see it (the queue
    /// vantage): learn which cpus sent each flow, and with `--metrics`
    /// tell `join` as they are learnt. By default nothing.
    fn learn_senders(&mut self, _say: &dyn Fn(String), _join: Option<Arc<FlowJoin>>) -> Result<()> {
        Ok(())
    }

    /// Lets packets in on the captured streams.
    fn start(&mut self) -> Result<()>;

    /// The threads to run: each reads some of the streams and hands the
    /// packets of stream slot `i` to `consumers[i]` (with `-c`, through
    /// `gates[i]`).
    fn jobs<'a>(
        &'a self,
        consumers: Vec<Consumers<'a>>,
        gates: Vec<Option<Gate<'a>>>,
        shared: &'a Shared,
    ) -> Vec<Job<'a>>;

    /// The per-stream numbers the live view shows as they change.
    fn counters<'a>(&'a self, shared: &'a Shared) -> Box<dyn Counters + Sync + 'a>;

    /// A descriptor that becomes readable when the source has ended the
    /// capture by itself (the XDP program's `-c` count reached).
    fn done_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// How often [`Source::gone`] must be asked while the capture runs
    /// (for what no descriptor reports); None: never.
    fn check_every(&self) -> Option<Duration> {
        None
    }

    /// Whether the source cannot go on (its interface went away).
    fn gone(&self) -> bool {
        false
    }

    /// The capture has stopped: after this returns, every packet let in
    /// before it is where the jobs will read it.
    fn stop(&self) {}

    /// The report's counts per stream, once the jobs are done.
    fn counts(&self, plan: &Plan, shared: &Shared) -> Result<Vec<StreamCount>>;

    /// What the source learned besides packets, and what went wrong on
    /// its side, once the jobs are done.
    fn finish(&mut self) -> Ended {
        Ended::default()
    }
}

/// What a source says at the end.
#[derive(Default)]
pub struct Ended {
    /// The cpus that sent each flow (see [`Source::learn_senders`]).
    pub senders: Option<HashMap<FlowKey, Vec<u32>>>,
    /// Lines for stderr about the source's own faults; each makes the
    /// exit status 1.
    pub errors: Vec<String>,
}
