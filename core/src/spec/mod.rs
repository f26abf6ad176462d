//! The service format, version 1: the typed form of a (merged) service file ([`types`]), and
//! the checks that turn a spanned TOML table into it: each section read by [`read`] through
//! the typed getters of [`section`], each value checked by [`check`].
//!
//! Every check reports at the place the offending key was written, in whichever layer that was,
//! and checking goes on after the first problem so a sysadmin sees every mistake in one run.

mod check;
mod read;
pub(crate) mod section;
mod types;

pub use check::{check_service_name, parse_duration};
pub use read::{from_table, models_only};
pub use types::*;
