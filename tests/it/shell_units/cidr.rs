//! The CIDR helpers of configure-pat.sh (`ip_to_int`, `is_cidr`,
//! `cidr_within`), with which the boot step checks the spec's vpc_cidrs
//! against the VPC's own blocks from instance metadata: metadata is
//! outside input, so `is_cidr` is the gate before any arithmetic. Pure
//! bash: no awk involved.

use super::harness::{Awk, Shell};

fn shell(awk: Awk) -> Shell {
    Shell::new("debian-mixed", awk).load("configure-pat.sh")
}

/// Dotted quads as numbers, each part read in base 10 (a leading zero is
/// not octal), up to 255.255.255.255.
#[test]
fn addresses_are_numbers_in_base_ten() {
    for awk in Awk::ALL {
        let sh = shell(awk);
        let cases = [
            ("0.0.0.0", 0u64),
            ("10.0.0.1", 167_772_161),
            ("010.000.000.001", 167_772_161),
            ("192.168.8.9", 3_232_237_577),
            ("255.255.255.255", 4_294_967_295),
        ];
        let script: String = cases
            .iter()
            .map(|(ip, _)| format!("ip_to_int {ip}\n"))
            .collect();
        let got = sh.run(&script);
        let want: String = cases.iter().map(|(_, n)| format!("{n}\n")).collect();
        assert_eq!(got.expect(0), want, "{}", got.explain());
    }
}

/// Only a.b.c.d/n with each part at most 255 and n at most 32, nothing
/// around it: metadata that is anything else is refused before it is
/// computed with, and text such as `$(...)` is never run.
#[test]
fn only_a_network_in_cidr_form_is_a_cidr() {
    let sh = shell(Awk::Mawk);
    let good = [
        "10.0.0.0/16",
        "0.0.0.0/0",
        "255.255.255.255/32",
        "172.31.0.0/16",
        "010.0.0.0/08",
    ];
    let bad = [
        "",
        "10.0.0.0",
        "10.0.0/16",
        "10.0.0.0.0/16",
        "256.0.0.0/8",
        "10.0.0.0/33",
        "10.0.0.0/",
        "/16",
        " 10.0.0.0/16",
        "10.0.0.0/16 ",
        "10.0.0.0/16\n10.1.0.0/16",
        "10.0.0.0/016",
        "1000.0.0.0/8",
        "10.0.0.0/-1",
        "a.b.c.d/8",
        "10.0.0.0/1e1",
        "$(touch canary)/8",
        "10.0.0.0/16;touch canary",
        "`touch canary`",
        "\u{661}\u{660}.0.0.0/8",
    ];
    let script: String = good
        .iter()
        .chain(&bad)
        .map(|c| {
            format!(
                "is_cidr '{}' && echo yes || echo no\n",
                c.replace('\'', "'\\''")
            )
        })
        .collect();
    let ran = sh.run(&script);
    let got: Vec<&str> = ran.lines(0);
    let want: Vec<&str> = good
        .iter()
        .map(|_| "yes")
        .chain(bad.iter().map(|_| "no"))
        .collect();
    for ((case, g), w) in good.iter().chain(&bad).zip(&got).zip(&want) {
        assert_eq!(g, w, "is_cidr {case:?}");
    }
    assert_eq!(got.len(), want.len(), "{}", ran.explain());
    assert!(!sh.path("canary").exists());
}

/// Whether one network lies inside another: the same network, a smaller
/// one inside, across an octet boundary, anything inside 0.0.0.0/0; not a
/// wider one, a neighbour, or one that only shares a prefix shorter than
/// the outer mask.
#[test]
fn a_network_lies_within_another_by_its_mask() {
    let sh = shell(Awk::Gawk);
    let within = [
        ("10.0.0.0/16", "10.0.0.0/16"),
        ("10.0.1.0/24", "10.0.0.0/16"),
        ("10.0.255.255/32", "10.0.0.0/16"),
        ("10.1.0.0/16", "10.0.0.0/15"),
        ("11.255.0.0/16", "10.0.0.0/7"),
        ("203.0.113.7/32", "0.0.0.0/0"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("255.255.255.255/32", "255.255.255.255/32"),
    ];
    let outside = [
        ("10.0.0.0/8", "10.0.0.0/16"),
        ("10.1.0.0/24", "10.0.0.0/16"),
        ("10.2.0.0/16", "10.0.0.0/15"),
        ("12.0.0.0/8", "10.0.0.0/7"),
        ("0.0.0.0/0", "10.0.0.0/8"),
        ("10.0.0.1/32", "10.0.0.0/32"),
        ("192.168.0.0/16", "172.16.0.0/12"),
    ];
    let script: String = within
        .iter()
        .chain(&outside)
        .map(|(a, b)| format!("cidr_within {a} {b} && echo yes || echo no\n"))
        .collect();
    let ran = sh.run(&script);
    let got = ran.lines(0);
    for (i, (a, b)) in within.iter().chain(&outside).enumerate() {
        let want = if i < within.len() { "yes" } else { "no" };
        assert_eq!(
            got.get(i).copied(),
            Some(want),
            "cidr_within {a} {b}: {}",
            ran.explain()
        );
    }
}
