//! A packet's record bytes, as the pcap and pcapng files hold them.

use super::{LinkType, Packet, SLL2_LEN};

/// A packet's record data, byte for byte what the per-stream pcap record
/// holds (the same rules as `PcapOutput::write`): the frame as captured,
/// with a VLAN tag the device stripped put back, or a LINUX_SLL2 header
/// in front of the network header. Built without allocating: the record
/// is up to three slices, `parts()`.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pre: &'a [u8],
    head: [u8; SLL2_LEN],
    head_len: usize,
    rest: &'a [u8],
    orig_len: u32,
}

impl<'a> Frame<'a> {
    /// The record of `p` in a stream of link type `link` whose records are
    /// cut to `snaplen` (the file's snap length, as [`LinkType::snaplen`]
    /// gives it).
    #[inline]
    pub fn new(link: LinkType, snaplen: u32, p: &Packet<'a>) -> Frame<'a> {
        let snaplen = snaplen as usize;
        let mut f = Frame {
            pre: &[],
            head: [0; SLL2_LEN],
            head_len: 0,
            rest: &[],
            orig_len: 0,
        };
        match link {
            // Below 16 bytes there is no room for the addresses and a tag:
            // such records stay as the kernel gave them.
            LinkType::Ethernet if p.vlan.is_some() && p.data.len() >= 12 && snaplen >= 16 => {
                // The device took the tag off the frame; it goes back after
                // the MAC addresses, as libpcap puts it.
                let (tpid, tci) = p.vlan.unwrap_or_default();
                f.pre = &p.data[..12];
                f.head[..2].copy_from_slice(&tpid.to_be_bytes());
                f.head[2..4].copy_from_slice(&tci.to_be_bytes());
                f.head_len = 4;
                f.rest = &p.data[12..p.data.len().min(snaplen - 4)];
                f.orig_len = (p.len + 4).max(f.caplen());
            }
            LinkType::Ethernet | LinkType::Raw => {
                f.pre = &p.data[..p.data.len().min(snaplen)];
                f.orig_len = p.len.max(f.caplen());
            }
            LinkType::LinuxSll2 => {
                // The network header may lie beyond what a small snap
                // length let the kernel copy; the wire length still counts
                // from it.
                let payload = &p.data[p.net_offset.min(p.data.len())..];
                f.rest = &payload[..payload.len().min(snaplen.saturating_sub(SLL2_LEN))];
                let h = &mut f.head;
                h[0..2].copy_from_slice(&p.protocol.to_ne_bytes()); // network order already
                h[4..8].copy_from_slice(&p.ifindex.to_be_bytes());
                h[8..10].copy_from_slice(&p.hatype.to_be_bytes());
                h[10] = p.pkttype;
                h[11] = p.halen;
                h[12..20].copy_from_slice(&p.addr);
                f.head_len = SLL2_LEN;
                f.orig_len =
                    (SLL2_LEN as u32 + p.len.saturating_sub(p.net_offset as u32)).max(f.caplen());
            }
        }
        f
    }

    /// Bytes recorded.
    #[inline]
    pub fn caplen(&self) -> u32 {
        (self.pre.len() + self.head_len + self.rest.len()) as u32
    }

    /// Length on the wire, as the record states it.
    #[inline]
    pub fn orig_len(&self) -> u32 {
        self.orig_len
    }

    /// The record's bytes, in order.
    pub fn parts(&self) -> [&[u8]; 3] {
        [self.pre, &self.head[..self.head_len], self.rest]
    }

    /// The record's bytes as [`Frame::parts`], the first and last with the
    /// packet's own lifetime: they are the packet's bytes where they lie
    /// (in the ring block), and may be written from there after this Frame
    /// is gone. The middle one (a VLAN tag or an SLL2 header) is this
    /// Frame's.
    #[inline]
    pub fn pieces(&self) -> (&'a [u8], &[u8], &'a [u8]) {
        (self.pre, &self.head[..self.head_len], self.rest)
    }
}
