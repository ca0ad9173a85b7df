//! `-c N` takes the first N packets in timestamp order across streams,
//! whichever ring handed its block over first: the report, the files
//! (per-stream pcap, the merged pcapng), and the flow table hold exactly
//! those. The traffic comes in rounds whose order is known: each round is
//! received (past every packet tap, so stamped) before the next is sent,
//! from senders pinned to alternating cpus.

mod common;

use std::net::IpAddr;

use serde_json::Value;

use common::*;

/// Rounds of `ROUND` datagrams, round r from cpu r % 2 with source port
/// `SPORT + r`.
const ROUNDS: u16 = 6;
const ROUND: usize = 10;
const SPORT: u16 = 1001;
/// Rounds 0 (cpu0), 1 (cpu1), 2 (cpu0) and half of 3 (cpu1): 20 on cpu0,
/// 15 on cpu1.
const COUNT: &str = "35";

/// Two namespaces joined by a veth pair; captures run on the receiving
/// end, where a packet is handled on the cpu that sent it (no RPS).
struct Pair {
    a: Netns,
    b: Netns,
    va: Veth,
    vb: Veth,
}

impl Pair {
    fn new() -> Pair {
        let (a, b) = (Netns::new(), Netns::new());
        let (va, vb) = veth_pair(&a, &b);
        Pair { a, b, va, vb }
    }

    /// A queue per cpu, XPS keeping each sender's frames on its own queue
    /// (native XDP runs in the receive queue's poll, on the cpu that
    /// scheduled it).
    fn with_queue_per_cpu() -> Pair {
        let (a, b) = (Netns::new(), Netns::new());
        let (va, vb) = veth_pair_with_queues(&a, &b, 2);
        set_sysfs(&a, &va.ifname, "queues/tx-0/xps_cpus", "1");
        set_sysfs(&a, &va.ifname, "queues/tx-1/xps_cpus", "2");
        Pair { a, b, va, vb }
    }

    /// Sends the rounds, each received before the next is sent.
    fn rounds(&self) {
        let sink = UdpSink::bind(&self.b, self.vb.addr);
        for r in 0..ROUNDS {
            udp_flow(
                &self.a,
                usize::from(r % 2),
                (IpAddr::V4(self.va.addr), SPORT + r),
                (IpAddr::V4(self.vb.addr), UDP_PORT),
                ROUND,
            );
            sink.expect(ROUND);
        }
    }
}

/// The UDP source port of an Ethernet/IPv4 frame.
fn sport(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[34], frame[35]])
}

/// Round `r`'s source port, `n` times.
fn round(r: u16, n: usize) -> Vec<u16> {
    vec![SPORT + r; n]
}

fn expected_ports(cpu: u32) -> Vec<u16> {
    match cpu {
        0 => [round(0, 10), round(2, 10)].concat(),
        _ => [round(1, 10), round(3, 5)].concat(),
    }
}

/// Count only: the report is the first 35 by time, 20 on cpu0 and 15 on
/// cpu1 (the kernel handing over cpu1's block first, or cpu0's with
/// rounds 0 and 2 in it, used to give other splits).
#[test]
fn count_only_takes_the_first_n_in_time_order() {
    let p = Pair::new();
    let cap = Capture::start(&p.b, "rxcpu", &["-c", COUNT, &p.vb.ifname]);
    p.rounds();
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
    f.assert_report(&[(0, 20), (1, 15)]);
}

