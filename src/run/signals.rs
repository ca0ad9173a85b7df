//! The signals that end a capture, and `--duration`'s timer.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use crate::error::{Error, Result, Why};
use crate::live::monitor::Monitor;
use crate::options::Options;
use crate::run::Verbose;
/// The signals that end a capture. They are blocked in every thread and
/// read from a signalfd by the main thread, which knows which one came
/// (only SIGINT gets the newline) and is never interrupted mid-write: a
/// second Ctrl-C during shutdown cannot cut a file short.
///
/// A SIGHUP that was ignored when the program started (`nohup rxtxcpu`)
/// stays ignored, as tcpdump does: blocking it would make the kernel queue
/// it instead of discarding it.
///
/// With `--live` on a terminal, SIGWINCH (redraw at the new size) and
/// SIGTSTP (give the terminal back before stopping) are read the same way.
pub fn stop_signals(live_on_terminal: bool) -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    if !inherited_ignore(Signal::SIGHUP) {
        set.add(Signal::SIGHUP);
    }
    if live_on_terminal {
        set.add(Signal::SIGWINCH);
        set.add(Signal::SIGTSTP);
    }
    set
}

/// Blocks the signals of [`stop_signals`] and opens the signalfd that
/// reads them. Blocked before anything is created and before any thread
/// starts (all inherit the mask): a Ctrl-C during setup is then read like
/// any other and ends the capture with a report, not with half-made files.
pub(super) fn signal_fd(opts: &Options) -> Result<SignalFd> {
    let signals = stop_signals(opts.live.is_some() && crate::live::term::stderr_is_terminal());
    signals
        .thread_block()
        .map_err(|e| Error::os("error blocking signals", e.into()))?;
    SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::os("error creating signalfd", e.into()))
}

/// Reads the signals that came: true when one of them ends the capture
/// (SIGINT first puts its newline on stderr when that is a terminal, so
/// the report does not start on its `^C` line; a file or pipe has no `^C`
/// and gets nothing); the live view takes its own.
pub(super) fn stop_signal(sigfd: &SignalFd, mut monitor: Option<&mut Monitor>) -> bool {
    while let Ok(Some(info)) = sigfd.read_signal() {
        let signo = info.ssi_signo as i32;
        if let Some(m) = monitor.as_deref_mut() {
            if m.signal(signo) {
                continue;
            }
        }
        if signo == libc::SIGINT && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            errln!();
        }
        return true;
    }
    false
}

/// `--duration`: a one-shot CLOCK_MONOTONIC timerfd, created with the
/// signalfd and armed once the capture listens. The main thread polls it
/// next to the signalfd, so it costs one wakeup, when it expires; without
/// `--duration` there is no timer.
pub(super) struct Deadline(Option<(TimerFd, Duration)>);

impl Deadline {
    pub(super) fn new(opts: &Options) -> Result<Deadline> {
        let Some(d) = opts.duration else {
            return Ok(Deadline(None));
        };
        let t = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_CLOEXEC | TimerFlags::TFD_NONBLOCK,
        )
        .map_err(|e| Error::os("error creating the --duration timer", e.into()))?;
        Ok(Deadline(Some((t, d))))
    }

    /// Starts the clock: called when the capture starts listening.
    pub(super) fn arm(&self, v: &Verbose) {
        if let Some((t, d)) = &self.0 {
            let expiration = Expiration::OneShot(TimeSpec::from_duration(*d));
            match t.set(expiration, TimerSetTimeFlags::empty()) {
                Ok(()) => v.say(format!("stopping after {} s (--duration)", d.as_secs_f64())),
                // Cannot happen for a positive duration; if it did, the
                // capture would run until a signal, so say so.
                Err(e) => errln!(
                    "{}: error setting the --duration timer: {}; stop with Ctrl-C",
                    v.name,
                    Why(e.into())
                ),
            }
        }
    }

    /// What to poll: the timer, if there is one.
    pub(super) fn poll_fd(&self) -> Option<PollFd<'_>> {
        self.0
            .as_ref()
            .map(|(t, _)| PollFd::new(t.as_fd(), PollFlags::POLLIN))
    }
}

/// Whether `sig` is ignored, from the SigIgn mask in /proc/self/status.
fn inherited_ignore(sig: Signal) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (sig as i32 - 1)) != 0)
}
