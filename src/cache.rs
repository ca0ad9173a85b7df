//! Cache hints: asking the cpu to bring memory in before it is read.
//!
//! A prefetch never faults and reads nothing into the program, so any
//! address is fine, even one past the end of a buffer; on other
//! architectures these do nothing.

/// Brings the cache line holding `p` into every level, for a read soon
/// (a few dozen instructions on).
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetcht0 is a hint: it never faults, whatever the address,
    // and changes nothing the program can observe.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Brings the cache line holding `p` into the second-level cache, not the
/// first: for memory read later than soon, or more of it than the first
/// level holds (which prefetching it all there would only evict again).
#[inline(always)]
pub fn prefetch_l2(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as in prefetch: prefetcht1 is a hint that never faults.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        _mm_prefetch::<_MM_HINT_T1>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
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

/// A cache line, in bytes (x86-64, and most arm64).
pub const LINE: usize = 64;
