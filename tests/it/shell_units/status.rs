//! natbake-status run whole on canned kernel state: its numbers are the
//! kernel's counters, exact past 2^31 and 2^32, and what it prints is
//! valid JSON in UTF-8 (or, as a table, free of terminal escapes) for any
//! bytes the health state or an interface name holds.

use std::fs;

use serde_json::Value;

use super::canned;
use super::harness::{Awk, Shell, each_awk, helpers};
use crate::specgen::Rng;

/// Stand-ins answering with the canned debian-mixed kernel state, and
/// network devices `devs` driven by ENA, whose `ethtool -S` shows two
/// allowance counters each.
fn kernel(sh: &Shell, devs: &[&[u8]]) {
    use std::os::unix::ffi::OsStrExt;
    sh.answer(
        "iptables-save -c",
        canned("debian-mixed.iptables-save-c"),
        0,
    );
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
    sh.answer(
        "ethtool",
        "NIC statistics:\n     tx_timeout: 0\n     bw_in_allowance_exceeded: 4294967297\n     pps_allowance_exceeded: 7\n",
        0,
    );
    let net = sh.path("sys/class/net");
    let _ = fs::remove_dir_all(&net);
    let driver = sh.path("sys/bus/pci/drivers/ena");
    fs::create_dir_all(&driver).unwrap();
    for dev in devs {
        let device = net.join(std::ffi::OsStr::from_bytes(dev)).join("device");
        fs::create_dir_all(&device).unwrap();
        std::os::unix::fs::symlink(&driver, device.join("driver")).unwrap();
    }
}

/// natbake-status's stdout, byte for byte, with `args`, run as
/// installed: the script loaded whole (before its main had a guard,
/// loading it runs it) after `status_env.sh`.
fn status(sh: &Shell, args: &str) -> Vec<u8> {
    let ran = sh.run(&format!(
        "{} >\"$SCRATCH/stdout.raw\"",
        status_call(sh, args)
    ));
    assert_eq!(ran.code, Some(0), "{}", ran.explain());
    fs::read(sh.path("stdout.raw")).unwrap()
}

/// The lines that run natbake-status with `args`.
fn status_call(sh: &Shell, args: &str) -> String {
    let script = fs::read_to_string(sh.site_dir().join("natbake-status.sh")).unwrap();
    let call = if script.contains("\nfunction main {") {
        format!(". \"$SITE_DIR/natbake-status.sh\" && main {args}")
    } else {
        format!(". \"$SITE_DIR/natbake-status.sh\" {args}")
    };
    format!(". '{}'\n{call}", helpers().join("status_env.sh").display())
}

fn json(sh: &Shell) -> Value {
    let out = status(sh, "--json");
    serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "[{:?}] natbake-status --json is not JSON ({e}):\n{}",
            sh.awk(),
            String::from_utf8_lossy(&out)
        )
    })
}

