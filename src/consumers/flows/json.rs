//! The `--json` report: one object, with the flows when they were tracked.
//!
//! Keys are only ever added, never renamed or removed: scripts depend on
//! them. Object keys come out in the order of the struct fields.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::table::{FlowRecord, Flows};
use crate::consumers::repeats::json::{RepeatJson, RepeatSummaryJson};

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `cpu`, `queue` or `numa`.
    pub vantage: String,
    /// The interface's name; None (null) for all interfaces.
    pub interface: Option<String>,
    /// The capture direction as the command line names it (`rx`, `tx`,
    /// `both`...).
    pub direction: String,
    /// In stream order.
    pub streams: Vec<StreamJson>,
    /// Packets captured in all.
    pub total: u64,
    /// With `--flows`: the listed flows, in table order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<Vec<FlowJson>>,
    /// With `--flows`: the summary lines' numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_summary: Option<FlowSummaryJson>,
    /// With `--repeats`: the repeating packets, most copies first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeats: Option<Vec<RepeatJson>>,
    /// With `--repeats`: the MIN and each stream's totals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_summary: Option<RepeatSummaryJson>,
    /// With `--path`: the steering matrices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<super::path::PathJson>,
    /// Keys of the report's other parts (`kernel_drops`), after these.
    #[serde(flatten)]
    pub more: serde_json::Map<String, serde_json::Value>,
}

/// One stream's counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamJson {
    /// The cpu, queue or node; null for a stream that has none (the
    /// no-queue stream).
    pub id: Option<u32>,
    /// Its name, as the text and the file names give it: `cpu3`,
    /// `queue2`, `node0`, `noqueue` (added beside `id`, which stays).
    #[serde(default)]
    pub name: String,
    pub captured: u64,
    pub dropped: u64,
    /// With `-W`: the files of the stream the ring overwrote, and the
    /// packets they held (captured, counted, and in no file now); absent
    /// when none was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_away: Option<RotatedAwayJson>,
}

/// Files a stream's `-W` ring overwrote and the packets they held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotatedAwayJson {
    pub files: u64,
    pub packets: u64,
}

/// One flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowJson {
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `sctp`, `arp`, `ip-proto-N`,
    /// `ethertype-0xNNNN`, ... (see `Proto::name`).
    pub proto: String,
    /// `ADDR:PORT`, `[V6ADDR]:PORT`, a bare address where there is no
    /// port, a MAC address for frames that are not IP, `-` for none.
    pub src: String,
    pub dst: String,
    pub packets: u64,
    pub bytes: u64,
    /// Stream id (as a string, JSON keys being strings; `none` for a
    /// stream without an id) to packets, in stream order.
    pub streams: StreamPackets,
    /// The same, by stream name (`cpu3`, `noqueue`: the one name the text,
    /// the files and [`StreamJson::name`] use). Added beside `streams`,
    /// whose `none` key stays for the scripts that read it.
    #[serde(default)]
    pub streams_by_name: StreamPackets,
    /// `0x%08x` of the first packet's flow hash; null when none was seen.
    pub hash: Option<String>,
    /// Seen on more than one stream.
    pub split: bool,
    /// Packets had different hashes.
    pub hash_changed: bool,
    /// VLAN ids (outer first) of a flow that is not IP; null otherwise.
    pub vlan: Option<Vec<u16>>,
    /// `expected`, `by` and `unexpected`, when expectations were made.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub expectation: Option<ExpectationJson>,
    /// With `--repeats`: its copies of repeating packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeated: Option<u64>,
    /// With `--drops`: the kernel's drops of its packets, reason to
    /// packets, most first (`{}` for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drops: Option<StreamPackets>,
    /// With `--path`: `queues`, `driver_cpus`, `app_cpus`, `apps`,
    /// `mismatches`.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub path: Option<super::path::FlowPathJson>,
}

/// Where a flow was expected to land.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectationJson {
    /// The expected stream's id; null where nothing predicts one.
    pub expected: Option<u32>,
    /// `rps`, `rfs`, `rss`, `xps` or `none`.
    pub by: String,
    pub unexpected: bool,
}

/// The numbers of the flow summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowSummaryJson {
    /// Flows tracked in all (not only the listed ones).
    pub seen: u64,
    /// Flows seen on more than one stream.
    pub split: u64,
    /// Flows whose hash changed.
    pub hash_changed: u64,
    /// With expectations (an interface's steering read): flows with an
    /// expected stream, and of those the ones that landed off it (the
    /// text's UNEXPECTED count). Absent without expectations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unexpected: Option<u64>,
    /// With `--path`: flows a steering stage was off for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mismatched: Option<u64>,
    /// Flows in the `flows` list.
    pub listed: u64,
    /// `--flows-max`.
    pub max_flows: u64,
    /// Packets (and their bytes) of flows past the limit.
    pub untracked_packets: u64,
    pub untracked_bytes: u64,
    /// In stream order.
    pub streams: Vec<StreamFlowsJson>,
    /// With `--flows-idle`: flows that expired for being idle, and their
    /// packets (not in `seen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_packets: Option<u64>,
    /// With `--drops`: flows the kernel dropped packets of, of those the
    /// ones with no packet captured (listed with 0 packets, not in
    /// `seen`), and the drops the probe's flow table had no room for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_uncaptured: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drops_overflow: Option<u64>,
}

/// What one stream carried.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamFlowsJson {
    /// As in [`StreamJson`].
    pub id: Option<u32>,
    #[serde(default)]
    pub name: String,
    /// Distinct flows.
    pub flows: u64,
    /// Packets, tracked or not.
    pub packets: u64,
}

