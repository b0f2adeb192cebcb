//! natbake-standby's functions on canned answers, without root: the
//! standby fixture's rendered script and libraries, stand-ins for
//! systemctl, conntrackd and the AWS client's program (`standby_aws.sh`,
//! answering from files; an attach makes the device in a scratch sysfs),
//! every file of the script in the scratch folder (`standby_env.sh`).
//! What needs keepalived, conntrackd and traffic is the pair lab's.

use std::fs;
use std::os::unix::fs::symlink;

use super::harness::{Awk, Ran, Shell, helpers};

const ME: &str = "i-0aaaaaaaaaaaaaaaa";
const PEER_B: &str = "i-0bbbbbbbbbbbbbbbb";
const PEER_C: &str = "i-0cccccccccccccccc";
const MY_MAC: &str = "0e:00:00:00:00:0a";
const ENI: &str = "eni-0123456789abcdef0";
const ENI_MAC: &str = "0e:00:00:00:00:f1";

/// A shell with the standby fixture's natbake-standby loaded and its
/// stand-ins; systemd "runs" (its folder exists in the scratch).
fn shell() -> Shell {
    let sh = Shell::new("standby", Awk::Mawk).load("natbake-standby.sh");
    let stub = helpers().join("stub.sh");
    for name in ["systemctl", "conntrackd"] {
        symlink(&stub, sh.path("bin").join(name)).unwrap();
    }
    sh.answer("systemctl", "", 0);
    sh.answer("conntrackd", "", 0);
    sh.write(
        "stubs/aws/config",
        "NATBAKE_EC2_ENDPOINT=\nNATBAKE_FLOATING_CONFIG=ip\n",
    );
    sh
}

/// Runs `lines` after the standby's scratch environment.
fn run(sh: &Shell, lines: &str) -> Ran {
    sh.run(&format!(
        ". '{}'\n{lines}",
        helpers().join("standby_env.sh").display()
    ))
}

/// No attach and no detach was asked of the API (`context` names the case).
fn assert_nothing_moved(sh: &Shell, context: &str) {
    let calls = aws_calls(sh);
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("aws detach") || c.starts_with("aws attach")),
        "{context}: {calls:?}"
    );
}

/// describe-floating answers that the peer holds the interface, and
/// EC2 says the peer is running.
fn held_by_a_running_peer(sh: &Shell) {
    describe(
        sh,
        "describe-floating",
        Some((PEER_B, "eni-attach-0bbbbbbbbbbbbbbbb")),
    );
    aws(
        sh,
        "instance-state",
        &["state=running", "group=nat", "interfaces=2"],
    );
}

/// The AWS stand-in's answer to `command` (file name as the stand-in
/// looks it up: "describe-floating.2" for its second call).
fn aws(sh: &Shell, command: &str, lines: &[&str]) {
    sh.write(
        &format!("stubs/aws/{command}"),
        format!("{}\n", lines.join("\n")),
    );
}

/// describe-floating's answer: the interface held by `holder` (or free).
fn floating(holder: Option<(&str, &str)>) -> Vec<String> {
    let mut out = vec![
        format!("instance={ME}"),
        "zone=us-east-1a".into(),
        format!("id={ENI}"),
        format!("mac={ENI_MAC}"),
        "address=10.0.1.100".into(),
    ];
    match holder {
        Some((who, attachment)) => out.extend([
            "status=in-use".into(),
            format!("holder={who}"),
            format!("attachment={attachment}"),
            "attached=attached".into(),
        ]),
        None => out.extend([
            "status=available".into(),
            "holder=".into(),
            "attachment=".into(),
            "attached=".into(),
        ]),
    }
    out
}

fn describe(sh: &Shell, call: &str, holder: Option<(&str, &str)>) {
    let lines = floating(holder);
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    aws(sh, call, &lines);
}

/// describe-floating's answer: the interface held by `holder` through
/// `attachment`, which the holder is letting go (a handover).
fn describe_detaching(sh: &Shell, call: &str, holder: &str, attachment: &str) {
    let lines: Vec<String> = floating(Some((holder, attachment)))
        .into_iter()
        .map(|l| {
            if l == "attached=attached" {
                "attached=detaching".into()
            } else {
                l
            }
        })
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    aws(sh, call, &lines);
}

fn peers(sh: &Shell, list: &[(&str, &str, &str)]) {
    let mut lines = vec![
        format!("instance={ME}"),
        "zone=us-east-1a".into(),
        "address=10.0.1.10".into(),
        format!("mac={MY_MAC}"),
        "group=nat".into(),
        format!("peers={}", list.len()),
    ];
    for (n, (id, address, state)) in list.iter().enumerate() {
        lines.push(format!("peer{}={id} {address} {state}", n + 1));
    }
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    aws(sh, "peers", &lines);
}

/// The attach's answer, and its effect: the floating interface's device
/// (its MAC as ens6) appears in the scratch sysfs.
fn attach_brings_the_device(sh: &Shell) {
    aws(sh, "attach", &["attachment=eni-attach-0aaaaaaaaaaaaaaaa"]);
    sh.write(
        "stubs/aws/attach.do",
        format!("mkdir -p \"$SCRATCH/sys/class/net/ens6\"; echo {ENI_MAC} >\"$SCRATCH/sys/class/net/ens6/address\"\n"),
    );
}

