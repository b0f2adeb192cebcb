//! `stack.cfn.yaml`: every fixture's template passes cfn-lint; its
//! security group is `security-group.json`; its role grants exactly what
//! the scripts call (nothing without failover); spec text stays text; and
//! two AL2023 stacks, with and without failover, deploy with the AWS CLI
//! into moto's CloudFormation and make what they say (checked through the
//! EC2, IAM and Auto Scaling APIs by `stack_deploy.py`); the stacks with
//! failover then roll a newly published image out with a stack update.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::failover::lab::moto_venv;
use crate::fixtures::{self, fixture_spec, render, valid_specs};
use crate::netlab::in_ns;
use crate::support::{self, ScratchDir};

const STACK: &str = "stack.cfn.yaml";

fn template(site_dir: &Path) -> Value {
    let text = std::fs::read_to_string(site_dir.join(STACK)).expect("stack.cfn.yaml is written");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{STACK} is not YAML: {e}"))
}

fn resources_of_type<'a>(t: &'a Value, kind: &str) -> Vec<&'a Value> {
    t["Resources"]
        .as_object()
        .expect("Resources")
        .values()
        .filter(|r| r["Type"] == kind)
        .collect()
}

/// Every string under `v` that is the argument of an `Fn::Sub`.
fn substitutions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "Fn::Sub" {
                    out.push(v.as_str().expect("Fn::Sub of a string").to_owned());
                } else {
                    substitutions(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| substitutions(v, out)),
        _ => {}
    }
}

#[test]
fn every_stack_passes_cfn_lint_without_a_warning() {
    let sites: Vec<_> = valid_specs().iter().map(|s| render(&s.path)).collect();
    support::assert_cfn_lint_clean(sites.iter().map(|s| s.site_dir.join(STACK)));
}

/// The role's policy holds exactly the actions the site's scripts call
/// (`failover::actions`, the list a test compares with the scripts' calls);
/// a site whose scripts call no AWS API has no role, no profile and no
/// `Fn::Sub` but the recover action's ARN.
#[test]
fn the_instance_may_call_exactly_what_its_scripts_call() {
    let mut with_role = 0;
    for spec in valid_specs() {
        let name = &spec.label;
        let loaded = natbake::validate::load(&spec.path).unwrap();
        let called: BTreeSet<String> = natbake::failover::actions(&loaded)
            .iter()
            .map(|a| format!("{}:{}", a.service, a.name))
            .collect();
        let site = render(&spec.path);
        let t = template(&site.site_dir);
        let launch = resources_of_type(&t, "AWS::EC2::LaunchTemplate");
        let profile = launch[0]["Properties"]["LaunchTemplateData"].get("IamInstanceProfile");
        if called.is_empty() {
            for kind in [
                "AWS::IAM::Role",
                "AWS::IAM::InstanceProfile",
                "AWS::IAM::Policy",
            ] {
                assert!(resources_of_type(&t, kind).is_empty(), "{name}: {kind}");
            }
            assert!(profile.is_none(), "{name}");
            if loaded.failover.is_none() {
                let mut subs = Vec::new();
                substitutions(&t, &mut subs);
                subs.sort();
                subs.dedup();
                assert_eq!(
                    subs,
                    ["arn:${AWS::Partition}:automate:${AWS::Region}:ec2:recover"],
                    "{name}"
                );
            }
            continue;
        }
        with_role += 1;
        let roles = resources_of_type(&t, "AWS::IAM::Role");
        assert_eq!(roles.len(), 1, "{name}");
        let mut granted = BTreeSet::new();
        for p in roles[0]["Properties"]["Policies"].as_array().unwrap() {
            for s in p["PolicyDocument"]["Statement"].as_array().unwrap() {
                for a in s["Action"].as_array().unwrap() {
                    assert!(
                        granted.insert(a.as_str().unwrap().to_owned()),
                        "{name}: {a} twice"
                    );
                }
            }
        }
        assert_eq!(granted, called, "{name}");
        assert_eq!(
            profile.unwrap()["Arn"]["Fn::GetAtt"],
            serde_json::json!(["InstanceProfile", "Arn"]),
            "{name}"
        );
    }
    assert!(
        with_role >= 2,
        "fixtures with failover and with metrics have roles"
    );
}

