//! Command-line contract: usage errors, --help, --version, option syntax.
//! Nothing here captures packets (except the unknown-interface case, which
//! runs in its own namespace).

mod common;

use common::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[test]
fn invalid_count() {
    check_usage_errors(&[
        ("rxtxcpu", &["-c", "10j"], "Invalid count '10j'."),
        ("rxtxcpu", &["-c10j"], "Invalid count '10j'."),
        ("rxtxcpu", &["--count=10j"], "Invalid count '10j'."),
        ("rxtxcpu", &["--count", "10j"], "Invalid count '10j'."),
        ("rxcpu", &["-c", "10j"], "Invalid count '10j'."),
        ("txcpu", &["--count=x", "lo"], "Invalid count 'x'."),
        // Stricter than the original.
        ("rxtxcpu", &["-c", "-1"], "Invalid count '-1'."),
        (
            "rxtxcpu",
            &["-c", "99999999999999999999999"],
            "Invalid count '99999999999999999999999'.",
        ),
        ("rxtxcpu", &["-c", ""], "Invalid count ''."),
        ("rxtxcpu", &["--count="], "Invalid count ''."),
        // Whitespace is no part of a number, as for a cpu list or mask.
        ("rxtxcpu", &["-c", " 5"], "Invalid count ' 5'."),
        ("rxtxcpu", &["-c", "5 "], "Invalid count '5 '."),
    ]);
}

/// An empty FILE (a script's unset variable, `-w "$OUT"`) named no file:
/// numbered, it made files called `-0`, `-1` in the current directory.
#[test]
fn invalid_write_file() {
    check_usage_errors(&[
        ("rxtxcpu", &["-w", "", "lo"], "Invalid write file ''."),
        ("rxtxcpu", &["--write=", "lo"], "Invalid write file ''."),
        ("rxcpu", &["--pcapng", "-w", ""], "Invalid write file ''."),
    ]);
}

#[test]
fn invalid_cpu_list() {
    check_usage_errors(&[
        ("rxtxcpu", &["-l", "10j"], "Invalid cpu list '10j'."),
        ("rxtxcpu", &["-l10j"], "Invalid cpu list '10j'."),
        ("rxtxcpu", &["--cpu-list=10j"], "Invalid cpu list '10j'."),
        ("rxtxcpu", &["--cpu-list", "x"], "Invalid cpu list 'x'."),
        ("rxcpu", &["-l", "10j"], "Invalid cpu list '10j'."),
        ("rxtxcpu", &["-l", ""], "Invalid cpu list ''."),
        ("rxtxcpu", &["-l", "-1"], "Invalid cpu list '-1'."),
        // Whitespace anywhere, as for -c and every other number.
        ("rxtxcpu", &["-l", " 1"], "Invalid cpu list ' 1'."),
        ("rxtxcpu", &["--cpu-list=0 "], "Invalid cpu list '0 '."),
        ("rxtxcpu", &["-l", "0, 1"], "Invalid cpu list '0, 1'."),
        ("rxtxcpu", &["-l", "0 -1"], "Invalid cpu list '0 -1'."),
        ("rxtxcpu", &["-l", "\t0"], "Invalid cpu list '\\t0'."),
    ]);
}

#[test]
fn invalid_cpu_mask() {
    check_usage_errors(&[
        ("rxtxcpu", &["-m", "10j"], "Invalid cpu mask '10j'."),
        ("rxtxcpu", &["-m10j"], "Invalid cpu mask '10j'."),
        ("rxtxcpu", &["--cpu-mask=10j"], "Invalid cpu mask '10j'."),
        ("rxtxcpu", &["--cpu-mask", "xyz"], "Invalid cpu mask 'xyz'."),
        ("rxcpu", &["-m", "10j"], "Invalid cpu mask '10j'."),
        ("rxtxcpu", &["-m", ""], "Invalid cpu mask ''."),
        ("rxtxcpu", &["-m", " 3"], "Invalid cpu mask ' 3'."),
        ("rxtxcpu", &["--cpu-mask=3 "], "Invalid cpu mask '3 '."),
        ("rxtxcpu", &["-m", "1 ,2"], "Invalid cpu mask '1 ,2'."),
    ]);
}

