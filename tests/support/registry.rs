//! A real registry (Debian's `docker-registry`) on a free loopback port with its own storage,
//! and a small pusher over the distribution API. Shared by the model tests of aictl and of the
//! agent (each includes this file with `#[path]`).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Whether a missing tool must fail the test (CI) rather than skip it with a message.
fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("AICONTAINERS_REQUIRE_REGISTRY").is_some()
}

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

pub struct Registry {
    child: Child,
    pub addr: String,
    pub storage: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Registry {
    /// Starts a registry, or returns None after saying why (and panics in CI).
    pub fn start() -> Option<Registry> {
        if !Path::new(REGISTRY_BIN).exists() {
            let why = format!("{REGISTRY_BIN} is missing: install Debian's docker-registry (tests/vm/vm deps does)");
            assert!(!required(), "{why}");
            eprintln!("SKIPPED (not in CI): {why}");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = dir.path().join("storage");
        for _ in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                    storage.display()
                ),
            )
            .expect("config");
            let child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("docker-registry starts");
            let mut registry = Registry {
                child,
                addr: addr.clone(),
                storage: storage.clone(),
                _dir: tempfile::tempdir().expect("tempdir"),
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(r) = ureq::get(&format!("http://{addr}/v2/")).call() {
                    if r.status() == 200 {
                        registry._dir = dir;
                        return Some(registry);
                    }
                }
                if let Ok(Some(_)) = registry.child.try_wait() {
                    break; // the port was taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("docker-registry did not come up on a loopback port");
    }

    /// Pushes a blob (POST then PUT, the two-step upload every registry takes); returns its digest.
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
        let r =
            agent.post(&format!("http://{}/v2/{repo}/blobs/uploads/", self.addr)).send_empty().expect("upload starts");
        assert_eq!(r.status(), 202, "upload start");
        let location = r.headers().get("location").and_then(|l| l.to_str().ok()).expect("location").to_owned();
        let location = if location.starts_with('/') { format!("http://{}{location}", self.addr) } else { location };
        let sep = if location.contains('?') { '&' } else { '?' };
        let r = agent
            .put(&format!("{location}{sep}digest={}", digest.replace(':', "%3A")))
            .header("Content-Type", "application/octet-stream")
            .send(data)
            .expect("upload");
        assert_eq!(r.status(), 201, "upload of {digest}");
        digest
    }

    pub fn push_manifest(&self, repo: &str, reference: &str, manifest: &serde_json::Value) -> String {
        let body = serde_json::to_vec(manifest).expect("json");
        let media_type =
            manifest["mediaType"].as_str().unwrap_or("application/vnd.oci.image.manifest.v1+json").to_owned();
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut r = agent
            .put(&format!("http://{}/v2/{repo}/manifests/{reference}", self.addr))
            .header("Content-Type", &media_type)
            .send(&body[..])
            .expect("manifest put");
        let status = r.status();
        assert_eq!(status, 201, "manifest: {}", r.body_mut().read_to_string().unwrap_or_default());
        sha256(&body)
    }

    /// Pushes a ModelPack artifact: one raw layer per (path, data), plus `tars` as tar layers.
    pub fn push_modelpack(&self, repo: &str, tag: &str, files: &[(&str, &[u8])]) -> String {
        let config = br#"{"descriptor":{"name":"test"},"modelfs":{"type":"layers","diffIds":[]},"config":{}}"#;
        let config_digest = self.push_blob(repo, config);
        let layers: Vec<serde_json::Value> = files
            .iter()
            .map(|(path, data)| {
                let digest = self.push_blob(repo, data);
                serde_json::json!({
                    "mediaType": "application/vnd.cncf.model.weight.v1.raw",
                    "digest": digest, "size": data.len(),
                    "annotations": { "org.cncf.model.filepath": path }
                })
            })
            .collect();
        self.push_layers(repo, tag, &config_digest, config.len(), layers)
    }

    pub fn push_layers(
        &self,
        repo: &str,
        tag: &str,
        config_digest: &str,
        config_size: usize,
        layers: Vec<serde_json::Value>,
    ) -> String {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.cncf.model.manifest.v1+json",
            "config": { "mediaType": "application/vnd.cncf.model.config.v1+json", "digest": config_digest, "size": config_size },
            "layers": layers,
        });
        self.push_manifest(repo, tag, &manifest)
    }

    /// Where the registry keeps a blob's bytes (to corrupt it).
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }
}
