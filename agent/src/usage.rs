//! A service's live usage, read from its unit's cgroup (cgroup v2, the unified hierarchy):
//! memory now and at its peak, OOM kills, CPU time, tasks, and the CPUs and memory nodes it
//! actually runs on, compared with what placement gave it.
//!
//! The cgroup's path is systemd's (`ControlGroup` of the unit), below the cgroup mount that the
//! agent's root swaps for tests (a tempdir with the same files). Reading never writes, never
//! creates, and never panics: a missing cgroup is a stopped service, an unreadable file or a
//! value that is not what the kernel writes is a problem naming the file, and every other value
//! is still read.
//!
//! Why not the `cgroups-rs` crate (0.5): its cgroup v2 handle takes its controllers from the
//! fixed `/sys/fs/cgroup/cgroup.controllers` (a tempdir tree cannot stand in), reads the v1 names
//! `cpuset.effective_cpus`/`cpuset.effective_mems` (absent on v2, so the cpuset always reads
//! empty), has no reader for `memory.events`, turns unreadable files into 0 (a stopped service
//! and an idle one look the same), opens files without `O_NONBLOCK` (a FIFO in the tree hangs
//! the reader), unwraps non-UTF-8 paths, and brings a second `nix` and its own `zbus` along. The
//! few files read here are simpler to read right than to work around.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zbus::zvariant::{OwnedValue, Type, Value};

/// A counter or size that could not be read (as systemd says "[not set]" with `UINT64_MAX`).
pub const NOT_READ: u64 = u64::MAX;
/// Where the cgroup v2 hierarchy is mounted, below the agent's root.
pub const CGROUP_MOUNT: &str = "sys/fs/cgroup";
/// The most bytes read from one cgroup file: the largest read here (`memory.events`,
/// `cpu.stat`) are a few hundred bytes.
const MAX_FILE: u64 = 64 * 1024;
/// The most CPUs or memory nodes a list may name (the kernel's NR_CPUS is at most 8192).
const MAX_LIST: usize = 8192;

/// How far a reading got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageState {
    /// Read from the unit's cgroup (some values may still be [`NOT_READ`]: see the problems).
    Running,
    /// The unit has no cgroup: it is not running.
    Stopped,
    /// The cgroup is there but cannot be read (permission, not a directory, ...).
    Unreadable,
    /// The agent could not learn where the cgroup is (systemd did not answer).
    Unknown,
}

impl UsageState {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageState::Running => "running",
            UsageState::Stopped => "stopped",
            UsageState::Unreadable => "unreadable",
            UsageState::Unknown => "unknown",
        }
    }
}

/// One reading of a service's cgroup, as `org.aicontainers.Service1.Usage` carries it
/// (D-Bus signature `(ssttttttauauas)`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct Usage {
    /// [`UsageState::as_str`].
    pub state: String,
    /// The cgroup, as systemd names it (`/system.slice/NAME.service`); empty when stopped.
    pub cgroup: String,
    /// `memory.current`, bytes.
    pub memory_current: u64,
    /// `memory.peak`, bytes: the most this run has used (kernel 5.19 and later).
    pub memory_peak: u64,
    /// `oom_kill` of `memory.events`: processes the kernel's OOM killer killed in this run.
    pub oom_kills: u64,
    /// Runs of the unit that systemd ended because of an OOM kill (its `Result` was `oom-kill`),
    /// counted by the agent since it started: their cgroups, and the kills they counted, are gone.
    pub oom_stops: u64,
    /// `usage_usec` of `cpu.stat`: CPU time of this run, microseconds.
    pub cpu_usec: u64,
    /// `pids.current`: tasks (processes and threads).
    pub tasks: u64,
    /// `cpuset.cpus.effective`: the CPUs it may run on; empty when not read.
    pub cpus: Vec<u32>,
    /// `cpuset.mems.effective`: the memory nodes it may use; empty when not read.
    pub memory_nodes: Vec<u32>,
    /// What could not be read, and where the cgroup has drifted from placement.
    pub problems: Vec<String>,
}

