//! A TOML document that remembers, for every key, which file and which byte range it came from.
//!
//! Service files are layered (a main file plus drop-ins), so after merging, a value can come from
//! any of several files. Every [`Node`] carries its [`Origin`] so that an error found after the
//! merge still names the file, line and column the sysadmin has to edit.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::de::{DeTable, DeValue};

use crate::diag::Diagnostic;

/// One source file: its path (as the user wrote it) and its text, kept to turn spans into lines.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }
}

/// Where a key or value was written.
#[derive(Clone, Debug)]
pub struct Origin {
    pub file: Arc<SourceFile>,
    pub span: Range<usize>,
}

impl Origin {
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    pub fn line_col(&self) -> (usize, usize) {
        self.file.line_col(self.span.start)
    }

    /// A diagnostic at this place about `key`.
    pub fn error(&self, key: &str, message: impl Into<String>) -> Diagnostic {
        let (line, col) = self.line_col();
        Diagnostic { path: self.file.path.clone(), line, col, key: key.to_owned(), message: message.into() }
    }
}

/// A parsed TOML value with its origin (the value's own span; keys keep theirs in [`Entry`]).
#[derive(Clone, Debug)]
pub struct Node {
    pub origin: Origin,
    pub value: Value,
}

#[derive(Clone, Debug)]
pub enum Value {
    String(String),
    Integer(i64),
    /// An integer TOML accepts that does not fit in 64 bits, as written: reported as such.
    BigInteger(String),
    Float(f64),
    Boolean(bool),
    /// Datetimes have no meaning in the format; they are kept only to be reported as such.
    Datetime(String),
    Array(Vec<Node>),
    Table(Table),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::BigInteger(_) => "an integer too large for 64 bits",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime(_) => "a datetime",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

/// A key as written, with the place it was written.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key_origin: Origin,
    pub node: Node,
}

/// Keys in file order do not matter to the format; a sorted map keeps everything deterministic.
pub type Table = BTreeMap<String, Entry>;

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => write!(f, "{s:?}"),
            Value::Integer(i) => write!(f, "{i}"),
            Value::BigInteger(i) => f.write_str(i),
            Value::Float(x) => write!(f, "{x}"),
            Value::Boolean(b) => write!(f, "{b}"),
            Value::Datetime(d) => f.write_str(d),
            Value::Array(a) => write!(f, "[{} items]", a.len()),
            Value::Table(t) => write!(f, "{{{} keys}}", t.len()),
        }
    }
}

/// Parses one file into a spanned table. A syntax error is reported at its place.
pub fn parse(path: &Path, text: String) -> Result<Node, Diagnostic> {
    let file = Arc::new(SourceFile { path: path.to_owned(), text });
    let parsed = DeTable::parse(&file.text);
    match parsed {
        Ok(table) => {
            let span = table.span();
            let table = convert_table(&file, table.into_inner());
            Ok(Node { origin: Origin { file: file.clone(), span }, value: Value::Table(table) })
        }
        Err(err) => {
            let span = err.span().unwrap_or(0..0);
            // toml's message is a sentence such as "invalid string\nexpected `\"`"; keep it on one line.
            let message = err.message().trim().replace('\n', ", ");
            Err(Origin { file: file.clone(), span }.error("", format!("TOML syntax error: {message}")))
        }
    }
}

fn convert_table(file: &Arc<SourceFile>, table: DeTable<'_>) -> Table {
    let mut out = Table::new();
    for (key, value) in table {
        let key_origin = Origin { file: file.clone(), span: key.span() };
        let node = convert(file, value);
        out.insert(key.into_inner().into_owned(), Entry { key_origin, node });
    }
    out
}

