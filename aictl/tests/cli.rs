//! aictl as Ansible and sysadmins call it: exit codes and the exact shape of its messages.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn aictl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aictl")).args(args).output().expect("aictl runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const GOOD: &str = "[service]\nimage = \"localhost/a:1\"\nrun-as = \"aimodels\"\n";

#[test]
fn validate_takes_any_path_as_ansible_hands_it_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Ansible's `validate: aictl validate %s` names a temporary file without .toml.
    let tmp = dir.path().join("tmpk3j_x9");
    fs::write(&tmp, GOOD).expect("write");
    let o = aictl(&["validate", tmp.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "");
}

#[test]
fn validate_reports_file_line_col_key_reason_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    fs::write(&bad, "[service]\nimage = \"localhost/a:1\"\nrun-as = \"aimodels\"\nrestart = \"sometimes\"\n")
        .expect("write");
    let good = dir.path().join("good.toml");
    fs::write(&good, GOOD).expect("write");
    let o = aictl(&["validate", good.to_str().expect("utf-8"), bad.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        format!("{}:4:11: service.restart: `sometimes` is not one of no, on-failure, always\n", bad.display())
    );
}

#[test]
fn validate_json_is_machine_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    fs::write(&bad, "[servce]\n").expect("write");
    let o = aictl(&["validate", "--json", bad.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let keys: Vec<&str> = v.as_array().expect("array").iter().map(|d| d["key"].as_str().expect("key")).collect();
    assert_eq!(keys, ["service", "servce"], "missing [service] and the misspelt table: {v}");
    assert_eq!(v[1]["line"], 1);
    assert!(v[1]["message"].as_str().expect("message").contains("did you mean `service`?"));
}

#[test]
fn validate_drop_in_checks_only_what_it_sets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("10-mem.conf");
    fs::write(&d, "[resources]\nmemory = \"2G\"\n").expect("write");
    assert!(!aictl(&["validate", d.to_str().expect("utf-8")]).status.success(), "a partial file is not a service");
    assert!(aictl(&["validate", "--drop-in", d.to_str().expect("utf-8")]).status.success());
    fs::write(&d, "[resources]\nmemory = \"2 gigs\"\n").expect("write");
    let o = aictl(&["validate", "--drop-in", d.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains(":2:10: resources.memory:"), "{}", stdout(&o));
}

#[test]
fn render_shows_the_quadlet_file_without_touching_the_system() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello.toml");
    let o = aictl(&["render", "--quadlet-only", "--account", "aimodels:990", examples.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(out.starts_with("# --- hello.container (Quadlet input, podman 5.4.0) ---\n"), "{out}");
    assert!(out.contains("\nUser=aimodels\n") && out.contains("\nImage=localhost/busybox:latest\n"), "{out}");
}

#[test]
fn render_of_an_unknown_account_fails_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("svc.toml");
    fs::write(&f, GOOD.replace("aimodels", "nosuch")).expect("write");
    let o = aictl(&["render", "--quadlet-only", "--account", "aimodels:990", f.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("service.run-as: account `nosuch` is not among the given accounts")
    );
}

/// The real single-H200 host captured with tests/device/gpu-probe.
fn h200() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/h200/host-topology.xml").display().to_string()
}

const GPU: &str =
    "[service]\nimage = \"localhost/a:1\"\nrun-as = \"aimodels\"\n[gpu]\ncount = 1\nnuma = \"single-numa-node\"\n";

#[test]
fn topology_shows_another_machine_and_who_holds_what() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("chat.toml"), GPU).expect("write");
    fs::write(dir.path().join("embed.toml"), GPU).expect("write");
    let conf = dir.path().to_str().expect("utf-8");
    let o = aictl(&["topology", "--topology-xml", &h200(), "--config", conf]);
    assert!(o.status.success(), "{o:?}");
    let text = stdout(&o);
    assert!(text.contains("\nNODE  CPUS       MEMORY  GPUS\n0     0-15 (16)  4 GiB   0\n"), "{text}");
    assert!(text.contains("0    0000:00:06.0  0     10de:2335  -     nvidia.com/gpu=0  chat\n"), "{text}");
    assert!(text.contains("chat     single-numa-node  0     0      0-15\n"), "{text}");
    assert!(
        text.contains("embed    single-numa-node  -     -      refused: 1 GPU asked, 0 free: GPU 0 held by chat\n"),
        "{text}"
    );
    let o = aictl(&["topology", "--json", "--topology-xml", &h200(), "--config", conf]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["topology"]["gpus"][0]["pci"], "0000:00:06.0");
    assert_eq!(v["topology"]["gpus"][0]["numa"], serde_json::json!([0]));
    assert_eq!(v["services"][0]["name"], "chat");
    assert_eq!(v["services"][0]["cpus"], "0-15");
    assert_eq!(v["services"][1]["gpus"], serde_json::json!([]));
}