/// One CloudFormation rule per source of each `security-group.json`
/// permission, descriptions included; no ingress without the file.
#[test]
fn the_stacks_security_group_is_security_group_json() {
    for spec in valid_specs() {
        let site = render(&spec.path);
        let t = template(&site.site_dir);
        let group = &resources_of_type(&t, "AWS::EC2::SecurityGroup")[0]["Properties"];
        let mut in_stack = Vec::new();
        for r in group["SecurityGroupIngress"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let all = r["IpProtocol"] == "-1";
            in_stack.push((
                r["IpProtocol"].clone(),
                if all {
                    Value::Null
                } else {
                    r["FromPort"].clone()
                },
                if all {
                    Value::Null
                } else {
                    r["ToPort"].clone()
                },
                r["CidrIp"].clone(),
                r["Description"].clone(),
            ));
        }
        let mut in_file = Vec::new();
        if let Ok(bytes) = std::fs::read(site.site_dir.join("security-group.json")) {
            let perms: Value = serde_json::from_slice(&bytes).unwrap();
            for p in perms.as_array().unwrap() {
                for r in p["IpRanges"].as_array().unwrap() {
                    in_file.push((
                        p["IpProtocol"].clone(),
                        p.get("FromPort").cloned().unwrap_or(Value::Null),
                        p.get("ToPort").cloned().unwrap_or(Value::Null),
                        r["CidrIp"].clone(),
                        r["Description"].clone(),
                    ));
                }
            }
        }
        assert_eq!(in_stack, in_file, "{}", spec.label);
    }
}

/// A new image, user data or instance type reaches the running NAT: the
/// group rolls on a launch template change, and never launches before it
/// terminates, since the floating interface can be attached to one
/// instance at a time (a second instance would wait for it, and a
/// replacing update would keep the old group, and the interface, until
/// the new one is up). Every launch takes its image from the published
/// parameter unless a fixed id overrides it.
#[test]
fn the_group_rolls_a_new_launch_template_out_terminating_first() {
    let mut groups = 0;
    for spec in valid_specs() {
        let site = render(&spec.path);
        let t = template(&site.site_dir);
        let name = &spec.label;
        let image = serde_json::json!({"Fn::If": ["HasImageId", {"Ref": "ImageId"}, {"Ref": "ImageParameter"}]});
        let parameter = &t["Parameters"]["ImageParameter"];
        assert_eq!(
            parameter["Type"], "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
            "{name}"
        );
        let loaded = natbake::validate::load(&spec.path).unwrap();
        let official = t["Parameters"].get("OfficialImageId").is_some();
        if !official {
            assert_eq!(parameter["Default"], loaded.image_parameter(), "{name}");
        }
        for lt in resources_of_type(&t, "AWS::EC2::LaunchTemplate") {
            assert_eq!(
                lt["Properties"]["LaunchTemplateData"]["ImageId"], image,
                "{name}"
            );
        }
        for group in resources_of_type(&t, "AWS::AutoScaling::AutoScalingGroup") {
            groups += 1;
            let p = &group["Properties"];
            let max: i64 = p["MaxSize"].as_str().unwrap().parse().unwrap();
            let rolling = &group["UpdatePolicy"]["AutoScalingRollingUpdate"];
            assert_eq!(rolling["MaxBatchSize"], 1, "{name}");
            let min_in_service = rolling["MinInstancesInService"].as_i64().unwrap();
            // A standby pair replaces one of its two at a time and keeps
            // the other in service; never more than the group holds (a
            // rolling update would then launch a third first).
            let pair = loaded.failover.and_then(|f| f.standby).is_some();
            let (want_min, want_max, want_healthy) = if pair { (1, 2, 50) } else { (0, 1, 0) };
            assert!(
                min_in_service == want_min && max == want_max,
                "{name}: a rolling update that keeps {min_in_service} of {max} in service launches first"
            );
            assert_ne!(
                group["UpdatePolicy"]["AutoScalingReplacingUpdate"]["WillReplace"], true,
                "{name}: a replacing update starts a second group"
            );
            let maintenance = &p["InstanceMaintenancePolicy"];
            assert_eq!(maintenance["MinHealthyPercentage"], want_healthy, "{name}");
            assert_eq!(
                maintenance["MaxHealthyPercentage"], 100,
                "{name}: over 100 launches before it terminates"
            );
            assert_eq!(
                p["LaunchTemplate"]["Version"]["Fn::GetAtt"],
                serde_json::json!(["LaunchTemplate", "LatestVersionNumber"]),
                "{name}: `$Latest` or a fixed version never changes, so never rolls"
            );
        }
    }
    assert!(groups >= 2, "the failover fixtures have groups");
}

