//! --path: each flow's queue, driver cpu, application cpu and process,
//! from the program's own eBPF probes, against the steering
//! configuration. Exact per flow: pinned senders and readers on a veth
//! pair in namespaces of the test's own.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use serde_json::{json, Value};

use common::*;

const N: usize = 200;

/// The test process's name as the kernel keeps it (what the probes
/// report with its pid).
fn me() -> String {
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    format!("{}[{}]", comm.trim(), std::process::id())
}

/// The flow of a JSON report from `src`.
fn flow<'a>(r: &'a Value, src: &str) -> &'a Value {
    r["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .find(|f| f["src"] == src)
        .unwrap_or_else(|| panic!("no flow from {src}: {r}"))
}

/// Two queues each way; a's XPS sends cpu0's packets on tx-1 and cpu1's on
/// tx-0 (so b's packets from cpu0 carry queue_mapping 1: recorded rx-0).
fn pair() -> (Netns, Netns, Veth, Veth) {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = veth_pair_with_queues(&a, &b, 2);
    set_sysfs(&a, &va.ifname, "queues/tx-0/xps_cpus", "2");
    set_sysfs(&a, &va.ifname, "queues/tx-1/xps_cpus", "1");
    (a, b, va, vb)
}

/// N datagrams from each cpu, from a thread pinned to it: cpu c sends
/// from va's port 6000 + c to vb's port 5000 + c.
fn send_from_both_cpus(a: &Netns, va: &Veth, vb: &Veth) {
    std::thread::scope(|s| {
        for cpu in 0..2u16 {
            s.spawn(move || {
                let sender = udp(a, (va.addr, 6000 + cpu), Some((vb.addr, 5000 + cpu)));
                pin_to_cpu(usize::from(cpu));
                for _ in 0..N {
                    sender.send(PAYLOAD).unwrap();
                }
            });
        }
    });
}

/// A UDP socket bound in `ns` to `addr:port`, connected to `peer` if
/// given.
fn udp(
    ns: &Netns,
    addr: (std::net::Ipv4Addr, u16),
    peer: Option<(std::net::Ipv4Addr, u16)>,
) -> UdpSocket {
    in_netns(ns, move || {
        let s = UdpSocket::bind(addr).unwrap();
        if let Some(p) = peer {
            s.connect(p).unwrap();
        }
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    })
}

