//! The TPACKET_V3 receive ring: one mmap'ed area of blocks that the kernel
//! fills with variable-length packets and hands to user space a whole block
//! at a time, so reading costs no system call per packet.
//!
//! Ownership of a block goes back and forth through its `block_status`
//! word: the kernel sets TP_STATUS_USER when the block is full or its retire
//! timeout expired; user space reads it and writes TP_STATUS_KERNEL to give
//! it back. The kernel touches no other byte of a block user space owns.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use std::os::fd::AsRawFd;

use crate::afpacket::{PacketSocket, PACKET_RX_RING, SOL_PACKET, TPACKET_V3};

const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
/// A packet's VLAN tag was taken off by the device (hardware VLAN offload)
/// and is in tp_vlan_tci instead of the frame.
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
/// tp_vlan_tpid holds the tag's protocol (else it is 802.1Q).
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const ETH_P_8021Q: u16 = 0x8100;

/// sizeof(struct tpacket_block_desc) rounded to 8: where the kernel may put
/// the first packet at the earliest (BLK_PLUS_PRIV with no private area).
const BLOCK_HEADER: usize = 48;
/// Worst-case offset of a packet's data from its header: TPACKET3_HDRLEN
/// (68) plus the alignment and 16-byte minimum the kernel adds before the
/// link header (`netoff` in tpacket_rcv), rounded up generously.
const PACKET_OVERHEAD: usize = 128;

/// Offsets in struct tpacket_block_desc / tpacket_hdr_v1.
const BD_BLOCK_STATUS: usize = 8;
const BD_NUM_PKTS: usize = 12;
const BD_OFFSET_TO_FIRST_PKT: usize = 16;

/// Offsets in struct tpacket3_hdr; the sockaddr_ll follows at
/// TPACKET_ALIGN(sizeof(struct tpacket3_hdr)) = 48.
const H_NEXT_OFFSET: usize = 0;
const H_SEC: usize = 4;
const H_NSEC: usize = 8;
const H_SNAPLEN: usize = 12;
const H_LEN: usize = 16;
const H_STATUS: usize = 20;
const H_VLAN_TCI: usize = 32;
const H_VLAN_TPID: usize = 36;
const H_MAC: usize = 24;
const H_NET: usize = 26;
const H_SLL: usize = 48;

/// Ring geometry for one socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub block_size: usize,
    pub blocks: usize,
    /// Milliseconds after which the kernel hands over a block that is not
    /// full, so a slow trickle of packets still arrives promptly.
    pub retire_ms: u32,
}

impl Geometry {
    /// Blocks big enough that a packet of `snaplen` bytes is never cut by
    /// the block size (the kernel truncates a packet to what fits in one
    /// block), and as many as fit in `ring_bytes`, but at least two so the
    /// kernel can fill one while user space reads the other.
    pub fn new(snaplen: u32, ring_bytes: usize, retire_ms: u32) -> Geometry {
        let need = BLOCK_HEADER + PACKET_OVERHEAD + snaplen as usize;
        let block_size = need.next_power_of_two().max(128 * 1024);
        let blocks = (ring_bytes / block_size).max(2);
        Geometry {
            block_size,
            blocks,
            retire_ms,
        }
    }

    pub fn bytes(&self) -> usize {
        self.block_size * self.blocks
    }
}

/// struct tpacket_req3.
#[repr(C)]
struct TpacketReq3 {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
    tp_retire_blk_tov: u32,
    tp_sizeof_priv: u32,
    tp_feature_req_word: u32,
}

/// A mapped TPACKET_V3 ring.
pub struct Ring {
    base: NonNull<u8>,
    geometry: Geometry,
    /// The block to read next: the kernel fills blocks in order.
    next: usize,
}

// SAFETY: the mapping is owned by this value alone; moving it to the worker
// thread that reads it is sound.
unsafe impl Send for Ring {}

