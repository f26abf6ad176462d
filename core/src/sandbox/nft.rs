//! The nftables rulesets that enforce `sandbox.egress`, written as text for `nft -f`.
//!
//! ## Design
//! A rootless container's traffic leaves the host through pasta, which podman runs in the
//! service unit's own cgroup (`NAME.service/...`). Two tables match those sockets in the
//! output hook with `socket cgroupv2 level N`:
//!
//! - `inet aicontainers` (priority filter - 10): the set `sandboxed` of sandboxed units'
//!   cgroup ids (kept by systemd through `NFTSet=cgroup:inet:aicontainers:sandboxed`, and added
//!   by the unit's own `ExecStartPre=`), the map `services` from a unit's cgroup id to its
//!   chain, and per service the sets of allowed `address . protocol . port` and a chain that
//!   logs and marks what they allow and logs and drops everything else. A sandboxed cgroup
//!   with no entry in `services` is dropped.
//! - `inet aicontainers_guard` (priority filter + 10): its own copy of the `sandboxed` set
//!   (systemd fills both) and one rule per level: a packet from a sandboxed cgroup that the
//!   first table did not mark is dropped. Flushing or deleting `inet aicontainers` therefore
//!   denies everything rather than allowing it.
//!
//! The levels 1 to [`LEVELS`] are each tried, so a unit moved to another slice by a drop-in is
//! still matched. Every string that reaches a ruleset passes [`quoted`], which refuses
//! anything but a narrow set of bytes (no `"`, `\`, `;`, `#`, braces, spaces or line breaks),
//! so no value can end a string or start a statement.

use std::fmt::Write as _;
use std::net::IpAddr;

use sha2::{Digest as _, Sha256};

use super::egress::Proto;

/// The table that holds the allow sets.
pub const TABLE: &str = "aicontainers";
/// The table that drops what the first did not allow (see the module's documentation).
pub const GUARD_TABLE: &str = "aicontainers_guard";
/// The set, in both tables, of sandboxed units' cgroup ids.
pub const SET: &str = "sandboxed";
/// The mark bits the first table sets on the packets it allows.
pub const MARK: u32 = 0x00a1_c000;
/// Cgroup levels matched: a unit in `aicontainers-agents.slice` is at level 3.
pub const LEVELS: u32 = 8;
/// Log prefixes: `aicontainers allow NAME ` and `aicontainers deny NAME ` (`-` for a sandboxed
/// cgroup without a service entry).
pub const LOG_ALLOW: &str = "aicontainers allow";
pub const LOG_DENY: &str = "aicontainers deny";
/// The kernel log level of the verdicts: `debug`, below the kernel's default console level (7),
/// so that the kernel never writes them to a console. At `info`, each allowed connection waited
/// for its line to be written to a serial console (about 10 ms at 115200 baud: the VM benchmark
/// measured 11.8 ms against 1.3 ms per connection). journald stores debug messages (its
/// default `MaxLevelStore=debug`), and the agent forwards them with their own priority.
const LOG_LEVEL: &str = "debug";
/// How many denied packets per second one service logs (the rest are dropped unlogged).
const DENY_LOG_RATE: &str = "limit rate 20/second burst 100 packets";

/// The values of `NFTSet=` for a sandboxed unit (systemd.resource-control(5), systemd >= 255).
pub fn nft_set_directive() -> String {
    format!("cgroup:inet:{TABLE}:{SET} cgroup:inet:{GUARD_TABLE}:{SET}")
}

/// A string for a ruleset, in double quotes, or why it cannot be one.
pub fn quoted(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:@/-+= ".contains(&b))
        && !s.starts_with(' ');
    if ok {
        Ok(format!("\"{s}\""))
    } else {
        Err(format!("{s:?} cannot be written into an nftables ruleset"))
    }
}

