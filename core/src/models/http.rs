//! Fetching blobs over HTTP(S) with byte ranges, and `https://` sources pinned by SHA-256.

use super::store::Body;
use super::{agent, read_small, source, Blob, Content, Digest, Error, Item, Resolved};

/// A GET of `url` from `offset` with extra `headers`: 206 resumes, 200 starts over.
pub(crate) fn get_range(
    agent: &ureq::Agent,
    url: &str,
    offset: u64,
    headers: &[(&str, String)],
) -> Result<ureq::http::Response<ureq::Body>, Error> {
    let mut request = agent.get(url);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    if offset > 0 {
        request = request.header("Range", &format!("bytes={offset}-"));
    }
    request.call().map_err(|e| Error::Fetch { url: url.to_owned(), message: e.to_string() })
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
                    message: format!("asked for bytes from {offset}, the server sent `{range}`"),
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
    let said: String = said.trim().chars().take(300).collect();
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
            let response = get_range(&agent, &blob.url, offset, &[])?;
            body(response, offset, &blob.url)
        }),
    })
}
