//! Where a service runs: its GPUs and NUMA nodes, as the agent reports them.
//!
//! From the core library's placement when it has one for the service (its CDI names and NUMA
//! nodes), else what the service file says (`[gpu] devices`) and no NUMA nodes.

use aicontainers::placement::Assignment;
use aicontainers::spec::Service;

/// The GPUs and NUMA nodes of one service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// CDI device names (`nvidia.com/gpu=0`).
    pub gpus: Vec<String>,
    /// NUMA nodes the service is bound to; empty when it is not bound.
    pub numa_nodes: Vec<u32>,
    /// CPUs the service is bound to (`AllowedCPUs=`); empty when it is not bound.
    pub cpus: Vec<u32>,
}

/// The placement of `service`, given what the core library placed (`Loaded::placements`).
pub fn placement(service: &Service, assignment: Option<&Assignment>) -> Placement {
    match assignment {
        Some(a) => Placement { gpus: a.cdi.clone(), numa_nodes: a.nodes.clone(), cpus: a.cpus.clone() },
        None => Placement {
            gpus: service.gpu.as_ref().map(|g| g.devices.iter().map(ToString::to_string).collect()).unwrap_or_default(),
            numa_nodes: Vec::new(),
            cpus: Vec::new(),
        },
    }
}
