//! Following the services' units in systemd with a cost that does not grow with the number of
//! services, so that a node with thousands of services stays within the system bus's limits
//! (Debian's `system.conf`: 512 match rules and 128 pending replies per connection).
//!
//! - **One match rule** for the state of every unit: `PropertiesChanged` of
//!   `org.freedesktop.systemd1.Unit`, sent by systemd below its unit path namespace. The agent
//!   picks out its own units by object path ([`Units`] maps each unit path to its service).
//! - **Batched reads**: unit states are read with `ListUnitsByNames` (which also loads units systemd
//!   has not loaded yet, as `LoadUnit` does), [`CHUNK`] names per call, and every call to systemd
//!   holds one of [`SYSTEMD_CALLS`] permits, far below the bus's pending-reply limit.
//! - **The newer state wins**: each unit's state remembers the serial number of the systemd
//!   message it came from (systemd numbers its messages in order). A signal that was queued while
//!   a read was under way, but sent before the read's reply, is older than that reply and is
//!   dropped; a read that is overtaken by a later signal does not undo it.
//! - **Nothing here waits for a reply while it holds up the connection**: the signal loop only
//!   updates memory and sends signals (zbus stops reading the socket while a stream's queue is
//!   full, so a loop that awaited a reply there could wait for ever).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::StreamExt;
use zbus::fdo::{DBusProxy, Properties};
use zbus::message::Message;
use zbus::names::{BusName, InterfaceName, OwnedUniqueName};
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};
use zbus::{Connection, MatchRule, MessageStream};

use crate::names::SERVICE_INTERFACE;
use crate::systemd::{UnitState, SYSTEMD, UNIT_INTERFACE};

/// The object path below which systemd puts its units.
pub const UNIT_PATH_NAMESPACE: &str = "/org/freedesktop/systemd1/unit";
/// Unit names per `ListUnitsByNames` call: a reply of a few tens of KiB.
pub const CHUNK: usize = 200;
/// Calls to systemd that the agent has in flight at most (the system bus refuses a connection's
/// 129th pending call: `max_replies_per_connection` is 128).
pub const SYSTEMD_CALLS: usize = 16;
/// Unit signals queued for the signal loop before zbus stops reading the socket.
const QUEUE: usize = 4096;

/// The live state of one service's unit, shared by its object and [`Units`].
#[derive(Debug)]
pub struct Live {
    pub state: UnitState,
    /// The serial of systemd's message that `state` comes from; 0 before the first read.
    serial: u32,
    /// Runs of the unit that systemd ended because of an OOM kill, seen since the agent started.
    pub oom_stops: u64,
}

impl Live {
    /// A unit whose state has not been read yet: `unknown`.
    pub fn unknown() -> Arc<Mutex<Live>> {
        let unknown = UnitState { active: "unknown".into(), sub: "unknown".into(), load: "unknown".into() };
        Arc::new(Mutex::new(Live { state: unknown, serial: 0, oom_stops: 0 }))
    }
}

/// systemd's object path of the unit `unit` (systemd escapes unit names as
/// [`crate::names::service_path`] does).
pub fn unit_path(unit: &str) -> String {
    format!("{UNIT_PATH_NAMESPACE}/{}", crate::names::escape_path_element(unit))
}

/// A change of a unit's state: the fields systemd sent (a read sends them all).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub active: Option<String>,
    pub sub: Option<String>,
    pub load: Option<String>,
}

impl Change {
    /// Every field of `state`.
    pub fn all(state: UnitState) -> Change {
        Change { active: Some(state.active), sub: Some(state.sub), load: Some(state.load) }
    }
}

/// Applies `change` from systemd's message `serial` to `live` unless `live` is newer. Returns the
/// properties of `org.aicontainers.Service1` that changed, with their new values.
pub fn apply(live: &Mutex<Live>, change: Change, serial: u32) -> Vec<(&'static str, String)> {
    let mut live = live.lock().unwrap_or_else(PoisonError::into_inner);
    if serial <= live.serial {
        return Vec::new();
    }
    live.serial = serial;
    let mut changed = Vec::new();
    let state = &mut live.state;
    for (name, new, old) in [
        ("State", change.active, &mut state.active),
        ("SubState", change.sub, &mut state.sub),
        ("LoadState", change.load, &mut state.load),
    ] {
        if let Some(new) = new {
            if *old != new {
                changed.push((name, new.clone()));
                *old = new;
            }
        }
    }
    changed
}

