//! `aictl scan` and `aictl sbom` on root filesystems built here: real package databases where
//! this machine can make them (its own dpkg status; rpm databases written by rpm itself from
//! packages rpmbuild makes), hand-written ones where it cannot (apk: apk-tools is not packaged
//! for Debian, so the installed database is written in its documented format), and hostile
//! ones (links out of the image, FIFOs, devices, huge files, bad bytes).
//!
//! The contract is `aictl scan --rootfs DIR --advisories DIR --json`:
//! `{"findings": [{"id", "aliases", "package", "ecosystem", "installed", "fixed", "severity"}]}`.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

fn aictl(args: &[&str]) -> Output {
    // A scan that blocked (on a FIFO, a device) would hang the test run: it is ended after a
    // minute and the test fails saying so. A bound on a hang, not a timed assertion.
    let mut child = Command::new(env!("CARGO_BIN_EXE_aictl"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("aictl runs");
    let (tx, rx) = std::sync::mpsc::channel();
    let id = child.id();
    let guard = std::thread::spawn(move || {
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
        }
    });
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err_t = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = child.wait().expect("aictl ends");
    let _ = tx.send(());
    guard.join().expect("guard");
    let out = Output {
        status,
        stdout: out_t.join().expect("stdout").into_bytes(),
        stderr: err_t.join().expect("stderr").into_bytes(),
    };
    assert!(out.status.code().is_some(), "aictl {args:?} was killed: it blocked for a minute");
    out
}

fn write(path: &Path, data: impl AsRef<[u8]>) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, data).expect("write");
}

fn os_release(root: &Path, id: &str, version: &str) {
    write(&root.join("etc/os-release"), format!("ID={id}\nVERSION_ID=\"{version}\"\n"));
}

/// An OSV record for one package with one range.
fn record(dir: &Path, id: &str, ecosystem: &str, name: &str, events: Value) {
    let r = json!({
        "id": id,
        "aliases": [format!("CVE-{id}")],
        "affected": [{"package": {"ecosystem": ecosystem, "name": name}, "ranges": [{"type": "ECOSYSTEM", "events": events}]}],
        "database_specific": {"severity": "high"},
    });
    write(&dir.join(format!("{id}.json")), serde_json::to_vec_pretty(&r).expect("json"));
}

fn scan(root: &Path, advisories: &Path) -> Vec<Value> {
    let out =
        aictl(&["scan", "--rootfs", &root.to_string_lossy(), "--advisories", &advisories.to_string_lossy(), "--json"]);
    assert!(out.status.success(), "aictl scan: {}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    doc["findings"].as_array().expect("findings").clone()
}

fn sbom(root: &Path) -> Value {
    let out = aictl(&["sbom", "--rootfs", &root.to_string_lossy(), "--name", "test"]);
    assert!(out.status.success(), "aictl sbom: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn ids(findings: &[Value]) -> Vec<String> {
    findings
        .iter()
        .map(|f| format!("{} {}", f["id"].as_str().unwrap_or(""), f["package"].as_str().unwrap_or("")))
        .collect()
}

#[test]
#[cfg_attr(not(have_dpkg), ignore = "needs this host's dpkg database (/var/lib/dpkg/status) and dpkg-query")]
fn a_debian_rootfs_from_a_real_dpkg_database_is_inventoried_and_matched() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("var/lib/dpkg")).expect("mkdir");
    fs::copy("/var/lib/dpkg/status", root.join("var/lib/dpkg/status")).expect("copy status");
    os_release(&root, "debian", "13");
    // What dpkg itself says is on disk.
    let q = Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Status} ${Package} ${Version} ${source:Package}\n"])
        .output()
        .expect("dpkg-query");
    let listed: Vec<(String, String, String)> = String::from_utf8_lossy(&q.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split(' ');
            let status = w.next()?;
            let (name, version, source) = (w.next()?, w.next()?, w.next()?);
            (!matches!(status, "not-installed" | "config-files")).then(|| (name.into(), version.into(), source.into()))
        })
        .collect();
    let doc = sbom(&root);
    let comps = doc["components"].as_array().expect("components");
    assert_eq!(comps.len(), listed.len(), "one component per installed package");
    let (name, version, source) = listed.iter().find(|(n, _, _)| n == "dpkg").expect("dpkg is installed").clone();
    assert!(comps.iter().any(|c| c["name"] == name.as_str() && c["version"] == version.as_str()));
    println!("{} packages from this host's dpkg database", comps.len());

    // dpkg's source package gets an advisory fixed just above the installed version.
    let adv = tmp.path().join("adv");
    let fixed = format!("{version}+fix1");
    record(&adv, "TEST-1", "Debian:13", &source, json!([{"introduced": "0"}, {"fixed": fixed}]));
    record(&adv, "TEST-2", "Debian:12", &source, json!([{"introduced": "0"}, {"fixed": fixed}]));
    record(&adv, "TEST-3", "Debian:13", &source, json!([{"introduced": "0"}, {"fixed": version}]));
    record(&adv, "TEST-4", "Debian:13", &source, json!([{"introduced": "0"}, {"last_affected": version}]));
    let findings = scan(&root, &adv);
    let f = findings.iter().find(|f| f["id"] == "TEST-1").unwrap_or_else(|| panic!("TEST-1 in {findings:?}"));
    assert_eq!(f["package"], name.as_str());
    assert_eq!(f["installed"], version.as_str());
    assert_eq!(f["fixed"], fixed.as_str());
    assert_eq!(f["ecosystem"], "Debian:13");
    assert_eq!(f["severity"], "high");
    assert_eq!(f["aliases"], json!(["CVE-TEST-1"]));
    let f4 = findings.iter().find(|f| f["id"] == "TEST-4").expect("last_affected at the installed version");
    assert_eq!(f4["fixed"], Value::Null, "no fix known: null");
    assert!(!ids(&findings).iter().any(|i| i.starts_with("TEST-2 ")), "another release's record matched");
    assert!(!ids(&findings).iter().any(|i| i.starts_with("TEST-3 ")), "the fixed version itself matched");
}

