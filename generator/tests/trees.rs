//! Whole-tree golden tests, in the manner of zram-generator's test directories: each
//! `tests/trees/NN-case/` holds `input/` (a host's `etc/aicontainers`, `run/aicontainers` and
//! `usr/lib/aicontainers`, and `accounts`: `NAME:UID` lines) and `expected/`, the generator's
//! whole output directory (units, `.wants` links, the units of invalid services, what Quadlet
//! was given), compared byte for byte and link for link. The run is the generator's own
//! sequence (load, place, render, Quadlet, write) with podman's real Quadlet.
//!
//! `UPDATE_GOLDEN=1` rewrites `expected/`. Paths of the input tree are written as if it were
//! `/`, so `SourcePath=/etc/aicontainers/hello.toml`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use aicontainers::account::FixedAccounts;
use aicontainers::generate;
use aicontainers::host::HostGpus;
use aicontainers::quadlet::Quadlet;

const DIRS: [&str; 3] = ["usr/lib/aicontainers", "run/aicontainers", "etc/aicontainers"];

/// What a tree holds: relative path -> file contents or link target.
#[derive(Debug, PartialEq)]
enum Entry {
    File(String),
    Link(PathBuf),
}

fn read_tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for e in entries {
            let path = e.expect("entry").path();
            let rel = path.strip_prefix(root).expect("inside").to_path_buf();
            let meta = fs::symlink_metadata(&path).expect("stat");
            if meta.file_type().is_symlink() {
                out.insert(rel, Entry::Link(fs::read_link(&path).expect("readlink")));
            } else if meta.is_dir() {
                stack.push(path);
            } else {
                out.insert(rel, Entry::File(fs::read_to_string(&path).expect("utf-8 output")));
            }
        }
    }
    out
}

fn write_tree(root: &Path, tree: &BTreeMap<PathBuf, Entry>) {
    let _ = fs::remove_dir_all(root);
    for (rel, entry) in tree {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        match entry {
            Entry::File(text) => fs::write(&path, text).expect("write"),
            Entry::Link(target) => std::os::unix::fs::symlink(target, &path).expect("symlink"),
        }
    }
}

/// Runs the generator's sequence over `case/input` into a fresh directory; returns the output
/// tree with the input's location written as `/`.
fn generate(case: &Path, quadlet: &Quadlet) -> BTreeMap<PathBuf, Entry> {
    let input = case.join("input");
    let dirs: Vec<PathBuf> = DIRS.iter().map(|d| input.join(d)).collect();
    let specs: Vec<String> = fs::read_to_string(input.join("accounts"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let accounts = FixedAccounts::parse(&specs).expect("accounts file");
    // No GPU host here: placement (tested over real topologies in core/tests/placement.rs)
    // reads nothing unless a service asks for GPUs.
    let gpus = HostGpus::from_xml(Path::new("/nonexistent"));
    let names = aicontainers::names::UnitNames::under(&input);
    let mut loaded = generate::load_with(&dirs, &accounts, &names);
    gpus.place(&mut loaded);
    let plan = generate::render(loaded, quadlet.version);
    let out = tempfile::tempdir().expect("tempdir");
    generate::write_units(plan, out.path(), quadlet, Path::new("/usr/bin/aictl")).expect("writes");
    let prefix = input.to_str().expect("utf-8 path").to_owned();
    // Quadlet's own header names its binary: written as where podman installs it.
    let quadlet_path = quadlet.path.to_str().expect("utf-8 path").to_owned();
    read_tree(out.path())
        .into_iter()
        .map(|(rel, e)| {
            let e = match e {
                Entry::File(t) => {
                    Entry::File(t.replace(&prefix, "").replace(&quadlet_path, "/usr/libexec/podman/quadlet"))
                }
                Entry::Link(l) => Entry::Link(PathBuf::from(l.to_string_lossy().replace(&prefix, ""))),
            };
            (rel, e)
        })
        .collect()
}

#[test]
#[cfg_attr(
    not(have_quadlet),
    ignore = "needs podman's Quadlet (5.x): set AICONTAINERS_QUADLET=$(tests/vm/vm quadlet), as tests/run-all does"
)]
fn every_tree_generates_exactly_its_expected_output() {
    let quadlet = Quadlet::find().expect("AICONTAINERS_QUADLET runs");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/trees");
    let mut cases: Vec<PathBuf> = fs::read_dir(&root).expect("tests/trees").map(|e| e.expect("entry").path()).collect();
    cases.sort();
    assert!(cases.len() >= 5, "the trees are missing from {}", root.display());
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for case in &cases {
        let got = generate(case, &quadlet);
        let expected_dir = case.join("expected");
        if update {
            write_tree(&expected_dir, &got);
            continue;
        }
        let want = read_tree(&expected_dir);
        let name = case.file_name().expect("name").to_string_lossy().into_owned();
        for path in want.keys().chain(got.keys()).collect::<std::collections::BTreeSet<_>>() {
            match (want.get(path), got.get(path)) {
                (Some(w), Some(g)) if w == g => {}
                (Some(w), Some(g)) => {
                    failures.push(format!("{name}: {} differs:\n--- expected\n{w:?}\n+++ got\n{g:?}", path.display()))
                }
                (Some(_), None) => failures.push(format!("{name}: {} was not generated", path.display())),
                (None, Some(_)) => failures.push(format!("{name}: {} was generated, not expected", path.display())),
                (None, None) => unreachable!(),
            }
        }
    }
    assert!(failures.is_empty(), "{} (UPDATE_GOLDEN=1 rewrites expected/)", failures.join("\n\n"));
}