fn aws_calls(sh: &Shell) -> Vec<String> {
    sh.calls()
        .into_iter()
        .filter(|c| c.starts_with("aws "))
        .collect()
}

/// The instance's own device, and (when `holding`) the floating
/// interface's, kept as the last takeover left it.
fn devices(holding: bool) -> String {
    let mut s = format!("unit_device eth0 {MY_MAC}\n");
    s.push_str(&format!(
        "mkdir -p \"$SCRATCH/state\"; echo '{ENI} {ENI_MAC} 10.0.1.100' >\"$FLOATING_KEPT\"\n"
    ));
    if holding {
        s.push_str(&format!("unit_device ens6 {ENI_MAC}\n"));
    }
    s
}

#[test]
fn the_peer_is_found_through_the_api_and_written_into_both_configurations() {
    let sh = shell();
    peers(
        &sh,
        &[
            (PEER_B, "10.0.1.11", "running"),
            (PEER_C, "10.0.1.12", "running"),
        ],
    );
    let out = run(
        &sh,
        &format!(
            "{}(do_discover); echo rc=$?; cat \"$PEER_FILE\" \"$KEEPALIVED_LOCAL\"; grep -c 10.0.1.11 \"$CONNTRACKD_CONF\"",
            devices(false)
        ),
    );
    let text = out.expect(0);
    assert!(text.contains("rc=0"), "{}", out.explain());
    assert!(text.contains(&format!("{PEER_B} 10.0.1.11 1000")), "{text}");
    assert!(
        text.contains("interface eth0\nunicast_src_ip 10.0.1.10\nunicast_peer {\n  10.0.1.11\n}"),
        "{text}"
    );
    let calls = sh.calls();
    assert!(
        calls.contains(&"host systemctl restart conntrackd.service".into()),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"host systemctl reload-or-restart keepalived.service".into()),
        "{calls:?}"
    );
    assert!(aws_calls(&sh).contains(&"aws peers pair".into()));
    // The holder pairs with the newest (the replacement), and a second
    // look that finds the same peer changes nothing.
    let out = run(
        &sh,
        &format!(
            "{}(do_discover); cat \"$PEER_FILE\"; (do_discover); echo rc=$?",
            devices(true)
        ),
    );
    let text = out.expect(0);
    assert!(text.contains(&format!("{PEER_C} 10.0.1.12 1000")), "{text}");
    let restarts = sh
        .calls()
        .iter()
        .filter(|c| c.contains("systemctl restart conntrackd"))
        .count();
    assert_eq!(restarts, 1, "{:?}", sh.calls());
}

#[test]
fn alone_at_boot_the_instance_takes_the_free_interface_without_force() {
    let sh = shell();
    peers(&sh, &[]);
    describe(&sh, "describe-floating.1", None);
    describe(&sh, "describe-floating.2", None);
    describe(
        &sh,
        "describe-floating",
        Some((ME, "eni-attach-0aaaaaaaaaaaaaaaa")),
    );
    attach_brings_the_device(&sh);
    let out = run(
        &sh,
        &format!(
            "{}(do_start); echo rc=$?; cat \"$IP_FORWARD\" \"$ROLE_FILE\" \"$TAKEOVERS_FILE\" \"$LAST_TAKEOVER\"",
            devices(false).replace(
                &format!("echo '{ENI} {ENI_MAC} 10.0.1.100' >\"$FLOATING_KEPT\""),
                ":"
            )
        ),
    );
    let lines = out.lines(0);
    assert_eq!(lines[0], "rc=0", "{}", out.explain());
    assert_eq!(lines[1], "1", "forwarding: {}", out.explain());
    assert!(lines[2].starts_with("active "), "{}", out.explain());
    assert_eq!(lines[3], "1");
    assert!(
        lines[4].contains(" ok ") && lines[4].ends_with(" -"),
        "{}",
        lines[4]
    );
    let calls = aws_calls(&sh);
    assert!(calls.contains(&format!("aws attach {ENI}")), "{calls:?}");
    assert!(
        !calls.iter().any(|c| c.starts_with("aws detach")),
        "{calls:?}"
    );
    // Alone: no keepalived, no conntrackd started by the boot.
    assert!(
        !sh.calls().iter().any(|c| c.contains("systemctl")),
        "{:?}",
        sh.calls()
    );
}

/// keepalived kept this instance standby for longer than the heard rule's
/// time (`role` written 20 s ago by the clock since boot, which is 1000).
const HEARD_STANDBY: &str = "printf 'standby %s 980\\n' $(( $(date +%s) - 20 )) >\"$ROLE_FILE\"";

