//! The agent's state (the services it shows) and `org.aicontainers.Manager1`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use aicontainers::account::HostAccounts;
use aicontainers::generate;
use aicontainers::source::SYSTEM_DIRS;
use futures_util::StreamExt;
use zbus::fdo::Properties;
use zbus::message::Header;
use zbus::names::InterfaceName;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedObjectPath, Value};
use zbus::{interface, Connection};

use crate::auth;
use crate::errors::Error;
use crate::image::Images;
use crate::names::{service_path, ACTION_MANAGE_SERVICES, MANAGER_INTERFACE, ROOT_PATH};
use crate::preflight;
use crate::scan;
use crate::service::{Context, ServiceInfo, ServiceObject};
use crate::systemd;
use crate::units::Live;

/// Where the agent reads the host: `/` in production, a test's tree otherwise.
#[derive(Clone, Debug)]
pub struct Host {
    pub root: PathBuf,
}

impl Host {
    fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    /// The model cache: `$AICONTAINERS_MODELS_DIR` or /var/lib/aicontainers/models, below the root.
    pub fn models_root(&self) -> PathBuf {
        self.path(&aicontainers::models::Store::system_root().to_string_lossy())
    }

    /// The service directories, lowest priority first.
    pub fn dirs(&self) -> Vec<PathBuf> {
        SYSTEM_DIRS.iter().map(|d| self.path(d)).collect()
    }
}

/// The agent: its connection, the services it shows, and what it cannot show.
pub struct Agent {
    ctx: Arc<Context>,
    host: Host,
    /// Each service on the bus, with what its files said.
    services: tokio::sync::Mutex<BTreeMap<String, ServiceInfo>>,
    /// What the last rescan could not put on the bus or read (`Manager1.Problems`).
    problems: Mutex<Vec<String>>,
    /// Set by every daemon-reload; the rescan loop takes it (several reloads, one rescan).
    reloaded: tokio::sync::Notify,
    /// The scanned images on the bus.
    pub images: Arc<Images>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("host", &self.host).finish_non_exhaustive()
    }
}

pub use crate::units::unit_path;

impl Agent {
    pub fn new(ctx: Arc<Context>, host: Host) -> Self {
        Agent {
            images: Arc::new(Images::new(ctx.conn.clone(), &host.root)),
            ctx,
            host,
            services: tokio::sync::Mutex::new(BTreeMap::new()),
            problems: Mutex::new(Vec::new()),
            reloaded: tokio::sync::Notify::new(),
        }
    }