/// Free text reaches the template as YAML text, byte for byte, and never
/// inside `Fn::Sub`, where `${…}` would be substituted.
#[test]
fn hostile_text_stays_text_in_the_stack() {
    let spec = fixture_spec("hostile-text");
    let site = render(&spec);
    let t = template(&site.site_dir);
    let raw: Value = serde_saphyr::from_str(&std::fs::read_to_string(&spec).unwrap()).unwrap();
    let description = raw["description"].as_str().unwrap();
    // `${` in it: cfn-lint would take it for a substitution, so the stack's
    // description leaves it out.
    assert!(description.contains("${"), "{description}");
    assert_eq!(
        t["Description"].as_str().unwrap(),
        "natbake NAT instance of site hostile-text"
    );
    let mut subs = Vec::new();
    substitutions(&t, &mut subs);
    for s in subs {
        assert!(!s.contains(description), "{s}");
        assert!(s.starts_with("arn:${AWS::Partition}:"), "{s}");
    }
}

/// What CloudFormation calls, as the deploying user, for each resource
/// type the stacks hold: docs/stack.md's list must name all of it.
const DEPLOY_ACTIONS: &[(&str, &[&str])] = &[
    (
        "AWS::EC2::SecurityGroup",
        &[
            "ec2:CreateSecurityGroup",
            "AuthorizeSecurityGroupIngress",
            "RevokeSecurityGroupEgress",
            "CreateTags",
        ],
    ),
    (
        "AWS::EC2::EIP",
        &["AllocateAddress", "ReleaseAddress", "AssociateAddress"],
    ),
    (
        "AWS::EC2::EIPAssociation",
        &["AssociateAddress", "DisassociateAddress"],
    ),
    (
        "AWS::EC2::NetworkInterface",
        &["CreateNetworkInterface", "ModifyNetworkInterfaceAttribute"],
    ),
    ("AWS::EC2::Route", &["CreateRoute"]),
    (
        "AWS::EC2::SecurityGroupIngress",
        &[
            "AuthorizeSecurityGroupIngress",
            "RevokeSecurityGroupIngress",
        ],
    ),
    (
        "AWS::AutoScaling::LifecycleHook",
        &[
            "PutLifecycleHook",
            "DeleteLifecycleHook",
            "DescribeLifecycleHooks",
        ],
    ),
    (
        "AWS::EC2::LaunchTemplate",
        &["CreateLaunchTemplate", "ssm:GetParameters"],
    ),
    (
        "AWS::EC2::Instance",
        &[
            "RunInstances",
            "ModifyInstanceAttribute",
            "TerminateInstances",
        ],
    ),
    (
        "AWS::AutoScaling::AutoScalingGroup",
        &[
            "autoscaling:CreateAutoScalingGroup",
            "UpdateAutoScalingGroup",
            "EnableMetricsCollection",
            "DeleteAutoScalingGroup",
            "AWSServiceRoleForAutoScaling",
            "iam:CreateServiceLinkedRole",
            // The update policy's rolling update.
            "SuspendProcesses",
            "ResumeProcesses",
            "TerminateInstanceInAutoScalingGroup",
            "DescribeScalingActivities",
            "CreateLaunchTemplateVersion",
        ],
    ),
    (
        "AWS::IAM::Role",
        &[
            "iam:CreateRole",
            "GetRole",
            "TagRole",
            "PutRolePolicy",
            "GetRolePolicy",
            "DeleteRole",
            "DeleteRolePolicy",
            "PassRole",
        ],
    ),
    (
        "AWS::IAM::InstanceProfile",
        &[
            "CreateInstanceProfile",
            "GetInstanceProfile",
            "AddRoleToInstanceProfile",
            "RemoveRoleFromInstanceProfile",
            "DeleteInstanceProfile",
        ],
    ),
    (
        "AWS::CloudWatch::Alarm",
        &[
            "cloudwatch:PutMetricAlarm",
            "DescribeAlarms",
            "DeleteAlarms",
        ],
    ),
];

