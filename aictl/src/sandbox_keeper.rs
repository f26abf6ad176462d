//! `aictl sandbox keep`: the keeper, `aicontainers-sandbox.service` (root, `CAP_NET_ADMIN`
//! only). While sandboxed services run, it keeps their egress rules current:
//!
//! - **Names** of `sandbox.egress` are resolved again when their DNS TTL runs out (between
//!   [`TTL_MIN`] and [`TTL_MAX`]; [`TTL_DEFAULT`] for a name the DNS gives no TTL for, such as
//!   one of `/etc/hosts`). When the addresses change, the service's allow sets, its hosts file
//!   (rewritten in place: the container has it bind-mounted) and its allow record change with
//!   them. A lookup that fails keeps the addresses the service has, and is tried again after
//!   [`RETRY`].
//! - **Tables**: `nft monitor` reports every table deleted; when one of ours goes
//!   (`nft flush ruleset`, `nft delete table inet aicontainers`), the base tables and every
//!   running service's sets, chain and cgroup entries are applied again at once.
//!
//! What runs is read from the allow records in `/run/aicontainers/sandbox` (written by the
//! units' `aictl sandbox allow`, removed by `forget`). The keeper, `allow` and `forget` take
//! the same lock ([`crate::sandbox_rules::LOCK`]) around their changes, so none undoes another's.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader, Seek as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aicontainers::sandbox::record::{self, AllowRecord};
use aicontainers::sandbox::{dns, nft, resolve, Egress, Host};

use crate::sandbox_rules::{checked_name, lock, nft_apply, write_record, NFT};

/// The least time between two lookups of a name (a TTL of 0 would otherwise spin).
pub const TTL_MIN: Duration = Duration::from_secs(5);
/// The most time between two lookups of a name.
pub const TTL_MAX: Duration = Duration::from_secs(3600);
/// The time between two lookups of a name the DNS gives no TTL for.
pub const TTL_DEFAULT: Duration = Duration::from_secs(60);
/// The time before a failed lookup is tried again.
pub const RETRY: Duration = Duration::from_secs(30);
/// How often the record directory is read for services that started or stopped.
const RESCAN: Duration = Duration::from_secs(5);

/// What the monitor thread reports.
enum Event {
    /// A table of ours was deleted (the monitor's line).
    Deleted(String),
    /// `nft monitor` ended (its reason).
    MonitorGone(String),
}

/// Whether a line of `nft monitor` reports one of our tables (or chains) deleted.
pub fn deletes_ours(line: &str) -> bool {
    let mut w = line.split_whitespace();
    let (verb, kind, family, table) = (w.next(), w.next(), w.next(), w.next());
    matches!(verb, Some("delete" | "destroy"))
        && matches!(kind, Some("table" | "chain"))
        && family == Some("inet")
        && table.is_some_and(|t| t == nft::TABLE || t == nft::GUARD_TABLE)
}

/// Follows `nft monitor tables` (a deleted table is printed `delete table FAMILY NAME`, also
/// for each table `nft flush ruleset` removes) and reports ours. Its stderr is dropped: nft
/// warns there about every set it cannot cache, which says nothing about tables.
fn monitor(tx: mpsc::Sender<Event>) {
    let child = Command::new(NFT).args(["monitor", "tables"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.send(Event::MonitorGone(format!("{}: {e}", NFT)));
            return;
        }
    };
    let out = child.stdout.take().expect("piped");
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        if deletes_ours(&line) && tx.send(Event::Deleted(line)).is_err() {
            break;
        }
    }
    let status = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
    let _ = tx.send(Event::MonitorGone(format!("nft monitor ended ({status})")));
}

/// One running sandboxed service, as the keeper follows it.
struct Followed {
    record: AllowRecord,
    egress: Vec<Egress>,
    /// When each name is to be resolved again.
    due: BTreeMap<String, Instant>,
}

/// The allow records of the running sandboxed services. One that cannot be read or that an
/// older `aictl` wrote (no egress or cgroup in it) is left out and reported once.
fn records(reported: &mut BTreeSet<String>) -> BTreeMap<String, AllowRecord> {
    let mut out = BTreeMap::new();
    let dir = Path::new(resolve::HOSTS_DIR);
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(".json") else { continue };
        if name.starts_with('.') || checked_name(name).is_err() {
            continue;
        }
        match record::read(Path::new("/"), name) {
            Ok(Some(r)) if !r.egress.is_empty() && !r.cgroup.is_empty() => {
                reported.remove(name);
                out.insert(name.to_owned(), r);
            }
            Ok(Some(_)) => {
                if reported.insert(name.to_owned()) {
                    eprintln!("aictl: sandbox: {name}: its record has no egress list or cgroup (written by an older aictl); restart it to have it kept");
                }
            }
            Ok(None) => {}
            Err(why) => {
                if reported.insert(name.to_owned()) {
                    eprintln!("aictl: sandbox: {name}: {why}");
                }
            }
        }
    }
    out
}