/// RPS moves every packet the veth received on cpu0 to cpu1; the readers
/// read on cpu0. The connected reader's reads are its flow's (APP cpu0,
/// the test's process, RFS named: processed on cpu1, read on cpu0); the
/// unconnected one's cannot be told by flow (APP `-`, -v names the reads).
#[test]
fn receive_path_with_rps() {
    let (a, b, va, vb) = pair();
    set_sysfs(&b, &vb.ifname, "queues/rx-0/rps_cpus", "2");
    set_sysfs(&b, &vb.ifname, "queues/rx-1/rps_cpus", "2");
    let json_cap = Capture::start(&b, "rxcpu", &["--flows", "--path", "--json", &vb.ifname]);
    let text_cap = Capture::start(&b, "rxcpu", &["--flows", "--path", "-v", &vb.ifname]);
    let connected = udp(&b, (vb.addr, 5000), Some((va.addr, 6000)));
    let unconnected = udp(&b, (vb.addr, 5001), None);
    let sender = udp(&a, (va.addr, 6000), Some((vb.addr, 5000)));
    let other = udp(&a, (va.addr, 6001), Some((vb.addr, 5001)));
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_to_cpu(0);
            let mut buf = [0u8; 64];
            for _ in 0..N {
                connected.recv(&mut buf).unwrap();
                unconnected.recv(&mut buf).unwrap();
            }
        });
        s.spawn(|| {
            pin_to_cpu(0);
            for _ in 0..N {
                sender.send(PAYLOAD).unwrap();
                other.send(PAYLOAD).unwrap();
            }
        });
    });
    let n = N as u64;
    let f = json_cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r = f.json();
    let c = flow(&r, "192.0.2.1:6000");
    assert_eq!(c["streams"], json!({"1": n}), "{c}");
    assert_eq!(c["queues"], json!({"0": n}), "{c}");
    assert_eq!(c["driver_cpus"], json!({"0": n}), "{c}");
    assert_eq!(c["app_cpus"], json!({"0": n}), "{c}");
    assert_eq!(c["apps"], json!({ me(): n }), "{c}");
    assert_eq!(c["mismatches"], json!(["RFS"]), "{c}");
    assert_eq!(
        (&c["expected"], &c["by"]),
        (&json!(1), &json!("rps")),
        "{c}"
    );
    let u = flow(&r, "192.0.2.1:6001");
    assert_eq!(u["streams"], json!({"1": n}), "{u}");
    assert_eq!(u["driver_cpus"], json!({"0": n}), "{u}");
    assert_eq!(
        (&u["app_cpus"], &u["apps"]),
        (&json!({}), &json!({})),
        "{u}"
    );
    assert_eq!(u["mismatches"], json!([]), "{u}");
    // Flows with a mismatch come first.
    assert_eq!(r["flows"][0]["src"], "192.0.2.1:6000", "{r}");
    let p = &r["path"];
    assert_eq!(
        p["rx_queue_to_driver_cpu"],
        json!([{"from": 0, "to": 0, "packets": 2 * n}]),
        "{p}"
    );
    assert_eq!(
        p["driver_cpu_to_cpu"],
        json!([{"from": 0, "to": 1, "packets": 2 * n}]),
        "{p}"
    );
    assert_eq!(
        p["cpu_to_app_cpu"],
        json!([{"from": 1, "to": 0, "packets": n}]),
        "{p}"
    );
    let pid = std::process::id();
    let comm = me();
    let comm = comm.split('[').next().unwrap();
    assert_eq!(
        p["unattributed_reads"],
        json!([{"process": comm, "pid": pid, "cpu": 0, "reads": n}]),
        "{p}"
    );
    assert_eq!(r["flow_summary"]["mismatched"], 1, "{r}");

    let t = text_cap.interrupt();
    assert_eq!(t.status.code(), Some(0), "{t}");
    let row = t
        .stdout
        .lines()
        .find(|l| l.contains("192.0.2.1:6000"))
        .unwrap_or_else(|| panic!("{t}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[6..],
        [
            "rx-0:200",
            "cpu0:200",
            "cpu1:200",
            "cpu0:200",
            &format!("{}:200", me()),
            "cpu1",
            "rps",
            "RFS"
        ],
        "{t}"
    );
    assert!(
        t.stdout.contains(
            "Driver cpu -> processing cpu:\n  cpu0 -> cpu1: 400 packets (100.0% of cpu0's).\n"
        ),
        "{t}"
    );
    assert!(
        t.stderr.contains(&format!("reads of unconnected UDP sockets cannot be told apart by flow ({}[{pid}] on cpu0: 200 reads)", comm)),
        "{t}"
    );
}

