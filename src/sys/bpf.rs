//! The bpf(2) system call: loading the project's eBPF programs (see
//! [`crate::sys::ebpf`] for how they are written), creating and reading their
//! maps, and attaching them through BPF links. This module and
//! [`crate::sys::tracing`] (the commands of tracing programs, through
//! `sys_bpf`) are the only ones that call bpf(2); each unsafe block
//! states what the kernel expects.

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::cpuset::CpuSet;
use crate::sys::ebpf::Insn;

const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_int = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_MAP_GET_NEXT_KEY: libc::c_int = 4;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_LINK_CREATE: libc::c_int = 28;

/// `expected_attach_type` / link `attach_type` of an XDP program on a
/// device (`enum bpf_attach_type`).
pub const BPF_XDP: u32 = 37;
/// prog_flags: the XDP program copes with multi-buffer frames (it reads
/// lengths and copies bytes only through helpers that see every
/// fragment), so it may run on devices with a large MTU (Linux 5.18+).
pub const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;

/// Program types (`enum bpf_prog_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ProgType {
    /// Socket filters; also what PACKET_FANOUT_EBPF runs to pick a member.
    SocketFilter = 1,
    Xdp = 6,
    /// Raw tracepoints by name: the context is the tracepoint's arguments
    /// as u64s, pointers untyped (read through bpf_probe_read_kernel).
    RawTracepoint = 17,
    /// BTF-typed tracing (tp_btf, fentry, fexit): the verifier knows each
    /// argument's kernel type, so the program loads through pointers.
    Tracing = 26,
}

/// What BPF_PROG_LOAD takes besides the instructions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    pub expected_attach_type: u32,
    pub prog_flags: u32,
    /// For tracing programs: the BTF id (in vmlinux) of what they attach
    /// to: the `btf_trace_<tracepoint>` typedef, or the kernel function.
    pub attach_btf_id: u32,
}

/// The first fields of `union bpf_attr` for BPF_PROG_LOAD. The kernel
/// accepts a shorter attr than its own and treats the rest as zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    /// attach_btf_obj_fd: 0 for vmlinux.
    attach_btf_obj_fd: u32,
}

/// Why a program did not load.
#[derive(Debug)]
pub struct LoadError {
    pub error: io::Error,
    /// The verifier's explanation, when it rejected the program.
    pub log: String,
}

impl LoadError {
    /// Whether the failure is a missing privilege: loading needs CAP_BPF
    /// (or CAP_SYS_ADMIN) unless unprivileged eBPF is allowed, which most
    /// distributions switch off (kernel.unprivileged_bpf_disabled).
    pub fn is_permission(&self) -> bool {
        matches!(self.error.raw_os_error(), Some(libc::EPERM | libc::EACCES))
    }
}

/// A loaded program; the kernel frees it when the last reference (this
/// descriptor, or an attachment) goes.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
}

impl Program {
    /// Loads `insns` as a program of `prog_type` named `name` (at most 15
    /// bytes; shown by bpftool). On failure the load is repeated with the
    /// verifier log on, so the error carries the verifier's reasons.
    pub fn load(prog_type: ProgType, name: &str, insns: &[Insn]) -> Result<Program, LoadError> {
        Program::load_with(prog_type, name, insns, LoadOptions::default())
    }

    /// [`Program::load`] with an expected attach type and flags.
    pub fn load_with(
        prog_type: ProgType,
        name: &str,
        insns: &[Insn],
        options: LoadOptions,
    ) -> Result<Program, LoadError> {
        let attempt = |log| load(prog_type, name, insns, options, log);
        match attempt(None) {
            Ok(fd) => Ok(Program { fd }),
            Err(error)
                if error.raw_os_error() == Some(libc::EACCES)
                    || error.raw_os_error() == Some(libc::EINVAL) =>
            {
                let mut log = vec![0u8; 256 * 1024];
                let again = attempt(Some(&mut log));
                let text = String::from_utf8_lossy(&log)
                    .trim_end_matches('\0')
                    .trim_end()
                    .to_string();
                match again {
                    Ok(fd) => Ok(Program { fd }),
                    Err(_) => Err(LoadError { error, log: text }),
                }
            }
            Err(error) => Err(LoadError {
                error,
                log: String::new(),
            }),
        }
    }

