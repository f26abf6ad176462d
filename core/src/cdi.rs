//! Container Device Interface specs: which CDI device name gives which GPU.
//!
//! Podman reads specs from `/etc/cdi` and `/var/run/cdi` (the latter wins for a name found in
//! both). A spec device names its GPU only indirectly, so each device is tied to a PCI address
//! by what its container edits mention, in this order:
//! 1. a `pci-DDDD:BB:DD.F` token, as in udev's `/dev/dri/by-path/pci-0000:84:00.0-card` links
//!    (nvidia-ctk writes them into its create-symlinks hook arguments);
//! 2. `/dev/nvidiaN`, through the driver's minor number (`Device Minor:` in
//!    `/proc/driver/nvidia/gpus/ADDR/information`);
//! 3. `/dev/dri/cardN` or `/dev/dri/renderDN`, through `/sys/class/drm/NAME/device` (live only:
//!    it needs the DRM driver loaded).
//!
//! A device that reaches several GPUs (`all`) or none is not a GPU name for placement.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Podman's default CDI spec directories, lowest priority first.
pub const SPEC_DIRS: &[&str] = &["/etc/cdi", "/var/run/cdi"];

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Device {
    /// `vendor.com/class=name`.
    pub name: String,
    /// The spec file it came from.
    pub spec: PathBuf,
    /// The one GPU it gives, when that could be worked out.
    pub pci: Option<String>,
    /// Every GPU it reaches (several for `all`), as far as could be worked out.
    pub reaches: Vec<String>,
}

/// CDI's grammar, the one the whole tree uses (the service format's `gpu.devices` and the specs
/// read here), as podman checks it (container-device-interface `pkg/parser`): a vendor and a
/// class start with an ASCII letter, end with a letter or digit, and hold letters, digits, `_`,
/// `-` and `.` (`nvidia.com/gpu`). Names end up in unit files: anything else (a newline, `%`, a
/// space) is refused.
pub fn valid_kind(kind: &str) -> bool {
    let Some((vendor, class)) = kind.split_once('/') else { return false };
    let part = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    part(vendor) && part(class)
}

/// A device name: starts and ends with an ASCII letter or digit, and holds letters, digits,
/// `_`, `-`, `.` and `:` (`0`, `GPU-4f8a...`, `0:1`, `all`).
pub fn valid_device_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// A qualified device name, `VENDOR/CLASS=NAME`.
pub fn valid_qualified_name(name: &str) -> bool {
    name.split_once('=').is_some_and(|(kind, device)| valid_kind(kind) && valid_device_name(device))
}

/// MIG slices: nvidia-ctk names them `GPU:SLICE` (`0:1`) or by `MIG-` UUID. A slice is not its
/// whole GPU.
pub fn is_slice_name(name: &str) -> bool {
    let device = name.rsplit_once('=').map_or(name, |(_, d)| d);
    device.contains(':') || device.starts_with("MIG-")
}

/// How device nodes map to PCI addresses on this host.
#[derive(Clone, Debug, Default)]
pub struct NodeMap {
    /// `/dev/nvidiaN` minor number → PCI address.
    pub nvidia_minor: BTreeMap<u32, String>,
    /// `/sys/class/drm`, when the host's DRM devices may be looked at.
    pub drm_class: Option<PathBuf>,
}

impl NodeMap {
    /// The live host's view: minors from the NVIDIA driver (read once by the caller, see
    /// [`crate::nvidia::driver_gpus`]), DRM from sysfs.
    pub fn live(driver: &[crate::nvidia::DriverGpu]) -> NodeMap {
        let nvidia_minor = driver.iter().filter_map(|g| g.minor.map(|m| (m, g.pci.clone()))).collect();
        NodeMap { nvidia_minor, drm_class: Some(PathBuf::from("/sys/class/drm")) }
    }

    fn pci_of_node(&self, path: &str) -> Option<String> {
        if let Some(n) = path.strip_prefix("/dev/nvidia") {
            if let Ok(minor) = n.parse::<u32>() {
                return self.nvidia_minor.get(&minor).cloned();
            }
        }
        let drm = path.strip_prefix("/dev/dri/")?;
        if !(drm.starts_with("card") || drm.starts_with("renderD")) || drm.contains('/') {
            return None;
        }
        let target = std::fs::read_link(self.drm_class.as_ref()?.join(drm).join("device")).ok()?;
        let last = target.file_name()?.to_string_lossy().to_lowercase();
        is_pci_address(&last).then_some(last)
    }
}

/// `dddd:bb:dd.f` in hex, lower case.
pub fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && s.char_indices().all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// Every `pci-dddd:bb:dd.f` token in `s`.
fn pci_tokens(s: &str, out: &mut BTreeSet<String>) {
    let mut rest = s;
    while let Some(at) = rest.find("pci-") {
        let cand = rest[at + 4..].get(..12).map(str::to_lowercase);
        if let Some(cand) = cand.filter(|c| is_pci_address(c)) {
            out.insert(cand);
        }
        rest = &rest[at + 4..];
    }
}

