//! Structured journal entries from `aictl` when it runs in a unit (the preflight of a service's
//! `ExecStartPre=`, the scan service), sent over journald's native protocol: one datagram of
//! `FIELD=value` lines to `/run/systemd/journal/socket`.
//!
//! Values are written on one line each (a newline in a value would start a field of the
//! sender's choosing: newlines and carriage returns become spaces), and field names are the
//! callers' constants. A host without journald (no socket) gets nothing and the caller is told.

/// The journal's socket for native entries (systemd.journal-fields(7), "native protocol").
const SOCKET: &str = "/run/systemd/journal/socket";

/// A value on one line, as [`send`] writes it.
pub fn one_line(value: &str) -> String {
    value.replace(['\n', '\r'], " ")
}

/// Sends one entry made of `fields` (names in upper case, as journald wants them); returns
/// whether journald took it.
pub fn send(fields: &[(&str, &str)]) -> bool {
    let mut entry = String::new();
    for (name, value) in fields {
        debug_assert!(valid_name(name), "journal field name {name}");
        entry.push_str(name);
        entry.push('=');
        entry.push_str(&one_line(value));
        entry.push('\n');
    }
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else { return false };
    sock.send_to(entry.as_bytes(), SOCKET).is_ok()
}

/// journald's rule for a field name: upper-case letters, digits and `_`, not starting with `_`
/// or a digit (those are trusted fields journald adds itself).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_stay_on_one_line_so_they_cannot_add_fields() {
        assert_eq!(one_line("a\nPRIORITY=0\r\nMESSAGE_ID=x"), "a PRIORITY=0  MESSAGE_ID=x");
    }

    #[test]
    fn field_names_follow_journald() {
        assert!(valid_name("MESSAGE_ID") && valid_name("SANDBOX_VERDICT") && valid_name("X1"));
        assert!(!valid_name("_PID") && !valid_name("1X") && !valid_name("lower") && !valid_name(""));
    }
}
