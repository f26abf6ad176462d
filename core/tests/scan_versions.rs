//! Version order per ecosystem, compared with each ecosystem's own implementation over
//! generated version pairs (and the hand-picked cases of `scan::version`'s unit tests).
//!
//! | scheme | oracle | pairs |
//! |---|---|---|
//! | dpkg | `dpkg --compare-versions` | [`DPKG_PAIRS`] |
//! | rpm | `rpm.vercmp` in rpm's Lua (rpm 4.18, Debian's `rpm` package) | [`RPM_PAIRS`] |
//! | PEP 440 | Python's `packaging.version` (validity too) | [`PEP440_PAIRS`] |
//! | SemVer | npm's own `semver` (Debian's `node-semver`) and Cargo's `semver` crate | [`SEMVER_PAIRS`] |
//! | apk | none: apk-tools is not packaged for Debian (unit tests only) | - |
//!
//! A tool this machine lacks makes its test ignored with the reason (core/build.rs); tests/run-all
//! installs them all. Pairs are generated from a fixed seed (`AICONTAINERS_SCAN_SEED` changes it;
//! a failure prints the seed and the pair). Each test prints how many pairs it compared.

use std::cmp::Ordering;
use std::io::Write as _;
use std::process::{Command, Stdio};

use aicontainers::scan::version::{rpm_evr_cmp, Dpkg, Pep440, Scheme, Semver};

const DPKG_PAIRS: usize = 1500;
const RPM_PAIRS: usize = 20_000;
const PEP440_PAIRS: usize = 20_000;
const SEMVER_PAIRS: usize = 20_000;

/// xorshift64*: reproducible, no dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let seed =
            std::env::var("AICONTAINERS_SCAN_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_1234_abcd);
        println!("seed {seed} (AICONTAINERS_SCAN_SEED)");
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
    /// `n` tokens (1..=max) from `pool`, concatenated.
    fn soup(&mut self, pool: &[&str], max: usize) -> String {
        let n = 1 + self.below(max);
        (0..n).map(|_| self.pick(pool)).collect()
    }
}

/// A second version near the first, so that comparisons reach deep into both: the same with
/// one token changed, added or dropped, half the time; an unrelated one otherwise.
fn pairs(n: usize, rng: &mut Rng, mut make: impl FnMut(&mut Rng) -> String, pool: &[&str]) -> Vec<(String, String)> {
    (0..n)
        .map(|_| {
            let a = make(rng);
            let b = match rng.below(4) {
                0 => make(rng),
                1 => a.clone(),
                2 => format!("{a}{}", rng.pick(pool)),
                _ => {
                    let cut = rng.below(a.len().max(1));
                    let cut = (0..=cut).rev().find(|&k| a.is_char_boundary(k)).unwrap_or(0);
                    format!("{}{}{}", &a[..cut], rng.pick(pool), &a[cut..])
                }
            };
            if rng.below(2) == 0 {
                (a, b)
            } else {
                (b, a)
            }
        })
        .collect()
}

/// Runs `program` with the pairs on standard input (`a\tb\n` each) and returns its lines.
fn batch(mut cmd: Command, pairs: &[(String, String)]) -> Vec<String> {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("oracle starts");
    let mut input = String::new();
    for (a, b) in pairs {
        input.push_str(&format!("{a}\t{b}\n"));
    }
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("oracle runs");
    writer.join().expect("writer").expect("oracle reads its input");
    assert!(out.status.success(), "oracle failed: {:?}", out.status);
    let lines: Vec<String> = String::from_utf8(out.stdout).expect("utf-8").lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), pairs.len(), "one answer per pair");
    lines
}

fn ord(n: &str) -> Ordering {
    match n.trim() {
        "-1" => Ordering::Less,
        "0" => Ordering::Equal,
        "1" => Ordering::Greater,
        other => panic!("oracle said {other:?}"),
    }
}

