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
    /// Price each shape of each site a month (one instance, an instance with
    /// a warm standby, a Network Load Balancer with NAT gateways) for the
    /// traffic given, say where another shape wins and what each cannot do.
    Plan {
        /// Site spec files.
        #[arg(required = true, value_name = "SPEC")]
        specs: Vec<PathBuf>,
        /// GB a month through the forwards, both directions.
        #[arg(long, value_name = "GB", default_value_t = 100.0, value_parser = non_negative)]
        forward_gb: f64,
        /// GB a month of the private hosts' Internet traffic, both directions.
        #[arg(long, value_name = "GB", default_value_t = 100.0, value_parser = non_negative)]
        egress_gb: f64,
        /// Zones the private hosts are spread over (and the NLB's nodes and
        /// NAT gateways are in).
        #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=3))]
        zones: u32,
        /// New connections or flows a second through the forwards.
        #[arg(long, value_name = "N", default_value_t = 1.0, value_parser = non_negative)]
        new_flows: f64,
        /// Connections or flows open through the forwards at once.
        #[arg(long, value_name = "N", default_value_t = 100.0, value_parser = non_negative)]
        active_flows: f64,
        /// Price this instance type instead of the spec's `ami.instance_type`.
        #[arg(long, value_name = "TYPE")]
        instance_type: Option<String>,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
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

/// A finite number of 0 or more.
fn non_negative(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{text}` is not a number of 0 or more")),
    }
}
