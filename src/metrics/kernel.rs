//! Per-cpu kernel counters for the metrics: NET_RX and NET_TX softirq
//! runs (/proc/softirqs) and the softnet counters (/proc/net/softnet_stat),
//! read when scraped.
//!
//! The kernel keeps both in 32 bits (`unsigned int` softirq counts, `u32`
//! softnet fields, printed `%08x`), so they wrap: at a million softirqs a
//! second, every 70 minutes. Prometheus would take a wrap for a counter
//! reset and lose what came before it in `rate()`; [`Unwrap`] widens each
//! to 64 bits by adding the distance from the previous read modulo 2^32,
//! which is right as long as reads (scrapes) come at least once per wrap.
//!
//! /proc/net/softnet_stat has one line per *online* cpu, hex columns:
//! 1 processed, 2 dropped (backlog full), 3 time_squeeze, 4-9 zero (retired
//! fields), 10 received_rps, 11 flow_limit_count, 12 backlog length, 13
//! the cpu's number (since Linux 5.10), 14-15 the two backlog queues'
//! lengths. Older kernels print fewer columns; without the cpu column the
//! lines are taken in order of the online cpus' numbers. Both files count
//! every device of the machine, in every network namespace.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use super::{CpuCounters, Softnet};
use crate::live::proc::{parse_softirqs, ProcError};

const SOFTIRQS: &str = "/proc/softirqs";
const SOFTNET: &str = "/proc/net/softnet_stat";

/// A 32-bit counter of the kernel widened to 64 bits across reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unwrap(Option<u64>);

impl Unwrap {
    /// The counter's 64-bit value given its 32-bit value now (`raw` above
    /// 2^32 is taken modulo 2^32).
    pub fn update(&mut self, raw: u64) -> u64 {
        let raw = raw as u32;
        let wide = match self.0 {
            None => u64::from(raw),
            Some(prev) => prev + u64::from(raw.wrapping_sub(prev as u32)),
        };
        self.0 = Some(wide);
        wide
    }
}

/// One softnet_stat line's counters as the kernel prints them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SoftnetLine {
    /// The cpu's number: column 13, or the line's place in the file.
    pub cpu: u32,
    pub counts: Softnet,
}

fn bad(why: impl Into<String>) -> ProcError {
    ProcError::Parse {
        file: SOFTNET,
        why: why.into(),
    }
}

/// The lines of /proc/net/softnet_stat. Without the cpu column (kernels
/// before 5.10) a line's cpu is its index: right when every cpu is online.
pub fn parse_softnet(text: &str) -> Result<Vec<SoftnetLine>, ProcError> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let fields = line
            .split_whitespace()
            .map(|f| u32::from_str_radix(f, 16).ok())
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| bad(format!("line {} is not hex counts: {line:?}", index + 1)))?;
        if fields.len() < 3 {
            return Err(bad(format!(
                "line {} has {} columns",
                index + 1,
                fields.len()
            )));
        }
        let at = |i: usize| fields.get(i).map_or(0, |&v| u64::from(v));
        out.push(SoftnetLine {
            cpu: fields.get(12).copied().unwrap_or(index as u32),
            counts: Softnet {
                processed: at(0),
                dropped: at(1),
                time_squeeze: at(2),
                received_rps: at(9),
                flow_limit_count: at(10),
            },
        });
    }
    if out.is_empty() {
        return Err(bad("empty"));
    }
    Ok(out)
}

/// The widening state of one cpu's counters.
#[derive(Clone, Copy, Debug, Default)]
struct Wide {
    net_rx: Unwrap,
    net_tx: Unwrap,
    processed: Unwrap,
    dropped: Unwrap,
    time_squeeze: Unwrap,
    received_rps: Unwrap,
    flow_limit_count: Unwrap,
}

/// Reads both files, once each per [`KernelCpus::read`], and widens their
/// counters. One per capture (it keeps the widening state); the metrics
/// thread reads it, behind a mutex nobody else takes.
pub struct KernelCpus {
    softirqs: File,
    /// None where the file cannot be opened (no CONFIG_PROC_FS net parts):
    /// the cpus then have no softnet counters.
    softnet: Option<File>,
    buf: String,
    wide: BTreeMap<u32, Wide>,
}

impl KernelCpus {
    /// Opens the files (they stay open for the capture).
    pub fn open() -> Result<KernelCpus, ProcError> {
        Self::open_paths(Path::new(SOFTIRQS), Path::new(SOFTNET))
    }

    /// Opens other files of the same formats (tests).
    pub fn open_paths(softirqs: &Path, softnet: &Path) -> Result<KernelCpus, ProcError> {
        let softirqs = File::open(softirqs).map_err(|source| ProcError::Io {
            file: SOFTIRQS,
            source,
        })?;
        Ok(KernelCpus {
            softirqs,
            softnet: File::open(softnet).ok(),
            buf: String::with_capacity(16 * 1024),
            wide: BTreeMap::new(),
        })
    }

    /// Every possible cpu's counters now (the columns of /proc/softirqs),
    /// with softnet counters for those that have a softnet_stat line.
    pub fn read(&mut self) -> Result<Vec<CpuCounters>, ProcError> {
        reread(&mut self.softirqs, &mut self.buf).map_err(|source| ProcError::Io {
            file: SOFTIRQS,
            source,
        })?;
        let softirqs = parse_softirqs(&self.buf)?;
        let softnet = match &mut self.softnet {
            Some(f) => {
                reread(f, &mut self.buf).map_err(|source| ProcError::Io {
                    file: SOFTNET,
                    source,
                })?;
                parse_softnet(&self.buf)?
            }
            None => Vec::new(),
        };
        let mut out: Vec<CpuCounters> = softirqs
            .iter()
            .map(|&(cpu, net_rx, net_tx)| {
                let w = self.wide.entry(cpu).or_default();
                CpuCounters {
                    cpu,
                    net_rx: w.net_rx.update(net_rx),
                    net_tx: w.net_tx.update(net_tx),
                    softnet: softnet.iter().find(|l| l.cpu == cpu).map(|l| Softnet {
                        processed: w.processed.update(l.counts.processed),
                        dropped: w.dropped.update(l.counts.dropped),
                        time_squeeze: w.time_squeeze.update(l.counts.time_squeeze),
                        received_rps: w.received_rps.update(l.counts.received_rps),
                        flow_limit_count: w.flow_limit_count.update(l.counts.flow_limit_count),
                    }),
                }
            })
            .collect();
        out.sort_by_key(|c| c.cpu);
        Ok(out)
    }
}

fn reread(f: &mut File, buf: &mut String) -> io::Result<()> {
    buf.clear();
    f.seek(SeekFrom::Start(0))?;
    f.read_to_string(buf)?;
    Ok(())
}
