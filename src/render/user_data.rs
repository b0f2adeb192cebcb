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

/// zopfli is tried only when the default level leaves the file at most
/// this part over the limit. It saves about 5 % on the user data of a site
/// near the limit, 8.5 % at 50 forwards and 20 % only on large rulesets
/// that no compression brings near the limit; a test checks
/// over many sites that past this reach zopfli could not have made the
/// file fit. At twenty times the default's cost, trying it on every file
/// that does not fit would be the largest single cost of a `build`.
const BEST_GAIN_DIVISOR: usize = 12;

/// How far past the limit the default level may go and zopfli still be
/// worth a try.
const BEST_REACH: usize = USER_DATA_LIMIT + USER_DATA_LIMIT / BEST_GAIN_DIVISOR;

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
    let whole = whole_gzipped(&plain.bytes);
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

/// `bytes` gzipped whole if that fits the limit: at the default level, or
/// by zopfli when the default leaves it just over (within [`BEST_REACH`]).
fn whole_gzipped(bytes: &[u8]) -> Option<Vec<u8>> {
    match default_level(bytes, BEST_REACH) {
        Some(gz) if gz.len() <= USER_DATA_LIMIT => Some(gz),
        Some(_) => super::gzip::best_within(bytes, USER_DATA_LIMIT),
        None => None,
    }
}

/// The user data gzipped at the default level, or `None` once past
/// `limit`: in parts, the instance scripts (most of the file, the same
/// bytes for every site) compressed once per thread and reused, so a site
/// pays for compressing its own files only (see
/// [`super::gzip::within_shared`]).
fn default_level(bytes: &[u8], limit: usize) -> Option<Vec<u8>> {
    let shared = super::view::instance_script_ranges(bytes);
    super::gzip::within_shared(bytes, &shared, limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::artifact::{ARTIFACTS, Input};
    use crate::render::{Artifact, Templates, view::View};

    /// Calls `f` with a description, the plain user data and the user data
    /// with its files compressed one by one, for sites of every os, with
    /// and without the health check, from no forwards to 200.
    fn each_sites_user_data(mut f: impl FnMut(&str, Vec<u8>, Vec<u8>)) {
        let templates = Templates::load(None).unwrap();
        for os in [
            "debian-12",
            "amazon-linux-2023",
            "ubuntu-24.04",
            "amzn-ami-vpc-nat",
        ] {
            for health in ["", "health: {enabled: false}\n"] {
                for n in [0, 1, 2, 5, 10, 20, 40, 50, 80, 200] {
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
                            let files = i.template().unwrap().bytes;
                            f(&format!("{os} {health:?} {n} forwards"), plain, files);
                            break;
                        }
                        if let Some(out) = (def.render)(&mut i).unwrap() {
                            done.push(Artifact::new(def, out));
                        }
                    }
                }
            }
        }
    }

    /// The shortcut above holds: whatever the site, the YAML with its files
    /// compressed is never smaller than four thirds of the whole file
    /// gzipped, less the margin; so when that is over the limit, so is it.
    #[test]
    fn files_compressed_one_by_one_are_never_much_smaller_than_the_whole_gzipped() {
        let mut least = i64::MAX;
        each_sites_user_data(|_, plain, files| {
            let whole = default_level(&plain, usize::MAX).unwrap().len() as i64;
            least = least.min(files.len() as i64 - whole * 4 / 3);
        });
        assert!(
            least > -(MARGIN as i64),
            "the files compressed one by one came to {least} bytes against four thirds of the whole"
        );
        eprintln!("least difference: {least} bytes");
    }

    /// Past [`BEST_REACH`] zopfli never makes a site's user data fit (a test of the
    /// sites near enough that it might), so
    /// skipping it there gives what trying it gave: the same file, or none.
    #[test]
    fn zopfli_never_makes_a_file_past_the_reach_fit() {
        let mut most = 0.0_f64;
        each_sites_user_data(|site, plain, _| {
            let default = default_level(&plain, usize::MAX).unwrap();
            let tried_both = if default.len() <= USER_DATA_LIMIT {
                Some(default)
            } else if default.len() > USER_DATA_LIMIT * 13 / 10 {
                // zopfli would have to save 23 %; the most it saves on any
                // site here is 20 %, on 200 forwards with a file 45 % over.
                // These are the slow ones.
                None
            } else {
                let best = crate::render::gzip::best_within(&plain, usize::MAX).unwrap();
                most = most.max(1.0 - best.len() as f64 / default.len() as f64);
                (best.len() <= USER_DATA_LIMIT).then_some(best)
            };
            assert_eq!(whole_gzipped(&plain), tried_both, "{site}");
        });
        eprintln!("most saved by zopfli: {:.2} %", most * 100.0);
    }

    /// zopfli runs only for a file the default level leaves just over the
    /// limit, never for one far over it, which it cannot save.
    #[test]
    fn zopfli_runs_only_within_reach() {
        // Bytes that do not compress: the gzipped size is the length plus
        // a few dozen bytes.
        let noise = |len: usize| -> Vec<u8> {
            let mut x = 0x9e37_79b9_7f4a_7c15_u64;
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 32) as u8
                })
                .collect()
        };
        let runs = || crate::render::gzip::BEST_RUNS.with(std::cell::Cell::get);
        let fits = b"natbake ".repeat(10_000);
        let before = runs();
        assert!(whole_gzipped(&fits).is_some());
        assert_eq!(runs(), before, "a file that fits at the default level");
        assert_eq!(whole_gzipped(&noise(USER_DATA_LIMIT + 200)), None);
        assert_eq!(runs(), before + 1, "a file just over the limit");
        assert_eq!(whole_gzipped(&noise(BEST_REACH + 200)), None);
        assert_eq!(runs(), before + 1, "a file past the reach");
    }

    /// The instance scripts are found in every site's plain user data and
    /// compressed once per thread: each further site compresses only its
    /// own parts, and the result decodes to the user data and is the same
    /// bytes whether the scripts were compressed before or not.
    #[test]
    fn the_scripts_are_compressed_once_and_the_result_is_the_same() {
        let mut plains = Vec::new();
        each_sites_user_data(|site, plain, _| {
            if site.starts_with("debian-12 \"\" ") {
                plains.push(plain);
            }
        });
        assert!(plains.len() >= 5);
        let runs = || crate::render::gzip::SHARED_RUNS.with(std::cell::Cell::get);
        let mut first = Vec::new();
        for plain in &plains {
            let ranges = crate::render::view::instance_script_ranges(plain);
            // One unbroken stretch: the scripts are listed together.
            assert_eq!(ranges.len(), 1, "{ranges:?}");
            let shared: usize = ranges.iter().map(std::ops::Range::len).sum();
            assert!(
                shared * 2 > plain.len() || plain.len() > 100_000,
                "{shared} of {} bytes found shared",
                plain.len()
            );
            first.push(default_level(plain, usize::MAX).unwrap());
        }
        let before = runs();
        for (plain, gz) in plains.iter().zip(&first) {
            assert_eq!(&default_level(plain, usize::MAX).unwrap(), gz);
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back)
                .unwrap();
            assert_eq!(&back, plain);
        }
        assert_eq!(runs(), before, "the scripts were compressed again");
        // In a fresh thread, nothing compressed before: the same bytes.
        let again = std::thread::spawn(move || {
            plains
                .iter()
                .rev()
                .map(|p| default_level(p, usize::MAX).unwrap())
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap();
        assert_eq!(again.into_iter().rev().collect::<Vec<_>>(), first);
    }
}
