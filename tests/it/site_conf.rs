//! The instance side as data: the scripts are the same bytes for every
//! site, `site.conf` carries the site, and the lib's `load_site_conf`
//! reads it as data (known names, checked values, never sourced). None of
//! this needs root: the scripts are sourced, which runs no `main`.

use crate::fixtures::{all_valid_specs, render};
use crate::support::run;
use natbake::render::instance::SCRIPTS;
use std::path::Path;
use std::process::Command;

/// Runs `script` in bash after sourcing the lib of `dir`, with `dir` as
/// the working folder; returns (success, stdout, stderr).
fn with_lib(lib: &Path, dir: &Path, script: &str) -> (bool, String, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(". '{}' || exit 99\n{script}", lib.display()))
        .current_dir(dir)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .expect("bash runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Two specs that differ in every field they have (site, description, os,
/// arch, VPC, egress, forwards, sysctl, AMI settings, failover's wait,
/// health's interval, metrics per forward) render byte-identical scripts.
#[test]
fn two_specs_that_differ_in_every_field_render_the_same_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(
        &a,
        "version: 1\nsite: alpha\ndescription: first site\nos: amazon-linux-2023\narch: x86_64\n\
         vpc_cidrs: [10.0.0.0/16]\negress: true\nforwards:\n  - name: oracle\n    port: 51532\n\
         \x20   to: 10.0.1.25:1532\n    from: [203.0.113.110/32]\n    log: true\n    description: Oracle\n\
         sysctl:\n  net.netfilter.nf_conntrack_max: 262144\nami:\n  region: us-east-1\n\
         failover:\n  floating_eni: true\n  attach_timeout: 60\nhealth:\n  interval: 15\n\
         metrics:\n  cloudwatch: true\n  per_forward: true\n",
    )
    .unwrap();
    std::fs::write(
        &b,
        "version: 1\nsite: bravo-site\ndescription: \"the other one: $(x) 'q'\"\nos: ubuntu-24.04\n\
         arch: arm64\nvpc_cidrs: [172.16.0.0/16, 192.168.0.0/16]\negress: false\nforwards:\n\
         \x20 - name: dns\n    proto: udp\n    port: 5353\n    to: 172.16.2.53:53\n    from: [198.51.100.0/24]\n\
         \x20 - name: web\n    port: 60000-60010\n    to: 192.168.1.80\n    from: [0.0.0.0/0]\n    public: true\n\
         sysctl:\n  net.ipv4.tcp_fin_timeout: 20\nami:\n  region: eu-west-1\n  instance_type: t4g.small\n\
         failover:\n  floating_eni: true\n  attach_timeout: 300\nhealth:\n  interval: 60\n\
         metrics:\n  cloudwatch: true\n  per_forward: false\n",
    )
    .unwrap();
    let (a, b) = (render(&a), render(&b));
    for s in SCRIPTS {
        let x = std::fs::read(a.site_dir.join(s.artifact)).expect(s.artifact);
        let y = std::fs::read(b.site_dir.join(s.artifact)).expect(s.artifact);
        assert!(x == y, "{} differs between the two sites", s.artifact);
    }
    assert_ne!(
        std::fs::read(a.site_dir.join("site.conf")).unwrap(),
        std::fs::read(b.site_dir.join("site.conf")).unwrap()
    );
}

/// Every site.conf natbake writes is read by its consumer, the lib's
/// parser, into the values it was made from.
#[test]
fn every_rendered_site_conf_is_read_back() {
    let mut read = 0;
    for spec in all_valid_specs() {
        let site = render(&spec.path);
        let conf = site.site_dir.join("site.conf");
        if !conf.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&conf).unwrap();
        let forwards = text.lines().filter(|l| l.starts_with("forward=")).count();
        let (ok, out, err) = with_lib(
            &site.site_dir.join("natbake-lib.sh"),
            &site.site_dir,
            "load_site_conf site.conf || { echo \"$SITE_CONF_ERROR\" >&2; exit 1; }\n\
             printf '%s|%s|%s|%s\\n' \"$SITE\" \"$FORWARD_COUNT\" \"${VPC_CIDRS[*]}\" \"$RULES_SHA256\"",
        );
        assert!(ok, "{}: {err}", spec.label);
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(site.site_dir.join("manifest.json")).unwrap())
                .unwrap();
        let rules =
            natbake::render::sha256_hex(&std::fs::read(site.site_dir.join("rules.v4")).unwrap());
        let cidrs: Vec<&str> = manifest["vpc_cidrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(
            out,
            format!(
                "{}|{forwards}|{}|{rules}\n",
                manifest["site"].as_str().unwrap(),
                cidrs.join(" ")
            ),
            "{}",
            spec.label
        );
        read += 1;
    }
    assert!(read >= 10, "{read}");
}