/// (stream key, packets) pairs, written as a JSON object in their order
/// (a map type would sort them, and as text "10" sorts before "2").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamPackets(pub Vec<(String, u64)>);

impl StreamPackets {
    /// (stream, packets) pairs keyed by the streams' ids (`stream_key`).
    pub fn by_id(streams: &[(u32, u64)], id: &dyn Fn(u32) -> Option<u32>) -> StreamPackets {
        StreamPackets(
            streams
                .iter()
                .map(|&(s, n)| (stream_key(id(s)), n))
                .collect(),
        )
    }

    /// The same keyed by the streams' names (`cpu1`).
    pub fn by_name(streams: &[(u32, u64)], name: &dyn Fn(u32) -> String) -> StreamPackets {
        StreamPackets(streams.iter().map(|&(s, n)| (name(s), n)).collect())
    }
}

/// A stream's key in a flow's `streams` object.
pub fn stream_key(id: Option<u32>) -> String {
    id.map_or_else(|| "none".to_string(), |n| n.to_string())
}

impl Serialize for StreamPackets {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (id, n) in &self.0 {
            m.serialize_entry(id, n)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for StreamPackets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StreamPackets;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of stream ids to packet counts")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<StreamPackets, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = m.next_entry::<String, u64>()? {
                    v.push(entry);
                }
                Ok(StreamPackets(v))
            }
        }
        d.deserialize_map(V)
    }
}

impl Report {
    /// The report without flows.
    pub fn new(
        vantage: &str,
        interface: Option<&str>,
        direction: &str,
        streams: Vec<StreamJson>,
        total: u64,
    ) -> Report {
        Report {
            vantage: vantage.to_string(),
            interface: interface.map(str::to_string),
            direction: direction.to_string(),
            streams,
            total,
            flows: None,
            flow_summary: None,
            repeats: None,
            repeat_summary: None,
            path: None,
            more: serde_json::Map::new(),
        }
    }

    /// Adds the flows the text table would list with the same `limit`,
    /// in its order, and the summary. `id` maps the stream numbers the
    /// tables were made with to the streams' ids, `name` to their names.
    pub fn with_flows(
        mut self,
        flows: &Flows,
        limit: usize,
        id: &dyn Fn(u32) -> Option<u32>,
        name: &dyn Fn(u32) -> String,
    ) -> Report {
        let rows = flows.rows(limit);
        let expected = flows.expectations_made();
        self.flow_summary = Some(FlowSummaryJson {
            seen: flows.seen_count() as u64,
            split: flows.split_count() as u64,
            hash_changed: flows.hash_changed_count() as u64,
            predicted: expected.then(|| flows.predicted_count() as u64),
            unexpected: expected.then(|| flows.unexpected_count() as u64),
            mismatched: flows.path.as_ref().map(|_| flows.mismatched_count() as u64),
            listed: rows.len() as u64,
            max_flows: flows.max_flows,
            untracked_packets: flows.untracked_packets,
            untracked_bytes: flows.untracked_bytes,
            streams: flows
                .streams
                .iter()
                .map(|s| StreamFlowsJson {
                    id: id(s.stream),
                    name: name(s.stream),
                    flows: s.flows,
                    packets: s.packets,
                })
                .collect(),
            expired: flows.expired.map(|e| e.1),
            expired_packets: flows.expired.map(|e| e.2),
            dropped: flows.drops.as_ref().map(|_| flows.dropped_count().0 as u64),
            dropped_uncaptured: flows.drops.as_ref().map(|_| flows.dropped_count().1 as u64),
            drops_overflow: flows.drops.as_ref().map(|d| d.unkeyed.overflow),
        });
        self.path = flows.path.as_ref().map(super::path::PathJson::new);
        self.flows = Some(
            rows.into_iter()
                .map(|r| {
                    let mut j = FlowJson {
                        path: flows.path_of(r).map(super::path::FlowPathJson::new),
                        ..FlowJson::new(r, flows.repeats, id, name)
                    };
                    if flows.drops.is_some() {
                        j.drops = Some(StreamPackets(flows.drops_of(r).to_vec()));
                    }
                    j
                })
                .collect(),
        );
        self
    }

    /// The object on one line, newline-terminated.
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings and integers into a String
        // cannot fail.
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

impl FlowJson {
    /// `r` with its streams known by `id` and `name` (and, when
    /// `repeats`, its repeated copies).
    pub fn new(
        r: &FlowRecord,
        repeats: bool,
        id: &dyn Fn(u32) -> Option<u32>,
        name: &dyn Fn(u32) -> String,
    ) -> FlowJson {
        let vlan = r.key.vlans();
        FlowJson {
            proto: r.key.proto().name(),
            src: r.key.src().to_string(),
            dst: r.key.dst().to_string(),
            packets: r.packets,
            bytes: r.bytes,
            streams: StreamPackets::by_id(&r.streams, id),
            streams_by_name: StreamPackets::by_name(&r.streams, name),
            hash: r.hash.map(|h| format!("0x{h:08x}")),
            split: r.split(),
            hash_changed: r.hash_changed,
            vlan: (!vlan.is_empty()).then_some(vlan),
            expectation: r.expected.map(|e| ExpectationJson {
                expected: e.stream.and_then(id),
                by: e.by.as_str().to_string(),
                unexpected: r.unexpected(),
            }),
            repeated: repeats.then_some(r.repeated),
            drops: None,
            path: None,
        }
    }
}
