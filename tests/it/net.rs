//! Real-network tests: natbake's rendered artifacts, run for real in a
//! VPC-shaped lab of network namespaces (see `netlab`), with real traffic.
//!
//! Every fixture spec with forwards is rendered with the natbake binary; its
//! configure-pat.sh is run as installed in the NAT instance's namespace, and
//! probes show what works and what must not. The same is done with the files
//! taken out of the site's user-data, and with a metadata service that
//! disagrees with the spec or is missing.
//!
//! These tests need root. Without it they skip loudly
//! (`support::require_root`), or fail when NATBAKE_REQUIRE_ROOT_TESTS=1.

use std::fs;
use std::thread;
use std::time::Duration;

use natbake::cidr::Cidr;
use natbake::site::Proto;

use crate::fixtures::{RenderedSite, fixture_specs, render, render_with_templates};
use crate::manifest::Manifest;
use crate::netlab::{
    Expect, Findings, INTERNET_SERVER_PORT, Imds, InstallSet, Lab, LabOptions, Role, check_all_up,
    check_forward_policy, check_forwarding_off, check_imds_v2_used, check_sysctl_file,
    check_sysctls, egress_probes, forward_probes, in_ns, lab_premises, peer_probes,
};
use crate::support::{self, Finished, ScratchDir};
use natbake::render::artifact::RULES;
use natbake::render::install_path;
use natbake::render::ipsets::{SET_IN, SET_OUT};

/// "Within a few seconds": how long configure-pat.sh may take when no
/// metadata service answers at all.
const NO_METADATA_LIMIT: Duration = Duration::from_secs(10);

/// Fixtures run side by side, at most this many at once (a 2-core machine).
const FIXTURE_PARALLELISM: usize = 2;

/// Every valid fixture spec that has forwards, rendered. Fails when there is
/// none: these tests must never pass by exercising nothing.
fn sites_with_forwards() -> Vec<RenderedSite> {
    let sites: Vec<RenderedSite> = fixture_specs()
        .iter()
        .map(|s| render(&s.path))
        .filter(|r| !r.manifest.forwards.is_empty())
        // A floating interface needs an EC2 API: the failover tests run those.
        .filter(|r| !r.site_dir.join("natbake-aws.sh").exists())
        .collect();
    assert!(
        !sites.is_empty(),
        "no fixture spec in tests/fixtures/valid has forwards"
    );
    sites
}

/// The fixture the metadata tests use: the first with a TCP forward
/// (file-name order), else the first.
fn metadata_fixture(sites: Vec<RenderedSite>) -> RenderedSite {
    let pos = sites
        .iter()
        .position(|s| s.manifest.forwards.iter().any(|f| f.proto == Proto::Tcp))
        .unwrap_or(0);
    sites.into_iter().nth(pos).unwrap()
}

fn label(site: &RenderedSite) -> String {
    let name = site
        .spec
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    format!("{name} ({})", site.manifest.site)
}

/// Runs `test` for every site, a few at a time; each site's failure is
/// reported and the others still run. Labs are dropped (cleaned up) inside
/// each run, also on panic.
fn for_each_site(sites: &[RenderedSite], test: impl Fn(&RenderedSite) + Sync) {
    let mut failed = Vec::new();
    for chunk in sites.chunks(FIXTURE_PARALLELISM) {
        thread::scope(|scope| {
            let runs: Vec<_> = chunk
                .iter()
                .map(|site| (site, scope.spawn(|| test(site))))
                .collect();
            for (site, run) in runs {
                if let Err(payload) = run.join() {
                    let message = payload
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    // The full message (with the lab's state) was printed by
                    // the panic hook; keep the summary short.
                    let first = message.lines().next().unwrap_or("").to_owned();
                    failed.push(format!("{}: {first}", label(site)));
                }
            }
        });
    }
    assert!(
        failed.is_empty(),
        "failed for {} site(s):\n  {}",
        failed.len(),
        failed.join("\n  ")
    );
}

