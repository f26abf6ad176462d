//! The NVIDIA kernel driver's own view of its GPUs, from `/proc`: no NVML and no GPU
//! initialisation, so the generator may read it at boot. CDI ([`crate::cdi`]) maps device
//! nodes to GPUs through it, and [`crate::topology`] takes names and UUIDs from it.

use std::path::Path;

/// Where the NVIDIA kernel driver describes each GPU it drives.
pub const DRIVER_DIR: &str = "/proc/driver/nvidia/gpus";

/// One GPU as the NVIDIA kernel driver describes it in `DRIVER_DIR/ADDRESS/information`: with
/// no NVML and no GPU initialisation, so safe in a generator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverGpu {
    pub pci: String,
    /// The N of `/dev/nvidiaN`.
    pub minor: Option<u32>,
    pub uuid: Option<String>,
    pub model: Option<String>,
}

/// Reads every GPU in `dir` (normally [`DRIVER_DIR`]); none where the driver is not loaded.
pub fn driver_gpus(dir: &Path) -> Vec<DriverGpu> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("information")) else { continue };
        let mut gpu = DriverGpu { pci: entry.file_name().to_string_lossy().to_lowercase(), ..DriverGpu::default() };
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            match key.trim() {
                "Model" if !value.is_empty() => gpu.model = Some(value.to_string()),
                "GPU UUID" if value.starts_with("GPU-") => gpu.uuid = Some(value.to_string()),
                "Device Minor" => gpu.minor = value.parse().ok(),
                _ => {}
            }
        }
        out.push(gpu);
    }
    out.sort_by(|a, b| a.pci.cmp(&b.pci));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drivers_view_of_a_gpu() {
        // As the NVIDIA driver 580 wrote it on the H200 host of tests/fixtures/h200.
        let dir = tempfile::tempdir().expect("tempdir");
        let gpu = dir.path().join("0000:00:06.0");
        std::fs::create_dir(&gpu).expect("mkdir");
        std::fs::write(
            gpu.join("information"),
            "Model: \t\t NVIDIA H200\nIRQ:   \t\t 41\nGPU UUID: \t GPU-fc549a0c-02eb-8d42-5960-b2eea948f942\nVideo BIOS: \t 96.00.a5.00.1a\nBus Type: \t PCIe\nBus Location: \t 0000:00:06.0\nDevice Minor: \t 0\nGPU Excluded:\t No\n",
        )
        .expect("write");
        assert_eq!(
            driver_gpus(dir.path()),
            [DriverGpu {
                pci: "0000:00:06.0".into(),
                minor: Some(0),
                uuid: Some("GPU-fc549a0c-02eb-8d42-5960-b2eea948f942".into()),
                model: Some("NVIDIA H200".into()),
            }]
        );
        assert!(driver_gpus(Path::new("/nonexistent")).is_empty(), "no driver: no GPUs, no error");
    }
}
