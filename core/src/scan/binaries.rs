//! Language packages compiled into executables: the modules a Go binary embeds
//! ([`super::gobuild`]) and the crates a Rust binary built with `cargo auditable` lists
//! ([`super::auditable`]).
//!
//! Where: the regular files directly in the image's top directory (`/app`, `/manager` of
//! `FROM scratch` images) and every regular file up to [`SEARCH_DEPTH`] levels below the
//! directories of [`SEARCH_DIRS`], where programs are installed. A search directory that is a
//! link is skipped (a merged `/usr`'s `bin` is `usr/bin`, walked anyway); links below are not
//! followed, and every file is opened as [`RootFs::open_regular`] does (no FIFO, no device).
//! Libraries under `usr/lib` are not searched: a Python or CUDA image holds tens of thousands
//! of files there, and Go programs are not installed there.
//!
//! Cost: what is read of a file is its first 64 bytes; of an ELF file also its section header
//! table and section names (at most [`elf::TABLE_MAX`] each, a few KiB in practice) and the one
//! section that holds the metadata (at most [`SECTION_MAX`]); never the whole file.

use super::auditable;
use super::elf;
use super::gobuild::{self, Parsed};
use super::rootfs::{Kind, RootFs};
use crate::diag::Diagnostic;

/// Where programs are installed, searched recursively.
pub const SEARCH_DIRS: [&str; 13] = [
    "bin",
    "sbin",
    "usr/bin",
    "usr/sbin",
    "usr/local/bin",
    "usr/local/sbin",
    "usr/libexec",
    "usr/local/libexec",
    "usr/local/go/bin",
    "usr/local/go/pkg/tool",
    "opt",
    "app",
    "ko-app",
];
/// How deep below a search directory files are looked at (`opt/VENDOR/PRODUCT/bin/x` is 3).
pub const SEARCH_DEPTH: usize = 4;
/// The most read of one metadata section (a Go binary's build information and a compressed
/// cargo-auditable list are a few KiB).
pub const SECTION_MAX: u64 = 4 << 20;
/// The most files opened in one search: past it the search stops with a warning.
pub const SEARCH_MAX_FILES: usize = 1_000_000;

/// The language whose packages a binary embeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// Go modules (and `stdlib`, the standard library).
    Go,
    /// Crates from crates.io.
    Cargo,
}

/// One package compiled into a binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Embedded {
    pub lang: Lang,
    pub name: String,
    pub version: String,
    /// The binary, inside the image.
    pub location: String,
}

/// What the search found: the packages, and a warning for each binary whose metadata cannot
/// be read.
#[derive(Debug, Default)]
pub struct Found {
    pub packages: Vec<Embedded>,
    pub warnings: Vec<Diagnostic>,
}

/// The packages of the executables the search finds (see the module's notes).
pub fn search(root: &RootFs) -> Found {
    let mut inv = Found::default();
    let mut files = Vec::new();
    match root.list(".") {
        Ok(Some(entries)) => files.extend(entries.into_iter().filter(|(_, k)| *k == Kind::File).map(|(n, _)| n)),
        Ok(None) => {}
        Err(d) => inv.warnings.push(d),
    }
    'search: for dir in SEARCH_DIRS {
        if root.is_link(dir) {
            continue;
        }
        let mut stack = vec![(dir.to_owned(), 0usize)];
        while let Some((dir, depth)) = stack.pop() {
            if files.len() > SEARCH_MAX_FILES {
                break 'search;
            }
            let entries = match root.list(&dir) {
                Ok(Some(e)) => e,
                Ok(None) => continue,
                Err(d) => {
                    inv.warnings.push(d);
                    continue;
                }
            };
            for (name, kind) in entries {
                let rel = format!("{dir}/{name}");
                match kind {
                    Kind::File => files.push(rel),
                    Kind::Dir if depth < SEARCH_DEPTH => stack.push((rel, depth + 1)),
                    _ => {}
                }
            }
        }
    }
    files.sort();
    files.dedup();
    if files.len() > SEARCH_MAX_FILES {
        inv.warnings.push(
            root.error(".", format!("more than {SEARCH_MAX_FILES} files to look at for binaries: only the first are")),
        );
        files.truncate(SEARCH_MAX_FILES);
    }
    for rel in files {
        if let Err(message) = binary(root, &rel, &mut inv) {
            inv.warnings.push(root.error(&rel, format!("{message}: its packages are not counted")));
        }
    }
    inv
}

/// One file: nothing when it is not an ELF file or holds no metadata this reads.
fn binary(root: &RootFs, rel: &str, inv: &mut Found) -> Result<(), String> {
    let file = match root.open_regular(rel) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(()),
        Err(d) => return Err(d.message),
    };
    let len = file.metadata().map_err(|e| format!("cannot stat: {e}"))?.len();
    if len < 64 || !elf::is_elf(&elf::read_at(&file, len, 0, 4)?) {
        return Ok(());
    }
    let sections = elf::sections(&file, len)?;
    if let Some(s) = sections.iter().find(|s| s.name == ".go.buildinfo") {
        let bytes = elf::read_section(&file, len, s, SECTION_MAX)?;
        match gobuild::parse_section(&bytes).map_err(|e| format!("Go build information: {e}"))? {
            Some(Parsed::Modern(info)) => go_packages(rel, &info, inv),
            Some(Parsed::PointerFormat) => inv.warnings.push(root.error(
                rel,
                "was built by Go before 1.18, whose build information this does not read: its modules are not counted",
            )),
            None => {}
        }
    }
    if let Some(s) = sections.iter().find(|s| s.name == ".dep-v0") {
        let bytes = elf::read_section(&file, len, s, SECTION_MAX)?;
        for c in auditable::parse(&bytes)? {
            inv.packages.push(Embedded {
                lang: Lang::Cargo,
                name: c.name,
                version: c.version,
                location: rel.to_owned(),
            });
        }
    }
    Ok(())
}

/// The Go packages of one binary: the standard library (as OSV's `stdlib`, at the
/// toolchain's version), the main module when it has a version, and every dependency as linked
/// (a replacement by a local directory has no version and is not counted).
fn go_packages(rel: &str, info: &gobuild::BuildInfo, inv: &mut Found) {
    let mut push = |name: &str, version: String| {
        inv.packages.push(Embedded { lang: Lang::Go, name: name.to_owned(), version, location: rel.to_owned() })
    };
    if let Some(v) = gobuild::toolchain_semver(&info.go_version) {
        push("stdlib", v);
    }
    for m in info.main.iter().chain(&info.deps) {
        if m.version.starts_with('v') {
            push(&m.path, m.version.clone());
        }
    }
}
