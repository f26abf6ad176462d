//! The agent at node scale, on a bus with the system bus's own limits (tests/support/mod.rs:
//! `SYSTEM_BUS_LIMITS`, 512 match rules and 128 pending replies per connection): a thousand
//! services, signals that do not come from systemd, and what the agent says when it cannot read
//! what it should show. Run as root, as the other bus tests.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::time::Instant;

use aicontainers_agent::names::{service_path, BUS_NAME, MANAGER_INTERFACE, ROOT_PATH, SERVICE_INTERFACE};
use futures_util::StreamExt;
use support::*;
use zbus::fdo::PropertiesProxy;
use zbus::names::InterfaceName;
use zbus::zvariant::{OwnedValue, Value};

const THOUSAND: usize = 1000;
/// A valid service without GPUs (a thousand services asking for the same GPU would be refused).
const PLAIN: &str = "[service]\nimage = \"localhost/web:1\"\nrun-as = \"nobody\"\n";

macro_rules! need_root {
    () => {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests must run as root: they own names on a private bus and read its statistics"
        );
    };
}

/// The bus's statistics of the agent's connection (org.freedesktop.DBus.Debug.Stats).
async fn agent_stats(rig: &Rig) -> HashMap<String, OwnedValue> {
    let dbus = zbus::fdo::DBusProxy::new(&rig.client).await.unwrap();
    let owner = dbus.get_name_owner(BUS_NAME.try_into().unwrap()).await.unwrap();
    let stats = zbus::Proxy::new(
        &rig.client,
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus.Debug.Stats",
    )
    .await
    .unwrap();
    stats
        .call("GetConnectionStats", &(owner.as_str(),))
        .await
        .unwrap_or_else(|e| panic!("dbus-daemon gives no statistics ({e}): it must be built with them, as Debian's is"))
}

fn stat(stats: &HashMap<String, OwnedValue>, key: &str) -> u32 {
    u32::try_from(stats.get(key).unwrap_or_else(|| panic!("no {key} in {stats:?}")).try_clone().unwrap()).unwrap()
}

/// The number of service objects in one GetManagedObjects, and how many are `inactive`.
async fn services_on_the_bus(rig: &Rig) -> (usize, usize) {
    let om = rig.object_manager().await;
    let objects = om.get_managed_objects().await.unwrap();
    let services: Vec<_> =
        objects.values().filter_map(|i| i.iter().find(|(n, _)| n.as_str() == SERVICE_INTERFACE)).collect();
    let inactive = services
        .iter()
        .filter(|(_, props)| props.get("State").and_then(|v| <&str>::try_from(v).ok()) == Some("inactive"))
        .count();
    (services.len(), inactive)
}

async fn manager_problems(rig: &Rig) -> Vec<String> {
    let manager = zbus::Proxy::new(&rig.client, BUS_NAME, ROOT_PATH, MANAGER_INTERFACE).await.unwrap();
    manager.get_property("Problems").await.unwrap()
}

/// The limits the test bus runs with are those of the installed system bus configuration
/// (Debian's /usr/share/dbus-1/system.conf lists them as comments: they are dbus-daemon's own
/// defaults for the system bus), and the bus enforces them.
#[tokio::test(flavor = "multi_thread")]
async fn test_bus_has_the_system_bus_limits() {
    need_root!();
    let path = std::path::Path::new("/usr/share/dbus-1/system.conf");
    match std::fs::read_to_string(path) {
        Err(e) => {
            eprintln!("NOT COMPARED: cannot read {} ({e}); the copied limits stay unchecked here", path.display())
        }
        Ok(text) => {
            let mut found: Vec<(String, u64)> = Vec::new();
            for line in text.lines() {
                let Some(rest) = line.split("<limit name=\"").nth(1) else { continue };
                let (name, rest) = rest.split_once("\">").unwrap();
                let value = rest.split('<').next().unwrap().trim().parse().unwrap();
                found.push((name.to_owned(), value));
            }
            let ours: Vec<(String, u64)> = SYSTEM_BUS_LIMITS.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect();
            assert_eq!(ours, found, "tests/support/mod.rs SYSTEM_BUS_LIMITS differs from {}", path.display());
        }
    }
    // Enforced: a connection's 513th match rule is refused.
    let rig = Rig::without_agent(Polkit::Absent).await;
    let dbus = zbus::fdo::DBusProxy::new(&rig.client).await.unwrap();
    for i in 0..512 {
        let rule = format!("type='signal',path='/test/rule{i}'");
        dbus.add_match_rule(rule.as_str().try_into().unwrap()).await.unwrap();
    }
    let refused = dbus.add_match_rule("type='signal',path='/test/rule512'".try_into().unwrap()).await.unwrap_err();
    assert!(refused.to_string().contains("max_match_rules_per_connection=512"), "{refused}");
}

