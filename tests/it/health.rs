//! The health check and the status table, proven in the network lab: exact
//! per-forward counters for known traffic, every injected fault found by
//! the first check and repaired (traffic flows again) or reported (the
//! check fails), a conntrack table near full reported, and no false alarm
//! over 200 clean checks in a row.
//!
//! These tests need root. Without it they skip loudly, or fail when
//! NATBAKE_REQUIRE_ROOT_TESTS=1.

use std::fs;
use std::net::Ipv4Addr;

use natbake::render::artifact::RULES;
use natbake::render::install_path;
use natbake::render::ipsets::{SET_IN, SET_OUT};
use natbake::site::Proto;
use serde_json::Value;

use crate::fixtures::{RenderedSite, fixture_spec, render};
use crate::netlab::{
    Expect, Findings, InstallSet, Lab, LabOptions, Role, check_all_up, check_forwarding_off, in_ns,
    peer_probes,
};
use crate::support;

/// The fixture with every kind of forward: TCP and UDP, ranges, several
/// sources, logging and a public one.
fn site() -> RenderedSite {
    render(&fixture_spec("debian-mixed"))
}

fn lab_for(site: &RenderedSite) -> (Lab, InstallSet) {
    let lab = Lab::start(&site.manifest, LabOptions::matching(&site.manifest));
    let files = InstallSet::from_site_dir(&site.site_dir, &site.manifest);
    let boot = lab.boot_step(&files);
    assert!(boot.success(), "configure-pat.sh: {}", boot.explain());
    (lab, files)
}

/// A probe through forward `i` from `src`.
pub(crate) fn probe(lab: &Lab, i: usize, src: Ipv4Addr, expect: Expect) -> crate::netlab::Probe {
    let fw = &lab.manifest.forwards[i];
    crate::netlab::Probe {
        what: format!("forward {} from {src}", fw.name),
        from: Role::Internet,
        proto: fw.proto,
        src,
        dst: lab.plan.elastic_ip,
        port: fw.listen_ports.0,
        expect,
    }
}

/// The first tested TCP forward that is not public: a fault must cut it,
/// its repair must bring it back, and its outsiders must stay out.
fn tcp_forward(lab: &Lab) -> usize {
    lab.tested_forwards()
        .find(|(_, f)| f.proto == Proto::Tcp && !f.public)
        .map(|(i, _)| i)
        .expect("the fixture has a restricted TCP forward")
}

/// Its allowed client gets through and the outsider does not.
fn check_forward(lab: &Lab, i: usize, f: &mut Findings) {
    let client = lab.plan.allowed_clients[i][0];
    lab.run_probes(
        &[
            probe(lab, i, client, Expect::SeenAs(client)),
            probe(lab, i, lab.plan.disallowed_client, Expect::Nothing),
        ],
        f,
    );
}

fn forward_status<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["forwards"]
        .as_array()
        .and_then(|all| all.iter().find(|f| f["name"] == name))
        .unwrap_or_else(|| panic!("natbake-status has no forward {name}: {status}"))
}

#[test]
fn status_counts_exactly_the_connections_made_and_denied() {
    if !support::require_root("the health tests") {
        return;
    }
    let site = site();
    let (lab, files) = lab_for(&site);
    let mut f = Findings::new("exact counts");
    // Forward k of the tested ones gets k + 1 allowed connections (spread
    // over its allowed clients) and k + 2 from a source it does not allow.
    let mut probes = Vec::new();
    let mut expected = Vec::new();
    let mut expected_bytes = Vec::new();
    for (k, (i, fw)) in lab.tested_forwards().enumerate() {
        let clients = &lab.plan.allowed_clients[i];
        let allowed = k + 1;
        let denied = if fw.public { 0 } else { k + 2 };
        let mut answers = 0;
        for n in 0..allowed {
            let c = clients[n % clients.len()];
            probes.push(probe(&lab, i, c, Expect::SeenAs(c)));
            answers += udp_answer_len(c);
        }
        expected_bytes.push((fw.name.clone(), fw.proto, allowed, answers));
        for _ in 0..denied {
            probes.push(probe(&lab, i, lab.plan.disallowed_client, Expect::Nothing));
        }
        expected.push((
            fw.name.clone(),
            allowed,
            fw.public.then_some(()).map_or(Some(denied), |_| None),
        ));
    }
    lab.run_probes(&probes, &mut f);
    let check = lab.health_check(&files);
    f.check(
        check.success(),
        format!("health check: {}", check.explain()),
    );
    let status = lab.status(&files);
    for (name, allowed, denied) in &expected {
        let s = forward_status(&status, name);
        f.check(
            s["connections"] == *allowed,
            format!(
                "{name}: {allowed} connections made, status says {}",
                s["connections"]
            ),
        );
        let want = denied.map_or(Value::Null, Value::from);
        f.check(
            s["denied"] == want,
            format!(
                "{name}: denied should be {want}, status says {}",
                s["denied"]
            ),
        );
        f.check(
            s["last_seen"].is_u64(),
            format!(
                "{name}: the health check saw traffic, but last_seen is {}",
                s["last_seen"]
            ),
        );
    }
    f.check(
        status["health"]["state"] == "ok",
        format!("health: {}", status["health"]),
    );
    for key in ["in", "out"] {
        f.check(
            status["forwarded_bytes"][key]
                .as_u64()
                .is_some_and(|b| b > 0),
            format!("forwarded bytes {key}: {}", status["forwarded_bytes"]),
        );
    }
    f.check(
        status["conntrack"]["entries"]
            .as_u64()
            .is_some_and(|n| n > 0),
        format!("conntrack: {}", status["conntrack"]),
    );
    check_bytes(&status, &expected_bytes, &mut f);
    check_bytes_of_one_forward(&lab, &files, &mut f);
    f.assert_clean(&lab);
}

/// IPv4 and UDP headers, without options.
const UDP_HEADERS: u64 = 28;
/// What a probe sends: `natbake-probe\n`.
const PROBE_LINE: u64 = 14;

/// The bytes of a UDP service's answer to a client at `c`: its headers and
/// the line `<address> <port>\n`, the lab's probe source ports having five
/// digits.
fn udp_answer_len(c: Ipv4Addr) -> u64 {
    UDP_HEADERS + c.to_string().len() as u64 + 7
}

/// Bytes per forward in the status against the probes that went through:
/// exact for UDP (one datagram each way per probe), within the bounds of a
/// short TCP connection for TCP (its segments depend on timing), and, for
/// all forwards together, exactly what NATBAKE-BYTES' two rules counted:
/// each forwarded packet matches one rule and one set element. Denied
/// attempts are never translated, so they count nowhere.
fn check_bytes(status: &Value, expected: &[(String, Proto, usize, u64)], f: &mut Findings) {
    let (mut sum_in, mut sum_out) = (0, 0);
    for fw in status["forwards"].as_array().into_iter().flatten() {
        sum_in += fw["bytes_in"].as_u64().unwrap_or(0);
        sum_out += fw["bytes_out"].as_u64().unwrap_or(0);
        f.check(
            fw["bytes_shared"] == false,
            format!("{}: no other forward has its target, yet {fw}", fw["name"]),
        );
    }
    for (dir, sum) in [("in", sum_in), ("out", sum_out)] {
        let site = &status["forwarded_bytes"][dir];
        f.check(
            site.as_u64() == Some(sum),
            format!("bytes {dir}: the forwards add up to {sum}, NATBAKE-BYTES counted {site}"),
        );
    }
    for (name, proto, connections, answers) in expected {
        let s = forward_status(status, name);
        let (b_in, b_out) = (s["bytes_in"].as_u64(), s["bytes_out"].as_u64());
        let n = *connections as u64;
        let ok = match proto {
            Proto::Udp => b_in == Some(n * (UDP_HEADERS + PROBE_LINE)) && b_out == Some(*answers),
            // At least SYN, ACK, the line and a FIN in (40 bytes of headers
            // each), SYN-ACK and the answer out; far less than 2,000 bytes.
            Proto::Tcp => {
                b_in.is_some_and(|b| b >= n * (4 * 40 + PROBE_LINE) && b < n * 2000)
                    && b_out.is_some_and(|b| b >= n * (2 * 40 + 20) && b < n * 2000)
            }
        };
        f.check(
            ok,
            format!(
                "{name}: {connections} {} connections, bytes in {b_in:?} out {b_out:?} (UDP answers {answers} bytes)",
                proto.name()
            ),
        );
    }
}

