//! `--live` on the capture's side: once per interval, a snapshot of the
//! counters the workers keep anyway (packets, bytes, the kernel's
//! counters read from the sockets) and, per cpu, the kernel's softirq
//! counters, handed to the view in [`crate::live`]. Nothing here runs per
//! packet; the main thread wakes once per interval.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::consumers::flows::FlowKey;
use crate::consumers::repeats::decode::summary;
use crate::consumers::repeats::Listed;
use crate::live::{self, term, CpuReader, Header, LiveView, Mode, Snapshot, Ticker};
use crate::options::Options;
use crate::options::Vantage;
use crate::packet::LinkType;
use crate::vantage::{Plan, NO_ID};
use crate::worker::Shared;

/// The live view of one capture.
pub struct Monitor<'a> {
    view: LiveView,
    ticker: Ticker,
    start: Instant,
    cpus: Option<CpuReader>,
    plan: &'a Plan,
    flows: bool,
    /// With --repeats: the capture's link type, for the decode line.
    repeats: Option<LinkType>,
    /// With --drops: the kernel's drops so far, (cpu, reason, packets).
    kernel_drops: Option<KernelDrops<'a>>,
}

/// Reads the kernel's drops so far (the drop probe's counters).
pub type KernelDrops<'a> = &'a dyn Fn() -> Vec<(u32, String, u64)>;

