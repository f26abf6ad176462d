//! HTTP for the model cache: GETs that follow redirects by hand so that credentials go only to
//! the exact origin they belong to, blob bodies with byte ranges, and `https://` sources pinned
//! by SHA-256.
//!
//! What is promised about credentials (registry passwords and tokens, the Hub token):
//! - a credential is sent only to its own origin: the same scheme, host and port as the
//!   registry or Hub endpoint it was configured for (or that issued the token); a redirect to
//!   any other origin (another port of the same host, a CDN) is followed without it;
//! - over plain HTTP only to a loopback host (`localhost`, `127.0.0.0/8`, `[::1]`);
//! - a redirect from `https` to `http` is refused outright, credentials or not.

use std::time::Duration;

use super::authority;
use super::store::Body;
use super::{agent, read_small, source, Blob, Content, Digest, Error, Item, Resolved};

/// Redirects followed at most (curl's and the Go client's default is 10 or more).
const MAX_REDIRECTS: usize = 10;

/// The overall deadline of a request whose answer is small (a manifest, a token, a file list).
pub(crate) const SMALL_REQUEST: Duration = Duration::from_secs(120);

/// Where a URL leads: scheme, host (lower case, IPv6 in brackets) and port (the scheme's
/// default made explicit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    pub scheme: &'static str,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

impl Origin {
    pub fn of(url: &str) -> Result<Origin, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("`{url}` is not an absolute URL"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "https" => "https",
            "http" => "http",
            other => return Err(format!("`{url}`: the scheme `{other}` is not http or https")),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') {
            return Err(format!("`{url}`: user names and passwords in URLs are not used; see containers-auth.json(5)"));
        }
        let (host, port) = authority::split_host_port(authority).map_err(|why| format!("`{url}`: {why}"))?;
        Ok(Origin { scheme, host, port: port.unwrap_or(if scheme == "https" { 443 } else { 80 }) })
    }

    pub fn is_loopback(&self) -> bool {
        authority::is_loopback(&self.host)
    }
}

/// An `Authorization` value and the one origin it may be sent to.
#[derive(Clone)]
pub(crate) struct Credential {
    pub origin: Origin,
    pub value: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}, ...)", self.origin)
    }
}

/// `location` (a Location header) resolved against `base`.
fn join(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    if let Some(net) = location.strip_prefix("//") {
        return format!("{scheme}://{net}");
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = rest[authority_end..].split(['?', '#']).next().unwrap_or("");
    let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
    format!("{scheme}://{authority}{dir}{location}")
}

/// GET `url` with `headers`, following redirects by hand: `credential` goes only to its own
/// origin (and over plain HTTP only to loopback), a redirect from https to http is refused.
/// `small` requests (not blob bodies) have an overall deadline of [`SMALL_REQUEST`].
pub(crate) fn get(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(&str, String)],
    credential: Option<&Credential>,
    small: bool,
) -> Result<ureq::http::Response<ureq::Body>, Error> {
    let fail = |url: &str, message: String| Error::Fetch { url: url.to_owned(), message };
    let mut url = url.to_owned();
    for _ in 0..=MAX_REDIRECTS {
        let origin = Origin::of(&url).map_err(|why| fail(&url, why))?;
        let credential = credential.filter(|c| c.origin == origin);
        if credential.is_some() && origin.scheme == "http" && !origin.is_loopback() {
            return Err(fail(&url, "credentials are not sent over plain HTTP (only to loopback hosts)".into()));
        }
        let call = || {
            let mut request = agent.get(&url);
            if small {
                request = request.config().timeout_global(Some(SMALL_REQUEST)).build();
            }
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            if let Some(c) = credential {
                request = request.header("Authorization", &c.value);
            }
            request.call()
        };
        // A kept-alive connection that the server closed while it sat in the pool fails at once
        // (reset, broken pipe, end of stream before any answer); a GET is safe to send again,
        // once, and the second try opens a fresh connection.
        let response = match call() {
            Err(e) if closed_before_answer(&e) => call(),
            other => other,
        };
        let response = response.map_err(|e| fail(&url, e.to_string()))?;
        if !matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
            return Ok(response);
        }
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        if location.is_empty() {
            return Err(fail(&url, format!("HTTP {} without a Location", response.status())));
        }
        let next = join(&url, &location);
        let next_origin = Origin::of(&next).map_err(|why| fail(&url, format!("redirected to {why}")))?;
        if origin.scheme == "https" && next_origin.scheme != "https" {
            return Err(fail(&url, format!("redirected from https to plain http ({}): refused", next.escape_debug())));
        }
        url = next;
    }
    Err(fail(&url, format!("more than {MAX_REDIRECTS} redirects")))
}

