//! Unit names that already belong to something else, so that a service file cannot take them.
//!
//! The generator writes `NAME.service` into `/run/systemd/generator`, which systemd ranks below
//! `/etc/systemd/system` and `/run/systemd/system` and above the packaged unit directories and
//! `/run/systemd/generator.late`. So, for a service `NAME`:
//! - a packaged unit or alias (`/usr/lib`, `/lib`, `/usr/local/lib/systemd/system`) would be
//!   replaced by ours: refused;
//! - a unit or alias of the sysadmin's (`/etc/systemd/system`, `/run/systemd/system`) wins over
//!   ours, which would be silently unused: a warning, and no unit (a link to `/dev/null` there is
//!   `systemctl mask NAME`, which is left to do its work without a word); an alias there that
//!   points at another unit is that unit's name: refused;
//! - podman's own Quadlet writes its units into the same directory as we do, so a Quadlet file
//!   that produces `NAME.service` races with ours: refused. Quadlet reads (podman 5.4,
//!   `cmd/quadlet/main.go`, system scope) `/run/containers/systemd`, `/etc/containers/systemd`
//!   (not its `users/` subtree) and `/usr/share/containers/systemd`, with every subdirectory
//!   except `*.d` drop-in directories, and names units `X.container` and `X.kube` → `X.service`,
//!   `X.volume` → `X-volume.service`, `X.network` → `X-network.service`, `X.pod` →
//!   `X-pod.service`, `X.image` → `X-image.service`, `X.build` → `X-build.service`, or the
//!   `ServiceName=` its group sets;
//! - an init script `/etc/init.d/NAME` becomes `NAME.service` through systemd-sysv-generator,
//!   in the late directory, which ours would replace: refused.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Packaged units: ours would replace them.
pub const PACKAGED_DIRS: &[&str] = &["/usr/lib/systemd/system", "/lib/systemd/system", "/usr/local/lib/systemd/system"];
/// The sysadmin's units: they win over ours.
pub const ADMIN_DIRS: &[&str] = &["/etc/systemd/system", "/run/systemd/system"];
/// Quadlet's search directories at system scope, highest priority first.
pub const QUADLET_DIRS: &[&str] =
    &["/run/containers/systemd", "/etc/containers/systemd", "/usr/share/containers/systemd"];
/// Quadlet's per-user files, which the system-scope Quadlet skips.
const QUADLET_USERS: &str = "/etc/containers/systemd/users";
/// SysV init scripts, made into units by systemd-sysv-generator.
pub const INIT_DIR: &str = "/etc/init.d";

/// Quadlet file types and the suffix each adds to its unit name (`cmd/quadlet/main.go`,
/// `pkg/systemd/quadlet/quadlet.go`), with the group whose `ServiceName=` replaces the name.
const QUADLET_TYPES: &[(&str, &str, &str)] = &[
    ("container", "", "Container"),
    ("kube", "", "Kube"),
    ("volume", "-volume", "Volume"),
    ("network", "-network", "Network"),
    ("pod", "-pod", "Pod"),
    ("image", "-image", "Image"),
    ("build", "-build", "Build"),
];

/// What already has a unit name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A packaged unit or alias, which a generated unit would replace.
    Packaged,
    /// The sysadmin's own unit, which systemd uses instead of ours.
    Admin,
    /// An alias (a link in a unit directory) of another unit, named here.
    Alias(String),
    /// A podman Quadlet file that makes a unit of this name.
    Quadlet,
    /// A SysV init script.
    InitScript,
}

/// A unit name that is taken, and by which file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    pub path: PathBuf,
    pub owner: Owner,
}

impl Taken {
    /// Whether the service still gets no unit but only a warning: the sysadmin's own unit wins.
    pub fn is_warning(&self) -> bool {
        self.owner == Owner::Admin
    }

