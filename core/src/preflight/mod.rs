//! Preflight: what would make a GPU service fail to start, found before podman runs, each with a
//! stable id, the file, device or value involved, and the command that fixes it.
//!
//! Every check reads the host through one root directory ([`Host`]): `/` on a live host, a fixture
//! tree in tests and with `aictl preflight --root DIR`. A check that cannot run says `skipped` and
//! why; it never says `ok` for what it did not look at. No check needs NVML or talks to another
//! process: the unit runs them as `ExecStartPre=` (see [`unit_command`]), before podman, so they
//! must be quick (tests/bench/preflight).
//!
//! The families, one module each: [`cdi`] (the specs podman will resolve the service's devices
//! from), [`driver`] (the NVIDIA kernel driver and user-space stack), [`selinux`], [`rootless`]
//! (the account and cgroups) and [`podman`]. [`CATALOGUE`] lists every id; man
//! aicontainers-preflight(7) describes each one.

pub mod cdi;
pub mod driver;
pub mod podman;
pub mod record;
pub mod rootless;
pub mod selinux;

use std::fmt;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::podman::PodmanVersion;

/// What a finding means for the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Skipped: the check could not run here; the message says why.
    Skipped,
    /// Reported; the start goes on.
    Warning,
    /// Stops the start.
    Error,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::Skipped => "skipped",
            Status::Warning => "warning",
            Status::Error => "error",
        })
    }
}

/// One outcome of one check: the shape of `aictl preflight --json` (documented as stable).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub service: String,
    pub id: &'static str,
    pub status: Status,
    /// Names the file, device or value involved.
    pub message: String,
    /// The command or edit that fixes it; empty for `ok` and `skipped`.
    pub fix: String,
}

/// A check id, what it stops, and what it is about (the man page says more).
#[derive(Clone, Copy, Debug)]
pub struct CheckInfo {
    pub id: &'static str,
    /// The status it reports when it finds its problem.
    pub severity: Status,
    pub summary: &'static str,
}

const fn info(id: &'static str, severity: Status, summary: &'static str) -> CheckInfo {
    CheckInfo { id, severity, summary }
}

/// Every check, in the order they run.
pub const CATALOGUE: &[CheckInfo] = &[
    info("cdi.no-spec", Status::Error, "no CDI spec declares the kind of a requested device"),
    info("cdi.unknown-device", Status::Error, "a requested device is not in the specs of its kind"),
    info("cdi.duplicate-device", Status::Error, "a requested device is in two specs of one directory"),
    info("cdi.shadowed-device", Status::Warning, "a requested device is in both /etc/cdi and /var/run/cdi"),
    info("cdi.unsupported-version", Status::Error, "a spec's cdiVersion is newer than podman's CDI library reads"),
    info("cdi.unreadable-spec", Status::Error, "the service account cannot read a spec"),
    info("cdi.invalid-spec", Status::Error, "a spec cannot be parsed"),
    info("cdi.stale-driver", Status::Error, "a spec was generated for another NVIDIA driver than the loaded one"),
    info("cdi.missing-mount-source", Status::Error, "a spec mounts a host path that does not exist"),
    info("cdi.missing-hook", Status::Error, "a spec runs a hook program that does not exist"),
    info("cdi.missing-device-node", Status::Error, "a spec's device node does not exist"),
    info("cdi.wrong-device-node", Status::Error, "a spec's device node is not the device the spec says"),
    info("cdi.vanished-mig", Status::Error, "a MIG device in the spec no longer exists"),
    info("driver.not-loaded", Status::Error, "NVIDIA devices are requested but the NVIDIA driver is not loaded"),
    info("driver.nouveau", Status::Error, "an NVIDIA GPU is bound to nouveau"),
    info("driver.library-version", Status::Error, "the kernel module and the user-space library differ"),
    info("driver.fabric-manager", Status::Error, "NVSwitches are present but the fabric manager is not running"),
    info("driver.xid", Status::Warning, "the kernel logged Xid errors for the service's GPUs since boot"),
    info("driver.legacy-hook", Status::Warning, "the legacy NVIDIA OCI hook is installed next to CDI"),
    info("driver.device-in-use", Status::Warning, "another process holds one of the service's GPU device nodes open"),
    info(
        "selinux.container-use-devices",
        Status::Error,
        "SELinux enforces and no container boolean grants the GPU nodes",
    ),
    info("selinux.device-label", Status::Error, "a GPU device node lacks the SELinux label the policy gives it"),
    info("rootless.account", Status::Error, "the service account does not exist or is root"),
    info("rootless.subids", Status::Error, "the account lacks 65536 subordinate UIDs or GIDs"),
    info("rootless.linger", Status::Error, "lingering is off for the account"),
    info("rootless.cgroup-v2", Status::Error, "the host does not run the unified cgroup v2 hierarchy"),
    info("rootless.cpuset", Status::Error, "NUMA pinning is on but the cpuset controller is not available"),
    info("podman.version", Status::Error, "the installed podman is not the one the unit was generated for"),
];

