//! The AWS client of the instance (natbake-aws.sh) on canned answers, no
//! root needed: the rendered file is sourced by bash with `fake_curl.py`
//! in place of curl (answers from a scenario, each call logged), and its
//! functions are called as the scripts call them. Also: the systemd units'
//! start timeouts cover the bounds the scripts set themselves.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::fixtures;
use crate::support::{self, Finished, ScratchDir};

const SITE: &str = "failover-health";
const ENI: &str = "eni-0a1b2c3d4e5f60718";
const MAC: &str = "0e:11:22:33:44:55";

/// A DescribeNetworkInterfaces answer as EC2 gives it: the site's one
/// interface, attached to `i-0123456789abcdef0`.
fn described() -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeNetworkInterfacesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>4a3c1d2e-0000-4000-8000-000000000000</requestId>
    <networkInterfaceSet>
        <item>
            <networkInterfaceId>{ENI}</networkInterfaceId>
            <subnetId>subnet-0123456789abcdef0</subnetId>
            <availabilityZone>us-east-1a</availabilityZone>
            <description>natbake floating interface</description>
            <status>in-use</status>
            <macAddress>{MAC}</macAddress>
            <privateIpAddress>10.0.0.2</privateIpAddress>
            <sourceDestCheck>false</sourceDestCheck>
            <attachment>
                <attachmentId>eni-attach-0123456789abcdef0</attachmentId>
                <instanceId>i-0123456789abcdef0</instanceId>
                <deviceIndex>1</deviceIndex>
                <status>attached</status>
            </attachment>
            <tagSet><item><key>natbake:site</key><value>{SITE}</value></item></tagSet>
        </item>
    </networkInterfaceSet>
</DescribeNetworkInterfacesResponse>"#
    )
}

fn ec2_error(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>x</RequestID></Response>"
    )
}

/// One step of fake_curl.py's scenario.
fn step(pattern: &str, times: u32, rc: i32, status: &str, body: &str) -> Value {
    json!({"match": pattern, "times": times, "rc": rc, "status": status, "body": body})
}

/// natbake-aws.sh of the failover fixture, sourced with a fake curl.
struct Client {
    dir: ScratchDir,
    aws_sh: String,
}

