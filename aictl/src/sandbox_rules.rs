//! What the root side of the sandbox (`aictl sandbox allow`, `forget` and `keep`) shares: the
//! checked service name, nft(8), the allow records and the one lock they all take around a
//! change, so that none of them undoes another's.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use aicontainers::sandbox::record::AllowRecord;
use aicontainers::sandbox::resolve;
use aicontainers::spec::check_service_name;

/// nftables' command line tool.
pub const NFT: &str = "/usr/sbin/nft";

/// The lock `allow`, `forget` and the keeper hold around their changes.
pub const LOCK: &str = "/run/aicontainers/sandbox/.lock";

/// A service name a sandbox takes (it appears in log prefixes, file names and rulesets).
pub fn checked_name(name: &str) -> Result<(), String> {
    check_service_name(name)?;
    if name.len() > aicontainers::sandbox::NAME_MAX {
        return Err(format!(
            "`{name}`: a sandboxed service's name is at most {} bytes",
            aicontainers::sandbox::NAME_MAX
        ));
    }
    Ok(())
}

/// Applies `ruleset` with one `nft -f` (one transaction: all of it or nothing).
pub fn nft_apply(ruleset: &str) -> Result<(), String> {
    let mut child = Command::new(NFT)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{NFT}: {e}"))?;
    child.stdin.take().expect("piped").write_all(ruleset.as_bytes()).map_err(|e| format!("{NFT}: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("{NFT}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{NFT} -f refused the ruleset: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Writes the allow record of a running service (atomically).
pub fn write_record(record: &AllowRecord) -> Result<(), String> {
    let path = aicontainers::sandbox::record::path(Path::new("/"), &record.service);
    let json = serde_json::to_vec(record).map_err(|e| format!("{}: {e}", path.display()))?;
    aicontainers::fsutil::write_durable(&path, &json, 0o644).map_err(|e| format!("{}: {e}", path.display()))
}

/// Takes the lock (see the module's documentation), creating its directory if need be.
pub fn lock() -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    std::fs::create_dir_all(resolve::HOSTS_DIR).map_err(|e| format!("{}: {e}", resolve::HOSTS_DIR))?;
    aicontainers::fsutil::lock(Path::new(LOCK), nix::fcntl::FlockArg::LockExclusive, 0o600)
        .map_err(|e| format!("{LOCK}: {e}"))
}