/// One TCP forward's bytes grow by exactly what the site's NATBAKE-BYTES
/// rules count while only it carries traffic.
fn check_bytes_of_one_forward(lab: &Lab, files: &InstallSet, f: &mut Findings) {
    let i = tcp_forward(lab);
    let name = lab.manifest.forwards[i].name.clone();
    let reading = |status: &Value| {
        let fw = forward_status(status, &name);
        [
            status["forwarded_bytes"]["in"].as_u64(),
            status["forwarded_bytes"]["out"].as_u64(),
            fw["bytes_in"].as_u64(),
            fw["bytes_out"].as_u64(),
        ]
    };
    let settled = || {
        // The last segments of closed connections may still be on their
        // way: wait until two readings agree.
        let mut last = reading(&lab.status(files));
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(250));
            let now = reading(&lab.status(files));
            if now == last {
                return now;
            }
            last = now;
        }
        last
    };
    let before = settled();
    let client = lab.plan.allowed_clients[i][0];
    let probes: Vec<_> = (0..3)
        .map(|_| probe(lab, i, client, Expect::SeenAs(client)))
        .collect();
    lab.run_probes(&probes, f);
    let after = settled();
    let delta: Vec<Option<u64>> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.as_ref()?.checked_sub(*b.as_ref()?))
        .collect();
    f.check(
        delta[0].is_some_and(|d| d > 0)
            && delta[1].is_some_and(|d| d > 0)
            && delta[0] == delta[2]
            && delta[1] == delta[3],
        format!(
            "{name}: 3 more connections: site-wide bytes in/out grew by {:?}/{:?}, the forward's by {:?}/{:?}",
            delta[0], delta[1], delta[2], delta[3]
        ),
    );
}

/// A fault as someone or something could cause it on the instance.
struct Fault {
    what: &'static str,
    inject: fn(&Lab),
}

fn iptables(lab: &Lab, args: &[&str]) {
    lab.on_nat("iptables", args);
}

const REPAIRABLE: &[Fault] = &[
    Fault {
        what: "natbake's chains flushed",
        inject: |lab| {
            for (table, chain) in natbake_chains(lab) {
                iptables(lab, &["-t", &table, "-F", &chain]);
            }
        },
    },
    Fault {
        what: "one DNAT rule deleted",
        inject: |lab| {
            let name = &lab.manifest.forwards[tcp_forward(lab)].name;
            let rules =
                support::run_stdout(in_ns(&lab.ns.nat, "iptables").args(["-t", "nat", "-S"]));
            let rule = rules
                .lines()
                .find(|l| l.contains(&format!("natbake:{name}\"")) && l.contains("-j DNAT"))
                .expect("the forward's DNAT rule");
            let mut args = vec!["-t", "nat", "-D"];
            args.extend(rule.split_whitespace().skip(1).map(|w| w.trim_matches('"')));
            iptables(lab, &args);
        },
    },
    Fault {
        what: "a rogue rule in a natbake chain",
        inject: |lab| {
            let outsider = format!("{}/32", lab.plan.disallowed_client);
            iptables(
                lab,
                &[
                    "-I",
                    "NATBAKE-FORWARD",
                    "1",
                    "-s",
                    &outsider,
                    "-j",
                    "ACCEPT",
                ],
            );
        },
    },
    Fault {
        what: "IP forwarding off",
        inject: |lab| lab.on_nat("sysctl", &["-q", "-w", "net.ipv4.ip_forward=0"]),
    },
    Fault {
        what: "the jump from FORWARD removed",
        inject: |lab| iptables(lab, &["-D", "FORWARD", "-j", "NATBAKE-FORWARD"]),
    },
    Fault {
        what: "the jump from PREROUTING removed",
        inject: |lab| {
            iptables(
                lab,
                &["-t", "nat", "-D", "PREROUTING", "-j", "NATBAKE-PREROUTING"],
            )
        },
    },
    Fault {
        what: "the FORWARD policy set to ACCEPT",
        inject: |lab| iptables(lab, &["-P", "FORWARD", "ACCEPT"]),
    },
];

fn natbake_chains(lab: &Lab) -> Vec<(String, String)> {
    let save = support::run_stdout(&mut in_ns(&lab.ns.nat, "iptables-save"));
    let mut table = String::new();
    let mut out = Vec::new();
    for line in save.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_owned();
        } else if let Some(chain) = line.strip_prefix(":NATBAKE-") {
            let chain = chain.split_whitespace().next().unwrap_or_default();
            out.push((table.clone(), format!("NATBAKE-{chain}")));
        }
    }
    assert!(!out.is_empty(), "no natbake chain to flush");
    out
}

#[test]
fn each_fault_is_found_by_the_next_check_and_repaired() {
    if !support::require_root("the health tests") {
        return;
    }
    let site = site();
    let (lab, files) = lab_for(&site);
    let i = tcp_forward(&lab);
    let mut f = Findings::new("faults");
    let clean = lab.health_check(&files);
    f.check(clean.success(), format!("first check: {}", clean.explain()));
    let rules = lab.iptables_save();
    for fault in REPAIRABLE {
        (fault.inject)(&lab);
        f.check(
            lab.iptables_save() != rules || lab.nat_sysctl("net.ipv4.ip_forward") != "1",
            format!("{}: the fault changed nothing", fault.what),
        );
        // Found and repaired by the first check, so well within two intervals.
        let check = lab.health_check(&files);
        f.check(
            check.success()
                && check.stderr.contains("Drift found")
                && check.stderr.contains("Repaired"),
            format!(
                "{}: the check did not repair it: {}",
                fault.what,
                check.explain()
            ),
        );
        let status = lab.status(&files);
        f.check(
            status["health"]["state"] == "repaired"
                && status["health"]["last_repair_reason"]
                    .as_str()
                    .is_some_and(|r| !r.is_empty()),
            format!(
                "{}: status after the repair: {}",
                fault.what, status["health"]
            ),
        );
        f.check(
            lab.iptables_save() == rules,
            format!("{}: the rules are not back as loaded", fault.what),
        );
        f.check(
            lab.nat_sysctl("net.ipv4.ip_forward") == "1",
            format!("{}: forwarding is off", fault.what),
        );
        check_forward(&lab, i, &mut f);
        let after = lab.health_check(&files);
        f.check(
            after.success() && !after.stderr.contains("Drift"),
            format!(
                "{}: the check after the repair: {}",
                fault.what,
                after.explain()
            ),
        );
    }
    check_all_up(&lab, &mut f);
    f.assert_clean(&lab);
}

/// The header of an ipset in the NAT namespace, or None if it is missing.
fn ipset_header(lab: &Lab, set: &str) -> Option<String> {
    lab.ipset(&["list", "-t", set])
}

