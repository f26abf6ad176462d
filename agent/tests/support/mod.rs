//! A private system-like bus for the agent's tests: a real `dbus-daemon` with the agent's own
//! policy file, the agent binary, and in-process STAND-INS for systemd and polkit.
//!
//! The stand-ins are not systemd or polkit: they answer the few calls the agent makes
//! (`Subscribe`, `LoadUnit`, `StartUnit`..., `CheckAuthorization`) the way the real ones do and
//! emit the same signals. The agent against the real systemd and polkit is tested in the VM
//! (tests/e2e/guest-tests, section "node agent").

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue};
use zbus::{interface, Connection, ObjectServer};

pub const SYSTEMD_PATH: &str = "/org/freedesktop/systemd1";

/// How long a test waits for something that should happen at once before it fails (never a
/// measurement: only a guard against hanging forever).
pub const GUARD: Duration = Duration::from_secs(60);

/// The unit object path systemd uses for `name` (its bus_label_escape()).
pub fn unit_path(name: &str) -> String {
    format!("{SYSTEMD_PATH}/unit/{}", aicontainers_agent::names::escape_path_element(name))
}

// ---------------------------------------------------------------- stand-in for systemd

/// A unit of the stand-in systemd.
#[derive(Debug)]
pub struct FakeUnit {
    pub active: String,
    pub sub: String,
    pub load: String,
}

#[interface(name = "org.freedesktop.systemd1.Unit")]
impl FakeUnit {
    #[zbus(property)]
    fn active_state(&self) -> String {
        self.active.clone()
    }
    #[zbus(property)]
    fn sub_state(&self) -> String {
        self.sub.clone()
    }
    #[zbus(property)]
    fn load_state(&self) -> String {
        self.load.clone()
    }
}

/// The service side of a unit of the stand-in systemd: its cgroup while it runs, and why its
/// last run ended.
#[derive(Debug)]
pub struct FakeService {
    pub control_group: String,
    pub result: String,
}

#[interface(name = "org.freedesktop.systemd1.Service")]
impl FakeService {
    #[zbus(property)]
    fn control_group(&self) -> String {
        self.control_group.clone()
    }
    #[zbus(property)]
    fn result(&self) -> String {
        self.result.clone()
    }
}

/// One entry of `ListUnitsByNames`.
pub type ListedUnit = (String, String, String, String, String, String, OwnedObjectPath, u32, String, OwnedObjectPath);

/// The sizes of the stand-in systemd's `ListUnitsByNames` calls.
pub type Reads = Arc<Mutex<Vec<usize>>>;

/// What the stand-in systemd was asked to do: (method, unit).
pub type Calls = Arc<Mutex<Vec<(String, String)>>>;

/// The stand-in systemd manager. Units whose name starts with `broken` fail to start.
#[derive(Debug, Default)]
pub struct FakeSystemd {
    pub calls: Calls,
    /// The number of names of each `ListUnitsByNames` call (reads: not in `calls`).
    pub reads: Reads,
    next_job: AtomicU32,
}

impl FakeSystemd {
    async fn job(
        &self,
        server: &ObjectServer,
        emitter: &SignalEmitter<'_>,
        method: &str,
        name: &str,
        active: &str,
        sub: &str,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.calls.lock().unwrap().push((method.into(), name.into()));
        let path = ensure_unit(server, name).await?;
        let (active, sub, result) = if name.starts_with("broken") && active == "active" {
            ("failed", "failed", "failed")
        } else {
            (active, sub, "done")
        };
        set_unit_state(server, &path, active, sub).await?;
        let id = self.next_job.fetch_add(1, Ordering::SeqCst) + 1;
        let job = OwnedObjectPath::try_from(format!("{SYSTEMD_PATH}/job/{id}")).unwrap();
        FakeSystemd::job_removed(emitter, id, job.as_ref(), name, result).await?;
        Ok(job)
    }
}

async fn ensure_unit(server: &ObjectServer, name: &str) -> zbus::fdo::Result<String> {
    let path = unit_path(name);
    let unit = FakeUnit { active: "inactive".into(), sub: "dead".into(), load: "loaded".into() };
    server.at(path.as_str(), unit).await?;
    server.at(path.as_str(), FakeService { control_group: String::new(), result: "success".into() }).await?;
    Ok(path)
}

