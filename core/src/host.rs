//! The host as GPU placement sees it, for the generator, the agent and `aictl topology`: where
//! its topology, CDI specs and GPU claims are read from, and the topology they make together.
//! NVML is not used here (the generator runs at boot, before any GPU is initialised).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::topology::Topology;
use crate::{cdi, nvidia, placement};

/// Where placement learns about the host's GPUs.
#[derive(Clone, Debug)]
pub struct HostGpus {
    /// Plan against this hwloc XML export instead of the live host.
    pub topology_xml: Option<PathBuf>,
    /// CDI spec directories, lowest priority first.
    pub cdi_dirs: Vec<PathBuf>,
    /// The claims file ([`placement::CLAIMS_PATH`]).
    pub claims: PathBuf,
}

impl HostGpus {
    /// The installed system's places. `AICONTAINERS_TOPOLOGY_XML`, `AICONTAINERS_CDI_DIRS`
    /// (colon-separated) and `AICONTAINERS_GPU_CLAIMS` replace them, for tests and for
    /// planning another machine.
    pub fn from_env() -> HostGpus {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        HostGpus {
            topology_xml: var("AICONTAINERS_TOPOLOGY_XML").map(PathBuf::from),
            cdi_dirs: var("AICONTAINERS_CDI_DIRS")
                .map(|v| std::env::split_paths(&v).collect())
                .unwrap_or_else(|| cdi::SPEC_DIRS.iter().map(PathBuf::from).collect()),
            claims: var("AICONTAINERS_GPU_CLAIMS").map_or_else(|| PathBuf::from(placement::CLAIMS_PATH), PathBuf::from),
        }
    }

    /// Planning from `xml` alone: no CDI specs, no claims.
    pub fn from_xml(xml: &Path) -> HostGpus {
        HostGpus { topology_xml: Some(xml.to_path_buf()), cdi_dirs: Vec::new(), claims: PathBuf::from("/nonexistent") }
    }

    /// The topology placement works on, with warnings (unreadable CDI specs).
    ///
    /// Without an XML export: hwloc on the live host, the NVIDIA driver's names and UUIDs, and
    /// the GPUs' CDI names from the specs (whose device nodes the driver's minor numbers tie to
    /// PCI addresses). CDI specs that cannot be read are warnings; they do not stop placement.
    pub fn topology(&self) -> Result<(Topology, Vec<String>), String> {
        let Some(xml) = self.topology_xml.as_deref() else {
            let driver = nvidia::driver_gpus(Path::new(nvidia::DRIVER_DIR));
            let nodes = cdi::NodeMap::live(&driver);
            let (devices, warnings) = cdi::read_dirs(&self.cdi_dirs, &nodes);
            let extra: BTreeSet<String> = devices.iter().filter_map(|d| d.pci.clone()).collect();
            let mut topology = Topology::live(&extra)?;
            topology.add_driver_info(&driver);
            topology.add_cdi(&devices);
            return Ok((topology, warnings));
        };
        let mut topology = Topology::from_xml(xml)?;
        let (devices, warnings) = cdi::read_dirs(&self.cdi_dirs, &cdi::NodeMap::default());
        topology.add_cdi(&devices);
        Ok((topology, warnings))
    }
}
