//! Preflight on the bus: each service's last preflight problems (`Service1.PreflightProblems`),
//! kept current without polling.
//!
//! The agent cannot run the checks itself and see what podman sees (its `/dev` is private, it
//! has no capability): root runs them, in each GPU unit's `ExecStartPre=` and in
//! `aicontainers-preflight.service`, and writes one record per service
//! ([`aicontainers::preflight::record`]). The agent
//! - watches the records' directory with inotify and shows each record on its service's object
//!   (a `PropertiesChanged` signal when it changes; a warning in the journal when a running
//!   service gets an error, such as a CDI spec gone stale under it);
//! - watches what makes the outcome change (the CDI spec directories, the service directories,
//!   and the installed kernel modules, where a driver upgrade lands) and then starts
//!   `aicontainers-preflight.service`, once per burst of changes.
//!
//! A directory that does not exist yet is watched through its parent, and everything is watched
//! again when it appears. Loading or unloading a module without installing one changes none of
//! these files: the next start's `ExecStartPre=` or `Service1.Preflight()` sees it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aicontainers::preflight::record::{self, Record, RECORD_DIR};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use zbus::zvariant::{OwnedValue, Type, Value};
use zbus::Connection;

/// The unit that runs every service's checks and writes their records.
pub const PREFLIGHT_UNIT: &str = "aicontainers-preflight.service";

/// How long a burst of file changes may last before the checks run once for all of it.
const SETTLE: Duration = Duration::from_millis(300);

/// One preflight problem on the bus (`(ssss)`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct Check {
    /// The check id (`cdi.stale-driver`); aicontainers-preflight(7) describes each.
    pub id: String,
    /// `error` (the start fails), `warning`, or `unknown` (the record could not be read).
    pub status: String,
    pub message: String,
    /// The command or edit that fixes it.
    pub fix: String,
}

/// What the agent shows of one service's record.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Shown {
    /// No check has run for it since boot.
    Never,
    Record(Record),
    /// The file is there but is not a record of the service.
    Unreadable(String),
}

/// The records, as last read.
#[derive(Debug)]
pub struct Records {
    dir: PathBuf,
    shown: Mutex<BTreeMap<String, Shown>>,
}

impl Records {
    pub fn new(root: &Path) -> Records {
        Records { dir: aicontainers::preflight::Host::new(root).path(RECORD_DIR), shown: Mutex::default() }
    }

    /// The problems of `service`, as `Service1.PreflightProblems` shows them.
    pub fn problems(&self, service: &str) -> Vec<Check> {
        match self.shown.lock().unwrap_or_else(PoisonError::into_inner).get(service) {
            None | Some(Shown::Never) => Vec::new(),
            Some(Shown::Record(r)) => r
                .problems
                .iter()
                .map(|p| Check {
                    id: p.id.clone(),
                    status: p.status.clone(),
                    message: p.message.clone(),
                    fix: p.fix.clone(),
                })
                .collect(),
            Some(Shown::Unreadable(why)) => vec![Check {
                id: "preflight.record".into(),
                status: "unknown".into(),
                message: why.clone(),
                fix: format!("aictl preflight {service}"),
            }],
        }
    }

    /// When the checks last ran for `service` (seconds since the epoch; 0: not since boot).
    pub fn checked_at(&self, service: &str) -> u64 {
        match self.shown.lock().unwrap_or_else(PoisonError::into_inner).get(service) {
            Some(Shown::Record(r)) => r.checked_at,
            _ => 0,
        }
    }

    /// Reads the record of `service` again; returns whether it changed.
    pub fn refresh_one(&self, service: &str) -> bool {
        let now = read_shown(&self.dir, service);
        let mut shown = self.shown.lock().unwrap_or_else(PoisonError::into_inner);
        if shown.get(service) == Some(&now) {
            return false;
        }
        shown.insert(service.to_owned(), now);
        true
    }

    /// Reads the records of `services` again (and forgets the others); returns the services whose
    /// record changed, each with whether it now has an error it did not have before.
    pub fn refresh(&self, services: &[String]) -> Vec<(String, bool)> {
        let mut shown = self.shown.lock().unwrap_or_else(PoisonError::into_inner);
        shown.retain(|name, _| services.contains(name));
        let mut changed = Vec::new();
        for name in services {
            let now = read_shown(&self.dir, name);
            let had_error = matches!(shown.get(name), Some(Shown::Record(r)) if r.has_error());
            if shown.get(name) != Some(&now) {
                let new_error = matches!(&now, Shown::Record(r) if r.has_error()) && !had_error;
                shown.insert(name.clone(), now);
                changed.push((name.clone(), new_error));
            }
        }
        changed
    }
}

