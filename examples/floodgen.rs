//! floodgen: a per-cpu packet flood generator for benchmarking rxtxcpu.
//!
//! One sender thread per requested cpu, each pinned to its cpu, each with its
//! own AF_PACKET SOCK_RAW socket bound to the sending interface with
//! PACKET_QDISC_BYPASS, sending a fixed number of Ethernet/IPv4/UDP frames
//! with sendmmsg(2) in batches.
//!
//! On a veth pair the frames sent on one end are received by the peer on the
//! sending cpu (veth_xmit -> netif_rx runs in the sender's context), so a
//! sender pinned to cpu C gives cpu C its own receive flood on the peer.
//!
//! The frames are spread round-robin over UDP source ports: `--ports N`
//! gives every sender the same N ports, `--flows N` splits N flows among the
//! senders (each flow sent from one cpu only, as RSS would keep it). With
//! `--match-every N` only every Nth frame goes to `--dst-port` and the others
//! to `--other-port`, so a filter on the destination port matches exactly
//! 1 in N frames; the result's `matched` counts the frames sent to
//! `--dst-port`.
//!
//! The sends go through packet_direct_xmit, whose queue choice
//! (packet_pick_tx_queue) follows XPS; without XPS, skb_tx_hash takes the
//! queue packet_pick_tx_queue recorded, cpu % real_num_tx_queues. On a
//! multi-queue veth a sender on cpu c thus uses tx queue c, which veth hands
//! to the peer's rx queue c (one NAPI per cpu under native XDP).
//!
//! With `--unique` no two frames of a sender are alike, as in real traffic
//! (where IP IDs, TCP sequence numbers and payloads differ): each frame
//! carries the sender's frame number in its IP ID (the low 16 bits) and in
//! payload bytes 4 to 7 (all 32 bits, when the frame has them: 50 bytes or
//! more), its IPv4 and UDP checksums fixed for it. Without it the frames of
//! one flow are byte for byte the same, each flow a repeating packet for
//! `rxtxcpu --repeats`.
//!
//! The result goes to stdout as one JSON object (frames actually sent per cpu,
//! frames to --dst-port, elapsed time, rate); progress and errors go to stderr.
//!
//! Example (root; run inside the sender's network namespace):
//!
//!     ip netns exec ns-tx target/release/examples/floodgen \
//!         --ifname vA --dst-mac 02:00:00:00:00:02 --cpus 0,1 --count 1000000
//!
//! Exit status: 0 when every thread sent its frames, 1 on a runtime error,
//! 2 on a usage error.

use std::ffi::CString;
use std::io;
use std::mem;
use std::process;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "\
Usage: floodgen --ifname IFACE [OPTIONS]

Send COUNT frames of SIZE bytes from one pinned sender thread per cpu on an
AF_PACKET socket (PACKET_QDISC_BYPASS, sendmmsg), then print a JSON result.

