//! natbake turns one YAML site spec into everything an AWS NAT instance
//! needs for outbound NAT and inward port forwarding.
//!
//! The pipeline is: [`validate::load`] reads and checks a spec into a
//! [`site::Site`]; [`render::render_site`] turns it into artifacts (pure,
//! bytes in memory); [`output::OutputDir`] puts them on disk atomically.

pub mod cidr;
pub mod cli;
pub mod digest;
pub mod error;
pub mod failover;
pub mod metrics;
pub mod os;
pub mod output;
pub mod plan;
pub mod prices;
pub mod render;
pub mod site;
pub mod spec;
pub mod standby;
pub mod validate;
pub mod values;
pub mod yaml;

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
            // `--help` or `--version` that cannot be written is a failure,
            // unless the reader just went away.
            return match e.print() {
                Err(e) if code == EXIT_OK && e.kind() != io::ErrorKind::BrokenPipe => {
                    ExitCode::from(error::EXIT_FAILURE)
                }
                _ => ExitCode::from(code),
            };
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
        Command::Plan {
            specs,
            forward_gb,
            egress_gb,
            zones,
            new_flows,
            active_flows,
            instance_type,
            json,
        } => {
            let traffic = plan::Traffic {
                forward_gb,
                egress_gb,
                zones,
                new_flows_per_second: new_flows,
                active_flows,
            };
            plan_all(&specs, traffic, instance_type.as_deref(), json)
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
        output_id.is_some() && e.file_type().is_dir() && e.metadata().ok().map(id) == output_id
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
        let entry = entry.map_err(|e| walk_error(e, dir))?;
        if entry.file_type().is_file() && entry.path().extension().is_some_and(|e| e == "yaml") {
            specs.push(entry.into_path());
        }
    }
    Ok(specs)
}

/// A folder that cannot be listed, named once: walkdir's own message
/// repeats its I/O error's, which would print the same cause twice.
fn walk_error(e: walkdir::Error, dir: &Path) -> anyhow::Error {
    let context = format!("cannot list `{}`", printable_path(e.path().unwrap_or(dir)));
    let cause = match e.loop_ancestor() {
        Some(above) => anyhow::anyhow!(
            "it leads back to `{}`, a folder above it, through a symbolic link",
            printable_path(above)
        ),
        None => match e.into_io_error() {
            Some(io) => anyhow::Error::new(io),
            None => anyhow::anyhow!("the folder cannot be walked"),
        },
    };
    cause.context(context)
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

/// `natbake plan`: every spec validated first (all problems reported
/// together), then priced.
fn plan_all(
    specs: &[PathBuf],
    traffic: plan::Traffic,
    instance_type: Option<&str>,
    json: bool,
) -> Result<()> {
    let mut sites = Vec::with_capacity(specs.len());
    let names = spec_errors(
        specs,
        specs.iter().map(|p| {
            validate::load(p).map(|site| {
                let name = site.name.clone();
                sites.push(site);
                name
            })
        }),
    )?;
    drop(names);
    let mut plans = Vec::with_capacity(sites.len());
    for site in &sites {
        let name = instance_type.unwrap_or(&site.ami.instance_type);
        let Some(ty) = prices::instance_type(name) else {
            let known: Vec<&str> = prices::INSTANCE_TYPES.iter().map(|t| t.name).collect();
            anyhow::bail!(
                "site `{}`: natbake has no price for the instance type `{name}`; price one it knows with --instance-type ({})",
                site.name,
                known.join(", ")
            );
        };
        plans.push(plan::plan(site, ty, traffic));
    }
    let basis = plan::price_basis();
    if json {
        let doc = serde_json::json!({"prices": basis, "sites": plans});
        say(serde_json::to_string_pretty(&doc)?)
    } else {
        let text = plan::table(&basis, &plans);
        say(text.trim_end())
    }
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

/// Validates, renders and stages every spec, site by site on every core,
/// then puts the staged folders in place only if every spec was valid and
/// every site was staged.
///
/// Each site is on disk under a temporary name once rendered, so memory
/// stays that of a few sites however many there are, and each spec is read
/// once. What was staged is removed again when anything failed.
fn render_all(templates: &Templates, specs: &[PathBuf], output: &Path) -> Result<()> {
    let created = !output.exists();
    let out = OutputDir::open(output)?;
    let result = stage_and_commit(templates, specs, &out);
    if result.is_err() && created {
        // A run that wrote nothing leaves no empty output folder behind.
        drop(out);
        let _ = std::fs::remove_dir(output);
    }
    let notes = result?;
    for (name, notes) in notes {
        for n in notes {
            note(format_args!("note: {name}: {n}"))?;
        }
        say(format_args!(
            "rendered {}",
            printable_path(&output.join(name))
        ))?;
    }
    Ok(())
}

/// The outcome of one spec in [`stage_and_commit`].
enum Outcome {
    Invalid(SpecError),
    Failed(String, anyhow::Error),
    /// Not rendered because another spec already failed.
    Skipped(String),
    Staged(output::Staged, String, Vec<String>),
}

/// Returns each site's name and notes, in the order of `specs`.
fn stage_and_commit(
    templates: &Templates,
    specs: &[PathBuf],
    out: &OutputDir,
) -> Result<Vec<(String, Vec<String>)>> {
    // After the first failure the remaining specs are still validated, so
    // that every problem is reported, but no longer rendered.
    let failed = AtomicBool::new(false);
    let outcomes = parallel_map(specs, |path| {
        let site = match validate::load(path) {
            Ok(site) => site,
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                return Outcome::Invalid(e);
            }
        };
        if failed.load(Ordering::Relaxed) {
            return Outcome::Skipped(site.name);
        }
        let staged = render::render_site(templates, &site)
            .and_then(|r| out.stage(&r).map(|staged| (staged, r.notes)));
        match staged {
            Ok((staged, notes)) => Outcome::Staged(staged, site.name, notes),
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                Outcome::Failed(site.name, e)
            }
        }
    });
    let mut staged = Vec::with_capacity(specs.len());
    let mut first_failure = None;
    let names = spec_errors(
        specs,
        outcomes.into_iter().map(|o| match o {
            Outcome::Invalid(e) => Err(e),
            Outcome::Failed(name, e) => {
                first_failure.get_or_insert(e);
                Ok(name)
            }
            Outcome::Skipped(name) => Ok(name),
            Outcome::Staged(s, name, notes) => {
                staged.push((s, notes));
                Ok(name)
            }
        }),
    );
    // Spec problems come first: they are what the user is to fix.
    let names = names?;
    if let Some(e) = first_failure {
        return Err(e);
    }
    let results = parallel_map_owned(staged, |(s, notes)| out.commit(s).map(|()| notes));
    let mut done = Vec::with_capacity(names.len());
    for (name, result) in names.into_iter().zip(results) {
        done.push((name, result?));
    }
    Ok(done)
}

