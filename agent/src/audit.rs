//! The sandbox's audit trail (docs/sandbox.md, "Audit"): every verdict of the sandbox's
//! nftables rules, which the kernel logs as a line (`aicontainers deny coder ... DST=...`),
//! re-emitted as a journal entry with `SERVICE=`, `DEST=`, `PORT=`, `PROTO=`,
//! `SANDBOX_VERDICT=` and `MESSAGE_ID=` [`audit::MESSAGE_ID`], attributed to the service's unit
//! (`OBJECT_SYSTEMD_UNIT=NAME.service`, which `journalctl -u NAME` matches for entries that
//! root logs), and counted per service for `Service1.SandboxVerdicts`.
//!
//! ## Privilege
//! The agent reads the kernel's lines from the journal, with `journalctl --dmesg --follow`:
//! the journal's files are root's, and the agent runs as root (without any capability), so it
//! needs neither `/dev/kmsg` nor `syslog(2)`, which `ProtectKernelLogs=` and
//! `kernel.dmesg_restrict` keep from it. It takes only kernel entries of facility 0: a process
//! that writes to `/dev/kmsg` (root only) gets facility `user`, so nothing in user space can
//! pass a line off as the kernel's.
//!
//! ## Restarts
//! Each run reads the kernel entries of the boot from the start: every verdict since the
//! service started is counted again, but only those after the last one forwarded (whose cursor
//! the agent keeps in `/run/aicontainersd`, kept across its restarts) are emitted again.

use std::collections::{BTreeSet, HashMap};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aicontainers::sandbox::audit::{self, Attempt, Verdict};
use serde::Deserialize;
use tokio::sync::mpsc;

/// The agent's runtime directory (`RuntimeDirectory=aicontainersd`, kept across restarts), below
/// its root.
pub const RUN_DIR: &str = "run/aicontainersd";
/// Where the cursor of the last verdict forwarded is kept, in [`RUN_DIR`].
const CURSOR: &str = "sandbox-cursor";
/// The longest cursor taken from the file (journal cursors are about 150 bytes).
const CURSOR_MAX: u64 = 1024;
/// How long to wait before following the journal again after journalctl ended.
const RETRY: Duration = Duration::from_secs(5);
/// SIGTERM's number on Linux.
const SIGTERM: i32 = 15;
/// How long verdicts are gathered before their services' counters are signalled, once each.
const SIGNAL_EVERY: Duration = Duration::from_millis(500);

/// A service's verdicts since it last started (its allow record's time).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub since_usec: u64,
    pub allowed: u64,
    pub denied: u64,
}

/// The counters of every sandboxed service, by name.
#[derive(Debug, Default)]
pub struct Audit {
    counts: Mutex<HashMap<String, Counts>>,
}

impl Audit {
    /// `service`'s counters, as of its current start (zero before any verdict).
    pub fn counts(&self, service: &str) -> Counts {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).get(service).copied().unwrap_or_default()
    }

    /// Counts a verdict of `service` logged at `at_usec`, when the service's current start was at
    /// `started_usec` (earlier runs' verdicts are not counted); returns whether a counter moved.
    pub fn count(&self, service: &str, verdict: Verdict, at_usec: u64, started_usec: u64) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let c = counts.entry(service.to_owned()).or_default();
        if c.since_usec != started_usec {
            *c = Counts { since_usec: started_usec, ..Counts::default() };
        }
        if at_usec < started_usec {
            return false;
        }
        match verdict {
            Verdict::Allowed => c.allowed += 1,
            Verdict::Denied => c.denied += 1,
        }
        true
    }
}

/// A kernel entry as `journalctl --output=json` prints it. `MESSAGE` is a string, or an array
/// of bytes when it is not UTF-8 (never a verdict).
#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(rename = "MESSAGE")]
    message: serde_json::Value,
    #[serde(rename = "SYSLOG_FACILITY")]
    facility: Option<String>,
    #[serde(rename = "_TRANSPORT")]
    transport: Option<String>,
    #[serde(rename = "__CURSOR")]
    cursor: String,
    #[serde(rename = "__REALTIME_TIMESTAMP")]
    realtime: String,
}

/// A verdict read from the journal: what it says, when, and where it is in the journal.
#[derive(Debug, PartialEq, Eq)]
pub struct Read {
    pub attempt: Attempt,
    pub at_usec: u64,
    pub cursor: String,
}

/// Reads one line of `journalctl --output=json`: `Ok(None)` for an entry that is not a verdict
/// (another kernel message, or a message that is not the kernel's), `Err` for a line that
/// claims to be a verdict but is not one, or is not an entry at all.
pub fn read_entry(line: &str) -> Result<Option<Read>, String> {
    let entry: Entry = serde_json::from_str(line).map_err(|e| format!("not a journal entry: {e}"))?;
    let serde_json::Value::String(message) = entry.message else { return Ok(None) };
    let kernel = entry.transport.as_deref() == Some("kernel") && entry.facility.as_deref() == Some("0");
    if !kernel || !message.starts_with("aicontainers ") {
        return Ok(None);
    }
    let at_usec = entry.realtime.parse().map_err(|_| format!("__REALTIME_TIMESTAMP={:?}", entry.realtime))?;
    let attempt = audit::parse_kernel_line(&message)?;
    Ok(Some(Read { attempt, at_usec, cursor: entry.cursor }))
}

