//! The end-of-capture report: the contract's lines (or one JSON object
//! with `--json`), the flow table with `--flows`, and on stderr the lines
//! about packets that are not in it (kernel drops, files rotated away).

use std::fmt::Write as _;
use std::io::Write as _;

pub mod repeats;

use crate::consumers::flows::{self, Flows};
use crate::consumers::repeats::json::{RepeatJson, RepeatSummaryJson};
use crate::options::Options;
use crate::vantage::Plan;

/// Everything the report says.
#[derive(Default)]
pub struct Report {
    /// Per captured stream, in order.
    pub streams: Vec<StreamCount>,
    /// Lines for stderr before the report (files rotated away).
    pub notes: Vec<String>,
    /// Per stream slot, with `-W`: the files its ring overwrote and the
    /// packets they held (for `--json`; the notes say it in words).
    pub rotated_away: Vec<Option<(u64, u64)>>,
    /// The same for the merged file (`--pcapng`), which rotates as one.
    pub merged_rotated_away: Option<(u64, u64)>,
    /// The -G -W file limit ended the capture.
    pub file_limit: bool,
    /// With `--flows`.
    pub flows: Option<Flows>,
    /// With `--repeats`.
    pub repeats: Option<repeats::Found>,
    /// With `--drops`: the kernel's drops on the interface.
    pub kernel_drops: Option<Vec<KernelDrop>>,
    /// Lines for stderr after those: what the interface's drop counters
    /// (and with `--drops` each cpu's softnet_stat) counted meanwhile.
    pub counter_drops: Vec<String>,
    /// The same for `--json` (`device_drops`, `softnet`).
    pub counter_json: serde_json::Map<String, serde_json::Value>,
}

/// Packets the kernel dropped on one cpu for one reason (`--drops`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelDrop {
    /// The stream of the cpu that dropped them: the cpu itself in the cpu
    /// vantage, its node in the numa vantage; null in the queue vantage
    /// (a drop has no queue) or for a cpu not captured.
    pub stream: Option<u32>,
    pub cpu: u32,
    /// The kernel's name of the reason (`NO_SOCKET`, `SOCKET_RCVBUFF`).
    pub reason: String,
    /// False for packets received on the interface's number whose
    /// namespace the kernel no longer knew when it dropped them: maybe
    /// another namespace's interface of the same number.
    pub namespace_known: bool,
    pub packets: u64,
}

/// The `--drops` lines for stderr, after the capture's own drop lines:
/// `412 packets dropped by the kernel on cpu1: CPU_BACKLOG.`
pub fn kernel_drop_lines(drops: &[KernelDrop], interface: &str) -> String {
    let mut out = String::new();
    for d in drops {
        let maybe = if d.namespace_known {
            String::new()
        } else {
            format!(" (received on {interface}'s number, namespace unknown)")
        };
        let _ = writeln!(
            out,
            "{} dropped by the kernel on cpu{}{maybe}: {}.",
            count(d.packets, "packet"),
            d.cpu,
            d.reason
        );
    }
    out
}

impl Report {
    /// Takes what closing the merged file left: its notes (packets out
    /// of order, files rotated away) and the -G -W file limit. Returns
    /// the exit status it asks for.
    pub fn take_merged(&mut self, c: &crate::consumers::merged::Closed) -> i32 {
        if c.late > 0 {
            self.notes.push(format!(
                "{} written out of timestamp order in the merged file.",
                count(c.late, "packet")
            ));
        }
        if c.rotated_away > 0 {
            self.merged_rotated_away = Some((c.rotated_away, c.records_lost));
            self.notes.push(format!(
                "{} in {} rotated away.",
                count(c.records_lost, "packet"),
                count(c.rotated_away, "file")
            ));
        }
        self.file_limit |= c.limit_reached;
        c.status
    }

    /// Takes what a stream's consumers left (its place in the report's
    /// words): notes for files the -W ring overwrote, the -G -W file
    /// limit. Returns the stream's flow table.
    pub fn take_leftovers(
        &mut self,
        slot: usize,
        place: &str,
        l: crate::consumers::Leftovers,
    ) -> Option<crate::consumers::flows::FlowTable> {
        let (files, records) = l.rotated_away;
        if files > 0 {
            if self.rotated_away.len() <= slot {
                self.rotated_away.resize(slot + 1, None);
            }
            self.rotated_away[slot] = Some((files, records));
            self.notes.push(format!(
                "{} in {} rotated away {place}.",
                count(records, "packet"),
                count(files, "file")
            ));
        }
        self.file_limit |= l.file_limit;
        l.flows
    }
}

