//! Unit tests of the instance scripts' functions, without root and
//! without namespaces: each test renders a fixture (once per process),
//! loads the site's `natbake-lib.sh` into a plain `bash` with stand-ins for
//! the commands that need root answering from canned outputs
//! (`tests/fixtures/shell/`), calls one function and compares its output
//! and exit status. Every test runs under mawk (Debian, Ubuntu) and gawk
//! (Amazon Linux). What needs a kernel (loading rules, traffic, repairs)
//! stays in the namespace labs.

mod harness;

mod cidr;
mod counters;
mod health_generation;
mod ipsets;
mod metrics;
mod ruleset;
mod site_conf;
mod site_conf_stamp;
mod standby;
mod status;
mod time_and_log;

use crate::fixtures::repo;

/// A canned output from `tests/fixtures/shell/`.
pub fn canned(name: &str) -> String {
    let path = repo().join("tests/fixtures/shell").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `text` with the line that equals `line` removed; panics if none does.
#[track_caller]
pub fn without(text: &str, line: &str) -> String {
    replaced(text, line, None)
}

/// `text` with the line that equals `line` replaced by `by` (several
/// lines, or none); panics if no line equals `line`.
#[track_caller]
pub fn replaced(text: &str, line: &str, by: Option<&str>) -> String {
    let mut found = false;
    let mut out = String::new();
    for l in text.lines() {
        if l == line && !found {
            found = true;
            if let Some(by) = by {
                out.push_str(by);
                out.push('\n');
            }
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    assert!(found, "no line {line:?} in\n{text}");
    out
}

/// `text` with `new` (one or more lines) inserted after the line that
/// equals `line`.
#[track_caller]
pub fn after(text: &str, line: &str, new: &str) -> String {
    replaced(text, line, Some(&format!("{line}\n{new}")))
}

/// `text` with `new` inserted before the line that equals `line`.
#[track_caller]
pub fn before(text: &str, line: &str, new: &str) -> String {
    replaced(text, line, Some(&format!("{new}\n{line}")))
}
