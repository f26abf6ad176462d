//! Hostile and careless service files: what is not a regular file, values that would bend a
//! unit, names that are taken, names and values that would forge log lines, numbers out of
//! range. Each test names the class of defect it guards against.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{symlink, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use aicontainers::account::FixedAccounts;
use aicontainers::generate::{self, Loaded};
use aicontainers::host::HostGpus;
use aicontainers::names::UnitNames;
use aicontainers::quadlet::Quadlet;
use aicontainers::render::PodmanVersion;
use aicontainers::source;
use aicontainers::unit::{quadlet_lines, systemd_lines, LONG_LINE_MAX};

const GOOD: &str = "[service]\nimage = \"localhost/a:1\"\nrun-as = \"aimodels\"\n";

fn accounts() -> FixedAccounts {
    FixedAccounts::parse(&["aimodels:990".to_owned()]).expect("accounts")
}

/// Loads `dir` on another thread: a read that blocks (a FIFO) must not hang the test run, so
/// the test fails after a minute instead of waiting forever. Not a timing assertion: any
/// correct run returns at once.
fn load_guarded(dir: &Path) -> Loaded {
    let (tx, rx) = mpsc::channel();
    let dir = dir.to_owned();
    std::thread::spawn(move || {
        let loaded = generate::load_with(&[&dir], &accounts(), &UnitNames::none());
        let _ = tx.send(loaded);
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("loading blocked on something that is not a regular file")
}

fn messages(loaded: &Loaded) -> Vec<String> {
    loaded.failed.iter().flat_map(|f| f.diagnostics.iter().map(|d| d.to_string())).collect()
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
}

#[test]
fn fifos_devices_and_huge_files_never_block_or_fill_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    fs::write(d.join("good.toml"), GOOD).expect("write");
    mkfifo(&d.join("fifo.toml"));
    symlink("/dev/zero", d.join("zero.toml")).expect("symlink");
    symlink("/dev/urandom", d.join("random.toml")).expect("symlink");
    fs::write(d.join("huge.toml"), vec![b'#'; 2 << 20]).expect("write");
    // Drop-ins: a FIFO and a device where a drop-in is expected.
    fs::write(d.join("withdropins.toml"), GOOD).expect("write");
    fs::create_dir_all(d.join("withdropins.toml.d")).expect("mkdir");
    mkfifo(&d.join("withdropins.toml.d/10-fifo.toml"));
    symlink("/dev/zero", d.join("withdropins.toml.d/20-zero.toml")).expect("symlink");
    // Masks still work, also through a chain of links.
    symlink("/dev/null", d.join("masked.toml")).expect("symlink");
    symlink(d.join("masked.toml"), d.join("masked2.toml")).expect("symlink");
    // A link to a regular file is a service file like any other.
    fs::write(d.join("real"), GOOD).expect("write");
    symlink(d.join("real"), d.join("linked.toml")).expect("symlink");

    let loaded = load_guarded(d);
    let names: Vec<&str> = loaded.services.iter().map(|(s, _)| s.name.as_str()).collect();
    assert_eq!(names, ["good", "linked"]);
    let masked: Vec<&str> = loaded.masked.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(masked, ["masked", "masked2"]);
    let all = messages(&loaded).join("\n");
    for expected in [
        "fifo.toml: is a FIFO, not a regular file",
        "zero.toml: is a character device, not a regular file",
        "random.toml: is a character device",
        "huge.toml: is larger than 1048576 bytes",
        "withdropins.toml.d/10-fifo.toml: is a FIFO",
        "withdropins.toml.d/20-zero.toml: is a character device",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    // aictl validate reads through the same function.
    let one = source::check_file(&d.join("fifo.toml"), false).unwrap_err();
    assert!(one[0].message.contains("FIFO"), "{one:?}");
}

/// The .container file of a single service file `text`, or the diagnostics.
fn render(text: &str) -> Result<String, Vec<String>> {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("svc.toml"), text).expect("write");
    let plan = generate::plan(&[dir.path()], &accounts(), PodmanVersion(5, 4, 0), &HostGpus::from_xml(Path::new("/x")));
    match plan.services.first() {
        Some(p) => Ok(p.container.clone()),
        None => Err(plan.failed.iter().flat_map(|f| f.diagnostics.iter().map(|d| d.to_string())).collect()),
    }
}

#[test]
fn no_value_can_join_the_next_unit_line() {
    // Each of these, written raw, would make Quadlet or systemd join the next line (read-only
    // silently off, a key swallowed) or end a line early.
    let base = "[service]\nimage = \"localhost/a:1\"\nrun-as = \"aimodels\"\nread-only = true\n";
    for (key, value) in [
        ("volumes", "[\"/srv/data:/data\\\\\"]"),
        ("volumes", "[\"/srv/data:/data:ro \"]"),
        ("volumes", "[\"/srv/da\\nta:/data\"]"),
        ("volumes", "[\"/srv/data:/data\\u00a0\"]"),
        ("description", "\"ends in a backslash \\\\\""),
        ("description", "\"two\\nlines\""),
        ("description", "\"\\u2028separator\""),
        ("description", "\" leading space\""),
        ("command", "[\"x\\u0085\"]"),
    ] {
        let text = format!("{base}{key} = {value}\n");
        let refused = render(&text).expect_err(&text);
        assert!(refused.iter().any(|d| d.contains(&format!("service.{key}"))), "{text}: {refused:?}");
    }
    // Values that need escaping but can be written are written so that both readers get them
    // back as one line each, ReadOnly=true included.
    let text = format!(
        "{base}description = \"100% \\\\back\\\\slash\"\ncommand = [\"sh\", \"-c\", \"echo $HOME 50% \\\"q\\\" \\\\\", \"tab\\there\", \"nl\\nx\"]\n\
         environment = {{ A = 'x\\', B = \"%h $$\" }}\nvolumes = [\"/srv/a%b:/data\"]\n\
         [health]\ncommand = 'test -f /x \\'\n"
    );
    let unit = render(&text).expect("valid");
    for lines in [systemd_lines(&unit), quadlet_lines(&unit)] {
        assert!(lines.iter().any(|l| l == "ReadOnly=true"), "{unit}");
        assert!(lines.iter().any(|l| l == "Description=100%% \\back\\slash"), "{unit}");
        assert!(lines.iter().any(|l| l == "Volume=/srv/a%%b:/data"), "{unit}");
        assert!(lines.iter().any(|l| l.starts_with("[Service]")), "{unit}");
    }
    assert_eq!(systemd_lines(&unit).len(), unit.lines().count() + 1, "no line was joined: {unit}");
}

#[test]
fn lines_systemd_cannot_load_are_refused_at_validate_time() {
    // Under the file size cap, but `%` is written doubled.
    let word = "%".repeat(64 * 1024);
    let words: Vec<String> = (0..15).map(|_| format!("\"{word}\"")).collect();
    let text = format!("{GOOD}command = [{}]\n", words.join(", "));
    let refused = render(&text).expect_err("too long");
    assert!(refused.iter().any(|d| d.contains("longer than systemd reads in one unit line")), "{refused:?}");
    // One value alone over the limit, in a file under the size cap: written doubled (`%%`).
    let description = "%".repeat(LONG_LINE_MAX / 2 + 16);
    let text = format!("{GOOD}description = \"{description}\"\n");
    let refused = render(&text).expect_err("too long");
    assert!(refused.iter().any(|d| d.contains("too long for a unit file line")), "{refused:?}");
}

#[test]
fn numbers_out_of_range_say_so_and_crlf_files_read_as_toml_says() {
    let text = "[service]\r\nimage = \"localhost/a:1\"\r\nrun-as = \"aimodels\"\r\n[resources]\r\npids = 99999999999999999999\r\n";
    let refused = render(text).expect_err("pids");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("resources.pids: 99999999999999999999 is out of range"), "{refused:?}");
    let ok = "[service]\r\nimage = \"localhost/a:1\"\r\nrun-as = \"aimodels\"\r\ncommand = [\"\"\"a\r\nb\"\"\"]\r\n";
    let unit = render(ok).expect("a CRLF file is valid TOML");
    assert!(unit.contains("Exec=\"a\\nb\"\n"), "{unit}");
}

