use super::*;
use crate::live::proc::{CpuSample, CpuStats, CpuTime};
use crate::live::{StreamCount, Vantage};

pub(crate) fn header(vantage: Vantage) -> Header {
    Header {
        name: "rxtxcpu".into(),
        interface: "lo".into(),
        direction: "rxtx".into(),
        vantage,
    }
}

fn cs(cpu: u32, rx: u64, tx: u64, si: u64, total: u64) -> CpuSample {
    CpuSample {
        cpu,
        net_rx: rx,
        net_tx: tx,
        time: Some(CpuTime { softirq: si, total }),
    }
}

fn stream(id: u32, label: &str, packets: u64, bytes: u64, drops: u64) -> StreamCount {
    StreamCount {
        id,
        label: label.into(),
        packets,
        bytes,
        drops,
        repeated: None,
    }
}

/// Two cpus over 2 s: cpu0 carries 3/4 of the packets with one softirq
/// per packet; cpu1 runs 45k NET_RX/s for 500 packets/s and is marked.
pub(crate) fn pair() -> (Snapshot, Snapshot) {
    let a = Snapshot {
        elapsed: Duration::from_millis(63_000),
        streams: vec![
            stream(0, "cpu0", 1_000, 1_000_000, 0),
            stream(1, "cpu1", 500, 40_000, 0),
        ],
        cpus: Some(CpuStats(vec![
            cs(0, 50, 7, 10, 1000),
            cs(1, 9_000, 0, 20, 1000),
        ])),
        repeats: None,
        kernel_drops: None,
        flows: None,
    };
    let b = Snapshot {
        elapsed: Duration::from_millis(65_000),
        streams: vec![
            stream(0, "cpu0", 4_000, 4_750_000, 6),
            stream(1, "cpu1", 1_500, 120_000, 0),
        ],
        cpus: Some(CpuStats(vec![
            cs(0, 3_050, 7, 14, 1200),
            cs(1, 99_000, 0, 90, 1200),
        ])),
        repeats: None,
        kernel_drops: None,
        flows: Some(vec![
            ("udp 10.0.0.1:5000 > 10.0.0.2:9".into(), 3_000),
            ("icmp 10.0.0.1 > 10.0.0.2 \"echo\"".into(), 1_000),
        ]),
    };
    (a, b)
}

fn table(w: usize, h: usize) -> Vec<String> {
    let (a, b) = pair();
    render_table(&header(Vantage::Cpu), Some(&a), &b, w, h)
}

#[test]
fn table_wide() {
    assert_eq!(
        table(120, 24),
        [
            "rxtxcpu  interface lo  direction rxtx  vantage cpu  elapsed 0:01:05",
            "total  2000 pkt/s  15.3 Mbit/s  3.0 drops/s  5500 packets  6 dropped",
            "STREAM    PKT/S MBIT/S DROP/S  PACKETS NET_RX/S NET_TX/S SIRQ% SHARE",
            "cpu0       1500   15.0    3.0     4000     1500        0   2.0   75% [##############################..........]",
            "cpu1   !    500    0.3      0     1500    45000        0  35.0   25% [##########..............................]",
            "! more network softirqs than its packets explain (man page: --live)",
            " PKT/S  TOP FLOWS of the last 2 s",
            "  1500  udp 10.0.0.1:5000 > 10.0.0.2:9",
            "   500  icmp 10.0.0.1 > 10.0.0.2 \"echo\"",
        ]
    );
}

#[test]
fn table_80() {
    assert_eq!(
        table(80, 24),
        [
            "rxtxcpu  interface lo  direction rxtx  vantage cpu  elapsed 0:01:05",
            "total  2000 pkt/s  15.3 Mbit/s  3.0 drops/s  5500 packets  6 dropped",
            "STREAM    PKT/S MBIT/S DROP/S  PACKETS NET_RX/S NET_TX/S SIRQ% SHARE",
            "cpu0       1500   15.0    3.0     4000     1500        0   2.0   75% [#######..]",
            "cpu1   !    500    0.3      0     1500    45000        0  35.0   25% [##.......]",
            "! more network softirqs than its packets explain (man page: --live)",
            " PKT/S  TOP FLOWS of the last 2 s",
            "  1500  udp 10.0.0.1:5000 > 10.0.0.2:9",
            "   500  icmp 10.0.0.1 > 10.0.0.2 \"echo\"",
        ]
    );
}

