//! What an unpacked image holds: its distribution's packages (dpkg, apk, rpm) and the
//! language packages that are cheap to find (Python distributions, npm packages, the modules
//! Go binaries embed, the crates `cargo auditable` lists in Rust binaries).
//!
//! | source | where | fails the inventory when |
//! |---|---|---|
//! | dpkg | `var/lib/dpkg/status`, `var/lib/dpkg/status.d/*` (distroless) | unreadable, not UTF-8 where a field is used, a stanza without Package/Version |
//! | apk | `lib/apk/db/installed` | the same |
//! | rpm | `var/lib/rpm/rpmdb.sqlite`, `usr/lib/sysimage/rpm/rpmdb.sqlite`, Berkeley DB `Packages` there | unreadable or a bad header; an ndb database (not read) |
//! | Python | `*.dist-info/METADATA`, `*.egg-info[/PKG-INFO]` in `site-packages`/`dist-packages` | never: a bad one is a warning |
//! | npm | `node_modules/[@scope/]NAME/package.json` | never: a bad one is a warning |
//! | Go, crates.io | executables' Go build information, cargo-auditable's `.dep-v0` (see [`super::binaries`]) | never: a bad one is a warning |
//!
//! A distribution database that cannot be read fails the whole inventory rather than yield a
//! partial one that would look clean. The walk for language packages follows no links, skips
//! `proc`, `sys` and `dev`, and stops at [`WALK_MAX_DIRS`] directories or [`WALK_MAX_DEPTH`] levels
//! (reported as a warning).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rootfs::{Kind, RootFs};
use super::version::Scheme;
use crate::diag::Diagnostic;

/// The most read of a package database (dpkg status, apk installed): real ones are a few MiB.
pub const DB_MAX: u64 = 256 << 20;
/// The most read of one package's metadata file.
pub const META_MAX: u64 = 4 << 20;
pub const WALK_MAX_DIRS: usize = 2_000_000;
pub const WALK_MAX_DEPTH: usize = 64;

/// The ecosystems of OSV (its `affected[].package.ecosystem`, before any `:release`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Ecosystem {
    Debian,
    Ubuntu,
    Alpine,
    #[serde(rename = "Red Hat")]
    RedHat,
    #[serde(rename = "Rocky Linux")]
    Rocky,
    AlmaLinux,
    PyPI,
    #[serde(rename = "npm")]
    Npm,
    #[serde(rename = "crates.io")]
    CratesIo,
    Go,
}

impl Ecosystem {
    pub const ALL: [Ecosystem; 10] = [
        Ecosystem::Debian,
        Ecosystem::Ubuntu,
        Ecosystem::Alpine,
        Ecosystem::RedHat,
        Ecosystem::Rocky,
        Ecosystem::AlmaLinux,
        Ecosystem::PyPI,
        Ecosystem::Npm,
        Ecosystem::CratesIo,
        Ecosystem::Go,
    ];

