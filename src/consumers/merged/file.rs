//! The merged pcapng file itself: the workers' [`EpbBatch`]es of encoded
//! blocks, [`PcapngOutput`] (the buffered file that always ends on a whole
//! block) and [`MergedFile`] (the merger thread's sink, with rotation).
//! The blocks' bytes are [`crate::format::pcapng`]'s.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::fd::AsFd;
use std::sync::Arc;

use crate::consumers::destination::{self, Kind};
use crate::consumers::files::{self, Piece, WriteFailure};
pub use crate::consumers::merged::batch::EpbBatch;
use crate::consumers::merged::merge;
use crate::format::pcapng::*;
use crate::options::Precision;
#[cfg(test)]
use crate::packet::Frame;

/// Bytes buffered before a write(2), as for pcap output.
const BUFFER: usize = 256 * 1024;

/// A run of a batch's blocks (those of one stream that come next in the
/// merged order together) at least this long is written from the batch
/// (one iovec), not copied into the output's buffer first. Lower than the
/// per-stream files' [`crate::consumers::files::COPY_BELOW`]: the merger
/// reads batches another cpu wrote milliseconds before, so its copy is
/// the one that waits for them, where the kernel's copy of a buffer it
/// just wrote does not. Measured on the benchmark's flood (alternated
/// runs, cpu per packet): at 512 bytes 588-626 ns from 256 on against
/// 657-661 from 1 KiB; at 64 bytes 228-241 against 270-291 with every
/// run written from the batch (from 1 byte on), where runs are mostly one
/// or two blocks; see docs/PERFORMANCE.md, "The merged file's cost".
pub const SHARE_FROM: usize = 256;

/// A piece of the bytes waiting to be written, in order: a range of the
/// output's buffer, or blocks in a worker's batch (`held[batch]`).
#[derive(Clone, Copy, Debug)]
enum Pending {
    Buffer {
        start: usize,
        end: usize,
    },
    Batch {
        batch: usize,
        start: usize,
        end: usize,
    },
}

/// Where the merged pcapng stream goes.
///
/// Like `PcapOutput`: whole blocks are collected and written with one
/// writev(2) per 256 KiB (or per batch with -U): the headers, statistics
/// and short runs of packet blocks copied into a buffer, longer runs
/// listed where they lie in the workers' batches (shared with them, which
/// get the batches back once written: [`MergedFile`]'s `keep`). The file
/// always ends on a whole block, and after a failed write it is cut back
/// to its last whole block (stdout is never cut: a pipe cannot take bytes
/// back).
pub struct PcapngOutput {
    /// The file name, or `-` for stdout; for messages.
    pub path: String,
    file: File,
    /// What the output was when opened.
    kind: Kind,
    /// Whole blocks (and, until written, the section and interfaces).
    buf: Vec<u8>,
    /// With runs of batches waiting: the bytes to write before the rest of
    /// `buf` (which follows the last of them), in order.
    pieces: Vec<Pending>,
    /// How much of `buf` the pieces cover.
    mark: usize,
    /// The batches' bytes the pieces point into (each once).
    held: Vec<Arc<Vec<u8>>>,
    /// Bytes of the batches' pieces.
    shared: usize,
    /// The iovec list, empty between writes (kept for its memory).
    iov: Vec<IoSlice<'static>>,
    /// The list of pieces as the writer takes them (kept likewise).
    list: Vec<Piece<'static>>,
    /// Packet blocks waiting.
    buffered: u64,
    /// Bytes in the file (or written to the stream): whole blocks only.
    written: u64,
    /// Packet blocks in the file.
    records: u64,
    /// Whether `buf` starts with the section header.
    header_in_buf: bool,
    /// A write failed: nothing more is written.
    failed: WriteFailure,
    /// Per interface: packet blocks that were buffered when a write
    /// failed and never reached the file.
    dropped: Vec<u64>,
    precision: Precision,
    interfaces: u32,
    packet_buffered: bool,
}

impl PcapngOutput {
    /// Opens `path` (`-`: stdout) without changing it (see
    /// [`crate::consumers::destination`]; `wait`: for a FIFO's reader), with the
    /// section header and interface descriptions waiting in the buffer for
    /// [`PcapngOutput::start`].
    pub(crate) fn open(
        path: &str,
        section: &Section,
        packet_buffered: bool,
        wait: bool,
    ) -> io::Result<Self> {
        let (file, kind) = destination::open(path, wait)?;
        let mut buf = Vec::with_capacity(BUFFER);
        section.encode(&mut buf)?;
        Ok(PcapngOutput {
            path: path.to_string(),
            file,
            kind,
            buf,
            pieces: Vec::new(),
            mark: 0,
            held: Vec::new(),
            shared: 0,
            iov: Vec::new(),
            list: Vec::new(),
            buffered: 0,
            written: 0,
            records: 0,
            header_in_buf: true,
            failed: WriteFailure::default(),
            dropped: vec![0; section.interfaces.len()],
            precision: section.precision,
            interfaces: section.interfaces.len() as u32,
            packet_buffered,
        })
    }

