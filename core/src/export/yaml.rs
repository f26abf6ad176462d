//! A small YAML writer for manifests: block style, keys in the order they were inserted, and
//! strings quoted whenever a YAML 1.1 or 1.2 reader could take them for anything but a string.
//!
//! Kubernetes reads YAML with a YAML 1.1 parser (go-yaml through sigs.k8s.io/yaml), where `yes`,
//! `on`, `y`, `off`, `1:30` and `0x1F` are not strings; serializers written for YAML 1.2 leave some
//! of those bare. Here a string is written bare only when it is plainly a word or a path, and
//! double-quoted otherwise, with every character YAML calls non-printable escaped.

/// A value of a manifest. Maps keep their insertion order, so output is deterministic.
#[derive(Clone, Debug, PartialEq)]
pub enum Yaml {
    Str(String),
    Int(i64),
    Bool(bool),
    Seq(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

impl From<&str> for Yaml {
    fn from(s: &str) -> Self {
        Yaml::Str(s.to_owned())
    }
}

impl From<String> for Yaml {
    fn from(s: String) -> Self {
        Yaml::Str(s)
    }
}

impl From<i64> for Yaml {
    fn from(i: i64) -> Self {
        Yaml::Int(i)
    }
}

impl From<u32> for Yaml {
    fn from(i: u32) -> Self {
        Yaml::Int(i64::from(i))
    }
}

impl From<bool> for Yaml {
    fn from(b: bool) -> Self {
        Yaml::Bool(b)
    }
}

/// Builds a map: `map([("a", 1.into()), ...])`.
pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Yaml)>) -> Yaml {
    Yaml::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

/// A sequence of strings.
pub fn strings<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Yaml {
    Yaml::Seq(items.into_iter().map(|s| Yaml::Str(s.as_ref().to_owned())).collect())
}

impl Yaml {
    /// Adds `key: value` to a map (panics on anything else: a programming error).
    pub fn insert(&mut self, key: &str, value: impl Into<Yaml>) {
        match self {
            Yaml::Map(entries) => entries.push((key.to_owned(), value.into())),
            other => unreachable!("insert into a non-map {other:?}"),
        }
    }

    fn is_block(&self) -> bool {
        match self {
            Yaml::Seq(items) => !items.is_empty(),
            Yaml::Map(entries) => !entries.is_empty(),
            _ => false,
        }
    }
}

/// The value as a YAML document body (no `---`), ending in a newline.
pub fn to_string(value: &Yaml) -> String {
    let mut out = String::new();
    match value {
        Yaml::Map(entries) if !entries.is_empty() => write_map(entries, 0, &mut out),
        Yaml::Seq(items) if !items.is_empty() => write_seq(items, 0, &mut out),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

/// A scalar or an empty collection, on one line.
fn inline(value: &Yaml) -> String {
    match value {
        Yaml::Str(s) => scalar(s),
        Yaml::Int(i) => i.to_string(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Seq(_) => "[]".to_owned(),
        Yaml::Map(_) => "{}".to_owned(),
    }
}

fn write_map(entries: &[(String, Yaml)], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (key, value) in entries {
        out.push_str(&pad);
        out.push_str(&scalar(key));
        out.push(':');
        if value.is_block() {
            out.push('\n');
            match value {
                Yaml::Map(inner) => write_map(inner, indent + 2, out),
                Yaml::Seq(items) => write_seq(items, indent + 2, out),
                _ => unreachable!("is_block"),
            }
        } else {
            out.push(' ');
            out.push_str(&inline(value));
            out.push('\n');
        }
    }
}

fn write_seq(items: &[Yaml], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for item in items {
        match item {
            Yaml::Map(entries) if !entries.is_empty() => {
                // The map's first line goes on the dash's line: render it two deeper, then put
                // the dash in place of the first line's indentation.
                let mut inner = String::new();
                write_map(entries, indent + 2, &mut inner);
                out.push_str(&pad);
                out.push_str("- ");
                out.push_str(&inner[indent + 2..]);
            }
            Yaml::Seq(inner) if !inner.is_empty() => {
                out.push_str(&pad);
                out.push_str("-\n");
                write_seq(inner, indent + 2, out);
            }
            scalar => {
                out.push_str(&pad);
                out.push_str("- ");
                out.push_str(&inline(scalar));
                out.push('\n');
            }
        }
    }
}

/// Words that a YAML 1.1 or 1.2 reader resolves to a boolean or null when bare.
const SPECIAL_WORDS: &[&str] = &["y", "yes", "n", "no", "true", "false", "on", "off", "null", "~"];

/// Whether `s` reads back as this same string when written bare, in any YAML version.
///
/// Deliberately narrow: it starts with a letter or `/`, holds only letters, digits and `/._-`
/// (and `:` not at the end, as in image references), and is not one of the special words.
/// Numbers, times, anchors, tags, flow collections and comments all start with something else.
fn plain_is_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else { return false };
    (first.is_ascii_alphabetic() || first == '/')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:".contains(c))
        && !s.ends_with(':')
        && !s.contains("::")
        && !SPECIAL_WORDS.contains(&s.to_ascii_lowercase().as_str())
}

/// A string as a YAML scalar: bare when that is unambiguous, double-quoted otherwise.
pub fn scalar(s: &str) -> String {
    if plain_is_safe(s) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if printable(c) => out.push(c),
            c if (c as u32) <= 0xff => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// YAML 1.2's printable set (c-printable), less the line and paragraph separators, the byte
/// order mark and NEL, which some readers treat as line breaks: those are escaped too.
fn printable(c: char) -> bool {
    matches!(c as u32, 0x20..=0x7e | 0xa0..=0xd7ff | 0xe000..=0xfffd | 0x10000..=0x10ffff)
        && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_paths_are_bare_everything_ambiguous_is_quoted() {
        for bare in
            ["hello", "localhost/busybox:latest", "nvidia.com/gpu", "/models/tiny-chat", "IfNotPresent", "a-b_c.d"]
        {
            assert_eq!(scalar(bare), bare);
        }
        for quoted in [
            "", "yes", "Yes", "ON", "off", "y", "N", "null", "~", "true", "1", "0x1F", "0o17", "1e3", "1_000", "1:30",
            ".inf", "-", "- x", "*anchor", "&a", "!tag", "{}", "[]", "#c", "a b", "a: b", "key:", "a::b", "@x", "%x",
            "`x", "|", ">", "?", "'s'", "\"",
        ] {
            let q = scalar(quoted);
            assert!(q.starts_with('"') && q.ends_with('"'), "{quoted:?} -> {q}");
        }
    }

    #[test]
    fn escapes_what_yaml_cannot_carry_raw() {
        assert_eq!(scalar("a\nb\tc\"d\\e"), r#""a\nb\tc\"d\\e""#);
        assert_eq!(scalar("\u{7f}\u{85}\u{2028}\u{feff}"), r#""\x7f\x85\u2028\ufeff""#);
        assert_eq!(scalar("é 😀"), "\"é 😀\"");
    }

    #[test]
    fn block_layout() {
        let v = map([
            ("a", Yaml::from("x")),
            ("b", Yaml::Seq(vec![map([("k", Yaml::from(1i64)), ("m", strings(["p", "q"]))]), Yaml::from("s")])),
            ("c", map::<&str>([])),
            ("d", Yaml::Seq(vec![])),
            ("e", map([("f", Yaml::from(true))])),
        ]);
        assert_eq!(
            to_string(&v),
            "a: x\nb:\n  - k: 1\n    m:\n      - p\n      - q\n  - s\nc: {}\nd: []\ne:\n  f: true\n"
        );
    }
}
