//! `--drops` in a capture: the kernel's drop probe attached before the
//! capture starts (a kernel or privilege that cannot have it ends the
//! program before any file is made), read once the capture has stopped.

use crate::error::{Error, Result};
use crate::metrics::kernel::{parse_softnet, SoftnetLine};
use crate::options::Options;
use crate::report::KernelDrop;
use crate::source::probes::drops::{current_netns, DropProbe, Filter, Reason};
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
    let probe = DropProbe::attach(&btf, filter)
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
    /// With `--drops`: /proc/net/softnet_stat.
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

/// Reads the counters whose changes the report gives: always the
/// interface's drop counters, with `--drops` each cpu's softnet_stat.
pub fn before(opts: &Options) -> Before {
    Before {
        interface: opts.interface.clone(),
        device: opts.interface.as_deref().and_then(device_counters),
        softnet: opts.drops.then(softnet).flatten(),
    }
}

impl Before {
    /// The report's lines for what changed, only the counters that did
    /// (32-bit softnet counters that wrapped count from their wrap), and
    /// with `--drops` the same for the JSON report: `device_drops`
    /// (counter -> packets) and `softnet` (per cpu that changed).
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
        // In JSON with --drops only: a report without it keeps its keys.
        if self.softnet.is_some() && self.device.is_some() && !device.is_empty() {
            json.insert("device_drops".into(), device.into());
        }
        (out, json)
    }
}

fn packets(n: u64) -> String {
    crate::report::count(n, "packet")
}
