//! Where a model comes from: the `source` of a `[[model]]`, parsed and checked, and the names
//! derived from it (the systemd unit instance that pulls it, the directory under `refs/` that
//! units mount).

use std::fmt;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::digest::Digest;

/// The template unit that pulls one source (`aicontainers-model@INSTANCE.service`).
pub const UNIT_TEMPLATE: &str = "aicontainers-model@";

/// A checked model source. [`Source::canonical`] is its one spelling: every service naming the
/// same model shares the same unit instance and the same ref.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// `oci://HOST[:PORT]/REPO(:TAG|@sha256:HEX)`.
    Oci { registry: String, repository: String, reference: OciReference },
    /// `hf://ORG/REPO[@REVISION]`.
    Hf { repo: String, revision: String },
    /// `https://...` pinned by the SHA-256 of the file.
    Https { url: String, sha256: Digest },
    /// `file:///PATH`: a file or a directory on this host.
    File { path: String },
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OciReference {
    Tag(String),
    Digest(Digest),
}

impl fmt::Display for OciReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OciReference::Tag(t) => write!(f, ":{t}"),
            OciReference::Digest(d) => write!(f, "@{d}"),
        }
    }
}

/// The longest unit name systemd accepts.
const UNIT_NAME_MAX: usize = 255;

const EXAMPLES: &str = "oci://HOST[:PORT]/REPO:TAG, oci://HOST/REPO@sha256:HEX, hf://ORG/REPO[@REVISION], https://HOST/PATH (with sha256), file:///PATH";

impl Source {
    /// Parses a source as written in a service file or on the command line. `sha256` is the pin
    /// of an `https://` source (the `sha256` key); it may also be written as `#sha256=HEX`.
    pub fn parse(text: &str, sha256: Option<&str>) -> Result<Source, String> {
        if text.chars().any(|c| c.is_control() || c.is_whitespace() || "\\%\"'`$".contains(c)) {
            return Err(format!(
                "`{}`: a model source has no spaces, control characters, quotes, `\\`, `%` or `$`",
                text.escape_debug()
            ));
        }
        let source = if let Some(rest) = text.strip_prefix("oci://") {
            parse_oci(rest).map_err(|why| format!("`{text}`: {why}"))?
        } else if let Some(rest) = text.strip_prefix("hf://") {
            let (repo, revision) = match rest.split_once('@') {
                Some((repo, rev)) => (repo, rev),
                None => (rest, "main"),
            };
            check_hf_repo(repo).map_err(|why| format!("`{text}`: {why}"))?;
            if revision.is_empty()
                || revision.len() > 128
                || !revision.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return Err(format!("`{text}`: `{revision}` is not a revision (a branch, tag or commit: letters, digits, `.`, `_`, `-`)"));
            }
            Source::Hf { repo: repo.to_owned(), revision: revision.to_owned() }
        } else if text.starts_with("https://") || text.starts_with("http://") {
            let (url, fragment) = match text.split_once('#') {
                Some((url, f)) => (url, Some(f)),
                None => (text, None),
            };
            let from_fragment = fragment.map(|f| {
                f.strip_prefix("sha256=").ok_or_else(|| format!("`{text}`: the only fragment allowed is #sha256=HEX"))
            });
            let pin = match (sha256, from_fragment) {
                (Some(s), None) => s.to_owned(),
                (None, Some(f)) => f?.to_owned(),
                (Some(s), Some(f)) if f.as_deref().ok() == Some(s) => s.to_owned(),
                (Some(_), Some(_)) => return Err(format!("`{text}`: the sha256 key and #sha256= disagree")),
                (None, None) => {
                    return Err(format!("`{text}`: an https:// model must be pinned: add sha256 = \"HEX\" (the file's SHA-256, as `sha256sum` prints it)"))
                }
            };
            let sha256 = Digest::parse(&format!("sha256:{}", pin.strip_prefix("sha256:").unwrap_or(&pin)))
                .map_err(|why| format!("`{text}`: sha256: {why}"))?;
            let host_and_path = url.split_once("://").map_or("", |(_, r)| r);
            let (host, path) = host_and_path.split_once('/').unwrap_or((host_and_path, ""));
            check_host(host).map_err(|why| format!("`{text}`: {why}"))?;
            if file_name_of_url(url).is_none() {
                return Err(format!(
                    "`{text}`: the URL must end in a file name (it names the file in the model's directory)"
                ));
            }
            let _ = path;
            Source::Https { url: url.to_owned(), sha256 }
        } else if let Some(path) = text.strip_prefix("file://") {
            if !path.starts_with('/') || path.split('/').any(|c| c == ".." || c == ".") || path.contains("//") {
                return Err(format!("`{text}`: expected file:///ABSOLUTE/PATH without `.`, `..` or `//`"));
            }
            Source::File { path: path.trim_end_matches('/').to_owned() }
        } else {
            return Err(format!("`{text}` is not a model source (expected one of {EXAMPLES})"));
        };
        if source.unit().len() > UNIT_NAME_MAX {
            return Err(format!("`{text}`: too long (its systemd unit name would exceed {UNIT_NAME_MAX} characters)"));
        }
        Ok(source)
    }

    /// The one spelling of this source; [`Source::parse`] reads it back.
    pub fn canonical(&self) -> String {
        match self {
            Source::Oci { registry, repository, reference } => format!("oci://{registry}/{repository}{reference}"),
            Source::Hf { repo, revision } => format!("hf://{repo}@{revision}"),
            Source::Https { url, sha256 } => format!("{url}#sha256={}", sha256.hex()),
            Source::File { path } => format!("file://{path}"),
        }
    }

    /// The instance of `aicontainers-model@.service` that pulls this source: the canonical
    /// spelling escaped as `systemd-escape` does, so `%I` in the unit gives it back.
    pub fn instance(&self) -> String {
        systemd_escape(&self.canonical())
    }

    /// `aicontainers-model@INSTANCE.service`.
    pub fn unit(&self) -> String {
        format!("{UNIT_TEMPLATE}{}.service", self.instance())
    }

    /// The name of this source's entry under `refs/`: readable, safe in any path and unit file
    /// line (no `\`, `%`, `:`), and unique (a hash of the canonical spelling ends it).
    pub fn ref_name(&self) -> String {
        let canonical = self.canonical();
        let body = canonical.split_once("://").map_or(canonical.as_str(), |(_, r)| r);
        let body = body.split('#').next().unwrap_or(body);
        let mut slug: String = body
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' { c } else { '-' })
            .collect();
        slug = slug.trim_matches(|c| c == '-' || c == '.').to_owned();
        slug.truncate(80);
        let scheme = match self {
            Source::Oci { .. } => "oci",
            Source::Hf { .. } => "hf",
            Source::Https { .. } => "https",
            Source::File { .. } => "file",
        };
        let hash = Sha256::digest(canonical.as_bytes());
        let short: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("{scheme}-{slug}-{short}")
    }

    /// A short default name for the model: the last part of its repository or path.
    pub fn short_name(&self) -> String {
        let path = match self {
            Source::Oci { repository, .. } => repository.as_str(),
            Source::Hf { repo, .. } => repo.as_str(),
            Source::Https { url, .. } => url.as_str(),
            Source::File { path } => path.as_str(),
        };
        path.rsplit('/').next().unwrap_or(path).to_owned()
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// The last segment of a URL's path, when it can name a file.
pub(crate) fn file_name_of_url(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next()?;
    let after_host = path.split_once("://")?.1;
    let (_, path) = after_host.split_once('/')?;
    let name = path.rsplit('/').next()?;
    super::paths::check_relative(name).ok()?;
    Some(name.to_owned())
}

/// `HOST[:PORT]`: a DNS name or an IP address (IPv6 in brackets), and a port from 1 to 65535.
fn check_host(authority: &str) -> Result<(), String> {
    let (host, _port) = super::authority::split_host_port(authority)?;
    let ok = host.len() <= 255
        && if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            v6.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b)) && !host.starts_with(['-', '.'])
        };
    if ok {
        Ok(())
    } else {
        Err(format!("`{authority}` is not a host name[:port]"))
    }
}

