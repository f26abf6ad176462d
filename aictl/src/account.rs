//! `aictl account prepare|check NAME`: the one step that readies an account for rootless
//! services, and the check of what it does.
//!
//! Ready means (docs/rootless.md): an account that is not root, with a home for its container
//! storage and 65536 subordinate UIDs and GIDs. `prepare` also turns lingering on, so the
//! account's user manager stays up between services; the units do not depend on it (they
//! require `user@UID.service` themselves), so `check` reports it without requiring it. The cgroup delegation the
//! containers need comes from the units themselves (Quadlet sets `Delegate=yes`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use aicontainers::account::{subid_count, Account, Accounts, HostAccounts, SUBID_RANGE};
use clap::Subcommand;

/// Where prepared accounts get their home (and so their container storage).
const HOME_BASE: &str = "/var/lib/aicontainers/accounts";
/// Subordinate ranges start at or above this, like useradd's SUB_UID_MIN.
const SUBID_MIN: u64 = 100_000;

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Create (if needed) and ready an account for rootless services. Idempotent.
    Prepare {
        name: String,
        /// Home directory for a new account (holds its images and containers).
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
    },
    /// Report whether an account is ready; exits 1 if not.
    Check { name: String },
    /// Run a command as the account, with the environment its services have (runtime
    /// directory, user bus), for example to pull or build images into its storage:
    /// `aictl account run aimodels -- podman pull IMAGE`.
    Run {
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
}

pub fn run(command: AccountCommand) -> Result<ExitCode, String> {
    match command {
        AccountCommand::Prepare { name, home } => prepare(&name, home),
        AccountCommand::Check { name } => check(&name),
        AccountCommand::Run { name, command } => run_as(&name, &command),
    }
}

fn run_tool(program: &str, args: &[&str]) -> Result<(), String> {
    let status = Command::new(program).args(args).status().map_err(|e| match e.kind() {
        // Debian testing no longer installs them in a minimal system.
        std::io::ErrorKind::NotFound if matches!(program, "useradd" | "usermod") => {
            format!("{program} is not installed: install the package that provides it (passwd on Debian, shadow-utils on Fedora)")
        }
        _ => format!("cannot run {program}: {e}"),
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

fn prepare(name: &str, home: Option<PathBuf>) -> Result<ExitCode, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("account prepare changes accounts: run it as root".into());
    }
    if name == "root" {
        return Err("services run rootless: choose an unprivileged account name".into());
    }
    if nix::unistd::User::from_name(name).map_err(|e| e.to_string())?.is_none() {
        let home = home.unwrap_or_else(|| Path::new(HOME_BASE).join(name));
        if let Some(parent) = home.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let home = home.to_string_lossy().into_owned();
        run_tool(
            "useradd",
            &[
                "--system",
                "--user-group",
                "--create-home",
                "--home-dir",
                &home,
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "aicontainers service account",
                name,
            ],
        )?;
        println!("{name}: account created, home {home}");
    }
    let user = nix::unistd::User::from_name(name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("account {name} vanished"))?;
    let account = Account { name: name.into(), uid: user.uid.as_raw(), gid: user.gid.as_raw(), home: user.dir };
    if account.uid == 0 {
        return Err(format!("account {name} has UID 0; choose another"));
    }
    if account.gid == 0 {
        return Err(format!("account {name} has primary group 0 (root); give it a group of its own"));
    }

    let subuid = fs::read_to_string("/etc/subuid").unwrap_or_default();
    let subgid = fs::read_to_string("/etc/subgid").unwrap_or_default();
    if subid_count(&subuid, &account) < SUBID_RANGE || subid_count(&subgid, &account) < SUBID_RANGE {
        let start = free_subid_start(&[&subuid, &subgid])?;
        let range = format!("{start}-{}", start + SUBID_RANGE - 1);
        let mut args = Vec::new();
        if subid_count(&subuid, &account) < SUBID_RANGE {
            args.extend(["--add-subuids", range.as_str()]);
        }
        if subid_count(&subgid, &account) < SUBID_RANGE {
            args.extend(["--add-subgids", range.as_str()]);
        }
        args.push(name);
        run_tool("usermod", &args)?;
        println!("{name}: subordinate IDs {range}");
    }
    run_tool("loginctl", &["enable-linger", name])?;
    println!("{name}: lingering on");
    check(name)
}

fn run_as(name: &str, command: &[String]) -> Result<ExitCode, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("account run switches accounts: run it as root".into());
    }
    let account = HostAccounts::default().lookup(name)?;
    let runtime = account.runtime_dir();
    if !Path::new(&runtime).is_dir() {
        // The user manager makes the runtime directory; start it as the units do.
        run_tool("systemctl", &["start", &format!("user@{}.service", account.uid)])?;
    }
    let status = command_as(&account)
        .args(std::env::var("TERM").map(|t| format!("TERM={t}")))
        .args(command)
        .status()
        .map_err(|e| format!("cannot run runuser: {e}"))?;
    Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
}

