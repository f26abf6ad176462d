//! Logging: to the journal with structured fields when stderr is connected to it, else plain
//! lines on stderr.
//!
//! Fields ride on `log`'s key-values: `log::info!(service = name; "...")` becomes the journal
//! field `SERVICE=` (see `journalctl -o verbose`, or `journalctl SERVICE=web`).

use log::{LevelFilter, Log, Metadata, Record};

/// Installs the logger; `verbosity` is the number of `-v` flags (0: info, 1: debug, 2+: trace).
pub fn init(verbosity: u8) {
    let level = match verbosity {
        0 => LevelFilter::Info,
        1 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
    let journal = systemd_journal_logger::connected_to_journal()
        .then(|| systemd_journal_logger::JournalLog::new().ok())
        .flatten()
        .map(|j| j.with_syslog_identifier("aicontainersd".into()));
    let installed = match journal {
        Some(journal) => journal.install(),
        None => log::set_boxed_logger(Box::new(Stderr)),
    };
    if installed.is_ok() {
        log::set_max_level(level);
    }
}

/// `aicontainersd: LEVEL: message key=value ...` on stderr.
struct Stderr;

impl Log for Stderr {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        struct Fields(String);
        impl<'kvs> log::kv::VisitSource<'kvs> for Fields {
            fn visit_pair(
                &mut self,
                key: log::kv::Key<'kvs>,
                value: log::kv::Value<'kvs>,
            ) -> Result<(), log::kv::Error> {
                self.0.push_str(&format!(" {key}={value}"));
                Ok(())
            }
        }
        let mut fields = Fields(String::new());
        let _ = record.key_values().visit(&mut fields);
        eprintln!("aicontainersd: {}: {}{}", record.level().as_str().to_lowercase(), record.args(), fields.0);
    }

    fn flush(&self) {}
}