impl Client {
    fn new() -> Client {
        let site = fixtures::render(Path::new("tests/fixtures/valid/failover-health.yaml"));
        let dir = ScratchDir::new("aws-client");
        let aws_sh = dir.path().join("natbake-aws.sh");
        fs::copy(site.site_dir.join("natbake-aws.sh"), &aws_sh).expect("copy natbake-aws.sh");
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).expect("bin");
        std::os::unix::fs::symlink(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/failover/fake_curl.py"),
            bin.join("curl"),
        )
        .expect("link the fake curl");
        Client {
            aws_sh: aws_sh.display().to_string(),
            dir,
        }
    }

    /// Runs `body` in bash after sourcing natbake-aws.sh, with the
    /// scenario `steps`; `log` prints "LOG: ..." on stderr.
    fn run(&self, steps: &[Value], body: &str) -> Finished {
        let p = self.dir.path();
        fs::write(
            p.join("scenario.json"),
            Value::Array(steps.to_vec()).to_string(),
        )
        .expect("write the scenario");
        let _ = fs::remove_file(p.join("curl.log"));
        let script = format!(
            "set -u\nfunction log {{ echo \"LOG: $*\" >&2; }}\nSTATE_DIR={state}\n. {aws}\n\
             AWS_REGION=us-east-1 AWS_DOMAIN=amazonaws.com AWS_AZ=us-east-1a AWS_INSTANCE_ID=i-0123456789abcdef0\n\
             AWS_KEY=ASIAFAKE000000000000 AWS_SECRET=fake0secret0fake0secret0fake0secret0fake AWS_TOKEN=fakeSessionToken0000\n\
             AWS_IMDS_TOKEN=fake-imds-token\n{body}\n",
            state = p.join("state").display(),
            aws = self.aws_sh,
        );
        let path = format!(
            "{}:{}",
            p.join("bin").display(),
            std::env::var("PATH").unwrap()
        );
        support::run_bounded(
            Command::new("bash")
                .args(["-c", &script])
                .env("PATH", path)
                .env("FAKE_CURL_SCENARIO", p.join("scenario.json"))
                .env("FAKE_CURL_LOG", p.join("curl.log")),
            b"",
            Duration::from_secs(60),
        )
    }

    /// fake_curl.py's log: one "<action or URL> max-time=<value>" per call.
    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("curl.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

const DESCRIBE: &str = "AWS_DEADLINE=$(( SECONDS + 20 ))\nfloating_describe failover-health\necho \"rc=$? id=$FLOATING_ID mac=$FLOATING_MAC holder=$FLOATING_HOLDER\"\necho \"message=$AWS_MESSAGE\"";

/// An answer cut in the middle of its body (a reset, or curl's time limit)
/// arrives with status 200 and half the XML: it is no answer, tried again,
/// and the whole one is read.
#[test]
fn an_answer_cut_short_is_tried_again() {
    let c = Client::new();
    let full = described();
    let half = &full[..full.len() / 2];
    for (rc, what) in [
        (18, "reset mid-body"),
        (28, "over curl's limit"),
        (0, "no end"),
    ] {
        let run = c.run(
            &[
                step("DescribeNetworkInterfaces", 1, rc, "200", half),
                step("DescribeNetworkInterfaces", 5, 0, "200", &full),
            ],
            DESCRIBE,
        );
        assert!(
            run.stdout.contains(&format!(
                "rc=0 id={ENI} mac={MAC} holder=i-0123456789abcdef0"
            )),
            "{what}: {}",
            run.explain()
        );
        assert_eq!(c.calls().len(), 2, "{what}: {:?}", c.calls());
    }
}

/// An API that never answers wholly ends at the deadline with a message
/// that names the interface's tag and zone and what the last try got.
#[test]
fn no_answer_names_the_interface() {
    let c = Client::new();
    let run = c.run(
        &[step("DescribeNetworkInterfaces", 100, 56, "200", "<Desc")],
        "AWS_DEADLINE=$(( SECONDS + 3 ))\nfloating_describe failover-health\necho \"rc=$? error=$AWS_ERROR\"\necho \"message=$AWS_MESSAGE\"",
    );
    assert!(
        run.stdout.contains("rc=2 error=natbake.NoAnswer"),
        "{}",
        run.explain()
    );
    for needle in ["natbake:site=failover-health", "us-east-1a", "curl exit 56"] {
        assert!(run.stdout.contains(needle), "{needle}: {}", run.explain());
    }
}

/// curl takes `--max-time 0` for no limit at all: the seconds left are
/// read once per try, so a deadline that runs out between the check and
/// the call is the end, never a call without a limit. (The clock is played
/// by aws_left itself: one second left at its first reading, none after.)
#[test]
fn a_deadline_that_ran_out_is_never_no_limit() {
    let c = Client::new();
    let ticks = c.dir.path().join("ticks");
    let body = format!(
        r#"function aws_left {{
  local n v
  n=$(cat {ticks} 2>/dev/null || echo 0)
  echo $(( n + 1 )) >{ticks}
  v=$(( n == 0 ? 1 : 0 ))
  if [ "$#" -ge 2 ]; then printf -v "$1" '%s' "$v"; else echo "$v"; fi
  [ "$v" -gt 0 ]
}}
for call in "aws_imds meta-data/instance-id" "aws_query ec2 Action=DescribeInstances" "aws_imds_token_again"; do
  rm -f {ticks}
  case $call in
    aws_imds_token_again) AWS_IMDS_TOKEN=''; aws_imds_token ;;
    *) $call ;;
  esac
  echo "$call: $?"
done"#,
        ticks = ticks.display()
    );
    let run = c.run(&[], &body);
    assert!(run.success(), "{}", run.explain());
    let calls = c.calls();
    assert!(!calls.is_empty(), "{}", run.explain());
    for call in &calls {
        let limit: i64 = call
            .rsplit("max-time=")
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no --max-time in {call}"));
        assert!(
            limit > 0,
            "curl ran without a time limit: {call}\n{calls:?}"
        );
    }
}

