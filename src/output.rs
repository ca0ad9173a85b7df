//! Pcap output: per-cpu file names, link types and records.

use pcap_file::pcap::PcapHeader;
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::AsFd;
use std::path::Path;

use crate::afpacket::{ARPHRD_ETHER, ARPHRD_LOOPBACK};
use crate::cli::Precision;
use crate::ring::Packet;

/// Bytes buffered per output before a write(2): large writes, none per
/// packet.
const BUFFER: usize = 256 * 1024;

/// Length of a LINUX_SLL2 header.
const SLL2_LEN: usize = 20;

/// How packets are recorded, decided by the interface type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet headers: Ethernet devices and loopback.
    Ethernet,
    /// Bare IP, no link header: tun and other headerless IP devices.
    Raw,
    /// A synthesized LINUX_SLL2 header recording each packet's interface,
    /// hardware type and direction: the all-interfaces capture, where link
    /// types mix, and any device whose own headers pcap cannot name.
    LinuxSll2,
}

impl LinkType {
    /// The link type for a capture on one interface of hardware type
    /// `hatype` (ARPHRD_*), as libpcap maps them.
    pub fn for_hatype(hatype: u16) -> LinkType {
        const ARPHRD_TUNNEL: u16 = 768;
        const ARPHRD_TUNNEL6: u16 = 769;
        const ARPHRD_SIT: u16 = 776;
        const ARPHRD_IPGRE: u16 = 778;
        const ARPHRD_RAWIP: u16 = 519;
        const ARPHRD_NONE: u16 = 0xfffe;
        match hatype {
            ARPHRD_ETHER | ARPHRD_LOOPBACK => LinkType::Ethernet,
            ARPHRD_NONE | ARPHRD_RAWIP | ARPHRD_TUNNEL | ARPHRD_TUNNEL6 | ARPHRD_SIT
            | ARPHRD_IPGRE => LinkType::Raw,
            _ => LinkType::LinuxSll2,
        }
    }

    fn datalink(self) -> DataLink {
        match self {
            LinkType::Ethernet => DataLink::ETHERNET,
            LinkType::Raw => DataLink::RAW,
            LinkType::LinuxSll2 => DataLink::LINUX_SLL2,
        }
    }

    /// tcpdump's name for it.
    pub fn describe(self) -> &'static str {
        match self {
            LinkType::Ethernet => "EN10MB (Ethernet)",
            LinkType::Raw => "RAW (Raw IP)",
            LinkType::LinuxSll2 => "LINUX_SLL2 (Linux cooked v2)",
        }
    }
}

/// The file for `cpu`: the cpu number goes before the extension
/// (`out.pcap` -> `out-0.pcap`, `out` -> `out-0`). A leading dot does not
/// start an extension (`.cap` -> `.cap-0`), and dots in directory names do
/// not count (`/tmp/x.y/out` -> `/tmp/x.y/out-0`).
pub fn cpu_path(template: &str, cpu: u32) -> String {
    let base_start = template.rfind('/').map_or(0, |i| i + 1);
    let base = &template[base_start..];
    match base.rfind('.').filter(|&i| i > 0) {
        Some(dot) => {
            let dot = base_start + dot;
            format!("{}-{cpu}{}", &template[..dot], &template[dot..])
        }
        None => format!("{template}-{cpu}"),
    }
}

/// Where one cpu's pcap stream goes.
pub struct PcapOutput {
    /// The file name, or `-` for stdout; for messages.
    pub path: String,
    writer: BufWriter<File>,
    nano: bool,
    link: LinkType,
    snaplen: usize,
    packet_buffered: bool,
}

/// The parameters every output of a capture shares.
#[derive(Clone, Copy, Debug)]
pub struct Format {
    pub link: LinkType,
    pub snaplen: u32,
    pub precision: Precision,
    pub packet_buffered: bool,
}

