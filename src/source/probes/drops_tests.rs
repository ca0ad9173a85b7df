//! The drop probe against the running kernel, in namespaces of the
//! tests' own. Expected reason names are read from the kernel's BTF, as
//! the probe reads them.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use super::*;
use crate::source::testnet::{send_udp, udp_socket_drops, Ns, Pair};
use crate::sys::tracing::{HookKind, Via};

/// A port nobody listens on.
const CLOSED: u16 = 9;

fn btf() -> Btf {
    Btf::kernel().unwrap()
}

/// The name the kernel gives reason `SKB_DROP_REASON_<suffix>`, checked
/// against the kernel's enum (so a renamed reason fails here, by name).
fn kernel_reason(btf: &Btf, suffix: &str) -> String {
    let full = format!("SKB_DROP_REASON_{suffix}");
    let values = btf.enum_values("skb_drop_reason").unwrap();
    let (name, code) = values
        .iter()
        .find(|(n, _)| *n == full)
        .unwrap_or_else(|| panic!("no {full}"));
    let reasons = Reasons::from_btf(btf).unwrap();
    assert_eq!(
        reasons.name(*code as u32),
        Some(&name["SKB_DROP_REASON_".len()..])
    );
    reasons.name(*code as u32).unwrap().to_string()
}

/// The counting program for `filter`, loaded for `hook` (not attached),
/// with the maps it counts into as [`DropProbe`] makes them: the per-cpu
/// array of one slot per reason (and the others), and the one-word array
/// of the remembered device, which the program uses only if `remembered`.
fn load_counting(
    btf: &Btf,
    hook: &Hook,
    layout: &Layout,
    reasons: &Reasons,
    filter: &Filter,
    remembered: bool,
) -> (Program, Map, Map) {
    let counts = Map::create(
        MapType::PercpuArray,
        "t",
        4,
        VALUE_SIZE,
        reasons.slots() + 1,
        0,
    )
    .unwrap();
    let device = Map::create(MapType::Array, "d", 4, 8, 1, 0).unwrap();
    let fds = Fds {
        counts: counts.as_raw_fd(),
        flows: None,
        device: remembered.then(|| device.as_raw_fd()),
    };
    let prog = tracing::load(
        btf,
        hook,
        "t",
        &program(layout, filter, reasons, fds, false, true),
    )
    .unwrap();
    (prog, counts, device)
}

fn probe(btf: &Btf, ns: &Ns, ifindex: Option<u32>) -> DropProbe {
    probe_variant(btf, ns, ifindex, Variant::default())
}

fn probe_variant(btf: &Btf, ns: &Ns, ifindex: Option<u32>, variant: Variant) -> DropProbe {
    DropProbe::attach(
        btf,
        Filter {
            ifindex,
            netns: ns.inode(),
        },
        variant,
    )
    .unwrap()
}

/// (cpu, reason, packets) of the drops known to be the namespace's.
/// (Those whose namespace is unknown may come from any test running at
/// the same time: [`unread_datagrams_at_close_have_no_namespace`].)
fn counts(p: &DropProbe) -> Vec<(u32, String, u64)> {
    p.counts()
        .unwrap()
        .into_iter()
        .filter(|c| c.namespace_known)
        .map(|c| (c.cpu, c.reason.to_string(), c.packets))
        .collect()
}

#[test]
fn reasons_come_from_the_kernel() {
    let btf = btf();
    let r = Reasons::from_btf(&btf).unwrap();
    assert_eq!(r.name(2), Some("NOT_SPECIFIED"));
    assert_eq!(r.name(0), Some("NOT_DROPPED_YET"));
    assert_eq!(
        r.code("NO_SOCKET"),
        btf.enum_values("skb_drop_reason")
            .unwrap()
            .iter()
            .find(|(n, _)| n == "SKB_DROP_REASON_NO_SOCKET")
            .map(|v| v.1 as u32)
    );
    // The other slot follows the last reason, below SKB_DROP_REASON_MAX.
    assert!(r.name(r.other_slot()).is_none());
    assert_eq!(strip("SKB_DROP_REASON_SOCKET_RCVBUFF"), "SOCKET_RCVBUFF");
    assert_eq!(strip("SKB_CONSUMED"), "CONSUMED");
}

