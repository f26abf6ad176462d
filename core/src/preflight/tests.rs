//! Every check id over fixture host trees: the healthy host passes each one, and each test breaks
//! one thing and sees its id report it (or skip, saying why).

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt as _};
use std::path::Path;

use super::fixture::{self, write};
use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    request: Request,
    nodes: bool,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let (request, nodes) = fixture::build(dir.path(), 8);
        Fixture { dir, request, nodes }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn p(&self, abs: &str) -> std::path::PathBuf {
        self.root().join(abs.trim_start_matches('/'))
    }

    fn run(&self) -> Vec<Finding> {
        run(&Host::new(self.root()), &self.request)
    }

    /// The findings of `id`; at least one exists for every id on every run.
    fn of(&self, id: &str) -> Vec<Finding> {
        let all = self.run();
        let mine: Vec<Finding> = all.iter().filter(|f| f.id == id).cloned().collect();
        assert!(!mine.is_empty(), "{id} said nothing: {all:#?}");
        mine
    }

    /// Asserts that `id` reports `status` with a message containing `text`; returns that finding.
    fn expect(&self, id: &str, status: Status, text: &str) -> Finding {
        let mine = self.of(id);
        mine.iter()
            .find(|f| f.status == status && f.message.contains(text))
            .cloned()
            .unwrap_or_else(|| panic!("{id}: expected {status} with `{text}`, got {mine:#?}"))
    }

    /// The device-node checks need mknod (root); say so rather than pass.
    fn needs_nodes(&self) -> bool {
        if !self.nodes {
            eprintln!("SKIPPED: this test needs device nodes, which only root can make");
        }
        self.nodes
    }
}

#[test]
fn a_healthy_host_passes_every_check_and_every_id_reports() {
    let f = Fixture::new();
    if !f.needs_nodes() {
        return;
    }
    let all = f.run();
    for info in CATALOGUE {
        let mine: Vec<&Finding> = all.iter().filter(|x| x.id == info.id).collect();
        assert!(!mine.is_empty(), "{} said nothing", info.id);
        assert!(mine.iter().all(|x| x.status == Status::Ok), "{}: {mine:#?}", info.id);
    }
    assert!(all.iter().all(|x| CATALOGUE.iter().any(|c| c.id == x.id)));
    assert!(!has_error(&all));
}

#[test]
fn a_service_without_devices_skips_the_device_checks_and_says_why() {
    let mut f = Fixture::new();
    f.request.cdi.clear();
    f.request.gpus.clear();
    for f in f.run().iter().filter(|x| !x.id.starts_with("rootless.") && !x.id.starts_with("podman.")) {
        assert_eq!(f.status, Status::Skipped, "{f:?}");
        assert!(f.message.contains("asks for no"), "{f:?}");
    }
}

#[test]
fn cdi_no_spec() {
    let f = Fixture::new();
    fs::remove_file(f.p("/var/run/cdi/nvidia.yaml")).expect("rm");
    let e = f.expect(
        "cdi.no-spec",
        Status::Error,
        "nvidia.com/gpu=0: no CDI spec podman can load declares kind nvidia.com/gpu",
    );
    assert_eq!(e.fix, "nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml");
    f.expect("cdi.stale-driver", Status::Skipped, "no spec resolves");
}

#[test]
fn cdi_unknown_device_lists_the_names_that_exist() {
    let mut f = Fixture::new();
    f.request.cdi = vec!["nvidia.com/gpu=9".into()];
    let e = f.expect("cdi.unknown-device", Status::Error, "nvidia.com/gpu=9 is not in /var/run/cdi/nvidia.yaml");
    assert!(e.message.contains("it has: nvidia.com/gpu=0, nvidia.com/gpu=1,"), "{e:?}");
    assert!(e.fix.contains("systemctl daemon-reload"), "{e:?}");
}

