//! Expected versus observed (--flows with the steering configuration read
//! at the start: RPS, RFS, XPS) and the RSS hash queries (--rss-hash).

mod common;

use std::net::IpAddr;

use serde_json::Value;

use common::*;

/// Microsoft's "Verifying the RSS hash calculation" vectors: IPv4 and IPv6,
/// with and without ports, with its key (the default).
const VECTORS: [(&str, u16, &str, u16, &str); 16] = [
    ("66.9.149.187", 0, "161.142.100.80", 0, "323e8fc2"),
    ("66.9.149.187", 2794, "161.142.100.80", 1766, "51ccc178"),
    ("199.92.111.2", 0, "65.69.140.83", 0, "d718262a"),
    ("199.92.111.2", 14230, "65.69.140.83", 4739, "c626b0ea"),
    ("24.19.198.95", 0, "12.22.207.184", 0, "d2d0a5de"),
    ("24.19.198.95", 12898, "12.22.207.184", 38024, "5c2b394a"),
    ("38.27.205.30", 0, "209.142.163.6", 0, "82989176"),
    ("38.27.205.30", 48228, "209.142.163.6", 2217, "afc7327f"),
    ("153.39.163.191", 0, "202.188.127.2", 0, "5d1809c5"),
    ("153.39.163.191", 44251, "202.188.127.2", 1303, "10e828a2"),
    (
        "3ffe:2501:200:1fff::7",
        0,
        "3ffe:2501:200:3::1",
        0,
        "2cc18cd5",
    ),
    (
        "3ffe:2501:200:1fff::7",
        2794,
        "3ffe:2501:200:3::1",
        1766,
        "40207d3d",
    ),
    (
        "3ffe:501:8::260:97ff:fe40:efab",
        0,
        "ff02::1",
        0,
        "0f0c461c",
    ),
    (
        "3ffe:501:8::260:97ff:fe40:efab",
        14230,
        "ff02::1",
        4739,
        "dde51bbf",
    ),
    (
        "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
        0,
        "fe80::200:f8ff:fe21:67cf",
        0,
        "4b61e985",
    ),
    (
        "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
        44251,
        "fe80::200:f8ff:fe21:67cf",
        38024,
        "02d1feef",
    ),
];

#[test]
fn rss_hash_of_the_microsoft_vectors() {
    for (src, sport, dst, dport, want) in VECTORS {
        let arg = format!("--rss-hash={src},{sport},{dst},{dport}");
        let f = run("rxtxcpu", &[&arg]);
        assert_eq!(f.status.code(), Some(0), "{f}");
        assert_eq!(f.stdout, format!("hash:  {want}\n"), "{arg}\n{f}");
        assert_eq!(f.stderr, "", "{f}");
    }
    // The key given explicitly is the same.
    let key = "6d:5a:56:da:25:5b:0e:c2:41:67:25:3d:43:a3:8f:b0:d0:ca:2b:cb:\
               ae:7b:30:b4:77:cb:2d:a3:80:30:f2:0c:6a:42:b7:3b:be:ac:01:fa";
    let f = run(
        "rxqueue",
        &[
            "--rss-hash",
            "66.9.149.187,2794,161.142.100.80,1766",
            "--rss-key",
            key,
        ],
    );
    assert_eq!(f.stdout, "hash:  51ccc178\n", "{f}");
}

#[test]
fn symmetric_key_hashes_both_directions_alike() {
    let key = vec!["6d:5a"; 20].join(":");
    let there = run(
        "rxtxcpu",
        &["--rss-hash=10.0.0.1,1234,10.0.0.2,80", "--rss-key", &key],
    );
    let back = run(
        "rxtxcpu",
        &["--rss-hash=10.0.0.2,80,10.0.0.1,1234", "--rss-key", &key],
    );
    assert_eq!(there.status.code(), Some(0), "{there}");
    assert_eq!(there.stdout, back.stdout);
    let v6 = run(
        "rxtxcpu",
        &["--rss-hash=2001:db8::1,1,2001:db8::2,2", "--rss-key", &key],
    );
    let v6back = run(
        "rxtxcpu",
        &["--rss-hash=2001:db8::2,2,2001:db8::1,1", "--rss-key", &key],
    );
    assert_eq!(v6.stdout, v6back.stdout);
}

