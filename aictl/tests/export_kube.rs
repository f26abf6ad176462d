//! `aictl export kube`: golden manifests for every example, validation against the Kubernetes
//! OpenAPI schema (kubernetes-validate, from PyPI), hostile values read back exactly, names
//! Kubernetes cannot take, and invalid files refused as `aictl validate` reports them.
//!
//! `UPDATE_GOLDEN=1 cargo test -p aictl --test export_kube` rewrites tests/golden/kube/.
//! The schema checks need `kubernetes-validate` (tests/run-all installs it into a virtual
//! environment and names it in `AICONTAINERS_KUBE_VALIDATE`); without it they fail when `CI` or
//! `AICONTAINERS_REQUIRE_KUBE_VALIDATE` is set, and say loudly that they skipped otherwise.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_yaml_ng::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned()
}

/// Runs aictl from the repository root, so that paths in the output are relative to it.
fn aictl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aictl")).args(args).current_dir(repo()).output().expect("aictl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

fn check_golden(name: &str, actual: &str) {
    let path = repo().join("tests/golden/kube").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 to create it)", path.display()));
    assert_eq!(actual, expected, "{name} differs from its golden file (UPDATE_GOLDEN=1 to accept)");
}

fn examples() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(repo().join("examples"))
        .expect("examples")
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".toml").map(str::to_owned))
        .collect();
    names.sort();
    assert!(names.len() >= 4, "examples found: {names:?}");
    names
}

/// Every document of a YAML stream, parsed.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("the output parses as YAML"))
        .collect()
}

/// Checks that every `# warning:` comment is also on stderr, and nothing else is.
fn warnings_match(o: &Output) {
    let yaml = text(&o.stdout);
    let in_yaml = yaml.lines().filter(|l| l.starts_with("# warning: ")).count();
    let on_stderr = text(&o.stderr).lines().filter(|l| l.starts_with("aictl: warning: ")).count();
    assert_eq!(in_yaml, on_stderr, "stderr: {}", text(&o.stderr));
}

#[test]
fn every_example_exports_as_its_golden_manifest() {
    for name in examples() {
        let file = format!("examples/{name}.toml");
        let o = aictl(&["export", "kube", "--account", "aimodels:990", &file]);
        assert!(o.status.success(), "{file}: {}", text(&o.stderr));
        warnings_match(&o);
        let yaml = text(&o.stdout);
        let docs = documents(&yaml);
        assert_eq!(docs[0]["kind"], "Deployment", "{name}");
        assert_eq!(docs[0]["metadata"]["labels"]["io.aicontainers.service"], name.as_str());
        assert_eq!(
            docs[0]["metadata"]["annotations"]["io.aicontainers.source"].as_str().map(|s| s.lines().next()),
            Some(Some(file.as_str()))
        );
        check_golden(&format!("{name}.yaml"), &yaml);
    }
}

