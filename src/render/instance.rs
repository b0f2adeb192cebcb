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
