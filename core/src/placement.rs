//! GPU placement: which GPUs each service gets, and which CPUs and memory nodes go with them.
//!
//! NUMA policies mean what they mean in Kubernetes' Topology Manager:
//! - `none`: any free GPUs; CPUs and memory are not bound.
//! - `best-effort`: the fewest NUMA nodes that can hold the GPUs, when free; otherwise any free
//!   GPUs. CPUs and memory are bound to the nodes of the GPUs that have a locality.
//! - `restricted`: only the fewest NUMA nodes that could hold that many GPUs on an empty host
//!   (1 node for 2 GPUs where nodes have 4; 2 nodes for 6); refused otherwise.
//! - `single-numa-node`: all GPUs on one node; refused otherwise.
//!
//! Allocation runs over every service of the host at once and is deterministic: services whose
//! GPUs are recorded as held (see [`Claims`]) keep them while their request is unchanged, then
//! explicit requests (`gpu.devices`) get what they name, then the rest go in name order. A GPU
//! goes to one service only, unless every service that holds it says `gpu.shared = true`.
//! Among candidate nodes the one with the fewest free GPUs that still fit wins (best fit, so big
//! requests that come later still find room), then the lowest node number; within a node the
//! lowest-numbered GPUs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::spec::{Gpu as Request, GpuSelector, NumaPolicy};
use crate::topology::{list, Topology};

/// Where `aictl gpu claim` records which service holds which GPUs.
pub const CLAIMS_PATH: &str = "/var/lib/aicontainers/gpu-claims.json";

/// What a service was given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Assignment {
    /// The GPUs (for a MIG slice: the GPU it is part of), when known.
    pub gpus: Vec<Given>,
    /// The CDI names handed to podman: each GPU's name, or the names the file wrote.
    pub cdi: Vec<String>,
    /// Memory nodes to bind to; empty: not bound.
    pub nodes: Vec<u32>,
    /// CPUs to bind to; empty: not bound.
    pub cpus: Vec<u32>,
    pub policy: NumaPolicy,
    pub shared: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Given {
    pub index: u32,
    pub pci: String,
    pub numa: Vec<u32>,
}

/// A service's recorded hold on GPUs, so a daemon-reload that adds services does not move it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// [`fingerprint`] of the request that got them.
    pub request: String,
    /// PCI addresses.
    pub gpus: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub version: u32,
    pub claims: BTreeMap<String, Claim>,
}

impl Claims {
    /// Reads the claims file; a missing or unreadable one is an empty ledger (placement then
    /// works from names alone) and the reason is returned for logging.
    pub fn read(path: &Path) -> (Claims, Option<String>) {
        match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice::<Claims>(&bytes) {
                Ok(c) if c.version == 1 => (c, None),
                Ok(c) => (
                    Claims::default(),
                    Some(format!("{}: version {} is not known; ignored", path.display(), c.version)),
                ),
                Err(e) => (Claims::default(), Some(format!("{}: {e}; ignored", path.display()))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Claims::default(), None),
            Err(e) => (Claims::default(), Some(format!("{}: {e}; ignored", path.display()))),
        }
    }
}

impl Claims {
    /// Changes the claims file under an exclusive lock (`.gpu-claims.lock` beside it), so two
    /// units starting at once do not lose each other's entries, and writes it durably. A file
    /// that cannot be read is kept aside as `NAME.bad` rather than lost; the returned warning
    /// says so.
    pub fn update(path: &Path, change: impl FnOnce(&mut Claims)) -> Result<Option<String>, String> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let lock_path = dir.join(".gpu-claims.lock");
        let _lock = crate::fsutil::lock(&lock_path, nix::fcntl::FlockArg::LockExclusive, 0o644)
            .map_err(|e| format!("{}: cannot lock: {e}", lock_path.display()))?;
        let (mut claims, problem) = Claims::read(path);
        let warning = problem.map(|problem| {
            let bad = path.with_extension("json.bad");
            let _ = std::fs::rename(path, &bad);
            format!("{problem}; kept as {} and started afresh", bad.display())
        });
        claims.version = 1;
        change(&mut claims);
        let text = serde_json::to_string_pretty(&claims).map_err(|e| e.to_string())? + "\n";
        crate::fsutil::write_durable(path, text.as_bytes(), 0o644).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(warning)
    }
}

