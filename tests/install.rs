//! `make install` and `make uninstall` into a temporary DESTDIR: the files
//! and symlinks, the direction each name defaults to, the man page rendering
//! with `man -l` and found by name, the shell completions, and an uninstall
//! that removes exactly what install put there.
//!
//! The Makefile's release build uses its own target directory
//! (`<CARGO_TARGET_TMPDIR>/install-target`, passed as CARGO_TARGET_DIR):
//! `cargo test` holds the lock of the target directory it builds in while
//! its tests run, so a `cargo build` on the same directory from inside a
//! test would wait for that lock forever. A separate directory costs one
//! release build the first time (later runs only rebuild what changed),
//! and tests the real `make install`, cargo build included, rather than a
//! copy of a prebuilt binary.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{files_under, list_word, output_if_installed, root, show, NAMES};

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-target")
}

/// Runs make in the source tree with `args`; panics with its output unless
/// it succeeds.
fn make(args: &[&str]) -> Output {
    let target = target_dir();
    let out = Command::new("make")
        .current_dir(root())
        .args(args)
        .arg(format!("CARGO_TARGET_DIR={}", target.display()))
        // A make that runs `cargo test` must not hand its jobserver to ours.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run make ({e}): apt-get install make"));
    assert!(
        out.status.success(),
        "{}",
        show(&format!("make {}", args.join(" ")), &out)
    );
    out
}

fn expected_entries() -> BTreeSet<String> {
    let mut want = BTreeSet::new();
    for n in NAMES {
        want.insert(format!("usr/sbin/{n}"));
        want.insert(format!("usr/share/man/man8/{n}.8"));
        want.insert(format!("usr/share/bash-completion/completions/{n}"));
        want.insert(format!("usr/share/zsh/site-functions/_{n}"));
        want.insert(format!("usr/share/fish/vendor_completions.d/{n}.fish"));
    }
    want
}

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

