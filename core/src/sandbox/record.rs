//! The allow set of a running sandboxed service as its unit resolved it when it started:
//! written by `aictl sandbox allow` (root, in the unit's `ExecStartPre=`) to
//! `/run/aicontainers/sandbox/NAME.json` beside the hosts file, removed by `aictl sandbox
//! forget`, and read by the node agent for `Service1.SandboxAllowed` and to count verdicts from
//! the start on. The agent reads it with [`crate::fsutil::read_json_record`]: a regular file of at most
//! [`RECORD_MAX`] bytes, no link followed, naming the service it is read for.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::nft::Allowed;
use super::resolve::HOSTS_DIR;

/// The most a record may hold (256 entries of a few addresses each fit many times over).
pub const RECORD_MAX: u64 = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRecord {
    pub service: String,
    /// When the unit's `ExecStartPre=` installed the set (microseconds since the epoch, the
    /// journal's clock).
    pub started_usec: u64,
    pub allowed: Vec<Allowed>,
    /// The entries of `sandbox.egress` as the unit lists them, for the keeper to resolve again
    /// (empty in a record of an older `aictl`: the keeper leaves such a service alone).
    #[serde(default)]
    pub egress: Vec<String>,
    /// The unit's cgroup below the cgroup2 root, for the keeper to put back into the sets.
    #[serde(default)]
    pub cgroup: String,
}

/// The record of `service` below `root` (`/` on a live host).
pub fn path(root: &Path, service: &str) -> PathBuf {
    root.join(HOSTS_DIR.trim_start_matches('/')).join(format!("{service}.json"))
}

/// Reads the record of `service`: `Ok(None)` when the service is not running sandboxed.
pub fn read(root: &Path, service: &str) -> Result<Option<AllowRecord>, String> {
    let path = path(root, service);
    crate::fsutil::read_service_record(&path, RECORD_MAX, "an allow record", service, |r: &AllowRecord| &r.service)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Proto;

    #[test]
    fn round_trip_and_hostile_files() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(HOSTS_DIR.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(read(root.path(), "coder").unwrap(), None);
        let rec = AllowRecord {
            service: "coder".into(),
            started_usec: 7,
            allowed: vec![Allowed { addr: "fd09::2".parse().unwrap(), proto: Proto::Udp, port: 53 }],
            egress: vec!["[fd09::2]:53/udp".into()],
            cgroup: "aicontainers.slice/aicontainers-agents.slice/coder.service".into(),
        };
        std::fs::write(path(root.path(), "coder"), serde_json::to_vec(&rec).unwrap()).unwrap();
        assert_eq!(read(root.path(), "coder").unwrap(), Some(rec.clone()));
        assert!(read(root.path(), "coder2").unwrap().is_none());
        // Another service's record under this name, unknown fields, a bad protocol or address.
        std::fs::copy(path(root.path(), "coder"), path(root.path(), "web")).unwrap();
        assert!(read(root.path(), "web").unwrap_err().contains("another service"));
        for bad in [
            r#"{"service":"x","started_usec":1,"allowed":[],"extra":1}"#,
            r#"{"service":"x","started_usec":1,"allowed":[{"addr":"1.2.3.4","proto":"icmp","port":1}]}"#,
            r#"{"service":"x","started_usec":1,"allowed":[{"addr":"host","proto":"tcp","port":1}]}"#,
            r#"{"service":"x","started_usec":-1,"allowed":[]}"#,
        ] {
            std::fs::write(path(root.path(), "x"), bad).unwrap();
            assert!(read(root.path(), "x").is_err(), "{bad}");
        }
        // A link, a FIFO and an oversized file are refused without blocking.
        std::os::unix::fs::symlink("/etc/passwd", path(root.path(), "link")).unwrap();
        assert!(read(root.path(), "link").is_err());
        nix::unistd::mkfifo(&path(root.path(), "fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(read(root.path(), "fifo").unwrap_err().contains("FIFO"));
        std::fs::write(path(root.path(), "big"), vec![b' '; RECORD_MAX as usize + 1]).unwrap();
        assert!(read(root.path(), "big").is_err());
    }
}