/// What must stay the same for a recorded hold to be kept.
pub fn fingerprint(request: &Request) -> String {
    format!("count={},numa={},shared={}", request.count.unwrap_or(0), request.numa.name(), request.shared)
}

/// How a service holds a GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    Exclusive,
    /// `gpu.shared = true`: other shared services may have it too.
    Shared,
    /// Through one of its MIG slices: no one gets the whole GPU.
    Slices,
}

/// Who holds each GPU (by position in `topology.gpus`) and each MIG slice (by CDI name).
#[derive(Default)]
struct Holders {
    gpus: BTreeMap<usize, Vec<(String, Hold)>>,
    slices: BTreeMap<String, Vec<(String, bool)>>,
}

impl Holders {
    fn free_for(&self, gpu: usize, shared: bool) -> bool {
        match self.gpus.get(&gpu) {
            None => true,
            Some(h) => shared && h.iter().all(|(_, hold)| *hold == Hold::Shared),
        }
    }
    fn take(&mut self, gpu: usize, service: &str, shared: bool) {
        let hold = if shared { Hold::Shared } else { Hold::Exclusive };
        self.gpus.entry(gpu).or_default().push((service.to_string(), hold));
    }
    fn slice_free_for(&self, slice: &str, shared: bool) -> bool {
        self.slices.get(slice).is_none_or(|h| shared && h.iter().all(|(_, s)| *s))
    }
    fn who(&self, gpu: usize) -> Option<String> {
        self.gpus.get(&gpu).map(|h| {
            let mut names: Vec<&str> = h.iter().map(|(n, _)| n.as_str()).collect();
            names.dedup();
            names.join("+")
        })
    }
}

/// Places every request. Results are keyed by service name; an error says why, in words a
/// sysadmin can act on.
/// Long because the order of the passes (explicit devices, then counts by preference, then the
/// holders' record) is the placement policy, clearer read in one place.
pub fn place(
    topology: &Topology,
    requests: &[(&str, &Request)],
    claims: &Claims,
) -> BTreeMap<String, Result<Assignment, String>> {
    let mut out = BTreeMap::new();
    let mut holders = Holders::default();
    let mut sorted: Vec<(&str, &Request)> = requests.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));

    // 1. Services that hold GPUs keep them while their request is unchanged, so adding a
    //    service, whatever it asks, never moves them.
    let mut pending = Vec::new();
    for (name, req) in sorted.iter().filter(|(_, r)| r.count.is_some()) {
        // A hold is kept only while it still makes sense: the same request, GPUs that exist,
        // are free, are not named twice and still meet the policy (a BIOS change can move nodes).
        let kept = claims.claims.get(*name).filter(|c| c.request == fingerprint(req)).and_then(|c| {
            let gpus: Option<Vec<usize>> =
                c.gpus.iter().map(|pci| topology.gpus.iter().position(|g| &g.pci == pci)).collect();
            gpus.filter(|g| {
                let distinct: BTreeSet<usize> = g.iter().copied().collect();
                distinct.len() == g.len()
                    && g.len() == req.count.unwrap_or(0) as usize
                    && g.iter().all(|&i| holders.free_for(i, req.shared))
                    && meets_policy(topology, req.numa, g)
            })
        });
        match kept {
            Some(gpus) => {
                for &g in &gpus {
                    holders.take(g, name, req.shared);
                }
                let cdi = names_of(topology, &gpus);
                out.insert(name.to_string(), Ok(assignment(topology, req, gpus, cdi)));
            }
            None => pending.push((*name, *req)),
        }
    }
    // 2. Explicit GPUs.
    for (name, req) in sorted.iter().filter(|(_, r)| r.count.is_none()) {
        let result = explicit(topology, req, &holders);
        if let Ok(picked) = &result {
            for &g in &picked.whole {
                holders.take(g, name, req.shared);
            }
            for (slice, parent) in &picked.slices {
                holders.slices.entry(slice.clone()).or_default().push((name.to_string(), req.shared));
                if let Some(p) = parent {
                    holders.gpus.entry(*p).or_default().push((name.to_string(), Hold::Slices));
                }
            }
        }
        out.insert(
            name.to_string(),
            result.map(|picked| {
                let mut gpus = picked.whole.clone();
                gpus.extend(picked.slices.iter().filter_map(|(_, p)| *p));
                gpus.sort_unstable();
                gpus.dedup();
                assignment(topology, req, gpus, picked.cdi)
            }),
        );
    }
    // 3. The rest, in name order.
    for (name, req) in pending {
        let result = choose(topology, req, &holders);
        if let Ok(gpus) = &result {
            for &g in gpus {
                holders.take(g, name, req.shared);
            }
        }
        out.insert(
            name.to_string(),
            result.map(|gpus| {
                let cdi = names_of(topology, &gpus);
                assignment(topology, req, gpus, cdi)
            }),
        );
    }
    out
}

