//! `--path` in a capture: the path probes attached before the capture
//! starts (a kernel or privilege that cannot have them ends the program
//! before any file is made), read once it has stopped and joined to the
//! flow table by flow key.

use std::collections::{BTreeMap, HashMap};

use crate::consumers::flows::path::{FlowPath, PathStage, PathSummary, Process, Step};
use crate::consumers::flows::{FlowKey, Flows, RECEIVED, SENT};
use crate::error::{Error, Result};
use crate::options::{Direction, Options};
use crate::run::drops::probe_error;
use crate::source::probes::drops::{current_netns, Filter};
use crate::source::probes::path::{PathProbes, Reads};
use crate::source::Target;
use crate::steering::expect::Steering;
use crate::sys::btf::Btf;

/// The probes `--path` asks for, on `target` in the capture's network
/// namespace, for the directions captured; None without it.
pub fn attach(opts: &Options, target: &Target, say: &dyn Fn(String)) -> Result<Option<PathProbes>> {
    if !opts.path {
        return Ok(None);
    }
    let failed = |why: String| Error::Message(format!("--path: {why}"));
    let btf = Btf::kernel().map_err(|e| failed(e.to_string()))?;
    let netns = current_netns().map_err(|e| failed(format!("/proc/thread-self/ns/net: {e}")))?;
    let filter = Filter {
        ifindex: Some(target.ifindex),
        netns,
    };
    let rx = opts.direction != Direction::Tx;
    let tx = opts.direction != Direction::Rx;
    let probes = PathProbes::attach(&btf, filter, rx, tx)
        .map_err(|e| probe_error("--path", "the probes need", &e))?;
    for a in probes.attached() {
        say(format!("path: counted at {a}: {}", counts(&a.hook().name)));
    }
    for hook in &probes.absent {
        say(format!("path: this kernel has no tracepoint {hook}"));
    }
    if probes.reads == Reads::Helper {
        say(
            "path: packet headers copied with bpf_probe_read_kernel (this kernel refuses \
             plain loads of packet bytes, which Linux 6.18 allows: more cost per packet)"
                .to_string(),
        );
    }
    Ok(Some(probes))
}

/// What the program at tracepoint `tp` counts, for -v.
fn counts(tp: &str) -> &'static str {
    match tp {
        "netif_rx_entry"
        | "netif_receive_skb_entry"
        | "netif_receive_skb_list_entry"
        | "napi_gro_receive_entry" => "DRIVER and QUEUE, by the packet's headers",
        "skb_copy_datagram_iovec" => "APP of TCP, each segment copied to a reader, by its headers",
        // Linux 6.18's skb_consume_udp frees a datagram read with
        // skb_attempt_defer_free: no skb:consume_skb in the reader's
        // context (facts.rs), and nothing else in a UDP read has it.
        "sock_recv_length" => {
            "APP of UDP, each read, by the socket (no tracepoint in a UDP read carries the \
             datagram): a connected socket's by its 4-tuple, an unconnected one's not by flow"
        }
        "net_dev_queue" => "APP and QUEUE of sent packets, by the packet's headers",
        "net_dev_start_xmit" => "DRIVER of sent packets, by the packet's headers",
        _ => "",
    }
}

