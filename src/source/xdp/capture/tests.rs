//! Kernel-facing tests run as root, each in a pair of private network
//! namespaces joined by a veth: `a` (va, 192.0.2.1) sends, `b` (vb,
//! 192.0.2.2) receives with the XDP program attached. IPv6 is off and
//! the neighbours are static, so vb receives nothing but the test's
//! frames. Senders are paced by a receiving socket in `b` (at most a
//! few frames in flight), so veth never drops one.

use super::*;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::ops::ControlFlow;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sched::{setns, CloneFlags};

use crate::source::testnet::{pin, sh, Pair};
use crate::source::xdp::program::XDP_PASS;
use crate::source::xdp::record::XdpRecord;
use crate::sys::ebpf::{self, Reg};
use crate::sys::host::{clock_ns, Clock};

const UDP_PORT: u16 = 9999;
/// Ethernet, IPv4 and UDP headers before the payload.
const HEADERS: usize = 14 + 20 + 8;

fn enter(ns: &str) {
    let f = File::open(format!("/var/run/netns/{ns}")).unwrap();
    setns(&f, CloneFlags::CLONE_NEWNET).unwrap();
}

/// Two namespaces and a veth between them (the sources' test [`Pair`]);
/// deleted on drop.
struct Net {
    pair: Pair,
    /// The namespaces' names.
    a: String,
    b: String,
    /// In `a`, for sending to vb.
    tx: UdpSocket,
    /// In `b`, bound to 192.0.2.2:UDP_PORT, for pacing.
    rx: UdpSocket,
}

impl Net {
    fn new() -> Net {
        Net::with_queues(1)
    }

    /// With `queues` > 1, each end has that many queues and va's XPS
    /// sends cpu c's frames on tx queue c, which veth hands to vb's rx
    /// queue c: one NAPI per sending cpu.
    fn with_queues(queues: u32) -> Net {
        let pair = Pair::new(queues);
        for i in (0..queues).filter(|_| queues > 1) {
            let mask = 1u64 << i;
            pair.a.sh(&format!(
                "echo {mask:x} > /sys/class/net/va/queues/tx-{i}/xps_cpus"
            ));
        }
        let tx = pair.a.run(|| UdpSocket::bind("192.0.2.1:0").unwrap());
        let rx = pair
            .b
            .run(|| UdpSocket::bind(("192.0.2.2", UDP_PORT)).unwrap());
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (a, b) = (pair.a.name.clone(), pair.b.name.clone());
        Net { pair, a, b, tx, rx }
    }

    /// Runs `f` on a thread in namespace `b`.
    fn in_b<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.pair.b.run(f)
    }

    /// Waits until interface `ifindex` has no XDP program. Closing the
    /// last descriptor of a link detaches at once, but another test's
    /// fork() may hold a copy of the descriptor until its exec().
    fn assert_detached(&self, ifindex: u32) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while let Some(p) = self.in_b(|| attached_program(ifindex)).unwrap() {
            assert!(std::time::Instant::now() < deadline, "{p:?} still attached");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn vb(&self) -> u32 {
        self.in_b(|| crate::sys::afpacket::ifindex("vb").unwrap())
    }

    /// Sends `n` datagrams of `payload` bytes from a thread pinned to
    /// `cpu`, each received before the next is sent. Datagram i starts
    /// with i (u32, little endian) and `tag`, then zeros.
    fn send(&self, cpu: u32, n: u32, payload: usize, tag: u8) {
        std::thread::scope(|s| {
            s.spawn(|| {
                pin(cpu);
                let mut buf = vec![0u8; payload.max(5)];
                let mut got = vec![0u8; 65536];
                for i in 0..n {
                    buf[..4].copy_from_slice(&i.to_le_bytes());
                    buf[4] = tag;
                    self.tx.send_to(&buf, ("192.0.2.2", UDP_PORT)).unwrap();
                    self.rx.recv(&mut got).expect("datagram not received");
                }
            });
        });
    }

    /// Sends from both cpus at once.
    fn send_both(&self, n0: u32, n1: u32, payload: usize) {
        std::thread::scope(|s| {
            s.spawn(|| self.send(0, n0, payload, 0));
            s.spawn(|| self.send(1, n1, payload, 1));
        });
    }
}