/// The ipsets behind the bytes per forward: an emptied set, and a missing
/// one (which only goes once no rule matches it), are found by the next
/// check and loaded again, with every element.
#[test]
fn a_missing_or_emptied_ipset_is_found_and_repaired() {
    if !support::require_root("the health tests") {
        return;
    }
    let site = site();
    let (lab, files) = lab_for(&site);
    let i = tcp_forward(&lab);
    let mut f = Findings::new("ipsets");
    let clean = lab.health_check(&files);
    f.check(clean.success(), format!("first check: {}", clean.explain()));
    let rules = lab.iptables_save();
    let headers: Vec<Option<String>> = [SET_IN, SET_OUT]
        .iter()
        .map(|s| ipset_header(&lab, s))
        .collect();
    let entries = |h: &Option<String>| {
        h.as_deref()
            .and_then(|h| {
                h.lines()
                    .find_map(|l| l.strip_prefix("Number of entries: "))
            })
            .map(str::to_owned)
    };
    f.check(
        headers.iter().all(|h| entries(h).is_some_and(|n| n != "0")),
        format!("the sets after the boot step: {headers:?}"),
    );
    type Inject = fn(&Lab);
    let faults: [(&str, &str, Inject); 2] = [
        (
            "natbake-out emptied",
            "the ipset natbake-out holds 0 elements",
            |lab| lab.on_nat("ipset", &["flush", SET_OUT]),
        ),
        (
            "natbake-in destroyed",
            "the ipset natbake-in is missing",
            |lab| {
                lab.on_nat("iptables", &["-F", "NATBAKE-BYTES"]);
                lab.on_nat("ipset", &["destroy", SET_IN]);
            },
        ),
    ];
    for (what, finding, inject) in faults {
        inject(&lab);
        let check = lab.health_check(&files);
        f.check(
            check.success()
                && check.stderr.contains("Drift found")
                && check.stderr.contains(finding)
                && check.stderr.contains("Repaired"),
            format!(
                "{what}: the check did not find and repair it: {}",
                check.explain()
            ),
        );
        let now: Vec<Option<String>> = [SET_IN, SET_OUT]
            .iter()
            .map(|s| ipset_header(&lab, s))
            .collect();
        f.check(
            now.iter().map(entries).eq(headers.iter().map(entries)),
            format!("{what}: the sets after the repair: {now:?}, before: {headers:?}"),
        );
        f.check(
            lab.iptables_save() == rules,
            format!("{what}: the rules are not back as loaded"),
        );
        check_forward(&lab, i, &mut f);
        let after = lab.health_check(&files);
        f.check(
            after.success() && !after.stderr.contains("Drift"),
            format!("{what}: the check after the repair: {}", after.explain()),
        );
    }
    f.assert_clean(&lab);
}

/// An installed ruleset that is no longer the rendered one: reported by
/// the next check that reads the ruleset, while what is loaded still works
/// (forwarding stays on); with drift on top, the repair fails and the
/// check fails closed: forwarding off and held off, even with the intact
/// files back, until configure-pat.sh succeeds (the operator's `systemctl
/// restart natbake`).
#[test]
fn a_fault_the_boot_step_cannot_repair_fails_the_check() {
    if !support::require_root("the health tests") {
        return;
    }
    let site = site();
    let (lab, files) = lab_for(&site);
    let mut f = Findings::new("unrepairable");
    // The ruleset file changed on the instance: configure-pat.sh refuses it.
    let edited = lab.dir().join("edited-rules.v4");
    let mut text = fs::read_to_string(site.site_dir.join(RULES)).expect("read rules.v4");
    text.push_str("# edited\n");
    fs::write(&edited, text).expect("write the edited ruleset");
    let broken = files.with_source(install_path(RULES), &edited);
    let edited_only = lab.health_check(&broken);
    f.check(
        !edited_only.success()
            && edited_only
                .stderr
                .contains("is not the ruleset this script was rendered with")
            && !edited_only.stderr.contains("Drift"),
        format!(
            "an edited rules.v4 should fail the check at once: {}",
            edited_only.explain()
        ),
    );
    f.check(
        lab.nat_sysctl("net.ipv4.ip_forward") == "1",
        "forwarding should stay on while what is loaded is right",
    );
    iptables(&lab, &["-D", "FORWARD", "-j", "NATBAKE-FORWARD"]);
    let check = lab.health_check(&broken);
    f.check(
        !check.success()
            && check.stderr.contains("UNHEALTHY")
            && check.stderr.contains("repair failed")
            && check.stderr.contains("IP forwarding is off until"),
        format!("the check should fail closed: {}", check.explain()),
    );
    f.check(
        lab.nat_sysctl("net.ipv4.ip_forward") == "0",
        "forwarding should be off after the failed repair",
    );
    let status = lab.status(&files);
    f.check(
        status["health"]["state"] == "failed"
            && status["health"]["last_failure_reason"]
                .as_str()
                .is_some_and(|r| r.contains("repair failed")),
        format!("status: {}", status["health"]),
    );
    // The intact files alone do not end the hold: the check does not try
    // again for 10 minutes.
    let held = lab.health_check(&files);
    f.check(
        !held.success() && held.stderr.contains("held off") && !held.stderr.contains("Drift"),
        format!(
            "the next check should keep forwarding held off: {}",
            held.explain()
        ),
    );
    f.check(
        lab.nat_sysctl("net.ipv4.ip_forward") == "0",
        "forwarding should stay off during the hold",
    );
    // The operator's fix: configure-pat.sh again, which ends the hold.
    let boot = lab.boot_step(&files);
    f.check(
        boot.success(),
        format!("configure-pat.sh: {}", boot.explain()),
    );
    let again = lab.health_check(&files);
    f.check(
        again.success() && !again.stderr.contains("held"),
        format!("check after configure-pat.sh: {}", again.explain()),
    );
    check_forward(&lab, tcp_forward(&lab), &mut f);
    f.assert_clean(&lab);
}

/// The lines of a run's stderr that say UNHEALTHY.
fn unhealthy_lines(run: &support::Finished) -> usize {
    run.stderr
        .lines()
        .filter(|l| l.contains("UNHEALTHY"))
        .count()
}

/// The run-time rule: the same drift again within 10 minutes of its
/// repair (here an ACCEPT-all put back before natbake's jump, an open
/// router) fails closed: forwarding off, one UNHEALTHY line, the reason
/// in the health state, exit 1. Forwarding stays off, even when switched
/// on by hand, until configure-pat.sh succeeds or 10 minutes have passed;
/// then the check tries once more, and its repair ends the hold.
#[test]
fn a_recurring_drift_fails_closed_and_holds_forwarding_off() {
    if !support::require_root("the health tests") {
        return;
    }
    let site = site();
    let (lab, files) = lab_for(&site);
    let i = tcp_forward(&lab);
    let mut f = Findings::new("recurring drift");
    let clean = lab.health_check(&files);
    f.check(clean.success(), format!("first check: {}", clean.explain()));
    let rules = lab.iptables_save();
    let open = || iptables(&lab, &["-I", "FORWARD", "1", "-j", "ACCEPT"]);
    open();
    // The fault is an open router: the peer reaches a target directly.
    let mut opened = Findings::new("the fault");
    let through: Vec<_> = peer_probes(&lab)
        .into_iter()
        .map(|mut p| {
            p.expect = Expect::SeenAs(lab.plan.peer);
            p
        })
        .collect();
    lab.run_probes(&through, &mut opened);
    f.check(
        opened.is_clean(),
        "an ACCEPT-all before natbake's jump should let the peer through",
    );
    let first = lab.health_check(&files);
    f.check(
        first.success() && first.stderr.contains("Repaired"),
        format!("the first time, it is repaired: {}", first.explain()),
    );
    f.check(
        lab.iptables_save() == rules,
        "the repair should remove the ACCEPT-all",
    );
    check_all_up(&lab, &mut f);
    open();
    let second = lab.health_check(&files);
    f.check(
        !second.success()
            && unhealthy_lines(&second) == 1
            && second.stderr.contains("same drift came back")
            && !second.stderr.contains("Repaired"),
        format!("the second time, it fails closed: {}", second.explain()),
    );
    check_forwarding_off(&lab, &mut f);
    lab.run_probes(&peer_probes(&lab), &mut f);
    let status = lab.status(&files);
    f.check(
        status["health"]["state"] == "failed"
            && status["health"]["last_failure_reason"]
                .as_str()
                .is_some_and(|r| r.contains("same drift") && r.contains("IP forwarding is off")),
        format!("status: {}", status["health"]),
    );
    // Switched on by hand during the hold: off again at the next check.
    lab.on_nat("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"]);
    let held = lab.health_check(&files);
    f.check(
        !held.success() && held.stderr.contains("held off") && unhealthy_lines(&held) == 1,
        format!("during the hold: {}", held.explain()),
    );
    f.check(
        lab.nat_sysctl("net.ipv4.ip_forward") == "0",
        "forwarding switched on by hand should be off again",
    );
    // Ten minutes later the check tries again; the repair holds, and the
    // hold ends.
    lab.age_health_state(11 * 60);
    let retry = lab.health_check(&files);
    f.check(
        retry.success()
            && retry.stderr.contains("Trying the repair again")
            && retry.stderr.contains("Repaired"),
        format!("the retry after the hold: {}", retry.explain()),
    );
    f.check(
        !lab.kept_state().join("closed").exists(),
        "the hold should be over",
    );
    f.check(
        lab.iptables_save() == rules,
        "the rules should be back as loaded",
    );
    check_all_up(&lab, &mut f);
    check_forward(&lab, i, &mut f);
    f.assert_clean(&lab);
}

