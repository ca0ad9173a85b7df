//! The eBPF fanout programs that route a packet to its queue's or numa
//! node's member of the group (PACKET_FANOUT_EBPF). The kernel runs the
//! program on every packet the group sees and gives the packet to member
//! `return value % members`, before any member's filter runs.

use crate::error::{Error, Result};
use crate::sys::bpf::{self, ProgType, Program};
use crate::sys::ebpf::{self, helper, skb, Cond, Reg, Size};
use crate::vantage::Route;

/// The kernel's PACKET_OUTGOING packet type: transmitted by this host.
const PACKET_OUTGOING: i32 = 4;

/// The program for `route`; None for PACKET_FANOUT_CPU, which needs none.
pub fn program(route: Route) -> Result<Option<Program>> {
    let (name, insns) = match route {
        Route::Cpu => return Ok(None),
        Route::Queue { queues } => ("rxtxqueue", queue_insns(queues)),
        Route::Numa => ("rxtxnuma", numa_insns()),
    };
    bpf::Program::load(ProgType::SocketFilter, name, &insns)
        .map(Some)
        .map_err(|e| {
            let hint = if e.is_permission() {
                " (the per-queue and per-node captures load an eBPF program: they need root, \
                 or CAP_BPF with CAP_NET_RAW)"
            } else {
                ""
            };
            let log = if e.log.is_empty() {
                String::new()
            } else {
                format!("\n{}", e.log)
            };
            Error::Message(format!(
                "error loading the eBPF fanout program: {}{hint}{log}",
                crate::error::Why(e.error)
            ))
        })
}

/// Member = the packet's queue. On transmit `queue_mapping` is the queue
/// the kernel picked. On receive the driver records queue + 1
/// (skb_record_rx_queue), 0 meaning none was recorded: such packets, and
/// any queue number beyond the `queues` the device had when the capture
/// started (its queue count can grow meanwhile), go to member `queues`,
/// never to a real queue's member (the kernel's `% members` would fold
/// them onto one).
pub fn queue_insns(queues: u32) -> Vec<ebpf::Insn> {
    let none = queues as i32;
    vec![
        // 0: r2 = skb->pkt_type; r0 = skb->queue_mapping
        ebpf::load(Size::W, Reg::R2, Reg::R1, skb::PKT_TYPE),
        ebpf::load(Size::W, Reg::R0, Reg::R1, skb::QUEUE_MAPPING),
        // 2: transmitted: queue_mapping is the tx queue itself
        ebpf::jump_imm(Cond::Eq, Reg::R2, PACKET_OUTGOING, 2),
        // 3: received with no queue recorded
        ebpf::jump_imm(Cond::Eq, Reg::R0, 0, 3),
        // 4: received on queue_mapping - 1
        ebpf::add_imm(Reg::R0, -1),
        // 5: out of range: the no-queue member too
        ebpf::jump_imm(Cond::Ge, Reg::R0, none, 1),
        ebpf::exit(),
        // 7:
        ebpf::mov_imm(Reg::R0, none),
        ebpf::exit(),
    ]
}

/// Member = the numa node of the cpu handling the packet
/// (bpf_get_numa_node_id, which socket filters may call).
pub fn numa_insns() -> Vec<ebpf::Insn> {
    vec![ebpf::call(helper::GET_NUMA_NODE_ID), ebpf::exit()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jump targets land inside the program: off counts from the next
    /// instruction.
    #[test]
    fn queue_program_jumps_stay_inside() {
        let p = queue_insns(4);
        for (i, insn) in p.iter().enumerate() {
            if insn.code & 0x07 == 0x05 && insn.code != 0x95 && insn.code != 0x85 {
                let target = i as i64 + 1 + i64::from(insn.off);
                assert!((0..p.len() as i64).contains(&target), "insn {i}");
            }
        }
        assert_eq!(p.last().unwrap().code, 0x95);
        assert_eq!(p[7].imm, 4);
    }
}
