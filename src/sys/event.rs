//! Waiting on descriptors: poll(2) over a plain array of `pollfd`, for
//! loops that build their list anew each time (the metrics server).

use std::io;

pub use libc::pollfd;

/// poll(2) on `fds` for at most `timeout_ms` (-1: no limit); returns how
/// many have events (0 on timeout). EINTR comes back as an error of kind
/// Interrupted.
pub fn poll(fds: &mut [pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: fds is a valid, writable array of fds.len() pollfd structs
    // for the duration of the call; poll writes only their revents.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}
