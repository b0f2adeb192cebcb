//! `user-data.yaml`: the launch template's `#cloud-config`, from its
//! template, made to fit EC2's size limit.
//!
//! The template escapes what it writes with the `yaml` helper; the files it
//! carries are YAML literal blocks, or base64 (cloud-init's `b64` and
//! `gz+b64` encodings) where a literal block could not hold them exactly.

use super::artifact::{Input, Output, PACKER_BUILD};
use anyhow::Result;

/// EC2 refuses user data larger than this, counted before base64.
pub const USER_DATA_LIMIT: usize = 16 * 1024;

/// How much smaller than four thirds of the whole file gzipped the YAML
/// with its files compressed one by one may be: its YAML text around the
/// files is not compressed, but neither does it share what the files have
/// in common. A test measures it over many sites.
const MARGIN: usize = 2048;

/// The user data as EC2 will take it: plain YAML when it fits; else YAML
/// carrying each file gzip-compressed (still text, so it can be read and
/// embedded in other templates); else the plain YAML gzip-compressed whole
/// (which cloud-init also reads); else nothing, and a note saying why.
/// Every form writes the same files byte for byte: those installed on the
/// instance, which the artifact table renders before the user data.
pub(super) fn render(i: &mut Input<'_>) -> Result<Option<Output>> {
    if crate::standby::of(i.site).is_some() {
        // keepalived, conntrackd and their files come with the image.
        i.notes.push(format!(
            "no user data written: a standby pair runs from the AMI ({PACKER_BUILD}), which installs keepalived and conntrackd"
        ));
        return Ok(None);
    }
    let done = i.done;
    i.view_mut().add_files(done, false);
    let plain = i.template()?;
    if plain.bytes.len() <= USER_DATA_LIMIT {
        return Ok(Some(plain));
    }
    // Gzipped whole first: when even that is over the limit, so is every
    // file gzipped and base64-encoded inside the YAML (a third larger than
    // what it encodes), and a site of 10,000 forwards need not compress
    // its 3 MB twice to learn so. Equally, when the whole file gzipped is
    // more than three quarters of the limit, the files compressed one by
    // one cannot fit once encoded, and are not tried.
    let whole = super::gzip::within(&plain.bytes, USER_DATA_LIMIT)
        .or_else(|| super::gzip::best_within(&plain.bytes, USER_DATA_LIMIT));
    if whole
        .as_ref()
        .is_some_and(|gz| gz.len() * 4 / 3 <= USER_DATA_LIMIT + MARGIN)
    {
        let done = i.done;
        i.view_mut().add_files(done, true);
        let compressed_files = i.template()?;
        if compressed_files.bytes.len() <= USER_DATA_LIMIT {
            return Ok(Some(compressed_files));
        }
    }
    match whole {
        Some(gz) => Ok(Some(Output {
            name: format!("{}.gz", plain.name),
            bytes: gz,
        })),
        None => {
            i.notes.push(format!(
                "no user data written: it is {} bytes, and more than {USER_DATA_LIMIT} even gzip-compressed, \
                 over EC2's limit; use the AMI ({PACKER_BUILD}), which has no such limit",
                plain.bytes.len()
            ));
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::artifact::{ARTIFACTS, Input};
    use crate::render::{Artifact, Templates, view::View};

    /// The shortcut above holds: whatever the site, the YAML with its files
    /// compressed is never smaller than four thirds of the whole file
    /// gzipped, less the margin; so when that is over the limit, so is it.
    #[test]
    fn files_compressed_one_by_one_are_never_much_smaller_than_the_whole_gzipped() {
        let templates = Templates::load(None).unwrap();
        let mut least = i64::MAX;
        for os in [
            "debian-12",
            "amazon-linux-2023",
            "ubuntu-24.04",
            "amzn-ami-vpc-nat",
        ] {
            for health in ["", "health: {enabled: false}\n"] {
                for n in [0, 1, 2, 5, 10, 20, 40, 80] {
                    let mut yaml = format!(
                        "version: 1\nsite: s\nos: {os}\nvpc_cidrs: [10.0.0.0/16]\n{health}forwards:\n"
                    );
                    for k in 0..n {
                        yaml.push_str(&format!(
                            "  - {{name: f{k}, port: {}, to: 10.0.{}.{}:{}, from: [203.0.113.{}/32]}}\n",
                            20000 + k,
                            k % 200,
                            k % 250 + 1,
                            1000 + k,
                            k % 250
                        ));
                    }
                    if n == 0 {
                        yaml = yaml.replace("forwards:\n", "");
                    }
                    let site =
                        crate::validate::parse(std::path::Path::new("t.yaml"), yaml.as_bytes())
                            .unwrap();
                    let mut view = View::new(&site);
                    let mut context = None;
                    let mut done: Vec<Artifact> = Vec::new();
                    let mut notes = Vec::new();
                    for def in ARTIFACTS.iter().filter(|a| a.applies(&site)) {
                        let mut i = Input::new(
                            def,
                            &site,
                            &templates,
                            &mut view,
                            &mut context,
                            &done,
                            &mut notes,
                        );
                        if def.name == crate::render::artifact::USER_DATA {
                            let before = i.done;
                            i.view_mut().add_files(before, false);
                            let plain = i.template().unwrap().bytes;
                            i.view_mut().add_files(before, true);
                            let files = i.template().unwrap().bytes.len() as i64;
                            let whole = crate::render::gzip::all(&plain).len() as i64;
                            least = least.min(files - whole * 4 / 3);
                            break;
                        }
                        if let Some(out) = (def.render)(&mut i).unwrap() {
                            done.push(Artifact::new(def, out));
                        }
                    }
                }
            }
        }
        assert!(
            least > -(MARGIN as i64),
            "the files compressed one by one came to {least} bytes against four thirds of the whole"
        );
        eprintln!("least difference: {least} bytes");
    }
}