/// The identifier of a service's chain and sets: a hash, since nftables identifiers do not take
/// every character a service name may hold (`-`), and stay short.
pub fn ident(service: &str) -> String {
    let digest = Sha256::digest(service.as_bytes());
    let mut out = String::with_capacity(16);
    for b in &digest[..8] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The base tables, sets and chains. Applying it again keeps every set's elements (systemd's
/// and the services'): only the fixed chains are flushed and rewritten.
pub fn base_ruleset() -> String {
    let mut r = String::new();
    let _ = writeln!(r, "add table inet {TABLE}");
    let _ = writeln!(r, "add set inet {TABLE} {SET} {{ type cgroupsv2; }}");
    let _ = writeln!(r, "add map inet {TABLE} services {{ type cgroupsv2 : verdict; }}");
    let _ =
        writeln!(r, "add chain inet {TABLE} output {{ type filter hook output priority filter - 10; policy accept; }}");
    let _ = writeln!(r, "flush chain inet {TABLE} output");
    let _ = writeln!(r, "add chain inet {TABLE} deny");
    let _ = writeln!(r, "flush chain inet {TABLE} deny");
    let _ = writeln!(r, "add rule inet {TABLE} deny {DENY_LOG_RATE} log prefix \"{LOG_DENY} - \" level {LOG_LEVEL}");
    let _ = writeln!(r, "add rule inet {TABLE} deny counter drop");
    for level in 1..=LEVELS {
        let _ = writeln!(r, "add chain inet {TABLE} level{level}");
        let _ = writeln!(r, "flush chain inet {TABLE} level{level}");
        let _ = writeln!(r, "add rule inet {TABLE} output socket cgroupv2 level {level} @{SET} goto level{level}");
        // Packets of connections already allowed (and replies on published ports) pass; only
        // new flows meet the allow sets.
        let _ = writeln!(
            r,
            "add rule inet {TABLE} level{level} ct state established,related meta mark set meta mark | {MARK:#010x} accept"
        );
        let _ = writeln!(r, "add rule inet {TABLE} level{level} socket cgroupv2 level {level} vmap @services");
        let _ = writeln!(r, "add rule inet {TABLE} level{level} goto deny");
    }
    let _ = writeln!(r, "add table inet {GUARD_TABLE}");
    let _ = writeln!(r, "add set inet {GUARD_TABLE} {SET} {{ type cgroupsv2; }}");
    let _ = writeln!(
        r,
        "add chain inet {GUARD_TABLE} output {{ type filter hook output priority filter + 10; policy accept; }}"
    );
    let _ = writeln!(r, "flush chain inet {GUARD_TABLE} output");
    for level in 1..=LEVELS {
        let _ = writeln!(
            r,
            "add rule inet {GUARD_TABLE} output socket cgroupv2 level {level} @{SET} meta mark & {MARK:#010x} != {MARK:#010x} counter drop"
        );
    }
    r
}

/// One allowed destination as resolved on the host.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allowed {
    pub addr: IpAddr,
    pub proto: Proto,
    pub port: u16,
}

/// The ruleset that (re)defines one service's allow sets and chain and points its cgroup at
/// them: the base first, then the service, in one transaction (`nft -f` applies a file
/// atomically). `cgroup` is the unit's cgroup path below the cgroup2 root, without a leading
/// `/` (`aicontainers.slice/aicontainers-agents.slice/coder.service`).
pub fn service_ruleset(service: &str, cgroup: &str, allowed: &[Allowed]) -> Result<String, String> {
    if service.len() > super::NAME_MAX {
        return Err(format!("service name `{service}` is longer than {} bytes", super::NAME_MAX));
    }
    let allow_prefix = quoted(&format!("{LOG_ALLOW} {service} "))?;
    let deny_prefix = quoted(&format!("{LOG_DENY} {service} "))?;
    let cgroup = quoted(cgroup.trim_start_matches('/'))?;
    let id = ident(service);
    let comment = quoted(service)?;
    let mut r = base_ruleset();
    r.push_str(&allow_sets_ruleset(service, allowed)?);
    let _ = writeln!(r, "add chain inet {TABLE} svc_{id} {{ comment {comment}; }}");
    let _ = writeln!(r, "flush chain inet {TABLE} svc_{id}");
    for (nfproto, family, set) in [("ipv4", "ip", "a4_"), ("ipv6", "ip6", "a6_")] {
        let _ = writeln!(
            r,
            "add rule inet {TABLE} svc_{id} meta nfproto {nfproto} {family} daddr . meta l4proto . th dport @{set}{id} counter log prefix {allow_prefix} level {LOG_LEVEL} meta mark set meta mark | {MARK:#010x} accept"
        );
    }
    let _ = writeln!(r, "add rule inet {TABLE} svc_{id} {DENY_LOG_RATE} log prefix {deny_prefix} level {LOG_LEVEL}");
    let _ = writeln!(r, "add rule inet {TABLE} svc_{id} counter drop");
    let _ = writeln!(r, "add element inet {TABLE} services {{ {cgroup} : goto svc_{id} }}");
    // systemd adds the same cgroup id through NFTSet= (and ignores failures): both tables
    // must hold it before podman runs.
    let _ = writeln!(r, "add element inet {TABLE} {SET} {{ {cgroup} }}");
    let _ = writeln!(r, "add element inet {GUARD_TABLE} {SET} {{ {cgroup} }}");
    Ok(r)
}

/// What replaces the elements of one service's allow sets (creating the sets if need be), in
/// one transaction: the keeper's update when a name resolves to other addresses. It fails,
/// changing nothing, when the table is gone (the keeper then puts everything back).
pub fn allow_sets_ruleset(service: &str, allowed: &[Allowed]) -> Result<String, String> {
    let id = ident(service);
    let comment = quoted(service)?;
    let mut r = String::new();
    let (v4, v6): (Vec<&Allowed>, Vec<&Allowed>) = allowed.iter().partition(|a| a.addr.is_ipv4());
    for (set, addr_type, list) in [("a4_", "ipv4_addr", &v4), ("a6_", "ipv6_addr", &v6)] {
        let _ = writeln!(
            r,
            "add set inet {TABLE} {set}{id} {{ type {addr_type} . inet_proto . inet_service; comment {comment}; }}"
        );
        let _ = writeln!(r, "flush set inet {TABLE} {set}{id}");
        if !list.is_empty() {
            let elements: Vec<String> =
                list.iter().map(|a| format!("{} . {} . {}", a.addr, a.proto.name(), a.port)).collect();
            let _ = writeln!(r, "add element inet {TABLE} {set}{id} {{ {} }}", elements.join(", "));
        }
    }
    Ok(r)
}

