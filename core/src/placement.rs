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
    pub gpus: Vec<Given>,
    /// Explicit CDI names that are no one GPU of the host (`nvidia.com/gpu=all`), passed on.
    pub other_cdi: Vec<String>,
    /// Memory nodes to bind to; empty: not bound.
    pub nodes: Vec<u32>,
    /// CPUs to bind to; empty: not bound.
    pub cpus: Vec<u32>,
    pub policy: NumaPolicy,
    pub shared: bool,
}

impl Assignment {
    /// Every CDI name the container gets.
    pub fn cdi_names(&self) -> Vec<String> {
        self.gpus.iter().map(|g| g.cdi.clone()).chain(self.other_cdi.iter().cloned()).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Given {
    pub index: u32,
    pub pci: String,
    pub numa: Vec<u32>,
    pub cdi: String,
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
                Ok(c) => (Claims::default(), Some(format!("{}: version {} is not known; ignored", path.display(), c.version))),
                Err(e) => (Claims::default(), Some(format!("{}: {e}; ignored", path.display()))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Claims::default(), None),
            Err(e) => (Claims::default(), Some(format!("{}: {e}; ignored", path.display()))),
        }
    }
}

/// What must stay the same for a recorded hold to be kept.
pub fn fingerprint(request: &Request) -> String {
    format!(
        "count={},numa={},shared={}",
        request.count.unwrap_or(0),
        request.numa.name(),
        request.shared
    )
}

/// Holders of each GPU (by position in `topology.gpus`).
#[derive(Default)]
struct Holders(BTreeMap<usize, Vec<(String, bool)>>);

impl Holders {
    fn free_for(&self, gpu: usize, shared: bool) -> bool {
        match self.0.get(&gpu) {
            None => true,
            Some(h) => shared && h.iter().all(|(_, s)| *s),
        }
    }
    fn take(&mut self, gpu: usize, service: &str, shared: bool) {
        self.0.entry(gpu).or_default().push((service.to_string(), shared));
    }
    fn who(&self, gpu: usize) -> Option<String> {
        self.0.get(&gpu).map(|h| h.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join("+"))
    }
}

/// Places every request. Results are keyed by service name; an error says why, in words a
/// sysadmin can act on.
pub fn place(topology: &Topology, requests: &[(&str, &Request)], claims: &Claims) -> BTreeMap<String, Result<Assignment, String>> {
    let mut out = BTreeMap::new();
    let mut holders = Holders::default();
    let mut sorted: Vec<(&str, &Request)> = requests.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));

    // 1. Services that hold GPUs keep them while their request is unchanged, so adding a
    //    service, whatever it asks, never moves them.
    let mut pending = Vec::new();
    for (name, req) in sorted.iter().filter(|(_, r)| r.count.is_some()) {
        let kept = claims.claims.get(*name).filter(|c| c.request == fingerprint(req)).and_then(|c| {
            let gpus: Option<Vec<usize>> = c.gpus.iter().map(|pci| topology.gpus.iter().position(|g| &g.pci == pci)).collect();
            gpus.filter(|g| g.len() == req.count.unwrap_or(0) as usize && g.iter().all(|&i| holders.free_for(i, req.shared)))
        });
        match kept {
            Some(gpus) => {
                for &g in &gpus {
                    holders.take(g, name, req.shared);
                }
                out.insert(name.to_string(), Ok(assignment(topology, req, gpus, Vec::new())));
            }
            None => pending.push((*name, *req)),
        }
    }
    // 2. Explicit GPUs.
    for (name, req) in sorted.iter().filter(|(_, r)| r.count.is_none()) {
        let result = explicit(topology, req, &holders);
        if let Ok(picked) = &result {
            for &g in &picked.0 {
                holders.take(g, name, req.shared);
            }
        }
        out.insert(name.to_string(), result.map(|(gpus, other)| assignment(topology, req, gpus, other)));
    }
    // 3. The rest, in name order.
    for (name, req) in pending {
        let result = choose(topology, req, &holders);
        if let Ok(gpus) = &result {
            for &g in gpus {
                holders.take(g, name, req.shared);
            }
        }
        out.insert(name.to_string(), result.map(|gpus| assignment(topology, req, gpus, Vec::new())));
    }
    out
}

fn assignment(topology: &Topology, req: &Request, mut gpus: Vec<usize>, other_cdi: Vec<String>) -> Assignment {
    gpus.sort_unstable();
    let given: Vec<Given> = gpus
        .iter()
        .map(|&i| {
            let g = &topology.gpus[i];
            Given { index: g.index, pci: g.pci.clone(), numa: g.numa.clone(), cdi: g.cdi_name().unwrap_or_default() }
        })
        .collect();
    let (nodes, cpus) = if req.numa == NumaPolicy::None {
        (Vec::new(), Vec::new())
    } else {
        let nodes: BTreeSet<u32> = given.iter().flat_map(|g| g.numa.iter().copied()).collect();
        let cpus: BTreeSet<u32> = nodes.iter().filter_map(|n| topology.node(*n)).flat_map(|n| n.cpus.iter().copied()).collect();
        (nodes.into_iter().collect(), cpus.into_iter().collect())
    };
    Assignment { gpus: given, other_cdi, nodes, cpus, policy: req.numa, shared: req.shared }
}

/// `1 GPU`, `2 GPUs`.
fn gpus_n(n: usize) -> String {
    if n == 1 { "1 GPU".into() } else { format!("{n} GPUs") }
}

fn describe(topology: &Topology, i: usize) -> String {
    let g = &topology.gpus[i];
    format!("GPU {} ({})", g.index, g.pci)
}

