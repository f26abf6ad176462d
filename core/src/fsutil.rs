//! File operations that must not leave anything half-done (shared by the model store and the
//! GPU claims file), and the one way configuration files are read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use nix::fcntl::OFlag;

/// The most a service file, drop-in or Quadlet file may hold: 1 MiB, a thousand times what a
/// real one needs, and as much as systemd allows for one line of a unit.
pub const CONFIG_MAX: u64 = 1 << 20;

/// What a configuration file is, when it is not a regular file.
fn not_regular(kind: fs::FileType) -> Option<&'static str> {
    if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else {
        Some("not a regular file")
    }
}

/// Reads a configuration file (a service file, a drop-in, a Quadlet file) as UTF-8 text.
///
/// Links are followed: a service file may be a link to a regular file, as units may (a link
/// to `/dev/null` masks, and is recognised before anything is read). What is at the end must
/// be a regular file of at most [`CONFIG_MAX`] bytes: a FIFO, socket or device is refused
/// after a `stat` and never opened (opening one can block, at boot, or act on a device), and
/// the file is opened with `O_NONBLOCK | O_NOCTTY`, checked again with `fstat` on the opened
/// descriptor (it may have been swapped in between) and read no further than the cap. The
/// error is a sentence to follow the file name.
pub fn read_config(path: &Path) -> Result<String, String> {
    let refuse = |what: &str| {
        Err(format!(
            "is {what}, not a regular file: refused (a configuration file must be a regular file, or a link to one)"
        ))
    };
    let meta = fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if let Some(what) = not_regular(meta.file_type()) {
        return refuse(what);
    }
    let flags = (OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).bits();
    let file = OpenOptions::new().read(true).custom_flags(flags).open(path).map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if let Some(what) = not_regular(meta.file_type()) {
        return refuse(what);
    }
    let too_big =
        || format!("is larger than {CONFIG_MAX} bytes (1 MiB), the most a configuration file may hold: refused");
    if meta.len() > CONFIG_MAX {
        return Err(too_big());
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(CONFIG_MAX + 1).read_to_end(&mut data).map_err(|e| format!("cannot read: {e}"))?;
    if data.len() as u64 > CONFIG_MAX {
        return Err(too_big());
    }
    String::from_utf8(data).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(&e.as_bytes()[..at]);
        let line = text.bytes().filter(|&b| b == b'\n').count() + 1;
        format!(
            "is not UTF-8 text (TOML files must be): the first bad byte is on line {line}, byte {} of the file",
            at + 1
        )
    })
}

/// Reads a small file that root writes for another process (a record under `/run` or
/// `/var/lib`): `Ok(None)` when it is not there. No link is followed and nothing blocks: it must
/// be a regular file of at most `max` bytes, checked before it is opened and again on what was
/// opened. The error names the file.
pub fn read_record(path: &Path, max: u64) -> Result<Option<Vec<u8>>, String> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
    };
    if let Some(kind) = not_regular(meta.file_type()) {
        return Err(format!("{}: {kind}, not a regular file", path.display()));
    }
    let flags = OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let meta = file.metadata().map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    if !meta.file_type().is_file() || meta.len() > max {
        return Err(format!("{}: not a regular file of at most {max} bytes", path.display()));
    }
    let mut data = Vec::new();
    file.take(max + 1).read_to_end(&mut data).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    if data.len() as u64 > max {
        return Err(format!("{}: longer than {max} bytes", path.display()));
    }
    Ok(Some(data))
}

/// [`read_record`], parsed as JSON, of one service: `what` names the record in errors (`a
/// preflight record`), and a record whose `service_of` is not `service` is an error too.
pub fn read_service_record<T: serde::de::DeserializeOwned>(
    path: &Path,
    max: u64,
    what: &str,
    service: &str,
    service_of: impl Fn(&T) -> &str,
) -> Result<Option<T>, String> {
    let Some(data) = read_record(path, max)? else { return Ok(None) };
    let record: T = serde_json::from_slice(&data).map_err(|e| format!("{}: not {what}: {e}", path.display()))?;
    if service_of(&record) != service {
        return Err(format!("{}: a record of another service ({:?})", path.display(), service_of(&record)));
    }
    Ok(Some(record))
}

use nix::fcntl::{Flock, FlockArg};

/// Removes the `NAME.json` files of `dir` whose NAME is not in `keep` (the records of services
/// that are gone); returns the names removed.
pub fn prune_json(dir: &Path, keep: &[String]) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(service) = name.strip_suffix(".json") else { continue };
        if !keep.iter().any(|k| k == service) && fs::remove_file(entry.path()).is_ok() {
            removed.push(service.to_owned());
        }
    }
    removed
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn only_regular_files_within_the_cap_are_read() {
        let t = tempfile::tempdir().expect("tempdir");
        let fifo = t.path().join("fifo.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
        // Would block forever in a plain read (no writer).
        assert!(read_config(&fifo).unwrap_err().contains("is a FIFO"), "fifo");
        let zero = t.path().join("zero.toml");
        symlink("/dev/zero", &zero).expect("symlink");
        assert!(read_config(&zero).unwrap_err().contains("character device"));
        assert!(read_config(t.path()).unwrap_err().contains("directory"));
        let big = t.path().join("big.toml");
        fs::write(&big, vec![b'#'; CONFIG_MAX as usize + 1]).expect("write");
        assert!(read_config(&big).unwrap_err().contains("larger than"));
        let ok = t.path().join("ok.toml");
        fs::write(&ok, vec![b'#'; CONFIG_MAX as usize]).expect("write");
        assert_eq!(read_config(&ok).map(|s| s.len()), Ok(CONFIG_MAX as usize));
        let link = t.path().join("link.toml");
        symlink(&ok, &link).expect("symlink");
        assert!(read_config(&link).is_ok(), "a link to a regular file is read");
        let latin1 = t.path().join("latin1.toml");
        fs::write(&latin1, b"# ok\n# caf\xe9\n").expect("write");
        assert!(read_config(&latin1).unwrap_err().contains("line 2"));
        let sock = t.path().join("sock.toml");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        assert!(read_config(&sock).unwrap_err().contains("socket"));
    }
}