fn dpkg_version(rng: &mut Rng) -> String {
    const UP: &[&str] = &[
        "0",
        "1",
        "2",
        "9",
        "10",
        "01",
        "007",
        "99999999999999999999",
        "a",
        "b",
        "Z",
        "z",
        "~",
        "~~",
        "+",
        ".",
        "..",
        ":",
        "-",
    ];
    const REV: &[&str] = &["0", "1", "2", "10", "a", "b", "~", "+", ".", "bpo", "ubuntu", "deb12u"];
    let mut v = String::new();
    let epoch = rng.below(6);
    if epoch < 2 {
        v.push_str(["0:", "1:", "2:", "10:", "00:"][rng.below(5)]);
    }
    v.push_str(rng.pick(&["0", "1", "2", "10", "01"]));
    let mut up = rng.soup(UP, 6);
    if epoch >= 2 {
        up = up.replace(':', ".");
    }
    let with_rev = rng.below(3) > 0;
    if !with_rev {
        up = up.replace('-', ".");
    }
    v.push_str(&up);
    if with_rev {
        v.push('-');
        v.push_str(&rng.soup(REV, 4));
    }
    v
}

#[test]
#[cfg_attr(not(have_dpkg), ignore = "needs dpkg (/usr/bin/dpkg) as the oracle")]
fn dpkg_order_matches_dpkg_compare_versions() {
    let mut rng = Rng::seeded();
    let mut cases: Vec<(String, String)> = [
        ("1.0~rc1", "1.0"),
        ("1.0", "1.0+b1"),
        ("1:0.1", "2.0"),
        ("1.0-1", "1.0-1~bpo1"),
        ("1.01", "1.1"),
        ("0:1.0", "1.0"),
        ("1.0a", "1.0+"),
        ("1.0~~", "1.0~~a"),
        ("1.0~", "1.0"),
        ("1.0-0", "1.0"),
        ("2.36-9+deb12u4", "2.36-9+deb12u10"),
        ("1:2.3-4", "1:2.3-4~"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    cases.extend(pairs(DPKG_PAIRS, &mut rng, dpkg_version, &["1", "~", "a", "+", ".", "0", "-1"]));
    // Only pairs both sides accept: dpkg's refusals are checked by the unit tests.
    cases.retain(|(a, b)| Dpkg::parse(a).is_ok() && Dpkg::parse(b).is_ok());
    let script = r#"while IFS=$'\t' read -r a b; do
        if dpkg --compare-versions "$a" lt "$b" 2>/dev/null; then echo -1
        elif dpkg --compare-versions "$a" eq "$b" 2>/dev/null; then echo 0
        else echo 1; fi
    done"#;
    let mut cmd = Command::new("bash");
    cmd.args(["-c", script]);
    let answers = batch(cmd, &cases);
    for ((a, b), want) in cases.iter().zip(&answers) {
        assert_eq!(Scheme::Dpkg.compare(a, b), Ok(ord(want)), "dpkg: {a:?} vs {b:?}");
    }
    println!("dpkg: {} pairs agree with dpkg --compare-versions", cases.len());
}

fn rpm_version(rng: &mut Rng) -> String {
    const SEG: &[&str] = &[
        "0",
        "1",
        "2",
        "10",
        "01",
        "0001",
        "a",
        "b",
        "Z",
        "rc",
        "git",
        "~",
        "^",
        ".",
        "_",
        "+",
        "%",
        "~~",
        "^^",
        "..",
        "99999999999999999999",
    ];
    let mut v = String::new();
    if rng.below(5) == 0 {
        v.push_str(rng.pick(&["0:", "1:", "2:", "01:"]));
    }
    v.push_str(rng.pick(&["0", "1", "2", "a"]));
    v.push_str(&rng.soup(SEG, 6).replace('%', "."));
    if rng.below(2) == 0 {
        v.push('-');
        v.push_str(rng.pick(&["1", "2", "a"]));
        v.push_str(&rng.soup(SEG, 3).replace('%', "."));
    }
    v
}

#[test]
#[cfg_attr(not(have_rpm), ignore = "needs rpm (/usr/bin/rpm, Debian's rpm package) as the oracle")]
fn rpm_order_matches_rpm_vercmp() {
    let mut rng = Rng::seeded();
    let mut cases: Vec<(String, String)> = [
        ("1.0~rc1", "1.0"),
        ("1.0^git1", "1.0"),
        ("1.0^git1", "1.0.1"),
        ("1.0~rc1^git1", "1.0~rc1"),
        ("1.0^", "1.0"),
        ("1.0~", "1.0^"),
        ("1:1.0", "2.0"),
        ("1.0-1", "1.0"),
        ("1.0a", "1.0.1"),
        ("001", "1"),
        ("1.0.", "1.0"),
        ("a", "1"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    cases.extend(pairs(RPM_PAIRS, &mut rng, rpm_version, &["~", "^", "1", "a", ".", "-1"]));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pairs");
    let text: String = cases.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    std::fs::write(&file, text).expect("pairs written");
    // One rpm process for all pairs; print() adds to the expansion, so each answer ends a line.
    let lua = format!(
        "%{{lua: for l in io.lines(\"{}\") do local a, b = l:match(\"^([^\\t]*)\\t(.*)$\"); print(rpm.vercmp(a, b) .. \"\\n\") end}}",
        file.display()
    );
    let out = Command::new("rpm").args(["--eval", &lua]).output().expect("rpm runs");
    assert!(out.status.success(), "rpm: {}", String::from_utf8_lossy(&out.stderr));
    let answers: Vec<String> =
        String::from_utf8(out.stdout).expect("utf-8").lines().filter(|l| !l.is_empty()).map(str::to_owned).collect();
    assert_eq!(answers.len(), cases.len(), "one answer per pair");
    for ((a, b), want) in cases.iter().zip(&answers) {
        assert_eq!(rpm_evr_cmp(a, b), ord(want), "rpm: {a:?} vs {b:?}");
    }
    println!("rpm: {} pairs agree with rpm.vercmp", cases.len());
}

fn pep440_version(rng: &mut Rng) -> String {
    const SEP: &[&str] = &["", "", "", ".", "-", "_"];
    let mut v = String::new();
    if rng.below(8) == 0 {
        v.push_str(rng.pick(&["v", "V", " ", "\u{b}"]));
    }
    if rng.below(6) == 0 {
        v.push_str(rng.pick(&["0!", "1!", "2!", "01!"]));
    }
    v.push_str(rng.pick(&["0", "1", "2", "10", "01"]));
    for _ in 0..rng.below(4) {
        v.push('.');
        v.push_str(rng.pick(&["0", "1", "2", "00", "10", "99999999999999999999"]));
    }
    if rng.below(3) == 0 {
        v.push_str(rng.pick(SEP));
        v.push_str(rng.pick(&["a", "alpha", "b", "beta", "c", "rc", "pre", "preview", "RC", "Alpha"]));
        v.push_str(rng.pick(SEP));
        v.push_str(rng.pick(&["", "0", "1", "2", "10"]));
    }
    if rng.below(3) == 0 {
        if rng.below(3) == 0 {
            v.push('-');
            v.push_str(rng.pick(&["0", "1", "2"]));
        } else {
            v.push_str(rng.pick(SEP));
            v.push_str(rng.pick(&["post", "rev", "r", "POST"]));
            v.push_str(rng.pick(SEP));
            v.push_str(rng.pick(&["", "0", "1", "2"]));
        }
    }
    if rng.below(3) == 0 {
        v.push_str(rng.pick(SEP));
        v.push_str(rng.pick(&["dev", "DEV"]));
        v.push_str(rng.pick(SEP));
        v.push_str(rng.pick(&["", "0", "1", "2"]));
    }
    if rng.below(4) == 0 {
        v.push('+');
        v.push_str(&rng.soup(&["1", "01", "a", "abc", "Ubuntu", "cu121", ".", "-", "_"], 5));
    }
    if rng.below(8) == 0 {
        v.push_str(rng.pick(&[" ", "\n", ".", "-", "+", "!", "x"]));
    }
    v
}

#[test]
#[cfg_attr(
    not(have_py_packaging),
    ignore = "needs /usr/bin/python3 with packaging (Debian's python3-packaging) as the oracle"
)]
fn pep440_order_and_validity_match_python_packaging() {
    let mut rng = Rng::seeded();
    let mut cases =
        pairs(PEP440_PAIRS, &mut rng, pep440_version, &["0", ".1", "a1", "rc", ".post1", ".dev0", "+x", "-"]);
    // Newlines cannot travel in the line protocol; they are tested by hand below.
    cases.retain(|(a, b)| !a.contains('\n') && !b.contains('\n'));
    let script = r#"
import sys
from packaging.version import Version, InvalidVersion
def parse(s):
    try:
        return Version(s)
    except InvalidVersion:
        return None
for line in sys.stdin.read().split("\n")[:-1]:
    a, b = line.split("\t")
    va, vb = parse(a), parse(b)
    if va is None or vb is None:
        print("invalid " + ("a" if va is None else "") + ("b" if vb is None else ""))
    else:
        print((va > vb) - (va < vb))
"#;
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args(["-c", script]);
    let answers = batch(cmd, &cases);
    let (mut ordered, mut refused) = (0, 0);
    for ((a, b), want) in cases.iter().zip(&answers) {
        if let Some(which) = want.strip_prefix("invalid ") {
            assert_eq!(Pep440::parse(a).is_err(), which.contains('a'), "PEP 440 validity of {a:?}");
            assert_eq!(Pep440::parse(b).is_err(), which.contains('b'), "PEP 440 validity of {b:?}");
            refused += 1;
        } else {
            assert_eq!(Scheme::Pep440.compare(a, b), Ok(ord(want)), "PEP 440: {a:?} vs {b:?}");
            ordered += 1;
        }
    }
    println!("PEP 440: {ordered} pairs ordered and {refused} with an invalid side agree with packaging");
}

fn semver_version(rng: &mut Rng) -> String {
    let num = |rng: &mut Rng| rng.pick(&["0", "1", "2", "10", "01", "00"]).to_owned();
    let mut v = format!("{}.{}.{}", num(rng), num(rng), num(rng));
    if rng.below(2) == 0 {
        v.push('-');
        let ids: Vec<&str> = (0..1 + rng.below(3))
            .map(|_| rng.pick(&["alpha", "beta", "rc", "0", "1", "2", "10", "01", "x-y", "-", "", "1a", "A"]))
            .collect();
        v.push_str(&ids.join("."));
    }
    if rng.below(4) == 0 {
        v.push('+');
        v.push_str(rng.pick(&["build", "001", "a.b", "", "x..y"]));
    }
    v
}

#[test]
fn semver_order_and_validity_match_the_semver_crate() {
    let mut rng = Rng::seeded();
    let cases = pairs(SEMVER_PAIRS, &mut rng, semver_version, &["1", ".1", "-rc", "+b", "0"]);
    let parse = |s: &str| {
        semver::Version::parse(s).map(|mut v| {
            v.build = semver::BuildMetadata::EMPTY;
            v
        })
    };
    for (a, b) in &cases {
        match (parse(a), parse(b)) {
            (Ok(x), Ok(y)) => assert_eq!(Scheme::Semver.compare(a, b), Ok(x.cmp(&y)), "SemVer: {a:?} vs {b:?}"),
            (x, y) => {
                assert_eq!(Semver::parse(a).is_ok(), x.is_ok(), "SemVer validity of {a:?}");
                assert_eq!(Semver::parse(b).is_ok(), y.is_ok(), "SemVer validity of {b:?}");
            }
        }
    }
    println!("SemVer: {} pairs agree with the semver crate (Cargo's)", cases.len());
}

#[test]
#[cfg_attr(not(have_node_semver), ignore = "needs node with npm's semver (Debian's node-semver) as the oracle")]
fn semver_order_and_validity_match_npm_semver() {
    let mut rng = Rng::seeded();
    let cases = pairs(SEMVER_PAIRS, &mut rng, semver_version, &["1", ".1", "-rc", "+b", "0"]);
    let script = r#"
const { SemVer } = require("semver");
const parse = (s) => { try { return new SemVer(s); } catch (e) { return null; } };
const lines = require("fs").readFileSync(0, "utf8").split("\n").slice(0, -1);
const out = lines.map((l) => {
  const [a, b] = l.split("\t");
  const va = parse(a), vb = parse(b);
  if (!va || !vb) return "invalid " + (va ? "" : "a") + (vb ? "" : "b");
  return String(va.compare(vb));
});
process.stdout.write(out.join("\n") + "\n");
"#;
    let mut cmd = Command::new("node");
    cmd.args(["-e", script]).env("NODE_PATH", "/usr/share/nodejs");
    let answers = batch(cmd, &cases);
    for ((a, b), want) in cases.iter().zip(&answers) {
        if let Some(which) = want.strip_prefix("invalid ") {
            assert_eq!(Semver::parse(a).is_err(), which.contains('a'), "SemVer validity of {a:?}");
            assert_eq!(Semver::parse(b).is_err(), which.contains('b'), "SemVer validity of {b:?}");
        } else {
            assert_eq!(Scheme::Semver.compare(a, b), Ok(ord(want)), "SemVer: {a:?} vs {b:?}");
        }
    }
    println!("SemVer: {} pairs agree with npm's semver", cases.len());
}

#[test]
fn pep440_refuses_what_packaging_refuses_with_a_newline() {
    assert!(Pep440::parse("1.0\n").is_ok(), "packaging strips surrounding whitespace, newlines included");
    assert!(Pep440::parse("1.\n0").is_err());
}
