//! tcpdump filter expressions: compiled by libpcap's own compiler, then
//! rewritten into the classic BPF program the kernel runs on the capture
//! sockets.
//!
//! - [`compile`] hands the expression to `pcap_compile` on a dead handle of
//!   the capture's link type and snap length, exactly as `tcpdump -d -y
//!   LINKTYPE -s SNAPLEN` does (optimizer on, netmask 0), so an expression
//!   means what it means to tcpdump. libpcap is loaded at run time (its
//!   usual sonames, or `RXTXCPU_LIBPCAP`), so that building the program and
//!   capturing without a filter need neither libpcap nor its headers.
//! - [`read_filter_file`] reads an expression from a file as `tcpdump -F`
//!   does.
//! - [`for_kernel`] puts the direction check in front of the user's
//!   program and rewrites that program so that, run by the kernel on the
//!   socket's view of a packet, it decides what the compiled program
//!   decides on the packet as rxtxcpu writes it to the file. That differs
//!   in two places:
//!   - Ethernet: the kernel keeps a packet's outer VLAN tag out of the
//!     frame (in skb metadata); rxtxcpu writes it back at offset 12.
//!   - LINUX_SLL2: the kernel sees the frame with the device's own link
//!     header (or none: tun), not the cooked header rxtxcpu synthesizes.
//!
//!   Like libpcap's `fix_program` for its cooked socket, header fields
//!   become ancillary loads (SKF_AD_*) and payload offsets are moved; the
//!   program is copied once per view and a short prologue picks the copy
//!   that fits the packet. Every accepting return is capped at the kernel
//!   snap length.

use std::ffi::{c_int, CString, OsString};
use std::io;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use crate::options::Direction;
use crate::packet::LinkType;
use crate::sys::libpcap::Libpcap;

/// One classic BPF instruction: (code, jt, jf, k), as `tcpdump -ddd`
/// prints it and `struct sock_filter` holds it.
pub use crate::sys::libpcap::Insn;
pub use kernel::for_kernel;

mod kernel;

/// The longest program the kernel accepts (BPF_MAXINSNS, <linux/bpf_common.h>).
pub const BPF_MAXINSNS: usize = 4096;

/// Names tried, in order, when `RXTXCPU_LIBPCAP` is not set: the upstream
/// soname (Fedora, Arch, Alpine, ...), Debian's and Ubuntu's, and the
/// development symlink.
pub const LIBPCAP_NAMES: [&str; 3] = ["libpcap.so.1", "libpcap.so.0.8", "libpcap.so"];

/// Replaces [`LIBPCAP_NAMES`] with one path or soname.
pub const LIBPCAP_ENV: &str = "RXTXCPU_LIBPCAP";

/// Where libpcap comes from, for the error message.
const INSTALL_HINT: &str = "install libpcap0.8 (Debian, Ubuntu) or libpcap (Fedora, RHEL)";

// pcap/dlt.h. DLT_RAW is 12 everywhere but OpenBSD; it is what
// pcap_datalink_name_to_val("RAW") gives (tcpdump -y RAW). LINKTYPE_RAW
// (101) is only the number written in files.
const DLT_EN10MB: c_int = 1;
const DLT_RAW: c_int = 12;
const DLT_LINUX_SLL2: c_int = 276;

const SLL2_LEN: u32 = crate::packet::SLL2_LEN as u32;

/// The errors of this module. Each message is the `<what>: <why>` part of
/// the line the program prints after its name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// libpcap could not be loaded (missing, or not a libpcap).
    #[error("cannot load libpcap, which compiles filter expressions: {why}; {INSTALL_HINT}")]
    NoLibpcap { why: String },
    /// libpcap rejected the expression; `why` is its message.
    #[error("invalid filter expression '{expr}': {why}")]
    Invalid { expr: String, why: String },
    /// The program reads something the kernel cannot show it.
    #[error("filter expression cannot be run in the kernel: {why}")]
    NotInKernel { why: String },
    /// More than BPF_MAXINSNS instructions.
    #[error(
        "filter program too long for the kernel: {len} instructions (at most {BPF_MAXINSNS}); \
         simplify the expression"
    )]
    TooLong { len: usize },
}

type Result<T> = std::result::Result<T, FilterError>;

// ---------------------------------------------------------------------------
// libpcap, loaded at run time

/// The names to try: the environment override alone, or the usual list.
fn candidates(env: Option<OsString>) -> Vec<OsString> {
    match env {
        Some(v) if !v.is_empty() => vec![v],
        _ => LIBPCAP_NAMES.iter().map(OsString::from).collect(),
    }
}

/// Loads the first of `names` that is a libpcap.
fn load_first(names: &[OsString]) -> Result<Libpcap> {
    let mut whys = Vec::new();
    for name in names {
        match Libpcap::load(name) {
            Ok(lib) => return Ok(lib),
            Err(e) => whys.push(e.to_string()),
        }
    }
    Err(FilterError::NoLibpcap {
        why: whys.join("; "),
    })
}

/// The process's libpcap, loaded on first use. The Mutex serializes
/// pcap_compile, whose parser keeps global state before libpcap 1.8.
fn libpcap() -> Result<&'static Mutex<Libpcap>> {
    static LIB: OnceLock<Result<Mutex<Libpcap>>> = OnceLock::new();
    LIB.get_or_init(|| load_first(&candidates(std::env::var_os(LIBPCAP_ENV))).map(Mutex::new))
        .as_ref()
        .map_err(Clone::clone)
}

/// The DLT_ value libpcap compiles `link` for.
pub fn dlt(link: LinkType) -> i32 {
    match link {
        LinkType::Ethernet => DLT_EN10MB,
        LinkType::Raw => DLT_RAW,
        LinkType::LinuxSll2 => DLT_LINUX_SLL2,
    }
}

