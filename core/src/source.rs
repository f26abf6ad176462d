//! Finding service files and layering them the systemd way.
//!
//! Three directories, lowest priority first: `/usr/lib/aicontainers` (the distribution or a
//! package), `/run/aicontainers` (runtime, lost at reboot), `/etc/aicontainers` (the sysadmin).
//! A `NAME.toml` in a higher directory replaces the one below it whole; a `NAME.toml` that is a
//! symlink to `/dev/null` masks the service. Drop-ins in `NAME.toml.d/*.toml`, from every
//! directory, are applied in file-name order; a drop-in of the same file name in a higher
//! directory replaces the lower one, and a `/dev/null` link masks it.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::diag::Diagnostic;
use crate::doc::{self, Value};
use crate::spec::{self, Service};

/// The directories the generator reads, lowest priority first.
pub const SYSTEM_DIRS: [&str; 3] = ["/usr/lib/aicontainers", "/run/aicontainers", "/etc/aicontainers"];

/// The files that make up one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceFiles {
    pub name: String,
    pub main: PathBuf,
    pub drop_ins: Vec<PathBuf>,
}

#[derive(Debug, Default)]
pub struct Discovery {
    /// Services by name (sorted, so everything downstream is deterministic).
    pub services: Vec<ServiceFiles>,
    /// Masked services: name and the masking link.
    pub masked: Vec<(String, PathBuf)>,
    /// Files that could not be taken into account at all (bad names, unreadable directories).
    pub problems: Vec<Diagnostic>,
}

/// A link to `/dev/null` (directly, or through further links) masks, as for units.
fn is_masked(path: &Path) -> bool {
    fs::read_link(path).is_ok_and(|target| target == Path::new("/dev/null"))
        || fs::canonicalize(path).is_ok_and(|target| target == Path::new("/dev/null"))
}

/// One directory entry, with its type from readdir (no extra stat for plain files).
struct DirItem {
    name: String,
    path: PathBuf,
    file_type: Option<fs::FileType>,
}

impl DirItem {
    fn is_dir(&self) -> bool {
        match self.file_type {
            Some(t) if t.is_symlink() => self.path.is_dir(),
            Some(t) => t.is_dir(),
            None => self.path.is_dir(),
        }
    }

    fn is_masked(&self) -> bool {
        self.file_type.is_none_or(|t| t.is_symlink()) && is_masked(&self.path)
    }
}

/// Lists `dir`, sorted by name, tolerating its absence (most hosts have no /usr/lib/aicontainers).
fn entries(dir: &Path, problems: &mut Vec<Diagnostic>) -> Vec<DirItem> {
    match fs::read_dir(dir) {
        Ok(rd) => {
            let mut out: Vec<DirItem> = rd
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = match e.file_name().into_string() {
                        Ok(name) => name,
                        Err(raw) => {
                            // Reported, not skipped: it looks like a service file to the sysadmin.
                            let bytes = raw.as_encoded_bytes();
                            if bytes.ends_with(b".toml") || bytes.ends_with(b".toml.d") {
                                problems.push(Diagnostic::file(
                                    e.path(),
                                    "the file name is not UTF-8, so it names no service: rename it",
                                ));
                            }
                            return None;
                        }
                    };
                    (!name.starts_with('.')).then(|| DirItem { path: e.path(), file_type: e.file_type().ok(), name })
                })
                .collect();
            out.sort_by(|a, b| a.name.cmp(&b.name));
            out
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory => Vec::new(),
        Err(e) => {
            problems.push(Diagnostic::file(dir, format!("cannot read directory: {e}")));
            Vec::new()
        }
    }
}

/// Finds every service in `dirs` (lowest priority first).
pub fn discover<P: AsRef<Path>>(dirs: &[P]) -> Discovery {
    let mut out = Discovery::default();
    // name -> main file, highest priority wins; walk from the top down.
    let mut mains: BTreeMap<String, (PathBuf, bool)> = BTreeMap::new();
    // Directories holding NAME.toml.d/, so that only existing drop-in directories are read.
    let mut drop_in_dirs: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for dir in dirs.iter().rev() {
        for item in entries(dir.as_ref(), &mut out.problems) {
            if let Some(name) = item.name.strip_suffix(".toml.d") {
                if item.is_dir() {
                    drop_in_dirs.entry(name.to_owned()).or_default().push(item.path);
                }
                continue;
            }
            let Some(name) = item.name.strip_suffix(".toml") else { continue };
            if mains.contains_key(name) {
                continue;
            }
            if let Err(why) = spec::check_service_name(name) {
                out.problems.push(Diagnostic::file(&item.path, why));
                continue;
            }
            if item.is_dir() {
                out.problems.push(Diagnostic::file(&item.path, "is a directory, expected a service file"));
                continue;
            }
            let masked = item.is_masked();
            mains.insert(name.to_owned(), (item.path, masked));
        }
    }
    for (name, (main, masked)) in mains {
        if masked {
            out.masked.push((name, main));
            continue;
        }
        let drop_ins = drop_in_dirs.get(&name).map(|d| drop_ins(d, &mut out.problems)).unwrap_or_default();
        out.services.push(ServiceFiles { name, main, drop_ins });
    }
    out
}

