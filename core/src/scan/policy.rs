//! The scan policy: which findings count, what an allowlist lets through until when, and what
//! happens to a service whose image fails (`warn`, `block` its next start, `stop` it).
//!
//! One file, [`POLICY_PATH`], in a directory of its own below `/etc/aicontainers`: the generator
//! and `aictl` take only `NAME.toml` files and `NAME.toml.d/` directories at the top of the
//! service directories as services (crate::source), so nothing in `scan/` is ever read as one.
//!
//! ```toml
//! advisories = "/var/lib/aicontainers/advisories"   # the OSV records (default)
//!
//! [policy]                      # every service
//! severity = "high"             # findings at or above this count (default: high)
//! ignore-unfixed = true         # findings with no fixed version do not count (default: false)
//! action = "block"              # warn | block | stop (default: warn)
//!
//! [service.chat]                # one service: any key of [policy], over it
//! action = "stop"
//!
//! [[allow]]
//! id = "CVE-2025-1234"          # the record's id or one of its aliases
//! package = "openssl"           # optional: only this package
//! service = "chat"              # optional: only this service
//! expires = 2027-01-31          # last day it applies (UTC), a TOML date or "YYYY-MM-DD"
//! reason = "TLS is not used"
//! ```
//!
//! Invariant: a policy is read whole or not at all. A file that cannot be read, or any key that
//! is wrong, is a list of diagnostics (file, line, key), never a policy with that key left at
//! its default: a typo in `action` must not turn `block` into `warn` silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::osv::{Finding, Severity};
use crate::diag::Diagnostic;
use crate::doc::{self, Origin, Table, Value};
use crate::spec::section::Section;

/// Where the policy lives on a host.
pub const POLICY_PATH: &str = "/etc/aicontainers/scan/policy.toml";

/// Where the OSV records are read from when the policy does not say.
pub const ADVISORIES_DIR: &str = "/var/lib/aicontainers/advisories";

/// What happens to a service whose image fails the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Reported (journal, bus, `aictl scan`); the service runs.
    Warn,
    /// The next start fails, from the cached verdict.
    Block,
    /// As `block`, and a running service is stopped when a scan finds it failing.
    Stop,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Warn, Action::Block, Action::Stop];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Warn => "warn",
            Action::Block => "block",
            Action::Stop => "stop",
        }
    }

    /// Whether a failing image keeps the service from starting.
    pub fn blocks(self) -> bool {
        matches!(self, Action::Block | Action::Stop)
    }
}

const SEVERITIES: [Severity; 6] =
    [Severity::Unknown, Severity::Negligible, Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

/// The rules that decide one service's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Rules {
    /// Findings at or above this severity count.
    pub severity: Severity,
    /// Findings without a fixed version do not count.
    pub ignore_unfixed: bool,
    pub action: Action,
}

impl Default for Rules {
    fn default() -> Self {
        Rules { severity: Severity::High, ignore_unfixed: false, action: Action::Warn }
    }
}

/// What `[service.NAME]` changes of `[policy]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Override {
    severity: Option<Severity>,
    ignore_unfixed: Option<bool>,
    action: Option<Action>,
}

/// One allowlist entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Allow {
    pub id: String,
    pub package: Option<String>,
    pub service: Option<String>,
    /// The last day it applies, `YYYY-MM-DD` (UTC).
    pub expires: String,
    pub reason: String,
    /// `expires` as days since 1970-01-01.
    #[serde(skip)]
    expires_day: i64,
    /// `file:line` of the entry, for reports.
    pub at: String,
}

impl Allow {
    fn covers(&self, service: &str, f: &Finding) -> bool {
        (f.id == self.id || f.aliases.contains(&self.id))
            && self.package.as_deref().is_none_or(|p| p == f.package)
            && self.for_service(service)
    }

    fn for_service(&self, service: &str) -> bool {
        self.service.as_deref().is_none_or(|s| s == service)
    }

    /// Whether it still applies on `today` (days since the epoch).
    pub fn applies_on(&self, today: i64) -> bool {
        today <= self.expires_day
    }
}

