//! `--metrics`: the capture's counters for Prometheus, over plain HTTP.
//!
//! A scrape reads counters the capture keeps anyway: the workers' atomics,
//! the kernel's per-cpu counters in /proc. Nothing here runs per packet,
//! and the workers never wait for a scrape: the server thread calls
//! [`Source::snapshot`] once per scrape and encodes what it returns.
//!
//! - [`families`]: the metric families (names, labels, help) and their
//!   encoding with the `prometheus-client` crate, in the Prometheus text
//!   format 0.0.4 or OpenMetrics 1.0.0 ([`Format`])
//! - [`server`]: the HTTP server: `--metrics=[ADDR:]PORT`, one thread, one
//!   `poll()` over the listening socket, its connections and a stop
//!   eventfd; bounded connections, request size and time
//! - [`kernel`]: per-cpu NET_RX/NET_TX softirq and softnet counters from
//!   /proc, unwrapped from the kernel's 32 bits
//!
//! How a capture uses it:
//!
//! ```no_run
//! use rxtxcpu::metrics::{self, Description, Snapshot, StreamCounts};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Before the capture starts: a port in use is an error now, exit 1.
//! let server = metrics::Server::bind(metrics::parse_address("9101").unwrap())?;
//! let description = Description {
//!     interface: "eth0".into(),
//!     vantage: "cpu".into(),
//!     direction: "rxtx".into(),
//!     streams: vec!["0".into(), "1".into()],
//!     start: std::time::SystemTime::now(),
//! };
//! // Whatever the workers count, read when scraped (here: nothing).
//! let source = || Snapshot {
//!     streams: vec![StreamCounts::default(); 2],
//!     ..Snapshot::default()
//! };
//! std::thread::scope(|s| -> std::io::Result<()> {
//!     let running = server.spawn_scoped(s, metrics::Exporter::new(description, &source))?;
//!     // ... the capture runs ...
//!     running.stop();
//!     Ok(())
//! })?;
//! # Ok(())
//! # }
//! ```

pub mod families;
pub mod kernel;
pub mod server;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::SystemTime;

pub use families::Format;
pub use server::{parse_address, BindError, Limits, Running, Server};

/// What does not change while a capture runs: the labels of its series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description {
    /// The captured interface (`eth0`), label `interface`.
    pub interface: String,
    /// `cpu`, `queue` or `numa` (`Vantage::as_str`), label `vantage`.
    pub vantage: String,
    /// `rx`, `tx` or `rxtx` (`Direction::as_str`), label `direction`.
    pub direction: String,
    /// Each stream's number as the report writes it (`"0"`, `"1"`,
    /// `"noqueue"`: `Stream::file_suffix`), label `stream`, in the order
    /// of [`Snapshot::streams`].
    pub streams: Vec<String>,
    /// When the capture started (`rxtxcpu_capture_start_time_seconds`).
    pub start: SystemTime,
}

/// One stream's counters since the capture started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamCounts {
    /// Packets the stream's worker took.
    pub packets: u64,
    /// Their bytes on the wire (tp_len, not the snapshot length).
    pub bytes: u64,
    /// Packets the kernel dropped because the stream's ring was full.
    pub kernel_drops: u64,
}

impl From<crate::live::monitor::Count> for StreamCounts {
    fn from(c: crate::live::monitor::Count) -> StreamCounts {
        StreamCounts {
            packets: c.packets,
            bytes: c.bytes,
            kernel_drops: c.drops,
        }
    }
}

/// The kernel's drops of packets on the captured interface, on one cpu,
/// for one reason (`--drops`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReasonDrops {
    pub cpu: u32,
    /// The kernel's name of the reason, as `enum skb_drop_reason` spells
    /// it without its prefix (`NO_SOCKET`, `SOCKET_RCVBUFF`).
    pub reason: String,
    pub packets: u64,
    /// True for drops received on the interface's number whose namespace
    /// the kernel no longer knew (the report's `namespace_known: false`):
    /// their series carry `namespace_known="false"`.
    pub namespace_unknown: bool,
}

