//! The model cache on the bus: `org.aicontainers.Models1` at [`MODELS_PATH`], and one
//! `org.aicontainers.Job1` object per pull at [`job_path`] (docs/models.md, docs/agent.md).
//!
//! `Pull` returns at once with a job's path; the pull runs on a blocking thread
//! (`spawn_blocking`: the library is synchronous), sends its [`Event`]s over a channel, and the
//! job object turns them into properties with `PropertiesChanged` at most every
//! [`THROTTLE`], then `Finished`. Two pulls of one source share one job. Finished jobs stay on
//! the bus for [`LINGER`] so that a client that looks late still sees the outcome.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aicontainers::models::{self, Event, PullOptions, Source, Store};
use zbus::message::Header;
use zbus::object_server::{InterfaceRef, SignalEmitter};
use zbus::zvariant::{ObjectPath, OwnedObjectPath};
use zbus::{interface, Connection};

use crate::auth;
use crate::errors::Error;
use crate::manager::Host;
use crate::names::{job_path, ACTION_MANAGE_MODELS, MODELS_PATH};

/// The most often a job emits `PropertiesChanged` for its progress.
pub const THROTTLE: Duration = Duration::from_millis(250);
/// How long a finished job stays on the bus.
pub const LINGER: Duration = Duration::from_secs(60);

/// A job's `Kind` for a model pull.
pub const KIND_MODEL_PULL: &str = "model-pull";

/// What a job shows, as its properties.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// `running`, `done` or `failed`.
    pub state: String,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub resolved: String,
    pub error: String,
}

/// One job on the bus.
#[derive(Debug)]
pub struct JobObject {
    kind: String,
    target: String,
    now: Mutex<Progress>,
}

impl JobObject {
    fn new(kind: &str, target: &str) -> JobObject {
        JobObject {
            kind: kind.into(),
            target: target.into(),
            now: Mutex::new(Progress { state: "running".into(), ..Progress::default() }),
        }
    }

    fn now(&self) -> Progress {
        self.now.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Takes `new` and emits `PropertiesChanged` for what differs from what was shown.
    async fn show(&self, new: Progress, emitter: &SignalEmitter<'_>) -> zbus::Result<()> {
        let old = std::mem::replace(&mut *self.now.lock().unwrap_or_else(PoisonError::into_inner), new.clone());
        if old.bytes_total != new.bytes_total {
            self.bytes_total_changed(emitter).await?;
        }
        if old.bytes_done != new.bytes_done {
            self.bytes_done_changed(emitter).await?;
        }
        if old.resolved != new.resolved {
            self.resolved_changed(emitter).await?;
        }
        if old.error != new.error {
            self.error_changed(emitter).await?;
        }
        if old.state != new.state {
            self.state_changed(emitter).await?;
        }
        Ok(())
    }
}

/// A long-running piece of work of the agent (for now: a model pull). It stays on the bus for a
/// minute after it finished.
#[interface(name = "org.aicontainers.Job1")]
impl JobObject {
    /// What the job does: model-pull.
    #[zbus(property(emits_changed_signal = "const"))]
    fn kind(&self) -> String {
        self.kind.clone()
    }

    /// What it works on: the canonical model source.
    #[zbus(property(emits_changed_signal = "const"))]
    fn target(&self) -> String {
        self.target.clone()
    }

    /// running, done or failed.
    #[zbus(property)]
    fn state(&self) -> String {
        self.now().state
    }

    /// Bytes of the model in the cache so far (those already there count from the start).
    #[zbus(property)]
    fn bytes_done(&self) -> u64 {
        self.now().bytes_done
    }

    /// Bytes of the whole model; 0 until the source is resolved.
    #[zbus(property)]
    fn bytes_total(&self) -> u64 {
        self.now().bytes_total
    }

    /// What the source resolved to (manifest digest, commit); empty until known.
    #[zbus(property)]
    fn resolved(&self) -> String {
        self.now().resolved
    }

    /// Why the job failed; empty unless State is failed.
    #[zbus(property)]
    fn error(&self) -> String {
        self.now().error
    }

