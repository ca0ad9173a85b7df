//! The `"repeats"` and `"repeat_summary"` keys of the JSON report.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Repeat, Repeats, Totals};
use crate::consumers::flows::json::StreamPackets;
use crate::packet::LinkType;

/// A time as seconds since the epoch with a fraction (microseconds are
/// what an f64 keeps exactly at today's epoch seconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seconds(pub u32, pub u32);

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(f64::from(self.0) + f64::from(self.1) / 1e9)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = f64::deserialize(d)?;
        let sec = t.floor();
        Ok(Seconds(sec as u32, ((t - sec) * 1e9).round() as u32))
    }
}

/// One repeating packet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RepeatJson {
    /// Copies on all streams.
    pub copies: u64,
    /// Stream id (as a string; `none` for the no-queue stream) -> copies.
    pub streams: StreamPackets,
    /// The same by the streams' names (`cpu1`).
    #[serde(default)]
    pub streams_by_name: StreamPackets,
    pub first: Seconds,
    pub last: Seconds,
    /// Copies per second between the first and the last; null when they
    /// came in the same nanosecond.
    pub rate: Option<f64>,
    /// Length on the wire.
    pub length: u32,
    /// The one-line decode, in tcpdump's style.
    pub summary: String,
}

/// One stream's totals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RepeatStreamJson {
    pub id: Option<u32>,
    #[serde(default)]
    pub name: String,
    /// Packets the stream took.
    pub packets: u64,
    /// Of those, copies of repeating packets.
    pub repeated: u64,
    /// Repeating packets on the stream.
    pub repeating: u64,
}

/// The summary: the MIN in force and every stream's totals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RepeatSummaryJson {
    pub min: u64,
    /// Repeating packets in all (the length of `"repeats"`).
    pub packets: u64,
    pub streams: Vec<RepeatStreamJson>,
}

impl RepeatJson {
    /// `r` with its streams known by `id` and `name`.
    pub fn new(
        r: &Repeat,
        link: LinkType,
        id: &dyn Fn(u32) -> Option<u32>,
        name: &dyn Fn(u32) -> String,
    ) -> RepeatJson {
        RepeatJson {
            copies: r.copies,
            streams: StreamPackets::by_id(&r.streams, id),
            streams_by_name: StreamPackets::by_name(&r.streams, name),
            first: Seconds(r.first.0, r.first.1),
            last: Seconds(r.last.0, r.last.1),
            rate: r.rate(),
            length: r.len,
            summary: r.summary(link),
        }
    }
}

impl RepeatSummaryJson {
    pub fn new(
        found: &Repeats,
        min: u64,
        id: &dyn Fn(u32) -> Option<u32>,
        name: &dyn Fn(u32) -> String,
    ) -> RepeatSummaryJson {
        RepeatSummaryJson {
            min,
            packets: found.packets.len() as u64,
            streams: found
                .streams
                .iter()
                .map(|&(s, t): &(u32, Totals)| RepeatStreamJson {
                    id: id(s),
                    name: name(s),
                    packets: t.packets,
                    repeated: t.repeated,
                    repeating: found.repeating_on(s),
                })
                .collect(),
        }
    }
}
