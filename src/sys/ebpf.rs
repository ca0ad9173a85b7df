//! eBPF instructions, assembled in Rust: the project's programs are a
//! handful of instructions each, so they are written here as instruction
//! arrays (as the original rxtxqueue's are) and need no BPF toolchain to
//! build. Loading them is [`crate::sys::bpf`]'s job.

/// One eBPF instruction (`struct bpf_insn`): opcode, destination and
/// source registers packed into one byte, a signed offset, an immediate.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// eBPF registers: r0 return value, r1-r5 arguments (r1 the context on
/// entry), r6-r9 callee saved, r10 the frame pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reg {
    R0 = 0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
}

// Instruction classes and fields, <linux/bpf_common.h> and <linux/bpf.h>.
const BPF_LDX: u8 = 0x01;
const BPF_STX: u8 = 0x03;
const BPF_ST: u8 = 0x02;
const BPF_LD: u8 = 0x00;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_H: u8 = 0x08;
const BPF_B: u8 = 0x10;
const BPF_DW: u8 = 0x18;
const BPF_IMM: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
/// Atomic read-modify-write of memory (BPF_STX class), the operation in imm.
const BPF_ATOMIC: u8 = 0xc0;
/// imm flag of an atomic operation: the old value goes to src_reg.
const BPF_FETCH: i32 = 0x01;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_ADD: u8 = 0x00;
const BPF_SUB: u8 = 0x10;
const BPF_MUL: u8 = 0x20;
const BPF_OR: u8 = 0x40;
const BPF_AND: u8 = 0x50;
const BPF_LSH: u8 = 0x60;
const BPF_RSH: u8 = 0x70;
const BPF_XOR: u8 = 0xa0;
const BPF_MOV: u8 = 0xb0;
const BPF_JA: u8 = 0x00;
const BPF_JEQ: u8 = 0x10;
const BPF_JGT: u8 = 0x20;
const BPF_JGE: u8 = 0x30;
const BPF_JNE: u8 = 0x50;
const BPF_JLT: u8 = 0xa0;
const BPF_JSGE: u8 = 0x70;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;
/// src_reg of a 64-bit immediate load that names a map by its fd.
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
/// src_reg of a 64-bit immediate load that names a byte of an array map's
/// value: map fd in the first slot's imm, offset in the second's.
pub const BPF_PSEUDO_MAP_VALUE: u8 = 2;

/// Memory access sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    // Bytes and half-words: for the kernel probes, which read narrow
    // fields of kernel structures.
    #[allow(dead_code)]
    B,
    #[allow(dead_code)]
    H,
    W,
    DW,
}

impl Size {
    fn bits(self) -> u8 {
        match self {
            Size::B => BPF_B,
            Size::H => BPF_H,
            Size::W => BPF_W,
            Size::DW => BPF_DW,
        }
    }
}

/// Jump conditions (unsigned comparisons, but for Sge).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    /// Signed >=.
    Sge,
}

impl Cond {
    fn bits(self) -> u8 {
        match self {
            Cond::Eq => BPF_JEQ,
            Cond::Ne => BPF_JNE,
            Cond::Gt => BPF_JGT,
            Cond::Ge => BPF_JGE,
            Cond::Lt => BPF_JLT,
            Cond::Sge => BPF_JSGE,
        }
    }
}

fn insn(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (dst as u8) | ((src as u8) << 4),
        off,
        imm,
    }
}

/// `dst = imm` (64-bit).
pub fn mov_imm(dst: Reg, imm: i32) -> Insn {
    insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, Reg::R0, 0, imm)
}

/// `dst = src` (64-bit).
pub fn mov(dst: Reg, src: Reg) -> Insn {
    insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
}

/// `dst += imm` (64-bit).
pub fn add_imm(dst: Reg, imm: i32) -> Insn {
    insn(BPF_ALU64 | BPF_ADD | BPF_K, dst, Reg::R0, 0, imm)
}

/// `dst += src` (64-bit).
pub fn add(dst: Reg, src: Reg) -> Insn {
    insn(BPF_ALU64 | BPF_ADD | BPF_X, dst, src, 0, 0)
}

/// `dst <<= imm` (64-bit).
pub fn lsh_imm(dst: Reg, imm: i32) -> Insn {
    insn(BPF_ALU64 | BPF_LSH | BPF_K, dst, Reg::R0, 0, imm)
}

/// `dst = (u32)(dst - src)` (32-bit: the upper half cleared). On a
/// pointer (the frame pointer) it gives a plain number where the program
/// may see addresses (CAP_PERFMON).
pub fn sub32(dst: Reg, src: Reg) -> Insn {
    insn(BPF_ALU | BPF_SUB | BPF_X, dst, src, 0, 0)
}

