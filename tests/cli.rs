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
