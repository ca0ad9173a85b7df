//! The Toeplitz hash that NICs use for RSS, the tuple layout they feed it,
//! and what `--rss-hash` prints.
//!
//! Everything here is pure computation: the device's table, key, hashed
//! fields and queue interrupts come from [`crate::sys::ethtool`];
//! [`crate::steering::rss_hash_command`] puts them together for
//! `--rss-hash`, [`Report`] says the answer (text, `-v`, `--json`).
//!
//! The input is laid out as in Microsoft's RSS specification: source
//! address, destination address, source port, destination port, each in
//! network byte order. A field the device does not hash is zero in its
//! place: a zero bit adds nothing to a Toeplitz hash wherever it sits, so
//! this is what leaving the field out means, and it is how the contrib
//! `rss-hash` tool handled `0` ports and `0.0.0.0` / `::` addresses. (It
//! also makes the "addresses only" vectors of the specification the hash
//! of the tuple with both ports 0.)

use std::fmt;
use std::net::IpAddr;

use crate::cpuset::CpuSet;

/// The key of Microsoft's "Verifying the RSS hash calculation" (also the
/// contrib tool's default and many drivers' default key).
pub const MICROSOFT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// The usual key length (and the only one accepted for `--rss-key` unless
/// the interface reports another).
pub const KEY_LEN: usize = 40;

/// The longest Toeplitz input: two IPv6 addresses and two ports.
pub const MAX_INPUT: usize = 36;

/// The Toeplitz hash of `data` under `key`.
///
/// Input bit `i` (most significant bit of each byte first) contributes the
/// 32 key bits starting at key bit `i`, so a key needs `data.len() + 4`
/// bytes; [`hash`] checks that. Here, key bits past the end count as zero,
/// as in the contrib tool.
pub fn toeplitz(key: &[u8], data: &[u8]) -> u32 {
    let byte = |i: usize| u32::from(key.get(i).copied().unwrap_or(0));
    // The 32-bit window of the key aligned with the current input bit.
    let mut window = byte(0) << 24 | byte(1) << 16 | byte(2) << 8 | byte(3);
    let mut hash = 0;
    for (i, &d) in data.iter().enumerate() {
        let next = byte(i + 4);
        for bit in (0..8).rev() {
            if d & (1 << bit) != 0 {
                hash ^= window;
            }
            window = window << 1 | (next >> bit) & 1;
        }
    }
    hash
}

/// [`toeplitz`] by table lookups, for checking a packet's hash as it is
/// written: the hash is linear in the input bits (XOR), so each input
/// byte at each position contributes a fixed word, looked up instead of
/// computed bit by bit (12 lookups for an IPv4 tuple, against 96 steps).
/// One 1 KiB table per input position: 36 KiB for the longest input.
pub struct ToeplitzTable {
    table: Vec<[u32; 256]>,
    key_len: usize,
}

impl ToeplitzTable {
    /// The tables of `key` for inputs of up to [`MAX_INPUT`] bytes.
    pub fn new(key: &[u8]) -> ToeplitzTable {
        let mut input = [0u8; MAX_INPUT];
        let table = (0..MAX_INPUT)
            .map(|pos| {
                let mut t = [0u32; 256];
                for bit in 0..8 {
                    input[pos] = 0x80 >> bit;
                    let word = toeplitz(key, &input[..=pos]);
                    // Each byte value is the XOR of its bits' words.
                    for (v, slot) in t.iter_mut().enumerate() {
                        if v & (0x80 >> bit) != 0 {
                            *slot ^= word;
                        }
                    }
                }
                input[pos] = 0;
                t
            })
            .collect();
        ToeplitzTable {
            table,
            key_len: key.len(),
        }
    }

    /// Whether the key has `bytes` bytes: a hash of an input of n bytes
    /// takes n + 4 (see [`hash`]).
    pub fn covers(&self, bytes: usize) -> bool {
        bytes <= self.key_len
    }

    /// The Toeplitz hash of `data` (at most [`MAX_INPUT`] bytes; the rest
    /// is not hashed).
    pub fn hash(&self, data: &[u8]) -> u32 {
        data.iter()
            .zip(&self.table)
            .fold(0, |h, (&d, t)| h ^ t[usize::from(d)])
    }
}