/// `runuser` as `account`, in a clean environment like the units': nothing of root's
/// (REGISTRY_AUTH_FILE, CONTAINERS_CONF, TMPDIR...) leaks into the account's podman. The
/// command and its arguments follow.
pub fn command_as(account: &Account) -> Command {
    let runtime = account.runtime_dir();
    let mut c = Command::new("runuser");
    c.current_dir("/")
        .args(["-u", &account.name, "--", "env", "-i"])
        .arg("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .arg(format!("HOME={}", account.home.display()))
        .arg(format!("USER={}", account.name))
        .arg(format!("LOGNAME={}", account.name))
        .arg(format!("XDG_RUNTIME_DIR={runtime}"))
        .arg(format!("DBUS_SESSION_BUS_ADDRESS=unix:path={runtime}/bus"));
    c
}

/// The first multiple of 65536 at or above SUBID_MIN that is past every range in the files,
/// such that the whole range still fits in the kernel's 32-bit IDs. Whatever numbers the files
/// hold, nothing overflows: a range reaching past 2^32 leaves no room, and says so.
fn free_subid_start(files: &[&str]) -> Result<u64, String> {
    let end = files
        .iter()
        .flat_map(|text| text.lines())
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (_, start, count) = (f.next()?, f.next()?.parse::<u64>().ok()?, f.next()?.parse::<u64>().ok()?);
            Some(start.saturating_add(count))
        })
        .max()
        .unwrap_or(0)
        .max(SUBID_MIN);
    let start = end.div_ceil(SUBID_RANGE).saturating_mul(SUBID_RANGE);
    let last = start.saturating_add(SUBID_RANGE - 1);
    if last > u64::from(u32::MAX - 1) {
        return Err(format!(
            "no free range of {SUBID_RANGE} subordinate IDs below 2^32 in /etc/subuid and /etc/subgid (they already reach {end}); add one by hand with usermod --add-subuids/--add-subgids"
        ));
    }
    Ok(start)
}

fn check(name: &str) -> Result<ExitCode, String> {
    let mut ready = true;
    match HostAccounts::default().lookup(name) {
        Ok(account) => {
            println!("{name}: uid {} gid {} home {}", account.uid, account.gid, account.home.display());
            let subuid = fs::read_to_string("/etc/subuid").unwrap_or_default();
            let subgid = fs::read_to_string("/etc/subgid").unwrap_or_default();
            for (what, text) in [("subordinate UIDs", &subuid), ("subordinate GIDs", &subgid)] {
                let n = subid_count(text, &account);
                let ok = n >= SUBID_RANGE;
                ready &= ok;
                println!("{name}: {what}: {n}{}", if ok { "" } else { " (need 65536)" });
            }
            if !account.home.is_dir() {
                ready = false;
                println!("{name}: home {} does not exist (container storage lives there)", account.home.display());
            }
            let linger = Path::new("/var/lib/systemd/linger").join(name).exists();
            println!(
                "{name}: lingering {}",
                if linger {
                    "on"
                } else {
                    "off (the unit starts the user manager anyway; `loginctl enable-linger` keeps it up)"
                }
            );
        }
        Err(why) => {
            ready = false;
            println!("{name}: {why}");
        }
    }
    if ready {
        println!("{name}: ready");
    } else {
        println!("{name}: NOT ready: run `aictl account prepare {name}` as root");
    }
    Ok(if ready { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_start_is_past_every_range() {
        assert_eq!(free_subid_start(&["", ""]), Ok(131072));
        assert_eq!(free_subid_start(&["a:100000:65536\n", "b:165536:65536\n"]), Ok(262144));
        assert_eq!(free_subid_start(&["junk\n", ""]), Ok(131072));
        let max = u64::MAX;
        assert!(free_subid_start(&[&format!("a:{max}:{max}\n"), ""]).is_err(), "no overflow, no room");
        assert!(free_subid_start(&["a:4294901760:1\n", ""]).is_err(), "the range must fit in 32 bits");
        assert_eq!(free_subid_start(&["a:4294770688:1\n", ""]), Ok(4294836224));
    }
}
