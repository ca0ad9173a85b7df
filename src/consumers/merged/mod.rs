//! `--pcapng -w FILE`: one pcapng file with every stream of the capture,
//! each stream an interface of its own, written in timestamp order by a
//! merger thread. Workers encode their packets ([`crate::consumers`]) and
//! hand them over a ring block at a time; the merger ([`crate::consumers::merged::merge`])
//! orders them through a bounded reorder window; [`MergedFile`] writes
//! (and rotates) the file.

pub mod batch;
pub mod file;
pub mod merge;

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use crate::consumers::merged::file::{EpbBatch, MergedFile, MergedSummary};
use crate::consumers::merged::merge::{Feed, Inbox, Limits, MergeStats, Merger};
use crate::error::{Error, Result};
use crate::format::pcapng::{Interface, InterfaceStats, Section};
use crate::options::Options;
use crate::packet::LinkType;
use crate::vantage::Stream;

/// Messages the channel to the merger holds per stream: a few ring blocks
/// in flight each; when the writer falls behind, workers wait and the
/// backlog stays in their rings (where it shows as kernel drops).
const CHANNEL_PER_STREAM: usize = 8;

/// The merged output of a capture, before the merger thread starts.
pub struct Merged<'a> {
    file: MergedFile<'a>,
    inbox: Inbox<EpbBatch>,
    feeds: Vec<Feed<EpbBatch>>,
    streams: usize,
    retire_ms: u32,
}

impl<'a> Merged<'a> {
    /// Opens the file (`-` for stdout) with one interface per stream of
    /// `streams`, named after the interface captured on (`label`, `any`
    /// for all) and described by the stream (`eth0 cpu3`). `on_end` is
    /// called when writing stops early (a failure, the -G -W file limit),
    /// to end the capture. Nothing is written, and a file that exists is
    /// not changed, before [`Merged::start`].
    pub fn create(
        opts: &Options,
        path: &str,
        streams: &[Stream],
        label: &str,
        link: LinkType,
        retire_ms: u32,
        on_end: Box<dyn FnMut() + Send + 'a>,
    ) -> Result<Merged<'a>> {
        let interfaces = streams
            .iter()
            .map(|s| Interface {
                name: label.to_string(),
                description: format!("{label} {}", s.label()),
                link,
                snaplen: link.snaplen(opts.snaplen),
            })
            .collect();
        let section = Section::new(interfaces, opts.precision);
        let rotation = Some(opts.rotation).filter(|r| r.is_on());
        let file = MergedFile::open(path, section, opts.packet_buffered, rotation, on_end)?;
        let (feeds, inbox) = merge::channel(streams.len(), CHANNEL_PER_STREAM * streams.len());
        Ok(Merged {
            file,
            inbox,
            feeds,
            streams: streams.len(),
            retire_ms,
        })
    }

    /// Writes the file's headers once the capture is about to start (see
    /// [`crate::consumers::destination`]); on failure removes the file if this run
    /// created it.
    pub fn start(&mut self) -> Result<()> {
        let started = self.file.start();
        if started.is_err() {
            self.file.remove_created();
        }
        started
    }

    /// Removes the file again if this run created it, when the capture
    /// could not start (a file that was there stays as it was).
    pub fn remove(&self) {
        self.file.remove_created();
    }

    /// The workers' ends of the channel, one per stream in order.
    pub fn take_feeds(&mut self) -> Vec<Feed<EpbBatch>> {
        std::mem::take(&mut self.feeds)
    }

    /// For `-w -`: a descriptor of stdout to watch for a reader that has
    /// gone (the main thread polls it while the merger writes).
    pub fn watch_fd(&self) -> Option<OwnedFd> {
        self.file
            .watch_fd()
            .and_then(|fd| fd.as_fd().try_clone_to_owned().ok())
    }

    /// The merger thread's work: merges until every worker has ended, then
    /// writes the rest. Returns the file, still open for its statistics.
    pub fn run(self) -> Written<'a> {
        let Merged {
            mut file,
            inbox,
            feeds,
            streams,
            retire_ms,
        } = self;
        drop(feeds);
        let limits = Limits::for_retire_ms(retire_ms);
        let mut merger = Merger::new(streams, limits);
        let tick = Duration::from_millis(u64::from(retire_ms.max(1)));
        let stats = merge::run(inbox, &mut merger, &mut file, tick, merge::realtime_ns);
        Written {
            file,
            stats,
            limits,
        }
    }
}

