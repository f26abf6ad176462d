//! The agent's typed D-Bus errors: `org.aicontainers.Error.*`.

use zbus::DBusError;

/// Every error the agent replies with. Clients match on the name; the message says what to do.
#[derive(Debug, DBusError)]
#[zbus(prefix = "org.aicontainers.Error")]
pub enum Error {
    /// An error of the D-Bus layer itself.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// No such service (or other object).
    NotFound(String),
    /// The caller may not do this: not root, and polkit did not authorize it (or is not running).
    AccessDenied(String),
    /// An argument is malformed (a model source that cannot be parsed, ...).
    InvalidArgs(String),
    /// systemd refused the request, its job did not finish with `done`, or the model cache failed.
    Failed(String),
}
