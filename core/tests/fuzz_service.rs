//! A fuzz harness for the service format, run as an ordinary test so that CI runs it for a
//! bounded number of cases (cargo-fuzz needs a nightly toolchain; this needs nothing).
//!
//! It starts from the corpus in `tests/fuzz/corpus/` (the examples, every key, hostile values)
//! and mutates it with a seeded generator: byte flips, deletions, duplications, lines spliced
//! from other files, and tokens that have broken unit files before (backslashes, newlines, CR,
//! `%`, `$`, quotes, NUL, escape sequences, Unicode spaces, huge numbers, section headers).
//! For each input:
//! - reading and checking never panics;
//! - every diagnostic prints as one line without control characters;
//! - a file the checks accept always renders (the unit writer refuses nothing the checks let
//!   through), and systemd and Quadlet both read the rendered file back line for line: no line
//!   joins another, every line is a comment, a section or a known key, and `ReadOnly=true` is
//!   there exactly when the file asks for it.
//!
//! `AICONTAINERS_FUZZ_CASES` sets the number of mutated inputs (default 3000: a few seconds in
//! a debug build), `AICONTAINERS_FUZZ_SEED` the seed (default fixed, so a failure repeats).

use std::fs;
use std::path::{Path, PathBuf};

use aicontainers::account::Account;
use aicontainers::doc::{self, Value};
use aicontainers::render::{self, PodmanVersion};
use aicontainers::spec;
use aicontainers::unit::{quadlet_lines, systemd_lines};

/// xorshift64*: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const TOKENS: &[&str] = &[
    "\\",
    "\\\\",
    "\n",
    "\r\n",
    "\r",
    "%",
    "%%",
    "$",
    "${X}",
    "\"",
    "'",
    "\"\"\"",
    "\\u0000",
    "\\u001b[31m",
    "\\u00a0",
    "\\u2028",
    "\\u3000",
    "\u{a0}",
    "\u{85}",
    "\u{202e}",
    ";",
    " ; ",
    "#",
    "[",
    "]",
    "=",
    ":",
    "/",
    "@",
    ".image",
    ".build",
    "99999999999999999999",
    "-1",
    "0",
    "1e400",
    "true",
    "[service]\n",
    "[resources]\n",
    "[[model]]\n",
    "read-only = true\n",
    "volumes = [\"/a:/b\\\\\"]\n",
    "description = \"x\\\\\"\n",
    "ports = [\"[::1]:1-2:3-4/udp\"]\n",
    "image = \"localhost/x:1\"\n",
    "run-as = \"aimodels\"\n",
];

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz/corpus");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "the corpus in {} is missing", dir.display());
    files
        .into_iter()
        .map(|p| (p.file_name().expect("name").to_string_lossy().into_owned(), fs::read(&p).expect("read")))
        .collect()
}

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            2 => {
                let end = (at + rng.below(32)).min(out.len());
                let piece = out[at..end].to_vec();
                out.splice(at..at, piece);
            }
            3 => {
                let (_, other) = &corpus[rng.below(corpus.len())];
                let lines: Vec<&[u8]> = other.split(|&b| b == b'\n').collect();
                let line = lines[rng.below(lines.len())];
                let mut piece = line.to_vec();
                piece.push(b'\n');
                out.splice(at..at, piece);
            }
            _ => {
                let token = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, token.bytes());
            }
        }
    }
    out
}

const KEYS: &[&str] = &[
    "Description",
    "Documentation",
    "Requires",
    "After",
    "ContainerName",
    "Image",
    "Exec",
    "Environment",
    "PublishPort",
    "Volume",
    "AddDevice",
    "ReadOnly",
    "Label",
    "LogDriver",
    "RunInit",
    "HealthInterval",
    "HealthTimeout",
    "HealthRetries",
    "HealthStartPeriod",
    "StopTimeout",
    "PodmanArgs",
    "User",
    "Group",
    "ExecStartPost",
    "ExecStartPre",
    "AllowedCPUs",
    "AllowedMemoryNodes",
    "NUMAPolicy",
    "NUMAMask",
    "SuccessExitStatus",
    "Restart",
    "RestartSec",
    "TimeoutStopSec",
    "MemoryMax",
    "CPUQuota",
    "TasksMax",
];