#[test]
fn table_60() {
    assert_eq!(
        table(60, 24),
        [
            "interface lo  direction rxtx  vantage cpu  elapsed 0:01:05",
            "total  2000 pkt/s  15.3 Mbit/s  3.0 drops/s  5500 packets",
            "STREAM    PKT/S MBIT/S DROP/S  PACKETS NET_RX/S SIRQ% SHARE",
            "cpu0       1500   15.0    3.0     4000     1500   2.0   75%",
            "cpu1   !    500    0.3      0     1500    45000  35.0   25%",
            "! softirqs far above its packets",
            " PKT/S  TOP FLOWS of the last 2 s",
            "  1500  udp 10.0.0.1:5000 > 10.0.0.2:9",
            "   500  icmp 10.0.0.1 > 10.0.0.2 \"echo\"",
        ]
    );
}

#[test]
fn table_40() {
    assert_eq!(
        table(40, 24),
        [
            "lo  rxtx  cpu  0:01:05",
            "total  2000 pkt/s  3.0 drops/s",
            "STREAM    PKT/S DROP/S SIRQ% SHARE",
            "cpu0       1500    3.0   2.0   75%",
            "cpu1   !    500      0  35.0   25%",
            "! softirqs far above its packets",
            " PKT/S  TOP FLOWS of the last 2 s",
            "  1500  udp 10.0.0.1:5000 > 10.0.0.2:9",
            "   500  icmp 10.0.0.1 > 10.0.0.2 \"echo\"",
        ]
    );
}

/// Each column goes in the documented order as the width shrinks.
#[test]
fn columns_go_in_order() {
    let titles = |w| {
        table(w, 24)[2]
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let mut seen = Vec::new();
    for w in (1..=120).rev() {
        let t = titles(w);
        if seen.last() != Some(&t) {
            seen.push(t);
        }
    }
    let all = "STREAM PKT/S MBIT/S DROP/S PACKETS NET_RX/S NET_TX/S SIRQ% SHARE";
    let mut expect: Vec<&str> = all.split(' ').collect();
    let mut steps = vec![expect.clone()];
    for gone in [
        "NET_TX/S", "PACKETS", "MBIT/S", "NET_RX/S", "SIRQ%", "DROP/S", "SHARE",
    ] {
        expect.retain(|c| *c != gone);
        steps.push(expect.clone());
    }
    // Below STREAM and PKT/S the title line itself is cut.
    let full: Vec<Vec<String>> = seen
        .into_iter()
        .filter(|t| t.last().map(String::as_str) != Some("PKT"))
        .take_while(|t| t.len() >= 2 && t[1] == "PKT/S")
        .collect();
    let steps: Vec<Vec<String>> = steps
        .into_iter()
        .map(|s| s.into_iter().map(String::from).collect())
        .collect();
    assert_eq!(full, steps);
    // The bar is the first thing to go: at the widest layout without
    // it, every column is still there.
    let bar_gone = (1..=120).find(|&w| table(w, 24)[3].contains('[')).unwrap() - 1;
    assert_eq!(titles(bar_gone).len(), 9);
    assert_eq!(bar_gone, 68 + 3 + BAR_MIN - 1);
}

#[test]
fn nothing_wider_or_taller_than_the_screen() {
    let (a, b) = pair();
    let mut many = b.clone();
    many.streams = (0..40)
        .map(|i| stream(i, &format!("cpu{i}"), u64::from(i) * 1000, 0, 0))
        .collect();
    for v in [Vantage::Cpu, Vantage::Queue, Vantage::Numa] {
        for (p, c) in [(None, &b), (Some(&a), &b), (Some(&a), &many)] {
            for w in 0..=140 {
                for h in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 24, 50] {
                    let lines = render_table(&header(v), p, c, w, h);
                    assert!(lines.len() <= h, "{w}x{h}: {lines:?}");
                    for l in &lines {
                        assert!(l.chars().count() <= w, "{w}x{h}: {l:?}");
                        assert!(l.is_ascii() && !l.contains('\n'));
                    }
                }
            }
        }
    }
}

