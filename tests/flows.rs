//! --flows and --json: which flows landed on which stream, split flows,
//! the flow key of every kind of frame, the bounded table, and the JSON
//! report parsed back. Exact counts from pinned senders, each test in its
//! own namespace.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Value;

use common::*;

fn interrupt(cap: Capture) -> Finished {
    cap.signal(Signal::SIGINT);
    cap.wait()
}

fn json(f: &Finished) -> Value {
    serde_json::from_str(&f.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object: {e}\n{f}"))
}

const LO4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The flows of a JSON report, by source port.
fn by_sport(report: &Value) -> std::collections::BTreeMap<u16, Value> {
    report["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .filter_map(|f| {
            let src = f["src"].as_str()?;
            let port: u16 = src.rsplit(':').next()?.parse().ok()?;
            Some((port, f.clone()))
        })
        .collect()
}

#[test]
fn udp_flows_stay_on_their_senders_cpu() {
    let ns = Netns::new();
    let _sink = UdpSink::bind(&ns, LO);
    let text = Capture::start(&ns, "rxtxcpu", &["--flows=0", "lo"]);
    let cap = Capture::start(&ns, "rxtxcpu", &["--flows=0", "--json", "lo"]);
    for i in 0..16u16 {
        let cpu = usize::from(i / 8);
        udp_flow(
            &ns,
            cpu,
            (LO4, 2000 + i),
            (LO4, UDP_PORT),
            usize::from(i % 8) + 1,
        );
    }
    let sent: u64 = (0..16u64).map(|i| 2 * (i % 8 + 1)).sum();
    let f = interrupt(cap);
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r = json(&f);
    assert_eq!(r["vantage"], "cpu");
    assert_eq!(r["interface"], "lo");
    assert_eq!(r["direction"], "rxtx");
    assert_eq!(r["total"], sent);
    let flows = by_sport(&r);
    assert_eq!(flows.len(), 16, "{f}");
    for i in 0..16u16 {
        let flow = &flows[&(2000 + i)];
        let cpu = i / 8;
        let packets = 2 * (u64::from(i % 8) + 1);
        assert_eq!(flow["proto"], "udp");
        assert_eq!(flow["src"], format!("127.0.0.1:{}", 2000 + i));
        assert_eq!(flow["dst"], format!("127.0.0.1:{UDP_PORT}"));
        assert_eq!(flow["packets"], packets, "{flow}");
        assert_eq!(
            flow["bytes"],
            packets * (14 + 20 + 8 + PAYLOAD.len() as u64),
            "{flow}"
        );
        assert_eq!(
            flow["streams"],
            serde_json::json!({ cpu.to_string(): packets }),
            "{flow}"
        );
        assert_eq!(flow["split"], false);
        assert!(
            flow["hash"]
                .as_str()
                .is_some_and(|h| h.starts_with("0x") && h.len() == 10),
            "{flow}"
        );
    }
    assert_eq!(r["flow_summary"]["seen"], 16);
    assert_eq!(r["flow_summary"]["split"], 0);

    // The text report of the same traffic: the same per-cpu numbers, then
    // the table.
    let t = interrupt(text);
    let report = Report::parse(
        &t.stdout[..t
            .stdout
            .find("PROTO")
            .unwrap_or_else(|| panic!("no flow table\n{t}"))],
    )
    .unwrap();
    let streams = r["streams"].as_array().unwrap();
    for s in streams {
        let cpu = s["id"].as_u64().unwrap() as u32;
        assert_eq!(s["captured"], report.per_cpu[&cpu], "{t}\n{f}");
        assert_eq!(s["dropped"], 0);
    }
    assert!(
        t.stdout
            .contains("16 flows seen, 0 on more than one stream (SPLIT).\n"),
        "{t}"
    );
    assert!(!t.stdout.contains(" SPLIT\n"), "{t}");
}

