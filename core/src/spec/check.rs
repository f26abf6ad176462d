//! Checks of single values: names, image references, ports, volumes, GPUs, durations, sizes.
//! Each returns why a value is refused, as a sentence for a diagnostic.

use crate::doc::Value;

use super::types::GpuSelector;

/// A model's mount point: absolute, normalised, one line, and not a place podman needs.
pub(super) fn check_mount(mount: &str) -> Result<(), String> {
    let bad = !mount.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+@".contains(&b))
        || !mount.starts_with('/')
        || mount == "/"
        || mount.ends_with('/')
        || mount.split('/').skip(1).any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(format!("`{mount}`: expected an absolute path inside the container such as /models/mistral (letters, digits and `/._-+@`; no `..` or trailing `/`)"));
    }
    const SYSTEM: &[&str] =
        &["/proc", "/sys", "/dev", "/etc", "/run", "/tmp", "/usr", "/bin", "/sbin", "/lib", "/lib64"];
    if SYSTEM.contains(&mount) {
        return Err(format!("`{mount}` would hide a directory the container needs; mount models under a directory of their own such as /models"));
    }
    Ok(())
}

/// A service name is a unit name without `.service` (what `systemctl start NAME` takes) and the
/// container's name, so it follows podman's rule for names: `[A-Za-z0-9][A-Za-z0-9_.-]*`.
pub fn check_service_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 200
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` cannot be a service name: start with a letter or digit, then letters, digits, `-`, `_` and `.` (the name becomes the unit {name}.service and the container {name})"
        ))
    }
}

pub(super) fn check_account_name(name: &str) -> Result<(), String> {
    if name == "root" {
        return Err("services run rootless: name an unprivileged account, not root".into());
    }
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b))
        && !name.starts_with(|c: char| c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not a valid account name (lower-case letters, digits, `-` and `_`, at most 32)"))
    }
}

/// An image reference as podman parses it (containers/image `docker/reference`, the
/// distribution grammar): `[DOMAIN[:PORT]/]PATH[:TAG][@DIGEST]`, path components of lower-case
/// letters and digits joined by `.`, `_`, `__` or dashes, a tag of at most 128 word characters,
/// `.` and `-` (not starting with `.` or `-`), a `sha256:` or `sha512:` digest, at most 255
/// characters of name. Names Quadlet reads as its own `.image` and `.build` units are refused.
pub(super) fn check_image(image: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!("`{image}` is not an image reference: {why} (such as `localhost/llama-server:latest` or `registry.example/org/name@sha256:...`)"))
    };
    if image.ends_with(".image") || image.ends_with(".build") {
        return bad("podman's Quadlet takes a name ending in .image or .build for one of its own units, which services cannot use");
    }
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let ok = match digest.split_once(':') {
            Some(("sha256", hex)) => hex.len() == 64,
            Some(("sha512", hex)) => hex.len() == 128,
            _ => false,
        } && digest.bytes().skip(7).all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return bad("the digest must be sha256: and 64, or sha512: and 128, lower-case hex digits");
        }
    }
    // The tag follows the last `:` after the last `/` (a `:` before it is the registry's port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            && !tag.starts_with(['.', '-']);
        if !ok {
            return bad("a tag is 1 to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`");
        }
    }
    if name.is_empty() || name.len() > 255 {
        return bad("the name must be 1 to 255 characters");
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // The first part is a registry when it looks like a host: a `.`, a `:` or `localhost`.
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let domain = parts.remove(0);
        let (host, port) = match domain.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (host, Some(port)),
            _ => (domain, None),
        };
        if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
            return bad("the registry's port must be digits");
        }
        let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            v6.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            host.split('.').all(|label| {
                !label.is_empty()
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
        };
        if !host_ok {
            return bad("the registry is not a host name");
        }
    }
    for part in parts {
        if !path_component(part) {
            return bad(&format!(
                "`{part}` is not a repository path component (lower-case letters and digits, joined by `.`, `_`, `__` or `-`)"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn path_component(part: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = part.as_bytes();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
            return false;
        }
    }
    true
}

pub(super) fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

/// `[[IP:]HOSTPORT:]CONTAINERPORT[/PROTO]`, as podman parses `--publish` (Quadlet's
/// `PublishPort=`; podman's `specgenutil.CreatePortBindings`): an IPv6 address in brackets,
/// ports 1-65535, ranges `START-END` with END above START and a host range as long as the
/// container range, an empty host port (`IP::PORT`) for podman to choose, protocols `tcp`,
/// `udp` and `sctp` (several with commas).
pub(super) fn check_port(spec: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!("`{spec}`: {why} (expected [IP:]HOSTPORT:CONTAINERPORT[/tcp|udp], such as 127.0.0.1:8080:8080)"))
    };
    let (rest, proto) = match spec.split_once('/') {
        Some((rest, proto)) => (rest, Some(proto)),
        None => (spec, None),
    };
    if let Some(proto) = proto {
        let names: Vec<&str> = proto.split(',').collect();
        if names.iter().any(|p| !["tcp", "udp", "sctp"].contains(p)) {
            return bad("the protocol must be tcp, udp or sctp (or several, joined by commas)");
        }
        if (1..names.len()).any(|i| names[..i].contains(&names[i])) {
            return bad("a protocol is named twice");
        }
    }
    // An IPv6 address is written in brackets: [::1]:8080:8080.
    let (ip, ports): (Option<&str>, Vec<&str>) = if let Some(stripped) = rest.strip_prefix('[') {
        match stripped.split_once("]:") {
            Some((ip, ports)) if !ip.contains(']') => match ports.split(':').collect::<Vec<_>>() {
                p if p.len() == 2 => (Some(ip), p),
                _ => return bad("with an IPv6 address, write [ADDR]:HOSTPORT:CONTAINERPORT"),
            },
            _ => return bad("an IPv6 address must be written as [ADDR]:HOSTPORT:CONTAINERPORT"),
        }
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (None, parts),
            3 => (Some(parts[0]), parts[1..].to_vec()),
            _ => return bad("too many `:` (an IPv6 address goes in brackets)"),
        }
    };
    if let Some(ip) = ip {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return bad(&format!("`{ip}` is not an IP address"));
        }
    }
    let range = |part: &str| -> Result<u32, String> {
        let numbers: Vec<&str> = part.split('-').collect();
        let port = |p: &str| match p.parse::<u16>() {
            Ok(n @ 1..) if p.bytes().all(|b| b.is_ascii_digit()) => Ok(u32::from(n)),
            _ => Err(format!("`{part}` is not a port number (1-65535) or range")),
        };
        match numbers.as_slice() {
            [one] => port(one).map(|_| 1),
            [start, end] => {
                let (start, end) = (port(start)?, port(end)?);
                if end <= start {
                    return Err(format!("`{part}`: the end of a range must be above its start"));
                }
                Ok(end - start + 1)
            }
            _ => Err(format!("`{part}` is not a port number (1-65535) or range")),
        }
    };
    let container = ports.last().copied().unwrap_or_default();
    let container_len = match range(container) {
        Ok(n) => n,
        Err(why) => return bad(&why),
    };
    if ports.len() == 2 && !ports[0].is_empty() {
        match range(ports[0]) {
            Ok(n) if n != container_len => {
                return bad(&format!("the host range has {n} ports and the container range {container_len}"))
            }
            Ok(_) => {}
            Err(why) => return bad(&why),
        }
    }
    Ok(())
}