fn convert(file: &Arc<SourceFile>, value: toml::Spanned<DeValue<'_>>) -> Node {
    let origin = Origin { file: file.clone(), span: value.span() };
    let value = match value.into_inner() {
        DeValue::String(s) => {
            // TOML lets a parser turn the line ends inside a multi-line string into the
            // platform's own (toml-lang 1.0, "Strings"): a file saved with CRLF means LF.
            let raw = file.text.get(origin.span.clone()).unwrap_or_default();
            if (raw.starts_with("\"\"\"") || raw.starts_with("'''")) && s.contains("\r\n") {
                Value::String(s.replace("\r\n", "\n"))
            } else {
                Value::String(s.into_owned())
            }
        }
        DeValue::Integer(i) => {
            // The parser has already checked the digits; only out-of-range values fail here.
            match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(v) => Value::Integer(v),
                Err(_) => Value::BigInteger(file.text.get(origin.span.clone()).unwrap_or(i.as_str()).to_owned()),
            }
        }
        DeValue::Float(x) => Value::Float(x.as_str().replace('_', "").parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => Value::Boolean(b),
        DeValue::Datetime(d) => Value::Datetime(d.to_string()),
        DeValue::Array(items) => Value::Array(items.into_iter().map(|item| convert(file, item)).collect()),
        DeValue::Table(t) => Value::Table(convert_table(file, t)),
    };
    Node { origin, value }
}

/// Layers `upper` over `lower` the way drop-ins work: tables merge key by key, anything else
/// (strings, numbers, arrays, arrays of tables) is replaced whole by the upper file's value.
pub fn merge(lower: &mut Table, upper: Table) {
    for (key, entry) in upper {
        match lower.get_mut(&key) {
            Some(existing) => match (&mut existing.node.value, entry.node.value) {
                (Value::Table(low), Value::Table(up)) => merge(low, up),
                (_, value) => {
                    *existing = Entry { key_origin: entry.key_origin, node: Node { origin: entry.node.origin, value } };
                }
            },
            None => {
                lower.insert(key, entry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(path: &str, text: &str) -> Table {
        match parse(Path::new(path), text.to_owned()).expect("parses").value {
            Value::Table(t) => t,
            _ => unreachable!(),
        }
    }

    #[test]
    fn spans_point_at_the_key_line_and_column() {
        let t = table("a.toml", "# c\n[service]\n  image = \"x\"\n");
        let Value::Table(service) = &t["service"].node.value else { panic!() };
        assert_eq!(service["image"].key_origin.line_col(), (3, 3));
        assert_eq!(service["image"].node.origin.line_col(), (3, 11));
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let err = parse(Path::new("bad.toml"), "[service]\nimage = \"x\nfoo=1\n".into()).unwrap_err();
        assert_eq!(err.path, Path::new("bad.toml"));
        assert_eq!(err.line, 2, "{err}");
        assert!(err.message.starts_with("TOML syntax error"), "{err}");
    }

    #[test]
    fn crlf_files_read_as_lf_files() {
        let t =
            table("crlf.toml", "[service]\r\nd = \"\"\"a\r\nb\"\"\"\r\nl = '''\r\nc\r\nd'''\r\ne = \"x\\r\\n\"\r\n");
        let Value::Table(service) = &t["service"].node.value else { panic!() };
        assert!(matches!(&service["d"].node.value, Value::String(s) if s == "a\nb"));
        assert!(matches!(&service["l"].node.value, Value::String(s) if s == "c\nd"));
        assert!(matches!(&service["e"].node.value, Value::String(s) if s == "x\r\n"), "escapes are kept");
        assert_eq!(service["l"].key_origin.line_col(), (4, 1));
    }

    #[test]
    fn integers_beyond_64_bits_stay_integers() {
        let t = table("big.toml", "a = 99999999999999999999\nb = 0xffffffffffffffffff\n");
        assert!(matches!(&t["a"].node.value, Value::BigInteger(s) if s == "99999999999999999999"));
        assert_eq!(t["b"].node.value.type_name(), "an integer too large for 64 bits");
    }

    #[test]
    fn drop_in_overrides_one_key_and_keeps_the_rest() {
        let mut low = table("main.toml", "[service]\nimage = \"a\"\nports = [\"1:1\"]\n");
        let up = table("10-x.toml", "[service]\nimage = \"b\"\n");
        merge(&mut low, up);
        let Value::Table(service) = &low["service"].node.value else { panic!() };
        assert!(matches!(&service["image"].node.value, Value::String(s) if s == "b"));
        assert_eq!(service["image"].node.origin.path(), Path::new("10-x.toml"));
        assert_eq!(service["ports"].node.origin.path(), Path::new("main.toml"));
    }
}
