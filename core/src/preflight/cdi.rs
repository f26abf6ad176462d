//! CDI checks: the specs podman will resolve the service's devices from, read the way podman's
//! CDI library (container-device-interface, `pkg/cdi/cache.go`) reads them.
//!
//! - Spec directories `/etc/cdi` then `/var/run/cdi`; only `*.json` and `*.yaml` files directly
//!   in them; each read by podman as the service account (rootless).
//! - A spec that cannot be read, parsed, or whose `cdiVersion` the library does not know, is
//!   left out (podman logs it and goes on): its devices do not exist for podman.
//! - The same device in two specs of one directory is a conflict: the device is dropped. In two
//!   directories, the later directory's spec wins silently.
//! - Then, for the spec that gives each device: its driver version, mounts, hooks and device
//!   nodes must match the host, or the OCI runtime fails the start.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use super::driver::Driver;
use super::{Account, Host, Report, Request, UsedNode};
use crate::podman::PodmanVersion;

/// The newest `cdiVersion` the CDI library vendored by each podman release accepts (from
/// podman's go.mod and the library's `validSpecVersions`): podman 4.4–4.6 vendor
/// container-device-interface 0.5.x, 4.7–5.0 0.6.x, 5.1 0.7.2, 5.2–5.4 0.8.0, 5.5–5.8 1.0.1.
pub const MAX_CDI_VERSION: &[(PodmanVersion, &str)] = &[
    (PodmanVersion(5, 5, 0), "1.0.0"),
    (PodmanVersion(5, 2, 0), "0.8.0"),
    (PodmanVersion(5, 1, 0), "0.7.0"),
    (PodmanVersion(4, 7, 0), "0.6.0"),
    (PodmanVersion(0, 0, 0), "0.5.0"),
];

/// Every `cdiVersion` the spec has had (SPEC.md, "Released versions").
pub const KNOWN_VERSIONS: &[&str] =
    &["0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0"];

/// The podman release that first reads `version`, if any does yet.
pub fn podman_for(version: &str) -> Option<PodmanVersion> {
    MAX_CDI_VERSION.iter().rev().find(|(_, max)| version_key(version) <= version_key(max)).map(|(p, _)| *p)
}

/// The newest cdiVersion `podman` reads.
pub fn max_version(podman: PodmanVersion) -> &'static str {
    MAX_CDI_VERSION.iter().find(|(p, _)| podman >= *p).map_or("0.5.0", |(_, v)| v)
}

fn version_key(v: &str) -> Vec<u32> {
    v.trim_start_matches('v').split('.').map(|p| p.parse().unwrap_or(u32::MAX)).collect()
}

/// A device node a spec gives.
#[derive(Clone, Debug, Default)]
pub struct Node {
    /// In the container.
    pub path: String,
    /// On the host: `hostPath`, else `path`.
    pub host: String,
    /// `c`, `u`, `b` or `p`, when given.
    pub kind: Option<String>,
    pub major: Option<u64>,
    pub minor: Option<u64>,
}

/// What one set of container edits needs of the host.
#[derive(Clone, Debug, Default)]
pub struct Edits {
    pub nodes: Vec<Node>,
    /// Host paths bind-mounted in.
    pub mounts: Vec<String>,
    /// Hook programs.
    pub hooks: Vec<String>,
}

/// One spec file as this host's root reads it.
#[derive(Clone, Debug)]
pub struct SpecFile {
    /// Its path on the host (not under the root).
    pub path: PathBuf,
    /// 0 for `/etc/cdi`, 1 for `/var/run/cdi`.
    pub priority: usize,
    /// Its `kind`, when it says one, even if podman cannot load it.
    pub kind: Option<String>,
    pub parsed: Result<Spec, String>,
}

#[derive(Clone, Debug)]
pub struct Spec {
    pub version: String,
    pub kind: String,
    /// Device names (without the kind) and their edits.
    pub devices: BTreeMap<String, Edits>,
    /// Spec-wide edits, applied with any of its devices.
    pub common: Edits,
    /// Driver versions the spec names (library suffixes, firmware directories, hook arguments).
    pub driver_versions: BTreeSet<String>,
}

