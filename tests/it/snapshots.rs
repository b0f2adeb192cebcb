//! Snapshots of every artifact of every valid spec, and of the error
//! output for every invalid one. Reviewed by hand: see CONTRIBUTING.md.
//!
//! Every snapshot is compared before the test fails, so one template edit
//! that changes dozens of artifacts shows all of them in one run, with the
//! names listed at the end. insta prints "Stopped on the first failure" after
//! each diff; that line comes from insta and is not true here.

use crate::fixtures::{all_valid_specs, files, invalid_specs, natbake, render};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("../snapshots");
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    s
}

/// The snapshot's name for one artifact of one spec.
fn artifact_snapshot(label: &str, file: &str) -> String {
    format!("{label}@{file}")
}

/// A gzip file is snapshotted as the text inside it.
fn readable(file: &str, bytes: &[u8]) -> String {
    if file.ends_with(".gz") {
        use std::io::Read;
        let mut text = String::from("(gunzipped)\n");
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .expect("valid gzip");
        text
    } else {
        String::from_utf8(bytes.to_vec()).expect("artifacts are UTF-8 text")
    }
}

/// Asserts each (name, contents) snapshot and fails after the last one,
/// naming every snapshot that did not match. insta fails an assertion by
/// panicking, which would otherwise end the loop at the first mismatch and
/// hide the rest; what insta writes (nothing under `INSTA_UPDATE=no`, a
/// `.snap.new` or the snapshot itself otherwise) is unchanged.
fn assert_every_snapshot(snapshots: Vec<(String, String)>) {
    let total = snapshots.len();
    let mut failed = Vec::new();
    for (name, contents) in snapshots {
        let outcome = std::panic::catch_unwind(|| {
            insta::assert_snapshot!(name.as_str(), contents.as_str());
        });
        if outcome.is_err() {
            failed.push(name);
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {total} snapshots do not match (each diff is printed above): {}\n\
         review them: see CONTRIBUTING.md, section Tests",
        failed.len(),
        failed.join(", ")
    );
}

#[test]
fn every_artifact_of_every_valid_spec() {
    let _guard = settings().bind_to_scope();
    let mut snapshots = Vec::new();
    for spec in all_valid_specs() {
        let site = render(&spec.path);
        for (file, bytes) in files(&site.site_dir) {
            snapshots.push((
                artifact_snapshot(&spec.label, &file),
                readable(&file, &bytes),
            ));
        }
    }
    assert_every_snapshot(snapshots);
}

#[test]
fn rendering_is_deterministic() {
    for spec in all_valid_specs() {
        let a = render(&spec.path);
        let b = render(&spec.path);
        assert_eq!(
            files(&a.site_dir),
            files(&b.site_dir),
            "{} renders differently twice",
            spec.label
        );
    }
}

#[test]
fn every_error_of_every_invalid_spec() {
    let _guard = settings().bind_to_scope();
    let mut snapshots = Vec::new();
    for spec in invalid_specs() {
        let out = tempfile::tempdir().unwrap();
        let run = natbake()
            .arg("render")
            .arg(&spec.path)
            .arg("-o")
            .arg(out.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8(run.stderr).unwrap();
        assert_eq!(run.status.code(), Some(3), "{}: {stderr}", spec.label);
        assert!(run.stdout.is_empty(), "{}", spec.label);
        assert_eq!(
            std::fs::read_dir(out.path()).unwrap().count(),
            0,
            "{} wrote something",
            spec.label
        );
        assert!(!stderr.contains("panicked"), "{}: {stderr}", spec.label);
        snapshots.push((spec.label, stderr));
    }
    assert_every_snapshot(snapshots);
}

/// insta rejects pending snapshots when CI is set; this rejects the ones
/// that nothing asserts any more (a fixture or artifact that went away).
#[test]
fn no_unreferenced_or_pending_snapshots() {
    let mut expected = BTreeSet::new();
    for spec in all_valid_specs() {
        let site = render(&spec.path);
        for (file, _) in files(&site.site_dir) {
            expected.insert(format!("{}.snap", artifact_snapshot(&spec.label, &file)));
        }
    }
    for spec in invalid_specs() {
        expected.insert(format!("{}.snap", spec.label));
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let found: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let extra: Vec<_> = found.difference(&expected).collect();
    let missing: Vec<_> = expected.difference(&found).collect();
    assert!(
        extra.is_empty(),
        "unreferenced or pending snapshots in tests/snapshots: {extra:?}"
    );
    assert!(missing.is_empty(), "snapshots never recorded: {missing:?}");
}

/// Names the snapshot folder of `snapshot_probe`; only its parent test sets it.
const PROBE_DIR: &str = "NATBAKE_SNAPSHOT_PROBE_DIR";

/// Not a test of its own: the child process of
/// `every_mismatching_snapshot_is_reported_in_one_run`, which prepares the
/// snapshot folder and the environment that this assertion runs against.
#[test]
#[ignore = "run only as the child process of every_mismatching_snapshot_is_reported_in_one_run"]
fn snapshot_probe() {
    let dir = std::env::var(PROBE_DIR)
        .unwrap_or_else(|_| panic!("{PROBE_DIR} is not set: this runs only as a child process"));
    let mut s = settings();
    s.set_snapshot_path(PathBuf::from(dir));
    let _guard = s.bind_to_scope();
    assert_every_snapshot(
        [
            ("probe-a", "new a"),
            ("probe-b", "same"),
            ("probe-c", "new c"),
        ]
        .map(|(n, c)| (n.to_string(), c.to_string()))
        .into(),
    );
}

/// Two of three snapshots differ: one run under CI's settings
/// (`INSTA_UPDATE=no`) must fail, name both and not the one that matches,
/// and write nothing. Runs this test binary again for `snapshot_probe`, so
/// that the environment insta reads at start-up is the one given here.
#[test]
fn every_mismatching_snapshot_is_reported_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in [
        ("probe-a", "old a"),
        ("probe-b", "same"),
        ("probe-c", "old c"),
    ] {
        std::fs::write(
            dir.path().join(format!("{name}.snap")),
            format!("---\nsource: tests/it/snapshots.rs\n---\n{contents}\n"),
        )
        .unwrap();
    }
    let run = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "snapshots::snapshot_probe", "--ignored"])
        .args(["--test-threads=1", "--nocapture"])
        .env(PROBE_DIR, dir.path())
        .env("INSTA_UPDATE", "no")
        .env("CI", "true")
        .env_remove("INSTA_FORCE_PASS")
        .env_remove("INSTA_OUTPUT")
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(!run.status.success(), "the probe passed:\n{out}");
    assert!(
        out.contains(
            "2 of 3 snapshots do not match (each diff is printed above): probe-a, probe-c\n"
        ),
        "both mismatches must be listed in one run:\n{out}"
    );
    let left: BTreeSet<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        BTreeSet::from(["probe-a.snap", "probe-b.snap", "probe-c.snap"].map(String::from)),
        "INSTA_UPDATE=no must write nothing"
    );
}
