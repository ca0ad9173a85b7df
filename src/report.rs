//! The end-of-capture report.

use std::fmt::Write as _;

/// What one cpu's worker saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuCount {
    pub cpu: u32,
    /// Packets captured (and written, with -w).
    pub packets: u64,
    /// Packets the kernel dropped because the ring was full.
    pub drops: u64,
    /// Packets the kernel accepted but did not hand over before the end.
    pub unread: u64,
}

/// The contract's report: one line per captured cpu in ascending order,
/// then the total. Goes to stdout (stderr with `-w -`).
pub fn counts(cpus: &[CpuCount]) -> String {
    let mut out = String::new();
    let mut total = 0u64;
    for c in cpus {
        total += c.packets;
        let _ = writeln!(out, "{} packets captured on cpu{}.", c.packets, c.cpu);
    }
    let _ = writeln!(out, "{total} packets captured total.");
    out
}

/// Lines for stderr about packets that are not in the report: kernel
/// drops, and (should it ever happen) packets left in the ring at the end.
/// Empty when every packet was captured.
pub fn drops(cpus: &[CpuCount]) -> String {
    let mut out = String::new();
    for c in cpus {
        if c.drops > 0 {
            let _ = writeln!(
                out,
                "{} packets dropped by kernel on cpu{}.",
                c.drops, c.cpu
            );
        }
        if c.unread > 0 {
            let _ = writeln!(
                out,
                "{} packets left unread in the ring on cpu{}.",
                c.unread, c.cpu
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
            CpuCount {
                cpu: 0,
                packets: 12,
                drops: 0,
                unread: 0,
            },
            CpuCount {
                cpu: 1,
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
    }
}
