//! One line about a packet, in the style of `tcpdump -n -S`: what a
//! repeating packet is, at a glance.
//!
//! The line is `<protocol> <source> > <destination>: <what tcpdump
//! says>`, where tcpdump begins with `IP` or `IP6` and names the protocol
//! after the colon:
//!
//! ```text
//! tcp 192.0.2.1.54517 > 192.0.2.2.80: Flags [.], ack 3787879787, win 6551, length 0
//! udp 192.0.2.1.53999 > 192.0.2.2.7777: length 8
//! icmp 192.0.2.1 > 192.0.2.2: echo request, id 1, seq 2, length 64
//! icmp6 2001:db8::1 > ff02::1:ff00:2: neighbor solicitation, who has 2001:db8::2, length 32
//! arp who-has 10.0.0.2 tell 10.0.0.1, length 28
//! lldp 02:00:00:00:00:01 > 01:80:c2:00:00:0e
//! ```
//!
//! TCP sequence numbers are absolute (there is no connection to make them
//! relative to), as with `tcpdump -S`. VLAN tags come first (`vlan 10`,
//! outer first; tcpdump shows them with `-e` only), and in a LINUX_SLL2
//! record the interface index (`ifindex 3`). Protocols are named as in
//! the flow table (`gre`, `ip-proto-99`, `ethertype-0x88b5`). What the
//! bytes do not hold (a header cut short) ends the line with tcpdump's
//! `[|tcp]` mark; nothing in the bytes makes it panic or read past them.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::consumers::flows::key::{ethertype_by_version, skip_vlan_tags};
use crate::consumers::flows::Proto;
use crate::packet::LinkType;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_ARP: u16 = 0x0806;
use crate::packet::SLL2_LEN;

/// The decode line of a record (`bytes`, as the pcap output writes it:
/// from the link header of `link`).
pub fn summary(link: LinkType, bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut vlans: Vec<u16> = Vec::new();
    let mut tag = |_tpid: u16, tci: u16| vlans.push(tci & 0x0fff);
    let (macs, ethertype, l3) = match link {
        LinkType::Ethernet => {
            if bytes.len() < 14 {
                return "[|ether]".to_string();
            }
            let ethertype = u16::from_be_bytes([bytes[12], bytes[13]]);
            let (e, l3) = skip_vlan_tags(ethertype, &bytes[14..], &mut tag);
            (Some(&bytes[..12]), e, l3)
        }
        LinkType::Raw => (None, ethertype_by_version(bytes), bytes),
        LinkType::LinuxSll2 => {
            if bytes.len() < SLL2_LEN {
                return "[|sll2]".to_string();
            }
            let ifindex = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            let _ = write!(out, "ifindex {ifindex} ");
            let protocol = u16::from_be_bytes([bytes[0], bytes[1]]);
            let (mut e, l3) = skip_vlan_tags(protocol, &bytes[SLL2_LEN..], &mut tag);
            if e == 0 {
                e = ethertype_by_version(l3);
            }
            (None, e, l3)
        }
    };
    for v in vlans {
        let _ = write!(out, "vlan {v} ");
    }
    match ethertype {
        ETHERTYPE_IPV4 => ipv4(&mut out, l3),
        ETHERTYPE_IPV6 => ipv6(&mut out, l3),
        ETHERTYPE_ARP => arp(&mut out, l3),
        // A raw IP device's packet that is neither IPv4 nor IPv6.
        _ if link == LinkType::Raw => match l3.first() {
            Some(b) => {
                let _ = write!(out, "ip version {}", b >> 4);
            }
            None => out.push_str("ip [|ip]"),
        },
        _ => {
            let name = Proto::Ether(if ethertype < 0x0600 { 0 } else { ethertype }).name();
            out.push_str(&name);
            if let Some(m) = macs {
                let _ = write!(out, " {} > {}", mac(&m[6..12]), mac(&m[..6]));
            }
        }
    }
    out
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

fn v4(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::from(be32(b, at)?))
}

fn v6(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let a: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(a))
}

fn mac(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An IP packet's transport, with its addresses (as strings) and the
/// length of what follows the IP headers.
struct Ip<'a> {
    src: String,
    dst: String,
    proto: u8,
    /// From the IP header's length (what tcpdump's lengths come from).
    len: usize,
    /// The captured bytes of the transport.
    data: &'a [u8],
    /// Not the first fragment: no transport header.
    later_fragment: Option<u32>,
    v6: bool,
}

