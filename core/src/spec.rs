//! The service format, version 1: the typed form of a (merged) service file, and the checks that
//! turn a spanned TOML table into it.
//!
//! Every check reports at the place the offending key was written, in whichever layer that was,
//! and checking goes on after the first problem so a sysadmin sees every mistake in one run.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::diag::{suggest, Diagnostic};
use crate::doc::{Entry, Node, Origin, Table, Value};
use crate::unit::{self, Kind};

/// The only format version this build reads.
pub const FORMAT_VERSION: i64 = 1;

/// Top-level sections, and the ones reserved for later versions (parsed as errors that say so).
const TOP_KEYS: &[&str] = &["format", "service", "gpu", "resources", "health", "model"];
/// Top-level keys that are neither valid nor unknown: reported by `RESERVED_TOP`.
const RESERVED_NAMES: &[&str] = &["sandbox"];
const RESERVED_TOP: &[(&str, &str)] = &[("sandbox", "agent sandboxes are planned for a later version of aicontainers")];
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
const MODEL_KEYS: &[&str] = &["source", "mount", "name", "sha256"];

/// One `[[model]]`: a model from the cache, mounted read-only (see `crate::models`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Model {
    /// `name`, or the last part of the source.
    pub name: String,
    pub source: crate::models::Source,
    /// Absolute path inside the container.
    pub mount: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    No,
    OnFailure,
    Always,
}

impl Restart {
    const NAMES: &'static [&'static str] = &["no", "on-failure", "always"];

    /// The `Restart=` value of systemd.service(5).
    pub fn as_systemd(self) -> &'static str {
        match self {
            Restart::No => "no",
            Restart::OnFailure => "on-failure",
            Restart::Always => "always",
        }
    }
}

/// Kubernetes Topology Manager policies, with their meaning there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NumaPolicy {
    None,
    BestEffort,
    Restricted,
    SingleNumaNode,
}

impl NumaPolicy {
    const NAMES: &'static [&'static str] = &["none", "best-effort", "restricted", "single-numa-node"];
}

impl NumaPolicy {
    pub fn name(self) -> &'static str {
        match self {
            NumaPolicy::None => "none",
            NumaPolicy::BestEffort => "best-effort",
            NumaPolicy::Restricted => "restricted",
            NumaPolicy::SingleNumaNode => "single-numa-node",
        }
    }
}

/// One GPU named in `gpu.devices`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpuSelector {
    /// `0`: the host's GPU of that index (PCI bus order, as `nvidia-smi` numbers them).
    Index(u32),
    /// `GPU-4f8a…`: by NVIDIA UUID.
    Uuid(String),
    /// `0000:41:00.0`: by PCI address.
    Pci(String),
    /// `nvidia.com/gpu=0`: a CDI device name, handed to podman as it is.
    Cdi(String),
}

impl std::fmt::Display for GpuSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GpuSelector::Index(i) => write!(f, "GPU {i}"),
            GpuSelector::Uuid(s) | GpuSelector::Pci(s) | GpuSelector::Cdi(s) => write!(f, "{s}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gpu {
    /// Explicit GPUs.
    pub devices: Vec<GpuSelector>,
    /// Or a number of GPUs that placement chooses.
    pub count: Option<u32>,
    pub numa: NumaPolicy,
    /// Whether this service may share its GPUs with other services that say the same.
    pub shared: bool,
    /// Where the request is written (`gpu.count` or `gpu.devices`), for placement's messages.
    #[serde(skip)]
    pub at: Diagnostic,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Resources {
    /// systemd byte size (`24G`), applied as `MemoryMax=` on the unit that holds the container.
    pub memory: Option<String>,
    /// CPU time in CPUs (`2.5`), applied as `CPUQuota=`.
    pub cpus: Option<f64>,
    /// Process limit, applied as `TasksMax=`.
    pub pids: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Health {
    pub command: String,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    pub start_period: Option<String>,
}

/// One service, as every layer of its files together describe it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Service {
    /// The unit name without `.service`, taken from the file name.
    pub name: String,
    /// The main file (what `SourcePath=` names).
    pub source: PathBuf,
    /// Drop-ins applied on top of it, in order.
    pub drop_ins: Vec<PathBuf>,
    pub description: Option<String>,
    pub image: String,
    pub command: Vec<String>,
    pub run_as: String,
    pub environment: BTreeMap<String, String>,
    pub ports: Vec<String>,
    pub volumes: Vec<String>,
    pub restart: Restart,
    pub restart_delay: Option<String>,
    pub stop_timeout: Option<String>,
    pub enable: bool,
    pub read_only: bool,
    pub init: bool,
    pub gpu: Option<Gpu>,
    pub resources: Resources,
    pub health: Option<Health>,
    /// `[[model]]` entries, in file order.
    pub models: Vec<Model>,
}

/// Reads the keys of one table, remembering which were used so the rest can be reported.
struct Section<'a> {
    prefix: String,
    table: &'a Table,
    known: &'static [&'static str],
}

