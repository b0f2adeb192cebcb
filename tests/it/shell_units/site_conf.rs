//! The reader of the site's settings (`load_site_conf` in natbake-lib.sh):
//! the rendered `site.conf` loads; anything else, however it is made, is
//! refused naming the file and line, sets nothing, and runs nothing (a
//! canary file that any executed payload would create stays absent).

use std::fs;

use super::harness::{Awk, Shell, each_awk, sha256_hex};
use crate::manifest::Manifest;

/// Payloads that create `$SCRATCH/canary` if anything runs them.
const PAYLOADS: &[&str] = &[
    "$(touch canary)",
    "`touch canary`",
    ";touch canary",
    "| touch canary",
    "&& touch canary #",
    "'$(touch canary)'",
    "\"$(touch canary)\"",
    "${IFS}$(touch${IFS}canary)",
];

/// The lines that load file `name` of the scratch folder with `SITE`,
/// `DESCRIPTION` and `FORWARD_COUNT` set beforehand, and print "loaded
/// SITE|DESCRIPTION|FORWARD_COUNT" or "refused <reason>|SITE|...", then
/// " CANARY" if the canary file appeared.
fn loading(name: &str) -> String {
    format!(
        "rm -f canary; SITE=before DESCRIPTION=before FORWARD_COUNT=before\n\
         if load_site_conf \"$SCRATCH/{name}\"; then printf 'loaded %s|%s|%s' \"$SITE\" \"$DESCRIPTION\" \"$FORWARD_COUNT\";\n\
         else printf 'refused %s|%s|%s|%s' \"$SITE_CONF_ERROR\" \"$SITE\" \"$DESCRIPTION\" \"$FORWARD_COUNT\"; fi\n\
         [ ! -e canary ] || printf ' CANARY'"
    )
}

/// Loads each of `files` (written to the scratch folder) in one batch:
/// what each printed, and whether its canary appeared.
fn load_each(sh: &Shell, files: &[Vec<u8>]) -> Vec<(String, bool)> {
    let cases: Vec<(String, Vec<u8>)> = files
        .iter()
        .enumerate()
        .map(|(i, text)| {
            sh.write(&format!("site-{i}.conf"), text);
            (loading(&format!("site-{i}.conf")), Vec::new())
        })
        .collect();
    sh.run_each(&cases)
        .into_iter()
        .map(|ran| {
            assert_eq!(ran.code, Some(0), "{}", ran.explain());
            match ran.stdout.strip_suffix(" CANARY") {
                Some(out) => (out.to_owned(), true),
                None => (ran.stdout, false),
            }
        })
        .collect()
}

fn load(sh: &Shell, name: &str) -> (String, bool) {
    let ran = sh.run(&loading(name));
    assert_eq!(ran.code, Some(0), "{}", ran.explain());
    match ran.stdout.strip_suffix(" CANARY") {
        Some(out) => (out.to_owned(), true),
        None => (ran.stdout, false),
    }
}

fn base(sh: &Shell) -> String {
    fs::read_to_string(sh.site_dir().join("site.conf")).unwrap()
}

/// Every fixture's rendered site.conf loads, and gives the site, the
/// ruleset's digest and the number of forwards the other artifacts have.
#[test]
fn every_rendered_site_conf_loads() {
    for fixture in [
        "debian-mixed",
        "metrics-only",
        "failover-health",
        "no-egress-legacy",
        "many-forwards",
        "hostile-text",
    ] {
        for awk in Awk::ALL {
            let sh = Shell::new(fixture, awk);
            let manifest = Manifest::load(sh.site_dir());
            let rules = sha256_hex(&fs::read(sh.site_dir().join("rules.v4")).unwrap());
            let ran = sh.run("load_site_conf \"$SITE_DIR/site.conf\" || { echo \"$SITE_CONF_ERROR\"; exit 1; }\nprintf '%s\\n' \"$SITE\" \"$RULES_SHA256\" \"$FORWARD_COUNT\"");
            assert_eq!(
                ran.lines(0),
                [
                    manifest.site.as_str(),
                    rules.as_str(),
                    &manifest.forwards.len().to_string()
                ],
                "[{awk:?}] {fixture}"
            );
        }
    }
}

