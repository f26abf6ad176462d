//! `aictl sandbox`: what a sandboxed service's unit runs as root around podman (`allow` before,
//! `forget` after; docs/sandbox.md), and `log`, its connection attempts from the journal.

use std::path::Path;
use std::process::{Command, ExitCode};

use aicontainers::sandbox::audit::{self, Verdict};
use aicontainers::sandbox::record::AllowRecord;
use aicontainers::sandbox::{nft, resolve, Egress};

use crate::sandbox_rules::{checked_name, lock, nft_apply, write_record};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum SandboxCommand {
    /// Install service NAME's allow sets: resolve its names, pin them in its hosts file, and
    /// point its unit's cgroup at them (its unit runs this as root before podman).
    #[command(hide = true)]
    Allow {
        name: String,
        /// The entries of sandbox.egress, as the unit lists them.
        #[arg(last = true)]
        egress: Vec<String>,
    },
    /// Take a stopped unit's cgroup out of the sets (its unit runs this as root after podman).
    #[command(hide = true)]
    Forget { name: String },
    /// Keep the running sandboxed services' rules current: names resolved again on their TTL,
    /// tables put back when deleted (aicontainers-sandbox.service runs this as root).
    #[command(hide = true)]
    Keep,
    /// Resolve NAMES with the host's resolver and print them as JSON (`allow` runs this in a
    /// transient unit of its own, outside the sandboxed cgroup).
    #[command(hide = true)]
    Resolve { names: Vec<String> },
    /// Connection attempts of sandboxed service NAME: time, verdict, protocol, destination, port
    /// (the entries aicontainersd forwards to the journal; see `journalctl -u NAME
    /// SANDBOX_VERDICT=denied`).
    Log {
        name: String,
        /// Only entries since this time, as journalctl(1) takes it (`-1h`, `today`).
        #[arg(long)]
        since: Option<String>,
    },
}

pub fn run(command: SandboxCommand) -> Result<ExitCode, String> {
    match command {
        SandboxCommand::Allow { name, egress } => allow(&name, &egress),
        SandboxCommand::Forget { name } => forget(&name),
        SandboxCommand::Keep => crate::sandbox_keeper::keep(),
        SandboxCommand::Resolve { names } => resolve_names(&names),
        SandboxCommand::Log { name, since } => log(&name, since.as_deref()),
    }
}

/// The calling unit's cgroup, which must be NAME's own.
fn own_cgroup(name: &str) -> Result<String, String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let cgroup = nft::unit_cgroup(&text)?;
    if cgroup.rsplit('/').next() != Some(&format!("{name}.service")) {
        return Err(format!("run from {name}.service (ExecStartPre=/ExecStopPost=), not from {cgroup}"));
    }
    Ok(cgroup)
}

fn allow(name: &str, entries: &[String]) -> Result<ExitCode, String> {
    checked_name(name)?;
    let egress: Vec<Egress> = entries.iter().map(|e| Egress::parse(e)).collect::<Result<_, _>>()?;
    let cgroup = own_cgroup(name)?;
    let looked_up = look_up_outside(&egress)?;
    let (allowed, names) =
        resolve::resolve(&egress, |n| looked_up.get(n).cloned().unwrap_or_else(|| Err("not looked up".into())))?;
    let _lock = lock()?;
    let dir = Path::new(resolve::HOSTS_DIR);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let hosts = resolve::hosts_path(name);
    aicontainers::fsutil::write_durable(Path::new(&hosts), resolve::hosts_file(name, &names).as_bytes(), 0o644)
        .map_err(|e| format!("{hosts}: {e}"))?;
    nft_apply(&nft::service_ruleset(name, &cgroup, &allowed)?)?;
    // What the agent shows and counts from (after the rules: the record never claims more),
    // and what the keeper resolves again and puts back.
    let started_usec = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let record = AllowRecord {
        service: name.to_owned(),
        started_usec,
        allowed: allowed.clone(),
        egress: egress.iter().map(|e| e.to_string()).collect(),
        cgroup: cgroup.clone(),
    };
    write_record(&record)?;
    let list: Vec<String> = allowed.iter().map(|a| format!("{} {}:{}", a.proto.name(), a.addr, a.port)).collect();
    out!(
        "sandbox: {name} may open connections to {} (everything else is denied and logged)",
        if list.is_empty() { "nothing".to_owned() } else { list.join(", ") }
    );
    Ok(ExitCode::SUCCESS)
}