    /// Writes the section header and interface descriptions at once, so
    /// the file is valid (with no packets) from the start and a file
    /// system that cannot take even that fails here, before the capture
    /// starts. A file that was there is overwritten from its start and cut
    /// to them only once they are written: one that cannot take them stays
    /// as it was.
    pub(crate) fn start(&mut self) -> io::Result<()> {
        match self.flush() {
            Ok(()) => {}
            // The reader of the pipe is gone already: the capture sees the
            // pipe's POLLERR and ends as when the reader goes later.
            Err(e) if self.kind.pipe() && e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e),
        }
        if self.kind == Kind::Existing {
            self.file.set_len(self.written)?;
        }
        Ok(())
    }

    /// Opens and starts `path` at once: a file that exists is replaced,
    /// as tcpdump opens each file of a rotation; a FIFO with no reader
    /// fails (ENXIO).
    pub fn create(path: &str, section: &Section, packet_buffered: bool) -> io::Result<Self> {
        let mut out = PcapngOutput::open(path, section, packet_buffered, false)?;
        out.start()?;
        Ok(out)
    }

    /// Appends one packet, encoding its block in place.
    #[cfg(test)]
    pub fn write_packet(&mut self, info: &PacketInfo, frame: &Frame) -> io::Result<()> {
        self.failed.check()?;
        debug_assert!(info.interface < self.interfaces);
        self.reserve(epb_len(info, frame.caplen()))?;
        encode_epb(&mut self.buf, self.precision, info, frame);
        self.buffered += 1;
        Ok(())
    }

    /// Appends one enhanced packet block encoded elsewhere (a worker's
    /// [`EpbBatch`]); it must be one whole block.
    #[cfg(test)]
    pub fn write_block(&mut self, block: &[u8]) -> io::Result<()> {
        debug_assert!(block.len() >= 32 && block_len(block, 0) == Some(block.len()));
        self.write_blocks(block, 1)
    }

    /// Appends `count` whole enhanced packet blocks, one after another in
    /// `blocks`, copying them.
    pub fn write_blocks(&mut self, blocks: &[u8], count: u64) -> io::Result<()> {
        self.failed.check()?;
        debug_assert_eq!(block_type(blocks, 0), Some(ENHANCED_PACKET));
        self.reserve(blocks.len())?;
        self.buf.extend_from_slice(blocks);
        self.buffered += count;
        Ok(())
    }

    /// Appends `count` whole enhanced packet blocks that lie in `data`'s
    /// `range`, without copying them: the output holds `data` until they
    /// are written (a batch whose bytes are held goes back to its worker
    /// only after that).
    pub fn write_shared(
        &mut self,
        data: &Arc<Vec<u8>>,
        range: std::ops::Range<usize>,
        count: u64,
    ) -> io::Result<()> {
        self.failed.check()?;
        debug_assert_eq!(block_type(data, range.start), Some(ENHANCED_PACKET));
        self.reserve(range.len())?;
        if self.mark < self.buf.len() {
            self.pieces.push(Pending::Buffer {
                start: self.mark,
                end: self.buf.len(),
            });
            self.mark = self.buf.len();
        }
        let batch = match self.held.last() {
            Some(last) if Arc::ptr_eq(last, data) => self.held.len() - 1,
            _ => {
                self.held.push(Arc::clone(data));
                self.held.len() - 1
            }
        };
        self.shared += range.len();
        self.buffered += count;
        // A stream's runs between other streams' short (copied) ones
        // follow each other in its batch: one iovec for them all.
        if let Some(Pending::Batch { batch: b, end, .. }) = self.pieces.last_mut() {
            if *b == batch && *end == range.start {
                *end = range.end;
                return Ok(());
            }
        }
        self.pieces.push(Pending::Batch {
            batch,
            start: range.start,
            end: range.end,
        });
        Ok(())
    }

    /// Ends the file: one interface statistics block per interface (in
    /// interface order), then everything is written out.
    pub fn finish(&mut self, stats: &[InterfaceStats]) -> io::Result<()> {
        self.failed.check()?;
        debug_assert!(stats.len() <= self.interfaces as usize);
        for (i, s) in stats.iter().enumerate() {
            self.reserve(88)?;
            encode_isb(&mut self.buf, self.precision, i as u32, s);
        }
        self.flush()
    }

    /// Called after each batch: with -U, pushes it out now.
    pub fn batch_done(&mut self) -> io::Result<()> {
        if self.packet_buffered {
            self.flush()?;
        }
        Ok(())
    }

    /// Per interface: packets buffered when a write failed, that never
    /// reached the file.
    pub fn dropped(&self) -> &[u64] {
        &self.dropped
    }

    /// Packet blocks in the file (or written to stdout) so far: after a
    /// failed write, what the file still holds.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Records the file holds once what is buffered is written: what a
    /// rotation closes it with.
    pub fn held(&self) -> u64 {
        self.records + self.buffered
    }

    /// The file's size counting what is buffered: what tcpdump's -C
    /// compares (it asks ftell(), which counts stdio's buffer).
    pub fn size(&self) -> u64 {
        self.written + self.pending() as u64
    }

    /// Bytes waiting to be written.
    fn pending(&self) -> usize {
        self.buf.len() + self.shared
    }

    /// For a pipe (stdout, a FIFO): the descriptor to watch for POLLERR
    /// (the pipe's reader has gone).
    pub fn watch_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.kind.pipe().then(|| self.file.as_fd())
    }

    fn reserve(&mut self, len: usize) -> io::Result<()> {
        let pending = self.pending();
        if pending > 0 && pending + len > BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes out everything waiting. On failure the file is cut back to
    /// its last whole block and nothing more is written to it.
    pub fn flush(&mut self) -> io::Result<()> {
        self.failed.check()?;
        let done = if self.pieces.is_empty() {
            let mut done = 0;
            while done < self.buf.len() {
                match self.file.write(&self.buf[done..]) {
                    Ok(0) => {
                        let e = io::Error::from(io::ErrorKind::WriteZero);
                        self.fail(done, &e);
                        return Err(e);
                    }
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.fail(done, &e);
                        return Err(e);
                    }
                }
            }
            done
        } else {
            let mut list: Vec<Piece<'_>> = files::recycle(std::mem::take(&mut self.list));
            list.extend(self.pieces.iter().map(|p| match *p {
                Pending::Buffer { start, end } => Piece::Buffer { start, end },
                Pending::Batch { batch, start, end } => Piece::Ring(&self.held[batch][start..end]),
            }));
            if self.mark < self.buf.len() {
                list.push(Piece::Buffer {
                    start: self.mark,
                    end: self.buf.len(),
                });
            }
            let result = files::write_pieces(&mut self.file, &self.buf, &list, &mut self.iov);
            self.list = files::recycle(list);
            match result {
                Ok(done) => done,
                Err((done, e)) => {
                    self.fail(done, &e);
                    return Err(e);
                }
            }
        };
        debug_assert_eq!(done, self.pending());
        self.written += done as u64;
        self.records += self.buffered;
        self.buffered = 0;
        self.header_in_buf = false;
        self.buf.clear();
        self.clear_pieces();
        Ok(())
    }

    /// Forgets the batches' pieces (written, or never to be): the batches
    /// may go back to their workers.
    fn clear_pieces(&mut self) {
        self.pieces.clear();
        self.held.clear();
        self.mark = 0;
        self.shared = 0;
    }

    /// The bytes waiting, piece by piece in order; each piece holds whole
    /// blocks.
    fn waiting(&self) -> impl Iterator<Item = &[u8]> {
        let tail = (self.mark < self.buf.len()).then(|| &self.buf[self.mark..]);
        self.pieces
            .iter()
            .map(|p| match *p {
                Pending::Buffer { start, end } => &self.buf[start..end],
                Pending::Batch { batch, start, end } => &self.held[batch][start..end],
            })
            .chain(tail)
    }

    /// After a write that got only `done` bytes of what waited out: keeps
    /// the whole blocks among them and cuts a partial one off the file.
    fn fail(&mut self, done: usize, e: &io::Error) {
        self.failed.set(e);
        let (mut whole, mut records) = (0, 0);
        let mut dropped = std::mem::take(&mut self.dropped);
        let mut base = 0;
        let mut cut = false;
        for piece in self.waiting() {
            let mut at = 0;
            while let Some(len) = block_len(piece, at).filter(|&l| l > 0) {
                let end = base + at + len;
                let packet = block_type(piece, at) == Some(ENHANCED_PACKET);
                cut |= end > done;
                if !cut {
                    whole = end;
                    records += u64::from(packet);
                } else if packet {
                    // Never reaches the file: counted, never lost
                    // silently. The interface id: the word after the
                    // block's length.
                    if let Some(n) = word(piece, at + 8).and_then(|i| dropped.get_mut(i as usize)) {
                        *n += 1;
                    }
                }
                at += len;
            }
            base += piece.len();
        }
        self.dropped = dropped;
        self.written += whole as u64;
        self.records += records;
        // Only our own file (see Kind::own_file), and not one that was
        // there before whose header could not be written over it: that
        // stays as it was.
        if self.kind.own_file() && !(self.kind == Kind::Existing && self.header_in_buf) {
            if self.header_in_buf && whole == 0 {
                // Not even the section header: leave the file empty.
                let _ = self.file.set_len(0);
            } else if whole < done {
                let _ = self.file.set_len(self.written);
            }
        }
        self.buf = Vec::new();
        self.clear_pieces();
        self.buffered = 0;
    }
}

/// What a [`MergedFile`] did, for the report.
#[derive(Debug, Default)]
pub struct MergedSummary {
    /// Files created (with rotation, the overwritten ones included).
    pub files: u64,
    /// Files the -W ring (or a -G name that came round) overwrote.
    pub rotated_away: u64,
    /// Records that were in the overwritten files.
    pub records_lost: u64,
    /// Records in the files that remain.
    pub records: u64,
    /// Per interface: blocks handed in after writing had ended (a failed
    /// write, or the -G -W file limit), so never written.
    pub not_written: Vec<u64>,
    /// The -G -W file limit ended the capture.
    pub limit_reached: bool,
    /// The write that failed, if one did.
    pub error: Option<crate::error::Error>,
}

