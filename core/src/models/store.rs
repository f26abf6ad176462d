//! The model store: one system-wide, content-addressed directory that root writes and every
//! service account reads.
//!
//! ```text
//! /var/lib/aicontainers/models/
//!   blobs/sha256/HEX        every file of every model, once, named by its SHA-256 (0644)
//!   trees/HEX/...           one model's files as hard links to blobs; HEX hashes the listing
//!   trees/HEX.json          that listing (path, digest, size of each file)
//!   refs/NAME -> ../trees/HEX   what units mount, one per source (`Source::ref_name`)
//!   sources/NAME.json       what a ref was pulled from and when, and whether it is pinned
//!   tmp/HEX.partial         a download in progress (resumed with Range:), never in blobs/
//!   tmp/HEX.lock            flock(2) held while HEX downloads: one download per blob (0600)
//!   lock                    shared by pulls, exclusive for gc and rm (0600: root's only)
//! ```
//!
//! A blob reaches `blobs/` only by rename(2) after its digest was checked and its data fsynced,
//! so whatever is visible there is complete and correct, whatever was killed when.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{symlink, MetadataExt as _, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::digest::Digest;
use super::paths::check_relative;
use super::source::Source;
use super::{Error, Event, Progress};

/// Where the store lives unless `AICONTAINERS_MODELS_DIR` says otherwise.
pub const STORE_DIR: &str = "/var/lib/aicontainers/models";

const DIR_MODE: u32 = 0o755;
const FILE_MODE: u32 = 0o644;
/// Lock files: only root may open them, so only root can hold them (flock(2) needs no more
/// than a read-only descriptor).
const LOCK_MODE: u32 = 0o600;
/// One buffer of the copy pipeline; [`PIPELINE_DEPTH`] of them are allocated once per copy and
/// reused, so a 1 GiB blob costs four allocations, not a thousand fresh zeroed mappings.
const COPY_BUFFER: usize = 1 << 20;
const PIPELINE_DEPTH: usize = 4;
/// How much a download writes between two early fdatasyncs (see [`Copier::copy`]).
const SYNC_EVERY: usize = 64 << 20;

/// Limits on every transfer and lock wait of a pull.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The longest one transfer (one blob, one file) may take, whatever its rate.
    pub deadline: Duration,
    /// The slowest rate tolerated, in bytes per second averaged over `window`: a server that
    /// trickles is dropped (what arrived stays for the next pull to resume).
    pub min_rate: u64,
    pub window: Duration,
    /// At most this many bytes per second per transfer.
    pub max_rate: Option<u64>,
    /// How long to wait for the store's lock or for another pull's download of the same blob.
    pub lock_wait: Duration,
    /// How many blobs of one model are fetched at once.
    pub parallel: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            deadline: Duration::from_secs(6 * 3600),
            min_rate: 1024,
            window: Duration::from_secs(60),
            max_rate: None,
            lock_wait: Duration::from_secs(600),
            parallel: super::PARALLEL_FETCHES,
        }
    }
}

/// What a pull may still add to the store: every byte written for a new blob is charged before
/// it is written, so a download or an archive that unpacks to more (a decompression bomb)
/// stops at the limit, not when the disk is full.
#[derive(Debug)]
struct Budget {
    limit: u64,
    used: AtomicU64,
    what: String,
}

impl Budget {
    fn charge(&self, n: u64, what: &str) -> Result<(), Error> {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.checked_add(n).is_none_or(|after| after > self.limit) {
            self.used.fetch_sub(n, Ordering::Relaxed);
            return Err(Error::Invalid(format!(
                "{what}: stopped at the model cache's limit: {}; remove models (`aictl model rm`, `aictl model gc`) or raise the quota",
                self.what
            )));
        }
        Ok(())
    }

    fn refund(&self, n: u64) {
        let _ = self.used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| Some(u.saturating_sub(n)));
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    budget: Option<Arc<Budget>>,
    limits: Limits,
}

/// One file of a model's tree.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TreeFile {
    pub path: String,
    pub digest: Digest,
    pub size: u64,
}

/// `trees/HEX.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TreeRecord {
    pub files: Vec<TreeFile>,
}

/// `sources/NAME.json`: one pulled source.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SourceRecord {
    pub source: String,
    pub tree: Digest,
    /// What the source resolved to: the manifest digest (oci), the commit (hf).
    pub resolved: Option<String>,
    /// Seconds since the epoch.
    pub pulled: u64,
    /// Kept by `gc` even when no service names it (pulled by hand).
    pub pinned: bool,
    pub files: usize,
    pub size: u64,
}

/// What `gc` removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    pub refs: Vec<String>,
    pub trees: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub partials: usize,
}

/// A body being received.
pub type Reader = Box<dyn Read + Send>;