/// Flow counts since the capture started (`--flows`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCounts {
    /// Flows seen, per stream (a flow on two streams counts twice; one
    /// that expired and came back counts again).
    pub seen: u64,
    /// Flows in the tables now that were seen on more than one stream
    /// (the report's SPLIT, were the capture to end now); None where the
    /// source cannot tell while it runs, and the family is then not
    /// served.
    pub split: Option<u64>,
    /// Flows in the tables now that were seen on a stream other than the
    /// one the steering configuration predicts (the report's
    /// UNEXPECTED); None where nothing is predicted (no steering read).
    pub unexpected: Option<u64>,
    /// Flows in the tables now (bounded by `--flows-max`, shrinking as
    /// idle flows expire).
    pub tracked: u64,
    /// Packets of flows the tables had no room for (`--flows-max`
    /// reached): counted, in no flow.
    pub untracked_packets: u64,
}

/// One cpu's kernel counters, each since boot and 64 bits wide (see
/// [`kernel::Unwrap`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuCounters {
    pub cpu: u32,
    /// NET_RX and NET_TX softirq runs (/proc/softirqs).
    pub net_rx: u64,
    pub net_tx: u64,
    /// /proc/net/softnet_stat, when the cpu has a line there (online).
    pub softnet: Option<Softnet>,
}

/// One cpu's line of /proc/net/softnet_stat: what the network stack's
/// receive processing did on it, for every device of the machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Softnet {
    /// Packets taken off the cpu's backlog and device queues.
    pub processed: u64,
    /// Packets dropped because the cpu's backlog was full
    /// (net.core.netdev_max_backlog).
    pub dropped: u64,
    /// Times the receive softirq stopped with work left (budget or time).
    pub time_squeeze: u64,
    /// Times another cpu woke this one to process its backlog (RPS).
    pub received_rps: u64,
    /// Packets dropped by the flow limit (net.core.flow_limit_cpu_bitmap).
    pub flow_limit_count: u64,
}

/// The counters at the moment of a scrape. A family is served when its
/// field is `Some` (or, for the streams, always): a source keeps each
/// field `Some` or `None` for the whole capture, as the options say, so
/// no family comes and goes between scrapes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Per stream, in the order of [`Description::streams`].
    pub streams: Vec<StreamCounts>,
    /// `--repeats`: repeated copies per stream, in the same order.
    pub repeated_copies: Option<Vec<u64>>,
    /// `--drops`: the kernel's drops on the captured interface.
    pub drop_reasons: Option<Vec<ReasonDrops>>,
    /// `--flows`.
    pub flows: Option<FlowCounts>,
    /// Per-cpu kernel counters (the cpu vantage), in ascending cpu order.
    pub cpus: Option<Vec<CpuCounters>>,
}

/// Where a scrape's numbers come from. The capture implements it over the
/// atomics its workers keep (a closure `Fn() -> Snapshot` will do); it is
/// called on the metrics thread, once per scrape, never on a worker's.
pub trait Source {
    fn snapshot(&self) -> Snapshot;
}

impl<F: Fn() -> Snapshot> Source for F {
    fn snapshot(&self) -> Snapshot {
        self()
    }
}

/// A capture's description and the source of its counters: what the
/// server serves.
pub struct Exporter<'a> {
    description: Arc<Description>,
    source: &'a (dyn Source + Sync),
}

impl<'a> Exporter<'a> {
    pub fn new(description: Description, source: &'a (dyn Source + Sync)) -> Exporter<'a> {
        Exporter {
            description: Arc::new(description),
            source,
        }
    }

    /// A scrape: the counters now, encoded in `format`.
    pub fn render(&self, format: Format) -> String {
        families::encode(&self.description, self.source.snapshot(), format)
    }
}
