//! The model cache: pulling model weights from registries, the Hugging Face Hub, pinned URLs
//! and local paths into one content-addressed store ([`store`]) that services mount read-only.
//!
//! The API is synchronous and reports through a callback, so that `aictl` prints progress and
//! the agent can turn the same [`Event`]s into job properties and signals (docs/models.md):
//!
//! - [`pull`]: fetch a [`Source`] (or find it there) and point its ref at the result;
//! - [`Store::list`], [`inspect`], [`Store::remove`], [`Store::gc`].

pub mod digest;
pub mod hf;
pub mod oci;
pub mod paths;
pub mod source;
pub mod store;

mod archive;
mod auth;
mod authority;
mod http;
mod local;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use digest::Digest;
pub use source::Source;
pub use store::{GcReport, Limits, SourceRecord, Store, TreeFile};

use store::Body;

/// Everything that can go wrong in the cache, each naming the file, URL or digest concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{url}: {message}")]
    Fetch { url: String, message: String },
    #[error(
        "{what}: digest mismatch: expected {expected}, received {size} bytes with digest {actual}; nothing was kept"
    )]
    Mismatch { what: String, expected: Digest, actual: Digest, size: u64 },
    #[error("{0}")]
    Invalid(String),
}

/// What a pull is doing, for progress bars, logs and the agent's job properties.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The source was resolved: what it names now, how many blobs and bytes it has, and how
    /// many of those bytes are not in the store yet.
    Resolved {
        resolved: Option<String>,
        blobs: usize,
        bytes: u64,
        missing: u64,
    },
    /// A blob download starts (at `offset` when a partial download resumes).
    BlobStart {
        digest: Digest,
        size: Option<u64>,
        offset: u64,
    },
    /// `done` of `total` bytes of a blob are in.
    Bytes {
        digest: Digest,
        done: u64,
        total: Option<u64>,
    },
    BlobDone {
        digest: Digest,
        transferred: u64,
    },
    /// Unpacking an archive layer.
    Extracting {
        digest: Digest,
    },
    /// The whole model: `done` of `total` bytes are in the store (blobs fetched in parallel
    /// each report their own `Bytes`).
    Model {
        done: u64,
        total: u64,
    },
}

/// The progress callback.
pub type Progress<'a> = dyn FnMut(Event) + 'a;

#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    /// Keep the model through `gc` even when no service names it (pulls by hand).
    pub pin: bool,
    /// Do not ask the source when a ref is already there (what units do at start).
    pub if_missing: bool,
    /// At most this many bytes per second per download.
    pub limit_rate: Option<u64>,
    /// The most bytes the store's blobs may take: a pull that would need more fails before it
    /// downloads anything, saying how much `gc` could look for, and every byte written (an
    /// archive's unpacked files included) counts against it while the pull runs. Without a
    /// quota, the file system's free space less 1 % of its size is the limit.
    pub quota: Option<u64>,
    /// Deadlines, the minimum rate and lock waits; `limit_rate` overrides its `max_rate`.
    pub limits: Limits,
}

/// What a pull did.
#[derive(Clone, Debug, Serialize)]
pub struct PullReport {
    pub source: String,
    /// The directory units mount.
    pub path: PathBuf,
    pub tree: Digest,
    pub resolved: Option<String>,
    pub files: usize,
    pub size: u64,
    /// Bytes received for blobs (manifests and file lists not counted).
    pub transferred: u64,
    pub blobs_fetched: usize,
    pub blobs_present: usize,
    /// Whether the source was not asked at all (`if_missing` and present).
    pub cached: bool,
    pub pinned: bool,
    pub elapsed_ms: u64,
}

/// A blob to fetch, as a source describes it.
#[derive(Clone, Debug)]
pub(crate) struct Blob {
    /// Unknown for Hub files kept in git rather than LFS: hashed as it arrives.
    pub digest: Option<Digest>,
    pub size: Option<u64>,
    pub url: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
}

/// How a blob becomes files of the tree.
#[derive(Clone, Debug)]
pub(crate) enum Content {
    /// The blob is the file at this path.
    File(String),
    /// A tar archive unpacked at the tree's root; `whiteouts` for image layers.
    Archive { compression: Compression, whiteouts: bool },
}

#[derive(Clone, Debug)]
pub(crate) struct Item {
    pub blob: Blob,
    pub content: Content,
}

/// A source, resolved: what it names and how to fetch each part.
pub(crate) struct Resolved {
    pub resolved: Option<String>,
    pub items: Vec<Item>,
    pub fetcher: Fetcher,
}

/// Fetches a blob from an offset; shared by the threads that fetch a model's blobs.
pub(crate) type Fetcher = Box<dyn Fn(&Blob, u64) -> Result<Body, Error> + Send + Sync>;

/// How many blobs of one model are fetched at once by default ([`Limits::parallel`]): enough
/// for a sharded model to be limited by the link or the disk rather than by one stream, few
/// enough to be fair to a registry.
pub const PARALLEL_FETCHES: usize = 4;

