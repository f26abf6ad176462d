//! The agent's state (the services it shows) and `org.aicontainers.Manager1`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use aicontainers::account::HostAccounts;
use aicontainers::generate;
use aicontainers::source::SYSTEM_DIRS;
use futures_util::StreamExt;
use zbus::fdo::PropertiesChangedStream;
use zbus::message::Header;
use zbus::object_server::InterfaceRef;
use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedObjectPath, Value};
use zbus::{interface, Connection};

use crate::auth;
use crate::errors::Error;
use crate::names::{service_path, ACTION_MANAGE_SERVICES};
use crate::service::{Context, ServiceInfo, ServiceObject};
use crate::systemd::{self, UnitState, SYSTEMD, UNIT_INTERFACE};

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

struct Entry {
    info: ServiceInfo,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

/// The agent: its connection, and the services it shows.
pub struct Agent {
    ctx: Arc<Context>,
    host: Host,
    services: tokio::sync::Mutex<BTreeMap<String, Entry>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("host", &self.host).finish_non_exhaustive()
    }
}

impl Agent {
    pub fn new(ctx: Arc<Context>, host: Host) -> Self {
        Agent { ctx, host, services: tokio::sync::Mutex::new(BTreeMap::new()) }
    }

    /// Reads the service files again and brings the service objects in line: new services get an
    /// object, removed ones lose it, changed ones get a fresh one. Returns how many there are.
    pub async fn rescan(&self) -> Result<usize, Error> {
        let host = self.host.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let accounts = HostAccounts { subuid: host.path("/etc/subuid"), subgid: host.path("/etc/subgid") };
            let names = aicontainers::names::UnitNames::under(&host.root);
            let mut loaded = generate::load_with(&host.dirs(), &accounts, &names);
            // The same GPU placement the generator made (same files, topology and holds).
            let warnings = aicontainers::host::HostGpus::from_env().place(&mut loaded);
            (loaded, warnings)
        })
        .await
        .map_err(|e| Error::Failed(format!("reading the service files failed: {e}")))?;
        let (loaded, warnings) = loaded;
        for warning in &warnings {
            log::warn!("{warning}");
        }
        for problem in &loaded.problems {
            log::warn!(file = problem.path.display().to_string().as_str(); "{problem}");
        }
        let found = ServiceInfo::from_loaded(&loaded);
        let server = self.ctx.conn.object_server();
        let mut services = self.services.lock().await;
        let gone: Vec<String> =
            services.iter().filter(|(name, e)| found.get(*name) != Some(&e.info)).map(|(n, _)| n.clone()).collect();
        for name in gone {
            if let Some(entry) = services.remove(&name) {
                if let Some(w) = entry.watcher {
                    w.abort();
                }
                server.remove::<ServiceObject, _>(service_path(&name)).await?;
                log::info!(service = name.as_str(); "service {name} removed from the bus");
            }
        }
        for (name, info) in found {
            if services.contains_key(&name) {
                continue;
            }
            let watcher = self.add(&info).await?;
            log::debug!(service = name.as_str(); "service {name} on the bus");
            services.insert(name, Entry { info, watcher });
        }
        let count = services.len();
        drop(services);
        let _ = crate::notify::notify(&format!("STATUS=Watching {count} services"));
        Ok(count)
    }

    /// Puts `info` on the bus with its unit's state, and follows the unit.
    async fn add(&self, info: &ServiceInfo) -> Result<Option<tokio::task::JoinHandle<()>>, Error> {
        let conn = &self.ctx.conn;
        let path = service_path(&info.name);
        let followed = match self.ctx.systemd.load_unit(&info.unit).await {
            Ok(unit_path) => {
                // Listen first, then read: no change can fall in between.
                let props = zbus::fdo::PropertiesProxy::builder(conn)
                    .destination(SYSTEMD)?
                    .path(unit_path.clone())?
                    .cache_properties(CacheProperties::No)
                    .build()
                    .await?;
                let changes = props.receive_properties_changed().await?;
                match systemd::unit_state(conn, &unit_path).await {
                    Ok(state) => Some((unit_path, changes, state)),
                    Err(e) => {
                        log::warn!(unit = info.unit.as_str(); "cannot read the state of {}: {}", info.unit, systemd::describe(&e));
                        None
                    }
                }
            }
            Err(e) => {
                log::warn!(unit = info.unit.as_str(); "systemd cannot load {}: {}", info.unit, systemd::describe(&e));
                None
            }
        };
        let unknown = UnitState { active: "unknown".into(), sub: "unknown".into(), load: "unknown".into() };
        let state = followed.as_ref().map_or(unknown, |(_, _, s)| s.clone());
        let object = ServiceObject::new(
            info.clone(),
            followed.as_ref().map(|(p, _, _)| p.clone()),
            state.clone(),
            self.ctx.clone(),
        );
        let server = conn.object_server();
        server.at(path.as_str(), object).await?;
        let Some((unit_path, changes, state)) = followed else {
            return Ok(None);
        };
        let iface = server.interface::<_, ServiceObject>(path.as_str()).await?;
        Ok(Some(tokio::spawn(follow(conn.clone(), unit_path, changes, state, iface))))
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

    /// Rescans after every daemon-reload systemd finishes (whoever asked for it).
    pub async fn follow_reloads(self: Arc<Self>) -> Result<tokio::task::JoinHandle<()>, Error> {
        let mut reloads = self.ctx.systemd.receive_reloading().await?;
        Ok(tokio::spawn(async move {
            while let Some(signal) = reloads.next().await {
                if signal.args().is_ok_and(|a| !a.active) {
                    log::debug!("systemd reloaded; reading the service files again");
                    if let Err(e) = self.rescan().await {
                        log::error!("rescan after daemon-reload: {e}");
                    }
                }
            }
        }))
    }
}

/// Follows one unit's `PropertiesChanged` and mirrors its state on the service object.
async fn follow(
    conn: Connection,
    unit_path: OwnedObjectPath,
    mut changes: PropertiesChangedStream,
    mut state: UnitState,
    iface: InterfaceRef<ServiceObject>,
) {
    while let Some(signal) = changes.next().await {
        let Ok(args) = signal.args() else { continue };
        if args.interface_name.as_str() != UNIT_INTERFACE {
            continue;
        }
        let mut new = state.clone();
        for (key, value) in args.changed_properties() {
            let Value::Str(s) = value else { continue };
            match *key {
                "ActiveState" => new.active = s.to_string(),
                "SubState" => new.sub = s.to_string(),
                "LoadState" => new.load = s.to_string(),
                _ => {}
            }
        }
        let invalidated =
            args.invalidated_properties().iter().any(|p| ["ActiveState", "SubState", "LoadState"].contains(p));
        if invalidated {
            match systemd::unit_state(&conn, &unit_path).await {
                Ok(s) => new = s,
                Err(e) => log::warn!("cannot read {unit_path}: {}", systemd::describe(&e)),
            }
        }
        if new != state {
            let object = iface.get().await;
            log::debug!(service = object.info.name.as_str(), state = new.active.as_str(), sub_state = new.sub.as_str(); "{} is {} ({})", object.info.unit, new.active, new.sub);
            if let Err(e) = object.update(new.clone(), iface.signal_emitter()).await {
                log::warn!("cannot signal the state of {}: {e}", object.info.name);
            }
            state = new;
        }
    }
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

    /// Every service, by name: its name and object path.
    #[zbus(out_args("services"))]
    async fn list_services(&self) -> Vec<(String, OwnedObjectPath)> {
        self.agent.list().await
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
