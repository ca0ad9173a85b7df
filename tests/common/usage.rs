//! The usage contract: the names the binary answers to, their usage
//! options, and checks of usage errors and the usage block.

use super::capture::run;

/// The names the binary answers to (its argv[0]); each has its own default
/// direction, and the name says what the streams are: cpus, queues or numa
/// nodes.
pub const NAMES: [&str; 9] = [
    "rxtxcpu",
    "rxcpu",
    "txcpu",
    "rxtxqueue",
    "rxqueue",
    "txqueue",
    "rxtxnuma",
    "rxnuma",
    "txnuma",
];

/// What a name's streams are, as its options name them: `cpu`, `queue`,
/// `numa` (`--cpu-list`, `--queue-list`, `--numa-list`).
pub fn list_word(name: &str) -> &'static str {
    if name.ends_with("queue") {
        "queue"
    } else if name.ends_with("numa") {
        "numa"
    } else {
        "cpu"
    }
}

/// Checks every `(name, args, message)` case with `run(name, args)
/// .assert_usage_error(name, message)`, then reports all the cases that
/// failed, not just the first: a table of cases is best fixed whole.
pub fn check_usage_errors<M: AsRef<str>>(cases: &[(&str, &[&str], M)]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(name, args, message)| {
            let (f, message) = (run(name, args), message.as_ref());
            std::panic::catch_unwind(|| f.assert_usage_error(name, message))
                .err()
                .map(|e| {
                    let why = e
                        .downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_else(|| format!("{:?}", e.downcast_ref::<&str>()));
                    format!("`{name} {}`: {why}", args.join(" "))
                })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// The usage options of the contract, in its order (new options may join),
/// for a name whose list word is `word` (`cpu`, `queue`, `numa`).
pub fn usage_options(word: &str) -> [String; 9] {
    let up = word.to_uppercase();
    [
        "[--help]".to_string(),
        "[--count=N]".to_string(),
        format!("[--{word}-list={up}LIST|--{word}-mask={up}MASK]"),
        "[--direction=DIRECTION]".to_string(),
        "[--packet-buffered]".to_string(),
        "[--promiscuous]".to_string(),
        "[--verbose]".to_string(),
        "[--version]".to_string(),
        "[--write=FILE]".to_string(),
    ]
}

/// Checks a usage block: `Usage: NAME [--help] ...`, greedily wrapped at 79
/// columns with continuation lines indented under the first bracket, naming
/// every option of the contract (in order) and `[--buffer-size=KIB]`.
pub fn check_usage(name: &str, usage: &str) -> Result<(), String> {
    let head = format!("Usage: {name} ");
    let indent = " ".repeat(head.len());
    let lines: Vec<&str> = usage
        .strip_suffix('\n')
        .ok_or("does not end with a newline")?
        .split('\n')
        .collect();
    if !lines[0].starts_with(&format!("{head}[--help]")) {
        return Err(format!("first line {:?}", lines[0]));
    }
    let mut tokens = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let body = if i == 0 {
            &line[head.len()..]
        } else {
            line.strip_prefix(indent.as_str())
                .filter(|b| b.starts_with('['))
                .ok_or(format!("line {i} not indented under the bracket: {line:?}"))?
        };
        if line.len() > 79 || line.ends_with(' ') || body.contains("  ") {
            return Err(format!("badly formatted line {i}: {line:?}"));
        }
        if let Some(next) = lines.get(i + 1) {
            let first_next = next.split_whitespace().next().unwrap_or("");
            if line.len() + 1 + first_next.len() <= 79 {
                return Err(format!("line {i} wrapped too early: {line:?}"));
            }
        }
        tokens.extend(body.split(' '));
    }
    if let Some(t) = tokens
        .iter()
        .find(|t| !(t.starts_with("[--") && t.ends_with(']')))
    {
        return Err(format!("token {t:?} is not `[--option...]`"));
    }
    let mut rest = tokens.iter();
    for want in usage_options(list_word(name)) {
        if !rest.any(|t| *t == want) {
            return Err(format!("{want} missing or out of order in {tokens:?}"));
        }
    }
    if !tokens.contains(&"[--buffer-size=KIB]") {
        return Err(format!("[--buffer-size=KIB] missing in {tokens:?}"));
    }
    Ok(())
}

/// Runs the binary in `ns` with `args`, without CAP_BPF, CAP_PERFMON and
/// CAP_SYS_ADMIN (setpriv drops them from the bounding and inheritable
/// sets), and checks what an eBPF option (`option`: `--drops`, `--path`)
/// must then say: one line, `rxtxcpu: OPTION: ...; WHO CAP_BPF and
/// CAP_PERFMON (or root): setcap ...`, exit 1 before capturing, nothing
/// on stdout.
pub fn assert_needs_bpf_privileges(ns: &super::Netns, args: &[&str], option: &str, who: &str) {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "setpriv"])
        .args(["--inh-caps=-bpf,-perfmon,-sys_admin"])
        .args(["--bounding-set=-bpf,-perfmon,-sys_admin"])
        .arg(super::BIN)
        .args(args)
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let grant = format!(
        "{who} CAP_BPF and CAP_PERFMON (or root): setcap cap_net_raw,cap_bpf,cap_perfmon+ep "
    );
    assert!(
        stderr.starts_with(&format!("rxtxcpu: {option}: ")) && stderr.contains(&grant),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
