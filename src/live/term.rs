//! The terminal under the table: plain ANSI/xterm sequences on stderr.
//!
//! The table is drawn on the terminal's *alternate screen*, like `top`,
//! `less` and `bandwhich`: while it is up, the user's screen (their
//! command line, anything printed before the capture) is kept aside by
//! the terminal, and leaving restores it exactly. The final report then
//! prints on that restored screen right under the command, just as
//! without --live. Drawing in place on the normal screen instead (moving
//! the cursor up over the previous table) breaks on resize: terminals
//! re-wrap the normal screen's lines when the width changes, so the line
//! count to move up is wrong and the old table's rows stay behind as
//! garbage. On the alternate screen every frame is drawn from the top-left
//! corner, each line cleared to its end and the rest of the screen cleared
//! below, so a resize needs no more than one redraw.
//!
//! Entering also hides the cursor and turns off auto-wrap (DECAWM): a
//! line that would still be too wide is clipped by the terminal rather
//! than wrapped onto the next row. Leaving undoes all three. The terminal
//! modes (termios) are not touched: no raw mode, so there is nothing more
//! to restore and Ctrl-C and Ctrl-Z keep working. Keys typed while the
//! table is up are echoed into it and overwritten by the next frame.
//!
//! Restoring must happen on every exit: [`Screen`]'s `Drop`, [`restore`]
//! for code paths that end the process without unwinding
//! (`std::process::exit`), [`install_panic_hook`] so that a panic message
//! lands on the user's screen, and [`install_fatal_signal_handlers`] for
//! aborts and SIGQUIT. All of them are idempotent: the first one restores,
//! the others do nothing. A frame is written with one write(2): the tty
//! layer serializes whole writes (tty_write holds the tty's write lock for
//! the whole buffer), so a restore from another thread can never split a
//! frame.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sys;

/// Alternate screen on, cursor hidden, auto-wrap off.
pub const ENTER: &str = "\x1b[?1049h\x1b[?25l\x1b[?7l";
/// Auto-wrap on, cursor shown, alternate screen off (the normal screen and
/// its cursor position come back).
pub const LEAVE: &str = "\x1b[?7h\x1b[?25h\x1b[?1049l";

/// Whether the table is on the terminal (set only for the real stderr).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Held while a frame is written and while restoring, so that a restore
/// from another thread cannot come between "still active?" and the write.
static LOCK: Mutex<()> = Mutex::new(());

/// Whether stderr is a terminal that understands the sequences: a tty and
/// `TERM` set to something other than `dumb`.
pub fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal as _;
    io::stderr().is_terminal()
        && std::env::var_os("TERM").is_some_and(|t| !t.is_empty() && t != "dumb")
}

/// The terminal's size on stderr as (columns, rows); `None` when stderr is
/// not a terminal or the terminal does not say (a size of 0).
pub fn size() -> Option<(usize, usize)> {
    sys::term::winsize(libc::STDERR_FILENO).filter(|&(c, r)| c > 0 && r > 0)
}

/// One full frame for `lines` on a screen of `width` x `height`: from the
/// top-left corner, each line cleared to its end, the screen cleared
/// below the last. Auto-wrap is off, so after a line that fills the width
/// the cursor stays on its last column, where erasing (to the end of the
/// line or of the screen) would take that column's character too: a full
/// line is not cleared, and the clearing below starts on the next line.
/// No newline after a frame as tall as the screen, so it never scrolls.
pub fn frame(lines: &[String], width: usize, height: usize) -> String {
    let mut s = String::with_capacity(lines.iter().map(|l| l.len() + 5).sum::<usize>() + 8);
    s.push_str("\x1b[H");
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            s.push_str("\r\n");
        }
        s.push_str(l);
        if l.chars().count() < width {
            s.push_str("\x1b[K");
        }
    }
    if lines.is_empty() {
        s.push_str("\x1b[J");
    } else if lines.len() < height {
        s.push_str("\r\n\x1b[J");
    }
    s
}

use sys::term::write_stderr;

/// The lock, even when a thread panicked holding it, and not forever: a
/// restore from a panic hook on the thread that holds it must not
/// deadlock, so after a short wait it goes ahead without.
fn lock_briefly() -> Option<std::sync::MutexGuard<'static, ()>> {
    let until = Instant::now() + Duration::from_millis(100);
    loop {
        match LOCK.try_lock() {
            Ok(g) => return Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(std::sync::TryLockError::WouldBlock) => return None,
        }
    }
}

