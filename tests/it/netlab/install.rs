//! The files a NAT instance gets: those the manifest gives an install
//! path, from the rendered folder, or the same taken out of the user data's
//! `write_files` by `extract_write_files.py` (PyYAML, a second reader).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use natbake::render::{artifact, install_path};
use serde::Deserialize;

use super::{python, script};
use crate::manifest::Manifest;
use crate::support;

/// One file to install: where, with which mode, from which local file.
/// Deserialized from what `extract_write_files.py` prints.
#[derive(Clone, Debug, Deserialize)]
pub struct InstallFile {
    #[serde(rename = "path")]
    pub install_path: String,
    #[serde(rename = "permissions")]
    pub mode: String,
    #[serde(rename = "file")]
    pub source: PathBuf,
}

/// The files a NAT instance gets, from the rendered folder or from the user
/// data.
#[derive(Clone, Debug)]
pub struct InstallSet {
    pub origin: String,
    pub files: Vec<InstallFile>,
}

impl InstallSet {
    /// Every artifact the manifest gives an install path.
    pub fn from_site_dir(site_dir: &Path, m: &Manifest) -> InstallSet {
        let files: Vec<InstallFile> = m
            .artifacts
            .iter()
            .filter_map(|a| {
                Some(InstallFile {
                    install_path: a.install_path.clone()?,
                    mode: a.mode.clone(),
                    source: site_dir.join(&a.path),
                })
            })
            .filter(|f| f.install_path.starts_with('/'))
            .collect();
        let set = InstallSet {
            origin: format!("{} (rendered files)", site_dir.display()),
            files,
        };
        set.assert_complete();
        set
    }

    /// The files that the user data's `write_files` would write, taken out
    /// of it with PyYAML (a second, independent YAML reader) into `out`.
    pub fn from_user_data(site_dir: &Path, m: &Manifest, out: &Path) -> InstallSet {
        let ud = m
            .user_data
            .as_ref()
            .expect("the manifest lists no user data");
        let user_data = site_dir.join(&ud.file);
        fs::create_dir_all(out).expect("create extraction dir");
        let text = support::run_stdout(
            Command::new(python())
                .arg(script("extract_write_files.py"))
                .arg(&user_data)
                .arg(out)
                .arg(if ud.gzip { "gzip" } else { "plain" }),
        );
        let files: Vec<InstallFile> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("bad extraction output {text:?}: {e}"));
        let set = InstallSet {
            origin: format!("{} (write_files)", user_data.display()),
            files,
        };
        set.assert_complete();
        set
    }

    /// The same set with the file installed at `install_path` taken from
    /// `source` instead, as a damaged or edited file on the instance.
    pub fn with_source(&self, install_path: &str, source: &Path) -> InstallSet {
        let mut set = self.clone();
        let file = set
            .files
            .iter_mut()
            .find(|f| f.install_path == install_path)
            .unwrap_or_else(|| panic!("{}: nothing installs {install_path}", self.origin));
        file.source = source.to_owned();
        set.origin = format!(
            "{} with {install_path} from {}",
            self.origin,
            source.display()
        );
        set
    }

    pub fn get(&self, install_path: &str) -> Option<&InstallFile> {
        self.files.iter().find(|f| f.install_path == install_path)
    }

    /// The installed configure-pat.sh.
    pub fn script_path(&self) -> &'static str {
        install_path(artifact::SCRIPT)
    }

    fn assert_complete(&self) {
        for name in [artifact::RULES, artifact::SYSCTL, artifact::SCRIPT] {
            let needed = install_path(name);
            assert!(
                self.get(needed).is_some(),
                "{}: nothing installs {needed}",
                self.origin
            );
        }
    }
}
