//! The image-scan tests compare version ordering with each ecosystem's own tool. A test whose
//! tool this machine lacks is compiled as ignored, with the reason, so the test runner says it
//! did not run (tests/run-all installs the tools, so in CI they all run).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(have_dpkg, have_rpm, have_py_packaging, have_node_semver)");
    // /usr/bin and Python's system packages change when packages are installed or removed.
    println!("cargo::rerun-if-changed=/usr/bin");
    println!("cargo::rerun-if-changed=/usr/lib/python3/dist-packages");
    println!("cargo::rerun-if-changed=/usr/share/nodejs");
    let exists = |p: &str| std::path::Path::new(p).exists();
    if exists("/usr/bin/dpkg") {
        println!("cargo::rustc-cfg=have_dpkg");
    }
    if exists("/usr/bin/rpm") {
        println!("cargo::rustc-cfg=have_rpm");
    }
    if exists("/usr/bin/python3") && exists("/usr/lib/python3/dist-packages/packaging/version.py") {
        println!("cargo::rustc-cfg=have_py_packaging");
    }
    if exists("/usr/bin/node") && exists("/usr/share/nodejs/semver/package.json") {
        println!("cargo::rustc-cfg=have_node_semver");
    }
}