/// Changes a unit's state the way systemd does, with `PropertiesChanged`.
pub async fn set_unit_state(server: &ObjectServer, path: &str, active: &str, sub: &str) -> zbus::Result<()> {
    let service = server.interface::<_, FakeService>(path).await?;
    // systemd's cgroup of a unit: there while it runs, gone when it stops.
    service.get_mut().await.control_group = match active {
        "inactive" | "failed" => String::new(),
        _ => format!("/system.slice/{}", aicontainers_agent::units::unit_name_of(path).unwrap_or_default()),
    };
    let iface = server.interface::<_, FakeUnit>(path).await?;
    let mut unit = iface.get_mut().await;
    unit.active = active.into();
    unit.sub = sub.into();
    unit.active_state_changed(iface.signal_emitter()).await?;
    unit.sub_state_changed(iface.signal_emitter()).await?;
    Ok(())
}

/// Sets the `Result` systemd gives the unit's current or last run (`oom-kill`, `success`, ...).
pub async fn set_unit_result(server: &ObjectServer, path: &str, result: &str) -> zbus::Result<()> {
    server.interface::<_, FakeService>(path).await?.get_mut().await.result = result.into();
    Ok(())
}

#[interface(name = "org.freedesktop.systemd1.Manager")]
impl FakeSystemd {
    fn subscribe(&self) {
        self.calls.lock().unwrap().push(("Subscribe".into(), String::new()));
    }
    /// Units whose name starts with `unreadable` make the whole call fail, as a systemd that
    /// cannot answer would.
    async fn list_units_by_names(
        &self,
        names: Vec<String>,
        #[zbus(object_server)] server: &ObjectServer,
    ) -> zbus::fdo::Result<Vec<ListedUnit>> {
        self.reads.lock().unwrap().push(names.len());
        if let Some(bad) = names.iter().find(|n| n.starts_with("unreadable")) {
            return Err(zbus::fdo::Error::Failed(format!("cannot load {bad}")));
        }
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let path = ensure_unit(server, &name).await?;
            let iface = server.interface::<_, FakeUnit>(path.as_str()).await?;
            let unit = iface.get().await;
            let path = OwnedObjectPath::try_from(path).unwrap();
            let none = OwnedObjectPath::try_from("/").unwrap();
            out.push((
                name,
                String::new(),
                unit.load.clone(),
                unit.active.clone(),
                unit.sub.clone(),
                String::new(),
                path,
                0,
                String::new(),
                none,
            ));
        }
        Ok(out)
    }
    async fn load_unit(
        &self,
        name: String,
        #[zbus(object_server)] server: &ObjectServer,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        let path = ensure_unit(server, &name).await?;
        Ok(OwnedObjectPath::try_from(path).unwrap())
    }
    async fn start_unit(
        &self,
        name: String,
        _mode: String,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.job(server, &emitter, "StartUnit", &name, "active", "running").await
    }
    async fn stop_unit(
        &self,
        name: String,
        _mode: String,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.job(server, &emitter, "StopUnit", &name, "inactive", "dead").await
    }
    async fn restart_unit(
        &self,
        name: String,
        _mode: String,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.job(server, &emitter, "RestartUnit", &name, "active", "running").await
    }
    async fn reload(&self, #[zbus(signal_emitter)] emitter: SignalEmitter<'_>) -> zbus::fdo::Result<()> {
        self.calls.lock().unwrap().push(("Reload".into(), String::new()));
        FakeSystemd::reloading(&emitter, true).await?;
        FakeSystemd::reloading(&emitter, false).await?;
        Ok(())
    }
    #[zbus(signal)]
    pub async fn job_removed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        job: ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    pub async fn reloading(emitter: &SignalEmitter<'_>, active: bool) -> zbus::Result<()>;
}

// ---------------------------------------------------------------- stand-in for polkit

/// What the stand-in polkit was asked: (subject kind, action id, flags).
pub type Checks = Arc<Mutex<Vec<(String, String, u32)>>>;

#[derive(Debug)]
pub struct FakePolkit {
    pub answer: bool,
    pub checks: Checks,
}

#[interface(name = "org.freedesktop.PolicyKit1.Authority")]
impl FakePolkit {
    fn check_authorization(
        &self,
        subject: (String, HashMap<String, OwnedValue>),
        action_id: String,
        _details: HashMap<String, String>,
        flags: u32,
        _cancellation_id: String,
    ) -> (bool, bool, HashMap<String, String>) {
        self.checks.lock().unwrap().push((subject.0, action_id, flags));
        (self.answer, !self.answer, HashMap::new())
    }
}