fn read_shown(dir: &Path, service: &str) -> Shown {
    match record::read(dir, service) {
        Ok(None) => Shown::Never,
        Ok(Some(r)) => Shown::Record(r),
        Err(why) => Shown::Unreadable(why),
    }
}

/// What a change was to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Something the checks read: they should run again.
    Inputs,
    /// The records.
    Records,
}

/// What is watched, below `root`: the directories whose changes make the checks run again, and
/// the records' directory.
pub fn watched_dirs(root: &Path) -> Vec<(PathBuf, Event)> {
    let host = aicontainers::preflight::Host::new(root);
    let mut dirs: Vec<(PathBuf, Event)> = ["/etc/cdi", "/var/run/cdi", "/run/cdi"]
        .iter()
        .chain(aicontainers::source::SYSTEM_DIRS.iter())
        .map(|d| (host.path(d), Event::Inputs))
        .collect();
    if let Ok(uname) = nix::sys::utsname::uname() {
        let release = uname.release().to_string_lossy().into_owned();
        dirs.push((host.path("/usr/lib/modules").join(release), Event::Inputs));
    }
    dirs.push((host.path(RECORD_DIR), Event::Records));
    dirs
}

const CHANGES: AddWatchFlags = AddWatchFlags::IN_CLOSE_WRITE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_ONLYDIR);

/// What one watch descriptor stands for.
#[derive(Clone, Debug)]
enum Watch {
    Dir(Event),
    /// The parent of a missing directory: watched until the directory appears.
    Parent,
}

/// Watches `dirs` from a thread of its own, sending each change (many changes may send many
/// events; the receiver settles them). Ends when the receiver is dropped.
pub fn watch(dirs: Vec<(PathBuf, Event)>) -> std::io::Result<mpsc::UnboundedReceiver<Event>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (mut inotify, mut watches) = arm(&dirs)?;
    std::thread::Builder::new().name("preflight-watch".into()).spawn(move || loop {
        let events = match inotify.read_events() {
            Ok(events) => events,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::warn!("preflight: cannot watch for changes any more: {e}");
                return;
            }
        };
        let mut rearm = false;
        for event in events {
            match watches.get(&event.wd) {
                Some(Watch::Dir(kind)) => {
                    if tx.send(*kind).is_err() {
                        return;
                    }
                    rearm |= event.mask.intersects(AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF);
                }
                Some(Watch::Parent) => rearm = true,
                None => rearm |= event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW),
            }
        }
        if rearm {
            match arm(&dirs) {
                Ok((i, w)) => (inotify, watches) = (i, w),
                Err(e) => log::warn!("preflight: cannot watch for changes again: {e}"),
            }
            // What appeared may already hold what was to be seen.
            if tx.send(Event::Inputs).is_err() || tx.send(Event::Records).is_err() {
                return;
            }
        }
    })?;
    Ok(rx)
}

/// A fresh inotify instance watching `dirs`, or the nearest existing parent of a missing one.
fn arm(dirs: &[(PathBuf, Event)]) -> std::io::Result<(Inotify, HashMap<WatchDescriptor, Watch>)> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC)?;
    let mut watches = HashMap::new();
    for (dir, kind) in dirs {
        match inotify.add_watch(dir.as_path(), CHANGES) {
            Ok(wd) => {
                watches.insert(wd, Watch::Dir(*kind));
            }
            Err(_) => {
                let parent = dir.ancestors().skip(1).find(|p| p.is_dir());
                if let Some(parent) = parent {
                    let flags = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_ONLYDIR;
                    if let Ok(wd) = inotify.add_watch(parent, flags) {
                        watches.entry(wd).or_insert(Watch::Parent);
                    }
                }
            }
        }
    }
    Ok((inotify, watches))
}

/// Waits for the next event, then takes every event of the burst that follows it (until
/// [`SETTLE`] passes without one); returns which kinds came, or `None` when the watch ended.
pub async fn next_burst(rx: &mut mpsc::UnboundedReceiver<Event>) -> Option<(bool, bool)> {
    let first = rx.recv().await?;
    let (mut inputs, mut records) = (first == Event::Inputs, first == Event::Records);
    loop {
        match tokio::time::timeout(SETTLE, rx.recv()).await {
            Ok(Some(Event::Inputs)) => inputs = true,
            Ok(Some(Event::Records)) => records = true,
            Ok(None) | Err(_) => return Some((inputs, records)),
        }
    }
}

/// Signals that the preflight properties of the service `name`, at `path`, changed.
pub async fn emit(conn: &Connection, path: &str, records: &Records, name: &str) -> zbus::Result<()> {
    let values = HashMap::from([
        ("PreflightProblems", Value::from(records.problems(name))),
        ("PreflightCheckedAt", Value::from(records.checked_at(name))),
    ]);
    crate::units::emit_values(conn, path, values).await
}
