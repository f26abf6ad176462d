//! The generator's pipeline: discover → load and check → plan (accounts) → render → Quadlet →
//! finished units. `aicontainers-generator` and `aictl render` both run it, so what `render`
//! shows is what boot produces.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::account::{Account, Accounts};
use crate::diag::Diagnostic;
use crate::host::HostGpus;
use crate::names::UnitNames;
use crate::placement::{self, Assignment, Claims};
use crate::quadlet::{finish_unit, Quadlet};
use crate::render::{self, PodmanVersion};
use crate::source::{self, Discovery};
use crate::spec::Service;
use crate::topology::Topology;
use crate::unit::{self, Kind, UnitWriter};

/// One service, ready for Quadlet.
#[derive(Clone, Debug, Serialize)]
pub struct Planned {
    pub service: Service,
    pub account: Account,
    /// The GPUs, CPUs and memory nodes it was given, when it asks for GPUs.
    pub placement: Option<Assignment>,
    /// The `.container` file.
    pub container: String,
}

/// A service whose files exist but cannot run: the reasons, every one of them.
#[derive(Clone, Debug, Serialize)]
pub struct Failed {
    pub name: String,
    pub source: PathBuf,
    pub diagnostics: Vec<Diagnostic>,
    /// Whether it gets a unit that fails with the reasons. Not when the name belongs to
    /// another unit: that one must stay as it is.
    pub unit: bool,
    /// Whether the files ask to start at boot: the failing unit is then started at boot too,
    /// so that the service shows up as failed.
    pub enable: bool,
    /// Only a warning: the sysadmin's own unit of that name wins (see [`crate::names`]).
    pub warning: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct Plan {
    pub services: Vec<Planned>,
    pub failed: Vec<Failed>,
    pub masked: Vec<(String, PathBuf)>,
    /// Files that are not services at all (bad names).
    pub problems: Vec<Diagnostic>,
}

/// Services read and checked, accounts resolved: everything but rendering, which needs the
/// podman version (the generator asks Quadlet for it meanwhile).
#[derive(Debug, Default)]
pub struct Loaded {
    pub services: Vec<(Service, Account)>,
    /// What [`place`] gave the services that ask for GPUs.
    pub placements: BTreeMap<String, Assignment>,
    pub failed: Vec<Failed>,
    pub masked: Vec<(String, PathBuf)>,
    pub problems: Vec<Diagnostic>,
}

/// Runs `f` over `items` on a few threads, keeping the order. Boot runs generators in parallel
/// with each other, so this stays small: at most 4 threads, none for small inputs.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    if threads < 2 || items.len() < 64 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            items.chunks(chunk).map(|part| scope.spawn(|| part.iter().map(&f).collect::<Vec<R>>())).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// Reads and checks every service in `dirs` and looks up their accounts. Never stops at a bad one.
pub fn load<P: AsRef<Path>>(dirs: &[P], accounts: &dyn Accounts) -> Loaded {
    load_with(dirs, accounts, &UnitNames::under(Path::new("/")))
}

/// [`load`], with the unit names that are already taken given (another root, for tests and
/// the agent).
pub fn load_with<P: AsRef<Path>>(dirs: &[P], accounts: &dyn Accounts, names: &UnitNames) -> Loaded {
    let Discovery { services, masked, problems } = source::discover(dirs);
    let mut loaded = Loaded { masked, problems, ..Loaded::default() };
    let checked = par_map(&services, source::load);
    // Many services share few accounts: look each up once.
    let mut known: BTreeMap<String, Result<Account, String>> = BTreeMap::new();
    for (files, checked) in services.into_iter().zip(checked) {
        let checked = checked.and_then(|service| {
            let account = known.entry(service.run_as.clone()).or_insert_with(|| accounts.lookup(&service.run_as));
            account.clone().map(|account| (service, account)).map_err(|why| {
                vec![Diagnostic {
                    path: files.main.clone(),
                    line: 0,
                    col: 0,
                    key: "service.run-as".into(),
                    message: why,
                }]
            })
        });
        if let Some(taken) = names.taken(&files.name) {
            let diagnostics = vec![Diagnostic::file(&files.main, taken.message(&format!("{}.service", files.name)))];
            let warning = taken.is_warning();
            loaded.failed.push(Failed {
                name: files.name,
                source: files.main,
                diagnostics,
                unit: false,
                enable: false,
                warning,
            });
            continue;
        }
        match checked {
            Ok(ok) => loaded.services.push(ok),
            Err(diagnostics) => {
                let enable = source::asks_enable(&files);
                loaded.failed.push(Failed {
                    name: files.name,
                    source: files.main,
                    diagnostics,
                    unit: true,
                    enable,
                    warning: false,
                })
            }
        }
    }
    loaded
}

/// Places the GPUs of every service that asks for some (see [`placement`]). `topology` is
/// called only then, so hosts and files without GPUs never pay for hwloc. A service that cannot
/// be placed becomes a failed one, with the reason at its `gpu.count`/`gpu.devices` key.
pub fn place(loaded: &mut Loaded, topology: impl FnOnce() -> Result<Topology, String>, claims: &Claims) {
    if !loaded.services.iter().any(|(s, _)| s.gpu.is_some()) {
        return;
    }
    let topology = topology();
    let results = match &topology {
        Ok(t) => {
            let requests: Vec<(&str, &crate::spec::Gpu)> =
                loaded.services.iter().filter_map(|(s, _)| s.gpu.as_ref().map(|g| (s.name.as_str(), g))).collect();
            placement::place(t, &requests, claims)
        }
        Err(_) => BTreeMap::new(),
    };
    let mut kept = Vec::with_capacity(loaded.services.len());
    for (service, account) in std::mem::take(&mut loaded.services) {
        let Some(gpu) = &service.gpu else {
            kept.push((service, account));
            continue;
        };
        let outcome = match &topology {
            Err(why) => Err(format!("cannot place GPUs: {why}")),
            Ok(_) => results.get(&service.name).cloned().unwrap_or_else(|| Err("not placed".into())),
        };
        match outcome {
            Ok(assignment) => {
                loaded.placements.insert(service.name.clone(), assignment);
                kept.push((service, account));
            }
            Err(why) => {
                let mut d = gpu.at.clone();
                d.message = why;
                loaded.failed.push(Failed {
                    name: service.name.clone(),
                    source: service.source.clone(),
                    diagnostics: vec![d],
                    unit: true,
                    enable: service.enable,
                    warning: false,
                });
            }
        }
    }
    loaded.services = kept;
}

/// Renders the loaded services for `podman`.
pub fn render(loaded: Loaded, podman: PodmanVersion) -> Plan {
    let Loaded { services, mut placements, mut failed, masked, problems } = loaded;
    let mut planned = Vec::with_capacity(services.len());
    for (service, account) in services {
        let placement = placements.remove(&service.name);
        match render::container(&service, &account, podman, placement.as_ref()) {
            Ok(container) => planned.push(Planned { service, account, placement, container }),
            // The format's checks use the writer's own rule, so this is a bug if it happens;
            // still, the service fails with the reason rather than getting a bent unit.
            Err(problems) => failed.push(Failed {
                name: service.name.clone(),
                diagnostics: problems.into_iter().map(|p| Diagnostic::file(&service.source, p)).collect(),
                source: service.source,
                unit: true,
                enable: service.enable,
                warning: false,
            }),
        }
    }
    failed.sort_by(|a, b| a.name.cmp(&b.name));
    Plan { services: planned, failed, masked, problems }
}

// Placement of the loaded services on the host: here, so that `host` knows nothing of the pipeline.
impl HostGpus {
    /// Places the GPUs of `loaded`; returns warnings worth logging. Reads nothing (claims,
    /// CDI specs, hwloc) when no service asks for GPUs.
    pub fn place(&self, loaded: &mut Loaded) -> Vec<String> {
        if !loaded.services.iter().any(|(s, _)| s.gpu.is_some()) {
            return Vec::new();
        }
        let (claims, claims_problem) = Claims::read(&self.claims);
        let mut warnings: Vec<String> = claims_problem.into_iter().collect();
        let topology = self.topology().map(|(t, w)| {
            warnings.extend(w);
            t
        });
        place(loaded, || topology, &claims);
        warnings
    }
}

/// Reads every service in `dirs`, places their GPUs and renders the ones that are valid. Never
/// stops at a bad one.
pub fn plan<P: AsRef<Path>>(dirs: &[P], accounts: &dyn Accounts, podman: PodmanVersion, gpus: &HostGpus) -> Plan {
    let mut loaded = load(dirs, accounts);
    gpus.place(&mut loaded);
    render(loaded, podman)
}

/// What a generator run did.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    pub generated: Vec<String>,
    pub failed: Vec<Failed>,
    pub problems: Vec<Diagnostic>,
    /// Milliseconds spent in each step, for `AICONTAINERS_TIMING`.
    #[serde(skip)]
    pub timings: Vec<(&'static str, f64)>,
}

/// Writes the units of `plan` into `out_dir` (the generator's normal directory).
///
/// Valid services become Quadlet-made units; services that failed get a unit that fails on
/// start and says why (`aictl validate --service NAME`), so `systemctl start` and
/// `systemctl status` tell the sysadmin what is wrong instead of "unit not found".
/// Long because it is the one place that orders the generator's writes (units, drop-ins, wants
/// links, failing units) for every service; each step is a call or a short loop.
pub fn write_units(plan: Plan, out_dir: &Path, quadlet: &Quadlet, aictl: &Path) -> io::Result<Outcome> {
    let mut outcome = Outcome { problems: plan.problems, ..Outcome::default() };
    // Quadlet reads our files from a private directory, `out_dir/.aicontainers-quadlet`, and
    // writes its units straight into `out_dir`; each is then finished in place (SourcePath=,
    // container-id file).
    let mut clock = std::time::Instant::now();
    let mut lap = |name: &'static str, timings: &mut Vec<(&'static str, f64)>| {
        timings.push((name, clock.elapsed().as_secs_f64() * 1e3));
        clock = std::time::Instant::now();
    };
    let input = out_dir.join(".aicontainers-quadlet");
    let output = out_dir;
    let _ = fs::remove_dir_all(&input);
    // Many services: Quadlet runs on a few shards at once (each unit depends on its own file
    // only), and each shard's units are finished while the other shards still run.
    let shards = quadlet_shards(plan.services.len());
    let chunk = plan.services.len().div_ceil(shards).max(1);
    let shard_dir = |k: usize| if shards == 1 { input.clone() } else { input.join(format!("{k}")) };
    for k in 0..shards {
        fs::create_dir_all(shard_dir(k))?;
    }
    let indexed: Vec<(usize, &Planned)> = plan.services.iter().enumerate().collect();
    par_map(&indexed, |(i, p)| {
        fs::write(shard_dir(i / chunk).join(format!("{}.container", p.service.name)), &p.container)
    })
    .into_iter()
    .collect::<io::Result<()>>()?;
    lap("write inputs", &mut outcome.timings);

