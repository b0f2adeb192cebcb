//! The byte-counting sets as the health check judges them
//! (`ipset_problems`, `ipset_elements_digest`, `keep_ipsets_loaded`) and
//! the installed files checked against the digests the scripts were
//! rendered with (`installed_files_problems`).

use std::fs;

use super::canned;
use super::harness::{Shell, each_awk, sha256_hex};

fn list_t() -> String {
    canned("debian-mixed.ipset-list-t")
}

/// A shell whose `ipset list -t` prints `headers` and whose `ipset save`
/// prints the canned listings.
fn with_sets(sh: &Shell, headers: &str) {
    sh.answer("ipset list -t", headers, 0);
    sh.answer(
        "ipset save natbake-in",
        canned("debian-mixed.ipset-save-in"),
        0,
    );
    sh.answer(
        "ipset save natbake-out",
        canned("debian-mixed.ipset-save-out"),
        0,
    );
    for s in ["tcp", "udp"] {
        sh.answer(
            &format!("ipset save natbake-denied-{s}"),
            canned(&format!("debian-mixed.ipset-save-denied-{s}")),
            0,
        );
    }
}

/// The headers are enough: each set must be there, be of its type with
/// counters (hash:ip,port; bitmap:port for natbake-denied-*), and hold
/// the number of elements rendered for it; each problem is
/// named. An ipset too old to print the number of entries is counted from
/// its members.
#[test]
fn ipset_problems_name_each_wrong_set() {
    each_awk("debian-mixed", |sh| {
        let base = list_t();
        let problems = |headers: &str| {
            with_sets(&sh, headers);
            sh.run("ipset_problems")
        };
        assert_eq!(problems(&base).expect(0), "", "[{:?}]", sh.awk());
        let out_header = base.find("\nName: natbake-out").unwrap();
        let tcp_header = base.find("\nName: natbake-denied-tcp").unwrap();
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "a set missing",
                format!("{}{}", &base[..out_header + 1], &base[tcp_header + 1..]),
                "the ipset natbake-out is missing",
            ),
            (
                "a denied set missing",
                base[..tcp_header + 1].to_owned(),
                "the ipset natbake-denied-tcp is missing\nthe ipset natbake-denied-udp is missing",
            ),
            (
                "no sets",
                String::new(),
                "the ipset natbake-in is missing\nthe ipset natbake-out is missing\n\
                 the ipset natbake-denied-tcp is missing\nthe ipset natbake-denied-udp is missing",
            ),
            (
                "a denied set of the byte sets' type",
                base.replacen("Type: bitmap:port", "Type: hash:ip,port", 1),
                "the ipset natbake-denied-tcp is a hash:ip,port without the counters natbake loads",
            ),
            (
                "a byte set of the denied sets' type",
                base.replacen("Type: hash:ip,port", "Type: bitmap:port", 1),
                "the ipset natbake-in is a bitmap:port without the counters natbake loads",
            ),
            (
                "a denied set without counters",
                base.replacen(
                    "range 5353-40009 counters comment",
                    "range 5353-40009 comment",
                    1,
                ),
                "the ipset natbake-denied-udp is a bitmap:port without the counters natbake loads",
            ),
            (
                "a denied set with a port more",
                base.replacen("Number of entries: 4\n", "Number of entries: 5\n", 1),
                "the ipset natbake-denied-tcp holds 5 elements, not 4",
            ),
            (
                "a denied set with the other's count",
                base.replacen("Number of entries: 11\n", "Number of entries: 4\n", 1),
                "the ipset natbake-denied-udp holds 4 elements, not 11",
            ),
            (
                "another type",
                base.replacen("Type: hash:ip,port", "Type: hash:ip", 1),
                "the ipset natbake-in is a hash:ip without the counters natbake loads",
            ),
            (
                "no counters",
                base.replacen(
                    " maxelem 64 counters bucketsize",
                    " maxelem 64 bucketsize",
                    1,
                ),
                "the ipset natbake-in is a hash:ip,port without the counters natbake loads",
            ),
            (
                "counters only as part of a word",
                base.replacen(
                    " maxelem 64 counters bucketsize",
                    " maxelem 64 nocounters bucketsize",
                    1,
                ),
                "the ipset natbake-in is a hash:ip,port without the counters natbake loads",
            ),
            (
                "an element short",
                base.replacen("Number of entries: 16", "Number of entries: 15", 1),
                "the ipset natbake-in holds 15 elements, not 16",
            ),
            (
                "an element more",
                base.rsplit_once("Number of entries: 16")
                    .map(|(a, b)| format!("{a}Number of entries: 17{b}"))
                    .unwrap(),
                "the ipset natbake-out holds 17 elements, not 16",
            ),
        ];
        for (what, headers, want) in cases {
            let ran = problems(&headers);
            assert_eq!(ran.expect(1).trim_end(), want, "[{:?}] {what}", sh.awk());
        }

        // An old ipset: no "Number of entries" in the header.
        let old: String = base
            .lines()
            .filter(|l| !l.starts_with("Number of entries: "))
            .map(|l| format!("{l}\n"))
            .collect();
        for s in ["tcp", "udp"] {
            let set = format!("natbake-denied-{s}");
            let members: String = canned(&format!("debian-mixed.ipset-save-denied-{s}"))
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("add {set} ")))
                .map(|l| format!("{l}\n"))
                .collect();
            sh.answer(
                &format!("ipset list {set}"),
                format!("Name: {set}\nType: bitmap:port\nHeader: range 1-65535 counters comment\nMembers:\n{members}"),
                0,
            );
        }
        let members: String = canned("debian-mixed.ipset-save-in")
            .lines()
            .filter_map(|l| l.strip_prefix("add natbake-in "))
            .map(|l| format!("{l}\n"))
            .collect();
        let listing = |members: &str| {
            format!(
                "Name: natbake-in\nType: hash:ip,port\nHeader: family inet hashsize 64 maxelem 64 counters\nMembers:\n{members}"
            )
        };
        sh.answer("ipset list natbake-in", listing(&members), 0);
        sh.answer("ipset list natbake-out", listing(&members), 0);
        with_sets(&sh, &old);
        assert_eq!(sh.run("ipset_problems").expect(0), "", "[{:?}]", sh.awk());
        let fewer: String = members.lines().skip(1).map(|l| format!("{l}\n")).collect();
        sh.answer("ipset list natbake-out", listing(&fewer), 0);
        assert_eq!(
            sh.run("ipset_problems").expect(1).trim_end(),
            "the ipset natbake-out holds 15 elements, not 16"
        );
    });
}

