//! Diagnostics in the one shape every tool prints: `file:line:col: key: reason`.
//!
//! The shape is what compilers print, so editors and CI log viewers link it to the place, and
//! Ansible's `validate:` shows it verbatim when it refuses a file.

use std::borrow::Cow;
use std::fmt;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub path: PathBuf,
    /// 1-based; 0 when the problem is about the file as a whole (it cannot be read, say).
    pub line: usize,
    pub col: usize,
    /// Dotted key path (`service.image`), empty when the problem is not about one key.
    pub key: String,
    pub message: String,
}

impl Diagnostic {
    /// A problem with a file as a whole, before any line can be named.
    pub fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Diagnostic { path: path.into(), line: 0, col: 0, key: String::new(), message: message.into() }
    }
}

/// Every part is escaped with [`escape`] (the path with [`escape_path`]): a file name, key or
/// value holding a newline or a terminal escape cannot start a line of its own or recolour the
/// terminal, wherever the diagnostic is printed.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", escape_path(&self.path))?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.col)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", escape(&self.key))?;
        }
        write!(f, ": {}", escape(&self.message))
    }
}

/// Whether `c` must not reach a terminal or a log line as it is: control characters (C0, DEL,
/// C1: newline, carriage return, escape, CSI, ...), the Unicode line and paragraph separators,
/// and the bidirectional overrides that make text read differently from what it holds.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// The one escaping rule of every message printed to a terminal, `/dev/kmsg` or the journal:
/// each character [`needs_escape`] says is unsafe is written as `\n`, `\r`, `\t` or `\u{XX}`,
/// so that one message stays one line and shows the text as it is.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A path as [`escape`] writes text; bytes that are not UTF-8 are written as `\xFF`, so a
/// file name that is not UTF-8 is shown as it is rather than with replacement characters.
pub fn escape_path(path: &Path) -> Cow<'_, str> {
    let bytes = path.as_os_str().as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(text) => escape(text),
        Err(_) => {
            let mut out = String::with_capacity(bytes.len() + 8);
            for chunk in bytes.utf8_chunks() {
                out.push_str(&escape(chunk.valid()));
                for b in chunk.invalid() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            Cow::Owned(out)
        }
    }
}

impl std::error::Error for Diagnostic {}

/// The nearest of `candidates` to `unknown`, if it is near enough to be what was meant.
pub fn suggest<'a>(unknown: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&unknown.to_lowercase(), c), c))
        .filter(|&(d, c)| d <= 2.max(c.len() / 3))
        .min_by_key(|&(d, c)| (d, c))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_compiler_style() {
        let d = Diagnostic {
            path: "/etc/aicontainers/a.toml".into(),
            line: 3,
            col: 1,
            key: "service.imge".into(),
            message: "unknown key".into(),
        };
        assert_eq!(d.to_string(), "/etc/aicontainers/a.toml:3:1: service.imge: unknown key");
        assert_eq!(Diagnostic::file("x.toml", "cannot read").to_string(), "x.toml: cannot read");
    }

    #[test]
    fn nothing_printed_can_forge_a_line_or_drive_a_terminal() {
        use std::ffi::OsStr;
        let d = Diagnostic {
            path: PathBuf::from(OsStr::from_bytes(b"/etc/aicontainers/a\nb\xff\x1b[31m.toml")),
            line: 1,
            col: 2,
            key: "service.environment.X\u{9b}2J".into(),
            message: "`x\r\naicontainers-generator: all good` \u{202e}txt.exe".into(),
        };
        let shown = d.to_string();
        assert_eq!(shown.lines().count(), 1, "{shown}");
        assert!(!shown.chars().any(needs_escape), "{shown}");
        assert_eq!(
            shown,
            "/etc/aicontainers/a\\nb\\xff\\u{1b}[31m.toml:1:2: service.environment.X\\u{9b}2J: `x\\r\\naicontainers-generator: all good` \\u{202e}txt.exe"
        );
        assert!(matches!(escape("plain text: ok"), Cow::Borrowed(_)));
    }

    #[test]
    fn suggestions_are_near_or_absent() {
        assert_eq!(suggest("imge", ["image", "command"]), Some("image"));
        assert_eq!(suggest("runas", ["run-as", "ports"]), Some("run-as"));
        assert_eq!(suggest("zzzzzz", ["image", "command"]), None);
    }
}
