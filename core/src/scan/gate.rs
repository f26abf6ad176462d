//! The start gate: a service unit's `ExecStartPre=` judges the service's last verdict with the
//! policy of the moment, and fails the start when the policy says `block` (or `stop`).
//!
//! It reads two small files (the policy and the verdict) and runs nothing: it must cost a few
//! milliseconds on every start. What it does when it cannot judge:
//!
//! - no verdict yet (the service was never scanned), or the verdict is of another image than
//!   the one the service now names: the start goes on, with a line saying so; the next scan
//!   (`aictl scan`, the timer) judges the image, and `stop` stops it then if it fails;
//! - a policy file that cannot be read: the start fails (a policy that turns itself off on a
//!   typo is no policy); `aictl scan` prints where the mistake is;
//! - a verdict file that cannot be read (not a regular file, not a verdict of this service):
//!   the start fails when the action blocks, and goes on with a warning under `warn`.

use std::path::Path;

use super::policy::{self, Policy};
use super::record::{Store, Verdict};
use crate::diag::escape;

/// The most findings named one by one; the rest are counted.
const SHOWN: usize = 20;

/// What the gate says, and whether the start may go on.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub allow: bool,
    /// Lines for the journal (escaped: one line each).
    pub lines: Vec<String>,
}

/// Judges the start of `service`, whose file names `image`, on `today` (days since the epoch).
pub fn judge(policy_path: &Path, store: &Store, service: &str, image: &str, today: i64) -> Outcome {
    let mut lines = Vec::new();
    let mut say = |line: String| lines.push(escape(&line).into_owned());
    let policy = match Policy::load(policy_path) {
        Ok(p) => p,
        Err(diags) => {
            for d in &diags {
                say(d.to_string());
            }
            say(format!("{service}: the scan policy cannot be read: start refused; fix {}", policy_path.display()));
            return Outcome { allow: false, lines };
        }
    };
    let rules = policy.rules(service);
    let verdict = match store.read_verdict(service) {
        Ok(Some(v)) => v,
        Ok(None) => {
            say(format!("{service}: not scanned yet: started without a verdict (`aictl scan {service}` judges it)"));
            return Outcome { allow: true, lines };
        }
        Err(why) => {
            let blocks = rules.action.blocks();
            say(format!(
                "{service}: the last scan verdict cannot be read: {why}: {}",
                if blocks {
                    "start refused (action block); `aictl scan` writes a new one"
                } else {
                    "started (action warn)"
                }
            ));
            return Outcome { allow: !blocks, lines };
        }
    };
    if verdict.image != image {
        say(format!(
            "{service}: the image changed since the last scan ({} then, {image} now): started without a verdict",
            verdict.image
        ));
        return Outcome { allow: true, lines };
    }
    let decision = policy.decide(service, &verdict.findings, today);
    for a in &decision.expired {
        say(format!(
            "{service}: allowlist entry {} ({}) expired on {}: it no longer applies (reason was: {})",
            a.id, a.at, a.expires, a.reason
        ));
    }
    for a in &decision.allowed {
        say(format!("{service}: {} in {} allowed until {}: {}", a.id, a.package, a.expires, a.reason));
    }
    if !decision.fails() {
        return Outcome { allow: true, lines };
    }
    for f in decision.failing.iter().take(SHOWN) {
        let aliases = if f.aliases.is_empty() { String::new() } else { format!(" ({})", f.aliases.join(", ")) };
        let fix = f.fixed.as_deref().map_or_else(|| "no fixed version".to_owned(), |v| format!("fixed in {v}"));
        say(format!(
            "{service}: {}{aliases}: {} {} ({}), severity {}, {fix}",
            f.id,
            f.package,
            f.installed,
            f.ecosystem,
            f.severity.as_str()
        ));
    }
    if decision.failing.len() > SHOWN {
        say(format!("{service}: ... and {} more (`aictl scan {service}`)", decision.failing.len() - SHOWN));
    }
    let summary = summary(&verdict, decision.failing.len(), decision.rules);
    if decision.blocks() {
        say(format!(
            "{service}: start refused by the scan policy (action {}): {summary}; update the image, or allowlist in {}",
            decision.rules.action.as_str(),
            policy.path.as_deref().unwrap_or(Path::new(policy::POLICY_PATH)).display()
        ));
        return Outcome { allow: false, lines };
    }
    say(format!("{service}: fails the scan policy (action warn): {summary}"));
    Outcome { allow: true, lines }
}

fn summary(v: &Verdict, failing: usize, rules: policy::Rules) -> String {
    format!(
        "{failing} finding(s) at or above {}{} in {} ({}), scanned {}",
        rules.severity.as_str(),
        if rules.ignore_unfixed { " with a fix" } else { "" },
        v.image,
        v.digest,
        time_text(v.scanned_at)
    )
}