/// The peer held the interface and went silent, after keepalived had kept
/// this instance standby on its adverts: the takeover detaches it by force
/// at once (its state not asked: a hung instance stays running), looks
/// again within a second, attaches it as soon as it is free, and forwards.
#[test]
fn a_takeover_forces_the_interface_away_from_a_silent_peer_it_heard() {
    let sh = shell();
    let att = "eni-attach-0bbbbbbbbbbbbbbbb";
    describe(&sh, "describe-floating.1", Some((PEER_B, att)));
    describe(&sh, "describe-floating.2", Some((PEER_B, att)));
    describe(&sh, "describe-floating.3", None);
    describe(
        &sh,
        "describe-floating",
        Some((ME, "eni-attach-0aaaaaaaaaaaaaaaa")),
    );
    aws(
        &sh,
        "instance-state",
        &["state=running", "group=nat", "interfaces=2"],
    );
    aws(&sh, "detach", &[&format!("detached={att}")]);
    attach_brings_the_device(&sh);
    let out = run(
        &sh,
        &format!(
            "{}echo '{PEER_B} 10.0.1.11 900' >\"$PEER_FILE\"; touch \"$CONNTRACKD_CONF\"; {HEARD_STANDBY}\n\
             (do_active); echo rc=$?; cat \"$IP_FORWARD\" \"$LAST_TAKEOVER\"",
            devices(false)
        ),
    );
    let lines = out.lines(0);
    assert_eq!(&lines[..2], ["rc=0", "1"], "{}", out.explain());
    let last: Vec<&str> = lines[2].split(' ').collect();
    assert_eq!((last[1], last[3]), ("ok", PEER_B), "{}", lines[2]);
    let calls = aws_calls(&sh);
    let forced = calls
        .iter()
        .position(|c| c == &format!("aws detach {att} --force"))
        .unwrap_or_else(|| panic!("no forced detach: {calls:?}"));
    let attached = calls
        .iter()
        .position(|c| c == &format!("aws attach {ENI}"))
        .unwrap_or_else(|| panic!("no attach: {calls:?}"));
    assert!(forced < attached, "{calls:?}");
    // The peer's state is not asked; one describe before the force (the
    // takeover's own, reused), two after, nothing after the attach.
    assert!(
        !calls.iter().any(|c| c.starts_with("aws instance-state")),
        "{calls:?}"
    );
    let describes: Vec<usize> = (0..calls.len())
        .filter(|&i| calls[i].starts_with("aws describe-floating"))
        .collect();
    assert_eq!(describes.len(), 3, "{calls:?}");
    assert!(describes[0] < forced && forced < describes[1], "{calls:?}");
    assert_eq!(attached, calls.len() - 1, "{calls:?}");
    // The looks after the forced detach come within a second.
    let waits: Vec<String> = sh
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("host sleep "))
        .collect();
    assert!(!waits.is_empty(), "{:?}", sh.calls());
    for w in &waits {
        let secs: f64 = w["host sleep ".len()..].parse().unwrap();
        assert!(secs < 1.0, "{waits:?}");
    }
    // The synced table was committed.
    assert!(
        sh.calls()
            .iter()
            .any(|c| c.ends_with("conntrackd -C") || c.contains(" -c")),
        "{:?}",
        sh.calls()
    );
}

/// The split-brain rule: a running holder that this instance has not
/// heard (keepalived kept it standby for less than the heard time, or it
/// was not standby), one that is not its peer, or any running holder once
/// this instance lost the interface, is not forced: the takeover yields,
/// forwarding stays off, and `check` fails for the hold so that keepalived
/// stays in FAULT.
#[test]
fn a_takeover_yields_to_a_new_peer_and_after_a_loss() {
    let sh = shell();
    held_by_a_running_peer(&sh);
    for (case, setup) in [
        (
            "not heard: standby too briefly",
            format!("echo '{PEER_B} 10.0.1.11 100' >\"$PEER_FILE\"; role standby"),
        ),
        (
            "not heard: not standby",
            format!(
                "echo '{PEER_B} 10.0.1.11 100' >\"$PEER_FILE\"; printf 'fault %s 980\\n' $(( $(date +%s) - 20 )) >\"$ROLE_FILE\""
            ),
        ),
        (
            "after a loss",
            format!(
                "echo '{PEER_B} 10.0.1.11 100' >\"$PEER_FILE\"; echo 990 >\"$LOST_FILE\"; {HEARD_STANDBY}"
            ),
        ),
        (
            "not the peer",
            format!("echo '{PEER_C} 10.0.1.12 100' >\"$PEER_FILE\"; {HEARD_STANDBY}"),
        ),
        (
            // 20 s by the wall clock (a step at boot), none since boot.
            "not heard: the clock stepped",
            format!(
                "echo '{PEER_B} 10.0.1.11 100' >\"$PEER_FILE\"; printf 'standby %s 1000\\n' $(( $(date +%s) - 20 )) >\"$ROLE_FILE\""
            ),
        ),
        (
            // The BACKUP time ends at the election, not when the slow API
            // has answered (4 s later by the clock since boot).
            "not heard: the API answered late",
            format!(
                "echo '{PEER_B} 10.0.1.11 100' >\"$PEER_FILE\"; role standby; echo 'echo 1004.00 1.00 >\"$SCRATCH/uptime\"' >\"$STUB_DIR/aws/describe-floating.do\""
            ),
        ),
    ] {
        let out = run(
            &sh,
            &format!(
                "{}rm -f \"$LOST_FILE\"; {setup}; echo 1 >\"$IP_FORWARD\"\n\
                 (do_active); echo rc=$?; cat \"$IP_FORWARD\"; read -r r _ <\"$ROLE_FILE\"; echo \"$r\"\n\
                 iptables() {{ :; }}; conntrackd_do() {{ :; }}; (do_standby fault); do_check; echo check=$?",
                devices(false)
            ),
        );
        let lines = out.lines(0);
        assert_eq!(
            lines,
            ["rc=3", "0", "yielded", "check=1"],
            "{case}: {}",
            out.explain()
        );
        assert_nothing_moved(&sh, case);
        assert!(
            out.stderr.contains("Not taking"),
            "{case}: {}",
            out.explain()
        );
    }
}

