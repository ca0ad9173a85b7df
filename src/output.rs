//! Pcap output: per-stream file names, link types and records.

use pcap_file::pcap::PcapHeader;
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::Path;

use crate::afpacket::{ARPHRD_ETHER, ARPHRD_LOOPBACK};
use crate::cli::Precision;
use crate::ring::Packet;
use crate::rotate::{Decision, Rotation, Rotator};

/// Bytes buffered per output before a write(2): large writes, none per
/// packet.
const BUFFER: usize = 256 * 1024;

/// Length of a LINUX_SLL2 header.
const SLL2_LEN: usize = 20;

/// How packets are recorded, decided by the interface type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet headers: Ethernet devices and loopback.
    Ethernet,
    /// Bare IP, no link header: tun and other headerless IP devices.
    Raw,
    /// A synthesized LINUX_SLL2 header recording each packet's interface,
    /// hardware type and direction: the all-interfaces capture, where link
    /// types mix, and any device whose own headers pcap cannot name.
    LinuxSll2,
}

impl LinkType {
    /// The link type for a capture on one interface of hardware type
    /// `hatype` (ARPHRD_*), as libpcap maps them.
    pub fn for_hatype(hatype: u16) -> LinkType {
        const ARPHRD_TUNNEL: u16 = 768;
        const ARPHRD_TUNNEL6: u16 = 769;
        const ARPHRD_SIT: u16 = 776;
        const ARPHRD_IPGRE: u16 = 778;
        const ARPHRD_RAWIP: u16 = 519;
        const ARPHRD_NONE: u16 = 0xfffe;
        match hatype {
            ARPHRD_ETHER | ARPHRD_LOOPBACK => LinkType::Ethernet,
            ARPHRD_NONE | ARPHRD_RAWIP | ARPHRD_TUNNEL | ARPHRD_TUNNEL6 | ARPHRD_SIT
            | ARPHRD_IPGRE => LinkType::Raw,
            _ => LinkType::LinuxSll2,
        }
    }

    fn datalink(self) -> DataLink {
        match self {
            LinkType::Ethernet => DataLink::ETHERNET,
            LinkType::Raw => DataLink::RAW,
            LinkType::LinuxSll2 => DataLink::LINUX_SLL2,
        }
    }

    /// The snapshot length of the file for a requested `snaplen`: a
    /// cooked record holds its SLL2 header and at least one byte, so
    /// libpcap raises a smaller snap length to 21; so does this.
    pub fn snaplen(self, snaplen: u32) -> u32 {
        match self {
            LinkType::LinuxSll2 => snaplen.max(SLL2_LEN as u32 + 1),
            LinkType::Ethernet | LinkType::Raw => snaplen,
        }
    }

    /// tcpdump's name for it.
    pub fn describe(self) -> &'static str {
        match self {
            LinkType::Ethernet => "EN10MB (Ethernet)",
            LinkType::Raw => "RAW (Raw IP)",
            LinkType::LinuxSll2 => "LINUX_SLL2 (Linux cooked v2)",
        }
    }
}

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