/// Senders pinned to cpu0 and cpu1 on a veth whose XPS sends cpu0's
/// packets on tx-1 and cpu1's on tx-0: per flow the sending cpu and
/// process, the queue and the driver's cpu (a veth transmits on the
/// sender's cpu: no qdisc defers it).
#[test]
fn transmit_path_with_xps() {
    let (a, b, va, vb) = pair();
    let cap = Capture::start(&a, "txcpu", &["--flows", "--path", "--json", &va.ifname]);
    let sinks = [5000, 5001].map(|port| udp(&b, (vb.addr, port), None));
    send_from_both_cpus(&a, &va, &vb);
    let mut buf = [0u8; 64];
    for s in &sinks {
        for _ in 0..N {
            s.recv(&mut buf).unwrap();
        }
    }
    let n = N as u64;
    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r = f.json();
    for cpu in 0..2u16 {
        let c = flow(&r, &format!("192.0.2.1:{}", 6000 + cpu));
        let (id, queue) = (cpu.to_string(), (1 - cpu).to_string());
        assert_eq!(c["streams"], json!({ &id: n }), "{c}");
        assert_eq!(c["queues"], json!({ queue: n }), "{c}");
        assert_eq!(c["driver_cpus"], json!({ &id: n }), "{c}");
        assert_eq!(c["app_cpus"], json!({ &id: n }), "{c}");
        assert_eq!(c["apps"], json!({ me(): n }), "{c}");
        assert_eq!(c["mismatches"], json!([]), "{c}");
    }
    assert_eq!(
        r["path"]["app_cpu_to_tx_queue"],
        json!([{"from": 0, "to": 1, "packets": n}, {"from": 1, "to": 0, "packets": n}])
    );
    assert_eq!(
        r["path"]["tx_queue_to_driver_cpu"],
        json!([{"from": 0, "to": 1, "packets": n}, {"from": 1, "to": 0, "packets": n}])
    );
}

#[test]
fn path_needs_flows_an_interface_and_the_cpu_vantage() {
    check_usage_errors(&[
        ("rxtxcpu", &["--path", "lo"][..], "--path needs --flows."),
        (
            "rxcpu",
            &["--flows", "--path"][..],
            "--path needs an interface.",
        ),
        (
            "rxqueue",
            &["--flows", "--path", "lo"][..],
            "--path works in the cpu vantage only.",
        ),
        (
            "rxcpu",
            &["--flows", "--path", "--xdp", "lo"][..],
            "--path does not work with --xdp.",
        ),
    ]);
}

/// Without CAP_BPF and CAP_PERFMON: one line that says which privileges,
/// exit 1, before capturing.
#[test]
fn without_the_privileges_it_says_which() {
    let ns = Netns::new();
    assert_needs_bpf_privileges(
        &ns,
        &["--flows", "--path", "lo"],
        "--path",
        "the probes need",
    );
}

/// The programs are the kernel's to remove when the program dies,
/// however it dies: after SIGKILL none is left.
#[test]
fn nothing_left_after_sigkill() {
    if !bpftool_installed() {
        return;
    }
    let ns = Netns::new();
    let cap = Capture::start(&ns, "rxtxcpu", &["--flows", "--path", "lo"]);
    let ids = cap.bpf_programs();
    // Four receive entry points, two reads, two transmit stages.
    assert_eq!(ids.len(), 8, "{ids:?}");
    cap.kill_and_check_programs_freed(&ids);
}

/// A multi-queue tun records the queue each packet was written to
/// (skb_record_rx_queue): per flow the queue is exact, and the driver's
/// cpu is the writer's.
#[test]
fn multi_queue_tun_queue_per_flow() {
    let ns = Netns::new();
    let tun = MqTun::new(&ns, 4);
    let _sink = UdpSink::bind(&ns, tun.addr);
    let cap = Capture::start(&ns, "rxcpu", &["--flows", "--path", "--json", &tun.ifname]);
    for (queue, cpu) in [(0, 0), (1, 1), (2, 0), (3, 1)] {
        tun.write_udp(queue, cpu, 7000 + queue as u16, 10 + queue);
    }
    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r = f.json();
    for (queue, cpu) in [(0u64, 0u64), (1, 1), (2, 0), (3, 1)] {
        let c = flow(&r, &format!("{}:{}", tun.peer, 7000 + queue));
        let n = 10 + queue;
        assert_eq!(c["queues"], json!({ queue.to_string(): n }), "{c}");
        assert_eq!(c["driver_cpus"], json!({ cpu.to_string(): n }), "{c}");
        // Nothing moved them: processed where the writer handed them over.
        assert_eq!(c["streams"], json!({ cpu.to_string(): n }), "{c}");
    }
    assert_eq!(
        r["path"]["rx_queue_to_driver_cpu"],
        json!([
            {"from": 0, "to": 0, "packets": 10},
            {"from": 1, "to": 1, "packets": 11},
            {"from": 2, "to": 0, "packets": 12},
            {"from": 3, "to": 1, "packets": 13},
        ])
    );
}

