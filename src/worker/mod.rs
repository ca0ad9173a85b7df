//! What every worker shares, whatever its source: the stop, the per-stream
//! counters, the faults, the panic guard, and the job a thread runs. The
//! loops that read a source's streams live with the source
//! ([`crate::source::afpacket`]'s ring worker, [`crate::source::xdp`]'s
//! perf buffer worker); `-c` over several streams is [`count`].

pub mod count;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::consumers::flows::FlowKey;
use crate::consumers::repeats::Listed;
use crate::consumers::Consumers;
pub use crate::consumers::Leftovers;
use crate::cpuset::CpuSet;
use crate::sys::afpacket::{Filter, PacketSocket};

/// Why a worker ended early.
#[derive(Debug)]
pub enum Fault {
    /// The socket reported an error: the interface went down or away.
    Socket(io::Error),
    /// poll() itself failed.
    Poll(io::Error),
    /// Writing the pcap output failed.
    Write { path: String, error: io::Error },
}

/// State every worker and the main thread share.
pub struct Shared {
    /// Written once to stop everybody; never read, so it stays readable and
    /// wakes every poll() at once.
    stop_fd: EventFd,
    stopping: AtomicBool,
    /// Packets captured per worker, readable after a worker panicked.
    pub captured: Vec<AtomicU64>,
    /// Kernel drops per worker.
    pub drops: Vec<AtomicU64>,
    /// Packets the kernel accepted per worker (its tp_packets, drops
    /// included), as read so far.
    pub accepted: Vec<AtomicU64>,
    /// Bytes (wire lengths) of the packets taken, per worker: kept only
    /// for the live view.
    pub bytes: Vec<AtomicU64>,
    /// Packets the kernel accepted before a stop but never handed over.
    pub unread: Vec<AtomicU64>,
    /// Faults of all workers, in the order they happened.
    pub faults: Mutex<Vec<Fault>>,
    /// The live view's request for each worker's busiest flows of the
    /// interval (a generation number), and the answers.
    pub flow_request: AtomicU64,
    pub flow_tops: Vec<Mutex<Vec<(FlowKey, u64)>>>,
    /// With `--live` and `--flows` or `--repeats`: one eventfd per worker
    /// that the view's request wakes, so that a worker asleep on an empty
    /// ring answers too (a ring's worker otherwise wakes only when a
    /// block comes, and the packets it took before going idle would show
    /// in no interval's flows). Empty otherwise: no descriptors and no
    /// wake-ups for a view that is not there.
    flow_wake: Vec<EventFd>,
    /// With `--repeats` and `--live`: repeated copies per worker so far,
    /// and (at the same request as the flows) each worker's repeating
    /// packet with the most copies in the interval.
    pub repeated: Vec<AtomicU64>,
    /// With `--metrics` and `--flows`: per worker, the flows its table has
    /// seen and holds now.
    pub flows_seen: Vec<AtomicU64>,
    pub flows_tracked: Vec<AtomicU64>,
    pub flows_untracked: Vec<AtomicU64>,
    pub repeat_tops: Vec<Mutex<Option<(u64, Listed)>>>,
}

/// Flows each worker reports to the live view per interval.
pub const LIVE_TOP_FLOWS: usize = 5;

/// A worker's side of the live view's request: `answered` is the last
/// request it answered. When the view has asked since (or, `last`, when
/// the capture has ended and the view ever asked, so that the final
/// interval's lines hold the flows of its packets too), hands it the
/// busiest flows of `slot`'s stream and its repeating packet with the
/// most copies since the last answer, added to any answer the view has
/// not taken yet.
pub fn answer_live(
    shared: &Shared,
    slot: usize,
    consumers: &mut Consumers,
    answered: &mut u64,
    last: bool,
) {
    if consumers.flows.is_none() && consumers.repeats.is_none() {
        return;
    }
    let asked = shared.flow_request.load(Ordering::Relaxed);
    if asked == *answered && !(last && asked > 0) {
        return;
    }
    *answered = asked;
    if let Some(w) = &mut consumers.repeats {
        if let Some((n, listed)) = w.interval_top() {
            // As with the flows: added to an answer not yet taken.
            let mut have = shared.repeat_tops[slot]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match &mut *have {
                Some(have) if have.1.digest == listed.digest => have.0 += n,
                Some(have) if have.0 >= n => {}
                _ => *have = Some((n, listed)),
            }
        }
    }
    if let Some(table) = &mut consumers.flows {
        let top = table.interval_top(LIVE_TOP_FLOWS);
        // Added to what the view has not taken yet: a second answer may
        // come before the view looks.
        let mut have = shared.flow_tops[slot]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (key, n) in top {
            match have.iter_mut().find(|(k, _)| *k == key) {
                Some(have) => have.1 += n,
                None => have.push((key, n)),
            }
        }
    }
}

impl Shared {
    pub fn new(workers: usize) -> io::Result<Shared> {
        Shared::with_flow_wake(workers, false)
    }

