//! The scripts the instance runs: fixed code, the same bytes for every
//! site.
//!
//! Their source is `instance/*.sh` in natbake's repository, real shell
//! files that shellcheck and shfmt read as they are, embedded here. What
//! natbake installs is that source without its explanatory comment lines
//! ([`shell::strip_comments`]), with one line naming natbake's version put
//! after the first: made once per process, since every site gets the same.
//! What differs between sites is data in `site.conf` ([`super::site_conf`]).

use super::artifact;
use super::shell;
use std::sync::OnceLock;

/// One embedded script: the artifact it is, and its source.
pub struct Script {
    pub artifact: &'static str,
    pub source: &'static str,
}

/// Embeds `instance/<name>`.
macro_rules! script {
    ($artifact:expr, $file:literal) => {
        Script {
            artifact: $artifact,
            source: include_str!(concat!("../../instance/", $file)),
        }
    };
}

/// Every instance script, in the artifact table's order.
pub const SCRIPTS: &[Script] = &[
    script!(artifact::SCRIPT, "configure-pat.sh"),
    script!(artifact::LIB, "natbake-lib.sh"),
    script!(artifact::AWS_LIB, "natbake-aws.sh"),
    script!(artifact::FAILOVER_LIB, "natbake-failover.sh"),
    script!(artifact::HEALTH, "natbake-health.sh"),
    script!(artifact::STATUS, "natbake-status.sh"),
    script!(artifact::METRICS_LIB, "natbake-metrics.sh"),
];

/// The source of the script of artifact `name`, comments and all.
///
/// # Panics
///
/// If `name` is not an instance script.
pub fn source(name: &str) -> &'static str {
    SCRIPTS
        .iter()
        .find(|s| s.artifact == name)
        .unwrap_or_else(|| panic!("`{name}` is not an instance script"))
        .source
}

/// The bytes natbake installs for the script of artifact `name`.
///
/// # Panics
///
/// If `name` is not an instance script.
pub fn installed(name: &str) -> &'static [u8] {
    static MADE: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let made = MADE.get_or_init(|| SCRIPTS.iter().map(|s| install_bytes(s.source)).collect());
    let n = SCRIPTS
        .iter()
        .position(|s| s.artifact == name)
        .unwrap_or_else(|| panic!("`{name}` is not an instance script"));
    &made[n]
}

/// The line after the shebang that says which natbake installed a script.
pub fn version_line() -> String {
    format!("# natbake {}\n", env!("CARGO_PKG_VERSION"))
}

