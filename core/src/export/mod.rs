//! Exporting services to other systems' formats, from the same checked [`crate::spec::Service`]
//! the generator renders: Kubernetes manifests ([`kube`]).

pub mod kube;
pub mod yaml;
