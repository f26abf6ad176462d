//! Reading each section of a merged document into the typed service, every problem reported
//! where it was written, and checking going on after the first.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::diag::Diagnostic;
use crate::doc::{Origin, Table, Value};
use crate::unit::{self, Kind};

use super::check::*;
use super::section::*;
use super::types::*;

/// Top-level sections, and the ones reserved for later versions (parsed as errors that say so).
const TOP_KEYS: &[&str] = &["format", "service", "gpu", "resources", "health", "model", "sandbox"];
const RESERVED_TOP: &[(&str, &str)] = &[];
const SERVICE_KEYS: &[&str] = &[
    "description",
    "image",
    "command",
    "run-as",
    "environment",
    "ports",
    "volumes",
    "restart",
    "restart-delay",
    "stop-timeout",
    "enable",
    "read-only",
    "init",
];
const GPU_KEYS: &[&str] = &["devices", "count", "numa", "shared"];
const RESOURCE_KEYS: &[&str] = &["memory", "cpus", "pids"];
const HEALTH_KEYS: &[&str] = &["command", "interval", "timeout", "retries", "start-period"];
const SANDBOX_KEYS: &[&str] = &["egress", "memory", "cpus", "pids"];
/// A sandboxed service's process limit when neither `[sandbox]` nor `[resources]` sets one.
pub const SANDBOX_DEFAULT_PIDS: u64 = 512;
const MODEL_KEYS: &[&str] = &["source", "mount", "name", "sha256"];

/// Checks a merged document and builds the service. `origin` is the main file's whole-document
/// origin, where problems about missing keys are reported.
pub fn from_table(
    name: &str,
    source: PathBuf,
    drop_ins: Vec<PathBuf>,
    root: &Table,
    origin: &Origin,
    partial: bool,
) -> Result<Service, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    // Reserved sections get their own message rather than "unknown key".
    for (reserved, why) in RESERVED_TOP {
        if let Some(entry) = root.get(*reserved) {
            diags.push(entry.key_origin.error(reserved, format!("not supported by this version: {why}")));
        }
    }
    let top = Section::new("", root, TOP_KEYS, &mut diags);

    if let Some(format) = top.integer("format", i64::MIN, i64::MAX, &mut diags) {
        if format != FORMAT_VERSION {
            let origin = &root["format"].node.origin;
            diags.push(origin.error(
                "format",
                format!("format {format} is not known to this version, which reads format {FORMAT_VERSION}"),
            ));
        }
    }

    let s = read_service(&top, root, origin, partial, &mut diags);
    let gpu = top.table("gpu", &mut diags).map(|t| read_gpu(&top, t, origin, partial, &mut diags));
    let resources_table = top.table("resources", &mut diags);
    let mut resources = resources_table.map(|t| read_resources(t, &mut diags)).unwrap_or_default();
    let sandbox = top
        .table("sandbox", &mut diags)
        .map(|t| read_sandbox(name, &top, t, resources_table, &mut resources, &mut diags));
    let health = top.table("health", &mut diags).and_then(|t| read_health(&top, t, origin, partial, &mut diags));
    let models = models(&top, &s.volumes, &mut diags);
    check_exec_line(&s, health.as_ref(), &mut diags);

    if !diags.is_empty() {
        diags.sort_by(|a, b| (&a.path, a.line, a.col).cmp(&(&b.path, b.line, b.col)));
        diags.dedup();
        return Err(diags);
    }
    Ok(Service {
        name: name.to_owned(),
        source,
        drop_ins,
        description: s.description,
        image: s.image,
        command: s.command,
        run_as: s.run_as,
        environment: s.environment,
        ports: s.ports,
        volumes: s.volumes,
        restart: s.restart,
        restart_delay: s.restart_delay,
        stop_timeout: s.stop_timeout,
        enable: s.enable,
        read_only: s.read_only,
        init: s.init,
        gpu,
        resources,
        health,
        models,
        sandbox,
    })
}

/// The keys of `[service]`, read and checked.
struct ServiceKeys {
    /// Where `[service]` starts (or the file, without one): problems about the whole section.
    at: Origin,
    description: Option<String>,
    image: String,
    command: Vec<String>,
    run_as: String,
    environment: BTreeMap<String, String>,
    ports: Vec<String>,
    volumes: Vec<String>,
    restart: Restart,
    restart_delay: Option<String>,
    stop_timeout: Option<String>,
    enable: bool,
    read_only: bool,
    init: bool,
}

