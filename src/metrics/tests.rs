//! The metrics without sockets: the exposition of a fixed snapshot, the
//! formats' negotiation, the request parser, `--metrics` addresses and
//! the kernel counters' parsing and widening. tests/metrics.rs serves
//! them over real sockets and has promtool and Prometheus read them.

use std::time::{Duration, UNIX_EPOCH};

use super::kernel::{parse_softnet, KernelCpus, Unwrap};
use super::server::{answer, parse_request, Request};
use super::*;

fn description() -> Description {
    Description {
        interface: "eth0".into(),
        vantage: "queue".into(),
        direction: "rxtx".into(),
        streams: vec!["0".into(), "1".into(), "noqueue".into()],
        start: UNIX_EPOCH + Duration::from_millis(1_765_000_000_250),
    }
}

fn streams() -> Vec<StreamCounts> {
    vec![
        StreamCounts {
            packets: 10,
            bytes: 1000,
            kernel_drops: 1,
        },
        StreamCounts {
            packets: 20,
            bytes: 2000,
            kernel_drops: 0,
        },
        StreamCounts {
            packets: 3,
            bytes: 300,
            kernel_drops: 0,
        },
    ]
}

fn everything() -> Snapshot {
    Snapshot {
        streams: streams(),
        repeated_copies: Some(vec![0, 7, 0]),
        drop_reasons: Some(vec![
            ReasonDrops {
                cpu: 1,
                reason: "NO_SOCKET".into(),
                packets: 4,
                namespace_unknown: false,
            },
            ReasonDrops {
                cpu: 1,
                reason: "NOT_SPECIFIED".into(),
                packets: 6,
                namespace_unknown: true,
            },
        ]),
        flows: Some(FlowCounts {
            seen: 5,
            split: Some(1),
            unexpected: Some(2),
            tracked: 3,
            untracked_packets: 9,
        }),
        cpus: Some(vec![
            CpuCounters {
                cpu: 0,
                net_rx: 100,
                net_tx: 5,
                softnet: Some(Softnet {
                    processed: 90,
                    dropped: 1,
                    time_squeeze: 2,
                    received_rps: 3,
                    flow_limit_count: 0,
                }),
            },
            CpuCounters {
                cpu: 1,
                net_rx: 200,
                net_tx: 6,
                softnet: None,
            },
        ]),
    }
}

fn render(snap: Snapshot, format: Format) -> String {
    let source = move || snap.clone();
    Exporter::new(description(), &source).render(format)
}

const STREAM: &str = r#"interface="eth0",vantage="queue",direction="rxtx""#;

