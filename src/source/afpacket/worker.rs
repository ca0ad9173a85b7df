//! The ring worker: reads one stream's TPACKET_V3 ring block by block,
//! hands the packets to the stream's consumers, and stops when told to,
//! when the count is reached or on a fault.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::consumers::merged::merge;
use crate::consumers::{Consumers, Leftovers, Outcome};
use crate::cpuset::CpuSet;
use crate::sys::afpacket::{Filter, PacketSocket};
use crate::sys::host::pin_to;
use crate::sys::ring::Ring;
use crate::worker::count::Gate;
use crate::worker::{answer_live, test_hooks, Fault, Shared};

/// One stream's capture.
pub struct Worker<'a> {
    /// The stream's fanout member (its cpu in the cpu vantage).
    member: u32,
    /// The cpus the worker stays on, if pinned.
    pin: Option<CpuSet>,
    /// Position in Shared's per-worker counters.
    slot: usize,
    sock: &'a PacketSocket,
    ring: Ring,
    consumers: Consumers<'a>,
    shared: &'a Shared,
    /// The -G -W file limit came: nothing more is read. (A failed write
    /// does not set it: the capture stops, and this stream drains its ring
    /// like the others, counting what the file no longer gets.)
    failed: bool,
    /// The -G -W file limit ended this stream's files.
    file_limit: bool,
    /// The live view's last flow request this worker answered.
    flows_answered: u64,
    /// Packets seen in blocks (claimed or not), to know when the ring is
    /// drained.
    seen: u64,
    /// The counters were read at the stop: drops after it are not this
    /// capture's.
    drained: bool,
    /// `-c`: which packets are among the first N (None without `-c`).
    gate: Option<Gate<'a>>,
}

/// How far `read_blocks` goes.
#[derive(Clone, Copy)]
enum Until {
    /// While there are blocks and no stop was asked for.
    Stop,
    /// Until `target` packets were seen: after a stop, never chasing
    /// packets that keep arriving. Not bounded by time: every packet the
    /// kernel accepted before the stop is in a block already, and leaving
    /// any of them unread would lose it without a trace.
    Seen(u64),
}

/// Whether to keep reading.
enum Flow {
    More,
    Done,
}

