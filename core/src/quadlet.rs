//! Running the installed podman's Quadlet on the files we render, and finishing its units.
//!
//! Quadlet is itself a systemd generator. We run it on a private directory
//! (`QUADLET_UNIT_DIRS` replaces its search path), so the units have exactly the semantics of the
//! installed podman, then adjust the two things that must differ for our units: `SourcePath=`
//! names the sysadmin's TOML file, and the container-id file lives in the account's runtime
//! directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::render::PodmanVersion;
use crate::unit::{check, escape, Kind, UnitWriter};

/// Where distributions install Quadlet (`$libexecdir/podman/quadlet`).
pub const SEARCH_PATH: &[&str] = &[
    "/usr/libexec/podman/quadlet",
    "/usr/lib/podman/quadlet",
    "/usr/local/libexec/podman/quadlet",
    "/usr/local/lib/podman/quadlet",
];

#[derive(Clone, Debug)]
pub struct Quadlet {
    pub path: PathBuf,
    pub version: PodmanVersion,
}

impl Quadlet {
    /// Finds Quadlet (`$AICONTAINERS_QUADLET` first) and asks its version.
    pub fn find() -> Result<Self, String> {
        Self::ask_version()?.wait()
    }

    pub fn at(path: PathBuf) -> Result<Self, String> {
        Self::ask(path)?.wait()
    }

    /// Finds Quadlet and starts asking its version, without waiting for the answer: the
    /// generator reads the service files meanwhile.
    pub fn ask_version() -> Result<Pending, String> {
        let candidates: Vec<PathBuf> = std::env::var_os("AICONTAINERS_QUADLET")
            .map(PathBuf::from)
            .into_iter()
            .chain(SEARCH_PATH.iter().map(PathBuf::from))
            .collect();
        let path = candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
            format!(
                "podman's Quadlet was not found (looked in {}); install podman 4.4 or later",
                SEARCH_PATH.join(", ")
            )
        })?;
        Self::ask(path)
    }

    fn ask(path: PathBuf) -> Result<Pending, String> {
        let child = Command::new(&path)
            .arg("-version")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
        Ok(Pending { path, child })
    }
}

/// A Quadlet whose version is being asked.
#[derive(Debug)]
pub struct Pending {
    path: PathBuf,
    child: Child,
}

impl Pending {
    pub fn wait(self) -> Result<Quadlet, String> {
        let Pending { path, child } = self;
        let out = child.wait_with_output().map_err(|e| format!("cannot run {}: {e}", path.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = PodmanVersion::parse(&text)
            .ok_or_else(|| format!("{} -version printed no version: {text:?}", path.display()))?;
        if version < PodmanVersion::MIN {
            return Err(format!("podman {version} is too old: Quadlet needs podman {} or later", PodmanVersion::MIN));
        }
        Ok(Quadlet { path, version })
    }
}

impl Quadlet {
    /// Runs Quadlet (system scope) on the `.container` files in `input`, writing units to
    /// `output`. Returns what it said: it exits 1 when any file failed, and still writes the rest.
    pub fn run(&self, input: &Path, output: &Path) -> Result<String, String> {
        let out = Command::new(&self.path)
            .arg("-no-kmsg-log")
            .arg(output)
            .env("QUADLET_UNIT_DIRS", input)
            .env_remove("SYSTEMD_SCOPE")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.path.display()))?;
        let mut said = String::from_utf8_lossy(&out.stderr).into_owned();
        said.push_str(&String::from_utf8_lossy(&out.stdout));
        Ok(said)
    }
}

/// Adjusts a unit Quadlet wrote from our `.container` file: `SourcePath=` to the service's own
/// file, and the container-id file from `%t` (`/run`, root's) to the account's runtime dir.
/// `header` becomes the first comment line. Both go through the unit writer's rules
/// ([`crate::unit`]); a source path that cannot be written as a value leaves no `SourcePath=`.
pub fn finish_unit(unit: &str, source: &Path, runtime_dir: &str, header: &str) -> String {
    let mut head = UnitWriter::new();
    head.comment(header);
    let header = head.finish().unwrap_or_default();
    let source = source.to_string_lossy();
    let source = check(Kind::Text, &source).is_ok().then(|| escape(Kind::Text, &source));
    let mut out = String::with_capacity(unit.len() + header.len() + 64);
    out.push_str(&header);
    for line in unit.lines() {
        if line.starts_with("SourcePath=") {
            let Some(source) = &source else { continue };
            out.push_str("SourcePath=");
            out.push_str(source);
        } else if line.starts_with("Exec") {
            out.push_str(&line.replace("%t/%N.cid", &format!("{runtime_dir}/%N.cid")));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_moves_source_and_cid_file_only() {
        let unit = "[Unit]\nSourcePath=/run/x/in/a.container\n[Service]\nExecStart=/usr/bin/podman run --cidfile=%t/%N.cid --name a img\nExecStop=/usr/bin/podman rm -v -f -i --cidfile=%t/%N.cid\nEnvironment=T=%t/%N.cid\n";
        let done = finish_unit(unit, Path::new("/etc/aicontainers/a.toml"), "/run/user/990", "h");
        assert_eq!(
            done,
            "# h\n[Unit]\nSourcePath=/etc/aicontainers/a.toml\n[Service]\nExecStart=/usr/bin/podman run --cidfile=/run/user/990/%N.cid --name a img\nExecStop=/usr/bin/podman rm -v -f -i --cidfile=/run/user/990/%N.cid\nEnvironment=T=%t/%N.cid\n"
        );
    }
}
