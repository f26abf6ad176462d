//! `hf://ORG/REPO[@REVISION]` over the Hugging Face Hub HTTP API. Two endpoints, both relative
//! to `$HF_ENDPOINT` (default `https://huggingface.co`):
//!
//! - `GET /api/models/{repo}/revision/{revision}?blobs=true`: the commit (`sha`) and the files
//!   (`siblings[].rfilename`, with `size` and, for LFS files, `lfs.sha256` and `lfs.size`);
//! - `GET /{repo}/resolve/{commit}/{file}`: a file's bytes (redirects followed; ranges honoured).
//!
//! Files are fetched at the commit the revision resolved to, so a branch that moves during the
//! pull cannot mix two revisions. LFS files are verified against their SHA-256 and resume like
//! registry blobs; small git-stored files have no SHA-256 in the API and are hashed on arrival.
//! A token is sent as `Authorization: Bearer` from `$HF_TOKEN`, else the file
//! `$HF_TOKEN_PATH`, else `$HF_HOME/token` or `~/.cache/huggingface/token`.

use std::path::PathBuf;

use serde::Deserialize;

use super::http::{body, get, get_range, status_error, Credential, Origin};
use super::paths::check_relative;
use super::{agent, read_small, Blob, Content, Digest, Error, Item, Resolved};

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

#[derive(Deserialize)]
struct ModelInfo {
    sha: String,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
    size: Option<u64>,
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    sha256: String,
    size: Option<u64>,
}

pub fn endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned())
        .trim_end_matches('/')
        .to_owned()
}

fn token() -> Option<String> {
    if let Some(t) = std::env::var("HF_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
        return Some(t.trim().to_owned());
    }
    let path = std::env::var_os("HF_TOKEN_PATH").map(PathBuf::from).or_else(|| {
        std::env::var_os("HF_HOME")
            .map(|h| PathBuf::from(h).join("token"))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/token")))
    })?;
    std::fs::read_to_string(path).ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

/// Percent-encodes a path for a URL, keeping `/`.
pub(crate) fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn resolve(repo: &str, revision: &str) -> Result<Resolved, Error> {
    let endpoint = endpoint();
    let origin = Origin::of(&endpoint).map_err(|why| Error::Invalid(format!("HF_ENDPOINT: {why}")))?;
    let agent = agent();
    // The token belongs to the endpoint's origin: redirects elsewhere (the CDN) go without it.
    let credential = token().map(|t| Credential { origin, value: format!("Bearer {t}") });
    let url = format!("{endpoint}/api/models/{repo}/revision/{}?blobs=true", encode_path(revision));
    let mut response = get(&agent, &url, &[], credential.as_ref(), true)?;
    if response.status().as_u16() != 200 {
        return Err(status_error(&mut response, &url));
    }
    let text = read_small(response.body_mut(), 64 << 20, &url)?;
    let info: ModelInfo = serde_json::from_slice(&text)
        .map_err(|e| Error::Fetch { url: url.clone(), message: format!("not a model description: {e}") })?;
    let commit_ok = !info.sha.is_empty() && info.sha.len() <= 64 && info.sha.bytes().all(|b| b.is_ascii_hexdigit());
    if !commit_ok {
        return Err(Error::Fetch { url, message: format!("`{}` is not a commit id", info.sha.escape_debug()) });
    }
    let mut items = Vec::new();
    for s in &info.siblings {
        let path = check_relative(&s.rfilename)
            .map_err(|why| Error::Fetch { url: url.clone(), message: format!("file list: {why}") })?;
        let (digest, size) = match &s.lfs {
            Some(lfs) => (
                Some(
                    Digest::parse(&format!("sha256:{}", lfs.sha256))
                        .map_err(|why| Error::Fetch { url: url.clone(), message: why })?,
                ),
                lfs.size.or(s.size),
            ),
            None => (None, s.size),
        };
        let file_url = format!("{endpoint}/{repo}/resolve/{}/{}", info.sha, encode_path(&path));
        items.push(Item { blob: Blob { digest, size, url: file_url }, content: Content::File(path) });
    }
    Ok(Resolved {
        resolved: Some(info.sha.clone()),
        items,
        fetcher: Box::new(move |blob: &Blob, offset| {
            let response = get_range(&agent, &blob.url, offset, credential.as_ref())?;
            body(response, offset, &blob.url)
        }),
    })
}
