//! Driver checks: the NVIDIA kernel driver, its user-space libraries, the fabric manager, the
//! kernel's Xid reports and the legacy OCI hook. All from `/proc`, `/sys`, `/dev/kmsg` and the
//! library directories; NVML is never loaded.

use std::io::Read as _;
use std::path::Path;

use super::{Host, Report, Request};
use crate::topology::NVIDIA;

/// A PCI device as sysfs shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciDevice {
    pub address: String,
    pub vendor: u16,
    /// `0xCCSSPP`: class, subclass, programming interface.
    pub class: u32,
    /// The bound driver's name, if any.
    pub driver: Option<String>,
}

/// The host's NVIDIA driver state, read once per run.
#[derive(Clone, Debug, Default)]
pub struct Driver {
    /// The loaded kernel module's version, from `/proc/driver/nvidia/version`.
    pub version: Option<String>,
    /// NVIDIA PCI devices.
    pub pci: Vec<PciDevice>,
}

/// The version in `/proc/driver/nvidia/version`'s first line: `NVRM version: NVIDIA UNIX x86_64
/// Kernel Module  550.54.14  Thu Feb 22 ...` or `... Open Kernel Module for x86_64  570.86.15 ...`.
pub fn module_version(text: &str) -> Option<String> {
    let line = text.lines().next()?;
    let after = &line[line.find("Kernel Module")?..];
    after
        .split_whitespace()
        .find(|w| w.contains('.') && w.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
        .map(str::to_owned)
}

fn hex(text: &str) -> Option<u32> {
    u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
}

impl Driver {
    pub fn read(host: &Host) -> Driver {
        let version = host.read("/proc/driver/nvidia/version").ok().and_then(|t| module_version(&t));
        let mut pci = Vec::new();
        let dir = host.path("/sys/bus/pci/devices");
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = entry.path();
            let Some(vendor) = std::fs::read_to_string(p.join("vendor")).ok().and_then(|t| hex(&t)) else { continue };
            if vendor != u32::from(NVIDIA) {
                continue;
            }
            let class = std::fs::read_to_string(p.join("class")).ok().and_then(|t| hex(&t)).unwrap_or(0);
            let driver = std::fs::read_link(p.join("driver"))
                .ok()
                .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()));
            pci.push(PciDevice {
                address: entry.file_name().to_string_lossy().into_owned(),
                vendor: NVIDIA,
                class,
                driver,
            });
        }
        pci.sort_by(|a, b| a.address.cmp(&b.address));
        Driver { version, pci }
    }

    fn gpus(&self) -> impl Iterator<Item = &PciDevice> {
        self.pci.iter().filter(|d| d.class >> 16 == 0x03)
    }

    /// NVSwitches: NVIDIA bridges (class 0x0680).
    fn nvswitches(&self) -> impl Iterator<Item = &PciDevice> {
        self.pci.iter().filter(|d| d.class >> 8 == 0x0680)
    }
}

const IDS: &[&str] = &[
    "driver.not-loaded",
    "driver.nouveau",
    "driver.library-version",
    "driver.fabric-manager",
    "driver.xid",
    "driver.legacy-hook",
];

/// Library directories where distributions and NVIDIA's installer put `libcuda.so.1`.
const LIB_DIRS: &[&str] =
    &["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"];

/// The user-space driver version: what `libcuda.so.1` (else `libnvidia-ml.so.1`) links to.
pub fn library_version(host: &Host) -> Option<(String, String)> {
    for lib in ["libcuda.so.1", "libnvidia-ml.so.1"] {
        for dir in LIB_DIRS {
            let path = Path::new(dir).join(lib);
            let Ok(target) = std::fs::read_link(host.path(&path)) else { continue };
            let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let stem = lib.trim_end_matches(".1");
            if let Some(v) = name.strip_prefix(&format!("{stem}.")).filter(|v| v.contains('.')) {
                return Some((v.to_owned(), path.display().to_string()));
            }
        }
    }
    None
}

/// `NVRM: Xid (PCI:0000:3b:00): 79, pid=...` lines in the kernel log for the given GPUs
/// (`dddd:bb:dd.f`; the driver prints the address without the function).
pub fn xid_lines(kmsg: &str, gpus: &[String]) -> Vec<String> {
    kmsg.lines()
        .map(|l| l.split_once(';').map_or(l, |(_, m)| m))
        .filter(|m| {
            m.find("Xid (PCI:").is_some_and(|at| {
                let addr = m[at + 9..].split(')').next().unwrap_or("").to_lowercase();
                gpus.iter().any(|g| g.starts_with(&addr) && !addr.is_empty())
            })
        })
        .map(str::to_owned)
        .collect()
}