/// Which parts of the tuple a device hashes: ETHTOOL_GRXFH's `RXH_*` bits
/// for the flow type (see [`crate::sys::ethtool::rx_hash_fields`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fields {
    pub src_addr: bool,
    pub dst_addr: bool,
    /// L4 bytes 0-1 (`RXH_L4_B_0_1`), the source port of TCP/UDP/SCTP.
    pub src_port: bool,
    /// L4 bytes 2-3 (`RXH_L4_B_2_3`), the destination port.
    pub dst_port: bool,
}

pub const RXH_IP_SRC: u64 = 1 << 4;
pub const RXH_IP_DST: u64 = 1 << 5;
pub const RXH_L4_B_0_1: u64 = 1 << 6;
pub const RXH_L4_B_2_3: u64 = 1 << 7;

impl Fields {
    /// The 4-tuple (`ethtool -N ... rx-flow-hash tcp4 sdfn`).
    pub const ALL: Fields = Fields {
        src_addr: true,
        dst_addr: true,
        src_port: true,
        dst_port: true,
    };
    /// Addresses only (`sd`), what NICs hash for non-TCP/UDP IP traffic.
    pub const ADDRESSES: Fields = Fields {
        src_addr: true,
        dst_addr: true,
        src_port: false,
        dst_port: false,
    };

    pub fn from_rxh(bits: u64) -> Fields {
        Fields {
            src_addr: bits & RXH_IP_SRC != 0,
            dst_addr: bits & RXH_IP_DST != 0,
            src_port: bits & RXH_L4_B_0_1 != 0,
            dst_port: bits & RXH_L4_B_2_3 != 0,
        }
    }

    /// ethtool's letters for the fields: `s` `d` `f` `n`.
    pub fn letters(&self) -> String {
        [
            (self.src_addr, 's'),
            (self.dst_addr, 'd'),
            (self.src_port, 'f'),
            (self.dst_port, 'n'),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, c)| *c)
        .collect()
    }
}

/// A flow's addresses and ports; both addresses of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
}

impl Tuple {
    /// None when the addresses are of different families.
    pub fn new(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Option<Tuple> {
        (src.is_ipv4() == dst.is_ipv4()).then_some(Tuple {
            src,
            sport,
            dst,
            dport,
        })
    }

    pub fn src(&self) -> IpAddr {
        self.src
    }
    pub fn sport(&self) -> u16 {
        self.sport
    }
    pub fn dst(&self) -> IpAddr {
        self.dst
    }
    pub fn dport(&self) -> u16 {
        self.dport
    }

    /// The other direction of the flow.
    pub fn reversed(&self) -> Tuple {
        Tuple {
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }

    /// The Toeplitz input for `fields`: the first `len` bytes of the
    /// array (12 for IPv4, 36 for IPv6; fields left out are zero).
    pub fn input(&self, fields: Fields) -> ([u8; MAX_INPUT], usize) {
        let mut buf = [0u8; MAX_INPUT];
        let mut at = 0;
        let mut put = |bytes: &[u8], on: bool| {
            if on {
                buf[at..at + bytes.len()].copy_from_slice(bytes);
            }
            at += bytes.len();
        };
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                put(&s.octets(), fields.src_addr);
                put(&d.octets(), fields.dst_addr);
            }
            (s, d) => {
                put(&v6_octets(s), fields.src_addr);
                put(&v6_octets(d), fields.dst_addr);
            }
        }
        put(&self.sport.to_be_bytes(), fields.src_port);
        put(&self.dport.to_be_bytes(), fields.dst_port);
        (buf, at)
    }

    /// The key bytes a hash of this tuple needs: its input length + 4.
    pub fn key_bytes_needed(&self) -> usize {
        if self.src.is_ipv4() {
            16
        } else {
            40
        }
    }
}

fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

/// A key too short for the tuple: every input bit needs its own 32 key
/// bits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {have}-byte key is too short for an {family} tuple ({need} bytes needed)")]
pub struct KeyTooShort {
    pub have: usize,
    pub need: usize,
    pub family: &'static str,
}

/// The hash of `tuple` over `fields` under `key`.
pub fn hash(key: &[u8], tuple: &Tuple, fields: Fields) -> Result<u32, KeyTooShort> {
    let need = tuple.key_bytes_needed();
    if key.len() < need {
        return Err(KeyTooShort {
            have: key.len(),
            need,
            family: if tuple.src.is_ipv4() { "IPv4" } else { "IPv6" },
        });
    }
    let (buf, len) = tuple.input(fields);
    Ok(toeplitz(key, &buf[..len]))
}

