//! `oci://` sources over the OCI distribution API: manifests (and indexes), blobs with ranges,
//! anonymous or token authentication (credentials from containers-auth.json(5)).
//!
//! Three kinds of artifact become a tree of files:
//! - CNCF ModelPack (`application/vnd.cncf.model.*`, and the earlier `vnd.cnai.model.*`):
//!   `.raw` layers are files at their `org.cncf.model.filepath` annotation; `.tar` and
//!   `.tar+gzip` layers are unpacked at the tree's root;
//! - Docker model artifacts (`application/vnd.docker.ai.*` layers): each layer a file, named by
//!   `org.opencontainers.image.title` or after its media type (`model.gguf`, ...);
//! - plain images: their tar layers unpacked in order, whiteouts applied, regular files kept.
//!
//! Registries on loopback (`localhost`, `127.0.0.0/8`, `[::1]`) are spoken to over plain HTTP,
//! every other one over HTTPS.

use std::sync::Mutex;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::Deserialize;

use super::auth::{self, basic, encode_query, parse_challenge};
use super::http::{self, body, status_error, Credential, Origin};
use super::source::OciReference;
use super::{agent, read_small, Blob, Compression, Content, Digest, Error, Item, Resolved, Source};

pub const MANIFEST_ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

pub const MODELPACK_ARTIFACT: &str = "application/vnd.cncf.model.manifest.v1+json";
pub const MODELPACK_CONFIG: &str = "application/vnd.cncf.model.config.v1+json";
pub const FILEPATH_ANNOTATIONS: &[&str] =
    &["org.cncf.model.filepath", "org.cnai.model.filepath", "org.opencontainers.image.title"];

const MANIFEST_LIMIT: u64 = 4 << 20;

/// A manifest as the registry sent it: an image manifest (OCI or Docker schema 2, which an
/// artifact such as a ModelPack model is too) or an index (OCI index or Docker manifest list).
/// The types are `oci-spec`'s, so a manifest that breaks the OCI image spec (no `config`, a
/// digest that is not `algorithm:hex` of the right length, no `schemaVersion`) is refused while
/// it is parsed, before any of its values is used.
#[derive(Debug)]
pub enum Document {
    Manifest(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

impl Document {
    /// Parses `bytes`: an index when its `mediaType` says so or it has `manifests` (a Docker
    /// manifest list, and OCI indexes that leave `mediaType` out), an image manifest otherwise.
    pub fn parse(bytes: &[u8]) -> Result<Document, String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Kind {
            media_type: Option<String>,
            manifests: Option<serde::de::IgnoredAny>,
        }
        let kind: Kind = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let index = kind.manifests.is_some()
            || matches!(
                kind.media_type.as_deref(),
                Some(
                    "application/vnd.oci.image.index.v1+json"
                        | "application/vnd.docker.distribution.manifest.list.v2+json"
                )
            );
        if index {
            ImageIndex::from_reader(bytes)
                .map(|i| Document::Index(Box::new(i)))
                .map_err(|e| format!("not an OCI index: {e}"))
        } else {
            ImageManifest::from_reader(bytes).map(|m| Document::Manifest(Box::new(m))).map_err(|e| e.to_string())
        }
    }
}

/// A connection to one repository of one registry, remembering its authorization.
pub struct Registry {
    agent: ureq::Agent,
    base: String,
    origin: Origin,
    registry: String,
    repository: String,
    authorization: Option<Credential>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registry({}/{})", self.base, self.repository)
    }
}

impl Registry {
    pub fn new(registry: &str, repository: &str) -> Result<Registry, Error> {
        let scheme = if super::authority::is_loopback(registry) { "http" } else { "https" };
        let base = format!("{scheme}://{registry}/v2/{repository}");
        let origin = Origin::of(&base).map_err(|why| Error::Invalid(format!("oci://{registry}: {why}")))?;
        Ok(Registry {
            agent: agent(),
            base,
            origin,
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            authorization: None,
        })
    }

    pub fn blob_url(&self, digest: &str) -> String {
        format!("{}/blobs/{digest}", self.base)
    }

    pub fn manifest_url(&self, reference: &str) -> String {
        format!("{}/manifests/{reference}", self.base)
    }

