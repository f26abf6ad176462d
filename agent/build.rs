//! The model tests need a real registry: without Debian's docker-registry they are compiled as
//! ignored, with the reason, so the test runner says they did not run (tests/run-all installs
//! it, and in CI a missing registry fails them).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(have_registry)");
    // /usr/bin changes when packages are installed or removed.
    println!("cargo::rerun-if-changed=/usr/bin");
    if std::path::Path::new("/usr/bin/docker-registry").is_file() {
        println!("cargo::rustc-cfg=have_registry");
    }
}