/// A repair that reports success but leaves the drift (here a
/// configure-pat.sh that does nothing: a half-done upgrade) fails closed
/// at once: never FORWARD policy ACCEPT with forwarding on after a check.
#[test]
fn a_repair_that_does_not_hold_fails_closed() {
    if !support::require_root("the health tests") {
        return;
    }
    let site = site();
    let (lab, files) = lab_for(&site);
    let mut f = Findings::new("repair does not hold");
    let idle = lab.dir().join("idle-configure-pat.sh");
    fs::write(&idle, "#!/bin/sh\nexit 0\n").expect("write the idle script");
    let idle_files = files.with_source(files.script_path(), &idle);
    iptables(&lab, &["-P", "FORWARD", "ACCEPT"]);
    let check = lab.health_check(&idle_files);
    f.check(
        !check.success() && check.stderr.contains("did not hold") && unhealthy_lines(&check) == 1,
        format!("the check should fail closed: {}", check.explain()),
    );
    check_forwarding_off(&lab, &mut f);
    lab.run_probes(&peer_probes(&lab), &mut f);
    f.check(
        lab.kept_state().join("closed").exists(),
        "the hold should be kept",
    );
    f.assert_clean(&lab);
}

/// `natbake-health --help` prints its usage and does nothing else: no
/// check, so no repair of the drift that is there; other arguments are a
/// usage error (exit 2).
#[test]
fn help_prints_usage_and_does_nothing() {
    if !support::require_root("the health tests") {
        return;
    }
    let site = site();
    let (lab, files) = lab_for(&site);
    let mut f = Findings::new("--help");
    iptables(&lab, &["-D", "FORWARD", "-j", "NATBAKE-FORWARD"]);
    let drifted = lab.iptables_save();
    let health = install_path(natbake::render::artifact::HEALTH);
    let help = lab.run_as_installed(&files, &[health, "--help"]);
    f.check(
        help.success()
            && help.stdout.starts_with("Usage: natbake-health")
            && help.stderr.is_empty(),
        format!("--help: {}", help.explain()),
    );
    let wrong = lab.run_as_installed(&files, &[health, "--check-now"]);
    f.check(
        wrong.status.and_then(|s| s.code()) == Some(2)
            && wrong.stderr.contains("Usage")
            && wrong.stdout.is_empty(),
        format!("an unknown argument: {}", wrong.explain()),
    );
    f.check(
        lab.iptables_save() == drifted,
        "--help or a wrong argument changed the rules",
    );
    f.check(
        !lab.kept_state().join("health").exists(),
        "--help or a wrong argument wrote a health state",
    );
    f.assert_clean(&lab);
}

/// When IP forwarding cannot be written (a read-only
/// /proc/sys/net/ipv4/ip_forward, bind-mounted in the run's own mount
/// namespace), a failing configure-pat.sh and a check that fails closed
/// both say so, loudly, instead of claiming it is off.
#[test]
fn forwarding_that_cannot_be_switched_off_is_reported() {
    if !support::require_root("the health tests") {
        return;
    }
    let site = site();
    let (lab, files) = lab_for(&site);
    let mut f = Findings::new("read-only ip_forward");
    let edited = lab.dir().join("edited-rules.v4");
    let mut text = fs::read_to_string(site.site_dir.join(RULES)).expect("read rules.v4");
    text.push_str("# edited\n");
    fs::write(&edited, text).expect("write the edited ruleset");
    let broken = files.with_source(install_path(RULES), &edited);
    let read_only = |program: &str| {
        format!(
            "mount --bind /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/ip_forward && \
             mount -o remount,bind,ro /proc/sys/net/ipv4/ip_forward && exec {program}"
        )
    };
    let boot = lab.run_as_installed(&broken, &["/bin/sh", "-c", &read_only(files.script_path())]);
    f.check(
        !boot.success()
            && boot
                .stderr
                .contains("could NOT be switched off (it reads 1)")
            && !boot.stderr.contains("IP forwarding is off"),
        format!("configure-pat.sh: {}", boot.explain()),
    );
    iptables(&lab, &["-D", "FORWARD", "-j", "NATBAKE-FORWARD"]);
    let health = install_path(natbake::render::artifact::HEALTH);
    let check = lab.run_as_installed(&broken, &["/bin/sh", "-c", &read_only(health)]);
    f.check(
        !check.success()
            && check.stderr.contains("UNHEALTHY")
            && check.stderr.contains("could NOT be switched off")
            && !check.stderr.contains("IP forwarding is off until"),
        format!("the check: {}", check.explain()),
    );
    f.check(
        lab.nat_sysctl("net.ipv4.ip_forward") == "1",
        "the lab should have kept forwarding on (read-only)",
    );
    lab.on_nat("sysctl", &["-q", "-w", "net.ipv4.ip_forward=0"]);
    f.assert_clean(&lab);
}

/// The rules the kernel holds: natbake's jump must be the first rule of
/// each built-in chain it hooks. Rules put ahead of it (an ACCEPT-all in
/// FORWARD, natbake's jump moved below one, a foreign ACCEPT or DNAT in
/// nat PREROUTING) are drift: the check puts natbake's jump first again,
/// removes a plain `-A FORWARD -j ACCEPT` (an ACCEPT policy in another
/// form), keeps other rules, and traffic is as the spec says.
#[test]
fn foreign_rules_ahead_of_natbake_are_repaired() {
    if !support::require_root("the health tests") {
        return;
    }
    let site = site();
    let (lab, files) = lab_for(&site);
    let i = tcp_forward(&lab);
    let fw = lab.manifest.forwards[i].clone();
    let client = lab.plan.allowed_clients[i][0];
    let mut f = Findings::new("foreign rules ahead");
    let clean = lab.health_check(&files);
    f.check(clean.success(), format!("first check: {}", clean.explain()));
    let rules = lab.iptables_save();
    let port = fw.listen_ports.0.to_string();
    let elsewhere = format!("{}:{}", lab.plan.unused, fw.target_port(fw.listen_ports.0));
    type Inject = Box<dyn Fn(&Lab)>;
    let faults: Vec<(&str, Inject, Option<&str>)> = vec![
        (
            "natbake's FORWARD jump moved below an ACCEPT-all",
            Box::new(|lab| {
                iptables(lab, &["-D", "FORWARD", "-j", "NATBAKE-FORWARD"]);
                iptables(lab, &["-A", "FORWARD", "-j", "ACCEPT"]);
                iptables(lab, &["-A", "FORWARD", "-j", "NATBAKE-FORWARD"]);
            }),
            None,
        ),
        (
            "a foreign ACCEPT ahead in nat PREROUTING",
            Box::new(|lab| iptables(lab, &["-t", "nat", "-I", "PREROUTING", "1", "-j", "ACCEPT"])),
            Some("-A PREROUTING -j ACCEPT"),
        ),
        (
            "a foreign DNAT of the forward's port ahead",
            Box::new(move |lab| {
                iptables(
                    lab,
                    &[
                        "-t",
                        "nat",
                        "-I",
                        "PREROUTING",
                        "1",
                        "-p",
                        "tcp",
                        "--dport",
                        &port,
                        "-j",
                        "DNAT",
                        "--to-destination",
                        &elsewhere,
                    ],
                )
            }),
            Some("-j DNAT --to-destination"),
        ),
    ];
    for (what, inject, kept) in &faults {
        inject(&lab);
        let check = lab.health_check(&files);
        f.check(
            check.success()
                && check.stderr.contains("comes after")
                && check.stderr.contains("Repaired"),
            format!("{what}: the check should repair it: {}", check.explain()),
        );
        let now = lab.iptables_save();
        for (chain, jump) in [
            ("FORWARD", "-A FORWARD -j NATBAKE-FORWARD"),
            ("PREROUTING", "-A PREROUTING -j NATBAKE-PREROUTING"),
            ("POSTROUTING", "-A POSTROUTING -j NATBAKE-POSTROUTING"),
        ] {
            let first = now.lines().find(|l| l.starts_with(&format!("-A {chain} ")));
            f.check(
                first == Some(jump),
                format!("{what}: {jump} is not first:\n{now}"),
            );
        }
        match kept {
            None => f.check(
                now == rules,
                format!("{what}: the rules are not back as loaded:\n{now}"),
            ),
            Some(rule) => f.check(
                now.lines()
                    .any(|l| l.starts_with("-A PREROUTING") && l.contains(rule)),
                format!("{what}: the foreign rule should stay, after natbake's jump:\n{now}"),
            ),
        };
        lab.run_probes(&[probe(&lab, i, client, Expect::SeenAs(client))], &mut f);
        check_all_up(&lab, &mut f);
    }
    f.assert_clean(&lab);
}

