//! One stream's files: [`StreamFile`] (a [`PcapOutput`] and, with
//! -C/-G/-W, its rotation) and [`BlockWriter`] (a ring block's packets
//! written straight from the ring).

use std::io;

use crate::consumers::files::{recycle, Format, PcapOutput, Piece, WriteFailure};
use crate::consumers::rotate::{Decision, Rotator};
use crate::options::Rotation;
use crate::packet::Packet;

/// One stream's pcap files: a `PcapOutput`, and with -C/-G/-W the next
/// one when `Rotator` says so (tcpdump's rules and names, after the
/// stream suffix: `out-0.pcap`, `out-0.pcap1`, ...). Every file is
/// complete on its own: the old one is flushed before the next is made.
pub struct StreamFile {
    pub(super) out: PcapOutput,
    format: Format,
    rotator: Option<Rotator>,
    /// Records in the files closed by rotation (overwritten ones too).
    closed: u64,
    /// The time for rotation decisions, in seconds since the epoch: set
    /// once per ring block, as tcpdump reads time(NULL) per packet.
    now: i64,
    /// A [`BlockWriter`]'s list of ring pieces, empty between blocks (kept
    /// for its memory).
    pieces: Vec<Piece<'static>>,
    /// How writing failed (a write, or making the next file of a
    /// rotation): nothing more is written to the stream's files.
    failed: WriteFailure,
    /// The test hook's second set of files (see [`test_hooks`]).
    #[cfg(debug_assertions)]
    shadow: Option<Box<StreamFile>>,
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
    /// Creates and starts the stream's first file: `path`, or its first
    /// rotated name.
    pub fn create(path: &str, format: Format, rotation: Rotation) -> io::Result<StreamFile> {
        let mut file = StreamFile::open(path, format, rotation)?;
        if let Err(e) = file.start() {
            file.remove_created();
            return Err(e);
        }
        Ok(file)
    }

    /// Opens the stream's first file (`path`, or its first rotated name)
    /// without changing it, for [`StreamFile::start`]; see
    /// [`crate::consumers::destination`]. An error is about the file
    /// [`StreamFile::path`] would name: the first rotated name.
    pub(crate) fn open(path: &str, format: Format, rotation: Rotation) -> io::Result<StreamFile> {
        #[allow(unused_mut)]
        let mut file = StreamFile::open_one(path, format, rotation)?;
        #[cfg(debug_assertions)]
        if test_hooks::copy_too() && file.out.kind.own_file() {
            match StreamFile::open_one(&format!("{path}.copy"), format, rotation) {
                Ok(shadow) => file.shadow = Some(Box::new(shadow)),
                Err(e) => {
                    file.remove_created();
                    return Err(e);
                }
            }
        }
        Ok(file)
    }

    /// The name of the first file of `path` under `rotation` (the name
    /// itself without rotation).
    pub fn first_name(path: &str, rotation: Rotation) -> io::Result<String> {
        if rotation.is_on() && path != "-" {
            let r = Rotator::new(path, rotation, unix_now()).map_err(name_error)?;
            Ok(r.current().to_string())
        } else {
            Ok(path.to_string())
        }
    }

    fn open_one(path: &str, format: Format, rotation: Rotation) -> io::Result<StreamFile> {
        let now = unix_now();
        let rotator = if rotation.is_on() && path != "-" {
            Some(Rotator::new(path, rotation, now).map_err(name_error)?)
        } else {
            None
        };
        let first = rotator.as_ref().map_or(path, |r| r.current());
        Ok(StreamFile {
            out: PcapOutput::open(first, format)?,
            format,
            rotator,
            closed: 0,
            now,
            pieces: Vec::new(),
            failed: WriteFailure::default(),
            #[cfg(debug_assertions)]
            shadow: None,
        })
    }

    /// Writes the file's header (see [`PcapOutput::start`]).
    pub(crate) fn start(&mut self) -> io::Result<()> {
        self.out.start()?;
        #[cfg(debug_assertions)]
        if let Some(s) = &mut self.shadow {
            s.start()?;
        }
        Ok(())
    }

    /// Whether the file was there before this run (see
    /// [`crate::run`]'s start: such files are started last).
    pub(crate) fn existed(&self) -> bool {
        self.out.existed()
    }

    /// Removes the file if this run created it (a start that failed); a
    /// file that was there before stays.
    pub(crate) fn remove_created(&self) {
        if self.out.created() {
            let _ = std::fs::remove_file(&self.out.path);
        }
        #[cfg(debug_assertions)]
        if let Some(s) = &self.shadow {
            s.remove_created();
        }
    }