/// Prints the report: stderr lines first, then the report on stdout (on
/// stderr with `-w -` or another name of stdout, where stdout carries the
/// packets). Returns 1 if it
/// could not be written.
pub fn print(opts: &Options, plan: &Plan, report: &Report) -> i32 {
    let mut lines = drops(&report.streams);
    if let Some(k) = &report.kernel_drops {
        lines.push_str(&kernel_drop_lines(
            k,
            opts.interface.as_deref().unwrap_or("any"),
        ));
    }
    for line in &report.counter_drops {
        let _ = writeln!(lines, "{line}");
    }
    for note in &report.notes {
        let _ = writeln!(lines, "{note}");
    }
    if report.file_limit {
        let files = opts.rotation.count.unwrap_or(0);
        let _ = writeln!(lines, "{}: maximum file limit reached: {files}", opts.name);
    }
    err!("{lines}");
    // Flow tables know streams by their ids (crate::vantage::NO_ID for
    // the no-queue stream).
    let label = |id: u32| crate::vantage::short_label(plan.vantage, id);
    let id = |id: u32| (id != crate::vantage::NO_ID).then_some(id);
    let rows = opts.flows.unwrap_or(0);
    let text =
        if opts.json {
            let total = report.streams.iter().map(|s| s.packets).sum();
            let streams =
                report
                    .streams
                    .iter()
                    .zip(&plan.streams)
                    .enumerate()
                    .map(|(slot, (c, s))| flows::json::StreamJson {
                        id: s.id(),
                        name: s.short_label(),
                        captured: c.packets,
                        dropped: c.drops,
                        rotated_away: report.rotated_away.get(slot).copied().flatten().map(
                            |(files, packets)| flows::json::RotatedAwayJson { files, packets },
                        ),
                    })
                    .collect();
            let mut json = flows::json::Report::new(
                plan.vantage.as_str(),
                opts.interface.as_deref(),
                opts.direction.as_str(),
                streams,
                total,
            );
            if let Some(f) = &report.flows {
                json = json.with_flows(f, rows, &id, &label);
            }
            if let Some(found) = &report.repeats {
                let r = &found.repeats;
                json.repeats = Some(
                    r.packets
                        .iter()
                        .map(|p| RepeatJson::new(p, found.link, &id, &label))
                        .collect(),
                );
                json.repeat_summary = Some(RepeatSummaryJson::new(r, found.min, &id, &label));
            }
            if let Some((files, packets)) = report.merged_rotated_away {
                json.more.insert(
                    "merged_file".into(),
                    serde_json::json!({"rotated_away": {"files": files, "packets": packets}}),
                );
            }
            json.more.extend(report.counter_json.clone());
            if let Some(k) = &report.kernel_drops {
                json.more.insert(
                    "kernel_drops".into(),
                    serde_json::to_value(k).unwrap_or_default(),
                );
            }
            json.to_json()
        } else {
            let mut text = counts(&report.streams);
            if let Some(f) = &report.flows {
                // On a terminal the table fits its width; a file or a pipe
                // (scripts) gets it whole.
                let fd = match opts.write.as_deref() {
                    Some("-") => libc::STDERR_FILENO,
                    _ => libc::STDOUT_FILENO,
                };
                let width = crate::sys::term::columns(fd);
                text.push_str(&flows::text::table_fit(f, rows, &label, width));
            }
            if let Some(found) = &report.repeats {
                let place = |id: u32| {
                    plan.streams
                        .iter()
                        .find(|s| s.flow_id() == id)
                        .map_or_else(|| label(id), |s| s.place())
                };
                text.push_str(&repeats::text(found, &label, &place));
            }
            text
        };
    if opts
        .write
        .as_deref()
        .is_some_and(crate::consumers::destination::writes_stdout)
    {
        err!("{text}");
        return 0;
    }
    to_stdout(&opts.name, &text)
}

/// Writes `text` (the report, the help, `--rss-hash`'s answer) to stdout;
/// returns the exit status it leaves. A full disk (`> /dev/full`) is a
/// runtime failure with its one line, never a silent status (or a 0 with
/// nothing written); a reader that went away (`| head -1`) is not, as for
/// the reader of `-w -`.
pub fn to_stdout(name: &str, text: &str) -> i32 {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            errln!("{name}: error writing stdout: {}", crate::error::Why(e));
            1
        }
    }
}