/// Every number is the kernel's: per forward its DNAT rules' packets
/// (summed over sources), its denied rule's (null for a public forward),
/// and the bytes of its sets' elements (summed over a port range); for the
/// site the byte-counting rules and FORWARD's policy; ENA's counters;
/// the health check's findings as it kept them.
#[test]
fn status_reports_the_kernel_s_counters() {
    each_awk("debian-mixed", |sh| {
        kernel(&sh, &[b"ens5"]);
        sh.write(
            "state/health",
            "state=ok\nchecked=1760000000\ncompared=1759999990\nlast_repair=1759990000\nlast_repair_reason=- nat NATBAKE-DNAT 1 rule 2\n",
        );
        let got = json(&sh);
        let forwards: Vec<Value> = got["forwards"].as_array().unwrap().clone();
        let row = |name: &str| {
            forwards
                .iter()
                .find(|f| f["name"] == name)
                .unwrap_or_else(|| panic!("no forward {name} in {got}"))
                .clone()
        };
        let expect = |name: &str, conn: u64, denied: Option<u64>, bin: u64, bout: u64| {
            let f = row(name);
            assert_eq!(
                (
                    f["connections"].as_u64(),
                    f["denied"].as_u64(),
                    f["bytes_in"].as_u64(),
                    f["bytes_out"].as_u64(),
                    f["bytes_shared"].as_bool()
                ),
                (Some(conn), denied, Some(bin), Some(bout), Some(false)),
                "[{:?}] {name}: {f}",
                sh.awk()
            );
        };
        expect(
            "oracle",
            2_147_483_658,
            Some(4_294_967_296),
            4_294_967_296,
            17,
        );
        expect("dns", 1, Some(0), 152, 3);
        expect("media", 0, Some(0), 0, 0);
        expect("web-range", 5, Some(7), 1120, 120);
        expect("status", 3_000_000_000, None, 705_032_704, 2_147_483_650);
        assert!(row("status")["denied"].is_null());
        assert_eq!(forwards.len(), 5);
        assert_eq!(got["forwarded_bytes"]["in"].as_u64(), Some(5_000_000_000));
        assert_eq!(got["forwarded_bytes"]["out"].as_u64(), Some(2_147_483_650));
        assert_eq!(got["forward_drops"]["packets"].as_u64(), Some(42));
        assert_eq!(got["forward_drops"]["bytes"].as_u64(), Some(9_999_999_999));
        assert_eq!(got["site"], "debian-mixed");
        assert_eq!(got["health"]["state"], "ok");
        assert_eq!(got["health"]["checked"].as_u64(), Some(1_760_000_000));
        assert_eq!(
            got["health"]["last_repair_reason"],
            "- nat NATBAKE-DNAT 1 rule 2"
        );
        assert!(got["health"]["last_failure"].is_null());
        let ena: Vec<(String, u64)> = got["ena"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["counter"].as_str().unwrap().to_owned(),
                    e["value"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            ena,
            [
                ("bw_in_allowance_exceeded".to_owned(), 4_294_967_297),
                ("pps_allowance_exceeded".to_owned(), 7)
            ],
            "[{:?}]",
            sh.awk()
        );
        // The table shows the same numbers.
        let table = String::from_utf8(status(&sh, "")).unwrap();
        assert!(
            table.lines().any(|l| l.starts_with("oracle ")
                && l.contains(" 2147483658 ")
                && l.contains(" 4294967296 ")),
            "[{:?}]\n{table}",
            sh.awk()
        );
        assert!(
            table.contains("forwarded bytes: 5000000000 in, 2147483650 out"),
            "{table}"
        );
    });
}

/// What natbake-status's JSON must decode to for `bytes`: each valid UTF-8
/// character as it is, each byte that does not start one U+FFFD.
fn decoded(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let len = match bytes[i] {
            0x00..=0x7f => 1,
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => 0,
        };
        match bytes
            .get(i..i + len.max(1))
            .and_then(|s| std::str::from_utf8(s).ok())
        {
            Some(ch) if len > 0 => {
                out.push_str(ch);
                i += len;
            }
            _ => {
                out.push('\u{fffd}');
                i += 1;
            }
        }
    }
    out
}