    /// What the agent cannot show right now; empty when it shows everything.
    pub fn problems(&self) -> Vec<String> {
        self.problems.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The service manager's status line: the number of services, and the first problem.
    pub fn status_line(&self, count: usize) -> String {
        let problems = self.problems();
        match problems.as_slice() {
            [] => format!("Watching {count} services"),
            [only] => format!("Watching {count} services; cannot show everything: {only}"),
            [first, rest @ ..] => format!(
                "Watching {count} services; cannot show everything: {first} (and {} more problems: aictl status, journalctl -u aicontainersd)",
                rest.len()
            ),
        }
    }

    /// Reads the service files again and brings the service objects in line: new services get an
    /// object, removed ones lose it, changed ones get a fresh one; then every unit's state is read
    /// again (in batches). Returns how many services are on the bus. What it cannot do becomes
    /// one of the agent's problems: in the journal (warning), `STATUS=` and `Manager1.Problems`.
    pub async fn rescan(&self) -> Result<usize, Error> {
        let host = self.host.clone();
        let started = Instant::now();
        let loaded = tokio::task::spawn_blocking(move || {
            let accounts = HostAccounts { subuid: host.path("/etc/subuid"), subgid: host.path("/etc/subgid") };
            let names = aicontainers::names::UnitNames::under(&host.root);
            let mut loaded = generate::load_with(&host.dirs(), &accounts, &names);
            // The same GPU placement the generator made (same files, topology and holds).
            let warnings = aicontainers::host::HostGpus::from_env().place(&mut loaded);
            (loaded, warnings)
        })
        .await;
        let (loaded, warnings) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                let problem = format!("reading the service files failed: {e}");
                self.set_problems(vec![problem.clone()]).await;
                let count = self.services.lock().await.len();
                let _ = crate::notify::notify(&format!("STATUS={}", self.status_line(count)));
                return Err(Error::Failed(problem));
            }
        };
        for warning in &warnings {
            log::warn!("{warning}");
        }
        for problem in &loaded.problems {
            log::warn!(file = problem.path.display().to_string().as_str(); "{problem}");
        }
        let found = ServiceInfo::from_loaded(&loaded);
        log::info!("read {} service files in {} ms", found.len(), started.elapsed().as_millis());
        let mut services = self.services.lock().await;
        let problems = self.bring_in_line(&mut services, found).await;
        let count = services.len();
        drop(services);
        self.set_problems(problems).await;
        let _ = crate::notify::notify(&format!("STATUS={}", self.status_line(count)));
        self.show_preflight().await;
        Ok(count)
    }

    /// Removes the objects of services that are gone or changed and puts the new ones on the bus,
    /// each with its unit's state read first. The units of the services that stay are read again
    /// in the same batches: after a daemon-reload any of them may have changed. Returns what failed.
    async fn bring_in_line(
        &self,
        services: &mut BTreeMap<String, ServiceInfo>,
        mut found: BTreeMap<String, ServiceInfo>,
    ) -> Vec<String> {
        let server = self.ctx.conn.object_server();
        let mut problems = Vec::new();
        let gone: Vec<String> =
            services.iter().filter(|(name, info)| found.get(*name) != Some(*info)).map(|(n, _)| n.clone()).collect();
        let removed = gone.len();
        for name in gone {
            if let Some(info) = services.remove(&name) {
                self.ctx.units.unwatch(&unit_path(&info.unit));
                if let Err(e) = server.remove::<ServiceObject, _>(service_path(&name)).await {
                    problems.push(format!("cannot take service {name} off the bus: {e}"));
                }
                log::info!(service = name.as_str(); "service {name} removed from the bus");
            }
        }
        found.retain(|name, _| !services.contains_key(name));
        // Follow the new units first, then read them, then show them: the objects appear with
        // their state, and no change in between is missed.
        let mut new = Vec::with_capacity(found.len());
        for (name, info) in found {
            let live = Live::unknown();
            self.ctx.units.watch(&unit_path(&info.unit), live.clone());
            new.push((name, info, live));
        }
        let units: Vec<String> =
            services.values().map(|i| i.unit.clone()).chain(new.iter().map(|(_, info, _)| info.unit.clone())).collect();
        let read_at = Instant::now();
        problems.extend(self.ctx.units.refresh(&units).await);
        let (read, added) = (read_at.elapsed(), new.len());
        let shown_at = Instant::now();
        for (name, info, live) in new {
            let path = service_path(&name);
            let object = ServiceObject::new(info.clone(), live, self.ctx.clone());
            match server.at(path.as_str(), object).await {
                Ok(_) => {
                    self.ctx.units.attach(&unit_path(&info.unit), &path);
                    log::debug!(service = name.as_str(); "service {name} on the bus");
                    services.insert(name, info);
                }
                Err(e) => {
                    self.ctx.units.unwatch(&unit_path(&info.unit));
                    problems.push(format!("cannot put service {name} on the bus: {e}"));
                }
            }
        }
        log::info!(
            "{} services on the bus ({added} new, {removed} removed); {} unit states read from systemd in {} ms, new objects in {} ms",
            services.len(),
            units.len(),
            read.as_millis(),
            shown_at.elapsed().as_millis()
        );
        problems
    }

    /// Takes `problems` as the agent's problems: each new one goes to the journal as a warning,
    /// and `Manager1.Problems` changes when they do.
    async fn set_problems(&self, problems: Vec<String>) {
        let old =
            std::mem::replace(&mut *self.problems.lock().unwrap_or_else(PoisonError::into_inner), problems.clone());
        for problem in problems.iter().filter(|p| !old.contains(p)) {
            log::warn!("cannot show everything: {problem}");
        }
        if old.is_empty() && !problems.is_empty() {
            log::warn!("the services on the bus are incomplete; see `aictl status`");
        } else if !old.is_empty() && problems.is_empty() {
            log::info!("every service is on the bus again");
        }
        if old != problems {
            let emitter = SignalEmitter::new(&self.ctx.conn, ROOT_PATH);
            let values = HashMap::from([("Problems", Value::from(problems))]);
            let emitted = match emitter {
                Ok(emitter) => {
                    Properties::properties_changed(
                        &emitter,
                        InterfaceName::from_static_str_unchecked(MANAGER_INTERFACE),
                        values,
                        Cow::Borrowed(&[]),
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = emitted {
                log::warn!("cannot signal the agent's problems: {e}");
            }
        }
    }

    /// The object path of the service `name`.
    pub async fn find(&self, name: &str) -> Result<OwnedObjectPath, Error> {
        if !self.services.lock().await.contains_key(name) {
            return Err(Error::NotFound(format!(
                "no service `{name}` (a file {name}.toml in {})",
                self.host.dirs().iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
            )));
        }
        OwnedObjectPath::try_from(service_path(name)).map_err(|e| Error::ZBus(e.into()))
    }

    /// Every service: its name and object path, by name.
    pub async fn list(&self) -> Vec<(String, OwnedObjectPath)> {
        let services = self.services.lock().await;
        services
            .keys()
            .filter_map(|n| OwnedObjectPath::try_from(service_path(n)).ok().map(|p| (n.clone(), p)))
            .collect()
    }

    /// Reads the preflight records of every service again, and signals those that changed. A
    /// service that gets an error while its unit runs (a CDI spec gone stale under it) is also
    /// reported in the journal: its next start will fail.
    async fn show_preflight(&self) {
        let services: Vec<ServiceInfo> = self.services.lock().await.values().cloned().collect();
        let names: Vec<String> = services.iter().map(|s| s.name.clone()).collect();
        let records = &self.ctx.records;
        for (name, new_error) in records.refresh(&names) {
            if let Err(e) = preflight::emit(&self.ctx.conn, &service_path(&name), records, &name).await {
                log::warn!(service = name.as_str(); "cannot signal the preflight problems of {name}: {e}");
            }
            let Some(info) = services.iter().find(|s| s.name == name) else { continue };
            let active = self.ctx.units.active_state(&unit_path(&info.unit));
            if new_error && matches!(active.as_deref(), Some("active" | "activating" | "reloading")) {
                for check in records.problems(&name).iter().filter(|c| c.status == "error") {
                    log::warn!(
                        service = name.as_str(), check_id = check.id.as_str();
                        "{name} is running, but its next start will fail: {}: {}; fix: {}", check.id, check.message, check.fix
                    );
                }
            }
        }
    }

    /// Follows what changes the preflight outcome (see [`preflight`]): runs the checks again
    /// after a burst of changes to what they read, and shows new records as they are written.
    pub fn follow_preflight(self: Arc<Self>) -> Result<tokio::task::JoinHandle<()>, Error> {
        let mut events = preflight::watch(preflight::watched_dirs(&self.host.root))
            .map_err(|e| Error::Failed(format!("cannot watch for preflight changes: {e}")))?;
        Ok(tokio::spawn(async move {
            while let Some((inputs, records)) = preflight::next_burst(&mut events).await {
                if inputs {
                    log::debug!("what the preflight checks read changed; starting {}", preflight::PREFLIGHT_UNIT);
                    let ctx = &self.ctx;
                    let run = systemd::run_job(
                        &ctx.systemd,
                        &ctx.jobs,
                        &ctx.units.calls,
                        systemd::Verb::Start,
                        preflight::PREFLIGHT_UNIT,
                    );
                    if let Err(e) = run.await {
                        log::warn!("cannot run the preflight checks again: {e}");
                    }
                }
                if records || inputs {
                    self.show_preflight().await;
                }
            }
        }))
    }

    /// Starts `aicontainers-scan.service` after each burst of changes to the advisories or the
    /// scan policy (see [`crate::scan`]); directories made since are watched from then on,
    /// before that scan starts.
    pub fn follow_scans(self: Arc<Self>) -> Result<tokio::task::JoinHandle<()>, Error> {
        let mut dirs = scan::watched_dirs(&self.host.root);
        let mut events = preflight::watch(dirs.clone())
            .map_err(|e| Error::Failed(format!("cannot watch the advisories for changes: {e}")))?;
        Ok(tokio::spawn(async move {
            while preflight::next_burst(&mut events).await.is_some() {
                // Directories made since are watched before the scan starts: a file written into
                // one while the scan runs (after it read the directory) starts the next scan.
                let now = scan::watched_dirs(&self.host.root);
                if now != dirs {
                    match preflight::watch(now.clone()) {
                        Ok(rx) => (events, dirs) = (rx, now),
                        Err(e) => log::warn!("cannot watch the advisories' new directories: {e}"),
                    }
                }
                log::info!("the advisories or the scan policy changed; starting {}", scan::SCAN_UNIT);
                let ctx = &self.ctx;
                let run =
                    systemd::run_job(&ctx.systemd, &ctx.jobs, &ctx.units.calls, systemd::Verb::Start, scan::SCAN_UNIT);
                if let Err(e) = run.await {
                    log::warn!("cannot start the image scans: {e}");
                }
            }
        }))
    }

    /// Scans a service's image when its unit becomes active (see [`scan::started`]): after each
    /// burst of starts, `aicontainers-scan@NAME.service` for every service among them, waiting
    /// for those jobs before the next burst. systemd merges a start into one already running,
    /// so a service restarted while its scan still runs gets another scan after it, not none.
    /// That scan only asks podman for the image ID unless the ID is new.
    pub fn follow_starts(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        self.ctx.units.on_start(tx);
        tokio::spawn(async move {
            while let Some(units) = scan::started(&mut rx).await {
                let services = self.services.lock().await;
                let names: Vec<String> = units
                    .iter()
                    .filter_map(|u| u.strip_suffix(".service"))
                    .filter(|n| services.get(*n).is_some_and(|i| i.problems.is_empty()))
                    .map(str::to_owned)
                    .collect();
                drop(services);
                let ctx = &self.ctx;
                let jobs = names.iter().filter_map(|name| {
                    let unit = scan::instance_unit(name)?;
                    log::info!(service = name.as_str(); "{name} started; {unit} scans its image if the image ID is new");
                    Some(async move {
                        let done =
                            systemd::run_job(&ctx.systemd, &ctx.jobs, &ctx.units.calls, systemd::Verb::Start, &unit);
                        if let Err(e) = done.await {
                            log::warn!(service = name.as_str(); "the scan of {name}'s image: {e}");
                        }
                    })
                });
                futures_util::future::join_all(jobs).await;
            }
        })
    }

    /// Rescans after every daemon-reload systemd finishes (whoever asked for it). Reloads that
    /// come while a rescan runs make one more rescan, not one each, and the signal stream is
    /// drained at once (a full stream would hold up the connection the rescan reads through).
    pub async fn follow_reloads(self: Arc<Self>) -> Result<tokio::task::JoinHandle<()>, Error> {
        let mut reloads = self.ctx.systemd.receive_reloading().await?;
        let agent = self.clone();
        tokio::spawn(async move {
            while let Some(signal) = reloads.next().await {
                if signal.args().is_ok_and(|a| !a.active) {
                    agent.reloaded.notify_one();
                }
            }
        });
        Ok(tokio::spawn(async move {
            loop {
                self.reloaded.notified().await;
                log::debug!("systemd reloaded; reading the service files again");
                if let Err(e) = self.rescan().await {
                    log::error!("rescan after daemon-reload: {e}");
                }
            }
        }))
    }
}

/// The client side of `org.aicontainers.Manager1` (for `aictl`), beside the interface it calls.
#[zbus::proxy(
    interface = "org.aicontainers.Manager1",
    default_service = "org.aicontainers.Agent1",
    default_path = "/org/aicontainers/Agent1",
    gen_blocking = false
)]
pub trait Manager1 {
    fn list_services(&self) -> zbus::Result<Vec<(String, OwnedObjectPath)>>;
    fn get_service(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn list_images(&self) -> zbus::Result<Vec<(String, OwnedObjectPath)>>;
    /// Lets polkit ask for a password where an authentication agent runs.
    #[zbus(allow_interactive_auth)]
    fn reload(&self) -> zbus::Result<()>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn problems(&self) -> zbus::Result<Vec<String>>;
}

/// The agent's root object.
#[derive(Debug)]
pub struct ManagerObject {
    pub agent: Arc<Agent>,
}

/// The aicontainers node agent. Services are objects below /org/aicontainers/Agent1/service;
/// GetManagedObjects (org.freedesktop.DBus.ObjectManager, on this object) returns them all with
/// their properties in one call.
#[interface(name = "org.aicontainers.Manager1")]
impl ManagerObject {
    /// The agent's version.
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").into()
    }

