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
use std::process::Command;

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

const CI_JOB: &str = "packer/natbake-image.github-workflow.yml";
const GUIDE: &str = "packer/README.md";

/// The lines of the fenced block that follows `marker` in `text`.
fn block_after<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("{GUIDE} has no `{marker}`"));
    text[start..]
        .lines()
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect()
}

/// The example CI job is a workflow GitHub can read (loaded by a real YAML
/// parser), scheduled monthly, and its build step runs exactly the
/// commands the guide explains.
#[test]
fn the_monthly_ci_job_runs_the_guides_commands() {
    let out = run(Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout, default=str)",
        ])
        .arg(repo().join(CI_JOB)));
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // YAML 1.1 (PyYAML) reads the key `on` as true; GitHub reads it as "on".
    let on = job.get("on").or_else(|| job.get("true")).expect("`on:`");
    let cron = on["schedule"][0]["cron"].as_str().expect("a schedule");
    let fields: Vec<&str> = cron.split(' ').collect();
    assert!(
        fields.len() == 5
            && fields[2]
                .parse::<u32>()
                .is_ok_and(|d| (1..=28).contains(&d))
            && fields[3] == "*"
            && fields[4] == "*",
        "`{cron}` is not once a month on a day every month has"
    );
    assert_eq!(job["permissions"]["id-token"], "write", "OIDC for the role");
    let steps = job["jobs"]["image"]["steps"].as_array().expect("steps");
    let build = steps
        .iter()
        .find(|s| s["name"] == "Build and publish the image")
        .expect("the build step");
    let script: Vec<&str> = build["run"].as_str().unwrap().lines().collect();
    let guide = std::fs::read_to_string(repo().join(GUIDE)).unwrap();
    assert_eq!(
        script,
        block_after(&guide, "The job's build step runs:"),
        "{CI_JOB} and {GUIDE} differ"
    );
    // Whatever the build made is kept, the package list included.
    let kept = steps
        .iter()
        .find_map(|s| s["with"]["path"].as_str())
        .expect("an artifact step");
    for file in ["packer-manifest.json", ".packages.tsv"] {
        assert!(kept.contains(file), "{CI_JOB} does not keep {file}");
    }
}

