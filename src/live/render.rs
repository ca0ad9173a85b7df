//! The view as text: the terminal table, the plain lines and the JSON
//! lines. Pure functions of two snapshots; nothing here writes anywhere.
//!
//! # The table
//!
//! Two header lines (the capture and its totals), a title line, one row
//! per stream, then (when there is room) a legend for the marker and the
//! top flows of the interval:
//!
//! ```text
//! rxtxcpu  interface lo  direction rxtx  vantage cpu  elapsed 0:01:05
//! total  2000 pkt/s  15.3 Mbit/s  3.0 drops/s  5500 packets  6 dropped
//! STREAM    PKT/S MBIT/S DROP/S  PACKETS NET_RX/S NET_TX/S SIRQ% SHARE
//! cpu0       1500   15.0    3.0     4000     1500        0   2.0   75% [#######..]
//! cpu1   !    500    0.3      0     1500    45000        0  35.0   25% [##.......]
//! ! more network softirqs than its packets explain (man page: --live)
//!  PKT/S  TOP FLOWS of the last 2 s
//!   1500  udp 10.0.0.1:5000 > 10.0.0.2:9
//! ```
//!
//! PKT/S, MBIT/S and DROP/S are over the interval; PACKETS is since the
//! start; NET_RX/S and NET_TX/S are the cpu's softirq runs per second,
//! SIRQ% its time in softirqs (cpu vantage only); SHARE is the stream's
//! part of the packets captured in the interval; `!` is the marker of
//! [`super::rates::marked`].
//!
//! Every line is at most `width` columns. As the width shrinks the share
//! bar narrows from 40 to 8 columns, then the columns go in this order:
//! the bar, NET_TX/S, PACKETS, MBIT/S, NET_RX/S, REPEAT/S (with
//! --repeats), SIRQ%, DROP/S, SHARE.
//! STREAM, the marker and PKT/S always stay (a line narrower than those
//! is cut). The rarest and the derivable go first: NET_TX is rarely busy
//! on receive paths, the packet count is in the final report, Mbit/s
//! follows from packets for most traffic; drops and the share stay longest
//! because they say whether the capture is complete and balanced.
//!
//! When the streams do not fit the height, the busiest ones (marked first,
//! then by packets per second) are shown, in stream order, and a last line
//! says how many are not.
//!
//! # Plain lines
//!
//! One line per stream per interval, `key=value` fields separated by one
//! space, always in this order, values without spaces; `-` where a value
//! is unknown:
//!
//! ```text
//! time=2.000 interval=2.000 stream=cpu0 pps=1000.0 mbps=2.000 drops_ps=2.0 share_pct=50.0 packets=2100 interval_packets=2000 drops=4 net_rx_ps=1000.0 net_tx_ps=0.0 softirq_pct=5.0 marked=0
//! ```
//!
//! - `time`: seconds since the capture started; `interval`: seconds since
//!   the previous line of the same stream.
//! - `stream`: the vantage key and the stream id (`cpu0`, `queue2`,
//!   `numa0`).
//! - `packets`, `drops`: captured and kernel-dropped so far; the last
//!   line of each stream has the numbers of the final report.
//!   `interval_packets`: captured in this interval (they add up to
//!   `packets`).
//! - `share_pct`: this stream's part of all packets captured in the
//!   interval.
//! - cpu vantage only: `net_rx_ps`, `net_tx_ps` (softirq runs per second),
//!   `softirq_pct` (the cpu's time in softirqs) and `marked` (0 or 1, see
//!   [`super::rates::marked`]).
//!
//! With --repeats, each stream line ends in `repeat_ps=… repeated=…`
//! (copies of repeating packets per second, and so far), and the
//! interval's top repeating packet follows the flows: `time=… interval=…
//! repeat_stream=cpu1 repeat_copies=N repeat_pps=R repeat="TEXT"`.
//!
//! With --flows, after the stream lines, one line per top flow:
//! `time=… interval=… flow_rank=1 flow_packets=1200 flow_pps=600.0
//! flow="TEXT"`; `flow` is last, in double quotes, with `"` and `\`
//! escaped by a backslash.
//!
//! # JSON lines
//!
//! One object per interval, on one line:
//! `{"time","interval","interface","direction","vantage","total":{…},
//! "streams":[{"stream","id","label","pps","mbps","drops_ps","share_pct",
//! "packets","interval_packets","drops"[,"net_rx_ps","net_tx_ps",
//! "softirq_pct","marked"][,"repeat_ps","repeated"]}…]
//! [,"flows":[{"flow","packets","pps"}…]][,"repeats":[{"packet","stream",
//! "copies","pps"}]]}`.
//! Floats have at most 3 decimals; unknown values are `null`.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::rates::{Rates, StreamRate};
use super::{Header, Snapshot};
use crate::vantage::NO_ID;