#[test]
fn layout_is_read_from_btf() {
    let btf = btf();
    let l = Layout::from_btf(&btf).unwrap();
    // kfree_skb(skb, location, reason[, rx_sk]) on this kernel (6.18).
    assert_eq!((l.skb_arg, l.reason_arg, l.rx_sk_arg), (0, 2, Some(3)));
    assert_eq!(
        i64::from(l.skb_dev),
        i64::from(btf.member("sk_buff", "dev").unwrap().offset)
    );
}

#[test]
fn program_jumps_stay_inside() {
    let btf = btf();
    let l = Layout::from_btf(&btf).unwrap();
    let r = Reasons::from_btf(&btf).unwrap();
    for typed in [true, false] {
        for ifindex in [Some(1), None] {
            for (flows, locations) in [(None, false), (Some(4), true)] {
                for device in [None, Some(5)] {
                    let fds = Fds {
                        counts: 3,
                        flows,
                        device,
                    };
                    let filter = Filter {
                        ifindex,
                        netns: u32::MAX,
                    };
                    let p = program(&l, &filter, &r, fds, locations, typed);
                    assert_eq!(p.last(), Some(&ebpf::exit()));
                }
            }
        }
    }
}

/// (a) 300 datagrams to a closed port on lo: NO_SOCKET 300 on the
/// sending cpu, and nothing else; for both kinds of program.
#[test]
fn no_socket_on_the_sending_cpu() {
    let btf = btf();
    let no_socket = kernel_reason(&btf, "NO_SOCKET");
    for (cpu, hook) in [(0, Hook::tp_btf(TRACEPOINT)), (1, Hook::raw_tp(TRACEPOINT))] {
        let ns = Ns::new();
        let p = DropProbe::attach_at(
            &btf,
            Filter {
                ifindex: Some(1),
                netns: ns.inode(),
            },
            Variant::default(),
            &hook,
        )
        .unwrap();
        assert_eq!(p.attached().hook(), &hook);
        ns.run(|| send_udp(cpu, "127.0.0.1", ("127.0.0.1", CLOSED), 300, 32));
        assert_eq!(counts(&p), vec![(cpu, no_socket.clone(), 300)], "{hook}");
        assert_eq!(p.run_stats().unwrap().recursion_misses, 0);
    }
}

/// (b) A socket that never reads, with the smallest receive buffer: its
/// drops column and SOCKET_RCVBUFF agree.
#[test]
fn socket_rcvbuff_equals_the_sockets_drops() {
    let btf = btf();
    let rcvbuff = kernel_reason(&btf, "SOCKET_RCVBUFF");
    let ns = Ns::new();
    let p = probe(&btf, &ns, Some(1));
    let drops = ns.run(|| {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        nix::sys::socket::setsockopt(&rx, nix::sys::socket::sockopt::RcvBuf, &1024).unwrap();
        let port = rx.local_addr().unwrap().port();
        send_udp(1, "127.0.0.1", ("127.0.0.1", port), 1000, 100);
        udp_socket_drops(port)
    });
    assert!(drops > 900, "only {drops} dropped");
    assert_eq!(counts(&p), vec![(1, rcvbuff, drops)]);
}

/// (c) Drops in another namespace are not counted, though its lo has the
/// same ifindex; nor drops on another interface of the same namespace;
/// and a veth end with the same ifindex as its peer counts only its own.
#[test]
fn other_namespaces_and_interfaces_are_not_counted() {
    let btf = btf();
    let no_socket = kernel_reason(&btf, "NO_SOCKET");
    let pair = Pair::new(1);
    let (va, vb) = (pair.a.ifindex("va"), pair.b.ifindex("vb"));
    // Each end got the first free ifindex of its own namespace.
    assert_eq!(va, vb);
    let a_lo = probe(&btf, &pair.a, Some(1));
    let a_va = probe(&btf, &pair.a, Some(va));
    let a_any = probe(&btf, &pair.a, None);
    let b_lo = probe(&btf, &pair.b, Some(1));
    let b_vb = probe(&btf, &pair.b, Some(vb));
    let b_any = probe(&btf, &pair.b, None);
    // In b: 40 to a closed port over lo, 70 arriving on vb from a.
    pair.b
        .run(|| send_udp(0, "127.0.0.1", ("127.0.0.1", CLOSED), 40, 8));
    pair.a
        .run(|| send_udp(0, "192.0.2.1", ("192.0.2.2", CLOSED), 70, 8));
    // In a: 5 over lo.
    pair.a
        .run(|| send_udp(1, "127.0.0.1", ("127.0.0.1", CLOSED), 5, 8));
    let r = |n| vec![(if n == 5 { 1 } else { 0 }, no_socket.clone(), n)];
    assert_eq!(counts(&a_lo), r(5));
    assert_eq!(counts(&a_any), r(5));
    assert_eq!(counts(&a_va), vec![]);
    assert_eq!(counts(&b_lo), r(40));
    assert_eq!(counts(&b_vb), r(70));
    assert_eq!(counts(&b_any), r(110));
}

