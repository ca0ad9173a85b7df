//! Property tests for everything the command line parses: cpu lists and
//! masks, counts, the per-cpu file-name template and the whole argument
//! vector. No input may panic, and formatting a cpu set then parsing it
//! gives the same set. Also the usage errors tests/cli.rs does not cover.

mod common;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use proptest::prelude::*;
use rxtxcpu::cli::{self, Invocation, UsageError};
use rxtxcpu::cpuset::{CpuSet, MAX_CPU};
use rxtxcpu::error::Error;
use rxtxcpu::testing::{check_destination, stream_path};
use rxtxcpu::vantage;

use common::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

/// Sets made of a few ranges anywhere in 0..=MAX_CPU (so formatting has
/// ranges, singletons and neighbours to merge), sometimes empty.
fn cpu_sets() -> impl Strategy<Value = CpuSet> {
    let range =
        (0..=MAX_CPU, 0u32..40).prop_map(|(lo, len)| lo..=lo.saturating_add(len).min(MAX_CPU));
    let small = (0u32..70, 0u32..6).prop_map(|(lo, len)| lo..=lo + len);
    prop::collection::vec(prop_oneof![range, small], 0..8)
        .prop_map(|ranges| ranges.into_iter().flatten().collect())
}

/// The set as a hex mask, most significant digit first, no leading zeros
/// (`0` for the empty set).
fn mask_digits(set: &CpuSet) -> Vec<u8> {
    let top = set.iter().max().map_or(0, |c| c / 4);
    (0..=top)
        .rev()
        .map(|nibble| {
            let bits = (0..4).fold(0u8, |acc, b| {
                acc | (u8::from(set.contains(nibble * 4 + b)) << b)
            });
            b"0123456789abcdef"[bits as usize]
        })
        .collect()
}

/// A mask for `set` as a user might type it: leading zeros, upper or
/// lower case, commas anywhere, an optional `0x`.
fn typed_mask(
    set: &CpuSet,
    zeros: usize,
    upper: &[bool],
    commas: &[usize],
    prefix: bool,
) -> String {
    let mut digits: Vec<char> = std::iter::repeat(b'0')
        .take(zeros)
        .chain(mask_digits(set))
        .enumerate()
        .map(|(i, d)| {
            let d = d as char;
            if upper.get(i).copied().unwrap_or(false) {
                d.to_ascii_uppercase()
            } else {
                d
            }
        })
        .collect();
    let mut at: Vec<usize> = commas.iter().map(|&c| c % (digits.len() + 1)).collect();
    at.sort_unstable();
    for &i in at.iter().rev() {
        digits.insert(i, ',');
    }
    let body: String = digits.into_iter().collect();
    if prefix {
        format!("0x{body}")
    } else {
        body
    }
}

/// Strings near the list and mask syntaxes, plus anything at all.
fn list_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9,\\- \n]{0,24}",
        "[0-9a-fA-FxX, ]{0,24}",
        "[0-9]{0,3}(-[0-9]{0,6})?(,[0-9]{1,5}(-[0-9]{1,12})?){0,4}",
        any::<String>(),
    ]
}

