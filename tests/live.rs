//! --live: the table in a real terminal (tmux), the plain and JSON lines
//! when stderr is not a terminal, and the report unchanged under it.

mod common;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;

/// A tmux server of its own (so tests run in parallel), with one window
/// running a command; killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(cmd: &str, width: u16, height: u16) -> Tmux {
        let t = Tmux {
            socket: format!("rxtxcpu-live-{}-{}", std::process::id(), rand_suffix()),
        };
        let out = Command::new("tmux")
            .args([
                "-L",
                &t.socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "t",
            ])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg(cmd)
            .env("TERM", "xterm")
            .output()
            .expect("tmux (apt-get install tmux; .ci/run does)");
        assert!(out.status.success(), "{}", show("tmux new-session", &out));
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t"])
    }

    fn keys(&self, keys: &str) {
        self.tmux(&["send-keys", "-t", "t", keys]);
    }

    /// Waits until the screen shows `what` (panics after 20 s).
    fn wait_for(&self, what: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if what(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "screen never showed it:\n{s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The row of `stream` in the table: its cells, without the softirq
/// marker (`!`) that may follow the name.
fn row<'a>(screen: &'a str, stream: &str) -> Option<Vec<&'a str>> {
    screen
        .lines()
        .find(|l| l.split_whitespace().next() == Some(stream))
        .map(|l| l.split_whitespace().filter(|c| *c != "!").collect())
}

/// The command line a tmux window runs: the capture in `ns`, its stdout
/// (the report) to `report`, then a marker once it has exited.
fn live_command(ns: &Netns, args: &str, report: &str) -> String {
    format!(
        "ip netns exec {} {} {args} > {report}; echo \"exit status $?\"; sleep 60",
        ns.name, BIN
    )
}

#[test]
fn table_in_a_terminal_then_a_clean_screen_and_the_report() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let report = dir.path("report.txt");
    let tmux = Tmux::start(&live_command(&ns, "--live lo", &report), 110, 20);
    tmux.wait_for(|s| s.contains("STREAM") && s.contains("cpu1"));
    // Known rates: 200 and 400 datagrams a second, 2 packets each on lo.
    let rate = |n| FloodOptions {
        per_sec: Some(n),
        ..FloodOptions::default()
    };
    let floods = [(0, 200), (1, 400)].map(|(cpu, n)| Flood::start_with(&ns, cpu, LO, rate(n)));
    std::thread::sleep(Duration::from_millis(2500));
    let screen = tmux.screen();
    let sent: Vec<u64> = floods.map(|f| f.stop()).to_vec();
    let header = screen
        .lines()
        .find(|l| l.trim_start().starts_with("STREAM"))
        .unwrap();
    for col in [
        "PKT/S", "MBIT/S", "DROP/S", "PACKETS", "NET_RX/S", "NET_TX/S", "SIRQ%", "SHARE",
    ] {
        assert!(header.contains(col), "no {col} column:\n{screen}");
    }
    assert!(
        screen.contains("interface lo") && screen.contains("vantage cpu"),
        "{screen}"
    );
    for (cpu, want) in [("cpu0", 400.0), ("cpu1", 800.0)] {
        let cells = row(&screen, cpu).unwrap_or_else(|| panic!("no {cpu} row:\n{screen}"));
        let pps: f64 = cells[1].parse().unwrap_or_else(|_| panic!("{cells:?}"));
        assert!(
            pps > 0.0 && pps <= want * 1.5,
            "{cpu}: {pps} pkt/s, senders make {want}\n{screen}"
        );
    }
    tmux.keys("C-c");
    let after = tmux.wait_for(|s| s.contains("exit status"));
    assert!(after.contains("exit status 0"), "{after}");
    // The table is gone: nothing but the command's own lines.
    assert!(
        !after.contains("STREAM"),
        "table left on the screen:\n{after}"
    );
    let text = std::fs::read_to_string(&report).unwrap();
    let r = Report::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    // Exact: every datagram sent was captured twice, on its cpu.
    assert_eq!(
        r.per_cpu,
        [(0, 2 * sent[0]), (1, 2 * sent[1])].into(),
        "{text}"
    );
}

