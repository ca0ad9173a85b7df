//! The metric families, and their encoding by the `prometheus-client`
//! crate.
//!
//! Names follow Prometheus's rules: an `rxtxcpu_` prefix, base units,
//! `_total` on counters, a few labels and never one per flow, so the
//! number of series is bounded by the capture's shape:
//!
//! | family | labels | series |
//! | --- | --- | --- |
//! | `rxtxcpu_packets_total`, `rxtxcpu_bytes_total`, `rxtxcpu_kernel_drops_total` | interface, vantage, direction, stream | one per stream |
//! | `rxtxcpu_repeated_copies_total` (`--repeats`) | same | one per stream |
//! | `rxtxcpu_kernel_drops_by_reason_total` (`--drops`) | interface, cpu, reason (and `namespace_known="false"` on drops of an unknown namespace) | at most two per cpu and reason seen |
//! | `rxtxcpu_flows_seen_total`, `rxtxcpu_flows_tracked`, `_split`, `_unexpected`, `rxtxcpu_flows_untracked_packets_total` (`--flows`) | interface, vantage, direction | one each |
//! | `rxtxcpu_softirqs_total` (cpu vantage) | cpu, type (`NET_RX`, `NET_TX`) | two per cpu |
//! | `rxtxcpu_softnet_*_total` (cpu vantage) | cpu | five per online cpu |
//! | `rxtxcpu_build_info` | version | one |
//! | `rxtxcpu_capture_start_time_seconds` | | one |
//!
//! Every scrape builds a registry holding one collector that owns the
//! scrape's [`Snapshot`]: the crate encodes only what is registered, and
//! a registry of live metric objects would mean updating them per packet
//! (or a lock the workers take), which is what this design avoids.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::{Description, Snapshot};

/// The exposition formats served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4: what every scraper
    /// reads, and the default.
    Text,
    /// OpenMetrics 1.0.0 text, when the scraper's Accept header prefers it
    /// (Prometheus asks for it first).
    OpenMetrics,
}

impl Format {
    /// The response's Content-Type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format a request's Accept header (its values joined with `,`)
    /// asks for: OpenMetrics when it accepts `application/openmetrics-text`
    /// (version 1.0.0, 0.0.1 or none) with a quality at least that of
    /// the text format; the text format otherwise, including when it
    /// accepts neither (a scraper that sends no Accept header gets text).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let (mut openmetrics, mut text) = (0.0f64, 0.0f64);
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q = 1.0;
            let mut version = None;
            for param in parts {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    "q" => q = value.parse::<f64>().unwrap_or(0.0).clamp(0.0, 1.0),
                    "version" => version = Some(value.to_string()),
                    _ => {}
                }
            }
            let version = version.as_deref();
            match media.as_str() {
                "application/openmetrics-text"
                    if matches!(version, None | Some("1.0.0") | Some("0.0.1")) =>
                {
                    openmetrics = openmetrics.max(q)
                }
                "text/plain" if matches!(version, None | Some("0.0.4")) => text = text.max(q),
                "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// The families' names as registered: the encoder adds `_total` to
/// counters, `_info` to the info family and the unit's name where one is
/// given.
pub mod names {
    pub const PACKETS: &str = "rxtxcpu_packets";
    pub const BYTES: &str = "rxtxcpu_bytes";
    pub const KERNEL_DROPS: &str = "rxtxcpu_kernel_drops";
    pub const REPEATED_COPIES: &str = "rxtxcpu_repeated_copies";
    pub const DROPS_BY_REASON: &str = "rxtxcpu_kernel_drops_by_reason";
    pub const FLOWS_SEEN: &str = "rxtxcpu_flows_seen";
    pub const FLOWS_SPLIT: &str = "rxtxcpu_flows_split";
    pub const FLOWS_UNEXPECTED: &str = "rxtxcpu_flows_unexpected";
    pub const FLOWS_TRACKED: &str = "rxtxcpu_flows_tracked";
    pub const FLOWS_UNTRACKED_PACKETS: &str = "rxtxcpu_flows_untracked_packets";
    pub const SOFTIRQS: &str = "rxtxcpu_softirqs";
    pub const SOFTNET_PROCESSED: &str = "rxtxcpu_softnet_processed";
    pub const SOFTNET_DROPPED: &str = "rxtxcpu_softnet_dropped";
    pub const SOFTNET_TIMES_SQUEEZED: &str = "rxtxcpu_softnet_times_squeezed";
    pub const SOFTNET_RECEIVED_RPS: &str = "rxtxcpu_softnet_received_rps";
    pub const SOFTNET_FLOW_LIMIT: &str = "rxtxcpu_softnet_flow_limit_count";
    pub const BUILD: &str = "rxtxcpu_build";
    /// With the unit (seconds): `rxtxcpu_capture_start_time_seconds`.
    pub const CAPTURE_START_TIME: &str = "rxtxcpu_capture_start_time";
}

/// One scrape in `format`.
pub fn encode(description: &Arc<Description>, snapshot: Snapshot, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        description: Arc::clone(description),
        snapshot,
    }));
    let mut out = String::new();
    // Writing to a String cannot fail, and no family here is one the
    // encoders refuse (they refuse only native histograms in text).
    let _ = match format {
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry),
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
    };
    out
}