/// Waits until program `id` no longer exists (a test elsewhere in this
/// process may hold a copy of the descriptor between fork and exec).
fn assert_gone(id: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tracing::program_exists(id).unwrap() {
        assert!(Instant::now() < deadline, "program {id} still exists");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// (d) The program is gone when the probe is dropped.
#[test]
fn program_is_gone_after_the_link_closes() {
    let btf = btf();
    let ns = Ns::new();
    let p = probe(&btf, &ns, Some(1));
    let id = p.program_id().unwrap();
    assert_eq!(p.attached().ids().unwrap().1, id);
    assert_eq!(p.attached().via(), Via::LinkCreate);
    assert_eq!(
        p.attached().to_string(),
        "tp_btf/kfree_skb (BPF_LINK_CREATE)"
    );
    assert!(tracing::program_exists(id).unwrap());
    drop(p);
    assert_gone(id);
}

/// Both attach commands work for tp_btf on this kernel (the fallback is
/// not dead code).
#[test]
fn raw_tracepoint_open_attaches_tp_btf() {
    let btf = btf();
    let ns = Ns::new();
    let filter = Filter {
        ifindex: Some(1),
        netns: ns.inode(),
    };
    let layout = Layout::from_btf(&btf).unwrap();
    let reasons = Reasons::from_btf(&btf).unwrap();
    let hook = Hook::tp_btf(TRACEPOINT);
    let (prog, _counts, _device) = load_counting(&btf, &hook, &layout, &reasons, &filter, false);
    let a = tracing::attach_via(&prog, &hook, Via::RawTracepointOpen).unwrap();
    assert_eq!(a.to_string(), "tp_btf/kfree_skb (BPF_RAW_TRACEPOINT_OPEN)");
    assert_eq!(a.hook().kind, HookKind::TpBtf);
}

/// The child half of [`program_is_gone_after_sigkill`]: attaches a probe,
/// prints its program id and waits to be killed.
#[test]
#[ignore = "run by program_is_gone_after_sigkill"]
fn hold_a_probe_until_killed() {
    if std::env::var_os("RXTXCPU_HOLD_PROBE").is_none() {
        return;
    }
    let p = DropProbe::attach(
        &btf(),
        Filter {
            ifindex: Some(1),
            netns: current_netns().unwrap(),
        },
        Variant::default(),
    )
    .unwrap();
    println!("prog_id={}", p.program_id().unwrap());
    std::thread::sleep(Duration::from_secs(60));
}

/// (d) ... and when the process holding it is killed.
#[test]
fn program_is_gone_after_sigkill() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            crate::sys::testutil::test_name(module_path!(), "hold_a_probe_until_killed").as_str(),
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RXTXCPU_HOLD_PROBE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let id: u32 = out
        .lines()
        .map_while(Result::ok)
        // libtest prints the test's name on the same line first.
        .find_map(|l| {
            l.split_once("prog_id=")
                .map(|(_, v)| v.trim().parse().unwrap())
        })
        .expect("the child printed no program id");
    assert!(tracing::program_exists(id).unwrap());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_gone(id);
}

/// Datagrams left unread when their socket closes: the kernel drops them
/// when it frees the socket (after an RCU grace period; NOT_SPECIFIED on
/// 6.18), the word of skb->dev holding UDP's dev_scratch and neither
/// skb->sk nor rx_sk set: skb_iif says which ifindex, but not whose, so
/// they are counted apart, by every namespace's probe on that ifindex.
/// (The receiving veth gets an ifindex of its own, so that other tests'
/// drops do not mix in.)
#[test]
#[ignore = "flaky: in about one run of three none of the datagrams is seen dropped within 10 s (to be understood with --drops)"]
fn unread_datagrams_at_close_have_no_namespace() {
    let btf = btf();
    let index = 7000 + std::process::id() % 1000;
    let pair = Pair::with_index(1, index);
    assert_eq!(pair.b.ifindex("vb"), index);
    let p = probe(&btf, &pair.b, Some(index));
    let q = probe(&btf, &pair.a, Some(index));
    let rx = pair.b.run(|| UdpSocket::bind("192.0.2.2:0").unwrap());
    let port = rx.local_addr().unwrap().port();
    pair.a
        .run(|| send_udp(1, "192.0.2.1", ("192.0.2.2", port), 10, 100));
    drop(rx);
    let unknown = |p: &DropProbe| -> u64 {
        let c = p.counts().unwrap();
        assert!(c.iter().all(|c| !c.namespace_known), "{c:?}");
        c.iter().map(|c| c.packets).sum()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while unknown(&p) < 10 || unknown(&q) < 10 {
        assert!(Instant::now() < deadline, "{:?}", p.counts());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!((unknown(&p), unknown(&q)), (10, 10));
}

/// Without CAP_BPF and CAP_PERFMON the error says it is a permission
/// problem; with exactly those two the probe works.
#[test]
fn privileges() {
    use crate::source::testnet::{limit_caps, CAP_BPF, CAP_PERFMON};
    let btf = btf();
    let ns = Ns::new();
    let filter = Filter {
        ifindex: Some(1),
        netns: ns.inode(),
    };
    let attach = |caps: &'static [u32]| {
        ns.run(|| {
            limit_caps(caps);
            DropProbe::attach(&btf, filter, Variant::default()).map(|p| p.attached().to_string())
        })
    };
    for caps in [&[][..], &[CAP_BPF], &[CAP_PERFMON]] {
        let e = attach(caps).unwrap_err();
        assert!(e.is_permission(), "{caps:?}: {e}");
        println!("{caps:?}: {e}");
    }
    assert_eq!(
        attach(&[CAP_BPF, CAP_PERFMON]).unwrap(),
        "tp_btf/kfree_skb (BPF_LINK_CREATE)"
    );
}

/// The probe's own cost per event (kernel BPF statistics, switched on
/// for the last flood and off again when the test ends however it ends),
/// under floods of datagrams the kernel drops (no socket): for drops that
/// are the interface's (counted) and for drops in another namespace with
/// the same ifindex (looked at and left); and the sender's rate without
/// the probes, with them, and with them and the statistics. A
/// measurement, not a check: run it by hand with `cargo test --release
/// --lib probe_drops::tests::cost -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement"]
fn cost() {
    const FLOOD: u32 = 1_000_000;
    let btf = btf();
    let pair = Pair::new(1);
    let vb = pair.b.ifindex("vb");
    let flood = || {
        let start = Instant::now();
        pair.a
            .run(|| send_udp(0, "192.0.2.1", ("192.0.2.2", CLOSED), FLOOD, 18));
        f64::from(FLOOD) / start.elapsed().as_secs_f64()
    };
    let bare = flood();
    let ours = probe(&btf, &pair.b, Some(vb));
    let theirs = probe(&btf, &pair.a, Some(vb));
    let probed = flood();
    let stats = tracing::StatsOn::new().unwrap();
    let measured = flood();
    drop(stats);
    let counted: u64 = ours.counts().unwrap().iter().map(|c| c.packets).sum();
    for (name, p) in [("counted", &ours), ("other namespace", &theirs)] {
        let s = p.run_stats().unwrap();
        println!(
            "{name}: {} runs, {:.1} ns per run, {} recursion misses",
            s.run_cnt,
            s.ns_per_run(),
            s.recursion_misses
        );
    }
    println!("{counted} drops counted of {} sent", 2 * FLOOD);
    println!("datagrams/s: {bare:.0} without probes, {probed:.0} with two, {measured:.0} with statistics");
}

/// A kernel whose kfree_skb has no reason (before 5.17), or no BTF: the
/// error names what is missing.
#[test]
fn missing_pieces_are_named() {
    use crate::sys::btf::tests::Blob;
    use crate::sys::btf::Kind;
    let mut b = Blob::new();
    let skb = b.comp(Kind::Struct, "sk_buff", false, 0, &[]);
    let skb_ptr = b.ty(Kind::Ptr, "", false, 0, skb, &[]);
    let void_ptr = b.ty(Kind::Ptr, "", false, 0, 0, &[]);
    let proto = b.ty(
        Kind::FuncProto,
        "",
        false,
        3,
        0,
        &[0, void_ptr, 0, skb_ptr, 0, void_ptr],
    );
    let fp = b.ty(Kind::Ptr, "", false, 0, proto, &[]);
    b.ty(Kind::Typedef, "btf_trace_kfree_skb", false, 0, fp, &[]);
    let e = Layout::from_btf(&b.parse()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the kernel's skb:kfree_skb has no reason argument"
    );
    let e = Layout::from_btf(&Blob::new().parse()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the kernel's BTF has no tracepoint kfree_skb (typedef btf_trace_kfree_skb)"
    );
    let e = crate::sys::btf::BtfError::NoKernelBtf(
        std::io::Error::from_raw_os_error(libc::ENOENT).into(),
    );
    assert_eq!(
        e.to_string(),
        "this kernel has no BTF (/sys/kernel/btf/vmlinux): No such file or directory"
    );
}

/// `n` datagrams of `len` bytes from a socket of its own (whose port is
/// returned) on `cpu`, to `to`.
fn send_from(cpu: u32, from: &str, to: std::net::SocketAddr, n: u32, len: usize) -> u16 {
    send_with(cpu, from, to, n, len, false)
}

/// [`send_from`], with an IPv6 hop-by-hop options header (a PadN option)
/// in each datagram when `hop_by_hop`.
fn send_with(
    cpu: u32,
    from: &str,
    to: std::net::SocketAddr,
    n: u32,
    len: usize,
    hop_by_hop: bool,
) -> u16 {
    use crate::source::testnet::pin;
    std::thread::scope(|s| {
        s.spawn(|| {
            pin(cpu);
            let sock = UdpSocket::bind((from, 0)).unwrap();
            if hop_by_hop {
                // Next header (the kernel sets it), length 0 (8 bytes),
                // PadN of 4.
                let opts: [u8; 8] = [0, 0, 1, 4, 0, 0, 0, 0];
                crate::sys::testutil::set_ipv6_hopopts(&sock, &opts);
            }
            let buf = vec![0u8; len];
            for _ in 0..n {
                sock.send_to(&buf, to).unwrap();
            }
            sock.local_addr().unwrap().port()
        })
        .join()
        .unwrap()
    })
}

/// (flow, reason, packets) of a probe with flows, sorted.
fn flow_counts(p: &DropProbe) -> (Vec<(Flow, String, u64)>, u64) {
    let (f, overflow) = p.flow_counts().unwrap().expect("a probe with flows");
    let mut f: Vec<_> = f
        .into_iter()
        .map(|d| (d.flow, d.reason.to_string(), d.packets))
        .collect();
    f.sort_by_key(|x| format!("{x:?}"));
    (f, overflow)
}

/// With flows: each drop of the interface is keyed by its flow (IPv4 and
/// IPv6, UDP to a closed port and to a full socket, over lo), for both
/// kinds of program; the per-cpu totals are the same as without.
#[test]
fn drops_are_keyed_by_flow() {
    let btf = btf();
    let no_socket = kernel_reason(&btf, "NO_SOCKET");
    let rcvbuff = kernel_reason(&btf, "SOCKET_RCVBUFF");
    let variant = Variant {
        flows: true,
        locations: true,
    };
    for hook in [Hook::tp_btf(TRACEPOINT), Hook::raw_tp(TRACEPOINT)] {
        let ns = Ns::new();
        // IPv6 on lo (off in a test namespace: no router solicitations).
        #[rustfmt::skip]
        crate::source::testnet::sh(&["ip", "netns", "exec", &ns.name, "sysctl", "-q",
            "-w", "net.ipv6.conf.lo.disable_ipv6=0"]);
        let filter = Filter {
            ifindex: Some(1),
            netns: ns.inode(),
        };
        let p = DropProbe::attach_at(&btf, filter, variant, &hook).unwrap();
        let plain = probe(&btf, &ns, Some(1));
        let (closed4, closed6, full, drops) = ns.run(|| {
            let closed4 = send_from(0, "127.0.0.1", "127.0.0.1:9".parse().unwrap(), 7, 16);
            let closed6 = send_from(1, "::1", "[::1]:9".parse().unwrap(), 5, 16);
            let hbh = send_with(1, "::1", "[::1]:10".parse().unwrap(), 3, 16, true);
            let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
            nix::sys::socket::setsockopt(&rx, nix::sys::socket::sockopt::RcvBuf, &1024).unwrap();
            let to = rx.local_addr().unwrap();
            let full = (send_from(1, "127.0.0.1", to, 500, 100), to.port());
            (closed4, (closed6, hbh), full, udp_socket_drops(to.port()))
        });
        let (closed6, hbh) = closed6;
        assert!(drops > 400, "only {drops} dropped");
        let v4 = |s: u16, d: u16| Flow {
            src: "127.0.0.1".parse().unwrap(),
            dst: "127.0.0.1".parse().unwrap(),
            proto: 17,
            ports: Some((s, d)),
        };
        let v6 = |s: u16, d: u16| Flow {
            src: "::1".parse().unwrap(),
            dst: "::1".parse().unwrap(),
            proto: 17,
            ports: Some((s, d)),
        };
        let mut want = vec![
            (v4(closed4, 9), no_socket.clone(), 7),
            (v6(closed6, 9), no_socket.clone(), 5),
            // Behind the hop-by-hop header, as the capture's key reads it.
            (v6(hbh, 10), no_socket.clone(), 3),
            (v4(full.0, full.1), rcvbuff.clone(), drops),
        ];
        want.sort_by_key(|x| format!("{x:?}"));
        assert_eq!(flow_counts(&p), (want, 0), "{hook}");
        assert_eq!(counts(&p), counts(&plain), "{hook}");
        assert!(plain.flow_counts().unwrap().is_none());
        // The locations are kept: one per reason and cpu.
        let sites = p.sites().unwrap();
        assert_eq!(sites.len(), counts(&p).len(), "{sites:?}");
        assert!(plain.sites().unwrap().is_empty());
    }
}

/// More flows than the probe's table holds: the drops that find it full
/// are counted as its overflow, the per-reason totals stay exact.
#[test]
fn a_full_flow_table_is_counted() {
    const FLOWS: u32 = drop_flows::MAX_ENTRIES + 100;
    let btf = btf();
    let no_socket = kernel_reason(&btf, "NO_SOCKET");
    let ns = Ns::new();
    let variant = Variant {
        flows: true,
        locations: false,
    };
    let p = probe_variant(&btf, &ns, Some(1), variant);
    ns.run(|| {
        crate::source::testnet::pin(1);
        for port in 0..FLOWS {
            let sock = UdpSocket::bind(("127.0.0.1", 20000 + port as u16)).unwrap();
            sock.send_to(b"x", "127.0.0.1:9").unwrap();
        }
    });
    assert_eq!(counts(&p), vec![(1, no_socket, u64::from(FLOWS))]);
    let (flows, overflow) = flow_counts(&p);
    assert_eq!(flows.len(), drop_flows::MAX_ENTRIES as usize);
    assert!(flows.iter().all(|f| f.2 == 1));
    assert_eq!(overflow, 100);
}

/// The program with the interface's device remembered ([`Fds::device`])
/// and without (every drop checked in full: ifindex, namespace), run in
/// turn on the same floods: the drops that are the interface's, and the
/// same drops looked at by a probe of another namespace with the same
/// ifindex (the dearest to leave) and of another ifindex. Kernel BPF
/// statistics on. A measurement, not a check: `cargo test --release
/// --lib probes::drops::tests::cost_of_the_device_check -- --ignored
/// --nocapture` (ROUNDS=N, default 5).
#[test]
#[ignore = "a measurement"]
fn cost_of_the_device_check() {
    const FLOOD: u32 = 300_000;
    let rounds: usize = std::env::var("ROUNDS").map_or(5, |v| v.parse().unwrap());
    let btf = btf();
    let layout = Layout::from_btf(&btf).unwrap();
    let reasons = Reasons::from_btf(&btf).unwrap();
    let pair = Pair::new(1);
    let vb = pair.b.ifindex("vb");
    let hook = Hook::tp_btf(TRACEPOINT);
    let load = |ns: &Ns, ifindex: u32, remembered: bool| {
        let filter = Filter {
            ifindex: Some(ifindex),
            netns: ns.inode(),
        };
        let (prog, counts, device) =
            load_counting(&btf, &hook, &layout, &reasons, &filter, remembered);
        let attached = tracing::attach(&prog, &hook).unwrap();
        (prog, attached, counts, device)
    };
    let _stats = tracing::StatsOn::new().unwrap();
    let mut table: Vec<(String, Vec<f64>)> = Vec::new();
    for round in 0..rounds {
        for remembered in [round % 2 == 0, round % 2 == 1] {
            // Attached in this order, run in it: the first pays for
            // what the tracepoint's later programs then find in the caches
            // (the skb's first line); ORDER=counted-last swaps.
            let mut probes = vec![
                ("counted", load(&pair.b, vb, remembered)),
                ("other namespace", load(&pair.a, vb, remembered)),
                ("other ifindex", load(&pair.b, vb + 100, remembered)),
            ];
            if std::env::var("ORDER").is_ok_and(|o| o == "counted-last") {
                probes.reverse();
            }
            pair.a
                .run(|| send_udp(0, "192.0.2.1", ("192.0.2.2", CLOSED), FLOOD, 18));
            for (name, (prog, ..)) in &probes {
                let s = tracing::run_stats(prog).unwrap();
                let key = format!(
                    "{name}, {}",
                    if remembered { "remembered" } else { "in full" }
                );
                match table.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, v)) => v.push(s.ns_per_run()),
                    None => table.push((key, vec![s.ns_per_run()])),
                }
            }
        }
    }
    for (key, mut v) in table {
        v.sort_by(f64::total_cmp);
        println!(
            "{key}: median {:.1} ns per run [{:.1}..{:.1}] over {} rounds",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1],
            v.len()
        );
    }
}

