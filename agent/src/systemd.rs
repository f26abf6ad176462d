//! systemd's own D-Bus API, as far as the agent uses it: unit state and jobs.
//!
//! The agent never polls: it calls `Subscribe` once, then follows `PropertiesChanged` of every
//! unit with one match rule ([`crate::units`]), `JobRemoved` with one more (shared by every job it
//! starts: [`follow_jobs`]) and `Reloading` for daemon-reloads.

use futures_util::StreamExt;
use tokio::sync::broadcast;
use zbus::proxy;
use zbus::zvariant::OwnedObjectPath;

use crate::errors::Error;

/// systemd's bus name.
pub const SYSTEMD: &str = "org.freedesktop.systemd1";
/// The interface of systemd's unit objects.
pub const UNIT_INTERFACE: &str = "org.freedesktop.systemd1.Unit";
/// The interface of systemd's service units (`ControlGroup`, `Result`).
pub const SERVICE_UNIT_INTERFACE: &str = "org.freedesktop.systemd1.Service";

#[proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
pub trait Systemd {
    /// Asks systemd to send unit and job signals to this connection.
    fn subscribe(&self) -> zbus::Result<()>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    /// `systemctl daemon-reload`: returns when the reload is done.
    fn reload(&self) -> zbus::Result<()>;
    #[zbus(signal)]
    fn job_removed(&self, id: u32, job: zbus::zvariant::ObjectPath<'_>, unit: &str, result: &str) -> zbus::Result<()>;
    #[zbus(signal)]
    fn reloading(&self, active: bool) -> zbus::Result<()>;
}

/// What to do with a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
        }
    }
}

/// The live state of a unit, as `systemctl` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitState {
    /// `ActiveState`: active, inactive, failed, activating, deactivating, reloading.
    pub active: String,
    /// `SubState`: running, dead, exited, ...
    pub sub: String,
    /// `LoadState`: loaded, not-found, masked, error.
    pub load: String,
}

/// How many `JobRemoved` signals wait for the slowest job waiter before it loses track.
const JOBS_QUEUE: usize = 4096;

/// A job systemd finished: its object path and result (`done`, `failed`, `canceled`, ...).
#[derive(Clone, Debug)]
pub struct JobResult {
    pub job: String,
    pub result: String,
}

/// Follows systemd's `JobRemoved` with one match rule for the life of the agent and hands each
/// to every waiting [`run_job`] (a rule per job would cost one of the connection's 512 match rules
/// for each job in flight).
pub async fn follow_jobs(
    systemd: &SystemdProxy<'static>,
) -> zbus::Result<(broadcast::Sender<JobResult>, tokio::task::JoinHandle<()>)> {
    let mut removed = systemd.receive_job_removed().await?;
    let (sender, _) = broadcast::channel(JOBS_QUEUE);
    let results = sender.clone();
    let task = tokio::spawn(async move {
        while let Some(signal) = removed.next().await {
            if let Ok(args) = signal.args() {
                // No receiver: nobody waits for a job now.
                let _ = results.send(JobResult { job: args.job.to_string(), result: args.result.to_owned() });
            }
        }
    });
    Ok((sender, task))
}

/// Runs a start/stop/restart job for `unit` and waits for its result. `Ok` when the job ended
/// with `done`; otherwise [`Error::Failed`] naming the result and where to look.
pub async fn run_job(
    systemd: &SystemdProxy<'_>,
    jobs: &broadcast::Sender<JobResult>,
    calls: &tokio::sync::Semaphore,
    verb: Verb,
    unit: &str,
) -> Result<(), Error> {
    // Listen before asking, so the job cannot end unseen.
    let mut removed = jobs.subscribe();
    let asked = {
        let _permit = calls.acquire().await.map_err(|e| Error::Failed(e.to_string()))?;
        match verb {
            Verb::Start => systemd.start_unit(unit, "replace").await,
            Verb::Stop => systemd.stop_unit(unit, "replace").await,
            Verb::Restart => systemd.restart_unit(unit, "replace").await,
        }
    };
    let job =
        asked.map_err(|e| Error::Failed(format!("systemd refused to {} {unit}: {}", verb.as_str(), describe(&e))))?;
    loop {
        match removed.recv().await {
            Ok(done) if done.job == job.as_str() => {
                return match done.result.as_str() {
                    "done" => Ok(()),
                    result => Err(Error::Failed(format!(
                        "{} {unit}: the job ended with result `{result}`; see `systemctl status {unit}` and `journalctl -u {unit}`",
                        verb.as_str()
                    ))),
                };
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                log::warn!(unit = unit; "{} {unit}: {missed} job results went by unread; this job's may be among them", verb.as_str());
                return Err(Error::Failed(format!(
                    "{} {unit}: lost track of systemd's job {job} among {missed} others that ended at once; see `systemctl status {unit}`",
                    verb.as_str()
                )));
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    Err(Error::Failed(format!("{} {unit}: lost the connection to systemd before the job ended", verb.as_str())))
}

/// A D-Bus error as a person reads it: the message, without the error name when there is one.
pub fn describe(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, Some(message), _) => format!("{message} ({name})"),
        zbus::Error::MethodError(name, None, _) => name.to_string(),
        other => other.to_string(),
    }
}
