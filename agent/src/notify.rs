//! The service manager's notification protocol (`sd_notify(3)`): READY, STATUS, WATCHDOG.
//!
//! A datagram to `$NOTIFY_SOCKET`; no library needed, and no unsafe code.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends `state` (e.g. `READY=1\nSTATUS=...`) to the service manager. `Ok(false)` when not run
/// by one (`$NOTIFY_SOCKET` unset).
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    match path.as_bytes().strip_prefix(b"@") {
        Some(abstract_name) => {
            socket.send_to_addr(state.as_bytes(), &SocketAddr::from_abstract_name(abstract_name)?)?
        }
        None => socket.send_to(state.as_bytes(), &path)?,
    };
    Ok(true)
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when the watchdog is on and meant
/// for this process (`$WATCHDOG_PID`, if set, is ours).
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_str()?.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