fn both() -> CpuSet {
    [0, 1].into_iter().collect()
}

fn wall_ns() -> i64 {
    clock_ns(Clock::Realtime)
}

/// Reads every record of every reader (after stop(): until empty).
/// A record, copied out of its ring.
struct Rec {
    /// Wall-clock nanoseconds.
    ts: u64,
    len: u32,
    cpu: u32,
    data: Vec<u8>,
    queue: u32,
    ifindex: u32,
}

fn drain(readers: &mut [PerfReader]) -> Vec<Vec<Rec>> {
    readers
        .iter_mut()
        .map(|r| {
            let mut v = Vec::new();
            while !r.is_empty() {
                r.read(|rec| {
                    let ts = rec.sec as u64 * 1_000_000_000 + rec.nsec as u64;
                    v.push(Rec {
                        ts,
                        len: rec.len,
                        cpu: rec.cpu,
                        data: rec.data.to_vec(),
                        queue: rec.queue,
                        ifindex: rec.ifindex,
                    });
                    ControlFlow::Continue(())
                });
            }
            assert_eq!(r.malformed(), 0);
            v
        })
        .collect()
}

#[test]
fn counts_add_up_by_cpu_and_queue() {
    let t = |p| Tally {
        packets: p,
        bytes: p * 10,
        lost: 1,
    };
    let c = Counts {
        cpus: vec![0, 1],
        slots: vec![vec![t(1), t(2)], vec![t(3), t(4)], vec![t(5), t(6)]],
    };
    assert_eq!(c.cpu(0).packets, 9);
    assert_eq!(c.cpu(1).packets, 12);
    assert_eq!(c.cpu(7), Tally::default());
    assert_eq!(c.queue(1).packets, 7);
    assert_eq!(c.queue(2), Tally::default());
    assert_eq!(c.other_queues().packets, 11);
    assert_eq!(
        c.total(),
        Tally {
            packets: 21,
            bytes: 210,
            lost: 6
        }
    );
}

/// Counts per cpu are exact, cover only the window, and the program is
/// gone when the capture is dropped; both modes. Native XDP runs in the
/// NAPI poll of the receive queue, on the cpu that scheduled it: with
/// one queue, frames sent from cpu1 while cpu0 polls are handled (and
/// counted) on cpu0, so the senders here get a queue each (XPS).
#[test]
fn counts_are_exact_per_cpu_in_both_modes() {
    for mode in [XdpMode::Native, XdpMode::Generic] {
        let net = Net::with_queues(2);
        let vb = net.vb();
        let xdp = net.in_b(|| XdpCapture::attach(vb, &Options::new(mode, both())).unwrap());
        let expect = if mode == XdpMode::Native {
            Hook::Native
        } else {
            Hook::Generic
        };
        assert_eq!(xdp.hook(), expect);
        let attached = net.in_b(|| attached_program(vb)).unwrap().unwrap();
        assert_eq!(attached.id, xdp.ids().unwrap().0);
        net.send_both(20, 20, 32); // before the window
        xdp.start().unwrap();
        net.send_both(300, 200, 32);
        xdp.stop().unwrap();
        net.send_both(20, 20, 32); // after it
        let c = xdp.counts().unwrap();
        assert_eq!(c.cpu(0).packets, 300, "{mode:?}");
        assert_eq!(c.cpu(1).packets, 200, "{mode:?}");
        assert_eq!(c.total().bytes, 500 * (HEADERS + 32) as u64);
        assert_eq!(c.total().lost, 0);
        drop(xdp);
        net.assert_detached(vb);
    }
}

