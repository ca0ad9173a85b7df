//! File rotation as tcpdump does it: -C FILE_SIZE, -G ROTATE_SECONDS and
//! -W FILECOUNT, with tcpdump's file names (its `MakeFilename`) and its
//! rules (`dump_packet_and_trunc` in tcpdump 4.99):
//!
//! - Before each packet is written: with -G, if ROTATE_SECONDS have
//!   passed since the last rotation (or the start), the file is closed and
//!   the next one opened; with -W and no -C that ends the capture once
//!   FILECOUNT files were made ("Maximum file limit reached"), without
//!   writing the packet. Then, with -C, if the file is already larger than
//!   FILE_SIZE million bytes (counting what is buffered, as ftell() does),
//!   the next file is opened. So a file ends a little past the size, with
//!   the last packet that found it not yet over.
//! - Names: with -G the name goes through strftime(3) (local time of the
//!   last -G rotation). With -C a number follows: none for the first file
//!   without -W, then 1, 2, 3...; with -W numbered from 0, zero-padded to
//!   the width of FILECOUNT-1, and back to 0 after FILECOUNT-1 (a ring,
//!   overwriting the oldest file). A -G rotation restarts the numbers.
//!
//! Everything here is pure: the caller passes sizes, record counts and the
//! time, and opens the files. Each per-stream file rotates on its own
//! (the template is the stream's name, `out-0.pcap`), and so does the
//! merged pcapng file.

use crate::options::Rotation;
use std::collections::HashMap;
use std::ffi::CString;

use crate::sys::host::{self, StrftimeError};

/// The usage rules between the options: -W needs -C or -G, rotation needs
/// `-w FILE` (not stdout).
pub fn check(rotation: &Rotation, write: Option<&str>) -> Result<(), String> {
    if rotation.count.is_some() && !rotation.is_on() {
        return Err("-W [--file-count] needs -C [--file-size] or -G [--rotate-seconds].".into());
    }
    match write {
        _ if !rotation.is_on() => Ok(()),
        None => Err(format!("{} needs -w [--write].", option(rotation))),
        Some("-") => check_unnamed(rotation, "'-' (stdout)"),
        Some(_) => Ok(()),
    }
}

/// The rotation option a message names: -G if given, else -C.
fn option(rotation: &Rotation) -> &'static str {
    if rotation.seconds.is_some() {
        "-G [--rotate-seconds]"
    } else {
        "-C [--file-size]"
    }
}

/// Rotation makes file names; an output that is not a file name
/// (`described`: `'-' (stdout)`, `'/dev/null' (a character device)`)
/// has none to make.
pub fn check_unnamed(rotation: &Rotation, described: &str) -> Result<(), String> {
    if !rotation.is_on() {
        return Ok(());
    }
    Err(format!(
        "{} needs a file to write: {described} cannot be rotated.",
        option(rotation)
    ))
}

/// tcpdump's digits for -W: the width of FILECOUNT-1 (`getWflagChars`).
fn count_digits(count: u32) -> usize {
    let mut x = count.saturating_sub(1);
    let mut c = 0;
    while x > 0 {
        c += 1;
        x /= 10;
    }
    c
}

/// A name that cannot be made.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("file name too long")]
    TooLong,
    #[error("file name contains a NUL byte")]
    Nul,
    #[error("cannot convert the time to local time")]
    Time,
}

/// Longest name made (tcpdump's PATH_MAX).
const PATH_MAX: usize = 4096;

/// Makes the names of one output's files (tcpdump's `MakeFilename`).
#[derive(Clone, Debug)]
pub struct Namer {
    template: String,
    strftime: bool,
    digits: usize,
}

impl Namer {
    /// For the file (or stream file) `template` under `rotation`.
    pub fn new(template: &str, rotation: &Rotation) -> Namer {
        Namer {
            template: template.to_string(),
            strftime: rotation.seconds.is_some(),
            // tcpdump pads only with -C: with -G alone there is no number.
            digits: if rotation.size.is_some() {
                rotation.count.map_or(0, count_digits)
            } else {
                0
            },
        }
    }

