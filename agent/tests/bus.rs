//! The agent against a real dbus-daemon with its own policy file (see tests/support/mod.rs for
//! the stand-ins of systemd and polkit). Run as root: the tests switch to `nobody` for the
//! unprivileged caller.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;

use aicontainers_agent::names::{
    service_path, BUS_NAME, JOB_INTERFACE, MANAGER_INTERFACE, MODELS_INTERFACE, MODELS_PATH, ROOT_PATH,
    SERVICE_INTERFACE,
};
use futures_util::StreamExt;
use support::*;
use zbus::fdo::PropertiesProxy;
use zbus::names::InterfaceName;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// These tests switch users and own bus names as root: say so loudly where they cannot run.
macro_rules! need_root {
    () => {
        assert!(
            is_root(),
            "these tests must run as root: they run clients as nobody (setpriv) and own names on a private bus"
        );
    };
}

async fn props(rig: &Rig, path: &str) -> HashMap<String, OwnedValue> {
    let p =
        PropertiesProxy::builder(&rig.client).destination(BUS_NAME).unwrap().path(path).unwrap().build().await.unwrap();
    p.get_all(InterfaceName::try_from(SERVICE_INTERFACE).unwrap()).await.unwrap()
}

fn string(props: &HashMap<String, OwnedValue>, key: &str) -> String {
    String::try_from(props[key].try_clone().unwrap()).unwrap()
}

async fn call_service(rig: &Rig, name: &str, method: &str) -> zbus::Result<()> {
    let proxy = zbus::Proxy::new(&rig.client, BUS_NAME, service_path(name), SERVICE_INTERFACE).await.unwrap();
    proxy.call::<_, _, ()>(method, &()).await
}

