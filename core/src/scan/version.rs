//! Version comparison, exactly as each ecosystem's own tool compares.
//!
//! An advisory says "fixed in 1:2.3~rc1-4"; whether the installed version is below that is only
//! right if it is decided by the same rules the package manager uses. Each function here follows
//! one reference implementation, and the tests in `tests/scan_versions.rs` compare it with that
//! implementation over generated version pairs:
//!
//! | ecosystem | rules of | oracle in the tests |
//! |---|---|---|
//! | Debian, Ubuntu | dpkg `verrevcmp` (Debian Policy 5.6.12) | `dpkg --compare-versions` |
//! | Red Hat, Rocky, AlmaLinux | rpm `rpmvercmp` and `rpmverCmp` (rpm 4.18) | `rpm.vercmp` in rpm's Lua |
//! | Alpine | apk-tools 2.x `apk_version_compare` | none on Debian: hand-checked cases |
//! | PyPI | PEP 440, as `packaging.version` parses and orders | Python's `packaging` |
//! | npm, crates.io, Go | SemVer 2.0.0 precedence (build metadata ignored) | the `semver` crate |

use std::cmp::Ordering;
use std::sync::OnceLock;

/// The rules a version string is compared by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Dpkg,
    Rpm,
    Apk,
    Pep440,
    Semver,
}

/// A version that its scheme cannot read (PEP 440 and SemVer have a grammar; dpkg, rpm and apk
/// compare any string but refuse some).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{version:?} is not a valid {scheme:?} version: {reason}")]
pub struct BadVersion {
    pub scheme: Scheme,
    pub version: String,
    pub reason: &'static str,
}

impl Scheme {
    /// Compares two versions by this scheme's rules.
    pub fn compare(self, a: &str, b: &str) -> Result<Ordering, BadVersion> {
        match self {
            Scheme::Dpkg => Ok(Dpkg::parse(a)?.cmp(&Dpkg::parse(b)?)),
            Scheme::Rpm => Ok(rpm_evr_cmp(a, b)),
            Scheme::Apk => apk_cmp(a, b),
            Scheme::Pep440 => Ok(Pep440::parse(a)?.cmp(&Pep440::parse(b)?)),
            Scheme::Semver => Ok(Semver::parse(a)?.cmp(&Semver::parse(b)?)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// dpkg

/// A Debian version `[epoch:]upstream[-revision]`, split as dpkg's `parseversion` splits it.
#[derive(Clone, Debug)]
pub struct Dpkg<'a> {
    epoch: u64,
    upstream: &'a str,
    revision: &'a str,
}

impl<'a> Dpkg<'a> {
    /// Splits and checks a version as dpkg does: the epoch is the digits before the first `:`,
    /// the revision what follows the last `-`; the upstream part must start with a digit and
    /// hold only alphanumerics and `.+-~:`, the revision only alphanumerics and `.+~`.
    pub fn parse(text: &'a str) -> Result<Self, BadVersion> {
        let bad = |reason| BadVersion { scheme: Scheme::Dpkg, version: text.to_owned(), reason };
        let v = text.trim_matches(|c: char| c.is_ascii_whitespace());
        if v.is_empty() {
            return Err(bad("empty"));
        }
        if v.contains(|c: char| c.is_ascii_whitespace()) {
            return Err(bad("embedded spaces"));
        }
        let (epoch, rest) = match v.split_once(':') {
            Some((e, rest)) => {
                if e.is_empty() {
                    return Err(bad("empty epoch"));
                }
                if !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("epoch is not a number"));
                }
                // dpkg refuses an epoch above INT_MAX.
                let n: u64 = e.parse().ok().filter(|&n| n <= i32::MAX as u64).ok_or_else(|| bad("epoch too big"))?;
                (n, rest)
            }
            None => (0, v),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => {
                if r.is_empty() {
                    return Err(bad("empty revision"));
                }
                (u, r)
            }
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(bad("empty upstream version"));
        }
        if !upstream.as_bytes()[0].is_ascii_digit() {
            return Err(bad("upstream version does not start with a digit"));
        }
        if !upstream.bytes().all(|b| b.is_ascii_alphanumeric() || b".+-~:".contains(&b)) {
            return Err(bad("invalid character in upstream version"));
        }
        if !revision.bytes().all(|b| b.is_ascii_alphanumeric() || b".+~".contains(&b)) {
            return Err(bad("invalid character in revision"));
        }
        Ok(Dpkg { epoch, upstream, revision })
    }
}

impl Ord for Dpkg<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| dpkg_part_cmp(self.upstream, other.upstream))
            .then_with(|| dpkg_part_cmp(self.revision, other.revision))
    }
}
impl PartialOrd for Dpkg<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Dpkg<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Dpkg<'_> {}

