//! The host as placement sees it: NUMA nodes with their CPUs, and GPUs with the NUMA node(s)
//! they hang off.
//!
//! It comes from hwloc (through hwlocality): from the live host, or from an hwloc XML export
//! (`lstopo topo.xml`, either XML format: hwloc 1.x files have no `version` attribute, 2.x files
//! say `version="2.0"`), so every placement decision can be made and tested from data. GPU
//! identity is then refined from the kernel's view (`/proc/driver/nvidia/gpus`), from CDI specs
//! ([`crate::cdi`]) and, in `aictl`, from NVML.
//!
//! A GPU is a PCI display controller (class 03xx) made by NVIDIA, or any display controller a
//! CDI spec on the host refers to. GPUs are numbered in PCI bus order, which is the order NVML
//! and `nvidia-smi` use by default and therefore the order of `nvidia-ctk cdi generate`'s index
//! names (`nvidia.com/gpu=0`); CUDA's default order may differ (CUDA_DEVICE_ORDER=FASTEST_FIRST).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use hwlocality::object::attributes::ObjectAttributes;
use hwlocality::object::types::ObjectType;
use hwlocality::topology::builder::TypeFilter;
use serde::Serialize;

/// PCI vendor id of NVIDIA.
pub const NVIDIA: u16 = 0x10de;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NumaNode {
    /// The kernel's node number (hwloc's OS index): what `numactl`, `AllowedMemoryNodes=` and
    /// `/sys/devices/system/node/nodeN` use. Not always contiguous (POWER9: 0 and 8).
    pub id: u32,
    /// CPUs (kernel numbering) local to this node.
    pub cpus: Vec<u32>,
    /// Local memory in bytes, when known.
    pub memory: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gpu {
    /// Position in PCI bus order among the host's GPUs.
    pub index: u32,
    /// PCI address, `dddd:bb:dd.f`, lower case.
    pub pci: String,
    pub vendor: u16,
    pub device: u16,
    /// Marketing name, when something told us (hwloc's PCI name database, NVML, the driver).
    pub name: Option<String>,
    /// `GPU-…` UUID, when known (hwloc's NVML OS device, the driver, NVML).
    pub uuid: Option<String>,
    /// NUMA node(s) the GPU is local to. Empty when the firmware reports no locality.
    pub numa: Vec<u32>,
    /// Fully qualified CDI names that give this GPU (and only it) to a container.
    pub cdi: Vec<String>,
    /// Frame buffer size in MiB (NVML).
    pub memory_mib: Option<u64>,
    /// MIG mode (NVML): `Some(true)` when MIG is enabled.
    pub mig: Option<bool>,
}

impl Gpu {
    /// The CDI name placement hands to podman: a UUID name when a spec has one (it survives
    /// renumbering), else the first name found, else nvidia-ctk's default index name.
    pub fn cdi_name(&self) -> Option<String> {
        if let Some(uuid) = self.cdi.iter().find(|c| c.rsplit_once('=').is_some_and(|(_, n)| n.starts_with("GPU-"))) {
            return Some(uuid.clone());
        }
        if let Some(first) = self.cdi.first() {
            return Some(first.clone());
        }
        (self.vendor == NVIDIA).then(|| format!("nvidia.com/gpu={}", self.index))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Topology {
    /// Where it came from: `live` or the XML file's path.
    pub source: String,
    pub nodes: Vec<NumaNode>,
    pub gpus: Vec<Gpu>,
}

/// A PCI device seen by hwloc that may turn out to be a GPU.
#[derive(Clone, Debug)]
struct PciDisplay {
    pci: String,
    vendor: u16,
    device: u16,
    name: Option<String>,
    uuid: Option<String>,
    numa: Vec<u32>,
}

impl Topology {
    /// Reads an hwloc XML export (either format).
    pub fn from_xml(path: &Path) -> Result<Topology, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        // hwloc reports a broken file only as EINVAL; say what we can ourselves.
        if !bytes.windows(9).any(|w| w == b"<topology") {
            return Err(format!("{}: not an hwloc XML topology (no <topology> element)", path.display()));
        }
        let builder = hwlocality::Topology::builder()
            .from_xml_file(path)
            .map_err(|e| format!("{}: hwloc cannot read it: {e}", path.display()))?;
        let topology =
            with_io(builder)?.build().map_err(|e| format!("{}: hwloc cannot load it: {e}", path.display()))?;
        Ok(Self::from_hwloc(&topology, path.display().to_string(), &BTreeSet::new()))
    }

    /// Discovers the live host. `extra_pci` are PCI addresses that count as GPUs whatever
    /// their vendor (the display controllers CDI specs refer to).
    pub fn live(extra_pci: &BTreeSet<String>) -> Result<Topology, String> {
        // hwloc's GPU plugins would load CUDA, NVML or OpenCL (slow, and not for a generator);
        // PCI and the kernel's view are all placement needs. A plugin that is not there is fine.
        // hwloc refuses (EINVAL) names it has no component of, and the builder is consumed by
        // a failed call: each name is tried on a probe builder first.
        let mut builder = hwlocality::Topology::builder();
        for plugin in ["cuda", "nvml", "opencl", "gl", "rsmi", "levelzero"] {
            if hwlocality::Topology::builder().without_component(plugin).is_ok() {
                builder = builder.without_component(plugin).map_err(|e| format!("hwloc: {e}"))?;
            }
        }
        let topology = with_io(builder)?.build().map_err(|e| format!("hwloc cannot discover this host: {e}"))?;
        Ok(Self::from_hwloc(&topology, "live".into(), extra_pci))
    }

    /// Writes the live host's topology as hwloc XML (what `lstopo FILE.xml` writes), for
    /// planning this host from another machine with `--topology-xml`.
    pub fn save_live_xml(path: &Path) -> Result<(), String> {
        let topology = with_io(hwlocality::Topology::builder())?
            .build()
            .map_err(|e| format!("hwloc cannot discover this host: {e}"))?;
        topology
            .export_xml_file(Some(path), hwlocality::topology::export::xml::XMLExportFlags::empty())
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    fn from_hwloc(topology: &hwlocality::Topology, source: String, extra_pci: &BTreeSet<String>) -> Topology {
        let mut nodes: Vec<NumaNode> = topology
            .objects_with_type(ObjectType::NUMANode)
            .map(|node| NumaNode {
                id: node.os_index().unwrap_or(0) as u32,
                cpus: node.cpuset().map(|s| s.iter_set().map(|i| usize::from(i) as u32).collect()).unwrap_or_default(),
                memory: match node.attributes() {
                    Some(ObjectAttributes::NUMANode(a)) => a.local_memory().map(|m| m.get()),
                    _ => None,
                },
            })
            .collect();
        nodes.sort_by_key(|n| n.id);
        let all_nodes: Vec<u32> = nodes.iter().map(|n| n.id).collect();

        let mut displays = Vec::new();
        for dev in topology.objects_with_type(ObjectType::PCIDevice) {
            let Some(ObjectAttributes::PCIDevice(pci)) = dev.attributes() else { continue };
            if pci.class_id() >> 8 != 0x03 {
                continue;
            }
            let address =
                format!("{:04x}:{:02x}:{:02x}.{:x}", pci.domain(), pci.bus_id(), pci.bus_device(), pci.function());
            // Locality: the NUMA nodes under the first ancestor that is not an I/O object. When
            // that is the whole machine on a multi-node host, the firmware gave no locality.
            let numa: Vec<u32> = dev
                .first_non_io_ancestor()
                .and_then(|a| a.nodeset())
                .map(|set| set.iter_set().map(|i| usize::from(i) as u32).collect())
                .unwrap_or_default();
            let numa = if all_nodes.len() > 1 && numa == all_nodes { Vec::new() } else { numa };
            let mut uuid = None;
            let mut name = dev.name().map(|n| n.to_string_lossy().into_owned());
            for os in dev.io_children() {
                if let Some(u) = os.info("NVIDIAUUID") {
                    uuid = Some(u.to_string_lossy().into_owned());
                }
                if let Some(m) = os.info("GPUModel") {
                    name = Some(m.to_string_lossy().into_owned());
                }
            }
            displays.push(PciDisplay {
                pci: address,
                vendor: pci.vendor_id(),
                device: pci.device_id(),
                name,
                uuid,
                numa,
            });
        }
        Self::assemble(source, nodes, displays, extra_pci)
    }

    fn assemble(
        source: String,
        nodes: Vec<NumaNode>,
        mut displays: Vec<PciDisplay>,
        extra_pci: &BTreeSet<String>,
    ) -> Topology {
        displays.retain(|d| d.vendor == NVIDIA || extra_pci.contains(&d.pci));
        // NVIDIA GPUs first, so their indexes are nvidia-smi's whatever else a CDI spec names.
        displays.sort_by(|a, b| (a.vendor != NVIDIA, &a.pci).cmp(&(b.vendor != NVIDIA, &b.pci)));
        let gpus = displays
            .into_iter()
            .enumerate()
            .map(|(i, d)| Gpu {
                index: i as u32,
                pci: d.pci,
                vendor: d.vendor,
                device: d.device,
                name: d.name,
                uuid: d.uuid,
                numa: d.numa,
                cdi: Vec::new(),
                memory_mib: None,
                mig: None,
            })
            .collect();
        Topology { source, nodes, gpus }
    }

    /// Ties CDI device names to the GPUs they give. A `GPU-…` name (nvidia-ctk's UUID names)
    /// also tells the GPU's UUID when nothing else did, as at boot before the driver loads.
    pub fn add_cdi(&mut self, devices: &[crate::cdi::Device]) {
        for d in devices {
            if crate::cdi::is_slice_name(&d.name) {
                continue;
            }
            if let Some(gpu) = self.gpus.iter_mut().find(|g| d.pci.as_ref() == Some(&g.pci)) {
                if !gpu.cdi.contains(&d.name) {
                    gpu.cdi.push(d.name.clone());
                }
                let device = d.name.rsplit_once('=').map_or("", |(_, n)| n);
                if device.starts_with("GPU-") && gpu.uuid.is_none() {
                    gpu.uuid = Some(device.to_string());
                }
            }
        }
    }

    pub fn node(&self, id: u32) -> Option<&NumaNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Fills in what the NVIDIA kernel driver says: UUIDs and models.
    pub fn add_driver_info(&mut self, driver: &[crate::nvidia::DriverGpu]) {
        for d in driver {
            let Some(gpu) = self.gpus.iter_mut().find(|g| g.pci == d.pci) else { continue };
            if let Some(model) = &d.model {
                gpu.name = Some(model.clone());
            }
            if let Some(uuid) = &d.uuid {
                gpu.uuid = Some(uuid.clone());
            }
        }
    }
}

fn with_io(
    builder: hwlocality::topology::builder::TopologyBuilder,
) -> Result<hwlocality::topology::builder::TopologyBuilder, String> {
    // PCI devices are "important" I/O objects; bridges are kept too so locality walks up
    // through them as hwloc means it to.
    builder.with_io_type_filter(TypeFilter::KeepImportant).map_err(|e| format!("hwloc: {e}"))
}

/// `0-3,8,10-11`: the list syntax of the kernel, `AllowedCPUs=` and `numactl`.
pub fn list(ids: &[u32]) -> String {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}-{end}");
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_use_the_kernels_syntax() {
        assert_eq!(list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(list(&[5]), "5");
        assert_eq!(list(&[]), "");
    }
}
