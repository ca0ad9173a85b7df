//! Rates over one interval, from two snapshots, and the softirq marker.

use std::time::Duration;

use super::proc::{counter_delta, CpuSample};
use super::Snapshot;

/// Softirq runs per captured packet above which a cpu is marked.
pub const MARK_SOFTIRQS_PER_PACKET: f64 = 2.0;
/// Softirq runs per second a cpu may have beyond that without a mark.
pub const MARK_SOFTIRQS_FLOOR: f64 = 1000.0;
/// Softirq time (percent of the cpu) below which a cpu is never marked
/// for its softirq time.
pub const MARK_SOFTIRQ_PCT: f64 = 10.0;
/// Softirq time per captured packet (seconds) above which a cpu with at
/// least [`MARK_SOFTIRQ_PCT`] is marked.
pub const MARK_SOFTIRQ_SECONDS_PER_PACKET: f64 = 4e-6;

/// The marker rule, for the man page:
///
/// A cpu is marked `!` when, over the interval, its network softirqs are
/// far above what the packets captured on it explain:
///
/// - it ran NET_RX plus NET_TX softirqs more than 1000 times per second
///   more than twice its captured packets per second
///   (`softirqs/s > 2 x packets/s + 1000`), or
/// - it spent at least 10% of its time in softirqs (all softirqs, from
///   /proc/stat) and more than 4 microseconds of it per captured packet
///   (`softirq% >= 10` and `softirq% > packets/s x 0.0004`).
///
/// Why these numbers: one softirq run normally handles at least one
/// packet (under load, dozens), and receiving a packet costs well under
/// 4 microseconds of softirq time (on `lo` one ping echo, four captured
/// packets, takes one NET_RX run and about 1.2 microseconds). A marked cpu
/// does network work for packets this capture does not see: another
/// interface, the other direction, packets RPS or RFS steer to another cpu
/// after the interrupt (the interrupt's cpu runs the softirq, the target
/// cpu captures them), transmit completions, or a softirq storm. The floor
/// and the 10% keep an idle cpu's background from being marked.
pub fn marked(pps: f64, softirqs_ps: f64, softirq_pct: Option<f64>) -> bool {
    let by_count = softirqs_ps > MARK_SOFTIRQS_PER_PACKET * pps + MARK_SOFTIRQS_FLOOR;
    let by_time = softirq_pct.is_some_and(|pct| {
        pct >= MARK_SOFTIRQ_PCT && pct > pps * MARK_SOFTIRQ_SECONDS_PER_PACKET * 100.0
    });
    by_count || by_time
}

/// One cpu's softirq rates over the interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuRate {
    pub net_rx_ps: f64,
    pub net_tx_ps: f64,
    /// Percent of the cpu's time spent in softirqs; `None` when the cpu
    /// was offline at either end (no /proc/stat line) or no tick passed.
    pub softirq_pct: Option<f64>,
}

/// One stream over the interval. Rates are `None` on the first snapshot
/// (no interval yet).
#[derive(Clone, Debug, PartialEq)]
pub struct StreamRate {
    pub id: u32,
    pub label: String,
    pub pps: Option<f64>,
    pub mbps: Option<f64>,
    pub drops_ps: Option<f64>,
    /// This stream's part of all packets captured in the interval, 0..=1
    /// (0 when the interval captured nothing).
    pub share: Option<f64>,
    /// Captured so far.
    pub packets: u64,
    /// Captured in the interval.
    pub interval_packets: u64,
    /// Dropped by the kernel so far.
    pub drops: u64,
    /// Cpu vantage only, when the cpu's counters were read at both ends.
    pub cpu: Option<CpuRate>,
    pub marked: bool,
    /// With --repeats: copies of repeating packets per second, and so far.
    pub repeat_ps: Option<f64>,
    pub repeated: Option<u64>,
    /// With --drops, in the cpu vantage: the kernel's drops per second on
    /// the stream's cpu (zero before any).
    pub kernel_drops_ps: Option<f64>,
}

/// All streams together.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    pub pps: Option<f64>,
    pub mbps: Option<f64>,
    pub drops_ps: Option<f64>,
    pub packets: u64,
    pub interval_packets: u64,
    pub drops: u64,
}

