//! What the kernel's receive and transmit hooks see, on the running
//! kernel: the facts the path of a flow (issue 28) builds on, proven with
//! BTF-typed probes of our own ([`crate::sys::tracing`]) on a veth pair.
//!
//! Verified on Linux 6.18 (x86_64, 2 cpus), UDP datagrams a -> b over
//! va/vb (two queues each way; XPS on va sends cpu0's packets on tx-1;
//! RPS sends both of vb's receive queues to cpu1), the sender pinned to
//! cpu0, a reader pinned to cpu0 that reads every datagram. Each probe
//! picks the test's packets by namespace (the device's or the socket's)
//! and UDP port (read from the packet: `skb->head` plus
//! `skb->transport_header`, through bpf_probe_read_kernel, which works at
//! every hook below):
//!
//! - `net:netif_rx_entry` fires once per packet, on cpu0 (the sender's:
//!   veth_xmit hands the packet to __netif_rx in the sender's context),
//!   before RPS; the current task is the sender.
//! - `net:netif_receive_skb` fires once, on cpu1, after RPS (where packet
//!   sockets see it), in softirq: the current task is whatever ran there.
//! - `net:netif_receive_skb_entry` and `net:napi_gro_receive_entry` do not
//!   fire on this path (veth uses NAPI only with XDP or GRO on; NIC
//!   drivers call them from NAPI, before RPS). With GRO on vb (and
//!   rx-udp-gro-forwarding, for a socket's datagrams) only
//!   `napi_gro_receive_entry` fires, once per packet, on the sender's cpu
//!   (veth_poll in its softirq); `netif_receive_skb_list_entry` does not
//!   (gro_normal_list calls netif_receive_skb_list_internal).
//! - tp_btf programs read `skb->queue_mapping` and `skb->hash` with plain
//!   loads. veth records no receive queue: queue_mapping still holds the
//!   sender's transmit queue (1). (NIC drivers store the receive queue
//!   plus one, skb_record_rx_queue; 0 = none.) The hash is 0 at
//!   netif_rx_entry (RPS computes it later, get_rps_cpu) and set at
//!   netif_receive_skb.
//! - The application's read of a UDP datagram: `sock:sock_recv_length`
//!   fires once per read on the reader's cpu in the reader's thread, with
//!   the socket and the length, not the packet. `skb:skb_copy_datagram_
//!   iovec` does not fire (copy_linear_skb). `skb:consume_skb` does not
//!   fire in the reader's context: skb_consume_udp frees a datagram with
//!   skb_attempt_defer_free, on the spot without a tracepoint when the
//!   reader runs on the cpu that allocated it, else later from that cpu's
//!   softirq (skb_defer_free_flush; seen with the reader on cpu1, IPv4
//!   and IPv6 alike: udpv6_recvmsg ends in skb_consume_udp too). No
//!   other tracepoint in the read carries the datagram: perf on the
//!   reader's pid shows only the system call's and sock_recv_length.
//! - fentry/fexit (and fmod_ret) programs are refused on this machine:
//!   BPF_PROG_LOAD fails with EPERM before the verifier runs, as root,
//!   for any target (skb_consume_udp, __skb_recv_udp, udp_recvmsg), while
//!   tp_btf loads; the kernel is locked down (integrity) and carries a
//!   non-upstream `kernel.init_private_bpf` sysctl, which may be why.
//!   The functions are in BTF and kallsyms; the test attaches them where
//!   the kernel allows and otherwise says so.
//! - The kernel's preempt count (in_task()) is not reachable from a
//!   program here: `__preempt_count` is a per-cpu VAR in BTF, but the
//!   kernel has no CONFIG_KALLSYMS_ALL, so a ld_imm64 of it
//!   (BPF_PSEUDO_BTF_ID) fails to load with ENOENT. `--path` tells a
//!   process's own context from an interrupt's by its stack instead
//!   ([`super::path_program`]).
//! - `net:net_dev_start_xmit` fires on the sender's cpu (cpu0) for va (a
//!   veth has no queue, so nothing is deferred to NET_TX), with
//!   queue_mapping the transmit queue XPS chose (1).

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::source::testnet::{pin, send_udp, Pair};
use crate::sys::bpf::{Map, MapType};
use crate::sys::btf::Btf;
use crate::sys::ebpf::{self, Insn};
use crate::sys::tracing::{self, Attached, Hook};

