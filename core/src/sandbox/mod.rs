//! Sandboxed services (`[sandbox]`): an egress allowlist the kernel enforces, an ephemeral
//! read-only root, no capabilities and bounded resources. docs/sandbox.md has the design and
//! the threat model.
//!
//! - [`egress`]: the allowlist entries of the format.
//! - [`nft`]: the nftables rulesets that enforce them.
//! - [`resolve`]: names resolved on the host when a service starts, pinned into its container.
//! - [`audit`]: the rules' verdicts, parsed from the kernel's log lines.
//! - [`record`]: the allow set as resolved at start, for the node agent.

pub mod audit;
pub mod egress;
pub mod nft;
pub mod record;
pub mod resolve;

pub use egress::{Egress, Host, Proto};

/// The slice every sandboxed service runs in (shipped in `units/`).
pub const SLICE: &str = "aicontainers-agents.slice";

/// The oneshot unit that installs the base tables before any sandboxed service starts.
pub const TABLES_UNIT: &str = "aicontainers-sandbox.service";

/// The longest service name a sandbox takes: it appears in nftables log prefixes, which the
/// kernel cuts at 127 bytes.
pub const NAME_MAX: usize = 64;
