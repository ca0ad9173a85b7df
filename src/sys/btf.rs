//! A reader of the kernel's BTF (BPF Type Format): the type information
//! the kernel publishes about itself at /sys/kernel/btf/vmlinux.
//!
//! The probes ([`crate::sys::tracing`], [`crate::source::probes::drops`]) read kernel
//! structures (`sk_buff`, `net_device`) and tracepoint arguments whose
//! layout changes between kernel versions and configurations: every
//! offset, argument position and enum value they use comes from here, read
//! from the running kernel, never from a constant in our code.
//!
//! Raw BTF (<linux/btf.h>, Documentation/bpf/btf.rst) is a header, a type
//! section and a string section. Types are numbered from 1 in the order
//! they appear (0 is `void`); each is a 12-byte `struct btf_type` (name
//! offset, info word with kind, vlen and kind_flag, then size or type)
//! followed by kind-specific data. Only what the probes need is
//! interpreted; the rest is skipped by its length.

// Groundwork: the kernel's BTF (read by the kernel probes, which no option runs yet).
#![allow(dead_code)]

use std::fmt;

/// Where the kernel publishes its BTF (Linux 5.5+, CONFIG_DEBUG_INFO_BTF).
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
/// The header's fixed part: magic, version, flags, hdr_len, then the
/// offsets and lengths of the type and string sections.
const HEADER_LEN: usize = 24;
const TYPE_LEN: usize = 12;

/// Type kinds (BTF_KIND_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int = 1,
    Ptr = 2,
    Array = 3,
    Struct = 4,
    Union = 5,
    Enum = 6,
    Fwd = 7,
    Typedef = 8,
    Volatile = 9,
    Const = 10,
    Restrict = 11,
    Func = 12,
    FuncProto = 13,
    Var = 14,
    Datasec = 15,
    Float = 16,
    DeclTag = 17,
    TypeTag = 18,
    Enum64 = 19,
}

impl Kind {
    fn from_raw(k: u32) -> Option<Kind> {
        use Kind::*;
        Some(match k {
            1 => Int,
            2 => Ptr,
            3 => Array,
            4 => Struct,
            5 => Union,
            6 => Enum,
            7 => Fwd,
            8 => Typedef,
            9 => Volatile,
            10 => Const,
            11 => Restrict,
            12 => Func,
            13 => FuncProto,
            14 => Var,
            15 => Datasec,
            16 => Float,
            17 => DeclTag,
            18 => TypeTag,
            19 => Enum64,
            _ => return None,
        })
    }

    /// Bytes of kind-specific data after the btf_type, for `vlen` entries.
    fn extra_len(self, vlen: usize) -> usize {
        use Kind::*;
        match self {
            Int | Var | DeclTag => 4,
            Array => 12,
            Struct | Union | Enum64 | Datasec => 12 * vlen,
            Enum | FuncProto => 8 * vlen,
            Ptr | Fwd | Typedef | Volatile | Const | Restrict | Func | Float | TypeTag => 0,
        }
    }

    /// How C spells the kind before a name (`struct sk_buff`).
    fn c_word(self) -> &'static str {
        match self {
            Kind::Struct => "struct ",
            Kind::Union => "union ",
            Kind::Enum | Kind::Enum64 => "enum ",
            _ => "",
        }
    }
}

/// What went wrong reading BTF or finding something in it.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("this kernel has no BTF ({VMLINUX}): {0}")]
    NoKernelBtf(crate::error::Why),
    #[error("malformed BTF: {0}")]
    Malformed(String),
    /// Something the probes need is not in the kernel's types.
    #[error("the kernel's BTF has no {0}")]
    Missing(String),
    /// A member that is a bitfield: it has no byte offset to load from.
    #[error("{0} is a bitfield; only whole members can be read")]
    Bitfield(String),
    /// A path that goes through something other than an embedded struct
    /// or union (a pointer must be followed by a load, not an offset).
    #[error("{path}: {what} is not a struct or union")]
    NotComposite { path: String, what: String },
}

/// One type, as stored.
#[derive(Clone, Copy, Debug)]
pub struct Type<'a> {
    pub kind: Kind,
    /// Empty for anonymous types.
    pub name: &'a str,
    kind_flag: bool,
    vlen: usize,
    /// `size` for ints, structs, unions, enums, floats, datasecs; the
    /// referenced type for the others.
    size_or_type: u32,
    extra: &'a [u8],
}