/// The senders' rate with the probe against without it, BPF statistics
/// off (as a user runs it): floods of datagrams to a closed port over a
/// veth (every one a NO_SOCKET drop the probe counts), without and with
/// the probe in turn, which first changing each round, so that the
/// machine's other work moves both alike. A measurement, not a check:
/// `cargo test --release --lib probes::drops::tests::senders_rate --
/// --ignored --nocapture` (ROUNDS=N, default 20; FLOOD=N datagrams, default
/// 200000).
#[test]
#[ignore = "a measurement"]
fn senders_rate() {
    let env = |k: &str, d: u32| std::env::var(k).map_or(d, |v| v.parse().unwrap());
    let (rounds, flood) = (env("ROUNDS", 20), env("FLOOD", 200_000));
    let stats = || std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap();
    let stats_before = stats();
    let btf = btf();
    let pair = Pair::new(1);
    let vb = pair.b.ifindex("vb");
    let rate = || {
        let start = Instant::now();
        pair.a
            .run(|| send_udp(0, "192.0.2.1", ("192.0.2.2", CLOSED), flood, 18));
        f64::from(flood) / start.elapsed().as_secs_f64()
    };
    rate();
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let (bare, probed) = if round % 2 == 0 {
            let bare = rate();
            let p = probe(&btf, &pair.b, Some(vb));
            let probed = rate();
            assert_eq!(p.run_stats().unwrap().run_cnt, 0, "statistics on");
            (bare, probed)
        } else {
            let p = probe(&btf, &pair.b, Some(vb));
            let probed = rate();
            drop(p);
            (rate(), probed)
        };
        println!(
            "round {round}: {bare:.0} / {probed:.0} datagrams/s without / with the probe: {:.3}",
            probed / bare
        );
        ratios.push(probed / bare);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "with / without: median {:.3} [{:.3}..{:.3}] over {rounds} rounds; kernel.bpf_stats_enabled {} before, {} after",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
        stats_before.trim(),
        stats().trim()
    );
}
