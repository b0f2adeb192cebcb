//! Command-line interface.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Render everything an AWS NAT instance needs to forward chosen ports to
/// private hosts — ruleset, boot script, systemd unit, cloud-init user data,
/// Packer template, security-group rules — from one YAML site spec.
///
/// Exit codes: 0 ok, 1 failure, 2 usage, 3 invalid site spec.
#[derive(Debug, Parser)]
#[command(name = "natbake", version, max_term_width = 100)]
pub struct Cli {
    /// Folder of template files that replace the embedded ones, file by file
    /// (see `natbake templates dump`).
    #[arg(long, global = true, value_name = "DIR")]
    pub templates: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate site specs and render them in memory (with --templates, if
    /// given), writing nothing.
    Check {
        /// Site spec files.
        #[arg(required = true, value_name = "SPEC")]
        specs: Vec<PathBuf>,
    },
    /// Render site specs into OUT/<site>/.
    Render {
        /// Site spec files.
        #[arg(required = true, value_name = "SPEC")]
        specs: Vec<PathBuf>,
        /// Output folder; each site gets its own sub-folder.
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
    },
    /// Render every *.yaml under a folder (following symbolic links, skipping
    /// the output folder), in sorted order. If any spec is invalid, all
    /// problems are reported and nothing is written.
    Build {
        /// Folder of site specs.
        #[arg(default_value = "images", value_name = "DIR")]
        dir: PathBuf,
        /// Output folder.
        #[arg(short, long, default_value = "build", value_name = "OUT")]
        output: PathBuf,
    },
    /// Work with the artifact templates.
    Templates {
        #[command(subcommand)]
        action: TemplatesAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum TemplatesAction {
    /// Write the embedded templates into DIR, to copy and edit for --templates.
    Dump {
        /// Folder to write into (created if missing; existing files are not overwritten).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}
