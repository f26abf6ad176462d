//! systemd's own D-Bus API, as far as the agent uses it: unit state and jobs.
//!
//! The agent never polls: it calls `Subscribe` once, then follows `PropertiesChanged` on each
//! service's unit object, `JobRemoved` for the jobs it starts and `Reloading` for daemon-reloads.

use futures_util::StreamExt;
use zbus::zvariant::OwnedObjectPath;
use zbus::{proxy, Connection};

use crate::errors::Error;

/// systemd's bus name.
pub const SYSTEMD: &str = "org.freedesktop.systemd1";
/// The interface of systemd's unit objects.
pub const UNIT_INTERFACE: &str = "org.freedesktop.systemd1.Unit";

#[proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
pub trait Systemd {
    /// Asks systemd to send unit and job signals to this connection.
    fn subscribe(&self) -> zbus::Result<()>;
    /// The object of the unit `name`, loading it if needed.
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
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

#[proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
pub trait Unit {
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
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

/// Reads the state of the unit at `path`.
pub async fn unit_state(conn: &Connection, path: &OwnedObjectPath) -> zbus::Result<UnitState> {
    let unit =
        UnitProxy::builder(conn).path(path.clone())?.cache_properties(zbus::proxy::CacheProperties::No).build().await?;
    Ok(UnitState { active: unit.active_state().await?, sub: unit.sub_state().await?, load: unit.load_state().await? })
}

/// Runs a start/stop/restart job for `unit` and waits for its result. `Ok` when the job ended
/// with `done`; otherwise [`Error::Failed`] naming the result and where to look.
pub async fn run_job(systemd: &SystemdProxy<'_>, verb: Verb, unit: &str) -> Result<(), Error> {
    // Listen before asking, so the job cannot end unseen.
    let mut removed = systemd.receive_job_removed().await?;
    let asked = match verb {
        Verb::Start => systemd.start_unit(unit, "replace").await,
        Verb::Stop => systemd.stop_unit(unit, "replace").await,
        Verb::Restart => systemd.restart_unit(unit, "replace").await,
    };
    let job =
        asked.map_err(|e| Error::Failed(format!("systemd refused to {} {unit}: {}", verb.as_str(), describe(&e))))?;
    while let Some(signal) = removed.next().await {
        let args = signal.args()?;
        if args.job.as_str() != job.as_str() {
            continue;
        }
        return match args.result {
            "done" => Ok(()),
            result => Err(Error::Failed(format!(
                "{} {unit}: the job ended with result `{result}`; see `systemctl status {unit}` and `journalctl -u {unit}`",
                verb.as_str()
            ))),
        };
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