/// The file's text arrives as text: quotes, `$(...)`, backticks and
/// semicolons in the description are kept as they are and never run.
/// Comments, blank lines and a last line without its newline are fine.
#[test]
fn text_values_are_data_never_code() {
    each_awk("debian-mixed", |sh| {
        let base = base(&sh);
        let description = base
            .lines()
            .find(|l| l.starts_with("description="))
            .expect("debian-mixed has a description")
            .to_owned();
        let texts: Vec<String> = PAYLOADS
            .iter()
            .map(|payload| format!("it's \"quoted\" {payload} \\ back\\slash"))
            .collect();
        let files: Vec<Vec<u8>> = texts
            .iter()
            .map(|text| {
                base.replace(&description, &format!("description={text}"))
                    .into_bytes()
            })
            .collect();
        for ((got, canary), text) in load_each(&sh, &files).into_iter().zip(&texts) {
            assert!(!canary, "[{:?}] {text} ran", sh.awk());
            assert_eq!(
                got,
                format!("loaded debian-mixed|{text}|5"),
                "[{:?}] {text}",
                sh.awk()
            );
        }
        let trimmed = base.trim_end_matches('\n');
        sh.write("site.conf", format!("# a comment\n\n{trimmed}"));
        assert_eq!(
            load(&sh, "site.conf").0,
            "loaded debian-mixed|Mixed forwards on Debian 12|5"
        );
    });
}