/// The bar's width limits (the brackets not included).
pub const BAR_MAX: usize = 40;
pub const BAR_MIN: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    Pps,
    Mbps,
    Drops,
    Packets,
    NetRx,
    NetTx,
    Repeat,
    KDrop,
    Sirq,
    Share,
}

impl Col {
    fn title(self) -> &'static str {
        match self {
            Col::Pps => "PKT/S",
            Col::Mbps => "MBIT/S",
            Col::Drops => "DROP/S",
            Col::Packets => "PACKETS",
            Col::NetRx => "NET_RX/S",
            Col::NetTx => "NET_TX/S",
            Col::Repeat => "REPEAT/S",
            Col::KDrop => "KDROP/S",
            Col::Sirq => "SIRQ%",
            Col::Share => "SHARE",
        }
    }

    fn width(self) -> usize {
        match self {
            Col::Pps | Col::Mbps | Col::Drops => 6,
            Col::Packets | Col::NetRx | Col::NetTx | Col::Repeat | Col::KDrop => 8,
            Col::Sirq | Col::Share => 5,
        }
    }

    fn cell(self, s: &StreamRate) -> String {
        let cpu = s.cpu;
        match self {
            Col::Pps => opt(s.pps, rate),
            Col::Mbps => opt(s.mbps, mbit),
            Col::Drops => opt(s.drops_ps, rate),
            Col::Packets => count(s.packets),
            Col::NetRx => opt(cpu.map(|c| c.net_rx_ps), rate),
            Col::NetTx => opt(cpu.map(|c| c.net_tx_ps), rate),
            Col::Repeat => opt(s.repeat_ps, rate),
            Col::KDrop => opt(s.kernel_drops_ps, rate),
            Col::Sirq => opt(cpu.and_then(|c| c.softirq_pct), |p| format!("{p:.1}")),
            Col::Share => opt(s.share, |f| format!("{:.0}%", f * 100.0)),
        }
    }
}

/// Table order of the columns.
const ALL: [Col; 10] = [
    Col::Pps,
    Col::Mbps,
    Col::Drops,
    Col::Packets,
    Col::NetRx,
    Col::NetTx,
    Col::Repeat,
    Col::KDrop,
    Col::Sirq,
    Col::Share,
];

/// The order in which columns are given up as the width shrinks.
const DROP_ORDER: [Col; 9] = [
    Col::NetTx,
    Col::Packets,
    Col::Mbps,
    Col::NetRx,
    Col::Repeat,
    Col::KDrop,
    Col::Sirq,
    Col::Drops,
    Col::Share,
];

struct Layout {
    label: usize,
    marker: bool,
    cols: Vec<Col>,
    bar: Option<usize>,
}

