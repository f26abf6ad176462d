//! aictl(1) cannot drift from the command line: its SYNOPSIS is the one `aictl
//! manpage-synopsis` writes from the clap definitions (UPDATE_GOLDEN=1 rewrites it in
//! man/aictl.1), and every option the page names anywhere is one that aictl has.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const BEGIN: &str = ".\\\" BEGIN GENERATED SYNOPSIS";
const END: &str = ".\\\" END GENERATED SYNOPSIS\n";

fn generated() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_aictl")).arg("manpage-synopsis").output().expect("aictl runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `\-\-name` options named in roff text (a name is letters, digits and `\-`).
fn options(roff: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for rest in roff.split("\\-\\-").skip(1) {
        let mut name = String::new();
        let mut s = rest;
        loop {
            if let Some(r) = s.strip_prefix("\\-") {
                name.push('-');
                s = r;
            } else if let Some(c) = s.chars().next().filter(char::is_ascii_alphanumeric) {
                name.push(c);
                s = &s[1..];
            } else {
                break;
            }
        }
        let name = name.trim_end_matches('-');
        if !name.is_empty() {
            out.insert(name.to_owned());
        }
    }
    out
}

#[test]
fn the_synopsis_is_the_one_written_from_the_clap_definitions() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../man/aictl.1");
    let page = std::fs::read_to_string(&path).expect("man/aictl.1");
    let begin = page.find(BEGIN).expect("the BEGIN marker");
    let body = begin + page[begin..].find('\n').expect("line") + 1;
    // The marker's second comment line belongs to it.
    let body = body + page[body..].find('\n').expect("line") + 1;
    let end = page.find(END).expect("the END marker");
    let want = generated();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let text = format!("{}{}{}", &page[..body], want, &page[end..]);
        std::fs::write(&path, text).expect("write");
        return;
    }
    assert_eq!(&page[body..end], want, "man/aictl.1's SYNOPSIS differs from aictl's own (UPDATE_GOLDEN=1 rewrites it)");
}

#[test]
fn every_option_the_page_names_exists() {
    let page = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../man/aictl.1")).expect("page");
    let have = options(&generated());
    // Options of aictl itself and of hidden commands (named where the page explains them).
    let extra = ["help", "version", "interval", "foreground"];
    let unknown: Vec<String> =
        options(&page).into_iter().filter(|o| !have.contains(o) && !extra.contains(&o.as_str())).collect();
    assert!(unknown.is_empty(), "man/aictl.1 names options aictl does not have: {unknown:?}");
}
