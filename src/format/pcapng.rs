//! pcapng output: one file holding every captured stream, each stream an
//! interface of its own.
//!
//! What comes from pcap-file and what is written by hand, and why:
//!
//! - Section header and interface descriptions: pcap-file's `PcapNgWriter`
//!   (written once per file, so its allocations and its double encoding,
//!   once into a sink to learn the length, do not matter).
//! - Enhanced packet blocks: by hand, straight into a reusable buffer.
//!   pcap-file's `EnhancedPacketBlock` would cost a `Vec` of options per
//!   packet and encodes every block twice; it has no epb_queue option (it
//!   would be an `Unknown` one); and it writes the timestamp as nanoseconds
//!   whatever the interface's if_tsresol says, so a microsecond file would
//!   need the timestamp smuggled through its `Duration` as microseconds.
//! - Interface statistics: by hand. pcap-file writes the block's timestamp
//!   and isb_starttime/isb_endtime as one 64-bit integer in the section's
//!   byte order, which on a little-endian machine puts the low word first;
//!   the format (and Wireshark's reader, and dumpcap's writer) has the
//!   high 32 bits first, then the low 32 bits, each in section byte order.
//!
//! Blocks are in native byte order, as libpcap and dumpcap write them.
//!
//! The pieces: [`Section`] (what starts every file), [`Frame`] (a packet's
//! record bytes, the same as the pcap record's), [`encode_epb`] and
//! [`EpbBatch`] (workers encode their packets' blocks), [`PcapngOutput`]
//! (the buffered file that always ends on a whole block) and
//! [`MergedFile`] (the merger thread's sink, with rotation).

use std::io;

use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{Endianness, PcapError};

use crate::options::Precision;
use crate::packet::Frame;
use crate::packet::LinkType;
use crate::packet::Packet;
use crate::sys::afpacket::PACKET_OUTGOING;

pub(crate) const ENHANCED_PACKET: u32 = 6;
const INTERFACE_STATISTICS: u32 = 5;

const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
const EPB_FLAGS: u16 = 2;
const EPB_HASH: u16 = 3;
const EPB_QUEUE: u16 = 6;
const ISB_STARTTIME: u16 = 2;
const ISB_ENDTIME: u16 = 3;
const ISB_IFRECV: u16 = 4;
const ISB_IFDROP: u16 = 5;
const ISB_OSDROP: u16 = 7;

/// The epb_hash algorithm octet of a Toeplitz hash, the one algorithm of
/// the format's list (2s complement 0, XOR 1, CRC32 2, MD-5 3, SHA-1 4,
/// Toeplitz 5; no code for "other") that a packet's flow hash can be: the
/// NIC's RSS hash. The flow hash (`tp_rxhash`, skb->hash) is that only
/// for some packets; others carry the kernel's own keyed hash of the
/// addresses and ports (devices without a receive hash, and hashes the
/// driver marked as not covering the ports), a sending socket's random
/// transmit hash, or one a veth peer set. So epb_hash is written only
/// where the hash was shown to be the NIC's Toeplitz hash
/// ([`PacketInfo::hash_is_toeplitz`], from
/// [`crate::steering::NicHash`]); every flow hash goes into the packet's
/// comment ([`hash_comment`]), which every reader shows and Wireshark
/// filters on (`frame.comment`), claiming no algorithm.
pub const TOEPLITZ: u8 = 5;

/// The bytes of the comment carrying a flow hash: `flow hash 0x` and 8
/// lowercase hex digits.
pub const HASH_COMMENT_LEN: usize = 20;

/// The comment that carries flow hash `hash`: `flow hash 0x5a908f7a`.
#[cfg(test)]
pub fn hash_comment(hash: u32) -> [u8; HASH_COMMENT_LEN] {
    let mut c = [0; HASH_COMMENT_LEN];
    put_hash_comment(&mut c, hash);
    c
}