/// An active whose device of the interface is gone (the peer forced it
/// away) knows at its next check: forwarding off, the loss kept, FAULT.
#[test]
fn the_check_of_an_active_that_lost_the_interface_fails_and_stops_forwarding() {
    let sh = shell();
    let check = "iptables() { :; }; conntrackd_do() { :; }\n\
                 echo 1 >\"$IP_FORWARD\"; role active; do_check; echo check=$?; cat \"$IP_FORWARD\"; \
                 read -r r _ <\"$ROLE_FILE\"; echo \"$r\"; [ ! -e \"$LOST_FILE\" ] || echo lost-kept";
    let out = run(&sh, &format!("{}{check}", devices(true)));
    assert_eq!(
        out.lines(0),
        ["check=0", "1", "active"],
        "{}",
        out.explain()
    );
    let sh = shell();
    let out = run(&sh, &format!("{}{check}", devices(false)));
    assert_eq!(
        out.lines(0),
        ["check=1", "0", "lost", "lost-kept"],
        "{}",
        out.explain()
    );
}

/// keepalived starting as backup on the holder leaves it forwarding; on
/// any other instance backup means forwarding off and a resync.
#[test]
fn backup_stops_forwarding_except_on_the_holder_while_keepalived_decides() {
    let sh = shell();
    let lines = "touch \"$CONNTRACKD_CONF\"; echo 1 >\"$IP_FORWARD\"; role active\n\
                 (do_standby standby); cat \"$IP_FORWARD\"";
    let out = run(&sh, &format!("{}{lines}", devices(true)));
    assert_eq!(out.lines(0), ["1"], "{}", out.explain());
    assert!(!sh.calls().iter().any(|c| c.contains("conntrackd")));
    let sh = shell();
    let out = run(&sh, &format!("{}{lines}", devices(false)));
    assert_eq!(out.lines(0), ["0"], "{}", out.explain());
    let calls = sh.calls();
    assert!(calls.iter().any(|c| c.ends_with(" -t")), "{calls:?}");
    assert!(calls.iter().any(|c| c.ends_with(" -n")), "{calls:?}");
    // keepalived stopping is never the holder's "keep forwarding".
    let out = run(
        &sh,
        &format!(
            "{}echo 1 >\"$IP_FORWARD\"; role active; (do_standby stopped); cat \"$IP_FORWARD\"",
            devices(true)
        ),
    );
    assert_eq!(out.lines(0), ["0"], "{}", out.explain());
}

fn terminating(sh: &Shell) {
    aws(
        sh,
        "imds meta-data%autoscaling%target-lifecycle-state",
        &["value=Terminated"],
    );
    aws(
        sh,
        "identity",
        &[&format!("instance={ME}"), "region=us-east-1"],
    );
    aws(
        sh,
        "instance-state",
        &["state=running", "group=nat", "interfaces=1"],
    );
    aws(
        sh,
        "complete-lifecycle",
        &["group=nat", "completed=natbake-handover"],
    );
    aws(sh, "detach", &["detached=eni-attach-0aaaaaaaaaaaaaaaa"]);
    describe(
        sh,
        "describe-floating",
        Some((ME, "eni-attach-0aaaaaaaaaaaaaaaa")),
    );
}

#[test]
fn the_holder_hands_over_lets_the_interface_go_and_completes_the_hook_once() {
    let sh = shell();
    terminating(&sh);
    let out = run(
        &sh,
        &format!(
            "{}echo 1 >\"$IP_FORWARD\"; role active\n\
             (do_handover); echo rc=$?; cat \"$IP_FORWARD\"; (do_handover); echo rc=$?",
            devices(true)
        ),
    );
    assert_eq!(out.lines(0), ["rc=0", "0", "rc=0"], "{}", out.explain());
    let calls = aws_calls(&sh);
    assert!(
        sh.calls()
            .contains(&"host systemctl stop keepalived.service".into()),
        "{:?}",
        sh.calls()
    );
    assert!(
        calls.contains(&"aws detach eni-attach-0aaaaaaaaaaaaaaaa".into()),
        "{calls:?}"
    );
    let completed = calls
        .iter()
        .filter(|c| *c == "aws complete-lifecycle natbake-handover")
        .count();
    assert_eq!(completed, 1, "{calls:?}");
}

/// The standby's own termination waits for nobody: no interface to let
/// go, no wait for it to leave, the hook completed at once.
#[test]
fn the_standbys_termination_does_not_wait_for_the_peer() {
    let sh = shell();
    terminating(&sh);
    aws(
        &sh,
        "instance-state",
        &["state=running", "group=nat", "interfaces=2"],
    );
    let out = run(
        &sh,
        &format!("{}role standby; (do_handover); echo rc=$?", devices(false)),
    );
    assert_eq!(out.lines(0), ["rc=0"], "{}", out.explain());
    let calls = aws_calls(&sh);
    assert!(
        !calls.iter().any(|c| c.starts_with("aws detach")),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| c.starts_with("aws instance-state")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"aws complete-lifecycle natbake-handover".into()),
        "{calls:?}"
    );
}

