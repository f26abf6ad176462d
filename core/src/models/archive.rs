//! Unpacking tar layers into blobs: every regular file becomes a blob and a [`TreeFile`];
//! directories are implied by paths; links, devices and other entries are not model files and
//! are left out (a symbolic link could point anywhere). Entry paths are checked like annotations.

use std::io::Read;

use super::paths::check_archive_entry;
use super::{Compression, Digest, Error, Store, TreeFile};

pub(crate) fn extract(
    store: &Store,
    digest: &Digest,
    compression: Compression,
    whiteouts: bool,
    files: &mut Vec<TreeFile>,
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
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("reading the archive: {e}")))?;
        let raw = entry.path_bytes();
        let name = std::str::from_utf8(&raw).map_err(|_| bad("an entry's path is not UTF-8".into()))?.to_owned();
        let Some(rel) = check_archive_entry(&name).map_err(|why| bad(format!("entry {why}")))? else { continue };
        let kind = entry.header().entry_type();
        if whiteouts {
            let (dir, base) = rel.rsplit_once('/').map_or(("", rel.as_str()), |(d, b)| (d, b));
            if base == ".wh..wh..opq" {
                let prefix = format!("{dir}/");
                files.retain(|f| !(dir.is_empty() || f.path.starts_with(&prefix)));
                continue;
            }
            if let Some(hidden) = base.strip_prefix(".wh.") {
                let gone = if dir.is_empty() { hidden.to_owned() } else { format!("{dir}/{hidden}") };
                let prefix = format!("{gone}/");
                files.retain(|f| f.path != gone && !f.path.starts_with(&prefix));
                continue;
            }
        }
        if kind.is_file() {
            let (blob, size) = store.put_reader(&mut entry, &format!("{what}: {rel}"))?;
            // A later layer's file replaces an earlier one.
            files.retain(|f| f.path != rel);
            files.push(TreeFile { path: rel, digest: blob, size });
        } else if kind.is_hard_link() {
            let target = entry.link_name_bytes().map(|t| String::from_utf8_lossy(&t).into_owned()).unwrap_or_default();
            let Some(target) = check_archive_entry(&target).map_err(|why| bad(format!("hard link {rel}: {why}")))?
            else {
                continue;
            };
            if let Some(f) = files.iter().find(|f| f.path == target).cloned() {
                files.retain(|f| f.path != rel);
                files.push(TreeFile { path: rel, ..f });
            }
        }
        // Directories are implied; symlinks, devices and FIFOs are skipped.
    }
    Ok(())
}