/// Where a probe finds the namespace to compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NsVia {
    /// skb->dev->nd_net.net
    Dev,
    /// The socket argument's.
    Sock,
    /// Nowhere: a packet queued on a UDP socket has no device (its
    /// skb->dev holds dev_scratch); the port alone picks the test's.
    Unchecked,
}

/// What a probe reads and how it picks the test's packets.
#[derive(Clone, Copy, Debug)]
struct Spec {
    /// The packet's argument (None: a socket hook).
    skb_arg: Option<usize>,
    /// The socket's argument: the port, when there is no packet, and the
    /// namespace with [`NsVia::Sock`] come from it.
    sock_arg: Option<usize>,
    ns: NsVia,
    /// An argument to record (the caller's address, a length).
    extra_arg: Option<usize>,
}

impl Spec {
    fn skb(skb_arg: usize) -> Spec {
        Spec {
            skb_arg: Some(skb_arg),
            sock_arg: None,
            ns: NsVia::Dev,
            extra_arg: None,
        }
    }
}

// One per-cpu value: what the probe saw on that cpu.
const V_COUNT: i16 = 0;
const V_LEN: i16 = 8;
const V_QUEUE: i16 = 16;
const V_HASH: i16 = 24;
const V_PID: i16 = 32;
const V_EXTRA: i16 = 40;
const V_COMM: i16 = 48;
const V_SIZE: u32 = 64;

/// A probe counting, per cpu, the test's packets: to UDP port `port`
/// (read from the packet's header, else the socket's local port), in
/// namespace `netns` (the device's, else the socket's; not checked when
/// there is neither: a packet waiting in a UDP socket has no device),
/// with their length, queue, hash and the current task.
fn program(btf: &Btf, spec: Spec, netns: u32, port: u16, map: i32) -> Vec<Insn> {
    use ebpf::*;
    use Reg::*;
    let off = |outer: &str, path: &str| btf.member(outer, path).unwrap().offset as i16;
    let arg = |i: usize| (i * 8) as i16;
    let mut a = Asm::new();
    a.push([mov(R6, R1)]);
    if let Some(i) = spec.skb_arg {
        a.push([load(Size::DW, R7, R6, arg(i))]);
        a.jump_to(jump_imm(Cond::Eq, R7, 0, 0), "out");
    }
    let net = match spec.ns {
        NsVia::Sock => Some([
            load(
                Size::DW,
                R8,
                R6,
                arg(spec.sock_arg.expect("a socket argument")),
            ),
            load(Size::DW, R8, R8, off("sock", "__sk_common.skc_net.net")),
        ]),
        NsVia::Dev => Some([
            load(Size::DW, R8, R7, off("sk_buff", "dev")),
            load(Size::DW, R8, R8, off("net_device", "nd_net.net")),
        ]),
        NsVia::Unchecked => None,
    };
    if let Some(net) = net {
        a.push(net).push([
            load(Size::W, R8, R8, off("net", "ns.inum")),
            mov32_imm(R1, netns as i32),
        ]);
        a.jump_to(jump(Cond::Ne, R8, R1, 0), "out");
    }
    match spec.skb_arg {
        // The UDP destination port, from skb->head + skb->transport_header.
        Some(_) => {
            a.push([
                mov(R1, R10),
                add_imm(R1, -8),
                mov_imm(R2, 2),
                load(Size::DW, R3, R7, off("sk_buff", "head")),
                load(Size::H, R4, R7, off("sk_buff", "transport_header")),
                add(R3, R4),
                add_imm(R3, 2),
                call(helper::PROBE_READ_KERNEL),
                load(Size::H, R8, R10, -8),
            ]);
            let be = i32::from(u16::from_ne_bytes(port.to_be_bytes()));
            a.jump_to(jump_imm(Cond::Ne, R8, be, 0), "out");
        }
        None => {
            let i = spec.sock_arg.expect("a packet or a socket");
            a.push([
                load(Size::DW, R8, R6, arg(i)),
                load(Size::H, R8, R8, off("sock", "__sk_common.skc_num")),
            ]);
            a.jump_to(jump_imm(Cond::Ne, R8, i32::from(port), 0), "out");
        }
    }
    a.push([
        store_imm(Size::W, R10, -4, 0),
        mov(R2, R10),
        add_imm(R2, -4),
    ])
    .push(load_map_fd(R1, map))
    .push([call(helper::MAP_LOOKUP_ELEM), mov(R9, R0)]);
    a.jump_to(jump_imm(Cond::Eq, R9, 0, 0), "out");
    a.push([
        load(Size::DW, R1, R9, V_COUNT),
        add_imm(R1, 1),
        store(Size::DW, R9, V_COUNT, R1),
    ]);
    if spec.skb_arg.is_some() {
        a.push([
            load(Size::W, R1, R7, off("sk_buff", "len")),
            load(Size::DW, R2, R9, V_LEN),
            add(R2, R1),
            store(Size::DW, R9, V_LEN, R2),
            load(Size::H, R1, R7, off("sk_buff", "queue_mapping")),
            store(Size::DW, R9, V_QUEUE, R1),
            load(Size::W, R1, R7, off("sk_buff", "hash")),
            store(Size::DW, R9, V_HASH, R1),
        ]);
    }
    if let Some(i) = spec.extra_arg {
        a.push([
            load(Size::DW, R1, R6, arg(i)),
            store(Size::DW, R9, V_EXTRA, R1),
        ]);
    }
    a.push([
        call(helper::GET_CURRENT_PID_TGID),
        store(Size::DW, R9, V_PID, R0),
        mov(R1, R9),
        add_imm(R1, V_COMM.into()),
        mov_imm(R2, 16),
        call(helper::GET_CURRENT_COMM),
    ]);
    a.label("out").push([mov_imm(R0, 0), exit()]);
    a.finish()
}