/// TCP: each segment copied to the reader (pinned to cpu0) is its read,
/// seen with the segment (skb:skb_copy_datagram_iovec). Ping-pong, so
/// that every segment is copied once, by itself.
#[test]
fn tcp_reads_are_the_readers() {
    use std::io::{Read, Write};
    let (a, b, va, vb) = pair();
    let cap = Capture::start(&b, "rxcpu", &["--flows", "--path", "--json", &vb.ifname]);
    let listener = in_netns(&b, move || {
        std::net::TcpListener::bind((vb.addr, 5000)).unwrap()
    });
    let sport = std::sync::Mutex::new(0u16);
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_to_cpu(0);
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 100];
            for _ in 0..N {
                conn.read_exact(&mut buf).unwrap();
                conn.write_all(b"k").unwrap();
            }
        });
        s.spawn(|| {
            let mut conn = in_netns(&a, move || {
                pin_to_cpu(1);
                std::net::TcpStream::connect((vb.addr, 5000)).unwrap()
            });
            *sport.lock().unwrap() = conn.local_addr().unwrap().port();
            conn.set_nodelay(true).unwrap();
            pin_to_cpu(1);
            let mut k = [0u8; 1];
            for _ in 0..N {
                conn.write_all(&[7u8; 100]).unwrap();
                conn.read_exact(&mut k).unwrap();
            }
        });
    });
    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r = f.json();
    let c = flow(&r, &format!("{}:{}", va.addr, sport.lock().unwrap()));
    let n = N as u64;
    assert_eq!(c["app_cpus"], json!({"0": n}), "{c}");
    assert_eq!(c["apps"], json!({ me(): n }), "{c}");
    // The data came in on the sender's cpu1; an ACK of a's may go out
    // from cpu0's softirq (where the reader's reply arrived). Each packet
    // was processed where it came in (no RPS), and cpu1 sends on tx-0,
    // which records no receive queue on the other side, cpu0 on tx-1
    // (recorded: rx-0).
    assert_eq!(c["streams"], c["driver_cpus"], "{c}");
    let on = |cpu: &str| c["driver_cpus"][cpu].as_u64().unwrap_or(0);
    assert!(on("1") >= n, "{c}");
    let mut queues = serde_json::Map::new();
    if on("0") > 0 {
        queues.insert("0".into(), on("0").into());
    }
    queues.insert("none".into(), on("1").into());
    assert_eq!(c["queues"], Value::Object(queues), "{c}");
    assert_eq!(c["mismatches"], json!(["RFS"]), "{c}");
}