#[test]
fn first_draw_has_counts_and_no_rates() {
    let (a, _) = pair();
    let lines = render_table(&header(Vantage::Cpu), None, &a, 80, 24);
    assert_eq!(
        lines,
        [
            "rxtxcpu  interface lo  direction rxtx  vantage cpu  elapsed 0:01:03",
            "total  - pkt/s  - Mbit/s  - drops/s  1500 packets  0 dropped",
            "STREAM    PKT/S MBIT/S DROP/S  PACKETS NET_RX/S NET_TX/S SIRQ% SHARE",
            "cpu0          -      -      -     1000        -        -     -     - [         ]",
            "cpu1          -      -      -      500        -        -     -     - [         ]",
        ]
    );
}

#[test]
fn queue_vantage_has_no_softirq_columns() {
    let (mut a, mut b) = pair();
    for s in [&mut a, &mut b] {
        s.cpus = None;
        s.flows = None;
        for st in &mut s.streams {
            st.label = format!("queue {}", st.id);
        }
    }
    let lines = render_table(&header(Vantage::Queue), Some(&a), &b, 80, 24);
    assert_eq!(
        lines,
        [
            "rxtxcpu  interface lo  direction rxtx  vantage queue  elapsed 0:01:05",
            "total  2000 pkt/s  15.3 Mbit/s  3.0 drops/s  5500 packets  6 dropped",
            "STREAM   PKT/S MBIT/S DROP/S  PACKETS SHARE",
            "queue 0   1500   15.0    3.0     4000   75% [##########################........]",
            "queue 1    500    0.3      0     1500   25% [#########.........................]",
        ]
    );
    let plain = render_plain(&header(Vantage::Queue), Some(&a), &b);
    assert!(plain[0].starts_with("time=65.000 interval=2.000 stream=queue0 pps=1500.0"));
    assert!(!plain[0].contains("net_rx_ps"));
}

#[test]
fn numa_labels_widen_the_first_column() {
    let (mut a, mut b) = pair();
    for s in [&mut a, &mut b] {
        s.cpus = None;
        s.flows = None;
        for st in &mut s.streams {
            st.label = format!("numa node {}", st.id);
        }
    }
    let lines = render_table(&header(Vantage::Numa), Some(&a), &b, 60, 24);
    assert_eq!(lines[2], "STREAM       PKT/S MBIT/S DROP/S  PACKETS SHARE");
    assert_eq!(
        lines[3],
        "numa node 0   1500   15.0    3.0     4000   75% [########..]"
    );
    assert!(render_plain(&header(Vantage::Numa), Some(&a), &b)[1].contains(" stream=numa1 "));
}

#[test]
fn short_screen_shows_the_busiest_streams() {
    let (a, b) = pair();
    let mut p = a.clone();
    let mut c = b.clone();
    let rate = [5u64, 50, 1, 40, 3, 30];
    p.streams = (0..6)
        .map(|i| stream(i, &format!("cpu{i}"), 0, 0, 0))
        .collect();
    c.streams = (0..6)
        .map(|i| stream(i, &format!("cpu{i}"), rate[i as usize] * 2, 0, 0))
        .collect();
    p.cpus = None;
    c.cpus = None;
    c.flows = None;
    let lines = render_table(&header(Vantage::Cpu), Some(&p), &c, 60, 7);
    assert_eq!(lines.len(), 7);
    let rows: Vec<&str> = lines[3..6].iter().map(|l| &l[..4]).collect();
    // The three busiest, in cpu order.
    assert_eq!(rows, ["cpu1", "cpu3", "cpu5"]);
    assert_eq!(lines[6], "+3 quieter streams not shown");
    // Room for all: all, no note.
    assert_eq!(
        render_table(&header(Vantage::Cpu), Some(&p), &c, 60, 9).len(),
        9
    );
    // Too short for even the title: the header lines.
    let two = render_table(&header(Vantage::Cpu), Some(&p), &c, 60, 2);
    assert_eq!(
        two,
        [
            "interface lo  direction rxtx  vantage cpu  elapsed 0:01:05",
            "total  129 pkt/s  0.0 Mbit/s  0 drops/s  258 packets"
        ]
    );
}

#[test]
fn marked_rows_are_shown_first_when_short() {
    let (a, mut b) = pair();
    // With room for two rows of four: the marked cpu1, then the busiest
    // (cpu2), though cpu0 has more packets than cpu1.
    b.streams.push(stream(2, "cpu2", 100_000, 0, 0));
    b.streams.push(stream(3, "cpu3", 10, 0, 0));
    let lines = render_table(&header(Vantage::Cpu), Some(&a), &b, 80, 6);
    assert!(lines[3].starts_with("cpu1   !"), "{lines:?}");
    assert!(lines[4].starts_with("cpu2      50000"), "{lines:?}");
    assert_eq!(lines[5], "+2 quieter streams not shown");
}