    /// What the agent cannot show right now, one line each (services it could not put on the
    /// bus, unit states it could not read from systemd); empty when it shows everything.
    #[zbus(property)]
    fn problems(&self) -> Vec<String> {
        self.agent.problems()
    }

    /// Every service, by name: its name and object path.
    #[zbus(out_args("services"))]
    async fn list_services(&self) -> Vec<(String, OwnedObjectPath)> {
        self.agent.list().await
    }

    /// Every scanned image: its image ID (sha256:HEX) and object path (org.aicontainers.Image1).
    #[zbus(out_args("images"))]
    async fn list_images(&self) -> Vec<(String, OwnedObjectPath)> {
        self.agent.images.list().await
    }

    /// The object path of the service NAME; org.aicontainers.Error.NotFound when there is none.
    #[zbus(out_args("path"))]
    async fn get_service(&self, name: String) -> Result<OwnedObjectPath, Error> {
        self.agent.find(&name).await
    }

    /// systemctl daemon-reload, then reads the service files again: new services appear,
    /// removed ones disappear. Needs root or polkit action org.aicontainers.manage-services.
    async fn reload(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        let uid = auth::authorize(conn, &header, ACTION_MANAGE_SERVICES, "reload the services").await?;
        log::info!(caller_uid = uid; "daemon-reload (asked by UID {uid})");
        self.agent
            .ctx
            .systemd
            .reload()
            .await
            .map_err(|e| Error::Failed(format!("systemd daemon-reload failed: {}", systemd::describe(&e))))?;
        self.agent.rescan().await.map(|_| ())
    }
}
