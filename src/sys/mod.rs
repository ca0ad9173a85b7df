//! The kernel-facing layer: every system call, ioctl, mmap, netlink
//! exchange and eBPF load of the program, and the only `unsafe` code
//! (the crate denies it everywhere else). Each module wraps one kernel
//! interface in safe functions and types; each `unsafe` block says, in
//! its SAFETY comment, which kernel or libc rule makes it sound.
//!
//! - [`afpacket`]: packet sockets (fanout, filters, rings, statistics) and
//!   interface lookups (ifindex, hardware type, flags)
//! - [`ring`]: the mmap'ed TPACKET_V3 receive ring, walked block by block
//! - [`ebpf`]: eBPF instructions, assembled in Rust; [`bpf`]: bpf(2):
//!   programs, maps, links; [`tracing`]: tracing programs and their links;
//!   [`btf`]: the kernel's BTF type information
//! - [`perf`]: perf event rings (the XDP program's records)
//! - [`ethtool`]: SIOCETHTOOL and the netdev generic netlink family
//! - [`host`]: the machine and its clocks (uname, sysconf, local time)
//! - [`cache`]: prefetch hints

pub mod afpacket;
pub mod bpf;
pub mod btf;
pub mod cache;
pub mod ebpf;
pub mod ethtool;
pub mod event;
pub mod host;
pub mod libpcap;
pub mod netlink;
pub mod perf;
pub mod ring;
pub mod term;
#[cfg(test)]
pub mod testutil;
pub mod tracing;