/// `YYYY-MM-DD HH:MM UTC` of seconds since the epoch.
pub fn time_text(secs: u64) -> String {
    let (y, m, d, hh, mm, _) = crate::civil::utc(secs);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::osv::Finding;
    use crate::scan::Severity;

    struct Fixture {
        _t: tempfile::TempDir,
        policy: std::path::PathBuf,
        store: Store,
    }

    fn fixture(policy: &str) -> Fixture {
        let t = tempfile::tempdir().expect("tempdir");
        let path = t.path().join("policy.toml");
        std::fs::write(&path, policy).expect("write");
        let store = Store { dir: t.path().join("state") };
        let v = Verdict {
            service: "chat".into(),
            image: "localhost/chat:1".into(),
            digest: format!("sha256:{}", "b".repeat(64)),
            scanned_at: 1_764_547_200,
            findings: vec![Finding {
                id: "DEBIAN-CVE-2099-0001".into(),
                aliases: vec!["CVE-2099-0001".into()],
                package: "zlib".into(),
                ecosystem: "Debian:13".into(),
                installed: "1:1.3.dfsg+really1.3.1-1+b1".into(),
                fixed: Some("1:1.3.dfsg+really1.3.1-2".into()),
                severity: Severity::Critical,
            }],
        };
        store.write_verdict(&v).expect("verdict");
        Fixture { _t: t, policy: path, store }
    }

    const DAY: i64 = 20_000;

    #[test]
    fn block_names_the_advisory_and_the_fix() {
        let f = fixture("[policy]\naction = \"block\"\n");
        let o = judge(&f.policy, &f.store, "chat", "localhost/chat:1", DAY);
        assert!(!o.allow);
        let text = o.lines.join("\n");
        assert!(text.contains("DEBIAN-CVE-2099-0001 (CVE-2099-0001): zlib"), "{text}");
        assert!(text.contains("fixed in 1:1.3.dfsg+really1.3.1-2"), "{text}");
        assert!(text.contains("start refused by the scan policy (action block)"), "{text}");
        assert!(text.contains("2025-12-01 00:00 UTC"), "{text}");
        // warn lets it start, saying why it fails.
        let f = fixture("[policy]\naction = \"warn\"\n");
        let o = judge(&f.policy, &f.store, "chat", "localhost/chat:1", DAY);
        assert!(o.allow && o.lines.iter().any(|l| l.contains("fails the scan policy (action warn)")), "{o:?}");
    }

    #[test]
    fn allowlist_until_expiry() {
        let entry =
            "[[allow]]\nid = \"CVE-2099-0001\"\nservice = \"chat\"\nexpires = 2024-10-01\nreason = \"no TLS\"\n";
        let f = fixture(&format!("[policy]\naction = \"block\"\n{entry}"));
        let day = policy::days_from_date("2024-10-01").expect("date");
        let o = judge(&f.policy, &f.store, "chat", "localhost/chat:1", day);
        assert!(o.allow, "{o:?}");
        assert!(o.lines.iter().any(|l| l.contains("allowed until 2024-10-01: no TLS")), "{o:?}");
        let o = judge(&f.policy, &f.store, "chat", "localhost/chat:1", day + 1);
        assert!(!o.allow, "{o:?}");
        assert!(o.lines.iter().any(|l| l.contains("expired on 2024-10-01")), "{o:?}");
    }

    #[test]
    fn what_it_cannot_judge() {
        let f = fixture("[policy]\naction = \"block\"\n");
        // Never scanned, or scanned with another image: the start goes on, saying so.
        let o = judge(&f.policy, &f.store, "web", "x", DAY);
        assert!(o.allow && o.lines[0].contains("not scanned yet"), "{o:?}");
        let o = judge(&f.policy, &f.store, "chat", "localhost/chat:2", DAY);
        assert!(o.allow && o.lines[0].contains("image changed"), "{o:?}");
        // A verdict file that is not one: refused under block.
        std::fs::write(f.store.verdict_path("bad"), "{\"service\": \"bad\"").expect("write");
        assert!(!judge(&f.policy, &f.store, "bad", "x", DAY).allow);
        // A broken policy: refused, naming the file, line and key.
        std::fs::write(&f.policy, "[policy]\naction = \"blok\"\n").expect("write");
        let o = judge(&f.policy, &f.store, "chat", "localhost/chat:1", DAY);
        assert!(!o.allow);
        assert!(
            o.lines[0].ends_with(
                "policy.toml:2:10: policy.action: `blok` is not one of warn, block, stop; did you mean `block`?"
            ),
            "{o:?}"
        );
        // A policy path that is a FIFO: refused without blocking.
        std::fs::remove_file(&f.policy).expect("rm");
        nix::unistd::mkfifo(&f.policy, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
        assert!(!judge(&f.policy, &f.store, "chat", "localhost/chat:1", DAY).allow);
    }

    #[test]
    fn lines_stay_lines() {
        let f = fixture("[policy]\naction = \"block\"\n");
        let mut v = f.store.read_verdict("chat").expect("read").expect("some");
        v.findings[0].package = "evil\n<27>forged: all good\u{1b}[2J".into();
        let first = v.findings[0].clone();
        v.findings.extend((0..50).map(|i| Finding { id: format!("X-{i}"), ..first.clone() }));
        f.store.write_verdict(&v).expect("write");
        let o = judge(&f.policy, &f.store, "chat", "localhost/chat:1", DAY);
        assert!(!o.allow);
        assert!(o.lines.iter().all(|l| !l.contains('\n') && !l.contains('\u{1b}')), "{o:?}");
        assert!(o.lines.iter().any(|l| l.contains("... and 31 more")), "{o:?}");
    }

    #[test]
    fn times() {
        assert_eq!(time_text(0), "1970-01-01 00:00 UTC");
        assert_eq!(time_text(951_782_400 + 3_660), "2000-02-29 01:01 UTC");
    }
}
