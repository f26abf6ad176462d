//! Unpacking tar layers into blobs: every regular file becomes a blob and a [`TreeFile`];
//! directories are implied by paths; links, devices and other entries are not model files and
//! are left out (a symbolic link could point anywhere). Entry paths are checked like annotations.
//!
//! Layers stack as OCI image layers do, the upper one winning whatever the order of the entries:
//! a file replaces a directory at its path (and what was under it), a directory or any other
//! entry replaces a file; `.wh.NAME` and the opaque `.wh..wh..opq` hide what lower layers gave,
//! never what their own layer gives. Every step is a map operation on the path, so a layer of a
//! million entries unpacks in time proportional to its size.
//!
//! Files are staged in `tmp/` without one fsync each and made durable together (one syncfs(2))
//! before any becomes a blob, so "durable before visible" holds at the cost of one sync. Small
//! entries are hashed in memory first: a tree of many identical files writes one.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;

use super::paths::check_archive_entry;
use super::store::Staged;
use super::{Compression, Digest, Error, Store, TreeFile};

/// Entries up to this size are read into memory and hashed before anything is written.
const SMALL: u64 = 64 << 10;

/// The files of a tree being assembled from layers, each with the layer that gave it.
#[derive(Debug, Default)]
pub(crate) struct Layers {
    files: BTreeMap<String, (TreeFile, usize)>,
    /// The layer being added.
    layer: usize,
    /// Blobs staged by this pull, by digest (for files that occur more than once).
    staged: HashMap<Digest, usize>,
    pub staged_files: Vec<Staged>,
}

/// The keys of `map` strictly under directory `dir` ("" is the root).
fn under<'a, V>(map: &'a BTreeMap<String, V>, dir: &str) -> impl Iterator<Item = (&'a String, &'a V)> + 'a {
    let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
    map.range(prefix.clone()..).take_while(move |(k, _)| k.starts_with(&prefix))
}

impl Layers {
    /// The next layer starts: whiteouts in it hide what came before it.
    pub fn next_layer(&mut self) {
        self.layer += 1;
    }

    /// Removes the files at the directories above `path` (they become directories).
    fn clear_parents(&mut self, path: &str) {
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i;
            self.files.remove(&path[..end]);
            end += 1;
        }
    }

    /// Removes `path` and what is under it, from layers below `below` only (or all).
    fn remove_tree(&mut self, path: &str, below: Option<usize>) {
        let lower = |layer: usize| below.is_none_or(|b| layer < b);
        if self.files.get(path).is_some_and(|(_, l)| lower(*l)) {
            self.files.remove(path);
        }
        let gone: Vec<String> =
            under(&self.files, path).filter(|(_, (_, l))| lower(*l)).map(|(k, _)| k.clone()).collect();
        for k in gone {
            self.files.remove(&k);
        }
    }

    /// A file of the current layer at `file.path`.
    pub fn add_file(&mut self, file: TreeFile) {
        self.clear_parents(&file.path);
        self.remove_tree(&file.path, None);
        let path = file.path.clone();
        self.files.insert(path, (file, self.layer));
    }

    /// A directory, or an entry that is kept as nothing (a link, a device): replaces a file at
    /// that path; a directory keeps what is under it.
    fn add_other(&mut self, path: &str, directory: bool) {
        self.clear_parents(path);
        if directory {
            self.files.remove(path);
        } else {
            self.remove_tree(path, None);
        }
    }

    pub fn into_files(self) -> Vec<TreeFile> {
        self.files.into_values().map(|(f, _)| f).collect()
    }
}

