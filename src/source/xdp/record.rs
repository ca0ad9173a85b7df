//! The records the program writes to the perf buffers, read back: one
//! frame's header decoded ([`XdpRecord`]), its time turned from the
//! monotonic clock bpf_ktime_get_ns() reads into wall-clock time
//! ([`WallClock`]), and one reader per captured cpu's buffer
//! ([`PerfReader`]).

use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::packet::Packet;
use crate::sys::host::{clock_ns, Clock};
use crate::sys::perf::{PerfRing, ReadStats, Record};

use super::program::{META_CAPLEN, META_IFINDEX, META_LEN, META_LEN_OFF, META_QUEUE, META_TIME};

/// CLOCK_REALTIME minus CLOCK_MONOTONIC, to turn bpf_ktime_get_ns() into
/// wall-clock time. Both clocks run at the same (NTP-slewed) rate, so the
/// offset holds until someone steps the wall clock.
#[derive(Debug, Default)]
pub struct WallClock {
    offset_ns: AtomicI64,
}

impl WallClock {
    /// Measures the offset: of a few (monotonic, realtime, monotonic)
    /// readings it takes the one with the shortest bracket, the realtime
    /// reading paired with the bracket's middle (the error is below half
    /// the bracket, typically tens of nanoseconds with the vDSO).
    pub fn calibrate(&self) {
        let mut best = (i64::MAX, 0);
        for _ in 0..8 {
            let a = clock_ns(Clock::Monotonic);
            let r = clock_ns(Clock::Realtime);
            let b = clock_ns(Clock::Monotonic);
            if b - a < best.0 {
                best = (b - a, r - (a + (b - a) / 2));
            }
        }
        self.offset_ns.store(best.1, Ordering::Release);
    }

    pub fn offset_ns(&self) -> i64 {
        self.offset_ns.load(Ordering::Acquire)
    }

    /// Wall-clock (sec, nsec) of a CLOCK_MONOTONIC time.
    pub fn to_wall(&self, monotonic_ns: u64) -> (u32, u32) {
        let t = monotonic_ns as i64 + self.offset_ns();
        (
            t.div_euclid(1_000_000_000) as u32,
            t.rem_euclid(1_000_000_000) as u32,
        )
    }
}

/// One frame as the program recorded it.
#[derive(Clone, Copy, Debug)]
pub struct XdpRecord<'a> {
    /// The cpu whose ring it came from: where the XDP program ran.
    pub cpu: u32,
    /// bpf_ktime_get_ns() when the program ran (CLOCK_MONOTONIC).
    pub monotonic_ns: u64,
    /// The same instant in wall-clock time.
    pub sec: u32,
    pub nsec: u32,
    /// The frame's length (all fragments).
    pub len: u32,
    /// The receive queue (xdp_md.rx_queue_index).
    pub queue: u32,
    pub ifindex: u32,
    /// The frame's first min(len, snaplen) bytes, from the link header.
    pub data: &'a [u8],
}