impl Usage {
    /// A reading that did not reach any file.
    pub fn empty(state: UsageState) -> Usage {
        Usage {
            state: state.as_str().to_owned(),
            cgroup: String::new(),
            memory_current: NOT_READ,
            memory_peak: NOT_READ,
            oom_kills: NOT_READ,
            oom_stops: 0,
            cpu_usec: NOT_READ,
            tasks: NOT_READ,
            cpus: Vec::new(),
            memory_nodes: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// OOM kills to show: this run's plus the runs systemd stopped for one.
    pub fn oom_total(&self) -> Option<u64> {
        match self.oom_kills {
            NOT_READ if self.oom_stops == 0 => None,
            NOT_READ => Some(self.oom_stops),
            n => Some(n.saturating_add(self.oom_stops)),
        }
    }
}

/// What placement gave the service: the cgroup should show exactly this.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placed {
    /// CPUs (`AllowedCPUs=`); empty: not bound.
    pub cpus: Vec<u32>,
    /// Memory nodes (`AllowedMemoryNodes=`); empty: not bound.
    pub memory_nodes: Vec<u32>,
}

/// The directory of `control_group` (systemd's `ControlGroup`, such as
/// `/system.slice/web.service`) below `mount`; `None` when it is not a plain absolute path.
pub fn cgroup_dir(mount: &Path, control_group: &str) -> Option<PathBuf> {
    let relative = control_group.strip_prefix('/')?;
    if control_group.contains('\0') {
        return None;
    }
    if !relative.split('/').all(|part| !part.is_empty() && part != "." && part != "..") {
        return None;
    }
    Some(mount.join(relative))
}

/// Reads the usage of the cgroup `control_group` below the cgroup mount `mount`, and compares
/// its cpuset with `placed`.
pub fn read(mount: &Path, control_group: &str, placed: &Placed) -> Usage {
    if control_group.is_empty() {
        return Usage::empty(UsageState::Stopped);
    }
    let Some(dir) = cgroup_dir(mount, control_group) else {
        let mut usage = Usage::empty(UsageState::Unreadable);
        let shown = aicontainers::diag::escape(control_group);
        usage.problems.push(format!("systemd names the cgroup `{shown}`, which is not a path below the cgroup mount"));
        return usage;
    };
    match std::fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Usage::empty(UsageState::Stopped),
        Err(e) => return unreadable(control_group, &dir, &e.to_string()),
        Ok(meta) if !meta.is_dir() => return unreadable(control_group, &dir, "not a directory"),
        Ok(_) => {}
    }
    let mut usage = Usage::empty(UsageState::Running);
    usage.cgroup = control_group.to_owned();
    let problems = &mut usage.problems;
    usage.memory_current = number(&dir, "memory.current", problems).unwrap_or(NOT_READ);
    usage.memory_peak = number(&dir, "memory.peak", problems).unwrap_or(NOT_READ);
    usage.oom_kills = keyed(&dir, "memory.events", "oom_kill", problems).unwrap_or(NOT_READ);
    usage.cpu_usec = keyed(&dir, "cpu.stat", "usage_usec", problems).unwrap_or(NOT_READ);
    usage.tasks = number(&dir, "pids.current", problems).unwrap_or(NOT_READ);
    let cpus = list(&dir, "cpuset.cpus.effective", problems);
    let mems = list(&dir, "cpuset.mems.effective", problems);
    drift("CPUs", "cpuset.cpus.effective", &placed.cpus, cpus.as_deref(), problems);
    drift("memory nodes", "cpuset.mems.effective", &placed.memory_nodes, mems.as_deref(), problems);
    usage.cpus = cpus.unwrap_or_default();
    usage.memory_nodes = mems.unwrap_or_default();
    usage
}

fn unreadable(control_group: &str, dir: &Path, why: &str) -> Usage {
    let mut usage = Usage::empty(UsageState::Unreadable);
    usage.cgroup = control_group.to_owned();
    usage
        .problems
        .push(format!("cannot read the cgroup {}: {why}", aicontainers::diag::escape(&dir.to_string_lossy())));
    usage
}

/// The text of `dir/name`: `Ok(None)` when the file is not there (its controller is off, or an
/// older kernel). Opened without following a link and without blocking (a FIFO does not hang
/// the reader), and only a regular file of at most [`MAX_FILE`] bytes of UTF-8 is read.
fn read_file(dir: &Path, name: &str) -> Result<Option<String>, String> {
    let path = dir.join(name);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_NOFOLLOW).bits())
        .open(&path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    File::take(file, MAX_FILE + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(format!("longer than {MAX_FILE} bytes"));
    }
    String::from_utf8(bytes).map(Some).map_err(|_| "not UTF-8 text".into())
}

