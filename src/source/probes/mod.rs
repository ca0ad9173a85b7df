//! Kernel probes: small eBPF programs on the kernel's tracepoints.

pub mod drop_flows;
pub mod drops;
#[cfg(test)]
mod facts;
#[cfg(test)]
mod testnet;
