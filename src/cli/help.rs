//! The text the command line prints: `--help` (the original's layout,
//! descriptions in a column) and the short usage that follows a usage
//! error (wrapped at 79 columns), both made from the option table.

use crate::options::Vantage;

use super::table::{expand, OPTIONS};

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