#[test]
fn cdi_duplicate_device_in_one_directory() {
    let f = Fixture::new();
    fs::copy(f.p("/var/run/cdi/nvidia.yaml"), f.p("/var/run/cdi/nvidia-old.yaml")).expect("cp");
    let e =
        f.expect("cdi.duplicate-device", Status::Error, "/var/run/cdi/nvidia-old.yaml and /var/run/cdi/nvidia.yaml");
    assert!(e.message.contains("podman drops"), "{e:?}");
    // A .yml file is not read by podman, so it is no duplicate.
    fs::rename(f.p("/var/run/cdi/nvidia-old.yaml"), f.p("/var/run/cdi/nvidia-old.yml")).expect("mv");
    f.expect("cdi.duplicate-device", Status::Ok, "");
}

#[test]
fn cdi_shadowed_device_says_which_file_wins() {
    let f = Fixture::new();
    fs::create_dir_all(f.p("/etc/cdi")).expect("mkdir");
    fs::copy(f.p("/var/run/cdi/nvidia.yaml"), f.p("/etc/cdi/nvidia.yaml")).expect("cp");
    f.expect(
        "cdi.shadowed-device",
        Status::Warning,
        "is defined in /etc/cdi/nvidia.yaml and in /var/run/cdi/nvidia.yaml; podman uses /var/run/cdi/nvidia.yaml",
    );
    assert!(!has_error(&f.run()) || !f.nodes);
}

#[test]
fn cdi_unsupported_version_per_podman_release() {
    let mut f = Fixture::new();
    let spec = fs::read_to_string(f.p("/var/run/cdi/nvidia.yaml")).expect("read");
    fs::write(f.p("/var/run/cdi/nvidia.yaml"), spec.replace("cdiVersion: 0.5.0", "cdiVersion: 0.7.0")).expect("write");
    f.request.podman = Some(PodmanVersion(5, 0, 1));
    let e = f.expect(
        "cdi.unsupported-version",
        Status::Error,
        "cdiVersion 0.7.0 is newer than podman 5.0.1 reads (at most 0.6.0; podman 5.1.0 reads it)",
    );
    assert!(e.fix.contains("cdiVersion 0.6.0 or older"), "{e:?}");
    // The spec is left out, as podman leaves it out.
    f.expect("cdi.no-spec", Status::Error, "nvidia.com/gpu=0");
    f.request.podman = Some(PodmanVersion(5, 4, 2));
    f.expect("cdi.unsupported-version", Status::Ok, "");
    f.request.podman = None;
    f.expect("cdi.unsupported-version", Status::Skipped, "podman version is not known");
    fs::write(f.p("/var/run/cdi/nvidia.yaml"), spec.replace("cdiVersion: 0.5.0", "cdiVersion: 9.9.9")).expect("write");
    f.expect("cdi.unsupported-version", Status::Error, "cdiVersion 9.9.9 is not a CDI version");
}

#[test]
fn the_version_table_matches_podmans_vendored_cdi_library() {
    use super::cdi::{max_version, podman_for};
    assert_eq!(max_version(PodmanVersion(4, 4, 0)), "0.5.0");
    assert_eq!(max_version(PodmanVersion(4, 9, 5)), "0.6.0");
    assert_eq!(max_version(PodmanVersion(5, 1, 2)), "0.7.0");
    assert_eq!(max_version(PodmanVersion(5, 4, 2)), "0.8.0");
    assert_eq!(max_version(PodmanVersion(5, 8, 0)), "1.0.0");
    assert_eq!(podman_for("0.6.0"), Some(PodmanVersion(4, 7, 0)));
    assert_eq!(podman_for("1.1.0"), None);
}