fn ipv4(out: &mut String, b: &[u8]) {
    let (Some(src), Some(dst)) = (v4(b, 12), v4(b, 16)) else {
        out.push_str("ip [|ip]");
        return;
    };
    let hlen = usize::from(b[0] & 0x0f) * 4;
    let total = usize::from(be16(b, 2).unwrap_or(0));
    if hlen < 20 {
        let _ = write!(out, "ip {src} > {dst}: bad header length {hlen}");
        return;
    }
    let frag = be16(b, 6).unwrap_or(0);
    let offset = u32::from(frag & 0x1fff) * 8;
    transport(
        out,
        Ip {
            src: src.to_string(),
            dst: dst.to_string(),
            proto: b[9],
            len: total.saturating_sub(hlen),
            data: b.get(hlen..).unwrap_or(&[]),
            later_fragment: (offset != 0).then_some(offset),
            v6: false,
        },
    );
}

fn ipv6(out: &mut String, b: &[u8]) {
    let (Some(src), Some(dst), Some(payload), Some(&next)) =
        (v6(b, 8), v6(b, 24), be16(b, 4), b.get(6))
    else {
        out.push_str("ip6 [|ip6]");
        return;
    };
    let mut len = usize::from(payload);
    let mut next = next;
    let mut at = 40;
    let mut later_fragment = None;
    // The extension headers the kernel's flow dissector also walks
    // (hop-by-hop, routing, fragment, destination options,
    // authentication); each takes at least 8 bytes, so the walk ends.
    loop {
        let ext_len = match next {
            0 | 43 | 60 => b.get(at + 1).map(|&l| (usize::from(l) + 1) * 8),
            44 => {
                if let Some(f) = be16(b, at + 2) {
                    let offset = u32::from(f >> 3) * 8;
                    if offset != 0 {
                        later_fragment = Some(offset);
                    }
                }
                Some(8)
            }
            51 => b.get(at + 1).map(|&l| (usize::from(l) + 2) * 4),
            _ => break,
        };
        let (Some(ext_len), Some(&n)) = (ext_len, b.get(at)) else {
            let _ = write!(out, "ip6 {src} > {dst}: [|ip6]");
            return;
        };
        if at + ext_len > b.len() {
            let _ = write!(out, "ip6 {src} > {dst}: [|ip6]");
            return;
        }
        next = n;
        at += ext_len;
        len = len.saturating_sub(ext_len);
        if later_fragment.is_some() {
            break;
        }
    }
    transport(
        out,
        Ip {
            src: src.to_string(),
            dst: dst.to_string(),
            proto: next,
            len,
            data: &b[at..],
            later_fragment,
            v6: true,
        },
    );
}

fn transport(out: &mut String, ip: Ip<'_>) {
    let name = match (ip.proto, ip.v6) {
        (58, true) => "icmp6".to_string(),
        (p, _) => Proto::Ip(p).name(),
    };
    if let Some(offset) = ip.later_fragment {
        let _ = write!(
            out,
            "{name} {} > {}: fragment offset {offset}, length {}",
            ip.src, ip.dst, ip.len
        );
        return;
    }
    let d = ip.data;
    match (ip.proto, ip.v6) {
        (6, _) => tcp(out, &ip, d),
        (17, _) => {
            let (Some(sport), Some(dport)) = (be16(d, 0), be16(d, 2)) else {
                let _ = write!(out, "udp {} > {}: [|udp]", ip.src, ip.dst);
                return;
            };
            let _ = write!(out, "udp {}.{sport} > {}.{dport}: ", ip.src, ip.dst);
            match be16(d, 4) {
                Some(ulen) if ulen >= 8 => {
                    let _ = write!(out, "length {}", ulen - 8);
                }
                Some(ulen) => {
                    let _ = write!(out, "bad length {ulen}");
                }
                None => out.push_str("[|udp]"),
            }
        }
        (1, false) => {
            let _ = write!(out, "icmp {} > {}: ", ip.src, ip.dst);
            icmp(out, d);
            let _ = write!(out, ", length {}", ip.len);
        }
        (58, true) => {
            let _ = write!(out, "icmp6 {} > {}: ", ip.src, ip.dst);
            icmp6(out, d);
            let _ = write!(out, ", length {}", ip.len);
        }
        _ => {
            let _ = write!(out, "{name} {} > {}: length {}", ip.src, ip.dst, ip.len);
        }
    }
}

