//! podman: the unit's keys were chosen for the podman its generator saw (Quadlet rejects keys it
//! does not know, and options it lacks fail `podman run`). A podman changed since then needs a
//! `systemctl daemon-reload`. The installed version is read from the package database
//! (`/var/lib/dpkg/status`), because running podman would cost more than all the checks.

use super::{Host, Report, Request, Status};
use crate::podman::PodmanVersion;

const ID: &str = "podman.version";

/// The version dpkg records for the `podman` package (`5.4.2+ds1-2` → 5.4.2).
pub fn installed(host: &Host) -> Option<PodmanVersion> {
    let status = host.read("/var/lib/dpkg/status").ok()?;
    status.split("\n\n").find_map(|stanza| {
        let mut lines = stanza.lines();
        let is_podman = stanza.lines().any(|l| l == "Package: podman");
        let installed = stanza.lines().any(|l| l.starts_with("Status:") && l.ends_with(" installed"));
        let version = lines.find_map(|l| l.strip_prefix("Version: "))?;
        let upstream = version.split_once(':').map_or(version, |(_, v)| v);
        (is_podman && installed).then(|| PodmanVersion::parse(upstream)).flatten()
    })
}

/// The podman check for `request`.
pub fn check(host: &Host, request: &Request, r: &mut Report) {
    let Some(generated) = request.podman else {
        r.skip(ID, "the unit does not say which podman it was generated for");
        return;
    };
    let Some(now) = installed(host) else {
        r.skip(ID, "no podman package in /var/lib/dpkg/status (the installed version is read from dpkg only)");
        return;
    };
    let same = (now.0, now.1) == (generated.0, generated.1);
    if same {
        r.ok(ID, format!("the unit was generated for podman {generated}; {now} is installed"));
    } else if now < PodmanVersion::MIN {
        r.fail(
            ID,
            format!("podman {now} is installed; Quadlet needs {} or newer", PodmanVersion::MIN),
            "install podman 4.4 or newer",
        );
    } else {
        let status = if now < generated { Status::Error } else { Status::Warning };
        r.push(
            ID,
            status,
            format!("the unit was generated for podman {generated} but {now} is installed"),
            "systemctl daemon-reload",
        );
    }
}