/// Parses a plain line into its fields; the flow text (quoted, last)
/// comes back unescaped.
pub(crate) fn parse_plain(line: &str) -> Vec<(String, String)> {
    let (head, flow) = match line.split_once(" flow=\"") {
        Some((h, f)) => (h, Some(f.strip_suffix('"').unwrap())),
        None => (line, None),
    };
    let mut fields: Vec<(String, String)> = head
        .split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    if let Some(f) = flow {
        fields.push(("flow".into(), f.replace("\\\"", "\"").replace("\\\\", "\\")));
    }
    fields
}

#[test]
fn plain_lines() {
    let (a, b) = pair();
    let lines = render_plain(&header(Vantage::Cpu), Some(&a), &b);
    assert_eq!(
        lines,
        [
            "time=65.000 interval=2.000 stream=cpu0 pps=1500.0 mbps=15.000 drops_ps=3.0 share_pct=75.0 packets=4000 interval_packets=3000 drops=6 net_rx_ps=1500.0 net_tx_ps=0.0 softirq_pct=2.0 marked=0",
            "time=65.000 interval=2.000 stream=cpu1 pps=500.0 mbps=0.320 drops_ps=0.0 share_pct=25.0 packets=1500 interval_packets=1000 drops=0 net_rx_ps=45000.0 net_tx_ps=0.0 softirq_pct=35.0 marked=1",
            "time=65.000 interval=2.000 flow_rank=1 flow_packets=3000 flow_pps=1500.0 flow=\"udp 10.0.0.1:5000 > 10.0.0.2:9\"",
            "time=65.000 interval=2.000 flow_rank=2 flow_packets=1000 flow_pps=500.0 flow=\"icmp 10.0.0.1 > 10.0.0.2 \\\"echo\\\"\"",
        ]
    );
    let f = parse_plain(&lines[1]);
    let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "time",
            "interval",
            "stream",
            "pps",
            "mbps",
            "drops_ps",
            "share_pct",
            "packets",
            "interval_packets",
            "drops",
            "net_rx_ps",
            "net_tx_ps",
            "softirq_pct",
            "marked"
        ]
    );
    for (k, v) in &f {
        if k != "stream" {
            assert!(v.parse::<f64>().is_ok(), "{k}={v}");
        }
    }
    assert_eq!(
        parse_plain(&lines[3]).last().unwrap().1,
        "icmp 10.0.0.1 > 10.0.0.2 \"echo\""
    );
    // No interval yet: no lines.
    assert!(render_plain(&header(Vantage::Cpu), None, &a).is_empty());
}

#[test]
fn plain_unknown_values_are_dashes() {
    let (a, mut b) = pair();
    b.cpus.as_mut().unwrap().0[1].time = None;
    b.flows = None;
    let lines = render_plain(&header(Vantage::Cpu), Some(&a), &b);
    assert_eq!(lines.len(), 2);
    assert!(lines[1].ends_with(" net_rx_ps=45000.0 net_tx_ps=0.0 softirq_pct=- marked=1"));
}

#[test]
fn json_line() {
    let (a, b) = pair();
    let line = render_json(&header(Vantage::Cpu), Some(&a), &b).unwrap();
    assert!(!line.contains('\n'));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["time"], 65.0);
    assert_eq!(v["interval"], 2.0);
    assert_eq!(v["interface"], "lo");
    assert_eq!(v["direction"], "rxtx");
    assert_eq!(v["vantage"], "cpu");
    assert_eq!(v["total"]["packets"], 5500);
    assert_eq!(v["total"]["interval_packets"], 4000);
    assert_eq!(v["total"]["mbps"], 15.32);
    let s = v["streams"].as_array().unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0]["stream"], "cpu0");
    assert_eq!(s[0]["label"], "cpu0");
    assert_eq!(s[0]["pps"], 1500.0);
    assert_eq!(s[0]["share_pct"], 75.0);
    assert_eq!(s[0]["drops"], 6);
    assert_eq!(s[1]["net_rx_ps"], 45000.0);
    assert_eq!(s[1]["softirq_pct"], 35.0);
    assert_eq!(s[1]["marked"], true);
    let f = v["flows"].as_array().unwrap();
    assert_eq!(f[1]["flow"], "icmp 10.0.0.1 > 10.0.0.2 \"echo\"");
    assert_eq!(f[1]["packets"], 1000);
    assert_eq!(f[1]["pps"], 500.0);
    assert!(render_json(&header(Vantage::Cpu), None, &a).is_none());
}