    /// Whether writing failed: nothing more is written to the stream's
    /// files (they keep what they hold).
    pub fn failed(&self) -> bool {
        self.failed.is_set() || self.out.failed()
    }

    /// How writing failed, if it did.
    pub fn failure(&self) -> Option<io::Error> {
        self.failed
            .check()
            .and_then(|()| self.out.failed.check())
            .err()
    }

    /// The reader of the pipe has gone: nothing more is written, and what
    /// is buffered never gets there.
    pub fn abandon(&mut self, e: &io::Error) {
        self.failed.set(e);
        self.out.abandon(e);
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

    /// Starts writing the packets of one ring block (and reads the clock,
    /// as [`StreamFile::tick`]): their bytes are written from where they
    /// lie in the block, with one copy, by the kernel. The writer borrows
    /// the block's packets (`'b`) and writes what points into the block
    /// before it goes ([`BlockWriter::finish`], or when dropped), so the
    /// block cannot be handed back to the kernel before that.
    ///
    /// Packets shorter than [`COPY_BELOW`] are copied instead, and wait in
    /// the buffer as with [`StreamFile::write`] while no larger packet
    /// comes (so a trickle of small packets is not written block by
    /// block); larger ones are written at the end of their block, in one
    /// writev(2) with whatever the buffer held before them.
    pub fn block<'b>(&mut self) -> BlockWriter<'_, 'b> {
        self.tick();
        #[cfg(debug_assertions)]
        if let Some(s) = &mut self.shadow {
            // The same rotation decisions.
            s.now = self.now;
        }
        BlockWriter {
            pieces: recycle(std::mem::take(&mut self.pieces)),
            in_place: true,
            file: self,
        }
    }

    /// Writes one packet, copying it, to the next file if it is time to
    /// rotate. An error names the file it is about.
    pub fn write(&mut self, p: &Packet) -> Result<Written, (String, io::Error)> {
        self.put(None, p)
    }