/// The whole story for one site and one way of installing it: configure,
/// show every forward and egress, then rerun the script with a connection
/// open and other software's rules present, and show that nothing changed.
fn exercise(name: &str, manifest: &Manifest, install: &InstallSet) {
    let lab = Lab::start(manifest, LabOptions::matching(manifest));
    let mut f = Findings::new(name);

    let first = lab.run_configure_pat(install);
    if !f.check(
        first.success(),
        format!("configure-pat.sh failed:\n{}", first.explain()),
    ) {
        f.assert_clean(&lab);
    }
    check_imds_v2_used(&lab, &mut f);
    check_all_up(&lab, &mut f);
    check_sysctl_file(&lab, install, &mut f);

    // Other software's chains, then connections that must survive a rerun:
    // one through a TCP forward, one outbound through the masquerade.
    lab.add_foreign_rules();
    let before = lab.iptables_save();
    let mut sessions = Vec::new();
    if let Some((i, fw)) = lab.tested_forwards().find(|(_, f)| f.proto == Proto::Tcp) {
        let client = lab.plan.allowed_clients[i][0];
        let s = lab.open_session(
            Role::Internet,
            client,
            lab.plan.elastic_ip,
            fw.listen_ports.0,
        );
        f.check(
            s.seen_as() == Some(client),
            format!(
                "{}: connection through forward {} greeted with {:?}",
                s.what, fw.name, s.greeting
            ),
        );
        sessions.push(s);
    }
    if manifest.egress {
        let s = lab.open_session(
            Role::Private,
            lab.plan.private_self,
            lab.plan.internet_server,
            INTERNET_SERVER_PORT,
        );
        f.check(
            s.seen_as() == Some(lab.plan.elastic_ip),
            format!(
                "{}: outbound connection greeted with {:?}",
                s.what, s.greeting
            ),
        );
        sessions.push(s);
    }

    let second = lab.run_configure_pat(install);
    f.check(
        second.success(),
        format!(
            "configure-pat.sh failed on the rerun:\n{}",
            second.explain()
        ),
    );
    // Other software's jump went in ahead of natbake's: the rerun puts
    // natbake's first again and changes nothing else.
    let after = lab.iptables_save();
    let mut expected: Vec<&str> = before.lines().collect();
    let mut got: Vec<&str> = after.lines().collect();
    expected.sort_unstable();
    got.sort_unstable();
    f.check(
        expected == got,
        format!("the rerun changed the rules:\n{}", diff(&before, &after)),
    );
    f.check(
        after.lines().find(|l| l.starts_with("-A FORWARD ")) == Some(JUMPS[0]),
        format!("natbake's jump should be first in FORWARD again:\n{after}"),
    );
    let third = lab.run_configure_pat(install);
    f.check(
        third.success() && lab.iptables_save() == after,
        format!("a second rerun changed the rules:\n{}", third.explain()),
    );
    for chain in ["OTHERSW-INPUT", "OTHERSW-FORWARD", "OTHERSW-POSTROUTING"] {
        f.check(
            after
                .lines()
                .any(|l| l.starts_with(&format!("-A {chain} "))),
            format!("other software's chain {chain} lost its rules in the rerun"),
        );
    }
    for s in &mut sessions {
        let ok = s.echo("still-there-after-the-rerun");
        f.check(
            ok,
            format!("{}: the open connection broke across the rerun", s.what),
        );
    }
    drop(sessions);

    // New connections still work after the rerun.
    check_sysctls(&lab, &mut f);
    let mut probes: Vec<_> = forward_probes(&lab)
        .into_iter()
        .filter(|p| matches!(p.expect, Expect::SeenAs(_)))
        .collect();
    probes.extend(egress_probes(&lab));
    for p in &mut probes {
        p.what.push_str(" (after the rerun)");
    }
    lab.run_probes(&probes, &mut f);
    f.assert_clean(&lab);
}

/// Lines only in `a` (-) and only in `b` (+).
fn diff(a: &str, b: &str) -> String {
    let only = |x: &str, y: &str, sign: char| -> Vec<String> {
        x.lines()
            .filter(|l| !y.lines().any(|m| m == *l))
            .map(|l| format!("{sign} {l}"))
            .collect()
    };
    let mut out = only(a, b, '-');
    out.extend(only(b, a, '+'));
    if out.is_empty() {
        "(same lines, different order)".into()
    } else {
        out.join("\n")
    }
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// The lab itself: the gateway drops what the NAT does not masquerade, the
/// peer's probe would get through a NAT without rules, the metadata stub is
/// IMDSv2 only. Uses a built-in site, so it runs without natbake.
#[test]
fn lab_premises_hold() {
    if !support::require_root("lab_premises_hold (network namespaces)") {
        return;
    }
    let manifest = Manifest::parse(
        r#"{"site": "premises", "vpc_cidrs": ["10.0.0.0/16"], "egress": true,
            "forwards": [{"name": "oracle", "proto": "tcp", "listen_ports": [51532, 51532],
                          "target_address": "10.0.1.25", "target_ports": [1532, 1532],
                          "from": ["203.0.113.110/32"], "public": false, "log": false}],
            "user_data": null, "artifacts": [],
            "security_groups": {"nat": {"ingress_file": "security-group.json",
                                        "inbound_rules": 1, "egress": []},
                                "notes": []},
            "targets": []}"#,
    )
    .expect("built-in manifest");
    let lab = Lab::start(&manifest, LabOptions::matching(&manifest));
    let mut f = Findings::new("lab premises");
    lab_premises(&lab, &mut f);
    f.assert_clean(&lab);
}

