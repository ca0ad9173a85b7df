//! The man page and README against the program: mandoc lint, every option of
//! the command line documented (and no option that does not exist), the
//! defaults and value names as `--help` gives them, the report, drop-line and
//! file-name examples as the code prints them.
//!
//! The page is checked as users see it: rendered by mandoc (which the lint
//! needs anyway; `.ci/run` installs it) to plain text, one line per
//! paragraph.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use rxtxcpu::cli;
use rxtxcpu::options::Vantage;

use common::{output_if_installed, root, NAMES};

fn page_path() -> PathBuf {
    root().join("man/rxtxcpu.8")
}

fn mandoc(args: &[&str]) -> std::process::Output {
    Command::new("mandoc")
        .args(args)
        .arg(page_path())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run mandoc ({e}): install it (apt-get install mandoc; .ci/run does)")
        })
}

/// The page as plain text, each paragraph on one line.
fn rendered() -> String {
    let out = mandoc(&["-T", "ascii", "-O", "width=1000"]);
    assert!(out.status.success(), "mandoc failed: {out:?}");
    // Bold and underline are overstrikes (`x\bx`, `_\bx`): a backspace
    // takes back the char before it.
    let text = String::from_utf8(out.stdout).expect("mandoc output is ASCII");
    let mut plain = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    plain
}

/// The rendered lines of section `name` (without its heading).
fn section(text: &str, name: &str) -> Vec<String> {
    let mut lines = text.lines().skip_while(|l| *l != name);
    assert!(lines.next().is_some(), "the man page has no {name} section");
    lines
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .map(str::to_string)
        .collect()
}

/// One option as documented or defined: short letter, long name, value name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Opt {
    short: Option<char>,
    long: String,
    value: Option<String>,
}

impl std::fmt::Display for Opt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(c) = self.short {
            write!(f, "-{c}, ")?;
        }
        write!(f, "--{}", self.long)?;
        if let Some(v) = &self.value {
            write!(f, "={v}")?;
        }
        Ok(())
    }
}

const VANTAGES: [Vantage; 3] = [Vantage::Cpu, Vantage::Queue, Vantage::Numa];

/// The options of the command line under `vantage`: `cli::option_names()`
/// with clap's value names (what `--help` shows after `=`).
fn vantage_options(vantage: Vantage) -> BTreeSet<Opt> {
    let cmd = cli::command("rxtxcpu", vantage);
    let value_names: BTreeMap<String, String> = cmd
        .get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?;
            let v = a.get_value_names()?.first()?;
            Some((long.to_string(), v.to_string()))
        })
        .collect();
    cli::option_names(vantage)
        .into_iter()
        .map(|(short, long, takes_value)| Opt {
            short,
            value: takes_value.then(|| {
                value_names
                    .get(&long)
                    .cloned()
                    .unwrap_or_else(|| panic!("--{long} takes a value but clap names none"))
            }),
            long,
        })
        .collect()
}

/// Every option of every vantage (`-l` is `--cpu-list`, `--queue-list`
/// and `--numa-list`).
fn program_options() -> BTreeSet<Opt> {
    VANTAGES.iter().flat_map(|v| vantage_options(*v)).collect()
}

/// All long option names of every vantage.
fn all_longs() -> Vec<String> {
    program_options().into_iter().map(|o| o.long).collect()
}

/// `count=N` -> (`count`, Some(`N`)); `verbose` -> (`verbose`, None);
/// an optional value, `flows[=N]` -> (`flows`, Some(`N`)).
fn name_and_value(long: &str) -> (&str, Option<String>) {
    match long.split_once('=') {
        Some((n, v)) => (
            n.trim_end_matches('['),
            Some(v.trim_end_matches(']').to_string()),
        ),
        None => (long, None),
    }
}

/// The options the OPTIONS section documents, from its tags
/// (`-c, --count=N`), each with the paragraph that describes it.
fn documented_options(text: &str) -> Vec<(Opt, String)> {
    let lines = section(text, "OPTIONS");
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        // Tags are indented 7 columns, their descriptions 14.
        let Some(tag) = line.strip_prefix("       ") else {
            continue;
        };
        if !tag.starts_with('-') {
            continue;
        }
        let mut opt = Opt {
            short: None,
            long: String::new(),
            value: None,
        };
        for part in tag.split(", ") {
            if let Some(long) = part.strip_prefix("--") {
                let (name, value) = name_and_value(long);
                opt.long = name.to_string();
                opt.value = value;
            } else if let Some(short) = part.strip_prefix('-') {
                let mut chars = short.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => opt.short = Some(c),
                    _ => panic!("OPTIONS tag `{tag}`: `{part}` is not a short option"),
                }
            } else {
                panic!("OPTIONS tag `{tag}`: cannot read `{part}`");
            }
        }
        assert!(
            !opt.long.is_empty(),
            "OPTIONS tag `{tag}` has no long option"
        );
        let body: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.is_empty() || l.starts_with("              "))
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        out.push((opt, body.join(" ")));
    }
    out
}