/// tcpdump's `-y` name of `link`.
#[cfg(test)]
pub fn dlt_name(link: LinkType) -> &'static str {
    match link {
        LinkType::Ethernet => "EN10MB",
        LinkType::Raw => "RAW",
        LinkType::LinuxSll2 => "LINUX_SLL2",
    }
}

/// Compiles `expr` for packets of `link` written with snap length
/// `snaplen`: the program `tcpdump -ddd -y LINK -s SNAPLEN EXPR` prints.
/// An empty expression accepts everything (`ret #snaplen`), as with
/// tcpdump. Host and service names in `expr` are resolved now, by libpcap.
pub fn compile(expr: &str, link: LinkType, snaplen: u32) -> Result<Vec<Insn>> {
    compile_with(libpcap()?, expr, link, snaplen)
}

fn compile_with(
    lib: &Mutex<Libpcap>,
    expr: &str,
    link: LinkType,
    snaplen: u32,
) -> Result<Vec<Insn>> {
    let invalid = |why: String| FilterError::Invalid {
        expr: expr.to_string(),
        why,
    };
    let c = CString::new(expr).map_err(|_| invalid("it contains a NUL byte".into()))?;
    // A panic while compiling cannot leave libpcap half-updated in a way a
    // later compile would notice: each call has its own handle.
    let lib = lib.lock().unwrap_or_else(|e| e.into_inner());
    lib.compile(&c, dlt(link), snaplen).map_err(invalid)
}