/// Forwards and egress through the rendered files, for every fixture with forwards.
#[test]
fn rendered_sites_work_on_a_real_network() {
    if !support::require_root("rendered_sites_work_on_a_real_network (network namespaces)") {
        return;
    }
    let sites = sites_with_forwards();
    for_each_site(&sites, |site| {
        let install = InstallSet::from_site_dir(&site.site_dir, &site.manifest);
        exercise(
            &format!("{} rendered files", label(site)),
            &site.manifest,
            &install,
        );
    });
}

/// The launch-template path: the files that user-data.yaml would write, taken out of it,
/// are the rendered files byte for byte and give the same results.
#[test]
fn user_data_files_work_on_a_real_network() {
    if !support::require_root("user_data_files_work_on_a_real_network (network namespaces)") {
        return;
    }
    // A spec too big for user data renders none; the manifest says so.
    let sites: Vec<RenderedSite> = sites_with_forwards()
        .into_iter()
        .filter(|s| s.manifest.user_data.is_some())
        .collect();
    assert!(
        !sites.is_empty(),
        "no fixture with forwards renders user data"
    );
    for_each_site(&sites, |site| {
        let extracted = ScratchDir::new("user-data");
        let from_user_data =
            InstallSet::from_user_data(&site.site_dir, &site.manifest, extracted.path());
        let rendered = InstallSet::from_site_dir(&site.site_dir, &site.manifest);
        for r in &rendered.files {
            let u = from_user_data.get(&r.install_path).unwrap_or_else(|| {
                panic!(
                    "{}: the user data does not write {}",
                    label(site),
                    r.install_path
                )
            });
            assert!(
                fs::read(&u.source).ok() == fs::read(&r.source).ok(),
                "{}: the user data's {} differs from the rendered file",
                label(site),
                r.install_path
            );
            assert_eq!(
                u.mode,
                r.mode,
                "{}: mode of {}",
                label(site),
                r.install_path
            );
        }
        exercise(
            &format!("{} user-data files", label(site)),
            &site.manifest,
            &from_user_data,
        );
    });
}

/// Metadata that disagrees: a VPC whose CIDR blocks do not include the spec's. The
/// script must fail, forwarding must stay off, and the log must say why.
#[test]
fn metadata_mismatch_keeps_forwarding_off() {
    if !support::require_root("metadata_mismatch_keeps_forwarding_off (network namespaces)") {
        return;
    }
    let site = metadata_fixture(sites_with_forwards());
    let m = &site.manifest;
    let install = InstallSet::from_site_dir(&site.site_dir, m);

    // None of the spec's blocks; and, when the spec has several, only the
    // first (a VPC that lacks an added block).
    let mut cases = vec![(
        "none of the spec's CIDR blocks",
        LabOptions::mismatching(m),
        m.vpc_cidrs.clone(),
    )];
    if m.vpc_cidrs.len() > 1 {
        cases.push((
            "only the spec's first CIDR block",
            LabOptions {
                imds: Imds::Stub(vec![m.vpc_cidrs[0].to_string()]),
                imds_faults: Vec::new(),
            },
            m.vpc_cidrs[1..].to_vec(),
        ));
    }
    for (case, options, missing) in cases {
        let lab = Lab::start(m, options);
        let mut f = Findings::new(format!("{}: VPC with {case}", label(&site)));
        let run = lab.run_configure_pat(&install);
        f.check(
            !run.success() && !run.timed_out(),
            format!("configure-pat.sh should exit non-zero:\n{}", run.explain()),
        );
        f.check(
            !run.stderr.trim().is_empty(),
            "configure-pat.sh said nothing on stderr",
        );
        let syslog = lab.syslog();
        f.check(
            syslog.contains(" natbake"),
            format!("nothing logged with tag natbake; syslog:\n{syslog}"),
        );
        f.check(
            mentions_any(&syslog, &missing) && mentions_any(&run.stderr, &missing),
            format!(
                "the log and stderr should name the missing block ({}):\nsyslog:\n{syslog}\nstderr:\n{}",
                join(&missing),
                run.stderr
            ),
        );
        check_forwarding_off(&lab, &mut f);
        f.assert_clean(&lab);
    }
}