/// How a fetcher answers a request for a blob from `offset`.
pub enum Body {
    /// The bytes from `offset` on (HTTP 206).
    Resumed(Reader),
    /// The whole blob from byte 0 (HTTP 200: the server ignored the range).
    Whole(Reader),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Body::Resumed(_) => "Body::Resumed",
            Body::Whole(_) => "Body::Whole",
        })
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Creates `dir` and its parents with mode 0755 whatever the umask.
fn make_dir(dir: &Path) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        make_dir(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)).map_err(io_err(dir)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Writes `data` to `path` atomically and durably ([`crate::fsutil::write_durable`]).
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), Error> {
    crate::fsutil::write_durable(path, data, FILE_MODE).map_err(io_err(path))
}

/// Holds a flock(2) until dropped.
#[derive(Debug)]
pub struct Lock(#[allow(dead_code)] Flock<File>);

/// Takes a flock(2) on `path`, waiting at most `wait`. The file is made (and kept) mode 0600,
/// so no other account can open it and so hold the lock. A wait that times out names who holds
/// the lock (from /proc/locks).
fn lock(path: &Path, arg: FlockArg, wait: Duration) -> Result<Lock, Error> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(LOCK_MODE)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err(path))?;
    // A store made by an earlier version has its lock files 0644.
    file.set_permissions(fs::Permissions::from_mode(LOCK_MODE)).map_err(io_err(path))?;
    let (try_arg, kind) = match arg {
        FlockArg::LockShared | FlockArg::LockSharedNonblock => (FlockArg::LockSharedNonblock, "a shared"),
        _ => (FlockArg::LockExclusiveNonblock, "an exclusive"),
    };
    let started = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        match Flock::lock(file, try_arg) {
            Ok(held) => return Ok(Lock(held)),
            Err((back, Errno::EWOULDBLOCK)) => file = back,
            Err((_, errno)) => return Err(io_err(path)(io::Error::from(errno))),
        }
        if started.elapsed() >= wait {
            let holders = lock_holders(&file);
            return Err(Error::Invalid(format!(
                "{}: waited {} s for {kind} lock; held by {}",
                path.display(),
                wait.as_secs(),
                if holders.is_empty() { "a process this one cannot see".to_owned() } else { holders.join(", ") }
            )));
        }
        std::thread::sleep(pause.min(wait.saturating_sub(started.elapsed())));
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// The processes /proc/locks says hold a lock on `file`: "pid N (command line)".
fn lock_holders(file: &File) -> Vec<String> {
    let Ok(meta) = file.metadata() else { return Vec::new() };
    let (major, minor) = (nix::sys::stat::major(meta.dev()), nix::sys::stat::minor(meta.dev()));
    let device = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let Ok(locks) = fs::read_to_string("/proc/locks") else { return Vec::new() };
    let mut out = Vec::new();
    for line in locks.lines() {
        // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; blocked waiters carry "->".
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") || fields.len() < 6 || fields[5] != device {
            continue;
        }
        let pid = fields[4];
        let command = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| {
                let text = String::from_utf8_lossy(&c).replace('\0', " ");
                text.trim().chars().take(120).flat_map(char::escape_debug).collect::<String>()
            })
            .unwrap_or_default();
        let entry = if command.is_empty() { format!("pid {pid}") } else { format!("pid {pid} ({command})") };
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    out
}

/// What the buffers of the copy pipeline carry: a reused buffer and how much of it is filled.
type Chunk = (Vec<u8>, usize);

/// Copies a body into a file and through a hasher, keeping to the store's limits and reporting
/// progress.
struct Copier<'s, 'p, 'q> {
    store: &'s Store,
    progress: &'p mut Progress<'q>,
    /// For progress events; none for data whose digest is known only once read.
    digest: Option<&'s Digest>,
    /// The announced size: the body is cut there.
    total: Option<u64>,
    what: &'s str,
    /// The file being written, to start its writeback early.
    early_sync: Option<&'s File>,
}

