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
mod http;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

pub use digest::Digest;
pub use source::Source;
pub use store::{GcReport, SourceRecord, Store, TreeFile};

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
    /// downloads anything, saying how much `gc` could look for.
    pub quota: Option<u64>,
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

/// Fetches a blob from an offset.
pub(crate) type Fetcher = Box<dyn FnMut(&Blob, u64) -> Result<Body, Error>>;

/// Pulls `source` into `store` and points its ref at it. See [`PullOptions`].
pub fn pull(
    store: &Store,
    source: &Source,
    options: &PullOptions,
    progress: &mut Progress<'_>,
) -> Result<PullReport, Error> {
    let started = Instant::now();
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
    let mut resolved = match source {
        Source::Oci { .. } => oci::resolve(source)?,
        Source::Hf { repo, revision } => hf::resolve(repo, revision)?,
        Source::Https { url, sha256 } => http::resolve_url(url, sha256)?,
        Source::File { path } => return pull_local(store, source, path, options, started),
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
    let bytes = resolved.items.iter().filter_map(|i| i.blob.size).sum();
    let missing = resolved
        .items
        .iter()
        .filter(|i| !i.blob.digest.as_ref().is_some_and(|d| store.has_blob(d)))
        .filter_map(|i| i.blob.size)
        .sum();
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

    let (mut transferred, mut fetched, mut present) = (0u64, 0usize, 0usize);
    let mut files: Vec<TreeFile> = Vec::new();
    for item in &resolved.items {
        let digest = match &item.blob.digest {
            Some(digest) => {
                let n = store.ensure_blob(
                    digest,
                    item.blob.size,
                    &item.blob.url,
                    options.limit_rate,
                    &mut |offset| (resolved.fetcher)(&item.blob, offset),
                    progress,
                )?;
                if store.has_blob(digest) && n == 0 {
                    present += 1;
                } else {
                    fetched += 1;
                }
                transferred += n;
                digest.clone()
            }
            None => {
                let body = (resolved.fetcher)(&item.blob, 0)?;
                let (Body::Whole(mut reader) | Body::Resumed(mut reader)) = body;
                let (digest, size) = store.put_reader(&mut reader, &item.blob.url)?;
                if item.blob.size.is_some_and(|s| s != size) {
                    return Err(Error::Fetch {
                        url: item.blob.url.clone(),
                        message: format!("received {size} bytes, the file list says {}", item.blob.size.unwrap_or(0)),
                    });
                }
                fetched += 1;
                transferred += size;
                digest
            }
        };
        match &item.content {
            Content::File(path) => {
                let size = std::fs::metadata(store.blob_path(&digest))
                    .map_err(|e| Error::Io { path: store.blob_path(&digest), source: e })?
                    .len();
                files.push(TreeFile { path: path.clone(), digest, size });
            }
            Content::Archive { compression, whiteouts } => {
                progress(Event::Extracting { digest: digest.clone() });
                archive::extract(store, &digest, *compression, *whiteouts, &mut files)?;
            }
        }
    }
    let tree = store.build_tree(&files)?;
    let record = store.set_ref(source, &tree, resolved.resolved.take(), options.pin)?;
    Ok(report(record, transferred, fetched, present, false))
}

/// `file://`: a file or a directory of this host, copied into the store.
fn pull_local(
    store: &Store,
    source: &Source,
    path: &str,
    options: &PullOptions,
    started: Instant,
) -> Result<PullReport, Error> {
    let root = std::path::Path::new(path);
    let meta = std::fs::symlink_metadata(root).map_err(|e| Error::Io { path: root.to_path_buf(), source: e })?;
    let mut files = Vec::new();
    let mut transferred = 0;
    let mut add = |file: &std::path::Path, rel: String| -> Result<(), Error> {
        let mut f = std::fs::File::open(file).map_err(|e| Error::Io { path: file.to_path_buf(), source: e })?;
        // The cache is readable by every service account: copying a file they could not read
        // would expose it.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = f.metadata().map_err(|e| Error::Io { path: file.to_path_buf(), source: e })?.permissions().mode();
        if mode & 0o004 == 0 {
            return Err(Error::Invalid(format!(
                "{}: not readable by others (mode {:o}); the model cache would make it readable by every service account, so it is not copied",
                file.display(),
                mode & 0o7777
            )));
        }
        let (digest, size) = store.put_reader(&mut f, &file.display().to_string())?;
        transferred += size;
        files.push(TreeFile { path: paths::check_relative(&rel).map_err(Error::Invalid)?, digest, size });
        Ok(())
    };
    if meta.is_file() {
        let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        add(root, name)?;
    } else if meta.is_dir() {
        // Regular files only; symbolic links are not followed.
        let mut stack = vec![(root.to_path_buf(), String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| Error::Io { path: dir.clone(), source: e })?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::Io { path: dir.clone(), source: e })?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
                let kind = entry.file_type().map_err(|e| Error::Io { path: entry.path(), source: e })?;
                if kind.is_dir() {
                    stack.push((entry.path(), rel));
                } else if kind.is_file() {
                    add(&entry.path(), rel)?;
                }
            }
        }
    } else {
        return Err(Error::Invalid(format!("{path}: neither a regular file nor a directory")));
    }
    let tree = store.build_tree(&files)?;
    let record = store.set_ref(source, &tree, None, options.pin)?;
    Ok(PullReport {
        source: record.source,
        path: store.ref_path(source),
        tree: record.tree,
        resolved: None,
        files: record.files,
        size: record.size,
        transferred,
        blobs_fetched: files.len(),
        blobs_present: 0,
        cached: false,
        pinned: record.pinned,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
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

/// The canonical sources a set of services names (what `gc` keeps).
pub fn sources_in_use(services: &[crate::spec::Service]) -> BTreeSet<String> {
    services.iter().flat_map(|s| s.models.iter().map(|m| m.source.canonical())).collect()
}

/// A blocking HTTP agent that answers every status (so errors can name it).
pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(concat!("aicontainers/", env!("CARGO_PKG_VERSION")))
        // Credentials follow a redirect only to the same host over https, never to a CDN.
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
        .timeout_connect(Some(std::time::Duration::from_secs(30)))
        .timeout_per_read(Some(std::time::Duration::from_secs(120)))
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

/// The model sources the service files in `dirs` name (what `gc` keeps), and the diagnostics of
/// files whose `[[model]]` sections cannot be read (what they name is then unknown). A service
/// with mistakes elsewhere still names its models.
pub fn named_by_services<P: AsRef<std::path::Path>>(dirs: &[P]) -> (BTreeSet<String>, Vec<String>) {
    let found = crate::source::discover(dirs);
    let mut keep = BTreeSet::new();
    let mut unreadable = Vec::new();
    for files in &found.services {
        match crate::source::models(files) {
            Ok(models) => keep.extend(models.iter().map(|m| m.source.canonical())),
            Err(diags) => unreadable.extend(diags.iter().map(|d| d.to_string())),
        }
    }
    (keep, unreadable)
}
