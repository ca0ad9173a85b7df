//! `--live`: a per-stream view of the capture on stderr, once per interval.
//!
//! The view is fed [`Snapshot`]s of the counters the workers already keep
//! (cumulative packets, bytes and drops per stream) plus, in the cpu
//! vantage, the per-cpu network softirq counters of [`proc`]. It never
//! touches a packet: the cost is one snapshot, two small /proc reads and
//! one render per interval.
//!
//! - [`proc`]: /proc/softirqs and /proc/stat
//! - [`rates`]: rates over an interval, the softirq marker rule
//! - [`render`]: the table, the plain lines, the JSON lines (pure text)
//! - [`term`]: stderr's terminal: size, alternate screen, restoring it
//! - [`LiveView`]: keeps the previous snapshot, picks table, plain or JSON
//!   ([`Mode`]) and writes to stderr
//! - [`Ticker`]: when the next interval is due, for the main loop's poll

pub mod monitor;

pub mod proc;
pub mod rates;
pub mod render;
pub mod term;

use std::io::{self, Write};
use std::time::{Duration, Instant};

pub use proc::{CpuReader, CpuStats};

/// What a stream is a stream of: the capture's vantage (`subject()` for
/// people, `as_str()` in the plain and JSON lines' `stream=cpu3`).
pub use crate::options::Vantage;

/// The capture's facts, fixed for its whole length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The invoked name (`rxtxcpu`, `rxqueue`, ...).
    pub name: String,
    /// The interface as the verbose output names it (`lo`, or the
    /// all-interfaces label).
    pub interface: String,
    /// `rx`, `tx` or `rxtx`.
    pub direction: String,
    pub vantage: Vantage,
}

/// One stream's counters since the capture started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamCount {
    /// The cpu, queue or node number. In the cpu vantage it is the cpu
    /// whose softirq counters go with the stream.
    pub id: u32,
    /// As the report names it: `cpu3`, `queue 2`, `numa node 0`.
    pub label: String,
    pub packets: u64,
    /// Bytes of the packets on the wire (tp_len, not the snap length).
    pub bytes: u64,
    /// Packets the kernel dropped for this stream (ring full).
    pub drops: u64,
    /// With `--repeats`: copies of repeating packets so far.
    pub repeated: Option<u64>,
}

/// The counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Time since the capture started (an `Instant` taken at the start,
    /// `.elapsed()` when the counters are read); rates divide by the
    /// difference between two snapshots'.
    pub elapsed: Duration,
    /// In the order the table lists them (ascending id).
    pub streams: Vec<StreamCount>,
    /// Cpu vantage: [`CpuReader::read`] at the same moment; `None`
    /// otherwise, or when /proc could not be read (the softirq columns
    /// then go away).
    pub cpus: Option<CpuStats>,
    /// With --flows: the top flows *of the interval* ending now, as
    /// (text, packets in the interval), busiest first.
    pub flows: Option<Vec<(String, u64)>>,
    /// With --repeats: the repeating packet with the most copies *in the
    /// interval* ending now, as (stream label, decode line, copies in the
    /// interval); an empty list when none repeated.
    pub repeats: Option<Vec<(String, String, u64)>>,
    /// With --drops: the kernel's drops so far, as (cpu, reason, packets).
    pub kernel_drops: Option<Vec<(u32, String, u64)>>,
}

/// How the view is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The redrawn table, on a terminal.
    Table,
    /// One `key=value` line per stream per interval.
    Plain,
    /// One JSON object per interval.
    Json,
}

impl Mode {
    /// The table when stderr is a terminal; otherwise JSON lines with
    /// --json, plain lines without.
    pub fn choose(stderr_is_terminal: bool, json: bool) -> Mode {
        match (stderr_is_terminal, json) {
            (true, _) => Mode::Table,
            (false, true) => Mode::Json,
            (false, false) => Mode::Plain,
        }
    }
}

/// The size used when the terminal does not say.
pub const DEFAULT_SIZE: (usize, usize) = (80, 24);

