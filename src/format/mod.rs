//! The file formats, byte for byte: pcapng blocks (and, through
//! [`crate::consumers::files`], pcap records).

pub mod pcapng;