    /// The diagnostic message for the service file that wants the name.
    pub fn message(&self, unit: &str) -> String {
        let path = self.path.display();
        match &self.owner {
            Owner::Packaged => format!(
                "{path} already exists, so no unit is generated for this service (it would replace that one): rename the file"
            ),
            Owner::Admin => format!(
                "{path} exists and systemd uses it instead of a generated {unit}, so none is generated: remove one of them"
            ),
            Owner::Alias(target) => format!(
                "{path} makes {unit} another name of {target}, so no unit is generated for this service: rename the file"
            ),
            Owner::Quadlet => format!(
                "podman's Quadlet makes {unit} from {path}, so no unit is generated for this service (the two would replace each other): rename one of them"
            ),
            Owner::InitScript => format!(
                "the init script {path} is {unit} (systemd-sysv-generator), so no unit is generated for this service (it would replace that one): rename the file"
            ),
        }
    }
}

/// The names taken on one system, looked up below `root` (`/` on the host; tests and the agent
/// pass another).
#[derive(Debug, Default)]
pub struct UnitNames {
    root: Option<PathBuf>,
    /// Unit names made by Quadlet files, with the file (highest priority first).
    quadlet: BTreeMap<String, PathBuf>,
}

impl UnitNames {
    /// Nothing is taken (rendering files for another machine).
    pub fn none() -> Self {
        UnitNames::default()
    }

    /// The names taken on the system below `root`. Reads Quadlet's directories now.
    pub fn under(root: &Path) -> Self {
        let mut names = UnitNames { root: Some(root.to_owned()), quadlet: BTreeMap::new() };
        let users = names.path(QUADLET_USERS);
        for dir in QUADLET_DIRS {
            let dir = names.path(dir);
            let mut seen = Vec::new();
            quadlet_files(&dir, &users, 0, &mut seen, &mut |file, unit| {
                names.quadlet.entry(unit).or_insert(file);
            });
        }
        names
    }

    fn path(&self, absolute: &str) -> PathBuf {
        match &self.root {
            Some(root) => root.join(absolute.trim_start_matches('/')),
            None => PathBuf::from(absolute),
        }
    }

    /// Who has `NAME.service`, if anyone. `name` is a valid service name.
    pub fn taken(&self, name: &str) -> Option<Taken> {
        self.root.as_ref()?;
        let unit = format!("{name}.service");
        for dir in ADMIN_DIRS {
            let path = self.path(dir).join(&unit);
            if let Ok(meta) = path.symlink_metadata() {
                if meta.file_type().is_symlink() {
                    let target = fs::read_link(&path).unwrap_or_default();
                    if target == Path::new("/dev/null") {
                        return None; // `systemctl mask NAME`: the sysadmin's choice, and systemd says so.
                    }
                    match target.file_name().and_then(|n| n.to_str()) {
                        Some(other) if other != unit && other.contains('.') => {
                            return Some(Taken { path, owner: Owner::Alias(other.to_owned()) })
                        }
                        _ => {}
                    }
                }
                return Some(Taken { path, owner: Owner::Admin });
            }
        }
        if let Some(path) = self.quadlet.get(&unit) {
            return Some(Taken { path: path.clone(), owner: Owner::Quadlet });
        }
        for dir in PACKAGED_DIRS {
            let path = self.path(dir).join(&unit);
            if path.symlink_metadata().is_ok() {
                return Some(Taken { path, owner: Owner::Packaged });
            }
        }
        let script = self.path(INIT_DIR).join(name);
        if script.is_file() {
            return Some(Taken { path: script, owner: Owner::InitScript });
        }
        None
    }
}

