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
}
