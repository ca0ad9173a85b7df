//! `--xdp`: received frames counted (and, with `-w` or `--flows`,
//! copied) by an XDP program of our own at the interface's XDP hook
//! ([`program`]), per cpu (and per queue), exactly. The copies come
//! through per-cpu perf buffers ([`record`]), which workers ([`worker`])
//! read and hand to the same consumers as a packet socket capture. The
//! program is attached by a BPF link ([`capture`]): the kernel removes it
//! when the process ends, however it ends. This file is the [`Source`]
//! the capture drives.

pub mod capture;
mod error;
mod program;
mod record;
mod worker;

use std::cell::{Cell, RefCell};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::consumers::Consumers;
use crate::cpuset::CpuSet;
use crate::error::{Error, Result, Why};
use crate::live::monitor::{Count, Counters};
use crate::options::Options;
use crate::report::StreamCount;
use crate::source::{Ended, Source, Target};
use crate::sys::afpacket::{self, Filter, PacketSocket};
use crate::sys::perf::Wakeup;
use crate::vantage::{Plan, Route, StreamKind};
use crate::worker::count::Gate;
use crate::worker::{Job, PanicGuard, Shared};

use capture::{Counts, Tally, XdpCapture};
use program::MAX_SNAPLEN;
use record::PerfReader;
use worker::XdpWorker;

/// The program, attached, and its buffers.
pub struct XdpSource {
    xdp: XdpCapture,
    plan: Plan,
    target: Target,
    /// The interface's hardware type, for the records' packets.
    hatype: u16,
    /// The per-cpu buffers, until the jobs take them.
    readers: RefCell<Vec<PerfReader>>,
    /// Records the buffers held that did not parse (never expected).
    malformed: AtomicU64,
    /// The interface went away during the capture.
    gone: Cell<bool>,
    /// The interface went down during the capture (it was up at the start:
    /// the target is refused otherwise).
    down: Cell<bool>,
    /// With `-p`: the socket holding the promiscuous membership.
    _promiscuous: Option<PacketSocket>,
    /// A socket bound to the interface that receives nothing: the kernel
    /// marks it ENETDOWN when the interface goes down, so a down and up
    /// between two checks is seen as a packet socket's capture sees it.
    /// None without CAP_NET_RAW (XDP needs only CAP_BPF and
    /// CAP_NET_ADMIN): then only what the checks see.
    watch: Option<PacketSocket>,
    write: bool,
}

impl XdpSource {
    /// Loads and attaches the program on `target` for `plan`'s streams;
    /// it counts nothing until [`Source::start`].
    pub fn open(
        opts: &Options,
        plan: &Plan,
        target: &Target,
        say: &dyn Fn(String),
    ) -> Result<XdpSource> {
        let hatype = afpacket::hardware_type(&target.label).map_err(|e| Error::Interface {
            name: target.label.clone(),
            why: Why(e),
            hint: String::new(),
        })?;
        say(format!(
            "interface {} (ifindex {}), received packets at its XDP hook",
            target.label, target.ifindex
        ));
        let xopts = xdp_options(opts, plan);
        if let Some(s) = xopts.snaplen {
            if s < opts.snaplen {
                say(format!(
                    "XDP records keep at most {} bytes of each frame",
                    MAX_SNAPLEN
                ));
            }
        }
        let mut xdp = XdpCapture::attach(target.ifindex, &xopts)?;
        match xdp.ids() {
            Ok((prog, link)) => say(format!(
                "XDP program id {prog}, link id {link}: {}",
                xdp.hook().describe()
            )),
            Err(_) => say(xdp.hook().describe().to_string()),
        }
        // Promiscuous mode is a packet socket's membership; XDP has none,
        // so one socket that receives nothing holds it.
        let promiscuous = promiscuous(opts, target, say)?;
        let watch = watch(target).ok();
        let readers = xdp.take_readers();
        Ok(XdpSource {
            xdp,
            plan: plan.clone(),
            target: target.clone(),
            hatype,
            readers: RefCell::new(readers),
            malformed: AtomicU64::new(0),
            gone: Cell::new(false),
            down: Cell::new(false),
            _promiscuous: promiscuous,
            watch,
            write: opts.write.is_some(),
        })
    }
}

impl Source for XdpSource {
    fn steered(&self) -> bool {
        false
    }

    fn counts_itself(&self) -> bool {
        true
    }

