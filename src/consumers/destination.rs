//! Where `-w FILE` writes, and how an output is opened so that a start
//! that fails changes nothing that was there before it.
//!
//! FILE is `-` (standard output), an existing character device or FIFO
//! (written as it is: never numbered, created, truncated or removed), or a
//! file name: with per-stream files the template of the streams' names,
//! with `--pcapng` the file itself.
//!
//! Outputs are opened in two steps. `open` opens one without changing
//! it: a new file is created with O_EXCL, so the program knows it made it,
//! and a file that was there is opened without O_TRUNC. Once every output
//! of the capture is open, each is started (its header written): the new
//! files first, then those that were there, each overwritten from its
//! start and only then cut to the header. So a name that cannot be opened,
//! or a file system that cannot take a header, fails the start before any
//! file that existed has changed, and a failed start removes only the
//! files it created.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};

use nix::sys::signal::{SigSet, Signal};

use crate::consumers::files::stream_path;
use crate::options::Options;

/// What `-w FILE` names, before anything is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// `-`: standard output.
    Stdout,
    /// The null device: every stream writes to it, and it discards them
    /// all (the writing still costs what it costs, as with `tcpdump -w
    /// /dev/null`).
    Null,
    /// Another existing character device, or a FIFO: it takes one
    /// stream, or the merged file.
    Device { fifo: bool },
    /// A file name.
    Files,
}

/// The null device's numbers (drivers/char/mem.c: major 1, minor 3).
const NULL_MAJOR: u32 = 1;
const NULL_MINOR: u32 = 3;

impl Destination {
    /// What `file` names now (following symbolic links, so `/dev/stdout`
    /// is whatever standard output is). A name that does not exist, a
    /// regular file or a directory is a file name.
    pub fn of(file: &str) -> Destination {
        if file == "-" {
            return Destination::Stdout;
        }
        let Ok(m) = std::fs::metadata(file) else {
            return Destination::Files;
        };
        let t = m.file_type();
        if t.is_char_device() {
            let rdev = m.rdev();
            if libc::major(rdev) == NULL_MAJOR && libc::minor(rdev) == NULL_MINOR {
                Destination::Null
            } else {
                Destination::Device { fifo: false }
            }
        } else if t.is_fifo() {
            Destination::Device { fifo: true }
        } else {
            Destination::Files
        }
    }

    /// How usage errors name `file`: `'-' (stdout)`, `'/dev/full' (a
    /// character device)`, `'f' (a FIFO)`.
    pub fn describe(self, file: &str) -> String {
        match self {
            Destination::Stdout => "'-' (stdout)".to_string(),
            Destination::Null | Destination::Device { fifo: false } => {
                format!("'{file}' (a character device)")
            }
            Destination::Device { fifo: true } => format!("'{file}' (a FIFO)"),
            Destination::Files => format!("'{file}'"),
        }
    }

    /// The output of the stream whose file suffix is `suffix`: the
    /// numbered name for a file name, FILE itself otherwise.
    pub fn stream_file(self, file: &str, suffix: impl std::fmt::Display) -> String {
        match self {
            Destination::Files => stream_path(file, suffix),
            Destination::Stdout | Destination::Null | Destination::Device { .. } => {
                file.to_string()
            }
        }
    }
}

/// The usage rules of `-w FILE` that depend on what FILE is and on the
/// streams captured (`streams`): standard output, a device other than the
/// null device, or a FIFO takes one stream (any number with `--pcapng`,
/// which writes one merged stream); a device or FIFO cannot be rotated
/// (there is one, not names to make).
pub fn check(opts: &Options, streams: usize) -> Result<(), String> {
    let Some(file) = opts.write.as_deref() else {
        return Ok(());
    };
    let dest = Destination::of(file);
    if matches!(dest, Destination::Null | Destination::Device { .. }) {
        crate::consumers::rotate::check_unnamed(&opts.rotation, &dest.describe(file))?;
    }
    let one = matches!(dest, Destination::Stdout | Destination::Device { .. });
    if one && !opts.pcapng && streams > 1 {
        return Err(format!(
            "Write file {} is only permitted when capturing on a single {}.",
            dest.describe(file),
            opts.vantage.subject()
        ));
    }
    Ok(())
}

/// Whether writing `file` (`-w`) writes standard output: `-`, or a device
/// or FIFO that is stdout under another name (`/dev/stdout` on a pipe or
/// terminal), which the report must then stay out of. (The null device
/// takes everything and is never read: the report stays on stdout.)
pub fn writes_stdout(file: &str) -> bool {
    match Destination::of(file) {
        Destination::Stdout => return true,
        Destination::Device { .. } => {}
        Destination::Null | Destination::Files => return false,
    }
    let (Ok(named), Ok(out)) = (
        std::fs::metadata(file),
        nix::sys::stat::fstat(io::stdout().as_fd()),
    ) else {
        return false;
    };
    // dev_t and ino_t are not u64 on every target.
    #[allow(clippy::unnecessary_cast)]
    let same = named.dev() == out.st_dev as u64 && named.ino() == out.st_ino as u64;
    same
}

/// What `-v` says when the reader of the pipe `path` went away, which
/// ends the capture as an ordinary end.
pub fn closed_note(path: &str) -> String {
    match path {
        "-" => "stdout closed; stopping".to_string(),
        _ => format!("{path}: reader closed it; stopping"),
    }
}

/// What an output was when it was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `-`: standard output, as it is.
    Stdout,
    /// An existing character device or FIFO, as it is.
    Device { fifo: bool },
    /// A regular file this run created: removed again if the start fails.
    Created,
    /// A regular file that was there: never removed; overwritten from its
    /// start (its header first, then cut to it) once the capture starts.
    Existing,
}

