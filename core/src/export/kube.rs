//! `aictl export kube`: services as Kubernetes manifests that keep their GPU, NUMA and model
//! intent.
//!
//! One workload per service (a Deployment, or a Pod on request) and a Service for its published
//! ports. What has no Kubernetes meaning (GPUs named by index or UUID, shared GPUs, host-only
//! ports, a process limit) is never dropped silently: it becomes a `# warning:` comment above the
//! object and a line on stderr. What the cluster must provide (kubelet policies, feature gates)
//! becomes a `# note:` comment. The output depends only on the services and the options, so it
//! is stable for review and golden tests.

use std::collections::BTreeMap;

use super::yaml::{self, map, strings, Yaml};
use crate::models::source::OciReference;
use crate::models::Source;
use crate::spec::{GpuSelector, NumaPolicy, Restart, Service};

/// The label that ties every object to its service (the same key podman's containers carry).
pub const SERVICE_LABEL: &str = "io.aicontainers.service";
/// Annotation: the service file (and drop-ins) the object was exported from.
pub const SOURCE_ANNOTATION: &str = "io.aicontainers.source";
/// The resource name of NVIDIA's device plugin.
pub const NVIDIA_GPU: &str = "nvidia.com/gpu";
/// Where an init container's `aictl model pull` keeps its store, inside the model's emptyDir.
const INIT_STORE: &str = "/var/lib/aicontainers/models";
/// At most this many ports from one published range.
const MAX_RANGE: u32 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Deployment,
    Pod,
}

/// How `[[model]]` entries reach the pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelVolumes {
    /// `oci://` models as image volumes (Kubernetes 1.31+, ImageVolume), others by init container.
    Image,
    /// Every model by an init container running `aictl model pull` into an emptyDir.
    Init,
}

/// What the export needs besides the services.
pub struct Options<'a> {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub models: ModelVolumes,
    /// The image that holds `aictl`, for model init containers.
    pub aictl_image: Option<String>,
    /// Keep the host's published ports as `hostPort`/`hostIP` (what `podman kube play` publishes).
    pub host_ports: bool,
    /// The numeric UID of an account, when it is known.
    pub uid: &'a dyn Fn(&str) -> Option<u32>,
}

impl std::fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("kind", &self.kind)
            .field("namespace", &self.namespace)
            .field("models", &self.models)
            .field("aictl_image", &self.aictl_image)
            .field("host_ports", &self.host_ports)
            .finish_non_exhaustive()
    }
}

/// The manifests, and the warnings also written into them as comments.
#[derive(Clone, Debug, PartialEq)]
pub struct Export {
    pub yaml: String,
    /// `NAME: message`, in output order.
    pub warnings: Vec<String>,
}

/// One YAML document with the comments above it.
struct Document {
    comments: Vec<String>,
    body: Yaml,
}

/// What converting one service says besides the objects.
#[derive(Default)]
struct Remarks {
    warnings: Vec<String>,
    notes: Vec<String>,
}

impl Remarks {
    fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }
    fn note(&mut self, message: impl Into<String>) {
        self.notes.push(message.into());
    }
}

/// Converts `services` (loaded and checked) to Kubernetes manifests.
pub fn export(services: &[Service], options: &Options<'_>) -> Result<Export, String> {
    if let Some(ns) = &options.namespace {
        if !is_dns_label(ns, false) {
            return Err(format!(
                "--namespace `{}`: not a Kubernetes namespace name (lower-case letters, digits and `-`, starting and ending with a letter or digit, at most 63)",
                ns.escape_debug()
            ));
        }
    }
    // Kubernetes names first, so that a clash is refused before anything is written.
    let mut names: BTreeMap<String, &str> = BTreeMap::new();
    let mut kube_names = Vec::with_capacity(services.len());
    for service in services {
        let name = kube_name(&service.name)?;
        if let Some(other) = names.insert(name.clone(), &service.name) {
            return Err(format!(
                "services `{other}` and `{}` would both be named `{name}` in Kubernetes; rename one of the files",
                service.name
            ));
        }
        kube_names.push(name);
    }
    let mut out = String::new();
    let mut warnings = Vec::new();
    for (service, name) in services.iter().zip(&kube_names) {
        for doc in service_documents(service, name, options)? {
            for w in doc.comments.iter().filter_map(|c| c.strip_prefix("warning: ")) {
                warnings.push(format!("{}: {w}", service.name));
            }
            out.push_str("---\n");
            for comment in &doc.comments {
                for line in comment_lines(comment) {
                    out.push_str("# ");
                    out.push_str(&line);
                    out.push('\n');
                }
            }
            out.push_str(&yaml::to_string(&doc.body));
        }
    }
    Ok(Export { yaml: out, warnings })
}