/// The weight of one non-digit character: `~` below the end of the string, letters below
/// everything else that is not a digit.
fn dpkg_weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(b'~') => -1,
        Some(c) => c as i32 + 256,
    }
}

/// One of upstream or revision: alternating runs of non-digits (compared by [`dpkg_weight`],
/// character by character) and digits (compared as numbers of any length).
fn dpkg_part_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while a.get(i).is_some_and(|c| !c.is_ascii_digit()) || b.get(j).is_some_and(|c| !c.is_ascii_digit()) {
            let (wa, wb) = (dpkg_weight(a.get(i).copied()), dpkg_weight(b.get(j).copied()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            i += 1;
            j += 1;
        }
        let (na, ni) = digit_run(a, i);
        let (nb, nj) = digit_run(b, j);
        let ord = numeric_cmp(na, nb);
        if ord != Ordering::Equal {
            return ord;
        }
        (i, j) = (ni, nj);
    }
    Ordering::Equal
}

/// The run of ASCII digits of `s` from `at` (possibly empty), and where it ends.
fn digit_run(s: &[u8], at: usize) -> (&[u8], usize) {
    let at = at.min(s.len());
    let end = at + s[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    (&s[at..end], end)
}

/// Two runs of digits as numbers of any size (an empty run is zero).
fn numeric_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let strip = |s: &[u8]| -> usize { s.iter().take_while(|&&c| c == b'0').count() };
    let (a, b) = (&a[strip(a)..], &b[strip(b)..]);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

// ---------------------------------------------------------------------------------------------
// rpm

/// rpm's `rpmvercmp` on one of epoch, version or release: runs of ASCII letters or digits,
/// everything else a separator; `~` sorts before anything (even the end), `^` after the end
/// but before anything else; a number beats letters.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let skip = |s: &[u8], mut k: usize| {
        while k < s.len() && !s[k].is_ascii_alphanumeric() && s[k] != b'~' && s[k] != b'^' {
            k += 1;
        }
        k
    };
    loop {
        i = skip(a, i);
        j = skip(b, j);
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            match (ca, cb) {
                (None, _) => return Ordering::Less,
                (_, None) => return Ordering::Greater,
                (Some(x), _) if x != b'^' => return Ordering::Greater,
                (_, Some(y)) if y != b'^' => return Ordering::Less,
                _ => {}
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca.is_none() || cb.is_none() {
            break;
        }
        let numeric = a[i].is_ascii_digit();
        let class = |c: &u8| if numeric { c.is_ascii_digit() } else { c.is_ascii_alphabetic() };
        let ea = i + a[i..].iter().take_while(|c| class(c)).count();
        let eb = j + b[j..].iter().take_while(|c| class(c)).count();
        if eb == j {
            // Different kinds of segment: a number is newer than letters.
            return if numeric { Ordering::Greater } else { Ordering::Less };
        }
        let ord = if numeric { numeric_cmp(&a[i..ea], &b[j..eb]) } else { a[i..ea].cmp(&b[j..eb]) };
        if ord != Ordering::Equal {
            return ord;
        }
        (i, j) = (ea, eb);
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// A full `[epoch:]version[-release]` as rpm's `rpmverCmp` (and `rpm.vercmp`) compares: a
/// missing epoch is 0, a missing release is empty (so `1.0` < `1.0-1`).
pub fn rpm_evr_cmp(a: &str, b: &str) -> Ordering {
    fn split(s: &str) -> (&str, &str, Option<&str>) {
        let (e, rest) = match s.find(|c: char| !c.is_ascii_digit()) {
            Some(k) if s.as_bytes()[k] == b':' => (&s[..k], &s[k + 1..]),
            _ => ("0", s),
        };
        let e = if e.is_empty() { "0" } else { e };
        match rest.rsplit_once('-') {
            Some((v, r)) => (e, v, Some(r)),
            None => (e, rest, None),
        }
    }
    let (ea, va, ra) = split(a);
    let (eb, vb, rb) = split(b);
    rpmvercmp(ea, eb).then_with(|| rpmvercmp(va, vb)).then_with(|| rpmvercmp(ra.unwrap_or(""), rb.unwrap_or("")))
}

// ---------------------------------------------------------------------------------------------
// apk

/// The kinds of part of an apk version `digit{.digit}...{letter}{_suffix{digit}}...{~hash}{-r#}`
/// (apk-tools 3, src/version.c). The order matters: once two versions agree on every part they
/// share, the one that goes on with an earlier kind is newer (except a pre-release suffix).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ApkKind {
    InitialDigit,
    Digit,
    Letter,
    Suffix,
    SuffixNo,
    CommitHash,
    RevisionNo,
    End,
    Invalid,
}

/// Suffixes in their order; `None` (index 5) is where a version without a suffix sits.
const APK_SUFFIXES: [&str; 11] = ["", "alpha", "beta", "pre", "rc", "", "cvs", "svn", "git", "hg", "p"];
const APK_SUFFIX_NONE: usize = 5;

/// One part of an apk version: its kind, its text, and its value where it has one.
#[derive(Clone, Copy, Debug)]
struct ApkPart<'a> {
    kind: ApkKind,
    text: &'a [u8],
    /// Numbers wrap at 2^64 as apk's `apk_blob_pull_uint` does; the suffix index for suffixes.
    number: u64,
}