/// A top flow of the interval.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowRate {
    pub flow: String,
    pub packets: u64,
    pub pps: Option<f64>,
}

/// The top repeating packet of the interval.
#[derive(Clone, Debug, PartialEq)]
pub struct RepeatRate {
    /// The stream's label (`cpu1`).
    pub stream: String,
    /// The decode line.
    pub packet: String,
    /// Copies in the interval.
    pub copies: u64,
    pub pps: Option<f64>,
}

/// What the view shows for one interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Rates {
    /// Time since the capture started, at the later snapshot.
    pub elapsed: Duration,
    /// The interval's length; `None` on the first snapshot.
    pub dt: Option<Duration>,
    pub streams: Vec<StreamRate>,
    pub total: Totals,
    /// `None` unless the snapshot carries flows (--flows).
    pub flows: Option<Vec<FlowRate>>,
    /// `None` unless the snapshot carries repeats (--repeats).
    pub repeats: Option<Vec<RepeatRate>>,
    /// With --drops: the reason with the most kernel drops in the
    /// interval, (cpu label, reason, drops, per second); None without
    /// --drops, an empty list when nothing was dropped.
    pub kernel_drops: Option<Vec<DropRate>>,
}

/// The interval's top drop reason: (cpu label, reason, drops, per second).
pub type DropRate = (String, String, u64, Option<f64>);

impl Rates {
    /// The rates for a view of `vantage`: the kernel's drops are counted
    /// per cpu, so only a cpu stream has its own; a queue's or node's id
    /// is not a cpu number (matching it to one gave queue1 the drops of
    /// cpu1's packets, which the capture had put on queue0).
    pub fn for_vantage(mut self, vantage: crate::options::Vantage) -> Rates {
        if vantage != crate::options::Vantage::Cpu {
            for s in &mut self.streams {
                s.kernel_drops_ps = None;
            }
        }
        self
    }

    /// The rates from `prev` to `cur`; with no `prev` only the counts.
    /// Streams are matched by id; one missing from `prev` counts from 0.
    pub fn between(prev: Option<&Snapshot>, cur: &Snapshot) -> Rates {
        let dt = prev
            .map(|p| cur.elapsed.saturating_sub(p.elapsed))
            .filter(|d| !d.is_zero());
        let secs = dt.map(|d| d.as_secs_f64());
        let per_s = |n: u64| secs.map(|s| n as f64 / s);
        let mut total = Totals::default();
        let mut streams = Vec::with_capacity(cur.streams.len());
        for s in &cur.streams {
            let before = prev.and_then(|p| p.streams.iter().find(|b| b.id == s.id));
            let (p0, b0, d0) = before.map_or((0, 0, 0), |b| (b.packets, b.bytes, b.drops));
            let r0 = before.and_then(|b| b.repeated).unwrap_or(0);
            let dp = s.packets.saturating_sub(p0);
            let db = s.bytes.saturating_sub(b0);
            let dd = s.drops.saturating_sub(d0);
            total.packets += s.packets;
            total.drops += s.drops;
            total.interval_packets += dp;
            total.pps = per_s(dp).map(|r| total.pps.unwrap_or(0.0) + r);
            let mbps = per_s(db).map(|r| r * 8.0 / 1e6);
            total.mbps = mbps.map(|r| total.mbps.unwrap_or(0.0) + r);
            total.drops_ps = per_s(dd).map(|r| total.drops_ps.unwrap_or(0.0) + r);
            let cpu = match (prev, secs) {
                (Some(p), Some(secs)) => cpu_rate(
                    p.cpus.as_ref().and_then(|c| c.get(s.id)),
                    cur.cpus.as_ref().and_then(|c| c.get(s.id)),
                    secs,
                ),
                _ => None,
            };
            let pps = per_s(dp);
            let marked = match (pps, cpu) {
                (Some(pps), Some(c)) => marked(pps, c.net_rx_ps + c.net_tx_ps, c.softirq_pct),
                _ => false,
            };
            streams.push(StreamRate {
                id: s.id,
                label: s.label.clone(),
                pps,
                mbps,
                drops_ps: per_s(dd),
                share: None,
                packets: s.packets,
                interval_packets: dp,
                drops: s.drops,
                cpu,
                marked,
                repeat_ps: s.repeated.and_then(|r| per_s(r.saturating_sub(r0))),
                repeated: s.repeated,
                kernel_drops_ps: cur.kernel_drops.as_ref().and_then(|k| {
                    let now: u64 = k.iter().filter(|d| d.0 == s.id).map(|d| d.2).sum();
                    let before: u64 = prev
                        .and_then(|p| p.kernel_drops.as_ref())
                        .map_or(0, |k| k.iter().filter(|d| d.0 == s.id).map(|d| d.2).sum());
                    per_s(now.saturating_sub(before))
                }),
            });
        }
        if dt.is_some() {
            for s in &mut streams {
                s.share = Some(if total.interval_packets == 0 {
                    0.0
                } else {
                    s.interval_packets as f64 / total.interval_packets as f64
                });
            }
        }
        let flows = cur.flows.as_ref().map(|f| {
            f.iter()
                .map(|(flow, n)| FlowRate {
                    flow: flow.clone(),
                    packets: *n,
                    pps: per_s(*n),
                })
                .collect()
        });
        let repeats = cur.repeats.as_ref().map(|r| {
            r.iter()
                .map(|(stream, packet, n)| RepeatRate {
                    stream: stream.clone(),
                    packet: packet.clone(),
                    copies: *n,
                    pps: per_s(*n),
                })
                .collect()
        });
        let kernel_drops = cur.kernel_drops.as_ref().map(|k| {
            let before = |cpu: u32, reason: &str| {
                prev.and_then(|p| p.kernel_drops.as_ref())
                    .and_then(|k| k.iter().find(|d| d.0 == cpu && d.1 == reason))
                    .map_or(0, |d| d.2)
            };
            k.iter()
                .map(|(cpu, reason, n)| (*cpu, reason, n.saturating_sub(before(*cpu, reason))))
                .filter(|d| d.2 > 0)
                .max_by_key(|d| d.2)
                .map(|(cpu, reason, n)| (format!("cpu{cpu}"), reason.clone(), n, per_s(n)))
                .into_iter()
                .collect()
        });
        Rates {
            elapsed: cur.elapsed,
            dt,
            streams,
            total,
            flows,
            repeats,
            kernel_drops,
        }
    }
}