/// No metadata service at all (packets to it vanish). The
/// documented behaviour: a warning, and the NAT comes up, within seconds.
#[test]
fn metadata_absent_warns_and_carries_on() {
    if !support::require_root("metadata_absent_warns_and_carries_on (network namespaces)") {
        return;
    }
    let site = metadata_fixture(sites_with_forwards());
    let install = InstallSet::from_site_dir(&site.site_dir, &site.manifest);
    let lab = Lab::start(
        &site.manifest,
        LabOptions {
            imds: Imds::Absent,
            imds_faults: Vec::new(),
        },
    );
    let mut f = Findings::new(format!("{}: no metadata service", label(&site)));
    let run = lab.run_configure_pat(&install);
    f.check(
        run.success(),
        format!("configure-pat.sh should carry on:\n{}", run.explain()),
    );
    f.check(
        run.elapsed < NO_METADATA_LIMIT,
        format!(
            "configure-pat.sh took {:.1?} without metadata (limit {NO_METADATA_LIMIT:?})",
            run.elapsed
        ),
    );
    f.check(
        !run.stderr.trim().is_empty(),
        format!(
            "configure-pat.sh gave no warning on stderr:\n{}",
            run.explain()
        ),
    );
    check_all_up(&lab, &mut f);
    f.assert_clean(&lab);
}

fn mentions_any(text: &str, cidrs: &[Cidr]) -> bool {
    cidrs.iter().any(|c| text.contains(&c.to_string()))
}