struct ApkLexer<'a> {
    rest: &'a [u8],
    part: ApkPart<'a>,
}

impl<'a> ApkLexer<'a> {
    /// Starts at the leading number, which every version must have.
    fn new(v: &'a str) -> Self {
        let mut lx =
            ApkLexer { rest: v.as_bytes(), part: ApkPart { kind: ApkKind::InitialDigit, text: b"", number: 0 } };
        lx.digits(ApkKind::InitialDigit);
        lx
    }

    fn span(&mut self, class: impl Fn(u8) -> bool) -> &'a [u8] {
        let n = self.rest.iter().take_while(|&&c| class(c)).count();
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        head
    }

    fn digits(&mut self, kind: ApkKind) {
        let text = self.span(|c| c.is_ascii_digit());
        let number = text.iter().fold(0u64, |n, &c| n.wrapping_mul(10).wrapping_add(u64::from(c - b'0')));
        let kind = if text.is_empty() { ApkKind::Invalid } else { kind };
        self.part = ApkPart { kind, text, number };
    }

    /// Moves to the next part; what may follow what is checked here.
    fn next(&mut self) {
        use ApkKind::*;
        let prev = self.part.kind;
        let Some(&c) = self.rest.first() else {
            self.part.kind = End;
            return;
        };
        let invalid = |lx: &mut Self| lx.part.kind = Invalid;
        match c {
            b'a'..=b'z' if prev <= Digit => {
                self.part = ApkPart { kind: Letter, text: &self.rest[..1], number: 0 };
                self.rest = &self.rest[1..];
            }
            b'.' | b'0'..=b'9' => {
                if c == b'.' {
                    if prev > Digit {
                        return invalid(self);
                    }
                    self.rest = &self.rest[1..];
                }
                match prev {
                    InitialDigit | Digit => self.digits(Digit),
                    Suffix => self.digits(SuffixNo),
                    _ => invalid(self),
                }
            }
            b'_' if prev <= SuffixNo => {
                self.rest = &self.rest[1..];
                let text = self.span(|c| c.is_ascii_lowercase());
                match APK_SUFFIXES.iter().position(|s| !s.is_empty() && s.as_bytes() == text) {
                    Some(k) => self.part = ApkPart { kind: Suffix, text, number: k as u64 },
                    None => invalid(self),
                }
            }
            b'~' if prev < CommitHash => {
                self.rest = &self.rest[1..];
                let text = self.span(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
                if text.is_empty() {
                    return invalid(self);
                }
                self.part = ApkPart { kind: CommitHash, text, number: 0 };
            }
            b'-' if prev < RevisionNo && self.rest.starts_with(b"-r") => {
                self.rest = &self.rest[2..];
                self.digits(RevisionNo);
            }
            _ => invalid(self),
        }
    }
}

