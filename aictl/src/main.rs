//! `aictl`: the command line of aicontainers.
//!
//! Offline commands (`validate`, `render`) read files only and never change the system; they
//! work on any machine. `account prepare` is the one step that readies an account for rootless
//! services.

/// Writes a line to stdout, ignoring a closed pipe (`aictl render | head`) instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// Like `out!` without the newline.
macro_rules! out_raw {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

mod account;
mod export;
mod gpu;
mod journal;
mod live;
mod manpage;
mod model;
mod preflight;
mod sandbox;
mod sandbox_keeper;
mod sandbox_rules;
mod scan;
mod service_scan;
mod size;
mod top;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aicontainers::account::{Accounts, FixedAccounts, HostAccounts};
use aicontainers::generate::{self, Plan};
use aicontainers::host::HostGpus;
use aicontainers::quadlet::Quadlet;
use aicontainers::render::PodmanVersion;
use aicontainers::source::{self, SYSTEM_DIRS};
use aicontainers::Diagnostic;
use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "aictl", version, about = "Run AI model servers as rootless containers under systemd")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check service files; prints `file:line:col: key: reason` for each problem, exits 1 if any.
    ///
    /// Any path works (Ansible's `validate: aictl validate %s` hands over a temporary file).
    Validate {
        /// Service files to check.
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The files are drop-ins (partial files): only what they set is checked.
        #[arg(long)]
        drop_in: bool,
        /// Check an installed service by name, with all its layers and its account.
        #[arg(long, value_name = "NAME", conflicts_with_all = ["files", "drop_in", "json"])]
        service: Option<String>,
        /// Print diagnostics as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the Quadlet files and the final units for service files, without touching the system.
    Render {
        /// Service files or directories (default: the system directories, layered).
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Plan with these accounts instead of the host's: NAME:UID (repeatable).
        #[arg(long, value_name = "NAME:UID")]
        account: Vec<String>,
        /// Render for this podman version instead of the installed one.
        #[arg(long, value_name = "X.Y.Z")]
        podman_version: Option<String>,
        /// Show only the Quadlet `.container` files, not the units Quadlet makes of them.
        #[arg(long)]
        quadlet_only: bool,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        /// Place GPUs against this hwloc XML export (`lstopo FILE.xml` on the target host)
        /// instead of this host; GPUs are the NVIDIA PCI devices in it, named
        /// `nvidia.com/gpu=INDEX` as `nvidia-ctk cdi generate` names them.
        #[arg(long, value_name = "FILE")]
        topology_xml: Option<PathBuf>,
    },
    /// Show the host's NUMA nodes, CPUs and GPUs (hwloc, the NVIDIA driver, CDI specs, NVML)
    /// and which service holds which GPUs.
    Topology {
        /// Show another machine's captured topology (`lstopo FILE.xml`) instead of this host's.
        #[arg(long, value_name = "FILE")]
        topology_xml: Option<PathBuf>,
        /// Service directories to place (default: the system directories, layered).
        #[arg(long, value_name = "DIR")]
        config: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Save this host's topology as hwloc XML to FILE (for --topology-xml elsewhere).
        #[arg(long, value_name = "FILE", conflicts_with = "topology_xml")]
        save_xml: Option<PathBuf>,
    },
    /// The GPUs services hold (recorded when their units start).
    Gpu {
        #[command(subcommand)]
        command: gpu::GpuCommand,
    },
    /// Run a service's health checks every INTERVAL seconds (started by its unit; see
    /// docs/rootless.md). Detaches unless --foreground.
    #[command(hide = true)]
    HealthWatch {
        name: String,
        #[arg(long, default_value_t = 30)]
        interval: u64,
        #[arg(long)]
        foreground: bool,
    },
    /// Manage the unprivileged accounts that services run as.
    Account {
        #[command(subcommand)]
        command: account::AccountCommand,
    },
    /// The model cache: pull, list, inspect, remove and collect models (man aictl, docs/models.md).
    Model {
        #[command(subcommand)]
        command: model::ModelCommand,
    },
    /// Export services to other systems: `aictl export kube` writes Kubernetes manifests.
    Export {
        #[command(subcommand)]
        command: export::ExportCommand,
    },
    /// Sandboxed services ([sandbox]): their connection attempts (docs/sandbox.md).
    Sandbox {
        #[command(subcommand)]
        command: sandbox::SandboxCommand,
    },
    /// Check that services can start: CDI specs, the NVIDIA driver, SELinux, the account, podman
    /// (man 7 aicontainers-preflight). Exits 1 if any check reports an error.
    Preflight(preflight::PreflightArgs),
    /// Match images' packages against OSV advisories, offline: the images of services (each
    /// verdict kept for the start gate), an unpacked root filesystem (--rootfs), a cached SBOM
    /// (--sbom) or a trivy/grype report (--report); docs/scan.md.
    Scan(scan::ScanArgs),
    /// Print the CycloneDX 1.5 JSON SBOM of a service's image or of an unpacked root filesystem.
    Sbom(scan::SbomArgs),
    /// The start gate of a service unit (`ExecStartPre=`): fails when the scan policy blocks
    /// the last verdict of the service's image (docs/scan.md).
    #[command(hide = true)]
    ScanGate {
        name: String,
        /// The image the service file names.
        image: String,
    },
    /// Live commands, through aicontainersd on the system bus (src/live.rs).
    #[command(flatten)]
    Live(live::LiveCommand),
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell.
    Completions { shell: clap_complete::Shell },
    /// Print the SYNOPSIS section of aictl(1), written from these definitions (man/aictl.1
    /// holds it; a test keeps the two equal).
    #[command(hide = true)]
    ManpageSynopsis,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { files, drop_in, service, json } => match service {
            Some(name) => validate_service(&name),
            None => validate(&files, drop_in, json),
        },
        Command::Render { paths, account, podman_version, quadlet_only, json, topology_xml } => {
            render(&paths, &account, podman_version.as_deref(), quadlet_only, json, topology_xml.as_deref())
        }
        Command::Topology { save_xml: Some(file), .. } => {
            aicontainers::topology::Topology::save_live_xml(&file).map(|()| ExitCode::SUCCESS)
        }
        Command::Topology { topology_xml, config, json, save_xml: None } => {
            gpu::topology(topology_xml.as_deref(), &config, json)
        }
        Command::Gpu { command } => gpu::run(command),
        Command::Account { command } => account::run(command),
        Command::Model { command } => model::run(command),
        Command::Export { command } => export::run(command),
        Command::HealthWatch { name, interval, foreground } => health_watch(&name, interval, foreground),
        Command::Preflight(args) => preflight::run(args),
        Command::Scan(args) => scan::scan(args),
        Command::Sbom(args) => scan::sbom(args),
        Command::ScanGate { name, image } => service_scan::gate(&name, &image),
        Command::Sandbox { command } => sandbox::run(command),
        Command::Live(live::LiveCommand::Top { delay, iterations, batch }) => top::run(delay, iterations, batch),
        Command::Live(command) => live::run(command),
        Command::ManpageSynopsis => {
            let mut cmd = Cli::command();
            cmd.build();
            out_raw!("{}", manpage::synopsis(&cmd));
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "aictl", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            // Messages carry file names, values and the agent's answers: one line each, escaped.
            eprintln!("aictl: {}", aicontainers::diag::escape(&message));
            ExitCode::FAILURE
        }
    }
}