    // Finish each unit Quadlet wrote: SourcePath=, the container-id file.
    let finish = |p: &Planned| -> io::Result<bool> {
        let unit_name = format!("{}.service", p.service.name);
        let Ok(unit) = fs::read_to_string(output.join(&unit_name)) else { return Ok(false) };
        let header = format!(
            "Generated by aicontainers-generator from {} by podman {}'s Quadlet.",
            p.service.source.display(),
            quadlet.version
        );
        let text = finish_unit(&unit, &p.service.source, &p.account.runtime_dir(), &header);
        // Overwritten in place: systemd reads generator output only after every generator has
        // exited, so nobody can see it half-written, and this halves the file operations.
        fs::write(output.join(&unit_name), text)?;
        Ok(true)
    };
    // If Quadlet cannot even run, every service fails with that reason below (no unit in `output`).
    let run_shard = |k: usize| -> (String, Vec<io::Result<bool>>) {
        let part = &plan.services[(k * chunk).min(plan.services.len())..((k + 1) * chunk).min(plan.services.len())];
        if part.is_empty() {
            return (String::new(), Vec::new());
        }
        let said = quadlet.run(&shard_dir(k), output).unwrap_or_else(|why| why);
        (said, part.iter().map(&finish).collect())
    };
    let results: Vec<(String, Vec<io::Result<bool>>)> = if shards == 1 {
        vec![run_shard(0)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..shards).map(|k| scope.spawn(move || run_shard(k))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
        })
    };
    // What each shard's Quadlet said stays with that shard's services.
    let mut said_by_shard = Vec::with_capacity(shards);
    let mut finished = Vec::with_capacity(plan.services.len());
    for (s, f) in results {
        said_by_shard.push(s);
        finished.extend(f);
    }
    lap("quadlet", &mut outcome.timings);
    let mut failed = plan.failed;
    for (i, (p, finished)) in plan.services.into_iter().zip(finished).enumerate() {
        let said = &said_by_shard[i / chunk];
        let name = &p.service.name;
        let unit_name = format!("{name}.service");
        if finished? {
            if p.service.enable {
                let wants = out_dir.join("multi-user.target.wants");
                fs::create_dir_all(&wants)?;
                let link = wants.join(&unit_name);
                let _ = fs::remove_file(&link);
                symlink(Path::new("..").join(&unit_name), &link)?;
            }
            outcome.generated.push(name.clone());
        } else {
            // Quadlet refused it: keep what it said about this file.
            // Quadlet names the file as "NAME.container" or .../NAME.container; its log prefix
            // carries a PID, which would make the output differ from run to run.
            let (quoted, path) = (format!("\"{name}.container\""), format!("/{name}.container"));
            let reasons: Vec<&str> = said
                .lines()
                .filter(|l| l.contains(&quoted) || l.contains(&path))
                .map(|l| l.split_once("]: ").map_or(l, |(_, rest)| rest))
                .collect();
            let message = if reasons.is_empty() {
                let all: Vec<&str> = said.lines().map(|l| l.split_once("]: ").map_or(l, |(_, rest)| rest)).collect();
                format!("podman's Quadlet produced no unit: {}", all.join("; ").trim())
            } else {
                format!("podman's Quadlet refused it: {}", reasons.join("; "))
            };
            failed.push(Failed {
                name: name.clone(),
                source: p.service.source.clone(),
                diagnostics: vec![Diagnostic::file(&p.service.source, message)],
                unit: true,
                enable: p.service.enable,
                warning: false,
            });
        }
    }
    // The inputs stay (systemd ignores the hidden directory): they show what Quadlet was given,
    // and removing a thousand files would cost as much as finishing the units.
    lap("links", &mut outcome.timings);

    failed.sort_by(|a, b| a.name.cmp(&b.name));
    for f in failed.iter().filter(|f| f.unit) {
        let unit_name = format!("{}.service", f.name);
        let text = failed_unit(f, aictl);
        replace_file(&out_dir.join(&unit_name), text.as_bytes())?;
        // Started at boot as the valid unit would have been: it fails, and shows up as failed.
        if f.enable {
            let wants = out_dir.join("multi-user.target.wants");
            fs::create_dir_all(&wants)?;
            let link = wants.join(&unit_name);
            let _ = fs::remove_file(&link);
            symlink(Path::new("..").join(&unit_name), &link)?;
        }
    }
    outcome.failed = failed;
    Ok(outcome)
}

