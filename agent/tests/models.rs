//! The model cache through the agent: `org.aicontainers.Models1` and its `Job1` objects, on a
//! real dbus-daemon (tests/support) pulling from a real registry on loopback (tests/registry).
//! Run as root (the unprivileged caller is `nobody`) and with CI=1, so that a missing
//! docker-registry fails the tests instead of skipping them.

#![allow(clippy::unwrap_used)]

mod registry;
mod support;

use std::collections::HashMap;

use aicontainers_agent::names::{BUS_NAME, JOB_INTERFACE, JOB_PATH_PREFIX, MODELS_INTERFACE, MODELS_PATH};
use futures_util::StreamExt;
use registry::Registry;
use support::*;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

type Row = (String, String, String, u64, u32, u64, bool);
type Detail = (String, String, String, String, String, u64, bool, Vec<(String, String, u64)>);

macro_rules! need_root {
    () => {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests must run as root: they run clients as nobody and own names on a private bus"
        );
    };
}

/// What a client following a job saw: every BytesDone and State in PropertiesChanged, the
/// last BytesTotal, and Finished's arguments.
#[derive(Debug, Default)]
struct Seen {
    done: Vec<u64>,
    total: u64,
    states: Vec<String>,
    finished: (String, String),
}

/// Every signal of every job, subscribed before the job exists.
async fn job_signals(rig: &Rig) -> zbus::MessageStream {
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .path_namespace(JOB_PATH_PREFIX)
        .unwrap()
        .build();
    zbus::MessageStream::for_match_rule(rule, &rig.client, Some(1024)).await.unwrap()
}

