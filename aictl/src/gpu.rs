//! `aictl topology` (the host's NUMA nodes, CPUs and GPUs, and which service holds what) and
//! `aictl gpu claim` (what a GPU service's unit runs on start to record its GPUs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aicontainers::account::{Account, Accounts, HostAccounts};
use aicontainers::generate;
use aicontainers::host::HostGpus;
use aicontainers::placement::{Claim, Claims};
use aicontainers::source::SYSTEM_DIRS;
use aicontainers::topology::{list, Topology};
use clap::Subcommand;
use serde::Serialize;

#[derive(Subcommand, Debug)]
pub enum GpuCommand {
    /// Record that service NAME holds these GPUs (its unit runs this on start, as root), so
    /// later placements leave them where they are. Entries of services that no longer have a
    /// file are dropped at the same time.
    #[command(hide = true)]
    Claim {
        name: String,
        /// The request that got them (as the unit says).
        request: String,
        /// PCI addresses.
        #[arg(required = true)]
        gpus: Vec<String>,
    },
    /// Let go of the GPUs service NAME holds: the next `systemctl daemon-reload` may give them
    /// to others (and NAME, if it still asks, gets GPUs afresh).
    Release { name: String },
}

/// Every account exists (for placement only).
struct AnyAccount;

impl Accounts for AnyAccount {
    fn lookup(&self, name: &str) -> Result<Account, String> {
        Ok(Account { name: name.to_string(), uid: 0, gid: 0, home: PathBuf::new() })
    }
}

/// What NVML adds to a GPU.
#[derive(Debug, Default, Clone, Serialize)]
struct Nvml {
    index: Option<u32>,
    minor: Option<u32>,
}

#[derive(Serialize)]
struct Report<'a> {
    topology: &'a Topology,
    /// `loaded`, or why NVML was not used.
    nvml: String,
    /// NVML's own index and minor number per PCI address (live host only).
    nvml_devices: BTreeMap<String, Nvml>,
    services: Vec<ServiceRow>,
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct ServiceRow {
    name: String,
    gpus: Vec<u32>,
    cdi: Vec<String>,
    nodes: Vec<u32>,
    cpus: String,
    policy: String,
    error: Option<String>,
}

/// Adds what NVML knows (UUID, name, memory, MIG mode) to the live topology. A host without
/// the driver is a normal case: the reason is returned, nothing fails.
fn add_nvml(topology: &mut Topology) -> (String, BTreeMap<String, Nvml>) {
    let mut extra = BTreeMap::new();
    let nvml = match nvml_wrapper::Nvml::init() {
        Ok(n) => n,
        // The usual case on a host without the NVIDIA driver.
        Err(nvml_wrapper::error::NvmlError::LibloadingError(_)) => {
            return ("not used: no NVIDIA driver here (libnvidia-ml.so.1 cannot be loaded)".into(), extra)
        }
        Err(e) => return (format!("not used: {e}"), extra),
    };
    let count = match nvml.device_count() {
        Ok(c) => c,
        Err(e) => return (format!("not used: device count: {e}"), extra),
    };
    let driver = nvml.sys_driver_version().unwrap_or_else(|_| "?".into());
    for i in 0..count {
        let Ok(dev) = nvml.device_by_index(i) else { continue };
        let Ok(pci) = dev.pci_info() else { continue };
        // NVML writes `00000000:18:00.0`: an 8-digit domain.
        let pci = format!("{:04x}:{:02x}:{:02x}.0", pci.domain, pci.bus, pci.device);
        extra.insert(pci.clone(), Nvml { index: Some(i), minor: dev.minor_number().ok() });
        if let Some(gpu) = topology.gpus.iter_mut().find(|g| g.pci == pci) {
            gpu.uuid = dev.uuid().ok().or(gpu.uuid.take());
            gpu.name = dev.name().ok().or(gpu.name.take());
            gpu.memory_mib = dev.memory_info().ok().map(|m| m.total >> 20);
            gpu.mig = dev.mig_mode().ok().map(|m| m.current == 1);
        }
    }
    (format!("loaded (driver {driver}, {count} devices)"), extra)
}

