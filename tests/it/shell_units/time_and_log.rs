//! The clock the intervals are measured on (`monotonic_stamp`,
//! `stamp_seconds`), the reload ids counters are kept under (`mark_reload`,
//! `reload_id`), and the journal lines (`log`, `log_lines`).

use std::fs;

use super::harness::each_awk;

/// A stamp is this boot's id and the whole seconds since boot, both as
/// the kernel reports them.
#[test]
fn a_stamp_is_the_boot_and_the_seconds_since() {
    each_awk("debian-mixed", |sh| {
        let before = uptime();
        let ran = sh.run("monotonic_stamp now; echo \"$now\"");
        let after = uptime();
        let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        let stamp = ran.expect(0).trim_end();
        let (id, seconds) = stamp.split_once('/').expect("boot/seconds");
        assert_eq!(id, boot.trim_end(), "{}", ran.explain());
        let seconds: u64 = seconds.parse().expect("whole seconds");
        assert!(
            (before..=after).contains(&seconds),
            "{seconds} not within {before}..={after}"
        );
    });
}

fn uptime() -> u64 {
    let text = fs::read_to_string("/proc/uptime").unwrap();
    let whole = text.split(['.', ' ']).next().unwrap();
    whole.parse().unwrap()
}

/// Seconds between two stamps of the same boot; no answer (exit 1, the
/// variable untouched) for stamps of different boots or anything that is
/// not a stamp.
#[test]
fn seconds_between_stamps_of_one_boot_only() {
    each_awk("debian-mixed", |sh| {
        let between = |a: &str, b: &str| {
            sh.run(&format!(
                "s=untouched; stamp_seconds s '{a}' '{b}'; echo \"$? $s\""
            ))
            .expect(0)
            .trim_end()
            .to_owned()
        };
        let boot = "9b7c4bd8-66e4-4f5e-9d1a-2b8f0c3e7a10";
        assert_eq!(
            between(&format!("{boot}/100"), &format!("{boot}/160")),
            "0 60"
        );
        assert_eq!(
            between(&format!("{boot}/0"), &format!("{boot}/4294967396")),
            "0 4294967396"
        );
        for (a, b) in [
            (
                format!("{boot}/100"),
                "0d2a4c8e-1111-4222-8333-444455556666/160".to_owned(),
            ),
            (String::new(), format!("{boot}/160")),
            (format!("{boot}/100"), String::new()),
            (format!("{boot}/"), format!("{boot}/160")),
            ("/100".to_owned(), "/160".to_owned()),
            (format!("{boot}/1.5"), format!("{boot}/160")),
            (format!("{boot}/100 "), format!("{boot}/160")),
            (format!("{boot}/$(touch canary)"), format!("{boot}/160")),
        ] {
            assert_eq!(
                between(&a, &b),
                "1 untouched",
                "[{:?}] {a:?} {b:?}",
                sh.awk()
            );
        }
        assert!(!sh.path("canary").exists());
    });
}

/// Each load gets a new id, read back as it was written; no id, an
/// unreadable one or one that is not a plain word reads as "none"
/// (counters then count as restarted); an id that cannot be written
/// leaves none behind, not the previous load's.
#[test]
fn reload_ids_are_new_per_load_and_none_when_unknown() {
    each_awk("debian-mixed", |sh| {
        let ran = sh.run("reload_id a; mark_reload && reload_id b && mark_reload && reload_id c; echo \"$a $b $c\"");
        let ids: Vec<&str> = ran.expect(0).split_whitespace().collect();
        assert_eq!(ids[0], "none", "{}", ran.explain());
        assert!(ids[1] != ids[2] && ids[1].len() >= 8, "{ids:?}");
        assert!(
            ids[1..]
                .iter()
                .all(|id| id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        );
        for kept in ["", "a b", "$(touch canary)", "R1;reboot", "\u{e9}t\u{e9}"] {
            sh.write("state/reloaded", format!("{kept}\n"));
            assert_eq!(
                sh.run("reload_id x; echo \"$x\"").expect(0),
                "none\n",
                "{kept:?}"
            );
        }
        sh.write("state/reloaded", "R1\n");
        fs::create_dir_all(sh.path("state/reloaded.new")).unwrap();
        let ran = sh.run("mark_reload; echo \"$?\"; reload_id x; echo \"$x\"");
        assert_eq!(ran.expect(0), "1\nnone\n", "{}", ran.explain());
        assert!(!sh.path("canary").exists());
    });
}

/// Under systemd (JOURNAL_STREAM set) a line goes to stderr, which is the
/// journal; elsewhere to syslog through `logger -t natbake` (a message
/// that starts with a dash is not an option) and to stderr prefixed.
/// Newlines never split a message; a failing logger loses nothing on
/// stderr.
#[test]
fn log_lines_reach_the_journal_or_syslog_whole() {
    each_awk("debian-mixed", |sh| {
        sh.answer("logger", "", 0).keep_stdin("host", "logger");
        let ran = sh.run("JOURNAL_STREAM=8:123 log $'repair failed:\\nline 2'");
        assert_eq!(
            (ran.expect(0), ran.stderr.as_str()),
            ("", "repair failed: line 2\n")
        );
        assert!(sh.calls().is_empty(), "{:?}", sh.calls());

        let ran = sh.run("unset JOURNAL_STREAM; log $'-n one\\ntwo'");
        assert_eq!(ran.stderr, "natbake: -n one two\n", "{}", ran.explain());
        assert_eq!(sh.calls(), ["host logger -t natbake -- -n one two"]);

        let ran = sh.run("JOURNAL_STREAM=8:123 log_lines 'forward a' 'forward b'");
        assert_eq!(ran.stderr, "forward a\nforward b\n");
        assert!(sh.calls().is_empty());
        let ran = sh.run("unset JOURNAL_STREAM; log_lines 'forward a' '-forward b'");
        assert_eq!(
            ran.stderr,
            "natbake: forward a\nnatbake: -forward b\n",
            "{}",
            ran.explain()
        );
        assert_eq!(sh.calls(), ["host logger -t natbake"]);
        assert_eq!(sh.stdin_of("host", "logger"), "forward a\n-forward b\n");
        let ran = sh.run("unset JOURNAL_STREAM; log_lines; echo \"$?\"");
        assert_eq!((ran.expect(0), ran.stderr.as_str()), ("0\n", ""));
        assert!(sh.calls().is_empty());

        sh.answer("logger", "", 1);
        let ran = sh.run("unset JOURNAL_STREAM; log 'still said'; echo \"$?\"");
        assert_eq!(
            (ran.expect(0), ran.stderr.as_str()),
            ("0\n", "natbake: still said\n"),
            "[{:?}]",
            sh.awk()
        );
    });
}