/// Whether a stand-in polkit runs on the test bus, and what it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polkit {
    Absent,
    Answers(bool),
}

// ---------------------------------------------------------------- the bus and the agent

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub address: String,
    pub socket: PathBuf,
    dbus: Child,
    agent: Option<Child>,
    notify: Option<Arc<UnixDatagram>>,
    pub agent_log: PathBuf,
    pub systemd: Connection,
    pub calls: Calls,
    pub reads: Reads,
    pub polkit: Option<Connection>,
    pub checks: Checks,
    pub client: Connection,
    /// More arguments for the agent, from the next start on.
    pub agent_args: Vec<String>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(agent) = &mut self.agent {
            let _ = agent.kill();
            let _ = agent.wait();
        }
        let _ = self.dbus.kill();
        let _ = self.dbus.wait();
    }
}

pub const WEB: &str = "[service]\nimage = \"localhost/web:1\"\nrun-as = \"nobody\"\n\n[gpu]\ndevices = [\"nvidia.com/gpu=0\"]\nnuma = \"single-numa-node\"\n\n[sandbox]\negress = [\"llm.internal:8080\", \"[fd00::7]:443\"]\n";
pub const BROKEN: &str = "[service]\nimage = \"localhost/web:1\"\nrun-as = \"nobody\"\ncomand = [\"x\"]\n";

/// The limits of Debian's system bus (`/usr/share/dbus-1/system.conf` of dbus 1.14 in Debian 12
/// and of dbus 1.16 in Debian 13 lists them, commented out, as the defaults built into
/// dbus-daemon). Written out here so that the test bus has them whatever dbus-daemon's defaults
/// are; `test_bus_has_the_system_bus_limits` compares them with the installed system.conf.
pub const SYSTEM_BUS_LIMITS: &[(&str, u64)] = &[
    ("max_incoming_bytes", 133169152),
    ("max_incoming_unix_fds", 64),
    ("max_outgoing_bytes", 133169152),
    ("max_outgoing_unix_fds", 64),
    ("max_message_size", 33554432),
    ("max_message_unix_fds", 16),
    ("service_start_timeout", 25000),
    ("auth_timeout", 5000),
    ("pending_fd_timeout", 150000),
    ("max_completed_connections", 2048),
    ("max_incomplete_connections", 64),
    ("max_connections_per_user", 256),
    ("max_pending_service_starts", 512),
    ("max_names_per_connection", 512),
    ("max_match_rules_per_connection", 512),
    ("max_replies_per_connection", 128),
];

/// The bus configuration: what Debian's system.conf sets for every bus client, with its limits,
/// the agent's own policy file, and the stand-ins' names for root.
fn bus_config(socket: &Path) -> String {
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/org.aicontainers.Agent1.conf");
    let limits: String =
        SYSTEM_BUS_LIMITS.iter().map(|(name, value)| format!("  <limit name=\"{name}\">{value}</limit>\n")).collect();
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
{limits}  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <!-- root may read the bus's statistics (match rules, bytes queued per connection) -->
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
  </policy>
  <!-- stand-ins for systemd and polkit (tests/support/mod.rs) -->
  <policy user="root">
    <allow own="org.freedesktop.systemd1"/>
    <allow own="org.freedesktop.PolicyKit1"/>
  </policy>
  <policy context="default">
    <allow send_destination="org.freedesktop.systemd1"/>
    <allow send_destination="org.freedesktop.PolicyKit1"/>
  </policy>
  <include>{policy}</include>
</busconfig>
"#,
        socket = socket.display(),
        policy = policy.display(),
        limits = limits
    )
}