/// Checks one input; returns a description of the broken property, if any.
fn check(text: &[u8]) -> Result<bool, String> {
    let text = String::from_utf8_lossy(text).into_owned();
    let path = Path::new("/etc/aicontainers/fuzz.toml");
    let node = match doc::parse(path, text) {
        Ok(node) => node,
        Err(d) => return one_line(&[d]).map(|()| false),
    };
    let Value::Table(table) = &node.value else { return Err("a document that is not a table".into()) };
    let service = match spec::from_table("fuzz", path.to_owned(), Vec::new(), table, &node.origin, false) {
        Ok(service) => service,
        Err(diags) => return one_line(&diags).map(|()| false),
    };
    let account = Account { name: "aimodels".into(), uid: 990, gid: 990, home: "/var/lib/aimodels".into() };
    let unit = render::container(&service, &account, PodmanVersion(5, 4, 0), None)
        .map_err(|p| format!("the checks accepted what the writer refuses: {p:?}"))?;
    let physical = unit.lines().count();
    for (reader, lines) in [("systemd", systemd_lines(&unit)), ("Quadlet", quadlet_lines(&unit))] {
        let logical: Vec<&String> = lines.iter().filter(|l| !l.is_empty()).collect();
        let blank = unit.lines().filter(|l| l.trim().is_empty()).count();
        if logical.len() + blank != physical {
            return Err(format!("{reader} joins lines of:\n{unit}"));
        }
        for line in &logical {
            let known = line.starts_with('#')
                || matches!(line.as_str(), "[Unit]" | "[Container]" | "[Service]")
                || line.split_once('=').is_some_and(|(k, _)| KEYS.contains(&k));
            if !known {
                return Err(format!("{reader} reads an unknown line {line:?} in:\n{unit}"));
            }
        }
        let read_only = logical.iter().any(|l| l.as_str() == "ReadOnly=true");
        if read_only != service.read_only {
            return Err(format!("{reader} reads ReadOnly={read_only}, the file says {}", service.read_only));
        }
    }
    Ok(true)
}

fn one_line(diags: &[aicontainers::Diagnostic]) -> Result<(), String> {
    for d in diags {
        let shown = d.to_string();
        if shown.contains('\n') || shown.chars().any(char::is_control) {
            return Err(format!("a diagnostic that is not one clean line: {shown:?}"));
        }
    }
    Ok(())
}

#[test]
fn mutated_service_files_never_panic_bend_a_unit_or_forge_a_line() {
    let corpus = corpus();
    let cases: usize = std::env::var("AICONTAINERS_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let seed: u64 =
        std::env::var("AICONTAINERS_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_a1c0_47a1_4e55);
    let mut rng = Rng(seed | 1);
    let mut valid = 0usize;
    for (name, text) in &corpus {
        match std::panic::catch_unwind(|| check(text)) {
            Ok(Ok(ok)) => valid += usize::from(ok),
            Ok(Err(why)) => panic!("corpus file {name}: {why}"),
            Err(_) => panic!("corpus file {name}: panicked"),
        }
    }
    for case in 0..cases {
        let (_, base) = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, base, &corpus);
        let outcome = std::panic::catch_unwind(|| check(&input));
        let failure = match outcome {
            Ok(Ok(ok)) => {
                valid += usize::from(ok);
                continue;
            }
            Ok(Err(why)) => why,
            Err(_) => "panicked".to_owned(),
        };
        panic!(
            "case {case} (AICONTAINERS_FUZZ_SEED={seed}): {failure}\ninput ({} bytes): {:?}",
            input.len(),
            String::from_utf8_lossy(&input)
        );
    }
    // Says what it did, so a run that checked nothing would show.
    println!("fuzz: {} corpus files and {cases} mutated inputs, {valid} of them valid and rendered", corpus.len());
    assert!(valid > corpus.len(), "the mutations left almost nothing valid: the harness tests little");
}