/// The stack's reference (`docs/stack.md`) lists the deploying user's
/// permissions: they cover every resource type of every stack, and a stack
/// whose alarm has an EC2 action (the recover alarm) needs CloudWatch's
/// service-linked role.
#[test]
fn the_readme_lists_what_deploying_each_stack_needs() {
    let readme = std::fs::read_to_string(fixtures::repo().join("docs/stack.md")).unwrap();
    let start = readme
        .find("**The deploying user needs**")
        .expect("docs/stack.md lists the deploying user's permissions");
    let section = &readme[start..];
    let section = &section[..section.find("\n\n**").unwrap_or(section.len())];
    let mut kinds = BTreeSet::new();
    let mut ec2_action = false;
    for spec in valid_specs() {
        let t = template(&render(&spec.path).site_dir);
        for r in t["Resources"].as_object().unwrap().values() {
            kinds.insert(r["Type"].as_str().unwrap().to_owned());
        }
        ec2_action |= t.to_string().contains(":ec2:recover");
    }
    for kind in &kinds {
        let (_, actions) = DEPLOY_ACTIONS
            .iter()
            .find(|(k, _)| k == kind)
            .unwrap_or_else(|| {
                panic!("{kind} is not in DEPLOY_ACTIONS (and docs/stack.md's list)")
            });
        for a in *actions {
            assert!(
                section.contains(&format!("`{a}`")) || section.contains(&format!(":{a}`")),
                "docs/stack.md's list lacks `{a}` ({kind})"
            );
        }
    }
    assert!(ec2_action, "a fixture has the recover alarm");
    for a in [
        "iam:CreateServiceLinkedRole",
        "AWSServiceRoleForCloudWatchEvents",
    ] {
        assert!(
            section.contains(a),
            "docs/stack.md's list lacks {a} (the recover alarm)"
        );
    }
}

/// A spec whose forwards have `n` sources in all (at most 1,000 each).
fn spec_with_sources(dir: &Path, n: u32) -> std::path::PathBuf {
    let forwards = crate::fixtures::forwards_with_sources(n, 1000);
    let spec = dir.join(format!("wide-{n}.yaml"));
    std::fs::write(
        &spec,
        format!("version: 1\nsite: wide\nvpc_cidrs: [10.0.0.0/16]\nforwards:\n{forwards}"),
    )
    .unwrap();
    spec
}