    /// The name OSV gives it.
    pub fn osv_name(self) -> &'static str {
        match self {
            Ecosystem::Debian => "Debian",
            Ecosystem::Ubuntu => "Ubuntu",
            Ecosystem::Alpine => "Alpine",
            Ecosystem::RedHat => "Red Hat",
            Ecosystem::Rocky => "Rocky Linux",
            Ecosystem::AlmaLinux => "AlmaLinux",
            Ecosystem::PyPI => "PyPI",
            Ecosystem::Npm => "npm",
            Ecosystem::CratesIo => "crates.io",
            Ecosystem::Go => "Go",
        }
    }

    /// Splits an OSV ecosystem (`Debian:13`, `Alpine:v3.20`, `Ubuntu:22.04:LTS`, `PyPI`) into
    /// the ecosystem and what follows its name; `None` for ecosystems not matched here.
    pub fn parse_osv(text: &str) -> Option<(Ecosystem, &str)> {
        let (name, rest) = text.split_once(':').unwrap_or((text, ""));
        Ecosystem::ALL.into_iter().find(|e| e.osv_name() == name).map(|e| (e, rest))
    }

    /// How its versions are ordered.
    pub fn scheme(self) -> Scheme {
        match self {
            Ecosystem::Debian | Ecosystem::Ubuntu => Scheme::Dpkg,
            Ecosystem::Alpine => Scheme::Apk,
            Ecosystem::RedHat | Ecosystem::Rocky | Ecosystem::AlmaLinux => Scheme::Rpm,
            Ecosystem::PyPI => Scheme::Pep440,
            Ecosystem::Npm | Ecosystem::CratesIo | Ecosystem::Go => Scheme::Semver,
        }
    }

    /// Names the ecosystem compares case-insensitively and with `-`, `_`, `.` alike (PEP 503).
    pub fn normalize_name(self, name: &str) -> String {
        match self {
            Ecosystem::PyPI => {
                let mut out = String::with_capacity(name.len());
                let mut sep = false;
                for c in name.chars() {
                    if matches!(c, '-' | '_' | '.') {
                        sep = true;
                    } else {
                        if sep && !out.is_empty() {
                            out.push('-');
                        }
                        sep = false;
                        out.extend(c.to_lowercase());
                    }
                }
                out
            }
            _ => name.to_owned(),
        }
    }
}

/// One installed package.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    pub ecosystem: Ecosystem,
    /// The distribution release as OSV names it (`13`, `v3.20`, `22.04`, `9`), for distribution
    /// packages whose image says which release it is.
    pub release: Option<String>,
    pub name: String,
    pub version: String,
    /// The source package (dpkg `Source:`, apk origin, rpm source rpm), which distribution
    /// advisories name; `None` when it is the package itself.
    pub source: Option<String>,
    /// The source package's version when it differs (a binNMU `+b1`).
    pub source_version: Option<String>,
    pub arch: Option<String>,
    /// The file it was found in, inside the image.
    pub location: String,
}

/// The operating system of an image, from `etc/os-release` (or `usr/lib/os-release`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsRelease {
    pub id: String,
    pub version_id: Option<String>,
    pub pretty_name: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub os: Option<OsRelease>,
    pub packages: Vec<Package>,
    /// What could not be read but does not make the inventory wrong for the rest (a broken
    /// Python distribution, a walk cut short).
    pub warnings: Vec<Diagnostic>,
}

/// Inventories the root filesystem at `root`.
pub fn inventory(root: &RootFs) -> Result<Inventory, Diagnostic> {
    let mut inv = Inventory { os: os_release(root)?, ..Inventory::default() };
    let os = inv.os.clone().unwrap_or_default();
    dpkg(root, &os, &mut inv.packages)?;
    apk(root, &os, &mut inv.packages)?;
    let eco = rpm_ecosystem(&os);
    for p in super::rpmdb::installed(root)? {
        inv.packages.push(Package {
            ecosystem: eco,
            release: release_for(eco, &os),
            name: p.name,
            version: p.evr,
            source: p.source,
            source_version: None,
            arch: p.arch,
            location: p.location.to_owned(),
        });
    }
    walk(root, &mut inv);
    let found = super::binaries::search(root);
    inv.warnings.extend(found.warnings);
    inv.packages.extend(found.packages.into_iter().map(|e| Package {
        ecosystem: match e.lang {
            super::binaries::Lang::Go => Ecosystem::Go,
            super::binaries::Lang::Cargo => Ecosystem::CratesIo,
        },
        release: None,
        name: e.name,
        version: e.version,
        source: None,
        source_version: None,
        arch: None,
        location: e.location,
    }));
    inv.packages.sort();
    inv.packages.dedup();
    Ok(inv)
}

fn os_release(root: &RootFs) -> Result<Option<OsRelease>, Diagnostic> {
    for rel in ["etc/os-release", "usr/lib/os-release"] {
        let Some(data) = root.read(rel, 64 << 10)? else { continue };
        let text = String::from_utf8_lossy(&data);
        let mut fields = BTreeMap::new();
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
                fields.insert(k.trim().to_owned(), v.to_owned());
            }
        }
        return Ok(Some(OsRelease {
            id: fields.get("ID").cloned().unwrap_or_else(|| "linux".into()),
            version_id: fields.get("VERSION_ID").cloned(),
            pretty_name: fields.get("PRETTY_NAME").cloned(),
        }));
    }
    Ok(None)
}

