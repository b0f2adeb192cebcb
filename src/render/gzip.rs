//! Deterministic gzip (RFC 1952): no file name, modification time 0, the
//! same bytes for the same input on every machine.
//!
//! Two strengths: zlib-rs's default level, fast, for everything; and
//! zopfli, for the few inputs the default leaves just over a limit (the
//! user data of a site near EC2's 16 KiB). zopfli searches far longer for
//! the same deflate format that every gzip reader takes, cloud-init's
//! included: on natbake's user data it writes 4–8 % fewer bytes than the
//! default level and 3–5 % fewer than deflate's best level (about 700
//! bytes of a 16 KB file), in about a fifth of a second, paid only where
//! it matters.
//!
//! Each thread keeps one deflate state and resets it between files. A
//! fresh encoder per file allocates a few hundred kilobytes and frees them
//! again; between those, the small values a long `build` keeps (one per
//! site) land on the heap and pin it, so peak memory grew with the number
//! of sites. One reused state per thread keeps it flat.

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use std::cell::RefCell;

thread_local! {
    static DEFLATE: RefCell<Compress> = RefCell::new(Compress::new(Compression::default(), false));
}

#[cfg(test)]
thread_local! {
    /// How often this thread compressed with zopfli, for the tests of when
    /// that is worth it.
    pub static BEST_RUNS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Magic, deflate, no flags, mtime 0, extra flags 0, OS unknown: the
/// header flate2's `GzBuilder` writes for the default level.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// `bytes` gzip-compressed, or `None` as soon as the output passes `limit`:
/// a ruleset of thousands of forwards need not be compressed whole to learn
/// that it does not fit.
pub fn within(bytes: &[u8], limit: usize) -> Option<Vec<u8>> {
    compress(bytes, limit)
}

/// `bytes` gzip-compressed by zopfli, or `None` when that is larger than
/// `limit`: for an input that the default level leaves over it.
pub fn best_within(bytes: &[u8], limit: usize) -> Option<Vec<u8>> {
    #[cfg(test)]
    BEST_RUNS.with(|n| n.set(n.get() + 1));
    let mut out = Vec::with_capacity(bytes.len() / 3 + 64);
    // Five rounds instead of zopfli's default fifteen: within a few bytes
    // of its size on natbake's user data (15,737 against 15,733), in two
    // thirds of the time (0.13 s against 0.21 s).
    let options = zopfli::Options {
        iteration_count: std::num::NonZeroU64::new(5)?,
        ..zopfli::Options::default()
    };
    zopfli::compress(options, zopfli::Format::Gzip, bytes, &mut out).ok()?;
    (out.len() <= limit).then_some(out)
}

fn compress(bytes: &[u8], limit: usize) -> Option<Vec<u8>> {
    DEFLATE.with(|cell| {
        let mut z = cell.borrow_mut();
        z.reset();
        let mut out = Vec::with_capacity(HEADER.len() + bytes.len() / 3 + 64);
        out.extend_from_slice(&HEADER);
        let mut rest = bytes;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            let before = z.total_in();
            let status = z.compress_vec(rest, &mut out, FlushCompress::Finish).ok()?;
            let used = usize::try_from(z.total_in() - before).ok()?;
            rest = &rest[used..];
            if out.len() > limit {
                return None;
            }
            if status == Status::StreamEnd {
                break;
            }
        }
        let mut crc = Crc::new();
        crc.update(bytes);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        // ISIZE is the input length modulo 2^32: the truncation is the format.
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        (out.len() <= limit).then_some(out)
    })
}

/// deflate's window: how far back a match may reach, so how much of what
/// comes before a part is worth priming its compressor with.
const WINDOW: usize = 32 * 1024;

/// How many shared stretches each thread keeps compressed: one per
/// distinct set of instance scripts in a build (they differ by os only in
/// the rare case a script does).
const SHARED_KEPT: usize = 8;

/// A stretch of input marked shared, compressed once: by a fresh
/// compressor, sync-flushed.
struct SharedRun {
    bytes: Vec<u8>,
    deflated: Vec<u8>,
}

thread_local! {
    static SHARED: RefCell<Vec<SharedRun>> = const { RefCell::new(Vec::new()) };
}

