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
    fs::write(&bad, "[service]\nimage = \"localhost/a:1\"\nrun-as = \"aimodels\"\nrestart = \"sometimes\"\n").expect("write");
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
    assert!(String::from_utf8_lossy(&o.stderr).contains("service.run-as: account `nosuch` is not among the given accounts"));
}
