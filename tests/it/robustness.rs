//! No input makes natbake panic: thousands of mutations of the fixture
//! specs go through parsing, validation and (when they still validate)
//! rendering. Every spec that validates renders artifacts that their
//! consumers accept, for random specs with text from all of Unicode. Specs
//! at the size limits validate fast. Deterministic, so a failure
//! reproduces.

use crate::fixtures::{all_valid_specs, invalid_specs, repo};
use crate::specgen::{self, Rng};
use crate::support::{require_root, run};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SIGNIFICANT: &[&[u8]] = &[
    b"[",
    b"]",
    b"{",
    b"}",
    b":",
    b",",
    b"&a ",
    b"*a",
    b"!!str ",
    b"|",
    b">",
    b"'",
    b"\"",
    b"#",
    b"- ",
    b"\n",
    b"\t",
    b"\0",
    b"\xff",
    b"  ",
    b"0",
    b"65536",
    b"-1",
    b"/33",
    b"0.0.0.0/0",
    b"~",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                let s = SIGNIFICANT[rng.below(SIGNIFICANT.len())];
                out.splice(at..at, s.iter().copied());
            }
            2 => out.truncate(at),
            3 if !out.is_empty() => {
                let end = (at + rng.below(40)).min(out.len());
                let piece = out[at.min(end)..end].to_vec();
                let to = rng.below(out.len() + 1);
                out.splice(to..to, piece);
            }
            _ => {
                let end = (at + rng.below(20)).min(out.len());
                out.drain(at.min(end)..end);
            }
        }
    }
    out
}

#[test]
fn mutated_specs_never_panic() {
    let templates = natbake::render::Templates::load(None).unwrap();
    let seeds: Vec<Vec<u8>> = all_valid_specs()
        .iter()
        .chain(invalid_specs().iter())
        .map(|s| std::fs::read(repo().join(&s.path)).unwrap())
        .filter(|b| b.len() < 20_000)
        .collect();
    let mut rng = Rng(0x5eed_2026_1126);
    let (mut valid, mut invalid) = (0, 0);
    for round in 0..3_000 {
        let seed = &seeds[round % seeds.len()];
        let input = mutate(&mut rng, seed);
        match natbake::validate::parse(Path::new("fuzz.yaml"), &input) {
            Ok(site) => {
                valid += 1;
                natbake::render::render_site(&templates, &site).unwrap();
            }
            Err(e) => {
                invalid += 1;
                assert!(!e.diagnostics().is_empty(), "an error with nothing to say");
            }
        }
    }
    // Both paths were exercised, or the mutations say nothing.
    assert!(
        valid > 50 && invalid > 1_000,
        "valid {valid}, invalid {invalid}"
    );
}

/// Random valid specs, rendered, and every artifact whose text depends on
/// the spec's free text through its consumer: the user data through PyYAML
/// as cloud-init loads it, the scripts through shellcheck and `bash -n`,
/// the security group rules through botocore, the Packer templates through
/// `packer fmt -check`, the stacks through cfn-lint, and (as root) the
/// rulesets through a real
/// `iptables-restore`. The consumers run once over all
/// cases, so 200 cases take seconds (shellcheck, at about 0.1 s a
/// script, is most of it).
#[test]
fn random_valid_specs_render_what_every_consumer_accepts() {
    const CASES: usize = 200;
    let templates = natbake::render::Templates::load(None).unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x0dd_ba11_2026_0401);
    let mut sites: Vec<PathBuf> = Vec::new();
    let mut refused = Vec::new();
    for case in 0..CASES {
        let yaml = specgen::spec(&mut rng, case);
        let site = match natbake::validate::parse(Path::new("random.yaml"), yaml.as_bytes()) {
            Ok(site) => site,
            Err(e) => {
                let text_only = e.diagnostics().iter().all(|d| {
                    d.path.ends_with("description") && d.message.starts_with("text contains")
                });
                assert!(text_only, "case {case} should be valid:\n{e}\n{yaml}");
                refused.push(case);
                continue;
            }
        };
        let rendered = natbake::render::render_site(&templates, &site)
            .unwrap_or_else(|e| panic!("case {case}: {e:#}\n{yaml}"));
        let dir = natbake::output::OutputDir::open(out.path()).unwrap();
        dir.commit(dir.stage(&rendered).unwrap()).unwrap();
        std::fs::write(out.path().join(format!("p{case}.yaml")), &yaml).unwrap();
        sites.push(out.path().join(format!("p{case}")));
    }
    // Some specs carry characters validation refuses, and most do not.
    assert!(
        !refused.is_empty() && sites.len() > CASES * 2 / 3,
        "{} valid, refused: {refused:?}",
        sites.len()
    );

    let helper = |name: &str| repo().join("tests/it").join(name);
    // Debian's interpreter and PyYAML, as cloud-init on the instance uses.
    run(Command::new("/usr/bin/python3")
        .arg(helper("check_user_data.py"))
        .args(&sites));
    run(Command::new("/usr/bin/python3")
        .arg(helper("check_security_group.py"))
        .args(&sites));

    // Scripts that differ only where the spec has nothing to say are
    // checked once (the instance's scripts are the same for every site:
    // the validators check their sources; provision.sh is rendered).
    let mut scripts: Vec<PathBuf> = Vec::new();
    let mut seen = BTreeSet::new();
    for site in &sites {
        let path = site.join("provision.sh");
        if seen.insert(std::fs::read(&path).unwrap()) {
            scripts.push(path);
        }
    }
    // Two shellcheck processes, one per half, on a two-core machine.
    let (a, b) = scripts.split_at(scripts.len() / 2);
    std::thread::scope(|s| {
        for half in [a, b] {
            s.spawn(move || run(Command::new("shellcheck").args(["-f", "gcc"]).args(half)));
        }
    });
    run(Command::new("sh")
        .args(["-c", "for f; do bash -n \"$f\" || exit 1; done", "sh"])
        .args(&scripts));

    // The Packer template, gathered in one folder so that one `packer fmt`
    // parses them all (HCL quoting, `${`, `%{` and Go's `{{`).
    let hcl = out.path().join("all-hcl");
    std::fs::create_dir(&hcl).unwrap();
    for site in &sites {
        let name = site.file_name().unwrap().to_string_lossy();
        std::fs::copy(
            site.join("nat-ami.pkr.hcl"),
            hcl.join(format!("{name}.pkr.hcl")),
        )
        .unwrap();
    }
    run(Command::new("packer")
        .env("CHECKPOINT_DISABLE", "1")
        .args(["fmt", "-check"])
        .arg(&hcl));

    // The stacks, in one cfn-lint call: the description (`${…}` would be
    // a substitution outside `Fn::Sub`, E1029) and the rules' text.
    crate::support::assert_cfn_lint_clean(sites.iter().map(|s| s.join("stack.cfn.yaml")));

    if require_root("loading the random rulesets with iptables-restore in a network namespace") {
        run(Command::new("unshare")
            .args([
                "-n",
                "sh",
                "-c",
                // Each site's sets first, as configure-pat.sh loads them;
                // the previous site's rules and sets go before (the nat
                // table's too: its rules match the denied sets).
                "for d; do iptables -F && iptables -X && iptables -t nat -F && \
                 iptables -t nat -X && ipset destroy && \
                 ipset restore <\"$d/ipsets.v4\" && iptables-restore \"$d/rules.v4\" || \
                 { echo \"$d\"; exit 1; }; done",
                "sh",
            ])
            .args(&sites));
    }
}