/// -l: only the selected cpus count; a queue list: only the selected
/// queues (cpu c sends on vb's rx queue c here); frames of queues past
/// the per-queue slots count in the last slot.
#[test]
fn unselected_cpus_and_queues_count_nothing() {
    let net = Net::with_queues(2);
    let vb = net.vb();
    let mut opts = Options::new(XdpMode::Native, std::iter::once(1).collect());
    opts.queues = 2;
    let xdp = net.in_b(|| XdpCapture::attach(vb, &opts).unwrap());
    xdp.start().unwrap();
    net.send_both(50, 70, 10);
    xdp.stop().unwrap();
    let c = xdp.counts().unwrap();
    assert_eq!((c.cpu(0).packets, c.cpu(1).packets), (0, 70));
    assert_eq!((c.queue(0).packets, c.queue(1).packets), (0, 70));
    assert_eq!(c.other_queues().packets, 0);
    drop(xdp);
    net.assert_detached(vb);

    opts.cpus = both();
    opts.queue_list = Some(std::iter::once(1).collect());
    let xdp = net.in_b(|| XdpCapture::attach(vb, &opts).unwrap());
    xdp.start().unwrap();
    net.send_both(5, 6, 10);
    xdp.stop().unwrap();
    let c = xdp.counts().unwrap();
    assert_eq!((c.cpu(0).packets, c.cpu(1).packets), (0, 6));
    assert_eq!(c.queue(1).packets, 6);
    drop(xdp);
    net.assert_detached(vb);

    // One per-queue slot: queue 1 is beyond it.
    opts.queues = 1;
    opts.queue_list = None;
    let xdp = net.in_b(|| XdpCapture::attach(vb, &opts).unwrap());
    xdp.start().unwrap();
    net.send_both(5, 6, 10);
    xdp.stop().unwrap();
    let c = xdp.counts().unwrap();
    assert_eq!((c.queue(0).packets, c.other_queues().packets), (5, 6));
}

/// With a snap length every counted frame is a record: in order per
/// cpu, wall-clock times inside the window, caplen = min(len, snaplen),
/// the original length, the bytes themselves; both modes.
#[test]
fn records_match_counts_in_both_modes() {
    for mode in [XdpMode::Native, XdpMode::Generic] {
        let net = Net::with_queues(2);
        let vb = net.vb();
        let mut opts = Options::new(mode, both());
        opts.snaplen = Some(60);
        let mut xdp = net.in_b(|| XdpCapture::attach(vb, &opts).unwrap());
        let mut readers = xdp.take_readers();
        assert_eq!(readers.iter().map(|r| r.cpu()).collect::<Vec<_>>(), [0, 1]);
        let t0 = wall_ns() as u64;
        xdp.start().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| net.send(0, 100, 4, 0)); // 46-byte frames: under the snaplen
            s.spawn(|| net.send(1, 150, 100, 1)); // 142-byte frames: cut
        });
        xdp.stop().unwrap();
        let t1 = wall_ns() as u64;
        let recs = drain(&mut readers);
        let c = xdp.counts().unwrap();
        for (cpu, n, len, tag) in [(0, 100, HEADERS + 5, 0u8), (1, 150, HEADERS + 100, 1)] {
            let r = &recs[cpu as usize];
            assert_eq!(c.cpu(cpu).packets, n as u64, "{mode:?} cpu{cpu}");
            assert_eq!(r.len(), n, "{mode:?} cpu{cpu}");
            for (i, rec) in r.iter().enumerate() {
                let Rec {
                    ts,
                    len: l,
                    cpu: rcpu,
                    data,
                    queue,
                    ifindex,
                } = rec;
                assert!(
                    (t0..=t1).contains(ts),
                    "{mode:?} cpu{cpu} #{i}: {ts} not in {t0}..{t1}"
                );
                assert!(
                    i == 0 || r[i - 1].ts <= *ts,
                    "{mode:?} cpu{cpu} #{i} out of order"
                );
                // Native: veth's rx queue c, fed by va's tx queue c.
                // Generic: veth records no rx queue (queue 0).
                let q = if mode == XdpMode::Native { cpu } else { 0 };
                assert_eq!((*l as usize, *rcpu, *queue, *ifindex), (len, cpu, q, vb));
                assert_eq!(data.len(), len.min(60));
                assert_eq!(&data[..6], &[2, 0, 0, 0, 0, 2]); // to vb
                if data.len() >= HEADERS + 5 {
                    let seq = u32::from_le_bytes(data[HEADERS..HEADERS + 4].try_into().unwrap());
                    assert_eq!((seq, data[HEADERS + 4]), (i as u32, tag));
                }
            }
        }
        let p = XdpRecord {
            cpu: 0,
            monotonic_ns: 0,
            sec: 1,
            nsec: 2,
            len: 46,
            queue: 0,
            ifindex: vb,
            data: &recs[0][0].data,
        }
        .packet(crate::packet::ARPHRD_ETHER);
        assert_eq!(
            (p.net_offset, p.protocol, p.pkttype, p.halen),
            (14, 0x0008, 0, 6)
        );
        assert_eq!(&p.addr[..6], &[2, 0, 0, 0, 0, 1]);
    }
}