fn join(cidrs: &[Cidr]) -> String {
    cidrs
        .iter()
        .map(Cidr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------
// A ruleset that is not the rendered one
// ---------------------------------------------------------------------------

/// Ways a ruleset file ends up empty or partial, each of which
/// `iptables-restore --noflush` loads "successfully": empty, comments
/// only (the rendered file's header), and cut after the nat table's
/// COMMIT (no filter table, so FORWARD keeps policy ACCEPT).
fn damaged_rulesets(rules: &str) -> Vec<(&'static str, String)> {
    let header: String = rules
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        rules.starts_with("# ") && rules.contains("\n*nat\n") && rules.contains("\n*filter\n"),
        "the rendered ruleset has no comment header, nat and filter table:\n{rules}"
    );
    let nat = rules.find("\n*nat\n").expect("a nat table");
    let nat_end = nat
        + rules[nat..]
            .find("\nCOMMIT\n")
            .expect("the nat table's COMMIT")
        + 8;
    assert!(
        rules[..nat_end].ends_with("\nCOMMIT\n") && !rules[..nat_end].contains("*filter"),
        "cutting after the nat table went wrong"
    );
    vec![
        ("an empty file", String::new()),
        ("comments only", header),
        (
            "the nat table only (cut after its COMMIT)",
            rules[..nat_end].to_owned(),
        ),
    ]
}

/// Checks a run that must have refused to configure the NAT: a non-zero
/// exit within the time limit, `reason` on stderr, forwarding off and
/// nothing forwarded.
fn check_refused(lab: &Lab, run: &Finished, reason: &str, f: &mut Findings) {
    f.check(
        !run.success() && !run.timed_out(),
        format!("configure-pat.sh should exit non-zero:\n{}", run.explain()),
    );
    f.check(
        run.stderr.contains(reason),
        format!("stderr should say `{reason}`:\n{}", run.stderr),
    );
    check_forwarding_off(lab, f);
}

/// An installed ruleset that is empty, only comments, or cut short is not
/// the one the script was rendered with: the script refuses it before
/// loading anything, and forwarding stays off.
#[test]
fn installed_ruleset_other_than_the_rendered_one_is_refused() {
    if !support::require_root("installed_ruleset_other_than_the_rendered_one_is_refused") {
        return;
    }
    let site = metadata_fixture(sites_with_forwards());
    let install = InstallSet::from_site_dir(&site.site_dir, &site.manifest);
    let rules = fs::read_to_string(site.site_dir.join("rules.v4")).expect("read rules.v4");
    let scratch = ScratchDir::new("damaged-rules");
    let lab = Lab::start(&site.manifest, LabOptions::matching(&site.manifest));
    for (i, (case, text)) in damaged_rulesets(&rules).into_iter().enumerate() {
        lab.reset_nat(&site.site_dir.join("sysctl.conf"));
        let file = scratch.path().join(format!("rules-{i}.v4"));
        fs::write(&file, &text).expect("write the damaged ruleset");
        let mut f = Findings::new(format!("{}: installed rules.v4 is {case}", label(&site)));
        let run = lab.run_configure_pat(&install.with_source(install_path(RULES), &file));
        check_refused(
            &lab,
            &run,
            "is not the ruleset this script was rendered with",
            &mut f,
        );
        f.assert_clean(&lab);
    }
}

/// The same rulesets rendered by a template override, so that the script
/// carries their digest: only the check of what was loaded can refuse
/// them, and it does, before forwarding goes on.
#[test]
fn rendered_partial_ruleset_is_refused_once_loaded() {
    if !support::require_root("rendered_partial_ruleset_is_refused_once_loaded") {
        return;
    }
    let site = metadata_fixture(sites_with_forwards());
    let rules = fs::read_to_string(site.site_dir.join("rules.v4")).expect("read rules.v4");
    assert!(
        !rules.contains("{{"),
        "the ruleset cannot be a template as is"
    );
    let lab = Lab::start(&site.manifest, LabOptions::matching(&site.manifest));
    for (case, text) in damaged_rulesets(&rules) {
        lab.reset_nat(&site.site_dir.join("sysctl.conf"));
        let templates = ScratchDir::new("partial-rules-template");
        fs::write(templates.path().join("rules.v4.hbs"), &text).expect("write the override");
        let partial = render_with_templates(&site.spec, Some(templates.path()));
        let install = InstallSet::from_site_dir(&partial.site_dir, &partial.manifest);
        let mut f = Findings::new(format!("{}: rendered rules.v4 is {case}", label(&site)));
        let run = lab.run_configure_pat(&install);
        check_refused(&lab, &run, "The loaded ruleset is incomplete", &mut f);
        f.assert_clean(&lab);
    }
}

// ---------------------------------------------------------------------------
// Jumps and chains left by earlier runs
// ---------------------------------------------------------------------------

/// natbake's jumps from the built-in chains.
const JUMPS: [&str; 3] = [
    "-A FORWARD -j NATBAKE-FORWARD",
    "-A PREROUTING -j NATBAKE-PREROUTING",
    "-A POSTROUTING -j NATBAKE-POSTROUTING",
];

fn check_each_jump_once(lab: &Lab, when: &str, f: &mut Findings) {
    let saved = lab.iptables_save();
    for jump in JUMPS {
        let count = saved.lines().filter(|l| *l == jump).count();
        f.check(
            count == 1,
            format!("{when}: `{jump}` is there {count} times, not once"),
        );
    }
}

/// Runs that overlap (the unit started twice, an administrator running the
/// script during boot) wait for one another instead of each adding the
/// jumps; and jumps that are there twice (left by runs before the lock)
/// are kept once, in the first place, by the next run.
#[test]
fn overlapping_runs_leave_each_jump_once() {
    if !support::require_root("overlapping_runs_leave_each_jump_once") {
        return;
    }
    let site = metadata_fixture(sites_with_forwards());
    let install = InstallSet::from_site_dir(&site.site_dir, &site.manifest);
    let lab = Lab::start(&site.manifest, LabOptions::matching(&site.manifest));
    let mut f = Findings::new(format!("{}: overlapping runs", label(&site)));

    const COPIES: usize = 4;
    for (i, (code, stderr)) in lab
        .run_configure_pat_concurrently(&install, COPIES)
        .into_iter()
        .enumerate()
    {
        f.check(
            code == 0,
            format!("copy {i} of {COPIES} exited with {code}:\n{stderr}"),
        );
    }
    check_each_jump_once(&lab, "after overlapping runs", &mut f);

    // Duplicates behind a rule of other software, as overlapping runs
    // without the lock left them.
    let a = lab.plan.unused;
    lab.restore_noflush(
        "duplicate-jumps.v4",
        &format!(
            "*filter\n-A FORWARD -s {a}/32 -j DROP\n-A FORWARD -j NATBAKE-FORWARD\n\
             -A FORWARD -j NATBAKE-FORWARD\nCOMMIT\n*nat\n-A PREROUTING -j NATBAKE-PREROUTING\n\
             -A POSTROUTING -j NATBAKE-POSTROUTING\nCOMMIT\n"
        ),
    );
    let run = lab.run_configure_pat(&install);
    f.check(
        run.success(),
        format!("the run after duplicates failed:\n{}", run.explain()),
    );
    check_each_jump_once(&lab, "after a run with duplicate jumps", &mut f);
    let forward = support::run_stdout(in_ns(&lab.ns.nat, "iptables").args(["-S", "FORWARD"]));
    let jump = forward.lines().position(|l| l == JUMPS[0]);
    let other = forward.lines().position(|l| l.ends_with(" -j DROP"));
    f.check(
        jump.is_some() && other.is_some() && jump < other,
        format!("the first jump (before other software's rule) should be the one kept:\n{forward}"),
    );
    f.check(
        run.stderr.contains("duplicate jump"),
        format!("the removal of duplicates is not logged:\n{}", run.stderr),
    );
    check_all_up(&lab, &mut f);
    f.assert_clean(&lab);
}

/// natbake chains that the current ruleset no longer has are removed one
/// by one, each removal checked: the log names exactly the chains removed,
/// and a chain that something else still jumps to fails the run by name.
#[test]
fn stale_chains_are_removed_and_each_removal_checked() {
    if !support::require_root("stale_chains_are_removed_and_each_removal_checked") {
        return;
    }
    let site = metadata_fixture(sites_with_forwards());
    let install = InstallSet::from_site_dir(&site.site_dir, &site.manifest);
    let lab = Lab::start(&site.manifest, LabOptions::matching(&site.manifest));
    let mut f = Findings::new(format!("{}: stale natbake chains", label(&site)));
    let first = lab.run_configure_pat(&install);
    if !f.check(first.success(), format!("first run:\n{}", first.explain())) {
        f.assert_clean(&lab);
    }
    // Two chains of an earlier ruleset; other software still jumps to the
    // first (sorted first, so that a check of only the last removal would
    // miss it).
    lab.restore_noflush(
        "stale.v4",
        "*filter\n:NATBAKE-OLD-A - [0:0]\n:NATBAKE-OLD-B - [0:0]\n:OTHERSW-STALE - [0:0]\n\
         -A NATBAKE-OLD-A -j RETURN\n-A NATBAKE-OLD-B -j RETURN\n-A OTHERSW-STALE -j NATBAKE-OLD-A\n\
         COMMIT\n",
    );
    let run = lab.run_configure_pat(&install);
    let removed: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("Removed natbake chains"))
        .collect();
    f.check(
        removed.len() == 1
            && removed[0].contains("NATBAKE-OLD-B")
            && !removed[0].contains("NATBAKE-OLD-A"),
        format!(
            "the log should name NATBAKE-OLD-B, and only it, as removed:\n{}",
            run.stderr
        ),
    );
    check_refused(&lab, &run, "Cannot remove natbake chains", &mut f);
    f.check(
        run.stderr
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("NATBAKE-OLD-A")),
        format!("the error should name NATBAKE-OLD-A:\n{}", run.stderr),
    );
    let saved = lab.iptables_save();
    f.check(
        !saved.contains(":NATBAKE-OLD-B") && saved.contains(":NATBAKE-OLD-A"),
        format!("NATBAKE-OLD-B should be gone and NATBAKE-OLD-A kept:\n{saved}"),
    );
    f.assert_clean(&lab);
}