/// A thousand services on a bus with the system bus's limits: all on the bus after a
/// daemon-reload, with a constant number of match rules, in batched reads; then a state change of
/// the last one still reaches its object. Prints how long the reload took (no assertion on time).
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_services_after_a_daemon_reload() {
    need_root!();
    let mut rig = Rig::without_agent(Polkit::Absent).await;
    let ready = rig.start_agent().await;
    assert!(ready.contains("STATUS=Watching 2 services"), "{ready}");
    let before = stat(&agent_stats(&rig).await, "MatchRules");

    for i in 0..THOUSAND {
        write_service(&rig.root, &format!("s{i:03}"), PLAIN);
    }
    rig.reads.lock().unwrap().clear();
    let emitter = zbus::object_server::SignalEmitter::new(&rig.systemd, SYSTEMD_PATH).unwrap();
    FakeSystemd::reloading(&emitter, true).await.unwrap();
    let t0 = Instant::now();
    FakeSystemd::reloading(&emitter, false).await.unwrap();
    let status = rig.wait_notify(&format!("STATUS=Watching {} services", THOUSAND + 2)).await;
    let took = t0.elapsed();
    assert!(!status.contains("cannot show everything"), "{status}");
    println!(
        "{THOUSAND} services: from systemd's Reloading(false) to all {} services on the bus in {:.0} ms ({} ListUnitsByNames calls)",
        THOUSAND + 2,
        took.as_secs_f64() * 1e3,
        rig.reads.lock().unwrap().len()
    );

    let (count, inactive) = services_on_the_bus(&rig).await;
    assert_eq!((count, inactive), (THOUSAND + 2, THOUSAND + 2), "every service on the bus with its unit's state");
    let reads = rig.reads.lock().unwrap().clone();
    assert!(reads.iter().all(|n| *n <= aicontainers_agent::units::CHUNK), "batched reads: {reads:?}");
    assert_eq!(reads.iter().sum::<usize>(), THOUSAND + 2, "each unit read once: {reads:?}");
    let stats = agent_stats(&rig).await;
    let (rules, peak) = (stat(&stats, "MatchRules"), stat(&stats, "PeakMatchRules"));
    println!("match rules of the agent: {before} with 2 services, {rules} with {} (peak {peak})", THOUSAND + 2);
    assert_eq!(rules, before, "the match rules do not grow with the services");
    assert!(peak <= before + 2, "peak {peak} vs {before}");
    assert!(manager_problems(&rig).await.is_empty());

    // The last service's unit changes: the one match rule carries it to its object.
    let props = PropertiesProxy::builder(&rig.client)
        .destination(BUS_NAME)
        .unwrap()
        .path(service_path("s999"))
        .unwrap()
        .build()
        .await
        .unwrap();
    let mut changes = props.receive_properties_changed().await.unwrap();
    set_unit_state(rig.systemd.object_server(), &unit_path("s999.service"), "active", "running").await.unwrap();
    tokio::time::timeout(GUARD, async {
        while let Some(signal) = changes.next().await {
            if signal.args().unwrap().changed_properties().get("State").is_some_and(|v| v == &Value::from("active")) {
                return;
            }
        }
    })
    .await
    .expect("s999's State did not follow its unit");

    // aictl status shows them all, to anyone.
    let aictl = aictl().display().to_string();
    let t = Instant::now();
    let out = rig.as_nobody(&aictl, &["status"]).await;
    println!("aictl status with {} services: {:.0} ms", THOUSAND + 2, t.elapsed().as_secs_f64() * 1e3);
    assert!(out.status.success(), "{}", said(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    // A header, one line per service, and one that says `broken` cannot run.
    assert_eq!(text.lines().count(), 1 + THOUSAND + 2 + 1, "{text}");
    assert!(text.lines().any(|l| l.starts_with("s999 ") && l.contains(" active ")), "{text}");
}

/// A `PropertiesChanged` for a unit that does not come from systemd (sent to the agent directly,
/// which the bus delivers whatever the agent's match rules say, or broadcast) changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn unit_signals_from_anyone_but_systemd_are_ignored() {
    need_root!();
    let rig = Rig::start(Polkit::Absent).await;
    let dbus = zbus::fdo::DBusProxy::new(&rig.client).await.unwrap();
    let agent = dbus.get_name_owner(BUS_NAME.try_into().unwrap()).await.unwrap();
    let props = PropertiesProxy::builder(&rig.client)
        .destination(BUS_NAME)
        .unwrap()
        .path(service_path("web"))
        .unwrap()
        .build()
        .await
        .unwrap();
    let mut changes = props.receive_properties_changed().await.unwrap();
    let forged: HashMap<&str, Value<'_>> = HashMap::from([("ActiveState", Value::from("failed"))]);
    let body = ("org.freedesktop.systemd1.Unit", forged, Vec::<&str>::new());
    let unit = unit_path("web.service");
    for destination in [Some(agent.as_str()), None] {
        rig.client
            .emit_signal(destination, unit.as_str(), "org.freedesktop.DBus.Properties", "PropertiesChanged", &body)
            .await
            .unwrap();
    }
    // Then systemd's own change, which the agent must show, and nothing before it.
    set_unit_state(rig.systemd.object_server(), &unit, "active", "running").await.unwrap();
    let seen = tokio::time::timeout(GUARD, async {
        let mut seen = Vec::new();
        while let Some(signal) = changes.next().await {
            if let Some(state) = signal.args().unwrap().changed_properties().get("State") {
                let state = <&str>::try_from(state).unwrap().to_owned();
                seen.push(state.clone());
                if state == "active" {
                    return seen;
                }
            }
        }
        seen
    })
    .await
    .unwrap();
    assert_eq!(seen, vec!["active"], "the forged State=failed reached the service");
}

/// When systemd cannot answer for some units, the agent says so: in its STATUS line, its log at
/// warning level, Manager1.Problems and `aictl status`; and stops saying so once it can read
/// them again.
#[tokio::test(flavor = "multi_thread")]
async fn what_it_cannot_read_it_says() {
    need_root!();
    let mut rig = Rig::without_agent(Polkit::Absent).await;
    write_service(&rig.root, "unreadable", PLAIN);
    let ready = rig.start_agent().await;
    assert!(
        ready.contains("STATUS=Watching 3 services; cannot show everything: cannot read the state of 3 units"),
        "{ready}"
    );
    assert!(rig.log().contains("warn: cannot show everything: cannot read the state of 3 units"), "{}", rig.log());
    let problems = manager_problems(&rig).await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("cannot load unreadable.service"), "{problems:?}");
    let web = PropertiesProxy::builder(&rig.client).destination(BUS_NAME).unwrap().path(service_path("web")).unwrap();
    let web = web.build().await.unwrap();
    let state = web.get(InterfaceName::try_from(SERVICE_INTERFACE).unwrap(), "State").await.unwrap();
    assert_eq!(<&str>::try_from(&*state).unwrap(), "unknown", "a state not read is unknown, never made up");

    let aictl = aictl().display().to_string();
    for args in [&["status"][..], &["status", "--json"][..]] {
        let out = rig.as_nobody(&aictl, args).await;
        assert!(out.status.success(), "{}", said(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("aictl: warning: aicontainersd cannot show everything: cannot read the state of 3 units"),
            "{args:?}: {err}"
        );
    }

    // Fixed: the next reload clears the problem, with PropertiesChanged on Manager1.
    let manager = PropertiesProxy::builder(&rig.client).destination(BUS_NAME).unwrap().path(ROOT_PATH).unwrap();
    let manager = manager.build().await.unwrap();
    let mut changes = manager.receive_properties_changed().await.unwrap();
    std::fs::remove_file(rig.root.join("etc/aicontainers/unreadable.toml")).unwrap();
    let emitter = zbus::object_server::SignalEmitter::new(&rig.systemd, SYSTEMD_PATH).unwrap();
    FakeSystemd::reloading(&emitter, false).await.unwrap();
    let status = rig.wait_notify("STATUS=Watching 2 services").await;
    assert!(status.lines().any(|l| l == "STATUS=Watching 2 services"), "{status}");
    let signal = tokio::time::timeout(GUARD, changes.next()).await.unwrap().unwrap();
    let args = signal.args().unwrap();
    assert_eq!(args.interface_name().as_str(), MANAGER_INTERFACE);
    let cleared: Vec<String> = args.changed_properties()["Problems"].try_clone().unwrap().try_into().unwrap();
    assert!(cleared.is_empty());
    assert!(manager_problems(&rig).await.is_empty());
    let state = web.get(InterfaceName::try_from(SERVICE_INTERFACE).unwrap(), "State").await.unwrap();
    assert_eq!(<&str>::try_from(&*state).unwrap(), "inactive");
}