/// Two parts of the same kind: numbers as numbers, except that a number after a dot with a
/// leading zero compares as text (`1.01` < `1.1`, the Gentoo rule); hashes as text.
fn apk_part_cmp(a: &ApkPart, b: &ApkPart) -> Ordering {
    use ApkKind::*;
    match a.kind {
        Digit if a.text.first() == Some(&b'0') || b.text.first() == Some(&b'0') => a.text.cmp(b.text),
        InitialDigit | Digit | SuffixNo | RevisionNo | Suffix => a.number.cmp(&b.number),
        Letter => a.text.cmp(b.text),
        _ => a.text.cmp(b.text),
    }
}

/// Whether apk accepts `v` as a version (`apk_version_validate`).
pub fn apk_valid(v: &str) -> bool {
    let mut lx = ApkLexer::new(v);
    while lx.part.kind < ApkKind::End {
        lx.next();
    }
    lx.part.kind == ApkKind::End
}

/// Compares two apk versions as `apk version -t` does. apk itself compares invalid versions
/// up to the first bad character; here they are refused, so that a typo in an advisory is
/// reported rather than matched.
pub fn apk_cmp(a: &str, b: &str) -> Result<Ordering, BadVersion> {
    for v in [a, b] {
        if !apk_valid(v) {
            return Err(BadVersion { scheme: Scheme::Apk, version: v.to_owned(), reason: "not an apk version" });
        }
    }
    let (mut x, mut y) = (ApkLexer::new(a), ApkLexer::new(b));
    while x.part.kind == y.part.kind && x.part.kind < ApkKind::End {
        let ord = apk_part_cmp(&x.part, &y.part);
        if ord != Ordering::Equal {
            return Ok(ord);
        }
        x.next();
        y.next();
    }
    let (xk, yk) = (x.part.kind, y.part.kind);
    if xk == yk {
        return Ok(Ordering::Equal);
    }
    // Equal so far and one goes on: it is newer, unless what follows is a pre-release suffix.
    let pre = |p: &ApkPart| p.kind == ApkKind::Suffix && (p.number as usize) < APK_SUFFIX_NONE;
    if pre(&x.part) {
        return Ok(Ordering::Less);
    }
    if pre(&y.part) {
        return Ok(Ordering::Greater);
    }
    Ok(yk.cmp(&xk))
}

// ---------------------------------------------------------------------------------------------
// PEP 440

/// The grammar of `packaging.version.VERSION_PATTERN` (packaging 23+), anchored with the
/// surrounding whitespace it allows, case-insensitive.
const PEP440_PATTERN: &str = r"(?xi)^\s*
    v?
    (?:
        (?:(?P<epoch>[0-9]+)!)?
        (?P<release>[0-9]+(?:\.[0-9]+)*)
        (?P<pre>
            [-_\.]?
            (?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)
            [-_\.]?
            (?P<pre_n>[0-9]+)?
        )?
        (?P<post>
            (?:-(?P<post_n1>[0-9]+))
            |
            (?:
                [-_\.]?
                (?P<post_l>post|rev|r)
                [-_\.]?
                (?P<post_n2>[0-9]+)?
            )
        )?
        (?P<dev>
            [-_\.]?
            (?P<dev_l>dev)
            [-_\.]?
            (?P<dev_n>[0-9]+)?
        )?
    )
    (?:\+(?P<local>[a-z0-9]+(?:[-_\.][a-z0-9]+)*))?
