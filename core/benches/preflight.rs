//! The cost of a GPU unit's `ExecStartPre=` preflight: a service with 8 GPUs on an 8-GPU fixture
//! host (core/src/preflight/fixture.rs: driver, device nodes, libraries, an nvidia-ctk-style CDI
//! spec, an account ready for rootless podman).
//!
//!     cargo bench -p aicontainers --bench preflight
//!
//! Prints the checks alone (in this process) and, when a built `aictl` is found
//! (target/release, else target/debug), the whole `aictl preflight --unit-mode` process as the
//! unit runs it. Target: 50 ms. It asserts nothing (targets are read, not tested). Run as root:
//! the fixture's device nodes need mknod.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use aicontainers::preflight::{self, fixture, Host};

fn report(what: &str, mut times: Vec<f64>) {
    times.sort_by(f64::total_cmp);
    println!(
        "{what}: median {:.2} ms, min {:.2} ms, max {:.2} ms over {} runs",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        times.len()
    );
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (request, nodes) = fixture::build(dir.path(), 8);
    if !nodes {
        println!("note: not root, so the fixture has no device nodes: the device-node checks report errors");
    }
    let host = Host::new(dir.path());
    let findings = preflight::run(&host, &request);
    let problems: Vec<_> = findings.iter().filter(|f| f.status != preflight::Status::Ok).collect();
    println!("fixture: 8 GPUs, {} findings, {} not ok: {problems:?}", findings.len(), problems.len());
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let f = preflight::run(&host, &request);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(f.len(), findings.len());
    }
    report("preflight::run (in process, 8 GPUs)", times);

    // driver.device-in-use reads every process's fd links: the fixture has no process, so
    // measure that scan over this host's own /proc.
    let procs = std::fs::read_dir("/proc").map_or(0, |d| {
        d.flatten().filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit())).count()
    });
    let own: Vec<preflight::UsedNode> = (0..8)
        .map(|i| preflight::UsedNode { host: format!("/dev/nvidia{i}"), device: Some(format!("nvidia.com/gpu={i}")) })
        .collect();
    let mut times = Vec::new();
    for _ in 0..50 {
        let mut r = preflight::Report { service: "chat", findings: Vec::new() };
        let t = Instant::now();
        preflight::driver::in_use(&Host::live(), &request, &own, &mut r);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    report(&format!("driver.device-in-use's scan of this host's /proc ({procs} processes)"), times);

    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let Some(aictl) = ["target/release/aictl", "target/debug/aictl"].iter().map(|p| top.join(p)).find(|p| p.exists())
    else {
        println!("aictl process: not measured (no built aictl in target/release or target/debug)");
        return;
    };
    let line = preflight::unit_command(&aictl.display().to_string(), &request);
    let words: Vec<&str> = line.trim_start_matches('+').split(' ').collect();
    let mut times = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let out = Command::new(words[0])
            .args(&words[1..])
            .arg("--root")
            .arg(dir.path())
            .env_remove("JOURNAL_STREAM")
            .output()
            .expect("run aictl");
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(out.status.success() || !nodes, "{}", String::from_utf8_lossy(&out.stderr));
    }
    report(&format!("{} (whole process, 8 GPUs)", aictl.display()), times);
}