#[test]
fn narrow_terminal_and_resize_and_queue_rows() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let report = dir.path("report.txt");
    let tun = MqTun::new(&ns, 3);
    let args = format!("--live --interval=0.2 {}", tun.ifname);
    let tmux = Tmux::start(
        &live_command(&ns, &format!("--vantage=queue -d rx {args}"), &report),
        40,
        12,
    );
    let screen = tmux.wait_for(|s| s.contains("queue 2"));
    for l in screen.lines() {
        assert!(l.chars().count() <= 40, "wider than the terminal: {l:?}");
    }
    let sink = UdpSink::bind(&ns, tun.addr);
    tun.write_udp(2, 1, 1000, 3);
    sink.expect(3);
    tmux.tmux(&["resize-window", "-t", "t", "-x", "100", "-y", "12"]);
    // Redrawn at the new size, then with the packets.
    tmux.wait_for(|s| s.contains("SHARE") && s.contains("PACKETS"));
    tmux.wait_for(|s| {
        s.lines()
            .any(|l| l.starts_with("queue 2") && l.split_whitespace().any(|c| c == "3"))
    });
    tmux.keys("C-c");
    tmux.wait_for(|s| s.contains("exit status 0"));
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("3 packets captured on queue 2.\n"), "{text}");
}

#[test]
fn second_ctrl_c_and_an_error_leave_a_clean_screen() {
    let (a, b) = (Netns::new(), Netns::new());
    let (_va, vb) = veth_pair(&a, &b);
    let dir = TempDir::new();
    let report = dir.path("report.txt");
    let tmux = Tmux::start(
        &live_command(&b, &format!("--live {}", vb.ifname), &report),
        100,
        20,
    );
    tmux.wait_for(|s| s.contains("STREAM"));
    // The interface goes away mid-capture: the error after the view.
    b.ip(&["link", "del", &vb.ifname]);
    let after = tmux.wait_for(|s| s.contains("exit status"));
    assert!(after.contains("exit status 1"), "{after}");
    assert!(
        after.contains(&format!("interface '{}' disappeared", vb.ifname)),
        "{after}"
    );
    assert!(!after.contains("STREAM"), "{after}");

    let ns = Netns::new();
    let tmux = Tmux::start(&live_command(&ns, "--live lo", &report), 100, 20);
    tmux.wait_for(|s| s.contains("STREAM"));
    tmux.keys("C-c");
    tmux.keys("C-c");
    let after = tmux.wait_for(|s| s.contains("exit status"));
    assert!(after.contains("exit status 0"), "{after}");
    assert!(!after.contains("STREAM"), "{after}");
    let text = std::fs::read_to_string(&report).unwrap();
    Report::parse(&text).unwrap();
    // The cursor is shown again (tmux's cursor_flag).
    let flag = tmux.tmux(&["display-message", "-p", "-t", "t", "#{cursor_flag}"]);
    assert_eq!(flag.trim(), "1");
}

/// `key=value` fields of a plain line.
fn fields(line: &str) -> std::collections::BTreeMap<&str, &str> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