impl<'a> Monitor<'a> {
    /// The view `opts` asks for (None without `--live`), on the terminal
    /// (a table redrawn in place) or, when stderr is not one, as lines.
    pub fn new(
        opts: &Options,
        plan: &'a Plan,
        interface: &str,
        link: LinkType,
    ) -> Option<Monitor<'a>> {
        let interval = opts.live?;
        let mode = Mode::choose(term::stderr_is_terminal(), opts.json);
        if mode == Mode::Table {
            // Whatever ends the program, the terminal comes back.
            term::install_panic_hook();
            let _ = term::install_fatal_signal_handlers();
        }
        let header = Header {
            name: opts.name.clone(),
            interface: interface.to_string(),
            direction: opts.direction.as_str().to_string(),
            vantage: plan.vantage,
        };
        let start = Instant::now();
        Some(Monitor {
            view: LiveView::new(header, mode),
            ticker: Ticker::new(start, interval),
            start,
            cpus: (plan.vantage == Vantage::Cpu)
                .then(|| CpuReader::open().ok())
                .flatten(),
            plan,
            flows: opts.flows.is_some(),
            repeats: opts.repeats.map(|_| link),
            kernel_drops: None,
        })
    }

    /// With --drops: where the view reads the kernel's drops.
    pub fn with_kernel_drops(mut self, read: Option<KernelDrops<'a>>) -> Monitor<'a> {
        self.kernel_drops = read;
        self
    }

    /// Milliseconds until the next interval, for poll().
    pub fn timeout_ms(&self) -> i32 {
        self.ticker.timeout_ms(Instant::now())
    }

    /// The first view, of counters at zero.
    pub fn begin(&mut self, counters: &dyn Counters, shared: &Shared) {
        let snap = self.snapshot(counters, shared);
        let _ = self.view.update(snap);
        // The first interval of flows starts now.
        self.ask_flows(shared);
    }

    /// At every wakeup: a new view if an interval is over.
    pub fn tick(&mut self, counters: &dyn Counters, shared: &Shared) {
        if self.ticker.due(Instant::now()) {
            if self.flows || self.repeats.is_some() {
                // The workers answer at their next ring block, which the
                // kernel hands over within a block timeout, or, idle, when
                // the request wakes them: give the busy ones two, so the
                // flows are this interval's.
                self.ask_flows(shared);
                std::thread::sleep(FLOW_ANSWER_WAIT);
            }
            let snap = self.snapshot(counters, shared);
            let _ = self.view.update(snap);
        }
    }

    /// A terminal signal: SIGWINCH redraws at the new size; SIGTSTP gives
    /// the terminal back, stops, and takes it again when continued.
    /// Returns whether the signal was one of those.
    pub fn signal(&mut self, signo: i32) -> bool {
        match signo {
            libc::SIGWINCH => {
                let _ = self.view.resize();
                true
            }
            libc::SIGTSTP => {
                self.view.suspend();
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
                let _ = self.view.resume();
                true
            }
            _ => false,
        }
    }

    /// The capture is stopping: off the terminal at once, so nothing that
    /// follows (the workers' last packets, messages) lands in the table.
    pub fn stopping(&mut self) {
        self.view.stopping();
    }

    /// After the workers are done: the last interval's lines (when not a
    /// table), so that the logged lines add up to the report.
    pub fn finish(mut self, counters: &dyn Counters, shared: &Shared) {
        let snap = self.snapshot(counters, shared);
        let _ = self.view.finish(Some(snap));
    }

    fn ask_flows(&self, shared: &Shared) {
        if self.flows || self.repeats.is_some() {
            shared.ask_flows();
        }
    }

    /// The counters now.
    fn snapshot(&mut self, counters: &dyn Counters, shared: &Shared) -> Snapshot {
        let now = counters.read();
        let streams = self
            .plan
            .streams
            .iter()
            .zip(now)
            .enumerate()
            .map(|(slot, (s, c))| live::StreamCount {
                id: s.id().unwrap_or(NO_ID),
                label: s.label(),
                packets: c.packets,
                bytes: c.bytes,
                drops: c.drops,
                repeated: self
                    .repeats
                    .map(|_| shared.repeated[slot].load(Ordering::Relaxed)),
            })
            .collect();
        Snapshot {
            elapsed: self.start.elapsed(),
            streams,
            cpus: self.cpus.as_mut().and_then(|r| r.read().ok()),
            flows: self.flows.then(|| top_flows(shared)),
            repeats: self.repeats.map(|link| self.top_repeat(shared, link)),
            kernel_drops: self.kernel_drops.map(|read| read()),
        }
    }

    /// The repeating packet with the most copies the workers reported for
    /// the last interval, over all streams, with its stream.
    fn top_repeat(&self, shared: &Shared, link: LinkType) -> Vec<(String, String, u64)> {
        let mut best: Option<(usize, u64, Listed)> = None;
        for (slot, answer) in shared.repeat_tops.iter().enumerate() {
            let top = answer.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some((n, listed)) = top {
                if !best.as_ref().is_some_and(|b| n <= b.1) {
                    best = Some((slot, n, listed));
                }
            }
        }
        best.map(|(slot, n, l)| {
            let label = self
                .plan
                .streams
                .get(slot)
                .map_or_else(String::new, |s| s.short_label());
            (label, summary(link, &l.sample), n)
        })
        .into_iter()
        .collect()
    }
}

/// One stream's numbers so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
    pub drops: u64,
}

/// Where the view's numbers come from: the workers' counters, or the
/// XDP program's.
pub trait Counters {
    /// Per stream, in the plan's order.
    fn read(&self) -> Vec<Count>;
}

/// The busiest flows the workers reported for the last interval, over
/// all streams, as the view shows them.
fn top_flows(shared: &Shared) -> Vec<(String, u64)> {
    let mut sum: HashMap<FlowKey, u64> = HashMap::new();
    for slot in &shared.flow_tops {
        let top = std::mem::take(&mut *slot.lock().unwrap_or_else(|e| e.into_inner()));
        for (key, n) in top {
            *sum.entry(key).or_default() += n;
        }
    }
    let mut top: Vec<(FlowKey, u64)> = sum.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(crate::worker::LIVE_TOP_FLOWS);
    top.into_iter()
        .map(|(k, n)| (format!("{} {} > {}", k.proto().name(), k.src(), k.dst()), n))
        .collect()
}

/// How long the view waits for the workers' flows of an interval (two
/// ring block timeouts).
const FLOW_ANSWER_WAIT: Duration = Duration::from_millis(40);
