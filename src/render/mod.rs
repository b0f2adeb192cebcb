//! Rendering: a validated [`Site`] in, artifact bytes out.
//!
//! Renderers are pure; [`crate::output`] does all file I/O. Text artifacts
//! come from handlebars templates (embedded, overridable file by file with
//! `--templates DIR`) fed a typed view model ([`view::View`]); JSON
//! artifacts are written with serde_json. HTML escaping is off (nothing
//! here is HTML), strict mode is on, and every template is parsed at start
//! so a broken one fails before anything is written.
//!
//! Which files there are, and where they go, is the table in [`artifact`].

pub mod artifact;
pub mod escape;
mod gzip;
pub mod instance;
pub mod ipsets;
pub mod json;
pub mod nlb;
pub mod rules;
pub mod shell;
pub mod site_conf;
pub mod stack;
mod user_data;
pub mod view;

pub use crate::digest::sha256_hex;
pub use artifact::{ARTIFACTS, ArtifactDef, artifact, install_path};
pub use user_data::USER_DATA_LIMIT;

use crate::error::printable_path;
use crate::site::Site;
use anyhow::{Context, Result, bail};
use handlebars::{Handlebars, handlebars_helper};
use std::io::Write;
use std::path::Path;

/// An embedded template: the artifact it renders and its text.
struct Embedded {
    artifact: &'static str,
    text: &'static str,
}

/// The artifacts made from templates, in the table's order.
fn embedded() -> impl Iterator<Item = Embedded> {
    ARTIFACTS.iter().filter_map(|a| {
        a.template.map(|text| Embedded {
            artifact: a.name,
            text,
        })
    })
}

/// The parsed templates, embedded ones replaced by any overrides.
pub struct Templates {
    hb: Handlebars<'static>,
}

impl Templates {
    /// Parses the embedded templates, then each `<artifact>.hbs` in
    /// `overrides`. A file there that is not a known template, cannot be
    /// read, or does not parse is an error: nothing falls back silently.
    pub fn load(overrides: Option<&Path>) -> Result<Templates> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        hb.register_helper("sh", Box::new(sh));
        hb.register_helper("yaml", Box::new(yaml));
        hb.register_helper("hcl", Box::new(hcl));
        for t in embedded() {
            hb.register_template_string(t.artifact, t.text)
                .with_context(|| {
                    format!("embedded template `{}.hbs` does not parse", t.artifact)
                })?;
        }
        if let Some(dir) = overrides {
            let shown = printable_path(dir);
            let entries = std::fs::read_dir(dir)
                .with_context(|| format!("cannot read template folder `{shown}`"))?;
            let mut paths: Vec<_> = entries
                .map(|e| e.map(|e| e.path()))
                .collect::<std::io::Result<_>>()
                .with_context(|| format!("cannot read template folder `{shown}`"))?;
            paths.sort();
            for path in paths {
                let file = path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                if file == INSTANCE_DIR && path.is_dir() {
                    instance_scripts_unchanged(&path)?;
                    continue;
                }
                let Some(t) = embedded().find(|t| format!("{}.hbs", t.artifact) == file) else {
                    let known: Vec<String> =
                        embedded().map(|t| format!("{}.hbs", t.artifact)).collect();
                    bail!(
                        "`{}` is not a natbake template; the folder may only hold {}",
                        printable_path(&path),
                        known.join(", ")
                    );
                };
                let shown = printable_path(&path);
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read template `{shown}`"))?;
                hb.register_template_string(t.artifact, text)
                    .with_context(|| format!("template `{shown}` does not parse"))?;
                refuse_partials(&hb, t.artifact, &format!("template `{shown}`"))?;
            }
        }
        for t in embedded() {
            refuse_partials(
                &hb,
                t.artifact,
                &format!("embedded template `{}.hbs`", t.artifact),
            )?;
        }
        Ok(Templates { hb })
    }

    #[cfg(test)]
    pub(crate) fn render(&self, artifact: &str, view: &view::View) -> Result<String> {
        self.hb
            .render(artifact, view)
            .with_context(|| format!("cannot render `{artifact}` for site `{}`", view.site))
    }

    /// Like [`Templates::render`], with the view already made a context.
    pub(crate) fn render_context(
        &self,
        artifact: &str,
        context: &handlebars::Context,
        site: &str,
    ) -> Result<String> {
        self.hb
            .render_with_context(artifact, context)
            .with_context(|| format!("cannot render `{artifact}` for site `{site}`"))
    }
}

