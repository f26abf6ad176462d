//! The dependency list `cargo auditable` embeds in a Rust executable: the `.dep-v0` section,
//! zlib-compressed JSON of the form
//!
//! ```json
//! {"packages": [{"name": "serde", "version": "1.0.200", "source": "crates.io",
//!                "kind": "build", "dependencies": [1], "root": false}]}
//! ```
//!
//! `kind` is `runtime` (the default) or `build` (used only to build, not linked in); `source` is
//! `crates.io`, `git`, `local`, `registry` or `other`. What is kept: the runtime packages from
//! crates.io, the only ones crates.io advisories speak of (a local crate or a git fork of the
//! same name is another crate). Decompression stops at [`JSON_MAX`] bytes: a small section
//! that inflates without end (a zip bomb) is refused after that much.

use std::io::Read as _;

use serde::Deserialize;

/// The most JSON inflated from one section (cargo-auditable's own reader stops at 8 MiB).
pub const JSON_MAX: u64 = 8 << 20;

/// A crate from crates.io linked into a binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crate {
    pub name: String,
    pub version: String,
}

#[derive(Deserialize)]
struct Doc {
    packages: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    version: String,
    #[serde(default)]
    source: serde_json::Value,
    #[serde(default)]
    kind: Option<String>,
}

/// The crates.io runtime packages of a `.dep-v0` section's bytes.
pub fn parse(section: &[u8]) -> Result<Vec<Crate>, String> {
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(section)
        .take(JSON_MAX + 1)
        .read_to_end(&mut json)
        .map_err(|e| format!("the cargo-auditable dependency list cannot be inflated: {e}"))?;
    if json.len() as u64 > JSON_MAX {
        return Err(format!("the cargo-auditable dependency list inflates to more than {JSON_MAX} bytes: refused"));
    }
    let doc: Doc = serde_json::from_slice(&json).map_err(|e| format!("the cargo-auditable dependency list: {e}"))?;
    let mut out = Vec::new();
    for p in doc.packages {
        if p.source != "crates.io" || p.kind.as_deref().is_some_and(|k| k != "runtime") {
            continue;
        }
        let bad = |s: &str| s.is_empty() || s.chars().any(|c| c.is_control() || c == ' ');
        if bad(&p.name) || bad(&p.version) {
            return Err(format!(
                "the cargo-auditable dependency list names a bad package {:?} {:?}",
                p.name, p.version
            ));
        }
        out.push(Crate { name: p.name, version: p.version });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(data).expect("compress");
        z.finish().expect("compress")
    }

    #[test]
    fn crates_io_runtime_packages_are_kept() {
        let doc = br#"{"packages":[
            {"name":"adler","version":"1.0.2","source":"crates.io"},
            {"name":"cc","version":"1.0.90","source":"crates.io","kind":"build"},
            {"name":"forked","version":"0.1.0","source":"git"},
            {"name":"app","version":"0.1.0","source":"local","dependencies":[0,1,2],"root":true},
            {"name":"rt","version":"2.0.0-rc.1","source":"crates.io","kind":"runtime","extra":1}],"format":1}"#;
        let got = parse(&zlib(doc)).expect("parse");
        let names: Vec<_> = got.iter().map(|c| format!("{} {}", c.name, c.version)).collect();
        assert_eq!(names, ["adler 1.0.2", "rt 2.0.0-rc.1"]);
    }

    #[test]
    fn bombs_truncations_and_bad_json_are_refused() {
        // 64 MiB of spaces inflate from about 64 KiB: refused after 8 MiB.
        let bomb = zlib(&vec![b' '; 64 << 20]);
        assert!(bomb.len() < 1 << 20);
        assert!(parse(&bomb).unwrap_err().contains("more than"));
        let good = zlib(br#"{"packages":[{"name":"a","version":"1.0.0","source":"crates.io"}]}"#);
        for n in 0..good.len() {
            assert!(parse(&good[..n]).is_err(), "cut at {n}");
        }
        assert!(parse(b"not zlib").is_err());
        assert!(parse(&zlib(b"{\"packages\": 5}")).is_err());
        assert!(parse(&zlib(b"\xff\xfe")).is_err());
        let ctl = zlib(br#"{"packages":[{"name":"a\u001b[31m","version":"1.0.0","source":"crates.io"}]}"#);
        assert!(parse(&ctl).unwrap_err().contains("bad package"));
    }
}
