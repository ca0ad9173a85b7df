//! A real Prometheus server for the tests (Debian's `prometheus` package,
//! which .ci/run installs): started in a test's network namespace with a
//! generated configuration (a scrape every second), its own storage in a
//! scratch directory, queried over its HTTP API. Killed when dropped.
//!
//! Prometheus writes a staleness marker for every series of a target it
//! can no longer scrape, so an instant query after the target stopped
//! (the capture ended) finds nothing: query while the target runs, or at
//! the time of a scrape ([`Prometheus::query_at`] with the time
//! [`Prometheus::wait_for_scrape`] returned).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{enter_netns, Netns, TempDir};

/// The program, where Debian puts it.
pub const PROMETHEUS: &str = "prometheus";
pub const PROMTOOL: &str = "promtool";

/// The job name of the targets [`Prometheus::start`] scrapes.
pub const JOB: &str = "rxtxcpu";

/// Whether `program --version` runs. When it does not, says so and, on CI
/// (`CI` set, where .ci/run installs it), fails.
pub fn installed(program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        let on_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        assert!(
            !on_ci,
            "{program} is not installed, and CI must run this test: apt-get install prometheus (.ci/run does)"
        );
        eprintln!("{program} is not installed; skipping (apt-get install prometheus)");
    }
    found
}

/// One sample of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    /// Seconds since the epoch.
    pub time: f64,
    pub value: f64,
}

/// A running Prometheus; killed (and its storage removed) on drop.
pub struct Prometheus {
    child: Child,
    netns: String,
    /// Where its API listens, inside the namespace.
    pub addr: SocketAddr,
    dir: TempDir,
}

/// Where Prometheus listens in its namespace (a fresh namespace has every
/// port free).
const PORT: u16 = 9090;

/// How long Prometheus may take to start, and a scrape to show.
const PATIENCE: Duration = Duration::from_secs(60);

impl Prometheus {
    /// Scraping `targets` (`127.0.0.1:9101`) every second as job
    /// [`JOB`], and evaluating `rule_files` (absolute paths) every second.
    pub fn start(ns: &Netns, targets: &[&str], rule_files: &[&Path]) -> Prometheus {
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let rules: String = rule_files
            .iter()
            .map(|p| format!("  - '{}'\n", p.display()))
            .collect();
        let config = format!(
            "global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
{rules}scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: [{}]
",
            targets.join(", ")
        );
        Prometheus::start_with_config(ns, &config)
    }

    /// With a whole configuration file's text.
    pub fn start_with_config(ns: &Netns, config: &str) -> Prometheus {
        let dir = TempDir::new();
        let config_path = dir.0.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.0.join("prometheus.log")).unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], PORT).into();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, PROMETHEUS])
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {PROMETHEUS}: {e}"));
        let mut p = Prometheus {
            child,
            netns: ns.name.clone(),
            addr,
            dir,
        };
        p.wait_ready();
        p
    }

    /// The log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("prometheus.log")).unwrap_or_default()
    }

    /// Waits until `/-/ready` answers 200.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("prometheus exited ({status}):\n{}", self.log());
            }
            if let Ok((200, _)) = self.try_get("/-/ready") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready after {PATIENCE:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET path` of its API, from inside the namespace: (status, body).
    fn try_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(&self.netns, self.addr, path)
    }

    /// `GET path`, which must answer 200; the body as JSON, whose
    /// `status` must be `success`; returns its `data`.
    pub fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = self
            .try_get(path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.log()));
        assert_eq!(status, 200, "GET {path}: {body}");
        let mut json: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
        assert_eq!(json["status"], "success", "GET {path}: {body}");
        json["data"].take()
    }

    /// An instant query now (`/api/v1/query`): its vector's samples.
    pub fn query(&self, promql: &str) -> Vec<Sample> {
        self.query_path(&format!("/api/v1/query?query={}", url_encode(promql)))
    }

    /// An instant query at `time` (seconds since the epoch).
    pub fn query_at(&self, promql: &str, time: f64) -> Vec<Sample> {
        self.query_path(&format!(
            "/api/v1/query?query={}&time={time:.3}",
            url_encode(promql)
        ))
    }

    fn query_path(&self, path: &str) -> Vec<Sample> {
        let data = self.api(path);
        assert_eq!(data["resultType"], "vector", "{path}: {data}");
        data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                let time = r["value"][0].as_f64().unwrap();
                let value = r["value"][1].as_str().unwrap().parse().unwrap();
                Sample {
                    labels,
                    time,
                    value,
                }
            })
            .collect()
    }

    /// Waits for a scrape of every target of [`JOB`] that started after
    /// this call, so that it saw whatever the targets served by then;
    /// returns the time of the latest such scrape (for [`query_at`]).
    /// Panics if a target is down.
    ///
    /// [`query_at`]: Prometheus::query_at
    pub fn wait_for_scrape(&self) -> f64 {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let up = self.query(&format!("up{{job=\"{JOB}\"}}"));
            if !up.is_empty() && up.iter().all(|s| s.value == 1.0) {
                let times = self.query(&format!("timestamp(up{{job=\"{JOB}\"}})"));
                if times.len() == up.len() && times.iter().all(|s| s.value > since) {
                    return times.iter().map(|s| s.value).fold(0.0, f64::max);
                }
            }
            assert!(
                up.iter().all(|s| s.value == 1.0),
                "a target is down: {up:?}\n{}",
                self.api("/api/v1/targets")
            );
            assert!(
                Instant::now() < deadline,
                "no scrape after {PATIENCE:?}: up = {up:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The targets' state (`/api/v1/targets`'s `activeTargets`).
    pub fn targets(&self) -> Vec<serde_json::Value> {
        self.api("/api/v1/targets")["activeTargets"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// The configured rule groups (`/api/v1/rules`'s `groups`).
    pub fn rule_groups(&self) -> Vec<serde_json::Value> {
        self.api("/api/v1/rules")["groups"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Its storage directory.
    pub fn dir(&self) -> PathBuf {
        self.dir.0.clone()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // `ip netns exec` execs the program: the child is Prometheus.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET from a thread inside namespace `netns` (1.0: the
/// answer is never chunked and ends when the server closes).
pub fn http_get(netns: &str, addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let netns = netns.to_string();
    let path = path.to_string();
    std::thread::spawn(move || {
        enter_netns(&netns);
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        let mut response = Vec::new();
        s.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
        Ok((status, body.to_string()))
    })
    .join()
    .unwrap()
}

/// Percent-encodes a query parameter's value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