    /// GET with authorization; a 401 is answered once by authenticating as the challenge asks.
    /// The authorization goes to the registry's own origin only (see [`super::http`]).
    pub fn get(
        &mut self,
        url: &str,
        headers: &[(&str, String)],
        small: bool,
    ) -> Result<ureq::http::Response<ureq::Body>, Error> {
        for attempt in 0..2 {
            let response = http::get(&self.agent, url, headers, self.authorization.as_ref(), small)?;
            if response.status().as_u16() == 401 && attempt == 0 {
                let challenge =
                    response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let value = self.authenticate(&challenge, url)?;
                self.authorization = Some(Credential { origin: self.origin.clone(), value });
                continue;
            }
            return Ok(response);
        }
        Err(Error::Fetch {
            url: url.to_owned(),
            message: "HTTP 401 Unauthorized after authenticating: check the credentials in containers-auth.json(5)"
                .into(),
        })
    }

    /// The credentials of this registry that may go to a token `realm`: only when the realm is
    /// the registry's own origin, or when an auth file has an entry for the realm's host itself
    /// (Docker Hub's `docker.io` entry counts for `https://auth.docker.io`). A realm over plain
    /// HTTP gets them only when it is the registry's own loopback origin.
    fn realm_credentials(&self, realm: &Origin) -> Option<(String, String)> {
        if *realm == self.origin {
            return auth::credentials(&self.registry, &self.repository);
        }
        if realm.scheme != "https" {
            return None;
        }
        let realm_host = if realm.port == 443 { realm.host.clone() } else { format!("{}:{}", realm.host, realm.port) };
        let hub = matches!(self.registry.as_str(), "docker.io" | "registry-1.docker.io" | "index.docker.io")
            && realm_host == "auth.docker.io";
        if hub {
            return auth::credentials(&self.registry, &self.repository);
        }
        auth::credentials(&realm_host, &self.repository)
    }

    fn authenticate(&self, challenge: &str, url: &str) -> Result<String, Error> {
        let parsed = parse_challenge(challenge).ok_or_else(|| Error::Fetch {
            url: url.to_owned(),
            message: format!("HTTP 401 with an unreadable challenge `{}`", challenge.escape_debug()),
        })?;
        match parsed.scheme.as_str() {
            "basic" => {
                let (user, pass) = auth::credentials(&self.registry, &self.repository).ok_or_else(|| Error::Fetch {
                    url: url.to_owned(),
                    message: format!(
                        "HTTP 401: {} wants a password and no auth file has one for it (`podman login {}`)",
                        self.registry, self.registry
                    ),
                })?;
                Ok(basic(&user, &pass))
            }
            "bearer" => {
                let realm = parsed.params.get("realm").ok_or_else(|| Error::Fetch {
                    url: url.to_owned(),
                    message: "bearer challenge without realm".into(),
                })?;
                let realm_origin = Origin::of(realm).map_err(|why| Error::Fetch {
                    url: url.to_owned(),
                    message: format!("the bearer challenge's realm: {why}"),
                })?;
                if self.origin.scheme == "https" && realm_origin.scheme != "https" {
                    return Err(Error::Fetch {
                        url: url.to_owned(),
                        message: format!(
                            "the bearer challenge's realm {} is plain http: refused",
                            realm.escape_debug()
                        ),
                    });
                }
                let creds = self.realm_credentials(&realm_origin);
                let mut token_url = format!("{realm}{}", if realm.contains('?') { '&' } else { '?' });
                if let Some(service) = parsed.params.get("service") {
                    token_url.push_str(&format!("service={}&", encode_query(service)));
                }
                let scope = parsed
                    .params
                    .get("scope")
                    .cloned()
                    .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                token_url.push_str(&format!("scope={}", encode_query(&scope)));
                let credential =
                    creds.map(|(user, pass)| Credential { origin: realm_origin.clone(), value: basic(&user, &pass) });
                let mut response = http::get(&self.agent, &token_url, &[], credential.as_ref(), true)?;
                if response.status().as_u16() != 200 {
                    return Err(status_error(&mut response, &token_url));
                }
                #[derive(Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let text = read_small(response.body_mut(), 1 << 20, &token_url)?;
                let t: Token = serde_json::from_slice(&text)
                    .map_err(|e| Error::Fetch { url: token_url.clone(), message: format!("not a token: {e}") })?;
                let token = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| Error::Fetch { url: token_url, message: "no token in the answer".into() })?;
                Ok(format!("Bearer {token}"))
            }
            other => Err(Error::Fetch {
                url: url.to_owned(),
                message: format!("HTTP 401 with an unsupported scheme `{}`", other.escape_debug()),
            }),
        }
    }

    /// The manifest `reference` names, its bytes and their digest.
    pub fn manifest(&mut self, reference: &str) -> Result<(Vec<u8>, Digest), Error> {
        let url = self.manifest_url(reference);
        let mut response = self.get(&url, &[("Accept", MANIFEST_ACCEPT.to_owned())], true)?;
        if response.status().as_u16() != 200 {
            return Err(status_error(&mut response, &url));
        }
        let bytes = read_small(response.body_mut(), MANIFEST_LIMIT, &url)?;
        let digest = Digest::of(&bytes);
        if reference.starts_with("sha256:") && reference != digest.to_string() {
            return Err(Error::Fetch { url, message: format!("the registry sent a manifest with digest {digest}") });
        }
        Ok((bytes, digest))
    }

    /// The response to a GET of blob `digest` from `offset`; its body is read without the lock
    /// on the registry, so several blobs stream at once.
    pub fn blob_response(&mut self, digest: &str, offset: u64) -> Result<ureq::http::Response<ureq::Body>, Error> {
        let url = self.blob_url(digest);
        let headers: Vec<(&str, String)> =
            if offset > 0 { vec![("Range", format!("bytes={offset}-"))] } else { Vec::new() };
        self.get(&url, &headers, false)
    }

    pub fn blob(&mut self, digest: &str, offset: u64) -> Result<super::store::Body, Error> {
        let response = self.blob_response(digest, offset)?;
        body(response, offset, &self.blob_url(digest))
    }
}

