//! Rescans when the advisories or the scan policy change (docs/scan.md), without polling.
//!
//! The agent cannot read images (they are in each account's storage, read as the account by
//! root's `aictl scan`): it watches the advisory directory (the policy's `advisories`, and its
//! subdirectories) and the policy's directory with inotify, as it does for preflight
//! ([`crate::preflight::watch`]), and starts `aicontainers-scan.service` once per burst of
//! changes. A rescan of an image already inventoried is only a match of its kept SBOM.
//!
//! inotify does not watch below a directory: the subdirectories that exist are listed when the
//! watch is set up, and again after each burst, before the scan it starts: a directory a
//! refresh adds is watched before that scan reads it, so a file written there while the scan
//! runs starts the next one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aicontainers::scan::policy::{Policy, ADVISORIES_DIR, POLICY_PATH};

use crate::preflight::Event;

/// The unit that scans every service and records its verdict.
pub const SCAN_UNIT: &str = "aicontainers-scan.service";

/// How long a burst of unit starts may last before their scans are started together.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(300);

/// The unit that scans service `name` when its image ID is new: `aicontainers-scan@NAME.service`
/// (a service name is a valid unit instance as it is: letters, digits, `-`, `_`, `.`); `None`
/// for anything that is not a service name.
pub fn instance_unit(name: &str) -> Option<String> {
    aicontainers::spec::check_service_name(name).ok()?;
    Some(format!("aicontainers-scan@{name}.service"))
}

/// Waits for the next unit that became active, then takes every one of the burst that follows
/// (until [`SETTLE`] passes without one); returns them once each, or `None` when the sender is
/// gone.
pub async fn started(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Option<BTreeSet<String>> {
    let mut units = BTreeSet::from([rx.recv().await?]);
    while let Ok(Some(unit)) = tokio::time::timeout(SETTLE, rx.recv()).await {
        units.insert(unit);
    }
    Some(units)
}

/// The most directories watched below the advisory directory (OSV exports hold a few dozen).
const MAX_DIRS: usize = 4096;
/// How deep below the advisory directory directories are watched.
const MAX_DEPTH: usize = 4;

/// What is watched below `root`: the policy's directory, the advisory directory the policy
/// names (the default one while the policy cannot be read) and its subdirectories.
pub fn watched_dirs(root: &Path) -> Vec<(PathBuf, Event)> {
    let host = aicontainers::preflight::Host::new(root);
    let policy = host.path(POLICY_PATH);
    let advisories = Policy::load(&policy).map_or_else(|_| PathBuf::from(ADVISORIES_DIR), |p| p.advisories);
    let mut dirs = Vec::new();
    if let Some(parent) = policy.parent() {
        dirs.push((parent.to_owned(), Event::Inputs));
    }
    let top = host.path(&advisories);
    // Breadth first, links not followed, bounded.
    let mut level = vec![top.clone()];
    dirs.push((top, Event::Inputs));
    for _ in 0..MAX_DEPTH {
        let mut next = Vec::new();
        for dir in &level {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) && dirs.len() < MAX_DIRS {
                    dirs.push((entry.path(), Event::Inputs));
                    next.push(entry.path());
                }
            }
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    dirs.sort_by(|a, b| a.0.cmp(&b.0));
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_service_names_make_scan_units() {
        assert_eq!(instance_unit("llama-3.1_8b").as_deref(), Some("aicontainers-scan@llama-3.1_8b.service"));
        for hostile in ["", "../x", "a b", "a/b", "-a", "a@b", "a\nb", "x.service;rm"] {
            assert_eq!(instance_unit(hostile), None, "{hostile:?}");
        }
    }

    #[test]
    fn the_policy_names_the_advisories_and_subdirectories_are_watched() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        let dirs = |root: &Path| watched_dirs(root).into_iter().map(|(d, _)| d).collect::<Vec<_>>();
        // Nothing there yet: the default places (watched through their parents by watch()).
        assert_eq!(dirs(root), [root.join("etc/aicontainers/scan"), root.join("var/lib/aicontainers/advisories")]);
        std::fs::create_dir_all(root.join("etc/aicontainers/scan")).expect("mkdir");
        std::fs::write(root.join("etc/aicontainers/scan/policy.toml"), "advisories = \"/srv/osv\"\n").expect("write");
        std::fs::create_dir_all(root.join("srv/osv/debian/13")).expect("mkdir");
        std::fs::create_dir_all(root.join("srv/osv/alpine")).expect("mkdir");
        std::os::unix::fs::symlink("/", root.join("srv/osv/loop")).expect("symlink");
        assert_eq!(
            dirs(root),
            [
                root.join("etc/aicontainers/scan"),
                root.join("srv/osv"),
                root.join("srv/osv/alpine"),
                root.join("srv/osv/debian"),
                root.join("srv/osv/debian/13"),
            ],
            "links are not followed"
        );
        // A policy that cannot be read: the default directory, still watched.
        std::fs::write(root.join("etc/aicontainers/scan/policy.toml"), "advisories = 1\n").expect("write");
        assert!(dirs(root).contains(&root.join("var/lib/aicontainers/advisories")));
    }
}