pub(super) fn check_volume(spec: &str) -> Result<(), String> {
    if spec.contains(['\n', '\t']) {
        return Err(format!("{spec:?}: a volume must be on one line, without tabs"));
    }
    let parts: Vec<&str> = spec.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(format!("`{spec}`: expected SOURCE:PATH[:OPTIONS], such as /srv/models:/models:ro"));
    }
    if !parts[1].starts_with('/') {
        return Err(format!("`{spec}`: the path inside the container must be absolute"));
    }
    let source = parts[0];
    if source.starts_with('/') {
        return Ok(());
    }
    if source.ends_with(".volume") || source.ends_with(".image") {
        return Err(format!("`{spec}`: Quadlet `.volume`/`.image` units are not available to services; use a host path or a podman volume name"));
    }
    let named = source.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && source.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !named {
        return Err(format!("`{spec}`: the source must be an absolute host path or a podman volume name (relative paths have no meaning here)"));
    }
    Ok(())
}

/// One entry of `gpu.devices`: an index, a `GPU-` UUID, a PCI address or a CDI name.
pub(super) fn gpu_selector(value: &Value) -> Result<GpuSelector, String> {
    match value {
        Value::Integer(i) if (0..=1023).contains(i) => Ok(GpuSelector::Index(*i as u32)),
        Value::Integer(i) => Err(format!("{i} is not a GPU index (0..=1023)")),
        Value::String(s) if s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty() => s
            .parse::<u32>()
            .ok()
            .filter(|i| *i <= 1023)
            .map(GpuSelector::Index)
            .ok_or_else(|| format!("{s} is not a GPU index (0..=1023)")),
        Value::String(s) if s.starts_with("MIG-") => {
            Err(format!("`{s}` is a MIG slice: name it by its CDI name (such as nvidia.com/gpu=0:1)"))
        }
        Value::String(s) if s.starts_with("GPU-") => {
            if s.len() > 4 && s[4..].chars().all(|c| c.is_ascii_hexdigit() || c == '-' || c == '/') {
                Ok(GpuSelector::Uuid(s.clone()))
            } else {
                Err(format!("`{s}` is not a GPU UUID (GPU- and hex digits, as `nvidia-smi -L` prints)"))
            }
        }
        Value::String(s) if s.contains('=') => check_cdi_name(s).map(|()| GpuSelector::Cdi(s.clone())),
        Value::String(s) => {
            let lower = s.to_ascii_lowercase();
            // `41:00.0` is short for `0000:41:00.0`, as lspci prints it.
            let full = if lower.len() == 7 { format!("0000:{lower}") } else { lower };
            if crate::cdi::is_pci_address(&full) {
                Ok(GpuSelector::Pci(full))
            } else {
                Err(format!(
                    "`{s}` names no GPU: use an index (0), a UUID (GPU-…), a PCI address (0000:41:00.0) or a CDI name (nvidia.com/gpu=0)"
                ))
            }
        }
        other => Err(format!("expected a GPU index, UUID, PCI address or CDI name, found {}", other.type_name())),
    }
}

