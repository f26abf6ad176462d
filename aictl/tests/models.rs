//! The model cache against a real registry (Debian's `docker-registry` on a loopback port, with
//! artifacts these tests push), a loopback stand-in for the Hugging Face Hub, and `aictl model`
//! run as a sysadmin or the pull unit runs it. Each test asserts what a user sees: the files at
//! the mounted path, the bytes transferred, what `ls`/`gc` report, the error text.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

fn store_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn blobs(store: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(store.join("blobs/sha256"))
        .expect("blobs")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn partials(store: &Path) -> usize {
    fs::read_dir(store.join("tmp")).map_or(0, |d| {
        d.filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".partial"))).count()
    })
}

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[test]
#[cfg_attr(
    not(have_registry),
    ignore = "needs Debian's docker-registry (/usr/bin/docker-registry; tests/vm/vm deps installs it)"
)]
fn modelpack_artifact_is_pulled_into_a_read_only_tree_and_a_second_pull_transfers_nothing() {
    let Some(reg) = Registry::start() else { return };
    let tar = tar_of(&[("docs/README.md", b"read me"), ("./docs/LICENSE", b"MIT")]);
    let config = b"{}";
    let config_digest = reg.push_blob("models/tiny", config);
    let weights = vec![7u8; 300_000];
    let layers = vec![
        serde_json::json!({"mediaType": "application/vnd.cncf.model.weight.v1.raw", "digest": reg.push_blob("models/tiny", &weights), "size": weights.len(), "annotations": {"org.cncf.model.filepath": "weights/model.gguf"}}),
        serde_json::json!({"mediaType": "application/vnd.cncf.model.weight.config.v1.raw", "digest": reg.push_blob("models/tiny", b"{\"n\":1}"), "size": 7, "annotations": {"org.cncf.model.filepath": "config.json"}}),
        serde_json::json!({"mediaType": "application/vnd.cncf.model.doc.v1.tar", "digest": reg.push_blob("models/tiny", &tar), "size": tar.len(), "annotations": {"org.cncf.model.filepath": "docs"}}),
    ];
    let manifest = reg.push_layers("models/tiny", "v1", &config_digest, config.len(), layers);
    let store = store_dir();
    let source = format!("oci://{}/models/tiny:v1", reg.addr);

    let report = pull(store.path(), &[&source]).expect("pull");
    assert_eq!(report["resolved"].as_str(), Some(manifest.as_str()));
    assert_eq!(n(&report, "files"), 4);
    assert!(n(&report, "transferred") >= 300_000);
    let path = Path::new(report["path"].as_str().expect("path")).to_owned();
    assert_eq!(files_under(&path), ["config.json", "docs/LICENSE", "docs/README.md", "weights/model.gguf"]);
    assert_eq!(fs::read(path.join("weights/model.gguf")).expect("weights"), weights);
    assert_eq!(fs::read_to_string(path.join("docs/README.md")).expect("readme"), "read me");
    // Readable by every account, writable by root only.
    assert_eq!(fs::metadata(path.join("weights/model.gguf")).expect("meta").permissions().mode() & 0o777, 0o644);
    assert_eq!(fs::metadata(path.join("weights")).expect("meta").permissions().mode() & 0o777, 0o755);
    // The tree's files are the blobs themselves (hard links), not copies.
    let blob = store.path().join("blobs/sha256").join(sha256(&weights).trim_start_matches("sha256:"));
    assert_eq!(
        fs::metadata(&blob).expect("blob").ino(),
        fs::metadata(path.join("weights/model.gguf")).expect("file").ino()
    );

    // Again: the registry is asked for the manifest only.
    let again = pull(store.path(), &[&source]).expect("second pull");
    assert_eq!(n(&again, "transferred"), 0);
    assert_eq!(n(&again, "blobs_fetched"), 0);
    // As the unit pulls: not even the manifest, and quickly.
    let t0 = Instant::now();
    let cached = pull(store.path(), &["--unit", &source]).expect("unit pull");
    assert_eq!(cached["cached"], true);
    assert_eq!(n(&cached, "transferred"), 0);
    assert!(t0.elapsed() < Duration::from_secs(2), "a cached pull took {:?}", t0.elapsed());

    // ls and inspect show it.
    let ls = aictl(store.path(), &["model", "ls", "--json"]);
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).expect("ls json");
    assert_eq!(ls[0]["source"].as_str(), Some(source.as_str()));
    assert_eq!(ls[0]["pinned"], true, "pulled by hand: pinned");
    let inspect = aictl(store.path(), &["model", "inspect", &source]);
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(text.contains("weights/model.gguf") && text.contains("aicontainers-model@oci:--127.0.0.1"), "{text}");
}

#[test]
#[cfg_attr(
    not(have_registry),
    ignore = "needs Debian's docker-registry (/usr/bin/docker-registry; tests/vm/vm deps installs it)"
)]
fn a_plain_image_gives_its_regular_files_with_whiteouts_applied() {
    let Some(reg) = Registry::start() else { return };
    let repo = "images/with-model";
    let l1 = gzip(&tar_of(&[("models/a.gguf", b"AAAA"), ("models/old.bin", b"old"), ("etc/hostname", b"x")]));
    let l2 = gzip(&tar_of(&[("models/.wh.old.bin", b""), ("models/b.gguf", b"BB")]));
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": reg.push_blob(repo, config), "size": config.len()},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": reg.push_blob(repo, &l1), "size": l1.len()},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": reg.push_blob(repo, &l2), "size": l2.len()},
        ],
    });
    reg.push_manifest(repo, "1", &manifest);
    let store = store_dir();
    let report = pull(store.path(), &[&format!("oci://{}/{repo}:1", reg.addr)]).expect("pull");
    let path = Path::new(report["path"].as_str().expect("path")).to_owned();
    assert_eq!(files_under(&path), ["etc/hostname", "models/a.gguf", "models/b.gguf"]);
    assert_eq!(fs::read(path.join("models/b.gguf")).expect("b"), b"BB");
}