/// The merged file as the merger thread's sink ([`merge::run`]): writes
/// each block in merged order, with -U flushes each round, rotates with
/// -C/-G/-W (each new file gets the section header and every interface
/// again, so it stands alone). On the first failure it stops writing and
/// calls `on_end` (to stop the capture); so it does when the -G -W file
/// limit is reached.
pub struct MergedFile<'a> {
    section: Section,
    packet_buffered: bool,
    out: Option<PcapngOutput>,
    rotator: Option<crate::consumers::rotate::Rotator>,
    /// Records in the files closed by rotation (overwritten ones too).
    closed_records: u64,
    ended: bool,
    summary: MergedSummary,
    on_end: Option<Box<dyn FnMut() + Send + 'a>>,
    /// Seconds since the epoch, for -G (tcpdump's time(NULL)).
    clock: fn() -> i64,
    /// Batches the merger is done with whose bytes still wait to be
    /// written here (by producer): they go back to their workers once
    /// written ([`merge::Sink::returned`]).
    kept: Vec<(usize, EpbBatch)>,
}

fn unix_seconds() -> i64 {
    (merge::realtime_ns() / 1_000_000_000) as i64
}

impl<'a> MergedFile<'a> {
    /// Creates and starts the first file: `path`, or with rotation its
    /// first name.
    #[cfg(test)]
    pub fn create(
        path: &str,
        section: Section,
        packet_buffered: bool,
        rotation: Option<crate::options::Rotation>,
        on_end: Box<dyn FnMut() + Send + 'a>,
    ) -> crate::error::Result<MergedFile<'a>> {
        let mut file = MergedFile::open(path, section, packet_buffered, rotation, on_end)?;
        if let Err(e) = file.start() {
            file.remove_created();
            return Err(e);
        }
        Ok(file)
    }

    /// Opens the first file without changing it, for
    /// [`MergedFile::start`] (see [`crate::consumers::destination`]).
    pub fn open(
        path: &str,
        section: Section,
        packet_buffered: bool,
        rotation: Option<crate::options::Rotation>,
        on_end: Box<dyn FnMut() + Send + 'a>,
    ) -> crate::error::Result<MergedFile<'a>> {
        MergedFile::with_clock(
            path,
            section,
            packet_buffered,
            rotation,
            on_end,
            unix_seconds,
        )
    }

    fn with_clock(
        path: &str,
        section: Section,
        packet_buffered: bool,
        rotation: Option<crate::options::Rotation>,
        on_end: Box<dyn FnMut() + Send + 'a>,
        clock: fn() -> i64,
    ) -> crate::error::Result<MergedFile<'a>> {
        let rotator = match rotation.filter(|r| r.is_on()) {
            Some(r) => Some(
                crate::consumers::rotate::Rotator::new(path, r, clock())
                    .map_err(|e| crate::error::Error::file(path, name_error(e)))?,
            ),
            None => None,
        };
        let first = rotator.as_ref().map_or(path, |r| r.current()).to_string();
        let out = PcapngOutput::open(&first, &section, packet_buffered, true)
            .map_err(|e| crate::error::Error::file(&first, e))?;
        let interfaces = section.interfaces.len();
        Ok(MergedFile {
            section,
            packet_buffered,
            out: Some(out),
            rotator,
            closed_records: 0,
            ended: false,
            summary: MergedSummary {
                files: 1,
                not_written: vec![0; interfaces],
                ..MergedSummary::default()
            },
            on_end: Some(on_end),
            clock,
            kept: Vec::new(),
        })
    }

    /// For a pipe: the descriptor to watch for a reader that has gone.
    pub fn watch_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.out.as_ref().and_then(|o| o.watch_fd())
    }

    /// Writes the first file's headers (see `PcapngOutput::start`); an
    /// error names the file.
    pub fn start(&mut self) -> crate::error::Result<()> {
        match &mut self.out {
            Some(out) => out
                .start()
                .map_err(|e| crate::error::Error::write(&out.path, e)),
            None => Ok(()),
        }
    }

    /// Removes the first file if this run created it (a start that
    /// failed); a file that was there before stays.
    pub fn remove_created(&self) {
        if let Some(out) = self.out.as_ref().filter(|o| o.kind == Kind::Created) {
            let _ = std::fs::remove_file(&out.path);
        }
    }

    /// Per interface: blocks handed in after writing had ended.
    pub fn unwritten(&self) -> &[u64] {
        &self.summary.not_written
    }

    /// Whether the -G -W file limit ended the writing.
    pub fn limit_reached(&self) -> bool {
        self.summary.limit_reached
    }

    fn not_written(&mut self, interface: usize) {
        if let Some(n) = self.summary.not_written.get_mut(interface) {
            *n += 1;
        }
    }

    /// Stops writing: after an error (kept for the report) or at the file
    /// limit.
    fn end(&mut self, error: Option<crate::error::Error>) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.summary.error = error;
        if let Some(mut f) = self.on_end.take() {
            f();
        }
    }

    fn fail(&mut self, path: &str, e: io::Error) {
        self.end(Some(crate::error::Error::file(path, e)));
    }

    /// A write to `out` failed: the packets it took with it (buffered,
    /// never in the file) are not written either.
    fn write_failed(&mut self, out: &PcapngOutput, e: io::Error) {
        for (n, d) in self.summary.not_written.iter_mut().zip(out.dropped()) {
            *n += d;
        }
        let path = out.path.clone();
        self.fail(&path, e);
    }

    /// `write_failed` for the current file.
    fn current_failed(&mut self, e: io::Error) {
        if let Some(out) = self.out.take() {
            self.write_failed(&out, e);
            self.out = Some(out);
        }
    }

    /// Closes the current file and starts `name`.
    fn rotate(&mut self, name: &str) -> bool {
        if let Some(mut old) = self.out.take() {
            let flushed = old.flush();
            self.closed_records += old.records();
            if let Err(e) = flushed {
                self.write_failed(&old, e);
                return false;
            }
        }
        match PcapngOutput::create(name, &self.section, self.packet_buffered) {
            Ok(out) => {
                self.out = Some(out);
                self.summary.files += 1;
                true
            }
            Err(e) => {
                self.fail(name, e);
                false
            }
        }
    }

    /// Writes the interface statistics (with rotation, into the last file
    /// only; the files before end without them, which the format allows)
    /// and closes the file.
    pub fn finish(mut self, stats: &[InterfaceStats]) -> MergedSummary {
        if let Some(out) = &mut self.out {
            if self.summary.error.is_none() {
                if let Err(e) = out.finish(stats) {
                    self.current_failed(e);
                }
            }
        }
        let current = self.out.as_ref().map_or(0, |o| o.records());
        let mut s = std::mem::take(&mut self.summary);
        let all = self.closed_records + current;
        if let Some(r) = &self.rotator {
            s.rotated_away = r.rotated_away();
            s.records_lost = r.records_lost();
        }
        s.records = all - s.records_lost;
        s
    }
}

fn name_error(e: crate::consumers::rotate::NameError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

impl MergedFile<'_> {
    /// Writes blocks `range` of `batch`, the next in order: copied if the
    /// run is short, else from the batch itself (see [`SHARE_FROM`]).
    fn write_run(&mut self, producer: usize, batch: &EpbBatch, range: std::ops::Range<usize>) {
        let Some(out) = &mut self.out else {
            return;
        };
        let count = range.len() as u64;
        let span = batch.span(range.clone());
        let written = match batch.shared() {
            Some(data) if span.len() >= SHARE_FROM => out.write_shared(data, span, count),
            _ => {
                batch.read_ahead(range.start);
                out.write_blocks(batch.blocks(range.clone()), count)
            }
        };
        if let Err(e) = written {
            for _ in range {
                self.not_written(producer);
            }
            self.current_failed(e);
        }
    }
}