/// What natbake cannot put right without editing other software's rules
/// fails closed, at boot and so at the check's repair: a NOTRACK in the
/// raw table (no NAT for what it matches) and a foreign chain that accepts
/// everything FORWARD passes on after natbake's jump (an open router).
/// Once the rule is gone, configure-pat.sh brings the NAT back.
#[test]
fn foreign_rules_natbake_cannot_fix_fail_closed() {
    if !support::require_root("the health tests") {
        return;
    }
    let site = site();
    let (lab, files) = lab_for(&site);
    let mut f = Findings::new("foreign rules that fail closed");
    let clean = lab.health_check(&files);
    f.check(clean.success(), format!("first check: {}", clean.explain()));
    type Step = fn(&Lab);
    let faults: [(&str, &str, Step, Step); 2] = [
        (
            "a NOTRACK in raw PREROUTING",
            "turns off conntrack",
            |lab| {
                iptables(
                    lab,
                    &["-t", "raw", "-I", "PREROUTING", "1", "-j", "NOTRACK"],
                )
            },
            |lab| iptables(lab, &["-t", "raw", "-D", "PREROUTING", "-j", "NOTRACK"]),
        ),
        (
            "a foreign chain accepting all after natbake's jump",
            "accepts all",
            |lab| {
                iptables(lab, &["-N", "OTHERSW-OPEN"]);
                iptables(lab, &["-A", "OTHERSW-OPEN", "-j", "LOG"]);
                iptables(lab, &["-A", "OTHERSW-OPEN", "-j", "ACCEPT"]);
                iptables(lab, &["-A", "FORWARD", "-j", "OTHERSW-OPEN"]);
            },
            |lab| {
                iptables(lab, &["-D", "FORWARD", "-j", "OTHERSW-OPEN"]);
                iptables(lab, &["-F", "OTHERSW-OPEN"]);
                iptables(lab, &["-X", "OTHERSW-OPEN"]);
            },
        ),
    ];
    for (what, finding, inject, remove) in faults {
        inject(&lab);
        let check = lab.health_check(&files);
        f.check(
            !check.success()
                && check.stderr.contains(finding)
                && check.stderr.contains("repair failed")
                && unhealthy_lines(&check) == 1,
            format!("{what}: the check should fail closed: {}", check.explain()),
        );
        check_forwarding_off(&lab, &mut f);
        lab.run_probes(&peer_probes(&lab), &mut f);
        remove(&lab);
        let boot = lab.boot_step(&files);
        f.check(
            boot.success(),
            format!(
                "{what}: configure-pat.sh after removing it: {}",
                boot.explain()
            ),
        );
        check_all_up(&lab, &mut f);
        let after = lab.health_check(&files);
        f.check(
            after.success(),
            format!("{what}: the check afterwards: {}", after.explain()),
        );
    }
    f.assert_clean(&lab);
}

/// A full /run (the state folder a tiny, full tmpfs): the boot script no
/// longer needs room there to succeed, and the check works in /tmp for
/// that run, so drift is still repaired, with warnings, instead of a
/// failed repair switching forwarding off.
#[test]
fn a_full_run_still_repairs_drift() {
    if !support::require_root("the health tests") {
        return;
    }
    let site = site();
    let (lab, files) = lab_for(&site);
    let mut f = Findings::new("full /run");
    let clean = lab.health_check(&files);
    f.check(clean.success(), format!("first check: {}", clean.explain()));
    let rules = lab.iptables_save();
    iptables(&lab, &["-D", "FORWARD", "-j", "NATBAKE-FORWARD"]);
    iptables(&lab, &["-P", "FORWARD", "ACCEPT"]);
    let check = lab.health_check_with_full_state(&files);
    f.check(
        check.success()
            && check.stderr.contains("Repaired")
            && check.stderr.contains("WARNING")
            && !check.stderr.contains("UNHEALTHY"),
        format!("the check with /run full: {}", check.explain()),
    );
    f.check(
        check
            .stdout
            .lines()
            .next()
            .is_some_and(|l| l.split_whitespace().nth(3) == Some("0")),
        format!("the tmpfs was not full: {}", check.stdout),
    );
    f.check(
        lab.iptables_save() == rules,
        "the rules are not back as loaded",
    );
    check_all_up(&lab, &mut f);
    f.assert_clean(&lab);
}

/// A natbake set swapped for one of the same type and size with other
/// elements: found by the first check that reads the ruleset (at least
/// once a minute) 10 minutes or more after the sets were loaded or last
/// compared, which compares a digest of all elements with the one kept at
/// load, and repaired; the forward's bytes count again.
#[test]
fn a_swapped_ipset_is_found_and_repaired() {
    if !support::require_root("the health tests") {
        return;
    }
    let site = site();
    let (lab, files) = lab_for(&site);
    let mut f = Findings::new("swapped ipset");
    let clean = lab.health_check(&files);
    f.check(clean.success(), format!("first check: {}", clean.explain()));
    let loaded = lab.ipset(&["save", SET_IN]).unwrap_or_default();
    let header = ipset_header(&lab, SET_IN).unwrap_or_default();
    let n = header
        .lines()
        .find_map(|l| l.strip_prefix("Number of entries: "))
        .and_then(|n| n.parse::<usize>().ok())
        .expect("natbake-in's size");
    let create = loaded
        .lines()
        .find(|l| l.starts_with("create "))
        .expect("natbake-in's create line")
        .replacen(SET_IN, "natbake-other", 1);
    let mut restore = format!("{create}\n");
    for k in 0..n {
        restore.push_str(&format!(
            "add natbake-other 10.0.9.{},tcp:{}\n",
            1 + k % 250,
            2000 + k
        ));
    }
    let file = lab.dir().join("other-set");
    fs::write(&file, restore).expect("write the other set");
    support::run(in_ns(&lab.ns.nat, "sh").arg("-c").arg(format!(
        "ipset restore < {} && ipset swap natbake-other {SET_IN} && ipset destroy natbake-other",
        file.display()
    )));
    let swapped = ipset_header(&lab, SET_IN).unwrap_or_default();
    f.check(
        swapped.contains(&format!("Number of entries: {n}")),
        format!("the swapped-in set should be of the same size: {swapped}"),
    );
    // Within 10 minutes of the load, the elements are not listed (too
    // costly for every minute): the first check does not see it.
    fs::remove_file(lab.kept_state().join("counted")).expect("forget the last read");
    let soon = lab.health_check(&files);
    f.check(
        soon.success() && !soon.stderr.contains("Drift"),
        format!("within 10 minutes of the load: {}", soon.explain()),
    );
    // Ten minutes on, the next read of the ruleset compares them.
    lab.age_health_state(11 * 60);
    fs::remove_file(lab.kept_state().join("counted")).expect("forget the last read");
    let check = lab.health_check(&files);
    f.check(
        check.success()
            && check.stderr.contains("other elements than loaded")
            && check.stderr.contains("Repaired"),
        format!("the check should find and repair it: {}", check.explain()),
    );
    let now = lab.ipset(&["save", SET_IN]).unwrap_or_default();
    let elements = |s: &str| {
        let mut e: Vec<String> = s
            .lines()
            .filter(|l| l.starts_with("add "))
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .collect();
        e.sort();
        e
    };
    f.check(
        elements(&now) == elements(&loaded),
        format!("{SET_IN} should hold the loaded elements again:\n{now}"),
    );
    check_bytes_of_one_forward(&lab, &files, &mut f);
    f.assert_clean(&lab);
}