/// Any bytes in the health check's reasons (a rule comment can hold any
/// byte) and in an interface's name: the JSON is valid UTF-8, parses, and
/// gives back every valid character (controls escaped) and U+FFFD for
/// each other byte; the table shows controls and bad bytes as \xNN and
/// lets no terminal escape through.
#[test]
fn status_prints_valid_json_and_no_escapes_for_any_bytes() {
    let mut rng = Rng(0x5eed_0018);
    let hand_made: Vec<Vec<u8>> = vec![
        b"\x1b[2J\x1b]0;owned\x07 \"quoted\" back\\slash \xc2\x9b31m C1 CSI".to_vec(),
        b"\xff\xfe bad \xc0\xaf \xe0\x80\xaf overlong \xed\xa0\x80 surrogate \xf4\x90\x80\x80 past U+10FFFF \xe2\x82 cut".to_vec(),
        "\u{e9}t\u{e9} \u{1f600} \u{7f} \u{a0} \u{85} \u{2028}".as_bytes().to_vec(),
        b"nul \x00 byte, tab \t, cr \r end".to_vec(),
        (0u8..=255).filter(|&b| b != b'\n').collect(),
    ];
    each_awk("debian-mixed", |sh| {
        let mut reasons = hand_made.clone();
        for _ in 0..2 {
            reasons.push(
                (0..600)
                    .map(|_| (rng.next() % 256) as u8)
                    .filter(|&b| b != b'\n')
                    .collect(),
            );
        }
        // Interfaces named after two of the reasons (every byte, random
        // bytes): bytes the kernel takes in a name (no '/', ':', blank or
        // NUL; awk -v would read a backslash as an escape), not hidden
        // from a glob by a leading dot.
        let devs: Vec<Vec<u8>> = [&reasons[4], &reasons[5]]
            .into_iter()
            .map(|reason| {
                b"e".iter()
                    .chain(reason)
                    .copied()
                    .filter(|b| !b" /:\t\r\x00\x0b\x0c\\".contains(b))
                    .take(15)
                    .collect()
            })
            .collect();
        let mut unique: Vec<&[u8]> = devs.iter().map(Vec::as_slice).collect();
        unique.sort();
        unique.dedup();
        kernel(&sh, &unique);
        // Each reason as the check keeps it, then the status in JSON and
        // as a table, in one batch.
        let mut cases = Vec::new();
        for (i, reason) in reasons.iter().enumerate() {
            let mut state = b"state=failed\nlast_failure=1760000000\nlast_failure_reason=".to_vec();
            state.extend_from_slice(reason);
            state.extend_from_slice(b"\nlast_repair_reason=");
            state.extend_from_slice(reason);
            state.push(b'\n');
            sh.write(&format!("health-{i}"), &state);
            for (mode, args) in [("json", "--json"), ("table", "")] {
                cases.push((
                    format!(
                        "cp \"$SCRATCH/health-{i}\" \"$HEALTH_STATE\" || exit 1\n{} >\"$SCRATCH/{mode}-{i}\"",
                        status_call(&sh, args)
                    ),
                    Vec::new(),
                ));
            }
        }
        for ran in sh.run_each(&cases) {
            assert_eq!(ran.code, Some(0), "{}", ran.explain());
        }
        for (i, reason) in reasons.iter().enumerate() {
            let raw = fs::read(sh.path(&format!("json-{i}"))).unwrap();
            let text = std::str::from_utf8(&raw).unwrap_or_else(|e| {
                panic!(
                    "[{:?}] not UTF-8 ({e}): {}",
                    sh.awk(),
                    String::from_utf8_lossy(&raw)
                )
            });
            assert!(
                !text.trim_end().chars().any(|c| c.is_control()),
                "[{:?}] a raw control character in the JSON:\n{text:?}",
                sh.awk()
            );
            let got: Value = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("[{:?}] not JSON ({e}):\n{text}", sh.awk()));
            let want = decoded(reason);
            assert_eq!(
                got["health"]["last_failure_reason"].as_str(),
                Some(want.as_str()),
                "[{:?}] {reason:?}",
                sh.awk()
            );
            assert_eq!(
                got["health"]["last_repair_reason"].as_str(),
                Some(want.as_str())
            );
            let names: Vec<&str> = got["ena"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["interface"].as_str().unwrap())
                .collect();
            assert_eq!(
                names.len(),
                2 * unique.len(),
                "[{:?}] {:?}",
                sh.awk(),
                got["ena"]
            );
            for dev in &devs {
                assert!(
                    names.contains(&decoded(dev).as_str()),
                    "[{:?}] {:?} not among {names:?}",
                    sh.awk(),
                    decoded(dev)
                );
            }

            let table = fs::read(sh.path(&format!("table-{i}"))).unwrap();
            let table = std::str::from_utf8(&table).unwrap_or_else(|e| {
                panic!(
                    "[{:?}] the table is not UTF-8 ({e}): {}",
                    sh.awk(),
                    String::from_utf8_lossy(&table)
                )
            });
            assert!(
                !table.chars().any(|c| c.is_control() && c != '\n'),
                "[{:?}] a raw control character in the table:\n{table:?}",
                sh.awk()
            );
        }
        // The table spells what it cannot show.
        sh.write(
            "state/health",
            b"state=failed\nlast_failure=1760000000\nlast_failure_reason=a\x1b[31mb\xffc\xc3\xa9\n",
        );
        let table = String::from_utf8(status(&sh, "")).unwrap();
        assert!(
            table.contains("(a\\x1b[31mb\\xffc\u{e9})"),
            "[{:?}]\n{table}",
            sh.awk()
        );
    });
}

