//! `aicontainers-generator NORMAL_DIR [EARLY_DIR LATE_DIR]`: a systemd generator
//! (systemd.generator(7)). It reads /usr/lib, /run and /etc/aicontainers, renders each service
//! for podman's Quadlet, runs the installed Quadlet on them and writes the units to NORMAL_DIR.
//!
//! As a generator it must be fast and self-contained: no D-Bus, no network, nothing written
//! outside NORMAL_DIR, logs to /dev/kmsg. A bad service file is reported and gets a unit that
//! fails with the reason; every other service is still generated.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use aicontainers::account::HostAccounts;
use aicontainers::generate::{self, Failed, Plan};
use aicontainers::quadlet::Quadlet;
use aicontainers::render::PodmanVersion;
use aicontainers::source::SYSTEM_DIRS;
use aicontainers::Diagnostic;

mod kmsg;

fn config_dirs() -> Vec<PathBuf> {
    // For tests and benchmarks only: a colon-separated list replacing the three system dirs.
    match std::env::var_os("AICONTAINERS_CONFIG_DIRS") {
        Some(dirs) => std::env::split_paths(&dirs).collect(),
        None => SYSTEM_DIRS.iter().map(PathBuf::from).collect(),
    }
}

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    kmsg::init("aicontainers-generator");
    if args.is_empty() || args.len() > 3 {
        eprintln!("usage: aicontainers-generator NORMAL_DIR [EARLY_DIR LATE_DIR]");
        return ExitCode::from(2);
    }
    // Services are system units; a user manager has nothing to generate from /etc/aicontainers.
    if std::env::var("SYSTEMD_SCOPE").is_ok_and(|s| s == "user") {
        return ExitCode::SUCCESS;
    }
    let out_dir = &args[0];
    let timing = std::env::var_os("AICONTAINERS_TIMING").is_some();
    let t0 = Instant::now();

    // Quadlet answers its version while we read the files.
    let pending = Quadlet::ask_version();
    let mut loaded = generate::load(&config_dirs(), &HostAccounts::default());
    // GPU placement reads hwloc, CDI specs and the claims file: only when a service asks.
    for warning in aicontainers::host::HostGpus::from_env().place(&mut loaded) {
        log::warn!("{warning}");
    }
    let t_load = t0.elapsed();
    let waited = Instant::now();
    let quadlet = pending.and_then(|p| p.wait());
    let t_wait = waited.elapsed();
    let version = quadlet.as_ref().map_or(PodmanVersion::MIN, |q| q.version);
    let t_render = Instant::now();
    let mut plan = generate::render(loaded, version);
    let t_plan = t_load + t_render.elapsed();

    let quadlet = match quadlet {
        Ok(q) => q,
        Err(why) => {
            // Without podman nothing can run; every service gets a unit that says so.
            log::error!("{why}");
            fail_all(&mut plan, &why);
            Quadlet { path: PathBuf::from("/nonexistent"), version }
        }
    };
    let outcome = match generate::write_units(plan, out_dir, &quadlet, Path::new(aicontainers::AICTL_PATH)) {
        Ok(o) => o,
        Err(e) => {
            log::error!("cannot write units to {}: {e}", out_dir.display());
            return ExitCode::FAILURE;
        }
    };
    let t_all = t0.elapsed();

    for d in &outcome.problems {
        log::error!("{d}");
    }
    for f in &outcome.failed {
        for d in &f.diagnostics {
            let level = if f.warning { log::Level::Warn } else { log::Level::Error };
            log::log!(level, "{} (service {} skipped)", d, f.name);
        }
    }
    let invalid = outcome.failed.iter().filter(|f| !f.warning).count();
    let level = if outcome.failed.is_empty() { log::Level::Debug } else { log::Level::Warn };
    log::log!(level, "{} services generated, {invalid} invalid", outcome.generated.len());
    if timing {
        let steps: Vec<String> = outcome.timings.iter().map(|(step, ms)| format!("{step} {ms:.2} ms")).collect();
        eprintln!(
            "aicontainers-generator: parse+plan+render {:.2} ms, total {:.2} ms, {} services (load {:.2} ms, wait for quadlet -version {:.2} ms, {})",
            t_plan.as_secs_f64() * 1e3,
            t_all.as_secs_f64() * 1e3,
            outcome.generated.len(),
            t_load.as_secs_f64() * 1e3,
            t_wait.as_secs_f64() * 1e3,
            steps.join(", ")
        );
    }
    // Like Quadlet: a failed file makes the run fail (systemd logs it), the rest is written.
    if invalid == 0 && outcome.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn fail_all(plan: &mut Plan, why: &str) {
    for p in std::mem::take(&mut plan.services) {
        plan.failed.push(Failed {
            name: p.service.name.clone(),
            source: p.service.source.clone(),
            diagnostics: vec![Diagnostic::file(&p.service.source, why)],
            unit: true,
            enable: p.service.enable,
            warning: false,
        });
    }
}
