//! The machine's cpus and numa nodes, as the kernel shows them in sysfs:
//! what a vantage counts its streams from.

use crate::cpuset::CpuSet;

/// The number of configured cpus: every cpu the kernel knows, online or not.
/// The fanout group needs one member per configured cpu so that member `i`
/// is cpu `i` (the kernel picks `smp_processor_id() % num_members`): fewer
/// members would silently fold cpus onto each other. sysconf's answer is
/// therefore never taken below the highest online cpu + 1 (some C
/// libraries count only the cpus the process may run on).
pub fn configured_count() -> u32 {
    let n = crate::sys::host::configured_cpus();
    let highest = read_online()
        .and_then(|s| s.iter().last())
        .map_or(0, |c| c + 1);
    n.max(highest).max(1)
}

fn read_online() -> Option<CpuSet> {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| CpuSet::parse_list(&s))
}

/// The cpus online now, from sysfs. A machine without the file (very old
/// kernels, odd containers) is taken to have every configured cpu online.
pub fn online() -> CpuSet {
    read_online().unwrap_or_else(|| CpuSet::first(configured_count()))
}

/// The machine's numa nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumaNodes {
    /// Nodes the kernel may have (highest possible node + 1): a fanout
    /// group by node needs one member per node id.
    pub possible: u32,
    /// Nodes with at least one online cpu: only those can handle packets.
    pub with_cpus: CpuSet,
}

const NODE_DIR: &str = "/sys/devices/system/node";

/// The numa nodes, from sysfs. A kernel without NUMA support has no node
/// directory, and bpf_get_numa_node_id() is 0 on every cpu: one node 0.
pub fn numa_nodes() -> NumaNodes {
    let read = |f: &str| {
        std::fs::read_to_string(format!("{NODE_DIR}/{f}"))
            .ok()
            .and_then(|s| CpuSet::parse_list(&s))
    };
    let Some(possible) = read("possible") else {
        return NumaNodes {
            possible: 1,
            with_cpus: CpuSet::first(1),
        };
    };
    let online = online();
    let with_cpus = possible
        .iter()
        .filter(|&n| !node_cpus(n).intersection(&online).is_empty())
        .collect();
    NumaNodes {
        possible: possible.iter().last().map_or(1, |n| n + 1),
        with_cpus,
    }
}

/// The cpus of numa node `node` (online or not); every cpu on a machine
/// without NUMA support.
pub fn node_cpus(node: u32) -> CpuSet {
    match std::fs::read_to_string(format!("{NODE_DIR}/node{node}/cpulist")) {
        Ok(s) => CpuSet::parse_list(&s).unwrap_or_default(),
        Err(_) if !std::path::Path::new(NODE_DIR).exists() => CpuSet::first(configured_count()),
        Err(_) => CpuSet::new(),
    }
}