impl Copier<'_, '_, '_> {
    /// Copies `from` (starting at byte `done` of the blob) into `to` and through `hasher`;
    /// returns the bytes copied. The network read runs here while a helper thread hashes each
    /// buffer and a second writes it, so the three overlap; the buffers go round, never
    /// allocated again. Long because the three threads, their channels and the limits checked
    /// per read are one protocol, clearer read in one place.
    fn copy(
        &mut self,
        from: &mut dyn Read,
        to: &mut (dyn Write + Send),
        hasher: &mut Sha256,
        mut done: u64,
    ) -> Result<u64, Error> {
        let what = self.what;
        let limits = self.store.limits.clone();
        let fetch_error = |message: String| Error::Fetch { url: what.to_owned(), message };
        let started = Instant::now();
        let (mut window_start, mut window_bytes) = (Instant::now(), 0u64);
        let mut copied = 0u64;
        let mut last_report = Instant::now();
        let mut state = std::mem::take(hasher);
        // Never read past the announced size.
        let mut left = self.total.map_or(u64::MAX, |t| t.saturating_sub(done));
        std::thread::scope(|scope| -> Result<u64, Error> {
            let (free_tx, free_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPELINE_DEPTH);
            let (to_hash, hash_rx) = std::sync::mpsc::sync_channel::<Chunk>(PIPELINE_DEPTH);
            let (to_write, write_rx) = std::sync::mpsc::sync_channel::<Chunk>(PIPELINE_DEPTH);
            for _ in 0..PIPELINE_DEPTH {
                let _ = free_tx.send(vec![0u8; COPY_BUFFER]);
            }
            let hashing = scope.spawn(move || {
                for (buf, n) in hash_rx {
                    state.update(&buf[..n]);
                    if to_write.send((buf, n)).is_err() {
                        break;
                    }
                }
                state
            });
            // Writeback starts while the body still arrives: a fourth thread fdatasyncs the file
            // every SYNC_EVERY bytes, so the fsync before the rename has little left to write.
            let (to_sync, sync_rx) = std::sync::mpsc::sync_channel::<()>(1);
            let early = self.early_sync;
            if let Some(file) = early {
                scope.spawn(move || {
                    for () in sync_rx {
                        let _ = file.sync_data();
                    }
                });
            }
            let writing = scope.spawn(move || -> io::Result<()> {
                let mut unsynced = 0usize;
                for (buf, n) in write_rx {
                    to.write_all(&buf[..n])?;
                    let _ = free_tx.send(buf);
                    unsynced += n;
                    if early.is_some() && unsynced >= SYNC_EVERY && to_sync.try_send(()).is_ok() {
                        unsynced = 0;
                    }
                }
                Ok(())
            });
            let mut failure = None;
            'body: while left > 0 {
                let Ok(mut buf) = free_rx.recv() else { break }; // the writer stopped: see below
                let mut filled = 0;
                // Fill most of a buffer before handing it on: fewer, larger writes.
                while filled < COPY_BUFFER / 2 && (filled as u64) < left {
                    let room = (COPY_BUFFER - filled).min(usize::try_from(left).unwrap_or(usize::MAX) - filled);
                    let n = match from.read(&mut buf[filled..filled + room]) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            failure = Some(fetch_error(format!("reading the body: {e}")));
                            break;
                        }
                    };
                    filled += n;
                    window_bytes += n as u64;
                    if let Some(why) = too_slow(&limits, started, &mut window_start, &mut window_bytes) {
                        failure = Some(fetch_error(why));
                        break;
                    }
                }
                if filled > 0 {
                    if let Some(budget) = &self.store.budget {
                        if let Err(e) = budget.charge(filled as u64, what) {
                            failure = Some(e);
                            break 'body;
                        }
                    }
                    if to_hash.send((buf, filled)).is_err() {
                        break; // the writer failed: its error is reported below
                    }
                    copied += filled as u64;
                    done += filled as u64;
                    left -= filled as u64;
                }
                if failure.is_some() || filled == 0 {
                    break;
                }
                if let Some(rate) = limits.max_rate.filter(|r| *r > 0) {
                    let due = Duration::from_secs_f64(copied as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                if last_report.elapsed() >= Duration::from_millis(200) {
                    if let Some(digest) = self.digest {
                        (self.progress)(Event::Bytes { digest: digest.clone(), done, total: self.total });
                    }
                    last_report = Instant::now();
                }
            }
            drop(to_hash);
            let written = writing.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            *hasher = hashing.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            if let Err(e) = written {
                return Err(fetch_error(format!("writing: {e}")));
            }
            match failure {
                Some(e) => Err(e),
                None => Ok(copied),
            }
        })
    }
}

/// Why a transfer that started at `started` must stop: past its deadline, or slower than the
/// minimum rate over the last window.
fn too_slow(limits: &Limits, started: Instant, window_start: &mut Instant, window_bytes: &mut u64) -> Option<String> {
    if started.elapsed() > limits.deadline {
        return Some(format!(
            "the transfer took longer than its deadline of {} s (AICONTAINERS_MODELS_TIMEOUT); what arrived is kept for the next pull",
            limits.deadline.as_secs()
        ));
    }
    let window = window_start.elapsed();
    if window >= limits.window && !limits.window.is_zero() {
        let rate = *window_bytes as f64 / window.as_secs_f64();
        if rate < limits.min_rate as f64 {
            return Some(format!(
                "the server sent {} bytes in {} s, less than the minimum rate of {} bytes/s (AICONTAINERS_MODELS_MIN_RATE); what arrived is kept for the next pull",
                window_bytes,
                window.as_secs(),
                limits.min_rate
            ));
        }
        *window_start = Instant::now();
        *window_bytes = 0;
    }
    None
}