/// With `elements`, the sets' elements must also be the ones loaded (the
/// digest kept at load): a set swapped in under natbake's name with the
/// same type and size is found. A match renews the kept file's time; a
/// set already wrong is not listed in full; without a kept digest there is
/// nothing to compare.
#[test]
fn ipset_problems_compare_elements_with_what_was_loaded() {
    each_awk("debian-mixed", |sh| {
        with_sets(&sh, &list_t());
        let keep = sh.run("keep_ipsets_loaded && cat \"$IPSETS_LOADED\"");
        let digest = keep.expect(0).trim_end().to_owned();
        assert_eq!(digest.len(), 64, "{}", keep.explain());
        let loaded = sh.path("state/ipsets.loaded");
        let renewed = |sh: &Shell| {
            sh.run("touch -d '2001-01-01 00:00' \"$IPSETS_LOADED\"")
                .expect(0);
            let ran = sh.run("ipset_problems elements");
            let mtime = fs::metadata(&loaded).unwrap().modified().unwrap();
            (
                ran,
                mtime
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    > 1_000_000_000 + 500_000_000,
            )
        };
        let (ran, touched) = renewed(&sh);
        assert_eq!(ran.expect(0), "", "[{:?}]", sh.awk());
        assert!(
            touched,
            "[{:?}] a match renews the kept digest's time",
            sh.awk()
        );

        // Another element of the same size: found.
        sh.answer(
            "ipset save natbake-out",
            canned("debian-mixed.ipset-save-out")
                .replace("10.0.1.25,tcp:1532", "10.0.1.26,tcp:1532"),
            0,
        );
        let (ran, touched) = renewed(&sh);
        assert_eq!(
            ran.expect(1).trim_end(),
            "the ipsets hold other elements than loaded"
        );
        assert!(!touched);
        // A denied set's port counted for another forward: found too.
        sh.answer(
            "ipset save natbake-out",
            canned("debian-mixed.ipset-save-out"),
            0,
        );
        sh.answer(
            "ipset save natbake-denied-tcp",
            canned("debian-mixed.ipset-save-denied-tcp")
                .replace("comment \"oracle\"", "comment \"web\""),
            0,
        );
        let (ran, touched) = renewed(&sh);
        assert_eq!(
            ran.expect(1).trim_end(),
            "the ipsets hold other elements than loaded",
            "[{:?}] a port re-named",
            sh.awk()
        );
        assert!(!touched);
        // Without `elements`, or without a kept digest, not compared.
        assert_eq!(sh.run("ipset_problems").expect(0), "");
        assert_eq!(
            sh.run("rm \"$IPSETS_LOADED\"; ipset_problems elements")
                .expect(0),
            ""
        );
        fs::write(&loaded, format!("{digest}\n")).unwrap();
        // A set already wrong: named, and not listed in full.
        sh.answer(
            "ipset list -t",
            list_t().replacen("Number of entries: 16", "Number of entries: 15", 1),
            0,
        );
        let ran = sh.run("ipset_problems elements");
        assert_eq!(
            ran.expect(1).trim_end(),
            "the ipset natbake-in holds 15 elements, not 16"
        );
        assert!(
            !sh.calls().iter().any(|c| c.contains("ipset save")),
            "{:?}",
            sh.calls()
        );
    });
}

