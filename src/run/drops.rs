//! `--drops` in a capture: the kernel's drop probe attached before the
//! capture starts (a kernel or privilege that cannot have it ends the
//! program before any file is made), read once the capture has stopped.

use crate::consumers::flows::drops::Unkeyed;
use crate::consumers::flows::{FlowKey, Flows};
use crate::error::{Error, Result};
use crate::metrics::kernel::{parse_softnet, SoftnetLine};
use crate::options::Options;
use crate::report::KernelDrop;
use crate::source::probes::drop_flows;
use crate::source::probes::drops::{current_netns, DropProbe, Filter, Reason, Variant};
use crate::source::probes::kallsyms::Symbols;
use crate::source::Target;
use crate::sys::btf::Btf;
use crate::vantage::{Plan, StreamKind};

/// The probe `--drops` asks for, attached to the drops on `target` in the
/// capture's network namespace; None without it.
pub fn attach(opts: &Options, target: &Target, say: &dyn Fn(String)) -> Result<Option<DropProbe>> {
    if !opts.drops {
        return Ok(None);
    }
    let failed = |why: String| Error::Message(format!("--drops: {why}"));
    let btf = Btf::kernel().map_err(|e| failed(e.to_string()))?;
    let netns = current_netns().map_err(|e| failed(format!("/proc/thread-self/ns/net: {e}")))?;
    let filter = Filter {
        ifindex: Some(target.ifindex),
        netns,
    };
    // The flows' part only with --flows, the drop sites only for -v: no
    // work in the kernel for what is not asked for.
    let variant = Variant {
        flows: opts.flows.is_some(),
        locations: opts.verbose,
    };
    let probe = DropProbe::attach(&btf, filter, variant)
        .map_err(|e| probe_error("--drops", "the probe needs", &e))?;
    say(format!("drops: counted at {}", probe.attached()));
    Ok(Some(probe))
}

/// The error of `option`'s probe (or probes) that could not be had,
/// naming the privileges where they are what is missing (`who`: "the
/// probe needs").
pub fn probe_error(option: &str, who: &str, e: &crate::sys::tracing::ProbeError) -> Error {
    Error::Message(if e.is_permission() {
        format!(
            "{option}: {e}; {who} CAP_BPF and CAP_PERFMON (or root): \
             setcap cap_net_raw,cap_bpf,cap_perfmon+ep {}",
            std::env::current_exe().map_or("rxtxcpu".into(), |p| p.display().to_string())
        )
    } else {
        format!("{option}: {e}")
    })
}

/// For `-v` at the end: what the probe cost in the kernel, from the
/// kernel's run-time statistics (kept only while the sysctl
/// kernel.bpf_stats_enabled is 1).
pub fn cost(probe: &DropProbe) -> Option<String> {
    let s = probe.run_stats().ok()?;
    Some(if s.run_time_ns == 0 && s.run_cnt == 0 {
        "drops: the probe's cost is not known (sysctl kernel.bpf_stats_enabled=1 counts it)"
            .to_string()
    } else {
        format!(
            "drops: the probe ran {} times, {:.0} ns each on average",
            s.run_cnt,
            s.ns_per_run()
        )
    })
}

/// For `-v` at the end: where the kernel dropped the packets, once per
/// reason and call site (the last drop's per cpu: the tracepoint's
/// `location`, the address the drop was called from), named through
/// /proc/kallsyms where it shows addresses, else as the address:
/// `drops: NO_SOCKET at __udp4_lib_rcv+0x9a8 (cpu1)`.
pub fn sites(probe: &DropProbe) -> Vec<String> {
    let sites = match probe.sites() {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => return Vec::new(),
        Err(e) => return vec![format!("drops: error reading the drop sites: {e}")],
    };
    let symbols = Symbols::read();
    // (reason, location) -> cpus, in reason order.
    let mut at: std::collections::BTreeMap<(String, u64), Vec<u32>> = Default::default();
    for s in sites {
        let cpus = at.entry((s.reason.to_string(), s.location)).or_default();
        if !cpus.contains(&s.cpu) {
            cpus.push(s.cpu);
        }
    }
    at.into_iter()
        .map(|((reason, location), cpus)| {
            let place = symbols
                .as_ref()
                .and_then(|s| s.name(location))
                .unwrap_or_else(|| format!("0x{location:x}"));
            let cpus: Vec<String> = cpus.iter().map(|c| format!("cpu{c}")).collect();
            format!("drops: {reason} at {place} ({})", cpus.join(", "))
        })
        .collect()
}