#[test]
fn cdi_unreadable_spec_for_the_account() {
    let f = Fixture::new();
    let spec = f.p("/var/run/cdi/nvidia.yaml");
    fs::set_permissions(&spec, fs::Permissions::from_mode(0o600)).expect("chmod");
    let e =
        f.expect("cdi.unreadable-spec", Status::Error, "/var/run/cdi/nvidia.yaml: podman runs as the service account");
    assert_eq!(e.fix, "chmod a+r /var/run/cdi/nvidia.yaml");
    // Its own account's file is readable to it.
    nix::unistd::chown(&spec, Some(nix::unistd::Uid::from_raw(990)), None).ok();
    if fs::metadata(&spec).map(|m| std::os::unix::fs::MetadataExt::uid(&m)).ok() == Some(990) {
        f.expect("cdi.unreadable-spec", Status::Ok, "");
    }
    fs::set_permissions(&spec, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::set_permissions(f.p("/var/run/cdi"), fs::Permissions::from_mode(0o700)).expect("chmod");
    let e = f.expect("cdi.unreadable-spec", Status::Error, "may not enter /var/run/cdi");
    assert_eq!(e.fix, "chmod a+x /var/run/cdi");
    // Group access counts through supplementary groups (aimodels is in video, GID 44).
    nix::unistd::chown(&f.p("/var/run/cdi"), None, Some(nix::unistd::Gid::from_raw(44))).ok();
    fs::set_permissions(f.p("/var/run/cdi"), fs::Permissions::from_mode(0o750)).expect("chmod");
    f.expect("cdi.unreadable-spec", Status::Ok, "");
}

#[test]
fn cdi_invalid_spec_and_hostile_files() {
    let f = Fixture::new();
    // Not YAML, not text, a FIFO and a link to an endless device: reported, never hanging.
    write(f.root(), "/var/run/cdi/garbage.yaml", "kind: [unclosed\n");
    fs::write(f.p("/var/run/cdi/binary.json"), [0xff_u8, 0xfe, 0, 1, 2]).expect("write");
    nix::unistd::mkfifo(&f.p("/var/run/cdi/fifo.yaml"), nix::sys::stat::Mode::from_bits_truncate(0o644))
        .expect("mkfifo");
    symlink("/dev/zero", f.p("/var/run/cdi/zero.yaml")).expect("link");
    let all = f.of("cdi.invalid-spec");
    for name in ["garbage.yaml", "binary.json", "fifo.yaml", "zero.yaml"] {
        assert!(all.iter().any(|x| x.status == Status::Warning && x.message.contains(name)), "{name}: {all:#?}");
    }
    // The service's own spec still resolves.
    f.expect("cdi.no-spec", Status::Ok, "");
    // A spec of the service's kind that podman refuses (a device twice) stops the start.
    write(
        f.root(),
        "/etc/cdi/broken.yaml",
        "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: x\n  containerEdits: {}\n- name: x\n  containerEdits: {}\n",
    );
    f.expect("cdi.invalid-spec", Status::Error, "/etc/cdi/broken.yaml: podman cannot load it: device `x` twice");
    // Hostile device names are refused too.
    write(
        f.root(),
        "/etc/cdi/broken.yaml",
        "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: \"0\\nExecStartPre=/bin/sh\"\n",
    );
    f.expect("cdi.invalid-spec", Status::Error, "is not valid");
}

#[test]
fn cdi_stale_driver() {
    let f = Fixture::new();
    write(
        f.root(),
        "/proc/driver/nvidia/version",
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 07:09:15 UTC 2025\n",
    );
    let e = f.expect(
        "cdi.stale-driver",
        Status::Error,
        "/var/run/cdi/nvidia.yaml was generated for NVIDIA driver 570.86.15 but 580.65.06 is loaded",
    );
    assert_eq!(e.fix, "nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml");
    write(f.root(), "/usr/lib/systemd/system/nvidia-cdi-refresh.service", "[Service]\n");
    assert_eq!(f.expect("cdi.stale-driver", Status::Error, "").fix, "systemctl restart nvidia-cdi-refresh.service");
    fs::remove_file(f.p("/proc/driver/nvidia/version")).expect("rm");
    f.expect("cdi.stale-driver", Status::Skipped, "no NVIDIA driver is loaded");
}

#[test]
fn driver_versions_in_a_real_nvidia_ctk_spec() {
    let path =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/cdi/nvidia-ctk-generated_1gpu_575.64.03.yaml");
    let Ok(text) = fs::read_to_string(path) else {
        eprintln!("SKIPPED: {path} is not here (the shared fixtures are not checked out)");
        return;
    };
    let spec = super::cdi::parse(&text).expect("parses");
    assert_eq!(spec.driver_versions.iter().collect::<Vec<_>>(), ["575.64.03"]);
    assert_eq!(spec.devices.keys().collect::<Vec<_>>(), ["0", "GPU-520e01f2-cf30-6396-abef-e8e9a5233b0e", "all"]);
    assert!(spec.common.mounts.iter().any(|m| m == "/run/nvidia-persistenced/socket"));
    assert_eq!(spec.common.hooks.iter().filter(|h| *h == "/usr/bin/nvidia-cdi-hook").count(), 4);
    assert_eq!(
        super::driver::module_version(
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n"
        )
        .as_deref(),
        Some("550.54.14")
    );
}

#[test]
fn cdi_missing_mount_source() {
    let f = Fixture::new();
    fs::remove_file(f.p("/run/nvidia-persistenced/socket")).expect("rm");
    let e = f.expect(
        "cdi.missing-mount-source",
        Status::Error,
        "mounts /run/nvidia-persistenced/socket, which does not exist",
    );
    assert_eq!(e.fix, "systemctl enable --now nvidia-persistenced");
    fs::remove_file(f.p(&format!("/usr/lib/x86_64-linux-gnu/libcuda.so.{}", fixture::DRIVER))).expect("rm");
    f.expect("cdi.missing-mount-source", Status::Error, "libcuda.so.570.86.15, which does not exist");
}

#[test]
fn cdi_missing_hook() {
    let f = Fixture::new();
    fs::set_permissions(f.p("/usr/bin/nvidia-cdi-hook"), fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = f.expect(
        "cdi.missing-hook",
        Status::Error,
        "runs the hook /usr/bin/nvidia-cdi-hook, which is not an executable file",
    );
    assert!(e.fix.starts_with("install nvidia-container-toolkit"), "{e:?}");
    fs::remove_file(f.p("/usr/bin/nvidia-cdi-hook")).expect("rm");
    f.expect("cdi.missing-hook", Status::Error, "/usr/bin/nvidia-cdi-hook");
}

#[test]
fn cdi_missing_device_node() {
    let f = Fixture::new();
    if !f.needs_nodes() {
        return;
    }
    fs::remove_file(f.p("/dev/nvidia3")).expect("rm");
    let e =
        f.expect("cdi.missing-device-node", Status::Error, "gives the device node /dev/nvidia3, which does not exist");
    assert!(e.fix.contains("nvidia-modprobe"), "{e:?}");
}

#[test]
fn cdi_wrong_device_node() {
    let f = Fixture::new();
    if !f.needs_nodes() {
        return;
    }
    fs::remove_file(f.p("/dev/nvidia0")).expect("rm");
    write(f.root(), "/dev/nvidia0", "");
    f.expect(
        "cdi.wrong-device-node",
        Status::Error,
        "gives /dev/nvidia0 as a character device, but it is a regular file",
    );
    fs::remove_file(f.p("/dev/nvidia0")).expect("rm");
    symlink("nvidia1", f.p("/dev/nvidia0")).expect("link");
    f.expect("cdi.wrong-device-node", Status::Error, "but it is a symbolic link");
    // Major and minor, when the spec gives them.
    fs::remove_file(f.p("/dev/nvidia0")).expect("rm");
    fixture::mknod(f.root(), "/dev/nvidia0", 195, 0);
    let spec = fs::read_to_string(f.p("/var/run/cdi/nvidia.yaml")).expect("read");
    fs::write(
        f.p("/var/run/cdi/nvidia.yaml"),
        spec.replace(
            "    - path: /dev/nvidia0\n",
            "    - path: /dev/nvidia0\n      type: c\n      major: 195\n      minor: 7\n",
        ),
    )
    .expect("write");
    f.expect("cdi.wrong-device-node", Status::Error, "gives /dev/nvidia0 as device 195:7, but it is 195:0");
}

#[test]
fn cdi_vanished_mig() {
    let mut f = Fixture::new();
    if !f.needs_nodes() {
        return;
    }
    write(
        f.root(),
        "/etc/cdi/mig.yaml",
        "cdiVersion: 0.5.0\nkind: nvidia.com/mig\ndevices:\n- name: \"0:1\"\n  containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia0\n    - path: /dev/nvidia-caps/nvidia-cap21\n    - path: /dev/nvidia-caps/nvidia-cap22\n",
    );
    fixture::mknod(f.root(), "/dev/nvidia-caps/nvidia-cap21", 235, 21);
    fixture::mknod(f.root(), "/dev/nvidia-caps/nvidia-cap22", 235, 22);
    write(
        f.root(),
        "/proc/driver/nvidia-caps/mig-minors",
        "config 1\nmonitor 2\ngpu0/gi1/access 21\ngpu0/gi1/ci0/access 22\n",
    );
    write(f.root(), "/proc/driver/nvidia/capabilities/gpu0/mig/gi1/access", "DeviceFileMinor: 21\n");
    write(f.root(), "/proc/driver/nvidia/capabilities/gpu0/mig/gi1/ci0/access", "DeviceFileMinor: 22\n");
    f.request.cdi = vec!["nvidia.com/mig=0:1".into()];
    f.expect("cdi.vanished-mig", Status::Ok, "the requested MIG instances exist");
    fs::remove_dir_all(f.p("/proc/driver/nvidia/capabilities/gpu0/mig/gi1")).expect("rm");
    let e = f.expect("cdi.vanished-mig", Status::Error, "nvidia.com/mig=0:1 is MIG instance gpu0/gi1");
    assert!(e.message.contains("which no longer exists"), "{e:?}");
    fs::remove_file(f.p("/proc/driver/nvidia-caps/mig-minors")).expect("rm");
    f.expect("cdi.vanished-mig", Status::Skipped, "mig-minors cannot be read");
}

#[test]
fn driver_not_loaded() {
    let f = Fixture::new();
    fs::remove_file(f.p("/proc/driver/nvidia/version")).expect("rm");
    let e = f.expect("driver.not-loaded", Status::Error, "8 NVIDIA GPU(s) on PCI (0000:18:00.0, ");
    assert!(e.fix.starts_with("modprobe nvidia"), "{e:?}");
    f.expect("driver.library-version", Status::Skipped, "no NVIDIA driver is loaded");
    fs::remove_dir_all(f.p("/sys/bus/pci/devices")).expect("rm");
    f.expect("driver.not-loaded", Status::Error, "the host has no NVIDIA GPU on PCI");
}

#[test]
fn driver_nouveau() {
    let f = Fixture::new();
    let link = f.p(&format!("/sys/bus/pci/devices/{}/driver", fixture::pci(2)));
    fs::remove_file(&link).expect("rm");
    symlink("../../../bus/pci/drivers/nouveau", &link).expect("link");
    f.expect("driver.nouveau", Status::Error, "nouveau drives 0000:38:00.0");
}

#[test]
fn driver_library_version() {
    let f = Fixture::new();
    let lib = f.p("/usr/lib/x86_64-linux-gnu/libcuda.so.1");
    fs::remove_file(&lib).expect("rm");
    symlink("libcuda.so.580.65.06", &lib).expect("link");
    let e = f.expect(
        "driver.library-version",
        Status::Error,
        "the loaded kernel module is 570.86.15 but /usr/lib/x86_64-linux-gnu/libcuda.so.1 is 580.65.06",
    );
    assert!(e.fix.starts_with("reboot"), "{e:?}");
    fs::remove_file(&lib).expect("rm");
    fs::remove_file(f.p("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1")).expect("rm");
    f.expect("driver.library-version", Status::Skipped, "no libcuda.so.1 or libnvidia-ml.so.1 link");
}

#[test]
fn driver_fabric_manager() {
    let f = Fixture::new();
    write(f.root(), "/sys/bus/pci/devices/0000:05:00.0/vendor", "0x10de\n");
    write(f.root(), "/sys/bus/pci/devices/0000:05:00.0/class", "0x068000\n");
    let e = f.expect("driver.fabric-manager", Status::Error, "1 NVSwitch(es) on PCI (0000:05:00.0)");
    assert_eq!(e.fix, "systemctl enable --now nvidia-fabricmanager");
    write(f.root(), "/sys/fs/cgroup/system.slice/nvidia-fabricmanager.service/cgroup.procs", "1234\n");
    f.expect("driver.fabric-manager", Status::Ok, "nvidia-fabricmanager.service is running");
}

#[test]
fn driver_xid_for_the_services_gpus_only() {
    let mut f = Fixture::new();
    let mut log = fs::read_to_string(f.p("/dev/kmsg")).expect("read");
    log.push_str("3,100,2000,-;NVRM: Xid (PCI:0000:28:00): 79, pid=1234, name=python, GPU has fallen off the bus.\n");
    fs::write(f.p("/dev/kmsg"), &log).expect("write");
    let w = f.expect("driver.xid", Status::Warning, "1 Xid error(s) logged since boot");
    assert!(w.message.contains("GPU has fallen off the bus"), "{w:?}");
    assert!(!has_error(&f.run()) || !f.nodes, "a warning does not stop the start");
    f.request.gpus = vec![fixture::pci(0)];
    f.expect("driver.xid", Status::Ok, "no Xid error logged since boot for 0000:18:00.0");
    f.request.gpus.clear();
    f.expect("driver.xid", Status::Skipped, "PCI addresses are not known");
    f.request.gpus = vec![fixture::pci(0)];
    fs::remove_file(f.p("/dev/kmsg")).expect("rm");
    f.expect("driver.xid", Status::Skipped, "cannot read the kernel log");
}

#[test]
fn driver_legacy_hook() {
    let f = Fixture::new();
    write(
        f.root(),
        "/usr/share/containers/oci/hooks.d/oci-nvidia-hook.json",
        r#"{"version":"1.0.0","hook":{"path":"/usr/bin/nvidia-container-runtime-hook","args":["nvidia-container-runtime-hook","prestart"]},"when":{"always":true},"stages":["prestart"]}"#,
    );
    let w = f.expect("driver.legacy-hook", Status::Warning, "/usr/share/containers/oci/hooks.d/oci-nvidia-hook.json");
    assert_eq!(w.fix, "rm /usr/share/containers/oci/hooks.d/oci-nvidia-hook.json");
}

#[test]
fn selinux_container_use_devices() {
    let f = Fixture::new();
    f.expect("selinux.container-use-devices", Status::Ok, "SELinux is not enabled");
    write(f.root(), "/sys/fs/selinux/enforce", "1");
    f.expect("selinux.container-use-devices", Status::Skipped, "the policy may predate the boolean");
    write(f.root(), "/sys/fs/selinux/booleans/container_use_devices", "0 0");
    let e = f.expect(
        "selinux.container-use-devices",
        Status::Error,
        "SELinux enforces and neither container_use_devices nor container_use_xserver_devices is on: the container may not use /dev/nvidiactl",
    );
    assert_eq!(e.fix, "setsebool -P container_use_xserver_devices on");
    // The narrower boolean for the NVIDIA nodes' label is enough.
    write(f.root(), "/sys/fs/selinux/booleans/container_use_xserver_devices", "1 1");
    f.expect(
        "selinux.container-use-devices",
        Status::Ok,
        "the narrower container booleans grant every GPU device node",
    );
    fs::remove_file(f.p("/sys/fs/selinux/booleans/container_use_xserver_devices")).expect("rm");
    write(f.root(), "/sys/fs/selinux/booleans/container_use_devices", "1 1");
    f.expect("selinux.container-use-devices", Status::Ok, "container_use_devices is on");
    write(f.root(), "/sys/fs/selinux/booleans/container_use_devices", "0 0");
    write(f.root(), "/sys/fs/selinux/enforce", "0");
    f.expect("selinux.container-use-devices", Status::Ok, "permissive");
}

/// Labels are extended attributes: setting `security.selinux` on a host without SELinux needs
/// root (CAP_SYS_ADMIN); say so rather than pass.
fn set_label(path: &Path, label: &str) -> bool {
    match rustix::fs::lsetxattr(path, "security.selinux", label.as_bytes(), rustix::fs::XattrFlags::empty()) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("SKIPPED: cannot set security.selinux on {} ({e}): this test needs root", path.display());
            false
        }
    }
}