/// Reads the kernel log: `/dev/kmsg` one record per read, without blocking at its end.
fn read_kmsg(host: &Host) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = host.path("/dev/kmsg");
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NONBLOCK).open(&path)?;
    if f.metadata()?.is_file() {
        let mut s = String::new();
        f.read_to_string(&mut s)?;
        return Ok(s);
    }
    let mut out = String::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // Records overwritten while reading: go on from the next one.
            Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The driver checks for `request`.
///
/// Long because it is a flat sequence of independent checks (not loaded, nouveau, library
/// version, fabric manager, Xid, legacy hook), each reporting under its own id.
pub fn check(host: &Host, request: &Request, driver: &Driver, r: &mut Report) {
    let nvidia = request.cdi.iter().any(|n| n.starts_with("nvidia.com/"));
    if !nvidia {
        r.skip_all(IDS, "the service asks for no nvidia.com devices");
        return;
    }
    let gpus: Vec<&PciDevice> = driver.gpus().collect();
    // Loaded, and not nouveau.
    let nouveau: Vec<&str> =
        gpus.iter().filter(|g| g.driver.as_deref() == Some("nouveau")).map(|g| g.address.as_str()).collect();
    if nouveau.is_empty() {
        r.ok("driver.nouveau", "no NVIDIA GPU is bound to nouveau");
    } else {
        r.fail(
            "driver.nouveau",
            format!("nouveau drives {}", nouveau.join(", ")),
            "blacklist nouveau (`echo blacklist nouveau > /etc/modprobe.d/blacklist-nouveau.conf`, rebuild the initramfs), install the NVIDIA driver and reboot",
        );
    }
    match &driver.version {
        Some(v) => r.ok("driver.not-loaded", format!("NVIDIA driver {v} is loaded")),
        None if gpus.is_empty() => r.fail(
            "driver.not-loaded",
            format!(
                "the service asks for {} but the host has no NVIDIA GPU on PCI and no NVIDIA driver loaded",
                request.cdi.join(", ")
            ),
            "run the service on a host with NVIDIA GPUs, or remove its [gpu] section",
        ),
        None => r.fail(
            "driver.not-loaded",
            format!(
                "{} NVIDIA GPU(s) on PCI ({}) but no NVIDIA driver is loaded (no /proc/driver/nvidia/version)",
                gpus.len(),
                gpus.iter().map(|g| g.address.as_str()).collect::<Vec<_>>().join(", ")
            ),
            "modprobe nvidia (install the NVIDIA driver if it is missing)",
        ),
    }
    // Module against library.
    match (&driver.version, library_version(host)) {
        (None, _) => r.skip("driver.library-version", "no NVIDIA driver is loaded"),
        (Some(_), None) => r.skip("driver.library-version", format!("no libcuda.so.1 or libnvidia-ml.so.1 link in {}", LIB_DIRS.join(", "))),
        (Some(module), Some((lib, path))) if *module == lib => {
            r.ok("driver.library-version", format!("kernel module and {path} are both {module}"))
        }
        (Some(module), Some((lib, path))) => r.fail(
            "driver.library-version",
            format!("the loaded kernel module is {module} but {path} is {lib}: the driver was upgraded without reloading the module"),
            "reboot (or stop every GPU user and run `rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia && modprobe nvidia`)",
        ),
    }
    // NVSwitch systems need the fabric manager before CUDA can use the GPUs.
    let switches: Vec<&str> = driver.nvswitches().map(|d| d.address.as_str()).collect();
    if switches.is_empty() {
        r.ok("driver.fabric-manager", "no NVSwitch on PCI");
    } else {
        let procs = host.read("/sys/fs/cgroup/system.slice/nvidia-fabricmanager.service/cgroup.procs");
        match procs {
            Ok(p) if !p.trim().is_empty() => r.ok("driver.fabric-manager", "nvidia-fabricmanager.service is running"),
            _ => r.fail(
                "driver.fabric-manager",
                format!(
                    "{} NVSwitch(es) on PCI ({}) but nvidia-fabricmanager.service has no running process",
                    switches.len(),
                    switches.join(", ")
                ),
                "systemctl enable --now nvidia-fabricmanager",
            ),
        }
    }
    // Xid errors since boot.
    if request.gpus.is_empty() {
        r.skip("driver.xid", "the service's GPUs' PCI addresses are not known");
    } else {
        match read_kmsg(host) {
            Err(e) => {
                r.skip("driver.xid", format!("cannot read the kernel log ({}): {e}", host.path("/dev/kmsg").display()))
            }
            Ok(log) => {
                let lines = xid_lines(&log, &request.gpus);
                if lines.is_empty() {
                    r.ok("driver.xid", format!("no Xid error logged since boot for {}", request.gpus.join(", ")));
                } else {
                    r.fail(
                        "driver.xid",
                        format!("{} Xid error(s) logged since boot for the service's GPUs; the last: {}", lines.len(), lines[lines.len() - 1].trim()),
                        "look the Xid up in NVIDIA's Xid catalogue (https://docs.nvidia.com/deploy/xid-errors/); `journalctl -k -g Xid` shows them all",
                    );
                }
            }
        }
    }
    // The legacy hook injects the devices a second time, outside CDI.
    let mut hooks = Vec::new();
    for dir in ["/usr/share/containers/oci/hooks.d", "/etc/containers/oci/hooks.d"] {
        for entry in std::fs::read_dir(host.path(dir)).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            if text.contains("nvidia-container-runtime-hook") || text.contains("nvidia-container-toolkit") {
                hooks.push(Path::new(dir).join(entry.file_name()).display().to_string());
            }
        }
    }
    hooks.sort();
    if hooks.is_empty() {
        r.ok("driver.legacy-hook", "no legacy NVIDIA OCI hook is installed");
    } else {
        r.fail(
            "driver.legacy-hook",
            format!(
                "the legacy NVIDIA OCI hook is installed ({}) next to CDI: devices are injected twice",
                hooks.join(", ")
            ),
            format!("rm {}", hooks.join(" ")),
        );
    }
}