/// Writes a service file into the rig's /etc/aicontainers.
pub fn write_service(root: &Path, name: &str, text: &str) {
    let dir = root.join("etc/aicontainers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
}

impl Rig {
    /// The agent's ObjectManager, as the test client sees it.
    pub async fn object_manager(&self) -> zbus::fdo::ObjectManagerProxy<'static> {
        zbus::fdo::ObjectManagerProxy::builder(&self.client)
            .destination(aicontainers_agent::names::BUS_NAME)
            .unwrap()
            .path(aicontainers_agent::names::ROOT_PATH)
            .unwrap()
            .build()
            .await
            .unwrap()
    }

    /// A bus with the stand-ins, services `web` (valid) and `broken` (a typo), and the agent.
    pub async fn start(polkit: Polkit) -> Rig {
        let mut rig = Rig::without_agent(polkit).await;
        rig.start_agent().await;
        rig
    }

    pub async fn without_agent(polkit: Polkit) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        // Clients run as nobody too: they must reach the socket and the agent's files.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().join("root");
        write_service(&root, "web", WEB);
        write_service(&root, "broken", BROKEN);
        std::fs::write(root.join("etc/subuid"), "nobody:100000:65536\n").unwrap();
        std::fs::write(root.join("etc/subgid"), "nobody:100000:65536\n").unwrap();
        let socket = dir.path().join("bus");
        let config = dir.path().join("bus.conf");
        std::fs::write(&config, bus_config(&socket)).unwrap();
        let mut dbus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("dbus-daemon.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run dbus-daemon ({e}): install the Debian package dbus-daemon (tests/run-all does)")
            });
        // dbus-daemon prints its address once it listens.
        let mut line = String::new();
        BufReader::new(dbus.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let address = line.trim().to_owned();
        assert!(address.starts_with("unix:"), "dbus-daemon printed {line:?}");

        let calls = Calls::default();
        let reads = Reads::default();
        let systemd = zbus::connection::Builder::address(address.as_str())
            .unwrap()
            .serve_at(
                SYSTEMD_PATH,
                FakeSystemd { calls: calls.clone(), reads: reads.clone(), ..FakeSystemd::default() },
            )
            .unwrap()
            .name("org.freedesktop.systemd1")
            .unwrap()
            .build()
            .await
            .unwrap();
        let checks = Checks::default();
        let polkit = match polkit {
            Polkit::Absent => None,
            Polkit::Answers(answer) => Some(
                zbus::connection::Builder::address(address.as_str())
                    .unwrap()
                    .serve_at("/org/freedesktop/PolicyKit1/Authority", FakePolkit { answer, checks: checks.clone() })
                    .unwrap()
                    .name("org.freedesktop.PolicyKit1")
                    .unwrap()
                    .build()
                    .await
                    .unwrap(),
            ),
        };
        let client = zbus::connection::Builder::address(address.as_str()).unwrap().build().await.unwrap();
        let agent_log = dir.path().join("agent.log");
        Rig {
            dir,
            root,
            address,
            socket,
            dbus,
            agent: None,
            notify: None,
            agent_log,
            systemd,
            calls,
            reads,
            polkit,
            checks,
            client,
            agent_args: Vec::new(),
        }
    }

    /// Runs the agent and waits for its READY=1 on a notify socket of the test's own.
    pub async fn start_agent(&mut self) -> String {
        self.start_agent_with(None).await
    }

    /// The agent's process ID.
    pub fn agent_pid(&self) -> u32 {
        self.agent.as_ref().expect("the agent runs").id()
    }

    /// [`Rig::start_agent`], with `$WATCHDOG_USEC` set to `watchdog` when given.
    pub async fn start_agent_with(&mut self, watchdog: Option<Duration>) -> String {
        let notify_path = self.dir.path().join("notify");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify.set_read_timeout(Some(GUARD)).unwrap();
        let log = std::fs::File::create(&self.agent_log).unwrap();
        let mut agent = Command::new(env!("CARGO_BIN_EXE_aicontainersd"));
        agent
            .args(["--bus-address", &self.address, "--root"])
            .arg(&self.root)
            .arg("-v")
            .args(&self.agent_args)
            .env("NOTIFY_SOCKET", &notify_path)
            .stderr(log);
        // GPUs are placed against a real H200 host captured by tests/device/gpu-probe (this
        // machine has none), with no CDI spec and no recorded holds of this machine.
        let h200 = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/h200/host-topology.xml");
        agent
            .env("AICONTAINERS_TOPOLOGY_XML", h200)
            .env("AICONTAINERS_CDI_DIRS", "/nonexistent")
            .env("AICONTAINERS_GPU_CLAIMS", "/nonexistent");
        if let Some(w) = watchdog {
            agent.env("WATCHDOG_USEC", w.as_micros().to_string());
        }
        let agent = agent.spawn().unwrap();
        self.agent = Some(agent);
        self.notify = Some(Arc::new(notify));
        self.wait_notify("READY=1").await
    }

    /// Reads the agent's sd_notify messages until one contains `what`; returns them all.
    pub async fn wait_notify(&self, what: &str) -> String {
        let notify = self.notify.clone().expect("the agent was started");
        let log_path = self.agent_log.clone();
        let what = what.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut all = String::new();
            let mut buf = [0u8; 4096];
            while !all.contains(&what) {
                let n = notify.recv(&mut buf).unwrap_or_else(|e| {
                    panic!(
                        "no {what} from the agent ({e}); its log:\n{}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    )
                });
                all.push_str(&String::from_utf8_lossy(&buf[..n]));
                all.push('\n');
            }
            all
        })
        .await
        .unwrap()
    }

    /// Stops the bus, as a crash or restart of dbus would.
    pub fn kill_bus(&mut self) {
        self.dbus.kill().unwrap();
        self.dbus.wait().unwrap();
    }

    /// Waits for the agent to exit.
    pub async fn agent_exit(&mut self) -> std::process::ExitStatus {
        let mut agent = self.agent.take().expect("the agent runs");
        tokio::time::timeout(GUARD, tokio::task::spawn_blocking(move || agent.wait().unwrap()))
            .await
            .expect("the agent did not exit")
            .unwrap()
    }

    /// How many service files the rig's /etc/aicontainers holds.
    pub fn services_written(&self) -> usize {
        std::fs::read_dir(self.root.join("etc/aicontainers")).map(|d| d.count()).unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.agent_log).unwrap_or_default()
    }

    /// Runs `program args` as `nobody` (UID 65534) with this bus as its system bus.
    pub async fn as_nobody(&self, program: &str, args: &[&str]) -> std::process::Output {
        self.run_as(Some(65534), program, args).await
    }

    /// Runs `program args` as root with this bus as its system bus.
    pub async fn as_root(&self, program: &str, args: &[&str]) -> std::process::Output {
        self.run_as(None, program, args).await
    }

    async fn run_as(&self, uid: Option<u32>, program: &str, args: &[&str]) -> std::process::Output {
        let mut cmd = match uid {
            Some(uid) => {
                let mut c = tokio::process::Command::new("setpriv");
                c.args([
                    format!("--reuid={uid}"),
                    format!("--regid={uid}"),
                    "--clear-groups".into(),
                    "--".into(),
                    program.into(),
                ]);
                c
            }
            None => tokio::process::Command::new(program),
        };
        cmd.args(args).env("DBUS_SYSTEM_BUS_ADDRESS", &self.address).env_remove("DBUS_SESSION_BUS_ADDRESS");
        tokio::time::timeout(GUARD, cmd.output()).await.expect("the client hung").unwrap()
    }

    /// `dbus-send` to the agent: `dbus-send --system --print-reply --dest=org.aicontainers.Agent1 PATH METHOD ARGS...`.
    pub async fn dbus_send(&self, nobody: bool, path: &str, method: &str, args: &[&str]) -> std::process::Output {
        let mut all = vec!["--system", "--print-reply", "--dest=org.aicontainers.Agent1", path, method];
        all.extend_from_slice(args);
        if nobody {
            self.as_nobody("dbus-send", &all).await
        } else {
            self.as_root("dbus-send", &all).await
        }
    }
}

