//! Whole-tree golden tests (tests/trees.rs) run podman's real Quadlet, named by
//! `AICONTAINERS_QUADLET` (tests/run-all copies it out of the VM image). Without one they are
//! compiled as ignored, with the reason, so the test runner says they did not run.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(have_quadlet)");
    println!("cargo::rerun-if-env-changed=AICONTAINERS_QUADLET");
    if std::env::var_os("AICONTAINERS_QUADLET").is_some_and(|q| std::path::Path::new(&q).is_file()) {
        println!("cargo::rustc-cfg=have_quadlet");
    }
}
