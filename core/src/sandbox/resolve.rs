//! Names of `sandbox.egress`, resolved on the host when the service starts: the addresses go
//! into the allow sets and into a hosts file mounted over the container's `/etc/hosts`, so the
//! container reaches them without DNS (its resolver is denied unless an entry allows it).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, ToSocketAddrs};

use super::egress::{Egress, Host};
use super::nft::Allowed;

/// Where the host's resolved hosts files live (`NAME.hosts`, mounted read-only).
pub const HOSTS_DIR: &str = "/run/aicontainers/sandbox";

/// The hosts file of service `name`.
pub fn hosts_path(name: &str) -> String {
    format!("{HOSTS_DIR}/{name}.hosts")
}

/// Each name of the allowlist with the addresses it resolved to.
pub type Pinned = BTreeMap<String, BTreeSet<IpAddr>>;

/// Resolves every name with `lookup` (the system's resolver in [`system_lookup`]) and returns
/// the allowed destinations and the names with their addresses. A name that resolves to nothing
/// is an error: the service would start with less than the sysadmin wrote.
pub fn resolve(
    egress: &[Egress],
    lookup: impl Fn(&str) -> Result<Vec<IpAddr>, String>,
) -> Result<(Vec<Allowed>, Pinned), String> {
    let mut allowed = BTreeSet::new();
    let mut names = Pinned::new();
    for e in egress {
        let addrs = match &e.host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => {
                let addrs = match names.get(name) {
                    Some(known) => known.iter().copied().collect(),
                    None => lookup(name).map_err(|why| format!("{e}: {name} does not resolve: {why}"))?,
                };
                let usable: BTreeSet<IpAddr> =
                    addrs.into_iter().filter(|a| !a.is_unspecified() && !a.is_multicast()).collect();
                if usable.is_empty() {
                    return Err(format!("{e}: {name} resolves to no address a connection can be opened to"));
                }
                names.insert(name.clone(), usable.clone());
                usable.into_iter().collect()
            }
        };
        for addr in addrs {
            allowed.insert(Allowed { addr, proto: e.proto, port: e.port });
        }
    }
    Ok((allowed.into_iter().collect(), names))
}

/// The host's resolver (getaddrinfo through the standard library).
pub fn system_lookup(name: &str) -> Result<Vec<IpAddr>, String> {
    (name, 0u16).to_socket_addrs().map(|a| a.map(|s| s.ip()).collect()).map_err(|e| e.to_string())
}

/// The container's `/etc/hosts`: localhost and every pinned name.
pub fn hosts_file(service: &str, names: &Pinned) -> String {
    let mut out = format!(
        "# Written by aictl sandbox allow for {service}: the names of sandbox.egress, resolved on the host.\n127.0.0.1\tlocalhost\n::1\tlocalhost\n"
    );
    for (name, addrs) in names {
        for a in addrs {
            out.push_str(&format!("{a}\t{name}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Proto;

    #[test]
    fn names_resolve_once_and_pin() {
        let egress: Vec<Egress> = ["llm.internal:8080", "llm.internal:53/udp", "10.0.0.9:443"]
            .iter()
            .map(|e| Egress::parse(e).unwrap())
            .collect();
        let calls = std::cell::Cell::new(0);
        let (allowed, names) = resolve(&egress, |n| {
            calls.set(calls.get() + 1);
            assert_eq!(n, "llm.internal");
            Ok(vec!["10.1.1.1".parse().unwrap(), "fd00::1".parse().unwrap(), "0.0.0.0".parse().unwrap()])
        })
        .unwrap();
        assert_eq!(calls.get(), 1);
        assert_eq!(allowed.len(), 5, "{allowed:?}");
        assert!(allowed.contains(&Allowed { addr: "fd00::1".parse().unwrap(), proto: Proto::Udp, port: 53 }));
        let hosts = hosts_file("coder", &names);
        assert!(hosts.contains("10.1.1.1\tllm.internal\n") && hosts.contains("fd00::1\tllm.internal\n"));
        assert!(!hosts.contains("0.0.0.0"));
    }

    #[test]
    fn unresolvable_names_fail_the_start() {
        let egress = vec![Egress::parse("gone.example:1").unwrap()];
        assert!(resolve(&egress, |_| Err("NXDOMAIN".into())).unwrap_err().contains("does not resolve"));
        assert!(resolve(&egress, |_| Ok(vec!["224.0.0.1".parse().unwrap()])).is_err());
    }
}
