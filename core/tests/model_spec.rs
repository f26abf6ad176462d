//! `[[model]]` in service files: what is accepted, what is refused and where the error points.

use std::fs;

use aicontainers::source;

const HEAD: &str = "[service]\nimage = \"localhost/x:1\"\nrun-as = \"aimodels\"\n";

fn check(body: &str) -> Result<aicontainers::spec::Service, Vec<String>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("svc.toml");
    fs::write(&path, format!("{HEAD}{body}")).expect("write");
    source::check_file(&path, false).map_err(|diags| {
        diags.iter().map(|d| d.to_string().replace(&format!("{}", path.display()), "svc.toml")).collect()
    })
}

#[test]
fn models_are_read_with_their_sources_and_mounts() {
    let hex = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
    let service = check(&format!(
        "[[model]]\nsource = \"oci://registry.example:5000/models/mistral-7b:q4_k\"\nmount = \"/models/mistral\"\n\
         [[model]]\nsource = \"https://example.org/m/tiny.gguf\"\nsha256 = \"{hex}\"\nmount = \"/models/tiny\"\nname = \"tiny\"\n\
         [[model]]\nsource = \"hf://org/repo@v1\"\nmount = \"/models/hf\"\n"
    ))
    .expect("valid");
    let m: Vec<(String, String, String)> =
        service.models.iter().map(|m| (m.name.clone(), m.source.canonical(), m.mount.clone())).collect();
    assert_eq!(
        m,
        [
            (
                "mistral-7b".into(),
                "oci://registry.example:5000/models/mistral-7b:q4_k".into(),
                "/models/mistral".into()
            ),
            ("tiny".into(), format!("https://example.org/m/tiny.gguf#sha256={hex}"), "/models/tiny".into()),
            ("repo".into(), "hf://org/repo@v1".into(), "/models/hf".into()),
        ]
    );
}

#[test]
fn bad_models_are_reported_at_their_line_and_key() {
    let errors = check(
        "[[model]]\nsource = \"oci://r/m\"\nmount = \"models\"\n\
         [[model]]\nsource = \"https://example.org/m.gguf\"\nmount = \"/m\"\nsize = 3\n\
         [[model]]\nmount = \"/a/../etc\"\n",
    )
    .expect_err("invalid");
    let text = errors.join("\n");
    assert!(text.contains("svc.toml:5:10: model.source: `oci://r/m`: name a tag"), "{text}");
    assert!(text.contains("svc.toml:6:9: model.mount: `models`: expected an absolute path"), "{text}");
    assert!(
        text.contains("svc.toml:8:10: model.source: `https://example.org/m.gguf`: an https:// model must be pinned"),
        "{text}"
    );
    assert!(text.contains("svc.toml:10:1: model.size: unknown key `size`"), "{text}");
    assert!(text.contains("model.source: missing required key"), "{text}");
    assert!(text.contains("svc.toml:12:9: model.mount: `/a/../etc`"), "{text}");
}

#[test]
fn hostile_and_conflicting_models_are_refused() {
    let errors = check(
        "[[model]]\nsource = \"oci://r/m:1\"\nmount = \"/m\"\n\
         [[model]]\nsource = \"oci://r/n:1\"\nmount = \"/m\"\n\
         [[model]]\nsource = \"file:///srv/../etc\"\nmount = \"/x\"\n\
         [[model]]\nsource = \"oci://r/n:1\"\nmount = \"/proc\"\n\
         [[model]]\nsource = \"oci://r/o:1\"\nsha256 = \"00\"\nmount = \"/o\"\n",
    )
    .expect_err("invalid");
    let text = errors.join("\n");
    assert!(text.contains("model.mount: `/m` is already mounted"), "{text}");
    assert!(text.contains("`file:///srv/../etc`"), "{text}");
    assert!(text.contains("`/proc` would hide"), "{text}");
    assert!(text.contains("model.sha256: only https:// sources take a sha256 pin"), "{text}");
    let single = check("[model]\nsource = \"oci://r/m:1\"\nmount = \"/m\"\n").expect_err("a table, not an array");
    assert!(single.join("\n").contains("[[model]] (two brackets)"), "{single:?}");
}