/// A bad `--rss-hash` or `--rss-key` argument. The messages follow the
/// command line's `Invalid <what> '<value>'.` style.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("Invalid rss hash tuple '{0}' (expected SRC,SPORT,DST,DPORT).")]
    Shape(String),
    #[error("Invalid rss hash address '{0}' (expected an IPv4 or IPv6 address).")]
    Address(String),
    #[error("Invalid rss hash port '{0}' (expected 0-65535).")]
    Port(String),
    #[error("Invalid rss hash tuple '{0}': {1} is not a valid flow.")]
    Families(String, &'static str),
    #[error("Invalid rss key '{0}' (expected hex bytes separated by ':', as 6d:5a:56:...).")]
    Key(String),
    #[error("Invalid rss key length {have} (expected {want} bytes).")]
    KeyLength { have: usize, want: String },
}

/// Parses `SRC,SPORT,DST,DPORT`. A 0 port or an all-zero address
/// (`0.0.0.0`, `::`) is a field left out of the hash, as with the contrib
/// tool (see the module documentation).
pub fn parse_tuple(s: &str) -> Result<Tuple, ArgError> {
    let parts: Vec<&str> = s.split(',').collect();
    let [src, sport, dst, dport] = parts[..] else {
        return Err(ArgError::Shape(s.to_string()));
    };
    let addr = |a: &str| {
        a.trim()
            .parse::<IpAddr>()
            .map_err(|_| ArgError::Address(a.to_string()))
    };
    let port = |p: &str| {
        let t = p.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ArgError::Port(p.to_string()));
        }
        t.parse::<u16>().map_err(|_| ArgError::Port(p.to_string()))
    };
    let (src, sport, dst, dport) = (addr(src)?, port(sport)?, addr(dst)?, port(dport)?);
    Tuple::new(src, sport, dst, dport).ok_or_else(|| {
        let which = if src.is_ipv4() {
            "ipv4 SRC with ipv6 DST"
        } else {
            "ipv6 SRC with ipv4 DST"
        };
        ArgError::Families(s.to_string(), which)
    })
}

/// Parses a key as ethtool prints it: `6d:5a:56:...`, two hex digits a
/// byte, either case. Any length from 4 bytes; see [`check_key_length`].
pub fn parse_key(s: &str) -> Result<Vec<u8>, ArgError> {
    let bad = || ArgError::Key(s.to_string());
    let key: Vec<u8> = s
        .trim()
        .split(':')
        .map(|b| {
            if b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()) {
                u8::from_str_radix(b, 16).map_err(|_| bad())
            } else {
                Err(bad())
            }
        })
        .collect::<Result<_, _>>()?;
    if key.len() < 4 {
        return Err(bad());
    }
    Ok(key)
}

/// `--rss-key` must be 40 bytes, or as long as the interface's own key.
pub fn check_key_length(key: &[u8], device_key_len: Option<usize>) -> Result<(), ArgError> {
    if key.len() == KEY_LEN || Some(key.len()) == device_key_len {
        return Ok(());
    }
    let want = match device_key_len {
        Some(n) if n != KEY_LEN => format!("{KEY_LEN} or the interface's {n}"),
        _ => KEY_LEN.to_string(),
    };
    Err(ArgError::KeyLength {
        have: key.len(),
        want,
    })
}

/// Formats a key as ethtool does (`6d:5a:...`).
pub fn format_key(key: &[u8]) -> String {
    key.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The indirection table slot for `hash`: hash mod table size, as the
/// kernel's own RSS selftest computes it. The contrib script masked with
/// size - 1 and refused tables whose size is not a power of two; for
/// those sizes (all that NICs use) the two agree.
pub fn table_index(hash: u32, table_len: usize) -> Option<usize> {
    (table_len > 0).then(|| hash as usize % table_len)
}

/// The queue RSS picks for `hash`.
pub fn queue_for(hash: u32, table: &[u32]) -> Option<u32> {
    table_index(hash, table.len()).map(|i| table[i])
}

/// What `--rss-hash` prints: `hash:  xxxxxxxx`, and with an indirection
/// table `idx:   N` and `queue: Q`, then `cpus:  LIST` when the queue's
/// interrupt cpus are known. The spacing is the contrib script's (values
/// line up in column 8). `-v` adds [`Report::verbose`], `--json` prints
/// [`Report::to_json`] instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub hash: u32,
    /// (index, queue) from the interface's table.
    pub slot: Option<(usize, u32)>,
    pub cpus: Option<CpuSet>,
    /// Entries of the interface's indirection table; 0: none.
    pub table_len: usize,
    /// The key hashed with, and where it came from.
    pub key: Vec<u8>,
    pub key_source: KeySource,
}

