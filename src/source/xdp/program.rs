//! The XDP program itself, as eBPF instructions, and the layout of the
//! maps it shares with user space: the config value (the window, the snap
//! length, the `-c` budget), the per-cpu counts, and the header of each
//! record it writes to a perf buffer.
//!
//! The program returns XDP_PASS for every frame: the traffic is never
//! changed. It counts in a per-cpu array map (exact, no atomics, read at
//! the end), only while user space has the window open, only on the
//! selected cpus (and queues); with a snap length it also writes each
//! frame (a small header, then the first snaplen bytes) to the current
//! cpu's perf event ring ([`crate::sys::perf`]), counting per cpu the
//! records that did not fit. With `-c N` a shared budget caps the total at
//! exactly N.

use crate::sys::ebpf::{self, helper, xdp_md, Asm, Cond, Insn, Reg, Size};
use crate::sys::perf;

/// XDP_PASS: the verdict for every frame, which goes on unchanged.
pub(super) const XDP_PASS: i32 = 2;
/// BPF_RB_FORCE_WAKEUP: wake the ring buffer's poller for this record.
const BPF_RB_FORCE_WAKEUP: i32 = 2;

/// The largest snap length a record can carry: the perf record header's
/// size is a u16, and the record also holds its 8-byte header, the raw
/// size word, [`META_LEN`] bytes of metadata and up to 7 bytes of padding.
pub const MAX_SNAPLEN: u32 = (perf::MAX_RECORD - 8 - 4 - META_LEN - 7) as u32 & !7;

// The config map: one mmapable array value that user space and the
// program share. Offsets in it:
/// u32: nonzero while the window is open.
pub(super) const CFG_ENABLED: i16 = 0;
/// u32: bytes of each frame to copy (capture programs only).
pub(super) const CFG_SNAPLEN: i16 = 4;
/// u64: the -c budget, 0 for none.
pub(super) const CFG_BUDGET: i16 = 8;
/// u32: the highest count slot (frames of higher queues go there).
pub(super) const CFG_LAST_SLOT: i16 = 16;
/// u64: budget slots taken (a slot is given back when its record is lost);
/// on a cache line of its own with CFG_DONE: the words every cpu writes.
const CFG_TAKEN: i16 = 64;
/// u64: frames captured under the budget; the one that makes it reach the
/// budget signals the end.
const CFG_DONE: i16 = 72;
pub(super) const CFG_SIZE: u32 = 80;

// The counts map: per-cpu values, one key per queue slot.
/// u64: nonzero when this cpu and slot are captured (set by user space).
const CNT_SELECTED: i16 = 0;
pub(super) const CNT_PACKETS: i16 = 8;
pub(super) const CNT_BYTES: i16 = 16;
/// u64: records that did not fit in the perf ring.
pub(super) const CNT_LOST: i16 = 24;
pub(super) const CNT_SIZE: usize = 32;

// The record's header (the raw sample's first bytes), on the program's
// stack at META:
/// u64 bpf_ktime_get_ns(): CLOCK_MONOTONIC.
pub(super) const META_TIME: usize = 0;
/// u32: the frame's length.
pub(super) const META_LEN_OFF: usize = 8;
/// u32: the bytes that follow the header.
pub(super) const META_CAPLEN: usize = 12;
/// u32: xdp_md.rx_queue_index.
pub(super) const META_QUEUE: usize = 16;
/// u32: xdp_md.ingress_ifindex.
pub(super) const META_IFINDEX: usize = 20;
pub(super) const META_LEN: usize = 24;
/// Stack offsets: the map key, then the record header.
const STACK_KEY: i16 = -4;
const STACK_META: i16 = -32;

/// The maps a program refers to, by descriptor.
#[derive(Clone, Copy, Debug)]
pub struct ProgramMaps {
    pub config: i32,
    pub counts: i32,
    /// The perf event array: Some for a capture that copies frames.
    pub perf: Option<i32>,
    /// The ring buffer that signals the end of a -c budget.
    pub done: i32,
}