impl Layout {
    fn new(rates: &Rates, cpu_columns: bool, width: usize) -> Layout {
        let label = rates
            .streams
            .iter()
            .map(|s| s.label.chars().count())
            .chain([6])
            .max()
            .unwrap_or(6);
        let repeats = rates.streams.iter().any(|s| s.repeated.is_some());
        let mut cols: Vec<Col> = ALL
            .into_iter()
            .filter(|c| cpu_columns || !matches!(c, Col::NetRx | Col::NetTx | Col::Sirq))
            .filter(|c| repeats || *c != Col::Repeat)
            .filter(|c| rates.kernel_drops.is_some() || *c != Col::KDrop)
            .collect();
        let marker = cpu_columns;
        let base = |cols: &[Col]| {
            label + if marker { 2 } else { 0 } + cols.iter().map(|c| 1 + c.width()).sum::<usize>()
        };
        // The bar goes first, so it only shows when everything else fits.
        let bar =
            (base(&cols) + 3 + BAR_MIN <= width).then(|| (width - base(&cols) - 3).min(BAR_MAX));
        if bar.is_none() {
            for c in DROP_ORDER {
                if base(&cols) <= width {
                    break;
                }
                cols.retain(|x| *x != c);
            }
        }
        Layout {
            label,
            marker,
            cols,
            bar,
        }
    }

    fn title(&self) -> String {
        let mut line = format!("{:<w$}", "STREAM", w = self.label);
        if self.marker {
            line.push_str("  ");
        }
        for c in &self.cols {
            let _ = write!(line, " {:>w$}", c.title(), w = c.width());
        }
        line.trim_end().to_string()
    }

    fn row(&self, s: &StreamRate) -> String {
        let mut line = format!("{:<w$}", s.label, w = self.label);
        if self.marker {
            line.push_str(if s.marked { " !" } else { "  " });
        }
        for c in &self.cols {
            let _ = write!(line, " {:>w$}", c.cell(s), w = c.width());
        }
        if let Some(w) = self.bar {
            let _ = write!(line, " [{}]", share_bar(s.share, w));
        }
        line
    }
}

/// The share bar: `width` characters, `#` for the filled part and `.` for
/// the rest; a share above zero fills at least one. Spaces when unknown.
pub fn share_bar(share: Option<f64>, width: usize) -> String {
    let Some(share) = share else {
        return " ".repeat(width);
    };
    let share = share.clamp(0.0, 1.0);
    let mut filled = (share * width as f64).round() as usize;
    if share > 0.0 {
        filled = filled.max(1);
    }
    let filled = filled.min(width);
    format!("{}{}", "#".repeat(filled), ".".repeat(width - filled))
}

/// The table for the interval from `prev` to `cur` (the first draw has no
/// `prev`: counts only, rates `-`), at most `height` lines of at most
/// `width` columns.
pub fn render_table(
    header: &Header,
    prev: Option<&Snapshot>,
    cur: &Snapshot,
    width: usize,
    height: usize,
) -> Vec<String> {
    let rates = Rates::between(prev, cur).for_vantage(header.vantage);
    let cpu_columns = header.vantage == super::Vantage::Cpu && cur.cpus.is_some();
    let layout = Layout::new(&rates, cpu_columns, width);

    let mut lines = vec![head_line(header, &rates, width), totals_line(&rates, width)];
    lines.push(layout.title());

    let room = height.saturating_sub(lines.len());
    let n = rates.streams.len();
    if n <= room {
        lines.extend(rates.streams.iter().map(|s| layout.row(s)));
    } else if room > 0 {
        let shown = room - 1;
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (&rates.streams[a], &rates.streams[b]);
            y.marked
                .cmp(&x.marked)
                .then(y.pps.unwrap_or(0.0).total_cmp(&x.pps.unwrap_or(0.0)))
                .then(a.cmp(&b))
        });
        let mut keep = order[..shown].to_vec();
        keep.sort_unstable();
        lines.extend(keep.iter().map(|&i| layout.row(&rates.streams[i])));
        let more = n - shown;
        let what = if more == 1 { "stream" } else { "streams" };
        lines.push(format!("+{more} quieter {what} not shown"));
    }

    if layout.marker && rates.streams.iter().any(|s| s.marked) && lines.len() < height {
        let long = "! more network softirqs than its packets explain (man page: --live)";
        let legend = if long.len() <= width {
            long
        } else {
            "! softirqs far above its packets"
        };
        lines.push(legend.into());
    }
    if let Some(flows) = &rates.flows {
        if lines.len() + 1 < height && !flows.is_empty() {
            let dt = rates
                .dt
                .map_or(String::new(), |d| format!(" of the last {}", secs(d)));
            lines.push(format!("{:>6}  TOP FLOWS{dt}", "PKT/S"));
            for f in flows {
                if lines.len() >= height {
                    break;
                }
                lines.push(format!("{:>6}  {}", opt(f.pps, rate), f.flow));
            }
        }
    }
    if let Some((cpu, reason, _, ps)) = rates.kernel_drops.as_ref().and_then(|k| k.first()) {
        if lines.len() + 1 < height {
            let dt = rates
                .dt
                .map_or(String::new(), |d| format!(" of the last {}", secs(d)));
            lines.push(format!("{:>7}  TOP DROP REASON{dt}", "KDROP/S"));
            lines.push(format!("{:>7}  {cpu} {reason}", opt(*ps, rate)));
        }
    }
    if let Some(top) = rates.repeats.as_ref().and_then(|r| r.first()) {
        if lines.len() + 1 < height {
            let dt = rates
                .dt
                .map_or(String::new(), |d| format!(" of the last {}", secs(d)));
            lines.push(format!("{:>6}  TOP REPEATING PACKET{dt}", "COPY/S"));
            lines.push(format!(
                "{:>6}  {} {}",
                opt(top.pps, rate),
                top.stream,
                top.packet
            ));
        }
    }
    lines.truncate(height);
    for l in &mut lines {
        cut(l, width);
    }
    lines
}

