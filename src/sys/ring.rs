//! The TPACKET_V3 receive ring: one mmap'ed area of blocks that the kernel
//! fills with variable-length packets and hands to user space a whole block
//! at a time, so reading costs no system call per packet.
//!
//! Ownership of a block goes back and forth through its `block_status`
//! word: the kernel sets TP_STATUS_USER when the block is full or its retire
//! timeout expired; user space reads it and writes TP_STATUS_KERNEL to give
//! it back. The kernel touches no other byte of a block user space owns.

use std::io;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use std::os::fd::AsRawFd;

use crate::packet::{stamp_ns, Packet};
use crate::sys::afpacket::{PacketSocket, TpacketReq3, TPACKET_V3};
use crate::sys::cache;

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
/// The most blocks a ring may have: the kernel walks the ring with
/// `tpacket_kbdq_core.kactive_blk_num`, an unsigned short, yet
/// packet_set_ring() does not limit tp_block_nr. With more blocks the
/// kernel cycles through the first 65536 only, while the reader waits at
/// block 65536 forever and poll() keeps reporting POLLIN.
const MAX_BLOCKS: usize = 65_535;
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
/// hv1.tp_rxhash: the skb's flow hash, filled when asked for with
/// TP_FT_REQ_FILL_RXHASH.
const H_RXHASH: usize = 28;
const H_VLAN_TCI: usize = 32;
const H_VLAN_TPID: usize = 36;
const H_MAC: usize = 24;
const H_NET: usize = 26;
const H_SLL: usize = 48;

/// tpacket_req3.tp_feature_req_word: have the kernel put each packet's
/// flow hash (skb_get_hash(): the NIC's RSS hash where the driver reported
/// one, else the flow dissector's, the hash RPS and RFS steer by) in
/// tp_rxhash. Computing it costs the kernel a flow dissection per packet
/// that has none, so it is only asked for when something uses it.
const TP_FT_REQ_FILL_RXHASH: u32 = 0x1;

/// Ring geometry for one socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub block_size: usize,
    pub blocks: usize,
    /// Milliseconds after which the kernel hands over a block that is not
    /// full, so a slow trickle of packets still arrives promptly.
    pub retire_ms: u32,
    /// Whether the kernel fills in each packet's flow hash.
    pub want_hash: bool,
}

impl Geometry {
    /// Blocks big enough that a packet of `snaplen` bytes is never cut by
    /// the block size (the kernel truncates a packet to what fits in one
    /// block), and as many as fit in `ring_bytes`, but at least two so the
    /// kernel can fill one while user space reads the other. A ring that
    /// would need more than `MAX_BLOCKS` blocks gets bigger blocks
    /// instead (still a power of two).
    pub fn new(snaplen: u32, ring_bytes: usize, retire_ms: u32) -> Geometry {
        let need = BLOCK_HEADER + PACKET_OVERHEAD + snaplen as usize;
        let mut block_size = need.next_power_of_two().max(128 * 1024);
        while ring_bytes / block_size > MAX_BLOCKS {
            block_size *= 2;
        }
        let blocks = (ring_bytes / block_size).max(2);
        Geometry {
            block_size,
            blocks,
            retire_ms,
            want_hash: false,
        }
    }

    /// The same ring in blocks of `block_size` bytes (a power of two),
    /// if they are larger and it still holds at least `min_blocks` of
    /// them; else unchanged.
    pub fn with_blocks_of(self, block_size: usize, min_blocks: usize) -> Geometry {
        debug_assert!(block_size.is_power_of_two());
        let bytes = self.bytes();
        if block_size <= self.block_size || bytes / block_size < min_blocks {
            return self;
        }
        Geometry {
            block_size,
            blocks: bytes / block_size,
            ..self
        }
    }

    /// The same geometry, with the kernel filling in flow hashes.
    pub fn with_hash(self, want_hash: bool) -> Geometry {
        Geometry { want_hash, ..self }
    }

    pub fn bytes(&self) -> usize {
        self.block_size * self.blocks
    }
}

