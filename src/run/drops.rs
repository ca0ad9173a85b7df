//! `--drops` in a capture: the kernel's drop probe attached before the
//! capture starts (a kernel or privilege that cannot have it ends the
//! program before any file is made), read once the capture has stopped.

use crate::error::{Error, Result};
use crate::options::Options;
use crate::report::KernelDrop;
use crate::source::probes::drops::{current_netns, DropProbe, Filter, Reason};
use crate::source::Target;
use crate::sys::btf::Btf;

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
    let probe = DropProbe::attach(&btf, filter).map_err(|e| failed(e.to_string()))?;
    say(format!("drops: counted at {}", probe.attached()));
    Ok(Some(probe))
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

/// What the probe counted, for the report; an error is a line for stderr.
pub fn read(probe: &DropProbe) -> std::result::Result<Vec<KernelDrop>, String> {
    let counts = probe
        .counts()
        .map_err(|e| format!("error reading the drop counters: {e}"))?;
    Ok(counts
        .into_iter()
        .map(|c| KernelDrop {
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