/// The collector of one scrape: the capture's description and the
/// counters read for this scrape.
#[derive(Debug)]
struct Scrape {
    description: Arc<Description>,
    snapshot: Snapshot,
}

type Result = std::result::Result<(), std::fmt::Error>;

/// One counter family: its descriptor, then one sample per label set.
fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, u64)>,
) -> Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        family
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, u64, u64>(&value, None)?;
    }
    Ok(())
}

/// One gauge family of one series.
fn gauge<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    labels: L,
    value: u64,
) -> Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_family(&labels)?
        .encode_gauge(&value)?;
    Ok(())
}

/// A stream's series' labels.
fn stream_labels<'a>(d: &'a Description, stream: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("interface", &d.interface),
        ("vantage", &d.vantage),
        ("direction", &d.direction),
        ("stream", stream),
    ]
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result {
        let d = &*self.description;
        let snap = &self.snapshot;
        let (interface, vantage, direction) = (
            d.interface.as_str(),
            d.vantage.as_str(),
            d.direction.as_str(),
        );
        let capture = [
            ("interface", interface),
            ("vantage", vantage),
            ("direction", direction),
        ];
        let stream = |name| stream_labels(d, name);
        // The streams' names with their counters; a snapshot with fewer
        // streams than the description (it cannot have more) shows those.
        let streams = || d.streams.iter().map(String::as_str).zip(&snap.streams);

        counters(
            &mut encoder,
            names::PACKETS,
            "Packets captured on the stream (its cpu, queue or numa node).",
            streams().map(|(s, c)| (stream(s), c.packets)),
        )?;
        counters(
            &mut encoder,
            names::BYTES,
            "Bytes of the packets captured on the stream, as on the wire.",
            streams().map(|(s, c)| (stream(s), c.bytes)),
        )?;
        counters(
            &mut encoder,
            names::KERNEL_DROPS,
            "Packets the kernel dropped for the stream because its ring was full.",
            streams().map(|(s, c)| (stream(s), c.kernel_drops)),
        )?;
        if let Some(copies) = &snap.repeated_copies {
            counters(
                &mut encoder,
                names::REPEATED_COPIES,
                "Copies of repeating packets on the stream (--repeats).",
                d.streams.iter().zip(copies).map(|(s, &n)| (stream(s), n)),
            )?;
        }
        if let Some(drops) = &snap.drop_reasons {
            counters(
                &mut encoder,
                names::DROPS_BY_REASON,
                "Packets on the interface the kernel dropped, by cpu and drop reason (--drops).",
                drops.iter().map(|r| {
                    let mut labels = vec![
                        ("interface", interface.to_string()),
                        ("cpu", r.cpu.to_string()),
                        ("reason", r.reason.clone()),
                    ];
                    // The report counts these too (namespace unknown):
                    // the family sums to its total, and the label, only on
                    // them, leaves the other series as they always were.
                    if r.namespace_unknown {
                        labels.push(("namespace_known", "false".to_string()));
                    }
                    (labels, r.packets)
                }),
            )?;
        }
        if let Some(flows) = &snap.flows {
            counters(
                &mut encoder,
                names::FLOWS_SEEN,
                "Flows seen, per stream (--flows; a flow that expired and came back counts again).",
                [(capture, flows.seen)],
            )?;
            // Gauges, not counters: the flows in the tables now that are
            // split or off their stream, as the report would count them at
            // this moment; they fall as such flows expire (--flows-idle).
            if let Some(split) = flows.split {
                gauge(
                    &mut encoder,
                    names::FLOWS_SPLIT,
                    "Flows in the flow tables now that were seen on more than one stream (--flows).",
                    capture,
                    split,
                )?;
            }
            if let Some(unexpected) = flows.unexpected {
                gauge(
                    &mut encoder,
                    names::FLOWS_UNEXPECTED,
                    "Flows in the flow tables now that were seen on a stream the steering configuration does not send them to (--flows).",
                    capture,
                    unexpected,
                )?;
            }
            gauge(
                &mut encoder,
                names::FLOWS_TRACKED,
                "Entries in the streams' flow tables now: a flow seen on two streams is two (--flows).",
                capture,
                flows.tracked,
            )?;
            counters(
                &mut encoder,
                names::FLOWS_UNTRACKED_PACKETS,
                "Packets of flows the flow tables had no room for (--flows-max reached): counted, in no flow (--flows).",
                [(capture, flows.untracked_packets)],
            )?;
        }
        if let Some(cpus) = &snap.cpus {
            let ids: Vec<String> = cpus.iter().map(|c| c.cpu.to_string()).collect();
            let per_cpu = || ids.iter().map(String::as_str).zip(cpus);
            counters(
                &mut encoder,
                names::SOFTIRQS,
                "NET_RX and NET_TX softirq runs on the cpu since boot, for every device (/proc/softirqs).",
                per_cpu().flat_map(|(cpu, c)| {
                    [
                        ([("cpu", cpu), ("type", "NET_RX")], c.net_rx),
                        ([("cpu", cpu), ("type", "NET_TX")], c.net_tx),
                    ]
                }),
            )?;
            let softnet = || per_cpu().filter_map(|(cpu, c)| Some(([("cpu", cpu)], c.softnet?)));
            counters(
                &mut encoder,
                names::SOFTNET_PROCESSED,
                "Packets the cpu's receive processing took since boot, for every device (/proc/net/softnet_stat).",
                softnet().map(|(l, s)| (l, s.processed)),
            )?;
            counters(
                &mut encoder,
                names::SOFTNET_DROPPED,
                "Packets dropped since boot because the cpu's backlog was full, for every device (/proc/net/softnet_stat).",
                softnet().map(|(l, s)| (l, s.dropped)),
            )?;
            counters(
                &mut encoder,
                names::SOFTNET_TIMES_SQUEEZED,
                "Times the cpu's receive softirq ran out of budget or time with work left, since boot (/proc/net/softnet_stat).",
                softnet().map(|(l, s)| (l, s.time_squeeze)),
            )?;
            counters(
                &mut encoder,
                names::SOFTNET_RECEIVED_RPS,
                "Times another cpu woke this one to process its backlog (RPS), since boot (/proc/net/softnet_stat).",
                softnet().map(|(l, s)| (l, s.received_rps)),
            )?;
            counters(
                &mut encoder,
                names::SOFTNET_FLOW_LIMIT,
                "Packets the flow limit dropped on the cpu since boot (/proc/net/softnet_stat).",
                softnet().map(|(l, s)| (l, s.flow_limit_count)),
            )?;
        }
        let mut build = encoder.encode_descriptor(
            names::BUILD,
            "The program's version.",
            None,
            MetricType::Info,
        )?;
        build.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        let start = d
            .start
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |t| t.as_secs_f64());
        encoder
            .encode_descriptor(
                names::CAPTURE_START_TIME,
                "When the capture started, in seconds since the epoch.",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?
            .encode_gauge(&start)?;
        Ok(())
    }
}
