//! `user-data.yaml`: the launch template's `#cloud-config`, from its
//! template, made to fit EC2's size limit.
//!
//! The template escapes what it writes with the `yaml` helper; the files it
//! carries are YAML literal blocks, or base64 (cloud-init's `b64` and
//! `gz+b64` encodings) where a literal block could not hold them exactly.

use super::artifact::{Input, Output, PACKER_BUILD};
use anyhow::Result;
use std::io::Write;

/// EC2 refuses user data larger than this, counted before base64.
pub const USER_DATA_LIMIT: usize = 16 * 1024;

/// The user data as EC2 will take it: plain YAML when it fits; else YAML
/// carrying each file gzip-compressed (still text, so it can be read and
/// embedded in other templates); else the plain YAML gzip-compressed whole
/// (which cloud-init also reads); else nothing, and a note saying why.
/// Every form writes the same files byte for byte: those installed on the
/// instance, which the artifact table renders before the user data.
pub(super) fn render(i: &mut Input<'_>) -> Result<Option<Output>> {
    i.view.add_files(i.done, false);
    let plain = i.template()?;
    if plain.bytes.len() <= USER_DATA_LIMIT {
        return Ok(Some(plain));
    }
    i.view.add_files(i.done, true);
    let compressed_files = i.template()?;
    if compressed_files.bytes.len() <= USER_DATA_LIMIT {
        return Ok(Some(compressed_files));
    }
    match gzip_within(&plain.bytes, USER_DATA_LIMIT) {
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

/// Deterministic gzip of all of `bytes` (see [`gzip_within`]).
pub(super) fn gzip(bytes: &[u8]) -> Vec<u8> {
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