#[test]
fn one_flow_from_two_cpus_is_split() {
    let ns = Netns::new();
    let _sink = UdpSink::bind(&ns, LO);
    let cap = Capture::start(&ns, "rxtxcpu", &["--flows", "lo"]);
    udp_flow(&ns, 0, (LO4, 3000), (LO4, UDP_PORT), 3);
    udp_flow(&ns, 1, (LO4, 3000), (LO4, UDP_PORT), 2);
    let f = interrupt(cap);
    f.assert_report(&[(0, 6), (1, 4)]);
    let row = f
        .stdout
        .lines()
        .find(|l| l.contains("127.0.0.1:3000"))
        .unwrap_or_else(|| panic!("no row\n{f}"));
    assert!(
        row.contains("cpu0:6 cpu1:4") && row.ends_with("SPLIT"),
        "{row}"
    );
    assert!(
        f.stdout
            .contains("1 flow seen, 1 on more than one stream (SPLIT).\n"),
        "{f}"
    );
    assert!(
        f.stdout.contains("cpu0: 1 flow, 6 packets (60.0%).\n"),
        "{f}"
    );
}

#[test]
fn rps_keeps_each_flow_on_one_cpu() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    set_sysfs(&b, &vb.ifname, "queues/rx-0/rps_cpus", "3");
    let sink = UdpSink::bind(&b, vb.addr);
    let cap = Capture::start(&b, "rxcpu", &["--flows=0", "--json", &vb.ifname]);
    for i in 0..64u16 {
        udp_flow(
            &a,
            0,
            (IpAddr::V4(va.addr), 4000 + i),
            (IpAddr::V4(vb.addr), UDP_PORT),
            3,
        );
        sink.expect(3);
    }
    let f = interrupt(cap);
    let r = json(&f);
    let flows = by_sport(&r);
    assert_eq!(flows.len(), 64, "{f}");
    for flow in flows.values() {
        let streams = flow["streams"].as_object().unwrap();
        assert_eq!(streams.len(), 1, "RPS split a flow: {flow}");
        assert_eq!(streams.values().next().unwrap(), 3);
    }
    let per: u64 = r["flow_summary"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["flows"].as_u64().unwrap())
        .sum();
    assert_eq!(per, 64, "{f}");
    assert_eq!(r["flow_summary"]["split"], 0);
}

/// The table as README's RPS example prints it (93 columns and more) goes
/// whole into a pipe, for scripts, and fits a terminal of 80 columns, or
/// a narrower one with addresses shortened in the middle.
#[test]
fn flow_table_fits_the_terminal() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    set_sysfs(&b, &vb.ifname, "queues/rx-0/rps_cpus", "3");
    let sink = UdpSink::bind(&b, vb.addr);
    // (columns of the terminal, None: a pipe) -> the table on stdout.
    let table = |columns: Option<u16>| -> String {
        let args = ["-d", "rx", "--flows", &vb.ifname];
        let (cap, terminal) = match columns {
            None => (Capture::start(&b, "rxtxcpu", &args), None),
            Some(c) => {
                let mut pty = Pty::new(c, 24);
                let mut cap = Capture::spawn_with_stdout(&b, &args, pty.stdio());
                cap.wait_ready();
                (cap, Some(pty.lines()))
            }
        };
        for i in 0..4u16 {
            udp_flow(
                &a,
                0,
                (IpAddr::V4(va.addr), 40000 + i),
                (IpAddr::V4(vb.addr), UDP_PORT),
                3,
            );
            sink.expect(3);
        }
        let f = interrupt(cap);
        assert_eq!(f.status.code(), Some(0), "{f}");
        let out = terminal.map_or(f.stdout.clone(), |t| read_terminal(&t));
        assert!(out.contains("4 flows seen"), "{out}\n{f}");
        out
    };
    let widest = |t: &str| t.lines().map(|l| l.chars().count()).max().unwrap_or(0);

    let piped = table(None);
    assert!(widest(&piped) > 80, "{piped}");
    assert!(
        piped.lines().any(|l| l.starts_with("PROTO  SOURCE  ")),
        "{piped}"
    );
    assert!(piped.contains("  192.0.2.1:40000  "), "{piped}");

    let on_80 = table(Some(80));
    assert!(widest(&on_80) <= 80, "{on_80}");
    assert!(
        on_80.lines().any(|l| l.starts_with("PROTO SRC ")),
        "{on_80}"
    );
    assert!(on_80.contains(" 192.0.2.1:40000 "), "{on_80}");

    let on_70 = table(Some(70));
    assert!(widest(&on_70) <= 70, "{on_70}");
    assert!(on_70.contains("~"), "{on_70}");
    assert!(!on_70.contains("192.0.2.1:40000"), "{on_70}");
}