/// The CDI names of whole GPUs, in GPU order.
fn names_of(topology: &Topology, gpus: &[usize]) -> Vec<String> {
    let mut sorted = gpus.to_vec();
    sorted.sort_unstable();
    sorted.iter().filter_map(|&i| topology.gpus[i].cdi_name()).collect()
}

/// Whether GPUs already chosen (a recorded hold, explicit names) meet `policy` on this host.
fn meets_policy(topology: &Topology, policy: NumaPolicy, gpus: &[usize]) -> bool {
    let nodes: BTreeSet<u32> = gpus.iter().flat_map(|&i| topology.gpus[i].numa.iter().copied()).collect();
    let all_local = gpus.iter().all(|&i| !topology.gpus[i].numa.is_empty());
    match policy {
        NumaPolicy::None | NumaPolicy::BestEffort => true,
        NumaPolicy::SingleNumaNode => all_local && nodes.len() <= 1,
        NumaPolicy::Restricted => all_local && fewest_nodes(topology, gpus.len()).is_some_and(|k| nodes.len() <= k),
    }
}

fn assignment(topology: &Topology, req: &Request, mut gpus: Vec<usize>, cdi: Vec<String>) -> Assignment {
    gpus.sort_unstable();
    let given: Vec<Given> = gpus
        .iter()
        .map(|&i| {
            let g = &topology.gpus[i];
            Given { index: g.index, pci: g.pci.clone(), numa: g.numa.clone() }
        })
        .collect();
    let (nodes, cpus) = if req.numa == NumaPolicy::None {
        (Vec::new(), Vec::new())
    } else {
        let nodes: BTreeSet<u32> = given.iter().flat_map(|g| g.numa.iter().copied()).collect();
        let cpus: BTreeSet<u32> =
            nodes.iter().filter_map(|n| topology.node(*n)).flat_map(|n| n.cpus.iter().copied()).collect();
        // Memory binds only to nodes that have memory: a CPU-only node would leave none.
        let memory: Vec<u32> =
            nodes.iter().copied().filter(|n| topology.node(*n).is_none_or(|n| n.memory != Some(0))).collect();
        (memory, cpus.into_iter().collect())
    };
    Assignment { gpus: given, cdi, nodes, cpus, policy: req.numa, shared: req.shared }
}

/// `1 GPU`, `2 GPUs`.
fn gpus_n(n: usize) -> String {
    if n == 1 {
        "1 GPU".into()
    } else {
        format!("{n} GPUs")
    }
}