#[test]
fn json_without_cpus_or_flows() {
    let (mut a, mut b) = pair();
    a.cpus = None;
    b.cpus = None;
    b.flows = None;
    let v: serde_json::Value =
        serde_json::from_str(&render_json(&header(Vantage::Queue), Some(&a), &b).unwrap()).unwrap();
    assert!(v.get("flows").is_none());
    assert!(v["streams"][0].get("net_rx_ps").is_none());
    assert_eq!(v["streams"][0]["stream"], "queue0");
    assert_eq!(v["vantage"], "queue");
}

/// The stream with no receive queue recorded is `noqueue` with a null id,
/// as in the report (not the id that stands for it inside, 4294967295).
#[test]
fn no_queue_stream_is_named_noqueue() {
    let (mut a, mut b) = pair();
    for s in [&mut a, &mut b] {
        s.cpus = None;
        s.flows = None;
        s.streams[1].id = crate::vantage::NO_ID;
        s.streams[1].label = "no queue".into();
    }
    let v: serde_json::Value =
        serde_json::from_str(&render_json(&header(Vantage::Queue), Some(&a), &b).unwrap()).unwrap();
    assert_eq!(v["streams"][1]["stream"], "noqueue");
    assert_eq!(v["streams"][1]["id"], serde_json::Value::Null);
    assert_eq!(v["streams"][0]["id"], 0);
    let plain = render_plain(&header(Vantage::Queue), Some(&a), &b);
    assert!(plain[1].contains(" stream=noqueue pps="), "{plain:?}");
}

#[test]
fn share_bars() {
    assert_eq!(share_bar(Some(0.5), 10), "#####.....");
    assert_eq!(share_bar(Some(0.0), 4), "....");
    assert_eq!(share_bar(Some(0.001), 4), "#...");
    assert_eq!(share_bar(Some(1.0), 4), "####");
    assert_eq!(share_bar(Some(2.0), 4), "####");
    assert_eq!(share_bar(None, 3), "   ");
}

#[test]
fn number_formats() {
    let cases = [
        (0.0, "0"),
        (0.04, "0.0"),
        (0.5, "0.5"),
        (9.94, "9.9"),
        (9.96, "10"),
        (999_999.4, "999999"),
        (999_999.6, "1.00M"),
        (12_345_678.0, "12.3M"),
        (999_400_000.0, "999M"),
        (999_600_000.0, "1.00G"),
        (1.5e15, "1.50P"),
        (1e21, "1000E"),
    ];
    for (v, s) in cases {
        assert_eq!(rate(v), s, "{v}");
        assert!(rate(v).len() <= 6);
    }
    assert_eq!(mbit(0.0), "0.0");
    assert_eq!(mbit(999.94), "999.9");
    assert_eq!(mbit(999.96), "1000");
    assert_eq!(mbit(40_000.0), "40000");
    assert_eq!(count(99_999_999), "99999999");
    assert_eq!(count(100_000_000), "100M");
    assert_eq!(count(u64::MAX), "18.4E");
    assert_eq!(clock(Duration::from_secs(0)), "0:00:00");
    assert_eq!(clock(Duration::from_millis(3_661_999)), "1:01:01");
    assert_eq!(clock(Duration::from_secs(100 * 3600)), "100:00:00");
    assert_eq!(secs(Duration::from_millis(500)), "0.5 s");
    assert_eq!(secs(Duration::from_secs(2)), "2 s");
}

/// `pair()` with --repeats: cpu1 sent 800 copies of one packet in the
/// 2 s interval (and 200 before it).
fn with_repeats() -> (Snapshot, Snapshot) {
    let (mut a, mut b) = pair();
    for (s, r) in a.streams.iter_mut().zip([0, 200]) {
        s.repeated = Some(r);
    }
    for (s, r) in b.streams.iter_mut().zip([0, 1_000]) {
        s.repeated = Some(r);
    }
    b.flows = None;
    b.repeats = Some(vec![(
        "cpu1".into(),
        "tcp 192.0.2.1.54517 > 192.0.2.2.80: Flags [.], ack 1, win 6551, length 0".into(),
        800,
    )]);
    (a, b)
}