/// Reads `name` with `parse`; a failure becomes a problem naming the file, and `None`.
fn parsed<T>(
    dir: &Path,
    name: &str,
    problems: &mut Vec<String>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let result = read_file(dir, name).and_then(|text| text.map(|t| parse(&t)).transpose());
    match result {
        Ok(value) => value,
        Err(why) => {
            let path = dir.join(name);
            problems.push(format!("{}: {why}", aicontainers::diag::escape(&path.to_string_lossy())));
            None
        }
    }
}

fn number(dir: &Path, name: &str, problems: &mut Vec<String>) -> Option<u64> {
    parsed(dir, name, problems, parse_number)
}

fn keyed(dir: &Path, name: &str, key: &str, problems: &mut Vec<String>) -> Option<u64> {
    parsed(dir, name, problems, |text| parse_keyed(text, key))
}

fn list(dir: &Path, name: &str, problems: &mut Vec<String>) -> Option<Vec<u32>> {
    parsed(dir, name, problems, parse_list)
}

/// One decimal number on one line, as `memory.current` holds it.
pub fn parse_number(text: &str) -> Result<u64, String> {
    let line = text.strip_suffix('\n').unwrap_or(text);
    if line.is_empty() || !line.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("not a number: `{}`", aicontainers::diag::escape(short(line))));
    }
    line.parse().map_err(|_| format!("a number out of range: `{}`", short(line)))
}

/// The value of `key` in a flat keyed file (`memory.events`, `cpu.stat`: `KEY VALUE` lines).
pub fn parse_keyed(text: &str, key: &str) -> Result<u64, String> {
    let mut found = None;
    for (n, line) in text.lines().enumerate() {
        let mut words = line.split(' ');
        let (Some(k), Some(v), None) = (words.next(), words.next(), words.next()) else {
            let line = aicontainers::diag::escape(short(line));
            return Err(format!("line {}: not `KEY VALUE`: `{line}`", n + 1));
        };
        if k == key {
            if found.is_some() {
                return Err(format!("line {}: `{key}` a second time", n + 1));
            }
            found = Some(parse_number(v).map_err(|why| format!("line {}: {key}: {why}", n + 1))?);
        }
    }
    found.ok_or_else(|| format!("no `{key}` line"))
}

