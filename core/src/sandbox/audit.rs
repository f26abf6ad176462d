//! Verdicts of the sandbox's nftables rules: the kernel's log lines (`log prefix "aicontainers
//! deny NAME "`, [`super::nft`]) parsed into structured verdicts, which the node agent re-emits
//! as journal entries with `SERVICE=`, `DEST=`, `PORT=`, `PROTO=` and `SANDBOX_VERDICT=`
//! (docs/sandbox.md, "Audit").
//!
//! A line is parsed strictly: it is refused, not guessed at, unless it starts with one of our
//! two prefixes, names a valid service, and carries exactly one `DST=` (an address), one
//! `PROTO=` (a protocol the kernel names, or a number) and, for TCP and UDP, one `DPT=` (a
//! port). Most of a packet's header is chosen by whoever sends it, and the kernel prints it; the
//! values we keep are parsed into addresses and numbers, never passed on as text. The part of
//! an ICMP error that quotes the offending packet (`[SRC=... DST=...]`) is not read.

use std::fmt;
use std::net::IpAddr;

use super::nft::{LOG_ALLOW, LOG_DENY};

/// `MESSAGE_ID=` of every verdict entry the agent writes (a fixed random 128-bit id, as
/// sd-id128(3) describes: `journalctl MESSAGE_ID=...` finds them all).
pub const MESSAGE_ID: &str = "c825ed94daed4d9297e6d519e3fd6f72";

/// The longest kernel line read (the kernel's own lines are at most about 1 KiB).
pub const LINE_MAX: usize = 2048;

/// Whether the rules let the flow through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Allowed,
    Denied,
}

impl Verdict {
    /// As `SANDBOX_VERDICT=` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
        }
    }

    pub fn from_name(s: &str) -> Option<Verdict> {
        match s {
            "allowed" => Some(Verdict::Allowed),
            "denied" => Some(Verdict::Denied),
            _ => None,
        }
    }
}

/// One verdict, as read from a kernel line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The sandboxed service; `None` for a sandboxed cgroup that had no allow set (`deny -`).
    pub service: Option<String>,
    pub verdict: Verdict,
    /// Lower case: `tcp`, `udp`, `icmp`, `icmpv6`, another name the kernel prints, or the
    /// protocol number.
    pub proto: String,
    pub dest: IpAddr,
    /// The destination port (TCP, UDP and the other protocols the kernel prints one for).
    pub port: Option<u16>,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let service = self.service.as_deref().unwrap_or("a sandboxed cgroup without an allow set");
        let dest = match self.dest {
            IpAddr::V6(a) => format!("[{a}]"),
            IpAddr::V4(a) => a.to_string(),
        };
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        write!(f, "sandbox: {service}: {} {dest}{port}/{}", self.verdict.name(), self.proto)
    }
}

/// Protocol names nf_log prints after `PROTO=` (and that it prints a `DPT=` for).
const NAMED_PROTOS: [(&str, bool); 7] = [
    ("TCP", true),
    ("UDP", true),
    ("UDPLITE", true),
    ("SCTP", true),
    ("DCCP", true),
    ("ICMP", false),
    ("ICMPv6", false),
];

