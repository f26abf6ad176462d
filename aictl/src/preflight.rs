//! `aictl preflight`: the checks of `aicontainers::preflight`, for people (`aictl preflight
//! [NAME...] [--json] [--root DIR]`) and for units (`--unit-mode`, run by each GPU unit's
//! `ExecStartPre=` before podman).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aicontainers::preflight::record::{self, Record};
use aicontainers::preflight::{self, Finding, Host, Request, Status};
use aicontainers::render::PodmanVersion;
use aicontainers::source::{self, SYSTEM_DIRS};
use clap::Args;

#[derive(Args, Debug)]
pub struct PreflightArgs {
    /// Services to check (default: every service).
    names: Vec<String>,
    /// Print `{"checks": [{"service", "id", "status", "message", "fix"}]}` (stable; see
    /// aicontainers-preflight(7)).
    #[arg(long)]
    json: bool,
    /// Read every host path under DIR instead of `/` (a copy of another host's files).
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Keep each service's problems in /run/aicontainers-preflight/NAME.json, where the agent
    /// shows them (what aicontainers-preflight.service runs); records of services that are gone
    /// are removed.
    #[arg(long, conflicts_with = "unit_mode")]
    record: bool,
    /// What a unit runs before podman: check one service whose request is given by the
    /// options below; problems go to the journal (CHECK_ID=, SERVICE=) and the exit status.
    #[arg(long, hide = true, requires = "run_as")]
    unit_mode: bool,
    #[arg(long, hide = true, value_name = "ACCOUNT")]
    run_as: Option<String>,
    #[arg(long, hide = true, value_name = "CDI-NAME")]
    cdi: Vec<String>,
    #[arg(long, hide = true, value_name = "PCI")]
    gpu: Vec<String>,
    #[arg(long, hide = true)]
    numa: bool,
    #[arg(long, hide = true, value_name = "X.Y.Z")]
    podman: Option<String>,
}

