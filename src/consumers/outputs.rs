//! Everything a capture writes: the per-stream pcap files, or the merged
//! pcapng file, opened before the first packet is let in.

use crate::consumers::destination::Destination;
use crate::consumers::files::{Format, StreamFile};
use crate::consumers::merged::Merged;
use crate::error::{Error, Result};
use crate::options::Options;
use crate::vantage::Stream;
/// Everything a capture writes, opened before the first packet is let in
/// and started (headers written) once nothing else can fail: the
/// per-stream pcap files, or the merged pcapng file. See
/// [`crate::consumers::destination`] for why a start that fails changes no file that
/// was there.
pub struct Outputs<'a> {
    pub files: Vec<Option<StreamFile>>,
    pub merged: Option<Merged<'a>>,
}

impl<'a> Outputs<'a> {
    /// Opens every output without changing any; on failure removes what
    /// this run created, so a bad path leaves nothing behind and harms
    /// nothing that was there.
    pub fn create(
        opts: &Options,
        streams: &[Stream],
        label: &str,
        format: Format,
        retire_ms: u32,
        stop: Box<dyn Fn() + Send + Sync + 'a>,
    ) -> Result<Outputs<'a>> {
        let none = || streams.iter().map(|_| None).collect();
        let Some(template) = &opts.write else {
            return Ok(Outputs {
                files: none(),
                merged: None,
            });
        };
        let dest = Destination::of(template);
        if dest == (Destination::Device { fifo: true }) && opts.verbose {
            // open(2) of a FIFO waits for its reader, as tcpdump's does.
            errln!(
                "{}: {template} is a FIFO: waiting for its reader",
                opts.name
            );
        }
        if opts.pcapng {
            let merged =
                Merged::create(opts, template, streams, label, format.link, retire_ms, stop)?;
            return Ok(Outputs {
                files: none(),
                merged: Some(merged),
            });
        }
        if dest == Destination::Files && names_no_file(template) {
            // `-w dir/` (or `.`): numbered, the streams' files would be
            // `dir/-0`, `dir/-1`, named by nothing the user typed. open(2)
            // of the name itself says why there is no file to write, as
            // tcpdump and the merged file report it.
            return Err(Error::file(
                template,
                std::io::Error::from_raw_os_error(libc::EISDIR),
            ));
        }
        let mut files = Vec::new();
        for stream in streams {
            let path = dest.stream_file(template, stream.file_suffix());
            match StreamFile::open(&path, format, opts.rotation) {
                Ok(f) => files.push(Some(f)),
                Err(e) => {
                    let made = Outputs {
                        files,
                        merged: None,
                    };
                    made.remove();
                    let name = StreamFile::first_name(&path, opts.rotation).unwrap_or(path);
                    return Err(Error::file(&name, e));
                }
            }
        }
        Ok(Outputs {
            files,
            merged: None,
        })
    }

    /// Writes every output's header: the files this run created first,
    /// then those that were there (each overwritten only once its header
    /// is written over it). So a file system that cannot take a header
    /// fails the start on a new file, before any old one has changed. On
    /// failure removes what this run created.
    pub fn start(&mut self) -> Result<()> {
        if let Some(m) = &mut self.merged {
            return m.start();
        }
        for existed in [false, true] {
            for f in self.files.iter_mut().flatten() {
                if f.existed() != existed {
                    continue;
                }
                if let Err(e) = f.start() {
                    let e = Error::write(f.path(), e);
                    self.remove();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Removes the files this run created (the capture could not start);
    /// those that were there stay.
    pub fn remove(&self) {
        for f in self.files.iter().flatten() {
            f.remove_created();
        }
        if let Some(m) = &self.merged {
            m.remove();
        }
    }
}

/// Whether the file name part of `template` (after its last `/`) is no
/// file's name: empty (`dir/`), `.` or `..`, each a directory.
fn names_no_file(template: &str) -> bool {
    let base = template.rsplit('/').next().unwrap_or(template);
    matches!(base, "" | "." | "..")
}

#[cfg(test)]
mod tests {
    use super::names_no_file;

    #[test]
    fn directories_name_no_file() {
        for t in ["/tmp/", "dir/", ".", "..", "/tmp/x/.", "a/.."] {
            assert!(names_no_file(t), "{t}");
        }
        for t in ["out", ".cap", "/tmp/x.y/out", "..x", "x.", "/tmp/.hidden"] {
            assert!(!names_no_file(t), "{t}");
        }
    }
}
