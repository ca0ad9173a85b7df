//! The join against the merge: whatever the tables did, the join's split
//! and unexpected flows are the merged records' at that moment.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::*;
use crate::packet::LinkType;

fn key(n: u16) -> FlowKey {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    FlowKey::ip(ip("10.0.0.1"), ip("10.0.0.2"), 17, Some((n, 80)))
}

/// A prediction of the test's own: received flows by their port and
/// hash, sent ones by their first sending cpu, flows both ways none.
fn predict(key: &FlowKey, hash: Option<u32>, directions: u8, cpus: Option<&[u32]>) -> Option<u32> {
    match directions {
        RECEIVED => Some((u32::from(key.ports()?.0) + hash.unwrap_or(0)) % 3),
        SENT => cpus.and_then(|c| c.first().copied()),
        _ => None,
    }
}

/// What the report says of `tables` (and the sender tables' cpus), as
/// the capture's end works it out.
fn report(tables: Vec<FlowTable>, senders: Vec<FlowTable>) -> (usize, usize) {
    let mut by_flow: HashMap<FlowKey, Vec<u32>> = HashMap::new();
    for r in merge(senders).records {
        by_flow.insert(r.key, r.streams.iter().map(|&(cpu, _)| cpu).collect());
    }
    let mut flows = merge(tables);
    for r in &mut flows.records {
        let cpus = by_flow.get(&r.key).map(Vec::as_slice);
        r.expected = Some(Expectation {
            stream: predict(&r.key, r.hash, r.directions, cpus),
            by: Mechanism::Rps,
        });
    }
    (flows.split_count(), flows.unexpected_count())
}

/// A few thousand random packets, sweeps and sender packets over three
/// streams' tables and two sender tables; checked against the merge
/// every few hundred steps.
#[test]
fn the_join_says_what_the_merge_says() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    // The most split and unexpected flows seen at a check: the test
    // exercises both.
    let mut most = (0, 0);
    for round in 0..20 {
        let join = FlowJoin::new(Some(Box::new(predict)));
        let budget = FlowBudget::new(1000);
        let sender_budget = FlowBudget::new(1000);
        // Streams numbered apart from their slots, as queues may be.
        let mut tables: Vec<FlowTable> = (0..3u32)
            .map(|slot| {
                FlowTable::new(slot * 2 % 3, LinkType::Ethernet, budget.clone())
                    .joined(Arc::clone(&join), Role::Captured(slot))
            })
            .collect();
        let mut senders: Vec<FlowTable> = (0..2u32)
            .map(|cpu| {
                FlowTable::new(cpu, LinkType::Ethernet, sender_budget.clone())
                    .joined(Arc::clone(&join), Role::Sender)
            })
            .collect();
        let mut now = 1000u32;
        for step in 0..600 {
            now += rand(2) as u32;
            let k = key(rand(40) as u16);
            let hash = [0, 0, 0x11, 0x22][rand(4) as usize];
            let direction = [RECEIVED, RECEIVED, SENT][rand(3) as usize];
            match rand(20) {
                0 => tables[rand(3) as usize].expire_at(1 + rand(5) as u32, now),
                1..=3 => senders[rand(2) as usize].record_key_from(k, 60, hash, (now, 0), SENT),
                _ => tables[rand(3) as usize].record_key_from(k, 60, hash, (now, step), direction),
            }
            if step % 150 == 149 || step == 599 {
                for t in &mut tables {
                    t.settle();
                }
                // What a scrape reads now...
                let (split, unexpected) = (join.split(), join.unexpected());
                // ...and what the end would say: the same tables merged.
                let t = tables.iter().map(|t| t.copy(&budget)).collect();
                let s = senders.iter().map(|t| t.copy(&sender_budget)).collect();
                let (want_split, want_unexpected) = report(t, s);
                assert_eq!(
                    (split, unexpected),
                    (want_split as u64, Some(want_unexpected as u64)),
                    "round {round}, step {step}"
                );
                most = (most.0.max(want_split), most.1.max(want_unexpected));
            }
        }
        // Every table swept empty: nothing split or unexpected, and the
        // join holds only the flows the sender tables still know.
        for t in &mut tables {
            t.expire_at(1, now + 10);
        }
        assert_eq!((join.split(), join.unexpected()), (0, Some(0)));
        let sent: usize = senders.iter().map(FlowTable::len).sum();
        assert!(join.len() <= sent, "{} > {sent}", join.len());
    }
    assert!(most.0 > 5 && most.1 > 5, "{most:?}");
}

/// Without steering nothing is predicted: no unexpected count, split
/// still counted.
#[test]
fn without_a_prediction_only_split_flows() {
    let join = FlowJoin::new(None);
    let budget = FlowBudget::new(10);
    let mut a = FlowTable::new(0, LinkType::Ethernet, budget.clone())
        .joined(Arc::clone(&join), Role::Captured(0));
    let mut b =
        FlowTable::new(1, LinkType::Ethernet, budget).joined(Arc::clone(&join), Role::Captured(1));
    a.record_key(key(1), 60, 0, (10, 0));
    b.record_key(key(1), 60, 0, (10, 0));
    b.record_key(key(2), 60, 0, (10, 0));
    assert_eq!((join.split(), join.unexpected()), (1, None));
    a.expire_at(5, 20);
    assert_eq!(join.split(), 0);
    assert_eq!(join.len(), 2);
}