/// RFS on (rps_sock_flow_entries, rps_flow_cnt): the first datagram goes
/// where RPS sends it (cpu1: no read has recorded a cpu yet), every one
/// after it to the reader's cpu0, where the reader's reads recorded it.
/// Ping-pong, so each read comes before the next datagram. The flow is
/// not off RFS (it followed), and the matrices say what went where. A
/// global setting (restored): the machine is this test's alone.
#[test]
fn rfs_follows_the_reader() {
    let _alone = MachineLock::exclusive();
    let _rfs = Sysctl::set("/proc/sys/net/core/rps_sock_flow_entries", "4096");
    let (a, b, va, vb) = pair();
    for q in 0..2 {
        set_sysfs(&b, &vb.ifname, &format!("queues/rx-{q}/rps_cpus"), "2");
        set_sysfs(
            &b,
            &vb.ifname,
            &format!("queues/rx-{q}/rps_flow_cnt"),
            "256",
        );
    }
    let cap = Capture::start(&b, "rxcpu", &["--flows", "--path", "--json", &vb.ifname]);
    let reader = udp(&b, (vb.addr, 5000), Some((va.addr, 6000)));
    let sender = udp(&a, (va.addr, 6000), Some((vb.addr, 5000)));
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_to_cpu(0);
            let mut buf = [0u8; 64];
            for _ in 0..N {
                reader.recv(&mut buf).unwrap();
                reader.send(b"k").unwrap();
            }
        });
        s.spawn(|| {
            pin_to_cpu(0);
            let mut buf = [0u8; 8];
            for _ in 0..N {
                sender.send(PAYLOAD).unwrap();
                sender.recv(&mut buf).unwrap();
            }
        });
    });
    let n = N as u64;
    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r = f.json();
    let c = flow(&r, "192.0.2.1:6000");
    assert_eq!(c["streams"], json!({"0": n - 1, "1": 1}), "{c}");
    assert_eq!(c["driver_cpus"], json!({"0": n}), "{c}");
    assert_eq!(c["app_cpus"], json!({"0": n}), "{c}");
    assert_eq!(c["mismatches"], json!([]), "{c}");
    assert_eq!(c["by"], "rfs", "{c}");
    assert_eq!(
        r["path"]["cpu_to_app_cpu"],
        json!([{"from": 0, "to": 0, "packets": n - 1}, {"from": 1, "to": 0, "packets": 1}])
    );
}

/// The DROPS and APP cells of the text table's row from `src`.
fn drops_and_app(stdout: &str, src: &str) -> (String, String) {
    let row = flow_row(stdout, |c| c.get(1) == Some(&src));
    (row["DROPS"].clone(), row["APP"].clone())
}

/// No reader: datagrams to a port nobody listens on are read by no one
/// (APP `-`) and, with --drops, their row says why (NO_SOCKET, every
/// one). A connected socket whose receive buffer is full reads what it
/// queued and drops the rest (SOCKET_RCVBUFF): the two add up to what
/// was sent. The sender is pinned to cpu0 and the veth processes there
/// in order (no RPS), so once a datagram sent after them has been read,
/// every earlier one has been taken or dropped.
#[test]
fn no_reader_says_why_with_drops() {
    const CLOSED: u16 = 9;
    const SENT: usize = 2000;
    let (a, b, va, vb) = pair();
    let sink = UdpSink::bind(&b, vb.addr);
    let full = udp(&b, (vb.addr, 5000), Some((va.addr, 6001)));
    small_receive_buffer(&full);
    let args = ["--flows", "--path", "--drops"];
    let json_cap = Capture::start(&b, "rxcpu", &[&args[..], &["--json", &vb.ifname]].concat());
    let text_cap = Capture::start(&b, "rxcpu", &[&args[..], &[&vb.ifname]].concat());
    // Not connected: a connected socket would be told of the ICMP port
    // unreachables and refuse its next send.
    let closed = udp(&a, (va.addr, 6000), None);
    let flooder = udp(&a, (va.addr, 6001), Some((vb.addr, 5000)));
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_to_cpu(0);
            for _ in 0..N {
                closed.send_to(PAYLOAD, (vb.addr, CLOSED)).unwrap();
            }
            for _ in 0..SENT {
                flooder.send(PAYLOAD).unwrap();
            }
        });
    });
    udp_send(&a, 0, va.addr, vb.addr, 1);
    sink.expect(1);
    full.set_nonblocking(true).unwrap();
    let mut read = 0u64;
    let mut buf = [0u8; 64];
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_to_cpu(0);
            while full.recv(&mut buf).is_ok() {
                read += 1;
            }
        });
    });
    let dropped = SENT as u64 - read;
    assert!(read > 0 && dropped > 0, "{read} read of {SENT}");
    let n = N as u64;

    let f = json_cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r = f.json();
    let c = flow(&r, "192.0.2.1:6000");
    assert_eq!(c["packets"], n, "{c}");
    assert_eq!(c["driver_cpus"], json!({"0": n}), "{c}");
    assert_eq!(
        (&c["app_cpus"], &c["apps"]),
        (&json!({}), &json!({})),
        "{c}"
    );
    assert_eq!(c["drops"], json!({"NO_SOCKET": n}), "{c}");
    let u = flow(&r, "192.0.2.1:6001");
    assert_eq!(u["packets"], SENT as u64, "{u}");
    assert_eq!(u["app_cpus"], json!({"0": read}), "{u}");
    assert_eq!(u["apps"], json!({ me(): read }), "{u}");
    assert_eq!(u["drops"], json!({"SOCKET_RCVBUFF": dropped}), "{u}");

    let t = text_cap.interrupt();
    assert_eq!(t.status.code(), Some(0), "{t}");
    assert_eq!(
        drops_and_app(&t.stdout, "192.0.2.1:6000"),
        (format!("NO_SOCKET:{n}"), "-".to_string()),
        "{t}"
    );
    assert_eq!(
        drops_and_app(&t.stdout, "192.0.2.1:6001"),
        (format!("SOCKET_RCVBUFF:{dropped}"), format!("cpu0:{read}")),
        "{t}"
    );
}