#[test]
fn plain_lines_when_stderr_is_not_a_terminal() {
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxcpu", &["--live", "--interval=0.1", "lo"]);
    udp_send(&ns, 0, LO, LO, 5);
    std::thread::sleep(Duration::from_millis(300));
    udp_send(&ns, 1, LO, LO, 3);
    let f = cap.interrupt();
    f.assert_report(&[(0, 10), (1, 6)]);
    let mut per: std::collections::BTreeMap<String, u64> = Default::default();
    let mut last: std::collections::BTreeMap<String, u64> = Default::default();
    for l in f.after_ready().lines().filter(|l| l.starts_with("time=")) {
        let kv = fields(l);
        let stream = kv["stream"].to_string();
        *per.entry(stream.clone()).or_default() += kv["interval_packets"].parse::<u64>().unwrap();
        last.insert(stream, kv["packets"].parse().unwrap());
        for k in [
            "pps",
            "mbps",
            "drops_ps",
            "share_pct",
            "net_rx_ps",
            "net_tx_ps",
            "softirq_pct",
        ] {
            kv[k]
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("{k} in {l}"));
        }
    }
    // The intervals add up to the report, and so do the last totals.
    let want: std::collections::BTreeMap<String, u64> =
        [("cpu0".to_string(), 10), ("cpu1".to_string(), 6)].into();
    assert_eq!(per, want, "{f}");
    assert_eq!(last, want, "{f}");
}

#[test]
fn json_lines_and_top_flows() {
    let ns = Netns::new();
    let _sink = UdpSink::bind(&ns, LO);
    let cap = Capture::start(
        &ns,
        "rxtxcpu",
        &["--live", "--interval=0.2", "--json", "--flows", "lo"],
    );
    for _ in 0..5 {
        udp_send_port(&ns, 1, LO, LO, UDP_PORT, 4);
        std::thread::sleep(Duration::from_millis(150));
    }
    let f = cap.interrupt();
    // The final report is still the JSON object on stdout.
    let report: Value = serde_json::from_str(&f.stdout).unwrap_or_else(|e| panic!("{e}\n{f}"));
    assert_eq!(report["total"], 40);
    let mut total = 0u64;
    let mut flows_seen = false;
    for l in f.after_ready().lines().filter(|l| l.starts_with('{')) {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        for s in v["streams"].as_array().unwrap() {
            total += s["interval_packets"].as_u64().unwrap();
        }
        if let Some(flows) = v["flows"].as_array() {
            for fl in flows {
                let text = fl["flow"].as_str().unwrap_or_default();
                flows_seen |= text
                    == format!("udp 127.0.0.1:{} > 127.0.0.1:{UDP_PORT}", 0).as_str()
                    || (text.starts_with("udp 127.0.0.1:") && text.ends_with(":9999"));
            }
        }
    }
    assert_eq!(total, 40, "{f}");
    assert!(flows_seen, "no top flow in the JSON lines\n{f}");
}

/// The packets of the UDP flows to the sink in the JSON lines' top flows.
fn sink_flow_packets(stderr: &str) -> u64 {
    let suffix = format!(":{UDP_PORT}");
    stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .flat_map(|v| v["flows"].as_array().cloned().unwrap_or_default())
        .filter(|fl| {
            fl["flow"]
                .as_str()
                .is_some_and(|t| t.starts_with("udp ") && t.ends_with(&suffix))
        })
        .map(|fl| fl["packets"].as_u64().unwrap())
        .sum()
}

/// A burst and then silence: the worker that took it goes back to sleep
/// on an empty ring, and the view's next request must still wake it for
/// its flows (it used to answer only at its next ring block, so the
/// burst's flows showed in no interval), and they add up to the report.
#[test]
fn top_flows_of_a_burst_followed_by_silence() {
    let ns = Netns::new();
    let _sink = UdpSink::bind(&ns, LO);
    let cap = Capture::start(
        &ns,
        "rxtxcpu",
        &["--live", "--interval=0.2", "--json", "--flows", "lo"],
    );
    udp_send_port(&ns, 0, LO, LO, UDP_PORT, 20);
    // Each datagram twice on lo (sent and received), in the lines of the
    // intervals that follow, while the capture still runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = sink_flow_packets(&cap.stderr_now());
        if seen == 40 {
            break;
        }
        assert!(
            seen < 40 && Instant::now() < deadline,
            "{seen} of the burst's 40 packets in the top flows:\n{}",
            cap.stderr_now()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let f = cap.interrupt();
    assert_eq!(f.json()["total"], 40, "{f}");
    assert_eq!(sink_flow_packets(&f.stderr), 40, "{f}");
}

/// --xdp: its workers answer the view's request as the rings' do (they
/// never did, so an XDP capture showed no top flows at all).
#[test]
fn top_flows_of_an_xdp_capture() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let sink = UdpSink::bind(&b, vb.addr);
    let cap = Capture::start(
        &b,
        "rxcpu",
        &[
            "--xdp",
            "--live",
            "--interval=0.2",
            "--json",
            "--flows",
            &vb.ifname,
        ],
    );
    udp_send(&a, 0, va.addr, vb.addr, 20);
    sink.expect(20);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink_flow_packets(&cap.stderr_now()) < 20 {
        assert!(Instant::now() < deadline, "{}", cap.stderr_now());
        std::thread::sleep(Duration::from_millis(50));
    }
    let f = cap.interrupt();
    assert_eq!(f.json()["streams"][0]["captured"], 20, "{f}");
    assert_eq!(sink_flow_packets(&f.stderr), 20, "{f}");
}