#[test]
fn selinux_device_labels() {
    let f = Fixture::new();
    if !f.needs_nodes() {
        return;
    }
    write(f.root(), "/sys/fs/selinux/enforce", "1");
    write(f.root(), "/sys/fs/selinux/booleans/container_use_devices", "0 0");
    write(f.root(), "/sys/fs/selinux/booleans/container_use_xserver_devices", "1 1");
    let nodes = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"].map(String::from).into_iter();
    for node in nodes.chain((0..8).map(|i| format!("/dev/nvidia{i}"))) {
        if !set_label(&f.p(&node), "system_u:object_r:xserver_misc_device_t:s0\0") {
            return;
        }
    }
    f.expect("selinux.device-label", Status::Ok, "the 11 GPU device node(s) have the labels the policy gives them");
    f.expect("selinux.container-use-devices", Status::Ok, "narrower");
    // A node made before the policy labelled it.
    assert!(set_label(&f.p("/dev/nvidia3"), "system_u:object_r:device_t:s0"));
    let e = f.expect(
        "selinux.device-label",
        Status::Error,
        "/dev/nvidia3 is labelled system_u:object_r:device_t:s0, not xserver_misc_device_t: with container_use_devices off, no container may use it",
    );
    assert_eq!(e.fix, "restorecon -v /dev/nvidia3");
    // The broad boolean grants every label.
    write(f.root(), "/sys/fs/selinux/booleans/container_use_devices", "1 1");
    f.expect("selinux.device-label", Status::Ok, "container_use_devices grants every device label");
    write(f.root(), "/sys/fs/selinux/enforce", "0");
    f.expect("selinux.device-label", Status::Ok, "permissive");
}

