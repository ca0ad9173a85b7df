//! Kernel probes: small eBPF programs on the kernel's tracepoints.
//!
//! - [`drops`]: the kernel's drops on an interface, per cpu and reason
//!   (`--drops`).
//! - [`path`]: each flow's receive queue, driver cpu, sending and reading
//!   cpu and process (`--path`).
//!
//! Both are built from the kernel's BTF ([`crate::sys::btf`]) and loaded
//! and attached by [`crate::sys::tracing`]; what they share is here.

use crate::sys::btf::Btf;
use crate::sys::ebpf::{self, Asm, Reg, Size};
use crate::sys::tracing::ProbeError;

pub mod drop_flows;
pub mod drops;
pub mod path;
mod path_headers;
mod path_program;

#[cfg(test)]
mod facts;
pub mod kallsyms;
#[cfg(test)]
mod path_tests;

/// The kernel's possible cpus: one value per cpu in a per-cpu map.
pub(crate) fn possible_cpus() -> Result<Vec<u32>, ProbeError> {
    Ok(crate::sys::bpf::possible_cpus()
        .map_err(|e| ProbeError::Os {
            what: "/sys/devices/system/cpu/possible".into(),
            why: e.into(),
        })?
        .iter()
        .collect())
}

/// The offset of `outer.path` (`sk_buff.dev`, `net.ns.inum`), checked to
/// be `size` bytes: each field is loaded whole with the size the program
/// uses.
pub(crate) fn field(btf: &Btf, outer: &str, path: &str, size: u32) -> Result<i16, ProbeError> {
    let m = btf.member(outer, path)?;
    if m.size != size {
        return Err(ProbeError::Kernel(format!(
            "the kernel's {outer}.{path} is {} bytes, not {size}",
            m.size
        )));
    }
    i16::try_from(m.offset).map_err(|_| {
        ProbeError::Kernel(format!(
            "the kernel's {outer}.{path} is beyond a load's reach"
        ))
    })
}

/// `dst = *(size *)(base + off)` of kernel memory: a plain load in a typed
/// program, bpf_probe_read_kernel into the stack at `scratch` (8 bytes)
/// in an untyped one (which clobbers r1-r5, so `base` is one of r6-r9).
pub(crate) fn deref(
    a: &mut Asm,
    typed: bool,
    dst: Reg,
    base: Reg,
    off: i16,
    size: Size,
    scratch: i16,
) {
    use ebpf::*;
    if typed {
        a.push([load(size, dst, base, off)]);
        return;
    }
    assert!(matches!(base, Reg::R6 | Reg::R7 | Reg::R8 | Reg::R9));
    let bytes = match size {
        Size::B => 1,
        Size::H => 2,
        Size::W => 4,
        Size::DW => 8,
    };
    a.push([
        mov(Reg::R1, Reg::R10),
        add_imm(Reg::R1, scratch.into()),
        mov_imm(Reg::R2, bytes),
        mov(Reg::R3, base),
        add_imm(Reg::R3, off.into()),
        call(helper::PROBE_READ_KERNEL),
        load(size, dst, Reg::R10, scratch),
    ]);
}