/// Emits `PropertiesChanged` of `org.aicontainers.Service1` on `path` for `changed`, without
/// touching the object itself (whose lock a long `Start` may hold).
pub async fn emit(conn: &Connection, path: &str, changed: &[(&'static str, String)]) -> zbus::Result<()> {
    if changed.is_empty() {
        return Ok(());
    }
    emit_values(conn, path, changed.iter().map(|(k, v)| (*k, Value::from(v.as_str()))).collect()).await
}

/// Emits `PropertiesChanged` of `org.aicontainers.Service1` on `path` with `values`.
pub async fn emit_values(conn: &Connection, path: &str, values: HashMap<&str, Value<'_>>) -> zbus::Result<()> {
    let emitter = SignalEmitter::new(conn, path)?;
    Properties::properties_changed(
        &emitter,
        InterfaceName::from_static_str_unchecked(SERVICE_INTERFACE),
        values,
        Cow::Borrowed(&[]),
    )
    .await
}

struct Watched {
    live: Arc<Mutex<Live>>,
    /// The service's object path once its object is on the bus (changes are signalled from then).
    object: Option<String>,
}

/// Every unit the agent follows, by systemd's object path of the unit.
pub struct Units {
    conn: Connection,
    watched: Mutex<HashMap<String, Watched>>,
    /// Permits for calls to systemd (see [`SYSTEMD_CALLS`]).
    pub calls: Arc<tokio::sync::Semaphore>,
    /// Where the name of each followed unit that becomes active goes ([`Units::on_start`]).
    starts: Mutex<Option<tokio::sync::mpsc::UnboundedSender<String>>>,
}

impl std::fmt::Debug for Units {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Units").finish_non_exhaustive()
    }
}

/// One unit's state as a read returned it, with the serial of the reply it came in.
#[derive(Clone, Debug)]
pub struct Read {
    pub unit: String,
    pub path: String,
    pub state: UnitState,
    pub serial: u32,
}

/// `ListUnitsByNames`' entries: name, description, load, active, sub state, followed unit, unit
/// path, job id, job type, job path.
type Listed = Vec<(String, String, String, String, String, String, OwnedObjectPath, u32, String, OwnedObjectPath)>;

impl Units {
    pub fn new(conn: Connection) -> Arc<Units> {
        Arc::new(Units {
            conn,
            watched: Mutex::new(HashMap::new()),
            calls: Arc::new(tokio::sync::Semaphore::new(SYSTEMD_CALLS)),
            starts: Mutex::new(None),
        })
    }

    fn watched(&self) -> std::sync::MutexGuard<'_, HashMap<String, Watched>> {
        self.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows the unit at `unit_path` into `live` (its object is not on the bus yet).
    pub fn watch(&self, unit_path: &str, live: Arc<Mutex<Live>>) {
        self.watched().insert(unit_path.to_owned(), Watched { live, object: None });
    }

    /// From now on, changes of the unit at `unit_path` are signalled on the object at `object`.
    pub fn attach(&self, unit_path: &str, object: &str) {
        if let Some(w) = self.watched().get_mut(unit_path) {
            w.object = Some(object.to_owned());
        }
    }

    /// From now on, the name of each followed unit that becomes active ([`began_a_run`]) is sent
    /// to `tx` (without waiting: the signal loop must not).
    pub fn on_start(&self, tx: tokio::sync::mpsc::UnboundedSender<String>) {
        *self.starts.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
    }

    /// The ActiveState of the unit at `unit_path`, when it is followed.
    pub fn active_state(&self, unit_path: &str) -> Option<String> {
        let watched = self.watched();
        let live = watched.get(unit_path)?.live.lock().unwrap_or_else(PoisonError::into_inner);
        Some(live.state.active.clone())
    }

    pub fn unwatch(&self, unit_path: &str) {
        self.watched().remove(unit_path);
    }

    /// How many units are followed.
    pub fn len(&self) -> usize {
        self.watched().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies `change` (from systemd's message `serial`) to the unit at `unit_path`, and signals
    /// what changed when its object is on the bus.
    async fn update(&self, unit_path: &str, change: Change, serial: u32) {
        let (live, object) = match self.watched().get(unit_path) {
            Some(w) => (w.live.clone(), w.object.clone()),
            None => return,
        };
        let before = live.lock().unwrap_or_else(PoisonError::into_inner).state.clone();
        let changed = apply(&live, change, serial);
        let after = live.lock().unwrap_or_else(PoisonError::into_inner).state.clone();
        if ended_a_run(&before, &after) {
            self.count_oom_stop(unit_path, live.clone());
        }
        if began_a_run(&before, &after) {
            if let (Some(tx), Some(unit)) =
                (self.starts.lock().unwrap_or_else(PoisonError::into_inner).as_ref(), unit_name_of(unit_path))
            {
                let _ = tx.send(unit);
            }
        }
        if let Some(object) = object {
            if let Err(e) = emit(&self.conn, &object, &changed).await {
                log::warn!("cannot signal the state of {object}: {e}");
            }
        }
    }

    /// Asks systemd, off the signal loop, why the run of the unit at `unit_path` ended, and counts
    /// it in `live` when the reason was an OOM kill (`Result` `oom-kill`): its cgroup, and the
    /// kills counted there, are gone with it.
    fn count_oom_stop(&self, unit_path: &str, live: Arc<Mutex<Live>>) {
        let (conn, path) = (self.conn.clone(), unit_path.to_owned());
        let units = self.calls.clone();
        tokio::spawn(async move {
            let result = {
                let _permit = units.acquire().await;
                conn.call_method(
                    Some(SYSTEMD),
                    path.as_str(),
                    Some("org.freedesktop.DBus.Properties"),
                    "Get",
                    &(crate::systemd::SERVICE_UNIT_INTERFACE, "Result"),
                )
                .await
            };
            let result = result
                .and_then(|reply| reply.body().deserialize::<OwnedValue>())
                .and_then(|v| String::try_from(v).map_err(zbus::Error::from));
            match result {
                Ok(r) if r == "oom-kill" => {
                    log::warn!("{path}: systemd ended the unit's run after an OOM kill");
                    live.lock().unwrap_or_else(PoisonError::into_inner).oom_stops += 1;
                }
                Ok(_) => {}
                Err(e) => log::debug!("cannot read the Result of {path}: {}", crate::systemd::describe(&e)),
            }
        });
    }

    /// Reads the state of `units` (unit names) from systemd in batches, and applies what it read.
    /// Returns one line per batch that failed, for the agent's problems.
    pub async fn refresh(&self, units: &[String]) -> Vec<String> {
        let batches = futures_util::future::join_all(units.chunks(CHUNK).map(|chunk| self.read(chunk))).await;
        let mut problems = Vec::new();
        for (chunk, batch) in units.chunks(CHUNK).zip(batches) {
            match batch {
                Ok(reads) => {
                    for read in reads {
                        self.update(&read.path, Change::all(read.state), read.serial).await;
                    }
                }
                Err(e) => problems.push(format!(
                    "cannot read the state of {} units ({} ... {}) from systemd: {}",
                    chunk.len(),
                    chunk[0],
                    chunk[chunk.len() - 1],
                    crate::systemd::describe(&e)
                )),
            }
        }
        problems
    }

    /// One `ListUnitsByNames` call (holding one of [`Units::calls`]).
    pub async fn read(&self, units: &[String]) -> zbus::Result<Vec<Read>> {
        let _permit = self.calls.acquire().await.map_err(|e| zbus::Error::Failure(e.to_string()))?;
        let reply: Message = self
            .conn
            .call_method(
                Some(SYSTEMD),
                "/org/freedesktop/systemd1",
                Some("org.freedesktop.systemd1.Manager"),
                "ListUnitsByNames",
                &(units,),
            )
            .await?;
        let serial = reply.primary_header().serial_num().get();
        let listed: Listed = reply.body().deserialize()?;
        Ok(listed
            .into_iter()
            .map(|(unit, _, load, active, sub, _, path, _, _, _)| Read {
                unit,
                path: path.to_string(),
                state: UnitState { active, sub, load },
                serial,
            })
            .collect())
    }

    /// Adds the one match rule for every unit's `PropertiesChanged` and starts the loop that
    /// follows them. Returns once the rule is in place: a read made after that misses nothing.
    pub async fn follow(self: Arc<Self>) -> zbus::Result<tokio::task::JoinHandle<()>> {
        let rule = MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender(SYSTEMD)?
            .interface("org.freedesktop.DBus.Properties")?
            .member("PropertiesChanged")?
            .path_namespace(UNIT_PATH_NAMESPACE)?
            .arg(0, UNIT_INTERFACE)?
            .build();
        let changes = MessageStream::for_match_rule(rule, &self.conn, Some(QUEUE)).await?;
        // The rule's sender is checked by the bus for broadcasts, but a signal sent to the agent
        // directly reaches it whatever its rules say: check the sender here too.
        let dbus = DBusProxy::new(&self.conn).await?;
        let owners = dbus.receive_name_owner_changed_with_args(&[(0, SYSTEMD)]).await?;
        let owner = dbus.get_name_owner(BusName::from_static_str(SYSTEMD)?).await.ok();
        Ok(tokio::spawn(self.run(changes, owners, owner)))
    }

    async fn run(
        self: Arc<Self>,
        mut changes: MessageStream,
        mut owners: zbus::fdo::NameOwnerChangedStream,
        mut owner: Option<OwnedUniqueName>,
    ) {
        loop {
            tokio::select! {
                message = changes.next() => match message {
                    Some(Ok(message)) => self.on_signal(&message, owner.as_ref()).await,
                    Some(Err(e)) => log::debug!("unit signal stream: {e}"),
                    None => return,
                },
                moved = owners.next() => {
                    let Some(moved) = moved else { return };
                    let Ok(args) = moved.args() else { continue };
                    owner = args.new_owner().as_ref().map(|n| OwnedUniqueName::from(n.to_owned()));
                    // systemd re-executed (or came back): its serials start again, and signals may
                    // have been missed. Read every unit again, off this loop.
                    self.restart_serials();
                    if owner.is_some() {
                        log::info!("systemd is back on the bus as {}; reading every unit again", owner.as_ref().map(|o| o.as_str()).unwrap_or_default());
                        let units = self.clone();
                        tokio::spawn(async move {
                            let names = units.unit_names();
                            for problem in units.refresh(&names).await {
                                log::warn!("{problem}");
                            }
                        });
                    }
                }
            }
        }
    }

    fn restart_serials(&self) {
        for w in self.watched().values() {
            w.live.lock().unwrap_or_else(PoisonError::into_inner).serial = 0;
        }
    }

    /// The unit name of each followed unit, from its path (`ListUnitsByNames` wants names).
    fn unit_names(&self) -> Vec<String> {
        self.watched().keys().filter_map(|p| unit_name_of(p)).collect()
    }

    async fn on_signal(self: &Arc<Self>, message: &Message, owner: Option<&OwnedUniqueName>) {
        let header = message.header();
        if owner.is_none() || header.sender().map(|s| s.as_str()) != owner.map(|o| o.as_str()) {
            log::debug!("ignored a unit signal from {:?}: not systemd", header.sender());
            return;
        }
        let Some(path) = header.path() else { return };
        let body = message.body();
        let Ok((interface, changed, invalidated)) =
            body.deserialize::<(String, HashMap<String, OwnedValue>, Vec<String>)>()
        else {
            return;
        };
        if interface != UNIT_INTERFACE {
            return;
        }
        let text = |key: &str| changed.get(key).and_then(|v| String::try_from(v.try_clone().ok()?).ok());
        let change = Change { active: text("ActiveState"), sub: text("SubState"), load: text("LoadState") };
        let serial = message.primary_header().serial_num().get();
        if change != Change::default() {
            self.update(path.as_str(), change, serial).await;
        }
        // systemd sends these three with their values; should one come as invalidated, read it.
        if invalidated.iter().any(|p| ["ActiveState", "SubState", "LoadState"].contains(&p.as_str())) {
            if let Some(name) = unit_name_of(path.as_str()) {
                let units = self.clone();
                tokio::spawn(async move {
                    log::debug!("{name}: state invalidated; reading it");
                    for problem in units.refresh(&[name]).await {
                        log::warn!("{problem}");
                    }
                });
            }
        }
    }
}

/// Whether the change from `before` to `after` ends a run of the unit: it stopped or failed, or
/// waits to be restarted. The first reading (from `unknown`) ends nothing the agent saw.
pub fn ended_a_run(before: &UnitState, after: &UnitState) -> bool {
    let ended = |s: &UnitState| s.active == "inactive" || s.active == "failed" || s.sub == "auto-restart";
    before.active != "unknown" && !ended(before) && ended(after)
}

/// Whether the change from `before` to `after` starts a run of the unit: it became active from
/// anything but active or reloading. The first reading (from `unknown`) starts nothing the
/// agent saw.
pub fn began_a_run(before: &UnitState, after: &UnitState) -> bool {
    after.active == "active" && !["unknown", "active", "reloading"].contains(&before.active.as_str())
}

/// The unit name for systemd's unit object path (the inverse of its escaping), if it is one.
pub fn unit_name_of(path: &str) -> Option<String> {
    let element = path.strip_prefix(UNIT_PATH_NAMESPACE)?.strip_prefix('/')?;
    crate::names::unescape_path_element(element)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(active: &str) -> Change {
        Change { active: Some(active.into()), ..Change::default() }
    }

    #[test]
    fn the_newer_message_wins() {
        let live = Live::unknown();
        let read = Change::all(UnitState { active: "inactive".into(), sub: "dead".into(), load: "loaded".into() });
        let changed = apply(&live, read, 10);
        assert_eq!(changed.len(), 3, "{changed:?}");
        // A signal sent before the read's reply, handled after it: older, dropped.
        assert!(apply(&live, change("active"), 9).is_empty());
        assert_eq!(live.lock().unwrap().state.active, "inactive");
        // A later signal applies; a read overtaken by it does not undo it.
        assert_eq!(apply(&live, change("active"), 11), vec![("State", "active".to_owned())]);
        assert!(apply(&live, change("inactive"), 10).is_empty());
        // Only what changed is reported.
        assert!(apply(&live, change("active"), 12).is_empty());
    }

    #[test]
    fn runs_begin_when_a_unit_becomes_active() {
        let state = |active: &str| UnitState { active: active.into(), sub: String::new(), load: "loaded".into() };
        for (before, after, began) in [
            ("activating", "active", true),
            ("inactive", "active", true),
            ("failed", "active", true),
            ("unknown", "active", false),
            ("active", "active", false),
            ("reloading", "active", false),
            ("inactive", "activating", false),
            ("active", "deactivating", false),
        ] {
            assert_eq!(began_a_run(&state(before), &state(after)), began, "{before} -> {after}");
        }
    }

    #[test]
    fn unit_paths_back_to_names() {
        assert_eq!(unit_name_of("/org/freedesktop/systemd1/unit/web_2eservice").as_deref(), Some("web.service"));
        assert_eq!(unit_name_of("/org/freedesktop/systemd1/unit/_30day_2eservice").as_deref(), Some("0day.service"));
        for hostile in [
            "/org/freedesktop/systemd1/unitx/a",
            "/org/freedesktop/systemd1/unit",
            "/x",
            "/org/freedesktop/systemd1/unit/a_zz",
        ] {
            assert_eq!(unit_name_of(hostile), None, "{hostile}");
        }
    }
}