/// What one probe saw on one cpu.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Seen {
    count: u64,
    len: u64,
    queue: u64,
    hash: u64,
    tid: u32,
    extra: u64,
    comm: String,
}

struct Probe {
    _attached: Attached,
    map: Map,
}

impl Probe {
    fn new(btf: &Btf, hook: Hook, spec: Spec, netns: u32, port: u16) -> Probe {
        let map = Map::create(MapType::PercpuArray, "facts", 4, V_SIZE, 1, 0).unwrap();
        let insns = program(btf, spec, netns, port, map.as_raw_fd());
        let prog =
            tracing::load(btf, &hook, "facts", &insns).unwrap_or_else(|e| panic!("{hook}: {e}"));
        let attached = tracing::attach(&prog, &hook).unwrap_or_else(|e| panic!("{hook}: {e}"));
        Probe {
            _attached: attached,
            map,
        }
    }

    /// Per cpu (0, 1).
    fn seen(&self) -> Vec<Seen> {
        let cpus = crate::sys::bpf::possible_cpus().unwrap().len();
        let mut buf = vec![0u8; V_SIZE as usize * cpus];
        self.map.lookup(&0u32.to_ne_bytes(), &mut buf).unwrap();
        buf.chunks(V_SIZE as usize)
            .map(|v| {
                let u =
                    |o: i16| u64::from_ne_bytes(v[o as usize..o as usize + 8].try_into().unwrap());
                let comm = &v[V_COMM as usize..V_COMM as usize + 16];
                let end = comm.iter().position(|&b| b == 0).unwrap_or(16);
                Seen {
                    count: u(V_COUNT),
                    len: u(V_LEN),
                    queue: u(V_QUEUE),
                    hash: u(V_HASH),
                    tid: u(V_PID) as u32,
                    extra: u(V_EXTRA),
                    comm: String::from_utf8_lossy(&comm[..end]).into(),
                }
            })
            .collect()
    }

    fn counts(&self) -> Vec<u64> {
        self.seen().iter().map(|s| s.count).collect()
    }
}