/// The fastest of three runs, which is the least disturbed by whatever
/// else the machine does.
fn best_of_three(f: impl Fn()) -> Duration {
    (0..3)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap()
}

/// A spec with `forwards` forwards of `sources` sources each, in a VPC of
/// 50 blocks.
fn big_spec(forwards: usize, sources: usize) -> String {
    let mut y = String::from("version: 1\nsite: big\nvpc_cidrs: [");
    let blocks: Vec<String> = (0..natbake::validate::MAX_VPC_CIDRS)
        .map(|i| format!("10.{i}.0.0/16"))
        .collect();
    y.push_str(&blocks.join(", "));
    y.push_str("]\nforwards:\n");
    for f in 0..forwards {
        y.push_str(&format!(
            "  - {{name: f{f}, port: {}, to: 10.{}.0.9, from: [",
            1024 + f,
            f % 50
        ));
        for s in 0..sources {
            let n = (f * sources + s) as u32;
            y.push_str(&format!(
                "{}/32, ",
                std::net::Ipv4Addr::from(0xcb00_0000 | n)
            ));
        }
        y.truncate(y.len() - 2);
        y.push_str("]}\n");
    }
    y
}

/// A spec at the caps (50 VPC blocks, forwards with 1,000 sources each,
/// about 5 MB) validates in seconds, also in a debug build on a busy
/// machine; the bound is ten times what that takes.
#[test]
fn a_spec_at_the_caps_validates_quickly() {
    let yaml = big_spec(300, natbake::validate::MAX_SOURCES);
    let took = best_of_three(|| {
        let site = natbake::validate::parse(Path::new("big.yaml"), yaml.as_bytes()).unwrap();
        assert_eq!(site.vpc_cidrs.len(), natbake::validate::MAX_VPC_CIDRS);
        assert_eq!(
            site.forwards.iter().map(|f| f.from.len()).sum::<usize>(),
            300_000
        );
    });
    eprintln!("{} bytes validated in {took:?}", yaml.len());
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

/// A spec far past the caps (the fuzzer's 13 MB spec, one forward with a
/// million sources, took six minutes) is refused within seconds, with the
/// cap named.
#[test]
fn a_spec_far_past_the_caps_is_refused_quickly() {
    let yaml = big_spec(1, 800_000);
    assert!(
        yaml.len() > 12_000_000 && yaml.len() < 16 << 20,
        "{}",
        yaml.len()
    );
    let start = Instant::now();
    let err = natbake::validate::parse(Path::new("huge.yaml"), yaml.as_bytes()).unwrap_err();
    let took = start.elapsed();
    let messages: Vec<&str> = err
        .diagnostics()
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert!(
        messages.len() == 1 && messages[0].contains("at most 1000 sources"),
        "{messages:?}"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
}
