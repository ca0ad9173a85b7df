//! The command line: options, the invocation name, help and usage text.
//!
//! Parsing follows getopt_long, as the original did: bundled short options
//! (`-pU`), attached values (`-c6`), `--opt=value` and `--opt value`,
//! unambiguous long-option prefixes (`--verb`), the last of a repeated
//! option wins. clap does the tokenizing; every error it reports is turned
//! into the original's exact message.

use std::ffi::OsString;
use std::path::Path;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, Command};

use crate::consumers::rotate;
use crate::cpuset::CpuSet;
use crate::options::Rotation;

use crate::options::Vantage;
use crate::options::{
    Direction, FilterSource, Options, Precision, Selection, SelectionKind, DEFAULT_FLOW_ROWS,
    DEFAULT_SNAPLEN,
};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    Run(Box<Options>),
    /// Text for stdout, then exit 0.
    Print(String),
    /// `--rss-hash`: compute, print, no capture.
    RssHash(RssQuery),
}

/// A `--rss-hash` query.
#[derive(Debug)]
pub struct RssQuery {
    pub tuple: crate::steering::rss::Tuple,
    pub key: Option<Vec<u8>>,
    pub interface: Option<String>,
    /// `-v`: say which key and table were used (stderr).
    pub verbose: bool,
    /// `--json`: the answer as one JSON object.
    pub json: bool,
}

/// A usage error: the message (without the name prefix) for stderr; the
/// caller adds the short usage and exits 2.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

/// The basename of `argv[0]`, as the original uses it in every message.
pub fn invoked_name(argv0: Option<&OsString>) -> String {
    argv0
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "rxtxcpu".to_string())
}

struct OptSpec {
    id: &'static str,
    /// None for a long-only option (tcpdump's style for rare ones).
    short: Option<char>,
    /// `{list}` stands for the vantage's list word (`cpu`, `queue`,
    /// `numa`).
    long: &'static str,
    /// Value name; None for a flag. `{LIST}` is the list word in capitals.
    /// A name ending in `?` is an optional value, given only as
    /// `--opt=value` (`--flows[=N]`).
    value: Option<&'static str>,
    /// Help lines; the first is the summary. See [`expand`] for the
    /// placeholders.
    help: &'static [&'static str],
}

