//! The counters read from one `iptables-save -c`: per forward
//! (`natbake_counters`), the bytes of all forwards (`forwarded_bytes`) and
//! FORWARD's dropped packets (`forward_drops`). Counts past 2^31 and 2^32
//! must come out exact under mawk, which prints awk numbers from 2^31 on
//! rounded (2.14748e+09).

use std::fs;

use super::harness::{Shell, each_awk};
use super::{after, canned, replaced};
use crate::manifest::Manifest;

fn saved() -> String {
    canned("debian-mixed.iptables-save-c")
}

/// `natbake_counters` for the forward names `names` (written to a file)
/// over `listing`.
fn counters(sh: &Shell, names: &[&str], listing: &str) -> String {
    let mut file = names.join("\n");
    file.push('\n');
    sh.write("names", file);
    sh.run_with("natbake_counters names", listing.as_bytes())
        .expect(0)
        .to_owned()
}

/// Per forward, in the order of the names: connections (its DNAT rules'
/// packets, summed over its sources) and denied attempts ("-" for a
/// public forward), exact past 2^31 and 2^32. Log rules, which name the
/// forward in their prefix, and rules of other chains that carry a
/// natbake comment do not count; neither does a forward whose name starts
/// another's. A name without rules is 0 and "-".
#[test]
fn per_forward_counts_are_exact_and_only_natbake_s() {
    each_awk("debian-mixed", |sh| {
        let base = saved();
        let names = [
            "oracle",
            "dns",
            "media",
            "web-range",
            "status",
            "web",
            "gone",
        ];
        let want = "oracle 2147483658 4294967296\n\
                    dns 1 0\n\
                    media 0 0\n\
                    web-range 5 7\n\
                    status 3000000000 -\n\
                    web 0 -\n\
                    gone 0 -\n";
        assert_eq!(counters(&sh, &names, &base), want, "[{:?}]", sh.awk());
        // iptables before 1.6 prints a comment without its quotes.
        let unquoted = base
            .replace("--comment \"natbake:", "--comment natbake:")
            .replace(
                "--comment natbake:forwarded:in\"",
                "--comment natbake:forwarded:in",
            );
        assert_ne!(unquoted, base);
        assert_eq!(
            counters(
                &sh,
                &names,
                &unquoted
                    .replace("\" -j", " -j")
                    .replace("denied\"", "denied")
            ),
            want,
            "[{:?}] unquoted",
            sh.awk()
        );
        // Other software's rule naming a forward counts nothing.
        let foreign = after(
            &replaced(
                &base,
                ":OUTPUT ACCEPT [388:41566]",
                Some(":OUTPUT ACCEPT [388:41566]\n:AUDIT - [0:0]"),
            ),
            "[461:36098] -A FORWARD -j NATBAKE-FORWARD",
            "[999:99900] -A AUDIT -m comment --comment \"natbake:oracle\" -j RETURN\n[999:99900] -A FORWARD -m comment --comment \"natbake:dns:denied\" -j DROP",
        );
        assert_eq!(
            counters(&sh, &names, &foreign),
            want,
            "[{:?}] foreign",
            sh.awk()
        );
    });
}

/// Where ipset has counters, a forward's denied attempts are the
/// counters of its public ports in the sets natbake-denied-tcp and -udp
/// (`ipset save` prints a range element port by port, each with its
/// forward's name as comment), summed, exact past 2^32: the same figures
/// as the legacy AMI's counting rules give. A forward with no element
/// (public) is "-"; a set that cannot be listed counts nothing.
#[test]
fn denied_attempts_are_the_denied_sets_counters() {
    each_awk("debian-mixed", |sh| {
        let rules: String = saved()
            .lines()
            .filter(|l| !l.contains(":denied\""))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(rules, saved(), "the canned listing has counting rules");
        sh.answer(
            "ipset save natbake-denied-tcp",
            "create natbake-denied-tcp bitmap:port range 8000-51532 counters comment\n\
             add natbake-denied-tcp 8000 packets 3 bytes 180 comment \"web-range\"\n\
             add natbake-denied-tcp 8001 packets 0 bytes 0 comment \"web-range\"\n\
             add natbake-denied-tcp 8002 packets 4 bytes 240 comment \"web-range\"\n\
             add natbake-denied-tcp 51532 packets 4294967296 bytes 257698037760 comment \"oracle\"\n",
            0,
        );
        sh.answer(
            "ipset save natbake-denied-udp",
            "create natbake-denied-udp bitmap:port range 5353-40009 counters comment\n\
             add natbake-denied-udp 5353 packets 0 bytes 0 comment \"dns\"\n\
             add natbake-denied-udp 40000 packets 0 bytes 0 comment \"media\"\n",
            0,
        );
        let names = ["oracle", "dns", "media", "web-range", "status", "web"];
        let want = "oracle 2147483658 4294967296\n\
                    dns 1 0\n\
                    media 0 0\n\
                    web-range 5 7\n\
                    status 3000000000 -\n\
                    web 0 -\n";
        assert_eq!(counters(&sh, &names, &rules), want, "[{:?}]", sh.awk());
        // Without the sets (an ipset that cannot list them), no denied
        // attempts are made up.
        sh.answer("ipset save natbake-denied-tcp", "", 1);
        sh.answer("ipset save natbake-denied-udp", "", 1);
        assert_eq!(
            counters(&sh, &names, &rules),
            "oracle 2147483658 -\n\
             dns 1 -\n\
             media 0 -\n\
             web-range 5 -\n\
             status 3000000000 -\n\
             web 0 -\n",
            "[{:?}] no sets",
            sh.awk()
        );
    });
}

