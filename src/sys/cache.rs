//! Cache hints: asking the cpu to bring memory in before it is read or
//! written.
//!
//! A prefetch never faults and reads nothing into the program, so any
//! address is fine, even one past the end of a buffer; on other
//! architectures these do nothing.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{_MM_HINT_ET0 as FOR_WRITE, _MM_HINT_T0 as ALL_LEVELS, _MM_HINT_T1 as L2};
#[cfg(not(target_arch = "x86_64"))]
const ALL_LEVELS: i32 = 0;
#[cfg(not(target_arch = "x86_64"))]
const FOR_WRITE: i32 = 0;
#[cfg(not(target_arch = "x86_64"))]
const L2: i32 = 0;

/// A cache line, in bytes (x86-64, and most arm64).
pub const LINE: usize = 64;

/// How far ahead of a buffer read (or written) in order its bytes are
/// asked for: about a dozen 64-byte frames in a ring block, a few hundred
/// ns of work (1 KiB was worse, 2 to 8 KiB alike in the flow table's
/// micro-benchmark).
pub const READ_AHEAD: usize = 2048;

/// Brings the cache line holding `p` into every level, for a read soon
/// (a few dozen instructions on).
#[inline(always)]
pub fn prefetch(p: *const u8) {
    hint::<ALL_LEVELS>(p);
}

/// Brings the cache line holding `p` in to be written soon: prefetchw
/// where the build's target has it (the line then comes owned, so the
/// write need not wait for another cpu's copy to go), else prefetcht0,
/// which still saves the write its wait for the line.
#[inline(always)]
pub fn prefetch_write(p: *const u8) {
    hint::<FOR_WRITE>(p);
}

/// Brings the cache line holding `p` into the second-level cache, not the
/// first: for memory read later than soon, or more of it than the first
/// level holds (which prefetching it all there would only evict again).
#[inline(always)]
pub fn prefetch_l2(p: *const u8) {
    hint::<L2>(p);
}

/// Asks, with [`prefetch`], for `lines` cache lines of `buf` from byte
/// `at`, if `at` lies in it (the last lines may lie past its end: a hint
/// only).
#[inline(always)]
pub fn read_ahead(buf: &[u8], at: usize, lines: usize) {
    if at < buf.len() {
        let p = buf.as_ptr().wrapping_add(at);
        for i in 0..lines {
            prefetch(p.wrapping_add(i * LINE));
        }
    }
}

/// As [`read_ahead`], for bytes about to be written, with
/// [`prefetch_write`].
#[inline(always)]
pub fn write_ahead(buf: &[u8], at: usize, lines: usize) {
    if at < buf.len() {
        let p = buf.as_ptr().wrapping_add(at);
        for i in 0..lines {
            prefetch_write(p.wrapping_add(i * LINE));
        }
    }
}

/// Brings in every line of `bytes` bytes from `p` with [`prefetch_l2`].
#[inline]
pub fn prefetch_range_l2(p: *const u8, bytes: usize) {
    let mut off = 0;
    while off < bytes {
        prefetch_l2(p.wrapping_add(off));
        off += LINE;
    }
}

#[inline(always)]
fn hint<const LEVEL: i32>(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the prefetch instructions (prefetcht0, prefetcht1,
    // prefetchw) are hints: they never fault, whatever the address, and
    // change nothing the program can observe.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<LEVEL>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