impl merge::Sink<EpbBatch> for MergedFile<'_> {
    /// Producer i is stream i, interface i of the file.
    fn emit(&mut self, producer: usize, batch: &EpbBatch, index: usize) {
        if self.ended {
            self.not_written(producer);
            return;
        }
        if let (Some(r), Some(out)) = (&mut self.rotator, &self.out) {
            match r.before_packet(out.size(), out.held(), (self.clock)()) {
                Ok(crate::consumers::rotate::Decision::Keep) => {}
                Ok(crate::consumers::rotate::Decision::Rotate { name }) => {
                    if !self.rotate(&name) {
                        self.not_written(producer);
                        return;
                    }
                }
                Ok(crate::consumers::rotate::Decision::Stop) => {
                    self.summary.limit_reached = true;
                    self.end(None);
                    self.not_written(producer);
                    return;
                }
                Err(e) => {
                    let path = r.current().to_string();
                    self.fail(&path, name_error(e));
                    self.not_written(producer);
                    return;
                }
            }
        }
        self.write_run(producer, batch, index..index + 1);
    }

    /// Without rotation, a run at a time (with it, each packet may be the
    /// one a new file starts at).
    fn emit_run(&mut self, producer: usize, batch: &EpbBatch, range: std::ops::Range<usize>) {
        if self.ended || self.rotator.is_some() {
            for i in range {
                self.emit(producer, batch, i);
            }
            return;
        }
        self.write_run(producer, batch, range);
    }

    fn keep(&mut self, producer: usize, batch: EpbBatch) -> Option<EpbBatch> {
        if batch.unshared() {
            return Some(batch);
        }
        self.kept.push((producer, batch));
        None
    }

    fn returned(&mut self) -> Option<(usize, EpbBatch)> {
        // Every write lets go of all it held at once: the last kept is as
        // good a test as any.
        if self.kept.last().is_some_and(|(_, b)| b.unshared()) {
            return self.kept.pop();
        }
        None
    }

    fn round(&mut self) {
        if self.ended {
            return;
        }
        if let Some(out) = &mut self.out {
            if let Err(e) = out.batch_done() {
                self.current_failed(e);
            }
        }
    }
}

/// The type of the block at `at` in `buf`.
pub(crate) fn block_type(buf: &[u8], at: usize) -> Option<u32> {
    word(buf, at)
}

