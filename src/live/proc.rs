//! Per-cpu network softirq counters from /proc, for the cpu vantage.
//!
//! - `/proc/softirqs`: how many times each softirq ran on each cpu. The
//!   header lists one `CPUn` column per *possible* cpu (offline ones
//!   included, with frozen counts); the counts are the kernel's per-cpu
//!   `unsigned int`s, so they wrap at 2^32 (about 70 minutes at a million
//!   softirqs per second): deltas go through [`counter_delta`].
//! - `/proc/stat`: a `cpuN` line per *online* cpu with its time in USER_HZ
//!   ticks: user nice system idle iowait irq softirq steal guest
//!   guest_nice. softirq is the 7th; guest and guest_nice are already
//!   counted in user and nice, so the cpu's total is the first eight.
//!
//! [`CpuReader`] keeps both files open and reads each once per call from
//! offset 0 (a seq_file regenerates its text on a read from the start),
//! into one reused buffer.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// One cpu's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuSample {
    pub cpu: u32,
    /// NET_RX softirq runs since boot (wraps at 2^32).
    pub net_rx: u64,
    /// NET_TX softirq runs since boot (wraps at 2^32).
    pub net_tx: u64,
    /// Time from /proc/stat; `None` for a cpu that is offline (no line).
    pub time: Option<CpuTime>,
}

/// A cpu's time from its /proc/stat line, in USER_HZ ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// Time spent in softirqs (the 7th field).
    pub softirq: u64,
    /// user + nice + system + idle + iowait + irq + softirq + steal.
    pub total: u64,
}

/// Every possible cpu's sample, in ascending cpu order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuStats(pub Vec<CpuSample>);

impl CpuStats {
    pub fn get(&self, cpu: u32) -> Option<&CpuSample> {
        self.0
            .binary_search_by_key(&cpu, |s| s.cpu)
            .ok()
            .map(|i| &self.0[i])
    }
}

/// A /proc file that could not be read or did not have the expected shape.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("error reading {file}: {source}")]
    Io {
        file: &'static str,
        source: io::Error,
    },
    #[error("unexpected contents in {file}: {why}")]
    Parse { file: &'static str, why: String },
}

const SOFTIRQS: &str = "/proc/softirqs";
const STAT: &str = "/proc/stat";

fn bad(file: &'static str, why: impl Into<String>) -> ProcError {
    ProcError::Parse {
        file,
        why: why.into(),
    }
}

/// The NET_RX and NET_TX counts per cpu column of /proc/softirqs:
/// `(cpu, net_rx, net_tx)` in column order.
pub fn parse_softirqs(text: &str) -> Result<Vec<(u32, u64, u64)>, ProcError> {
    let mut lines = text.lines();
    let head = lines.next().ok_or_else(|| bad(SOFTIRQS, "empty"))?;
    let cpus = head
        .split_whitespace()
        .map(|c| c.strip_prefix("CPU").and_then(|n| n.parse::<u32>().ok()))
        .collect::<Option<Vec<u32>>>()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad(SOFTIRQS, format!("header is not CPU columns: {head:?}")))?;
    let mut rx = None;
    let mut tx = None;
    for line in lines {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match name.trim() {
            "NET_RX" => &mut rx,
            "NET_TX" => &mut tx,
            _ => continue,
        };
        let values = rest
            .split_whitespace()
            .map(|v| v.parse::<u64>().ok())
            .collect::<Option<Vec<u64>>>()
            .filter(|v| v.len() == cpus.len())
            .ok_or_else(|| {
                bad(
                    SOFTIRQS,
                    format!("{} line does not have {} counts", name.trim(), cpus.len()),
                )
            })?;
        *slot = Some(values);
    }
    let rx = rx.ok_or_else(|| bad(SOFTIRQS, "no NET_RX line"))?;
    let tx = tx.ok_or_else(|| bad(SOFTIRQS, "no NET_TX line"))?;
    Ok(cpus
        .into_iter()
        .zip(rx.into_iter().zip(tx))
        .map(|(c, (r, t))| (c, r, t))
        .collect())
}

/// The `cpuN` lines of /proc/stat: `(cpu, time)` in file order. The
/// aggregate `cpu` line is skipped.
pub fn parse_stat(text: &str) -> Result<Vec<(u32, CpuTime)>, ProcError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(cpu) = fields
            .next()
            .and_then(|name| name.strip_prefix("cpu"))
            .filter(|n| !n.is_empty())
        else {
            continue;
        };
        let cpu: u32 = cpu
            .parse()
            .map_err(|_| bad(STAT, format!("bad cpu line {line:?}")))?;
        let ticks = fields
            .take(8)
            .map(|v| v.parse::<u64>().ok())
            .collect::<Option<Vec<u64>>>()
            .filter(|t| t.len() >= 7)
            .ok_or_else(|| bad(STAT, format!("cpu{cpu} line has no softirq field")))?;
        out.push((
            cpu,
            CpuTime {
                softirq: ticks[6],
                total: ticks.iter().sum(),
            },
        ));
    }
    if out.is_empty() {
        return Err(bad(STAT, "no cpuN lines"));
    }
    Ok(out)
}