/// [`parallel_map`] for items that are consumed.
fn parallel_map_owned<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let cells: Vec<std::sync::Mutex<Option<T>>> = items
        .into_iter()
        .map(|t| std::sync::Mutex::new(Some(t)))
        .collect();
    parallel_map(&cells, |cell| {
        let item = cell.lock().unwrap_or_else(|e| e.into_inner()).take();
        f(item.expect("each item is taken once"))
    })
}

/// Maps `f` over `items` on all cores, keeping the order.
///
/// Each thread takes the next item as it finishes the last, rather than a
/// fixed share: sites differ in size, and on a shared machine one core may
/// run slower than the other, so fixed shares left a thread idle at the end
/// while the other still had half its share to go.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads < 2 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                return done;
            };
            done.push((i, f(item)));
        }
    };
    let mut slots: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
        for h in handles {
            for (i, r) in h.join().expect("a render thread panicked") {
                slots[i] = Some(r);
            }
        }
    });
    slots
        .into_iter()
        .map(|r| r.expect("every item is mapped once"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::{Duration, Instant};

    /// Results come back in the order of the items, one per item.
    #[test]
    fn parallel_map_keeps_the_order() {
        let items: Vec<usize> = (0..1000).collect();
        let calls = AtomicUsize::new(0);
        let out = parallel_map(&items, |&i| {
            calls.fetch_add(1, Ordering::Relaxed);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(calls.load(Ordering::Relaxed), items.len());
        assert_eq!(parallel_map(&[7], |&i| i + 1), vec![8]);
        assert!(parallel_map(&[] as &[u8], |&i| i).is_empty());
    }

    /// A thread that is held up on one item does not hold up the items
    /// after it: the other thread takes them all. With a fixed share per
    /// thread, the first item would wait in vain for the rest of its share.
    #[test]
    fn parallel_map_shares_the_work_as_it_goes() {
        if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
            return;
        }
        let items: Vec<usize> = (0..64).collect();
        let done = AtomicUsize::new(0);
        let out = parallel_map(&items, |&i| {
            if i == 0 {
                let start = Instant::now();
                while done.load(Ordering::Acquire) < items.len() - 1 {
                    if start.elapsed() > Duration::from_secs(10) {
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            } else {
                done.fetch_add(1, Ordering::Release);
            }
            true
        });
        assert!(out[0], "the other items waited for the first one's thread");
    }
}