impl Kind {
    /// Written through what may be a pipe, whose reader can go away.
    pub(crate) fn pipe(self) -> bool {
        matches!(self, Kind::Stdout | Kind::Device { fifo: true })
    }

    /// A regular file this program opened by name: one that a failed
    /// write may cut back to its last whole record. (Standard output may
    /// be a pipe, which cannot take bytes back, or a file opened for
    /// appending, whose earlier content is not ours to cut.)
    pub(crate) fn own_file(self) -> bool {
        matches!(self, Kind::Created | Kind::Existing)
    }
}

/// Opens `path` for writing without changing what is there (see the
/// module's comment): standard output for `-`, a device or FIFO as it is,
/// else a regular file, created if it does not exist. With `wait`, a FIFO
/// with no reader yet is waited for, as tcpdump waits in open(2);
/// without, it fails (ENXIO).
pub(crate) fn open(path: &str, wait: bool) -> io::Result<(File, Kind)> {
    if path == "-" {
        // A dup of fd 1 as a File: std's Stdout is line buffered, which
        // would flush at every 0x0a byte of binary data.
        let file = File::from(io::stdout().as_fd().try_clone_to_owned()?);
        return Ok((file, Kind::Stdout));
    }
    match Destination::of(path) {
        Destination::Null | Destination::Device { fifo: false } => {
            let file = OpenOptions::new().write(true).open(path)?;
            return Ok((file, Kind::Device { fifo: false }));
        }
        Destination::Device { fifo: true } => {
            return Ok((open_fifo(path, wait)?, Kind::Device { fifo: true }));
        }
        Destination::Stdout | Destination::Files => {}
    }
    // O_EXCL says whether this open made the file; EEXIST, that it was
    // there (or is a symbolic link, which O_EXCL never follows).
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(file) => return Ok((file, Kind::Created)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    match OpenOptions::new().write(true).open(path) {
        Ok(file) => Ok((file, Kind::Existing)),
        // A dangling symbolic link (or the file went away meanwhile):
        // created through the link, as File::create does. Counted as
        // there before: removing `path` would remove the link.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?;
            Ok((file, Kind::Existing))
        }
        Err(e) => Err(e),
    }
}

/// Opens a FIFO for writing. With O_NONBLOCK, open(2) of a FIFO with no
/// reader fails at once with ENXIO instead of blocking (fifo(7)); one with
/// a reader opens, and is then made blocking again for the writes.
fn open_fifo(path: &str, wait: bool) -> io::Result<File> {
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => {
            let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)?;
            let flags =
                nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
            nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(flags))?;
            return Ok(file);
        }
        Err(e) if wait && e.raw_os_error() == Some(libc::ENXIO) => {}
        Err(e) => return Err(e),
    }
    // No reader yet: wait for one in open(2), as tcpdump does. The stop
    // signals are blocked by now (the capture reads them from a
    // signalfd), so they are let through for the wait, with their default
    // action: Ctrl-C ends the program. Nothing is lost by that: a FIFO is
    // the capture's only output, nothing was written yet, and the kernel
    // undoes the rest (sockets, promiscuous mode, an XDP link) at exit.
    let mut stop = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        stop.add(s);
    }
    let old = SigSet::thread_get_mask().map_err(io::Error::from)?;
    stop.thread_unblock().map_err(io::Error::from)?;
    let opened = OpenOptions::new().write(true).open(path);
    let _ = old.thread_set_mask();
    opened
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> String {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("rxtxcpu-dest-{}-{name}", std::process::id()));
        path.to_str().unwrap().to_string()
    }

    #[test]
    fn what_file_names() {
        assert_eq!(Destination::of("-"), Destination::Stdout);
        assert_eq!(Destination::of("/dev/null"), Destination::Null);
        assert_eq!(
            Destination::of("/dev/full"),
            Destination::Device { fifo: false }
        );
        assert_eq!(Destination::of("/nonexistent/x.pcap"), Destination::Files);
        assert_eq!(Destination::of("/tmp"), Destination::Files);
        let fifo = temp("fifo");
        nix::unistd::mkfifo(
            fifo.as_str(),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        assert_eq!(Destination::of(&fifo), Destination::Device { fifo: true });
        // No reader: not waited for here.
        let e = open(&fifo, false).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENXIO));
        std::fs::remove_file(&fifo).unwrap();
        assert_eq!(Destination::Null.stream_file("/dev/null", 3), "/dev/null");
        assert_eq!(Destination::Files.stream_file("o.pcap", 3), "o-3.pcap");
        assert_eq!(
            Destination::Device { fifo: true }.describe("f"),
            "'f' (a FIFO)"
        );
    }

    #[test]
    fn opening_changes_nothing() {
        let path = temp("open");
        let _ = std::fs::remove_file(&path);
        let (_, kind) = open(&path, false).unwrap();
        assert_eq!(kind, Kind::Created);
        std::fs::write(&path, b"precious").unwrap();
        let (_, kind) = open(&path, false).unwrap();
        assert_eq!(kind, Kind::Existing);
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        std::fs::remove_file(&path).unwrap();
        // A dangling link: its target is made, the link is not "ours".
        let link = temp("link");
        let target = temp("target");
        let _ = std::fs::remove_file(&link);
        let _ = std::fs::remove_file(&target);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let (_, kind) = open(&link, false).unwrap();
        assert_eq!(kind, Kind::Existing);
        assert!(std::fs::metadata(&target).is_ok());
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_file(&target).unwrap();
        let (_, kind) = open("/dev/null", false).unwrap();
        assert_eq!(kind, Kind::Device { fifo: false });
        assert_eq!(
            open("/tmp", false).unwrap_err().raw_os_error(),
            Some(libc::EISDIR)
        );
    }
}
