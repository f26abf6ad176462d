//! An inventory as a CycloneDX 1.5 JSON SBOM, and back.
//!
//! Each component carries a package URL (purl) and, as `aicontainers:*` properties, what a
//! rescan needs that a purl does not say plainly (the OSV ecosystem and release, the source
//! package, where it was found). Reading accepts SBOMs from other tools too (trivy, syft):
//! a component without those properties is read from its purl (`pkg:deb/debian/...?distro=debian-12&upstream=...`).
//! The output is deterministic: components sorted, no timestamp, no serial number.

use serde_json::{json, Value};

use super::inventory::{Ecosystem, Inventory, OsRelease, Package};

pub const SPEC_VERSION: &str = "1.5";
const P_ECOSYSTEM: &str = "aicontainers:ecosystem";
const P_RELEASE: &str = "aicontainers:release";
const P_SOURCE: &str = "aicontainers:source";
const P_SOURCE_VERSION: &str = "aicontainers:source-version";
const P_LOCATION: &str = "aicontainers:location";

/// Percent-encodes all but the characters purl leaves as they are.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn dec(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 3 <= b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The package URL of a package.
pub fn purl(p: &Package, os: Option<&OsRelease>) -> String {
    let distro = os.map(|o| match &o.version_id {
        Some(v) => format!("{}-{v}", o.id),
        None => o.id.clone(),
    });
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(a) = &p.arch {
        q.push(("arch", a.clone()));
    }
    let (ty, ns) = match p.ecosystem {
        Ecosystem::Debian => ("deb", Some("debian")),
        Ecosystem::Ubuntu => ("deb", Some("ubuntu")),
        Ecosystem::Alpine => ("apk", Some("alpine")),
        Ecosystem::RedHat => ("rpm", Some("redhat")),
        Ecosystem::Rocky => ("rpm", Some("rocky")),
        Ecosystem::AlmaLinux => ("rpm", Some("almalinux")),
        Ecosystem::PyPI => ("pypi", None),
        Ecosystem::Npm => ("npm", None),
        Ecosystem::CratesIo => ("cargo", None),
        Ecosystem::Go => ("golang", None),
    };
    if ns.is_some() {
        if let Some(d) = distro {
            q.push(("distro", d));
        }
        if let Some(s) = &p.source {
            q.push(("upstream", s.clone()));
        }
    }
    let name = match p.ecosystem {
        Ecosystem::PyPI => enc(&Ecosystem::PyPI.normalize_name(&p.name)),
        // A scoped npm name's scope is the namespace.
        Ecosystem::Npm | Ecosystem::Go => p.name.split('/').map(enc).collect::<Vec<_>>().join("/"),
        _ => enc(&p.name),
    };
    let mut out = format!("pkg:{ty}/");
    if let Some(ns) = ns {
        out.push_str(ns);
        out.push('/');
    }
    out.push_str(&name);
    out.push('@');
    out.push_str(&enc(&p.version));
    for (k, (key, v)) in q.iter().enumerate() {
        out.push(if k == 0 { '?' } else { '&' });
        out.push_str(key);
        out.push('=');
        out.push_str(&enc(v));
    }
    out
}

/// The SBOM of an inventory. `subject` names what was inventoried (an image digest, a path).
pub fn to_cyclonedx(inv: &Inventory, subject: &str) -> Value {
    let components: Vec<Value> = inv
        .packages
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let mut props = vec![json!({"name": P_ECOSYSTEM, "value": p.ecosystem.osv_name()})];
            if let Some(r) = &p.release {
                props.push(json!({"name": P_RELEASE, "value": r}));
            }
            if let Some(s) = &p.source {
                props.push(json!({"name": P_SOURCE, "value": s}));
            }
            if let Some(v) = &p.source_version {
                props.push(json!({"name": P_SOURCE_VERSION, "value": v}));
            }
            props.push(json!({"name": P_LOCATION, "value": p.location}));
            json!({
                "type": "library",
                "bom-ref": format!("component-{k}"),
                "name": p.name,
                "version": p.version,
                "purl": purl(p, inv.os.as_ref()),
                "properties": props,
            })
        })
        .collect();
    let mut metadata = json!({
        "tools": {"components": [{"type": "application", "name": "aictl", "version": env!("CARGO_PKG_VERSION")}]},
        "component": {"type": "container", "bom-ref": "subject", "name": subject},
    });
    if let Some(os) = &inv.os {
        let mut c = json!({"type": "operating-system", "bom-ref": "os", "name": os.id});
        if let Some(v) = &os.version_id {
            c["version"] = json!(v);
        }
        metadata["component"]["components"] = json!([c]);
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "version": 1,
        "metadata": metadata,
        "components": components,
    })
}

/// The packages of a CycloneDX JSON SBOM (ours, or another tool's: see the module's notes).
/// Components this cannot place in an OSV ecosystem are counted in the second value.
pub fn from_cyclonedx(doc: &Value) -> Result<(Vec<Package>, usize), String> {
    if doc.get("bomFormat").and_then(Value::as_str) != Some("CycloneDX") {
        return Err("not a CycloneDX document (no \"bomFormat\": \"CycloneDX\")".into());
    }
    let mut out = Vec::new();
    let mut skipped = 0;
    let mut stack: Vec<&Value> =
        doc.get("components").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
    while let Some(c) = stack.pop() {
        if let Some(nested) = c.get("components").and_then(Value::as_array) {
            stack.extend(nested);
        }
        match component(c) {
            Some(p) => out.push(p),
            None => skipped += 1,
        }
    }
    out.sort();
    out.dedup();
    Ok((out, skipped))
}