/// The stream of `cpu` in `plan`: the cpu's own stream, or its node's;
/// None in the queue vantage (a drop has no queue) or when not captured.
pub fn stream_of(plan: &Plan, cpu: u32) -> Option<u32> {
    plan.streams
        .iter()
        .find(|s| match s.kind {
            StreamKind::Cpu(c) => c == cpu,
            StreamKind::Numa(_) => s.pin.as_ref().is_some_and(|p| p.contains(cpu)),
            _ => false,
        })
        .and_then(|s| s.id())
}

/// What the probe counted, for the report; an error is a line for stderr.
pub fn read(probe: &DropProbe) -> std::result::Result<Vec<KernelDrop>, String> {
    let counts = probe
        .counts()
        .map_err(|e| format!("error reading the drop counters: {e}"))?;
    Ok(counts
        .into_iter()
        .map(|c| KernelDrop {
            stream: None,
            cpu: c.cpu,
            reason: match c.reason {
                Reason::Kernel { name, code } if name.is_empty() => format!("reason {code}"),
                Reason::Kernel { name, .. } => name,
                Reason::Other => "OTHER".to_string(),
            },
            namespace_known: c.namespace_known,
            packets: c.packets,
        })
        .collect())
}

/// With `--flows`: the probe's drops per flow joined to the flow table
/// (`flows`, None when no table was made: then nothing); `-v` says how
/// many of the interface's `drops` have a flow. An error is a line for
/// stderr.
pub fn join_flows(
    probe: &DropProbe,
    flows: Option<&mut Flows>,
    drops: &[KernelDrop],
    say: &dyn Fn(String),
) -> std::result::Result<(), String> {
    let Some(flows) = flows else {
        return Ok(());
    };
    let Some((per_flow, overflow)) = probe
        .flow_counts()
        .map_err(|e| format!("error reading the flows' drop counters: {e}"))?
    else {
        return Ok(());
    };
    let total: u64 = drops
        .iter()
        .filter(|d| d.namespace_known)
        .map(|d| d.packets)
        .sum();
    let keyed: u64 = per_flow.iter().map(|d| d.packets).sum();
    if total > 0 {
        let mut line = format!("drops: {keyed} of the interface's {total} drops keyed by flow");
        if overflow > 0 {
            line.push_str(&format!(
                ", {overflow} not: the probe's table of {} flows and reasons was full",
                drop_flows::MAX_ENTRIES
            ));
        }
        let other = total.saturating_sub(keyed + overflow);
        if other > 0 {
            line.push_str(&format!(
                ", {other} not IPv4 or IPv6 (or their headers not readable)"
            ));
        }
        say(line);
    }
    flows.add_drops(
        per_flow.into_iter().map(|d| {
            let f = d.flow;
            (
                FlowKey::ip(f.src, f.dst, f.proto, f.ports),
                d.reason.to_string(),
                d.packets,
            )
        }),
        Unkeyed {
            overflow,
            map_entries: drop_flows::MAX_ENTRIES,
        },
    );
    Ok(())
}

/// The interface's own drop counters (/sys/class/net/IF/statistics), as
/// the driver and the core count them: the names tell where.
const DEVICE_COUNTERS: [&str; 4] = [
    "rx_dropped",
    "rx_missed_errors",
    "rx_fifo_errors",
    "tx_dropped",
];