fn cpu_rate(prev: Option<&CpuSample>, cur: Option<&CpuSample>, secs: f64) -> Option<CpuRate> {
    let (p, c) = (prev?, cur?);
    let softirq_pct = match (p.time, c.time) {
        (Some(a), Some(b)) => {
            // iowait and idle may step back a little on NOHZ kernels, so
            // a total that did not grow gives no percentage.
            let total = b.total.saturating_sub(a.total);
            (total > 0).then(|| {
                let si = b.softirq.saturating_sub(a.softirq) as f64;
                (si * 100.0 / total as f64).min(100.0)
            })
        }
        _ => None,
    };
    Some(CpuRate {
        net_rx_ps: counter_delta(p.net_rx, c.net_rx) as f64 / secs,
        net_tx_ps: counter_delta(p.net_tx, c.net_tx) as f64 / secs,
        softirq_pct,
    })
}

#[cfg(test)]
mod tests {
    use super::super::proc::{CpuSample, CpuStats, CpuTime};
    use super::super::StreamCount;
    use super::*;

    fn snap(secs: f64, streams: &[(u32, u64, u64, u64)], cpus: Option<Vec<CpuSample>>) -> Snapshot {
        Snapshot {
            elapsed: Duration::from_secs_f64(secs),
            streams: streams
                .iter()
                .map(|&(id, packets, bytes, drops)| StreamCount {
                    id,
                    label: format!("cpu{id}"),
                    packets,
                    bytes,
                    drops,
                    repeated: None,
                })
                .collect(),
            cpus: cpus.map(CpuStats),
            flows: None,
            repeats: None,
            kernel_drops: None,
        }
    }

    fn cs(cpu: u32, rx: u64, tx: u64, si: u64, total: u64) -> CpuSample {
        CpuSample {
            cpu,
            net_rx: rx,
            net_tx: tx,
            time: Some(CpuTime { softirq: si, total }),
        }
    }