/// A brand-new role: the API refuses the first calls (AuthFailure,
/// UnauthorizedOperation) while IAM catches up. They are tried again,
/// loudly, and the call succeeds.
#[test]
fn a_new_role_is_given_time() {
    let c = Client::new();
    let run = c.run(
        &[
            step(
                "DescribeNetworkInterfaces",
                1,
                0,
                "401",
                &ec2_error(
                    "AuthFailure",
                    "AWS was not able to validate the provided access credentials",
                ),
            ),
            step(
                "DescribeNetworkInterfaces",
                1,
                0,
                "403",
                &ec2_error(
                    "UnauthorizedOperation",
                    "You are not authorized to perform this operation.",
                ),
            ),
            step("DescribeNetworkInterfaces", 1, 0, "200", &described()),
        ],
        DESCRIBE,
    );
    assert!(
        run.stdout.contains(&format!("rc=0 id={ENI}")),
        "{}",
        run.explain()
    );
    assert!(
        run.stderr
            .contains("LOG: WARNING: DescribeNetworkInterfaces was refused (AuthFailure")
            && run.stderr.contains("trying again for up to 60s"),
        "{}",
        run.explain()
    );
}

/// ... but not forever: a permission that is really missing fails once the
/// patience is over, long before the deadline, with EC2's own error.
#[test]
fn a_missing_permission_still_fails() {
    let c = Client::new();
    let run = c.run(
        &[step(
            "DescribeNetworkInterfaces",
            1000,
            0,
            "403",
            &ec2_error(
                "UnauthorizedOperation",
                "You are not authorized to perform this operation.",
            ),
        )],
        &format!("AWS_AUTH_PATIENCE=3\n{}", DESCRIBE.replace("+ 20", "+ 60")),
    );
    assert!(run.stdout.contains("rc=1 "), "{}", run.explain());
    assert!(
        run.stdout
            .contains("UnauthorizedOperation: You are not authorized"),
        "{}",
        run.explain()
    );
    assert!(run.elapsed < Duration::from_secs(20), "{}", run.explain());
}

/// A new instance profile: metadata has no role for a while, then
/// credentials; they are waited for, loudly.
#[test]
fn credentials_of_a_new_role_are_waited_for() {
    let creds = r#"{
  "Code" : "Success",
  "LastUpdated" : "2026-12-06T05:00:00Z",
  "Type" : "AWS-HMAC",
  "AccessKeyId" : "ASIAEXAMPLE000000000",
  "SecretAccessKey" : "secret0secret0secret0secret0secret0secre",
  "Token" : "IQoJb3JpZ2luX2VjEXAMPLEtoken0000",
  "Expiration" : "2026-12-06T11:00:00Z"
}"#;
    let c = Client::new();
    let run = c.run(
        &[
            step("security-credentials/ $", 2, 0, "404", ""),
            step("security-credentials/ $", 1, 0, "200", "natbake-role"),
            step("security-credentials/natbake-role $", 1, 0, "200", creds),
        ],
        "AWS_DEADLINE=$(( SECONDS + 30 ))\naws_credentials\necho \"rc=$? key=$AWS_KEY\"",
    );
    assert!(
        run.stdout.contains("rc=0 key=ASIAEXAMPLE000000000"),
        "{}",
        run.explain()
    );
    assert!(
        run.stderr
            .contains("LOG: WARNING: instance metadata shows no IAM role for this instance"),
        "{}",
        run.explain()
    );
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
    let (boot, health, aws, failover, metrics, conf) = (
        read("configure-pat.sh"),
        read("natbake-health.sh"),
        read("natbake-aws.sh"),
        read("natbake-failover.sh"),
        read("natbake-metrics.sh"),
        read("site.conf"),
    );
    let timeout = |unit: &str| number_after(&read(unit), "TimeoutStartSec=")[0];
    let one = |text: &str, key: &str| number_after(text, key)[0];
    let sum = |text: &str, key: &str| number_after(text, key).iter().sum::<u32>();
    // The report of a failure (failover_unhealthy's own deadline).
    let report = one(&aws, "AWS_DEADLINE=$(( SECONDS + ");
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
