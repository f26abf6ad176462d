//! Test fixtures for the model cache: a real registry (Debian's `docker-registry`) on a free
//! loopback port with its own storage, a small pusher over the distribution API, and a tiny
//! HTTP server for the Hub and https:// sources.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
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
            let child = Command::new(REGISTRY_BIN).arg("serve").arg(&config).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("docker-registry starts");
            let mut registry = Registry { child, addr: addr.clone(), storage: storage.clone(), _dir: tempfile::tempdir().expect("tempdir") };
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
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
        let r = agent.post(&format!("http://{}/v2/{repo}/blobs/uploads/", self.addr)).send_empty().expect("upload starts");
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
        let media_type = manifest["mediaType"].as_str().unwrap_or("application/vnd.oci.image.manifest.v1+json").to_owned();
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

    pub fn push_layers(&self, repo: &str, tag: &str, config_digest: &str, config_size: usize, layers: Vec<serde_json::Value>) -> String {
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

/// A tar archive of (path, data) regular files, plus raw headers for tricks.
pub fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..`; write the name bytes directly for hostile archives.
        let name = path.as_bytes();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_cksum();
        builder.append(&header, *data).expect("append");
    }
    builder.into_inner().expect("tar")
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// Runs aictl with the store at `store`.
pub fn aictl(store: &Path, args: &[&str]) -> Output {
    aictl_env(store, args, &[])
}

pub fn aictl_env(store: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aictl"));
    c.args(args).env("AICONTAINERS_MODELS_DIR", store).env_remove("HF_TOKEN").env_remove("REGISTRY_AUTH_FILE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("aictl runs")
}

/// `aictl model pull --json ARGS`: the final report, or the error text.
pub fn pull(store: &Path, args: &[&str]) -> Result<serde_json::Value, String> {
    pull_env(store, args, &[])
}

pub fn pull_env(store: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<serde_json::Value, String> {
    let mut all = vec!["model", "pull", "--json"];
    all.extend_from_slice(args);
    let o = aictl_env(store, &all, env);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    if !o.status.success() {
        return Err(format!("{}{}", String::from_utf8_lossy(&o.stderr), stdout));
    }
    let last = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    Ok(v["report"].clone())
}

/// Files under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let e = e.expect("entry");
            if e.file_type().expect("type").is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).expect("prefix").display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// A request as the loopback HTTP server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: BTreeMap<String, String>,
}

pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// Extra header lines, each ending in `\r\n`.
    pub headers: String,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>, content_type: &'static str) -> Reply {
        Reply { status, body: body.into(), content_type, headers: String::new() }
    }
}

/// A loopback HTTP/1.1 server: `handler` answers each request; `Range: bytes=N-` is honoured
/// on 200 replies (206 with the rest). Returns the base URL and the log of requests.
pub fn serve(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let log = Arc::new(Mutex::new(Vec::new()));
    let handler = Arc::new(handler);
    let log2 = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let handler = handler.clone();
            let log = log2.clone();
            std::thread::spawn(move || {
                let _ = answer(stream, &*handler, &log);
            });
        }
    });
    (base, log)
}

fn answer(stream: TcpStream, handler: &dyn Fn(&Request) -> Reply, log: &Mutex<Vec<Request>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let request = Request { path, headers };
    log.lock().expect("log").push(request.clone());
    let reply = handler(&request);
    let mut stream = stream;
    let range_start = request.headers.get("range").and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
    let (status, body, extra) = match range_start {
        Some(start) if reply.status == 200 && start < reply.body.len() => {
            (206, reply.body[start..].to_vec(), format!("Content-Range: bytes {start}-{}/{}\r\n", reply.body.len() - 1, reply.body.len()))
        }
        _ => (reply.status, reply.body, String::new()),
    };
    write!(stream, "HTTP/1.1 {status} X\r\nContent-Type: {}\r\nContent-Length: {}\r\n{extra}{}Connection: close\r\n\r\n", reply.content_type, body.len(), reply.headers)?;
    stream.write_all(&body)?;
    stream.flush()
}
