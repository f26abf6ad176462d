//! `aictl scan-gate NAME IMAGE` (every service unit's first `ExecStartPre=`, docs/scan.md)
//! from the outside: its exit status and what it prints for the journal, with the policy and
//! the verdict given through `AICONTAINERS_SCAN_POLICY` and `AICONTAINERS_SCAN_DIR`; and the
//! command-line shape of `aictl scan` and `aictl sbom` for services.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn gate(dir: &Path, name: &str, image: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aictl"))
        .args(["scan-gate", name, image])
        .env("AICONTAINERS_SCAN_POLICY", dir.join("policy.toml"))
        .env("AICONTAINERS_SCAN_DIR", dir.join("state"))
        .output()
        .expect("aictl runs")
}

fn verdict(dir: &Path, name: &str, image: &str, package: &str) {
    fs::create_dir_all(dir.join("state/verdict")).expect("mkdir");
    let v = serde_json::json!({
        "service": name, "image": image, "digest": format!("sha256:{}", "c".repeat(64)), "scanned_at": 0,
        "findings": [{"id": "DEBIAN-CVE-2099-0007", "aliases": ["CVE-2099-0007"], "package": package,
                      "ecosystem": "Debian:13", "installed": "1.0-1", "fixed": "1.0-2", "severity": "high"}]
    });
    fs::write(dir.join(format!("state/verdict/{name}.json")), v.to_string()).expect("write");
}

#[test]
fn the_gate_refuses_under_block_naming_the_advisory_and_the_fix() {
    let t = tempfile::tempdir().expect("tempdir");
    verdict(t.path(), "chat", "localhost/chat:1", "zlib");
    fs::write(t.path().join("policy.toml"), "[policy]\naction = \"block\"\n").expect("write");
    let out = gate(t.path(), "chat", "localhost/chat:1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "chat: DEBIAN-CVE-2099-0007 (CVE-2099-0007): zlib 1.0-1 (Debian:13), severity high, fixed in 1.0-2"
        ),
        "{err}"
    );
    assert!(err.contains("start refused by the scan policy (action block)"), "{err}");
    // warn, a service override and an allowlist entry let it start.
    for policy in [
        "[policy]\naction = \"warn\"\n",
        "[policy]\naction = \"block\"\n[service.chat]\nseverity = \"critical\"\n",
        "[policy]\naction = \"block\"\n[[allow]]\nid = \"CVE-2099-0007\"\nexpires = 2999-01-01\nreason = \"r\"\n",
    ] {
        fs::write(t.path().join("policy.toml"), policy).expect("write");
        let out = gate(t.path(), "chat", "localhost/chat:1");
        assert_eq!(out.status.code(), Some(0), "{policy}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // An entry whose expiry has passed: refused again, saying so.
    fs::write(
        t.path().join("policy.toml"),
        "[policy]\naction = \"block\"\n[[allow]]\nid = \"CVE-2099-0007\"\nexpires = 2001-01-01\nreason = \"r\"\n",
    )
    .expect("write");
    let out = gate(t.path(), "chat", "localhost/chat:1");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expired on 2001-01-01"));
}

#[test]
fn hostile_names_bytes_and_files() {
    let t = tempfile::tempdir().expect("tempdir");
    fs::write(t.path().join("policy.toml"), "[policy]\naction = \"block\"\n").expect("write");
    // A package name from the image that tries to forge journal lines or drive a terminal.
    verdict(t.path(), "chat", "img", "zlib\n<3>aicontainers: all clear\u{1b}[2J");
    let out = gate(t.path(), "chat", "img");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(!err.contains('\u{1b}') && !err.lines().any(|l| l.starts_with("<3>")), "{err}");
    // A name that is not a service's never reaches a path.
    let out = gate(t.path(), "../../etc/passwd", "img");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    // The verdict is a FIFO: refused under block, without blocking.
    nix::unistd::mkfifo(&t.path().join("state/verdict/fifo.json"), nix::sys::stat::Mode::from_bits_truncate(0o644))
        .expect("mkfifo");
    assert_eq!(gate(t.path(), "fifo", "img").status.code(), Some(1));
    // The policy is a device: refused, naming it.
    fs::remove_file(t.path().join("policy.toml")).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", t.path().join("policy.toml")).expect("symlink");
    let out = gate(t.path(), "chat", "img");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("character device"));
    // No policy and no verdict: the defaults, and a first start goes on.
    fs::remove_file(t.path().join("policy.toml")).expect("rm");
    let out = gate(t.path(), "web", "img");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not scanned yet"));
}

#[test]
fn command_lines() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_aictl")).args(args).output().expect("aictl runs");
    // A service name and --rootfs together, or --rootfs without --advisories: usage errors.
    assert_eq!(run(&["scan", "chat", "--rootfs", "/"]).status.code(), Some(2));
    assert_eq!(run(&["scan", "--rootfs", "/"]).status.code(), Some(2));
    assert_eq!(run(&["sbom"]).status.code(), Some(2));
    assert_eq!(run(&["sbom", "chat", "--rootfs", "/"]).status.code(), Some(2));
}