fn edits(v: Option<&Value>) -> Edits {
    let mut e = Edits::default();
    let Some(v) = v else { return e };
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
    for node in v.get("deviceNodes").and_then(Value::as_sequence).into_iter().flatten() {
        let Some(path) = s(node, "path") else { continue };
        e.nodes.push(Node {
            host: s(node, "hostPath").unwrap_or_else(|| path.clone()),
            path,
            kind: s(node, "type"),
            major: n(node, "major"),
            minor: n(node, "minor"),
        });
    }
    for mount in v.get("mounts").and_then(Value::as_sequence).into_iter().flatten() {
        let bind = mount.get("type").and_then(Value::as_str).is_none_or(|t| t == "bind" || t == "rbind");
        if let Some(host) = s(mount, "hostPath").filter(|h| bind && h.starts_with('/')) {
            e.mounts.push(host);
        }
    }
    for hook in v.get("hooks").and_then(Value::as_sequence).into_iter().flatten() {
        if let Some(path) = s(hook, "path") {
            e.hooks.push(path);
        }
    }
    e
}

fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Sequence(seq) => seq.iter().for_each(|x| strings(x, out)),
        Value::Mapping(m) => m.values().for_each(|x| strings(x, out)),
        Value::Tagged(t) => strings(&t.value, out),
        _ => {}
    }
}

/// `NNN.NN[.NN]` with a major of at least 100: an NVIDIA driver version, not a library's own
/// soname version (`libnvidia-egl-gbm.so.1.1.2`).
fn driver_version_at(s: &str) -> Option<String> {
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let v = s[..end].trim_end_matches('.');
    let parts: Vec<&str> = v.split('.').collect();
    let major: u32 = parts.first()?.parse().ok()?;
    (major >= 100 && (2..=3).contains(&parts.len()) && parts.iter().all(|p| !p.is_empty())).then(|| v.to_owned())
}

/// The driver versions a spec's strings name: `--host-driver-version=X`, `/lib/firmware/nvidia/X/`
/// and `lib*.so.X` suffixes.
pub fn driver_versions(strings: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in strings {
        if let Some(v) = s.split("--host-driver-version=").nth(1).and_then(driver_version_at) {
            out.insert(v);
        }
        if let Some(v) = s.split("/firmware/nvidia/").nth(1).and_then(driver_version_at) {
            out.insert(v);
        }
        let mut rest = *s;
        while let Some(at) = rest.find(".so.") {
            if let Some(v) = driver_version_at(&rest[at + 4..]) {
                out.insert(v);
            }
            rest = &rest[at + 4..];
        }
    }
    out
}

/// Parses a spec's text.
pub fn parse(text: &str) -> Result<Spec, String> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("not YAML or JSON: {e}"))?;
    let version = doc.get("cdiVersion").and_then(Value::as_str).ok_or("no `cdiVersion`")?.to_owned();
    let kind = doc.get("kind").and_then(Value::as_str).ok_or("no `kind`")?.to_owned();
    if !crate::cdi::valid_kind(&kind) {
        return Err(format!("`kind: {kind}` is not `vendor.com/class`"));
    }
    let mut devices = BTreeMap::new();
    for dev in doc.get("devices").and_then(Value::as_sequence).ok_or("no `devices` list")? {
        let name = dev.get("name").and_then(Value::as_str).ok_or("a device without `name`")?;
        if !crate::cdi::valid_device_name(name) {
            return Err(format!("device name `{name}` is not valid"));
        }
        if devices.insert(name.to_owned(), edits(dev.get("containerEdits"))).is_some() {
            return Err(format!("device `{name}` twice"));
        }
    }
    let mut all = Vec::new();
    strings(&doc, &mut all);
    Ok(Spec {
        version,
        kind,
        devices,
        common: edits(doc.get("containerEdits")),
        driver_versions: driver_versions(&all),
    })
}

