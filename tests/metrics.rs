//! The metrics endpoint over real sockets, each test in its own network
//! namespace: scrapes in both formats, what is refused (404, 405, 400,
//! 431), clients that send nothing, a megabyte, 200 connections at once,
//! bind errors with their exact messages, `promtool check metrics` on the
//! exposition, a real Prometheus scraping it, and the fleet recipe's
//! configuration and alert rules (`promtool check`/`test rules`).
//!
//! The server tests serve a fixed snapshot, so every number is exact;
//! the capture tests at the end run the program with `--metrics` and hold
//! what Prometheus scraped against the program's own report.

mod common;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use common::prometheus::{self, Prometheus};
use common::{in_netns, root, show, Netns};
use rxtxcpu::metrics::{
    parse_address, CpuCounters, Description, Exporter, FlowCounts, Format, Limits, ReasonDrops,
    Server, Snapshot, Softnet, StreamCounts,
};

const ADDR: &str = "127.0.0.1:9101";

fn addr() -> SocketAddr {
    ADDR.parse().unwrap()
}

fn description() -> Description {
    Description {
        interface: "veth0".into(),
        vantage: "cpu".into(),
        direction: "rxtx".into(),
        streams: vec!["0".into(), "1".into()],
        start: UNIX_EPOCH + Duration::from_secs(1_765_000_000),
    }
}

/// Every family, with exact numbers.
fn snapshot() -> Snapshot {
    Snapshot {
        streams: vec![
            StreamCounts {
                packets: 1234,
                bytes: 123_400,
                kernel_drops: 5,
            },
            StreamCounts {
                packets: 66,
                bytes: 6600,
                kernel_drops: 0,
            },
        ],
        repeated_copies: Some(vec![0, 17]),
        drop_reasons: Some(vec![
            ReasonDrops {
                cpu: 0,
                reason: "NO_SOCKET".into(),
                packets: 3,
                namespace_unknown: false,
            },
            ReasonDrops {
                cpu: 1,
                reason: "SOCKET_RCVBUFF".into(),
                packets: 2310,
                namespace_unknown: false,
            },
            ReasonDrops {
                cpu: 1,
                reason: "NOT_SPECIFIED".into(),
                packets: 5,
                namespace_unknown: true,
            },
        ]),
        flows: Some(FlowCounts {
            seen: 12,
            split: Some(2),
            unexpected: Some(1),
            tracked: 9,
            untracked_packets: 40,
        }),
        cpus: Some(vec![
            CpuCounters {
                cpu: 0,
                net_rx: 1_000_000,
                net_tx: 137,
                softnet: Some(Softnet {
                    processed: 990_000,
                    dropped: 4,
                    time_squeeze: 12,
                    received_rps: 0,
                    flow_limit_count: 0,
                }),
            },
            CpuCounters {
                cpu: 1,
                net_rx: 5_000_000_000,
                net_tx: 95,
                softnet: Some(Softnet::default()),
            },
        ]),
    }
}

/// Runs `f` on a thread in a fresh namespace, with a server serving
/// [`snapshot`] on [`ADDR`] there (`limits` bounding it); stops the
/// server after `f`.
fn with_server<T: Send + 'static>(
    limits: Limits,
    f: impl FnOnce(SocketAddr) -> T + Send + 'static,
) -> T {
    let ns = Netns::new();
    in_netns(&ns, move || {
        let server = Server::bind(addr()).unwrap().with_limits(limits);
        let source = snapshot;
        std::thread::scope(|s| {
            let running = server
                .spawn_scoped(s, Exporter::new(description(), &source))
                .unwrap();
            let out = f(addr());
            running.stop().expect("the server thread panicked");
            out
        })
    })
}

/// What the server answers for `format`, rendered directly.
fn expected_body(format: Format) -> String {
    let source = snapshot;
    Exporter::new(description(), &source).render(format)
}

/// A response, parsed.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {name} header: {self:#?}"))
    }
}

fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8(raw.to_vec()).expect("a UTF-8 response");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head: {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap_or_else(|| panic!("header {l:?}"));
            (k.to_ascii_lowercase(), v.to_string())
        })
        .collect();
    Response {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Sends `request` on a new connection and reads its answer (to the end
/// of the connection when the server closes it, else as far as its
/// Content-Length says).
fn exchange(addr: SocketAddr, request: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(request).unwrap();
    read_response(&mut s, request.starts_with(b"HEAD "))
}

/// Reads one answer from `s`: its head, then as many bytes as its
/// Content-Length says (none for an answer to HEAD).
fn read_response(s: &mut TcpStream, to_head: bool) -> Response {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).expect("reading an answer") {
            0 => return parse_response(&raw),
            _ => raw.push(byte[0]),
        }
    }
    let head = parse_response(&raw);
    let len: usize = head.header("Content-Length").parse().unwrap();
    let mut body = vec![0u8; if to_head { 0 } else { len }];
    s.read_exact(&mut body).expect("reading an answer's body");
    raw.extend_from_slice(&body);
    parse_response(&raw)
}

fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> Response {
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}\r\n").as_bytes(),
    )
}

