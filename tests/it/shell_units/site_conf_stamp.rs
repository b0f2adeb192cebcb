//! The health check's stamp of site.conf (`load_site_conf_stamped` in
//! natbake-health.sh over the lib's `load_site_conf`): a file checked whole
//! is stamped under the state folder with what stat says of it and of the
//! script, and later runs check only its named lines while
//! both are unchanged. A stamp counts only for the very file it was made
//! of, unchanged (its change time, which no program can set back), in a
//! folder and file no one else can write; a file changed in the last
//! second is not stamped.

use std::fs;
use std::thread::sleep;
use std::time::Duration;

use super::harness::{Awk, Shell};

/// A file of the same size that is wrong only in its first forward line
/// (a port range that ends before it starts): refused whenever the
/// forwards are checked.
fn bad_forward(base: &str) -> String {
    let line = "forward=oracle 10.0.1.25 tcp 1532 1532 own\n";
    assert!(base.contains(line), "{base}");
    base.replacen(line, "forward=oracle 10.0.1.25 tcp 1532 1531 own\n", 1)
}

/// A file wrong only in a named line.
fn bad_named(base: &str) -> String {
    base.replacen("failover=no\n", "failover=maybe\n", 1)
}

/// One shell per awk with `files` (name, text) written to its scratch
/// folder, returned once they are older than the reader's second of grace.
fn aged(fixture: &str, files: impl Fn(&str) -> Vec<(&'static str, String)>) -> Vec<Shell> {
    let shells: Vec<Shell> = Awk::ALL
        .iter()
        .map(|&awk| Shell::new(fixture, awk).load("natbake-health.sh"))
        .collect();
    for sh in &shells {
        let base = fs::read_to_string(sh.site_dir().join("site.conf")).unwrap();
        sh.write("site.conf", &base);
        for (name, text) in files(&base) {
            sh.write(name, text);
        }
    }
    sleep(Duration::from_millis(2100));
    shells
}

/// Bash that writes a stamp for file `$1` as the reader would (of the
/// file and the library as they are now, `$2` forwards).
const FORGE: &str = "function forge { rm -f \"$STATE_DIR/site.conf.checked\"; site_conf_stat \"$1\" \"$SITE_DIR/natbake-health.sh\"; \
     printf '%s\\n' \"${SITE_CONF_STAT[@]}\" \"$2 0\" >\"$STATE_DIR/site.conf.checked\"; }\n\
     function try { if load_site_conf_stamped \"$1\"; then echo \"loaded $SITE $FORWARD_COUNT\"; \
     else echo \"refused ${SITE_CONF_ERROR##*: }\"; fi; }\n";

/// A file checked whole is stamped, and the next run takes the forwards'
/// count from the stamp instead of reading them (here the stamp's count is
/// changed by hand to show which was used). With a stamp of the file as it
/// is, its named lines are still checked; its forward lines are not.
#[test]
fn a_checked_file_is_stamped_and_then_read_without_its_forwards() {
    for sh in aged("debian-mixed", |base| {
        vec![
            ("bad-forward.conf", bad_forward(base)),
            ("bad-named.conf", bad_named(base)),
        ]
    }) {
        let ran = sh.run(&format!(
            "{FORGE}try \"$SCRATCH/site.conf\"\n\
             sed -n 3p \"$STATE_DIR/site.conf.checked\"\n\
             sed -i '3s/.*/4 0/' \"$STATE_DIR/site.conf.checked\"\n\
             try \"$SCRATCH/site.conf\"\n\
             forge \"$SCRATCH/bad-named.conf\" 5; try \"$SCRATCH/bad-named.conf\"\n\
             forge \"$SCRATCH/bad-forward.conf\" 5; try \"$SCRATCH/bad-forward.conf\"\n"
        ));
        assert_eq!(
            ran.lines(0),
            [
                "loaded debian-mixed 5",
                "5 0",
                "loaded debian-mixed 4",
                "refused `failover` cannot be `maybe`",
                "loaded debian-mixed 5",
            ],
            "[{:?}]",
            sh.awk()
        );
    }
}

/// A stamp lets nothing unchecked through when it is not the file's as it
/// is now: the file edited in place with its size and modification time
/// put back, replaced by another, a stamp of the library as it was not, a
/// symbolic link for the file; nor when someone else could have written it:
/// a state folder or stamp writable by the group or others. A file changed
/// in the last second is checked but not stamped.
#[test]
fn a_stamp_that_is_not_this_file_unchanged_is_not_trusted() {
    for sh in aged("debian-mixed", |base| {
        vec![
            ("bad-forward.conf", bad_forward(base)),
            ("good.conf", base.to_owned()),
        ]
    }) {
        let ran = sh.run(&format!(
            "{FORGE}s=$SCRATCH/site.conf stamp=$STATE_DIR/site.conf.checked\n\
             try \"$s\"; cp -p \"$s\" \"$SCRATCH/was\"\n\
             text=$(<\"$SCRATCH/bad-forward.conf\"); printf '%s\\n' \"$text\" >\"$s\"; touch -r \"$SCRATCH/was\" \"$s\"\n\
             try \"$s\"\n\
             cp -p \"$SCRATCH/good.conf\" \"$s\"; forge \"$s\" 5; cp -p \"$SCRATCH/bad-forward.conf\" \"$s.new\"; mv \"$s.new\" \"$s\"\n\
             try \"$s\"\n\
             b=$SCRATCH/bad-forward.conf; forge \"$b\" 5; sed -i 2s/^/x/ \"$stamp\"; try \"$b\"\n\
             ln -s \"$b\" \"$SCRATCH/link.conf\"; forge \"$SCRATCH/link.conf\" 5; try \"$SCRATCH/link.conf\"\n\
             forge \"$b\" 5; chmod 664 \"$stamp\"; try \"$b\"\n\
             forge \"$b\" 5; chmod 646 \"$stamp\"; try \"$b\"\n\
             forge \"$b\" 5; chmod 775 \"$STATE_DIR\"; try \"$b\"; chmod 755 \"$STATE_DIR\"\n\
             forge \"$b\" 5; chmod 757 \"$STATE_DIR\"; try \"$b\"; chmod 755 \"$STATE_DIR\"\n\
             forge \"$b\" 5; try \"$b\"\n\
             rm -f \"$stamp\"; cp \"$SCRATCH/good.conf\" \"$SCRATCH/fresh.conf\"; try \"$SCRATCH/fresh.conf\"\n\
             [ -e \"$stamp\" ] && echo stamped || echo not stamped\n"
        ));
        let refused = "refused `forward` cannot be `oracle 10.0.1.25 tcp 1532 1531 own`";
        let mut want = vec!["loaded debian-mixed 5"];
        want.extend([refused; 8]);
        // The forged stamp of the bad file itself, in a folder of this
        // user: trusted (that is what the folder's checks guard).
        want.extend([
            "loaded debian-mixed 5",
            "loaded debian-mixed 5",
            "not stamped",
        ]);
        assert_eq!(ran.lines(0), want, "[{:?}]", sh.awk());
    }
}

/// Loaded through its stamp, every fixture's file gives every setting the
/// whole check gives; so does a hand-made file whose named lines follow
/// its forwards (the stamp says so, and the named lines are then looked
/// for past the forwards).
#[test]
fn a_stamped_load_gives_what_a_whole_check_gives() {
    let print = "printf '%s|' \"$SITE\" \"$DESCRIPTION\" \"$SPEC_SHA256\" \"$RULES_SHA256\" \"$IPSETS_SHA256\" \
         \"${VPC_CIDRS[*]}\" \"$SYSTEMD\" \"$BYTE_SETS\" \"${IPSET_NAMES[*]}\" \"$IPSET_ELEMENTS\" \"$FAILOVER\" \
         \"${ATTACH_TIMEOUT:-}\" \"$METRICS\" \"${PER_FORWARD:-}\" \"$FORWARD_COUNT\" \"$AWS\"; echo";
    for fixture in [
        "debian-mixed",
        "failover-health",
        "metrics-only",
        "no-egress-legacy",
    ] {
        for sh in aged(fixture, |base| {
            let named: String = base
                .lines()
                .filter(|l| !l.starts_with("forward=") && !l.starts_with("summary="))
                .map(|l| format!("{l}\n"))
                .collect();
            let forwards: String = base
                .lines()
                .filter(|l| l.starts_with("forward=") || l.starts_with("summary="))
                .map(|l| format!("{l}\n"))
                .collect();
            vec![("late.conf", format!("{forwards}{named}"))]
        }) {
            let ran = sh.run(&format!(
                "stamp=$STATE_DIR/site.conf.checked\n\
                 for f in site late; do rm -f \"$stamp\"\n\
                 load_site_conf_stamped \"$SCRATCH/$f.conf\" || exit 1; {print}\n\
                 [ -s \"$stamp\" ] || exit 2; sed -n 3p \"$stamp\"\n\
                 load_site_conf_stamped \"$SCRATCH/$f.conf\" || exit 1; {print}\n\
                 done\n"
            ));
            let lines = ran.lines(0);
            assert_eq!(lines.len(), 6, "[{:?}] {fixture}", sh.awk());
            assert_eq!(lines[0], lines[2], "[{:?}] {fixture}", sh.awk());
            assert_eq!(
                lines[3],
                lines[5],
                "[{:?}] {fixture}: named lines last",
                sh.awk()
            );
            assert_eq!(lines[0], lines[3], "[{:?}] {fixture}", sh.awk());
            let count = lines[0].rsplit('|').nth(2).unwrap();
            assert_eq!(lines[1], format!("{count} 0"), "[{:?}] {fixture}", sh.awk());
            let late = format!("{count} {}", u8::from(count != "0"));
            assert_eq!(lines[4], late, "[{:?}] {fixture}", sh.awk());
        }
    }
}