impl Ring {
    /// Switches `sock` to TPACKET_V3, sets up its receive ring and maps it.
    /// Must happen before bind(): the version cannot change once a ring
    /// exists, and the ring must exist before packets are let in.
    pub fn new(sock: &PacketSocket, geometry: Geometry) -> io::Result<Ring> {
        sock.set_version(TPACKET_V3)?;
        let req = TpacketReq3 {
            tp_block_size: geometry.block_size as u32,
            tp_block_nr: geometry.blocks as u32,
            // V3 packets are variable length; the frame fields only have to
            // be consistent (frames per block times blocks).
            tp_frame_size: geometry.block_size as u32,
            tp_frame_nr: geometry.blocks as u32,
            tp_retire_blk_tov: geometry.retire_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        // SAFETY: req is a live tpacket_req3 and the length is its size.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                SOL_PACKET,
                PACKET_RX_RING,
                (&req as *const TpacketReq3).cast(),
                std::mem::size_of::<TpacketReq3>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: one shared mapping of the whole ring at offset 0 is what
        // the kernel expects of a packet socket with a ring; the result is
        // checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                geometry.bytes(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                sock.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Ring {
            base: NonNull::new(p.cast()).expect("mmap returned null"),
            geometry,
            next: 0,
        })
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn status_word(&self, index: usize) -> &AtomicU32 {
        // SAFETY: index < blocks, so the word lies inside the mapping; it is
        // 4-byte aligned (blocks are page aligned) and the kernel accesses
        // it only as a whole u32, so treating it as an atomic is sound.
        unsafe {
            &*(self
                .base
                .as_ptr()
                .add(index * self.geometry.block_size + BD_BLOCK_STATUS)
                as *const AtomicU32)
        }
    }

    /// The next block, if the kernel has handed it over.
    pub fn next_block(&mut self) -> Option<Block<'_>> {
        // Acquire pairs with the kernel's smp_wmb() before it sets
        // TP_STATUS_USER: the block's contents are complete once we see it.
        if self.status_word(self.next).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            return None;
        }
        let index = self.next;
        self.next = (self.next + 1) % self.geometry.blocks;
        // SAFETY: the block is inside the mapping and owned by user space
        // until Block::drop gives it back, so the kernel does not write it
        // while this shared slice exists.
        let data = unsafe {
            std::slice::from_raw_parts(
                self.base.as_ptr().add(index * self.geometry.block_size),
                self.geometry.block_size,
            )
        };
        Some(Block {
            data,
            status: self.status_word(index),
        })
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: base/bytes are exactly the mapping made in new(); no Block
        // borrows it any more (Block borrows the Ring mutably).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.geometry.bytes());
        }
    }
}

/// A block owned by user space; dropping it returns it to the kernel.
pub struct Block<'a> {
    data: &'a [u8],
    status: &'a AtomicU32,
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .map(|s| u16::from_ne_bytes([s[0], s[1]]))
        .unwrap_or(0)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0)
}

impl<'a> Block<'a> {
    pub fn num_packets(&self) -> usize {
        u32_at(self.data, BD_NUM_PKTS) as usize
    }

    /// The block's packets, in arrival order.
    pub fn packets(&self) -> Packets<'_> {
        Packets {
            block: self.data,
            offset: u32_at(self.data, BD_OFFSET_TO_FIRST_PKT) as usize,
            left: self.num_packets(),
        }
    }
}

impl Drop for Block<'_> {
    fn drop(&mut self) {
        // Release: our reads of the block happen before the kernel may
        // reuse it (the kernel reads this word from the receiving cpu).
        self.status.store(TP_STATUS_KERNEL, Ordering::Release);
    }
}

/// One packet in a block.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    pub sec: u32,
    pub nsec: u32,
    /// Length on the wire.
    pub len: u32,
    /// The captured bytes, from the link-layer header.
    pub data: &'a [u8],
    /// Offset of the network header within `data`.
    pub net_offset: usize,
    pub ifindex: i32,
    pub hatype: u16,
    pub pkttype: u8,
    /// The link-layer protocol, network byte order as on the wire.
    pub protocol: u16,
    pub halen: u8,
    pub addr: [u8; 8],
    /// (TPID, TCI) of a VLAN tag the device stripped from the frame.
    pub vlan: Option<(u16, u16)>,
}

/// Walks `num_pkts` packets through `tp_next_offset`.
pub struct Packets<'a> {
    block: &'a [u8],
    offset: usize,
    left: usize,
}

impl<'a> Iterator for Packets<'a> {
    type Item = Packet<'a>;

