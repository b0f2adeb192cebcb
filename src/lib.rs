//! natbake turns one YAML site spec into everything an AWS NAT instance
//! needs for outbound NAT and inward port forwarding.
//!
//! The pipeline is: [`validate::load`] reads and checks a spec into a
//! [`site::Site`]; [`render::render_site`] turns it into artifacts (pure,
//! bytes in memory); [`output::OutputDir`] puts them on disk atomically.

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
use error::{EXIT_OK, EXIT_USAGE, SpecError, printable_path};
use output::OutputDir;
use render::Templates;
use std::ffi::OsString;
use std::fmt::Display;
use std::io::{self, Write};
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
            // Nowhere is left to report a failure to write this.
            let _ = writeln!(io::stderr(), "{}", format_error(&err));
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

/// Writes one line of the report to stdout.
///
/// A reader that went away (`natbake check … | head -1`) is not an error:
/// the rest of the report is dropped quietly, as other Unix tools do, and
/// the command still finishes its work and exits with its own code. Any
/// other failure to write (`> /dev/full`) is an error, exit 1.
pub(crate) fn say(line: impl Display) -> Result<()> {
    write_line(io::stdout().lock(), "standard output", line)
}

/// [`say`] for notes on stderr.
pub(crate) fn note(line: impl Display) -> Result<()> {
    write_line(io::stderr().lock(), "standard error", line)
}

fn write_line(mut w: impl Write, name: &str, line: impl Display) -> Result<()> {
    match writeln!(w, "{line}").and_then(|()| w.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(e).with_context(|| format!("cannot write to {name}"))
        }
        _ => Ok(()),
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Templates {
            action: TemplatesAction::Dump { dir },
        } => render::dump_templates(&dir),
        Command::Check { specs } => {
            let templates = Templates::load(cli.templates.as_deref())?;
            check_all(&templates, &specs)
        }
        Command::Render { specs, output } => {
            let templates = Templates::load(cli.templates.as_deref())?;
            render_all(&templates, &specs, &output)
        }
        Command::Build { dir, output } => {
            let templates = Templates::load(cli.templates.as_deref())?;
            let specs = find_specs(&dir, &output)?;
            if specs.is_empty() {
                anyhow::bail!(
                    "no *.yaml site specs found under `{}`",
                    printable_path(&dir)
                );
            }
            render_all(&templates, &specs, &output)
        }
    }
}

/// Every `*.yaml` file under `dir`, sorted by path, following symbolic
/// links. The output folder is skipped where it lies inside `dir`: what
/// natbake wrote there (`user-data.yaml`) is not a spec.
pub fn find_specs(dir: &Path, output: &Path) -> Result<Vec<PathBuf>> {
    use std::os::unix::fs::MetadataExt;
    let id = |m: std::fs::Metadata| (m.dev(), m.ino());
    let output_id = std::fs::metadata(output).ok().map(id);
    if output_id.is_some() && std::fs::metadata(dir).ok().map(id) == output_id {
        anyhow::bail!(
            "the output folder `{}` is the spec folder; write the output elsewhere, such as `-o build`",
            printable_path(output)
        );
    }
    let is_output = |e: &walkdir::DirEntry| {
        output_id.is_some()
            && e.file_type().is_dir()
            && e.metadata().ok().map(id) == output_id
    };
    let mut specs = Vec::new();
    let walk = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let skip = is_output(e);
            if skip {
                let _ = note(format_args!(
                    "note: not reading specs from `{}`: it is the output folder",
                    printable_path(e.path())
                ));
            }
            !skip
        });
    for entry in walk {
        let entry = entry.with_context(|| format!("cannot list `{}`", printable_path(dir)))?;
        if entry.file_type().is_file() && entry.path().extension().is_some_and(|e| e == "yaml") {
            specs.push(entry.into_path());
        }
    }
    Ok(specs)
}

/// Validates every spec and renders it in memory with `templates`, writing
/// nothing, so that a template override that breaks fails `check` as it
/// would fail `render`.
fn check_all(templates: &Templates, specs: &[PathBuf]) -> Result<()> {
    let results = parallel_map(specs, |p| {
        validate::load(p).map(|site| {
            let rendered = render::render_site(templates, &site).map(|r| r.notes);
            (site.name, site.forwards.len(), rendered)
        })
    });
    let mut checked = Vec::with_capacity(specs.len());
    let names = spec_errors(
        specs,
        results.into_iter().map(|r| {
            r.map(|(name, forwards, rendered)| {
                checked.push((forwards, rendered));
                name
            })
        }),
    )?;
    for ((path, name), (forwards, rendered)) in specs.iter().zip(names).zip(checked) {
        for n in rendered? {
            note(format_args!("note: {name}: {n}"))?;
        }
        say(format_args!(
            "ok: {} (site {name}, {forwards} forward{})",
            printable_path(path),
            if forwards == 1 { "" } else { "s" }
        ))?;
    }
    Ok(())
}

/// Collects the outcome of loading every spec: the site names in order, or
/// every failure at once (and two specs naming one site), so that nothing
/// is written unless all are valid.
fn spec_errors(
    specs: &[PathBuf],
    results: impl Iterator<Item = Result<String, SpecError>>,
) -> Result<Vec<String>> {
    let mut names = Vec::with_capacity(specs.len());
    let mut errors: Vec<SpecError> = Vec::new();
    for r in results {
        match r {
            Ok(name) => names.push(name),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        let mut seen: std::collections::HashMap<&str, &PathBuf> = std::collections::HashMap::new();
        for (name, path) in names.iter().zip(specs) {
            if let Some(first) = seen.insert(name, path) {
                errors.push(SpecError::DuplicateSite {
                    site: name.clone(),
                    first: first.clone(),
                    second: path.clone(),
                });
            }
        }
    }
    match errors.len() {
        0 => Ok(names),
        1 => Err(errors.remove(0).into()),
        _ => Err(SpecError::Several {
            errors,
            total: specs.len(),
        }
        .into()),
    }
}

/// Validates every spec, then renders and writes them site by site.
///
/// The first pass keeps only each site's name, and the second reads each
/// spec again and drops it once written, so memory stays that of a few
/// sites however many there are; parsing a spec costs far less than
/// rendering and writing it.
fn render_all(templates: &Templates, specs: &[PathBuf], output: &Path) -> Result<()> {
    let names = spec_errors(
        specs,
        parallel_map(specs, |p| validate::load(p).map(|site| site.name)).into_iter(),
    )?;
    let out = OutputDir::open(output)?;
    // A template override that fails only at render time, or a spec that
    // changed since the first pass, stops the build at that site; every
    // folder written is complete.
    let failed = AtomicBool::new(false);
    let results = parallel_map(specs, |path| {
        if failed.load(Ordering::Relaxed) {
            return None;
        }
        let result = validate::load(path)
            .map_err(anyhow::Error::from)
            .and_then(|site| render::render_site(templates, &site))
            .and_then(|r| out.write_site(&r).map(|()| r.notes));
        if result.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        Some(result)
    });
    let mut first_error = None;
    for (name, result) in names.iter().zip(results) {
        match result {
            Some(Ok(notes)) => {
                for n in notes {
                    note(format_args!("note: {name}: {n}"))?;
                }
                say(format_args!(
                    "rendered {}",
                    printable_path(&output.join(name))
                ))?;
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