fn parse_oci(rest: &str) -> Result<Source, String> {
    let (registry, path) = rest.split_once('/').ok_or("expected oci://HOST[:PORT]/REPOSITORY:TAG")?;
    check_host(registry)?;
    let (repository, reference) =
        if let Some((repo, digest)) = path.split_once('@') {
            (repo, OciReference::Digest(Digest::parse(digest)?))
        } else {
            // The tag follows the last `:` after the last `/`.
            let slash = path.rfind('/').map_or(0, |i| i + 1);
            match path[slash..].rfind(':') {
                Some(i) => {
                    let tag = &path[slash + i + 1..];
                    let ok = !tag.is_empty()
                        && tag.len() <= 128
                        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                        && !tag.starts_with(['.', '-']);
                    if !ok {
                        return Err(format!("`{tag}` is not a tag (letters, digits, `.`, `_`, `-`, at most 128)"));
                    }
                    (&path[..slash + i], OciReference::Tag(tag.to_owned()))
                }
                None => return Err(
                    "name a tag (`:TAG`) or a digest (`@sha256:HEX`): a model is never pulled by an implied `latest`"
                        .into(),
                ),
            }
        };
    // The distribution spec's repository grammar: lower-case components separated by `/`.
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
    };
    if repository.len() > 255 || !repository.split('/').all(component_ok) {
        return Err(format!("`{repository}` is not a repository name (lower-case letters, digits and `._-`, components separated by `/`)"));
    }
    Ok(Source::Oci { registry: registry.to_owned(), repository: repository.to_owned(), reference })
}

