//! Reading an unpacked image without trusting it.
//!
//! Every path is resolved by the kernel inside the image's directory (`openat2` with
//! `RESOLVE_IN_ROOT`): an absolute link or `..` in the image ends at the image's own root, as it
//! would inside the container, never on the host. A file is first opened with `O_PATH` (which
//! opens nothing: no FIFO blocks, no device acts), checked to be a regular file, and only then
//! reopened for reading through `/proc/self/fd`, so what is read is what was checked. Reads are
//! capped.

use std::fs::File;
use std::io::Read as _;
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use crate::diag::Diagnostic;

/// An image's root directory, open.
#[derive(Debug)]
pub struct RootFs {
    dir: OwnedFd,
    path: PathBuf,
}

/// What a directory entry is, without following it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Dir,
    File,
    Link,
    Other,
}

/// openat2 refuses flags that do not apply (EINVAL): with O_PATH only O_CLOEXEC may join it.
fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(Mode::empty())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

impl RootFs {
    pub fn open(path: &Path) -> Result<Self, Diagnostic> {
        let dir =
            File::open(path).map_err(|e| Diagnostic::file(path, format!("cannot open the root filesystem: {e}")))?;
        if !dir.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(Diagnostic::file(path, "is not a directory: a root filesystem must be one"));
        }
        Ok(RootFs { dir: dir.into(), path: path.to_owned() })
    }

    /// The host path of `rel` as it is named in messages (the image's root, then the path).
    pub fn shown(&self, rel: &str) -> PathBuf {
        self.path.join(rel.trim_start_matches('/'))
    }

    /// Reads the regular file `rel`, at most `cap` bytes: `Ok(None)` when there is nothing at
    /// that path; an error naming the file when it is not a regular file or is larger.
    pub fn read(&self, rel: &str, cap: u64) -> Result<Option<Vec<u8>>, Diagnostic> {
        let Some(file) = self.open_regular(rel)? else { return Ok(None) };
        let mut data = Vec::new();
        file.take(cap + 1).read_to_end(&mut data).map_err(|e| self.error(rel, format!("cannot read: {e}")))?;
        if data.len() as u64 > cap {
            return Err(self.error(rel, format!("is larger than {cap} bytes, the most read from this file: refused")));
        }
        Ok(Some(data))
    }

    /// Opens the regular file `rel` for reading (see the module's notes), or `Ok(None)`.
    pub fn open_regular(&self, rel: &str) -> Result<Option<File>, Diagnostic> {
        let path = match openat2(self.dir.as_fd(), rel, how(OFlag::O_PATH)) {
            Ok(fd) => File::from(fd),
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => return Ok(None),
            Err(e) => return Err(self.error(rel, format!("cannot open: {e}"))),
        };
        let meta = path.metadata().map_err(|e| self.error(rel, format!("cannot stat: {e}")))?;
        let ft = meta.file_type();
        if !ft.is_file() {
            let what = if ft.is_dir() {
                "a directory"
            } else if ft.is_fifo() {
                "a FIFO"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_char_device() || ft.is_block_device() {
                "a device"
            } else {
                "not a regular file"
            };
            return Err(self.error(rel, format!("is {what}, not a regular file: refused")));
        }
        let proc = format!("/proc/self/fd/{}", path.as_raw_fd());
        let file = File::open(&proc).map_err(|e| self.error(rel, format!("cannot reopen through {proc}: {e}")))?;
        Ok(Some(file))
    }

    /// Whether `rel` itself is a symbolic link (not followed): a search that starts at `bin`
    /// skips it where it is a link to `usr/bin`, which it walks anyway.
    pub fn is_link(&self, rel: &str) -> bool {
        openat2(self.dir.as_fd(), rel, how(OFlag::O_PATH | OFlag::O_NOFOLLOW))
            .ok()
            .and_then(|fd| File::from(fd).metadata().ok())
            .is_some_and(|m| m.file_type().is_symlink())
    }

    /// The entries of directory `rel` (sorted by name), or `Ok(None)` when there is none.
    pub fn list(&self, rel: &str) -> Result<Option<Vec<(String, Kind)>>, Diagnostic> {
        let fd = match openat2(self.dir.as_fd(), rel, how(OFlag::O_RDONLY | OFlag::O_DIRECTORY)) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => return Ok(None),
            Err(e) => return Err(self.error(rel, format!("cannot open the directory: {e}"))),
        };
        // A second descriptor of the same directory, for fstatat while the first is iterated.
        let at = fd.try_clone().map_err(|e| self.error(rel, format!("cannot list: {e}")))?;
        let mut dir = nix::dir::Dir::from_fd(fd).map_err(|e| self.error(rel, format!("cannot list: {e}")))?;
        let mut out = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| self.error(rel, format!("cannot list: {e}")))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            // Names that are not UTF-8 are no package's metadata: skipped.
            let Ok(name) = std::str::from_utf8(name) else { continue };
            use nix::dir::Type;
            let kind = match entry.file_type() {
                Some(Type::Directory) => Kind::Dir,
                Some(Type::File) => Kind::File,
                Some(Type::Symlink) => Kind::Link,
                Some(_) => Kind::Other,
                None => {
                    use nix::sys::stat::SFlag;
                    let st = nix::sys::stat::fstatat(at.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW);
                    match st.map(|s| SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT) {
                        Ok(t) if t == SFlag::S_IFDIR => Kind::Dir,
                        Ok(t) if t == SFlag::S_IFREG => Kind::File,
                        Ok(t) if t == SFlag::S_IFLNK => Kind::Link,
                        _ => Kind::Other,
                    }
                }
            };
            out.push((name.to_owned(), kind));
        }
        out.sort();
        Ok(Some(out))
    }

    pub fn error(&self, rel: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::file(self.shown(rel), message)
    }
}