/// GRO on the receiving veth: veth then hands packets to the stack from
/// its NAPI poll (veth_poll -> napi_gro_receive), on the sender's cpu,
/// instead of netif_rx. On this kernel (perf) net:napi_gro_receive_entry
/// alone fires for them, once per packet (netif_rx_entry and
/// netif_receive_skb_list_entry do not: gro_normal_list calls
/// netif_receive_skb_list_internal, after that tracepoint): each flow's
/// driver cpu is its sender's, every packet counted once. A socket's UDP
/// datagrams go through a veth's NAPI only with rx-udp-gro-forwarding
/// (veth_skb_is_eligible_for_gro); the local reader has no UDP_GRO, so
/// none is merged.
#[test]
fn gro_on_a_veth_is_seen_at_napi_gro_receive() {
    if !ethtool_installed() {
        return;
    }
    let (a, b, va, vb) = pair();
    #[rustfmt::skip]
    b.exec(&["ethtool", "-K", &vb.ifname, "gro", "on", "rx-udp-gro-forwarding", "on"]);
    set_sysfs(&b, &vb.ifname, "queues/rx-0/rps_cpus", "2");
    set_sysfs(&b, &vb.ifname, "queues/rx-1/rps_cpus", "2");
    let cap = Capture::start(&b, "rxcpu", &["--flows", "--path", "--json", &vb.ifname]);
    let readers = [0u16, 1].map(|i| udp(&b, (vb.addr, 5000 + i), Some((va.addr, 6000 + i))));
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_to_cpu(0);
            let mut buf = [0u8; 64];
            for r in &readers {
                for _ in 0..N {
                    r.recv(&mut buf).unwrap();
                }
            }
        });
        send_from_both_cpus(&a, &va, &vb);
    });
    let n = N as u64;
    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r = f.json();
    for cpu in 0..2u16 {
        let c = flow(&r, &format!("192.0.2.1:{}", 6000 + cpu));
        let id = cpu.to_string();
        assert_eq!(c["packets"], n, "{c}");
        assert_eq!(c["driver_cpus"], json!({ &id: n }), "{c}");
        assert_eq!(c["streams"], json!({"1": n}), "{c}");
        assert_eq!(c["app_cpus"], json!({"0": n}), "{c}");
        assert_eq!(c["mismatches"], json!(["RFS"]), "{c}");
    }
    // veth records no receive queue with NAPI either: cpu0's packets
    // left on tx-1 (read as rx-0), cpu1's on tx-0 (none).
    assert_eq!(
        r["path"]["rx_queue_to_driver_cpu"],
        json!([{"from": null, "to": 1, "packets": n}, {"from": 0, "to": 0, "packets": n}])
    );
}