/// Records that wrap around the end of the ring come out whole.
#[test]
fn records_wrap_around_the_ring() {
    let net = Net::new();
    let vb = net.vb();
    let mut opts = Options::new(XdpMode::Native, std::iter::once(0).collect());
    opts.snaplen = Some(2000);
    opts.ring_bytes = 0; // the smallest ring
    let mut xdp = net.in_b(|| XdpCapture::attach(vb, &opts).unwrap());
    let mut readers = xdp.take_readers();
    xdp.start().unwrap();
    let mut seen = 0u32;
    // 7 rounds of 50 records of ~1030 bytes: 350 KiB through 128 KiB.
    for _ in 0..7 {
        net.send(0, 50, 1000 - 4, 9);
        readers[0].read(|rec| {
            assert_eq!(rec.data.len(), HEADERS + 996);
            assert_eq!(rec.data[HEADERS + 4], 9);
            assert!(rec.data[HEADERS + 5..].iter().all(|&b| b == 0));
            seen += 1;
            ControlFlow::Continue(())
        });
    }
    xdp.stop().unwrap();
    assert_eq!(seen, 350);
    assert_eq!(xdp.counts().unwrap().cpu(0).lost, 0);
}

/// A full ring loses records: the program counts them exactly
/// (records plus lost make the frames sent), and the kernel's
/// PERF_RECORD_LOST later reports the same number.
#[test]
fn lost_records_are_counted() {
    let net = Net::new();
    let vb = net.vb();
    let mut opts = Options::new(XdpMode::Native, std::iter::once(0).collect());
    opts.snaplen = Some(2000);
    opts.ring_bytes = 0;
    let mut xdp = net.in_b(|| XdpCapture::attach(vb, &opts).unwrap());
    let mut readers = xdp.take_readers();
    xdp.start().unwrap();
    net.send(0, 1000, 1000, 0); // ~1 MB into 128 KiB, nobody reading
    let mut records = 0u64;
    let mut stats = readers[0].read(|_| {
        records += 1;
        ControlFlow::Continue(())
    });
    let lost = xdp.counts().unwrap().cpu(0).lost;
    assert!(lost > 0);
    assert_eq!(records + lost, 1000);
    assert_eq!(stats.lost, 0); // not written yet: the ring was full
                               // The next record that fits brings the kernel's report first.
    net.send(0, 1, 1000, 0);
    xdp.stop().unwrap();
    stats = readers[0].read(|_| {
        records += 1;
        ControlFlow::Continue(())
    });
    assert_eq!(stats.lost, lost);
    assert_eq!(records, 1001 - lost);
    assert_eq!(xdp.counts().unwrap().cpu(0).packets, 1001 - lost);
}