impl Type<'_> {
    /// The type this one refers to (pointer target, typedef's type,
    /// function's prototype, prototype's return type ...).
    pub fn target(&self) -> u32 {
        self.size_or_type
    }

    /// The size in bytes of an int, struct, union, enum or float.
    pub fn size(&self) -> u32 {
        self.size_or_type
    }
}

/// A struct member found by [`Btf::member`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Bytes from the start of the outermost struct.
    pub offset: u32,
    /// The member's type (modifiers not skipped).
    pub type_id: u32,
    /// Its size in bytes (after typedefs and modifiers), 8 for pointers.
    pub size: u32,
}

/// A function or tracepoint parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// Empty where BTF keeps no name (tracepoint prototypes have none).
    pub name: String,
    pub type_id: u32,
}

/// The kernel's (or any) BTF, parsed enough to look types up.
pub struct Btf {
    data: Vec<u8>,
    /// Byte offset in `data` of the string section and its length.
    strings: (usize, usize),
    /// Byte offset in `data` of each type: `types[id - 1]`.
    types: Vec<usize>,
}

impl fmt::Debug for Btf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Btf({} types)", self.types.len())
    }
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    let b = &data[at..at + 4];
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

impl Btf {
    /// The running kernel's BTF.
    pub fn kernel() -> Result<Btf, BtfError> {
        let data = std::fs::read(VMLINUX).map_err(|e| BtfError::NoKernelBtf(e.into()))?;
        Btf::parse(data)
    }

    /// Parses raw BTF in this machine's byte order (the kernel's is).
    pub fn parse(data: Vec<u8>) -> Result<Btf, BtfError> {
        let bad = |what: &str| Err(BtfError::Malformed(what.to_string()));
        if data.len() < HEADER_LEN {
            return bad("shorter than its header");
        }
        let magic = u16::from_ne_bytes([data[0], data[1]]);
        if magic == MAGIC.swap_bytes() {
            return bad("in the other byte order");
        }
        if magic != MAGIC {
            return bad("bad magic");
        }
        let hdr_len = u32_at(&data, 4) as usize;
        let section = |off_at: usize, len_at: usize| {
            let off = hdr_len.checked_add(u32_at(&data, off_at) as usize)?;
            let len = u32_at(&data, len_at) as usize;
            (off.checked_add(len)? <= data.len()).then_some((off, len))
        };
        if hdr_len < HEADER_LEN || hdr_len > data.len() {
            return bad("bad header length");
        }
        let Some((type_off, type_len)) = section(8, 12) else {
            return bad("type section beyond the data");
        };
        let Some(strings) = section(16, 20) else {
            return bad("string section beyond the data");
        };
        if strings.1 == 0 || data[strings.0] != 0 || data[strings.0 + strings.1 - 1] != 0 {
            return bad("string section does not start and end with a NUL");
        }
        let mut types = Vec::new();
        let (mut at, end) = (type_off, type_off + type_len);
        while at < end {
            if end - at < TYPE_LEN {
                return bad("truncated type");
            }
            let info = u32_at(&data, at + 4);
            let Some(kind) = Kind::from_raw((info >> 24) & 0x1f) else {
                return bad(&format!(
                    "unknown kind {} (type {})",
                    (info >> 24) & 0x1f,
                    types.len() + 1
                ));
            };
            let next = at + TYPE_LEN + kind.extra_len((info & 0xffff) as usize);
            if next > end {
                return bad("truncated type");
            }
            types.push(at);
            at = next;
        }
        Ok(Btf {
            data,
            strings,
            types,
        })
    }

    /// How many types there are (ids 1..=len).
    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    fn string(&self, off: u32) -> &str {
        let (start, len) = self.strings;
        let off = off as usize;
        if off >= len {
            return "";
        }
        let s = &self.data[start + off..start + len];
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    /// Type `id` (None for 0, `void`, and ids beyond the last).
    pub fn get(&self, id: u32) -> Option<Type<'_>> {
        let at = *self.types.get((id as usize).checked_sub(1)?)?;
        let info = u32_at(&self.data, at + 4);
        let kind = Kind::from_raw((info >> 24) & 0x1f)?;
        let vlen = (info & 0xffff) as usize;
        let extra = at + TYPE_LEN;
        Some(Type {
            kind,
            name: self.string(u32_at(&self.data, at)),
            kind_flag: info >> 31 != 0,
            vlen,
            size_or_type: u32_at(&self.data, at + 8),
            extra: &self.data[extra..extra + kind.extra_len(vlen)],
        })
    }