/// Where one stream's pcap goes.
///
/// Records are collected in a buffer of whole records and written with one
/// write(2) per buffer (or per batch with -U), never one per packet. The
/// file on disk therefore always ends at a record boundary, except after a
/// failed write: then the file is cut back to its last whole record, so a
/// full disk or an I/O error leaves a file every pcap reader accepts.
pub struct PcapOutput {
    /// The file name, or `-` for stdout; for messages.
    pub path: String,
    file: File,
    /// Whole records (and, until it is written, the file header).
    buf: Vec<u8>,
    /// Records in `buf`.
    buffered: u64,
    /// Bytes in the file (or written to the stream): whole records only.
    written: u64,
    /// Records in the file.
    records: u64,
    /// Whether `buf` starts with the file header.
    header_in_buf: bool,
    /// A write failed (how: kind and errno): nothing more is written,
    /// also not when dropped.
    failed: Option<(io::ErrorKind, Option<i32>)>,
    nano: bool,
    link: LinkType,
    snaplen: usize,
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

impl PcapOutput {
    /// Creates (truncating) the file, or takes stdout for `-`, and writes
    /// the pcap file header. A file gets its header at once, so it is a
    /// valid (empty) pcap file from the start and a file system that cannot
    /// take even that fails here, before the capture starts.
    pub fn create(path: &str, format: Format) -> io::Result<PcapOutput> {
        let stdout = path == "-";
        let file = if stdout {
            // A dup of fd 1 as a File: std's Stdout is line buffered, which
            // would flush at every 0x0a byte of binary pcap data.
            File::from(io::stdout().as_fd().try_clone_to_owned()?)
        } else {
            File::create(Path::new(path))?
        };
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
        let mut out = PcapOutput {
            path: path.to_string(),
            file,
            buf,
            buffered: 0,
            written: 0,
            records: 0,
            header_in_buf: true,
            failed: None,
            nano: format.precision == Precision::Nano,
            link: format.link,
            snaplen: snaplen as usize,
            packet_buffered: format.packet_buffered,
        };
        if !stdout || format.packet_buffered {
            match out.flush() {
                Ok(()) => {}
                // The reader of stdout is gone already: not an error to
                // stop the start for. The worker sees the pipe's POLLERR
                // and ends the capture as when the reader goes later.
                Err(e) if stdout && e.kind() == io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Appends one packet. The 16-byte record header is written here
    /// rather than through pcap_file's PcapWriter, which offers no way to
    /// flush its writer for -U; the file header above is pcap_file's, so
    /// byte order and magic agree (native order, as libpcap writes).
    pub fn write(&mut self, p: &Packet) -> io::Result<()> {
        self.check_failed()?;
        let frac = if self.nano { p.nsec } else { p.nsec / 1000 };
        match self.link {
            // Below 16 bytes there is no room for the addresses and a tag:
            // such records stay as the kernel gave them.
            LinkType::Ethernet if p.vlan.is_some() && p.data.len() >= 12 && self.snaplen >= 16 => {
                // The device took the VLAN tag off the frame; put it back
                // after the MAC addresses, as libpcap does, so the file
                // shows the frame as it was on the wire.
                let (tpid, tci) = p.vlan.unwrap_or_default();
                let mut tag = [0u8; 4];
                tag[..2].copy_from_slice(&tpid.to_be_bytes());
                tag[2..].copy_from_slice(&tci.to_be_bytes());
                let rest = &p.data[12..p.data.len().min(self.snaplen.saturating_sub(4))];
                let caplen = (12 + 4 + rest.len()) as u32;
                self.reserve(RECORD_HEADER_LEN + caplen as usize)?;
                self.record(p.sec, frac, caplen, (p.len + 4).max(caplen));
                self.buf.extend_from_slice(&p.data[..12]);
                self.buf.extend_from_slice(&tag);
                self.buf.extend_from_slice(rest);
            }
            LinkType::Ethernet | LinkType::Raw => {
                // The kernel already cut the packet to the snap length (the
                // filter's return value); caplen is what it copied.
                let data = &p.data[..p.data.len().min(self.snaplen)];
                let caplen = data.len() as u32;
                self.reserve(RECORD_HEADER_LEN + data.len())?;
                self.record(p.sec, frac, caplen, p.len.max(caplen));
                self.buf.extend_from_slice(data);
            }
            LinkType::LinuxSll2 => {
                // The network header may lie beyond what a small snap
                // length let the kernel copy; the wire length still counts
                // from it.
                let payload = &p.data[p.net_offset.min(p.data.len())..];
                let payload = &payload[..payload.len().min(self.snaplen.saturating_sub(SLL2_LEN))];
                let mut h = [0u8; SLL2_LEN];
                h[0..2].copy_from_slice(&p.protocol.to_ne_bytes()); // network order already
                h[4..8].copy_from_slice(&p.ifindex.to_be_bytes());
                h[8..10].copy_from_slice(&p.hatype.to_be_bytes());
                h[10] = p.pkttype;
                h[11] = p.halen;
                h[12..20].copy_from_slice(&p.addr);
                let caplen = (SLL2_LEN + payload.len()) as u32;
                let orig =
                    (SLL2_LEN as u32 + p.len.saturating_sub(p.net_offset as u32)).max(caplen);
                self.reserve(RECORD_HEADER_LEN + caplen as usize)?;
                self.record(p.sec, frac, caplen, orig);
                self.buf.extend_from_slice(&h);
                self.buf.extend_from_slice(payload);
            }
        }
        self.buffered += 1;
        Ok(())
    }

    /// Makes room for a record of `len` bytes: writes the buffer out first
    /// if the record would not fit.
    fn reserve(&mut self, len: usize) -> io::Result<()> {
        if !self.buf.is_empty() && self.buf.len() + len > BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    fn record(&mut self, sec: u32, frac: u32, caplen: u32, orig: u32) {
        self.buf.extend_from_slice(&sec.to_ne_bytes());
        self.buf.extend_from_slice(&frac.to_ne_bytes());
        self.buf.extend_from_slice(&caplen.to_ne_bytes());
        self.buf.extend_from_slice(&orig.to_ne_bytes());
    }

    /// Called after each batch of packets: with -U, pushes them out now.
    pub fn batch_done(&mut self) -> io::Result<()> {
        if self.packet_buffered {
            self.flush()?;
        }
        Ok(())
    }

    /// For a pipe on stdout: the descriptor to watch for POLLERR, which
    /// poll() reports on a pipe's write end once its reader has gone. That
    /// lets `| tcpdump -c 3 -r -` end the capture at once, not at the next
    /// packet.
    pub fn watch_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        (self.path == "-").then(|| self.file.as_fd())
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
        self.written + self.buf.len() as u64
    }

    /// Writes out everything buffered. On failure the file is cut back to
    /// its last whole record and nothing more is written to it.
    pub fn flush(&mut self) -> io::Result<()> {
        self.check_failed()?;
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
        self.written += done as u64;
        self.records += self.buffered;
        self.buffered = 0;
        self.header_in_buf = false;
        self.buf.clear();
        Ok(())
    }

    /// After a write failed: the same error again (a closed pipe stays a
    /// closed pipe for the caller).
    fn check_failed(&self) -> io::Result<()> {
        match self.failed {
            None => Ok(()),
            Some((_, Some(errno))) => Err(io::Error::from_raw_os_error(errno)),
            Some((kind, None)) => Err(kind.into()),
        }
    }

    /// After a write that got only `done` bytes of the buffer out: keeps the
    /// whole records among them and cuts a partial one off the file.
    fn fail(&mut self, done: usize, e: &io::Error) {
        self.failed = Some((e.kind(), e.raw_os_error()));
        let mut whole = 0;
        let mut records = 0;
        if self.header_in_buf {
            if done < FILE_HEADER_LEN {
                // Not even the file header: leave our file empty (stdout
                // is not ours to cut, see below).
                if self.path != "-" {
                    let _ = self.file.set_len(0);
                }
                return;
            }
            whole = FILE_HEADER_LEN;
        }
        while let Some(h) = self.buf.get(whole..whole + RECORD_HEADER_LEN) {
            let caplen = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]) as usize;
            let end = whole + RECORD_HEADER_LEN + caplen;
            if end > done {
                break;
            }
            whole = end;
            records += 1;
        }
        self.written += whole as u64;
        self.records += records;
        if whole < done && self.path != "-" {
            // Only our own file: stdout may be a pipe, where nothing can be
            // taken back, or a file opened for appending, whose earlier
            // content is not ours to cut.
            let _ = self.file.set_len(self.written);
        }
        self.buf = Vec::new();
        self.buffered = 0;
    }
}

/// One stream's pcap files: a [`PcapOutput`], and with -C/-G/-W the next
/// one when [`Rotator`] says so (tcpdump's rules and names, after the
/// stream suffix: `out-0.pcap`, `out-0.pcap1`, ...). Every file is
/// complete on its own: the old one is flushed before the next is made.
pub struct StreamFile {
    out: PcapOutput,
    format: Format,
    rotator: Option<Rotator>,
    /// Records in the files closed by rotation (overwritten ones too).
    closed: u64,
    /// The time for rotation decisions, in seconds since the epoch: set
    /// once per ring block, as tcpdump reads time(NULL) per packet.
    now: i64,
}

/// What [`StreamFile::write`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Yes,
    /// -G with -W: the last file is done; the packet was not written and
    /// the capture ends (tcpdump: "Maximum file limit reached").
    Limit,
}

impl StreamFile {
    /// Creates the stream's first file: `path`, or its first rotated name.
    pub fn create(path: &str, format: Format, rotation: Rotation) -> io::Result<StreamFile> {
        let now = unix_now();
        let rotator = if rotation.is_on() && path != "-" {
            Some(Rotator::new(path, rotation, now).map_err(name_error)?)
        } else {
            None
        };
        let first = rotator.as_ref().map_or(path, |r| r.current());
        Ok(StreamFile {
            out: PcapOutput::create(first, format)?,
            format,
            rotator,
            closed: 0,
            now,
        })
    }