Options:
  -i, --ifname IFACE     interface to send on (required)
  -n, --count N          frames per cpu (default 1000000)
  -s, --size BYTES       frame length handed to the kernel, Ethernet header
                         included, FCS excluded (default 64, min 42)
  -C, --cpus LIST        cpus to send from, e.g. 0,1 or 0-3 (default: all
                         online cpus the process may run on)
      --cpu C            same as --cpus C
  -b, --batch N          frames per sendmmsg call (default 256, max 1024)
      --dst-mac MAC      destination MAC (default ff:ff:ff:ff:ff:ff; give the
                         receiver's MAC so frames are PACKET_HOST there)
      --src-mac MAC      source MAC (default: IFACE's own address)
      --src-ip A.B.C.D   IPv4 source (default 192.0.2.1)
      --dst-ip A.B.C.D   IPv4 destination (default 192.0.2.3)
      --dst-port N       UDP destination port (default 9)
      --ports N          every sender varies the UDP source port over the
                         same N values, 1024.. (default 256)
      --flows N          N flows in all, split among the senders: the k-th of
                         K senders uses source ports 1024+k, 1024+k+K, ...
                         (each flow from one cpu only; overrides --ports)
      --match-every N    send only every Nth frame of each sender to
                         --dst-port, the others to --other-port (default 1:
                         all frames to --dst-port)
      --other-port N     UDP destination port of the other frames (default
                         --dst-port + 1)
      --unique           make every frame of a sender unique: its frame
                         number in the IP ID (low 16 bits) and in payload
                         bytes 4-7 (frames of 50 bytes or more), checksums
                         fixed (default: each flow's frames are identical)
      --no-bypass        do not set PACKET_QDISC_BYPASS
  -q, --quiet            no progress on stderr
  -h, --help             this help
";

struct Config {
    ifname: String,
    count: u64,
    size: usize,
    cpus: Vec<usize>,
    batch: usize,
    dst_mac: [u8; 6],
    src_mac: Option<[u8; 6]>,
    src_ip: [u8; 4],
    dst_ip: [u8; 4],
    dst_port: u16,
    ports: u16,
    flows: Option<u32>,
    match_every: u32,
    other_port: Option<u16>,
    unique: bool,
    bypass: bool,
    quiet: bool,
}

impl Default for Config {
    /// The defaults of the options (no interface yet).
    fn default() -> Config {
        Config {
            ifname: String::new(),
            count: 1_000_000,
            size: 64,
            cpus: Vec::new(),
            batch: 256,
            dst_mac: [0xff; 6],
            src_mac: None,
            src_ip: [192, 0, 2, 1],
            dst_ip: [192, 0, 2, 3],
            dst_port: 9,
            ports: 256,
            flows: None,
            match_every: 1,
            other_port: None,
            unique: false,
            bypass: true,
            quiet: false,
        }
    }
}

fn usage_error(msg: &str) -> ! {
    eprintln!("floodgen: {msg}");
    eprintln!("Try 'floodgen --help' for more information.");
    process::exit(2);
}

/// `v` as a number in `lo..=hi`, or a usage error naming `what`.
fn in_range<T>(v: &str, lo: T, hi: T, what: &str) -> T
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match v.parse::<T>() {
        Ok(n) if lo <= n && n <= hi => n,
        _ => usage_error(&format!("invalid {what} '{v}' ({lo}..{hi})")),
    }
}

fn die(msg: &str) -> ! {
    eprintln!("floodgen: {msg}");
    process::exit(1);
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        mac[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

fn parse_ipv4(s: &str) -> Option<[u8; 4]> {
    let addr: std::net::Ipv4Addr = s.parse().ok()?;
    Some(addr.octets())
}

fn parse_cpu_list(s: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for item in s.split(',') {
        if item.is_empty() {
            return None;
        }
        if let Some((a, b)) = item.split_once('-') {
            let a: usize = a.parse().ok()?;
            let b: usize = b.parse().ok()?;
            if a > b {
                return None;
            }
            cpus.extend(a..=b);
        } else {
            cpus.push(item.parse().ok()?);
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    if cpus.is_empty() || *cpus.last().unwrap() >= libc::CPU_SETSIZE as usize {
        return None;
    }
    Some(cpus)
}

/// The cpus this process may run on (its affinity mask).
fn allowed_cpus() -> Vec<usize> {
    unsafe {
        let mut set: libc::cpu_set_t = mem::zeroed();
        if libc::sched_getaffinity(0, mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            die(&format!(
                "sched_getaffinity: {}",
                io::Error::last_os_error()
            ));
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

fn parse_args() -> Config {
    let mut args = std::env::args().skip(1);
    let mut cfg = Config::default();
    while let Some(arg) = args.next() {
        // Accept both "--opt value" and "--opt=value".
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> String {
            if let Some(v) = inline.clone() {
                return v;
            }
            args.next()
                .unwrap_or_else(|| usage_error(&format!("option '{name}' requires an argument")))
        };
        match name.as_str() {
            "-i" | "--ifname" | "--interface" => cfg.ifname = value(&name),
            "-n" | "--count" | "--frames" => {
                let v = value(&name);
                cfg.count = v
                    .parse()
                    .unwrap_or_else(|_| usage_error(&format!("invalid count '{v}'")));
            }
            "-s" | "--size" => {
                let v = value(&name);
                cfg.size = v
                    .parse()
                    .unwrap_or_else(|_| usage_error(&format!("invalid size '{v}'")));
            }
            "-C" | "--cpus" | "--cpu" => {
                let v = value(&name);
                cfg.cpus = parse_cpu_list(&v)
                    .unwrap_or_else(|| usage_error(&format!("invalid cpu list '{v}'")));
            }
            "-b" | "--batch" => {
                let v = value(&name);
                cfg.batch = in_range(&v, 1, 1024, "batch");
            }
            "--dst-mac" => {
                let v = value(&name);
                cfg.dst_mac =
                    parse_mac(&v).unwrap_or_else(|| usage_error(&format!("invalid MAC '{v}'")));
            }
            "--src-mac" => {
                let v = value(&name);
                cfg.src_mac = Some(
                    parse_mac(&v).unwrap_or_else(|| usage_error(&format!("invalid MAC '{v}'"))),
                );
            }
            "--src-ip" => {
                let v = value(&name);
                cfg.src_ip = parse_ipv4(&v)
                    .unwrap_or_else(|| usage_error(&format!("invalid IPv4 address '{v}'")));
            }
            "--dst-ip" => {
                let v = value(&name);
                cfg.dst_ip = parse_ipv4(&v)
                    .unwrap_or_else(|| usage_error(&format!("invalid IPv4 address '{v}'")));
            }
            "--dst-port" => {
                let v = value(&name);
                cfg.dst_port = v
                    .parse()
                    .unwrap_or_else(|_| usage_error(&format!("invalid port '{v}'")));
            }
            "--ports" => {
                let v = value(&name);
                cfg.ports = match v.parse() {
                    Ok(p) if p >= 1 => p,
                    _ => usage_error(&format!("invalid port count '{v}'")),
                };
            }
            "--flows" => {
                let v = value(&name);
                cfg.flows = Some(in_range(&v, 1, 64512, "flow count"));
            }
            "--match-every" => {
                let v = value(&name);
                cfg.match_every = in_range(&v, 1, 1_000_000, "--match-every");
            }
            "--other-port" => {
                let v = value(&name);
                cfg.other_port = Some(
                    v.parse()
                        .unwrap_or_else(|_| usage_error(&format!("invalid port '{v}'"))),
                );
            }
            "--unique" => cfg.unique = true,
            "--no-bypass" => cfg.bypass = false,
            "-q" | "--quiet" => cfg.quiet = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                process::exit(0);
            }
            _ => usage_error(&format!("unrecognized argument '{arg}'")),
        }
    }
    if cfg.ifname.is_empty() {
        usage_error("--ifname is required");
    }
    if cfg.size < 42 {
        usage_error(&format!(
            "size {} is below 42 (Ethernet+IPv4+UDP headers)",
            cfg.size
        ));
    }
    if cfg.size > 65535 {
        usage_error(&format!("size {} is too large", cfg.size));
    }
    if cfg.cpus.is_empty() {
        cfg.cpus = allowed_cpus();
    }
    if let Some(n) = cfg.flows {
        if (n as usize) < cfg.cpus.len() {
            usage_error(&format!(
                "--flows {n} is fewer than the {} senders",
                cfg.cpus.len()
            ));
        }
    }
    if cfg.match_every > 1 && cfg.other_port() == cfg.dst_port {
        usage_error("--other-port must differ from --dst-port");
    }
    cfg
}

impl Config {
    fn other_port(&self) -> u16 {
        self.other_port.unwrap_or(self.dst_port.wrapping_add(1))
    }

    /// The UDP source ports the sender with index `k` (of the cpu list)
    /// cycles through.
    fn source_ports(&self, k: usize) -> Vec<u16> {
        match self.flows {
            Some(n) => {
                let senders = self.cpus.len();
                (k..n as usize)
                    .step_by(senders)
                    .map(|j| 1024 + j as u16)
                    .collect()
            }
            None => (0..self.ports).map(|i| 1024u16.wrapping_add(i)).collect(),
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The length of a sender's frame ring: a whole number of source-port
/// cycles and of match cycles (so that the round robin and the 1-in-N
/// pattern continue exactly across the wrap), at least one batch.
fn ring_len(ports: usize, every: usize, batch: usize) -> usize {
    let cycle = ports / gcd(ports, every) * every;
    cycle * batch.div_ceil(cycle)
}

/// Frames among the first `sent` of a ring whose index is a multiple of
/// `every` (the ring length is a multiple of `every`).
fn matched_of(sent: u64, every: u32) -> u64 {
    sent.div_ceil(u64::from(every))
}

fn read_sysfs(ifname: &str, attr: &str) -> Option<String> {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/{attr}"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    sum
}

fn csum_fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A valid Ethernet + IPv4 + UDP frame of `size` bytes, UDP checksum filled.
fn build_frame(cfg: &Config, src_mac: [u8; 6], sport: u16, dport: u16, cpu: usize) -> Vec<u8> {
    let size = cfg.size;
    let mut f = vec![0u8; size];
    f[0..6].copy_from_slice(&cfg.dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());

    let ip_len = (size - 14).min(0xffff) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45; // version 4, IHL 5
    ip[1] = 0; // DSCP/ECN
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[4..6].copy_from_slice(&(sport ^ 0x5a5a).to_be_bytes()); // id
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
    ip[8] = 64; // TTL
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&cfg.src_ip);
    ip[16..20].copy_from_slice(&cfg.dst_ip);
    let ipsum = csum_fold(csum_add(0, &f[14..34]));
    f[24..26].copy_from_slice(&ipsum.to_be_bytes());

    let udp_len = ip_len - 20;
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[38..40].copy_from_slice(&udp_len.to_be_bytes());
    // Payload: a recognisable pattern with the sending cpu in it.
    for (i, b) in f[42..].iter_mut().enumerate() {
        *b = match i {
            0 => b'F',
            1 => b'G',
            2 => cpu as u8,
            _ => i as u8,
        };
    }
    // UDP checksum over the pseudo header, header and payload.
    let mut sum = csum_add(0, &cfg.src_ip);
    sum = csum_add(sum, &cfg.dst_ip);
    sum += 17;
    sum += u32::from(udp_len);
    sum = csum_add(sum, &f[34..34 + udp_len as usize]);
    let mut usum = csum_fold(sum);
    if usum == 0 {
        usum = 0xffff;
    }
    f[40..42].copy_from_slice(&usum.to_be_bytes());
    f
}

/// A one's complement checksum `sum` after the 16-bit word `old` it
/// covers became `new` (RFC 1624, eqn. 3).
fn csum_update(sum: u16, old: u16, new: u16) -> u16 {
    csum_fold(u32::from(!sum) + u32::from(!old) + u32::from(new))
}

/// Frame bytes that hold the payload's frame number (payload bytes 4-7).
const STAMP_AT: usize = 46;

/// Writes frame number `seq` into a frame made by [`build_frame`] (or
/// stamped before): the IP ID gets its low 16 bits, payload bytes 4-7 all
/// 32 if the frame has them; the IPv4 and UDP checksums are updated.
fn stamp(f: &mut [u8], seq: u32) {
    let word = |f: &[u8], at: usize| u16::from_be_bytes([f[at], f[at + 1]]);
    let id = seq as u16;
    let ipsum = csum_update(word(f, 24), word(f, 18), id);
    f[18..20].copy_from_slice(&id.to_be_bytes());
    f[24..26].copy_from_slice(&ipsum.to_be_bytes());
    if f.len() >= STAMP_AT + 4 {
        let mut usum = word(f, 40);
        for (k, new) in [(seq >> 16) as u16, seq as u16].into_iter().enumerate() {
            let at = STAMP_AT + 2 * k;
            usum = csum_update(usum, word(f, at), new);
            f[at..at + 2].copy_from_slice(&new.to_be_bytes());
        }
        if usum == 0 {
            usum = 0xffff;
        }
        f[40..42].copy_from_slice(&usum.to_be_bytes());
    }
}

fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    unsafe {
        let mut set: libc::cpu_set_t = mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

struct Sock(libc::c_int);

impl Drop for Sock {
    fn drop(&mut self) {
        unsafe {
            libc::close(self.0);
        }
    }
}

fn open_socket(ifindex: i32, bypass: bool) -> io::Result<Sock> {
    unsafe {
        // Protocol 0: the socket only sends; no receive hook is registered.
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = Sock(fd);
        if bypass {
            let one: libc::c_int = 1;
            if libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                &one as *const _ as *const libc::c_void,
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        // A large send buffer so that sendmmsg rarely blocks on it.
        let sndbuf: libc::c_int = 16 << 20;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            &sndbuf as *const _ as *const libc::c_void,
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let mut sll: libc::sockaddr_ll = mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = 0;
        sll.sll_ifindex = ifindex;
        if libc::bind(
            fd,
            &sll as *const _ as *const libc::sockaddr,
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(sock)
    }
}

#[derive(Default)]
struct Result {
    cpu: usize,
    sent: u64,
    /// Frames sent to --dst-port.
    matched: u64,
    start: Option<Instant>,
    end: Option<Instant>,
    calls: u64,
    retries: u64,
    /// sendmmsg calls made while running on another cpu than the one asked
    /// for (the pin was broken, e.g. the cpu went offline).
    off_cpu_calls: u64,
    error: Option<String>,
}

fn sender(
    cpu: usize,
    index: usize,
    cfg: Arc<Config>,
    ifindex: i32,
    src_mac: [u8; 6],
    barrier: Arc<Barrier>,
    abort: Arc<AtomicBool>,
) -> Result {
    let mut res = Result {
        cpu,
        ..Default::default()
    };
    // Setup; on failure still meet the barrier so the others are not stuck.
    let setup = (|| -> std::result::Result<Sock, String> {
        pin_to_cpu(cpu).map_err(|e| format!("cannot pin to cpu{cpu}: {e}"))?;
        open_socket(ifindex, cfg.bypass)
            .map_err(|e| format!("AF_PACKET socket on '{}': {e}", cfg.ifname))
    })();
    let sock = match setup {
        Ok(s) => Some(s),
        Err(e) => {
            abort.store(true, Ordering::SeqCst);
            res.error = Some(e);
            None
        }
    };
    barrier.wait();
    let sock = match sock {
        Some(s) if !abort.load(Ordering::SeqCst) => s,
        _ => return res,
    };

    let ports = cfg.source_ports(index);
    let every = cfg.match_every as usize;
    let nframes = ring_len(ports.len(), every, cfg.batch);
    let mut frames: Vec<Vec<u8>> = (0..nframes)
        .map(|i| {
            let dport = if i % every == 0 {
                cfg.dst_port
            } else {
                cfg.other_port()
            };
            build_frame(&cfg, src_mac, ports[i % ports.len()], dport, cpu)
        })
        .collect();
    // The frames are written (with --unique) only through these, which the
    // iovecs share.
    let ptrs: Vec<(*mut u8, usize)> = frames
        .iter_mut()
        .map(|f| (f.as_mut_ptr(), f.len()))
        .collect();
    let mut iovs: Vec<libc::iovec> = ptrs
        .iter()
        .map(|&(p, len)| libc::iovec {
            iov_base: p as *mut libc::c_void,
            iov_len: len,
        })
        .collect();
    // Two copies back to back so any window of `batch` starting anywhere in
    // the first copy is contiguous.
    let n = iovs.len();
    iovs.extend_from_within(0..n);
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            let mut m: libc::mmsghdr = unsafe { mem::zeroed() };
            m.msg_hdr.msg_iov = iov as *mut libc::iovec;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();

    let start = Instant::now();
    res.start = Some(start);
    let mut pos = 0usize; // index into the frame ring
    let mut backoff = 0u32;
    while res.sent < cfg.count {
        let want = (cfg.count - res.sent).min(cfg.batch as u64) as usize;
        if cfg.unique {
            // The frames about to go get the numbers of their sends (those
            // a short send leaves get theirs again next time).
            for i in 0..want {
                let (p, len) = ptrs[(pos + i) % n];
                // SAFETY: a frame of `frames`, alive and not moved until the
                // end of this function, written only here, between sends.
                let f = unsafe { std::slice::from_raw_parts_mut(p, len) };
                stamp(f, (res.sent + i as u64) as u32);
            }
        }
        let r =
            unsafe { libc::sendmmsg(sock.0, msgs[pos..].as_mut_ptr(), want as libc::c_uint, 0) };
        res.calls += 1;
        if unsafe { libc::sched_getcpu() } != cpu as libc::c_int {
            res.off_cpu_calls += 1;
        }
        if r > 0 {
            res.sent += r as u64;
            pos = (pos + r as usize) % n;
            backoff = 0;
            continue;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR) => {
                // The receiver's backlog (or the send buffer) is full: this
                // frame was not delivered. Retry, yielding if it persists.
                res.retries += 1;
                backoff += 1;
                if backoff > 16 {
                    thread::yield_now();
                }
                if backoff > 100_000 {
                    res.error = Some(format!("sendmmsg keeps failing: {err}"));
                    break;
                }
            }
            _ if r == 0 => {
                res.error = Some("sendmmsg sent nothing".to_string());
                break;
            }
            _ => {
                res.error = Some(format!("sendmmsg: {err}"));
                break;
            }
        }
        if abort.load(Ordering::Relaxed) {
            break;
        }
    }
    res.end = Some(Instant::now());
    // The sends went through the ring in order from index 0.
    res.matched = matched_of(res.sent, cfg.match_every);
    drop(sock);
    drop(frames);
    res
}

fn main() {
    let cfg = parse_args();
    let nframes = (0..cfg.cpus.len())
        .map(|k| {
            ring_len(
                cfg.source_ports(k).len(),
                cfg.match_every as usize,
                cfg.batch,
            )
        })
        .max()
        .unwrap_or(0);
    if nframes.saturating_mul(cfg.size) > 256 << 20 {
        usage_error(&format!(
            "a sender's frame ring would hold {nframes} frames of {} bytes; \
             choose --flows/--ports and --match-every with a smaller common multiple",
            cfg.size
        ));
    }

    let cname = CString::new(cfg.ifname.clone()).unwrap_or_else(|_| die("bad interface name"));
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) } as i32;
    if ifindex == 0 {
        die(&format!(
            "interface '{}': {}",
            cfg.ifname,
            io::Error::last_os_error()
        ));
    }
    if let Some(mtu) = read_sysfs(&cfg.ifname, "mtu").and_then(|m| m.parse::<usize>().ok()) {
        if cfg.size > mtu + 14 {
            die(&format!(
                "size {} exceeds the MTU of '{}' ({} + 14 bytes of Ethernet header)",
                cfg.size, cfg.ifname, mtu
            ));
        }
    }
    let src_mac = cfg
        .src_mac
        .or_else(|| read_sysfs(&cfg.ifname, "address").and_then(|a| parse_mac(&a)))
        .unwrap_or([0x02, 0, 0, 0, 0, 1]);
    let allowed = allowed_cpus();
    for &c in &cfg.cpus {
        if !allowed.contains(&c) {
            die(&format!(
                "cpu{c} is not online or not in this process's affinity mask"
            ));
        }
    }

    let cfg = Arc::new(cfg);
    let barrier = Arc::new(Barrier::new(cfg.cpus.len()));
    let abort = Arc::new(AtomicBool::new(false));
    if !cfg.quiet {
        eprintln!(
            "floodgen: {} frames of {} bytes per cpu on {} from cpus {:?}",
            cfg.count, cfg.size, cfg.ifname, cfg.cpus
        );
    }
    let handles: Vec<_> = cfg
        .cpus
        .iter()
        .enumerate()
        .map(|(index, &cpu)| {
            let (cfg, barrier, abort) = (cfg.clone(), barrier.clone(), abort.clone());
            thread::Builder::new()
                .name(format!("floodgen-cpu{cpu}"))
                .spawn(move || sender(cpu, index, cfg, ifindex, src_mac, barrier, abort))
                .unwrap_or_else(|e| die(&format!("cannot start thread: {e}")))
        })
        .collect();
    let results: Vec<Result> = handles
        .into_iter()
        .map(|h| h.join().unwrap_or_else(|_| die("sender thread panicked")))
        .collect();

    let first = results.iter().filter_map(|r| r.start).min();
    let last = results.iter().filter_map(|r| r.end).max();
    let wall = match (first, last) {
        (Some(a), Some(b)) => b.duration_since(a),
        _ => Duration::ZERO,
    };
    let total: u64 = results.iter().map(|r| r.sent).sum();
    let matched: u64 = results.iter().map(|r| r.matched).sum();
    let rate = |n: u64, d: Duration| {
        if d.as_secs_f64() > 0.0 {
            n as f64 / d.as_secs_f64()
        } else {
            0.0
        }
    };
    let mut per_cpu = Vec::new();
    let mut failed = false;
    for r in &results {
        let el = match (r.start, r.end) {
            (Some(a), Some(b)) => b.duration_since(a),
            _ => Duration::ZERO,
        };
        if let Some(e) = &r.error {
            failed = true;
            eprintln!("floodgen: cpu{}: {e}", r.cpu);
        }
        if r.off_cpu_calls > 0 {
            eprintln!(
                "floodgen: warning: the sender for cpu{} ran {} of {} sendmmsg calls on another cpu",
                r.cpu, r.off_cpu_calls, r.calls
            );
        }
        per_cpu.push(format!(
            "{{\"cpu\":{},\"sent\":{},\"matched\":{},\"elapsed\":{:.6},\"rate\":{:.1},\"calls\":{},\"retries\":{},\"off_cpu_calls\":{},\"error\":{}}}",
            r.cpu,
            r.sent,
            r.matched,
            el.as_secs_f64(),
            rate(r.sent, el),
            r.calls,
            r.retries,
            r.off_cpu_calls,
            match &r.error {
                Some(e) => format!("\"{}\"", e.replace('\\', "\\\\").replace('"', "\\\"")),
                None => "null".to_string(),
            }
        ));
    }
    println!(
        "{{\"ifname\":\"{}\",\"size\":{},\"count_per_cpu\":{},\"cpus\":[{}],\"sent\":{},\"matched\":{},\"flows\":{},\"match_every\":{},\"elapsed\":{:.6},\"rate\":{:.1},\"per_cpu\":[{}]}}",
        cfg.ifname,
        cfg.size,
        cfg.count,
        cfg.cpus
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(","),
        total,
        matched,
        cfg.flows.unwrap_or(u32::from(cfg.ports)),
        cfg.match_every,
        wall.as_secs_f64(),
        rate(total, wall),
        per_cpu.join(",")
    );
    if !cfg.quiet {
        eprintln!(
            "floodgen: sent {} frames in {:.3} s ({:.0} frames/s), {} to port {}",
            total,
            wall.as_secs_f64(),
            rate(total, wall),
            matched,
            cfg.dst_port
        );
    }
    process::exit(if failed { 1 } else { 0 });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cpus: &[usize], flows: Option<u32>, every: u32) -> Config {
        Config {
            ifname: "x".into(),
            count: 0,
            cpus: cpus.to_vec(),
            flows,
            match_every: every,
            quiet: true,
            ..Config::default()
        }
    }

    #[test]
    fn flows_are_split_among_senders_without_overlap() {
        let cfg = config(&[0, 1, 2], Some(1024), 1);
        let all: Vec<Vec<u16>> = (0..3).map(|k| cfg.source_ports(k)).collect();
        assert_eq!(
            all.iter().map(Vec::len).collect::<Vec<_>>(),
            [342, 341, 341]
        );
        let mut merged: Vec<u16> = all.concat();
        merged.sort_unstable();
        assert_eq!(merged, (1024..2048).collect::<Vec<u16>>());
        assert_eq!(&all[1][..3], &[1025, 1028, 1031]);
    }

    #[test]
    fn ports_are_shared_by_senders() {
        let cfg = config(&[0, 1], None, 1);
        assert_eq!(cfg.source_ports(0), cfg.source_ports(1));
        assert_eq!(cfg.source_ports(0).len(), 256);
        assert_eq!(cfg.other_port(), 10);
    }

    #[test]
    fn ring_holds_whole_cycles_of_ports_and_matches() {
        assert_eq!(ring_len(512, 10, 256), 2560);
        assert_eq!(ring_len(256, 1, 256), 256);
        assert_eq!(ring_len(100, 1, 256), 300);
        assert_eq!(ring_len(1, 1, 256), 256);
        assert_eq!(ring_len(3, 10, 1), 30);
        for (ports, every, batch) in [(512, 10, 256), (341, 10, 64), (7, 3, 1024)] {
            let n = ring_len(ports, every, batch);
            assert!(n >= batch && n % ports == 0 && n % every == 0);
        }
    }

    #[test]
    fn matched_counts_every_nth_frame_from_the_first() {
        assert_eq!(matched_of(0, 10), 0);
        assert_eq!(matched_of(1, 10), 1);
        assert_eq!(matched_of(10, 10), 1);
        assert_eq!(matched_of(11, 10), 2);
        assert_eq!(matched_of(1_000_000, 10), 100_000);
        assert_eq!(matched_of(5, 1), 5);
        // Against a direct count over a ring that wraps.
        let n = ring_len(341, 10, 256);
        let direct = (0..100_003u64).filter(|i| (i % n as u64) % 10 == 0).count() as u64;
        assert_eq!(matched_of(100_003, 10), direct);
    }

    /// Whether `f`'s IPv4 and UDP checksums are right.
    fn checksums_valid(f: &[u8]) -> bool {
        let mut sum = csum_add(0, &f[26..34]);
        sum += 17 + u32::from(u16::from_be_bytes([f[38], f[39]]));
        sum = csum_add(sum, &f[34..]);
        csum_fold(csum_add(0, &f[14..34])) == 0 && csum_fold(sum) == 0
    }

    #[test]
    fn stamped_frames_differ_and_keep_valid_checksums() {
        for size in [42, 49, 50, 64, 1500] {
            let cfg = Config {
                size,
                ..config(&[0], None, 1)
            };
            let mut f = build_frame(&cfg, [2, 0, 0, 0, 0, 1], 1500, 9, 0);
            let mut seen = std::collections::HashSet::new();
            for seq in [0u32, 1, 2, 0xffff, 0x1_0000, 0x5a5a_1234, u32::MAX] {
                stamp(&mut f, seq);
                assert!(checksums_valid(&f), "size {size} seq {seq:#x}");
                assert_eq!(u16::from_be_bytes([f[18], f[19]]), seq as u16);
                if size >= 50 {
                    assert_eq!(f[46..50], seq.to_be_bytes());
                    assert!(seen.insert(f.clone()));
                }
            }
        }
    }

    #[test]
    fn frame_carries_ports_and_valid_checksums() {
        let cfg = config(&[0], None, 1);
        let f = build_frame(&cfg, [2, 0, 0, 0, 0, 1], 1500, 10, 0);
        assert_eq!(f.len(), 64);
        assert_eq!(u16::from_be_bytes([f[34], f[35]]), 1500);
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 10);
        assert_eq!(csum_fold(csum_add(0, &f[14..34])), 0);
        let mut sum = csum_add(0, &f[26..34]);
        sum += 17 + u32::from(u16::from_be_bytes([f[38], f[39]]));
        sum = csum_add(sum, &f[34..]);
        assert_eq!(csum_fold(sum), 0);
    }
}