    fn start(&mut self) -> Result<()> {
        self.xdp
            .start()
            .map_err(|e| Error::os("error starting the XDP capture", e))
    }

    fn jobs<'a>(
        &'a self,
        consumers: Vec<Consumers<'a>>,
        _gates: Vec<Option<Gate<'a>>>,
        shared: &'a Shared,
    ) -> Vec<Job<'a>> {
        let readers = std::mem::take(&mut *self.readers.borrow_mut());
        let hatype = self.hatype;
        let malformed = &self.malformed;
        worker::jobs(&self.plan, readers, consumers)
            .into_iter()
            .map(|job| {
                let slots: Vec<usize> = job.streams.iter().map(|(slot, _)| *slot).collect();
                Job {
                    thread: "xdp".into(),
                    slots,
                    pin: job.pin.clone(),
                    say_pin: false,
                    name: "an XDP worker".into(),
                    failed: "an XDP worker failed; its counts may be short".into(),
                    run: Box::new(move || {
                        // A panic here must stop the capture, as any
                        // worker's.
                        let _guard = PanicGuard::main(shared);
                        let done = XdpWorker {
                            job,
                            shared,
                            hatype,
                        }
                        .run();
                        done.into_iter()
                            .map(|(slot, l, bad)| {
                                malformed.fetch_add(bad, Ordering::Relaxed);
                                (slot, l)
                            })
                            .collect()
                    }),
                }
            })
            .collect()
    }

    fn counters<'a>(&'a self, _shared: &'a Shared) -> Box<dyn Counters + Sync + 'a> {
        Box::new(XdpCounters {
            xdp: &self.xdp,
            plan: &self.plan,
        })
    }

    fn done_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.xdp.done_fd())
    }

    fn check_every(&self) -> Option<Duration> {
        Some(ATTACHED_CHECK)
    }

    /// Deleted (the program is detached with it), or down: a packet
    /// socket's capture ends then too (its sockets get ENETDOWN), and so
    /// does this one, rather than wait on a link that may never come back.
    fn gone(&self) -> bool {
        if !self.xdp.is_attached() {
            self.gone.set(true);
        } else if self
            .watch
            .as_ref()
            .is_some_and(|w| w.take_error().is_ok_and(|e| e.is_some()))
            || afpacket::ifname(self.target.ifindex).is_some_and(|name| !afpacket::is_up(&name))
        {
            // By its index, as the program is attached: a renamed
            // interface goes on.
            self.down.set(true);
        }
        self.gone.get() || self.down.get()
    }

    /// The window closes first, and every program run that saw it open is
    /// over when this returns: then the workers' last reads take every
    /// record there is.
    fn stop(&self) {
        let _ = self.xdp.stop();
    }

    /// The program's exact counts (with `-w`, what the files got, which is
    /// the same unless a write failed), its lost records as drops.
    fn counts(&self, plan: &Plan, shared: &Shared) -> Result<Vec<StreamCount>> {
        let counts = self
            .xdp
            .counts()
            .map_err(|e| Error::os("error reading the XDP counters", e))?;
        let tallies = per_stream(plan, &counts);
        Ok(plan
            .streams
            .iter()
            .enumerate()
            .map(|(slot, s)| StreamCount {
                place: s.place(),
                packets: if self.write {
                    shared.captured[slot].load(Ordering::Relaxed)
                } else {
                    tallies[slot].packets
                },
                drops: 0,
                unread: 0,
                lost: tallies[slot].lost,
            })
            .collect())
    }

    fn finish(&mut self) -> Ended {
        let mut errors = Vec::new();
        if self.gone.get() {
            errors.push(format!(
                "interface '{}' disappeared: {}",
                self.target.label,
                Why(std::io::Error::from_raw_os_error(libc::ENODEV))
            ));
        } else if self.down.get() {
            errors.push(format!(
                "interface '{}' went down: {}",
                self.target.label,
                Why(std::io::Error::from_raw_os_error(libc::ENETDOWN))
            ));
        }
        let malformed = self.malformed.load(Ordering::Relaxed);
        if malformed > 0 {
            errors.push(format!("{malformed} XDP records could not be read"));
        }
        Ended {
            senders: None,
            errors,
        }
    }
}

/// How often the main thread checks that the program is still attached
/// (a link cannot be polled: an interface that goes away says nothing).
const ATTACHED_CHECK: Duration = Duration::from_millis(200);

