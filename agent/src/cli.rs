//! aicontainersd's command line, and the SYNOPSIS and OPTIONS of aicontainersd(8) written from
//! it, so that the man page cannot drift from `--help` (agent/tests/manpage.rs checks the page;
//! the rest of the page is prose, written by hand).

use std::path::PathBuf;

use clap::{Arg, ArgAction, CommandFactory, Parser};

#[derive(Parser, Debug)]
#[command(name = "aicontainersd", version, about = "The aicontainers node agent on the system bus")]
pub struct Cli {
    /// Connect to this bus instead of the system bus (also: $DBUS_SYSTEM_BUS_ADDRESS).
    #[arg(long, value_name = "ADDRESS")]
    pub bus_address: Option<String>,
    /// Read the service files and /etc/subuid, keep the model cache, and read cgroups below
    /// this directory instead of / (for tests).
    #[arg(long, value_name = "DIR", default_value = "/", hide = true)]
    pub root: PathBuf,
    /// Pull models at most this many bytes per second per download (default: no limit).
    #[arg(long, value_name = "BYTES")]
    pub models_limit_rate: Option<u64>,
    /// More log output: -v debug, -vv trace.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Where the agent is installed, as the SYNOPSIS names it.
pub const INSTALLED_PATH: &str = "/usr/libexec/aicontainersd";

/// A word or text for the man macros: `\` as `\e`, `-` as `\-`.
fn esc(s: &str) -> String {
    s.replace('\\', "\\e").replace('-', "\\-")
}

/// The options the page shows: every one but the hidden ones, `--help` and `--version`.
fn shown() -> Vec<Arg> {
    Cli::command()
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_positional() && !matches!(a.get_id().as_str(), "help" | "version"))
        .cloned()
        .collect()
}

fn value_name(arg: &Arg) -> Option<String> {
    let flag = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count);
    (!flag).then(|| {
        arg.get_value_names()
            .and_then(|v| v.first())
            .map_or_else(|| arg.get_id().as_str().to_uppercase(), |n| n.to_string())
    })
}

/// The SYNOPSIS lines (roff), from the clap definition.
pub fn synopsis() -> String {
    let mut out = format!(".B {}\n", esc(INSTALLED_PATH));
    for arg in shown() {
        let more = if matches!(arg.get_action(), ArgAction::Count | ArgAction::Append) { "..." } else { "" };
        let flag = match (arg.get_long(), arg.get_short()) {
            (_, Some(short)) if value_name(&arg).is_none() => format!("\\-{short}"),
            (Some(long), _) => format!("\\-\\-{}", esc(long)),
            (None, Some(short)) => format!("\\-{short}"),
            (None, None) => continue,
        };
        match value_name(&arg) {
            Some(v) => out.push_str(&format!(".RB [ {flag}\n.IR {} ]{more}\n", esc(&v))),
            None => out.push_str(&format!(".RB [ {flag} ]{more}\n")),
        }
    }
    out
}

/// The OPTIONS section's entries (roff): each option and its `--help` text.
pub fn options() -> String {
    let mut out = String::new();
    for arg in shown() {
        let names: Vec<String> = arg
            .get_short()
            .map(|s| format!("\\-{s}"))
            .into_iter()
            .chain(arg.get_long().map(|l| format!("\\-\\-{}", esc(l))))
            .collect();
        out.push_str(".TP\n");
        match value_name(&arg) {
            Some(v) => out.push_str(&format!(".BI {} \" {}\"\n", names.join(" \", \" "), esc(&v))),
            None => out.push_str(&format!(".BR {}\n", names.join(" \", \" "))),
        }
        let mut help = arg.get_long_help().or(arg.get_help()).map(|h| h.to_string()).unwrap_or_default();
        // clap drops the doc comment's last full stop; a sentence on the page keeps it.
        if !help.ends_with(['.', ':', '!', '?']) {
            help.push('.');
        }
        for line in help.lines() {
            // A line that starts with a dot or a quote would be read as a request.
            let line = esc(line.trim());
            let line = if line.starts_with(['.', '\'']) { format!("\\&{line}") } else { line };
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}
