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
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
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