/// Specs larger than this are refused unread (nvidia-ctk's are tens of KiB).
const MAX_SPEC: u64 = 16 << 20;

/// Reads a spec only if it is a regular file of a sane size: a FIFO or a device named
/// `x.yaml` must not hang or flood the check.
fn read_regular(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_SPEC {
        return Err(format!("{} bytes, more than a CDI spec can sensibly be", meta.len()));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".into())
}

/// Reads every spec file podman would read, in podman's order.
pub fn read_specs(host: &Host) -> Vec<SpecFile> {
    let mut out = Vec::new();
    for (priority, dir) in crate::cdi::SPEC_DIRS.iter().enumerate() {
        let Ok(entries) = std::fs::read_dir(host.path(dir)) else { continue };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json") || n.ends_with(".yaml"))
            .collect();
        names.sort();
        for name in names {
            let path = Path::new(dir).join(&name);
            let text = read_regular(&host.path(&path));
            let kind = text.as_ref().ok().and_then(|t| serde_yaml_ng::from_str::<Value>(t).ok()).and_then(|doc| {
                doc.get("kind").and_then(Value::as_str).filter(|k| crate::cdi::valid_kind(k)).map(str::to_owned)
            });
            let parsed = text.and_then(|t| parse(&t));
            out.push(SpecFile { path, priority, kind, parsed });
        }
    }
    out
}

/// What fixes a spec that does not match the host: the toolkit's refresh unit where it is
/// installed, else generating the file again.
fn regenerate(host: &Host, file: &Path) -> String {
    let unit = ["/usr/lib/systemd/system", "/lib/systemd/system", "/etc/systemd/system"]
        .iter()
        .any(|d| host.exists(Path::new(d).join("nvidia-cdi-refresh.service")));
    let nvidia = file.file_name().is_some_and(|n| n.to_string_lossy().starts_with("nvidia"));
    if unit && file.starts_with("/var/run/cdi") {
        "systemctl restart nvidia-cdi-refresh.service".into()
    } else if nvidia {
        format!("nvidia-ctk cdi generate --output={}", file.display())
    } else {
        format!("generate {} again with the tool that wrote it", file.display())
    }
}

const IDS: &[&str] = &[
    "cdi.no-spec",
    "cdi.unknown-device",
    "cdi.duplicate-device",
    "cdi.shadowed-device",
    "cdi.unsupported-version",
    "cdi.unreadable-spec",
    "cdi.invalid-spec",
    "cdi.stale-driver",
    "cdi.missing-mount-source",
    "cdi.missing-hook",
    "cdi.missing-device-node",
    "cdi.wrong-device-node",
    "cdi.vanished-mig",
];

/// The CDI checks for `request`; returns the device nodes the container will get (empty when
/// the devices do not resolve).
pub fn check(
    host: &Host,
    request: &Request,
    account: Option<&Account>,
    driver: &Driver,
    r: &mut Report,
) -> Vec<UsedNode> {
    if request.cdi.is_empty() {
        r.skip_all(IDS, "the service asks for no CDI devices");
        return Vec::new();
    }
    let specs = read_specs(host);
    let wanted: Vec<(&str, &str)> = request.cdi.iter().filter_map(|n| n.split_once('=')).collect();
    let loadable = loadable(host, request, account, &specs, &wanted, r);
    if request.podman.is_none() && !r.findings.iter().any(|f| f.id == "cdi.unsupported-version") {
        r.skip("cdi.unsupported-version", "the podman version is not known");
    }

    let used = resolve(host, &wanted, &loadable, r);
    for id in ["cdi.no-spec", "cdi.unknown-device", "cdi.duplicate-device", "cdi.shadowed-device"] {
        r.ok_unless_reported(id, format!("{} resolve to one spec each", request.cdi.join(", ")));
    }
    for id in ["cdi.unsupported-version", "cdi.unreadable-spec", "cdi.invalid-spec"] {
        r.ok_unless_reported(id, format!("podman can load every spec ({} files)", specs.len()));
    }

    let checked_specs = used.len();
    if used.is_empty() {
        r.skip_all(&IDS[7..], "no spec resolves the requested devices");
        return Vec::new();
    }
    for (file, spec, names) in used.values() {
        stale_driver(host, file, spec, driver, r);
        host_paths(host, file, spec, names, r);
        mig(host, file, spec, names, r);
    }
    for id in &IDS[8..] {
        r.ok_unless_reported(id, format!("the host has what the {checked_specs} spec(s) in use name"));
    }
    used_nodes(&used)
}

/// The spec files podman can load (as the service account); the others are reported and left
/// out, as podman does.
fn loadable<'a>(
    host: &Host,
    request: &Request,
    account: Option<&Account>,
    specs: &'a [SpecFile],
    wanted: &[(&str, &str)],
    r: &mut Report,
) -> Vec<(&'a SpecFile, &'a Spec)> {
    let wanted_kinds: BTreeSet<&str> = wanted.iter().map(|(k, _)| *k).collect();
    let mut loadable = Vec::new();
    for file in specs {
        let shown = file.path.display();
        let kind = file.kind.as_deref();
        // A spec of another kind (or one that cannot even say its kind) does not stop this
        // service: podman skips it and goes on.
        let relevant = kind.is_some_and(|k| wanted_kinds.contains(k));
        let holds = |s: &Spec| wanted.iter().any(|(k, n)| s.kind == *k && s.devices.contains_key(*n));
        let severity_ok = |r: &mut Report, id: &'static str, msg: String, fix: String| {
            if file.parsed.as_ref().is_ok_and(holds) || relevant {
                r.fail(id, msg, fix);
            } else {
                r.push(id, super::Status::Warning, msg, fix);
            }
        };
        if let Some(why) = account.and_then(|a| a.cannot_read(host, &file.path)) {
            let fix = match std::fs::metadata(host.path(&file.path)) {
                Ok(m) if !account.is_some_and(|a| a.may(&m, 4)) => format!("chmod a+r {shown}"),
                _ => format!("chmod a+x {}", file.path.parent().unwrap_or(Path::new("/")).display()),
            };
            severity_ok(
                r,
                "cdi.unreadable-spec",
                format!("{shown}: podman runs as the service account and {why}"),
                fix,
            );
            continue;
        }
        let spec = match &file.parsed {
            Ok(s) => s,
            Err(why) => {
                severity_ok(
                    r,
                    "cdi.invalid-spec",
                    format!("{shown}: podman cannot load it: {why}"),
                    regenerate(host, &file.path),
                );
                continue;
            }
        };
        if !KNOWN_VERSIONS.contains(&spec.version.as_str()) {
            severity_ok(
                r,
                "cdi.unsupported-version",
                format!("{shown}: cdiVersion {} is not a CDI version", spec.version),
                regenerate(host, &file.path),
            );
            continue;
        }
        if let Some(podman) = request.podman {
            let max = max_version(podman);
            if version_key(&spec.version) > version_key(max) {
                let newer = podman_for(&spec.version)
                    .map_or_else(|| "no podman release reads it yet".to_owned(), |p| format!("podman {p} reads it"));
                severity_ok(
                    r,
                    "cdi.unsupported-version",
                    format!(
                        "{shown}: cdiVersion {} is newer than podman {podman} reads (at most {max}; {newer})",
                        spec.version
                    ),
                    format!("write the spec as cdiVersion {max} or older (or upgrade podman), then check it with `aictl preflight {}`", request.service),
                );
                continue;
            }
        }
        loadable.push((file, spec));
    }
    loadable
}

