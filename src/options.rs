//! What the user asked for, as plain data: the options of one capture
//! ([`Options`]) and the values they are made of. Built by [`crate::cli`]
//! from the command line; every later stage takes what it needs from here
//! (or a small configuration of its own made from it) and nothing here
//! knows how a capture runs.

use std::time::Duration;

use crate::cpuset::CpuSet;

/// tcpdump's default and largest snapshot length.
pub const DEFAULT_SNAPLEN: u32 = 262_144;

/// Rows of the `--flows` table by default.
pub const DEFAULT_FLOW_ROWS: usize = 20;

/// Default per-stream ring size in KiB while few streams are captured, at
/// a snapshot length that keeps whole frames (see `default_bytes` in
/// source/afpacket/ring_size.rs, and README, "Memory").
pub const DEFAULT_BUFFER_KIB: u32 = 64 * 1024;

/// The same with a snapshot length shorter than a whole Ethernet frame.
pub const SNAPPED_BUFFER_KIB: u32 = 8 * 1024;

/// Which packets to capture, by the kernel's packet type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Rx,
    Tx,
    RxTx,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Rx => "rx",
            Direction::Tx => "tx",
            Direction::RxTx => "rxtx",
        }
    }

    /// The default the program's name implies: `rxcpu`, `rxqueue` and
    /// `rxnuma` capture receive, `txcpu`, `txqueue` and `txnuma` transmit,
    /// any other name both.
    pub fn for_name(name: &str) -> Direction {
        NAMES
            .iter()
            .find(|(n, _, _)| *n == name)
            .map_or(Direction::RxTx, |(_, _, d)| *d)
    }
}

/// Timestamp resolution of the pcap output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Micro,
    Nano,
}

/// How `-l`/`-m` were given: the messages name the option's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectionKind {
    List,
    Mask,
}

impl SelectionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SelectionKind::List => "list",
            SelectionKind::Mask => "mask",
        }
    }
}

/// The streams named by `-l` or `-m` (cpus, queues or numa nodes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub set: CpuSet,
    pub kind: SelectionKind,
}

/// A validated command line. What it means on this machine (which
/// streams exist) is worked out by [`crate::vantage::plan`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Basename of `argv[0]`; starts every message.
    pub name: String,
    pub vantage: Vantage,
    /// Stop after this many packets in total; 0 means no limit.
    pub count: u64,
    pub direction: Direction,
    /// `-l`/`-m`; None: every stream.
    pub selection: Option<Selection>,
    pub promiscuous: bool,
    pub packet_buffered: bool,
    pub verbose: bool,
    /// `-w FILE`; `-` is stdout.
    pub write: Option<String>,
    /// Per-stream ring size in bytes (`-B`); None: the default, which
    /// depends on the number of streams (see `default_bytes` in
    /// source/afpacket/ring_size.rs).
    pub buffer_bytes: Option<usize>,
    pub snaplen: u32,
    pub precision: Precision,
    /// None: every interface of the namespace.
    pub interface: Option<String>,
    /// A filter expression (`--filter`), or the file to read it from
    /// (`-F`); compiled once the link type is known.
    pub filter: Option<FilterSource>,
    /// `--pcapng`: one merged pcapng file instead of per-stream pcap.
    pub pcapng: bool,
    /// -C, -G, -W.
    pub rotation: Rotation,
    /// `--flows[=N]`: the flow table's rows (0: all); None: no flows.
    pub flows: Option<usize>,
    /// `--flows-max`.
    pub flows_max: u64,
    /// `--flows-idle`: seconds after which an idle flow leaves the table
    /// (300 with `--metrics`); None: flows stay.
    pub flows_idle: Option<u32>,
    /// `--repeats[=MIN]`: the copies that make a packet a repeating one;
    /// None: repeats are not looked for.
    pub repeats: Option<u64>,
    /// `--drops`: the kernel's drops on the interface, per cpu and reason.
    pub drops: bool,
    /// `--path` (with `--flows`): each flow's receive queue, driver cpu,
    /// application cpu and process, from kernel probes.
    pub path: bool,
    /// `--metrics=[ADDR:]PORT`: where the Prometheus endpoint listens.
    pub metrics: Option<std::net::SocketAddr>,
    /// `--json`.
    pub json: bool,
    /// `--live`, redrawn every this long (`--interval`).
    pub live: Option<std::time::Duration>,
    /// `--xdp[=MODE]`: the XDP hook instead of packet sockets.
    pub xdp: Option<XdpMode>,
    /// `--duration`: stop this long after the capture started, as SIGINT
    /// does.
    pub duration: Option<std::time::Duration>,
    /// What the command line implied, for `-v` (`--xdp` taking received
    /// packets only, `-i any`).
    pub notes: Vec<String>,
}