/// Whether man-db's `man` is installed.
fn have_man() -> bool {
    Command::new("man")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Renders a man page as a user would: man-db's `man` if installed, else
/// mandoc. Returns the text; a warning on stderr fails.
fn render_man(args: &[&str]) -> String {
    let have_man = have_man();
    let mut cmd = if have_man {
        let mut c = Command::new("man");
        c.args(args);
        c
    } else {
        // mandoc has no search by name here; render the file argument.
        let mut c = Command::new("mandoc");
        c.args(["-T", "utf8"]).arg(args.last().unwrap());
        c
    };
    let out = cmd
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "80")
        .env("LC_ALL", "C.UTF-8")
        .env_remove("MANPATH")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run man or mandoc: apt-get install man-db (or mandoc)");
    let what = format!(
        "{} {}",
        if have_man { "man" } else { "mandoc" },
        args.join(" ")
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        show(&what, &out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Offers completions for `words` (the last one being completed) with the
/// installed bash script, the way bash-completion would after loading it.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let name = words[0];
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let snippet = format!(
        "source '{}' || exit 1\n\
         complete -p {name} >/dev/null || exit 1\n\
         COMP_WORDS=({})\nCOMP_CWORD={cword}\n\
         COMP_LINE='{}'\nCOMP_POINT=${{#COMP_LINE}}\n\
         _{name} {name} '{}' '{prev}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" "),
        words.join(" "),
        words[cword],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &snippet])
        .stdin(Stdio::null())
        .output()
        .expect("cannot run bash");
    assert!(out.status.success(), "{}", show("bash completion", &out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// What fish offers for `line` with the installed script loaded; None if
/// fish is not installed.
fn fish_complete(script: &Path, line: &str) -> Option<Vec<String>> {
    let snippet = format!("source '{}'; complete -C '{line}'", script.display());
    let out = output_if_installed(
        Command::new("fish")
            .args(["--no-config", "-c", &snippet])
            .stdin(Stdio::null()),
    )?;
    assert!(out.status.success(), "{}", show("fish completion", &out));
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or("").to_string())
            .collect(),
    )
}

/// Runs `shell -n script` (a syntax check) if that shell is installed.
fn syntax_check(shell: &str, script: &Path) {
    let Some(out) = output_if_installed(Command::new(shell).arg("-n").arg(script)) else {
        eprintln!("{shell} not installed; not checking {}", script.display());
        return;
    };
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        show(&format!("{shell} -n {}", script.display()), &out)
    );
}

#[test]
fn make_install_then_uninstall() {
    // Left in place when the test fails, for a look; removed at the next run.
    let destdir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-destdir");
    let _ = fs::remove_dir_all(&destdir);
    let dest = destdir.to_str().unwrap();
    let destdir_arg = format!("DESTDIR={dest}");

    make(&["install", &destdir_arg, "PREFIX=/usr"]);
    // Again over an existing install: symlinks and files are replaced.
    make(&["install", &destdir_arg, "PREFIX=/usr"]);

    // Exactly the expected files, nothing else.
    let got: BTreeSet<String> = files_under(&destdir).into_iter().collect();
    let want = expected_entries();
    assert_eq!(
        got,
        want,
        "installed files differ\n  unexpected: {:?}\n  missing: {:?}",
        got.difference(&want).collect::<Vec<_>>(),
        want.difference(&got).collect::<Vec<_>>()
    );

    let sbin = destdir.join("usr/sbin");
    let man8 = destdir.join("usr/share/man/man8");
    let bin = sbin.join("rxtxcpu");
    let meta = fs::symlink_metadata(&bin).unwrap();
    assert!(meta.file_type().is_file(), "sbin/rxtxcpu is a regular file");
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o755,
        "sbin/rxtxcpu mode"
    );
    let page = man8.join("rxtxcpu.8");
    assert_eq!(
        fs::read(&page).unwrap(),
        fs::read(root().join("man/rxtxcpu.8")).unwrap(),
        "the installed man page is man/rxtxcpu.8"
    );
    assert_eq!(
        fs::symlink_metadata(&page).unwrap().permissions().mode() & 0o777,
        0o644,
        "man page mode"
    );

    // Every other name: relative symlinks beside rxtxcpu (so the tree can
    // move, e.g. from DESTDIR into place), likewise their man pages.
    for (dir, target) in [(&sbin, "rxtxcpu"), (&man8, "rxtxcpu.8")] {
        for n in NAMES.iter().filter(|n| **n != "rxtxcpu") {
            let link = if target.ends_with(".8") {
                dir.join(format!("{n}.8"))
            } else {
                dir.join(n)
            };
            let meta = fs::symlink_metadata(&link).unwrap();
            assert!(
                meta.file_type().is_symlink(),
                "{} is a symlink",
                link.display()
            );
            assert_eq!(
                fs::read_link(&link).unwrap(),
                Path::new(target),
                "{} -> {target}",
                link.display()
            );
        }
    }

    // The name sets the direction default and the streams, through the
    // symlinks.
    let version = env!("CARGO_PKG_VERSION");
    for name in NAMES {
        let default = &name[..name.len() - list_word(name).len()];
        let list = format!("[--{}-list=", list_word(name));
        let out = run(&sbin.join(name), &["--help"]);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success()
                && help.contains(&format!("Default: {default}\n"))
                && help.contains(&list),
            "{}",
            show(
                &format!("{name} --help (want Default: {default}, {list})"),
                &out
            )
        );
        assert!(
            help.starts_with(&format!("Usage:\n  {name} [OPTIONS]")),
            "{help}"
        );
        let out = run(&sbin.join(name), &["--version"]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{name} version {version}\n")
        );
    }

    // The man page renders, by file and by name (rxcpu.8 is the same page).
    let text = render_man(&["-l", page.to_str().unwrap()]);
    assert!(text.contains("RXTXCPU(8)"), "man -l output:\n{text}");
    assert!(
        text.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains(
                "rxtxcpu, rxcpu, txcpu, rxtxqueue, rxqueue, txqueue, rxtxnuma, rxnuma, txnuma -"
            ),
        "man -l output:\n{text}"
    );
    let manpath = destdir.join("usr/share/man");
    if have_man() {
        for n in NAMES {
            let by_name = render_man(&["-M", manpath.to_str().unwrap(), "8", n]);
            assert!(by_name.contains("RXTXCPU(8)"), "man 8 {n}:\n{by_name}");
        }
    }

    // Completions: for each name, in each shell's autoload place.
    let bash = destdir.join("usr/share/bash-completion/completions");
    let zsh = destdir.join("usr/share/zsh/site-functions");
    let fish = destdir.join("usr/share/fish/vendor_completions.d");
    for n in NAMES {
        let script = bash.join(n);
        let offered = bash_complete(&script, &[n, "--dir"]);
        assert_eq!(offered, ["--direction"], "bash: {n} --dir<TAB>");
        let offered = bash_complete(&script, &[n, "-d", ""]);
        assert_eq!(offered, ["rx", "tx", "rxtx"], "bash: {n} -d <TAB>");
        let offered = bash_complete(&script, &[n, "--time-stamp-precision", ""]);
        assert_eq!(
            offered,
            ["micro", "nano"],
            "bash: {n} --time-stamp-precision <TAB>"
        );
        let all = bash_complete(&script, &[n, "-"]);
        let vantage = rxtxcpu::options::Vantage::for_name(n);
        for (short, long, _) in rxtxcpu::cli::option_names(vantage) {
            assert!(
                all.contains(&format!("--{long}")),
                "bash: {n} offers --{long}"
            );
            if let Some(c) = short {
                assert!(all.contains(&format!("-{c}")), "bash: {n} offers -{c}");
            }
        }
        syntax_check("bash", &script);

        let script = zsh.join(format!("_{n}"));
        let text = fs::read_to_string(&script).unwrap();
        assert!(
            text.starts_with(&format!("#compdef {n}\n")),
            "{} starts with #compdef {n}",
            script.display()
        );
        syntax_check("zsh", &script);

        let script = fish.join(format!("{n}.fish"));
        let text = fs::read_to_string(&script).unwrap();
        assert!(
            text.contains(&format!("complete -c {n} -s d -l direction")),
            "{} completes {n}:\n{text}",
            script.display()
        );
        syntax_check("fish", &script);
        if let Some(offered) = fish_complete(&script, &format!("{n} -d ")) {
            assert_eq!(offered, ["rx", "rxtx", "tx"], "fish: {n} -d <TAB>");
            let offered = fish_complete(&script, &format!("{n} --dir")).unwrap();
            assert_eq!(offered, ["--direction"], "fish: {n} --dir<TAB>");
        }
    }

    // Uninstall removes exactly what install put there: a file of another
    // program in the same directories stays.
    let other = sbin.join("other-tool");
    fs::write(&other, "not ours").unwrap();
    make(&["uninstall", &destdir_arg, "PREFIX=/usr"]);
    assert_eq!(
        files_under(&destdir),
        ["usr/sbin/other-tool"],
        "after make uninstall"
    );
    // Uninstalling again is harmless.
    make(&["uninstall", &destdir_arg, "PREFIX=/usr"]);
    fs::remove_dir_all(&destdir).unwrap();
}

/// Without PREFIX, make installs under /usr/local (checked with -n: nothing
/// is built or installed).
#[test]
fn prefix_defaults_to_usr_local() {
    let out = make(&["-n", "install", "DESTDIR=/nonexistent-destdir"]);
    let script = String::from_utf8_lossy(&out.stdout);
    for path in [
        "/nonexistent-destdir/usr/local/sbin/rxtxcpu",
        "/nonexistent-destdir/usr/local/share/man/man8/rxtxcpu.8",
        "/nonexistent-destdir/usr/local/share/bash-completion/completions",
        "/nonexistent-destdir/usr/local/share/zsh/site-functions",
        "/nonexistent-destdir/usr/local/share/fish/vendor_completions.d",
    ] {
        assert!(
            script.contains(path),
            "make -n install does not mention {path}:\n{script}"
        );
    }
    let out = make(&["-n", "uninstall", "DESTDIR=/nonexistent-destdir"]);
    let script = String::from_utf8_lossy(&out.stdout);
    for n in NAMES {
        let path = format!("/nonexistent-destdir/usr/local/sbin/{n}");
        assert!(
            script.contains(&path),
            "make -n uninstall does not remove {path}:\n{script}"
        );
    }
}
