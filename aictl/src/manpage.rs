//! The SYNOPSIS of aictl(1), written from the clap definitions so that the man page cannot
//! drift from `--help`: `aictl manpage-synopsis` (hidden) prints it, and a test
//! (tests/manpage.rs) checks that man/aictl.1 holds exactly that between its markers. The
//! rest of the page is prose, written by hand.

use clap::{Arg, ArgAction, Command};

/// Roff-escapes a word for the man macros: `-` as `\-`.
fn esc(s: &str) -> String {
    s.replace('\\', "\\e").replace('-', "\\-")
}

fn value_name(arg: &Arg) -> String {
    arg.get_value_names()
        .and_then(|v| v.first())
        .map_or_else(|| arg.get_id().as_str().to_uppercase(), |n| n.to_string())
}

fn repeats(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append | ArgAction::Count)
        || arg.get_num_args().is_some_and(|n| n.max_values() > 1)
}

/// One `.SY` block per runnable command (leaf subcommands; hidden ones left out).
pub fn synopsis(root: &Command) -> String {
    let mut out = String::new();
    walk(root, &mut vec![root.get_name().to_owned()], &mut out);
    out
}

fn walk(cmd: &Command, path: &mut Vec<String>, out: &mut String) {
    let subs: Vec<&Command> = cmd.get_subcommands().filter(|c| !c.is_hide_set() && c.get_name() != "help").collect();
    if !subs.is_empty() {
        for sub in subs {
            path.push(sub.get_name().to_owned());
            walk(sub, path, out);
            path.pop();
        }
        return;
    }
    out.push_str(&format!(".SY \"{}\"\n", esc(&path.join(" "))));
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set() && !a.is_positional()) {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        let Some(long) = arg.get_long() else { continue };
        let flag = format!("\\-\\-{}", esc(long));
        let more = if repeats(arg) { "...\\&" } else { "" };
        let takes_value = !matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count);
        match (arg.is_required_set(), takes_value) {
            (true, true) => out.push_str(&format!(".BI {flag} \" {}\"\n", esc(&value_name(arg)))),
            (true, false) => out.push_str(&format!(".B {flag}\n")),
            (false, true) => out.push_str(&format!(".RB [ {flag}\n.IR {} ]{more}\n", esc(&value_name(arg)))),
            (false, false) => out.push_str(&format!(".RB [ {flag} ]{more}\n")),
        }
    }
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set() && a.is_positional()) {
        let possible: Vec<String> =
            arg.get_possible_values().iter().filter(|v| !v.is_hide_set()).map(|v| esc(v.get_name())).collect();
        let name = if possible.is_empty() {
            esc(&value_name(arg))
        } else {
            // `.BR a | b | c`: the choices in bold, the bars in roman.
            possible.join(" | ")
        };
        let more = if repeats(arg) { " ..." } else { "" };
        let line = match (arg.is_required_set(), possible.is_empty()) {
            (true, true) => format!(".I {name}{more}"),
            (false, true) => format!(".RI [ {name}{more} ]"),
            (true, false) => format!(".BR {name}"),
            (false, false) => format!(".RB [ {name} ]"),
        };
        // `.I NAME ...` would set the dots in italics too.
        let line = if more.is_empty() || !possible.is_empty() {
            line
        } else if arg.is_required_set() {
            format!(".IR {name} ...")
        } else {
            line
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(".YS\n");
}
