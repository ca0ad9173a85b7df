//! The machine and its clocks: uname(2), sysconf(3), clock_gettime(2),
//! local time, membarrier(2), sched_setaffinity(2).

use std::ffi::CStr;
use std::io;

use crate::cpuset::CpuSet;

/// The kernel's name and release as uname(2) gives them (`Linux`,
/// `6.18.44`); None if uname fails.
pub fn uname() -> Option<(String, String)> {
    // SAFETY: utsname is plain bytes; all zeroes is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname() writes only into the struct it is given, whose
    // fields it NUL-terminates on success.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Some((field(&u.sysname), field(&u.release)))
}

/// sysconf(_SC_NPROCESSORS_CONF): the cpus the C library says are
/// configured (0 if it cannot say).
pub fn configured_cpus() -> u32 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    u32::try_from(n).unwrap_or(0)
}

/// The page size (at least 4096).
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(0).max(4096)
}

/// Which clock [`clock_ns`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// CLOCK_REALTIME: the wall clock packets are stamped with.
    Realtime,
    /// CLOCK_MONOTONIC: bpf_ktime_get_ns()'s clock.
    Monotonic,
}

/// A clock's reading in nanoseconds.
pub fn clock_ns(clock: Clock) -> i64 {
    let id = match clock {
        Clock::Realtime => libc::CLOCK_REALTIME,
        Clock::Monotonic => libc::CLOCK_MONOTONIC,
    };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec; both clocks always exist.
    unsafe { libc::clock_gettime(id, &mut ts) };
    // time_t and c_long are i32 on 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let (sec, nsec) = (i64::from(ts.tv_sec), i64::from(ts.tv_nsec));
    sec * 1_000_000_000 + nsec
}

/// Why [`strftime_local`] made no string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrftimeError {
    /// The time cannot be broken down into local time.
    Time,
    /// The result would be longer than the room given (or empty).
    TooLong,
}

/// strftime(3) of `pattern` at `time` (seconds since the epoch) in local
/// time, in at most `max` bytes.
pub fn strftime_local(pattern: &CStr, time: i64, max: usize) -> Result<String, StrftimeError> {
    // SAFETY: tm is plain integers (and a pointer localtime_r sets); all
    // zeroes is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let t: libc::time_t = time as libc::time_t;
    // SAFETY: both pointers are to live locals; localtime_r is the
    // reentrant form and writes only *tm.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return Err(StrftimeError::Time);
    }
    let mut buf = vec![0u8; max + 1];
    // SAFETY: buf has buf.len() writable bytes; the pattern is
    // NUL-terminated; tm was filled by localtime_r. strftime writes at most
    // max bytes, the NUL included, and returns the length without it.
    let n = unsafe { libc::strftime(buf.as_mut_ptr().cast(), buf.len(), pattern.as_ptr(), &tm) };
    if n == 0 {
        return Err(StrftimeError::TooLong);
    }
    buf.truncate(n);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Pins the calling thread to `cpus` (sched_setaffinity(2)): a worker
/// then reads its ring where the kernel wrote it, from that cpu's cache
/// (or its node's memory). Fails (EINVAL) when none of them is online.
pub fn pin_to(cpus: &CpuSet) -> io::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    for cpu in cpus.iter() {
        set.set(cpu as usize).map_err(io::Error::from)?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(io::Error::from)
}

/// The local time's broken-down fields (year, month 1-12, day, hour,
/// minute, second) at `time`; None if the C library cannot tell.
pub fn local_fields(time: i64) -> Option<[i32; 6]> {
    // SAFETY: as in strftime_local.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let t: libc::time_t = time as libc::time_t;
    // SAFETY: as in strftime_local.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return None;
    }
    Some([
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
    ])
}

/// membarrier(MEMBARRIER_CMD_GLOBAL): returns once every cpu has passed
/// through a quiescent state (synchronize_rcu() for user space); false
/// where the kernel refuses it (nohz_full cpus, old kernels).
pub fn membarrier_global() -> bool {
    const MEMBARRIER_CMD_GLOBAL: libc::c_int = 1;
    // SAFETY: membarrier takes no pointers.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    r == 0
}