/// The timer: Terminated hands over; otherwise the peer is looked for
/// when due, and nothing is ever attached or detached from it.
#[test]
fn the_timer_hands_over_on_termination_and_never_takes_over() {
    let sh = shell();
    terminating(&sh);
    let out = run(
        &sh,
        &format!("{}role standby; (do_watch); echo rc=$?", devices(false)),
    );
    assert_eq!(out.lines(0), ["rc=0"], "{}", out.explain());
    assert!(aws_calls(&sh).contains(&"aws complete-lifecycle natbake-handover".into()));

    let sh = shell();
    aws(
        &sh,
        "imds meta-data%autoscaling%target-lifecycle-state",
        &["value=InService"],
    );
    peers(&sh, &[(PEER_B, "10.0.1.11", "running")]);
    // The holder's peer is gone; the standby's earlier loss is forgotten
    // once it has stood by quietly.
    let out = run(
        &sh,
        &format!(
            "{}echo '{PEER_C} 10.0.1.12 100' >\"$PEER_FILE\"; echo 900 >\"$LOST_FILE\"\n\
             printf 'standby %s\\n' $(( $(date +%s) - 20 )) >\"$ROLE_FILE\"\n\
             (do_watch); echo rc=$?; cat \"$PEER_FILE\"; [ -e \"$LOST_FILE\" ] || echo loss-forgotten; (do_watch)",
            devices(true)
        ),
    );
    let lines = out.lines(0);
    assert_eq!(lines[0], "rc=0", "{}", out.explain());
    assert!(lines[1].starts_with(PEER_B), "{}", out.explain());
    assert_eq!(lines[2], "loss-forgotten");
    let calls = aws_calls(&sh);
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("aws peers")).count(),
        1,
        "the second look is not due yet: {calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("aws attach") || c.starts_with("aws detach")),
        "{calls:?}"
    );
}

#[test]
fn the_health_part_repairs_the_daemons_and_keeps_forwarding_to_the_role() {
    let sh = shell();
    sh.answer("systemctl is-active --quiet keepalived.service", "", 3);
    let out = run(
        &sh,
        &format!(
            "{}echo x >\"$KEEPALIVED_LOCAL\"; echo 1 >\"$IP_FORWARD\"; role standby\n\
             (do_health); echo rc=$?; cat \"$IP_FORWARD\"",
            devices(false)
        ),
    );
    // keepalived does not come back: said, and the check fails.
    assert_eq!(
        out.lines(0),
        ["keepalived.service does not start", "rc=1", "0"],
        "{}",
        out.explain()
    );
    let calls = sh.calls();
    assert!(
        calls.contains(&"host systemctl start keepalived.service".into()),
        "{calls:?}"
    );
    assert!(
        !calls.contains(&"host systemctl start conntrackd.service".into()),
        "{calls:?}"
    );
    // An active that lost its device: forwarding off, lost, no failure.
    let sh = shell();
    let out = run(
        &sh,
        &format!(
            "{}echo 1 >\"$IP_FORWARD\"; role active; (do_health); echo rc=$?; cat \"$IP_FORWARD\"; read -r r _ <\"$ROLE_FILE\"; echo $r",
            devices(false)
        ),
    );
    assert_eq!(out.lines(0), ["rc=0", "0", "lost"], "{}", out.explain());
}

#[test]
fn status_says_role_peer_sync_and_the_last_takeover() {
    let sh = shell();
    let out = run(
        &sh,
        &format!(
            "echo '{PEER_B} 10.0.1.11 900' >\"$PEER_FILE\"; echo 2 >\"$TAKEOVERS_FILE\"\n\
             echo '1700000000 ok 3 {PEER_C}' >\"$LAST_TAKEOVER\"; touch \"$CONNTRACKD_CONF\"; role active; do_status"
        ),
    );
    let text = out.expect(0);
    for want in [
        "role=active",
        &format!("peer={PEER_B}"),
        "peer_address=10.0.1.11",
        "takeovers=2",
        "last_takeover=1700000000",
        "last_takeover_result=ok",
        "last_takeover_seconds=3",
        &format!("last_takeover_from={PEER_C}"),
        "sync=yes",
    ] {
        assert!(text.lines().any(|l| l == want), "{want}: {text}");
    }
}

/// natbake-failover.sh on a standby site: the boot step does not take
/// the interface (natbake-standby does, on election), and the health
/// check leaves forwarding to the role and reports natbake-standby's
/// findings.
#[test]
fn the_boot_step_and_the_health_check_leave_a_standby_to_natbake_standby() {
    let sh = shell();
    let standby = sh.write(
        "fake-standby",
        "#!/bin/bash\necho \"health $*\" >>\"$SCRATCH/standby-calls\"\necho 'keepalived.service does not start'\nexit 1\n",
    );
    let mut perms = fs::metadata(&standby).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    fs::set_permissions(&standby, perms).unwrap();
    let out = run(
        &sh,
        &format!(
            ". \"$SITE_DIR/natbake-failover.sh\"; [ \"$STANDBY\" = yes ] && echo standby-site\n\
             take_floating_interface; echo took=$?\n\
             STANDBY_SCRIPT='{}'; PROBLEMS=('IP forwarding is off' 'drift'); FLOATING_FAILURE=''\n\
             floating_problems; printf '%s\\n' \"${{PROBLEMS[@]}}\" \"$FLOATING_FAILURE\"",
            standby.display()
        ),
    );
    assert_eq!(
        out.lines(0),
        [
            "standby-site",
            "took=0",
            "drift",
            "standby: keepalived.service does not start"
        ],
        "{}",
        out.explain()
    );
    assert!(aws_calls(&sh).is_empty(), "{:?}", sh.calls());
}