fn io_error(e: PcapError) -> io::Error {
    match e {
        PcapError::IoError(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

impl PcapOutput {
    /// Creates (truncating) the file, or takes stdout for `-`, and writes
    /// the pcap file header.
    pub fn create(path: &str, format: Format) -> io::Result<PcapOutput> {
        let file = if path == "-" {
            // A dup of fd 1 as a File: std's Stdout is line buffered, which
            // would flush at every 0x0a byte of binary pcap data.
            File::from(io::stdout().as_fd().try_clone_to_owned()?)
        } else {
            File::create(Path::new(path))?
        };
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: format.snaplen,
            datalink: format.link.datalink(),
            ts_resolution: match format.precision {
                Precision::Micro => TsResolution::MicroSecond,
                Precision::Nano => TsResolution::NanoSecond,
            },
            endianness: Endianness::native(),
        };
        let mut writer = BufWriter::with_capacity(BUFFER, file);
        header.write_to(&mut writer).map_err(io_error)?;
        if format.packet_buffered {
            writer.flush()?;
        }
        Ok(PcapOutput {
            path: path.to_string(),
            writer,
            nano: format.precision == Precision::Nano,
            link: format.link,
            snaplen: format.snaplen as usize,
            packet_buffered: format.packet_buffered,
        })
    }

    /// Appends one packet. The 16-byte record header is written here
    /// rather than through pcap_file's PcapWriter, which offers no way to
    /// flush its writer for -U; the file header above is pcap_file's, so
    /// byte order and magic agree (native order, as libpcap writes).
    pub fn write(&mut self, p: &Packet) -> io::Result<()> {
        let frac = if self.nano { p.nsec } else { p.nsec / 1000 };
        match self.link {
            LinkType::Ethernet | LinkType::Raw => {
                let caplen = p.data.len() as u32;
                self.record(p.sec, frac, caplen, p.len.max(caplen))?;
                self.writer.write_all(p.data)
            }
            LinkType::LinuxSll2 => {
                let net = p.net_offset.min(p.data.len());
                let payload = &p.data[net..];
                let payload = &payload[..payload.len().min(self.snaplen.saturating_sub(SLL2_LEN))];
                let mut h = [0u8; SLL2_LEN];
                h[0..2].copy_from_slice(&p.protocol.to_ne_bytes()); // network order already
                h[4..8].copy_from_slice(&p.ifindex.to_be_bytes());
                h[8..10].copy_from_slice(&p.hatype.to_be_bytes());
                h[10] = p.pkttype;
                h[11] = p.halen;
                h[12..20].copy_from_slice(&p.addr);
                let caplen = (SLL2_LEN + payload.len()) as u32;
                let orig = (SLL2_LEN as u32 + p.len.saturating_sub(net as u32)).max(caplen);
                self.record(p.sec, frac, caplen, orig)?;
                self.writer.write_all(&h)?;
                self.writer.write_all(payload)
            }
        }
    }

    fn record(&mut self, sec: u32, frac: u32, caplen: u32, orig: u32) -> io::Result<()> {
        let mut r = [0u8; 16];
        r[0..4].copy_from_slice(&sec.to_ne_bytes());
        r[4..8].copy_from_slice(&frac.to_ne_bytes());
        r[8..12].copy_from_slice(&caplen.to_ne_bytes());
        r[12..16].copy_from_slice(&orig.to_ne_bytes());
        self.writer.write_all(&r)
    }

    /// Called after each batch of packets: with -U, pushes them out now.
    pub fn batch_done(&mut self) -> io::Result<()> {
        if self.packet_buffered {
            self.flush()?;
        }
        Ok(())
    }

    /// For a pipe on stdout: the descriptor to watch for POLLERR, which
    /// poll() reports on a pipe's write end once its reader has gone. That
    /// lets `| tcpdump -c 3 -r -` end the capture at once, not at the next
    /// packet.
    pub fn watch_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        (self.path == "-").then(|| self.writer.get_ref().as_fd())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(cpu_path("out.pcap", 0), "out-0.pcap");
        assert_eq!(cpu_path("out", 1), "out-1");
        assert_eq!(cpu_path(".cap", 2), ".cap-2");
        assert_eq!(cpu_path("/tmp/x.y/out", 0), "/tmp/x.y/out-0");
        assert_eq!(cpu_path("/tmp/x.y/out.pcap", 3), "/tmp/x.y/out-3.pcap");
        assert_eq!(cpu_path("a.b.pcap", 0), "a.b-0.pcap");
        assert_eq!(cpu_path("dir/.hidden.pcap", 0), "dir/.hidden-0.pcap");
        assert_eq!(cpu_path("out.", 0), "out-0.");
    }

    #[test]
    fn link_types() {
        assert_eq!(LinkType::for_hatype(1), LinkType::Ethernet);
        assert_eq!(LinkType::for_hatype(772), LinkType::Ethernet);
        assert_eq!(LinkType::for_hatype(0xfffe), LinkType::Raw);
        assert_eq!(LinkType::for_hatype(801), LinkType::LinuxSll2);
    }
}