/// `[service]`. Long because it reads thirteen keys one after the other, each short; splitting
/// it further would only scatter them.
fn read_service(
    top: &Section<'_>,
    root: &Table,
    origin: &Origin,
    partial: bool,
    diags: &mut Vec<Diagnostic>,
) -> ServiceKeys {
    let empty = Table::new();
    let service_table = match top.table("service", diags) {
        Some(t) => t,
        None => {
            if !root.contains_key("service") && !partial {
                diags.push(start_of(origin).error("service", "missing section [service]"));
            }
            &empty
        }
    };
    let s = Section::new("service", service_table, SERVICE_KEYS, diags);
    // A drop-in is checked on its own only for what it says; what it leaves out comes from below.
    let in_service = root.contains_key("service") && !partial;
    // Missing keys of [service] are reported at its header.
    let service_origin = root.get("service").map_or_else(|| start_of(origin), |e| e.key_origin.clone());

    let description = s
        .string("description", diags)
        .filter(|(d, origin)| unit_value(Kind::Text, d, origin, "service.description", diags))
        .map(|(d, _)| d);
    let image = match s.string("image", diags) {
        Some((image, origin)) => {
            match check_image(&image) {
                Ok(()) => {
                    unit_value(Kind::Arg, &image, origin, "service.image", diags);
                }
                Err(why) => diags.push(origin.error("service.image", why)),
            }
            image
        }
        None => {
            if in_service && s.get("image").is_none() {
                diags.push(service_origin.error("service.image", "missing required key: the container image to run"));
            }
            String::new()
        }
    };
    let mut command = Vec::new();
    for (word, origin) in s.strings("command", diags).unwrap_or_default() {
        if word.is_empty() {
            diags.push(origin.error(
                "service.command",
                "an empty argument cannot be passed through a unit's command line; leave it out or give it a value",
            ));
        } else if word == ";" {
            diags.push(origin.error("service.command", "a lone `;` separates commands on a unit's command line; put it inside a shell command (\"sh\", \"-c\", \"a; b\") instead"));
        } else if unit_value(Kind::Word, &word, origin, "service.command", diags) {
            command.push(word);
        }
    }
    let run_as = match s.string("run-as", diags) {
        Some((account, origin)) => {
            if let Err(why) = check_account_name(&account) {
                diags.push(origin.error("service.run-as", why));
            }
            account
        }
        None => {
            if in_service && s.get("run-as").is_none() {
                diags.push(service_origin.error(
                    "service.run-as",
                    "missing required key: the unprivileged account that runs the container (prepare one with `aictl account prepare NAME`)",
                ));
            }
            String::new()
        }
    };

    let mut environment = BTreeMap::new();
    if let Some(env) = s.table("environment", diags) {
        for (key, entry) in env {
            let path = format!("service.environment.{key}");
            if !is_env_name(key) {
                diags.push(entry.key_origin.error(
                    &path,
                    "not a valid environment variable name (letters, digits and _, not starting with a digit)",
                ));
                continue;
            }
            match &entry.node.value {
                Value::String(v) if has_control(v) => diags.push(entry.node.origin.error(&path, CONTROL_MESSAGE)),
                Value::String(v) => {
                    if unit_value(Kind::Word, &format!("{key}={v}"), &entry.node.origin, &path, diags) {
                        environment.insert(key.clone(), v.clone());
                    }
                }
                Value::Integer(i) => {
                    environment.insert(key.clone(), i.to_string());
                }
                Value::BigInteger(i) => {
                    environment.insert(key.clone(), i.replace('_', ""));
                }
                Value::Boolean(b) => {
                    environment.insert(key.clone(), b.to_string());
                }
                other => diags
                    .push(entry.node.origin.error(&path, format!("expected a string, found {}", other.type_name()))),
            }
        }
    }

    let mut ports = Vec::new();
    for (port, origin) in s.strings("ports", diags).unwrap_or_default() {
        match check_port(&port) {
            Ok(()) if unit_value(Kind::Arg, &port, origin, "service.ports", diags) => ports.push(port),
            Ok(()) => {}
            Err(why) => diags.push(origin.error("service.ports", why)),
        }
    }
    let mut volumes = Vec::new();
    for (volume, origin) in s.strings("volumes", diags).unwrap_or_default() {
        match check_volume(&volume) {
            Ok(()) if unit_value(Kind::Arg, &volume, origin, "service.volumes", diags) => volumes.push(volume),
            Ok(()) => {}
            Err(why) => diags.push(origin.error("service.volumes", why)),
        }
    }
    let restart = s.choice("restart", Restart::ALL, Restart::name, diags).unwrap_or(Restart::No);
    let restart_delay = duration(&s, "restart-delay", diags);
    let stop_timeout = duration(&s, "stop-timeout", diags);
    let enable = s.boolean("enable", diags).unwrap_or(false);
    let read_only = s.boolean("read-only", diags).unwrap_or(false);
    let init = s.boolean("init", diags).unwrap_or(true);
    ServiceKeys {
        at: service_origin,
        description,
        image,
        command,
        run_as,
        environment,
        ports,
        volumes,
        restart,
        restart_delay,
        stop_timeout,
        enable,
        read_only,
        init,
    }
}

