//! aicontainers: AI model servers as rootless podman containers under systemd.
//!
//! This crate holds what the generator and `aictl` share: the service file format
//! ([`spec`]), how files are found and layered ([`source`]), accounts ([`account`]), rendering to
//! Quadlet ([`render`], [`quadlet`]), the generator pipeline ([`generate`]) and exports to other
//! systems ([`export`]: Kubernetes manifests).

pub mod account;
pub mod cdi;
pub mod civil;
pub mod diag;
pub mod doc;
pub mod export;
pub mod fsutil;
pub mod generate;
pub mod host;
pub mod model_use;
pub mod models;
pub mod names;
pub mod nvidia;
pub mod placement;
pub mod podman;
pub mod preflight;
pub mod quadlet;
pub mod render;
pub mod sandbox;
pub mod scan;
pub mod source;
pub mod spec;
pub mod topology;
pub mod unit;

pub use diag::Diagnostic;

/// Where `make install` puts `aictl`; the generator names it in the units of invalid services.
pub const AICTL_PATH: &str = match option_env!("AICONTAINERS_AICTL_PATH") {
    Some(p) => p,
    None => "/usr/bin/aictl",
};