/// A kernel list (`0-3,8,10-11`; an empty line is the empty list), sorted, at most [`MAX_LIST`].
pub fn parse_list(text: &str) -> Result<Vec<u32>, String> {
    let line = text.strip_suffix('\n').unwrap_or(text);
    let bad = || format!("not a list such as 0-3,8: `{}`", aicontainers::diag::escape(short(line)));
    let mut out = Vec::new();
    if line.is_empty() {
        return Ok(out);
    }
    for part in line.split(',') {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let digits = |s: &str| !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(first) || !digits(last) {
            return Err(bad());
        }
        let (first, last): (u32, u32) = (first.parse().map_err(|_| bad())?, last.parse().map_err(|_| bad())?);
        if first > last || out.len() + (last - first) as usize >= MAX_LIST {
            return Err(bad());
        }
        out.extend(first..=last);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// At most 40 characters of `s`, for a message.
fn short(s: &str) -> &str {
    s.char_indices().nth(40).map_or(s, |(i, _)| &s[..i])
}

/// A problem when placement bound the service (`placed` not empty) and the cgroup's effective
/// set is not that set.
fn drift(what: &str, file: &str, placed: &[u32], effective: Option<&[u32]>, problems: &mut Vec<String>) {
    if placed.is_empty() {
        return;
    }
    let mut placed = placed.to_vec();
    placed.sort_unstable();
    placed.dedup();
    let want = aicontainers::topology::list(&placed);
    match effective {
        None => problems.push(format!(
            "placement gave {what} {want}, but the cgroup has no {file} (its cpuset controller is off): the binding does not hold"
        )),
        Some(got) if got != placed.as_slice() => problems.push(format!(
            "drift: placement gave {what} {want}, the cgroup has {} ({file})",
            if got.is_empty() { "none".to_owned() } else { aicontainers::topology::list(got) }
        )),
        Some(_) => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CG: &str = "/system.slice/web.service";

    /// A cgroup tree as the kernel writes it for a running service on CPUs 0-3, node 0.
    fn tree() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("system.slice/web.service");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in [
            ("memory.current", "1048576\n"),
            ("memory.peak", "4194304\n"),
            ("memory.events", "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n"),
            ("cpu.stat", "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n"),
            ("pids.current", "7\n"),
            ("cpuset.cpus.effective", "0-3\n"),
            ("cpuset.mems.effective", "0\n"),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        root
    }

    fn placed() -> Placed {
        Placed { cpus: vec![3, 2, 1, 0], memory_nodes: vec![0] }
    }

    #[test]
    fn a_running_service_reads_whole() {
        let root = tree();
        let usage = read(root.path(), CG, &placed());
        assert_eq!(usage.problems, Vec::<String>::new());
        assert_eq!(usage.state, "running");
        assert_eq!(usage.cgroup, CG);
        assert_eq!((usage.memory_current, usage.memory_peak, usage.oom_kills), (1 << 20, 4 << 20, 2));
        assert_eq!((usage.cpu_usec, usage.tasks), (1_500_000, 7));
        assert_eq!((&usage.cpus[..], &usage.memory_nodes[..]), (&[0, 1, 2, 3][..], &[0][..]));
        assert_eq!(usage.oom_total(), Some(2));
    }

    #[test]
    fn no_cgroup_is_stopped_and_an_empty_name_too() {
        let root = tempfile::tempdir().unwrap();
        for cg in [CG, ""] {
            let usage = read(root.path(), cg, &placed());
            assert_eq!(usage, Usage::empty(UsageState::Stopped), "{cg}");
            assert_eq!(usage.oom_total(), None);
        }
    }

    #[test]
    fn a_cgroup_name_that_leaves_the_mount_is_refused() {
        let root = tree();
        for hostile in ["system.slice/web.service", "/../etc", "/system.slice/../../x", "/a\0b", "/a/./b"] {
            let usage = read(root.path(), hostile, &Placed::default());
            assert_eq!(usage.state, "unreadable", "{hostile:?}");
            assert!(
                usage.problems[0].contains("not a path below the cgroup mount"),
                "{hostile:?}: {:?}",
                usage.problems
            );
        }
    }

    #[test]
    fn drift_from_placement_is_a_problem() {
        let root = tree();
        let dir = root.path().join("system.slice/web.service");
        std::fs::write(dir.join("cpuset.cpus.effective"), "0-7\n").unwrap();
        std::fs::write(dir.join("cpuset.mems.effective"), "\n").unwrap();
        let usage = read(root.path(), CG, &placed());
        assert_eq!(
            usage.problems,
            [
                "drift: placement gave CPUs 0-3, the cgroup has 0-7 (cpuset.cpus.effective)",
                "drift: placement gave memory nodes 0, the cgroup has none (cpuset.mems.effective)"
            ]
        );
        // Not bound by placement: whatever the cgroup has is right.
        assert!(read(root.path(), CG, &Placed::default()).problems.is_empty());
        // Bound, but no cpuset controller in the cgroup.
        std::fs::remove_file(dir.join("cpuset.cpus.effective")).unwrap();
        let usage = read(root.path(), CG, &placed());
        assert!(usage.problems.iter().any(|p| p.contains("has no cpuset.cpus.effective")), "{:?}", usage.problems);
    }

    #[test]
    fn missing_files_are_not_read_without_a_problem() {
        let root = tree();
        let dir = root.path().join("system.slice/web.service");
        for name in ["memory.peak", "memory.events", "pids.current"] {
            std::fs::remove_file(dir.join(name)).unwrap();
        }
        let usage = read(root.path(), CG, &Placed::default());
        assert!(usage.problems.is_empty(), "{:?}", usage.problems);
        assert_eq!((usage.memory_peak, usage.oom_kills, usage.tasks), (NOT_READ, NOT_READ, NOT_READ));
        assert_eq!(usage.memory_current, 1 << 20);
    }

    #[test]
    fn garbage_is_a_problem_naming_the_file_and_the_rest_still_reads() {
        let hostile: &[(&str, &[u8], &str)] = &[
            ("memory.current", b"12abc\n", "not a number"),
            ("memory.current", b"", "not a number"),
            ("memory.current", b"-1\n", "not a number"),
            ("memory.current", b"99999999999999999999999\n", "out of range"),
            ("memory.current", b"\xff\xfe\n", "not UTF-8"),
            ("memory.current", b"1\n2\n", "not a number"),
            ("memory.events", b"oom_kill\n", "not `KEY VALUE`"),
            ("memory.events", b"oom_kill 1\noom_kill 2\n", "a second time"),
            ("memory.events", b"oom 1\n", "no `oom_kill` line"),
            ("memory.events", b"oom_kill \x1b[2J\n", "not a number: `\\u{1b}[2J`"),
            ("cpu.stat", b"usage_usec 1 2\n", "not `KEY VALUE`"),
            ("cpuset.cpus.effective", b"3-1\n", "not a list"),
            ("cpuset.cpus.effective", b"0-4294967295\n", "not a list"),
            ("cpuset.cpus.effective", b"0-8191,9000\n", "not a list"),
            ("cpuset.cpus.effective", b"1,,2\n", "not a list"),
            ("cpuset.mems.effective", b"a\n", "not a list"),
        ];
        for (name, bytes, want) in hostile {
            let root = tree();
            let dir = root.path().join("system.slice/web.service");
            std::fs::write(dir.join(name), bytes).unwrap();
            let usage = read(root.path(), CG, &Placed::default());
            assert_eq!(usage.state, "running");
            assert_eq!(usage.problems.len(), 1, "{name} {bytes:?}: {:?}", usage.problems);
            assert!(
                usage.problems[0].contains(name) && usage.problems[0].contains(want),
                "{name}: {:?}",
                usage.problems
            );
            assert!(!usage.problems[0].contains('\x1b'), "escaped: {:?}", usage.problems);
            assert_eq!(usage.tasks, 7, "the other files still read");
        }
    }

    #[test]
    fn fifos_links_devices_directories_and_huge_files_are_not_read() {
        let root = tree();
        let dir = root.path().join("system.slice/web.service");
        std::fs::remove_file(dir.join("memory.current")).unwrap();
        nix::unistd::mkfifo(&dir.join("memory.current"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::fs::remove_file(dir.join("memory.peak")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("memory.peak")).unwrap();
        std::fs::remove_file(dir.join("pids.current")).unwrap();
        std::fs::create_dir(dir.join("pids.current")).unwrap();
        std::fs::remove_file(dir.join("cpu.stat")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("cpu.stat")).unwrap();
        std::fs::write(dir.join("memory.events"), vec![b'1'; 200_000]).unwrap();
        let usage = read(root.path(), CG, &Placed::default());
        let all = usage.problems.join("\n");
        assert_eq!(usage.problems.len(), 5, "{all}");
        assert!(all.contains("memory.current: not a regular file"), "{all}");
        assert!(all.contains("memory.peak: ") && all.contains("pids.current: not a regular file"), "{all}");
        assert!(all.contains("memory.events: longer than 65536 bytes"), "{all}");
        assert_eq!(usage.memory_current, NOT_READ);
    }

    #[test]
    fn a_cgroup_that_is_not_a_directory_or_cannot_be_read() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("system.slice")).unwrap();
        std::fs::write(root.path().join("system.slice/web.service"), "").unwrap();
        let usage = read(root.path(), CG, &Placed::default());
        assert_eq!(usage.state, "unreadable");
        assert!(usage.problems[0].contains("not a directory"), "{:?}", usage.problems);

        // Permission denied: only meaningful when not root (root reads anything).
        if nix::unistd::geteuid().is_root() {
            eprintln!("permission part not checked: running as root (the agent tests check it as nobody)");
            return;
        }
        let root = tree();
        let file = root.path().join("system.slice/web.service/memory.current");
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
        let usage = read(root.path(), CG, &Placed::default());
        assert!(usage.problems[0].contains("Permission denied"), "{:?}", usage.problems);
    }

    #[test]
    fn oom_total_adds_the_stopped_runs() {
        let mut usage = Usage::empty(UsageState::Stopped);
        usage.oom_stops = 2;
        assert_eq!(usage.oom_total(), Some(2));
        usage.oom_kills = 3;
        assert_eq!(usage.oom_total(), Some(5));
    }

    #[test]
    fn lists_in_the_kernels_syntax() {
        assert_eq!(parse_list("0-2,8,10-11\n").unwrap(), vec![0, 1, 2, 8, 10, 11]);
        assert_eq!(parse_list("\n").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_list("5,1-2,2").unwrap(), vec![1, 2, 5]);
    }
}
