//! One entry of `sandbox.egress`: where a sandboxed service may open connections.
//!
//! `HOST:PORT[/tcp|/udp]`, HOST an IPv4 address, an IPv6 address in brackets, or a DNS name that
//! the host resolves when the service starts. Everything refused here would otherwise reach a
//! unit line, an nftables ruleset, a hosts file or the resolver: the grammar is deliberately
//! narrow (no zone ids, no `inet_aton` forms such as `0x7f.1` or `2130706433`, no wildcards).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize, Serializer};

/// The longest entry accepted: a 253-byte name, `:65535` and `/udp`.
pub const ENTRY_MAX: usize = 263;
/// The most entries one service may list.
pub const ENTRIES_MAX: usize = 256;

/// The transport of an allowed destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// As nftables' `meta l4proto` and the entries spell it.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// Where an entry points.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Host {
    Ip(IpAddr),
    /// A DNS name, lower-cased, without a trailing dot.
    Name(String),
}

/// One allowed destination.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Egress {
    pub host: Host,
    pub port: u16,
    pub proto: Proto,
}

impl fmt::Display for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]")?,
            Host::Ip(IpAddr::V4(a)) => write!(f, "{a}")?,
            Host::Name(n) => write!(f, "{n}")?,
        }
        write!(f, ":{}", self.port)?;
        if self.proto == Proto::Udp {
            f.write_str("/udp")?;
        }
        Ok(())
    }
}

impl Serialize for Egress {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl Egress {
    /// Parses one entry, or says why it is refused.
    pub fn parse(entry: &str) -> Result<Egress, String> {
        let bad = |why: &str| {
            Err(format!(
                "{}: {why} (expected HOST:PORT[/udp], such as llm.internal:8080, 10.20.0.5:443, [fd00::7]:443 or dns.example:53/udp)",
                shown(entry)
            ))
        };
        if entry.len() > ENTRY_MAX {
            return bad(&format!("longer than {ENTRY_MAX} bytes"));
        }
        if !entry.bytes().all(|b| b.is_ascii_graphic()) {
            return bad("only printable ASCII without spaces is allowed");
        }
        let (rest, proto) = match entry.rsplit_once('/') {
            Some((rest, "tcp")) => (rest, Proto::Tcp),
            Some((rest, "udp")) => (rest, Proto::Udp),
            Some(_) => return bad("the protocol after `/` must be tcp or udp"),
            None => (entry, Proto::Tcp),
        };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let Some((addr, port)) = v6.split_once("]:") else {
                return bad("an IPv6 address is written in brackets, followed by :PORT");
            };
            if addr.contains('%') {
                return bad("IPv6 zone ids (%eth0) are not supported: name a global or unique-local address");
            }
            let Ok(a) = addr.parse::<Ipv6Addr>() else {
                return bad(&format!("`{addr}` is not an IPv6 address"));
            };
            if a.to_ipv4_mapped().is_some() {
                return bad("an IPv4-mapped IPv6 address: write the IPv4 address itself");
            }
            (Host::Ip(IpAddr::V6(a)), port)
        } else {
            let Some((host, port)) = rest.rsplit_once(':') else {
                return bad("the port is missing");
            };
            if host.contains(':') {
                return bad("an IPv6 address goes in brackets: [fd00::7]:443");
            }
            match parse_host(host) {
                Ok(h) => (h, port),
                Err(why) => return bad(&why),
            }
        };
        let port = match port.parse::<u16>() {
            Ok(p @ 1..) if port.bytes().all(|b| b.is_ascii_digit()) && !port.starts_with('0') => p,
            _ => return bad(&format!("`{port}` is not a port number (1-65535)")),
        };
        if let Host::Ip(ip) = &host {
            if ip.is_unspecified() || ip.is_multicast() || *ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
                return bad(&format!("{ip} is not a destination a connection can be opened to"));
            }
        }
        Ok(Egress { host, port, proto })
    }
}

