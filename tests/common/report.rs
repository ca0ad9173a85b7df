//! The report on stdout, parsed: per-stream counts, drops and the places
//! they name.

use std::collections::BTreeMap;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// `N packets captured on cpuK.` lines.
    pub per_cpu: BTreeMap<u32, u64>,
    /// `N packets captured on queue K.` lines.
    pub per_queue: BTreeMap<u32, u64>,
    /// `N packets captured on numa node K.` lines.
    pub per_node: BTreeMap<u32, u64>,
    /// The `N packets captured with no receive queue recorded.` line.
    pub no_queue: Option<u64>,
    pub total: u64,
}

/// The stream a report, drop or file line names: `cpu3`, `queue 2`,
/// `numa node 0`, or the no-queue stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Place {
    Cpu(u32),
    Queue(u32),
    Node(u32),
    NoQueue,
}

impl Place {
    /// Parses what follows `captured ` / `dropped by kernel ` in a line,
    /// without the final dot: `on cpu3`, `on queue 2`, `on numa node 0`,
    /// `with no receive queue recorded`. Exact: no other spelling passes.
    pub fn parse(s: &str) -> Option<Place> {
        let num = |p: &str| -> Option<u32> {
            let n: u32 = p.parse().ok()?;
            (n.to_string() == p).then_some(n)
        };
        if s == "with no receive queue recorded" {
            return Some(Place::NoQueue);
        }
        let s = s.strip_prefix("on ")?;
        if let Some(n) = s.strip_prefix("numa node ") {
            return num(n).map(Place::Node);
        }
        if let Some(n) = s.strip_prefix("queue ") {
            return num(n).map(Place::Queue);
        }
        num(s.strip_prefix("cpu")?).map(Place::Cpu)
    }
}

impl Report {
    /// Parses `N packets captured on cpuX.` lines (or `on queue X`, `on
    /// numa node X`, in ascending order, one kind only, the no-queue line
    /// last) followed by `N packets captured total.`, which must be their
    /// sum, and nothing else.
    pub fn parse(text: &str) -> Result<Report, String> {
        let body = text.strip_suffix('\n').ok_or("no final newline")?;
        let mut lines: Vec<&str> = body.split('\n').collect();
        let last = lines.pop().unwrap();
        let total: u64 = last
            .strip_suffix(" packets captured total.")
            .and_then(|n| n.parse().ok())
            .filter(|n: &u64| format!("{n} packets captured total.") == last)
            .ok_or(format!("bad total line {last:?}"))?;
        let mut report = Report {
            total,
            ..Report::default()
        };
        let mut prev: Option<Place> = None;
        let mut sum = 0;
        for line in lines {
            let parsed = line.split_once(" packets captured ").and_then(|(n, rest)| {
                let n: u64 = n.parse().ok().filter(|v: &u64| v.to_string() == n)?;
                Some((Place::parse(rest.strip_suffix('.')?)?, n))
            });
            let (place, n) = parsed.ok_or(format!("bad stream line {line:?}"))?;
            let same_kind =
                |a: Place, b: Place| std::mem::discriminant(&a) == std::mem::discriminant(&b);
            if let Some(p) = prev {
                let ok = match (p, place) {
                    (Place::Queue(_), Place::NoQueue) => true,
                    (Place::NoQueue, _) => false,
                    (a, b) => same_kind(a, b) && a < b,
                };
                if !ok {
                    return Err(format!("stream lines out of order at {line:?}"));
                }
            }
            prev = Some(place);
            sum += n;
            match place {
                Place::Cpu(c) => report.per_cpu.insert(c, n),
                Place::Queue(q) => report.per_queue.insert(q, n),
                Place::Node(k) => report.per_node.insert(k, n),
                Place::NoQueue => report.no_queue.replace(n),
            };
        }
        if sum != total {
            return Err(format!("stream lines add up to {sum}, total says {total}"));
        }
        Ok(report)
    }
}

/// The row of the `--flows` text table (the lines under its `PROTO`
/// header) whose whitespace-separated cells `matches`, as header -> cell.
/// Panics with the whole output when there is no table or no such row.
pub fn flow_row(stdout: &str, matches: impl Fn(&[&str]) -> bool) -> BTreeMap<String, String> {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with("PROTO"));
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_else(|| panic!("no flow table: {stdout}"))
        .split_whitespace()
        .collect();
    let row: Vec<&str> = lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| matches(cells))
        .unwrap_or_else(|| panic!("no such flow row: {stdout}"));
    header
        .iter()
        .zip(row)
        .map(|(h, c)| (h.to_string(), c.to_string()))
        .collect()
}

/// The line after a failed write as the program words it:
/// `N captured packets on cpu0 are not in the file`, `1 captured packet
/// ... is` (`place` empty for the merged file).
pub fn not_in_file_line(n: u64, place: &str) -> String {
    let place = if place.is_empty() {
        String::new()
    } else {
        format!(" {place}")
    };
    match n {
        1 => format!("1 captured packet{place} is not in the file"),
        n => format!("{n} captured packets{place} are not in the file"),
    }
}