/// `[gpu]`: explicit devices or a count, the NUMA policy, sharing.
fn read_gpu(top: &Section<'_>, t: &Table, origin: &Origin, partial: bool, diags: &mut Vec<Diagnostic>) -> Gpu {
    let g = Section::new("gpu", t, GPU_KEYS, diags);
    let mut devices = Vec::new();
    if let Some(entry) = g.get("devices") {
        match &entry.node.value {
            Value::Array(items) => {
                for item in items {
                    match gpu_selector(&item.value) {
                        Ok(sel) if devices.contains(&sel) => {
                            diags.push(item.origin.error("gpu.devices", format!("{sel} is named twice")));
                        }
                        Ok(sel) => devices.push(sel),
                        Err(why) => diags.push(item.origin.error("gpu.devices", why)),
                    }
                }
            }
            _ => diags.push(g.type_error(
                "devices",
                &entry.node,
                "an array of GPU indexes, UUIDs, PCI addresses or CDI names",
            )),
        }
    }
    let count = g.integer("count", 1, 1024, diags).map(|c| c as u32);
    if count.is_some() && !devices.is_empty() {
        diags.push(
            t["count"]
                .key_origin
                .error("gpu.count", "set either gpu.count (placement chooses) or gpu.devices (you choose), not both"),
        );
    }
    let numa = g.choice("numa", NumaPolicy::ALL, NumaPolicy::name, diags).unwrap_or(NumaPolicy::None);
    let shared = g.boolean("shared", diags).unwrap_or(false);
    if !partial && devices.is_empty() && count.is_none() && !diags.iter().any(|d| d.key.starts_with("gpu.")) {
        diags.push(
            top.get("gpu")
                .map_or_else(|| start_of(origin), |e| e.key_origin.clone())
                .error("gpu", "[gpu] asks for no GPU: set gpu.count or gpu.devices"),
        );
    }
    let at_key = if t.contains_key("count") {
        "count"
    } else if t.contains_key("devices") {
        "devices"
    } else {
        ""
    };
    let at = match t.get(at_key) {
        Some(e) => e.key_origin.error(&format!("gpu.{at_key}"), ""),
        None => top.get("gpu").map_or_else(|| start_of(origin), |e| e.key_origin.clone()).error("gpu", ""),
    };
    Gpu { devices, count, numa, shared, at }
}

/// `[resources]`.
fn read_resources(t: &Table, diags: &mut Vec<Diagnostic>) -> Resources {
    let _ = Section::new("resources", t, RESOURCE_KEYS, diags);
    read_resources_keys("resources", t, diags)
}

/// The limit keys of `[resources]`, which `[sandbox]` takes too, read in section `prefix`
/// (unknown keys are reported by the caller's `Section`).
fn read_resources_keys(prefix: &str, t: &Table, diags: &mut Vec<Diagnostic>) -> Resources {
    let mut ignored = Vec::new();
    let r = Section::new(prefix, t, RESOURCE_KEYS, &mut ignored);
    let key = |k: &str| format!("{prefix}.{k}");
    let memory = r.string("memory", diags).and_then(|(m, origin)| match check_bytes(&m) {
        Ok(()) => Some(m),
        Err(why) => {
            diags.push(origin.error(&key("memory"), why));
            None
        }
    });
    let cpus = r.get("cpus").and_then(|e| match e.node.value {
        Value::Float(x) if (0.01..=100_000.0).contains(&x) => Some(x),
        Value::Integer(i) if (1..=100_000).contains(&i) => Some(i as f64),
        _ => {
            diags.push(
                e.node.origin.error(&key("cpus"), "expected a number of CPUs of at least 0.01, such as 2 or 0.5"),
            );
            None
        }
    });
    let pids = r.integer("pids", 1, i64::MAX, diags).map(|p| p as u64);
    Resources { memory, cpus, pids }
}