fn tcp(out: &mut String, ip: &Ip<'_>, d: &[u8]) {
    let (Some(sport), Some(dport)) = (be16(d, 0), be16(d, 2)) else {
        let _ = write!(out, "tcp {} > {}: [|tcp]", ip.src, ip.dst);
        return;
    };
    let _ = write!(out, "tcp {}.{sport} > {}.{dport}: ", ip.src, ip.dst);
    let (Some(seq), Some(ack), Some(&off), Some(&flags), Some(win), Some(urg)) = (
        be32(d, 4),
        be32(d, 8),
        d.get(12),
        d.get(13),
        be16(d, 14),
        be16(d, 18),
    ) else {
        out.push_str("[|tcp]");
        return;
    };
    let hlen = usize::from(off >> 4) * 4;
    if hlen < 20 {
        let _ = write!(out, "bad header length {hlen}");
        return;
    }
    const FIN: u8 = 0x01;
    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const ACK: u8 = 0x10;
    const URG: u8 = 0x20;
    // tcpdump's order: F S R P . U E W.
    let names = [
        (FIN, 'F'),
        (SYN, 'S'),
        (RST, 'R'),
        (0x08, 'P'),
        (ACK, '.'),
        (URG, 'U'),
        (0x40, 'E'),
        (0x80, 'W'),
    ];
    let set: String = names
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, c)| c)
        .collect();
    let _ = write!(
        out,
        "Flags [{}]",
        if set.is_empty() { "none" } else { &set }
    );
    let data = ip.len.saturating_sub(hlen);
    if data > 0 {
        let _ = write!(out, ", seq {seq}:{}", seq.wrapping_add(data as u32));
    } else if flags & (SYN | FIN | RST) != 0 {
        let _ = write!(out, ", seq {seq}");
    }
    if flags & ACK != 0 {
        let _ = write!(out, ", ack {ack}");
    }
    let _ = write!(out, ", win {win}");
    if flags & URG != 0 {
        let _ = write!(out, ", urg {urg}");
    }
    if hlen > 20 {
        tcp_options(out, d.get(20..hlen.min(d.len())).unwrap_or(&[]), hlen - 20);
    }
    let _ = write!(out, ", length {data}");
}

/// `, options [...]` as tcpdump prints the common ones; `opts` is what
/// was captured of the `len` bytes of options.
fn tcp_options(out: &mut String, opts: &[u8], len: usize) {
    out.push_str(", options [");
    let mut at = 0;
    let mut first = true;
    while at < opts.len() {
        if !first {
            out.push(',');
        }
        first = false;
        let kind = opts[at];
        if kind == 0 {
            out.push_str("eol");
            break;
        }
        if kind == 1 {
            out.push_str("nop");
            at += 1;
            continue;
        }
        let Some(&olen) = opts.get(at + 1) else {
            out.push_str("[|tcp]");
            break;
        };
        let olen = usize::from(olen);
        if olen < 2 || at + olen > len {
            out.push_str("bad opt");
            break;
        }
        let Some(v) = opts.get(at + 2..at + olen) else {
            out.push_str("[|tcp]");
            break;
        };
        match (kind, v.len()) {
            (2, 2) => {
                let _ = write!(out, "mss {}", u16::from_be_bytes([v[0], v[1]]));
            }
            (3, 1) => {
                let _ = write!(out, "wscale {}", v[0]);
            }
            (4, 0) => out.push_str("sackOK"),
            (5, n) if n % 8 == 0 => {
                let _ = write!(out, "sack {} ", n / 8);
                for b in v.chunks_exact(8) {
                    let l = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                    let r = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                    let _ = write!(out, "{{{l}:{r}}}");
                }
            }
            (8, 8) => {
                let val = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
                let ecr = u32::from_be_bytes([v[4], v[5], v[6], v[7]]);
                let _ = write!(out, "TS val {val} ecr {ecr}");
            }
            (19, _) => out.push_str("md5"),
            (29, _) => out.push_str("tcp-ao"),
            (30, _) => out.push_str("mptcp"),
            (34, _) => out.push_str("tfo"),
            _ => {
                let _ = write!(out, "unknown-{kind}");
            }
        }
        at += olen;
    }
    out.push(']');
}

