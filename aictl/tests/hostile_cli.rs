//! `aictl validate` and `aictl render` against hostile files and wrong command lines: exit
//! codes, no hang, one escaped line per problem.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt as _;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Runs aictl; a run that blocks (on a FIFO) fails the test after a minute instead of hanging
/// it. Not a timing assertion: a correct run returns at once.
fn aictl(args: &[&OsStr]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_aictl"))
        .args(args)
        .env("AICONTAINERS_QUADLET", "/nonexistent")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("aictl runs");
    let id = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("aictl output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &id.to_string()]).status();
            panic!("aictl {args:?} blocked");
        }
    }
}

const GOOD: &str = "[service]\nimage = \"localhost/a:1\"\nrun-as = \"aimodels\"\n";

#[test]
fn validate_without_a_file_is_a_usage_error() {
    let o = aictl(&[OsStr::new("validate")]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("Usage:"), "{o:?}");
    let o = aictl(&[OsStr::new("validate"), OsStr::new("--no-such-option")]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

#[test]
fn a_fifo_or_device_is_refused_at_once_by_validate_and_render() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.toml")).expect("symlink");
    fs::write(dir.path().join("good.toml"), GOOD).expect("write");
    let o = aictl(&[OsStr::new("validate"), fifo.as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("fifo.toml: is a FIFO, not a regular file"), "{o:?}");
    let o = aictl(&[OsStr::new("validate"), dir.path().join("zero.toml").as_os_str()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("is a character device"), "{o:?}");
    let o = aictl(&[
        OsStr::new("render"),
        OsStr::new("--quadlet-only"),
        OsStr::new("--account"),
        OsStr::new("aimodels:990"),
        dir.path().as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("ContainerName=good"), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is a FIFO") && err.contains("is a character device"), "{err}");
}

#[test]
fn problems_print_as_one_escaped_line_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(OsStr::from_bytes(b"x\n\x1b[2Jfake.toml:1:1: all good\xff"));
    fs::write(&path, "[service]\nimage = \"a\\nb\\u001b[31m\"\nrun-as = \"aimodels\"\nvolumes = [\"/a:/b\\\\\"]\n")
        .expect("write");
    let o = aictl(&[OsStr::new("validate"), path.as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(!out.trim_end().chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
    assert!(out.contains("x\\n\\u{1b}[2Jfake.toml:1:1: all good\\xff:"), "{out}");
}
