//! `org.aicontainers.Service1`: one object per service, at [`crate::names::service_path`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use aicontainers::generate::Loaded;
use tokio::sync::broadcast;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{interface, Connection};

use crate::audit::Audit;
use crate::auth;
use crate::errors::Error;
use crate::names::ACTION_MANAGE_SERVICES;
use crate::placement::placement;
use crate::preflight::{self, Check, Records, PREFLIGHT_UNIT};
use crate::systemd::{self, JobResult, SystemdProxy, UnitState, Verb};
use crate::units::{self, Change, Live, Units};
use crate::usage::{self, Placed, Usage, UsageState};

/// `Uid` of a service whose account is not known.
pub const UNKNOWN_UID: u32 = u32::MAX;

/// What the service files say about a service: fixed until the next rescan (a rescan that finds
/// it changed replaces the object).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    pub name: String,
    /// The systemd unit, `NAME.service`.
    pub unit: String,
    pub source_path: String,
    pub account: String,
    pub uid: u32,
    pub image: String,
    pub gpus: Vec<String>,
    pub numa_nodes: Vec<u32>,
    /// `[sandbox] egress` as written, one entry each; empty for a service that is not
    /// sandboxed (see `sandbox`).
    pub egress: Vec<String>,
    /// Whether the service runs sandboxed.
    pub sandboxed: bool,
    /// The CPUs placement bound it to; empty when it is not bound.
    pub cpus: Vec<u32>,
    /// Why the service cannot run (`file:line:col: key: reason`); empty when it is valid.
    pub problems: Vec<String>,
}

impl ServiceInfo {
    /// Every service of `loaded`, valid or not, by name. Services whose name belongs to another
    /// unit are left out: that unit is not theirs to show.
    pub fn from_loaded(loaded: &Loaded) -> BTreeMap<String, ServiceInfo> {
        let mut out = BTreeMap::new();
        for (service, account) in &loaded.services {
            let place = placement(service, loaded.placements.get(&service.name));
            out.insert(
                service.name.clone(),
                ServiceInfo {
                    name: service.name.clone(),
                    unit: format!("{}.service", service.name),
                    source_path: service.source.display().to_string(),
                    account: account.name.clone(),
                    uid: account.uid,
                    image: service.image.clone(),
                    gpus: place.gpus,
                    numa_nodes: place.numa_nodes,
                    egress: service
                        .sandbox
                        .as_ref()
                        .map(|s| s.egress.iter().map(|e| e.to_string()).collect())
                        .unwrap_or_default(),
                    sandboxed: service.sandbox.is_some(),
                    cpus: place.cpus,
                    problems: Vec::new(),
                },
            );
        }
        for failed in loaded.failed.iter().filter(|f| f.unit) {
            out.insert(
                failed.name.clone(),
                ServiceInfo {
                    name: failed.name.clone(),
                    unit: format!("{}.service", failed.name),
                    source_path: failed.source.display().to_string(),
                    account: String::new(),
                    uid: UNKNOWN_UID,
                    image: String::new(),
                    gpus: Vec::new(),
                    numa_nodes: Vec::new(),
                    egress: Vec::new(),
                    sandboxed: false,
                    cpus: Vec::new(),
                    problems: failed.diagnostics.iter().map(|d| d.to_string()).collect(),
                },
            );
        }
        out
    }
}

/// What the agent needs to act on the system.
#[derive(Debug)]
pub struct Context {
    pub conn: Connection,
    pub systemd: SystemdProxy<'static>,
    /// Every unit the agent follows, and the permits for calls to systemd.
    pub units: Arc<Units>,
    /// systemd's finished jobs ([`systemd::follow_jobs`]).
    pub jobs: broadcast::Sender<JobResult>,
    /// Each service's last preflight problems.
    pub records: Arc<Records>,
    /// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` below the agent's root).
    pub cgroup_mount: PathBuf,
    /// The sandbox's verdicts, counted per service.
    pub audit: Arc<Audit>,
    /// The agent's root (`/` on a live host), below which the sandbox's allow records are.
    pub root: PathBuf,
}

