//! `aictl scan [NAME...]`, `aictl sbom NAME` and the start gate: scans of the images services
//! run (docs/scan.md, "Scans of services").
//!
//! An image is read as its service's account, never by root: `runuser` to the account, then
//! `podman unshare` (the account's own user namespace) with `podman image mount` of the image
//! and `aictl sbom --rootfs` over the mount. Root gets only the SBOM on stdout, keeps it by
//! image ID (an ID already kept is never inventoried again), matches it against the
//! advisories and records each service's verdict; the gate judges that record on each start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use aicontainers::account::{Account, HostAccounts};
use aicontainers::diag::escape;
use aicontainers::generate;
use aicontainers::scan::osv::{self, Finding, Index};
use aicontainers::scan::policy::{self, Decision, Policy};
use aicontainers::scan::record::{self, Store, Verdict};
use aicontainers::scan::{gate, sbom};
use aicontainers::source::SYSTEM_DIRS;
use aicontainers::spec::Service;
use serde::Serialize;

/// The most an SBOM may be (from the account's side, or cached).
const SBOM_MAX: u64 = 512 << 20;

/// The policy file: `$AICONTAINERS_SCAN_POLICY`, else [`policy::POLICY_PATH`].
pub fn policy_path() -> PathBuf {
    std::env::var_os("AICONTAINERS_SCAN_POLICY").map_or_else(|| PathBuf::from(policy::POLICY_PATH), PathBuf::from)
}

/// The start gate (`ExecStartPre=`): exit 1 when the policy refuses the start.
pub fn gate(name: &str, image: &str) -> Result<ExitCode, String> {
    let outcome = gate::judge(&policy_path(), &Store::from_env(), name, image, policy::today());
    for line in &outcome.lines {
        eprintln!("{line}");
    }
    Ok(if outcome.allow { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn need_root() -> Result<(), String> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err("scans of services read images as each service's account (runuser): run this as root".into())
    }
}

/// The services named (every one with no name), with their accounts.
fn services(names: &[String]) -> Result<Vec<(Service, Account)>, String> {
    let loaded = generate::load(&SYSTEM_DIRS, &HostAccounts::default());
    if names.is_empty() {
        return Ok(loaded.services);
    }
    let mut by_name: BTreeMap<String, (Service, Account)> =
        loaded.services.into_iter().map(|(s, a)| (s.name.clone(), (s, a))).collect();
    names
        .iter()
        .map(|n| {
            by_name.remove(n).ok_or_else(|| {
                if loaded.failed.iter().any(|f| &f.name == n) {
                    format!("{n}: its files are not valid (`aictl validate --service {n}`)")
                } else {
                    format!("{n}: no such service in {}", SYSTEM_DIRS.join(", "))
                }
            })
        })
        .collect()
}

/// Runs `podman ARGS` as `account`; stdout, or the error with podman's own words.
fn podman_as(account: &Account, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = crate::account::command_as(account)
        .arg("podman")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run runuser: {e}"))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(format!("podman {} as {}: {}", args.first().unwrap_or(&""), account.name, why.trim()));
    }
    Ok(out.stdout)
}

/// Said of an image that is not in the account's storage yet (the first start pulls it):
/// nothing to scan, and not a failure of the scan.
const NOT_PULLED: &str = "not in the account's storage yet (the service's first start pulls it): nothing to scan";

/// The image ID of `image` in the account's storage (`sha256:HEX`).
fn image_id(account: &Account, image: &str) -> Result<String, String> {
    let out = podman_as(account, &["image", "inspect", "--format", "{{.Id}}", "--", image]).map_err(|why| {
        if why.contains("image not known") || why.contains("no such image") {
            format!("{image}: {NOT_PULLED}")
        } else {
            why
        }
    })?;
    let text = String::from_utf8_lossy(&out);
    let id = text.trim();
    match record::digest_hex(id) {
        Some(hex) => Ok(format!("sha256:{hex}")),
        None => Err(format!("podman gave {:?} as the ID of {image}", id)),
    }
}

/// The inventory of image `id`, made as the account: `podman unshare` enters the account's
/// user namespace, where `podman image mount` can mount it and `aictl sbom` read it.
fn extract_as(account: &Account, id: &str, image: &str) -> Result<Vec<u8>, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find aictl itself: {e}"))?;
    let me = me.to_str().ok_or("aictl's own path is not UTF-8")?;
    // Values reach the script as arguments ($1...), never as its text.
    let script = r#"m=$(podman image mount -- "$1") || exit 1