/// -c N: exactly N frames over all cpus, and the done signal comes.
#[test]
fn count_budget_is_exact() {
    for snaplen in [None, Some(64)] {
        let net = Net::new();
        let vb = net.vb();
        let mut opts = Options::new(XdpMode::Native, both());
        opts.count = 250;
        opts.snaplen = snaplen;
        let mut xdp = net.in_b(|| XdpCapture::attach(vb, &opts).unwrap());
        let mut readers = xdp.take_readers();
        xdp.start().unwrap();
        assert!(!xdp.is_done());
        net.send_both(200, 200, 10);
        assert!(xdp.is_done());
        xdp.stop().unwrap();
        let c = xdp.counts().unwrap();
        assert_eq!(c.total().packets, 250, "{snaplen:?}");
        if snaplen.is_some() {
            let recs = drain(&mut readers);
            assert_eq!(recs[0].len() + recs[1].len(), 250);
            assert_eq!(recs[0].len() as u64, c.cpu(0).packets);
        }
    }
}

/// Frames beyond a page (multi-buffer XDP on a 64 KiB MTU) are counted
/// whole and cut to MAX_SNAPLEN in records; both modes.
#[test]
fn jumbo_frames() {
    for mode in [XdpMode::Native, XdpMode::Generic] {
        let net = Net::new();
        sh(&["ip", "-n", &net.a, "link", "set", "va", "mtu", "65535"]);
        sh(&["ip", "-n", &net.b, "link", "set", "vb", "mtu", "65535"]);
        let vb = net.vb();
        let mut opts = Options::new(mode, both());
        opts.snaplen = Some(262_144);
        let mut xdp = net.in_b(|| XdpCapture::attach(vb, &opts).unwrap());
        let mut readers = xdp.take_readers();
        xdp.start().unwrap();
        net.send(0, 3, 65_507, 7); // the largest IPv4 datagram
        xdp.stop().unwrap();
        let recs = drain(&mut readers);
        assert_eq!(recs[0].len(), 3, "{mode:?}");
        for r in &recs[0] {
            assert_eq!(r.len as usize, HEADERS + 65_507, "{mode:?}");
            assert_eq!(r.data.len(), MAX_SNAPLEN as usize, "{mode:?}");
            assert_eq!(r.data[HEADERS + 4], 7);
        }
        let c = xdp.counts().unwrap().cpu(0);
        assert_eq!((c.packets, c.bytes), (3, 3 * (HEADERS + 65_507) as u64));
    }
}

/// With rps_cpus on vb naming only cpu1 and the sender on cpu0, native
/// XDP sees the frames on cpu0 (veth's NAPI, before RPS), generic XDP
/// on cpu1 (after RPS moved them).
#[test]
fn rps_moves_generic_but_not_native() {
    for (mode, cpu) in [(XdpMode::Native, 0), (XdpMode::Generic, 1)] {
        let net = Net::new();
        #[rustfmt::skip]
        sh(&["ip", "netns", "exec", &net.b, "sh", "-c",
             "echo 2 > /sys/class/net/vb/queues/rx-0/rps_cpus"]);
        let vb = net.vb();
        let xdp = net.in_b(|| XdpCapture::attach(vb, &Options::new(mode, both())).unwrap());
        xdp.start().unwrap();
        net.send(0, 200, 10, 0);
        xdp.stop().unwrap();
        let c = xdp.counts().unwrap();
        assert_eq!(c.cpu(cpu).packets, 200, "{mode:?}");
        assert_eq!(c.cpu(1 - cpu).packets, 0, "{mode:?}");
    }
}