/// The position of the skb argument of tracepoint `tp`.
fn tp_skb(btf: &Btf, tp: &str) -> usize {
    let p = btf.raw_tp_params(tp).unwrap();
    btf.param_position(&p, "struct sk_buff *").unwrap()
}

const N: u32 = 200;
const PAYLOAD: usize = 32;

/// A veth pair with two queues each way: va's XPS sends cpu0's packets on
/// tx-1 (veth hands them to vb's rx queue 1), RPS moves both of vb's
/// receive queues to cpu1.
fn pair() -> Pair {
    let pair = Pair::new(2);
    pair.a.sh("echo 2 > /sys/class/net/va/queues/tx-0/xps_cpus; echo 1 > /sys/class/net/va/queues/tx-1/xps_cpus");
    pair.b.sh("echo 2 > /sys/class/net/vb/queues/rx-0/rps_cpus; echo 2 > /sys/class/net/vb/queues/rx-1/rps_cpus");
    pair
}

/// Sends N datagrams from a (pinned to cpu0) to `rx` in b, read by a
/// thread pinned to cpu0 that reads every one; returns its thread id.
fn flow(pair: &Pair, rx: UdpSocket) -> u32 {
    let port = rx.local_addr().unwrap().port();
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            pin(0);
            let tid = nix::unistd::gettid().as_raw() as u32;
            rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 2048];
            for _ in 0..N {
                assert_eq!(rx.recv(&mut buf).unwrap(), PAYLOAD);
            }
            tid
        });
        pair.a
            .run(|| send_udp(0, "192.0.2.1", ("192.0.2.2", port), N, PAYLOAD));
        reader.join().unwrap()
    })
}

#[test]
fn receive_path() {
    let btf = Btf::kernel().unwrap();
    let pair = pair();
    let rx = pair.b.run(|| UdpSocket::bind("192.0.2.2:0").unwrap());
    let port = rx.local_addr().unwrap().port();
    let nb = pair.b.inode();
    let probe = |hook: Hook, spec: Spec| Probe::new(&btf, hook, spec, nb, port);
    let tp = |name: &str| probe(Hook::tp_btf(name), Spec::skb(tp_skb(&btf, name)));
    let rx_entry = tp("netif_rx_entry");
    let gro_entry = tp("napi_gro_receive_entry");
    let skb_entry = tp("netif_receive_skb_entry");
    let receive = tp("netif_receive_skb");
    // The reader's side: the packet freed after its copy (the caller's
    // address recorded), and the socket's read.
    let consume = probe(
        Hook::tp_btf("consume_skb"),
        Spec {
            ns: NsVia::Unchecked,
            extra_arg: Some(1),
            ..Spec::skb(0)
        },
    );
    let recv_length = probe(
        Hook::tp_btf("sock_recv_length"),
        Spec {
            skb_arg: None,
            sock_arg: Some(0),
            ns: NsVia::Sock,
            extra_arg: Some(1),
        },
    );
    let copy_iovec = tp("skb_copy_datagram_iovec");
    // BTF-typed probes at the functions that hand the packet to the
    // reader, where the kernel takes them.
    let fentry = |hook: Hook, spec: Spec| {
        let insns = program(&btf, spec, nb, port, -1);
        match tracing::load(&btf, &hook, "facts", &insns) {
            Err(e) if e.is_permission() => {
                println!("{hook}: refused: {e}");
                None
            }
            _ => Some(probe(hook, spec)),
        }
    };
    let recv_params = btf.func_params("__skb_recv_udp").unwrap().len();
    let consume_udp = fentry(
        Hook::fentry("skb_consume_udp"),
        Spec {
            sock_arg: Some(0),
            ns: NsVia::Sock,
            ..Spec::skb(1)
        },
    );
    let recv_exit = fentry(
        Hook::fexit("__skb_recv_udp"),
        Spec {
            sock_arg: Some(0),
            ns: NsVia::Sock,
            ..Spec::skb(recv_params)
        },
    );

    let tid = flow(&pair, rx);
    let n = u64::from(N);
    for (name, p) in [
        ("netif_rx_entry", Some(&rx_entry)),
        ("napi_gro_receive_entry", Some(&gro_entry)),
        ("netif_receive_skb_entry", Some(&skb_entry)),
        ("netif_receive_skb", Some(&receive)),
        ("consume_skb", Some(&consume)),
        ("sock_recv_length", Some(&recv_length)),
        ("skb_copy_datagram_iovec", Some(&copy_iovec)),
        ("fentry/skb_consume_udp", consume_udp.as_ref()),
        ("fexit/__skb_recv_udp", recv_exit.as_ref()),
    ] {
        println!("{name}: {:?}", p.map(Probe::seen));
    }
    assert_eq!(rx_entry.counts(), [n, 0]);
    assert_eq!(gro_entry.counts(), [0, 0]);
    assert_eq!(skb_entry.counts(), [0, 0]);
    assert_eq!(receive.counts(), [0, n]);
    // veth records no receive queue: queue_mapping still holds the
    // sender's transmit queue (1, cpu0's XPS choice).
    assert_eq!(rx_entry.seen()[0].queue, 1);
    assert_eq!(receive.seen()[1].queue, 1);
    // The hash: none before RPS, RPS's after.
    assert_eq!(rx_entry.seen()[0].hash, 0);
    assert_ne!(receive.seen()[1].hash, 0);
    // skb_consume_udp frees a datagram read on the cpu that allocated it
    // (here the sender's, cpu0) without a tracepoint, and hands others to
    // that cpu's deferred free list: consume_skb never fires in the
    // reader's context. sock_recv_length fires per read, in the reader's
    // thread, with the socket (not the packet) and the length read. The
    // copy of a linear UDP datagram has no tracepoint.
    assert_eq!(consume.counts(), [0, 0]);
    let r = &recv_length.seen()[0];
    assert_eq!(recv_length.counts(), [n, 0]);
    assert_eq!((r.tid, r.extra), (tid, PAYLOAD as u64));
    assert_eq!(copy_iovec.counts(), [0, 0]);
    for p in [&consume_udp, &recv_exit].into_iter().flatten() {
        let s = &p.seen()[0];
        assert_eq!(p.counts(), [n, 0]);
        assert_eq!((s.tid, s.len), (tid, n * (8 + PAYLOAD as u64)));
    }
}