/// A complete 200 answer holding `format`'s exposition.
fn assert_scrape(r: &Response, format: Format) {
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.header("Content-Type"), format.content_type());
    assert_eq!(r.header("Content-Length"), r.body.len().to_string());
    assert_eq!(r.body, expected_body(format));
}

/// Whether the server closed `s` (read gives EOF or a reset), waiting at
/// most a minute.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => panic!(
            "an idle client got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
        Err(e) => panic!("waiting for the server to close: {e}"),
    }
}

#[test]
fn scrapes_in_text_and_openmetrics() {
    with_server(Limits::default(), |addr| {
        // No Accept header, or one that prefers text: text 0.0.4.
        assert_scrape(&get(addr, "/metrics", None), Format::Text);
        assert_scrape(
            &get(addr, "/metrics", Some("text/plain;version=0.0.4")),
            Format::Text,
        );
        // What Prometheus 2.42 sends: OpenMetrics.
        let om = get(
            addr,
            "/metrics",
            Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
        );
        assert_scrape(&om, Format::OpenMetrics);
        assert!(om.body.ends_with("# EOF\n"));
        // A query string is not part of the path; HTTP/1.0 is answered.
        assert_scrape(
            &exchange(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Format::Text,
        );
        let text = expected_body(Format::Text);
        for line in [
            r#"rxtxcpu_packets_total{interface="veth0",vantage="cpu",direction="rxtx",stream="0"} 1234"#,
            r#"rxtxcpu_bytes_total{interface="veth0",vantage="cpu",direction="rxtx",stream="1"} 6600"#,
            r#"rxtxcpu_kernel_drops_total{interface="veth0",vantage="cpu",direction="rxtx",stream="0"} 5"#,
            r#"rxtxcpu_softirqs_total{cpu="1",type="NET_RX"} 5000000000"#,
            "rxtxcpu_capture_start_time_seconds 1765000000.0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    });
}

#[test]
fn ipv6() {
    let ns = Netns::new();
    ns.exec(&[
        "sysctl",
        "-q",
        "-w",
        "net.ipv6.conf.all.disable_ipv6=0",
        "net.ipv6.conf.lo.disable_ipv6=0",
    ]);
    in_netns(&ns, || {
        let addr = parse_address("[::1]:9101").unwrap();
        let server = Server::bind(addr).unwrap();
        let source = snapshot;
        std::thread::scope(|s| {
            let running = server
                .spawn_scoped(s, Exporter::new(description(), &source))
                .unwrap();
            assert_scrape(&get(addr, "/metrics", None), Format::Text);
            running.stop().unwrap();
        });
    });
}

#[test]
fn only_get_and_head_of_metrics() {
    with_server(Limits::default(), |addr| {
        let get_answer = get(addr, "/metrics", None);
        let head = exchange(addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(head.status, 200);
        assert_eq!(head.headers, get_answer.headers, "HEAD answers GET's head");
        assert_eq!(head.body, "");

        for path in ["/", "/metrics/", "/metricsx", "/favicon.ico", "*"] {
            let r = get(addr, path, None);
            assert_eq!(
                (r.status, r.body.as_str()),
                (404, "404 not found\n"),
                "{path}"
            );
        }
        let r = exchange(addr, b"HEAD / HTTP/1.1\r\n\r\n");
        assert_eq!((r.status, r.body.as_str()), (404, ""));
        for method in [
            "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "CONNECT",
        ] {
            let r = exchange(
                addr,
                format!("{method} /metrics HTTP/1.1\r\n\r\n").as_bytes(),
            );
            assert_eq!(r.status, 405, "{method}");
            assert_eq!(r.header("Allow"), "GET, HEAD");
            assert_eq!(r.body, "405 method not allowed\n");
        }
        for garbage in [
            &b"hello\r\n\r\n"[..],
            b"GET /metrics\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nno header\r\n\r\n",
        ] {
            let r = exchange(addr, garbage);
            assert_eq!((r.status, r.body.as_str()), (400, "400 bad request\n"));
        }
        // HTTP/2 with prior knowledge.
        let r = exchange(addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert_eq!(r.status, 505);
        // Still serving.
        assert_scrape(&get(addr, "/metrics", None), Format::Text);
    });
}

#[test]
fn silent_and_trickling_clients_do_not_stall_scrapes() {
    with_server(Limits::default(), |addr| {
        let mut silent = TcpStream::connect(addr).unwrap();
        let mut trickling = TcpStream::connect(addr).unwrap();
        trickling.write_all(b"GET /metrics HTTP/1.1\r\nHo").unwrap();
        // Answered at once, whatever the other two do.
        assert_scrape(&get(addr, "/metrics", None), Format::Text);
        trickling.write_all(b"st: x\r\n").unwrap();
        assert_scrape(&get(addr, "/metrics", None), Format::Text);
        // Both are closed when their time to send a request is up, with
        // no answer.
        assert!(closed_by_server(&mut silent));
        assert!(closed_by_server(&mut trickling));
        assert_scrape(&get(addr, "/metrics", None), Format::Text);
    });
}

#[test]
fn a_megabyte_of_request_is_refused() {
    with_server(Limits::default(), |addr| {
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
        request.resize(1 << 20, b'a');
        request.extend_from_slice(b"\r\n\r\n");
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut reader = s.try_clone().unwrap();
        let read = std::thread::spawn(move || {
            let mut raw = Vec::new();
            reader.read_to_end(&mut raw).map(|_| raw)
        });
        // The server stops reading the request at 8 KiB and answers; it
        // reads (and drops) the rest, so the answer is not lost to a reset.
        let _ = s.write_all(&request);
        let raw = read.join().unwrap().expect("reading the answer");
        let r = parse_response(&raw);
        assert_eq!(r.status, 431, "{r:#?}");
        assert_eq!(r.body, "431 request header fields too large\n");
        // One byte under the limit is a request like any other.
        let mut fits = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
        fits.resize(8 * 1024 - 4, b'a');
        fits.extend_from_slice(b"\r\n\r\n");
        assert_scrape(&exchange(addr, &fits), Format::Text);
        fits.insert(30, b'a');
        assert_eq!(exchange(addr, &fits).status, 431);
    });
}

#[test]
fn two_hundred_connections_at_once() {
    with_server(Limits::default(), |addr| {
        // 200 scrapers at once: each is answered in full.
        let scrapers: Vec<_> = (0..200)
            .map(|_| std::thread::spawn(move || get(addr, "/metrics", None)))
            .collect();
        for s in scrapers {
            assert_scrape(&s.join().unwrap(), Format::Text);
        }
        // 200 connections that send nothing hold at most 16 slots, and
        // only while nobody else needs them: a scraper still gets its
        // answer.
        let idle: Vec<_> = (0..200)
            .map(|_| {
                std::thread::spawn(move || {
                    TcpStream::connect_timeout(&addr, Duration::from_secs(60)).unwrap()
                })
            })
            .collect();
        let mut idle: Vec<TcpStream> = idle.into_iter().map(|h| h.join().unwrap()).collect();
        assert_scrape(&get(addr, "/metrics", None), Format::Text);
        for s in &mut idle {
            assert!(closed_by_server(s));
        }
    });
}

#[test]
fn a_full_server_closes_the_oldest_idle_connection() {
    let limits = Limits {
        max_connections: 2,
        request_timeout: Duration::from_secs(120),
        ..Limits::default()
    };
    with_server(limits, |addr| {
        let mut first = TcpStream::connect(addr).unwrap();
        // The server has taken the first before the second connects
        // (accepting is first come first served in any case).
        let mut second = TcpStream::connect(addr).unwrap();
        // The third waits until the first has been idle for the grace
        // period, then takes its slot.
        assert_scrape(&get(addr, "/metrics", None), Format::Text);
        assert!(closed_by_server(&mut first));
        second.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(
            second.read(&mut buf).map_err(|e| e.kind()),
            Err(ErrorKind::WouldBlock),
            "the second connection is still open"
        );
        second.set_nonblocking(false).unwrap();
        // It can still send its request.
        second
            .write_all(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut raw = Vec::new();
        second.read_to_end(&mut raw).unwrap();
        let r = parse_response(&raw);
        assert_scrape(&r, Format::Text);
        assert_eq!(r.header("Connection"), "close");
    });
}

#[test]
fn connections_stay_open_between_scrapes() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    with_server(limits, |addr| {
        // As Prometheus scrapes: one connection, request after request.
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        for _ in 0..3 {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let r = read_response(&mut s, false);
            assert_scrape(&r, Format::Text);
            assert!(!r.headers.contains_key("connection"), "{r:#?}");
        }
        // HEAD and a 404 keep it open too.
        s.write_all(b"HEAD /metrics HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut s, true).status, 200);
        s.write_all(b"GET /other HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut s, false).status, 404);
        // Two requests in one write (pipelined): two answers, in order.
        s.write_all(b"GET /x HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut s, false).status, 404);
        assert_scrape(&read_response(&mut s, false), Format::Text);
        // Asked to close: the answer says so, then the server closes.
        s.write_all(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let r = read_response(&mut s, false);
        assert_scrape(&r, Format::Text);
        assert_eq!(r.header("Connection"), "close");
        assert!(closed_by_server(&mut s));

        // A request with a body, which this server does not read: answered,
        // then closed (where its next request would begin is unknown).
        let r = exchange(
            addr,
            b"GET /metrics HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody",
        );
        assert_eq!(r.header("Connection"), "close");

        // A kept connection waiting for its next request gives its slot up
        // to a new scraper when all are taken, as a new connection does.
        let mut kept = TcpStream::connect(addr).unwrap();
        kept.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        kept.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        assert_scrape(&read_response(&mut kept, false), Format::Text);
        let mut other = TcpStream::connect(addr).unwrap();
        other
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        other.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        assert_scrape(&read_response(&mut other, false), Format::Text);
        // Both slots are taken by connections that wait: a third scraper
        // is answered once the oldest has waited its grace.
        assert_scrape(&get(addr, "/metrics", None), Format::Text);
        assert!(closed_by_server(&mut kept));
    });
}

#[test]
fn bind_errors() {
    let ns = Netns::new();
    in_netns(&ns, || {
        let taken = Server::bind(addr()).unwrap();
        let e = Server::bind(addr()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "error binding 127.0.0.1:9101: Address in use"
        );
        // What the capture prints, exit 1: a runtime error.
        let as_error: rxtxcpu::error::Error = e.into();
        assert!(matches!(as_error, rxtxcpu::error::Error::Message(_)));
        drop(taken);
        // An address this namespace does not have.
        let e = Server::bind(parse_address("192.0.2.1:9101").unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "error binding 192.0.2.1:9101: Cannot assign requested address"
        );
        // IPv6 is off in the test namespaces: no ::1.
        let e = Server::bind(parse_address("[::1]:9101").unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "error binding [::1]:9101: Cannot assign requested address"
        );
        // Free again once the first is gone.
        drop(Server::bind(addr()).unwrap());
    });
}

/// The id of the thread calling it.
fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// A thread's context switches so far (voluntary + involuntary).
fn context_switches(tid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn scrapes_read_the_counters_and_idle_costs_nothing() {
    let ns = Netns::new();
    in_netns(&ns, || {
        let server = Server::bind(addr()).unwrap();
        let packets = AtomicU64::new(0);
        let server_tid = AtomicU64::new(0);
        let source = || {
            server_tid.store(gettid() as u64, Ordering::Relaxed);
            let mut s = snapshot();
            s.streams[1].packets = packets.load(Ordering::Relaxed);
            s
        };
        let line = |n: u64| {
            format!(
                r#"rxtxcpu_packets_total{{interface="veth0",vantage="cpu",direction="rxtx",stream="1"}} {n}"#
            )
        };
        std::thread::scope(|s| {
            let running = server
                .spawn_scoped(s, Exporter::new(description(), &source))
                .unwrap();
            for n in [0, 1, 1_000_000_007] {
                packets.store(n, Ordering::Relaxed);
                let r = get(addr(), "/metrics", None);
                assert!(r.body.lines().any(|l| l == line(n)), "{}", r.body);
            }
            // The source runs on the server's thread, not the scraper's.
            let tid = server_tid.load(Ordering::Relaxed) as i32;
            assert_ne!(tid, gettid());
            // Idle, it sleeps in poll() until something happens: once
            // the last connection is closed (its client's FIN still wakes
            // it), it is not woken again. A timer or a busy loop would
            // never let it sit for half a second.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let before = context_switches(tid);
                std::thread::sleep(Duration::from_millis(500));
                if context_switches(tid) == before {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the idle server keeps waking up"
                );
            }
            running.stop().unwrap();
            // Stopped: the port is closed.
            assert_eq!(
                TcpStream::connect(addr())
                    .map_err(|e| e.kind())
                    .unwrap_err(),
                ErrorKind::ConnectionRefused
            );
        });
    });
}

#[test]
fn promtool_finds_no_problem_in_the_exposition() {
    if !prometheus::installed(prometheus::PROMTOOL) {
        return;
    }
    let body = with_server(Limits::default(), |addr| get(addr, "/metrics", None).body);
    promtool_check_metrics(&body);
}

/// `promtool check metrics` finds no problem in `body` (it prints each
/// problem, and exits 3 for lint problems).
fn promtool_check_metrics(body: &str) {
    let mut child = Command::new(prometheus::PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "{}\non:\n{body}",
        show("promtool check metrics", &out)
    );
}

fn recipe(file: &str) -> PathBuf {
    root().join("examples/prometheus").join(file)
}

#[test]
fn the_fleet_recipe_checks_and_its_alert_rules_pass_their_tests() {
    if !prometheus::installed(prometheus::PROMTOOL) {
        return;
    }
    for args in [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "rules.yml"],
        ["test", "rules", "rules.test.yml"],
    ] {
        let out = Command::new(prometheus::PROMTOOL)
            .args(args)
            .current_dir(recipe(""))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            show(&format!("promtool {}", args.join(" ")), &out)
        );
    }
}

#[test]
fn prometheus_scrapes_the_endpoint() {
    if !prometheus::installed(prometheus::PROMETHEUS) {
        return;
    }
    let ns = Netns::new();
    let packets = std::sync::Arc::new(AtomicU64::new(66));
    let counter = std::sync::Arc::clone(&packets);
    let ns_name = ns.name.clone();
    // The server runs on a thread in the namespace until `stop` is sent.
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let serving = std::thread::spawn(move || {
        let file = std::fs::File::open(format!("/var/run/netns/{ns_name}")).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let server = Server::bind(addr()).unwrap();
        let source = || {
            let mut s = snapshot();
            s.streams[1].packets = counter.load(Ordering::Relaxed);
            s
        };
        std::thread::scope(|s| {
            let running = server
                .spawn_scoped(s, Exporter::new(description(), &source))
                .unwrap();
            ready_tx.send(()).unwrap();
            let _ = stop_rx.recv();
            running.stop().unwrap();
        });
    });
    ready_rx.recv().unwrap();

    let rules = recipe("rules.yml");
    let prom = Prometheus::start(&ns, &[ADDR], &[&rules]);
    prom.wait_for_scrape();
    let by_stream = |time: Option<f64>| -> BTreeMap<String, f64> {
        let q = "sum by (stream) (rxtxcpu_packets_total)";
        let samples = match time {
            Some(t) => prom.query_at(q, t),
            None => prom.query(q),
        };
        samples
            .into_iter()
            .map(|s| (s.labels["stream"].clone(), s.value))
            .collect()
    };
    assert_eq!(
        by_stream(None),
        BTreeMap::from([("0".into(), 1234.0), ("1".into(), 66.0)])
    );
    // A scrape reads the counters as they are then.
    packets.store(1_000_066, Ordering::Relaxed);
    let at = prom.wait_for_scrape();
    assert_eq!(
        by_stream(Some(at)),
        BTreeMap::from([("0".into(), 1234.0), ("1".into(), 1_000_066.0)])
    );

    // Every family made it, with its labels.
    let one = |q: &str| -> f64 {
        let s = prom.query(q);
        assert_eq!(s.len(), 1, "{q}: {s:?}");
        s[0].value
    };
    assert_eq!(
        one(
            r#"rxtxcpu_kernel_drops_by_reason_total{interface="veth0",cpu="1",reason="SOCKET_RCVBUFF"}"#
        ),
        2310.0
    );
    // Drops of an unknown namespace are in the family, as in the report,
    // marked by the one label the others lack: the family sums to the
    // report's total.
    assert_eq!(
        one(
            r#"rxtxcpu_kernel_drops_by_reason_total{cpu="1",reason="NOT_SPECIFIED",namespace_known="false"}"#
        ),
        5.0
    );
    assert_eq!(
        one("sum(rxtxcpu_kernel_drops_by_reason_total)"),
        3.0 + 2310.0 + 5.0
    );
    assert_eq!(
        one(r#"sum(rxtxcpu_kernel_drops_by_reason_total{namespace_known=""})"#),
        3.0 + 2310.0
    );
    assert_eq!(one(r#"rxtxcpu_repeated_copies_total{stream="1"}"#), 17.0);
    assert_eq!(one("rxtxcpu_flows_unexpected"), 1.0);
    assert_eq!(one("rxtxcpu_flows_split"), 2.0);
    assert_eq!(one("rxtxcpu_flows_tracked"), 9.0);
    assert_eq!(one(r#"rxtxcpu_softirqs_total{cpu="1",type="NET_RX"}"#), 5e9);
    assert_eq!(
        one(r#"rxtxcpu_softnet_times_squeezed_total{cpu="0"}"#),
        12.0
    );
    assert_eq!(
        one(&format!(
            r#"rxtxcpu_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    assert_eq!(one("rxtxcpu_capture_start_time_seconds"), 1_765_000_000.0);

    // Prometheus asked for OpenMetrics and got it: the unit and the info
    // type exist only there.
    let metadata = prom.api("/api/v1/metadata");
    assert_eq!(
        metadata["rxtxcpu_capture_start_time_seconds"][0]["unit"], "seconds",
        "{metadata}"
    );
    assert_eq!(metadata["rxtxcpu_build"][0]["type"], "info", "{metadata}");
    let targets = prom.targets();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0]["health"], "up", "{targets:?}");
    assert_eq!(targets[0]["lastError"], "", "{targets:?}");

    // The fleet recipe's rules evaluate against the real series.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let groups = prom.rule_groups();
        let rules: Vec<&serde_json::Value> = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .collect();
        assert_eq!(rules.len(), 3, "{groups:?}");
        if rules.iter().all(|r| r["health"] == "ok") {
            break;
        }
        assert!(
            rules.iter().all(|r| r["health"] != "err"),
            "a rule fails: {groups:?}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the rules were not evaluated: {groups:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    drop(prom);
    stop_tx.send(()).unwrap();
    serving.join().unwrap();
}

/// The capture's per-stream packets, read back from a real Prometheus
/// scraping `--metrics` while deterministic traffic runs, equal the
/// capture's own report.
#[test]
fn prometheus_sees_the_capture_as_its_report_says() {
    if !prometheus::installed(prometheus::PROMETHEUS) {
        return;
    }
    let ns = Netns::new();
    let _sink = common::UdpSink::bind(&ns, common::LO);
    #[rustfmt::skip]
    let cap = common::Capture::start(&ns, "rxtxcpu", &["--metrics", ADDR, "--repeats", "--flows",
                                                       "--filter", "udp", "lo"]);
    let prom = Prometheus::start(&ns, &[ADDR], &[]);
    common::udp_send(&ns, 0, common::LO, common::LO, 10);
    common::udp_send(&ns, 1, common::LO, common::LO, 25);
    let want = BTreeMap::from([("0".to_string(), 20.0), ("1".to_string(), 50.0)]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let at = prom.wait_for_scrape();
        let got: BTreeMap<String, f64> = prom
            .query_at("sum by (stream) (rxtxcpu_packets_total)", at)
            .into_iter()
            .map(|s| (s.labels["stream"].clone(), s.value))
            .collect();
        if got == want {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{got:?}");
    }
    let labels = &prom.query(r#"rxtxcpu_packets_total{stream="1"}"#)[0].labels;
    assert_eq!(
        (
            &labels["interface"][..],
            &labels["vantage"][..],
            &labels["direction"][..]
        ),
        ("lo", "cpu", "rxtx")
    );
    let bytes = prom.query("sum(rxtxcpu_bytes_total)");
    assert!(bytes[0].value >= 70.0 * 28.0, "{bytes:?}");
    assert_eq!(prom.query("rxtxcpu_repeated_copies_total").len(), 2);
    // One flow from each cpu (a socket each), in the tables now.
    assert_eq!(prom.query("rxtxcpu_flows_seen_total")[0].value, 2.0);
    assert_eq!(prom.query("rxtxcpu_flows_tracked")[0].value, 2.0);
    // Neither is split; on lo every flow goes both ways, so none has an
    // expected stream.
    assert_eq!(prom.query("rxtxcpu_flows_split")[0].value, 0.0);
    assert_eq!(prom.query("rxtxcpu_flows_unexpected")[0].value, 0.0);
    assert_eq!(prom.query("rxtxcpu_softirqs_total").len() % 2, 0);
    // What a scrape serves, promtool finds no problem in.
    let (status, body) = prometheus::http_get(&ns.name, addr(), "/metrics").unwrap();
    assert_eq!(status, 200);
    promtool_check_metrics(&body);
    cap.signal(common::Signal::SIGINT);
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
    assert_eq!(
        f.report().per_cpu,
        BTreeMap::from([(0, 20), (1, 50)]),
        "{f}"
    );
}

/// A port in use ends the program before the capture starts: exit 1, one
/// line, no file made.
#[test]
fn a_port_in_use_stops_the_capture_before_it_starts() {
    let ns = Netns::new();
    let _taken = in_netns(&ns, || std::net::TcpListener::bind(ADDR).unwrap());
    let dir = common::TempDir::new();
    let out = dir.path("x.pcap");
    let f = common::run_in(&ns, "rxtxcpu", &["--metrics=9101", "-w", &out, "lo"]);
    assert_eq!(f.status.code(), Some(1), "{f}");
    assert_eq!(
        f.stderr, "rxtxcpu: error binding 127.0.0.1:9101: Address in use\n",
        "{f}"
    );
    assert!(common::files_under(&dir.0).is_empty(), "{f}");
}

#[test]
fn bad_metrics_addresses_are_usage_errors() {
    common::check_usage_errors(&[
        (
            "rxtxcpu",
            &["--metrics=x"][..],
            "Invalid metrics address 'x'.",
        ),
        (
            "txcpu",
            &["--metrics=70000"],
            "Invalid metrics address '70000'.",
        ),
        (
            "rxtxcpu",
            &["--metrics=1.2.3:80"],
            "Invalid metrics address '1.2.3:80'.",
        ),
        ("rxtxcpu", &["--metrics=0"], "Invalid metrics address '0'."),
    ]);
}

/// With `-w -` stdout carries the packets; the metrics are HTTP, so they
/// go together.
#[test]
fn metrics_with_the_packets_on_stdout() {
    let ns = Netns::new();
    let _sink = common::UdpSink::bind(&ns, common::LO);
    let cap = common::Capture::start(
        &ns,
        "rxtxcpu",
        &["-l1", "-w", "-", "--metrics", ADDR, "--filter", "udp", "lo"],
    );
    common::udp_send(&ns, 1, common::LO, common::LO, 3);
    // The worker counts the packets once the kernel hands their ring
    // block over (within its timeout).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = prometheus::http_get(&ns.name, addr(), "/metrics").unwrap();
        assert_eq!(status, 200);
        if body.lines().any(|l| {
            l.starts_with("rxtxcpu_packets_total{")
                && l.contains(r#"stream="1""#)
                && l.ends_with(" 6")
        }) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    cap.signal(common::Signal::SIGINT);
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
}

/// The value of the one sample of single-series family `name` in a
/// text exposition; None when the family is not served.
fn single(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

/// Split and unexpected flows as a scrape serves them while the capture
/// runs are the report's. RPS sends rx-0 to cpu1 when the capture starts
/// (what every flow is expected to do); then it is changed to cpu0: one
/// flow sent again lands on cpu0 too (split, and off its stream), three
/// new flows land on cpu0 only (off their stream).
#[test]
fn split_and_unexpected_flows_are_the_reports() {
    use std::net::IpAddr;
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = common::veth_pair(&a, &b);
    common::set_sysfs(&b, &vb.ifname, "queues/rx-0/rps_cpus", "2");
    let sink = common::UdpSink::bind(&b, vb.addr);
    #[rustfmt::skip]
    let cap = common::Capture::start(&b, "rxcpu", &["--metrics", ADDR, "--flows=0", "--json",
                                                    "--filter", "udp", &vb.ifname]);
    let send = |sport: u16, n: usize| {
        common::udp_flow(
            &a,
            0,
            (IpAddr::V4(va.addr), sport),
            (IpAddr::V4(vb.addr), common::UDP_PORT),
            n,
        );
        sink.expect(n);
    };
    for sport in 4000..4004 {
        send(sport, 2);
    }
    common::set_sysfs(&b, &vb.ifname, "queues/rx-0/rps_cpus", "1");
    send(4000, 3);
    for sport in 5000..5003 {
        send(sport, 2);
    }
    // Once the workers have counted every packet (each ring block within
    // its timeout), the next scrape reads the tables as the end will.
    let scrape = || prometheus::http_get(&b.name, addr(), "/metrics").unwrap().1;
    let packets = |body: &str| -> f64 {
        body.lines()
            .filter(|l| l.starts_with("rxtxcpu_packets_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while packets(&scrape()) < 17.0 {
        assert!(std::time::Instant::now() < deadline, "{}", scrape());
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = scrape();
    promtool_check_metrics(&body);
    let served = (
        single(&body, "rxtxcpu_flows_split"),
        single(&body, "rxtxcpu_flows_unexpected"),
        single(&body, "rxtxcpu_flows_tracked"),
    );
    cap.signal(common::Signal::SIGINT);
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r = f.json();
    let summary = &r["flow_summary"];
    // Tracked per stream: the split flow is in both streams' tables.
    let per_stream: f64 = summary["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["flows"].as_f64().unwrap())
        .sum();
    let report = (
        summary["split"].as_f64(),
        summary["unexpected"].as_f64(),
        Some(per_stream),
    );
    assert_eq!(served, report, "{body}\n{f}");
    assert_eq!(served, (Some(1.0), Some(4.0), Some(8.0)), "{body}\n{f}");
}

/// `--metrics` alone: the workers read only each packet's length from
/// its ring header, and the bytes are exact (lo: each datagram twice, as
/// sent and as received, an Ethernet header, IPv4, UDP and the payload),
/// large datagrams too, of which the kernel copied one byte into the ring
/// (nothing reads the packets' bytes).
#[test]
fn bytes_counted_from_the_headers_alone_are_exact() {
    let ns = Netns::new();
    let _sink = common::UdpSink::bind(&ns, common::LO);
    #[rustfmt::skip]
    let cap = common::Capture::start(&ns, "rxtxcpu", &["-v", "--metrics", ADDR, "--filter", "udp",
                                                      "lo"]);
    assert!(
        cap.stderr_now()
            .contains("nothing reads the packets' bytes: the kernel copies 1 byte of each"),
        "{}",
        cap.stderr_now()
    );
    common::udp_send(&ns, 0, common::LO, common::LO, 10);
    common::udp_send(&ns, 1, common::LO, common::LO, 25);
    // To a port nobody listens on: the ICMP errors are not udp.
    common::udp_send_port_with(&ns, 1, common::LO, 9, &[7u8; 1400], 5);
    let frame = (14 + 20 + 8 + common::PAYLOAD.len()) as f64;
    let big = (14 + 20 + 8 + 1400) as f64;
    let want: BTreeMap<String, (f64, f64)> = BTreeMap::from([
        ("0".into(), (20.0, 20.0 * frame)),
        ("1".into(), (60.0, 50.0 * frame + 10.0 * big)),
    ]);
    let per_stream = |body: &str, family: &str| -> BTreeMap<String, f64> {
        body.lines()
            .filter(|l| l.starts_with(&format!("{family}{{")))
            .map(|l| {
                let stream = l
                    .split("stream=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                (
                    stream.to_string(),
                    l.rsplit(' ').next().unwrap().parse().unwrap(),
                )
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = prometheus::http_get(&ns.name, addr(), "/metrics").unwrap();
        let (packets, bytes) = (
            per_stream(&body, "rxtxcpu_packets_total"),
            per_stream(&body, "rxtxcpu_bytes_total"),
        );
        let got: BTreeMap<String, (f64, f64)> = packets
            .into_iter()
            .map(|(s, p)| (s.clone(), (p, bytes[&s])))
            .collect();
        if got == want {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{got:?}\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    f.assert_report(&[(0, 20), (1, 60)]);
}

/// --flows-idle when the traffic stops: the flows of the last burst leave
/// the table although no block comes after them to sweep before (the
/// worker wakes for the sweep), so the served gauge falls to 0 and the
/// report counts them as expired, not listed.
#[test]
fn idle_flows_expire_when_the_traffic_stops() {
    use std::net::IpAddr;
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = common::veth_pair(&a, &b);
    let sink = common::UdpSink::bind(&b, vb.addr);
    #[rustfmt::skip]
    let cap = common::Capture::start(&b, "rxcpu", &["--metrics", ADDR, "--flows", "--flows-idle=1",
                                                    "--json", "--filter", "udp", &vb.ifname]);
    for sport in 4000..4003 {
        common::udp_flow(
            &a,
            0,
            (IpAddr::V4(va.addr), sport),
            (IpAddr::V4(vb.addr), common::UDP_PORT),
            2,
        );
    }
    sink.expect(6);
    let tracked = || {
        let body = prometheus::http_get(&b.name, addr(), "/metrics").unwrap().1;
        single(&body, "rxtxcpu_flows_tracked").unwrap()
    };
    common::wait_until("the three flows in the table", || tracked() == 3.0);
    // Nothing more is sent: only the worker's own wake-up sweeps them.
    common::wait_until("the idle flows to leave the table", || tracked() == 0.0);
    cap.signal(common::Signal::SIGINT);
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let s = &f.json()["flow_summary"];
    assert_eq!(
        (&s["expired"], &s["expired_packets"], &s["listed"]),
        (&3.into(), &6.into(), &0.into()),
        "{f}"
    );
}

/// With --flows-max, the packets of flows the table had no room for are
/// served as rxtxcpu_flows_untracked_packets_total, exactly as the
/// report's untracked line counts them.
#[test]
fn untracked_packets_are_served() {
    use std::net::IpAddr;
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = common::veth_pair(&a, &b);
    let sink = common::UdpSink::bind(&b, vb.addr);
    #[rustfmt::skip]
    let cap = common::Capture::start(&b, "rxcpu", &["-l0", "--metrics", ADDR, "--flows",
                                                    "--flows-max=2", "--json", "--filter", "udp",
                                                    &vb.ifname]);
    // Five flows of 3 datagrams from cpu0 (a veth receives on the
    // sender's cpu): two are tracked, three (9 packets) are not.
    for sport in 4000..4005 {
        common::udp_flow(
            &a,
            0,
            (IpAddr::V4(va.addr), sport),
            (IpAddr::V4(vb.addr), common::UDP_PORT),
            3,
        );
    }
    sink.expect(15);
    let untracked = || {
        let body = prometheus::http_get(&b.name, addr(), "/metrics").unwrap().1;
        single(&body, "rxtxcpu_flows_untracked_packets_total").unwrap()
    };
    common::wait_until("nine untracked packets served", || untracked() == 9.0);
    cap.signal(common::Signal::SIGINT);
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
    assert_eq!(f.json()["flow_summary"]["untracked_packets"], 9, "{f}");
}

/// With --drops, the drops whose namespace is unknown (datagrams left
/// unread when their socket closes: freed with neither device nor socket,
/// known only by the ifindex they arrived on) are served in
/// rxtxcpu_kernel_drops_by_reason_total as the report lists them, marked
/// `namespace_known="false"`: the family sums to the report's
/// kernel_drops. The receiving veth gets an ifindex of its own, so that
/// no other namespace's drops of that number mix in.
#[test]
fn drops_of_an_unknown_namespace_are_served_as_the_report_lists_them() {
    use std::net::{IpAddr, Ipv4Addr, UdpSocket};
    let (a, b) = (Netns::new(), Netns::new());
    let index = (7000 + std::process::id() % 1000).to_string();
    let (va, vb) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    #[rustfmt::skip]
    b.ip(&["link", "add", "vu1", "index", &index, "address", "02:00:00:00:00:02", "type", "veth",
           "peer", "name", "vu0", "address", "02:00:00:00:00:01", "netns", &a.name]);
    for (ns, me, addr, peer, mac) in [
        (&a, "vu0", va, vb, "02:00:00:00:00:02"),
        (&b, "vu1", vb, va, "02:00:00:00:00:01"),
    ] {
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", me]);
        ns.ip(&["link", "set", me, "up"]);
        #[rustfmt::skip]
        ns.ip(&["neigh", "replace", &peer.to_string(), "lladdr", mac, "dev", me,
                "nud", "permanent"]);
    }
    common::wait_link_active(&a, "vu0");
    common::wait_link_active(&b, "vu1");
    let sink = common::UdpSink::bind(&b, vb);
    #[rustfmt::skip]
    let cap = common::Capture::start(&b, "rxcpu", &["--drops", "--json", "--metrics", ADDR,
                                                    "vu1"]);
    let unread = in_netns(&b, move || UdpSocket::bind((vb, 0)).unwrap());
    let port = unread.local_addr().unwrap().port();
    common::udp_flow(&a, 0, (IpAddr::V4(va), 4000), (IpAddr::V4(vb), port), 10);
    // From the same cpu, after them: once the sink has it, the ten are
    // queued on the socket (a veth hands frames to the sending cpu's
    // backlog, in order).
    common::udp_flow(
        &a,
        0,
        (IpAddr::V4(va), 4001),
        (IpAddr::V4(vb), common::UDP_PORT),
        1,
    );
    sink.expect(1);
    drop(unread);
    // The kernel frees them once the socket goes (after an RCU grace
    // period): wait until a scrape serves all ten.
    let scrape = || prometheus::http_get(&b.name, addr(), "/metrics").unwrap().1;
    let family = |body: &str, unknown: bool| -> f64 {
        body.lines()
            .filter(|l| l.starts_with("rxtxcpu_kernel_drops_by_reason_total{"))
            .filter(|l| l.contains(r#",namespace_known="false"}"#) == unknown)
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut body = scrape();
    while family(&body, true) < 10.0 {
        assert!(std::time::Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(20));
        body = scrape();
    }
    promtool_check_metrics(&body);
    cap.signal(common::Signal::SIGINT);
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let drops = f.json()["kernel_drops"].as_array().unwrap().clone();
    let sum = |known: bool| -> f64 {
        drops
            .iter()
            .filter(|d| d["namespace_known"] == known)
            .map(|d| d["packets"].as_f64().unwrap())
            .sum()
    };
    assert_eq!(sum(false), 10.0, "{f}");
    assert_eq!(
        (family(&body, true), family(&body, false)),
        (sum(false), sum(true)),
        "{body}\n{f}"
    );
}
