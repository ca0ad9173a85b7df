//! `make deb`: the Debian package holds what `make install PREFIX=/usr`
//! installs (man pages gzipped, zsh completions in Debian's vendor
//! directory) and the service (the rxtxcpu@.service template, its options
//! in /etc/default/rxtxcpu, a conffile; no maintainer script, so nothing
//! is enabled or started); its control fields; the programs unpacked from
//! it (dpkg -x) answering `--version` under every name; `systemd-analyze
//! verify` clean on the unit; dpkg installing, removing and purging it in
//! a scratch root; and lintian (where installed) finding no error.
//!
//! The package is built from the release build of tests/install.rs: the
//! same target directory, `<CARGO_TARGET_TMPDIR>/install-target` (see the
//! comment at the top of that file for why it is not cargo test's own), so
//! the program is compiled once for both. Cargo runs the test binaries one
//! after another, so the two never run make in that directory at once.
//!
//! cargo-deb, dpkg-deb, systemd-analyze and lintian are not on every
//! machine: without them the checks that need them are skipped with a
//! message, except on CI (`CI` set), where `.ci/run` installs them and a
//! missing one fails.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{files_under, output_if_installed, root, show, NAMES};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-target")
}

fn on_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// Whether `program args` runs; when it does not, says so and, on CI, fails.
fn have(program: &str, args: &[&str], install: &str) -> bool {
    let found = output_if_installed(
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .is_some_and(|out| out.status.success());
    if !found {
        assert!(
            !on_ci(),
            "{program} is not installed, and CI must run this test: {install} (.ci/run does)"
        );
        eprintln!("{program} is not installed; skipping what needs it ({install})");
    }
    found
}

/// Runs `program args`; panics with its output unless it succeeds.
fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    let program = program.as_ref();
    let what = format!("{} {}", program.to_string_lossy(), args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(out.status.success(), "{}", show(&what, &out));
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `make deb` in the source tree, building into the shared target
/// directory; returns the path of the package it made.
fn make_deb() -> PathBuf {
    let target = target_dir();
    let out = Command::new("make")
        .current_dir(root())
        .arg("deb")
        .arg(format!("CARGO_TARGET_DIR={}", target.display()))
        // A make that runs `cargo test` must not hand its jobserver to ours.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run make ({e}): apt-get install make"));
    assert!(out.status.success(), "{}", show("make deb", &out));
    let arch = stdout(&run("dpkg", &["--print-architecture"]));
    let deb = target
        .join("debian")
        .join(format!("rxtxcpu_{VERSION}_{}.deb", arch.trim()));
    assert!(
        deb.is_file(),
        "make deb made no {}\n{}",
        deb.display(),
        show("make deb", &out)
    );
    deb
}

/// One entry of `dpkg-deb -c`: the mode string, owner, and symlink target.
#[derive(Debug)]
struct Entry {
    mode: String,
    owner: String,
    link: Option<String>,
}

/// `dpkg-deb -c` parsed: path (without the leading `./`) -> entry.
fn contents(deb: &Path) -> BTreeMap<String, Entry> {
    let out = run("dpkg-deb", &["-c", deb.to_str().unwrap()]);
    let mut entries = BTreeMap::new();
    for line in stdout(&out).lines() {
        // drwxr-xr-x 0/0 0 2026-12-01 00:00 ./usr/sbin/rxcpu -> rxtxcpu
        let words: Vec<&str> = line.split_whitespace().collect();
        let (mode, owner, path, link) = match words[..] {
            [mode, owner, _, _, _, path] => (mode, owner, path, None),
            [mode, owner, _, _, _, path, "->", target] => (mode, owner, path, Some(target)),
            _ => panic!("odd dpkg-deb -c line: {line}"),
        };
        let path = path
            .strip_prefix("./")
            .unwrap_or_else(|| panic!("odd dpkg-deb -c path: {line}"))
            .trim_end_matches('/')
            .to_string();
        let (mode, owner) = (mode.to_string(), owner.to_string());
        let link = link.map(str::to_string);
        entries.insert(path, Entry { mode, owner, link });
    }
    entries
}

/// The control fields, continuation lines joined with newlines.
fn control(deb: &Path) -> BTreeMap<String, String> {
    let out = run("dpkg-deb", &["-f", deb.to_str().unwrap()]);
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut last = None;
    // cargo-deb ends the paragraph with an empty line.
    for line in stdout(&out).lines().filter(|l| !l.is_empty()) {
        if let Some(more) = line.strip_prefix(' ') {
            let key: &String = last.as_ref().expect("continuation line first");
            let value = fields.get_mut(key).unwrap();
            value.push('\n');
            value.push_str(more);
        } else {
            let (key, value) = line.split_once(':').expect("field line");
            fields.insert(key.to_string(), value.trim().to_string());
            last = Some(key.to_string());
        }
    }
    fields
}

/// What the package holds besides directories: path -> symlink target
/// (None for a file). `make install PREFIX=/usr`'s files (tests/install.rs),
/// with the man pages gzipped as Debian wants them, the zsh completions in
/// vendor-completions (Debian's zsh has no /usr/share/zsh/site-functions in
/// its fpath), and the copyright and changelog every package has.
fn expected() -> BTreeMap<String, Option<String>> {
    let mut want = BTreeMap::new();
    for n in NAMES {
        let (bin, page) = if n == "rxtxcpu" {
            (None, None)
        } else {
            (
                Some("rxtxcpu".to_string()),
                Some("rxtxcpu.8.gz".to_string()),
            )
        };
        want.insert(format!("usr/sbin/{n}"), bin);
        want.insert(format!("usr/share/man/man8/{n}.8.gz"), page);
        want.insert(format!("usr/share/bash-completion/completions/{n}"), None);
        want.insert(format!("usr/share/zsh/vendor-completions/_{n}"), None);
        want.insert(
            format!("usr/share/fish/vendor_completions.d/{n}.fish"),
            None,
        );
    }
    want.insert("usr/share/doc/rxtxcpu/copyright".into(), None);
    want.insert("usr/share/doc/rxtxcpu/changelog.gz".into(), None);
    // The service: the unit template and its options (a conffile).
    want.insert(UNIT.into(), None);
    want.insert(DEFAULTS.into(), None);
    want
}

/// The systemd unit template, where the package puts it.
const UNIT: &str = "lib/systemd/system/rxtxcpu@.service";
/// Its options.
const DEFAULTS: &str = "etc/default/rxtxcpu";

fn gunzip(path: &Path) -> Vec<u8> {
    run("gzip", &["-dc", path.to_str().unwrap()]).stdout
}

/// The first line of debian/changelog: `rxtxcpu (VERSION) DIST; urgency=U`.
fn changelog_version() -> String {
    let text = fs::read_to_string(root().join("debian/changelog")).unwrap();
    let first = text.lines().next().unwrap_or("");
    let open = first.find('(').expect("changelog: rxtxcpu (VERSION) ...");
    let close = first.find(')').expect("changelog: rxtxcpu (VERSION) ...");
    assert!(
        first.starts_with("rxtxcpu ("),
        "debian/changelog starts with the package name: {first}"
    );
    first[open + 1..close].to_string()
}

#[test]
fn changelog_has_this_version() {
    assert_eq!(
        changelog_version(),
        VERSION,
        "debian/changelog's latest entry is for Cargo.toml's version: add one"
    );
}

#[test]
fn deb_package() {
    if !have("dpkg-deb", &["--version"], "apt-get install dpkg")
        || !have(
            "cargo",
            &["deb", "--version"],
            "cargo install --locked cargo-deb@3.8.0",
        )
    {
        return;
    }
    let deb = make_deb();

    // Exactly the expected files and symlinks; the directories are their
    // parents, root-owned like everything else.
    let got = contents(&deb);
    let files: BTreeMap<String, Option<String>> = got
        .iter()
        .filter(|(_, e)| !e.mode.starts_with('d'))
        .map(|(p, e)| (p.clone(), e.link.clone()))
        .collect();
    let want = expected();
    let got_paths: BTreeSet<&String> = files.keys().collect();
    let want_paths: BTreeSet<&String> = want.keys().collect();
    assert_eq!(
        files,
        want,
        "the package's files differ\n  unexpected: {:?}\n  missing: {:?}",
        got_paths.difference(&want_paths).collect::<Vec<_>>(),
        want_paths.difference(&got_paths).collect::<Vec<_>>()
    );
    let mut dirs = BTreeSet::new();
    for path in want.keys() {
        let mut p = Path::new(path);
        while let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(parent.to_str().unwrap().to_string());
            p = parent;
        }
    }
    let got_dirs: BTreeSet<String> = got
        .iter()
        .filter(|(_, e)| e.mode.starts_with('d'))
        .map(|(p, _)| p.clone())
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(got_dirs, dirs, "the package's directories");
    for (path, e) in &got {
        assert_eq!(e.owner, "0/0", "{path} is owned by root");
        let mode = if e.mode.starts_with('d') || path == "usr/sbin/rxtxcpu" {
            "rwxr-xr-x"
        } else if e.link.is_some() {
            "rwxrwxrwx"
        } else {
            "rw-r--r--"
        };
        assert_eq!(&e.mode[1..], mode, "{path} mode");
    }

    // Control fields.
    let fields = control(&deb);
    let field = |name: &str| {
        fields
            .get(name)
            .unwrap_or_else(|| panic!("no {name} field: {fields:#?}"))
            .as_str()
    };
    assert_eq!(field("Package"), "rxtxcpu");
    assert_eq!(
        field("Version"),
        VERSION,
        "the package's version is the crate's, which --version prints"
    );
    let arch = stdout(&run("dpkg", &["--print-architecture"]));
    assert_eq!(field("Architecture"), arch.trim());
    assert_eq!(field("Section"), "net");
    assert_eq!(field("Priority"), "optional");
    let depends = field("Depends");
    assert!(
        depends
            .split(',')
            .any(|d| d.trim().starts_with("libc6 ") || d.trim() == "libc6"),
        "Depends has libc6 (from dpkg-shlibdeps: apt-get install dpkg-dev): {depends}"
    );
    assert!(
        !depends.contains("libpcap"),
        "libpcap is loaded at run time, only for --filter: not a Depends: {depends}"
    );
    assert!(
        field("Recommends")
            .split(['|', ','])
            .any(|d| d.trim() == "libpcap0.8"),
        "Recommends: libpcap0.8, for --filter: {}",
        field("Recommends")
    );
    let maintainer = field("Maintainer");
    assert!(
        maintainer.contains(" <") && maintainer.ends_with('>'),
        "Maintainer: name <address>: {maintainer}"
    );
    let description = field("Description");
    let (synopsis, long) = description.split_once('\n').unwrap_or((description, ""));
    assert_eq!(synopsis, env!("CARGO_PKG_DESCRIPTION"));
    assert!(
        long.contains("rxtxqueue") && long.contains("rxtxnuma"),
        "the extended description names the other programs:\n{long}"
    );

    // The control archive: the options file is a conffile (an admin's
    // changes survive upgrades), and there is no maintainer script, so
    // installing enables and starts nothing (the unit is a template: only
    // an admin's `systemctl enable rxtxcpu@IFACE` makes an instance;
    // systemd's own dpkg trigger reloads its units).
    let control_files = stdout(&run(
        "sh",
        &[
            "-c",
            &format!("dpkg-deb --ctrl-tarfile '{}' | tar t", deb.display()),
        ],
    ));
    let control_files: BTreeSet<&str> = control_files.lines().filter(|l| *l != "./").collect();
    assert_eq!(
        control_files,
        BTreeSet::from(["./control", "./conffiles"]),
        "the control archive"
    );
    let conffiles = stdout(&run(
        "sh",
        &[
            "-c",
            &format!(
                "dpkg-deb --ctrl-tarfile '{}' | tar xO ./conffiles",
                deb.display()
            ),
        ],
    ));
    assert_eq!(conffiles, format!("/{DEFAULTS}\n"));

    // Unpacked into a scratch root: every name runs, through its symlink,
    // and says the package's version.
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deb-root");
    let _ = fs::remove_dir_all(&scratch);
    run(
        "dpkg",
        &["-x", deb.to_str().unwrap(), scratch.to_str().unwrap()],
    );
    for name in NAMES {
        let out = run(scratch.join("usr/sbin").join(name), &["--version"]);
        assert_eq!(stdout(&out), format!("{name} version {VERSION}\n"));
    }

    // dpkg installs it into an empty root of its own (its Depends are not
    // there, hence --force-depends), records the version --version says,
    // and removes every file it installed.
    let dpkg_root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deb-dpkg-root");
    let _ = fs::remove_dir_all(&dpkg_root);
    let admin = dpkg_root.join("var/lib/dpkg");
    for dir in ["info", "updates", "triggers"] {
        fs::create_dir_all(admin.join(dir)).unwrap();
    }
    fs::write(admin.join("status"), "").unwrap();
    fs::write(admin.join("available"), "").unwrap();
    let root_arg = format!("--root={}", dpkg_root.display());
    let dpkg = |args: &[&str]| {
        let mut all = vec![
            root_arg.as_str(),
            "--force-not-root",
            "--force-depends",
            "--log=/dev/null",
        ];
        all.extend_from_slice(args);
        run("dpkg", &all)
    };
    dpkg(&["-i", deb.to_str().unwrap()]);
    let out = run(
        "dpkg-query",
        &[&root_arg, "-W", "-f", "${Status} ${Version}", "rxtxcpu"],
    );
    assert_eq!(stdout(&out), format!("install ok installed {VERSION}"));
    let out = run(dpkg_root.join("usr/sbin/txnuma"), &["--version"]);
    assert_eq!(stdout(&out), format!("txnuma version {VERSION}\n"));
    dpkg(&["-r", "rxtxcpu"]);
    for dir in ["usr", "lib"] {
        assert!(
            !dpkg_root.join(dir).exists(),
            "dpkg -r left {:?}",
            files_under(&dpkg_root.join(dir))
        );
    }
    // The conffile stays until the package is purged.
    assert!(
        dpkg_root.join(DEFAULTS).is_file(),
        "dpkg -r removed the conffile"
    );
    dpkg(&["--purge", "rxtxcpu"]);
    assert!(
        !dpkg_root.join("etc").exists(),
        "dpkg --purge left {:?}",
        files_under(&dpkg_root.join("etc"))
    );
    fs::remove_dir_all(&dpkg_root).unwrap();

    // The other files are the sources' (and the completions make built).
    let man8 = scratch.join("usr/share/man/man8");
    assert_eq!(
        gunzip(&man8.join("rxtxcpu.8.gz")),
        fs::read(root().join("man/rxtxcpu.8")).unwrap(),
        "the packaged man page is man/rxtxcpu.8"
    );
    let compdir = target_dir().join("release/completions");
    for n in NAMES {
        for (packaged, generated) in [
            (
                format!("usr/share/bash-completion/completions/{n}"),
                format!("{n}.bash"),
            ),
            (
                format!("usr/share/zsh/vendor-completions/_{n}"),
                format!("_{n}"),
            ),
            (
                format!("usr/share/fish/vendor_completions.d/{n}.fish"),
                format!("{n}.fish"),
            ),
        ] {
            assert_eq!(
                fs::read(scratch.join(&packaged)).unwrap(),
                fs::read(compdir.join(&generated)).unwrap(),
                "{packaged} is make's {generated}"
            );
        }
    }
    let doc = scratch.join("usr/share/doc/rxtxcpu");
    assert_eq!(
        gunzip(&doc.join("changelog.gz")),
        fs::read(root().join("debian/changelog")).unwrap()
    );
    // The copyright file's license text is LICENSE's, after its title and
    // copyright line, in the copyright format's indented form.
    let copyright = fs::read_to_string(doc.join("copyright")).unwrap();
    let license = fs::read_to_string(root().join("LICENSE")).unwrap();
    let body: String = license
        .lines()
        .skip_while(|l| !l.starts_with("Copyright"))
        .skip(2)
        .map(|l| {
            if l.is_empty() {
                " .\n".to_string()
            } else {
                format!(" {l}\n")
            }
        })
        .collect();
    assert!(
        copyright.contains(&format!("License: Expat\n{body}")),
        "debian/copyright carries LICENSE's text:\n{copyright}"
    );

    // man finds every name's page through the .gz links.
    let manpath = scratch.join("usr/share/man");
    if output_if_installed(Command::new("man").arg("--version").stdout(Stdio::null())).is_some() {
        for n in NAMES {
            let out = Command::new("man")
                .args(["-M", manpath.to_str().unwrap(), "8", n])
                .env("MANPAGER", "cat")
                .env("PAGER", "cat")
                .env("MANWIDTH", "80")
                .env("LC_ALL", "C.UTF-8")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success() && stdout(&out).contains("RXTXCPU(8)"),
                "{}",
                show(&format!("man 8 {n}"), &out)
            );
        }
    }

    // The service files are the sources'.
    assert_eq!(
        fs::read(scratch.join(UNIT)).unwrap(),
        fs::read(root().join("debian/rxtxcpu@.service")).unwrap()
    );
    assert_eq!(
        fs::read(scratch.join(DEFAULTS)).unwrap(),
        fs::read(root().join("debian/rxtxcpu.default")).unwrap()
    );
    verify_unit(&scratch);

    // lintian: no errors; warnings and notes are printed (the comment on
    // [package.metadata.deb] in Cargo.toml says which remain and why).
    if have("lintian", &["--version"], "apt-get install lintian") {
        let out = Command::new("lintian")
            .args(["--display-info", "--pedantic"])
            .arg(&deb)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run lintian");
        let report = stdout(&out);
        eprintln!("lintian {}:\n{report}", deb.display());
        let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E:")).collect();
        assert!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));
        // Exit status 1 is lintian's "found tags at the fail-on level"
        // (errors by default, none above); anything else is a failure to
        // run it.
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            show("lintian", &out)
        );
    }
    fs::remove_dir_all(&scratch).unwrap();
}

/// `systemd-analyze verify` on the unit unpacked in `scratch`, as an
/// instance and as the template, finds nothing to say. It runs with
/// `--root` on the scratch root, so that ExecStart= names the packaged
/// program; the host's system units are copied beside the unit (what its
/// dependencies name: sysinit.target, the device units' targets), and the
/// packaged man page is on MANPATH (verify runs `man` for
/// Documentation=).
fn verify_unit(scratch: &Path) {
    if !have("systemd-analyze", &["--version"], "apt-get install systemd") {
        return;
    }
    let units = scratch.join("lib/systemd/system");
    // -n: the packaged unit stays, whatever the host has installed.
    run(
        "cp",
        &["-a", "-n", "/lib/systemd/system/.", units.to_str().unwrap()],
    );
    for unit in [
        "rxtxcpu@eth0.service",
        "/lib/systemd/system/rxtxcpu@.service",
    ] {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", scratch.display()))
            .arg(unit)
            .env("MANPATH", scratch.join("usr/share/man"))
            .stdin(Stdio::null())
            .output()
            .expect("cannot run systemd-analyze");
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "{}",
            show(&format!("systemd-analyze verify {unit}"), &out)
        );
    }
}