/// The release part of an OSV ecosystem for this image's OS, as each distribution's records
/// spell it.
pub(super) fn release_for(eco: Ecosystem, os: &OsRelease) -> Option<String> {
    let v = os.version_id.as_deref()?;
    let major_minor = || v.split('.').take(2).collect::<Vec<_>>().join(".");
    let major = || v.split('.').next().unwrap_or(v).to_owned();
    Some(match eco {
        Ecosystem::Alpine => format!("v{}", major_minor()),
        Ecosystem::Ubuntu => v.to_owned(),
        _ => major(),
    })
}

/// One `Key: value` stanza of a dpkg status or apk database, with the line each field is on.
struct Stanza<'a> {
    fields: Vec<(&'a str, &'a [u8], usize)>,
    line: usize,
}

impl<'a> Stanza<'a> {
    fn get(&self, key: &str) -> Option<(&'a [u8], usize)> {
        self.fields.iter().find(|(k, _, _)| k.eq_ignore_ascii_case(key)).map(|(_, v, l)| (*v, *l))
    }
}

/// Splits a database into stanzas (blank lines between them). `sep` is `:` for both formats;
/// dpkg continuation lines (starting with a space or tab) belong to the field above and are
/// not needed here.
fn stanzas(data: &[u8], apk_style: bool) -> Vec<Stanza<'_>> {
    let mut out = Vec::new();
    let mut cur = Stanza { fields: Vec::new(), line: 1 };
    for (n, line) in data.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            if !cur.fields.is_empty() {
                out.push(std::mem::replace(&mut cur, Stanza { fields: Vec::new(), line: n + 2 }));
            } else {
                cur.line = n + 2;
            }
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let Ok(key) = std::str::from_utf8(&line[..colon]) else { continue };
        let value = &line[colon + 1..];
        let value = if apk_style { value } else { value.trim_ascii() };
        cur.fields.push((key, value, n + 1));
    }
    if !cur.fields.is_empty() {
        out.push(cur);
    }
    out
}

fn text<'a>(root: &RootFs, rel: &str, field: &str, value: (&'a [u8], usize)) -> Result<&'a str, Diagnostic> {
    let s = std::str::from_utf8(value.0).map_err(|_| Diagnostic {
        path: root.shown(rel),
        line: value.1,
        col: 0,
        key: field.to_owned(),
        message: "is not UTF-8".into(),
    })?;
    if s.is_empty() || s.chars().any(char::is_control) {
        return Err(Diagnostic {
            path: root.shown(rel),
            line: value.1,
            col: 0,
            key: field.to_owned(),
            message: "is empty or holds control characters".into(),
        });
    }
    Ok(s)
}

fn required<'a>(root: &RootFs, rel: &str, st: &Stanza<'a>, field: &str) -> Result<&'a str, Diagnostic> {
    let value = st.get(field).ok_or_else(|| Diagnostic {
        path: root.shown(rel),
        line: st.line,
        col: 0,
        key: field.to_owned(),
        message: "missing from this package's entry".into(),
    })?;
    text(root, rel, field, value)
}

