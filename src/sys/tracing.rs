//! Kernel probes: eBPF programs run at a tracepoint or at a kernel
//! function's entry or exit, attached through BPF links.
//!
//! Three kinds of program, all attached without tracefs and without
//! kprobes (which the project's test kernel does not have):
//!
//! - `tp_btf`: BPF_PROG_TYPE_TRACING with expected_attach_type
//!   BPF_TRACE_RAW_TP and attach_btf_id the `btf_trace_<tracepoint>`
//!   typedef (Linux 5.5+). Its context is the tracepoint's arguments, one
//!   u64 each (positions from [`Btf::raw_tp_params`]), and the verifier
//!   knows their kernel types, so the program reads `skb->dev->ifindex`
//!   with plain loads (PTR_TO_BTF_ID; a load that faults, a NULL pointer
//!   included, reads 0).
//! - `fentry`/`fexit`: the same, at a kernel function named by its BTF
//!   id; the context is the function's arguments (and, for fexit, its
//!   return value after them).
//! - raw tracepoint by name (BPF_PROG_TYPE_RAW_TRACEPOINT, Linux 4.17+):
//!   the same arguments, untyped; the program reads through pointers
//!   with bpf_probe_read_kernel. The fallback where tracing programs are
//!   refused.
//!
//! BTF-typed programs are attached with BPF_LINK_CREATE, or, where an
//! older kernel does not create links for their kind (EINVAL), with
//! BPF_RAW_TRACEPOINT_OPEN (name NULL: the program's attach_btf_id names
//! the target); raw tracepoints by name always with
//! BPF_RAW_TRACEPOINT_OPEN. Linux 6.18 takes both for tp_btf (tested). Both give a link descriptor: the kernel
//! detaches the program when its last descriptor closes, also when the
//! process is killed, so nothing stays behind.
//!
//! Loading and attaching need CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN):
//! [`ProbeError::is_permission`] tells that failure from others.

// Groundwork: tracing programs (used by the kernel probes, which no option runs yet).
#![allow(dead_code)]

use std::fmt;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::error::Why;
use crate::sys::bpf::{self, Link, LoadOptions, ProgType, Program};
use crate::sys::btf::{Btf, BtfError, Kind};
use crate::sys::ebpf::Insn;

const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_int = 17;
const BPF_LINK_CREATE: libc::c_int = 28;
const BPF_ENABLE_STATS: libc::c_int = 32;
/// `enum bpf_attach_type` values of tracing programs.
const BPF_TRACE_RAW_TP: u32 = 23;
const BPF_TRACE_FENTRY: u32 = 24;
const BPF_TRACE_FEXIT: u32 = 25;
/// ENOTSUPP: the kernel-internal "not supported" some bpf(2) paths leak.
const ENOTSUPP: i32 = 524;

/// What kind of program, at what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    /// A tracepoint, BTF-typed.
    TpBtf,
    /// A kernel function's entry, BTF-typed.
    Fentry,
    /// A kernel function's exit, BTF-typed.
    Fexit,
    /// A tracepoint by name, untyped.
    RawTp,
}

/// Where a probe runs: a tracepoint (`kfree_skb`, without its `skb:`
/// group) or a kernel function (`skb_consume_udp`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    pub kind: HookKind,
    pub name: String,
}

impl Hook {
    pub fn tp_btf(tracepoint: &str) -> Hook {
        Hook {
            kind: HookKind::TpBtf,
            name: tracepoint.into(),
        }
    }

    pub fn fentry(function: &str) -> Hook {
        Hook {
            kind: HookKind::Fentry,
            name: function.into(),
        }
    }

    pub fn fexit(function: &str) -> Hook {
        Hook {
            kind: HookKind::Fexit,
            name: function.into(),
        }
    }

    pub fn raw_tp(tracepoint: &str) -> Hook {
        Hook {
            kind: HookKind::RawTp,
            name: tracepoint.into(),
        }
    }

    /// Whether the program's context pointers are typed (direct loads) or
    /// must be read with bpf_probe_read_kernel.
    pub fn is_typed(&self) -> bool {
        self.kind != HookKind::RawTp
    }

    fn prog_type(&self) -> ProgType {
        match self.kind {
            HookKind::RawTp => ProgType::RawTracepoint,
            _ => ProgType::Tracing,
        }
    }

    fn attach_type(&self) -> u32 {
        match self.kind {
            HookKind::TpBtf => BPF_TRACE_RAW_TP,
            HookKind::Fentry => BPF_TRACE_FENTRY,
            HookKind::Fexit => BPF_TRACE_FEXIT,
            HookKind::RawTp => 0,
        }
    }