    /// The job ended: RESULT is done or failed, ERROR says why it failed.
    #[zbus(signal)]
    async fn finished(emitter: &SignalEmitter<'_>, result: &str, error: &str) -> zbus::Result<()>;
}

/// Turns a pull's events into bytes done of bytes total.
#[derive(Debug, Default)]
struct Tally {
    total: u64,
    present: u64,
    finished: u64,
    size: Option<u64>,
    current: u64,
    model: Option<u64>,
    resolved: String,
}

impl Tally {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::Resolved { resolved, bytes, missing, .. } => {
                self.total = *bytes;
                self.present = bytes.saturating_sub(*missing);
                self.resolved = resolved.clone().unwrap_or_default();
            }
            Event::BlobStart { size, offset, .. } => {
                self.size = *size;
                self.current = *offset;
            }
            Event::Bytes { done, .. } => self.current = *done,
            Event::BlobDone { .. } => {
                self.finished += self.size.unwrap_or(self.current).max(self.current);
                self.current = 0;
                self.size = None;
            }
            Event::Extracting { .. } => {}
            // Blobs fetched in parallel: the whole model's count wins over the per-blob sums.
            Event::Model { done, .. } => self.model = Some(*done),
        }
    }

    fn progress(&self) -> Progress {
        let done = self.model.unwrap_or(self.present + self.finished + self.current).min(self.total);
        Progress {
            state: "running".into(),
            bytes_done: done,
            bytes_total: self.total,
            resolved: self.resolved.clone(),
            error: String::new(),
        }
    }
}

/// The model cache of this host, and the pulls that run.
#[derive(Debug)]
pub struct Models {
    conn: Connection,
    host: Host,
    /// At most this many bytes per second per download.
    limit_rate: Option<u64>,
    next: AtomicU64,
    /// Running pulls: canonical source -> job path.
    running: tokio::sync::Mutex<HashMap<String, OwnedObjectPath>>,
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::Failed(e.to_string())
}

fn parse(text: &str) -> Result<Source, Error> {
    Source::parse(text, None).map_err(|why| Error::InvalidArgs(format!("not a model source: {why}")))
}

fn path(text: &str) -> Result<OwnedObjectPath, Error> {
    OwnedObjectPath::try_from(text.to_owned()).map_err(|e| Error::ZBus(e.into()))
}

/// The sources the service files name. A file whose `[[model]]` cannot be read makes this
/// fail: what it names is unknown.
fn in_use(dirs: &[PathBuf]) -> Result<BTreeSet<String>, String> {
    let (keep, unreadable) = aicontainers::model_use::named_by_services(dirs);
    if unreadable.is_empty() {
        Ok(keep)
    } else {
        Err(format!(
            "these service files cannot be read, so the models they name are unknown (fix them, or run `aictl model gc --direct --force` as root):\n  {}",
            unreadable.join("\n  ")
        ))
    }
}

/// Runs `f` on the store, on a blocking thread.
async fn with_store<T: Send + 'static>(
    root: PathBuf,
    f: impl FnOnce(&Store) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(move || {
        let store = Store::open(&root).map_err(|e| failed(format!("model store {}: {e}", root.display())))?;
        f(&store)
    })
    .await
    .map_err(|e| failed(format!("the model cache task stopped: {e}")))?
}

impl Models {
    pub fn new(conn: Connection, host: Host, limit_rate: Option<u64>) -> Models {
        Models { conn, host, limit_rate, next: AtomicU64::new(1), running: tokio::sync::Mutex::new(HashMap::new()) }
    }