fn check_hf_repo(repo: &str) -> Result<(), String> {
    let parts: Vec<&str> = repo.split('/').collect();
    let ok = (1..=2).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 96
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && !p.starts_with(['.', '-'])
                && !p.contains("..")
        });
    if ok {
        Ok(())
    } else {
        Err(format!("`{repo}` is not a Hugging Face repository (ORG/NAME)"))
    }
}

/// `systemd-escape STRING`: `/` becomes `-`; bytes other than ASCII letters, digits, `:`, `_`
/// and `.` (and a leading `.`) become `\xNN`.
pub fn systemd_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'.' => out.push(b as char),
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// The inverse of [`systemd_escape`] (what `%I` and `systemd-escape -u` give).
pub fn systemd_unescape(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'-' => out.push(b'/'),
            b'\\' => {
                let hex = s.get(i + 2..i + 4).filter(|_| bytes.get(i + 1) == Some(&b'x'));
                let value = hex
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("`{s}`: bad escape at byte {i}"))?;
                out.push(value);
                i += 3;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` does not unescape to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    #[test]
    fn oci_sources() {
        let s = Source::parse("oci://registry.example:5000/models/mistral-7b:q4_k", None).expect("parses");
        assert_eq!(s.canonical(), "oci://registry.example:5000/models/mistral-7b:q4_k");
        assert_eq!(s.short_name(), "mistral-7b");
        let by_digest = format!("oci://localhost/m@sha256:{HEX}");
        assert_eq!(Source::parse(&by_digest, None).expect("parses").canonical(), by_digest);
        assert!(Source::parse("oci://localhost/m", None).is_err_and(|e| e.contains("latest")));
        assert!(Source::parse("oci://localhost/Upper:1", None).is_err());
        assert!(Source::parse("oci://localhost/../x:1", None).is_err());
        assert!(Source::parse("oci://localhost/m@sha256:abc", None).is_err());
    }

    #[test]
    fn https_needs_a_pin() {
        assert!(Source::parse("https://example.org/m.gguf", None).is_err_and(|e| e.contains("pinned")));
        let s = Source::parse("https://example.org/x/m.gguf", Some(HEX)).expect("parses");
        assert_eq!(s.canonical(), format!("https://example.org/x/m.gguf#sha256={HEX}"));
        assert_eq!(Source::parse(&s.canonical(), None), Ok(s));
        assert!(Source::parse("https://example.org/", Some(HEX)).is_err());
        assert!(Source::parse("https://example.org/a/..", Some(HEX)).is_err());
    }

    #[test]
    fn hf_and_file() {
        assert_eq!(Source::parse("hf://org/repo", None).expect("parses").canonical(), "hf://org/repo@main");
        assert!(Source::parse("hf://org/../x", None).is_err());
        assert!(Source::parse("file://relative", None).is_err());
        assert!(Source::parse("file:///srv/../etc", None).is_err());
        assert_eq!(Source::parse("file:///srv/m/", None).expect("parses").canonical(), "file:///srv/m");
        assert!(Source::parse("ftp://x/y", None).is_err());
        assert!(Source::parse("oci://h/a b:1", None).is_err());
    }

    #[test]
    fn ports_outside_1_to_65535_are_refused() {
        for bad in ["0", "65536", "99999", "", "x", "-1", "18446744073709551696"] {
            let oci = format!("oci://reg.example:{bad}/m:1");
            assert!(Source::parse(&oci, None).is_err_and(|e| e.contains("1 to 65535")), "{oci}");
            let https = format!("https://reg.example:{bad}/m.gguf");
            assert!(Source::parse(&https, Some(HEX)).is_err(), "{https}");
        }
        assert!(Source::parse("oci://reg.example:65535/m:1", None).is_ok());
        assert!(Source::parse("oci://[::1]:5000/m:1", None).is_ok());
        assert!(Source::parse("oci://[::1:5000/m:1", None).is_err());
        assert!(Source::parse("oci://h:1:2/m:1", None).is_err());
    }

    #[test]
    fn escaping_matches_systemd_escape() {
        // `systemd-escape 'oci://127.0.0.1:5000/models/tiny-chat:v1'`
        let s = Source::parse("oci://127.0.0.1:5000/models/tiny-chat:v1", None).expect("parses");
        assert_eq!(s.instance(), "oci:--127.0.0.1:5000-models-tiny\\x2dchat:v1");
        assert_eq!(systemd_unescape(&s.instance()).as_deref(), Ok("oci://127.0.0.1:5000/models/tiny-chat:v1"));
        assert_eq!(systemd_escape(".a"), "\\x2ea");
        assert_eq!(s.unit(), "aicontainers-model@oci:--127.0.0.1:5000-models-tiny\\x2dchat:v1.service");
    }

    #[test]
    fn ref_names_are_plain_and_distinct() {
        let a = Source::parse("oci://h:5000/m/a:1", None).expect("parses").ref_name();
        let b = Source::parse("oci://h:5000/m-a:1", None).expect("parses").ref_name();
        assert_ne!(a, b);
        assert!(a.starts_with("oci-h-5000-m-a-1-"), "{a}");
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c)));
    }
}
