//! The datums of one CloudWatch publish (`metrics_datums`) and the state
//! kept after it (`metrics_commit`): counts go out as what was added since
//! the last publish of the same datum, whole after a reload of the ruleset
//! or a restart, never twice and never lost when a publish goes out in
//! part.

use super::harness::{Awk, Shell};

/// Runs `test` under each awk with the metrics-only fixture's library and,
/// where the metrics functions have a file of their own, that file.
fn each_awk(mut test: impl FnMut(Shell)) {
    for awk in Awk::ALL {
        let sh = Shell::new("metrics-only", awk);
        let sh = if sh.site_dir().join("natbake-metrics.sh").exists() {
            sh.load("natbake-metrics.sh")
        } else {
            sh
        };
        test(sh);
    }
}

/// The readings of one check, as the health check passes them.
struct Readings<'a> {
    counters: &'a str,
    reload: &'a str,
    per_forward: &'a str,
    bin: Option<&'a str>,
    count: Option<&'a str>,
    ena: &'a str,
}

impl Default for Readings<'_> {
    fn default() -> Self {
        Readings {
            counters: "web 1500 7\nopen 3000000005 -\n",
            reload: "R1",
            per_forward: "yes",
            bin: Some("4294967306"),
            count: Some("3"),
            ena: "pps_allowance_exceeded 2147483649\nbw_in_allowance_exceeded 4\nmade_up_allowance_exceeded 9",
        }
    }
}

/// Runs `metrics_datums` over `readings` and the kept state; each datum
/// with the state line it would keep ("datum|key").
fn datums(sh: &Shell, r: &Readings) -> Vec<String> {
    sh.write("counters", r.counters);
    let mut args = format!(
        "healthy=1 per_forward={} site=s reload={} drops=4 ena='{}' ena_metrics='pps_allowance_exceeded=PpsAllowanceExceeded bw_in_allowance_exceeded=BwInAllowanceExceeded'",
        r.per_forward, r.reload, r.ena
    );
    if let Some(bin) = r.bin {
        args.push_str(&format!(" bin={bin} bout=5"));
    }
    if let Some(count) = r.count {
        args.push_str(&format!(" count={count} fill=0.01"));
    }
    let ran = sh.run(&format!(
        "touch state/metrics\nmetrics_datums counters state/metrics out {args} || exit 1\npaste -d '|' out out.keys"
    ));
    ran.lines(0).iter().map(|l| l.to_string()).collect()
}

fn value_of<'a>(datums: &'a [String], prefix: &str) -> &'a str {
    datums
        .iter()
        .find(|d| d.starts_with(prefix))
        .unwrap_or_else(|| panic!("no datum {prefix:?} in {datums:#?}"))
        .split(' ')
        .nth(2)
        .unwrap()
}

/// The first publish sends every count whole and keeps, for each datum,
/// its value and the reload it was read under; gauges keep nothing.
/// Without per-forward metrics only the site's totals go out; without
/// byte counts no counts at all; without conntrack no conntrack gauges.
/// ENA counters the driver has but natbake does not publish are left out.
#[test]
fn the_first_publish_sends_everything_whole() {
    each_awk(|sh| {
        let got = datums(&sh, &Readings::default());
        assert_eq!(
            got,
            [
                "NewConnections Count 1500 Site=s Forward=web|conn web 1500 R1",
                "DeniedAttempts Count 7 Site=s Forward=web|denied web 7 R1",
                "NewConnections Count 3000000005 Site=s Forward=open|conn open 3000000005 R1",
                "NewConnections Count 3000001505 Site=s|conn * 3000001505 R1",
                "DeniedAttempts Count 7 Site=s|denied * 7 R1",
                "ForwardedBytesIn Bytes 4294967306 Site=s|bytes in 4294967306 R1",
                "ForwardedBytesOut Bytes 5 Site=s|bytes out 5 R1",
                "ForwardDrops Count 4 Site=s|drops - 4 R1",
                "ConntrackEntries Count 3 Site=s|-",
                "ConntrackFillPercent Percent 0.01 Site=s|-",
                "PpsAllowanceExceeded Count 2147483649 Site=s|ena pps_allowance_exceeded 2147483649 R1",
                "BwInAllowanceExceeded Count 4 Site=s|ena bw_in_allowance_exceeded 4 R1",
                "Healthy None 1 Site=s|-",
            ],
            "[{:?}]",
            sh.awk()
        );
        let site_only = datums(
            &sh,
            &Readings {
                per_forward: "no",
                ..Default::default()
            },
        );
        assert!(
            site_only.iter().all(|d| !d.contains("Forward=")),
            "{site_only:#?}"
        );
        assert_eq!(value_of(&site_only, "NewConnections Count"), "3000001505");
        let no_bytes = datums(
            &sh,
            &Readings {
                bin: None,
                ..Default::default()
            },
        );
        assert!(
            !no_bytes.iter().any(|d| d.starts_with("ForwardedBytes")
                || d.contains("Site=s|conn *")
                || d.starts_with("ForwardDrops")),
            "{no_bytes:#?}"
        );
        assert!(no_bytes.iter().any(|d| d.starts_with("Healthy None 1")));
        let no_conntrack = datums(
            &sh,
            &Readings {
                count: None,
                ..Default::default()
            },
        );
        assert!(
            !no_conntrack.iter().any(|d| d.starts_with("Conntrack")),
            "{no_conntrack:#?}"
        );
    });
}