/// Another process holding one of the service's own nodes is reported (with its unit, its name
/// escaped); the spec-wide nodes and the service's own processes are not.
#[test]
fn driver_device_in_use() {
    let f = Fixture::new();
    f.expect("driver.device-in-use", Status::Ok, "no other process holds /dev/nvidia0");
    let proc = |pid: &str, fd: &str, node: &str, comm: &str, cgroup: &str| {
        fs::create_dir_all(f.p(&format!("/proc/{pid}/fd"))).expect("mkdir");
        symlink(node, f.p(&format!("/proc/{pid}/fd/{fd}"))).expect("link");
        write(f.root(), &format!("/proc/{pid}/comm"), comm);
        write(f.root(), &format!("/proc/{pid}/cgroup"), cgroup);
    };
    proc("4242", "7", "/dev/nvidia3", "python3\n", "0::/system.slice/train.service\n");
    proc("4343", "3", "/dev/nvidiactl", "nvidia-smi\n", "0::/user.slice/user-1000.slice/session-2.scope\n");
    proc("4444", "9", "/dev/nvidia0", "llama-server\n", "0::/system.slice/chat.service/libpod-payload-abc\n");
    proc("4545", "1", "/dev/nvidia5", "evil\u{1b}[2J\nline\n", "0::/\n");
    let all = f.of("driver.device-in-use");
    assert_eq!(all.len(), 1, "{all:#?}");
    let w = &all[0];
    assert_eq!(w.status, Status::Warning);
    assert!(
        w.message.contains("/dev/nvidia3 (nvidia.com/gpu=3) is held open by PID 4242 (python3, unit train.service)"),
        "{w:#?}"
    );
    assert!(
        w.message.contains("/dev/nvidia5 (nvidia.com/gpu=5) is held open by PID 4545 (evil\\u{1b}[2J\\nline)"),
        "{w:#?}"
    );
    assert!(!w.message.contains("4343") && !w.message.contains("4444"), "{w:#?}");
    assert!(w.fix.starts_with("stop what holds it (`fuser -v /dev/nvidia0 "), "{w:#?}");
    assert!(!has_error(&f.run()), "a warning does not stop the start");
}