/// The whole policy of a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The file it was read from; `None` when there is none (the defaults).
    pub path: Option<PathBuf>,
    pub advisories: PathBuf,
    pub default: Rules,
    overrides: BTreeMap<String, Override>,
    pub allow: Vec<Allow>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            path: None,
            advisories: PathBuf::from(ADVISORIES_DIR),
            default: Rules::default(),
            overrides: BTreeMap::new(),
            allow: Vec::new(),
        }
    }
}

/// A service's findings judged by the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub rules: Rules,
    /// The findings that count: over the threshold, not ignored, not allowed.
    pub failing: Vec<Finding>,
    /// Findings an entry lets through, with the entry's id and expiry.
    pub allowed: Vec<AllowedFinding>,
    /// Entries for this service whose expiry has passed: they no longer apply.
    pub expired: Vec<Allow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AllowedFinding {
    pub id: String,
    pub package: String,
    pub expires: String,
    pub reason: String,
}

impl Decision {
    pub fn fails(&self) -> bool {
        !self.failing.is_empty()
    }

    /// Whether the service may not start.
    pub fn blocks(&self) -> bool {
        self.fails() && self.rules.action.blocks()
    }
}

impl Policy {
    /// Reads the policy at `path`; no file there means the defaults.
    pub fn load(path: &Path) -> Result<Policy, Vec<Diagnostic>> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Policy::default()),
            _ => {}
        }
        let text = crate::fsutil::read_config(path).map_err(|why| vec![Diagnostic::file(path, why)])?;
        Policy::parse(path, text)
    }

    /// Reads a policy from its text; `path` is what diagnostics name.
    pub fn parse(path: &Path, text: String) -> Result<Policy, Vec<Diagnostic>> {
        let root = doc::parse(path, text).map_err(|d| vec![d])?;
        let Value::Table(table) = &root.value else { unreachable!("a document is a table") };
        let mut diags = Vec::new();
        let mut policy = Policy { path: Some(path.to_owned()), ..Policy::default() };
        let top = Section::new("", table, &["advisories", "policy", "service", "allow"], &mut diags);
        if let Some((dir, origin)) = top.string("advisories", &mut diags) {
            if Path::new(&dir).is_absolute() {
                policy.advisories = PathBuf::from(dir);
            } else {
                diags.push(origin.error("advisories", format!("{dir:?} is not an absolute path")));
            }
        }
        if let Some(t) = top.table("policy", &mut diags) {
            let o = read_rules("policy", t, &mut diags);
            policy.default = apply(Rules::default(), o);
        }
        if let Some(services) = top.table("service", &mut diags) {
            for (name, entry) in services {
                let key = format!("service.{name}");
                if let Err(why) = crate::spec::check_service_name(name) {
                    diags.push(entry.key_origin.error(&key, why));
                    continue;
                }
                match &entry.node.value {
                    Value::Table(t) => {
                        let o = read_rules_owned(key, t, &mut diags);
                        policy.overrides.insert(name.clone(), o);
                    }
                    other => diags
                        .push(entry.node.origin.error(&key, format!("expected a table, found {}", other.type_name()))),
                }
            }
        }
        if let Some(entry) = top.get("allow") {
            match &entry.node.value {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let key = format!("allow[{}]", i + 1);
                        match &item.value {
                            Value::Table(t) => {
                                if let Some(a) = read_allow(key, t, &item.origin, &mut diags) {
                                    policy.allow.push(a);
                                }
                            }
                            other => diags.push(
                                item.origin.error(&key, format!("expected a table, found {}", other.type_name())),
                            ),
                        }
                    }
                }
                other => {
                    diags.push(entry.node.origin.error(
                        "allow",
                        format!("expected an array of tables ([[allow]]), found {}", other.type_name()),
                    ))
                }
            }
        }
        if diags.is_empty() {
            Ok(policy)
        } else {
            diags.sort_by_key(|d| (d.line, d.col));
            diags.dedup();
            Err(diags)
        }
    }

    /// The rules of `service`: `[policy]` with `[service.NAME]` over it.
    pub fn rules(&self, service: &str) -> Rules {
        self.overrides.get(service).map_or(self.default, |o| apply(self.default, *o))
    }

    /// Judges `findings` of `service`'s image on `today` (days since the epoch, UTC).
    pub fn decide(&self, service: &str, findings: &[Finding], today: i64) -> Decision {
        let rules = self.rules(service);
        let mut failing = Vec::new();
        let mut allowed = Vec::new();
        for f in findings {
            if f.severity < rules.severity || (rules.ignore_unfixed && f.fixed.is_none()) {
                continue;
            }
            match self.allow.iter().find(|a| a.applies_on(today) && a.covers(service, f)) {
                Some(a) => allowed.push(AllowedFinding {
                    id: f.id.clone(),
                    package: f.package.clone(),
                    expires: a.expires.clone(),
                    reason: a.reason.clone(),
                }),
                None => failing.push(f.clone()),
            }
        }
        let expired = self.allow.iter().filter(|a| a.for_service(service) && !a.applies_on(today)).cloned().collect();
        Decision { rules, failing, allowed, expired }
    }
}