fn dpkg(root: &RootFs, os: &OsRelease, out: &mut Vec<Package>) -> Result<(), Diagnostic> {
    let eco = if os.id == "ubuntu" { Ecosystem::Ubuntu } else { Ecosystem::Debian };
    let mut files = vec!["var/lib/dpkg/status".to_owned()];
    if let Some(entries) = root.list("var/lib/dpkg/status.d")? {
        for (name, kind) in entries {
            if kind == Kind::File && !name.ends_with(".md5sums") {
                files.push(format!("var/lib/dpkg/status.d/{name}"));
            }
        }
    }
    for rel in files {
        let Some(data) = root.read(&rel, DB_MAX)? else { continue };
        for st in stanzas(&data, false) {
            if let Some(status) = st.get("Status") {
                let status = text(root, &rel, "Status", status)?;
                // "want flag status": only the last word says what is on disk.
                if matches!(status.rsplit(' ').next(), Some("not-installed" | "config-files")) {
                    continue;
                }
            }
            let name = required(root, &rel, &st, "Package")?;
            let version = required(root, &rel, &st, "Version")?;
            let (mut source, mut source_version) = (None, None);
            if let Some(v) = st.get("Source") {
                let v = text(root, &rel, "Source", v)?;
                match v.split_once(' ') {
                    Some((s, ver)) => {
                        source = Some(s.to_owned());
                        source_version = Some(ver.trim().trim_start_matches('(').trim_end_matches(')').to_owned());
                    }
                    None => source = Some(v.to_owned()),
                }
            }
            let arch = st.get("Architecture").map(|v| text(root, &rel, "Architecture", v)).transpose()?;
            out.push(Package {
                ecosystem: eco,
                release: release_for(eco, os),
                name: name.to_owned(),
                version: version.to_owned(),
                source: source.filter(|s| s != name),
                source_version: source_version.filter(|v| v != version),
                arch: arch.map(str::to_owned),
                location: rel.clone(),
            });
        }
    }
    Ok(())
}

fn apk(root: &RootFs, os: &OsRelease, out: &mut Vec<Package>) -> Result<(), Diagnostic> {
    let rel = "lib/apk/db/installed";
    let Some(data) = root.read(rel, DB_MAX)? else { return Ok(()) };
    for st in stanzas(&data, true) {
        let name = required(root, rel, &st, "P")?;
        let version = required(root, rel, &st, "V")?;
        let origin = st.get("o").map(|v| text(root, rel, "o", v)).transpose()?;
        let arch = st.get("A").map(|v| text(root, rel, "A", v)).transpose()?;
        out.push(Package {
            ecosystem: Ecosystem::Alpine,
            release: release_for(Ecosystem::Alpine, os),
            name: name.to_owned(),
            version: version.to_owned(),
            source: origin.filter(|o| *o != name).map(str::to_owned),
            source_version: None,
            arch: arch.map(str::to_owned),
            location: rel.to_owned(),
        });
    }
    Ok(())
}

/// The ecosystem of an rpm-based image's packages, from its os-release ID.
fn rpm_ecosystem(os: &OsRelease) -> Ecosystem {
    match os.id.as_str() {
        "rocky" => Ecosystem::Rocky,
        "almalinux" => Ecosystem::AlmaLinux,
        _ => Ecosystem::RedHat,
    }
}

/// Walks the image for language packages (see the module's table).
fn walk(root: &RootFs, inv: &mut Inventory) {
    let mut stack: Vec<(String, usize)> = vec![(String::new(), 0)];
    let mut seen = 0usize;
    while let Some((dir, depth)) = stack.pop() {
        seen += 1;
        if seen > WALK_MAX_DIRS {
            inv.warnings.push(
                root.error(&dir, format!("the walk for language packages stopped after {WALK_MAX_DIRS} directories")),
            );
            return;
        }
        let entries = match root.list(if dir.is_empty() { "." } else { &dir }) {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            Err(d) => {
                inv.warnings.push(d);
                continue;
            }
        };
        let base = dir.rsplit('/').next().unwrap_or("");
        let parent = dir.rsplit('/').nth(1).unwrap_or("");
        let in_site = matches!(base, "site-packages" | "dist-packages");
        let npm_package = base != "node_modules"
            && !base.starts_with('.')
            && (parent == "node_modules"
                || (parent.starts_with('@') && dir.rsplit('/').nth(2) == Some("node_modules")));
        if npm_package && entries.iter().any(|(n, k)| n == "package.json" && *k == Kind::File) {
            npm_package_json(root, &format!("{dir}/package.json"), inv);
        }
        for (name, kind) in entries.iter().rev() {
            let rel = if dir.is_empty() { name.clone() } else { format!("{dir}/{name}") };
            if in_site && (name.ends_with(".dist-info") || name.ends_with(".egg-info")) {
                let meta = match (kind, name.ends_with(".dist-info")) {
                    (Kind::Dir, true) => format!("{rel}/METADATA"),
                    (Kind::Dir, false) => format!("{rel}/PKG-INFO"),
                    (Kind::File, false) => rel.clone(),
                    _ => continue,
                };
                python_metadata(root, &meta, inv);
                continue;
            }
            if *kind != Kind::Dir || (depth == 0 && matches!(name.as_str(), "proc" | "sys" | "dev")) {
                continue;
            }
            if depth + 1 > WALK_MAX_DEPTH {
                inv.warnings.push(root.error(&rel, format!("deeper than {WALK_MAX_DEPTH} levels: not walked")));
                continue;
            }
            stack.push((rel, depth + 1));
        }
    }
}

