//! Every artifact of every valid spec, checked by the program that
//! consumes it. A missing tool is a failure, not a skip: the README's test
//! command installs them all.

use crate::fixtures::{Spec, files, render, user_data_text, valid_specs};
use crate::manifest::Manifest;
use crate::support::{require_root, run, run_stdout};
use natbake::cidr::Cidr;
use natbake::render::artifact::{
    HEALTH, HEALTH_CRON, HEALTH_TIMER, HEALTH_UNIT, LIB, SCRIPT, UNIT,
};
use natbake::render::install_path;
use serde::Deserialize;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

/// Amazon-plugin settings newer than the Packer 1.6.6 that Debian ships,
/// which `packer validate` there rejects as unknown. The test removes
/// exactly these before validating; everything else must pass as written.
/// - `imds_support`: makes the AMI require IMDSv2 (amazon-ebs has it
///   since plugin 1.2.2).
/// - `metadata_options`: requires IMDSv2 on the build instance (newer
///   than Packer 1.6.6; in every release of the separate plugin).
/// - `include_deprecated`: lets the source lookup see deprecated images,
///   for the legacy NAT AMI only (plugin 1.2.8).
/// - `deprecate_at`: when EC2 marks the AMI and its copies deprecated
///   (newer than Packer 1.6.6; copies are deprecated too since plugin 1.0.2).
const PACKER_166_UNKNOWN: &[&str] = &[
    "imds_support",
    "metadata_options",
    "include_deprecated",
    "deprecate_at",
];

/// Settings of the Amazon plugin that came after its first release, and
/// the release that brought each, from the plugin's changelog and pull
/// requests: `deprecate_at` reaching the `ami_regions` copies (#138,
/// released in 1.0.2), `imds_support` on amazon-ebs (hashicorp/packer-plugin-amazon
/// #346, released in 1.2.2) and `include_deprecated` in
/// `source_ami_filter` (#404, released in 1.2.8). `plugins.pkr.hcl` must
/// require at least the newest of those that the templates use.
const PLUGIN_SETTING_SINCE: &[(&str, (u32, u32, u32))] = &[
    ("deprecate_at", (1, 0, 2)),
    ("imds_support", (1, 2, 2)),
    ("include_deprecated", (1, 2, 8)),
];

fn each_site(check: impl Fn(&Spec, &Path)) {
    for spec in valid_specs() {
        let site = render(&spec.path);
        check(&spec, &site.site_dir);
    }
}

/// The instance's scripts are the same for every site: shellcheck reads
/// their sources in `instance/` (the installed bytes lose the directives
/// with the comments; a unit test proves they parse to the same program),
/// and `bash -n` every site's installed copy, with provision.sh.
#[test]
fn scripts_pass_shellcheck_and_bash_n() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for s in natbake::render::instance::SCRIPTS {
        let path = root.join("instance").join(s.artifact);
        run(Command::new("shellcheck").args(["-f", "gcc"]).arg(&path));
    }
    each_site(|_, dir| {
        run(Command::new("shellcheck")
            .args(["-f", "gcc"])
            .arg(dir.join("provision.sh")));
        for s in natbake::render::instance::SCRIPTS
            .iter()
            .map(|s| s.artifact)
            .chain(["provision.sh"])
        {
            let path = dir.join(s);
            if path.exists() {
                run(Command::new("bash").arg("-n").arg(&path));
            }
        }
    });
}

#[test]
fn rulesets_load_into_a_throwaway_namespace() {
    if !require_root("loading rules.v4 with iptables-restore in a network namespace") {
        return;
    }
    each_site(|spec, dir| {
        // A real load, not --test: on the nf_tables backend --test lets
        // unknown targets and chains through.
        // The sets first, as configure-pat.sh loads them: a rule that
        // matches a missing set is refused.
        let out = run(Command::new("unshare").args(["-n", "sh", "-c"]).arg(
            "ipset restore <\"$2\" && iptables-restore --noflush \"$1\" && iptables-save -t nat && iptables-save -t filter",
        ).arg("sh").arg(dir.join("rules.v4")).arg(dir.join("ipsets.v4")));
        let saved = String::from_utf8_lossy(&out.stdout);
        assert!(
            saved.contains(":FORWARD DROP"),
            "{}: FORWARD policy is not DROP",
            spec.label
        );
    });
}