/// `dst >>= imm` (64-bit, logical).
pub fn rsh_imm(dst: Reg, imm: i32) -> Insn {
    insn(BPF_ALU64 | BPF_RSH | BPF_K, dst, Reg::R0, 0, imm)
}

/// `dst &= imm` (64-bit; imm sign-extended).
pub fn and_imm(dst: Reg, imm: i32) -> Insn {
    insn(BPF_ALU64 | BPF_AND | BPF_K, dst, Reg::R0, 0, imm)
}

/// `dst |= imm` (64-bit; imm sign-extended).
pub fn or_imm(dst: Reg, imm: i32) -> Insn {
    insn(BPF_ALU64 | BPF_OR | BPF_K, dst, Reg::R0, 0, imm)
}

/// `dst |= src` (64-bit).
pub fn or(dst: Reg, src: Reg) -> Insn {
    insn(BPF_ALU64 | BPF_OR | BPF_X, dst, src, 0, 0)
}

/// `dst ^= src` (64-bit).
pub fn xor(dst: Reg, src: Reg) -> Insn {
    insn(BPF_ALU64 | BPF_XOR | BPF_X, dst, src, 0, 0)
}

/// `dst *= src` (64-bit, wrapping).
pub fn mul(dst: Reg, src: Reg) -> Insn {
    insn(BPF_ALU64 | BPF_MUL | BPF_X, dst, src, 0, 0)
}

/// `dst = htobe16(dst)`: the low 16 bits to big-endian, the rest
/// cleared (BPF_END).
pub fn to_be16(dst: Reg) -> Insn {
    const BPF_END: u8 = 0xd0;
    const BPF_TO_BE: u8 = 0x08;
    insn(BPF_ALU | BPF_END | BPF_TO_BE, dst, Reg::R0, 0, 16)
}

/// `dst = (u32) imm` (32-bit move: clears the upper half, so -1 gives
/// 0xffffffff rather than all ones).
pub fn mov32_imm(dst: Reg, imm: i32) -> Insn {
    insn(BPF_ALU | BPF_MOV | BPF_K, dst, Reg::R0, 0, imm)
}

/// `dst = (u32) src` (32-bit move: clears the upper half).
pub fn mov32(dst: Reg, src: Reg) -> Insn {
    insn(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)
}

/// `dst = *(size *)(src + off)`.
pub fn load(size: Size, dst: Reg, src: Reg, off: i16) -> Insn {
    insn(BPF_LDX | BPF_MEM | size.bits(), dst, src, off, 0)
}

/// `*(size *)(dst + off) = src`.
pub fn store(size: Size, dst: Reg, off: i16, src: Reg) -> Insn {
    insn(BPF_STX | BPF_MEM | size.bits(), dst, src, off, 0)
}

/// `*(size *)(dst + off) = imm`.
pub fn store_imm(size: Size, dst: Reg, off: i16, imm: i32) -> Insn {
    insn(BPF_ST | BPF_MEM | size.bits(), dst, Reg::R0, off, imm)
}

/// `lock *(size *)(dst + off) += src` (W or DW).
pub fn atomic_add(size: Size, dst: Reg, off: i16, src: Reg) -> Insn {
    insn(
        BPF_STX | BPF_ATOMIC | size.bits(),
        dst,
        src,
        off,
        i32::from(BPF_ADD),
    )
}

/// `src = atomic_fetch_add((size *)(dst + off), src)`: adds and returns the
/// old value in `src` (W or DW; Linux 5.12+).
pub fn atomic_fetch_add(size: Size, dst: Reg, off: i16, src: Reg) -> Insn {
    insn(
        BPF_STX | BPF_ATOMIC | size.bits(),
        dst,
        src,
        off,
        i32::from(BPF_ADD) | BPF_FETCH,
    )
}

/// `if dst <cond> imm goto +off` (off counts from the next instruction).
pub fn jump_imm(cond: Cond, dst: Reg, imm: i32, off: i16) -> Insn {
    insn(BPF_JMP | cond.bits() | BPF_K, dst, Reg::R0, off, imm)
}

/// `if dst <cond> src goto +off`.
pub fn jump(cond: Cond, dst: Reg, src: Reg, off: i16) -> Insn {
    insn(BPF_JMP | cond.bits() | BPF_X, dst, src, off, 0)
}

