//! A pseudo-terminal, for what the program does on a user's terminal.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::thread;

use super::EXIT_TIMEOUT;

/// A pseudo-terminal of `cols` x `rows`: what the program sees on a
/// user's terminal (isatty, a window size). Both ends close on exec, so a
/// program spawned elsewhere at the same time cannot hold the terminal
/// open; the program under test gets the slave end as one of its stdio.
pub struct Pty {
    master: File,
    slave: Option<std::os::fd::OwnedFd>,
}

impl Pty {
    pub fn new(cols: u16, rows: u16) -> Pty {
        use std::os::fd::FromRawFd;
        // SAFETY: plain libc calls on descriptors this function owns; each
        // result is checked before use, and ptsname_r writes at most
        // `name.len()` bytes into `name`.
        unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
            let master = File::from_raw_fd(m);
            assert_eq!(libc::grantpt(m), 0, "grantpt");
            assert_eq!(libc::unlockpt(m), 0, "unlockpt");
            let mut name = [0 as libc::c_char; 64];
            assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
            let ws = libc::winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            assert_eq!(libc::ioctl(m, libc::TIOCSWINSZ, &ws), 0, "TIOCSWINSZ");
            let s = libc::open(
                name.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            );
            assert!(s >= 0, "open slave: {}", std::io::Error::last_os_error());
            Pty {
                master,
                slave: Some(std::os::fd::OwnedFd::from_raw_fd(s)),
            }
        }
    }

    /// The terminal end, for a child's stdout or stderr (once).
    pub fn stdio(&mut self) -> Stdio {
        Stdio::from(self.slave.take().expect("the terminal end was given away"))
    }

    /// Reads, on a thread, everything written to the terminal until the
    /// last program holding it exits, one line at a time into the
    /// returned channel, with the terminal's `\r\n` as `\n`.
    pub fn lines(mut self) -> std::sync::mpsc::Receiver<String> {
        // Our copy of the terminal end must go, or the reads never end.
        drop(self.slave.take());
        let (tx, rx) = std::sync::mpsc::channel();
        let master = self.master;
        thread::spawn(move || {
            let mut r = BufReader::new(master);
            let mut line = Vec::new();
            // When the last slave closes the read fails with EIO: the end.
            while matches!(r.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let text = String::from_utf8_lossy(&line).replace("\r\n", "\n");
                if tx.send(text).is_err() {
                    return;
                }
                line.clear();
            }
        });
        rx
    }
}

/// Everything a [`Pty::lines`] channel brings until the terminal closes.
pub fn read_terminal(lines: &std::sync::mpsc::Receiver<String>) -> String {
    let mut text = String::new();
    while let Ok(l) = lines.recv_timeout(EXIT_TIMEOUT) {
        text.push_str(&l);
    }
    text
}