#[test]
#[cfg_attr(
    not(have_registry),
    ignore = "needs Debian's docker-registry (/usr/bin/docker-registry; tests/vm/vm deps installs it)"
)]
fn two_models_sharing_a_blob_store_it_once() {
    let Some(reg) = Registry::start() else { return };
    let shared = vec![42u8; 500_000];
    reg.push_modelpack("models/base", "v1", &[("model.gguf", &shared), ("README", b"base")]);
    reg.push_modelpack("models/tuned", "v1", &[("model.gguf", &shared), ("README", b"tuned")]);
    let store = store_dir();
    let first = pull(store.path(), &[&format!("oci://{}/models/base:v1", reg.addr)]).expect("base");
    let second = pull(store.path(), &[&format!("oci://{}/models/tuned:v1", reg.addr)]).expect("tuned");
    assert!(n(&first, "transferred") >= 500_000);
    assert_eq!(n(&second, "transferred"), 5, "only the other README is fetched: {second}");
    let hex = sha256(&shared).trim_start_matches("sha256:").to_owned();
    assert_eq!(blobs(store.path()).iter().filter(|b| **b == hex).count(), 1);
    let a = Path::new(first["path"].as_str().expect("path")).join("model.gguf");
    let b = Path::new(second["path"].as_str().expect("path")).join("model.gguf");
    assert_eq!(fs::metadata(a).expect("a").ino(), fs::metadata(b).expect("b").ino(), "one copy on disk");
}

/// 48 MiB at 8 MiB/s: killed after a quarter, then resumed.
#[test]
#[cfg_attr(
    not(have_registry),
    ignore = "needs Debian's docker-registry (/usr/bin/docker-registry; tests/vm/vm deps installs it)"
)]
fn a_pull_killed_mid_blob_leaves_no_visible_blob_and_the_next_pull_resumes() {
    let Some(reg) = Registry::start() else { return };
    let big: Vec<u8> = (0..48u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    reg.push_modelpack("models/big", "v1", &[("model.bin", &big)]);
    let hex = sha256(&big).trim_start_matches("sha256:").to_owned();
    let store = store_dir();
    let source = format!("oci://{}/models/big:v1", reg.addr);
    let mut child = Command::new(env!("CARGO_BIN_EXE_aictl"))
        .args(["model", "pull", "--json", "--limit-rate", "8M", &source])
        .env("AICONTAINERS_MODELS_DIR", store.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("aictl starts");
    let partial = store.path().join(format!("tmp/{hex}.partial"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs::metadata(&partial).map_or(0, |m| m.len()) < 12 << 20 {
        assert!(Instant::now() < deadline, "the download did not progress");
        assert!(child.try_wait().expect("wait").is_none(), "aictl finished before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill -9"); // SIGKILL
    child.wait().expect("reaped");
    let have = fs::metadata(&partial).expect("partial").len();
    assert!(!blobs(store.path()).contains(&hex), "a killed pull must not leave the blob visible");
    assert!(!store.path().join("refs").read_dir().expect("refs").any(|_| true), "no ref for an unfinished pull");

    let report = pull(store.path(), &[&source]).expect("resumed pull");
    let transferred = n(&report, "transferred");
    assert!(transferred < big.len() as u64, "resumed: {transferred} < {}", big.len());
    assert_eq!(transferred, big.len() as u64 - have, "exactly the missing bytes");
    let path = Path::new(report["path"].as_str().expect("path")).join("model.bin");
    assert_eq!(sha256(&fs::read(path).expect("model")), sha256(&big));
    assert_eq!(partials(store.path()), 0);
}

#[test]
#[cfg_attr(
    not(have_registry),
    ignore = "needs Debian's docker-registry (/usr/bin/docker-registry; tests/vm/vm deps installs it)"
)]
fn concurrent_pulls_of_one_blob_download_it_once() {
    let Some(reg) = Registry::start() else { return };
    let big = vec![3u8; 16 << 20];
    reg.push_modelpack("models/shared", "v1", &[("model.bin", &big)]);
    reg.push_modelpack("models/shared2", "v1", &[("weights.bin", &big)]);
    let store = store_dir();
    let spawn = |repo: &str| {
        Command::new(env!("CARGO_BIN_EXE_aictl"))
            .args(["model", "pull", "--json", "--limit-rate", "16M", &format!("oci://{}/{repo}:v1", reg.addr)])
            .env("AICONTAINERS_MODELS_DIR", store.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("aictl starts")
    };
    let (a, b) = (spawn("models/shared"), spawn("models/shared2"));
    let mut total = 0;
    for child in [a, b] {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let last = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_owned();
        let v: serde_json::Value = serde_json::from_str(&last).expect("json");
        total += n(&v["report"], "transferred");
    }
    assert_eq!(total, big.len() as u64, "the blob crossed the network once");
}

#[test]
#[cfg_attr(
    not(have_registry),
    ignore = "needs Debian's docker-registry (/usr/bin/docker-registry; tests/vm/vm deps installs it)"
)]
fn a_blob_that_fails_its_digest_leaves_nothing_behind() {
    let Some(reg) = Registry::start() else { return };
    let data = vec![9u8; 200_000];
    reg.push_modelpack("models/corrupt", "v1", &[("model.bin", &data)]);
    // Corrupt the registry's copy (same size), as a bad disk or a lying mirror would.
    let on_disk = reg.blob_data(&sha256(&data));
    fs::write(&on_disk, vec![8u8; 200_000]).expect("corrupt");
    let store = store_dir();
    let err = pull(store.path(), &[&format!("oci://{}/models/corrupt:v1", reg.addr)]).expect_err("must fail");
    assert!(err.contains("digest mismatch") && err.contains(&sha256(&data)), "{err}");
    assert!(!blobs(store.path()).contains(&sha256(&data).trim_start_matches("sha256:").to_owned()));
    assert_eq!(partials(store.path()), 0, "no partial file kept");
    assert!(!store.path().join("refs").read_dir().expect("refs").any(|_| true), "no ref");
}

#[test]
#[cfg_attr(
    not(have_registry),
    ignore = "needs Debian's docker-registry (/usr/bin/docker-registry; tests/vm/vm deps installs it)"
)]
fn hostile_paths_in_annotations_and_archives_are_refused() {
    let Some(reg) = Registry::start() else { return };
    let store = store_dir();
    for (i, bad) in ["../../etc/passwd", "/etc/passwd", "a/../../b"].iter().enumerate() {
        let repo = format!("evil/ann{i}");
        reg.push_modelpack(&repo, "v1", &[(bad, b"root::0:0::/:/bin/sh")]);
        let err = pull(store.path(), &[&format!("oci://{}/{repo}:v1", reg.addr)]).expect_err("refused");
        assert!(err.contains(bad), "the error names the path: {err}");
    }
    let tar = tar_of(&[("../../escape", b"x")]);
    let config_digest = reg.push_blob("evil/tar", b"{}");
    let layer = serde_json::json!({"mediaType": "application/vnd.cncf.model.weight.v1.tar", "digest": reg.push_blob("evil/tar", &tar), "size": tar.len(), "annotations": {"org.cncf.model.filepath": "w"}});
    reg.push_layers("evil/tar", "v1", &config_digest, 2, vec![layer]);
    let err = pull(store.path(), &[&format!("oci://{}/evil/tar:v1", reg.addr)]).expect_err("refused");
    assert!(err.contains("../../escape"), "{err}");
    assert!(!store.path().join("refs").read_dir().expect("refs").any(|_| true), "nothing was mounted");
    assert!(!store.path().parent().expect("parent").join("escape").exists());
    let err = pull(store.path(), &[&format!("oci://{}/evil/x@sha256:../../../etc", reg.addr)]).expect_err("refused");
    assert!(err.contains("not a sha256 digest"), "{err}");
}

