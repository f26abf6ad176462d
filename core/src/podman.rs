//! The installed podman's version, as its Quadlet reports it: rendering gates keys on it and
//! preflight checks the keys a service uses against it.

use serde::Serialize;

/// A podman version, as `quadlet -version` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PodmanVersion(pub u32, pub u32, pub u32);

impl PodmanVersion {
    /// The first podman with Quadlet.
    pub const MIN: PodmanVersion = PodmanVersion(4, 4, 0);

    /// Finds the first `X.Y[.Z]` in a version banner.
    pub fn parse(text: &str) -> Option<Self> {
        text.split(|c: char| !(c.is_ascii_digit() || c == '.')).find_map(|word| {
            let mut parts = word.split('.').map(|p| p.parse::<u32>());
            let major = parts.next()?.ok()?;
            let minor = parts.next()?.ok()?;
            let patch = parts.next().and_then(Result::ok).unwrap_or(0);
            Some(PodmanVersion(major, minor, patch))
        })
    }
}

impl std::fmt::Display for PodmanVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}
