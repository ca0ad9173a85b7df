//! The default size of a stream's ring: a policy, measured on the
//! benchmark, not a kernel interface. `-B` overrides it; the ring itself
//! (its geometry, the blocks) is [`crate::sys::ring`].

use crate::sys::ring::Geometry;

/// The snap length from which a stream keeps whole Ethernet frames, and its
/// default ring gets bigger ([`FULL_FRAME_RING`]).
const FULL_FRAME: u32 = 1514;

/// The default ring of a stream that keeps whole frames. Measured on the
/// benchmark's veth (two senders, 1500-byte frames, about 0.85 Mpps per
/// cpu, -w tmpfs): 8 MiB dropped in 10 of 18 runs, 32 MiB in 2 of 6,
/// 64 MiB in none; the worker shares its cpu with that cpu's receive work
/// and a write that stalls for page faults is absorbed by the ring alone.
/// 64 MiB holds about 40,000 such frames, the same ~50 ms of a flood that
/// 8 MiB holds of snapped or small packets.
const FULL_FRAME_RING: usize = (crate::options::DEFAULT_BUFFER_KIB as usize) << 10;

/// The default ring of one stream: 8 MiB, or [`FULL_FRAME_RING`] when the
/// snap length keeps whole frames ([`FULL_FRAME`] bytes or more), while
/// the streams' total stays within 256 MiB; past that the 256 MiB shared
/// out, but never less than a ring can be: two blocks that hold a full
/// `snaplen`-byte packet (past 256 streams at the default snap length,
/// the total grows by that minimum per stream). `-B` overrides it.
/// Returns the bytes and, for -v, why.
pub fn default_bytes(streams: usize, snaplen: u32) -> (usize, String) {
    const SNAPPED: usize = (crate::options::SNAPPED_BUFFER_KIB as usize) << 10;
    const TOTAL: usize = 256 << 20;
    const STREAMS: usize = 256;
    let (per_stream, what) = if snaplen >= FULL_FRAME {
        (FULL_FRAME_RING, "whole frames")
    } else {
        (SNAPPED, "snapped packets")
    };
    let streams = streams.max(1);
    let smallest = Geometry::new(snaplen, 0, 0).bytes();
    let share = TOTAL / streams;
    if streams > STREAMS {
        return (
            smallest,
            format!("default: the smallest ring per stream past {STREAMS} streams"),
        );
    }
    if share >= per_stream {
        return (
            per_stream,
            format!(
                "default: {} MiB per stream of {what} for {streams} streams",
                per_stream >> 20
            ),
        );
    }
    if share >= smallest {
        // Whole blocks: the share rounded down to the block size.
        let block = Geometry::new(snaplen, share, 0).block_size;
        let bytes = (share / block).max(2) * block;
        return (
            bytes,
            format!("default: at most 256 MiB over {streams} streams"),
        );
    }
    (
        smallest,
        format!(
            "default: {streams} streams get the smallest ring that holds two \
             {snaplen}-byte packets"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ring_sizes_keep_the_total_bounded() {
        let mib = 1usize << 20;
        assert_eq!(default_bytes(1, 262_144).0, 64 * mib);
        assert_eq!(default_bytes(2, 262_144).0, 64 * mib);
        assert_eq!(default_bytes(4, 262_144).0, 64 * mib);
        assert_eq!(default_bytes(8, 262_144).0, 32 * mib);
        assert_eq!(default_bytes(32, 262_144).0, 8 * mib);
        assert_eq!(default_bytes(128, 262_144).0, 2 * mib);
        assert_eq!(default_bytes(256, 262_144).0, mib);
        assert_eq!(default_bytes(512, 262_144).0, mib);
        assert_eq!(default_bytes(2, 1514).0, 64 * mib);
        assert_eq!(default_bytes(2, 1513).0, 8 * mib);
        assert_eq!(default_bytes(32, 96).0, 8 * mib);
        assert_eq!(default_bytes(64, 96).0, 4 * mib);
        for streams in 1..=4096usize {
            for snaplen in [64, 1500, 1514, 65_535, 262_144] {
                let (bytes, why) = default_bytes(streams, snaplen);
                let g = Geometry::new(snaplen, bytes, 20);
                // What the ring will really be is what was chosen.
                assert_eq!(g.bytes(), bytes, "{streams} x {snaplen}: {why}");
                assert!(bytes <= 64 * mib);
                if snaplen < FULL_FRAME {
                    assert!(bytes <= 8 * mib);
                }
                // Never below two blocks of a full packet.
                assert!(bytes >= Geometry::new(snaplen, 0, 20).bytes());
                if streams <= 256 {
                    assert!(bytes * streams <= 256 * mib, "{streams} x {snaplen}");
                } else {
                    assert_eq!(bytes, Geometry::new(snaplen, 0, 20).bytes());
                }
            }
        }
    }
}