/// What the health check keeps (`set_state` in natbake-health.sh) is what
/// natbake-status shows: one line per finding whatever its newlines, later
/// findings replacing earlier ones of the same name and keeping the others.
#[test]
fn the_check_s_findings_reach_the_status_whole() {
    for awk in Awk::ALL {
        let sh = Shell::new("debian-mixed", awk).load("natbake-health.sh");
        kernel(&sh, &[b"ens5"]);
        let ran = sh.run(
            "set_state state=failed checked=1760000000 last_failure=1760000000 \
             \"last_failure_reason=$(printf -- '- nat NATBAKE-DNAT 1 rule 2\\n+ nat \\033[31mrogue')\" || exit 1\n\
             set_state state=ok checked=1760000060 || exit 1\ncat \"$HEALTH_STATE\"",
        );
        let mut kept = ran.lines(0);
        kept.sort();
        assert_eq!(
            kept,
            [
                "checked=1760000060",
                "last_failure=1760000000",
                "last_failure_reason=- nat NATBAKE-DNAT 1 rule 2; + nat \u{1b}[31mrogue",
                "state=ok",
            ],
            "[{awk:?}]"
        );
        let got = json(&sh);
        assert_eq!(got["health"]["state"], "ok");
        assert_eq!(got["health"]["checked"].as_u64(), Some(1_760_000_060));
        assert_eq!(
            got["health"]["last_failure_reason"],
            "- nat NATBAKE-DNAT 1 rule 2; + nat \u{1b}[31mrogue",
            "[{awk:?}]"
        );
    }
}

/// On a standby site (site.conf's standby=yes) natbake-status hands its
/// report to `natbake-standby status no|yes`, which prints it with the
/// pair's part (natbake-standby's own test checks that part); on any other
/// site it prints the report itself (the tests above).
#[test]
fn a_standby_site_s_report_goes_through_natbake_standby() {
    let sh = Shell::new("debian-mixed", Awk::Mawk);
    kernel(&sh, &[b"ens5"]);
    // The site's library with load_site_conf saying standby=yes; the
    // installed natbake-standby a stand-in that records how it was called
    // and adds a line (or a member) to what it was given.
    sh.write(
        "lib-standby.sh",
        ". /usr/local/lib/natbake/natbake-lib.sh\n\
         eval \"real_$(declare -f load_site_conf)\"\n\
         function load_site_conf { real_load_site_conf \"$@\" && STANDBY=yes; }\n",
    );
    let run = |args: &str| {
        let call = format!(
            ". '{}'\n\
             function /usr/local/sbin/natbake-standby {{ echo \"$*\" >>\"$SCRATCH/standby-calls\"; \
             if [ \"$2\" = yes ]; then r=$(cat); printf '%s,\"standby\":{{\"role\":\"active\"}}}}\\n' \"${{r%\\}}}}\"; \
             else cat; echo 'standby role: active'; fi; }}\n\
             . \"$SITE_DIR/natbake-status.sh\" && LIB=$SCRATCH/lib-standby.sh && main {args} >\"$SCRATCH/stdout.raw\"",
            helpers().join("status_env.sh").display()
        );
        let ran = sh.run(&call);
        assert_eq!(ran.code, Some(0), "{}", ran.explain());
        String::from_utf8(fs::read(sh.path("stdout.raw")).unwrap()).unwrap()
    };
    let table = run("");
    assert!(table.starts_with("natbake site "), "{table}");
    assert!(table.ends_with("standby role: active\n"), "{table}");
    let text = run("--json");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["standby"]["role"], "active", "{text}");
    assert!(v["forwards"].is_array(), "{text}");
    assert_eq!(sh.read("standby-calls"), "status no\nstatus yes\n");
}