#[test]
fn flows_under_the_queue_vantage() {
    let ns = Netns::new();
    let tun = MqTun::new(&ns, 4);
    let sink = UdpSink::bind(&ns, tun.addr);
    let cap = Capture::start(&ns, "rxqueue", &["--flows=0", "--json", &tun.ifname]);
    let text = Capture::start(&ns, "rxqueue", &["--flows=0", &tun.ifname]);
    for q in 0..4 {
        tun.write_udp(q, q % 2, 1000 + q as u16, q + 1);
    }
    sink.expect(10);
    let r = json(&interrupt(cap));
    assert_eq!(r["vantage"], "queue");
    let flows = by_sport(&r);
    for q in 0..4u16 {
        let flow = &flows[&(1000 + q)];
        assert_eq!(flow["src"], format!("10.9.0.2:{}", 1000 + q));
        assert_eq!(
            flow["streams"],
            serde_json::json!({ q.to_string(): u64::from(q) + 1 })
        );
    }
    let t = interrupt(text);
    assert!(t.stdout.contains("queue2:3"), "{t}");
}

#[test]
fn flow_keys_of_ipv6_icmp_vlan_arp_and_tun() {
    // IPv6 and ICMP on lo.
    let ns = Netns::new();
    ns.exec(&["sysctl", "-q", "-w", "net.ipv6.conf.lo.disable_ipv6=0"]);
    let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let sink6 = in_netns(&ns, move || {
        std::net::UdpSocket::bind((lo6, UDP_PORT)).unwrap()
    });
    let cap = Capture::start(&ns, "rxtxcpu", &["--flows=0", "--json", "lo"]);
    udp_flow(&ns, 1, (lo6, 5000), (lo6, UDP_PORT), 2);
    ping(&ns, 0, LO, 1);
    let r = json(&interrupt(cap));
    drop(sink6);
    let flows = r["flows"].as_array().unwrap();
    let find = |proto: &str| {
        flows
            .iter()
            .find(|f| f["proto"] == proto)
            .unwrap_or_else(|| panic!("no {proto} flow in {r}"))
            .clone()
    };
    let udp6 = find("udp");
    assert_eq!(
        (udp6["src"].as_str(), udp6["dst"].as_str()),
        (Some("[::1]:5000"), Some("[::1]:9999"))
    );
    assert_eq!(
        (udp6["packets"].as_u64(), &udp6["streams"]),
        (Some(4), &serde_json::json!({"1": 4}))
    );
    let icmp = find("icmp");
    assert_eq!(
        (icmp["src"].as_str(), icmp["dst"].as_str()),
        (Some("127.0.0.1"), Some("127.0.0.1"))
    );
    assert_eq!(icmp["packets"], 4);

    // A VLAN-tagged UDP frame and ARP frames (one tagged) across a veth.
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let cap = Capture::start(&b, "rxcpu", &["--flows=0", "--json", &vb.ifname]);
    let mac = |m: &str| -> Vec<u8> {
        m.split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    };
    let eth = |ethertype: u16, vlan: Option<u16>, body: &[u8]| {
        let mut f = mac(&vb.mac);
        f.extend(mac(&va.mac));
        if let Some(id) = vlan {
            f.extend([0x81, 0x00]);
            f.extend(id.to_be_bytes());
        }
        f.extend(ethertype.to_be_bytes());
        f.extend(body);
        f
    };
    let udp = ipv4_udp(va.addr, 6000, vb.addr, UDP_PORT, PAYLOAD);
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend(mac(&va.mac));
    arp.extend(va.addr.octets());
    arp.extend([0; 6]);
    arp.extend(vb.addr.octets());
    send_frames(
        &a,
        0,
        &va.ifname,
        vec![
            eth(0x0800, Some(5), &udp),
            eth(0x0806, None, &arp),
            eth(0x0806, Some(7), &arp),
        ],
    );
    // The unanswered ARP requests and the tagged frame need no reply: wait
    // until all three were received.
    wait_until("vb to receive 3 packets", || {
        b.link_stat(&vb.ifname, "rx_packets") >= 3
    });
    let r = json(&interrupt(cap));
    let flows = r["flows"].as_array().unwrap();
    let tagged = flows
        .iter()
        .find(|f| f["proto"] == "udp")
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(tagged["src"], format!("{}:6000", va.addr));
    assert_eq!(tagged["dst"], format!("{}:{UDP_PORT}", vb.addr));
    let arps: Vec<&Value> = flows.iter().filter(|f| f["proto"] == "arp").collect();
    assert_eq!(arps.len(), 2, "one ARP flow per VLAN: {r}");
    for f in &arps {
        assert_eq!(f["src"], va.mac);
        assert_eq!(f["dst"], vb.mac);
    }
    let mut vlans: Vec<Value> = arps.iter().map(|f| f["vlan"].clone()).collect();
    vlans.sort_by_key(|v| v.to_string());
    assert_eq!(vlans, [serde_json::json!([7]), Value::Null]);

    // Raw IP from a tun device.
    let ns = Netns::new();
    let tun = MqTun::new(&ns, 1);
    let sink = UdpSink::bind(&ns, tun.addr);
    let cap = Capture::start(&ns, "rxcpu", &["--flows=0", "--json", &tun.ifname]);
    tun.write_udp(0, 1, 7000, 2);
    sink.expect(2);
    let r = json(&interrupt(cap));
    let f = &r["flows"][0];
    assert_eq!(
        (f["proto"].as_str(), f["src"].as_str()),
        (Some("udp"), Some("10.9.0.2:7000"))
    );
    assert_eq!(f["packets"], 2);
}