/// `vendor.com/class=name`: CDI's grammar, the same as for the specs ([`crate::cdi`]).
pub(super) fn check_cdi_name(name: &str) -> Result<(), String> {
    if crate::cdi::valid_qualified_name(name) {
        Ok(())
    } else {
        Err(format!("`{name}` is not a CDI device name (such as `nvidia.com/gpu=0` or `nvidia.com/gpu=all`)"))
    }
}

/// systemd time spans: one or more NUMBER[UNIT], such as `30s`, `1min 30s`, `500ms`; a bare
/// number is seconds. Returns microseconds.
pub fn parse_duration(value: &str) -> Result<u64, String> {
    const UNITS: &[(&str, f64)] = &[
        ("", 1e6),
        ("us", 1.0),
        ("usec", 1.0),
        ("ms", 1e3),
        ("msec", 1e3),
        ("s", 1e6),
        ("sec", 1e6),
        ("second", 1e6),
        ("seconds", 1e6),
        ("m", 60e6),
        ("min", 60e6),
        ("minute", 60e6),
        ("minutes", 60e6),
        ("h", 3600e6),
        ("hr", 3600e6),
        ("hour", 3600e6),
        ("hours", 3600e6),
        ("d", 86400e6),
        ("day", 86400e6),
        ("days", 86400e6),
        ("w", 604800e6),
        ("week", 604800e6),
        ("weeks", 604800e6),
        // systemd's month and year are 30.44 and 365.25 days.
        ("M", 2629800e6),
        ("month", 2629800e6),
        ("months", 2629800e6),
        ("y", 31557600e6),
        ("year", 31557600e6),
        ("years", 31557600e6),
    ];
    let not_a_duration = || format!("`{value}` is not a duration (such as 30s, 5min or 1h 30min)");
    if value.contains(['\n', '\t']) || value != value.trim() {
        return Err(format!("{value:?}: a duration is one line without surrounding spaces"));
    }
    let mut rest = value;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().map_err(|_| not_a_duration())?;
        let after = rest[digits..].trim_start();
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == ' ').unwrap_or(after.len());
        let unit = &after[..unit_len];
        let Some((_, scale)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!("`{value}`: unknown time unit `{unit}` (use us, ms, s, min, h, d, w, M or y)"));
        };
        total += number * scale;
        rest = after[unit_len..].trim_start();
    }
    if total > 1e15 {
        return Err(format!("`{value}` is too long"));
    }
    Ok(total.round() as u64)
}