/// Joins what the probes counted to `flows`, judges each flow's stages
/// against `steering` and makes the matrices; `say` gets the -v lines
/// (the probes' cost, and why a column shows `-`). An error is a line
/// for stderr.
pub fn finish(
    probes: &mut PathProbes,
    flows: &mut Flows,
    steering: Option<&Steering>,
    say: &dyn Fn(String),
) -> std::result::Result<(), String> {
    probes.detach();
    let counts = probes
        .counts()
        .map_err(|e| format!("error reading the path counters: {e}"))?;
    let mut summary = PathSummary {
        missed: probes.missed().unwrap_or(0),
        ..PathSummary::default()
    };
    let mut by_flow: HashMap<FlowKey, Vec<Step>> = HashMap::new();
    for c in counts {
        match c.flow {
            Some(flow) => by_flow.entry(flow).or_default().push(Step {
                stage: c.stage,
                queue: c.queue,
                process: c.task,
                cpu: c.cpu,
                packets: c.packets,
            }),
            None => {
                if let Process::Named { pid, name } = c.task {
                    *summary
                        .unattributed_reads
                        .entry((name, pid, c.cpu))
                        .or_default() += c.packets;
                }
            }
        }
    }
    for r in &flows.records {
        let mut steps = by_flow.remove(&r.key).unwrap_or_default();
        steps.sort_by(|a, b| {
            (a.stage, a.queue, &a.process, a.cpu).cmp(&(b.stage, b.queue, &b.process, b.cpu))
        });
        summary.flows.insert(
            r.key,
            FlowPath {
                steps,
                mismatches: Vec::new(),
            },
        );
    }
    let elsewhere: u64 = by_flow.values().flatten().map(|s| s.packets).sum();
    flows.path = Some(summary);
    crate::steering::path::judge(steering.map(Steering::config), flows);
    for line in reasons(flows, elsewhere) {
        say(format!("path: {line}"));
    }
    if let Ok(s) = probes.run_stats() {
        say(if s.run_cnt == 0 && s.run_time_ns == 0 {
            "path: the probes' cost is not known (sysctl kernel.bpf_stats_enabled=1 counts it)"
                .to_string()
        } else {
            format!(
                "path: the probes ran {} times, {:.0} ns each on average",
                s.run_cnt,
                s.ns_per_run()
            )
        });
    }
    Ok(())
}

/// Why columns show `-`, for -v: counted over the flows.
fn reasons(flows: &Flows, elsewhere: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut no_queue = 0u64;
    let (mut unread, mut unsent, mut no_driver) = (0usize, 0usize, 0usize);
    for r in &flows.records {
        let Some(p) = flows.path_of(r) else { continue };
        no_queue += p
            .steps
            .iter()
            .filter(|s| s.stage == PathStage::RxDriver && s.queue.is_none())
            .map(|s| s.packets)
            .sum::<u64>();
        let named = |stage| {
            p.steps
                .iter()
                .any(|s| s.stage == stage && matches!(s.process, Process::Named { .. }))
        };
        if r.directions == RECEIVED && !named(PathStage::Read) {
            unread += 1;
        }
        if r.directions == SENT && !named(PathStage::Send) {
            unsent += 1;
        }
        if p.driver_cpus().is_empty() {
            no_driver += 1;
        }
    }
    if no_queue > 0 {
        out.push(format!(
            "QUEUE -: the driver recorded no receive queue for {} (get_rps_cpu() uses rx-0 for them)",
            crate::report::count(no_queue, "packet")
        ));
    }
    if no_driver > 0 {
        out.push(format!(
            "DRIVER -: {} not seen at a driver entry point (captured before the probes were attached, \
             handed over by a path without a tracepoint: napi_gro_frags, or headers the probes do \
             not walk: more than 2 VLAN tags or 6 IPv6 extension headers)",
            crate::report::count(no_driver as u64, "flow")
        ));
    }
    if unread > 0 {
        let mut readers: BTreeMap<String, u64> = BTreeMap::new();
        if let Some(s) = &flows.path {
            for ((name, pid, cpu), n) in &s.unattributed_reads {
                *readers
                    .entry(format!("{name}[{pid}] on cpu{cpu}"))
                    .or_default() += n;
            }
        }
        let readers: Vec<String> = readers
            .iter()
            .map(|(who, n)| format!("{who}: {}", crate::report::count(*n, "read")))
            .collect();
        out.push(format!(
            "APP -: {} received but not seen read: the probes see TCP segments copied to a reader \
             (skb:skb_copy_datagram_iovec) and reads of connected UDP sockets \
             (sock:sock_recv_length, which has the socket but not the datagram: no tracepoint \
             in a UDP read carries it, skb:consume_skb included); reads of unconnected UDP \
             sockets cannot be told apart by flow{}",
            crate::report::count(unread as u64, "flow"),
            if readers.is_empty() {
                String::new()
            } else {
                format!(" ({})", readers.join(", "))
            }
        ));
    }
    if unsent > 0 {
        out.push(format!(
            "APP -: {} sent but not by a process's own system call (from an interrupt, a softirq or \
             a kernel thread: a TCP segment sent on an ACK or a timer, a forwarded packet)",
            crate::report::count(unsent as u64, "flow")
        ));
    }
    if elsewhere > 0 {
        out.push(format!(
            "{} of flows the capture did not list (not captured, or in another direction) left out",
            crate::report::count(elsewhere, "packet")
        ));
    }
    out
}