#[test]
#[cfg_attr(
    not(have_registry),
    ignore = "needs Debian's docker-registry (/usr/bin/docker-registry; tests/vm/vm deps installs it)"
)]
fn gc_removes_only_what_no_service_and_no_pin_holds() {
    let Some(reg) = Registry::start() else { return };
    let shared = vec![1u8; 100_000];
    reg.push_modelpack("models/pinned", "v1", &[("m.bin", &shared), ("p", b"pinned")]);
    reg.push_modelpack("models/used", "v1", &[("u", b"used by a service")]);
    reg.push_modelpack("models/unused", "v1", &[("m.bin", &shared), ("x", b"unused only")]);
    let store = store_dir();
    let src = |r: &str| format!("oci://{}/models/{r}:v1", reg.addr);
    pull(store.path(), &[&src("pinned")]).expect("pinned");
    pull(store.path(), &["--no-pin", &src("used")]).expect("used");
    pull(store.path(), &["--unit", &src("unused")]).expect("unused");
    let config = tempfile::tempdir().expect("config");
    fs::write(
        config.path().join("svc.toml"),
        format!(
            "[service]\nimage = \"localhost/x:1\"\nrun-as = \"aimodels\"\n[[model]]\nsource = \"{}\"\nmount = \"/m\"\n",
            src("used")
        ),
    )
    .expect("service");
    let before = blobs(store.path());
    let o = aictl(store.path(), &["model", "gc", "--json", "--config", config.path().to_str().expect("utf-8")]);
    assert!(o.status.success(), "{o:?}");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(report["refs"], serde_json::json!([src("unused")]));
    let after = blobs(store.path());
    let gone: Vec<&String> = before.iter().filter(|b| !after.contains(b)).collect();
    assert_eq!(
        gone,
        [&sha256(b"unused only").trim_start_matches("sha256:").to_owned()],
        "only the unused model's own file goes"
    );
    let ls = aictl(store.path(), &["model", "ls", "--json"]);
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).expect("ls");
    let sources: Vec<&str> = ls.as_array().expect("array").iter().filter_map(|r| r["source"].as_str()).collect();
    assert_eq!(sources, [src("pinned"), src("used")]);
    // rm unpins; gc then takes it. A model a service names is kept unless --force.
    let cfg = config.path().to_str().expect("utf-8");
    let o = aictl(store.path(), &["model", "rm", "--config", cfg, &src("used")]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("is named by a service file"), "{o:?}");
    assert!(aictl(store.path(), &["model", "rm", "--config", cfg, &src("pinned")]).status.success());
    let o = aictl(store.path(), &["model", "gc", "--json", "--config", config.path().to_str().expect("utf-8")]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(n(&report, "blobs"), 2, "{report}");
    assert_eq!(blobs(store.path()), [sha256(b"used by a service").trim_start_matches("sha256:").to_owned()]);
    // A service with a mistake elsewhere still keeps its model.
    fs::write(
        config.path().join("typo.toml"),
        format!(
            "[service]\nimage = \"localhost/x:1\"\ncomand = [\"x\"]\n[[model]]\nsource = \"{}\"\nmount = \"/m\"\n",
            src("tuned")
        ),
    )
    .expect("typo");
    pull(store.path(), &["--no-pin", &src("used")]).expect("used");
    let o = aictl(store.path(), &["model", "gc", "--json", "--config", config.path().to_str().expect("utf-8")]);
    assert!(o.status.success(), "{o:?}");
    // A service file that cannot be parsed stops gc: its models are unknown.
    fs::write(config.path().join("broken.toml"), "[service\n").expect("broken");
    let o = aictl(store.path(), &["model", "gc", "--config", config.path().to_str().expect("utf-8")]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("broken.toml"), "{o:?}");
}