/// The host, seen through a root directory.
#[derive(Clone, Debug)]
pub struct Host {
    pub root: PathBuf,
}

impl Host {
    pub fn new(root: impl Into<PathBuf>) -> Host {
        Host { root: root.into() }
    }

    /// The live host.
    pub fn live() -> Host {
        Host::new("/")
    }

    /// `abs` (an absolute host path) under the root. `..` stops at the root, as in a chroot, so
    /// a hostile path in a spec cannot reach outside it.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let mut out = self.root.clone();
        let mut depth = 0;
        for c in abs.as_ref().components() {
            match c {
                std::path::Component::Normal(part) => {
                    out.push(part);
                    depth += 1;
                }
                std::path::Component::ParentDir if depth > 0 => {
                    out.pop();
                    depth -= 1;
                }
                _ => {}
            }
        }
        out
    }

    pub fn read(&self, abs: impl AsRef<Path>) -> std::io::Result<String> {
        std::fs::read_to_string(self.path(abs))
    }

    pub fn exists(&self, abs: impl AsRef<Path>) -> bool {
        self.path(abs).exists()
    }

    fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }
}

/// The account a service runs as, as the host's account files describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Account {
    /// Looks `name` up in `/etc/passwd` and `/etc/group` under the host's root; on the live host,
    /// accounts from other NSS sources (LDAP, systemd-homed) are found too.
    pub fn lookup(host: &Host, name: &str) -> Result<Account, String> {
        let passwd = host.read("/etc/passwd").unwrap_or_default();
        let found = passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?))).flatten()
        });
        let (uid, gid) = match found {
            Some(ids) => ids,
            None if host.is_live() => match nix::unistd::User::from_name(name) {
                Ok(Some(u)) => (u.uid.as_raw(), u.gid.as_raw()),
                _ => return Err(format!("account `{name}` does not exist")),
            },
            None => return Err(format!("account `{name}` is not in {}", host.path("/etc/passwd").display())),
        };
        let groups = host
            .read("/etc/group")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 4 && f[3].split(',').any(|m| m == name)).then(|| f[2].parse().ok()).flatten()
            })
            .collect();
        Ok(Account { name: name.to_owned(), uid, gid, groups })
    }

    /// Whether this account may do `want` (4 read, 2 write, 1 execute/search) to a file with
    /// `meta`, by its owner, group and mode bits (ACLs are not read).
    pub fn may(&self, meta: &std::fs::Metadata, want: u32) -> bool {
        let mode = meta.mode();
        let bits = if meta.uid() == self.uid {
            mode >> 6
        } else if meta.gid() == self.gid || self.groups.contains(&meta.gid()) {
            mode >> 3
        } else {
            mode
        };
        bits & want == want
    }

    /// Why the account cannot read `path` (every directory above it searchable, the file
    /// readable), if it cannot. `path` is already under the host's root; `shown` is what to call
    /// it in the message.
    pub fn cannot_read(&self, host: &Host, abs: &Path) -> Option<String> {
        let mut dirs: Vec<&Path> = abs.ancestors().skip(1).collect();
        dirs.reverse();
        for dir in dirs {
            let Ok(meta) = std::fs::metadata(host.path(dir)) else { continue };
            if !self.may(&meta, 1) {
                return Some(format!(
                    "{} may not enter {} (mode {:o})",
                    self.name,
                    dir.display(),
                    meta.mode() & 0o7777
                ));
            }
        }
        let meta = std::fs::metadata(host.path(abs)).ok()?;
        (!self.may(&meta, 4)).then(|| {
            format!(
                "{} (owner {}, group {}, mode {:o}) is not readable by {}",
                abs.display(),
                meta.uid(),
                meta.gid(),
                meta.mode() & 0o7777,
                self.name
            )
        })
    }
}

/// A device node the service's container will get, from the spec podman resolves it from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsedNode {
    /// Its host path.
    pub host: String,
    /// The CDI name it comes with when it is one device's own node; `None` for a spec-wide node
    /// that every device of the spec brings (`/dev/nvidiactl`, `/dev/nvidia-uvm`).
    pub device: Option<String>,
}

/// What a service's unit asks for: what its preflight checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub service: String,
    /// The account it runs as.
    pub account: String,
    /// Fully qualified CDI names (`nvidia.com/gpu=0`).
    pub cdi: Vec<String>,
    /// The PCI addresses of its GPUs, where placement knew them.
    pub gpus: Vec<String>,
    /// NUMA pinning (`AllowedCPUs=`/`AllowedMemoryNodes=`) is on.
    pub numa: bool,
    /// The podman the unit was generated for.
    pub podman: Option<PodmanVersion>,
}

