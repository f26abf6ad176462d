//! OSV advisories: loading a directory of records, indexing them by ecosystem and package
//! name, and matching an inventory against them.
//!
//! A package is affected by an `affected[]` entry when the ecosystem agrees (and its release,
//! when both the record and the image name one: `Debian:13` is not `Debian:12`), the name
//! agrees (distribution records name source packages; PyPI names are compared as PEP 503
//! normalizes them), and its version is listed in `versions` or falls in an `ECOSYSTEM` or
//! `SEMVER` range, evaluated as the OSV schema says: events in version order, `introduced`
//! opens, `fixed` closes (the fixed version is not affected), `last_affected` closes after
//! itself. `GIT` ranges name commits, not versions, and are not used. Withdrawn records are
//! skipped.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::inventory::{Ecosystem, Package};
use crate::diag::Diagnostic;

/// The most events one range may have: real ranges have a few dozen; matching compares every
/// event with every other, so a record cannot make a scan run for hours.
pub const MAX_EVENTS: usize = 1000;

/// The most read of one record: real ones are a few KiB, the largest (kernel) a few MiB.
pub const RECORD_MAX: u64 = 32 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Unknown,
    Negligible,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The words records use: CVSS ratings, GitHub's `MODERATE`, Debian's `unimportant`,
    /// Ubuntu's priorities.
    pub fn from_word(word: &str) -> Option<Severity> {
        Some(match word.trim().to_ascii_lowercase().as_str() {
            "critical" => Severity::Critical,
            "high" | "important" => Severity::High,
            "medium" | "moderate" => Severity::Medium,
            "low" => Severity::Low,
            "negligible" | "unimportant" | "none" => Severity::Negligible,
            "unknown" | "not yet assigned" | "untriaged" => Severity::Unknown,
            _ => return None,
        })
    }

    /// The CVSS rating of a base score.
    pub fn from_score(score: f64) -> Severity {
        match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s > 0.0 => Severity::Low,
            _ => Severity::Negligible,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Negligible => "negligible",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// The base score of a CVSS 3.0/3.1 vector (`CVSS:3.1/AV:N/AC:L/...`), as the specification's
/// formulas give it; `None` when the vector lacks a base metric or has an unknown value.
pub fn cvss3_base_score(vector: &str) -> Option<f64> {
    let mut m = HashMap::new();
    let mut parts = vector.split('/');
    if !parts.next()?.starts_with("CVSS:3") {
        return None;
    }
    for p in parts {
        let (k, v) = p.split_once(':')?;
        m.insert(k, v);
    }
    let changed = match *m.get("S")? {
        "U" => false,
        "C" => true,
        _ => return None,
    };
    let av = match *m.get("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let ac = match *m.get("AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let pr = match (*m.get("PR")?, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let ui = match *m.get("UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let cia = |k: &str| -> Option<f64> {
        Some(match *m.get(k)? {
            "H" => 0.56,
            "L" => 0.22,
            "N" => 0.0,
            _ => return None,
        })
    };
    let iss = 1.0 - (1.0 - cia("C")?) * (1.0 - cia("I")?) * (1.0 - cia("A")?);
    let impact = if changed { 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02f64).powi(15) } else { 6.42 * iss };
    let exploitability = 8.22 * av * ac * pr * ui;
    if impact <= 0.0 {
        return Some(0.0);
    }
    let raw = if changed { (1.08 * (impact + exploitability)).min(10.0) } else { (impact + exploitability).min(10.0) };
    // CVSS 3.1's Roundup: the smallest one-decimal number not below the input, computed on
    // integers so that 4.000000001 is 4.1 and 4.0 stays 4.0.
    let int = (raw * 100_000.0).round() as i64;
    Some(if int % 10_000 == 0 { int as f64 / 100_000.0 } else { ((int / 10_000) + 1) as f64 / 10.0 })
}

// ---------------------------------------------------------------------------------------------
// Records

#[derive(Clone, Debug, Deserialize)]
pub struct Record {
    pub id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub withdrawn: Option<String>,
    #[serde(default)]
    pub affected: Vec<Affected>,
    #[serde(default)]
    pub severity: Vec<SeverityEntry>,
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Affected {
    pub package: Option<PackageRef>,
    #[serde(default)]
    pub ranges: Vec<Range>,
    #[serde(default)]
    pub versions: Vec<String>,
    #[serde(default)]
    pub severity: Vec<SeverityEntry>,
    #[serde(default)]
    pub ecosystem_specific: Option<serde_json::Value>,
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PackageRef {
    pub ecosystem: String,
    pub name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Range {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub events: Vec<Event>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Event {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introduced: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_affected: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SeverityEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub score: String,
}

fn severity_word(v: &Option<serde_json::Value>) -> Option<Severity> {
    let v = v.as_ref()?;
    let s = v.get("severity").or_else(|| v.get("urgency"))?;
    Severity::from_word(s.as_str()?)
}

fn severity_of(entries: &[SeverityEntry]) -> Option<Severity> {
    entries
        .iter()
        .filter_map(|e| match e.kind.as_str() {
            "CVSS_V3" => cvss3_base_score(&e.score).or_else(|| e.score.parse().ok()).map(Severity::from_score),
            _ => e.score.parse::<f64>().ok().map(Severity::from_score),
        })
        .max()
}

impl Record {
    /// The severity for one affected entry: the words the record's source gives (per package,
    /// then for the record), else the highest CVSS v3 score, else unknown.
    fn severity(&self, a: &Affected) -> Severity {
        severity_word(&a.ecosystem_specific)
            .or_else(|| severity_word(&a.database_specific))
            .or_else(|| severity_word(&self.database_specific))
            .or_else(|| severity_of(&a.severity))
            .or_else(|| severity_of(&self.severity))
            .unwrap_or(Severity::Unknown)
    }
}

// ---------------------------------------------------------------------------------------------
// The index

/// What matching needs of a record, kept in the index and its cache file: the severity of
/// each affected entry is worked out once, and what is not used (details, references) is
/// dropped.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Advisory {
    pub id: String,
    pub aliases: Vec<String>,
    pub targets: Vec<Target>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Target {
    pub ecosystem: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    pub ranges: Vec<Range>,
    pub severity: Severity,
}

/// Records by ecosystem and (normalized) package name.
#[derive(Debug, Default)]
pub struct Index {
    advisories: Vec<Advisory>,
    by_package: HashMap<(Ecosystem, String), Vec<(u32, u32)>>,
    /// Records or ranges that could not be used (bad JSON, a version the ecosystem cannot read).
    pub warnings: Vec<Diagnostic>,
}

/// The cache of an index: the advisories and the fingerprint of the directory they were read
/// from (every file's path, size, modification time and inode), so that an unchanged directory
/// is not parsed again.
#[derive(Serialize, Deserialize)]
struct Cache {
    format: u32,
    fingerprint: String,
    advisories: Vec<Advisory>,
    warnings: Vec<String>,
}
const CACHE_FORMAT: u32 = 1;

impl Index {
    pub fn add(&mut self, record: Record) {
        if record.withdrawn.is_some() {
            return;
        }
        if record.affected.iter().any(|a| a.ranges.iter().any(|r| r.events.len() > MAX_EVENTS)) {
            self.warnings.push(Diagnostic::file(
                &record.id,
                format!("a range with more than {MAX_EVENTS} events is not used (matching is quadratic in them)"),
            ));
        }
        let targets = record
            .affected
            .iter()
            .filter_map(|a| {
                let p = a.package.as_ref()?;
                Ecosystem::parse_osv(&p.ecosystem)?;
                Some(Target {
                    ecosystem: p.ecosystem.clone(),
                    name: p.name.clone(),
                    versions: a.versions.clone(),
                    ranges: a
                        .ranges
                        .iter()
                        .filter(|r| (r.kind == "ECOSYSTEM" || r.kind == "SEMVER") && r.events.len() <= MAX_EVENTS)
                        .cloned()
                        .collect(),
                    severity: record.severity(a),
                })
            })
            .collect();
        self.push(Advisory { id: record.id, aliases: record.aliases, targets });
    }

    fn push(&mut self, adv: Advisory) {
        let r = self.advisories.len() as u32;
        for (t, target) in adv.targets.iter().enumerate() {
            let Some((eco, _)) = Ecosystem::parse_osv(&target.ecosystem) else { continue };
            self.by_package.entry((eco, eco.normalize_name(&target.name))).or_default().push((r, t as u32));
        }
        self.advisories.push(adv);
    }

    pub fn len(&self) -> usize {
        self.advisories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.advisories.is_empty()
    }

    /// Loads every `*.json` file under `dir` (recursively; links are not followed). A file
    /// that cannot be read or parsed is a warning naming it and the line, not an error: one
    /// bad record must not hide the others.
    pub fn load_dir(dir: &Path) -> Result<Index, Diagnostic> {
        let mut index = Index::default();
        let files = list_dir(dir, &mut index.warnings)?;
        for (file, _) in files {
            match read_record(&file) {
                Ok(r) => index.add(r),
                Err(d) => index.warnings.push(d),
            }
        }
        Ok(index)
    }

    /// [`Index::load_dir`] through the cache file `cache`: when the directory's fingerprint is
    /// the one the cache holds, the cache is read instead of the records; otherwise the
    /// records are read and the cache rewritten (atomically). A cache that cannot be read or
    /// written is only slower, never wrong.
    pub fn load_dir_cached(dir: &Path, cache: &Path) -> Result<Index, Diagnostic> {
        let mut warnings = Vec::new();
        let files = list_dir(dir, &mut warnings)?;
        let fingerprint = fingerprint(dir, &files);
        if let Ok(data) = read_capped(cache, 4 << 30) {
            if let Ok(c) = serde_json::from_slice::<Cache>(&data) {
                if c.format == CACHE_FORMAT && c.fingerprint == fingerprint {
                    let mut index = Index::default();
                    for a in c.advisories {
                        index.push(a);
                    }
                    index.warnings = warnings;
                    index.warnings.extend(c.warnings.into_iter().map(|w| Diagnostic::file(dir, w)));
                    return Ok(index);
                }
            }
        }
        let mut index = Index::load_dir(dir)?;
        let c = Cache {
            format: CACHE_FORMAT,
            fingerprint,
            advisories: index.advisories.clone(),
            warnings: index.warnings.iter().map(|w| w.to_string()).collect(),
        };
        let written = serde_json::to_vec(&c)
            .map_err(|e| e.to_string())
            .and_then(|data| crate::fsutil::write_durable(cache, &data, 0o644).map_err(|e| e.to_string()));
        if let Err(e) = written {
            index.warnings.push(Diagnostic::file(cache, format!("cannot write the advisory cache: {e}")));
        }
        Ok(index)
    }

    /// Every finding for `packages`, sorted, and a line for each record whose versions could
    /// not be compared with the installed one (the record is not applied: said, not hidden).
    pub fn matches(&self, packages: &[Package]) -> (Vec<Finding>, Vec<String>) {
        let mut out = BTreeSet::new();
        let mut bad = BTreeSet::new();
        for pkg in packages {
            let eco = pkg.ecosystem;
            let mut names = vec![pkg.source.as_deref().unwrap_or(&pkg.name)];
            if pkg.source.is_some() && matches!(eco, Ecosystem::RedHat | Ecosystem::Rocky | Ecosystem::AlmaLinux) {
                names.push(&pkg.name);
            }
            let installed = pkg.source_version.as_deref().unwrap_or(&pkg.version);
            for name in names {
                let Some(entries) = self.by_package.get(&(eco, eco.normalize_name(name))) else { continue };
                for &(r, t) in entries {
                    let record = &self.advisories[r as usize];
                    let target = &record.targets[t as usize];
                    if !release_matches(&target.ecosystem, pkg.release.as_deref()) {
                        continue;
                    }
                    match affects(&target.versions, &target.ranges, eco, installed) {
                        Ok(Some(fixed)) => {
                            out.insert(Finding {
                                id: record.id.clone(),
                                aliases: record.aliases.clone(),
                                package: pkg.name.clone(),
                                ecosystem: match &pkg.release {
                                    Some(r) => format!("{}:{r}", eco.osv_name()),
                                    None => eco.osv_name().to_owned(),
                                },
                                installed: pkg.version.clone(),
                                fixed,
                                severity: target.severity,
                            });
                        }
                        Ok(None) => {}
                        Err(e) => {
                            bad.insert(format!("{}: {e}", record.id));
                        }
                    }
                }
            }
        }
        (out.into_iter().collect(), bad.into_iter().collect())
    }
}

/// The `*.json` files under `dir`, sorted, with their metadata.
fn list_dir(dir: &Path, warnings: &mut Vec<Diagnostic>) -> Result<Vec<(PathBuf, std::fs::Metadata)>, Diagnostic> {
    let meta = std::fs::metadata(dir).map_err(|e| Diagnostic::file(dir, format!("cannot read the advisories: {e}")))?;
    if !meta.is_dir() {
        return Err(Diagnostic::file(dir, "is not a directory of OSV records"));
    }
    let mut files = Vec::new();
    collect_json(dir, &mut files, warnings, 0);
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

fn fingerprint(dir: &Path, files: &[(PathBuf, std::fs::Metadata)]) -> String {
    use sha2::{Digest as _, Sha256};
    use std::os::unix::fs::MetadataExt as _;
    let mut h = Sha256::new();
    h.update(dir.as_os_str().as_encoded_bytes());
    for (path, m) in files {
        h.update(path.as_os_str().as_encoded_bytes());
        h.update([0]);
        for n in [m.len(), m.mtime() as u64, m.mtime_nsec() as u64, m.ino(), m.dev()] {
            h.update(n.to_le_bytes());
        }
    }
    format!("{:x}", h.finalize())
}

fn collect_json(dir: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>, warnings: &mut Vec<Diagnostic>, depth: usize) {
    if depth > 16 {
        return warnings.push(Diagnostic::file(dir, "deeper than 16 levels: not read"));
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return warnings.push(Diagnostic::file(dir, format!("cannot list: {e}"))),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            collect_json(&path, out, warnings, depth + 1);
        } else if path.extension().is_some_and(|e| e == "json") {
            match entry.metadata() {
                Ok(m) if ft.is_file() => out.push((path, m)),
                _ => warnings.push(Diagnostic::file(&path, "is not a regular file: not read")),
            }
        }
    }
}

/// One record file: a regular file (no FIFO, no device, no link), capped, parsed.
pub fn read_record(path: &Path) -> Result<Record, Diagnostic> {
    let data = read_capped(path, RECORD_MAX)?;
    serde_json::from_slice::<Record>(&data).map_err(|e| Diagnostic {
        path: path.to_owned(),
        line: e.line(),
        col: e.column(),
        key: String::new(),
        message: format!("not an OSV record: {e}"),
    })
}

/// Reads a regular file of at most `cap` bytes, refusing anything else without opening it
/// for reading (a FIFO would block, a device act).
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, Diagnostic> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let flags = (nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_NOFOLLOW).bits();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| Diagnostic::file(path, format!("cannot read: {e}")))?;
    let meta = file.metadata().map_err(|e| Diagnostic::file(path, format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(Diagnostic::file(path, "is not a regular file: refused"));
    }
    let mut data = Vec::new();
    file.take(cap + 1).read_to_end(&mut data).map_err(|e| Diagnostic::file(path, format!("cannot read: {e}")))?;
    if data.len() as u64 > cap {
        return Err(Diagnostic::file(path, format!("is larger than {cap} bytes: refused")));
    }
    Ok(data)
}

/// Whether a record's ecosystem (`Debian:13`, `Ubuntu:22.04:LTS`, `Red Hat:enterprise_linux:9::appstream`)
/// is for the image's release. A record or image that names no release matches any.
fn release_matches(osv_ecosystem: &str, release: Option<&str>) -> bool {
    let Some((_, rest)) = Ecosystem::parse_osv(osv_ecosystem) else { return false };
    let Some(release) = release else { return true };
    if rest.is_empty() {
        return true;
    }
    rest.split(':').any(|part| part == release)
}

/// Whether `installed` is affected by one `affected[]` entry: `Ok(Some(fixed))` with the
/// first fixed version above it (`None` inside when no fix exists), `Ok(None)` when not.
fn affects(
    versions: &[String],
    ranges: &[Range],
    eco: Ecosystem,
    installed: &str,
) -> Result<Option<Option<String>>, String> {
    let scheme = eco.scheme();
    let mut hit = false;
    let mut fixed: Option<String> = None;
    if versions.iter().any(|v| v == installed) {
        hit = true;
    }
    for range in ranges {
        if range.kind != "ECOSYSTEM" && range.kind != "SEMVER" {
            continue;
        }
        let cmp = |a: &str, b: &str| scheme.compare(a, b).map_err(|e| e.to_string());
        let of = |pick: fn(&Event) -> &Option<String>| -> Vec<&str> {
            range.events.iter().filter_map(|e| pick(e).as_deref()).collect()
        };
        let (opens, fixes, lasts) = (of(|e| &e.introduced), of(|e| &e.fixed), of(|e| &e.last_affected));
        // The intervals the schema's walk over sorted events describes, without sorting (a
        // record's versions need not be totally ordered, and a sort over a comparison that is
        // not would panic): affected when some `introduced` is at or below the installed
        // version and no `fixed` between them (the fixed version itself is not affected) nor
        // `last_affected` below it closes that window.
        let at_or_above = |x: &str, i: &str| -> Result<bool, String> { Ok(i == "0" || cmp(x, i)? != Ordering::Less) };
        let mut affected = false;
        let mut next_fix: Option<&str> = None;
        for &i in &opens {
            if !at_or_above(installed, i)? {
                continue;
            }
            let mut closed = false;
            for &f in &fixes {
                if at_or_above(f, i)? && cmp(installed, f)? != Ordering::Less {
                    closed = true;
                }
            }
            for &l in &lasts {
                if at_or_above(l, i)? && cmp(installed, l)? == Ordering::Greater {
                    closed = true;
                }
            }
            if closed {
                continue;
            }
            affected = true;
            for &f in &fixes {
                if cmp(installed, f)? == Ordering::Less
                    && next_fix.map_or(Ok(true), |n| cmp(f, n).map(|o| o == Ordering::Less))?
                {
                    next_fix = Some(f);
                }
            }
        }
        let next_fix = next_fix.map(str::to_owned);
        if affected {
            hit = true;
            if let Some(f) = next_fix {
                let better = match &fixed {
                    None => true,
                    Some(old) => cmp(&f, old)? == Ordering::Less,
                };
                if better {
                    fixed = Some(f);
                }
            }
        }
    }
    Ok(hit.then_some(fixed))
}

/// One advisory that applies to one installed package: the shape of `aictl scan --json`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Finding {
    pub id: String,
    pub aliases: Vec<String>,
    pub package: String,
    pub ecosystem: String,
    pub installed: String,
    /// The first version that fixes it; `None` (JSON null) when there is no fix.
    pub fixed: Option<String>,
    pub severity: Severity,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvss3_scores_match_the_specification_examples() {
        // Scores as NVD's calculator gives them.
        for (v, want) in [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
            ("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
        ] {
            assert_eq!(cvss3_base_score(v), Some(want), "{v}");
        }
        assert_eq!(cvss3_base_score("CVSS:3.1/AV:X/AC:L"), None);
        assert_eq!(cvss3_base_score("garbage"), None);
    }

    fn aff(events: &[(&str, &str)]) -> Vec<Range> {
        vec![Range {
            kind: "ECOSYSTEM".into(),
            events: events
                .iter()
                .map(|(k, v)| match *k {
                    "introduced" => Event { introduced: Some(v.to_string()), ..Event::default() },
                    "fixed" => Event { fixed: Some(v.to_string()), ..Event::default() },
                    _ => Event { last_affected: Some(v.to_string()), ..Event::default() },
                })
                .collect(),
        }]
    }

    #[test]
    fn ranges_follow_the_osv_evaluation() {
        let d = Ecosystem::Debian;
        let a = aff(&[("introduced", "0"), ("fixed", "1.2-3")]);
        assert_eq!(affects(&[], &a, d, "1.2-2"), Ok(Some(Some("1.2-3".into()))));
        assert_eq!(affects(&[], &a, d, "1.2-3"), Ok(None));
        assert_eq!(affects(&[], &a, d, "1.2-3~deb12u1"), Ok(Some(Some("1.2-3".into()))));
        // Two windows, out of order in the record.
        let a = aff(&[("fixed", "2.5"), ("introduced", "2.0"), ("introduced", "1.0"), ("fixed", "1.5")]);
        assert_eq!(affects(&[], &a, d, "0.9"), Ok(None));
        assert_eq!(affects(&[], &a, d, "1.1"), Ok(Some(Some("1.5".into()))));
        assert_eq!(affects(&[], &a, d, "1.7"), Ok(None));
        assert_eq!(affects(&[], &a, d, "2.1"), Ok(Some(Some("2.5".into()))));
        let a = aff(&[("introduced", "0"), ("last_affected", "3.0")]);
        assert_eq!(affects(&[], &a, d, "3.0"), Ok(Some(None)));
        assert_eq!(affects(&[], &a, d, "3.0+b1"), Ok(None));
        let a = aff(&[("introduced", "0"), ("fixed", "not a version")]);
        assert!(affects(&[], &a, d, "1.0").is_err());
    }

    #[test]
    fn a_range_with_too_many_events_is_reported_and_not_used() {
        let events: Vec<serde_json::Value> =
            (0..=MAX_EVENTS).map(|k| serde_json::json!({"introduced": format!("{k}.0")})).collect();
        let record: Record = serde_json::from_value(serde_json::json!({
            "id": "HUGE-1",
            "affected": [{"package": {"ecosystem": "PyPI", "name": "x"}, "ranges": [{"type": "ECOSYSTEM", "events": events}]}],
        }))
        .expect("record");
        let mut index = Index::default();
        index.add(record);
        assert_eq!(index.warnings.len(), 1, "{:?}", index.warnings);
        let pkg = Package {
            ecosystem: Ecosystem::PyPI,
            release: None,
            name: "x".into(),
            version: "5.0".into(),
            source: None,
            source_version: None,
            arch: None,
            location: String::new(),
        };
        assert_eq!(index.matches(&[pkg]).0, vec![]);
    }

    #[test]
    fn releases_must_agree_when_both_are_known() {
        assert!(release_matches("Debian:13", Some("13")));
        assert!(!release_matches("Debian:12", Some("13")));
        assert!(release_matches("Debian", Some("13")));
        assert!(release_matches("Debian:13", None));
        assert!(release_matches("Ubuntu:22.04:LTS", Some("22.04")));
        assert!(release_matches("Red Hat:enterprise_linux:9::appstream", Some("9")));
        assert!(!release_matches("Alpine:v3.19", Some("v3.20")));
    }
}
