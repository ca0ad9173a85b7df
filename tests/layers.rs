//! The shape of the source tree, checked: each top-level module of src/
//! imports only modules below it in the pipeline's order, `unsafe` is
//! allowed only in src/sys/, and no file's production part (before its
//! tests) is over 800 lines. ARCHITECTURE.md describes the layers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers, lowest first: a module may import only those before it.
/// lib.rs and main.rs, the roots, may import anything.
const ORDER: [&str; 17] = [
    "error",
    "cpuset",
    "options",
    "packet",
    "sys",
    "vantage",
    "filter",
    "format",
    "consumers",
    "steering",
    "worker",
    "report",
    "live",
    "metrics",
    "source",
    "run",
    "cli",
];

/// The longest production part (lines before a file's tests) allowed.
const MAX_LINES: usize = 800;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`src/source/xdp/mod.rs` ->
/// `source`); None for the roots.
fn top(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// Files that are compiled for tests only: declared after `#[cfg(test)]`
/// (`mod tests;`, `#[path = "..."] mod ...;`).
fn test_only_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        let dir = if f.file_name().unwrap() == "mod.rs" || f.file_name().unwrap() == "lib.rs" {
            f.parent().unwrap().to_path_buf()
        } else {
            f.with_extension("")
        };
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let l = l.trim();
            let Some(name) = l
                .strip_prefix("mod ")
                .or_else(|| l.strip_prefix("pub mod "))
                .or_else(|| l.strip_prefix("pub(crate) mod "))
                .and_then(|r| r.strip_suffix(';'))
            else {
                continue;
            };
            let attrs: Vec<&str> = lines[..i]
                .iter()
                .rev()
                .take_while(|a| a.trim().starts_with("#["))
                .map(|a| a.trim())
                .collect();
            if !attrs.contains(&"#[cfg(test)]") {
                continue;
            }
            let path = attrs.iter().find_map(|a| {
                a.strip_prefix("#[path = \"")
                    .and_then(|r| r.strip_suffix("\"]"))
            });
            match path {
                Some(p) => {
                    out.insert(f.parent().unwrap().join(p));
                }
                None => {
                    out.insert(dir.join(format!("{name}.rs")));
                    out.insert(dir.join(name).join("mod.rs"));
                }
            }
        }
    }
    out
}

/// The production part of a file: up to its first top-level
/// `#[cfg(test)]`.
fn production(text: &str) -> &str {
    match text.find("\n#[cfg(test)]\n") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// The top-level modules named by `crate::NAME` in `code`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        // Not `rxtxcpu::` spelled with a prefix, not a doc link's text.
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

/// Comment lines: doc links may point anywhere.
fn without_comments(code: &str) -> String {
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn modules_import_only_lower_layers() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let tests = test_only_files(&files);
    let rank = |m: &str| ORDER.iter().position(|o| *o == m);
    let mut bad = Vec::new();
    for f in &files {
        let Some(module) = top(f) else { continue };
        if tests.contains(f) {
            continue;
        }
        let Some(mine) = rank(&module) else {
            bad.push(format!(
                "{}: top-level module `{module}` has no layer in ORDER",
                f.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for m in imports(&without_comments(production(&text))) {
            match rank(&m) {
                Some(r) if r < mine || m == module => {}
                Some(_) => bad.push(format!(
                    "{}: `{module}` imports `{m}`, which is not below it",
                    f.strip_prefix(src()).unwrap().display()
                )),
                // A macro or an item of lib.rs (errln!, testing).
                None => {}
            }
        }
    }
    assert!(
        bad.is_empty(),
        "imports against the layers:\n{}",
        bad.join("\n")
    );
}

#[test]
fn unsafe_only_in_sys() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    assert!(
        lib.contains("#![deny(unsafe_code)]"),
        "lib.rs must deny unsafe_code"
    );
    let allows: Vec<&str> = lib
        .lines()
        .zip(lib.lines().skip(1))
        .filter(|(a, _)| a.contains("allow(unsafe_code)"))
        .map(|(_, next)| next.trim())
        .collect();
    assert_eq!(
        allows,
        ["pub(crate) mod sys;"],
        "only sys may allow unsafe_code"
    );
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    for f in files {
        if f.starts_with(src().join("sys")) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains("allow(unsafe_code)") || f.ends_with("lib.rs"),
            "{} allows unsafe code",
            f.display()
        );
    }
}

#[test]
fn production_parts_are_short() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let tests = test_only_files(&files);
    let long: Vec<String> = files
        .iter()
        .filter(|f| !tests.contains(*f))
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let n = production(&text).lines().count();
            (n > MAX_LINES).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "production parts over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}
