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
    match super::gzip::within(&plain.bytes, USER_DATA_LIMIT) {
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
