//! `aictl scan` and `aictl sbom`: the offline forms of image scans (core/src/scan). They read
//! an unpacked root filesystem, a cached SBOM or another scanner's report, and the OSV records
//! of a directory; nothing is fetched and nothing on the system is changed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aicontainers::diag::escape;
use aicontainers::scan::inventory::{self, Inventory};
use aicontainers::scan::osv::{self, Finding, Index};
use aicontainers::scan::{external, rootfs::RootFs, sbom};
use clap::{ArgGroup, Args};

/// The most read of an SBOM or a scanner's report.
const DOC_MAX: u64 = 512 << 20;

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("subject").args(["rootfs", "sbom", "report", "names"])))]
pub struct ScanArgs {
    /// Services to scan (every service when no NAME and no --rootfs, --sbom or --report):
    /// the image each runs, read as its account, against the policy's advisories; records
    /// each verdict for the start gate. Needs root.
    #[arg(value_name = "NAME")]
    names: Vec<String>,
    /// Scan this unpacked root filesystem (an image's files).
    #[arg(long, value_name = "DIR", requires = "advisories")]
    rootfs: Option<PathBuf>,
    /// Rescan a CycloneDX JSON SBOM (`aictl sbom`'s, or trivy's or syft's) instead.
    #[arg(long, value_name = "FILE", requires = "advisories")]
    sbom: Option<PathBuf>,
    /// Read the findings of a trivy (`--format json`) or grype (`-o json`) report instead.
    #[arg(long, value_name = "FILE", conflicts_with = "advisories")]
    report: Option<PathBuf>,
    /// The OSV records to match against: a directory of JSON files, read recursively (for
    /// services: the policy's `advisories`).
    #[arg(long, value_name = "DIR", conflicts_with = "names")]
    advisories: Option<PathBuf>,
    /// Keep the parsed advisories in FILE and read them from there while the directory is
    /// unchanged (same files, sizes, modification times): a rescan then parses one file.
    #[arg(long, value_name = "FILE", requires = "advisories")]
    advisory_cache: Option<PathBuf>,
    /// Print `{"findings": [{"id", "aliases", "package", "ecosystem", "installed", "fixed",
    /// "severity"}]}` (stable; `fixed` is null when no fix exists).
    #[arg(long)]
    json: bool,
    /// Scan only the named services whose image ID is not the one of their last verdict (or
    /// that have none): what the agent runs when a service starts. Needs NAMEs.
    #[arg(long, requires = "names")]
    new_image: bool,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("subject").required(true).args(["rootfs", "service"])))]
pub struct SbomArgs {
    /// The service whose image to print the SBOM of (kept per image ID, else inventoried as
    /// the service's account). Needs root.
    #[arg(value_name = "NAME", conflicts_with = "name")]
    service: Option<String>,
    /// The unpacked root filesystem to inventory.
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// What the SBOM describes (metadata.component.name; default: the directory).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

fn warn(what: impl std::fmt::Display) {
    eprintln!("aictl: warning: {}", escape(&what.to_string()));
}

fn inventory_of(dir: &Path) -> Result<Inventory, String> {
    let root = RootFs::open(dir).map_err(|d| d.to_string())?;
    let inv = inventory::inventory(&root).map_err(|d| d.to_string())?;
    for w in &inv.warnings {
        warn(w);
    }
    Ok(inv)
}

fn read_json(path: &Path) -> Result<serde_json::Value, String> {
    let data = osv::read_capped(path, DOC_MAX).map_err(|d| d.to_string())?;
    serde_json::from_slice(&data).map_err(|e| format!("{}:{}:{}: not JSON: {e}", path.display(), e.line(), e.column()))
}

pub fn scan(args: ScanArgs) -> Result<ExitCode, String> {
    if args.rootfs.is_none() && args.sbom.is_none() && args.report.is_none() {
        return crate::service_scan::scan(&args.names, args.json, args.new_image);
    }
    let findings: Vec<Finding> = if let Some(report) = &args.report {
        external::findings(&read_json(report)?).map_err(|e| format!("{}: {e}", report.display()))?
    } else {
        let packages = if let Some(dir) = &args.rootfs {
            inventory_of(dir)?.packages
        } else {
            let path = args.sbom.as_deref().unwrap_or(Path::new("-"));
            let (packages, skipped) =
                sbom::from_cyclonedx(&read_json(path)?).map_err(|e| format!("{}: {e}", path.display()))?;
            if skipped > 0 {
                warn(format!(
                    "{}: {skipped} components have no ecosystem that advisories name: not matched",
                    path.display()
                ));
            }
            packages
        };
        let dir = args.advisories.as_deref().ok_or("--advisories DIR is needed")?;
        let index = match &args.advisory_cache {
            Some(cache) => Index::load_dir_cached(dir, cache),
            None => Index::load_dir(dir),
        }
        .map_err(|d| d.to_string())?;
        for w in &index.warnings {
            warn(w);
        }
        let (findings, unreadable) = index.matches(&packages);
        for u in unreadable {
            warn(format!("advisory not applied, its versions cannot be compared: {u}"));
        }
        findings
    };
    if args.json {
        let doc = serde_json::json!({ "findings": findings });
        out!("{}", serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    if findings.is_empty() {
        out!("no findings");
        return Ok(ExitCode::SUCCESS);
    }
    out!("{:<24} {:<10} {:<28} {:<28} FIXED", "ID", "SEVERITY", "PACKAGE", "INSTALLED");
    for f in &findings {
        out!(
            "{:<24} {:<10} {:<28} {:<28} {}",
            escape(&f.id),
            f.severity.as_str(),
            escape(&f.package),
            escape(&f.installed),
            f.fixed.as_deref().map_or("(no fix)".into(), escape)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn sbom(args: SbomArgs) -> Result<ExitCode, String> {
    let rootfs = match (args.rootfs, args.service) {
        (Some(dir), _) => dir,
        (None, Some(service)) => return crate::service_scan::sbom(&service),
        (None, None) => return Err("name a service, or --rootfs DIR".into()),
    };
    let inv = inventory_of(&rootfs)?;
    let name = args.name.unwrap_or_else(|| rootfs.display().to_string());
    let doc = sbom::to_cyclonedx(&inv, &name);
    out!("{}", serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?);
    Ok(ExitCode::SUCCESS)
}
