//! What scans of services keep: the SBOM of each image digest, and each service's last verdict.
//!
//! Layout below [`SCAN_DIR`] (root's, `0755`; `aicontainers-scan.service` and `aictl scan` as
//! root write it, the start gate and the agent read it):
//!
//! ```text
//! sbom/sha256-HEX.cdx.json   CycloneDX 1.5 of one image (by its image ID): never made twice
//! verdict/NAME.json          the last scan of service NAME: image, digest, every finding
//! advisories.index.json      the parsed advisories (crate::scan::osv, Index::load_dir_cached)
//! ```
//!
//! A verdict keeps every finding, not the policy's judgement of them: the start gate judges
//! them with the policy of the moment, so an allowlist entry that expires, or a policy that is
//! tightened, applies at the next start without a rescan. Every file is written whole
//! (temporary file, rename) and read only if it is a regular file within a cap whose `service`
//! is its own name; anything else is unreadable, never "no findings".

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::osv::Finding;

/// Where scans keep their state on a host.
pub const SCAN_DIR: &str = "/var/lib/aicontainers/scan";

/// The largest verdict read (tens of thousands of findings).
pub const VERDICT_MAX: u64 = 32 << 20;

/// The most verdicts [`Store::read_verdicts`] reads (a host runs far fewer services).
pub const VERDICTS_MAX: usize = 10_000;

/// The last scan of one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub service: String,
    /// The image as the service file names it.
    pub image: String,
    /// The image ID (`sha256:HEX`) that was inventoried.
    pub digest: String,
    /// When the findings were matched, in seconds since the epoch.
    pub scanned_at: u64,
    /// Every finding of the image, before the policy.
    pub findings: Vec<Finding>,
}

/// The scan state of a host, below a root directory tests can swap.
#[derive(Clone, Debug)]
pub struct Store {
    pub dir: PathBuf,
}

impl Store {
    /// `$AICONTAINERS_SCAN_DIR`, else [`SCAN_DIR`].
    pub fn from_env() -> Store {
        Store { dir: std::env::var_os("AICONTAINERS_SCAN_DIR").map_or_else(|| PathBuf::from(SCAN_DIR), PathBuf::from) }
    }

    pub fn sbom_path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest_hex(digest)?;
        Some(self.dir.join("sbom").join(format!("sha256-{hex}.cdx.json")))
    }

    pub fn verdict_path(&self, service: &str) -> PathBuf {
        self.dir.join("verdict").join(format!("{service}.json"))
    }

    pub fn advisory_cache(&self) -> PathBuf {
        self.dir.join("advisories.index.json")
    }

    /// Keeps the SBOM of `digest`.
    pub fn write_sbom(&self, digest: &str, data: &[u8]) -> std::io::Result<PathBuf> {
        let path =
            self.sbom_path(digest).ok_or_else(|| std::io::Error::other(format!("{digest:?} is not sha256:HEX")))?;
        std::fs::create_dir_all(self.dir.join("sbom"))?;
        crate::fsutil::write_durable(&path, data, 0o644)?;
        Ok(path)
    }

    /// Records `verdict`, whole.
    pub fn write_verdict(&self, verdict: &Verdict) -> std::io::Result<()> {
        crate::spec::check_service_name(&verdict.service).map_err(std::io::Error::other)?;
        std::fs::create_dir_all(self.dir.join("verdict"))?;
        let data = serde_json::to_vec(verdict).map_err(std::io::Error::other)?;
        crate::fsutil::write_durable(&self.verdict_path(&verdict.service), &data, 0o644)
    }

    /// The last verdict of `service`: `Ok(None)` when it was never scanned, an error (a
    /// sentence naming the file) when the file is there but is not its verdict.
    pub fn read_verdict(&self, service: &str) -> Result<Option<Verdict>, String> {
        crate::spec::check_service_name(service)?;
        let path = self.verdict_path(service);
        let data = match super::osv::read_capped(&path, VERDICT_MAX) {
            Ok(data) => data,
            Err(_) if std::fs::symlink_metadata(&path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) => {
                return Ok(None)
            }
            Err(d) => return Err(d.to_string()),
        };
        let verdict: Verdict = serde_json::from_slice(&data)
            .map_err(|e| format!("{}:{}:{}: not a scan verdict: {e}", path.display(), e.line(), e.column()))?;
        if verdict.service != service {
            return Err(format!("{}: holds the verdict of {:?}, not of {service:?}", path.display(), verdict.service));
        }
        Ok(Some(verdict))
    }

    /// Every verdict in the directory, by service, and a sentence for each file that is there
    /// but cannot be taken (named like a verdict but unreadable, or with an image ID that is not
    /// `sha256:HEX`). Files whose names are not `NAME.json` of a service name (temporary files)
    /// are passed over; at most [`VERDICTS_MAX`] are read. A missing directory holds none.
    pub fn read_verdicts(&self) -> (BTreeMap<String, Verdict>, Vec<String>) {
        let dir = self.dir.join("verdict");
        let (mut found, mut problems) = (BTreeMap::new(), Vec::new());
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (found, problems),
            Err(e) => return (found, vec![format!("{}: cannot list: {e}", dir.display())]),
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_owned))
            .filter(|n| crate::spec::check_service_name(n).is_ok())
            .collect();
        names.sort();
        if names.len() > VERDICTS_MAX {
            problems.push(format!("{}: {} verdicts, only the first {VERDICTS_MAX} read", dir.display(), names.len()));
            names.truncate(VERDICTS_MAX);
        }
        for name in names {
            match self.read_verdict(&name) {
                Ok(Some(v)) if digest_hex(&v.digest).is_some() => {
                    found.insert(name, v);
                }
                Ok(Some(v)) => problems.push(format!(
                    "{}: the image ID {:?} is not sha256:HEX",
                    self.verdict_path(&name).display(),
                    crate::diag::escape(&v.digest)
                )),
                // Gone between the listing and the read.
                Ok(None) => {}
                Err(why) => problems.push(why),
            }
        }
        (found, problems)
    }

    /// Removes the verdicts of services not in `keep`.
    pub fn prune(&self, keep: &[String]) -> Vec<String> {
        crate::fsutil::prune_json(&self.dir.join("verdict"), keep)
    }
}