#[test]
fn invalid_direction() {
    check_usage_errors(&[
        ("rxtxcpu", &["-d", "10j"], "Invalid direction '10j'."),
        ("rxtxcpu", &["-d10j"], "Invalid direction '10j'."),
        ("rxtxcpu", &["--direction=10j"], "Invalid direction '10j'."),
        (
            "rxtxcpu",
            &["--direction", "both"],
            "Invalid direction 'both'.",
        ),
        ("rxcpu", &["-d", "10j"], "Invalid direction '10j'."),
        ("txcpu", &["-d", ""], "Invalid direction ''."),
    ]);
}

#[test]
fn missing_option_argument() {
    check_usage_errors(&[
        ("rxtxcpu", &["-w"], "Option '-w' requires an argument."),
        (
            "rxtxcpu",
            &["--write"],
            "Option '--write' requires an argument.",
        ),
        ("rxtxcpu", &["-c"], "Option '-c' requires an argument."),
        (
            "rxtxcpu",
            &["--count"],
            "Option '--count' requires an argument.",
        ),
        ("rxtxcpu", &["-l"], "Option '-l' requires an argument."),
        (
            "rxtxcpu",
            &["--cpu-list"],
            "Option '--cpu-list' requires an argument.",
        ),
        ("rxtxcpu", &["-m"], "Option '-m' requires an argument."),
        ("rxtxcpu", &["-d"], "Option '-d' requires an argument."),
        (
            "rxtxcpu",
            &["--direction"],
            "Option '--direction' requires an argument.",
        ),
        ("rxcpu", &["-w"], "Option '-w' requires an argument."),
    ]);
}

#[test]
fn unrecognized_option() {
    check_usage_errors(&[
        ("rxtxcpu", &["-z"], "Unrecognized option '-z'."),
        ("rxtxcpu", &["-zv"], "Unrecognized option '-z'."),
        ("rxtxcpu", &["-vz"], "Unrecognized option '-z'."),
        ("rxtxcpu", &["-pUz"], "Unrecognized option '-z'."),
        ("rxtxcpu", &["--zzz"], "Unrecognized option '--zzz'."),
        ("rxtxcpu", &["lo", "--zzz"], "Unrecognized option '--zzz'."),
        ("rxcpu", &["-z"], "Unrecognized option '-z'."),
        ("txcpu", &["--zzz"], "Unrecognized option '--zzz'."),
    ]);
}

#[test]
fn cpu_list_and_mask_are_mutually_exclusive() {
    let msg = "-l [--cpu-list] and -m [--cpu-mask] are mutually exclusive.";
    check_usage_errors(&[
        ("rxtxcpu", &["-l", "0", "-m", "1"], msg),
        ("rxtxcpu", &["-m1", "-l0"], msg),
        ("rxtxcpu", &["--cpu-list=0", "--cpu-mask=1"], msg),
        ("rxcpu", &["-l", "0", "-m", "1"], msg),
    ]);
}

#[test]
fn no_configured_cpus() {
    // This machine has cpus 0 and 1 only.
    let list = "No configured cpus present in cpu list.";
    let mask = "No configured cpus present in cpu mask.";
    check_usage_errors(&[
        ("rxtxcpu", &["-l", "5"], list),
        ("rxtxcpu", &["-l", "2-7"], list),
        ("rxtxcpu", &["-l", "4,6"], list),
        ("rxcpu", &["-l", "5"], list),
        ("rxtxcpu", &["-m", "4"], mask),
        // Any case, commas anywhere.
        ("rxtxcpu", &["-m", "F0"], mask),
        ("rxtxcpu", &["-m", "f0"], mask),
        ("rxtxcpu", &["-m", "f,0"], mask),
        ("rxtxcpu", &["-m", ",F,0,"], mask),
        ("rxtxcpu", &["-m", "ffff,fffffffc"], mask),
        ("txcpu", &["--cpu-mask=Fc"], mask),
    ]);
}