#[test]
fn images_and_ports_are_checked_as_podman_parses_them() {
    for (image, why) in [
        ("web.image", "Quadlet"),
        ("localhost/app.build", "Quadlet"),
        ("localhost/Upper:1", "path component"),
        ("localhost/a:-x", "tag"),
    ] {
        let refused = render(&format!("[service]\nimage = \"{image}\"\nrun-as = \"aimodels\"\n")).expect_err(image);
        assert!(refused.iter().any(|d| d.contains("service.image") && d.contains(why)), "{image}: {refused:?}");
    }
    for port in [":8080:80", "9000-9002:9000-9001", "80/tcp,tcp", "8080:0"] {
        let refused = render(&format!("{GOOD}ports = [\"{port}\"]\n")).expect_err(port);
        assert!(refused.iter().any(|d| d.contains("service.ports")), "{port}: {refused:?}");
    }
}

#[test]
fn names_and_values_cannot_forge_log_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let evil = OsStr::from_bytes(b"a\nfake: all services generated\x1b[2K.toml");
    fs::write(d.join(evil), GOOD).expect("write");
    fs::write(d.join(OsStr::from_bytes(b"caf\xe9.toml")), GOOD).expect("write");
    fs::write(d.join("v.toml"), "[service]\nimage = \"x\\u001b[31m\\nfake: forged line\"\nrun-as = \"aimodels\"\n")
        .expect("write");
    let loaded = load_guarded(d);
    let mut shown: Vec<String> = loaded.problems.iter().map(|p| p.to_string()).collect();
    shown.extend(messages(&loaded));
    assert_eq!(shown.len(), 3, "every file is reported, also the one whose name is not UTF-8: {shown:?}");
    for line in &shown {
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
    assert!(shown.iter().any(|l| l.contains("caf\\xe9.toml: the file name is not UTF-8")), "{shown:?}");
    assert!(shown.iter().any(|l| l.contains("a\\nfake: all services generated\\u{1b}[2K.toml")), "{shown:?}");
}