\s*$";

/// A number of any size, kept as its digits without leading zeros (Python's ints have no
/// limit, and `1.0.99999999999999999999` is a valid version).
#[derive(Clone, Debug, PartialEq, Eq)]
struct BigNum(String);

impl BigNum {
    fn new(digits: &str) -> Self {
        BigNum(digits.trim_start_matches('0').to_owned())
    }
    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }
}
impl Ord for BigNum {
    fn cmp(&self, o: &Self) -> Ordering {
        numeric_cmp(self.0.as_bytes(), o.0.as_bytes())
    }
}
impl PartialOrd for BigNum {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// One segment of a local version: numbers sort after strings, as in packaging.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Local {
    Text(String),
    Num(BigNum),
}

/// A parsed PEP 440 version, ordered as packaging's `_cmpkey` orders.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pep440 {
    epoch: BigNum,
    /// Trailing zeros removed: `1.0` == `1`.
    release: Vec<BigNum>,
    /// `Pre::Dev` for a dev release with neither pre nor post, `Pre::Final` when there is none.
    pre: Pre,
    post: Option<BigNum>,
    /// `None` sorts after every dev release.
    dev: DevKey,
    local: Option<Vec<Local>>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Pre {
    Dev,
    /// `a` < `b` < `rc` as strings, as packaging compares them.
    Is(String, BigNum),
    Final,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum DevKey {
    Is(BigNum),
    None,
}

impl Pep440 {
    pub fn parse(text: &str) -> Result<Self, BadVersion> {
        static RE: OnceLock<regex::Regex> = OnceLock::new();
        #[allow(clippy::unwrap_used)] // a constant pattern, compiled by every test
        let re = RE.get_or_init(|| regex::Regex::new(PEP440_PATTERN).unwrap());
        let bad = || BadVersion { scheme: Scheme::Pep440, version: text.to_owned(), reason: "not a PEP 440 version" };
        let m = re.captures(text).ok_or_else(bad)?;
        let num = |name: &str| m.name(name).map(|g| BigNum::new(g.as_str()));
        let epoch = num("epoch").unwrap_or(BigNum(String::new()));
        let mut release: Vec<BigNum> = m["release"].split('.').map(BigNum::new).collect();
        while release.last().is_some_and(BigNum::is_zero) {
            release.pop();
        }
        let pre_l = m.name("pre_l").map(|g| match g.as_str().to_lowercase().as_str() {
            "alpha" | "a" => "a",
            "beta" | "b" => "b",
            _ => "rc",
        });
        let pre = pre_l.map(|l| (l.to_owned(), num("pre_n").unwrap_or(BigNum(String::new()))));
        let post = if m.name("post").is_some() {
            Some(num("post_n1").or_else(|| num("post_n2")).unwrap_or(BigNum(String::new())))
        } else {
            None
        };
        let dev = m.name("dev").map(|_| num("dev_n").unwrap_or(BigNum(String::new())));
        let pre = match (pre, &post, &dev) {
            (None, None, Some(_)) => Pre::Dev,
            (None, _, _) => Pre::Final,
            (Some((l, n)), _, _) => Pre::Is(l, n),
        };
        let local = m.name("local").map(|g| {
            g.as_str()
                .split(['-', '_', '.'])
                .map(|part| {
                    if part.bytes().all(|b| b.is_ascii_digit()) {
                        Local::Num(BigNum::new(part))
                    } else {
                        Local::Text(part.to_lowercase())
                    }
                })
                .collect()
        });
        Ok(Pep440 { epoch, release, pre, post, dev: dev.map_or(DevKey::None, DevKey::Is), local })
    }
}

// ---------------------------------------------------------------------------------------------
// SemVer

/// A SemVer 2.0.0 version, ordered by precedence (build metadata ignored, so two versions that
/// differ only in it are equal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Semver {
    core: [BigNum; 3],
    pre: Vec<Local>,
}