/// Writes `content` over the file at `path`, in place: the container's `/etc/hosts` is a bind
/// mount of this very inode, which a rename would leave behind. Only a regular file is written.
fn rewrite_in_place(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    f.rewind()?;
    f.write_all(content)?;
    f.set_len(content.len() as u64)?;
    f.sync_all()
}

/// The delay before `name` is looked up again, from its DNS TTL.
pub fn next_lookup(ttl: Option<u32>) -> Duration {
    ttl.map_or(TTL_DEFAULT, |t| Duration::from_secs(u64::from(t)).clamp(TTL_MIN, TTL_MAX))
}

/// Resolves every name of `f` again; applies and records the new allow set when it differs.
fn refresh(name: &str, f: &mut Followed, servers: &[SocketAddr]) {
    let now = Instant::now();
    let mut fresh: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for host in f.due.keys() {
        match resolve::system_lookup(host) {
            Ok(addrs) => {
                fresh.insert(host.clone(), addrs);
            }
            Err(why) => {
                eprintln!("aictl: sandbox: {name}: {host} does not resolve now ({why}); its addresses stay as they are, tried again in {}s", RETRY.as_secs());
                for when in f.due.values_mut() {
                    *when = now + RETRY;
                }
                return;
            }
        }
    }
    for (host, when) in f.due.iter_mut() {
        *when = now + next_lookup(dns::ttl(host, servers));
    }
    let (allowed, pinned) =
        match resolve::resolve(&f.egress, |h| fresh.get(h).cloned().ok_or_else(|| "not looked up".into())) {
            Ok(r) => r,
            Err(why) => {
                eprintln!("aictl: sandbox: {name}: {why}; its addresses stay as they are");
                return;
            }
        };
    if allowed == f.record.allowed {
        return;
    }
    let _lock = match lock() {
        Ok(l) => l,
        Err(why) => return eprintln!("aictl: sandbox: {name}: {why}"),
    };
    // The service may have stopped or started again since the record was read.
    match record::read(Path::new("/"), name) {
        Ok(Some(r)) if r.started_usec == f.record.started_usec => {}
        _ => return,
    }
    if let Err(why) = nft::allow_sets_ruleset(name, &allowed).and_then(|r| nft_apply(&r)) {
        return eprintln!("aictl: sandbox: {name}: the allow sets were not updated: {why}");
    }
    let hosts = resolve::hosts_path(name);
    if let Err(e) = rewrite_in_place(Path::new(&hosts), resolve::hosts_file(name, &pinned).as_bytes()) {
        eprintln!("aictl: sandbox: {name}: {hosts}: {e}");
    }
    let before: Vec<String> = f.record.allowed.iter().map(describe).collect();
    let after: Vec<String> = allowed.iter().map(describe).collect();
    f.record.allowed = allowed;
    if let Err(why) = write_record(&f.record) {
        eprintln!("aictl: sandbox: {name}: {why}");
    }
    eprintln!(
        "aictl: sandbox: {name}: names resolved again; it may now open connections to {} (before: {})",
        after.join(", "),
        before.join(", ")
    );
}

fn describe(a: &nft::Allowed) -> String {
    format!("{} {}:{}", a.proto.name(), a.addr, a.port)
}

/// Applies the base tables and every running service's rules again (each service in its own
/// transaction, so that one whose unit is gone does not keep the others out).
fn restore(followed: &BTreeMap<String, Followed>) {
    let _lock = match lock() {
        Ok(l) => l,
        Err(why) => return eprintln!("aictl: sandbox: {why}"),
    };
    if let Err(why) = nft_apply(&nft::base_ruleset()) {
        return eprintln!("aictl: sandbox: the base tables could not be applied: {why}");
    }
    for name in followed.keys() {
        // Read again under the lock: the allow set may have changed since.
        let current = match record::read(Path::new("/"), name) {
            Ok(Some(r)) => r,
            _ => continue,
        };
        if !Path::new("/sys/fs/cgroup").join(&current.cgroup).is_dir() {
            continue;
        }
        match nft::service_ruleset(name, &current.cgroup, &current.allowed).and_then(|r| nft_apply(&r)) {
            Ok(()) => eprintln!("aictl: sandbox: {name}: its rules are in place again"),
            Err(why) => eprintln!("aictl: sandbox: {name}: its rules could not be put back: {why}"),
        }
    }
}

