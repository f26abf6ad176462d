//! Who may change the system: root, or whoever polkit authorizes.
//!
//! Reading is open to everyone (the D-Bus policy lets any caller use `Get`, `GetAll`,
//! `Introspect`, `GetManagedObjects` and the read-only methods). Every mutating method calls
//! [`authorize`] first: callers with UID 0 pass; anyone else is asked about with polkit's
//! `CheckAuthorization` (action [`crate::names::ACTION_MANAGE_SERVICES`]). When polkit is not
//! running or does not answer in time, non-root callers are refused with `AccessDenied`.

use std::collections::HashMap;
use std::time::Duration;

use zbus::message::{Flags, Header};
use zbus::zvariant::Value;
use zbus::{proxy, Connection};

use crate::errors::Error;

#[proxy(
    interface = "org.freedesktop.PolicyKit1.Authority",
    default_service = "org.freedesktop.PolicyKit1",
    default_path = "/org/freedesktop/PolicyKit1/Authority",
    gen_blocking = false
)]
trait Authority {
    #[allow(clippy::type_complexity)]
    fn check_authorization(
        &self,
        subject: &(&str, HashMap<&str, Value<'_>>),
        action_id: &str,
        details: HashMap<&str, &str>,
        flags: u32,
        cancellation_id: &str,
    ) -> zbus::Result<(bool, bool, HashMap<String, String>)>;
}

/// How long polkit may take to answer when it must not ask the user.
pub const POLKIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long polkit may take when the caller allowed it to ask for a password.
pub const POLKIT_INTERACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Questions to polkit in flight at most. Each is a pending reply that the system bus counts
/// against the agent (`max_replies_per_connection`, 128), and an interactive one may stay pending
/// for two minutes: together with the calls to systemd ([`crate::units::SYSTEMD_CALLS`]) they
/// stay below the limit however many callers there are.
pub const POLKIT_IN_FLIGHT: usize = 64;
static POLKIT_CALLS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(POLKIT_IN_FLIGHT);

/// polkit's `AllowUserInteraction` flag.
const ALLOW_USER_INTERACTION: u32 = 1;

/// Checks that the sender of the call in `header` may perform `action` (a polkit action id);
/// `what` says what the call does, for the error message. Returns the caller's UID.
pub async fn authorize(conn: &Connection, header: &Header<'_>, action: &str, what: &str) -> Result<u32, Error> {
    let sender = header.sender().ok_or_else(|| Error::AccessDenied("the call has no sender".into()))?.to_owned();
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    let uid = dbus
        .get_connection_unix_user(zbus::names::BusName::Unique(sender.as_ref()))
        .await
        .map_err(|e| Error::AccessDenied(format!("cannot tell who is calling: {e}")))?;
    if uid == 0 {
        return Ok(uid);
    }
    let interactive = header.primary().flags().contains(Flags::AllowInteractiveAuth);
    let limit = if interactive { POLKIT_INTERACTIVE_TIMEOUT } else { POLKIT_TIMEOUT };
    let denied = |why: String| Error::AccessDenied(format!("UID {uid} may not {what}: {why}"));
    let asked = tokio::time::timeout(limit, async {
        // Waits for a free permit rather than have the bus refuse the call (see POLKIT_CALLS).
        let _permit = POLKIT_CALLS.acquire().await.map_err(|e| zbus::Error::Failure(e.to_string()))?;
        check(conn, sender.as_str(), action, interactive).await
    })
    .await;
    match asked {
        Err(_) => Err(denied(format!("polkit did not answer within {} s; run it as root", limit.as_secs()))),
        Ok(Err(zbus::Error::MethodError(name, _, _)))
            if name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown"
                || name.as_str() == "org.freedesktop.DBus.Error.NameHasNoOwner" =>
        {
            Err(denied("polkit is not running on this system, so only root may do this".into()))
        }
        Ok(Err(e)) => Err(denied(format!("polkit could not decide: {}", crate::systemd::describe(&e)))),
        Ok(Ok((true, _, _))) => Ok(uid),
        Ok(Ok((false, true, _))) => Err(denied(format!(
            "polkit action {action} needs authentication; run it as root (sudo), or be in the aicontainers-admin group"
        ))),
        Ok(Ok((false, false, _))) => Err(denied(format!("polkit action {action} is not granted to this user"))),
    }
}

async fn check(
    conn: &Connection,
    sender: &str,
    action: &str,
    interactive: bool,
) -> zbus::Result<(bool, bool, HashMap<String, String>)> {
    let polkit = AuthorityProxy::builder(conn).cache_properties(zbus::proxy::CacheProperties::No).build().await?;
    let subject = ("system-bus-name", HashMap::from([("name", Value::from(sender))]));
    let flags = if interactive { ALLOW_USER_INTERACTION } else { 0 };
    polkit.check_authorization(&subject, action, HashMap::new(), flags, "").await
}