/// The `block_status` word of the block starting at `block`.
///
/// # Safety
///
/// `block` must be the start of a block (so the word is 4-byte aligned)
/// whose first BLOCK_HEADER bytes stay mapped and writable for `'b`, and no
/// Rust reference that user space writes through may cover the word
/// meanwhile. The kernel accesses the word only as a whole u32.
unsafe fn block_status<'b>(block: NonNull<u8>) -> &'b AtomicU32 {
    // SAFETY: the caller guarantees alignment, validity for 'b and that no
    // conflicting Rust access exists; AtomicU32::from_ptr asks no more.
    unsafe { AtomicU32::from_ptr(block.as_ptr().add(BD_BLOCK_STATUS).cast()) }
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
            tp_feature_req_word: if geometry.want_hash {
                TP_FT_REQ_FILL_RXHASH
            } else {
                0
            },
        };
        sock.set_rx_ring(&req)?;
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

    /// The start of block `index` (< blocks).
    fn block_start(&self, index: usize) -> NonNull<u8> {
        debug_assert!(index < self.geometry.blocks);
        // SAFETY: index < blocks, so the offset lies inside the mapping,
        // which is one allocation of blocks * block_size bytes.
        unsafe { self.base.add(index * self.geometry.block_size) }
    }

    fn status_word(&self, index: usize) -> &AtomicU32 {
        // SAFETY: the block start is page aligned (mmap) plus a multiple of
        // the page-sized block size, and the mapping outlives &self (only
        // Drop unmaps it). The kernel reads and writes block_status only as
        // a whole u32, and no Block exists for this block while &self is
        // borrowed here: next_block() takes &mut self and calls this
        // before it makes one, and a Block borrows the Ring mutably.
        unsafe { block_status(self.block_start(index)) }
    }

    /// The next block, if the kernel has handed it over.
    pub fn next_block(&mut self) -> Option<Block<'_>> {
        // Acquire pairs with the kernel's smp_wmb() before it sets
        // TP_STATUS_USER: the block's contents are complete once we see it.
        if self.status_word(self.next).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            return None;
        }
        let start = self.block_start(self.next);
        self.next = (self.next + 1) % self.geometry.blocks;
        Some(Block {
            start,
            len: self.geometry.block_size,
            _ring: PhantomData,
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
///
/// It holds a raw pointer rather than a slice: Drop writes the block's
/// status word, and a `&[u8]` over the block alive during that write (as
/// a field would be, for as long as the Block is) would be aliased by it.
/// Slices are made by the methods below and borrow the Block, so none is
/// left when Drop runs.
pub struct Block<'a> {
    /// The block's first byte (its struct tpacket_block_desc).
    start: NonNull<u8>,
    len: usize,
    /// Borrows the ring mutably: no other Block, and no unmapping, while
    /// this one lives.
    _ring: PhantomData<&'a mut Ring>,
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

/// The tp_next_offset and tp_len words of the header at `offset`.
///
/// # Safety
///
/// `base + offset .. base + offset + H_STATUS` must lie in one readable
/// allocation (a block, or a test's buffer) that nothing writes meanwhile.
#[inline(always)]
unsafe fn header_words(base: *const u8, offset: usize) -> (usize, u32) {
    // SAFETY: the caller guarantees the 20 bytes from offset are readable;
    // read_unaligned, as an offset from the kernel may be anything.
    unsafe {
        let h = base.add(offset);
        let next = h.add(H_NEXT_OFFSET).cast::<u32>().read_unaligned();
        let len = h.add(H_LEN).cast::<u32>().read_unaligned();
        (next as usize, len)
    }
}

impl<'a> Block<'a> {
    /// A Block over a buffer laid out like a ring block, for tests.
    #[cfg(test)]
    pub(crate) fn from_buffer(buf: &'a mut [u8]) -> Block<'a> {
        assert!(buf.len() >= BLOCK_HEADER);
        assert_eq!(
            buf.as_ptr().align_offset(std::mem::align_of::<AtomicU32>()),
            0
        );
        Block {
            len: buf.len(),
            start: NonNull::from(buf).cast(),
            _ring: PhantomData,
        }
    }

    /// The whole block, for as long as `self` is borrowed.
    fn data(&self) -> &[u8] {
        // SAFETY: start..start+len is one block of the mapping (or the test
        // buffer), kept alive by the Ring borrow in 'a. User space owns the
        // block since the kernel set TP_STATUS_USER (observed with Acquire
        // in next_block), and the kernel writes no byte of a user-owned
        // block, its status word included (it only reads that word to see
        // whether the block is free). The only write from user space is
        // Drop's, which needs &mut self and so cannot overlap this borrow.
        unsafe { std::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }

    pub fn num_packets(&self) -> usize {
        u32_at(self.data(), BD_NUM_PKTS) as usize
    }

    /// The block's packets' timestamps (ns since the epoch), in arrival
    /// order: only the two words of each header, for `-c` without
    /// anything that reads the packets.
    pub fn stamps(&self) -> impl Iterator<Item = u64> + '_ {
        let block = self.data();
        let mut offset = u32_at(block, BD_OFFSET_TO_FIRST_PKT) as usize;
        let mut left = self.num_packets();
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            // As the packet walk does: the headers lie past page
            // boundaries the cpu's prefetcher stops at.
            cache::read_ahead(block, offset + cache::READ_AHEAD, 3);
            let hdr = block.get(offset..offset + H_SLL)?;
            let next = u32_at(hdr, H_NEXT_OFFSET) as usize;
            if next == 0 {
                left = 0;
            }
            offset += next;
            Some(stamp_ns(u32_at(hdr, H_SEC), u32_at(hdr, H_NSEC)))
        })
    }

    /// The number of the block's first `n` packets (fewer if an offset is
    /// bad) and the sum of their lengths on the wire (tp_len): only two
    /// words of each header, for the byte counter (`--metrics`, `--live`)
    /// when nothing else reads the packets.
    ///
    /// Not from the block's own bytes used (blk_len): it counts each
    /// packet's headers and alignment and, past the snapshot length, not
    /// the bytes the kernel cut off; the count must be exact.
    ///
    /// The cost is the headers' cache lines: by the time the kernel hands
    /// a block over, its work on the block's later packets has pushed the
    /// block's start out of the first caches. Walking tp_next_offset, each
    /// header's address comes from the one before, so the cpu waits for
    /// every line in turn. But the kernel lays a block's records out one
    /// after the other, each as long as its packet's capture (aligned),
    /// so in a flood of one size they all have the same length: after a
    /// header says the next lies `stride` bytes on, this walk reads the
    /// following headers at `stride` steps as long as each says the same
    /// (checked, so the walk is still exactly the chain), and their
    /// addresses no longer wait for the loads before: the cpu has several
    /// lines in flight, and the read-ahead asks for the header
    /// [`WIRE_BYTES_AHEAD`] records on, where it lies if the run goes on
    /// so far. A record of another size ends the run and the walk goes on from it. How many
    /// headers of a run lie in the block is known before the run, so
    /// there is no bounds check per header either. See the
    /// `wire_bytes_cost` micro-benchmark and docs/PERFORMANCE.md.
    #[inline]
    pub fn wire_bytes(&self, n: usize) -> (u64, u64) {
        let block = self.data();
        let base = block.as_ptr();
        // The last offset whose header's first H_STATUS bytes (the two
        // words read) lie in the block.
        let Some(last) = block.len().checked_sub(H_STATUS) else {
            return (0, 0);
        };
        let n = n.min(self.num_packets());
        let mut offset = u32_at(block, BD_OFFSET_TO_FIRST_PKT) as usize;
        let (mut left, mut bytes) = (n, 0u64);
        while left > 0 && offset <= last {
            // SAFETY: offset <= last, so both words lie in the block.
            let (next, len) = unsafe { header_words(base, offset) };
            left -= 1;
            bytes += u64::from(len);
            if next == 0 {
                break;
            }
            offset += next;
            // A run of records `next` bytes long: the headers at
            // offset + i * next for i < run lie in the block.
            let stride = next;
            let run = if offset <= last {
                left.min((last - offset) / stride + 1)
            } else {
                0
            };
            // Where the chain goes on after the run: past it, unless a
            // header in it says otherwise.
            let mut after = (run, offset + run * stride);
            for i in 0..run {
                let at = offset + i * stride;
                let ahead =
                    base.wrapping_add(at.wrapping_add(WIRE_BYTES_AHEAD.wrapping_mul(stride)));
                // Headers start 16-byte aligned (TPACKET_ALIGNMENT): the two
                // words lie in the lines of `ahead` and `ahead + 16`,
                // most often one.
                cache::prefetch(ahead);
                cache::prefetch(ahead.wrapping_add(H_LEN));
                // SAFETY: i < run, so at <= last: both words lie in the
                // block.
                let (next, len) = unsafe { header_words(base, at) };
                bytes += u64::from(len);
                if next != stride {
                    // The run ends with this header; the chain goes on
                    // from it, or ends with it (0: an offset past any
                    // block ends the walk).
                    after = (i + 1, if next == 0 { usize::MAX } else { at + next });
                    break;
                }
            }
            left -= after.0;
            offset = after.1;
        }
        ((n - left) as u64, bytes)
    }

    /// The block's packets, in arrival order.
    pub fn packets(&self) -> Packets<'_> {
        let block = self.data();
        Packets {
            block,
            offset: u32_at(block, BD_OFFSET_TO_FIRST_PKT) as usize,
            left: self.num_packets(),
        }
    }
}