/// systemd byte sizes as `MemoryMax=` takes them: digits with an optional K, M, G or T
/// (1024-based), at least one byte and below 2^64.
pub(super) fn check_bytes(value: &str) -> Result<(), String> {
    let bad = || Err(format!("`{value}` is not a memory size (such as 512M or 24G)"));
    let (number, scale) = match value.strip_suffix(['K', 'M', 'G', 'T']) {
        Some(n) => (
            n,
            match value.as_bytes()[value.len() - 1] {
                b'K' => 1u64 << 10,
                b'M' => 1 << 20,
                b'G' => 1 << 30,
                _ => 1 << 40,
            },
        ),
        None => (value, 1),
    };
    let well_formed = number.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && number.bytes().filter(|&b| b == b'.').count() <= 1;
    if !well_formed {
        return bad();
    }
    let Ok(x) = number.parse::<f64>() else { return bad() };
    let bytes = x * scale as f64;
    if bytes < 1.0 {
        return Err(format!("`{value}` is less than one byte"));
    }
    if bytes >= 18_446_744_073_709_551_615.0 {
        return Err(format!("`{value}` is too large"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        for ok in [
            "8080",
            "8080:80",
            "127.0.0.1:8080:8080",
            "127.0.0.1::80",
            "[::1]:8080:80/udp",
            "9000-9001:9000-9001",
            "80/tcp,udp",
            "0.0.0.0:80:80",
            "[::1]::80",
        ] {
            assert_eq!(check_port(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "0:80",
            "70000:80",
            "a:b",
            "1.2.3:80:80",
            "80/icmp",
            "1:2:3:4",
            "::1:80:80",
            ":8080:80",
            "80/",
            "80/tcp/udp",
            "80/tcp,tcp",
            "9001-9000:80",
            "9000-9002:9000-9001",
            "+80",
            "[::1]:80",
            "[::1]:1:2:3",
            "8080:",
            "fe80::1%eth0:80:80",
        ] {
            assert!(check_port(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn durations_and_sizes() {
        for (ok, us) in [
            ("30s", 30_000_000),
            ("1min 30s", 90_000_000),
            ("1min30s", 90_000_000),
            ("500ms", 500_000),
            ("2h", 7_200_000_000),
            ("10", 10_000_000),
            ("1.5s", 1_500_000),
            ("5 min", 300_000_000),
            ("1w", 604_800_000_000),
        ] {
            assert_eq!(parse_duration(ok), Ok(us), "{ok}");
        }
        for bad in ["", "s", "5 parsecs", "-1s", "1.2.3s", "inf"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for ok in ["24G", "512M", "1073741824", "1.5G"] {
            assert_eq!(check_bytes(ok), Ok(()), "{ok}");
        }
        for bad in ["", "G", "24GB", "-1G", "lots", "inf", "1e9", ".5G", "1.2.3G", "0.5", "0.0001K", "20000000T"] {
            assert!(check_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(check_service_name("llama-7b").is_ok());
        assert!(check_service_name("../etc").is_err());
        assert!(check_service_name("a b").is_err());
        assert!(check_service_name("a:b").is_err(), "podman refuses : in container names");
        assert!(check_service_name("_x").is_err(), "podman refuses a leading _");
        assert!(check_volume("./models:/m").is_err());
        assert!(check_volume("data.volume:/d").is_err());
        assert!(check_volume("models:/m:ro").is_ok());
        assert!(check_volume("/srv/my models:/models:ro").is_ok());
        assert!(check_volume("/srv/a\nPodmanArgs=--privileged:/x").is_err(), "a newline would add a Quadlet line");
        assert!(parse_duration("\n5s").is_err(), "a newline would add a unit line");
        assert!(check_account_name("root").is_err());
        assert!(check_account_name("aimodels").is_ok());
        assert!(check_cdi_name("nvidia.com/gpu=0").is_ok());
        assert!(check_cdi_name("nvidia.com/gpu=GPU-4f8a1b2c-0000-1111-2222-333344445555").is_ok());
        assert!(check_cdi_name("gpu0").is_err());
    }

    #[test]
    fn image_references_as_podman_reads_them() {
        for ok in [
            "busybox",
            "localhost/llama-server:latest",
            "registry.example:5000/org/name:v1.2-rc_3",
            "quay.io/a/b/c@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "docker.io/library/ubuntu:24.04",
            "a__b/c---d.e_f",
            "[::1]:5000/x",
            "127.0.0.1:5000/models/tiny:q4",
        ] {
            assert_eq!(check_image(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Upper/Case",
            "localhost/x:",
            "localhost/x:-tag",
            "x@sha256:abc",
            "x@md5:0123456789abcdef0123456789abcdef",
            "a//b",
            "a/-b",
            "a/b.",
            "a___b",
            "reg:port/x",
            "-reg.io/x",
            "web.image",
            "localhost/app.build",
            "x y",
            "x\\",
            "docker://busybox",
        ] {
            assert!(check_image(bad).is_err(), "{bad} should be refused");
        }
        let long = format!("localhost/{}", "a".repeat(250));
        assert!(check_image(&long).is_err());
    }

    #[test]
    fn gpu_selectors() {
        let s = |v: &str| gpu_selector(&Value::String(v.into()));
        assert_eq!(gpu_selector(&Value::Integer(3)), Ok(GpuSelector::Index(3)));
        assert_eq!(s("3"), Ok(GpuSelector::Index(3)));
        assert_eq!(
            s("GPU-fc549a0c-02eb-8d42-5960-b2eea948f942"),
            Ok(GpuSelector::Uuid("GPU-fc549a0c-02eb-8d42-5960-b2eea948f942".into()))
        );
        assert_eq!(s("41:00.0"), Ok(GpuSelector::Pci("0000:41:00.0".into())));
        assert_eq!(s("0035:03:00.0"), Ok(GpuSelector::Pci("0035:03:00.0".into())));
        assert_eq!(s("nvidia.com/gpu=all"), Ok(GpuSelector::Cdi("nvidia.com/gpu=all".into())));
        assert!(s("gpu0").is_err_and(|e| e.contains("names no GPU")));
        assert!(s("GPU-zz").is_err());
        assert!(gpu_selector(&Value::Integer(-1)).is_err());
        assert!(gpu_selector(&Value::Boolean(true)).is_err());
    }
}
