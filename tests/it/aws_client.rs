//! natbake-aws, the instance's one client of instance metadata and the AWS
//! APIs (`instance/natbake-aws.py`), without root: its unit tests on
//! canned answers (`aws_client/test_natbake_aws.py`, Python's unittest),
//! the same calls against moto (`aws_client/against_moto.py`), and the
//! Python it may use (3.9, Amazon Linux 2023's).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::failover::lab::moto_venv;
use crate::support;

fn program() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("instance/natbake-aws.py")
}

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/aws_client")
}

/// The readers of metadata, EC2, Auto Scaling and CloudWatch answers, the
/// retries and deadlines, SigV4 (AWS's published vectors and botocore),
/// the env-file parser with hostile input, the netlink reader.
#[test]
fn the_aws_client_passes_its_unit_tests() {
    let run = support::run_bounded(
        Command::new("/usr/bin/python3")
            .args(["-m", "unittest", "-v", "test_natbake_aws"])
            .current_dir(tests_dir())
            .env("NATBAKE_AWS", program())
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        b"",
        Duration::from_secs(300),
    );
    assert!(run.success(), "{}", run.explain());
    // unittest reports on stderr; none may be skipped.
    let ran = run
        .stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split(' ')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(0);
    assert!(ran >= 37, "ran {ran} tests\n{}", run.explain());
    assert!(!run.stderr.contains("skipped"), "{}", run.explain());
}

/// describe, attach, instance-state, detach with force, report-unhealthy
/// and a publish in parts, against moto's EC2, Auto Scaling and
/// CloudWatch, read back through boto3.
#[test]
fn the_aws_client_works_against_moto() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let run = support::run_bounded(
        Command::new(moto_venv().join("bin/python3"))
            .arg(tests_dir().join("against_moto.py"))
            .arg("--program")
            .arg(program())
            .arg("--dir")
            .arg(dir.path())
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        b"",
        Duration::from_secs(300),
    );
    assert!(run.success(), "{}", run.explain());
    assert!(run.stdout.contains("moto agrees"), "{}", run.explain());
}

/// Amazon Linux 2023 has Python 3.9: the program parses as 3.9, uses only
/// the standard library, and runs isolated (`-IS` in its first line).
#[test]
fn the_aws_client_is_python_3_9_and_standard_library_only() {
    let text = std::fs::read_to_string(program()).expect("read the program");
    assert!(
        text.starts_with("#!/usr/bin/python3 -IS\n"),
        "{}",
        text.lines().next().unwrap_or_default()
    );
    let check = r#"
import ast, sys
tree = ast.parse(open(sys.argv[1]).read(), feature_version=(3, 9))
names = set()
for node in ast.walk(tree):
    if isinstance(node, ast.Import):
        names.update(a.name.split(".")[0] for a in node.names)
    elif isinstance(node, ast.ImportFrom):
        names.add(node.module.split(".")[0])
outside = sorted(n for n in names if n not in sys.stdlib_module_names)
print(" ".join(outside))
"#;
    let out = support::run_stdout(
        Command::new("/usr/bin/python3")
            .args(["-c", check])
            .arg(program()),
    );
    assert_eq!(out.trim(), "", "modules outside the standard library");
}
