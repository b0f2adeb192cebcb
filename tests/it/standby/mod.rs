//! The warm standby pair (`failover.standby`): its configurations through
//! keepalived's and conntrackd's own checks, and the namespace lab where
//! two instances run them and a connection survives the active's death.

mod configs;
mod lab;
mod lab_aws;

use crate::fixtures::{Spec, repo, valid_specs};
use std::path::PathBuf;

/// Valid fixtures with a standby.
pub fn standby_specs() -> Vec<Spec> {
    let specs: Vec<Spec> = valid_specs()
        .into_iter()
        .filter(|s| {
            std::fs::read_to_string(&s.path)
                .unwrap()
                .contains("standby: true")
        })
        .collect();
    assert!(!specs.is_empty(), "no valid fixture has a standby");
    specs
}

/// A helper script of these tests, by name.
pub fn node_script(name: &str) -> PathBuf {
    repo().join("tests/it/standby").join(name)
}