/// Follows `job`'s signals until `Finished`.
async fn follow(stream: &mut zbus::MessageStream, job: &str) -> Seen {
    let mut seen = Seen::default();
    tokio::time::timeout(GUARD, async {
        while let Some(msg) = stream.next().await {
            let msg = msg.unwrap();
            let header = msg.header();
            if header.path().map(|p| p.as_str()) != Some(job) {
                continue;
            }
            match header.member().map(|m| m.as_str()) {
                Some("PropertiesChanged") => {
                    let (iface, changed, _): (String, HashMap<String, OwnedValue>, Vec<String>) =
                        msg.body().deserialize().unwrap();
                    assert_eq!(iface, JOB_INTERFACE);
                    if let Some(v) = changed.get("BytesDone") {
                        seen.done.push(u64::try_from(v).unwrap());
                    }
                    if let Some(v) = changed.get("BytesTotal") {
                        seen.total = u64::try_from(v).unwrap();
                    }
                    if let Some(v) = changed.get("State") {
                        seen.states.push(String::try_from(v.try_clone().unwrap()).unwrap());
                    }
                }
                Some("Finished") => {
                    seen.finished = msg.body().deserialize().unwrap();
                    return;
                }
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{job} did not finish"));
    seen
}

async fn models(rig: &Rig) -> zbus::Proxy<'_> {
    zbus::Proxy::new(&rig.client, BUS_NAME, MODELS_PATH, MODELS_INTERFACE).await.unwrap()
}

async fn job_props(rig: &Rig, job: &str) -> HashMap<String, OwnedValue> {
    let p = zbus::fdo::PropertiesProxy::builder(&rig.client)
        .destination(BUS_NAME)
        .unwrap()
        .path(job)
        .unwrap()
        .build()
        .await
        .unwrap();
    p.get_all(zbus::names::InterfaceName::try_from(JOB_INTERFACE).unwrap()).await.unwrap()
}

fn text(props: &HashMap<String, OwnedValue>, key: &str) -> String {
    String::try_from(props[key].try_clone().unwrap()).unwrap()
}

fn number(props: &HashMap<String, OwnedValue>, key: &str) -> u64 {
    u64::try_from(&props[key]).unwrap()
}

fn error_name(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        other => panic!("not a D-Bus error reply: {other:?}"),
    }
}

/// Random-looking bytes (so that nothing compresses or deduplicates them).
fn weights(len: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9e37_79b9_u32 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(have_registry),
    ignore = "needs Debian's docker-registry (/usr/bin/docker-registry; tests/vm/vm deps installs it)"
)]
async fn a_pull_is_a_job_whose_progress_reaches_the_total_and_the_model_is_listed() {
    need_root!();
    let Some(reg) = Registry::start() else { return };
    let data = weights(4 << 20, 1);
    let manifest = reg.push_modelpack("models/small", "v1", &[("model.gguf", &data), ("config.json", b"{}")]);
    let source = format!("oci://{}/models/small:v1", reg.addr);
    let rig = Rig::start(Polkit::Absent).await;
    let mut signals = job_signals(&rig).await;
    let models = models(&rig).await;

    let job: OwnedObjectPath = models.call("Pull", &(source.as_str(),)).await.unwrap();
    assert!(job.as_str().starts_with("/org/aicontainers/Agent1/job/"), "{job}");
    let seen = follow(&mut signals, job.as_str()).await;
    assert_eq!(seen.finished, ("done".to_owned(), String::new()), "{seen:?}\n{}", rig.log());
    assert_eq!(seen.states.last().map(String::as_str), Some("done"), "{seen:?}");
    assert!(seen.total >= data.len() as u64, "{seen:?}");
    assert_eq!(seen.done.last().copied(), Some(seen.total), "{seen:?}");
    assert!(seen.done.windows(2).all(|w| w[0] <= w[1]), "BytesDone only grows: {seen:?}");

    // The job stays readable after it finished, by anyone.
    let props = job_props(&rig, job.as_str()).await;
    assert_eq!(text(&props, "Kind"), "model-pull");
    assert_eq!(text(&props, "Target"), source);
    assert_eq!(text(&props, "State"), "done");
    assert_eq!(text(&props, "Resolved"), manifest);
    assert_eq!(text(&props, "Error"), "");
    assert_eq!(number(&props, "BytesDone"), number(&props, "BytesTotal"));
    let got = rig
        .dbus_send(
            true,
            job.as_str(),
            "org.freedesktop.DBus.Properties.Get",
            &["string:org.aicontainers.Job1", "string:State"],
        )
        .await;
    assert!(got.status.success() && said(&got).contains("done"), "{}", said(&got));

    // Listed, with its files in the agent's store (below --root), by anyone.
    let listed: Vec<Row> = models.call("List", &()).await.unwrap();
    let row = listed.iter().find(|r| r.0 == source).unwrap_or_else(|| panic!("{source} not in {listed:?}"));
    assert!(row.3 >= data.len() as u64 && row.4 == 2 && row.6, "size, files, pinned: {row:?}");
    assert_eq!(row.2, manifest);
    let got = rig.dbus_send(true, MODELS_PATH, "org.aicontainers.Models1.List", &[]).await;
    assert!(got.status.success() && said(&got).contains(&source), "{}", said(&got));
    let detail: Detail = models.call("Inspect", &(source.as_str(),)).await.unwrap();
    let path = std::path::PathBuf::from(&detail.3);
    assert!(path.starts_with(rig.root.join("var/lib/aicontainers/models")), "{}", path.display());
    assert_eq!(std::fs::read(path.join("model.gguf")).unwrap(), data);
    assert_eq!(detail.7.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), vec!["config.json", "model.gguf"]);

    // A pull that cannot succeed: State failed, Error and Finished say why.
    let missing = format!("oci://{}/models/small:nope", reg.addr);
    let job: OwnedObjectPath = models.call("Pull", &(missing.as_str(),)).await.unwrap();
    let seen = follow(&mut signals, job.as_str()).await;
    assert_eq!(seen.finished.0, "failed", "{seen:?}");
    assert!(seen.finished.1.contains("pulling") && seen.finished.1.contains("models/small:nope"), "{seen:?}");
    let props = job_props(&rig, job.as_str()).await;
    assert_eq!(text(&props, "State"), "failed");
    assert_eq!(text(&props, "Error"), seen.finished.1);

    // Removed, then gone from the list; removing it again is NotFound.
    models.call::<_, _, ()>("Remove", &(source.as_str(),)).await.unwrap();
    let listed: Vec<Row> = models.call("List", &()).await.unwrap();
    assert!(listed.iter().all(|r| r.0 != source), "{listed:?}");
    let err = models.call::<_, _, ()>("Remove", &(source.as_str(),)).await.unwrap_err();
    assert_eq!(error_name(&err), "org.aicontainers.Error.NotFound");
    let err = models.call::<_, _, Detail>("Inspect", &(source.as_str(),)).await.unwrap_err();
    assert_eq!(error_name(&err), "org.aicontainers.Error.NotFound");
    // Its blobs go at the next Gc.
    let (gone, _trees, blobs, bytes): (Vec<String>, u32, u32, u64) = models.call("Gc", &()).await.unwrap();
    assert!(gone.is_empty(), "{gone:?}");
    assert!(blobs >= 2 && bytes >= data.len() as u64, "{blobs} blobs, {bytes} bytes");
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(have_registry),
    ignore = "needs Debian's docker-registry (/usr/bin/docker-registry; tests/vm/vm deps installs it)"
)]
async fn two_pulls_of_one_source_share_one_job() {
    need_root!();
    let Some(reg) = Registry::start() else { return };
    let data = weights(12 << 20, 2);
    reg.push_modelpack("models/big", "v1", &[("model.gguf", &data)]);
    let source = format!("oci://{}/models/big:v1", reg.addr);
    // About two seconds per pull, as a large model over a slow link.
    let mut rig = Rig::without_agent(Polkit::Absent).await;
    rig.agent_args = vec!["--models-limit-rate".into(), (6u64 << 20).to_string()];
    rig.start_agent().await;
    let mut signals = job_signals(&rig).await;
    let models = models(&rig).await;
    let mut new_jobs = models.receive_signal("JobNew").await.unwrap();

    let arg = (source.as_str(),);
    let (a, b) = tokio::join!(
        models.call::<_, _, OwnedObjectPath>("Pull", &arg),
        models.call::<_, _, OwnedObjectPath>("Pull", &arg)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let c: OwnedObjectPath = models.call("Pull", &(source.as_str(),)).await.unwrap();
    assert_eq!(a, b, "two Pulls of {source} while it runs: one job");
    assert_eq!(a, c);
    let first = tokio::time::timeout(GUARD, new_jobs.next()).await.unwrap().unwrap();
    let (path, kind, target): (OwnedObjectPath, String, String) = first.body().deserialize().unwrap();
    assert_eq!((path.as_str(), kind.as_str(), target.as_str()), (a.as_str(), "model-pull", source.as_str()));

    let seen = follow(&mut signals, a.as_str()).await;
    assert_eq!(seen.finished.0, "done", "{seen:?}\n{}", rig.log());
    assert!(seen.done.len() >= 3, "progress is signalled while it runs: {seen:?}");
    assert!(seen.done.len() <= 12, "at most every 250 ms: {seen:?}");
    assert_eq!(seen.done.last().copied(), Some(seen.total));
    // One pull: the registry served the blob once (the agent's log has one job for it).
    assert_eq!(rig.log().matches(&format!("pull {source} (asked by UID 0)")).count(), 1, "{}", rig.log());

    // Once it is done, a Pull is a new job (it asks the registry again, and transfers nothing).
    let d: OwnedObjectPath = models.call("Pull", &(source.as_str(),)).await.unwrap();
    assert_ne!(d, a);
    let seen = follow(&mut signals, d.as_str()).await;
    assert_eq!(seen.finished.0, "done", "{seen:?}");
    // No other JobNew came for the shared job.
    let second = tokio::time::timeout(GUARD, new_jobs.next()).await.unwrap().unwrap();
    let (path, _, _): (OwnedObjectPath, String, String) = second.body().deserialize().unwrap();
    assert_eq!(path, d);
}

/// Pull, Remove and Gc as (method, argument).
fn mutating(source: &str) -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("org.aicontainers.Models1.Pull", vec![format!("string:{source}")]),
        ("org.aicontainers.Models1.Remove", vec![format!("string:{source}")]),
        ("org.aicontainers.Models1.Gc", vec![]),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_may_list_but_not_pull_remove_or_collect() {
    need_root!();
    let source = "oci://127.0.0.1:9/models/x:v1";
    for polkit in [Polkit::Absent, Polkit::Answers(false)] {
        let rig = Rig::start(polkit).await;
        for (method, args) in mutating(source) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let got = rig.dbus_send(true, MODELS_PATH, method, &args).await;
            let text = said(&got);
            assert!(
                !got.status.success() && text.contains("org.aicontainers.Error.AccessDenied"),
                "{polkit:?} {method}: {text}"
            );
            if polkit == Polkit::Absent {
                assert!(text.contains("polkit is not running"), "{method}: {text}");
            } else {
                assert!(text.contains("org.aicontainers.manage-models"), "{method}: {text}");
            }
        }
        if polkit == Polkit::Answers(false) {
            let checks = rig.checks.lock().unwrap().clone();
            assert_eq!(checks.len(), 3, "{checks:?}");
            assert!(
                checks
                    .iter()
                    .all(|(kind, action, _)| kind == "system-bus-name" && action == "org.aicontainers.manage-models"),
                "{checks:?}"
            );
        }
        let got = rig.dbus_send(true, MODELS_PATH, "org.aicontainers.Models1.List", &[]).await;
        assert!(got.status.success(), "{}", said(&got));
        let got =
            rig.dbus_send(true, MODELS_PATH, "org.aicontainers.Models1.Inspect", &[&format!("string:{source}")]).await;
        assert!(said(&got).contains("org.aicontainers.Error.NotFound"), "{}", said(&got));
        assert!(!rig.log().contains("pull oci://"), "nothing was pulled for nobody: {}", rig.log());
    }

    // When polkit says yes, nobody may pull, but not a file of this host.
    let rig = Rig::start(Polkit::Answers(true)).await;
    let got = rig.dbus_send(true, MODELS_PATH, "org.aicontainers.Models1.Pull", &[&format!("string:{source}")]).await;
    assert!(got.status.success() && said(&got).contains("/org/aicontainers/Agent1/job/1"), "{}", said(&got));
    let got = rig.dbus_send(true, MODELS_PATH, "org.aicontainers.Models1.Pull", &["string:file:///etc/shadow"]).await;
    let text = said(&got);
    assert!(
        text.contains("org.aicontainers.Error.AccessDenied")
            && text.contains("file:// sources are pulled by root only"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_source_is_invalid_args() {
    need_root!();
    let rig = Rig::start(Polkit::Absent).await;
    let models = models(&rig).await;
    for bad in ["nope://x", "oci://", "oci://r:5000/UPPER:v1", ""] {
        let err = models.call::<_, _, OwnedObjectPath>("Pull", &(bad,)).await.unwrap_err();
        assert_eq!(error_name(&err), "org.aicontainers.Error.InvalidArgs", "{bad}: {err:?}");
        let zbus::Error::MethodError(_, Some(message), _) = &err else { panic!("{err:?}") };
        assert!(message.starts_with("not a model source: "), "{message}");
        let err = models.call::<_, _, Detail>("Inspect", &(bad,)).await.unwrap_err();
        assert_eq!(error_name(&err), "org.aicontainers.Error.InvalidArgs", "{bad}");
    }
    // The bad source is refused before anyone is asked, for nobody too.
    let got = rig.dbus_send(true, MODELS_PATH, "org.aicontainers.Models1.Pull", &["string:nope://x"]).await;
    assert!(said(&got).contains("org.aicontainers.Error.InvalidArgs"), "{}", said(&got));
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(have_registry),
    ignore = "needs Debian's docker-registry (/usr/bin/docker-registry; tests/vm/vm deps installs it)"
)]
async fn aictl_model_pull_goes_through_the_agent() {
    need_root!();
    let Some(reg) = Registry::start() else { return };
    let data = weights(1 << 20, 3);
    reg.push_modelpack("models/cli", "v1", &[("model.gguf", &data)]);
    let source = format!("oci://{}/models/cli:v1", reg.addr);
    let rig = Rig::start(Polkit::Absent).await;
    let aictl = aictl().display().to_string();

    let got = rig.as_root(&aictl, &["model", "pull", &source]).await;
    let text = said(&got);
    assert!(got.status.success(), "{text}\n{}", rig.log());
    let store = rig.root.join("var/lib/aicontainers/models");
    assert!(text.contains(&format!("{source}: ready at {}", store.display())), "{text}");
    assert!(text.contains("(aicontainersd job /org/aicontainers/Agent1/job/1)"), "{text}");
    assert!(rig.log().contains(&format!("pull {source} (asked by UID 0)")), "{}", rig.log());

    // --json: progress events, then the result.
    let got = rig.as_root(&aictl, &["model", "pull", "--json", &source]).await;
    assert!(got.status.success(), "{}", said(&got));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&got.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "done", "{lines:?}");
    assert_eq!(last["job"], "/org/aicontainers/Agent1/job/2");
    assert_eq!(last["state"], "done");
    assert_eq!(last["bytes_done"], last["bytes_total"]);
    assert!(last["path"].as_str().unwrap().starts_with(&store.display().to_string()), "{last}");

    // The job's error, and a failure exit.
    let missing = format!("oci://{}/models/cli:nope", reg.addr);
    let got = rig.as_root(&aictl, &["model", "pull", &missing]).await;
    let text = said(&got);
    assert_eq!(got.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("aictl: pulling {missing}")), "{text}");

    // nobody is refused by the agent, with its reason.
    let got = rig.as_nobody(&aictl, &["model", "pull", &source]).await;
    let text = said(&got);
    assert_eq!(got.status.code(), Some(1), "{text}");
    assert!(text.contains("permission denied") && text.contains("polkit is not running"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(have_registry),
    ignore = "needs Debian's docker-registry (/usr/bin/docker-registry; tests/vm/vm deps installs it)"
)]
async fn aictl_model_pull_direct_does_not_use_the_agent() {
    need_root!();
    let Some(reg) = Registry::start() else { return };
    let data = weights(64 << 10, 4);
    reg.push_modelpack("models/direct", "v1", &[("model.gguf", &data)]);
    let source = format!("oci://{}/models/direct:v1", reg.addr);
    let rig = Rig::start(Polkit::Absent).await;
    let aictl = aictl().display().to_string();
    let store = rig.dir.path().join("own-store");
    let env_store = format!("AICONTAINERS_MODELS_DIR={}", store.display());
    // With the agent on the bus: --direct (and a store of one's own) pulls in aictl itself.
    let got = rig.as_root("env", &[&env_store, &aictl, "model", "pull", "--direct", &source]).await;
    let text = said(&got);
    assert!(got.status.success(), "{text}");
    assert!(
        text.contains(&format!("{source}: ready at {}", store.display())) && !text.contains("aicontainersd job"),
        "{text}"
    );
    assert!(!rig.log().contains("pull oci://"), "the agent pulled: {}", rig.log());
    let models = models(&rig).await;
    let listed: Vec<Row> = models.call("List", &()).await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    // The model unit pulls directly too, so that models work without the agent.
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../units/aicontainers-model@.service"),
    )
    .unwrap();
    assert!(unit.lines().any(|l| l == "ExecStart=@AICTL@ model pull --unit --direct %I"), "{unit}");
}
