//! The option table: every option once, with its short and long names,
//! its value and its help lines. The clap definition, the help text, the
//! short usage, the man-page check and the shell completions are all made
//! from it.

use clap::{Arg, ArgAction, Command};

use crate::options::{Direction, Vantage};

use super::VERSION;

pub(super) struct OptSpec {
    pub(super) id: &'static str,
    /// None for a long-only option (tcpdump's style for rare ones).
    pub(super) short: Option<char>,
    /// `{list}` stands for the vantage's list word (`cpu`, `queue`,
    /// `numa`).
    pub(super) long: &'static str,
    /// Value name; None for a flag. `{LIST}` is the list word in capitals.
    /// A name ending in `?` is an optional value, given only as
    /// `--opt=value` (`--flows[=N]`).
    pub(super) value: Option<&'static str>,
    /// Help lines; the first is the summary. See [`expand`] for the
    /// placeholders.
    pub(super) help: &'static [&'static str],
}

/// Every option, in help order: the original's, then the ones added
/// since.
pub(super) const OPTIONS: &[OptSpec] = &[
    OptSpec {
        id: "count",
        short: Some('c'),
        long: "count",
        value: Some("N"),
        help: &[
            "Exit after receiving N packets.",
            "  The first N in time over all {plural}.",
        ],
    },
    OptSpec {
        id: "direction",
        short: Some('d'),
        long: "direction",
        value: Some("DIRECTION"),
        help: &[
            "Capture only packets matching DIRECTION.",
            "  DIRECTION can be rx, tx, or rxtx.",
            "  Default: {direction}",
        ],
    },
    OptSpec {
        id: "help",
        short: Some('h'),
        long: "help",
        value: None,
        help: &["Display this help and exit."],
    },
    OptSpec {
        id: "list",
        short: Some('l'),
        long: "{list}-list",
        value: Some("{LIST}LIST"),
        help: &["Capture only on {plural} in {LIST}LIST.", "  Ex. 0,2-4,6"],
    },
    OptSpec {
        id: "mask",
        short: Some('m'),
        long: "{list}-mask",
        value: Some("{LIST}MASK"),
        help: &["Capture only on {plural} in {LIST}MASK.", "  Ex. 5d"],
    },
    OptSpec {
        id: "promiscuous",
        short: Some('p'),
        long: "promiscuous",
        value: None,
        help: &["Put the interface into promiscuous mode."],
    },
    OptSpec {
        id: "packet-buffered",
        short: Some('U'),
        long: "packet-buffered",
        value: None,
        help: &["Write packets to pcap files as they arrive."],
    },
    OptSpec {
        id: "verbose",
        short: Some('v'),
        long: "verbose",
        value: None,
        help: &["Produce verbose output."],
    },
    OptSpec {
        id: "version",
        short: Some('V'),
        long: "version",
        value: None,
        help: &["Display the version and exit."],
    },
    OptSpec {
        id: "write",
        short: Some('w'),
        long: "write",
        value: Some("FILE"),
        help: &[
            "Write {per} pcap files named after FILE.",
            "  Ex. packets.pcap -> packets-0.pcap, ...",
            "  FILE - writes the one captured {subject}",
            "  to stdout.",
        ],
    },
    OptSpec {
        id: "buffer-size",
        short: Some('B'),
        long: "buffer-size",
        value: Some("KIB"),
        help: &[
            "Ring size per captured {subject}, in KiB.",
            "  Default: 65536",
            "  (8192 with -s below 1514;",
            "  less past 4 or 32 streams)",
        ],
    },
    OptSpec {
        id: "snapshot-length",
        short: Some('s'),
        long: "snapshot-length",
        value: Some("SNAPLEN"),
        help: &[
            "Keep at most SNAPLEN bytes of each packet.",
            "  Default (and with 0): 262144",
        ],
    },
    OptSpec {
        id: "time-stamp-precision",
        short: None,
        long: "time-stamp-precision",
        value: Some("PRECISION"),
        help: &[
            "Write pcap timestamps in PRECISION.",
            "  PRECISION can be micro or nano.",
            "  Default: micro",
        ],
    },
    OptSpec {
        id: "filter",
        short: None,
        long: "filter",
        value: Some("EXPRESSION"),
        help: &[
            "Capture only packets matching EXPRESSION,",
            "  a tcpdump filter (pcap-filter(7)).",
        ],
    },
    OptSpec {
        id: "filter-file",
        short: Some('F'),
        long: "filter-file",
        value: Some("FILE"),
        help: &["Read the filter expression from FILE."],
    },
    OptSpec {
        id: "live",
        short: None,
        long: "live",
        value: None,
        help: &[
            "Show per-{subject} rates on stderr while",
            "  capturing (a table on a terminal).",
        ],
    },
    OptSpec {
        id: "interval",
        short: None,
        long: "interval",
        value: Some("SECONDS"),
        help: &["Redraw --live every SECONDS.", "  Default: 1"],
    },
    OptSpec {
        id: "pcapng",
        short: None,
        long: "pcapng",
        value: None,
        help: &[
            "With -w, write one pcapng file holding",
            "  every stream (FILE itself; - for",
            "  stdout, any number of streams).",
        ],
    },
    OptSpec {
        id: "file-size",
        short: Some('C'),
        long: "file-size",
        value: Some("FILE_SIZE"),
        help: &[
            "Start a new file when one has more than",
            "  FILE_SIZE million bytes (tcpdump -C).",
        ],
    },
    OptSpec {
        id: "rotate-seconds",
        short: Some('G'),
        long: "rotate-seconds",
        value: Some("ROTATE_SECONDS"),
        help: &[
            "Start a new file every ROTATE_SECONDS,",
            "  FILE through strftime (tcpdump -G).",
        ],
    },
    OptSpec {
        id: "file-count",
        short: Some('W'),
        long: "file-count",
        value: Some("FILECOUNT"),
        help: &[
            "With -C keep FILECOUNT files (a ring);",
            "  with -G stop after FILECOUNT files.",
        ],
    },
    OptSpec {
        id: "flows",
        short: None,
        long: "flows",
        value: Some("N?"),
        help: &[
            "After the report, list the biggest flows",
            "  (N rows, 0 all) and their {plural}.",
            "  Default: 20",
        ],
    },
    OptSpec {
        id: "flows-max",
        short: None,
        long: "flows-max",
        value: Some("N"),
        help: &["Track at most N flows.", "  Default: 1000000"],
    },
    OptSpec {
        id: "flows-idle",
        short: None,
        long: "flows-idle",
        value: Some("SECONDS"),
        help: &[
            "Forget flows idle for SECONDS",
            "  (300 with --metrics unless given).",
        ],
    },
    OptSpec {
        id: "repeats",
        short: None,
        long: "repeats",
        value: Some("MIN?"),
        help: &[
            "After the report, list packets that",
            "  repeat (MIN copies or more) and their",
            "  {plural}. Default: 10",
        ],
    },
    OptSpec {
        id: "drops",
        short: None,
        long: "drops",
        value: None,
        help: &[
            "Count the kernel's drops of packets on",
            "  INTERFACE per cpu and reason (an eBPF",
            "  program at skb:kfree_skb); with --flows",
            "  per flow too (DROPS).",
        ],
    },
    OptSpec {
        id: "path",
        short: None,
        long: "path",
        value: None,
        help: &[
            "With --flows, each flow's path: receive",
            "  queue, driver cpu, the application's",
            "  cpu and process, against the steering",
            "  configuration (eBPF programs).",
        ],
    },
    OptSpec {
        id: "metrics",
        short: None,
        long: "metrics",
        value: Some("[ADDR:]PORT"),
        help: &[
            "Serve the counters for Prometheus at",
            "  http://ADDR:PORT/metrics while capturing.",
            "  ADDR default: 127.0.0.1",
        ],
    },
    OptSpec {
        id: "json",
        short: None,
        long: "json",
        value: None,
        help: &["Print the report as one JSON object."],
    },
    OptSpec {
        id: "rss-hash",
        short: None,
        long: "rss-hash",
        value: Some("SRC,SPORT,DST,DPORT"),
        help: &[
            "Print the Toeplitz RSS hash of a tuple",
            "  (and with INTERFACE its queue); no",
            "  capture.",
        ],
    },
    OptSpec {
        id: "rss-key",
        short: None,
        long: "rss-key",
        value: Some("KEY"),
        help: &[
            "The key for --rss-hash, as 6d:5a:...",
            "  (else the interface's, else Microsoft's)",
        ],
    },
    OptSpec {
        id: "xdp",
        short: None,
        long: "xdp",
        value: Some("MODE?"),
        help: &[
            "Capture received packets at the XDP hook",
            "  of INTERFACE (before RPS/RFS in native",
            "  mode). MODE can be native, generic, or",
            "  auto. Default: auto",
        ],
    },
    OptSpec {
        id: "vantage",
        short: None,
        long: "vantage",
        value: Some("VANTAGE"),
        help: &[
            "Split packets into streams by VANTAGE.",
            "  VANTAGE can be cpu, queue, or numa.",
            "  Default: {vantage}",
        ],
    },
    OptSpec {
        id: "interface",
        short: Some('i'),
        long: "interface",
        value: Some("INTERFACE"),
        help: &[
            "Capture on INTERFACE (tcpdump's -i).",
            "  Every argument is then the filter",
            "  expression; any: every interface.",
        ],
    },
    OptSpec {
        id: "duration",
        short: None,
        long: "duration",
        value: Some("SECONDS"),
        help: &[
            "Stop after SECONDS, as Ctrl-C does.",
            "  Fractions allowed: 2.5",
        ],
    },
];

