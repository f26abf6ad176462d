//! The cost of an image rescan: a cached 500-package SBOM against 50,000 OSV records in a
//! directory (the target: 1 s), with the advisories cached as `aictl scan
//! --advisory-cache` and the agent keep them (parsed once per change of the directory); the
//! cost of that parse; and an inventory against a plain read of the same files.
//!
//!     cargo bench -p aicontainers --bench scan
//!
//! It asserts nothing (targets are read, not tested). The records are generated: 10 % name a
//! package of the SBOM (with ranges that affect it or not), the rest other packages of the
//! same and other ecosystems, as a real OSV export mostly does.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aicontainers::scan::inventory::{self, Ecosystem, Inventory, Package};
use aicontainers::scan::osv::Index;
use aicontainers::scan::rootfs::RootFs;
use aicontainers::scan::sbom;
use serde_json::json;

const PACKAGES: usize = 500;
const RECORDS: usize = 50_000;

fn report(what: &str, mut times: Vec<f64>) {
    times.sort_by(f64::total_cmp);
    println!(
        "{what}: median {:.1} ms, min {:.1} ms, max {:.1} ms over {} runs",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        times.len()
    );
}

fn packages() -> Vec<Package> {
    (0..PACKAGES)
        .map(|k| Package {
            ecosystem: if k % 5 == 0 { Ecosystem::PyPI } else { Ecosystem::Debian },
            release: (k % 5 != 0).then(|| "13".to_owned()),
            name: format!("pkg{k}"),
            version: if k % 5 == 0 {
                format!("{}.{}.0", k % 7, k % 11)
            } else {
                format!("1:{}.{}-{}+deb13u1", k % 7, k % 11, k % 3)
            },
            source: None,
            source_version: None,
            arch: None,
            location: "var/lib/dpkg/status".into(),
        })
        .collect()
}

fn write_records(dir: &Path) {
    let ecosystems = ["Debian:13", "Debian:12", "PyPI", "npm", "Alpine:v3.20", "Ubuntu:24.04:LTS"];
    for k in 0..RECORDS {
        let (eco, name) = if k % 10 == 0 {
            let p = (k / 10) % PACKAGES;
            (if p % 5 == 0 { "PyPI" } else { "Debian:13" }, format!("pkg{p}"))
        } else {
            (ecosystems[k % ecosystems.len()], format!("other{k}"))
        };
        let fixed = if eco == "PyPI" { format!("{}.{}.1", k % 9, k % 13) } else { format!("1:{}.{}-1", k % 9, k % 13) };
        let r = json!({
            "id": format!("TEST-{k}"),
            "modified": "2026-01-01T00:00:00Z",
            "aliases": [format!("CVE-2026-{k}")],
            "summary": "a generated advisory of about the size of a real one",
            "details": "x".repeat(600),
            "affected": [{
                "package": {"ecosystem": eco, "name": name},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
                "ecosystem_specific": {"urgency": "medium"},
            }],
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
        });
        let sub = dir.join(format!("{:02}", k % 100));
        fs::create_dir_all(&sub).expect("mkdir");
        fs::write(sub.join(format!("TEST-{k}.json")), serde_json::to_vec(&r).expect("json")).expect("write");
    }
}