/// `[sandbox]`: the egress allowlist and the limits, which go to `resources` (a limit set in
/// both sections is refused: one place says what binds the service).
fn read_sandbox(
    name: &str,
    top: &Section<'_>,
    t: &Table,
    resources_table: Option<&Table>,
    resources: &mut Resources,
    diags: &mut Vec<Diagnostic>,
) -> Sandbox {
    use crate::sandbox::egress::{Egress, ENTRIES_MAX};
    let s = Section::new("sandbox", t, SANDBOX_KEYS, diags);
    if name.len() > crate::sandbox::NAME_MAX {
        if let Some(e) = top.get("sandbox") {
            diags.push(e.key_origin.error(
                "sandbox",
                format!(
                    "a sandboxed service's name is at most {} bytes (it names the service in kernel log lines); `{name}` has {}",
                    crate::sandbox::NAME_MAX,
                    name.len()
                ),
            ));
        }
    }
    let mut egress: Vec<Egress> = Vec::new();
    let entries = s.strings("egress", diags).unwrap_or_default();
    if entries.len() > ENTRIES_MAX {
        if let Some(e) = s.get("egress") {
            diags.push(
                e.node
                    .origin
                    .error("sandbox.egress", format!("{} entries; at most {ENTRIES_MAX} are allowed", entries.len())),
            );
        }
    }
    for (entry, origin) in entries.into_iter().take(ENTRIES_MAX) {
        match Egress::parse(&entry) {
            Ok(e) if egress.contains(&e) => {
                diags.push(origin.error("sandbox.egress", format!("`{entry}` is listed twice")))
            }
            Ok(e) => egress.push(e),
            Err(why) => diags.push(origin.error("sandbox.egress", why)),
        }
    }
    let limits = read_resources_keys("sandbox", t, diags);
    let twice = |key: &str, diags: &mut Vec<Diagnostic>| {
        if let (Some(e), true) = (t.get(key), resources_table.is_some_and(|r| r.contains_key(key))) {
            diags.push(e.key_origin.error(
                &format!("sandbox.{key}"),
                format!("resources.{key} is set too: set the limit in one of the two sections"),
            ));
        }
    };
    for key in ["memory", "cpus", "pids"] {
        twice(key, diags);
    }
    resources.memory = resources.memory.take().or(limits.memory);
    resources.cpus = resources.cpus.or(limits.cpus);
    resources.pids = resources.pids.or(limits.pids).or(Some(SANDBOX_DEFAULT_PIDS));
    Sandbox { egress }
}

