//! Per-cpu perf event buffers: the rings through which an eBPF program
//! hands records to user space with bpf_perf_event_output().
//!
//! One PERF_COUNT_SW_BPF_OUTPUT software event is opened per cpu (pid -1,
//! that cpu) and its ring buffer mapped: a metadata page (struct
//! perf_event_mmap_page) followed by 2^n data pages. The kernel appends
//! records at `data_head`; user space consumes them and moves `data_tail`.
//! Because the mapping is writable, the kernel never overwrites a record
//! user space has not released: a full ring makes the producer fail (the
//! helper returns -ENOSPC and the kernel later writes a PERF_RECORD_LOST
//! record with the number of records it could not write).
//!
//! The program picks the ring with BPF_F_CURRENT_CPU: the record goes to
//! the ring of the cpu the program runs on, so each ring is one cpu's
//! stream, in the order that cpu produced it.

use std::io;
use std::mem;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// perf_event_attr.type / config of the event bpf_perf_event_output()
/// writes to.
const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_BPF_OUTPUT: u64 = 10;
/// sample_type: the sample is the program's raw bytes (a u32 size, then
/// the bytes, padded so the record stays 8-byte aligned).
const PERF_SAMPLE_RAW: u64 = 1 << 10;
/// perf_event_attr flag bit: wake the reader after `wakeup_watermark`
/// bytes rather than after `wakeup_events` records.
const ATTR_FLAG_WATERMARK: u64 = 1 << 14;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
/// PERF_ATTR_SIZE_VER0: the fields up to config1, all this module sets.
const ATTR_SIZE_VER0: u32 = 64;

const PERF_RECORD_LOST: u32 = 2;
const PERF_RECORD_SAMPLE: u32 = 9;
/// Length of struct perf_event_header (u32 type, u16 misc, u16 size).
const HEADER_LEN: usize = 8;

/// Offsets in struct perf_event_mmap_page (Linux 4.1+ for the last two).
const PAGE_DATA_HEAD: usize = 1024;
const PAGE_DATA_TAIL: usize = 1032;
const PAGE_DATA_OFFSET: usize = 1040;
const PAGE_DATA_SIZE: usize = 1048;

/// The largest record the kernel can write: perf_event_header.size is a
/// u16.
pub const MAX_RECORD: usize = u16::MAX as usize;
/// The smallest data area used: room for two of the largest records, so
/// one full-size record never fills the ring on its own.
pub const MIN_DATA_BYTES: usize = 128 * 1024;
/// The largest: the kernel keeps an array of page pointers per ring and
/// refuses far beyond this; a bigger -B buys nothing that matters here.
pub const MAX_DATA_BYTES: usize = 1 << 30;

/// The first fields of struct perf_event_attr (PERF_ATTR_SIZE_VER0).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// The bitfield word: disabled, inherit, ..., watermark (bit 14), ...
    flags: u64,
    /// wakeup_events, or wakeup_watermark with the watermark flag.
    wakeup: u32,
    bp_type: u32,
    config1: u64,
}

/// When the kernel wakes a reader polling the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wakeup {
    /// After every record: lowest latency, but an interrupt-like wakeup
    /// (irq_work) per record while the reader sleeps.
    EveryRecord,
    /// Once this many bytes have accumulated since the last wakeup; the
    /// reader must also poll with a timeout to see a slow trickle.
    Bytes(u32),
}