#[cfg(test)]
thread_local! {
    /// How often this thread compressed a shared stretch, for the tests of
    /// the cache.
    pub static SHARED_RUNS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// `bytes` gzip-compressed in parts, or `None` as soon as the output passes
/// `limit`: for an input of which the `shared` ranges (in order, not
/// overlapping) recur byte for byte in many inputs, as natbake's instance
/// scripts do in every site's user data. The ranges cut the input into
/// parts, each compressed by its own run of the default level and
/// sync-flushed (ending on a byte boundary), the last one finished: so the
/// parts' deflate output, one after the other, is one deflate stream that
/// every gzip reader takes. A shared part is compressed from nothing (it
/// refers to none of the input before it), so it is the same bytes in
/// every input and each thread compresses it once; any other part's
/// compressor is primed with the window of the input before it (its
/// matches may reach back into the earlier parts, as in one stream). An
/// input pays only for its own parts. The output depends on the bytes and
/// the ranges only, never on what was compressed before. The price: the
/// shared parts cannot refer to what comes before them, and each cut ends
/// a block; about 2 % on a site's user data (355 bytes of 17,000).
pub fn within_shared(
    bytes: &[u8],
    shared: &[std::ops::Range<usize>],
    limit: usize,
) -> Option<Vec<u8>> {
    let mut cuts: Vec<(std::ops::Range<usize>, bool)> = Vec::with_capacity(shared.len() * 2 + 1);
    let mut at = 0;
    for r in shared {
        if r.start < at || r.end > bytes.len() || r.is_empty() {
            continue;
        }
        if r.start > at {
            cuts.push((at..r.start, false));
        }
        cuts.push((r.clone(), true));
        at = r.end;
    }
    if at < bytes.len() || cuts.is_empty() {
        cuts.push((at..bytes.len(), false));
    }
    let mut out = Vec::with_capacity(HEADER.len() + bytes.len() / 3 + 64);
    out.extend_from_slice(&HEADER);
    DEFLATE.with(|cell| {
        let mut z = cell.borrow_mut();
        let last = cuts.len() - 1;
        for (k, (range, is_shared)) in cuts.iter().enumerate() {
            let part = &bytes[range.clone()];
            if *is_shared && k != last {
                SHARED.with(|cache| -> Option<()> {
                    let mut cache = cache.borrow_mut();
                    let found = cache.iter().position(|run| run.bytes == part);
                    let i = match found {
                        Some(i) => i,
                        None => {
                            #[cfg(test)]
                            SHARED_RUNS.with(|n| n.set(n.get() + 1));
                            let mut deflated = Vec::with_capacity(part.len() / 3 + 64);
                            deflate_part(&mut z, &[], part, false, &mut deflated, usize::MAX)?;
                            if cache.len() == SHARED_KEPT {
                                cache.remove(0);
                            }
                            cache.push(SharedRun {
                                bytes: part.to_vec(),
                                deflated,
                            });
                            cache.len() - 1
                        }
                    };
                    out.extend_from_slice(&cache[i].deflated);
                    Some(())
                })?;
            } else {
                let dict = &bytes[range.start.saturating_sub(WINDOW)..range.start];
                deflate_part(&mut z, dict, part, k == last, &mut out, limit)?;
            }
            if out.len() > limit {
                return None;
            }
        }
        Some(())
    })?;
    let mut crc = Crc::new();
    crc.update(bytes);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE is the input length modulo 2^32: the truncation is the format.
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    (out.len() <= limit).then_some(out)
}

/// Raw deflate of `part` appended to `out` by a reset compressor primed
/// with `dict`: finished when `last`, else sync-flushed. `None` as soon as
/// `out` passes `limit`.
fn deflate_part(
    z: &mut Compress,
    dict: &[u8],
    part: &[u8],
    last: bool,
    out: &mut Vec<u8>,
    limit: usize,
) -> Option<()> {
    z.reset();
    if !dict.is_empty() {
        z.set_dictionary(dict).ok()?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut rest = part;
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        let before = z.total_in();
        let status = z.compress_vec(rest, out, flush).ok()?;
        let used = usize::try_from(z.total_in() - before).ok()?;
        rest = &rest[used..];
        if out.len() > limit {
            return None;
        }
        // A sync flush is complete once all input is in and the compressor
        // stopped with room left in the output.
        let done = if last {
            status == Status::StreamEnd
        } else {
            rest.is_empty() && out.len() < out.capacity()
        };
        if done {
            return Some(());
        }
    }
}

/// `bytes` gzip-compressed, whatever the size.
pub fn all(bytes: &[u8]) -> Vec<u8> {
    within(bytes, usize::MAX).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    fn reference(bytes: &[u8], level: flate2::Compression) -> Vec<u8> {
        let mut enc = flate2::GzBuilder::new().mtime(0).write(Vec::new(), level);
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn same_bytes_as_flate2s_encoder_and_decodes_back() {
        let big: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 % 61 + b' ')
            .collect();
        for input in [&b""[..], b"x", b"#!/bin/bash\necho hello\n", &big] {
            let gz = super::all(input);
            assert_eq!(gz, reference(input, flate2::Compression::default()));
            // zopfli on 300 KB takes seconds; the user data it is for is
            // a fifth of that.
            let best = super::best_within(&input[..input.len().min(60_000)], usize::MAX).unwrap();
            for (gz, input) in [(gz, input), (best, &input[..input.len().min(60_000)])] {
                let mut back = Vec::new();
                flate2::read::GzDecoder::new(&gz[..])
                    .read_to_end(&mut back)
                    .unwrap();
                assert_eq!(back, input);
            }
        }
    }

    /// What zopfli is for: natbake's own scripts, which the default level
    /// and deflate's best level leave hundreds of bytes larger.
    #[test]
    fn zopfli_is_smaller_on_natbakes_scripts() {
        let mut text = Vec::new();
        for t in [
            "configure-pat.sh",
            "natbake-lib.sh",
            "natbake-health.sh",
            "natbake-status.sh",
        ] {
            text.extend(crate::render::instance::installed(t));
        }
        let default = super::all(&text).len();
        let deflate_best = reference(&text, flate2::Compression::best()).len();
        let best = super::best_within(&text, usize::MAX).unwrap().len();
        assert!(
            best * 100 < deflate_best * 98 && deflate_best <= default,
            "zopfli {best}, deflate's best {deflate_best}, default {default}"
        );
    }

    #[test]
    fn gives_up_past_the_limit() {
        let text = b"natbake ".repeat(1000);
        let gz = super::all(&text);
        assert_eq!(super::within(&text, gz.len()), Some(gz.clone()));
        assert_eq!(super::within(&text, gz.len() - 1), None);
    }

    /// Compressed in parts with shared stretches: the same bytes whatever
    /// was compressed before on the thread, decoding back to the input, a
    /// shared stretch compressed once however often it recurs, and nothing
    /// past the limit.
    #[test]
    fn shared_parts_decode_back_and_do_not_depend_on_the_cache() {
        let script: Vec<u8> = (0..40_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 15) as u8 % 23 + b'a')
            .collect();
        // A site: its own text, half the script, its own line, the other
        // half, its own text; the halves are the shared ranges.
        let site = |n: u32| -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
            let mut b = format!("site {n}\n").repeat(50 + n as usize).into_bytes();
            let start = b.len();
            b.extend_from_slice(&script[..20_000]);
            let mid = b.len();
            b.extend(format!("unit of site {n}\n").bytes());
            let start2 = b.len();
            b.extend_from_slice(&script[20_000..]);
            let end = b.len();
            b.extend(format!("end {n}\n").repeat(9).bytes());
            (b, vec![start..mid, start2..end])
        };
        let runs = || super::SHARED_RUNS.with(std::cell::Cell::get);
        let inputs: Vec<_> = (0..4).map(site).collect();
        let before = runs();
        let first: Vec<Vec<u8>> = inputs
            .iter()
            .map(|(b, r)| super::within_shared(b, r, usize::MAX).unwrap())
            .collect();
        assert_eq!(runs(), before + 2, "each shared stretch once");
        for ((b, r), gz) in inputs.iter().zip(&first) {
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(&back, b);
            // Near what compressing the whole at once gives.
            let whole = super::all(b).len();
            assert!(gz.len() < whole + 600, "{} against {whole}", gz.len());
            assert_eq!(super::within_shared(b, r, gz.len()), Some(gz.clone()));
            assert_eq!(super::within_shared(b, r, gz.len() - 1), None);
        }
        // In a fresh thread, nothing compressed before: the same bytes.
        let cold = std::thread::scope(|s| {
            s.spawn(|| {
                inputs
                    .iter()
                    .rev()
                    .map(|(b, r)| super::within_shared(b, r, usize::MAX).unwrap())
                    .collect::<Vec<_>>()
            })
            .join()
            .unwrap()
        });
        assert_eq!(cold.into_iter().rev().collect::<Vec<_>>(), first);
        // No shared range: the same as compressing the whole.
        let b = &script[..];
        assert_eq!(
            super::within_shared(b, &[], usize::MAX),
            Some(super::all(b))
        );
    }
}