fn validate(files: &[PathBuf], drop_in: bool, json: bool) -> Result<ExitCode, String> {
    if files.is_empty() {
        // A wrong command line, as clap reports its own: usage on stderr, exit status 2.
        let mut cmd = Cli::command();
        let sub = cmd.find_subcommand_mut("validate").expect("validate is a subcommand");
        let err =
            sub.error(clap::error::ErrorKind::MissingRequiredArgument, "name at least one FILE, or --service NAME");
        let _ = err.print();
        return Ok(ExitCode::from(2));
    }
    let mut all: Vec<Diagnostic> = Vec::new();
    for file in files {
        // A drop-in directory's files are partial; so is anything passed with --drop-in.
        let partial = drop_in || file.parent().and_then(|p| p.to_str()).is_some_and(|p| p.ends_with(".toml.d"));
        if let Err(diags) = source::check_file(file, partial) {
            all.extend(diags);
        }
    }
    if json {
        out!("{}", serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?);
    } else {
        for d in &all {
            out!("{d}");
        }
    }
    Ok(if all.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Runs `podman healthcheck run NAME` every `interval` seconds and logs each change of state.
/// podman records the result (`podman inspect`, `podman ps` show healthy/unhealthy).
fn health_watch(name: &str, interval: u64, foreground: bool) -> Result<ExitCode, String> {
    if !foreground {
        // Detach: ExecStartPost= must return; the child stays in the unit's cgroup.
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        std::process::Command::new(me)
            .args(["health-watch", "--foreground", "--interval", &interval.to_string(), name])
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the health watch: {e}"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut last: Option<String> = None;
    loop {
        std::thread::sleep(std::time::Duration::from_secs(interval));
        let out = std::process::Command::new("podman").args(["healthcheck", "run", name]).output();
        let state = match out {
            Ok(o) if o.status.success() => "healthy".to_owned(),
            Ok(o) => {
                let said =
                    String::from_utf8_lossy(&o.stdout).trim().to_owned() + String::from_utf8_lossy(&o.stderr).trim();
                if said.is_empty() {
                    "unhealthy".to_owned()
                } else {
                    said
                }
            }
            Err(e) => format!("cannot run podman: {e}"),
        };
        if last.as_deref() != Some(state.as_str()) {
            out!("health check of {name}: {state}");
            last = Some(state);
        }
    }
}

/// What the unit of an invalid service runs: the reasons, from every layer and the account.
fn validate_service(name: &str) -> Result<ExitCode, String> {
    let plan = generate::plan(&SYSTEM_DIRS, &HostAccounts::default(), PodmanVersion::MIN, &HostGpus::from_env());
    if let Some(f) = plan.failed.iter().find(|f| f.name == name) {
        for d in &f.diagnostics {
            out!("{d}");
        }
        out!("{name}: fix the file(s) above, then run `systemctl daemon-reload`");
        return Ok(ExitCode::FAILURE);
    }
    if plan.services.iter().any(|p| p.service.name == name) {
        out!(
            "{name}: the files are valid. If they were fixed since the last `systemctl daemon-reload`, run it; \
             otherwise podman's Quadlet refused what they render to or is missing: \
             see `journalctl -b -k -g aicontainers-generator` and `aictl render /etc/aicontainers/{name}.toml`"
        );
        return Ok(ExitCode::FAILURE);
    }
    if let Some((_, link)) = plan.masked.iter().find(|(n, _)| n == name) {
        out!("{name}: masked by {}", link.display());
        return Ok(ExitCode::FAILURE);
    }
    out!("{name}: no such service in {}", SYSTEM_DIRS.join(", "));
    Ok(ExitCode::FAILURE)
}

fn render(
    paths: &[PathBuf],
    accounts: &[String],
    podman: Option<&str>,
    quadlet_only: bool,
    json: bool,
    topology_xml: Option<&Path>,
) -> Result<ExitCode, String> {
    let gpus = topology_xml.map_or_else(HostGpus::from_env, HostGpus::from_xml);
    let accounts: Box<dyn Accounts> =
        if accounts.is_empty() { Box::new(HostAccounts::default()) } else { Box::new(FixedAccounts::parse(accounts)?) };
    let quadlet = if quadlet_only { None } else { Quadlet::find().ok() };
    let version = match (podman, &quadlet) {
        (Some(v), _) => PodmanVersion::parse(v).ok_or_else(|| format!("`{v}` is not a podman version"))?,
        (None, Some(q)) => q.version,
        (None, None) => PodmanVersion(5, 4, 0),
    };
    let plan = plan_paths(paths, accounts.as_ref(), version, &gpus)?;
    if json {
        out!("{}", serde_json::to_string_pretty(&plan).map_err(|e| e.to_string())?);
        return Ok(if plan.failed.iter().all(|f| f.warning) && plan.problems.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let ok = plan.failed.iter().all(|f| f.warning) && plan.problems.is_empty();
    for d in &plan.problems {
        eprintln!("{d}");
    }
    for f in &plan.failed {
        for d in &f.diagnostics {
            eprintln!("{d}");
        }
    }
    for p in &plan.services {
        out!("# --- {}.container (Quadlet input, podman {version}) ---", p.service.name);
        out_raw!("{}", p.container);
        out!();
    }
    match quadlet {
        Some(q) if !plan.services.is_empty() => {
            let tmp = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
            let names: Vec<String> = plan.services.iter().map(|p| p.service.name.clone()).collect();
            let outcome = generate::write_units(plan, tmp.path(), &q, Path::new(aicontainers::AICTL_PATH))
                .map_err(|e| format!("rendering units: {e}"))?;
            for name in names {
                let unit = tmp.path().join(format!("{name}.service"));
                let text = std::fs::read_to_string(&unit).unwrap_or_default();
                out!("# --- {name}.service (made by {}) ---", q.path.display());
                out_raw!("{text}");
                out!();
            }
            for f in &outcome.failed {
                for d in &f.diagnostics {
                    eprintln!("{d}");
                }
            }
            Ok(if ok && outcome.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        None if !quadlet_only && !plan.services.is_empty() => {
            eprintln!("aictl: podman's Quadlet is not installed here, so only the Quadlet files are shown");
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        _ => Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }),
    }
}

/// Plans the given files and directories, or the system directories when none are given.
fn plan_paths(
    paths: &[PathBuf],
    accounts: &dyn Accounts,
    version: PodmanVersion,
    gpus: &HostGpus,
) -> Result<Plan, String> {
    if paths.is_empty() {
        return Ok(generate::plan(&SYSTEM_DIRS, accounts, version, gpus));
    }
    let mut plan = Plan::default();
    for path in paths {
        let part = if path.is_dir() {
            generate::plan(std::slice::from_ref(path), accounts, version, gpus)
        } else {
            // A single file: plan it as the only service of a one-file view of its directory.
            let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("service").to_owned();
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let one = generate::plan(&[dir], accounts, version, gpus);
            let mut only = Plan::default();
            only.services.extend(one.services.into_iter().filter(|p| p.service.name == name));
            only.failed.extend(one.failed.into_iter().filter(|f| f.name == name));
            if only.services.is_empty() && only.failed.is_empty() {
                return Err(format!("{}: not a service file (expected NAME.toml)", path.display()));
            }
            only
        };
        plan.services.extend(part.services);
        plan.failed.extend(part.failed);
        plan.masked.extend(part.masked);
        plan.problems.extend(part.problems);
    }
    Ok(plan)
}
