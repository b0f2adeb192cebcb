//! Snapshots of every artifact of every valid spec, and of the error
//! output for every invalid one. Reviewed by hand: see the README.

use crate::fixtures::{files, invalid_specs, natbake, render, valid_specs};
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

#[test]
fn every_artifact_of_every_valid_spec() {
    let _guard = settings().bind_to_scope();
    for spec in valid_specs() {
        let site = render(&spec.path);
        for (file, bytes) in files(&site.site_dir) {
            insta::assert_snapshot!(
                artifact_snapshot(&spec.label, &file),
                readable(&file, &bytes)
            );
        }
    }
}

#[test]
fn rendering_is_deterministic() {
    for spec in valid_specs() {
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
        insta::assert_snapshot!(spec.label.clone(), stderr);
    }
}

/// insta rejects pending snapshots when CI is set; this rejects the ones
/// that nothing asserts any more (a fixture or artifact that went away).
#[test]
fn no_unreferenced_or_pending_snapshots() {
    let mut expected = BTreeSet::new();
    for spec in valid_specs() {
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
