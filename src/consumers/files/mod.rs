//! Pcap output: per-stream file names, link types and records.

use pcap_file::pcap::PcapHeader;
use pcap_file::{Endianness, PcapError, TsResolution};
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::fd::AsFd;

use crate::consumers::destination::{self, Kind};
use crate::options::Precision;
use crate::packet::Frame;
use crate::packet::LinkType;
use crate::packet::Packet;

mod stream;

pub use stream::{BlockWriter, StreamFile, Written};

/// Bytes buffered per output before a write(2): large writes, none per
/// packet.
const BUFFER: usize = 256 * 1024;

/// The file of a stream: its suffix (the cpu, queue or node number) goes
/// before the extension (`out.pcap` -> `out-0.pcap`, `out` -> `out-0`). A
/// leading dot does not start an extension (`.cap` -> `.cap-0`), and dots
/// in directory names do not count (`/tmp/x.y/out` -> `/tmp/x.y/out-0`).
pub fn stream_path(template: &str, suffix: impl std::fmt::Display) -> String {
    let base_start = template.rfind('/').map_or(0, |i| i + 1);
    let base = &template[base_start..];
    match base.rfind('.').filter(|&i| i > 0) {
        Some(dot) => {
            let dot = base_start + dot;
            format!("{}-{suffix}{}", &template[..dot], &template[dot..])
        }
        None => format!("{template}-{suffix}"),
    }
}

/// Packet bytes at least this long are written from where they lie in the
/// ring block (one iovec each); shorter ones are copied into the output's
/// buffer, where they join the record headers and any rebuilt header bytes
/// (a VLAN tag, an SLL2 header) in one iovec.
///
/// Measured (a veth flood from both cpus of a 2-vCPU VM, -w to tmpfs, cpu
/// per packet written in place against copied): copying is cheaper below
/// about 1 KiB (by 20% at 256 bytes, 6-10% at 512-768, 2-3% at 1024); from
/// 1200 to 4000 bytes the two are within a few percent either way, and
/// from jumbo frames on writing in place wins (16% at 9000 bytes, 20% for
/// 60000-byte packets on lo). The kernel's own work per page of tmpfs is
/// most of the cost at every size; what writing in place saves in user
/// time (the copy, about 100 ns per 1500 bytes) its copy from the ring
/// mostly spends again (an iovec segment more per packet, and the ring's
/// cache misses move into it), while the 256 KiB buffer stays in cache.
pub const COPY_BELOW: usize = 1200;

/// The most iovecs one writev(2) takes (UIO_MAXIOV; sysconf(_SC_IOV_MAX)
/// on Linux): more fail with EINVAL.
pub(crate) const IOV_MAX: usize = 1024;

/// A piece of the bytes waiting to be written: a range of the output's
/// buffer, or bytes in a ring block, borrowed for as long as the block is
/// (`'b`), so the block cannot go back to the kernel before they are
/// written.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Piece<'b> {
    Buffer { start: usize, end: usize },
    Ring(&'b [u8]),
}

impl Piece<'_> {
    fn len(&self) -> usize {
        match *self {
            Piece::Buffer { start, end } => end - start,
            Piece::Ring(s) => s.len(),
        }
    }
}

/// The whole records among the first `done` bytes of `pieces` (after the
/// file header, if `header`): the offset they end at, and how many. A
/// record's header is always in `buf`, whole in one piece: it is appended
/// to the buffer before any ring piece of its record, and the buffer is
/// split into pieces only where a ring piece comes in.
fn whole_records(buf: &[u8], pieces: &[Piece], done: usize, header: bool) -> (usize, u64) {
    let mut at = if header { FILE_HEADER_LEN } else { 0 };
    if done < at {
        return (0, 0);
    }
    let (mut whole, mut records) = (at, 0);
    let mut pieces = pieces.iter();
    let (mut piece, mut base) = (pieces.next(), 0);
    while at + RECORD_HEADER_LEN <= done {
        while let Some(p) = piece.filter(|p| at >= base + p.len()) {
            base += p.len();
            piece = pieces.next();
        }
        let Some(&Piece::Buffer { start, end }) = piece else {
            debug_assert!(false, "a record header outside the buffer");
            break;
        };
        let h = start + (at - base);
        debug_assert!(
            h + RECORD_HEADER_LEN <= end,
            "a record header across pieces"
        );
        let caplen = u32::from_ne_bytes([buf[h + 8], buf[h + 9], buf[h + 10], buf[h + 11]]);
        at += RECORD_HEADER_LEN + caplen as usize;
        if at > done {
            break;
        }
        (whole, records) = (at, records + 1);
    }
    (whole, records)
}