const IN_USE: &str = "driver.device-in-use";

/// The processes (other than those of the service's own unit) that hold one of the service's own
/// GPU device nodes open, found by reading each `/proc/PID/fd` link. Spec-wide nodes
/// (`/dev/nvidiactl`, `/dev/nvidia-uvm`) are left out: every CUDA process holds them. A warning:
/// a GPU may be shared on purpose, but a training job or a stray process that holds it makes the
/// service start on a GPU whose memory is taken.
///
/// Long because the /proc walk must treat every kind of race (a process gone, an fd closed, a
/// link unreadable) on the spot, and each is a line or two.
pub fn in_use(host: &Host, request: &Request, nodes: &[super::UsedNode], r: &mut Report) {
    if request.cdi.is_empty() {
        r.skip(IN_USE, "the service asks for no devices");
        return;
    }
    let own: Vec<&super::UsedNode> = nodes.iter().filter(|n| n.device.is_some()).collect();
    if own.is_empty() {
        r.skip(IN_USE, "the service's devices have no device node of their own (or do not resolve)");
        return;
    }
    let Ok(procs) = std::fs::read_dir(host.path("/proc")) else {
        r.skip(IN_USE, "/proc cannot be read");
        return;
    };
    let unit = format!("/{}.service", request.service);
    let me = std::process::id().to_string();
    let mut holders: Vec<String> = Vec::new();
    let mut unreadable = 0;
    for entry in procs.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            unreadable += 1;
            continue;
        };
        let held: Vec<&super::UsedNode> = fds
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter_map(|target| own.iter().find(|n| Path::new(&n.host) == target).copied())
            .collect();
        if held.is_empty() {
            continue;
        }
        let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        let cgroup = cgroup.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("").to_owned();
        if cgroup.contains(&format!("{unit}/")) || cgroup.ends_with(&unit) {
            continue;
        }
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let owner = cgroup
            .split('/')
            .rev()
            .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
            .map_or_else(String::new, |u| format!(", unit {}", crate::diag::escape(u)));
        for node in held {
            let text = format!(
                "{} ({}) is held open by PID {pid} ({}{owner})",
                node.host,
                node.device.as_deref().unwrap_or(""),
                crate::diag::escape(comm.trim())
            );
            if !holders.contains(&text) {
                holders.push(text);
            }
        }
    }
    if holders.is_empty() {
        let note =
            if unreadable > 0 { format!(" ({unreadable} processes could not be looked at)") } else { String::new() };
        r.ok(
            IN_USE,
            format!(
                "no other process holds {}{note}",
                own.iter().map(|n| n.host.as_str()).collect::<Vec<_>>().join(", ")
            ),
        );
        return;
    }
    let shown = holders.len();
    holders.truncate(8);
    let more = if shown > 8 { format!(" (and {} more)", shown - 8) } else { String::new() };
    r.fail(
        IN_USE,
        format!("{}{more}: the service will share the GPU and its memory", holders.join("; ")),
        format!(
            "stop what holds it (`fuser -v {}`), or give {} other GPUs",
            own.iter().map(|n| n.host.as_str()).collect::<Vec<_>>().join(" "),
            request.service
        ),
    );
}