/// A file of `tmp/` holding a blob's data, hashed, not yet in `blobs/`.
#[derive(Clone, Debug)]
pub(crate) struct Staged {
    pub digest: Digest,
    pub size: u64,
    pub path: PathBuf,
}

impl Store {
    /// The store at `root`, created if missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, Error> {
        let store = Store { root: root.into(), budget: None, limits: Limits::default() };
        for dir in ["blobs/sha256", "trees", "refs", "sources", "tmp"] {
            make_dir(&store.root.join(dir))?;
        }
        Ok(store)
    }

    /// This store, with `limits` on its transfers and lock waits.
    pub fn with_limits(mut self, limits: Limits) -> Store {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// This store, counting what is written to it against `quota` bytes of blobs (or, with no
    /// quota, the free space of its file system less 1 % of its size).
    pub fn with_quota(mut self, quota: Option<u64>) -> Result<Store, Error> {
        let used = self.usage()?;
        let (limit, what) = match quota {
            Some(q) => (q, format!("its quota of {q} bytes (it holds {used})")),
            None => {
                let fs = nix::sys::statvfs::statvfs(&self.root).map_err(|e| io_err(&self.root)(e.into()))?;
                let frsize = fs.fragment_size();
                let free = (fs.blocks_available() as u64).saturating_mul(frsize);
                let reserve = (fs.blocks() as u64).saturating_mul(frsize) / 100;
                let limit = used.saturating_add(free.saturating_sub(reserve));
                (limit, format!("the free space of {} less 1 % of its size", self.root.display()))
            }
        };
        self.budget = Some(Arc::new(Budget { limit, used: AtomicU64::new(used), what }));
        Ok(self)
    }

    /// The store of this host: `$AICONTAINERS_MODELS_DIR`, else [`STORE_DIR`].
    pub fn system_root() -> PathBuf {
        std::env::var_os("AICONTAINERS_MODELS_DIR")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(STORE_DIR), PathBuf::from)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn tree_path(&self, tree: &Digest) -> PathBuf {
        self.root.join("trees").join(tree.hex())
    }

    /// The path units mount for `source`.
    pub fn ref_path(&self, source: &Source) -> PathBuf {
        self.root.join("refs").join(source.ref_name())
    }

    fn record_path(&self, source: &Source) -> PathBuf {
        self.root.join("sources").join(format!("{}.json", source.ref_name()))
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Shared by pulls; `gc` and `rm` take it exclusively. Waits at most [`Limits::lock_wait`].
    pub fn lock_shared(&self) -> Result<Lock, Error> {
        lock(&self.root.join("lock"), FlockArg::LockShared, self.limits.lock_wait)
    }

    pub fn lock_exclusive(&self) -> Result<Lock, Error> {
        lock(&self.root.join("lock"), FlockArg::LockExclusive, self.limits.lock_wait)
    }

    /// Charges `n` bytes about to be written for a new blob against the quota.
    pub(crate) fn charge(&self, n: u64, what: &str) -> Result<(), Error> {
        self.budget.as_ref().map_or(Ok(()), |b| b.charge(n, what))
    }

    /// Gives back what was charged for bytes that took no space after all (a blob already there).
    pub(crate) fn refund(&self, n: u64) {
        if let Some(b) = &self.budget {
            b.refund(n);
        }
    }

    /// Makes sure blob `digest` is in the store, fetching it with `fetch(offset)` if not.
    /// Returns the bytes transferred (0 if it was there). One process downloads a blob at a
    /// time; a second waits for it and then finds the blob there. An interrupted download is
    /// resumed from its partial file; a digest mismatch removes the partial file. The body is
    /// cut at `size` when the source announces one.
    ///
    /// Long because the lock, the resume, the fetch and the verify-then-publish sequence are one
    /// protocol whose order is the store's invariant (see the top of this file).
    pub fn ensure_blob(
        &self,
        digest: &Digest,
        size: Option<u64>,
        what: &str,
        fetch: &mut dyn FnMut(u64) -> Result<Body, Error>,
        progress: &mut Progress<'_>,
    ) -> Result<u64, Error> {
        if self.has_blob(digest) {
            return Ok(0);
        }
        let tmp = self.root.join("tmp");
        // Another pull downloading this blob holds it for at most one transfer.
        let wait = self.limits.lock_wait.max(self.limits.deadline);
        let _lock = lock(&tmp.join(format!("{}.lock", digest.hex())), FlockArg::LockExclusive, wait)?;
        if self.has_blob(digest) {
            return Ok(0);
        }
        let partial = tmp.join(format!("{}.partial", digest.hex()));
        let mut transferred = 0u64;
        // A resumed download that fails its digest is tried once more from byte 0: the partial
        // file may predate a power loss.
        for attempt in 0..2 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(FILE_MODE)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&partial)
                .map_err(io_err(&partial))?;
            let mut have = file.metadata().map_err(io_err(&partial))?.len();
            if size.is_some_and(|s| have > s) {
                have = 0;
            }
            let mut hasher = Sha256::new();
            if have > 0 {
                // Hash what is already there.
                file.seek(SeekFrom::Start(0)).map_err(io_err(&partial))?;
                let mut head = (&mut file).take(have);
                io::copy(&mut head, &mut HashWriter(&mut hasher)).map_err(io_err(&partial))?;
            }
            let complete = size.is_some_and(|s| s == have && have > 0);
            if !complete {
                progress(Event::BlobStart { digest: digest.clone(), size, offset: have });
                let body = fetch(have)?;
                let (mut reader, start) = match body {
                    Body::Resumed(r) => (r, have),
                    Body::Whole(r) => {
                        hasher = Sha256::new();
                        (r, 0)
                    }
                };
                file.set_len(start).map_err(io_err(&partial))?;
                file.seek(SeekFrom::Start(start)).map_err(io_err(&partial))?;
                let syncer = file.try_clone().map_err(io_err(&partial))?;
                let mut copier = Copier {
                    store: self,
                    progress,
                    digest: Some(digest),
                    total: size,
                    what,
                    early_sync: Some(&syncer),
                };
                let copied = copier.copy(&mut reader, &mut file, &mut hasher, start);
                transferred += match copied {
                    Ok(n) => n,
                    Err(e) => {
                        // What arrived stays in the partial file for the next try.
                        let _ = file.sync_data();
                        return Err(e);
                    }
                };
            }
            let actual = Digest::from_hasher(hasher);
            let len = file.metadata().map_err(io_err(&partial))?.len();
            if &actual != digest || size.is_some_and(|s| s != len) {
                drop(file);
                let _ = fs::remove_file(&partial);
                self.refund(len);
                if have > 0 && attempt == 0 {
                    continue;
                }
                return Err(Error::Mismatch { what: what.to_owned(), expected: digest.clone(), actual, size: len });
            }
            file.sync_all().map_err(io_err(&partial))?;
            fs::set_permissions(&partial, fs::Permissions::from_mode(FILE_MODE)).map_err(io_err(&partial))?;
            let blob = self.blob_path(digest);
            fs::rename(&partial, &blob).map_err(io_err(&blob))?;
            sync_dir(&self.root.join("blobs/sha256"))?;
            progress(Event::BlobDone { digest: digest.clone(), transferred });
            return Ok(transferred);
        }
        Err(Error::Invalid(format!("{what}: could not download {digest}")))
    }

    /// Stores data whose digest is known only once read (an archive member, a local file, a
    /// small Hub file): written to a temporary file, hashed, fsynced, renamed into `blobs/`.
    /// At most `size` bytes are read when it is given, and fewer fail.
    pub fn put_reader(&self, reader: &mut dyn Read, what: &str, size: Option<u64>) -> Result<(Digest, u64), Error> {
        let staged = self.stage(reader, what, size)?;
        self.commit(std::slice::from_ref(&staged), true)?;
        Ok((staged.digest, staged.size))
    }

    /// The first half of [`Store::put_reader`]: the data written to a file of `tmp/`, hashed,
    /// not yet synced nor visible. Many staged files are made durable at once by
    /// [`Store::commit`] (one syncfs(2), not one fsync per file).
    pub(crate) fn stage(&self, reader: &mut dyn Read, what: &str, size: Option<u64>) -> Result<Staged, Error> {
        let tmp = self.root.join("tmp").join(format!("put-{}-{}", std::process::id(), unique()));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        let mut hasher = Sha256::new();
        let mut quiet = |_: Event| {};
        let mut copier =
            Copier { store: self, progress: &mut quiet, digest: None, total: size, what, early_sync: None };
        let copied = copier.copy(reader, &mut file, &mut hasher, 0);
        let result = copied.and_then(|n| match size {
            Some(s) if s != n => {
                Err(Error::Fetch { url: what.to_owned(), message: format!("received {n} bytes of {s}") })
            }
            _ => Ok(n),
        });
        match result {
            Ok(n) => Ok(Staged { digest: Digest::from_hasher(hasher), size: n, path: tmp }),
            Err(e) => {
                let written = file.metadata().map_or(0, |m| m.len());
                drop(file);
                let _ = fs::remove_file(&tmp);
                self.refund(written);
                Err(e)
            }
        }
    }

    /// Makes staged files blobs: synced (each file, or the whole file system once when `each`
    /// is false), then renamed into `blobs/` (a blob already there keeps its file).
    pub(crate) fn commit(&self, staged: &[Staged], each: bool) -> Result<(), Error> {
        if staged.is_empty() {
            return Ok(());
        }
        if !each {
            let tmp = self.root.join("tmp");
            let dir = File::open(&tmp).map_err(io_err(&tmp))?;
            nix::unistd::syncfs(&dir).map_err(|e| io_err(&tmp)(e.into()))?;
        }
        for s in staged {
            let blob = self.blob_path(&s.digest);
            if blob.is_file() {
                let _ = fs::remove_file(&s.path);
                self.refund(s.size);
                continue;
            }
            if each {
                File::open(&s.path).and_then(|f| f.sync_all()).map_err(io_err(&s.path))?;
            }
            fs::set_permissions(&s.path, fs::Permissions::from_mode(FILE_MODE)).map_err(io_err(&s.path))?;
            fs::rename(&s.path, &blob).map_err(io_err(&blob))?;
        }
        sync_dir(&self.root.join("blobs/sha256"))
    }

    /// Drops staged files that will not be committed.
    pub(crate) fn discard(&self, staged: &[Staged]) {
        for s in staged {
            let _ = fs::remove_file(&s.path);
            self.refund(s.size);
        }
    }

    /// Builds (or finds) the tree of `files` and returns its id. Paths are checked again here;
    /// two files at one path, or a file where a directory must be, fail.
    ///
    /// Long because the checks, the hard links and the publish of the tree form one protocol,
    /// like [`Store::ensure_blob`].
    pub fn build_tree(&self, files: &[TreeFile]) -> Result<Digest, Error> {
        let mut files = files.to_vec();
        files.sort();
        let mut seen: BTreeMap<&str, &Digest> = BTreeMap::new();
        for f in &files {
            check_relative(&f.path).map_err(Error::Invalid)?;
            if seen.insert(&f.path, &f.digest).is_some() {
                return Err(Error::Invalid(format!("two files are named `{}`", f.path)));
            }
        }
        for f in &files {
            // A file may not also be a directory of another.
            let mut prefix = String::new();
            for component in f.path.split('/') {
                if !prefix.is_empty() && seen.contains_key(prefix.as_str()) {
                    return Err(Error::Invalid(format!("`{prefix}` is both a file and a directory (of `{}`)", f.path)));
                }
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(component);
            }
        }
        let listing: String = files.iter().map(|f| format!("{} {} {}\n", f.digest.hex(), f.size, f.path)).collect();
        let id = Digest::of(listing.as_bytes());
        let trees = self.root.join("trees");
        let final_dir = self.tree_path(&id);
        let meta = trees.join(format!("{}.json", id.hex()));
        let record = TreeRecord { files: files.clone() };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| Error::Invalid(e.to_string()))?;
        write_atomic(&meta, &json)?;
        if final_dir.is_dir() {
            return Ok(id);
        }
        let tmp = trees.join(format!(".tmp-{}-{}", std::process::id(), unique()));
        make_dir(&tmp)?;
        let built = (|| {
            // A file system limits the links to one inode (ext4: 65,000): past it, a copy of
            // the blob in the tree takes the next links.
            let mut link_from: HashMap<&Digest, PathBuf> = HashMap::new();
            let mut copies = Vec::new();
            let mut made: BTreeSet<PathBuf> = BTreeSet::new();
            for f in &files {
                let target = tmp.join(&f.path);
                if let Some(parent) = target.parent() {
                    if !made.contains(parent) {
                        make_dir(parent)?;
                        made.insert(parent.to_path_buf());
                    }
                }
                let from = link_from.get(&f.digest).cloned().unwrap_or_else(|| self.blob_path(&f.digest));
                match fs::hard_link(&from, &target) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(nix::libc::EMLINK) => {
                        fs::copy(&from, &target).map_err(io_err(&target))?;
                        fs::set_permissions(&target, fs::Permissions::from_mode(FILE_MODE)).map_err(io_err(&target))?;
                        copies.push(target.clone());
                        link_from.insert(&f.digest, target);
                    }
                    Err(e) => return Err(io_err(&from)(e)),
                }
            }
            // Copies are data, not only links: durable before the tree is visible.
            for copy in &copies {
                File::open(copy).and_then(|f| f.sync_all()).map_err(io_err(copy))?;
            }
            Ok(())
        })();
        if let Err(e) = built {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        match fs::rename(&tmp, &final_dir) {
            Ok(()) => sync_dir(&trees).map(|()| id),
            // Built meanwhile by another pull: same listing, same content.
            Err(_) if final_dir.is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(id)
            }
            Err(e) => Err(io_err(&final_dir)(e)),
        }
    }

    /// Points the ref of `source` at `tree`, atomically, and records where it came from.
    pub fn set_ref(
        &self,
        source: &Source,
        tree: &Digest,
        resolved: Option<String>,
        pin: bool,
    ) -> Result<SourceRecord, Error> {
        let files = self.tree(tree)?.files;
        let previous = self.record(source).ok().flatten();
        let record = SourceRecord {
            source: source.canonical(),
            tree: tree.clone(),
            resolved,
            pulled: now(),
            pinned: pin || previous.is_some_and(|p| p.pinned),
            files: files.len(),
            size: files.iter().try_fold(0u64, |sum, f| sum.checked_add(f.size)).unwrap_or(u64::MAX),
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| Error::Invalid(e.to_string()))?;
        write_atomic(&self.record_path(source), &json)?;
        let refs = self.root.join("refs");
        let link = self.ref_path(source);
        let tmp = refs.join(format!(".{}.{}.tmp", source.ref_name(), std::process::id()));
        let _ = fs::remove_file(&tmp);
        symlink(Path::new("../trees").join(tree.hex()), &tmp).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &link).map_err(io_err(&link))?;
        sync_dir(&refs)?;
        Ok(record)
    }

    pub fn tree(&self, tree: &Digest) -> Result<TreeRecord, Error> {
        let meta = self.root.join("trees").join(format!("{}.json", tree.hex()));
        let text = fs::read(&meta).map_err(io_err(&meta))?;
        serde_json::from_slice(&text).map_err(|e| Error::Invalid(format!("{}: {e}", meta.display())))
    }

    /// The record of `source`, if it was pulled and its tree is complete.
    pub fn record(&self, source: &Source) -> Result<Option<SourceRecord>, Error> {
        let path = self.record_path(source);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let record: SourceRecord =
            serde_json::from_slice(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let present = self.tree_path(&record.tree).is_dir() && self.ref_path(source).is_dir();
        Ok(present.then_some(record))
    }

    /// Every pulled source, sorted by source.
    pub fn list(&self) -> Result<Vec<SourceRecord>, Error> {
        let dir = self.root.join("sources");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let path = entry.path();
            let text = fs::read(&path).map_err(io_err(&path))?;
            match serde_json::from_slice::<SourceRecord>(&text) {
                Ok(r) => out.push(r),
                Err(e) => return Err(Error::Invalid(format!("{}: {e}", path.display()))),
            }
        }
        out.sort_by(|a, b| a.source.cmp(&b.source));
        Ok(out)
    }

    /// Forgets `source`: its ref and record (and its pin). Its files go at the next `gc`.
    pub fn remove(&self, source: &Source) -> Result<bool, Error> {
        let _lock = self.lock_exclusive()?;
        let record = self.record_path(source);
        let existed = record.exists();
        for path in [self.ref_path(source), record] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ok(existed)
    }

    /// Removes what neither `keep` (the canonical sources services name) nor a pin holds: refs,
    /// then trees no ref points at, then blobs no tree holds, then partial downloads.
    pub fn gc(&self, keep: &BTreeSet<String>) -> Result<GcReport, Error> {
        let _lock = self.lock_exclusive()?;
        let mut report = GcReport::default();
        let mut live_trees = BTreeSet::new();
        for record in self.list()? {
            let source = Source::parse(&record.source, None).map_err(Error::Invalid)?;
            if record.pinned || keep.contains(&record.source) {
                live_trees.insert(record.tree.hex().to_owned());
            } else {
                for path in [self.ref_path(&source), self.record_path(&source)] {
                    let _ = fs::remove_file(&path);
                }
                report.refs.push(record.source);
            }
        }
        let mut live_blobs = BTreeSet::new();
        let trees = self.root.join("trees");
        for entry in fs::read_dir(&trees).map_err(io_err(&trees))? {
            let entry = entry.map_err(io_err(&trees))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".json").unwrap_or(&name);
            if live_trees.contains(id) {
                if name.ends_with(".json") {
                    let digest = Digest::parse(&format!("sha256:{id}")).map_err(Error::Invalid)?;
                    live_blobs.extend(self.tree(&digest)?.files.into_iter().map(|f| f.digest.hex().to_owned()));
                }
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                fs::remove_dir_all(&path).map_err(io_err(&path))?;
                if !name.starts_with('.') {
                    report.trees += 1;
                }
            } else {
                fs::remove_file(&path).map_err(io_err(&path))?;
            }
        }
        let blobs = self.root.join("blobs/sha256");
        for entry in fs::read_dir(&blobs).map_err(io_err(&blobs))? {
            let entry = entry.map_err(io_err(&blobs))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if live_blobs.contains(&name) {
                continue;
            }
            let path = entry.path();
            report.bytes += entry.metadata().map_or(0, |m| m.len());
            fs::remove_file(&path).map_err(io_err(&path))?;
            report.blobs += 1;
        }
        // No pull runs while the exclusive lock is held: whatever is in tmp/ is left over.
        let tmp = self.root.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(io_err(&tmp))? {
            let entry = entry.map_err(io_err(&tmp))?;
            if entry.file_name().to_string_lossy().ends_with(".partial") {
                report.partials += 1;
            }
            let _ = fs::remove_file(entry.path());
        }
        for dir in [&blobs, &trees, &tmp] {
            sync_dir(dir)?;
        }
        Ok(report)
    }

    /// Bytes in `blobs/` (what the store takes on disk; trees are hard links).
    pub fn usage(&self) -> Result<u64, Error> {
        let blobs = self.root.join("blobs/sha256");
        let mut total = 0;
        for entry in fs::read_dir(&blobs).map_err(io_err(&blobs))? {
            total += entry.map_err(io_err(&blobs))?.metadata().map_or(0, |m| m.len());
        }
        Ok(total)
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A number unique within this process, for temporary names.
pub(crate) fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() as u64);
    (NEXT.fetch_add(1, Ordering::Relaxed) << 32) ^ nanos
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn quiet() -> impl FnMut(Event) {
        |_| {}
    }

    #[test]
    fn a_blob_becomes_visible_only_verified() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let data = b"weights".to_vec();
        let digest = Digest::of(&data);
        let wrong = Digest::of(b"other");
        let mut p = quiet();
        let mut fetch = |_| Ok(Body::Whole(Box::new(Cursor::new(data.clone())) as Reader));
        let err = store.ensure_blob(&wrong, None, "test", &mut fetch, &mut p).expect_err("mismatch");
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        assert!(!store.has_blob(&wrong));
        assert_eq!(
            fs::read_dir(dir.path().join("tmp"))
                .expect("tmp")
                .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".partial")))
                .count(),
            0
        );
        assert_eq!(store.ensure_blob(&digest, Some(7), "test", &mut fetch, &mut p).expect("pull"), 7);
        assert_eq!(store.ensure_blob(&digest, Some(7), "test", &mut fetch, &mut p).expect("again"), 0);
        let mode = fs::metadata(store.blob_path(&digest)).expect("blob").permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn a_partial_download_resumes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let digest = Digest::of(&data);
        fs::write(dir.path().join("tmp").join(format!("{}.partial", digest.hex())), &data[..60_000]).expect("partial");
        let tail = data[60_000..].to_vec();
        let mut asked = None;
        let mut fetch = |offset| {
            asked = Some(offset);
            Ok(Body::Resumed(Box::new(Cursor::new(tail.clone())) as Reader))
        };
        let mut p = quiet();
        assert_eq!(store.ensure_blob(&digest, Some(100_000), "test", &mut fetch, &mut p).expect("resume"), 40_000);
        assert_eq!(asked, Some(60_000));
        assert_eq!(fs::read(store.blob_path(&digest)).expect("blob"), data);
    }

    #[test]
    fn trees_refuse_conflicts_and_gc_keeps_what_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let (a, na) = store.put_reader(&mut Cursor::new(b"a".to_vec()), "a", None).expect("a");
        let (b, nb) = store.put_reader(&mut Cursor::new(b"b".to_vec()), "b", None).expect("b");
        let f = |path: &str, digest: &Digest, size| TreeFile { path: path.into(), digest: digest.clone(), size };
        assert!(store.build_tree(&[f("x", &a, na), f("x/y", &b, nb)]).is_err());
        assert!(store.build_tree(&[f("../x", &a, na)]).is_err());
        let t1 = store.build_tree(&[f("m/a.bin", &a, na)]).expect("tree");
        let t2 = store.build_tree(&[f("b.bin", &b, nb)]).expect("tree");
        assert_eq!(fs::read(store.tree_path(&t1).join("m/a.bin")).expect("linked"), b"a");
        let s1 = Source::parse("file:///one", None).expect("source");
        let s2 = Source::parse("file:///two", None).expect("source");
        store.set_ref(&s1, &t1, None, false).expect("ref");
        store.set_ref(&s2, &t2, None, false).expect("ref");
        assert_eq!(fs::read(store.ref_path(&s1).join("m/a.bin")).expect("via ref"), b"a");
        let report = store.gc(&BTreeSet::from([s1.canonical()])).expect("gc");
        assert_eq!(report.refs, vec![s2.canonical()]);
        assert_eq!((report.trees, report.blobs), (1, 1));
        assert!(store.has_blob(&a) && !store.has_blob(&b));
        assert!(store.record(&s1).expect("record").is_some());
    }
}