impl<'a> Worker<'a> {
    pub fn new(
        member: u32,
        pin: Option<CpuSet>,
        slot: usize,
        sock: &'a PacketSocket,
        ring: Ring,
        consumers: Consumers<'a>,
        shared: &'a Shared,
    ) -> Worker<'a> {
        Worker {
            member,
            pin,
            slot,
            sock,
            ring,
            consumers,
            shared,
            failed: false,
            file_limit: false,
            flows_answered: 0,
            seen: 0,
            drained: false,
            gate: None,
        }
    }

    /// With `-c`: the stream's side of the count.
    pub fn counting(mut self, gate: Option<Gate<'a>>) -> Worker<'a> {
        self.gate = gate;
        self
    }

    /// Reads until stopped. On a stop that is not the count, drains what the
    /// kernel already accepted, so a packet seen before Ctrl-C is reported.
    /// Returns what the consumers leave for the report.
    pub fn run(mut self) -> Leftovers {
        loop {
            if let Flow::Done = self.read_blocks(Until::Stop) {
                break;
            }
            // -c: what was let in while the worker slept.
            if let Flow::Done = self.settle() {
                break;
            }
            self.answer_flow_request();
            if self.shared.stopping() {
                self.drain();
                break;
            }
            let (sock, reader_gone) = match self.wait() {
                Ok(events) => events,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    self.shared.fault(Fault::Poll(e.into()));
                    break;
                }
            };
            self.keep_pinned();
            if reader_gone {
                let path = self.consumers.path().unwrap_or_default().to_string();
                let e = io::Error::from_raw_os_error(libc::EPIPE);
                self.consumers.abandon_file(&e);
                // The stop that follows drains the ring.
                self.write_failed(path, e);
                continue;
            }
            if sock.intersects(PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL) {
                self.interface_fault();
                break;
            }
        }
        self.end_count();
        if !self.drained {
            self.read_stats();
        }
        // The live view's last interval: what was taken since its last
        // request, so that its final lines hold these packets' flows too.
        answer_live(
            self.shared,
            self.slot,
            &mut self.consumers,
            &mut self.flows_answered,
            true,
        );
        if !self.failed {
            if let Err((path, error)) = self.consumers.flush() {
                self.write_failed(path, error);
            }
        }
        let mut left = self.consumers.finish();
        left.file_limit = self.file_limit;
        left
    }

    /// Sleeps until a block is ready, a stop is signalled or the socket
    /// reports an error. Returns the socket's events and whether the reader
    /// of a `-w -` pipe has gone.
    fn wait(&self) -> nix::Result<(PollFlags, bool)> {
        if self.gate.as_ref().is_some_and(|g| !g.sleep()) {
            // -c let packets in just now: take them first.
            return Ok((PollFlags::empty(), false));
        }
        let stop = self.shared.stop_fd().as_fd();
        let watch = self.consumers.watch_fd();
        // -c: the coordinator wakes the worker when packets were let in
        // or it wants to know the ring is empty.
        let count = self.gate.as_ref().and_then(|g| g.wake_fd());
        // --pcapng: the merger asks when it waits for this stream to say
        // it has nothing older (the ring is looked at after any wake-up,
        // and an empty one answers).
        let asked = self.consumers.ask_fd();
        // --live with --flows or --repeats: the view's request wakes an
        // idle worker to answer it.
        let flows = self.shared.flow_wake_fd(self.slot);
        let mut fds = [
            PollFd::new(self.sock.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop, PollFlags::POLLIN),
            PollFd::new(count.unwrap_or(stop), PollFlags::POLLIN),
            // Polled only with -w - (then with no events: POLLERR comes
            // regardless).
            PollFd::new(watch.unwrap_or(stop), PollFlags::empty()),
            PollFd::new(asked.unwrap_or(stop), PollFlags::POLLIN),
            PollFd::new(flows.map_or(stop, |f| f.as_fd()), PollFlags::POLLIN),
        ];
        // --flows-idle: wake for the next sweep even if no block comes.
        let timeout = self
            .consumers
            .sweep_period_ms()
            .map_or(PollTimeout::NONE, |ms| {
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            });
        let polled = poll(&mut fds, timeout);
        if asked.is_some()
            && fds[4]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
            self.consumers.answered();
        }
        if let Some(f) = flows {
            if fds[5]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN))
            {
                // Emptied; the answer comes at the top of the next
                // read_blocks.
                let _ = f.read();
            }
        }
        if let Some(g) = &self.gate {
            g.woken(
                fds[2]
                    .revents()
                    .is_some_and(|r| r.contains(PollFlags::POLLIN)),
            );
        }
        polled?;
        let sock = fds[0].revents().unwrap_or(PollFlags::empty());
        let reader_gone = watch.is_some()
            && fds[3]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP));
        Ok((sock, reader_gone))
    }

    /// The interface went down or away: every member socket bound to it got
    /// ENETDOWN and left the group. If it comes back up the kernel re-adds
    /// them in another order, so cpu i no longer maps to member i: shut this
    /// socket's filter first, then keep what was accepted before the fault
    /// (the ring's retire timer still hands the last block over).
    fn interface_fault(&mut self) {
        let _ = self.sock.attach_filter(&Filter::drop_all());
        // Reading SO_ERROR also clears it, so poll() can wait in drain().
        let e = match self.sock.take_error() {
            Ok(Some(e)) => e,
            Ok(None) => io::Error::from_raw_os_error(libc::ENETDOWN),
            Err(e) => e,
        };
        self.drain();
        self.shared.fault(Fault::Socket(e));
    }

    /// Handles the blocks the kernel has handed over, up to `until`: a
    /// ring that refills as fast as it is read must not hold off a stop.
    fn read_blocks(&mut self, until: Until) -> Flow {
        loop {
            // How many more packets may be recorded.
            let room = match until {
                Until::Stop if self.shared.stopping() => return Flow::More,
                Until::Stop => u64::MAX,
                Until::Seen(target) if self.seen >= target => return Flow::More,
                Until::Seen(target) => target - self.seen,
            };
            // -c: nothing more will be let in.
            if self.gate.as_ref().is_some_and(Gate::is_final) {
                return Flow::Done;
            }
            // Under a flood the ring is never empty: the live view's
            // request is answered between blocks (one load when nobody
            // asked), not only once the worker is idle.
            self.answer_flow_request();
            let Some(block) = self.ring.next_block() else {
                self.consumers.sweep_while_idle();
                self.idle();
                return Flow::More;
            };
            let n = block.num_packets() as u64;
            self.seen += n;
            // After a stop, the block that crosses the target also holds
            // packets that came after the stop: those are not recorded.
            let want = n.min(room);
            let take = match &mut self.gate {
                None => want,
                Some(gate) => match gate.claim(want) {
                    // The only stream: the first in its ring are the first.
                    Some(take) => take,
                    // One of several: the coordinator decides, on the
                    // timestamps; the packets wait as copies, not in the
                    // ring (see crate::worker::count).
                    None => {
                        test_hooks::maybe_panic(self.member);
                        gate.hand_in(&block, want as usize, self.consumers.keep());
                        drop(block);
                        if let Flow::Done = self.settle() {
                            return Flow::Done;
                        }
                        continue;
                    }
                },
            };
            test_hooks::maybe_panic(self.member);
            let (done, outcome) = if self.consumers.bytes_only() {
                // Only the lengths: not a Packet made of every header.
                let (done, bytes) = block.wire_bytes(take as usize);
                self.consumers.count_bytes(bytes);
                (done, Outcome::Taken)
            } else if self.consumers.per_packet() {
                self.consumers.take(block.packets().take(take as usize))
            } else {
                (take, Outcome::Taken)
            };
            // Back to the kernel: take() wrote the files' records that
            // point into the block before it returned (they borrow it).
            drop(block);
            if let Flow::Done = self.taken(done, outcome) {
                return Flow::Done;
            }
            if self.gate.as_ref().is_some_and(Gate::is_final) {
                // -c reached by the only stream.
                self.shared.stop();
                return Flow::Done;
            }
        }
    }

    /// Counts what the consumers took; ends the stream if they failed.
    fn taken(&mut self, done: u64, outcome: Outcome) -> Flow {
        self.shared.captured[self.slot].fetch_add(done, Ordering::Relaxed);
        match outcome {
            Outcome::Taken => Flow::More,
            Outcome::FileLimit => {
                // Nothing more is written: the files are done.
                self.failed = true;
                self.file_limit = true;
                self.shared.stop();
                Flow::Done
            }
            Outcome::Failed { path, error } => {
                // The capture stops; the packets this stream takes until
                // then are counted, though not written.
                self.write_failed(path, error);
                Flow::More
            }
        }
    }

    /// The ring had nothing more: tells the merged file and the `-c`
    /// coordinator that nothing older is to come (see
    /// [`merge::complete_until`]). Reads the clock only for them.
    fn idle(&self) {
        if !self.consumers.wants_idle() && self.gate.is_none() {
            return;
        }
        let until = merge::complete_until(merge::realtime_ns(), self.ring.geometry().retire_ms);
        match &self.gate {
            Some(gate) => {
                gate.idle(until);
                // Packets still waiting for the count reach the merged
                // file later: it must wait for them.
                self.consumers.idle(gate.held_until(until));
            }
            None => self.consumers.idle(until),
        }
    }

    /// `-c` with several streams: hands the consumers the packets the
    /// coordinator let in since the last time (the first ones held, in
    /// ring order). Done when nothing more will be let in, or the
    /// consumers failed.
    fn settle(&mut self) -> Flow {
        let Some(gate) = &mut self.gate else {
            return Flow::More;
        };
        let n = gate.newly_allowed();
        if n > 0 {
            let (done, outcome) = if self.consumers.per_packet() {
                self.consumers.take(gate.held(n))
            } else {
                (n, Outcome::Taken)
            };
            gate.consumed(n);
            if let Flow::Done = self.taken(done, outcome) {
                return Flow::Done;
            }
        }
        let Some(gate) = &self.gate else {
            return Flow::More;
        };
        // Final, and what it let in (published before) all taken.
        if gate.is_final() && gate.newly_allowed() == 0 {
            return Flow::Done;
        }
        Flow::More
    }

    /// At the end of a stream with `-c`: says the stream hands in nothing
    /// more, waits for the coordinator's last word (every stream ended,
    /// or the count reached) and takes exactly what it let in.
    fn end_count(&mut self) {
        let Some(gate) = &mut self.gate else {
            return;
        };
        gate.end();
        if self.failed {
            return;
        }
        gate.wait_final();
        let _ = self.settle();
    }

    /// With --live and --flows or --repeats: when the view asked, hands
    /// it this stream's busiest flows and its repeating packet with the
    /// most copies since the last time.
    fn answer_flow_request(&mut self) {
        answer_live(
            self.shared,
            self.slot,
            &mut self.consumers,
            &mut self.flows_answered,
            false,
        );
    }

    /// Writing the stream's files failed: the fault stops the capture.
    /// The consumers write nothing more to them (not at exit either), but
    /// the stream goes on counting what it takes from its ring until the
    /// stop has drained it: the report counts every packet captured, and
    /// says how many are not in the file.
    fn write_failed(&mut self, path: String, error: io::Error) {
        self.shared.fault(Fault::Write { path, error });
    }

    /// Pins the thread again if it runs elsewhere: when its cpu goes
    /// offline the kernel moves it and widens its affinity, and nothing
    /// narrows it again when the cpu comes back. Checked once per wakeup
    /// (sched_getcpu is a vDSO call); while the cpu is offline the pin
    /// fails and is simply tried at the next wakeup.
    fn keep_pinned(&self) {
        let Some(pin) = &self.pin else {
            return;
        };
        let on = nix::sched::sched_getcpu().ok();
        if !on.is_some_and(|c| pin.contains(c as u32)) {
            let _ = pin_to(pin);
        }
    }

    /// Adds the kernel's counters since the last read.
    fn read_stats(&mut self) {
        self.shared.read_kernel(self.slot, self.sock);
    }

    /// After a stop: reads every packet the kernel had accepted into the
    /// ring when the stop came, and no more. The kernel hands over a partly
    /// filled block only when its retire timer fires, so waiting for
    /// blocks is bounded by a few timer periods (never more than a second);
    /// reading the blocks handed over is bounded by the ring's size.
    fn drain(&mut self) {
        if self.failed || self.gate.as_ref().is_some_and(Gate::is_final) {
            return;
        }
        let period = Duration::from_millis(u64::from(self.ring.geometry().retire_ms));
        let patience = (period * 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        self.read_stats();
        self.drained = true;
        // tp_packets counts drops too.
        let accepted = self.shared.accepted[self.slot].load(Ordering::Relaxed);
        let drops = self.shared.drops[self.slot].load(Ordering::Relaxed);
        let target = accepted.saturating_sub(drops);
        let mut progress = Instant::now();
        loop {
            let before = self.seen;
            // Decided before reading: a block the kernel handed over before
            // the patience ran out is read, however long this thread is
            // kept off the cpu between the read and the check.
            let expired = Instant::now() >= progress + patience;
            if let Flow::Done = self.read_blocks(Until::Seen(target)) {
                return;
            }
            if self.seen >= target {
                return;
            }
            let now = Instant::now();
            if self.seen > before {
                progress = now;
            } else if expired {
                // Should not happen: the retire timer hands every block
                // over. If it does, say so rather than lose them quietly.
                self.shared.unread[self.slot].store(target - self.seen, Ordering::Relaxed);
                return;
            }
            let wait = (progress + patience)
                .saturating_duration_since(now)
                .min(period);
            let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
            let ms = u16::try_from(wait.as_millis().max(1)).unwrap_or(u16::MAX);
            let _ = poll(&mut fds, PollTimeout::from(ms));
        }
    }
}