#[test]
fn rootless_account() {
    let mut f = Fixture::new();
    f.request.account = "nosuch".into();
    let e = f.expect("rootless.account", Status::Error, "account `nosuch` is not in");
    assert_eq!(e.fix, "aictl account prepare nosuch");
    f.expect("rootless.subids", Status::Skipped, "does not exist");
    f.expect("rootless.linger", Status::Skipped, "does not exist");
    f.request.account = "root".into();
    f.expect("rootless.account", Status::Error, "has UID 0");
}

#[test]
fn rootless_subids() {
    let f = Fixture::new();
    write(f.root(), "/etc/subgid", "aimodels:131072:1000\n");
    let e = f.expect(
        "rootless.subids",
        Status::Error,
        "aimodels has 1000 subordinate GIDs in /etc/subgid; a container needs 65536",
    );
    assert_eq!(e.fix, "aictl account prepare aimodels");
    fs::remove_file(f.p("/etc/subuid")).expect("rm");
    f.expect("rootless.subids", Status::Error, "0 subordinate UIDs in /etc/subuid and 1000 subordinate GIDs");
}

#[test]
fn rootless_linger() {
    let f = Fixture::new();
    fs::remove_file(f.p("/var/lib/systemd/linger/aimodels")).expect("rm");
    let e = f.expect("rootless.linger", Status::Error, "lingering is off for aimodels");
    assert_eq!(e.fix, "loginctl enable-linger aimodels");
}