/// -w: each cpu's file holds exactly its packets among the first 35, in
/// order; --flows counts exactly those (the JSON report, and its streams).
#[test]
fn count_with_files_and_flows_holds_exactly_the_first_n() {
    let p = Pair::new();
    let dir = TempDir::new();
    let out = dir.path("c.pcap");
    let cap = Capture::start(
        &p.b,
        "rxcpu",
        &["-c", COUNT, "-w", &out, "--flows=0", "--json", &p.vb.ifname],
    );
    p.rounds();
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r: Value = serde_json::from_str(&f.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object: {e}\n{f}"));
    assert_eq!(r["total"], 35, "{f}");
    let per: Vec<(u64, u64)> = r["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_u64().unwrap(), s["captured"].as_u64().unwrap()))
        .collect();
    assert_eq!(per, [(0, 20), (1, 15)], "{f}");
    for cpu in [0, 1] {
        let (_, packets) = read_pcap(&cpu_file(&out, cpu));
        let ports: Vec<u16> = packets.iter().map(|p| sport(&p.data)).collect();
        assert_eq!(ports, expected_ports(cpu), "cpu{cpu}\n{f}");
        assert!(packets.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    }
    let mut flows: Vec<(u16, Value)> = r["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .map(|fl| {
            let src = fl["src"].as_str().unwrap();
            let port: u16 = src.rsplit(':').next().unwrap().parse().unwrap();
            (port, fl["streams"].clone())
        })
        .collect();
    flows.sort_by_key(|(port, _)| *port);
    let want: Vec<(u16, Value)> = vec![
        (SPORT, serde_json::json!({"0": 10})),
        (SPORT + 1, serde_json::json!({"1": 10})),
        (SPORT + 2, serde_json::json!({"0": 10})),
        (SPORT + 3, serde_json::json!({"1": 5})),
    ];
    assert_eq!(flows, want, "{f}");
}

/// --pcapng: the merged file holds exactly the first 35, in time order,
/// 20 on cpu0's interface and 15 on cpu1's.
#[test]
fn count_with_pcapng_holds_exactly_the_first_n() {
    let p = Pair::new();
    let dir = TempDir::new();
    let out = dir.path("c.pcapng");
    let cap = Capture::start(
        &p.b,
        "rxcpu",
        &["-c", COUNT, "--pcapng", "-w", &out, &p.vb.ifname],
    );
    p.rounds();
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
    f.assert_report(&[(0, 20), (1, 15)]);
    let file = read_pcapng(std::fs::File::open(&out).unwrap());
    assert_eq!(file.packets.len(), 35, "{f}");
    let ports: Vec<u16> = file.packets.iter().map(|p| sport(&p.3)).collect();
    let want = [round(0, 10), round(1, 10), round(2, 10), round(3, 5)].concat();
    assert_eq!(ports, want, "{f}");
    for (iface, cpu) in [(0, 0), (1, 1)] {
        let on: Vec<u16> = file
            .packets
            .iter()
            .filter(|p| p.0 == iface)
            .map(|p| sport(&p.3))
            .collect();
        assert_eq!(on, expected_ports(cpu), "interface {iface}\n{f}");
    }
    assert!(file.packets.windows(2).all(|w| w[0].1 <= w[1].1), "{f}");
}

/// A stop before the count: every packet seen is counted and written,
/// the coordinator's last word waited for.
#[test]
fn signal_before_the_count_keeps_every_packet() {
    let p = Pair::new();
    let dir = TempDir::new();
    let out = dir.path("s.pcap");
    let cap = Capture::start(&p.b, "rxcpu", &["-c", "1000", "-w", &out, &p.vb.ifname]);
    p.rounds();
    cap.signal(Signal::SIGINT);
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
    f.assert_report(&[(0, 30), (1, 30)]);
    assert_files_match_report(&f, &out, |_, _| {});
}

/// The queue vantage: queues written one after the other, each received
/// before the next: -c 6 is queue 0's 5 and queue 1's first.
#[test]
fn count_across_queues_follows_time() {
    let ns = Netns::new();
    let tun = MqTun::new(&ns, 4);
    let cap = Capture::start(&ns, "rxqueue", &["-c", "6", &tun.ifname]);
    let sink = UdpSink::bind(&ns, tun.addr);
    for q in 0..4 {
        tun.write_udp(q, q % 2, 2000, 5);
        sink.expect(5);
    }
    let f = cap.wait();
    assert_eq!(f.status.code(), Some(0), "{f}");
    f.assert_queue_report(&[(0, 5), (1, 1), (2, 0), (3, 0)], Some(0));
}

/// --xdp counts in the program, a slot of a shared budget per frame as it
/// reaches the hook: the first N in arrival order, the same cut.
#[test]
fn xdp_count_takes_the_first_n_in_time_order() {
    let p = Pair::with_queue_per_cpu();
    let dir = TempDir::new();
    let out = dir.path("x.pcap");
    let count = Capture::start(&p.b, "rxcpu", &["--xdp", "-c", COUNT, &p.vb.ifname]);
    p.rounds();
    let f = count.wait();
    f.assert_report(&[(0, 20), (1, 15)]);
    let files = Capture::start(
        &p.b,
        "rxcpu",
        &["--xdp", "-c", COUNT, "-w", &out, &p.vb.ifname],
    );
    p.rounds();
    let f = files.wait();
    f.assert_report(&[(0, 20), (1, 15)]);
    for cpu in [0, 1] {
        let (_, packets) = read_pcap(&cpu_file(&out, cpu));
        let ports: Vec<u16> = packets.iter().map(|p| sport(&p.data)).collect();
        assert_eq!(ports, expected_ports(cpu), "cpu{cpu}\n{f}");
    }
}
