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

use std::collections::{BTreeMap, HashMap, HashSet};
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
    /// Blobs found in the store already.
    present: HashSet<Digest>,
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

/// Unpacks the archive blob `digest` as the next layer of `layers`. Long because it is one match
/// over the entry types, kept whole so that every type's fate is visible in one place.
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
    if layers.staged.contains_key(&digest) || layers.present.contains(&digest) {
        return Ok((digest, size));
    }
    if store.has_blob(&digest) {
        layers.present.insert(digest.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A tar entry with raw control over its type and header.
    fn header(path: &str, kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).expect("path");
        h.set_size(size);
        h.set_mode(0o644);
        h.set_entry_type(kind);
        h.set_cksum();
        h
    }

    fn tar(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            b.append(&header(path, *kind, data.len() as u64), *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    fn file<'a>(path: &'a str, data: &'static [u8]) -> (&'a str, tar::EntryType, &'static [u8]) {
        (path, tar::EntryType::Regular, data)
    }

    /// Unpacks `layers` (tar archives, image semantics) and returns path -> content.
    fn unpack(layers: &[Vec<u8>]) -> Result<BTreeMap<String, Vec<u8>>, Error> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let mut state = Layers::default();
        for layer in layers {
            let (digest, _) = store.put_reader(&mut Cursor::new(layer.clone()), "test", None).expect("blob");
            state.next_layer();
            extract(&store, &digest, Compression::None, true, &mut state)?;
        }
        store.commit(&state.staged_files, false)?;
        Ok(state
            .into_files()
            .into_iter()
            .map(|f| {
                let data = std::fs::read(store.blob_path(&f.digest)).expect("blob");
                assert_eq!(data.len() as u64, f.size);
                (f.path, data)
            })
            .collect())
    }

    fn paths(files: &BTreeMap<String, Vec<u8>>) -> Vec<&str> {
        files.keys().map(String::as_str).collect()
    }

    #[test]
    fn contiguous_entries_are_files() {
        let files = unpack(&[tar(&[("m.bin", tar::EntryType::Continuous, b"contiguous")])]).expect("unpack");
        assert_eq!(files["m.bin"], b"contiguous");
    }

    #[test]
    fn gnu_sparse_entries_are_unpacked_with_their_holes() {
        // A block starting "hello" at 0 and "world" at 1 MiB: 517 bytes stored, 1 MiB + 5 real.
        let mut stored = b"hello".to_vec();
        stored.resize(512, 0);
        stored.extend_from_slice(b"world");
        let mut h = header("sparse.bin", tar::EntryType::GNUSparse, stored.len() as u64);
        let octal = |field: &mut [u8], n: u64| {
            let text = format!("{n:0width$o}\0", width = field.len() - 1);
            field.copy_from_slice(text.as_bytes());
        };
        {
            let gnu = h.as_gnu_mut().expect("gnu");
            octal(&mut gnu.sparse[0].offset, 0);
            octal(&mut gnu.sparse[0].numbytes, 512);
            octal(&mut gnu.sparse[1].offset, 1 << 20);
            octal(&mut gnu.sparse[1].numbytes, 5);
            octal(&mut gnu.realsize, (1 << 20) + 5);
        }
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &stored[..]).expect("append");
        let files = unpack(&[b.into_inner().expect("tar")]).expect("unpack");
        let data = &files["sparse.bin"];
        assert_eq!(data.len(), (1 << 20) + 5);
        assert_eq!(&data[..5], b"hello");
        assert!(data[5..1 << 20].iter().all(|b| *b == 0));
        assert_eq!(&data[1 << 20..], b"world");
    }

    #[test]
    fn pax_sparse_entries_are_refused_not_misread() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("GNU.sparse.major", &b"1"[..]),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", b"m.bin"),
        ])
        .expect("pax");
        let data = b"1\n0\n5\nhello";
        b.append(&header("GNUSparseFile.0/m.bin", tar::EntryType::Regular, data.len() as u64), &data[..])
            .expect("append");
        let err = unpack(&[b.into_inner().expect("tar")]).expect_err("refused");
        assert!(err.to_string().contains("sparse file in the PAX format"), "{err}");
    }

    #[test]
    fn unknown_entry_types_are_refused() {
        let err = unpack(&[tar(&[("vol", tar::EntryType::new(b'V'), b"")])]).expect_err("refused");
        assert!(err.to_string().contains("`V`"), "{err}");
    }

    #[test]
    fn an_opaque_whiteout_hides_lower_layers_only() {
        let lower = tar(&[file("d/old", b"old"), file("keep", b"k")]);
        // The new file comes before the opaque marker in its own layer.
        let upper = tar(&[file("d/new", b"new"), file("d/.wh..wh..opq", b"")]);
        let files = unpack(&[lower, upper]).expect("unpack");
        assert_eq!(paths(&files), ["d/new", "keep"]);
        // A whiteout of a name its own layer gives hides only the lower one.
        let lower = tar(&[file("x", b"lower")]);
        let upper = tar(&[file("x", b"upper"), file(".wh.x", b"")]);
        let files = unpack(&[lower, upper]).expect("unpack");
        assert_eq!(files["x"], b"upper");
    }

    #[test]
    fn a_path_given_by_two_layers_is_the_upper_ones_in_either_order() {
        let as_file = tar(&[file("a", b"file")]);
        let as_dir = tar(&[("a/", tar::EntryType::Directory, b""), file("a/b", b"in dir")]);
        let files = unpack(&[as_file.clone(), as_dir.clone()]).expect("file then directory");
        assert_eq!(paths(&files), ["a/b"]);
        let files = unpack(&[as_dir, as_file]).expect("directory then file");
        assert_eq!(paths(&files), ["a"]);
        // A bare directory entry replaces a lower file, and a link replaces it too.
        let files = unpack(&[tar(&[file("c", b"1"), file("l", b"2")]), {
            let mut b = tar::Builder::new(Vec::new());
            b.append(&header("c/", tar::EntryType::Directory, 0), &b""[..]).expect("dir");
            let mut link = header("l", tar::EntryType::Symlink, 0);
            link.set_link_name("/etc/passwd").expect("link");
            link.set_cksum();
            b.append(&link, &b""[..]).expect("link");
            b.into_inner().expect("tar")
        }])
        .expect("unpack");
        assert!(paths(&files).is_empty(), "{:?}", paths(&files));
    }

    /// 100,000 entries of one empty file: linear (a quadratic unpack takes minutes here), and
    /// past ext4's 65,000 links per inode.
    #[test]
    fn many_identical_files_unpack_quickly_and_past_the_link_limit() {
        const N: usize = 100_000;
        let mut b = tar::Builder::new(Vec::new());
        for i in 0..N {
            b.append(&header(&format!("d{}/f{i}", i % 100), tar::EntryType::Regular, 0), &b""[..]).expect("append");
        }
        let archive = b.into_inner().expect("tar");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let (digest, _) = store.put_reader(&mut Cursor::new(archive), "test", None).expect("blob");
        let started = std::time::Instant::now();
        let mut state = Layers::default();
        state.next_layer();
        extract(&store, &digest, Compression::None, true, &mut state).expect("extract");
        store.commit(&state.staged_files, false).expect("commit");
        let files = state.into_files();
        assert_eq!(files.len(), N);
        let unpacked = started.elapsed();
        let tree = store.build_tree(&files).expect("tree");
        eprintln!("{N} entries: unpacked in {unpacked:?}, tree built in {:?}", started.elapsed() - unpacked);
        let one = store.tree_path(&tree).join("d7/f99907");
        assert_eq!(std::fs::metadata(one).expect("file").len(), 0);
    }
}