fn describe(topology: &Topology, i: usize) -> String {
    let g = &topology.gpus[i];
    format!("GPU {} ({})", g.index, g.pci)
}

/// What explicit `gpu.devices` resolve to.
struct Picked {
    /// Whole GPUs.
    whole: Vec<usize>,
    /// MIG slices by CDI name, with the GPU they are part of when known.
    slices: Vec<(String, Option<usize>)>,
    /// The CDI names for podman.
    cdi: Vec<String>,
}

/// The GPUs a CDI name gives on this host: those it is tied to, by name or by `GPU-` UUID;
/// every GPU of its kind for `…=all`. Empty when the host cannot tell.
fn gpus_of_cdi(topology: &Topology, name: &str) -> Vec<usize> {
    let (kind, device) = name.rsplit_once('=').unwrap_or((name, ""));
    let named: Vec<usize> = (0..topology.gpus.len())
        .filter(|&i| {
            let g = &topology.gpus[i];
            g.cdi.iter().any(|c| c == name)
                || g.cdi_name().as_deref() == Some(name)
                || (device.starts_with("GPU-") && g.uuid.as_deref() == Some(device))
        })
        .collect();
    if !named.is_empty() || device != "all" {
        return named;
    }
    (0..topology.gpus.len())
        .filter(|&i| topology.gpus[i].cdi_name().is_some_and(|c| c.rsplit_once('=').is_some_and(|(k, _)| k == kind)))
        .collect()
}

