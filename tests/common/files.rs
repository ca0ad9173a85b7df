//! Scratch directories and the files a capture writes: a tmpfs that fills
//! up, per-cpu pcap files checked against the report, pcapng files, and
//! tshark's reading of them.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader};
use pcap_file::TsResolution;

use super::capture::Finished;
use super::report::Place;
use super::{output_if_installed, sh, show, unique};

// ---------------------------------------------------------------------------
// Scratch directories and pcap files

/// A fresh directory under cargo's target tmpdir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        TempDir::new_in(Path::new(env!("CARGO_TARGET_TMPDIR")))
    }

    /// A fresh directory in `parent` (e.g. the system's temp directory, for
    /// files another user must reach).
    pub fn new_in(parent: &Path) -> TempDir {
        let name = format!("rxtxcpu-t-{}-{}", std::process::id(), unique());
        let dir = parent.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }

    /// `files_under` the directory.
    pub fn files(&self) -> Vec<String> {
        files_under(&self.0)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tmpfs of `size` (`64k`) mounted on a fresh directory, for a file
/// system that fills up; unmounted on drop, lazily: a capture that is still
/// being killed may hold a file open.
pub struct Tmpfs {
    pub dir: TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Tmpfs {
        let dir = TempDir::new();
        #[rustfmt::skip]
        sh("mount", &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", &dir.path("")]);
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.dir.0)
            .stderr(Stdio::null())
            .status();
    }
}

/// The files (and symlinks, not followed) under `dir`, as paths relative to
/// it, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap();
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The file `-w template` writes for `cpu`: `out.pcap` -> `out-<cpu>.pcap`
/// (every template here has an extension). Spelled out rather than taken
/// from `rxtxcpu::consumers::files::cpu_path`, so that the tests look where the
/// contract puts the files, not wherever the code does.
pub fn cpu_file(template: &str, cpu: u32) -> String {
    let (stem, ext) = template.rsplit_once('.').expect("template extension");
    format!("{stem}-{cpu}.{ext}")
}

/// A packet of a pcap stream.
#[derive(Debug)]
pub struct Packet {
    pub timestamp: Duration,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// A pcap stream but for its packets.
#[derive(Debug)]
pub struct PcapFile {
    pub header: PcapHeader,
    pub packets: u64,
}

/// Reads a pcap stream a record at a time (it may be large), checking each,
/// and hands every packet to `each`. Fails on a bad header or record, a
/// record longer than the snapshot length or than the packet, a timestamp
/// fraction out of range, and, if `complete`, a partial record at the end
/// (else that ends the stream: a file still being written).
///
/// Records are read raw and checked here, because pcap-file 2.0's checked
/// reader wrongly rejects packets longer than the snapshot length (orig_len
/// > snaplen); every other record must pass the checked reader too.
pub fn scan_pcap(
    input: impl Read,
    complete: bool,
    mut each: impl FnMut(Packet),
) -> Result<PcapFile, String> {
    let mut reader = PcapReader::new(input).map_err(|e| format!("pcap header: {e}"))?;
    let header = reader.header();
    let (resolution, snaplen) = (header.ts_resolution, header.snaplen);
    let frac_unit = match resolution {
        TsResolution::MicroSecond => 1000,
        TsResolution::NanoSecond => 1,
    };
    let mut packets = 0;
    while let Some(raw) = reader.next_raw_packet() {
        let raw = match raw {
            Ok(raw) => raw,
            Err(e) if complete => return Err(format!("after {packets} packets: {e}")),
            Err(_) => break,
        };
        let bad = |what: &str| format!("packet {packets}: {what}: {raw:?}");
        if raw.incl_len > snaplen || raw.incl_len > raw.orig_len {
            return Err(bad("incl_len above snaplen or orig_len"));
        }
        if u64::from(raw.ts_frac) * frac_unit >= 1_000_000_000 {
            return Err(bad("timestamp fraction out of range"));
        }
        let timestamp = Duration::new(raw.ts_sec.into(), raw.ts_frac * frac_unit as u32);
        if raw.orig_len <= snaplen {
            let checked = PcapPacket::try_from_raw_packet(raw.clone(), resolution, snaplen)
                .map_err(|e| bad(&format!("pcap-file rejects it ({e})")))?;
            if checked.timestamp != timestamp {
                return Err(bad(&format!("pcap-file reads {:?}", checked.timestamp)));
            }
        }
        each(Packet {
            timestamp,
            orig_len: raw.orig_len,
            data: raw.data.into_owned(),
        });
        packets += 1;
    }
    Ok(PcapFile { header, packets })
}

/// The header and packets of the complete pcap file at `path` (panics
/// unless `scan_pcap` accepts it).
pub fn read_pcap(path: &str) -> (PcapHeader, Vec<Packet>) {
    let input = File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut packets = Vec::new();
    let file =
        scan_pcap(input, true, |p| packets.push(p)).unwrap_or_else(|e| panic!("{path}: {e}"));
    (file.header, packets)
}

/// Checks the per-cpu files of a capture run with `-w template` against its
/// report: one complete, valid pcap file per report line, holding exactly
/// the packets that line counts, less those a line on stderr says are not
/// in the file (after a failed write). The files are read a packet at a
/// time (a flood makes large ones), and `each` gets every packet, with its
/// cpu, for the caller's own checks. Returns the files' headers by cpu.
pub fn assert_files_match_report(
    f: &Finished,
    template: &str,
    mut each: impl FnMut(u32, Packet),
) -> BTreeMap<u32, PcapHeader> {
    let mut headers = BTreeMap::new();
    let missing = f.not_in_file();
    for (&cpu, &n) in &f.report().per_cpu {
        let n = n - missing.get(&Place::Cpu(cpu)).copied().unwrap_or(0);
        let path = cpu_file(template, cpu);
        let input = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}\n{f}"));
        let file =
            scan_pcap(input, true, |p| each(cpu, p)).unwrap_or_else(|e| panic!("{path}: {e}\n{f}"));
        assert_eq!(file.packets, n, "{path} against the report\n{f}");
        headers.insert(cpu, file.header);
    }
    headers
}

// ---------------------------------------------------------------------------
// pcapng files, and tshark

/// What a pcapng file holds, read with pcap-file (which checks every
/// block).
#[derive(Debug, Default)]
pub struct PcapNg {
    /// (if_name, if_description) of each interface, in order.
    pub interfaces: Vec<(String, String)>,
    /// (interface, timestamp, epb_flags, data) of each packet.
    pub packets: Vec<(u32, Duration, Option<u32>, Vec<u8>)>,
    /// The other options of each packet, in the order of `packets`.
    pub options: Vec<EpbOptions>,
    /// (interface, isb_ifrecv, isb_ifdrop, isb_osdrop) of each statistics
    /// block.
    pub stats: Vec<IsbCounts>,
}

/// A packet's epb_hash options (algorithm octet, then the hash) and
/// comments.
#[derive(Debug, Default)]
pub struct EpbOptions {
    pub hashes: Vec<Vec<u8>>,
    pub comments: Vec<String>,
}

/// (interface, isb_ifrecv, isb_ifdrop, isb_osdrop) of a statistics block.
pub type IsbCounts = (u32, Option<u64>, Option<u64>, Option<u64>);

/// Reads the whole pcapng stream `input` (panics on anything invalid).
pub fn read_pcapng(input: impl Read) -> PcapNg {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    use pcap_file::pcapng::blocks::interface_statistics::InterfaceStatisticsOption;
    use pcap_file::pcapng::{Block, PcapNgReader};
    let mut reader = PcapNgReader::new(input).expect("pcapng section header");
    let mut file = PcapNg::default();
    while let Some(block) = reader.next_block() {
        match block.expect("a valid pcapng block") {
            Block::InterfaceDescription(idb) => {
                let (mut name, mut desc) = (String::new(), String::new());
                for o in &idb.options {
                    match o {
                        InterfaceDescriptionOption::IfName(n) => name = n.to_string(),
                        InterfaceDescriptionOption::IfDescription(d) => desc = d.to_string(),
                        _ => {}
                    }
                }
                file.interfaces.push((name, desc));
            }
            Block::EnhancedPacket(epb) => {
                let flags = epb.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Flags(f) => Some(*f),
                    _ => None,
                });
                let mut options = EpbOptions::default();
                for o in &epb.options {
                    match o {
                        EnhancedPacketOption::Hash(h) => options.hashes.push(h.to_vec()),
                        EnhancedPacketOption::Comment(c) => options.comments.push(c.to_string()),
                        _ => {}
                    }
                }
                file.options.push(options);
                file.packets.push((
                    epb.interface_id,
                    epb.timestamp,
                    flags,
                    epb.data.into_owned(),
                ));
            }
            Block::InterfaceStatistics(isb) => {
                let get = |want: fn(&InterfaceStatisticsOption) -> Option<u64>| {
                    isb.options.iter().find_map(want)
                };
                file.stats.push((
                    isb.interface_id,
                    get(|o| match o {
                        InterfaceStatisticsOption::IsbIfRecv(n) => Some(*n),
                        _ => None,
                    }),
                    get(|o| match o {
                        InterfaceStatisticsOption::IsbIfDrop(n) => Some(*n),
                        _ => None,
                    }),
                    get(|o| match o {
                        InterfaceStatisticsOption::IsbOsDrop(n) => Some(*n),
                        _ => None,
                    }),
                ));
            }
            _ => {}
        }
    }
    file
}

/// `tshark -r FILE -T fields -e F...` (FILE `-` reads `stdin`): one row of
/// field values per packet. None where tshark is not installed.
pub fn tshark_fields(file: &str, fields: &[&str]) -> Option<Vec<Vec<String>>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r", file, "-T", "fields", "-E", "separator=|"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = output_if_installed(&mut cmd)?;
    assert!(out.status.success(), "{}", show("tshark", &out));
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('|').map(str::to_string).collect())
            .collect(),
    )
}
