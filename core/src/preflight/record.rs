//! The last preflight outcome of each service, kept where the agent can read it.
//!
//! Layout: one file per service, `RECORD_DIR/NAME.json`, written whole (temporary file, then
//! rename) by whoever ran the checks as root: a unit's `ExecStartPre=` on every start, and
//! `aicontainers-preflight.service` (`aictl preflight --record`) when the agent asks for a
//! re-run. The agent runs with a private `/dev` and without capabilities, so it cannot run the
//! checks itself and see what podman will see; it watches this directory instead.
//!
//! Invariant: a record holds only the problems (warnings and errors), and a reader takes a file
//! for what it says only if it is a regular file of at most [`RECORD_MAX`] bytes whose `service`
//! is its own name; anything else is reported as unreadable, never as "no problem".

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Finding, Host, Status};

/// Where the records live on a host (below [`Host::root`]); made by the units'
/// `RuntimeDirectory=` and by tmpfiles.d.
pub const RECORD_DIR: &str = "/run/aicontainers-preflight";

/// The largest record read (a few hundred problems).
pub const RECORD_MAX: u64 = 256 * 1024;

/// One problem, as recorded and as the agent shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub id: String,
    /// `warning` or `error`.
    pub status: String,
    pub message: String,
    pub fix: String,
}

/// What one run of the checks found for one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub service: String,
    /// When the checks ran, in seconds since the epoch.
    pub checked_at: u64,
    /// How many checks ran (ok and skipped included).
    pub checks: u32,
    pub problems: Vec<Problem>,
}

impl Record {
    /// The record of `findings`, all of one service.
    pub fn of(service: &str, findings: &[Finding]) -> Record {
        let checked_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Record {
            service: service.to_owned(),
            checked_at,
            checks: u32::try_from(findings.len()).unwrap_or(u32::MAX),
            problems: findings
                .iter()
                .filter(|f| matches!(f.status, Status::Warning | Status::Error))
                .map(|f| Problem {
                    id: f.id.to_owned(),
                    status: f.status.to_string(),
                    message: f.message.clone(),
                    fix: f.fix.clone(),
                })
                .collect(),
        }
    }

    /// Whether any problem stops the start.
    pub fn has_error(&self) -> bool {
        self.problems.iter().any(|p| p.status == "error")
    }
}

/// The record file of `service` on `host`.
pub fn path(host: &Host, service: &str) -> PathBuf {
    host.path(RECORD_DIR).join(format!("{service}.json"))
}

/// Writes `record` whole (readers see the old file or the new one), creating the directory.
pub fn write(host: &Host, record: &Record) -> std::io::Result<()> {
    let dir = host.path(RECORD_DIR);
    std::fs::create_dir_all(&dir)?;
    let data = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    crate::fsutil::write_durable(&path(host, &record.service), &data, 0o644)
}

/// Removes the records of services not in `keep`; returns what it removed.
pub fn prune(host: &Host, keep: &[String]) -> Vec<String> {
    crate::fsutil::prune_json(&host.path(RECORD_DIR), keep)
}

/// Reads the record of `service` from `dir`: `Ok(None)` when there is none yet, an error (a
/// sentence) when the file is there but is not a record of that service.
pub fn read(dir: &Path, service: &str) -> Result<Option<Record>, String> {
    let path = dir.join(format!("{service}.json"));
    crate::fsutil::read_service_record(&path, RECORD_MAX, "a preflight record", service, |r: &Record| &r.service)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &'static str, status: Status) -> Finding {
        Finding { service: "chat".into(), id, status, message: format!("{id} says"), fix: "do it".into() }
    }

    #[test]
    fn a_record_keeps_only_problems_and_reads_back() {
        let tmp = tempfile::tempdir().expect("tmp");
        let host = Host::new(tmp.path());
        let findings = [
            finding("cdi.no-spec", Status::Ok),
            finding("driver.xid", Status::Warning),
            finding("cdi.stale-driver", Status::Error),
            finding("selinux.container-use-devices", Status::Skipped),
        ];
        let record = Record::of("chat", &findings);
        assert_eq!(record.checks, 4);
        assert_eq!(
            record.problems.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["driver.xid", "cdi.stale-driver"]
        );
        assert!(record.has_error());
        write(&host, &record).expect("write");
        assert_eq!(read(&host.path(RECORD_DIR), "chat").expect("read"), Some(record));
        assert_eq!(read(&host.path(RECORD_DIR), "other").expect("none"), None);
        assert_eq!(prune(&host, &["other".into()]), ["chat"]);
        assert_eq!(read(&host.path(RECORD_DIR), "chat").expect("gone"), None);
    }

    #[test]
    fn hostile_record_files_are_errors_not_clean_bills() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        // A link (even to a good record), a FIFO, a directory, garbage, another service's
        // record, and one too large: each is an error naming the file.
        let good = serde_json::to_vec(&Record::of("a", &[])).expect("json");
        std::fs::write(dir.join("target"), &good).expect("write");
        std::os::unix::fs::symlink(dir.join("target"), dir.join("a.json")).expect("link");
        nix::unistd::mkfifo(&dir.join("b.json"), nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("fifo");
        std::fs::create_dir(dir.join("c.json")).expect("dir");
        std::fs::write(dir.join("d.json"), b"\x00\xff{not json").expect("write");
        std::fs::write(dir.join("e.json"), &good).expect("write");
        std::fs::write(dir.join("f.json"), vec![b' '; RECORD_MAX as usize + 1]).expect("write");
        for (name, says) in [
            ("a", "not a regular file"),
            ("b", "not a regular file"),
            ("c", "not a regular file"),
            ("d", "not a preflight record"),
            ("e", "a record of another service"),
            ("f", "at most"),
        ] {
            let err = read(dir, name).expect_err(name);
            assert!(err.contains(&format!("{name}.json")) && err.contains(says), "{name}: {err}");
        }
    }
}