/// What takes a stopped unit's cgroup out of the map (`destroy` does not fail on what is
/// already gone; nft >= 1.0.8). The cgroup stays in the `sandboxed` sets, so anything of it
/// still alive is denied; systemd removes it from them when the cgroup goes
/// (`NFTSet=`: the element is the cgroup id, the one `ExecStartPre=` added too).
pub fn forget_ruleset(cgroup: &str) -> Result<String, String> {
    let cgroup = quoted(cgroup.trim_start_matches('/'))?;
    Ok(format!("destroy element inet {TABLE} services {{ {cgroup} }}\n"))
}

/// The unit's cgroup, from `/proc/self/cgroup` of a process it runs: `0::/PATH`, with a
/// trailing `/.control` (where systemd runs a delegated unit's `ExecStartPre=`) taken off.
pub fn unit_cgroup(proc_self_cgroup: &str) -> Result<String, String> {
    let path = proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("no cgroup v2 entry in /proc/self/cgroup (the sandbox needs the unified hierarchy)")?;
    let path = path.strip_suffix("/.control").unwrap_or(path);
    let path = path.trim_start_matches('/');
    if !path.ends_with(".service") {
        return Err(format!("`{path}` is not a service's cgroup: run this from a unit's ExecStartPre="));
    }
    quoted(path)?;
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(addr: &str, proto: Proto, port: u16) -> Allowed {
        Allowed { addr: addr.parse().unwrap(), proto, port }
    }

    #[test]
    fn service_ruleset_shape() {
        let r = service_ruleset(
            "coder",
            "/aicontainers.slice/aicontainers-agents.slice/coder.service",
            &[a("10.20.0.5", Proto::Tcp, 443), a("fd00::7", Proto::Udp, 53), a("10.0.0.1", Proto::Udp, 53)],
        )
        .unwrap();
        let id = ident("coder");
        assert!(
            r.contains(&format!(
                "add element inet aicontainers a4_{id} {{ 10.20.0.5 . tcp . 443, 10.0.0.1 . udp . 53 }}"
            )),
            "{r}"
        );
        assert!(r.contains(&format!("add element inet aicontainers a6_{id} {{ fd00::7 . udp . 53 }}")), "{r}");
        assert!(r.contains(&format!(
            "add element inet aicontainers services {{ \"aicontainers.slice/aicontainers-agents.slice/coder.service\" : goto svc_{id} }}"
        )));
        assert!(r.contains("log prefix \"aicontainers deny coder \""));
        // Every line is one statement: nothing a value holds can add another.
        for line in r.lines() {
            assert!(line.starts_with("add ") || line.starts_with("flush "), "{line}");
        }
    }

    #[test]
    fn empty_allow_list_still_denies() {
        let r = service_ruleset("x", "system.slice/x.service", &[]).unwrap();
        assert!(!r.contains("add element inet aicontainers a4_"));
        assert!(r.contains(&format!("add rule inet aicontainers svc_{} counter drop", ident("x"))));
    }

    #[test]
    fn hostile_strings_never_reach_a_ruleset() {
        for bad in [
            "a\"; flush ruleset; \"",
            "a\nflush ruleset",
            "a\\",
            "a#b",
            "a{b}",
            "a;b",
            "",
            "\u{0}",
            "é",
            " leading",
            &"a".repeat(300),
        ] {
            assert!(quoted(bad).is_err(), "{bad:?}");
            assert!(service_ruleset("svc", bad, &[]).is_err(), "{bad:?}");
        }
        assert!(service_ruleset(&"n".repeat(65), "system.slice/x.service", &[]).is_err());
        assert!(service_ruleset("a\"b", "system.slice/x.service", &[]).is_err());
        assert!(forget_ruleset("x\"; flush ruleset").is_err());
    }

    #[test]
    fn cgroup_of_a_unit() {
        assert_eq!(
            unit_cgroup("0::/aicontainers.slice/aicontainers-agents.slice/coder.service/.control\n").unwrap(),
            "aicontainers.slice/aicontainers-agents.slice/coder.service"
        );
        assert_eq!(unit_cgroup("0::/system.slice/x.service\n").unwrap(), "system.slice/x.service");
        assert!(unit_cgroup("0::/user.slice/user-0.slice/session-1.scope\n").is_err());
        assert!(unit_cgroup("1:name=systemd:/x.service\n").is_err());
        assert!(unit_cgroup("0::/a\"b.service\n").is_err());
    }

    #[test]
    fn identifiers_are_stable_and_distinct() {
        assert_eq!(ident("coder"), ident("coder"));
        assert_ne!(ident("a-b"), ident("a_b"));
        assert_eq!(ident("coder").len(), 16);
        assert!(ident("x").bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
