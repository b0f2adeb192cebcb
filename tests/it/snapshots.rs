//! Snapshots of every artifact of every valid spec, and of the error
//! output for every invalid one. Reviewed by hand: see CONTRIBUTING.md.
//!
//! The instance's scripts are the same bytes for every site: each has one
//! snapshot (`instance@<script>`), and a site's copy is checked equal to it
//! instead. What carries them (SHA256SUMS, the manifest, the user data and
//! the stack that embeds it) is snapshotted with the scripts' bytes and
//! digests replaced by placeholders, so that an edit of one script changes
//! one snapshot; `sha256sum -c`, the user data tests and the boot tests
//! prove the bytes themselves.
//!
//! Every snapshot is compared before the test fails, so one template edit
//! that changes dozens of artifacts shows all of them in one run, with the
//! names listed at the end. insta prints "Stopped on the first failure" after
//! each diff; that line comes from insta and is not true here.

use crate::fixtures::{all_valid_specs, files, invalid_specs, natbake, render};
use natbake::render::escape;
use natbake::render::instance::{SCRIPTS, installed};
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

/// Whether `file` is one of the instance's scripts.
fn is_instance_script(file: &str) -> bool {
    SCRIPTS.iter().any(|s| s.artifact == file)
}

/// Whether `file` carries the scripts' bytes (and so changes with them).
fn carries_scripts(file: &str) -> bool {
    file.starts_with("user-data.yaml") || file == "stack.cfn.yaml" || file == "manifest.json"
}

/// A site's files as snapshotted: each instance script checked equal to
/// the one natbake installs everywhere and left out, the carriers
/// redacted (see the module's documentation).
fn site_snapshots(label: &str, site: &[(String, Vec<u8>)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut digests: Vec<(String, String)> = Vec::new();
    for (file, bytes) in site {
        if is_instance_script(file) || carries_scripts(file) {
            digests.push((natbake::render::sha256_hex(bytes), file.clone()));
        }
    }
    let user_data = site.iter().find(|(f, _)| f.starts_with("user-data.yaml"));
    for (file, bytes) in site {
        if is_instance_script(file) {
            assert!(
                bytes.as_slice() == installed(file),
                "{label}: {file} is not the script natbake installs on every site"
            );
            continue;
        }
        let mut text = readable(file, bytes);
        if file == "SHA256SUMS" || file == "manifest.json" {
            text = redact_digests(&text, &digests);
        }
        if file.starts_with("user-data.yaml") {
            text = redact_user_data(label, &text, site);
        }
        if file == "stack.cfn.yaml"
            && let Some((name, ud)) = user_data
        {
            // Where the stack launches the official image with user data,
            // the user data, byte for byte.
            let b64 = escape::base64(ud);
            text = text.replace(&b64, &format!("<base64 of {name}>"));
            assert!(
                !text.contains("UserData:\n          Fn::If:\n            - \"UseOfficialImage\"\n            - \"H4sI"),
                "{label}: the stack carries other user data than {name}"
            );
        }
        out.push((artifact_snapshot(label, file), text));
    }
    out
}

/// SHA256SUMS or the manifest with the digests (and the manifest's sizes)
/// of the scripts and their carriers replaced by their names.
fn redact_digests(text: &str, digests: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(path) = trimmed.strip_prefix("\"path\": \"") {
            current = path.trim_end().trim_end_matches([',', '"']).to_string();
        }
        // The manifest's sections on the user data and the stack.
        if trimmed.starts_with("\"user_data\": {") {
            current = "user-data.yaml".into();
        } else if trimmed.starts_with("\"stack\": {") {
            current = "stack.cfn.yaml".into();
        }
        let redacted =
            digests.iter().any(|(_, f)| f.starts_with(current.as_str())) && !current.is_empty();
        if redacted && trimmed.starts_with("\"bytes\": ") {
            let indent = &line[..line.len() - trimmed.len()];
            let comma = if trimmed.trim_end().ends_with(',') {
                ","
            } else {
                ""
            };
            out.push_str(&format!(
                "{indent}\"bytes\": \"<size of {current}>\"{comma}\n"
            ));
            continue;
        }
        if redacted && trimmed.starts_with("\"size\": ") {
            let indent = &line[..line.len() - trimmed.len()];
            let comma = if trimmed.trim_end().ends_with(',') {
                ","
            } else {
                ""
            };
            out.push_str(&format!(
                "{indent}\"size\": \"<size of {current}>\"{comma}\n"
            ));
            continue;
        }
        let mut line = line.to_string();
        for (digest, file) in digests {
            line = line.replace(digest, &format!("<sha256 of {file}>"));
        }
        out.push_str(&line);
    }
    out
}

/// The user data with each instance script's content (a literal block,
/// or gzip in base64) replaced by its name, after checking it is the
/// script's bytes.
fn redact_user_data(label: &str, text: &str, site: &[(String, Vec<u8>)]) -> String {
    let mut text = text.to_string();
    for (file, bytes) in site.iter().filter(|(f, _)| is_instance_script(f)) {
        let placeholder = format!("<{file}, as natbake installs it on every site>");
        let script = std::str::from_utf8(bytes).unwrap();
        let literal = escape::yaml_literal_body(script, 6)
            .map(|body| format!("content: |\n{}", body.strip_suffix('\n').unwrap_or(&body)));
        if let Some(literal) = literal.filter(|l| text.contains(l.as_str())) {
            text = text.replace(&literal, &format!("content: |\n      {placeholder}"));
            continue;
        }
        // Compressed one by one: the base64 after this file's path.
        let path = natbake::render::install_path(file);
        let at = text
            .find(&format!("- path: {path}\n"))
            .unwrap_or_else(|| panic!("{label}: the user data does not write {path}"));
        let start = at + text[at..].find("content: ").expect("content") + "content: ".len();
        let end = start + text[start..].find('\n').unwrap_or(text.len() - start);
        let gz = crate::validators::decode_base64(&text[start..end]);
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut unzipped)
            .expect("gzip");
        assert!(
            unzipped == *bytes,
            "{label}: the user data writes another {file}"
        );
        text.replace_range(start..end, &placeholder);
    }
    text
}

#[test]
fn every_artifact_of_every_valid_spec() {
    let _guard = settings().bind_to_scope();
    let mut snapshots = Vec::new();
    for s in SCRIPTS {
        let text = String::from_utf8(installed(s.artifact).to_vec()).unwrap();
        snapshots.push((artifact_snapshot("instance", s.artifact), text));
    }
    for spec in all_valid_specs() {
        let site = render(&spec.path);
        snapshots.extend(site_snapshots(&spec.label, &files(&site.site_dir)));
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
    for s in SCRIPTS {
        expected.insert(format!(
            "{}.snap",
            artifact_snapshot("instance", s.artifact)
        ));
    }
    for spec in all_valid_specs() {
        let site = render(&spec.path);
        for (file, _) in files(&site.site_dir) {
            if !is_instance_script(&file) {
                expected.insert(format!("{}.snap", artifact_snapshot(&spec.label, &file)));
            }
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