/// Drop-ins from `dirs` (highest priority first): by file name, the highest wins.
fn drop_ins(dirs: &[PathBuf], problems: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let mut by_name: BTreeMap<String, DirItem> = BTreeMap::new();
    for dir in dirs {
        for item in entries(dir, problems) {
            if item.name.chars().any(char::is_control) {
                problems
                    .push(Diagnostic::file(&item.path, "a drop-in name must not contain control characters; ignored"));
                continue;
            }
            if item.name.ends_with(".toml") && !by_name.contains_key(&item.name) {
                by_name.insert(item.name.clone(), item);
            }
        }
    }
    by_name.into_values().filter(|item| !item.is_masked()).map(|item| item.path).collect()
}

fn read(path: &Path) -> Result<String, Diagnostic> {
    crate::fsutil::read_config(path).map_err(|why| Diagnostic::file(path, why))
}

/// Reads, layers and checks one service. Every problem in every layer is returned.
pub fn load(files: &ServiceFiles) -> Result<Service, Vec<Diagnostic>> {
    load_layers(&files.name, &files.main, &files.drop_ins, false)
}

/// Checks a single file on its own, as `aictl validate` does: a full service file, or with
/// `drop_in` a partial one whose missing keys are left to the files below it.
pub fn check_file(path: &Path, drop_in: bool) -> Result<Service, Vec<Diagnostic>> {
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("service");
    load_layers(name, path, &[], drop_in)
}

fn load_layers(name: &str, main: &Path, drop_ins: &[PathBuf], partial: bool) -> Result<Service, Vec<Diagnostic>> {
    let (root, mut diags) = merged(main, drop_ins);
    let Some(root) = root else { return Err(diags) };
    let Value::Table(table) = &root.value else { unreachable!("a document is a table") };
    match spec::from_table(name, main.to_owned(), drop_ins.to_vec(), table, &root.origin, partial) {
        Ok(service) if diags.is_empty() => Ok(service),
        Ok(_) => Err(diags),
        Err(more) => {
            diags.extend(more);
            Err(diags)
        }
    }
}

/// The main file with its drop-ins merged over it, and what could not be read or parsed.
fn merged(main: &Path, drop_ins: &[PathBuf]) -> (Option<doc::Node>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let parsed = read(main).and_then(|text| doc::parse(main, text));
    let mut root = match parsed {
        Ok(node) => Some(node),
        Err(d) => {
            diags.push(d);
            None
        }
    };
    for path in drop_ins {
        match read(path).and_then(|text| doc::parse(path, text)) {
            Ok(node) => {
                if let (Some(root), Value::Table(upper)) = (root.as_mut(), node.value) {
                    if let Value::Table(lower) = &mut root.value {
                        doc::merge(lower, upper);
                    }
                }
            }
            Err(d) => diags.push(d),
        }
    }
    (root, diags)
}

/// Whether the files ask to start at boot (`service.enable = true`), read from every layer
/// that parses even when the service is invalid: an invalid service that asks to start at boot
/// gets its failing unit started at boot, so that it shows up as failed.
pub fn asks_enable(files: &ServiceFiles) -> bool {
    let mut root = doc::Table::new();
    for path in std::iter::once(&files.main).chain(&files.drop_ins) {
        if let Ok(doc::Node { value: Value::Table(upper), .. }) = read(path).and_then(|text| doc::parse(path, text)) {
            doc::merge(&mut root, upper);
        }
    }
    let Some(Value::Table(service)) = root.get("service").map(|e| &e.node.value) else { return false };
    matches!(service.get("enable").map(|e| &e.node.value), Some(Value::Boolean(true)))
}