/// Resolves `gpu.devices`; checks holders and the policy against the nodes they sit on.
/// Long because each selector form (index, UUID, PCI address, CDI name) has its own match and
/// its own refusal, all against the same holders and policy.
fn explicit(topology: &Topology, req: &Request, holders: &Holders) -> Result<Picked, String> {
    let mut picked = Picked { whole: Vec::new(), slices: Vec::new(), cdi: Vec::new() };
    let known = || {
        if topology.gpus.is_empty() {
            "this host has no GPU".to_string()
        } else {
            format!(
                "GPUs here: {}",
                topology.gpus.iter().map(|g| format!("{} {}", g.index, g.pci)).collect::<Vec<_>>().join(", ")
            )
        }
    };
    let untied = |name: &str| {
        format!(
            "{name} is not tied to a GPU of this host (no CDI spec here names it with a PCI address), so numa = \"{}\" cannot be met and other services could be given the same GPU: name the GPU by index, UUID or PCI address, or set numa = \"none\" and gpu.shared = true",
            req.numa.name()
        )
    };
    for sel in &req.devices {
        let found: Vec<usize> = match sel {
            GpuSelector::Index(i) => topology.gpus.iter().position(|g| g.index == *i).into_iter().collect(),
            GpuSelector::Uuid(u) => {
                topology.gpus.iter().position(|g| g.uuid.as_deref() == Some(u.as_str())).into_iter().collect()
            }
            GpuSelector::Pci(p) => topology.gpus.iter().position(|g| &g.pci == p).into_iter().collect(),
            GpuSelector::Cdi(c) if crate::cdi::is_slice_name(c) => {
                // A MIG slice: exclusive by its own name; its GPU (`0` of `0:1`) gives the node.
                if !holders.slice_free_for(c, req.shared) {
                    return Err(format!("{c} is already given to another service (a MIG slice goes to one service unless all that use it set gpu.shared = true)"));
                }
                let (kind, device) = c.rsplit_once('=').unwrap_or((c, ""));
                let parent = device
                    .split_once(':')
                    .and_then(|(gpu, _)| gpus_of_cdi(topology, &format!("{kind}={gpu}")).first().copied());
                if parent.is_none() && req.numa != NumaPolicy::None {
                    return Err(untied(c));
                }
                if let Some(p) = parent
                    .filter(|&p| holders.gpus.get(&p).is_some_and(|h| h.iter().any(|(_, hold)| *hold != Hold::Slices)))
                {
                    return Err(format!(
                        "{} is given whole to {}, so its slice {c} is not free",
                        describe(topology, p),
                        holders.who(p).unwrap_or_default()
                    ));
                }
                picked.slices.push((c.clone(), parent));
                picked.cdi.push(c.clone());
                continue;
            }
            GpuSelector::Cdi(c) => {
                let gpus = gpus_of_cdi(topology, c);
                if gpus.is_empty() {
                    if req.numa != NumaPolicy::None || !req.shared {
                        return Err(untied(c));
                    }
                    picked.cdi.push(c.clone());
                    continue;
                }
                gpus
            }
        };
        if found.is_empty() {
            return Err(format!("{sel} is not a GPU of this host ({})", known()));
        }
        for &i in &found {
            if !holders.free_for(i, req.shared) {
                let who = holders.who(i).unwrap_or_default();
                return Err(format!(
                    "{} is already given to {who} (a GPU goes to one service unless all that use it set gpu.shared = true)",
                    describe(topology, i)
                ));
            }
            if !picked.whole.contains(&i) {
                picked.whole.push(i);
            }
        }
        // The name the file wrote is what podman gets; indexes, UUIDs and addresses become the
        // GPU's own CDI name.
        let name = match sel {
            GpuSelector::Cdi(c) => Some(c.clone()),
            _ => topology.gpus[found[0]].cdi_name(),
        };
        if let Some(name) = name.filter(|n| !picked.cdi.contains(n)) {
            picked.cdi.push(name);
        }
    }
    let mut gpus = picked.whole.clone();
    gpus.extend(picked.slices.iter().filter_map(|(_, p)| *p));
    let nodes: BTreeSet<u32> = gpus.iter().flat_map(|&i| topology.gpus[i].numa.iter().copied()).collect();
    let no_locality: Vec<String> =
        gpus.iter().filter(|&&i| topology.gpus[i].numa.is_empty()).map(|&i| describe(topology, i)).collect();
    match req.numa {
        NumaPolicy::SingleNumaNode | NumaPolicy::Restricted if !no_locality.is_empty() => Err(format!(
            "{}: {} {} no NUMA locality (the firmware gives none); use numa = \"best-effort\" or \"none\"",
            req.numa.name(),
            no_locality.join(", "),
            if no_locality.len() == 1 { "has" } else { "have" }
        )),
        NumaPolicy::SingleNumaNode if nodes.len() > 1 => Err(format!(
            "single-numa-node: the GPUs named sit on nodes {}: {}",
            list(&nodes.iter().copied().collect::<Vec<_>>()),
            by_node(topology, &gpus)
        )),
        NumaPolicy::Restricted if !meets_policy(topology, NumaPolicy::Restricted, &gpus) => Err(format!(
            "restricted: {} fit on {} node(s) here, but the GPUs named span {}: {}",
            gpus_n(gpus.len()),
            fewest_nodes(topology, gpus.len()).unwrap_or(0),
            nodes.len(),
            by_node(topology, &gpus)
        )),
        _ => Ok(picked),
    }
}

