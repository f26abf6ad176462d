//! Live commands: `status`, `start`, `stop`, `restart`, `reload`. They ask aicontainersd on the
//! system bus (docs/agent.md); the offline commands (`validate`, `render`) never touch the bus.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use aicontainers_agent::manager::Manager1Proxy;
use aicontainers_agent::models::{ModelDetail, Models1Proxy};
use aicontainers_agent::names::{BUS_NAME, JOB_INTERFACE, ROOT_PATH, SERVICE_INTERFACE};
use aicontainers_agent::preflight::Check;
use aicontainers_agent::service::Service1Proxy;
use aicontainers_agent::systemd::Verb;
use aicontainers_agent::usage::{Usage, NOT_READ};
use clap::Subcommand;
use serde::Serialize;
use zbus::fdo::ObjectManagerProxy;
use zbus::proxy::CacheProperties;
use zbus::zvariant::OwnedValue;
use zbus::Connection;

/// How long `status` waits for the agent.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `start`, `stop`, `restart` and `reload` wait: they return when systemd's job is done,
/// which for a service that pulls its image can take minutes.
const ACT_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Subcommand, Debug)]
pub enum LiveCommand {
    /// Show every service with its live state, memory, CPU time, OOM kills, account, GPUs, NUMA
    /// nodes, sandbox and image (from aicontainersd).
    Status {
        /// Only these services.
        names: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a service and wait for systemd's job (root, aicontainers-admin, or polkit).
    Start {
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a service and wait for systemd's job (root, aicontainers-admin, or polkit).
    Stop {
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restart a service and wait for systemd's job (root, aicontainers-admin, or polkit).
    Restart {
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A live view of the services' usage, refreshed in place (as systemd-cgtop does for units).
    /// Not on a terminal (or with --batch) it prints one table per refresh; with neither
    /// --iterations nor a terminal, one table.
    Top {
        /// Seconds between refreshes.
        #[arg(short, long, value_name = "SECONDS", default_value_t = 2.0, value_parser = parse_delay)]
        delay: f64,
        /// Stop after N refreshes (default: until Ctrl-C on a terminal, 1 otherwise).
        #[arg(short = 'n', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        iterations: Option<u64>,
        /// Print each refresh below the last, without terminal control.
        #[arg(short, long)]
        batch: bool,
    },
    /// systemctl daemon-reload, then the agent reads the service files again.
    Reload {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// One service as `status` shows it.
#[derive(Debug, Serialize)]
pub(crate) struct Row {
    name: String,
    unit: String,
    state: String,
    sub_state: String,
    load_state: String,
    account: String,
    uid: Option<u32>,
    gpus: Vec<String>,
    numa_nodes: Vec<u32>,
    /// `sandboxed` or `none` (`-` from an agent without sandboxes).
    sandbox: String,
    egress: Vec<String>,
    /// The allow set as resolved when the service started (`tcp 10.9.0.2:80`); empty when it is
    /// not running sandboxed.
    sandbox_allowed: Vec<String>,
    /// Connections allowed and denied since it started; `None` from an agent without counters.
    sandbox_verdicts: Option<Verdicts>,
    image: String,
    source_path: String,
    problems: Vec<String>,
    /// The last preflight problems (aicontainers-preflight(7)).
    preflight: Vec<Check>,
    /// Live usage from the unit's cgroup; `None` from an agent without it.
    usage: Option<UsageRow>,
}

/// `Service1.SandboxVerdicts`.
#[derive(Debug, Serialize)]
pub(crate) struct Verdicts {
    pub allowed: u64,
    pub denied: u64,
}

/// [`Usage`] for people and JSON: values not read are `null`, not `UINT64_MAX`.
#[derive(Debug, Serialize)]
pub(crate) struct UsageRow {
    pub state: String,
    pub cgroup: String,
    pub memory_current: Option<u64>,
    pub memory_peak: Option<u64>,
    /// OOM kills: this run's (`memory.events`) plus the runs systemd ended for one.
    pub oom_kills: Option<u64>,
    pub oom_kills_this_run: Option<u64>,
    pub oom_stopped_runs: u64,
    pub cpu_usec: Option<u64>,
    pub tasks: Option<u64>,
    pub cpus: Vec<u32>,
    pub memory_nodes: Vec<u32>,
    pub problems: Vec<String>,
}

impl From<Usage> for UsageRow {
    fn from(u: Usage) -> Self {
        let read = |v: u64| (v != NOT_READ).then_some(v);
        UsageRow {
            oom_kills: u.oom_total(),
            state: u.state,
            cgroup: u.cgroup,
            memory_current: read(u.memory_current),
            memory_peak: read(u.memory_peak),
            oom_kills_this_run: read(u.oom_kills),
            oom_stopped_runs: u.oom_stops,
            cpu_usec: read(u.cpu_usec),
            tasks: read(u.tasks),
            cpus: u.cpus,
            memory_nodes: u.memory_nodes,
            problems: u.problems,
        }
    }
}

impl Row {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
    pub(crate) fn state(&self) -> &str {
        &self.state
    }
    pub(crate) fn usage(&self) -> Option<&UsageRow> {
        self.usage.as_ref()
    }
}

/// `--delay`: a number of seconds from 0.1 to 3600.
pub(crate) fn parse_delay(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(d) if (0.1..=3600.0).contains(&d) => Ok(d),
        _ => Err(format!("`{text}` is not a number of seconds from 0.1 to 3600")),
    }
}

pub fn run(command: LiveCommand) -> Result<ExitCode, String> {
    // Like systemctl: a user at a terminal may be asked for a password by polkit.
    let _agent = match &command {
        LiveCommand::Status { .. } | LiveCommand::Top { .. } => None,
        _ => TtyAgent::start(),
    };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("cannot start: {e}"))?;
    runtime.block_on(async move {
        match command {
            LiveCommand::Status { names, json } => status(&names, json).await,
            LiveCommand::Start { name, json } => act(&name, Verb::Start, json).await,
            LiveCommand::Stop { name, json } => act(&name, Verb::Stop, json).await,
            LiveCommand::Restart { name, json } => act(&name, Verb::Restart, json).await,
            LiveCommand::Reload { json } => reload(json).await,
            // Dispatched by main to crate::top, which builds on this module.
            LiveCommand::Top { .. } => Err("aictl top is run by its own module".to_owned()),
        }
    })
}

pub(crate) async fn connect(timeout: Duration) -> Result<Connection, String> {
    zbus::connection::Builder::system()
        .map_err(|e| format!("cannot connect to the system bus: {e}"))?
        .method_timeout(timeout)
        .build()
        .await
        .map_err(|e| format!("cannot connect to the system bus (is D-Bus running?): {e}"))
}

/// A bus error as the user should read it.
pub(crate) fn explain(e: zbus::Error) -> String {
    match &e {
        zbus::Error::MethodError(name, message, _) => {
            explain_named(name.as_str(), message.as_deref().unwrap_or_default())
        }
        _ => e.to_string(),
    }
}

/// [`explain`] for the errors of zbus's standard proxies.
fn explain_fdo(e: zbus::fdo::Error) -> String {
    use zbus::DBusError as _;
    match e {
        zbus::fdo::Error::ZBus(inner) => explain(inner),
        other => explain_named(other.name().as_str(), other.description().unwrap_or_default()),
    }
}

fn explain_named(name: &str, message: &str) -> String {
    match name {
        "org.freedesktop.DBus.Error.ServiceUnknown" | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
            format!(
                "aicontainersd is not running ({BUS_NAME} is not on the system bus): start it with `systemctl enable --now aicontainersd`"
            )
        }
        "org.aicontainers.Error.AccessDenied" | "org.freedesktop.DBus.Error.AccessDenied" => {
            format!("permission denied: {message}")
        }
        "org.aicontainers.Error.NotFound" | "org.aicontainers.Error.Failed" => message.to_owned(),
        "org.freedesktop.DBus.Error.NoReply" | "org.freedesktop.DBus.Error.Timeout" => {
            format!("aicontainersd did not answer in time: {message}")
        }
        _ => format!("{message} ({name})"),
    }
}

fn take<T: TryFrom<OwnedValue>>(props: &HashMap<String, OwnedValue>, key: &str) -> Option<T> {
    props.get(key).and_then(|v| v.try_clone().ok()).and_then(|v| T::try_from(v).ok())
}

fn row(props: &HashMap<String, OwnedValue>) -> Row {
    let text = |key: &str| take::<String>(props, key).unwrap_or_default();
    Row {
        name: text("Name"),
        unit: text("Unit"),
        state: text("State"),
        sub_state: text("SubState"),
        load_state: text("LoadState"),
        account: text("Account"),
        uid: take::<u32>(props, "Uid").filter(|u| *u != u32::MAX),
        gpus: take(props, "Gpus").unwrap_or_default(),
        numa_nodes: take(props, "NumaNodes").unwrap_or_default(),
        sandbox: take::<String>(props, "Sandbox").unwrap_or_else(|| "-".to_owned()),
        egress: take(props, "Egress").unwrap_or_default(),
        sandbox_allowed: take::<Vec<(String, String, u16)>>(props, "SandboxAllowed")
            .unwrap_or_default()
            .into_iter()
            .map(|(addr, proto, port)| match addr.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(a)) => format!("{proto} [{a}]:{port}"),
                _ => format!("{proto} {addr}:{port}"),
            })
            .collect(),
        sandbox_verdicts: take::<(u64, u64)>(props, "SandboxVerdicts")
            .map(|(allowed, denied)| Verdicts { allowed, denied }),
        image: text("Image"),
        source_path: text("SourcePath"),
        problems: take(props, "Problems").unwrap_or_default(),
        preflight: take(props, "PreflightProblems").unwrap_or_default(),
        usage: take::<Usage>(props, "Usage").map(UsageRow::from),
    }
}

/// Every service the agent shows (only `names`, when not empty), by name, and what the agent
/// says it cannot show.
pub(crate) async fn fetch_rows(conn: &Connection, names: &[String]) -> Result<(Vec<Row>, Vec<String>), String> {
    let om = ObjectManagerProxy::builder(conn)
        .destination(BUS_NAME)
        .and_then(|b| b.path(ROOT_PATH))
        .map_err(|e| e.to_string())?
        .build()
        .await
        .map_err(explain)?;
    let objects = om.get_managed_objects().await.map_err(explain_fdo)?;
    // What the agent could not put on the bus (an agent without the property has nothing to say).
    let problems = manager(conn).await?.problems().await.unwrap_or_default();
    let mut rows: Vec<Row> = objects
        .values()
        .filter_map(|ifaces| ifaces.iter().find(|(i, _)| i.as_str() == SERVICE_INTERFACE).map(|(_, props)| row(props)))
        .filter(|r| names.is_empty() || names.contains(&r.name))
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((rows, problems))
}

async fn status(names: &[String], json: bool) -> Result<ExitCode, String> {
    let conn = connect(READ_TIMEOUT).await?;
    let (rows, problems) = fetch_rows(&conn, names).await?;
    let missing: Vec<&String> = names.iter().filter(|n| !rows.iter().any(|r| &r.name == *n)).collect();
    if json {
        out!("{}", serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?);
    } else {
        print_table(&rows);
    }
    // Said on stderr, so that a partial list is never taken for the whole.
    for problem in &problems {
        eprintln!("aictl: warning: aicontainersd cannot show everything: {problem}");
    }
    if !missing.is_empty() {
        let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        return Err(format!("no such service: {}", list.join(", ")));
    }
    Ok(ExitCode::SUCCESS)
}

/// `sandboxed`, with `ALLOWED/DENIED` connections since the start while it runs; `-` when not.
fn sandbox_cell(r: &Row) -> String {
    match (r.sandbox.as_str(), &r.sandbox_verdicts) {
        ("sandboxed", Some(v)) if r.state == "active" => format!("sandboxed {}/{}", v.allowed, v.denied),
        ("sandboxed", _) => r.sandbox.clone(),
        _ => "-".to_owned(),
    }
}

fn print_table(rows: &[Row]) {
    let dash = |s: String| if s.is_empty() { "-".to_owned() } else { s };
    let mut table: Vec<[String; 10]> =
        vec![["NAME", "STATE", "MEM", "CPU", "OOM", "ACCOUNT", "GPUS", "NUMA", "SANDBOX", "IMAGE"].map(String::from)];
    for r in rows {
        let numa: Vec<String> = r.numa_nodes.iter().map(u32::to_string).collect();
        // What the agent answers is escaped like every diagnostic: a cell holds one line.
        let e = |s: String| aicontainers::diag::escape(&s).into_owned();
        let usage = r.usage.as_ref();
        table.push([
            e(r.name.clone()),
            e(r.state.clone()),
            usage.and_then(|u| u.memory_current).map_or_else(|| "-".to_owned(), crate::size::compact),
            usage.and_then(|u| u.cpu_usec).map_or_else(|| "-".to_owned(), crate::size::cpu_time),
            usage.and_then(|u| u.oom_kills).map_or_else(|| "-".to_owned(), |n| n.to_string()),
            e(dash(r.account.clone())),
            e(dash(r.gpus.join(","))),
            dash(numa.join(",")),
            e(sandbox_cell(r)),
            e(dash(r.image.clone())),
        ]);
    }
    let mut widths = [0usize; 10];
    for line in &table {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for line in &table {
        let cells: Vec<String> = line.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out!("{}", cells.join("  ").trim_end());
    }
    for r in rows.iter().filter(|r| !r.problems.is_empty()) {
        let name = aicontainers::diag::escape(&r.name);
        out!("{name}: cannot run, its files are invalid: see `aictl validate --service {name}`");
    }
    for r in rows {
        let name = aicontainers::diag::escape(&r.name);
        for c in &r.preflight {
            let e = |s: &str| aicontainers::diag::escape(s).into_owned();
            let fix = if c.fix.is_empty() { String::new() } else { format!("; fix: {}", e(&c.fix)) };
            out!("{name}: preflight {}: {}: {}{fix}", e(&c.status), e(&c.id), e(&c.message));
        }
    }
    for r in rows {
        for problem in r.usage.iter().flat_map(|u| &u.problems) {
            out!("{}: {}", aicontainers::diag::escape(&r.name), aicontainers::diag::escape(problem));
        }
    }
}

/// The agent's `Manager1`, reading nothing ahead (no property cache, no signal subscription).
async fn manager(conn: &Connection) -> Result<Manager1Proxy<'static>, String> {
    Manager1Proxy::builder(conn).cache_properties(CacheProperties::No).build().await.map_err(explain)
}

async fn act(name: &str, verb: Verb, json: bool) -> Result<ExitCode, String> {
    let conn = connect(ACT_TIMEOUT).await?;
    let path = manager(&conn).await?.get_service(name).await.map_err(explain)?;
    let service = Service1Proxy::builder(&conn)
        .path(path)
        .map_err(|e| e.to_string())?
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(explain)?;
    // The proxy's methods let polkit ask for a password where an authentication agent runs.
    match verb {
        Verb::Start => service.start().await,
        Verb::Stop => service.stop().await,
        Verb::Restart => service.restart().await,
    }
    .map_err(explain)?;
    let verb = verb.as_str();
    if json {
        out!("{}", serde_json::json!({ "service": name, "action": verb, "result": "done" }));
    }
    Ok(ExitCode::SUCCESS)
}

async fn reload(json: bool) -> Result<ExitCode, String> {
    let conn = connect(ACT_TIMEOUT).await?;
    let manager = manager(&conn).await?;
    manager.reload().await.map_err(explain)?;
    let services = manager.list_services().await.map_err(explain)?;
    if json {
        let names: Vec<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
        out!("{}", serde_json::json!({ "action": "reload", "result": "done", "services": names }));
    } else {
        out!("reloaded: {} services", services.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// polkit's text-mode authentication agent (`pkttyagent --fallback`), run for the duration of a
/// mutating command when a non-root user is at a terminal, as `systemctl` does: polkit can then
/// ask for a password (`auth_admin_keep`) instead of refusing outright. Stopped when dropped.
struct TtyAgent(std::process::Child);

impl TtyAgent {
    const PATH: &'static str = "/usr/bin/pkttyagent";

    fn start() -> Option<TtyAgent> {
        use std::io::{IsTerminal, Read};
        use std::os::fd::AsRawFd;
        if nix::unistd::geteuid().is_root()
            || !std::io::stdin().is_terminal()
            || !std::path::Path::new(Self::PATH).exists()
        {
            return None;
        }
        // pkttyagent closes --notify-fd once it is registered (or exits when it cannot be).
        let (read, write) = nix::unistd::pipe().ok()?;
        nix::fcntl::fcntl(&read, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).ok()?;
        let child = std::process::Command::new(Self::PATH)
            .args(["--notify-fd", &write.as_raw_fd().to_string(), "--fallback"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        drop(write);
        let _ = std::fs::File::from(read).read_to_end(&mut Vec::new());
        Some(TtyAgent(child))
    }
}

impl Drop for TtyAgent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `aictl model pull SOURCE` through aicontainersd: it creates a job, and this follows the job's
/// `PropertiesChanged` for the progress line (or `--json` events) until it ends. `None` when the
/// agent is not on the system bus: the caller then pulls in this process.
pub fn model_pull(source: &str, json: bool) -> Option<Result<ExitCode, String>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    runtime.block_on(async move {
        let conn = connect(ACT_TIMEOUT).await.ok()?;
        let dbus = zbus::fdo::DBusProxy::new(&conn).await.ok()?;
        let name = zbus::names::BusName::try_from(BUS_NAME).ok()?;
        if !dbus.name_has_owner(name).await.ok()? {
            return None;
        }
        // Like systemctl: a user at a terminal may be asked for a password by polkit.
        let _agent = TtyAgent::start();
        Some(follow_pull(&conn, source, json).await)
    })
}

/// Follows a pull the agent runs, printing its progress until its end. Long because the one
/// signal loop handles each event kind (progress, done, failed, the agent gone) in its arm.
async fn follow_pull(conn: &Connection, source: &str, json: bool) -> Result<ExitCode, String> {
    use futures_util::StreamExt;
    use std::io::{IsTerminal, Write};
    let models = Models1Proxy::builder(conn).cache_properties(CacheProperties::No).build().await.map_err(explain)?;
    let job = models.pull(source).await.map_err(explain)?;
    let props = zbus::fdo::PropertiesProxy::builder(conn)
        .destination(BUS_NAME)
        .and_then(|b| b.path(job.as_str()))
        .map_err(|e| e.to_string())?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(explain)?;
    // Listen first, then read: no change can fall in between.
    let mut changes = props.receive_properties_changed().await.map_err(explain)?;
    let iface = zbus::names::InterfaceName::try_from(JOB_INTERFACE).map_err(|e| e.to_string())?;
    let mut now = props.get_all(iface).await.map_err(explain_fdo)?;
    let terminal = std::io::stderr().is_terminal() && !json;
    let mut shown = (String::new(), u64::MAX);
    let mut last_line = std::time::Instant::now();
    loop {
        let state = take::<String>(&now, "State").unwrap_or_default();
        let done = take::<u64>(&now, "BytesDone").unwrap_or_default();
        let total = take::<u64>(&now, "BytesTotal").unwrap_or_default();
        if (state.clone(), done) != shown {
            if json {
                out!(
                    "{}",
                    serde_json::json!({ "event": "progress", "job": job.as_str(), "state": state, "bytes_done": done, "bytes_total": total })
                );
            } else if state == "running" && total > 0 {
                let source = aicontainers::diag::escape(source);
                let line = format!(
                    "{source}: {} / {} {:>3}%",
                    crate::size::human(done),
                    crate::size::human(total),
                    done * 100 / total
                );
                if terminal {
                    eprint!("\r\x1b[K{line}");
                    let _ = std::io::stderr().flush();
                } else if last_line.elapsed() >= Duration::from_secs(10) {
                    eprintln!("{line}");
                    last_line = std::time::Instant::now();
                }
            }
            shown = (state.clone(), done);
        }
        if state == "done" || state == "failed" {
            if terminal {
                eprint!("\r\x1b[K");
            }
            if state == "failed" {
                return Err(take::<String>(&now, "Error").unwrap_or_else(|| format!("{job} failed")));
            }
            break;
        }
        // Quiet for a while (a slow source, or the agent went away): read the job again.
        let signal = match tokio::time::timeout(Duration::from_secs(30), changes.next()).await {
            Ok(Some(signal)) => signal,
            Ok(None) => return Err(format!("lost {job} of aicontainersd before it finished")),
            Err(_) => {
                let iface = zbus::names::InterfaceName::try_from(JOB_INTERFACE).map_err(|e| e.to_string())?;
                now = props
                    .get_all(iface)
                    .await
                    .map_err(|e| format!("lost {job} of aicontainersd before it finished: {}", explain_fdo(e)))?;
                continue;
            }
        };
        let Ok(args) = signal.args() else { continue };
        for (key, value) in args.changed_properties() {
            if let Ok(v) = OwnedValue::try_from(value) {
                now.insert((*key).to_owned(), v);
            }
        }
    }
    let ModelDetail { path, size, files, .. } = models.inspect(source).await.map_err(explain)?.into();
    if json {
        out!(
            "{}",
            serde_json::json!({ "event": "done", "job": job.as_str(), "state": "done", "source": source, "path": path, "files": files.len(), "size": size,
                "bytes_done": take::<u64>(&now, "BytesDone"), "bytes_total": take::<u64>(&now, "BytesTotal") })
        );
    } else {
        out!(
            "{}: ready at {} ({}, {}) (aicontainersd job {})",
            aicontainers::diag::escape(source),
            aicontainers::diag::escape(&path),
            crate::size::files(files.len()),
            crate::size::human(size),
            aicontainers::diag::escape(job.as_str())
        );
    }
    Ok(ExitCode::SUCCESS)
}
