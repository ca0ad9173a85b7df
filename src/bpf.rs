//! The bpf(2) system call: loading the project's eBPF programs (see
//! [`crate::ebpf`] for how they are written). This is the only module that
//! calls bpf(2); each unsafe block states what the kernel expects.

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::ebpf::Insn;

const BPF_PROG_LOAD: libc::c_int = 5;

/// Program types (`enum bpf_prog_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ProgType {
    /// Socket filters; also what PACKET_FANOUT_EBPF runs to pick a member.
    SocketFilter = 1,
    Xdp = 6,
}

/// The first fields of `union bpf_attr` for BPF_PROG_LOAD. The kernel
/// accepts a shorter attr than its own and treats the rest as zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// Why a program did not load.
#[derive(Debug)]
pub struct LoadError {
    pub error: io::Error,
    /// The verifier's explanation, when it rejected the program.
    pub log: String,
}

impl LoadError {
    /// Whether the failure is a missing privilege: loading needs CAP_BPF
    /// (or CAP_SYS_ADMIN) unless unprivileged eBPF is allowed, which most
    /// distributions switch off (kernel.unprivileged_bpf_disabled).
    pub fn is_permission(&self) -> bool {
        matches!(self.error.raw_os_error(), Some(libc::EPERM | libc::EACCES))
    }
}

/// A loaded program; the kernel frees it when the last reference (this
/// descriptor, or an attachment) goes.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
}

impl Program {
    /// Loads `insns` as a program of `prog_type` named `name` (at most 15
    /// bytes; shown by bpftool). On failure the load is repeated with the
    /// verifier log on, so the error carries the verifier's reasons.
    pub fn load(prog_type: ProgType, name: &str, insns: &[Insn]) -> Result<Program, LoadError> {
        match load(prog_type, name, insns, None) {
            Ok(fd) => Ok(Program { fd }),
            Err(error)
                if error.raw_os_error() == Some(libc::EACCES)
                    || error.raw_os_error() == Some(libc::EINVAL) =>
            {
                let mut log = vec![0u8; 64 * 1024];
                let again = load(prog_type, name, insns, Some(&mut log));
                let text = String::from_utf8_lossy(&log)
                    .trim_end_matches('\0')
                    .trim_end()
                    .to_string();
                match again {
                    Ok(fd) => Ok(Program { fd }),
                    Err(_) => Err(LoadError { error, log: text }),
                }
            }
            Err(error) => Err(LoadError {
                error,
                log: String::new(),
            }),
        }
    }
}

fn load(
    prog_type: ProgType,
    name: &str,
    insns: &[Insn],
    log: Option<&mut Vec<u8>>,
) -> io::Result<OwnedFd> {
    const LICENSE: &[u8] = b"GPL\0";
    let mut attr = ProgLoadAttr {
        prog_type: prog_type as u32,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        ..ProgLoadAttr::default()
    };
    for (d, s) in attr.prog_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    if let Some(buf) = log {
        attr.log_level = 1;
        attr.log_size = buf.len() as u32;
        attr.log_buf = buf.as_mut_ptr() as u64;
    }
    // SAFETY: attr is a valid BPF_PROG_LOAD attr of the size passed; the
    // instructions, license and log buffer it points to are live for the
    // call (the kernel copies them, and writes at most log_size bytes to
    // the log).
    let fd = unsafe {
        sys_bpf(
            BPF_PROG_LOAD,
            (&mut attr as *mut ProgLoadAttr).cast(),
            mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success bpf(BPF_PROG_LOAD) returns a new descriptor that
    // nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// bpf(2).
///
/// # Safety
///
/// `attr` must point to `size` readable and writable bytes laid out as the
/// `union bpf_attr` member that `cmd` takes, and every pointer in it must
/// be valid as `cmd` requires.
pub(crate) unsafe fn sys_bpf(
    cmd: libc::c_int,
    attr: *mut libc::c_void,
    size: usize,
) -> libc::c_long {
    // SAFETY: the caller upholds bpf(2)'s requirements for cmd and attr.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size as libc::c_uint) }
}

impl AsFd for Program {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Program {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