    /// The id of the first type of `kind` named `name`. An enum is found
    /// as [`Kind::Enum`] or [`Kind::Enum64`], whichever the kernel has.
    pub fn find(&self, kind: Kind, name: &str) -> Option<u32> {
        let enum_like = |k: Kind| matches!(k, Kind::Enum | Kind::Enum64);
        (1..=self.types.len() as u32).find(|&id| {
            self.get(id).is_some_and(|t| {
                (t.kind == kind || enum_like(t.kind) && enum_like(kind)) && t.name == name
            })
        })
    }

    /// [`Btf::find`], or an error naming what is missing.
    pub fn require(&self, kind: Kind, name: &str) -> Result<u32, BtfError> {
        self.find(kind, name)
            .ok_or_else(|| BtfError::Missing(format!("{}{name}", kind_name(kind))))
    }

    /// Follows typedefs and const/volatile/restrict/type tags to the type
    /// that has a layout (0 stays 0, `void`).
    pub fn skip_modifiers(&self, mut id: u32) -> u32 {
        // A chain longer than the type count is a loop in a broken blob.
        for _ in 0..=self.types.len() {
            match self.get(id) {
                Some(t) if is_modifier(t.kind) => id = t.target(),
                _ => return id,
            }
        }
        0
    }

    /// The size in bytes of type `id` after modifiers, for what has one
    /// (pointers: 8 on the 64-bit kernels the probes run on).
    pub fn size_of(&self, id: u32) -> Option<u32> {
        let t = self.get(self.skip_modifiers(id))?;
        match t.kind {
            Kind::Int | Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64 | Kind::Float => {
                Some(t.size())
            }
            Kind::Ptr => Some(std::mem::size_of::<usize>() as u32),
            Kind::Array => {
                let elem = u32_at(t.extra, 0);
                let n = u32_at(t.extra, 8);
                self.size_of(elem)?.checked_mul(n)
            }
            _ => None,
        }
    }

    /// The C spelling of type `id` (`struct sk_buff *`, `enum
    /// skb_drop_reason`, `void *`), for messages and tests.
    pub fn type_name(&self, id: u32) -> String {
        let Some(t) = self.get(id) else {
            return "void".into();
        };
        match t.kind {
            Kind::Ptr => {
                let inner = self.type_name(t.target());
                if inner.ends_with('*') {
                    format!("{inner}*")
                } else {
                    format!("{inner} *")
                }
            }
            Kind::Const => format!("const {}", self.type_name(t.target())),
            Kind::Volatile => format!("volatile {}", self.type_name(t.target())),
            Kind::Restrict | Kind::TypeTag => self.type_name(t.target()),
            Kind::FuncProto => "(function)".into(),
            Kind::Array => format!(
                "{}[{}]",
                self.type_name(u32_at(t.extra, 0)),
                u32_at(t.extra, 8)
            ),
            _ if t.name.is_empty() => format!("{}(anon)", t.kind.c_word()),
            _ => format!("{}{}", t.kind.c_word(), t.name),
        }
    }