/// `aictl topology`: the host's GPUs and NUMA nodes and who holds each GPU. Long because it
/// lays out one report (table or JSON) from the topology and the generator's own placement.
pub fn topology(xml: Option<&Path>, config: &[PathBuf], json: bool) -> Result<ExitCode, String> {
    let gpus = match xml {
        Some(x) => HostGpus::from_xml(x),
        None => HostGpus::from_env(),
    };
    let (mut topology, mut warnings) = gpus.topology()?;

    // Who holds what: the same placement the generator makes.
    let dirs: Vec<PathBuf> =
        if config.is_empty() { SYSTEM_DIRS.iter().map(PathBuf::from).collect() } else { config.to_vec() };
    // Exactly what the generator places: the host's accounts (a service whose account is
    // missing gets no GPU), and no NVML. Planning from a file, accounts are the other machine's:
    // every service is taken to have one.
    let mut loaded = if xml.is_some() {
        generate::load(&dirs, &AnyAccount)
    } else {
        generate::load(&dirs, &HostAccounts::default())
    };
    let (claims, w) = Claims::read(&gpus.claims);
    warnings.extend(w);
    let requests: Vec<(String, aicontainers::spec::Gpu)> =
        loaded.services.iter().filter_map(|(s, _)| s.gpu.clone().map(|g| (s.name.clone(), g))).collect();
    let topo_for_place = topology.clone();
    generate::place(&mut loaded, || Ok(topo_for_place), &claims);
    let mut services = Vec::new();
    for (name, req) in &requests {
        let row = match loaded.placements.get(name) {
            Some(a) => ServiceRow {
                name: name.clone(),
                gpus: a.gpus.iter().map(|g| g.index).collect(),
                cdi: a.cdi.clone(),
                nodes: a.nodes.clone(),
                cpus: list(&a.cpus),
                policy: a.policy.name().into(),
                error: None,
            },
            None => ServiceRow {
                name: name.clone(),
                gpus: Vec::new(),
                cdi: Vec::new(),
                nodes: Vec::new(),
                cpus: String::new(),
                policy: req.numa.name().into(),
                error: loaded
                    .failed
                    .iter()
                    .find(|f| &f.name == name)
                    .and_then(|f| f.diagnostics.first())
                    .map(|d| d.message.clone()),
            },
        };
        services.push(row);
    }
    services.sort_by(|a, b| a.name.cmp(&b.name));
    // NVML's names, memory and MIG modes are for the sysadmin's eyes only.
    let (nvml, nvml_devices) = if gpus.topology_xml.is_some() {
        ("not used: planning from an XML file".to_string(), BTreeMap::new())
    } else {
        add_nvml(&mut topology)
    };

    if json {
        let report = Report { topology: &topology, nvml, nvml_devices, services, warnings };
        out!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    out!("Topology: {}   NVML: {nvml}", topology.source);
    out!();
    let mut rows = vec![vec!["NODE".to_string(), "CPUS".into(), "MEMORY".into(), "GPUS".into()]];
    for n in &topology.nodes {
        let gpus: Vec<String> =
            topology.gpus.iter().filter(|g| g.numa.contains(&n.id)).map(|g| g.index.to_string()).collect();
        rows.push(vec![
            n.id.to_string(),
            format!("{} ({})", list(&n.cpus), n.cpus.len()),
            n.memory.map_or("-".into(), |m| format!("{:.0} GiB", m as f64 / (1u64 << 30) as f64)),
            if gpus.is_empty() { "-".into() } else { gpus.join(",") },
        ]);
    }
    table(&rows);
    out!();
    if topology.gpus.is_empty() {
        out!("No GPU found (PCI display controllers made by NVIDIA, or named by a CDI spec).");
    } else {
        let holder = |i: u32| -> String {
            let names: Vec<&str> = services.iter().filter(|s| s.gpus.contains(&i)).map(|s| s.name.as_str()).collect();
            if names.is_empty() {
                "-".into()
            } else {
                names.join(",")
            }
        };
        let mut rows = vec![vec![
            "GPU".to_string(),
            "PCI".into(),
            "NODE".into(),
            "NAME".into(),
            "UUID".into(),
            "CDI".into(),
            "HELD BY".into(),
        ]];
        for g in &topology.gpus {
            rows.push(vec![
                g.index.to_string(),
                g.pci.clone(),
                if g.numa.is_empty() { "none".into() } else { list(&g.numa) },
                g.name.clone().unwrap_or_else(|| format!("{:04x}:{:04x}", g.vendor, g.device)),
                g.uuid.clone().unwrap_or_else(|| "-".into()),
                g.cdi_name().unwrap_or_else(|| "-".into()),
                holder(g.index),
            ]);
        }
        table(&rows);
    }
    if !services.is_empty() {
        out!();
        let mut rows = vec![vec!["SERVICE".to_string(), "POLICY".into(), "GPUS".into(), "NODES".into(), "CPUS".into()]];
        for s in &services {
            match &s.error {
                Some(e) => {
                    rows.push(vec![s.name.clone(), s.policy.clone(), "-".into(), "-".into(), format!("refused: {e}")])
                }
                None => rows.push(vec![
                    s.name.clone(),
                    s.policy.clone(),
                    s.gpus.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
                    if s.nodes.is_empty() { "-".into() } else { list(&s.nodes) },
                    if s.cpus.is_empty() { "-".into() } else { s.cpus.clone() },
                ]),
            }
        }
        table(&rows);
    }
    for w in &warnings {
        eprintln!("aictl: warning: {}", aicontainers::diag::escape(w));
    }
    Ok(ExitCode::SUCCESS)
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out!("{}", line.trim_end());
    }
}

