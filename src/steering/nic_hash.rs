//! The NIC's own hash: whether a packet's flow hash is the device's
//! Toeplitz RSS hash of its tuple ([`NicHash`], [`rss_hash_matches`]),
//! the tuple of a packet ([`packet_flow`]), and the `--rss-hash` command.

use std::io;

use crate::cpuset::CpuSet;
use crate::steering::rss::{Fields, Tuple};
#[cfg(test)]
use crate::steering::Config;
use crate::sys::ethtool::{self, FlowType, Rss};

/// Whether the NIC's hash of a packet is the Toeplitz hash of its tuple
/// over the fields the NIC hashes for its flow type. None when that cannot
/// be computed: no key, not Toeplitz, an input transform, or no word from
/// the device about the flow type's fields.
#[cfg(test)]
pub fn rss_hash_matches(
    config: &Config,
    tuple: &Tuple,
    flow: FlowType,
    packet_hash: u32,
) -> Option<bool> {
    let rss = config.rss.as_ref().filter(|r| r.hash_is_reproducible())?;
    let fields = config.hash_fields.iter().find(|(f, _)| *f == flow)?.1;
    let h = crate::steering::rss::hash(&rss.key, tuple, fields).ok()?;
    Some(h == packet_hash)
}

/// A device's RSS hash, reproduced packet by packet: what tells whether
/// the flow hash a packet carries (`tp_rxhash`) is the NIC's Toeplitz
/// hash, the one thing the pcapng epb_hash option has an algorithm code
/// for. The ring does not say which hash a packet has (the NIC's, the
/// kernel's own when the driver gave none or one that does not cover the
/// ports, a sending socket's random one, one a veth peer set), so the
/// hash of the packet's tuple is computed with the device's key over the
/// fields it hashes, and compared.
pub struct NicHash {
    table: crate::steering::rss::ToeplitzTable,
    fields: Vec<(FlowType, Fields)>,
}

impl NicHash {
    /// `ifname`'s, or why no packet's hash can be shown to be its
    /// Toeplitz hash.
    pub fn read(ifname: &str) -> Result<NicHash, String> {
        let hashing = ethtool::rx_hashing(ifname);
        let rss = ethtool::rss(ifname);
        let mut fields = Vec::new();
        if matches!(&rss, Ok(Some(r)) if r.hash_is_reproducible()) {
            for flow in FlowType::ALL {
                if let Ok(Some(bits)) = ethtool::rx_hash_fields(ifname, flow) {
                    fields.push((flow, Fields::from_rxh(bits)));
                }
            }
        }
        NicHash::from_parts(ifname, hashing, rss, fields)
    }

    /// [`NicHash::read`] from what the device answered.
    pub fn from_parts(
        ifname: &str,
        hashing: io::Result<Option<bool>>,
        rss: io::Result<Option<Rss>>,
        fields: Vec<(FlowType, Fields)>,
    ) -> Result<NicHash, String> {
        match hashing {
            Ok(Some(true)) => {}
            Ok(_) => {
                return Err(format!(
                    "{ifname} does not hand the kernel a receive hash (receive-hashing off)"
                ))
            }
            Err(e) => {
                return Err(format!(
                    "cannot read {ifname}'s features: {}",
                    crate::error::Why(e)
                ))
            }
        }
        let rss = match rss {
            Ok(Some(r)) => r,
            Ok(None) => return Err(format!("{ifname} reports no RSS key")),
            Err(e) => {
                return Err(format!(
                    "cannot read {ifname}'s RSS configuration: {}",
                    crate::error::Why(e)
                ))
            }
        };
        if !rss.hash_is_reproducible() {
            return Err(format!(
                "{ifname}'s RSS hash cannot be reproduced (hash function {}, a {}-byte key{})",
                rss.hash_function().name(),
                rss.key.len(),
                if rss.input_xfrm != 0 {
                    ", input transformed"
                } else {
                    ""
                }
            ));
        }
        if fields.is_empty() {
            return Err(format!("{ifname} does not say which fields it hashes"));
        }
        Ok(NicHash {
            table: crate::steering::rss::ToeplitzTable::new(&rss.key),
            fields,
        })
    }

    /// Whether `hash` is the device's Toeplitz hash of the IP packet whose
    /// network header starts `l3`. False for anything else: not IP, ports
    /// not captured, a flow type whose fields the device did not report, a
    /// key too short for IPv6, or another hash.
    pub fn is_its_hash(&self, l3: &[u8], hash: u32) -> bool {
        let Some((tuple, flow)) = packet_flow(l3) else {
            return false;
        };
        let Some(&(_, fields)) = self.fields.iter().find(|(f, _)| *f == flow) else {
            return false;
        };
        // The table covers the longest input; a key shorter than the
        // input needs is what the NIC cannot have hashed with.
        let (buf, len) = tuple.input(fields);
        self.table.covers(len + 4) && self.table.hash(&buf[..len]) == hash
    }
}