/// Where the key of `--rss-hash` came from (see [`choose_key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `--rss-key`.
    Argument,
    /// The interface's own key (`ethtool -x`).
    Interface,
    /// Microsoft's verification key: no `--rss-key`, and no interface or
    /// one that reports no key.
    Microsoft,
}

impl KeySource {
    /// As `--json` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::Argument => "rss-key",
            KeySource::Interface => "interface",
            KeySource::Microsoft => "microsoft",
        }
    }
}

/// The `--json` object of `--rss-hash` (keys documented in the man page,
/// only ever added to).
#[derive(serde::Serialize)]
struct ReportJson<'a> {
    hash: String,
    interface: Option<&'a str>,
    index: Option<usize>,
    queue: Option<u32>,
    cpus: Option<Vec<u32>>,
    table_size: usize,
    key: String,
    key_source: &'static str,
}

impl Report {
    /// The report for `hash` with `table` (empty: none) and a way to find
    /// a queue's interrupt cpus; hashed with Microsoft's key unless
    /// [`Report::with_key`] says otherwise.
    pub fn new(hash: u32, table: &[u32], cpus_of: impl FnOnce(u32) -> Option<CpuSet>) -> Report {
        let slot = table_index(hash, table.len()).map(|i| (i, table[i]));
        let cpus = slot.and_then(|(_, q)| cpus_of(q)).filter(|c| !c.is_empty());
        Report {
            hash,
            slot,
            cpus,
            table_len: table.len(),
            key: MICROSOFT_KEY.to_vec(),
            key_source: KeySource::Microsoft,
        }
    }

    /// The key the hash was computed with.
    pub fn with_key(mut self, key: &[u8], source: KeySource) -> Report {
        self.key = key.to_vec();
        self.key_source = source;
        self
    }

    /// The `-v` lines: which key and which table (of `interface`, if
    /// one was given) the answer comes from.
    pub fn verbose(&self, interface: Option<&str>) -> Vec<String> {
        let key = format_key(&self.key);
        let n = self.key.len();
        let key_line = match (self.key_source, interface) {
            (KeySource::Argument, _) => format!("key {key} ({n} bytes, --rss-key)"),
            (KeySource::Interface, Some(i)) => format!("key {key} ({n} bytes, {i}'s)"),
            (_, Some(i)) => format!(
                "key {key} ({n} bytes, Microsoft's verification key: no --rss-key, and {i} reports no key)"
            ),
            (_, None) => format!(
                "key {key} ({n} bytes, Microsoft's verification key: no --rss-key, no interface)"
            ),
        };
        let table_line = match interface {
            Some(i) if self.table_len > 0 => {
                format!("indirection table of {i}: {} entries", self.table_len)
            }
            Some(i) => format!("no indirection table: {i} reports none"),
            None => "no indirection table: no interface given".to_string(),
        };
        vec![key_line, table_line]
    }

    /// The answer as one JSON object on one line.
    pub fn to_json(&self, interface: Option<&str>) -> String {
        let j = ReportJson {
            hash: format!("0x{:08x}", self.hash),
            interface,
            index: self.slot.map(|(i, _)| i),
            queue: self.slot.map(|(_, q)| q),
            cpus: self.cpus.as_ref().map(|c| c.iter().collect()),
            table_size: self.table_len,
            key: format_key(&self.key),
            key_source: self.key_source.as_str(),
        };
        // Plain strings, numbers and lists: serializing cannot fail.
        let mut s = serde_json::to_string(&j).unwrap_or_default();
        s.push('\n');
        s
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "hash:  {:08x}", self.hash)?;
        if let Some((idx, queue)) = self.slot {
            writeln!(f, "idx:   {idx}")?;
            writeln!(f, "queue: {queue}")?;
            if let Some(cpus) = &self.cpus {
                writeln!(f, "cpus:  {cpus}")?;
            }
        }
        Ok(())
    }
}