/// Where one stream's pcap goes.
///
/// Records are collected whole and written with one write(2) per 256 KiB
/// buffer (or per batch with -U), never one per packet. Through a
/// [`BlockWriter`] they are written with one copy: the record headers and
/// small packets in the buffer, larger packet bytes where they lie in the
/// ring block, all in one writev(2) per block. The file on disk therefore
/// always ends at a record boundary, except after a failed write: then the
/// file is cut back to its last whole record, so a full disk or an I/O
/// error leaves a file every pcap reader accepts.
pub struct PcapOutput {
    /// The file name, or `-` for stdout; for messages.
    pub path: String,
    file: File,
    /// What the output was when opened.
    kind: Kind,
    /// Record headers, copied packets and rebuilt header bytes (and, until
    /// it is written, the file header): with the ring pieces of a
    /// [`BlockWriter`] between them, the bytes to write next.
    buf: Vec<u8>,
    /// With ring pieces waiting: how much of `buf` they already cover (the
    /// rest of `buf` follows the last of them).
    mark: usize,
    /// Bytes waiting to be written: `buf` and any ring pieces.
    pending: usize,
    /// The iovec list for writev(2), empty between writes (kept for its
    /// memory; see [`recycle`]).
    iov: Vec<IoSlice<'static>>,
    /// Records waiting.
    buffered: u64,
    /// Bytes in the file (or written to the stream): whole records only.
    written: u64,
    /// Records in the file.
    records: u64,
    /// Whether `buf` starts with the file header.
    header_in_buf: bool,
    /// A write failed: nothing more is written.
    failed: WriteFailure,
    nano: bool,
    link: LinkType,
    snaplen: u32,
    packet_buffered: bool,
}

/// The parameters every output of a capture shares.
#[derive(Clone, Copy, Debug)]
pub struct Format {
    pub link: LinkType,
    pub snaplen: u32,
    pub precision: Precision,
    pub packet_buffered: bool,
}