/// The sum of sizes a source announced, or an error if it cannot be held (a hostile manifest).
fn total<'a>(mut sizes: impl Iterator<Item = &'a u64>, source: &Source) -> Result<u64, Error> {
    sizes.try_fold(0u64, |sum, s| sum.checked_add(*s)).ok_or_else(|| {
        Error::Invalid(format!("{source}: the sizes the source announces add up to more than 2^64 bytes"))
    })
}

/// Pulls `source` into `store` and points its ref at it. See [`PullOptions`].
///
/// Long because it is the one place that orders a pull's stages (cache check, resolve, the
/// up-to-date check, quota, fetch, assemble, tree, ref); each stage is a call.
pub fn pull(
    store: &Store,
    source: &Source,
    options: &PullOptions,
    progress: &mut Progress<'_>,
) -> Result<PullReport, Error> {
    let started = Instant::now();
    let mut limits = options.limits.clone();
    if options.limit_rate.is_some() {
        limits.max_rate = options.limit_rate;
    }
    let store = &store.clone().with_limits(limits);
    let _lock = store.lock_shared()?;
    let report = |record: SourceRecord, transferred, fetched, present, cached| PullReport {
        source: record.source,
        path: store.ref_path(source),
        tree: record.tree,
        resolved: record.resolved,
        files: record.files,
        size: record.size,
        transferred,
        blobs_fetched: fetched,
        blobs_present: present,
        cached,
        pinned: record.pinned,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    if options.if_missing {
        if let Some(record) = store.record(source)? {
            let record = if options.pin && !record.pinned {
                store.set_ref(source, &record.tree, record.resolved, true)?
            } else {
                record
            };
            return Ok(report(record, 0, 0, 0, true));
        }
    }
    let store = &store.clone().with_quota(options.quota)?;
    let mut resolved = match source {
        Source::Oci { .. } => oci::resolve(source)?,
        Source::Hf { repo, revision } => hf::resolve(repo, revision)?,
        Source::Https { url, sha256 } => http::resolve_url(url, sha256)?,
        Source::File { path } => {
            let (files, staged) = local::copy_in(store, path)?;
            let transferred = total(staged.iter().map(|s| &s.size), source)?;
            if let Err(e) = store.commit(&staged, false) {
                store.discard(&staged);
                return Err(e);
            }
            let tree = store.build_tree(&files)?;
            let record = store.set_ref(source, &tree, None, options.pin)?;
            return Ok(report(record, transferred, files.len(), 0, false));
        }
    };
    // Up to date: the same resolution, its tree still there.
    if let Some(record) = store.record(source)? {
        if resolved.resolved.is_some() && record.resolved == resolved.resolved {
            let record = if options.pin && !record.pinned {
                store.set_ref(source, &record.tree, record.resolved, true)?
            } else {
                record
            };
            progress(Event::Resolved {
                resolved: record.resolved.clone(),
                blobs: resolved.items.len(),
                bytes: record.size,
                missing: 0,
            });
            return Ok(report(record, 0, 0, resolved.items.len(), false));
        }
    }
    let bytes = total(resolved.items.iter().filter_map(|i| i.blob.size.as_ref()), source)?;
    let missing = total(
        resolved
            .items
            .iter()
            .filter(|i| !i.blob.digest.as_ref().is_some_and(|d| store.has_blob(d)))
            .filter_map(|i| i.blob.size.as_ref()),
        source,
    )?;
    if let Some(quota) = options.quota {
        let used = store.usage()?;
        if used.saturating_add(missing) > quota {
            return Err(Error::Invalid(format!(
                "{source}: needs {missing} more bytes and the model cache holds {used} of its quota of {quota} bytes: \
                 remove models (`aictl model rm`, `aictl model gc`) or raise the quota"
            )));
        }
    }
    progress(Event::Resolved { resolved: resolved.resolved.clone(), blobs: resolved.items.len(), bytes, missing });
    let fetched = fetch_all(store, &resolved, bytes.saturating_sub(missing), bytes, progress)?;
    let (mut transferred, mut blobs_fetched, mut present) = (0u64, 0usize, 0usize);
    let mut layers = archive::Layers::default();
    let assembled = (|| -> Result<(), Error> {
        for (item, (digest, n)) in resolved.items.iter().zip(&fetched) {
            transferred = transferred.saturating_add(*n);
            if *n == 0 && item.blob.digest.is_some() {
                present += 1;
            } else {
                blobs_fetched += 1;
            }
            layers.next_layer();
            match &item.content {
                Content::File(path) => {
                    let blob = store.blob_path(digest);
                    let size = std::fs::metadata(&blob).map_err(|e| Error::Io { path: blob, source: e })?.len();
                    layers.add_file(TreeFile { path: path.clone(), digest: digest.clone(), size });
                }
                Content::Archive { compression, whiteouts } => {
                    progress(Event::Extracting { digest: digest.clone() });
                    archive::extract(store, digest, *compression, *whiteouts, &mut layers)?;
                }
            }
        }
        store.commit(&layers.staged_files, false)
    })();
    if let Err(e) = assembled {
        store.discard(&layers.staged_files);
        return Err(e);
    }
    let tree = store.build_tree(&layers.into_files())?;
    let record = store.set_ref(source, &tree, resolved.resolved.take(), options.pin)?;
    Ok(report(record, transferred, blobs_fetched, present, false))
}

/// What a fetching thread tells the pull.
enum Note {
    Event(Event),
    Done(usize, Result<(Digest, u64), Error>),
}

/// Fetches every item of `resolved` that is not in the store, [`Limits::parallel`] at a time,
/// and returns each item's digest and the bytes received for it, in item order. Progress: each
/// blob's events, and [`Event::Model`] for the whole model (`present` bytes were there).
fn fetch_all(
    store: &Store,
    resolved: &Resolved,
    present: u64,
    bytes: u64,
    progress: &mut Progress<'_>,
) -> Result<Vec<(Digest, u64)>, Error> {
    let items = &resolved.items;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut results: Vec<Option<(Digest, u64)>> = vec![None; items.len()];
    let mut first_error = None;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<Note>();
        for _ in 0..store.limits().parallel.clamp(1, 64).min(items.len()) {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= items.len() || stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let mut send = |e: Event| {
                    let _ = tx.send(Note::Event(e));
                };
                let result = fetch_one(store, &items[i], &resolved.fetcher, &mut send);
                if result.is_err() {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                let _ = tx.send(Note::Done(i, result));
            });
        }
        drop(tx);
        let mut current: BTreeMap<Digest, u64> = BTreeMap::new();
        let mut finished = 0u64;
        let mut last = Instant::now();
        let mut due = false;
        for note in rx {
            match note {
                Note::Event(event) => {
                    match &event {
                        Event::BlobStart { digest, offset, .. } => {
                            current.insert(digest.clone(), *offset);
                        }
                        Event::Bytes { digest, done, .. } => {
                            current.insert(digest.clone(), *done);
                        }
                        _ => {}
                    }
                    progress(event);
                }
                Note::Done(i, result) => {
                    match result {
                        Ok((digest, n)) => {
                            current.remove(&digest);
                            finished = finished.saturating_add(items[i].blob.size.unwrap_or(n));
                            results[i] = Some((digest, n));
                        }
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                    due = true;
                }
            }
            if due || last.elapsed() >= Duration::from_millis(200) {
                due = false;
                let moving = current.values().fold(0u64, |s, d| s.saturating_add(*d));
                let done = present.saturating_add(finished).saturating_add(moving).min(bytes.max(finished));
                progress(Event::Model { done, total: bytes });
                last = Instant::now();
            }
        }
    });
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(results.into_iter().map(|r| r.expect("every item was fetched")).collect())
}