#[test]
fn option_syntax_variants_are_accepted() {
    // Each case parses fine up to the (deliberate) empty cpu selection.
    let list = "No configured cpus present in cpu list.";
    let mask = "No configured cpus present in cpu mask.";
    check_usage_errors(&[
        ("rxtxcpu", &["-c6", "-l5"], list),
        ("rxtxcpu", &["-c", "6", "-l", "5"], list),
        ("rxtxcpu", &["--count=6", "--cpu-list=5"], list),
        ("rxtxcpu", &["--count", "6", "--cpu-list", "5"], list),
        ("rxtxcpu", &["-c", "0", "-l", "5"], list),
        ("rxtxcpu", &["-pUv", "-l5"], list),
        ("rxtxcpu", &["-pUvc6", "-l5"], list),
        ("rxtxcpu", &["-vl5"], list),
        ("rxtxcpu", &["-drx", "-m4"], mask),
        ("rxtxcpu", &["-d", "tx", "-m", "4"], mask),
        ("rxtxcpu", &["--direction=rxtx", "--cpu-mask=4"], mask),
        ("rxtxcpu", &["--direction", "rx", "--cpu-mask", "4"], mask),
        (
            "rxtxcpu",
            &["--promiscuous", "--packet-buffered", "--verbose", "-l5"],
            list,
        ),
        ("rxtxcpu", &["-B", "1024", "-l5"], list),
        ("rxtxcpu", &["--buffer-size=1024", "-l5"], list),
        ("rxtxcpu", &["-l5", "lo"], list),
        ("rxtxcpu", &["lo", "-l5"], list),
    ]);
}

#[test]
fn only_one_interface() {
    check_usage_errors(&[
        (
            "rxtxcpu",
            &["lo", "lo2"],
            "Only one interface argument is allowed (got [ 'lo', 'lo2' ]).",
        ),
        (
            "rxcpu",
            &["-v", "lo", "lo2"],
            "Only one interface argument is allowed (got [ 'lo', 'lo2' ]).",
        ),
    ]);
}

#[test]
fn write_to_stdout_needs_a_single_cpu() {
    let msg = "Write file '-' (stdout) is only permitted when capturing on a single cpu.";
    check_usage_errors(&[
        ("rxtxcpu", &["-w", "-"], msg),
        ("rxtxcpu", &["-w-"], msg),
        ("rxtxcpu", &["--write=-"], msg),
        ("rxtxcpu", &["-w", "-", "-l", "0,1"], msg),
        ("rxtxcpu", &["-w", "-", "-l", "0-1", "lo"], msg),
        ("rxtxcpu", &["-w", "-", "-m", "3"], msg),
        ("rxcpu", &["-w", "-"], msg),
    ]);
}

fn assert_help(f: &Finished) {
    assert_eq!(f.status.code(), Some(0), "{f}");
    assert_eq!(f.stderr, "", "{f}");
    assert!(
        f.stdout
            .starts_with("Usage:\n  rxtxcpu [OPTIONS] [INTERFACE]\n\nOptions:\n"),
        "{f}"
    );
    assert!(
        f.stdout
            .lines()
            .any(|l| l == "  -c, [--count=N]                # Exit after receiving N packets."),
        "{f}"
    );
    for entry in [
        "-B, [--buffer-size=KIB]",
        "-c, [--count=N]",
        "-d, [--direction=DIRECTION]",
        "-h, [--help]",
        "-l, [--cpu-list=CPULIST]",
        "-m, [--cpu-mask=CPUMASK]",
        "-p, [--promiscuous]",
        "-U, [--packet-buffered]",
        "-v, [--verbose]",
        "-V, [--version]",
        "-w, [--write=FILE]",
    ] {
        assert!(
            f.stdout
                .lines()
                .any(|l| l.strip_prefix("  ").is_some_and(|l| l.starts_with(entry))),
            "no help entry `  {entry}`\n{f}"
        );
    }
}

#[test]
fn help() {
    let long = run("rxtxcpu", &["--help"]);
    assert_help(&long);
    let short = run("rxtxcpu", &["-h"]);
    assert_eq!(short.stdout, long.stdout, "-h and --help differ");
    assert_help(&run("rxtxcpu", &["-v", "--help", "lo"]));
}

#[test]
fn version() {
    for (name, args) in [
        ("rxtxcpu", &["-V"][..]),
        ("rxtxcpu", &["--version"]),
        ("rxcpu", &["-V"]),
        ("txcpu", &["--version"]),
    ] {
        let f = run(name, args);
        assert_eq!(f.status.code(), Some(0), "{f}");
        assert_eq!(f.stdout, format!("{name} version {VERSION}\n"), "{f}");
        assert_eq!(f.stderr, "", "{f}");
    }
}