    /// The file being written (for messages).
    pub fn path(&self) -> &str {
        &self.out.path
    }

    /// Reads the clock for the rotation decisions of the next packets.
    pub fn tick(&mut self) {
        if self.rotator.is_some() {
            self.now = unix_now();
        }
    }

    /// Writes one packet, to the next file if it is time to rotate. An
    /// error names the file it is about.
    pub fn write(&mut self, p: &Packet) -> Result<Written, (String, io::Error)> {
        let at = |path: &str, e| (path.to_string(), e);
        if let Some(r) = &mut self.rotator {
            match r.before_packet(self.out.size(), self.out.held(), self.now) {
                Ok(Decision::Keep) => {}
                Ok(Decision::Stop) => return Ok(Written::Limit),
                Err(e) => return Err(at(r.current(), name_error(e))),
                Ok(Decision::Rotate { name }) => {
                    self.out.flush().map_err(|e| at(&self.out.path, e))?;
                    let next = PcapOutput::create(&name, self.format).map_err(|e| at(&name, e))?;
                    self.closed += self.out.records();
                    self.out = next;
                }
            }
        }
        self.out
            .write(p)
            .map(|()| Written::Yes)
            .map_err(|e| at(&self.out.path, e))
    }

    pub fn batch_done(&mut self) -> io::Result<()> {
        self.out.batch_done()
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn watch_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.out.watch_fd()
    }

    /// Records written to this stream's files, those in files the -W ring
    /// overwrote included (see [`StreamFile::rotated_away`]).
    pub fn records(&self) -> u64 {
        self.closed + self.out.records()
    }

    /// Files the -W ring (or a -G name that came round again) overwrote,
    /// and the records they held.
    pub fn rotated_away(&self) -> (u64, u64) {
        self.rotator
            .as_ref()
            .map_or((0, 0), |r| (r.rotated_away(), r.records_lost()))
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn name_error(e: crate::rotate::NameError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

impl Drop for PcapOutput {
    /// Writes out what is still buffered (a worker that unwinds drops its
    /// output without flushing); errors cannot be reported here.
    fn drop(&mut self) {
        if self.failed.is_none() && !self.buf.is_empty() {
            let _ = self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        out.fail(partial, &io::Error::from_raw_os_error(libc::ENOSPC));
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

    #[test]
    fn full_device_fails_at_create() {
        let e = PcapOutput::create("/dev/full", format(false))
            .err()
            .unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    }
}