    /// The BTF id the kernel attaches a typed program by.
    fn btf_id(&self, btf: &Btf) -> Result<u32, BtfError> {
        match self.kind {
            HookKind::TpBtf => btf.raw_tp_typedef(&self.name),
            HookKind::Fentry | HookKind::Fexit => btf.require(Kind::Func, &self.name),
            HookKind::RawTp => Ok(0),
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            HookKind::TpBtf => "tp_btf",
            HookKind::Fentry => "fentry",
            HookKind::Fexit => "fexit",
            HookKind::RawTp => "raw_tp",
        };
        write!(f, "{kind}/{}", self.name)
    }
}

/// The bpf(2) command a link was made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    LinkCreate,
    RawTracepointOpen,
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Via::LinkCreate => "BPF_LINK_CREATE",
            Via::RawTracepointOpen => "BPF_RAW_TRACEPOINT_OPEN",
        })
    }
}

/// Why a probe could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Btf(#[from] BtfError),
    /// The kernel refused for lack of a privilege (EPERM, EACCES).
    #[error("{what}: {why}")]
    Permission { what: String, why: Why },
    /// The verifier rejected the program; its log follows.
    #[error("{what}: {why}{log}")]
    Load { what: String, why: Why, log: String },
    #[error("{what}: {why}")]
    Os { what: String, why: Why },
    /// The running kernel lacks something a probe needs (a tracepoint
    /// argument, a field of the right size).
    #[error("{0}")]
    Kernel(String),
}

impl ProbeError {
    /// Whether a missing privilege is the reason (loading tracing programs
    /// needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN).
    pub fn is_permission(&self) -> bool {
        matches!(self, ProbeError::Permission { .. })
    }

    pub(crate) fn os(what: String, e: io::Error) -> ProbeError {
        if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
            ProbeError::Permission { what, why: Why(e) }
        } else {
            ProbeError::Os { what, why: Why(e) }
        }
    }
}

/// Loads `insns` as a program for `hook`, named `name` (at most 15 bytes,
/// shown by bpftool).
pub fn load(btf: &Btf, hook: &Hook, name: &str, insns: &[Insn]) -> Result<Program, ProbeError> {
    let options = LoadOptions {
        expected_attach_type: hook.attach_type(),
        attach_btf_id: hook.btf_id(btf)?,
        ..LoadOptions::default()
    };
    Program::load_with(hook.prog_type(), name, insns, options).map_err(|e| {
        let what = format!("error loading the {hook} program");
        if e.is_permission() && e.log.is_empty() {
            ProbeError::os(what, e.error)
        } else {
            let log = if e.log.is_empty() {
                String::new()
            } else {
                format!("\n{}", e.log)
            };
            ProbeError::Load {
                what,
                why: Why(e.error),
                log,
            }
        }
    })
}

/// A program attached at its hook; detached when dropped (or when the
/// process ends, however it ends).
#[derive(Debug)]
pub struct Attached {
    link: Link,
    hook: Hook,
    via: Via,
}

impl Attached {
    pub fn hook(&self) -> &Hook {
        &self.hook
    }

    /// How it was attached.
    pub fn via(&self) -> Via {
        self.via
    }

    /// The link's id and the attached program's id.
    pub fn ids(&self) -> io::Result<(u32, u32)> {
        self.link.ids()
    }
}

impl fmt::Display for Attached {
    /// `tp_btf/kfree_skb (BPF_LINK_CREATE)`, for -v.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.hook, self.via)
    }
}

/// Attaches `prog`, loaded by [`load`] for `hook`: by BPF_LINK_CREATE
/// where the kernel takes it for the program's kind, else by
/// BPF_RAW_TRACEPOINT_OPEN.
pub fn attach(prog: &Program, hook: &Hook) -> Result<Attached, ProbeError> {
    let first = match hook.kind {
        HookKind::RawTp => Via::RawTracepointOpen,
        _ => Via::LinkCreate,
    };
    match attach_via(prog, hook, first) {
        // Kernels that do not create links for this kind of program say
        // EINVAL (no such attach type for links) or ENOTSUPP.
        Err(e) if first == Via::LinkCreate && is_unsupported(&e) => {
            attach_via(prog, hook, Via::RawTracepointOpen)
        }
        other => other,
    }
    .map_err(|e| ProbeError::os(format!("error attaching the {hook} program"), e))
}

fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP)
    )
}

/// Attaches `prog` at `hook` with the bpf(2) command `via` (tests use it
/// to prove both ways work on the running kernel).
pub fn attach_via(prog: &Program, hook: &Hook, via: Via) -> io::Result<Attached> {
    let fd = match via {
        Via::LinkCreate => link_create(prog, hook.attach_type())?,
        Via::RawTracepointOpen => {
            let name = match hook.kind {
                HookKind::RawTp => Some(
                    std::ffi::CString::new(hook.name.as_str())
                        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
                ),
                // A typed program's attach_btf_id names its target.
                _ => None,
            };
            raw_tracepoint_open(prog, name.as_deref())?
        }
    };
    Ok(Attached {
        link: Link::from_fd(fd),
        hook: hook.clone(),
        via,
    })
}