/// Refuses partials (`{{> name}}`, `{{#> name}}`) and decorators such as
/// `{{#*inline}}`, which define them: a template that includes itself,
/// directly or through another, recurses until the stack overflows, and
/// every artifact's template stands alone, so none is needed.
fn refuse_partials(hb: &Handlebars<'static>, artifact: &str, shown: &str) -> Result<()> {
    use handlebars::template::{Template, TemplateElement as E};
    fn find(t: &Template) -> Option<(usize, usize)> {
        for (i, e) in t.elements.iter().enumerate() {
            let at = || t.mapping.get(i).map_or((0, 0), |m| (m.0, m.1));
            let inner: Vec<&Template> = match e {
                E::PartialExpression(_)
                | E::PartialBlock(_)
                | E::DecoratorExpression(_)
                | E::DecoratorBlock(_) => return Some(at()),
                E::HelperBlock(h) => h.template.iter().chain(&h.inverse).collect(),
                _ => Vec::new(),
            };
            if let Some(found) = inner.into_iter().find_map(find) {
                return Some(found);
            }
        }
        None
    }
    let Some(t) = hb.get_template(artifact) else {
        return Ok(());
    };
    match find(t) {
        None => Ok(()),
        Some((line, column)) => bail!(
            "{shown}, line {line}, column {column}: partials and decorators (`{{{{> name}}}}`, \
             `{{{{#> name}}}}`, `{{{{#*inline}}}}`) are not supported; a template may \
             include itself through them and never end. Write the text into the template instead"
        ),
    }
}

handlebars_helper!(sh: |s: str| escape::sh(s));
handlebars_helper!(yaml: |s: str| escape::yaml(s));
handlebars_helper!(hcl: |s: str| escape::hcl(s));

/// The folder, next to the templates, that `templates dump` writes the
/// instance's scripts into.
const INSTANCE_DIR: &str = "instance";

/// The instance's scripts are fixed, not templates: a `--templates` folder
/// may hold the `instance/` that `templates dump` wrote, to read, but not
/// changed, since natbake installs its own.
fn instance_scripts_unchanged(dir: &Path) -> Result<()> {
    let shown = printable_path(dir);
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read `{shown}`"))?;
    for e in entries {
        let path = e.with_context(|| format!("cannot read `{shown}`"))?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let same = instance::SCRIPTS
            .iter()
            .find(|s| s.artifact == name)
            .map(|s| std::fs::read(&path).is_ok_and(|b| b == s.source.as_bytes()));
        if same != Some(true) {
            bail!(
                "`{}` is not natbake's own instance script: the scripts the instance runs are the \
                 same on every site and cannot be overridden (what differs between sites is data \
                 in site.conf); remove it from the templates folder",
                printable_path(&path)
            );
        }
    }
    Ok(())
}

/// Writes the embedded templates into `dir`, and the instance's scripts,
/// with their comments, into `dir/instance`, refusing to overwrite.
pub fn dump_templates(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create `{}`", printable_path(dir)))?;
    let scripts = dir.join(INSTANCE_DIR);
    std::fs::create_dir_all(&scripts)
        .with_context(|| format!("cannot create `{}`", printable_path(&scripts)))?;
    let files = embedded()
        .map(|t| (dir.join(format!("{}.hbs", t.artifact)), t.text))
        .chain(
            instance::SCRIPTS
                .iter()
                .map(|s| (scripts.join(s.artifact), s.source)),
        );
    for (path, text) in files {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| {
                format!(
                    "cannot create `{}` (an existing file is never overwritten)",
                    printable_path(&path)
                )
            })?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("cannot write `{}`", printable_path(&path)))?;
        crate::say(format_args!("wrote {}", printable_path(&path)))?;
    }
    Ok(())
}

/// One output file.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// File name inside the site folder.
    pub name: String,
    /// Where the file goes on the instance, if it is installed.
    pub install_path: Option<&'static str>,
    /// Unix permission bits.
    pub mode: u32,
    pub bytes: Vec<u8>,
    /// SHA-256 of the bytes, in hex: the manifest, SHA256SUMS and the boot
    /// script all name it.
    pub sha256: String,
}

impl Artifact {
    /// What `def`'s function made, with the table's install path and mode.
    pub(crate) fn new(def: &artifact::ArtifactDef, out: artifact::Output) -> Artifact {
        Artifact {
            sha256: sha256_hex(&out.bytes),
            name: out.name,
            install_path: def.install_path,
            mode: def.mode,
            bytes: out.bytes,
        }
    }
}

/// Everything rendered for one site.
#[derive(Debug)]
pub struct Rendered {
    pub site: String,
    pub artifacts: Vec<Artifact>,
    /// Things the user should know that are not errors (user data too large).
    pub notes: Vec<String>,
}

/// Renders every artifact of `site`, in the order of [`ARTIFACTS`].
pub fn render_site(templates: &Templates, site: &Site) -> Result<Rendered> {
    let mut view = view::View::new(site);
    let mut context = None;
    let mut artifacts: Vec<Artifact> = Vec::new();
    let mut notes = Vec::new();
    for def in ARTIFACTS.iter().filter(|a| a.applies(site)) {
        let mut input = artifact::Input::new(
            def,
            site,
            templates,
            &mut view,
            &mut context,
            &artifacts,
            &mut notes,
        );
        if let Some(out) = (def.render)(&mut input)? {
            artifacts.push(Artifact::new(def, out));
        }
    }
    notes.extend(json::security_group_notes(site));
    notes.extend(crate::metrics::notes(site));
    Ok(Rendered {
        site: site.name.clone(),
        artifacts,
        notes,
    })
}