/// `ipset save` of one set in the NAT namespace, or None if it is missing.
fn ipset_save(lab: &Lab, set: &str) -> Option<String> {
    lab.ipset(&["save", set])
}

/// A rerun loads natbake's sets afresh and swaps them in: the counters
/// start from zero as the rules' do, the rules keep matching the sets,
/// natbake sets the files no longer have (and a temporary set a stopped
/// run left) are destroyed, and one that other software still uses fails
/// the run by name.
#[test]
fn ipsets_are_swapped_in_afresh_and_stale_ones_destroyed() {
    if !support::require_root("ipsets_are_swapped_in_afresh_and_stale_ones_destroyed") {
        return;
    }
    let site = metadata_fixture(sites_with_forwards());
    let install = InstallSet::from_site_dir(&site.site_dir, &site.manifest);
    let lab = Lab::start(&site.manifest, LabOptions::matching(&site.manifest));
    let mut f = Findings::new(format!("{}: ipsets on a rerun", label(&site)));
    let first = lab.run_configure_pat(&install);
    if !f.check(first.success(), format!("first run:\n{}", first.explain())) {
        f.assert_clean(&lab);
    }
    let loaded = ipset_save(&lab, SET_IN).unwrap_or_default();
    let element = loaded
        .lines()
        .find_map(|l| l.strip_prefix(&format!("add {SET_IN} ")))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("natbake-in has an element")
        .to_owned();
    // Counts as traffic would have left them, a set of an earlier ruleset,
    // and a temporary set of another type left by a stopped run.
    lab.on_nat(
        "ipset",
        &[
            "-exist", "add", SET_IN, &element, "packets", "7", "bytes", "700",
        ],
    );
    lab.on_nat("ipset", &["create", "natbake-old", "hash:ip"]);
    lab.on_nat("ipset", &["create", &format!("{SET_OUT}-new"), "hash:ip"]);
    let rules = lab.iptables_save();
    let run = lab.run_configure_pat(&install);
    f.check(run.success(), format!("rerun:\n{}", run.explain()));
    let now = ipset_save(&lab, SET_IN).unwrap_or_default();
    f.check(
        now.lines().filter(|l| l.starts_with("add ")).count()
            == loaded.lines().filter(|l| l.starts_with("add ")).count()
            && now.contains(&format!("add {SET_IN} {element} packets 0 bytes 0")),
        format!("after the rerun, {SET_IN} should hold every element from zero:\n{now}"),
    );
    f.check(
        lab.iptables_save() == rules,
        "the rerun changed the rules that match the sets",
    );
    for gone in [
        "natbake-old",
        &format!("{SET_OUT}-new"),
        &format!("{SET_IN}-new"),
    ] {
        f.check(
            ipset_save(&lab, gone).is_none(),
            format!("{gone} should be gone after the rerun"),
        );
    }
    f.check(
        run.stderr
            .lines()
            .any(|l| l.contains("Destroyed natbake ipsets") && l.contains("natbake-old")),
        format!(
            "the log should name natbake-old as destroyed:\n{}",
            run.stderr
        ),
    );
    lab.run_probes(&forward_probes(&lab), &mut f);
    // A natbake set that other software matches cannot go: the run fails.
    lab.on_nat("ipset", &["create", "natbake-held", "hash:ip"]);
    lab.restore_noflush(
        "held.v4",
        "*filter\n:OTHERSW-HELD - [0:0]\n-A OTHERSW-HELD -m set --match-set natbake-held src -j RETURN\nCOMMIT\n",
    );
    let held = lab.run_configure_pat(&install);
    check_refused(&lab, &held, "Cannot destroy natbake ipsets", &mut f);
    f.check(
        held.stderr.contains("natbake-held"),
        format!("the error should name natbake-held:\n{}", held.stderr),
    );
    f.assert_clean(&lab);
}