"$2" sbom --rootfs "$m" --name "$3"; rc=$?
podman image unmount -- "$1" >/dev/null 2>&1
exit $rc"#;
    podman_as(account, &["unshare", "sh", "-c", script, "sh", id, me, image])
}

/// The SBOM of image `id`: kept, else made as the account and kept.
fn sbom_of(store: &Store, account: &Account, id: &str, image: &str) -> Result<(serde_json::Value, bool), String> {
    let path = store.sbom_path(id).ok_or_else(|| format!("{id:?} is not an image ID"))?;
    if let Ok(data) = osv::read_capped(&path, SBOM_MAX) {
        if let Ok(doc) = serde_json::from_slice(&data) {
            return Ok((doc, true));
        }
    }
    let data = extract_as(account, id, image)?;
    if data.len() as u64 > SBOM_MAX {
        return Err(format!("the SBOM of {image} is larger than {SBOM_MAX} bytes: refused"));
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&data).map_err(|e| format!("the inventory of {image} is not JSON: {e}"))?;
    store.write_sbom(id, &data).map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    Ok((doc, false))
}

#[derive(Serialize)]
struct Report<'a> {
    service: &'a str,
    image: &'a str,
    digest: &'a str,
    scanned_at: u64,
    /// `pass` or `fail`.
    verdict: &'static str,
    action: &'static str,
    /// Whether the SBOM was already kept (no inventory this time).
    cached: bool,
    counts: BTreeMap<&'static str, usize>,
    #[serde(flatten)]
    decision: &'a Decision,
    findings: &'a [Finding],
}

/// Scans one service; the verdict is recorded whatever the policy says.
fn scan_one(
    store: &Store,
    index: &Index,
    service: &Service,
    account: &Account,
    id: Option<String>,
) -> Result<(Verdict, bool, Vec<String>), String> {
    let id = match id {
        Some(id) => id,
        None => image_id(account, &service.image)?,
    };
    let (doc, cached) = sbom_of(store, account, &id, &service.image)?;
    let (packages, _) = sbom::from_cyclonedx(&doc).map_err(|e| format!("the SBOM of {}: {e}", service.image))?;
    let (findings, unreadable) = index.matches(&packages);
    let verdict = Verdict {
        service: service.name.clone(),
        image: service.image.clone(),
        digest: id,
        scanned_at: record::now(),
        findings,
    };
    let before = store.read_verdict(&service.name).ok().flatten();
    store.write_verdict(&verdict).map_err(|e| format!("cannot record the verdict: {e}"))?;
    announce_new(before.as_ref(), &verdict);
    Ok((verdict, cached, unreadable))
}

/// The MESSAGE_ID of the journal entry for a finding a service's image did not have at its
/// previous scan (`journalctl MESSAGE_ID=f53e27b38f584d54a8545a9515262074`).
pub const NEW_FINDING_MESSAGE_ID: &str = "f53e27b38f584d54a8545a9515262074";
/// The most entries one scan of one service sends; the rest are counted in one more entry.
const MAX_ANNOUNCED: usize = 50;

/// One journal entry per new finding (at most [`MAX_ANNOUNCED`], then one that counts the rest),
/// with MESSAGE_ID=, SERVICE=, ADVISORY=, PACKAGE=, INSTALLED=, FIXED=, SEVERITY=, IMAGE_ID=,
/// attributed to the service's unit so that `journalctl -u NAME` lists them.
fn announce_new(before: Option<&Verdict>, after: &Verdict) {
    let new = record::new_findings(before, after);
    let unit = format!("{}.service", after.service);
    // The fields every entry has; a finding's entry adds its own.
    let send = |message: &str, finding: &[(&str, &str)]| {
        let mut fields = vec![
            ("MESSAGE", message),
            ("MESSAGE_ID", NEW_FINDING_MESSAGE_ID),
            ("PRIORITY", "4"),
            ("SYSLOG_IDENTIFIER", "aictl"),
            ("SERVICE", after.service.as_str()),
            ("IMAGE_ID", after.digest.as_str()),
            ("OBJECT_SYSTEMD_UNIT", unit.as_str()),
        ];
        fields.extend_from_slice(finding);
        crate::journal::send(&fields);
    };
    for f in new.iter().take(MAX_ANNOUNCED) {
        let severity = f.severity.as_str();
        let fixed = f.fixed.as_deref().map_or_else(|| "no fix yet".to_owned(), |v| format!("fixed in {v}"));
        let message = format!(
            "{}: new finding {} in {} {} ({}), severity {severity}, {fixed}",
            after.service, f.id, f.package, f.installed, f.ecosystem
        );
        send(
            &message,
            &[
                ("ADVISORY", &f.id),
                ("PACKAGE", &f.package),
                ("INSTALLED", &f.installed),
                ("FIXED", f.fixed.as_deref().unwrap_or("")),
                ("SEVERITY", severity),
            ],
        );
    }
    if new.len() > MAX_ANNOUNCED {
        let more = new.len() - MAX_ANNOUNCED;
        send(&format!("{}: {more} more new findings (aictl scan {})", after.service, after.service), &[]);
    }
}