/// Waits (with a guard, not a timing assertion) until the service's `State` is `want`, as seen
/// through the agent's PropertiesChanged signals on `changes`.
async fn wait_state(changes: &mut zbus::fdo::PropertiesChangedStream, want: &str) {
    tokio::time::timeout(GUARD, async {
        while let Some(signal) = changes.next().await {
            let args = signal.args().unwrap();
            if let Some(v) = args.changed_properties().get("State") {
                if <&str>::try_from(v).unwrap() == want {
                    return;
                }
            }
        }
        panic!("the signal stream ended");
    })
    .await
    .unwrap_or_else(|_| panic!("no PropertiesChanged with State={want}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_and_every_service_with_its_properties() {
    need_root!();
    let mut rig = Rig::without_agent(Polkit::Absent).await;
    let notified = rig.start_agent().await;
    assert!(notified.contains("STATUS=Watching 2 services"), "{notified}");
    assert!(
        rig.calls.lock().unwrap().iter().any(|(m, _)| m == "Subscribe"),
        "the agent subscribes to systemd's signals"
    );

    let om = rig.object_manager().await;
    let objects = om.get_managed_objects().await.unwrap();
    // (zbus also lists the bare parent node .../service, with no interface of ours.)
    let mut paths: Vec<String> = objects
        .iter()
        .filter(|(_, ifaces)| ifaces.keys().any(|i| i.as_str() == SERVICE_INTERFACE))
        .map(|(p, _)| p.to_string())
        .collect();
    paths.sort();
    assert_eq!(paths, vec![service_path("broken"), service_path("web")]);

    let web = props(&rig, &service_path("web")).await;
    assert_eq!(string(&web, "Name"), "web");
    assert_eq!(string(&web, "Unit"), "web.service");
    assert_eq!(string(&web, "State"), "inactive");
    assert_eq!(string(&web, "SubState"), "dead");
    assert_eq!(string(&web, "Account"), "nobody");
    assert_eq!(u32::try_from(web["Uid"].try_clone().unwrap()).unwrap(), 65534);
    assert_eq!(string(&web, "Image"), "localhost/web:1");
    assert_eq!(Vec::<String>::try_from(web["Gpus"].try_clone().unwrap()).unwrap(), vec!["nvidia.com/gpu=0"]);
    assert_eq!(
        Vec::<u32>::try_from(web["NumaNodes"].try_clone().unwrap()).unwrap(),
        vec![0u32],
        "placed against the H200 capture: node 0"
    );
    assert!(Vec::<String>::try_from(web["Problems"].try_clone().unwrap()).unwrap().is_empty());
    assert!(string(&web, "SourcePath").ends_with("/etc/aicontainers/web.toml"));
    assert_eq!(string(&web, "Sandbox"), "sandboxed");
    assert_eq!(
        Vec::<String>::try_from(web["Egress"].try_clone().unwrap()).unwrap(),
        vec!["llm.internal:8080", "[fd00::7]:443"]
    );

    // Not running: no allow set, no counters. Then the record its unit's ExecStartPre= writes
    // (aictl sandbox allow), and one that is a link, which is not followed.
    let allowed = |p: &HashMap<String, OwnedValue>| {
        Vec::<(String, String, u16)>::try_from(p["SandboxAllowed"].try_clone().unwrap()).unwrap()
    };
    assert!(allowed(&web).is_empty());
    assert_eq!(<(u64, u64)>::try_from(web["SandboxVerdicts"].try_clone().unwrap()).unwrap(), (0, 0));
    let records = rig.root.join("run/aicontainers/sandbox");
    std::fs::create_dir_all(&records).unwrap();
    std::fs::write(
        records.join("web.json"),
        r#"{"service":"web","started_usec":1,"allowed":[{"addr":"fd00::7","proto":"tcp","port":443}]}"#,
    )
    .unwrap();
    let web = props(&rig, &service_path("web")).await;
    assert_eq!(allowed(&web), vec![("fd00::7".to_owned(), "tcp".to_owned(), 443)]);
    std::fs::rename(records.join("web.json"), records.join("elsewhere.json")).unwrap();
    std::os::unix::fs::symlink(records.join("elsewhere.json"), records.join("web.json")).unwrap();
    assert!(allowed(&props(&rig, &service_path("web")).await).is_empty(), "a link was followed");

    let broken = props(&rig, &service_path("broken")).await;
    assert_eq!(string(&broken, "Sandbox"), "none");
    let problems = Vec::<String>::try_from(broken["Problems"].try_clone().unwrap()).unwrap();
    assert!(problems.iter().any(|p| p.contains("broken.toml:4:1: service.comand")), "{problems:?}");

    let manager = zbus::Proxy::new(&rig.client, BUS_NAME, ROOT_PATH, MANAGER_INTERFACE).await.unwrap();
    let listed: Vec<(String, OwnedObjectPath)> = manager.call("ListServices", &()).await.unwrap();
    assert_eq!(listed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), vec!["broken", "web"]);
    let found: OwnedObjectPath = manager.call("GetService", &("web",)).await.unwrap();
    assert_eq!(found.as_str(), service_path("web"));
    let missing = manager.call::<_, _, OwnedObjectPath>("GetService", &("nope",)).await.unwrap_err();
    assert!(
        matches!(&missing, zbus::Error::MethodError(n, _, _) if n.as_str() == "org.aicontainers.Error.NotFound"),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn everyone_may_read() {
    need_root!();
    let rig = Rig::start(Polkit::Absent).await;
    let web = service_path("web");
    let got = rig
        .dbus_send(true, &web, "org.freedesktop.DBus.Properties.GetAll", &["string:org.aicontainers.Service1"])
        .await;
    assert!(got.status.success(), "{}", said(&got));
    assert!(said(&got).contains("localhost/web:1"), "{}", said(&got));
    let got = rig
        .dbus_send(
            true,
            &web,
            "org.freedesktop.DBus.Properties.Get",
            &["string:org.aicontainers.Service1", "string:State"],
        )
        .await;
    assert!(got.status.success() && said(&got).contains("inactive"), "{}", said(&got));
    let got = rig.dbus_send(true, ROOT_PATH, "org.freedesktop.DBus.ObjectManager.GetManagedObjects", &[]).await;
    assert!(got.status.success() && said(&got).contains("nvidia.com/gpu=0"), "{}", said(&got));
    let got = rig.dbus_send(true, ROOT_PATH, "org.aicontainers.Manager1.ListServices", &[]).await;
    assert!(got.status.success() && said(&got).contains("\"web\""), "{}", said(&got));
    let got = rig.dbus_send(true, &web, "org.freedesktop.DBus.Introspectable.Introspect", &[]).await;
    assert!(got.status.success() && said(&got).contains("org.aicontainers.Service1"), "{}", said(&got));
    // No property is writable, and the policy does not even let Set through.
    let got = rig
        .dbus_send(
            true,
            &web,
            "org.freedesktop.DBus.Properties.Set",
            &["string:org.aicontainers.Service1", "string:Image", "variant:string:evil"],
        )
        .await;
    assert!(!got.status.success() && said(&got).contains("AccessDenied"), "{}", said(&got));
}

/// Every method that changes the system, as (object path, interface.method).
fn mutating() -> Vec<(String, &'static str)> {
    vec![
        (service_path("web"), "org.aicontainers.Service1.Start"),
        (service_path("web"), "org.aicontainers.Service1.Stop"),
        (service_path("web"), "org.aicontainers.Service1.Restart"),
        (service_path("web"), "org.aicontainers.Service1.Preflight"),
        (ROOT_PATH.to_owned(), "org.aicontainers.Manager1.Reload"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn without_polkit_nobody_is_denied_every_mutating_method() {
    need_root!();
    let rig = Rig::start(Polkit::Absent).await;
    for (path, method) in mutating() {
        let got = rig.dbus_send(true, &path, method, &[]).await;
        let text = said(&got);
        assert!(!got.status.success(), "{method} as nobody succeeded: {text}");
        assert!(text.contains("org.aicontainers.Error.AccessDenied"), "{method}: {text}");
        assert!(text.contains("polkit is not running"), "{method}: {text}");
    }
    let calls = rig.calls.lock().unwrap().clone();
    assert!(calls.iter().all(|(m, _)| m == "Subscribe"), "systemd was asked to act for nobody: {calls:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn polkit_decides_for_everyone_but_root() {
    need_root!();
    let rig = Rig::start(Polkit::Answers(false)).await;
    for (path, method) in mutating() {
        let got = rig.dbus_send(true, &path, method, &[]).await;
        let text = said(&got);
        assert!(!got.status.success() && text.contains("org.aicontainers.Error.AccessDenied"), "{method}: {text}");
        assert!(text.contains("org.aicontainers.manage-services"), "{method}: {text}");
    }
    {
        let checks = rig.checks.lock().unwrap();
        assert_eq!(checks.len(), 5, "{checks:?}");
        assert!(
            checks
                .iter()
                .all(|(kind, action, _)| kind == "system-bus-name" && action == "org.aicontainers.manage-services"),
            "{checks:?}"
        );
        let calls = rig.calls.lock().unwrap();
        assert!(calls.iter().all(|(m, _)| m == "Subscribe"), "systemd was asked to act for nobody: {calls:?}");
    }
    // Root is not asked about.
    call_service(&rig, "web", "Start").await.unwrap();
    assert_eq!(rig.checks.lock().unwrap().len(), 5, "polkit was asked about root");

    // When polkit says yes, nobody may act.
    let rig = Rig::start(Polkit::Answers(true)).await;
    let got = rig.dbus_send(true, &service_path("web"), "org.aicontainers.Service1.Start", &[]).await;
    assert!(got.status.success(), "{}", said(&got));
    assert_eq!(calls_but_scans(&rig).last().cloned(), Some(("StartUnit".into(), "web.service".into())));
}

/// What systemd was asked, but the image scans the agent starts on its own when a service
/// becomes active (`aicontainers-scan@NAME.service`).
fn calls_but_scans(rig: &Rig) -> Vec<(String, String)> {
    rig.calls.lock().unwrap().iter().filter(|(_, u)| !u.starts_with("aicontainers-scan@")).cloned().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn root_starts_stops_and_the_state_follows_systemd() {
    need_root!();
    let rig = Rig::start(Polkit::Absent).await;
    let mut changes = changes_of(&rig, "web").await;
    call_service(&rig, "web", "Start").await.unwrap();
    wait_state(&mut changes, "active").await;
    let log = rig.log();
    assert!(
        log.contains("start web.service (asked by UID 0)")
            && log.contains("service=web")
            && log.contains("caller_uid=0"),
        "{log}"
    );
    assert_eq!(string(&props(&rig, &service_path("web")).await, "SubState"), "running");
    call_service(&rig, "web", "Restart").await.unwrap();
    call_service(&rig, "web", "Stop").await.unwrap();
    wait_state(&mut changes, "inactive").await;
    let calls: Vec<_> = calls_but_scans(&rig).into_iter().skip(1).collect();
    assert_eq!(
        calls,
        vec![
            ("StartUnit".into(), "web.service".into()),
            ("RestartUnit".into(), "web.service".into()),
            ("StopUnit".into(), "web.service".into())
        ]
    );

    // A job that does not end with `done` is a typed failure naming the result.
    let err = call_service(&rig, "broken", "Start").await.unwrap_err();
    let zbus::Error::MethodError(name, Some(message), _) = &err else { panic!("{err:?}") };
    assert_eq!(name.as_str(), "org.aicontainers.Error.Failed");
    assert!(message.contains("result `failed`") && message.contains("journalctl -u broken.service"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_made_by_others_are_signalled() {
    need_root!();
    let rig = Rig::start(Polkit::Absent).await;
    let mut changes = changes_of(&rig, "web").await;
    // As `systemctl start web` by someone else would: systemd's unit changes, the agent follows.
    set_unit_state(rig.systemd.object_server(), &unit_path("web.service"), "active", "running").await.unwrap();
    wait_state(&mut changes, "active").await;
    set_unit_state(rig.systemd.object_server(), &unit_path("web.service"), "failed", "failed").await.unwrap();
    wait_state(&mut changes, "failed").await;
    assert_eq!(string(&props(&rig, &service_path("web")).await, "State"), "failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_and_daemon_reloads_rescan_the_files() {
    need_root!();
    let rig = Rig::start(Polkit::Absent).await;
    let om = rig.object_manager().await;
    let mut added = om.receive_interfaces_added().await.unwrap();
    let mut removed = om.receive_interfaces_removed().await.unwrap();

    // Without web's GPU: two services naming the same GPU would change web too.
    write_service(&rig.root, "llama-3.1", WEB.split("[gpu]").next().unwrap());
    let manager = zbus::Proxy::new(&rig.client, BUS_NAME, ROOT_PATH, MANAGER_INTERFACE).await.unwrap();
    manager.call::<_, _, ()>("Reload", &()).await.unwrap();
    assert!(rig.calls.lock().unwrap().iter().any(|(m, _)| m == "Reload"), "Reload is systemd's daemon-reload first");
    let signal = tokio::time::timeout(GUARD, added.next()).await.unwrap().unwrap();
    assert_eq!(signal.args().unwrap().object_path().as_str(), service_path("llama-3.1"));
    let listed: Vec<(String, OwnedObjectPath)> = manager.call("ListServices", &()).await.unwrap();
    assert!(
        listed.iter().any(|(n, p)| n == "llama-3.1" && p.as_str() == "/org/aicontainers/Agent1/service/llama_2d3_2e1"),
        "{listed:?}"
    );

    // A daemon-reload asked by someone else (systemd's Reloading signal) rescans too.
    std::fs::remove_file(rig.root.join("etc/aicontainers/web.toml")).unwrap();
    let emitter = zbus::object_server::SignalEmitter::new(&rig.systemd, SYSTEMD_PATH).unwrap();
    FakeSystemd::reloading(&emitter, true).await.unwrap();
    FakeSystemd::reloading(&emitter, false).await.unwrap();
    let signal = tokio::time::timeout(GUARD, removed.next()).await.unwrap().unwrap();
    assert_eq!(signal.args().unwrap().object_path().as_str(), service_path("web"));
    let listed: Vec<(String, OwnedObjectPath)> = manager.call("ListServices", &()).await.unwrap();
    assert_eq!(listed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), vec!["broken", "llama-3.1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_root_may_own_the_name() {
    need_root!();
    let rig = Rig::without_agent(Polkit::Absent).await;
    let agent = env!("CARGO_BIN_EXE_aicontainersd");
    let root = rig.root.display().to_string();
    let got = rig.as_nobody(agent, &["--bus-address", &rig.address, "--root", &root]).await;
    let text = said(&got);
    assert!(!got.status.success(), "the agent ran as nobody: {text}");
    assert!(text.contains("cannot own org.aicontainers.Agent1") && text.contains("AccessDenied"), "{text}");
}

/// The introspection of the live objects is what agent/interfaces/*.xml (installed under
/// /usr/share/dbus-1/interfaces) says. UPDATE_GOLDEN=1 rewrites those files.
#[tokio::test(flavor = "multi_thread")]
async fn introspection_matches_the_installed_xml() {
    need_root!();
    let mut rig = Rig::without_agent(Polkit::Absent).await;
    // An image to look at: a scan verdict of web.
    let image_id = format!("sha256:{}", "c".repeat(64));
    let verdict = aicontainers::scan::record::Verdict {
        service: "web".into(),
        image: "localhost/web:1".into(),
        digest: image_id.clone(),
        scanned_at: 1,
        findings: Vec::new(),
    };
    let store = aicontainers::scan::record::Store { dir: rig.root.join("var/lib/aicontainers/scan") };
    store.write_verdict(&verdict).unwrap();
    rig.start_agent().await;
    // A job to look at: root pulls a file of this host.
    let file = rig.dir.path().join("weights.bin");
    std::fs::write(&file, b"weights").unwrap();
    let models = zbus::Proxy::new(&rig.client, BUS_NAME, MODELS_PATH, MODELS_INTERFACE).await.unwrap();
    let job: OwnedObjectPath = models.call("Pull", &(format!("file://{}", file.display()),)).await.unwrap();
    for (path, interface) in [
        (ROOT_PATH.to_owned(), MANAGER_INTERFACE),
        (service_path("web"), SERVICE_INTERFACE),
        (MODELS_PATH.to_owned(), MODELS_INTERFACE),
        (job.to_string(), JOB_INTERFACE),
        (aicontainers_agent::image::image_path(&image_id).unwrap(), aicontainers_agent::image::IMAGE_INTERFACE),
    ] {
        let proxy = zbus::fdo::IntrospectableProxy::builder(&rig.client)
            .destination(BUS_NAME)
            .unwrap()
            .path(path.as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        let xml = proxy.introspect().await.unwrap();
        let open = format!("<interface name=\"{interface}\">");
        let start = xml.find(&open).unwrap_or_else(|| panic!("{path} has no {interface}:\n{xml}"));
        let end = start + xml[start..].find("</interface>").unwrap() + "</interface>".len();
        // The block as found, indented under <node> as in the file.
        let live = format!(
            "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n<!-- {interface}: the interface of aicontainersd (aicontainersd(8), docs/agent.md). Checked against the live agent by agent/tests/bus.rs. -->\n<node>\n  {}\n</node>\n",
            &xml[start..end]
        );
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("interfaces/{interface}.xml"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&file, &live).unwrap();
        }
        let golden = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 to create it)", file.display()));
        assert_eq!(
            live,
            golden,
            "{} differs from the live introspection (UPDATE_GOLDEN=1 rewrites it)",
            file.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_bus_it_exits_for_systemd_to_restart_it() {
    need_root!();
    let mut rig = Rig::start(Polkit::Absent).await;
    rig.kill_bus();
    let status = rig.agent_exit().await;
    assert_eq!(status.code(), Some(1), "{}", rig.log());
    assert!(rig.log().contains("lost the connection to the bus"), "{}", rig.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn watchdog_keep_alives_and_a_clean_stop() {
    need_root!();
    let mut rig = Rig::without_agent(Polkit::Absent).await;
    rig.start_agent_with(Some(std::time::Duration::from_millis(200))).await;
    rig.wait_notify("WATCHDOG=1").await;
    rig.wait_notify("WATCHDOG=1").await;
    let pid = rig.agent_pid().to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    rig.wait_notify("STOPPING=1").await;
    let status = rig.agent_exit().await;
    assert_eq!(status.code(), Some(0), "{}", rig.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_file_gives_a_new_object() {
    need_root!();
    let rig = Rig::start(Polkit::Absent).await;
    write_service(&rig.root, "web", &WEB.replace("localhost/web:1", "localhost/web:2"));
    let manager = zbus::Proxy::new(&rig.client, BUS_NAME, ROOT_PATH, MANAGER_INTERFACE).await.unwrap();
    manager.call::<_, _, ()>("Reload", &()).await.unwrap();
    assert_eq!(string(&props(&rig, &service_path("web")).await, "Image"), "localhost/web:2");
}