impl Drop for Block<'_> {
    fn drop(&mut self) {
        // SAFETY: start is a block start, so the status word is 4-byte
        // aligned (page aligned in the ring; checked in from_buffer), and
        // the memory stays mapped for this call (the Ring is borrowed for
        // 'a). No slice of the block is alive: every one made by data()
        // borrowed &self, which has ended now that we have &mut self. The
        // kernel reads this word concurrently (to see whether the block is
        // free) and writes it only once it reads TP_STATUS_KERNEL, i.e.
        // after this store; it accesses it only as a whole u32.
        let status = unsafe { block_status(self.start) };
        // Release: our reads of the block happen before the kernel may
        // reuse it (the kernel reads this word from the receiving cpu).
        status.store(TP_STATUS_KERNEL, Ordering::Release);
    }
}

/// How many records ahead [`Block::wire_bytes`] asks for a header, at the
/// run's stride. In the `wire_bytes_cost` micro-benchmark (blocks of
/// 160-byte records, 2-cpu VM) 0, 32, 64, 128 and 256 were alike when the
/// blocks came from the last-level cache (4.4-5.3 ns per packet) or from
/// memory (10-12): there the lines' own cost bounds the walk, not the
/// order it asks for them in; 32 (5 KiB: the next page's walk started
/// early) was kept.
const WIRE_BYTES_AHEAD: usize = 32;

