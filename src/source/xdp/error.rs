//! Why an XDP capture could not be set up, in the words the user reads:
//! `<what>: <why>`, and where a privilege or a limit is the cause, which
//! one to grant or change.

use std::io;

use crate::error::Why;
use crate::sys::{bpf, perf};

/// Why the capture could not be set up. Messages are `<what>: <why>`.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("{what}: {why} (the XDP capture needs root, or CAP_BPF and CAP_NET_ADMIN{perfmon})")]
    Permission {
        what: String,
        why: Why,
        /// ", and CAP_PERFMON for the packets (-w)" where it applies.
        perfmon: &'static str,
    },
    #[error("interface '{ifname}' already has an XDP program{id}; rxtxcpu leaves it alone")]
    Busy { ifname: String, id: String },
    #[error(
        "interface '{ifname}' does not support native XDP: its driver has no XDP hook (try --xdp=generic)"
    )]
    NoNative { ifname: String },
    #[error("error loading the XDP program: {why}{log}")]
    Load { why: Why, log: String },
    #[error("{what}: {why}{hint}")]
    Os {
        what: String,
        why: Why,
        hint: &'static str,
    },
}

impl From<XdpError> for crate::error::Error {
    fn from(e: XdpError) -> crate::error::Error {
        crate::error::Error::Message(e.to_string())
    }
}

pub(super) fn is_permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

pub(super) fn os_error(what: impl Into<String>, e: io::Error, perfmon: &'static str) -> XdpError {
    if is_permission(&e) {
        XdpError::Permission {
            what: what.into(),
            why: Why(e),
            perfmon,
        }
    } else {
        XdpError::Os {
            what: what.into(),
            why: Why(e),
            hint: "",
        }
    }
}

pub(super) fn ring_error(cpu: u32, bytes: usize, e: perf::OpenError) -> XdpError {
    let what = format!("error opening the perf buffer of cpu{cpu}");
    match e {
        perf::OpenError::Event(e) if is_permission(&e) => XdpError::Permission {
            what,
            why: Why(e),
            perfmon: ", and CAP_PERFMON to copy packets out",
        },
        perf::OpenError::Event(e) => XdpError::Os {
            what,
            why: Why(e),
            hint: "",
        },
        perf::OpenError::Map(e) => XdpError::Os {
            what: format!(
                "error mapping the perf buffer of cpu{cpu} ({} KiB)",
                bytes / 1024
            ),
            hint: match e.raw_os_error() {
                Some(libc::EPERM | libc::ENOMEM) => {
                    " (perf buffers beyond kernel.perf_event_mlock_kb per cpu count against \
                     RLIMIT_MEMLOCK unless CAP_IPC_LOCK: try a smaller -B)"
                }
                _ => "",
            },
            why: Why(e),
        },
    }
}

pub(super) fn load_error(e: bpf::LoadError, perfmon: &'static str) -> XdpError {
    if e.is_permission() {
        return XdpError::Permission {
            what: "error loading the XDP program".into(),
            why: Why(e.error),
            perfmon,
        };
    }
    let log = if e.log.is_empty() {
        String::new()
    } else {
        format!("\n{}", e.log)
    };
    XdpError::Load {
        why: Why(e.error),
        log,
    }
}