/// `stdout + stderr` of a finished process, as text.
pub fn said(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The `aictl` binary of this build (cargo test --workspace builds it; otherwise it is built here).
pub fn aictl() -> PathBuf {
    let agent = PathBuf::from(env!("CARGO_BIN_EXE_aicontainersd"));
    let aictl = agent.with_file_name("aictl");
    if !aictl.exists() {
        // The same profile as this test (target/release/... for the benchmark).
        let release = agent.parent().and_then(|d| d.file_name()).is_some_and(|d| d == "release");
        let args: &[&str] = if release { &["build", "--release", "-p", "aictl"] } else { &["build", "-p", "aictl"] };
        eprintln!("{} is not built yet: building it (cargo {})", aictl.display(), args.join(" "));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo).args(args).status().unwrap();
        assert!(status.success(), "cargo {} failed", args.join(" "));
        assert!(aictl.exists(), "{} still missing after cargo {}", aictl.display(), args.join(" "));
    }
    aictl
}

/// The PropertiesChanged signals of service `name`'s object, as the test client sees them.
pub async fn changes_of(rig: &Rig, name: &str) -> zbus::fdo::PropertiesChangedStream {
    let p = zbus::fdo::PropertiesProxy::builder(&rig.client)
        .destination(aicontainers_agent::names::BUS_NAME)
        .unwrap()
        .path(aicontainers_agent::names::service_path(name))
        .unwrap()
        .build()
        .await
        .unwrap();
    p.receive_properties_changed().await.unwrap()
}