fn head_line(h: &Header, r: &Rates, width: usize) -> String {
    let long = [
        h.name.clone(),
        format!("interface {}", h.interface),
        format!("direction {}", h.direction),
        format!("vantage {}", h.vantage.subject()),
        format!("elapsed {}", clock(r.elapsed)),
    ];
    let short = [
        h.name.clone(),
        h.interface.clone(),
        h.direction.clone(),
        h.vantage.subject().to_string(),
        clock(r.elapsed),
    ];
    // The program's name goes first, then the words, then (least
    // important first) the vantage, the direction, the clock.
    for line in [long.join("  "), long[1..].join("  ")] {
        if line.chars().count() <= width {
            return line;
        }
    }
    fit(&short[1..], &[2, 1, 3, 0], width)
}

fn totals_line(r: &Rates, width: usize) -> String {
    let t = &r.total;
    let parts = [
        "total".to_string(),
        format!("{} pkt/s", opt(t.pps, rate)),
        format!("{} Mbit/s", opt(t.mbps, mbit)),
        format!("{} drops/s", opt(t.drops_ps, rate)),
        format!("{} packets", count(t.packets)),
        format!("{} dropped", count(t.drops)),
    ];
    fit(&parts, &[5, 4, 2, 0, 3, 1], width)
}

/// `parts` joined by two spaces; while too wide, the part named next in
/// `keep` (least important first) is left out; the last one left is cut.
fn fit(parts: &[String], keep: &[usize], width: usize) -> String {
    let mut on = vec![true; parts.len()];
    let join = |on: &[bool]| {
        parts
            .iter()
            .zip(on)
            .filter(|(_, on)| **on)
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>()
            .join("  ")
    };
    for &i in keep.iter().take(keep.len().saturating_sub(1)) {
        if join(&on).chars().count() <= width {
            break;
        }
        on[i] = false;
    }
    let mut s = join(&on);
    cut(&mut s, width);
    s
}

/// Cuts `s` to `width` characters (the terminal is told not to wrap, and
/// every character here is one column wide).
fn cut(s: &mut String, width: usize) {
    if let Some((i, _)) = s.char_indices().nth(width) {
        s.truncate(i);
    }
}

