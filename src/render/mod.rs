//! Rendering: a validated [`Site`] in, artifact bytes out.
//!
//! Renderers are pure; [`crate::output`] does all file I/O. Text artifacts
//! come from handlebars templates (embedded, overridable file by file with
//! `--templates DIR`) fed a typed view model ([`view::View`]); JSON
//! artifacts are written with serde_json. HTML escaping is off (nothing
//! here is HTML), strict mode is on, and every template is parsed at start
//! so a broken one fails before anything is written.

pub mod escape;
pub mod json;
pub mod rules;
pub mod view;

use crate::error::printable_path;
use crate::site::Site;
use anyhow::{Context, Result, bail};
use handlebars::{Handlebars, handlebars_helper};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// EC2 refuses user data larger than this, counted before base64.
pub const USER_DATA_LIMIT: usize = 16 * 1024;

/// An embedded template: the artifact it renders and its text.
struct Embedded {
    artifact: &'static str,
    text: &'static str,
}

macro_rules! embedded {
    ($($name:literal),* $(,)?) => {
        &[$(Embedded {
            artifact: $name,
            text: include_str!(concat!("../../templates/", $name, ".hbs")),
        }),*]
    };
}

const EMBEDDED: &[Embedded] = embedded![
    "rules.v4",
    "sysctl.conf",
    "configure-pat.sh",
    "natbake.service",
    "natbake-aws.sh",
    "provision.sh",
    "user-data.yaml",
    "plugins.pkr.hcl",
    "nat-ami.pkr.hcl",
];

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
        for t in EMBEDDED {
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
                let Some(t) = EMBEDDED
                    .iter()
                    .find(|t| format!("{}.hbs", t.artifact) == file)
                else {
                    let known: Vec<String> = EMBEDDED
                        .iter()
                        .map(|t| format!("{}.hbs", t.artifact))
                        .collect();
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
        for t in EMBEDDED {
            refuse_partials(
                &hb,
                t.artifact,
                &format!("embedded template `{}.hbs`", t.artifact),
            )?;
        }
        Ok(Templates { hb })
    }

    fn render(&self, artifact: &str, view: &view::View) -> Result<String> {
        self.hb
            .render(artifact, view)
            .with_context(|| format!("cannot render `{artifact}` for site `{}`", view.site))
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

/// Writes the embedded templates into `dir`, refusing to overwrite.
pub fn dump_templates(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create `{}`", printable_path(dir)))?;
    for t in EMBEDDED {
        let path = dir.join(format!("{}.hbs", t.artifact));
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
        f.write_all(t.text.as_bytes())
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
}

/// Everything rendered for one site.
#[derive(Debug)]
pub struct Rendered {
    pub site: String,
    pub artifacts: Vec<Artifact>,
    /// Things the user should know that are not errors (user data too large).
    pub notes: Vec<String>,
}

/// Files installed on the instance, with their places and modes. The
/// provisioning script and the user data install exactly these.
pub const INSTALLED: &[(&str, &str, u32)] = &[
    ("rules.v4", "/etc/natbake/rules.v4", 0o644),
    ("sysctl.conf", "/etc/sysctl.d/90-natbake.conf", 0o644),
    (
        "configure-pat.sh",
        "/usr/local/sbin/configure-pat.sh",
        0o755,
    ),
    (
        "natbake.service",
        "/etc/systemd/system/natbake.service",
        0o644,
    ),
];

/// Installed only with `failover.floating_eni`: the AWS helpers that
/// configure-pat.sh sources (and later natbake scripts can reuse).
pub const FAILOVER_INSTALLED: &[(&str, &str, u32)] = &[(
    "natbake-aws.sh",
    "/usr/local/lib/natbake/natbake-aws.sh",
    0o644,
)];

/// What each forward needs on the private side, which natbake cannot do.
const PRIVATE_SIDE_NOTE: &str = "targets see the clients' own addresses: each target's security group \
must allow its forwards' sources (target-security-groups.json, or manifest.json `targets` per target), \
and each target subnet's default route must point at the NAT instance";

/// Renders every artifact of `site`.
pub fn render_site(templates: &Templates, site: &Site) -> Result<Rendered> {
    let mut view = view::View::new(site);
    let mut artifacts = Vec::new();
    let mut notes = Vec::new();
    let failover: &[(&str, &str, u32)] = match site.failover {
        Some(_) => FAILOVER_INSTALLED,
        None => &[],
    };
    for &(name, install, mode) in INSTALLED.iter().chain(failover) {
        if name == "natbake.service" && !site.os.has_systemd() {
            continue;
        }
        let text = templates.render(name, &view)?;
        // INSTALLED lists rules.v4 first: the boot script embeds its digest.
        if name == "rules.v4" {
            view.rules_sha256 = sha256_hex(text.as_bytes());
        }
        artifacts.push(Artifact {
            name: name.into(),
            install_path: Some(install),
            mode,
            bytes: text.into_bytes(),
        });
    }
    match fit_user_data(templates, &mut view, &artifacts)? {
        Ok((name, bytes)) => artifacts.push(Artifact {
            name,
            install_path: None,
            mode: 0o644,
            bytes,
        }),
        Err(note) => notes.push(note),
    }
    for (name, mode) in [
        ("provision.sh", 0o755),
        ("plugins.pkr.hcl", 0o644),
        ("nat-ami.pkr.hcl", 0o644),
    ] {
        let text = templates.render(name, &view)?;
        artifacts.push(Artifact {
            name: name.into(),
            install_path: None,
            mode,
            bytes: text.into_bytes(),
        });
    }
    for (name, bytes) in [
        ("security-group.json", json::security_group(site)),
        (
            "target-security-groups.json",
            json::target_security_groups(site),
        ),
    ] {
        if let Some(bytes) = bytes {
            artifacts.push(Artifact {
                name: name.into(),
                install_path: None,
                mode: 0o644,
                bytes,
            });
        }
    }
    notes.extend(json::security_group_notes(site));
    if !site.forwards.is_empty() {
        notes.push(PRIVATE_SIDE_NOTE.into());
    }
    let manifest = json::manifest(site, &artifacts);
    artifacts.push(Artifact {
        name: "manifest.json".into(),
        install_path: None,
        mode: 0o644,
        bytes: manifest,
    });
    let sums: String = artifacts
        .iter()
        .map(|a| format!("{}  {}\n", sha256_hex(&a.bytes), a.name))
        .collect();
    artifacts.push(Artifact {
        name: "SHA256SUMS".into(),
        install_path: None,
        mode: 0o644,
        bytes: sums.into_bytes(),
    });
    Ok(Rendered {
        site: site.name.clone(),
        artifacts,
        notes,
    })
}

/// The user data as EC2 will take it: plain YAML when it fits; else YAML
/// carrying each file gzip-compressed (still text, so it can be read and
/// embedded in other templates); else the plain YAML gzip-compressed whole
/// (which cloud-init also reads); else an explanation. Every form writes the
/// same files byte for byte.
fn fit_user_data(
    templates: &Templates,
    view: &mut view::View,
    installed: &[Artifact],
) -> Result<std::result::Result<(String, Vec<u8>), String>> {
    view.add_files(installed, false);
    let plain = templates.render("user-data.yaml", view)?.into_bytes();
    if plain.len() <= USER_DATA_LIMIT {
        return Ok(Ok(("user-data.yaml".into(), plain)));
    }
    view.add_files(installed, true);
    let compressed_files = templates.render("user-data.yaml", view)?.into_bytes();
    if compressed_files.len() <= USER_DATA_LIMIT {
        return Ok(Ok(("user-data.yaml".into(), compressed_files)));
    }
    Ok(match gzip_within(&plain, USER_DATA_LIMIT) {
        Some(gz) => Ok(("user-data.yaml.gz".into(), gz)),
        None => Err(format!(
            "no user data written: it is {} bytes, and more than {USER_DATA_LIMIT} even gzip-compressed, \
             over EC2's limit; use the AMI (nat-ami.pkr.hcl), which has no such limit",
            plain.len()
        )),
    })
}

/// Deterministic gzip of all of `bytes` (see [`gzip_within`]).
fn gzip(bytes: &[u8]) -> Vec<u8> {
    gzip_within(bytes, usize::MAX).expect("gzip into memory does not fail")
}

/// Deterministic gzip (no file name, modification time 0), given up as
/// soon as the output passes `limit`: a ruleset of thousands of forwards
/// need not be compressed whole to learn that it does not fit.
fn gzip_within(bytes: &[u8], limit: usize) -> Option<Vec<u8>> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    for chunk in bytes.chunks(64 * 1024) {
        enc.write_all(chunk).ok()?;
        if enc.get_ref().len() > limit {
            return None;
        }
    }
    let gz = enc.finish().ok()?;
    (gz.len() <= limit).then_some(gz)
}

/// SHA-256 in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::validate::hex(&Sha256::digest(bytes))
}
