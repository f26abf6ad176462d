//! Image scans: what an image holds, and which advisories apply to it, offline.
//!
//! ```text
//! rootfs (unpacked image) --inventory--> Inventory --sbom--> CycloneDX 1.5 JSON (cached per digest)
//!                                           |
//! advisories dir (OSV JSON) --osv::Index--> match --> Findings (id, package, installed, fixed, severity)
//! trivy / grype JSON ------------------------------> Findings
//! ```
//!
//! - [`version`]: version order per ecosystem (dpkg, rpm, apk, PEP 440, SemVer), each checked
//!   against its own tool in the tests.
//! - [`rootfs`]: every read of an image's files goes through one directory handle with
//!   `openat2(RESOLVE_IN_ROOT)`: a link in the image resolves inside the image, never on the host.
//! - [`inventory`]: dpkg, apk, rpm (SQLite database), Python, npm, Go and Rust packages of a root filesystem.
//! - [`binaries`], [`elf`], [`gobuild`], [`auditable`]: Go modules and Rust crates embedded in
//!   executables.
//! - [`rpmdb`], [`bdb`]: rpm's SQLite and Berkeley DB databases and the package headers in them.
//! - [`sbom`]: the inventory as CycloneDX 1.5 JSON, and back (a rescan reads the cached SBOM).
//! - [`osv`]: OSV records indexed by ecosystem and package name; matching of an inventory.
//! - [`external`]: findings from trivy's and grype's JSON output.
//!
//! The invariant: a rescan needs only the cached SBOM and the advisories, never the image; and
//! nothing in an image (names, links, special files, sizes, bytes) can make a scan read outside
//! it, block, or run without bound.

pub mod auditable;
pub mod bdb;
pub mod binaries;
pub mod elf;
pub mod external;
pub mod gate;
pub mod gobuild;
pub mod inventory;
pub mod osv;
pub mod policy;
pub mod record;
pub mod rootfs;
pub mod rpmdb;
pub mod sbom;
pub mod version;

pub use inventory::{Ecosystem, Inventory, Package};
pub use osv::{Finding, Severity};
