//! The examples in examples/ are what users copy: every one must load, and what it renders to is
//! kept in tests/golden/ so a change in rendering shows up in review.
//!
//! `UPDATE_GOLDEN=1 cargo test -p aicontainers --test examples` rewrites the golden files.

use std::fs;
use std::path::{Path, PathBuf};

use aicontainers::account::FixedAccounts;
use aicontainers::generate;
use aicontainers::host::HostGpus;
use aicontainers::render::PodmanVersion;
use aicontainers::source;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned()
}

/// GPU placement in these tests plans against a real single-H200 host captured with
/// tests/device/gpu-probe (tests/fixtures/h200/README.md), so goldens do not depend on this machine.
fn gpus() -> HostGpus {
    HostGpus::from_xml(&repo().join("tests/fixtures/h200/host-topology.xml"))
}

fn accounts() -> FixedAccounts {
    FixedAccounts::parse(&["aimodels:990".to_owned()]).expect("accounts")
}

/// Golden files name sources relative to the repository, so they do not depend on the checkout.
fn relative(text: &str) -> String {
    text.replace(&format!("{}/", repo().display()), "")
}

fn check_golden(name: &str, actual: &str) {
    let path = repo().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 to create it)", path.display()));
    assert_eq!(actual, expected, "{name} differs from its golden file (UPDATE_GOLDEN=1 to accept)");
}

#[test]
fn every_example_is_valid_and_renders_as_its_golden_file() {
    let examples = repo().join("examples");
    let plan = generate::plan(&[&examples], &accounts(), PodmanVersion(5, 4, 0), &gpus());
    assert!(plan.problems.is_empty(), "{:?}", plan.problems);
    assert!(plan.failed.is_empty(), "examples must be valid: {:#?}", plan.failed);
    let toml_files = fs::read_dir(&examples)
        .expect("examples")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "toml")))
        .count();
    assert_eq!(plan.services.len(), toml_files, "every examples/*.toml is a service");
    for p in &plan.services {
        check_golden(&format!("{}.container", p.service.name), &relative(&p.container));
    }
}

#[test]
fn old_podman_gets_podman_args_instead_of_newer_keys() {
    let examples = repo().join("examples");
    let plan = generate::plan(&[&examples], &accounts(), PodmanVersion(4, 4, 0), &gpus());
    let p = plan.services.iter().find(|p| p.service.name == "model-server").expect("model-server");
    check_golden("model-server.podman-4.4.container", &relative(&p.container));
    assert!(!p.container.contains("HealthCmd="), "podman 4.4's Quadlet has no HealthCmd=");
    assert!(!p.container.contains("LogDriver="), "podman 4.4's Quadlet has no LogDriver=");
    assert!(p.container.contains("--health-cmd="), "the health check still reaches podman");
}

#[test]
fn drop_in_of_the_example_is_applied() {
    let examples = repo().join("examples");
    let found = source::discover(&[&examples]);
    let files = found.services.iter().find(|s| s.name == "model-server").expect("model-server");
    assert_eq!(files.drop_ins, vec![examples.join("model-server.toml.d/10-memory.toml")]);
    let service = source::load(files).expect("valid");
    assert_eq!(service.resources.memory.as_deref(), Some("768M"), "the drop-in overrides the main file");
    assert_eq!(service.resources.pids, Some(256), "keys the drop-in does not set stay");
    // The drop-in is valid on its own as a partial file, as `aictl validate --drop-in` checks it.
    assert!(source::check_file(&examples.join("model-server.toml.d/10-memory.toml"), true).is_ok());
    assert!(source::check_file(&examples.join("model-server.toml.d/10-memory.toml"), false).is_err());
}

#[test]
fn one_bad_file_is_reported_and_the_others_are_still_planned() {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in fs::read_dir(repo().join("examples")).expect("examples") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
        }
    }
    fs::write(
        dir.path().join("broken.toml"),
        "[service]\nimage = \"localhost/x:1\"\nrun-as = \"aimodels\"\nport = [\"8080:8080\"]\n",
    )
    .expect("write");
    fs::write(dir.path().join("nobody.toml"), "[service]\nimage = \"localhost/x:1\"\nrun-as = \"nosuchuser\"\n")
        .expect("write");
    let plan = generate::plan(&[dir.path()], &accounts(), PodmanVersion(5, 4, 0), &gpus());
    let names: Vec<&str> = plan.services.iter().map(|p| p.service.name.as_str()).collect();
    assert_eq!(names, ["coding-agent", "gpu-chat", "hello", "model-chat", "model-server"]);
    let failed: Vec<String> = plan.failed.iter().flat_map(|f| f.diagnostics.iter().map(|d| d.to_string())).collect();
    let broken = dir.path().join("broken.toml");
    assert_eq!(
        failed,
        [
            format!("{}:4:1: service.port: unknown key `port`; did you mean `ports`?", broken.display()),
            format!(
                "{}: service.run-as: account `nosuchuser` is not among the given accounts",
                dir.path().join("nobody.toml").display()
            ),
        ]
    );
}

#[test]
fn a_service_named_like_an_existing_unit_gets_no_unit_at_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let vendor = root.join("usr/lib/systemd/system");
    fs::create_dir_all(&vendor).expect("mkdir");
    fs::write(vendor.join("ssh.service"), "[Service]\nExecStart=/usr/sbin/sshd -D\n").expect("write");
    let conf = dir.path().join("etc");
    fs::create_dir_all(&conf).expect("mkdir");
    fs::copy(repo().join("examples/hello.toml"), conf.join("ssh.toml")).expect("copy");
    fs::copy(repo().join("examples/hello.toml"), conf.join("hello.toml")).expect("copy");
    let loaded = generate::load_with(&[&conf], &accounts(), &aicontainers::names::UnitNames::under(&root));
    assert_eq!(loaded.services.len(), 1, "hello is still planned");
    assert_eq!(loaded.failed.len(), 1);
    let f = &loaded.failed[0];
    assert_eq!(f.name, "ssh");
    assert!(!f.unit, "a failing ssh.service would replace the real one");
    assert!(f.diagnostics[0].message.contains("ssh.service already exists"), "{:?}", f.diagnostics);
}