fn strings<'a>(v: &'a serde_yaml_ng::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_yaml_ng::Value::String(s) => out.push(s),
        serde_yaml_ng::Value::Sequence(seq) => seq.iter().for_each(|x| strings(x, out)),
        serde_yaml_ng::Value::Mapping(m) => m.values().for_each(|x| strings(x, out)),
        serde_yaml_ng::Value::Tagged(t) => strings(&t.value, out),
        _ => {}
    }
}

/// Reads one spec file: its devices, each tied to a GPU where possible.
pub fn read_spec(path: &Path, nodes: &NodeMap) -> Result<Vec<Device>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: not a CDI spec: {e}", path.display()))?;
    let kind = doc
        .get("kind")
        .and_then(|k| k.as_str())
        .filter(|k| valid_kind(k))
        .ok_or_else(|| format!("{}: not a CDI spec: no valid `kind: vendor.com/class`", path.display()))?;
    let devices = doc
        .get("devices")
        .and_then(|d| d.as_sequence())
        .ok_or_else(|| format!("{}: not a CDI spec: no `devices` list", path.display()))?;
    let mut out = Vec::new();
    for dev in devices {
        // Devices with names outside CDI's grammar are left out (podman refuses them too).
        let Some(name) = dev.get("name").and_then(|n| n.as_str()).filter(|n| valid_device_name(n)) else { continue };
        let mut found = BTreeSet::new();
        if let Some(edits) = dev.get("containerEdits") {
            let mut all = Vec::new();
            strings(edits, &mut all);
            for s in &all {
                pci_tokens(s, &mut found);
            }
            if found.is_empty() {
                let node_paths = edits.get("deviceNodes").and_then(|d| d.as_sequence()).into_iter().flatten();
                for node in node_paths {
                    let path = node.get("hostPath").or_else(|| node.get("path")).and_then(|p| p.as_str());
                    if let Some(pci) = path.and_then(|p| nodes.pci_of_node(p)) {
                        found.insert(pci);
                    }
                }
            }
        }
        let pci = if found.len() == 1 { found.iter().next().cloned() } else { None };
        out.push(Device {
            name: format!("{kind}={name}"),
            spec: path.to_path_buf(),
            pci,
            reaches: found.into_iter().collect(),
        });
    }
    Ok(out)
}

/// Reads every spec in `dirs` (lowest priority first). Unreadable specs are reported and skipped.
pub fn read_dirs<P: AsRef<Path>>(dirs: &[P], nodes: &NodeMap) -> (Vec<Device>, Vec<String>) {
    let mut by_name: BTreeMap<String, Device> = BTreeMap::new();
    let mut problems = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir.as_ref()) else { continue };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "json"))
            .collect();
        files.sort();
        for file in files {
            match read_spec(&file, nodes) {
                Ok(devices) => {
                    for d in devices {
                        by_name.insert(d.name.clone(), d);
                    }
                }
                Err(why) => problems.push(why),
            }
        }
    }
    (by_name.into_values().collect(), problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_tokens_found_in_by_path_names() {
        let mut out = BTreeSet::new();
        pci_tokens("--link ../card1::/dev/dri/by-path/pci-0000:84:00.0-card", &mut out);
        pci_tokens("pci-0000:zz:00.0 pci-", &mut out);
        assert_eq!(out.into_iter().collect::<Vec<_>>(), vec!["0000:84:00.0"]);
        assert!(is_pci_address("0035:04:00.0"));
        assert!(!is_pci_address("0000:84:00"));
    }

    #[test]
    fn names_follow_cdis_grammar() {
        assert!(valid_kind("nvidia.com/gpu"));
        assert!(valid_kind("nvidia/gpu"), "podman does not ask for a domain");
        assert!(!valid_kind("0vendor.com/gpu") && !valid_kind("nvidia.com/gpu-") && !valid_kind("nvidia.com/"));
        assert!(!valid_device_name("0:") && !valid_device_name("-0") && valid_device_name("7"));
        assert!(
            valid_qualified_name("nvidia.com/gpu=0:1")
                && !valid_qualified_name("nvidia.com/gpu=")
                && !valid_qualified_name("gpu0")
        );
        assert!(!valid_kind("nvidia.com/gpu\n[Service]"));
        assert!(valid_device_name("GPU-520e01f2-cf30-6396-abef-e8e9a5233b0e"));
        assert!(valid_device_name("0:1"));
        assert!(!valid_device_name("0\nExecStartPre=+/bin/sh"));
        assert!(!valid_device_name("a%b"));
        assert!(is_slice_name("nvidia.com/gpu=0:1") && is_slice_name("nvidia.com/gpu=MIG-1234"));
        assert!(!is_slice_name("nvidia.com/gpu=GPU-1234") && !is_slice_name("nvidia.com/gpu=all"));
    }
}
