//! clap's errors in the original's words: getopt_long's messages for an
//! unknown, ambiguous or valueless option, naming the option as the user
//! typed it.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::options::{Direction, Vantage};

use super::table::{expand, OPTIONS};
use super::UsageError;

/// Turns a clap error into the original's message.
pub(super) fn translate(
    e: clap::Error,
    args: &[OsString],
    name: &str,
    vantage: Vantage,
) -> UsageError {
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