impl Request {
    /// What the unit of `service`, placed as `placement`, asks for.
    pub fn for_unit(
        service: &crate::spec::Service,
        account: &crate::account::Account,
        podman: PodmanVersion,
        placement: &crate::placement::Assignment,
    ) -> Request {
        Request {
            service: service.name.clone(),
            account: account.name.clone(),
            cdi: placement.cdi.clone(),
            gpus: placement.gpus.iter().map(|g| g.pci.clone()).filter(|p| !p.is_empty()).collect(),
            numa: !placement.cpus.is_empty() || !placement.nodes.is_empty(),
            podman: Some(podman),
        }
    }

    /// Reads the request back from a unit's `ExecStartPre=` line (what [`unit_command`] wrote),
    /// for `aictl preflight NAME` to check what the unit will check.
    pub fn from_unit(unit: &str) -> Option<Request> {
        let line = unit.lines().find(|l| l.starts_with("ExecStartPre=") && l.contains(" preflight --unit-mode "))?;
        let mut words = line.split_whitespace().skip_while(|w| *w != "--unit-mode").skip(1);
        let mut r = Request::default();
        while let Some(w) = words.next() {
            match w {
                "--run-as" => r.account = words.next()?.to_owned(),
                "--cdi" => r.cdi.push(words.next()?.to_owned()),
                "--gpu" => r.gpus.push(words.next()?.to_owned()),
                "--numa" => r.numa = true,
                "--podman" => r.podman = PodmanVersion::parse(words.next()?),
                name => r.service = name.to_owned(),
            }
        }
        (!r.service.is_empty() && !r.account.is_empty()).then_some(r)
    }
}

/// Collects findings for one service.
#[derive(Debug)]
pub struct Report<'a> {
    pub service: &'a str,
    pub findings: Vec<Finding>,
}

impl Report<'_> {
    pub fn push(&mut self, id: &'static str, status: Status, message: impl Into<String>, fix: impl Into<String>) {
        debug_assert!(CATALOGUE.iter().any(|c| c.id == id), "{id} is not in the catalogue");
        self.findings.push(Finding {
            service: self.service.to_owned(),
            id,
            status,
            message: message.into(),
            fix: fix.into(),
        });
    }

    pub fn ok(&mut self, id: &'static str, message: impl Into<String>) {
        self.push(id, Status::Ok, message, "");
    }

    pub fn skip(&mut self, id: &'static str, why: impl Into<String>) {
        self.push(id, Status::Skipped, why, "");
    }

    /// The problem at the severity the catalogue gives `id`.
    pub fn fail(&mut self, id: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        let severity = CATALOGUE.iter().find(|c| c.id == id).map_or(Status::Error, |c| c.severity);
        self.push(id, severity, message, fix);
    }

    /// Reports `ok` for `id` unless something else was reported for it already.
    pub fn ok_unless_reported(&mut self, id: &'static str, message: impl Into<String>) {
        if !self.findings.iter().any(|f| f.id == id) {
            self.ok(id, message);
        }
    }

    /// Skips every id of `ids` with the same reason.
    pub fn skip_all(&mut self, ids: &[&'static str], why: &str) {
        for id in ids {
            self.skip(id, why);
        }
    }
}

/// Runs every check for `request` on `host`.
pub fn run(host: &Host, request: &Request) -> Vec<Finding> {
    let mut report = Report { service: &request.service, findings: Vec::new() };
    let account = Account::lookup(host, &request.account);
    let driver = driver::Driver::read(host);
    let nodes = cdi::check(host, request, account.as_ref().ok(), &driver, &mut report);
    driver::check(host, request, &driver, &mut report);
    driver::in_use(host, request, &nodes, &mut report);
    selinux::check(host, request, &nodes, &mut report);
    rootless::check(host, request, &account, &mut report);
    podman::check(host, request, &mut report);
    report.findings
}

/// Whether any finding stops the start.
pub fn has_error(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.status == Status::Error)
}

/// The `ExecStartPre=` command that runs the checks for a service, as words (as root: `+`, to
/// read the kernel log and to judge file access for the account from ownership and modes).
///
/// The unit is also ordered `After=nvidia-cdi-refresh.service`, without `Wants=`: the toolkit
/// starts that refresh itself when the driver changes, and pulling it in would regenerate the
/// spec (seconds, and a rewrite under other containers' feet) on every start.
pub fn unit_words(aictl: &str, request: &Request) -> Vec<String> {
    let mut words = vec![format!("+{aictl}"), "preflight".into(), "--unit-mode".into()];
    words.extend(["--run-as".into(), request.account.clone()]);
    for name in &request.cdi {
        words.extend(["--cdi".into(), name.clone()]);
    }
    for pci in &request.gpus {
        words.extend(["--gpu".into(), pci.clone()]);
    }
    if request.numa {
        words.push("--numa".into());
    }
    if let Some(v) = request.podman {
        words.extend(["--podman".into(), v.to_string()]);
    }
    words.push(request.service.clone());
    words
}

/// [`unit_words`] as one line (every word is plain: names, addresses and versions only).
pub fn unit_command(aictl: &str, request: &Request) -> String {
    unit_words(aictl, request).join(" ")
}

#[doc(hidden)]
pub mod fixture;

#[cfg(test)]
mod tests;
