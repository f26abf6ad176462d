//! A registry's or server's authority, `HOST[:PORT]`: split, checked, and whether it is this
//! machine. Below every other part of the model cache (sources, HTTP, the registry client).

/// Splits `HOST[:PORT]` (HOST may be `[IPv6]`); a port must be 1–65535.
pub(crate) fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(|| format!("`{authority}`: `[` without `]`"))?;
        (
            format!("[{inside}]"),
            after.strip_prefix(':').map(str::to_owned).or_else(|| (!after.is_empty()).then(|| after.to_owned())),
        )
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p.to_owned())),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(format!("`{authority}` names no host"));
    }
    let port = match port {
        None => None,
        Some(p) => {
            let n = (!p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u32>().ok())
                .flatten()
                .filter(|n| (1..=65535).contains(n))
                .ok_or_else(|| format!("`{authority}`: the port must be a number from 1 to 65535"))?;
            Some(n as u16)
        }
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// Whether a registry (`HOST[:PORT]`) is on this machine: those are reached over plain HTTP.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.split(':').next().unwrap_or("")
    };
    host == "localhost" || host == "::1" || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example:5000"));
    }
}