/// Counters read as the capture starts, for their deltas at the end.
pub struct Before {
    interface: Option<String>,
    device: Option<[u64; 4]>,
    /// /proc/net/softnet_stat (None where it cannot be read).
    softnet: Option<Vec<SoftnetLine>>,
}

fn device_counters(interface: &str) -> Option<[u64; 4]> {
    let mut out = [0; 4];
    for (v, name) in out.iter_mut().zip(DEVICE_COUNTERS) {
        let path = format!("/sys/class/net/{interface}/statistics/{name}");
        *v = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    }
    Some(out)
}

fn softnet() -> Option<Vec<SoftnetLine>> {
    parse_softnet(&std::fs::read_to_string("/proc/net/softnet_stat").ok()?).ok()
}

/// Reads the counters whose changes the report gives, with or without
/// `--drops` (a plain read of /proc and /sys, no privilege): the
/// interface's drop counters and each cpu's softnet_stat.
pub fn before(opts: &Options) -> Before {
    Before {
        interface: opts.interface.clone(),
        device: opts.interface.as_deref().and_then(device_counters),
        softnet: softnet(),
    }
}

impl Before {
    /// The report's lines for what changed, only the counters that did
    /// (32-bit softnet counters that wrapped count from their wrap), and
    /// the same for the JSON report: `device_drops` (counter -> packets)
    /// and `softnet` (per cpu that changed).
    pub fn lines(&self) -> (Vec<String>, serde_json::Map<String, serde_json::Value>) {
        let mut out = Vec::new();
        let mut json = serde_json::Map::new();
        let mut device = serde_json::Map::new();
        let mut cpus = Vec::new();
        if let (Some(name), Some(a)) = (&self.interface, self.device) {
            if let Some(b) = device_counters(name) {
                for (i, counter) in DEVICE_COUNTERS.iter().enumerate() {
                    let n = b[i].saturating_sub(a[i]);
                    device.insert(counter.to_string(), n.into());
                    if n > 0 {
                        out.push(format!("{} dropped by {name} ({counter}).", packets(n)));
                    }
                }
            }
        }
        if let (Some(a), Some(b)) = (&self.softnet, softnet()) {
            let delta = |x: u64, y: u64| y.wrapping_sub(x) & u64::from(u32::MAX);
            for line in &b {
                let Some(old) = a.iter().find(|o| o.cpu == line.cpu) else {
                    continue;
                };
                let (o, n, cpu) = (old.counts, line.counts, line.cpu);
                let backlog = delta(o.dropped, n.dropped);
                let limited = delta(o.flow_limit_count, n.flow_limit_count);
                let squeezes = delta(o.time_squeeze, n.time_squeeze);
                if backlog + limited + squeezes > 0 {
                    cpus.push(serde_json::json!({
                        "cpu": cpu,
                        "dropped": backlog,
                        "flow_limit_count": limited,
                        "time_squeeze": squeezes,
                    }));
                }
                if backlog > 0 {
                    out.push(format!(
                        "{} dropped by the kernel on cpu{cpu}: backlog full (softnet_stat, every device).",
                        packets(backlog)
                    ));
                }
                if limited > 0 {
                    out.push(format!(
                        "{} dropped by the kernel on cpu{cpu}: flow limit (softnet_stat, every device).",
                        packets(limited)
                    ));
                }
                if squeezes > 0 {
                    let what = if squeezes == 1 {
                        "time squeeze"
                    } else {
                        "time squeezes"
                    };
                    out.push(format!(
                        "{squeezes} {what} on cpu{cpu} (softnet_stat, every device)."
                    ));
                }
            }
            json.insert("softnet".into(), cpus.into());
        }
        if self.device.is_some() && !device.is_empty() {
            json.insert("device_drops".into(), device.into());
        }
        (out, json)
    }
}

fn packets(n: u64) -> String {
    crate::report::count(n, "packet")
}