#[test]
fn transmit_path() {
    let btf = Btf::kernel().unwrap();
    let pair = pair();
    let rx = pair.b.run(|| UdpSocket::bind("192.0.2.2:0").unwrap());
    let port = rx.local_addr().unwrap().port();
    let name = "net_dev_start_xmit";
    let xmit = Probe::new(
        &btf,
        Hook::tp_btf(name),
        Spec::skb(tp_skb(&btf, name)),
        pair.a.inode(),
        port,
    );
    flow(&pair, rx);
    println!("{name}: {:?}", xmit.seen());
    assert_eq!(xmit.counts(), [u64::from(N), 0]);
    // XPS: cpu0 sends on tx-1.
    assert_eq!(xmit.seen()[0].queue, 1);
}

/// GRO on vb (and rx-udp-gro-forwarding, without which a socket's UDP
/// datagrams are not eligible: veth_skb_is_eligible_for_gro): veth_xmit
/// queues the packet for vb's NAPI instead of calling netif_rx, and
/// veth_poll hands it to napi_gro_receive in the sender's softirq
/// (cpu0). `net:napi_gro_receive_entry` fires once per packet there;
/// `netif_rx_entry` does not, nor does `netif_receive_skb_list_entry`
/// (gro_normal_list calls netif_receive_skb_list_internal, past it) or
/// `netif_receive_skb_entry`: one entry point per packet.
#[test]
fn gro_receive_path() {
    let btf = Btf::kernel().unwrap();
    let pair = pair();
    pair.b
        .sh("ethtool -K vb gro on rx-udp-gro-forwarding on >/dev/null");
    let rx = pair.b.run(|| UdpSocket::bind("192.0.2.2:0").unwrap());
    let port = rx.local_addr().unwrap().port();
    let nb = pair.b.inode();
    let tp = |name: &str| {
        Probe::new(
            &btf,
            Hook::tp_btf(name),
            Spec::skb(tp_skb(&btf, name)),
            nb,
            port,
        )
    };
    let hooks = [
        "napi_gro_receive_entry",
        "netif_rx_entry",
        "netif_receive_skb_list_entry",
        "netif_receive_skb_entry",
        "netif_receive_skb",
    ]
    .map(|name| (name, tp(name)));
    flow(&pair, rx);
    let n = u64::from(N);
    let seen: Vec<(&str, Vec<u64>)> = hooks.iter().map(|(h, p)| (*h, p.counts())).collect();
    println!("{seen:?}");
    assert_eq!(
        seen,
        [
            ("napi_gro_receive_entry", vec![n, 0]),
            ("netif_rx_entry", vec![0, 0]),
            ("netif_receive_skb_list_entry", vec![0, 0]),
            ("netif_receive_skb_entry", vec![0, 0]),
            // After RPS (rx-0 and rx-1 to cpu1).
            ("netif_receive_skb", vec![0, n]),
        ]
    );
}

