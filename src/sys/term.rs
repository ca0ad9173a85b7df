//! The terminal: its size (TIOCGWINSZ), raw writes to stderr that need
//! no lock (for a signal handler or a panic hook), and one-shot handlers
//! for fatal signals.

use std::io;
use std::os::fd::RawFd;

/// The terminal's size on `fd` as (columns, rows); None when `fd` is not
/// a terminal (ENOTTY) or it does not say (zeroes).
pub fn winsize(fd: RawFd) -> Option<(usize, usize)> {
    // SAFETY: all-zero is a valid winsize.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one struct winsize through its pointer
    // argument and nothing else; `ws` is one, alive for the call. On a
    // descriptor that is not a terminal it fails with ENOTTY.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0).then_some((ws.ws_col as usize, ws.ws_row as usize))
}

/// The width of the terminal on `fd`; `None` when `fd` is not a terminal
/// or it does not say (a width of 0).
pub fn columns(fd: RawFd) -> Option<usize> {
    winsize(fd).map(|(c, _)| c).filter(|&c| c > 0)
}

/// Writes all of `buf` to stderr with write(2), bypassing std's stderr
/// lock (a panic hook may run while another thread holds it). Only
/// async-signal-safe calls: usable in a signal handler.
pub fn write_stderr(buf: &[u8]) -> io::Result<()> {
    let mut rest = buf;
    while !rest.is_empty() {
        // SAFETY: `rest` is a valid, initialized buffer of rest.len()
        // bytes; write(2) only reads it. fd 2 may be closed, which gives
        // EBADF, not undefined behaviour.
        let n = unsafe { libc::write(libc::STDERR_FILENO, rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        rest = &rest[n as usize..];
    }
    Ok(())
}

/// Installs `handler` for `sig`, once: the disposition goes back to the
/// default as the handler is entered (SA_RESETHAND), so a handler that
/// ends with [`raise`] lets the signal do what it would have done.
/// `handler` must call only async-signal-safe functions.
pub fn on_signal_once(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is valid (empty mask, no flags);
    // sa_sigaction holds a plain handler since SA_SIGINFO is not set; the
    // caller promises the handler is async-signal-safe.
    let r = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut())
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// raise(3): sends `sig` to the calling thread (async-signal-safe).
pub fn raise(sig: libc::c_int) {
    // SAFETY: raise takes no pointers.
    unsafe {
        libc::raise(sig);
    }
}
