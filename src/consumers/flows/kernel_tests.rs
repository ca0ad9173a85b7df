//! Keys of packets the kernel really delivers, in a network namespace of
//! the test's own: rings on one Ethernet interface (a veth), on a tun
//! device, and on all interfaces (the cooked capture's socket), with
//! plain, VLAN-tagged and double-tagged traffic.
//!
//! What it shows (Linux 6.18): the receiving veth's taps see the outer tag
//! taken out of the frame (skb_vlan_untag in __netif_receive_skb_core,
//! no VLAN module or offload needed) and an inner tag left in it, with
//! `protocol` 802.1Q and the network header at that tag; the sending
//! side's taps see the frame as sent, tags in it, with `protocol` the
//! outer tag's type but the network header behind all tags; a tun
//! device's packets start at the IP header (net_offset 0). Every copy of a
//! packet gives the same flow key.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::OwnedFd;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sched::{unshare, CloneFlags};

use super::*;
use crate::packet::LinkType;
use crate::sys::afpacket::{self, PacketSocket, PACKET_OUTGOING};
use crate::sys::ring::{Geometry, Ring};

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What one captured packet looked like, and its key.
#[derive(Debug)]
#[allow(dead_code)] // Read through Debug, when the test fails.
struct Seen {
    ifindex: i32,
    hatype: u16,
    pkttype: u8,
    protocol: u16,
    net_offset: usize,
    vlan: Option<(u16, u16)>,
    key: FlowKey,
}

/// Reads `ring` until `want` packets were seen or 5 s passed.
fn read(ring: &mut Ring, link: LinkType, want: usize) -> Vec<Seen> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.len() < want && Instant::now() < deadline {
        match ring.next_block() {
            Some(block) => {
                for p in block.packets() {
                    seen.push(Seen {
                        ifindex: p.ifindex,
                        hatype: p.hatype,
                        pkttype: p.pkttype,
                        protocol: u16::from_be(p.protocol),
                        net_offset: p.net_offset,
                        vlan: p.vlan,
                        key: FlowKey::of_packet(link, &p),
                    });
                }
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    seen
}

fn ring_on(ifindex: u32) -> (PacketSocket, Ring) {
    let sock = PacketSocket::new().unwrap();
    let ring = Ring::new(&sock, Geometry::new(256, 1 << 20, 5)).unwrap();
    sock.bind(ifindex).unwrap();
    (sock, ring)
}

use crate::sys::testutil::inject;

fn tun_device(name: &str) -> OwnedFd {
    crate::sys::testutil::tun(name, 1).remove(0)
}

fn udp_ipv4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 32, 0, 1, 0, 0, 64, 17, 0, 0];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 12, 0, 0, 1, 2, 3, 4]);
    p
}

fn key(src: &str, dst: &str, sport: u16, dport: u16) -> FlowKey {
    FlowKey::ip(
        src.parse().unwrap(),
        dst.parse().unwrap(),
        17,
        Some((sport, dport)),
    )
}