#[test]
fn text_exposition_of_the_streams() {
    let snap = Snapshot {
        streams: streams(),
        ..Snapshot::default()
    };
    let text = render(snap, Format::Text);
    let version = env!("CARGO_PKG_VERSION");
    let expected = format!(
        "# HELP rxtxcpu_packets_total Packets captured on the stream (its cpu, queue or numa node).
# TYPE rxtxcpu_packets_total counter
rxtxcpu_packets_total{{{STREAM},stream=\"0\"}} 10
rxtxcpu_packets_total{{{STREAM},stream=\"1\"}} 20
rxtxcpu_packets_total{{{STREAM},stream=\"noqueue\"}} 3
# HELP rxtxcpu_bytes_total Bytes of the packets captured on the stream, as on the wire.
# TYPE rxtxcpu_bytes_total counter
rxtxcpu_bytes_total{{{STREAM},stream=\"0\"}} 1000
rxtxcpu_bytes_total{{{STREAM},stream=\"1\"}} 2000
rxtxcpu_bytes_total{{{STREAM},stream=\"noqueue\"}} 300
# HELP rxtxcpu_kernel_drops_total Packets the kernel dropped for the stream because its ring was full.
# TYPE rxtxcpu_kernel_drops_total counter
rxtxcpu_kernel_drops_total{{{STREAM},stream=\"0\"}} 1
rxtxcpu_kernel_drops_total{{{STREAM},stream=\"1\"}} 0
rxtxcpu_kernel_drops_total{{{STREAM},stream=\"noqueue\"}} 0
# HELP rxtxcpu_build_info The program's version.
# TYPE rxtxcpu_build_info gauge
rxtxcpu_build_info{{version=\"{version}\"}} 1
# HELP rxtxcpu_capture_start_time_seconds When the capture started, in seconds since the epoch.
# TYPE rxtxcpu_capture_start_time_seconds gauge
rxtxcpu_capture_start_time_seconds 1765000000.25
"
    );
    assert_eq!(text, expected);
}

#[test]
fn openmetrics_exposition_names_families_without_suffixes_and_ends_with_eof() {
    let text = render(everything(), Format::OpenMetrics);
    for line in [
        "# TYPE rxtxcpu_packets counter",
        &format!("rxtxcpu_packets_total{{{STREAM},stream=\"1\"}} 20"),
        "# TYPE rxtxcpu_build info",
        &format!(
            "rxtxcpu_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
        "# TYPE rxtxcpu_capture_start_time_seconds gauge",
        "# UNIT rxtxcpu_capture_start_time_seconds seconds",
        "rxtxcpu_capture_start_time_seconds 1765000000.25",
        "# TYPE rxtxcpu_flows_tracked gauge",
        "# TYPE rxtxcpu_flows_split gauge",
        "# TYPE rxtxcpu_flows_unexpected gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in\n{text}"
        );
    }
    assert!(text.ends_with("\n# EOF\n"), "{text}");
}

#[test]
fn optional_families_appear_with_their_snapshot_fields() {
    let text = render(everything(), Format::Text);
    for line in [
        format!("rxtxcpu_repeated_copies_total{{{STREAM},stream=\"1\"}} 7"),
        r#"rxtxcpu_kernel_drops_by_reason_total{interface="eth0",cpu="1",reason="NO_SOCKET"} 4"#
            .into(),
        // The report's drops of an unknown namespace, marked only there.
        r#"rxtxcpu_kernel_drops_by_reason_total{interface="eth0",cpu="1",reason="NOT_SPECIFIED",namespace_known="false"} 6"#
            .into(),
        format!("rxtxcpu_flows_seen_total{{{STREAM}}} 5"),
        format!("rxtxcpu_flows_split{{{STREAM}}} 1"),
        format!("rxtxcpu_flows_unexpected{{{STREAM}}} 2"),
        format!("rxtxcpu_flows_tracked{{{STREAM}}} 3"),
        format!("rxtxcpu_flows_untracked_packets_total{{{STREAM}}} 9"),
        r#"rxtxcpu_softirqs_total{cpu="0",type="NET_RX"} 100"#.into(),
        r#"rxtxcpu_softirqs_total{cpu="1",type="NET_TX"} 6"#.into(),
        r#"rxtxcpu_softnet_processed_total{cpu="0"} 90"#.into(),
        r#"rxtxcpu_softnet_dropped_total{cpu="0"} 1"#.into(),
        r#"rxtxcpu_softnet_times_squeezed_total{cpu="0"} 2"#.into(),
        r#"rxtxcpu_softnet_received_rps_total{cpu="0"} 3"#.into(),
        r#"rxtxcpu_softnet_flow_limit_count_total{cpu="0"} 0"#.into(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in\n{text}"
        );
    }
    // cpu1 has no softnet_stat line (offline): no softnet series for it.
    assert!(!text.contains(r#"rxtxcpu_softnet_processed_total{cpu="1"}"#));
    // Without the features, none of their families.
    let plain = render(
        Snapshot {
            streams: streams(),
            ..Snapshot::default()
        },
        Format::Text,
    );
    for name in ["repeated", "by_reason", "flows", "softirqs", "softnet"] {
        assert!(!plain.contains(name), "{name} in\n{plain}");
    }
}

#[test]
fn label_values_are_escaped() {
    let source = || Snapshot {
        streams: vec![StreamCounts::default()],
        ..Snapshot::default()
    };
    let d = Description {
        interface: "we\"ird\\if\n".into(),
        streams: vec!["0".into()],
        ..description()
    };
    let text = Exporter::new(d, &source).render(Format::Text);
    assert!(
        text.contains(r#"interface="we\"ird\\if\n""#),
        "label value not escaped:\n{text}"
    );
}

#[test]
fn negotiation() {
    use Format::*;
    // Prometheus 2.42's scrape Accept header.
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    for (accept, want) in [
        (None, Text),
        (Some(""), Text),
        (Some("*/*"), Text),
        (Some("text/plain"), Text),
        (Some(prometheus), OpenMetrics),
        (Some("application/openmetrics-text"), OpenMetrics),
        (
            Some("Application/OpenMetrics-Text; version=\"1.0.0\""),
            OpenMetrics,
        ),
        (
            Some("application/openmetrics-text;version=0.0.1"),
            OpenMetrics,
        ),
        // A version this server cannot write.
        (Some("application/openmetrics-text;version=2.0.0"), Text),
        (Some("application/openmetrics-text;q=0"), Text),
        (
            Some("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"),
            Text,
        ),
        (
            Some("text/plain;q=0.5, application/openmetrics-text;q=0.5"),
            OpenMetrics,
        ),
        (Some("application/json"), Text),
    ] {
        assert_eq!(Format::negotiate(accept), want, "Accept: {accept:?}");
    }
    assert_eq!(
        Text.content_type(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(
        OpenMetrics.content_type(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
}

#[test]
fn request_heads() {
    let ok = |head: &str| parse_request(head.as_bytes());
    assert_eq!(
        ok("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\naccept: */*\r\n\r\n"),
        Ok(Request {
            method: "GET".into(),
            path: "/metrics".into(),
            accept: Some("text/plain,*/*".into()),
            close: false,
        })
    );
    // What closes the connection after the answer: HTTP/1.0, the client
    // saying so, a body this server would not know the end of.
    let closes = |head: &str| ok(head).unwrap().close;
    assert!(closes("GET /metrics HTTP/1.0\r\n\r\n"));
    assert!(closes("GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n"));
    assert!(closes(
        "GET /metrics HTTP/1.1\r\nconnection: TE, Close\r\n\r\n"
    ));
    assert!(closes("GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\n"));
    assert!(closes(
        "GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    ));
    assert!(!closes(
        "GET /metrics HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"
    ));
    assert!(!closes(
        "GET /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    ));
    assert_eq!(
        ok("HEAD /metrics?x=1 HTTP/1.0\n\n").unwrap().path,
        "/metrics"
    );
    assert_eq!(
        ok("GET http://127.0.0.1:9101/metrics HTTP/1.1\r\n\r\n")
            .unwrap()
            .path,
        "/metrics"
    );
    assert_eq!(ok("POST / HTTP/1.1\r\n\r\n").unwrap().method, "POST");
    for bad in [
        "\r\n\r\n",
        "GET\r\n\r\n",
        "GET /metrics\r\n\r\n",
        "GET  /metrics HTTP/1.1\r\n\r\n",
        "GET /metrics HTTP/1.1 x\r\n\r\n",
        "GET /metrics FTP/1.1\r\n\r\n",
        "G(T /metrics HTTP/1.1\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nAccept: a\r\n folded\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "GET /met\x01rics HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(ok(bad), Err(400), "{bad:?}");
    }
    assert_eq!(ok("PRI * HTTP/2.0\r\n\r\n"), Err(505));
    assert_eq!(parse_request(b"GET /\xff HTTP/1.1\r\n\r\n"), Err(400));
}

fn head_of(response: &[u8]) -> (String, String) {
    let text = String::from_utf8(response.to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

#[test]
fn answers() {
    let source = || Snapshot {
        streams: streams(),
        ..Snapshot::default()
    };
    let exporter = Exporter::new(description(), &source);
    let req = |method: &str, path: &str| Request {
        method: method.into(),
        path: path.into(),
        accept: None,
        close: true,
    };
    let (head, body) = head_of(&answer(&req("GET", "/metrics"), &exporter));
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
    assert!(head.ends_with("\r\nConnection: close"), "{head}");
    assert!(body.starts_with("# HELP rxtxcpu_packets_total "));

    let (head_head, head_body) = head_of(&answer(&req("HEAD", "/metrics"), &exporter));
    assert_eq!(head_head, head, "HEAD answers GET's head");
    assert_eq!(head_body, "");

    let (head, body) = head_of(&answer(&req("GET", "/"), &exporter));
    assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
    assert_eq!(body, "404 not found\n");
    let (head, body) = head_of(&answer(&req("HEAD", "/other"), &exporter));
    assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Length: 14\r\n"), "{head}");
    assert_eq!(body, "");
    let (head, body) = head_of(&answer(&req("POST", "/metrics"), &exporter));
    assert!(
        head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nAllow: GET, HEAD\r\n"), "{head}");
    assert_eq!(body, "405 method not allowed\n");

    // A connection that stays open: no Connection header (HTTP/1.1's
    // default), the same answer otherwise.
    let kept = Request {
        close: false,
        ..req("GET", "/metrics")
    };
    let (kept_head, kept_body) = head_of(&answer(&kept, &exporter));
    assert!(
        !kept_head.to_ascii_lowercase().contains("connection"),
        "{kept_head}"
    );
    assert!(kept_head.starts_with("HTTP/1.1 200 OK\r\n"), "{kept_head}");
    assert!(kept_body.starts_with("# HELP rxtxcpu_packets_total "));
    let (head, _) = head_of(&answer(
        &Request {
            close: false,
            ..req("GET", "/")
        },
        &exporter,
    ));
    assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n") && !head.contains("Connection"));
}

#[test]
fn addresses() {
    let ok = |s: &str| parse_address(s).map(|a| a.to_string());
    assert_eq!(ok("9101").as_deref(), Some("127.0.0.1:9101"));
    assert_eq!(ok("65535").as_deref(), Some("127.0.0.1:65535"));
    assert_eq!(ok("0.0.0.0:9101").as_deref(), Some("0.0.0.0:9101"));
    assert_eq!(ok("192.0.2.7:80").as_deref(), Some("192.0.2.7:80"));
    assert_eq!(ok("[::1]:9101").as_deref(), Some("[::1]:9101"));
    assert_eq!(ok("[::]:9101").as_deref(), Some("[::]:9101"));
    assert_eq!(ok("[fe80::1]:1").as_deref(), Some("[fe80::1]:1"));
    for bad in [
        "",
        "0",
        "65536",
        "+9101",
        "-1",
        "09101x",
        "000009101",
        ":9101",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:0",
        "localhost:9101",
        "::1:9101",
        "[::1]",
        "[::1]9101",
        "[127.0.0.1]:9101",
        "1.2.3:9101",
        " 9101",
    ] {
        assert_eq!(ok(bad), None, "{bad:?}");
    }
}

#[test]
fn bind_error_message() {
    let addr = parse_address("127.0.0.1:9101").unwrap();
    let e = BindError {
        addr,
        why: crate::error::Why(std::io::Error::from_raw_os_error(libc::EADDRINUSE)),
    };
    assert_eq!(
        e.to_string(),
        "error binding 127.0.0.1:9101: Address in use"
    );
}

#[test]
fn unwrapping_32_bit_counters() {
    let mut u = Unwrap::default();
    assert_eq!(u.update(5), 5);
    assert_eq!(u.update(7), 7);
    assert_eq!(u.update(u64::from(u32::MAX)), u64::from(u32::MAX));
    // Wrapped past zero: counting on.
    assert_eq!(u.update(3), (1 << 32) + 3);
    assert_eq!(u.update(10), (1 << 32) + 10);
    assert_eq!(u.update(2), (2 << 32) + 2);
}

/// Linux 6.18, 2 cpus: 15 columns, the 13th the cpu's number.
const SOFTNET_2: &str = "\
002b77ef 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
000ff9ac 00000002 00000003 00000000 00000000 00000000 00000000 00000000 00000000 00000435 00000007 00000000 00000001 00000000 00000000
";

#[test]
fn softnet_lines() {
    let lines = parse_softnet(SOFTNET_2).unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].cpu, 0);
    assert_eq!(lines[0].counts.processed, 0x002b77ef);
    assert_eq!(lines[1].cpu, 1);
    assert_eq!(
        lines[1].counts,
        Softnet {
            processed: 0x000ff9ac,
            dropped: 2,
            time_squeeze: 3,
            received_rps: 0x435,
            flow_limit_count: 7,
        }
    );
    // Cpu 1 offline: the second line is cpu 2's, and says so.
    let gap = SOFTNET_2.replace(
        "00000000 00000001 00000000 00000000\n",
        "00000000 00000002 00000000 00000000\n",
    );
    assert_eq!(parse_softnet(&gap).unwrap()[1].cpu, 2);
    // An old kernel's 10 columns: cpus by line.
    let old = "00000010 00000001 00000002 00000000 00000000 00000000 00000000 00000000 00000000 00000005\n\
               00000020 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n";
    let lines = parse_softnet(old).unwrap();
    assert_eq!((lines[1].cpu, lines[1].counts.processed), (1, 0x20));
    assert_eq!(lines[0].counts.received_rps, 5);
    assert_eq!(lines[0].counts.flow_limit_count, 0);
    for bad in ["", "0000001g 0 0\n", "1 2\n"] {
        assert!(parse_softnet(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn kernel_cpus_from_files() {
    let dir = std::env::temp_dir().join(format!("rxtxcpu-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let softirqs = dir.join("softirqs");
    let softnet = dir.join("softnet_stat");
    std::fs::write(
        &softirqs,
        "       CPU0 CPU1 CPU2\n NET_TX: 1 2 3\n NET_RX: 4294967295 5 6\n",
    )
    .unwrap();
    std::fs::write(&softnet, SOFTNET_2).unwrap();
    let mut k = KernelCpus::open_paths(&softirqs, &softnet).unwrap();
    let first = k.read().unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(
        (first[0].cpu, first[0].net_rx, first[0].net_tx),
        (0, 4294967295, 1)
    );
    assert_eq!(first[1].softnet.unwrap().received_rps, 0x435);
    // cpu2 has no softnet_stat line.
    assert_eq!(first[2].softnet, None);
    // NET_RX of cpu0 wraps between two reads.
    std::fs::write(
        &softirqs,
        "       CPU0 CPU1 CPU2\n NET_TX: 1 2 3\n NET_RX: 9 5 6\n",
    )
    .unwrap();
    let second = k.read().unwrap();
    assert_eq!(second[0].net_rx, (1 << 32) + 9);
    std::fs::remove_dir_all(&dir).unwrap();
    // This machine's files parse.
    let mut real = KernelCpus::open().unwrap();
    let cpus = real.read().unwrap();
    assert!(!cpus.is_empty());
    assert!(cpus.iter().any(|c| c.softnet.is_some()));
}