#[test]
fn flows_max_counts_the_rest_as_untracked() {
    let ns = Netns::new();
    let _sink = UdpSink::bind(&ns, LO);
    let cap = Capture::start(
        &ns,
        "rxtxcpu",
        &["-l0", "--flows=0", "--flows-max=5", "--json", "lo"],
    );
    let text = Capture::start(&ns, "rxtxcpu", &["-l0", "--flows=0", "--flows-max=5", "lo"]);
    for i in 0..8u16 {
        udp_flow(&ns, 0, (LO4, 2500 + i), (LO4, UDP_PORT), usize::from(i) + 1);
    }
    let r = json(&interrupt(cap));
    // The first five flows are tracked; flows 5, 6, 7 (6, 7, 8 datagrams,
    // twice each on lo) are not.
    assert_eq!(r["flow_summary"]["seen"], 5, "{r}");
    assert_eq!(r["flow_summary"]["max_flows"], 5);
    assert_eq!(
        r["flow_summary"]["untracked_packets"],
        2 * (6 + 7 + 8),
        "{r}"
    );
    assert_eq!(r["total"], 2 * (1..=8).sum::<u64>());
    let t = interrupt(text);
    assert!(
        t.stdout
            .contains("42 packets (2646 bytes) of flows past the limit of 5 flows not tracked.\n"),
        "{t}"
    );
}