/// Writes the journal entry of one verdict.
pub fn emit(attempt: &Attempt) {
    let verdict = attempt.verdict.name();
    let dest = attempt.dest.to_string();
    let proto = attempt.proto.as_str();
    let level = match attempt.verdict {
        Verdict::Allowed => log::Level::Info,
        Verdict::Denied => log::Level::Warn,
    };
    // `PORT=` only where the protocol has ports (not ICMP); `SERVICE=` and the unit only when
    // the cgroup had one.
    match (&attempt.service, attempt.port) {
        (Some(service), Some(port)) => log::log!(target: "sandbox", level,
            message_id = audit::MESSAGE_ID, service = service.as_str(),
            object_systemd_unit = format!("{service}.service").as_str(), dest = dest.as_str(), port = port,
            proto = proto, sandbox_verdict = verdict; "{attempt}"),
        (Some(service), None) => log::log!(target: "sandbox", level,
            message_id = audit::MESSAGE_ID, service = service.as_str(),
            object_systemd_unit = format!("{service}.service").as_str(), dest = dest.as_str(),
            proto = proto, sandbox_verdict = verdict; "{attempt}"),
        (None, Some(port)) => log::log!(target: "sandbox", level,
            message_id = audit::MESSAGE_ID, dest = dest.as_str(), port = port, proto = proto,
            sandbox_verdict = verdict; "{attempt}"),
        (None, None) => log::log!(target: "sandbox", level,
            message_id = audit::MESSAGE_ID, dest = dest.as_str(), proto = proto,
            sandbox_verdict = verdict; "{attempt}"),
    }
}

/// Where forwarding resumes: the last verdict forwarded before the agent restarted.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Resume {
    cursor: String,
    at_usec: u64,
}

fn read_resume(path: &Path) -> Option<Resume> {
    let data = aicontainers::fsutil::read_record(path, CURSOR_MAX).ok()??;
    let text = String::from_utf8(data).ok()?;
    let (at, cursor) = text.trim_end().split_once(' ')?;
    Some(Resume { cursor: cursor.to_owned(), at_usec: at.parse().ok()? })
}

fn write_resume(path: &Path, r: &Read) {
    let tmp = path.with_extension("tmp");
    let written =
        std::fs::write(&tmp, format!("{} {}\n", r.at_usec, r.cursor)).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        log::debug!("{}: {e}", path.display());
    }
}

/// Follows the journal's kernel entries on a thread of its own (journalctl's output is read
/// with blocking reads) for as long as the agent runs; sends the name of each service whose
/// counters moved to `moved`. `root` is the agent's root (`/` on a live host).
pub fn follow(audit: Arc<Audit>, root: PathBuf, moved: mpsc::UnboundedSender<String>) -> std::io::Result<()> {
    std::thread::Builder::new().name("sandbox-audit".into()).spawn(move || loop {
        if let Err(e) = follow_once(&audit, &root, &moved) {
            log::warn!("sandbox audit: {e}; following the journal again in {} s", RETRY.as_secs());
        }
        if moved.is_closed() {
            return;
        }
        std::thread::sleep(RETRY);
    })?;
    Ok(())
}

/// One run of `journalctl`, until it ends.
fn follow_once(audit: &Audit, root: &Path, moved: &mpsc::UnboundedSender<String>) -> Result<(), String> {
    let cursor_path = root.join(RUN_DIR).join(CURSOR);
    let resume = read_resume(&cursor_path);
    let mut child = Command::new("journalctl")
        .args(["--dmesg", "--follow", "--lines=all", "--output=json", "--no-pager"])
        .arg("--output-fields=MESSAGE,SYSLOG_FACILITY,_TRANSPORT")
        .arg("SYSLOG_FACILITY=0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("journalctl: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    // Until the entry forwarded last is seen again (or one after it in time), verdicts are
    // counted but not forwarded: they were before the agent restarted.
    let mut forwarding = resume.is_none();
    let mut refused = 0u64;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("journalctl: {e}"))?;
        let read = match read_entry(&line) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(why) => {
                // Only the kernel writes these lines; say so a few times, not for each one.
                refused += 1;
                if refused <= 10 {
                    log::warn!("sandbox audit: a kernel line refused: {why}");
                }
                continue;
            }
        };
        if !forwarding {
            let resume = resume.as_ref().expect("not forwarding without a resume point");
            if read.cursor == resume.cursor {
                forwarding = true;
                count(audit, root, &read, moved);
                continue;
            }
            forwarding = read.at_usec > resume.at_usec;
        }
        if forwarding {
            emit(&read.attempt);
            write_resume(&cursor_path, &read);
        }
        count(audit, root, &read, moved);
    }
    let status = child.wait().map_err(|e| format!("journalctl: {e}"))?;
    // Stopping the agent stops journalctl first (it is in the unit's cgroup): not worth a warning.
    if std::os::unix::process::ExitStatusExt::signal(&status) == Some(SIGTERM) {
        log::debug!("sandbox audit: journalctl stopped");
        return Ok(());
    }
    Err(format!("journalctl ended ({status})"))
}

