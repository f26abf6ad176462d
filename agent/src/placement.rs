//! Where a service runs: its GPUs and NUMA nodes, as the agent reports them.
//!
//! For now this is what the service file says: the CDI devices of `[gpu] devices`, and no NUMA
//! nodes. When the core library learns GPU/NUMA placement, this is the one function to wire to it.

use aicontainers::spec::Service;

/// The GPUs and NUMA nodes of one service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// CDI device names (`nvidia.com/gpu=0`).
    pub gpus: Vec<String>,
    /// NUMA nodes the service is bound to; empty when it is not bound.
    pub numa_nodes: Vec<u32>,
}

/// The placement of `service`.
pub fn placement(service: &Service) -> Placement {
    Placement { gpus: service.gpu.as_ref().map(|g| g.devices.clone()).unwrap_or_default(), numa_nodes: Vec::new() }
}
