//! CDI specs as real tools write them: which device name gives which GPU.

use std::path::Path;

use aicontainers::cdi::{read_spec, NodeMap};

fn shared(path: &str) -> std::path::PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/cdi").join(path);
    assert!(
        p.exists(),
        "{} is missing: these tests read the shared fixtures next to the repository, which CI provides",
        p.display()
    );
    p
}

#[test]
fn nvidia_ctk_spec_names_its_gpu_by_index_and_uuid() {
    // Real `nvidia-ctk cdi generate` output: the PCI address appears only in hook arguments.
    let devices = read_spec(&shared("nvidia-ctk-generated_1gpu_575.64.03.yaml"), &NodeMap::default()).expect("reads");
    let got: Vec<(&str, Option<&str>)> = devices.iter().map(|d| (d.name.as_str(), d.pci.as_deref())).collect();
    assert_eq!(
        got,
        [
            ("nvidia.com/gpu=0", Some("0000:84:00.0")),
            ("nvidia.com/gpu=GPU-520e01f2-cf30-6396-abef-e8e9a5233b0e", Some("0000:84:00.0")),
            // `all` gives every GPU, which on this one-GPU host is that GPU.
            ("nvidia.com/gpu=all", Some("0000:84:00.0")),
        ]
    );
}

#[test]
fn device_nodes_map_through_the_drivers_minor_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = dir.path().join("gpus.yaml");
    std::fs::write(
        &spec,
        "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: \"0\"\n  containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia1\n- name: both\n  containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia0\n    - path: /dev/nvidia1\n",
    )
    .expect("write");
    let mut nodes = NodeMap::default();
    nodes.nvidia_minor.insert(0, "0000:18:00.0".into());
    nodes.nvidia_minor.insert(1, "0000:19:00.0".into());
    let devices = read_spec(&spec, &nodes).expect("reads");
    assert_eq!(devices[0].pci.as_deref(), Some("0000:19:00.0"));
    assert_eq!(devices[1].pci, None, "a device with two GPUs is no one GPU");
    std::fs::write(&spec, "kind: nvidia.com/gpu\n").expect("write");
    let err = read_spec(&spec, &nodes).expect_err("no devices");
    assert!(err.ends_with("not a CDI spec: no `devices` list"), "{err}");
}

#[test]
fn names_outside_cdis_grammar_never_reach_a_unit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = dir.path().join("evil.yaml");
    std::fs::write(
        &spec,
        "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: \"0\\n[Service]\\nExecStartPre=+/bin/sh -c id\"\n  containerEdits:\n    deviceNodes:\n    - path: /dev/dri/by-path/pci-0000:01:00.0-card\n- name: \"1%n\"\n- name: good\n  containerEdits:\n    deviceNodes:\n    - path: /dev/dri/by-path/pci-0000:02:00.0-card\n",
    )
    .expect("write");
    let names: Vec<String> =
        read_spec(&spec, &NodeMap::default()).expect("reads").into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["nvidia.com/gpu=good"]);
    std::fs::write(&spec, "kind: \"nvidia.com/gpu\\nX=1\"\ndevices: []\n").expect("write");
    assert!(read_spec(&spec, &NodeMap::default()).is_err(), "a kind outside the grammar");
}
