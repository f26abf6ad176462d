//! Preflight problems on the bus: the agent shows the records root writes, follows changes to
//! what the checks read, and re-runs them on request (against a real dbus-daemon and the
//! stand-in systemd of tests/support). Run as root, as the other bus tests.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;

use aicontainers::preflight::record::{Problem, Record, RECORD_DIR};
use aicontainers_agent::names::service_path;
use aicontainers_agent::preflight::{Check, PREFLIGHT_UNIT};
use aicontainers_agent::service::Service1Proxy;
use futures_util::StreamExt;
use support::*;
use zbus::zvariant::OwnedValue;

fn record_dir(rig: &Rig) -> PathBuf {
    rig.root.join(RECORD_DIR.trim_start_matches('/'))
}

fn write_record(rig: &Rig, service: &str, problems: &[(&str, &str)]) {
    let record = Record {
        service: service.into(),
        checked_at: 1_700_000_000,
        checks: 26,
        problems: problems
            .iter()
            .map(|(id, status)| Problem {
                id: (*id).into(),
                status: (*status).into(),
                message: format!("{id}: /etc/cdi/nvidia.yaml says so"),
                fix: "systemctl restart nvidia-cdi-refresh.service".into(),
            })
            .collect(),
    };
    std::fs::create_dir_all(record_dir(rig)).unwrap();
    let tmp = record_dir(rig).join(".tmp");
    std::fs::write(&tmp, serde_json::to_vec(&record).unwrap()).unwrap();
    std::fs::rename(tmp, record_dir(rig).join(format!("{service}.json"))).unwrap();
}

async fn service(rig: &Rig, name: &str) -> Service1Proxy<'static> {
    // Uncached: each read asks the agent (a cache follows signals, and may lag the test's own).
    Service1Proxy::builder(&rig.client)
        .path(service_path(name))
        .unwrap()
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap()
}

/// Waits (a guard, not a timing assertion) for a PropertiesChanged of PreflightProblems that
/// `want` accepts.
async fn wait_problems(changes: &mut zbus::fdo::PropertiesChangedStream, want: impl Fn(&[Check]) -> bool) {
    tokio::time::timeout(GUARD, async {
        while let Some(signal) = changes.next().await {
            let args = signal.args().unwrap();
            if let Some(v) = args.changed_properties().get("PreflightProblems") {
                let checks: Vec<Check> = Vec::try_from(OwnedValue::try_from(v.try_clone().unwrap()).unwrap()).unwrap();
                if want(&checks) {
                    return;
                }
            }
        }
        panic!("the signal stream ended");
    })
    .await
    .unwrap_or_else(|_| panic!("no PropertiesChanged of PreflightProblems as wanted"));
}

/// The records' directory does not exist when the agent starts (it is watched through its
/// parent); a record written later shows on the object with a signal, and a hostile file in
/// its place shows as `unknown`, never as "no problem".
#[tokio::test(flavor = "multi_thread")]
async fn records_show_on_the_service_with_a_signal_and_hostile_ones_are_unknown() {
    let rig = Rig::start(Polkit::Absent).await;
    assert!(!record_dir(&rig).exists());
    let web = service(&rig, "web").await;
    assert_eq!(web.preflight_problems().await.unwrap(), Vec::<Check>::new());
    assert_eq!(web.preflight_checked_at().await.unwrap(), 0, "no check has run");
    let mut changes = changes_of(&rig, "web").await;

    write_record(&rig, "web", &[("cdi.stale-driver", "error"), ("driver.xid", "warning")]);
    wait_problems(&mut changes, |c| c.len() == 2).await;
    let problems = web.preflight_problems().await.unwrap();
    assert_eq!(problems[0].id, "cdi.stale-driver");
    assert_eq!(problems[0].status, "error");
    assert!(problems[0].fix.contains("nvidia-cdi-refresh"), "{problems:?}");
    assert_eq!(web.preflight_checked_at().await.unwrap(), 1_700_000_000);

    // Fixed: the next record has no problem.
    write_record(&rig, "web", &[]);
    wait_problems(&mut changes, <[Check]>::is_empty).await;

    // A FIFO where the record should be (reading it must not block the agent), then a link.
    let path = record_dir(&rig).join("web.json");
    std::fs::remove_file(&path).unwrap();
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    wait_problems(&mut changes, |c| c.len() == 1 && c[0].status == "unknown").await;
    let problems = web.preflight_problems().await.unwrap();
    assert!(problems[0].message.contains("web.json: a FIFO, not a regular file"), "{problems:?}");
    // The agent still answers.
    assert_eq!(web.name().await.unwrap(), "web");
}

/// A change to a CDI spec directory (made after the agent started) runs the checks again,
/// through aicontainers-preflight.service: once for a burst of changes.
#[tokio::test(flavor = "multi_thread")]
async fn a_changed_cdi_spec_runs_the_checks_again() {
    let rig = Rig::start(Polkit::Absent).await;
    let runs = || rig.calls.lock().unwrap().iter().filter(|(m, u)| m == "StartUnit" && u == PREFLIGHT_UNIT).count();
    assert_eq!(runs(), 0);
    let cdi = rig.root.join("etc/cdi");
    std::fs::create_dir_all(&cdi).unwrap();
    for i in 0..20 {
        std::fs::write(cdi.join("nvidia.yaml"), format!("cdiVersion: 0.6.0 # {i}\n")).unwrap();
    }
    tokio::time::timeout(GUARD, async {
        while runs() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the checks did not run after the spec changed");
    // A later change runs them again.
    let before = runs();
    std::fs::write(cdi.join("other.json"), "{}").unwrap();
    tokio::time::timeout(GUARD, async {
        while runs() == before {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the checks did not run after the second change");
}

/// `Preflight()` runs the unit and returns the service's problems as its record has them;
/// nobody is refused without polkit (see also bus.rs, which lists it with every mutating call).
#[tokio::test(flavor = "multi_thread")]
async fn the_preflight_method_runs_the_checks_for_root_only() {
    let rig = Rig::start(Polkit::Absent).await;
    write_record(&rig, "web", &[("rootless.linger", "error")]);
    let problems = service(&rig, "web").await.preflight().await.unwrap();
    assert_eq!(problems.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["rootless.linger"]);
    assert!(rig.calls.lock().unwrap().iter().any(|(m, u)| m == "StartUnit" && u == PREFLIGHT_UNIT));
    let got = rig.dbus_send(true, &service_path("web"), "org.aicontainers.Service1.Preflight", &[]).await;
    assert!(!got.status.success() && said(&got).contains("org.aicontainers.Error.AccessDenied"), "{}", said(&got));
}