    /// The id the kernel gave the program (what `ip link` and bpftool
    /// show).
    pub fn id(&self) -> io::Result<u32> {
        obj_id(self.fd.as_fd())
    }
}

fn load(
    prog_type: ProgType,
    name: &str,
    insns: &[Insn],
    options: LoadOptions,
    log: Option<&mut Vec<u8>>,
) -> io::Result<OwnedFd> {
    const LICENSE: &[u8] = b"GPL\0";
    let mut attr = ProgLoadAttr {
        prog_type: prog_type as u32,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        prog_flags: options.prog_flags,
        expected_attach_type: options.expected_attach_type,
        attach_btf_id: options.attach_btf_id,
        ..ProgLoadAttr::default()
    };
    for (d, s) in attr.prog_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    if let Some(buf) = log {
        attr.log_level = 1;
        attr.log_size = buf.len() as u32;
        attr.log_buf = buf.as_mut_ptr() as u64;
    }
    // SAFETY: attr is a valid BPF_PROG_LOAD attr of the size passed; the
    // instructions, license and log buffer it points to are live for the
    // call (the kernel copies them, and writes at most log_size bytes to
    // the log).
    let fd = unsafe {
        sys_bpf(
            BPF_PROG_LOAD,
            (&mut attr as *mut ProgLoadAttr).cast(),
            mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success bpf(BPF_PROG_LOAD) returns a new descriptor that
    // nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// bpf(2).
///
/// # Safety
///
/// `attr` must point to `size` readable and writable bytes laid out as the
/// `union bpf_attr` member that `cmd` takes, and every pointer in it must
/// be valid as `cmd` requires.
pub(crate) unsafe fn sys_bpf(
    cmd: libc::c_int,
    attr: *mut libc::c_void,
    size: usize,
) -> libc::c_long {
    // SAFETY: the caller upholds bpf(2)'s requirements for cmd and attr.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size as libc::c_uint) }
}

impl AsFd for Program {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Program {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The kernel's id of a program, map or link (the second u32 of every
/// bpf_*_info: `type`, then `id`).
fn obj_id(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut info = [0u32; 4];
    obj_info(fd, &mut info)?;
    Ok(info[1])
}

/// BPF_OBJ_GET_INFO_BY_FD into `info` (a bpf_prog_info, bpf_map_info or
/// bpf_link_info prefix, as u32 words). The kernel fills at most the
/// length given and zeroes nothing beyond it.
pub(crate) fn obj_info(fd: BorrowedFd<'_>, info: &mut [u32]) -> io::Result<()> {
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: mem::size_of_val(info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: attr is the `info` member of bpf_attr; info points to
    // info_len writable bytes, live for the call.
    let r = unsafe {
        sys_bpf(
            BPF_OBJ_GET_INFO_BY_FD,
            (&mut attr as *mut InfoAttr).cast(),
            mem::size_of::<InfoAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Map types (`enum bpf_map_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MapType {
    /// A hash map, one value per key.
    Hash = 1,
    Array = 2,
    PerfEventArray = 4,
    /// A hash map whose every key has one value per possible cpu; a
    /// program's update sets its own cpu's (and zeroes the others' on
    /// insertion).
    PercpuHash = 5,
    /// One value per possible cpu for every key; a program sees its cpu's.
    PercpuArray = 6,
    RingBuf = 27,
}

/// The cpus the kernel may ever have (cpu_possible_mask, from sysfs): a
/// per-cpu map's values come one per possible cpu, in cpu order, whether
/// the cpu is online or not.
pub fn possible_cpus() -> io::Result<CpuSet> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    CpuSet::parse_list(s.trim()).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
}

/// map_flags: the array's values can be mmap()ed (Linux 5.5+).
pub const BPF_F_MMAPABLE: u32 = 1 << 10;

/// A map; the kernel frees it when the last reference (this descriptor or
/// a program using it) goes.
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

impl Map {
    /// Creates a map named `name` (at most 15 bytes; shown by bpftool).
    pub fn create(
        map_type: MapType,
        name: &str,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
    ) -> io::Result<Map> {
        let mut attr = MapCreateAttr {
            map_type: map_type as u32,
            key_size,
            value_size,
            max_entries,
            map_flags,
            ..MapCreateAttr::default()
        };
        for (d, s) in attr.map_name.iter_mut().zip(name.bytes().take(15)) {
            *d = s;
        }
        // SAFETY: attr is a valid BPF_MAP_CREATE attr of the size passed,
        // holding no pointers.
        let fd = unsafe {
            sys_bpf(
                BPF_MAP_CREATE,
                (&mut attr as *mut MapCreateAttr).cast(),
                mem::size_of::<MapCreateAttr>(),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Map {
            // SAFETY: on success BPF_MAP_CREATE returns a new descriptor
            // that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
            key_size: key_size as usize,
            value_size: value_size as usize,
        })
    }

    /// Copies the value at `key` into `value`. For per-cpu maps `value`
    /// holds one value per possible cpu, each rounded up to 8 bytes.
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> io::Result<()> {
        assert_eq!(key.len(), self.key_size, "map key size");
        assert!(value.len() >= self.value_size, "map value buffer too small");
        self.elem(BPF_MAP_LOOKUP_ELEM, key, value.as_mut_ptr(), 0)
    }

    /// Sets the value at `key` (for per-cpu maps: every cpu's, laid out
    /// as [`Map::lookup`] returns them). `flags` is BPF_ANY (0) for arrays.
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> io::Result<()> {
        assert_eq!(key.len(), self.key_size, "map key size");
        assert!(value.len() >= self.value_size, "map value too small");
        // The kernel only reads the value for an update.
        self.elem(BPF_MAP_UPDATE_ELEM, key, value.as_ptr().cast_mut(), flags)
    }

    /// The key after `key` (the first key when None) into `next`; false
    /// after the last. A walk of a map that changes meanwhile may skip or
    /// repeat keys: walk it once its programs are detached.
    pub fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> io::Result<bool> {
        assert_eq!(next.len(), self.key_size, "map key size");
        if let Some(k) = key {
            assert_eq!(k.len(), self.key_size, "map key size");
        }
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            _pad: 0,
            key: key.map_or(0, |k| k.as_ptr() as u64),
            value: next.as_mut_ptr() as u64,
            flags: 0,
        };
        // SAFETY: attr is the element member of bpf_attr (next_key in the
        // value's place); key is NULL or key_size readable bytes, next
        // key_size writable bytes (both checked above), live for the call.
        let r = unsafe {
            sys_bpf(
                BPF_MAP_GET_NEXT_KEY,
                (&mut attr as *mut MapElemAttr).cast(),
                mem::size_of::<MapElemAttr>(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOENT) => Ok(false),
                _ => Err(e),
            };
        }
        Ok(true)
    }

    fn elem(&self, cmd: libc::c_int, key: &[u8], value: *mut u8, flags: u64) -> io::Result<()> {
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            _pad: 0,
            key: key.as_ptr() as u64,
            value: value as u64,
            flags,
        };
        // SAFETY: attr is the element member of bpf_attr. key points to
        // key_size readable bytes; value to a buffer the callers checked
        // holds at least value_size bytes, or value_size rounded to 8 times
        // the possible cpus for per-cpu maps (the callers size those; the
        // assert above only guards the common prefix), live for the call;
        // the kernel writes it only for a lookup.
        let r = unsafe {
            sys_bpf(
                cmd,
                (&mut attr as *mut MapElemAttr).cast(),
                mem::size_of::<MapElemAttr>(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Maps the values of an array map created with [`BPF_F_MMAPABLE`]:
    /// `len` bytes from the first value (values are laid out at multiples
    /// of value_size rounded up to 8).
    pub fn mmap(&self, len: usize) -> io::Result<MapMemory> {
        // SAFETY: a shared read-write mapping at offset 0 of an mmapable
        // array map's fd maps its values (array_map_mmap); the kernel
        // refuses lengths beyond them. The result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(MapMemory {
            base: std::ptr::NonNull::new(p.cast()).expect("mmap returned null"),
            len,
        })
    }
}

/// The mapped values of an mmapable array map, shared with the programs
/// using the map: accessed only through atomics, since programs read and
/// write the same words concurrently.
#[derive(Debug)]
pub struct MapMemory {
    base: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone and only accessed
// through atomics: sharing or moving it between threads is sound.
unsafe impl Send for MapMemory {}
// SAFETY: as above.
unsafe impl Sync for MapMemory {}

impl MapMemory {
    /// The u32 at byte `off` (4-aligned, within the mapping).
    pub fn u32_at(&self, off: usize) -> &std::sync::atomic::AtomicU32 {
        assert!(off % 4 == 0 && off + 4 <= self.len);
        // SAFETY: in bounds and aligned (the mapping is page aligned); the
        // mapping lives as long as &self (only Drop unmaps); no Rust
        // reference other than atomics ever covers it, and eBPF programs
        // access these words as whole u32/u64 loads, stores and atomics.
        unsafe { std::sync::atomic::AtomicU32::from_ptr(self.base.as_ptr().add(off).cast()) }
    }

    /// The u64 at byte `off` (8-aligned, within the mapping).
    pub fn u64_at(&self, off: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= self.len);
        // SAFETY: as in u32_at.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(self.base.as_ptr().add(off).cast()) }
    }
}

impl Drop for MapMemory {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly the mapping made in Map::mmap; no
        // reference into it outlives a &self borrow.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

impl AsFd for Map {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Map {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An attachment of a program through a BPF link: the kernel detaches the
/// program when the last descriptor of the link closes, which happens also
/// when the process is killed (SIGKILL included), so nothing stays behind.
#[derive(Debug)]
pub struct Link {
    fd: OwnedFd,
}

impl Link {
    /// A link another bpf(2) command made (BPF_RAW_TRACEPOINT_OPEN, or
    /// BPF_LINK_CREATE for tracing programs: [`crate::sys::tracing`]).
    pub(crate) fn from_fd(fd: OwnedFd) -> Link {
        Link { fd }
    }

    /// Attaches XDP program `prog` to interface `ifindex` of the calling
    /// thread's network namespace (BPF_LINK_CREATE, Linux 5.9+); `flags`
    /// are XDP_FLAGS_SKB_MODE or XDP_FLAGS_DRV_MODE.
    pub fn xdp(prog: &Program, ifindex: u32, flags: u32) -> io::Result<Link> {
        #[repr(C)]
        struct LinkCreateAttr {
            prog_fd: u32,
            target_ifindex: u32,
            attach_type: u32,
            flags: u32,
        }
        let mut attr = LinkCreateAttr {
            prog_fd: prog.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_XDP,
            flags,
        };
        // SAFETY: attr is the link_create member of bpf_attr, holding no
        // pointers; the kernel zero-fills the rest.
        let fd = unsafe {
            sys_bpf(
                BPF_LINK_CREATE,
                (&mut attr as *mut LinkCreateAttr).cast(),
                mem::size_of::<LinkCreateAttr>(),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: on success BPF_LINK_CREATE returns a new descriptor that
        // nothing else owns.
        Ok(Link {
            fd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
        })
    }

    /// The link's id, and the id of the program it attaches (bpf_link_info:
    /// type, id, prog_id).
    pub fn ids(&self) -> io::Result<(u32, u32)> {
        let info = self.info()?;
        Ok((info[1], info[2]))
    }

    /// The interface an XDP link is attached to; 0 once the interface is
    /// gone (the kernel detaches the program then and keeps the link as a
    /// husk).
    pub fn xdp_ifindex(&self) -> io::Result<u32> {
        // bpf_link_info: type, id, prog_id, then the 8-aligned union whose
        // xdp member starts with ifindex (byte 16).
        Ok(self.info()?[4])
    }

    fn info(&self) -> io::Result<[u32; 6]> {
        let mut info = [0u32; 6];
        obj_info(self.fd.as_fd(), &mut info)?;
        Ok(info)
    }
}

impl AsFd for Link {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
