//! Scanned images on the bus (`org.aicontainers.Image1`, docs/scan.md "On the bus") and the scan
//! the agent starts when a service becomes active, against a real dbus-daemon with the stand-in
//! systemd of tests/support. Run as root, as the other bus tests.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;

use aicontainers::scan::record::{Store, Verdict};
use aicontainers::scan::{Finding, Severity};
use aicontainers_agent::image::{image_path, IMAGE_INTERFACE};
use aicontainers_agent::names::{BUS_NAME, MANAGER_INTERFACE, ROOT_PATH};
use futures_util::StreamExt;
use support::*;
use zbus::fdo::PropertiesProxy;
use zbus::names::InterfaceName;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

fn finding(id: &str, severity: Severity) -> Finding {
    Finding {
        id: id.into(),
        aliases: Vec::new(),
        package: "zlib1g".into(),
        ecosystem: "Debian:13".into(),
        installed: "1:1.3".into(),
        fixed: Some("1:1.4".into()),
        severity,
    }
}

fn verdict(hex: char, findings: Vec<Finding>) -> Verdict {
    Verdict {
        service: "web".into(),
        image: "localhost/web:1".into(),
        digest: format!("sha256:{}", hex.to_string().repeat(64)),
        scanned_at: 1_700_000_000,
        findings,
    }
}

fn store(rig: &Rig) -> Store {
    Store { dir: rig.root.join("var/lib/aicontainers/scan") }
}

async fn list_images(rig: &Rig) -> Vec<(String, OwnedObjectPath)> {
    let manager = zbus::Proxy::new(&rig.client, BUS_NAME, ROOT_PATH, MANAGER_INTERFACE).await.unwrap();
    manager.call("ListImages", &()).await.unwrap()
}

async fn image_props(rig: &Rig, path: &str) -> HashMap<String, OwnedValue> {
    let p =
        PropertiesProxy::builder(&rig.client).destination(BUS_NAME).unwrap().path(path).unwrap().build().await.unwrap();
    p.get_all(InterfaceName::try_from(IMAGE_INTERFACE).unwrap()).await.unwrap()
}