#[test]
fn user_data_passes_cloud_init_schema() {
    each_site(|spec, dir| {
        let Some(text) = user_data_text(dir) else {
            // Too many forwards, or the health check with failover or
            // metrics (their scripts do not fit 16 KiB even compressed).
            let yaml = std::fs::read_to_string(&spec.path).unwrap();
            // A standby pair runs from the image only.
            assert!(
                spec.label.contains("too-big")
                    || yaml.contains("standby: true")
                    || (yaml.contains("\nhealth:")
                        && (yaml.contains("\nfailover:") || yaml.contains("\nmetrics:"))),
                "{} has no user data",
                spec.label
            );
            return;
        };
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), &text).unwrap();
        let out = run(Command::new("cloud-init")
            .args(["schema", "-c"])
            .arg(tmp.path()));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Valid cloud-config"),
            "{}",
            spec.label
        );
        assert!(text.len() > 16_384 || dir.join("user-data.yaml").exists());
    });
}

#[derive(Deserialize)]
struct CloudConfig {
    write_files: Vec<WriteFile>,
}

#[derive(Deserialize)]
struct WriteFile {
    path: String,
    permissions: String,
    content: String,
    encoding: Option<String>,
}

#[test]
fn user_data_writes_the_standalone_files_byte_for_byte() {
    each_site(|spec, dir| {
        let Some(text) = user_data_text(dir) else {
            return;
        };
        let config: CloudConfig = serde_saphyr::from_str(&text).unwrap();
        let manifest = Manifest::load(dir);
        let installed: Vec<_> = manifest
            .artifacts
            .iter()
            .filter_map(|a| Some((a, a.install_path.as_deref()?)))
            .collect();
        // Every installed file once (the user data lists the instance
        // scripts together, so not in the manifest's order).
        assert_eq!(config.write_files.len(), installed.len(), "{}", spec.label);
        for wf in &config.write_files {
            let mut same = installed.iter().filter(|(_, path)| *path == wf.path);
            let (Some(&(art, _)), None) = (same.next(), same.next()) else {
                panic!("{}: {} is not one installed file", spec.label, wf.path);
            };
            assert_eq!(
                config
                    .write_files
                    .iter()
                    .filter(|w| w.path == wf.path)
                    .count(),
                1,
                "{}: {} written twice",
                spec.label,
                wf.path
            );
            assert_eq!(wf.permissions, art.mode, "{}", spec.label);
            let want = std::fs::read(dir.join(&art.path)).unwrap();
            let got = match wf.encoding.as_deref() {
                None => wf.content.clone().into_bytes(),
                Some("b64") => decode_base64(&wf.content),
                Some("gz+b64") => gunzip(&decode_base64(&wf.content)),
                Some(other) => panic!("unexpected encoding {other}"),
            };
            assert!(
                got == want,
                "{}: {} differs from the standalone file",
                spec.label,
                wf.path
            );
        }
    });
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out)
        .expect("gz+b64 content is gzip");
    out
}

pub(crate) fn decode_base64(text: &str) -> Vec<u8> {
    run(Command::new("sh").args(["-c", "printf %s \"$1\" | base64 -d", "sh", text])).stdout
}

