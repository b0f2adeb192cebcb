//! The Packer pipeline step's example variables file,
//! `packer/natbake.auto.pkrvars.hcl`: formatted as `packer fmt` writes it,
//! accepted by `packer validate` with every rendered template, and naming
//! exactly the variables the templates declare. Packer itself only warns
//! about a name the template does not declare, so the names are compared
//! here.

use crate::fixtures::{render, repo, valid_specs};
use crate::support::run;
use crate::validators::{packer, strip_unknown_to_packer_166};
use std::collections::BTreeSet;

const EXAMPLE: &str = "packer/natbake.auto.pkrvars.hcl";

/// The names assigned at the top level of a variables file.
fn assigned(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with([' ', '#', '}', ']']))
        .filter_map(|l| l.split_once('='))
        .map(|(name, _)| name.trim().to_string())
        .collect()
}

/// The names of the `variable "…"` blocks of a template.
fn declared(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("variable \""))
        .filter_map(|l| l.split_once('"'))
        .map(|(name, _)| name.to_string())
        .collect()
}

#[test]
fn example_variables_file_is_formatted() {
    run(packer()
        .args(["fmt", "-check", "-diff"])
        .arg(repo().join(EXAMPLE)));
}

#[test]
fn example_variables_file_validates_and_names_every_variable() {
    let example = repo().join(EXAMPLE);
    let names = assigned(&std::fs::read_to_string(&example).unwrap());
    assert!(!names.is_empty(), "{EXAMPLE} assigns no variable");
    for spec in valid_specs() {
        let site = render(&spec.path);
        let text = std::fs::read_to_string(site.site_dir.join("nat-ami.pkr.hcl")).unwrap();
        let variables = declared(&text);
        let unknown: Vec<_> = names.difference(&variables).collect();
        let missing: Vec<_> = variables.difference(&names).collect();
        assert!(
            unknown.is_empty() && missing.is_empty(),
            "{}: {EXAMPLE} sets variables the template does not declare: {unknown:?}; \
             and misses ones it does: {missing:?}",
            spec.label
        );
        let (stripped, _) = strip_unknown_to_packer_166(&text);
        let work = tempfile::tempdir().unwrap();
        std::fs::write(work.path().join("nat-ami.pkr.hcl"), stripped).unwrap();
        let out = run(packer()
            .current_dir(work.path())
            .arg("validate")
            .arg(format!("-var-file={}", example.display()))
            .arg("nat-ami.pkr.hcl"));
        // Success prints nothing; a warning (an undeclared name) exits 0.
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "{}: {}{}",
            spec.label,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