    fn next(&mut self) -> Option<Packet<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let b = self.block;
        let h = self.offset;
        let hdr = b.get(h..)?;
        let mac = u16_at(hdr, H_MAC) as usize;
        let net = u16_at(hdr, H_NET) as usize;
        let snaplen = u32_at(hdr, H_SNAPLEN) as usize;
        // Offsets come from the kernel; bounds-check anyway so a surprise
        // can only end the walk, never read outside the block.
        let data = hdr.get(mac..mac + snaplen)?;
        let sll = hdr.get(H_SLL..H_SLL + 20)?;
        let mut addr = [0u8; 8];
        addr.copy_from_slice(&sll[12..20]);
        let status = u32_at(hdr, H_STATUS);
        let vlan = (status & TP_STATUS_VLAN_VALID != 0).then(|| {
            let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 {
                u16_at(hdr, H_VLAN_TPID)
            } else {
                ETH_P_8021Q
            };
            (tpid, u32_at(hdr, H_VLAN_TCI) as u16)
        });
        let packet = Packet {
            sec: u32_at(hdr, H_SEC),
            nsec: u32_at(hdr, H_NSEC),
            len: u32_at(hdr, H_LEN),
            data,
            net_offset: net.saturating_sub(mac),
            protocol: u16::from_ne_bytes([sll[2], sll[3]]),
            ifindex: i32::from_ne_bytes([sll[4], sll[5], sll[6], sll[7]]),
            hatype: u16::from_ne_bytes([sll[8], sll[9]]),
            pkttype: sll[10],
            halen: sll[11],
            addr,
            vlan,
        };
        let next = u32_at(hdr, H_NEXT_OFFSET) as usize;
        if next == 0 {
            self.left = 0;
        }
        self.offset = h + next;
        Some(packet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_holds_a_full_snaplen_packet() {
        let g = Geometry::new(262_144, 8 << 20, 20);
        assert_eq!(g.block_size, 512 * 1024);
        assert_eq!(g.blocks, 16);
        assert!(g.block_size >= BLOCK_HEADER + PACKET_OVERHEAD + 262_144);
        let g = Geometry::new(65_535, 1 << 20, 20);
        assert_eq!(g.block_size, 128 * 1024);
        assert_eq!(g.blocks, 8);
        // A ring too small for two blocks still gets two.
        assert_eq!(Geometry::new(262_144, 4096, 20).blocks, 2);
    }

    #[test]
    fn walks_packets_of_a_synthetic_block() {
        let mut b = vec![0u8; 4096];
        b[BD_NUM_PKTS..BD_NUM_PKTS + 4].copy_from_slice(&2u32.to_ne_bytes());
        b[BD_OFFSET_TO_FIRST_PKT..BD_OFFSET_TO_FIRST_PKT + 4].copy_from_slice(&48u32.to_ne_bytes());
        let put = |b: &mut Vec<u8>, h: usize, next: u32, len: u32, byte: u8| {
            b[h..h + 4].copy_from_slice(&next.to_ne_bytes());
            b[h + H_SEC..h + H_SEC + 4].copy_from_slice(&7u32.to_ne_bytes());
            b[h + H_SNAPLEN..h + H_SNAPLEN + 4].copy_from_slice(&3u32.to_ne_bytes());
            b[h + H_LEN..h + H_LEN + 4].copy_from_slice(&len.to_ne_bytes());
            b[h + H_MAC..h + H_MAC + 2].copy_from_slice(&82u16.to_ne_bytes());
            b[h + H_NET..h + H_NET + 2].copy_from_slice(&96u16.to_ne_bytes());
            b[h + 82..h + 85].fill(byte);
        };
        put(&mut b, 48, 160, 60, 0xaa);
        put(&mut b, 208, 0, 1500, 0xbb);
        let status = AtomicU32::new(TP_STATUS_USER);
        let block = Block {
            data: &b,
            status: &status,
        };
        let p: Vec<Packet> = block.packets().collect();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].sec, p[0].len, p[0].data), (7, 60, &[0xaa; 3][..]));
        assert_eq!(
            (p[1].len, p[1].data, p[1].net_offset),
            (1500, &[0xbb; 3][..], 14)
        );
        drop(block);
        assert_eq!(status.load(Ordering::Relaxed), TP_STATUS_KERNEL);
    }
}