fn count(audit: &Audit, root: &Path, read: &Read, moved: &mpsc::UnboundedSender<String>) {
    let Some(service) = &read.attempt.service else { return };
    // A service without a record is not running sandboxed now: nothing to count towards.
    let Ok(Some(record)) = aicontainers::sandbox::record::read(root, service) else { return };
    if audit.count(service, read.attempt.verdict, read.at_usec, record.started_usec) {
        let _ = moved.send(service.clone());
    }
}

/// Signals the counters of the services named on `moved`, each at most once per
/// [`SIGNAL_EVERY`], through [`crate::units::emit_values`].
pub async fn signal_counters(conn: zbus::Connection, audit: Arc<Audit>, mut moved: mpsc::UnboundedReceiver<String>) {
    while let Some(first) = moved.recv().await {
        let mut names = BTreeSet::from([first]);
        tokio::time::sleep(SIGNAL_EVERY).await;
        while let Ok(name) = moved.try_recv() {
            names.insert(name);
        }
        for name in names {
            let c = audit.counts(&name);
            let values = HashMap::from([("SandboxVerdicts", zbus::zvariant::Value::from((c.allowed, c.denied)))]);
            if let Err(e) = crate::units::emit_values(&conn, &crate::names::service_path(&name), values).await {
                log::debug!("cannot signal {name}'s sandbox counters: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(message: &str, facility: &str, transport: &str) -> String {
        serde_json::json!({
            "MESSAGE": message, "SYSLOG_FACILITY": facility, "_TRANSPORT": transport,
            "__CURSOR": "s=1;i=2", "__REALTIME_TIMESTAMP": "1764590000000000",
        })
        .to_string()
    }

    const LINE: &str =
        "aicontainers deny coder IN= OUT=sbx0 SRC=10.9.0.1 DST=10.9.0.2 LEN=60 PROTO=TCP SPT=1 DPT=81 SYN";

    #[test]
    fn kernel_entries() {
        let r = read_entry(&json(LINE, "0", "kernel")).unwrap().unwrap();
        assert_eq!((r.attempt.port, r.at_usec, r.cursor.as_str()), (Some(81), 1_764_590_000_000_000, "s=1;i=2"));
        // Not the kernel's: written to /dev/kmsg by a process (facility user), or by syslog.
        assert_eq!(read_entry(&json(LINE, "1", "kernel")).unwrap(), None);
        assert_eq!(read_entry(&json(LINE, "0", "syslog")).unwrap(), None);
        assert_eq!(read_entry(&json("usb 1-1: new device", "0", "kernel")).unwrap(), None);
        // A message that is not UTF-8 (journalctl prints its bytes).
        let bytes = r#"{"MESSAGE":[97,105,255],"SYSLOG_FACILITY":"0","_TRANSPORT":"kernel","__CURSOR":"c","__REALTIME_TIMESTAMP":"1"}"#;
        assert_eq!(read_entry(bytes).unwrap(), None);
        // Claims to be a verdict, and is not one; not an entry at all.
        assert!(
            read_entry(&json("aicontainers deny coder DST=10.9.0.2 DST=1.1.1.1 PROTO=ICMP", "0", "kernel")).is_err()
        );
        assert!(read_entry("{").is_err());
        assert!(read_entry(r#"{"MESSAGE":"x"}"#).is_err());
        let bad_time = json(LINE, "0", "kernel").replace("1764590000000000", "-5");
        assert!(read_entry(&bad_time).is_err());
    }

    #[test]
    fn counters_start_with_the_service() {
        let audit = Audit::default();
        assert!(!audit.count("coder", Verdict::Denied, 5, 10), "a verdict of the run before");
        assert!(audit.count("coder", Verdict::Denied, 11, 10));
        assert!(audit.count("coder", Verdict::Allowed, 12, 10));
        assert_eq!(audit.counts("coder"), Counts { since_usec: 10, allowed: 1, denied: 1 });
        assert!(audit.count("coder", Verdict::Denied, 21, 20), "restarted: counted afresh");
        assert_eq!(audit.counts("coder"), Counts { since_usec: 20, allowed: 0, denied: 1 });
        assert_eq!(audit.counts("other"), Counts::default());
    }

    #[test]
    fn resume_point_round_trips_and_refuses_junk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CURSOR);
        assert_eq!(read_resume(&path), None);
        let r = Read { attempt: audit::parse_kernel_line(LINE).unwrap(), at_usec: 42, cursor: "s=abc;i=1f;b=x".into() };
        write_resume(&path, &r);
        assert_eq!(read_resume(&path), Some(Resume { cursor: "s=abc;i=1f;b=x".into(), at_usec: 42 }));
        for junk in ["", "x y", "42", "-1 c"] {
            std::fs::write(&path, junk).unwrap();
            assert_eq!(read_resume(&path), None, "{junk:?}");
        }
        std::fs::write(&path, vec![b'1'; 2000]).unwrap();
        assert_eq!(read_resume(&path), None);
    }
}