#[test]
fn repeats_in_the_table_the_lines_and_json() {
    let (a, b) = with_repeats();
    let h = header(Vantage::Cpu);
    assert_eq!(
        render_table(&h, Some(&a), &b, 100, 24),
        [
            "rxtxcpu  interface lo  direction rxtx  vantage cpu  elapsed 0:01:05",
            "total  2000 pkt/s  15.3 Mbit/s  3.0 drops/s  5500 packets  6 dropped",
            "STREAM    PKT/S MBIT/S DROP/S  PACKETS NET_RX/S NET_TX/S REPEAT/S SIRQ% SHARE",
            "cpu0       1500   15.0    3.0     4000     1500        0        0   2.0   75% [###############.....]",
            "cpu1   !    500    0.3      0     1500    45000        0      400  35.0   25% [#####...............]",
            "! more network softirqs than its packets explain (man page: --live)",
            "COPY/S  TOP REPEATING PACKET of the last 2 s",
            "   400  cpu1 tcp 192.0.2.1.54517 > 192.0.2.2.80: Flags [.], ack 1, win 6551, length 0",
        ]
    );
    // Narrow: REPEAT/S outlasts NET_TX/S, PACKETS, MBIT/S and NET_RX/S.
    let narrow = render_table(&h, Some(&a), &b, 44, 24);
    assert_eq!(narrow[2], "STREAM    PKT/S DROP/S REPEAT/S SIRQ% SHARE");
    let plain = render_plain(&h, Some(&a), &b);
    assert!(
        plain[1].ends_with(" marked=1 repeat_ps=400.0 repeated=1000"),
        "{plain:?}"
    );
    assert_eq!(
        plain[2],
        "time=65.000 interval=2.000 repeat_stream=cpu1 repeat_copies=800 repeat_pps=400.0 \
         repeat=\"tcp 192.0.2.1.54517 > 192.0.2.2.80: Flags [.], ack 1, win 6551, length 0\""
    );
    let json: serde_json::Value =
        serde_json::from_str(&render_json(&h, Some(&a), &b).unwrap()).unwrap();
    assert_eq!(json["streams"][1]["repeat_ps"], 400.0);
    assert_eq!(json["streams"][1]["repeated"], 1000);
    assert_eq!(
        json["repeats"],
        serde_json::json!([{"packet": "tcp 192.0.2.1.54517 > 192.0.2.2.80: Flags [.], ack 1, win 6551, length 0",
                            "stream": "cpu1", "copies": 800, "pps": 400.0}])
    );
    // Without --repeats nothing of it.
    let (a, b) = pair();
    assert!(!render_table(&h, Some(&a), &b, 120, 24)[2].contains("REPEAT"));
    assert!(!render_plain(&h, Some(&a), &b)[0].contains("repeat"));
}

#[test]
fn kernel_drops_in_the_table_the_lines_and_json() {
    let (mut a, mut b) = pair();
    b.flows = None;
    a.kernel_drops = Some(vec![(1, "NO_SOCKET".into(), 100)]);
    b.kernel_drops = Some(vec![
        (1, "NO_SOCKET".into(), 900),
        (0, "SOCKET_RCVBUFF".into(), 10),
    ]);
    let h = header(Vantage::Cpu);
    let t = render_table(&h, Some(&a), &b, 100, 24);
    assert_eq!(
        t[2],
        "STREAM    PKT/S MBIT/S DROP/S  PACKETS NET_RX/S NET_TX/S  KDROP/S SIRQ% SHARE"
    );
    assert!(t[3].contains("        0      5.0   2.0"), "{t:?}");
    assert!(t[4].contains("        0      400  35.0"), "{t:?}");
    assert_eq!(
        t[6..],
        [
            "KDROP/S  TOP DROP REASON of the last 2 s",
            "    400  cpu1 NO_SOCKET"
        ]
    );
    let plain = render_plain(&h, Some(&a), &b);
    assert!(plain[1].ends_with(" kernel_drops_ps=400.0"), "{plain:?}");
    let json: serde_json::Value =
        serde_json::from_str(&render_json(&h, Some(&a), &b).unwrap()).unwrap();
    assert_eq!(json["streams"][0]["kernel_drops_ps"], 5.0);
    assert_eq!(
        json["kernel_drops"],
        serde_json::json!([{"cpu": "cpu1", "reason": "NO_SOCKET", "packets": 800, "pps": 400.0}])
    );
}