/// The merged file once the merger is done.
pub struct Written<'a> {
    file: MergedFile<'a>,
    pub stats: MergeStats,
    limits: Limits,
}

impl Written<'_> {
    /// Per stream: packets handed to the merger after writing had ended
    /// (never written).
    pub fn not_written(&self) -> Vec<u64> {
        self.file.unwritten().to_vec()
    }

    /// Per stream: the packets that came after the -G -W file limit ended
    /// the last file (the workers had counted them, the merger being up
    /// to its window behind them). A stream's own files take no packet
    /// past the limit and its count stops there; so must the merged
    /// file's, or the report counts packets no file holds and no line
    /// explains. None when the limit did not end the capture.
    pub fn past_the_limit(&self) -> Option<Vec<u64>> {
        self.file.limit_reached().then(|| self.not_written())
    }

    /// Writes the interface statistics and closes the file.
    pub fn finish(self, stats: &[InterfaceStats]) -> MergedSummary {
        self.file.finish(stats)
    }
}

/// What closing the merged file leaves for the report (which words it:
/// [`crate::report::Report::take_merged`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Closed {
    /// Packets written out of timestamp order: a worker held up past the
    /// reorder window, or the system clock set back (packets carry the
    /// kernel's wall-clock time). Never silent: a reader relying on the
    /// order must know.
    pub late: u64,
    /// Files the -W ring overwrote, and the packets they held.
    pub rotated_away: u64,
    pub records_lost: u64,
    /// The -G -W file limit ended the capture.
    pub limit_reached: bool,
    /// The exit status: 1 when writing failed.
    pub status: i32,
}

/// Closes the merged file once the capture is over: one statistics block
/// per stream (`counts`: per stream, the packets received and those
/// dropped by the kernel or lost in the XDP program's buffers; and those
/// lost in the program after the file failed). A failed write is said
/// on stderr here; what the report must say comes back in [`Closed`].
pub fn close(
    written: Written,
    counts: &[(u64, u64)],
    (start_ns, end_ns): (u64, u64),
    name: &str,
    say: &dyn Fn(&str),
) -> Closed {
    // Past the -G -W limit a packet is not captured (the report's counts
    // leave it out), not one the program lost.
    let not_written = match written.past_the_limit() {
        Some(_) => Vec::new(),
        None => written.not_written(),
    };
    let (merge, limits) = (written.stats, written.limits);
    say(&format!(
        "merged file: {} packets, {} let go by the {} ms window, {} early at the {} MiB bound, {} out of order; at most {} KiB waited",
        merge.items,
        merge.by_window,
        limits.window_ns / 1_000_000,
        merge.forced,
        limits.max_bytes >> 20,
        merge.late,
        merge.peak_bytes / 1024
    ));
    let stats: Vec<InterfaceStats> = counts
        .iter()
        .enumerate()
        .map(|(i, &(received, dropped))| InterfaceStats {
            start_ns,
            end_ns,
            ifrecv: received + dropped,
            ifdrop: dropped,
            osdrop: not_written.get(i).copied().unwrap_or(0),
        })
        .collect();
    let summary = written.finish(&stats);
    // Counted once the file is closed: a failed last write takes its
    // buffered packets with it.
    let lost: u64 = summary.not_written.iter().sum();
    let status = match summary.error {
        // EPIPE comes only from a pipe (stdout, a FIFO) whose reader went
        // away (`| tshark -c 10 -r -`): an ordinary end.
        Some(Error::Os { what, why, .. }) if why.0.kind() == std::io::ErrorKind::BrokenPipe => {
            say(&crate::consumers::destination::closed_note(&what));
            0
        }
        Some(e) => {
            errln!("{name}: error writing {e}");
            if lost > 0 {
                errln!("{name}: {}", crate::consumers::not_in_file_line(lost, ""));
            }
            1
        }
        None => 0,
    };
    Closed {
        late: merge.late,
        rotated_away: summary.rotated_away,
        records_lost: summary.records_lost,
        limit_reached: summary.limit_reached,
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Report;

    #[test]
    fn out_of_order_packets_are_reported() {
        let mut report = Report::default();
        report.take_merged(&Closed::default());
        assert!(report.notes.is_empty());
        report.take_merged(&Closed {
            late: 3,
            ..Closed::default()
        });
        assert_eq!(
            report.notes,
            ["3 packets written out of timestamp order in the merged file."]
        );
    }
}