fn io_error(e: PcapError) -> io::Error {
    match e {
        PcapError::IoError(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

/// Length of the pcap file header.
const FILE_HEADER_LEN: usize = 24;
/// Length of a pcap record header.
const RECORD_HEADER_LEN: usize = 16;

/// An emptied Vec's memory, for elements of another lifetime: how the
/// iovec and piece lists are kept between ring blocks without keeping
/// anything that points into one. Collecting a `vec::IntoIter` through a
/// `map` into elements of the same size and alignment reuses its
/// allocation (std's in-place collect); should that ever change, this
/// allocates once per block, never per packet.
pub(crate) fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter()
        .map(|_| unreachable!("the vector was emptied"))
        .collect()
}

/// Writes `pieces` (of `buf` and of ring blocks) in order with writev(2),
/// [`IOV_MAX`] at a time, resuming after a short write. On an error,
/// returns it with how many bytes got out. `iov` lends its memory.
pub(crate) fn write_pieces<'a>(
    out: &mut impl Write,
    buf: &'a [u8],
    pieces: &[Piece<'a>],
    iov: &mut Vec<IoSlice<'static>>,
) -> Result<usize, (usize, io::Error)> {
    let slice = |p: &Piece<'a>| -> &'a [u8] {
        match *p {
            Piece::Buffer { start, end } => &buf[start..end],
            Piece::Ring(s) => s,
        }
    };
    let mut list: Vec<IoSlice<'_>> = recycle(std::mem::take(iov));
    // The first piece not yet written whole, and how much of it was.
    let (mut first, mut skip, mut done) = (0, 0, 0);
    let result = loop {
        let Some(next) = pieces.get(first) else {
            break Ok(done);
        };
        list.clear();
        list.push(IoSlice::new(&slice(next)[skip..]));
        for p in pieces[first + 1..].iter().take(IOV_MAX - 1) {
            list.push(IoSlice::new(slice(p)));
        }
        match out.write_vectored(&list) {
            Ok(0) => break Err((done, io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                done += n;
                skip += n;
                while let Some(p) = pieces.get(first).filter(|p| skip >= p.len()) {
                    skip -= p.len();
                    first += 1;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err((done, e)),
        }
    };
    *iov = recycle(list);
    result
}

impl PcapOutput {
    /// Opens `path` (`-`: stdout) without changing it (see
    /// [`crate::consumers::destination`]), with the pcap file header waiting in the
    /// buffer for [`PcapOutput::start`]. A FIFO with no reader is waited
    /// for.
    pub(crate) fn open(path: &str, format: Format) -> io::Result<PcapOutput> {
        PcapOutput::open_as(path, format, true)
    }

    fn open_as(path: &str, format: Format, wait: bool) -> io::Result<PcapOutput> {
        let (file, kind) = destination::open(path, wait)?;
        let snaplen = format.link.snaplen(format.snaplen);
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen,
            datalink: format.link.datalink(),
            ts_resolution: match format.precision {
                Precision::Micro => TsResolution::MicroSecond,
                Precision::Nano => TsResolution::NanoSecond,
            },
            endianness: Endianness::native(),
        };
        let mut buf = Vec::with_capacity(BUFFER);
        header.write_to(&mut buf).map_err(io_error)?;
        debug_assert_eq!(buf.len(), FILE_HEADER_LEN);
        Ok(PcapOutput {
            path: path.to_string(),
            file,
            kind,
            pending: buf.len(),
            buf,
            mark: 0,
            iov: Vec::new(),
            buffered: 0,
            written: 0,
            records: 0,
            header_in_buf: true,
            failed: WriteFailure::default(),
            nano: format.precision == Precision::Nano,
            link: format.link,
            snaplen,
            packet_buffered: format.packet_buffered,
        })
    }

    /// Writes the file header at once, so the output is a valid (empty)
    /// pcap file from the start and a file system that cannot take even
    /// that fails here, before the capture starts. A file that was there
    /// is overwritten from its start and cut to the header only once that
    /// is written: one that cannot take it stays as it was.
    pub(crate) fn start(&mut self) -> io::Result<()> {
        match self.flush() {
            Ok(()) => {}
            // The reader of the pipe is gone already: not an error to stop
            // the start for. The worker sees the pipe's POLLERR and ends
            // the capture as when the reader goes later.
            Err(e) if self.kind.pipe() && e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e),
        }
        if self.kind == Kind::Existing {
            self.file.set_len(self.written)?;
        }
        Ok(())
    }

    /// Opens and starts `path` at once: a file that exists is replaced,
    /// as tcpdump opens each file of a rotation. A FIFO with no reader
    /// fails (ENXIO) rather than holding the capture up.
    pub fn create(path: &str, format: Format) -> io::Result<PcapOutput> {
        let mut out = PcapOutput::open_as(path, format, false)?;
        out.start()?;
        Ok(out)
    }

    /// Whether this run created the file (a failed start removes it).
    pub(crate) fn created(&self) -> bool {
        self.kind == Kind::Created
    }

    /// Whether the file was there before (started last, never removed).
    pub(crate) fn existed(&self) -> bool {
        self.kind == Kind::Existing
    }

    /// Nothing more is written (a pipe whose reader has gone): what is
    /// buffered never gets there.
    pub fn abandon(&mut self, e: &io::Error) {
        if !self.failed.is_set() {
            self.failed.set(e);
            self.buf = Vec::new();
            self.mark = 0;
            self.pending = 0;
            self.buffered = 0;
        }
    }

    /// Whether a write failed (nothing more is written).
    pub fn failed(&self) -> bool {
        self.failed.is_set()
    }

    /// Appends one packet, copying it. The 16-byte record header is
    /// written here rather than through pcap_file's PcapWriter, which
    /// offers no way to flush its writer for -U; the file header above is
    /// pcap_file's, so byte order and magic agree (native order, as libpcap
    /// writes).
    #[cfg(test)]
    pub fn write(&mut self, p: &Packet) -> io::Result<()> {
        self.append(None, p)
    }

    /// Appends one packet: its record as [`Frame`] builds it (the frame as
    /// captured, cut to the snap length, with a stripped VLAN tag put back
    /// or an SLL2 header in front: what libpcap writes). With `ring`, the
    /// packet's bytes of at least [`COPY_BELOW`] are not copied but listed
    /// there, to be written from the ring block by
    /// [`PcapOutput::flush_with`].
    #[inline]
    fn append<'b>(&mut self, ring: Option<&mut Vec<Piece<'b>>>, p: &Packet<'b>) -> io::Result<()> {
        self.failed.check()?;
        let frame = Frame::new(self.link, self.snaplen, p);
        let (pre, head, rest) = frame.pieces();
        let caplen = frame.caplen() as usize;
        // Only a packet with bytes worth it is written from the ring.
        let mut ring = ring.filter(|_| pre.len().max(rest.len()) >= COPY_BELOW);
        let small = |s: &[u8]| if s.len() < COPY_BELOW { s.len() } else { 0 };
        let copied = RECORD_HEADER_LEN
            + match ring {
                Some(_) => small(pre) + head.len() + small(rest),
                None => caplen,
            };
        self.reserve(copied, ring.as_deref_mut())?;
        let frac = if self.nano { p.nsec } else { p.nsec / 1000 };
        let mut h = [0u8; RECORD_HEADER_LEN];
        for (i, field) in [p.sec, frac, caplen as u32, frame.orig_len()]
            .iter()
            .enumerate()
        {
            h[i * 4..i * 4 + 4].copy_from_slice(&field.to_ne_bytes());
        }
        self.buf.extend_from_slice(&h);
        match ring {
            None => {
                self.buf.extend_from_slice(pre);
                self.buf.extend_from_slice(head);
                self.buf.extend_from_slice(rest);
            }
            Some(ring) => {
                self.put(pre, ring);
                self.buf.extend_from_slice(head);
                self.put(rest, ring);
            }
        }
        self.pending += RECORD_HEADER_LEN + caplen;
        self.buffered += 1;
        Ok(())
    }

    /// Appends packet bytes: by reference into `ring` if they are worth it,
    /// else copied.
    #[inline]
    fn put<'b>(&mut self, bytes: &'b [u8], ring: &mut Vec<Piece<'b>>) {
        if bytes.len() < COPY_BELOW {
            self.buf.extend_from_slice(bytes);
            return;
        }
        if self.mark < self.buf.len() {
            ring.push(Piece::Buffer {
                start: self.mark,
                end: self.buf.len(),
            });
            self.mark = self.buf.len();
        }
        ring.push(Piece::Ring(bytes));
    }

    /// Makes room for `len` more bytes in the buffer: writes out what
    /// waits first (ring pieces too) if they would not fit.
    fn reserve(&mut self, len: usize, ring: Option<&mut Vec<Piece<'_>>>) -> io::Result<()> {
        if !self.buf.is_empty() && self.buf.len() + len > BUFFER {
            match ring {
                Some(ring) => self.flush_with(ring)?,
                None => self.flush()?,
            }
        }
        Ok(())
    }

    /// Called after each batch of packets: with -U, pushes them out now.
    pub fn batch_done(&mut self) -> io::Result<()> {
        if self.packet_buffered {
            self.flush()?;
        }
        Ok(())
    }

    /// For a pipe (stdout, a FIFO): the descriptor to watch for POLLERR,
    /// which poll() reports on a pipe's write end once its reader has
    /// gone. That lets `| tcpdump -c 3 -r -` end the capture at once, not
    /// at the next packet (also when the reader was gone before the
    /// header: the start does not fail for that).
    pub fn watch_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.kind.pipe().then(|| self.file.as_fd())
    }

    /// Records in the file (or written to stdout) so far: after a failed
    /// write, what the file still holds.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Records the file holds once what is buffered is written: what a
    /// rotation closes it with.
    pub fn held(&self) -> u64 {
        self.records + self.buffered
    }

    /// The file's size with what is buffered: what tcpdump's -C compares
    /// (its ftell()).
    pub fn size(&self) -> u64 {
        self.written + self.pending as u64
    }

    /// Writes out everything buffered. On failure the file is cut back to
    /// its last whole record and nothing more is written to it.
    pub fn flush(&mut self) -> io::Result<()> {
        self.flush_with(&mut Vec::new())
    }

    /// Writes out everything waiting: the buffer, and `ring`, the pieces
    /// of ring blocks listed by [`PcapOutput::append`] (left empty, also
    /// on failure: nothing points into a ring block afterwards). Only the
    /// list given to `append` may be given here (the pieces interleave
    /// with the buffer), which [`BlockWriter`] ensures.
    fn flush_with(&mut self, ring: &mut Vec<Piece<'_>>) -> io::Result<()> {
        if let Err(e) = self.failed.check() {
            ring.clear();
            return Err(e);
        }
        if !ring.is_empty() && self.mark < self.buf.len() {
            ring.push(Piece::Buffer {
                start: self.mark,
                end: self.buf.len(),
            });
        }
        let all = [Piece::Buffer {
            start: 0,
            end: self.buf.len(),
        }];
        let pieces: &[Piece] = match (ring.is_empty(), self.buf.is_empty()) {
            (false, _) => ring,
            (true, false) => &all,
            (true, true) => &[],
        };
        let result = write_pieces(&mut self.file, &self.buf, pieces, &mut self.iov);
        if let Err((done, e)) = &result {
            self.fail(*done, pieces, e);
        }
        ring.clear();
        self.mark = 0;
        let done = result.map_err(|(_, e)| e)?;
        debug_assert_eq!(done, self.pending);
        self.written += done as u64;
        self.records += self.buffered;
        self.buffered = 0;
        self.pending = 0;
        self.header_in_buf = false;
        self.buf.clear();
        Ok(())
    }

    /// After a write that got only `done` bytes of `pieces` (all that was
    /// waiting) out: keeps the whole records among them and cuts a partial
    /// one off the file.
    fn fail(&mut self, done: usize, pieces: &[Piece], e: &io::Error) {
        self.failed.set(e);
        let (whole, records) = whole_records(&self.buf, pieces, done, self.header_in_buf);
        self.written += whole as u64;
        self.records += records;
        // Only our own file (see Kind::own_file), and not one that was
        // there before whose header could not be written over it: that
        // stays as it was.
        let existing_at_start = self.kind == Kind::Existing && self.header_in_buf;
        if whole < done && self.kind.own_file() && !existing_at_start {
            let _ = self.file.set_len(self.written);
        }
        self.buf = Vec::new();
        self.mark = 0;
        self.pending = 0;
        self.buffered = 0;
    }
}