/// Rules of other software found at boot: a plain `-A FORWARD -j ACCEPT`
/// (with FORWARD's policy still ACCEPT, as on a fresh image) is removed,
/// since it would accept everything natbake's chain passes on; a foreign
/// DNAT of a forwarded port in nat PREROUTING stays, below natbake's jump,
/// which goes first; the boot succeeds and traffic is exactly as the spec
/// says. A foreign chain that accepts everything, which natbake does not
/// edit, fails the boot: forwarding stays off.
#[test]
fn rules_of_other_software_at_boot_cannot_open_the_router() {
    if !support::require_root("rules_of_other_software_at_boot_cannot_open_the_router") {
        return;
    }
    let site = metadata_fixture(sites_with_forwards());
    let install = InstallSet::from_site_dir(&site.site_dir, &site.manifest);
    let lab = Lab::start(&site.manifest, LabOptions::matching(&site.manifest));
    let mut f = Findings::new(format!("{}: other software's rules at boot", label(&site)));
    let (_, fw) = lab
        .tested_forwards()
        .find(|(_, f)| f.proto == Proto::Tcp)
        .expect("a TCP forward");
    let dnat = format!(
        "-A PREROUTING -p tcp -m tcp --dport {} -j DNAT --to-destination {}",
        fw.listen_ports.0, lab.plan.unused
    );
    lab.restore_noflush(
        "open-before-boot.v4",
        &format!("*filter\n-A FORWARD -j ACCEPT\nCOMMIT\n*nat\n{dnat}\nCOMMIT\n"),
    );
    let run = lab.run_configure_pat(&install);
    f.check(
        run.success() && run.stderr.contains("Removing `-A FORWARD -j ACCEPT`"),
        format!(
            "configure-pat.sh should remove the ACCEPT-all and succeed:\n{}",
            run.explain()
        ),
    );
    let saved = lab.iptables_save();
    f.check(
        !saved.lines().any(|l| l == "-A FORWARD -j ACCEPT"),
        format!("`-A FORWARD -j ACCEPT` is still there:\n{saved}"),
    );
    for (chain, jump) in [("PREROUTING", JUMPS[1]), ("FORWARD", JUMPS[0])] {
        f.check(
            saved
                .lines()
                .find(|l| l.starts_with(&format!("-A {chain} ")))
                == Some(jump),
            format!("{jump} should be first:\n{saved}"),
        );
    }
    f.check(
        saved.lines().any(|l| l == dnat),
        format!("the foreign DNAT should stay:\n{saved}"),
    );
    check_all_up(&lab, &mut f);
    f.assert_clean(&lab);

    lab.reset_nat(&site.site_dir.join("sysctl.conf"));
    let mut f = Findings::new(format!("{}: a foreign chain accepting all", label(&site)));
    lab.restore_noflush(
        "open-chain.v4",
        "*filter\n:OTHERSW-OPEN - [0:0]\n-A OTHERSW-OPEN -j ACCEPT\n-A FORWARD -j OTHERSW-OPEN\nCOMMIT\n",
    );
    let run = lab.run_configure_pat(&install);
    check_refused(&lab, &run, "accepts all: an open router", &mut f);
    lab.run_probes(&peer_probes(&lab), &mut f);
    f.assert_clean(&lab);
}