/// Writes [`hash_comment`] into `b` in place (the block being encoded):
/// the prefix in one copy, each digit as a byte store. Not built aside
/// and copied in, which reads the digits' byte stores back as one wide
/// load the cpu cannot forward (see [`encode_epb_at`]).
#[inline(always)]
fn put_hash_comment(b: &mut [u8], hash: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    b[..12].copy_from_slice(b"flow hash 0x");
    for (i, d) in b[12..HASH_COMMENT_LEN].iter_mut().enumerate() {
        *d = HEX[(hash >> (28 - 4 * i) & 0xf) as usize];
    }
}

/// The shb_userappl of every file: the program and its version.
pub const USER_APPLICATION: &str = concat!(env!("CARGO_PKG_NAME"), " ", env!("CARGO_PKG_VERSION"));

/// The shb_os: the kernel's name and release as uname(2) gives them
/// (`Linux 6.18.44`), the form dumpcap writes.
pub fn os_name() -> String {
    match crate::sys::host::uname() {
        Some((sysname, release)) => format!("{sysname} {release}"),
        None => String::from("Linux"),
    }
}

/// One captured stream, described as an interface of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// if_name: the interface captured on (`eth0`, `any` for all).
    pub name: String,
    /// if_description: the stream (`eth0 cpu3`, `eth0 queue 2`).
    pub description: String,
    pub link: LinkType,
    /// The snap length of the stream's records: already raised as
    /// [`LinkType::snaplen`] raises it.
    pub snaplen: u32,
}

/// What starts every file: the section header and one interface per
/// stream, in stream order (the interface id of stream i is i).
#[derive(Clone, Debug)]
pub struct Section {
    pub user_application: String,
    pub os: String,
    pub interfaces: Vec<Interface>,
    pub precision: Precision,
}

fn io_error(e: PcapError) -> io::Error {
    match e {
        PcapError::IoError(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

impl Section {
    /// This program on this kernel.
    pub fn new(interfaces: Vec<Interface>, precision: Precision) -> Section {
        Section {
            user_application: USER_APPLICATION.to_string(),
            os: os_name(),
            interfaces,
            precision,
        }
    }

    /// Appends the section header and interface description blocks.
    pub fn encode(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        let shb = SectionHeaderBlock {
            endianness: Endianness::native(),
            major_version: 1,
            minor_version: 0,
            section_length: -1,
            options: vec![
                SectionHeaderOption::OS(self.os.as_str().into()),
                SectionHeaderOption::UserApplication(self.user_application.as_str().into()),
            ],
        };
        let mut w = PcapNgWriter::with_section_header(std::mem::take(buf), shb.into_owned())
            .map_err(io_error)?;
        for i in &self.interfaces {
            let mut options = vec![
                InterfaceDescriptionOption::IfName(i.name.as_str().into()),
                InterfaceDescriptionOption::IfDescription(i.description.as_str().into()),
            ];
            if self.precision == Precision::Nano {
                // 10^-9 s; without the option readers assume 10^-6.
                options.push(InterfaceDescriptionOption::IfTsResol(9));
            }
            w.write_pcapng_block(InterfaceDescriptionBlock {
                linktype: i.link.datalink(),
                snaplen: i.snaplen,
                options,
            })
            .map_err(io_error)?;
        }
        *buf = w.into_inner();
        Ok(())
    }
}

/// epb_flags direction bits (the low two).
pub const INBOUND: u32 = 1;
pub const OUTBOUND: u32 = 2;

/// The epb_flags word for a packet of sll_pkttype `pkttype`: direction in
/// bits 0-1, and for received packets the reception type in bits 2-4
/// (1 unicast, 2 multicast, 3 broadcast, 4 promiscuous: addressed to
/// another host). 0 (no option) for packet types a packet socket does not
/// deliver.
pub fn epb_flags(pkttype: u8) -> u32 {
    const PACKET_HOST: u8 = 0;
    const PACKET_BROADCAST: u8 = 1;
    const PACKET_MULTICAST: u8 = 2;
    const PACKET_OTHERHOST: u8 = 3;
    // Multicast the host sent and looped back to itself: received, of no
    // reception type the format names.
    const PACKET_LOOPBACK: u8 = 5;
    match pkttype {
        PACKET_HOST => INBOUND | 1 << 2,
        PACKET_MULTICAST => INBOUND | 2 << 2,
        PACKET_BROADCAST => INBOUND | 3 << 2,
        PACKET_OTHERHOST => INBOUND | 4 << 2,
        PACKET_OUTGOING => OUTBOUND,
        PACKET_LOOPBACK => INBOUND,
        _ => 0,
    }
}

/// What an enhanced packet block says besides the record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketInfo {
    /// The stream's interface id: its position in [`Section::interfaces`].
    pub interface: u32,
    pub sec: u32,
    pub nsec: u32,
    /// epb_flags ([`epb_flags`]); 0 writes no option.
    pub flags: u32,
    /// The kernel's flow hash, where the ring gave one: the packet's
    /// comment ([`hash_comment`]).
    pub hash: Option<u32>,
    /// The hash is the NIC's Toeplitz hash of the packet: written again
    /// as epb_hash with the Toeplitz code (see [`TOEPLITZ`]).
    pub hash_is_toeplitz: bool,
    /// epb_queue: the receive queue, where the stream knows it.
    pub queue: Option<u32>,
}

impl PacketInfo {
    /// For `p` on interface `interface`: its timestamp and direction; the
    /// hash and the queue are the caller's to fill in (the ring gives the
    /// hash in tpacket3_hdr.hv1.tp_rxhash, at offset 28, once the ring is
    /// made with tp_feature_req_word = TP_FT_REQ_FILL_RXHASH).
    pub fn new(interface: u32, p: &Packet) -> PacketInfo {
        PacketInfo {
            interface,
            sec: p.sec,
            nsec: p.nsec,
            flags: epb_flags(p.pkttype),
            hash: None,
            hash_is_toeplitz: false,
            queue: None,
        }
    }

    /// The timestamp in nanoseconds since the epoch, for ordering.
    pub fn timestamp_ns(&self) -> u64 {
        self.sec as u64 * 1_000_000_000 + self.nsec as u64
    }
}

/// A timestamp in units of the interface's resolution.
fn units(ns: u64, precision: Precision) -> u64 {
    match precision {
        Precision::Micro => ns / 1000,
        Precision::Nano => ns,
    }
}

fn put16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_ne_bytes());
}