#[test]
fn pods_init_containers_and_host_ports_as_their_golden_manifest() {
    let o = aictl(&[
        "export",
        "kube",
        "--kind",
        "pod",
        "--models",
        "init",
        "--aictl-image",
        "registry.example/aicontainers/aictl:0.1",
        "--host-ports",
        "--namespace",
        "llm",
        "--account",
        "aimodels:990",
        "examples",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    warnings_match(&o);
    let yaml = text(&o.stdout);
    check_golden("examples.pod-init-host-ports.yaml", &yaml);
    let docs = documents(&yaml);
    assert!(docs.iter().all(|d| d["metadata"]["namespace"] == "llm"));
    let chat = docs.iter().find(|d| d["kind"] == "Pod" && d["metadata"]["name"] == "model-chat").expect("model-chat");
    let init = &chat["spec"]["initContainers"][0];
    assert_eq!(init["command"][5], "oci://127.0.0.1:5000/models/tiny-chat:v1");
    let mount = &chat["spec"]["containers"][0]["volumeMounts"][0];
    assert_eq!(mount["readOnly"], true);
    assert_eq!(mount["subPath"], "refs/oci-127.0.0.1-5000-models-tiny-chat-v1-17fa462e3080");
    let hello = docs.iter().find(|d| d["kind"] == "Pod" && d["metadata"]["name"] == "hello").expect("hello");
    assert_eq!(hello["spec"]["restartPolicy"], "Never", "restart = no");
    assert_eq!(hello["spec"]["containers"][0]["ports"][0]["hostPort"], 8080);
    assert_eq!(hello["spec"]["containers"][0]["ports"][0]["hostIP"], "127.0.0.1");
}

#[test]
fn gpu_and_numa_intent_is_carried_or_reported() {
    let o = aictl(&["export", "kube", "--account", "aimodels:990", "examples/gpu-chat.toml"]);
    let docs = documents(&text(&o.stdout));
    let r = &docs[0]["spec"]["template"]["spec"]["containers"][0]["resources"];
    assert_eq!(r["limits"]["nvidia.com/gpu"], "1");
    // Guaranteed: integer CPUs, requests equal to limits.
    assert_eq!(r["limits"]["cpu"], "1");
    assert_eq!(r["requests"]["cpu"], r["limits"]["cpu"]);
    assert_eq!(r["requests"]["memory"], r["limits"]["memory"]);
    assert!(text(&o.stdout).contains("--topology-manager-policy=single-numa-node"));
    assert!(text(&o.stdout).contains("--cpu-manager-policy=static"));

    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("pinned.toml");
    fs::write(
        &f,
        "[service]\nimage = \"r.example/a:1\"\nrun-as = \"aimodels\"\n[gpu]\ndevices = [0, \"GPU-fc549a0c-02eb-8d42-5960-b2eea948f942\", \"example.com/gpu=all\"]\nshared = true\nnuma = \"restricted\"\n[resources]\ncpus = 2.5\nmemory = \"1.5G\"\n",
    )
    .expect("write");
    let o = aictl(&["export", "kube", "--account", "aimodels:990", f.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    warnings_match(&o);
    let stderr = text(&o.stderr);
    for said in [
        "GPU 0 names a GPU of one host",
        "GPU-fc549a0c-02eb-8d42-5960-b2eea948f942 names a GPU of one host",
        "`example.com/gpu=all` (every GPU of the host) counted as 1 example.com/gpu",
        "gpu.shared = true",
        "resources.cpus = 2.5: 3 CPUs asked",
    ] {
        assert!(stderr.contains(said), "{said} missing from stderr: {stderr}");
    }
    let docs = documents(&text(&o.stdout));
    let r = &docs[0]["spec"]["template"]["spec"]["containers"][0]["resources"];
    assert_eq!(r["limits"]["nvidia.com/gpu"], "2");
    assert_eq!(r["limits"]["example.com/gpu"], "1");
    assert_eq!(r["limits"]["cpu"], "3");
    assert_eq!(r["requests"]["memory"], "1536Mi");
    validate_schema(&text(&o.stdout));
}

/// Values YAML readers are known to take for something else, and bytes that must be escaped.
fn hostile_values() -> Vec<String> {
    let mut v: Vec<String> = [
        "yes",
        "no",
        "on",
        "off",
        "y",
        "n",
        "true",
        "False",
        "null",
        "~",
        "",
        " ",
        "*anchor",
        "&anchor",
        "!tag",
        "- x",
        "-",
        "{}",
        "[]",
        "{a: b}",
        "[a, b]",
        "# not a comment",
        "a # b",
        "a: b",
        "key:",
        "? x",
        "| x",
        "> x",
        "%YAML 1.1",
        "---",
        "...",
        "'quoted'",
        "\"dq\"",
        "0x1F",
        "0o17",
        "012",
        "1_000",
        "1e3",
        ".inf",
        "-.inf",
        ".nan",
        "1:30",
        "2001-12-14",
        "=",
        "<<",
        "@at",
        "`tick`",
        "line\nnext",
        "trailing\n",
        "tab\there",
        "back\\slash",
        "${HOME} $1 %h",
        "unicode é 漢字 😀",
        "\u{2028}sep\u{2029}",
        "\u{feff}bom",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.push("x".repeat(10_000));
    v
}

/// A host volume whose paths are YAML syntax.
const HOSTILE_VOLUME: &str = "/srv/*a #b/{}/yes:/data/- x, [y]:ro";

/// A service file whose command, environment and description carry the hostile values.
fn hostile_service(dir: &Path) -> PathBuf {
    let values = hostile_values();
    let toml_str = |s: &str| toml_quote(s);
    let mut file = String::from("[service]\n");
    file.push_str(&format!("description = {}\n", toml_str("yes: *anchor - x # not a comment")));
    file.push_str("image = \"r.example/a:1\"\nrun-as = \"aimodels\"\n");
    file.push_str(&format!("volumes = [{}]\n", toml_str(HOSTILE_VOLUME)));
    let command: Vec<String> =
        values.iter().filter(|v| !v.is_empty() && v.as_str() != ";").map(|v| toml_str(v)).collect();
    file.push_str(&format!("command = [{}]\n", command.join(", ")));
    file.push_str("[service.environment]\n");
    for (i, v) in values.iter().enumerate() {
        file.push_str(&format!("V{i} = {}\n", toml_str(v)));
    }
    // Environment names that are YAML words themselves.
    file.push_str("ON = \"x\"\nNULL = \"y\"\n");
    let path = dir.join("hostile.toml");
    fs::write(&path, file).expect("write");
    path
}

/// A TOML basic string (escapes as TOML defines them).
fn toml_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[test]
fn hostile_values_come_back_as_the_same_strings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = hostile_service(dir.path());
    let o = aictl(&["export", "kube", "--account", "aimodels:990", file.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let yaml = text(&o.stdout);
    let docs = documents(&yaml);
    assert_eq!(docs.len(), 1, "no ports, so no Service");
    let c = &docs[0]["spec"]["template"]["spec"]["containers"][0];
    let values = hostile_values();
    let env: Vec<(String, String)> = c["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("name is a string").to_owned(),
                e["value"].as_str().expect("value is a string").to_owned(),
            )
        })
        .collect();
    for (i, v) in values.iter().enumerate() {
        assert!(env.contains(&(format!("V{i}"), v.clone())), "V{i} = {v:?} did not come back");
    }
    assert!(env.contains(&("ON".to_owned(), "x".to_owned())));
    assert!(env.contains(&("NULL".to_owned(), "y".to_owned())));
    let args: Vec<&str> = c["args"].as_sequence().expect("args").iter().map(|a| a.as_str().expect("string")).collect();
    let expected: Vec<&str> = values.iter().filter(|v| !v.is_empty()).map(String::as_str).collect();
    assert_eq!(args, expected);
    assert_eq!(docs[0]["metadata"]["annotations"]["io.aicontainers.description"], "yes: *anchor - x # not a comment");
    let pod = &docs[0]["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["hostPath"]["path"], "/srv/*a #b/{}/yes");
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/data/- x, [y]");
    assert_eq!(c["volumeMounts"][0]["readOnly"], true);
    // The same through a YAML 1.1 reader (PyYAML, as kubernetes-validate and go-yaml v2 read).
    if let Some(tool) = validator() {
        let python = python_beside(&tool);
        let script = "import json,sys,yaml\nprint(json.dumps(list(yaml.safe_load_all(sys.stdin))))";
        let mut child = Command::new(&python)
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
        std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), yaml.as_bytes()).expect("write");
        let out = child.wait_with_output().expect("python");
        assert!(out.status.success(), "PyYAML could not read the output");
        let back: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let env = back[0]["spec"]["template"]["spec"]["containers"][0]["env"].as_array().expect("env").clone();
        for (i, v) in values.iter().enumerate() {
            let found = env.iter().find(|e| e["name"] == format!("V{i}")).expect("entry");
            assert_eq!(found["value"].as_str(), Some(v.as_str()), "YAML 1.1 reads V{i} differently");
        }
        validate_schema(&yaml);
    }
}

#[test]
fn names_kubernetes_cannot_take_are_mapped_or_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = "[service]\nimage = \"r.example/a:1\"\nrun-as = \"aimodels\"\nports = [\"8080\"]\n";
    let mapped = dir.path().join("My_Chat.v2.toml");
    fs::write(&mapped, svc).expect("write");
    let o = aictl(&["export", "kube", "--account", "aimodels:990", mapped.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("named `my-chat-v2` in Kubernetes"), "{}", text(&o.stderr));
    let docs = documents(&text(&o.stdout));
    assert_eq!(docs[0]["metadata"]["name"], "my-chat-v2");
    assert_eq!(docs[1]["metadata"]["name"], "my-chat-v2");
    assert_eq!(docs[0]["spec"]["template"]["spec"]["containers"][0]["name"], "my-chat-v2");

    for (file, why) in [("1chat.toml", "starting with a letter"), (&format!("{}.toml", "a".repeat(64)), "at most 63")] {
        let bad = dir.path().join(file);
        fs::write(&bad, svc).expect("write");
        let o = aictl(&["export", "kube", "--account", "aimodels:990", bad.to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(1), "{file}");
        assert!(o.stdout.is_empty(), "nothing is written when a name is refused");
        let err = text(&o.stderr);
        assert!(err.contains("cannot be named in Kubernetes") && err.contains(why), "{err}");
        fs::remove_file(&bad).expect("rm");
    }
    // Two services that map to one name: refused, naming both.
    let clash = tempfile::tempdir().expect("tempdir");
    fs::write(clash.path().join("a_b.toml"), svc).expect("write");
    fs::write(clash.path().join("a.b.toml"), svc).expect("write");
    let o = aictl(&["export", "kube", "--account", "aimodels:990", clash.path().to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("`a.b`") && err.contains("`a_b`") && err.contains("`a-b`"), "{err}");
    // A namespace that is not one.
    let o = aictl(&["export", "kube", "--namespace", "Prod_1", "examples/hello.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("--namespace `Prod_1`"), "{}", text(&o.stderr));
}

#[test]
fn an_invalid_file_is_refused_with_the_message_validate_prints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    fs::write(&bad, "[service]\nimage = \"localhost/a:1\"\nrun-as = \"aimodels\"\nrestart = \"sometimes\"\n")
        .expect("write");
    let validate = aictl(&["validate", bad.to_str().expect("utf-8")]);
    let o = aictl(&["export", "kube", bad.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty(), "no manifest for an invalid file");
    let said = text(&validate.stdout);
    assert_eq!(
        said,
        format!("{}:4:11: service.restart: `sometimes` is not one of no, on-failure, always\n", bad.display())
    );
    assert!(text(&o.stderr).starts_with(&said), "{}", text(&o.stderr));
    // A directory: one bad file refuses the export as a whole.
    fs::write(dir.path().join("good.toml"), "[service]\nimage = \"r.example/a:1\"\nrun-as = \"aimodels\"\n")
        .expect("write");
    let o = aictl(&["export", "kube", dir.path().to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
}

#[test]
fn the_account_is_looked_up_and_an_unknown_one_is_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("svc.toml");
    fs::write(&f, "[service]\nimage = \"r.example/a:1\"\nrun-as = \"no-such-account-here\"\n").expect("write");
    let o = aictl(&["export", "kube", f.to_str().expect("utf-8")]);
    assert!(o.status.success());
    assert!(text(&o.stderr).contains("--account no-such-account-here:UID"), "{}", text(&o.stderr));
    let docs = documents(&text(&o.stdout));
    let sc = &docs[0]["spec"]["template"]["spec"]["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert!(sc.get("runAsUser").is_none());
    // An account of this host: its UID. `nobody` exists on every Debian system.
    fs::write(&f, "[service]\nimage = \"r.example/a:1\"\nrun-as = \"nobody\"\n").expect("write");
    let o = aictl(&["export", "kube", f.to_str().expect("utf-8")]);
    let docs = documents(&text(&o.stdout));
    assert_eq!(docs[0]["spec"]["template"]["spec"]["securityContext"]["runAsUser"], 65534);
    let o = aictl(&["export", "kube", "--account", "x:0", f.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "UID 0 is refused");
}

#[test]
fn models_other_than_oci_need_an_aictl_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("hf.toml");
    fs::write(&f, "[service]\nimage = \"r.example/a:1\"\nrun-as = \"aimodels\"\n[[model]]\nsource = \"hf://org/name@main\"\nmount = \"/models/x\"\n").expect("write");
    let o = aictl(&["export", "kube", "--account", "aimodels:990", f.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("pass --aictl-image IMAGE"), "{}", text(&o.stderr));
    let o = aictl(&[
        "export",
        "kube",
        "--account",
        "aimodels:990",
        "--aictl-image",
        "r.example/aictl:1",
        f.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let docs = documents(&text(&o.stdout));
    let pod = &docs[0]["spec"]["template"]["spec"];
    assert_eq!(pod["initContainers"][0]["command"][5], "hf://org/name@main");
    assert_eq!(pod["volumes"][0]["emptyDir"], Value::Mapping(Default::default()));
    validate_schema(&text(&o.stdout));
}

#[test]
fn output_is_deterministic() {
    let args = ["export", "kube", "--account", "aimodels:990", "examples"];
    assert_eq!(aictl(&args).stdout, aictl(&args).stdout);
}

// ---- schema validation ----------------------------------------------------------------------

/// kubernetes-validate: `$AICONTAINERS_KUBE_VALIDATE`, else on PATH.
fn validator() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AICONTAINERS_KUBE_VALIDATE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join("kubernetes-validate"))
        .find(|p| p.is_file())
}

/// The Python that runs the validator (its virtual environment's), which has PyYAML.
fn python_beside(tool: &Path) -> PathBuf {
    let beside = tool.with_file_name("python3");
    if beside.exists() {
        beside
    } else {
        PathBuf::from("python3")
    }
}

fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("AICONTAINERS_REQUIRE_KUBE_VALIDATE").is_some()
}

/// The Kubernetes release whose OpenAPI schema the manifests are checked against.
const KUBE_VERSION: &str = "1.35.0";

/// Validates a YAML stream strictly (unknown fields refused) against `KUBE_VERSION`.
fn validate_schema(yaml: &str) {
    let Some(tool) = validator() else {
        assert!(!required(), "kubernetes-validate is missing (pip install kubernetes-validate; tests/run-all does)");
        eprintln!("######## SKIPPED the Kubernetes schema check: kubernetes-validate is not installed ########");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("manifest.yaml");
    fs::write(&file, yaml).expect("write");
    let o = Command::new(&tool)
        .args(["--strict", "-k", KUBE_VERSION, file.to_str().expect("utf-8")])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", tool.display()));
    assert!(o.status.success(), "schema check failed:\n{}{}\n{yaml}", text(&o.stdout), text(&o.stderr));
    let passed = text(&o.stdout).lines().filter(|l| l.contains(" passed for resource ")).count();
    assert_eq!(passed, documents(yaml).len(), "every document was checked: {}", text(&o.stdout));
}

#[test]
#[cfg_attr(
    not(have_kube_validate),
    ignore = "needs kubernetes-validate (AICONTAINERS_KUBE_VALIDATE or PATH; tests/run-all installs it)"
)]
fn every_export_validates_against_the_kubernetes_schema() {
    if validator().is_none() {
        validate_schema("");
        return;
    }
    // The validator rejects what it should, so a pass means something.
    let bad = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers:\n    - name: x\n      image: y\n      ports:\n        - containerPort: \"yes\"\n";
    let tool = validator().expect("validator");
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("bad.yaml"), bad).expect("write");
    let o = Command::new(&tool)
        .args(["--strict", "-k", KUBE_VERSION])
        .arg(dir.path().join("bad.yaml"))
        .output()
        .expect("runs");
    assert!(!o.status.success(), "kubernetes-validate accepted a string port");

    for name in examples() {
        let o = aictl(&["export", "kube", "--account", "aimodels:990", &format!("examples/{name}.toml")]);
        validate_schema(&text(&o.stdout));
    }
    for extra in [
        &["--kind", "pod"][..],
        &[
            "--kind",
            "pod",
            "--models",
            "init",
            "--aictl-image",
            "r.example/aictl:1",
            "--host-ports",
            "--namespace",
            "llm",
        ],
    ] {
        let mut args = vec!["export", "kube", "--account", "aimodels:990"];
        args.extend_from_slice(extra);
        args.push("examples");
        let o = aictl(&args);
        assert!(o.status.success(), "{}", text(&o.stderr));
        validate_schema(&text(&o.stdout));
    }
}