    /// Writes one packet, listing its larger pieces in `ring` if given
    /// (see [`PcapOutput::append`]).
    #[inline]
    fn put<'b>(
        &mut self,
        ring: Option<&mut Vec<Piece<'b>>>,
        p: &Packet<'b>,
    ) -> Result<Written, (String, io::Error)> {
        let written = self.put_inner(ring, p);
        if let Err((_, e)) = &written {
            self.failed.set(e);
        }
        written
    }

    #[inline]
    fn put_inner<'b>(
        &mut self,
        mut ring: Option<&mut Vec<Piece<'b>>>,
        p: &Packet<'b>,
    ) -> Result<Written, (String, io::Error)> {
        let at = |path: &str, e| (path.to_string(), e);
        if let Some(r) = &mut self.rotator {
            match r.before_packet(self.out.size(), self.out.held(), self.now) {
                Ok(Decision::Keep) => {}
                Ok(Decision::Stop) => return Ok(Written::Limit),
                Err(e) => return Err(at(r.current(), name_error(e))),
                Ok(Decision::Rotate { name }) => {
                    let flushed = match ring.as_deref_mut() {
                        Some(ring) => self.out.flush_with(ring),
                        None => self.out.flush(),
                    };
                    flushed.map_err(|e| at(&self.out.path, e))?;
                    let next = PcapOutput::create(&name, self.format).map_err(|e| at(&name, e))?;
                    self.closed += self.out.records();
                    self.out = next;
                }
            }
        }
        self.out
            .append(ring, p)
            .map(|()| Written::Yes)
            .map_err(|e| at(&self.out.path, e))
    }

    pub fn batch_done(&mut self) -> io::Result<()> {
        self.out.batch_done()
    }

    pub fn flush(&mut self) -> io::Result<()> {
        #[cfg(debug_assertions)]
        if let Some(s) = &mut self.shadow {
            s.flush()?;
        }
        let flushed = self.out.flush();
        if let Err(e) = &flushed {
            self.failed.set(e);
        }
        flushed
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

/// Writes one ring block's packets to a stream's files (see
/// [`StreamFile::block`]): the packet bytes are listed where they lie in
/// the block, borrowed for `'b`, and written before this writer goes.
/// Since it has a destructor that writes them, the borrow checker keeps
/// the block (whose own destructor hands it back to the kernel) alive
/// until then. Here a buffer stands for the block:
///
/// ```no_run
/// # use rxtxcpu::{options::Precision, testing::*};
/// # let format = Format { link: LinkType::Ethernet, snaplen: 65_535,
/// #                       precision: Precision::Micro, packet_buffered: false };
/// let mut file = StreamFile::create("out.pcap", format, Default::default()).unwrap();
/// let block = vec![0u8; 1500];
/// let mut w = file.block();
/// # let p = Packet { sec: 0, nsec: 0, len: 1500, data: &block, net_offset: 14, ifindex: 1,
/// #                  hatype: 1, pkttype: 0, protocol: 8, halen: 6, addr: [0; 8],
/// #                  vlan: None, hash: 0 };
/// w.write(&p).unwrap(); // p.data is the block's bytes
/// w.finish().unwrap();
/// drop(block);
/// ```
///
/// ```compile_fail
/// # use rxtxcpu::{options::Precision, testing::*};
/// # let format = Format { link: LinkType::Ethernet, snaplen: 65_535,
/// #                       precision: Precision::Micro, packet_buffered: false };
/// let mut file = StreamFile::create("out.pcap", format, Default::default()).unwrap();
/// let block = vec![0u8; 1500];
/// let mut w = file.block();
/// # let p = Packet { sec: 0, nsec: 0, len: 1500, data: &block, net_offset: 14, ifindex: 1,
/// #                  hatype: 1, pkttype: 0, protocol: 8, halen: 6, addr: [0; 8],
/// #                  vlan: None, hash: 0 };
/// w.write(&p).unwrap();
/// drop(block); // error: `block` is borrowed by `w`, which writes it when it goes
/// ```
pub struct BlockWriter<'f, 'b> {
    file: &'f mut StreamFile,
    /// Ring pieces waiting, in file order between the buffer's bytes.
    pieces: Vec<Piece<'b>>,
    /// Whether packets are written from the ring (else copied, for tests).
    pub(super) in_place: bool,
}

impl<'b> BlockWriter<'_, 'b> {
    /// Writes one packet of the block, to the next file if it is time to
    /// rotate. An error names the file it is about.
    #[inline]
    pub fn write(&mut self, p: &Packet<'b>) -> Result<Written, (String, io::Error)> {
        let ring = self.in_place.then_some(&mut self.pieces);
        let written = self.file.put(ring, p)?;
        #[cfg(debug_assertions)]
        if let Some(s) = &mut self.file.shadow {
            assert_eq!(s.write(p)?, written, "the copy rotates otherwise");
        }
        Ok(written)
    }

    /// The block is done: writes what points into it, and with -U
    /// everything. An error is about the file [`StreamFile::path`] names.
    pub fn finish(mut self) -> io::Result<()> {
        #[cfg(debug_assertions)]
        if let Some(s) = &mut self.file.shadow {
            s.batch_done()?;
        }
        if self.pieces.is_empty() && !self.file.format.packet_buffered {
            return Ok(());
        }
        let flushed = self.file.out.flush_with(&mut self.pieces);
        if let Err(e) = &flushed {
            self.file.failed.set(e);
        }
        flushed
    }
}

impl Drop for BlockWriter<'_, '_> {
    /// Writes what still points into the block (after the -G -W limit, or
    /// when unwinding; errors cannot be reported here, as when a
    /// [`PcapOutput`] is dropped), then keeps the emptied list's memory.
    fn drop(&mut self) {
        if !self.pieces.is_empty() {
            let _ = self.file.out.flush_with(&mut self.pieces);
        }
        self.file.pieces = recycle(std::mem::take(&mut self.pieces));
    }
}

/// Test hooks, compiled into debug builds only (the binary the
/// integration tests run): with `RXTXCPU_TEST_COPY=1` every stream file
/// (not stdout) has a second set of files, its name with `.copy` after
/// it (`out-0.pcap.copy`, rotated `out-0.pcap.copy1`, ...), that gets the
/// same packets copied, as [`StreamFile::write`] writes them: the same
/// capture written both ways, to prove the files are the same byte for
/// byte. (Two captures side by side cannot show that: each packet socket
/// takes its own timestamp of a packet.)
#[cfg(debug_assertions)]
mod test_hooks {
    pub fn copy_too() -> bool {
        std::env::var_os("RXTXCPU_TEST_COPY").is_some_and(|v| v != "0")
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn name_error(e: crate::consumers::rotate::NameError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}
