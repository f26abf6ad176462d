//! A healthy NVIDIA host as a directory tree, for the tests and the benchmark: `gpus` GPUs with
//! the driver loaded, device nodes, libraries, a CDI spec in `/var/run/cdi/nvidia.yaml` written
//! the way `nvidia-ctk cdi generate` writes one, an account ready for rootless podman, and cgroup
//! v2. Each test then breaks one thing. Device nodes need root (mknod); [`build`] says when it
//! could not make them.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt as _};
use std::path::Path;

use super::Request;
use crate::podman::PodmanVersion;

/// The driver version the host runs.
pub const DRIVER: &str = "570.86.15";

/// PCI address of GPU `i`.
pub fn pci(i: usize) -> String {
    format!("0000:{:02x}:00.0", 0x18 + i * 0x10)
}

pub fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(&p, text).expect("write");
}

/// Makes a character device node; false when this process may not (not root).
pub fn mknod(root: &Path, path: &str, major: u64, minor: u64) -> bool {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let p = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    let _ = fs::remove_file(&p);
    mknod(&p, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(major, minor)).is_ok()
}

/// The CDI spec for `gpus` GPUs, as nvidia-ctk writes it (cdiVersion 0.5.0, index names).
pub fn spec(gpus: usize, driver: &str) -> String {
    let mut s = String::from("---\ncdiVersion: 0.5.0\nkind: nvidia.com/gpu\ncontainerEdits:\n  deviceNodes:\n");
    for node in ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"] {
        let _ = writeln!(s, "  - path: {node}");
    }
    s.push_str("  env:\n  - NVIDIA_VISIBLE_DEVICES=void\n  hooks:\n");
    let _ = writeln!(
        s,
        "  - args: [nvidia-cdi-hook, enable-cuda-compat, --host-driver-version={driver}]\n    hookName: createContainer\n    path: /usr/bin/nvidia-cdi-hook"
    );
    let _ = writeln!(
        s,
        "  - args: [nvidia-cdi-hook, update-ldcache, --folder, /usr/lib/x86_64-linux-gnu]\n    hookName: createContainer\n    path: /usr/bin/nvidia-cdi-hook"
    );
    s.push_str("  mounts:\n");
    for m in [
        "/run/nvidia-persistenced/socket".to_owned(),
        format!("/usr/lib/x86_64-linux-gnu/libcuda.so.{driver}"),
        format!("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.{driver}"),
        "/usr/lib/x86_64-linux-gnu/libnvidia-egl-gbm.so.1.1.2".to_owned(),
        format!("/lib/firmware/nvidia/{driver}/gsp_ga10x.bin"),
        "/usr/bin/nvidia-smi".to_owned(),
    ] {
        let _ = writeln!(s, "  - containerPath: {m}\n    hostPath: {m}\n    options: [ro, nosuid, nodev, bind]");
    }
    s.push_str("devices:\n");
    for i in 0..gpus {
        let _ = writeln!(
            s,
            "- name: \"{i}\"\n  containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia{i}\n    hooks:\n    - args: [nvidia-cdi-hook, create-symlinks, --link, ../card{c}::/dev/dri/by-path/pci-{p}-card]\n      hookName: createContainer\n      path: /usr/bin/nvidia-cdi-hook",
            c = i + 1,
            p = pci(i)
        );
    }
    s
}

/// Builds the healthy host under `root`; returns the request of a service using every GPU, and
/// whether the device nodes could be made.
pub fn build(root: &Path, gpus: usize) -> (Request, bool) {
    fs::create_dir_all(root).expect("root");
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).expect("chmod root");
    write(root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\naimodels:x:990:990::/var/lib/aicontainers/accounts/aimodels:/usr/sbin/nologin\n");
    write(root, "/etc/group", "root:x:0:\nvideo:x:44:aimodels\naimodels:x:990:\n");
    write(root, "/etc/subuid", "aimodels:131072:65536\n");
    write(root, "/etc/subgid", "aimodels:131072:65536\n");
    write(root, "/var/lib/systemd/linger/aimodels", "");
    write(root, "/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
    write(
        root,
        "/proc/driver/nvidia/version",
        &format!("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {DRIVER}  Release Build  (dvs-builder@U16-I3-B03-4-3)  Thu Jan 16 23:47:03 UTC 2025\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"),
    );
    fs::create_dir_all(root.join("sys/bus/pci/drivers/nvidia")).expect("mkdir");
    for i in 0..gpus {
        let dev = format!("/sys/bus/pci/devices/{}", pci(i));
        write(root, &format!("{dev}/vendor"), "0x10de\n");
        write(root, &format!("{dev}/class"), "0x030200\n");
        symlink("../../../bus/pci/drivers/nvidia", root.join(dev.trim_start_matches('/')).join("driver"))
            .expect("link");
        write(
            root,
            &format!("/proc/driver/nvidia/gpus/{}/information", pci(i)),
            &format!("Model: \t\t NVIDIA H200\nDevice Minor: \t {i}\n"),
        );
    }
    let lib = root.join("usr/lib/x86_64-linux-gnu");
    for name in ["libcuda.so", "libnvidia-ml.so"] {
        write(root, &format!("/usr/lib/x86_64-linux-gnu/{name}.{DRIVER}"), "");
        symlink(format!("{name}.{DRIVER}"), lib.join(format!("{name}.1"))).expect("link");
    }
    write(root, "/usr/lib/x86_64-linux-gnu/libnvidia-egl-gbm.so.1.1.2", "");
    write(root, &format!("/lib/firmware/nvidia/{DRIVER}/gsp_ga10x.bin"), "");
    write(root, "/run/nvidia-persistenced/socket", "");
    for bin in ["/usr/bin/nvidia-cdi-hook", "/usr/bin/nvidia-smi"] {
        write(root, bin, "#!/bin/sh\n");
        fs::set_permissions(root.join(bin.trim_start_matches('/')), fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    write(
        root,
        "/dev/kmsg",
        "6,1,0,-;Linux version 6.12.0\n4,2,10,-;NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  570.86.15\n",
    );
    write(root, "/var/lib/dpkg/status", "Package: bash\nStatus: install ok installed\nVersion: 5.2.37-2\n\nPackage: podman\nStatus: install ok installed\nVersion: 5.4.2+ds1-2\n");
    write(root, "/var/run/cdi/nvidia.yaml", &spec(gpus, DRIVER));
    let mut nodes = mknod(root, "/dev/nvidiactl", 195, 255);
    nodes &= mknod(root, "/dev/nvidia-uvm", 510, 0);
    nodes &= mknod(root, "/dev/nvidia-uvm-tools", 510, 1);
    for i in 0..gpus {
        nodes &= mknod(root, &format!("/dev/nvidia{i}"), 195, i as u64);
    }
    if !nodes {
        eprintln!(
            "preflight fixture: cannot mknod under {} (not root): device-node checks will see them missing",
            root.display()
        );
    }
    let request = Request {
        service: "chat".into(),
        account: "aimodels".into(),
        cdi: (0..gpus).map(|i| format!("nvidia.com/gpu={i}")).collect(),
        gpus: (0..gpus).map(pci).collect(),
        numa: true,
        podman: Some(PodmanVersion(5, 4, 2)),
    };
    (request, nodes)
}