/// The keeper's loop (see the module's documentation). Long because it is the one event loop:
/// the records read, the due lookups run, and the monitor's reports waited for, in turn.
pub fn keep() -> Result<ExitCode, String> {
    let (tx, rx) = mpsc::channel();
    let monitor_tx = tx.clone();
    std::thread::spawn(move || monitor(monitor_tx));
    let mut followed: BTreeMap<String, Followed> = BTreeMap::new();
    let mut reported = BTreeSet::new();
    let mut first = true;
    loop {
        let servers = std::fs::read_to_string("/etc/resolv.conf").map(|t| dns::nameservers(&t)).unwrap_or_default();
        let current = records(&mut reported);
        followed.retain(|name, f| current.get(name).is_some_and(|r| r.started_usec == f.record.started_usec));
        for (name, r) in current {
            if followed.contains_key(&name) {
                continue;
            }
            let Ok(egress) = r.egress.iter().map(|e| Egress::parse(e)).collect::<Result<Vec<_>, _>>() else {
                if reported.insert(name.clone()) {
                    eprintln!("aictl: sandbox: {name}: its record's egress list does not parse; left alone");
                }
                continue;
            };
            let now = Instant::now();
            let due = egress
                .iter()
                .filter_map(|e| match &e.host {
                    Host::Name(n) => Some((n.clone(), now)),
                    Host::Ip(_) => None,
                })
                .collect();
            followed.insert(name, Followed { record: r, egress, due });
        }
        if first {
            // Whatever happened while no keeper ran (a flushed ruleset) is mended at its start.
            restore(&followed);
            first = false;
        }
        let now = Instant::now();
        for (name, f) in followed.iter_mut() {
            if f.due.values().any(|when| *when <= now) {
                refresh(name, f, &servers);
            }
        }
        let next = followed.values().flat_map(|f| f.due.values()).min().copied().unwrap_or(now + RESCAN);
        let wait = next.saturating_duration_since(Instant::now()).min(RESCAN);
        match rx.recv_timeout(wait) {
            Ok(Event::Deleted(line)) => {
                // A flush deletes several objects at once: take them all, then apply once.
                while rx.recv_timeout(Duration::from_millis(20)).is_ok() {}
                eprintln!("aictl: sandbox: `{line}`: putting the egress rules back");
                restore(&followed);
            }
            Ok(Event::MonitorGone(why)) => {
                // Without the monitor a deleted table would go unnoticed: exit, and let
                // systemd restart the keeper (Restart=on-failure), which mends at its start.
                return Err(format!("sandbox keeper: {why}"));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err("sandbox keeper: the monitor is gone".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_lines_of_our_tables() {
        assert!(deletes_ours("delete table inet aicontainers"));
        assert!(deletes_ours("delete table inet aicontainers_guard"));
        assert!(deletes_ours("delete chain inet aicontainers output"));
        assert!(deletes_ours("destroy table inet aicontainers"));
        assert!(!deletes_ours("delete table inet aicontainers2"));
        assert!(!deletes_ours("delete table ip aicontainers"));
        assert!(!deletes_ours("delete rule inet aicontainers output handle 4"));
        assert!(!deletes_ours("delete element inet aicontainers services { \"x.service\" }"));
        assert!(!deletes_ours("add table inet aicontainers"));
        assert!(!deletes_ours(""));
    }

    #[test]
    fn lookups_follow_the_ttl_within_bounds() {
        assert_eq!(next_lookup(Some(0)), TTL_MIN);
        assert_eq!(next_lookup(Some(42)), Duration::from_secs(42));
        assert_eq!(next_lookup(Some(u32::MAX)), TTL_MAX);
        assert_eq!(next_lookup(None), TTL_DEFAULT);
    }

    #[test]
    fn hosts_are_rewritten_in_place() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.hosts");
        std::fs::write(&p, "a much longer first version of the file\n").unwrap();
        let held = std::fs::File::open(&p).unwrap();
        rewrite_in_place(&p, b"short\n").unwrap();
        // The same inode (what a bind mount holds) now has the new content, and only it.
        let mut s = String::new();
        std::io::Read::read_to_string(&mut &held, &mut s).unwrap();
        assert_eq!(s, "short\n");
        std::os::unix::fs::symlink(&p, t.path().join("link")).unwrap();
        assert!(rewrite_in_place(&t.path().join("link"), b"x").is_err());
        // A FIFO in its place (no reader: opening it must not block), a directory, nothing.
        nix::unistd::mkfifo(&t.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(rewrite_in_place(&t.path().join("fifo"), b"x").is_err());
        assert!(rewrite_in_place(t.path(), b"x").is_err());
        assert!(rewrite_in_place(&t.path().join("missing"), b"x").is_err());
        assert!(!t.path().join("missing").exists());
    }
}