/// Waits (with a guard, not a timing assertion) until `ListImages` gives `want` IDs.
async fn wait_images(rig: &Rig, want: &[String]) {
    tokio::time::timeout(GUARD, async {
        loop {
            let ids: Vec<String> = list_images(rig).await.into_iter().map(|(id, _)| id).collect();
            if ids == want {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("ListImages never gave {want:?}: {}", rig.log()));
}

#[tokio::test(flavor = "multi_thread")]
async fn verdicts_become_image_objects_and_new_findings_a_signal() {
    assert!(nix::unistd::geteuid().is_root(), "these tests must run as root: they own names on a private bus");
    let mut rig = Rig::without_agent(Polkit::Absent).await;
    let s = store(&rig);
    s.write_verdict(&verdict('a', vec![finding("DEBIAN-CVE-1", Severity::High)])).unwrap();
    // Hostile neighbours: a FIFO (a reader that opened it would wait for ever), garbage, a link
    // to a device, an oversized file. Each is skipped with a line in the journal.
    let dir = s.dir.join("verdict");
    nix::unistd::mkfifo(&dir.join("fifo.json"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    std::fs::write(dir.join("junk.json"), b"\xff\xfe{{{").unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.json")).unwrap();
    std::fs::File::create(dir.join("huge.json")).unwrap().set_len(64 << 20).unwrap();
    rig.start_agent().await;

    let id_a = format!("sha256:{}", "a".repeat(64));
    let path_a = image_path(&id_a).unwrap();
    assert_eq!(list_images(&rig).await, vec![(id_a.clone(), OwnedObjectPath::try_from(path_a.clone()).unwrap())]);
    let props = image_props(&rig, &path_a).await;
    assert_eq!(String::try_from(props["Id"].try_clone().unwrap()).unwrap(), id_a);
    assert_eq!(Vec::<String>::try_from(props["Services"].try_clone().unwrap()).unwrap(), ["web"]);
    assert_eq!(Vec::<String>::try_from(props["References"].try_clone().unwrap()).unwrap(), ["localhost/web:1"]);
    let findings = HashMap::<String, u64>::try_from(props["Findings"].try_clone().unwrap()).unwrap();
    assert_eq!((findings["high"], findings["critical"], findings.len()), (1, 0, 6), "{findings:?}");
    assert_eq!(u64::try_from(props["LastScan"].try_clone().unwrap()).unwrap(), 1_700_000_000_000_000);
    // No policy file: the default (severity high, action warn).
    assert_eq!(String::try_from(props["Verdict"].try_clone().unwrap()).unwrap(), "warn");
    let log = rig.log();
    for name in ["fifo.json", "junk.json", "zero.json", "huge.json"] {
        assert!(log.contains(name) && log.contains("skipped"), "{name} was not reported: {log}");
    }

    // A scan adds a finding: NewFindings names it (and only it), and Findings changes.
    let image = zbus::Proxy::new(&rig.client, BUS_NAME, path_a.as_str(), IMAGE_INTERFACE).await.unwrap();
    let mut signals = image.receive_signal("NewFindings").await.unwrap();
    s.write_verdict(&verdict(
        'a',
        vec![finding("DEBIAN-CVE-1", Severity::High), finding("DEBIAN-CVE-2", Severity::Critical)],
    ))
    .unwrap();
    let signal = tokio::time::timeout(GUARD, signals.next()).await.expect("no NewFindings").unwrap();
    let (count, ids): (u32, Vec<String>) = signal.body().deserialize().unwrap();
    assert_eq!((count, ids), (1, vec!["DEBIAN-CVE-2".to_owned()]));
    let findings =
        HashMap::<String, u64>::try_from(image_props(&rig, &path_a).await["Findings"].try_clone().unwrap()).unwrap();
    assert_eq!((findings["high"], findings["critical"]), (1, 1));

    // The service now runs another image ID: the old object goes, the new one comes.
    let id_b = format!("sha256:{}", "b".repeat(64));
    s.write_verdict(&verdict('b', vec![])).unwrap();
    wait_images(&rig, std::slice::from_ref(&id_b)).await;
    assert_eq!(
        String::try_from(image_props(&rig, &image_path(&id_b).unwrap()).await["Verdict"].try_clone().unwrap()).unwrap(),
        "pass"
    );
    // A policy that cannot be read: the verdict cannot be judged.
    std::fs::create_dir_all(rig.root.join("etc/aicontainers/scan")).unwrap();
    std::fs::write(rig.root.join("etc/aicontainers/scan/policy.toml"), "[policy]\naction = \"blok\"\n").unwrap();
    let path_b = image_path(&id_b).unwrap();
    tokio::time::timeout(GUARD, async {
        while String::try_from(image_props(&rig, &path_b).await["Verdict"].try_clone().unwrap()).unwrap() != "unknown" {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("Verdict never became unknown");
    // Its verdict removed (the service is gone): no image left.
    std::fs::remove_file(s.verdict_path("web")).unwrap();
    wait_images(&rig, &[]).await;
    assert!(rig.log().contains("off the bus"), "{}", rig.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_that_becomes_active_has_its_image_scanned() {
    assert!(nix::unistd::geteuid().is_root(), "these tests must run as root: they own names on a private bus");
    let rig = Rig::start(Polkit::Absent).await;
    let server = rig.systemd.object_server();
    // `broken` (files with a mistake) runs no scan; `web` does, once per run.
    set_unit_state(server, &unit_path("broken.service"), "active", "running").await.unwrap();
    set_unit_state(server, &unit_path("web.service"), "activating", "start").await.unwrap();
    set_unit_state(server, &unit_path("web.service"), "active", "running").await.unwrap();
    wait_scans(&rig, 1).await;
    assert_eq!(scans(&rig, "broken"), 0, "a service whose files are invalid has no image to scan");
    set_unit_state(server, &unit_path("web.service"), "inactive", "dead").await.unwrap();
    set_unit_state(server, &unit_path("web.service"), "active", "running").await.unwrap();
    wait_scans(&rig, 2).await;
    assert!(rig.log().contains("aicontainers-scan@web.service scans its image"), "{}", rig.log());
}

/// How many times systemd was asked to start the scan of service `name`.
fn scans(rig: &Rig, name: &str) -> usize {
    let unit = format!("aicontainers-scan@{name}.service");
    rig.calls.lock().unwrap().iter().filter(|(m, u)| m == "StartUnit" && *u == unit).count()
}

/// Waits (with a guard) until web's scan was started `want` times.
async fn wait_scans(rig: &Rig, want: usize) {
    tokio::time::timeout(GUARD, async {
        while scans(rig, "web") < want {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no scan of web: {:?}", rig.calls.lock().unwrap()));
}