impl<'a> Section<'a> {
    fn new(prefix: &str, table: &'a Table, known: &'static [&'static str], diags: &mut Vec<Diagnostic>) -> Self {
        for (key, entry) in table {
            let reserved = prefix.is_empty() && RESERVED_NAMES.contains(&key.as_str());
            if !known.contains(&key.as_str()) && !reserved {
                let path = join(prefix, key);
                let mut message = format!("unknown key `{key}`");
                if let Some(near) = suggest(key, known.iter().copied()) {
                    message.push_str(&format!("; did you mean `{near}`?"));
                } else {
                    let section = if prefix.is_empty() { "the top level".to_owned() } else { format!("[{prefix}]") };
                    message.push_str(&format!("; keys valid in {section}: {}", known.join(", ")));
                }
                diags.push(entry.key_origin.error(&path, message));
            }
        }
        Section { prefix: prefix.to_owned(), table, known }
    }

    fn path(&self, key: &str) -> String {
        debug_assert!(self.known.contains(&key), "{key} is not declared for [{}]", self.prefix);
        join(&self.prefix, key)
    }

    fn get(&self, key: &str) -> Option<&'a Entry> {
        self.table.get(key)
    }

    fn type_error(&self, key: &str, node: &Node, expected: &str) -> Diagnostic {
        node.origin.error(&self.path(key), format!("expected {expected}, found {}", node.value.type_name()))
    }

    fn string(&self, key: &str, diags: &mut Vec<Diagnostic>) -> Option<(String, &'a Origin)> {
        let entry = self.get(key)?;
        match &entry.node.value {
            Value::String(s) if has_control(s) => {
                diags.push(entry.node.origin.error(&self.path(key), CONTROL_MESSAGE));
                None
            }
            Value::String(s) => Some((s.clone(), &entry.node.origin)),
            _ => {
                diags.push(self.type_error(key, &entry.node, "a string"));
                None
            }
        }
    }

    fn boolean(&self, key: &str, diags: &mut Vec<Diagnostic>) -> Option<bool> {
        let entry = self.get(key)?;
        match entry.node.value {
            Value::Boolean(b) => Some(b),
            _ => {
                diags.push(self.type_error(key, &entry.node, "true or false"));
                None
            }
        }
    }

    fn integer(&self, key: &str, min: i64, max: i64, diags: &mut Vec<Diagnostic>) -> Option<i64> {
        let entry = self.get(key)?;
        match entry.node.value {
            Value::Integer(i) if (min..=max).contains(&i) => Some(i),
            Value::Integer(i) => {
                diags.push(entry.node.origin.error(&self.path(key), format!("{i} is out of range {min}..={max}")));
                None
            }
            Value::BigInteger(ref i) => {
                diags.push(entry.node.origin.error(&self.path(key), format!("{i} is out of range {min}..={max}")));
                None
            }
            _ => {
                diags.push(self.type_error(key, &entry.node, "an integer"));
                None
            }
        }
    }

    fn strings(&self, key: &str, diags: &mut Vec<Diagnostic>) -> Option<Vec<(String, &'a Origin)>> {
        let entry = self.get(key)?;
        let Value::Array(items) = &entry.node.value else {
            diags.push(self.type_error(key, &entry.node, "an array of strings"));
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match &item.value {
                Value::String(s) if has_control(s) => diags.push(item.origin.error(&self.path(key), CONTROL_MESSAGE)),
                Value::String(s) => out.push((s.clone(), &item.origin)),
                other => diags.push(item.origin.error(
                    &self.path(key),
                    format!("expected an array of strings, found {} in it", other.type_name()),
                )),
            }
        }
        Some(out)
    }

    fn choice<T: Copy>(
        &self,
        key: &str,
        names: &[&'static str],
        values: &[T],
        diags: &mut Vec<Diagnostic>,
    ) -> Option<T> {
        let (s, origin) = self.string(key, diags)?;
        if let Some(i) = names.iter().position(|n| *n == s) {
            return Some(values[i]);
        }
        let mut message = format!("`{s}` is not one of {}", names.join(", "));
        if let Some(near) = suggest(&s, names.iter().copied()) {
            message.push_str(&format!("; did you mean `{near}`?"));
        }
        diags.push(origin.error(&self.path(key), message));
        None
    }

    fn table(&self, key: &str, diags: &mut Vec<Diagnostic>) -> Option<&'a Table> {
        let entry = self.get(key)?;
        match &entry.node.value {
            Value::Table(t) => Some(t),
            _ => {
                diags.push(self.type_error(key, &entry.node, "a table"));
                None
            }
        }
    }
}