/// The spec each requested name resolves to, as podman resolves it (the later directory wins;
/// a name twice in one directory is dropped), by spec file.
type Used<'a> = BTreeMap<&'a Path, (&'a SpecFile, &'a Spec, Vec<&'a str>)>;

fn resolve<'a>(
    host: &Host,
    wanted: &[(&str, &'a str)],
    loadable: &[(&'a SpecFile, &'a Spec)],
    r: &mut Report,
) -> Used<'a> {
    let mut used: BTreeMap<&Path, (&SpecFile, &Spec, Vec<&str>)> = BTreeMap::new();
    for (kind, name) in wanted {
        let full = format!("{kind}={name}");
        let of_kind: Vec<&(&SpecFile, &Spec)> = loadable.iter().filter(|(_, s)| s.kind == *kind).collect();
        if of_kind.is_empty() {
            let fix = if kind.starts_with("nvidia.com/") {
                "nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml".to_owned()
            } else {
                format!("install a CDI spec for {kind} in /etc/cdi or /var/run/cdi")
            };
            r.fail(
                "cdi.no-spec",
                format!(
                    "{full}: no CDI spec podman can load declares kind {kind} (in {})",
                    crate::cdi::SPEC_DIRS.join(", ")
                ),
                fix,
            );
            continue;
        }
        let holders: Vec<&&(&SpecFile, &Spec)> =
            of_kind.iter().filter(|(_, s)| s.devices.contains_key(*name)).collect();
        if holders.is_empty() {
            let mut names: Vec<String> =
                of_kind.iter().flat_map(|(_, s)| s.devices.keys().map(|n| format!("{kind}={n}"))).collect();
            names.sort();
            names.dedup();
            let files: Vec<String> = of_kind.iter().map(|(f, _)| f.path.display().to_string()).collect();
            r.fail(
                "cdi.unknown-device",
                format!("{full} is not in {}; it has: {}", files.join(", "), names.join(", ")),
                format!(
                    "run `systemctl daemon-reload` so the service is placed on the devices that exist, or generate the spec again ({})",
                    regenerate(host, &of_kind[0].0.path)
                ),
            );
            continue;
        }
        let top = holders.iter().map(|(f, _)| f.priority).max().unwrap_or(0);
        if duplicated(&full, &holders, r) {
            continue;
        }
        let (winner, spec) =
            **holders.iter().find(|(f, _)| f.priority == top).copied().expect("a holder at the top priority");
        let shadowed: Vec<String> =
            holders.iter().filter(|(f, _)| f.priority < top).map(|(f, _)| f.path.display().to_string()).collect();
        if !shadowed.is_empty() {
            r.fail(
                "cdi.shadowed-device",
                format!(
                    "{full} is defined in {} and in {}; podman uses {}",
                    shadowed.join(", "),
                    winner.path.display(),
                    winner.path.display()
                ),
                format!("remove {} if {} is the spec to use", shadowed.join(", "), winner.path.display()),
            );
        }
        used.entry(&winner.path).or_insert((winner, spec, Vec::new())).2.push(name);
    }
    used
}

/// Reports `full` when it is defined in more than one spec of one directory (podman drops it).
fn duplicated(full: &str, holders: &[&&(&SpecFile, &Spec)], r: &mut Report) -> bool {
    let mut duplicate = false;
    for priority in 0..crate::cdi::SPEC_DIRS.len() {
        let same: Vec<String> =
            holders.iter().filter(|(f, _)| f.priority == priority).map(|(f, _)| f.path.display().to_string()).collect();
        if same.len() > 1 {
            duplicate = true;
            r.fail(
                "cdi.duplicate-device",
                format!(
                    "{full} is in {} specs of {}: {}; podman drops a device defined twice in one directory",
                    same.len(),
                    crate::cdi::SPEC_DIRS[priority],
                    same.join(" and ")
                ),
                format!("remove all but one of {}", same.join(", ")),
            );
        }
    }
    duplicate
}

/// The device nodes the container gets from the specs in use: each spec's common nodes and the
/// requested devices' own, each host path once.
fn used_nodes(used: &Used<'_>) -> Vec<UsedNode> {
    let mut nodes: Vec<UsedNode> = Vec::new();
    for (_, spec, names) in used.values() {
        let common = spec.common.nodes.iter().map(|n| UsedNode { host: n.host.clone(), device: None });
        let own = names.iter().flat_map(|name| {
            let full = format!("{}={name}", spec.kind);
            spec.devices.get(*name).into_iter().flat_map(move |e| {
                let full = full.clone();
                e.nodes.iter().map(move |n| UsedNode { host: n.host.clone(), device: Some(full.clone()) })
            })
        });
        for node in common.chain(own) {
            if !nodes.iter().any(|n| n.host == node.host) {
                nodes.push(node);
            }
        }
    }
    nodes
}

fn stale_driver(host: &Host, file: &SpecFile, spec: &Spec, driver: &Driver, r: &mut Report) {
    let shown = file.path.display();
    if spec.driver_versions.is_empty() {
        r.skip("cdi.stale-driver", format!("{shown} names no NVIDIA driver version"));
        return;
    }
    let Some(loaded) = &driver.version else {
        r.skip("cdi.stale-driver", "no NVIDIA driver is loaded (/proc/driver/nvidia/version)");
        return;
    };
    let other: Vec<&str> = spec.driver_versions.iter().map(String::as_str).filter(|v| v != loaded).collect();
    if other.is_empty() {
        r.ok("cdi.stale-driver", format!("{shown} was generated for the loaded driver {loaded}"));
    } else {
        r.fail(
            "cdi.stale-driver",
            format!("{shown} was generated for NVIDIA driver {} but {loaded} is loaded", other.join(", ")),
            regenerate(host, &file.path),
        );
    }
}

fn host_paths(host: &Host, file: &SpecFile, spec: &Spec, names: &[&str], r: &mut Report) {
    let shown = file.path.display();
    let sets = std::iter::once(&spec.common).chain(names.iter().filter_map(|n| spec.devices.get(*n)));
    let mut seen = BTreeSet::new();
    for edits in sets {
        for mount in &edits.mounts {
            if seen.insert(("m", mount.clone())) && std::fs::metadata(host.path(mount)).is_err() {
                let fix = if mount.starts_with("/run/nvidia-persistenced/") {
                    "systemctl enable --now nvidia-persistenced".to_owned()
                } else {
                    regenerate(host, &file.path)
                };
                r.fail("cdi.missing-mount-source", format!("{shown} mounts {mount}, which does not exist"), fix);
            }
        }
        for hook in &edits.hooks {
            if !seen.insert(("h", hook.clone())) {
                continue;
            }
            let executable =
                std::fs::metadata(host.path(hook)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            if !executable {
                let fix = if hook.contains("nvidia-") {
                    format!(
                        "install nvidia-container-toolkit (it provides {hook}), then {}",
                        regenerate(host, &file.path)
                    )
                } else {
                    regenerate(host, &file.path)
                };
                r.fail(
                    "cdi.missing-hook",
                    format!("{shown} runs the hook {hook}, which is not an executable file"),
                    fix,
                );
            }
        }
        for node in &edits.nodes {
            if seen.insert(("n", node.host.clone())) {
                device_node(host, file, node, r);
            }
        }
    }
}

fn device_node(host: &Host, file: &SpecFile, node: &Node, r: &mut Report) {
    let shown = file.path.display();
    // CDI's library looks at the node itself, not through a link.
    let meta = match std::fs::symlink_metadata(host.path(&node.host)) {
        Ok(m) => m,
        Err(_) => {
            r.fail(
                "cdi.missing-device-node",
                format!("{shown} gives the device node {}, which does not exist", node.host),
                if node.host.starts_with("/dev/nvidia") {
                    format!(
                        "load the NVIDIA driver (`nvidia-modprobe -u -c=0` creates the nodes), then {}",
                        regenerate(host, &file.path)
                    )
                } else {
                    regenerate(host, &file.path)
                },
            );
            return;
        }
    };
    let ft = meta.file_type();
    let want_block = node.kind.as_deref() == Some("b");
    let what = if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else {
        "a regular file"
    };
    let right_type = if want_block {
        ft.is_block_device()
    } else {
        ft.is_char_device() || (node.kind.as_deref() == Some("p") && ft.is_fifo())
    };
    if !right_type {
        let want = if want_block { "a block device" } else { "a character device" };
        let fix = if ft.is_symlink() {
            format!(
                "give the spec the real node as hostPath ({}), or {}",
                std::fs::canonicalize(host.path(&node.host))
                    .map_or_else(|_| "readlink -f".into(), |p| p.display().to_string()),
                regenerate(host, &file.path)
            )
        } else {
            format!("remove {} and load the driver that creates it, or {}", node.host, regenerate(host, &file.path))
        };
        r.fail("cdi.wrong-device-node", format!("{shown} gives {} as {want}, but it is {what}", node.host), fix);
        return;
    }
    let rdev = meta.rdev();
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    let differs = node.major.is_some_and(|m| m != major) || node.minor.is_some_and(|m| m != minor);
    if differs {
        r.fail(
            "cdi.wrong-device-node",
            format!(
                "{shown} gives {} as device {}:{}, but it is {major}:{minor}",
                node.host,
                node.major.map_or("*".into(), |m| m.to_string()),
                node.minor.map_or("*".into(), |m| m.to_string())
            ),
            regenerate(host, &file.path),
        );
    }
}

/// MIG devices: nvidia-ctk gives each its `/dev/nvidia-caps/nvidia-capN` nodes; the driver lists
/// which capability each minor N is in `/proc/driver/nvidia-caps/mig-minors`
/// (`gpu0/gi1/ci0/access 12`), and the instance exists while
/// `/proc/driver/nvidia/capabilities/gpu0/mig/gi1/ci0/access` does.
fn mig(host: &Host, file: &SpecFile, spec: &Spec, names: &[&str], r: &mut Report) {
    let slices: Vec<&&str> = names.iter().filter(|n| crate::cdi::is_slice_name(n)).collect();
    if slices.is_empty() {
        r.ok_unless_reported("cdi.vanished-mig", "no MIG device is requested");
        return;
    }
    let Ok(minors) = host.read("/proc/driver/nvidia-caps/mig-minors") else {
        r.skip("cdi.vanished-mig", "/proc/driver/nvidia-caps/mig-minors cannot be read (no NVIDIA driver with MIG)");
        return;
    };
    let by_minor: BTreeMap<u64, &str> = minors
        .lines()
        .filter_map(|l| {
            let (cap, minor) = l.trim().rsplit_once(' ')?;
            Some((minor.trim().parse().ok()?, cap.trim()))
        })
        .collect();
    for name in slices {
        let Some(edits) = spec.devices.get(*name) else { continue };
        for node in &edits.nodes {
            let Some(minor) = node.host.strip_prefix("/dev/nvidia-caps/nvidia-cap").and_then(|m| m.parse::<u64>().ok())
            else {
                continue;
            };
            let Some(cap) = by_minor.get(&minor) else { continue };
            // `gpu0/gi1/ci0/access` → capabilities/gpu0/mig/gi1/ci0/access
            let Some((gpu, rest)) = cap.split_once('/') else { continue };
            if !rest.starts_with("gi") {
                continue;
            }
            let proc = format!("/proc/driver/nvidia/capabilities/{gpu}/mig/{rest}");
            if !host.exists(&proc) {
                r.fail(
                    "cdi.vanished-mig",
                    format!(
                        "{}: {}={name} is MIG instance {} ({}), which no longer exists",
                        file.path.display(),
                        spec.kind,
                        cap.trim_end_matches("/access"),
                        proc
                    ),
                    format!(
                        "create the MIG instances again (nvidia-smi mig -cgi ... -C), or {} and `systemctl daemon-reload`",
                        regenerate(host, &file.path)
                    ),
                );
            }
        }
    }
    r.ok_unless_reported("cdi.vanished-mig", "the requested MIG instances exist");
}
