//! The command line: options, the invocation name, help and usage text.
//!
//! Parsing follows getopt_long, as the original did: bundled short options
//! (`-pU`), attached values (`-c6`), `--opt=value` and `--opt value`,
//! unambiguous long-option prefixes (`--verb`), the last of a repeated
//! option wins. clap does the tokenizing; every error it reports is turned
//! into the original's exact message.
//!
//! - table.rs: every option once; the clap definition made from it
//! - help.rs: `--help` and the short usage
//! - parse.rs: the arguments checked and turned into [`Options`]
//! - values.rs: the values options take
//! - messages.rs: clap's errors in the original's words

mod help;
mod messages;
mod parse;
mod table;
mod values;

use std::ffi::OsString;
use std::path::Path;

use crate::options::Options;

pub use help::{help, usage};
pub use parse::{escape_controls, parse, vantage_of};
pub use table::{command, option_names, POSITIONAL};
pub use values::parse_decimal;

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

#[cfg(test)]
mod tests;