/// The Hub's two endpoints (see core/src/models/hf.rs): the revision's file list and the
/// files by commit. Asserts the token from HF_TOKEN_PATH reaches the server.
#[test]
fn hf_sources_are_pulled_through_the_hub_api_with_a_token_file() {
    let weights = vec![5u8; 123_456];
    let weights_sha = sha256(&weights);
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let small = b"{\"model_type\":\"tiny\"}".to_vec();
    let (weights2, small2, weights_sha2) = (weights.clone(), small.clone(), weights_sha.clone());
    let (base, log) = serve(move |r| {
        if r.headers.get("authorization").map(String::as_str) != Some("Bearer hf_secret") {
            return Reply::new(401, b"token missing".to_vec(), "text/plain");
        }
        let ok = |body: Vec<u8>, content_type| Reply::new(200, body, content_type);
        match r.path.as_str() {
            "/api/models/org/tiny/revision/main?blobs=true" => ok(
                serde_json::to_vec(&serde_json::json!({
                    "sha": commit,
                    "siblings": [
                        {"rfilename": "config.json", "size": small2.len()},
                        {"rfilename": "weights/model.safetensors", "size": weights2.len(), "lfs": {"sha256": weights_sha2.trim_start_matches("sha256:"), "size": weights2.len()}},
                    ]
                }))
                .expect("json"),
                "application/json",
            ),
            "/api/models/org/evil/revision/main?blobs=true" => ok(br#"{"sha":"abc","siblings":[{"rfilename":"../../etc/cron.d/x"}]}"#.to_vec(), "application/json"),
            p if p == format!("/org/tiny/resolve/{commit}/config.json") => ok(small2.clone(), "application/octet-stream"),
            p if p == format!("/org/tiny/resolve/{commit}/weights/model.safetensors") => ok(weights2.clone(), "application/octet-stream"),
            _ => Reply::new(404, b"not found".to_vec(), "text/plain"),
        }
    });
    let token = tempfile::NamedTempFile::new().expect("token");
    fs::write(token.path(), "hf_secret\n").expect("token");
    let env = [("HF_ENDPOINT", base.as_str()), ("HF_TOKEN_PATH", token.path().to_str().expect("utf-8"))];
    let store = store_dir();
    let report = pull_env(store.path(), &["hf://org/tiny"], &env).expect("hf pull");
    assert_eq!(report["resolved"].as_str(), Some(commit));
    let path = Path::new(report["path"].as_str().expect("path")).to_owned();
    assert_eq!(files_under(&path), ["config.json", "weights/model.safetensors"]);
    assert_eq!(fs::read(path.join("weights/model.safetensors")).expect("weights"), weights);
    assert!(
        blobs(store.path()).contains(&weights_sha.trim_start_matches("sha256:").to_owned()),
        "LFS files keep their SHA-256"
    );
    let again = pull_env(store.path(), &["hf://org/tiny@main"], &env).expect("again");
    assert_eq!(n(&again, "transferred"), 0, "same commit: nothing fetched");
    let err = pull_env(store.path(), &["hf://org/evil"], &env).expect_err("refused");
    assert!(err.contains("../../etc/cron.d/x"), "{err}");
    let err = pull_env(
        store.path(),
        &["hf://org/tiny"],
        &[("HF_ENDPOINT", base.as_str()), ("HF_TOKEN_PATH", "/nonexistent")],
    )
    .expect_err("no token");
    assert!(err.contains("401"), "{err}");
    assert!(log.lock().expect("log").iter().all(|r| !r.path.contains("..")));
}

#[test]
fn https_sources_are_verified_against_their_pin() {
    let data = b"GGUF tiny".to_vec();
    let data2 = data.clone();
    let (base, _log) = serve(move |r| match r.path.as_str() {
        "/files/tiny.gguf" => Reply::new(200, data2.clone(), "application/octet-stream"),
        _ => Reply::new(404, Vec::new(), "text/plain"),
    });
    let store = store_dir();
    let url = format!("{base}/files/tiny.gguf");
    let good = sha256(&data);
    let report = pull(store.path(), &["--sha256", good.trim_start_matches("sha256:"), &url]).expect("pull");
    assert_eq!(fs::read(Path::new(report["path"].as_str().expect("path")).join("tiny.gguf")).expect("file"), data);
    let wrong = sha256(b"something else");
    let fresh = store_dir();
    let err = pull(fresh.path(), &["--sha256", wrong.trim_start_matches("sha256:"), &url]).expect_err("mismatch");
    assert!(err.contains("digest mismatch") && err.contains(&url), "{err}");
    assert!(blobs(fresh.path()).is_empty() && partials(fresh.path()) == 0, "nothing kept");
    let err = pull(fresh.path(), &[&url]).expect_err("unpinned");
    assert!(err.contains("must be pinned"), "{err}");
}

#[test]
fn file_sources_are_copied_in() {
    let src = tempfile::tempdir().expect("src");
    fs::create_dir(src.path().join("sub")).expect("sub");
    fs::write(src.path().join("sub/m.gguf"), b"local").expect("write");
    std::os::unix::fs::symlink("/etc/passwd", src.path().join("link")).expect("symlink");
    let store = store_dir();
    let report = pull(store.path(), &[&format!("file://{}", src.path().display())]).expect("pull");
    let path = Path::new(report["path"].as_str().expect("path")).to_owned();
    assert_eq!(files_under(&path), ["sub/m.gguf"], "symbolic links are not followed");
    let secret = src.path().join("sub/secret");
    fs::write(&secret, b"key").expect("write");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod");
    let err = pull(store.path(), &[&format!("file://{}", src.path().display())]).expect_err("refused");
    assert!(err.contains("not readable by others"), "{err}");
}

#[test]
#[cfg_attr(
    not(have_registry),
    ignore = "needs Debian's docker-registry (/usr/bin/docker-registry; tests/vm/vm deps installs it)"
)]
fn a_quota_refuses_a_pull_that_would_exceed_it_before_downloading() {
    let Some(reg) = Registry::start() else { return };
    reg.push_modelpack("models/a", "v1", &[("a.bin", &[1u8; 600_000])]);
    reg.push_modelpack("models/b", "v1", &[("b.bin", &[2u8; 600_000])]);
    let store = store_dir();
    pull(store.path(), &["--quota", "1M", &format!("oci://{}/models/a:v1", reg.addr)]).expect("fits");
    let err =
        pull_env(store.path(), &[&format!("oci://{}/models/b:v1", reg.addr)], &[("AICONTAINERS_MODELS_QUOTA", "1M")])
            .expect_err("over quota");
    assert!(err.contains("quota of 1048576 bytes") && err.contains("aictl model gc"), "{err}");
    assert_eq!(blobs(store.path()).len(), 1, "nothing of b was downloaded");
}

