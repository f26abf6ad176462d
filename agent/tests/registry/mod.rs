//! The registry fixture shared with aictl's model tests.

#[path = "../../../tests/support/registry.rs"]
mod shared;
pub use shared::*;