/// Parses one kernel log line of the sandbox's rules (the journal's `MESSAGE=` of a kernel
/// entry, without the `kernel:` tag); `Err` says why a line that is not one is refused.
pub fn parse_kernel_line(line: &str) -> Result<Attempt, String> {
    if line.len() > LINE_MAX {
        return Err(format!("longer than {LINE_MAX} bytes"));
    }
    if let Some(b) = line.bytes().find(|b| !(b' '..=b'~').contains(b)) {
        return Err(format!("holds the byte {b:#04x}"));
    }
    let (verdict, rest) = if let Some(rest) = line.strip_prefix(LOG_ALLOW).and_then(|r| r.strip_prefix(' ')) {
        (Verdict::Allowed, rest)
    } else if let Some(rest) = line.strip_prefix(LOG_DENY).and_then(|r| r.strip_prefix(' ')) {
        (Verdict::Denied, rest)
    } else {
        return Err("not a sandbox verdict (no `aicontainers allow|deny` prefix)".into());
    };
    let (name, fields) = rest.split_once(' ').ok_or("no fields after the service name")?;
    let service = match name {
        "-" if verdict == Verdict::Denied => None,
        _ => {
            crate::spec::check_service_name(name)?;
            if name.len() > super::NAME_MAX {
                return Err(format!("service name longer than {} bytes", super::NAME_MAX));
            }
            Some(name.to_owned())
        }
    };
    let (mut dest, mut proto, mut port) = (None, None, None);
    for token in fields.trim_end_matches(' ').split(' ') {
        if token.is_empty() {
            return Err("two spaces in a row".into());
        }
        // The quoted packet of an ICMP error comes last; its fields are not this packet's.
        if token.starts_with('[') {
            break;
        }
        let Some((key, value)) = token.split_once('=') else { continue };
        let slot = match key {
            "DST" => &mut dest,
            "PROTO" => &mut proto,
            "DPT" => &mut port,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(format!("{key}= twice"));
        }
    }
    let dest: IpAddr = dest.ok_or("no DST=")?.parse().map_err(|_| "DST= is not an address")?;
    let proto = proto.ok_or("no PROTO=")?;
    let (proto, needs_port) = match NAMED_PROTOS.iter().find(|(n, _)| *n == proto) {
        Some((n, needs)) => (n.to_ascii_lowercase(), *needs),
        None => match proto.parse::<u8>() {
            Ok(n) if proto == n.to_string() => (n.to_string(), false),
            _ => return Err(format!("PROTO={proto} is neither a protocol name nor a number")),
        },
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|n| p == n.to_string()).ok_or("DPT= is not a port")?),
        None if needs_port => return Err(format!("no DPT= for {proto}")),
        None => None,
    };
    Ok(Attempt { service, verdict, proto, dest, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V6: &str = "aicontainers deny coder IN= OUT=sbx0 SRC=fd09:0000:0000:0000:0000:0000:0000:0001 DST=fd09:0000:0000:0000:0000:0000:0000:0002 LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=1 PROTO=TCP SPT=56044 DPT=80 WINDOW=64800 RES=0x00 SYN URGP=0 ";

    #[test]
    fn kernel_lines() {
        let a = parse_kernel_line(V6).unwrap();
        assert_eq!(
            a,
            Attempt {
                service: Some("coder".into()),
                verdict: Verdict::Denied,
                proto: "tcp".into(),
                dest: "fd09::2".parse().unwrap(),
                port: Some(80)
            }
        );
        assert_eq!(a.to_string(), "sandbox: coder: denied [fd09::2]:80/tcp");
        let udp = "aicontainers allow web.1 IN= OUT=sbx0 SRC=10.9.0.1 DST=10.9.0.2 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=UDP SPT=1 DPT=53 LEN=40";
        let a = parse_kernel_line(udp).unwrap();
        assert_eq!((a.verdict, a.proto.as_str(), a.port), (Verdict::Allowed, "udp", Some(53)));
        let icmp = "aicontainers deny coder IN= OUT=sbx0 SRC=10.9.0.1 DST=10.9.0.2 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=7 DF PROTO=ICMP TYPE=8 CODE=0 ID=2 SEQ=1";
        let a = parse_kernel_line(icmp).unwrap();
        assert_eq!((a.proto.as_str(), a.port), ("icmp", None));
        let orphan = "aicontainers deny - IN= OUT=eth0 SRC=10.0.2.15 DST=1.1.1.1 LEN=60 PROTO=47";
        let a = parse_kernel_line(orphan).unwrap();
        assert_eq!((a.service, a.proto.as_str()), (None, "47"));
        // An ICMP error quotes the packet it answers: the outer fields count, not the quoted ones.
        let err = "aicontainers deny coder IN= OUT=sbx0 SRC=10.9.0.1 DST=10.9.0.2 LEN=88 PROTO=ICMP TYPE=3 CODE=3 [SRC=10.9.0.2 DST=10.9.0.1 LEN=60 PROTO=UDP SPT=53 DPT=4000 ] ";
        let a = parse_kernel_line(err).unwrap();
        assert_eq!((a.dest.to_string(), a.proto.as_str(), a.port), ("10.9.0.2".to_owned(), "icmp", None));
    }

    #[test]
    fn hostile_lines_are_refused() {
        let base = "IN= OUT=sbx0 SRC=10.9.0.1 DST=10.9.0.2 LEN=60 PROTO=TCP SPT=1 DPT=80";
        let refused = [
            // not ours, or another spelling of ours
            format!("aicontainers allowed coder {base}"),
            format!("xaicontainers deny coder {base}"),
            format!(" aicontainers deny coder {base}"),
            format!("aicontainers  deny coder {base}"),
            format!("AICONTAINERS DENY coder {base}"),
            "aicontainers deny coder".into(),
            // names that are not service names, or `-` on an allow
            format!("aicontainers deny ../etc {base}"),
            format!("aicontainers deny -x {base}"),
            format!("aicontainers allow - {base}"),
            format!("aicontainers deny {} {base}", "a".repeat(65)),
            format!("aicontainers deny co\u{1b}[2Jder {base}"),
            format!("aicontainers deny coder\nSANDBOX_VERDICT=allowed {base}"),
            format!("aicontainers deny coder {base}\u{0}"),
            format!("aicontainers deny coder {base} \u{e9}"),
            // fields twice, missing, or not what they claim
            format!("aicontainers deny coder {base} DST=1.2.3.4"),
            format!("aicontainers deny coder {base} DPT=443"),
            format!("aicontainers deny coder {base} PROTO=UDP"),
            "aicontainers deny coder IN= PROTO=TCP DPT=80".into(),
            "aicontainers deny coder DST=10.9.0.2 DPT=80".into(),
            "aicontainers deny coder DST=10.9.0.2 PROTO=TCP".into(),
            "aicontainers deny coder DST=10.9.0.2 PROTO=UDP".into(),
            "aicontainers deny coder DST=evil.example PROTO=TCP DPT=80".into(),
            "aicontainers deny coder DST=10.9.0.2/8 PROTO=TCP DPT=80".into(),
            "aicontainers deny coder DST=10.9.0.2 PROTO=TCP DPT=65536".into(),
            "aicontainers deny coder DST=10.9.0.2 PROTO=TCP DPT=+80".into(),
            "aicontainers deny coder DST=10.9.0.2 PROTO=TCP DPT=080".into(),
            "aicontainers deny coder DST=10.9.0.2 PROTO=TCP DPT=".into(),
            "aicontainers deny coder DST=10.9.0.2 PROTO=tcp DPT=80".into(),
            "aicontainers deny coder DST=10.9.0.2 PROTO=256".into(),
            "aicontainers deny coder DST=10.9.0.2 PROTO=017".into(),
            "aicontainers deny coder DST=10.9.0.2  PROTO=TCP DPT=80".into(),
            format!("aicontainers deny coder {}", "X".repeat(LINE_MAX)),
        ];
        for line in &refused {
            assert!(parse_kernel_line(line).is_err(), "accepted {line:?}: {:?}", parse_kernel_line(line));
        }
    }

    #[test]
    fn verdict_names_round_trip() {
        for v in [Verdict::Allowed, Verdict::Denied] {
            assert_eq!(Verdict::from_name(v.name()), Some(v));
        }
        assert_eq!(Verdict::from_name("ALLOWED"), None);
    }
}