/// A registry that asks for a bearer token (the distribution spec's token flow), whose token
/// service wants the credentials `podman login` wrote to the auth file.
#[test]
fn a_registry_that_challenges_gets_a_token_with_credentials_from_the_auth_file() {
    let data = b"private weights".to_vec();
    let digest = sha256(&data);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": EMPTY_CONFIG.clone(),
        "layers": [{"mediaType": "application/vnd.cncf.model.weight.v1.raw", "digest": digest, "size": data.len(), "annotations": {"org.cncf.model.filepath": "m.bin"}}]
    }))
    .expect("json");
    let realm: std::sync::Arc<std::sync::Mutex<String>> = Default::default();
    let realm2 = realm.clone();
    let served = data.clone();
    let (base, log) = serve(move |r| {
        if r.path.starts_with("/token?") {
            // "user:secret", as `podman login` stores it.
            if r.headers.get("authorization").map(String::as_str) != Some("Basic dXNlcjpzZWNyZXQ=") {
                return Reply::new(401, "bad credentials", "text/plain");
            }
            return Reply::new(200, r#"{"token":"t0k3n"}"#, "application/json");
        }
        if r.headers.get("authorization").map(String::as_str) != Some("Bearer t0k3n") {
            let mut reply = Reply::new(401, "{}", "application/json");
            reply.headers = format!(
                "WWW-Authenticate: Bearer realm=\"{}/token\",service=\"test\",scope=\"repository:private/m:pull\"\r\n",
                realm2.lock().expect("realm")
            );
            return reply;
        }
        match r.path.as_str() {
            "/v2/private/m/manifests/v1" => {
                Reply::new(200, manifest.clone(), "application/vnd.oci.image.manifest.v1+json")
            }
            p if p == format!("/v2/private/m/blobs/{digest}") => {
                Reply::new(200, served.clone(), "application/octet-stream")
            }
            _ => Reply::new(404, "", "text/plain"),
        }
    });
    *realm.lock().expect("realm") = base.clone();
    let host = base.trim_start_matches("http://");
    let auth = tempfile::NamedTempFile::new().expect("auth");
    fs::write(auth.path(), format!(r#"{{"auths": {{"{host}": {{"auth": "dXNlcjpzZWNyZXQ="}}}}}}"#)).expect("auth file");
    let store = store_dir();
    let source = format!("oci://{host}/private/m:v1");
    let err = pull_env(store.path(), &[&source], &[("REGISTRY_AUTH_FILE", "/nonexistent"), ("HOME", "/nonexistent")])
        .expect_err("no credentials");
    assert!(err.contains("401"), "{err}");
    let report = pull_env(store.path(), &[&source], &[("REGISTRY_AUTH_FILE", auth.path().to_str().expect("utf-8"))])
        .expect("pull with a token");
    assert_eq!(fs::read(Path::new(report["path"].as_str().expect("path")).join("m.bin")).expect("file"), data);
    let log = log.lock().expect("log");
    assert!(log.iter().any(|r| r.path == "/token?service=test&scope=repository%3Aprivate%2Fm%3Apull"), "{log:?}");
}

// ---- Hostile sources, servers and local users (limits, credentials, locks, numbers) ----

/// An OCI manifest of raw layers (path, digest, announced size).
fn raw_manifest(layers: &[(&str, &str, u64)]) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|(path, digest, size)| serde_json::json!({"mediaType": "application/vnd.cncf.model.weight.v1.raw", "digest": digest, "size": size, "annotations": {"org.cncf.model.filepath": path}}))
        .collect();
    serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": EMPTY_CONFIG.clone(), "layers": layers}))
        .expect("json")
}