impl Semver {
    /// Parses `MAJOR.MINOR.PATCH[-PRE][+BUILD]`; a leading `v` (Go's module versions) is
    /// allowed, since OSV's Go records and the Go toolchain differ only in it.
    pub fn parse(text: &str) -> Result<Self, BadVersion> {
        let bad = |reason| BadVersion { scheme: Scheme::Semver, version: text.to_owned(), reason };
        let s = text.strip_prefix('v').unwrap_or(text);
        let ident_ok = |id: &str| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let (s, build) = match s.split_once('+') {
            Some((s, b)) => (s, Some(b)),
            None => (s, None),
        };
        if let Some(b) = build {
            if !b.split('.').all(ident_ok) {
                return Err(bad("bad build metadata"));
            }
        }
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (s, None),
        };
        let nums: Vec<&str> = core.split('.').collect();
        let numeric =
            |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n == "0" || !n.starts_with('0'));
        if nums.len() != 3 || !nums.iter().all(|n| numeric(n)) {
            return Err(bad("not MAJOR.MINOR.PATCH"));
        }
        let mut ids = Vec::new();
        if let Some(p) = pre {
            for id in p.split('.') {
                if !ident_ok(id) {
                    return Err(bad("bad pre-release identifier"));
                }
                if id.bytes().all(|b| b.is_ascii_digit()) {
                    if id.len() > 1 && id.starts_with('0') {
                        return Err(bad("leading zero in a numeric pre-release identifier"));
                    }
                    ids.push(Local::Num(BigNum::new(id)));
                } else {
                    ids.push(Local::Text(id.to_owned()));
                }
            }
        }
        Ok(Semver { core: [BigNum::new(nums[0]), BigNum::new(nums[1]), BigNum::new(nums[2])], pre: ids })
    }
}

impl Ord for Semver {
    fn cmp(&self, o: &Self) -> Ordering {
        self.core.cmp(&o.core).then_with(|| match (self.pre.is_empty(), o.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            // Numeric identifiers sort before alphanumeric ones: the opposite of `Local`.
            (false, false) => {
                for (x, y) in self.pre.iter().zip(&o.pre) {
                    let ord = match (x, y) {
                        (Local::Num(a), Local::Num(b)) => a.cmp(b),
                        (Local::Text(a), Local::Text(b)) => a.cmp(b),
                        (Local::Num(_), Local::Text(_)) => Ordering::Less,
                        (Local::Text(_), Local::Num(_)) => Ordering::Greater,
                    };
                    if ord != Ordering::Equal {
                        return ord;
                    }
                }
                self.pre.len().cmp(&o.pre.len())
            }
        })
    }
}
impl PartialOrd for Semver {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn dpkg_hand_picked() {
        for (a, b, want) in [
            ("1.0~rc1", "1.0", Less),
            ("1.0", "1.0+b1", Less),
            ("1:0.1", "2.0", Greater),
            ("1.0-1", "1.0-1~bpo1", Greater),
            ("1.01", "1.1", Equal),
            ("0:1.0", "1.0", Equal),
            ("1.0a", "1.0+", Less),
            ("2.30-2", "2.30-10", Less),
        ] {
            assert_eq!(Scheme::Dpkg.compare(a, b), Ok(want), "{a} vs {b}");
        }
        assert!(Scheme::Dpkg.compare("a1", "1").is_err());
        assert!(Scheme::Dpkg.compare("1.0-", "1").is_err());
        assert!(Scheme::Dpkg.compare("x:1", "1").is_err());
    }