/// Every option, in help order: the original's, then the ones added since. The clap definition, help text, short usage
/// and man-page check are all generated from this one table.
const OPTIONS: &[OptSpec] = &[
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
fn expand(text: &str, name: &str, vantage: Vantage) -> String {
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
const ORIGINAL: &[&str] = &[
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
fn original_abbreviations(id: &str, name: &str, vantage: Vantage) -> Vec<String> {
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

const HELP_COLUMN: usize = 33;

/// `--help` text for stdout.
pub fn help(name: &str, vantage: Vantage) -> String {
    // The queue vantage's streams are the interface's queues: it needs one.
    let interface = match vantage {
        Vantage::Queue => "INTERFACE",
        _ => "[INTERFACE]",
    };
    let mut out = format!("Usage:\n  {name} [OPTIONS] {interface}\n\nOptions:\n");
    for o in OPTIONS {
        let short = o.short.map(|c| format!("-{c},")).unwrap_or_default();
        let long = expand(o.long, name, vantage);
        let left = match o.value {
            Some(v) if v.ends_with('?') => {
                format!("  {short:<3} [--{long}[={}]]", v.trim_end_matches('?'))
            }
            Some(v) => format!("  {short:<3} [--{long}={}]", expand(v, name, vantage)),
            None => format!("  {short:<3} [--{long}]"),
        };
        // The original's layout: descriptions in a column at 33; a longer
        // option gets a line of its own.
        let mut l = left.as_str();
        if l.len() >= HELP_COLUMN {
            out.push_str(&format!("{l}\n"));
            l = "";
        }
        for line in o.help {
            let line = expand(line, name, vantage);
            out.push_str(&format!("{l:<HELP_COLUMN$}# {line}\n"));
            l = "";
        }
    }
    let trailer = match vantage {
        Vantage::Queue => {
            "\nINTERFACE is required: its queues are the streams.\n\
             Per-queue counts go to stdout at the end (Ctrl-C, SIGTERM, -c N or\n\
             --duration).\n"
        }
        Vantage::Numa => {
            "\nWith no INTERFACE, capture on every interface of the network namespace.\n\
             Per-node counts go to stdout at the end (Ctrl-C, SIGTERM, -c N or\n\
             --duration).\n"
        }
        Vantage::Cpu => {
            "\nWith no INTERFACE, capture on every interface of the network namespace.\n\
             Per-cpu counts go to stdout at the end (Ctrl-C, SIGTERM, -c N or\n\
             --duration).\n"
        }
    };
    out.push_str(trailer);
    out.push_str(
        "Words after INTERFACE are a filter expression, as tcpdump takes them\n\
         (\"eth0 udp port 9\" is --filter='udp port 9' eth0); with -i, every word.\n",
    );
    out
}

/// The short usage printed after a usage error, wrapped at 79 columns with
/// continuation lines under the first bracket.
pub fn usage(name: &str, vantage: Vantage) -> String {
    // (sort key, item): the original's order is help, then the rest by
    // long name, the list option where rxtxcpu has --cpu-list (the siblings
    // only substitute the subject).
    let mut items = vec![(String::new(), "[--help]".to_string())];
    for o in OPTIONS {
        let long = expand(o.long, name, vantage);
        let item = match (o.id, o.value) {
            ("help" | "mask", _) => continue,
            ("list", _) => {
                let w = vantage.list_word();
                let c = w.to_uppercase();
                format!("[--{w}-list={c}LIST|--{w}-mask={c}MASK]")
            }
            (_, Some(v)) if v.ends_with('?') => {
                format!("[--{long}[={}]]", v.trim_end_matches('?'))
            }
            (_, Some(v)) => format!("[--{long}={}]", expand(v, name, vantage)),
            (_, None) => format!("[--{long}]"),
        };
        items.push((expand(o.long, name, Vantage::Cpu), item));
    }
    items[1..].sort();
    let items = items.into_iter().map(|(_, item)| item);
    let prefix = format!("Usage: {name} ");
    let indent = " ".repeat(prefix.len());
    let mut out = String::new();
    let mut line = prefix.clone();
    for item in items {
        let fresh = line == prefix || line == indent;
        if !fresh && line.len() + 1 + item.len() > 79 {
            out.push_str(line.trim_end());
            out.push('\n');
            line = indent.clone();
        }
        if line != prefix && line != indent {
            line.push(' ');
        }
        line.push_str(&item);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// The vantage a command line asks for: `--vantage` if it has a valid one,
/// else the name's. Decides which option names the real parse accepts, and
/// which usage follows a usage error.
pub fn vantage_of(name: &str, args: &[OsString]) -> Vantage {
    let default = Vantage::for_name(name);
    // A first, lenient pass that knows every vantage's list and mask
    // names (so `--queue-list` with `--vantage=queue` under the name
    // rxtxcpu gets this far), only to find --vantage.
    let mut cmd = command(name, default);
    let aliases: Vec<String> = [Vantage::Cpu, Vantage::Queue, Vantage::Numa]
        .iter()
        .filter(|v| **v != default)
        .map(|v| v.list_word().to_string())
        .collect();
    for (id, what) in [("list", "list"), ("mask", "mask")] {
        let names: Vec<String> = aliases.iter().map(|w| format!("{w}-{what}")).collect();
        cmd = cmd.mut_arg(id, |a| a.aliases(names));
    }
    match cmd.try_get_matches_from(args) {
        Ok(m) => m
            .get_one::<String>("vantage")
            .and_then(|v| Vantage::parse(v))
            .unwrap_or(default),
        Err(_) => default,
    }
}

/// Parses the arguments after `argv[0]`.
pub fn parse(name: &str, args: &[OsString]) -> Result<Invocation, UsageError> {
    // Messages quote what the user typed; a control character in it (a
    // newline in an interface name) must not break the one-line message.
    parse_args(name, args).map_err(|UsageError(m)| UsageError(escape_controls(&m)))
}

/// Escapes control characters, so that text the user typed stays on one
/// line in a message.
pub fn escape_controls(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn parse_args(name: &str, args: &[OsString]) -> Result<Invocation, UsageError> {
    let vantage = vantage_of(name, args);
    let m = command(name, vantage)
        .try_get_matches_from(args)
        .map_err(|e| translate(e, args, name, vantage))?;

    // getopt acts on -h and -V as soon as it sees them; whatever else the
    // line holds does not matter then.
    if m.get_flag("help") {
        return Ok(Invocation::Print(help(name, vantage)));
    }
    if m.get_flag("version") {
        return Ok(Invocation::Print(format!("{name} version {VERSION}\n")));
    }

    let value = |id: &str| m.get_one::<String>(id).map(String::as_str);
    let invalid = |what: &str, v: &str| UsageError(format!("Invalid {what} '{v}'."));

    let count = match value("count") {
        Some(v) => parse_decimal(v).ok_or_else(|| invalid("count", v))?,
        None => 0,
    };
    let direction = match value("direction") {
        Some("rx") => Direction::Rx,
        Some("tx") => Direction::Tx,
        Some("rxtx") => Direction::RxTx,
        Some(v) => return Err(invalid("direction", v)),
        None => Direction::for_name(name),
    };
    if let Some(v) = value("vantage") {
        if Vantage::parse(v).is_none() {
            return Err(invalid("vantage", v));
        }
    }
    let word = vantage.list_word();
    let list = value("list")
        .map(|v| CpuSet::parse_list(v).ok_or_else(|| invalid(&format!("{word} list"), v)))
        .transpose()?;
    let mask = value("mask")
        .map(|v| CpuSet::parse_mask(v).ok_or_else(|| invalid(&format!("{word} mask"), v)))
        .transpose()?;
    // Values out of range say the range, as the rss hash port does.
    let out_of_range = |what: &str, v: &str, range: &str| {
        UsageError(format!("Invalid {what} '{v}' (expected {range})."))
    };
    let buffer_bytes = match value("buffer-size") {
        Some(v) => Some(
            parse_decimal(v)
                .filter(|&k| (1..=MAX_BUFFER_KIB).contains(&k))
                .ok_or_else(|| out_of_range("buffer size", v, &format!("1-{MAX_BUFFER_KIB} KiB")))?
                as usize
                * 1024,
        ),
        None => None,
    };
    let snaplen = match value("snapshot-length") {
        Some(v) => match parse_decimal(v) {
            Some(0) => DEFAULT_SNAPLEN,
            Some(n) if n <= u64::from(DEFAULT_SNAPLEN) => n as u32,
            _ => {
                return Err(out_of_range(
                    "snapshot length",
                    v,
                    &format!("0-{DEFAULT_SNAPLEN}"),
                ))
            }
        },
        None => DEFAULT_SNAPLEN,
    };
    let precision = match value("time-stamp-precision") {
        Some("micro") => Precision::Micro,
        Some("nano") => Precision::Nano,
        Some(v) => return Err(invalid("time stamp precision", v)),
        None => Precision::Micro,
    };
    let duration = value("duration")
        .map(|v| {
            parse_seconds(v)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| out_of_range("duration", v, "seconds above 0, as 10 or 2.5"))
        })
        .transpose()?;
    let mut notes = Vec::new();

    // The interface and a filter expression, as tcpdump takes them: the
    // first word is the interface and the rest the expression, or with
    // -i every word is the expression.
    let words: Vec<&str> = m
        .get_many::<String>(POSITIONAL)
        .map(|v| v.map(String::as_str).collect())
        .unwrap_or_default();
    let dash_i = value("interface");
    let (interface, expression) = match dash_i {
        Some(i) => (Some(i), (!words.is_empty()).then(|| words.join(" "))),
        None => (
            words.first().copied(),
            (words.len() > 1).then(|| words[1..].join(" ")),
        ),
    };
    if let Some(e) = &expression {
        let conflict = match (value("filter"), value("filter-file")) {
            (Some(_), _) => Some("--filter"),
            (None, Some(_)) => Some("-F [--filter-file]"),
            (None, None) => None,
        };
        if let Some(option) = conflict {
            return Err(UsageError(format!(
                "{option} and a filter expression argument ('{e}') are mutually exclusive."
            )));
        }
        // The original took every argument as an interface and said so:
        // words that are no filter expression (`lo lo2`) still get its
        // message. With -i the words can only be an expression, and a bad
        // one gets libpcap's message when the capture compiles it.
        if dash_i.is_none() && !is_filter_expression(e) {
            let quoted: Vec<String> = words.iter().map(|i| format!("'{i}'")).collect();
            return Err(UsageError(format!(
                "Only one interface argument is allowed (got [ {} ]).",
                quoted.join(", ")
            )));
        }
    }
    // tcpdump's name for every interface; here that is no interface.
    let interface = match interface {
        Some("any") if dash_i.is_some() => {
            notes.push("-i any: capturing on every interface".to_string());
            None
        }
        i => i.map(str::to_string),
    };

    let filter = match (value("filter"), value("filter-file"), expression.as_deref()) {
        (Some(_), Some(_), _) => {
            return Err(UsageError(
                "--filter and -F [--filter-file] are mutually exclusive.".into(),
            ))
        }
        // tcpdump takes an empty expression as "everything"; here it is
        // more likely a script's unset variable.
        (Some(e), None, _) | (None, None, Some(e)) if e.trim().is_empty() => {
            return Err(invalid("filter expression", e))
        }
        (Some(e), None, _) | (None, None, Some(e)) => Some(FilterSource::Expression(e.to_string())),
        (None, Some(f), _) => Some(FilterSource::File(f.to_string())),
        (None, None, None) => None,
    };

    let pcapng = m.get_flag("pcapng");
    let write = value("write").map(str::to_string);
    if pcapng && write.is_none() {
        return Err(UsageError("--pcapng needs -w [--write].".into()));
    }
    let rotation = Rotation {
        size: value("file-size")
            .map(rotate::parse_file_size)
            .transpose()
            .map_err(UsageError)?,
        seconds: value("rotate-seconds")
            .map(rotate::parse_rotate_seconds)
            .transpose()
            .map_err(UsageError)?,
        count: value("file-count")
            .map(rotate::parse_file_count)
            .transpose()
            .map_err(UsageError)?,
    };
    rotate::check(&rotation, write.as_deref()).map_err(UsageError)?;
    let flows = match value("flows") {
        None => None,
        Some("") => Some(DEFAULT_FLOW_ROWS),
        Some(v) => Some(
            parse_decimal(v)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| invalid("flow count", v))?,
        ),
    };
    let flows_max = match value("flows-max") {
        None => crate::consumers::flows::DEFAULT_MAX_FLOWS,
        Some(_) if flows.is_none() => return Err(UsageError("--flows-max needs --flows.".into())),
        Some(v) => parse_decimal(v)
            .filter(|&n| n > 0)
            .ok_or_else(|| invalid("flow limit", v))?,
    };

    if let Some(t) = value("rss-hash") {
        // It captures nothing: an option that only means something to a
        // capture is a mistake to point out, not to ignore.
        let given = |id: &str| m.value_source(id) == Some(ValueSource::CommandLine);
        if let Some(o) = OPTIONS
            .iter()
            .find(|o| !RSS_HASH_OPTIONS.contains(&o.id) && given(o.id))
        {
            return Err(UsageError(format!(
                "{} does not work with --rss-hash (it captures nothing).",
                option_display(o, vantage)
            )));
        }
        if let Some(e) = &expression {
            return Err(UsageError(format!(
                "A filter expression argument ('{e}') does not work with --rss-hash \
                 (it captures nothing)."
            )));
        }
        let tuple = crate::steering::rss::parse_tuple(t).map_err(|e| UsageError(e.to_string()))?;
        let key = value("rss-key")
            .map(crate::steering::rss::parse_key)
            .transpose()
            .map_err(|e| UsageError(e.to_string()))?;
        return Ok(Invocation::RssHash(RssQuery {
            tuple,
            key,
            interface,
            verbose: m.get_flag("verbose"),
            json: m.get_flag("json"),
        }));
    }
    if value("rss-key").is_some() {
        return Err(UsageError("--rss-key needs --rss-hash.".into()));
    }

    let xdp = match value("xdp") {
        None => None,
        Some("") => Some(crate::options::XdpMode::Auto),
        Some(v) => Some(crate::options::XdpMode::parse(v).ok_or_else(|| invalid("xdp mode", v))?),
    };
    let mut direction = direction;
    if xdp.is_some() {
        if interface.is_none() {
            return Err(UsageError("--xdp needs an interface.".into()));
        }
        // The XDP hook sees received frames only. A name that captures
        // both directions by default (rxtxcpu) gets what the hook can
        // give; asking for transmitted packets (-d, txcpu) is an error.
        if direction == Direction::RxTx && value("direction").is_none() {
            direction = Direction::Rx;
            notes.push(
                "--xdp: capturing received packets only (the XDP hook sees no transmitted ones)"
                    .to_string(),
            );
        }
        if direction != Direction::Rx {
            return Err(UsageError(
                "--xdp captures received packets only: use -d rx.".into(),
            ));
        }
        if let Some(e) = &expression {
            return Err(UsageError(format!(
                "A filter expression argument ('{e}') does not work with --xdp."
            )));
        }
        if filter.is_some() {
            return Err(UsageError(
                "--filter and -F [--filter-file] do not work with --xdp.".into(),
            ));
        }
    }
    let live = match (m.get_flag("live"), value("interval")) {
        (false, Some(_)) => return Err(UsageError("--interval needs --live.".into())),
        (false, None) => None,
        (true, None) => Some(crate::options::DEFAULT_INTERVAL),
        (true, Some(v)) => Some(crate::live::parse_interval(v).ok_or_else(|| {
            out_of_range(
                "interval",
                v,
                &format!(
                    "{}-{} seconds",
                    crate::live::MIN_INTERVAL.as_secs_f64(),
                    crate::live::MAX_INTERVAL.as_secs()
                ),
            )
        })?),
    };

    let selection = match (list, mask) {
        (Some(_), Some(_)) => {
            return Err(UsageError(format!(
                "-l [--{word}-list] and -m [--{word}-mask] are mutually exclusive."
            )))
        }
        (Some(set), None) => Some(Selection {
            set,
            kind: SelectionKind::List,
        }),
        (None, Some(set)) => Some(Selection {
            set,
            kind: SelectionKind::Mask,
        }),
        (None, None) => None,
    };

    Ok(Invocation::Run(Box::new(Options {
        name: name.to_string(),
        vantage,
        count,
        direction,
        selection,
        promiscuous: m.get_flag("promiscuous"),
        packet_buffered: m.get_flag("packet-buffered"),
        verbose: m.get_flag("verbose"),
        write,
        buffer_bytes,
        snaplen,
        precision,
        interface,
        filter,
        pcapng,
        rotation,
        flows,
        flows_max,
        json: m.get_flag("json"),
        live,
        xdp,
        duration,
        notes,
    })))
}

/// The largest `-B`, in KiB (16 GiB per stream).
pub const MAX_BUFFER_KIB: u64 = 16 << 20;

/// What `--rss-hash` goes with; any other option is a usage error with it.
const RSS_HASH_OPTIONS: &[&str] = &[
    "rss-hash",
    "rss-key",
    "interface",
    "verbose",
    "json",
    "vantage",
    "help",
    "version",
];

/// An option as messages name it: `-c [--count]`, `--live`.
fn option_display(o: &OptSpec, vantage: Vantage) -> String {
    let long = expand(o.long, "", vantage);
    match o.short {
        Some(c) => format!("-{c} [--{long}]"),
        None => format!("--{long}"),
    }
}

/// Whether the words after the interface compile as a filter expression
/// (for Ethernet, what nearly every expression compiles for; the capture
/// compiles it again for the interface's link type). No libpcap: no
/// expression.
fn is_filter_expression(e: &str) -> bool {
    !e.trim().is_empty()
        && crate::filter::compile(e, crate::packet::LinkType::Ethernet, DEFAULT_SNAPLEN).is_ok()
}

/// Seconds as a decimal number with up to nine decimals (`10`, `2.5`,
/// `.5`): no sign, no exponent, no overflow.
pub fn parse_seconds(s: &str) -> Option<std::time::Duration> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 9
    {
        return None;
    }
    let secs: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Some(std::time::Duration::new(secs, nanos))
}

/// A plain decimal number: digits only, no sign, no overflow.
pub fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Turns a clap error into the original's message.
fn translate(e: clap::Error, args: &[OsString], name: &str, vantage: Vantage) -> UsageError {
    let invalid_arg = || match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    match e.kind() {
        ErrorKind::UnknownArgument => {
            let arg = invalid_arg();
            // clap names an unknown long option with its `=value`; getopt
            // does too, but the original printed the option alone.
            let arg = arg.split('=').next().unwrap_or("").to_string();
            unknown_option(&arg, name, vantage)
        }
        ErrorKind::InvalidValue | ErrorKind::NoEquals | ErrorKind::WrongNumberOfValues => {
            UsageError(format!(
                "Option '{}' requires an argument.",
                as_typed(&invalid_arg(), args, vantage)
            ))
        }
        ErrorKind::TooManyValues => {
            let arg = invalid_arg();
            UsageError(format!("Option '{arg}' doesn't allow an argument."))
        }
        _ => {
            // Anything else clap finds (e.g. `--verbose=1`): its own words,
            // first line only.
            let text = e.to_string();
            let line = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            let mut chars = line.chars();
            let first = chars.next().map(|c| c.to_uppercase().to_string());
            UsageError(format!("{}{}.", first.unwrap_or_default(), chars.as_str()))
        }
    }
}

/// Why `arg` (as typed, without a value) is no option: a prefix of more
/// than one long option is ambiguous, and getopt_long lists the
/// candidates; the list and mask options of another vantage belong to it
/// (the help and man page name them all); anything else is unrecognized.
fn unknown_option(arg: &str, name: &str, vantage: Vantage) -> UsageError {
    let Some(typed) = arg.strip_prefix("--").filter(|t| !t.is_empty()) else {
        return UsageError(format!("Unrecognized option '{arg}'."));
    };
    let candidates: Vec<String> = OPTIONS
        .iter()
        .map(|o| expand(o.long, name, vantage))
        .filter(|l| l.starts_with(typed))
        .map(|l| format!("'--{l}'"))
        .collect();
    if candidates.len() > 1 {
        return UsageError(format!(
            "Ambiguous option '{arg}' (could be {}).",
            candidates.join(", ")
        ));
    }
    let other = [Vantage::Cpu, Vantage::Queue, Vantage::Numa]
        .into_iter()
        .filter(|v| *v != vantage)
        .find(|v| {
            ["list", "mask"]
                .iter()
                .any(|what| format!("{}-{what}", v.list_word()).starts_with(typed))
        });
    if let Some(v) = other {
        // The name with this name's direction in that vantage: rxcpu's
        // queue options are rxqueue's.
        let direction = Direction::for_name(name);
        let sibling = crate::options::NAMES
            .iter()
            .find(|(_, nv, d)| *nv == v && *d == direction)
            .map_or("rxtxcpu", |(n, _, _)| n);
        return UsageError(format!(
            "Option '{arg}' is for the {} vantage ({sibling}, or --vantage={}).",
            v.as_str(),
            v.as_str()
        ));
    }
    UsageError(format!("Unrecognized option '{arg}'."))
}

/// The option the user typed for clap's `--write <FILE>`: `-w` or the long
/// form (possibly abbreviated) as it appears on the command line.
fn as_typed(clap_arg: &str, args: &[OsString], vantage: Vantage) -> String {
    let long = clap_arg
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_start_matches("--");
    let spec = OPTIONS.iter().find(|o| expand(o.long, "", vantage) == long);
    let Some(spec) = spec else {
        return clap_arg.to_string();
    };
    for a in args.iter().rev() {
        let a = a.to_string_lossy();
        if let Some(l) = a.strip_prefix("--") {
            let l = l.split('=').next().unwrap_or("");
            if !l.is_empty() && expand(spec.long, "", vantage).starts_with(l) {
                return format!("--{l}");
            }
        } else if let Some(c) = spec.short {
            if a.starts_with('-') && a.ends_with(c) {
                return format!("-{c}");
            }
        }
    }
    match spec.short {
        Some(c) => format!("-{c}"),
        None => format!("--{}", expand(spec.long, "", vantage)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Invocation, UsageError> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        parse("rxtxcpu", &args)
    }

    fn err(args: &[&str]) -> String {
        match run(args) {
            Err(UsageError(m)) => m,
            Ok(i) => panic!("{args:?} parsed: {i:?}"),
        }
    }

    fn opts(args: &[&str]) -> Options {
        match run(args) {
            Ok(Invocation::Run(o)) => *o,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn usage_matches_contract() {
        let u = usage("rxtxcpu", Vantage::Cpu);
        // The contract's first two lines (new options sort in by name).
        assert!(
            u.starts_with(
                "Usage: rxtxcpu [--help] [--buffer-size=KIB] [--count=N]\n               \
                 [--cpu-list=CPULIST|--cpu-mask=CPUMASK] [--direction=DIRECTION]\n"
            ),
            "{u}"
        );
        for o in OPTIONS
            .iter()
            .filter(|o| !matches!(o.id, "help" | "list" | "mask"))
        {
            assert!(
                u.contains(&format!("[--{}", o.long)),
                "--{} missing: {u}",
                o.long
            );
        }
        assert!(usage("rxqueue", Vantage::Queue)
            .contains("[--queue-list=QUEUELIST|--queue-mask=QUEUEMASK]"));
        assert!(usage("rxtxnuma", Vantage::Numa)
            .contains("[--numa-list=NUMALIST|--numa-mask=NUMAMASK]"));
        for (name, v, _) in crate::options::NAMES {
            for line in usage(name, *v).lines() {
                assert!(line.len() <= 79, "{line}");
            }
        }
    }

    #[test]
    fn help_layout() {
        let h = help("rxtxcpu", Vantage::Cpu);
        assert!(
            h.starts_with("Usage:\n  rxtxcpu [OPTIONS] [INTERFACE]\n\nOptions:\n  -c, [--count=N]")
        );
        assert!(h.contains("  -c, [--count=N]                # Exit after receiving N packets.\n"));
        assert!(help("rxcpu", Vantage::Cpu).contains("#   Default: rx\n"));
        assert!(help("txcpu", Vantage::Cpu).contains("#   Default: tx\n"));
        let q = help("rxqueue", Vantage::Queue);
        assert!(
            q.contains("  -l, [--queue-list=QUEUELIST]   # Capture only on queues in QUEUELIST.\n")
        );
        assert!(q.contains("#   Default: queue\n"));
        let n = help("txnuma", Vantage::Numa);
        assert!(n.contains(
            "  -m, [--numa-mask=NUMAMASK]     # Capture only on numa nodes in NUMAMASK.\n"
        ));
        for (name, v, _) in crate::options::NAMES {
            for line in help(name, *v).lines() {
                assert!(line.len() <= 79, "{line}");
            }
        }
    }

    #[test]
    fn option_forms() {
        let o = opts(&["-c6", "-pU", "--direction=rx", "-l0", "lo"]);
        assert_eq!(o.count, 6);
        assert!(o.promiscuous && o.packet_buffered);
        assert_eq!(o.direction, Direction::Rx);
        let sel = o.selection.unwrap();
        assert_eq!(
            (sel.set.to_string(), sel.kind),
            ("0".into(), SelectionKind::List)
        );
        assert_eq!(o.interface.as_deref(), Some("lo"));
        let o = opts(&["--count", "7", "--verb", "-d", "tx"]);
        assert_eq!(o.count, 7);
        assert!(o.verbose);
        assert_eq!(o.direction, Direction::Tx);
        assert_eq!(o.interface, None);
        assert_eq!(opts(&["-c", "1", "-c", "2"]).count, 2);
        assert_eq!(opts(&["-s", "0"]).snaplen, DEFAULT_SNAPLEN);
        assert_eq!(opts(&["-s100"]).snaplen, 100);
        assert_eq!(opts(&["-B", "1024"]).buffer_bytes, Some(1 << 20));
        assert_eq!(opts(&[]).buffer_bytes, None);
        assert_eq!(
            opts(&["--time-stamp-precision=nano"]).precision,
            Precision::Nano
        );
        assert_eq!(opts(&["-l0", "-w", "-"]).write.as_deref(), Some("-"));
        assert_eq!(opts(&[]).vantage, Vantage::Cpu);
        let o = opts(&["--vantage=queue", "--queue-list=1", "eth0"]);
        assert_eq!(
            (o.vantage, o.selection.unwrap().set.to_string()),
            (Vantage::Queue, "1".into())
        );
        assert_eq!(
            opts(&["--vant", "numa", "--numa-m", "1"]).vantage,
            Vantage::Numa
        );
        // What the original took stays: --d was --direction before
        // --duration came.
        assert_eq!(opts(&["--d", "tx"]).direction, Direction::Tx);
        assert_eq!(
            original_abbreviations("direction", "rxtxcpu", Vantage::Cpu),
            ["d"]
        );
        assert_eq!(
            opts(&["--du=2"]).duration,
            Some(std::time::Duration::from_secs(2))
        );
        for v in [Vantage::Cpu, Vantage::Queue, Vantage::Numa] {
            for o in OPTIONS.iter().filter(|o| o.id != "direction") {
                assert_eq!(
                    original_abbreviations(o.id, "rxtxcpu", v),
                    Vec::<String>::new()
                );
            }
        }
    }

    #[test]
    fn errors() {
        assert_eq!(err(&["-c", "10j"]), "Invalid count '10j'.");
        assert_eq!(err(&["-c", "-1"]), "Invalid count '-1'.");
        assert_eq!(err(&["-c", ""]), "Invalid count ''.");
        assert_eq!(
            err(&["-c", "99999999999999999999999"]),
            "Invalid count '99999999999999999999999'."
        );
        assert_eq!(err(&["-l", "10j"]), "Invalid cpu list '10j'.");
        assert_eq!(err(&["-l", ""]), "Invalid cpu list ''.");
        assert_eq!(err(&["-m", "10j"]), "Invalid cpu mask '10j'.");
        assert_eq!(err(&["-m", ""]), "Invalid cpu mask ''.");
        assert_eq!(err(&["-d", "10j"]), "Invalid direction '10j'.");
        assert_eq!(err(&["-w"]), "Option '-w' requires an argument.");
        assert_eq!(err(&["-Uw"]), "Option '-w' requires an argument.");
        assert_eq!(err(&["--write"]), "Option '--write' requires an argument.");
        assert_eq!(err(&["--wri"]), "Option '--wri' requires an argument.");
        assert_eq!(err(&["-z"]), "Unrecognized option '-z'.");
        assert_eq!(err(&["-zv"]), "Unrecognized option '-z'.");
        assert_eq!(err(&["-vz"]), "Unrecognized option '-z'.");
        assert_eq!(err(&["--zzz"]), "Unrecognized option '--zzz'.");
        assert_eq!(err(&["--zzz=1"]), "Unrecognized option '--zzz'.");
        assert_eq!(
            err(&["-l0", "-m1"]),
            "-l [--cpu-list] and -m [--cpu-mask] are mutually exclusive."
        );
        assert_eq!(
            err(&["lo", "lo2"]),
            "Only one interface argument is allowed (got [ 'lo', 'lo2' ])."
        );
        assert_eq!(
            err(&["-s", "262145"]),
            "Invalid snapshot length '262145' (expected 0-262144)."
        );
        assert_eq!(
            err(&["a\nb", ""]),
            "Only one interface argument is allowed (got [ 'a\\nb', '' ])."
        );
        assert_eq!(
            err(&["-B", "0"]),
            "Invalid buffer size '0' (expected 1-16777216 KiB)."
        );
        assert_eq!(
            err(&["--time-stamp-precision=milli"]),
            "Invalid time stamp precision 'milli'."
        );
        assert_eq!(err(&["--vantage=core"]), "Invalid vantage 'core'.");
        assert_eq!(
            err(&["--queue-list=1"]),
            "Option '--queue-list' is for the queue vantage (rxtxqueue, or --vantage=queue)."
        );
        assert_eq!(
            err(&["--flow"]),
            "Ambiguous option '--flow' (could be '--flows', '--flows-max')."
        );
        assert_eq!(
            err(&["--filt=x"]),
            "Ambiguous option '--filt' (could be '--filter', '--filter-file')."
        );
        assert_eq!(
            err(&["--live", "--interval=0.05"]),
            "Invalid interval '0.05' (expected 0.1-86400 seconds)."
        );
        assert_eq!(
            err(&["--duration=0"]),
            "Invalid duration '0' (expected seconds above 0, as 10 or 2.5)."
        );
        assert_eq!(
            err(&["--rss-hash=1.2.3.4,1,5.6.7.8,2", "--live"]),
            "--live does not work with --rss-hash (it captures nothing)."
        );
        assert_eq!(
            err(&["--rss-hash=1.2.3.4,1,5.6.7.8,2", "-w", "x"]),
            "-w [--write] does not work with --rss-hash (it captures nothing)."
        );
        assert_eq!(
            err(&["-d", "rxtx", "--xdp", "lo"]),
            "--xdp captures received packets only: use -d rx."
        );
        assert_eq!(
            err(&["--vantage=queue", "-l1", "-m1"]),
            "-l [--queue-list] and -m [--queue-mask] are mutually exclusive."
        );
        assert_eq!(
            err(&["--vantage=numa", "-l", "x"]),
            "Invalid numa list 'x'."
        );
    }

    #[test]
    fn interface_and_expression() {
        // tcpdump's habit: the first word is the interface, the rest the
        // filter expression.
        let o = opts(&["lo", "udp", "port", "9"]);
        assert_eq!(o.interface.as_deref(), Some("lo"));
        assert_eq!(
            o.filter,
            Some(FilterSource::Expression("udp port 9".into()))
        );
        // With -i every word is the expression.
        let o = opts(&["-i", "lo", "udp", "port", "9"]);
        assert_eq!(o.interface.as_deref(), Some("lo"));
        assert_eq!(
            o.filter,
            Some(FilterSource::Expression("udp port 9".into()))
        );
        let o = opts(&["-ilo"]);
        assert_eq!((o.interface.as_deref(), o.filter), (Some("lo"), None));
        let o = opts(&["--interface=any"]);
        assert_eq!(o.interface, None);
        assert_eq!(o.notes, ["-i any: capturing on every interface"]);
        // Words that are no filter expression: the original's message.
        assert_eq!(
            err(&["lo", "lo2", "lo3"]),
            "Only one interface argument is allowed (got [ 'lo', 'lo2', 'lo3' ])."
        );
        assert_eq!(
            err(&["lo", "udp", "prot", "9"]),
            "Only one interface argument is allowed (got [ 'lo', 'udp', 'prot', '9' ])."
        );
        assert_eq!(
            err(&["lo", "icmp", "--filter=udp"]),
            "--filter and a filter expression argument ('icmp') are mutually exclusive."
        );
        assert_eq!(
            err(&["-i", "lo", "lo2", "-F", "f"]),
            "-F [--filter-file] and a filter expression argument ('lo2') are mutually exclusive."
        );
        assert_eq!(err(&["-i", "lo", " "]), "Invalid filter expression ' '.");
        assert_eq!(
            err(&["--xdp", "lo", "udp"]),
            "A filter expression argument ('udp') does not work with --xdp."
        );
    }

    #[test]
    fn xdp_implies_receive_where_the_name_says_both() {
        let o = opts(&["--xdp", "lo"]);
        assert_eq!(o.direction, Direction::Rx);
        assert_eq!(
            o.notes,
            ["--xdp: capturing received packets only (the XDP hook sees no transmitted ones)"]
        );
        let args: Vec<OsString> = ["--xdp", "lo"].iter().map(OsString::from).collect();
        assert!(matches!(
            parse("txcpu", &args),
            Err(UsageError(m)) if m == "--xdp captures received packets only: use -d rx."
        ));
        assert_eq!(
            opts(&["-d", "rx", "--xdp", "lo"]).notes,
            Vec::<String>::new()
        );
    }

    #[test]
    fn seconds() {
        use std::time::Duration;
        assert_eq!(parse_seconds("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_seconds("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_seconds(".5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_seconds("2."), Some(Duration::from_secs(2)));
        assert_eq!(parse_seconds("0.000000001"), Some(Duration::from_nanos(1)));
        for bad in [
            "",
            ".",
            "-1",
            "+1",
            "1e3",
            "0.0000000001",
            "1 ",
            "inf",
            "1,5",
        ] {
            assert_eq!(parse_seconds(bad), None, "{bad:?}");
        }
        assert_eq!(
            opts(&["--duration=1.25"]).duration,
            Some(Duration::from_millis(1250))
        );
    }

    #[test]
    fn help_and_version_win() {
        assert!(matches!(run(&["-c", "1", "-h"]), Ok(Invocation::Print(_))));
        match run(&["-V"]) {
            Ok(Invocation::Print(s)) => assert_eq!(s, format!("rxtxcpu version {VERSION}\n")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names() {
        assert_eq!(
            invoked_name(Some(&OsString::from("/usr/sbin/rxcpu"))),
            "rxcpu"
        );
        assert_eq!(invoked_name(None), "rxtxcpu");
        assert_eq!(Direction::for_name("txcpu"), Direction::Tx);
        assert_eq!(Direction::for_name("rxtxcpu"), Direction::RxTx);
    }
}