    /// Starts pulling `source` (pinned, as a pull by hand), or returns the job that already does.
    pub async fn pull(self: &Arc<Self>, source: Source, uid: u32) -> Result<OwnedObjectPath, Error> {
        let canonical = source.canonical();
        let mut running = self.running.lock().await;
        if let Some(job) = running.get(&canonical) {
            log::debug!(model = canonical.as_str(); "{canonical}: already pulled by {job}");
            return Ok(job.clone());
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let job = path(&job_path(n))?;
        let server = self.conn.object_server();
        server.at(job.as_str(), JobObject::new(KIND_MODEL_PULL, &canonical)).await?;
        let iface = server.interface::<_, JobObject>(job.as_str()).await?;
        running.insert(canonical.clone(), job.clone());
        drop(running);
        log::info!(model = canonical.as_str(), job = job.as_str(), caller_uid = uid; "pull {canonical} (asked by UID {uid}): {job}");
        let emitter = SignalEmitter::new(&self.conn, MODELS_PATH)?;
        ModelsObject::job_new(&emitter, job.as_ref(), KIND_MODEL_PULL, &canonical).await?;
        tokio::spawn(self.clone().run(source, job.clone(), iface));
        Ok(job)
    }

    async fn run(self: Arc<Self>, source: Source, job: OwnedObjectPath, iface: InterfaceRef<JobObject>) {
        let canonical = source.canonical();
        let root = self.host.models_root();
        let limit_rate = self.limit_rate;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // The fetcher is not Send: everything the pull needs is made on its thread.
        let task = tokio::task::spawn_blocking(move || {
            let store = Store::open(&root)?;
            let options = PullOptions { pin: true, limit_rate, ..PullOptions::default() };
            models::pull(&store, &source, &options, &mut |event| {
                let _ = tx.send(event);
            })
        });
        let mut tally = Tally::default();
        let mut shown = Instant::now();
        while let Some(event) = rx.recv().await {
            tally.apply(&event);
            // The total at once; the bytes at most every THROTTLE.
            if matches!(event, Event::Resolved { .. }) || shown.elapsed() >= THROTTLE {
                if let Err(e) = iface.get().await.show(tally.progress(), iface.signal_emitter()).await {
                    log::warn!("cannot signal the progress of {job}: {e}");
                }
                shown = Instant::now();
            }
        }
        let outcome = task.await.unwrap_or_else(|e| Err(models::Error::Invalid(format!("the pull stopped: {e}"))));
        let mut last = tally.progress();
        match &outcome {
            Ok(report) => {
                last.state = "done".into();
                last.bytes_total = last.bytes_total.max(report.size);
                last.bytes_done = last.bytes_total;
                last.resolved = report.resolved.clone().unwrap_or_default();
                log::info!(model = canonical.as_str(), model_digest = report.tree.to_string().as_str(), job = job.as_str(); "{canonical}: pulled, {} bytes received", report.transferred);
            }
            Err(e) => {
                last.state = "failed".into();
                last.error = format!("pulling {canonical}: {e}");
                log::warn!(model = canonical.as_str(), job = job.as_str(); "{}", last.error);
            }
        }
        // A Pull after this sees the outcome in the cache and gets a new job.
        self.running.lock().await.remove(&canonical);
        let result = last.state.clone();
        let error = last.error.clone();
        if let Err(e) = iface.get().await.show(last, iface.signal_emitter()).await {
            log::warn!("cannot signal the end of {job}: {e}");
        }
        if let Err(e) = JobObject::finished(iface.signal_emitter(), &result, &error).await {
            log::warn!("cannot signal the end of {job}: {e}");
        }
        tokio::time::sleep(LINGER).await;
        let server = self.conn.object_server();
        if let Err(e) = server.remove::<JobObject, _>(job.as_str()).await {
            log::warn!("cannot remove {job}: {e}");
        }
        if let Ok(emitter) = SignalEmitter::new(&self.conn, MODELS_PATH) {
            let _ = ModelsObject::job_removed(&emitter, job.as_ref(), &result).await;
        }
    }
}

/// One model in the cache, as `List` returns it (a struct on the bus, `(ssstutb)`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, zbus::zvariant::Type)]
pub struct ModelRow {
    /// The source, canonical (`oci://...`, `hf://...`, `file://...`).
    pub source: String,
    /// The tree's digest.
    pub tree: String,
    /// What the source resolved to (a manifest digest, a revision); empty when nothing.
    pub resolved: String,
    /// Bytes.
    pub size: u64,
    pub files: u32,
    /// When it was pulled, seconds since the epoch.
    pub pulled: u64,
    pub pinned: bool,
}

/// The object of the model cache.
/// `Models1.Inspect`'s reply as it travels: source, tree, resolved, path, unit, size, pinned,
/// files (path, digest, size). [`ModelDetail`] is the same with names.
pub type InspectReply = (String, String, String, String, String, u64, bool, Vec<(String, String, u64)>);

/// One model of the cache, as `Models1.Inspect` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelDetail {
    pub source: String,
    pub tree: String,
    pub resolved: String,
    /// Where the files are on the host.
    pub path: String,
    /// The unit that pulls it for services.
    pub unit: String,
    pub size: u64,
    pub pinned: bool,
    pub files: Vec<ModelFile>,
}

