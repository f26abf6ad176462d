//! SELinux: rootless devices are bind mounts that keep their host label, so with SELinux
//! enforcing a container may use a device node only when a boolean of container-selinux grants
//! its label to `container_t`: `container_use_devices` grants every device,
//! `container_use_xserver_devices` the label of the NVIDIA nodes (`xserver_misc_device_t`) and
//! `container_use_dri_devices` the DRI nodes (`dri_device_t`). A node created before the policy
//! labelled it (by a driver installer, or `mknod` in a script) keeps the generic `device_t`,
//! which only the broad boolean grants; `restorecon` gives it its label.
//!
//! Read from selinuxfs directly (`/sys/fs/selinux/enforce`, `.../booleans/NAME`, which holds
//! `CURRENT PENDING`) and from each node's `security.selinux` attribute; a host without SELinux
//! passes.

use super::UsedNode;
use super::{Host, Report, Request};

const ID: &str = "selinux.container-use-devices";
const LABEL: &str = "selinux.device-label";

/// The narrower booleans, by the label type they grant.
const NARROW: &[(&str, &str)] =
    &[("xserver_misc_device_t", "container_use_xserver_devices"), ("dri_device_t", "container_use_dri_devices")];

/// The type a node of this path is labelled by the policy (file contexts of the targeted policy),
/// where it matters here.
fn expected_type(node: &str) -> Option<&'static str> {
    if node.starts_with("/dev/nvidia") {
        Some("xserver_misc_device_t")
    } else if node.starts_with("/dev/dri/") {
        Some("dri_device_t")
    } else {
        None
    }
}

/// Whether the boolean `name` is on; `None` when the policy lacks it.
fn boolean(host: &Host, name: &str) -> Option<bool> {
    let v = host.read(format!("/sys/fs/selinux/booleans/{name}")).ok()?;
    Some(v.split_whitespace().next() == Some("1"))
}

/// The SELinux label of `path` (no link followed), without the trailing NUL.
pub fn label(path: &std::path::Path) -> Option<String> {
    let mut buf = [0u8; 256];
    let n = rustix::fs::lgetxattr(path, "security.selinux", &mut buf[..]).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    Some(text.trim_end_matches('\0').to_owned())
}

/// The type field of a label (`user:role:type:level`).
fn label_type(label: &str) -> &str {
    label.split(':').nth(2).unwrap_or("")
}

/// The SELinux checks for `request`, whose container gets `nodes`.
///
/// Long because it is a flat sequence: the mode, each boolean, then each node's label, each
/// reported under its own id.
pub fn check(host: &Host, request: &Request, nodes: &[UsedNode], r: &mut Report) {
    if request.cdi.is_empty() {
        r.skip_all(&[ID, LABEL], "the service asks for no devices");
        return;
    }
    let Ok(enforce) = host.read("/sys/fs/selinux/enforce") else {
        r.ok(ID, "SELinux is not enabled (no /sys/fs/selinux/enforce)");
        r.ok(LABEL, "SELinux is not enabled");
        return;
    };
    if enforce.trim() != "1" {
        r.ok(ID, "SELinux is permissive");
        r.ok(LABEL, "SELinux is permissive");
        return;
    }
    let broad = "/sys/fs/selinux/booleans/container_use_devices";
    match boolean(host, "container_use_devices") {
        Some(true) => {
            r.ok(ID, "SELinux enforces and container_use_devices is on");
            r.ok(LABEL, "container_use_devices grants every device label");
            return;
        }
        None => {
            r.skip(ID, format!("SELinux enforces but {broad} cannot be read: the policy may predate the boolean"));
            r.skip(LABEL, "the container policy's booleans cannot be read");
            return;
        }
        Some(false) => {}
    }
    // The broad boolean is off: each node needs a label that a narrower boolean grants, and
    // that boolean on.
    let mut off: Vec<(&str, &str)> = Vec::new();
    let mut looked = 0;
    for node in nodes {
        let Some(want) = expected_type(&node.host) else { continue };
        looked += 1;
        // Without a label to read (a copy of a host's files), the policy's label is assumed.
        let label = label(&host.path(&node.host));
        if label.is_none() {
            r.skip(LABEL, format!("{} has no SELinux label to read", node.host));
        }
        if let Some(label) = label.filter(|l| label_type(l) != want) {
            r.fail(
                LABEL,
                format!(
                    "{} is labelled {label}, not {want}: with container_use_devices off, no container may use it",
                    node.host
                ),
                format!("restorecon -v {}", node.host),
            );
            continue;
        }
        let (_, name) = NARROW.iter().find(|(t, _)| *t == want).copied().unwrap_or((want, "container_use_devices"));
        if boolean(host, name) != Some(true) && !off.iter().any(|(_, n)| *n == name) {
            off.push((node.host.as_str(), name));
        }
    }
    r.ok_unless_reported(LABEL, format!("the {looked} GPU device node(s) have the labels the policy gives them"));
    if looked == 0 {
        // Nothing is known of the nodes (the devices did not resolve): the broad boolean decides.
        r.fail(
            ID,
            format!(
                "SELinux enforces and container_use_devices is off ({broad}): the container may not use {}",
                request.cdi.join(", ")
            ),
            "setsebool -P container_use_devices on",
        );
        return;
    }
    if off.is_empty() {
        r.ok(ID, "SELinux enforces; the narrower container booleans grant every GPU device node");
        return;
    }
    let names: Vec<&str> = off.iter().map(|(_, n)| *n).collect();
    r.fail(
        ID,
        format!(
            "SELinux enforces and neither container_use_devices nor {} is on: the container may not use {}",
            names.join(" nor "),
            off.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ),
        format!("setsebool -P {}", names.iter().map(|n| format!("{n} on")).collect::<Vec<_>>().join(" ")),
    );
}