// ---------------------------------------------------------------------------
// Metadata hiccups
// ---------------------------------------------------------------------------

const TOKEN: &str = "/latest/api/token";
const MAC: &str = "/latest/meta-data/mac";
const CIDR_BLOCKS: &str = "/latest/meta-data/network/interfaces/macs/{mac}/vpc-ipv4-cidr-blocks";

/// One failure of each metadata request (500, a dropped connection, 503)
/// is retried: the check is made, the NAT comes up, within seconds.
#[test]
fn metadata_hiccups_are_retried() {
    if !support::require_root("metadata_hiccups_are_retried (network namespaces)") {
        return;
    }
    let site = metadata_fixture(sites_with_forwards());
    let m = &site.manifest;
    let install = InstallSet::from_site_dir(&site.site_dir, m);
    let faults = [
        format!("{TOKEN}=1:500"),
        format!("{MAC}=1:drop"),
        format!("{CIDR_BLOCKS}=2:503"),
    ];
    let lab = Lab::start(m, LabOptions::matching(m).with_imds_faults(&faults));
    let mut f = Findings::new(format!("{}: metadata hiccups", label(&site)));
    let run = lab.run_configure_pat(&install);
    f.check(
        run.success(),
        format!("configure-pat.sh failed:\n{}", run.explain()),
    );
    f.check(
        run.elapsed < NO_METADATA_LIMIT,
        format!("took {:.1?} (limit {NO_METADATA_LIMIT:?})", run.elapsed),
    );
    f.check(
        run.stderr.contains("include the spec's"),
        format!("the VPC's CIDR blocks were not compared:\n{}", run.stderr),
    );
    let requests = lab.imds_requests();
    for (what, mark) in [("500", " 500"), ("dropped", " drop"), ("503", " 503")] {
        f.check(
            requests.iter().any(|r| r.ends_with(mark)),
            format!("no {what} answer was given:\n{}", requests.join("\n")),
        );
    }
    check_imds_v2_used(&lab, &mut f);
    check_all_up(&lab, &mut f);
    f.assert_clean(&lab);
}

/// After the token: a request that only ever fails transiently is a
/// warning (the CIDR blocks could not be compared, as with no metadata at
/// all) and the NAT comes up within seconds; a definite refusal (404)
/// fails, forwarding off.
#[test]
fn metadata_failing_after_the_token() {
    if !support::require_root("metadata_failing_after_the_token (network namespaces)") {
        return;
    }
    let site = metadata_fixture(sites_with_forwards());
    let m = &site.manifest;
    let install = InstallSet::from_site_dir(&site.site_dir, m);

    let lab = Lab::start(
        m,
        LabOptions::matching(m).with_imds_faults(&[format!("{CIDR_BLOCKS}=1000:500")]),
    );
    let mut f = Findings::new(format!("{}: metadata keeps answering 500", label(&site)));
    let run = lab.run_configure_pat(&install);
    f.check(
        run.success(),
        format!("configure-pat.sh should carry on:\n{}", run.explain()),
    );
    f.check(
        run.elapsed < NO_METADATA_LIMIT,
        format!("took {:.1?} (limit {NO_METADATA_LIMIT:?})", run.elapsed),
    );
    f.check(
        run.stderr.contains("WARNING") && run.stderr.contains("were not compared"),
        format!(
            "no warning that the blocks were not compared:\n{}",
            run.stderr
        ),
    );
    let tries = lab
        .imds_requests()
        .iter()
        .filter(|r| r.contains("/vpc-ipv4-cidr-blocks ") && r.ends_with(" 500"))
        .count();
    f.check(
        tries >= 2,
        format!("the CIDR blocks were asked for {tries} time(s), not retried"),
    );
    check_sysctls(&lab, &mut f);
    check_forward_policy(&lab, &mut f);
    f.assert_clean(&lab);
    drop(lab);

    let lab = Lab::start(
        m,
        LabOptions::matching(m).with_imds_faults(&[format!("{CIDR_BLOCKS}=1000:404")]),
    );
    let mut f = Findings::new(format!(
        "{}: metadata refuses the CIDR blocks",
        label(&site)
    ));
    let run = lab.run_configure_pat(&install);
    check_refused(
        &lab,
        &run,
        "refused the VPC's CIDR blocks (HTTP status 404)",
        &mut f,
    );
    f.assert_clean(&lab);
}
