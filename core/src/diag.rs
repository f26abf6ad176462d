//! Diagnostics in the one shape every tool prints: `file:line:col: key: reason`.
//!
//! The shape is what compilers print, so editors and CI log viewers link it to the place, and
//! Ansible's `validate:` shows it verbatim when it refuses a file.

use std::fmt;
use std::path::PathBuf;

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

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.col)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
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
    fn suggestions_are_near_or_absent() {
        assert_eq!(suggest("imge", ["image", "command"]), Some("image"));
        assert_eq!(suggest("runas", ["run-as", "ports"]), Some("run-as"));
        assert_eq!(suggest("zzzzzz", ["image", "command"]), None);
    }
}