/// Walks `num_pkts` packets through `tp_next_offset`, asking the cpu for
/// the block's bytes [`cache::READ_AHEAD`] bytes ahead of the packet it
/// returns.
///
/// The kernel fills a block in order, so the next packets lie just after
/// this one, and a worker reads a block about once, soon after it was
/// handed over: its bytes are then often no longer in the first caches
/// (the kernel's work for the following packets on the same cpu pushed
/// them out), and the cpu's own prefetcher stops at every 4 KiB page.
/// Three lines per packet cover the 160 bytes a 64-byte frame takes in the
/// ring; of bigger packets they catch some lines only, and cost three
/// instructions. The flow table's micro-benchmark with the block's bytes
/// coming from memory (RING_BLOCKS=128): 37 ns per packet without, 24
/// with (20 with the bytes in the caches, either way).
pub struct Packets<'a> {
    block: &'a [u8],
    offset: usize,
    left: usize,
}

impl<'a> Iterator for Packets<'a> {
    type Item = Packet<'a>;

    /// At most the packets the block's header counts (fewer if an offset
    /// is bad).
    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }

    // Always into the consumers' loop, whose Packet then needs not go
    // through memory: measured about 10% less cpu per packet with --flows.
    #[inline(always)]
    fn next(&mut self) -> Option<Packet<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let b = self.block;
        let h = self.offset;
        cache::read_ahead(b, h + cache::READ_AHEAD, 3);
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
            hash: u32_at(hdr, H_RXHASH),
        };
        let next = u32_at(hdr, H_NEXT_OFFSET) as usize;
        if next == 0 {
            self.left = 0;
        }
        self.offset = h + next;
        Some(packet)
    }
}