/// Fills in a help line or option name for `vantage` under `name`:
/// `{list}`/`{LIST}` the list word, `{subject}`/`{plural}` a stream and
/// streams, `{per}` the adjective (`per-cpu`), `{direction}` and
/// `{vantage}` the defaults of the name.
pub(super) fn expand(text: &str, name: &str, vantage: Vantage) -> String {
    let per = match vantage {
        Vantage::Cpu => "per-cpu",
        Vantage::Queue => "per-queue",
        Vantage::Numa => "per-node",
    };
    text.replace("{list}", vantage.list_word())
        .replace("{LIST}", &vantage.list_word().to_uppercase())
        .replace("{subject}", vantage.subject())
        .replace("{plural}", vantage.plural())
        .replace("{per}", per)
        .replace("{direction}", Direction::for_name(name).as_str())
        .replace("{vantage}", Vantage::for_name(name).as_str())
}

/// (short, long, takes a value) for every option under `vantage`: for the
/// man-page check and shell completions.
pub fn option_names(vantage: Vantage) -> Vec<(Option<char>, String, bool)> {
    OPTIONS
        .iter()
        .map(|o| (o.short, expand(o.long, "", vantage), o.value.is_some()))
        .collect()
}

/// The clap definition of the command line for `name` with `vantage`'s
/// list and mask options.
pub fn command(name: &str, vantage: Vantage) -> Command {
    let mut cmd = Command::new(name.to_string())
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .infer_long_args(true)
        .args_override_self(true)
        .version(VERSION)
        .about("Capture packets in per-cpu, per-queue or per-node streams");
    for o in OPTIONS {
        let mut arg = Arg::new(o.id)
            .long(expand(o.long, name, vantage))
            .help(expand(o.help[0], name, vantage));
        if let Some(c) = o.short {
            arg = arg.short(c);
        }
        let arg = match o.value {
            Some(v) if v.ends_with('?') => arg
                .value_name(v.trim_end_matches('?'))
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("")
                .action(ArgAction::Set),
            Some(v) => arg
                .value_name(expand(v, name, vantage))
                .num_args(1)
                .allow_hyphen_values(true)
                .action(ArgAction::Set),
            None => arg.action(ArgAction::SetTrue),
        };
        let arg = original_abbreviations(o.id, name, vantage)
            .into_iter()
            .fold(arg, Arg::alias);
        cmd = cmd.arg(arg);
    }
    let interface = match vantage {
        Vantage::Queue => "Capture on INTERFACE (required: its queues are the streams)",
        _ => "Capture on INTERFACE (default: every interface)",
    };
    // The interface, then (as tcpdump takes it) the words of a filter
    // expression; with -i every word is the expression.
    cmd.arg(
        Arg::new(POSITIONAL)
            .value_name("INTERFACE")
            .num_args(0..)
            .action(ArgAction::Append)
            .help(format!("{interface}; words after it: a filter expression")),
    )
}

