//! aicontainersd(8) cannot drift from the command line: its SYNOPSIS and OPTIONS are the ones
//! written from the clap definition (agent/src/cli.rs); UPDATE_GOLDEN=1 rewrites them in
//! man/aicontainersd.8.

#![allow(clippy::unwrap_used)]

use std::path::Path;

/// The page with the text between the markers `BEGIN GENERATED name` and `END GENERATED name`
/// replaced by `want`, and the text that was there.
fn splice(page: &str, name: &str, want: &str) -> (String, String) {
    let begin = format!(".\\\" BEGIN GENERATED {name}\n");
    let end = format!(".\\\" END GENERATED {name}\n");
    let body = page.find(&begin).unwrap_or_else(|| panic!("no marker {begin:?}")) + begin.len();
    let stop = page.find(&end).unwrap_or_else(|| panic!("no marker {end:?}"));
    (format!("{}{want}{}", &page[..body], &page[stop..]), page[body..stop].to_owned())
}

#[test]
fn synopsis_and_options_are_the_ones_written_from_the_clap_definition() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../man/aicontainersd.8");
    let page = std::fs::read_to_string(&path).unwrap();
    let (page, synopsis) = splice(&page, "SYNOPSIS", &aicontainers_agent::cli::synopsis());
    let (page, options) = splice(&page, "OPTIONS", &aicontainers_agent::cli::options());
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &page).unwrap();
        return;
    }
    let want = aicontainers_agent::cli::synopsis();
    assert_eq!(synopsis, want, "aicontainersd.8's SYNOPSIS differs from the agent's own (UPDATE_GOLDEN=1 rewrites it)");
    let want = aicontainers_agent::cli::options();
    assert_eq!(options, want, "aicontainersd.8's OPTIONS differ from the agent's own (UPDATE_GOLDEN=1 rewrites them)");
}

#[test]
fn the_synopsis_names_every_option_and_no_hidden_one() {
    let synopsis = aicontainers_agent::cli::synopsis();
    let options = aicontainers_agent::cli::options();
    for shown in ["\\-\\-bus\\-address", "\\-\\-models\\-limit\\-rate", "\\-v"] {
        assert!(synopsis.contains(shown) && options.contains(shown), "{shown}:\n{synopsis}\n{options}");
    }
    assert!(!synopsis.contains("root") && !options.contains("\\-\\-root"), "the hidden --root is not shown");
}