    /// `flow_wake`: the live view will ask the workers for their flows or
    /// repeating packets every interval.
    pub fn with_flow_wake(workers: usize, flow_wake: bool) -> io::Result<Shared> {
        let wakes = if flow_wake { workers } else { 0 };
        Ok(Shared {
            stop_fd: EventFd::from_value_and_flags(
                0,
                EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
            )?,
            stopping: AtomicBool::new(false),
            captured: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            drops: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            accepted: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            bytes: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            unread: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            faults: Mutex::new(Vec::new()),
            flow_request: AtomicU64::new(0),
            flow_tops: (0..workers).map(|_| Mutex::new(Vec::new())).collect(),
            flow_wake: (0..wakes)
                .map(|_| {
                    EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                })
                .collect::<Result<_, _>>()?,
            repeated: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            flows_seen: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            flows_tracked: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            flows_untracked: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            repeat_tops: (0..workers).map(|_| Mutex::new(None)).collect(),
        })
    }

    /// Tells every worker to stop.
    pub fn stop(&self) {
        if !self.stopping.swap(true, Ordering::SeqCst) {
            let _ = self.stop_fd.write(1);
        }
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub fn stop_fd(&self) -> &EventFd {
        &self.stop_fd
    }

    /// The live view asks every worker for its flows and repeating
    /// packets of the interval, waking those asleep.
    pub fn ask_flows(&self) {
        self.flow_request.fetch_add(1, Ordering::Relaxed);
        for fd in &self.flow_wake {
            let _ = fd.write(1);
        }
    }

    /// What wakes worker `slot` when the live view asks (None without
    /// one); the worker reads it empty when woken.
    pub fn flow_wake_fd(&self, slot: usize) -> Option<&EventFd> {
        self.flow_wake.get(slot)
    }

    /// Reads worker `slot`'s kernel counters from its socket into
    /// `accepted` and `drops`. Reading resets them in the kernel, under the
    /// socket's queue lock, so the worker and the live view may both call
    /// this: each read gets its own share and nothing is counted twice.
    pub fn read_kernel(&self, slot: usize, sock: &PacketSocket) {
        if let Ok(s) = sock.take_stats() {
            self.accepted[slot].fetch_add(s.packets, Ordering::Relaxed);
            self.drops[slot].fetch_add(s.drops, Ordering::Relaxed);
        }
    }

    /// Writing `path` failed: recorded for the report, and the capture
    /// stops.
    pub fn fault_write(&self, path: String, error: io::Error) {
        self.fault(Fault::Write { path, error });
    }

    pub fn fault(&self, f: Fault) {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(f);
        self.stop();
    }
}

/// Held by every thread of a capture: if the thread unwinds, the others
/// are told to stop (a panic must never leave workers running that nobody
/// will stop). For a worker, its socket is also shut, and the drops the
/// kernel counted up to then are kept for the report.
pub struct PanicGuard<'a> {
    shared: &'a Shared,
    worker: Option<(&'a PacketSocket, usize)>,
}

impl<'a> PanicGuard<'a> {
    /// For the main thread.
    pub fn main(shared: &'a Shared) -> PanicGuard<'a> {
        PanicGuard {
            shared,
            worker: None,
        }
    }

    /// For the worker whose socket is `sock` and counters `slot`.
    pub fn worker(shared: &'a Shared, sock: &'a PacketSocket, slot: usize) -> PanicGuard<'a> {
        PanicGuard {
            shared,
            worker: Some((sock, slot)),
        }
    }
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        if let Some((sock, slot)) = self.worker {
            let _ = sock.attach_filter(&Filter::drop_all());
            self.shared.read_kernel(slot, sock);
        }
        self.shared.stop();
    }
}

/// Fault injection for the test suite, compiled into debug builds only (the
/// binary the integration tests run): `RXTXCPU_TEST_PANIC_CPU=N` makes cpu
/// N's worker (the stream whose fanout member is N: cpu N, queue N, node
/// N) panic at its first block, to prove a crashing worker still
/// stops the others, keeps files valid and exits non-zero.
pub mod test_hooks {
    #[cfg(debug_assertions)]
    pub fn maybe_panic(cpu: u32) {
        use std::sync::OnceLock;
        static CPU: OnceLock<Option<u32>> = OnceLock::new();
        let target = CPU.get_or_init(|| {
            std::env::var("RXTXCPU_TEST_PANIC_CPU")
                .ok()
                .and_then(|v| v.parse().ok())
        });
        if *target == Some(cpu) {
            panic!("RXTXCPU_TEST_PANIC_CPU={cpu}: injected worker panic");
        }
    }

    #[cfg(not(debug_assertions))]
    #[inline(always)]
    pub fn maybe_panic(_cpu: u32) {}
}

/// One thread of a capture: it reads one or more streams of its source
/// and hands their packets to those streams' consumers. A source makes
/// its jobs; [`crate::run`] starts them (pinned where the job says), and
/// each returns what its streams' consumers leave, by stream slot.
pub struct Job<'a> {
    /// The thread's name (`cpu0`, `xdp`).
    pub thread: String,
    /// The stream slots it serves.
    pub slots: Vec<usize>,
    /// The cpus it runs on; None: not pinned.
    pub pin: Option<CpuSet>,
    /// Whether `-v` says where it runs (`worker for cpu0 running on
    /// cpu0`), and what it is called there and in errors (`worker for
    /// cpu0`, `an XDP worker`).
    pub say_pin: bool,
    pub name: String,
    /// The line for stderr if it dies (a panic): its streams' counts may
    /// be short.
    pub failed: String,
    /// The work itself.
    pub run: Box<dyn FnOnce() -> Vec<(usize, Leftovers)> + Send + 'a>,
}