/// Without systemd (a lab), standby.conf's `reload` command reloads the
/// daemons after a new peer instead of systemctl; a setting it does not
/// know stops it with the line.
#[test]
fn standby_conf_names_the_reload_command() {
    let sh = shell();
    let out = run(
        &sh,
        "printf '#!/bin/sh\\necho reloaded >>\"$SCRATCH/reloads\"\\n' >\"$SCRATCH/reload\"; chmod +x \"$SCRATCH/reload\"\n\
         printf '# lab\\nreload=%s\\n' \"$SCRATCH/reload\" >\"$CONF_FILE\"; read_conf \"$CONF_FILE\"\n\
         (do_peer 10.0.1.10 10.0.1.11 eth0); (do_peer 10.0.1.10 10.0.1.11 eth0); cat \"$SCRATCH/reloads\"\n\
         echo 'reloads=/x' >\"$CONF_FILE\"; (read_conf \"$CONF_FILE\"); echo rc=$?",
    );
    assert_eq!(out.lines(0), ["reloaded", "rc=1"], "{}", out.explain());

    assert!(
        out.stderr
            .contains("standby.conf:1: unknown setting 'reloads'"),
        "{}",
        out.explain()
    );
    assert!(
        !sh.calls().iter().any(|c| c.contains("systemctl")),
        "{:?}",
        sh.calls()
    );
    // The time a lab shortens, whole seconds from 1 to 3600; join_grace,
    // the old split-brain wait, is still accepted (whole seconds) and
    // changes nothing.
    let times = run(
        &sh,
        "printf 'join_grace=5\ndiscover_every=08\n' >\"$CONF_FILE\"; read_conf \"$CONF_FILE\"; echo $DISCOVER_EVERY ${JOIN_GRACE:-unset}\n\
         for bad in 0 3601 -1 5s; do echo \"discover_every=$bad\" >\"$CONF_FILE\"; (read_conf \"$CONF_FILE\") 2>/dev/null && echo \"took $bad\"; done\n\
         echo 'join_grace=5s' >\"$CONF_FILE\"; (read_conf \"$CONF_FILE\") 2>/dev/null && echo 'took 5s'; true",
    );
    assert_eq!(times.lines(0), ["8 unset"], "{}", times.explain());
}

/// conntrackd restarting (a new peer) does not fail the check at once:
/// only silence of 5 s does.
#[test]
fn the_check_gives_a_restarting_conntrackd_a_few_seconds() {
    let sh = shell();
    sh.answer("conntrackd", "", 1);
    let out = run(
        &sh,
        "iptables() { :; }; role standby; touch \"$CONNTRACKD_CONF\"\n\
         do_check; echo first=$?\n\
         echo $(( $(date +%s) - 6 )) >\"$SYNC_DOWN\"; do_check; echo later=$?",
    );
    assert_eq!(out.lines(0), ["first=0", "later=1"], "{}", out.explain());
    assert!(out.stderr.contains("conntrackd does not answer"));
}

/// The active's default route gone: the health part configures the
/// interface again with the takeover's own steps, from what it keeps
/// (metadata, not the EC2 API, says the interface is still here); a
/// route that does not come back is reported.
#[test]
fn the_health_part_repairs_the_actives_route() {
    for comes_back in [true, false] {
        let sh = shell();
        sh.answer(
            "ip -4 -o route get 198.51.100.1",
            "198.51.100.1 via 10.0.1.1 dev eth0 src 10.0.1.10 uid 0\n",
            0,
        );
        if comes_back {
            sh.write(
                "stubs/route-after",
                "198.51.100.1 via 10.0.1.1 dev ens6 src 10.0.1.100 uid 0\n",
            );
        }
        aws(
            &sh,
            &format!("imds meta-data%network%interfaces%macs%{ENI_MAC}%interface-id"),
            &[&format!("value={ENI}")],
        );
        let out = run(
            &sh,
            &format!(
                "{}echo 1 >\"$IP_FORWARD\"; role active; (do_health); echo rc=$?; cat \"$IP_FORWARD\"",
                devices(true)
            ),
        );
        let want: &[&str] = if comes_back {
            &["rc=0", "1"]
        } else {
            &[
                "the default route does not leave through the floating interface",
                "rc=1",
                "1",
            ]
        };
        assert_eq!(out.lines(0), want, "{}", out.explain());
        assert!(
            sh.calls()
                .iter()
                .any(|c| c.starts_with("host configure_floating")),
            "{:?}",
            sh.calls()
        );
        let calls = aws_calls(&sh);
        assert!(
            !calls.iter().any(|c| c.starts_with("aws describe-floating")),
            "{calls:?}"
        );
    }
}

