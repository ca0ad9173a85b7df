//! The end-of-capture report.

use std::fmt::Write as _;

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
            let _ = writeln!(out, "{} packets dropped by kernel {}.", s.drops, s.place);
        }
        if s.unread > 0 {
            let _ = writeln!(
                out,
                "{} packets left unread in the ring {}.",
                s.unread, s.place
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
            },
            StreamCount {
                place: "on cpu1".into(),
                packets: 0,
                drops: 3,
                unread: 2,
            },
        ];
        assert_eq!(
            counts(&c),
            "12 packets captured on cpu0.\n0 packets captured on cpu1.\n12 packets captured total.\n"
        );
        assert_eq!(
            drops(&c),
            "3 packets dropped by kernel on cpu1.\n2 packets left unread in the ring on cpu1.\n"
        );
        let q = [StreamCount {
            place: "with no receive queue recorded".into(),
            packets: 5,
            drops: 1,
            unread: 0,
        }];
        assert_eq!(
            counts(&q),
            "5 packets captured with no receive queue recorded.\n5 packets captured total.\n"
        );
        assert_eq!(
            drops(&q),
            "1 packets dropped by kernel with no receive queue recorded.\n"
        );
    }
}