/// A ruleset large enough to group forwards into per-port chains
/// (NATBAKE-TCP-n): their rules count too, and every forward of the site
/// gets its line, in the manifest's order.
#[test]
fn forwards_in_grouped_chains_are_counted() {
    each_awk("many-forwards", |sh| {
        let rules = fs::read_to_string(sh.site_dir().join("rules.v4")).unwrap();
        // Each rule's packets: 1000 × n + 1 for forward fNN's DNAT rules,
        // n for its denied rule, 7 for any other rule.
        let listing: String = rules
            .lines()
            .map(|l| {
                if !l.starts_with("-A ") {
                    return format!("{l}\n");
                }
                let forward = l
                    .split("--comment \"natbake:f")
                    .nth(1)
                    .and_then(|rest| Some((rest.get(..2)?.parse::<u64>().ok()?, rest)));
                let packets = match forward {
                    Some((n, rest)) if rest[2..].starts_with(":denied") => n,
                    Some((n, _)) => 1000 * n + 1,
                    None => 7,
                };
                format!("[{packets}:{}] {l}\n", packets * 60)
            })
            .collect();
        let names: Vec<String> = Manifest::load(sh.site_dir())
            .forwards
            .into_iter()
            .map(|f| f.name)
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let got = counters(&sh, &refs, &listing);
        assert_eq!(got.lines().count(), names.len());
        for (line, name) in got.lines().zip(&names) {
            let n: u64 = name[1..].parse().unwrap();
            let fields: Vec<&str> = line.split(' ').collect();
            assert_eq!(fields[0], name);
            let sources = rules
                .matches(&format!("\"natbake:{name}\" -j DNAT"))
                .count() as u64;
            assert!(sources >= 1, "{name}");
            assert_eq!(
                fields[1],
                (sources * (1000 * n + 1)).to_string(),
                "[{:?}] {line}",
                sh.awk()
            );
            let denied = if rules.contains(&format!("\"natbake:{name}:denied\"")) {
                n.to_string()
            } else {
                "-".into()
            };
            assert_eq!(fields[2], denied, "[{:?}] {line}", sh.awk());
        }
        assert!(
            rules.contains("-A NATBAKE-TCP-1 "),
            "the fixture groups forwards into chains"
        );
    });
}

/// 20,000 names reach awk through a file, not as arguments (more than
/// the kernel takes in one argument list).
#[test]
fn twenty_thousand_names_are_counted() {
    each_awk("debian-mixed", |sh| {
        let names: Vec<String> = (0..20_000).map(|i| format!("forward-{i:05}")).collect();
        let mut listing = String::from("*nat\n:NATBAKE-DNAT - [0:0]\n");
        for (i, name) in names.iter().enumerate() {
            listing.push_str(&format!(
                "[{i}:0] -A NATBAKE-DNAT -p tcp -m tcp --dport {} -m comment --comment \"natbake:{name}\" -j DNAT --to-destination 10.0.0.1\n",
                1024 + i,
            ));
        }
        listing.push_str("COMMIT\n");
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let got = counters(&sh, &refs, &listing);
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines.len(), 20_000, "[{:?}]", sh.awk());
        assert_eq!(lines[0], "forward-00000 0 -");
        assert_eq!(lines[19_999], "forward-19999 19999 -");
    });
}

/// The bytes of all forwarded connections: the NATBAKE-BYTES rules' byte
/// counters, in and out, exact past 2^32; 0 0 without them; the same
/// comment on other software's rule counts nothing.
#[test]
fn forwarded_bytes_are_the_byte_counting_rules() {
    each_awk("debian-mixed", |sh| {
        let base = saved();
        let bytes = |text: &str| {
            sh.run_with("forwarded_bytes", text.as_bytes())
                .expect(0)
                .to_owned()
        };
        assert_eq!(bytes(&base), "5000000000 2147483650\n", "[{:?}]", sh.awk());
        let doubled = after(
            &base,
            "[220:5000000000] -A NATBAKE-BYTES -m conntrack --ctdir ORIGINAL -m set --match-set natbake-in dst,dst -m comment --comment \"natbake:forwarded:in\"",
            "[1:4000000000] -A NATBAKE-BYTES -m conntrack --ctdir ORIGINAL -m set --match-set natbake-in dst,dst -m comment --comment \"natbake:forwarded:in\"\n[1:1] -A FORWARD -m comment --comment \"natbake:forwarded:out\"",
        );
        assert_eq!(
            bytes(&doubled),
            "9000000000 2147483650\n",
            "[{:?}]",
            sh.awk()
        );
        assert_eq!(bytes(""), "0 0\n", "[{:?}]", sh.awk());
    });
}

/// Packets and bytes FORWARD's policy dropped: the filter table's, not
/// mangle's FORWARD listed before it, exact as the kernel wrote them.
#[test]
fn forward_drops_are_the_filter_policy_s() {
    each_awk("debian-mixed", |sh| {
        let base = saved();
        let drops = |text: &str| {
            sh.run_with("forward_drops", text.as_bytes())
                .expect(0)
                .to_owned()
        };
        assert_eq!(drops(&base), "42 9999999999\n", "[{:?}]", sh.awk());
        // The filter table first (legacy order): still filter's.
        let filter_at = base.find("# Generated by iptables-save v1.8.9 (nf_tables) on Sun Dec  6 08:54:22 2026\n*filter").unwrap();
        let reordered = format!("{}{}", &base[filter_at..], &base[..filter_at]);
        assert_eq!(
            drops(&reordered),
            "42 9999999999\n",
            "[{:?}] filter first",
            sh.awk()
        );
        let big = base.replace(
            ":FORWARD DROP [42:9999999999]",
            ":FORWARD DROP [4294967297:281474976710656]",
        );
        assert_eq!(
            drops(&big),
            "4294967297 281474976710656\n",
            "[{:?}]",
            sh.awk()
        );
    });
}