/// Past 51,200 bytes the stack must go through S3, and render says so;
/// past the 1 MB that even S3 uploads may have, no stack is written (none
/// could be deployed), render says why, and the manifest has no stack.
#[test]
fn a_stack_too_large_for_cloudformation_is_not_written() {
    let scratch = ScratchDir::new("stack-size");
    for (sources, expected) in [
        // 400 inbound rules pass 51,200 bytes whether or not the site's
        // user data (which the stack carries when it fits) is there.
        (
            400,
            Some("deploy it with `aws cloudformation deploy --s3-bucket BUCKET ...`"),
        ),
        (7000, None),
    ] {
        let spec = spec_with_sources(scratch.path(), sources);
        let out = scratch.path().join(format!("out-{sources}"));
        let run = support::run(
            fixtures::natbake()
                .arg("render")
                .arg(&spec)
                .arg("-o")
                .arg(&out),
        );
        let stderr = String::from_utf8_lossy(&run.stderr);
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(out.join("wide/manifest.json")).unwrap())
                .unwrap();
        let stack = out.join("wide").join(STACK);
        match expected {
            Some(note) => {
                let bytes = std::fs::metadata(&stack).unwrap().len();
                assert!(bytes > 51_200 && bytes < 1_000_000, "{bytes}");
                assert!(stderr.contains(note), "{stderr}");
                assert_eq!(manifest["stack"]["needs_s3_bucket"], true);
            }
            None => {
                assert!(!stack.exists(), "a stack nothing can deploy is written");
                assert!(
                    stderr.contains(&format!("{STACK} is not written: it would be "))
                        && stderr.contains(
                            "more than the 1000000 bytes (1 MB) CloudFormation takes even from S3"
                        )
                        && stderr.contains("7000 inbound rules")
                        && !stderr.contains("--s3-bucket"),
                    "{stderr}"
                );
                assert!(manifest["stack"].is_null(), "{}", manifest["stack"]);
            }
        }
    }
}

/// moto_server and the namespace it runs in, ended on drop.
struct Moto {
    ns: String,
    server: Option<Child>,
    /// moto_server's output, whose end a failure shows.
    log: std::path::PathBuf,
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            support::kill_group(c.id());
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns])
            .stdin(Stdio::null())
            .status();
    }
}

const MOTO_PORT: u16 = 5000;

