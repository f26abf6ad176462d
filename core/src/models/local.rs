//! `file://` sources: a file or a directory of this host, copied into the store.
//!
//! Nothing is followed and nothing is trusted between a check and a use: each entry's type is
//! read without following (fstatat, `AT_SYMLINK_NOFOLLOW`), then it is opened with `O_NOFOLLOW`
//! (and `O_NONBLOCK`, so a FIFO put there meanwhile cannot block) relative to its directory's
//! descriptor, and the opened descriptor must be the same inode of the same type. Symbolic
//! links, devices, FIFOs and sockets in a directory are left out.
//!
//! The cache is readable by every service account, so a file is copied in only if those
//! accounts could already read it where it is: the file readable by others, and every directory
//! from `/` down to it searchable by others.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};

use super::paths;
use super::store::Staged;
use super::{Error, Store, TreeFile};

const OPEN: OFlag =
    OFlag::O_RDONLY.union(OFlag::O_NOFOLLOW).union(OFlag::O_NONBLOCK).union(OFlag::O_CLOEXEC).union(OFlag::O_NOCTTY);

fn io(path: &Path, errno: Errno) -> Error {
    Error::Io { path: path.to_path_buf(), source: errno.into() }
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

fn same(a: &FileStat, b: &FileStat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino && kind(a) == kind(b)
}

/// Opens `name` in `dir` (or the absolute `name` when `dir` is none) without following, and
/// checks that what was opened is what `before` described.
fn open_checked(dir: Option<&OwnedFd>, name: &Path, shown: &Path, before: &FileStat) -> Result<OwnedFd, Error> {
    let fd = match dir {
        Some(d) => nix::fcntl::openat(d, name, OPEN, Mode::empty()),
        None => nix::fcntl::open(name, OPEN, Mode::empty()),
    }
    .map_err(|e| io(shown, e))?;
    let after = fstat(&fd).map_err(|e| io(shown, e))?;
    if !same(before, &after) {
        return Err(Error::Invalid(format!("{}: changed while it was being opened; not copied", shown.display())));
    }
    Ok(fd)
}

fn unreadable(path: &Path, what: &str, mode: u32) -> Error {
    Error::Invalid(format!(
        "{}: {what} (mode {:o}); the model cache would make it readable by every service account, so it is not copied",
        path.display(),
        mode & 0o7777
    ))
}

/// Every directory from `/` down to `path`'s parent must be searchable by others.
fn check_ancestors(path: &Path) -> Result<(), Error> {
    let mut dir = PathBuf::from("/");
    let parent = path.parent().unwrap_or(Path::new("/"));
    let mut components = parent.components().skip(1);
    loop {
        let st = nix::sys::stat::stat(&dir).map_err(|e| io(&dir, e))?;
        if st.st_mode & 0o001 == 0 {
            return Err(unreadable(
                &dir,
                &format!("a directory above {} that other accounts cannot search", path.display()),
                st.st_mode,
            ));
        }
        match components.next() {
            Some(c) => dir.push(c),
            None => return Ok(()),
        }
    }
}

/// Copies the file or directory at `path` into staged blobs; returns the tree's files (paths
/// relative to `path`, or the file's name) and what was staged.
pub(crate) fn copy_in(store: &Store, path: &str) -> Result<(Vec<TreeFile>, Vec<Staged>), Error> {
    let root = Path::new(path);
    let before = nix::sys::stat::lstat(root).map_err(|e| io(root, e))?;
    let mut out = Walk { store, files: Vec::new(), staged: Vec::new() };
    let result = (|| match kind(&before) {
        SFlag::S_IFREG | SFlag::S_IFDIR => {
            let fd = open_checked(None, root, root, &before)?;
            // Where the opened file really is (a link above it may point elsewhere).
            let real = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)))
                .unwrap_or_else(|_| root.to_path_buf());
            check_ancestors(&real)?;
            if kind(&before) == SFlag::S_IFREG {
                let name = root.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
                out.file(fd, root, &before, name)
            } else {
                out.dir(fd, root, &before, String::new())
            }
        }
        SFlag::S_IFLNK => {
            Err(Error::Invalid(format!("{path}: a symbolic link; name what it points to (links are not followed)")))
        }
        _ => Err(Error::Invalid(format!("{path}: neither a regular file nor a directory"))),
    })();
    match result {
        Ok(()) => Ok((out.files, out.staged)),
        Err(e) => {
            store.discard(&out.staged);
            Err(e)
        }
    }
}

struct Walk<'a> {
    store: &'a Store,
    files: Vec<TreeFile>,
    staged: Vec<Staged>,
}

impl Walk<'_> {
    fn file(&mut self, fd: OwnedFd, shown: &Path, st: &FileStat, rel: String) -> Result<(), Error> {
        if st.st_mode & 0o004 == 0 {
            return Err(unreadable(shown, "not readable by others", st.st_mode));
        }
        let rel = paths::check_relative(&rel).map_err(|why| Error::Invalid(format!("{}: {why}", shown.display())))?;
        let mut file = File::from(fd);
        let staged = self.store.stage(&mut file, &shown.display().to_string(), Some(st.st_size as u64))?;
        self.files.push(TreeFile { path: rel, digest: staged.digest.clone(), size: staged.size });
        self.staged.push(staged);
        Ok(())
    }

    fn dir(&mut self, fd: OwnedFd, shown: &Path, st: &FileStat, prefix: String) -> Result<(), Error> {
        if st.st_mode & 0o001 == 0 {
            return Err(unreadable(shown, "a directory other accounts cannot search", st.st_mode));
        }
        let listing = nix::dir::Dir::from_fd(fd.try_clone().map_err(|e| Error::Io { path: shown.into(), source: e })?)
            .map_err(|e| io(shown, e))?;
        let mut names = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|e| io(shown, e))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let Ok(name) = std::str::from_utf8(name) else {
                return Err(Error::Invalid(format!(
                    "{}/{}: the name is not UTF-8; model files need UTF-8 names",
                    shown.display(),
                    String::from_utf8_lossy(name).escape_debug()
                )));
            };
            names.push(name.to_owned());
        }
        names.sort();
        for name in names {
            let path = shown.join(&name);
            let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            let before = fstatat(fd.as_fd(), name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| io(&path, e))?;
            match kind(&before) {
                SFlag::S_IFREG => {
                    let child = open_checked(Some(&fd), Path::new(&name), &path, &before)?;
                    self.file(child, &path, &before, rel)?;
                }
                SFlag::S_IFDIR => {
                    let child = open_checked(Some(&fd), Path::new(&name), &path, &before)?;
                    self.dir(child, &path, &before, rel)?;
                }
                // Links are not followed; devices, FIFOs and sockets are no model files.
                _ => {}
            }
        }
        Ok(())
    }
}