/// The key `--rss-hash` uses: `--rss-key`, else the interface's, else
/// Microsoft's.
pub fn choose_key<'a>(arg: Option<&'a [u8]>, device: Option<&'a [u8]>) -> &'a [u8] {
    arg.or(device.filter(|k| !k.is_empty()))
        .unwrap_or(&MICROSOFT_KEY)
}

/// Where [`choose_key`]'s key comes from.
pub fn key_source(arg: Option<&[u8]>, device: Option<&[u8]>) -> KeySource {
    match (arg, device) {
        (Some(_), _) => KeySource::Argument,
        (None, Some(k)) if !k.is_empty() => KeySource::Interface,
        _ => KeySource::Microsoft,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microsoft's verification table, as the contrib rss-hash test.sh has
    /// it: (src, sport, dst, dport, hash). A 0 port pair is the table's
    /// "addresses only" column.
    const VECTORS: [(&str, u16, &str, u16, u32); 16] = [
        ("66.9.149.187", 0, "161.142.100.80", 0, 0x323e8fc2),
        ("66.9.149.187", 2794, "161.142.100.80", 1766, 0x51ccc178),
        ("199.92.111.2", 0, "65.69.140.83", 0, 0xd718262a),
        ("199.92.111.2", 14230, "65.69.140.83", 4739, 0xc626b0ea),
        ("24.19.198.95", 0, "12.22.207.184", 0, 0xd2d0a5de),
        ("24.19.198.95", 12898, "12.22.207.184", 38024, 0x5c2b394a),
        ("38.27.205.30", 0, "209.142.163.6", 0, 0x82989176),
        ("38.27.205.30", 48228, "209.142.163.6", 2217, 0xafc7327f),
        ("153.39.163.191", 0, "202.188.127.2", 0, 0x5d1809c5),
        ("153.39.163.191", 44251, "202.188.127.2", 1303, 0x10e828a2),
        (
            "3ffe:2501:200:1fff::7",
            0,
            "3ffe:2501:200:3::1",
            0,
            0x2cc18cd5,
        ),
        (
            "3ffe:2501:200:1fff::7",
            2794,
            "3ffe:2501:200:3::1",
            1766,
            0x40207d3d,
        ),
        (
            "3ffe:501:8::260:97ff:fe40:efab",
            0,
            "ff02::1",
            0,
            0x0f0c461c,
        ),
        (
            "3ffe:501:8::260:97ff:fe40:efab",
            14230,
            "ff02::1",
            4739,
            0xdde51bbf,
        ),
        (
            "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
            0,
            "fe80::200:f8ff:fe21:67cf",
            0,
            0x4b61e985,
        ),
        (
            "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
            44251,
            "fe80::200:f8ff:fe21:67cf",
            38024,
            0x02d1feef,
        ),
    ];

    fn tuple(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
        Tuple::new(src.parse().unwrap(), sport, dst.parse().unwrap(), dport).unwrap()
    }

    #[test]
    fn microsoft_vectors_through_the_argument_parser() {
        for (src, sport, dst, dport, want) in VECTORS {
            let arg = format!("{src},{sport},{dst},{dport}");
            let t = parse_tuple(&arg).unwrap();
            let key = choose_key(None, None);
            let h = hash(key, &t, Fields::ALL).unwrap();
            assert_eq!(h, want, "{arg}: {h:08x}");
            let report = Report::new(h, &[], |_| None).to_string();
            assert_eq!(report, format!("hash:  {want:08x}\n"));
        }
    }

    #[test]
    fn addresses_only_equals_zero_ports() {
        // The table's "IPv4"/"IPv6" columns hash 8 (32) bytes; the zero
        // ports of a 12 (36) byte input change nothing.
        for (src, sport, dst, dport, _) in VECTORS.iter().filter(|v| v.1 != 0) {
            let t = tuple(src, *sport, dst, *dport);
            let (buf, len) = t.input(Fields::ALL);
            let addrs = toeplitz(&MICROSOFT_KEY, &buf[..len - 4]);
            assert_eq!(hash(&MICROSOFT_KEY, &t, Fields::ADDRESSES), Ok(addrs));
            let zero = tuple(src, 0, dst, 0);
            assert_eq!(hash(&MICROSOFT_KEY, &zero, Fields::ALL), Ok(addrs));
        }
    }

    #[test]
    fn input_layout_is_microsofts() {
        let t = tuple("66.9.149.187", 2794, "161.142.100.80", 1766);
        let (buf, len) = t.input(Fields::ALL);
        assert_eq!(
            &buf[..len],
            &[66, 9, 149, 187, 161, 142, 100, 80, 0x0a, 0xea, 0x06, 0xe6]
        );
        let (buf, len) = t.input(Fields::from_rxh(RXH_IP_DST | RXH_L4_B_2_3));
        assert_eq!(
            &buf[..len],
            &[0, 0, 0, 0, 161, 142, 100, 80, 0, 0, 0x06, 0xe6]
        );
        let t6 = tuple("::1", 1, "::2", 2);
        let (buf, len) = t6.input(Fields::ALL);
        assert_eq!(len, 36);
        assert_eq!((buf[15], buf[31], buf[33], buf[35]), (1, 2, 1, 2));
    }

    #[test]
    fn symmetric_key_hashes_both_directions_alike() {
        let key = parse_key(&["6d:5a"; 20].join(":")).unwrap();
        assert_eq!(key.len(), 40);
        for (src, sport, dst, dport, _) in VECTORS {
            let t = tuple(src, sport, dst, dport);
            assert_eq!(
                hash(&key, &t, Fields::ALL),
                hash(&key, &t.reversed(), Fields::ALL),
                "{t:?}"
            );
        }
        // The README's example pair.
        let a = parse_tuple("169.254.254.1,32768,169.254.254.2,443").unwrap();
        let b = parse_tuple("169.254.254.2,443,169.254.254.1,32768").unwrap();
        assert_eq!(hash(&key, &a, Fields::ALL), hash(&key, &b, Fields::ALL));
        // Microsoft's key is not symmetric.
        assert_ne!(
            hash(&MICROSOFT_KEY, &a, Fields::ALL),
            hash(&MICROSOFT_KEY, &b, Fields::ALL)
        );
    }

    #[test]
    fn toeplitz_table_is_the_bitwise_hash() {
        let t = ToeplitzTable::new(&MICROSOFT_KEY);
        for (tuple, want) in [
            ("66.9.149.187,2794,161.142.100.80,1766", 0x51ccc178),
            ("66.9.149.187,0,161.142.100.80,0", 0x323e8fc2),
            (
                "3ffe:2501:200:1fff::7,2794,3ffe:2501:200:3::1,1766",
                0x40207d3d,
            ),
        ] {
            let (buf, len) = parse_tuple(tuple).unwrap().input(Fields::ALL);
            assert_eq!(t.hash(&buf[..len]), want, "{tuple}");
        }
        // Any key, any input: the same as bit by bit.
        let key: Vec<u8> = (0..52u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        let t = ToeplitzTable::new(&key);
        let data: Vec<u8> = (0..MAX_INPUT as u8)
            .map(|i| i.wrapping_mul(91) ^ 0xc3)
            .collect();
        for len in 0..=MAX_INPUT {
            assert_eq!(t.hash(&data[..len]), toeplitz(&key, &data[..len]), "{len}");
        }
    }

    #[test]
    fn toeplitz_matches_a_bit_by_bit_definition() {
        // hash = XOR over set input bits i of key bits i..i+32.
        fn reference(key: &[u8], data: &[u8]) -> u32 {
            let bit = |i: usize| {
                key.get(i / 8)
                    .map_or(0, |b| u32::from(b >> (7 - i % 8)) & 1)
            };
            let mut h = 0;
            for i in 0..data.len() * 8 {
                if data[i / 8] >> (7 - i % 8) & 1 == 1 {
                    h ^= (0..32).fold(0, |w, j| w << 1 | bit(i + j));
                }
            }
            h
        }
        let data: Vec<u8> = (0..36u8).map(|i| i.wrapping_mul(37) ^ 0x5c).collect();
        for n in [0, 1, 4, 12, 36] {
            assert_eq!(
                toeplitz(&MICROSOFT_KEY, &data[..n]),
                reference(&MICROSOFT_KEY, &data[..n])
            );
        }
        // Short keys: missing key bits are zero.
        assert_eq!(
            toeplitz(&[0xff; 4], &[0x80, 0x80]),
            reference(&[0xff; 4], &[0x80, 0x80])
        );
        assert_eq!(toeplitz(&[], &[0xff]), 0);
    }

    #[test]
    fn short_keys_are_refused_per_family() {
        let v4 = tuple("1.2.3.4", 1, "5.6.7.8", 2);
        let v6 = tuple("::1", 1, "::2", 2);
        assert!(hash(&[0; 16], &v4, Fields::ALL).is_ok());
        assert_eq!(
            hash(&[0; 15], &v4, Fields::ALL),
            Err(KeyTooShort {
                have: 15,
                need: 16,
                family: "IPv4"
            })
        );
        assert!(hash(&[0; 40], &v6, Fields::ALL).is_ok());
        let e = hash(&[0; 39], &v6, Fields::ALL).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a 39-byte key is too short for an IPv6 tuple (40 bytes needed)"
        );
    }

    #[test]
    fn tuple_arguments() {
        let t = parse_tuple("10.0.0.1,0,0.0.0.0,80").unwrap();
        assert_eq!((t.sport(), t.dport()), (0, 80));
        assert_eq!(t.dst(), "0.0.0.0".parse::<IpAddr>().unwrap());
        assert!(parse_tuple("::,0,::1,65535").is_ok());
        assert!(parse_tuple(" 10.0.0.1 , 1 , 10.0.0.2 , 2 ").is_ok());
        for (bad, want) in [
            ("", ArgError::Shape(String::new())),
            (
                "1.2.3.4,1,5.6.7.8",
                ArgError::Shape("1.2.3.4,1,5.6.7.8".into()),
            ),
            (
                "1.2.3.4,1,5.6.7.8,2,3",
                ArgError::Shape("1.2.3.4,1,5.6.7.8,2,3".into()),
            ),
            ("1.2.3.4,1,host,2", ArgError::Address("host".into())),
            ("1.2.3.4,-1,5.6.7.8,2", ArgError::Port("-1".into())),
            ("1.2.3.4,65536,5.6.7.8,2", ArgError::Port("65536".into())),
            ("1.2.3.4,+1,5.6.7.8,2", ArgError::Port("+1".into())),
            ("1.2.3.4,,5.6.7.8,2", ArgError::Port("".into())),
            ("[::1],1,::2,2", ArgError::Address("[::1]".into())),
        ] {
            assert_eq!(parse_tuple(bad), Err(want), "{bad:?}");
        }
        let e = parse_tuple("::1,1,1.2.3.4,2").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid rss hash tuple '::1,1,1.2.3.4,2': ipv6 SRC with ipv4 DST is not a valid flow."
        );
        assert!(matches!(
            parse_tuple("1.2.3.4,1,::1,2"),
            Err(ArgError::Families(..))
        ));
    }

    #[test]
    fn key_arguments() {
        let ms = format_key(&MICROSOFT_KEY);
        assert!(ms.starts_with("6d:5a:56:da:") && ms.ends_with(":01:fa"));
        assert_eq!(parse_key(&ms).unwrap(), MICROSOFT_KEY);
        assert_eq!(parse_key(&ms.to_uppercase()).unwrap(), MICROSOFT_KEY);
        assert_eq!(parse_key("00:01:02:ff\n").unwrap(), vec![0, 1, 2, 255]);
        for bad in [
            "",
            "6d",
            "6d:5a:56",
            "6d:5a:56:d",
            "6d:5a:56:da:",
            ":6d:5a:56:da",
            "6d5a:56:da:25",
            "6d:5a:56:+a",
            "6d-5a-56-da",
            "6d:5a:56:dag",
        ] {
            assert!(matches!(parse_key(bad), Err(ArgError::Key(_))), "{bad:?}");
        }
        assert_eq!(check_key_length(&[0; 40], None), Ok(()));
        assert_eq!(check_key_length(&[0; 52], Some(52)), Ok(()));
        assert_eq!(check_key_length(&[0; 40], Some(52)), Ok(()));
        let e = check_key_length(&[0; 16], Some(52)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid rss key length 16 (expected 40 or the interface's 52 bytes)."
        );
        let e = check_key_length(&[0; 16], None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid rss key length 16 (expected 40 bytes)."
        );
    }

    #[test]
    fn key_choice() {
        let arg = [1u8; 40];
        let dev = [2u8; 52];
        assert_eq!(choose_key(Some(&arg), Some(&dev)), &arg);
        assert_eq!(choose_key(None, Some(&dev)), &dev);
        assert_eq!(choose_key(None, Some(&[])), &MICROSOFT_KEY);
        assert_eq!(choose_key(None, None), &MICROSOFT_KEY);
        assert_eq!(key_source(Some(&arg), Some(&dev)), KeySource::Argument);
        assert_eq!(key_source(None, Some(&dev)), KeySource::Interface);
        assert_eq!(key_source(None, Some(&[])), KeySource::Microsoft);
        assert_eq!(key_source(None, None), KeySource::Microsoft);
    }

    #[test]
    fn report_verbose_and_json() {
        let table: Vec<u32> = (0..128).map(|i| i % 4).collect();
        let r = Report::new(0x51ccc178, &table, |_| CpuSet::parse_list("2-3"));
        assert_eq!(
            r.to_json(Some("eth0")),
            format!(
                "{{\"hash\":\"0x51ccc178\",\"interface\":\"eth0\",\"index\":120,\"queue\":0,\
                 \"cpus\":[2,3],\"table_size\":128,\"key\":\"{}\",\"key_source\":\"microsoft\"}}\n",
                format_key(&MICROSOFT_KEY)
            )
        );
        assert_eq!(
            r.verbose(Some("eth0")),
            [
                format!(
                    "key {} (40 bytes, Microsoft's verification key: no --rss-key, and eth0 reports no key)",
                    format_key(&MICROSOFT_KEY)
                ),
                "indirection table of eth0: 128 entries".to_string()
            ]
        );
        let r = Report::new(7, &[], |_| None).with_key(&[0xab; 40], KeySource::Argument);
        assert_eq!(
            r.to_json(None),
            format!(
                "{{\"hash\":\"0x00000007\",\"interface\":null,\"index\":null,\"queue\":null,\
                 \"cpus\":null,\"table_size\":0,\"key\":\"{}\",\"key_source\":\"rss-key\"}}\n",
                ["ab"; 40].join(":")
            )
        );
        assert_eq!(
            r.verbose(None)[1],
            "no indirection table: no interface given"
        );
        assert!(r.verbose(None)[0].ends_with("(40 bytes, --rss-key)"));
    }

    #[test]
    fn report_lines() {
        let table: Vec<u32> = (0..128).map(|i| i % 4).collect();
        // 0x51ccc178 % 128 = 0x78 = 120; table[120] = 0.
        let r = Report::new(0x51ccc178, &table, |q| {
            assert_eq!(q, 0);
            CpuSet::parse_list("2-3")
        });
        assert_eq!(
            r.to_string(),
            "hash:  51ccc178\nidx:   120\nqueue: 0\ncpus:  2-3\n"
        );
        let r = Report::new(0x0f0c461c, &table, |_| None);
        assert_eq!(r.to_string(), "hash:  0f0c461c\nidx:   28\nqueue: 0\n");
        // Unknown cpus and an empty affinity print no cpus line.
        let r = Report::new(7, &[5, 6, 7], |_| Some(CpuSet::new()));
        assert_eq!(r.to_string(), "hash:  00000007\nidx:   1\nqueue: 6\n");
    }

    #[test]
    fn indirection_lookup() {
        assert_eq!(queue_for(5, &[]), None);
        assert_eq!(queue_for(5, &[9]), Some(9));
        let t: Vec<u32> = (0..128).map(|i| i % 3).collect();
        // A power-of-two table: mod equals the contrib script's mask.
        for h in [0u32, 1, 127, 128, 0xffff_ffff, 0x51ccc178] {
            assert_eq!(table_index(h, 128), Some((h & 127) as usize));
            assert_eq!(queue_for(h, &t), Some(t[(h & 127) as usize]));
        }
        // Not a power of two: plain modulo.
        assert_eq!(table_index(0xffff_ffff, 96), Some(0xffff_ffff % 96));
    }

    #[test]
    fn field_letters() {
        assert_eq!(Fields::ALL.letters(), "sdfn");
        assert_eq!(Fields::ADDRESSES.letters(), "sd");
        assert_eq!(Fields::from_rxh(RXH_L4_B_2_3).letters(), "n");
        assert_eq!(Fields::from_rxh(0).letters(), "");
    }
}