fn main() {
    let tmp = tempfile::tempdir().expect("tmp");
    let adv = tmp.path().join("advisories");
    write_records(&adv);
    let inv = Inventory { packages: packages(), ..Inventory::default() };
    let cached = serde_json::to_vec(&sbom::to_cyclonedx(&inv, "bench")).expect("sbom");
    println!("{} packages in a {} KiB SBOM, {RECORDS} records", PACKAGES, cached.len() / 1024);

    // After the advisories changed: every record is parsed (and the cache written).
    let cache = tmp.path().join("advisories.cache.json");
    let mut cold = Vec::new();
    for _ in 0..3 {
        let _ = fs::remove_file(&cache);
        let t0 = Instant::now();
        let index = Index::load_dir_cached(&adv, &cache).expect("load");
        cold.push(t0.elapsed().as_secs_f64() * 1e3);
        assert_eq!(index.len(), RECORDS);
    }
    report("parse 50,000 records and write the cache (after the advisories change)", cold);

    // A rescan: the cached SBOM, the directory's fingerprint, the cached advisories, the match.
    let (mut load, mut matching, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut found = 0;
    for _ in 0..5 {
        let t0 = Instant::now();
        let doc: serde_json::Value = serde_json::from_slice(&cached).expect("json");
        let (pkgs, _) = sbom::from_cyclonedx(&doc).expect("sbom");
        let index = Index::load_dir_cached(&adv, &cache).expect("load");
        let t1 = Instant::now();
        let (findings, _) = index.matches(&pkgs);
        let t2 = Instant::now();
        found = findings.len();
        assert_eq!(index.len(), RECORDS);
        load.push((t1 - t0).as_secs_f64() * 1e3);
        matching.push((t2 - t1).as_secs_f64() * 1e3);
        total.push((t2 - t0).as_secs_f64() * 1e3);
    }
    println!("{found} findings");
    report("read the SBOM, fingerprint the directory, read the cached advisories", load);
    report("match 500 packages", matching);
    report("rescan in all (target 1000 ms)", total);

    // Inventory against a plain read of the same files: this machine's dpkg status and 2,000
    // Python distributions.
    let root = tmp.path().join("root");
    let site = root.join("usr/lib/python3/dist-packages");
    for k in 0..2_000 {
        let d = site.join(format!("dist{k}-1.0.dist-info"));
        fs::create_dir_all(&d).expect("mkdir");
        fs::write(
            d.join("METADATA"),
            format!("Metadata-Version: 2.1\nName: dist{k}\nVersion: 1.0\n\n{}", "d".repeat(2000)),
        )
        .expect("write");
    }
    fs::create_dir_all(root.join("var/lib/dpkg")).expect("mkdir");
    if fs::copy("/var/lib/dpkg/status", root.join("var/lib/dpkg/status")).is_err() {
        println!("note: no /var/lib/dpkg/status here: Python distributions only");
    }
    let (mut inv_t, mut read_t) = (Vec::new(), Vec::new());
    let mut n = 0;
    for _ in 0..5 {
        let t0 = Instant::now();
        let fs_root = RootFs::open(&root).expect("root");
        n = inventory::inventory(&fs_root).expect("inventory").packages.len();
        inv_t.push(t0.elapsed().as_secs_f64() * 1e3);
        let t0 = Instant::now();
        let mut bytes = fs::read(root.join("var/lib/dpkg/status")).map(|d| d.len()).unwrap_or(0);
        for e in fs::read_dir(&site).expect("site") {
            bytes += fs::read(e.expect("entry").path().join("METADATA")).expect("read").len();
        }
        std::hint::black_box(bytes);
        read_t.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    println!("inventory: {n} packages");
    report("inventory (walk + parse)", inv_t);
    report("plain read of the same files", read_t);
    binaries();
}

/// The search for Go and Rust binaries over this machine's own root (its program directories),
/// against listing the same directories and reading the first 64 bytes of each file.
fn binaries() {
    use aicontainers::scan::binaries::{self, SEARCH_DEPTH, SEARCH_DIRS};
    use std::io::Read as _;
    let host = RootFs::open(Path::new("/")).expect("/");
    let (mut search_t, mut plain_t) = (Vec::new(), Vec::new());
    let (mut found, mut files) = (0, 0);
    for _ in 0..5 {
        let t0 = Instant::now();
        found = binaries::search(&host).packages.len();
        search_t.push(t0.elapsed().as_secs_f64() * 1e3);
        let t0 = Instant::now();
        files = 0;
        let mut stack: Vec<(PathBuf, usize)> =
            SEARCH_DIRS.iter().map(|d| (Path::new("/").join(d), 0)).filter(|(p, _)| !p.is_symlink()).collect();
        stack.push((PathBuf::from("/"), SEARCH_DEPTH));
        while let Some((dir, depth)) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let Ok(ft) = e.file_type() else { continue };
                if ft.is_dir() && depth < SEARCH_DEPTH {
                    stack.push((e.path(), depth + 1));
                } else if ft.is_file() {
                    let mut head = [0u8; 64];
                    if let Ok(mut f) = fs::File::open(e.path()) {
                        files += 1;
                        std::hint::black_box(f.read(&mut head).ok());
                    }
                }
            }
        }
        plain_t.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    println!("binaries: {files} files in this machine's program directories, {found} Go/Rust packages");
    report("search for binaries' packages (this machine's /)", search_t);
    report("list the same directories, read 64 bytes of each file", plain_t);
}