#[test]
fn a_nearly_full_conntrack_table_fails_the_check() {
    if !support::require_root("the health tests") {
        return;
    }
    let site = site();
    let (lab, files) = lab_for(&site);
    let mut f = Findings::new("conntrack");
    let max: u64 = lab
        .nat_sysctl("net.netfilter.nf_conntrack_max")
        .parse()
        .expect("conntrack max");
    // The maximum is the host's (read-only in a namespace), so the table is
    // filled to it rather than the maximum lowered: 91% of it, in the NAT
    // namespace only, towards the lab's private host, kept for 10 minutes.
    lab.on_nat(
        "sysctl",
        &["-q", "-w", "net.netfilter.nf_conntrack_udp_timeout=600"],
    );
    let want = max * 91 / 100;
    let targets: Vec<String> = {
        let mut t: Vec<String> = lab
            .manifest
            .forwards
            .iter()
            .map(|f| f.target_address.to_string())
            .collect();
        t.sort();
        t.dedup();
        t
    };
    assert!(
        (targets.len() as u64) * 65535 >= want,
        "not enough lab addresses to fill conntrack"
    );
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/netlab/conntrack_fill.py");
    support::run(
        in_ns(&lab.ns.nat, "python3")
            .arg(script)
            .arg(targets.join(","))
            .arg(want.to_string()),
    );
    let check = lab.health_check(&files);
    f.check(
        !check.success() && check.stderr.contains("conntrack table holds"),
        format!("the check should report conntrack: {}", check.explain()),
    );
    let status = lab.status(&files);
    f.check(
        status["health"]["state"] == "failed"
            && status["conntrack"]["fill_percent"]
                .as_f64()
                .is_some_and(|p| p >= 90.0),
        format!("status: {} {}", status["health"], status["conntrack"]),
    );
    f.assert_clean(&lab);
}

/// A check reads the ruleset (one iptables-save) only when the kernel's
/// nf_tables generation changed since it was last found right, or when
/// the counters are due (once a minute); otherwise it trusts the
/// generation. Any change, even outside natbake's chains, makes the next
/// check read it again, and a fault then is found at once.
#[test]
fn the_ruleset_is_read_again_only_after_a_change_or_a_minute() {
    if !support::require_root("the health tests") {
        return;
    }
    let site = site();
    let (lab, files) = lab_for(&site);
    let mut f = Findings::new("generation");
    let compared = |f: &mut Findings, what: &str| {
        let check = lab.health_check(&files);
        f.check(
            check.success() && !check.stderr.contains("Drift"),
            format!("{what}: {}", check.explain()),
        );
        lab.status(&files)["health"]["compared"].as_u64()
    };
    let first = compared(&mut f, "first check");
    f.check(first.is_some(), "the first check did not read the ruleset");
    let verified = std::fs::read_to_string(lab.kept_state().join("verified")).unwrap_or_default();
    f.check(
        verified.split_whitespace().count() == 2,
        format!("no verified generation kept: {verified:?}"),
    );
    // `compared` is in seconds: wait for the next one.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = compared(&mut f, "unchanged");
    f.check(
        second == first,
        format!("an unchanged ruleset was read again ({first:?}, then {second:?})"),
    );
    // A change outside natbake's part: read again, and no drift.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    lab.on_nat("iptables", &["-t", "filter", "-N", "SOMEONE-ELSE"]);
    let third = compared(&mut f, "someone else's chain");
    f.check(
        third > second,
        format!(
            "a changed generation did not make the check read the ruleset ({second:?}, {third:?})"
        ),
    );
    // The counters once a minute: the last read made to look a minute old.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let counted = lab.kept_state().join("counted");
    let old = third.unwrap_or(0).saturating_sub(60);
    std::fs::write(&counted, format!("{old}\n")).unwrap();
    let fourth = compared(&mut f, "counters due");
    f.check(
        fourth > third,
        format!("counters a minute old were not read ({third:?}, {fourth:?})"),
    );
    // A fault right after a trusted check is found by the next one.
    lab.on_nat("iptables", &["-t", "nat", "-F", "NATBAKE-DNAT"]);
    let check = lab.health_check(&files);
    f.check(
        check.success() && check.stderr.contains("Drift found"),
        format!("flushed chain after a trusted check: {}", check.explain()),
    );
    lab.on_nat("iptables", &["-t", "filter", "-X", "SOMEONE-ELSE"]);
    check_all_up(&lab, &mut f);
    f.assert_clean(&lab);
}

#[test]
fn two_hundred_clean_checks_raise_no_alarm() {
    if !support::require_root("the health tests") {
        return;
    }
    let site = site();
    let (lab, files) = lab_for(&site);
    let mut f = Findings::new("clean checks");
    let first = lab.health_check(&files);
    f.check(first.success(), format!("first check: {}", first.explain()));
    let before = lab.status(&files)["health"]["compared"].as_u64();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let runs = lab.health_checks(&files, 200);
    f.check(runs.success(), format!("200 checks: {}", runs.explain()));
    f.check(
        !runs.stderr.contains("Drift") && !runs.stderr.contains("UNHEALTHY"),
        format!("a clean system raised an alarm: {}", runs.explain()),
    );
    let status = lab.status(&files);
    f.check(
        status["health"]["state"] == "ok" && status["health"]["last_repair"].is_null(),
        format!("status: {}", status["health"]),
    );
    // Half the runs compared the whole ruleset, the last one among them.
    f.check(
        before.is_some() && status["health"]["compared"].as_u64() > before,
        format!(
            "the runs that read the ruleset left no mark (first {before:?}): {}",
            status["health"]
        ),
    );
    check_all_up(&lab, &mut f);
    f.assert_clean(&lab);
}

/// ENA's allowance counters as natbake-status shows them and the metrics
/// publish them: read with `ethtool -S` from the interfaces whose driver is
/// `ena`, and only the `*_allowance_exceeded` ones. The library runs as
/// rendered, against a made-up /sys/class/net and an `ethtool` stand-in
/// that prints what ENA's driver prints.
#[test]
fn ena_allowance_counters_come_from_ena_interfaces_only() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (dev, driver) in [("ens5", "ena"), ("ens6", "ena"), ("eth9", "virtio_net")] {
        fs::create_dir_all(d.join("drivers").join(driver)).unwrap();
        fs::create_dir_all(d.join("net").join(dev).join("device")).unwrap();
        std::os::unix::fs::symlink(
            d.join("drivers").join(driver),
            d.join("net").join(dev).join("device/driver"),
        )
        .unwrap();
        fs::write(
            d.join(format!("stats-{dev}")),
            format!(
                "NIC statistics:\n     tx_timeout: 0\n     bw_in_allowance_exceeded: {n}\n     bw_out_allowance_exceeded: 0\n     pps_allowance_exceeded: 7\n     conntrack_allowance_exceeded: 3\n     linklocal_allowance_exceeded: 0\n     conntrack_allowance_available: 136812\n",
                n = dev.len() * 100
            ),
        )
        .unwrap();
    }
    fs::create_dir_all(d.join("net/lo")).unwrap();
    let script = format!(
        ". '{lib}'\nSYSFS_NET='{net}'\nfunction ethtool {{ [ \"$1\" = -S ] && cat '{d}/stats-'\"$2\"; }}\nena_allowance",
        lib = site.site_dir.join("natbake-lib.sh").display(),
        net = d.join("net").display(),
        d = d.display()
    );
    let out = support::run(std::process::Command::new("bash").args(["-c", &script]));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "ens5 bw_in_allowance_exceeded 400",
            "ens5 bw_out_allowance_exceeded 0",
            "ens5 conntrack_allowance_exceeded 3",
            "ens5 linklocal_allowance_exceeded 0",
            "ens5 pps_allowance_exceeded 7",
            "ens6 bw_in_allowance_exceeded 400",
            "ens6 bw_out_allowance_exceeded 0",
            "ens6 conntrack_allowance_exceeded 3",
            "ens6 linklocal_allowance_exceeded 0",
            "ens6 pps_allowance_exceeded 7",
        ]
    );
    // Every counter the driver documents is published, and nothing else.
    let published: Vec<&str> = natbake::metrics::ENA_METRICS
        .iter()
        .map(|(c, _)| *c)
        .collect();
    let mut seen: Vec<&str> = lines.iter().filter_map(|l| l.split(' ').nth(1)).collect();
    seen.sort();
    seen.dedup();
    let mut want = published.clone();
    want.sort();
    assert_eq!(seen, want);
}