/// The clap id of the positional arguments: the interface, then the
/// words of a filter expression.
pub const POSITIONAL: &str = "arguments";

/// The original's options (rxtxcpu 1.2.6), by id.
pub(super) const ORIGINAL: &[&str] = &[
    "count",
    "direction",
    "help",
    "list",
    "mask",
    "promiscuous",
    "packet-buffered",
    "verbose",
    "version",
    "write",
];

/// The abbreviations of option `id` that were unambiguous among the
/// original's options but are not among today's (`--d`, once only
/// `--direction`, now also `--duration`): hidden aliases keep the
/// original's command lines working. Exact names win in clap before any
/// prefix is inferred.
pub(super) fn original_abbreviations(id: &str, name: &str, vantage: Vantage) -> Vec<String> {
    if !ORIGINAL.contains(&id) {
        return Vec::new();
    }
    let long_of = |o: &OptSpec| expand(o.long, name, vantage);
    let all: Vec<String> = OPTIONS.iter().map(long_of).collect();
    let original: Vec<String> = OPTIONS
        .iter()
        .filter(|o| ORIGINAL.contains(&o.id))
        .map(long_of)
        .collect();
    let Some(long) = OPTIONS.iter().find(|o| o.id == id).map(long_of) else {
        return Vec::new();
    };
    let count = |set: &[String], p: &str| set.iter().filter(|l| l.starts_with(p)).count();
    (1..long.len())
        .map(|n| &long[..n])
        .filter(|p| count(&original, p) == 1 && count(&all, p) > 1)
        .map(str::to_string)
        .collect()
}

/// An option as messages name it: `-c [--count]`, `--live`.
pub(super) fn option_display(o: &OptSpec, vantage: Vantage) -> String {
    let long = expand(o.long, "", vantage);
    match o.short {
        Some(c) => format!("-{c} [--{long}]"),
        None => format!("--{long}"),
    }
}
