//! The process driver: runs the binary (under any of its names), in a
//! namespace or not, waits for it to be ready, signals it, and collects
//! how it ended.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::netns::Netns;
use super::report::{Place, Report};
use super::usage::check_usage;
use super::{unique, EXIT_TIMEOUT};

pub use nix::sys::signal::Signal;

pub const BIN: &str = env!("CARGO_BIN_EXE_rxtxcpu");

const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Path that invokes the binary as `name` (its argv[0] basename): the binary
/// itself for `rxtxcpu`, else a symlink `name` in the cargo target tmpdir.
pub fn program(name: &str) -> PathBuf {
    if name == "rxtxcpu" {
        return PathBuf::from(BIN);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("argv0");
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join(name);
    if std::fs::read_link(&link).ok().as_deref() != Some(Path::new(BIN)) {
        // Atomic replace: other tests (and test binaries) may race here.
        let tmp = dir.join(format!("{name}.{}.{}", std::process::id(), unique()));
        std::os::unix::fs::symlink(BIN, &tmp).unwrap();
        std::fs::rename(&tmp, &link).unwrap();
    }
    link
}

#[derive(Default)]
struct Collected {
    text: String,
    eof: bool,
}

/// A running rxtxcpu (killed on drop if still running).
pub struct Capture {
    child: Child,
    /// Its arguments, for messages.
    args: String,
    stderr: Arc<(Mutex<Collected>, Condvar)>,
    /// The threads reading stdout (unless it goes elsewhere) and stderr.
    stdout_reader: Option<JoinHandle<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
}

/// How a run of the binary ended.
pub struct Finished {
    pub status: ExitStatus,
    /// stdout as text (lossy: see `stdout_bytes` for a pcap stream).
    pub stdout: String,
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
}

impl Capture {
    /// Spawns the binary as `name` (inside `ns` if given) with exactly `args`;
    /// does not wait for anything.
    pub fn spawn(ns: Option<&Netns>, name: &str, args: &[&str]) -> Capture {
        Capture::spawn_via(ns, &[], &program(name), args)
    }

    /// Spawns `program` (inside `ns` if given) under the `wrapper` command
    /// line, if any (`env VAR=1`, `setpriv --reuid=...`), with exactly
    /// `args`; does not wait for anything.
    pub fn spawn_via(
        ns: Option<&Netns>,
        wrapper: &[&str],
        program: &Path,
        args: &[&str],
    ) -> Capture {
        Capture::launch(ns, wrapper, program, args, None)
    }

    /// Spawns `rxtxcpu -v args` in `ns` with its stdout going to `stdout`
    /// instead of being collected: a pipe the test hands to another
    /// program or closes (`Stdio::piped()`, then `take_stdout`). Does not
    /// wait for anything (`wait_ready` does).
    pub fn spawn_with_stdout(ns: &Netns, args: &[&str], stdout: Stdio) -> Capture {
        let mut argv = vec!["-v"];
        argv.extend_from_slice(args);
        Capture::launch(Some(ns), &[], Path::new(BIN), &argv, Some(stdout))
    }

    fn launch(
        ns: Option<&Netns>,
        wrapper: &[&str],
        program: &Path,
        args: &[&str],
        stdout: Option<Stdio>,
    ) -> Capture {
        let mut argv: Vec<&std::ffi::OsStr> = Vec::new();
        if let Some(ns) = ns {
            argv.extend(["netns", "exec", ns.name.as_str()].map(std::ffi::OsStr::new));
        }
        argv.extend(wrapper.iter().map(std::ffi::OsStr::new));
        argv.push(program.as_os_str());
        let mut cmd = match ns {
            Some(_) => Command::new("ip"),
            None => Command::new(argv.remove(0)),
        };
        let collect_stdout = stdout.is_none();
        // A test run under nohup (or from a shell that ignores SIGHUP) must
        // not pass that on: rxtxcpu keeps an inherited ignore, as tcpdump
        // does, and the SIGHUP tests would wait forever. The nohup test
        // sets it again through its wrapper.
        // SAFETY: between fork and exec only async-signal-safe calls are
        // allowed; signal(2) is one.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::signal(libc::SIGHUP, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = cmd
            .args(argv)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout.unwrap_or_else(Stdio::piped))
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rxtxcpu");
        let stdout_reader = collect_stdout.then(|| {
            let mut out = child.stdout.take().unwrap();
            thread::spawn(move || {
                let mut buf = Vec::new();
                out.read_to_end(&mut buf).unwrap();
                buf
            })
        });
        let collected = Arc::new((Mutex::new(Collected::default()), Condvar::new()));
        let shared = collected.clone();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let stderr_reader = thread::spawn(move || {
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = err.read_until(b'\n', &mut line).unwrap_or(0);
                let (lock, cv) = &*shared;
                let mut c = lock.lock().unwrap();
                c.text.push_str(&String::from_utf8_lossy(&line));
                c.eof = n == 0;
                cv.notify_all();
                if n == 0 {
                    return;
                }
            }
        });
        Capture {
            child,
            args: format!("{args:?}"),
            stderr: collected,
            stdout_reader,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// Starts a capture as `name` in `ns` with `-v` and `args`, and waits
    /// for its `listening on` line (panics if it exits or takes too long).
    pub fn start(ns: &Netns, name: &str, args: &[&str]) -> Capture {
        Capture::start_via(ns, &[], &program(name), args)
    }

    /// `start` for `program` run under `wrapper` (see `spawn_via`).
    pub fn start_via(ns: &Netns, wrapper: &[&str], program: &Path, args: &[&str]) -> Capture {
        let mut argv = vec!["-v"];
        argv.extend_from_slice(args);
        let mut cap = Capture::spawn_via(Some(ns), wrapper, program, &argv);
        cap.wait_ready();
        cap
    }

    /// Waits for the `listening on` line of `-v` (kills the process and
    /// panics if it exits first or takes too long).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let (lock, cv) = &*self.stderr;
        let mut c = lock.lock().unwrap();
        loop {
            if c.text.lines().any(|l| l.contains("listening on")) {
                return;
            }
            let now = Instant::now();
            if c.eof || now >= deadline {
                let why = if c.eof { "exited" } else { "timed out" };
                drop(c);
                let _ = self.child.kill();
                let status = self.child.wait().unwrap();
                panic!(
                    "capture {} {why} before `listening on` ({status}); stderr:\n{}",
                    self.args,
                    self.stderr_now()
                );
            }
            c = cv.wait_timeout(c, deadline - now).unwrap().0;
        }
    }

    /// The read end of the stdout pipe (see `spawn_with_stdout`).
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.child
            .stdout
            .take()
            .expect("stdout is not a pipe to take")
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Whether the process ends within `limit` (it is left running if not).
    pub fn exited_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.is_running() {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
        true
    }

    pub fn signal(&self, sig: Signal) {
        nix::sys::signal::kill(self.pid(), sig).unwrap_or_else(|e| panic!("kill {sig}: {e}"));
    }

    /// The ids of the eBPF programs the process holds (the `prog_id` of
    /// its descriptors: programs and their links).
    pub fn bpf_programs(&self) -> Vec<u32> {
        let mut ids = Vec::new();
        for fd in std::fs::read_dir(format!("/proc/{}/fdinfo", self.pid())).unwrap() {
            let text = std::fs::read_to_string(fd.unwrap().path()).unwrap_or_default();
            ids.extend(
                text.lines()
                    .filter_map(|l| l.strip_prefix("prog_id:"))
                    .filter_map(|v| v.trim().parse::<u32>().ok()),
            );
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// SIGKILL, then waits until the kernel has freed every program in
    /// `ids` (after a grace period), panicking if one stays; as bpftool
    /// sees them.
    pub fn kill_and_check_programs_freed(self, ids: &[u32]) {
        let exists = |id: u32| {
            Command::new("bpftool")
                .args(["prog", "show", "id", &id.to_string()])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        assert!(ids.iter().all(|&id| exists(id)), "{ids:?} not all loaded");
        self.signal(Signal::SIGKILL);
        let _ = self.wait();
        let deadline = Instant::now() + Duration::from_secs(20);
        while ids.iter().any(|&id| exists(id)) {
            assert!(Instant::now() < deadline, "programs {ids:?} still loaded");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the process wrote to stderr so far.
    pub fn stderr_now(&self) -> String {
        self.stderr.0.lock().unwrap().text.clone()
    }

    /// Waits for the process to end by itself (kills it and panics after a
    /// timeout).
    pub fn wait(self) -> Finished {
        self.wait_within(EXIT_TIMEOUT)
    }

    /// Ctrl-C, then `wait`.
    pub fn interrupt(self) -> Finished {
        self.signal(Signal::SIGINT);
        self.wait()
    }

    /// `wait`, for a process that must end by itself within `limit`.
    pub fn wait_within(mut self, limit: Duration) -> Finished {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "rxtxcpu did not exit within {limit:?}; stderr:\n{}",
                    self.stderr_now()
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        let stdout_bytes = self
            .stdout_reader
            .take()
            .map_or_else(Vec::new, |r| r.join().unwrap());
        self.stderr_reader.take().unwrap().join().unwrap();
        Finished {
            status,
            stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
            stdout_bytes,
            stderr: self.stderr_now(),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the binary as `name` with `args` outside any namespace (for
/// invocations that end before capturing anything).
pub fn run(name: &str, args: &[&str]) -> Finished {
    Capture::spawn(None, name, args).wait()
}

/// Runs the binary as `name` with `args` inside `ns`, to completion.
pub fn run_in(ns: &Netns, name: &str, args: &[&str]) -> Finished {
    Capture::spawn(Some(ns), name, args).wait()
}

impl fmt::Display for Finished {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}--- stderr ---\n{}--------------",
            self.status, self.stdout, self.stderr
        )
    }
}

impl Finished {
    /// Standard output as the one JSON object `--json` prints.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON object: {e}\n{self}"))
    }

    /// The report on stdout (panics, with everything, if malformed): all
    /// of stdout, or with --flows what comes before the flow table.
    pub fn report(&self) -> Report {
        let end = self
            .stdout
            .find(" packets captured total.\n")
            .map_or(self.stdout.len(), |i| {
                i + " packets captured total.\n".len()
            });
        let (report, rest) = self.stdout.split_at(end);
        assert!(
            rest.is_empty()
                || rest.starts_with("PROTO ")
                || rest.ends_with(" flows seen, 0 on more than one stream (SPLIT).\n")
                || rest.contains("flow"),
            "stdout after the report is not a flow table:\n{self}"
        );
        Report::parse(report).unwrap_or_else(|e| panic!("bad report: {e}\n{self}"))
    }

    /// The report where `-w -` puts it: at the end of stderr.
    pub fn report_from_stderr(&self) -> Report {
        let start = self
            .stderr
            .lines()
            .position(|l| l.contains(" packets captured "))
            .unwrap_or_else(|| panic!("no report on stderr\n{self}"));
        let text: String = self
            .stderr
            .lines()
            .skip(start)
            .map(|l| format!("{l}\n"))
            .collect();
        Report::parse(&text).unwrap_or_else(|e| panic!("bad report on stderr: {e}\n{self}"))
    }

    /// The kernel drop lines on stderr (`N packets dropped by kernel on
    /// cpuX.`, `1 packet ...`), by cpu; cpus without drops have no line.
    pub fn drops(&self) -> BTreeMap<u32, u64> {
        self.drops_by_place()
            .into_iter()
            .filter_map(|(p, n)| match p {
                Place::Cpu(c) => Some((c, n)),
                _ => None,
            })
            .collect()
    }

    /// The lines on stderr after a stream's files failed (`rxtxcpu: N
    /// captured packets on cpu0 are not in the file`), by stream; streams
    /// whose files hold every packet they captured have none.
    pub fn not_in_file(&self) -> BTreeMap<Place, u64> {
        self.stderr
            .lines()
            .filter_map(|l| {
                let (_, rest) = l.split_once(": ")?;
                let (n, rest) = rest
                    .split_once(" captured packets ")
                    .or_else(|| rest.split_once(" captured packet "))?;
                let place = rest
                    .strip_suffix(" are not in the file")
                    .or_else(|| rest.strip_suffix(" is not in the file"))?;
                Some((Place::parse(place)?, n.parse().ok()?))
            })
            .collect()
    }

    /// The kernel drop lines on stderr, by stream, whatever the vantage.
    pub fn drops_by_place(&self) -> BTreeMap<Place, u64> {
        self.stderr
            .lines()
            .filter_map(|l| {
                let (n, place) = l
                    .split_once(" packets dropped by kernel ")
                    .or_else(|| l.split_once(" packet dropped by kernel "))?;
                Some((Place::parse(place.strip_suffix('.')?)?, n.parse().ok()?))
            })
            .collect()
    }

    /// Packets `cpu` saw: those its report line counts plus those its drop
    /// line says the kernel dropped.
    pub fn seen_on(&self, cpu: u32) -> u64 {
        self.report().per_cpu[&cpu] + self.drops().get(&cpu).copied().unwrap_or(0)
    }

    /// Stderr after the `listening on` line (empty without one): what the
    /// capture said once it was capturing. Without the lines of
    /// /proc/net/softnet_stat's changes: they count every device of the
    /// machine, and tests running beside this one flood theirs
    /// (tests/drops.rs checks those lines on a machine of its own); and
    /// without `--duration`'s stop notice, which follows it.
    pub fn after_ready(&self) -> String {
        self.stderr
            .split_once("listening on")
            .and_then(|(_, rest)| rest.split_once('\n'))
            .map_or("", |(_, rest)| rest)
            .lines()
            .filter(|l| !l.ends_with("(softnet_stat, every device)."))
            .filter(|l| !(l.contains(": stopping after ") && l.ends_with(" s (--duration)")))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// Exit 0, and nothing lost silently: what the capture counted plus what
    /// the kernel dropped is exactly `reached`, the frames that reached the
    /// interface (`Netns::tapped_frames`). When nothing was lost before the
    /// taps either (`reached` is all that was sent), each cpu saw exactly
    /// its share, `per_cpu[cpu]`.
    pub fn assert_accounted_for(&self, what: &str, reached: u64, per_cpu: [u64; 2]) {
        assert_eq!(self.status.code(), Some(0), "{what}\n{self}");
        let captured = self.report().total;
        let dropped: u64 = self.drops().values().sum();
        assert_eq!(
            captured + dropped,
            reached,
            "{what}: captured {captured} + dropped {dropped} != {reached} frames\n{self}"
        );
        if reached == per_cpu.iter().sum::<u64>() {
            for cpu in [0, 1] {
                let want = per_cpu[cpu as usize];
                assert_eq!(self.seen_on(cpu), want, "{what}: cpu{cpu}\n{self}");
            }
        }
    }

    /// Exit 0 and exactly these `(cpu, packets)` report lines.
    pub fn assert_report(&self, expected: &[(u32, u64)]) {
        assert_eq!(self.status.code(), Some(0), "exit status\n{self}");
        let report = self.report();
        let expected: BTreeMap<u32, u64> = expected.iter().copied().collect();
        assert_eq!(report.per_cpu, expected, "per-cpu counts\n{self}");
    }

    /// Exit 0 and exactly these `(queue, packets)` report lines, and the
    /// no-queue line if `no_queue` is Some.
    pub fn assert_queue_report(&self, expected: &[(u32, u64)], no_queue: Option<u64>) {
        assert_eq!(self.status.code(), Some(0), "exit status\n{self}");
        let report = self.report();
        let expected: BTreeMap<u32, u64> = expected.iter().copied().collect();
        assert_eq!(report.per_queue, expected, "per-queue counts\n{self}");
        assert_eq!(report.no_queue, no_queue, "no-queue line\n{self}");
    }

    /// Exit 0 and exactly these `(node, packets)` report lines.
    pub fn assert_node_report(&self, expected: &[(u32, u64)]) {
        assert_eq!(self.status.code(), Some(0), "exit status\n{self}");
        let report = self.report();
        let expected: BTreeMap<u32, u64> = expected.iter().copied().collect();
        assert_eq!(report.per_node, expected, "per-node counts\n{self}");
    }

    /// Exit 1, nothing on stdout, and exactly `message` (one line) on stderr.
    pub fn assert_runtime_error(&self, message: &str) {
        assert_eq!(self.status.code(), Some(1), "{self}");
        assert_eq!(self.stdout, "", "{self}");
        assert_eq!(self.stderr, format!("{message}\n"), "{self}");
    }

    /// Exit 2, empty stdout, and stderr = `<name>: <message>` + the usage.
    pub fn assert_usage_error(&self, name: &str, message: &str) {
        assert_eq!(self.status.code(), Some(2), "exit status\n{self}");
        assert_eq!(self.stdout, "", "stdout\n{self}");
        let (first, usage) = self.stderr.split_once('\n').unwrap_or((&self.stderr, ""));
        assert_eq!(first, format!("{name}: {message}"), "message\n{self}");
        if let Err(e) = check_usage(name, usage) {
            panic!("usage block: {e}\n{self}");
        }
    }
}

/// Whether ethtool is installed (tests that switch a device's offloads
/// with it skip without it, saying so).
pub fn ethtool_installed() -> bool {
    let ok = Command::new("ethtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("ethtool is not installed; skipping (apt-get install ethtool)");
    }
    ok
}

/// Whether bpftool is installed (tests that look at loaded programs
/// through it skip without it, saying so).
pub fn bpftool_installed() -> bool {
    let ok = Command::new("bpftool")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("bpftool is not installed; skipping (apt-get install bpftool)");
    }
    ok
}

/// Whether the binary under test has the debug build's test hooks
/// (`RXTXCPU_TEST_PANIC_CPU`, `RXTXCPU_TEST_COPY`): `cargo test
/// --release` builds it without them, and a test that needs them skips,
/// saying so.
pub fn has_test_hooks() -> bool {
    if !cfg!(debug_assertions) {
        eprintln!("the release build has no test hooks; skipping (cargo test without --release)");
    }
    cfg!(debug_assertions)
}
