//! Many services: Quadlet runs on shards at once. A stand-in for podman's Quadlet (a shell
//! script: the real one is tested in the VM, tests/e2e) shows that every unit is finished, and
//! that what one shard's Quadlet says about a file reaches that file's service only.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use aicontainers::account::FixedAccounts;
use aicontainers::generate;
use aicontainers::host::HostGpus;
use aicontainers::quadlet::Quadlet;
use aicontainers::render::PodmanVersion;

const FAKE_QUADLET: &str = r#"#!/bin/sh
# Stand-in for podman's Quadlet: one unit per .container file; refuses files that say refuse-me.
out=$2
for f in "$QUADLET_UNIT_DIRS"/*.container; do
    n=$(basename "$f" .container)
    if grep -q refuse-me "$f"; then
        echo "quadlet-generator[$$]: converting \"$n.container\": unsupported key" >&2
        continue
    fi
    printf '[Unit]\nSourcePath=%s\n[Service]\nExecStart=/usr/bin/podman run --cidfile=%%t/%%N.cid %s\n' "$f" "$n" > "$out/$n.service"
done
"#;

#[test]
fn sharded_quadlet_runs_finish_every_unit_and_keep_messages_with_their_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (conf, out) = (dir.path().join("conf"), dir.path().join("out"));
    fs::create_dir_all(&conf).expect("mkdir");
    fs::create_dir_all(&out).expect("mkdir");
    let script = dir.path().join("quadlet");
    fs::write(&script, FAKE_QUADLET).expect("write");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    for i in 0..300 {
        // svc-150 asks for an image Quadlet (the stand-in) refuses.
        let image = if i == 150 { "localhost/refuse-me:1" } else { "localhost/a:1" };
        fs::write(
            conf.join(format!("svc-{i:03}.toml")),
            format!("[service]\nimage = \"{image}\"\nrun-as = \"aimodels\"\n"),
        )
        .expect("write");
    }
    let accounts = FixedAccounts::parse(&["aimodels:990".to_owned()]).expect("accounts");
    let plan =
        generate::plan(&[&conf], &accounts, PodmanVersion(5, 4, 0), &HostGpus::from_xml(Path::new("/nonexistent")));
    assert_eq!(plan.services.len(), 300);
    let quadlet = Quadlet { path: script, version: PodmanVersion(5, 4, 0) };
    let outcome = generate::write_units(plan, &out, &quadlet, Path::new("/usr/bin/aictl")).expect("writes");
    if generate::quadlet_shards(300) > 1 {
        assert!(out.join(".aicontainers-quadlet/1").is_dir(), "sharded inputs");
    } else {
        println!("one CPU here: Quadlet ran on one shard");
    }
    assert_eq!(outcome.generated.len(), 299);
    let unit = fs::read_to_string(out.join("svc-299.service")).expect("unit");
    assert!(unit.contains(&format!("SourcePath={}\n", conf.join("svc-299.toml").display())), "{unit}");
    assert!(unit.contains("--cidfile=/run/user/990/%N.cid"), "{unit}");
    let failed: Vec<String> = outcome.failed.iter().flat_map(|f| f.diagnostics.iter().map(|d| d.to_string())).collect();
    assert_eq!(
        failed,
        [format!(
            "{}: podman's Quadlet refused it: converting \"svc-150.container\": unsupported key",
            conf.join("svc-150.toml").display()
        )]
    );
}