#[test]
fn rootless_cgroup_v2_and_cpuset() {
    let mut f = Fixture::new();
    write(f.root(), "/sys/fs/cgroup/cgroup.controllers", "cpu io memory pids\n");
    f.expect("rootless.cpuset", Status::Error, "has only: cpu io memory pids");
    f.request.numa = false;
    f.expect("rootless.cpuset", Status::Skipped, "NUMA pinning is off");
    f.request.numa = true;
    fs::remove_file(f.p("/sys/fs/cgroup/cgroup.controllers")).expect("rm");
    let e = f.expect("rootless.cgroup-v2", Status::Error, "not the unified cgroup v2 hierarchy");
    assert!(e.fix.contains("systemd.unified_cgroup_hierarchy=1"), "{e:?}");
    f.expect("rootless.cpuset", Status::Skipped, "no cgroup v2 hierarchy");
}

#[test]
fn podman_version() {
    let mut f = Fixture::new();
    let status = |v: &str| format!("Package: podman\nStatus: install ok installed\nVersion: {v}\n");
    write(f.root(), "/var/lib/dpkg/status", &status("5.2.0+ds1-1"));
    let e = f.expect("podman.version", Status::Error, "generated for podman 5.4.2 but 5.2.0 is installed");
    assert_eq!(e.fix, "systemctl daemon-reload");
    write(f.root(), "/var/lib/dpkg/status", &status("1:5.6.1-1"));
    f.expect("podman.version", Status::Warning, "but 5.6.1 is installed");
    write(f.root(), "/var/lib/dpkg/status", &status("4.3.1+ds1-8"));
    f.expect("podman.version", Status::Error, "Quadlet needs 4.4.0 or newer");
    fs::remove_file(f.p("/var/lib/dpkg/status")).expect("rm");
    f.expect("podman.version", Status::Skipped, "no podman package");
    f.request.podman = None;
    f.expect("podman.version", Status::Skipped, "does not say which podman");
}