impl Options {
    /// Whether anything reads the packets' bytes: the files (`-w`,
    /// `--pcapng`), the flow table (`--flows`, and `--path` with it) and
    /// the repeat window. Counting, `-c`, `--live` and `--metrics` read
    /// only what the ring's headers say (how many, how long, when).
    pub fn reads_packet_data(&self) -> bool {
        self.write.is_some() || self.flows.is_some() || self.repeats.is_some()
    }
}

/// Where the filter expression comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterSource {
    Expression(String),
    File(String),
}

/// How packets are split into streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vantage {
    Cpu,
    Queue,
    Numa,
}

/// Every name the program answers to, with its vantage and default
/// direction.
pub const NAMES: &[(&str, Vantage, Direction)] = &[
    ("rxtxcpu", Vantage::Cpu, Direction::RxTx),
    ("rxcpu", Vantage::Cpu, Direction::Rx),
    ("txcpu", Vantage::Cpu, Direction::Tx),
    ("rxtxqueue", Vantage::Queue, Direction::RxTx),
    ("rxqueue", Vantage::Queue, Direction::Rx),
    ("txqueue", Vantage::Queue, Direction::Tx),
    ("rxtxnuma", Vantage::Numa, Direction::RxTx),
    ("rxnuma", Vantage::Numa, Direction::Rx),
    ("txnuma", Vantage::Numa, Direction::Tx),
];

impl Vantage {
    /// The vantage the program's name implies; any other name is rxtxcpu.
    pub fn for_name(name: &str) -> Vantage {
        NAMES
            .iter()
            .find(|(n, _, _)| *n == name)
            .map_or(Vantage::Cpu, |(_, v, _)| *v)
    }

    /// `--vantage` values.
    pub fn parse(s: &str) -> Option<Vantage> {
        match s {
            "cpu" => Some(Vantage::Cpu),
            "queue" => Some(Vantage::Queue),
            "numa" => Some(Vantage::Numa),
            _ => None,
        }
    }

    /// As `--vantage` and JSON name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Vantage::Cpu => "cpu",
            Vantage::Queue => "queue",
            Vantage::Numa => "numa",
        }
    }

    /// One stream, in messages: `cpu`, `queue`, `numa node`.
    pub fn subject(self) -> &'static str {
        match self {
            Vantage::Cpu => "cpu",
            Vantage::Queue => "queue",
            Vantage::Numa => "numa node",
        }
    }

    /// Several streams, in messages.
    pub fn plural(self) -> &'static str {
        match self {
            Vantage::Cpu => "cpus",
            Vantage::Queue => "queues",
            Vantage::Numa => "numa nodes",
        }
    }

    /// The word of the list and mask options: `--cpu-list`,
    /// `--queue-mask`, `--numa-list`; `Invalid numa list '...'`.
    pub fn list_word(self) -> &'static str {
        match self {
            Vantage::Cpu => "cpu",
            Vantage::Queue => "queue",
            Vantage::Numa => "numa",
        }
    }
}

/// `--xdp[=MODE]`: which XDP hook to attach to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpMode {
    /// Native where the driver supports it, else generic.
    #[default]
    Auto,
    /// Driver mode: in the driver's receive, before RPS/RFS.
    Native,
    /// Skb mode: in the core receive path, after RPS/RFS.
    Generic,
}

impl XdpMode {
    pub fn parse(s: &str) -> Option<XdpMode> {
        match s {
            "auto" => Some(XdpMode::Auto),
            "native" => Some(XdpMode::Native),
            "generic" => Some(XdpMode::Generic),
            _ => None,
        }
    }
}

/// -C counts in units of a million bytes, as tcpdump does.
pub const FILE_SIZE_UNIT: u64 = 1_000_000;

/// The rotation options of a capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// -C, in bytes (FILE_SIZE times a million).
    pub size: Option<u64>,
    /// -G.
    pub seconds: Option<u64>,
    /// -W.
    pub count: Option<u32>,
}

impl Rotation {
    /// Whether files rotate at all (-W alone does nothing in tcpdump, and
    /// is a usage error here).
    pub fn is_on(&self) -> bool {
        self.size.is_some() || self.seconds.is_some()
    }
}

/// How often the view redraws by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