/// What natbake does not write is refused, naming the file and the line,
/// and nothing in a value ever runs.
#[test]
fn the_parser_refuses_what_natbake_does_not_write() {
    let site = render(Path::new("tests/fixtures/valid/debian-mixed.yaml"));
    let lib = site.site_dir.join("natbake-lib.sh");
    let good = std::fs::read_to_string(site.site_dir.join("site.conf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("ran");
    let touch = format!("$(touch {})", canary.display());
    let swap = |from: &str, to: &str| {
        assert!(good.contains(from), "{from}");
        good.replacen(from, to, 1)
    };
    let first_forward = good.lines().find(|l| l.starts_with("forward=")).unwrap();
    let last = good.lines().count() + 1;
    let unknown = format!("line {last}: `PATH` is not a setting natbake knows");
    let cases: Vec<(String, &str)> = vec![
        (format!("{good}PATH=/tmp\n"), unknown.as_str()),
        (format!("{good}site=again\n"), "`site` is there twice"),
        (
            swap("site=debian-mixed", &format!("site={touch}")),
            "line 2: `site` cannot be",
        ),
        (
            swap("systemd=yes", "systemd=true"),
            "`systemd` cannot be `true`",
        ),
        (swap("systemd=yes", "systemd yes"), "not NAME=VALUE"),
        (
            swap("vpc_cidrs=10.0.0.0/16", "vpc_cidrs=10.0.0.0/33"),
            "`vpc_cidrs` cannot be",
        ),
        (
            swap("vpc_cidrs=10.0.0.0/16", "vpc_cidrs=10.0.0.0/16 "),
            "`vpc_cidrs` cannot be",
        ),
        (
            swap("ipset_elements=", "ipset_elements=-"),
            "`ipset_elements` cannot be",
        ),
        (
            swap("failover=no", "failover=no\nattach_timeout=60"),
            "`attach_timeout` is there without `failover=yes`",
        ),
        (
            swap("failover=no", "failover=yes"),
            "`attach_timeout` is missing",
        ),
        (swap("metrics=no\n", ""), "`metrics` is missing"),
        (
            swap("rules_sha256=", "rules_sha256=0"),
            "`rules_sha256` cannot be",
        ),
        (
            swap("description=", "description=\u{1b}[2J"),
            "`description` cannot be text with control characters",
        ),
        (swap(" own\n", " mine\n"), "`forward` cannot be"),
        (
            swap(
                first_forward,
                &first_forward.replace(" 1532 1532 ", " 1532 1531 "),
            ),
            "`forward` cannot be",
        ),
        (
            swap("summary=", "#summary="),
            "a forward without its summary",
        ),
        (good.replace('\n', "\r\n"), "cannot be"),
    ];
    for (text, why) in cases {
        std::fs::write(dir.path().join("site.conf"), &text).unwrap();
        let (ok, _, err) = with_lib(
            &lib,
            dir.path(),
            "if load_site_conf site.conf; then echo accepted >&2; exit 1; fi\necho \"$SITE_CONF_ERROR\" >&2",
        );
        assert!(ok, "accepted: {text}");
        assert!(err.starts_with("site.conf: "), "{err}");
        assert!(err.contains(why), "{why:?} not in {err:?}");
    }
    // A description that looks like code is text, and stays text.
    let text = swap(
        "description=Mixed forwards on Debian 12",
        &format!("description={touch} `id` '"),
    );
    std::fs::write(dir.path().join("site.conf"), &text).unwrap();
    let (ok, out, err) = with_lib(
        &lib,
        dir.path(),
        "load_site_conf site.conf || exit 1\nprintf '%s\\n' \"$DESCRIPTION\"",
    );
    assert!(ok, "{err}");
    assert_eq!(out, format!("{touch} `id` '\n"));
    assert!(!canary.exists(), "a value ran");
}

/// Each script's `main` runs only when the script is executed: sourced
/// (after the lib, as the scripts source the libraries), it defines its
/// functions and does nothing, so tests can call them. In a network
/// namespace of its own, so that a broken guard (a boot step that runs)
/// could touch no setting of the host's network.
#[test]
fn sourcing_a_script_runs_nothing() {
    let site = render(Path::new("tests/fixtures/valid/failover-health.yaml"));
    for s in SCRIPTS {
        let out = run(Command::new("unshare")
            .args(["-rn", "bash", "-c"])
            .arg(format!(
                "set -u\n. '{}' || exit 1\n. '{}' || exit 1\ndeclare -F | wc -l",
                site.site_dir.join("natbake-lib.sh").display(),
                site.site_dir.join(s.artifact).display()
            )));
        assert!(
            out.stderr.is_empty(),
            "{}: {}",
            s.artifact,
            String::from_utf8_lossy(&out.stderr)
        );
        let functions: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert!(functions > 0, "{}", s.artifact);
    }
    // The boot step sourced: its pure functions work without root.
    let out = run(Command::new("unshare").args(["-rn", "bash", "-c"]).arg(format!(
        ". '{}'\ncidr_within 10.1.2.0/24 10.0.0.0/8 && ! cidr_within 10.0.0.0/8 10.1.2.0/24 && is_cidr 10.0.0.0/16 && ! is_cidr 10.0.0.256/16 && echo yes",
        site.site_dir.join("configure-pat.sh").display()
    )));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "yes\n");
}
