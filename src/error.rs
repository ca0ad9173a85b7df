//! Runtime errors (exit status 1), and the usage errors that only show
//! once the command line meets the machine (exit status 2; those of the
//! command line itself are [`crate::cli::UsageError`]).

use std::fmt;
use std::io;

/// An OS error shown as the C library shows it (`No such device`), without
/// Rust's ` (os error 19)` suffix, so messages match the original's. The
/// words are strerror's, which the standard library's own message holds
/// (nix's table words a few differently: `Out of memory`, `I/O error`,
/// `Quota exceeded` where the C library, tcpdump and the original say
/// `Cannot allocate memory`, `Input/output error`, `Disk quota
/// exceeded`).
#[derive(Debug)]
pub struct Why(pub io::Error);

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.raw_os_error() {
            Some(code) => {
                let text = self.0.to_string();
                let suffix = format!(" (os error {code})");
                f.write_str(text.strip_suffix(&suffix).unwrap_or(&text))
            }
            None => write!(f, "{}", self.0),
        }
    }
}

impl From<io::Error> for Why {
    fn from(e: io::Error) -> Why {
        Why(e)
    }
}

/// What went wrong, as `<what>: <why>`; main prefixes the program name.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("error setting ifname '{name}': {why}{hint}")]
    Interface {
        name: String,
        why: Why,
        hint: String,
    },
    #[error("{what}: {why}{hint}")]
    Os {
        what: String,
        why: Why,
        hint: &'static str,
    },
    #[error("{0}")]
    Message(String),
    /// A usage error found when the options meet the machine (a cpu list
    /// naming no cpu it has): exit 2 with the short usage.
    #[error("{0}")]
    Usage(String),
    /// Input that is wrong in itself but only shows when it is used (a
    /// filter expression libpcap rejects): exit 2, the one line only.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// `<what>: <why>`, with a hint for the errors a user can fix: missing
    /// privileges and memory limits.
    pub fn os(what: impl Into<String>, e: io::Error) -> Error {
        let hint = match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => {
                " (capturing needs root or the CAP_NET_RAW capability)"
            }
            Some(libc::ENOMEM) => " (try a smaller ring with -B)",
            _ => "",
        };
        Error::Os {
            what: what.into(),
            why: Why(e),
            hint,
        }
    }
}

impl Error {
    /// `<file>: <why>`, as tcpdump reports a file it cannot write.
    pub fn file(path: &str, e: io::Error) -> Error {
        Error::Os {
            what: path.to_string(),
            why: Why(e),
            hint: "",
        }
    }

    /// `error writing <file>: <why>`: an output that opened but could not
    /// be written, the same words whether it fails at the start or later.
    pub fn write(path: &str, e: io::Error) -> Error {
        Error::Os {
            what: format!("error writing {path}"),
            why: Why(e),
            hint: "",
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// `12 MiB`, `1.5 MiB`, `768 KiB`.
pub(crate) fn mib(bytes: u64) -> String {
    if bytes >= 10 << 20 || bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_like_the_c_library() {
        let e = Error::Interface {
            name: "nosuch".into(),
            why: Why(io::Error::from_raw_os_error(libc::ENODEV)),
            hint: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "error setting ifname 'nosuch': No such device"
        );
        let e = Error::os(
            "error creating packet socket",
            io::Error::from_raw_os_error(libc::EPERM),
        );
        assert_eq!(
            e.to_string(),
            "error creating packet socket: Operation not permitted (capturing needs root or the CAP_NET_RAW capability)"
        );
        // Where nix's words differ from the C library's: a disk that fails
        // or a quota reached under -w, a ring the kernel cannot allocate.
        for (code, words) in [
            (libc::EIO, "Input/output error"),
            (libc::EDQUOT, "Disk quota exceeded"),
            (libc::ENOMEM, "Cannot allocate memory"),
            (libc::EAGAIN, "Resource temporarily unavailable"),
            (libc::ENOSPC, "No space left on device"),
        ] {
            assert_eq!(Why(io::Error::from_raw_os_error(code)).to_string(), words);
        }
        assert_eq!(
            Error::write("out-0.pcap", io::Error::from_raw_os_error(libc::EDQUOT)).to_string(),
            "error writing out-0.pcap: Disk quota exceeded"
        );
    }
}
