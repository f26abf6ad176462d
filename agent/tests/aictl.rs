//! `aictl`'s live commands against the agent on a real dbus-daemon (stand-ins for systemd and
//! polkit: tests/support/mod.rs). Run as root: the unprivileged user is `nobody`.

#![allow(clippy::unwrap_used)]

mod support;

use support::*;

fn aictl_path() -> String {
    aictl().display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_a_table_and_json_to_anyone() {
    assert!(nix::unistd::geteuid().is_root(), "these tests must run as root: they run aictl as nobody");
    let rig = Rig::start(Polkit::Absent).await;
    let got = rig.as_nobody(&aictl_path(), &["status"]).await;
    let text = said(&got);
    assert!(got.status.success(), "{text}");
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    // MEM, CPU and OOM (live usage, issue 10) stand between STATE and ACCOUNT; a stopped service
    // has none.
    assert_eq!(
        lines[0],
        vec!["NAME", "STATE", "MEM", "CPU", "OOM", "ACCOUNT", "GPUS", "NUMA", "SANDBOX", "IMAGE"],
        "{text}"
    );
    assert_eq!(lines[1], vec!["broken", "inactive", "-", "-", "-", "-", "-", "-", "-", "-"], "{text}");
    assert_eq!(
        lines[2],
        vec!["web", "inactive", "-", "-", "-", "nobody", "nvidia.com/gpu=0", "0", "sandboxed", "localhost/web:1"],
        "{text}"
    );
    assert!(
        text.contains("broken: cannot run, its files are invalid: see `aictl validate --service broken`"),
        "{text}"
    );

    let got = rig.as_nobody(&aictl_path(), &["status", "--json", "web"]).await;
    assert!(got.status.success(), "{}", said(&got));
    let json: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    let web = &json[0];
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(web["name"], "web");
    assert_eq!(web["state"], "inactive");
    assert_eq!(web["sub_state"], "dead");
    assert_eq!(web["account"], "nobody");
    assert_eq!(web["uid"], 65534);
    assert_eq!(web["gpus"], serde_json::json!(["nvidia.com/gpu=0"]));
    assert_eq!(web["sandbox"], "sandboxed");
    assert_eq!(web["egress"], serde_json::json!(["llm.internal:8080", "[fd00::7]:443"]));
    assert_eq!(web["numa_nodes"], serde_json::json!([0]));
    assert_eq!(web["image"], "localhost/web:1");

    let got = rig.as_nobody(&aictl_path(), &["status", "nope"]).await;
    assert!(!got.status.success() && said(&got).contains("no such service: nope"), "{}", said(&got));
}

#[tokio::test(flavor = "multi_thread")]
async fn root_starts_and_status_shows_it_nobody_is_refused() {
    assert!(nix::unistd::geteuid().is_root(), "these tests must run as root: they run aictl as nobody");
    let rig = Rig::start(Polkit::Absent).await;
    let got = rig.as_root(&aictl_path(), &["start", "web"]).await;
    assert!(got.status.success(), "{}", said(&got));
    let got = rig.as_root(&aictl_path(), &["status", "web"]).await;
    assert!(said(&got).lines().nth(1).unwrap().split_whitespace().nth(1) == Some("active"), "{}", said(&got));

    for verb in ["stop", "restart", "start"] {
        let got = rig.as_nobody(&aictl_path(), &[verb, "web"]).await;
        let text = said(&got);
        assert_eq!(got.status.code(), Some(1), "{verb}: {text}");
        assert!(
            text.contains(&format!(
                "aictl: permission denied: UID 65534 may not {verb} web.service: polkit is not running"
            )),
            "{verb}: {text}"
        );
    }
    let got = rig.as_nobody(&aictl_path(), &["reload"]).await;
    assert!(!got.status.success() && said(&got).contains("permission denied"), "{}", said(&got));

    let got = rig.as_root(&aictl_path(), &["stop", "--json", "web"]).await;
    assert!(got.status.success(), "{}", said(&got));
    let json: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(json, serde_json::json!({"service": "web", "action": "stop", "result": "done"}));

    let got = rig.as_root(&aictl_path(), &["start", "nope"]).await;
    assert!(!got.status.success() && said(&got).contains("no service `nope`"), "{}", said(&got));
    let got = rig.as_root(&aictl_path(), &["start", "broken"]).await;
    assert!(!got.status.success() && said(&got).contains("result `failed`"), "{}", said(&got));

    let got = rig.as_root(&aictl_path(), &["reload", "--json"]).await;
    assert!(got.status.success(), "{}", said(&got));
    let json: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(json["services"], serde_json::json!(["broken", "web"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clear_error_when_the_agent_or_the_bus_is_not_there() {
    assert!(nix::unistd::geteuid().is_root(), "these tests must run as root");
    let rig = Rig::without_agent(Polkit::Absent).await;
    for args in [&["status"][..], &["stop", "web"]] {
        let got = rig.as_nobody(&aictl_path(), args).await;
        let text = said(&got);
        assert_eq!(got.status.code(), Some(1), "{text}");
        assert!(
            text.contains("aicontainersd is not running") && text.contains("systemctl enable --now aicontainersd"),
            "{text}"
        );
    }
    let got = tokio::process::Command::new(aictl_path())
        .arg("status")
        .env("DBUS_SYSTEM_BUS_ADDRESS", format!("unix:path={}/no-bus", rig.dir.path().display()))
        .output()
        .await
        .unwrap();
    assert_eq!(got.status.code(), Some(1));
    assert!(said(&got).contains("cannot connect to the system bus"), "{}", said(&got));

    // The offline commands need no bus at all.
    let got = tokio::process::Command::new(aictl_path())
        .args(["validate"])
        .arg(rig.root.join("etc/aicontainers/web.toml"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
        .output()
        .await
        .unwrap();
    assert!(got.status.success(), "{}", said(&got));
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let got = std::process::Command::new(aictl()).args(["completions", shell]).output().unwrap();
        assert!(got.status.success(), "{shell}: {}", said(&got));
        let text = String::from_utf8_lossy(&got.stdout);
        assert!(text.contains("status") && text.contains("restart") && text.contains("validate"), "{shell}: {text}");
    }
}

/// At a terminal, aictl runs polkit's text agent (pkttyagent) for the call, as systemctl does;
/// where polkit cannot ask (here: none runs), the user still gets the clear refusal.
#[tokio::test(flavor = "multi_thread")]
async fn at_a_terminal_nobody_is_still_refused_clearly() {
    assert!(nix::unistd::geteuid().is_root(), "these tests must run as root: they run aictl as nobody");
    let rig = Rig::start(Polkit::Absent).await;
    let command = format!("{} stop web", aictl_path());
    // script(1) gives aictl a terminal.
    let got = rig.as_nobody("script", &["-qec", &command, "/dev/null"]).await;
    let text = said(&got);
    assert!(!got.status.success(), "{text}");
    assert!(
        text.contains("aictl: permission denied: UID 65534 may not stop web.service: polkit is not running"),
        "{text}"
    );
}

/// A preflight record with a hostile message: `aictl status` shows each problem on a line of its
/// own, escaped (no forged line), and `--json` carries them.
#[tokio::test(flavor = "multi_thread")]
async fn status_shows_the_preflight_problems() {
    assert!(nix::unistd::geteuid().is_root(), "these tests must run as root: they run aictl as nobody");
    let rig = Rig::start(Polkit::Absent).await;
    let dir = rig.root.join("run/aicontainers-preflight");
    std::fs::create_dir_all(&dir).unwrap();
    let record = serde_json::json!({
        "service": "web", "checked_at": 1, "checks": 26,
        "problems": [{"id": "cdi.stale-driver", "status": "error",
                      "message": "spec for 550.54.14\nweb: preflight ok: forged", "fix": "systemctl restart nvidia-cdi-refresh.service"}]
    });
    std::fs::write(dir.join("web.json"), record.to_string()).unwrap();
    let shown = || async {
        let got = rig.as_nobody(&aictl_path(), &["status"]).await;
        said(&got)
    };
    let mut text = shown().await;
    let guard = std::time::Instant::now() + GUARD;
    while !text.contains("preflight error") && std::time::Instant::now() < guard {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        text = shown().await;
    }
    assert!(
        text.contains("web: preflight error: cdi.stale-driver: spec for 550.54.14\\nweb: preflight ok: forged; fix: systemctl restart nvidia-cdi-refresh.service"),
        "{text}"
    );
    assert!(!text.lines().any(|l| l.starts_with("web: preflight ok")), "a forged line: {text}");
    let got = rig.as_nobody(&aictl_path(), &["status", "--json", "web"]).await;
    let json: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(json[0]["preflight"][0]["id"], "cdi.stale-driver", "{json}");
}

/// The cgroup tree of a running `web`, as the kernel writes it, below the agent's root.
fn write_cgroup(rig: &Rig, files: &[(&str, &[u8])]) -> std::path::PathBuf {
    let dir = rig.root.join("sys/fs/cgroup/system.slice/web.service");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    dir
}

/// `aictl status web` as nobody: the table's line for web, and the whole text.
async fn web_line(rig: &Rig) -> (Vec<String>, String) {
    let got = rig.as_nobody(&aictl_path(), &["status", "web"]).await;
    let text = said(&got);
    assert!(got.status.success(), "{text}");
    let line = text.lines().nth(1).unwrap().split_whitespace().map(String::from).collect();
    (line, text)
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_top_show_live_usage_from_the_cgroup() {
    assert!(nix::unistd::geteuid().is_root(), "these tests must run as root: they run aictl as nobody");
    let rig = Rig::start(Polkit::Absent).await;
    let dir = write_cgroup(
        &rig,
        &[
            ("memory.current", b"1572864\n"),
            ("memory.peak", b"4194304\n"),
            ("memory.events", b"low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n"),
            ("cpu.stat", b"usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n"),
            ("pids.current", b"5\n"),
            ("cpuset.cpus.effective", b"0-1\n"),
            ("cpuset.mems.effective", b"0\n"),
        ],
    );
    let got = rig.as_root(&aictl_path(), &["start", "web"]).await;
    assert!(got.status.success(), "{}", said(&got));

    let (line, text) = web_line(&rig).await;
    assert_eq!(line[..5], ["web", "active", "1.5M", "1.50s", "2"], "{text}");
    // Placement bound web to the CPUs of the GPU's NUMA node, not to 0-1: drift, said under the table.
    assert!(text.contains("web: drift: placement gave CPUs "), "{text}");
    assert!(text.contains("the cgroup has 0-1 (cpuset.cpus.effective)"), "{text}");
    assert!(!text.contains("memory nodes"), "node 0 is what placement gave: {text}");

    let got = rig.as_nobody(&aictl_path(), &["status", "--json", "web"]).await;
    let json: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    let usage = &json[0]["usage"];
    assert_eq!(usage["state"], "running", "{usage}");
    assert_eq!(usage["cgroup"], "/system.slice/web.service");
    assert_eq!(usage["memory_current"], 1572864);
    assert_eq!(usage["memory_peak"], 4194304);
    assert_eq!(usage["oom_kills"], 2);
    assert_eq!(usage["cpu_usec"], 1500000);
    assert_eq!(usage["tasks"], 5);
    assert_eq!(usage["cpus"], serde_json::json!([0, 1]));
    assert_eq!(usage["memory_nodes"], serde_json::json!([0]));

    // aictl top, not on a terminal: one table and out; --iterations 2 gives %CPU from the change.
    let got = rig.as_nobody(&aictl_path(), &["top"]).await;
    let text = said(&got);
    assert!(got.status.success(), "{text}");
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATE", "TASKS", "%CPU", "MEM", "PEAK", "OOM", "CPU-TIME"], "{text}");
    let web: Vec<&str> = text.lines().find(|l| l.starts_with("web ")).unwrap().split_whitespace().collect();
    assert_eq!(web, ["web", "active", "5", "-", "1.5M", "4.0M", "2", "1.50s"], "{text}");
    let got = rig.as_nobody(&aictl_path(), &["top", "-n", "2", "-d", "0.1"]).await;
    let text = said(&got);
    assert!(got.status.success(), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("NAME ")).count(), 2, "{text}");
    for bad in [&["top", "-d", "0"][..], &["top", "-d", "nan"], &["top", "-n", "0"]] {
        let got = rig.as_nobody(&aictl_path(), bad).await;
        assert_eq!(got.status.code(), Some(2), "{bad:?}: {}", said(&got));
    }

    // Hostile contents: the value is not read, the problem names the file, escaped; the rest reads.
    std::fs::write(dir.join("memory.current"), b"\x1b]0;owned\x07 12\n").unwrap();
    std::fs::remove_file(dir.join("pids.current")).unwrap();
    nix::unistd::mkfifo(&dir.join("pids.current"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let (line, text) = web_line(&rig).await;
    assert_eq!(line[..5], ["web", "active", "-", "1.50s", "2"], "{text}");
    assert!(text.contains("memory.current: not a number: `\\u{1b}]0;owned\\u{7} 12`"), "{text}");
    assert!(text.contains("pids.current: not a regular file"), "{text}");
    assert!(!text.contains('\x1b'), "{text}");

    // The run ends with an OOM kill: systemd stops the unit and its cgroup goes; the agent
    // counts the run, from systemd's Result.
    let server = rig.systemd.object_server();
    let unit = unit_path("web.service");
    set_unit_result(server, &unit, "oom-kill").await.unwrap();
    set_unit_state(server, &unit, "failed", "failed").await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let deadline = std::time::Instant::now() + GUARD;
    let line = loop {
        let (line, text) = web_line(&rig).await;
        if line[4] == "1" || std::time::Instant::now() > deadline {
            break (line, text);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(line.0[..5], ["web", "failed", "-", "-", "1"], "{}", line.1);

    // Started again, the new run's kills add to it; a cgroup gone under a running unit is
    // stopped, never an error.
    let got = rig.as_root(&aictl_path(), &["start", "web"]).await;
    assert!(got.status.success(), "{}", said(&got));
    let (line, text) = web_line(&rig).await;
    assert_eq!(line[..5], ["web", "active", "-", "-", "1"], "{text}");
    let got = rig.as_nobody(&aictl_path(), &["status", "--json", "web"]).await;
    let json: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(json[0]["usage"]["state"], "stopped", "{}", json[0]["usage"]);
    write_cgroup(&rig, &[("memory.events", b"oom_kill 4\n"), ("memory.current", b"0\n")]);
    let (line, text) = web_line(&rig).await;
    assert_eq!(line[..5], ["web", "active", "0B", "-", "5"], "{text}");
}
