//! The generator's `log::Log`: records go to the kernel ring buffer (`/dev/kmsg`), where
//! early-boot messages reach the journal, or to stderr when /dev/kmsg cannot be opened for
//! writing (running by hand, in a container). Every message is escaped as diagnostics are
//! (`aicontainers::diag::escape`): one record, one line, whatever file names, values or
//! Quadlet's words it carries.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError};

/// Where records go.
#[derive(Debug)]
pub struct Kmsg {
    /// `None`: stderr.
    file: Mutex<Option<File>>,
    ident: &'static str,
}

static LOGGER: OnceLock<Kmsg> = OnceLock::new();

impl Kmsg {
    /// Records to `path` (a kmsg device), or to stderr when it cannot be opened for writing.
    pub fn open(path: &Path, ident: &'static str) -> Kmsg {
        Kmsg { file: Mutex::new(OpenOptions::new().write(true).open(path).ok()), ident }
    }

    /// Whether records go to the kmsg device (not stderr).
    #[cfg(test)]
    pub fn to_kmsg(&self) -> bool {
        self.file.lock().unwrap_or_else(PoisonError::into_inner).is_some()
    }

    /// The line written for a record: `<PRIORITY>IDENT[PID]: MESSAGE\n`, as systemd's own
    /// generators write, with the syslog priority of `level`.
    pub fn line(&self, level: log::Level, message: &str) -> String {
        let message = aicontainers::diag::escape(message);
        format!("<{}>{}[{}]: {message}\n", priority(level), self.ident, std::process::id())
    }
}

/// The syslog priority of a log level: 3 error, 4 warning, 6 info, 7 debug (and trace).
pub fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

impl log::Log for Kmsg {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let message = record.args().to_string();
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        match file.as_mut() {
            // One write per record: the kernel takes each write as one message.
            Some(kmsg) => {
                let _ = kmsg.write_all(self.line(record.level(), &message).as_bytes());
            }
            None => eprintln!("{}: {}", self.ident, aicontainers::diag::escape(&message)),
        }
    }

    fn flush(&self) {}
}

/// Sends the `log` macros to /dev/kmsg (stderr as a fallback), every level.
pub fn init(ident: &'static str) {
    let logger = LOGGER.get_or_init(|| Kmsg::open(Path::new("/dev/kmsg"), ident));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use log::Log as _;

    fn record(level: log::Level, args: std::fmt::Arguments<'_>, f: impl FnOnce(&log::Record<'_>)) {
        f(&log::Record::builder().level(level).args(args).build());
    }

    #[test]
    fn one_escaped_record_per_write_with_its_priority() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kmsg");
        std::fs::write(&path, "").unwrap();
        let kmsg = Kmsg::open(&path, "aicontainers-generator");
        assert!(kmsg.to_kmsg());
        let hostile = "bad.toml:1:1: `a\nb\x1b[2J`";
        record(log::Level::Error, format_args!("{hostile}"), |r| kmsg.log(r));
        record(log::Level::Warn, format_args!("w"), |r| kmsg.log(r));
        record(log::Level::Debug, format_args!("d"), |r| kmsg.log(r));
        let text = std::fs::read_to_string(&path).unwrap();
        let pid = std::process::id();
        let want = format!(
            "<3>aicontainers-generator[{pid}]: bad.toml:1:1: `a\\nb\\u{{1b}}[2J`\n<4>aicontainers-generator[{pid}]: w\n<7>aicontainers-generator[{pid}]: d\n"
        );
        assert_eq!(text, want);
    }

    #[test]
    fn stderr_when_kmsg_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let kmsg = Kmsg::open(&dir.path().join("missing/kmsg"), "aicontainers-generator");
        assert!(!kmsg.to_kmsg());
        // A read-only device is no better than none.
        let ro = dir.path().join("ro");
        std::fs::write(&ro, "").unwrap();
        std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
        if nix_is_root() {
            eprintln!("read-only part not checked: running as root, who may write a 0444 file");
        } else {
            assert!(!Kmsg::open(&ro, "x").to_kmsg());
        }
        record(log::Level::Info, format_args!("to stderr"), |r| kmsg.log(r));
    }

    #[test]
    fn priorities_are_syslogs() {
        use log::Level::*;
        let got: Vec<u8> = [Error, Warn, Info, Debug, Trace].into_iter().map(priority).collect();
        assert_eq!(got, [3, 4, 6, 7, 7]);
    }

    fn nix_is_root() -> bool {
        std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
    }
}