/// A reader is woken after every record, or only past the watermark.
#[test]
fn wakeups() {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    for (wakeup, woken) in [
        (Wakeup::EveryRecord, true),
        (Wakeup::Bytes(64 * 1024), false),
    ] {
        let net = Net::new();
        let vb = net.vb();
        let mut opts = Options::new(XdpMode::Native, std::iter::once(0).collect());
        opts.snaplen = Some(100);
        opts.wakeup = wakeup;
        let mut xdp = net.in_b(|| XdpCapture::attach(vb, &opts).unwrap());
        let readers = xdp.take_readers();
        xdp.start().unwrap();
        net.send(0, 1, 10, 0);
        // perf_output_wakeup marks the ring readable before it returns.
        let mut fds = [PollFd::new(readers[0].fd(), PollFlags::POLLIN)];
        let n = poll(&mut fds, PollTimeout::ZERO).unwrap();
        assert_eq!(n > 0, woken, "{wakeup:?}");
        assert!(!readers[0].is_empty());
    }
}

#[test]
fn capture_and_readers_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<XdpCapture>();
    send_sync::<PerfReader>();
}

/// A multi-queue tun (IFF_TUN) in namespace `b` with one fd per queue;
/// a packet written to queue q's fd is received on queue q.
fn mq_tun(net: &Net, queues: usize) -> Vec<std::os::fd::OwnedFd> {
    let fds = net.in_b(|| crate::sys::testutil::tun("mqtun", queues));
    sh(&[
        "ip",
        "-n",
        &net.b,
        "addr",
        "add",
        "10.9.0.1/24",
        "dev",
        "mqtun",
    ]);
    sh(&["ip", "-n", &net.b, "link", "set", "mqtun", "up"]);
    fds
}

/// An IPv4/UDP packet from 10.9.0.2 to 10.9.0.1:UDP_PORT.
fn tun_packet() -> Vec<u8> {
    let mut p = vec![
        0x45, 0, 0, 33, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 9, 0, 2, 10, 9, 0, 1,
    ];
    let sum: u32 = p
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    let sum = (sum & 0xffff) + (sum >> 16);
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p.extend_from_slice(&[
        0x30, 0x39, 0x27, 0x0f, 0, 13, 0, 0, b'x', b'd', b'p', b'!', b'!',
    ]);
    p
}

/// A multi-queue tun (IFF_TUN, no link header): no native XDP, so
/// `auto` attaches in generic mode, and the rx queue in the XDP context
/// is the queue the packet was written to (tun records it); the queue
/// vantage can rely on it.
#[test]
fn tun_queues_in_generic_mode() {
    let net = Net::new();
    let fds = mq_tun(&net, 2);
    let tun = net.in_b(|| crate::sys::afpacket::ifindex("mqtun").unwrap());
    let mut opts = Options::new(XdpMode::Native, both());
    let e = net.in_b(|| XdpCapture::attach(tun, &opts)).err().unwrap();
    assert!(matches!(e, XdpError::NoNative { .. }), "{e}");
    opts.mode = XdpMode::Auto;
    opts.queues = 2;
    opts.snaplen = Some(100);
    let mut xdp = net.in_b(|| XdpCapture::attach(tun, &opts).unwrap());
    assert_eq!(xdp.hook(), Hook::Generic);
    let mut readers = xdp.take_readers();
    xdp.start().unwrap();
    let p = tun_packet();
    for (q, n) in [(0usize, 3), (1, 5)] {
        for _ in 0..n {
            let n = nix::unistd::write(&fds[q], &p).unwrap();
            assert_eq!(n, p.len());
        }
    }
    xdp.stop().unwrap();
    let c = xdp.counts().unwrap();
    assert_eq!((c.queue(0).packets, c.queue(1).packets), (3, 5));
    let recs: Vec<Rec> = drain(&mut readers).into_iter().flatten().collect();
    assert_eq!(recs.len(), 8);
    for r in &recs {
        assert_eq!((r.len as usize, &r.data[..]), (p.len(), &p[..]));
    }
    assert_eq!(recs.iter().filter(|r| r.queue == 1).count(), 5);
    let pk = XdpRecord {
        cpu: 0,
        monotonic_ns: 0,
        sec: 0,
        nsec: 0,
        len: p.len() as u32,
        queue: 0,
        ifindex: tun,
        data: &p,
    }
    .packet(0xfffe);
    assert_eq!((pk.net_offset, pk.protocol, pk.halen), (0, 0x0008, 0));
}