impl<'a> XdpRecord<'a> {
    /// Parses a raw sample: the header, then the bytes.
    pub fn parse(cpu: u32, raw: &'a [u8], clock: &WallClock) -> Option<XdpRecord<'a>> {
        let u32_at = |o: usize| {
            raw.get(o..o + 4)
                .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
        };
        let monotonic_ns = u64::from_ne_bytes(raw.get(META_TIME..META_TIME + 8)?.try_into().ok()?);
        let caplen = u32_at(META_CAPLEN)? as usize;
        let (sec, nsec) = clock.to_wall(monotonic_ns);
        Some(XdpRecord {
            cpu,
            monotonic_ns,
            sec,
            nsec,
            len: u32_at(META_LEN_OFF)?,
            queue: u32_at(META_QUEUE)?,
            ifindex: u32_at(META_IFINDEX)?,
            data: raw.get(META_LEN..META_LEN + caplen)?,
        })
    }

    /// The record as a [`Packet`] for [`crate::consumers::files::PcapOutput`], for
    /// an interface of hardware type `hatype` (ARPHRD_*). XDP knows no
    /// packet type: broadcast and multicast frames say so, the rest are
    /// PACKET_HOST. A VLAN tag the device stripped is not seen.
    pub fn packet(&self, hatype: u16) -> Packet<'a> {
        const PACKET_BROADCAST: u8 = 1;
        const PACKET_MULTICAST: u8 = 2;
        let d = self.data;
        let ether = hatype == crate::packet::ARPHRD_ETHER && d.len() >= 14;
        let mut addr = [0u8; 8];
        let (pkttype, protocol, net_offset, halen) = if ether {
            addr[..6].copy_from_slice(&d[6..12]);
            let pkttype = if d[..6] == [0xff; 6] {
                PACKET_BROADCAST
            } else if d[0] & 1 != 0 {
                PACKET_MULTICAST
            } else {
                0
            };
            (pkttype, u16::from_ne_bytes([d[12], d[13]]), 14, 6)
        } else {
            // Headerless (tun): the IP version says the protocol.
            let proto: u16 = match d.first().map(|b| b >> 4) {
                Some(6) => 0x86dd,
                _ => 0x0800,
            };
            (0, u16::from_ne_bytes(proto.to_be_bytes()), 0, 0)
        };
        Packet {
            sec: self.sec,
            nsec: self.nsec,
            len: self.len,
            data: d,
            net_offset,
            ifindex: self.ifindex as i32,
            hatype,
            pkttype,
            protocol,
            halen,
            addr,
            vlan: None,
            // XDP has no skb, so no kernel flow hash.
            hash: 0,
        }
    }
}

/// One captured cpu's stream of records.
pub struct PerfReader {
    ring: PerfRing,
    clock: Arc<WallClock>,
    malformed: u64,
}

impl PerfReader {
    /// The reader of `ring`, whose records' times `clock` converts.
    pub(super) fn new(ring: PerfRing, clock: Arc<WallClock>) -> PerfReader {
        PerfReader {
            ring,
            clock,
            malformed: 0,
        }
    }

    pub fn cpu(&self) -> u32 {
        self.ring.cpu()
    }

    /// To poll for POLLIN (records past the wakeup mark; poll with a
    /// timeout to see a trickle below it).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.ring.fd()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Samples the reader could not parse (never expected).
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Hands the records written so far to `f`, in the order the cpu
    /// produced them; stops early when `f` breaks. `lost` in the result
    /// counts PERF_RECORD_LOST reports, which repeat (later) what the
    /// program's own lost count says: report the latter.
    pub fn read(&mut self, mut f: impl FnMut(XdpRecord<'_>) -> ControlFlow<()>) -> ReadStats {
        let cpu = self.ring.cpu();
        let clock = &*self.clock;
        let malformed = &mut self.malformed;
        self.ring.read(|rec| match rec {
            Record::Sample(raw) => match XdpRecord::parse(cpu, raw, clock) {
                Some(r) => f(r),
                None => {
                    *malformed += 1;
                    ControlFlow::Continue(())
                }
            },
            Record::Lost(_) => ControlFlow::Continue(()),
        })
    }
}

impl AsRawFd for PerfReader {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.ring.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_conversion() {
        let c = WallClock::default();
        c.offset_ns
            .store(1_700_000_000_000_000_000, Ordering::Relaxed);
        assert_eq!(c.to_wall(1_500_000_001), (1_700_000_001, 500_000_001));
        c.calibrate();
        let mono = clock_ns(Clock::Monotonic) as u64;
        let (sec, nsec) = c.to_wall(mono);
        let wall = sec as i64 * 1_000_000_000 + nsec as i64;
        // The conversion of "now" lands within a millisecond of now.
        assert!(
            (wall - clock_ns(Clock::Realtime)).abs() < 1_000_000,
            "{wall}"
        );
    }
}