/// One CycloneDX component as a package, or None when it names none. Long because it reads two
/// shapes: our own properties, else another tool's purl, whose types map each to its fields.
fn component(c: &Value) -> Option<Package> {
    let prop = |name: &str| -> Option<String> {
        c.get("properties")?
            .as_array()?
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))?
            .get("value")?
            .as_str()
            .map(str::to_owned)
    };
    let name = c.get("name")?.as_str()?.to_owned();
    let version = c.get("version")?.as_str()?.to_owned();
    if name.is_empty() || version.is_empty() {
        return None;
    }
    if let Some(eco) = prop(P_ECOSYSTEM).and_then(|e| Ecosystem::parse_osv(&e).map(|(e, _)| e)) {
        return Some(Package {
            ecosystem: eco,
            release: prop(P_RELEASE),
            name,
            version,
            source: prop(P_SOURCE),
            source_version: prop(P_SOURCE_VERSION),
            arch: None,
            location: prop(P_LOCATION).unwrap_or_default(),
        });
    }
    // Another tool's SBOM: what the purl says.
    let purl = c.get("purl")?.as_str()?;
    let rest = purl.strip_prefix("pkg:")?;
    let (rest, _subpath) = rest.split_once('#').unwrap_or((rest, ""));
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let ty = path.split('/').next()?;
    let ns = path.split('/').nth(1).filter(|_| path.split('/').count() > 2).map(dec);
    let qual = |k: &str| query.split('&').find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')).map(dec);
    let distro = qual("distro");
    let release_of = |eco: Ecosystem| {
        let d = distro.as_deref()?;
        let v = d.rsplit_once('-').map_or(d, |(_, v)| v);
        let os = OsRelease { id: String::new(), version_id: Some(v.to_owned()), pretty_name: None };
        super::inventory::release_for(eco, &os)
    };
    let eco = match (ty, ns.as_deref()) {
        ("deb", Some("ubuntu")) => Ecosystem::Ubuntu,
        ("deb", _) => Ecosystem::Debian,
        ("apk", _) => Ecosystem::Alpine,
        ("rpm", Some("rocky")) => Ecosystem::Rocky,
        ("rpm", Some("almalinux")) => Ecosystem::AlmaLinux,
        ("rpm", _) => Ecosystem::RedHat,
        ("pypi", _) => Ecosystem::PyPI,
        ("npm", _) => Ecosystem::Npm,
        ("cargo", _) => Ecosystem::CratesIo,
        ("golang", _) => Ecosystem::Go,
        _ => return None,
    };
    let distro_pkg = matches!(ty, "deb" | "apk" | "rpm");
    // purl puts an rpm epoch in a qualifier; trivy names the source package in a property.
    let version = match qual("epoch") {
        Some(e) if ty == "rpm" && !version.contains(':') => format!("{e}:{version}"),
        _ => version,
    };
    let source = qual("upstream").or_else(|| prop("aquasecurity:trivy:SrcName")).map(|u| match eco.scheme() {
        super::version::Scheme::Rpm => super::rpmdb::source_name(&u).map(str::to_owned).unwrap_or(u),
        _ => u,
    });
    // An npm component of another tool may carry its scope in "group".
    let name = match (ty, c.get("group").and_then(Value::as_str)) {
        ("npm", Some(g)) if !g.is_empty() && !name.starts_with('@') => format!("{g}/{name}"),
        _ => name,
    };
    Some(Package {
        ecosystem: eco,
        release: if distro_pkg { release_of(eco) } else { None },
        source: source.filter(|s| *s != name),
        name,
        version,
        source_version: None,
        arch: qual("arch"),
        location: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_encode_what_purl_says() {
        let p = Package {
            ecosystem: Ecosystem::Debian,
            release: Some("13".into()),
            name: "libc6".into(),
            version: "1:2.41-12+deb13u1".into(),
            source: Some("glibc".into()),
            source_version: None,
            arch: Some("amd64".into()),
            location: String::new(),
        };
        let os = OsRelease { id: "debian".into(), version_id: Some("13".into()), pretty_name: None };
        assert_eq!(
            purl(&p, Some(&os)),
            "pkg:deb/debian/libc6@1%3A2.41-12%2Bdeb13u1?arch=amd64&distro=debian-13&upstream=glibc"
        );
        let n = Package {
            ecosystem: Ecosystem::Npm,
            name: "@types/node".into(),
            version: "1.0.0".into(),
            release: None,
            source: None,
            source_version: None,
            arch: None,
            location: String::new(),
        };
        assert_eq!(purl(&n, None), "pkg:npm/%40types/node@1.0.0");
        assert_eq!(dec("1%3A2.41%2B"), "1:2.41+");
        assert_eq!(dec("100%"), "100%");
        assert_eq!(dec("%zz"), "%zz");
    }
}