/// One file of a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelFile {
    pub path: String,
    pub digest: String,
    pub size: u64,
}

impl From<ModelDetail> for InspectReply {
    fn from(d: ModelDetail) -> Self {
        let files = d.files.into_iter().map(|f| (f.path, f.digest, f.size)).collect();
        (d.source, d.tree, d.resolved, d.path, d.unit, d.size, d.pinned, files)
    }
}

impl From<InspectReply> for ModelDetail {
    fn from((source, tree, resolved, path, unit, size, pinned, files): InspectReply) -> Self {
        let files = files.into_iter().map(|(path, digest, size)| ModelFile { path, digest, size }).collect();
        ModelDetail { source, tree, resolved, path, unit, size, pinned, files }
    }
}

/// The client side of `org.aicontainers.Models1` (for `aictl`), beside the interface it calls.
#[zbus::proxy(
    interface = "org.aicontainers.Models1",
    default_service = "org.aicontainers.Agent1",
    default_path = "/org/aicontainers/Agent1/models",
    gen_blocking = false
)]
pub trait Models1 {
    /// Returns the job's object path.
    #[zbus(allow_interactive_auth)]
    fn pull(&self, source: &str) -> zbus::Result<OwnedObjectPath>;
    fn list(&self) -> zbus::Result<Vec<ModelRow>>;
    fn inspect(&self, source: &str) -> zbus::Result<InspectReply>;
    #[zbus(allow_interactive_auth)]
    fn remove(&self, source: &str) -> zbus::Result<()>;
    #[zbus(allow_interactive_auth)]
    fn gc(&self) -> zbus::Result<(Vec<String>, u32, u32, u64)>;
}

#[derive(Debug)]
pub struct ModelsObject {
    pub models: Arc<Models>,
}

/// The model cache (/var/lib/aicontainers/models). Pull returns a job object at once; List and
/// Inspect are open to everyone; Pull, Remove and Gc need root or polkit action
/// org.aicontainers.manage-models.
#[interface(name = "org.aicontainers.Models1")]
impl ModelsObject {
    /// Pulls SOURCE (oci://, hf://; file:// for root only) into the cache, pinned; returns the
    /// job that does it (the running one when SOURCE is being pulled already).
    #[zbus(out_args("job"))]
    async fn pull(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        source: String,
    ) -> Result<OwnedObjectPath, Error> {
        let parsed = parse(&source)?;
        let uid = auth::authorize(conn, &header, ACTION_MANAGE_MODELS, &format!("pull {}", parsed.canonical())).await?;
        // The agent reads any file as root: a file:// source would let a model manager copy
        // files they cannot read into the world-readable cache.
        if uid != 0 && matches!(parsed, Source::File { .. }) {
            return Err(Error::AccessDenied(format!(
                "UID {uid} may not pull {parsed}: file:// sources are pulled by root only"
            )));
        }
        self.models.pull(parsed, uid).await
    }

    /// Every model in the cache, by source.
    #[zbus(out_args("models"))]
    async fn list(&self) -> Result<Vec<ModelRow>, Error> {
        let root = self.models.host.models_root();
        if !root.exists() {
            return Ok(Vec::new());
        }
        with_store(root, |store| {
            let records = store.list().map_err(failed)?;
            Ok(records
                .into_iter()
                .map(|r| ModelRow {
                    source: r.source,
                    tree: r.tree.to_string(),
                    resolved: r.resolved.unwrap_or_default(),
                    size: r.size,
                    // A tree of more than 4 billion files reads as the most a u32 holds.
                    files: u32::try_from(r.files).unwrap_or(u32::MAX),
                    pulled: r.pulled,
                    pinned: r.pinned,
                })
                .collect())
        })
        .await
    }

