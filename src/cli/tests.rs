use super::*;
use crate::options::{Direction, FilterSource, Precision, SelectionKind, Vantage, DEFAULT_SNAPLEN};
use table::{original_abbreviations, OPTIONS};
use values::parse_seconds;

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
    assert!(
        usage("rxtxnuma", Vantage::Numa).contains("[--numa-list=NUMALIST|--numa-mask=NUMAMASK]")
    );
    for (name, v, _) in crate::options::NAMES {
        for line in usage(name, *v).lines() {
            assert!(line.len() <= 79, "{line}");
        }
    }
}

#[test]
fn help_layout() {
    let h = help("rxtxcpu", Vantage::Cpu);
    assert!(h.starts_with("Usage:\n  rxtxcpu [OPTIONS] [INTERFACE]\n\nOptions:\n  -c, [--count=N]"));
    assert!(h.contains("  -c, [--count=N]                # Exit after receiving N packets.\n"));
    assert!(help("rxcpu", Vantage::Cpu).contains("#   Default: rx\n"));
    assert!(help("txcpu", Vantage::Cpu).contains("#   Default: tx\n"));
    let q = help("rxqueue", Vantage::Queue);
    assert!(q.contains("  -l, [--queue-list=QUEUELIST]   # Capture only on queues in QUEUELIST.\n"));
    assert!(q.contains("#   Default: queue\n"));
    let n = help("txnuma", Vantage::Numa);
    assert!(
        n.contains("  -m, [--numa-mask=NUMAMASK]     # Capture only on numa nodes in NUMAMASK.\n")
    );
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
    // --pa was --packet-buffered before --path came.
    assert!(opts(&["--pa"]).packet_buffered);
    assert_eq!(
        original_abbreviations("packet-buffered", "rxtxcpu", Vantage::Cpu),
        ["pa"]
    );
    for v in [Vantage::Cpu, Vantage::Queue, Vantage::Numa] {
        let new_since = ["direction", "packet-buffered"];
        for o in OPTIONS.iter().filter(|o| !new_since.contains(&o.id)) {
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
    assert_eq!(err(&["-w", "", "lo"]), "Invalid write file ''.");
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
        "Ambiguous option '--flow' (could be '--flows', '--flows-max', '--flows-idle')."
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
    // A filter's first word that is no interface's name: the words are a
    // filter, and a bad one gets libpcap's message when it is compiled.
    let o = opts(&["lo", "udp", "prot", "9"]);
    assert_eq!(
        o.filter,
        Some(FilterSource::Expression("udp prot 9".into()))
    );
    assert_eq!(
        err(&["lo", "eth0", "udp"]),
        "Only one interface argument is allowed (got [ 'lo', 'eth0', 'udp' ])."
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