fn is_active(name: &str) -> bool {
    Command::new("systemctl")
        .args(["is-active", "--quiet", &format!("{name}.service")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Under `--new-image`: the services whose image ID differs from their last verdict's (or that
/// have none), each with that ID; the others are said to be unchanged and left out. A service
/// whose ID cannot be asked is kept (its scan reports why).
fn with_new_images(chosen: Vec<(Service, Account)>, store: &Store) -> Vec<(Service, Account, Option<String>)> {
    let mut out = Vec::new();
    for (service, account) in chosen {
        let Ok(id) = image_id(&account, &service.image) else {
            out.push((service, account, None));
            continue;
        };
        let last = store.read_verdict(&service.name).ok().flatten();
        if last.is_some_and(|v| v.digest == id && v.image == service.image) {
            eprintln!("aictl: {}: image {id} was scanned already: nothing to do", service.name);
            continue;
        }
        out.push((service, account, Some(id)));
    }
    out
}

/// `aictl scan [NAME...]`: scans the named services (every one with none). With `new_image`
/// (the agent's `aicontainers-scan@NAME.service`, on each start), only those whose image ID is
/// not the one their last verdict has: a start on an unchanged image costs one `podman image
/// inspect`.
pub fn scan(names: &[String], json: bool, new_image: bool) -> Result<ExitCode, String> {
    need_root()?;
    let policy_file = policy_path();
    let policy = match Policy::load(&policy_file) {
        Ok(p) => p,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            return Err(format!("{}: fix the scan policy first", policy_file.display()));
        }
    };
    let chosen = services(names)?;
    let store = Store::from_env();
    std::fs::create_dir_all(&store.dir).map_err(|e| format!("{}: cannot create: {e}", store.dir.display()))?;
    // One scan at a time (the timer, the agent's start on a change, a sysadmin's): the later
    // waits, then finds the SBOMs the earlier kept.
    let lock_path = store.dir.join(".scan.lock");
    let _lock = aicontainers::fsutil::lock(&lock_path, nix::fcntl::FlockArg::LockExclusive, 0o600)
        .map_err(|e| format!("{}: cannot lock: {e}", lock_path.display()))?;
    let todo: Vec<(Service, Account, Option<String>)> = if new_image {
        with_new_images(chosen.clone(), &store)
    } else {
        chosen.iter().map(|(s, a)| (s.clone(), a.clone(), None)).collect()
    };
    if new_image && todo.is_empty() {
        print(&[], json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let index = Index::load_dir_cached(&policy.advisories, &store.advisory_cache()).map_err(|d| d.to_string())?;
    for w in &index.warnings {
        eprintln!("aictl: warning: {}", escape(&w.to_string()));
    }
    let today = policy::today();
    let mut failed = false;
    let mut reports = Vec::new();
    for (service, account, id) in todo {
        let (service, account) = (&service, &account);
        match scan_one(&store, &index, service, account, id) {
            Ok((verdict, cached, unreadable)) => {
                for u in unreadable {
                    eprintln!("aictl: warning: advisory not applied, its versions cannot be compared: {}", escape(&u));
                }
                let decision = policy.decide(&service.name, &verdict.findings, today);
                if decision.fails() && decision.rules.action == policy::Action::Stop && is_active(&service.name) {
                    eprintln!("aictl: {}: fails the scan policy (action stop): stopping it", service.name);
                    let ok = Command::new("systemctl")
                        .args(["stop", "--no-block", &format!("{}.service", service.name)])
                        .status()
                        .is_ok_and(|s| s.success());
                    failed |= !ok;
                }
                reports.push((verdict, cached, decision));
            }
            Err(why) => {
                eprintln!("aictl: {}: {}", service.name, escape(&why));
                failed |= !why.ends_with(NOT_PULLED);
            }
        }
    }
    if names.is_empty() {
        let keep: Vec<String> = chosen.iter().map(|(s, _)| s.name.clone()).collect();
        store.prune(&keep);
    }
    print(&reports, json)?;
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn counts(findings: &[Finding]) -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for f in findings {
        *out.entry(f.severity.as_str()).or_insert(0) += 1;
    }
    out
}

fn print(reports: &[(Verdict, bool, Decision)], json: bool) -> Result<(), String> {
    if json {
        let list: Vec<Report<'_>> = reports
            .iter()
            .map(|(v, cached, d)| Report {
                service: &v.service,
                image: &v.image,
                digest: &v.digest,
                scanned_at: v.scanned_at,
                verdict: if d.fails() { "fail" } else { "pass" },
                action: d.rules.action.as_str(),
                cached: *cached,
                counts: counts(&v.findings),
                decision: d,
                findings: &v.findings,
            })
            .collect();
        let doc = serde_json::json!({ "services": list });
        out!("{}", serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?);
        return Ok(());
    }
    out!(
        "{:<20} {:<19} {:>4} {:>4} {:>4} {:>4} {:>5}  VERDICT",
        "SERVICE",
        "IMAGE ID",
        "CRIT",
        "HIGH",
        "MED",
        "LOW",
        "OTHER"
    );
    for (v, _, d) in reports {
        let c = counts(&v.findings);
        let n = |k: &str| c.get(k).copied().unwrap_or(0);
        let other = n("unknown") + n("negligible");
        let verdict = if d.fails() { format!("fail ({})", d.rules.action.as_str()) } else { "pass".into() };
        let short = v.digest.strip_prefix("sha256:").unwrap_or(&v.digest).get(..12).unwrap_or_default().to_owned();
        out!(
            "{:<20} {:<19} {:>4} {:>4} {:>4} {:>4} {:>5}  {verdict}",
            escape(&v.service),
            short,
            n("critical"),
            n("high"),
            n("medium"),
            n("low"),
            other
        );
    }
    for (v, _, d) in reports {
        for f in &d.failing {
            let fix = f.fixed.as_deref().map_or_else(|| "no fix".to_owned(), |x| format!("fixed in {}", escape(x)));
            out!(
                "{}: {} {} {} {}, {fix}",
                escape(&v.service),
                escape(&f.id),
                f.severity.as_str(),
                escape(&f.package),
                escape(&f.installed)
            );
        }
        for a in &d.expired {
            out!(
                "{}: allowlist entry {} ({}) expired on {}",
                escape(&v.service),
                escape(&a.id),
                escape(&a.at),
                a.expires
            );
        }
    }
    Ok(())
}

/// `aictl sbom NAME`: the SBOM of the image the service runs (kept, or made as its account).
pub fn sbom(name: &str) -> Result<ExitCode, String> {
    need_root()?;
    let (service, account) = services(&[name.to_owned()])?.into_iter().next().ok_or("no service")?;
    let store = Store::from_env();
    let id = image_id(&account, &service.image)?;
    let (doc, _) = sbom_of(&store, &account, &id, &service.image)?;
    out!("{}", serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aicontainers::scan::osv::Severity;
    use aicontainers::scan::record::new_findings;

    fn finding(id: &str, package: &str, installed: &str) -> Finding {
        Finding {
            id: id.into(),
            aliases: Vec::new(),
            package: package.into(),
            ecosystem: "Debian:13".into(),
            installed: installed.into(),
            fixed: Some("9".into()),
            severity: Severity::High,
        }
    }

    fn verdict(findings: Vec<Finding>) -> Verdict {
        Verdict { service: "chat".into(), image: "i".into(), digest: "sha256:0".into(), scanned_at: 1, findings }
    }

    #[test]
    fn only_findings_the_previous_scan_did_not_have_are_new() {
        let first = verdict(vec![finding("A", "zlib1g", "1"), finding("B", "zlib1g", "1")]);
        assert_eq!(new_findings(None, &first).len(), 2, "a first scan announces all");
        assert!(new_findings(Some(&first), &first).is_empty(), "a rescan with nothing new announces nothing");
        // A new advisory, and an old one on another installed version (the image was rebuilt).
        let second =
            verdict(vec![finding("A", "zlib1g", "1"), finding("C", "zlib1g", "1"), finding("B", "zlib1g", "2")]);
        let new: Vec<(&str, &str)> =
            new_findings(Some(&first), &second).iter().map(|f| (f.id.as_str(), f.installed.as_str())).collect();
        assert_eq!(new, [("C", "1"), ("B", "2")]);
    }
}