/// An IPv4 address in its dotted-quad form, or a DNS name.
fn parse_host(host: &str) -> Result<Host, String> {
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    // Anything that looks numeric must be a plain dotted quad: the resolver would read `10.1`,
    // `0x0a.0.0.1` or `167772161` as addresses too, differently from what a reader sees.
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    let last = trimmed.rsplit('.').next().unwrap_or(trimmed);
    let numeric = last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x") || last.starts_with("0X");
    if numeric {
        return match host.parse::<Ipv4Addr>() {
            Ok(a) => Ok(Host::Ip(IpAddr::V4(a))),
            Err(_) => Err(format!("`{host}` is not an IPv4 address (four decimal numbers 0-255, no leading zeros)")),
        };
    }
    let name = trimmed.to_ascii_lowercase();
    let labels_ok = name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !labels_ok {
        return Err(format!(
            "`{host}` is not a host name (labels of letters, digits and `-`, 1-63 each, at most 253 in all)"
        ));
    }
    Ok(Host::Name(name))
}

fn shown(value: &str) -> String {
    const MAX: usize = 80;
    match value.char_indices().nth(MAX) {
        Some((at, _)) => format!("{:?}... ({} bytes)", &value[..at], value.len()),
        None => format!("`{value}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let e = Egress::parse("llm.internal:8080").unwrap();
        assert_eq!(e, Egress { host: Host::Name("llm.internal".into()), port: 8080, proto: Proto::Tcp });
        let e = Egress::parse("DNS.Example.:53/udp").unwrap();
        assert_eq!(e, Egress { host: Host::Name("dns.example".into()), port: 53, proto: Proto::Udp });
        let e = Egress::parse("10.20.0.5:443/tcp").unwrap();
        assert_eq!(e.host, Host::Ip("10.20.0.5".parse().unwrap()));
        let e = Egress::parse("[fd00::7]:443").unwrap();
        assert_eq!(e.host, Host::Ip("fd00::7".parse().unwrap()));
        assert_eq!(e.to_string(), "[fd00::7]:443");
        assert_eq!(Egress::parse("1.2.3.4:53/udp").unwrap().to_string(), "1.2.3.4:53/udp");
        assert!(Egress::parse("localhost:1").is_ok());
        let longest = vec!["a".repeat(63); 4].join(".")[..253].to_owned();
        assert!(Egress::parse(&format!("{longest}:65535/udp")).is_ok());
    }

    #[test]
    fn hostile_entries_are_refused() {
        for bad in [
            "",
            ":80",
            "host",
            "host:",
            "host:0",
            "host:65536",
            "host:+80",
            "host:080",
            "host: 80",
            "host:80/icmp",
            "host:80/TCP",
            "host:80/",
            "host:80/udp/udp",
            "ho st:80",
            "host\n:80",
            "host:80\nExecStart=/bin/sh",
            "host;rm:80",
            "\"host\":80",
            "host\\:80",
            "h\u{e9}st:80",
            "host%:80",
            "*.example:443",
            "-host:80",
            "host-:80",
            "a..b:80",
            ".:80",
            "fd00::7:443",
            "[fd00::7]443",
            "[fd00::7:443",
            "[fe80::1%eth0]:443",
            "[fe80::1%25eth0]:443",
            "[::]:443",
            "[ff02::1]:443",
            "[::ffff:10.0.0.1]:443",
            "[10.0.0.1]:443",
            "0.0.0.0:80",
            "255.255.255.255:80",
            "224.0.0.1:80",
            "10.1:80",
            "0x7f.0.0.1:80",
            "2130706433:80",
            "010.0.0.1:80",
            "1.2.3.4.5:80",
            "256.1.1.1:80",
            "example.123:80",
            "${HOST}:80",
            "%h:80",
            "host:80 } ; flush ruleset ; {",
        ] {
            assert!(Egress::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long = format!("{}.example:443", "a".repeat(63) + &".b".repeat(100));
        assert!(Egress::parse(&long).is_err());
        let huge = format!("{}:443", "a".repeat(100_000));
        let why = Egress::parse(&huge).unwrap_err();
        assert!(why.len() < 400, "the message quotes a long value cut short: {why}");
    }
}