/// Frames whose VLAN tags are still in them at the receive entry point
/// (sent through a packet socket: a device without VLAN offload leaves
/// them so too) and IPv6 packets with extension headers: each joins its
/// flow, its driver cpu the sender's, every packet once.
#[test]
fn tagged_frames_and_ipv6_extension_headers_join_their_flows() {
    let (a, b, va, vb) = pair();
    let sink = UdpSink::bind(&b, vb.addr);
    let cap = Capture::start(&b, "rxcpu", &["--flows", "--path", "--json", &vb.ifname]);
    let mac = |m: &str| -> Vec<u8> {
        m.split(':')
            .map(|x| u8::from_str_radix(x, 16).unwrap())
            .collect()
    };
    let eth = |tags: &[(u16, u16)], ethertype: u16, body: &[u8]| {
        let mut f = mac(&vb.mac);
        f.extend(mac(&va.mac));
        for &(tpid, id) in tags {
            f.extend(tpid.to_be_bytes());
            f.extend(id.to_be_bytes());
        }
        f.extend(ethertype.to_be_bytes());
        f.extend(body);
        f
    };
    // IPv6 from 2001:db8::1 to 2001:db8::2: extension headers `exts`
    // (type, bytes after the next-header byte), then UDP from `sport`.
    let ipv6 = |exts: &[(u8, &[u8])], sport: u16| {
        let mut rest = Vec::new();
        for (i, (_, body)) in exts.iter().enumerate() {
            rest.push(exts.get(i + 1).map_or(17, |e| e.0));
            rest.extend(*body);
        }
        rest.extend(sport.to_be_bytes());
        rest.extend([0, 9, 0, 8, 0, 0]);
        let mut p = vec![0x60, 0, 0, 0];
        p.extend((rest.len() as u16).to_be_bytes());
        p.extend([exts.first().map_or(17, |e| e.0), 64]);
        p.extend([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend(rest);
        p
    };
    // PadN options (hop-by-hop, destination options); a first fragment
    // (offset 0, more follow).
    let pad: &[u8] = &[0, 1, 4, 0, 0, 0, 0];
    let first_fragment: &[u8] = &[0, 0, 1, 0, 0, 0, 7];
    let udp = |sport| ipv4_udp(va.addr, sport, vb.addr, 9, PAYLOAD);
    let frames = [
        ("192.0.2.1:1001", eth(&[(0x8100, 5)], 0x0800, &udp(1001))),
        (
            "192.0.2.1:1002",
            eth(&[(0x88a8, 100), (0x8100, 5)], 0x0800, &udp(1002)),
        ),
        (
            "[2001:db8::1]:1003",
            eth(&[], 0x86dd, &ipv6(&[(0, pad)], 1003)),
        ),
        (
            "[2001:db8::1]:1004",
            eth(
                &[(0x8100, 7)],
                0x86dd,
                &ipv6(&[(0, pad), (60, pad), (44, first_fragment)], 1004),
            ),
        ),
    ];
    let n = 20;
    let all: Vec<Vec<u8>> = (0..n)
        .flat_map(|_| frames.iter().map(|(_, f)| f.clone()))
        .collect();
    send_frames(&a, 0, &va.ifname, all);
    // vb processes in order on cpu0 (no RPS): once a datagram sent after
    // the frames is read, every frame has been through the stack.
    udp_send(&a, 0, va.addr, vb.addr, 1);
    sink.expect(1);
    let f = cap.interrupt();
    assert_eq!(f.status.code(), Some(0), "{f}");
    let r = f.json();
    for (src, _) in &frames {
        let c = flow(&r, src);
        assert_eq!(c["packets"], n, "{c}");
        assert_eq!(c["streams"], json!({"0": n}), "{c}");
        assert_eq!(c["driver_cpus"], json!({"0": n}), "{c}");
    }
}
