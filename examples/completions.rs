//! completions: writes a shell completion script for rxtxcpu to stdout,
//! generated from the clap definition (`rxtxcpu::cli::command`), so the
//! scripts always offer exactly the options the program takes.
//!
//!     cargo run --release --example completions -- bash            # for rxtxcpu
//!     cargo run --release --example completions -- zsh rxcpu       # for rxcpu
//!     cargo run --release --example completions -- fish txcpu
//!
//! SHELL is bash, zsh, fish, elvish or powershell. NAME (default rxtxcpu) is
//! the command the script completes: rxcpu, txcpu, rxqueue, rxtxnuma and
//! the rest are the same program under other names (each with its own
//! list and mask options), and every shell loads completions by command name
//! (bash-completion's completions/NAME, zsh's _NAME, fish's NAME.fish), so
//! `make install` generates one script per shell and name.
//!
//! Exit status: 0, or 2 on a usage error.

use std::io;
use std::process;

use clap::builder::PossibleValuesParser;
use clap::ValueHint;
use clap_complete::Shell;

/// Every name the program answers to.
fn names() -> Vec<&'static str> {
    rxtxcpu::options::NAMES.iter().map(|(n, _, _)| *n).collect()
}

fn usage(msg: &str) -> ! {
    eprintln!("completions: {msg}");
    eprintln!("Usage: completions SHELL [NAME]");
    eprintln!("  SHELL: bash, zsh, fish, elvish or powershell");
    eprintln!("  NAME:  {} (default rxtxcpu)", names().join(", "));
    process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("Usage: completions SHELL [NAME]");
        println!("Writes the completion script for NAME (default rxtxcpu) to stdout.");
        return;
    }
    let (shell, name) = match args.as_slice() {
        [shell] => (shell.as_str(), "rxtxcpu"),
        [shell, name] => (shell.as_str(), name.as_str()),
        [] => usage("missing SHELL"),
        _ => usage("too many arguments"),
    };
    let shell: Shell = shell
        .parse()
        .unwrap_or_else(|_| usage(&format!("unknown shell '{shell}'")));
    if !names().contains(&name) {
        usage(&format!("unknown name '{name}'"));
    }

    // Only the completion scripts get the value lists and hints: the
    // program itself validates these values with the original's messages,
    // which a clap value parser would replace.
    let vantage = rxtxcpu::options::Vantage::for_name(name);
    let mut cmd = rxtxcpu::cli::command(name, vantage)
        .mut_arg("direction", |a| {
            a.value_parser(PossibleValuesParser::new(["rx", "tx", "rxtx"]))
        })
        .mut_arg("time-stamp-precision", |a| {
            a.value_parser(PossibleValuesParser::new(["micro", "nano"]))
        })
        .mut_arg("write", |a| a.value_hint(ValueHint::FilePath))
        .mut_arg("filter-file", |a| a.value_hint(ValueHint::FilePath))
        .mut_arg("filter", |a| a.value_hint(ValueHint::Other))
        .mut_arg("count", |a| a.value_hint(ValueHint::Other))
        .mut_arg("vantage", |a| {
            a.value_parser(PossibleValuesParser::new(["cpu", "queue", "numa"]))
        })
        .mut_arg("list", |a| a.value_hint(ValueHint::Other))
        .mut_arg("mask", |a| a.value_hint(ValueHint::Other))
        .mut_arg("buffer-size", |a| a.value_hint(ValueHint::Other))
        .mut_arg("snapshot-length", |a| a.value_hint(ValueHint::Other))
        .mut_arg("duration", |a| a.value_hint(ValueHint::Other))
        .mut_arg("interface", |a| a.value_hint(ValueHint::Other))
        .mut_arg(rxtxcpu::cli::POSITIONAL, |a| a.value_hint(ValueHint::Other));
    clap_complete::generate(shell, &mut cmd, name, &mut io::stdout());
}