/// `goto +off`.
pub fn ja(off: i16) -> Insn {
    insn(BPF_JMP | BPF_JA, Reg::R0, Reg::R0, off, 0)
}

/// Calls helper `id` (arguments in r1-r5, result in r0).
pub fn call(id: i32) -> Insn {
    insn(BPF_JMP | BPF_CALL, Reg::R0, Reg::R0, 0, id)
}

pub fn exit() -> Insn {
    insn(BPF_JMP | BPF_EXIT, Reg::R0, Reg::R0, 0, 0)
}

/// `dst = imm` (a 64-bit immediate: two instruction slots).
pub fn mov64_imm(dst: Reg, imm: u64) -> [Insn; 2] {
    [
        insn(
            BPF_LD | BPF_DW | BPF_IMM,
            dst,
            Reg::R0,
            0,
            imm as u32 as i32,
        ),
        insn(0, Reg::R0, Reg::R0, 0, (imm >> 32) as u32 as i32),
    ]
}

/// `dst = map` by file descriptor: a 64-bit immediate load, two
/// instruction slots, that the verifier turns into the map's address.
pub fn load_map_fd(dst: Reg, fd: i32) -> [Insn; 2] {
    [
        insn(
            BPF_LD | BPF_DW | BPF_IMM,
            dst,
            reg(BPF_PSEUDO_MAP_FD),
            0,
            fd,
        ),
        insn(0, Reg::R0, Reg::R0, 0, 0),
    ]
}

/// `dst = &value[off]` of the first element of an array map, by the map's
/// fd: the verifier resolves it to the address (no lookup call, never
/// NULL).
pub fn load_map_value(dst: Reg, fd: i32, off: i32) -> [Insn; 2] {
    [
        insn(
            BPF_LD | BPF_DW | BPF_IMM,
            dst,
            reg(BPF_PSEUDO_MAP_VALUE),
            0,
            fd,
        ),
        insn(0, Reg::R0, Reg::R0, 0, off),
    ]
}