fn icmp(out: &mut String, d: &[u8]) {
    let (Some(&ty), Some(&code)) = (d.first(), d.get(1)) else {
        out.push_str("[|icmp]");
        return;
    };
    match ty {
        0 | 8 => {
            let what = if ty == 8 { "request" } else { "reply" };
            match (be16(d, 4), be16(d, 6)) {
                (Some(id), Some(seq)) => {
                    let _ = write!(out, "echo {what}, id {id}, seq {seq}");
                }
                _ => {
                    let _ = write!(out, "echo {what} [|icmp]");
                }
            }
        }
        3 => {
            // The packet that could not be delivered follows, from its
            // IP header.
            let inner = d.get(8..).unwrap_or(&[]);
            let dst = v4(inner, 16);
            let ihl = inner.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
            let port = be16(inner, ihl + 2);
            match (code, dst, inner.get(9)) {
                (0, Some(a), _) => {
                    let _ = write!(out, "net {a} unreachable");
                }
                (1, Some(a), _) => {
                    let _ = write!(out, "host {a} unreachable");
                }
                (2, Some(a), Some(p)) => {
                    let _ = write!(out, "{a} protocol {p} unreachable");
                }
                (3, Some(a), Some(&p)) if port.is_some() && (p == 6 || p == 17) => {
                    let name = if p == 6 { "tcp" } else { "udp" };
                    let _ = write!(out, "{a} {name} port {} unreachable", port.unwrap_or(0));
                }
                (4, Some(a), _) => {
                    let mtu = be16(d, 6).unwrap_or(0);
                    let _ = write!(out, "{a} unreachable - need to frag (mtu {mtu})");
                }
                _ => {
                    let _ = write!(out, "unreachable, code {code}");
                }
            }
        }
        11 => out.push_str(match code {
            0 => "time exceeded in-transit",
            1 => "ip reassembly time exceeded",
            _ => "time exceeded",
        }),
        _ => {
            let _ = write!(out, "type {ty}, code {code}");
        }
    }
}

fn icmp6(out: &mut String, d: &[u8]) {
    let (Some(&ty), Some(&code)) = (d.first(), d.get(1)) else {
        out.push_str("[|icmp6]");
        return;
    };
    let target = || v6(d, 8).map_or("[|icmp6]".to_string(), |a| a.to_string());
    match ty {
        128 | 129 => {
            let what = if ty == 128 { "request" } else { "reply" };
            match (be16(d, 4), be16(d, 6)) {
                (Some(id), Some(seq)) => {
                    let _ = write!(out, "echo {what}, id {id}, seq {seq}");
                }
                _ => {
                    let _ = write!(out, "echo {what} [|icmp6]");
                }
            }
        }
        1 => {
            out.push_str("destination unreachable");
            let reason = match code {
                0 => ", unreachable route",
                1 => ", unreachable prohibited",
                3 => ", unreachable address",
                4 => ", unreachable port",
                _ => "",
            };
            out.push_str(reason);
        }
        2 => {
            let _ = write!(out, "packet too big, mtu {}", be32(d, 4).unwrap_or(0));
        }
        3 => out.push_str(if code == 0 {
            "time exceeded in-transit"
        } else {
            "time exceeded"
        }),
        4 => out.push_str("parameter problem"),
        130 => out.push_str("multicast listener query"),
        131 => out.push_str("multicast listener report"),
        132 => out.push_str("multicast listener done"),
        133 => out.push_str("router solicitation"),
        134 => out.push_str("router advertisement"),
        135 => {
            let _ = write!(out, "neighbor solicitation, who has {}", target());
        }
        136 => {
            let _ = write!(out, "neighbor advertisement, tgt is {}", target());
        }
        137 => out.push_str("redirect"),
        143 => {
            let n = be16(d, 6).unwrap_or(0);
            let _ = write!(out, "multicast listener report v2, {n} group record(s)");
        }
        _ => {
            let _ = write!(out, "type {ty}, code {code}");
        }
    }
}

fn arp(out: &mut String, d: &[u8]) {
    let (Some(ptype), Some(&hln), Some(&pln), Some(op)) =
        (be16(d, 2), d.get(4), d.get(5), be16(d, 6))
    else {
        out.push_str("arp [|arp]");
        return;
    };
    let (hln, pln) = (usize::from(hln), usize::from(pln));
    let len = 8 + 2 * (hln + pln);
    let sha = d.get(8..8 + hln);
    let spa = d.get(8 + hln..8 + hln + pln);
    let tha = d.get(8 + hln + pln..8 + 2 * hln + pln);
    let tpa = d.get(8 + 2 * hln + pln..len);
    let ip = |a: Option<&[u8]>| match a {
        Some(&[a, b, c, d]) if ptype == ETHERTYPE_IPV4 => Some(Ipv4Addr::new(a, b, c, d)),
        _ => None,
    };
    match (op, ip(spa), ip(tpa), sha, tha) {
        (1, Some(s), Some(t), _, Some(tha)) => {
            let _ = write!(out, "arp who-has {t}");
            if tha.iter().any(|&b| b != 0) {
                let _ = write!(out, " ({})", mac(tha));
            }
            let _ = write!(out, " tell {s}, length {len}");
        }
        (2, Some(s), Some(_), Some(sha), _) => {
            let _ = write!(out, "arp reply {s} is-at {}, length {len}", mac(sha));
        }
        (1 | 2, _, _, _, _) if tpa.is_none() => out.push_str("arp [|arp]"),
        _ => {
            let _ = write!(out, "arp op {op}, length {len}");
        }
    }
}
