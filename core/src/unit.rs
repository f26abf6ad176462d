//! Writing unit files: one small writer, one escaping rule per kind of value.
//!
//! Every line of every file the generator writes (the Quadlet `.container` files and the units
//! of invalid services) goes through [`UnitWriter`], in the way podman's Quadlet builds its own
//! units (`pkg/systemd/parser/unitfile.go`: groups, keys and values, written by one `Write`).
//! Each value is written as one of three [`Kind`]s, and [`check`] says whether a value of that
//! kind can be written at all: the service format's checks call the same function, so a file
//! that `aictl validate` accepts never reaches the writer with a value it would refuse.
//!
//! What the readers do with a line, and so what the rules guard against:
//! - systemd (`config_parse`) joins a line ending in an odd number of backslashes with the next
//!   one, ends lines at `\n`, `\r` or NUL, strips spaces and tabs around the value, expands `%`
//!   specifiers in most values, and refuses lines of [`LONG_LINE_MAX`] bytes or more.
//! - Quadlet trims every line with Go's `strings.TrimSpace` (Unicode white space too) and joins
//!   any line ending in a backslash with the next (also after `\\`); an empty value resets a
//!   list key. It splits word-valued keys with C unescaping and re-escapes the words onto the
//!   `ExecStart=` line without touching `%` or `$` (which systemd then expands there).
//!
//! Checked against podman 5.4.2's Quadlet: `Volume=/srv/c\` followed by `ReadOnly=true` gives
//! `-v /srv/cReadOnly=true` and no `--read-only`.

use std::fmt::Write as _;

/// systemd's limit on one line of a unit file (`LONG_LINE_MAX`, 1 MiB, in systemd's
/// `src/basic/fileio.h`): a longer line makes the whole unit fail to load.
pub const LONG_LINE_MAX: usize = 1024 * 1024;

/// How a value is written, by who reads it after the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The rest of the line, read by systemd (`Description=`, `SourcePath=`, `User=`,
    /// `MemoryMax=`): `%` is doubled.
    Text,
    /// The rest of the line, read by systemd as it is, for keys that expand no specifiers
    /// (`CPUQuota=`, `MemoryMax=`, `Restart=`): written unchanged.
    Verbatim,
    /// The rest of the line, which Quadlet hands on as one argument of the podman command on
    /// the `ExecStart=` line (`Image=`, `Volume=`, `PublishPort=`, `ContainerName=`): `%` and
    /// `$` are doubled.
    Arg,
    /// One word of a command line (`Exec=`, `PodmanArgs=`, `Environment=` in `[Container]`,
    /// `ExecStart=`): quoted as systemd and Quadlet split words, `%` and `$` doubled.
    Word,
}

/// Go's `unicode.IsSpace`, which Quadlet's `strings.TrimSpace` trims with.
fn go_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}')
        || (c > '\u{ff}' && c.is_whitespace())
}

/// Whether `value` can be written as `kind` and read back as it is, and if not, why (a
/// sentence that fits after the value in a diagnostic).
pub fn check(kind: Kind, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    match kind {
        Kind::Text | Kind::Verbatim | Kind::Arg => {
            if let Some(c) = value.chars().find(|c| c.is_control()) {
                return Err(format!("must be one line without control characters (found {c:?})"));
            }
            if value.starts_with(go_space) || value.ends_with(go_space) {
                return Err("must not start or end with white space (the unit file's reader drops it)".into());
            }
            if value.ends_with('\\') {
                return Err(
                    "must not end with a backslash (it would join the unit file's next line to this one)".into()
                );
            }
        }
        Kind::Word => {
            // Tab and newline are written as \t and \n; other control characters (CR, which
            // systemd takes for a line end, NUL, escape, C1) are kept out.
            if let Some(c) = value.chars().find(|&c| c.is_control() && !matches!(c, '\t' | '\n')) {
                return Err(format!("must not contain the control character {c:?}"));
            }
            if value == ";" {
                return Err("a lone `;` separates commands on a unit's command line".into());
            }
        }
    }
    let written = escape(kind, value).len();
    if written >= LONG_LINE_MAX - 64 {
        return Err(format!(
            "is too long for a unit file line ({written} bytes written; systemd reads at most {LONG_LINE_MAX})"
        ));
    }
    Ok(())
}