/// The models a service names, even when the rest of its files has mistakes: what `aictl model
/// gc` must keep. Fails only when a file cannot be parsed or a `[[model]]` is itself wrong.
pub fn models(files: &ServiceFiles) -> Result<Vec<spec::Model>, Vec<Diagnostic>> {
    let (root, diags) = merged(&files.main, &files.drop_ins);
    match root {
        Some(doc::Node { value: Value::Table(table), .. }) if diags.is_empty() => spec::models_only(&table),
        _ => Err(diags),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const GOOD: &str = "[service]\nimage = \"localhost/a:1\"\nrun-as = \"aimodels\"\n";

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }

    #[test]
    fn etc_overrides_usr_and_dev_null_masks() {
        let t = tempfile::tempdir().expect("tempdir");
        let (usr, run, etc) = (t.path().join("usr"), t.path().join("run"), t.path().join("etc"));
        write(&usr.join("a.toml"), GOOD);
        write(&etc.join("a.toml"), GOOD);
        write(&usr.join("b.toml"), GOOD);
        write(&run.join("c.toml"), GOOD);
        fs::create_dir_all(&etc).expect("mkdir");
        symlink("/dev/null", etc.join("c.toml")).expect("symlink");
        write(&etc.join("README"), "not a service");
        let found = discover(&[&usr, &run, &etc]);
        let names: Vec<_> = found.services.iter().map(|s| (s.name.as_str(), s.main.clone())).collect();
        assert_eq!(names, vec![("a", etc.join("a.toml")), ("b", usr.join("b.toml"))]);
        assert_eq!(found.masked, vec![("c".to_owned(), etc.join("c.toml"))]);
        assert!(found.problems.is_empty(), "{:?}", found.problems);
    }

    #[test]
    fn drop_ins_from_all_dirs_in_name_order_with_same_name_override() {
        let t = tempfile::tempdir().expect("tempdir");
        let (usr, etc) = (t.path().join("usr"), t.path().join("etc"));
        write(&etc.join("a.toml"), GOOD);
        write(&usr.join("a.toml.d/10-mem.toml"), "[resources]\nmemory = \"1G\"\n");
        write(&usr.join("a.toml.d/20-img.toml"), "[service]\nimage = \"localhost/usr:1\"\n");
        write(&etc.join("a.toml.d/20-img.toml"), "[service]\nimage = \"localhost/etc:1\"\n");
        write(&etc.join("a.toml.d/30-off.toml"), "[service]\nimage = \"localhost/masked:1\"\n");
        fs::create_dir_all(usr.join("a.toml.d")).expect("mkdir");
        let found = discover(&[&usr, &etc]);
        assert_eq!(
            found.services[0].drop_ins,
            vec![usr.join("a.toml.d/10-mem.toml"), etc.join("a.toml.d/20-img.toml"), etc.join("a.toml.d/30-off.toml")]
        );
        fs::remove_file(etc.join("a.toml.d/30-off.toml")).expect("rm");
        symlink("/dev/null", etc.join("a.toml.d/30-off.toml")).expect("symlink");
        let found = discover(&[&usr, &etc]);
        let service = load(&found.services[0]).expect("valid");
        assert_eq!(service.image, "localhost/etc:1");
        assert_eq!(service.resources.memory.as_deref(), Some("1G"));
    }

    #[test]
    fn a_bad_name_is_reported_and_others_still_found() {
        let t = tempfile::tempdir().expect("tempdir");
        write(&t.path().join("bad name.toml"), GOOD);
        write(&t.path().join("good.toml"), GOOD);
        let found = discover(&[t.path()]);
        assert_eq!(found.services.len(), 1);
        assert_eq!(found.problems.len(), 1);
        assert!(found.problems[0].to_string().contains("bad name.toml"));
    }

    #[test]
    fn errors_in_a_drop_in_name_the_drop_in() {
        let t = tempfile::tempdir().expect("tempdir");
        write(&t.path().join("a.toml"), GOOD);
        write(&t.path().join("a.toml.d/x.toml"), "[service]\n\nimagee = \"x\"\n");
        let found = discover(&[t.path()]);
        let err = load(&found.services[0]).unwrap_err();
        assert_eq!(err.len(), 1);
        let d = &err[0];
        assert_eq!(
            (d.path.clone(), d.line, d.col, d.key.as_str()),
            (t.path().join("a.toml.d/x.toml"), 3, 1, "service.imagee")
        );
        assert!(d.message.contains("did you mean `image`?"), "{d}");
    }
}