/// `source` stripped of its comment lines, with the version line second.
fn install_bytes(source: &str) -> Vec<u8> {
    let stripped = shell::strip_comments(source);
    let (first, rest) = stripped.split_at(stripped.find('\n').map_or(stripped.len(), |n| n + 1));
    format!("{first}{}{rest}", version_line()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{install_path, ipsets, rules, stack, view};

    /// The value of the first `NAME=` assignment at the start of a line
    /// of the script of artifact `script`, quotes removed.
    fn assigned(script: &str, name: &str) -> String {
        let text = source(script);
        let prefix = format!("{name}=");
        let line = text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{script} assigns no {name}"));
        line[prefix.len()..].trim_matches('\'').to_string()
    }

    /// One definition for every name the scripts share with the rest of
    /// natbake: the paths in the artifact table, the sets' names, the
    /// ruleset's comments and chains, the metrics and their units, the
    /// tag of the floating interface. The scripts carry them as constants
    /// (the same on every site, so not in site.conf); this is the
    /// contract that keeps each equal to natbake's own.
    #[test]
    fn the_scripts_names_are_natbakes_own() {
        use artifact::*;
        for (name, artifact) in [
            ("SITE_CONF", SITE_CONF),
            ("RULES", RULES),
            ("IPSETS", IPSETS),
            ("SYSCTL_CONF", SYSCTL),
            ("SCRIPT", SCRIPT),
            ("AWS_LIB", AWS_LIB),
            ("FAILOVER_LIB", FAILOVER_LIB),
            ("METRICS_LIB", METRICS_LIB),
        ] {
            assert_eq!(assigned(LIB, name), install_path(artifact), "{name}");
        }
        for script in [SCRIPT, HEALTH, STATUS] {
            assert_eq!(assigned(script, "LIB"), install_path(LIB), "{script}");
        }
        assert_eq!(assigned(LIB, "STATE_DIR"), STATE_DIR);
        assert_eq!(assigned(LIB, "IPSET_IN"), ipsets::SET_IN);
        assert_eq!(assigned(LIB, "IPSET_OUT"), ipsets::SET_OUT);
        assert_eq!(assigned(LIB, "FORWARDED_IN"), rules::FORWARDED_IN);
        assert_eq!(assigned(LIB, "FORWARDED_OUT"), rules::FORWARDED_OUT);
        assert_eq!(
            assigned(LIB, "CONNTRACK_LIMIT_PERCENT"),
            view::CONNTRACK_LIMIT_PERCENT.to_string()
        );
        assert_eq!(
            assigned(FAILOVER_LIB, "POST_ATTACH"),
            view::POST_ATTACH.to_string()
        );
        assert_eq!(
            assigned(METRICS_LIB, "METRICS_NAMESPACE"),
            crate::metrics::NAMESPACE
        );
        assert_eq!(
            assigned(METRICS_LIB, "METRICS_PER_REQUEST"),
            crate::metrics::PER_REQUEST.to_string()
        );
        let ena: Vec<String> = crate::metrics::ENA_METRICS
            .iter()
            .map(|(counter, metric)| format!("{counter}={metric}"))
            .collect();
        assert_eq!(assigned(METRICS_LIB, "ENA_METRICS"), ena.join(" "));
        // Every metric natbake prices is published with its unit, and no
        // other.
        let metrics = source(METRICS_LIB);
        let mut published = std::collections::BTreeSet::new();
        for (i, _) in metrics.match_indices("datum(\"") {
            let rest = &metrics[i + 7..];
            let mut parts = rest.split('"');
            let (name, unit) = (parts.next().unwrap(), parts.nth(1).unwrap());
            published.insert((name.to_string(), unit.to_string()));
        }
        let priced: std::collections::BTreeSet<(String, String)> = crate::metrics::SITE_METRICS
            .iter()
            .map(|(n, u)| (n.to_string(), u.to_string()))
            .collect();
        assert_eq!(published, priced);
        for name in crate::metrics::FORWARD_METRICS {
            assert!(
                metrics.contains(&format!("datum(\"{name}\", \"Count\", delta(\"")),
                "{name}"
            );
        }
        // The floating interface is found by the stack's tag.
        assert!(source(AWS_LIB).contains(&format!("Name=tag:{}", stack::SITE_TAG)));
        // The chains the scripts name are chains the ruleset makes.
        let site = crate::validate::parse(
            std::path::Path::new("t.yaml"),
            b"version: 1\nsite: s\nvpc_cidrs: [10.0.0.0/16]\nforwards:\n  - name: a\n    port: 8080\n    to: 10.0.0.5:80\n    from: [192.0.2.0/24]\n",
        )
        .unwrap();
        let rendered: String = rules::tables(&site)
            .iter()
            .flat_map(|t| t.chains.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        for s in SCRIPTS {
            for (i, _) in s.source.match_indices("NATBAKE-") {
                let chain: String = s.source[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '-')
                    .collect();
                if chain.len() > "NATBAKE-".len() && !chain.ends_with('-') {
                    assert!(
                        rendered.split(' ').any(|c| c == chain),
                        "{} names {chain}, which the ruleset does not make",
                        s.artifact
                    );
                }
            }
        }
    }

    #[test]
    fn every_script_is_a_file_of_instance_and_each_file_a_script() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("instance");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut names: Vec<String> = SCRIPTS.iter().map(|s| s.artifact.to_string()).collect();
        names.sort();
        assert_eq!(files, names);
        for s in SCRIPTS {
            assert_eq!(
                std::fs::read_to_string(dir.join(s.artifact)).unwrap(),
                s.source
            );
        }
    }

    #[test]
    fn installed_scripts_carry_the_version_second_and_lose_comments() {
        for s in SCRIPTS {
            let text = std::str::from_utf8(installed(s.artifact)).unwrap();
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some("#!/bin/bash"), "{}", s.artifact);
            assert_eq!(
                lines.next().map(|l| format!("{l}\n")),
                Some(version_line()),
                "{}",
                s.artifact
            );
            assert!(text.len() < s.source.len(), "{}", s.artifact);
        }
    }
}
