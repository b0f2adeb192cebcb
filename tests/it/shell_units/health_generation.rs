//! How often the health check reads the nf_tables generation, each read a
//! Python start: once per check while the ruleset is trusted, once when
//! the counters are due on a ruleset already verified at that generation,
//! twice (before and after the read) after a change; and with failover,
//! in the same run of the AWS client as the floating interface's look.

use super::canned;
use super::harness::each_awk;

/// inspect (natbake-health) on a ruleset that compares right, with the
/// generation reader counting its calls: "what: read|trusted READS KEPT",
/// KEPT the generation the check keeps as verified.
const INSPECT: &str = "VERIFIED=$STATE_DIR/verified SAVED=$SCRATCH/save LOADED_VIEW=$SCRATCH/view WORKDIR='' FAILOVER=no\n\
     function ruleset_generation { echo x >>\"$SCRATCH/reads\"; echo \"$GEN\"; }\n\
     function cached_differences { return 0; }\n\
     function ruleset_invariants { :; }\n\
     function ruleset_preemptions { :; }\n\
     function ipset_problems { :; }\n\
     function counters_due { [ -n \"$DUE\" ]; }\n\
     function check { rm -f \"$SCRATCH/reads\"; SAVED_NOW=''; inspect\n\
       kept=$(cat \"$VERIFIED\" 2>/dev/null); echo \"$1: $([ -n \"$SAVED_NOW\" ] && echo read || echo trusted) $(wc -l <\"$SCRATCH/reads\") ${kept#* }\"; }\n";

/// The generation is read before the ruleset and, to keep it as verified,
/// again after it; not again when it was verified already.
#[test]
fn the_generation_is_read_again_after_the_ruleset_only_when_it_changed() {
    each_awk("debian-mixed", |sh| {
        let sh = sh.load("natbake-health.sh");
        sh.answer(
            "iptables-save -c",
            canned("debian-mixed.iptables-save-c"),
            0,
        );
        let ran = sh.run(&format!(
            "{INSPECT}GEN=7 DUE=''; check first\n\
             GEN=7 DUE=''; check unchanged\n\
             GEN=7 DUE=yes; check counters\n\
             GEN=8 DUE=''; check changed\n\
             GEN=8 DUE=yes; check again\n"
        ));
        assert_eq!(
            ran.lines(0),
            [
                "first: read 2 7",
                "unchanged: trusted 1 7",
                "counters: read 1 7",
                "changed: read 2 8",
                "again: read 1 8",
            ],
            "[{:?}]",
            sh.awk()
        );
    });
}

/// With failover, the check's look at the floating interface (its device,
/// then instance metadata) and the generation come from one run of the
/// AWS client, before the ruleset is read; floating_problems then uses
/// that look instead of asking again. Without a device to look at, the
/// generation is read on its own.
#[test]
fn with_failover_one_client_run_gives_the_look_and_the_generation() {
    each_awk("failover-health", |sh| {
        let sh = sh
            .load("natbake-aws.sh")
            .load("natbake-failover.sh")
            .load("natbake-health.sh");
        sh.answer("iptables -V", "iptables v1.8.9 (nf_tables)\n", 0);
        sh.answer(
            "ip -4 -o route get 198.51.100.1",
            "198.51.100.1 via 10.0.0.1 dev eth1 src 10.0.0.9 uid 0 \\    cache\n",
            0,
        );
        let ran = sh.run(
            "AWS_PROGRAM=$SCRATCH/aws FLOATING_STATE=$SCRATCH/floating FLOATING_API_DUE=$SCRATCH/api-due\n\
             printf '%s\\n' '#!/bin/bash' 'echo \"$*\" >>\"$SCRATCH/calls.aws\"' 'echo generation=41' 'echo value=eni-0123456789abcdef0' >\"$AWS_PROGRAM\"\n\
             chmod +x \"$AWS_PROGRAM\"\n\
             echo 'eni-0123456789abcdef0 0a:00:00:00:00:01 10.0.0.9' >\"$FLOATING_STATE\"\n\
             echo 999999999 >\"$FLOATING_API_DUE\"\n\
             function device_of_mac { [ \"$1\" = 0a:00:00:00:00:01 ] && [ -z \"${NO_DEVICE:-}\" ] && echo eth1; }\n\
             function ruleset_generation { echo python -c >>\"$SCRATCH/calls.aws\"; echo 99; }\n\
             PROBLEMS=()\n\
             unchanged_since_verified; echo \"look $FLOATING_HERE $GENERATION\"\n\
             floating_problems; echo \"problems ${#PROBLEMS[@]} ${FLOATING_FAILURE:-}\"\n\
             sed 's/--deadline [0-9]* //' \"$SCRATCH/calls.aws\"; rm \"$SCRATCH/calls.aws\"\n\
             NO_DEVICE=yes; unchanged_since_verified; echo \"look $FLOATING_HERE $GENERATION\"\n\
             cat \"$SCRATCH/calls.aws\"\n",
        );
        assert_eq!(
            ran.lines(0),
            [
                "look 0 41",
                "problems 0 ",
                "--env-file /etc/natbake/aws.env imds --generation meta-data/network/interfaces/macs/0a:00:00:00:00:01/interface-id",
                "look 1 99",
                "python -c",
            ],
            "[{:?}]",
            sh.awk()
        );
    });
}
