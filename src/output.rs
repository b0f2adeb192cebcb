//! Writing rendered sites to disk, atomically.
//!
//! A site folder is built complete under a hidden temporary name in the
//! output folder (`.<site>.new-XXXXXX`), each file with its mode, and then
//! swapped into place, so that `OUT/<site>` is at every moment either the
//! complete previous folder or the complete new one, even if the process is
//! killed:
//!
//! - a first render is one rename(2) of the new folder to `OUT/<site>`;
//! - a render over an earlier one swaps the two folders in one step with
//!   Linux's renameat2(RENAME_EXCHANGE), then removes the old folder, which
//!   the swap left under the temporary name;
//! - on a file system or kernel without RENAME_EXCHANGE (NFS, for one) the
//!   old folder is first renamed to `.<site>.old-XXXXXX` and the new one then
//!   renamed into place. Between those two renames `OUT/<site>` is missing;
//!   if the process dies there, the previous folder is complete under the
//!   `.old-` name and the next run into the same output folder puts it back.
//!
//! Whatever an interrupted run left behind (`.<site>.new-…`, `.<site>.old-…`)
//! is removed by the next run into that output folder, which holds an
//! exclusive lock (flock(2) on the folder itself) while it works, so two
//! runs into one folder wait for each other instead of cleaning up each
//! other's work in progress.
//!
//! Files are not fsync'ed: a build output is reproducible from the spec, so
//! speed wins over surviving a power cut.
//!
//! Two environment variables exist only so that the tests can prove the
//! above; nothing else should set them. `NATBAKE_TEST_CRASH_AFTER=STEP`
//! aborts the process right after STEP (`staged`, `exchanged`,
//! `moved-aside`), as a kill at that moment would; `NATBAKE_TEST_NO_EXCHANGE=1`
//! takes the path for file systems without RENAME_EXCHANGE.

use crate::error::printable_path;
use crate::render::Rendered;
use anyhow::{Context, Result, bail};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Length of the random part of temporary names, fixed so that the next
/// run recognises exactly what natbake left and nothing else.
const RANDOM_CHARS: usize = 6;

/// An output folder, locked for this run and cleaned of what interrupted
/// runs left in it.
pub struct OutputDir {
    path: PathBuf,
    /// Holds the flock(2) until the run ends.
    _lock: fs::File,
}