/// A new peer that the holder hands over to (the holder's keepalived
/// stopped, then it lets the interface go) takes it without force, even
/// before it has heard the holder, instead of yielding.
#[test]
fn a_takeover_before_hearing_the_holder_waits_for_a_handing_over_holder() {
    let sh = shell();
    let att = "eni-attach-0bbbbbbbbbbbbbbbb";
    describe(&sh, "describe-floating.1", Some((PEER_B, att)));
    describe_detaching(&sh, "describe-floating.2", PEER_B, att);
    describe_detaching(&sh, "describe-floating.3", PEER_B, att);
    describe(&sh, "describe-floating.4", None);
    describe(
        &sh,
        "describe-floating",
        Some((ME, "eni-attach-0aaaaaaaaaaaaaaaa")),
    );
    aws(
        &sh,
        "instance-state",
        &["state=running", "group=nat", "interfaces=2"],
    );
    attach_brings_the_device(&sh);
    let out = run(
        &sh,
        &format!(
            "{}RELEASE_WAIT=5; echo '{PEER_B} 10.0.1.11 990' >\"$PEER_FILE\"; role standby\n\
             (do_active); echo rc=$?; cat \"$IP_FORWARD\"",
            devices(false)
        ),
    );
    assert_eq!(out.lines(0), ["rc=0", "1"], "{}", out.explain());
    let calls = aws_calls(&sh);
    assert!(calls.contains(&format!("aws attach {ENI}")), "{calls:?}");
    assert!(
        !calls.iter().any(|c| c.starts_with("aws detach")),
        "{calls:?}"
    );
}

/// A new instance that keepalived elected before the holder knew it: the
/// holder's adverts, once it has found the new one, make keepalived put
/// it back to backup (`natbake-standby standby` marks when, before the
/// lock). The takeover sees that while it waits, stands by at once and
/// keeps no hold, so `check` passes and keepalived stays backup. A mark
/// from before the election (keepalived starts as backup) does not count.
#[test]
fn a_new_instance_demoted_by_the_holders_adverts_stands_by_without_the_hold() {
    let sh = shell();
    held_by_a_running_peer(&sh);
    // The second look at the interface: the holder's advert has arrived.
    sh.write(
        "stubs/aws/describe-floating.do",
        "[ \"$(grep -c '^aws describe-floating' \"$STUB_DIR/calls\")\" -lt 2 ] || echo 100150 >\"$SCRATCH/standby/backup-at\"\n",
    );
    let newcomer = format!(
        "{}echo '{PEER_B} 10.0.1.11 999' >\"$PEER_FILE\"; role paired; echo 1 >\"$IP_FORWARD\"\n",
        devices(false)
    );
    let check = "iptables() { :; }; conntrackd_do() { :; }; do_check; echo check=$?";
    let out = run(
        &sh,
        &format!(
            "{newcomer}RELEASE_WAIT=8; echo 99990 >\"$BACKUP_AT\"; start=$SECONDS\n\
             (do_active); echo rc=$?; echo waited=$((SECONDS - start)); cat \"$IP_FORWARD\"\n\
             read -r r _ <\"$ROLE_FILE\"; echo \"$r\"; {check}"
        ),
    );
    let lines = out.lines(0);
    assert_eq!(lines[0], "rc=3", "{}", out.explain());
    let waited: u32 = lines[1].trim_start_matches("waited=").parse().unwrap();
    assert!(
        waited < 4,
        "waited {waited}s for the advert: {}",
        out.explain()
    );
    assert_eq!(lines[2..], ["0", "standby", "check=0"], "{}", out.explain());
    assert!(
        out.stderr.contains("Its adverts reach this instance now"),
        "{}",
        out.explain()
    );
    assert_nothing_moved(&sh, "demoted");

    // Keepalived's backup before the election is no advert of the holder:
    // the takeover yields, with the hold.
    sh.write("stubs/aws/describe-floating.do", ":\n");
    let out = run(
        &sh,
        &format!(
            "{newcomer}RELEASE_WAIT=0; echo 99990 >\"$BACKUP_AT\"\n\
             (do_active); echo rc=$?; read -r r _ <\"$ROLE_FILE\"; echo \"$r\"; {check}"
        ),
    );
    assert_eq!(
        out.lines(0),
        ["rc=3", "yielded", "check=1"],
        "{}",
        out.explain()
    );
}

/// A rolling replacement: the holder hands over while the peer it knows
/// has been replaced by one it has not seen yet (it looks first, pairs
/// with the new one), or by one it paired with before that one's
/// conntrackd ran (it missed what was sent then). Either way it sends
/// the peer the whole table, then stops keepalived.
#[test]
fn the_holder_sends_its_table_to_its_peer_before_handing_over() {
    for (known, found) in [(PEER_B, PEER_C), (PEER_C, PEER_C)] {
        let sh = shell();
        terminating(&sh);
        peers(&sh, &[(found, "10.0.1.12", "running")]);
        let address = if known == PEER_C {
            "10.0.1.12"
        } else {
            "10.0.1.11"
        };
        let out = run(
            &sh,
            &format!(
                "{}BULK_SETTLE=0; echo '{known} {address} 100' >\"$PEER_FILE\"; role active\n\
                 (do_handover); echo rc=$?; cat \"$PEER_FILE\"",
                devices(true)
            ),
        );
        let lines = out.lines(0);
        assert_eq!(lines[0], "rc=0", "{}", out.explain());
        assert!(lines[1].starts_with(found), "{}", out.explain());
        let calls = sh.calls();
        let bulk = calls
            .iter()
            .position(|c| c.starts_with("host conntrackd") && c.ends_with(" -B"))
            .unwrap_or_else(|| panic!("no bulk send to {known} -> {found}: {calls:?}"));
        let stop = calls
            .iter()
            .position(|c| c == "host systemctl stop keepalived.service")
            .unwrap_or_else(|| panic!("keepalived not stopped: {calls:?}"));
        assert!(bulk < stop, "{calls:?}");
    }
}