fn put32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_ne_bytes());
}

/// A 64-bit timestamp as the format stores it: high word, then low word.
fn put_time(buf: &mut Vec<u8>, t: u64) {
    put32(buf, (t >> 32) as u32);
    put32(buf, t as u32);
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// The length of the enhanced packet block for `info` and a record of
/// `caplen` bytes.
pub fn epb_len(info: &PacketInfo, caplen: u32) -> usize {
    let mut options = 0;
    if info.flags != 0 {
        options += 8;
    }
    if info.hash.is_some() {
        // The comment: code, length, its bytes (a multiple of 4).
        options += 4 + HASH_COMMENT_LEN;
        if info.hash_is_toeplitz {
            // epb_hash: code, length, algorithm octet and 4 hash bytes,
            // padded to 4.
            options += 4 + 8;
        }
    }
    if info.queue.is_some() {
        options += 8;
    }
    if options > 0 {
        options += 4; // opt_endofopt
    }
    28 + pad4(caplen as usize) + options + 4
}

/// Appends the enhanced packet block of `frame` to `buf`; returns its
/// length. No allocation beyond `buf` growing.
#[cfg(test)]
pub fn encode_epb(
    buf: &mut Vec<u8>,
    precision: Precision,
    info: &PacketInfo,
    frame: &Frame,
) -> usize {
    let len = epb_len(info, frame.caplen());
    let start = buf.len();
    buf.resize(start + len, 0);
    encode_epb_at(&mut buf[start..], precision, info, frame);
    len
}

/// Writes the enhanced packet block of `frame` into `b`, exactly
/// [`epb_len`] bytes long, every byte of it (padding too): `b` may hold
/// stale bytes, so a reused buffer needs no zeroing first.
///
/// Every field is stored in place: fields gathered in a local array and
/// copied in were read back in 16-byte loads from the smaller stores that
/// made them, which the cpu cannot forward (a stall per piece; see the
/// epb_per_packet_cost micro-benchmark).
pub fn encode_epb_at(b: &mut [u8], precision: Precision, info: &PacketInfo, frame: &Frame) {
    let caplen = frame.caplen() as usize;
    let len = b.len();
    debug_assert_eq!(len, epb_len(info, caplen as u32));
    let put32 = |b: &mut [u8], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    let put16 = |b: &mut [u8], at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_ne_bytes());
    let t = units(info.timestamp_ns(), precision);
    put32(b, 0, ENHANCED_PACKET);
    put32(b, 4, len as u32);
    put32(b, 8, info.interface);
    put32(b, 12, (t >> 32) as u32);
    put32(b, 16, t as u32);
    put32(b, 20, caplen as u32);
    put32(b, 24, frame.orig_len());
    let mut at = 28;
    for part in frame.parts() {
        // Mostly one part: the others empty (no tag, no rebuilt header).
        if !part.is_empty() {
            b[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
    }
    // Padding (zero), options, the end of options, the trailing length.
    let mut at = 28 + pad4(caplen);
    b[28 + caplen..at].fill(0);
    let options = at;
    if info.flags != 0 {
        put16(b, at, EPB_FLAGS);
        put16(b, at + 2, 4);
        put32(b, at + 4, info.flags);
        at += 8;
    }
    if let Some(hash) = info.hash.filter(|_| info.hash_is_toeplitz) {
        // A hash is a string of octets: the value most significant octet
        // first, so it reads as the number the kernel has. Three octets of
        // padding after it.
        put16(b, at, EPB_HASH);
        put16(b, at + 2, 5);
        b[at + 4] = TOEPLITZ;
        b[at + 5..at + 9].copy_from_slice(&hash.to_be_bytes());
        b[at + 9..at + 12].fill(0);
        at += 12;
    }
    if let Some(queue) = info.queue {
        put16(b, at, EPB_QUEUE);
        put16(b, at + 2, 4);
        put32(b, at + 4, queue);
        at += 8;
    }
    if let Some(hash) = info.hash {
        put16(b, at, OPT_COMMENT);
        put16(b, at + 2, HASH_COMMENT_LEN as u16);
        put_hash_comment(&mut b[at + 4..at + 4 + HASH_COMMENT_LEN], hash);
        at += 4 + HASH_COMMENT_LEN;
    }
    if at > options {
        // opt_endofopt: code and length 0.
        put32(b, at, 0);
        at += 4;
    }
    put32(b, at, len as u32);
    debug_assert_eq!(at + 4, len);
}

/// One stream's counts for its interface statistics block. Times are
/// nanoseconds since the epoch (written in the interface's resolution).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    /// isb_starttime: when the capture started.
    pub start_ns: u64,
    /// isb_endtime, and the block's own timestamp: when it ended.
    pub end_ns: u64,
    /// isb_ifrecv: packets the stream's socket received.
    pub ifrecv: u64,
    /// isb_ifdrop: packets the kernel dropped for want of ring space.
    pub ifdrop: u64,
    /// isb_osdrop: packets the program lost after reading them; the option
    /// is written only when there were any.
    pub osdrop: u64,
}

/// Appends the interface statistics block of interface `interface`.
pub fn encode_isb(buf: &mut Vec<u8>, precision: Precision, interface: u32, s: &InterfaceStats) {
    let len = 24 + 12 * 4 + if s.osdrop > 0 { 12 } else { 0 } + 4;
    let start = buf.len();
    put32(buf, INTERFACE_STATISTICS);
    put32(buf, len as u32);
    put32(buf, interface);
    put_time(buf, units(s.end_ns, precision));
    let opt64 = |buf: &mut Vec<u8>, code: u16, bytes: [u8; 8]| {
        put16(buf, code);
        put16(buf, 8);
        buf.extend_from_slice(&bytes);
    };
    let time = |t: u64| {
        let t = units(t, precision);
        let mut b = [0; 8];
        b[..4].copy_from_slice(&((t >> 32) as u32).to_ne_bytes());
        b[4..].copy_from_slice(&(t as u32).to_ne_bytes());
        b
    };
    opt64(buf, ISB_STARTTIME, time(s.start_ns));
    opt64(buf, ISB_ENDTIME, time(s.end_ns));
    opt64(buf, ISB_IFRECV, s.ifrecv.to_ne_bytes());
    opt64(buf, ISB_IFDROP, s.ifdrop.to_ne_bytes());
    if s.osdrop > 0 {
        opt64(buf, ISB_OSDROP, s.osdrop.to_ne_bytes());
    }
    put16(buf, OPT_ENDOFOPT);
    put16(buf, 0);
    put32(buf, len as u32);
    debug_assert_eq!(buf.len() - start, len);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn temp_file(name: &str) -> String {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("rxtxcpu-pcapng-{}-{name}", std::process::id()));
        path.to_str().unwrap().to_string()
    }

    pub(crate) fn packet(data: &[u8]) -> Packet<'_> {
        Packet {
            sec: 1_700_000_000,
            nsec: 123_456_789,
            len: data.len() as u32,
            data,
            net_offset: 14,
            ifindex: 3,
            hatype: 1,
            pkttype: 0,
            protocol: 0x0008,
            halen: 6,
            addr: [1, 2, 3, 4, 5, 6, 0, 0],
            vlan: None,
            hash: 0,
        }
    }

    pub(crate) fn iface(name: &str, description: &str, link: LinkType) -> Interface {
        Interface {
            name: name.into(),
            description: description.into(),
            link,
            snaplen: link.snaplen(262_144),
        }
    }

    #[test]
    fn flags_from_packet_types() {
        assert_eq!(epb_flags(0), 0b0101);
        assert_eq!(epb_flags(1), 0b1101);
        assert_eq!(epb_flags(2), 0b1001);
        assert_eq!(epb_flags(3), 0b10001);
        assert_eq!(epb_flags(4), OUTBOUND);
        assert_eq!(epb_flags(5), INBOUND);
        assert_eq!(epb_flags(6), 0);
        let data = [0u8; 20];
        let mut p = packet(&data);
        p.pkttype = 4;
        let info = PacketInfo::new(1, &p);
        assert_eq!((info.interface, info.flags, info.hash), (1, OUTBOUND, None));
        assert_eq!(info.timestamp_ns(), 1_700_000_000_123_456_789);
    }

    #[test]
    fn hash_comments() {
        assert_eq!(&hash_comment(0x5a90_8f7a), b"flow hash 0x5a908f7a");
        assert_eq!(&hash_comment(0), b"flow hash 0x00000000");
        assert_eq!(&hash_comment(u32::MAX), b"flow hash 0xffffffff");
        assert_eq!(&hash_comment(0x0123_4567), b"flow hash 0x01234567");
    }

    #[test]
    fn epb_layout() {
        let data = [0xabu8; 61];
        let p = packet(&data);
        let f = Frame::new(LinkType::Ethernet, 262_144, &p);
        let info = PacketInfo {
            interface: 2,
            sec: p.sec,
            nsec: p.nsec,
            flags: epb_flags(4),
            hash: Some(0x1234_5678),
            hash_is_toeplitz: true,
            queue: Some(7),
        };
        for precision in [Precision::Micro, Precision::Nano] {
            let mut buf = vec![0xee; 3];
            let len = encode_epb(&mut buf, precision, &info, &f);
            let b = &buf[3..];
            assert_eq!(b.len(), len);
            assert_eq!(len, 28 + 64 + 8 + 12 + 8 + 24 + 4 + 4);
            let u32_at = |i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().unwrap());
            assert_eq!(u32_at(0), 6);
            assert_eq!(u32_at(4) as usize, len);
            assert_eq!(u32_at(len - 4) as usize, len);
            assert_eq!(u32_at(8), 2);
            let ts = (u32_at(12) as u64) << 32 | u32_at(16) as u64;
            let want = match precision {
                Precision::Micro => 1_700_000_000_123_456,
                Precision::Nano => 1_700_000_000_123_456_789,
            };
            assert_eq!(ts, want);
            assert_eq!((u32_at(20), u32_at(24)), (61, 61));
            assert_eq!(&b[28..89], &data[..]);
            assert_eq!(&b[89..92], &[0, 0, 0]);
            // Options: flags, hash, queue, the comment, end.
            assert_eq!(
                &b[92..96],
                &[&2u16.to_ne_bytes()[..], &4u16.to_ne_bytes()].concat()[..]
            );
            assert_eq!(u32_at(96), 2);
            assert_eq!(&b[104..109], &[5, 0x12, 0x34, 0x56, 0x78]);
            assert_eq!(u32_at(116), 7);
            assert_eq!(
                &b[120..124],
                &[&1u16.to_ne_bytes()[..], &20u16.to_ne_bytes()].concat()[..]
            );
            assert_eq!(&b[124..144], b"flow hash 0x12345678");
            assert_eq!(u32_at(144), 0);
        }
        // A hash not shown to be the NIC's Toeplitz hash: the comment
        // alone, no epb_hash.
        let mut buf = Vec::new();
        let plain = PacketInfo {
            hash_is_toeplitz: false,
            queue: None,
            ..info
        };
        let len = encode_epb(&mut buf, Precision::Nano, &plain, &f);
        assert_eq!(len, 28 + 64 + 8 + 24 + 4 + 4);
        assert_eq!(&buf[100..102], &1u16.to_ne_bytes());
        assert_eq!(&buf[104..124], b"flow hash 0x12345678");
        // No options: no end-of-options either.
        let mut buf = Vec::new();
        let bare = PacketInfo {
            flags: 0,
            hash: None,
            queue: None,
            ..info
        };
        assert_eq!(
            encode_epb(&mut buf, Precision::Nano, &bare, &f),
            28 + 64 + 4
        );
    }

    #[test]
    fn isb_times_are_high_word_first() {
        // The format's own example: '96 c3 04 00 73 89 6a 65' (little
        // endian) is 2012-06-29 06:17:00.834163 UTC in microseconds.
        let us: u64 = 0x0004_c396 << 32 | 0x656a_8973;
        assert_eq!(us, 1_340_950_620_834_163);
        let s = InterfaceStats {
            start_ns: us * 1000,
            end_ns: us * 1000 + 5_000,
            ifrecv: 10,
            ifdrop: 2,
            osdrop: 0,
        };
        let mut buf = Vec::new();
        encode_isb(&mut buf, Precision::Micro, 1, &s);
        assert_eq!(buf.len(), 24 + 48 + 4);
        let u32_at = |i: usize| u32::from_ne_bytes(buf[i..i + 4].try_into().unwrap());
        assert_eq!(
            (u32_at(0), u32_at(4) as usize, u32_at(8)),
            (5, buf.len(), 1)
        );
        assert_eq!((u32_at(12), u32_at(16)), (0x0004_c396, 0x656a_8973 + 5));
        // isb_starttime
        assert_eq!(u32_at(20), 2 | 8 << 16);
        if cfg!(target_endian = "little") {
            assert_eq!(
                &buf[24..32],
                &[0x96, 0xc3, 0x04, 0x00, 0x73, 0x89, 0x6a, 0x65]
            );
        }
        let mut with_osdrop = Vec::new();
        encode_isb(
            &mut with_osdrop,
            Precision::Nano,
            0,
            &InterfaceStats { osdrop: 3, ..s },
        );
        assert_eq!(with_osdrop.len(), buf.len() + 12);
    }

    #[test]
    fn os_name_is_the_kernel() {
        let os = os_name();
        assert!(os.starts_with("Linux "), "{os}");
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(os, format!("Linux {}", release.trim()));
    }
}