/// One sample per /proc/softirqs column, with its /proc/stat time if the
/// cpu is online.
pub fn combine(softirqs: &[(u32, u64, u64)], stat: &[(u32, CpuTime)]) -> CpuStats {
    let mut v: Vec<CpuSample> = softirqs
        .iter()
        .map(|&(cpu, net_rx, net_tx)| CpuSample {
            cpu,
            net_rx,
            net_tx,
            time: stat.iter().find(|(c, _)| *c == cpu).map(|(_, t)| *t),
        })
        .collect();
    v.sort_by_key(|s| s.cpu);
    CpuStats(v)
}

/// How far a softirq counter moved from `prev` to `cur`: the kernel's
/// counts are 32-bit and wrap; a count that went down by any other amount
/// (it cannot) gives 0 rather than a huge rate.
pub fn counter_delta(prev: u64, cur: u64) -> u64 {
    if cur >= prev {
        cur - prev
    } else if prev <= u64::from(u32::MAX) {
        cur + (1u64 << 32) - prev
    } else {
        0
    }
}

/// Reads /proc/softirqs and /proc/stat, once each per [`CpuReader::read`].
pub struct CpuReader {
    softirqs: File,
    stat: File,
    buf: String,
}

impl CpuReader {
    /// Opens the files (they stay open for the capture).
    pub fn open() -> Result<CpuReader, ProcError> {
        Self::open_paths(Path::new(SOFTIRQS), Path::new(STAT))
    }

    /// Opens other files of the same formats (tests).
    pub fn open_paths(softirqs: &Path, stat: &Path) -> Result<CpuReader, ProcError> {
        let open = |p: &Path, file| File::open(p).map_err(|source| ProcError::Io { file, source });
        Ok(CpuReader {
            softirqs: open(softirqs, SOFTIRQS)?,
            stat: open(stat, STAT)?,
            buf: String::with_capacity(16 * 1024),
        })
    }

    /// The counters now.
    pub fn read(&mut self) -> Result<CpuStats, ProcError> {
        reread(&mut self.softirqs, &mut self.buf).map_err(|source| ProcError::Io {
            file: SOFTIRQS,
            source,
        })?;
        let softirqs = parse_softirqs(&self.buf)?;
        reread(&mut self.stat, &mut self.buf)
            .map_err(|source| ProcError::Io { file: STAT, source })?;
        let stat = parse_stat(&self.buf)?;
        Ok(combine(&softirqs, &stat))
    }
}