#[test]
fn mandoc_lint_is_clean() {
    let out = mandoc(&["-T", "lint", "-W", "warning"]);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.is_empty(),
        "mandoc -T lint -W warning man/rxtxcpu.8 ({}):\n{report}",
        out.status
    );
}

/// groff (what man-db renders with) must be as happy as mandoc; skipped
/// where groff is not installed.
#[test]
fn groff_has_no_warnings() {
    let mut groff = Command::new("groff");
    groff.args(["-man", "-t", "-ww", "-z"]).arg(page_path());
    let Some(out) = output_if_installed(&mut groff) else {
        eprintln!("groff not installed; skipping");
        return;
    };
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && report.is_empty(),
        "groff -man -t -ww -z man/rxtxcpu.8 ({}):\n{report}",
        out.status
    );
}

#[test]
fn options_section_matches_the_command_line() {
    let text = rendered();
    let documented = documented_options(&text);
    let program = program_options();

    let mut seen = BTreeSet::new();
    for (opt, _) in &documented {
        assert!(
            seen.insert(opt.long.clone()),
            "--{} documented twice",
            opt.long
        );
    }
    let documented: BTreeSet<Opt> = documented.into_iter().map(|(o, _)| o).collect();
    let missing: Vec<String> = program
        .difference(&documented)
        .map(|o| o.to_string())
        .collect();
    let extra: Vec<String> = documented
        .difference(&program)
        .map(|o| o.to_string())
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "man/rxtxcpu.8 OPTIONS and src/cli.rs disagree\n\
         in the command line, not (so) in the man page: {missing:?}\n\
         in the man page, not (so) in the command line: {extra:?}"
    );
}

#[test]
fn synopsis_lists_every_option() {
    let text = rendered();
    let synopsis = section(&text, "SYNOPSIS").join(" ");
    let start = synopsis
        .find("rxtxcpu [")
        .expect("SYNOPSIS starts with rxtxcpu [");
    let line = &synopsis[start..];
    let line = &line[..line.find(" rxtxqueue ").unwrap_or(line.len())];
    let words: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || "[]|".contains(c))
        .filter(|w| !w.is_empty())
        .collect();

    let program = vantage_options(Vantage::Cpu);
    // What the synopsis shows: -x VALUE, bundled flags -xyz, --long=VALUE.
    let mut shown: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (i, w) in words.iter().enumerate() {
        if let Some(long) = w.strip_prefix("--") {
            let (name, mut value) = name_and_value(long);
            // `[--flows[=N]]` splits into `--flows` and `=N`.
            if let Some(v) = words.get(i + 1).and_then(|n| n.strip_prefix('=')) {
                value = Some(v.to_string());
            }
            // `[--metrics=[ADDR:]PORT]` splits into `--metrics=`, `ADDR:`
            // and `PORT`.
            if value.as_deref() == Some("") {
                if let (Some(opt), Some(v)) = (words.get(i + 1), words.get(i + 2)) {
                    value = Some(format!("[{opt}]{v}"));
                }
            }
            shown.insert(format!("--{name}"), value);
        } else if let Some(shorts) = w.strip_prefix('-') {
            let next = words.get(i + 1).filter(|n| !n.starts_with('-'));
            if shorts.len() == 1 {
                shown.insert(format!("-{shorts}"), next.map(|n| n.to_string()));
            } else {
                for c in shorts.chars() {
                    shown.insert(format!("-{c}"), None);
                }
            }
        }
    }
    let mut problems = Vec::new();
    for o in &program {
        let key = match o.short {
            Some(c) => format!("-{c}"),
            None => format!("--{}", o.long),
        };
        match shown.remove(&key) {
            None => problems.push(format!("{key} is missing")),
            Some(v) if v != o.value => problems.push(format!(
                "{key} shows {v:?}, the program takes {:?}",
                o.value
            )),
            Some(_) => {}
        }
    }
    for key in shown.keys() {
        problems.push(format!("{key} is not an option"));
    }
    assert!(
        problems.is_empty(),
        "SYNOPSIS `{line}`:\n{}",
        problems.join("\n")
    );
}

