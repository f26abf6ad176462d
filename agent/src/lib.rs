//! aicontainersd, the aicontainers node agent: the live side of aicontainers on the system bus.
//!
//! The generator stays small and offline; everything that needs a running system lives here. The
//! agent loads the same service files as the generator (with the core library), follows each
//! service's unit through systemd's own D-Bus signals, and offers a versioned API:
//!
//! | object                                    | interface                   |
//! |-------------------------------------------|-----------------------------|
//! | `/org/aicontainers/Agent1`                | `org.aicontainers.Manager1`, `org.freedesktop.DBus.ObjectManager` |
//! | `/org/aicontainers/Agent1/service/<name>` | `org.aicontainers.Service1` |
//! | `/org/aicontainers/Agent1/models`         | `org.aicontainers.Models1`  |
//! | `/org/aicontainers/Agent1/job/<n>`        | `org.aicontainers.Job1`     |
//! | `/org/aicontainers/Agent1/image/sha256_<hex>` | `org.aicontainers.Image1` |
//!
//! Later kinds of objects get their own subtree and interface in the same scheme
//! (`.../preflight`, `.../sandbox/<id>`; long work as `Job1` objects): see
//! `docs/agent.md`.

pub mod audit;
pub mod auth;
pub mod cli;
pub mod errors;
pub mod image;
pub mod logging;
pub mod manager;
pub mod models;
pub mod names;
pub mod notify;
pub mod placement;
pub mod preflight;
pub mod scan;
pub mod service;
pub mod systemd;
pub mod units;
pub mod usage;

pub use errors::Error;