#[test]
fn rss_hash_needs_no_capture_and_no_privileges() {
    let f = Capture::spawn_via(
        None,
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        &program("rxtxcpu"),
        &["--rss-hash=66.9.149.187,2794,161.142.100.80,1766"],
    )
    .wait();
    assert_eq!(
        (f.status.code(), f.stdout.as_str()),
        (Some(0), "hash:  51ccc178\n"),
        "{f}"
    );
    // An interface without RSS (veth, lo, tun): just the hash.
    let ns = Netns::new();
    let f = run_in(&ns, "rxtxcpu", &["--rss-hash=1.1.1.1,1,1.1.1.2,2", "lo"]);
    assert_eq!(f.status.code(), Some(0), "{f}");
    assert_eq!(f.stdout.lines().count(), 1, "{f}");
}

#[test]
fn rss_hash_usage_errors() {
    check_usage_errors(&[
        (
            "rxtxcpu",
            &["--rss-hash=1.2.3.4"][..],
            "Invalid rss hash tuple '1.2.3.4' (expected SRC,SPORT,DST,DPORT).",
        ),
        (
            "rxtxcpu",
            &["--rss-hash=1.2.3.4,1,x,2"],
            "Invalid rss hash address 'x' (expected an IPv4 or IPv6 address).",
        ),
        (
            "rxtxcpu",
            &["--rss-hash=1.2.3.4,70000,1.2.3.5,2"],
            "Invalid rss hash port '70000' (expected 0-65535).",
        ),
        (
            "rxtxcpu",
            &["--rss-hash=1.2.3.4,1,1.2.3.5,2", "--rss-key=zz"],
            "Invalid rss key 'zz' (expected hex bytes separated by ':', as 6d:5a:56:...).",
        ),
        (
            "rxtxcpu",
            &["--rss-key=6d:5a:6d:5a"],
            "--rss-key needs --rss-hash.",
        ),
    ]);
    let f = run(
        "rxtxcpu",
        &["--rss-hash=1.2.3.4,1,1.2.3.5,2", "--rss-key=6d:5a:6d:5a"],
    );
    assert_eq!(f.status.code(), Some(1), "{f}");
    assert!(f.stderr.contains("key length 4"), "{f}");
}

/// 64 UDP flows from a sender pinned to cpu0 across a veth whose receiving
/// end's rx-0 has `rps_mask`: where each flow landed, and where RPS said.
fn rps_flows(rps_mask: &str) -> (Value, Finished) {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    set_sysfs(&b, &vb.ifname, "queues/rx-0/rps_cpus", rps_mask);
    let sink = UdpSink::bind(&b, vb.addr);
    let cap = Capture::start(&b, "rxcpu", &["--flows=0", "--json", &vb.ifname]);
    let text = Capture::start(&b, "rxcpu", &["--flows=0", &vb.ifname]);
    for i in 0..64u16 {
        udp_flow(
            &a,
            0,
            (IpAddr::V4(va.addr), 4000 + i),
            (IpAddr::V4(vb.addr), UDP_PORT),
            2,
        );
        sink.expect(2);
    }
    (cap.interrupt().json(), text.interrupt())
}

fn assert_all_expected(r: &Value, by: &str) -> Vec<u64> {
    assert_all_expected_of(r, by, 64)
}

/// Checks that each of the `n` flows of `r` is on one stream, the one
/// expected `by` that mechanism; returns the streams.
fn assert_all_expected_of(r: &Value, by: &str, n: usize) -> Vec<u64> {
    let flows = r["flows"].as_array().unwrap();
    assert_eq!(flows.len(), n, "{r}");
    let mut on = Vec::new();
    for f in flows {
        let streams = f["streams"].as_object().unwrap();
        assert_eq!(streams.len(), 1, "{f}");
        let observed: u64 = streams.keys().next().unwrap().parse().unwrap();
        assert_eq!(f["by"], by, "{f}");
        assert_eq!(f["expected"], observed, "{f}");
        assert_eq!(f["unexpected"], false, "{f}");
        on.push(observed);
    }
    on
}

#[test]
fn rps_expectations_match_every_flow() {
    let (r, text) = rps_flows("3");
    let on = assert_all_expected(&r, "rps");
    // Both cpus carry some of the 64 flows.
    assert!(on.contains(&0) && on.contains(&1), "{r}");
    assert!(
        text.stdout
            .contains("0 flows off the expected stream (UNEXPECTED).\n"),
        "{text}"
    );
    assert!(!text.stdout.contains("UNEXPECTED\n"), "{text}");
    let header = text
        .stdout
        .lines()
        .find(|l| l.starts_with("PROTO"))
        .unwrap();
    assert!(header.ends_with("STREAMS  EXPECTED  BY"), "{header}");
}

#[test]
fn rps_to_cpu1_only() {
    let (r, _) = rps_flows("2");
    let on = assert_all_expected(&r, "rps");
    assert!(on.iter().all(|&c| c == 1), "{r}");
}