#[test]
fn unknown_interface() {
    let ns = Netns::new();
    for name in NAMES {
        run_in(&ns, name, &["nosuch"]).assert_runtime_error(&format!(
            "{name}: error setting ifname 'nosuch': No such device"
        ));
    }
}

#[test]
fn ambiguous_abbreviations_list_the_candidates() {
    check_usage_errors(&[
        (
            "rxtxcpu",
            &["--flow"][..],
            "Ambiguous option '--flow' (could be '--flows', '--flows-max', '--flows-idle').",
        ),
        (
            "rxtxcpu",
            &["--filt", "udp", "lo"],
            "Ambiguous option '--filt' (could be '--filter', '--filter-file').",
        ),
        (
            "rxcpu",
            &["--fil=x"],
            "Ambiguous option '--fil' (could be '--filter', '--filter-file', '--file-size', \
             '--file-count').",
        ),
        (
            "rxtxcpu",
            &["--cpu"],
            "Ambiguous option '--cpu' (could be '--cpu-list', '--cpu-mask').",
        ),
        (
            "rxqueue",
            &["--queue=1", "lo"],
            "Ambiguous option '--queue' (could be '--queue-list', '--queue-mask').",
        ),
        ("rxtxcpu", &["--d"], "Option '--d' requires an argument."),
        // What the original took keeps its meaning: --d is --direction,
        // though --duration starts with it too.
        ("rxtxcpu", &["--d", "10j"], "Invalid direction '10j'."),
        (
            "rxtxcpu",
            &["--du=x"],
            "Invalid duration 'x' (expected seconds above 0, as 10 or 2.5).",
        ),
    ]);
}

#[test]
fn options_of_another_vantage_say_whose_they_are() {
    check_usage_errors(&[
        (
            "rxtxcpu",
            &["--queue-list=0", "vb"][..],
            "Option '--queue-list' is for the queue vantage (rxtxqueue, or --vantage=queue).",
        ),
        (
            "rxcpu",
            &["--queue-m", "1", "vb"],
            "Option '--queue-m' is for the queue vantage (rxqueue, or --vantage=queue).",
        ),
        (
            "txcpu",
            &["--numa-list=0"],
            "Option '--numa-list' is for the numa vantage (txnuma, or --vantage=numa).",
        ),
    ]);
}

#[test]
fn range_errors_say_the_range() {
    check_usage_errors(&[
        (
            "rxtxcpu",
            &["-B", "0"][..],
            "Invalid buffer size '0' (expected 1-16777216 KiB).",
        ),
        (
            "rxtxcpu",
            &["--live", "--interval=0.05"],
            "Invalid interval '0.05' (expected 0.1-86400 seconds).",
        ),
        (
            "rxtxcpu",
            &["-s", "262145"],
            "Invalid snapshot length '262145' (expected 0-262144).",
        ),
        (
            "rxtxcpu",
            &["--duration=0"],
            "Invalid duration '0' (expected seconds above 0, as 10 or 2.5).",
        ),
        (
            "rxtxcpu",
            &["--duration", "-1"],
            "Invalid duration '-1' (expected seconds above 0, as 10 or 2.5).",
        ),
        (
            "rxtxcpu",
            &["--duration=1m"],
            "Invalid duration '1m' (expected seconds above 0, as 10 or 2.5).",
        ),
        (
            "rxtxcpu",
            &["--duration"],
            "Option '--duration' requires an argument.",
        ),
    ]);
}

/// The words after the interface are a filter expression (tested with
/// captures in tests/capture.rs); where they cannot be one, the original's
/// message stays.
#[test]
fn interface_arguments_and_filter_expressions() {
    check_usage_errors(&[
        (
            "rxtxcpu",
            &["lo", "lo2"][..],
            "Only one interface argument is allowed (got [ 'lo', 'lo2' ]).",
        ),
        (
            "rxtxcpu",
            &["eth0", "eth1", "udp", "prot", "9"],
            "Only one interface argument is allowed (got [ 'eth0', 'eth1', 'udp', 'prot', '9' ]).",
        ),
        (
            "rxtxcpu",
            &["lo", "udp", "port", "9", "--filter=icmp"],
            "--filter and a filter expression argument ('udp port 9') are mutually exclusive.",
        ),
        (
            "rxtxcpu",
            &["-F", "f.bpf", "-i", "lo", "udp"],
            "-F [--filter-file] and a filter expression argument ('udp') are mutually exclusive.",
        ),
        (
            "rxtxcpu",
            &["-i", "lo", "-d", "rx", "--xdp", "udp"],
            "A filter expression argument ('udp') does not work with --xdp.",
        ),
        (
            "rxtxcpu",
            &["-i", "lo", ""],
            "Invalid filter expression ''.",
        ),
        ("rxtxcpu", &["-i"], "Option '-i' requires an argument."),
    ]);
}

