//! `--drops` with `--flows`: the kernel's drops per flow and reason (from
//! the drop probe, [`crate::source::probes::drop_flows`]) joined to the
//! flow table once the capture is over.
//!
//! A flow the kernel dropped packets of but the capture never saw (drops
//! before the packet sockets' tap: a full backlog, a qdisc, a packet
//! sent and dropped before its device; or packets a filter or `-c` left
//! out) is added as a flow of its own with no packets and no stream: a
//! row with PACKETS 0, listed with the flows that had drops. Such flows
//! are not in the count of flows seen (which are the captured ones); the
//! summary says how many there are.

use std::collections::{HashMap, HashSet};

use super::key::FlowKey;
use super::table::{FlowRecord, Flows};

/// The kernel's drops per flow, and what the probe could not key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowDrops {
    /// (reason, packets) per flow, most packets first (then by name).
    pub per_flow: HashMap<FlowKey, Vec<(String, u64)>>,
    pub unkeyed: Unkeyed,
}

/// What the drop probe could not key by flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unkeyed {
    /// Drops of the interface's packets its flow map had no room for.
    pub overflow: u64,
    /// The map's size, in (flow, reason) pairs.
    pub map_entries: u32,
}

impl Flows {
    /// Adds the kernel's drops, (flow, reason, packets), to the flows: to
    /// the flow's record, or to a new one with no packets.
    pub fn add_drops(
        &mut self,
        drops: impl IntoIterator<Item = (FlowKey, String, u64)>,
        unkeyed: Unkeyed,
    ) {
        let mut per_flow: HashMap<FlowKey, Vec<(String, u64)>> = HashMap::new();
        for (key, reason, packets) in drops {
            let d = per_flow.entry(key).or_default();
            match d.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, n)) => *n += packets,
                None => d.push((reason, packets)),
            }
        }
        let captured: HashSet<FlowKey> = self.records.iter().map(|r| r.key).collect();
        for (key, d) in &mut per_flow {
            d.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            if !captured.contains(key) {
                self.records.push(FlowRecord {
                    key: *key,
                    packets: 0,
                    bytes: 0,
                    streams: Vec::new(),
                    hash: None,
                    hash_changed: false,
                    expected: None,
                    first: (0, 0),
                    directions: 0,
                    repeated: 0,
                });
            }
        }
        self.drops = Some(FlowDrops { per_flow, unkeyed });
    }

    /// The kernel's drops of flow `r`, (reason, packets), most first;
    /// none without `--drops`.
    pub fn drops_of(&self, r: &FlowRecord) -> &[(String, u64)] {
        self.drops
            .as_ref()
            .and_then(|d| d.per_flow.get(&r.key))
            .map_or(&[], Vec::as_slice)
    }

    /// Flows the kernel dropped packets of, and of those the ones with
    /// no packet captured.
    pub fn dropped_count(&self) -> (usize, usize) {
        let dropped = self.records.iter().filter(|r| !self.drops_of(r).is_empty());
        let uncaptured = dropped.clone().filter(|r| r.packets == 0).count();
        (dropped.count(), uncaptured)
    }
}

/// A flow's DROPS cell: `SOCKET_RCVBUFF:2310`, several reasons
/// comma-separated (one word, so that the columns after it stay in
/// place for a script that splits on blanks); `-` for none.
pub fn cell(drops: &[(String, u64)]) -> String {
    if drops.is_empty() {
        return "-".to_string();
    }
    drops
        .iter()
        .map(|(r, n)| format!("{r}:{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::flows::{merge, FlowBudget, FlowTable};
    use crate::packet::LinkType;

    fn key(sport: u16) -> FlowKey {
        FlowKey::ip(
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            17,
            Some((sport, 9)),
        )
    }

    #[test]
    fn drops_join_their_flows_or_make_rows_of_their_own() {
        let budget = FlowBudget::new(100);
        let mut t = FlowTable::new(0, LinkType::Ethernet, budget);
        for sport in [1, 1, 1, 2, 3, 3] {
            t.record_key(key(sport), 60, 0, (1, 0));
        }
        let mut flows = merge(vec![t]);
        assert_eq!(flows.rows(1).len(), 1);
        flows.add_drops(
            [
                (key(2), "NO_SOCKET".to_string(), 1),
                (key(3), "SOCKET_RCVBUFF".to_string(), 2),
                (key(3), "NO_SOCKET".to_string(), 5),
                (key(4), "CPU_BACKLOG".to_string(), 7),
            ],
            Unkeyed {
                overflow: 0,
                map_entries: 8,
            },
        );
        assert_eq!(flows.seen_count(), 3);
        assert_eq!(flows.dropped_count(), (3, 1));
        // The flows with drops first (all of them, whatever the limit),
        // then the others.
        let rows: Vec<(u16, u64, String)> = flows
            .rows(1)
            .iter()
            .map(|r| (r.key.ports().unwrap().0, r.packets, cell(flows.drops_of(r))))
            .collect();
        assert_eq!(
            rows,
            [
                (3, 2, "NO_SOCKET:5,SOCKET_RCVBUFF:2".to_string()),
                (2, 1, "NO_SOCKET:1".to_string()),
                (4, 0, "CPU_BACKLOG:7".to_string()),
            ]
        );
        assert!(flows.drops_of(flows.rows(0)[3]).is_empty());
        assert_eq!(cell(&[]), "-");
    }
}