/// The 64 hex digits of a `sha256:HEX` image ID (as podman prints `{{.Id}}`, with or without
/// the prefix), lowercase; `None` for anything else, so a digest can name a file safely.
pub fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then_some(hex)
}

/// What makes a finding the same one in two scans: advisory, package and installed version.
fn finding_key(f: &Finding) -> (&str, &str, &str) {
    (&f.id, &f.package, &f.installed)
}

/// The findings of `after` that `before` did not have (same advisory, package and installed
/// version); all of them when there was no previous scan.
pub fn new_findings<'a>(before: Option<&Verdict>, after: &'a Verdict) -> Vec<&'a Finding> {
    let old: BTreeSet<_> = before.map(|b| b.findings.iter().map(finding_key).collect()).unwrap_or_default();
    after.findings.iter().filter(|f| !old.contains(&finding_key(f))).collect()
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::Severity;

    fn store() -> (tempfile::TempDir, Store) {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().to_owned();
        (t, Store { dir })
    }

    #[test]
    fn verdicts_round_trip_and_refuse_what_is_not_theirs() {
        let (_t, s) = store();
        assert_eq!(s.read_verdict("chat"), Ok(None));
        let v = Verdict {
            service: "chat".into(),
            image: "localhost/chat:1".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            scanned_at: 1,
            findings: vec![Finding {
                id: "X".into(),
                aliases: vec![],
                package: "p".into(),
                ecosystem: "Debian:13".into(),
                installed: "1".into(),
                fixed: None,
                severity: Severity::High,
            }],
        };
        s.write_verdict(&v).expect("write");
        assert_eq!(s.read_verdict("chat"), Ok(Some(v.clone())));
        // Another service's verdict copied under this name is not taken for this one's.
        std::fs::copy(s.verdict_path("chat"), s.verdict_path("web")).expect("copy");
        assert!(s.read_verdict("web").unwrap_err().contains("not of \"web\""));
        // A FIFO in its place would block a reader; a link could point anywhere.
        let fifo = s.verdict_path("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
        assert!(s.read_verdict("fifo").is_err());
        std::os::unix::fs::symlink("/dev/zero", s.verdict_path("zero")).expect("symlink");
        assert!(s.read_verdict("zero").is_err());
        std::fs::write(s.verdict_path("junk"), b"\xff\x00{").expect("write");
        assert!(s.read_verdict("junk").unwrap_err().contains("not a scan verdict"));
        // A name that is not a service's cannot reach outside the directory.
        assert!(s.read_verdict("../../etc/passwd").is_err());
        assert_eq!(s.prune(&["chat".into()]).len(), 4);
    }

    #[test]
    fn digests_name_files_only_when_they_are_sha256() {
        let (_t, s) = store();
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(digest_hex(&format!("sha256:{hex}")), Some(hex.as_str()));
        assert_eq!(digest_hex(&hex), Some(hex.as_str()));
        for bad in ["sha256:../../x", "", "sha512:00", &"A".repeat(64), &format!("{hex}0")] {
            assert_eq!(digest_hex(bad), None, "{bad}");
            assert!(s.sbom_path(bad).is_none());
        }
    }
}