/// `[health]`: the check command and its schedule.
fn read_health(
    top: &Section<'_>,
    t: &Table,
    origin: &Origin,
    partial: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<Health> {
    let h = Section::new("health", t, HEALTH_KEYS, diags);
    let command = h
        .string("command", diags)
        .filter(|(c, origin)| unit_value(Kind::Word, &format!("--health-cmd={c}"), origin, "health.command", diags));
    if !partial && command.is_none() && h.get("command").is_none() {
        diags.push(
            top.get("health")
                .map_or_else(|| start_of(origin), |e| e.key_origin.clone())
                .error("health.command", "missing required key: the command that checks the service"),
        );
    }
    let interval = duration(&h, "interval", diags);
    let timeout = duration(&h, "timeout", diags);
    let start_period = duration(&h, "start-period", diags);
    let retries = h.integer("retries", 1, 1000, diags).map(|r| r as u32);
    command.map(|(command, _)| Health { command, interval, timeout, retries, start_period })
}

/// Quadlet puts the command, environment, ports and volumes on one `ExecStart=` line, which
/// systemd reads only up to its limit: refused at validate time rather than at start.
fn check_exec_line(s: &ServiceKeys, health: Option<&Health>, diags: &mut Vec<Diagnostic>) {
    // Quadlet puts all of these on one ExecStart= line, which systemd reads only up to its limit.
    let exec_line: usize = s
        .command
        .iter()
        .chain(&s.ports)
        .chain(&s.volumes)
        .chain(std::iter::once(&s.image))
        .chain(health.iter().map(|h| &h.command))
        .map(|w| unit::escape(Kind::Word, w).len() + 16)
        .chain(s.environment.iter().map(|(k, v)| unit::escape(Kind::Word, &format!("{k}={v}")).len() + 16))
        .sum();
    if exec_line + EXEC_LINE_RESERVE >= unit::LONG_LINE_MAX {
        diags.push(s.at.error(
            "service",
            format!(
                "the command, environment, ports and volumes make a podman command line of about {} bytes, longer than systemd reads in one unit line ({} bytes)",
                exec_line + EXEC_LINE_RESERVE,
                unit::LONG_LINE_MAX
            ),
        ));
    }
}

/// Only the `[[model]]` entries of a document, with only their own mistakes.
pub fn models_only(root: &Table) -> Result<Vec<Model>, Vec<Diagnostic>> {
    let mut ignored = Vec::new();
    let top = Section::new("", root, TOP_KEYS, &mut ignored);
    let mut diags = Vec::new();
    let found = models(&top, &[], &mut diags);
    if diags.is_empty() {
        Ok(found)
    } else {
        Err(diags)
    }
}

/// `[[model]]`: each entry's source, mount point and name, checked. Long because each of the four
/// keys has its own refusals, read one after the other.
fn models(top: &Section<'_>, volumes: &[String], diags: &mut Vec<Diagnostic>) -> Vec<Model> {
    let Some(entry) = top.get("model") else { return Vec::new() };
    let Value::Array(items) = &entry.node.value else {
        diags.push(
            entry
                .key_origin
                .error("model", "write each model as an array of tables: [[model]] (two brackets), one per model"),
        );
        return Vec::new();
    };
    let mut out: Vec<Model> = Vec::new();
    for item in items {
        let Value::Table(t) = &item.value else {
            diags.push(
                item.origin.error("model", format!("expected a [[model]] table, found {}", item.value.type_name())),
            );
            continue;
        };
        let m = Section::new("model", t, MODEL_KEYS, diags);
        let sha256 = m.string("sha256", diags);
        let source = match m.string("source", diags) {
            Some((text, origin)) => {
                match crate::models::Source::parse(&text, sha256.as_ref().map(|(s, _)| s.as_str())) {
                    Ok(source) => {
                        if let (Some((_, at)), false) = (&sha256, matches!(source, crate::models::Source::Https { .. }))
                        {
                            diags.push(at.error("model.sha256", "only https:// sources take a sha256 pin (oci:// pins with @sha256:, hf:// with @REVISION)"));
                        }
                        Some(source)
                    }
                    Err(why) => {
                        diags.push(origin.error("model.source", why));
                        None
                    }
                }
            }
            None => {
                if m.get("source").is_none() {
                    diags.push(item.origin.error(
                        "model.source",
                        "missing required key: where the model comes from (oci://, hf://, https://, file://)",
                    ));
                }
                None
            }
        };
        let mount =
            match m.string("mount", diags) {
                Some((mount, origin)) => match check_mount(&mount) {
                    Ok(())
                        if out.iter().any(|o| o.mount == mount)
                            || volumes.iter().any(|v| v.split(':').nth(1) == Some(mount.as_str())) =>
                    {
                        diags.push(origin.error(
                            "model.mount",
                            format!("`{mount}` is already mounted (by another model or a volume)"),
                        ));
                        None
                    }
                    Ok(()) => Some(mount),
                    Err(why) => {
                        diags.push(origin.error("model.mount", why));
                        None
                    }
                },
                None => {
                    if m.get("mount").is_none() {
                        diags.push(item.origin.error(
                            "model.mount",
                            "missing required key: the absolute path inside the container where the model appears",
                        ));
                    }
                    None
                }
            };
        let name = m.string("name", diags).and_then(|(name, origin)| {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                diags.push(origin.error(
                    "model.name",
                    format!("`{name}` is not a model name (letters, digits, `.`, `_`, `-`, at most 64)"),
                ));
                None
            } else if out.iter().any(|o| o.name == name) {
                diags.push(origin.error("model.name", format!("`{name}` names two models")));
                None
            } else {
                Some(name)
            }
        });
        if let (Some(source), Some(mount)) = (source, mount) {
            let name = name.unwrap_or_else(|| source.short_name());
            out.push(Model { name, source, mount });
        }
    }
    out
}
