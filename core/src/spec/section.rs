//! Reading the keys of one table: typed getters that report a wrong type, an unknown key or a
//! value that cannot reach a unit at the place it was written.

use crate::diag::{suggest, Diagnostic};
use crate::doc::{Entry, Node, Origin, Table, Value};
use crate::unit::{self, Kind};

use super::check::parse_duration;

/// Top-level keys that are neither valid nor unknown: reported by `RESERVED_TOP`.
pub(crate) const RESERVED_NAMES: &[&str] = &[];

/// Reads the keys of one table, remembering which were used so the rest can be reported.
pub(crate) struct Section<'a> {
    prefix: String,
    table: &'a Table,
    known: &'static [&'static str],
}

impl<'a> Section<'a> {
    pub(crate) fn new(
        prefix: &str,
        table: &'a Table,
        known: &'static [&'static str],
        diags: &mut Vec<Diagnostic>,
    ) -> Self {
        for (key, entry) in table {
            let reserved = prefix.is_empty() && RESERVED_NAMES.contains(&key.as_str());
            if !known.contains(&key.as_str()) && !reserved {
                let path = join(prefix, key);
                let mut message = format!("unknown key `{key}`");
                if let Some(near) = suggest(key, known.iter().copied()) {
                    message.push_str(&format!("; did you mean `{near}`?"));
                } else {
                    let section = if prefix.is_empty() { "the top level".to_owned() } else { format!("[{prefix}]") };
                    message.push_str(&format!("; keys valid in {section}: {}", known.join(", ")));
                }
                diags.push(entry.key_origin.error(&path, message));
            }
        }
        Section { prefix: prefix.to_owned(), table, known }
    }

    pub(crate) fn path(&self, key: &str) -> String {
        debug_assert!(self.known.contains(&key), "{key} is not declared for [{}]", self.prefix);
        join(&self.prefix, key)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Entry> {
        self.table.get(key)
    }

    pub(crate) fn type_error(&self, key: &str, node: &Node, expected: &str) -> Diagnostic {
        node.origin.error(&self.path(key), format!("expected {expected}, found {}", node.value.type_name()))
    }

    pub(crate) fn string(&self, key: &str, diags: &mut Vec<Diagnostic>) -> Option<(String, &'a Origin)> {
        let entry = self.get(key)?;
        match &entry.node.value {
            Value::String(s) if has_control(s) => {
                diags.push(entry.node.origin.error(&self.path(key), CONTROL_MESSAGE));
                None
            }
            Value::String(s) => Some((s.clone(), &entry.node.origin)),
            _ => {
                diags.push(self.type_error(key, &entry.node, "a string"));
                None
            }
        }
    }

    pub(crate) fn boolean(&self, key: &str, diags: &mut Vec<Diagnostic>) -> Option<bool> {
        let entry = self.get(key)?;
        match entry.node.value {
            Value::Boolean(b) => Some(b),
            _ => {
                diags.push(self.type_error(key, &entry.node, "true or false"));
                None
            }
        }
    }

    pub(crate) fn integer(&self, key: &str, min: i64, max: i64, diags: &mut Vec<Diagnostic>) -> Option<i64> {
        let entry = self.get(key)?;
        match entry.node.value {
            Value::Integer(i) if (min..=max).contains(&i) => Some(i),
            Value::Integer(i) => {
                diags.push(entry.node.origin.error(&self.path(key), format!("{i} is out of range {min}..={max}")));
                None
            }
            Value::BigInteger(ref i) => {
                diags.push(entry.node.origin.error(&self.path(key), format!("{i} is out of range {min}..={max}")));
                None
            }
            _ => {
                diags.push(self.type_error(key, &entry.node, "an integer"));
                None
            }
        }
    }

    pub(crate) fn strings(&self, key: &str, diags: &mut Vec<Diagnostic>) -> Option<Vec<(String, &'a Origin)>> {
        let entry = self.get(key)?;
        let Value::Array(items) = &entry.node.value else {
            diags.push(self.type_error(key, &entry.node, "an array of strings"));
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match &item.value {
                Value::String(s) if has_control(s) => diags.push(item.origin.error(&self.path(key), CONTROL_MESSAGE)),
                Value::String(s) => out.push((s.clone(), &item.origin)),
                other => diags.push(item.origin.error(
                    &self.path(key),
                    format!("expected an array of strings, found {} in it", other.type_name()),
                )),
            }
        }
        Some(out)
    }

    /// One of `values`, by the name `name` gives each (the enum's one spelling).
    pub(crate) fn choice<T: Copy>(
        &self,
        key: &str,
        values: &[T],
        name: fn(T) -> &'static str,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<T> {
        let (s, origin) = self.string(key, diags)?;
        if let Some(v) = values.iter().find(|v| name(**v) == s) {
            return Some(*v);
        }
        let names: Vec<&str> = values.iter().map(|v| name(*v)).collect();
        let mut message = format!("`{s}` is not one of {}", names.join(", "));
        if let Some(near) = suggest(&s, names.iter().copied()) {
            message.push_str(&format!("; did you mean `{near}`?"));
        }
        diags.push(origin.error(&self.path(key), message));
        None
    }

    pub(crate) fn table(&self, key: &str, diags: &mut Vec<Diagnostic>) -> Option<&'a Table> {
        let entry = self.get(key)?;
        match &entry.node.value {
            Value::Table(t) => Some(t),
            _ => {
                diags.push(self.type_error(key, &entry.node, "a table"));
                None
            }
        }
    }
}

/// What the fixed part of the podman command Quadlet writes takes, at most (options, paths,
/// models, devices), on top of the values of the file.
pub(crate) const EXEC_LINE_RESERVE: usize = 16 * 1024;

/// Whether `value` can be written to a unit as `kind` ([`crate::unit::check`], the writer's own
/// rule); if not, says why at `origin`.
pub(crate) fn unit_value(kind: Kind, value: &str, origin: &Origin, key: &str, diags: &mut Vec<Diagnostic>) -> bool {
    match unit::check(kind, value) {
        Ok(()) => true,
        Err(why) => {
            diags.push(origin.error(key, format!("{}: {why}", shown(value))));
            false
        }
    }
}

/// A value quoted for a message, cut short when long.
pub(crate) fn shown(value: &str) -> String {
    const MAX: usize = 80;
    match value.char_indices().nth(MAX) {
        Some((at, _)) => format!("{:?}... ({} bytes)", &value[..at], value.len()),
        None => format!("{value:?}"),
    }
}

pub(crate) const CONTROL_MESSAGE: &str =
    "contains a control character (NUL, escape, ...): only tab and newline are allowed";

/// Control characters other than tab and newline cannot survive a unit file.
pub(crate) fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\t' && c != '\n')
}

pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

pub(crate) fn start_of(origin: &Origin) -> Origin {
    Origin { file: origin.file.clone(), span: 0..0 }
}

pub(crate) fn duration(section: &Section<'_>, key: &str, diags: &mut Vec<Diagnostic>) -> Option<String> {
    let (value, origin) = section.string(key, diags)?;
    match parse_duration(&value) {
        Ok(_) => Some(value),
        Err(why) => {
            diags.push(origin.error(&section.path(key), why));
            None
        }
    }
}