fn apply(base: Rules, o: Override) -> Rules {
    Rules {
        severity: o.severity.unwrap_or(base.severity),
        ignore_unfixed: o.ignore_unfixed.unwrap_or(base.ignore_unfixed),
        action: o.action.unwrap_or(base.action),
    }
}

const RULE_KEYS: &[&str] = &["severity", "ignore-unfixed", "action"];

fn read_rules(prefix: &str, t: &Table, diags: &mut Vec<Diagnostic>) -> Override {
    let s = Section::new(prefix, t, RULE_KEYS, diags);
    Override {
        severity: s.choice("severity", &SEVERITIES, Severity::as_str, diags),
        ignore_unfixed: s.boolean("ignore-unfixed", diags),
        action: s.choice("action", &Action::ALL, Action::as_str, diags),
    }
}

fn read_rules_owned(prefix: String, t: &Table, diags: &mut Vec<Diagnostic>) -> Override {
    read_rules(&prefix, t, diags)
}

const ALLOW_KEYS: &[&str] = &["id", "package", "service", "expires", "reason"];

/// One `[[allow]]` entry; `id`, `expires` and `reason` are required (an exception nobody can
/// explain or that never ends is what the allowlist must not become).
fn read_allow(prefix: String, t: &Table, at: &Origin, diags: &mut Vec<Diagnostic>) -> Option<Allow> {
    let before = diags.len();
    let s = Section::new(&prefix, t, ALLOW_KEYS, diags);
    let key = |k: &str| format!("{prefix}.{k}");
    let required = |k: &str, diags: &mut Vec<Diagnostic>| {
        let v = s.string(k, diags).map(|(v, o)| (v, o.clone()));
        if v.is_none() && s.get(k).is_none() {
            diags.push(at.error(&key(k), format!("missing: every allowlist entry names its {k}")));
        }
        v
    };
    let id = required("id", diags);
    let reason = required("reason", diags);
    if let Some((v, o)) = id.as_ref().filter(|(v, _)| v.trim().is_empty()) {
        diags.push(o.error(&key("id"), format!("{v:?} is empty")));
    }
    if let Some((v, o)) = reason.as_ref().filter(|(v, _)| v.trim().is_empty()) {
        diags.push(o.error(&key("reason"), format!("{v:?} is empty: say why the finding is accepted")));
    }
    let package = s.string("package", diags).map(|(v, _)| v);
    let service = s.string("service", diags).and_then(|(v, o)| match crate::spec::check_service_name(&v) {
        Ok(()) => Some(v),
        Err(why) => {
            diags.push(o.error(&key("service"), why));
            None
        }
    });
    let expires = match s.get("expires") {
        None => {
            diags.push(at.error(&key("expires"), "missing: every allowlist entry has an expiry date (YYYY-MM-DD)"));
            None
        }
        Some(e) => match &e.node.value {
            Value::Datetime(d) | Value::String(d) => match days_from_date(d) {
                Some(day) => Some((d.clone(), day)),
                None => {
                    diags.push(e.node.origin.error(&key("expires"), format!("{d:?} is not a date (YYYY-MM-DD)")));
                    None
                }
            },
            other => {
                diags.push(
                    e.node.origin.error(&key("expires"), format!("expected a date, found {}", other.type_name())),
                );
                None
            }
        },
    };
    if diags.len() > before {
        return None;
    }
    let (line, _) = at.line_col();
    Some(Allow {
        id: id?.0,
        package,
        service,
        expires: expires.as_ref()?.0.clone(),
        expires_day: expires?.1,
        reason: reason?.0,
        at: format!("{}:{line}", at.path().display()),
    })
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (a proleptic Gregorian calendar day).
pub fn days_from_date(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&m) || d < 1 || d > month_days[(m - 1) as usize] {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Today, in days since 1970-01-01 (UTC).
pub fn today() -> i64 {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    (secs / 86_400) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, package: &str, severity: Severity, fixed: Option<&str>) -> Finding {
        Finding {
            id: id.into(),
            aliases: vec![format!("CVE-{id}")],
            package: package.into(),
            ecosystem: "Debian:13".into(),
            installed: "1.0-1".into(),
            fixed: fixed.map(Into::into),
            severity,
        }
    }

    fn parse(text: &str) -> Result<Policy, Vec<Diagnostic>> {
        Policy::parse(Path::new("/etc/aicontainers/scan/policy.toml"), text.to_owned())
    }

    fn errors(text: &str) -> Vec<String> {
        parse(text).expect_err("refused").iter().map(ToString::to_string).collect()
    }

    #[test]
    fn dates() {
        assert_eq!(days_from_date("1970-01-01"), Some(0));
        assert_eq!(days_from_date("2000-03-01"), Some(11_017));
        assert_eq!(days_from_date("2024-02-29"), Some(19_782));
        for bad in
            ["2023-02-29", "2024-13-01", "2024-00-10", "2024-1-01", "+024-01-01", "2024-01-32", "", "２０２４-01-01"]
        {
            assert_eq!(days_from_date(bad), None, "{bad}");
        }
        // Consecutive days are consecutive numbers across every month end of 400 years.
        let mut last = days_from_date("1999-12-31").expect("date");
        for y in 2000..2400 {
            for m in 1..=12 {
                for d in 1..=31 {
                    if let Some(day) = days_from_date(&format!("{y:04}-{m:02}-{d:02}")) {
                        assert_eq!(day, last + 1, "{y}-{m}-{d}");
                        last = day;
                    }
                }
            }
        }
    }

    #[test]
    fn defaults_without_a_file() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = Policy::load(&t.path().join("policy.toml")).expect("defaults");
        assert_eq!(p, Policy::default());
        assert_eq!(p.rules("x").action, Action::Warn);
    }

    #[test]
    fn service_overrides_policy_key_by_key() {
        let p = parse(
            "advisories = \"/srv/osv\"\n[policy]\nseverity = \"medium\"\naction = \"block\"\n[service.chat]\naction = \"stop\"\n",
        )
        .expect("parses");
        assert_eq!(p.advisories, Path::new("/srv/osv"));
        assert_eq!(p.rules("web"), Rules { severity: Severity::Medium, ignore_unfixed: false, action: Action::Block });
        assert_eq!(p.rules("chat"), Rules { severity: Severity::Medium, ignore_unfixed: false, action: Action::Stop });
    }

    #[test]
    fn threshold_unfixed_and_allowlist_with_expiry() {
        let p = parse(concat!(
            "[policy]\nseverity = \"high\"\nignore-unfixed = true\naction = \"block\"\n",
            "[[allow]]\nid = \"CVE-A\"\nservice = \"chat\"\nexpires = 2030-01-31\nreason = \"not reachable\"\n",
            "[[allow]]\nid = \"B\"\npackage = \"zlib\"\nexpires = \"2020-01-01\"\nreason = \"old\"\n",
        ))
        .expect("parses");
        let findings = [
            finding("A", "openssl", Severity::Critical, Some("3.0.1")),
            finding("B", "zlib", Severity::High, Some("1.3")),
            finding("C", "bash", Severity::Medium, Some("5.2")),
            finding("D", "curl", Severity::Critical, None),
        ];
        let day = |d: &str| days_from_date(d).expect("date");
        let chat = p.decide("chat", &findings, day("2030-01-31"));
        assert_eq!(chat.failing.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["B"]);
        assert_eq!(chat.allowed.len(), 1);
        assert_eq!(chat.allowed[0].id, "A", "an alias names the record too");
        assert_eq!(chat.expired.len(), 1, "the expired entry is reported");
        assert_eq!(chat.expired[0].at, "/etc/aicontainers/scan/policy.toml:10", "the entry's first line");
        assert!(chat.blocks());
        // The day after its expiry, an entry no longer applies.
        let later = p.decide("chat", &findings, day("2030-02-01"));
        assert_eq!(later.failing.len(), 2);
        assert_eq!(later.expired.len(), 2);
        // An entry for another service does not apply.
        assert_eq!(p.decide("web", &findings, day("2025-01-01")).failing.len(), 2);
        // warn fails without blocking.
        let warn = parse("[policy]\naction = \"warn\"\n").expect("parses");
        let d = warn.decide("web", &findings, 0);
        assert!(d.fails() && !d.blocks());
    }

    #[test]
    fn every_mistake_names_file_line_and_key() {
        let errs = errors(concat!(
            "[policy]\n",
            "action = \"blok\"\n",
            "severity = \"severe\"\n",
            "ignore-unfixed = \"yes\"\n",
            "treshold = 1\n",
            "[service.\"../etc\"]\n",
            "action = \"warn\"\n",
            "[[allow]]\n",
            "id = \"X\"\n",
            "expires = \"2024-02-30\"\n",
            "[[allow]]\n",
            "id = \"Y\"\n",
            "reason = \"\"\n",
            "expires = 1\n",
        ));
        let want = [
            "policy.toml:2:10: policy.action: `blok` is not one of warn, block, stop; did you mean `block`?",
            "policy.toml:3:12: policy.severity: `severe` is not one of",
            "policy.toml:4:18: policy.ignore-unfixed: expected true or false, found a string",
            "policy.toml:5:1: policy.treshold: unknown key `treshold`",
            "policy.toml:6:10: service.../etc:",
            "policy.toml:8:1: allow[1].reason: missing",
            "policy.toml:10:11: allow[1].expires:",
            "policy.toml:14:11: allow[2].expires: expected a date, found an integer",
        ];
        for w in want {
            assert!(errs.iter().any(|e| e.contains(w)), "{w}\nnot in\n{}", errs.join("\n"));
        }
        assert!(errs.iter().any(|e| e.contains("allow[2].reason") && e.contains("is empty")), "{errs:?}");
    }

    #[test]
    fn hostile_files() {
        let t = tempfile::tempdir().expect("tempdir");
        // A FIFO would block a reader forever; a device would be acted on.
        let fifo = t.path().join("fifo.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
        let e = Policy::load(&fifo).expect_err("fifo");
        assert!(e[0].to_string().contains("is a FIFO"), "{e:?}");
        let dev = t.path().join("dev.toml");
        std::os::unix::fs::symlink("/dev/zero", &dev).expect("symlink");
        assert!(Policy::load(&dev).expect_err("device")[0].to_string().contains("character device"));
        let big = t.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; (crate::fsutil::CONFIG_MAX + 1) as usize]).expect("write");
        assert!(Policy::load(&big).expect_err("big")[0].to_string().contains("larger than"));
        let bytes = t.path().join("bytes.toml");
        std::fs::write(&bytes, b"[policy]\naction = \"block\xff\"\n").expect("write");
        assert!(Policy::load(&bytes).expect_err("bytes")[0].to_string().contains("not UTF-8"));
        // Control characters and terminal escapes in values are refused, and nothing printed
        // can start a line of its own.
        for text in [
            "[[allow]]\nid = \"X\\u001b[2J\"\nexpires = 2030-01-01\nreason = \"r\"\n",
            "[[allow]]\nid = \"X\"\nexpires = \"2030-01-01\\nreason = evil\"\nreason = \"r\"\n",
            "[service.\"a\\nb\"]\naction = \"warn\"\n",
            "allow = \"everything\"\n",
            "advisories = \"relative/dir\"\n",
            "[[allow]]\nid = \"X\"\nexpires = 2030-01-01T00:00:00Z\nreason = \"r\"\n",
        ] {
            let errs = errors(text);
            assert!(!errs.is_empty(), "{text}");
            for e in errs {
                assert_eq!(e.lines().count(), 1, "{e}");
            }
        }
        // A policy is all or nothing: one bad key, no policy.
        assert!(parse("[policy]\naction = \"block\"\nseverity = 3\n").is_err());
    }
}
