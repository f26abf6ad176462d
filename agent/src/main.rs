//! `aicontainersd`: the aicontainers node agent (see `aicontainersd(8)` and docs/agent.md).

use std::process::ExitCode;
use std::sync::Arc;

use aicontainers_agent::cli::Cli;
use aicontainers_agent::manager::{Agent, Host, ManagerObject};
use aicontainers_agent::models::{Models, ModelsObject};
use aicontainers_agent::names::{BUS_NAME, MODELS_PATH, ROOT_PATH};
use aicontainers_agent::notify;
use aicontainers_agent::preflight::Records;
use aicontainers_agent::service::Context;
use aicontainers_agent::systemd::{self, SystemdProxy};
use aicontainers_agent::units::Units;
use clap::Parser;
use zbus::fdo::{ObjectManager, RequestNameFlags, RequestNameReply};
use zbus::proxy::CacheProperties;

fn main() -> ExitCode {
    let cli = Cli::parse();
    aicontainers_agent::logging::init(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            log::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // A model pull still running on a blocking thread is left behind (the next pull resumes it)
    // rather than waited for: stopping must not take as long as a download.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            let _ = notify::notify(&format!("STATUS=Failed: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// The bus connection (the system bus, or `--bus-address`) and systemd's manager, subscribed.
async fn connect(cli: &Cli) -> Result<(zbus::Connection, SystemdProxy<'static>), String> {
    let builder = match &cli.bus_address {
        Some(address) => zbus::connection::Builder::address(address.as_str()),
        None => zbus::connection::Builder::system(),
    };
    let conn = builder
        .map_err(|e| format!("cannot connect to the system bus: {e}"))?
        .build()
        .await
        .map_err(|e| format!("cannot connect to the system bus: {e}"))?;
    let systemd = SystemdProxy::builder(&conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(|e| format!("cannot reach systemd: {e}"))?;
    systemd
        .subscribe()
        .await
        .map_err(|e| format!("cannot subscribe to systemd's signals: {}", systemd::describe(&e)))?;
    Ok((conn, systemd))
}

async fn run(cli: Cli) -> Result<(), String> {
    let (conn, systemd) = connect(&cli).await?;
    // A constant number of match rules, however many services there are (aicontainersd(8)).
    let units = Units::new(conn.clone());
    let _units = units.clone().follow().await.map_err(|e| format!("cannot follow systemd's units: {e}"))?;
    let (jobs, _jobs) =
        systemd::follow_jobs(&systemd).await.map_err(|e| format!("cannot follow systemd's jobs: {e}"))?;
    let records = Arc::new(Records::new(&cli.root));
    let cgroup_mount = cli.root.join(aicontainers_agent::usage::CGROUP_MOUNT);
    let audit = Arc::new(aicontainers_agent::audit::Audit::default());
    let ctx = Arc::new(Context {
        conn: conn.clone(),
        systemd,
        units,
        jobs,
        records,
        cgroup_mount,
        audit: audit.clone(),
        root: cli.root.clone(),
    });
    let agent = Arc::new(Agent::new(ctx, Host { root: cli.root.clone() }));
    let _reloads = agent.clone().follow_reloads().await.map_err(|e| format!("cannot follow systemd reloads: {e}"))?;
    let count = agent.rescan().await.map_err(|e| format!("cannot put the services on the bus: {e}"))?;
    // A host without inotify left still runs: preflight problems then show as of each start.
    let _preflight = agent.clone().follow_preflight().map_err(|e| log::warn!("{e}")).ok();
    // Likewise: without inotify, rescans come from the timer only.
    let _scans = agent.clone().follow_scans().map_err(|e| log::warn!("{e}")).ok();
    // A scan of a service's image when it starts on an image ID not scanned yet.
    let _starts = agent.clone().follow_starts();
    let server = conn.object_server();
    server.at(ROOT_PATH, ManagerObject { agent: agent.clone() }).await.map_err(|e| e.to_string())?;
    server.at(ROOT_PATH, ObjectManager).await.map_err(|e| e.to_string())?;
    let models = Arc::new(Models::new(conn.clone(), Host { root: cli.root.clone() }, cli.models_limit_rate));
    server.at(MODELS_PATH, ModelsObject { models }).await.map_err(|e| e.to_string())?;
    // The scanned images (before the name is owned: they are there when clients come); without
    // inotify, they are as of the agent's start.
    let _images = agent.images.clone().follow().await.map_err(|e| log::warn!("{e}")).ok();

    let reply = conn.request_name_with_flags(BUS_NAME, RequestNameFlags::DoNotQueue.into()).await.map_err(|e| {
        format!(
            "cannot own {BUS_NAME} (only root may; see /usr/share/dbus-1/system.d/{BUS_NAME}.conf): {}",
            systemd::describe(&e)
        )
    })?;
    if reply != RequestNameReply::PrimaryOwner {
        return Err(format!("{BUS_NAME} is already owned: is another aicontainersd running?"));
    }
    // The sandbox's verdicts, forwarded to the journal with fields (docs/sandbox.md, "Audit").
    let (moved, moved_rx) = tokio::sync::mpsc::unbounded_channel();
    match aicontainers_agent::audit::follow(audit.clone(), cli.root.clone(), moved) {
        Ok(()) => drop(tokio::spawn(aicontainers_agent::audit::signal_counters(conn.clone(), audit, moved_rx))),
        Err(e) => log::warn!("cannot follow the sandbox's verdicts: {e}"),
    }
    log::info!("ready on {BUS_NAME} with {count} services");
    let _ = notify::notify(&format!("READY=1\nSTATUS={}", agent.status_line(count)));

    if let Some(every) = notify::watchdog_interval() {
        log::info!("watchdog on: a keep-alive every {} ms", every.as_millis());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let _ = notify::notify("WATCHDOG=1");
            }
        });
    }

    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        // Without the bus the agent is useless: exit, and let systemd restart it.
        _ = conn.closed() => return Err("lost the connection to the bus".into()),
    }
    let _ = notify::notify("STOPPING=1");
    log::info!("stopping");
    Ok(())
}