/// A Python distribution's `METADATA` or `PKG-INFO`: the `Name:` and `Version:` headers.
fn python_metadata(root: &RootFs, rel: &str, inv: &mut Inventory) {
    let data = match root.read(rel, META_MAX) {
        Ok(Some(d)) => d,
        Ok(None) => return inv.warnings.push(root.error(rel, "missing: the distribution is not counted")),
        Err(d) => return inv.warnings.push(d),
    };
    let (mut name, mut version) = (None, None);
    for (n, line) in data.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            return inv.warnings.push(Diagnostic {
                path: root.shown(rel),
                line: n + 1,
                col: 0,
                key: String::new(),
                message: "is not UTF-8: the distribution is not counted".into(),
            });
        };
        if let Some(v) = line.strip_prefix("Name:") {
            name.get_or_insert(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("Version:") {
            version.get_or_insert(v.trim().to_owned());
        }
    }
    match (name, version) {
        (Some(name), Some(version)) if !name.is_empty() && !version.is_empty() => inv.packages.push(Package {
            ecosystem: Ecosystem::PyPI,
            release: None,
            name,
            version,
            source: None,
            source_version: None,
            arch: None,
            location: rel.to_owned(),
        }),
        _ => inv.warnings.push(root.error(rel, "has no Name: or Version: header: the distribution is not counted")),
    }
}

fn npm_package_json(root: &RootFs, rel: &str, inv: &mut Inventory) {
    #[derive(Deserialize)]
    struct Manifest {
        name: Option<String>,
        version: Option<String>,
    }
    let data = match root.read(rel, META_MAX) {
        Ok(Some(d)) => d,
        Ok(None) => return,
        Err(d) => return inv.warnings.push(d),
    };
    match serde_json::from_slice::<Manifest>(&data) {
        Ok(Manifest { name: Some(name), version: Some(version) }) if !name.is_empty() && !version.is_empty() => {
            inv.packages.push(Package {
                ecosystem: Ecosystem::Npm,
                release: None,
                name,
                version,
                source: None,
                source_version: None,
                arch: None,
                location: rel.to_owned(),
            })
        }
        Ok(_) => inv.warnings.push(root.error(rel, "has no name or version: the package is not counted")),
        Err(e) => inv.warnings.push(Diagnostic {
            path: root.shown(rel),
            line: e.line(),
            col: e.column(),
            key: String::new(),
            message: format!("is not valid JSON ({e}): the package is not counted"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pypi_names_are_normalized_as_pep_503_says() {
        assert_eq!(Ecosystem::PyPI.normalize_name("Foo__Bar.baz"), "foo-bar-baz");
        assert_eq!(Ecosystem::Npm.normalize_name("Foo_Bar"), "Foo_Bar");
    }

    #[test]
    fn osv_ecosystems_split_into_name_and_release() {
        assert_eq!(Ecosystem::parse_osv("Debian:13"), Some((Ecosystem::Debian, "13")));
        assert_eq!(
            Ecosystem::parse_osv("Red Hat:enterprise_linux:9::appstream"),
            Some((Ecosystem::RedHat, "enterprise_linux:9::appstream"))
        );
        assert_eq!(Ecosystem::parse_osv("crates.io"), Some((Ecosystem::CratesIo, "")));
        assert_eq!(Ecosystem::parse_osv("Maven"), None);
    }
}