/// Calls `found(file, unit name)` for every Quadlet file below `dir`, as Quadlet walks it:
/// links followed, each directory once, `*.d` and `skip` left out.
fn quadlet_files(
    dir: &Path,
    skip: &Path,
    depth: usize,
    seen: &mut Vec<PathBuf>,
    found: &mut dyn FnMut(PathBuf, String),
) {
    let Ok(real) = fs::canonicalize(dir) else { return };
    if depth > 32 || seen.contains(&real) || dir == skip || dir.extension().is_some_and(|e| e == "d") {
        return;
    }
    seen.push(real);
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            quadlet_files(&path, skip, depth + 1, seen, found);
            continue;
        }
        let (Some(stem), Some(ext)) =
            (path.file_stem().and_then(|s| s.to_str()), path.extension().and_then(|e| e.to_str()))
        else {
            continue;
        };
        let Some((_, suffix, group)) = QUADLET_TYPES.iter().find(|(e, _, _)| *e == ext) else { continue };
        let unit = service_name(&path, group).unwrap_or_else(|| format!("{stem}{suffix}"));
        found(path, format!("{unit}.service"));
    }
}

/// The `ServiceName=` a Quadlet file sets in `[group]`, if any (read as any file of ours is:
/// regular files only, capped).
fn service_name(path: &Path, group: &str) -> Option<String> {
    let text = crate::fsutil::read_config(path).ok()?;
    let header = format!("[{group}]");
    let mut in_group = false;
    let mut name = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_group = line == header;
        } else if let (true, Some((key, value))) = (in_group, line.split_once('=')) {
            if key.trim() == "ServiceName" && !value.trim().is_empty() {
                name = Some(value.trim().to_owned());
            }
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn touch(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }

    #[test]
    fn every_kind_of_owner_is_found_and_named() {
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path();
        touch(&r.join("usr/lib/systemd/system/ssh.service"), "");
        touch(&r.join("etc/systemd/system/mine.service"), "");
        fs::create_dir_all(r.join("run/systemd/system")).expect("mkdir");
        symlink("/dev/null", r.join("run/systemd/system/masked.service")).expect("link");
        symlink("/usr/lib/systemd/system/ssh.service", r.join("run/systemd/system/sshd.service")).expect("link");
        touch(&r.join("etc/containers/systemd/web.container"), "[Container]\nImage=x\n");
        touch(&r.join("etc/containers/systemd/sub/dir/data.volume"), "[Volume]\n");
        touch(&r.join("usr/share/containers/systemd/p.pod"), "[Pod]\n");
        touch(&r.join("run/containers/systemd/renamed.container"), "[Container]\nServiceName=chosen\n");
        touch(&r.join("etc/containers/systemd/users/1000/personal.container"), "[Container]\n");
        touch(&r.join("etc/containers/systemd/web.container.d/override.container"), "");
        touch(&r.join("etc/init.d/legacy"), "#!/bin/sh\n");
        let names = UnitNames::under(r);
        let owner = |n: &str| names.taken(n).map(|t| t.owner);
        assert_eq!(owner("ssh"), Some(Owner::Packaged));
        assert_eq!(owner("mine"), Some(Owner::Admin));
        assert_eq!(owner("masked"), None);
        assert_eq!(owner("sshd"), Some(Owner::Alias("ssh.service".into())));
        assert_eq!(owner("web"), Some(Owner::Quadlet));
        assert_eq!(owner("data-volume"), Some(Owner::Quadlet));
        assert_eq!(owner("data"), None);
        assert_eq!(owner("p-pod"), Some(Owner::Quadlet));
        assert_eq!(owner("chosen"), Some(Owner::Quadlet));
        assert_eq!(owner("renamed"), None);
        assert_eq!(owner("personal"), None, "the users/ subtree is Quadlet's per-user files");
        assert_eq!(owner("override"), None, "drop-in directories are not searched");
        assert_eq!(owner("legacy"), Some(Owner::InitScript));
        assert_eq!(owner("free"), None);
        let web = names.taken("web").expect("taken");
        assert!(web.message("web.service").contains("etc/containers/systemd/web.container"), "{web:?}");
        assert!(names.taken("mine").is_some_and(|t| t.is_warning()));
        assert!(UnitNames::none().taken("ssh").is_none());
    }
}