/// The 32-bit word at `at` in `buf`, if it is there.
pub(crate) fn word(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at + 4)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// The total length of the block at `at` in `buf`, if its header is
/// there.
pub(crate) fn block_len(buf: &[u8], at: usize) -> Option<usize> {
    let b = buf.get(at + 4..at + 8)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

impl Drop for PcapngOutput {
    /// Writes out what is still buffered (whole blocks, so the file stays
    /// valid; the statistics are only written by `finish`). An output
    /// never started writes nothing (see `PcapOutput`'s drop).
    fn drop(&mut self) {
        if !self.failed.is_set() && !self.header_in_buf && self.pending() > 0 {
            let _ = self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::merged::merge;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::{Block, PcapNgReader};
    use pcap_file::DataLink;
    use std::process::Command;

    use crate::consumers::files::{Format, PcapOutput};
    use crate::format::pcapng::tests::{iface, packet, temp_file};
    use crate::options::Precision;
    use crate::packet::{LinkType, Packet};
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    use pcap_file::pcapng::blocks::section_header::SectionHeaderOption;
    /// The merger's part of the merged file, per packet: two streams'
    /// batches (one ring block each, their packets interleaved in time
    /// as a 2-cpu flood interleaves them, runs of 1 or 2) merged into a
    /// file on /dev/null. Run pinned (`taskset -c 1 cargo test --release
    /// --lib per_packet_cost -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn merge_per_packet_cost() {
        use crate::consumers::merged::merge::{Limits, Merger, Sink};
        let data = [0x5au8; 64];
        let per_block = 3276usize;
        let s = section(Precision::Micro);
        let mut file =
            MergedFile::create("/dev/null", s.clone(), false, None, Box::new(|| {})).unwrap();
        let mut merger = Merger::new(2, Limits::for_retire_ms(20));
        let mut spares: Vec<Vec<EpbBatch>> = vec![Vec::new(), Vec::new()];
        let mut t = 1_000_000u32;
        let fill = |b: &mut EpbBatch, producer: u32, round: u32| {
            b.clear();
            let mut p = packet(&data);
            p.hash = 0x1234_5678;
            for i in 0..per_block as u32 {
                // Runs of 1 or 2 packets per stream: stream 0 takes the
                // even nanoseconds, stream 1 the odd, and every third
                // packet of stream 0 comes twice in a row.
                p.sec = 1_700_000_000 + round;
                p.nsec = 4 * i + producer * (1 + (i % 3 == 0) as u32);
                let info = PacketInfo {
                    hash: Some(p.hash),
                    ..PacketInfo::new(producer, &p)
                };
                b.push(
                    s.precision,
                    &info,
                    &Frame::new(LinkType::Ethernet, 262_144, &p),
                );
            }
        };
        struct Recycle<'f, 'a> {
            file: &'f mut MergedFile<'a>,
            spares: &'f mut Vec<Vec<EpbBatch>>,
        }
        impl Sink<EpbBatch> for Recycle<'_, '_> {
            fn emit(&mut self, producer: usize, batch: &EpbBatch, index: usize) {
                self.file.emit(producer, batch, index);
            }
            fn done(&mut self, producer: usize, batch: EpbBatch) {
                self.spares[producer].push(batch);
            }
        }
        let rounds = 100u32;
        let mut best = f64::MAX;
        for _ in 0..20 {
            // Filling is the workers' part: not timed.
            let mut batches = Vec::new();
            for r in 0..rounds {
                for (producer, spare) in spares.iter_mut().enumerate() {
                    let mut b = spare.pop().unwrap_or_default();
                    fill(&mut b, producer as u32, t + r);
                    batches.push((producer, b));
                }
            }
            t += rounds;
            let start = std::time::Instant::now();
            for (producer, b) in batches {
                merger.push(producer, b);
                merger.release(
                    0,
                    &mut Recycle {
                        file: &mut file,
                        spares: &mut spares,
                    },
                );
            }
            let ns = start.elapsed().as_nanos() as f64;
            best = best.min(ns / (2 * rounds as usize * per_block) as f64);
        }
        eprintln!("{best:.1} ns per packet (best of 20)");
    }

    #[test]
    fn a_reused_batch_writes_every_byte() {
        // Blocks written over stale bytes (a batch back from the merger)
        // equal blocks encoded into zeroed memory.
        let long = [0xffu8; 200];
        let mut batch = EpbBatch::new();
        let mut p = packet(&long);
        p.hash = 0xffff_ffff;
        let info = PacketInfo {
            flags: u32::MAX,
            hash: Some(u32::MAX),
            hash_is_toeplitz: true,
            queue: Some(u32::MAX),
            ..PacketInfo::new(0, &p)
        };
        for _ in 0..4 {
            batch.push(
                Precision::Nano,
                &info,
                &Frame::new(LinkType::Ethernet, 262_144, &p),
            );
        }
        batch.clear();
        let mut want = Vec::new();
        for (n, hash, queue) in [
            (61, Some(0x1234_5678), None),
            (62, None, Some(3)),
            (63, None, None),
        ] {
            let data = vec![0xabu8; n];
            let p = packet(&data);
            let f = Frame::new(LinkType::Ethernet, 262_144, &p);
            let info = PacketInfo {
                hash,
                queue,
                ..PacketInfo::new(1, &p)
            };
            batch.push(Precision::Micro, &info, &f);
            let mut fresh = Vec::new();
            encode_epb(&mut fresh, Precision::Micro, &info, &f);
            want.push(fresh);
        }
        for (i, fresh) in want.iter().enumerate() {
            assert_eq!(batch.block(i), &fresh[..], "block {i}");
        }
    }

    fn section(precision: Precision) -> Section {
        Section::new(
            vec![
                iface("lo", "lo cpu0", LinkType::Ethernet),
                iface("lo", "lo cpu1", LinkType::Ethernet),
                iface("any", "any queue 2", LinkType::LinuxSll2),
            ],
            precision,
        )
    }

    /// Writes a file of three interfaces with packets on each; returns
    /// what was written.
    fn write_sample(path: &str, precision: Precision) -> Vec<PacketInfo> {
        let s = section(precision);
        let mut out = PcapngOutput::create(path, &s, false).unwrap();
        // Ethernet with the local experimental EtherType 0x88b5: a frame
        // dissectors take as plain data.
        let mut frame: Vec<u8> = (0u8..98).collect();
        frame[12..14].copy_from_slice(&[0x88, 0xb5]);
        let mut infos = Vec::new();
        for i in 0..6u32 {
            let mut p = packet(&frame);
            p.protocol = u16::from_ne_bytes([0x88, 0xb5]);
            p.nsec = 100 * i;
            p.pkttype = if i % 2 == 0 { 0 } else { 4 };
            let interface = i % 3;
            let link = s.interfaces[interface as usize].link;
            let f = Frame::new(link, s.interfaces[interface as usize].snaplen, &p);
            let info = PacketInfo {
                interface,
                sec: p.sec,
                nsec: p.nsec,
                flags: epb_flags(p.pkttype),
                hash: (i != 1).then_some(0xdead_0000 + i),
                hash_is_toeplitz: i == 2,
                queue: (interface == 2).then_some(2),
            };
            if i < 3 {
                out.write_packet(&info, &f).unwrap();
            } else {
                // The merger's way: encoded by a worker, copied as a block.
                let mut batch = EpbBatch::new();
                batch.push(precision, &info, &f);
                out.write_block(batch.block(0)).unwrap();
            }
            infos.push(info);
        }
        let stats: Vec<InterfaceStats> = (0..3)
            .map(|i| InterfaceStats {
                start_ns: 1_700_000_000_000_000_000,
                end_ns: 1_700_000_005_000_000_000,
                ifrecv: 2 + i,
                ifdrop: i,
                osdrop: if i == 2 { 1 } else { 0 },
            })
            .collect();
        out.finish(&stats).unwrap();
        assert_eq!(out.records(), 6);
        infos
    }

    #[test]
    fn pcap_file_reads_it_back() {
        let path = temp_file("readback.pcapng");
        let infos = write_sample(&path, Precision::Nano);
        let bytes = std::fs::read(&path).unwrap();
        let mut r = PcapNgReader::new(&bytes[..]).unwrap();
        let shb = r.section().clone();
        assert!(shb.options.contains(&SectionHeaderOption::UserApplication(
            USER_APPLICATION.into()
        )));
        assert!(USER_APPLICATION.starts_with("rxtxcpu "));
        let mut epbs = Vec::new();
        let mut isbs = 0;
        while let Some(block) = r.next_block() {
            match block.unwrap() {
                Block::EnhancedPacket(e) => epbs.push(e.into_owned()),
                Block::InterfaceStatistics(_) => isbs += 1,
                _ => {}
            }
        }
        assert_eq!(isbs, 3);
        assert_eq!(r.interfaces().len(), 3);
        assert_eq!(r.interfaces()[2].linktype, DataLink::LINUX_SLL2);
        assert!(r.interfaces()[0]
            .options
            .contains(&InterfaceDescriptionOption::IfDescription("lo cpu0".into())));
        assert_eq!(epbs.len(), infos.len());
        for (e, info) in epbs.iter().zip(&infos) {
            assert_eq!(e.interface_id, info.interface);
            // pcap-file reads the timestamp as nanoseconds: right for nano.
            assert_eq!(e.timestamp.as_nanos() as u64, info.timestamp_ns());
            assert!(e.options.contains(&EnhancedPacketOption::Flags(info.flags)));
            let hash = e.options.iter().find_map(|o| match o {
                EnhancedPacketOption::Hash(h) => Some(h.to_vec()),
                _ => None,
            });
            // epb_hash (Toeplitz) only where it was shown to be that.
            assert_eq!(
                hash,
                info.hash.filter(|_| info.hash_is_toeplitz).map(|h| [
                    &[TOEPLITZ][..],
                    &h.to_be_bytes()
                ]
                .concat())
            );
            let comment = e.options.iter().find_map(|o| match o {
                EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                _ => None,
            });
            assert_eq!(comment, info.hash.map(|h| format!("flow hash 0x{h:08x}")));
        }
        std::fs::remove_file(&path).unwrap();
    }

    fn have(tool: &str) -> bool {
        Command::new(tool).arg("-v").output().is_ok()
    }

    #[test]
    fn tshark_understands_every_option() {
        if !have("tshark") {
            eprintln!("tshark not installed: skipped");
            return;
        }
        for precision in [Precision::Micro, Precision::Nano] {
            let path = temp_file(&format!("tshark-{precision:?}.pcapng"));
            let infos = write_sample(&path, precision);
            let out = Command::new("tshark")
                .args(["-r", &path, "-T", "fields", "-E", "separator=|"])
                .args(["-e", "frame.interface_id", "-e", "frame.interface_name"])
                .args(["-e", "frame.interface_description"])
                .args(["-e", "frame.packet_flags_direction"])
                .args(["-e", "frame.packet_flags_reception_type"])
                .args(["-e", "frame.interface_queue", "-e", "frame.time_epoch"])
                .args(["-e", "frame.comment"])
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let lines: Vec<&str> = stdout.lines().collect();
            assert_eq!(lines.len(), infos.len(), "{stdout}");
            let descriptions = ["lo cpu0", "lo cpu1", "any queue 2"];
            let names = ["lo", "lo", "any"];
            for (line, info) in lines.iter().zip(&infos) {
                let f: Vec<&str> = line.split('|').collect();
                let i = info.interface as usize;
                assert_eq!(f[0], i.to_string(), "{line}");
                assert_eq!(f[1], names[i], "{line}");
                assert_eq!(f[2], descriptions[i], "{line}");
                // A bit field: tshark prints it in hex.
                let direction = format!("0x{:08x}", info.flags & 3);
                assert_eq!(f[3], direction, "{line}");
                let reception = if info.flags & 3 == OUTBOUND { "0" } else { "1" };
                assert_eq!(f[4], reception, "{line}");
                assert_eq!(f[5], if i == 2 { "2" } else { "" }, "{line}");
                let want = match precision {
                    Precision::Nano => format!("1700000000.{:09}", info.nsec),
                    Precision::Micro => format!("1700000000.{:06}000", info.nsec / 1000),
                };
                assert_eq!(f[6], want, "{line}");
                // The flow hash, in the comment Wireshark filters on.
                let comment = info.hash.map(|h| format!("flow hash 0x{h:08x}"));
                assert_eq!(f[7], comment.unwrap_or_default(), "{line}");
            }
            // Nothing tshark could not make sense of.
            let verbose = Command::new("tshark")
                .args(["-r", &path, "-V"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&verbose.stdout);
            let errors = String::from_utf8_lossy(&verbose.stderr);
            assert!(verbose.status.success(), "{errors}");
            // (The comments are expert infos of their own, Comment/Comment.)
            let experts = text
                .lines()
                .filter(|l| l.contains("Expert Info") && !l.contains("(Comment/Comment)"));
            assert!(
                !text.contains("Malformed") && experts.count() == 0,
                "{text}"
            );
            // (tshark warns when run as root; that is no complaint about
            // the file.)
            let complaints: Vec<&str> = errors
                .lines()
                .filter(|l| !l.starts_with("Running as user"))
                .collect();
            assert!(complaints.is_empty(), "{errors}");
            assert!(text.contains("Interface queue: 2"), "{text}");
            assert!(text.contains("Direction: Outbound (0x2)"), "{text}");
            assert!(text.contains("Reception type: Unicast (1)"), "{text}");
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn capinfos_sees_interfaces_and_statistics() {
        if !have("capinfos") {
            eprintln!("capinfos not installed: skipped");
            return;
        }
        let path = temp_file("capinfos.pcapng");
        write_sample(&path, Precision::Nano);
        let out = Command::new("capinfos").arg(&path).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("Number of packets:   6"), "{text}");
        assert!(text.contains("Number of interfaces in file: 3"), "{text}");
        assert!(text.contains("Description = any queue 2"), "{text}");
        assert!(text.contains("Time precision = nanoseconds (9)"), "{text}");
        assert!(
            text.contains("Encapsulation = Linux cooked-mode capture v2"),
            "{text}"
        );
        assert_eq!(
            text.matches("Number of stat entries = 1").count(),
            3,
            "{text}"
        );
        assert!(
            text.contains(&format!("Capture application: {USER_APPLICATION}")),
            "{text}"
        );
        assert!(text.contains("Capture oper-sys:    Linux "), "{text}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn failed_write_cuts_the_file_at_a_whole_block() {
        let path = temp_file("cut.pcapng");
        let s = section(Precision::Micro);
        let mut out = PcapngOutput::create(&path, &s, false).unwrap();
        let header = std::fs::metadata(&path).unwrap().len();
        let data = [9u8; 100];
        let p = packet(&data);
        let info = PacketInfo {
            sec: p.sec,
            nsec: p.nsec,
            ..PacketInfo::default()
        };
        let f = Frame::new(LinkType::Ethernet, 65_535, &p);
        for interface in [0, 1, 1] {
            let info = PacketInfo { interface, ..info };
            out.write_packet(&info, &f).unwrap();
        }
        let one = epb_len(&info, 100);
        // As if the disk took one block and a half, then failed.
        let partial = one + one / 2;
        out.file.write_all(&out.buf[..partial]).unwrap();
        out.fail(partial, &io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(out.records(), 1);
        // The other two, of interface 1, are counted as never written.
        assert_eq!(out.dropped(), &[0, 2, 0]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), header + one as u64);
        let e = out.write_packet(&info, &f).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert!(out.finish(&[]).is_err());
        drop(out);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), header + one as u64);
        let bytes = std::fs::read(&path).unwrap();
        let mut r = PcapNgReader::new(&bytes[..]).unwrap();
        let mut n = 0;
        while let Some(b) = r.next_block() {
            b.unwrap();
            n += 1;
        }
        assert_eq!(n, 3 + 1);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn failure_inside_the_header_leaves_whole_blocks_only() {
        let path = temp_file("cut-header.pcapng");
        let s = section(Precision::Micro);
        let mut buf = Vec::new();
        s.encode(&mut buf).unwrap();
        let shb = block_len(&buf, 0).unwrap();
        // As if the header's write got out the section header and part of
        // the first interface, then failed.
        let mut out = PcapngOutput::create(&path, &s, false).unwrap();
        out.buf = buf.clone();
        out.header_in_buf = true;
        out.written = 0;
        out.file.set_len(0).unwrap();
        out.file.write_all(&buf[..shb + 8]).unwrap();
        out.fail(shb + 8, &io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), shb as u64);
        drop(out);
        // Not even the section header: an empty file. (Of a file this
        // program created: one that was there stays as it was.)
        std::fs::remove_file(&path).unwrap();
        let mut out = PcapngOutput::create(&path, &s, false).unwrap();
        out.buf = buf;
        out.header_in_buf = true;
        out.written = 0;
        out.file.set_len(0).unwrap();
        out.file.write_all(&out.buf[..10]).unwrap();
        out.fail(10, &io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        drop(out);
        std::fs::remove_file(&path).unwrap();
    }

    /// Two workers' batches through the merger thread's loop into the
    /// merged file, rotated by size: every file stands alone, in time
    /// order, and the records add up.
    #[test]
    fn merged_and_rotated_files() {
        let dir = temp_file("merged");
        std::fs::create_dir_all(&dir).unwrap();
        let path = format!("{dir}/all.pcapng");
        let s = section(Precision::Nano);
        let rotation = crate::options::Rotation {
            size: Some(1_000_000),
            ..Default::default()
        };
        let ended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ended.clone();
        let mut file = MergedFile::with_clock(
            &path,
            s.clone(),
            true,
            Some(rotation),
            Box::new(move || flag.store(true, std::sync::atomic::Ordering::SeqCst)),
            || 0,
        )
        .unwrap();
        file.start().unwrap();
        let (feeds, inbox) = merge::channel::<EpbBatch>(2, 4);
        let per = 2000u32;
        let workers: Vec<_> = feeds
            .into_iter()
            .map(|feed| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let p = feed.producer() as u32;
                    let data = [p as u8; 1000];
                    for b in 0..per / 100 {
                        let mut batch = feed.spare().unwrap_or_default();
                        batch.clear();
                        for i in 0..100 {
                            let n = b * 100 + i;
                            let mut pk = packet(&data);
                            pk.nsec = (n * 2 + p) * 1000;
                            let info = PacketInfo {
                                interface: p,
                                sec: pk.sec,
                                nsec: pk.nsec,
                                flags: epb_flags(0),
                                ..PacketInfo::default()
                            };
                            let link = s.interfaces[p as usize].link;
                            batch.push(s.precision, &info, &Frame::new(link, 65_535, &pk));
                        }
                        assert!(feed.send(batch));
                    }
                })
            })
            .collect();
        let mut merger = merge::Merger::new(2, merge::Limits::for_retire_ms(20));
        let stats = merge::run(
            inbox,
            &mut merger,
            &mut file,
            std::time::Duration::from_millis(5),
            || 0,
        );
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(stats.items, 2 * per as u64);
        assert_eq!(stats.late, 0);
        let summary = file.finish(&[InterfaceStats::default(); 3]);
        assert!(summary.error.is_none(), "{:?}", summary.error);
        assert!(!ended.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(summary.records, 2 * per as u64);
        assert_eq!(summary.not_written, [0, 0, 0]);
        // Each EPB is 28 + 1000 + 12 + 4 bytes: about 960 per million.
        assert_eq!(summary.files, 5);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "all.pcapng",
                "all.pcapng1",
                "all.pcapng2",
                "all.pcapng3",
                "all.pcapng4"
            ]
        );
        let mut total = 0;
        let mut last = 0u64;
        for name in &names {
            let bytes = std::fs::read(format!("{dir}/{name}")).unwrap();
            let mut r = PcapNgReader::new(&bytes[..]).unwrap();
            while let Some(b) = r.next_block() {
                if let Block::EnhancedPacket(e) = b.unwrap() {
                    let t = e.timestamp.as_nanos() as u64;
                    assert!(t > last, "{name}: out of order");
                    last = t;
                    total += 1;
                }
            }
            assert_eq!(r.interfaces().len(), 3, "{name}");
            if have("capinfos") {
                let out = Command::new("capinfos")
                    .arg(format!("{dir}/{name}"))
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(out.status.success(), "{name}: {text}");
                assert!(text.contains("Strict time order:   True"), "{name}: {text}");
            }
        }
        assert_eq!(total, 2 * per as u64);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    static NOW: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

    /// -G 1 -W 2 on the merged file: the second rotation ends the writing,
    /// says so once, and counts what was not written; with -U every round
    /// is on disk at once.
    #[test]
    fn merged_file_limit_and_packet_buffering() {
        use crate::consumers::merged::merge::{Limits, Merger, Sink};
        use std::sync::atomic::{AtomicU32, Ordering};
        let dir = temp_file("merged-limit");
        std::fs::create_dir_all(&dir).unwrap();
        let path = format!("{dir}/g-%s.pcapng");
        let s = section(Precision::Micro);
        let rotation = crate::options::Rotation {
            seconds: Some(1),
            count: Some(2),
            ..Default::default()
        };
        static ENDS: AtomicU32 = AtomicU32::new(0);
        NOW.store(100, Ordering::SeqCst);
        let mut file = MergedFile::with_clock(
            &path,
            s.clone(),
            true,
            Some(rotation),
            Box::new(|| {
                ENDS.fetch_add(1, Ordering::SeqCst);
            }),
            || NOW.load(Ordering::SeqCst),
        )
        .unwrap();
        file.start().unwrap();
        let first = format!("{dir}/g-100.pcapng");
        let header = std::fs::metadata(&first).unwrap().len();
        let mut merger = Merger::new(3, Limits::for_retire_ms(20));
        let data = [1u8; 60];
        let batch_at = |t: u32| {
            let mut b = EpbBatch::new();
            let mut p = packet(&data);
            p.nsec = t;
            b.push(
                s.precision,
                &PacketInfo::new(1, &p),
                &Frame::new(LinkType::Ethernet, 65_535, &p),
            );
            b
        };
        for p in [0, 2] {
            merger.end(p);
        }
        merger.push(1, batch_at(1000));
        merger.release(0, &mut file);
        file.round();
        // -U: on disk after the round.
        assert!(std::fs::metadata(&first).unwrap().len() > header);
        NOW.store(101, Ordering::SeqCst);
        merger.push(1, batch_at(2000));
        merger.release(0, &mut file);
        assert!(std::fs::metadata(format!("{dir}/g-101.pcapng")).is_ok());
        NOW.store(102, Ordering::SeqCst);
        merger.push(1, batch_at(3000));
        merger.push(1, batch_at(4000));
        merger.end(1);
        merger.release(0, &mut file);
        file.round();
        assert_eq!(ENDS.load(Ordering::SeqCst), 1);
        let summary = file.finish(&[InterfaceStats::default(); 3]);
        assert!(summary.limit_reached);
        assert!(summary.error.is_none());
        assert_eq!(summary.files, 2);
        assert_eq!(summary.records, 2);
        assert_eq!(summary.not_written, [0, 2, 0]);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["g-100.pcapng", "g-101.pcapng"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A file that cannot be created at a rotation ends the writing with
    /// that error; the files so far stay whole.
    #[test]
    fn merged_file_rotation_failure() {
        use crate::consumers::merged::merge::{Limits, Merger};
        let dir = temp_file("merged-fail");
        std::fs::create_dir_all(&dir).unwrap();
        let path = format!("{dir}/m.pcapng");
        let s = section(Precision::Micro);
        let rotation = crate::options::Rotation {
            size: Some(1_000_000),
            ..Default::default()
        };
        let mut file = MergedFile::with_clock(
            &path,
            s.clone(),
            false,
            Some(rotation),
            Box::new(|| {}),
            || 0,
        )
        .unwrap();
        file.start().unwrap();
        let data = [1u8; 1000];
        let mut b = EpbBatch::new();
        for i in 0..1500 {
            let mut p = packet(&data);
            p.nsec = i;
            b.push(
                s.precision,
                &PacketInfo::new(0, &p),
                &Frame::new(LinkType::Ethernet, 65_535, &p),
            );
        }
        let mut merger = Merger::new(1, Limits::for_retire_ms(20));
        merger.push(0, b);
        merger.end(0);
        // The directory goes away under the capture: m.pcapng1 cannot be
        // made.
        std::fs::remove_dir_all(&dir).unwrap();
        merger.release(0, &mut file);
        let summary = file.finish(&[]);
        let e = summary.error.expect("an error");
        assert_eq!(
            e.to_string(),
            format!("{dir}/m.pcapng1: No such file or directory")
        );
        assert_eq!(summary.files, 1);
        assert_eq!(summary.records + summary.not_written[0], 1500);
        assert!(
            summary.records > 900 && summary.records < 1000,
            "{}",
            summary.records
        );
    }

    #[test]
    fn the_merger_thread_can_own_its_parts() {
        fn send<T: Send>() {}
        send::<MergedFile<'static>>();
        send::<merge::Inbox<EpbBatch>>();
        send::<merge::Feed<EpbBatch>>();
        send::<merge::Merger<EpbBatch>>();
    }

    #[test]
    fn full_device_fails_at_create() {
        let e = PcapngOutput::create("/dev/full", &section(Precision::Micro), false)
            .err()
            .unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    }

    /// The record PcapOutput writes for `p`: the bytes after its 16-byte
    /// record header, and the header's orig_len.
    pub(crate) fn pcap_record(link: LinkType, snaplen: u32, p: &Packet) -> (Vec<u8>, u32) {
        let path = temp_file(&format!("rec-{link:?}-{snaplen}"));
        let mut out = PcapOutput::create(
            &path,
            Format {
                link,
                snaplen,
                precision: Precision::Nano,
                packet_buffered: false,
            },
        )
        .unwrap();
        out.write(p).unwrap();
        out.flush().unwrap();
        drop(out);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let orig = u32::from_ne_bytes(bytes[36..40].try_into().unwrap());
        (bytes[40..].to_vec(), orig)
    }

    pub(crate) fn frame_bytes(f: &Frame) -> Vec<u8> {
        f.parts().concat()
    }

    #[test]
    fn frames_are_the_pcap_records_byte_for_byte() {
        let frame: Vec<u8> = (0u8..=255).cycle().take(300).collect();
        for link in [LinkType::Ethernet, LinkType::Raw, LinkType::LinuxSll2] {
            for vlan in [None, Some((0x88a8, 0x0123))] {
                for cut in [0usize, 5, 12, 13, 14, 20, 60, 300] {
                    for snaplen in [1u32, 4, 12, 15, 16, 17, 20, 21, 30, 64, 299, 65_535] {
                        let mut p = packet(&frame[..cut]);
                        p.len = 300;
                        p.vlan = vlan;
                        p.pkttype = 4;
                        let file_snaplen = link.snaplen(snaplen);
                        let f = Frame::new(link, file_snaplen, &p);
                        let (want, orig) = pcap_record(link, snaplen, &p);
                        let what = format!("{link:?} vlan {vlan:?} cut {cut} snaplen {snaplen}");
                        assert_eq!(frame_bytes(&f), want, "{what}");
                        assert_eq!(f.caplen() as usize, want.len(), "{what}");
                        assert_eq!(f.orig_len(), orig, "{what}");
                    }
                }
            }
        }
    }
    /// The workers' per-packet cost of the merged file: 64-byte frames
    /// encoded into a batch a ring block's worth at a time, as
    /// MergedStream does. Not a test: `cargo test --release --lib
    /// epb_per_packet_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn epb_per_packet_cost() {
        let data = [0x5au8; 64];
        let mut p = packet(&data);
        p.hash = 0x1234_5678;
        let mut batch = EpbBatch::new();
        let (per_block, rounds) = (3276usize, 300usize);
        let mut best = f64::MAX;
        for _ in 0..20 {
            let t = std::time::Instant::now();
            for _ in 0..rounds {
                batch.clear();
                for i in 0..per_block {
                    p.nsec = i as u32;
                    let info = PacketInfo {
                        hash: (p.hash != 0).then_some(p.hash),
                        queue: None,
                        ..PacketInfo::new(0, &p)
                    };
                    batch.push(
                        Precision::Micro,
                        &info,
                        &Frame::new(LinkType::Ethernet, 262_144, std::hint::black_box(&p)),
                    );
                }
                std::hint::black_box(&batch);
            }
            best = best.min(t.elapsed().as_nanos() as f64 / (rounds * per_block) as f64);
        }
        eprintln!("{best:.1} ns per packet (best of 20)");
    }

    /// Two streams' batches of mixed sizes (runs of one stream short and
    /// long, blocks from 60 to 9000 bytes), merged into a file: `sealed`
    /// batches as workers send them (long runs written from the batches),
    /// or not (every block copied). Returns the file's bytes and the
    /// batches handed back for reuse before the file was closed.
    fn merge_mixed(name: &str, sealed: bool, packet_buffered: bool) -> (Vec<u8>, usize) {
        use crate::consumers::merged::merge::{Limits, Merger, Sink};
        struct Back<'f, 'a> {
            file: &'f mut MergedFile<'a>,
            back: usize,
        }
        impl Back<'_, '_> {
            fn give_back(&mut self) {
                while let Some((_, b)) = self.file.returned() {
                    assert!(b.unshared());
                    self.back += 1;
                }
            }
        }
        impl Sink<EpbBatch> for Back<'_, '_> {
            fn emit(&mut self, producer: usize, batch: &EpbBatch, index: usize) {
                self.file.emit(producer, batch, index);
                self.give_back();
            }
            fn emit_run(
                &mut self,
                producer: usize,
                batch: &EpbBatch,
                range: std::ops::Range<usize>,
            ) {
                self.file.emit_run(producer, batch, range);
                self.give_back();
            }
            fn done(&mut self, producer: usize, batch: EpbBatch) {
                if self.file.keep(producer, batch).is_some() {
                    self.back += 1;
                }
            }
            fn round(&mut self) {
                self.file.round();
                self.give_back();
            }
        }
        let path = temp_file(name);
        let s = section(Precision::Nano);
        let mut file =
            MergedFile::create(&path, s.clone(), packet_buffered, None, Box::new(|| {})).unwrap();
        let mut merger = Merger::new(2, Limits::for_retire_ms(20));
        let sizes = [60usize, 64, 600, 1000, 1023, 1024, 1500, 4000, 9000];
        let mut sink = Back {
            file: &mut file,
            back: 0,
        };
        for round in 0..40u32 {
            for producer in 0..2 {
                let mut b = EpbBatch::new();
                // Stream 0 in runs of 1 to 5 packets between stream 1's.
                let n = if producer == 0 {
                    1 + round as usize % 5
                } else {
                    3
                };
                for i in 0..n {
                    let len = sizes[(round as usize * 7 + i * 3 + producer) % sizes.len()];
                    let data: Vec<u8> = (0..len).map(|j| (j + i) as u8).collect();
                    let mut p = packet(&data);
                    p.sec = 1_700_000_000 + round;
                    p.nsec = (i * 10 + producer * 5) as u32;
                    let info = PacketInfo::new(producer as u32, &p);
                    b.push(
                        s.precision,
                        &info,
                        &Frame::new(LinkType::Ethernet, 262_144, &p),
                    );
                }
                if sealed {
                    b.seal();
                }
                merger.push(producer, b);
            }
            if round % 3 == 2 {
                // Every item is past the window: emitted in order, a run
                // of a stream at a time.
                merger.release(u64::MAX, &mut sink);
                sink.round();
            }
        }
        merger.release(u64::MAX, &mut sink);
        sink.round();
        let back = sink.back;
        assert!(file.finish(&[]).error.is_none());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        (bytes, back)
    }

    #[test]
    fn runs_written_from_the_batches_equal_copies() {
        for packet_buffered in [false, true] {
            let (copied, back) = merge_mixed("copied", false, packet_buffered);
            // Unsealed batches are never held: all back at once.
            assert_eq!(back, 80);
            let (shared, back) = merge_mixed("shared", true, packet_buffered);
            assert_eq!(shared.len(), copied.len());
            assert!(shared == copied, "the files differ");
            if packet_buffered {
                // Each round written at its end: every batch came back.
                assert_eq!(back, 80);
            } else {
                // Those whose bytes were written before the end did.
                assert!(back > 0 && back < 80, "{back}");
            }
            // Every packet, in time order, read back whole.
            let mut r = PcapNgReader::new(&shared[..]).unwrap();
            let (mut n, mut last) = (0, std::time::Duration::ZERO);
            while let Some(b) = r.next_block() {
                if let Block::EnhancedPacket(e) = b.unwrap() {
                    assert!(e.timestamp >= last);
                    last = e.timestamp;
                    assert_eq!(e.data.len(), e.original_len as usize);
                    assert!(e.data.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
                    n += 1;
                }
            }
            assert_eq!(n, (0..40).map(|r| 1 + r % 5 + 3).sum::<usize>());
        }
    }

    #[test]
    fn a_failed_write_counts_the_blocks_of_the_batches_it_held() {
        // Blocks written from a batch and copied ones, then a write that
        // got only part of them out: the whole blocks among those are in
        // the file, the rest counted per interface.
        let path = temp_file("shared-fail");
        let s = section(Precision::Micro);
        let mut out = PcapngOutput::create(&path, &s, false).unwrap();
        let mut batch = EpbBatch::new();
        let data = [0x11u8; 1400];
        for interface in [1, 1, 1] {
            let p = packet(&data);
            let info = PacketInfo::new(interface, &p);
            batch.push(
                s.precision,
                &info,
                &Frame::new(LinkType::Ethernet, 262_144, &p),
            );
        }
        batch.seal();
        let small = [0x22u8; 60];
        let p = packet(&small);
        let info = PacketInfo::new(0, &p);
        let mut copy = Vec::new();
        encode_epb(
            &mut copy,
            s.precision,
            &info,
            &Frame::new(LinkType::Ethernet, 262_144, &p),
        );
        out.write_blocks(&copy, 1).unwrap();
        let shared = batch.shared().unwrap().clone();
        out.write_shared(&shared, batch.span(0..3), 3).unwrap();
        out.write_blocks(&copy, 1).unwrap();
        assert!(!batch.unshared());
        // The first copied block and one from the batch got out, and half
        // of the next.
        let one = batch.span(0..1).len();
        let partial = copy.len() + one + one / 2;
        let written = out.written as usize;
        let mut pending = out.buf[..copy.len()].to_vec();
        pending.extend_from_slice(&shared[batch.span(0..2)]);
        out.file.write_all(&pending[..partial]).unwrap();
        out.fail(partial, &io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(out.records(), 2);
        assert_eq!(out.dropped(), &[1, 2, 0]);
        // The file was cut back to its last whole block, and lets go of
        // the batch.
        assert_eq!(
            std::fs::metadata(&path).unwrap().len() as usize,
            written + copy.len() + one
        );
        drop(shared);
        assert!(batch.unshared());
        std::fs::remove_file(&path).unwrap();
    }
}