/// Runs `script` in bash with the rendered `lib` (a file of the site)
/// sourced first, `awk` being `mawk` as on Debian 12 and Ubuntu; its
/// standard output.
fn with_library(site: &RenderedSite, lib: &str, dir: &std::path::Path, script: &str) -> String {
    let mawk = std::path::Path::new("/usr/bin/mawk");
    assert!(
        mawk.exists(),
        "mawk, Debian's awk, is needed: apt-get install mawk"
    );
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let _ = std::os::unix::fs::symlink(mawk, bin.join("awk"));
    let out = support::run(
        std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                ". '{}' || exit 1\n{script}",
                site.site_dir.join(lib).display()
            ))
            .current_dir(dir)
            .env(
                "PATH",
                format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display()),
            ),
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The datums of one publish, as the health check makes them under
/// Debian's awk (mawk): counts of 2^31 and more exact (mawk prints awk
/// numbers from there on as 2.14748e+09); a counter read under another
/// reload id than its kept one counted whole, even when it has grown past
/// the kept value (1,500 connections after a reload are 1,500, not 500);
/// a counter below its kept value without a reload counted whole. And a
/// publish that sent only its first request keeps the state of those
/// datums only.
#[test]
fn metric_counts_are_exact_past_2_31_and_across_reloads() {
    let site = render(&fixture_spec("metrics-only"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("counters"), "web 1500 7\nopen 3000000005 -\n").unwrap();
    let state = "conn web 1000 R1\ndenied web 2 R1\nconn open 5 R1\nconn * 1005 R1\ndenied * 2 R1\nbytes in 10 R1\nbytes out 3000000000 R1\ndrops - 9 R1\nena pps_allowance_exceeded 1 R1\n";
    fs::write(d.join("state"), state).unwrap();
    let datums = |reload: &str| {
        with_library(
            &site,
            "natbake-metrics.sh",
            d,
            &format!(
                "metrics_datums counters state out healthy=1 per_forward=yes site=s reload={reload} bin=4294967306 bout=5 drops=4 count=3 fill=0.01 ena='pps_allowance_exceeded 2147483649' ena_metrics='pps_allowance_exceeded=PpsAllowanceExceeded' || exit 1\npaste -d '|' out out.keys"
            ),
        )
    };
    // The same load as the kept state: what was added.
    assert_eq!(
        datums("R1"),
        "NewConnections Count 500 Site=s Forward=web|conn web 1500 R1\n\
         DeniedAttempts Count 5 Site=s Forward=web|denied web 7 R1\n\
         NewConnections Count 3000000000 Site=s Forward=open|conn open 3000000005 R1\n\
         NewConnections Count 3000000500 Site=s|conn * 3000001505 R1\n\
         DeniedAttempts Count 5 Site=s|denied * 7 R1\n\
         ForwardedBytesIn Bytes 4294967296 Site=s|bytes in 4294967306 R1\n\
         ForwardedBytesOut Bytes 5 Site=s|bytes out 5 R1\n\
         ForwardDrops Count 4 Site=s|drops - 4 R1\n\
         ConntrackEntries Count 3 Site=s|-\n\
         ConntrackFillPercent Percent 0.01 Site=s|-\n\
         PpsAllowanceExceeded Count 2147483648 Site=s|ena pps_allowance_exceeded 2147483649 R1\n\
         Healthy None 1 Site=s|-\n"
    );
    // Reloaded since: every counter of the ruleset restarted, ENA's not.
    let reloaded = datums("R2");
    for want in [
        "NewConnections Count 1500 Site=s Forward=web|conn web 1500 R2",
        "DeniedAttempts Count 7 Site=s Forward=web|denied web 7 R2",
        "NewConnections Count 3000001505 Site=s|conn * 3000001505 R2",
        "ForwardedBytesIn Bytes 4294967306 Site=s|bytes in 4294967306 R2",
        "ForwardDrops Count 4 Site=s|drops - 4 R2",
        "PpsAllowanceExceeded Count 2147483648 Site=s|ena pps_allowance_exceeded 2147483649 R2",
    ] {
        assert!(
            reloaded.lines().any(|l| l == want),
            "{want:?} in\n{reloaded}"
        );
    }
    // Only the first two datums went out: only their state moves on.
    let kept = with_library(
        &site,
        "natbake-metrics.sh",
        d,
        "metrics_commit state out.keys 2 || exit 1\nsort state",
    );
    let mut want: Vec<&str> = state
        .lines()
        .filter(|l| !l.starts_with("conn web") && !l.starts_with("denied web"))
        .chain(["conn web 1500 R2", "denied web 7 R2"])
        .collect();
    want.sort();
    assert_eq!(kept.lines().collect::<Vec<_>>(), want);
}

/// /etc/natbake/aws.env as people write it: comments, blank lines, leading
/// blanks, `export `, quotes, CRLF, a last line without a newline; the
/// environment wins over the file. A name natbake does not know, a value
/// that is not a URL or word, or a line that is not NAME=VALUE is refused
/// with its line number. Never sourced: a `$(...)` stays text, and is
/// refused as a value.
#[test]
fn aws_env_file_is_parsed_as_people_write_it() {
    let site = render(&fixture_spec("metrics-only"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let read = |text: &[u8], env: &str| {
        fs::write(d.join("aws.env"), text).unwrap();
        with_library(
            &site,
            "natbake-aws.sh",
            d,
            &format!(
                "unset NATBAKE_EC2_ENDPOINT NATBAKE_AUTOSCALING_ENDPOINT NATBAKE_CLOUDWATCH_ENDPOINT NATBAKE_FLOATING_CONFIG\n{env}\nAWS_ENV_FILE=aws.env\nif aws_read_env_file; then echo \"${{NATBAKE_EC2_ENDPOINT:-}}|${{NATBAKE_AUTOSCALING_ENDPOINT:-}}|${{NATBAKE_CLOUDWATCH_ENDPOINT:-}}|${{NATBAKE_FLOATING_CONFIG:-}}\"; else echo \"refused: $AWS_MESSAGE\"; fi"
            ),
        )
    };
    let file = b"# endpoints of the VPC\n\n  export NATBAKE_EC2_ENDPOINT=https://vpce-1.ec2.us-east-1.vpce.amazonaws.com/\n\tNATBAKE_AUTOSCALING_ENDPOINT=\"http://10.0.0.9:8080/\"\r\nexport\tNATBAKE_FLOATING_CONFIG='ip'  \nNATBAKE_CLOUDWATCH_ENDPOINT=http://cw/";
    assert_eq!(
        read(file, ""),
        "https://vpce-1.ec2.us-east-1.vpce.amazonaws.com/|http://10.0.0.9:8080/|http://cw/|ip\n"
    );
    assert_eq!(
        read(file, "NATBAKE_EC2_ENDPOINT=http://from-env/"),
        "http://from-env/|http://10.0.0.9:8080/|http://cw/|ip\n"
    );
    for (text, why) in [
        (
            &b"NATBAKE_EC2_ENDPOINT=http://a/\nNATBAKE_EC2_ENDPONT=http://b/\n"[..],
            "line 2 sets NATBAKE_EC2_ENDPONT, which natbake does not know",
        ),
        (
            b"NATBAKE_EC2_ENDPOINT=http://a/$(reboot)\n",
            "line 1: the value of NATBAKE_EC2_ENDPOINT is not a URL or word",
        ),
        (
            b"\nNATBAKE_EC2_ENDPOINT http://a/",
            "line 2 is not NAME=VALUE",
        ),
    ] {
        let got = read(text, "");
        assert!(
            got.starts_with("refused: ") && got.contains(why),
            "{}: {got}",
            String::from_utf8_lossy(text)
        );
    }
}

/// The nf_tables generation is read from the kernel's NFT_MSG_NEWGEN
/// answer by the attribute's type without its two flag bits
/// (NLA_TYPE_MASK, 0x3fff: NLA_F_NESTED and NLA_F_NET_BYTEORDER): the
/// rendered perl program, its socket calls replaced by a canned answer
/// whose NFTA_GEN_ID carries the byte-order flag.
#[test]
fn the_generation_attribute_is_found_whatever_its_flag_bits() {
    let site = render(&fixture_spec("metrics-only"));
    let lib = fs::read_to_string(site.site_dir.join("natbake-lib.sh")).unwrap();
    let start = lib.find("perl -e '").expect("the generation reader") + "perl -e '".len();
    let program = &lib[start..start + lib[start..].find("' 2>/dev/null").unwrap()];
    // nlmsghdr, nfgenmsg, then NFTA_GEN_PROC_PID (2) and NFTA_GEN_ID (1),
    // both with NLA_F_NET_BYTEORDER (0x4000).
    let canned = r#"BEGIN {
      my $m = pack("L S S L L C C n", 36, 10 << 8 | 15, 0, 1, 0, 0, 0, 0)
        . pack("S S N", 8, 0x4002, 999) . pack("S S N", 8, 0x4001, 4000000000);
      *CORE::GLOBAL::socket = sub { 1 }; *CORE::GLOBAL::bind = sub { 1 };
      *CORE::GLOBAL::send = sub { 1 }; *CORE::GLOBAL::recv = sub { $_[1] = $m; "" };
    }"#;
    let out = std::process::Command::new("perl")
        .args(["-e", canned, "-e", program])
        .output()
        .expect("perl");
    assert_eq!(
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).as_ref()
        ),
        (true, "4000000000\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// natbake-status prints only what a JSON parser and a terminal can take,
/// whatever the health check's reasons quote (a rule comment can hold any
/// byte): terminal escapes (ESC, BEL, the C1 control CSI), bytes that are
/// not UTF-8, quotes and backslashes. In JSON the output is valid UTF-8,
/// control characters escaped and the bad bytes U+FFFD; in the table
/// every control character and bad byte shows as \xNN.
#[test]
fn status_prints_valid_json_and_no_raw_escapes() {
    if !support::require_root("the health tests") {
        return;
    }
    let site = site();
    let (lab, files) = lab_for(&site);
    let check = lab.health_check(&files);
    assert!(check.success(), "{}", check.explain());
    let reason: &[u8] = b"natbake's rules differ: + nat NATBAKE-DNAT -m comment --comment \"\x1b[31mred\x1b]0;title\x07 \xc2\x9b2J caf\xc3\xa9 \xff\xfe \xe2\x82 \xed\xa0\x80 \\\"";
    let state = lab.kept_state().join("health");
    let mut text: Vec<u8> = fs::read(&state)
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && !l.starts_with(b"last_repair"))
        .flat_map(|l| l.iter().copied().chain([b'\n']))
        .collect();
    text.extend_from_slice(b"last_repair=1700000000\nlast_repair_reason=");
    text.extend_from_slice(reason);
    text.push(b'\n');
    fs::write(&state, text).unwrap();

    let (ok, json) = lab.status_bytes(&files, &["--json"]);
    assert!(ok, "natbake-status --json failed");
    let status: Value = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "not JSON in UTF-8 ({e}): {}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(
        status["health"]["last_repair_reason"],
        "natbake's rules differ: + nat NATBAKE-DNAT -m comment --comment \"\u{1b}[31mred\u{1b}]0;title\u{7} \u{9b}2J café \u{fffd}\u{fffd} \u{fffd}\u{fffd} \u{fffd}\u{fffd}\u{fffd} \\\""
    );
    // The escapes are \u escapes in the bytes, not raw.
    assert!(
        !json.iter().any(|&b| b < 0x20 && b != b'\n'),
        "raw control bytes in the JSON"
    );

    let (ok, table) = lab.status_bytes(&files, &[]);
    assert!(ok, "natbake-status failed");
    let table = String::from_utf8(table).expect("the table is UTF-8");
    assert!(
        !table
            .chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{fffd}'),
        "raw control characters in the table:\n{table:?}"
    );
    assert!(
        table.contains("--comment \"\\x1b[31mred\\x1b]0;title\\x07 \\xc2\\x9b2J café \\xff\\xfe \\xe2\\x82 \\xed\\xa0\\x80 \\\""),
        "{table}"
    );
}

/// 20,000 forwards, whose names alone are more than the kernel takes as
/// one argument (128 KiB): the health check reads every forward's
/// counters and records when each was last seen, and natbake-status shows
/// them all, as JSON and as a table. Nothing is lost quietly.
#[test]
fn twenty_thousand_forwards_are_counted_and_shown() {
    if !support::require_root("the health tests") {
        return;
    }
    const FORWARDS: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = String::from(
        "version: 1\nsite: twenty-thousand\nos: debian-12\nvpc_cidrs: [10.0.0.0/16]\nhealth: {}\nforwards:\n",
    );
    for i in 0..FORWARDS {
        spec.push_str(&format!(
            "  - {{name: f{i:05}, port: {}, to: 10.0.{}.{}:8080, from: [203.0.113.110/32]}}\n",
            20_000 + i,
            64 + i / 250,
            2 + i % 250
        ));
    }
    let path = dir.path().join("twenty-thousand.yaml");
    fs::write(&path, spec).unwrap();
    let site = render(&path);
    let (lab, files) = lab_for(&site);
    let probed: Vec<usize> = lab.tested_forwards().map(|(i, _)| i).take(2).collect();
    let mut f = Findings::new("20,000 forwards");
    for &i in &probed {
        let client = lab.plan.allowed_clients[i][0];
        lab.run_probes(
            &[
                probe(&lab, i, client, Expect::SeenAs(client)),
                probe(&lab, i, lab.plan.disallowed_client, Expect::Nothing),
            ],
            &mut f,
        );
    }
    let check = lab.health_check(&files);
    f.check(
        check.success(),
        format!("health check: {}", check.explain()),
    );
    let seen = fs::read_to_string(lab.kept_state().join("seen")).unwrap_or_default();
    f.check(
        seen.lines().filter(|l| !l.starts_with('#')).count() == FORWARDS,
        format!("the check recorded {} forwards", seen.lines().count()),
    );
    let status = lab.status(&files);
    let all = status["forwards"].as_array().cloned().unwrap_or_default();
    f.check(
        all.len() == FORWARDS,
        format!("natbake-status shows {} forwards", all.len()),
    );
    for (i, fw) in lab.manifest.forwards.iter().enumerate() {
        if !(probed.contains(&i) || i == 1 || i == FORWARDS - 2) {
            continue;
        }
        let s = forward_status(&status, &fw.name);
        let want = u64::from(probed.contains(&i));
        f.check(
            s["connections"] == want
                && s["denied"] == want
                && s["last_seen"].is_u64() == (want == 1),
            format!("forward {}: {s}", fw.name),
        );
    }
    f.assert_clean(&lab);
}