/// The plain lines for the interval from `prev` to `cur`: one per stream,
/// then one per flow. None for the first snapshot.
pub fn render_plain(header: &Header, prev: Option<&Snapshot>, cur: &Snapshot) -> Vec<String> {
    let r = Rates::between(prev, cur).for_vantage(header.vantage);
    let Some(dt) = r.dt else {
        return Vec::new();
    };
    let cpu = header.vantage == super::Vantage::Cpu && cur.cpus.is_some();
    let t = format!(
        "time={:.3} interval={:.3}",
        r.elapsed.as_secs_f64(),
        dt.as_secs_f64()
    );
    let num = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |v| format!("{v:.prec$}"));
    let mut out = Vec::new();
    for s in &r.streams {
        let mut l = format!(
            "{t} stream={} pps={} mbps={} drops_ps={} share_pct={} packets={} interval_packets={} drops={}",
            stream_name(header.vantage, s.id),
            num(s.pps, 1),
            num(s.mbps, 3),
            num(s.drops_ps, 1),
            num(s.share.map(|f| f * 100.0), 1),
            s.packets,
            s.interval_packets,
            s.drops,
        );
        if cpu {
            let c = s.cpu;
            let _ = write!(
                l,
                " net_rx_ps={} net_tx_ps={} softirq_pct={} marked={}",
                num(c.map(|c| c.net_rx_ps), 1),
                num(c.map(|c| c.net_tx_ps), 1),
                num(c.and_then(|c| c.softirq_pct), 1),
                u8::from(s.marked)
            );
        }
        if let Some(n) = s.repeated {
            let _ = write!(l, " repeat_ps={} repeated={n}", num(s.repeat_ps, 1));
        }
        if r.kernel_drops.is_some() {
            let _ = write!(l, " kernel_drops_ps={}", num(s.kernel_drops_ps, 1));
        }
        out.push(l);
    }
    for (i, f) in r.flows.iter().flatten().enumerate() {
        let text = f.flow.replace('\\', "\\\\").replace('"', "\\\"");
        out.push(format!(
            "{t} flow_rank={} flow_packets={} flow_pps={} flow=\"{text}\"",
            i + 1,
            f.packets,
            num(f.pps, 1)
        ));
    }
    for p in r.repeats.iter().flatten() {
        let text = p.packet.replace('\\', "\\\\").replace('"', "\\\"");
        out.push(format!(
            "{t} repeat_stream={} repeat_copies={} repeat_pps={} repeat=\"{text}\"",
            p.stream,
            p.copies,
            num(p.pps, 1)
        ));
    }
    out
}