/// Ring blocks made in memory, for tests and micro-benchmarks of what
/// consumes them.
#[cfg(test)]
pub(crate) mod synthetic {
    use super::*;

    /// A buffer aligned like a ring block.
    #[repr(C, align(4096))]
    pub struct Page([u8; 4096]);

    /// A zeroed buffer of `bytes` (rounded up to pages), page aligned.
    pub fn buffer(bytes: usize) -> Vec<Page> {
        (0..bytes.div_ceil(4096)).map(|_| Page([0; 4096])).collect()
    }

    pub fn bytes(pages: &mut [Page]) -> &mut [u8] {
        // SAFETY: Page is a repr(C) byte array with no padding, so the
        // pages are one contiguous run of initialised bytes.
        unsafe { std::slice::from_raw_parts_mut(pages.as_mut_ptr().cast(), pages.len() * 4096) }
    }

    /// Lays `frames` (Ethernet frames, with their kernel flow hashes)
    /// out in `b` as the kernel fills a block: header, sockaddr_ll, the
    /// frame at a 16-byte aligned offset. Returns how many fitted.
    pub fn fill(b: &mut [u8], frames: &[(&[u8], u32)]) -> usize {
        const MAC: usize = 82;
        let mut h = 48;
        let mut n = 0;
        for (i, (frame, hash)) in frames.iter().enumerate() {
            let size = (MAC + frame.len()).next_multiple_of(16);
            if h + size > b.len() {
                break;
            }
            let next = if i + 1 == frames.len() {
                0
            } else {
                size as u32
            };
            let put32 = |b: &mut [u8], at: usize, v: u32| {
                b[h + at..h + at + 4].copy_from_slice(&v.to_ne_bytes())
            };
            put32(b, H_NEXT_OFFSET, next);
            put32(b, H_SEC, 1);
            put32(b, H_NSEC, i as u32);
            put32(b, H_SNAPLEN, frame.len() as u32);
            put32(b, H_LEN, frame.len() as u32);
            put32(b, H_RXHASH, *hash);
            b[h + H_MAC..h + H_MAC + 2].copy_from_slice(&(MAC as u16).to_ne_bytes());
            b[h + H_NET..h + H_NET + 2].copy_from_slice(&(MAC as u16 + 14).to_ne_bytes());
            b[h + H_SLL + 2..h + H_SLL + 4].copy_from_slice(&frame[12..14]);
            b[h + H_SLL + 8..h + H_SLL + 10].copy_from_slice(&1u16.to_ne_bytes());
            b[h + MAC..h + MAC + frame.len()].copy_from_slice(frame);
            h += size;
            n += 1;
        }
        if n < frames.len() && n > 0 {
            // The last that fitted ends the walk.
            let last = h - (MAC + frames[n - 1].0.len()).next_multiple_of(16);
            b[last..last + 4].copy_from_slice(&0u32.to_ne_bytes());
        }
        b[BD_BLOCK_STATUS..BD_BLOCK_STATUS + 4].copy_from_slice(&TP_STATUS_USER.to_ne_bytes());
        b[BD_NUM_PKTS..BD_NUM_PKTS + 4].copy_from_slice(&(n as u32).to_ne_bytes());
        b[BD_OFFSET_TO_FIRST_PKT..BD_OFFSET_TO_FIRST_PKT + 4].copy_from_slice(&48u32.to_ne_bytes());
        n
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
    fn geometry_keeps_the_kernel_block_walk_in_range() {
        // -s 64 -B 9437184 (KiB): 73728 blocks of 128 KiB would wrap the
        // kernel's 16-bit block index; blocks of 256 KiB do not.
        let g = Geometry::new(64, 9_437_184 * 1024, 20);
        assert_eq!(g.block_size, 256 * 1024);
        assert_eq!(g.blocks, 36_864);
        // Exactly MAX_BLOCKS blocks stay as they are; one more doubles.
        let g = Geometry::new(64, MAX_BLOCKS * 128 * 1024, 20);
        assert_eq!((g.block_size, g.blocks), (128 * 1024, MAX_BLOCKS));
        // Larger blocks for the same bytes, while enough of them remain.
        let small = Geometry::new(1, 8 << 20, 20);
        assert_eq!((small.block_size, small.blocks), (128 * 1024, 64));
        let large = small.with_blocks_of(512 * 1024, 16);
        assert_eq!((large.block_size, large.blocks), (512 * 1024, 16));
        assert_eq!(large.bytes(), small.bytes());
        assert_eq!(small.with_blocks_of(1 << 20, 16), small);
        assert_eq!(small.with_blocks_of(64 * 1024, 2), small);
        let g = Geometry::new(64, (MAX_BLOCKS + 1) * 128 * 1024, 20);
        assert_eq!(g.block_size, 256 * 1024);
        assert_eq!(g.blocks, 32_768);
        for (snaplen, bytes) in [(64, 1usize << 40), (262_144, 1 << 40), (1500, 3 << 33)] {
            let g = Geometry::new(snaplen, bytes, 20);
            assert!(g.blocks <= MAX_BLOCKS, "{g:?}");
            assert!(g.block_size.is_power_of_two(), "{g:?}");
            assert!(g.block_size >= BLOCK_HEADER + PACKET_OVERHEAD + snaplen as usize);
            assert!(g.block_size <= u32::MAX as usize, "{g:?}");
        }
    }

    #[test]
    fn walks_packets_of_a_synthetic_block() {
        // Aligned like a ring block, so the status word can be atomic.
        #[repr(C, align(4096))]
        struct Aligned([u8; 4096]);
        let mut buf = Box::new(Aligned([0; 4096]));
        let b = &mut buf.0;
        b[BD_BLOCK_STATUS..BD_BLOCK_STATUS + 4].copy_from_slice(&TP_STATUS_USER.to_ne_bytes());
        b[BD_NUM_PKTS..BD_NUM_PKTS + 4].copy_from_slice(&2u32.to_ne_bytes());
        b[BD_OFFSET_TO_FIRST_PKT..BD_OFFSET_TO_FIRST_PKT + 4].copy_from_slice(&48u32.to_ne_bytes());
        let put = |b: &mut [u8], h: usize, next: u32, len: u32, byte: u8| {
            b[h..h + 4].copy_from_slice(&next.to_ne_bytes());
            b[h + H_SEC..h + H_SEC + 4].copy_from_slice(&7u32.to_ne_bytes());
            b[h + H_SNAPLEN..h + H_SNAPLEN + 4].copy_from_slice(&3u32.to_ne_bytes());
            b[h + H_LEN..h + H_LEN + 4].copy_from_slice(&len.to_ne_bytes());
            b[h + H_MAC..h + H_MAC + 2].copy_from_slice(&82u16.to_ne_bytes());
            b[h + H_NET..h + H_NET + 2].copy_from_slice(&96u16.to_ne_bytes());
            b[h + 82..h + 85].fill(byte);
        };
        put(b, 48, 160, 60, 0xaa);
        put(b, 208, 0, 1500, 0xbb);
        let block = Block::from_buffer(b);
        assert_eq!(block.num_packets(), 2);
        let p: Vec<Packet> = block.packets().collect();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].sec, p[0].len, p[0].data), (7, 60, &[0xaa; 3][..]));
        assert_eq!(
            (p[1].len, p[1].data, p[1].net_offset),
            (1500, &[0xbb; 3][..], 14)
        );
        drop(block);
        assert_eq!(u32_at(&buf.0, BD_BLOCK_STATUS), TP_STATUS_KERNEL);
    }

    #[test]
    fn walks_a_block_many_times_longer_than_its_read_ahead_to_the_end() {
        // Frames of many sizes fill the block to its last bytes, where
        // the read-ahead would point past it.
        let frames: Vec<Vec<u8>> = (0..2000usize)
            .map(|i| {
                let mut f = vec![(i % 251) as u8; 60 + (i * 37) % 1400];
                f[12..14].copy_from_slice(&[0x08, 0x00]);
                f
            })
            .collect();
        let order: Vec<(&[u8], u32)> = frames.iter().map(|f| (&f[..], f.len() as u32)).collect();
        let mut pages = synthetic::buffer(cache::READ_AHEAD * 64);
        let n = synthetic::fill(synthetic::bytes(&mut pages), &order);
        assert!(n > 100 && n < frames.len(), "{n}");
        let block = Block::from_buffer(synthetic::bytes(&mut pages));
        let mut packets = block.packets();
        let mut seen = 0;
        assert_eq!(packets.size_hint(), (0, Some(n)));
        while let Some(p) = packets.next() {
            assert_eq!(p.data, &frames[seen][..]);
            assert_eq!((p.hash, p.nsec), (frames[seen].len() as u32, seen as u32));
            seen += 1;
            assert_eq!(packets.size_hint(), (0, Some(n - seen)));
        }
        assert_eq!(seen, n);
    }

    #[test]
    fn wire_bytes_are_the_packets_lengths() {
        // Sizes that change from packet to packet (the read-ahead's guess
        // of where a header lies is then wrong: only a hint), to the
        // block's end.
        let frames: Vec<Vec<u8>> = (0..2000usize)
            .map(|i| vec![0u8; 60 + (i * 37) % 1400])
            .collect();
        let order: Vec<(&[u8], u32)> = frames.iter().map(|f| (&f[..], 0)).collect();
        let mut pages = synthetic::buffer(1 << 20);
        let n = synthetic::fill(synthetic::bytes(&mut pages), &order);
        assert!(n > 100 && n < frames.len(), "{n}");
        // The first `take` of them, or all.
        for take in [0, 1, n / 2, n, n + 10] {
            let mut pages = synthetic::buffer(1 << 20);
            synthetic::fill(synthetic::bytes(&mut pages), &order);
            let block = Block::from_buffer(synthetic::bytes(&mut pages));
            let want: u64 = block.packets().take(take).map(|p| u64::from(p.len)).sum();
            assert_eq!(
                block.wire_bytes(take),
                (take.min(n) as u64, want),
                "take {take}"
            );
        }
    }

    /// The walk before the runs: tp_next_offset followed header by header
    /// (each address from the load before), with the read-ahead at the
    /// guessed stride. Kept to compare in `wire_bytes_cost`.
    fn wire_bytes_chained(block: &Block, n: usize) -> (u64, u64) {
        let data = block.data();
        let mut offset = u32_at(data, BD_OFFSET_TO_FIRST_PKT) as usize;
        let (mut packets, mut bytes) = (0u64, 0u64);
        for _ in 0..n.min(block.num_packets()) {
            let Some(hdr) = data.get(offset..offset + H_STATUS) else {
                break;
            };
            packets += 1;
            bytes += u64::from(u32_at(hdr, H_LEN));
            match u32_at(hdr, H_NEXT_OFFSET) as usize {
                0 => break,
                next => {
                    let at = offset + WIRE_BYTES_AHEAD * next;
                    cache::read_ahead(data, at, 1);
                    cache::read_ahead(data, at + H_LEN, 1);
                    offset += next;
                }
            }
        }
        (packets, bytes)
    }

    #[test]
    fn wire_bytes_of_runs_and_odd_blocks() {
        // Runs of one size broken by others, a run that reaches the
        // block's end, and blocks whose chain ends or leaves early.
        let sizes: Vec<usize> = (0..3000usize)
            .map(|i| match i % 300 {
                0..=199 => 64,
                200..=201 => 1400,
                202..=279 => 128,
                _ => 60 + (i * 37) % 1400,
            })
            .collect();
        let frames: Vec<Vec<u8>> = sizes.iter().map(|&l| vec![0u8; l]).collect();
        let order: Vec<(&[u8], u32)> = frames.iter().map(|f| (&f[..], 0)).collect();
        for block_bytes in [4096, 64 << 10, 512 << 10] {
            let mut pages = synthetic::buffer(block_bytes);
            let n = synthetic::fill(synthetic::bytes(&mut pages), &order);
            let block = Block::from_buffer(synthetic::bytes(&mut pages));
            for take in [0, 1, 2, 199, 200, 201, 202, n / 2, n - 1, n, n + 10] {
                let want: u64 = block.packets().take(take).map(|p| u64::from(p.len)).sum();
                assert_eq!(block.wire_bytes(take), (take.min(n) as u64, want));
                assert_eq!(wire_bytes_chained(&block, take), block.wire_bytes(take));
            }
            std::mem::forget(block);
        }
        // A block that claims more packets than its chain holds, and one
        // whose offset leads past its end: the walk stops at the chain's
        // end or the block's, never reads outside it.
        let mut pages = synthetic::buffer(4096);
        let b = synthetic::bytes(&mut pages);
        let n = synthetic::fill(b, &order[..10]);
        assert_eq!(n, 10);
        b[BD_NUM_PKTS..BD_NUM_PKTS + 4].copy_from_slice(&1000u32.to_ne_bytes());
        let block = Block::from_buffer(b);
        assert_eq!(block.wire_bytes(1000), (10, 640));
        drop(block);
        let mut pages = synthetic::buffer(4096);
        let b = synthetic::bytes(&mut pages);
        synthetic::fill(b, &order[..20]);
        // The fifth header points 4000 bytes on, past the block.
        let fifth = 48 + 4 * 160;
        b[fifth..fifth + 4].copy_from_slice(&4000u32.to_ne_bytes());
        let block = Block::from_buffer(b);
        assert_eq!(block.wire_bytes(20), (5, 320));
        drop(block);
        // Records of one size to the block's last byte, the last with a
        // next offset that is not 0.
        let mut pages = synthetic::buffer(4096);
        let b = synthetic::bytes(&mut pages);
        let n = synthetic::fill(b, &order[..100]);
        let last = 48 + (n - 1) * 160;
        b[last..last + 4].copy_from_slice(&160u32.to_ne_bytes());
        b[BD_NUM_PKTS..BD_NUM_PKTS + 4].copy_from_slice(&1000u32.to_ne_bytes());
        let block = Block::from_buffer(b);
        let (packets, bytes) = block.wire_bytes(1000);
        assert_eq!(bytes, 64 * n as u64);
        // The zeroed bytes after the last record read as one more header
        // where 20 bytes of them remain (as the chained walk reads them).
        let room = (4096 - (48 + n * 160) >= H_STATUS) as u64;
        assert_eq!(packets, n as u64 + room);
        assert_eq!(wire_bytes_chained(&block, 1000), (packets, bytes));
    }

    /// The byte walk's cost per packet, new and chained, on blocks of
    /// 64-byte frames (the bench's flood: 160-byte records).
    /// RING_BLOCKS=N (default 64) walks N blocks of BLOCK_KIB (default 512,
    /// the default snapshot length's) in turn, as a ring: each block's
    /// headers come from the last-level cache, as a block the kernel
    /// filled a while ago. A measurement: `cargo test --release --lib
    /// wire_bytes_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement"]
    fn wire_bytes_cost() {
        let env = |k: &str, d: usize| std::env::var(k).map_or(d, |v| v.parse().unwrap());
        let blocks = env("RING_BLOCKS", 64);
        let block_bytes = env("BLOCK_KIB", 512) << 10;
        let frame = [0u8; 64];
        let order: Vec<(&[u8], u32)> = vec![(&frame[..], 0); block_bytes / 160];
        let mut ring: Vec<_> = (0..blocks)
            .map(|_| synthetic::buffer(block_bytes))
            .collect();
        let mut n = 0;
        for pages in &mut ring {
            n = synthetic::fill(synthetic::bytes(pages), &order);
        }
        type Walk = fn(&Block, usize) -> (u64, u64);
        let walks: [(&str, Walk); 2] = [
            ("runs", |b, n| b.wire_bytes(n)),
            ("chained", wire_bytes_chained),
        ];
        for round in 0..3 {
            for (name, walk) in walks {
                let rounds = 4 * blocks.max(16);
                let mut best = f64::MAX;
                for _ in 0..10 {
                    let t = std::time::Instant::now();
                    for r in 0..rounds {
                        let block = Block::from_buffer(synthetic::bytes(&mut ring[r % blocks]));
                        let (p, bytes) = std::hint::black_box(walk(&block, n));
                        assert_eq!((p, bytes), (n as u64, 64 * n as u64));
                        std::mem::forget(block);
                    }
                    best = best.min(t.elapsed().as_nanos() as f64 / (rounds * n) as f64);
                }
                eprintln!("round {round} {name}: {n} packets per block, {blocks} blocks: {best:.2} ns per packet (best of 10)");
            }
        }
    }
}