/// Each way a file can be wrong is refused, naming the file (and the line,
/// where there is one), with nothing set and nothing run: names natbake
/// does not know (the shell's own among them), a name twice, values of the
/// wrong kind, control characters (NUL, ESC, a CR from CRLF line ends),
/// lines that are not NAME=VALUE, a missing setting, a forward without
/// its summary, an overlong line.
#[test]
fn hostile_site_conf_is_refused_and_runs_nothing() {
    each_awk("debian-mixed", |sh| {
        let base = base(&sh);
        let first_forward = base
            .lines()
            .find(|l| l.starts_with("forward="))
            .unwrap()
            .to_owned();
        let first_summary = base
            .lines()
            .find(|l| l.starts_with("summary="))
            .unwrap()
            .to_owned();
        let line_of = |text: &str, start: &str| {
            text.lines()
                .position(|l| l.starts_with(start))
                .map(|i| i + 1)
                .unwrap()
        };
        let set = |key: &str, value: &str| {
            let old = base
                .lines()
                .find(|l| l.starts_with(&format!("{key}=")))
                .unwrap_or_else(|| panic!("no {key} in\n{base}"));
            base.replacen(old, &format!("{key}={value}"), 1)
                .into_bytes()
        };
        let mut cases: Vec<(String, Vec<u8>, Option<usize>)> = vec![
            (
                "an unknown name".into(),
                format!("{base}sitee=x\n").into_bytes(),
                Some(base.lines().count() + 1),
            ),
            (
                "a name in capitals".into(),
                format!("SITE=x\n{base}").into_bytes(),
                Some(1),
            ),
            (
                "PATH".into(),
                format!("PATH=/tmp\n{base}").into_bytes(),
                Some(1),
            ),
            (
                "BASH_ENV".into(),
                format!("BASH_ENV=/tmp/x\n{base}").into_bytes(),
                Some(1),
            ),
            ("IFS".into(), format!("IFS=x\n{base}").into_bytes(), Some(1)),
            (
                "a blank before the name".into(),
                format!(" {base}").into_bytes(),
                Some(1),
            ),
            (
                "a blank before =".into(),
                base.replacen("site=", "site =", 1).into_bytes(),
                Some(line_of(&base, "site=")),
            ),
            (
                "not NAME=VALUE".into(),
                format!("{base}site\n").into_bytes(),
                Some(base.lines().count() + 1),
            ),
            (
                "a name twice".into(),
                format!("{base}site=other\n").into_bytes(),
                Some(base.lines().count() + 1),
            ),
            (
                "the site in capitals".into(),
                set("site", "Debian-Mixed"),
                None,
            ),
            (
                "the site with a blank".into(),
                set("site", "debian mixed"),
                None,
            ),
            (
                "a digest in capitals".into(),
                set("rules_sha256", &"A".repeat(64)),
                None,
            ),
            (
                "a digest cut short".into(),
                set("rules_sha256", &"a".repeat(63)),
                None,
            ),
            ("yes/no as true".into(), set("systemd", "true"), None),
            ("a negative count".into(), set("ipset_elements", "-1"), None),
            (
                "a count in exponent form".into(),
                set("ipset_elements", "1e3"),
                None,
            ),
            (
                "a count past its bound".into(),
                set("ipset_elements", "99999999999999999999"),
                None,
            ),
            (
                "a network that is not one".into(),
                set("vpc_cidrs", "10.0.0.0/33"),
                None,
            ),
            (
                "a network and a command".into(),
                set("vpc_cidrs", "10.0.0.0/16;touch canary"),
                None,
            ),
            (
                "a forward's range backwards".into(),
                base.replacen(
                    &first_forward,
                    "forward=oracle 10.0.1.25 tcp 1532 1531 own",
                    1,
                )
                .into_bytes(),
                None,
            ),
            (
                "a forward without its summary".into(),
                base.replacen(&format!("{first_summary}\n"), "", 1)
                    .into_bytes(),
                None,
            ),
            (
                "a summary without its forward".into(),
                base.replacen(&format!("{first_forward}\n"), "", 1)
                    .into_bytes(),
                None,
            ),
            (
                "the site missing".into(),
                base.lines()
                    .filter(|l| !l.starts_with("site="))
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
                    .into_bytes(),
                None,
            ),
            ("an empty file".into(), Vec::new(), None),
            (
                "a failover setting without failover".into(),
                format!("{base}attach_timeout=60\n").into_bytes(),
                None,
            ),
            (
                "CRLF line ends".into(),
                base.replace('\n', "\r\n").into_bytes(),
                Some(line_of(&base, "site=")),
            ),
        ];
        for (what, byte) in [
            ("NUL", 0u8),
            ("ESC", 0x1b),
            ("CR", b'\r'),
            ("BEL", 7),
            ("DEL", 0x7f),
        ] {
            let mut text = set("description", "before");
            let at = text.windows(6).position(|w| w == b"before").unwrap() + 3;
            text.insert(at, byte);
            cases.push((
                format!("a {what} in the description"),
                text,
                Some(line_of(&base, "description=")),
            ));
        }
        for payload in PAYLOADS {
            cases.push((format!("{payload} as the site"), set("site", payload), None));
            cases.push((
                format!("{payload} as a count"),
                set("ipset_elements", payload),
                None,
            ));
            cases.push((
                format!("{payload} as a name"),
                format!("{payload}=1\n{base}").into_bytes(),
                Some(1),
            ));
        }
        cases.push((
            "an overlong line".into(),
            set("description", &"x".repeat(200_000)),
            None,
        ));
        let files: Vec<Vec<u8>> = cases.iter().map(|(_, text, _)| text.clone()).collect();
        let outcomes = load_each(&sh, &files);
        for (i, ((what, _, line), (got, canary))) in cases.into_iter().zip(outcomes).enumerate() {
            assert!(!canary, "[{:?}] {what}: something ran", sh.awk());
            if what == "an overlong line" && got.starts_with("loaded ") {
                // Kept whole, if kept at all.
                assert_eq!(
                    got,
                    format!("loaded debian-mixed|{}|5", "x".repeat(200_000)),
                    "[{:?}]",
                    sh.awk()
                );
                continue;
            }
            let path = sh.path(&format!("site-{i}.conf")).display().to_string();
            assert!(
                got.starts_with(&format!("refused {path}"))
                    && got.ends_with("|before|before|before"),
                "[{:?}] {what}: {}",
                sh.awk(),
                got.escape_debug()
            );
            if let Some(line) = line {
                assert!(
                    got.contains(&format!("line {line}:")),
                    "[{:?}] {what}: {}",
                    sh.awk(),
                    got.escape_debug()
                );
            }
        }
        // A file that is not there, or not a file.
        let (got, _) = load(&sh, "missing.conf");
        assert!(
            got.starts_with("refused ") && got.contains("missing.conf"),
            "{got}"
        );
    });
}