enum Sink {
    /// The real stderr, through [`term`].
    Stderr(Option<term::Screen>),
    /// For the tests: the same bytes to a writer, no global state.
    #[cfg(test)]
    Writer {
        out: Box<dyn Write + Send>,
        entered: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Running.
    On,
    /// Table mode, screen left for a job-control stop.
    Suspended,
    /// After `finish`, a write error, or the terminal restored from
    /// elsewhere: writes nothing more.
    Off,
}

/// The live view: call [`LiveView::update`] once at the start and then
/// once per interval with a fresh snapshot.
///
/// The first snapshot is the baseline: the table shows its counts with
/// `-` for the rates; the plain and JSON modes print nothing for it. Take
/// it before any packet is counted (all counters zero), so that the
/// `interval_packets` of the lines add up to the final report.
pub struct LiveView {
    header: Header,
    mode: Mode,
    sink: Sink,
    prev: Option<Snapshot>,
    cur: Option<Snapshot>,
    size: (usize, usize),
    state: State,
}

impl LiveView {
    /// A view on stderr. In table mode nothing is drawn until the first
    /// update.
    pub fn new(header: Header, mode: Mode) -> LiveView {
        let size = term::size().unwrap_or(DEFAULT_SIZE);
        LiveView::with_sink(header, mode, Sink::Stderr(None), size)
    }

    fn with_sink(header: Header, mode: Mode, sink: Sink, size: (usize, usize)) -> LiveView {
        LiveView {
            header,
            mode,
            sink,
            prev: None,
            cur: None,
            size,
            state: State::On,
        }
    }

    /// A view writing to `out` as if it were a terminal of `size`
    /// (columns, rows) in table mode.
    #[cfg(test)]
    pub fn with_writer(
        header: Header,
        mode: Mode,
        out: Box<dyn Write + Send>,
        size: (usize, usize),
    ) -> LiveView {
        let sink = Sink::Writer {
            out,
            entered: false,
        };
        LiveView::with_sink(header, mode, sink, size)
    }

    /// Takes the counters of a new moment and shows the interval since the
    /// previous one. An error means stderr failed; the view is then off
    /// and later calls do nothing (the capture should go on).
    pub fn update(&mut self, snap: Snapshot) -> io::Result<()> {
        if self.state == State::Off {
            return Ok(());
        }
        self.prev = self.cur.take();
        self.cur = Some(snap);
        if self.state == State::Suspended {
            return Ok(());
        }
        let r = self.show();
        self.guard(r)
    }

    /// The terminal changed size (SIGWINCH): reads the new size and draws
    /// the current interval again.
    pub fn resize(&mut self) -> io::Result<()> {
        let size = match &self.sink {
            Sink::Stderr(_) => term::size().unwrap_or(self.size),
            #[cfg(test)]
            Sink::Writer { .. } => self.size,
        };
        self.set_size(size)
    }

    /// Draws again at `size` (columns, rows).
    pub fn set_size(&mut self, size: (usize, usize)) -> io::Result<()> {
        self.size = size;
        if self.mode != Mode::Table || self.state != State::On || self.cur.is_none() {
            return Ok(());
        }
        let r = self.draw();
        self.guard(r)
    }

    /// Table mode: gives the terminal back for a job-control stop
    /// (SIGTSTP read from the signalfd); call [`LiveView::resume`] once
    /// the process runs again.
    pub fn suspend(&mut self) {
        if self.mode == Mode::Table && self.state == State::On {
            self.leave();
            self.state = State::Suspended;
        }
    }

    /// After [`LiveView::suspend`]: takes the terminal again and redraws.
    pub fn resume(&mut self) -> io::Result<()> {
        if self.state != State::Suspended {
            return Ok(());
        }
        self.state = State::On;
        self.size = match &self.sink {
            Sink::Stderr(_) => term::size().unwrap_or(self.size),
            #[cfg(test)]
            Sink::Writer { .. } => self.size,
        };
        let r = if self.cur.is_some() {
            self.show()
        } else {
            Ok(())
        };
        self.guard(r)
    }

    /// The capture is stopping: table mode gives the terminal back now
    /// (before waiting for the workers, so that whatever comes next, even
    /// a second Ctrl-C's exit, is on the user's screen). Plain and JSON
    /// modes wait for [`LiveView::finish`].
    pub fn stopping(&mut self) {
        if self.mode == Mode::Table && self.state != State::Off {
            self.leave();
            self.state = State::Off;
        }
    }

    /// The capture has ended; `last` is the final count (after the
    /// workers have finished). Plain and JSON modes write the last,
    /// partial interval, so the last line of each stream agrees with the
    /// report; table mode leaves the terminal. Call it before printing the
    /// report.
    pub fn finish(mut self, last: Option<Snapshot>) -> io::Result<()> {
        let mut r = Ok(());
        if self.state == State::On && self.mode != Mode::Table {
            if let Some(last) = last {
                self.prev = self.cur.take();
                self.cur = Some(last);
                r = self.show();
            }
        }
        self.stopping();
        self.state = State::Off;
        r
    }

