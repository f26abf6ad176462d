//! Findings from trivy's and grype's JSON reports, in the shape of our own, for sites that
//! run one of them already (`trivy image --format json`, schema 2; `grype -o json`).
//!
//! Ecosystems are named as OSV names them (trivy's result type or grype's artifact type, with
//! the distribution's release where the report gives one). The severity is the word each tool
//! gives; a fix is the first fixed version it lists, null when it lists none.

use serde_json::Value;

use super::inventory::{Ecosystem, OsRelease};
use super::osv::{Finding, Severity};

/// Which tool wrote a report, from its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Trivy,
    Grype,
}

pub fn detect(doc: &Value) -> Option<Tool> {
    if doc.get("SchemaVersion").is_some() && doc.get("ArtifactName").is_some() {
        Some(Tool::Trivy)
    } else if doc.get("matches").is_some_and(Value::is_array) && doc.get("descriptor").is_some() {
        Some(Tool::Grype)
    } else {
        None
    }
}

/// The findings of a trivy or grype JSON report.
pub fn findings(doc: &Value) -> Result<Vec<Finding>, String> {
    let mut out = match detect(doc) {
        Some(Tool::Trivy) => trivy(doc),
        Some(Tool::Grype) => grype(doc),
        None => {
            return Err(
                "neither a trivy (SchemaVersion, ArtifactName) nor a grype (matches, descriptor) JSON report".into()
            )
        }
    };
    out.sort();
    out.dedup();
    Ok(out)
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// An OSV ecosystem name for a distribution id and version (`debian`, `10.1` -> `Debian:10`).
fn distro_ecosystem(id: &str, version: Option<&str>) -> Option<String> {
    let eco = match id.to_ascii_lowercase().as_str() {
        "debian" => Ecosystem::Debian,
        "ubuntu" => Ecosystem::Ubuntu,
        "alpine" => Ecosystem::Alpine,
        "redhat" | "rhel" | "centos" => Ecosystem::RedHat,
        "rocky" => Ecosystem::Rocky,
        "alma" | "almalinux" => Ecosystem::AlmaLinux,
        _ => return None,
    };
    let os = OsRelease { id: id.to_owned(), version_id: version.map(str::to_owned), pretty_name: None };
    Some(match super::inventory::release_for(eco, &os) {
        Some(r) => format!("{}:{r}", eco.osv_name()),
        None => eco.osv_name().to_owned(),
    })
}

fn language_ecosystem(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "python-pkg" | "pip" | "pipenv" | "poetry" | "python" => "PyPI",
        "node-pkg" | "npm" | "yarn" | "pnpm" => "npm",
        "cargo" | "rust-crate" | "rust-binary" => "crates.io",
        "gomod" | "gobinary" | "go-module" => "Go",
        _ => return None,
    })
}

fn trivy(doc: &Value) -> Vec<Finding> {
    let os = doc.pointer("/Metadata/OS");
    let distro = os.and_then(|o| distro_ecosystem(s(o, "Family")?, s(o, "Name")));
    let mut out = Vec::new();
    for result in doc.get("Results").and_then(Value::as_array).into_iter().flatten() {
        let kind = s(result, "Type").unwrap_or("");
        let ecosystem = if s(result, "Class") == Some("os-pkgs") {
            distro.clone().or_else(|| distro_ecosystem(kind, None))
        } else {
            language_ecosystem(kind).map(str::to_owned)
        }
        .unwrap_or_else(|| kind.to_owned());
        for v in result.get("Vulnerabilities").and_then(Value::as_array).into_iter().flatten() {
            let (Some(id), Some(package), Some(installed)) =
                (s(v, "VulnerabilityID"), s(v, "PkgName"), s(v, "InstalledVersion"))
            else {
                continue;
            };
            let aliases = v
                .get("VendorIDs")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
            out.push(Finding {
                id: id.to_owned(),
                aliases,
                package: package.to_owned(),
                ecosystem: ecosystem.clone(),
                installed: installed.to_owned(),
                // "1.2, 1.3" lists one fix per branch: the first is the nearest.
                fixed: s(v, "FixedVersion").map(|f| f.split(',').next().unwrap_or(f).trim().to_owned()),
                severity: s(v, "Severity").and_then(Severity::from_word).unwrap_or(Severity::Unknown),
            });
        }
    }
    out
}

fn grype(doc: &Value) -> Vec<Finding> {
    let distro = doc.get("distro").and_then(|d| distro_ecosystem(s(d, "name")?, s(d, "version")));
    let mut out = Vec::new();
    for m in doc.get("matches").and_then(Value::as_array).into_iter().flatten() {
        let (Some(v), Some(a)) = (m.get("vulnerability"), m.get("artifact")) else { continue };
        let (Some(id), Some(package), Some(installed)) = (s(v, "id"), s(a, "name"), s(a, "version")) else { continue };
        let kind = s(a, "type").unwrap_or("");
        let ecosystem = match kind {
            "deb" | "rpm" | "apk" => distro.clone(),
            k => language_ecosystem(k).map(str::to_owned),
        }
        .unwrap_or_else(|| kind.to_owned());
        let fixed = v
            .pointer("/fix/versions")
            .and_then(Value::as_array)
            .and_then(|f| f.first())
            .and_then(Value::as_str)
            .map(str::to_owned);
        let aliases = m
            .get("relatedVulnerabilities")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(|x| s(x, "id")).filter(|x| *x != id).map(str::to_owned).collect())
            .unwrap_or_default();
        out.push(Finding {
            id: id.to_owned(),
            aliases,
            package: package.to_owned(),
            ecosystem,
            installed: installed.to_owned(),
            fixed,
            severity: s(v, "severity").and_then(Severity::from_word).unwrap_or(Severity::Unknown),
        });
    }
    out
}