/// A program under construction whose jumps name labels instead of
/// offsets: [`Asm::finish`] turns each into the offset from the next
/// instruction, so editing the program cannot leave a jump one off.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    /// (instruction index, label) of each jump to patch.
    jumps: Vec<(usize, &'static str)>,
    labels: Vec<(&'static str, usize)>,
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    /// Appends instructions.
    pub fn push(&mut self, insns: impl IntoIterator<Item = Insn>) -> &mut Asm {
        self.insns.extend(insns);
        self
    }

    /// Appends a jump (its `off` is replaced) to `label`.
    pub fn jump_to(&mut self, jump: Insn, label: &'static str) -> &mut Asm {
        self.jumps.push((self.insns.len(), label));
        self.insns.push(jump);
        self
    }

    /// The next instruction is `label`.
    pub fn label(&mut self, label: &'static str) -> &mut Asm {
        assert!(
            self.labels.iter().all(|(l, _)| *l != label),
            "label {label} defined twice"
        );
        self.labels.push((label, self.insns.len()));
        self
    }

    /// The instructions, jumps resolved. Panics on a label that is not
    /// defined: a bug in the program text, found by its unit test.
    pub fn finish(mut self) -> Vec<Insn> {
        for &(at, label) in &self.jumps {
            let target = self
                .labels
                .iter()
                .find(|(l, _)| *l == label)
                .unwrap_or_else(|| panic!("jump to undefined label {label}"))
                .1;
            let off = target as i64 - (at as i64 + 1);
            self.insns[at].off = i16::try_from(off).expect("jump too far");
        }
        self.insns
    }
}

fn reg(n: u8) -> Reg {
    match n {
        0 => Reg::R0,
        1 => Reg::R1,
        2 => Reg::R2,
        3 => Reg::R3,
        4 => Reg::R4,
        5 => Reg::R5,
        6 => Reg::R6,
        7 => Reg::R7,
        8 => Reg::R8,
        9 => Reg::R9,
        _ => Reg::R10,
    }
}

/// Helper function ids (<linux/bpf.h>, `enum bpf_func_id`).
pub mod helper {
    pub const MAP_LOOKUP_ELEM: i32 = 1;
    /// bpf_map_update_elem(map, key, value, flags): 0, or a negative
    /// errno (-E2BIG: a hash map is full; -EEXIST: BPF_NOEXIST and the
    /// key is there).
    pub const MAP_UPDATE_ELEM: i32 = 2;
    /// bpf_get_current_task_btf(): the current task, a typed pointer
    /// (Linux 5.11+; tracing programs).
    pub const GET_CURRENT_TASK_BTF: i32 = 158;
    pub const KTIME_GET_NS: i32 = 5;
    /// bpf_get_smp_processor_id(): the cpu the program runs on.
    pub const GET_SMP_PROCESSOR_ID: i32 = 8;
    /// bpf_get_current_pid_tgid(): tgid << 32 | pid (the thread's id).
    #[allow(dead_code)] // for the kernel probes
    pub const GET_CURRENT_PID_TGID: i32 = 14;
    /// bpf_get_current_comm(buf, size): the current task's name.
    #[allow(dead_code)] // for the kernel probes
    pub const GET_CURRENT_COMM: i32 = 16;
    pub const PERF_EVENT_OUTPUT: i32 = 25;
    pub const GET_NUMA_NODE_ID: i32 = 42;
    /// bpf_ringbuf_output(map, data, size, flags) (Linux 5.8+).
    pub const RINGBUF_OUTPUT: i32 = 130;
    /// bpf_xdp_get_buff_len(ctx): the frame's length, fragments included
    /// (Linux 5.18+).
    pub const XDP_GET_BUFF_LEN: i32 = 188;
    /// bpf_probe_read_kernel(dst, size, ptr): copies kernel memory, zeros
    /// on a fault (Linux 5.5+).
    pub const PROBE_READ_KERNEL: i32 = 113;
}

/// Offsets in `struct xdp_md`, the context of XDP programs.
pub mod xdp_md {
    pub const INGRESS_IFINDEX: i16 = 12;
    pub const RX_QUEUE_INDEX: i16 = 16;
}

/// Offsets in `struct __sk_buff`, the context of socket filter programs
/// (the kernel rewrites these loads into loads from the real sk_buff).
pub mod skb {
    pub const PKT_TYPE: i16 = 4;
    pub const QUEUE_MAPPING: i16 = 12;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_the_kernel_uapi() {
        // r0 = *(u32 *)(r1 + 12): BPF_LDX|BPF_MEM|BPF_W = 0x61, dst 0, src 1.
        let i = load(Size::W, Reg::R0, Reg::R1, skb::QUEUE_MAPPING);
        assert_eq!((i.code, i.regs, i.off, i.imm), (0x61, 0x10, 12, 0));
        assert_eq!(exit().code, 0x95);
        assert_eq!(call(42).code, 0x85);
        assert_eq!(mov_imm(Reg::R0, 7).code, 0xb7);
        assert_eq!(jump_imm(Cond::Ge, Reg::R0, 4, 1).code, 0x35);
        assert_eq!(jump_imm(Cond::Lt, Reg::R9, 4, 1).code, 0xa5);
        let [a, b] = load_map_fd(Reg::R1, 9);
        assert_eq!((a.code, a.regs, a.imm, b.code), (0x18, 0x11, 9, 0));
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        // lock *(u64 *)(r7 + 64) += r2, fetching: 0xdb, imm BPF_ADD|BPF_FETCH.
        let i = atomic_fetch_add(Size::DW, Reg::R7, 64, Reg::R2);
        assert_eq!((i.code, i.regs, i.off, i.imm), (0xdb, 0x27, 64, 1));
        assert_eq!(atomic_add(Size::DW, Reg::R7, 0, Reg::R1).imm, 0);
        let [a, b] = load_map_value(Reg::R7, 5, 8);
        assert_eq!((a.regs, a.imm, b.imm), (0x27, 5, 8));
        let i = mov32_imm(Reg::R3, -1);
        assert_eq!((i.code, i.imm), (0xb4, -1));
        // BPF_ALU64|BPF_K with BPF_RSH 0x77, BPF_AND 0x57, BPF_OR 0x47.
        assert_eq!(rsh_imm(Reg::R1, 4).code, 0x77);
        assert_eq!(and_imm(Reg::R1, 0x1f).code, 0x57);
        assert_eq!(or_imm(Reg::R1, 0x80).code, 0x47);
    }

    #[test]
    fn asm_resolves_labels_from_the_next_instruction() {
        let mut a = Asm::new();
        a.jump_to(jump_imm(Cond::Eq, Reg::R1, 0, 0), "out")
            .push(load_map_fd(Reg::R1, 3))
            .jump_to(ja(0), "out")
            .label("back")
            .push([mov_imm(Reg::R0, 1)])
            .label("out")
            .jump_to(ja(0), "back")
            .push([exit()]);
        let p = a.finish();
        assert_eq!(p[0].off, 4); // over the two-slot load, the ja, the mov
        assert_eq!(p[3].off, 1);
        assert_eq!(p[5].off, -2);
    }
}