/// Reads a filter expression from `path` as `tcpdump -F` does: every `#`
/// up to the end of its line becomes spaces (the newline stays). The
/// result must be UTF-8 outside comments.
pub fn read_filter_file(path: &Path) -> io::Result<String> {
    let mut bytes = std::fs::read(path)?;
    let mut in_comment = false;
    for b in bytes.iter_mut() {
        match *b {
            b'\n' => in_comment = false,
            b'#' => in_comment = true,
            _ => {}
        }
        if in_comment {
            *b = b' ';
        }
    }
    String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

/// The capture's kernel filter for `source` (or, without one, the plain
/// direction filter): the expression read and compiled for `link` at the
/// file's snap length `snaplen`, behind the direction check, accepting at
/// most `kernel_snaplen` bytes. Also returns the `-v` line. Only a capture
/// with a filter loads libpcap.
pub fn capture_filter(
    source: Option<&crate::options::FilterSource>,
    link: LinkType,
    direction: Direction,
    snaplen: u32,
    kernel_snaplen: u32,
) -> std::result::Result<(crate::sys::afpacket::Filter, Option<String>), crate::error::Error> {
    use crate::error::{Error, Why};
    use crate::options::FilterSource;
    let Some(source) = source else {
        return Ok((
            crate::sys::afpacket::Filter::direction(direction, kernel_snaplen),
            None,
        ));
    };
    let expr = match source {
        FilterSource::Expression(e) => e.clone(),
        FilterSource::File(path) => {
            let e = read_filter_file(Path::new(path)).map_err(|e| {
                Error::Message(format!("error reading filter file '{path}': {}", Why(e)))
            })?;
            if e.trim().is_empty() {
                return Err(Error::Invalid(format!(
                    "filter file '{path}' holds no filter expression"
                )));
            }
            e
        }
    };
    let as_error = |e: FilterError| match e {
        FilterError::Invalid { .. } => Error::Invalid(e.to_string()),
        other => Error::Message(other.to_string()),
    };
    let user = compile(&expr, link, snaplen).map_err(as_error)?;
    let kernel = for_kernel(&user, link, direction, kernel_snaplen).map_err(as_error)?;
    let said = format!(
        "filter '{}': {} instructions compiled ({} in the kernel with the direction check)",
        expr.split_whitespace().collect::<Vec<_>>().join(" "),
        user.len(),
        kernel.len()
    );
    Ok((crate::sys::afpacket::Filter::from_insns(kernel), Some(said)))
}

#[cfg(test)]
mod tests {
    use super::kernel::*;
    use super::*;
    use std::process::{Command, Stdio};

    const SNAPLEN: u32 = 262_144;
    const LINKS: [LinkType; 3] = [LinkType::Ethernet, LinkType::Raw, LinkType::LinuxSll2];

    /// The program `tcpdump -ddd -y LINK -s SNAPLEN EXPR` prints, or
    /// libpcap's message. Without `-i` or `-r`, tcpdump's -d compiles on a
    /// dead handle (pcap_open_dead) of the -y link type: no device, no
    /// privileges, and the program rxtxcpu's compile() must reproduce.
    fn tcpdump(link: LinkType, snaplen: u32, expr: &str) -> std::result::Result<Vec<Insn>, String> {
        let out = Command::new("tcpdump")
            .args([
                "-ddd",
                "-y",
                dlt_name(link),
                "-s",
                &snaplen.to_string(),
                expr,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("tcpdump must be installed (CI installs it)");
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let line = err.lines().last().unwrap_or_default();
            return Err(line.strip_prefix("tcpdump: ").unwrap_or(line).to_string());
        }
        Ok(parse_ddd(&String::from_utf8_lossy(&out.stdout)))
    }

    fn parse_ddd(text: &str) -> Vec<Insn> {
        let mut lines = text.lines();
        let n: usize = lines.next().unwrap().trim().parse().unwrap();
        let prog: Vec<Insn> = lines
            .map(|l| {
                let v: Vec<u32> = l.split_whitespace().map(|w| w.parse().unwrap()).collect();
                (v[0] as u16, v[1] as u8, v[2] as u8, v[3])
            })
            .collect();
        assert_eq!(prog.len(), n, "{text}");
        prog
    }

    /// The table, and a few more that reach the rewrite's corners.
    const EXPRESSIONS: &[&str] = &[
        "",
        "host 192.0.2.1",
        "src host 192.0.2.1 and dst net 198.51.100.0/24",
        "net 10.0.0.0/8",
        "port 53",
        "udp port 9",
        "tcp portrange 8000-8080",
        "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0",
        "tcp[tcpflags] == tcp-syn|tcp-ack",
        "vlan",
        "vlan 10 and udp port 9",
        "vlan and vlan 20",
        "ip6",
        "ip6 and tcp dst port 443",
        "icmp",
        "icmp[icmptype] == icmp-echo",
        "icmp6",
        "len > 100",
        "greater 200 or less 60",
        "not udp",
        "not (port 22 or port 53)",
        "tcp or udp and port 53",
        "tcp and port 80 or udp and port 53",
        "host 192.0.2.1 and (port 80 or port 443)",
        "ip broadcast",
        "arp or rarp",
        "inbound",
        "outbound and ip",
        "ifindex 3",
        "ether host 02:00:00:00:00:01",
        "ether[12:4] == 0x8100000a",
        "link[8:2] == 772",
        "ip[0] & 0xf > 5",
        "udp[8:4] == 0x6e696e65",
        "tcp[((tcp[12] & 0xf0) >> 2):4] = 0x47455420",
        "foo bar",
        "port 99999",
    ];

    #[test]
    fn programs_equal_tcpdump_ddd() {
        let lib = libpcap().expect("libpcap must be installed (tcpdump needs it)");
        let mut checked = 0;
        for link in LINKS {
            for snaplen in [SNAPLEN, 96] {
                for expr in EXPRESSIONS {
                    let ours = compile_with(lib, expr, link, snaplen).map_err(|e| match e {
                        FilterError::Invalid { why, .. } => why,
                        e => panic!("{e}"),
                    });
                    let theirs = tcpdump(link, snaplen, expr);
                    assert_eq!(ours, theirs, "{} -s {snaplen} '{expr}'", dlt_name(link));
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 3 * 2 * EXPRESSIONS.len());
    }

    #[test]
    fn empty_expression_accepts_everything() {
        for link in LINKS {
            assert_eq!(compile("", link, 1234).unwrap(), vec![ret_k(1234)]);
            assert_eq!(compile("  \n ", link, 1234).unwrap(), vec![ret_k(1234)]);
        }
    }

    #[test]
    fn bad_expression_message() {
        let e = compile("foo bar", LinkType::Ethernet, SNAPLEN).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid filter expression 'foo bar': can't parse filter expression: syntax error"
        );
        let e = compile("vlan", LinkType::Raw, SNAPLEN).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid filter expression 'vlan': no VLAN support for Raw IP"
        );
        let e = compile("udp\0port 9", LinkType::Raw, SNAPLEN).unwrap_err();
        assert!(e.to_string().ends_with("it contains a NUL byte"), "{e}");
    }

    #[test]
    fn missing_libpcap_names_the_package() {
        assert_eq!(candidates(None), LIBPCAP_NAMES.map(OsString::from).to_vec());
        assert_eq!(candidates(Some("".into())), candidates(None));
        let names = candidates(Some("/nonexistent/libpcap.so.1".into()));
        assert_eq!(names, vec![OsString::from("/nonexistent/libpcap.so.1")]);
        let e = load_first(&names).err().unwrap();
        let msg = e.to_string();
        assert!(
            msg.starts_with("cannot load libpcap, which compiles filter expressions: /nonexistent/libpcap.so.1: "),
            "{msg}"
        );
        assert!(
            msg.ends_with("install libpcap0.8 (Debian, Ubuntu) or libpcap (Fedora, RHEL)"),
            "{msg}"
        );
        // A library that is not libpcap.
        let e = load_first(&["libc.so.6".into()]).err().unwrap();
        assert!(e.to_string().contains("pcap_open_dead"), "{e}");
    }

    #[test]
    fn environment_override_replaces_the_list() {
        // The process-wide loader reads RXTXCPU_LIBPCAP; a child process
        // with the override must fail while this one (without it) works.
        if std::env::var_os("RXTXCPU_PCAPFILTER_CHILD").is_some() {
            let e = compile("udp", LinkType::Raw, SNAPLEN).unwrap_err();
            assert!(matches!(e, FilterError::NoLibpcap { .. }), "{e}");
            return;
        }
        let me = std::env::current_exe().unwrap();
        let out = Command::new(me)
            .args([
                "--exact",
                crate::sys::testutil::test_name(
                    module_path!(),
                    "environment_override_replaces_the_list",
                )
                .as_str(),
            ])
            .env("RXTXCPU_PCAPFILTER_CHILD", "1")
            .env(LIBPCAP_ENV, "/nonexistent/libpcap.so")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
        assert!(compile("udp", LinkType::Raw, SNAPLEN).is_ok());
    }

    fn temp_file(tag: &str, content: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("rxtxcpu-filter-{}-{tag}", std::process::id()));
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn filter_file_reads_as_tcpdump_f() {
        let text = b"# web traffic\ntcp port 80 # plain\n  or tcp port 443#tls\n# \xe9t\xe9\n and not host 192.0.2.9\n";
        let path = temp_file("f", text);
        let expr = read_filter_file(&path).unwrap();
        assert_eq!(expr.len(), text.len());
        assert!(!expr.contains('#'));
        let ours = compile(&expr, LinkType::Ethernet, SNAPLEN).unwrap();
        let out = Command::new("tcpdump")
            .args(["-ddd", "-y", "EN10MB", "-F"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(ours, parse_ddd(&String::from_utf8_lossy(&out.stdout)));
        std::fs::remove_file(&path).unwrap();

        let e = read_filter_file(Path::new("/nonexistent/filter")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = read_filter_file(Path::new("/")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EISDIR));
        let path = temp_file("bin", b"udp \xff\n");
        let e = read_filter_file(&path).unwrap_err();
        assert_eq!(e.to_string(), "it is not UTF-8 text");
        std::fs::remove_file(&path).unwrap();
    }

    // -- The kernel program, offline ------------------------------------------

    #[test]
    fn raw_program_is_the_users_with_capped_returns() {
        let user = compile("udp port 9", LinkType::Raw, SNAPLEN).unwrap();
        assert_eq!(
            for_kernel(&user, LinkType::Raw, Direction::RxTx, SNAPLEN).unwrap(),
            user
        );
        let small = for_kernel(&user, LinkType::Raw, Direction::RxTx, 64).unwrap();
        assert_eq!(small.len(), user.len());
        for (a, b) in user.iter().zip(&small) {
            if a.0 == BPF_RET | BPF_K && a.3 != 0 {
                assert_eq!(b.3, 64);
            } else {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn direction_check_comes_first_and_resets_a() {
        let user = vec![ret_k(100)];
        let rx = for_kernel(&user, LinkType::Raw, Direction::Rx, 100).unwrap();
        assert_eq!(
            rx,
            vec![
                ld_anc(SKF_AD_PKTTYPE),
                (BPF_JMP | BPF_JEQ | BPF_K, 0, 1, PACKET_OUTGOING),
                ret_k(0),
                stmt(BPF_LD | BPF_IMM, 0),
                ret_k(100),
            ]
        );
        let tx = for_kernel(&user, LinkType::Raw, Direction::Tx, 100).unwrap();
        assert_eq!(tx[1], (BPF_JMP | BPF_JEQ | BPF_K, 1, 0, PACKET_OUTGOING));
    }

    #[test]
    fn ret_a_is_clamped() {
        let user = vec![stmt(BPF_LD | BPF_W | BPF_LEN, 0), stmt(BPF_RET | BPF_A, 0)];
        let k = for_kernel(&user, LinkType::Raw, Direction::RxTx, 60).unwrap();
        for (a, want) in [(0, 0), (59, 59), (60, 60), (61, 60), (100_000, 60)] {
            assert_eq!(run(&k, &Pkt::with_len(a)), want, "len {a}");
        }
    }

    #[test]
    fn too_long_programs_are_refused() {
        let mut user = vec![stmt(BPF_LD | BPF_IMM, 1); 3000];
        user.push(ret_k(1));
        assert!(for_kernel(&user, LinkType::Raw, Direction::RxTx, 9).is_ok());
        // Ethernet holds two copies.
        let e = for_kernel(&user, LinkType::Ethernet, Direction::RxTx, 9).unwrap_err();
        assert_eq!(e, FilterError::TooLong { len: 6007 });
        assert!(e.to_string().contains("at most 4096"), "{e}");
        let user = vec![ret_k(1); 4097];
        assert_eq!(
            for_kernel(&user, LinkType::Raw, Direction::RxTx, 9),
            Err(FilterError::TooLong { len: 4097 })
        );
    }

    #[test]
    fn conditional_jumps_that_grow_too_long_are_refused() {
        // A jump over 250 `len` loads, each of which the cooked rewrite
        // turns into two instructions.
        let mut user = vec![(BPF_JMP | BPF_JEQ | BPF_K, 250, 0, 1)];
        user.extend(std::iter::repeat(stmt(BPF_LD | BPF_W | BPF_LEN, 0)).take(250));
        user.push(ret_k(1));
        assert!(for_kernel(&user, LinkType::Raw, Direction::RxTx, 9).is_ok());
        let e = for_kernel(&user, LinkType::LinuxSll2, Direction::RxTx, 9).unwrap_err();
        assert!(e.to_string().contains("conditional jump too long"), "{e}");
    }

    #[test]
    fn cooked_address_loads_are_refused() {
        let user = compile("link[11] == 6", LinkType::LinuxSll2, SNAPLEN).unwrap();
        let e = for_kernel(&user, LinkType::LinuxSll2, Direction::RxTx, SNAPLEN).unwrap_err();
        assert!(e.to_string().contains("link-layer address"), "{e}");
    }

    // A small cBPF interpreter, for checking the rewrite against the
    // kernel's rules (ancillary loads, negative offsets) without a device of
    // every type. `data` is what the kernel's program sees.
    struct Pkt {
        data: Vec<u8>,
        /// Offset of the network header in `data`.
        net: usize,
        len: u32,
        protocol: u16,
        pkttype: u32,
        ifindex: u32,
        hatype: u32,
        vlan: Option<(u16, u16)>,
    }

    impl Pkt {
        fn with_len(len: u32) -> Pkt {
            Pkt {
                data: vec![0; 64],
                net: 0,
                len,
                protocol: 0x800,
                pkttype: 0,
                ifindex: 1,
                hatype: 1,
                vlan: None,
            }
        }
    }

    fn load(p: &Pkt, off: u32, size: u32) -> Option<u32> {
        let anc = |f: u32| match f {
            SKF_AD_PROTOCOL => Some(u32::from(p.protocol)),
            SKF_AD_PKTTYPE => Some(p.pkttype),
            SKF_AD_IFINDEX => Some(p.ifindex),
            SKF_AD_HATYPE => Some(p.hatype),
            SKF_AD_VLAN_TAG => Some(u32::from(p.vlan.map_or(0, |v| v.1))),
            SKF_AD_VLAN_TPID => Some(u32::from(p.vlan.map_or(0, |v| v.0))),
            SKF_AD_VLAN_TAG_PRESENT => Some(u32::from(p.vlan.is_some())),
            _ => None,
        };
        if off >= SKF_AD_OFF {
            return anc(off - SKF_AD_OFF);
        }
        let start = if off >= SKF_NET_OFF {
            p.net + (off - SKF_NET_OFF) as usize
        } else if off < 0x8000_0000 {
            off as usize
        } else {
            return None;
        };
        let bytes = p.data.get(start..start + size as usize)?;
        Some(bytes.iter().fold(0, |a, &b| a << 8 | u32::from(b)))
    }

    /// Runs `prog` on `p` as the kernel would; returns its result.
    fn run(prog: &[Insn], p: &Pkt) -> u32 {
        let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
        let mut pc = 0;
        loop {
            let (code, jt, jf, k) = prog[pc];
            pc += 1;
            let src = if code & BPF_X != 0 { x } else { k };
            match class(code) {
                BPF_LD | BPF_LDX => {
                    let v = match mode(code) {
                        BPF_IMM => k,
                        BPF_MEM => mem[k as usize],
                        BPF_LEN => p.len,
                        BPF_ABS => match load(p, k, size_of(code)) {
                            Some(v) => v,
                            None => return 0,
                        },
                        BPF_IND => match load(p, x.wrapping_add(k), size_of(code)) {
                            Some(v) => v,
                            None => return 0,
                        },
                        BPF_MSH => match load(p, k, 1) {
                            Some(v) => (v & 0xf) * 4,
                            None => return 0,
                        },
                        _ => panic!("bad load {code:#x}"),
                    };
                    if class(code) == BPF_LD {
                        a = v
                    } else {
                        x = v
                    }
                }
                BPF_ST => mem[k as usize] = a,
                BPF_STX => mem[k as usize] = x,
                BPF_ALU => {
                    a = match code & 0xf0 {
                        BPF_ADD => a.wrapping_add(src),
                        0x10 => a.wrapping_sub(src),
                        0x20 => a.wrapping_mul(src),
                        BPF_OR => a | src,
                        BPF_AND => a & src,
                        BPF_LSH => a << src,
                        BPF_RSH => a >> src,
                        op => panic!("alu {op:#x}"),
                    }
                }
                BPF_JMP => {
                    let taken = match code & 0xf0 {
                        BPF_JA => {
                            pc += k as usize;
                            continue;
                        }
                        BPF_JEQ => a == src,
                        BPF_JGT => a > src,
                        BPF_JGE => a >= src,
                        0x40 => a & src != 0,
                        op => panic!("jmp {op:#x}"),
                    };
                    pc += usize::from(if taken { jt } else { jf });
                }
                BPF_RET => return if code & 0x18 == BPF_A { a } else { k },
                BPF_MISC => {
                    if code & 0xf8 == BPF_TXA {
                        a = x
                    } else {
                        x = a
                    }
                }
                _ => panic!("bad class {code:#x}"),
            }
        }
    }

    /// An IPv4/UDP packet from 192.0.2.2 to 192.0.2.1 port `dport`.
    fn ipv4_udp(dport: u16, payload: &[u8]) -> Vec<u8> {
        let total = (20 + 8 + payload.len()) as u16;
        let mut p = vec![
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 2, 192, 0, 2, 1,
        ];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        let sum = p
            .chunks(2)
            .fold(0u32, |s, c| s + u32::from(u16::from_be_bytes([c[0], c[1]])));
        let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&(total - 20).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(payload);
        p
    }

    fn ether(net: &[u8], ethertype: u16) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(net);
        f
    }

    /// The SLL2 record rxtxcpu writes for a packet whose network header is
    /// `net` bytes into `data`.
    fn sll2_record(p: &Pkt) -> Vec<u8> {
        let mut h = vec![0u8; 20];
        h[0..2].copy_from_slice(&p.protocol.to_be_bytes());
        h[4..8].copy_from_slice(&p.ifindex.to_be_bytes());
        h[8..10].copy_from_slice(&(p.hatype as u16).to_be_bytes());
        h[10] = p.pkttype as u8;
        h.extend_from_slice(&p.data[p.net..]);
        h
    }

    /// The user's program run on a record, as libpcap runs it in userland.
    fn run_user(prog: &[Insn], record: &[u8]) -> u32 {
        let p = Pkt {
            data: record.to_vec(),
            net: 0,
            len: record.len() as u32,
            protocol: 0,
            pkttype: 0,
            ifindex: 0,
            hatype: 0,
            vlan: None,
        };
        run(prog, &p)
    }

    const COOKED: &[&str] = &[
        "udp port 9",
        "ifindex 7 and udp",
        "inbound and udp dst port 9",
        "outbound",
        "link[8:2] == 1",
        "link[9] == 0xfe",
        "link[0:2] == 0x800 and link[1] == 0",
        "link[2:2] == 0",
        "len == 53",
        "len > 40 and len < 60",
        "udp[8:4] == 0x6e696e65",
        "ip[0] & 0xf == 5 and ip[9] == 17",
        "ip6 or arp",
        "not ip",
        "",
    ];

    #[test]
    fn cooked_rewrite_decides_as_the_users_program() {
        let payloads: [&[u8]; 3] = [b"nine!", b"ten-bytes", b""];
        let mut packets = Vec::new();
        for (i, payload) in payloads.iter().enumerate() {
            let ip = ipv4_udp(if i == 0 { 9 } else { 10 }, payload);
            for (hatype, frame, net) in [
                (1, ether(&ip, 0x800), 14),
                (772, ether(&ip, 0x800), 14),
                (0xfffe, ip.clone(), 0),
                (778, ip.clone(), 0),
                // A device with an 8-byte link header of its own type.
                (32, [&[9u8; 8][..], &ip].concat(), 8),
            ] {
                for pkttype in [0, 4] {
                    packets.push(Pkt {
                        len: frame.len() as u32,
                        data: frame.clone(),
                        net,
                        protocol: 0x800,
                        pkttype,
                        ifindex: if hatype == 0xfffe { 7 } else { 3 },
                        hatype,
                        vlan: None,
                    });
                }
            }
        }
        for expr in COOKED {
            let user = compile(expr, LinkType::LinuxSll2, 200).unwrap();
            for dir in [Direction::RxTx, Direction::Rx, Direction::Tx] {
                let kernel = for_kernel(&user, LinkType::LinuxSll2, dir, 264).unwrap();
                for p in &packets {
                    if p.hatype == 32 && expr.contains("len") {
                        // Known limit: the link header length of such a
                        // device is unknown, so `len` counts it.
                        continue;
                    }
                    let want = run_user(&user, &sll2_record(p));
                    let wanted_dir = match dir {
                        Direction::RxTx => true,
                        Direction::Rx => p.pkttype != 4,
                        Direction::Tx => p.pkttype == 4,
                    };
                    let got = run(&kernel, p);
                    let what = format!(
                        "'{expr}' {dir:?} on hatype {} pkttype {}",
                        p.hatype, p.pkttype
                    );
                    if want == 0 || !wanted_dir {
                        assert_eq!(got, 0, "{what}");
                        continue;
                    }
                    // The kernel keeps the record's 180 payload bytes after
                    // the device's link header, or all it can if unknown.
                    let expected = match p.hatype {
                        1 | 772 => 200 - 20 + 14,
                        0xfffe => 200 - 20,
                        _ => 264,
                    };
                    assert_eq!(got, expected, "{what}");
                }
            }
        }
    }

    const TAGGED: &[&str] = &[
        "udp port 9",
        "vlan",
        "vlan 10",
        "vlan 10 and udp port 9",
        "vlan 11 or udp",
        "not vlan",
        "ether[12:2] == 0x8100",
        "ether[12:4] == 0x8100a00a",
        "ether[14] & 0xe0 == 0xa0",
        "ether[15] == 10",
        "ether[12] == 0x81 and ether[13] == 0",
        "ether src 02:00:00:00:00:02",
        "len == 51",
        "vlan and udp[8:4] == 0x6e696e65",
        "vlan and tcp[((tcp[12] & 0xf0) >> 2):4] = 0x47455420",
        "vlan and vlan 20 and udp",
    ];

    #[test]
    fn vlan_rewrite_decides_as_the_users_program() {
        let ip = ipv4_udp(9, b"nine!");
        let mut packets = Vec::new();
        for vlan in [None, Some((0x8100u16, 0xa00au16)), Some((0x88a8, 11))] {
            // The frame as the kernel has it (tag stripped) and as written.
            let kernel = ether(&ip, 0x800);
            let mut record = kernel[..12].to_vec();
            if let Some((tpid, tci)) = vlan {
                record.extend_from_slice(&tpid.to_be_bytes());
                record.extend_from_slice(&tci.to_be_bytes());
            }
            record.extend_from_slice(&kernel[12..]);
            packets.push((kernel.clone(), vlan, record));
            // QinQ: the inner tag stays in the frame.
            let inner = ether(&[&[0x00, 20, 0x08, 0x00][..], &ip].concat(), 0x8100);
            let mut record = inner[..12].to_vec();
            if let Some((tpid, tci)) = vlan {
                record.extend_from_slice(&tpid.to_be_bytes());
                record.extend_from_slice(&tci.to_be_bytes());
            }
            record.extend_from_slice(&inner[12..]);
            packets.push((inner, vlan, record));
        }
        for expr in TAGGED {
            let user = compile(expr, LinkType::Ethernet, SNAPLEN).unwrap();
            let kernel = for_kernel(&user, LinkType::Ethernet, Direction::RxTx, 1500).unwrap();
            for (frame, vlan, record) in &packets {
                let p = Pkt {
                    len: frame.len() as u32,
                    data: frame.clone(),
                    net: 14,
                    protocol: 0x800,
                    pkttype: 0,
                    ifindex: 1,
                    hatype: 1,
                    vlan: *vlan,
                };
                let want = run_user(&user, record).min(1500);
                assert_eq!(run(&kernel, &p), want, "'{expr}' on {vlan:?} {record:02x?}");
            }
        }
    }

    // -- The kernel program, attached ------------------------------------------

    /// Tests against the real kernel: each in a network namespace of its
    /// own, with packet sockets created inside it; traffic is generated
    /// before the sockets are read, and each step waits for the packet to
    /// have passed the packet taps (a UDP receiver got it, or the device's
    /// receive path is synchronous), so a drain finds exactly what the
    /// filter let through.
    mod kernel {
        use super::*;
        use crate::sys::afpacket::{Filter, PacketSocket};
        use std::net::{Ipv4Addr, UdpSocket};
        use std::os::fd::OwnedFd;
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::time::Duration;

        fn sh(program: &str, args: &[&str]) {
            let out = Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{program} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }

        /// A network namespace with `lo` up and IPv6 off (no router or
        /// MLD traffic); deleted on drop.
        struct Ns(String);

        impl Ns {
            fn new() -> Ns {
                static N: AtomicU32 = AtomicU32::new(0);
                let n = N.fetch_add(1, Ordering::Relaxed);
                let ns = Ns(format!("rxtxcpu-f-{}-{n}", std::process::id()));
                sh("ip", &["netns", "add", &ns.0]);
                #[rustfmt::skip]
                sh("ip", &["netns", "exec", &ns.0, "sysctl", "-q", "-w",
                           "net.ipv6.conf.all.disable_ipv6=1",
                           "net.ipv6.conf.default.disable_ipv6=1"]);
                ns.ip(&["link", "set", "lo", "up"]);
                ns
            }

            fn ip(&self, args: &[&str]) {
                let mut argv = vec!["-n", &self.0];
                argv.extend_from_slice(args);
                sh("ip", &argv);
            }

            /// Runs `f` on a thread inside the namespace: sockets and
            /// devices it creates belong to the namespace.
            fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
                let path = format!("/var/run/netns/{}", self.0);
                std::thread::spawn(move || {
                    let file = std::fs::File::open(&path).unwrap();
                    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                    f()
                })
                .join()
                .unwrap()
            }

            fn ifindex(&self, name: &'static str) -> u32 {
                self.run(move || crate::sys::afpacket::ifindex(name).unwrap())
            }
        }

        impl Drop for Ns {
            fn drop(&mut self) {
                let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
            }
        }

        /// A packet socket on `ifindex` (0: all) with the kernel program
        /// for `expr`.
        fn socket(
            ns: &Ns,
            ifindex: u32,
            link: LinkType,
            dir: Direction,
            expr: &str,
            snap: u32,
        ) -> PacketSocket {
            let user = compile(expr, link, snap).unwrap();
            let kernel_snap = if link == LinkType::LinuxSll2 {
                snap + 64
            } else {
                snap
            };
            let prog = for_kernel(&user, link, dir, kernel_snap).unwrap();
            ns.run(move || {
                let s = PacketSocket::new().unwrap();
                s.attach_filter(&Filter::from_insns(prog)).unwrap();
                s.bind(ifindex).unwrap();
                s
            })
        }

        /// What a socket got: (ifindex, pkttype, captured bytes).
        fn drain(s: &PacketSocket) -> Vec<(u32, u8, Vec<u8>)> {
            std::iter::from_fn(|| crate::sys::testutil::recv_from(s)).collect()
        }

        /// Destination port of a captured IPv4/UDP packet that starts
        /// `at` bytes in.
        fn dport(data: &[u8], at: usize) -> u16 {
            let ihl = usize::from(data[at] & 0xf) * 4;
            u16::from_be_bytes([data[at + ihl + 2], data[at + ihl + 3]])
        }

        /// A tun device (IFF_TUN, no packet information) in the calling
        /// thread's namespace; packets written to it are received by it.
        fn open_tun(name: &str) -> OwnedFd {
            crate::sys::testutil::tun(name, 1).remove(0)
        }

        fn write_tun(fd: &OwnedFd, packet: &[u8]) {
            assert_eq!(nix::unistd::write(fd, packet).unwrap(), packet.len());
        }

        fn receiver(addr: Ipv4Addr, port: u16) -> UdpSocket {
            let r = UdpSocket::bind((addr, port)).unwrap();
            // A guard against a hang, not a timed assertion.
            r.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            r
        }

        /// Sends `payload` from `tx` to `rx` and waits until `rx` has it.
        fn exchange(tx: &UdpSocket, rx: &UdpSocket, payload: &[u8]) {
            tx.send_to(payload, rx.local_addr().unwrap()).unwrap();
            let mut buf = [0u8; 64];
            let n = rx.recv(&mut buf).expect("the datagram was not delivered");
            assert_eq!(&buf[..n], payload);
        }

        /// A socket, what it must get (one item per packet) and, if
        /// checked, each packet's captured length.
        type Case<'a, T> = (&'a str, PacketSocket, Vec<T>, Option<usize>);

        const LO: u32 = 1;
        const RX: u8 = 0; // PACKET_HOST
        const TX: u8 = 4; // PACKET_OUTGOING

        #[test]
        fn loopback_tun_and_all_interfaces() {
            let ns = Ns::new();
            let tun = ns.run(|| open_tun("rxtun0"));
            ns.ip(&["link", "set", "rxtun0", "up"]);
            let t = ns.ifindex("rxtun0");
            let (eth, raw, any) = (LinkType::Ethernet, LinkType::Raw, LinkType::LinuxSll2);
            let (both, rx, tx) = (Direction::RxTx, Direction::Rx, Direction::Tx);
            let by_ifindex = format!("udp port 9 and ifindex {t}");
            // (socket, what it must get: (ifindex, pkttype) per packet, all
            // port 9), captured length)
            #[rustfmt::skip]
            let cases: Vec<Case<(u32, u8)>> = vec![
                ("lo udp port 9", socket(&ns, LO, eth, both, "udp port 9", SNAPLEN),
                 vec![(LO, TX), (LO, RX), (LO, TX), (LO, RX)], Some(47)),
                ("lo rx", socket(&ns, LO, eth, rx, "udp port 9", SNAPLEN),
                 vec![(LO, RX), (LO, RX)], Some(47)),
                ("lo tx -s 30", socket(&ns, LO, eth, tx, "udp port 9", 30),
                 vec![(LO, TX), (LO, TX)], Some(30)),
                ("lo len", socket(&ns, LO, eth, both, "len == 47", SNAPLEN),
                 vec![(LO, TX), (LO, RX), (LO, TX), (LO, RX)], None),
                ("tun udp port 9", socket(&ns, t, raw, both, "udp port 9", SNAPLEN),
                 vec![(t, RX), (t, RX)], Some(33)),
                ("tun payload", socket(&ns, t, raw, both, "udp[8:4] == 0x6e696e65", SNAPLEN),
                 vec![(t, RX), (t, RX)], None),
                ("any udp port 9", socket(&ns, 0, any, both, "udp port 9", SNAPLEN),
                 vec![(LO, TX), (LO, RX), (LO, TX), (LO, RX), (t, RX), (t, RX)], None),
                ("any ifindex", socket(&ns, 0, any, both, &by_ifindex, SNAPLEN),
                 vec![(t, RX), (t, RX)], None),
                ("any len", socket(&ns, 0, any, both, "len == 53", SNAPLEN),
                 vec![(LO, TX), (LO, RX), (LO, TX), (LO, RX), (t, RX), (t, RX)], None),
                ("any inbound", socket(&ns, 0, any, both, "inbound and udp dst port 9", SNAPLEN),
                 vec![(LO, RX), (LO, RX), (t, RX), (t, RX)], None),
                ("any hatype", socket(&ns, 0, any, both, "link[8:2] == 772 and udp port 9", SNAPLEN),
                 vec![(LO, TX), (LO, RX), (LO, TX), (LO, RX)], None),
                ("any payload", socket(&ns, 0, any, both, "udp[8:4] == 0x6e696e65", SNAPLEN),
                 vec![(LO, TX), (LO, RX), (LO, TX), (LO, RX), (t, RX), (t, RX)], None),
                ("any tx", socket(&ns, 0, any, tx, "udp port 9", SNAPLEN),
                 vec![(LO, TX), (LO, TX)], None),
            ];
            // -s 30 on the all-interfaces capture: the kernel keeps the
            // record's 10 payload bytes past each device's link header.
            let any_snap = socket(&ns, 0, any, both, "udp port 9", 30);

            ns.run(move || {
                let local = Ipv4Addr::LOCALHOST;
                let (r9, r10, tx) = (receiver(local, 9), receiver(local, 10), receiver(local, 0));
                for _ in 0..2 {
                    exchange(&tx, &r10, b"ten-bytes");
                    exchange(&tx, &r9, b"nine!");
                }
            });
            // tun's receive path (netif_receive_skb) runs in write().
            for packet in [
                ipv4_udp(10, b"ten-bytes"),
                ipv4_udp(9, b"nine!"),
                ipv4_udp(9, b"nine!"),
            ] {
                write_tun(&tun, &packet);
            }

            for (what, sock, want, caplen) in &cases {
                let got = drain(sock);
                let seen: Vec<(u32, u8)> = got.iter().map(|g| (g.0, g.1)).collect();
                assert_eq!(&seen, want, "{what}");
                for (ifindex, _, data) in &got {
                    if let Some(n) = caplen {
                        assert_eq!(data.len(), *n, "{what}");
                    }
                    let at = if *ifindex == LO { 14 } else { 0 };
                    if data.len() >= at + 28 {
                        let _ = at;
                        let at = if *ifindex == LO { 14 } else { 0 };
                        assert_eq!(dport(data, at), 9, "{what}");
                    }
                }
            }
            let lens: Vec<(u32, usize)> =
                drain(&any_snap).iter().map(|g| (g.0, g.2.len())).collect();
            assert_eq!(
                lens,
                [(LO, 24), (LO, 24), (LO, 24), (LO, 24), (t, 10), (t, 10)]
            );
        }

        /// Sends `frame` out of `ifindex` through a packet socket of the
        /// calling thread's namespace.
        fn send_frame(ifindex: u32, frame: &[u8]) {
            crate::sys::testutil::inject(ifindex, frame);
        }

        /// A frame from va to vb with an 802.1Q/802.1ad tag in it.
        fn tagged(tpid: u16, vid: u16, net: &[u8]) -> Vec<u8> {
            let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
            f.extend_from_slice(&0x800u16.to_be_bytes());
            f.extend_from_slice(net);
            f
        }

        #[test]
        fn stripped_vlan_tags_are_matched_as_written() {
            // The receive path moves the outer tag of a tagged frame into
            // skb metadata (skb_vlan_untag, before the packet taps; no 8021q
            // needed), and rxtxcpu writes it back: the program must match
            // the frame with its tag.
            let (a, b) = (Ns::new(), Ns::new());
            #[rustfmt::skip]
            a.ip(&["link", "add", "va", "address", "02:00:00:00:00:01", "type", "veth",
                   "peer", "name", "vb", "address", "02:00:00:00:00:02", "netns", &b.0]);
            for (ns, me, addr) in [(&a, "va", "1"), (&b, "vb", "2")] {
                ns.ip(&["addr", "add", &format!("198.51.100.{addr}/24"), "dev", me]);
                ns.ip(&["link", "set", me, "up"]);
            }
            #[rustfmt::skip]
            a.ip(&["neigh", "replace", "198.51.100.2", "lladdr", "02:00:00:00:00:02",
                   "dev", "va", "nud", "permanent"]);
            crate::sys::testutil::wait_link_active(&a.0, "va");
            crate::sys::testutil::wait_link_active(&b.0, "vb");
            let (va, vb) = (a.ifindex("va"), b.ifindex("vb"));
            let eth = LinkType::Ethernet;
            let both = Direction::RxTx;
            let (t10, t9, ad9, plain9) = ((true, 10), (true, 9), (true, 9), (false, 9));
            // What each must get: (tagged, port) per packet.
            #[rustfmt::skip]
            let cases: Vec<Case<(bool, u16)>> = vec![
                ("vlan 10 and udp port 9", vec![t9]),
                ("udp port 9", vec![plain9]),
                ("vlan", vec![t10, t9, ad9]),
                ("udp and not vlan", vec![plain9]),
                ("ether[12:4] == 0x8100000a", vec![t10, t9]),
                ("ether[12:2] == 0x88a8 and vlan 20 and udp port 9", vec![ad9]),
                ("vlan 11", vec![]),
            ]
            .into_iter()
            .map(|(expr, want)| (expr, socket(&b, vb, eth, both, expr, SNAPLEN), want, None))
            .collect();
            let marker = b.run(|| receiver(Ipv4Addr::new(198, 51, 100, 2), 9));
            let marker_addr = marker.local_addr().unwrap();
            a.run(move || {
                // One cpu: veth hands frames to the peer's backlog on the
                // sending cpu, in order, so once the marker datagram is
                // delivered the frames before it have passed the taps.
                let mut cpus = nix::sched::CpuSet::new();
                cpus.set(0).unwrap();
                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus).unwrap();
                send_frame(va, &tagged(0x8100, 10, &ipv4_udp(10, b"ten-bytes")));
                send_frame(va, &tagged(0x8100, 10, &ipv4_udp(9, b"nine!")));
                send_frame(va, &tagged(0x88a8, 20, &ipv4_udp(9, b"nine!")));
                let tx = receiver(Ipv4Addr::UNSPECIFIED, 0);
                tx.send_to(b"nine!", marker_addr).unwrap();
            });
            let mut buf = [0u8; 16];
            marker
                .recv(&mut buf)
                .expect("the marker datagram was not delivered");

            for (what, sock, want, _) in &cases {
                let got: Vec<(bool, u16)> = drain(sock)
                    .iter()
                    .map(|(ifindex, pkttype, data)| {
                        assert_eq!((*ifindex, *pkttype), (vb, RX), "{what}");
                        // A tag the kernel had left in the frame would be
                        // there in the socket's data too.
                        let tpid = u16::from_be_bytes([data[12], data[13]]);
                        assert_ne!(tpid, 0x8100, "{what}: tag not stripped");
                        assert_ne!(tpid, 0x88a8, "{what}: tag not stripped");
                        (data[14 + 12] == 192, dport(data, 14))
                    })
                    .collect();
                assert_eq!(&got, want, "{what}");
            }
        }
    }
}