/// The JSON line for the interval from `prev` to `cur` (no newline). None
/// for the first snapshot.
pub fn render_json(header: &Header, prev: Option<&Snapshot>, cur: &Snapshot) -> Option<String> {
    let r = Rates::between(prev, cur).for_vantage(header.vantage);
    let dt = r.dt?;
    let cpu = header.vantage == super::Vantage::Cpu && cur.cpus.is_some();
    let t = &r.total;
    let streams: Vec<Value> = r
        .streams
        .iter()
        .map(|s| {
            let mut o = Map::new();
            o.insert("stream".into(), stream_name(header.vantage, s.id).into());
            // null for the no-queue stream, as in the report's JSON.
            let id = (s.id != NO_ID).then_some(s.id);
            o.insert("id".into(), id.into());
            o.insert("label".into(), s.label.clone().into());
            o.insert("pps".into(), f3(s.pps));
            o.insert("mbps".into(), f3(s.mbps));
            o.insert("drops_ps".into(), f3(s.drops_ps));
            o.insert("share_pct".into(), f3(s.share.map(|f| f * 100.0)));
            o.insert("packets".into(), s.packets.into());
            o.insert("interval_packets".into(), s.interval_packets.into());
            o.insert("drops".into(), s.drops.into());
            if cpu {
                o.insert("net_rx_ps".into(), f3(s.cpu.map(|c| c.net_rx_ps)));
                o.insert("net_tx_ps".into(), f3(s.cpu.map(|c| c.net_tx_ps)));
                o.insert("softirq_pct".into(), f3(s.cpu.and_then(|c| c.softirq_pct)));
                o.insert("marked".into(), s.marked.into());
            }
            if let Some(n) = s.repeated {
                o.insert("repeat_ps".into(), f3(s.repeat_ps));
                o.insert("repeated".into(), n.into());
            }
            if r.kernel_drops.is_some() {
                o.insert("kernel_drops_ps".into(), f3(s.kernel_drops_ps));
            }
            Value::Object(o)
        })
        .collect();
    let mut obj = json!({
        "time": f3(Some(r.elapsed.as_secs_f64())),
        "interval": f3(Some(dt.as_secs_f64())),
        "interface": header.interface,
        "direction": header.direction,
        "vantage": header.vantage.subject(),
        "total": {
            "pps": f3(t.pps),
            "mbps": f3(t.mbps),
            "drops_ps": f3(t.drops_ps),
            "packets": t.packets,
            "interval_packets": t.interval_packets,
            "drops": t.drops,
        },
        "streams": streams,
    });
    if let Some(flows) = &r.flows {
        obj["flows"] = flows
            .iter()
            .map(|f| json!({"flow": f.flow, "packets": f.packets, "pps": f3(f.pps)}))
            .collect();
    }
    if let Some(k) = &r.kernel_drops {
        obj["kernel_drops"] = k
            .iter()
            .map(|(cpu, reason, n, ps)| {
                json!({"cpu": cpu, "reason": reason, "packets": n, "pps": f3(*ps)})
            })
            .collect();
    }
    if let Some(repeats) = &r.repeats {
        obj["repeats"] = repeats
            .iter()
            .map(|p| {
                json!({"packet": p.packet, "stream": p.stream, "copies": p.copies, "pps": f3(p.pps)})
            })
            .collect();
    }
    Some(obj.to_string())
}

/// The `stream` field: the vantage and the stream's id (`cpu3`, `queue2`,
/// `numa0`); `noqueue` for the packets with no receive queue recorded, the
/// name the report, the flow table and the file names give it.
fn stream_name(vantage: super::Vantage, id: u32) -> String {
    if id == NO_ID {
        "noqueue".to_string()
    } else {
        format!("{}{id}", vantage.as_str())
    }
}

/// A float rounded to 3 decimals, or null.
fn f3(v: Option<f64>) -> Value {
    v.filter(|v| v.is_finite())
        .map_or(Value::Null, |v| json!((v * 1000.0).round() / 1000.0))
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

/// A rate in at most 6 characters: `0`, `0.5`, `12`, `999999`, `1.23M`.
pub fn rate(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v < 9.95 {
        format!("{v:.1}")
    } else if v < 999_999.5 {
        format!("{v:.0}")
    } else {
        si(v)
    }
}

/// Mbit/s in at most 6 characters: one decimal below 1000.
pub fn mbit(v: f64) -> String {
    if v < 999.95 {
        format!("{v:.1}")
    } else {
        rate(v)
    }
}

/// A count in at most 8 characters: exact below 10^8, then `123M`.
pub fn count(n: u64) -> String {
    if n < 100_000_000 {
        n.to_string()
    } else {
        si(n as f64)
    }
}

/// Three significant digits and a unit, for values of a million or more.
fn si(v: f64) -> String {
    let mut v = v / 1e6;
    let mut units = ["M", "G", "T", "P", "E"].iter().peekable();
    let mut unit = units.next().unwrap();
    while v >= 999.5 && units.peek().is_some() {
        v /= 1000.0;
        unit = units.next().unwrap();
    }
    if v < 9.995 {
        format!("{v:.2}{unit}")
    } else if v < 99.95 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.0}{unit}")
    }
}

/// `H:MM:SS`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `1 s`, `0.5 s`, `2.25 s`.
fn secs(d: Duration) -> String {
    let s = format!("{:.2}", d.as_secs_f64());
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} s")
}

#[cfg(test)]
pub(crate) mod tests;
