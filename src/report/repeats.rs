//! `--repeats` in the text report: the repeating packets, most copies
//! first, then one line per stream that carried any. Nothing when
//! nothing repeated.

use std::fmt::Write as _;

use crate::consumers::flows::text::columns;
use crate::consumers::repeats::{Repeat, Repeats};
use crate::packet::LinkType;
use crate::sys::host::local_fields;

/// Rows listed in the text report; `--json` lists every one.
pub const ROWS: usize = 20;

/// What the report needs of `--repeats`.
pub struct Found {
    pub repeats: Repeats,
    /// The capture's link type, for the decode lines.
    pub link: LinkType,
    /// The MIN in force.
    pub min: u64,
}

/// The table and the per-stream lines. `label` names a stream in the
/// STREAMS column (`cpu1:50000`), `place` says where it is in a line's
/// words (`on cpu1`). Columns as the flow table's: numbers
/// right-aligned, two spaces apart, no trailing blanks.
pub fn text(found: &Found, label: &dyn Fn(u32) -> String, place: &dyn Fn(u32) -> String) -> String {
    let r = &found.repeats;
    let mut out = String::new();
    if r.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "Packets repeating on a stream ({} copies or more):",
        found.min
    );
    let mut cells: Vec<Vec<String>> =
        vec![["COPIES", "RATE/S", "FIRST", "LAST", "STREAMS", "PACKET"]
            .map(String::from)
            .to_vec()];
    for p in r.packets.iter().take(ROWS) {
        cells.push(row(p, found.link, label).to_vec());
    }
    // COPIES and RATE/S are numbers.
    let right = [true, true, false, false, false, false];
    out.push_str(&columns(&cells, &right, 2));
    if r.packets.len() > ROWS {
        let _ = writeln!(
            out,
            "{} more repeating packets not listed (--json lists them all).",
            r.packets.len() - ROWS
        );
    }
    for &(stream, t) in &r.streams {
        if t.repeated == 0 {
            continue;
        }
        let n = r.repeating_on(stream);
        let copies = if t.repeated == 1 { "copy" } else { "copies" };
        let _ = writeln!(
            out,
            "{} repeated {copies} {} ({}, {:.1}% of its packets).",
            t.repeated,
            place(stream),
            super::count(n, "packet"),
            t.percent()
        );
    }
    out
}

fn row(p: &Repeat, link: LinkType, label: &dyn Fn(u32) -> String) -> [String; 6] {
    [
        p.copies.to_string(),
        p.rate()
            .map_or_else(|| "-".to_string(), |r| format!("{r:.0}")),
        clock(p.first),
        clock(p.last),
        p.streams
            .iter()
            .map(|&(s, n)| format!("{}:{n}", label(s)))
            .collect::<Vec<_>>()
            .join(" "),
        p.summary(link),
    ]
}

/// tcpdump's time of day: `14:02:03.123456`, local time.
pub fn clock((sec, nsec): (u32, u32)) -> String {
    let [_, _, _, h, m, s] = local_fields(i64::from(sec)).unwrap_or([0; 6]);
    format!("{h:02}:{m:02}:{s:02}.{:06}", nsec / 1000)
}