/// The table's hold on the terminal: entered on creation, left on drop.
#[derive(Debug)]
pub struct Screen(());

impl Screen {
    /// Switches stderr's terminal to the alternate screen.
    pub fn enter() -> io::Result<Screen> {
        let _g = lock_briefly();
        // Active before the write: if the write half succeeds, a restore
        // is still owed.
        ACTIVE.store(true, Ordering::SeqCst);
        if let Err(e) = write_stderr(ENTER.as_bytes()) {
            ACTIVE.store(false, Ordering::SeqCst);
            let _ = write_stderr(LEAVE.as_bytes());
            return Err(e);
        }
        Ok(Screen(()))
    }

    /// Draws `lines` as one frame on a screen of `size` (columns, rows).
    /// `Ok(false)` when the terminal was
    /// restored from elsewhere (a panic hook, [`restore`]): then nothing is
    /// drawn, so the user's screen is not written over.
    pub fn draw(&self, lines: &[String], size: (usize, usize)) -> io::Result<bool> {
        let f = frame(lines, size.0, size.1);
        let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        if !ACTIVE.load(Ordering::SeqCst) {
            return Ok(false);
        }
        write_stderr(f.as_bytes())?;
        Ok(true)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal back (normal screen, cursor, auto-wrap) if the table
/// holds it; does nothing otherwise. For every exit that skips `Drop`:
/// call it before `std::process::exit` and before printing a fatal error.
pub fn restore() {
    let _g = lock_briefly();
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = write_stderr(LEAVE.as_bytes());
    }
}

/// [`restore`] for a signal handler: only an atomic swap and write(2),
/// both async-signal-safe; no lock.
pub fn restore_in_signal_handler() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = write_stderr(LEAVE.as_bytes());
    }
}

/// Chains a panic hook that restores the terminal before the panic
/// message is printed, so the message is on the user's screen and not
/// lost with the alternate screen. Install once, before the first draw.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}

/// Restores the terminal on SIGABRT (abort(), a double panic, a stack
/// overflow: Rust's SIGSEGV handler aborts) and SIGQUIT (Ctrl-\), then
/// lets the signal do what it would have done (the handler is reset on
/// entry, SA_RESETHAND, and the signal raised again). Stop signals that
/// the capture reads from its signalfd are blocked and never reach a
/// handler; SIGKILL cannot be caught.
pub fn install_fatal_signal_handlers() -> io::Result<()> {
    extern "C" fn on_fatal(sig: libc::c_int) {
        restore_in_signal_handler();
        // The disposition is the default again (SA_RESETHAND), so the
        // signal, pending until this handler returns, ends the process as
        // it would have.
        sys::term::raise(sig);
    }
    for sig in [libc::SIGABRT, libc::SIGQUIT] {
        sys::term::on_signal_once(sig, on_fatal)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_clears_each_line_and_below() {
        let f = frame(&["ab".into(), "c".into()], 3, 5);
        assert_eq!(f, "\x1b[Hab\x1b[K\r\nc\x1b[K\r\n\x1b[J");
        assert_eq!(frame(&[], 3, 5), "\x1b[H\x1b[J");
        // A full-width line is not cleared (that would erase its last
        // character), and the clearing below starts on the next line.
        assert_eq!(frame(&["abc".into()], 3, 5), "\x1b[Habc\r\n\x1b[J");
        // As tall as the screen: nothing below to clear, no newline that
        // would scroll.
        assert_eq!(
            frame(&["ab".into(), "abc".into()], 3, 2),
            "\x1b[Hab\x1b[K\r\nabc"
        );
    }

    #[test]
    fn leave_undoes_enter() {
        // LEAVE flips each of ENTER's private modes (h <-> l), in reverse
        // order.
        let modes = |s: &str| -> Vec<(String, char)> {
            s.split("\x1b[?")
                .skip(1)
                .map(|m| (m[..m.len() - 1].to_string(), m.chars().last().unwrap()))
                .collect()
        };
        let enter = modes(ENTER);
        let mut leave = modes(LEAVE);
        leave.reverse();
        assert_eq!(enter.len(), 3);
        for ((a, x), (b, y)) in enter.iter().zip(&leave) {
            assert_eq!(a, b);
            assert_eq!((*x == 'h'), (*y == 'l'));
        }
    }

    #[test]
    fn restore_without_screen_does_nothing() {
        // Nothing is active in the test process: no bytes, no panic.
        restore();
        restore_in_signal_handler();
        assert!(!ACTIVE.load(Ordering::SeqCst));
    }
}
