//! Rootless checks: the account podman runs as, its subordinate IDs, lingering, and the cgroup
//! v2 controllers the unit needs.

use super::{Account, Host, Report, Request};
use crate::account::SUBID_RANGE;

const IDS: &[&str] =
    &["rootless.account", "rootless.subids", "rootless.linger", "rootless.cgroup-v2", "rootless.cpuset"];

/// The rootless checks for `request`; `account` is the lookup of `request.account`.
pub fn check(host: &Host, request: &Request, account: &Result<Account, String>, r: &mut Report) {
    let name = &request.account;
    match account {
        Err(why) => {
            r.fail("rootless.account", why.clone(), format!("aictl account prepare {name}"));
            r.skip_all(&IDS[1..3], "the account does not exist");
        }
        Ok(a) if a.uid == 0 => {
            r.fail(
                "rootless.account",
                format!("account `{name}` has UID 0; services run rootless"),
                "set `run-as` to an unprivileged account",
            );
            r.skip_all(&IDS[1..3], "the account is root");
        }
        Ok(a) => {
            r.ok("rootless.account", format!("{name} has UID {}", a.uid));
            subids(host, a, r);
            let linger = format!("/var/lib/systemd/linger/{name}");
            if host.exists(&linger) {
                r.ok("rootless.linger", format!("lingering is on for {name}"));
            } else {
                r.fail(
                    "rootless.linger",
                    format!("lingering is off for {name} (no {linger}): its user manager and /run/user/{} come and go with logins", a.uid),
                    format!("loginctl enable-linger {name}"),
                );
            }
        }
    }
    let controllers = host.read("/sys/fs/cgroup/cgroup.controllers");
    match &controllers {
        Ok(_) => r.ok("rootless.cgroup-v2", "the unified cgroup v2 hierarchy is mounted on /sys/fs/cgroup"),
        Err(_) => r.fail(
            "rootless.cgroup-v2",
            "/sys/fs/cgroup is not the unified cgroup v2 hierarchy (no cgroup.controllers): rootless podman cannot limit or pin the service",
            "boot with systemd.unified_cgroup_hierarchy=1 (and without cgroup_no_v1=/systemd.legacy_systemd_cgroup_controller)",
        ),
    }
    if !request.numa {
        r.skip("rootless.cpuset", "NUMA pinning is off for this service");
    } else {
        match &controllers {
            Err(_) => r.skip("rootless.cpuset", "no cgroup v2 hierarchy"),
            Ok(c) if c.split_whitespace().any(|w| w == "cpuset") => {
                r.ok("rootless.cpuset", "the cpuset controller is available to cgroup v2")
            }
            Ok(c) => r.fail(
                "rootless.cpuset",
                format!("NUMA pinning needs the cpuset controller, but /sys/fs/cgroup/cgroup.controllers has only: {}", c.trim()),
                "unmount any cgroup v1 cpuset hierarchy (it holds the controller) and reboot without cgroup_disable=cpuset",
            ),
        }
    }
}

fn subids(host: &Host, a: &Account, r: &mut Report) {
    let as_core = crate::account::Account { name: a.name.clone(), uid: a.uid, gid: a.gid, home: Default::default() };
    let mut short = Vec::new();
    for (file, what) in [("/etc/subuid", "UIDs"), ("/etc/subgid", "GIDs")] {
        let have = host.read(file).map_or(0, |t| crate::account::subid_count(&t, &as_core));
        if have < SUBID_RANGE {
            short.push(format!("{have} subordinate {what} in {file}"));
        }
    }
    if short.is_empty() {
        r.ok("rootless.subids", format!("{} has {SUBID_RANGE} subordinate UIDs and GIDs", a.name));
    } else {
        r.fail(
            "rootless.subids",
            format!("{} has {}; a container needs {SUBID_RANGE}", a.name, short.join(" and ")),
            format!("aictl account prepare {}", a.name),
        );
    }
}
