//! natbake's integration tests, in one test binary.
//!
//! Tests that need root (network namespaces) skip with a loud message when
//! not root, and fail instead when NATBAKE_REQUIRE_ROOT_TESTS=1, which the
//! README's test command and CI set.

mod boot;
mod cli;
mod doc_links;
mod failover;
mod fixtures;
mod health;
mod image;
mod legacy;
mod manifest;
mod net;
mod netlab;
mod nlb;
mod output;
mod packages;
mod packer;
mod plan;
mod robustness;
mod site_conf;
mod snapshots;
mod specgen;
mod stack;
mod support;
mod template_docs;
mod validators;