/// The OCI image spec's empty descriptor (`{}`), the config of an artifact that needs none.
static EMPTY_CONFIG: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(
    || serde_json::json!({"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(b"{}"), "size": 2}),
);

/// A registry whose manifests break the OCI image spec (no config, a path for a digest, a
/// negative size, HTML): each pull fails naming the manifest's URL, and nothing is fetched.
#[test]
fn manifests_that_break_the_image_spec_are_refused_before_any_blob_is_fetched() {
    let digest = sha256(b"x");
    let layer = |digest: &str, size: i64| serde_json::json!({"mediaType": "application/vnd.cncf.model.weight.v1.raw", "digest": digest, "size": size, "annotations": {"org.cncf.model.filepath": "m.bin"}});
    let base = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"});
    let with = |config: Option<&serde_json::Value>, layer: serde_json::Value| {
        let mut m = base.clone();
        if let Some(c) = config {
            m["config"] = c.clone();
        }
        m["layers"] = serde_json::json!([layer]);
        serde_json::to_vec(&m).expect("json")
    };
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("noconfig", with(None, layer(&digest, 1))),
        ("pathdigest", with(Some(&EMPTY_CONFIG), layer("sha256:../../../etc/passwd", 1))),
        ("negative", with(Some(&EMPTY_CONFIG), layer(&digest, -1))),
        ("html", b"<html><body>login</body></html>".to_vec()),
    ];
    let served = bodies.clone();
    let (base_url, log) = serve(move |r| {
        for (tag, body) in &served {
            if r.path == format!("/v2/evil/spec/manifests/{tag}") {
                return Reply::new(200, body.clone(), "application/vnd.oci.image.manifest.v1+json");
            }
        }
        Reply::new(404, b"{}".to_vec(), "application/json")
    });
    let host = base_url.trim_start_matches("http://");
    let store = store_dir();
    for (tag, _) in &bodies {
        let err = pull(store.path(), &[&format!("oci://{host}/evil/spec:{tag}")]).expect_err(tag);
        assert!(err.contains("not an OCI manifest") && err.contains(&format!("/manifests/{tag}")), "{tag}: {err}");
    }
    let log = log.lock().expect("log");
    let asked: Vec<&str> = log.iter().map(|r| r.path.as_str()).collect();
    assert!(asked.iter().all(|p| p.contains("/manifests/")), "a blob was asked for: {asked:?}");
}

fn blob_bytes(store: &Path) -> u64 {
    fs::read_dir(store.join("blobs/sha256")).expect("blobs").map(|e| e.expect("e").metadata().expect("m").len()).sum()
}

fn leftovers(store: &Path) -> Vec<String> {
    fs::read_dir(store.join("tmp"))
        .expect("tmp")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect()
}

#[test]
#[cfg_attr(
    not(have_registry),
    ignore = "needs Debian's docker-registry (/usr/bin/docker-registry; tests/vm/vm deps installs it)"
)]
fn a_decompression_bomb_stops_at_the_quota() {
    let Some(reg) = Registry::start() else { return };
    let repo = "evil/bomb";
    // 64 MiB of zeros gzip to about 64 KiB.
    let bomb = gzip(&tar_of(&[("zeros.bin", &vec![0u8; 64 << 20])]));
    assert!(bomb.len() < 1 << 20);
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": reg.push_blob(repo, config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": reg.push_blob(repo, &bomb), "size": bomb.len()}],
    });
    reg.push_manifest(repo, "1", &manifest);
    let store = store_dir();
    let err = pull(store.path(), &["--quota", "8M", &format!("oci://{}/{repo}:1", reg.addr)]).expect_err("bomb");
    assert!(err.contains("stopped at the model cache's limit") && err.contains("quota of 8388608"), "{err}");
    assert!(blob_bytes(store.path()) <= 8 << 20, "the store stayed within its quota");
    assert!(leftovers(store.path()).is_empty(), "{:?}", leftovers(store.path()));
    assert!(!store.path().join("refs").read_dir().expect("refs").any(|_| true));
}