/// `value` as written for `kind`, without checking it (see [`check`]).
pub fn escape(kind: Kind, value: &str) -> String {
    match kind {
        Kind::Text => value.replace('%', "%%"),
        Kind::Verbatim => value.to_owned(),
        Kind::Arg => value.replace('%', "%%").replace('$', "$$"),
        Kind::Word => quote(value),
    }
}

/// One word for a command line. Words of only "safe" characters are written as they are;
/// others in double quotes with C escapes, which both systemd and Quadlet undo.
fn quote(word: &str) -> String {
    let escaped = word.replace('%', "%%").replace('$', "$$");
    let plain = !escaped.is_empty() && escaped.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%$".contains(c));
    if plain {
        return escaped;
    }
    let mut out = String::with_capacity(escaped.len() + 2);
    out.push('"');
    for c in escaped.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A comment line's text: control characters escaped as diagnostics escape them, and every
/// backslash doubled, so that the line cannot continue into the next one (systemd continues
/// any line, comments included, that ends in an odd number of backslashes).
fn comment_text(text: &str) -> String {
    crate::diag::escape(text).replace('\\', "\\\\")
}

/// Builds a unit file line by line. A value that cannot be written is recorded, not written:
/// [`UnitWriter::finish`] then returns every such problem instead of the text.
#[derive(Debug, Default)]
pub struct UnitWriter {
    out: String,
    problems: Vec<String>,
    sections: usize,
}

impl UnitWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// `# text`, for any text (file names, diagnostics).
    pub fn comment(&mut self, text: &str) -> &mut Self {
        let _ = writeln!(self.out, "# {}", comment_text(text));
        self
    }

    /// `[name]`, after an empty line unless it is the first section.
    pub fn section(&mut self, name: &str) -> &mut Self {
        debug_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric()), "section names are ours: {name}");
        if self.sections > 0 {
            self.out.push('\n');
        }
        self.sections += 1;
        let _ = writeln!(self.out, "[{name}]");
        self
    }

    /// `key=value`, the value written as `kind`.
    pub fn set(&mut self, key: &str, kind: Kind, value: &str) -> &mut Self {
        self.words_or_value(key, kind, std::slice::from_ref(&value))
    }

    /// `key=word word ...`, each word quoted as [`Kind::Word`]. Nothing is written for no words.
    pub fn words<S: AsRef<str>>(&mut self, key: &str, words: &[S]) -> &mut Self {
        if words.is_empty() {
            return self;
        }
        self.words_or_value(key, Kind::Word, words)
    }

    fn words_or_value<S: AsRef<str>>(&mut self, key: &str, kind: Kind, values: &[S]) -> &mut Self {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()), "keys are ours: {key}");
        let mut line = format!("{key}=");
        for (i, value) in values.iter().enumerate() {
            let value = value.as_ref();
            if let Err(why) = check(kind, value) {
                self.problems.push(format!("{key}= value {}: {why}", crate::diag::escape(&format!("{value:?}"))));
                return self;
            }
            if i > 0 {
                line.push(' ');
            }
            line.push_str(&escape(kind, value));
        }
        if line.len() >= LONG_LINE_MAX {
            self.problems
                .push(format!("the {key}= line is {} bytes, systemd reads at most {LONG_LINE_MAX}", line.len()));
            return self;
        }
        self.out.push_str(&line);
        self.out.push('\n');
        self
    }

    /// The text, or every value that could not be written.
    pub fn finish(self) -> Result<String, Vec<String>> {
        if self.problems.is_empty() {
            Ok(self.out)
        } else {
            Err(self.problems)
        }
    }
}

/// How systemd reads lines of a unit file, for tests: continuation lines joined (an odd number
/// of trailing backslashes, the backslash replaced by a space), comments inside a continuation
/// dropped, lines split at `\n`, `\r` and NUL. Returns the logical lines.
pub fn systemd_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut continuation: Option<String> = None;
    for raw in text.split(['\n', '\r', '\0']) {
        if continuation.is_some() && raw.trim_start().starts_with(['#', ';']) {
            continue;
        }
        let mut line = continuation.take().unwrap_or_default();
        line.push_str(raw);
        let mut escaped = false;
        for c in line.chars() {
            escaped = !escaped && c == '\\';
        }
        if escaped {
            line.pop();
            line.push(' ');
            continuation = Some(line);
            continue;
        }
        out.push(line);
    }
    if let Some(rest) = continuation {
        out.push(rest);
    }
    out
}