fn fake_quadlet(dir: &Path) -> Quadlet {
    let script = dir.join("quadlet");
    fs::write(
        &script,
        "#!/bin/sh\nfor f in \"$QUADLET_UNIT_DIRS\"/*.container; do n=$(basename \"$f\" .container); printf '[Unit]\\nSourcePath=%s\\n[Service]\\nExecStart=/bin/true\\n' \"$f\" > \"$2/$n.service\"; done\n",
    )
    .expect("write");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    Quadlet { path: script, version: PodmanVersion(5, 4, 0) }
}

#[test]
fn an_invalid_service_that_asks_to_start_at_boot_is_started_at_boot_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (conf, out) = (dir.path().join("conf"), dir.path().join("out"));
    fs::create_dir_all(&conf).expect("mkdir");
    fs::create_dir_all(&out).expect("mkdir");
    fs::write(conf.join("ok.toml"), format!("{GOOD}enable = true\n")).expect("write");
    fs::write(conf.join("bad.toml"), format!("{GOOD}enable = true\nimge = \"typo\"\n")).expect("write");
    fs::write(conf.join("syntax.toml"), "[service]\nenable = true\n").expect("write");
    fs::create_dir_all(conf.join("syntax.toml.d")).expect("mkdir");
    fs::write(conf.join("syntax.toml.d/x.toml"), "[service\n").expect("write");
    fs::write(conf.join("off.toml"), format!("{GOOD}imge = \"typo\"\n")).expect("write");
    let plan =
        generate::plan(&[&conf], &accounts(), PodmanVersion(5, 4, 0), &HostGpus::from_xml(Path::new("/nonexistent")));
    let outcome =
        generate::write_units(plan, &out, &fake_quadlet(dir.path()), Path::new("/usr/bin/aictl")).expect("writes");
    assert_eq!(outcome.generated, ["ok"]);
    let mut wanted: Vec<String> = fs::read_dir(out.join("multi-user.target.wants"))
        .expect("wants")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    wanted.sort();
    assert_eq!(wanted, ["bad.service", "ok.service", "syntax.service"]);
    let bad = fs::read_to_string(out.join("bad.service")).expect("failing unit");
    assert!(bad.contains("ExecStart=/usr/bin/aictl validate --service bad"), "{bad}");
}

#[test]
fn a_failing_unit_stays_whole_whatever_its_reasons_say() {
    let f = generate::Failed {
        name: "x".into(),
        source: PathBuf::from("/etc/aicontainers/x%h.toml"),
        diagnostics: vec![aicontainers::Diagnostic::file("/etc/aicontainers/x.toml", "ends in a backslash \\")],
        unit: true,
        enable: false,
        warning: false,
    };
    let text = generate::failed_unit(&f, Path::new("/usr/bin/aictl"));
    for lines in [systemd_lines(&text), quadlet_lines(&text)] {
        assert!(lines.iter().any(|l| l == "[Unit]"), "{text}");
        assert!(lines.iter().any(|l| l == "SourcePath=/etc/aicontainers/x%%h.toml"), "{text}");
    }
}

#[test]
fn names_taken_by_quadlet_admin_units_and_init_scripts_are_refused_or_warned_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let conf = dir.path().join("conf");
    fs::create_dir_all(&conf).expect("mkdir");
    for name in ["web", "data-volume", "mine", "legacy", "masked", "free"] {
        fs::write(conf.join(format!("{name}.toml")), GOOD).expect("write");
    }
    for (path, text) in [
        ("etc/containers/systemd/apps/web.container", "[Container]\nImage=x\n"),
        ("usr/share/containers/systemd/data.volume", "[Volume]\n"),
        ("etc/systemd/system/mine.service", "[Service]\nExecStart=/bin/true\n"),
        ("etc/init.d/legacy", "#!/bin/sh\n"),
    ] {
        fs::create_dir_all(root.join(path).parent().expect("parent")).expect("mkdir");
        fs::write(root.join(path), text).expect("write");
    }
    fs::create_dir_all(root.join("run/systemd/system")).expect("mkdir");
    symlink("/dev/null", root.join("run/systemd/system/masked.service")).expect("symlink");
    let loaded = generate::load_with(&[&conf], &accounts(), &UnitNames::under(&root));
    let planned: Vec<&str> = loaded.services.iter().map(|(s, _)| s.name.as_str()).collect();
    assert_eq!(planned, ["free", "masked"], "`systemctl mask` is left to do its work");
    let failed: Vec<(&str, bool, bool)> = loaded.failed.iter().map(|f| (f.name.as_str(), f.unit, f.warning)).collect();
    assert_eq!(
        failed,
        [("data-volume", false, false), ("legacy", false, false), ("mine", false, true), ("web", false, false)]
    );
    let all = messages(&loaded).join("\n");
    for file in ["apps/web.container", "data.volume", "etc/systemd/system/mine.service", "etc/init.d/legacy"] {
        assert!(all.contains(file), "{file} not named in:\n{all}");
    }
}