#[test]
fn interval_usage_errors() {
    check_usage_errors(&[
        ("rxtxcpu", &["--interval=1"][..], "--interval needs --live."),
        (
            "rxtxcpu",
            &["--live", "--interval=0.05"],
            "Invalid interval '0.05' (expected 0.1-86400 seconds).",
        ),
        (
            "rxtxcpu",
            &["--live", "--interval=x"],
            "Invalid interval 'x' (expected 0.1-86400 seconds).",
        ),
        (
            "rxtxcpu",
            &["--live", "--interval=-1"],
            "Invalid interval '-1' (expected 0.1-86400 seconds).",
        ),
    ]);
}

/// --repeats in the table: a REPEAT/S column beside NET_TX/S, and the
/// interval's top repeating packet under the table, with its cpu.
#[test]
fn repeats_in_a_terminal() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let report = dir.path("report.txt");
    let tmux = Tmux::start(&live_command(&ns, "--live --repeats lo", &report), 120, 20);
    tmux.wait_for(|s| s.contains("REPEAT/S") && s.contains("cpu1"));
    let mut frame = vec![0u8; 12];
    frame.extend([0x08, 0x00]);
    frame.extend(ipv4_udp(
        Ipv4Addr::new(10, 9, 9, 1),
        5000,
        Ipv4Addr::new(10, 9, 9, 2),
        6000,
        b"stuck",
    ));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let screen = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                send_frames(&ns, 1, "lo", vec![frame.clone(); 5_000]);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let screen = tmux.wait_for(|s| {
            s.contains("TOP REPEATING PACKET")
                && s.contains("cpu1 udp 10.9.9.1.5000 > 10.9.9.2.6000: length 5")
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        screen
    });
    let header = screen
        .lines()
        .find(|l| l.trim_start().starts_with("STREAM"))
        .unwrap();
    let titles: Vec<&str> = header.split_whitespace().collect();
    let at = |t: &str| titles.iter().position(|c| *c == t);
    let (tx, rp) = (at("NET_TX/S"), at("REPEAT/S"));
    assert_eq!(
        rp.zip(tx).map(|(r, t)| r - t),
        Some(1),
        "REPEAT/S beside NET_TX/S:\n{screen}"
    );
    let cells = row(&screen, "cpu1").unwrap_or_else(|| panic!("no cpu1 row:\n{screen}"));
    let repeat_ps: f64 = cells[rp.unwrap()]
        .trim_end_matches(['k', 'M'])
        .parse()
        .unwrap_or_else(|_| panic!("{cells:?}\n{screen}"));
    assert!(repeat_ps > 0.0, "{screen}");
    let cells = row(&screen, "cpu0").unwrap();
    assert_eq!(cells[rp.unwrap()], "0", "{screen}");
    tmux.keys("C-c");
    let after = tmux.wait_for(|s| s.contains("exit status"));
    assert!(after.contains("exit status 0"), "{after}");
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("repeated copies on cpu1 (1 packet, 100.0% of its packets).")),
        "{text}"
    );
}