#[test]
#[cfg_attr(not(have_rpmbuild), ignore = "needs rpm and rpmbuild (Debian's rpm package) to make a real rpm database")]
fn an_rpm_rootfs_with_a_database_written_by_rpm_is_inventoried_and_matched() {
    let tmp = tempfile::tempdir().expect("tmp");
    let top = tmp.path().join("build");
    let spec = top.join("SPECS/tinypkg.spec");
    write(
        &spec,
        "Name: tinypkg\nVersion: 1.2.3\nRelease: 4.el9\nEpoch: 2\nSummary: t\nLicense: MIT\nBuildArch: noarch\n%description\nt\n%files\n",
    );
    let st = Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .args(["-bb", &spec.to_string_lossy()])
        .output()
        .expect("rpmbuild");
    assert!(st.status.success(), "rpmbuild: {}", String::from_utf8_lossy(&st.stderr));
    let root = tmp.path().join("root");
    let db = root.join("var/lib/rpm");
    fs::create_dir_all(&db).expect("mkdir");
    let rpm = |args: &[&str]| {
        let o = Command::new("rpm").arg("--dbpath").arg(&db).args(args).output().expect("rpm");
        assert!(o.status.success(), "rpm {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    rpm(&["--initdb"]);
    let pkg = top.join("RPMS/noarch/tinypkg-1.2.3-4.el9.noarch.rpm");
    rpm(&["-i", "--justdb", "--nodeps", "--ignorearch", "--ignoreos", &pkg.to_string_lossy()]);
    assert!(db.join("rpmdb.sqlite").is_file(), "rpm wrote a SQLite database");
    os_release(&root, "rocky", "9.3");
    let doc = sbom(&root);
    let c = &doc["components"][0];
    assert_eq!((c["name"].as_str(), c["version"].as_str()), (Some("tinypkg"), Some("2:1.2.3-4.el9")));
    assert_eq!(c["purl"], "pkg:rpm/rocky/tinypkg@2%3A1.2.3-4.el9?arch=noarch&distro=rocky-9.3");

    let adv = tmp.path().join("adv");
    record(&adv, "RLSA-1", "Rocky Linux:9", "tinypkg", json!([{"introduced": "0"}, {"fixed": "2:1.2.3-5.el9"}]));
    record(&adv, "RLSA-2", "Rocky Linux:9", "tinypkg", json!([{"introduced": "0"}, {"fixed": "2:1.2.3-4.el9"}]));
    record(&adv, "RLSA-3", "Rocky Linux:9", "tinypkg", json!([{"introduced": "0"}, {"fixed": "1.2.4-1.el9"}]));
    let findings = scan(&root, &adv);
    assert_eq!(ids(&findings), ["RLSA-1 tinypkg"], "epoch 2 is above the epoch-less 1.2.4");
    assert_eq!(findings[0]["fixed"], "2:1.2.3-5.el9");
}

#[test]
fn alpine_python_and_npm_packages_are_found_and_matched() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    os_release(&root, "alpine", "3.20.3");
    // apk's installed database (apk-tools is not packaged for Debian: written by hand, in the
    // format apk writes: one letter, a colon, the value; a blank line between packages).
    write(
        &root.join("lib/apk/db/installed"),
        "C:Q1abc=\nP:libcrypto3\nV:3.3.2-r0\nA:x86_64\no:openssl\n\nP:musl\nV:1.2.5-r0\nA:x86_64\no:musl\n",
    );
    let site = root.join("usr/lib/python3.12/site-packages");
    write(
        &site.join("PyYAML-6.0.1.dist-info/METADATA"),
        "Metadata-Version: 2.1\nName: PyYAML\nVersion: 6.0.1\n\nbody: Name: not-me\n",
    );
    write(&site.join("old_style.egg-info"), "Metadata-Version: 1.0\nName: old-style\nVersion: 0.1\n");
    write(&site.join("broken-1.0.dist-info/METADATA"), b"Name: broken\nVersion: \xff\n".as_slice());
    write(&root.join("app/node_modules/left-pad/package.json"), r#"{"name": "left-pad", "version": "1.3.0"}"#);
    write(&root.join("app/node_modules/@scope/pkg/package.json"), r#"{"name": "@scope/pkg", "version": "2.0.0-rc.1"}"#);
    write(&root.join("app/node_modules/bad/package.json"), "{not json");
    let out = aictl(&["sbom", "--rootfs", &root.to_string_lossy()]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken-1.0.dist-info/METADATA:2:0: is not UTF-8"), "{stderr}");
    assert!(stderr.contains("node_modules/bad/package.json:1:2: is not valid JSON"), "{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let mut names: Vec<String> = doc["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| format!("{}@{}", c["name"].as_str().unwrap_or(""), c["version"].as_str().unwrap_or("")))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "@scope/pkg@2.0.0-rc.1",
            "PyYAML@6.0.1",
            "left-pad@1.3.0",
            "libcrypto3@3.3.2-r0",
            "musl@1.2.5-r0",
            "old-style@0.1"
        ]
    );

    let adv = tmp.path().join("adv");
    record(&adv, "ALPINE-1", "Alpine:v3.20", "openssl", json!([{"introduced": "0"}, {"fixed": "3.3.2-r1"}]));
    record(&adv, "ALPINE-2", "Alpine:v3.19", "openssl", json!([{"introduced": "0"}, {"fixed": "3.3.2-r1"}]));
    record(&adv, "PYSEC-1", "PyPI", "pyyaml", json!([{"introduced": "0"}, {"fixed": "6.0.2rc1"}]));
    record(&adv, "GHSA-1", "npm", "@scope/pkg", json!([{"introduced": "2.0.0-alpha"}, {"fixed": "2.0.0"}]));
    record(&adv, "GHSA-2", "npm", "left-pad", json!([{"introduced": "0"}, {"fixed": "1.3.0"}]));
    let findings = scan(&root, &adv);
    assert_eq!(ids(&findings), ["ALPINE-1 libcrypto3", "GHSA-1 @scope/pkg", "PYSEC-1 PyYAML"]);
}

/// A root filesystem with one hostile thing at `rel`, made by `make`.
fn hostile(rel: &str, make: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    fs::create_dir_all(&root).expect("mkdir");
    os_release(&root, "debian", "13");
    let path = root.join(rel);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    make(&path);
    (tmp, root)
}

#[test]
fn links_out_of_the_image_resolve_inside_it() {
    let stanza = "Package: evil\nStatus: install ok installed\nVersion: 1.0\n";
    for target in ["../../../../../../../../outside/status", "/outside/status", "/proc/self/root/outside/status"] {
        let (tmp, root) = hostile("var/lib/dpkg/status", |p| {
            symlink(target, p).expect("symlink");
        });
        // The file the link would reach on the host, if it were followed there.
        write(&tmp.path().join("outside/status"), stanza);
        let out = aictl(&["sbom", "--rootfs", &root.to_string_lossy()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("evil"), "{target}: read a file outside the image: {stdout}");
        // Inside the image the same link reaches the image's own /outside/status.
        write(&root.join("outside/status"), stanza.replace("evil", "inside"));
        let out = aictl(&["sbom", "--rootfs", &root.to_string_lossy()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if target.starts_with("/proc") {
            assert!(!out.status.success() || !stdout.contains("evil"), "{target}: {stdout}");
        } else {
            assert!(stdout.contains("\"inside\""), "{target}: the link should resolve in the image: {stdout}");
        }
    }
}

#[test]
fn fifos_devices_huge_files_and_bad_bytes_are_refused_naming_the_file() {
    let (_t, root) =
        hostile("lib/apk/db/installed", |p| nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo"));
    let out = aictl(&["sbom", "--rootfs", &root.to_string_lossy()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("lib/apk/db/installed: is a FIFO, not a regular file"), "{err}");

    let (_t, root) = hostile("var/lib/dpkg/status", |p| {
        let dev = nix::sys::stat::makedev(1, 5); // what /dev/zero is
        if let Err(e) = nix::sys::stat::mknod(p, nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::S_IRUSR, dev) {
            println!("no device node here ({e}): a link to the host's /dev/zero instead");
            symlink("/dev/zero", p).expect("symlink");
        }
    });
    // A link to /dev/zero resolves to the image's own dev/zero: make it a device there too
    // where this machine allows it.
    let _ = fs::create_dir_all(root.join("dev"));
    let _ = nix::sys::stat::mknod(
        &root.join("dev/zero"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::S_IRUSR,
        nix::sys::stat::makedev(1, 5),
    );
    let out = aictl(&["sbom", "--rootfs", &root.to_string_lossy()]);
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        (!out.status.success() && err.contains("is a device, not a regular file"))
            || (out.status.success() && !stdout.contains("\"name\": \"")),
        "a device was read: {err} {stdout}"
    );

    let (_t, root) = hostile("var/lib/dpkg/status", |p| {
        let f = fs::File::create(p).expect("create");
        f.set_len((256 << 20) + 1).expect("sparse file");
    });
    let out = aictl(&["sbom", "--rootfs", &root.to_string_lossy()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("var/lib/dpkg/status: is larger than 268435456 bytes"), "{err}");

    let (_t, root) = hostile("var/lib/dpkg/status", |p| {
        write(p, b"Package: a\nStatus: install ok installed\nVersion: 1.0\xff\n".as_slice());
    });
    let out = aictl(&["sbom", "--rootfs", &root.to_string_lossy()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("var/lib/dpkg/status:3:0: Version: is not UTF-8"), "{err}");

    let (_t, root) = hostile("var/lib/dpkg/status", |p| write(p, "Package: a\nStatus: install ok installed\n"));
    let out = aictl(&["sbom", "--rootfs", &root.to_string_lossy()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("status:1:0: Version: missing"), "{err}");

    let (_t, root) = hostile("var/lib/rpm/Packages", |p| write(p, "berkeley"));
    let out = aictl(&["sbom", "--rootfs", &root.to_string_lossy()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("Berkeley DB"), "{err}");

    let (_t, root) = hostile("var/lib/rpm/rpmdb.sqlite", |p| write(p, "not sqlite at all, not at all"));
    let out = aictl(&["sbom", "--rootfs", &root.to_string_lossy()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("rpmdb.sqlite: cannot read the rpm database"), "{err}");
}

#[test]
fn a_rescan_of_the_cached_sbom_gives_the_same_findings() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    os_release(&root, "debian", "13");
    write(
        &root.join("var/lib/dpkg/status"),
        "Package: libssl3t64\nStatus: install ok installed\nVersion: 3.5.1-1+b1\nSource: openssl (3.5.1-1)\nArchitecture: amd64\n\n\
         Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n",
    );
    let adv = tmp.path().join("adv");
    record(&adv, "DSA-1", "Debian:13", "openssl", json!([{"introduced": "0"}, {"fixed": "3.5.1-2"}]));
    // Compared by the source version (3.5.1-1), not the binNMU's 3.5.1-1+b1.
    record(&adv, "DSA-2", "Debian:13", "openssl", json!([{"introduced": "0"}, {"fixed": "3.5.1-1+b0"}]));
    let direct = scan(&root, &adv);
    assert_eq!(ids(&direct), ["DSA-1 libssl3t64", "DSA-2 libssl3t64"]);
    let cached = tmp.path().join("cached.cdx.json");
    fs::write(&cached, serde_json::to_vec(&sbom(&root)).expect("json")).expect("write");
    let out = aictl(&["scan", "--sbom", &cached.to_string_lossy(), "--advisories", &adv.to_string_lossy(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["findings"].as_array().expect("findings"), &direct);
}

fn fixtures() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/scanners");
    assert!(
        p.is_dir(),
        "{} is missing: these tests read the shared scanner fixtures next to the repository, which CI provides",
        p.display()
    );
    p
}

#[test]
fn trivy_and_grype_reports_and_other_tools_sboms_are_read() {
    let f = fixtures();
    let run = |args: &[&str]| -> Vec<Value> {
        let out = aictl(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        doc["findings"].as_array().expect("findings").clone()
    };
    let trivy = run(&["scan", "--report", &f.join("trivy/debian-buster.json").to_string_lossy(), "--json"]);
    assert_eq!(ids(&trivy), ["CVE-2019-18224 libidn2-0", "CVE-2019-18276 bash"]);
    assert_eq!(trivy[0]["fixed"], "2.0.5-1+deb10u1");
    assert_eq!(trivy[0]["severity"], "critical");
    assert_eq!(trivy[1]["fixed"], Value::Null);
    assert_eq!(trivy[1]["ecosystem"], "Debian:10");
    let ubuntu = run(&["scan", "--report", &f.join("trivy/ubuntu-1804.json").to_string_lossy(), "--json"]);
    assert_eq!(ubuntu.len(), 5);
    assert!(ubuntu.iter().all(|x| x["ecosystem"] == "Ubuntu:18.04"), "{ubuntu:?}");
    let grype = run(&["scan", "--report", &f.join("grype/grype-json-image.json").to_string_lossy(), "--json"]);
    assert_eq!(ids(&grype), ["CVE-1999-0001 package-1", "CVE-1999-0002 package-2"]);
    assert_eq!(grype[0]["fixed"], "1.2.1");

    // trivy's CycloneDX SBOM of a CentOS 7 image, rescanned against an advisory for one of
    // its packages (its purls say rpm, centos, and the source rpm).
    let tmp = tempfile::tempdir().expect("tmp");
    let doc: Value =
        serde_json::from_slice(&fs::read(f.join("trivy/centos-7-cyclonedx.json")).expect("read")).expect("JSON");
    let c = doc["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["purl"].as_str().is_some_and(|p| p.starts_with("pkg:rpm/")))
        .expect("an rpm component");
    let name = c["name"].as_str().expect("name");
    let version = c["version"].as_str().expect("version");
    record(tmp.path(), "RHSA-1", "Red Hat", name, json!([{"introduced": "0"}, {"fixed": format!("{version}.1")}]));
    let found = run(&[
        "scan",
        "--sbom",
        &f.join("trivy/centos-7-cyclonedx.json").to_string_lossy(),
        "--advisories",
        &tmp.path().to_string_lossy(),
        "--json",
    ]);
    assert_eq!(ids(&found), [format!("RHSA-1 {name}")]);
}

#[test]
fn osv_fixture_records_load_and_bad_records_are_reported_by_file_and_line() {
    let f = fixtures();
    let tmp = tempfile::tempdir().expect("tmp");
    let adv = tmp.path().join("adv");
    fs::create_dir_all(&adv).expect("mkdir");
    for r in ["DSA-3029-1.json", "DLA-3623-1.json", "CVE-2018-5407.alpine.json"] {
        fs::copy(f.join("osv").join(r), adv.join(r)).expect("copy");
    }
    write(&adv.join("bad.json"), "{\n  \"id\": 3\n}");
    nix::unistd::mkfifo(&adv.join("fifo.json"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let root = tmp.path().join("root");
    os_release(&root, "debian", "7");
    write(
        &root.join("var/lib/dpkg/status"),
        "Package: nginx\nStatus: install ok installed\nVersion: 1.2.1-2.2+wheezy2\n",
    );
    let out = aictl(&["scan", "--rootfs", &root.to_string_lossy(), "--advisories", &adv.to_string_lossy(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.json:2:"), "{err}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let findings = doc["findings"].as_array().expect("findings");
    assert_eq!(ids(findings), ["DSA-3029-1 nginx"]);
    assert_eq!(findings[0]["fixed"], "1.2.1-2.2+wheezy3");
    assert_eq!(findings[0]["aliases"], json!(["CVE-2014-3616"]));
}

#[test]
fn the_advisory_cache_is_used_while_the_directory_is_unchanged_and_rebuilt_when_it_changes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    os_release(&root, "debian", "13");
    write(
        &root.join("var/lib/dpkg/status"),
        "Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.3.1-1\nSource: zlib\n",
    );
    let adv = tmp.path().join("adv");
    record(&adv, "DSA-10", "Debian:13", "zlib", json!([{"introduced": "0"}, {"fixed": "1:1.3.1-2"}]));
    let cache = tmp.path().join("cache.json");
    let run = || -> Vec<String> {
        let out = aictl(&[
            "scan",
            "--rootfs",
            &root.to_string_lossy(),
            "--advisories",
            &adv.to_string_lossy(),
            "--advisory-cache",
            &cache.to_string_lossy(),
            "--json",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        ids(doc["findings"].as_array().expect("findings"))
    };
    assert_eq!(run(), ["DSA-10 zlib1g"]);
    assert!(cache.is_file(), "the cache was written");
    // Unchanged directory: the answer comes from the cache. A planted finding in the cache
    // shows it was read rather than the records.
    let planted = fs::read_to_string(&cache).expect("cache").replace("DSA-10", "DSA-99");
    fs::write(&cache, planted).expect("plant");
    assert_eq!(run(), ["DSA-99 zlib1g"]);
    // A new record changes the directory: parsed again, the cache rewritten.
    record(&adv, "DSA-11", "Debian:13", "zlib", json!([{"introduced": "0"}, {"fixed": "1:1.3.1-3"}]));
    assert_eq!(run(), ["DSA-10 zlib1g", "DSA-11 zlib1g"]);
    // A cache that is garbage is only slower.
    fs::write(&cache, "garbage").expect("garbage");
    assert_eq!(run(), ["DSA-10 zlib1g", "DSA-11 zlib1g"]);
}

/// Validates documents against the CycloneDX 1.5 schema (tests/fixtures/cyclonedx) with
/// Python's jsonschema; returns each document's errors.
fn cyclonedx_errors(docs: &[&Path]) -> Vec<String> {
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/cyclonedx");
    let script = r#"
import json, sys, pathlib, jsonschema
d = pathlib.Path(sys.argv[1])
schema = json.loads((d / "bom-1.5.schema.json").read_text())
store = {f: json.loads((d / f).read_text()) for f in ["spdx.schema.json", "jsf-0.82.schema.json"]}
resolver = jsonschema.RefResolver(base_uri="http://cyclonedx.org/schema/", referrer=schema, store=store)
v = jsonschema.Draft7Validator(schema, resolver=resolver)
for f in sys.argv[2:]:
    errs = [e.message for e in v.iter_errors(json.load(open(f)))]
    print(json.dumps(errs))
"#;
    let out = Command::new("/usr/bin/python3")
        .arg("-W")
        .arg("ignore")
        .arg("-c")
        .arg(script)
        .arg(&schemas)
        .args(docs)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "validator: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

#[test]
#[cfg_attr(not(have_py_jsonschema), ignore = "needs /usr/bin/python3 with jsonschema (Debian's python3-jsonschema)")]
fn sboms_are_valid_cyclonedx_1_5() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    os_release(&root, "debian", "13");
    write(
        &root.join("var/lib/dpkg/status"),
        "Package: libc6\nStatus: install ok installed\nVersion: 2.41-12\nSource: glibc\nArchitecture: amd64\n",
    );
    write(&root.join("usr/lib/python3/dist-packages/Foo_Bar-1.0.dist-info/METADATA"), "Name: Foo_Bar\nVersion: 1.0\n");
    write(&root.join("srv/node_modules/@a/b/package.json"), r#"{"name": "@a/b", "version": "0.1.0"}"#);
    write(&root.join("usr/bin/app"), go_fixture("amd64"));
    let rust = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/binaries/rust-app-amd64");
    write(&root.join("usr/bin/rust-app"), fs::read(rust).expect("fixture"));
    let text = sbom(&root).to_string();
    assert!(text.contains("pkg:golang/stdlib@1.19.8"), "the Go packages are in what is validated");
    assert!(text.contains("pkg:cargo/flate2@1.0.28"), "the Rust packages are in what is validated");
    let good = tmp.path().join("good.json");
    fs::write(&good, serde_json::to_vec(&sbom(&root)).expect("json")).expect("write");
    // The validator must see errors: a document with a component of an unknown type.
    let mut doc = sbom(&root);
    doc["components"][0]["type"] = json!("not-a-type");
    let bad = tmp.path().join("bad.json");
    fs::write(&bad, serde_json::to_vec(&doc).expect("json")).expect("write");
    let errors = cyclonedx_errors(&[&good, &bad]);
    assert_eq!(errors[0], "[]", "aictl sbom's output is not valid CycloneDX 1.5");
    assert_ne!(errors[1], "[]", "the validator accepted a broken document");
}

/// The Go fixtures (tests/fixtures/binaries/make-go.sh says how they were made: real Go 1.19
/// build information of one program for amd64, 386 and s390x).
fn go_fixture(arch: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/binaries/go-app-{arch}"));
    fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn purls(doc: &Value) -> Vec<String> {
    let mut out: Vec<String> = doc["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| format!("{} {}", c["purl"].as_str().unwrap_or(""), c["properties"]))
        .collect();
    out.sort();
    out
}

#[test]
fn go_binaries_modules_are_found_with_replacements_and_matched() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    os_release(&root, "debian", "13");
    write(&root.join("usr/bin/app"), go_fixture("amd64"));
    write(&root.join("app32"), go_fixture("386"));
    write(&root.join("opt/vendor/bin/app-s390x"), go_fixture("s390x"));
    // Not searched: a library directory, a link (the merged /usr's bin), a script.
    write(&root.join("usr/lib/x/app"), go_fixture("amd64"));
    symlink("usr/bin", root.join("bin")).expect("symlink");
    write(&root.join("usr/bin/script"), "#!/bin/sh\n");
    let doc = sbom(&root);
    let p = purls(&doc);
    let found: Vec<&str> = p.iter().map(|l| l.split(' ').next().unwrap_or("")).collect();
    let mut want = Vec::new();
    for _ in 0..3 {
        want.extend([
            "pkg:golang/example.com/fork@v1.2.3",
            "pkg:golang/example.com/plain@v0.3.0",
            "pkg:golang/stdlib@1.19.8",
        ]);
    }
    want.sort();
    assert_eq!(found, want, "{p:#?}");
    for loc in ["usr/bin/app", "app32", "opt/vendor/bin/app-s390x"] {
        assert!(p.iter().any(|l| l.contains(&format!("\"value\":\"{loc}\""))), "{loc} is not a location: {p:#?}");
    }
    assert!(p.iter().all(|l| l.contains("\"aicontainers:ecosystem\",\"value\":\"Go\"")), "{p:#?}");

    let adv = tmp.path().join("osv");
    record(&adv, "GO-2023-0001", "Go", "stdlib", json!([{"introduced": "0"}, {"fixed": "1.19.9"}]));
    record(&adv, "GO-2023-0002", "Go", "example.com/fork", json!([{"introduced": "1.2.0"}, {"fixed": "1.2.4"}]));
    // Replaced: the binary holds the fork's code, not this module's.
    record(&adv, "GO-2023-0003", "Go", "example.com/old", json!([{"introduced": "0"}]));
    record(&adv, "GO-2023-0004", "Go", "example.com/plain", json!([{"introduced": "0"}, {"fixed": "0.3.0"}]));
    record(&adv, "GO-2023-0005", "Go", "stdlib", json!([{"introduced": "1.20.0"}, {"fixed": "1.20.4"}]));
    let findings = scan(&root, &adv);
    assert_eq!(ids(&findings), ["GO-2023-0001 stdlib", "GO-2023-0002 example.com/fork"], "{findings:#?}");
    assert_eq!(findings[0]["installed"], "1.19.8");
    assert_eq!(findings[0]["fixed"], "1.19.9");
    assert_eq!(findings[1]["installed"], "v1.2.3");
    assert_eq!(findings[1]["fixed"], "1.2.4");
}

#[test]
fn hostile_binaries_are_warnings_or_nothing_never_reads_past_them() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    os_release(&root, "debian", "13");
    let good = go_fixture("amd64");
    write(&root.join("usr/bin/good"), &good);
    // Cut short in the middle of the section header table (at the end of the file).
    write(&root.join("usr/bin/cut"), &good[..good.len() - 100]);
    // Only an ELF magic, and a header whose section table lies past the end.
    write(&root.join("usr/bin/magic"), b"\x7fELF");
    let mut far = good[..64].to_vec();
    far[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
    write(&root.join("usr/bin/far"), &far);
    // A FIFO and a device named like programs: never opened for reading (a FIFO would block).
    nix::unistd::mkfifo(&root.join("usr/bin/fifo"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let dev = nix::sys::stat::makedev(1, 5);
    if let Err(e) = nix::sys::stat::mknod(
        &root.join("usr/bin/zero"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::S_IRUSR,
        dev,
    ) {
        println!("no device node here ({e}): the device case is not tried");
    }
    // A link out of the image to a real Go binary on the host is not followed.
    write(&tmp.path().join("host-app"), &good);
    symlink(tmp.path().join("host-app"), root.join("usr/bin/outside")).expect("symlink");
    let out = aictl(&["sbom", "--rootfs", &root.to_string_lossy()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let locations: Vec<String> = purls(&doc).iter().filter(|l| l.contains("stdlib")).cloned().collect();
    assert_eq!(locations.len(), 1, "{locations:#?}");
    assert!(locations[0].contains("usr/bin/good"), "{locations:#?}");
    assert!(err.contains("usr/bin/cut: ") && err.contains("past the end"), "{err}");
    assert!(err.contains("usr/bin/far: ") && err.contains("past"), "{err}");
    assert!(!err.contains("usr/bin/magic"), "a 4-byte file is nothing, not a warning: {err}");
    assert!(!err.contains("usr/bin/fifo") && !err.contains("usr/bin/zero"), "special files are skipped: {err}");
}

#[test]
#[cfg_attr(not(have_registry), ignore = "needs /usr/bin/docker-registry (Debian's docker-registry, a Go program)")]
fn a_real_go_program_from_debian_is_inventoried() {
    // Debian builds it without module mode: its build information names only the toolchain.
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    os_release(&root, "debian", "12");
    fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
    fs::copy("/usr/bin/docker-registry", root.join("usr/bin/docker-registry")).expect("copy");
    let doc = sbom(&root);
    let p = purls(&doc);
    assert!(p.iter().any(|l| l.starts_with("pkg:golang/stdlib@1.")), "{p:#?}");
}

/// A minimal 64-bit little-endian ELF file with one section `name` holding `data`.
fn elf_with_section(name: &str, data: &[u8]) -> Vec<u8> {
    let names = format!("\0{name}\0.shstrtab\0");
    let mut f = vec![0u8; 64];
    f[..6].copy_from_slice(b"\x7fELF\x02\x01");
    let data_off = f.len() as u64;
    f.extend(data);
    let names_off = f.len() as u64;
    f.extend(names.as_bytes());
    let shoff = f.len() as u64;
    f[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
    f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
    f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
    f[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
    f.extend([0u8; 64]);
    for (name_at, off, len) in
        [(1u32, data_off, data.len() as u64), (2 + name.len() as u32, names_off, names.len() as u64)]
    {
        let mut e = [0u8; 64];
        e[..4].copy_from_slice(&name_at.to_le_bytes());
        e[4..8].copy_from_slice(&1u32.to_le_bytes());
        e[0x18..0x20].copy_from_slice(&off.to_le_bytes());
        e[0x20..0x28].copy_from_slice(&len.to_le_bytes());
        f.extend(e);
    }
    f
}

fn zlib(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(data).expect("compress");
    z.finish().expect("compress")
}

#[test]
fn cargo_auditable_binaries_crates_io_packages_are_found_and_matched() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    os_release(&root, "debian", "13");
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/binaries/rust-app-amd64");
    write(&root.join("usr/local/bin/app"), fs::read(&p).expect("the fixture (tests/fixtures/binaries/make-rust.sh)"));
    // The same list in a hand-made ELF file, to show the fixture's bytes are not special.
    let json = br#"{"packages":[{"name":"smallvec","version":"1.6.0","source":"crates.io"}]}"#;
    write(&root.join("app"), elf_with_section(".dep-v0", &zlib(json)));
    let doc = sbom(&root);
    let found: Vec<String> = purls(&doc).iter().map(|l| l.split(' ').next().unwrap_or("").to_owned()).collect();
    // The build dependency (cc), the git one (smallvec 1.11.0) and the local root are not kept.
    assert_eq!(
        found,
        [
            "pkg:cargo/adler2@2.0.0",
            "pkg:cargo/flate2@1.0.28",
            "pkg:cargo/miniz_oxide@0.7.1",
            "pkg:cargo/smallvec@1.6.0"
        ]
    );
    let adv = tmp.path().join("osv");
    record(&adv, "RUSTSEC-2021-0003", "crates.io", "smallvec", json!([{"introduced": "1.6.0"}, {"fixed": "1.6.1"}]));
    record(&adv, "RUSTSEC-2099-0001", "crates.io", "flate2", json!([{"introduced": "0"}, {"fixed": "1.0.29"}]));
    record(&adv, "RUSTSEC-2099-0002", "crates.io", "cc", json!([{"introduced": "0"}]));
    record(&adv, "GHSA-0000-0000-0001", "Go", "flate2", json!([{"introduced": "0"}]));
    let findings = scan(&root, &adv);
    assert_eq!(ids(&findings), ["RUSTSEC-2021-0003 smallvec", "RUSTSEC-2099-0001 flate2"], "{findings:#?}");
    assert_eq!(findings[0]["fixed"], "1.6.1");
    assert_eq!(findings[0]["ecosystem"], "crates.io");
}

#[test]
fn hostile_cargo_auditable_sections_are_warnings_naming_the_binary() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    os_release(&root, "debian", "13");
    let ok = br#"{"packages":[{"name":"a","version":"1.0.0","source":"crates.io"}]}"#;
    write(&root.join("usr/bin/ok"), elf_with_section(".dep-v0", &zlib(ok)));
    // A zip bomb: 256 MiB of spaces from about 256 KiB.
    write(&root.join("usr/bin/bomb"), elf_with_section(".dep-v0", &zlib(&vec![b' '; 256 << 20])));
    write(&root.join("usr/bin/notzlib"), elf_with_section(".dep-v0", b"plain bytes"));
    write(&root.join("usr/bin/notjson"), elf_with_section(".dep-v0", &zlib(b"\xff{")));
    // A section larger than what is read (4 MiB).
    write(&root.join("usr/bin/huge"), elf_with_section(".dep-v0", &vec![0u8; (4 << 20) + 1]));
    // A Go build information section that claims more than it holds.
    let mut go = b"\xff Go buildinf:\x08\x02".to_vec();
    go.resize(32, 0);
    go.extend([0xff, 0xff, 0x03, b'g', b'o']);
    write(&root.join("usr/bin/golie"), elf_with_section(".go.buildinfo", &go));
    let out = aictl(&["sbom", "--rootfs", &root.to_string_lossy()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let found: Vec<String> = purls(&doc).iter().map(|l| l.split(' ').next().unwrap_or("").to_owned()).collect();
    assert_eq!(found, ["pkg:cargo/a@1.0.0"]);
    for (file, why) in [
        ("bomb", "inflates to more than 8388608 bytes"),
        ("notzlib", "cannot be inflated"),
        ("notjson", "cargo-auditable dependency list"),
        ("huge", "more than the 4194304 read"),
        ("golie", "runs past"),
    ] {
        assert!(
            err.lines().any(|l| l.contains(&format!("usr/bin/{file}: ")) && l.contains(why)),
            "{file}: no warning saying {why:?}: {err}"
        );
    }
}

fn rpm_bdb_fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/rpm-bdb/{name}"));
    fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (tests/fixtures/rpm-bdb/make.sh makes it)", p.display()))
}

#[test]
fn berkeley_db_rpm_databases_are_read_in_both_byte_orders_and_page_sizes() {
    for variant in ["Packages-le", "Packages-be", "Packages-512"] {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("root");
        os_release(&root, "rhel", "8.6");
        write(&root.join("var/lib/rpm/Packages"), rpm_bdb_fixture(variant));
        let doc = sbom(&root);
        let mut got: Vec<String> = doc["components"]
            .as_array()
            .expect("components")
            .iter()
            .map(|c| format!("{} {}", c["name"].as_str().unwrap_or(""), c["version"].as_str().unwrap_or("")))
            .collect();
        got.sort();
        assert_eq!(got, ["bash 4.4.19-14.el8", "bigpkg 2.0-1.el8", "openssl-libs 1:1.1.1k-7.el8_6"], "{variant}");
        // What rpm itself lists for the database the fixtures were made from.
        let listed = String::from_utf8(rpm_bdb_fixture("packages.txt")).expect("UTF-8").replace("(none):", "");
        assert_eq!(listed.lines().collect::<Vec<_>>(), got, "{variant}");
        let adv = tmp.path().join("osv");
        record(
            &adv,
            "RHSA-2022:0001",
            "Red Hat:8",
            "openssl-libs",
            json!([{"introduced": "0"}, {"fixed": "1:1.1.1k-8.el8_6"}]),
        );
        record(&adv, "RHSA-2022:0002", "Red Hat:9", "openssl-libs", json!([{"introduced": "0"}]));
        let findings = scan(&root, &adv);
        assert_eq!(ids(&findings), ["RHSA-2022:0001 openssl-libs"], "{variant}");
    }
}

#[test]
fn hostile_berkeley_db_rpm_databases_fail_the_inventory_naming_the_file() {
    let good = rpm_bdb_fixture("Packages-le");
    let page = 4096;
    let overflow_page = (1..good.len() / page).find(|&n| good[n * page + 25] == 7).expect("an overflow page");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() - 100].to_vec(), "pages of 4096 bytes"),
        (
            "loop",
            {
                let mut b = good.clone();
                let at = overflow_page * page + 16;
                b[at..at + 4].copy_from_slice(&(overflow_page as u32).to_le_bytes());
                b
            },
            "overflow chain",
        ),
        (
            "past the last page",
            {
                let mut b = good.clone();
                let at = overflow_page * page + 16;
                b[at..at + 4].copy_from_slice(&9999u32.to_le_bytes());
                b
            },
            "out of range",
        ),
        (
            "page size",
            {
                let mut b = good.clone();
                b[20..24].copy_from_slice(&1000u32.to_le_bytes());
                b
            },
            "page size of 1000",
        ),
        (
            "a header cut inside",
            {
                let mut b = good.clone();
                // The first header's value is inline or overflow: make the overflow chain's first
                // page hold fewer bytes than the header says it has.
                let at = overflow_page * page + 22;
                b[at..at + 2].copy_from_slice(&1u16.to_le_bytes());
                b
            },
            "cannot read the rpm database",
        ),
    ];
    for (what, bytes, why) in cases {
        let (_t, root) = hostile("var/lib/rpm/Packages", |p| write(p, &bytes));
        let out = aictl(&["sbom", "--rootfs", &root.to_string_lossy()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("var/lib/rpm/Packages: ") && err.contains(why), "{what}: {err}");
    }
    let (_t, root) = hostile("usr/lib/sysimage/rpm/Packages.db", |p| write(p, "ndb"));
    let out = aictl(&["sbom", "--rootfs", &root.to_string_lossy()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("Packages.db: is an rpm database in ndb format"), "{err}");
}