/// The tuple and flow type of an IP packet (`l3` from its network
/// header), as a NIC would hash it: TCP, UDP and SCTP carry their ports;
/// other protocols, IPv4 fragments and IPv6 packets with extension headers
/// have ports 0 and the plain IP flow type. None for anything that is not
/// a well-formed IPv4 or IPv6 header, or when the ports were not captured.
pub fn packet_flow(l3: &[u8]) -> Option<(Tuple, FlowType)> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let version = l3.first()? >> 4;
    let (src, dst, proto, l4, fragment) = match version {
        4 => {
            let ihl = usize::from(l3[0] & 0xf) * 4;
            if ihl < 20 || l3.len() < ihl {
                return None;
            }
            let src: [u8; 4] = l3[12..16].try_into().ok()?;
            let dst: [u8; 4] = l3[16..20].try_into().ok()?;
            // More fragments, or a fragment offset: no (whole) L4 header.
            let frag = u16::from_be_bytes([l3[6], l3[7]]) & 0x3fff != 0;
            (
                IpAddr::V4(Ipv4Addr::from(src)),
                IpAddr::V4(Ipv4Addr::from(dst)),
                l3[9],
                &l3[ihl..],
                frag,
            )
        }
        6 => {
            let src: [u8; 16] = l3.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = l3.get(24..40)?.try_into().ok()?;
            (
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                l3[6],
                &l3[40..],
                false,
            )
        }
        _ => return None,
    };
    let flow = FlowType::of(version == 4, proto);
    let ports = match flow {
        FlowType::Ipv4 | FlowType::Ipv6 => None,
        _ if fragment => None,
        // Ports cut off (a short snap length): the NIC saw them, we cannot.
        _ => Some(l4.get(..4).map(|p| {
            (
                u16::from_be_bytes([p[0], p[1]]),
                u16::from_be_bytes([p[2], p[3]]),
            )
        })?),
    };
    let flow = match (ports, version) {
        (None, 4) => FlowType::Ipv4,
        (None, _) => FlowType::Ipv6,
        (Some(_), _) => flow,
    };
    let (sport, dport) = ports.unwrap_or((0, 0));
    Some((Tuple::new(src, sport, dst, dport)?, flow))
}

/// What `--rss-hash` cannot do.
#[derive(Debug, thiserror::Error)]
pub enum RssHashError {
    #[error("{ifname}: hash function is {function}, not toeplitz: only toeplitz is supported")]
    NotToeplitz { ifname: String, function: String },
    #[error(
        "{ifname}: hash input is transformed (symmetric xor): only plain toeplitz is supported"
    )]
    Transformed { ifname: String },
    #[error("{ifname}: cannot read the RSS configuration: {why}")]
    Device {
        ifname: String,
        why: crate::error::Why,
    },
    #[error(transparent)]
    Key(#[from] crate::steering::rss::ArgError),
    #[error("{0}")]
    KeyTooShort(#[from] crate::steering::rss::KeyTooShort),
}

/// `--rss-hash`: the answer for `tuple`, with `key` from `--rss-key` if
/// given and `ifname`'s table, key and queue interrupt cpus if an
/// interface is given (a device without RSS just has no `idx` and `queue`
/// lines).
pub fn rss_hash_command(
    tuple: &Tuple,
    key: Option<&[u8]>,
    ifname: Option<&str>,
) -> Result<crate::steering::rss::Report, RssHashError> {
    let Some(name) = ifname else {
        return rss_hash_report(tuple, key, None, |_| None);
    };
    let device = ethtool::rss(name).map_err(|e| RssHashError::Device {
        ifname: name.to_string(),
        why: crate::error::Why(e),
    })?;
    let cpus_of = |q| {
        let ifindex = crate::sys::afpacket::ifindex(name).ok()?;
        let irq = ethtool::rx_queue_irq(name, ifindex, q)?;
        Some(irq.affinity?.cpus().clone())
    };
    rss_hash_report(tuple, key, device.as_ref().map(|d| (name, d)), cpus_of)
}

/// The pure part of [`rss_hash_command`]: `device` is the interface's
/// name and RSS configuration, `cpus_of` a queue's interrupt cpus.
pub fn rss_hash_report(
    tuple: &Tuple,
    key: Option<&[u8]>,
    device: Option<(&str, &Rss)>,
    cpus_of: impl FnOnce(u32) -> Option<CpuSet>,
) -> Result<crate::steering::rss::Report, RssHashError> {
    if let Some((name, d)) = device {
        use ethtool::HashFunction::{Toeplitz, Unreported};
        let f = d.hash_function();
        if !matches!(f, Toeplitz | Unreported) {
            return Err(RssHashError::NotToeplitz {
                ifname: name.to_string(),
                function: f.name(),
            });
        }
        if d.input_xfrm != 0 {
            return Err(RssHashError::Transformed {
                ifname: name.to_string(),
            });
        }
    }
    let rss = device.map(|(_, d)| d);
    if let Some(k) = key {
        let device_len = rss.map(|d| d.key.len()).filter(|&n| n > 0);
        crate::steering::rss::check_key_length(k, device_len)?;
    }
    let device_key = rss.map(|d| d.key.as_slice());
    let k = crate::steering::rss::choose_key(key, device_key);
    let hash = crate::steering::rss::hash(k, tuple, Fields::ALL)?;
    let table = rss.map(|d| d.indirection.as_slice()).unwrap_or(&[]);
    Ok(crate::steering::rss::Report::new(hash, table, cpus_of)
        .with_key(k, crate::steering::rss::key_source(key, device_key)))
}
