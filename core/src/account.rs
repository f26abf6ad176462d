//! The unprivileged accounts services run as, and what makes one ready for rootless podman.
//!
//! Ready means: the account exists and is not root, and it owns a range of subordinate UIDs and
//! GIDs (`/etc/subuid`, `/etc/subgid`) for the container's user namespace. Lingering (so the
//! account's user manager and `/run/user/UID` exist without a login) is arranged by the unit
//! itself, which requires `user@UID.service`; `aictl account prepare` also turns lingering on so
//! `podman` used by hand as that account behaves the same.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Subordinate IDs a container needs for the usual 0..65535 user namespace.
pub const SUBID_RANGE: u64 = 65536;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl Account {
    /// The account's runtime directory, created by `user-runtime-dir@UID.service`.
    pub fn runtime_dir(&self) -> String {
        format!("/run/user/{}", self.uid)
    }
}

/// Looks up accounts. The generator uses the host's; tests and `aictl render --account` a fixed set.
pub trait Accounts {
    fn lookup(&self, name: &str) -> Result<Account, String>;
}

/// The host's accounts (NSS), with subordinate ranges from `/etc/subuid` and `/etc/subgid`.
#[derive(Debug)]
pub struct HostAccounts {
    pub subuid: PathBuf,
    pub subgid: PathBuf,
}

impl Default for HostAccounts {
    fn default() -> Self {
        HostAccounts { subuid: "/etc/subuid".into(), subgid: "/etc/subgid".into() }
    }
}

impl Accounts for HostAccounts {
    fn lookup(&self, name: &str) -> Result<Account, String> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|e| format!("cannot look up account `{name}`: {e}"))?
            .ok_or_else(|| format!("account `{name}` does not exist; create it with `aictl account prepare {name}`"))?;
        let account = Account { name: name.to_owned(), uid: user.uid.as_raw(), gid: user.gid.as_raw(), home: user.dir };
        if account.uid == 0 {
            return Err(format!("account `{name}` has UID 0; services run rootless"));
        }
        if account.gid == 0 {
            return Err(format!(
                "account `{name}` has primary group 0 (root), so its files and processes would be root's group; services run rootless: give it a group of its own"
            ));
        }
        for (file, what) in [(&self.subuid, "UIDs"), (&self.subgid, "GIDs")] {
            let text = fs::read_to_string(file).unwrap_or_default();
            let have = subid_count(&text, &account);
            if have < SUBID_RANGE {
                return Err(format!(
                    "account `{name}` has {have} subordinate {what} in {}, needs {SUBID_RANGE}; run `aictl account prepare {name}`",
                    file.display()
                ));
            }
        }
        Ok(account)
    }
}

/// How many subordinate IDs `account` owns in a subuid/subgid file (by name or by UID).
/// Counts add up without overflowing (a file may hold any numbers).
pub fn subid_count(text: &str, account: &Account) -> u64 {
    let uid = account.uid.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, _start, count) = (f.next()?, f.next()?, f.next()?);
            (who == account.name || who == uid).then(|| count.parse::<u64>().ok()).flatten()
        })
        .fold(0u64, u64::saturating_add)
}

/// A fixed set of accounts, for rendering without the host (tests, planning for another machine).
#[derive(Clone, Debug, Default)]
pub struct FixedAccounts(pub BTreeMap<String, Account>);

impl FixedAccounts {
    /// Accounts named as `NAME:UID` (GID = UID, home `/var/lib/NAME`).
    pub fn parse(specs: &[String]) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for spec in specs {
            let (name, uid) = spec.split_once(':').ok_or_else(|| format!("`{spec}`: expected NAME:UID"))?;
            let uid: u32 = uid.parse().map_err(|_| format!("`{spec}`: `{uid}` is not a UID"))?;
            map.insert(
                name.to_owned(),
                Account { name: name.to_owned(), uid, gid: uid, home: Path::new("/var/lib").join(name) },
            );
        }
        Ok(FixedAccounts(map))
    }
}

impl Accounts for FixedAccounts {
    fn lookup(&self, name: &str) -> Result<Account, String> {
        self.0.get(name).cloned().ok_or_else(|| format!("account `{name}` is not among the given accounts"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_ranges_by_name_or_uid() {
        let a = Account { name: "aimodels".into(), uid: 990, gid: 990, home: "/var/lib/aimodels".into() };
        assert_eq!(subid_count("aimodels:100000:65536\n", &a), 65536);
        assert_eq!(subid_count("990:100000:65536\nother:1:5\n", &a), 65536);
        assert_eq!(subid_count("# aimodels:1:1\nother:1:5\n", &a), 0);
        let huge = format!("aimodels:1:{max}\naimodels:1:{max}\n990:1:{max}\n", max = u64::MAX);
        assert_eq!(subid_count(&huge, &a), u64::MAX, "saturates instead of overflowing");
    }
}
