//! Sandboxed services (`[sandbox]`): an egress allowlist the kernel enforces, an ephemeral
//! read-only root, no capabilities and bounded resources. docs/sandbox.md has the design and
//! the threat model.
//!
//! - [`egress`]: the allowlist entries of the format.
//! - [`nft`]: the nftables rulesets that enforce them.
//! - [`resolve`]: names resolved on the host when a service starts, pinned into its container.
//! - [`dns`]: the TTL of those names, for the keeper that re-resolves them.
//! - [`audit`]: the rules' verdicts, parsed from the kernel's log lines.
//! - [`record`]: the allow set as resolved at start, for the node agent.

pub mod audit;
pub mod dns;
pub mod egress;
pub mod nft;
pub mod record;
pub mod resolve;

pub use egress::{Egress, Host, Proto};

/// The slice every sandboxed service runs in (shipped in `units/`).
pub const SLICE: &str = "aicontainers-agents.slice";

/// The keeper (`aictl sandbox keep`, root): re-resolves the names of running sandboxed
/// services on their TTL and puts the tables back when they are deleted. Every sandboxed unit
/// wants it; it stops when none is left.
pub const KEEPER_UNIT: &str = "aicontainers-sandbox.service";

/// The longest service name a sandbox takes: it appears in nftables log prefixes, which the
/// kernel cuts at 127 bytes.
pub const NAME_MAX: usize = 64;