/// How many Quadlet processes to run side by side for `services` services: one for up to 256
/// (its start costs more than it saves), then up to one per CPU, at most 4 (boot runs
/// generators in parallel with each other).
pub fn quadlet_shards(services: usize) -> usize {
    if services < 256 {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4).min(services / 128)
}

/// The unit of a service that cannot run: starting it prints the reasons and fails.
pub fn failed_unit(f: &Failed, aictl: &Path) -> String {
    let mut u = UnitWriter::new();
    u.comment(&format!(
        "Generated by aicontainers-generator: {} is not valid, so this unit only reports why.",
        f.source.display()
    ));
    for d in &f.diagnostics {
        u.comment(&format!("  {d}"));
    }
    u.section("Unit");
    u.set("Description", Kind::Text, &format!("aicontainers service {} (invalid: see its file)", f.name));
    u.set("Documentation", Kind::Text, "man:aicontainers.toml(5)");
    // A path that cannot be written as a value is left out rather than bent.
    let source = f.source.to_string_lossy();
    if unit::check(Kind::Text, &source).is_ok() {
        u.set("SourcePath", Kind::Text, &source);
    }
    u.section("Service");
    u.set("Type", Kind::Verbatim, "oneshot");
    u.words("ExecStart", &[aictl.to_string_lossy().as_ref(), "validate", "--service", &f.name]);
    // The name is a service name and the rest is ours: nothing here can fail to be written.
    u.finish().unwrap_or_else(|problems| unreachable!("failed unit of {}: {problems:?}", f.name))
}

/// Replaces `path` by renaming a complete file over it, so it is never seen half-written.
/// No fsync: generator output lives in /run (tmpfs) and is rebuilt on every daemon-reload.
pub fn replace_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, data)?;
    fs::rename(&tmp, path)
}