/// What `resolve` prints: each name with its addresses or why it did not resolve.
type Lookups = std::collections::BTreeMap<String, Result<Vec<std::net::IpAddr>, String>>;

/// The names of `egress`, looked up outside the unit's cgroup. `allow` runs in the unit's own
/// cgroup, which systemd has already put in the `sandboxed` sets (`NFTSet=`) and which has no
/// allow entries yet: a DNS query sent from there is dropped. So the lookup runs as `aictl
/// sandbox resolve` in a transient unit of its own (systemd-run), as a dynamic user, with the
/// host's resolver (getaddrinfo: `/etc/hosts`, DNS, NSS), and prints its answers on stdout.
fn look_up_outside(egress: &[Egress]) -> Result<Lookups, String> {
    let names: std::collections::BTreeSet<&str> = egress
        .iter()
        .filter_map(|e| match &e.host {
            aicontainers::sandbox::Host::Name(n) => Some(n.as_str()),
            aicontainers::sandbox::Host::Ip(_) => None,
        })
        .collect();
    if names.is_empty() {
        return Ok(Lookups::new());
    }
    let exe = std::env::current_exe().map_err(|e| format!("aictl's own path: {e}"))?;
    let out = Command::new("systemd-run")
        .args(["--quiet", "--wait", "--pipe", "--collect", "--service-type=exec"])
        .args(["--property=DynamicUser=yes", "--property=RuntimeMaxSec=90", "--property=PrivateTmp=yes"])
        .args(["--property=ProtectHome=yes", "--property=NoNewPrivileges=yes", "--property=CapabilityBoundingSet="])
        .arg("--")
        .arg(exe)
        .args(["sandbox", "resolve"])
        .args(&names)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("systemd-run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the names could not be looked up (systemd-run, {}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("the names' lookup printed no answer: {e}"))
}

/// `aictl sandbox resolve NAME...`: each name as the host's resolver answers, as JSON.
fn resolve_names(names: &[String]) -> Result<ExitCode, String> {
    let mut out = Lookups::new();
    for n in names {
        let host = Egress::parse(&format!("{n}:1"))?.host;
        let aicontainers::sandbox::Host::Name(name) = host else {
            return Err(format!("`{n}` is not a name"));
        };
        let found = resolve::system_lookup(&name);
        out.insert(name, found);
    }
    out!("{}", serde_json::to_string(&out).map_err(|e| e.to_string())?);
    Ok(ExitCode::SUCCESS)
}

fn forget(name: &str) -> Result<ExitCode, String> {
    checked_name(name)?;
    let cgroup = own_cgroup(name)?;
    let _lock = lock()?;
    let _ = std::fs::remove_file(resolve::hosts_path(name));
    let _ = std::fs::remove_file(aicontainers::sandbox::record::path(Path::new("/"), name));
    // The next start installs everything afresh; a failure here leaves only a stale entry for a
    // cgroup that no longer exists.
    if let Err(why) = nft::forget_ruleset(&cgroup).and_then(|r| nft_apply(&r)) {
        eprintln!("aictl: sandbox: {name}: {why}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One connection attempt, as the agent forwarded it to the journal.
#[derive(Debug, PartialEq, serde::Serialize)]
pub struct Attempt {
    /// UTC, to the second (`2026-12-01T11:36:41Z`).
    pub time: String,
    pub verdict: &'static str,
    pub proto: String,
    pub dest: String,
    /// `-` for a protocol without ports (ICMP).
    pub port: String,
}

/// The fields of a verdict entry, as `journalctl --output=json` prints them.
#[derive(serde::Deserialize)]
struct Entry {
    #[serde(rename = "SERVICE")]
    service: String,
    #[serde(rename = "SANDBOX_VERDICT")]
    verdict: String,
    #[serde(rename = "PROTO")]
    proto: String,
    #[serde(rename = "DEST")]
    dest: String,
    #[serde(rename = "PORT")]
    port: Option<String>,
    #[serde(rename = "__REALTIME_TIMESTAMP")]
    realtime: String,
}

/// Reads one verdict entry of `name` (a line of `journalctl --output=json`). The agent wrote it
/// from checked values; it is checked again here, since any root process may log an entry with
/// the same `MESSAGE_ID=`: a line that is not a well-formed verdict of `name` is skipped.
pub fn parse_entry(name: &str, line: &str) -> Option<Attempt> {
    let e: Entry = serde_json::from_str(line).ok()?;
    let verdict = Verdict::from_name(&e.verdict)?.name();
    let proto_ok = !e.proto.is_empty() && e.proto.len() <= 8 && e.proto.bytes().all(|b| b.is_ascii_alphanumeric());
    if e.service != name || !proto_ok {
        return None;
    }
    let dest = e.dest.parse::<std::net::IpAddr>().ok()?.to_string();
    let port = match e.port {
        Some(p) => p.parse::<u16>().ok()?.to_string(),
        None => "-".to_owned(),
    };
    let usec: u64 = e.realtime.parse().ok()?;
    Some(Attempt { time: utc_time(usec / 1_000_000), verdict, proto: e.proto, dest, port })
}

/// `secs` since the epoch as an ISO 8601 UTC time.
fn utc_time(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = aicontainers::civil::utc(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

fn log(name: &str, since: Option<&str>) -> Result<ExitCode, String> {
    checked_name(name)?;
    let mut cmd = Command::new("journalctl");
    cmd.args(["--no-pager", "--output=json", "--output-fields=SERVICE,SANDBOX_VERDICT,PROTO,DEST,PORT"])
        .arg(format!("MESSAGE_ID={}", audit::MESSAGE_ID))
        .arg(format!("SERVICE={name}"))
        // Only the agent's entries: it runs as root, and other users' entries carry their UID.
        .arg("_UID=0");
    if let Some(since) = since {
        cmd.arg("--since").arg(since);
    }
    let out = cmd.output().map_err(|e| format!("journalctl: {e}"))?;
    // journalctl exits 1 when nothing matches.
    let text = String::from_utf8_lossy(&out.stdout);
    out!("{:<21} {:<8} {:<6} {:<40} PORT", "TIME", "VERDICT", "PROTO", "DESTINATION");
    for a in text.lines().filter_map(|l| parse_entry(name, l)) {
        out!("{:<21} {:<8} {:<6} {:<40} {}", a.time, a.verdict, a.proto, a.dest, a.port);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: serde_json::Value) -> String {
        let mut e = serde_json::json!({
            "SERVICE": "coder", "SANDBOX_VERDICT": "denied", "PROTO": "tcp", "DEST": "fd09::2",
            "PORT": "80", "__REALTIME_TIMESTAMP": "1764589001000000",
        });
        for (k, v) in fields.as_object().unwrap() {
            if v.is_null() {
                e.as_object_mut().unwrap().remove(k);
            } else {
                e[k] = v.clone();
            }
        }
        e.to_string()
    }

    #[test]
    fn verdict_entries() {
        let a = parse_entry("coder", &entry(serde_json::json!({}))).unwrap();
        assert_eq!(
            a,
            Attempt {
                time: "2025-12-01T11:36:41Z".into(),
                verdict: "denied",
                proto: "tcp".into(),
                dest: "fd09::2".into(),
                port: "80".into()
            }
        );
        let icmp = parse_entry("coder", &entry(serde_json::json!({"PROTO": "icmp", "PORT": null}))).unwrap();
        assert_eq!((icmp.proto.as_str(), icmp.port.as_str()), ("icmp", "-"));
        assert_eq!(utc_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_time(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn hostile_entries_are_skipped() {
        for bad in [
            serde_json::json!({"SERVICE": "code"}),
            serde_json::json!({"SANDBOX_VERDICT": "maybe"}),
            serde_json::json!({"SANDBOX_VERDICT": null}),
            serde_json::json!({"PROTO": "tcp\u{1b}[2J"}),
            serde_json::json!({"PROTO": ""}),
            serde_json::json!({"DEST": "10.0.0.1\n10.0.0.2"}),
            serde_json::json!({"DEST": "evil.example"}),
            serde_json::json!({"PORT": "80 ALLOWED"}),
            serde_json::json!({"PORT": "70000"}),
            serde_json::json!({"__REALTIME_TIMESTAMP": "soon"}),
            // journalctl prints a value that is not UTF-8 as an array of bytes
            serde_json::json!({"DEST": [49, 255]}),
        ] {
            assert_eq!(parse_entry("coder", &entry(bad.clone())), None, "{bad}");
        }
        assert_eq!(parse_entry("coder", "not json"), None);
    }
}