/// `node 0: GPU 0,1; node 1: GPU 2` for the given GPUs.
fn by_node(topology: &Topology, gpus: &[usize]) -> String {
    let mut per: BTreeMap<Vec<u32>, Vec<u32>> = BTreeMap::new();
    for &i in gpus {
        let g = &topology.gpus[i];
        per.entry(g.numa.clone()).or_default().push(g.index);
    }
    per.iter()
        .map(|(n, gs)| {
            let ids = gs.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            match n.len() {
                0 => format!("no node: GPU {ids}"),
                1 => format!("node {}: GPU {ids}", n[0]),
                _ => format!("nodes {}: GPU {ids}", list(n)),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The GPUs local to exactly the nodes in `set` (their locality is within it).
fn local_to(topology: &Topology, set: &[u32]) -> Vec<usize> {
    (0..topology.gpus.len())
        .filter(|&i| {
            let numa = &topology.gpus[i].numa;
            !numa.is_empty() && numa.iter().all(|n| set.contains(n))
        })
        .collect()
}

/// Every `k`-subset of `items`, in lexicographic order.
fn subsets(items: &[u32], k: usize) -> Vec<Vec<u32>> {
    fn go(items: &[u32], k: usize, start: usize, cur: &mut Vec<u32>, out: &mut Vec<Vec<u32>>) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..items.len() {
            if items.len() - i < k - cur.len() {
                break;
            }
            cur.push(items[i]);
            go(items, k, i + 1, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    if k <= items.len() {
        go(items, k, 0, &mut Vec::new(), &mut out);
    }
    out
}

/// The nodes some GPU is local to, in id order: the only nodes placement ever chooses.
fn gpu_nodes(topology: &Topology) -> Vec<u32> {
    let set: BTreeSet<u32> = topology.gpus.iter().flat_map(|g| g.numa.iter().copied()).collect();
    set.into_iter().collect()
}

/// The fewest nodes that hold `count` GPUs on this host when nothing is taken; `None` when even
/// every node together does not (GPUs without locality do not count). Greedy, largest first:
/// exact when each GPU is local to one node, as on every host we know.
fn fewest_nodes(topology: &Topology, count: usize) -> Option<usize> {
    let mut sizes: Vec<usize> = gpu_nodes(topology).iter().map(|&n| local_to(topology, &[n]).len()).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let mut total = 0;
    for (k, size) in sizes.iter().enumerate() {
        total += size;
        if total >= count {
            return Some(k + 1);
        }
    }
    None
}

/// How many `k`-subsets of `n` nodes placement looks at before it settles for a greedy choice.
const MAX_SUBSETS: u64 = 4096;

fn binomial(n: usize, k: usize) -> u64 {
    let k = k.min(n - k.min(n));
    (0..k).fold(1u64, |acc, i| acc.saturating_mul((n - i) as u64) / (i as u64 + 1))
}

/// The best `k`-node set with `count` free GPUs for this request: fewest spare free GPUs, then
/// lowest node numbers. Returns the GPUs. Only nodes with GPUs count; when there are too many
/// combinations, the `k` nodes with the most free GPUs are taken.
fn best_set(topology: &Topology, req: &Request, holders: &Holders, k: usize, count: usize) -> Option<Vec<usize>> {
    let ids = gpu_nodes(topology);
    let free_on = |set: &[u32]| -> Vec<usize> {
        local_to(topology, set).into_iter().filter(|&i| holders.free_for(i, req.shared)).collect()
    };
    let sets = if binomial(ids.len(), k) <= MAX_SUBSETS {
        subsets(&ids, k)
    } else {
        let mut by_free: Vec<u32> = ids.clone();
        by_free.sort_by_key(|&n| (std::cmp::Reverse(free_on(&[n]).len()), n));
        let mut top: Vec<u32> = by_free.into_iter().take(k).collect();
        top.sort_unstable();
        vec![top]
    };
    sets.into_iter()
        .filter_map(|set| {
            let free = free_on(&set);
            (free.len() >= count).then(|| (free.len() - count, free))
        })
        .min_by_key(|(spare, _)| *spare)
        .map(|(_, free)| free.into_iter().take(count).collect())
}

/// Chooses `gpu.count` GPUs under the request's policy.
fn choose(topology: &Topology, req: &Request, holders: &Holders) -> Result<Vec<usize>, String> {
    let count = req.count.unwrap_or(0) as usize;
    let total = topology.gpus.len();
    let free: Vec<usize> = (0..total).filter(|&i| holders.free_for(i, req.shared)).collect();
    let policy = req.numa.name();
    if count > total {
        let have = if total == 0 { "this host has no GPU".to_string() } else { format!("this host has {total}") };
        return Err(format!("{} asked, {have}", gpus_n(count)));
    }
    // What the host cannot do at all comes before what others hold.
    if req.numa == NumaPolicy::SingleNumaNode {
        let most = topology.nodes.iter().map(|n| local_to(topology, &[n.id]).len()).max().unwrap_or(0);
        if most == 0 {
            return Err(format!("{policy}: no GPU here reports a NUMA node (the firmware gives no locality); use numa = \"best-effort\" or \"none\""));
        }
        if most < count {
            return Err(format!(
                "{policy}: {} asked, at most {most} share a node ({})",
                gpus_n(count),
                layout(topology, None)
            ));
        }
    }
    if req.numa == NumaPolicy::Restricted && fewest_nodes(topology, count).is_none() {
        return Err(format!(
            "{policy}: {} asked, only {} report a NUMA node ({}); use numa = \"best-effort\" or \"none\"",
            gpus_n(count),
            local_to(topology, &topology.nodes.iter().map(|n| n.id).collect::<Vec<_>>()).len(),
            layout(topology, None)
        ));
    }
    if free.len() < count {
        return Err(format!("{} asked, {} free: {}", gpus_n(count), free.len(), held_list(topology, holders)));
    }
    match req.numa {
        NumaPolicy::None => Ok(free.into_iter().take(count).collect()),
        NumaPolicy::SingleNumaNode => best_set(topology, req, holders, 1, count).ok_or_else(|| {
            format!("{policy}: {} asked, no node has {count} free ({})", gpus_n(count), layout(topology, Some(holders)))
        }),
        NumaPolicy::Restricted => {
            let k = fewest_nodes(topology, count).unwrap_or(0);
            best_set(topology, req, holders, k, count).ok_or_else(|| {
                format!(
                    "{policy}: {} fit on {k} node(s) here, but no {k} node(s) have {count} free ({})",
                    gpus_n(count),
                    layout(topology, Some(holders))
                )
            })
        }
        NumaPolicy::BestEffort => {
            let first = fewest_nodes(topology, count).unwrap_or(usize::MAX);
            for k in first..=gpu_nodes(topology).len() {
                if let Some(gpus) = best_set(topology, req, holders, k, count) {
                    return Ok(gpus);
                }
            }
            // Not enough free GPUs with a locality: take local ones first, then the others.
            let mut order = free;
            order.sort_by_key(|&i| (topology.gpus[i].numa.is_empty(), i));
            Ok(order.into_iter().take(count).collect())
        }
    }
}

/// `node 0: GPU 0,1; node 1: GPU 2,3`, with holders when `holders` is given.
fn layout(topology: &Topology, holders: Option<&Holders>) -> String {
    let mut parts = Vec::new();
    for node in &topology.nodes {
        let gpus = local_to(topology, &[node.id]);
        if gpus.is_empty() {
            continue;
        }
        let ids: Vec<String> = gpus
            .iter()
            .map(|&i| {
                let index = topology.gpus[i].index;
                match holders.and_then(|h| h.who(i)) {
                    Some(who) => format!("{index} held by {who}"),
                    None => index.to_string(),
                }
            })
            .collect();
        let sep = if holders.is_some() { ", " } else { "," };
        parts.push(format!("node {}: GPU {}", node.id, ids.join(sep)));
    }
    let stray: Vec<String> = topology.gpus.iter().filter(|g| g.numa.is_empty()).map(|g| g.index.to_string()).collect();
    if !stray.is_empty() {
        parts.push(format!("no node: GPU {}", stray.join(",")));
    }
    parts.join("; ")
}

fn held_list(topology: &Topology, holders: &Holders) -> String {
    let held: Vec<String> = (0..topology.gpus.len())
        .filter_map(|i| holders.who(i).map(|who| format!("GPU {} held by {who}", topology.gpus[i].index)))
        .collect();
    held.join(", ")
}
