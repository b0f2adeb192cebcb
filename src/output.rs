//! Writing rendered sites to disk, atomically.
//!
//! A site folder is built complete under a temporary name in the output
//! folder, each file with its mode, and then renamed into place. A failure
//! at any point leaves the previous folder (if any) as it was and no
//! partial folder behind. Files are not fsync'ed: a build output is
//! reproducible from the spec, so speed wins over surviving a power cut.

use crate::render::Rendered;
use anyhow::{Context, Result, bail};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `r` to `out/<site>/`, replacing any earlier render of that site.
pub fn write_site(out: &Path, r: &Rendered) -> Result<()> {
    let target = out.join(&r.site);
    if target.exists() && !target.is_dir() {
        bail!(
            "`{}` exists and is not a folder; move it away first",
            target.display()
        );
    }
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}.new-", r.site))
        .tempdir_in(out)
        .with_context(|| format!("cannot create a temporary folder in `{}`", out.display()))?;
    for a in &r.artifacts {
        let path = staging.path().join(&a.name);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(a.mode)
            .open(&path)
            .with_context(|| format!("cannot create `{}`", path.display()))?;
        f.write_all(&a.bytes)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        // The umask may have removed bits that the artifact needs (0755 scripts).
        f.set_permissions(fs::Permissions::from_mode(a.mode))
            .with_context(|| format!("cannot set the mode of `{}`", path.display()))?;
    }
    fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot set the mode of `{}`", staging.path().display()))?;

    // Move the old folder aside first; rename(2) cannot replace a non-empty folder.
    let old = if target.exists() {
        let old = tempfile::Builder::new()
            .prefix(&format!(".{}.old-", r.site))
            .tempdir_in(out)
            .with_context(|| format!("cannot create a temporary folder in `{}`", out.display()))?;
        let aside = old.path().join("site");
        fs::rename(&target, &aside)
            .with_context(|| format!("cannot move `{}` aside", target.display()))?;
        Some((old, aside))
    } else {
        None
    };
    let staged = staging.keep();
    if let Err(e) = fs::rename(&staged, &target) {
        // Put the old folder back, and drop the new one.
        if let Some((_, aside)) = &old {
            let _ = fs::rename(aside, &target);
        }
        let _ = fs::remove_dir_all(&staged);
        return Err(e).with_context(|| {
            format!(
                "cannot move the new site folder into `{}`",
                target.display()
            )
        });
    }
    // Dropping the TempDir removes the old site folder inside it.
    drop(old);
    Ok(())
}