    /// The name of file number `count` (numbering restarts at each -G
    /// rotation) for a -G period that started at `time` (seconds since
    /// the epoch; unused without -G).
    pub fn name(&self, time: i64, count: u32) -> Result<String, NameError> {
        let base = if self.strftime {
            strftime_local(&self.template, time)?
        } else {
            self.template.clone()
        };
        let name = if count == 0 && self.digits == 0 {
            base
        } else {
            format!("{base}{count:0width$}", width = self.digits)
        };
        if name.len() > PATH_MAX {
            return Err(NameError::TooLong);
        }
        Ok(name)
    }
}

/// strftime(3) of `pattern` at `time` in local time, as tcpdump names -G
/// files.
pub fn strftime_local(pattern: &str, time: i64) -> Result<String, NameError> {
    if pattern.is_empty() {
        return Ok(String::new());
    }
    let c_pattern = CString::new(pattern).map_err(|_| NameError::Nul)?;
    // Too long (or a pattern that expands to nothing, which makes no file
    // name either): TooLong.
    host::strftime_local(&c_pattern, time, PATH_MAX).map_err(|e| match e {
        StrftimeError::Time => NameError::Time,
        StrftimeError::TooLong => NameError::TooLong,
    })
}

/// What to do before writing a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write it to the current file.
    Keep,
    /// Close the current file, create `name` (truncating: it may be an
    /// older file of this capture, see [`Rotator::rotated_away`]) and
    /// write the packet there.
    Rotate { name: String },
    /// -G with -W: FILECOUNT files are done. End the capture without
    /// writing this packet (tcpdump: "Maximum file limit reached").
    Stop,
}

/// The rotation state of one output.
#[derive(Debug)]
pub struct Rotator {
    rotation: Rotation,
    namer: Namer,
    /// When the current -G period began.
    g_time: i64,
    /// -G rotations so far.
    g_count: u32,
    /// The number of the current file within its -G period.
    c_count: u32,
    current: String,
    /// Records in the files this output closed, by name, while they exist.
    closed: HashMap<String, u64>,
    rotated_away: u64,
    records_lost: u64,
    files: u64,
}

impl Rotator {
    /// For the output `template` (a stream's file name), starting at `now`
    /// (seconds since the epoch).
    pub fn new(template: &str, rotation: Rotation, now: i64) -> Result<Rotator, NameError> {
        let namer = Namer::new(template, &rotation);
        let current = namer.name(now, 0)?;
        Ok(Rotator {
            rotation,
            namer,
            g_time: now,
            g_count: 0,
            c_count: 0,
            current,
            closed: HashMap::new(),
            rotated_away: 0,
            records_lost: 0,
            files: 1,
        })
    }

    /// The file to write now; the first one until a rotation.
    pub fn current(&self) -> &str {
        &self.current
    }

    /// Before writing each packet: `size` is the current file's size with
    /// what is buffered, `records` the packets it holds, `now` the time in
    /// seconds since the epoch (the wall clock, as tcpdump's time(NULL)).
    pub fn before_packet(
        &mut self,
        size: u64,
        records: u64,
        now: i64,
    ) -> Result<Decision, NameError> {
        let mut next = None;
        if let Some(seconds) = self.rotation.seconds {
            if now.saturating_sub(self.g_time) >= seconds as i64 {
                if self.rotation.size.is_none()
                    && self.rotation.count.is_some_and(|w| self.g_count + 1 >= w)
                {
                    self.g_count += 1;
                    return Ok(Decision::Stop);
                }
                let name = self.namer.name(now, 0)?;
                self.g_time = now;
                self.g_count += 1;
                self.c_count = 0;
                next = Some(name);
            }
        }
        // After a -G rotation the file is new: no -C check (tcpdump makes
        // it, on a file holding just its header).
        if let (None, Some(limit)) = (&next, self.rotation.size) {
            if size > limit {
                let mut c = self.c_count + 1;
                if self.rotation.count.is_some_and(|w| c >= w) {
                    c = 0;
                }
                next = Some(self.namer.name(self.g_time, c)?);
                self.c_count = c;
            }
        }
        let Some(name) = next else {
            return Ok(Decision::Keep);
        };
        let left = std::mem::replace(&mut self.current, name.clone());
        self.closed.insert(left, records);
        if let Some(lost) = self.closed.remove(&name) {
            self.rotated_away += 1;
            self.records_lost += lost;
        }
        self.files += 1;
        Ok(Decision::Rotate { name })
    }