    fn guard(&mut self, r: io::Result<()>) -> io::Result<()> {
        if r.is_err() {
            self.leave();
            self.state = State::Off;
        }
        r
    }

    fn show(&mut self) -> io::Result<()> {
        let Some(cur) = &self.cur else {
            return Ok(());
        };
        match self.mode {
            Mode::Table => self.draw(),
            Mode::Plain => {
                let lines = render::render_plain(&self.header, self.prev.as_ref(), cur);
                let mut text = lines.join("\n");
                if !text.is_empty() {
                    text.push('\n');
                }
                self.write(text.as_bytes())
            }
            Mode::Json => match render::render_json(&self.header, self.prev.as_ref(), cur) {
                Some(mut line) => {
                    line.push('\n');
                    self.write(line.as_bytes())
                }
                None => Ok(()),
            },
        }
    }

    /// The table's lines for the current size.
    fn lines(&self) -> Vec<String> {
        let Some(cur) = &self.cur else {
            return Vec::new();
        };
        let (w, h) = self.size;
        render::render_table(&self.header, self.prev.as_ref(), cur, w, h)
    }

    fn draw(&mut self) -> io::Result<()> {
        let lines = self.lines();
        match &mut self.sink {
            Sink::Stderr(screen) => {
                if screen.is_none() {
                    *screen = Some(term::Screen::enter()?);
                }
                let size = self.size;
                let drawn = screen
                    .as_ref()
                    .map_or(Ok(false), |s| s.draw(&lines, size))?;
                if !drawn {
                    // Restored from elsewhere (a panic hook, an exit path):
                    // stay off the user's screen.
                    self.state = State::Off;
                }
                Ok(())
            }
            #[cfg(test)]
            Sink::Writer { out, entered } => {
                if !*entered {
                    out.write_all(term::ENTER.as_bytes())?;
                    *entered = true;
                }
                out.write_all(term::frame(&lines, self.size.0, self.size.1).as_bytes())?;
                out.flush()
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.sink {
            Sink::Stderr(_) => io::stderr().lock().write_all(bytes),
            #[cfg(test)]
            Sink::Writer { out, .. } => out.write_all(bytes).and_then(|_| out.flush()),
        }
    }

    /// Leaves the alternate screen if the table is on it.
    fn leave(&mut self) {
        match &mut self.sink {
            // Dropping the screen restores the terminal.
            Sink::Stderr(screen) => drop(screen.take()),
            #[cfg(test)]
            Sink::Writer { out, entered } => {
                if std::mem::replace(entered, false) {
                    let _ = out.write_all(term::LEAVE.as_bytes());
                }
            }
        }
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        if self.mode == Mode::Table {
            self.leave();
        }
    }
}

/// The interval's schedule: ticks at start + k x interval, so the view
/// does not drift, and a late wakeup skips the ticks it missed instead of
/// drawing several at once.
#[derive(Clone, Copy, Debug)]
pub struct Ticker {
    start: Instant,
    interval: Duration,
    next: Instant,
}

impl Ticker {
    pub fn new(start: Instant, interval: Duration) -> Ticker {
        Ticker {
            start,
            interval,
            next: start + interval,
        }
    }

    /// How long until the next tick (zero when it is due): the main loop's
    /// poll timeout.
    pub fn timeout(&self, now: Instant) -> Duration {
        self.next.saturating_duration_since(now)
    }

    /// [`Ticker::timeout`] in whole milliseconds, rounded up (a poll that
    /// wakes a little early would spin until the tick), at most
    /// `i32::MAX`.
    pub fn timeout_ms(&self, now: Instant) -> i32 {
        let d = self.timeout(now);
        let ms = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 != 0);
        ms.min(i32::MAX as u128) as i32
    }

    /// Whether a tick is due at `now`; if so, moves on to the first tick
    /// after `now`.
    pub fn due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        let since = now.duration_since(self.start).as_nanos();
        let k = since / self.interval.as_nanos() + 1;
        // k x interval fits: it is at most `since` + one interval.
        self.next = self.start + self.interval * k.min(u32::MAX as u128) as u32;
        true
    }
}

#[cfg(test)]
mod tests;
