//! SELinux: rootless devices are bind mounts that keep their host label, so with SELinux
//! enforcing a container may use them only when the `container_use_devices` boolean is on.
//! Read from selinuxfs directly (`/sys/fs/selinux/enforce`, `.../booleans/NAME`, which holds
//! `CURRENT PENDING`); a host without SELinux passes.

use super::{Host, Report, Request};

const ID: &str = "selinux.container-use-devices";

/// The SELinux check for `request`.
pub fn check(host: &Host, request: &Request, r: &mut Report) {
    if request.cdi.is_empty() {
        r.skip(ID, "the service asks for no devices");
        return;
    }
    let Ok(enforce) = host.read("/sys/fs/selinux/enforce") else {
        r.ok(ID, "SELinux is not enabled (no /sys/fs/selinux/enforce)");
        return;
    };
    if enforce.trim() != "1" {
        r.ok(ID, "SELinux is permissive");
        return;
    }
    let path = "/sys/fs/selinux/booleans/container_use_devices";
    match host.read(path) {
        Err(e) => {
            r.skip(ID, format!("SELinux enforces but {path} cannot be read ({e}): the policy may predate the boolean"))
        }
        Ok(v) if v.split_whitespace().next() == Some("1") => {
            r.ok(ID, "SELinux enforces and container_use_devices is on")
        }
        Ok(_) => r.fail(
            ID,
            format!(
                "SELinux enforces and container_use_devices is off ({path}): the container may not use {}",
                request.cdi.join(", ")
            ),
            "setsebool -P container_use_devices on",
        ),
    }
}