#[test]
fn rss_hash_refuses_capture_options() {
    let tuple = "--rss-hash=66.9.149.187,2794,161.142.100.80,1766";
    let msg = |o: &str| format!("{o} does not work with --rss-hash (it captures nothing).");
    check_usage_errors(&[
        ("rxtxcpu", &[tuple, "-c", "5"][..], msg("-c [--count]")),
        ("rxtxcpu", &[tuple, "--live"], msg("--live")),
        ("rxtxcpu", &[tuple, "-w", "x.pcap"], msg("-w [--write]")),
        ("rxtxcpu", &[tuple, "-l", "0"], msg("-l [--cpu-list]")),
        (
            "rxqueue",
            &[tuple, "-m", "1", "lo"],
            msg("-m [--queue-mask]"),
        ),
        ("rxtxcpu", &[tuple, "--duration=1"], msg("--duration")),
        ("rxtxcpu", &[tuple, "--flows"], msg("--flows")),
        (
            "rxtxcpu",
            &[tuple, "lo", "udp"],
            "A filter expression argument ('udp') does not work with --rss-hash \
             (it captures nothing)."
                .to_string(),
        ),
    ]);
}

#[test]
fn rss_hash_verbose_and_json() {
    let tuple = "--rss-hash=66.9.149.187,2794,161.142.100.80,1766";
    let ms = "6d:5a:56:da:25:5b:0e:c2:41:67:25:3d:43:a3:8f:b0:d0:ca:2b:cb:\
              ae:7b:30:b4:77:cb:2d:a3:80:30:f2:0c:6a:42:b7:3b:be:ac:01:fa";
    let f = run("rxtxcpu", &["-v", tuple]);
    assert_eq!(f.status.code(), Some(0), "{f}");
    assert_eq!(f.stdout, "hash:  51ccc178\n", "{f}");
    assert_eq!(
        f.stderr,
        format!(
            "rxtxcpu: key {ms} (40 bytes, Microsoft's verification key: no --rss-key, \
             no interface)\nrxtxcpu: no indirection table: no interface given\n"
        ),
        "{f}"
    );
    let key = ["6d:5a"; 20].join(":");
    let f = run("rxtxcpu", &["--verbose", tuple, "--rss-key", &key]);
    assert!(
        f.stderr
            .starts_with(&format!("rxtxcpu: key {key} (40 bytes, --rss-key)\n")),
        "{f}"
    );
    // lo has neither key nor table.
    let ns = Netns::new();
    let f = run_in(&ns, "rxtxcpu", &["--json", tuple, "-i", "lo"]);
    assert_eq!(f.status.code(), Some(0), "{f}");
    assert_eq!(f.stderr, "", "{f}");
    let j: serde_json::Value = serde_json::from_str(&f.stdout).expect("JSON");
    assert_eq!(
        j,
        serde_json::json!({
            "hash": "0x51ccc178",
            "interface": "lo",
            "index": null,
            "queue": null,
            "cpus": null,
            "table_size": 0,
            "key": ms,
            "key_source": "microsoft",
        }),
        "{f}"
    );
    assert!(f.stdout.ends_with("}\n") && f.stdout.lines().count() == 1);
}

#[test]
fn help_names_the_new_options() {
    let f = run("rxtxcpu", &["--help"]);
    for entry in ["-i, [--interface=INTERFACE]", "[--duration=SECONDS]"] {
        assert!(
            f.stdout.lines().any(|l| l.trim_start().starts_with(entry)),
            "no help entry `{entry}`\n{f}"
        );
    }
    assert!(
        f.stdout
            .contains("Words after INTERFACE are a filter expression"),
        "{f}"
    );
    let e = run("rxtxcpu", &["-z"]);
    for item in ["[--interface=INTERFACE]", "[--duration=SECONDS]"] {
        assert!(e.stderr.contains(item), "usage lacks {item}\n{e}");
    }
}