#[test]
fn packer_files_are_formatted_and_valid() {
    let removed = std::cell::RefCell::new(std::collections::BTreeSet::new());
    each_site(|spec, dir| {
        for file in ["plugins.pkr.hcl", "nat-ami.pkr.hcl"] {
            run(packer()
                .args(["fmt", "-check", "-diff"])
                .arg(dir.join(file)));
        }
        let text = std::fs::read_to_string(dir.join("nat-ami.pkr.hcl")).unwrap();
        let (stripped, names) = strip_unknown_to_packer_166(&text);
        removed.borrow_mut().extend(names);
        let work = tempfile::tempdir().unwrap();
        std::fs::write(work.path().join("nat-ami.pkr.hcl"), stripped).unwrap();
        let out = run(packer().current_dir(work.path()).args([
            "validate",
            "-var",
            "region=us-east-1",
            "nat-ami.pkr.hcl",
        ]));
        assert!(
            out.stderr.is_empty(),
            "{}: {}",
            spec.label,
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let mut listed: Vec<&str> = PACKER_166_UNKNOWN.to_vec();
    listed.sort();
    assert_eq!(
        removed.into_inner().into_iter().collect::<Vec<_>>(),
        listed,
        "the templates no longer use some of these settings; update the list"
    );
}

/// `packer init` keeps an installed plugin that satisfies the required
/// version, and `packer build` then refuses any setting that plugin does
/// not know: the required version must cover every setting used.
#[test]
fn required_plugin_version_covers_every_setting_used() {
    let used = std::cell::RefCell::new(std::collections::BTreeSet::new());
    each_site(|spec, dir| {
        let plugins = std::fs::read_to_string(dir.join("plugins.pkr.hcl")).unwrap();
        let required = plugins
            .lines()
            .find_map(|l| l.trim().strip_prefix("version = \">= "))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{}: no `version = \">= X.Y.Z\"` line", spec.label));
        let required = version(required);
        let text = std::fs::read_to_string(dir.join("nat-ami.pkr.hcl")).unwrap();
        for &(setting, since) in PLUGIN_SETTING_SINCE {
            if text
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{setting} ")))
            {
                assert!(
                    required >= since,
                    "{}: `{setting}` needs the Amazon plugin {since:?}, but plugins.pkr.hcl requires {required:?}",
                    spec.label
                );
                used.borrow_mut().insert(setting);
            }
        }
    });
    // The table lists nothing the templates no longer use, so the required
    // version can come down with them.
    let listed: std::collections::BTreeSet<&str> =
        PLUGIN_SETTING_SINCE.iter().map(|(s, _)| *s).collect();
    assert_eq!(used.into_inner(), listed);
}

fn version(text: &str) -> (u32, u32, u32) {
    let n: Vec<u32> = text.split('.').map(|p| p.parse().unwrap()).collect();
    assert_eq!(n.len(), 3, "{text} is not X.Y.Z");
    (n[0], n[1], n[2])
}

pub(crate) fn packer() -> Command {
    let mut cmd = Command::new("packer");
    // No update check: the network is closed, and tests do not phone home.
    cmd.env("CHECKPOINT_DISABLE", "1");
    cmd
}

/// Removes the attributes and blocks in [`PACKER_166_UNKNOWN`], and
/// returns which it removed.
pub(crate) fn strip_unknown_to_packer_166(text: &str) -> (String, Vec<&'static str>) {
    let mut out = String::new();
    let mut in_block = false;
    let mut removed = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if in_block {
            in_block = trimmed != "}";
            continue;
        }
        if let Some(name) = PACKER_166_UNKNOWN
            .iter()
            .find(|n| trimmed.starts_with(&format!("{n} ")))
        {
            removed.push(*name);
            in_block = trimmed.ends_with('{');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    (out, removed)
}

#[test]
fn units_pass_systemd_analyze_verify() {
    each_site(|spec, dir| {
        if !dir.join(UNIT).exists() {
            assert!(
                spec.label.contains("legacy"),
                "{} has no {UNIT}",
                spec.label
            );
            return;
        }
        // ExecStart must exist, and the unit's dependencies must resolve:
        // a staged root with the host's system units and the script.
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/lib/systemd")).unwrap();
        run(Command::new("cp")
            .args(["-r", "/usr/lib/systemd/system"])
            .arg(r.join("usr/lib/systemd/")));
        // Every unit with what it runs: the boot unit, and the health
        // check's service and timer.
        let names: Vec<&str> = [UNIT, SCRIPT, LIB, HEALTH, HEALTH_UNIT, HEALTH_TIMER]
            .into_iter()
            .filter(|name| dir.join(name).exists())
            .collect();
        for name in &names {
            let installed = r.join(install_path(name).trim_start_matches('/'));
            std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
            std::fs::copy(dir.join(name), installed).unwrap();
        }
        let units: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| n.ends_with(".service") || n.ends_with(".timer"))
            .collect();
        assert_eq!(
            units.len() == 3,
            dir.join(HEALTH).exists(),
            "{}: the health check comes with its unit and timer",
            spec.label
        );
        let out = run(Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(format!("--root={}", r.display()))
            .args(&units));
        // Unknown keys and bad values only warn, with exit 0.
        assert!(
            out.stderr.is_empty(),
            "{}: {}",
            spec.label,
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// The health check's cron file (systems without systemd) through the
/// syntax check of Debian's cron (`crontab -n`, same parser lineage as
/// cronie's): a system crontab line has a user field that a user crontab
/// has not, so each line is checked with that field taken out, and the
/// field must be root. The commands must parse as shell.
#[test]
fn health_cron_file_passes_crontab_and_runs_the_check_as_root() {
    each_site(|spec, dir| {
        let path = dir.join(HEALTH_CRON);
        if !path.exists() {
            assert!(
                dir.join(UNIT).exists() || !dir.join(HEALTH).exists(),
                "{}: the health check has neither a timer nor a cron file",
                spec.label
            );
            return;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.ends_with('\n'),
            "cron ignores a last line without a newline"
        );
        let mut user_crontab = String::new();
        let mut starts = 0;
        for line in text.lines() {
            if line.starts_with('#') || (line.contains('=') && !line.contains(" root ")) {
                user_crontab.push_str(line);
                user_crontab.push('\n');
                continue;
            }
            let fields: Vec<&str> = line.splitn(7, ' ').collect();
            assert_eq!(fields.len(), 7, "{}: {line}", spec.label);
            assert_eq!(fields[5], "root", "{}: {line}", spec.label);
            assert!(
                fields[6].contains(install_path(HEALTH)),
                "{}: {line}",
                spec.label
            );
            run(Command::new("bash").args(["-n", "-c", fields[6]]));
            user_crontab.push_str(&format!("{} {}\n", fields[..5].join(" "), fields[6]));
            starts += 1;
        }
        assert!(starts > 0, "{}: no line starts the check", spec.label);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), user_crontab).unwrap();
        run(Command::new("crontab").arg("-n").arg(file.path()));
    });
}

/// Keys that a new network namespace has read-only.
const NOT_PER_NAMESPACE: &[&str] = &["net.netfilter.nf_conntrack_max", "net.nf_conntrack_max"];

#[test]
fn sysctl_files_parse_and_apply_in_a_namespace() {
    if !require_root("applying sysctl.conf inside a network namespace") {
        return;
    }
    each_site(|spec, dir| {
        let path = dir.join("sysctl.conf");
        run(Command::new("sysctl").args(["--dry-run", "-p"]).arg(&path));
        // Only net.* keys, and only inside a fresh network namespace:
        // anything else would change the host.
        let text = std::fs::read_to_string(&path).unwrap();
        let net: String = text
            .lines()
            .filter(|l| {
                l.starts_with("net.") && !NOT_PER_NAMESPACE.iter().any(|k| l.starts_with(k))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), net).unwrap();
        let out = run(Command::new("unshare")
            .args(["-n", "sysctl", "-p"])
            .arg(tmp.path()));
        assert!(
            out.stderr.is_empty(),
            "{}: {}",
            spec.label,
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

#[test]
fn security_groups_pass_the_aws_cli_parameter_check() {
    let sites: Vec<_> = valid_specs().iter().map(|s| render(&s.path)).collect();
    let mut cmd = check_security_group();
    for s in &sites {
        cmd.arg(&s.site_dir);
    }
    run(&mut cmd);
}

/// tests/it/check_security_group.py under Debian's interpreter, which has
/// Debian's python3-botocore.
fn check_security_group() -> Command {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(crate::fixtures::repo().join("tests/it/check_security_group.py"));
    cmd
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Writes a spec into a temporary folder.
fn spec_file(yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("spec.yaml"), yaml).unwrap();
    dir
}

/// With egress, private hosts send their Internet traffic to the NAT: its
/// group must let all of it in from the VPC. Without forwards or egress
/// there is no rule at all, and no file that EC2 would refuse as empty.
#[test]
fn nat_group_admits_the_vpc_for_egress_and_is_never_empty() {
    each_site(|spec, dir| {
        let manifest = Manifest::load(dir);
        let rules = json(&dir.join("security-group.json"));
        let from_vpc: Vec<&str> = rules
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["IpProtocol"] == "-1")
            .flat_map(|p| p["IpRanges"].as_array().unwrap())
            .map(|r| r["CidrIp"].as_str().unwrap())
            .collect();
        let vpc: Vec<String> = manifest.vpc_cidrs.iter().map(Cidr::to_string).collect();
        if manifest.egress {
            assert_eq!(from_vpc, vpc, "{}", spec.label);
        } else {
            assert!(from_vpc.is_empty(), "{}", spec.label);
        }
    });
    let dir = spec_file("version: 1\nsite: bare\nvpc_cidrs: [10.0.0.0/16]\negress: false\n");
    let site = render(&dir.path().join("spec.yaml"));
    assert!(!site.site_dir.join("security-group.json").exists());
    assert!(!site.site_dir.join("target-security-groups.json").exists());
    let nat = &site.manifest.security_groups.nat;
    assert!(nat.ingress_file.is_none());
    assert_eq!(nat.egress, Vec::<serde_json::Value>::new());
}

/// Two forwards to the same port of one target, from one source, are one
/// rule for the target's group: EC2 refuses a request that has it twice.
#[test]
fn target_rules_are_merged_and_pass_the_parameter_check() {
    let dir = spec_file(
        "version: 1\nsite: twice\nvpc_cidrs: [10.0.0.0/16]\nforwards:\n\
         \x20 - {name: a, port: 2201, to: 10.0.1.5:22, from: [203.0.113.0/24]}\n\
         \x20 - {name: b, port: 2202, to: 10.0.1.5:22, from: [203.0.113.0/24, 198.51.100.7/32]}\n\
         \x20 - {name: c, port: 2203, to: 10.0.1.6:22, from: [203.0.113.0/24]}\n",
    );
    let site = render(&dir.path().join("spec.yaml"));
    run(check_security_group().arg(&site.site_dir));
    let targets = json(&site.site_dir.join("target-security-groups.json"));
    assert_eq!(
        targets,
        serde_json::json!([{
            "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
            "IpRanges": [
                {"CidrIp": "203.0.113.0/24", "Description": "natbake twice a via NAT"},
                {"CidrIp": "198.51.100.7/32", "Description": "natbake twice b via NAT"},
            ],
        }])
    );
    let per_target: Vec<(Ipv4Addr, usize)> = site
        .manifest
        .targets
        .iter()
        .map(|t| (t.address, t.security_group_ingress[0].ip_ranges.len()))
        .collect();
    assert_eq!(
        per_target,
        [
            (Ipv4Addr::new(10, 0, 1, 5), 2),
            (Ipv4Addr::new(10, 0, 1, 6), 1)
        ]
    );
}

/// A spec with `n` sources, spread over forwards of at most 500 (a forward
/// may have 1,000): `n` inbound rules.
fn spec_with_sources(n: u32) -> tempfile::TempDir {
    let forwards = crate::fixtures::forwards_with_sources(n, 500);
    spec_file(&format!(
        "version: 1\nsite: wide\nvpc_cidrs: [10.0.0.0/16]\negress: false\nforwards:\n{forwards}"
    ))
}

/// EC2 counts each source CIDR of each forward as one rule: past the
/// default quota of 60 per group, and past 1,000 per interface, render and
/// check say so, and the manifest keeps the note.
#[test]
fn rule_quotas_are_reported() {
    for (n, expected) in [
        (60, None),
        (
            61,
            Some("more than EC2's default quota of 60 per security group"),
        ),
        (1001, Some("EC2 allows at most 1000 per network interface")),
    ] {
        let dir = spec_with_sources(n);
        let spec = dir.path().join("spec.yaml");
        let out = tempfile::tempdir().unwrap();
        let render = run(crate::fixtures::natbake()
            .arg("render")
            .arg(&spec)
            .arg("-o")
            .arg(out.path()));
        let check = run(crate::fixtures::natbake().arg("check").arg(&spec));
        let manifest = Manifest::load(&out.path().join("wide"));
        let notes = manifest.security_groups.notes.join("\n");
        for stderr in [&render.stderr, &check.stderr] {
            let stderr = String::from_utf8_lossy(stderr);
            match expected {
                Some(text) => {
                    assert!(
                        stderr.contains(&format!("security-group.json holds {n} inbound rules")),
                        "{stderr}"
                    );
                    assert!(stderr.contains(text), "{stderr}");
                    assert!(notes.contains(text), "{notes}");
                }
                None => assert!(!stderr.contains("inbound rules"), "{stderr}"),
            }
        }
        assert_eq!(manifest.security_groups.nat.inbound_rules, n as usize);
    }
}

#[test]
fn digests_match_sha256sum_and_the_manifest() {
    each_site(|spec, dir| {
        run(Command::new("sha256sum")
            .args(["--check", "--strict", "SHA256SUMS"])
            .current_dir(dir));
        let manifest = Manifest::load(dir);
        let listed: Vec<&str> = manifest.artifacts.iter().map(|a| a.path.as_str()).collect();
        let on_disk: Vec<String> = files(dir)
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n != "manifest.json" && n != "SHA256SUMS")
            .collect();
        let mut listed_sorted = listed.clone();
        listed_sorted.sort();
        assert_eq!(listed_sorted, on_disk, "{}", spec.label);
        for a in &manifest.artifacts {
            let path = dir.join(&a.path);
            let digest = run_stdout(Command::new("sha256sum").arg(&path));
            assert!(
                digest.starts_with(&a.sha256),
                "{}: {}",
                spec.label,
                path.display()
            );
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&path).unwrap().permissions(),
            ) & 0o777;
            assert_eq!(
                format!("{mode:04o}"),
                a.mode,
                "{}: {}",
                spec.label,
                path.display()
            );
        }
    });
}

/// The metadata checks of the AWS client (`natbake-aws`) take every zone and region
/// EC2 names: regional zones, Local Zones, Wavelength Zones, and the
/// European Sovereign Cloud's region and domain; they still refuse a zone
/// of another region and text that is no name. Run against the metadata
/// stub on loopback (no root needed).
#[test]
fn aws_identity_takes_local_zones_and_sovereign_regions() {
    let site = render(&crate::fixtures::fixture_spec("failover"));
    let program = site.site_dir.join("natbake-aws.py");
    assert!(program.exists(), "the failover fixture has natbake-aws.py");
    let scratch = crate::support::ScratchDir::new("imds-names");
    for (region, az, domain, partition, ok) in [
        ("us-east-1", "us-east-1a", "amazonaws.com", "aws", true),
        (
            "us-west-2",
            "us-west-2-lax-1a",
            "amazonaws.com",
            "aws",
            true,
        ),
        (
            "us-east-1",
            "us-east-1-wl1-bos-wlz-1",
            "amazonaws.com",
            "aws",
            true,
        ),
        (
            "eusc-de-east-1",
            "eusc-de-east-1a",
            "amazonaws.eu",
            "aws-eusc",
            true,
        ),
        (
            "cn-northwest-1",
            "cn-northwest-1b",
            "amazonaws.com.cn",
            "aws-cn",
            true,
        ),
        ("us-east-1", "us-west-2a", "amazonaws.com", "aws", false),
        ("us-east-1", "us-east-1-", "amazonaws.com", "aws", false),
        ("us-east-1", "us-east-1a;x", "amazonaws.com", "aws", false),
        (
            "eusa-de-east-1",
            "eusa-de-east-1a",
            "amazonaws.eu",
            "aws",
            false,
        ),
    ] {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = scratch.path().join(format!("imds-{port}.log"));
        let mut stub = Command::new("/usr/bin/python3")
            .arg(crate::fixtures::repo().join("tests/it/netlab/imds_stub.py"))
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--mac", "02:00:00:00:00:01", "--cidr", "10.0.0.0/16"])
            .args([
                "--instance-id",
                "i-0123456789abcdef0",
                "--role",
                "natbake-lab",
            ])
            .args([
                "--region",
                region,
                "--az",
                az,
                "--domain",
                domain,
                "--partition",
                partition,
            ])
            .arg("--log")
            .arg(&log)
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !std::fs::read_to_string(&log).is_ok_and(|l| l.starts_with("ready")) {
            assert!(
                std::time::Instant::now() < deadline,
                "the metadata stub does not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = crate::support::output_of(
            Command::new("/usr/bin/python3")
                .arg("-IS")
                .arg(&program)
                .args(["--deadline", "10", "identity"])
                .env("NATBAKE_IMDS_ADDRESS", format!("127.0.0.1:{port}")),
        );
        let _ = stub.kill();
        let _ = stub.wait();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if ok {
            assert!(out.status.success(), "{region} {az}: {stdout}");
            assert_eq!(
                stdout,
                format!(
                    "instance=i-0123456789abcdef0\nregion={region}\nzone={az}\ndomain={domain}\n"
                )
            );
        } else {
            assert!(!out.status.success(), "{region} {az} taken: {stdout}");
            assert!(stdout.contains("malformed"), "{region} {az}: {stdout}");
        }
    }
}