/// How a file's write failed (kind and errno), kept so that every later
/// write gives the same error: a closed pipe stays a closed pipe for the
/// caller. Once set, nothing more is written, also not when the output is
/// dropped.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WriteFailure(Option<(io::ErrorKind, Option<i32>)>);

impl WriteFailure {
    pub(crate) fn set(&mut self, e: &io::Error) {
        self.0 = Some((e.kind(), e.raw_os_error()));
    }

    pub(crate) fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// The error again, if there was one.
    pub(crate) fn check(&self) -> io::Result<()> {
        match self.0 {
            None => Ok(()),
            Some((_, Some(errno))) => Err(io::Error::from_raw_os_error(errno)),
            Some((kind, None)) => Err(kind.into()),
        }
    }
}

impl Drop for PcapOutput {
    /// Writes out what is still buffered (a worker that unwinds drops its
    /// output without flushing); errors cannot be reported here. An output
    /// never started (its header still waiting: the capture did not
    /// start) writes nothing: a file that was there stays as it was.
    fn drop(&mut self) {
        if !self.failed.is_set() && !self.header_in_buf && !self.buf.is_empty() {
            let _ = self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Rotation;
    use crate::packet::SLL2_LEN;

    #[test]
    fn names() {
        assert_eq!(stream_path("out.pcap", 0), "out-0.pcap");
        assert_eq!(stream_path("out", 1), "out-1");
        assert_eq!(stream_path(".cap", 2), ".cap-2");
        assert_eq!(stream_path("/tmp/x.y/out", 0), "/tmp/x.y/out-0");
        assert_eq!(stream_path("/tmp/x.y/out.pcap", 3), "/tmp/x.y/out-3.pcap");
        assert_eq!(stream_path("a.b.pcap", 0), "a.b-0.pcap");
        assert_eq!(stream_path("dir/.hidden.pcap", 0), "dir/.hidden-0.pcap");
        assert_eq!(stream_path("out.", 0), "out-0.");
    }

    #[test]
    fn link_types() {
        assert_eq!(LinkType::for_hatype(1), LinkType::Ethernet);
        assert_eq!(LinkType::for_hatype(772), LinkType::Ethernet);
        assert_eq!(LinkType::for_hatype(0xfffe), LinkType::Raw);
        assert_eq!(LinkType::for_hatype(801), LinkType::LinuxSll2);
    }

    fn packet(data: &[u8]) -> Packet<'_> {
        Packet {
            sec: 1,
            nsec: 2_500,
            len: data.len() as u32,
            data,
            net_offset: 14,
            ifindex: 1,
            hatype: 1,
            pkttype: 0,
            protocol: 0x0008,
            halen: 6,
            addr: [0; 8],
            vlan: None,
            hash: 0,
        }
    }

    fn format(packet_buffered: bool) -> Format {
        Format {
            link: LinkType::Ethernet,
            snaplen: 65_535,
            precision: Precision::Micro,
            packet_buffered,
        }
    }

    fn temp_file(name: &str) -> String {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("rxtxcpu-output-{}-{name}", std::process::id()));
        path.to_str().unwrap().to_string()
    }