#[test]
fn json_with_write_to_stdout_goes_to_stderr() {
    let ns = Netns::new();
    let cap = Capture::start(
        &ns,
        "rxtxcpu",
        &["-l1", "-w", "-", "--json", "--flows", "lo"],
    );
    udp_send(&ns, 1, LO, LO, 2);
    let f = interrupt(cap);
    assert_eq!(f.status.code(), Some(0), "{f}");
    // stdout is the pcap stream, whole.
    let file = scan_pcap(&f.stdout_bytes[..], true, |_| {}).unwrap();
    assert_eq!(file.packets, 4);
    let line = f.stderr.lines().last().unwrap();
    let r: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{f}"));
    assert_eq!(r["total"], 4);
    assert_eq!(
        r["streams"],
        serde_json::json!([{"id": 1, "name": "cpu1", "captured": 4, "dropped": 0}])
    );
}

#[test]
fn json_without_flows_and_per_node() {
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxnuma", &["--json", "lo"]);
    udp_send(&ns, 0, LO, LO, 3);
    let mut r = json(&interrupt(cap));
    // softnet_stat's changes count every device of the machine, which
    // tests beside this one flood: present, whatever they say.
    let softnet = r.as_object_mut().unwrap().remove("softnet");
    assert!(softnet.is_some_and(|s| s.is_array()), "{r}");
    assert_eq!(
        r,
        serde_json::json!({
            "vantage": "numa",
            "interface": "lo",
            "direction": "rxtx",
            "streams": [{"id": 0, "name": "node0", "captured": 6, "dropped": 0}],
            "total": 6,
            "device_drops": {
                "rx_dropped": 0,
                "rx_missed_errors": 0,
                "rx_fifo_errors": 0,
                "tx_dropped": 0
            }
        })
    );
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxqueue", &["--json", "lo"]);
    udp_send(&ns, 0, LO, LO, 1);
    let r = json(&interrupt(cap));
    assert_eq!(
        r["streams"],
        serde_json::json!([
            {"id": 0, "name": "queue0", "captured": 1, "dropped": 0},
            {"id": null, "name": "noqueue", "captured": 1, "dropped": 0}
        ])
    );
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxcpu", &["--json"]);
    udp_send(&ns, 1, LO, LO, 1);
    let r = json(&interrupt(cap));
    assert_eq!(r["interface"], Value::Null);
}

/// The stream of packets with no receive queue recorded has one name,
/// `noqueue`, wherever streams are named: the flow table, the report's
/// JSON (`name` beside `id`: null), each flow's `streams_by_name` (beside
/// `streams`, whose `none` key stays for the scripts that read it), the
/// flow summary, and the live view's lines.
#[test]
fn no_queue_stream_has_one_name() {
    let ns = Netns::new();
    let _sink = UdpSink::bind(&ns, LO);
    let text = Capture::start(&ns, "rxtxqueue", &["--flows=0", "lo"]);
    let cap = Capture::start(
        &ns,
        "rxtxqueue",
        &["--flows=0", "--json", "--live", "--interval=0.1", "lo"],
    );
    // Sent on lo's one transmit queue, received with no queue recorded.
    udp_flow(&ns, 0, (LO4, 2700), (LO4, UDP_PORT), 2);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let f = interrupt(cap);
    let r = json(&f);
    assert_eq!(
        r["streams"],
        serde_json::json!([
            {"id": 0, "name": "queue0", "captured": 2, "dropped": 0},
            {"id": null, "name": "noqueue", "captured": 2, "dropped": 0}
        ]),
        "{f}"
    );
    let flow = &by_sport(&r)[&2700];
    assert_eq!(flow["streams"], serde_json::json!({"0": 2, "none": 2}));
    assert_eq!(
        flow["streams_by_name"],
        serde_json::json!({"queue0": 2, "noqueue": 2})
    );
    let summary = &r["flow_summary"]["streams"];
    assert_eq!(summary[0]["name"], "queue0", "{r}");
    assert_eq!(summary[1]["name"], "noqueue", "{r}");
    assert_eq!(summary[1]["id"], Value::Null, "{r}");
    // The live view's JSON lines.
    let mut live = 0;
    for l in f.after_ready().lines().filter(|l| l.starts_with('{')) {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        let s = &v["streams"][1];
        assert_eq!(
            (&s["stream"], &s["id"]),
            (&Value::from("noqueue"), &Value::Null),
            "{l}"
        );
        live += 1;
    }
    assert!(live > 0, "no live lines\n{f}");

    let t = interrupt(text);
    let row = t
        .stdout
        .lines()
        .find(|l| l.contains("127.0.0.1:2700"))
        .unwrap_or_else(|| panic!("no row\n{t}"));
    assert!(row.contains("  queue0:2 noqueue:2"), "{row}");
    assert!(
        t.stdout.contains("\nnoqueue: 1 flow, 2 packets (50.0%).\n"),
        "{t}"
    );
}