#[test]
fn kernel_packets_give_the_expected_keys() {
    // unshare() moves only this thread; `ip` children inherit its
    // namespace, which goes away with the thread's last socket.
    std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        // No IPv6 (router solicitations, MLD) to tell apart.
        for f in ["all", "default"] {
            std::fs::write(format!("/proc/sys/net/ipv6/conf/{f}/disable_ipv6"), "1").unwrap();
        }
        ip(&[
            "link", "add", "name", "fa", "type", "veth", "peer", "name", "fb",
        ]);
        let _tun = tun_device("ft");
        ip(&["addr", "add", "10.8.0.1/24", "dev", "fa"]);
        ip(&["addr", "add", "10.7.0.1/24", "dev", "ft"]);
        for dev in ["fa", "fb", "ft"] {
            ip(&["link", "set", dev, "up"]);
        }
        // The veth drops what it is given until linkwatch has activated
        // its qdisc.
        crate::sys::testutil::wait_link_active_here("fa");
        crate::sys::testutil::wait_link_active_here("fb");
        // A static neighbour: no ARP of the kernel's own.
        ip(&[
            "neigh",
            "add",
            "10.8.0.2",
            "lladdr",
            "02:00:00:00:00:02",
            "dev",
            "fa",
        ]);
        let [fa, fb, ft] = ["fa", "fb", "ft"].map(|n| afpacket::ifindex(n).unwrap());

        let (_sb, mut ring_fb) = ring_on(fb);
        let (_st, mut ring_ft) = ring_on(ft);
        let (_sa, mut ring_all) = ring_on(0);

        let plain = UdpSocket::bind("10.8.0.1:5001").unwrap();
        let tunneled = UdpSocket::bind("10.7.0.1:5002").unwrap();
        for _ in 0..3 {
            plain
                .send_to(
                    b"plain",
                    SocketAddrV4::new(Ipv4Addr::new(10, 8, 0, 2), 6001),
                )
                .unwrap();
        }
        for _ in 0..2 {
            tunneled
                .send_to(b"tun", SocketAddrV4::new(Ipv4Addr::new(10, 7, 0, 2), 6002))
                .unwrap();
        }
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        // 802.1ad VLAN 10, 802.1Q VLAN 20, IPv4 UDP.
        let mut qinq = frame.clone();
        qinq.extend_from_slice(&[0x88, 0xa8, 0x20, 10, 0x81, 0x00, 0x00, 20, 0x08, 0x00]);
        qinq.extend_from_slice(&udp_ipv4([10, 9, 0, 1], [10, 9, 0, 2], 5000, 6000));
        inject(fa, &qinq);
        // 802.1Q VLAN 7, ARP request.
        let mut arp = frame.clone();
        arp.extend_from_slice(&[0x81, 0x00, 0x00, 7, 0x08, 0x06]);
        arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 8, 0, 1]);
        arp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 8, 0, 9]);
        arp.resize(arp.len().max(60), 0);
        inject(fa, &arp);

        let want_plain = key("10.8.0.1", "10.8.0.2", 5001, 6001);
        let want_tun = key("10.7.0.1", "10.7.0.2", 5002, 6002);
        let want_qinq = key("10.9.0.1", "10.9.0.2", 5000, 6000);
        let count = |seen: &[Seen], k: FlowKey| seen.iter().filter(|s| s.key == k).count();

        // On fb, received Ethernet frames.
        let on_fb = read(&mut ring_fb, LinkType::Ethernet, 5);
        assert_eq!(on_fb.len(), 5, "{on_fb:#?}");
        assert_eq!(count(&on_fb, want_plain), 3, "{on_fb:#?}");
        let q: Vec<&Seen> = on_fb.iter().filter(|s| s.key == want_qinq).collect();
        assert_eq!(q.len(), 1, "{on_fb:#?}");
        // The outer tag was taken out of the frame, the inner one left in
        // it, and the network header is at the inner tag.
        assert_eq!(q[0].vlan, Some((0x88a8, 0x200a)), "{on_fb:#?}");
        assert_eq!((q[0].protocol, q[0].net_offset), (0x8100, 14), "{on_fb:#?}");
        let a: Vec<&Seen> = on_fb
            .iter()
            .filter(|s| s.key.proto() == Proto::Ether(0x0806))
            .collect();
        assert_eq!(a.len(), 1, "{on_fb:#?}");
        assert_eq!(a[0].vlan, Some((0x8100, 7)), "{on_fb:#?}");
        assert_eq!(a[0].key.vlans(), vec![7]);
        let arp_key = a[0].key;

        // On the tun device, sent bare IP.
        let on_ft = read(&mut ring_ft, LinkType::Raw, 2);
        assert_eq!(on_ft.len(), 2, "{on_ft:#?}");
        assert_eq!(count(&on_ft, want_tun), 2, "{on_ft:#?}");

        // On all interfaces: fa's and fb's copies of the veth traffic, and
        // the tun's.
        let all = read(&mut ring_all, LinkType::LinuxSll2, 12);
        assert_eq!(all.len(), 12, "{all:#?}");
        assert_eq!(count(&all, want_plain), 6, "{all:#?}");
        assert_eq!(count(&all, want_qinq), 2, "{all:#?}");
        assert_eq!(count(&all, arp_key), 2, "{all:#?}");
        assert_eq!(count(&all, want_tun), 2, "{all:#?}");
        let sent = |i: u32| {
            all.iter()
                .filter(|s| s.ifindex == i as i32 && s.pkttype == PACKET_OUTGOING)
                .count()
        };
        assert_eq!((sent(fa), sent(ft)), (5, 2), "{all:#?}");
        // The sent copy of the double-tagged frame: `protocol` is the outer
        // tag's type but the network header is behind both tags, so the
        // two disagree: why Ethernet devices are parsed from the frame.
        let q: Vec<&Seen> = all
            .iter()
            .filter(|s| s.key == want_qinq && s.pkttype == PACKET_OUTGOING)
            .collect();
        assert_eq!(q.len(), 1, "{all:#?}");
        assert_eq!(
            (q[0].protocol, q[0].net_offset, q[0].vlan),
            (0x88a8, 22, None)
        );
        for s in all.iter().filter(|s| s.ifindex == ft as i32) {
            assert_eq!((s.hatype, s.net_offset), (0xfffe, 0), "{all:#?}");
        }
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}
