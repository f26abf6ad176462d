//! Registry credentials from the files podman, skopeo and docker write (containers-auth.json(5)),
//! and the token dance of the distribution spec.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;

#[derive(Deserialize, Default)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
}

/// The auth files, first match wins: `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`
/// (for root `/run/containers/0/auth.json`), `~/.config/containers/auth.json`,
/// `~/.docker/config.json`.
pub fn auth_files() -> Vec<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut files = Vec::new();
    files.extend(var("REGISTRY_AUTH_FILE"));
    match var("XDG_RUNTIME_DIR") {
        Some(dir) => files.push(dir.join("containers/auth.json")),
        None if nix::unistd::geteuid().is_root() => files.push(PathBuf::from("/run/containers/0/auth.json")),
        None => {}
    }
    if let Some(home) = var("HOME") {
        files.push(home.join(".config/containers/auth.json"));
        files.push(home.join(".docker/config.json"));
    }
    files
}

/// User and password for `registry`/`repository`, from the first file with an entry for it.
/// Keys are tried most specific first: `host/repo/...`, then `host`, then URL forms.
pub fn credentials(registry: &str, repository: &str) -> Option<(String, String)> {
    credentials_in(&auth_files(), registry, repository)
}

pub fn credentials_in(files: &[PathBuf], registry: &str, repository: &str) -> Option<(String, String)> {
    let mut keys: Vec<String> = Vec::new();
    let parts: Vec<&str> = repository.split('/').collect();
    for n in (1..=parts.len()).rev() {
        keys.push(format!("{registry}/{}", parts[..n].join("/")));
    }
    keys.push(registry.to_owned());
    keys.push(format!("https://{registry}"));
    keys.push(format!("http://{registry}"));
    if registry == "docker.io" || registry == "registry-1.docker.io" {
        keys.push("https://index.docker.io/v1/".to_owned());
    }
    for file in files {
        let Ok(text) = std::fs::read(file) else { continue };
        let Ok(parsed) = serde_json::from_slice::<AuthFile>(&text) else { continue };
        for key in &keys {
            let Some(auth) = parsed.auths.get(key).and_then(|e| e.auth.as_deref()) else { continue };
            let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (user, pass) = decoded.split_once(':')?;
            return Some((user.to_owned(), pass.to_owned()));
        }
    }
    None
}

pub fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
}

/// A `WWW-Authenticate` challenge: its scheme and parameters.
#[derive(Debug, PartialEq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.insert(key, value.to_owned());
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge { scheme: scheme.to_ascii_lowercase(), params })
}

/// Percent-encodes a query value.
pub fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:m/x:pull""#,
        )
        .expect("parses");
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["scope"], "repository:m/x:pull");
        assert_eq!(parse_challenge(r#"Basic realm="r""#).expect("parses").scheme, "basic");
    }

    #[test]
    fn auth_file_lookup_prefers_the_most_specific_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("auth.json");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let text = format!(
            r#"{{"auths": {{"reg.example:5000": {{"auth": "{}"}}, "reg.example:5000/models": {{"auth": "{}"}}}}}}"#,
            b64("any:1"),
            b64("models:2")
        );
        std::fs::write(&file, text).expect("write");
        let files = vec![dir.path().join("missing.json"), file];
        assert_eq!(credentials_in(&files, "reg.example:5000", "models/x"), Some(("models".into(), "2".into())));
        assert_eq!(credentials_in(&files, "reg.example:5000", "other/x"), Some(("any".into(), "1".into())));
        assert_eq!(credentials_in(&files, "elsewhere", "x"), None);
    }
}
