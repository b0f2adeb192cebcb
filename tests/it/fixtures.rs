//! The fixture specs and a way to render them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::manifest::Manifest;
use crate::support::{self, ScratchDir};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `natbake` as built for these tests, run from the repository root.
pub fn natbake() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_natbake"));
    cmd.current_dir(repo());
    cmd
}

/// A spec file with the label its snapshots are named after.
pub struct Spec {
    pub label: String,
    /// Relative to the repository root, so messages read the same anywhere.
    pub path: PathBuf,
}

fn specs_in(dir: &str, prefix: &str) -> Vec<Spec> {
    let mut out: Vec<Spec> = std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            Spec {
                label: format!("{prefix}{stem}"),
                path: Path::new(dir).join(p.file_name().unwrap()),
            }
        })
        .collect();
    out.sort_by(|a, b| a.label.cmp(&b.label));
    assert!(!out.is_empty(), "no specs in {dir}");
    out
}

/// The valid test fixture named `name`.
pub fn fixture_spec(name: &str) -> PathBuf {
    repo()
        .join("tests/fixtures/valid")
        .join(format!("{name}.yaml"))
}

/// The valid test fixtures, without the examples in `images/`.
pub fn fixture_specs() -> Vec<Spec> {
    specs_in("tests/fixtures/valid", "")
}

/// Every valid spec: the test fixtures, then the examples in `images/`.
pub fn valid_specs() -> Vec<Spec> {
    let mut v = fixture_specs();
    v.extend(specs_in("images", "images-"));
    v
}

/// The specs of `deployment: nlb`, which render no instance artifacts.
pub fn nlb_specs() -> Vec<Spec> {
    specs_in("tests/fixtures/nlb", "nlb-")
}

/// Every valid spec of either shape, for the tests that look at whatever
/// was rendered (snapshots, determinism).
pub fn all_valid_specs() -> Vec<Spec> {
    let mut v = valid_specs();
    v.extend(nlb_specs());
    v
}

/// Every spec that must be refused.
pub fn invalid_specs() -> Vec<Spec> {
    specs_in("tests/fixtures/invalid", "invalid-")
}

/// A rendered site in a scratch folder that is removed on drop.
pub struct RenderedSite {
    /// The spec it was rendered from.
    pub spec: PathBuf,
    pub site_dir: PathBuf,
    pub manifest: Manifest,
    // Owns the output folder.
    _out: ScratchDir,
}

/// Renders `spec` with the natbake binary into a scratch folder; panics
/// with natbake's own message if rendering fails.
pub fn render(spec: &Path) -> RenderedSite {
    render_with_templates(spec, None)
}

/// [`render`], with the templates in `templates` overriding the embedded
/// ones when given.
pub fn render_with_templates(spec: &Path, templates: Option<&Path>) -> RenderedSite {
    let out = ScratchDir::new("render");
    let mut cmd = natbake();
    cmd.arg("render").arg(spec).arg("-o").arg(out.path());
    if let Some(dir) = templates {
        cmd.arg("--templates").arg(dir);
    }
    support::run(&mut cmd);
    // `render` writes DIR/<site>/, named after the site.
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out.path())
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", out.path().display()))
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(
        dirs.len(),
        1,
        "natbake render {} wrote {dirs:?}, expected one site folder",
        spec.display()
    );
    let site_dir = dirs.pop().expect("one site folder");
    let manifest = Manifest::load(&site_dir);
    assert_eq!(
        site_dir.file_name().and_then(|n| n.to_str()),
        Some(manifest.site.as_str()),
        "{}: the site folder is not named after the site",
        spec.display()
    );
    RenderedSite {
        spec: spec.to_owned(),
        site_dir,
        manifest,
        _out: out,
    }
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The files of a site folder, sorted by name.
pub fn files(site_dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(site_dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The user data as cloud-init reads it: gunzipped when it is compressed.
pub fn user_data_text(site_dir: &Path) -> Option<String> {
    use std::io::Read;
    if let Ok(text) = std::fs::read_to_string(site_dir.join("user-data.yaml")) {
        return Some(text);
    }
    let gz = std::fs::read(site_dir.join("user-data.yaml.gz")).ok()?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .expect("user-data.yaml.gz is valid gzip");
    Some(text)
}

/// The `forwards:` entries of a spec with `n` sources in all, `per_forward`
/// to a forward (at most 1,000), each source one /24: `n` inbound rules.
pub fn forwards_with_sources(n: u32, per_forward: usize) -> String {
    let from: Vec<String> = (0..n)
        .map(|i| format!("198.{}.{}.0/24", 18 + i / 256, i % 256))
        .collect();
    from.chunks(per_forward)
        .enumerate()
        .map(|(i, from)| {
            format!(
                "  - {{name: app{i}, port: {}, to: 10.0.1.5:443, from: [{}]}}\n",
                8443 + i,
                from.join(", ")
            )
        })
        .collect()
}
