//! File operations that must not leave anything half-done: shared by the model store and the
//! GPU claims file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// Writes `data` to `path` so that readers see the old file or the new one, and the new one
/// survives a crash: a temporary file in the same directory, fsynced, given `mode`, renamed over
/// `path`, then the directory fsynced.
pub fn write_durable(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
    f.write_all(data).and_then(|()| f.sync_all())?;
    // The umask may have taken bits off `mode`.
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path)?;
    File::open(dir).and_then(|d| d.sync_all())
}

/// Takes a flock(2) on `path` (created with `mode` if missing), held until the result is dropped.
pub fn lock(path: &Path, arg: FlockArg, mode: u32) -> io::Result<Flock<File>> {
    let f = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(mode).open(path)?;
    Flock::lock(f, arg).map_err(|(_, errno)| io::Error::from(errno))
}