#[test]
fn render_places_gpus_against_a_captured_topology() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("chat.toml");
    fs::write(&file, GPU).expect("write");
    let o = aictl(&[
        "render",
        "--quadlet-only",
        "--account",
        "aimodels:990",
        "--topology-xml",
        &h200(),
        file.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{o:?}");
    let text = stdout(&o);
    for line in ["AddDevice=nvidia.com/gpu=0\n", "AllowedCPUs=0-15\n", "AllowedMemoryNodes=0\n", "NUMAPolicy=bind\n"] {
        assert!(text.contains(line), "{line} missing in {text}");
    }
    // Two GPUs on a one-GPU host: refused, with the file, line and key.
    fs::write(&file, GPU.replace("count = 1", "count = 2")).expect("write");
    let o = aictl(&[
        "render",
        "--quadlet-only",
        "--account",
        "aimodels:990",
        "--topology-xml",
        &h200(),
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!("{}:5:1: gpu.count: 2 GPUs asked, this host has 1\n", file.display())
    );
}

#[test]
fn gpu_claims_are_recorded_atomically_and_forgotten_with_their_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("conf");
    fs::create_dir(&conf).expect("mkdir");
    fs::write(conf.join("a.toml"), GPU).expect("write");
    fs::write(conf.join("b.toml"), GPU).expect("write");
    let claims = dir.path().join("state/gpu-claims.json");
    let claim = |name: &str, pci: &str| {
        Command::new(env!("CARGO_BIN_EXE_aictl"))
            .args(["gpu", "claim", name, "count=1,numa=single-numa-node,shared=false", pci])
            .env("AICONTAINERS_GPU_CLAIMS", &claims)
            .env("AICONTAINERS_CONFIG_DIRS", &conf)
            .output()
            .expect("aictl runs")
    };
    assert!(claim("a", "0000:41:00.0").status.success());
    assert!(claim("b", "0000:81:00.0").status.success());
    let read = || -> serde_json::Value { serde_json::from_slice(&fs::read(&claims).expect("claims")).expect("json") };
    assert_eq!(read()["claims"]["a"]["gpus"], serde_json::json!(["0000:41:00.0"]));
    assert_eq!(read()["claims"]["b"]["gpus"], serde_json::json!(["0000:81:00.0"]));
    // a's file is removed: the next claim drops a's entry.
    fs::remove_file(conf.join("a.toml")).expect("rm");
    assert!(claim("b", "0000:81:00.0").status.success());
    assert!(read()["claims"].get("a").is_none());
    assert!(!claim("b", "../../etc").status.success(), "not a PCI address");
    let left: Vec<String> = fs::read_dir(claims.parent().expect("dir"))
        .expect("ls")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!left.iter().any(|n| n.ends_with(".tmp")), "no temporary file left: {left:?}");
}

#[test]
fn gpu_release_forgets_a_hold_and_a_broken_claims_file_is_kept_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let claims = dir.path().join("gpu-claims.json");
    fs::write(&claims, "{\"version\": 1, \"claims\": {\"a\": {\"request\": \"r\", \"gpus\": [\"0000:01:00.0\"]},}}")
        .expect("write");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_aictl"))
            .args(args)
            .env("AICONTAINERS_GPU_CLAIMS", &claims)
            .env("AICONTAINERS_CONFIG_DIRS", dir.path())
            .output()
            .expect("aictl runs")
    };
    let o = run(&["gpu", "claim", "b", "count=1,numa=none,shared=false", "0000:02:00.0"]);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("kept as"), "{o:?}");
    assert!(dir.path().join("gpu-claims.json.bad").exists(), "the unreadable file is kept");
    assert!(!run(&["gpu", "claim", "b", "r", "0000:02:00.0", "0000:02:00.0"]).status.success(), "a GPU named twice");
    assert!(run(&["gpu", "release", "b"]).status.success());
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&claims).expect("claims")).expect("json");
    assert_eq!(v["claims"], serde_json::json!({}));
    assert_eq!(stdout(&run(&["gpu", "release", "b"])), "b holds no GPUs\n");
}

#[test]
fn topology_of_this_host_works_without_any_gpu() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = aictl(&["topology", "--json", "--config", dir.path().to_str().expect("utf-8")]);
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["topology"]["source"], "live");
    assert!(!v["topology"]["nodes"].as_array().expect("nodes").is_empty(), "hwloc sees at least one NUMA node: {v}");
    assert!(v["topology"]["nodes"][0]["cpus"].as_array().is_some_and(|c| !c.is_empty()), "{v}");
}

