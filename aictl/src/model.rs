//! `aictl model pull|ls|inspect|rm|gc`: the model cache by hand, and the pull that
//! `aicontainers-model@.service` runs (`--unit`).

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aicontainers::models::{self, Event, Limits, PullOptions, Source, Store};
use aicontainers::source::SYSTEM_DIRS;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Fetch a model into the cache (or find it there) and point its ref at it.
    ///
    /// Pulled by hand, a model is pinned: `gc` keeps it until `aictl model rm`.
    Pull {
        /// oci://HOST[:PORT]/REPO:TAG|@sha256:HEX, hf://ORG/REPO[@REV], https://.../FILE, file:///PATH
        source: String,
        /// The SHA-256 of an https:// file.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// What aicontainers-model@.service runs: SOURCE is the unit's instance unescaped (%I);
        /// a model already there is used as it is, and it is not pinned.
        #[arg(long)]
        unit: bool,
        /// Do not pin: `gc` removes the model once no service names it.
        #[arg(long)]
        no_pin: bool,
        /// At most this many bytes per second (suffixes K, M, G).
        #[arg(long, value_name = "RATE", value_parser = parse_rate)]
        limit_rate: Option<u64>,
        /// Fail rather than let the cache's blobs exceed SIZE (suffixes K, M, G; default:
        /// $AICONTAINERS_MODELS_QUOTA, which a drop-in for aicontainers-model@.service can set).
        #[arg(long, value_name = "SIZE", value_parser = parse_rate)]
        quota: Option<u64>,
        /// Fail a transfer (one file of the model) that takes longer than SECONDS (default:
        /// $AICONTAINERS_MODELS_TIMEOUT, else 6 hours); what arrived is kept for the next pull.
        #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
        timeout: Option<u64>,
        /// Fail a transfer slower than RATE bytes/s over SECONDS (default:
        /// $AICONTAINERS_MODELS_MIN_RATE, else 1K/60).
        #[arg(long, value_name = "RATE[/SECONDS]", value_parser = parse_min_rate)]
        min_rate: Option<(u64, Option<u64>)>,
        /// Print progress events and the result as JSON lines.
        #[arg(long)]
        json: bool,
        /// Pull in this process rather than through aicontainersd (what --unit, --sha256,
        /// --no-pin, --limit-rate, --quota, --timeout, --min-rate, file:// sources and
        /// $AICONTAINERS_MODELS_DIR imply,
        /// and what happens when the agent is not running).
        #[arg(long)]
        direct: bool,
    },
    /// List the models in the cache.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show one model: where it came from, what it resolved to, its files and its unit.
    Inspect {
        source: String,
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Forget a model (and its pin); its files go at the next `gc` unless another ref holds them.
    /// A model a service file names is kept unless --force.
    Rm {
        source: String,
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// Service directories to read (default: the system directories).
        #[arg(long, value_name = "DIR")]
        config: Vec<PathBuf>,
        /// Remove it even though services name it (they pull it again when their model unit
        /// next starts: `systemctl restart aicontainers-model@...`).
        #[arg(long)]
        force: bool,
    },
    /// Remove models no service file names and no pin holds, then the files no model uses.
    Gc {
        /// Service directories to read (default: the system directories).
        #[arg(long, value_name = "DIR")]
        config: Vec<PathBuf>,
        /// Collect even when a service file cannot be read (its models are then not kept).
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
}

/// A number of bytes with an optional K, M or G (1024-based) suffix; anything that would not
/// fit in 64 bits is refused rather than wrapped.
fn parse_rate(text: &str) -> Result<u64, String> {
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let mult: u64 = match unit {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        _ => return Err(format!("`{}`: the suffix is K, M or G", text.escape_debug())),
    };
    let n: u64 = digits.parse().map_err(|e: std::num::ParseIntError| match e.kind() {
        std::num::IntErrorKind::PosOverflow => format!("`{text}` is too large"),
        _ => format!("`{}` is not a number of bytes such as 50M", text.escape_debug()),
    })?;
    n.checked_mul(mult).ok_or_else(|| format!("`{text}` is too large (more than 2^64 bytes)"))
}

/// Seconds, at least 1.
fn parse_seconds(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{}` is not a number of seconds (at least 1)", text.escape_debug())),
    }
}

/// `RATE[/SECONDS]`: the minimum rate and the window it is averaged over.
fn parse_min_rate(text: &str) -> Result<(u64, Option<u64>), String> {
    match text.split_once('/') {
        Some((rate, window)) => Ok((parse_rate(rate)?, Some(parse_seconds(window)?))),
        None => Ok((parse_rate(text)?, None)),
    }
}

/// The limits of a pull by this process: the flags, else `AICONTAINERS_MODELS_TIMEOUT`,
/// `AICONTAINERS_MODELS_MIN_RATE`, `AICONTAINERS_MODELS_PARALLEL` and
/// `AICONTAINERS_MODELS_LOCK_TIMEOUT` (which a drop-in for
/// aicontainers-model@.service can set), else the defaults of [`Limits`].
fn limits(timeout: Option<u64>, min_rate: Option<(u64, Option<u64>)>) -> Result<Limits, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut limits = Limits::default();
    let timeout = match timeout {
        Some(t) => Some(t),
        None => env("AICONTAINERS_MODELS_TIMEOUT")
            .map(|v| parse_seconds(&v).map_err(|why| format!("AICONTAINERS_MODELS_TIMEOUT: {why}")))
            .transpose()?,
    };
    if let Some(t) = timeout {
        limits.deadline = Duration::from_secs(t);
    }
    let min_rate = match min_rate {
        Some(m) => Some(m),
        None => env("AICONTAINERS_MODELS_MIN_RATE")
            .map(|v| parse_min_rate(&v).map_err(|why| format!("AICONTAINERS_MODELS_MIN_RATE: {why}")))
            .transpose()?,
    };
    if let Some((rate, window)) = min_rate {
        limits.min_rate = rate;
        if let Some(w) = window {
            limits.window = Duration::from_secs(w);
        }
    }
    if let Some(v) = env("AICONTAINERS_MODELS_PARALLEL") {
        limits.parallel = match v.parse::<usize>() {
            Ok(n) if (1..=64).contains(&n) => n,
            _ => {
                return Err(format!(
                    "AICONTAINERS_MODELS_PARALLEL: `{}` is not a number from 1 to 64",
                    v.escape_debug()
                ))
            }
        };
    }
    if let Some(v) = env("AICONTAINERS_MODELS_LOCK_TIMEOUT") {
        limits.lock_wait =
            Duration::from_secs(parse_seconds(&v).map_err(|why| format!("AICONTAINERS_MODELS_LOCK_TIMEOUT: {why}"))?);
    }
    Ok(limits)
}

fn store() -> Result<Store, String> {
    let root = Store::system_root();
    let store = Store::open(&root).map_err(|e| format!("model store {}: {e}", root.display()))?;
    Ok(store.with_limits(limits(None, None)?))
}

fn parse(text: &str, sha256: Option<&str>) -> Result<Source, String> {
    Source::parse(text, sha256)
}

pub fn run(command: ModelCommand) -> Result<ExitCode, String> {
    match command {
        ModelCommand::Pull { source, sha256, unit, no_pin, limit_rate, quota, timeout, min_rate, json, direct } => {
            let source = parse(&source, sha256.as_deref())?;
            // The agent pulls by hand's defaults into the system store; anything else is done here.
            let own_store = std::env::var_os("AICONTAINERS_MODELS_DIR").is_some_and(|v| !v.is_empty());
            let own_quota = std::env::var_os("AICONTAINERS_MODELS_QUOTA").is_some_and(|v| !v.is_empty());
            let plain = !(direct || unit || no_pin || own_store || own_quota)
                && sha256.is_none()
                && limit_rate.is_none()
                && quota.is_none()
                && timeout.is_none()
                && min_rate.is_none();
            if plain && !matches!(source, Source::File { .. }) {
                if let Some(done) = crate::live::model_pull(&source.canonical(), json) {
                    return done;
                }
            }
            let quota = match quota {
                Some(q) => Some(q),
                None => match std::env::var("AICONTAINERS_MODELS_QUOTA") {
                    Ok(q) if !q.is_empty() => {
                        Some(parse_rate(&q).map_err(|why| format!("AICONTAINERS_MODELS_QUOTA: {why}"))?)
                    }
                    _ => None,
                },
            };
            let limits = limits(timeout, min_rate)?;
            let options = PullOptions { pin: !(unit || no_pin), if_missing: unit, limit_rate, quota, limits };
            pull(&source, &options, json)
        }
        ModelCommand::Ls { json } => ls(json),
        ModelCommand::Inspect { source, sha256, json } => inspect(&parse(&source, sha256.as_deref())?, json),
        ModelCommand::Rm { source, sha256, config, force } => {
            let source = parse(&source, sha256.as_deref())?;
            if !force && in_use(&config, false)?.contains(&source.canonical()) {
                return Err(format!(
                    "{source} is named by a service file: its running services keep it mounted, and its unit {} stays active, so a later start would find it missing; remove it from the services first, or --force and then `systemctl restart {}`",
                    source.unit(),
                    source.unit()
                ));
            }
            if store()?.remove(&source).map_err(|e| e.to_string())? {
                out!("removed {source} (its files go at the next `aictl model gc`)");
                Ok(ExitCode::SUCCESS)
            } else {
                Err(format!("{source} is not in the model cache"))
            }
        }
        ModelCommand::Gc { config, force, json } => gc(&config, force, json),
    }
}

// Formatting shared with the live commands (crate::size), so that live.rs needs nothing of this
// module and the two do not import each other.
pub(crate) use crate::size::{files, human};

fn short(digest: &models::Digest) -> String {
    format!("sha256:{}", &digest.hex()[..12])
}

/// Progress on a terminal: one line redrawn; elsewhere (the journal): a line per blob and
/// one every 10 seconds; with --json: every event as a JSON line.
fn pull(source: &Source, options: &PullOptions, json: bool) -> Result<ExitCode, String> {
    let store = store()?;
    let terminal = std::io::stderr().is_terminal() && !json;
    let mut last_line = Instant::now();
    let pull_started = Instant::now();
    let mut first_done: Option<u64> = None;
    let mut progress = |event: Event| {
        if json {
            if let Ok(line) = serde_json::to_string(&event) {
                out!("{line}");
            }
            return;
        }
        match &event {
            Event::Resolved { resolved, blobs, bytes, missing } => {
                let what = resolved.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
                eprintln!("{source}{what}: {blobs} blob(s), {}, {} to fetch", human(*bytes), human(*missing));
            }
            Event::BlobStart { digest, size, offset } => {
                let size = size.map(human).unwrap_or_else(|| "unknown size".into());
                if *offset > 0 {
                    eprintln!("{}: resuming at {} of {size}", short(digest), human(*offset));
                } else if !terminal {
                    eprintln!("{}: fetching {size}", short(digest));
                }
            }
            // Blobs are fetched several at a time: one line for the whole model.
            Event::Bytes { .. } => {}
            Event::Model { done, total } => {
                let rate = done.saturating_sub(first_done.unwrap_or(*done)) as f64
                    / pull_started.elapsed().as_secs_f64().max(0.001);
                first_done.get_or_insert(*done);
                let pct = if *total > 0 { format!(" {:>3}%", done.saturating_mul(100) / total) } else { String::new() };
                let line = format!("{source}: {} / {}{pct} {}/s", human(*done), human(*total), human(rate as u64));
                if terminal {
                    eprint!("\r\x1b[K{line}");
                    let _ = std::io::stderr().flush();
                } else if last_line.elapsed() >= Duration::from_secs(10) {
                    eprintln!("{line}");
                    last_line = Instant::now();
                }
            }
            Event::BlobDone { digest, transferred } => {
                if terminal {
                    eprint!("\r\x1b[K");
                }
                eprintln!("{}: verified, {} received", short(digest), human(*transferred));
            }
            Event::Extracting { digest } => eprintln!("{}: unpacking", short(digest)),
        }
    };
    let report = models::pull(&store, source, options, &mut progress).map_err(|e| format!("pulling {source}: {e}"))?;
    if json {
        out!("{}", serde_json::json!({ "event": "done", "report": report }));
    } else if report.cached {
        out!("{source}: in the cache at {} ({}, {})", report.path.display(), files(report.files), human(report.size));
    } else {
        out!(
            "{source}: ready at {} ({}, {}; {} received in {} ms{})",
            report.path.display(),
            files(report.files),
            human(report.size),
            human(report.transferred),
            report.elapsed_ms,
            if report.pinned { ", pinned" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn ls(json: bool) -> Result<ExitCode, String> {
    let store = store()?;
    let records = store.list().map_err(|e| e.to_string())?;
    if json {
        out!("{}", serde_json::to_string_pretty(&records).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    out!("{:<60} {:>10} {:>6} {:<6} TREE", "SOURCE", "SIZE", "FILES", "PINNED");
    for r in &records {
        out!(
            "{:<60} {:>10} {:>6} {:<6} {}",
            r.source,
            human(r.size),
            r.files,
            if r.pinned { "yes" } else { "no" },
            short(&r.tree)
        );
    }
    out!("store {}: {} in blobs", store.root().display(), human(store.usage().map_err(|e| e.to_string())?));
    Ok(ExitCode::SUCCESS)
}

fn inspect(source: &Source, json: bool) -> Result<ExitCode, String> {
    let store = store()?;
    let Some(found) = models::inspect(&store, source).map_err(|e| e.to_string())? else {
        return Err(format!("{source} is not in the model cache (aictl model pull {source})"));
    };
    if json {
        out!("{}", serde_json::to_string_pretty(&found).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    out!("source:   {}", found.record.source);
    out!("resolved: {}", found.record.resolved.as_deref().unwrap_or("-"));
    out!("path:     {}", found.path.display());
    out!("unit:     {}", found.unit);
    out!("tree:     {}", found.record.tree);
    out!("pinned:   {}", found.record.pinned);
    out!("files:");
    for f in &found.files {
        out!("  {:>10}  {}  {}", human(f.size), short(&f.digest), f.path);
    }
    Ok(ExitCode::SUCCESS)
}

/// The sources the service files name; a file that cannot be parsed, or whose `[[model]]` is
/// wrong, stops `gc` unless `force`.
fn in_use(dirs: &[PathBuf], force: bool) -> Result<BTreeSet<String>, String> {
    let dirs: Vec<PathBuf> =
        if dirs.is_empty() { SYSTEM_DIRS.iter().map(PathBuf::from).collect() } else { dirs.to_vec() };
    let (keep, unreadable) = aicontainers::model_use::named_by_services(&dirs);
    if !unreadable.is_empty() && !force {
        return Err(format!(
            "not collecting: these service files cannot be read, so the models they name are unknown (fix them, or --force):\n  {}",
            unreadable.join("\n  ")
        ));
    }
    Ok(keep)
}

fn gc(config: &[PathBuf], force: bool, json: bool) -> Result<ExitCode, String> {
    let keep = in_use(config, force)?;
    let store = store()?;
    let report = store.gc(&keep).map_err(|e| e.to_string())?;
    if json {
        out!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        for r in &report.refs {
            out!("removed {r}");
        }
        out!(
            "{} model(s), {} tree(s), {} blob(s), {} freed",
            report.refs.len(),
            report.trees,
            report.blobs,
            human(report.bytes)
        );
    }
    Ok(ExitCode::SUCCESS)
}