    #[test]
    fn header_at_once_records_buffered_until_flushed() {
        let path = temp_file("buffered");
        let mut out = PcapOutput::create(&path, format(false)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
        out.write(&packet(&[7; 60])).unwrap();
        out.batch_done().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
        out.flush().unwrap();
        assert_eq!(out.records(), 1);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 24 + 16 + 60);
        let u32_at = |i: usize| u32::from_ne_bytes(bytes[i..i + 4].try_into().unwrap());
        assert_eq!(u32_at(0), 0xa1b2_c3d4);
        // sec, usec, caplen, orig_len
        assert_eq!(
            [u32_at(24), u32_at(28), u32_at(32), u32_at(36)],
            [1, 2, 60, 60]
        );
        drop(out);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn failed_write_cuts_the_file_at_a_whole_record() {
        let path = temp_file("cut");
        let mut out = PcapOutput::create(&path, format(false)).unwrap();
        for _ in 0..3 {
            out.write(&packet(&[9; 100])).unwrap();
        }
        // As if the disk took one record and a half, then failed.
        let partial = 116 + 50;
        out.file.write_all(&out.buf[..partial]).unwrap();
        let all = [Piece::Buffer {
            start: 0,
            end: out.buf.len(),
        }];
        out.fail(partial, &all, &io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(out.records(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24 + 116);
        // Nothing more is written, not even when dropped; the error stays.
        let e = out.write(&packet(&[1; 10])).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(out.flush().unwrap_err().raw_os_error(), Some(libc::ENOSPC));
        drop(out);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24 + 116);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn stripped_vlan_tag_is_put_back() {
        let path = temp_file("vlan");
        let mut out = PcapOutput::create(&path, format(false)).unwrap();
        let frame: Vec<u8> = (0u8..60).collect();
        let mut p = packet(&frame);
        p.vlan = Some((0x8100, 0x2005));
        out.write(&p).unwrap();
        out.flush().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let rec = &bytes[24..];
        let u32_at = |i: usize| u32::from_ne_bytes(rec[i..i + 4].try_into().unwrap());
        assert_eq!((u32_at(8), u32_at(12)), (64, 64));
        let data = &rec[16..];
        assert_eq!(&data[..12], &frame[..12]);
        assert_eq!(&data[12..16], &[0x81, 0x00, 0x20, 0x05]);
        assert_eq!(&data[16..], &frame[12..]);
        drop(out);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn vlan_tag_with_any_snap_length() {
        let frame: Vec<u8> = (0u8..60).collect();
        for snaplen in 1..=70 {
            let path = temp_file(&format!("vlan-snap-{snaplen}"));
            let mut f = format(false);
            f.snaplen = snaplen;
            let mut out = PcapOutput::create(&path, f).unwrap();
            let data = &frame[..frame.len().min(snaplen as usize)];
            let mut p = packet(data);
            p.len = 60;
            p.vlan = Some((0x8100, 5));
            out.write(&p).unwrap();
            out.flush().unwrap();
            let bytes = std::fs::read(&path).unwrap();
            let caplen = u32::from_ne_bytes(bytes[32..36].try_into().unwrap());
            assert!(caplen <= snaplen, "snaplen {snaplen}: caplen {caplen}");
            assert_eq!(bytes.len(), 24 + 16 + caplen as usize);
            drop(out);
            std::fs::remove_file(&path).unwrap();
        }
    }

    /// A file that was there: opening changes nothing (not even when the
    /// output is dropped unstarted); starting writes the header over it
    /// and cuts it there.
    #[test]
    fn a_file_that_was_there_changes_only_at_the_start() {
        let path = temp_file("existing");
        std::fs::write(&path, vec![b'x'; 1000]).unwrap();
        let out = PcapOutput::open(&path, format(false)).unwrap();
        assert!(out.existed() && !out.created());
        drop(out);
        assert_eq!(std::fs::read(&path).unwrap(), vec![b'x'; 1000]);
        let mut out = PcapOutput::open(&path, format(false)).unwrap();
        out.start().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 24);
        assert_eq!(&bytes[..4], &0xa1b2_c3d4u32.to_ne_bytes());
        drop(out);
        std::fs::remove_file(&path).unwrap();
        let out = PcapOutput::open(&path, format(false)).unwrap();
        assert!(out.created() && !out.existed());
        drop(out);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn full_device_fails_at_create() {
        let e = PcapOutput::create("/dev/full", format(false))
            .err()
            .unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    }

    /// The record as PcapOutput built it before it wrote from the ring
    /// (its code then, verbatim in substance): the oracle both ways of
    /// writing must match byte for byte.
    fn reference_record(link: LinkType, snaplen: u32, nano: bool, p: &Packet) -> Vec<u8> {
        let snaplen = link.snaplen(snaplen) as usize;
        let frac = if nano { p.nsec } else { p.nsec / 1000 };
        let mut buf = Vec::new();
        let record = |buf: &mut Vec<u8>, caplen: u32, orig: u32| {
            for v in [p.sec, frac, caplen, orig] {
                buf.extend_from_slice(&v.to_ne_bytes());
            }
        };
        match link {
            LinkType::Ethernet if p.vlan.is_some() && p.data.len() >= 12 && snaplen >= 16 => {
                let (tpid, tci) = p.vlan.unwrap_or_default();
                let mut tag = [0u8; 4];
                tag[..2].copy_from_slice(&tpid.to_be_bytes());
                tag[2..].copy_from_slice(&tci.to_be_bytes());
                let rest = &p.data[12..p.data.len().min(snaplen.saturating_sub(4))];
                let caplen = (12 + 4 + rest.len()) as u32;
                record(&mut buf, caplen, (p.len + 4).max(caplen));
                buf.extend_from_slice(&p.data[..12]);
                buf.extend_from_slice(&tag);
                buf.extend_from_slice(rest);
            }
            LinkType::Ethernet | LinkType::Raw => {
                let data = &p.data[..p.data.len().min(snaplen)];
                let caplen = data.len() as u32;
                record(&mut buf, caplen, p.len.max(caplen));
                buf.extend_from_slice(data);
            }
            LinkType::LinuxSll2 => {
                let payload = &p.data[p.net_offset.min(p.data.len())..];
                let payload = &payload[..payload.len().min(snaplen.saturating_sub(SLL2_LEN))];
                let mut h = [0u8; SLL2_LEN];
                h[0..2].copy_from_slice(&p.protocol.to_ne_bytes());
                h[4..8].copy_from_slice(&p.ifindex.to_be_bytes());
                h[8..10].copy_from_slice(&p.hatype.to_be_bytes());
                h[10] = p.pkttype;
                h[11] = p.halen;
                h[12..20].copy_from_slice(&p.addr);
                let caplen = (SLL2_LEN + payload.len()) as u32;
                let orig =
                    (SLL2_LEN as u32 + p.len.saturating_sub(p.net_offset as u32)).max(caplen);
                record(&mut buf, caplen, orig);
                buf.extend_from_slice(&h);
                buf.extend_from_slice(payload);
            }
        }
        buf
    }

    /// A "ring block": packets of various sizes back to back, with gaps
    /// between them as in a real block, so a piece that strays shows.
    fn block_of(sizes: &[usize]) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
        let mut block = Vec::new();
        let mut at = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            block.resize(block.len() + 82, 0xee);
            let start = block.len();
            block.extend((0..n).map(|j| (i * 7 + j) as u8));
            at.push(start..block.len());
        }
        (block, at)
    }

    fn stream(path: &str, f: Format, rotation: Rotation) -> StreamFile {
        StreamFile::create(path, f, rotation).unwrap()
    }

    /// Writes `packets` per block (`per_block` at a time) through a
    /// BlockWriter, or copying with `copy`; returns the file's bytes.
    fn write_blocks(name: &str, f: Format, packets: &[Packet], per_block: usize) -> Vec<u8> {
        let path = temp_file(name);
        let mut file = stream(&path, f, Rotation::default());
        for chunk in packets.chunks(per_block) {
            let mut w = file.block();
            for p in chunk {
                assert_eq!(w.write(p).unwrap(), Written::Yes);
            }
            w.finish().unwrap();
        }
        file.flush().unwrap();
        assert_eq!(file.records(), packets.len() as u64);
        drop(file);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        bytes
    }

    fn write_copied(name: &str, f: Format, packets: &[Packet]) -> Vec<u8> {
        let path = temp_file(name);
        let mut out = PcapOutput::create(&path, f).unwrap();
        for p in packets {
            out.write(p).unwrap();
        }
        out.flush().unwrap();
        drop(out);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        bytes
    }

    #[test]
    fn both_ways_give_the_reference_records() {
        let sizes = [
            60, 1400, 1199, 1200, 1201, 14, 5, 0, 1514, 9000, 1216, 1217, 12, 13,
        ];
        let (block, at) = block_of(&sizes);
        for link in [LinkType::Ethernet, LinkType::Raw, LinkType::LinuxSll2] {
            for vlan in [None, Some((0x8100, 0x2005))] {
                for snaplen in [
                    1u32, 15, 16, 17, 21, 96, 1203, 1204, 1220, 1500, 65_535, 262_144,
                ] {
                    for nano in [false, true] {
                        let packets: Vec<Packet> = at
                            .iter()
                            .map(|r| {
                                let mut p = packet(&block[r.clone()]);
                                p.data = &p.data[..p.data.len().min(snaplen as usize)];
                                p.len = r.len() as u32;
                                p.vlan = vlan;
                                p
                            })
                            .collect();
                        let f = Format {
                            link,
                            snaplen,
                            precision: if nano {
                                Precision::Nano
                            } else {
                                Precision::Micro
                            },
                            packet_buffered: false,
                        };
                        let what = format!("{link:?} vlan {vlan:?} snaplen {snaplen} nano {nano}");
                        let name = format!("ref-{link:?}-{}-{snaplen}-{nano}", vlan.is_some());
                        let copied = write_copied(&name, f, &packets);
                        let want: Vec<u8> = packets
                            .iter()
                            .flat_map(|p| reference_record(link, snaplen, nano, p))
                            .collect();
                        assert_eq!(copied[24..], want[..], "copied: {what}");
                        for per_block in [1, 3, sizes.len()] {
                            let in_place = write_blocks(&name, f, &packets, per_block);
                            assert_eq!(in_place, copied, "in place, {per_block} per block: {what}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn recycled_lists_keep_their_memory() {
        let data = vec![1u8; 10];
        let mut v: Vec<Piece<'_>> = Vec::with_capacity(100);
        v.push(Piece::Ring(&data));
        let (ptr, cap) = (v.as_ptr() as usize, v.capacity());
        let w: Vec<Piece<'static>> = recycle(v);
        assert!(w.is_empty());
        // std's in-place collect; if this ever fails, recycle allocates
        // once per ring block (see its comment).
        assert_eq!((w.as_ptr() as usize, w.capacity()), (ptr, cap));
    }

    /// Takes at most `step` bytes per call, and every other call is
    /// interrupted; fails with ENOSPC once `room` bytes were taken.
    struct Stingy {
        got: Vec<u8>,
        step: usize,
        room: usize,
        calls: usize,
        max_iov: usize,
    }

    impl Write for Stingy {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            self.max_iov = self.max_iov.max(bufs.len());
            assert!(bufs.len() <= IOV_MAX);
            assert!(bufs.iter().all(|b| !b.is_empty()), "an empty iovec");
            if self.calls % 2 == 0 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let room = self.room - self.got.len();
            if room == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let mut n = self.step.min(room);
            let before = self.got.len();
            for b in bufs {
                let take = b.len().min(n);
                self.got.extend_from_slice(&b[..take]);
                n -= take;
            }
            Ok(self.got.len() - before)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn short_writes_resume_and_iovecs_come_in_iov_max_lots() {
        let buf: Vec<u8> = (0..=255).cycle().take(10_000).collect();
        let ring: Vec<u8> = (0..=255).rev().cycle().take(1_000_000).collect();
        // Buffer and ring pieces alternating: 3000 of them.
        let mut pieces = Vec::new();
        let mut want = Vec::new();
        // Where each piece starts in `want`.
        let mut want_at = vec![0];
        for i in 0..1500 {
            let (a, b) = (i % 10_000, (i + 3) % 10_000);
            let (start, end) = (a.min(b), a.max(b));
            pieces.push(Piece::Buffer { start, end });
            want.extend_from_slice(&buf[start..end]);
            want_at.push(want.len());
            let r = &ring[i * 600..i * 600 + 1 + i % 599];
            pieces.push(Piece::Ring(r));
            want.extend_from_slice(r);
            want_at.push(want.len());
        }
        for step in [1, 7, 4096, usize::MAX] {
            // Byte by byte only through the first pieces (each call lists
            // up to IOV_MAX of them again).
            let n = if step < 10 { 50 } else { pieces.len() };
            let (pieces, want) = (&pieces[..n], &want[..want_at[n]]);
            let mut w = Stingy {
                got: Vec::new(),
                step,
                room: usize::MAX,
                calls: 0,
                max_iov: 0,
            };
            let mut iov = Vec::new();
            let done = write_pieces(&mut w, &buf, pieces, &mut iov).unwrap();
            assert_eq!(done, want.len(), "step {step}");
            assert!(w.got == want, "step {step}: different bytes");
            assert!(iov.is_empty() && iov.capacity() >= IOV_MAX.min(pieces.len()));
            if step == usize::MAX {
                // 3000 pieces: two full lists and one of 952, with an
                // interrupted call between them.
                assert_eq!((w.calls, w.max_iov), (5, IOV_MAX));
            }
        }
        let mut w = Stingy {
            got: Vec::new(),
            step: 1000,
            room: 12_345,
            calls: 0,
            max_iov: 0,
        };
        let (done, e) = write_pieces(&mut w, &buf, &pieces, &mut Vec::new()).unwrap_err();
        assert_eq!((done, e.raw_os_error()), (12_345, Some(libc::ENOSPC)));
        assert!(w.got == want[..12_345]);
    }

    /// A failure in the middle of a block written in place: the file keeps
    /// the whole records before it, counted, and nothing more is written.
    #[test]
    fn failed_write_from_the_ring_cuts_at_a_whole_record() {
        let sizes = [1400, 60, 1400, 1400, 70, 2000, 30];
        let (block, at) = block_of(&sizes);
        let packets: Vec<Packet> = at.iter().map(|r| packet(&block[r.clone()])).collect();
        let record_ends: Vec<usize> = sizes
            .iter()
            .scan(24, |end, n| {
                *end += 16 + n;
                Some(*end)
            })
            .collect();
        for cut in [
            0,
            1,
            24 + 15,
            24 + 16 + 1399,
            24 + 1416,
            24 + 1416 + 40,
            3000,
            4400,
        ] {
            let path = temp_file(&format!("ring-cut-{cut}"));
            let mut out = PcapOutput::create(&path, format(false)).unwrap();
            let mut ring = Vec::new();
            for p in &packets {
                out.append(Some(&mut ring), p).unwrap();
            }
            assert_eq!(out.size(), *record_ends.last().unwrap() as u64);
            // What flush_with does, with a disk that takes `cut` bytes.
            if out.mark < out.buf.len() {
                ring.push(Piece::Buffer {
                    start: out.mark,
                    end: out.buf.len(),
                });
            }
            let mut disk = Stingy {
                got: Vec::new(),
                step: 100,
                room: cut,
                calls: 0,
                max_iov: 0,
            };
            let (done, e) = write_pieces(&mut disk, &out.buf, &ring, &mut out.iov).unwrap_err();
            assert_eq!(done, cut);
            out.file.write_all(&disk.got).unwrap();
            out.fail(done, &ring, &e);
            ring.clear();
            let whole = record_ends.iter().filter(|&&end| end - 24 <= cut).count();
            assert_eq!(out.records(), whole as u64, "cut {cut}");
            let len = if whole == 0 {
                24
            } else {
                record_ends[whole - 1]
            };
            assert_eq!(
                std::fs::metadata(&path).unwrap().len(),
                len as u64,
                "cut {cut}"
            );
            let e = out.write(&packets[0]).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
            // A later block writer cannot write either, and lists nothing.
            let mut again = vec![Piece::Ring(&block[..10])];
            assert!(out.flush_with(&mut again).is_err() && again.is_empty());
            drop(out);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), len as u64);
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn small_packets_wait_in_the_buffer_large_ones_go_with_their_block() {
        let (block, at) = block_of(&[60, 1400, 80]);
        let small = packet(&block[at[0].clone()]);
        let large = packet(&block[at[1].clone()]);
        let path = temp_file("trickle");
        let mut file = stream(&path, format(false), Rotation::default());
        let len = || std::fs::metadata(&path).unwrap().len();
        for _ in 0..3 {
            let mut w = file.block();
            w.write(&small).unwrap();
            w.finish().unwrap();
        }
        // A trickle of small packets is not written block by block.
        assert_eq!((len(), file.out.held(), file.records()), (24, 3, 0));
        let mut w = file.block();
        w.write(&small).unwrap();
        w.write(&large).unwrap();
        w.write(&small).unwrap();
        w.finish().unwrap();
        // A large one goes out with its block, with all before and after.
        assert_eq!(len(), 24 + 5 * 76 + 1416);
        assert_eq!(file.records(), 6);
        // Dropping an unfinished writer writes what points into the block.
        let mut w = file.block();
        w.write(&large).unwrap();
        drop(w);
        assert_eq!(len(), 24 + 5 * 76 + 2 * 1416);
        drop(file);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn packet_buffered_writes_every_block() {
        let (block, at) = block_of(&[60, 1400]);
        let path = temp_file("block-u");
        let mut file = stream(&path, format(true), Rotation::default());
        let mut w = file.block();
        w.write(&packet(&block[at[0].clone()])).unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24 + 76);
        let mut w = file.block();
        w.write(&packet(&block[at[1].clone()])).unwrap();
        w.write(&packet(&block[at[0].clone()])).unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24 + 2 * 76 + 1416);
        drop(file);
        std::fs::remove_file(&path).unwrap();
    }

    /// -C inside a ring block: the old file gets the block's pieces up to
    /// the rotation, the new one the rest; both as when copying.
    #[test]
    fn rotation_inside_a_block_matches_copying() {
        let sizes: Vec<usize> = (0..40).map(|i| [60, 1400, 1200, 90, 1514][i % 5]).collect();
        let (block, at) = block_of(&sizes);
        let packets: Vec<Packet> = at.iter().map(|r| packet(&block[r.clone()])).collect();
        let rotation = Rotation {
            size: Some(5_000),
            seconds: None,
            count: None,
        };
        let mut results = Vec::new();
        for in_place in [true, false] {
            let base = temp_file(&format!("rot-{in_place}"));
            let mut file = stream(&base, format(false), rotation);
            let mut w = file.block();
            w.in_place = in_place;
            for p in &packets {
                assert_eq!(w.write(p).unwrap(), Written::Yes);
            }
            w.finish().unwrap();
            file.flush().unwrap();
            assert_eq!(file.records(), 40);
            drop(file);
            let mut files = Vec::new();
            for i in 0.. {
                let name = if i == 0 {
                    base.clone()
                } else {
                    format!("{base}{i}")
                };
                let Ok(bytes) = std::fs::read(&name) else {
                    break;
                };
                std::fs::remove_file(&name).unwrap();
                files.push(bytes);
            }
            results.push(files);
        }
        assert!(results[0].len() > 3, "{} files", results[0].len());
        assert!(results[0] == results[1], "rotated files differ");
    }
}
