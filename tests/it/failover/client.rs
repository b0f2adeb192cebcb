//! The AWS side of the instance's scripts (natbake-aws.sh) without root:
//! its functions read what the AWS client (`natbake-aws`, tested on its
//! own in `aws_client`) prints as data, with a stand-in program in its
//! place. Also: the systemd units' start timeouts cover the bounds the
//! scripts set themselves.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::fixtures;
use crate::support::{self, Finished, ScratchDir};

/// natbake-aws.sh of the failover fixture, and natbake-failover.sh on it,
/// sourced with `program` (a bash script) in place of natbake-aws; `log`
/// prints "LOG: ..." on stderr.
fn run_with_program(program: &str, body: &str) -> (Finished, String) {
    let site = fixtures::render(Path::new("tests/fixtures/valid/failover-health.yaml"));
    let dir = ScratchDir::new("aws-glue");
    let fake = dir.path().join("natbake-aws");
    fs::write(
        &fake,
        format!("#!/bin/bash\necho \"$*\" >>\"${{0%/*}}/calls\"\n{program}"),
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let script = format!(
        "set -u\nfunction log {{ echo \"LOG: $*\" >&2; }}\nSTATE_DIR={state}\n. {aws}\n. {failover}\nAWS_PROGRAM={fake}\n{body}\n",
        state = dir.path().join("state").display(),
        aws = site.site_dir.join("natbake-aws.sh").display(),
        failover = site.site_dir.join("natbake-failover.sh").display(),
        fake = fake.display(),
    );
    let run = support::run_bounded(
        Command::new("bash").args(["-c", &script]),
        b"",
        Duration::from_secs(60),
    );
    let calls = fs::read_to_string(dir.path().join("calls")).unwrap_or_default();
    (run, calls)
}

/// What the program prints is data: a value holding `$(...)`, backquotes
/// or quotes stays text, warnings reach the log, and the deadline goes
/// to the program as the seconds left.
#[test]
fn the_programs_answers_are_read_as_data() {
    let (run, calls) = run_with_program(
        r#"cat <<'OUT'
warning=a new role; trying again
instance=i-0123456789abcdef0
zone=us-east-1a
id=eni-0a1b2c3d4e5f60718
mac=0e:11:22:33:44:55
address=10.0.0.2
status=in-use
holder=$(touch /tmp/natbake-glue-was-run) `id` "x'
attachment=eni-attach-0123456789abcdef0
attached=attached
OUT"#,
        "AWS_DEADLINE=$(( SECONDS + 20 ))\nfloating_describe failover-health\necho \"rc=$? id=$FLOATING_ID az=$AWS_AZ\"\nprintf 'holder=%s\\n' \"$FLOATING_HOLDER\"",
    );
    assert!(run.success(), "{}", run.explain());
    assert!(
        run.stdout
            .contains("rc=0 id=eni-0a1b2c3d4e5f60718 az=us-east-1a"),
        "{}",
        run.explain()
    );
    assert!(
        run.stdout
            .contains("holder=$(touch /tmp/natbake-glue-was-run) `id` \"x'"),
        "{}",
        run.explain()
    );
    assert!(!Path::new("/tmp/natbake-glue-was-run").exists());
    assert!(
        run.stderr
            .contains("LOG: WARNING: a new role; trying again"),
        "{}",
        run.explain()
    );
    let deadline: u32 = calls
        .split_whitespace()
        .skip_while(|w| *w != "--deadline")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((19..=20).contains(&deadline), "{calls}");
    assert!(
        calls.contains("describe-floating failover-health"),
        "{calls}"
    );
}

/// A refusal and no answer come back with the program's error and message;
/// a crash (any other status) is a refusal naming the program; a deadline
/// already past never starts it.
#[test]
fn failures_keep_their_error_and_message() {
    for (program, want) in [
        (
            "echo error=InvalidParameterValue; echo 'message=Cannot list it: bad'; exit 1",
            "rc=1 error=InvalidParameterValue message=Cannot list it: bad",
        ),
        (
            "echo error=natbake.NoAnswer; echo 'message=no complete answer'; exit 2",
            "rc=2 error=natbake.NoAnswer message=no complete answer",
        ),
        (
            "echo Traceback >&2; exit 7",
            "rc=1 error=natbake.Failed message=",
        ),
    ] {
        let (run, _) = run_with_program(
            program,
            "AWS_DEADLINE=$(( SECONDS + 20 ))\nfloating_describe failover-health\necho \"rc=$? error=$AWS_ERROR message=$AWS_MESSAGE\"",
        );
        assert!(run.stdout.contains(want), "{program}: {}", run.explain());
    }
    let (run, calls) = run_with_program(
        "exit 0",
        "AWS_DEADLINE=$SECONDS\nfloating_describe failover-health\necho \"rc=$? error=$AWS_ERROR\"",
    );
    assert!(
        run.stdout.contains("rc=2 error=natbake.NoAnswer"),
        "{}",
        run.explain()
    );
    assert_eq!(calls, "");
}

/// The numbers right after each `key` in `text`.
fn number_after(text: &str, key: &str) -> Vec<u32> {
    text.match_indices(key)
        .filter_map(|(i, _)| {
            let digits: String = text[i + key.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

/// systemd stops a unit that runs past its start timeout, so each timeout
/// must cover the longest run the script's own bounds allow: for the boot
/// step, its lock, metadata, the wait for the interface, the time after
/// the attachment and the unhealthy report; for the health check, one
/// whole repair (the boot step's timeout) plus its own locks, API looks,
/// report and metrics.
#[test]
fn unit_timeouts_cover_the_scripts_own_bounds() {
    let site = fixtures::render(Path::new("tests/fixtures/valid/failover-health.yaml"));
    let read = |name: &str| fs::read_to_string(site.site_dir.join(name)).expect(name);
    let (boot, health, failover, metrics, conf) = (
        read("configure-pat.sh"),
        read("natbake-health.sh"),
        read("natbake-failover.sh"),
        read("natbake-metrics.sh"),
        read("site.conf"),
    );
    let timeout = |unit: &str| number_after(&read(unit), "TimeoutStartSec=")[0];
    let one = |text: &str, key: &str| number_after(text, key)[0];
    let sum = |text: &str, key: &str| number_after(text, key).iter().sum::<u32>();
    // The report of a failure (failover_unhealthy's own deadline).
    let report = one(
        &failover[failover
            .find("function failover_unhealthy")
            .expect("failover_unhealthy")..],
        "AWS_DEADLINE=$(( SECONDS + ",
    );
    let boot_bound = sum(&boot, "flock -w ")
        + one(&boot, "IMDS_BUDGET=")
        + one(&conf, "attach_timeout=")
        + 12
        + one(&failover, "POST_ATTACH=")
        + report;
    let boot_timeout = timeout("natbake.service");
    assert!(
        boot_timeout >= boot_bound,
        "natbake.service stops configure-pat.sh after {boot_timeout}s, its bounds allow {boot_bound}s"
    );
    // Both locks; the floating interface looked at before and after the
    // repair, and the metrics.
    // The health check's part of natbake-failover.sh (the boot's comes first).
    let health_side = &failover[failover
        .find("function floating_lost")
        .expect("floating_lost")..];
    let health_bound = boot_timeout
        + sum(&health, "flock -w ")
        + 2 * (sum(health_side, "AWS_DEADLINE=$(( SECONDS + ")
            + sum(&metrics, "AWS_DEADLINE=$(( SECONDS + "));
    let health_timeout = timeout("natbake-health.service");
    assert!(
        health_timeout >= health_bound + report,
        "natbake-health.service stops the check after {health_timeout}s, its bounds allow {}s",
        health_bound + report
    );
}