    /// The member at `path` (`dev`, `nd_net.net`, `ns.inum`) of struct
    /// (or union) `outer`: members of anonymous structs and unions are
    /// found as C finds them, and each dot goes into an embedded struct.
    /// Bitfields are refused: they have no byte offset to load from.
    pub fn member(&self, outer: &str, path: &str) -> Result<Member, BtfError> {
        let full = format!("{outer}.{path}");
        let mut id = self
            .find(Kind::Struct, outer)
            .or_else(|| self.find(Kind::Union, outer))
            .ok_or_else(|| BtfError::Missing(format!("struct {outer}")))?;
        let names: Vec<&str> = path.split('.').collect();
        let (mut offset_bits, mut member_type) = (0u64, 0);
        for (i, name) in names.iter().enumerate() {
            let (bits, ty) = self.find_member(id, name, &full)?.ok_or_else(|| {
                BtfError::Missing(format!("member {name} in {}", self.type_name(id)))
            })?;
            offset_bits += bits;
            member_type = ty;
            if i + 1 < names.len() {
                id = self.skip_modifiers(ty);
                if !self.is_composite(id) {
                    return Err(BtfError::NotComposite {
                        what: format!("{outer}.{} ({})", names[..=i].join("."), self.type_name(ty)),
                        path: full,
                    });
                }
            }
        }
        if offset_bits % 8 != 0 {
            return Err(BtfError::Bitfield(full));
        }
        Ok(Member {
            offset: (offset_bits / 8) as u32,
            type_id: member_type,
            size: self
                .size_of(member_type)
                .ok_or_else(|| BtfError::Malformed(format!("{full} has no size")))?,
        })
    }

    fn is_composite(&self, id: u32) -> bool {
        self.get(id)
            .is_some_and(|t| matches!(t.kind, Kind::Struct | Kind::Union))
    }

    /// Member `name` of composite `id`, searching anonymous members depth
    /// first: (bit offset, type). `full` names the path in errors.
    fn find_member(&self, id: u32, name: &str, full: &str) -> Result<Option<(u64, u32)>, BtfError> {
        let Some(t) = self.get(self.skip_modifiers(id)) else {
            return Ok(None);
        };
        if !matches!(t.kind, Kind::Struct | Kind::Union) {
            return Ok(None);
        }
        for i in 0..t.vlen {
            let m = &t.extra[i * 12..i * 12 + 12];
            let (m_name, m_type, m_off) = (self.string(u32_at(m, 0)), u32_at(m, 4), u32_at(m, 8));
            // With kind_flag, the offset word is bitfield size << 24 | bit
            // offset; without, it is the bit offset and a bitfield shows
            // as an int type narrower than its storage.
            let (bits, bitfield_size) = if t.kind_flag {
                (m_off & 0x00ff_ffff, m_off >> 24)
            } else {
                (m_off, self.int_bitfield_bits(m_type))
            };
            if m_name == name {
                if bitfield_size != 0 {
                    return Err(BtfError::Bitfield(full.to_string()));
                }
                return Ok(Some((u64::from(bits), m_type)));
            }
            if m_name.is_empty() && self.is_composite(self.skip_modifiers(m_type)) {
                if let Some((inner, ty)) = self.find_member(m_type, name, full)? {
                    return Ok(Some((u64::from(bits) + inner, ty)));
                }
            }
        }
        Ok(None)
    }

    /// For a member of int type in a struct without kind_flag: its bit
    /// width when that is not the whole int (a bitfield), else 0.
    fn int_bitfield_bits(&self, id: u32) -> u32 {
        match self.get(self.skip_modifiers(id)) {
            Some(t) if t.kind == Kind::Int => {
                let enc = u32_at(t.extra, 0);
                let (bits, offset) = (enc & 0xff, (enc >> 16) & 0xff);
                if offset != 0 || bits != t.size() * 8 {
                    bits
                } else {
                    0
                }
            }
            _ => 0,
        }
    }

    /// The (name, value) pairs of enum `name` (enum or enum64), in the
    /// kernel's order. Values are as a u64 holds them (signed enums sign
    /// extended).
    pub fn enum_values(&self, name: &str) -> Result<Vec<(String, u64)>, BtfError> {
        let id = self.require(Kind::Enum, name)?;
        let t = self.get(id).expect("found type");
        let values = (0..t.vlen).map(|i| match t.kind {
            Kind::Enum => {
                let e = &t.extra[i * 8..i * 8 + 8];
                let v = u32_at(e, 4);
                let v = if t.kind_flag {
                    v as i32 as i64 as u64
                } else {
                    u64::from(v)
                };
                (self.string(u32_at(e, 0)).to_string(), v)
            }
            _ => {
                let e = &t.extra[i * 12..i * 12 + 12];
                let v = u64::from(u32_at(e, 4)) | u64::from(u32_at(e, 8)) << 32;
                (self.string(u32_at(e, 0)).to_string(), v)
            }
        });
        Ok(values.collect())
    }