#[test]
fn flow_usage_errors() {
    check_usage_errors(&[
        ("rxtxcpu", &["--flows=x"][..], "Invalid flow count 'x'."),
        ("rxtxcpu", &["--flows=-1"], "Invalid flow count '-1'."),
        (
            "rxtxcpu",
            &["--flows", "--flows-max=0"],
            "Invalid flow limit '0'.",
        ),
        ("rxtxcpu", &["--flows-max=10"], "--flows-max needs --flows."),
        (
            "rxtxcpu",
            &["--json=1"],
            "Option '--json' doesn't allow an argument.",
        ),
    ]);
}

/// --flows-idle: a flow idle longer than SECONDS leaves the table when a
/// later packet sweeps it; its packets are counted as expired, so the
/// totals stay exact, and the budget it held comes back.
#[test]
fn idle_flows_expire() {
    let ns = Netns::new();
    let _sink = UdpSink::bind(&ns, LO);
    #[rustfmt::skip]
    let cap = Capture::start(&ns, "rxtxcpu", &["--flows=0", "--flows-idle=1", "--flows-max=1",
                                               "--json", "--filter", "udp", "lo"]);
    udp_flow(&ns, 1, (LO4, 4000), (LO4, UDP_PORT), 10);
    // Idle time is what this test is about: let more than a second pass.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    udp_flow(&ns, 1, (LO4, 4001), (LO4, UDP_PORT), 5);
    let r = json(&interrupt(cap));
    let flows = by_sport(&r);
    assert_eq!(flows.keys().copied().collect::<Vec<_>>(), [4001], "{r}");
    assert_eq!(flows[&4001]["packets"], 10, "{r}");
    let s = &r["flow_summary"];
    assert_eq!(
        (&s["expired"], &s["expired_packets"]),
        (&Value::from(1), &Value::from(20)),
        "{r}"
    );
    // --flows-max=1: the expired flow gave its place to the new one.
    assert_eq!(s["untracked_packets"], 0, "{r}");
}

#[test]
fn bad_idle_times_are_usage_errors() {
    check_usage_errors(&[
        (
            "rxtxcpu",
            &["--flows-idle=5"][..],
            "--flows-idle needs --flows.",
        ),
        (
            "rxtxcpu",
            &["--flows", "--flows-idle=0"],
            "Invalid idle time '0' (expected 1 to 32767 seconds).",
        ),
        (
            "rxtxcpu",
            &["--flows", "--flows-idle=40000"],
            "Invalid idle time '40000' (expected 1 to 32767 seconds).",
        ),
        (
            "rxtxcpu",
            &["--flows", "--flows-idle=x"],
            "Invalid idle time 'x' (expected 1 to 32767 seconds).",
        ),
    ]);
}