/// Every `--long` the page mentions anywhere (examples included) is an
/// option of the program or an unambiguous abbreviation of one.
#[test]
fn page_mentions_no_unknown_long_option() {
    let text = rendered();
    let longs = all_longs();
    let longs: Vec<&str> = longs.iter().map(String::as_str).collect();
    // `--option=value`: the page's name for "any long option"; `--flow`:
    // its example of an ambiguous abbreviation, `--d` of one the original
    // took (a hidden alias of --direction).
    let placeholders = ["option", "flow", "d"];
    let mut unknown = BTreeSet::new();
    for (i, _) in text.match_indices("--") {
        let name: String = text[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if name.is_empty() || placeholders.contains(&name.as_str()) {
            continue;
        }
        let matches = longs.iter().filter(|l| l.starts_with(&name)).count();
        if matches != 1 && !longs.contains(&name.as_str()) {
            unknown.insert(name);
        }
    }
    assert!(
        unknown.is_empty(),
        "the man page mentions options the program does not have: {unknown:?}"
    );
}

/// The defaults `--help` gives (per invocation name) appear in the option's
/// paragraph, after "Default".
#[test]
fn defaults_match_help() {
    assert_eq!(
        default_names(
            "Default: from the program name, rx for rxcpu, rxqueue and rxnuma, tx for txcpu.",
            "rx"
        ),
        ["rxcpu", "rxqueue", "rxnuma"]
    );
    let text = rendered();
    let documented: BTreeMap<String, String> = documented_options(&text)
        .into_iter()
        .map(|(o, body)| (o.long, body))
        .collect();
    let mut problems = Vec::new();
    for name in NAMES {
        let help = cli::help(name, Vantage::for_name(name));
        let mut current: Option<String> = None;
        for line in help.lines() {
            if let Some(start) = line.find("[--") {
                let long = &line[start + 3..];
                let end = long.find(['=', ']', '[']).unwrap_or(long.len());
                current = Some(long[..end].to_string());
            }
            let Some(pos) = line.find("Default") else {
                continue;
            };
            let value = line[pos..]
                .rsplit(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            let long = current
                .clone()
                .expect("a Default line belongs to an option");
            let Some(body) = documented.get(&long) else {
                problems.push(format!("--{long} is not documented"));
                continue;
            };
            let after = body.find("Default").map(|p| &body[p..]);
            let has_value = after.is_some_and(|a| {
                a.split(|c: char| !c.is_ascii_alphanumeric())
                    .any(|w| w == value)
            });
            if !has_value {
                problems.push(format!(
                    "{name} --help says --{long} defaults to {value}; the man page: {body}"
                ));
            }
            let named_default = match long.as_str() {
                "direction" => name != "rxtxcpu" && !name.starts_with("rxtx"),
                "vantage" => !name.ends_with("cpu"),
                _ => false,
            };
            if named_default && !default_names(body, &value).contains(&name.to_string()) {
                problems.push(format!(
                    "--{long}: the man page does not say `{value} for ... {name}`"
                ));
            }
        }
    }
    // The constants behind them, in case --help stops showing one.
    for (long, value) in [
        (
            "buffer-size",
            rxtxcpu::options::DEFAULT_BUFFER_KIB.to_string(),
        ),
        (
            "snapshot-length",
            rxtxcpu::options::DEFAULT_SNAPLEN.to_string(),
        ),
    ] {
        if !documented
            .get(long)
            .is_some_and(|b| b.contains(&format!("Default: {value}")))
        {
            problems.push(format!(
                "--{long}: the man page does not say `Default: {value}`"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The names a `Default:` sentence gives `value` for, as a person writes
/// it: `Default: from the program name, rx for rxcpu, rxqueue and rxnuma,
/// tx for ...`: the words after `VALUE for` up to the next `WORD for`.
fn default_names(body: &str, value: &str) -> Vec<String> {
    let Some(start) = body.find("Default") else {
        return Vec::new();
    };
    let words: Vec<&str> = body[start..]
        .split(|c: char| c.is_whitespace() || ",.()".contains(c))
        .filter(|w| !w.is_empty())
        .collect();
    let mut names = Vec::new();
    let mut current = None;
    for (i, w) in words.iter().enumerate() {
        if words.get(i + 1) == Some(&"for") {
            current = Some(*w);
        } else if current == Some(value) && *w != "for" && *w != "and" {
            names.push(w.to_string());
        }
    }
    names
}

/// The page's examples of the report, the drop line and the file names are
/// what the program prints and creates.
#[test]
fn output_examples_match_the_code() {
    use rxtxcpu::testing::{self as report, StreamCount};
    let text = rendered();
    let output = section(&text, "OUTPUT");
    let body: Vec<&str> = output.iter().map(|l| l.trim()).collect();
    let contains_lines = |block: &str| {
        let want: Vec<&str> = block.lines().collect();
        body.windows(want.len()).any(|w| w == want.as_slice())
    };

    let counts = [
        StreamCount {
            place: "on cpu0".into(),
            packets: 12,
            drops: 0,
            unread: 0,
            lost: 0,
        },
        StreamCount {
            place: "on cpu1".into(),
            packets: 0,
            drops: 1532,
            unread: 0,
            lost: 0,
        },
    ];
    let report = report::counts(&counts);
    assert!(
        contains_lines(&report),
        "OUTPUT lacks the report as printed:\n{report}"
    );
    let drop = report::drops(&counts[1..]).replace("cpu1", "cpu3");
    assert!(
        contains_lines(&drop),
        "OUTPUT lacks the drop line as printed:\n{drop}"
    );

    for template in ["out.pcap", "out", ".cap", "/tmp/x.y/out"] {
        let row = body
            .iter()
            .find(|l| l.split_whitespace().take(2).eq(["-w", template]))
            .unwrap_or_else(|| panic!("OUTPUT has no file-name row for -w {template}"));
        let first = rxtxcpu::testing::stream_path(template, 0);
        let second = rxtxcpu::testing::stream_path(template, 1);
        assert!(
            row.contains(&format!("{first}, {second}")),
            "-w {template} makes {first}, {second}; the man page says `{row}`"
        );
    }
}

#[test]
fn page_has_the_expected_sections() {
    let text = rendered();
    for s in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "OUTPUT",
        "EXIT STATUS",
        "ENVIRONMENT",
        "PRIVILEGES",
        "EXAMPLES",
        "SEE ALSO",
    ] {
        assert!(
            text.lines().any(|l| l == s),
            "the man page has no {s} section"
        );
    }
    let name = section(&text, "NAME").join(" ");
    let names = NAMES.join(", ");
    assert!(
        name.contains(&format!("{names} - ")),
        "NAME names every command ({names}): {name}"
    );
    let see_also = section(&text, "SEE ALSO").join(" ");
    for page in ["tcpdump(8)", "packet(7)", "pcap-savefile(5)"] {
        assert!(see_also.contains(page), "SEE ALSO lacks {page}");
    }
    let status = section(&text, "EXIT STATUS").join("\n");
    for code in ["0", "1", "2"] {
        assert!(
            status
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{code} "))),
            "EXIT STATUS does not describe {code}"
        );
    }
}

/// The version in the page footer is the crate's.
#[test]
fn page_version_is_the_crate_version() {
    let source = std::fs::read_to_string(page_path()).unwrap();
    let th = source
        .lines()
        .find(|l| l.starts_with(".TH "))
        .expect("the man page has a .TH line");
    let want = format!("\"rxtxcpu {}\"", cli::VERSION);
    assert!(
        th.contains(&want),
        "man/rxtxcpu.8 `{th}` should name {want} (Cargo.toml's version)"
    );
}

/// README: every option appears (its usage examples and table).
#[test]
fn readme_mentions_every_option() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut missing = Vec::new();
    for (short, long, _) in VANTAGES.iter().flat_map(|v| cli::option_names(*v)) {
        if !readme.contains(&format!("--{long}")) {
            missing.push(format!("--{long}"));
        }
        if let Some(c) = short {
            if !readme.contains(&format!("-{c}")) {
                missing.push(format!("-{c}"));
            }
        }
    }
    assert!(missing.is_empty(), "README.md does not mention {missing:?}");
}

/// Every key of a JSON report's flow_summary is named in JSON REPORT: a
/// reader of that section alone learns them all (expired and
/// expired_packets came with --flows-idle and were documented only
/// there). A real capture makes the report, so a key added later without
/// its words fails here.
#[test]
fn json_flow_summary_keys_are_documented() {
    use common::{udp_flow, Capture, Netns, LO, UDP_PORT};
    use nix::sys::signal::Signal;
    let ns = Netns::new();
    #[rustfmt::skip]
    let cap = Capture::start(&ns, "rxtxcpu", &["--flows", "--flows-idle=1", "--drops",
                                               "--json", "lo"]);
    // No socket on UDP_PORT: a kernel drop of a flow, so the --drops
    // keys are there too.
    udp_flow(&ns, 0, (LO.into(), 4000), (LO.into(), UDP_PORT), 1);
    cap.signal(Signal::SIGINT);
    let report = cap.wait().json();
    let summary = report["flow_summary"].as_object().expect("flow_summary");
    let text = section(&rendered(), "JSON REPORT").join(" ");
    let words: BTreeSet<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .collect();
    let missing: Vec<&String> = summary
        .keys()
        .filter(|k| !words.contains(k.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "not in JSON REPORT: {missing:?}\n{report}"
    );
    assert!(summary.contains_key("expired"), "{report}");
}