/// Publishing, committing, and reading the same counters again sends
/// zeros; a counter that grew sends what it grew by, exact past 2^31.
/// A publish that went out in part commits only what was sent: the next
/// one sends the rest whole, and nothing twice.
#[test]
fn deltas_are_sent_once_and_never_lost() {
    each_awk(|sh| {
        let first = datums(&sh, &Readings::default());
        sh.run(&format!(
            "metrics_commit state/metrics out.keys {}",
            first.len()
        ))
        .expect(0);
        let again = datums(&sh, &Readings::default());
        for d in &again {
            let value = d.split(' ').nth(2).unwrap();
            if !d.starts_with("Conntrack") && !d.starts_with("Healthy") {
                assert_eq!(value, "0", "[{:?}] {d}", sh.awk());
            }
        }
        let grown = Readings {
            counters: "web 2147485148 9\nopen 3000000005 -\n",
            bin: Some("8589934602"),
            ..Default::default()
        };
        let got = datums(&sh, &grown);
        assert_eq!(
            value_of(&got, "NewConnections Count 2147483648 Site=s Forward=web"),
            "2147483648"
        );
        assert_eq!(
            value_of(&got, "DeniedAttempts Count 2 Site=s Forward=web"),
            "2"
        );
        assert_eq!(
            value_of(&got, "ForwardedBytesIn"),
            "4294967296",
            "[{:?}]",
            sh.awk()
        );

        // Only the first two datums went out.
        sh.run("metrics_commit state/metrics out.keys 2").expect(0);
        let next = datums(&sh, &grown);
        assert_eq!(
            value_of(&next, "NewConnections Count 0 Site=s Forward=web"),
            "0"
        );
        assert_eq!(
            value_of(&next, "DeniedAttempts Count 0 Site=s Forward=web"),
            "0"
        );
        assert_eq!(
            value_of(&next, "NewConnections Count 2147483648 Site=s|"),
            "2147483648",
            "[{:?}] the site total was not sent",
            sh.awk()
        );
        assert_eq!(value_of(&next, "ForwardedBytesIn"), "4294967296");
    });
}

