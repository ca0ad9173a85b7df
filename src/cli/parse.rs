//! From the arguments to what they ask for: the options checked against
//! each other (which go together, which exclude each other) and turned
//! into [`Options`], a `--rss-hash` query, or text to print.

use std::ffi::OsString;

use clap::parser::ValueSource;

use crate::consumers::flows::table::MAX_IDLE_SECONDS;
use crate::consumers::rotate;

/// `--flows-idle` with `--metrics` when not given.
const DEFAULT_METRICS_IDLE: u32 = 300;
use crate::cpuset::CpuSet;
use crate::options::{
    Direction, FilterSource, Options, Precision, Rotation, Selection, SelectionKind, Vantage,
    DEFAULT_FLOW_ROWS, DEFAULT_SNAPLEN,
};

use super::help::help;
use super::messages::translate;
use super::table::{command, option_display, OPTIONS, POSITIONAL};
use super::values::{
    parse_decimal, parse_file_count, parse_file_size, parse_interval, parse_rotate_seconds,
    parse_seconds, MAX_INTERVAL, MIN_INTERVAL,
};
use super::{Invocation, RssQuery, UsageError, VERSION};

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
    // The parsers tolerate whitespace for sysfs files (a trailing newline);
    // on the command line a list or mask is refused with it, as every
    // number is (`-c ' 5'`).
    let bare = |v: &str| !v.contains(char::is_whitespace);
    let list = value("list")
        .map(|v| {
            CpuSet::parse_list(v)
                .filter(|_| bare(v))
                .ok_or_else(|| invalid(&format!("{word} list"), v))
        })
        .transpose()?;
    let mask = value("mask")
        .map(|v| {
            CpuSet::parse_mask(v)
                .filter(|_| bare(v))
                .ok_or_else(|| invalid(&format!("{word} mask"), v))
        })
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
        if dash_i.is_none() && !is_filter_expression(e) && !starts_like_a_filter(words[1]) {
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
    // An empty FILE is more likely a script's unset variable (`-w "$OUT"`)
    // than a name: numbered, it would make files called `-0`, `-1` in the
    // current directory.
    if write.as_deref() == Some("") {
        return Err(invalid("write file", ""));
    }
    if pcapng && write.is_none() {
        return Err(UsageError("--pcapng needs -w [--write].".into()));
    }
    let rotation = Rotation {
        size: value("file-size")
            .map(parse_file_size)
            .transpose()
            .map_err(UsageError)?,
        seconds: value("rotate-seconds")
            .map(parse_rotate_seconds)
            .transpose()
            .map_err(UsageError)?,
        count: value("file-count")
            .map(parse_file_count)
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
    let repeats = match value("repeats") {
        None => None,
        Some("") => Some(crate::consumers::repeats::DEFAULT_MIN),
        Some(v) => Some(
            parse_decimal(v)
                .filter(|&n| n >= 2)
                .ok_or_else(|| out_of_range("repeat count", v, "2 or more copies"))?,
        ),
    };
    let flows_idle = match value("flows-idle") {
        Some(_) if flows.is_none() => return Err(UsageError("--flows-idle needs --flows.".into())),
        Some(v) => Some(
            parse_decimal(v)
                .filter(|&n| (1..=u64::from(MAX_IDLE_SECONDS)).contains(&n))
                .map(|n| n as u32)
                .ok_or_else(|| {
                    out_of_range("idle time", v, &format!("1 to {MAX_IDLE_SECONDS} seconds"))
                })?,
        ),
        // A service runs for days: flows do not stay forever.
        None if flows.is_some() && value("metrics").is_some() => Some(DEFAULT_METRICS_IDLE),
        None => None,
    };
    let drops = m.get_flag("drops");
    if drops && interface.is_none() {
        return Err(UsageError("--drops needs an interface.".into()));
    }
    let path = m.get_flag("path");
    if path && flows.is_none() {
        return Err(UsageError("--path needs --flows.".into()));
    }
    if path && interface.is_none() {
        return Err(UsageError("--path needs an interface.".into()));
    }
    // The processing cpu is the capture's stream: a cpu, after RPS.
    if path && vantage != Vantage::Cpu {
        return Err(UsageError("--path works in the cpu vantage only.".into()));
    }
    if path && value("xdp").is_some() {
        return Err(UsageError("--path does not work with --xdp.".into()));
    }
    let metrics = match value("metrics") {
        None => None,
        Some(v) => {
            Some(crate::metrics::parse_address(v).ok_or_else(|| invalid("metrics address", v))?)
        }
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
        (true, Some(v)) => Some(parse_interval(v).ok_or_else(|| {
            out_of_range(
                "interval",
                v,
                &format!(
                    "{}-{} seconds",
                    MIN_INTERVAL.as_secs_f64(),
                    MAX_INTERVAL.as_secs()
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
        flows_idle,
        repeats,
        metrics,
        drops,
        path,
        json: m.get_flag("json"),
        live,
        xdp,
        duration,
        notes,
    })))
}

/// The largest `-B`, in KiB (16 GiB per stream).
const MAX_BUFFER_KIB: u64 = 16 << 20;

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

/// Whether the words after the interface compile as a filter expression
/// (for Ethernet, what nearly every expression compiles for; the capture
/// compiles it again for the interface's link type). No libpcap: no
/// expression.
/// Words that begin a tcpdump filter expression and are hardly an
/// interface's name: after one of them the words are taken as a filter
/// even when they do not compile (`lo udp port`), so that the user gets
/// libpcap's message rather than the one about interfaces.
fn starts_like_a_filter(word: &str) -> bool {
    const PRIMITIVES: &[&str] = &[
        "udp",
        "tcp",
        "icmp",
        "icmp6",
        "ip",
        "ip6",
        "arp",
        "rarp",
        "sctp",
        "host",
        "net",
        "port",
        "portrange",
        "src",
        "dst",
        "ether",
        "vlan",
        "not",
        "less",
        "greater",
        "proto",
        "broadcast",
        "multicast",
        "inbound",
        "outbound",
        "!",
        "(",
    ];
    PRIMITIVES.contains(&word) || word.starts_with('(')
}

fn is_filter_expression(e: &str) -> bool {
    !e.trim().is_empty()
        && crate::filter::compile(e, crate::packet::LinkType::Ethernet, DEFAULT_SNAPLEN).is_ok()
}
