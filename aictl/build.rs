//! Tests that need a tool this machine may lack are compiled as ignored, with the reason, when
//! it is missing, so that the test runner says they did not run (in CI they run: tests/run-all
//! installs the tools, and the tests themselves fail there if one is missing).
fn main() {
    println!(
        "cargo::rustc-check-cfg=cfg(have_registry, have_kube_validate, have_dpkg, have_rpmbuild, have_py_jsonschema)"
    );
    // /usr/bin changes when packages are installed or removed.
    println!("cargo::rerun-if-changed=/usr/bin");
    println!("cargo::rerun-if-env-changed=AICONTAINERS_KUBE_VALIDATE");
    println!("cargo::rerun-if-env-changed=PATH");
    // Image scans: a real dpkg database (this host's) and real rpm databases (made by rpm).
    if std::path::Path::new("/usr/bin/dpkg-query").is_file() && std::path::Path::new("/var/lib/dpkg/status").is_file() {
        println!("cargo::rustc-cfg=have_dpkg");
    }
    if std::path::Path::new("/usr/bin/rpmbuild").is_file() {
        println!("cargo::rustc-cfg=have_rpmbuild");
    }
    println!("cargo::rerun-if-changed=/usr/lib/python3/dist-packages");
    if std::path::Path::new("/usr/lib/python3/dist-packages/jsonschema/__init__.py").is_file() {
        println!("cargo::rustc-cfg=have_py_jsonschema");
    }
    if std::path::Path::new("/usr/bin/docker-registry").is_file() {
        println!("cargo::rustc-cfg=have_registry");
    }
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("kubernetes-validate").is_file()));
    if on_path || std::env::var_os("AICONTAINERS_KUBE_VALIDATE").is_some_and(|p| std::path::Path::new(&p).is_file()) {
        println!("cargo::rustc-cfg=have_kube_validate");
    }
}