pub fn run(command: GpuCommand) -> Result<ExitCode, String> {
    match command {
        GpuCommand::Claim { name, request, gpus } => {
            // The generator's AICONTAINERS_CONFIG_DIRS, so tests see the same services.
            let dirs: Vec<PathBuf> = match std::env::var_os("AICONTAINERS_CONFIG_DIRS") {
                Some(d) => std::env::split_paths(&d).collect(),
                None => SYSTEM_DIRS.iter().map(PathBuf::from).collect(),
            };
            claim(&HostGpus::from_env().claims, &name, &request, gpus, &dirs)
        }
        GpuCommand::Release { name } => release(&HostGpus::from_env().claims, &name),
    }
}

/// Records the claim atomically (write, fsync, rename) under an exclusive lock, so two units
/// starting at once do not lose each other's entries.
pub fn claim<P: AsRef<Path>>(
    path: &Path,
    name: &str,
    request: &str,
    gpus: Vec<String>,
    dirs: &[P],
) -> Result<ExitCode, String> {
    if let Some(bad) = gpus.iter().find(|g| !aicontainers::cdi::is_pci_address(g)) {
        return Err(format!("gpu claim: `{bad}` is not a PCI address"));
    }
    if gpus.iter().collect::<std::collections::BTreeSet<_>>().len() != gpus.len() {
        return Err("gpu claim: a GPU is named twice".into());
    }
    if aicontainers::spec::check_service_name(name).is_err() {
        return Err(format!("gpu claim: `{name}` is not a service name"));
    }
    // Services whose files are gone let go of their GPUs.
    let present: std::collections::BTreeSet<String> =
        aicontainers::source::discover(dirs).services.into_iter().map(|f| f.name).collect();
    update_claims(path, |claims| {
        claims.claims.retain(|n, _| present.contains(n) || n == name);
        claims.claims.insert(name.to_string(), Claim { request: request.to_string(), gpus });
    })
}

pub fn release(path: &Path, name: &str) -> Result<ExitCode, String> {
    let mut found = false;
    update_claims(path, |claims| found = claims.claims.remove(name).is_some())?;
    if !found {
        out!("{name} holds no GPUs");
    }
    Ok(ExitCode::SUCCESS)
}

/// Changes the claims file ([`Claims::update`]), saying so when a broken one was kept aside.
fn update_claims(path: &Path, change: impl FnOnce(&mut Claims)) -> Result<ExitCode, String> {
    if let Some(warning) = Claims::update(path, change)? {
        eprintln!("aictl: {}", aicontainers::diag::escape(&warning));
    }
    Ok(ExitCode::SUCCESS)
}
