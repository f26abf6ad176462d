//! `org.aicontainers.Image1`: one object per scanned image, at [`image_path`], made from the
//! scan verdicts root's `aictl scan` records (docs/scan.md, "On the bus").
//!
//! The agent cannot read images (they are in each account's storage): it reads the verdicts,
//! one per service (`/var/lib/aicontainers/scan/verdict/NAME.json`, root's, `0644`), groups
//! them by image ID and judges each with the scan policy of the moment. It watches the verdict
//! directory and the policy's with inotify ([`crate::preflight::watch`]), and after each burst
//! of changes reads every verdict again: objects appear and disappear with the verdicts, their
//! properties change with a `PropertiesChanged` signal, and the findings a scan added (against
//! the same service's previous verdict) go out as `NewFindings`. The verdicts the agent finds
//! when it starts are its baseline: they send no `NewFindings`.
//!
//! A verdict is read only as a regular file of at most 32 MiB naming its own service
//! ([`aicontainers::scan::record::Store::read_verdicts`]): a FIFO, a device, a link, garbage or
//! an oversized file in its place is logged and skipped, never waited on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aicontainers::scan::policy::{Action, Policy, POLICY_PATH};
use aicontainers::scan::record::{self, Store, Verdict, SCAN_DIR};
use aicontainers::scan::Severity;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::OwnedObjectPath;
use zbus::{interface, Connection};

use crate::preflight::{self, Event};

/// Image objects live below this path, one per image ID: `.../image/sha256_HEX`.
pub const IMAGE_PATH_PREFIX: &str = "/org/aicontainers/Agent1/image";
/// The interface of each image object.
pub const IMAGE_INTERFACE: &str = "org.aicontainers.Image1";
/// The most advisory ids one `NewFindings` signal names (the count says how many there were).
pub const SIGNALLED_MAX: usize = 1000;

/// The object path of image `id` (`sha256:HEX`); `None` when it is not an image ID.
pub fn image_path(id: &str) -> Option<String> {
    record::digest_hex(id).map(|hex| format!("{IMAGE_PATH_PREFIX}/sha256_{hex}"))
}

/// What the bus shows of one image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageInfo {
    /// `sha256:HEX`.
    pub id: String,
    /// The image as the service files name it (one or more names for the same ID).
    pub references: Vec<String>,
    /// The services whose last verdict is of this image.
    pub services: Vec<String>,
    /// Findings by severity (every severity, 0 when none), counted once per advisory, package
    /// and installed version across the services.
    pub findings: BTreeMap<String, u64>,
    /// The latest of the services' scans, in microseconds since the epoch.
    pub last_scan: u64,
    /// `pass`, or the strictest action of a service whose policy the findings fail (`warn`,
    /// `block`, `stop`); `unknown` while the policy cannot be read.
    pub verdict: String,
}

/// The images of `verdicts`, by image ID, judged by `policy` on `today` (`None`: the policy
/// cannot be read).
pub fn summarize(
    verdicts: &BTreeMap<String, Verdict>,
    policy: Option<&Policy>,
    today: i64,
) -> BTreeMap<String, ImageInfo> {
    // Each image: what is shown, its distinct findings, and the strictest failing action.
    type Seen = BTreeSet<(String, String, String, Severity)>;
    let mut images: BTreeMap<String, (ImageInfo, Seen, Option<Action>)> = BTreeMap::new();
    for (service, v) in verdicts {
        let (info, seen, worst) = images.entry(v.digest.clone()).or_default();
        info.id.clone_from(&v.digest);
        if !info.references.contains(&v.image) {
            info.references.push(v.image.clone());
        }
        info.services.push(service.clone());
        info.last_scan = info.last_scan.max(v.scanned_at.saturating_mul(1_000_000));
        for f in &v.findings {
            seen.insert((f.id.clone(), f.package.clone(), f.installed.clone(), f.severity));
        }
        if let Some(policy) = policy {
            let decision = policy.decide(service, &v.findings, today);
            if decision.fails() {
                let action = decision.rules.action;
                *worst = Some(worst.map_or(action, |w| if rank(action) > rank(w) { action } else { w }));
            }
        }
    }
    images
        .into_iter()
        .map(|(id, (mut info, seen, worst))| {
            info.references.sort();
            info.findings = SEVERITIES.iter().map(|s| (s.as_str().to_owned(), 0)).collect();
            for (_, _, _, severity) in &seen {
                *info.findings.entry(severity.as_str().to_owned()).or_default() += 1;
            }
            info.verdict = match (policy, worst) {
                (None, _) => "unknown".into(),
                (Some(_), None) => "pass".into(),
                (Some(_), Some(action)) => action.as_str().into(),
            };
            (id, info)
        })
        .collect()
}

