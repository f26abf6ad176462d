//! Test fixtures for the model cache: a real registry (Debian's `docker-registry`) on a free
//! loopback port with its own storage, a small pusher over the distribution API, and a tiny
//! HTTP server for the Hub and https:// sources.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

#[path = "../../../tests/support/registry.rs"]
mod registry;
pub use registry::*;

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
    output_within(&mut c, std::time::Duration::from_secs(180))
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

/// A loopback HTTP server whose handler writes the whole response itself (to trickle, lie
/// about sizes or redirect): for hostile-server tests.
pub fn serve_raw(
    handler: impl Fn(&Request, &mut TcpStream) + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let log = Arc::new(Mutex::new(Vec::new()));
    let handler = Arc::new(handler);
    let log2 = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let handler = handler.clone();
            let log = log2.clone();
            std::thread::spawn(move || {
                if let Ok(request) = read_request(&stream) {
                    log.lock().expect("log").push(request.clone());
                    handler(&request, &mut stream);
                }
            });
        }
    });
    (base, log)
}

fn read_request(stream: &TcpStream) -> std::io::Result<Request> {
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
    Ok(Request { path, headers })
}

fn answer(stream: TcpStream, handler: &dyn Fn(&Request) -> Reply, log: &Mutex<Vec<Request>>) -> std::io::Result<()> {
    let request = read_request(&stream)?;
    log.lock().expect("log").push(request.clone());
    let reply = handler(&request);
    let mut stream = stream;
    let range_start = request
        .headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
    let (status, body, extra) = match range_start {
        Some(start) if reply.status == 200 && start < reply.body.len() => (
            206,
            reply.body[start..].to_vec(),
            format!("Content-Range: bytes {start}-{}/{}\r\n", reply.body.len() - 1, reply.body.len()),
        ),
        _ => (reply.status, reply.body, String::new()),
    };
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: {}\r\nContent-Length: {}\r\n{extra}{}Connection: close\r\n\r\n",
        reply.content_type,
        body.len(),
        reply.headers
    )?;
    stream.write_all(&body)?;
    stream.flush()
}

/// Runs `command`, killing it if it has not finished after `guard` (a hang is a failure of
/// the test, not a timing assertion: the guard is far above what the test needs).
pub fn output_within(command: &mut Command, guard: std::time::Duration) -> Output {
    let mut child =
        command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("spawn");
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > guard {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("{command:?} hung (killed after {guard:?}): {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}
