//! The typed form of a service: what every layer of its files together describe.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Serialize, Serializer};

use crate::diag::Diagnostic;

/// The only format version this build reads.
pub const FORMAT_VERSION: i64 = 1;

/// Spells an enum of the format in one place: the names files use, which are also what
/// `Serialize` writes, what [`Section::choice`](super::section) offers and what `name()`
/// returns.
macro_rules! spelled {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in the order the format lists them.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The value's name in service files.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.name())
            }
        }
    };
}

/// One `[[model]]`: a model from the cache, mounted read-only (see `crate::models`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Model {
    /// `name`, or the last part of the source.
    pub name: String,
    pub source: crate::models::Source,
    /// Absolute path inside the container.
    pub mount: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    No,
    OnFailure,
    Always,
}

spelled!(Restart { No => "no", OnFailure => "on-failure", Always => "always" });

impl Restart {
    /// The `Restart=` value of systemd.service(5): systemd spells the three the same.
    pub fn as_systemd(self) -> &'static str {
        self.name()
    }
}

/// Kubernetes Topology Manager policies, with their meaning there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumaPolicy {
    None,
    BestEffort,
    Restricted,
    SingleNumaNode,
}

spelled!(NumaPolicy {
    None => "none",
    BestEffort => "best-effort",
    Restricted => "restricted",
    SingleNumaNode => "single-numa-node",
});

/// One GPU named in `gpu.devices`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpuSelector {
    /// `0`: the host's GPU of that index (PCI bus order, as `nvidia-smi` numbers them).
    Index(u32),
    /// `GPU-4f8a…`: by NVIDIA UUID.
    Uuid(String),
    /// `0000:41:00.0`: by PCI address.
    Pci(String),
    /// `nvidia.com/gpu=0`: a CDI device name, handed to podman as it is.
    Cdi(String),
}

impl std::fmt::Display for GpuSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GpuSelector::Index(i) => write!(f, "GPU {i}"),
            GpuSelector::Uuid(s) | GpuSelector::Pci(s) | GpuSelector::Cdi(s) => write!(f, "{s}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gpu {
    /// Explicit GPUs.
    pub devices: Vec<GpuSelector>,
    /// Or a number of GPUs that placement chooses.
    pub count: Option<u32>,
    pub numa: NumaPolicy,
    /// Whether this service may share its GPUs with other services that say the same.
    pub shared: bool,
    /// Where the request is written (`gpu.count` or `gpu.devices`), for placement's messages.
    #[serde(skip)]
    pub at: Diagnostic,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Resources {
    /// systemd byte size (`24G`), applied as `MemoryMax=` on the unit that holds the container.
    pub memory: Option<String>,
    /// CPU time in CPUs (`2.5`), applied as `CPUQuota=`.
    pub cpus: Option<f64>,
    /// Process limit, applied as `TasksMax=`.
    pub pids: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Health {
    pub command: String,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    pub start_period: Option<String>,
}

/// `[sandbox]`: the service runs sandboxed (docs/sandbox.md). Its limits are folded into
/// [`Resources`] when the file is read.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Sandbox {
    /// Where new connections may go; everything else is denied and logged.
    pub egress: Vec<crate::sandbox::Egress>,
}

/// One service, as every layer of its files together describe it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Service {
    /// The unit name without `.service`, taken from the file name.
    pub name: String,
    /// The main file (what `SourcePath=` names).
    pub source: PathBuf,
    /// Drop-ins applied on top of it, in order.
    pub drop_ins: Vec<PathBuf>,
    pub description: Option<String>,
    pub image: String,
    pub command: Vec<String>,
    pub run_as: String,
    pub environment: BTreeMap<String, String>,
    pub ports: Vec<String>,
    pub volumes: Vec<String>,
    pub restart: Restart,
    pub restart_delay: Option<String>,
    pub stop_timeout: Option<String>,
    pub enable: bool,
    pub read_only: bool,
    pub init: bool,
    pub gpu: Option<Gpu>,
    pub resources: Resources,
    pub health: Option<Health>,
    /// `[[model]]` entries, in file order.
    pub models: Vec<Model>,
    /// `[sandbox]`, when the service runs sandboxed.
    pub sandbox: Option<Sandbox>,
}
