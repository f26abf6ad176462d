//! Placement over real machines: the 8 hwloc exports in ../shared/fixtures/topology (their
//! SOURCES.md gives each GPU's NUMA node, which the first test checks) and the H200 host in
//! tests/fixtures/h200. Each test asks what a sysadmin would ask and checks the GPUs, CPUs and
//! memory nodes a service gets, or the words of the refusal.

#![allow(clippy::type_complexity)] // expectation tables read best inline

use std::path::{Path, PathBuf};

use aicontainers::diag::Diagnostic;
use aicontainers::placement::{self, Assignment, Claim, Claims};
use aicontainers::spec::{Gpu, GpuSelector, NumaPolicy};
use aicontainers::topology::{list, Topology};

fn fixture(name: &str) -> Topology {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo").to_owned();
    let path: PathBuf = if name == "h200" {
        repo.join("tests/fixtures/h200/host-topology.xml")
    } else {
        repo.join("../shared/fixtures/topology").join(name)
    };
    assert!(
        path.exists(),
        "{} is missing: these tests read the shared hwloc fixtures next to the repository (../shared/fixtures), which CI provides",
        path.display()
    );
    Topology::from_xml(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn count(n: u32, numa: NumaPolicy) -> Gpu {
    Gpu { devices: Vec::new(), count: Some(n), numa, shared: false, at: Diagnostic::file("test.toml", "") }
}

fn devices(devices: Vec<GpuSelector>, numa: NumaPolicy) -> Gpu {
    Gpu { devices, count: None, numa, shared: false, at: Diagnostic::file("test.toml", "") }
}

/// Places `requests` (name, request) and returns each result.
fn place(t: &Topology, requests: &[(&str, Gpu)], claims: &Claims) -> Vec<(String, Result<Assignment, String>)> {
    let refs: Vec<(&str, &Gpu)> = requests.iter().map(|(n, g)| (*n, g)).collect();
    placement::place(t, &refs, claims).into_iter().collect()
}

fn one(t: &Topology, req: Gpu) -> Result<Assignment, String> {
    place(t, &[("svc", req)], &Claims::default()).remove(0).1
}

/// GPU indexes, memory nodes and the CPU list, the way `aictl render` shows them.
fn summary(a: &Assignment) -> (Vec<u32>, Vec<u32>, String) {
    (a.gpus.iter().map(|g| g.index).collect(), a.nodes.clone(), list(&a.cpus))
}

use NumaPolicy::{BestEffort, None as NoPolicy, Restricted, SingleNumaNode};

#[test]
fn every_fixture_loads_with_each_gpu_on_its_numa_node() {
    // (file, [(PCI address, NUMA nodes)]) as SOURCES.md lists them; empty: no locality.
    let expected: &[(&str, &[(&str, &[u32])])] = &[
        (
            "hwloc-nvidiaDGX2-2s-16xV100.xml",
            &[
                ("0000:34:00.0", &[0]),
                ("0000:36:00.0", &[0]),
                ("0000:39:00.0", &[0]),
                ("0000:3b:00.0", &[0]),
                ("0000:57:00.0", &[0]),
                ("0000:59:00.0", &[0]),
                ("0000:5c:00.0", &[0]),
                ("0000:5e:00.0", &[0]),
                ("0000:b7:00.0", &[1]),
                ("0000:b9:00.0", &[1]),
                ("0000:bc:00.0", &[1]),
                ("0000:be:00.0", &[1]),
                ("0000:e0:00.0", &[1]),
                ("0000:e2:00.0", &[1]),
                ("0000:e5:00.0", &[1]),
                ("0000:e7:00.0", &[1]),
            ],
        ),
        (
            "hwloc-power8-2s-4xP100-nvlink.xml",
            &[("0002:01:00.0", &[0]), ("0003:01:00.0", &[0]), ("000a:01:00.0", &[1]), ("000b:01:00.0", &[1])],
        ),
        (
            "fluxcore-ipa20-xe8640-spr-snc4-4xH100.xml",
            &[("0000:4e:00.0", &[3]), ("0000:5f:00.0", &[1]), ("0000:cb:00.0", &[7]), ("0000:db:00.0", &[5])],
        ),
        (
            "psmgmt-jwb0004-juwelsbooster-epyc-nps4-4xA100.xml",
            &[("0000:03:00.0", &[3]), ("0000:44:00.0", &[1]), ("0000:84:00.0", &[7]), ("0000:c4:00.0", &[5])],
        ),
        ("psmgmt-j3c053-juropa3-2s-2xK20X-nolocality.v1.xml", &[("0000:01:00.0", &[]), ("0000:82:00.0", &[])]),
        ("psmgmt-dpesb01-1s-noNUMAobj-1xV100.v1.xml", &[("0000:65:00.0", &[0])]),
        (
            "mpibind-g4dnmetal-2s-8xT4.xml",
            &[
                ("0000:18:00.0", &[0]),
                ("0000:19:00.0", &[0]),
                ("0000:35:00.0", &[0]),
                ("0000:36:00.0", &[0]),
                ("0000:e7:00.0", &[1]),
                ("0000:e8:00.0", &[1]),
                ("0000:f4:00.0", &[1]),
                ("0000:f5:00.0", &[1]),
            ],
        ),
        (
            "mpibind-coral-lassen-power9-ac922-4xV100.xml",
            &[("0004:04:00.0", &[0]), ("0004:05:00.0", &[0]), ("0035:03:00.0", &[8]), ("0035:04:00.0", &[8])],
        ),
        ("h200", &[("0000:00:06.0", &[0])]),
    ];
    for (file, gpus) in expected {
        let t = fixture(file);
        let got: Vec<(&str, &[u32])> = t.gpus.iter().map(|g| (g.pci.as_str(), g.numa.as_slice())).collect();
        assert_eq!(&got, gpus, "{file}");
        // GPUs are numbered in PCI bus order.
        assert!(t.gpus.windows(2).all(|w| w[0].pci < w[1].pci && w[0].index + 1 == w[1].index), "{file}");
        assert!(!t.nodes.is_empty(), "{file}: at least one NUMA node");
    }
}

#[test]
fn numa_node_ids_and_cpus_are_the_kernels() {
    let lassen = fixture("mpibind-coral-lassen-power9-ac922-4xV100.xml");
    let nodes: Vec<(u32, String)> = lassen.nodes.iter().map(|n| (n.id, list(&n.cpus))).collect();
    assert_eq!(nodes, [(0, "8-87".to_string()), (8, "96-175".to_string())]);
    let snc = fixture("fluxcore-ipa20-xe8640-spr-snc4-4xH100.xml");
    assert_eq!(snc.nodes.len(), 8);
    assert_eq!(list(&snc.node(3).expect("node 3").cpus), "42-55,154-167");
    let single = fixture("psmgmt-dpesb01-1s-noNUMAobj-1xV100.v1.xml");
    assert_eq!(single.nodes.iter().map(|n| (n.id, list(&n.cpus))).collect::<Vec<_>>(), [(0, "0-15".to_string())]);
}

#[test]
fn two_socket_t4_host_under_each_policy() {
    let t = fixture("mpibind-g4dnmetal-2s-8xT4.xml");
    let node0 = "0-23,48-71".to_string();
    assert_eq!(summary(&one(&t, count(2, SingleNumaNode)).expect("fits")), (vec![0, 1], vec![0], node0.clone()));
    assert_eq!(summary(&one(&t, count(3, BestEffort)).expect("fits")), (vec![0, 1, 2], vec![0], node0.clone()));
    assert_eq!(summary(&one(&t, count(4, Restricted)).expect("fits")), (vec![0, 1, 2, 3], vec![0], node0));
    // 6 GPUs need both nodes: restricted accepts that (it is the fewest possible).
    assert_eq!(
        summary(&one(&t, count(6, Restricted)).expect("fits")),
        (vec![0, 1, 2, 3, 4, 5], vec![0, 1], "0-95".to_string())
    );
    // none: GPUs, no binding.
    assert_eq!(summary(&one(&t, count(2, NoPolicy)).expect("fits")), (vec![0, 1], vec![], String::new()));
    assert_eq!(
        one(&t, count(5, SingleNumaNode)).expect_err("refused"),
        "single-numa-node: 5 GPUs asked, at most 4 share a node (node 0: GPU 0,1,2,3; node 1: GPU 4,5,6,7)"
    );
    assert_eq!(one(&t, count(9, BestEffort)).expect_err("refused"), "9 GPUs asked, this host has 8");
}

#[test]
fn services_share_the_host_without_sharing_gpus() {
    let t = fixture("mpibind-g4dnmetal-2s-8xT4.xml");
    let results = place(
        &t,
        &[("a", count(2, SingleNumaNode)), ("b", count(3, SingleNumaNode)), ("c", count(3, SingleNumaNode))],
        &Claims::default(),
    );
    let got: Vec<(String, Vec<u32>)> =
        results.iter().map(|(n, r)| (n.clone(), r.as_ref().map(|a| summary(a).0).unwrap_or_default())).collect();
    // a: node 0; b: node 0 has only 2 left, so node 1; c: no node has 3 left.
    assert_eq!(got[0], ("a".to_string(), vec![0, 1]));
    assert_eq!(got[1], ("b".to_string(), vec![4, 5, 6]));
    assert_eq!(
        results[2].1.as_ref().expect_err("c refused"),
        "single-numa-node: 3 GPUs asked, no node has 3 free (node 0: GPU 0 held by a, 1 held by a, 2, 3; node 1: GPU 4 held by b, 5 held by b, 6 held by b, 7)"
    );
    // Best fit: a 1-GPU request goes where it leaves the most room (node 1 has 1 free, node 0 has 2).
    let results = place(
        &t,
        &[("a", count(2, SingleNumaNode)), ("b", count(3, SingleNumaNode)), ("c", count(1, SingleNumaNode))],
        &Claims::default(),
    );
    assert_eq!(summary(results[2].1.as_ref().expect("c fits")).0, vec![7]);
}

#[test]
fn adding_a_service_does_not_move_services_that_hold_their_gpus() {
    let t = fixture("mpibind-g4dnmetal-2s-8xT4.xml");
    let before =
        place(&t, &[("chat", count(2, SingleNumaNode)), ("embed", count(1, SingleNumaNode))], &Claims::default());
    let mut claims = Claims { version: 1, ..Claims::default() };
    for (name, r) in &before {
        let a = r.as_ref().expect("placed");
        let req = if name == "chat" { count(2, SingleNumaNode) } else { count(1, SingleNumaNode) };
        claims.claims.insert(
            name.clone(),
            Claim { request: placement::fingerprint(&req), gpus: a.gpus.iter().map(|g| g.pci.clone()).collect() },
        );
    }
    // "aaa" sorts first: without the claims it would take GPUs 0,1 from chat.
    let after = place(
        &t,
        &[("aaa", count(2, SingleNumaNode)), ("chat", count(2, SingleNumaNode)), ("embed", count(1, SingleNumaNode))],
        &claims,
    );
    for (name, r) in &before {
        let now = after.iter().find(|(n, _)| n == name).expect("still there");
        assert_eq!(now.1.as_ref().map(summary), r.as_ref().map(summary), "{name} moved");
    }
    let aaa = summary(after[0].1.as_ref().expect("aaa placed"));
    assert!(aaa.0.iter().all(|g| ![0, 1, 2].contains(g)), "aaa took a held GPU: {aaa:?}");
    // Nor does a service that names a held GPU: it is refused.
    let named = place(
        &t,
        &[
            ("aaa", devices(vec![GpuSelector::Index(0)], NoPolicy)),
            ("chat", count(2, SingleNumaNode)),
            ("embed", count(1, SingleNumaNode)),
        ],
        &claims,
    );
    assert_eq!(
        named[0].1.as_ref().expect_err("aaa refused"),
        "GPU 0 (0000:18:00.0) is already given to chat (a GPU goes to one service unless all that use it set gpu.shared = true)"
    );
    assert_eq!(summary(named[1].1.as_ref().expect("chat")).0, vec![0, 1]);
    // A changed request lets go: chat now asks for 3 and is placed afresh.
    let changed = place(&t, &[("chat", count(3, SingleNumaNode)), ("embed", count(1, SingleNumaNode))], &claims);
    assert_eq!(summary(changed[0].1.as_ref().expect("chat")).0.len(), 3);
}

#[test]
fn shared_gpus_only_between_services_that_all_say_so() {
    let t = fixture("h200");
    let mut a = count(1, SingleNumaNode);
    a.shared = true;
    let mut b = count(1, SingleNumaNode);
    b.shared = true;
    let results = place(&t, &[("a", a.clone()), ("b", b), ("c", count(1, NoPolicy))], &Claims::default());
    assert_eq!(summary(results[0].1.as_ref().expect("a")).0, vec![0]);
    assert_eq!(summary(results[1].1.as_ref().expect("b shares")).0, vec![0]);
    assert_eq!(results[2].1.as_ref().expect_err("c does not share"), "1 GPU asked, 0 free: GPU 0 held by a+b");
    // Explicit requests conflict the same way.
    let results = place(
        &t,
        &[
            ("x", devices(vec![GpuSelector::Index(0)], NoPolicy)),
            ("y", devices(vec![GpuSelector::Pci("0000:00:06.0".into())], NoPolicy)),
        ],
        &Claims::default(),
    );
    assert!(results[0].1.is_ok());
    assert_eq!(
        results[1].1.as_ref().expect_err("y refused"),
        "GPU 0 (0000:00:06.0) is already given to x (a GPU goes to one service unless all that use it set gpu.shared = true)"
    );
}

#[test]
fn the_h200_host_pins_to_its_only_node() {
    let t = fixture("h200");
    assert_eq!(summary(&one(&t, count(1, SingleNumaNode)).expect("fits")), (vec![0], vec![0], "0-15".to_string()));
    let a = one(&t, devices(vec![GpuSelector::Uuid("GPU-fc549a0c-02eb-8d42-5960-b2eea948f942".into())], BestEffort));
    // The XML has no NVML OS device, so no UUID: the refusal lists what is there.
    assert_eq!(
        a.expect_err("no uuid in the file"),
        "GPU-fc549a0c-02eb-8d42-5960-b2eea948f942 is not a GPU of this host (GPUs here: 0 0000:00:06.0)"
    );
    assert_eq!(
        one(&t, devices(vec![GpuSelector::Index(0)], SingleNumaNode)).expect("index 0").cdi,
        ["nvidia.com/gpu=0"]
    );
}

#[test]
fn dgx2_sixteen_gpus_on_two_nodes() {
    let t = fixture("hwloc-nvidiaDGX2-2s-16xV100.xml");
    assert_eq!(
        summary(&one(&t, count(8, SingleNumaNode)).expect("fits")),
        ((0..8).collect(), vec![0], "0-1".to_string())
    );
    assert_eq!(
        one(&t, count(9, SingleNumaNode)).expect_err("refused"),
        "single-numa-node: 9 GPUs asked, at most 8 share a node (node 0: GPU 0,1,2,3,4,5,6,7; node 1: GPU 8,9,10,11,12,13,14,15)"
    );
    assert_eq!(summary(&one(&t, count(9, Restricted)).expect("two nodes are the fewest")).1, vec![0, 1]);
    // By UUID (the file has NVML OS devices with UUIDs).
    let a =
        one(&t, devices(vec![GpuSelector::Uuid("GPU-27ce06e8-97e8-a3d3-f1e7-f81e0dff7929".into())], SingleNumaNode))
            .expect("uuid");
    assert_eq!(summary(&a), (vec![8], vec![1], "24-25".to_string()));
    // Explicit GPUs across nodes break single-numa-node.
    assert_eq!(
        one(&t, devices(vec![GpuSelector::Index(0), GpuSelector::Index(8)], SingleNumaNode)).expect_err("refused"),
        "single-numa-node: the GPUs named sit on nodes 0-1: node 0: GPU 0; node 1: GPU 8"
    );
}

#[test]
fn power_hosts_keep_their_domains_and_node_numbers() {
    let t = fixture("mpibind-coral-lassen-power9-ac922-4xV100.xml");
    let results = place(&t, &[("a", count(2, SingleNumaNode)), ("b", count(2, SingleNumaNode))], &Claims::default());
    assert_eq!(summary(results[0].1.as_ref().expect("a")), (vec![0, 1], vec![0], "8-87".to_string()));
    let b = results[1].1.as_ref().expect("b");
    assert_eq!(summary(b), (vec![2, 3], vec![8], "96-175".to_string()));
    assert_eq!(b.gpus[0].pci, "0035:03:00.0");
    let t = fixture("hwloc-power8-2s-4xP100-nvlink.xml");
    assert_eq!(
        summary(&one(&t, count(2, Restricted)).expect("fits")),
        (vec![0, 1], vec![0], "0-1,8-9,16-17,24-25".to_string())
    );
}

#[test]
fn sub_numa_clustering_hosts_with_one_gpu_per_node() {
    // SNC4 Sapphire Rapids: 8 nodes, GPUs on nodes 3, 1, 7, 5.
    let t = fixture("fluxcore-ipa20-xe8640-spr-snc4-4xH100.xml");
    assert_eq!(
        summary(&one(&t, count(1, SingleNumaNode)).expect("fits")),
        (vec![1], vec![1], "14-27,126-139".to_string())
    );
    assert_eq!(
        one(&t, count(2, SingleNumaNode)).expect_err("refused"),
        "single-numa-node: 2 GPUs asked, at most 1 share a node (node 1: GPU 1; node 3: GPU 0; node 5: GPU 3; node 7: GPU 2)"
    );
    // restricted: 2 GPUs need 2 nodes here, so 2 nodes are allowed.
    assert_eq!(
        summary(&one(&t, count(2, Restricted)).expect("fits")),
        (vec![0, 1], vec![1, 3], "14-27,42-55,126-139,154-167".to_string())
    );
    // NPS4 EPYC: the same shape.
    let t = fixture("psmgmt-jwb0004-juwelsbooster-epyc-nps4-4xA100.xml");
    assert_eq!(
        summary(&one(&t, count(1, SingleNumaNode)).expect("fits")),
        (vec![1], vec![1], "6-11,54-59".to_string())
    );
    assert_eq!(summary(&one(&t, count(4, BestEffort)).expect("fits")).1, vec![1, 3, 5, 7]);
}

#[test]
fn gpus_without_locality() {
    let t = fixture("psmgmt-j3c053-juropa3-2s-2xK20X-nolocality.v1.xml");
    assert_eq!(
        one(&t, count(1, SingleNumaNode)).expect_err("refused"),
        "single-numa-node: no GPU here reports a NUMA node (the firmware gives no locality); use numa = \"best-effort\" or \"none\""
    );
    assert_eq!(
        one(&t, count(2, Restricted)).expect_err("refused"),
        "restricted: 2 GPUs asked, only 0 report a NUMA node (no node: GPU 0,1); use numa = \"best-effort\" or \"none\""
    );
    // best-effort takes them, unbound (there is no node to bind to).
    assert_eq!(summary(&one(&t, count(2, BestEffort)).expect("fits")), (vec![0, 1], vec![], String::new()));
    assert_eq!(
        one(&t, devices(vec![GpuSelector::Index(1)], SingleNumaNode)).expect_err("refused"),
        "single-numa-node: GPU 1 (0000:82:00.0) has no NUMA locality (the firmware gives none); use numa = \"best-effort\" or \"none\""
    );
    // One socket without a NUMA object: the whole machine is node 0.
    let t = fixture("psmgmt-dpesb01-1s-noNUMAobj-1xV100.v1.xml");
    assert_eq!(summary(&one(&t, count(1, SingleNumaNode)).expect("fits")), (vec![0], vec![0], "0-15".to_string()));
}

#[test]
fn one_gpu_under_every_policy_on_every_fixture() {
    // (file, the GPU, its node and CPUs a 1-GPU request gets under a NUMA policy; None: refused)
    let cases: &[(&str, Option<(u32, u32, &str)>)] = &[
        ("hwloc-nvidiaDGX2-2s-16xV100.xml", Some((0, 0, "0-1"))),
        ("hwloc-power8-2s-4xP100-nvlink.xml", Some((0, 0, "0-1,8-9,16-17,24-25"))),
        ("fluxcore-ipa20-xe8640-spr-snc4-4xH100.xml", Some((1, 1, "14-27,126-139"))),
        ("psmgmt-jwb0004-juwelsbooster-epyc-nps4-4xA100.xml", Some((1, 1, "6-11,54-59"))),
        ("psmgmt-j3c053-juropa3-2s-2xK20X-nolocality.v1.xml", None),
        ("psmgmt-dpesb01-1s-noNUMAobj-1xV100.v1.xml", Some((0, 0, "0-15"))),
        ("mpibind-g4dnmetal-2s-8xT4.xml", Some((0, 0, "0-23,48-71"))),
        ("mpibind-coral-lassen-power9-ac922-4xV100.xml", Some((0, 0, "8-87"))),
        ("h200", Some((0, 0, "0-15"))),
    ];
    for (file, want) in cases {
        let t = fixture(file);
        // none: the lowest-numbered GPU, nothing bound.
        assert_eq!(
            summary(&one(&t, count(1, NoPolicy)).expect("none always fits")),
            (vec![0], vec![], String::new()),
            "{file}"
        );
        for policy in [SingleNumaNode, Restricted, BestEffort] {
            let got = one(&t, count(1, policy));
            match (want, policy) {
                (Some((gpu, node, cpus)), _) => {
                    assert_eq!(
                        summary(&got.expect("fits")),
                        (vec![*gpu], vec![*node], cpus.to_string()),
                        "{file} {policy:?}"
                    )
                }
                // No locality: best-effort takes a GPU unbound; the others refuse and say why.
                (None, BestEffort) => {
                    assert_eq!(summary(&got.expect("fits")), (vec![0], vec![], String::new()), "{file}")
                }
                (None, _) => assert!(got.expect_err("refused").contains("NUMA"), "{file} {policy:?}"),
            }
        }
    }
}

/// A made-up host: `nodes` NUMA nodes of 2 CPUs each, GPUs on the given nodes, named by CDI
/// (`nvidia.com/gpu=INDEX` and `nvidia.com/gpu=GPU-000INDEX`), as a spec from nvidia-ctk names them.
fn made_up(nodes: u32, gpu_nodes: &[u32]) -> Topology {
    use aicontainers::topology::{Gpu as HostGpu, NumaNode};
    Topology {
        source: "test".into(),
        nodes: (0..nodes).map(|id| NumaNode { id, cpus: vec![2 * id, 2 * id + 1], memory: Some(1 << 30) }).collect(),
        gpus: gpu_nodes
            .iter()
            .enumerate()
            .map(|(i, &n)| HostGpu {
                index: i as u32,
                pci: format!("0000:{:02x}:00.0", i + 1),
                vendor: 0x10de,
                device: 0x2330,
                name: None,
                uuid: Some(format!("GPU-000{i}")),
                numa: vec![n],
                cdi: vec![format!("nvidia.com/gpu={i}"), format!("nvidia.com/gpu=GPU-000{i}")],
                memory_mib: None,
                mig: None,
            })
            .collect(),
    }
}

fn cdi(name: &str) -> GpuSelector {
    GpuSelector::Cdi(name.into())
}

#[test]
fn cdi_names_in_gpu_devices_hold_their_gpus() {
    let t = made_up(2, &[0, 0, 1, 1]);
    // The UUID form of a CDI name is that GPU; the name written is what podman gets.
    let results = place(
        &t,
        &[("a", devices(vec![cdi("nvidia.com/gpu=GPU-0002")], SingleNumaNode)), ("b", count(2, SingleNumaNode))],
        &Claims::default(),
    );
    let a = results[0].1.as_ref().expect("a");
    assert_eq!(
        (summary(a), a.cdi.clone()),
        ((vec![2], vec![1], "2-3".to_string()), vec!["nvidia.com/gpu=GPU-0002".to_string()])
    );
    // b cannot have node 1 any more: it gets node 0.
    assert_eq!(summary(results[1].1.as_ref().expect("b")).0, vec![0, 1]);
    // `all` holds every GPU.
    let results = place(
        &t,
        &[("a", devices(vec![cdi("nvidia.com/gpu=all")], NoPolicy)), ("b", count(1, NoPolicy))],
        &Claims::default(),
    );
    assert_eq!(summary(results[0].1.as_ref().expect("a")).0, vec![0, 1, 2, 3]);
    assert_eq!(
        results[1].1.as_ref().expect_err("b refused"),
        "1 GPU asked, 0 free: GPU 0 held by a, GPU 1 held by a, GPU 2 held by a, GPU 3 held by a"
    );
    // A name no spec ties to a GPU: only with numa = "none" and gpu.shared, passed on as written.
    let err = one(&t, devices(vec![cdi("example.com/fpga=0")], SingleNumaNode)).expect_err("refused");
    assert!(err.starts_with("example.com/fpga=0 is not tied to a GPU of this host"), "{err}");
    let mut shared = devices(vec![cdi("example.com/fpga=0")], NoPolicy);
    shared.shared = true;
    assert_eq!(one(&t, shared).expect("passed on").cdi, ["example.com/fpga=0"]);
}

#[test]
fn mig_slices_are_held_one_by_one() {
    let t = made_up(2, &[0, 1]);
    let results = place(
        &t,
        &[
            ("a", devices(vec![cdi("nvidia.com/gpu=0:0")], SingleNumaNode)),
            ("b", devices(vec![cdi("nvidia.com/gpu=0:1")], SingleNumaNode)),
            ("c", devices(vec![cdi("nvidia.com/gpu=0:1")], NoPolicy)),
            ("d", count(1, NoPolicy)),
        ],
        &Claims::default(),
    );
    let a = results[0].1.as_ref().expect("a");
    assert_eq!(
        (summary(a), a.cdi.clone()),
        ((vec![0], vec![0], "0-1".to_string()), vec!["nvidia.com/gpu=0:0".to_string()])
    );
    assert!(results[1].1.is_ok(), "another slice of the same GPU: {:?}", results[1].1);
    assert!(
        results[2].1.as_ref().is_err_and(|e| e.contains("nvidia.com/gpu=0:1 is already given")),
        "{:?}",
        results[2].1
    );
    // The whole GPU 0 is not free while its slices are used.
    assert_eq!(summary(results[3].1.as_ref().expect("d")).0, vec![1]);
}

#[test]
fn recorded_holds_that_no_longer_make_sense_are_dropped() {
    let t = made_up(2, &[0, 0, 1, 1]);
    let req = count(2, SingleNumaNode);
    let claim = |gpus: &[&str]| Claims {
        version: 1,
        claims: [(
            "a".to_string(),
            Claim { request: placement::fingerprint(&req), gpus: gpus.iter().map(|s| s.to_string()).collect() },
        )]
        .into(),
    };
    // The same GPU twice, or GPUs on two nodes for single-numa-node (a BIOS change): placed afresh.
    for bad in [
        claim(&["0000:03:00.0", "0000:03:00.0"]),
        claim(&["0000:01:00.0", "0000:03:00.0"]),
        claim(&["0000:99:00.0", "0000:01:00.0"]),
    ] {
        let a = place(&t, &[("a", req.clone())], &bad).remove(0).1.expect("placed");
        assert_eq!(summary(&a).0, vec![0, 1], "{bad:?}");
    }
    // A sound hold is kept even where a fresh placement would choose otherwise.
    let a = place(&t, &[("a", req.clone())], &claim(&["0000:03:00.0", "0000:04:00.0"])).remove(0).1.expect("placed");
    assert_eq!(summary(&a), (vec![2, 3], vec![1], "2-3".to_string()));
}

#[test]
fn shared_services_share_and_others_do_not_take_shared_gpus() {
    let t = made_up(1, &[0, 0]);
    let mut s1 = count(1, NoPolicy);
    s1.shared = true;
    let results = place(
        &t,
        &[("a", s1.clone()), ("b", s1.clone()), ("c", count(1, NoPolicy)), ("d", count(1, NoPolicy))],
        &Claims::default(),
    );
    assert_eq!(summary(results[0].1.as_ref().expect("a")).0, vec![0]);
    assert_eq!(summary(results[1].1.as_ref().expect("b")).0, vec![0], "b shares a's GPU");
    assert_eq!(summary(results[2].1.as_ref().expect("c")).0, vec![1]);
    assert_eq!(
        results[3].1.as_ref().expect_err("d refused"),
        "1 GPU asked, 0 free: GPU 0 held by a+b, GPU 1 held by c"
    );
}

#[test]
fn many_numa_nodes_are_placed_without_trying_every_combination() {
    // 32 nodes (an EPYC with L3-as-NUMA, or memory-only nodes), 8 GPUs on every 4th node.
    let t = made_up(32, &[0, 4, 8, 12, 16, 20, 24, 28]);
    assert_eq!(summary(&one(&t, count(8, BestEffort)).expect("fits")).1, vec![0, 4, 8, 12, 16, 20, 24, 28]);
    assert_eq!(summary(&one(&t, count(3, Restricted)).expect("fits")).1, vec![0, 4, 8]);
    let err = one(&t, count(9, BestEffort)).expect_err("refused");
    assert_eq!(err, "9 GPUs asked, this host has 8");
}