/// Where a UDP datagram a reader has copied is freed, IPv4 and IPv6
/// (udp_recvmsg and udpv6_recvmsg both end in skb_consume_udp): this
/// kernel's skb_consume_udp hands it to skb_attempt_defer_free, which
/// frees it on the spot without a tracepoint when the reader runs on the
/// cpu that allocated it (the sender's), and otherwise puts it on that
/// cpu's list, freed by its next net_rx_action (skb_defer_free_flush ->
/// napi_consume_skb: `skb:consume_skb` there, in that cpu's softirq).
/// With the reader on cpu1 and the sender on cpu0, consume_skb never
/// fires on the reader's cpu; what it counts on cpu0 is named
/// skb_defer_free_flush. So `consume_skb` cannot attribute a read to its
/// reader here, and no other tracepoint in the read (the reader's
/// context has sock_recv_length and the system call's own) carries the
/// datagram: perf record -e 'skb:*,sock:*,net:*,udp:*,kmem:*' -p READER
/// shows sys_enter/exit_recvfrom and sock_recv_length per read, and no
/// skb event.
#[test]
fn udp_reads_free_their_datagrams_on_the_allocating_cpu() {
    let btf = Btf::kernel().unwrap();
    let symbols = super::kallsyms::Symbols::read().expect("/proc/kallsyms with addresses");
    let pair = pair();
    pair.a
        .sh("sysctl -qw net.ipv6.conf.va.disable_ipv6=0; ip addr add 2001:db8::1/64 dev va nodad; ip neigh replace 2001:db8::2 lladdr 02:00:00:00:00:02 dev va nud permanent");
    pair.b
        .sh("sysctl -qw net.ipv6.conf.vb.disable_ipv6=0; ip addr add 2001:db8::2/64 dev vb nodad; ip neigh replace 2001:db8::1 lladdr 02:00:00:00:00:01 dev vb nud permanent");
    for (from, to) in [("192.0.2.1", "192.0.2.2"), ("2001:db8::1", "2001:db8::2")] {
        let rx = pair.b.run(|| UdpSocket::bind((to, 0)).unwrap());
        let port = rx.local_addr().unwrap().port();
        let consume = Probe::new(
            &btf,
            Hook::tp_btf("consume_skb"),
            Spec {
                ns: NsVia::Unchecked,
                extra_arg: Some(1),
                ..Spec::skb(0)
            },
            pair.b.inode(),
            port,
        );
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                pin(1);
                rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = [0u8; 2048];
                for _ in 0..N {
                    assert_eq!(rx.recv(&mut buf).unwrap(), PAYLOAD);
                }
            });
            pair.a.run(|| send_udp(0, from, (to, port), N, PAYLOAD));
            reader.join().unwrap();
        });
        let seen = consume.seen();
        println!("{to}: {seen:?}");
        assert_eq!(seen[1].count, 0, "{to}: {seen:?}");
        assert!(seen[0].count <= u64::from(N), "{to}: {seen:?}");
        if seen[0].count > 0 {
            let at = symbols.name(seen[0].extra).unwrap_or_default();
            assert!(at.starts_with("skb_defer_free_flush"), "{to}: {at}");
        }
    }
}