fn host_platform() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Resolves an `oci://` source: its manifest (through an index, for this host's platform) and
/// how each layer becomes files.
pub(crate) fn resolve(source: &Source) -> Result<Resolved, Error> {
    let Source::Oci { registry, repository, reference } = source else {
        return Err(Error::Invalid(format!("{source} is not an oci:// source")));
    };
    let mut client = Registry::new(registry, repository)?;
    let reference = match reference {
        OciReference::Tag(t) => t.clone(),
        OciReference::Digest(d) => d.to_string(),
    };
    let (bytes, mut digest) = client.manifest(&reference)?;
    let manifest = match parse_manifest(&bytes, &client.manifest_url(&reference))? {
        Document::Manifest(m) => m,
        Document::Index(index) => {
            let child = choose(index.manifests()).ok_or_else(|| Error::Fetch {
                url: client.manifest_url(&reference),
                message: format!("the index has no manifest for linux/{}", host_platform()),
            })?;
            let child = Digest::parse(child.digest().as_ref()).map_err(Error::Invalid)?;
            let bytes;
            (bytes, digest) = client.manifest(&child.to_string())?;
            match parse_manifest(&bytes, &client.manifest_url(&child.to_string()))? {
                Document::Manifest(m) => m,
                Document::Index(_) => {
                    return Err(Error::Fetch {
                        url: client.manifest_url(&child.to_string()),
                        message: "an index inside an index: not followed".into(),
                    })
                }
            }
        }
    };
    let url = client.manifest_url(&digest.to_string());
    let items = plan(&manifest, &|digest| client.blob_url(digest)).map_err(|why| Error::Fetch { url, message: why })?;
    let client = Mutex::new(client);
    Ok(Resolved {
        resolved: Some(digest.to_string()),
        items,
        fetcher: Box::new(move |blob: &Blob, offset| {
            let digest = blob.digest.as_ref().map(|d| d.to_string()).unwrap_or_default();
            let response = client.lock().unwrap_or_else(|e| e.into_inner()).blob_response(&digest, offset)?;
            body(response, offset, &blob.url)
        }),
    })
}

fn parse_manifest(bytes: &[u8], url: &str) -> Result<Document, Error> {
    Document::parse(bytes)
        .map_err(|e| Error::Fetch { url: url.to_owned(), message: format!("not an OCI manifest: {e}") })
}

/// The entry of an index for this host: linux on its architecture, else one without a platform.
fn choose(manifests: &[Descriptor]) -> Option<&Descriptor> {
    let arch = host_platform();
    let for_host = |d: &&Descriptor| {
        d.platform().as_ref().is_some_and(|p| p.os().to_string() == "linux" && p.architecture().to_string() == arch)
    };
    manifests.iter().find(for_host).or_else(|| manifests.iter().find(|d| d.platform().is_none()))
}

/// How the layers of `manifest` become files. Every digest and path is checked here.
pub(crate) fn plan(manifest: &ImageManifest, url: &dyn Fn(&str) -> String) -> Result<Vec<Item>, String> {
    let config_type = manifest.config().media_type().as_ref();
    let modelpack = manifest
        .artifact_type()
        .as_ref()
        .is_some_and(|t| t.as_ref().contains("vnd.cncf.model.") || t.as_ref().contains("vnd.cnai.model."))
        || config_type.contains("vnd.cncf.model.")
        || config_type.contains("vnd.cnai.model.");
    let mut items = Vec::new();
    for layer in manifest.layers() {
        let digest = Digest::parse(layer.digest().as_ref()).map_err(|why| format!("layer: {why}"))?;
        let mt = layer.media_type().as_ref();
        let named = FILEPATH_ANNOTATIONS.iter().find_map(|k| layer.annotations().as_ref().and_then(|a| a.get(*k)));
        let path = |fallback: Option<&str>| -> Result<String, String> {
            let p = named.map(String::as_str).or(fallback).ok_or_else(|| {
                format!("layer {digest} ({mt}) names no file: it has no org.cncf.model.filepath or org.opencontainers.image.title annotation")
            })?;
            super::paths::check_relative(p).map_err(|why| format!("layer {digest}: {why}"))
        };
        let archive = |compression| Content::Archive { compression, whiteouts: !modelpack };
        let content = if mt.ends_with("+zstd") || mt.ends_with(".zstd") {
            return Err(format!(
                "layer {digest}: {mt} (zstd) is not supported by this version; push the layer uncompressed or gzipped"
            ));
        } else if mt.ends_with(".tar+gzip")
            || mt.ends_with(".tar.gzip")
            || mt == "application/vnd.oci.image.layer.v1.tar+gzip"
        {
            archive(Compression::Gzip)
        } else if mt.ends_with(".tar") || mt == "application/vnd.oci.image.layer.v1.tar" {
            archive(Compression::None)
        } else if mt.starts_with("application/vnd.docker.ai.") {
            let fallback = if mt.contains("gguf") {
                "model.gguf"
            } else if mt.contains("safetensors") {
                "model.safetensors"
            } else if mt.contains("license") {
                "LICENSE"
            } else if mt.contains("template") {
                "template.jinja"
            } else if mt.contains("mmproj") {
                "model.mmproj"
            } else {
                return Err(format!("layer {digest}: unknown Docker model layer type {mt}"));
            };
            Content::File(path(Some(fallback))?)
        } else {
            // `.raw` ModelPack layers and any other file-like layer that names its path.
            Content::File(path(None)?)
        };
        items.push(Item {
            blob: Blob { digest: Some(digest.clone()), size: Some(layer.size()), url: url(&digest.to_string()) },
            content,
        });
    }
    if items.is_empty() {
        return Err("the manifest has no layers: nothing to mount".into());
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    /// An image manifest with `layers` (JSON) and a config of `config_type`.
    fn manifest_with(config_type: &str, extra: &str, layers: &str) -> ImageManifest {
        let json = format!(
            r#"{{"schemaVersion":2,{extra}"config":{{"mediaType":"{config_type}","digest":"{D}","size":2}},"layers":[{layers}]}}"#
        );
        match Document::parse(json.as_bytes()).expect("manifest") {
            Document::Manifest(m) => *m,
            Document::Index(_) => panic!("read as an index: {json}"),
        }
    }

    fn raw_layer(path: &str) -> String {
        format!(
            r#"{{"mediaType":"application/vnd.cncf.model.weight.v1.raw","digest":"{D}","size":3,"annotations":{{"org.cncf.model.filepath":"{path}"}}}}"#
        )
    }

    #[test]
    fn modelpack_layers_become_files_at_their_annotated_paths() {
        let m = manifest_with(
            MODELPACK_CONFIG,
            &format!(r#""artifactType":"{MODELPACK_ARTIFACT}","#),
            &raw_layer("w/model.gguf"),
        );
        let items = plan(&m, &|d| d.to_owned()).expect("plan");
        assert!(matches!(&items[0].content, Content::File(p) if p == "w/model.gguf"));
        assert_eq!(items[0].blob.url, D);
        assert_eq!(items[0].blob.size, Some(3));
    }

    #[test]
    fn hostile_annotations_are_refused() {
        for bad in ["../../etc/passwd", "/etc/passwd", "a/../../b"] {
            let m = manifest_with(MODELPACK_CONFIG, "", &raw_layer(bad));
            let err = plan(&m, &|d| d.to_owned()).expect_err("refused");
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn manifests_that_break_the_image_spec_are_refused_while_parsed() {
        let layer =
            |digest: &str| format!(r#"{{"mediaType":"application/octet-stream","digest":"{digest}","size":3}}"#);
        let cases = [
            // a digest that is a path, one too short, one in upper case
            format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"x/y","digest":"{D}","size":2}},"layers":[{}]}}"#,
                layer("sha256:../../x")
            ),
            format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"x/y","digest":"{D}","size":2}},"layers":[{}]}}"#,
                layer("sha256:abc")
            ),
            format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"x/y","digest":"{D}","size":2}},"layers":[{}]}}"#,
                layer(&D.to_uppercase().replacen("SHA256", "sha256", 1))
            ),
            // no config, no schemaVersion, a negative or fractional size, not JSON at all
            format!(r#"{{"schemaVersion":2,"layers":[{}]}}"#, layer(D)),
            format!(r#"{{"config":{{"mediaType":"x/y","digest":"{D}","size":2}},"layers":[{}]}}"#, layer(D)),
            format!(r#"{{"schemaVersion":2,"config":{{"mediaType":"x/y","digest":"{D}","size":-1}},"layers":[]}}"#),
            format!(r#"{{"schemaVersion":2,"config":{{"mediaType":"x/y","digest":"{D}","size":1.5}},"layers":[]}}"#),
            "\u{0}\u{ff}<html>".to_owned(),
        ];
        for bad in &cases {
            assert!(Document::parse(bad.as_bytes()).is_err(), "accepted: {bad}");
        }
        // oci-spec lets other algorithms through (the spec allows them); the store holds sha256 only.
        let m = manifest_with("x/y", "", &layer("md5:d41d8cd98f00b204e9800998ecf8427e"));
        assert!(plan(&m, &|d| d.to_owned()).expect_err("md5").contains("not a sha256 digest"));
    }

    #[test]
    fn docker_model_layers_and_image_layers() {
        let m = manifest_with(
            "application/vnd.docker.ai.model.config.v0.1+json",
            "",
            &format!(r#"{{"mediaType":"application/vnd.docker.ai.gguf.v3","digest":"{D}","size":3}}"#),
        );
        assert!(
            matches!(&plan(&m, &|d| d.to_owned()).expect("plan")[0].content, Content::File(p) if p == "model.gguf")
        );
        let m = manifest_with(
            "application/vnd.oci.image.config.v1+json",
            "",
            &format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D}","size":3}}"#),
        );
        assert!(matches!(
            plan(&m, &|d| d.to_owned()).expect("plan")[0].content,
            Content::Archive { compression: Compression::Gzip, whiteouts: true }
        ));
        let m = manifest_with("application/vnd.oci.image.config.v1+json", "", "");
        assert!(plan(&m, &|d| d.to_owned()).expect_err("empty").contains("no layers"));
    }

    #[test]
    fn indexes_and_manifest_lists_choose_this_hosts_platform() {
        let arch = host_platform();
        let entry = |os: &str, a: &str, hex: char| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{}","size":9,"platform":{{"os":"{os}","architecture":"{a}"}}}}"#,
                hex.to_string().repeat(64)
            )
        };
        let other = if arch == "arm64" { "amd64" } else { "arm64" };
        for media_type in [r#""mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","#, ""] {
            let json = format!(
                r#"{{"schemaVersion":2,{media_type}"manifests":[{},{},{}]}}"#,
                entry("windows", arch, 'a'),
                entry("linux", other, 'b'),
                entry("linux", arch, 'c')
            );
            let Document::Index(index) = Document::parse(json.as_bytes()).expect("index") else {
                panic!("read as a manifest: {json}");
            };
            let chosen = choose(index.manifests()).expect("one for this host");
            assert_eq!(chosen.digest().as_ref(), format!("sha256:{}", "c".repeat(64)));
        }
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[{},{}]}}"#,
            entry("windows", arch, 'a'),
            entry("linux", other, 'b')
        );
        let Document::Index(index) = Document::parse(json.as_bytes()).expect("index") else { panic!() };
        assert!(choose(index.manifests()).is_none());
    }
}