/// The digest is sha256sum's of the sorted "SET ELEMENT COMMENT" lines
/// (byte order; the comment, a denied set's forward, empty for the byte
/// sets): the same whatever the kernel's hash order and counters, and
/// different for any other element, or the same element in the other set.
#[test]
fn the_elements_digest_ignores_order_and_counters_only() {
    each_awk("debian-mixed", |sh| {
        let mut lines: Vec<String> = ["in", "out", "denied-tcp", "denied-udp"]
            .iter()
            .flat_map(|s| {
                canned(&format!("debian-mixed.ipset-save-{s}"))
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .filter_map(|l| {
                l.strip_prefix("add ").map(|r| {
                    let w: Vec<&str> = r.split(' ').collect();
                    let comment = match w[w.len() - 2] {
                        "comment" => w[w.len() - 1],
                        _ => "",
                    };
                    format!("{} {} {comment}", w[0], w[1])
                })
            })
            .collect();
        lines.sort();
        let want = sha256_hex(format!("{}\n", lines.join("\n")).as_bytes());
        let digest = |sh: &Shell| {
            sh.run("ipset_elements_digest")
                .expect(0)
                .trim_end()
                .to_owned()
        };
        with_sets(&sh, "");
        assert_eq!(digest(&sh), want, "[{:?}]", sh.awk());

        let save_in = canned("debian-mixed.ipset-save-in");
        let mut reordered: Vec<&str> = save_in.lines().collect();
        reordered[1..].reverse();
        let recounted = reordered
            .join("\n")
            .replace("packets 0 bytes 0", "packets 7 bytes 4294967296");
        sh.answer("ipset save natbake-in", recounted, 0);
        assert_eq!(digest(&sh), want, "[{:?}] order and counters", sh.awk());

        let save_out = canned("debian-mixed.ipset-save-out");
        for (what, set_in, set_out) in [
            (
                "an element changed",
                save_in.replace("udp:40005", "udp:40015"),
                save_out.clone(),
            ),
            (
                "an element moved to the other set",
                save_in.replace("add natbake-in 10.0.2.53,udp:53 packets 2 bytes 152\n", ""),
                format!("{save_out}add natbake-out 10.0.2.53,udp:53 packets 0 bytes 0\n"),
            ),
        ] {
            sh.answer("ipset save natbake-in", set_in, 0);
            sh.answer("ipset save natbake-out", set_out, 0);
            assert_ne!(digest(&sh), want, "[{:?}] {what}", sh.awk());
        }
        sh.answer("ipset save natbake-in", save_in, 0);
        sh.answer("ipset save natbake-out", "", 1);
        assert_ne!(
            digest(&sh),
            want,
            "[{:?}] a set that cannot be listed",
            sh.awk()
        );
    });
}

/// A digest that cannot be kept is no digest: nothing stale is left for
/// the health check to compare with.
#[test]
fn a_digest_that_cannot_be_kept_leaves_none() {
    each_awk("debian-mixed", |sh| {
        with_sets(&sh, "");
        let ran = sh.run("IPSETS_LOADED=$SCRATCH/gone/ipsets.loaded; keep_ipsets_loaded");
        assert_eq!(ran.expect(1), "", "[{:?}]", sh.awk());
        // A kept name that cannot be written (it leads into a folder that
        // is gone): removed, not left for the check to compare with.
        std::os::unix::fs::symlink(
            sh.path("gone/ipsets.loaded"),
            sh.path("state/ipsets.loaded"),
        )
        .unwrap();
        let ran = sh.run("keep_ipsets_loaded");
        assert_eq!(ran.code, Some(1), "{}", ran.explain());
        assert!(fs::symlink_metadata(sh.path("state/ipsets.loaded")).is_err());
    });
    // Without sets (the legacy AMI's ipset has no counters): nothing to do.
    each_awk("no-egress-legacy", |sh| {
        assert_eq!(
            sh.run("keep_ipsets_loaded && ipset_problems elements")
                .expect(0),
            ""
        );
        assert!(sh.calls().is_empty(), "{:?}", sh.calls());
    });
}

/// The installed files are the rendered ones, byte for byte; an edited,
/// emptied or missing file is named with what it holds now.
#[test]
fn installed_files_are_checked_against_the_rendered_digests() {
    each_awk("debian-mixed", |sh| {
        assert_eq!(
            sh.run("installed_files_problems").expect(0),
            "",
            "[{:?}]",
            sh.awk()
        );
        let rules = fs::read_to_string(sh.site_dir().join("rules.v4")).unwrap();
        let edited = rules.replace("-j MASQUERADE", "-j ACCEPT");
        sh.write("rules.v4", &edited);
        sh.write("empty", "");
        let ipsets = sh.site_dir().join("ipsets.v4");
        for (what, assign, want) in [
            (
                "an edited ruleset",
                "RULES=$SCRATCH/rules.v4".to_owned(),
                format!(
                    "{} is not the ruleset this script was rendered with (sha256 {})",
                    sh.path("rules.v4").display(),
                    sha256_hex(edited.as_bytes())
                ),
            ),
            (
                "an empty ruleset",
                "RULES=$SCRATCH/empty".to_owned(),
                format!(
                    "{} is not the ruleset this script was rendered with (sha256 {})",
                    sh.path("empty").display(),
                    sha256_hex(b"")
                ),
            ),
            (
                "a missing ruleset",
                "RULES=$SCRATCH/none".to_owned(),
                format!(
                    "{} is not the ruleset this script was rendered with (sha256 )",
                    sh.path("none").display()
                ),
            ),
            (
                "the sets' file swapped with the ruleset",
                format!("IPSETS=$SITE_DIR/rules.v4; RULES={}", ipsets.display()),
                format!(
                    "{} is not the ruleset this script was rendered with (sha256 {})",
                    ipsets.display(),
                    sha256_hex(&fs::read(&ipsets).unwrap())
                ),
            ),
            (
                "edited sets",
                "IPSETS=$SCRATCH/rules.v4".to_owned(),
                format!(
                    "{} is not the ipsets this script was rendered with (sha256 {})",
                    sh.path("rules.v4").display(),
                    sha256_hex(edited.as_bytes())
                ),
            ),
        ] {
            let ran = sh.run(&format!("{assign}\ninstalled_files_problems"));
            assert_eq!(ran.expect(1).trim_end(), want, "[{:?}] {what}", sh.awk());
        }
    });
}