    /// Files this output overwrote (the -W ring, or -G names that came
    /// round again).
    pub fn rotated_away(&self) -> u64 {
        self.rotated_away
    }

    /// Records that were in the files overwritten: with the records of the
    /// files that remain they add up to every record written.
    pub fn records_lost(&self) -> u64 {
        self.records_lost
    }

    /// Files created so far, the overwritten ones included.
    #[cfg(test)]
    pub fn files(&self) -> u64 {
        self.files
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::FILE_SIZE_UNIT;
    use std::process::Command;

    fn c(mb: u64) -> Option<u64> {
        Some(mb * FILE_SIZE_UNIT)
    }

    #[test]
    fn usage_rules() {
        let w = |r: Rotation, f: Option<&str>| check(&r, f);
        let size = Rotation {
            size: c(1),
            ..Rotation::default()
        };
        let secs = Rotation {
            seconds: Some(5),
            ..Rotation::default()
        };
        let count = Rotation {
            count: Some(3),
            ..Rotation::default()
        };
        assert_eq!(w(Rotation::default(), None), Ok(()));
        assert_eq!(w(Rotation::default(), Some("-")), Ok(()));
        assert_eq!(w(size, Some("out.pcap")), Ok(()));
        assert_eq!(
            w(count, Some("out.pcap")),
            Err("-W [--file-count] needs -C [--file-size] or -G [--rotate-seconds].".into())
        );
        assert_eq!(
            w(secs, None),
            Err("-G [--rotate-seconds] needs -w [--write].".into())
        );
        assert_eq!(
            w(size, None),
            Err("-C [--file-size] needs -w [--write].".into())
        );
        assert_eq!(
            w(size, Some("-")),
            Err("-C [--file-size] needs a file to write: '-' (stdout) cannot be rotated.".into())
        );
        assert!(w(size, Some("-")).is_err());
        assert!(w(secs, Some("-")).is_err());
        assert_eq!(
            w(
                Rotation {
                    count: Some(2),
                    ..secs
                },
                Some("x")
            ),
            Ok(())
        );
    }

    #[test]
    fn digits_as_tcpdump_counts_them() {
        assert_eq!(count_digits(1), 0);
        assert_eq!(count_digits(2), 1);
        assert_eq!(count_digits(10), 1);
        assert_eq!(count_digits(11), 2);
        assert_eq!(count_digits(100), 2);
        assert_eq!(count_digits(101), 3);
    }

    /// Simulates writing `records` records of `len` bytes after a header
    /// of `header` bytes; returns (name, records) of each file made, with
    /// later files of the same name replacing earlier ones' counts.
    fn simulate(
        rotation: Rotation,
        header: u64,
        len: u64,
        records: u64,
    ) -> (Vec<(String, u64)>, Rotator) {
        let mut r = Rotator::new("out.pcap", rotation, 0).unwrap();
        let mut files = vec![(r.current().to_string(), 0u64)];
        let mut size = header;
        for _ in 0..records {
            let last = files.last().unwrap().1;
            match r.before_packet(size, last, 0).unwrap() {
                Decision::Keep => {}
                Decision::Rotate { name } => {
                    files.retain(|f| f.0 != name);
                    files.push((name, 0));
                    size = header;
                }
                Decision::Stop => unreachable!(),
            }
            size += len;
            files.last_mut().unwrap().1 += 1;
        }
        (files, r)
    }

    #[test]
    fn size_rotation_names_and_counts() {
        // A file of exactly the limit is not over it: records of 124997
        // bytes after a 24-byte header make 1000000 bytes after 8, so a
        // 9th still goes in (what tcpdump -C 1 did with these records).
        let (files, r) = simulate(
            Rotation {
                size: c(1),
                ..Rotation::default()
            },
            24,
            124_997,
            20,
        );
        let want = [("out.pcap", 9), ("out.pcap1", 9), ("out.pcap2", 2)];
        let want: Vec<(String, u64)> = want.iter().map(|&(n, k)| (n.into(), k)).collect();
        assert_eq!(files, want);
        assert_eq!((r.rotated_away(), r.records_lost(), r.files()), (0, 0, 3));
    }

    #[test]
    fn ring_of_files() {
        let ring = |count| Rotation {
            size: c(1),
            count: Some(count),
            ..Rotation::default()
        };
        // 50 files' worth in a ring of 3: names 0,1,2 then over again.
        let (files, r) = simulate(ring(3), 24, 500_000, 100);
        let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
        // Each file takes 2 records (24+500000 is not over, 24+1000000 is).
        assert_eq!(names, ["out.pcap2", "out.pcap0", "out.pcap1"]);
        assert_eq!(r.files(), 50);
        assert_eq!(r.rotated_away(), 47);
        let remaining: u64 = files.iter().map(|f| f.1).sum();
        assert_eq!(remaining + r.records_lost(), 100);
        // -W 11 pads to two digits; -W 1 keeps the plain name, rewriting it.
        let (files, _) = simulate(ring(11), 24, 600_000, 30);
        assert!(files.iter().any(|f| f.0 == "out.pcap00"));
        assert!(files.iter().any(|f| f.0 == "out.pcap10"));
        assert_eq!(files.len(), 11);
        let (files, r) = simulate(ring(1), 24, 124_997, 20);
        assert_eq!(files, [("out.pcap".to_string(), 2)]);
        assert_eq!((r.rotated_away(), r.records_lost()), (2, 18));
    }

    #[test]
    fn time_rotation_with_strftime() {
        let g = Rotation {
            seconds: Some(60),
            ..Rotation::default()
        };
        let mut r = Rotator::new("cap-%s.pcap", g, 1000).unwrap();
        assert_eq!(r.current(), "cap-1000.pcap");
        assert_eq!(r.before_packet(10_000_000, 5, 1059), Ok(Decision::Keep));
        assert_eq!(
            r.before_packet(10_000_000, 5, 1061),
            Ok(Decision::Rotate {
                name: "cap-1061.pcap".into()
            })
        );
        // The next period counts from the rotation, not a fixed grid.
        assert_eq!(r.before_packet(0, 1, 1120), Ok(Decision::Keep));
        assert!(matches!(
            r.before_packet(0, 1, 1121),
            Ok(Decision::Rotate { .. })
        ));
        assert_eq!(r.rotated_away(), 0);
    }

    #[test]
    fn time_rotation_with_a_file_count_stops() {
        let g = Rotation {
            seconds: Some(1),
            count: Some(2),
            ..Rotation::default()
        };
        let mut r = Rotator::new("g-%s", g, 0).unwrap();
        assert!(matches!(
            r.before_packet(0, 0, 1),
            Ok(Decision::Rotate { .. })
        ));
        assert_eq!(r.before_packet(0, 3, 2), Ok(Decision::Stop));
        assert_eq!(r.files(), 2);
    }

    #[test]
    fn time_rotation_without_a_pattern_rewrites_the_file() {
        let g = Rotation {
            seconds: Some(1),
            ..Rotation::default()
        };
        let mut r = Rotator::new("same.pcap", g, 0).unwrap();
        for t in 1..=3 {
            assert_eq!(
                r.before_packet(0, 10, t),
                Ok(Decision::Rotate {
                    name: "same.pcap".into()
                })
            );
        }
        assert_eq!((r.rotated_away(), r.records_lost()), (3, 30));
    }

    #[test]
    fn time_and_size_restart_the_numbers() {
        let gc = Rotation {
            seconds: Some(10),
            size: c(1),
            count: Some(3),
        };
        let mut r = Rotator::new("x-%s-", gc, 100).unwrap();
        assert_eq!(r.current(), "x-100-0");
        let big = 2_000_000;
        let rot = |n: &str| {
            Ok(Decision::Rotate {
                name: n.to_string(),
            })
        };
        assert_eq!(r.before_packet(big, 1, 101), rot("x-100-1"));
        assert_eq!(r.before_packet(big, 1, 102), rot("x-100-2"));
        assert_eq!(r.before_packet(big, 1, 103), rot("x-100-0"));
        assert_eq!(r.rotated_away(), 1);
        // The -G rotation wins over a -C one due at the same packet, and
        // numbering restarts; -W does not stop the capture when -C is on.
        assert_eq!(r.before_packet(big, 1, 110), rot("x-110-0"));
        assert_eq!(r.before_packet(big, 1, 111), rot("x-110-1"));
        assert_eq!(r.before_packet(big, 1, 120), rot("x-120-0"));
        // -G with -C and no -W: first file of each period plain.
        let mut r = Rotator::new("y-%s", Rotation { count: None, ..gc }, 100).unwrap();
        assert_eq!(r.current(), "y-100");
        assert_eq!(r.before_packet(big, 1, 101), rot("y-1001"));
        assert_eq!(r.before_packet(big, 1, 110), rot("y-110"));
    }

    #[test]
    fn strftime_is_local_time() {
        // Whatever the zone, %s is the epoch second and %% a percent.
        assert_eq!(strftime_local("a%%b-%s", 86_400).unwrap(), "a%b-86400");
        let [year, _, _, hour, _, _] = crate::sys::host::local_fields(1_700_000_000).unwrap();
        assert_eq!(
            strftime_local("%Y-%H", 1_700_000_000).unwrap(),
            format!("{year}-{hour:02}")
        );
        assert_eq!(strftime_local("a\0b", 0), Err(NameError::Nul));
        assert_eq!(
            strftime_local(&"%Y".repeat(2000), 0),
            Err(NameError::TooLong)
        );
    }

    /// The real tcpdump, rotating a file it reads, makes the same files
    /// with the same records as the simulation.
    #[test]
    fn names_and_counts_match_tcpdump() {
        if Command::new("tcpdump").arg("--version").output().is_err() {
            eprintln!("tcpdump not installed: skipped");
            return;
        }
        let dir = std::env::temp_dir().join(format!("rxtxcpu-rotate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // 30 records of 16 + 249984 bytes after the 24-byte header.
        let caplen = 249_984u32;
        let mut pcap = Vec::new();
        pcap.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        pcap.extend_from_slice(&2u16.to_le_bytes());
        pcap.extend_from_slice(&4u16.to_le_bytes());
        pcap.extend_from_slice(&[0; 8]);
        pcap.extend_from_slice(&262_144u32.to_le_bytes());
        pcap.extend_from_slice(&1u32.to_le_bytes());
        for i in 0..30u32 {
            for v in [1000 + i, 0, caplen, caplen] {
                pcap.extend_from_slice(&v.to_le_bytes());
            }
            pcap.resize(pcap.len() + caplen as usize, i as u8);
        }
        let input = dir.join("in.pcap");
        std::fs::write(&input, &pcap).unwrap();
        for count in [None, Some(1), Some(3), Some(11)] {
            let sub = dir.join(format!("w{count:?}"));
            std::fs::create_dir_all(&sub).unwrap();
            let mut cmd = Command::new("tcpdump");
            cmd.current_dir(&sub)
                .args(["-Z", "root", "-r"])
                .arg(&input)
                .args(["-C", "1", "-w", "out.pcap"]);
            if let Some(w) = count {
                cmd.args(["-W", &w.to_string()]);
            }
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let mut made: Vec<(String, u64)> = std::fs::read_dir(&sub)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    let len = e.metadata().unwrap().len();
                    let records = (len - 24) / (16 + caplen as u64);
                    (e.file_name().into_string().unwrap(), records)
                })
                .collect();
            made.sort();
            let rotation = Rotation {
                size: c(1),
                count,
                ..Rotation::default()
            };
            let (mut want, _) = simulate(rotation, 24, 16 + caplen as u64, 30);
            want.sort();
            assert_eq!(made, want, "-W {count:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