fn link_create(prog: &Program, attach_type: u32) -> io::Result<OwnedFd> {
    /// The link_create member of bpf_attr, up to the tracing part.
    #[repr(C)]
    struct LinkCreateAttr {
        prog_fd: u32,
        target_fd: u32,
        attach_type: u32,
        flags: u32,
        target_btf_id: u32,
        _pad: u32,
        cookie: u64,
    }
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_fd: 0,
        attach_type,
        flags: 0,
        target_btf_id: 0,
        _pad: 0,
        cookie: 0,
    };
    // SAFETY: attr is the link_create member of bpf_attr, holding no
    // pointers; a zero target means the program's own attach_btf_id.
    let fd = unsafe {
        bpf::sys_bpf(
            BPF_LINK_CREATE,
            (&mut attr as *mut LinkCreateAttr).cast(),
            mem::size_of::<LinkCreateAttr>(),
        )
    };
    new_fd(fd)
}

fn raw_tracepoint_open(prog: &Program, name: Option<&std::ffi::CStr>) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct RawTpAttr {
        name: u64,
        prog_fd: u32,
        _pad: u32,
    }
    let mut attr = RawTpAttr {
        name: name.map_or(0, |n| n.as_ptr() as u64),
        prog_fd: prog.as_raw_fd() as u32,
        _pad: 0,
    };
    // SAFETY: attr is the raw_tracepoint member of bpf_attr; name is NULL
    // or a NUL-terminated string live for the call (the kernel copies it).
    let fd = unsafe {
        bpf::sys_bpf(
            BPF_RAW_TRACEPOINT_OPEN,
            (&mut attr as *mut RawTpAttr).cast(),
            mem::size_of::<RawTpAttr>(),
        )
    };
    new_fd(fd)
}

/// A bpf(2) result that is a new descriptor on success.
fn new_fd(r: libc::c_long) -> io::Result<OwnedFd> {
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success these bpf(2) commands return a new descriptor
    // that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Whether a program with kernel id `id` still exists
/// (BPF_PROG_GET_FD_BY_ID; ENOENT once the kernel freed it).
pub fn program_exists(id: u32) -> io::Result<bool> {
    #[repr(C)]
    struct GetIdAttr {
        id: u32,
        next_id: u32,
        open_flags: u32,
    }
    let mut attr = GetIdAttr {
        id,
        next_id: 0,
        open_flags: 0,
    };
    // SAFETY: attr is the id member of bpf_attr, holding no pointers.
    let r = unsafe {
        bpf::sys_bpf(
            BPF_PROG_GET_FD_BY_ID,
            (&mut attr as *mut GetIdAttr).cast(),
            mem::size_of::<GetIdAttr>(),
        )
    };
    match new_fd(r) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A program's run statistics (bpf_prog_info). The kernel accounts
/// run_cnt and run_time_ns only while statistics are on ([`StatsOn`] or
/// the kernel.bpf_stats_enabled sysctl); recursion_misses always: the
/// times the program was skipped because it was already running on that
/// cpu (a hook hit again from an interrupt while the program ran).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    pub run_time_ns: u64,
    pub run_cnt: u64,
    pub recursion_misses: u64,
}

impl RunStats {
    /// Nanoseconds per run (0 before the first).
    pub fn ns_per_run(&self) -> f64 {
        if self.run_cnt == 0 {
            0.0
        } else {
            self.run_time_ns as f64 / self.run_cnt as f64
        }
    }
}

/// The run statistics of `prog`.
pub fn run_stats(prog: &Program) -> io::Result<RunStats> {
    // bpf_prog_info up to recursion_misses (bytes 192, 200, 208).
    let mut info = [0u32; 54];
    bpf::obj_info(std::os::fd::AsFd::as_fd(prog), &mut info)?;
    let u64_at = |byte: usize| u64::from(info[byte / 4]) | u64::from(info[byte / 4 + 1]) << 32;
    Ok(RunStats {
        run_time_ns: u64_at(192),
        run_cnt: u64_at(200),
        recursion_misses: u64_at(208),
    })
}

/// Run-time statistics switched on for every program while this lives
/// (BPF_ENABLE_STATS, Linux 5.8+; needs CAP_SYS_ADMIN). Unlike setting
/// kernel.bpf_stats_enabled, nothing needs restoring: the kernel counts
/// the holders and stops when the last descriptor closes, also on SIGKILL.
#[derive(Debug)]
pub struct StatsOn {
    _fd: OwnedFd,
}

impl StatsOn {
    pub fn new() -> io::Result<StatsOn> {
        // BPF_STATS_RUN_TIME.
        let mut attr: u32 = 0;
        // SAFETY: attr is the enable_stats member of bpf_attr (a u32
        // type), holding no pointers.
        let r = unsafe {
            bpf::sys_bpf(
                BPF_ENABLE_STATS,
                (&mut attr as *mut u32).cast(),
                mem::size_of::<u32>(),
            )
        };
        Ok(StatsOn { _fd: new_fd(r)? })
    }
}