/// Resolves `gpu.devices`; checks the policy against the nodes they sit on.
fn explicit(topology: &Topology, req: &Request, holders: &Holders) -> Result<(Vec<usize>, Vec<String>), String> {
    let mut gpus = Vec::new();
    let mut other = Vec::new();
    let known = || {
        if topology.gpus.is_empty() {
            "this host has no GPU".to_string()
        } else {
            format!("GPUs here: {}", topology.gpus.iter().map(|g| format!("{} {}", g.index, g.pci)).collect::<Vec<_>>().join(", "))
        }
    };
    for sel in &req.devices {
        let found = match sel {
            GpuSelector::Index(i) => topology.gpus.iter().position(|g| g.index == *i),
            GpuSelector::Uuid(u) => topology.gpus.iter().position(|g| g.uuid.as_deref() == Some(u.as_str())),
            GpuSelector::Pci(p) => topology.gpus.iter().position(|g| &g.pci == p),
            GpuSelector::Cdi(c) => {
                match topology.gpus.iter().position(|g| g.cdi.contains(c) || g.cdi_name().as_deref() == Some(c.as_str())) {
                    Some(i) => Some(i),
                    None => {
                        other.push(c.clone());
                        continue;
                    }
                }
            }
        };
        let Some(i) = found else {
            return Err(format!("{sel} is not a GPU of this host ({})", known()));
        };
        if !holders.free_for(i, req.shared) {
            let who = holders.who(i).unwrap_or_default();
            return Err(format!(
                "{} is already given to {who} (a GPU goes to one service unless all that use it set gpu.shared = true)",
                describe(topology, i)
            ));
        }
        if !gpus.contains(&i) {
            gpus.push(i);
        }
    }
    let nodes: BTreeSet<u32> = gpus.iter().flat_map(|&i| topology.gpus[i].numa.iter().copied()).collect();
    let no_locality: Vec<String> = gpus.iter().filter(|&&i| topology.gpus[i].numa.is_empty()).map(|&i| describe(topology, i)).collect();
    match req.numa {
        NumaPolicy::SingleNumaNode | NumaPolicy::Restricted if !no_locality.is_empty() => Err(format!(
            "{}: {} report no NUMA locality (the firmware gives none); use numa = \"best-effort\" or \"none\"",
            req.numa.name(),
            no_locality.join(", ")
        )),
        NumaPolicy::SingleNumaNode if nodes.len() > 1 => Err(format!(
            "single-numa-node: the GPUs named sit on nodes {}: {}",
            list(&nodes.iter().copied().collect::<Vec<_>>()),
            by_node(topology, &gpus)
        )),
        NumaPolicy::Restricted => {
            let least = fewest_nodes(topology, gpus.len());
            if least.is_some_and(|m| nodes.len() > m) {
                Err(format!(
                    "restricted: {} GPUs fit on {} node(s) here, but the GPUs named span {}: {}",
                    gpus.len(),
                    least.unwrap_or(0),
                    nodes.len(),
                    by_node(topology, &gpus)
                ))
            } else {
                Ok((gpus, other))
            }
        }
        _ => Ok((gpus, other)),
    }
}

/// `node 0: GPU 0,1; node 1: GPU 2` for the given GPUs.
fn by_node(topology: &Topology, gpus: &[usize]) -> String {
    let mut per: BTreeMap<Option<u32>, Vec<u32>> = BTreeMap::new();
    for &i in gpus {
        let g = &topology.gpus[i];
        let key = if g.numa.len() == 1 { Some(g.numa[0]) } else { None };
        per.entry(key).or_default().push(g.index);
    }
    per.iter()
        .map(|(n, gs)| {
            let ids = gs.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            match n {
                Some(n) => format!("node {n}: GPU {ids}"),
                None => format!("no node: GPU {ids}"),
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

/// The fewest nodes that hold `count` GPUs on this host when nothing is taken; `None` when even
/// every node together does not (GPUs without locality do not count).
fn fewest_nodes(topology: &Topology, count: usize) -> Option<usize> {
    let ids: Vec<u32> = topology.nodes.iter().map(|n| n.id).collect();
    (1..=ids.len()).find(|&k| subsets(&ids, k).iter().any(|s| local_to(topology, s).len() >= count))
}

/// The best `k`-node set with `count` free GPUs for this request: fewest spare free GPUs, then
/// lowest node numbers. Returns the GPUs.
fn best_set(topology: &Topology, req: &Request, holders: &Holders, k: usize, count: usize) -> Option<Vec<usize>> {
    let ids: Vec<u32> = topology.nodes.iter().map(|n| n.id).collect();
    subsets(&ids, k)
        .into_iter()
        .filter_map(|set| {
            let free: Vec<usize> = local_to(topology, &set).into_iter().filter(|&i| holders.free_for(i, req.shared)).collect();
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
            return Err(format!("{policy}: {} asked, at most {most} share a node ({})", gpus_n(count), layout(topology, None)));
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
        NumaPolicy::SingleNumaNode => {
            best_set(topology, req, holders, 1, count).ok_or_else(|| {
                format!("{policy}: {} asked, no node has {count} free ({})", gpus_n(count), layout(topology, Some(holders)))
            })
        }
        NumaPolicy::Restricted => {
            let k = fewest_nodes(topology, count).unwrap_or(topology.nodes.len());
            best_set(topology, req, holders, k, count).ok_or_else(|| {
                format!("{policy}: {} fit on {k} node(s) here, but no {k} node(s) have {count} free ({})", gpus_n(count), layout(topology, Some(holders)))
            })
        }
        NumaPolicy::BestEffort => {
            let first = fewest_nodes(topology, count).unwrap_or(topology.nodes.len().max(1));
            for k in first..=topology.nodes.len() {
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