#[test]
fn without_steering_nothing_is_expected() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    let sink = UdpSink::bind(&b, vb.addr);
    let cap = Capture::start(&b, "rxcpu", &["--flows=0", "--json", &vb.ifname]);
    udp_flow(
        &a,
        1,
        (IpAddr::V4(va.addr), 4100),
        (IpAddr::V4(vb.addr), UDP_PORT),
        2,
    );
    sink.expect(2);
    let f = cap.interrupt();
    let r = f.json();
    let flow = &r["flows"][0];
    assert_eq!(
        (flow["by"].as_str(), &flow["expected"]),
        (Some("none"), &Value::Null),
        "{f}"
    );
    assert_eq!(flow["unexpected"], false);
    // lo and tun: no error either. On lo every flow goes both ways: no
    // single stream is expected, and the summary says so.
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxcpu", &["--flows", "lo"]);
    udp_send(&ns, 0, LO, LO, 1);
    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    assert!(
        f.stdout
            .contains("\nNo flow has an expected stream: nothing could be predicted.\n"),
        "{f}"
    );
    assert!(!f.stdout.contains("off the expected stream"), "{f}");
    let tun = MqTun::new(&ns, 2);
    let sink = UdpSink::bind(&ns, tun.addr);
    let cap = Capture::start(&ns, "rxqueue", &["--flows", "--json", &tun.ifname]);
    tun.write_udp(1, 0, 5000, 2);
    sink.expect(2);
    let r = cap.interrupt().json();
    assert_eq!(r["flows"][0]["by"], "none", "{r}");
    assert_eq!(r["flows"][0]["unexpected"], false);
}

/// Puts /proc/sys/net/core/rps_sock_flow_entries (global, in the initial
/// network namespace) back as it was, even when the test fails.
struct SockFlowEntries(String);

const SOCK_FLOW_ENTRIES: &str = "/proc/sys/net/core/rps_sock_flow_entries";

impl SockFlowEntries {
    fn set(value: &str) -> SockFlowEntries {
        let old = std::fs::read_to_string(SOCK_FLOW_ENTRIES).unwrap();
        std::fs::write(SOCK_FLOW_ENTRIES, value).unwrap();
        SockFlowEntries(old.trim().to_string())
    }
}

impl Drop for SockFlowEntries {
    fn drop(&mut self) {
        let _ = std::fs::write(SOCK_FLOW_ENTRIES, &self.0);
    }
}