/// The data area for a ring of about `ring_bytes`: the largest power of
/// two pages not above it (the kernel wants 2^n data pages), within
/// [MIN_DATA_BYTES, MAX_DATA_BYTES].
pub fn data_bytes_for(ring_bytes: usize) -> usize {
    let page = page_size();
    let want = ring_bytes.clamp(MIN_DATA_BYTES.max(page), MAX_DATA_BYTES);
    // The largest power of two <= want; pages are powers of two too.
    1usize << (usize::BITS - 1 - want.leading_zeros())
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// Why a ring could not be had.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// perf_event_open() failed: EACCES/EPERM without CAP_PERFMON (or
    /// CAP_SYS_ADMIN) when kernel.perf_event_paranoid is 1 or more; ENODEV
    /// for an offline cpu.
    #[error("{0}")]
    Event(io::Error),
    /// mmap() failed: EPERM when the ring is beyond what the user may lock
    /// (kernel.perf_event_mlock_kb per cpu, then RLIMIT_MEMLOCK) without
    /// CAP_IPC_LOCK; ENOMEM.
    #[error("{0}")]
    Map(io::Error),
}

/// One record read from a ring.
#[derive(Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// A PERF_RECORD_SAMPLE's raw bytes (with the kernel's padding to 8
    /// bytes at the end: the producer must say how long its data is).
    Sample(&'a [u8]),
    /// PERF_RECORD_LOST: this many records did not fit.
    Lost(u64),
}

/// What one [`PerfRing::read`] call consumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub samples: u64,
    /// Sum of the PERF_RECORD_LOST counts seen.
    pub lost: u64,
    /// Bytes of ring released.
    pub bytes: u64,
}

/// One cpu's BPF output event and its mapped ring.
pub struct PerfRing {
    fd: OwnedFd,
    cpu: u32,
    /// The mapping: the metadata page, then the data area.
    base: NonNull<u8>,
    map_len: usize,
    data_offset: usize,
    /// A power of two.
    data_size: usize,
    /// Where a record that wraps around the end of the ring is put back
    /// together (allocated once, MAX_RECORD bytes).
    scratch: Vec<u8>,
}

// SAFETY: the mapping and the descriptor are owned by this value alone;
// moving it to the thread that reads it is sound.
unsafe impl Send for PerfRing {}
// SAFETY: through &self only the metadata page's words are read, as
// atomics; everything that touches the data area or the scratch buffer
// takes &mut self.
unsafe impl Sync for PerfRing {}

