//! libpcap, loaded at run time (dlopen through libloading): its filter
//! compiler, pcap_compile on a dead handle, is all the program uses. No
//! libpcap headers or library are needed to build.

use std::ffi::{c_char, c_int, c_uint, CStr, OsStr};

/// One classic BPF instruction: (code, jt, jf, k).
pub type Insn = (u16, u8, u8, u32);

/// struct bpf_insn (pcap/bpf.h).
#[repr(C)]
#[derive(Clone, Copy)]
struct BpfInsn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// struct bpf_program (pcap/bpf.h).
#[repr(C)]
struct BpfProgram {
    bf_len: c_uint,
    bf_insns: *mut BpfInsn,
}

/// Opaque pcap_t.
#[repr(C)]
struct PcapT {
    _private: [u8; 0],
}

type OpenDeadFn = unsafe extern "C" fn(c_int, c_int) -> *mut PcapT;
type CompileFn =
    unsafe extern "C" fn(*mut PcapT, *mut BpfProgram, *const c_char, c_int, u32) -> c_int;
type GeterrFn = unsafe extern "C" fn(*mut PcapT) -> *mut c_char;
type FreecodeFn = unsafe extern "C" fn(*mut BpfProgram);
type CloseFn = unsafe extern "C" fn(*mut PcapT);

/// The libpcap functions the compiler needs.
pub struct Libpcap {
    open_dead: OpenDeadFn,
    compile: CompileFn,
    geterr: GeterrFn,
    freecode: FreecodeFn,
    close: CloseFn,
    /// Keeps the functions above mapped.
    _lib: libloading::Library,
}

impl Libpcap {
    /// Loads `name` (a soname or a path) and finds the functions.
    pub fn load(name: &OsStr) -> Result<Libpcap, libloading::Error> {
        // SAFETY: loading libpcap runs its initializers, which only set up
        // its own state; nothing else of ours runs in the library.
        let lib = unsafe { libloading::Library::new(name)? };
        // SAFETY: each type is the C prototype of the named function in
        // pcap/pcap.h (stable since libpcap 0.8, pcap_freecode since 0.6);
        // the pointers stay valid while `_lib` keeps the library mapped.
        unsafe {
            Ok(Libpcap {
                open_dead: *lib.get::<OpenDeadFn>(b"pcap_open_dead\0")?,
                compile: *lib.get::<CompileFn>(b"pcap_compile\0")?,
                geterr: *lib.get::<GeterrFn>(b"pcap_geterr\0")?,
                freecode: *lib.get::<FreecodeFn>(b"pcap_freecode\0")?,
                close: *lib.get::<CloseFn>(b"pcap_close\0")?,
                _lib: lib,
            })
        }
    }

    /// pcap_compile on a dead handle of `dlt` and `snaplen`.
    pub fn compile(&self, expr: &CStr, dlt: c_int, snaplen: u32) -> Result<Vec<Insn>, String> {
        let snaplen = c_int::try_from(snaplen).unwrap_or(c_int::MAX);
        // SAFETY: pcap_open_dead takes two ints and returns a new handle or
        // NULL.
        let p = unsafe { (self.open_dead)(dlt, snaplen) };
        if p.is_null() {
            return Err("pcap_open_dead failed (out of memory)".into());
        }
        let mut prog = BpfProgram {
            bf_len: 0,
            bf_insns: std::ptr::null_mut(),
        };
        // Optimize as tcpdump does by default (its -O turns it off); netmask
        // 0 is what tcpdump passes unless -f: `ip broadcast` then means
        // 0.0.0.0 or 255.255.255.255.
        // SAFETY: p is a live handle, prog a writable bpf_program, expr a
        // NUL-terminated string that outlives the call.
        let r = unsafe { (self.compile)(p, &mut prog, expr.as_ptr(), 1, 0) };
        let out = if r < 0 {
            // SAFETY: pcap_geterr returns the handle's NUL-terminated error
            // buffer, valid until the handle is closed (below).
            let msg = unsafe { CStr::from_ptr((self.geterr)(p)) };
            Err(msg.to_string_lossy().into_owned())
        } else {
            let insns = if prog.bf_insns.is_null() {
                &[][..]
            } else {
                // SAFETY: on success bf_insns points to bf_len instructions
                // owned by prog until pcap_freecode.
                unsafe { std::slice::from_raw_parts(prog.bf_insns, prog.bf_len as usize) }
            };
            let v = insns.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect();
            // SAFETY: prog was filled by a successful pcap_compile.
            unsafe { (self.freecode)(&mut prog) };
            Ok(v)
        };
        // SAFETY: p came from pcap_open_dead and is not used after this.
        unsafe { (self.close)(p) };
        out
    }
}
