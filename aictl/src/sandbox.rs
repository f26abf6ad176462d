//! `aictl sandbox`: what a sandboxed service's unit runs as root around podman (`allow` before,
//! `forget` after; docs/sandbox.md), and `log`, its connection attempts from the journal.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use aicontainers::sandbox::{nft, resolve, Egress};
use aicontainers::spec::check_service_name;
use clap::Subcommand;

/// nftables' command line tool.
const NFT: &str = "/usr/sbin/nft";

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
    /// Connection attempts of sandboxed service NAME: time, verdict, protocol, destination, port
    /// (from the kernel's log lines in the journal).
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
        SandboxCommand::Log { name, since } => log(&name, since.as_deref()),
    }
}

fn checked_name(name: &str) -> Result<(), String> {
    check_service_name(name)?;
    if name.len() > aicontainers::sandbox::NAME_MAX {
        return Err(format!(
            "`{name}`: a sandboxed service's name is at most {} bytes",
            aicontainers::sandbox::NAME_MAX
        ));
    }
    Ok(())
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

fn nft_apply(ruleset: &str) -> Result<(), String> {
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

fn allow(name: &str, entries: &[String]) -> Result<ExitCode, String> {
    checked_name(name)?;
    let egress: Vec<Egress> = entries.iter().map(|e| Egress::parse(e)).collect::<Result<_, _>>()?;
    let cgroup = own_cgroup(name)?;
    let (allowed, names) = resolve::resolve(&egress, resolve::system_lookup)?;
    let dir = Path::new(resolve::HOSTS_DIR);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let hosts = resolve::hosts_path(name);
    aicontainers::fsutil::write_durable(Path::new(&hosts), resolve::hosts_file(name, &names).as_bytes(), 0o644)
        .map_err(|e| format!("{hosts}: {e}"))?;
    nft_apply(&nft::service_ruleset(name, &cgroup, &allowed)?)?;
    let list: Vec<String> = allowed.iter().map(|a| format!("{} {}:{}", a.proto.name(), a.addr, a.port)).collect();
    out!(
        "sandbox: {name} may open connections to {} (everything else is denied and logged)",
        if list.is_empty() { "nothing".to_owned() } else { list.join(", ") }
    );
    Ok(ExitCode::SUCCESS)
}

fn forget(name: &str) -> Result<ExitCode, String> {
    checked_name(name)?;
    let cgroup = own_cgroup(name)?;
    let _ = std::fs::remove_file(resolve::hosts_path(name));
    // The next start installs everything afresh; a failure here leaves only a stale entry for a
    // cgroup that no longer exists.
    if let Err(why) = nft::forget_ruleset(&cgroup).and_then(|r| nft_apply(&r)) {
        eprintln!("aictl: sandbox: {name}: {why}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One connection attempt, read from a kernel log line.
#[derive(Debug, PartialEq, serde::Serialize)]
pub struct Attempt {
    pub verdict: &'static str,
    pub proto: String,
    pub dest: String,
    pub port: String,
}

/// Parses the kernel's log line of the nftables `log` statement, with our prefix, for `name`.
pub fn parse_line(name: &str, line: &str) -> Option<Attempt> {
    let (verdict, rest) = if let Some(r) = line.split_once(&format!("{} {name} ", nft::LOG_ALLOW)) {
        ("allowed", r.1)
    } else {
        ("denied", line.split_once(&format!("{} {name} ", nft::LOG_DENY))?.1)
    };
    let field = |key: &str| {
        rest.split(' ').find_map(|w| w.strip_prefix(key)).map(str::to_owned).unwrap_or_else(|| "-".to_owned())
    };
    let dest = field("DST=");
    // The kernel writes IPv6 addresses in full; the usual short form reads better.
    let dest = dest.parse::<std::net::IpAddr>().map_or(dest, |a| a.to_string());
    Some(Attempt { verdict, proto: field("PROTO=").to_ascii_lowercase(), dest, port: field("DPT=") })
}

fn log(name: &str, since: Option<&str>) -> Result<ExitCode, String> {
    checked_name(name)?;
    let mut cmd = Command::new("journalctl");
    cmd.args(["-k", "--no-pager", "-o", "short-iso", "--grep"])
        .arg(format!("aicontainers (allow|deny) {} ", name.replace('.', "\\.")));
    if let Some(since) = since {
        cmd.arg("--since").arg(since);
    }
    let out = cmd.output().map_err(|e| format!("journalctl: {e}"))?;
    // journalctl exits 1 when nothing matches.
    let text = String::from_utf8_lossy(&out.stdout);
    out!("{:<25} {:<8} {:<5} {:<40} PORT", "TIME", "VERDICT", "PROTO", "DESTINATION");
    for line in text.lines() {
        if let Some(a) = parse_line(name, line) {
            let time = line.split(' ').next().unwrap_or("-");
            out!("{time:<25} {:<8} {:<5} {:<40} {}", a.verdict, a.proto, a.dest, a.port);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_log_lines() {
        let l = "2026-12-01T11:36:41+00:00 aic-vm kernel: aicontainers deny coder IN= OUT=sbx0 SRC=fd09:0000:0000:0000:0000:0000:0000:0001 DST=fd09:0000:0000:0000:0000:0000:0000:0002 LEN=80 PROTO=TCP SPT=56044 DPT=80 SYN";
        assert_eq!(
            parse_line("coder", l),
            Some(Attempt { verdict: "denied", proto: "tcp".into(), dest: "fd09::2".into(), port: "80".into() })
        );
        let l =
            "t h kernel: aicontainers allow coder IN= OUT=sbx0 SRC=10.9.0.1 DST=10.9.0.2 LEN=60 PROTO=UDP SPT=1 DPT=53";
        assert_eq!(parse_line("coder", l).unwrap().verdict, "allowed");
        assert_eq!(parse_line("code", l), None, "another service's line");
        assert_eq!(parse_line("coder", "t h kernel: aicontainers deny coder IN= PROTO=ICMP").unwrap().port, "-");
    }
}