/// Makes sure one item's blob is in the store; its digest and the bytes received.
fn fetch_one(
    store: &Store,
    item: &Item,
    fetcher: &Fetcher,
    progress: &mut Progress<'_>,
) -> Result<(Digest, u64), Error> {
    match &item.blob.digest {
        Some(digest) => {
            let n = store.ensure_blob(
                digest,
                item.blob.size,
                &item.blob.url,
                &mut |offset| fetcher(&item.blob, offset),
                progress,
            )?;
            Ok((digest.clone(), n))
        }
        None => {
            let (Body::Whole(mut reader) | Body::Resumed(mut reader)) = fetcher(&item.blob, 0)?;
            let (digest, size) = store.put_reader(&mut reader, &item.blob.url, item.blob.size)?;
            Ok((digest, size))
        }
    }
}

/// One pulled model, in detail.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    #[serde(flatten)]
    pub record: SourceRecord,
    pub path: PathBuf,
    pub unit: String,
    pub files: Vec<TreeFile>,
}

pub fn inspect(store: &Store, source: &Source) -> Result<Option<Inspection>, Error> {
    let Some(record) = store.record(source)? else { return Ok(None) };
    let files = store.tree(&record.tree)?.files;
    Ok(Some(Inspection { path: store.ref_path(source), unit: source.unit(), files, record }))
}

/// A blocking HTTP agent that answers every status (so errors can name it) and follows no
/// redirect itself: [`http::get`] follows them, deciding where credentials may go.
pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(concat!("aicontainers/", env!("CARGO_PKG_VERSION")))
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        // A body that stalls entirely ends here; one that trickles meets `Limits::min_rate`.
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Reads a response body of at most `limit` bytes.
pub(crate) fn read_small(body: &mut ureq::Body, limit: u64, url: &str) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    body.as_reader()
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::Fetch { url: url.to_owned(), message: format!("reading the response: {e}") })?;
    if out.len() as u64 > limit {
        return Err(Error::Fetch {
            url: url.to_owned(),
            message: format!("the response is larger than {limit} bytes"),
        });
    }
    Ok(out)
}