    /// One model: where it came from, what it resolved to, where units mount it, its files.
    #[zbus(out_args("source", "tree", "resolved", "path", "unit", "size", "pinned", "files"))]
    // The tuple spelled out (not InspectReply): zbus makes a written tuple into one out argument
    // each, as the interface has always had, and a type alias into a single struct argument.
    #[allow(clippy::type_complexity)]
    async fn inspect(
        &self,
        source: String,
    ) -> Result<(String, String, String, String, String, u64, bool, Vec<(String, String, u64)>), Error> {
        let parsed = parse(&source)?;
        let root = self.models.host.models_root();
        with_store(root, move |store| {
            let Some(found) = models::inspect(store, &parsed).map_err(failed)? else {
                return Err(Error::NotFound(format!("{parsed} is not in the model cache (aictl model pull {parsed})")));
            };
            let files =
                found.files.into_iter().map(|f| ModelFile { path: f.path, digest: f.digest.to_string(), size: f.size });
            Ok(ModelDetail {
                source: found.record.source,
                tree: found.record.tree.to_string(),
                resolved: found.record.resolved.unwrap_or_default(),
                path: found.path.display().to_string(),
                unit: found.unit,
                size: found.record.size,
                pinned: found.record.pinned,
                files: files.collect(),
            }
            .into())
        })
        .await
    }

    /// Forgets SOURCE (and its pin); its files go at the next Gc. Refused while a service file
    /// names it.
    async fn remove(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        source: String,
    ) -> Result<(), Error> {
        let parsed = parse(&source)?;
        let uid =
            auth::authorize(conn, &header, ACTION_MANAGE_MODELS, &format!("remove {}", parsed.canonical())).await?;
        let dirs = self.models.host.dirs();
        let root = self.models.host.models_root();
        log::info!(model = parsed.canonical().as_str(), caller_uid = uid; "remove {} (asked by UID {uid})", parsed.canonical());
        with_store(root, move |store| {
            if in_use(&dirs).map_err(Error::Failed)?.contains(&parsed.canonical()) {
                return Err(Error::Failed(format!(
                    "{parsed} is named by a service file; remove it from the services first (or, as root, `aictl model rm --direct --force` and then `systemctl restart {}`)",
                    parsed.unit()
                )));
            }
            if store.remove(&parsed).map_err(failed)? {
                Ok(())
            } else {
                Err(Error::NotFound(format!("{parsed} is not in the model cache")))
            }
        })
        .await
    }

    /// Removes the models no service file names and no pin holds, then the files no model uses.
    /// Waits for running pulls (it takes the store's lock).
    #[zbus(out_args("models", "trees", "blobs", "bytes"))]
    async fn gc(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(Vec<String>, u32, u32, u64), Error> {
        let uid = auth::authorize(conn, &header, ACTION_MANAGE_MODELS, "collect the model cache").await?;
        let dirs = self.models.host.dirs();
        let root = self.models.host.models_root();
        let report = with_store(root, move |store| {
            let keep = in_use(&dirs).map_err(|why| Error::Failed(format!("not collecting: {why}")))?;
            store.gc(&keep).map_err(failed)
        })
        .await?;
        log::info!(caller_uid = uid; "gc (asked by UID {uid}): {} model(s), {} blob(s), {} bytes freed", report.refs.len(), report.blobs, report.bytes);
        Ok((report.refs, report.trees as u32, report.blobs as u32, report.bytes))
    }

    /// A job was created: its path, kind and target.
    #[zbus(signal)]
    async fn job_new(emitter: &SignalEmitter<'_>, job: ObjectPath<'_>, kind: &str, target: &str) -> zbus::Result<()>;

    /// A finished job left the bus: its path and result (done, failed).
    #[zbus(signal)]
    async fn job_removed(emitter: &SignalEmitter<'_>, job: ObjectPath<'_>, result: &str) -> zbus::Result<()>;
}