/// Reference for a plain decimal: digits only, and the value fits a u64.
fn decimal_reference(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.bytes().try_fold(0u64, |n, b| {
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

fn parse(args: &[String]) -> Result<Invocation, UsageError> {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    cli::parse("rxtxcpu", &args)
}

/// The cpus this machine has: configured, and online now.
fn machine() -> (CpuSet, CpuSet) {
    let all = CpuSet::first(rxtxcpu::vantage::machine::configured_count());
    let online = rxtxcpu::vantage::machine::online().intersection(&all);
    (all, online)
}

/// What `-l`/`-m` selecting `set` must give: the captured cpus, or the
/// usage error (`kind` is `list` or `mask`).
fn expected_selection(set: &CpuSet, kind: &str) -> Result<CpuSet, String> {
    let (all, online) = machine();
    let present = set.intersection(&all);
    if present.is_empty() {
        return Err(format!("No configured cpus present in cpu {kind}."));
    }
    let cpus = present.intersection(&online);
    if cpus.is_empty() {
        return Err(format!("No online cpus present in cpu {kind}."));
    }
    Ok(cpus)
}

/// The cpus a command line captures on (its plan's streams), or the
/// usage error.
fn selection(args: &[String]) -> Result<CpuSet, String> {
    match parse(args) {
        Ok(Invocation::Run(o)) => planned(&o),
        Ok(Invocation::Print(p)) => panic!("{args:?} printed {p:?}"),
        Ok(Invocation::RssHash(q)) => panic!("{args:?} is an RSS query {q:?}"),
        Err(UsageError(m)) => Err(m),
    }
}

/// The ids of the streams `o` plans on this machine, or its usage error.
fn planned(o: &rxtxcpu::options::Options) -> Result<CpuSet, String> {
    match vantage::plan(o) {
        Ok(plan) => Ok(plan.streams.iter().filter_map(|s| s.id()).collect()),
        Err(Error::Usage(m)) => Err(m),
        Err(e) => panic!("{o:?}: {e}"),
    }
}

/// One command-line word: mostly option-like, sometimes anything.
fn word() -> impl Strategy<Value = OsString> {
    let known = prop::sample::select(vec![
        "-c",
        "-d",
        "-h",
        "-l",
        "-m",
        "-p",
        "-U",
        "-v",
        "-V",
        "-w",
        "-B",
        "-s",
        "--count",
        "--direction",
        "--help",
        "--cpu-list",
        "--cpu-mask",
        "--promiscuous",
        "--packet-buffered",
        "--verbose",
        "--version",
        "--write",
        "--buffer-size",
        "--snapshot-length",
        "--time-stamp-precision",
        "--",
        "-",
        "lo",
        "rx",
        "tx",
        "rxtx",
        "0",
        "1",
        "0-1",
        "3",
        "ff",
        "micro",
        "nano",
    ]);
    prop_oneof![
        4 => known.prop_map(OsString::from),
        2 => "-[a-zA-Z0-9]{1,4}".prop_map(OsString::from),
        2 => "--[a-z-]{0,20}(=.{0,6})?".prop_map(OsString::from),
        1 => any::<String>().prop_map(OsString::from),
        1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(OsString::from_vec),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn list_parser_never_panics(s in list_like()) {
        if let Some(set) = CpuSet::parse_list(&s) {
            // Whatever it accepts is a real selection, in canonical form
            // a fixed point.
            prop_assert!(!set.is_empty(), "{s:?} parsed as the empty set");
            prop_assert!(set.iter().all(|c| c <= MAX_CPU));
            prop_assert_eq!(CpuSet::parse_list(&set.to_string()), Some(set));
        }
    }

    #[test]
    fn mask_parser_never_panics(s in list_like()) {
        if let Some(set) = CpuSet::parse_mask(&s) {
            prop_assert!(set.iter().all(|c| c <= MAX_CPU));
            prop_assert_eq!(CpuSet::parse_mask(&typed_mask(&set, 0, &[], &[], false)), Some(set));
        }
    }

    #[test]
    fn list_round_trips(set in cpu_sets()) {
        prop_assume!(!set.is_empty());
        let text = set.to_string();
        prop_assert_eq!(CpuSet::parse_list(&text), Some(set.clone()), "{}", text);
        // Canonical: ranges ascending, never touching, no a-a.
        let mut prev: Option<u32> = None;
        for part in text.split(',') {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.parse::<u32>().unwrap(), b.parse::<u32>().unwrap()),
                None => { let c = part.parse::<u32>().unwrap(); (c, c) }
            };
            prop_assert!(part.contains('-') == (lo < hi), "{part} in {text}");
            prop_assert!(prev.map_or(true, |p| p + 1 < lo), "{part} in {text}");
            prev = Some(hi);
        }
    }

    #[test]
    fn empty_list_or_mask_digits_are_invalid(commas in 0usize..4, spaces in 0usize..3) {
        let s = format!("{}{}", ",".repeat(commas), " ".repeat(spaces));
        prop_assert_eq!(CpuSet::parse_list(&s), None);
        prop_assert_eq!(CpuSet::parse_mask(&s), None);
    }

    #[test]
    fn mask_round_trips(
        set in cpu_sets(),
        zeros in 0usize..12,
        upper in prop::collection::vec(any::<bool>(), 0..64),
        commas in prop::collection::vec(any::<usize>(), 0..6),
        prefix in any::<bool>(),
    ) {
        let mask = typed_mask(&set, zeros, &upper, &commas, prefix);
        prop_assert_eq!(CpuSet::parse_mask(&mask), Some(set), "{}", mask);
    }

    #[test]
    fn cpus_above_the_limit_are_refused(set in cpu_sets(), over in (MAX_CPU + 1)..=u32::MAX) {
        let mut big = set.clone();
        big.insert(over);
        prop_assert_eq!(CpuSet::parse_list(&big.to_string()), None);
        if over <= MAX_CPU + 4096 {
            prop_assert_eq!(CpuSet::parse_mask(&typed_mask(&big, 0, &[], &[], false)), None);
        }
    }

    #[test]
    fn decimal_parser_matches_reference(s in prop_oneof![
        "[0-9]{0,25}",
        "0{0,30}[0-9]{0,22}",
        "[0-9+\\- x.]{0,6}",
        any::<String>(),
    ]) {
        prop_assert_eq!(cli::parse_decimal(&s), decimal_reference(&s), "{:?}", s);
    }

    #[test]
    fn count_round_trips(n in any::<u64>(), zeros in 0usize..4, form in 0usize..4) {
        let v = format!("{}{n}", "0".repeat(zeros));
        let args: Vec<String> = match form {
            0 => vec!["-c".into(), v],
            1 => vec![format!("-c{v}")],
            2 => vec![format!("--count={v}")],
            _ => vec!["--count".into(), v],
        };
        match parse(&args) {
            Ok(Invocation::Run(o)) => prop_assert_eq!(o.count, n),
            other => prop_assert!(false, "{:?}: {:?}", args, other),
        }
    }

    #[test]
    fn count_overflow_is_a_usage_error(extra in 1u128..=u128::from(u64::MAX)) {
        let v = (u128::from(u64::MAX) + extra).to_string();
        let err = parse(&["-c".into(), v.clone()]).err();
        prop_assert_eq!(err, Some(UsageError(format!("Invalid count '{v}'."))));
    }

    #[test]
    fn cpu_list_option_selects_online_cpus(set in cpu_sets(), long in any::<bool>()) {
        prop_assume!(!set.is_empty());
        let list = set.to_string();
        let args = if long { vec![format!("--cpu-list={list}")] } else { vec!["-l".into(), list] };
        prop_assert_eq!(selection(&args), expected_selection(&set, "list"), "{:?}", args);
    }

    #[test]
    fn cpu_mask_option_selects_online_cpus(
        set in cpu_sets(),
        upper in prop::collection::vec(any::<bool>(), 0..8),
        commas in prop::collection::vec(any::<usize>(), 0..3),
    ) {
        let mask = typed_mask(&set, 1, &upper, &commas, false);
        let args = vec!["-m".into(), mask];
        prop_assert_eq!(selection(&args), expected_selection(&set, "mask"), "{:?}", args);
    }

    #[test]
    fn file_name_template(template in prop_oneof![
        "[a-z./]{0,12}",
        "[a-zé.]{0,4}(/[a-zé.]{0,4}){0,3}",
        any::<String>(),
    ], cpu in prop_oneof![0u32..4, any::<u32>()]) {
        let path = stream_path(&template, cpu);
        let tag = format!("-{cpu}");
        // The template with `-N` put in at one place...
        prop_assert_eq!(path.len(), template.len() + tag.len(), "{}", path);
        let at = (0..=template.len())
            .filter(|&i| template.is_char_boundary(i))
            .find(|&i| path[..i] == template[..i] && path[i..].starts_with(&tag)
                 && path[i + tag.len()..] == template[i..]);
        let Some(at) = at else {
            return Err(TestCaseError::fail(format!("{template:?} -> {path:?}")));
        };
        // ...in the file name, before its extension (a leading dot starts
        // none; the directories are kept as they are).
        let base = template.rfind('/').map_or(0, |i| i + 1);
        let ext = &template[at..];
        prop_assert!(at > base || (at == base && template.len() == base),
            "{:?} -> {:?}", template, path);
        prop_assert!(ext.is_empty() || (ext.starts_with('.') && !ext[1..].contains(['.', '/'])),
            "{:?} -> {:?}", template, path);
        if ext.is_empty() {
            prop_assert!(!template[base..].chars().skip(1).any(|c| c == '.'),
                "{:?} -> {:?}", template, path);
        }
    }

    #[test]
    fn command_line_never_panics(words in prop::collection::vec(word(), 0..6)) {
        match cli::parse("rxtxcpu", &words) {
            Err(UsageError(m)) => {
                prop_assert!(!m.is_empty() && m.ends_with('.') && !m.contains('\n'),
                    "{:?}: {:?}", words, m);
            }
            Ok(Invocation::Print(text)) => prop_assert!(text.ends_with('\n')),
            Ok(Invocation::RssHash(_)) => {}
            Ok(Invocation::Run(o)) => match vantage::plan(&o) {
                Ok(plan) => {
                    let (_, online) = machine();
                    let cpus: CpuSet = plan.streams.iter().filter_map(|s| s.id()).collect();
                    prop_assert!(!cpus.is_empty(), "{:?}", words);
                    prop_assert_eq!(cpus.intersection(&online), cpus.clone(), "{:?}", words);
                    // What -w names is checked against the plan's streams
                    // before anything opens (run::run).
                    match check_destination(&o, plan.streams.len()) {
                        Ok(()) if o.write.as_deref() == Some("-") && !o.pcapng => {
                            prop_assert_eq!(cpus.len(), 1, "{:?}", words);
                        }
                        Ok(()) => {}
                        Err(m) => prop_assert!(
                            !m.is_empty() && m.ends_with('.') && !m.contains('\n'),
                            "{:?}: {:?}", words, m
                        ),
                    }
                }
                Err(Error::Usage(m)) => {
                    prop_assert!(!m.is_empty() && m.ends_with('.') && !m.contains('\n'),
                        "{:?}: {:?}", words, m);
                }
                // Only the per-queue vantage looks at the interface here.
                Err(e) => prop_assert_eq!(o.vantage, rxtxcpu::options::Vantage::Queue, "{}", e),
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Usage errors that tests/cli.rs does not cover: the options added since
// the original (-B, -s, --time-stamp-precision), flags given a value, and
// cpu numbers beyond any machine.

#[test]
fn usage_errors_of_the_newer_options() {
    let beyond = format!("1{}", "0".repeat(MAX_CPU as usize / 4 + 1));
    let cases: &[(&str, &[&str], String)] = &[
        (
            "rxtxcpu",
            &["-B"],
            "Option '-B' requires an argument.".into(),
        ),
        (
            "rxtxcpu",
            &["--buffer-size"],
            "Option '--buffer-size' requires an argument.".into(),
        ),
        (
            "rxtxcpu",
            &["-s"],
            "Option '-s' requires an argument.".into(),
        ),
        (
            "rxtxcpu",
            &["--snapshot-length"],
            "Option '--snapshot-length' requires an argument.".into(),
        ),
        (
            "rxtxcpu",
            &["--snap"],
            "Option '--snap' requires an argument.".into(),
        ),
        (
            "rxtxcpu",
            &["--time-stamp-precision"],
            "Option '--time-stamp-precision' requires an argument.".into(),
        ),
        (
            "rxtxcpu",
            &["-B", "0"],
            "Invalid buffer size '0' (expected 1-16777216 KiB).".into(),
        ),
        (
            "rxtxcpu",
            &["-B", "16777217"],
            "Invalid buffer size '16777217' (expected 1-16777216 KiB).".into(),
        ),
        (
            "rxtxcpu",
            &["-Bx"],
            "Invalid buffer size 'x' (expected 1-16777216 KiB).".into(),
        ),
        (
            "rxtxcpu",
            &["--buffer-size="],
            "Invalid buffer size '' (expected 1-16777216 KiB).".into(),
        ),
        (
            "rxtxcpu",
            &["-s", "262145"],
            "Invalid snapshot length '262145' (expected 0-262144).".into(),
        ),
        (
            "rxtxcpu",
            &["-s", "-1"],
            "Invalid snapshot length '-1' (expected 0-262144).".into(),
        ),
        (
            "rxcpu",
            &["--snapshot-length=64k"],
            "Invalid snapshot length '64k' (expected 0-262144).".into(),
        ),
        (
            "rxtxcpu",
            &["--time-stamp-precision=milli"],
            "Invalid time stamp precision 'milli'.".into(),
        ),
        (
            "txcpu",
            &["--time-stamp-precision", ""],
            "Invalid time stamp precision ''.".into(),
        ),
        (
            "rxtxcpu",
            &["--verbose=1"],
            "Option '--verbose' doesn't allow an argument.".into(),
        ),
        (
            "rxtxcpu",
            &["--promiscuous=yes"],
            "Option '--promiscuous' doesn't allow an argument.".into(),
        ),
        (
            "rxtxcpu",
            &["--help=1"],
            "Option '--help' doesn't allow an argument.".into(),
        ),
        ("rxtxcpu", &["-c", "+5"], "Invalid count '+5'.".into()),
        ("rxtxcpu", &["-c", "0x10"], "Invalid count '0x10'.".into()),
        (
            "rxtxcpu",
            &["-l", "65536"],
            "Invalid cpu list '65536'.".into(),
        ),
        (
            "rxtxcpu",
            &["-l", "0-65536"],
            "Invalid cpu list '0-65536'.".into(),
        ),
        ("rxtxcpu", &["-l", "1-0"], "Invalid cpu list '1-0'.".into()),
        (
            "rxtxcpu",
            &["-l", "0,,1"],
            "Invalid cpu list '0,,1'.".into(),
        ),
        ("rxtxcpu", &["-m", "0x"], "Invalid cpu mask '0x'.".into()),
        (
            "rxtxcpu",
            &["-m", &beyond],
            format!("Invalid cpu mask '{beyond}'."),
        ),
    ];
    check_usage_errors(cases);
}

#[test]
fn mask_helper_matches_known_masks() {
    // The test's own mask formatter against the contract's examples.
    let set = |v: &[u32]| v.iter().copied().collect::<CpuSet>();
    assert_eq!(mask_digits(&set(&[0, 2, 3, 4, 6])), b"5d");
    assert_eq!(mask_digits(&set(&[])), b"0");
    assert_eq!(mask_digits(&(0..40).collect()), b"ffffffffff");
    assert_eq!(typed_mask(&set(&[32]), 0, &[], &[1], false), "1,00000000");
}