impl Moto {
    fn start(log: &Path) -> Moto {
        let server = moto_venv().join("bin/moto_server");
        assert!(
            server.exists(),
            "{} is missing: scripts/test.sh installs moto 5.2.5",
            server.display()
        );
        let ns = format!("nbstack-{}", support::unique_id());
        support::run(Command::new("ip").args(["netns", "add", &ns]));
        let mut moto = Moto {
            ns,
            server: None,
            log: log.to_owned(),
        };
        support::run(Command::new("ip").args(["-n", &moto.ns, "link", "set", "lo", "up"]));
        let out = std::fs::File::create(log).expect("moto log");
        let err = out.try_clone().expect("moto log");
        let server = in_ns(
            &moto.ns,
            &moto_venv().join("bin/moto_server").display().to_string(),
        )
        .args(["-H", "127.0.0.1", "-p", &MOTO_PORT.to_string()])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .expect("start moto_server");
        moto.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(120);
        let local = format!("127.0.0.1:{MOTO_PORT}");
        loop {
            let out = support::output_of(in_ns(&moto.ns, "ss").args(["-Hlnt"]));
            if String::from_utf8_lossy(&out.stdout).contains(&local) {
                return moto;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server does not listen (see {})",
                log.display()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn deploy(&self, site_dir: &Path, stack: &str, image_parameter: &str, roll: bool) -> Value {
        let script = fixtures::repo().join("tests/it/stack_deploy.py");
        let done = support::run_bounded(
            in_ns(
                &self.ns,
                &moto_venv().join("bin/python3").display().to_string(),
            )
            .arg(&script)
            .args(["--endpoint", &format!("http://127.0.0.1:{MOTO_PORT}")])
            .args(["--aws", "/usr/bin/aws", "--stack", stack])
            .args(["--image-parameter", image_parameter])
            .args(roll.then_some("--roll"))
            .arg("--site-dir")
            .arg(site_dir),
            b"",
            Duration::from_secs(300),
        );
        if !done.success() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(60)..].join("\n");
            panic!(
                "deploying {stack}: {}\n--- moto_server's last lines ---\n{tail}",
                done.explain()
            );
        }
        serde_json::from_str(done.stdout.trim()).expect("stack_deploy.py prints JSON")
    }
}

/// Both shapes of the stack, deployed for real into moto's CloudFormation:
/// the checks are in `stack_deploy.py`. Only AL2023 can deploy there: moto
/// knows no other os's public image parameter, and resolves the parameter's
/// default even when a value is given.
#[test]
fn al2023_stacks_deploy_into_moto_with_the_aws_cli() {
    if !support::require_root("stack deploy into moto (network namespace)") {
        return;
    }
    let scratch = ScratchDir::new("stack");
    let moto = Moto::start(&scratch.path().join("moto.out"));

    // The seed's site (AL2023) as it is, but without egress: moto's
    // CloudFormation cannot make an all-traffic rule, which has no ports
    // (it fails on the missing FromPort); cfn-lint and the test above
    // check that rule.
    let seed = std::fs::read_to_string(fixture_spec("seed-oracle")).unwrap();
    assert!(
        !seed.contains("os:"),
        "the seed's site runs the default os, AL2023"
    );
    // With failover the user data is too large for EC2 (with or without
    // the health check), and the stack launches the baked AMI its
    // parameter names; without failover, the official image with user
    // data.
    for (site, extra, image) in [
        ("stack-single", "", "official, with user data"),
        (
            "stack-failover",
            "failover:\n  floating_eni: true\nhealth:\n  enabled: false\n",
            "baked",
        ),
        (
            "stack-failover-health",
            "failover:\n  floating_eni: true\n",
            "baked",
        ),
        // A warm standby pair: two instances, the rules between them and
        // the termination hook (checked by stack_deploy.py).
        (
            "stack-standby",
            "failover:\n  floating_eni: true\n  standby: true\n",
            "baked",
        ),
    ] {
        let spec = scratch.path().join(format!("{site}.yaml"));
        let text = seed.replace("site: seed-oracle", &format!("site: {site}"));
        std::fs::write(&spec, format!("{text}egress: false\n{extra}")).unwrap();
        let rendered = render(&spec);
        if extra.contains("standby") {
            moto_pair_rule_ports(&rendered.site_dir);
        }
        let parameter = natbake::validate::load(&spec).unwrap().image_parameter();
        // With failover, a new image is published and rolled out.
        let roll = !extra.is_empty();
        let seen = moto.deploy(
            &rendered.site_dir,
            &format!("natbake-{site}"),
            &parameter,
            roll,
        );
        assert_eq!(seen["ingress_rules"], 1, "{seen}");
        // The seed's one source, routed back through the NAT.
        assert_eq!(seen["target_routes"], 1, "{seen}");
        assert_eq!(seen["role"].is_string(), !extra.is_empty(), "{seen}");
        assert_eq!(seen["image"], image, "{seen}");
        assert_eq!(
            seen["standby"].is_object(),
            extra.contains("standby"),
            "{seen}"
        );
        if roll {
            let r = &seen["roll"];
            assert_eq!(r["before"]["user_data"], image != "baked", "{seen}");
            assert_ne!(r["before"]["image"], r["after"]["image"], "{seen}");
            assert_eq!(r["after"]["user_data"], false, "{seen}");
            eprintln!("{site}: rolled out {}", r);
        }
    }
}

/// moto 5.2.5's CloudFormation cannot make an ingress rule without ports
/// (it fails on the missing `FromPort`), as the pair's VRRP rule is
/// (IP protocol 112 has no ports; cfn-lint warns that ports given for it
/// are ignored, and AWS ignores them). The deploy gives it EC2's "all"
/// range, -1 to -1, which AWS accepts and moto keeps.
fn moto_pair_rule_ports(site_dir: &Path) {
    let path = site_dir.join("stack.cfn.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let rule = "      IpProtocol: \"112\"\n";
    assert_eq!(text.matches(rule).count(), 1, "one VRRP rule");
    let text = text.replace(
        rule,
        &format!("{rule}      FromPort: -1\n      ToPort: -1\n"),
    );
    std::fs::write(&path, text).unwrap();
}
