//! The flow table printed after the report.

use std::fmt::Write as _;

use super::table::{FlowRecord, Flows};

/// The mark of a flow seen on more than one stream.
pub const SPLIT: &str = "SPLIT";
/// The mark of a flow whose hash changed during the capture.
pub const REHASHED: &str = "REHASHED";
/// The mark of a flow off its expected stream.
pub const UNEXPECTED: &str = "UNEXPECTED";
/// The summary line, instead of the count of flows off their expected
/// stream, when no flow had one.
pub const NOTHING_PREDICTED: &str = "No flow has an expected stream: nothing could be predicted.";

/// The flow table: a header line, one row per flow (see [`Flows::rows`]
/// for which and in what order, `limit` 0 meaning all), then the summary
/// lines. `label` names a stream (`cpu3`, `queue 2`, `node 0`) in the
/// STREAMS column (`cpu0:8 cpu1:3`) and in the summary.
///
/// The HASH column is there when a listed flow has a hash, EXPECTED and
/// BY (the stream the steering configuration predicts, `-` for none, and
/// the mechanism) when one has an expectation; marks (UNEXPECTED, SPLIT, REHASHED) end the
/// row. Text columns are left-aligned, numbers right-aligned, two spaces
/// apart, no trailing blanks.
pub fn table(flows: &Flows, limit: usize, label: &dyn Fn(u32) -> String) -> String {
    let rows = flows.rows(limit);
    let mut out = String::new();
    if !rows.is_empty() {
        let with_hash = rows.iter().any(|r| r.hash.is_some());
        let with_expected = rows.iter().any(|r| r.expected.is_some());
        let mut cells: Vec<Vec<String>> = Vec::with_capacity(rows.len() + 1);
        let mut header = vec!["PROTO", "SOURCE", "DESTINATION", "PACKETS", "BYTES"];
        let mut right = vec![false, false, false, true, true];
        if with_hash {
            header.push("HASH");
            right.push(false);
        }
        header.push("STREAMS");
        right.push(false);
        if with_expected {
            header.push("EXPECTED");
            right.push(false);
            header.push("BY");
            right.push(false);
        }
        header.push("");
        right.push(false);
        cells.push(header.iter().map(|s| s.to_string()).collect());
        for r in &rows {
            cells.push(row(r, with_hash, with_expected, label));
        }
        let mut widths = vec![0usize; right.len()];
        for c in &cells {
            for (w, s) in widths.iter_mut().zip(c) {
                *w = (*w).max(s.chars().count());
            }
        }
        for c in &cells {
            let mut line = String::new();
            for (i, s) in c.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                if right[i] {
                    let _ = write!(line, "{s:>w$}", w = widths[i]);
                } else {
                    let _ = write!(line, "{s:<w$}", w = widths[i]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        let more = flows.records.len() - rows.len();
        if more > 0 {
            let _ = writeln!(out, "{} not listed.", count(more as u64, "more flow"));
        }
    }
    summary(&mut out, flows, label);
    out
}

fn row(
    r: &FlowRecord,
    with_hash: bool,
    with_expected: bool,
    label: &dyn Fn(u32) -> String,
) -> Vec<String> {
    let mut c = vec![
        r.key.proto().name(),
        r.key.src().to_string(),
        r.key.dst().to_string(),
        r.packets.to_string(),
        r.bytes.to_string(),
    ];
    if with_hash {
        c.push(r.hash.map_or("-".to_string(), |h| format!("0x{h:08x}")));
    }
    let streams: Vec<String> = r
        .streams
        .iter()
        .map(|&(id, n)| format!("{}:{n}", label(id)))
        .collect();
    c.push(streams.join(" "));
    if with_expected {
        match r.expected {
            Some(e) => {
                c.push(e.stream.map_or("-".to_string(), label));
                c.push(e.by.as_str().to_string());
            }
            None => c.extend([String::new(), String::new()]),
        }
    }
    let mut marks = Vec::new();
    if r.unexpected() {
        marks.push(UNEXPECTED);
    }
    if r.split() {
        marks.push(SPLIT);
    }
    if r.hash_changed {
        marks.push(REHASHED);
    }
    c.push(marks.join(" "));
    c
}

fn summary(out: &mut String, flows: &Flows, label: &dyn Fn(u32) -> String) {
    let _ = writeln!(
        out,
        "{} seen, {} on more than one stream ({SPLIT}).",
        count(flows.records.len() as u64, "flow"),
        flows.split_count()
    );
    if flows.expectations_made() {
        // Only flows with an expected stream were checked: say so when
        // some (or all) had none, rather than count them as on it.
        let predicted = flows.predicted_count();
        let unpredicted = flows.records.len() - predicted;
        if predicted == 0 {
            let _ = writeln!(out, "{NOTHING_PREDICTED}");
        } else {
            let _ = writeln!(
                out,
                "{} off the expected stream ({UNEXPECTED}).",
                count(flows.unexpected_count() as u64, "flow")
            );
            if unpredicted > 0 {
                let _ = writeln!(
                    out,
                    "{} with no expected stream (EXPECTED -).",
                    count(unpredicted as u64, "flow")
                );
            }
        }
    }
    let rehashed = flows.hash_changed_count();
    if rehashed > 0 {
        let _ = writeln!(
            out,
            "{} changed hash during the capture ({REHASHED}).",
            count(rehashed as u64, "flow")
        );
    }
    let total = flows.packets();
    for s in &flows.streams {
        let _ = writeln!(
            out,
            "{}: {}, {} ({}).",
            label(s.stream),
            count(s.flows, "flow"),
            count(s.packets, "packet"),
            percent(s.packets, total)
        );
    }
    if flows.untracked_packets > 0 {
        let _ = writeln!(
            out,
            "{} ({}) of flows past the limit of {} not tracked.",
            count(flows.untracked_packets, "packet"),
            count(flows.untracked_bytes, "byte"),
            count(flows.max_flows, "flow")
        );
    }
}

/// `1 flow`, `2 flows`.
fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `n` of `total` with one decimal, `0.0%` of nothing.
fn percent(n: u64, total: u64) -> String {
    if total == 0 {
        return "0.0%".to_string();
    }
    // In tenths of a percent, rounded half up, in integers: exact for any
    // count (no f64 rounding of 50.05 to 50.0).
    let tenths = (u128::from(n) * 2000 + u128::from(total)) / (2 * u128::from(total));
    format!("{}.{}%", tenths / 10, tenths % 10)
}