/// What the fixed part of the podman command Quadlet writes takes, at most (options, paths,
/// models, devices), on top of the values of the file.
const EXEC_LINE_RESERVE: usize = 16 * 1024;

/// Whether `value` can be written to a unit as `kind` ([`crate::unit::check`], the writer's own
/// rule); if not, says why at `origin`.
fn unit_value(kind: Kind, value: &str, origin: &Origin, key: &str, diags: &mut Vec<Diagnostic>) -> bool {
    match unit::check(kind, value) {
        Ok(()) => true,
        Err(why) => {
            diags.push(origin.error(key, format!("{}: {why}", shown(value))));
            false
        }
    }
}

/// A value quoted for a message, cut short when long.
fn shown(value: &str) -> String {
    const MAX: usize = 80;
    match value.char_indices().nth(MAX) {
        Some((at, _)) => format!("{:?}... ({} bytes)", &value[..at], value.len()),
        None => format!("{value:?}"),
    }
}

const CONTROL_MESSAGE: &str = "contains a control character (NUL, escape, ...): only tab and newline are allowed";

/// Control characters other than tab and newline cannot survive a unit file.
fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\t' && c != '\n')
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

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
    let visible = root;

    if let Some(format) = top.integer("format", i64::MIN, i64::MAX, &mut diags) {
        if format != FORMAT_VERSION {
            let origin = &visible["format"].node.origin;
            diags.push(origin.error(
                "format",
                format!("format {format} is not known to this version, which reads format {FORMAT_VERSION}"),
            ));
        }
    }

    let empty = Table::new();
    let service_table = match top.table("service", &mut diags) {
        Some(t) => t,
        None => {
            if !visible.contains_key("service") && !partial {
                diags.push(start_of(origin).error("service", "missing section [service]"));
            }
            &empty
        }
    };
    let s = Section::new("service", service_table, SERVICE_KEYS, &mut diags);
    // A drop-in is checked on its own only for what it says; what it leaves out comes from below.
    let in_service = visible.contains_key("service") && !partial;
    // Missing keys of [service] are reported at its header.
    let service_origin = visible.get("service").map_or_else(|| start_of(origin), |e| e.key_origin.clone());

    let description = s
        .string("description", &mut diags)
        .filter(|(d, origin)| unit_value(Kind::Text, d, origin, "service.description", &mut diags))
        .map(|(d, _)| d);
    let image = match s.string("image", &mut diags) {
        Some((image, origin)) => {
            match check_image(&image) {
                Ok(()) => {
                    unit_value(Kind::Arg, &image, origin, "service.image", &mut diags);
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
    for (word, origin) in s.strings("command", &mut diags).unwrap_or_default() {
        if word.is_empty() {
            diags.push(origin.error(
                "service.command",
                "an empty argument cannot be passed through a unit's command line; leave it out or give it a value",
            ));
        } else if word == ";" {
            diags.push(origin.error("service.command", "a lone `;` separates commands on a unit's command line; put it inside a shell command (\"sh\", \"-c\", \"a; b\") instead"));
        } else if unit_value(Kind::Word, &word, origin, "service.command", &mut diags) {
            command.push(word);
        }
    }
    let run_as = match s.string("run-as", &mut diags) {
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
    if let Some(env) = s.table("environment", &mut diags) {
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
                    if unit_value(Kind::Word, &format!("{key}={v}"), &entry.node.origin, &path, &mut diags) {
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
    for (port, origin) in s.strings("ports", &mut diags).unwrap_or_default() {
        match check_port(&port) {
            Ok(()) if unit_value(Kind::Arg, &port, origin, "service.ports", &mut diags) => ports.push(port),
            Ok(()) => {}
            Err(why) => diags.push(origin.error("service.ports", why)),
        }
    }
    let mut volumes = Vec::new();
    for (volume, origin) in s.strings("volumes", &mut diags).unwrap_or_default() {
        match check_volume(&volume) {
            Ok(()) if unit_value(Kind::Arg, &volume, origin, "service.volumes", &mut diags) => volumes.push(volume),
            Ok(()) => {}
            Err(why) => diags.push(origin.error("service.volumes", why)),
        }
    }
    let restart = s
        .choice("restart", Restart::NAMES, &[Restart::No, Restart::OnFailure, Restart::Always], &mut diags)
        .unwrap_or(Restart::No);
    let restart_delay = duration(&s, "restart-delay", &mut diags);
    let stop_timeout = duration(&s, "stop-timeout", &mut diags);
    let enable = s.boolean("enable", &mut diags).unwrap_or(false);
    let read_only = s.boolean("read-only", &mut diags).unwrap_or(false);
    let init = s.boolean("init", &mut diags).unwrap_or(true);

    let gpu =
        top.table("gpu", &mut diags).map(|t| {
            let g = Section::new("gpu", t, GPU_KEYS, &mut diags);
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
            let count = g.integer("count", 1, 1024, &mut diags).map(|c| c as u32);
            if count.is_some() && !devices.is_empty() {
                diags.push(t["count"].key_origin.error(
                    "gpu.count",
                    "set either gpu.count (placement chooses) or gpu.devices (you choose), not both",
                ));
            }
            let numa = g
                .choice(
                    "numa",
                    NumaPolicy::NAMES,
                    &[NumaPolicy::None, NumaPolicy::BestEffort, NumaPolicy::Restricted, NumaPolicy::SingleNumaNode],
                    &mut diags,
                )
                .unwrap_or(NumaPolicy::None);
            let shared = g.boolean("shared", &mut diags).unwrap_or(false);
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
        });

    let resources = top
        .table("resources", &mut diags)
        .map(|t| {
            let r = Section::new("resources", t, RESOURCE_KEYS, &mut diags);
            let memory = r.string("memory", &mut diags).and_then(|(m, origin)| match check_bytes(&m) {
                Ok(()) => Some(m),
                Err(why) => {
                    diags.push(origin.error("resources.memory", why));
                    None
                }
            });
            let cpus = r.get("cpus").and_then(|e| match e.node.value {
                Value::Float(x) if (0.01..=100_000.0).contains(&x) => Some(x),
                Value::Integer(i) if (1..=100_000).contains(&i) => Some(i as f64),
                _ => {
                    diags.push(
                        e.node
                            .origin
                            .error("resources.cpus", "expected a number of CPUs of at least 0.01, such as 2 or 0.5"),
                    );
                    None
                }
            });
            let pids = r.integer("pids", 1, i64::MAX, &mut diags).map(|p| p as u64);
            Resources { memory, cpus, pids }
        })
        .unwrap_or_default();

    let health = top.table("health", &mut diags).and_then(|t| {
        let h = Section::new("health", t, HEALTH_KEYS, &mut diags);
        let command = h.string("command", &mut diags).filter(|(c, origin)| {
            unit_value(Kind::Word, &format!("--health-cmd={c}"), origin, "health.command", &mut diags)
        });
        if !partial && command.is_none() && h.get("command").is_none() {
            diags.push(
                top.get("health")
                    .map_or_else(|| start_of(origin), |e| e.key_origin.clone())
                    .error("health.command", "missing required key: the command that checks the service"),
            );
        }
        let interval = duration(&h, "interval", &mut diags);
        let timeout = duration(&h, "timeout", &mut diags);
        let start_period = duration(&h, "start-period", &mut diags);
        let retries = h.integer("retries", 1, 1000, &mut diags).map(|r| r as u32);
        command.map(|(command, _)| Health { command, interval, timeout, retries, start_period })
    });

    let models = models(&top, &volumes, &mut diags);

    // Quadlet puts all of these on one ExecStart= line, which systemd reads only up to its limit.
    let exec_line: usize = command
        .iter()
        .chain(&ports)
        .chain(&volumes)
        .chain(std::iter::once(&image))
        .chain(health.iter().map(|h| &h.command))
        .map(|w| unit::escape(Kind::Word, w).len() + 16)
        .chain(environment.iter().map(|(k, v)| unit::escape(Kind::Word, &format!("{k}={v}")).len() + 16))
        .sum();
    if exec_line + EXEC_LINE_RESERVE >= unit::LONG_LINE_MAX {
        diags.push(service_origin.error(
            "service",
            format!(
                "the command, environment, ports and volumes make a podman command line of about {} bytes, longer than systemd reads in one unit line ({} bytes)",
                exec_line + EXEC_LINE_RESERVE,
                unit::LONG_LINE_MAX
            ),
        ));
    }

    if !diags.is_empty() {
        diags.sort_by(|a, b| (&a.path, a.line, a.col).cmp(&(&b.path, b.line, b.col)));
        diags.dedup();
        return Err(diags);
    }
    Ok(Service {
        name: name.to_owned(),
        source,
        drop_ins,
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
        gpu,
        resources,
        health,
        models,
    })
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

/// `[[model]]`: each entry's source, mount point and name, checked.
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

/// A model's mount point: absolute, normalised, one line, and not a place podman needs.
fn check_mount(mount: &str) -> Result<(), String> {
    let bad = !mount.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+@".contains(&b))
        || !mount.starts_with('/')
        || mount == "/"
        || mount.ends_with('/')
        || mount.split('/').skip(1).any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(format!("`{mount}`: expected an absolute path inside the container such as /models/mistral (letters, digits and `/._-+@`; no `..` or trailing `/`)"));
    }
    const SYSTEM: &[&str] =
        &["/proc", "/sys", "/dev", "/etc", "/run", "/tmp", "/usr", "/bin", "/sbin", "/lib", "/lib64"];
    if SYSTEM.contains(&mount) {
        return Err(format!("`{mount}` would hide a directory the container needs; mount models under a directory of their own such as /models"));
    }
    Ok(())
}

fn start_of(origin: &Origin) -> Origin {
    Origin { file: origin.file.clone(), span: 0..0 }
}

fn duration(section: &Section<'_>, key: &str, diags: &mut Vec<Diagnostic>) -> Option<String> {
    let (value, origin) = section.string(key, diags)?;
    match parse_duration(&value) {
        Ok(_) => Some(value),
        Err(why) => {
            diags.push(origin.error(&section.path(key), why));
            None
        }
    }
}

/// A service name is a unit name without `.service`: what `systemctl start NAME` takes.
/// A service name is a unit name without `.service` (what `systemctl start NAME` takes) and the
/// container's name, so it follows podman's rule for names: `[A-Za-z0-9][A-Za-z0-9_.-]*`.
pub fn check_service_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 200
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` cannot be a service name: start with a letter or digit, then letters, digits, `-`, `_` and `.` (the name becomes the unit {name}.service and the container {name})"
        ))
    }
}

fn check_account_name(name: &str) -> Result<(), String> {
    if name == "root" {
        return Err("services run rootless: name an unprivileged account, not root".into());
    }
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b))
        && !name.starts_with(|c: char| c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not a valid account name (lower-case letters, digits, `-` and `_`, at most 32)"))
    }
}

/// An image reference as podman parses it (containers/image `docker/reference`, the
/// distribution grammar): `[DOMAIN[:PORT]/]PATH[:TAG][@DIGEST]`, path components of lower-case
/// letters and digits joined by `.`, `_`, `__` or dashes, a tag of at most 128 word characters,
/// `.` and `-` (not starting with `.` or `-`), a `sha256:` or `sha512:` digest, at most 255
/// characters of name. Names Quadlet reads as its own `.image` and `.build` units are refused.
fn check_image(image: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!("`{image}` is not an image reference: {why} (such as `localhost/llama-server:latest` or `registry.example/org/name@sha256:...`)"))
    };
    if image.ends_with(".image") || image.ends_with(".build") {
        return bad("podman's Quadlet takes a name ending in .image or .build for one of its own units, which services cannot use");
    }
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let ok = match digest.split_once(':') {
            Some(("sha256", hex)) => hex.len() == 64,
            Some(("sha512", hex)) => hex.len() == 128,
            _ => false,
        } && digest.bytes().skip(7).all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return bad("the digest must be sha256: and 64, or sha512: and 128, lower-case hex digits");
        }
    }
    // The tag follows the last `:` after the last `/` (a `:` before it is the registry's port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            && !tag.starts_with(['.', '-']);
        if !ok {
            return bad("a tag is 1 to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`");
        }
    }
    if name.is_empty() || name.len() > 255 {
        return bad("the name must be 1 to 255 characters");
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // The first part is a registry when it looks like a host: a `.`, a `:` or `localhost`.
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let domain = parts.remove(0);
        let (host, port) = match domain.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (host, Some(port)),
            _ => (domain, None),
        };
        if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
            return bad("the registry's port must be digits");
        }
        let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            v6.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            host.split('.').all(|label| {
                !label.is_empty()
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
        };
        if !host_ok {
            return bad("the registry is not a host name");
        }
    }
    for part in parts {
        if !path_component(part) {
            return bad(&format!(
                "`{part}` is not a repository path component (lower-case letters and digits, joined by `.`, `_`, `__` or `-`)"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn path_component(part: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = part.as_bytes();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
            return false;
        }
    }
    true
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

/// `[[IP:]HOSTPORT:]CONTAINERPORT[/PROTO]`, as podman parses `--publish` (Quadlet's
/// `PublishPort=`; podman's `specgenutil.CreatePortBindings`): an IPv6 address in brackets,
/// ports 1-65535, ranges `START-END` with END above START and a host range as long as the
/// container range, an empty host port (`IP::PORT`) for podman to choose, protocols `tcp`,
/// `udp` and `sctp` (several with commas).
fn check_port(spec: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!("`{spec}`: {why} (expected [IP:]HOSTPORT:CONTAINERPORT[/tcp|udp], such as 127.0.0.1:8080:8080)"))
    };
    let (rest, proto) = match spec.split_once('/') {
        Some((rest, proto)) => (rest, Some(proto)),
        None => (spec, None),
    };
    if let Some(proto) = proto {
        let names: Vec<&str> = proto.split(',').collect();
        if names.iter().any(|p| !["tcp", "udp", "sctp"].contains(p)) {
            return bad("the protocol must be tcp, udp or sctp (or several, joined by commas)");
        }
        if (1..names.len()).any(|i| names[..i].contains(&names[i])) {
            return bad("a protocol is named twice");
        }
    }
    // An IPv6 address is written in brackets: [::1]:8080:8080.
    let (ip, ports): (Option<&str>, Vec<&str>) = if let Some(stripped) = rest.strip_prefix('[') {
        match stripped.split_once("]:") {
            Some((ip, ports)) if !ip.contains(']') => match ports.split(':').collect::<Vec<_>>() {
                p if p.len() == 2 => (Some(ip), p),
                _ => return bad("with an IPv6 address, write [ADDR]:HOSTPORT:CONTAINERPORT"),
            },
            _ => return bad("an IPv6 address must be written as [ADDR]:HOSTPORT:CONTAINERPORT"),
        }
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (None, parts),
            3 => (Some(parts[0]), parts[1..].to_vec()),
            _ => return bad("too many `:` (an IPv6 address goes in brackets)"),
        }
    };
    if let Some(ip) = ip {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return bad(&format!("`{ip}` is not an IP address"));
        }
    }
    let range = |part: &str| -> Result<u32, String> {
        let numbers: Vec<&str> = part.split('-').collect();
        let port = |p: &str| match p.parse::<u16>() {
            Ok(n @ 1..) if p.bytes().all(|b| b.is_ascii_digit()) => Ok(u32::from(n)),
            _ => Err(format!("`{part}` is not a port number (1-65535) or range")),
        };
        match numbers.as_slice() {
            [one] => port(one).map(|_| 1),
            [start, end] => {
                let (start, end) = (port(start)?, port(end)?);
                if end <= start {
                    return Err(format!("`{part}`: the end of a range must be above its start"));
                }
                Ok(end - start + 1)
            }
            _ => Err(format!("`{part}` is not a port number (1-65535) or range")),
        }
    };
    let container = ports.last().copied().unwrap_or_default();
    let container_len = match range(container) {
        Ok(n) => n,
        Err(why) => return bad(&why),
    };
    if ports.len() == 2 && !ports[0].is_empty() {
        match range(ports[0]) {
            Ok(n) if n != container_len => {
                return bad(&format!("the host range has {n} ports and the container range {container_len}"))
            }
            Ok(_) => {}
            Err(why) => return bad(&why),
        }
    }
    Ok(())
}

fn check_volume(spec: &str) -> Result<(), String> {
    if spec.contains(['\n', '\t']) {
        return Err(format!("{spec:?}: a volume must be on one line, without tabs"));
    }
    let parts: Vec<&str> = spec.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(format!("`{spec}`: expected SOURCE:PATH[:OPTIONS], such as /srv/models:/models:ro"));
    }
    if !parts[1].starts_with('/') {
        return Err(format!("`{spec}`: the path inside the container must be absolute"));
    }
    let source = parts[0];
    if source.starts_with('/') {
        return Ok(());
    }
    if source.ends_with(".volume") || source.ends_with(".image") {
        return Err(format!("`{spec}`: Quadlet `.volume`/`.image` units are not available to services; use a host path or a podman volume name"));
    }
    let named = source.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && source.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !named {
        return Err(format!("`{spec}`: the source must be an absolute host path or a podman volume name (relative paths have no meaning here)"));
    }
    Ok(())
}

/// One entry of `gpu.devices`: an index, a `GPU-` UUID, a PCI address or a CDI name.
fn gpu_selector(value: &Value) -> Result<GpuSelector, String> {
    match value {
        Value::Integer(i) if (0..=1023).contains(i) => Ok(GpuSelector::Index(*i as u32)),
        Value::Integer(i) => Err(format!("{i} is not a GPU index (0..=1023)")),
        Value::String(s) if s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty() => s
            .parse::<u32>()
            .ok()
            .filter(|i| *i <= 1023)
            .map(GpuSelector::Index)
            .ok_or_else(|| format!("{s} is not a GPU index (0..=1023)")),
        Value::String(s) if s.starts_with("MIG-") => {
            Err(format!("`{s}` is a MIG slice: name it by its CDI name (such as nvidia.com/gpu=0:1)"))
        }
        Value::String(s) if s.starts_with("GPU-") => {
            if s.len() > 4 && s[4..].chars().all(|c| c.is_ascii_hexdigit() || c == '-' || c == '/') {
                Ok(GpuSelector::Uuid(s.clone()))
            } else {
                Err(format!("`{s}` is not a GPU UUID (GPU- and hex digits, as `nvidia-smi -L` prints)"))
            }
        }
        Value::String(s) if s.contains('=') => check_cdi_name(s).map(|()| GpuSelector::Cdi(s.clone())),
        Value::String(s) => {
            let lower = s.to_ascii_lowercase();
            // `41:00.0` is short for `0000:41:00.0`, as lspci prints it.
            let full = if lower.len() == 7 { format!("0000:{lower}") } else { lower };
            if crate::cdi::is_pci_address(&full) {
                Ok(GpuSelector::Pci(full))
            } else {
                Err(format!(
                    "`{s}` names no GPU: use an index (0), a UUID (GPU-…), a PCI address (0000:41:00.0) or a CDI name (nvidia.com/gpu=0)"
                ))
            }
        }
        other => Err(format!("expected a GPU index, UUID, PCI address or CDI name, found {}", other.type_name())),
    }
}

/// `vendor.com/class=name`: CDI's grammar, the same as for the specs ([`crate::cdi`]).
fn check_cdi_name(name: &str) -> Result<(), String> {
    if crate::cdi::valid_qualified_name(name) {
        Ok(())
    } else {
        Err(format!("`{name}` is not a CDI device name (such as `nvidia.com/gpu=0` or `nvidia.com/gpu=all`)"))
    }
}

/// systemd time spans: one or more NUMBER[UNIT], such as `30s`, `1min 30s`, `500ms`; a bare
/// number is seconds. Returns microseconds.
pub fn parse_duration(value: &str) -> Result<u64, String> {
    const UNITS: &[(&str, f64)] = &[
        ("", 1e6),
        ("us", 1.0),
        ("usec", 1.0),
        ("ms", 1e3),
        ("msec", 1e3),
        ("s", 1e6),
        ("sec", 1e6),
        ("second", 1e6),
        ("seconds", 1e6),
        ("m", 60e6),
        ("min", 60e6),
        ("minute", 60e6),
        ("minutes", 60e6),
        ("h", 3600e6),
        ("hr", 3600e6),
        ("hour", 3600e6),
        ("hours", 3600e6),
        ("d", 86400e6),
        ("day", 86400e6),
        ("days", 86400e6),
        ("w", 604800e6),
        ("week", 604800e6),
        ("weeks", 604800e6),
        // systemd's month and year are 30.44 and 365.25 days.
        ("M", 2629800e6),
        ("month", 2629800e6),
        ("months", 2629800e6),
        ("y", 31557600e6),
        ("year", 31557600e6),
        ("years", 31557600e6),
    ];
    let not_a_duration = || format!("`{value}` is not a duration (such as 30s, 5min or 1h 30min)");
    if value.contains(['\n', '\t']) || value != value.trim() {
        return Err(format!("{value:?}: a duration is one line without surrounding spaces"));
    }
    let mut rest = value;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().map_err(|_| not_a_duration())?;
        let after = rest[digits..].trim_start();
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == ' ').unwrap_or(after.len());
        let unit = &after[..unit_len];
        let Some((_, scale)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!("`{value}`: unknown time unit `{unit}` (use us, ms, s, min, h, d, w, M or y)"));
        };
        total += number * scale;
        rest = after[unit_len..].trim_start();
    }
    if total > 1e15 {
        return Err(format!("`{value}` is too long"));
    }
    Ok(total.round() as u64)
}