pub fn run(args: PreflightArgs) -> Result<ExitCode, String> {
    let host = Host::new(&args.root);
    if args.unit_mode {
        return unit_mode(&host, &args);
    }
    let findings = check_services(&host, &args.names)?;
    if args.record {
        keep_records(&host, &findings, args.names.is_empty());
    }
    if args.json {
        let doc = serde_json::json!({ "checks": findings });
        out!("{}", serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?);
    } else {
        print_human(&findings);
    }
    Ok(if preflight::has_error(&findings) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The names the command line gives must be safe to have come from a unit file.
fn checked_request(args: &PreflightArgs) -> Result<Request, String> {
    let [service] = args.names.as_slice() else {
        return Err("preflight --unit-mode: name exactly one service".into());
    };
    for name in &args.cdi {
        let ok = name
            .split_once('=')
            .is_some_and(|(k, d)| aicontainers::cdi::valid_kind(k) && aicontainers::cdi::valid_device_name(d));
        if !ok {
            return Err(format!("preflight: `{name}` is not a CDI device name (vendor.com/class=name)"));
        }
    }
    let podman = match &args.podman {
        Some(v) => Some(PodmanVersion::parse(v).ok_or_else(|| format!("preflight: `{v}` is not a podman version"))?),
        None => None,
    };
    Ok(Request {
        service: service.clone(),
        account: args.run_as.clone().unwrap_or_default(),
        cdi: args.cdi.clone(),
        gpus: args.gpu.clone(),
        numa: args.numa,
        podman,
    })
}

/// Runs the checks of one unit; every warning and error goes to the journal with its fields
/// (and `systemctl status NAME` shows it), and any error fails the start.
fn unit_mode(host: &Host, args: &PreflightArgs) -> Result<ExitCode, String> {
    let request = checked_request(args)?;
    let findings = preflight::run(host, &request);
    // What the agent shows as the service's preflight problems; the start does not depend on it.
    if let Err(e) = record::write(host, &Record::of(&request.service, &findings)) {
        let _ = writeln!(std::io::stderr(), "<4>preflight: cannot keep the outcome for the agent: {e}");
    }
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let mut problems = 0;
    for f in findings.iter().filter(|f| matches!(f.status, Status::Error | Status::Warning)) {
        problems += 1;
        let text = one_line(f);
        if !(journal && journal_send(f, &text, &request.service)) {
            // `<3>`/`<4>`: journald files a stderr line at that priority.
            let prio = if journal {
                if f.status == Status::Error {
                    "<3>"
                } else {
                    "<4>"
                }
            } else {
                ""
            };
            let _ = writeln!(std::io::stderr(), "{prio}{text}");
        }
    }
    if problems == 0 {
        out!("preflight: {} checks, no problem", findings.len());
    }
    Ok(if preflight::has_error(&findings) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Writes the record of every service in `findings`; with `all`, removes the records of the
/// services that were not checked (gone, or their files invalid).
fn keep_records(host: &Host, findings: &[Finding], all: bool) {
    let mut services: Vec<String> = findings.iter().map(|f| f.service.clone()).collect();
    services.dedup();
    for service in &services {
        let mine: Vec<Finding> = findings.iter().filter(|f| &f.service == service).cloned().collect();
        if let Err(e) = record::write(host, &Record::of(service, &mine)) {
            eprintln!("aictl: preflight: cannot write {}: {e}", record::path(host, service).display());
        }
    }
    if all {
        for gone in record::prune(host, &services) {
            eprintln!("aictl: preflight: removed the record of {gone} (no such valid service)");
        }
    }
}

/// `preflight: ID: MESSAGE; fix: FIX` on one line (systemctl status shows lines, not entries).
fn one_line(f: &Finding) -> String {
    let mut s = format!("preflight: {}: {}: {}", f.status, f.id, f.message);
    if !f.fix.is_empty() {
        s.push_str("; fix: ");
        s.push_str(&f.fix);
    }
    s.replace(['\n', '\r'], " ")
}

/// Sends one entry over journald's native protocol, with CHECK_ID=, SERVICE= and the unit as
/// OBJECT_SYSTEMD_UNIT= (so `journalctl -u NAME` and `systemctl status NAME` list it even when
/// this process has exited before journald looked at its cgroup; honoured for root senders).
fn journal_send(f: &Finding, text: &str, service: &str) -> bool {
    let priority = if f.status == Status::Error { "3" } else { "4" };
    let (status, unit) = (f.status.to_string(), format!("{service}.service"));
    crate::journal::send(&[
        ("MESSAGE", text),
        ("PRIORITY", priority),
        ("SYSLOG_IDENTIFIER", "aictl"),
        ("CHECK_ID", f.id),
        ("SERVICE", service),
        ("CHECK_STATUS", &status),
        ("CHECK_FIX", &f.fix),
        ("OBJECT_SYSTEMD_UNIT", &unit),
    ])
}

/// The request of each service: from its generated unit's preflight line when it has one (what
/// the unit itself will check), else from its file (account only).
fn check_services(host: &Host, names: &[String]) -> Result<Vec<Finding>, String> {
    let dirs: Vec<PathBuf> = SYSTEM_DIRS.iter().map(|d| host.path(d)).collect();
    let discovery = source::discover(&dirs);
    for name in names {
        if !discovery.services.iter().any(|s| &s.name == name) {
            return Err(format!("no service `{name}` in {}", SYSTEM_DIRS.join(", ")));
        }
    }
    let mut findings = Vec::new();
    for files in discovery.services.iter().filter(|s| names.is_empty() || names.contains(&s.name)) {
        let service = match source::load(files) {
            Ok(s) => s,
            Err(diags) => {
                let why: Vec<String> = diags.iter().map(ToString::to_string).collect();
                eprintln!("aictl: {}: not checked, its file is not valid: {}", files.name, why.join("; "));
                continue;
            }
        };
        let unit_path = host.path(Path::new("/run/systemd/generator").join(format!("{}.service", service.name)));
        let unit = std::fs::read_to_string(&unit_path).unwrap_or_default();
        let generated_for =
            unit.lines().next().and_then(|l| l.split(" by podman ").nth(1)).and_then(PodmanVersion::parse);
        let mut request = Request::from_unit(&unit).unwrap_or_else(|| Request {
            service: service.name.clone(),
            account: service.run_as.clone(),
            podman: generated_for,
            ..Request::default()
        });
        request.service = service.name.clone();
        let mut mine = preflight::run(host, &request);
        if service.gpu.is_some() && request.cdi.is_empty() {
            let why = format!(
                "the service asks for GPUs but {} has no preflight line: run `systemctl daemon-reload`",
                unit_path.display()
            );
            for f in mine.iter_mut().filter(|f| f.status == Status::Skipped && f.message.contains("asks for no")) {
                f.message = why.clone();
            }
        }
        findings.extend(mine);
    }
    Ok(findings)
}

fn print_human(findings: &[Finding]) {
    let mut services: Vec<&str> = findings.iter().map(|f| f.service.as_str()).collect();
    services.dedup();
    for service in services {
        let mine: Vec<&Finding> = findings.iter().filter(|f| f.service == service).collect();
        let count = |s: Status| mine.iter().filter(|f| f.status == s).count();
        out!(
            "{service}: {} ok, {} warning(s), {} error(s), {} skipped",
            count(Status::Ok),
            count(Status::Warning),
            count(Status::Error),
            count(Status::Skipped)
        );
        for f in mine.iter().filter(|f| f.status != Status::Ok) {
            out!("  {} {}: {}", f.status, f.id, f.message);
            if !f.fix.is_empty() {
                out!("      fix: {}", f.fix);
            }
        }
    }
}