/// The rendered template's own checks of its two lifecycle variables
/// refuse what EC2 and SSM would refuse, before any instance is started.
#[test]
fn the_lifecycle_variables_are_checked_before_the_build() {
    let spec = &valid_specs()[0];
    let site = render(&spec.path);
    let text = std::fs::read_to_string(site.site_dir.join("nat-ami.pkr.hcl")).unwrap();
    let (stripped, _) = strip_unknown_to_packer_166(&text);
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("nat-ami.pkr.hcl"), stripped).unwrap();
    let validate = |var: &str| {
        let mut cmd = packer();
        cmd.current_dir(work.path())
            .args(["validate", "-var", "region=us-east-1", "-var", var])
            .arg("nat-ami.pkr.hcl");
        crate::support::output_of(&mut cmd)
    };
    for good in [
        "deprecate_after_days=7",
        "deprecate_after_days=3650",
        "image_parameter=",
        "image_parameter=/natbake/corp-prod/ami-id-candidate",
    ] {
        let out = validate(good);
        assert!(
            out.status.success(),
            "{}: {good} refused: {}",
            spec.label,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (bad, says) in [
        ("deprecate_after_days=6", "from 7 to 3650"),
        ("deprecate_after_days=3651", "from 7 to 3650"),
        ("deprecate_after_days=30.5", "whole number"),
        ("image_parameter=/aws/service/x", "not under /aws or /ssm"),
        ("image_parameter=/SSM/x", "not under /aws or /ssm"),
        ("image_parameter=natbake/x", "parameter path"),
    ] {
        let out = validate(bad);
        // Packer 1.6.6 prints the refusal on stdout.
        let err = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .replace('\n', " ");
        assert!(
            !out.status.success() && err.contains(says),
            "{}: {bad} accepted, or refused without `{says}`: {err}",
            spec.label
        );
    }
}

/// Every image and its snapshots carry what they were built from, the
/// image expires, its package list is downloaded next to the manifest,
/// and the manifest and the publishing step run in that order.
#[test]
fn images_carry_their_provenance_and_expire() {
    for spec in valid_specs() {
        let site = render(&spec.path);
        let text = std::fs::read_to_string(site.site_dir.join("nat-ami.pkr.hcl")).unwrap();
        let name = &spec.label;
        let loaded = natbake::validate::load(&spec.path).unwrap();
        let has = |line: &str| text.lines().any(|l| l.trim() == line);
        for line in [
            "tags          = local.image_tags",
            "snapshot_tags = local.image_tags",
            "deprecate_at = local.deprecate_at",
            "direction   = \"download\"",
            "source      = \"/tmp/natbake/packages.tsv\"",
            "destination = local.packages",
            "packages    = local.packages",
        ] {
            assert!(has(line), "{name}: no `{line}`");
        }
        let image_tags: Vec<&str> = text
            .lines()
            .skip_while(|l| l.trim() != "image_tags = {")
            .skip(1)
            .take_while(|l| l.trim() != "}")
            .map(str::trim)
            .collect();
        let tag = |key: &str| {
            image_tags
                .iter()
                .find_map(|l| l.strip_prefix(&format!("\"{key}\"")))
                .map(|rest| rest.trim_start().trim_start_matches('=').trim())
                .unwrap_or_else(|| panic!("{name}: no image tag {key}"))
        };
        assert_eq!(tag("natbake:source-ami"), "\"{{ .SourceAMI }}\"", "{name}");
        assert_eq!(
            tag("natbake:source-ami-name"),
            "\"{{ .SourceAMIName }}\"",
            "{name}"
        );
        assert_eq!(tag("natbake:build-time"), "local.now", "{name}");
        assert_eq!(
            tag("natbake:os"),
            format!("\"{}\"", loaded.os.name()),
            "{name}"
        );
        assert_eq!(
            tag("natbake:spec-sha256"),
            format!("\"{}\"", loaded.spec_sha256),
            "{name}"
        );
        assert_eq!(
            tag("natbake:version"),
            format!("\"{}\"", env!("CARGO_PKG_VERSION")),
            "{name}"
        );
        assert!(
            has(&format!(
                "default     = {}",
                loaded.ami.deprecate_after_days
            )),
            "{name}: deprecate_after_days does not default to the spec's"
        );
        assert!(
            has(&format!("default     = \"{}\"", loaded.image_parameter())),
            "{name}: image_parameter does not default to the stack's"
        );
        let manifest = text.find("post-processor \"manifest\"").unwrap();
        let publish = text.find("post-processor \"shell-local\"").unwrap();
        assert!(
            text.contains("post-processors {") && manifest < publish,
            "{name}: the id must be in packer-manifest.json before it is published"
        );
    }
}

/// The publishing step's commands, as the shell-local post-processor
/// writes them into a script (one element a line, run by `/bin/sh -e`),
/// pass shellcheck as POSIX sh; `stack_deploy.py` runs them against moto.
#[test]
fn the_publishing_step_is_clean_posix_shell() {
    for spec in valid_specs() {
        let site = render(&spec.path);
        let text = std::fs::read_to_string(site.site_dir.join("nat-ami.pkr.hcl")).unwrap();
        let script: Vec<String> = text
            .lines()
            .skip_while(|l| l.trim() != "post-processor \"shell-local\" {")
            .skip_while(|l| l.trim() != "inline = [")
            .skip(1)
            .take_while(|l| l.trim() != "]")
            .map(|l| serde_json::from_str(l.trim().trim_end_matches(',')).unwrap())
            .collect();
        assert!(script.len() > 3, "{}: no publishing step", spec.label);
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("publish.sh");
        std::fs::write(&file, format!("#!/bin/sh -e\n{}\n", script.join("\n"))).unwrap();
        run(Command::new("shellcheck")
            .args(["-s", "sh", "-f", "gcc"])
            .arg(&file));
    }
}