/// Whether a request failed the way a pooled connection closed by the server fails.
fn closed_before_answer(e: &ureq::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(e, ureq::Error::Io(io) if matches!(io.kind(), BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof))
}

/// A GET of `url` from `offset`: 206 resumes, 200 starts over.
pub(crate) fn get_range(
    agent: &ureq::Agent,
    url: &str,
    offset: u64,
    credential: Option<&Credential>,
) -> Result<ureq::http::Response<ureq::Body>, Error> {
    let headers: Vec<(&str, String)> =
        if offset > 0 { vec![("Range", format!("bytes={offset}-"))] } else { Vec::new() };
    get(agent, url, &headers, credential, false)
}

/// Turns a blob response into a [`Body`], or an error naming the status.
pub(crate) fn body(mut response: ureq::http::Response<ureq::Body>, offset: u64, url: &str) -> Result<Body, Error> {
    let status = response.status().as_u16();
    match status {
        206 if offset > 0 => {
            // The range must start where we asked.
            let range = response.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or("");
            let start =
                range.strip_prefix("bytes ").and_then(|r| r.split('-').next()).and_then(|s| s.parse::<u64>().ok());
            if start != Some(offset) {
                return Err(Error::Fetch {
                    url: url.to_owned(),
                    message: format!("asked for bytes from {offset}, the server sent `{}`", range.escape_debug()),
                });
            }
            Ok(Body::Resumed(Box::new(response.into_body().into_reader())))
        }
        200 => Ok(Body::Whole(Box::new(response.into_body().into_reader()))),
        // The partial file already holds every byte (a pull killed between the last byte and
        // the rename): nothing more to read; the digest check decides.
        416 if offset > 0 => Ok(Body::Resumed(Box::new(std::io::empty()))),
        _ => Err(status_error(&mut response, url)),
    }
}

/// An error for an unexpected status, with the start of what the server said.
pub(crate) fn status_error(response: &mut ureq::http::Response<ureq::Body>, url: &str) -> Error {
    let status = response.status();
    let said = read_small(response.body_mut(), 64 * 1024, url).unwrap_or_default();
    let said = String::from_utf8_lossy(&said);
    let said: String = said.trim().chars().take(300).flat_map(char::escape_default).collect();
    let hint = match status.as_u16() {
        401 | 403 => " (credentials: containers-auth.json(5) for registries, HF_TOKEN_PATH for the Hub)",
        404 => " (no such model, tag, revision or file)",
        _ => "",
    };
    Error::Fetch {
        url: url.to_owned(),
        message: format!("HTTP {status}{hint}{}", if said.is_empty() { String::new() } else { format!(": {said}") }),
    }
}

/// An `https://` source: one file, named by the URL's last segment, pinned by its digest.
pub(crate) fn resolve_url(url: &str, sha256: &Digest) -> Result<Resolved, Error> {
    let name = source::file_name_of_url(url).ok_or_else(|| Error::Invalid(format!("{url}: the URL names no file")))?;
    let agent = agent();
    Ok(Resolved {
        resolved: Some(sha256.to_string()),
        items: vec![Item {
            blob: Blob { digest: Some(sha256.clone()), size: None, url: url.to_owned() },
            content: Content::File(name),
        }],
        fetcher: Box::new(move |blob: &Blob, offset| {
            let response = get_range(&agent, &blob.url, offset, None)?;
            body(response, offset, &blob.url)
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port() {
        let o = Origin::of("https://Reg.Example/v2/x").expect("origin");
        assert_eq!(o, Origin { scheme: "https", host: "reg.example".into(), port: 443 });
        assert_eq!(Origin::of("https://reg.example:443/").expect("origin"), o);
        assert_ne!(Origin::of("https://reg.example:8443/").expect("origin"), o);
        assert_ne!(Origin::of("http://reg.example/").expect("origin").port, 443);
        assert_eq!(Origin::of("http://[::1]:5000/v2/").expect("origin").host, "[::1]");
        for bad in [
            "http://h:0/",
            "http://h:65536/",
            "http://h:99999/",
            "http://h:-1/",
            "http://h:/",
            "http://h:8o/",
            "http://h:184467440737095516160/",
            "ftp://h/",
            "https://user:pw@h/",
            "https:///x",
        ] {
            assert!(Origin::of(bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(Origin::of("http://h:65535/").expect("origin").port, 65535);
    }

    #[test]
    fn locations_resolve_against_the_request() {
        assert_eq!(join("https://a/v2/x/blobs/s", "/b?sig=1"), "https://a/b?sig=1");
        assert_eq!(join("https://a:1/v2/x", "y"), "https://a:1/v2/y");
        assert_eq!(join("https://a/v2/x", "//cdn/b"), "https://cdn/b");
        assert_eq!(join("https://a/v2/x", "http://c/d"), "http://c/d");
    }
}