/// A comment's text, wrapped at about 100 columns, with anything that could end the comment line
/// (a newline in a value it quotes) escaped.
fn comment_lines(text: &str) -> Vec<String> {
    let safe: String =
        text.chars().flat_map(|c| if c.is_control() { c.escape_debug().collect() } else { vec![c] }).collect();
    let mut lines = Vec::new();
    let mut line = String::new();
    for (i, word) in safe.split(' ').enumerate() {
        if !line.is_empty() && line.chars().count() + word.chars().count() > 96 {
            lines.push(std::mem::take(&mut line));
            line.push_str("  ");
        } else if i > 0 {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}

/// A service name as a Kubernetes object name: lower-case, `_` and `.` as `-`. It must then be
/// a DNS-1035 label (what a Service's name must be, and a container's name too).
pub fn kube_name(name: &str) -> Result<String, String> {
    let mapped: String =
        name.chars().map(|c| if c == '_' || c == '.' { '-' } else { c.to_ascii_lowercase() }).collect();
    if is_dns_label(&mapped, true) {
        Ok(mapped)
    } else {
        Err(format!(
            "`{}` cannot be named in Kubernetes: it maps to `{}`, which is not a DNS-1035 label (lower-case letters, digits and `-`, starting with a letter, ending with a letter or digit, at most 63 characters); rename the service file",
            name.escape_debug(),
            mapped.escape_debug()
        ))
    }
}

/// RFC 1123 label (`letter_first`: RFC 1035, as Service names need).
fn is_dns_label(s: &str, letter_first: bool) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && (if letter_first { b[0].is_ascii_lowercase() } else { b[0] != b'-' })
        && b[b.len() - 1] != b'-'
}

/// The workload and, with published ports, the Service of one service.
fn service_documents(service: &Service, name: &str, options: &Options<'_>) -> Result<Vec<Document>, String> {
    let mut remarks = Remarks::default();
    if name != service.name {
        remarks.warn(format!("named `{name}` in Kubernetes (`{}` is not a Kubernetes name)", service.name));
    }
    let ports = published_ports(service, options.host_ports, &mut remarks)?;
    let pod = pod_spec(service, name, &ports, options, &mut remarks)?;
    let meta = metadata(service, name, options);
    let labels = map([(SERVICE_LABEL, Yaml::from(name))]);
    let workload = match options.kind {
        Kind::Deployment => {
            if service.restart != Restart::Always {
                remarks.warn(format!(
                    "restart = \"{}\": a Deployment always restarts its pod's containers (restartPolicy Always); export with --kind pod to keep the policy",
                    service.restart.as_systemd()
                ));
            }
            map([
                ("apiVersion", Yaml::from("apps/v1")),
                ("kind", "Deployment".into()),
                ("metadata", meta.clone()),
                (
                    "spec",
                    map([
                        ("replicas", Yaml::from(1i64)),
                        ("selector", map([("matchLabels", labels.clone())])),
                        // One instance at a time, as on the host: its GPUs and host ports are not
                        // free until the old pod is gone.
                        ("strategy", map([("type", Yaml::from("Recreate"))])),
                        ("template", map([("metadata", map([("labels", labels.clone())])), ("spec", pod)])),
                    ]),
                ),
            ])
        }
        Kind::Pod => {
            let mut pod = pod;
            let policy = match service.restart {
                Restart::No => "Never",
                Restart::OnFailure => "OnFailure",
                Restart::Always => "Always",
            };
            pod.insert("restartPolicy", policy);
            map([("apiVersion", Yaml::from("v1")), ("kind", "Pod".into()), ("metadata", meta.clone()), ("spec", pod)])
        }
    };
    let mut header = vec![format!(
        "{}: exported from {} by aictl export kube",
        service.name,
        std::iter::once(&service.source)
            .chain(&service.drop_ins)
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + ")
    )];
    header.extend(remarks.warnings.iter().map(|w| format!("warning: {w}")));
    header.extend(remarks.notes.iter().map(|n| format!("note: {n}")));
    let mut docs = vec![Document { comments: header, body: workload }];
    if !ports.is_empty() {
        docs.push(Document { comments: Vec::new(), body: service_object(&ports, meta, labels) });
    }
    Ok(docs)
}

fn metadata(service: &Service, name: &str, options: &Options<'_>) -> Yaml {
    let mut meta = map([("name", Yaml::from(name))]);
    if let Some(ns) = &options.namespace {
        meta.insert("namespace", ns.as_str());
    }
    meta.insert("labels", map([(SERVICE_LABEL, Yaml::from(name))]));
    let mut annotations = map([(
        SOURCE_ANNOTATION,
        Yaml::from(
            std::iter::once(&service.source)
                .chain(&service.drop_ins)
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    )]);
    if let Some(d) = &service.description {
        annotations.insert("io.aicontainers.description", d.as_str());
    }
    meta.insert("annotations", annotations);
    meta
}

/// One published port, expanded from a range.
#[derive(Clone, Debug, PartialEq)]
struct Port {
    host_ip: Option<String>,
    host: Option<u16>,
    container: u16,
    protocol: &'static str,
}

/// `[IP:][HOSTPORT:]CONTAINERPORT[/PROTO]`, as spec.rs checked it, one entry per port.
fn parse_port(spec: &str) -> Result<Vec<Port>, String> {
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((rest, "udp")) => (rest, "UDP"),
        Some((rest, "sctp")) => (rest, "SCTP"),
        Some((rest, _)) => (rest, "TCP"),
        None => (spec, "TCP"),
    };
    let (ip, ports) = if let Some(v6) = rest.strip_prefix('[') {
        let (ip, ports) = v6.split_once("]:").ok_or_else(|| format!("`{spec}`: not a port"))?;
        (Some(ip), ports)
    } else {
        match rest.split(':').collect::<Vec<_>>().as_slice() {
            [_] | [_, _] => (None, rest),
            [ip, ..] => (Some(*ip), &rest[ip.len() + 1..]),
            [] => unreachable!("split yields one part at least"),
        }
    };
    let (host, container) = match ports.split_once(':') {
        Some(("", c)) => (None, c),
        Some((h, c)) => (Some(h), c),
        None => (None, ports),
    };
    let range = |text: &str| -> Result<(u16, u16), String> {
        let mut parts = text.split('-').map(|p| p.parse::<u16>().map_err(|_| format!("`{spec}`: not a port")));
        let first = parts.next().ok_or_else(|| format!("`{spec}`: not a port"))??;
        let last = parts.next().transpose()?.unwrap_or(first);
        Ok((first, last))
    };
    let (c0, c1) = range(container)?;
    let host = host.map(range).transpose()?;
    let count = u32::from(c1.saturating_sub(c0)) + 1;
    if c1 < c0 || host.is_some_and(|(h0, h1)| h1 < h0 || h1 - h0 != c1 - c0) {
        return Err(format!("`{spec}`: the host and container port ranges differ in length"));
    }
    if count > MAX_RANGE {
        return Err(format!(
            "`{spec}`: {count} ports; a Kubernetes manifest lists each port, at most {MAX_RANGE} here"
        ));
    }
    let host_ip = ip.filter(|ip| !ip.is_empty() && *ip != "0.0.0.0" && *ip != "::").map(str::to_owned);
    Ok((0..count as u16)
        .map(|i| Port { host_ip: host_ip.clone(), host: host.map(|(h0, _)| h0 + i), container: c0 + i, protocol })
        .collect())
}

fn published_ports(service: &Service, host_ports: bool, remarks: &mut Remarks) -> Result<Vec<Port>, String> {
    let mut out: Vec<Port> = Vec::new();
    for spec in &service.ports {
        let ports = parse_port(spec).map_err(|e| format!("{}: service.ports: {e}", service.source.display()))?;
        if let Some(ip) = ports.first().and_then(|p| p.host_ip.as_deref()) {
            if host_ports {
                if ip != "127.0.0.1" && ip != "::1" {
                    remarks.warn(format!("ports: `{spec}` binds the address {ip}, which a cluster node may not have"));
                }
            } else {
                remarks.warn(format!(
                    "ports: `{spec}` is published on {ip} only; the Service makes it reachable from the cluster's network"
                ));
            }
        }
        if ports.first().is_some_and(|p| p.host.is_none()) && host_ports {
            remarks.warn(format!(
                "ports: `{spec}` lets podman choose the host port; Kubernetes cannot, so only the Service publishes it"
            ));
        }
        for p in ports {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// The ports of the container: one per container port, or with `host_ports` one per published
/// port with its `hostPort` and `hostIP`.
fn container_ports(ports: &[Port], host_ports: bool) -> Yaml {
    let mut seen = Vec::new();
    let mut items = Vec::new();
    for p in ports {
        let host = if host_ports { p.host } else { None };
        let key = (p.container, p.protocol, host, if host.is_some() { p.host_ip.clone() } else { None });
        if seen.contains(&key) {
            continue;
        }
        let mut item = map([("containerPort", Yaml::from(i64::from(p.container))), ("protocol", p.protocol.into())]);
        if let Some(h) = host {
            item.insert("hostPort", i64::from(h));
            if let Some(ip) = &p.host_ip {
                item.insert("hostIP", ip.as_str());
            }
        }
        seen.push(key);
        items.push(item);
    }
    Yaml::Seq(items)
}

fn service_object(ports: &[Port], meta: Yaml, selector: Yaml) -> Yaml {
    let mut seen = Vec::new();
    let mut items = Vec::new();
    for p in ports {
        let port = p.host.unwrap_or(p.container);
        if seen.contains(&(port, p.protocol)) {
            continue;
        }
        seen.push((port, p.protocol));
        items.push(map([
            ("name", Yaml::from(format!("{}-{port}", p.protocol.to_ascii_lowercase()))),
            ("port", i64::from(port).into()),
            ("targetPort", i64::from(p.container).into()),
            ("protocol", p.protocol.into()),
        ]));
    }
    map([
        ("apiVersion", Yaml::from("v1")),
        ("kind", "Service".into()),
        ("metadata", meta),
        ("spec", map([("type", Yaml::from("ClusterIP")), ("selector", selector), ("ports", Yaml::Seq(items))])),
    ])
}

/// The pod: security context, init containers, the service's container and volumes.
///
/// Long because a pod spec is one nested literal (security context, init containers, the
/// container, volumes); building it in pieces would hide its shape.
fn pod_spec(
    service: &Service,
    name: &str,
    ports: &[Port],
    options: &Options<'_>,
    remarks: &mut Remarks,
) -> Result<Yaml, String> {
    let mut pod = map::<&str>([]);
    if service.init {
        // podman's --init puts a minimal init in front of the server; a shared process namespace
        // does the same in a pod (the pause process is PID 1 and reaps).
        pod.insert("shareProcessNamespace", true);
    }
    if let Some(t) = &service.stop_timeout {
        pod.insert("terminationGracePeriodSeconds", seconds(t));
    }
    let mut security = map([("runAsNonRoot", Yaml::from(true))]);
    match (options.uid)(&service.run_as) {
        Some(uid) => security.insert("runAsUser", i64::from(uid)),
        None => remarks.warn(format!(
            "run-as = \"{}\": no such account here, so the pod runs as the image's user, which must not be root; pass --account {}:UID to set it",
            service.run_as, service.run_as
        )),
    }
    pod.insert("securityContext", security);

    let resources = resources(service, remarks);
    let (volumes, mounts, init) = volumes(service, options, &resources, remarks)?;
    if !init.is_empty() {
        pod.insert("initContainers", Yaml::Seq(init));
    }
    let mut container = map([("name", Yaml::from(name)), ("image", service.image.as_str().into())]);
    container.insert("imagePullPolicy", "IfNotPresent");
    if is_local_image(&service.image) {
        remarks.warn(format!(
            "image `{}` is in the account's storage on this host; push it to a registry the cluster's nodes pull from",
            service.image
        ));
    }
    if !service.command.is_empty() {
        // `command` in a service file is what follows the image (the image's entrypoint stays):
        // Kubernetes calls that `args`.
        container.insert("args", strings(&service.command));
    }
    if !service.environment.is_empty() {
        let env = service
            .environment
            .iter()
            .map(|(k, v)| map([("name", Yaml::from(k.as_str())), ("value", v.as_str().into())]))
            .collect();
        container.insert("env", Yaml::Seq(env));
    }
    if !ports.is_empty() {
        container.insert("ports", container_ports(ports, options.host_ports));
    }
    if let Some(r) = resources {
        container.insert("resources", r);
    }
    if let Some(probe) = probe(service, remarks) {
        container.insert("readinessProbe", probe);
    }
    if let Some(sandbox) = &service.sandbox {
        // The sandbox's hardening has its Kubernetes spelling; its egress allowlist does not
        // (a NetworkPolicy is enforced, or not, by the cluster's network plugin).
        container.insert(
            "securityContext",
            map([
                ("readOnlyRootFilesystem", Yaml::from(true)),
                ("allowPrivilegeEscalation", Yaml::from(false)),
                ("capabilities", map([("drop", Yaml::Seq(vec![Yaml::from("ALL")]))])),
            ]),
        );
        let egress: Vec<String> = sandbox.egress.iter().map(|e| e.to_string()).collect();
        remarks.warn(format!(
            "[sandbox] egress = [{}] is not exported: write a NetworkPolicy for it (enforced only where the cluster's network plugin supports NetworkPolicy; names need the plugin's FQDN policies)",
            egress.join(", ")
        ));
    } else if service.read_only {
        container.insert("securityContext", map([("readOnlyRootFilesystem", Yaml::from(true))]));
    }
    if !mounts.is_empty() {
        container.insert("volumeMounts", Yaml::Seq(mounts));
    }
    pod.insert("containers", Yaml::Seq(vec![container]));
    if !volumes.is_empty() {
        pod.insert("volumes", Yaml::Seq(volumes));
    }
    if let Some(d) = &service.restart_delay {
        remarks.warn(format!("restart-delay = \"{d}\": the kubelet's own back-off decides when a container restarts"));
    }
    Ok(pod)
}

/// Whole seconds of a checked duration, rounded up, at least 1.
fn seconds(duration: &str) -> i64 {
    let us = crate::spec::parse_duration(duration).unwrap_or(0);
    (us.div_ceil(1_000_000)).max(1) as i64
}

/// An image only this host has: built or imported under `localhost/`.
fn is_local_image(image: &str) -> bool {
    image.starts_with("localhost/") || image.starts_with("localhost:") || image.starts_with("127.")
}

/// Limits and requests from `[resources]` and `[gpu]`; Guaranteed for the NUMA policies that
/// need the kubelet's Topology Manager to align.
fn resources(service: &Service, remarks: &mut Remarks) -> Option<Yaml> {
    let mut limits = map::<&str>([]);
    let mut requests = map::<&str>([]);
    let numa = service.gpu.as_ref().map_or(NumaPolicy::None, |g| g.numa);
    let guaranteed = matches!(numa, NumaPolicy::SingleNumaNode | NumaPolicy::Restricted);
    let cpus = service.resources.cpus;
    if guaranteed {
        let whole = match cpus {
            Some(c) if c.fract() == 0.0 => c as i64,
            Some(c) => {
                let up = c.ceil() as i64;
                remarks.warn(format!(
                    "resources.cpus = {c}: {up} CPUs asked, since exclusive CPUs from the static CPU manager come whole"
                ));
                up
            }
            None => {
                remarks.warn(
                    "resources.cpus is not set: 1 CPU asked, since a Guaranteed pod needs a CPU request; set resources.cpus",
                );
                1
            }
        };
        limits.insert("cpu", whole.to_string());
        requests.insert("cpu", whole.to_string());
    } else if let Some(c) = cpus {
        limits.insert("cpu", millicores(c));
    }
    match &service.resources.memory {
        Some(m) => {
            limits.insert("memory", memory(m));
            if guaranteed {
                requests.insert("memory", memory(m));
            }
        }
        None if guaranteed => remarks.warn(
            "resources.memory is not set, so the pod cannot be Guaranteed and its memory is not aligned; set resources.memory",
        ),
        None => {}
    }
    if let Some(p) = service.resources.pids {
        remarks.warn(format!(
            "resources.pids = {p}: Kubernetes has no per-pod process limit (the kubelet's --pod-max-pids is per node)"
        ));
    }
    gpus(service, &mut limits, remarks);
    match numa {
        NumaPolicy::SingleNumaNode | NumaPolicy::Restricted => remarks.note(format!(
            "gpu.numa = \"{}\": the pod is Guaranteed (whole CPUs, requests equal to limits) so that the kubelet's Topology Manager aligns its CPUs, memory and GPUs; the nodes' kubelets need --topology-manager-policy={} and --cpu-manager-policy=static (with --reserved-cpus), and --memory-manager-policy=Static to align memory",
            numa.name(),
            numa.name()
        )),
        NumaPolicy::BestEffort => remarks.note(
            "gpu.numa = \"best-effort\": the nodes' kubelets need --topology-manager-policy=best-effort (and --cpu-manager-policy=static for CPUs)",
        ),
        NumaPolicy::None => {}
    }
    let Yaml::Map(l) = &limits else { unreachable!("a map") };
    if l.is_empty() {
        return None;
    }
    let mut out = map([("limits", limits.clone())]);
    if guaranteed {
        out.insert("requests", requests);
    }
    Some(out)
}

/// CPUs as a Kubernetes quantity: `2`, or `1500m`.
fn millicores(cpus: f64) -> String {
    let m = (cpus * 1000.0).ceil() as u64;
    if m % 1000 == 0 {
        (m / 1000).to_string()
    } else {
        format!("{m}m")
    }
}

/// A systemd byte size (1024-based K, M, G, T; checked by spec.rs) as a Kubernetes quantity in
/// the largest binary unit that is exact: `24G` is `24Gi`, `1.5G` is `1536Mi`.
fn memory(size: &str) -> String {
    let (number, scale) = match size.as_bytes().last() {
        Some(b'K') => (&size[..size.len() - 1], 1u128 << 10),
        Some(b'M') => (&size[..size.len() - 1], 1 << 20),
        Some(b'G') => (&size[..size.len() - 1], 1 << 30),
        Some(b'T') => (&size[..size.len() - 1], 1 << 40),
        _ => (size, 1),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let mut bytes = whole.parse::<u128>().unwrap_or(0) * scale;
    if !fraction.is_empty() {
        let digits = fraction.len().min(30) as u32;
        let f = fraction[..digits as usize].parse::<u128>().unwrap_or(0);
        bytes += f * scale / 10u128.pow(digits);
    }
    for (unit, shift) in [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// `[gpu]` as extended resources: a count of `nvidia.com/gpu`, or of the CDI kind named.
fn gpus(service: &Service, limits: &mut Yaml, remarks: &mut Remarks) {
    let Some(gpu) = &service.gpu else { return };
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    if let Some(c) = gpu.count {
        counts.insert(NVIDIA_GPU.to_owned(), i64::from(c));
    }
    for device in &gpu.devices {
        let resource = match device {
            GpuSelector::Cdi(name) => {
                let (kind, which) = name.split_once('=').unwrap_or((name.as_str(), ""));
                if which == "all" {
                    remarks.warn(format!("gpu.devices: `{name}` (every GPU of the host) counted as 1 {kind}"));
                } else {
                    remarks.warn(format!(
                        "gpu.devices: `{name}` names one device of one host; asked for 1 {kind} that the scheduler picks"
                    ));
                }
                kind.to_owned()
            }
            other => {
                remarks.warn(format!(
                    "gpu.devices: {other} names a GPU of one host; asked for 1 {NVIDIA_GPU} that the scheduler picks"
                ));
                NVIDIA_GPU.to_owned()
            }
        };
        *counts.entry(resource).or_default() += 1;
    }
    if gpu.shared {
        remarks.warn(
            "gpu.shared = true: each pod gets whole GPUs; sharing one needs the device plugin's time-slicing or MPS",
        );
    }
    for (resource, count) in counts {
        limits.insert(&resource, count.to_string());
    }
}

/// `[health]` as a readiness probe: the service's health state, which never restarts it.
fn probe(service: &Service, remarks: &mut Remarks) -> Option<Yaml> {
    let h = service.health.as_ref()?;
    let mut probe = map([("exec", map([("command", strings(["/bin/sh", "-c", h.command.as_str()]))]))]);
    if let Some(s) = &h.start_period {
        probe.insert("initialDelaySeconds", seconds(s));
    }
    probe.insert("periodSeconds", h.interval.as_deref().map_or(30, seconds));
    // podman's default timeout is 30 s, the kubelet's 1 s: keep podman's.
    probe.insert("timeoutSeconds", h.timeout.as_deref().map_or(30, seconds));
    if let Some(r) = h.retries {
        probe.insert("failureThreshold", r);
    }
    remarks.note("[health] is a readinessProbe: like the service's health state, failing it takes the pod out of its Service but does not restart it");
    Some(probe)
}

type Volumes = (Vec<Yaml>, Vec<Yaml>, Vec<Yaml>);

/// `volumes` and `[[model]]`: the pod's volumes, the container's mounts and the init containers.
fn volumes(
    service: &Service,
    options: &Options<'_>,
    resources: &Option<Yaml>,
    remarks: &mut Remarks,
) -> Result<Volumes, String> {
    let (mut volumes, mut mounts, mut init) = (Vec::new(), Vec::new(), Vec::new());
    for (i, spec) in service.volumes.iter().enumerate() {
        let mut parts = spec.splitn(3, ':');
        let (source, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let opts: Vec<&str> = parts.next().map(|o| o.split(',').collect()).unwrap_or_default();
        let vname = format!("volume-{i}");
        let volume = if source.starts_with('/') {
            remarks.warn(format!(
                "volumes: `{source}` is a path on the node; it must exist on every node the pod may run on"
            ));
            map([("name", Yaml::from(vname.as_str())), ("hostPath", map([("path", Yaml::from(source))]))])
        } else {
            let claim = kube_name(source).map_err(|e| format!("{}: service.volumes: {e}", service.source.display()))?;
            remarks.warn(format!(
                "volumes: the podman volume `{source}` becomes the PersistentVolumeClaim `{claim}`, which must exist in the namespace"
            ));
            map([
                ("name", Yaml::from(vname.as_str())),
                ("persistentVolumeClaim", map([("claimName", Yaml::from(claim))])),
            ])
        };
        let mut mount = map([("name", Yaml::from(vname.as_str())), ("mountPath", path.into())]);
        if opts.contains(&"ro") {
            mount.insert("readOnly", true);
        }
        for o in opts.iter().filter(|o| !["ro", "rw", ""].contains(*o)) {
            remarks.warn(format!("volumes: `{spec}`: the option `{o}` has no Kubernetes equivalent"));
        }
        volumes.push(volume);
        mounts.push(mount);
    }
    model_volumes(service, options, resources, remarks, (&mut volumes, &mut mounts, &mut init))?;
    Ok((volumes, mounts, init))
}

/// `[[model]]`: an image volume, a hostPath (`file://`) or an emptyDir that an init container
/// fills with `aictl model pull`, each mounted read-only where the service mounts it.
fn model_volumes(
    service: &Service,
    options: &Options<'_>,
    resources: &Option<Yaml>,
    remarks: &mut Remarks,
    (volumes, mounts, init): (&mut Vec<Yaml>, &mut Vec<Yaml>, &mut Vec<Yaml>),
) -> Result<(), String> {
    for (i, model) in service.models.iter().enumerate() {
        let vname = format!("model-{i}");
        let mut mount = map([("name", Yaml::from(vname.as_str())), ("mountPath", model.mount.as_str().into())]);
        match (&model.source, options.models) {
            (Source::Oci { registry, repository, reference }, ModelVolumes::Image) => {
                let reference = match reference {
                    OciReference::Tag(t) => format!("{registry}/{repository}:{t}"),
                    OciReference::Digest(d) => format!("{registry}/{repository}@{d}"),
                };
                if is_local_image(registry) {
                    remarks.warn(format!(
                        "model `{}`: the registry {registry} is this host's loopback; each node pulls from its own",
                        model.name
                    ));
                }
                remarks.note(format!(
                    "model `{}` is an image volume: Kubernetes 1.31 or later with the ImageVolume feature gate (on by default from 1.35) and a runtime that mounts OCI artifacts; --models init pulls it with aictl instead",
                    model.name
                ));
                volumes.push(map([
                    ("name", Yaml::from(vname.as_str())),
                    ("image", map([("reference", Yaml::from(reference)), ("pullPolicy", "IfNotPresent".into())])),
                ]));
            }
            (Source::File { path }, _) => {
                remarks.warn(format!(
                    "model `{}`: {} is a path on the node, mounted as it is; it must exist on every node the pod may run on",
                    model.name, model.source
                ));
                volumes.push(map([
                    ("name", Yaml::from(vname.as_str())),
                    ("hostPath", map([("path", Yaml::from(path.as_str()))])),
                ]));
            }
            (source, _) => {
                let image = options.aictl_image.as_deref().ok_or_else(|| {
                    format!(
                        "{}: model `{}` ({source}) is pulled by an init container running aictl: pass --aictl-image IMAGE (an image that holds aictl){}",
                        service.source.display(),
                        model.name,
                        if matches!(source, Source::Oci { .. }) { ", or --models image" } else { "" }
                    )
                })?;
                // A Guaranteed pod needs requests equal to limits in every container.
                let guaranteed = matches!(
                    service.gpu.as_ref().map(|g| g.numa),
                    Some(NumaPolicy::SingleNumaNode | NumaPolicy::Restricted)
                );
                init.push(pull_container(i, source, image, &vname, resources.as_ref().filter(|_| guaranteed)));
                volumes.push(map([("name", Yaml::from(vname.as_str())), ("emptyDir", map::<&str>([]))]));
                // The store's ref for this source points at the model's tree, inside the volume.
                mount.insert("subPath", format!("refs/{}", source.ref_name()));
            }
        }
        mount.insert("readOnly", true);
        mounts.push(mount);
    }
    Ok(())
}

/// The init container that pulls model `i` into its emptyDir, as `aicontainers-model@.service`
/// pulls it into the host's store.
fn pull_container(i: usize, source: &Source, image: &str, volume: &str, resources: Option<&Yaml>) -> Yaml {
    let mut container = map([
        ("name", Yaml::from(format!("pull-model-{i}"))),
        ("image", image.into()),
        ("imagePullPolicy", "IfNotPresent".into()),
        ("command", strings(["aictl", "model", "pull", "--direct", "--no-pin", source.canonical().as_str()])),
        ("env", Yaml::Seq(vec![map([("name", Yaml::from("AICONTAINERS_MODELS_DIR")), ("value", INIT_STORE.into())])])),
    ]);
    if let Some(r) = resources {
        container.insert("resources", without_gpus(r));
    }
    container
        .insert("volumeMounts", Yaml::Seq(vec![map([("name", Yaml::from(volume)), ("mountPath", INIT_STORE.into())])]));
    container
}

/// Resources less the GPUs (an init container that pulls a model needs none).
fn without_gpus(resources: &Yaml) -> Yaml {
    let Yaml::Map(sections) = resources else { return resources.clone() };
    Yaml::Map(
        sections
            .iter()
            .map(|(k, v)| {
                let Yaml::Map(items) = v else { return (k.clone(), v.clone()) };
                (k.clone(), Yaml::Map(items.iter().filter(|(r, _)| r == "cpu" || r == "memory").cloned().collect()))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(kube_name("chat").unwrap(), "chat");
        assert_eq!(kube_name("Chat_Server.v2").unwrap(), "chat-server-v2");
        for bad in ["1chat", "chat_", "a".repeat(64).as_str(), "x-"] {
            let e = kube_name(bad).unwrap_err();
            assert!(e.contains("DNS-1035"), "{e}");
        }
    }

    #[test]
    fn ports() {
        let p = |s| parse_port(s).unwrap();
        assert_eq!(
            p("127.0.0.1:8080:80"),
            vec![Port { host_ip: Some("127.0.0.1".into()), host: Some(8080), container: 80, protocol: "TCP" }]
        );
        assert_eq!(p("8080"), vec![Port { host_ip: None, host: None, container: 8080, protocol: "TCP" }]);
        assert_eq!(p("127.0.0.1::80/udp")[0].host, None);
        assert_eq!(p("[::1]:53:53/udp")[0].host_ip.as_deref(), Some("::1"));
        assert_eq!(p("9000-9002:9100-9102").len(), 3);
        assert_eq!(p("9000-9002:9100-9102")[2].host, Some(9002));
        assert!(parse_port("1-1000").is_err(), "too many ports to list");
        assert!(parse_port("9000-9001:80").is_err());
    }

    #[test]
    fn quantities() {
        assert_eq!(memory("24G"), "24Gi");
        assert_eq!(memory("1.5G"), "1536Mi");
        assert_eq!(memory("768M"), "768Mi");
        assert_eq!(memory("1073741824"), "1Gi");
        assert_eq!(memory("1000"), "1000");
        assert_eq!(millicores(1.5), "1500m");
        assert_eq!(millicores(2.0), "2");
        assert_eq!(millicores(0.01), "10m");
        assert_eq!(seconds("500ms"), 1);
        assert_eq!(seconds("1min 30s"), 90);
    }

    #[test]
    fn comments_cannot_break_out() {
        for line in comment_lines("a value with\na newline and \u{1b}[31m escapes") {
            assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line:?}");
        }
        assert!(comment_lines(&"word ".repeat(60)).len() > 1, "long comments are wrapped");
    }
}