/// After a reload of the ruleset (another id) every ruleset counter
/// started again from zero: its whole value is new, even when it grew past
/// the kept value. After a restart no id is known ("none"): the same.
/// A counter below its kept value without a reload (zeroed by hand) is
/// whole too. ENA's counters belong to the driver: a reload does not
/// restart them, only a smaller value does.
#[test]
fn reloads_and_restarts_count_whole() {
    each_awk(|sh| {
        let first = datums(&sh, &Readings::default());
        sh.run(&format!(
            "metrics_commit state/metrics out.keys {}",
            first.len()
        ))
        .expect(0);
        let more = Readings {
            counters: "web 1600 8\nopen 3000000005 -\n",
            ena: "pps_allowance_exceeded 2147483659\nbw_in_allowance_exceeded 1",
            ..Default::default()
        };
        for reload in ["R2", "none"] {
            let got = datums(&sh, &Readings { reload, ..more });
            assert!(
                got.contains(&format!(
                    "NewConnections Count 1600 Site=s Forward=web|conn web 1600 {reload}"
                )),
                "[{:?}] {reload}: {got:#?}",
                sh.awk()
            );
            assert!(
                got.contains(&format!("ForwardDrops Count 4 Site=s|drops - 4 {reload}")),
                "{got:#?}"
            );
            assert!(got.contains(&format!("PpsAllowanceExceeded Count 10 Site=s|ena pps_allowance_exceeded 2147483659 {reload}")), "[{:?}] {got:#?}", sh.awk());
            assert!(
                got.contains(&format!(
                    "BwInAllowanceExceeded Count 1 Site=s|ena bw_in_allowance_exceeded 1 {reload}"
                )),
                "{got:#?}"
            );
        }
        let zeroed = datums(
            &sh,
            &Readings {
                counters: "web 3 0\nopen 3000000005 -\n",
                ..Default::default()
            },
        );
        assert!(
            zeroed.contains(&"NewConnections Count 3 Site=s Forward=web|conn web 3 R1".to_owned()),
            "{zeroed:#?}"
        );
        assert!(
            zeroed
                .contains(&"DeniedAttempts Count 0 Site=s Forward=web|denied web 0 R1".to_owned()),
            "{zeroed:#?}"
        );
    });
}

/// The kept state is read strictly: a line that is not "<key> <value>
/// <reload>" is ignored (its datum counts whole), and the commit drops it.
#[test]
fn broken_state_lines_count_as_nothing_kept() {
    each_awk(|sh| {
        sh.write(
            "state/metrics",
            "conn web 1000\nconn web 1000 R1 extra\n\ngarbage\nbytes out 5 R1\n",
        );
        let got = datums(&sh, &Readings::default());
        assert!(
            got.contains(
                &"NewConnections Count 1500 Site=s Forward=web|conn web 1500 R1".to_owned()
            ),
            "[{:?}] {got:#?}",
            sh.awk()
        );
        assert!(
            got.contains(&"ForwardedBytesOut Bytes 0 Site=s|bytes out 5 R1".to_owned()),
            "{got:#?}"
        );
        sh.run("metrics_commit state/metrics out.keys 1").expect(0);
        assert_eq!(
            sh.read("state/metrics"),
            "bytes out 5 R1\nconn web 1500 R1\n",
            "[{:?}]",
            sh.awk()
        );
        // Nothing sent: the state stays as it was.
        sh.run("metrics_commit state/metrics out.keys 0").expect(0);
        assert_eq!(
            sh.read("state/metrics"),
            "bytes out 5 R1\nconn web 1500 R1\n"
        );
    });
}

/// A standby pair's role and takeovers: `Active` a gauge, `Takeovers` a
/// count sent as what was added since the last publish (whole after a
/// reboot emptied the count); neither without the standby's readings.
#[test]
fn a_standby_publishes_its_role_and_takeovers() {
    each_awk(|sh| {
        let run = |readings: &str| {
            sh.write("counters", "");
            sh.run(&format!(
                "metrics_datums counters state/metrics out healthy=1 per_forward=no site=s reload=R1 {readings} || exit 1\n\
                 paste -d '|' out out.keys | grep -v '^Healthy'; metrics_commit state/metrics out.keys 99"
            ))
            .lines(0)
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
        };
        sh.write("state/metrics", "");
        assert_eq!(
            run("active=1 takeovers=3"),
            [
                "Active None 1 Site=s|-",
                "Takeovers Count 3 Site=s|takeovers - 3 R1"
            ],
            "[{:?}]",
            sh.awk()
        );
        assert_eq!(
            run("active=0 takeovers=5"),
            [
                "Active None 0 Site=s|-",
                "Takeovers Count 2 Site=s|takeovers - 5 R1"
            ]
        );
        assert_eq!(
            run("active=1 takeovers=1")[1],
            "Takeovers Count 1 Site=s|takeovers - 1 R1"
        );
        assert!(run("").is_empty());
    });
}