pub(crate) fn extract(
    store: &Store,
    digest: &Digest,
    compression: Compression,
    whiteouts: bool,
    layers: &mut Layers,
) -> Result<(), Error> {
    let path = store.blob_path(digest);
    let file = std::fs::File::open(&path).map_err(|e| Error::Io { path: path.clone(), source: e })?;
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(std::io::BufReader::with_capacity(1 << 20, file)),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(std::io::BufReader::with_capacity(1 << 20, file))),
    };
    let what = format!("layer {digest}");
    let bad = |why: String| Error::Invalid(format!("{what}: {why}"));
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| bad(format!("not a tar archive: {e}")))?;
    let mut small = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("reading the archive: {e}")))?;
        let raw = entry.path_bytes();
        let name = std::str::from_utf8(&raw).map_err(|_| bad("an entry's path is not UTF-8".into()))?.to_owned();
        let Some(rel) = check_archive_entry(&name).map_err(|why| bad(format!("entry {why}")))? else { continue };
        let kind = entry.header().entry_type();
        if whiteouts {
            let (dir, base) = rel.rsplit_once('/').map_or(("", rel.as_str()), |(d, b)| (d, b));
            if base == ".wh..wh..opq" {
                let lower: Vec<String> =
                    under(&layers.files, dir).filter(|(_, (_, l))| *l < layers.layer).map(|(k, _)| k.clone()).collect();
                for k in lower {
                    layers.files.remove(&k);
                }
                continue;
            }
            if let Some(hidden) = base.strip_prefix(".wh.") {
                let gone = if dir.is_empty() { hidden.to_owned() } else { format!("{dir}/{hidden}") };
                let below = layers.layer;
                layers.remove_tree(&gone, Some(below));
                continue;
            }
        }
        if is_pax_sparse(&mut entry) {
            return Err(bad(format!(
                "entry {rel} is a sparse file in the PAX format (GNU tar --sparse --format=posix), which this version does not unpack; make the layer without --sparse"
            )));
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let size = entry.size();
                let where_ = format!("{what}: {rel}");
                let (blob, size) = stage(store, layers, &mut entry, &where_, size, &mut small)?;
                layers.add_file(TreeFile { path: rel, digest: blob, size });
            }
            tar::EntryType::Link => {
                let target =
                    entry.link_name_bytes().map(|t| String::from_utf8_lossy(&t).into_owned()).unwrap_or_default();
                let Some(target) =
                    check_archive_entry(&target).map_err(|why| bad(format!("hard link {rel}: {why}")))?
                else {
                    continue;
                };
                match layers.files.get(&target).map(|(f, _)| f.clone()) {
                    Some(f) => layers.add_file(TreeFile { path: rel, ..f }),
                    // A link to something that is no file of the tree (a link, a device).
                    None => layers.add_other(&rel, false),
                }
            }
            tar::EntryType::Directory => layers.add_other(&rel, true),
            // Metadata for the whole archive, no entry of its own.
            tar::EntryType::XGlobalHeader => {}
            tar::EntryType::Symlink | tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                layers.add_other(&rel, false)
            }
            other => {
                return Err(bad(format!(
                    "entry {rel} has the type `{}`, which this version does not unpack",
                    (other.as_byte() as char).escape_debug()
                )))
            }
        }
    }
    Ok(())
}

/// Whether the entry is a PAX-format sparse file (its data is a map followed by the data, which
/// read as a plain file would give wrong bytes).
fn is_pax_sparse<R: Read>(entry: &mut tar::Entry<'_, R>) -> bool {
    let Ok(Some(extensions)) = entry.pax_extensions() else { return false };
    extensions.flatten().any(|e| e.key().is_ok_and(|k| k.starts_with("GNU.sparse.")))
}

/// Stages one entry's data as a blob (or finds it there or staged already).
fn stage(
    store: &Store,
    layers: &mut Layers,
    reader: &mut dyn Read,
    what: &str,
    size: u64,
    buf: &mut Vec<u8>,
) -> Result<(Digest, u64), Error> {
    if size > SMALL {
        let staged = store.stage(reader, what, Some(size))?;
        if store.has_blob(&staged.digest) || layers.staged.contains_key(&staged.digest) {
            store.discard(std::slice::from_ref(&staged));
        } else {
            layers.staged.insert(staged.digest.clone(), layers.staged_files.len());
            layers.staged_files.push(staged.clone());
        }
        return Ok((staged.digest, staged.size));
    }
    buf.clear();
    reader.take(size).read_to_end(buf).map_err(|e| Error::Invalid(format!("{what}: reading the archive: {e}")))?;
    if buf.len() as u64 != size {
        return Err(Error::Invalid(format!("{what}: the archive ends inside the entry")));
    }
    let digest = Digest::of(buf);
    if store.has_blob(&digest) || layers.staged.contains_key(&digest) {
        return Ok((digest, size));
    }
    store.charge(size, what)?;
    let path = store.root().join("tmp").join(format!("entry-{}-{}", std::process::id(), super::store::unique()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&path)
        .and_then(|mut f| f.write_all(buf));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&path);
        store.refund(size);
        return Err(Error::Io { path, source: e });
    }
    layers.staged.insert(digest.clone(), layers.staged_files.len());
    layers.staged_files.push(Staged { digest: digest.clone(), size, path });
    Ok((digest, size))
}