    /// apk has no oracle on a Debian host (apk-tools is not packaged there). These cases are
    /// taken from apk-tools' own list, test/unit/version.data, which the rules here were
    /// checked against line by line.
    #[test]
    fn apk_hand_picked() {
        for (a, b, want) in [
            ("2.34", "0.1.0_alpha", Greater),
            ("0.1.0_alpha2", "0.1.0_alpha", Greater),
            ("1.1", "1.1_alpha1", Greater),
            ("1.0.4-r3", "1.0.4-r4", Less),
            ("1.2.1", "1.2", Greater),
            ("2.3.0b-r1", "2.3.0b-r2", Less),
            ("3.1_p16", "3.1_p17", Less),
            ("1.06-r6", "006", Less),
            ("006", "1.0.0", Greater),
            ("1.02", "1.03-r1", Less),
            ("0.99.3.20040818", "1.0", Less),
            ("2.01.01_alpha10", "0.94", Greater),
            ("0.1.0_alpha_pre2", "0.1.0_alpha", Less),
            ("1.0_p10-r0", "1.0_p9-r0", Greater),
            ("1.3_pre1-r1", "1.3.2", Less),
            ("0.20070207_rc1", "1.0", Less),
            ("1.0.0_pre20191002222144-r0", "1.0.0_pre20210530193627-r0", Less),
            ("2.5.1-r8", "2.5.1a-r1", Less),
            ("1.0", "1.0", Equal),
        ] {
            assert_eq!(apk_cmp(a, b), Ok(want), "{a} vs {b}");
            assert_eq!(apk_cmp(b, a), Ok(want.reverse()), "{b} vs {a}");
        }
        for good in ["1.2", "0.1_pre2", "0.1_pre2~1234abcd", "0.1_p1_pre2", "0.1_git20240101_pre1"] {
            assert!(apk_valid(good), "{good:?} refused");
        }
        for bad in
            ["", "0.1bc", "0.1a1", "0.1a.1", "0.1_pre2~", "0.1_pre2~1234xbcd", "0.1_foobar", "0.1-r", "0.1-r2_pre1"]
        {
            assert!(!apk_valid(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn rpm_hand_picked() {
        for (a, b, want) in [
            ("1.0~rc1", "1.0", Less),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.0.1", Less),
            ("1.0~rc1^git1", "1.0~rc1", Greater),
            ("1:1.0", "2.0", Greater),
            ("1.0-1", "1.0", Greater),
            ("1.0a", "1.0.1", Less),
            ("1.0.a", "1.0.1", Less),
            ("001", "1", Equal),
        ] {
            assert_eq!(rpm_evr_cmp(a, b), want, "{a} vs {b}");
        }
    }

    #[test]
    fn pep440_and_semver_hand_picked() {
        for (a, b, want) in [
            ("1.0.dev0", "1.0a0", Less),
            ("1.0a1", "1.0b0", Less),
            ("1.0rc1", "1.0", Less),
            ("1.0", "1.0.post1", Less),
            ("1.0.post1.dev0", "1.0.post1", Less),
            ("1.0+local", "1.0", Greater),
            ("1.0+1", "1.0+abc", Greater),
            ("1!0.1", "2.0", Greater),
            ("1.0", "1.0.0", Equal),
            ("V1.0-1", "1.0.post1", Equal),
        ] {
            assert_eq!(Scheme::Pep440.compare(a, b), Ok(want), "{a} vs {b}");
        }
        assert!(Pep440::parse("1.0-beta.x").is_err());
        for (a, b, want) in [
            ("1.0.0-alpha", "1.0.0-alpha.1", Less),
            ("1.0.0-alpha.1", "1.0.0-alpha.beta", Less),
            ("1.0.0-rc.1", "1.0.0", Less),
            ("1.0.0+build", "1.0.0", Equal),
            ("v1.2.3", "1.2.3", Equal),
        ] {
            assert_eq!(Scheme::Semver.compare(a, b), Ok(want), "{a} vs {b}");
        }
        assert!(Semver::parse("01.0.0").is_err());
    }
}