/// keepalived makes a new instance backup before its own conntrackd
/// answers (it hears the active at once): the ask for the active's table
/// fails, and the timer asks again until it is answered, then stops.
#[test]
fn a_standby_asks_for_the_table_again_until_its_conntrackd_answers() {
    let sh = shell();
    sh.answer("conntrackd", "", 1);
    aws(
        &sh,
        "imds meta-data%autoscaling%target-lifecycle-state",
        &["value=InService"],
    );
    let later = "echo $(( $(cut -d. -f1 \"$UPTIME\") + 600 )) >\"$DISCOVER_DUE\"";
    let out = run(
        &sh,
        &format!(
            "{}touch \"$CONNTRACKD_CONF\"; {later}; (do_standby standby)\n\
             [ -e \"$RESYNC_FILE\" ] && echo asked-later; (do_watch); [ -e \"$RESYNC_FILE\" ] && echo still",
            devices(false)
        ),
    );
    assert_eq!(out.lines(0), ["asked-later", "still"], "{}", out.explain());
    let asks = |sh: &Shell| {
        sh.calls()
            .iter()
            .filter(|c| c.starts_with("host conntrackd") && c.ends_with(" -n"))
            .count()
    };
    assert_eq!(asks(&sh), 2, "{:?}", sh.calls());
    sh.answer("conntrackd", "", 0);
    let out = run(
        &sh,
        "(do_watch); [ -e \"$RESYNC_FILE\" ] || echo answered; (do_watch)",
    );
    assert_eq!(out.lines(0), ["answered"], "{}", out.explain());
    assert_eq!(
        asks(&sh),
        1,
        "asked once more, then no more: {:?}",
        sh.calls()
    );
}

/// natbake-status's report with the standby's part: a table gets
/// "standby NAME: VALUE" lines after it; JSON gets a "standby" member
/// (strings, null when empty), still one valid object.
#[test]
fn natbake_status_gets_the_role_peer_sync_and_last_takeover() {
    let sh = shell();
    let setup = format!(
        "echo '{PEER_B} 10.0.1.11 900' >\"$PEER_FILE\"; echo 2 >\"$TAKEOVERS_FILE\"\n\
         echo '1700000000 ok 3 {PEER_C}' >\"$LAST_TAKEOVER\"; role active\n"
    );
    let out = run(
        &sh,
        &format!("{setup}printf 'natbake site x\\nhealth: ok\\n' | do_status no"),
    );
    let text = out.expect(0);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(&lines[..3], ["natbake site x", "health: ok", ""], "{text}");
    for want in [
        "standby role: active",
        &format!("standby peer: {PEER_B}"),
        "standby last_takeover_result: ok",
        "standby sync: no",
    ] {
        assert!(lines.contains(&want), "{want}: {text}");
    }
    let out = run(
        &sh,
        &format!("{setup}printf '{{\"site\":\"x\",\"forwards\":[]}}\\n' | do_status yes"),
    );
    let text = out.expect(0);
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["site"], "x", "{text}");
    assert_eq!(v["standby"]["role"], "active", "{text}");
    assert_eq!(v["standby"]["peer"], PEER_B, "{text}");
    assert_eq!(v["standby"]["takeovers"], "2", "{text}");
    assert_eq!(v["standby"]["sync"], "no", "{text}");
    assert!(v["standby"]["peer_address"] == "10.0.1.11", "{text}");
    // Not JSON in, nothing made up out; and status never stops forwarding.
    let out = run(
        &sh,
        "echo 1 >\"$IP_FORWARD\"; echo 'not json' | do_status yes; echo rc=$?; cat \"$IP_FORWARD\"",
    );
    assert_eq!(out.lines(0), ["rc=1", "1"], "{}", out.explain());
}

/// A holder that lets the interface go itself (its attachment detaching)
/// is not forced even by a standby that heard it: a forced detach is
/// EC2's last resort (the old instance may need a stop and start before it
/// takes an interface as device 1 again). The attach follows the release.
#[test]
fn a_takeover_does_not_force_an_attachment_already_detaching() {
    let sh = shell();
    let att = "eni-attach-0bbbbbbbbbbbbbbbb";
    describe_detaching(&sh, "describe-floating.1", PEER_B, att);
    describe_detaching(&sh, "describe-floating.2", PEER_B, att);
    describe(&sh, "describe-floating.3", None);
    describe(
        &sh,
        "describe-floating",
        Some((ME, "eni-attach-0aaaaaaaaaaaaaaaa")),
    );
    attach_brings_the_device(&sh);
    let out = run(
        &sh,
        &format!(
            "{}echo '{PEER_B} 10.0.1.11 100' >\"$PEER_FILE\"; {HEARD_STANDBY}\n\
             (do_active); echo rc=$?; cat \"$IP_FORWARD\"",
            devices(false)
        ),
    );
    assert_eq!(out.lines(0), ["rc=0", "1"], "{}", out.explain());
    let calls = aws_calls(&sh);
    assert!(calls.contains(&format!("aws attach {ENI}")), "{calls:?}");
    assert!(
        !calls.iter().any(|c| c.starts_with("aws detach")),
        "{calls:?}"
    );
}