/// Every severity, each a key of `Findings`.
const SEVERITIES: [Severity; 6] =
    [Severity::Unknown, Severity::Negligible, Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

fn rank(action: Action) -> u8 {
    match action {
        Action::Warn => 1,
        Action::Block => 2,
        Action::Stop => 3,
    }
}

/// The advisory ids each image gained, by image ID: for every service whose verdict changed,
/// the findings its previous verdict did not have (all of them for a service first scanned),
/// on the image of its new verdict. Nothing when there is no baseline (`before` is `None`).
pub fn new_advisories(
    before: Option<&BTreeMap<String, Verdict>>,
    after: &BTreeMap<String, Verdict>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let Some(before) = before else { return out };
    for (service, v) in after {
        let previous = before.get(service);
        if previous == Some(v) {
            continue;
        }
        let new = record::new_findings(previous, v);
        if !new.is_empty() {
            out.entry(v.digest.clone()).or_default().extend(new.into_iter().map(|f| f.id.clone()));
        }
    }
    out
}

/// One scanned image on the bus.
#[derive(Debug)]
pub struct ImageObject {
    info: ImageInfo,
}

/// An image a service's last scan inventoried (docs/scan.md): its findings by severity and the
/// scan policy's verdict, kept current as scans record new verdicts.
#[interface(name = "org.aicontainers.Image1")]
impl ImageObject {
    /// The image ID, sha256:HEX.
    #[zbus(property(emits_changed_signal = "const"))]
    fn id(&self) -> String {
        self.info.id.clone()
    }

    /// The image as the service files name it (several names may share one ID).
    #[zbus(property)]
    fn references(&self) -> Vec<String> {
        self.info.references.clone()
    }

    /// The services whose last scan was of this image.
    #[zbus(property)]
    fn services(&self) -> Vec<String> {
        self.info.services.clone()
    }

    /// Findings by severity: unknown, negligible, low, medium, high, critical (each present, 0
    /// when none), before the policy.
    #[zbus(property)]
    fn findings(&self) -> HashMap<String, u64> {
        self.info.findings.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// When the image was last matched against the advisories, in microseconds since the epoch.
    #[zbus(property)]
    fn last_scan(&self) -> u64 {
        self.info.last_scan
    }

    /// pass, or the strictest action (warn, block, stop) of a service whose scan policy the
    /// findings fail; unknown while the policy cannot be read.
    #[zbus(property)]
    fn verdict(&self) -> String {
        self.info.verdict.clone()
    }

    /// A scan found advisories that the previous scan of the same service did not have: how
    /// many, and their ids (the first 1000, sorted).
    #[zbus(signal)]
    pub async fn new_findings(emitter: &SignalEmitter<'_>, count: u32, advisories: Vec<String>) -> zbus::Result<()>;
}

/// What the agent last read, and shows.
#[derive(Debug, Default)]
struct State {
    /// The verdicts of the last read; `None` before the first (the baseline).
    verdicts: Option<BTreeMap<String, Verdict>>,
    shown: BTreeMap<String, ImageInfo>,
    problems: Vec<String>,
}

/// The image objects.
#[derive(Debug)]
pub struct Images {
    conn: Connection,
    store: Store,
    policy: PathBuf,
    state: tokio::sync::Mutex<State>,
}

impl Images {
    pub fn new(conn: Connection, root: &Path) -> Images {
        let host = aicontainers::preflight::Host::new(root);
        Images {
            conn,
            store: Store { dir: host.path(SCAN_DIR) },
            policy: host.path(POLICY_PATH),
            state: tokio::sync::Mutex::default(),
        }
    }

    /// Every image on the bus: its ID and object path.
    pub async fn list(&self) -> Vec<(String, OwnedObjectPath)> {
        let state = self.state.lock().await;
        state
            .shown
            .keys()
            .filter_map(|id| Some((id.clone(), OwnedObjectPath::try_from(image_path(id)?).ok()?)))
            .collect()
    }

    /// Reads the verdicts and the policy again and brings the objects in line: new images get an
    /// object, gone ones lose it, changed ones signal what changed, and images with new findings
    /// send `NewFindings`. Unreadable files are logged (once while they stay so) and skipped.
    pub async fn refresh(&self) {
        let (store, policy_path) = (self.store.clone(), self.policy.clone());
        let read = tokio::task::spawn_blocking(move || {
            let (verdicts, mut problems) = store.read_verdicts();
            let policy = Policy::load(&policy_path)
                .map_err(|diags| problems.extend(diags.iter().map(|d| format!("the scan policy: {d}"))))
                .ok();
            let images = summarize(&verdicts, policy.as_ref(), aicontainers::scan::policy::today());
            (verdicts, images, problems)
        })
        .await;
        let (verdicts, images, problems) = match read {
            Ok(read) => read,
            Err(e) => {
                log::warn!("cannot read the scan verdicts: {e}");
                return;
            }
        };
        let mut state = self.state.lock().await;
        for p in problems.iter().filter(|p| !state.problems.contains(p)) {
            log::warn!("scan verdicts: skipped: {p}");
        }
        state.problems = problems;
        let new = new_advisories(state.verdicts.as_ref(), &verdicts);
        let server = self.conn.object_server();
        let gone: Vec<String> = state.shown.keys().filter(|id| !images.contains_key(*id)).cloned().collect();
        for id in gone {
            let Some(path) = image_path(&id) else { continue };
            if let Err(e) = server.remove::<ImageObject, _>(path.as_str()).await {
                log::warn!("cannot take image {id} off the bus: {e}");
            }
            log::info!(image_id = id.as_str(); "image {id} off the bus: no verdict names it any more");
        }
        for (id, info) in &images {
            let Some(path) = image_path(id) else { continue };
            let shown = match state.shown.get(id) {
                None => server.at(path.as_str(), ImageObject { info: info.clone() }).await.map(|_| ()),
                Some(old) if old != info => update(server, &path, old, info.clone()).await,
                Some(_) => Ok(()),
            };
            if let Err(e) = shown {
                log::warn!(image_id = id.as_str(); "cannot show image {id} on the bus: {e}");
            }
        }
        for (id, advisories) in &new {
            let Some(path) = image_path(id) else { continue };
            let ids: Vec<String> = advisories.iter().take(SIGNALLED_MAX).cloned().collect();
            let count = u32::try_from(advisories.len()).unwrap_or(u32::MAX);
            log::info!(image_id = id.as_str(); "image {id}: {count} new advisories: {}", ids.join(" "));
            let sent = match SignalEmitter::new(&self.conn, path.as_str()) {
                Ok(emitter) => ImageObject::new_findings(&emitter, count, ids).await,
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                log::warn!(image_id = id.as_str(); "cannot signal the new findings of image {id}: {e}");
            }
        }
        state.shown = images;
        state.verdicts = Some(verdicts);
    }

    /// Reads the verdicts now, then again after each burst of changes to them or to the policy.
    pub async fn follow(self: Arc<Self>) -> Result<tokio::task::JoinHandle<()>, String> {
        let dirs = vec![
            (self.store.dir.join("verdict"), Event::Records),
            (self.policy.parent().map(Path::to_owned).unwrap_or_default(), Event::Records),
        ];
        let watched = preflight::watch(dirs).map_err(|e| format!("cannot watch the scan verdicts: {e}"));
        self.refresh().await;
        let mut events = watched?;
        Ok(tokio::spawn(async move {
            while preflight::next_burst(&mut events).await.is_some() {
                self.refresh().await;
            }
        }))
    }
}

/// Replaces the shown `old` with `new` on the object at `path`, signalling what changed.
async fn update(server: &zbus::ObjectServer, path: &str, old: &ImageInfo, new: ImageInfo) -> zbus::Result<()> {
    let iface = server.interface::<_, ImageObject>(path).await?;
    let mut object = iface.get_mut().await;
    object.info = new;
    let emitter = iface.signal_emitter();
    let info = &object.info;
    if old.references != info.references {
        object.references_changed(emitter).await?;
    }
    if old.services != info.services {
        object.services_changed(emitter).await?;
    }
    if old.findings != info.findings {
        object.findings_changed(emitter).await?;
    }
    if old.last_scan != info.last_scan {
        object.last_scan_changed(emitter).await?;
    }
    if old.verdict != info.verdict {
        object.verdict_changed(emitter).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aicontainers::scan::Finding;

    fn finding(id: &str, severity: Severity) -> Finding {
        Finding {
            id: id.into(),
            aliases: Vec::new(),
            package: "zlib1g".into(),
            ecosystem: "Debian:13".into(),
            installed: "1".into(),
            fixed: Some("2".into()),
            severity,
        }
    }

    fn verdict(service: &str, image: &str, hex: char, findings: Vec<Finding>) -> Verdict {
        Verdict {
            service: service.into(),
            image: image.into(),
            digest: format!("sha256:{}", hex.to_string().repeat(64)),
            scanned_at: 7,
            findings,
        }
    }

    fn policy(text: &str) -> Policy {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("policy.toml");
        std::fs::write(&path, text).unwrap();
        Policy::load(&path).unwrap()
    }

    #[test]
    fn services_of_one_image_make_one_object_with_the_strictest_verdict() {
        let high = finding("A", Severity::High);
        let all = BTreeMap::from([
            ("chat".to_owned(), verdict("chat", "localhost/m:1", 'a', vec![high.clone(), finding("B", Severity::Low)])),
            ("chat2".to_owned(), verdict("chat2", "localhost/m:latest", 'a', vec![high])),
            ("web".to_owned(), verdict("web", "localhost/w:1", 'b', vec![])),
        ]);
        let p = policy("[policy]\naction = \"block\"\n[service.chat2]\naction = \"stop\"\n");
        let images = summarize(&all, Some(&p), 0);
        assert_eq!(images.len(), 2);
        let a = &images[&format!("sha256:{}", "a".repeat(64))];
        assert_eq!(a.services, ["chat", "chat2"]);
        assert_eq!(a.references, ["localhost/m:1", "localhost/m:latest"]);
        assert_eq!(a.findings["high"], 1, "the same finding in two services counts once");
        assert_eq!(a.findings["low"], 1);
        assert_eq!(a.findings["critical"], 0);
        assert_eq!(a.findings.len(), 6, "every severity is there");
        assert_eq!(a.last_scan, 7_000_000);
        assert_eq!(a.verdict, "stop");
        assert_eq!(images[&format!("sha256:{}", "b".repeat(64))].verdict, "pass");
        assert_eq!(summarize(&all, None, 0)[&a.id].verdict, "unknown");
        assert_eq!(image_path(&a.id).unwrap(), format!("/org/aicontainers/Agent1/image/sha256_{}", "a".repeat(64)));
        assert!(zbus::zvariant::ObjectPath::try_from(image_path(&a.id).unwrap()).is_ok());
        assert_eq!(image_path("sha256:../x"), None);
    }

    #[test]
    fn only_what_a_scan_added_is_new_and_the_first_read_is_the_baseline() {
        let first =
            BTreeMap::from([("chat".to_owned(), verdict("chat", "i", 'a', vec![finding("A", Severity::High)]))]);
        assert!(new_advisories(None, &first).is_empty(), "the verdicts found at start are the baseline");
        assert!(new_advisories(Some(&first), &first).is_empty());
        let mut second = first.clone();
        second.get_mut("chat").unwrap().findings.push(finding("B", Severity::Low));
        second.insert("web".into(), verdict("web", "w", 'b', vec![finding("C", Severity::Medium)]));
        let new = new_advisories(Some(&first), &second);
        assert_eq!(new[&format!("sha256:{}", "a".repeat(64))], BTreeSet::from(["B".to_owned()]));
        assert_eq!(new[&format!("sha256:{}", "b".repeat(64))], BTreeSet::from(["C".to_owned()]), "a first scan");
        // A finding that went away is no new finding.
        assert!(new_advisories(Some(&second), &first).is_empty());
    }

    #[test]
    fn hostile_verdict_files_are_skipped_and_never_block() {
        let t = tempfile::tempdir().unwrap();
        let store = Store { dir: t.path().to_owned() };
        store.write_verdict(&verdict("chat", "i", 'a', vec![finding("A", Severity::High)])).unwrap();
        let dir = t.path().join("verdict");
        nix::unistd::mkfifo(&dir.join("fifo.json"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero.json")).unwrap();
        std::fs::write(dir.join("junk.json"), b"\xff\x00{").unwrap();
        std::fs::write(dir.join("other.json"), std::fs::read(dir.join("chat.json")).unwrap()).unwrap();
        let mut bad_digest = verdict("bad", "i", 'a', vec![]);
        bad_digest.digest = "sha256:../../etc".into();
        std::fs::write(dir.join("bad.json"), serde_json::to_vec(&bad_digest).unwrap()).unwrap();
        // Over the cap: sparse, so the test writes nothing.
        let big = std::fs::File::create(dir.join("big.json")).unwrap();
        big.set_len(record::VERDICT_MAX + 1).unwrap();
        std::fs::write(dir.join(".chat.json.1.tmp"), b"half").unwrap();
        std::fs::write(dir.join("-x.json"), b"{}").unwrap();
        let (verdicts, problems) = store.read_verdicts();
        assert_eq!(verdicts.keys().collect::<Vec<_>>(), ["chat"]);
        assert_eq!(problems.len(), 6, "{problems:#?}");
        for (name, why) in [
            ("fifo.json", "not a regular file"),
            ("zero.json", "cannot read"),
            ("junk.json", "not a scan verdict"),
            ("other.json", "not of \"other\""),
            ("bad.json", "is not sha256:HEX"),
            ("big.json", "larger than"),
        ] {
            assert!(problems.iter().any(|p| p.contains(name) && p.contains(why)), "{name}: {problems:#?}");
        }
    }
}