impl PerfRing {
    /// Opens cpu `cpu`'s BPF output event with a data area of
    /// `data_bytes` (a power of two pages, see [`data_bytes_for`]) and maps
    /// it. The event is enabled at once; records arrive once a program
    /// writes to it through a perf event array map.
    ///
    /// Needs CAP_PERFMON (or CAP_SYS_ADMIN) unless
    /// kernel.perf_event_paranoid is below 1: the event watches a whole
    /// cpu.
    pub fn open(cpu: u32, data_bytes: usize, wakeup: Wakeup) -> Result<PerfRing, OpenError> {
        let page = page_size();
        if !data_bytes.is_power_of_two() || data_bytes < page {
            return Err(OpenError::Map(io::Error::from_raw_os_error(libc::EINVAL)));
        }
        let mut attr = PerfEventAttr {
            type_: PERF_TYPE_SOFTWARE,
            size: ATTR_SIZE_VER0,
            config: PERF_COUNT_SW_BPF_OUTPUT,
            sample_period: 1,
            sample_type: PERF_SAMPLE_RAW,
            ..PerfEventAttr::default()
        };
        match wakeup {
            Wakeup::EveryRecord => attr.wakeup = 1,
            Wakeup::Bytes(n) => {
                attr.flags |= ATTR_FLAG_WATERMARK;
                // A watermark at or above the ring's size would never wake.
                attr.wakeup = n.clamp(1, (data_bytes / 2).min(u32::MAX as usize) as u32);
            }
        }
        let fd = perf_event_open(&attr, cpu).map_err(OpenError::Event)?;
        let map_len = page + data_bytes;
        // SAFETY: a shared read-write mapping of 1 + 2^n pages at offset 0
        // is how a perf event's ring is mapped; writable, so the kernel
        // honours data_tail. The result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(OpenError::Map(io::Error::last_os_error()));
        }
        let mut ring = PerfRing {
            fd,
            cpu,
            base: NonNull::new(p.cast()).expect("mmap returned null"),
            map_len,
            data_offset: page,
            data_size: data_bytes,
            scratch: vec![0; MAX_RECORD],
        };
        // Since Linux 4.1 the page says where the data is; before, it is
        // the page after the metadata page.
        let (offset, size) = (
            ring.page_u64(PAGE_DATA_OFFSET),
            ring.page_u64(PAGE_DATA_SIZE),
        );
        if size != 0 {
            if offset as usize + size as usize > map_len || !size.is_power_of_two() {
                return Err(OpenError::Map(io::Error::from_raw_os_error(libc::EINVAL)));
            }
            ring.data_offset = offset as usize;
            ring.data_size = size as usize;
        }
        Ok(ring)
    }

    /// The cpu whose records this ring receives.
    pub fn cpu(&self) -> u32 {
        self.cpu
    }

    /// The event's descriptor: what goes into the perf event array map at
    /// index `cpu`, and what poll() reports POLLIN on after a wakeup.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A u64 field of the metadata page that only user space writes or
    /// that the kernel writes only once, before the mapping exists.
    fn page_u64(&self, off: usize) -> u64 {
        self.page_atomic(off).load(Ordering::Relaxed)
    }

    /// The u64 word at `off` of the metadata page.
    fn page_atomic(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off + 8 <= page_size() && off % 8 == 0);
        // SAFETY: the metadata page is mapped for as long as &self lives
        // (only Drop unmaps), is page aligned so the 8-aligned offset is
        // 8-aligned, and is never covered by a Rust reference: the words
        // user space and the kernel share are only accessed as atomics
        // (the kernel reads data_tail with READ_ONCE and writes data_head
        // as a whole u64).
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(off).cast()) }
    }

    /// Whether records are waiting.
    pub fn is_empty(&self) -> bool {
        let head = self.page_atomic(PAGE_DATA_HEAD).load(Ordering::Acquire);
        head == self.page_u64(PAGE_DATA_TAIL)
    }

    /// Hands every record the kernel had written when the call began to
    /// `f`, in order, releasing ring space as it goes. Stops early when
    /// `f` breaks (that record counts as consumed). A slow reader never
    /// blocks the producer for more than the records in one call; records
    /// written meanwhile wait for the next call.
    pub fn read(&mut self, mut f: impl FnMut(Record<'_>) -> ControlFlow<()>) -> ReadStats {
        let mut stats = ReadStats::default();
        // Acquire pairs with the kernel's store of data_head after it
        // wrote the records (perf_output_put_handle: smp_wmb, then
        // data_head): every byte up to head is complete once we see head.
        let head = self.page_atomic(PAGE_DATA_HEAD).load(Ordering::Acquire);
        let start = self.page_u64(PAGE_DATA_TAIL);
        let mut tail = start;
        let mut released = tail;
        // Release space in chunks: the kernel may refill it while the rest
        // of the batch is handled, and one store per record would bounce
        // the metadata page between cpus.
        let chunk = (self.data_size / 8) as u64;
        while tail != head {
            let avail = head.wrapping_sub(tail) as usize;
            let Some((kind, len)) = self.record_header(tail, avail) else {
                // Not a record the kernel writes: skip to the head rather
                // than read garbage.
                tail = head;
                break;
            };
            let flow = {
                let bytes = self.record_bytes(tail, len);
                match kind {
                    PERF_RECORD_SAMPLE => {
                        let size = bytes
                            .get(8..12)
                            .map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]) as usize);
                        let raw = bytes.get(12..12 + size).unwrap_or(&[]);
                        stats.samples += 1;
                        f(Record::Sample(raw))
                    }
                    PERF_RECORD_LOST => {
                        // u64 id, u64 lost, after the header.
                        let lost = bytes
                            .get(16..24)
                            .map_or(0, |s| u64::from_ne_bytes(s.try_into().unwrap_or([0; 8])));
                        stats.lost += lost;
                        f(Record::Lost(lost))
                    }
                    _ => ControlFlow::Continue(()),
                }
            };
            tail = tail.wrapping_add(len as u64);
            if tail.wrapping_sub(released) >= chunk {
                self.release(tail);
                released = tail;
            }
            if flow.is_break() {
                break;
            }
        }
        self.release(tail);
        stats.bytes = tail.wrapping_sub(start);
        stats
    }

    /// Type and length of the record at `pos`, if it is a plausible one
    /// within the `avail` bytes written.
    fn record_header(&self, pos: u64, avail: usize) -> Option<(u32, usize)> {
        if avail < HEADER_LEN {
            return None;
        }
        // Records are 8-byte aligned and the data area is a power of two
        // pages: a header never wraps.
        let off = (pos as usize) & (self.data_size - 1);
        let h = self.direct(off, HEADER_LEN);
        let kind = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]);
        let len = u16::from_ne_bytes([h[6], h[7]]) as usize;
        (len >= HEADER_LEN && len <= avail && len % 8 == 0).then_some((kind, len))
    }

    /// The `len` bytes of the record at position `pos`; a record that
    /// wraps around the end of the data area is copied into the scratch
    /// buffer.
    fn record_bytes(&mut self, pos: u64, len: usize) -> &[u8] {
        let off = (pos as usize) & (self.data_size - 1);
        let first = len.min(self.data_size - off);
        if first == len {
            return self.direct(off, len);
        }
        let (a, b) = (
            self.direct(off, first).as_ptr(),
            self.direct(0, len - first).as_ptr(),
        );
        let scratch = &mut self.scratch[..len];
        // SAFETY: a and b point to `first` and `len - first` bytes of the
        // data area that are stable (see direct()); the scratch buffer is
        // a distinct allocation, borrowed mutably here.
        unsafe {
            std::ptr::copy_nonoverlapping(a, scratch.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(b, scratch.as_mut_ptr().add(first), len - first);
        }
        scratch
    }

    /// `len` bytes at offset `off` of the data area, which must lie between
    /// the data_tail and the data_head read() saw, within the area.
    fn direct(&self, off: usize, len: usize) -> &[u8] {
        assert!(off + len <= self.data_size);
        // SAFETY: off + len <= data_size: inside the data area, mapped
        // while &self lives. The bytes lie between data_tail and the
        // data_head read with Acquire in read(): the kernel finished
        // writing them, and it writes no byte there again until data_tail
        // moves past them, which only read() does, after the slice's
        // borrow ended.
        unsafe { std::slice::from_raw_parts(self.data_ptr().add(off), len) }
    }

    fn data_ptr(&self) -> *mut u8 {
        // SAFETY: data_offset + data_size <= map_len (checked in open).
        unsafe { self.base.as_ptr().add(self.data_offset) }
    }

    /// Gives the ring up to `tail` back to the kernel.
    fn release(&self, tail: u64) {
        // Release: our reads of the records happen before the kernel may
        // overwrite them (it reads data_tail, then issues smp_mb before
        // writing: perf_output_begin).
        self.page_atomic(PAGE_DATA_TAIL)
            .store(tail, Ordering::Release);
    }
}

impl Drop for PerfRing {
    fn drop(&mut self) {
        // SAFETY: base/map_len are exactly the mapping made in open(); no
        // slice of it outlives a &self borrow, so none is alive here.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.map_len);
        }
    }
}

fn perf_event_open(attr: &PerfEventAttr, cpu: u32) -> io::Result<OwnedFd> {
    debug_assert_eq!(mem::size_of::<PerfEventAttr>(), ATTR_SIZE_VER0 as usize);
    // SAFETY: attr points to a perf_event_attr of attr.size bytes that the
    // kernel only reads; pid -1 with a cpu watches that cpu; no group.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr as *const PerfEventAttr,
            -1 as libc::pid_t,
            cpu as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success perf_event_open returns a new descriptor that
    // nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

impl AsRawFd for PerfRing {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