/// Deleting the interface detaches the program; the capture notices.
#[test]
fn interface_gone_is_noticed() {
    let net = Net::new();
    let vb = net.vb();
    let xdp = net.in_b(|| XdpCapture::attach(vb, &Options::new(XdpMode::Native, both())).unwrap());
    assert!(xdp.is_attached());
    sh(&["ip", "-n", &net.b, "link", "del", "vb"]);
    assert!(!xdp.is_attached());
    xdp.stop().unwrap();
    assert_eq!(xdp.counts().unwrap().total().packets, 0);
}

/// The fallback for kernels that refuse MEMBARRIER_CMD_GLOBAL runs on
/// every cpu asked for, offline ones included (their pin fails).
#[test]
fn quiesce_by_running_everywhere_returns() {
    quiesce_by_running_on(&[0, 1, 4095].into_iter().collect());
}

/// A tiny XDP_PASS program of the test's own.
fn foreign_program() -> Program {
    let insns = [ebpf::mov_imm(Reg::R0, XDP_PASS), ebpf::exit()];
    Program::load_with(
        ProgType::Xdp,
        "foreign",
        &insns,
        LoadOptions {
            expected_attach_type: BPF_XDP,
            prog_flags: 0,
            ..LoadOptions::default()
        },
    )
    .unwrap()
}

/// Another program on the interface, attached through netlink or a
/// link, in either mode: refused with its id in the message, and it
/// stays attached.
#[test]
fn existing_program_is_refused_and_left_alone() {
    let net = Net::new();
    let vb = net.vb();
    let foreign = foreign_program();
    let foreign_id = foreign.id().unwrap();
    for (how, flags) in [
        ("netlink", XDP_FLAGS_SKB_MODE),
        ("netlink", XDP_FLAGS_DRV_MODE),
        ("link", XDP_FLAGS_SKB_MODE),
        ("link", XDP_FLAGS_DRV_MODE),
    ] {
        let link = net.in_b(|| match how {
            "netlink" => {
                netlink::set_xdp(vb, foreign.as_raw_fd(), flags).unwrap();
                None
            }
            _ => Some(Link::xdp(&foreign, vb, flags).unwrap()),
        });
        for mode in [XdpMode::Auto, XdpMode::Native, XdpMode::Generic] {
            let e = net
                .in_b(|| XdpCapture::attach(vb, &Options::new(mode, both())))
                .err()
                .unwrap_or_else(|| panic!("{how} {flags}: {mode:?} attached"));
            let kind = if flags == XDP_FLAGS_DRV_MODE {
                "native"
            } else {
                "generic"
            };
            assert_eq!(
                e.to_string(),
                format!(
                    "interface 'vb' already has an XDP program (id {foreign_id}, {kind}); \
                     rxtxcpu leaves it alone"
                ),
                "{how} {flags} {mode:?}"
            );
            let still = net.in_b(|| attached_program(vb)).unwrap().unwrap();
            assert_eq!(still.id, foreign_id);
        }
        // What the kernel said: EBUSY for the same mode, EEXIST for the
        // other one.
        let ours = foreign_program();
        for (f, errno) in [
            (flags, libc::EBUSY),
            (
                flags ^ (XDP_FLAGS_SKB_MODE | XDP_FLAGS_DRV_MODE),
                libc::EEXIST,
            ),
        ] {
            let e = net.in_b(|| Link::xdp(&ours, vb, f)).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(errno), "{how} {flags} then {f}");
        }
        match link {
            None => net.in_b(|| netlink::set_xdp(vb, -1, flags)).unwrap(),
            Some(l) => drop(l),
        }
        net.assert_detached(vb);
    }
}