    #[test]
    fn marker_rule() {
        // Background on an idle cpu.
        assert!(!marked(0.0, 999.0, Some(0.5)));
        assert!(marked(0.0, 1001.0, None));
        // One softirq per packet is normal at any rate.
        assert!(!marked(100_000.0, 100_000.0, Some(5.0)));
        assert!(!marked(100_000.0, 201_000.0, None));
        assert!(marked(100_000.0, 201_001.0, None));
        // Softirq time: 10% with few packets, but not with many.
        assert!(!marked(0.0, 0.0, Some(9.9)));
        assert!(marked(0.0, 0.0, Some(10.0)));
        assert!(marked(10_000.0, 0.0, Some(10.0)));
        // 50k pps at 4 us each is 20%.
        assert!(!marked(50_000.0, 0.0, Some(20.0)));
        assert!(marked(50_000.0, 0.0, Some(20.1)));
    }

    #[test]
    fn rates_over_one_interval() {
        let a = snap(
            1.0,
            &[(0, 100, 10_000, 0), (1, 0, 0, 0)],
            Some(vec![
                cs(0, 10, 0, 0, 100),
                cs(1, u64::from(u32::MAX) - 99, 5, 3, 100),
            ]),
        );
        let b = snap(
            3.0,
            &[(0, 2100, 510_000, 4), (1, 2000, 250_000, 0)],
            Some(vec![cs(0, 2010, 0, 10, 300), cs(1, 4900, 5, 103, 300)]),
        );
        let r = Rates::between(Some(&a), &b);
        assert_eq!(r.dt, Some(Duration::from_secs(2)));
        let s0 = &r.streams[0];
        assert_eq!(s0.pps, Some(1000.0));
        assert_eq!(s0.mbps, Some(2.0));
        assert_eq!(s0.drops_ps, Some(2.0));
        assert_eq!(s0.share, Some(0.5));
        assert_eq!((s0.packets, s0.interval_packets, s0.drops), (2100, 2000, 4));
        let c0 = s0.cpu.unwrap();
        assert_eq!(
            (c0.net_rx_ps, c0.net_tx_ps, c0.softirq_pct),
            (1000.0, 0.0, Some(5.0))
        );
        assert!(!s0.marked);
        // cpu1's NET_RX count wrapped: 100 + 4900 runs in 2 s.
        let c1 = r.streams[1].cpu.unwrap();
        assert_eq!(c1.net_rx_ps, 2500.0);
        assert_eq!(c1.softirq_pct, Some(50.0));
        assert!(r.streams[1].marked);
        assert_eq!(r.total.pps, Some(2000.0));
        assert_eq!(r.total.mbps, Some(3.0));
        assert_eq!(r.total.packets, 4100);
        assert_eq!(r.total.interval_packets, 4000);
    }

    #[test]
    fn first_snapshot_has_counts_only() {
        let a = snap(0.0, &[(0, 5, 500, 1)], Some(vec![cs(0, 1, 1, 1, 1)]));
        let r = Rates::between(None, &a);
        assert_eq!(r.dt, None);
        assert_eq!(r.streams[0].pps, None);
        assert_eq!(r.streams[0].share, None);
        assert_eq!(r.streams[0].cpu, None);
        assert_eq!(r.streams[0].interval_packets, 5);
        assert_eq!(r.total.pps, None);
        // The same moment twice is not an interval either.
        assert_eq!(Rates::between(Some(&a), &a).dt, None);
    }

    #[test]
    fn offline_cpu_has_no_softirq_time() {
        let mut off = cs(0, 1, 1, 0, 0);
        off.time = None;
        let a = snap(1.0, &[(0, 0, 0, 0)], Some(vec![off]));
        let b = snap(2.0, &[(0, 0, 0, 0)], Some(vec![cs(0, 1, 1, 5, 100)]));
        let c = Rates::between(Some(&a), &b).streams[0].cpu.unwrap();
        assert_eq!(c.softirq_pct, None);
        assert_eq!(c.net_rx_ps, 0.0);
    }

    #[test]
    fn empty_interval_shares_are_zero() {
        let a = snap(1.0, &[(0, 7, 0, 0), (1, 3, 0, 0)], None);
        let b = snap(2.0, &[(0, 7, 0, 0), (1, 3, 0, 0)], None);
        let r = Rates::between(Some(&a), &b);
        assert!(r
            .streams
            .iter()
            .all(|s| s.share == Some(0.0) && s.cpu.is_none()));
    }
}