/// What the program captures, for `opts`' streams.
fn xdp_options(opts: &Options, plan: &Plan) -> capture::Options {
    let online = crate::vantage::machine::online();
    let cpus: CpuSet = match plan.vantage {
        crate::options::Vantage::Cpu => plan.streams.iter().filter_map(|s| s.id()).collect(),
        crate::options::Vantage::Numa => plan
            .streams
            .iter()
            .flat_map(|s| s.pin.iter().flat_map(|p| p.iter()).collect::<Vec<_>>())
            .collect(),
        crate::options::Vantage::Queue => online,
    };
    let (queues, queue_list) = match plan.route {
        Route::Queue { queues } => (
            queues,
            opts.selection.as_ref().map(|_| {
                plan.streams
                    .iter()
                    .filter_map(|s| match s.kind {
                        StreamKind::Queue(q) => Some(q),
                        _ => None,
                    })
                    .collect()
            }),
        ),
        _ => (0, None),
    };
    // Copies of the frames for whatever looks at packets: the files, the
    // flow tables, the repeat windows.
    let records = opts.write.is_some() || opts.flows.is_some() || opts.repeats.is_some();
    capture::Options {
        mode: opts.xdp.unwrap_or_default(),
        cpus,
        queues,
        queue_list,
        snaplen: records.then(|| opts.snaplen.min(MAX_SNAPLEN)),
        ring_bytes: opts.buffer_bytes.unwrap_or_else(|| {
            crate::source::afpacket::ring_size::default_bytes(plan.streams.len(), 0).0
        }),
        wakeup: if opts.packet_buffered {
            Wakeup::EveryRecord
        } else {
            Wakeup::Bytes(64 * 1024)
        },
        count: opts.count,
    }
}

/// With `-p`: a packet socket that receives nothing but holds the
/// interface's promiscuous membership for the capture's length.
fn promiscuous(
    opts: &Options,
    target: &Target,
    say: &dyn Fn(String),
) -> Result<Option<PacketSocket>> {
    if !opts.promiscuous {
        return Ok(None);
    }
    let sock = PacketSocket::new().map_err(|e| Error::os("error creating packet socket", e))?;
    sock.attach_filter(&Filter::drop_all())
        .map_err(|e| Error::os("error attaching filter", e))?;
    sock.add_promiscuous(target.ifindex)
        .map_err(|e| Error::os(format!("error setting {} promiscuous", target.label), e))?;
    say(format!(
        "{}: promiscuous mode on for this capture",
        target.label
    ));
    Ok(Some(sock))
}

/// The ethertype the watch socket is bound to: IEEE 802's local
/// experimental one, which no capture's traffic is expected to carry (and
/// the drop filter discards if it does).
const WATCH_ETHERTYPE: u16 = 0x88b5;

/// The socket that notices the interface going down (see
/// [`XdpSource::gone`]).
fn watch(target: &Target) -> Result<PacketSocket> {
    let sock = PacketSocket::new().map_err(|e| Error::os("error creating packet socket", e))?;
    sock.attach_filter(&Filter::drop_all())
        .map_err(|e| Error::os("error attaching filter", e))?;
    sock.bind_protocol(target.ifindex, WATCH_ETHERTYPE)
        .map_err(|e| Error::os("error binding packet socket", e))?;
    Ok(sock)
}

/// The XDP program's counters, per stream.
struct XdpCounters<'a> {
    xdp: &'a XdpCapture,
    plan: &'a Plan,
}

impl Counters for XdpCounters<'_> {
    fn read(&self) -> Vec<Count> {
        match self.xdp.counts() {
            Ok(c) => per_stream(self.plan, &c)
                .into_iter()
                .map(|t| Count {
                    packets: t.packets,
                    bytes: t.bytes,
                    drops: t.lost,
                })
                .collect(),
            Err(_) => self.plan.streams.iter().map(|_| Count::default()).collect(),
        }
    }
}

/// The program's counts, per stream of `plan`.
fn per_stream(plan: &Plan, counts: &Counts) -> Vec<Tally> {
    plan.streams
        .iter()
        .map(|s| match s.kind {
            StreamKind::Cpu(c) => counts.cpu(c),
            StreamKind::Numa(_) => {
                let mut t = Tally::default();
                for c in s.pin.iter().flat_map(|p| p.iter()) {
                    t += counts.cpu(c);
                }
                t
            }
            StreamKind::Queue(q) => counts.queue(q),
            StreamKind::NoQueue => counts.other_queues(),
        })
        .collect()
}