/// systemd byte sizes as `MemoryMax=` takes them: digits with an optional K, M, G or T
/// (1024-based), at least one byte and below 2^64.
fn check_bytes(value: &str) -> Result<(), String> {
    let bad = || Err(format!("`{value}` is not a memory size (such as 512M or 24G)"));
    let (number, scale) = match value.strip_suffix(['K', 'M', 'G', 'T']) {
        Some(n) => (
            n,
            match value.as_bytes()[value.len() - 1] {
                b'K' => 1u64 << 10,
                b'M' => 1 << 20,
                b'G' => 1 << 30,
                _ => 1 << 40,
            },
        ),
        None => (value, 1),
    };
    let well_formed = number.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && number.bytes().filter(|&b| b == b'.').count() <= 1;
    if !well_formed {
        return bad();
    }
    let Ok(x) = number.parse::<f64>() else { return bad() };
    let bytes = x * scale as f64;
    if bytes < 1.0 {
        return Err(format!("`{value}` is less than one byte"));
    }
    if bytes >= 18_446_744_073_709_551_615.0 {
        return Err(format!("`{value}` is too large"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        for ok in [
            "8080",
            "8080:80",
            "127.0.0.1:8080:8080",
            "127.0.0.1::80",
            "[::1]:8080:80/udp",
            "9000-9001:9000-9001",
            "80/tcp,udp",
            "0.0.0.0:80:80",
            "[::1]::80",
        ] {
            assert_eq!(check_port(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "0:80",
            "70000:80",
            "a:b",
            "1.2.3:80:80",
            "80/icmp",
            "1:2:3:4",
            "::1:80:80",
            ":8080:80",
            "80/",
            "80/tcp/udp",
            "80/tcp,tcp",
            "9001-9000:80",
            "9000-9002:9000-9001",
            "+80",
            "[::1]:80",
            "[::1]:1:2:3",
            "8080:",
            "fe80::1%eth0:80:80",
        ] {
            assert!(check_port(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn durations_and_sizes() {
        for (ok, us) in [
            ("30s", 30_000_000),
            ("1min 30s", 90_000_000),
            ("1min30s", 90_000_000),
            ("500ms", 500_000),
            ("2h", 7_200_000_000),
            ("10", 10_000_000),
            ("1.5s", 1_500_000),
            ("5 min", 300_000_000),
            ("1w", 604_800_000_000),
        ] {
            assert_eq!(parse_duration(ok), Ok(us), "{ok}");
        }
        for bad in ["", "s", "5 parsecs", "-1s", "1.2.3s", "inf"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for ok in ["24G", "512M", "1073741824", "1.5G"] {
            assert_eq!(check_bytes(ok), Ok(()), "{ok}");
        }
        for bad in ["", "G", "24GB", "-1G", "lots", "inf", "1e9", ".5G", "1.2.3G", "0.5", "0.0001K", "20000000T"] {
            assert!(check_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(check_service_name("llama-7b").is_ok());
        assert!(check_service_name("../etc").is_err());
        assert!(check_service_name("a b").is_err());
        assert!(check_service_name("a:b").is_err(), "podman refuses : in container names");
        assert!(check_service_name("_x").is_err(), "podman refuses a leading _");
        assert!(check_volume("./models:/m").is_err());
        assert!(check_volume("data.volume:/d").is_err());
        assert!(check_volume("models:/m:ro").is_ok());
        assert!(check_volume("/srv/my models:/models:ro").is_ok());
        assert!(check_volume("/srv/a\nPodmanArgs=--privileged:/x").is_err(), "a newline would add a Quadlet line");
        assert!(parse_duration("\n5s").is_err(), "a newline would add a unit line");
        assert!(check_account_name("root").is_err());
        assert!(check_account_name("aimodels").is_ok());
        assert!(check_cdi_name("nvidia.com/gpu=0").is_ok());
        assert!(check_cdi_name("nvidia.com/gpu=GPU-4f8a1b2c-0000-1111-2222-333344445555").is_ok());
        assert!(check_cdi_name("gpu0").is_err());
    }

    #[test]
    fn image_references_as_podman_reads_them() {
        for ok in [
            "busybox",
            "localhost/llama-server:latest",
            "registry.example:5000/org/name:v1.2-rc_3",
            "quay.io/a/b/c@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "docker.io/library/ubuntu:24.04",
            "a__b/c---d.e_f",
            "[::1]:5000/x",
            "127.0.0.1:5000/models/tiny:q4",
        ] {
            assert_eq!(check_image(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Upper/Case",
            "localhost/x:",
            "localhost/x:-tag",
            "x@sha256:abc",
            "x@md5:0123456789abcdef0123456789abcdef",
            "a//b",
            "a/-b",
            "a/b.",
            "a___b",
            "reg:port/x",
            "-reg.io/x",
            "web.image",
            "localhost/app.build",
            "x y",
            "x\\",
            "docker://busybox",
        ] {
            assert!(check_image(bad).is_err(), "{bad} should be refused");
        }
        let long = format!("localhost/{}", "a".repeat(250));
        assert!(check_image(&long).is_err());
    }

    #[test]
    fn gpu_selectors() {
        let s = |v: &str| gpu_selector(&Value::String(v.into()));
        assert_eq!(gpu_selector(&Value::Integer(3)), Ok(GpuSelector::Index(3)));
        assert_eq!(s("3"), Ok(GpuSelector::Index(3)));
        assert_eq!(
            s("GPU-fc549a0c-02eb-8d42-5960-b2eea948f942"),
            Ok(GpuSelector::Uuid("GPU-fc549a0c-02eb-8d42-5960-b2eea948f942".into()))
        );
        assert_eq!(s("41:00.0"), Ok(GpuSelector::Pci("0000:41:00.0".into())));
        assert_eq!(s("0035:03:00.0"), Ok(GpuSelector::Pci("0035:03:00.0".into())));
        assert_eq!(s("nvidia.com/gpu=all"), Ok(GpuSelector::Cdi("nvidia.com/gpu=all".into())));
        assert!(s("gpu0").is_err_and(|e| e.contains("names no GPU")));
        assert!(s("GPU-zz").is_err());
        assert!(gpu_selector(&Value::Integer(-1)).is_err());
        assert!(gpu_selector(&Value::Boolean(true)).is_err());
    }
}
