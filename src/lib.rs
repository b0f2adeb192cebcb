//! natbake turns one YAML site spec into everything an AWS NAT instance
//! needs for outbound NAT and inward port forwarding.
//!
//! The pipeline is: [`validate::load`] reads and checks a spec into a
//! [`site::Site`]; [`render::render_site`] turns it into artifacts (pure,
//! bytes in memory); [`output::write_site`] puts them on disk atomically.

pub mod cidr;
pub mod cli;
pub mod error;
pub mod output;
pub mod render;
pub mod site;
pub mod spec;
pub mod validate;

use anyhow::{Context, Result};
use clap::Parser;
use cli::{Cli, Command, TemplatesAction};
use error::{EXIT_OK, EXIT_USAGE, SpecError};
use render::Templates;
use site::Site;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

/// Parses `args`, runs the command, prints any error chain to stderr and
/// returns the documented exit code.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(err) => {
            eprintln!("{}", format_error(&err));
            ExitCode::from(error::exit_code_for(&err))
        }
    }
}

/// `error: …` then one `caused by: …` line per cause.
pub fn format_error(err: &anyhow::Error) -> String {
    let mut out = format!("error: {err}");
    for cause in err.chain().skip(1) {
        out.push_str(&format!("\ncaused by: {cause}"));
    }
    out
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Templates {
            action: TemplatesAction::Dump { dir },
        } => render::dump_templates(&dir),
        Command::Check { specs } => {
            let sites = load_all(&specs)?;
            for (path, site) in specs.iter().zip(&sites) {
                println!(
                    "ok: {} (site {}, {} forward{})",
                    path.display(),
                    site.name,
                    site.forwards.len(),
                    if site.forwards.len() == 1 { "" } else { "s" }
                );
                for note in render::json::security_group_notes(site) {
                    eprintln!("note: {}: {note}", site.name);
                }
            }
            Ok(())
        }
        Command::Render { specs, output } => {
            let templates = Templates::load(cli.templates.as_deref())?;
            let sites = load_all(&specs)?;
            render_all(&templates, &sites, &output)
        }
        Command::Build { dir, output } => {
            let templates = Templates::load(cli.templates.as_deref())?;
            let specs = find_specs(&dir)?;
            if specs.is_empty() {
                anyhow::bail!("no *.yaml site specs found under `{}`", dir.display());
            }
            let sites = load_all(&specs)?;
            render_all(&templates, &sites, &output)
        }
    }
}

/// Every `*.yaml` file under `dir`, sorted by path.
pub fn find_specs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut specs = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot list `{}`", dir.display()))?;
        if entry.file_type().is_file() && entry.path().extension().is_some_and(|e| e == "yaml") {
            specs.push(entry.into_path());
        }
    }
    Ok(specs)
}

/// Loads every spec; if any fails, all failures are returned together and
/// nothing is rendered.
fn load_all(specs: &[PathBuf]) -> Result<Vec<Site>> {
    let results = parallel_map(specs, |p| validate::load(p));
    let mut sites = Vec::with_capacity(specs.len());
    let mut errors: Vec<SpecError> = Vec::new();
    for r in results {
        match r {
            Ok(site) => sites.push(site),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        let mut seen: std::collections::HashMap<&str, &PathBuf> = std::collections::HashMap::new();
        for (site, path) in sites.iter().zip(specs) {
            if let Some(first) = seen.insert(&site.name, path) {
                errors.push(SpecError::DuplicateSite {
                    site: site.name.clone(),
                    first: first.clone(),
                    second: path.clone(),
                });
            }
        }
    }
    match errors.len() {
        0 => Ok(sites),
        1 => Err(errors.remove(0).into()),
        _ => Err(SpecError::Several {
            errors,
            total: specs.len(),
        }
        .into()),
    }
}

fn render_all(templates: &Templates, sites: &[Site], output: &Path) -> Result<()> {
    std::fs::create_dir_all(output)
        .with_context(|| format!("cannot create output folder `{}`", output.display()))?;
    // Every spec is valid and every template parsed by now. Each site is
    // rendered and written in one step, so memory stays that of a few sites
    // however many there are. A template override that fails only at render
    // time stops the build at that site; every folder written is complete.
    let failed = AtomicBool::new(false);
    let results = parallel_map(sites, |site| {
        if failed.load(Ordering::Relaxed) {
            return None;
        }
        let result = render::render_site(templates, site)
            .and_then(|r| output::write_site(output, &r).map(|()| r.notes));
        if result.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        Some(result)
    });
    let mut first_error = None;
    for (site, result) in sites.iter().zip(results) {
        match result {
            Some(Ok(notes)) => {
                for note in notes {
                    eprintln!("note: {}: {note}", site.name);
                }
                println!("rendered {}", output.join(&site.name).display());
            }
            Some(Err(e)) => {
                first_error.get_or_insert(e);
            }
            None => {}
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Maps `f` over `items` on all cores, keeping the order.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || items.len() < 2 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(|| c.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a render thread panicked"))
            .collect()
    })
}