/// A fixture host with one GPU service whose generated unit carries the preflight line.
fn preflight_host() -> (tempfile::TempDir, bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (request, nodes) = aicontainers::preflight::fixture::build(dir.path(), 2);
    let root = dir.path();
    fs::create_dir_all(root.join("etc/aicontainers")).expect("mkdir");
    fs::write(
        root.join("etc/aicontainers/chat.toml"),
        "[service]\nimage = \"localhost/a:1\"\nrun-as = \"aimodels\"\n[gpu]\ncount = 2\n",
    )
    .expect("write");
    fs::write(root.join("etc/aicontainers/web.toml"), GOOD).expect("write");
    fs::create_dir_all(root.join("run/systemd/generator")).expect("mkdir");
    let line = aicontainers::preflight::unit_command("/usr/bin/aictl", &request);
    fs::write(
        root.join("run/systemd/generator/chat.service"),
        format!("# Generated by aicontainers-generator from /etc/aicontainers/chat.toml by podman 5.4.2's Quadlet.\n[Service]\nExecStartPre={line}\n"),
    )
    .expect("write");
    (dir, nodes)
}

#[test]
fn preflight_json_is_stable_and_the_exit_status_says_whether_anything_is_wrong() {
    let (dir, nodes) = preflight_host();
    if !nodes {
        eprintln!("SKIPPED: the fixture host needs device nodes, which only root can make");
        return;
    }
    let root = dir.path().to_str().expect("utf-8");
    let o = aictl(&["preflight", "--json", "--root", root]);
    assert!(o.status.success(), "{o:?}");
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let checks = doc["checks"].as_array().expect("checks");
    let n = aicontainers::preflight::CATALOGUE.len();
    assert_eq!(checks.len(), 2 * n, "every check for chat and for web");
    for c in checks {
        let keys: Vec<&str> = c.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(keys, ["fix", "id", "message", "service", "status"]);
    }
    assert!(checks.iter().any(|c| c["service"] == "chat" && c["id"] == "cdi.no-spec" && c["status"] == "ok"));
    assert!(checks.iter().any(|c| c["service"] == "web" && c["id"] == "cdi.no-spec" && c["status"] == "skipped"));
    // Break it: exit 1, and the human output names the id, the file and the fix.
    fs::remove_file(dir.path().join("var/lib/systemd/linger/aimodels")).expect("rm");
    fs::write(
        dir.path().join("proc/driver/nvidia/version"),
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun\n",
    )
    .expect("write");
    let o = aictl(&["preflight", "--root", root, "chat"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let text = stdout(&o);
    assert!(text.contains("chat: "), "{text}");
    assert!(
        text.contains("  error cdi.stale-driver: /var/run/cdi/nvidia.yaml was generated for NVIDIA driver 570.86.15 but 580.65.06 is loaded\n      fix: nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml\n"),
        "{text}"
    );
    assert!(
        text.contains("  error rootless.linger: ") && text.contains("      fix: loginctl enable-linger aimodels\n"),
        "{text}"
    );
    // As the unit runs it: each problem on one line (stderr here, the journal under systemd).
    let unit_args: Vec<String> = aicontainers::preflight::Request::from_unit(
        &fs::read_to_string(dir.path().join("run/systemd/generator/chat.service")).expect("unit"),
    )
    .map(|r| {
        let line = aicontainers::preflight::unit_command("aictl", &r);
        line.split(' ').skip(1).map(str::to_owned).collect()
    })
    .expect("the unit's line reads back");
    let mut args: Vec<&str> = unit_args.iter().map(String::as_str).collect();
    args.extend(["--root", root]);
    let o = Command::new(env!("CARGO_BIN_EXE_aictl")).args(&args).env_remove("JOURNAL_STREAM").output().expect("runs");
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.lines().any(|l| l.starts_with("preflight: error: cdi.stale-driver: ") && l.contains("; fix: ")),
        "{err}"
    );
}

#[test]
fn preflight_refuses_bad_requests() {
    let (dir, _) = preflight_host();
    let root = dir.path().to_str().expect("utf-8");
    let o = aictl(&["preflight", "--root", root, "nosuch"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no service `nosuch`"), "{o:?}");
    // Unit mode takes names only as a unit file could carry them.
    let o = aictl(&[
        "preflight",
        "--unit-mode",
        "--run-as",
        "aimodels",
        "--cdi",
        "nvidia.com/gpu=0\nExecStartPre=/bin/sh",
        "--root",
        root,
        "chat",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a CDI device name"), "{o:?}");
    let o = aictl(&["preflight", "--unit-mode", "--run-as", "aimodels", "--root", root, "a", "b"]);
    assert_eq!(o.status.code(), Some(1));
    let o = aictl(&["preflight", "--unit-mode", "chat"]);
    assert_eq!(o.status.code(), Some(2), "--unit-mode needs --run-as: a usage error");
}