impl OutputDir {
    /// Creates `path` if it is missing, waits for any other natbake run into
    /// it to finish, and cleans up after interrupted runs.
    pub fn open(path: &Path) -> Result<OutputDir> {
        let shown = printable_path(path);
        fs::create_dir_all(path)
            .with_context(|| format!("cannot create output folder `{shown}`"))?;
        let lock =
            fs::File::open(path).with_context(|| format!("cannot open output folder `{shown}`"))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("cannot lock output folder `{shown}`"))?;
        let out = OutputDir {
            path: path.to_owned(),
            _lock: lock,
        };
        out.clean_up()?;
        Ok(out)
    }

    /// Removes temporary folders of interrupted runs; an old site folder
    /// whose replacement never arrived is put back instead.
    fn clean_up(&self) -> Result<()> {
        let shown = printable_path(&self.path);
        let entries = fs::read_dir(&self.path).with_context(|| format!("cannot list `{shown}`"))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list `{shown}`"))?;
            let name = entry.file_name();
            let Some((site, kind)) = name.to_str().and_then(leftover) else {
                continue;
            };
            let path = entry.path();
            let target = self.path.join(site);
            if kind == Leftover::Old && fs::symlink_metadata(&target).is_err() {
                fs::rename(&path, &target).with_context(|| {
                    format!(
                        "cannot put the previous site folder `{}` back",
                        printable_path(&target)
                    )
                })?;
            } else {
                fs::remove_dir_all(&path).with_context(|| {
                    format!(
                        "cannot remove `{}`, left by an interrupted run",
                        printable_path(&path)
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Writes `r` complete into a hidden folder of the output folder, to
    /// be put in place by [`OutputDir::commit`]. Dropping the result
    /// removes it.
    pub fn stage(&self, r: &Rendered) -> Result<Staged> {
        let out = &self.path;
        let target = out.join(&r.site);
        if target.exists() && !target.is_dir() {
            bail!(
                "`{}` exists and is not a folder; move it away first",
                printable_path(&target)
            );
        }
        let staging = temp_dir(out, &r.site, "new")?;
        for a in &r.artifacts {
            let path = staging.path().join(&a.name);
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(a.mode)
                .open(&path)
                .with_context(|| format!("cannot create `{}`", printable_path(&path)))?;
            f.write_all(&a.bytes)
                .with_context(|| format!("cannot write `{}`", printable_path(&path)))?;
            // The umask may have removed bits that the artifact needs (0755 scripts).
            f.set_permissions(fs::Permissions::from_mode(a.mode))
                .with_context(|| format!("cannot set the mode of `{}`", printable_path(&path)))?;
        }
        fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755)).with_context(
            || {
                format!(
                    "cannot set the mode of `{}`",
                    printable_path(staging.path())
                )
            },
        )?;
        Ok(Staged {
            site: r.site.clone(),
            dir: staging,
        })
    }

    /// Puts a staged site folder at `<out>/<site>`, replacing any earlier
    /// render of that site.
    pub fn commit(&self, staged: Staged) -> Result<()> {
        crash_point("staged");
        let Staged { site, dir: staging } = staged;
        let target = self.path.join(&site);
        let moved = || {
            format!(
                "cannot move the new site folder into `{}`",
                printable_path(&target)
            )
        };
        if fs::symlink_metadata(&target).is_err() {
            fs::rename(staging.path(), &target).with_context(moved)?;
            // Nothing is left at the temporary name.
            let _ = staging.keep();
            return Ok(());
        }
        match exchange(staging.path(), &target) {
            Ok(()) => {
                crash_point("exchanged");
                // The temporary name now holds the previous folder. Should
                // removing it fail, the next run tries again; the new site
                // is in place either way.
                let _ = staging.close();
                Ok(())
            }
            Err(e) if exchange_unsupported(&e) => {
                self.replace_in_two_steps(&site, staging, &target)
            }
            Err(e) => Err(e).with_context(moved),
        }
    }

    /// Replaces `target` by `staging` where folders cannot be swapped: the
    /// old folder goes aside under a name the next run recognises, and comes
    /// back if the new one cannot be moved in.
    fn replace_in_two_steps(
        &self,
        site: &str,
        staging: tempfile::TempDir,
        target: &Path,
    ) -> Result<()> {
        let aside = temp_dir(&self.path, site, "old")?;
        // rename(2) may replace an empty folder, and the name stays reserved.
        fs::rename(target, aside.path())
            .with_context(|| format!("cannot move `{}` aside", printable_path(target)))?;
        crash_point("moved-aside");
        if let Err(e) = fs::rename(staging.path(), target) {
            let _ = fs::rename(aside.path(), target);
            let _ = aside.keep();
            return Err(e).with_context(|| {
                format!(
                    "cannot move the new site folder into `{}`",
                    printable_path(target)
                )
            });
        }
        let _ = staging.keep();
        let _ = aside.close();
        Ok(())
    }
}

/// A site folder written complete under a temporary name.
pub struct Staged {
    site: String,
    dir: tempfile::TempDir,
}

/// An empty folder `.<site>.<kind>-XXXXXX` in `out`, removed when dropped.
fn temp_dir(out: &Path, site: &str, kind: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!(".{site}.{kind}-"))
        .rand_bytes(RANDOM_CHARS)
        .tempdir_in(out)
        .with_context(|| {
            format!(
                "cannot create a temporary folder in `{}`",
                printable_path(out)
            )
        })
}

#[derive(Debug, PartialEq, Eq)]
enum Leftover {
    New,
    Old,
}

/// The site and kind of a name made by [`temp_dir`]; `None` for any other
/// name, which is never touched.
fn leftover(name: &str) -> Option<(&str, Leftover)> {
    let rest = name.strip_prefix('.')?;
    let (head, random) = rest.split_at_checked(rest.len().checked_sub(RANDOM_CHARS)?)?;
    if !random.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let (site, kind) = if let Some(site) = head.strip_suffix(".new-") {
        (site, Leftover::New)
    } else {
        (head.strip_suffix(".old-")?, Leftover::Old)
    };
    let valid_site = site.len() <= 40
        && site.starts_with(|c: char| c.is_ascii_lowercase())
        && site
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    valid_site.then_some((site, kind))
}

/// Swaps two folders atomically.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    if std::env::var_os("NATBAKE_TEST_NO_EXCHANGE").is_some() {
        return Err(std::io::Error::from_raw_os_error(
            rustix::io::Errno::INVAL.raw_os_error(),
        ));
    }
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        a,
        rustix::fs::CWD,
        b,
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .map_err(std::io::Error::from)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Whether a failed swap means "not supported here" (then the two-step
/// replacement is used) rather than a real failure.
fn exchange_unsupported(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    e.kind() == std::io::ErrorKind::Unsupported
        || [Errno::INVAL, Errno::NOSYS, Errno::OPNOTSUPP]
            .iter()
            .any(|errno| e.raw_os_error() == Some(errno.raw_os_error()))
}

/// Aborts the process here when the tests ask for it (see the module docs).
fn crash_point(step: &str) {
    if std::env::var_os("NATBAKE_TEST_CRASH_AFTER").is_some_and(|s| s == step) {
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_natbake_makes_are_leftovers() {
        assert_eq!(
            leftover(".corp-prod.new-a1B2c3"),
            Some(("corp-prod", Leftover::New))
        );
        assert_eq!(leftover(".x.old-zzzzzz"), Some(("x", Leftover::Old)));
        for name in [
            "corp-prod",
            ".corp-prod",
            ".corp-prod.new-",
            ".corp-prod.new-a1B2c",
            ".corp-prod.new-a1B2c3d",
            ".corp-prod.new-a1B2.3",
            ".Corp.new-a1B2c3",
            "..new-a1B2c3",
            ".corp-prod.tmp-a1B2c3",
            ".ü.new-a1B2c3",
        ] {
            assert_eq!(leftover(name), None, "{name}");
        }
    }
}