/// What one stream's worker saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamCount {
    /// Where its packets were, as the report says it: `on cpu0`, `on queue
    /// 2`, `on numa node 0`, `with no receive queue recorded`.
    pub place: String,
    /// Packets captured (and written, with -w).
    pub packets: u64,
    /// Packets the kernel dropped because the ring was full.
    pub drops: u64,
    /// Packets the kernel accepted but did not hand over before the end.
    pub unread: u64,
    /// Packets the XDP program could not hand over (its perf buffer was
    /// full).
    pub lost: u64,
}

/// `1 packet`, `2 packets`: for the lines outside the contract's report,
/// whose `N packets captured` stays as the original wrote it for every N.
pub fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The contract's report: one line per captured stream in order, then the
/// total. Goes to stdout (stderr with `-w -`).
pub fn counts(streams: &[StreamCount]) -> String {
    let mut out = String::new();
    let mut total = 0u64;
    for s in streams {
        total += s.packets;
        let _ = writeln!(out, "{} packets captured {}.", s.packets, s.place);
    }
    let _ = writeln!(out, "{total} packets captured total.");
    out
}

/// Lines for stderr about packets that are not in the report: kernel
/// drops, and (should it ever happen) packets left in the ring at the end.
/// Empty when every packet was captured.
pub fn drops(streams: &[StreamCount]) -> String {
    let mut out = String::new();
    for s in streams {
        if s.drops > 0 {
            let _ = writeln!(
                out,
                "{} dropped by kernel {}.",
                count(s.drops, "packet"),
                s.place
            );
        }
        if s.lost > 0 {
            let _ = writeln!(out, "{} dropped {}.", count(s.lost, "packet"), s.place);
        }
        if s.unread > 0 {
            let _ = writeln!(
                out,
                "{} left unread in the ring {}.",
                count(s.unread, "packet"),
                s.place
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format() {
        let c = [
            StreamCount {
                place: "on cpu0".into(),
                packets: 12,
                drops: 0,
                unread: 0,
                lost: 0,
            },
            StreamCount {
                place: "on cpu1".into(),
                packets: 0,
                drops: 3,
                unread: 2,
                lost: 4,
            },
        ];
        assert_eq!(
            counts(&c),
            "12 packets captured on cpu0.\n0 packets captured on cpu1.\n12 packets captured total.\n"
        );
        assert_eq!(
            drops(&c),
            "3 packets dropped by kernel on cpu1.\n4 packets dropped on cpu1.\n\
             2 packets left unread in the ring on cpu1.\n"
        );
        let q = [StreamCount {
            place: "with no receive queue recorded".into(),
            packets: 5,
            drops: 1,
            unread: 0,
            lost: 0,
        }];
        assert_eq!(
            counts(&q),
            "5 packets captured with no receive queue recorded.\n5 packets captured total.\n"
        );
        assert_eq!(
            drops(&q),
            "1 packet dropped by kernel with no receive queue recorded.\n"
        );
        // The contract's line keeps its plural.
        let one = [StreamCount {
            place: "on cpu0".into(),
            packets: 1,
            unread: 1,
            lost: 1,
            ..StreamCount::default()
        }];
        assert_eq!(
            counts(&one),
            "1 packets captured on cpu0.\n1 packets captured total.\n"
        );
        assert_eq!(
            drops(&one),
            "1 packet dropped on cpu0.\n1 packet left unread in the ring on cpu0.\n"
        );
        let mut r = Report::default();
        r.take_leftovers(
            0,
            "on cpu0",
            crate::consumers::Leftovers {
                rotated_away: (1, 686),
                ..Default::default()
            },
        );
        assert_eq!(r.notes, ["686 packets in 1 file rotated away on cpu0."]);
        assert_eq!(r.rotated_away, [Some((1, 686))]);
        assert_eq!(r.merged_rotated_away, None);
        let status = r.take_merged(&crate::consumers::merged::Closed {
            rotated_away: 4,
            records_lost: 3712,
            ..Default::default()
        });
        assert_eq!(status, 0);
        assert_eq!(r.notes[1], "3712 packets in 4 files rotated away.");
        assert_eq!(r.merged_rotated_away, Some((4, 3712)));
    }
}