/// The XDP program. Registers: r6 the context, r7 the config value, r8
/// this cpu's count slot, r9 whether a budget slot was taken. Per frame it
/// costs two inlined array lookups and a helper call for the length;
/// copying adds bpf_ktime_get_ns and bpf_perf_event_output; a budget adds
/// two atomic adds on a shared word.
pub fn program(maps: ProgramMaps) -> Vec<Insn> {
    use ebpf::{
        add, add_imm, atomic_add, atomic_fetch_add, call, exit, ja, jump, jump_imm, load,
        load_map_fd, load_map_value, lsh_imm, mov, mov32_imm, mov_imm, store, store_imm,
    };
    use Reg::*;
    let meta = |field: usize| STACK_META + field as i16;
    let mut a = Asm::new();
    a.push([mov(R6, R1)])
        .push(load_map_value(R7, maps.config, 0));
    // Nothing before start() or after stop().
    a.push([load(Size::W, R1, R7, CFG_ENABLED)])
        .jump_to(jump_imm(Cond::Eq, R1, 0, 0), "pass");
    // key = min(rx_queue_index, last slot)
    a.push([
        load(Size::W, R2, R6, xdp_md::RX_QUEUE_INDEX),
        load(Size::W, R3, R7, CFG_LAST_SLOT),
        jump(Cond::Ge, R3, R2, 1),
        mov(R2, R3),
        store(Size::W, R10, STACK_KEY, R2),
    ]);
    a.push(load_map_fd(R1, maps.counts)).push([
        mov(R2, R10),
        add_imm(R2, i32::from(STACK_KEY)),
        call(helper::MAP_LOOKUP_ELEM),
    ]);
    a.jump_to(jump_imm(Cond::Eq, R0, 0, 0), "pass");
    a.push([mov(R8, R0), load(Size::DW, R1, R8, CNT_SELECTED)])
        .jump_to(jump_imm(Cond::Eq, R1, 0, 0), "pass");
    // The budget: take a slot; when none is left, undo the increment (so a
    // slot given back below is really free again) and let the frame pass.
    a.push([mov_imm(R9, 0), load(Size::DW, R1, R7, CFG_BUDGET)])
        .jump_to(jump_imm(Cond::Eq, R1, 0, 0), "take");
    a.push([
        mov_imm(R2, 1),
        atomic_fetch_add(Size::DW, R7, CFG_TAKEN, R2),
    ])
    .jump_to(jump(Cond::Gt, R1, R2, 0), "took");
    a.push([mov_imm(R2, -1), atomic_add(Size::DW, R7, CFG_TAKEN, R2)])
        .jump_to(ja(0), "pass");
    a.label("took").push([mov_imm(R9, 1)]);
    a.label("take");
    a.push([
        mov(R1, R6),
        call(helper::XDP_GET_BUFF_LEN),
        store(Size::W, R10, meta(META_LEN_OFF), R0),
    ]);
    if let Some(perf_fd) = maps.perf {
        a.push([
            call(helper::KTIME_GET_NS),
            store(Size::DW, R10, meta(META_TIME), R0),
            load(Size::W, R1, R6, xdp_md::RX_QUEUE_INDEX),
            store(Size::W, R10, meta(META_QUEUE), R1),
            load(Size::W, R1, R6, xdp_md::INGRESS_IFINDEX),
            store(Size::W, R10, meta(META_IFINDEX), R1),
            // caplen = min(len, snaplen)
            load(Size::W, R2, R7, CFG_SNAPLEN),
            load(Size::W, R1, R10, meta(META_LEN_OFF)),
            jump(Cond::Ge, R1, R2, 1),
            mov(R2, R1),
            store(Size::W, R10, meta(META_CAPLEN), R2),
            // flags = caplen << 32 | BPF_F_CURRENT_CPU: the frame's first
            // caplen bytes follow the header, in this cpu's ring.
            lsh_imm(R2, 32),
            mov32_imm(R3, -1),
            add(R3, R2),
            mov(R1, R6),
        ])
        .push(load_map_fd(R2, perf_fd))
        .push([
            mov(R4, R10),
            add_imm(R4, i32::from(STACK_META)),
            mov_imm(R5, META_LEN as i32),
            call(helper::PERF_EVENT_OUTPUT),
        ])
        .jump_to(jump_imm(Cond::Eq, R0, 0, 0), "count");
        // The ring was full: count the loss, give the budget slot back.
        a.push([
            load(Size::DW, R1, R8, CNT_LOST),
            add_imm(R1, 1),
            store(Size::DW, R8, CNT_LOST, R1),
        ])
        .jump_to(jump_imm(Cond::Eq, R9, 0, 0), "pass");
        a.push([mov_imm(R2, -1), atomic_add(Size::DW, R7, CFG_TAKEN, R2)])
            .jump_to(ja(0), "pass");
    }
    a.label("count").push([
        load(Size::DW, R1, R8, CNT_PACKETS),
        add_imm(R1, 1),
        store(Size::DW, R8, CNT_PACKETS, R1),
        load(Size::DW, R1, R8, CNT_BYTES),
        load(Size::W, R2, R10, meta(META_LEN_OFF)),
        add(R1, R2),
        store(Size::DW, R8, CNT_BYTES, R1),
    ]);
    // The frame that completes the budget wakes user space.
    a.jump_to(jump_imm(Cond::Eq, R9, 0, 0), "pass").push([
        mov_imm(R2, 1),
        atomic_fetch_add(Size::DW, R7, CFG_DONE, R2),
        load(Size::DW, R1, R7, CFG_BUDGET),
        add_imm(R1, -1),
    ]);
    a.jump_to(jump(Cond::Ne, R2, R1, 0), "pass");
    a.push([store_imm(Size::DW, R10, meta(META_TIME), 0)])
        .push(load_map_fd(R1, maps.done))
        .push([
            mov(R2, R10),
            add_imm(R2, i32::from(STACK_META)),
            mov_imm(R3, 8),
            mov_imm(R4, BPF_RB_FORCE_WAKEUP),
            call(helper::RINGBUF_OUTPUT),
        ]);
    a.label("pass").push([mov_imm(R0, XDP_PASS), exit()]);
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_jumps_stay_inside_and_it_ends_in_exit() {
        for perf in [None, Some(7)] {
            let p = program(ProgramMaps {
                config: 4,
                counts: 5,
                perf,
                done: 6,
            });
            for (i, insn) in p.iter().enumerate() {
                let class = insn.code & 0x07;
                if class == 0x05 && insn.code != 0x95 && insn.code != 0x85 {
                    let target = i as i64 + 1 + i64::from(insn.off);
                    assert!((0..p.len() as i64).contains(&target), "insn {i}");
                }
            }
            assert_eq!(p.last().unwrap().code, 0x95);
            assert_eq!(p[p.len() - 2].imm, XDP_PASS);
        }
    }

    #[test]
    fn snaplen_limit_fits_a_perf_record() {
        let record = 8 + 4 + META_LEN + MAX_SNAPLEN as usize;
        assert!(record.next_multiple_of(8) <= perf::MAX_RECORD);
        assert_eq!(perf::data_bytes_for(8 << 20), 8 << 20);
        assert_eq!(perf::data_bytes_for(3 << 20), 2 << 20);
        assert_eq!(perf::data_bytes_for(1), perf::MIN_DATA_BYTES);
        assert_eq!(perf::data_bytes_for(usize::MAX), perf::MAX_DATA_BYTES);
    }
}
