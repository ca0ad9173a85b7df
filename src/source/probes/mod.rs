//! Kernel probes: small eBPF programs on the kernel's tracepoints.

pub mod drop_flows;
pub mod drops;
#[cfg(test)]
mod facts;
pub mod kallsyms;
#[cfg(test)]
mod testnet;