fn reread(f: &mut File, buf: &mut String) -> io::Result<()> {
    buf.clear();
    f.seek(SeekFrom::Start(0))?;
    f.read_to_string(buf)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux 6.18, 2 cpus.
    const SOFTIRQS_2: &str = "                    CPU0       CPU1       
          HI:         34          0
       TIMER:      10411       7450
      NET_TX:        137         95
      NET_RX:    1768991     981350
       BLOCK:        824      60031
    IRQ_POLL:         34          0
     TASKLET:         58          2
       SCHED:      21009      20166
     HRTIMER:       1001        962
         RCU:      25369      25835
";

    /// Linux 6.18, 2 cpus (intr line shortened).
    const STAT_2: &str = "cpu  17297 0 3436 84771 589 0 199 15 0 0
cpu0 8618 0 1799 42336 326 0 95 8 0 0
cpu1 8679 0 1636 42435 262 0 103 7 0 0
intr 321561 0 0 0 0
ctxt 488588
btime 1700000000
processes 5000
procs_running 1
procs_blocked 0
softirq 3000000 34 17861 232 2750341 60855 34 60 41175 1963 51204
";

    /// A 4-possible-cpu machine with cpu2 offline: /proc/softirqs still
    /// has its column (counts frozen), /proc/stat has no cpu2 line.
    const SOFTIRQS_4: &str = "                    CPU0       CPU1       CPU2       CPU3       
          HI:          1          0          0          0
       TIMER:        100        200        300        400
      NET_TX:          5          6          7 4294967295
      NET_RX:       1000       2000       3000       4000
       BLOCK:          0          0          0          0
";
    const STAT_4: &str = "cpu  40 0 40 400 0 0 8 0 0 0
cpu0 10 0 10 100 0 0 2 0 5 0
cpu1 10 0 10 100 0 0 2 0 0 0
cpu3 10 0 10 100 0 0 2 0 0 0
intr 1
";

    #[test]
    fn softirqs_two_cpus() {
        assert_eq!(
            parse_softirqs(SOFTIRQS_2).unwrap(),
            vec![(0, 1768991, 137), (1, 981350, 95)]
        );
    }

    #[test]
    fn stat_two_cpus() {
        assert_eq!(
            parse_stat(STAT_2).unwrap(),
            vec![
                (
                    0,
                    CpuTime {
                        softirq: 95,
                        total: 8618 + 1799 + 42336 + 326 + 95 + 8
                    }
                ),
                (
                    1,
                    CpuTime {
                        softirq: 103,
                        total: 8679 + 1636 + 42435 + 262 + 103 + 7
                    }
                ),
            ]
        );
    }

    #[test]
    fn guest_time_is_not_counted_twice() {
        let s = parse_stat(STAT_4).unwrap();
        assert_eq!(
            s[0],
            (
                0,
                CpuTime {
                    softirq: 2,
                    total: 122
                }
            )
        );
    }

    #[test]
    fn offline_cpu_has_counts_but_no_time() {
        let c = combine(
            &parse_softirqs(SOFTIRQS_4).unwrap(),
            &parse_stat(STAT_4).unwrap(),
        );
        assert_eq!(c.0.len(), 4);
        assert_eq!(
            c.get(2),
            Some(&CpuSample {
                cpu: 2,
                net_rx: 3000,
                net_tx: 7,
                time: None
            })
        );
        assert_eq!(c.get(3).unwrap().net_tx, u64::from(u32::MAX));
        assert!(c.get(3).unwrap().time.is_some());
        assert_eq!(c.get(4), None);
    }

    #[test]
    fn old_kernel_stat_with_seven_fields() {
        let s = parse_stat("cpu  1 2 3 4 5 6 7\ncpu0 1 2 3 4 5 6 7\n").unwrap();
        assert_eq!(
            s,
            vec![(
                0,
                CpuTime {
                    softirq: 7,
                    total: 28
                }
            )]
        );
    }

    #[test]
    fn malformed_files_are_errors() {
        assert!(parse_softirqs("").is_err());
        assert!(parse_softirqs("   CPU0 CPUx\n  NET_RX: 1 2\n NET_TX: 1 2\n").is_err());
        // A line with fewer counts than columns.
        assert!(parse_softirqs("   CPU0 CPU1\n NET_RX: 1\n NET_TX: 1 2\n").is_err());
        assert!(parse_softirqs("   CPU0\n NET_TX: 1\n").is_err());
        assert!(parse_stat("intr 1 2\n").is_err());
        assert!(parse_stat("cpu0 1 2 3\n").is_err());
        assert!(parse_stat("cpux 1 2 3 4 5 6 7\n").is_err());
        let e = parse_softirqs("   CPU0\n NET_TX: 1\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unexpected contents in /proc/softirqs: no NET_RX line"
        );
    }

    #[test]
    fn wrapping_counter() {
        assert_eq!(counter_delta(10, 15), 5);
        assert_eq!(counter_delta(u64::from(u32::MAX) - 1, 3), 5);
        assert_eq!(counter_delta(u64::from(u32::MAX) + 10, 3), 0);
    }

    #[test]
    fn reader_on_recorded_files() {
        let dir = std::env::temp_dir().join(format!("rxtxcpu-live-proc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("softirqs"), dir.join("stat"));
        std::fs::write(&a, SOFTIRQS_4).unwrap();
        std::fs::write(&b, STAT_4).unwrap();
        let mut r = CpuReader::open_paths(&a, &b).unwrap();
        let first = r.read().unwrap();
        assert_eq!(first.0.len(), 4);
        // Reads again from the start of the same open files.
        assert_eq!(r.read().unwrap(), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The real files parse, every online cpu has a time, and reading the
    /// same open files again gives fresh (never smaller) counts.
    #[test]
    fn reader_on_this_machine() {
        let mut r = CpuReader::open().unwrap();
        let a = r.read().unwrap();
        let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
        let online = crate::cpuset::CpuSet::parse_list(online.trim()).unwrap();
        for cpu in online.iter() {
            assert!(a.get(cpu).and_then(|s| s.time).is_some(), "cpu{cpu}");
        }
        // Make at least one NET_RX run: a UDP datagram to ourselves on lo
        // goes through the backlog and its softirq. In a network namespace
        // of this thread's own (unshare moves only the calling thread; the
        // `ip` it runs inherits the thread's namespace).
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let up = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .unwrap();
            assert!(up.success());
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.send_to(b"x", s.local_addr().unwrap()).unwrap();
            let mut buf = [0u8; 1];
            s.recv_from(&mut buf).unwrap();
        })
        .join()
        .unwrap();
        let b = r.read().unwrap();
        let rx = |s: &CpuStats| s.0.iter().map(|c| c.net_rx).sum::<u64>();
        assert!(rx(&b) > rx(&a), "NET_RX did not move: {a:?} {b:?}");
        for (x, y) in a.0.iter().zip(&b.0) {
            if let (Some(tx), Some(ty)) = (x.time, y.time) {
                assert!(ty.softirq >= tx.softirq);
            }
        }
    }
}