    /// The parameters of function prototype `id`.
    pub fn proto_params(&self, id: u32) -> Option<Vec<Param>> {
        let t = self.get(self.skip_modifiers(id))?;
        (t.kind == Kind::FuncProto).then(|| {
            (0..t.vlen)
                .map(|i| {
                    let p = &t.extra[i * 8..i * 8 + 8];
                    Param {
                        name: self.string(u32_at(p, 0)).to_string(),
                        type_id: u32_at(p, 4),
                    }
                })
                .collect()
        })
    }

    /// The parameters of kernel function `func` (what an fentry/fexit
    /// program's context holds, one u64 each).
    pub fn func_params(&self, func: &str) -> Result<Vec<Param>, BtfError> {
        let id = self.require(Kind::Func, func)?;
        let proto = self.get(id).expect("found type").target();
        self.proto_params(proto)
            .ok_or_else(|| BtfError::Malformed(format!("function {func} has no prototype")))
    }

    /// The id of the typedef `btf_trace_<tp>`: what a BTF-typed raw
    /// tracepoint program (`tp_btf`) names as its attach_btf_id.
    pub fn raw_tp_typedef(&self, tp: &str) -> Result<u32, BtfError> {
        self.find(Kind::Typedef, &format!("btf_trace_{tp}"))
            .ok_or_else(|| BtfError::Missing(format!("tracepoint {tp} (typedef btf_trace_{tp})")))
    }

    /// The arguments a raw tracepoint program sees for tracepoint `tp`
    /// (u64 each in its context, in this order): the TP_PROTO arguments,
    /// read from the typedef `btf_trace_<tp>`, a pointer to a function
    /// whose first parameter (the tracepoint's private data) the program
    /// does not get.
    pub fn raw_tp_params(&self, tp: &str) -> Result<Vec<Param>, BtfError> {
        let id = self.raw_tp_typedef(tp)?;
        let bad = || BtfError::Malformed(format!("btf_trace_{tp} is not a function pointer"));
        let ptr = self.get(self.skip_modifiers(id)).ok_or_else(bad)?;
        if ptr.kind != Kind::Ptr {
            return Err(bad());
        }
        let mut params = self.proto_params(ptr.target()).ok_or_else(bad)?;
        if params.is_empty() {
            return Err(bad());
        }
        params.remove(0);
        Ok(params)
    }

    /// The position of the first parameter whose type (modifiers skipped
    /// on the pointer's target too) is `want`, spelled as
    /// [`Btf::type_name`] spells it without qualifiers (`struct sk_buff
    /// *`, `enum skb_drop_reason`).
    pub fn param_position(&self, params: &[Param], want: &str) -> Option<usize> {
        params
            .iter()
            .position(|p| self.bare_type_name(p.type_id) == want)
    }

    /// [`Btf::type_name`] without const/volatile and typedefs, so a
    /// `const struct sk_buff *` matches `struct sk_buff *`.
    pub fn bare_type_name(&self, id: u32) -> String {
        let id = self.skip_modifiers(id);
        match self.get(id) {
            Some(t) if t.kind == Kind::Ptr => {
                let inner = self.bare_type_name(t.target());
                if inner.ends_with('*') {
                    format!("{inner}*")
                } else {
                    format!("{inner} *")
                }
            }
            _ => self.type_name(id),
        }
    }
}

fn is_modifier(k: Kind) -> bool {
    matches!(
        k,
        Kind::Typedef | Kind::Const | Kind::Volatile | Kind::Restrict | Kind::TypeTag
    )
}