#[test]
fn https_and_file_sources_count_against_the_quota() {
    let data = vec![3u8; 3 << 20];
    let pin = sha256(&data);
    let served = data.clone();
    let (base, _log) = serve(move |_| Reply::new(200, served.clone(), "application/octet-stream"));
    let store = store_dir();
    let url = format!("{base}/w/m.gguf");
    let err = pull(store.path(), &["--quota", "1M", "--sha256", pin.trim_start_matches("sha256:"), &url])
        .expect_err("over quota");
    assert!(err.contains("stopped at the model cache's limit"), "{err}");
    assert!(blob_bytes(store.path()) <= 1 << 20);
    let src = tempfile::tempdir().expect("src");
    fs::set_permissions(src.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(src.path().join("m.gguf"), &data).expect("write");
    let err = pull(store.path(), &["--quota", "1M", &format!("file://{}", src.path().display())]).expect_err("quota");
    assert!(err.contains("stopped at the model cache's limit"), "{err}");
    assert!(leftovers(store.path()).iter().all(|n| n.ends_with(".partial")), "{:?}", leftovers(store.path()));
}

/// A registry that sends the announced bytes and then more: the body is cut at the manifest's
/// size (and verified); sizes that add up past 2^64 are refused.
#[test]
fn bodies_are_cut_at_their_announced_size_and_size_sums_cannot_overflow() {
    let data = vec![7u8; 100];
    let digest = sha256(&data);
    let manifest = raw_manifest(&[("m.bin", &digest, 100)]);
    let huge = raw_manifest(&[("a", &digest, 1 << 63), ("b", &sha256(b"b"), 1 << 63)]);
    let (base, _log) = serve_raw(move |r, stream| {
        use std::io::Write as _;
        let (body, kind): (Vec<u8>, &str) = match r.path.as_str() {
            "/v2/evil/m/manifests/v1" => (manifest.clone(), "application/vnd.oci.image.manifest.v1+json"),
            "/v2/evil/m/manifests/huge" => (huge.clone(), "application/vnd.oci.image.manifest.v1+json"),
            _ => {
                let mut body = data.clone();
                body.extend(vec![0u8; 5 << 20]);
                (body, "application/octet-stream")
            }
        };
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(&body);
    });
    let host = base.trim_start_matches("http://");
    let store = store_dir();
    let report = pull(store.path(), &[&format!("oci://{host}/evil/m:v1")]).expect("cut and verified");
    assert_eq!(n(&report, "transferred"), 100, "not a byte past the announced size");
    let err = pull(store.path(), &[&format!("oci://{host}/evil/m:huge")]).expect_err("overflow");
    assert!(err.contains("more than 2^64"), "{err}");
}

/// A server that sends 100 bytes every 100 ms of a body it says is 10 MB.
fn trickle() -> String {
    let (base, _log) = serve_raw(|r, stream| {
        use std::io::Write as _;
        if r.path.ends_with("/manifests/v1") {
            let body = raw_manifest(&[("m.bin", &sha256(b"never"), 10_000_000)]);
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\n\r\n", body.len());
            let _ = stream.write_all(&body);
            return;
        }
        let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n");
        for _ in 0..3000 {
            if stream.write_all(&[1u8; 100]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    format!("oci://{}/slow/m:v1", base.trim_start_matches("http://"))
}

#[test]
fn a_trickling_server_meets_the_minimum_rate_and_the_deadline() {
    let store = store_dir();
    let err = pull(store.path(), &["--min-rate", "10K/2", &trickle()]).expect_err("too slow");
    assert!(err.contains("less than the minimum rate of 10240 bytes/s"), "{err}");
    let err = pull_env(store.path(), &["--min-rate", "1/60", &trickle()], &[("AICONTAINERS_MODELS_TIMEOUT", "2")])
        .expect_err("too long");
    assert!(err.contains("longer than its deadline of 2 s"), "{err}");
    assert_eq!(partials(store.path()), 1, "what arrived is kept for the next pull");
}

/// A registry that keeps the manifest's connection open, then drops it when the next request
/// arrives on it (what a server does when its keep-alive timeout races the client): the pull
/// sends that request again on a fresh connection and succeeds.
#[test]
fn a_kept_alive_connection_closed_by_the_server_is_retried_once() {
    let data = b"weights after a dropped connection".to_vec();
    let digest = sha256(&data);
    let manifest = raw_manifest(&[("m.bin", &digest, data.len() as u64)]);
    let served = data.clone();
    let (base, log) = serve_raw(move |r, stream| {
        use std::io::{Read as _, Write as _};
        if r.path.ends_with("/manifests/v1") {
            let kind = "application/vnd.oci.image.manifest.v1+json";
            let _ =
                write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n", manifest.len());
            let _ = stream.write_all(&manifest);
            // Wait for the next request on this connection, and close without an answer.
            let _ = stream.read(&mut [0u8; 1]);
            return;
        }
        let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", served.len());
        let _ = stream.write_all(&served);
    });
    let store = store_dir();
    let report = pull(store.path(), &[&format!("oci://{}/keep/m:v1", base.trim_start_matches("http://"))])
        .expect("the dropped request is sent again");
    assert_eq!(n(&report, "transferred"), data.len() as u64);
    let blobs = log.lock().expect("log").iter().filter(|r| r.path.contains("/blobs/")).count();
    assert_eq!(blobs, 1, "the blob request that reached the dropped connection is not logged; one fresh try");
}

#[test]
fn the_model_unit_has_a_start_timeout() {
    let unit =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../units/aicontainers-model@.service")).expect("unit");
    let timeout = unit.lines().find_map(|l| l.strip_prefix("TimeoutStartSec=")).expect("TimeoutStartSec=");
    assert!(!["infinity", "0"].contains(&timeout), "TimeoutStartSec={timeout}");
}

/// Basic credentials for 127.0.0.1:PORT in an auth file.
fn auth_file(host: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("auth");
    fs::write(file.path(), format!(r#"{{"auths": {{"{host}": {{"auth": "dXNlcjpzZWNyZXQ="}}}}}}"#)).expect("auth");
    file
}

/// The registry's blob redirects to another port of the same host, and its token realm is on
/// another port: neither gets the registry's credentials (nor the token).
#[test]
fn credentials_go_only_to_their_exact_origin() {
    let data = b"weights".to_vec();
    let digest = sha256(&data);
    let served = data.clone();
    let (other, other_log) = serve(move |r| {
        if r.path.starts_with("/token") {
            return Reply::new(200, r#"{"token":"t0k3n"}"#, "application/json");
        }
        Reply::new(200, served.clone(), "application/octet-stream")
    });
    let manifest = raw_manifest(&[("m.bin", &digest, data.len() as u64)]);
    let other2 = other.clone();
    let (registry, registry_log) = serve(move |r| {
        let auth = r.headers.get("authorization").map(String::as_str);
        let bearer = r.path.starts_with("/v2/bearer/");
        let ok = if bearer { auth == Some("Bearer t0k3n") } else { auth == Some("Basic dXNlcjpzZWNyZXQ=") };
        if !ok {
            let mut reply = Reply::new(401, "{}", "application/json");
            reply.headers = if bearer {
                format!("WWW-Authenticate: Bearer realm=\"{other2}/token\",service=\"x\"\r\n")
            } else {
                "WWW-Authenticate: Basic realm=\"r\"\r\n".to_owned()
            };
            return reply;
        }
        if r.path.ends_with("/manifests/v1") {
            return Reply::new(200, manifest.clone(), "application/vnd.oci.image.manifest.v1+json");
        }
        let mut reply = Reply::new(307, "", "text/plain");
        reply.headers = format!("Location: {other2}/cdn/blob\r\n");
        reply
    });
    let host = registry.trim_start_matches("http://");
    let auth = auth_file(host);
    let env = [("REGISTRY_AUTH_FILE", auth.path().to_str().expect("utf-8"))];
    for repo in ["basic/m", "bearer/m"] {
        let store = store_dir();
        let report = pull_env(store.path(), &[&format!("oci://{host}/{repo}:v1")], &env).expect("pull");
        assert_eq!(n(&report, "files"), 1);
    }
    assert!(registry_log.lock().expect("log").iter().any(|r| r.headers.contains_key("authorization")));
    let other_log = other_log.lock().expect("log");
    assert!(other_log.iter().any(|r| r.path == "/cdn/blob") && other_log.iter().any(|r| r.path.starts_with("/token")));
    for r in other_log.iter() {
        assert!(!r.headers.contains_key("authorization"), "credentials reached another origin: {r:?}");
    }
}

/// The Hub's file redirects to a CDN on another port of the same host: no token there.
#[test]
fn the_hub_token_does_not_follow_a_redirect_to_another_origin() {
    let data = b"{}".to_vec();
    let served = data.clone();
    let (cdn, cdn_log) = serve(move |_| Reply::new(200, served.clone(), "application/octet-stream"));
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let (hub, hub_log) = serve(move |r| {
        if r.path.starts_with("/api/") {
            let list = serde_json::json!({"sha": commit, "siblings": [{"rfilename": "config.json", "size": 2}]});
            return Reply::new(200, serde_json::to_vec(&list).expect("json"), "application/json");
        }
        let mut reply = Reply::new(302, "", "text/plain");
        reply.headers = format!("Location: {cdn}/file\r\n");
        reply
    });
    let store = store_dir();
    pull_env(store.path(), &["hf://org/m"], &[("HF_ENDPOINT", hub.as_str()), ("HF_TOKEN", "hf_secret")]).expect("pull");
    assert!(hub_log
        .lock()
        .expect("log")
        .iter()
        .all(|r| r.headers.get("authorization").map(String::as_str) == Some("Bearer hf_secret")));
    let cdn_log = cdn_log.lock().expect("log");
    assert_eq!(cdn_log.len(), 1);
    assert!(!cdn_log[0].headers.contains_key("authorization"), "{:?}", cdn_log[0]);
}

#[test]
fn the_store_lock_is_roots_alone_and_a_wait_says_who_holds_it() {
    let store = store_dir();
    fs::set_permissions(store.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let lock = store.path().join("lock");
    fs::write(&lock, b"").expect("lock");
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o644)).expect("chmod");
    let empty = tempfile::tempdir().expect("config");
    let config = empty.path().to_str().expect("utf-8");
    let o = aictl(store.path(), &["model", "gc", "--config", config]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(fs::metadata(&lock).expect("lock").permissions().mode() & 0o777, 0o600, "made root's alone");
    if nix::unistd::geteuid().is_root() && Path::new("/usr/sbin/runuser").exists() {
        let o = Command::new("/usr/sbin/runuser")
            .args(["-u", "nobody", "--", "flock", "-n", lock.to_str().expect("utf-8"), "true"])
            .output()
            .expect("runuser");
        assert!(!o.status.success(), "an unprivileged user could take the store's lock");
    } else {
        eprintln!("SKIPPED part: not root or no runuser, so an unprivileged open of the lock is not tried");
    }
    // Held by another process: the wait ends and names it.
    let mut holder = Command::new("flock")
        .args([lock.to_str().expect("utf-8"), "-c", "echo held; exec sleep 60"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("flock(1)");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.take().expect("stdout")), &mut line)
        .expect("held");
    let o = aictl_env(store.path(), &["model", "gc", "--config", config], &[("AICONTAINERS_MODELS_LOCK_TIMEOUT", "1")]);
    let _ = holder.kill();
    let _ = holder.wait();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("waited 1 s for an exclusive lock"), "{err}");
    assert!(err.contains("held by pid") && err.contains("sleep 60"), "{err}");
}

#[test]
fn file_sources_are_cached_only_if_service_accounts_could_read_them_in_place() {
    let outer = tempfile::tempdir().expect("outer");
    let private = outer.path().join("private");
    fs::create_dir_all(private.join("m")).expect("dirs");
    fs::write(private.join("m/w.gguf"), b"weights").expect("write");
    fs::set_permissions(outer.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(private.join("m/w.gguf"), fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).expect("chmod");
    let store = store_dir();
    let source = format!("file://{}", private.join("m").display());
    let err = pull(store.path(), &[&source]).expect_err("refused");
    assert!(err.contains("other accounts cannot search") && err.contains("private"), "{err}");
    let err = pull(store.path(), &[&format!("{source}/w.gguf")]).expect_err("refused");
    assert!(err.contains("other accounts cannot search"), "{err}");
    fs::set_permissions(&private, fs::Permissions::from_mode(0o755)).expect("chmod");
    // A directory inside the model that others cannot enter.
    fs::create_dir(private.join("m/inner")).expect("inner");
    fs::write(private.join("m/inner/x"), b"x").expect("x");
    fs::set_permissions(private.join("m/inner"), fs::Permissions::from_mode(0o700)).expect("chmod");
    let err = pull(store.path(), &[&source]).expect_err("refused");
    assert!(err.contains("inner"), "{err}");
    fs::set_permissions(private.join("m/inner"), fs::Permissions::from_mode(0o755)).expect("chmod");
    // A FIFO does not block the pull and is no model file; a link as the source is refused.
    nix::unistd::mkfifo(&private.join("m/fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    let report = pull(store.path(), &[&source]).expect("pull");
    assert_eq!(files_under(Path::new(report["path"].as_str().expect("path"))), ["inner/x", "w.gguf"]);
    std::os::unix::fs::symlink(private.join("m"), outer.path().join("link")).expect("symlink");
    let err = pull(store.path(), &[&format!("file://{}", outer.path().join("link").display())]).expect_err("link");
    assert!(err.contains("symbolic link"), "{err}");
}

#[test]
fn rates_sizes_and_ports_out_of_range_are_refused() {
    let store = store_dir();
    for args in [
        ["--limit-rate", "99999999999999999999G"],
        ["--limit-rate", "17179869184G"],
        ["--quota", "18446744073709551615K"],
        ["--min-rate", "1/0"],
    ] {
        let mut all = vec!["model", "pull"];
        all.extend(args);
        all.push("oci://127.0.0.1:5000/m:1");
        let o = aictl(store.path(), &all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("too large") || err.contains("seconds"), "{args:?}: {err}");
    }
    for port in ["0", "65536", "99999", "x"] {
        let err = pull(store.path(), &[&format!("oci://127.0.0.1:{port}/m:1")]).expect_err("port");
        assert!(err.contains("1 to 65535") || err.contains("not a host"), "{port}: {err}");
        let hf = format!("http://127.0.0.1:{port}");
        let err = pull_env(store.path(), &["hf://org/m"], &[("HF_ENDPOINT", &hf)]).expect_err("port");
        assert!(err.contains("1 to 65535"), "{port}: {err}");
    }
}