#[test]
fn native_mode_on_lo_is_refused_auto_falls_back() {
    let net = Net::new();
    let lo = net.in_b(|| crate::sys::afpacket::ifindex("lo").unwrap());
    let e = net
        .in_b(|| XdpCapture::attach(lo, &Options::new(XdpMode::Native, both())))
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .starts_with("interface 'lo' does not support native XDP"),
        "{e}"
    );
    let xdp = net
        .in_b(|| XdpCapture::attach(lo, &Options::new(XdpMode::Auto, both())))
        .unwrap();
    assert_eq!(xdp.hook(), Hook::Generic);
}

/// Sets the calling thread's effective capabilities to `keep` (the
/// permitted set stays, the thread only): as a user with just those.
use crate::sys::testutil::{limit_caps, CAP_BPF, CAP_IPC_LOCK, CAP_NET_ADMIN, CAP_PERFMON};

/// Without the privileges: the error names them. With exactly CAP_BPF
/// and CAP_NET_ADMIN (and CAP_PERFMON, CAP_IPC_LOCK for the packets)
/// it works.
#[test]
fn privileges() {
    let net = Net::new();
    let vb = net.vb();
    let mut opts = Options::new(XdpMode::Native, both());
    let attach = |caps: &'static [u32], opts: &Options| {
        let r = net.in_b(|| {
            limit_caps(caps);
            XdpCapture::attach(vb, opts).map(|_| ())
        });
        // Gone before the next try (see assert_detached).
        net.assert_detached(vb);
        r
    };
    for caps in [&[][..], &[CAP_BPF], &[CAP_NET_ADMIN]] {
        let e = attach(caps, &opts).unwrap_err();
        assert!(matches!(e, XdpError::Permission { .. }), "{caps:?}: {e}");
        assert!(
            e.to_string()
                .contains("(the XDP capture needs root, or CAP_BPF and CAP_NET_ADMIN)"),
            "{e}"
        );
    }
    attach(&[CAP_BPF, CAP_NET_ADMIN], &opts).unwrap();
    opts.snaplen = Some(100);
    let e = attach(&[CAP_BPF, CAP_NET_ADMIN], &opts).unwrap_err();
    assert!(e.to_string().contains("CAP_PERFMON"), "{e}");
    // Default-sized rings are beyond the unprivileged lock limit.
    let e = attach(&[CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON], &opts).unwrap_err();
    assert!(e.to_string().contains("perf_event_mlock_kb"), "{e}");
    attach(&[CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_IPC_LOCK], &opts).unwrap();
}

/// Helper process for `sigkill_leaves_no_program`: attaches in the
/// namespace named by the environment, says so, then waits to be
/// killed. Ignored unless run by that test.
#[test]
#[ignore]
fn helper_attach_and_wait() {
    let Ok(ns) = std::env::var("RXTXCPU_XDP_HELPER_NS") else {
        return;
    };
    enter(&ns);
    let vb = crate::sys::afpacket::ifindex("vb").unwrap();
    let mut opts = Options::new(XdpMode::Native, both());
    opts.snaplen = Some(64);
    let xdp = XdpCapture::attach(vb, &opts).unwrap();
    xdp.start().unwrap();
    println!("attached {}", xdp.ids().unwrap().0);
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn sigkill_leaves_no_program() {
    let net = Net::new();
    let vb = net.vb();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            crate::sys::testutil::test_name(module_path!(), "helper_attach_and_wait").as_str(),
            "--ignored",
            "--nocapture",
        ])
        .env("RXTXCPU_XDP_HELPER_NS", &net.b)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    while !line.starts_with("attached ") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "helper ended early");
    }
    let id: u32 = line["attached ".len()..].trim().parse().unwrap();
    assert_eq!(
        net.in_b(|| attached_program(vb)).unwrap().map(|a| a.id),
        Some(id)
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The link's last descriptor closed when the process died.
    assert_eq!(net.in_b(|| attached_program(vb)).unwrap(), None);
}