/// RFS: flows follow the cpu where their socket is read, so they are
/// reported as `rfs`, never as unexpected, wherever they land.
#[test]
fn rfs_is_reported_as_such() {
    let _rfs = SockFlowEntries::set("4096");
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair(&a, &b);
    set_sysfs(&b, &vb.ifname, "queues/rx-0/rps_cpus", "3");
    set_sysfs(&b, &vb.ifname, "queues/rx-0/rps_flow_cnt", "1024");
    // The receiver reads on cpu1: RFS steers its flows there.
    let (name, addr) = (b.name.clone(), vb.addr);
    let (tx, rx) = std::sync::mpsc::channel();
    let receiver = std::thread::spawn(move || {
        pin_to_cpu(1);
        let ns_file = std::fs::File::open(format!("/var/run/netns/{name}")).unwrap();
        nix::sched::setns(&ns_file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let sock = std::net::UdpSocket::bind((addr, UDP_PORT)).unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 64];
        for _ in 0..32 {
            sock.recv(&mut buf).unwrap();
        }
    });
    rx.recv().unwrap();
    let cap = Capture::start(&b, "rxcpu", &["--flows=0", "--json", &vb.ifname]);
    for i in 0..16u16 {
        udp_flow(
            &a,
            0,
            (IpAddr::V4(va.addr), 4200 + i),
            (IpAddr::V4(vb.addr), UDP_PORT),
            2,
        );
    }
    receiver.join().unwrap();
    let f = cap.interrupt();
    let r = f.json();
    let flows = r["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 16, "{f}");
    for flow in flows {
        assert_eq!(flow["by"], "rfs", "{flow}");
        assert_eq!(flow["expected"], Value::Null, "{flow}");
        assert_eq!(flow["unexpected"], false, "{flow}");
    }
}

#[test]
fn xps_expectations_match_every_flow() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair_with_queues(&a, &b, 4);
    for (q, mask) in [(0, "1"), (1, "2"), (2, "0"), (3, "0")] {
        set_sysfs(&a, &va.ifname, &format!("queues/tx-{q}/xps_cpus"), mask);
    }
    let sink = UdpSink::bind(&b, vb.addr);
    let cap = Capture::start(&a, "txqueue", &["--flows=0", "--json", &va.ifname]);
    for i in 0..16u16 {
        let cpu = usize::from(i % 2);
        udp_flow(
            &a,
            cpu,
            (IpAddr::V4(va.addr), 4300 + i),
            (IpAddr::V4(vb.addr), UDP_PORT),
            2,
        );
        sink.expect(2);
    }
    let f = cap.interrupt();
    let r = f.json();
    let flows = r["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 16, "{f}");
    for flow in flows {
        let port: u64 = flow["src"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let queue = (port - 4300) % 2;
        assert_eq!(
            flow["streams"],
            serde_json::json!({ queue.to_string(): 2 }),
            "{flow}"
        );
        assert_eq!(flow["by"], "xps", "{flow}");
        assert_eq!(flow["expected"], queue, "{flow}");
        assert_eq!(flow["unexpected"], false, "{flow}");
    }
    assert!(f.stderr.contains("sender tap"), "{f}");
}

/// The veth: three queues; the sender's XPS puts cpu1's traffic
/// on tx-2, which the receiver sees as rx-1 (veth keeps the peer's
/// transmit queue, read one off). The receiver's rx-0 steers to cpu1,
/// rx-1 to cpu0. A capture by cpu cannot see which queue a packet came in
/// on, so with queues that steer differently it predicts nothing (never
/// rx-0's cpu1, which marked every flow UNEXPECTED though each went
/// exactly where its queue sends it), and says why with -v. With the same
/// map on every queue the queue does not matter, and the prediction holds.
#[test]
fn unknown_receive_queue_is_no_prediction() {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair_with_queues(&a, &b, 3);
    for (q, mask) in [(0, "0"), (1, "1"), (2, "2")] {
        set_sysfs(&a, &va.ifname, &format!("queues/tx-{q}/xps_cpus"), mask);
    }
    let run = |base: u16| {
        let sink = UdpSink::bind(&b, vb.addr);
        let cap = Capture::start(&b, "rxcpu", &["--flows=0", "--json", &vb.ifname]);
        let text = Capture::start(&b, "rxcpu", &["-v", "--flows=0", &vb.ifname]);
        for i in 0..8u16 {
            udp_flow(
                &a,
                1,
                (IpAddr::V4(va.addr), base + i),
                (IpAddr::V4(vb.addr), UDP_PORT),
                2,
            );
            sink.expect(2);
        }
        (cap.interrupt().json(), text.interrupt())
    };
    set_sysfs(&b, &vb.ifname, "queues/rx-0/rps_cpus", "2");
    set_sysfs(&b, &vb.ifname, "queues/rx-1/rps_cpus", "1");
    let (r, text) = run(4400);
    let flows = r["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 8, "{r}");
    for flow in flows {
        // rx-1's map: every flow on cpu0, as configured.
        assert_eq!(flow["streams"], serde_json::json!({"0": 2}), "{flow}");
        assert_eq!(flow["expected"], Value::Null, "{flow}");
        assert_eq!(flow["by"], "rps", "{flow}");
        assert_eq!(flow["unexpected"], false, "{flow}");
    }
    assert_eq!(r["flow_summary"]["predicted"], 0, "{r}");
    assert_eq!(r["flow_summary"]["unexpected"], 0, "{r}");
    assert!(!text.stdout.contains("UNEXPECTED"), "{text}");
    assert!(
        text.stdout
            .contains("\nNo flow has an expected stream: nothing could be predicted.\n"),
        "{text}"
    );
    for row in text.stdout.lines().filter(|l| l.starts_with("udp")) {
        assert!(row.ends_with("cpu0:2   -         rps"), "{row:?}\n{text}");
    }
    assert!(
        text.stderr.contains(&format!(
            "rxcpu: steering: {}: its receive queues steer differently (rps_cpus, \
             rps_flow_cnt or interrupt cpus) and a capture by cpu does not see the queue \
             a packet came in on: received flows have no expected stream\n",
            vb.ifname
        )),
        "{text}"
    );

    // The same map on every queue: predicted, and right.
    for q in 0..3 {
        set_sysfs(&b, &vb.ifname, &format!("queues/rx-{q}/rps_cpus"), "2");
    }
    let (r, text) = run(4500);
    let on = assert_all_expected_of(&r, "rps", 8);
    assert!(on.iter().all(|&c| c == 1), "{r}");
    assert_eq!(r["flow_summary"]["predicted"], 8, "{r}");
    assert_eq!(r["flow_summary"]["unexpected"], 0, "{r}");
    assert!(
        text.stdout
            .contains("\n0 flows off the expected stream (UNEXPECTED).\n"),
        "{text}"
    );
    assert!(!text.stderr.contains("steer differently"), "{text}");
}