/// How an error names a kind (`struct `, `enum `, `function `).
fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Struct => "struct ",
        Kind::Union => "union ",
        Kind::Enum | Kind::Enum64 => "enum ",
        Kind::Typedef => "typedef ",
        Kind::Func => "function ",
        _ => "",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds raw BTF: strings interned, types appended as raw words.
    #[derive(Default)]
    pub(crate) struct Blob {
        strings: Vec<u8>,
        types: Vec<u8>,
        count: u32,
    }

    impl Blob {
        pub(crate) fn new() -> Blob {
            Blob {
                strings: vec![0],
                ..Blob::default()
            }
        }

        pub(crate) fn s(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            off
        }

        /// Appends a type; returns its id.
        pub(crate) fn ty(
            &mut self,
            kind: Kind,
            name: &str,
            flag: bool,
            vlen: u32,
            st: u32,
            extra: &[u32],
        ) -> u32 {
            let n = self.s(name);
            let info = (kind as u32) << 24 | vlen | u32::from(flag) << 31;
            for w in [n, info, st].iter().chain(extra) {
                self.types.extend_from_slice(&w.to_ne_bytes());
            }
            self.count += 1;
            self.count
        }

        pub(crate) fn int(&mut self, name: &str, bytes: u32) -> u32 {
            self.ty(Kind::Int, name, false, 0, bytes, &[bytes * 8])
        }

        /// A struct (or union) from (name, type, offset word).
        pub(crate) fn comp(
            &mut self,
            kind: Kind,
            name: &str,
            flag: bool,
            size: u32,
            m: &[(&str, u32, u32)],
        ) -> u32 {
            let words: Vec<u32> = m.iter().flat_map(|&(n, t, o)| [self.s(n), t, o]).collect();
            self.ty(kind, name, flag, m.len() as u32, size, &words)
        }

        pub(crate) fn bytes(&self) -> Vec<u8> {
            let mut v = Vec::new();
            v.extend_from_slice(&MAGIC.to_ne_bytes());
            v.extend_from_slice(&[1, 0]);
            let tl = self.types.len() as u32;
            for w in [24u32, 0, tl, tl, self.strings.len() as u32] {
                v.extend_from_slice(&w.to_ne_bytes());
            }
            v.extend_from_slice(&self.types);
            v.extend_from_slice(&self.strings);
            v
        }

        pub(crate) fn parse(&self) -> Btf {
            Btf::parse(self.bytes()).unwrap()
        }
    }

    /// A miniature of sk_buff's shape: the device pointer two anonymous
    /// levels down, a bitfield, a typedef'd const member, enums.
    fn sample() -> (Blob, u32) {
        let mut b = Blob::new();
        let u32_ = b.int("unsigned int", 4); // 1
        let u8_ = b.int("unsigned char", 1); // 2
        let dev = b.comp(
            Kind::Struct,
            "net_device",
            false,
            8,
            &[("ifindex", u32_, 32)],
        ); // 3
        let dev_ptr = b.ty(Kind::Ptr, "", false, 0, dev, &[]); // 4
                                                               // union { struct net_device *dev; unsigned long dev_scratch; }
        let inner_u = b.comp(
            Kind::Union,
            "",
            false,
            8,
            &[("dev", dev_ptr, 0), ("dev_scratch", u32_, 0)],
        ); // 5
           // struct { next (u32 at 0), prev (u32 at 64), union at 128 }
        let inner_s = b.comp(
            Kind::Struct,
            "",
            false,
            24,
            &[("next", u32_, 0), ("prev", u32_, 64), ("", inner_u, 128)],
        ); // 6
        let outer_u = b.comp(
            Kind::Union,
            "",
            false,
            24,
            &[("", inner_s, 0), ("rbnode", u32_, 0)],
        ); // 7
        let cu32 = b.ty(Kind::Const, "", false, 0, u32_, &[]); // 8
        let td = b.ty(Kind::Typedef, "u32_t", false, 0, cu32, &[]); // 9
        let vol = b.ty(Kind::Volatile, "", false, 0, td, &[]); // 10
                                                               // struct with kind_flag: bitfields as size << 24 | offset.
        let skb = b.comp(
            Kind::Struct,
            "sk_buff",
            true,
            40,
            &[
                ("", outer_u, 0),
                ("len", vol, 192),
                ("cloned", u8_, 1 << 24 | 224),
                ("pkt", u8_, 232),
            ],
        ); // 11
           // struct without kind_flag: a 3-bit int type marks the bitfield.
        let bits3 = b.ty(Kind::Int, "unsigned char", false, 0, 1, &[3]); // 12
        b.comp(
            Kind::Struct,
            "old_style",
            false,
            4,
            &[("flags", bits3, 0), ("whole", u8_, 8)],
        ); // 13
        (b, skb)
    }

    #[test]
    fn members_through_anonymous_unions_and_modifiers() {
        let (b, skb) = sample();
        let btf = b.parse();
        assert_eq!(btf.find(Kind::Struct, "sk_buff"), Some(skb));
        let dev = btf.member("sk_buff", "dev").unwrap();
        assert_eq!((dev.offset, dev.size), (16, 8));
        assert_eq!(btf.type_name(dev.type_id), "struct net_device *");
        assert_eq!(btf.member("sk_buff", "rbnode").unwrap().offset, 0);
        assert_eq!(btf.member("sk_buff", "prev").unwrap().offset, 8);
        let len = btf.member("sk_buff", "len").unwrap();
        assert_eq!((len.offset, len.size), (24, 4));
        assert_eq!(btf.type_name(len.type_id), "volatile u32_t");
        assert_eq!(
            btf.get(btf.skip_modifiers(len.type_id)).unwrap().name,
            "unsigned int"
        );
        assert_eq!(btf.member("sk_buff", "pkt").unwrap().offset, 29);
        assert_eq!(btf.member("old_style", "whole").unwrap().offset, 1);
    }

    #[test]
    fn bitfields_and_bad_paths_are_refused_by_name() {
        let (b, _) = sample();
        let btf = b.parse();
        let e = btf.member("sk_buff", "cloned").unwrap_err();
        assert_eq!(
            e.to_string(),
            "sk_buff.cloned is a bitfield; only whole members can be read"
        );
        let e = btf.member("old_style", "flags").unwrap_err();
        assert!(matches!(e, BtfError::Bitfield(_)), "{e}");
        let e = btf.member("sk_buff", "dev.ifindex").unwrap_err();
        assert_eq!(
            e.to_string(),
            "sk_buff.dev.ifindex: sk_buff.dev (struct net_device *) is not a struct or union"
        );
        let e = btf.member("sk_buff", "nope").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the kernel's BTF has no member nope in struct sk_buff"
        );
        let e = btf.member("no_such", "x").unwrap_err();
        assert_eq!(e.to_string(), "the kernel's BTF has no struct no_such");
    }

    #[test]
    fn signed_enums_and_enum64() {
        let mut b = Blob::new();
        let (a, z) = (b.s("A"), b.s("Z"));
        b.ty(Kind::Enum, "e32", true, 2, 4, &[a, (-1i32) as u32, z, 7]);
        let big = b.s("BIG");
        b.ty(Kind::Enum64, "e64", false, 1, 8, &[big, 1, 0x8000_0000]);
        let btf = b.parse();
        assert_eq!(
            btf.enum_values("e32").unwrap(),
            vec![("A".into(), u64::MAX), ("Z".into(), 7)]
        );
        assert_eq!(
            btf.enum_values("e64").unwrap(),
            vec![("BIG".into(), 0x8000_0000_0000_0001)]
        );
        assert_eq!(btf.find(Kind::Enum, "e64"), Some(2));
        assert_eq!(
            btf.enum_values("e3").unwrap_err().to_string(),
            "the kernel's BTF has no enum e3"
        );
    }

    #[test]
    fn raw_tracepoint_prototypes() {
        let mut b = Blob::new();
        let skb = b.comp(Kind::Struct, "sk_buff", false, 0, &[]);
        let skb_ptr = b.ty(Kind::Ptr, "", false, 0, skb, &[]);
        let cskb = b.ty(Kind::Const, "", false, 0, skb, &[]);
        let cskb_ptr = b.ty(Kind::Ptr, "", false, 0, cskb, &[]);
        let void_ptr = b.ty(Kind::Ptr, "", false, 0, 0, &[]);
        let proto = b.ty(
            Kind::FuncProto,
            "",
            false,
            3,
            0,
            &[0, void_ptr, 0, cskb_ptr, 0, skb_ptr],
        );
        let fp = b.ty(Kind::Ptr, "", false, 0, proto, &[]);
        b.ty(Kind::Typedef, "btf_trace_t", false, 0, fp, &[]);
        let btf = b.parse();
        let params = btf.raw_tp_params("t").unwrap();
        assert_eq!(params.len(), 2);
        assert_eq!(btf.type_name(params[0].type_id), "const struct sk_buff *");
        assert_eq!(btf.param_position(&params, "struct sk_buff *"), Some(0));
        assert_eq!(btf.param_position(&params, "enum x"), None);
        assert_eq!(
            btf.raw_tp_params("u").unwrap_err().to_string(),
            "the kernel's BTF has no tracepoint u (typedef btf_trace_u)"
        );
        assert_eq!(btf.type_name(void_ptr), "void *");
    }

    #[test]
    fn malformed_blobs_are_refused() {
        let (b, _) = sample();
        let good = b.bytes();
        let err = |v: Vec<u8>| Btf::parse(v).unwrap_err().to_string();
        assert_eq!(
            err(good[..10].to_vec()),
            "malformed BTF: shorter than its header"
        );
        let mut swapped = good.clone();
        swapped.swap(0, 1);
        assert_eq!(err(swapped), "malformed BTF: in the other byte order");
        assert_eq!(
            err(good[..good.len() - 1].to_vec()),
            "malformed BTF: string section beyond the data"
        );
        let mut t = good.clone();
        t[12..16].copy_from_slice(&(u32_at(&good, 12) - 4).to_ne_bytes());
        assert_eq!(err(t), "malformed BTF: truncated type");
        let mut k = good.clone();
        k[24 + 7] = 30; // first type's kind
        assert_eq!(err(k), "malformed BTF: unknown kind 30 (type 1)");
        // A typedef loop does not hang.
        let mut b = Blob::new();
        b.ty(Kind::Typedef, "a", false, 0, 2, &[]);
        b.ty(Kind::Typedef, "b", false, 0, 1, &[]);
        assert_eq!(b.parse().skip_modifiers(1), 0);
    }

    // Against the running kernel's BTF.

    #[test]
    fn kernel_sk_buff_and_net_device() {
        let btf = Btf::kernel().unwrap();
        let dev = btf.member("sk_buff", "dev").unwrap();
        assert_eq!(btf.type_name(dev.type_id), "struct net_device *");
        assert_eq!(dev.size, 8);
        let iif = btf.member("sk_buff", "skb_iif").unwrap();
        assert_eq!(iif.size, 4);
        let ifindex = btf.member("net_device", "ifindex").unwrap();
        assert_eq!(ifindex.size, 4);
        let net = btf.member("net_device", "nd_net.net").unwrap();
        assert_eq!(btf.type_name(net.type_id), "struct net *");
        assert_eq!(
            btf.member("net_device", "nd_net").unwrap().offset,
            net.offset
        );
        let inum = btf.member("net", "ns.inum").unwrap();
        assert_eq!(inum.size, 4);
        // Bitfields in sk_buff are refused, not misread.
        assert!(matches!(
            btf.member("sk_buff", "pkt_type"),
            Err(BtfError::Bitfield(_))
        ));
        // The header offsets the flow key will be read through.
        for m in [
            "head",
            "network_header",
            "transport_header",
            "hash",
            "queue_mapping",
        ] {
            btf.member("sk_buff", m).unwrap();
        }
    }

    #[test]
    fn kernel_drop_reasons_and_kfree_skb() {
        let btf = Btf::kernel().unwrap();
        let reasons = btf.enum_values("skb_drop_reason").unwrap();
        let find = |n: &str| reasons.iter().find(|(name, _)| name == n).map(|r| r.1);
        assert!(find("SKB_DROP_REASON_NO_SOCKET").is_some());
        assert!(find("SKB_DROP_REASON_SOCKET_RCVBUFF").is_some());
        assert_eq!(find("SKB_DROP_REASON_NOT_SPECIFIED"), Some(2));
        let params = btf.raw_tp_params("kfree_skb").unwrap();
        assert_eq!(btf.param_position(&params, "struct sk_buff *"), Some(0));
        assert_eq!(btf.param_position(&params, "enum skb_drop_reason"), Some(2));
        assert_eq!(btf.type_name(params[1].type_id), "void *");
        // Receive entry tracepoints take a const skb.
        let p = btf.raw_tp_params("netif_receive_skb_entry").unwrap();
        assert_eq!(btf.param_position(&p, "struct sk_buff *"), Some(0));
        let f = btf.func_params("skb_consume_udp").unwrap();
        assert_eq!(btf.param_position(&f, "struct sk_buff *"), Some(1));
        assert_eq!(f[0].name, "sk");
        assert!(btf.find(Kind::Func, "no_such_function_here").is_none());
    }
}
