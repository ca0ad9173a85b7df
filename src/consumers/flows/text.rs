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
/// the mechanism) when one has an expectation, DROPS (the kernel's drops
/// per reason, `--drops`) when one had drops; marks (UNEXPECTED, SPLIT,
/// REHASHED) end the row. Text columns are left-aligned, numbers right-aligned, two spaces
/// apart, no trailing blanks.
#[cfg(test)]
pub fn table(flows: &Flows, limit: usize, label: &dyn Fn(u32) -> String) -> String {
    table_fit(flows, limit, label, None)
}

/// [`table`], fit to a terminal `width` columns wide if it is wider than
/// that (None: full width, for files and pipes): shorter headers (SRC,
/// DST, PKTS, EXP), one space between columns, then the addresses
/// shortened in their middle around [`ELISION`].
pub fn table_fit(
    flows: &Flows,
    limit: usize,
    label: &dyn Fn(u32) -> String,
    width: Option<usize>,
) -> String {
    let rows = flows.rows(limit);
    let mut out = String::new();
    if !rows.is_empty() {
        let with_hash = rows.iter().any(|r| r.hash.is_some());
        let with_expected = rows.iter().any(|r| r.expected.is_some());
        let with_repeated = flows.repeats && rows.iter().any(|r| r.repeated > 0);
        let with_drops = rows.iter().any(|r| !flows.drops_of(r).is_empty());
        let with_path = flows.path.is_some();
        let mut cells: Vec<Vec<String>> = Vec::with_capacity(rows.len() + 1);
        let mut header = vec!["PROTO", "SOURCE", "DESTINATION", "PACKETS", "BYTES"];
        let mut right = vec![false, false, false, true, true];
        if with_repeated {
            header.push("REPEATED");
            right.push(true);
        }
        if with_hash {
            header.push("HASH");
            right.push(false);
        }
        if with_path {
            header.extend(["QUEUE", "DRIVER"]);
            right.extend([false, false]);
        }
        header.push("STREAMS");
        right.push(false);
        if with_path {
            header.extend(["APP", "PROCESS"]);
            right.extend([false, false]);
        }
        if with_expected {
            header.push("EXPECTED");
            right.push(false);
            header.push("BY");
            right.push(false);
        }
        if with_drops {
            header.push("DROPS");
            right.push(false);
        }
        header.push("");
        right.push(false);
        cells.push(header.iter().map(|s| s.to_string()).collect());
        for r in &rows {
            let mut c = row(
                r,
                flows.path_of(r),
                with_hash,
                with_expected,
                with_repeated,
                with_path,
                label,
            );
            if with_drops {
                c.insert(c.len() - 1, super::drops::cell(flows.drops_of(r)));
            }
            cells.push(c);
        }
        let gap = match width {
            Some(w) if line_width(&cells, 2) > w => fit(&mut cells, w),
            _ => 2,
        };
        out.push_str(&columns(&cells, &right, gap));
        let more = flows.records.len() - rows.len();
        if more > 0 {
            let _ = writeln!(out, "{} not listed.", count(more as u64, "more flow"));
        }
    }
    summary(&mut out, flows, label);
    if let Some(p) = &flows.path {
        out.push_str(&super::path::summary_text(p));
    }
    out
}

