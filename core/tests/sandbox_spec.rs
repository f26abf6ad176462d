//! `[sandbox]` in service files: what is accepted, what is refused and where the error points,
//! and what reaches the unit.

use std::fs;

use aicontainers::account::Account;
use aicontainers::render::{self, PodmanVersion};
use aicontainers::sandbox::{Egress, Host, Proto};
use aicontainers::source;

const HEAD: &str = "[service]\nimage = \"localhost/x:1\"\nrun-as = \"aimodels\"\n";

fn check_named(name: &str, body: &str) -> Result<aicontainers::spec::Service, Vec<String>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{name}.toml"));
    fs::write(&path, format!("{HEAD}{body}")).expect("write");
    source::check_file(&path, false).map_err(|diags| {
        diags.iter().map(|d| d.to_string().replace(&format!("{}", path.display()), "svc.toml")).collect()
    })
}

fn check(body: &str) -> Result<aicontainers::spec::Service, Vec<String>> {
    check_named("svc", body)
}

#[test]
fn a_sandbox_is_read_with_its_limits() {
    let s = check(
        "[sandbox]\negress = [\"llm.internal:8080\", \"10.20.0.5:443\", \"[fd00::7]:443\", \"dns.example:53/udp\"]\n\
         memory = \"4G\"\ncpus = 2\n",
    )
    .expect("valid");
    let sandbox = s.sandbox.expect("sandboxed");
    assert_eq!(sandbox.egress.len(), 4);
    assert_eq!(sandbox.egress[3], Egress { host: Host::Name("dns.example".into()), port: 53, proto: Proto::Udp });
    assert_eq!(s.resources.memory.as_deref(), Some("4G"));
    assert_eq!(s.resources.cpus, Some(2.0));
    assert_eq!(s.resources.pids, Some(512), "a sandbox always has a process limit");
    // An empty [sandbox] denies everything and still hardens.
    let s = check("[sandbox]\n").expect("valid");
    assert!(s.sandbox.expect("sandboxed").egress.is_empty());
    // [resources] limits count for the sandbox too.
    let s = check("[resources]\npids = 99\n[sandbox]\n").expect("valid");
    assert_eq!(s.resources.pids, Some(99));
    assert!(check("").expect("valid").sandbox.is_none());
}

#[test]
fn bad_sandboxes_are_reported_at_their_line_and_key() {
    let errors = check(
        "[resources]\npids = 10\n[sandbox]\negress = [\n  \"ok.example:80\",\n  \"[fe80::1%eth0]:443\",\n  \"host:0\",\n  \"ok.example:80\",\n  3,\n]\n\
         pids = 5\nproxy = true\nmemory = \"lots\"\n",
    )
    .expect_err("invalid");
    let text = errors.join("\n");
    assert!(text.contains("svc.toml:9:3: sandbox.egress: `[fe80::1%eth0]:443`: IPv6 zone ids"), "{text}");
    assert!(text.contains("svc.toml:10:3: sandbox.egress: `host:0`: `0` is not a port number"), "{text}");
    assert!(text.contains("svc.toml:11:3: sandbox.egress: `ok.example:80` is listed twice"), "{text}");
    assert!(text.contains("svc.toml:12:3: sandbox.egress: expected an array of strings, found an integer"), "{text}");
    assert!(text.contains("svc.toml:14:1: sandbox.pids: resources.pids is set too"), "{text}");
    assert!(text.contains("svc.toml:15:1: sandbox.proxy: unknown key `proxy`"), "{text}");
    assert!(text.contains("svc.toml:16:10: sandbox.memory: `lots` is not a memory size"), "{text}");
    let errors = check("[sandbox]\negress = \"llm:80\"\n").expect_err("invalid");
    assert!(errors[0].contains("svc.toml:5:10: sandbox.egress: expected an array of strings"), "{errors:?}");
    let errors = check("[sandbox.egress]\nx = 1\n").expect_err("invalid");
    assert!(
        errors[0].contains("svc.toml:4:1: sandbox.egress: expected an array of strings, found a table"),
        "{errors:?}"
    );
}

#[test]
fn hostile_entries_never_reach_a_unit() {
    for entry in [
        "host:80\\nExecStartPre=/bin/sh",
        "host:80\\n[Service]",
        "host:80 --privileged",
        "%n:80",
        "$HOME:80",
        "host:80\\\\",
        "\\u00e9.example:80",
        "host:80\\u0000",
        "host:80\\u001b[31m",
        "[::1%25lo]:80",
        "0x7f000001:80",
    ] {
        let body = format!("[sandbox]\negress = [\"{entry}\"]\n");
        let errors = check(&body).expect_err(&format!("{entry} should be refused"));
        assert!(
            errors.iter().all(|e| e.starts_with("svc.toml:5:11: sandbox.egress:") && !e.contains('\n')),
            "{entry}: {errors:?}"
        );
    }
    let many: Vec<String> = (1..=257).map(|p| format!("\"10.0.0.1:{p}\"")).collect();
    let errors = check(&format!("[sandbox]\negress = [{}]\n", many.join(", "))).expect_err("too many");
    assert!(errors.iter().any(|e| e.contains("257 entries; at most 256")), "{errors:?}");
    let long = "a".repeat(65);
    let errors = check_named(&long, "[sandbox]\n").expect_err("name too long");
    assert!(
        errors.iter().any(|e| e.contains("svc.toml:4:2: sandbox: a sandboxed service's name is at most 64 bytes")),
        "{errors:?}"
    );
}

#[test]
fn the_unit_gets_the_hardening_the_slice_and_the_sets() {
    let s = check_named(
        "coder",
        "[sandbox]\negress = [\"llm.internal:8080\", \"[fd00::7]:443\", \"dns.example:53/udp\"]\n",
    )
    .expect("valid");
    let account = Account { name: "aimodels".into(), uid: 990, gid: 990, home: "/var/lib/aimodels".into() };
    let text = render::container(&s, &account, PodmanVersion(5, 4, 0), None).expect("render");
    for line in [
        "ReadOnly=true",
        "DropCapability=all",
        "NoNewPrivileges=true",
        "Volume=/run/aicontainers/sandbox/coder.hosts:/etc/hosts:ro",
        "Slice=aicontainers-agents.slice",
        "NFTSet=cgroup:inet:aicontainers:sandboxed cgroup:inet:aicontainers_guard:sandboxed",
        "ExecStartPre=+/usr/bin/aictl sandbox allow coder -- llm.internal:8080 \"[fd00::7]:443\" dns.example:53/udp",
        "ExecStopPost=+/usr/bin/aictl sandbox forget coder",
        "TasksMax=512",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
}