/// How Quadlet reads lines (`UnitFile.Parse`), for tests: lines trimmed, any line ending in a
/// backslash joined with the next (the backslash dropped), comments inside a continuation
/// dropped.
pub fn quadlet_lines(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.strip_suffix('\n').unwrap_or(text).split('\n').collect();
    let mut out = Vec::new();
    let mut remaining = String::new();
    for (i, line) in lines.iter().enumerate() {
        let mut line = line.trim_matches(go_space).to_owned();
        if line.is_empty() || line.starts_with(['#', ';']) {
            if !remaining.is_empty() {
                continue;
            }
        } else {
            if line.ends_with('\\') {
                line.pop();
                if i != lines.len() - 1 {
                    remaining.push_str(&line);
                    continue;
                }
            }
            line = std::mem::take(&mut remaining) + &line;
        }
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_themselves_whole_and_specifiers_literal() {
        assert_eq!(escape(Kind::Word, "--port"), "--port");
        assert_eq!(escape(Kind::Word, "a b"), "\"a b\"");
        assert_eq!(escape(Kind::Word, "say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(escape(Kind::Word, "100%"), "100%%");
        assert_eq!(escape(Kind::Word, "$HOME"), "$$HOME");
        assert_eq!(escape(Kind::Word, "back\\"), "\"back\\\\\"");
        assert_eq!(escape(Kind::Arg, "/a%b$c"), "/a%%b$$c");
        assert_eq!(escape(Kind::Text, "100% $x"), "100%% $x");
    }

    #[test]
    fn values_that_would_bend_a_unit_are_refused() {
        for kind in [Kind::Text, Kind::Verbatim, Kind::Arg] {
            for bad in
                ["", "a\\", "a\nPodmanArgs=--privileged", "a\rb", " lead", "trail ", "nbsp\u{a0}", "a\u{1b}[m", "x\0"]
            {
                assert!(check(kind, bad).is_err(), "{kind:?} {bad:?}");
            }
            for good in ["a", "a\\b", "/srv/my models:/m:ro", "ünïcödé", "100%"] {
                assert_eq!(check(kind, good), Ok(()), "{kind:?} {good:?}");
            }
        }
        for bad in ["", ";", "a\rb", "a\u{85}", "\u{7f}", "\0"] {
            assert!(check(Kind::Word, bad).is_err(), "{bad:?}");
        }
        for good in ["back\\", "two words", "tab\there", "line\nbreak", "\\", "'", "a\u{3000}b", "x\u{a0}"] {
            assert_eq!(check(Kind::Word, good), Ok(()), "{good:?}");
        }
        assert!(check(Kind::Text, &"x".repeat(LONG_LINE_MAX)).is_err());
    }

    #[test]
    fn the_writer_refuses_instead_of_writing() {
        let mut w = UnitWriter::new();
        w.section("Container").set("Volume", Kind::Arg, "/a\\").set("Image", Kind::Arg, "x");
        let problems = w.finish().unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("Volume= value \"/a\\\\\""), "{problems:?}");
    }

    #[test]
    fn comments_never_continue() {
        let mut w = UnitWriter::new();
        w.comment("ends in a backslash \\").comment("x\ny").section("Unit").set("Description", Kind::Text, "d");
        let text = w.finish().expect("writes");
        for lines in [systemd_lines(&text), quadlet_lines(&text)] {
            assert!(lines.iter().any(|l| l == "[Unit]"), "{lines:?}");
            assert!(lines.iter().any(|l| l == "Description=d"), "{lines:?}");
        }
        assert_eq!(text.lines().count(), 4, "{text}");
    }

    #[test]
    fn the_readers_join_what_the_writer_must_avoid() {
        assert_eq!(systemd_lines("A=x\\\nB=y\n"), vec!["A=x B=y", ""]);
        assert_eq!(systemd_lines("A=x\\\\\nB=y"), vec!["A=x\\\\", "B=y"]);
        assert_eq!(quadlet_lines("A=x\\\\\nB=y"), vec!["A=x\\B=y"]);
        assert_eq!(systemd_lines("# c\\\nB=y"), vec!["# c B=y"]);
    }
}