/// `cells` (the header row first) in columns `gap` spaces apart, those
/// marked in `right` right-aligned (numbers), the others left-aligned;
/// no trailing blanks, a newline after each line. The report's other
/// tables (`--repeats`) are laid out the same.
pub fn columns(cells: &[Vec<String>], right: &[bool], gap: usize) -> String {
    let mut widths = vec![0usize; right.len()];
    for c in cells {
        for (w, s) in widths.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let mut out = String::new();
    for c in cells {
        let mut line = String::new();
        for (i, s) in c.iter().enumerate() {
            if i > 0 {
                line.push_str(&" ".repeat(gap));
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
    out
}

/// What marks an address shortened in its middle to fit a terminal.
pub const ELISION: char = '~';

/// The narrowest an address column gets on a terminal.
const MIN_ADDRESS: usize = 9;

/// The widest line of `cells` (the header first) laid out `gap` spaces
/// apart, without trailing blanks.
fn line_width(cells: &[Vec<String>], gap: usize) -> usize {
    let columns = cells.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    // The last column is not padded: a line ends where its last cell does.
    let used: Vec<usize> = widths.iter().copied().filter(|&w| w > 0).collect();
    used.iter().sum::<usize>() + gap * used.len().saturating_sub(1)
}

/// Fits the table to `width` columns (a terminal that would wrap it):
/// shorter headers (SRC, DST, PKTS, EXP), one space between columns, then
/// source and destination shortened in the middle, with [`ELISION`]
/// where characters were left out, the longer of the two first, down to
/// [`MIN_ADDRESS`] each. Returns the gap. A row still wider than the
/// terminal (a flow on many streams) wraps: nothing else is cut.
fn fit(cells: &mut [Vec<String>], width: usize) -> usize {
    for h in cells[0].iter_mut() {
        let short = match h.as_str() {
            "SOURCE" => "SRC",
            "DESTINATION" => "DST",
            "PACKETS" => "PKTS",
            "REPEATED" => "REP",
            "EXPECTED" => "EXP",
            other => other,
        };
        *h = short.to_string();
    }
    let gap = 1;
    let column = |cells: &[Vec<String>], i: usize| {
        cells
            .iter()
            .map(|c| c[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (mut src, mut dst) = (column(cells, 1), column(cells, 2));
    let mut excess = line_width(cells, gap).saturating_sub(width);
    while excess > 0 && (src > MIN_ADDRESS || dst > MIN_ADDRESS) {
        if src >= dst && src > MIN_ADDRESS || dst <= MIN_ADDRESS {
            src -= 1;
        } else {
            dst -= 1;
        }
        excess -= 1;
    }
    for c in cells.iter_mut().skip(1) {
        c[1] = elide(&c[1], src);
        c[2] = elide(&c[2], dst);
    }
    gap
}

/// `s` in at most `width` characters: as is if it fits, else its start
/// and its end around [`ELISION`]: `192.0.2~:40000`. The port, with its
/// colon, is kept whole while there is room for a character of the
/// address before it (`19~:40000`, not `192.~0000`).
pub fn elide(s: &str, width: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= width || width == 0 {
        return s.to_string();
    }
    let port = s
        .rfind(':')
        .map(|i| &s[i + 1..])
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(0, |p| p.len() + 1);
    let mut head = (width - 1) / 2;
    let mut tail = width - 1 - head;
    if tail < port && width >= port + 2 {
        tail = port;
        head = width - 1 - tail;
    }
    let mut out: String = chars[..head].iter().collect();
    out.push(ELISION);
    out.extend(&chars[chars.len() - tail..]);
    out
}

fn row(
    r: &FlowRecord,
    path: Option<&super::path::FlowPath>,
    with_hash: bool,
    with_expected: bool,
    with_repeated: bool,
    with_path: bool,
    label: &dyn Fn(u32) -> String,
) -> Vec<String> {
    let (before, after) = super::path::columns(path);
    let mut c = vec![
        r.key.proto().name(),
        r.key.src().to_string(),
        r.key.dst().to_string(),
        r.packets.to_string(),
        r.bytes.to_string(),
    ];
    if with_repeated {
        c.push(r.repeated.to_string());
    }
    if with_hash {
        c.push(r.hash.map_or("-".to_string(), |h| format!("0x{h:08x}")));
    }
    let streams: Vec<String> = r
        .streams
        .iter()
        .map(|&(id, n)| format!("{}:{n}", label(id)))
        .collect();
    if with_path {
        c.extend(before);
    }
    c.push(streams.join(" "));
    if with_path {
        c.extend(after);
    }
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
    if let Some(p) = path {
        marks.extend(p.mismatches.iter().copied());
    }
    c.push(marks.join(" "));
    c
}

fn summary(out: &mut String, flows: &Flows, label: &dyn Fn(u32) -> String) {
    let _ = writeln!(
        out,
        "{} seen, {} on more than one stream ({SPLIT}).",
        count(flows.seen_count() as u64, "flow"),
        flows.split_count()
    );
    if flows.expectations_made() {
        // Only flows with an expected stream were checked: say so when
        // some (or all) had none, rather than count them as on it.
        let predicted = flows.predicted_count();
        let unpredicted = flows.seen_count().saturating_sub(predicted);
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
    if flows.path.is_some() {
        let _ = writeln!(
            out,
            "{} off the steering configuration at a stage (RSS, RPS, RFS, XPS).",
            count(flows.mismatched_count() as u64, "flow")
        );
    }
    if let Some((idle, n, packets)) = flows.expired.filter(|e| e.1 > 0) {
        let _ = writeln!(
            out,
            "{} expired after {idle} s idle, with {} (not listed).",
            count(n, "flow"),
            count(packets, "packet")
        );
    }
    if let Some(unkeyed) = flows.drops.as_ref().map(|d| d.unkeyed) {
        let (dropped, uncaptured) = flows.dropped_count();
        let _ = write!(
            out,
            "{} with packets dropped by the kernel (DROPS)",
            count(dropped as u64, "flow")
        );
        if uncaptured > 0 {
            let _ = write!(out, ", {uncaptured} of them not captured");
        }
        let _ = writeln!(out, ".");
        if unkeyed.overflow > 0 {
            let _ = writeln!(
                out,
                "{} dropped by the kernel with no flow: the probe's table of {} flows and reasons was full.",
                count(unkeyed.overflow, "packet"),
                unkeyed.map_entries
            );
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
pub(super) fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `n` of `total` with one decimal, `0.0%` of nothing.
pub(super) fn percent(n: u64, total: u64) -> String {
    if total == 0 {
        return "0.0%".to_string();
    }
    // In tenths of a percent, rounded half up, in integers: exact for any
    // count (no f64 rounding of 50.05 to 50.0).
    let tenths = (u128::from(n) * 2000 + u128::from(total)) / (2 * u128::from(total));
    format!("{}.{}%", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod fit_tests {
    use super::*;

    #[test]
    fn elision_keeps_both_ends() {
        assert_eq!(elide("192.0.2.1:40000", 15), "192.0.2.1:40000");
        assert_eq!(elide("192.0.2.1:40000", 12), "192.0~:40000");
        assert_eq!(elide("192.0.2.1:40000", 9), "19~:40000");
        assert_eq!(elide("127.0.0.1:34968", 11), "127.~:34968");
        // No room for the port and an address character: both ends.
        assert_eq!(elide("192.0.2.1:40000", 7), "192~000");
        assert_eq!(elide("[2001:db8::1]:443", 14), "[2001:~:1]:443");
    }

    #[test]
    fn a_wide_table_fits_80_columns() {
        let header = [
            "PROTO",
            "SOURCE",
            "DESTINATION",
            "PACKETS",
            "BYTES",
            "HASH",
            "STREAMS",
            "EXPECTED",
            "BY",
            "",
        ];
        let row = |src: &str, bytes: &str, streams: &str, marks: &str| {
            let r = [
                "udp",
                src,
                "192.0.2.2:9999",
                "3",
                bytes,
                "0x37f05759",
                streams,
                "cpu0",
                "rps",
                marks,
            ];
            r.map(String::from).to_vec()
        };
        // README's RPS example with a flow off its stream: 103 wide.
        let mut cells = vec![
            header.map(String::from).to_vec(),
            row("192.0.2.1:40000", "189", "cpu1:3", "UNEXPECTED"),
            row("192.0.2.1:40001", "189", "cpu0:3", ""),
        ];
        assert_eq!(line_width(&cells, 2), 102);
        assert_eq!(fit(&mut cells, 80), 1);
        assert_eq!(line_width(&cells, 1), 80);
        assert_eq!(cells[0][1..4], ["SRC", "DST", "PKTS"]);
        assert_eq!(cells[1][1..3], ["192.~:40000", "192.0~2:9999"]);
        // Too wide even so (big counts, many streams, every mark): the
        // addresses go down to their narrowest, the rest stays whole.
        let mut cells = vec![
            header.map(String::from).to_vec(),
            row(
                "192.0.2.1:40000",
                "123456789",
                "cpu0:3 cpu1:3 cpu2:3",
                "UNEXPECTED SPLIT",
            ),
        ];
        fit(&mut cells, 80);
        assert_eq!(cells[1][1..3], ["19~:40000", "192~:9999"]);
        assert_eq!(
            cells[1][4..],
            row("", "123456789", "cpu0:3 cpu1:3 cpu2:3", "UNEXPECTED SPLIT")[4..]
        );
    }
}