#[test]
fn host_paths_stay_under_the_root() {
    let host = Host::new("/srv/fixture");
    assert_eq!(host.path("/dev/../../../etc/shadow"), Path::new("/srv/fixture/etc/shadow"));
    assert_eq!(host.path("/var/run/cdi"), Path::new("/srv/fixture/var/run/cdi"));
    assert_eq!(Host::live().path("/proc/x"), Path::new("/proc/x"));
}

#[test]
fn the_unit_command_carries_the_request() {
    let (request, _) = {
        let dir = tempfile::tempdir().expect("tempdir");
        fixture::build(dir.path(), 2)
    };
    assert_eq!(
        unit_command("/usr/bin/aictl", &request),
        "+/usr/bin/aictl preflight --unit-mode --run-as aimodels --cdi nvidia.com/gpu=0 --cdi nvidia.com/gpu=1 --gpu 0000:18:00.0 --gpu 0000:28:00.0 --numa --podman 5.4.2 chat"
    );
}

#[test]
fn the_man_page_describes_every_check() {
    let page =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../man/aicontainers-preflight.7")).expect("man page");
    for info in CATALOGUE {
        let roff = info.id.replace('-', "\\-");
        assert!(page.contains(&format!(".BR {roff} \" ({})\"", info.severity)), "{} is not described", info.id);
    }
}