/// The client side of `org.aicontainers.Service1` (for `aictl`), beside the interface it calls.
#[zbus::proxy(
    interface = "org.aicontainers.Service1",
    default_service = "org.aicontainers.Agent1",
    gen_blocking = false
)]
pub trait Service1 {
    #[zbus(allow_interactive_auth)]
    fn start(&self) -> zbus::Result<()>;
    #[zbus(allow_interactive_auth)]
    fn stop(&self) -> zbus::Result<()>;
    #[zbus(allow_interactive_auth)]
    fn restart(&self) -> zbus::Result<()>;
    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn unit(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn source_path(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn account(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn uid(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn image(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn gpus(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn numa_nodes(&self) -> zbus::Result<Vec<u32>>;
    #[zbus(property)]
    fn problems(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn preflight_problems(&self) -> zbus::Result<Vec<Check>>;
    #[zbus(property)]
    fn preflight_checked_at(&self) -> zbus::Result<u64>;
    #[zbus(allow_interactive_auth)]
    fn preflight(&self) -> zbus::Result<Vec<Check>>;
    #[zbus(property)]
    fn sandbox(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn egress(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn sandbox_allowed(&self) -> zbus::Result<Vec<(String, String, u16)>>;
    #[zbus(property)]
    fn sandbox_verdicts(&self) -> zbus::Result<(u64, u64)>;
    #[zbus(property)]
    fn usage(&self) -> zbus::Result<Usage>;
}

/// One service on the bus.
#[derive(Debug)]
pub struct ServiceObject {
    pub info: ServiceInfo,
    /// The unit's state, kept current by [`Units`].
    live: Arc<Mutex<Live>>,
    ctx: Arc<Context>,
    /// The unit's cgroup as systemd last named it (asked again when it is gone).
    cgroup: Mutex<String>,
}

impl ServiceObject {
    /// The service's allow record (`aicontainers::sandbox::record`); `None` when it is not running
    /// sandboxed, or the record cannot be read (which the journal says).
    fn allow_record(&self) -> Option<aicontainers::sandbox::record::AllowRecord> {
        if !self.info.sandboxed {
            return None;
        }
        aicontainers::sandbox::record::read(&self.ctx.root, &self.info.name)
            .map_err(|e| log::warn!(service = self.info.name.as_str(); "{e}"))
            .ok()
            .flatten()
    }

    pub fn new(info: ServiceInfo, live: Arc<Mutex<Live>>, ctx: Arc<Context>) -> Self {
        ServiceObject { info, live, ctx, cgroup: Mutex::new(String::new()) }
    }

    /// The unit's cgroup from systemd (`ControlGroup`; empty when the unit has none).
    async fn ask_cgroup(&self) -> Result<String, String> {
        let ctx = &self.ctx;
        let _permit = ctx.units.calls.acquire().await.map_err(|e| e.to_string())?;
        let path = crate::units::unit_path(&self.info.unit);
        let reply = ctx
            .conn
            .call_method(
                Some(systemd::SYSTEMD),
                path.as_str(),
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &(systemd::SERVICE_UNIT_INTERFACE, "ControlGroup"),
            )
            .await
            .map_err(|e| systemd::describe(&e))?;
        let value: zbus::zvariant::OwnedValue = reply.body().deserialize().map_err(|e| e.to_string())?;
        String::try_from(value).map_err(|e| e.to_string())
    }

    /// Reads the service's usage from its cgroup. systemd is asked where the cgroup is only when
    /// the unit may be running and the cgroup it named last is gone.
    async fn read_usage(&self) -> Usage {
        let (active, oom_stops) = {
            let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
            (live.state.active.clone(), live.oom_stops)
        };
        let placed = Placed { cpus: self.info.cpus.clone(), memory_nodes: self.info.numa_nodes.clone() };
        let mount = &self.ctx.cgroup_mount;
        let mut usage = if active == "inactive" || active == "failed" {
            Usage::empty(UsageState::Stopped)
        } else {
            let known = self.cgroup.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let there = !known.is_empty() && usage::cgroup_dir(mount, &known).is_some_and(|d| d.is_dir());
            if there {
                usage::read(mount, &known, &placed)
            } else {
                match self.ask_cgroup().await {
                    Ok(cgroup) => {
                        cgroup.clone_into(&mut self.cgroup.lock().unwrap_or_else(PoisonError::into_inner));
                        usage::read(mount, &cgroup, &placed)
                    }
                    Err(e) => {
                        let mut usage = Usage::empty(UsageState::Unknown);
                        usage.problems.push(format!("cannot ask systemd for the cgroup of {}: {e}", self.info.unit));
                        usage
                    }
                }
            }
        };
        usage.oom_stops = oom_stops;
        usage
    }

    fn live(&self) -> UnitState {
        self.live.lock().unwrap_or_else(PoisonError::into_inner).state.clone()
    }

    async fn act(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        emitter: &SignalEmitter<'_>,
        verb: Verb,
    ) -> Result<(), Error> {
        let what = format!("{} {}", verb.as_str(), self.info.unit);
        let uid = auth::authorize(conn, header, ACTION_MANAGE_SERVICES, &what).await?;
        log::info!(service = self.info.name.as_str(), unit = self.info.unit.as_str(), verb = verb.as_str(), caller_uid = uid; "{what} (asked by UID {uid})");
        let ctx = &self.ctx;
        let done = systemd::run_job(&ctx.systemd, &ctx.jobs, &ctx.units.calls, verb, &self.info.unit).await;
        if let Err(e) = &done {
            log::warn!(service = self.info.name.as_str(), unit = self.info.unit.as_str(); "{what}: {e}");
        }
        // Whoever reads the state after the reply sees the job's outcome, whether or not the
        // unit's PropertiesChanged signal has been handled yet.
        match ctx.units.read(std::slice::from_ref(&self.info.unit)).await {
            Ok(reads) => {
                for read in reads {
                    let changed = units::apply(&self.live, Change::all(read.state), read.serial);
                    units::emit(conn, emitter.path(), &changed).await?;
                }
            }
            Err(e) => {
                log::warn!(unit = self.info.unit.as_str(); "cannot read the state of {}: {}", self.info.unit, systemd::describe(&e))
            }
        }
        done
    }
}

/// A service of aicontainers: what its files say, and its unit's live state from systemd.
#[interface(name = "org.aicontainers.Service1")]
impl ServiceObject {
    /// The service name (the file NAME.toml).
    #[zbus(property(emits_changed_signal = "const"))]
    fn name(&self) -> String {
        self.info.name.clone()
    }

    /// The systemd unit that runs it, NAME.service.
    #[zbus(property(emits_changed_signal = "const"))]
    fn unit(&self) -> String {
        self.info.unit.clone()
    }

    /// The unit's ActiveState: active, reloading, inactive, failed, activating, deactivating.
    #[zbus(property)]
    fn state(&self) -> String {
        self.live().active
    }

    /// The unit's SubState (running, dead, exited, ...).
    #[zbus(property)]
    fn sub_state(&self) -> String {
        self.live().sub
    }

    /// The unit's LoadState (loaded, not-found, ...): not-found until a daemon-reload.
    #[zbus(property)]
    fn load_state(&self) -> String {
        self.live().load
    }

    /// The main service file.
    #[zbus(property(emits_changed_signal = "const"))]
    fn source_path(&self) -> String {
        self.info.source_path.clone()
    }

    /// The account the service runs as; empty when its files are invalid.
    #[zbus(property(emits_changed_signal = "const"))]
    fn account(&self) -> String {
        self.info.account.clone()
    }

    /// The UID of Account; 4294967295 when unknown.
    #[zbus(property(emits_changed_signal = "const"))]
    fn uid(&self) -> u32 {
        self.info.uid
    }

    /// The container image.
    #[zbus(property(emits_changed_signal = "const"))]
    fn image(&self) -> String {
        self.info.image.clone()
    }

    /// CDI names of the GPUs given to the service.
    #[zbus(property(emits_changed_signal = "const"))]
    fn gpus(&self) -> Vec<String> {
        self.info.gpus.clone()
    }

    /// The NUMA nodes the service is bound to; empty when it is not bound.
    #[zbus(property(emits_changed_signal = "const"))]
    fn numa_nodes(&self) -> Vec<u32> {
        self.info.numa_nodes.clone()
    }

    /// Why the service cannot run, one diagnostic each; empty when its files are valid.
    #[zbus(property(emits_changed_signal = "const"))]
    fn problems(&self) -> Vec<String> {
        self.info.problems.clone()
    }

    /// The problems the last preflight checks found (aicontainers-preflight(7)): an `error`
    /// fails the next start. Kept current as the CDI specs, the service files and the
    /// installed kernel modules change; empty before any check ran (see PreflightCheckedAt).
    #[zbus(property)]
    fn preflight_problems(&self) -> Vec<Check> {
        self.ctx.records.problems(&self.info.name)
    }

    /// When the checks last ran for the service, in seconds since the epoch; 0 when they have
    /// not run since boot.
    #[zbus(property)]
    fn preflight_checked_at(&self) -> u64 {
        self.ctx.records.checked_at(&self.info.name)
    }

    /// Runs the preflight checks of every service now (aicontainers-preflight.service, as root)
    /// and returns this service's problems. Needs root or polkit action
    /// org.aicontainers.manage-services.
    #[zbus(out_args("problems"))]
    async fn preflight(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<Vec<Check>, Error> {
        let what = format!("run the preflight checks of {}", self.info.name);
        let uid = auth::authorize(conn, &header, ACTION_MANAGE_SERVICES, &what).await?;
        log::info!(service = self.info.name.as_str(), caller_uid = uid; "{what} (asked by UID {uid})");
        let ctx = &self.ctx;
        systemd::run_job(&ctx.systemd, &ctx.jobs, &ctx.units.calls, Verb::Start, PREFLIGHT_UNIT).await?;
        if !ctx.records.refresh_one(&self.info.name) {
            return Ok(self.ctx.records.problems(&self.info.name));
        }
        preflight::emit(conn, emitter.path(), &ctx.records, &self.info.name).await?;
        Ok(self.ctx.records.problems(&self.info.name))
    }

    /// `sandboxed` when the service runs sandboxed (`[sandbox]`, docs/sandbox.md), else `none`.
    #[zbus(property(emits_changed_signal = "const"))]
    fn sandbox(&self) -> String {
        if self.info.sandboxed { "sandboxed" } else { "none" }.to_owned()
    }

    /// Where a sandboxed service may open connections, as its file lists them
    /// (`HOST:PORT[/udp]`); names are resolved when it starts.
    #[zbus(property(emits_changed_signal = "const"))]
    fn egress(&self) -> Vec<String> {
        self.info.egress.clone()
    }

    /// The allow set of a running sandboxed service as its unit resolved it when it started:
    /// (address, `tcp` or `udp`, port), names resolved. Empty when it is not running sandboxed.
    /// Read when asked (a start changes it; no signal).
    #[zbus(property(emits_changed_signal = "false"))]
    fn sandbox_allowed(&self) -> Vec<(String, String, u16)> {
        match self.allow_record() {
            Some(r) => r.allowed.iter().map(|a| (a.addr.to_string(), a.proto.name().to_owned(), a.port)).collect(),
            None => Vec::new(),
        }
    }

    /// Connections the sandbox allowed and denied since the service last started (from the
    /// verdicts the agent forwards to the journal; denied packets beyond the log's rate limit
    /// are not counted). (0, 0) when it is not running sandboxed.
    #[zbus(property)]
    fn sandbox_verdicts(&self) -> (u64, u64) {
        let Some(record) = self.allow_record() else { return (0, 0) };
        let c = self.ctx.audit.counts(&self.info.name);
        if c.since_usec == record.started_usec {
            (c.allowed, c.denied)
        } else {
            (0, 0)
        }
    }

    /// Live usage from the unit's cgroup, read when asked (never signalled): memory, OOM kills,
    /// CPU time, tasks, and the effective cpuset with any drift from placement. What systemd
    /// itself says of the unit (states, limits) stays on systemd's unit object.
    #[zbus(property(emits_changed_signal = "false"))]
    async fn usage(&self) -> Usage {
        self.read_usage().await
    }

    /// Starts the unit and returns when systemd's job is done. Needs root or polkit action
    /// org.aicontainers.manage-services.
    async fn start(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), Error> {
        self.act(conn, &header, &emitter, Verb::Start).await
    }

    /// Stops the unit and returns when systemd's job is done. Needs root or polkit action
    /// org.aicontainers.manage-services.
    async fn stop(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), Error> {
        self.act(conn, &header, &emitter, Verb::Stop).await
    }

    /// Restarts the unit and returns when systemd's job is done. Needs root or polkit action
    /// org.aicontainers.manage-services.
    async fn restart(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), Error> {
        self.act(conn, &header, &emitter, Verb::Restart).await
    }
}
