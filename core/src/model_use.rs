//! Which services name which models: what `aictl model gc` and the agent's `Gc` keep, and what
//! `aictl model rm` refuses to remove. It sits above both the service format ([`crate::source`],
//! [`crate::spec`]) and the model cache ([`crate::models`]), so that neither imports the other's
//! caller: the cache knows nothing of service files.

use std::collections::BTreeSet;
use std::path::Path;

use crate::spec::Service;

/// The canonical sources a set of services names (what `gc` keeps).
pub fn sources_in_use(services: &[Service]) -> BTreeSet<String> {
    services.iter().flat_map(|s| s.models.iter().map(|m| m.source.canonical())).collect()
}

/// The model sources the service files in `dirs` name (what `gc` keeps), and the diagnostics of
/// files whose `[[model]]` sections cannot be read (what they name is then unknown). A service
/// with mistakes elsewhere still names its models.
pub fn named_by_services<P: AsRef<Path>>(dirs: &[P]) -> (BTreeSet<String>, Vec<String>) {
    let found = crate::source::discover(dirs);
    let mut keep = BTreeSet::new();
    let mut unreadable = Vec::new();
    for files in &found.services {
        match crate::source::models(files) {
            Ok(models) => keep.extend(models.iter().map(|m| m.source.canonical())),
            Err(diags) => unreadable.extend(diags.iter().map(|d| d.to_string())),
        }
    }
    (keep, unreadable)
}
