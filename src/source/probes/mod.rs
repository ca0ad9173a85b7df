//! Kernel probes: small eBPF programs on the kernel's tracepoints.

// Groundwork: the kernel probes (no option runs them yet).
#![allow(dead_code)]

pub mod drops;
#[cfg(test)]
mod facts;
#[cfg(test)]
mod testnet;
