//! `aictl export kube`: service files as Kubernetes manifests (core/src/export/kube.rs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aicontainers::export::kube::{self, Kind, ModelVolumes, Options};
use aicontainers::source::{self, SYSTEM_DIRS};
use aicontainers::spec::Service;
use aicontainers::Diagnostic;
use clap::{Subcommand, ValueEnum};

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// Kubernetes manifests: a Deployment (or Pod) per service and a Service for its published
    /// ports, keeping GPU, NUMA and model intent; what has no cluster meaning is a warning.
    Kube {
        /// Service files or directories (default: the system directories, layered).
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Put every object in this namespace.
        #[arg(long, value_name = "NS")]
        namespace: Option<String>,
        /// The workload object of each service.
        #[arg(long, value_enum, value_name = "KIND", default_value_t = KindArg::Deployment)]
        kind: KindArg,
        /// How [[model]] entries reach the pod: `image` mounts oci:// models as image volumes
        /// (Kubernetes 1.31+) and pulls others with an init container; `init` pulls every
        /// model with an init container running `aictl model pull` into an emptyDir.
        #[arg(long, value_enum, value_name = "HOW", default_value_t = ModelsArg::Image)]
        models: ModelsArg,
        /// The image with aictl that model init containers run.
        #[arg(long, value_name = "IMAGE")]
        aictl_image: Option<String>,
        /// Keep each published port's host port and address (hostPort, hostIP), as
        /// `podman kube play` needs to publish them; without it only the Service exposes them.
        #[arg(long)]
        host_ports: bool,
        /// The UID of an account that does not exist here (or should differ): NAME:UID
        /// (repeatable). Other accounts are looked up on this host.
        #[arg(long, value_name = "NAME:UID")]
        account: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KindArg {
    Deployment,
    Pod,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModelsArg {
    Image,
    Init,
}

pub fn run(command: ExportCommand) -> Result<ExitCode, String> {
    let ExportCommand::Kube { paths, namespace, kind, models, aictl_image, host_ports, account } = command;
    let mut fixed: BTreeMap<String, u32> = BTreeMap::new();
    for a in &account {
        let (name, uid) = a.split_once(':').ok_or_else(|| format!("--account `{a}`: expected NAME:UID"))?;
        let uid: u32 = uid.parse().map_err(|_| format!("--account `{a}`: `{uid}` is not a UID"))?;
        if uid == 0 {
            return Err(format!("--account `{a}`: services run as non-root accounts, not UID 0"));
        }
        fixed.insert(name.to_owned(), uid);
    }
    let uid = |name: &str| -> Option<u32> {
        fixed.get(name).copied().or_else(|| {
            nix::unistd::User::from_name(name).ok().flatten().map(|u| u.uid.as_raw()).filter(|uid| *uid != 0)
        })
    };
    let (services, diags) = load(&paths)?;
    if !diags.is_empty() {
        for d in &diags {
            eprintln!("{d}");
        }
        return Err(format!("nothing exported: fix the {} problem(s) above", diags.len()));
    }
    let options = Options {
        kind: match kind {
            KindArg::Deployment => Kind::Deployment,
            KindArg::Pod => Kind::Pod,
        },
        namespace,
        models: match models {
            ModelsArg::Image => ModelVolumes::Image,
            ModelsArg::Init => ModelVolumes::Init,
        },
        aictl_image,
        host_ports,
        uid: &uid,
    };
    let export = kube::export(&services, &options)?;
    for w in &export.warnings {
        eprintln!("aictl: warning: {w}");
    }
    out_raw!("{}", export.yaml);
    Ok(ExitCode::SUCCESS)
}

/// Loads the services of the given files and directories (or the system directories), each with
/// its drop-ins, checked as the generator checks them. Every problem is returned.
fn load(paths: &[PathBuf]) -> Result<(Vec<Service>, Vec<Diagnostic>), String> {
    let mut services = Vec::new();
    let mut diags = Vec::new();
    let mut take = |found: source::Discovery, only: Option<&str>| {
        diags
            .extend(found.problems.into_iter().filter(|d| only.is_none_or(|n| d.path.file_stem() == Some(n.as_ref()))));
        for (name, link) in &found.masked {
            if only.is_none_or(|n| n == name) {
                eprintln!("aictl: {name} is masked by {}: not exported", link.display());
            }
        }
        for files in found.services.iter().filter(|s| only.is_none_or(|n| n == s.name)) {
            match source::load(files) {
                Ok(s) => services.push(s),
                Err(d) => diags.extend(d),
            }
        }
    };
    if paths.is_empty() {
        take(source::discover(&SYSTEM_DIRS), None);
        return Ok((services, diags));
    }
    for path in paths {
        if path.is_dir() {
            take(source::discover(std::slice::from_ref(path)), None);
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".toml"));
        let Some(name) = name else {
            return Err(format!("{}: not a service file (expected NAME.toml)", path.display()));
        };
        if !path.exists() {
            return Err(format!("{}: no such file", path.display()));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let found = source::discover(&[dir]);
        if !found.services.iter().any(|s| s.name == name) && !found.masked.iter().any(|(n, _)| n == name) {
            // A name that cannot be a service is reported by discover; anything else is odd.
            if !found.problems.iter().any(|d| d.path == *path) {
                return Err(format!("{}: not a service file (expected NAME.toml)", path.display()));
            }
        }
        take(found, Some(name));
    }
    Ok((services, diags))
}
