//! Deterministic gzip (RFC 1952): no file name, modification time 0, the
//! same bytes for the same input on every machine.
//!
//! Two strengths: the default level, fast, for everything; and the best
//! level, for the few inputs the default leaves just over a limit (the
//! user data of a site near EC2's 16 KiB). zlib-rs's default level trades
//! a few hundred bytes of such a file for speed; its best level wins them
//! back in about three times the time, paid only where it matters.
//!
//! Each thread keeps one deflate state per level and resets it between files. A
//! fresh encoder per file allocates a few hundred kilobytes and frees them
//! again; between those, the small values a long `build` keeps (one per
//! site) land on the heap and pin it, so peak memory grew with the number
//! of sites. One reused state per thread keeps it flat.

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use std::cell::RefCell;

thread_local! {
    static DEFLATE: RefCell<Compress> = RefCell::new(Compress::new(Compression::default(), false));
    static DEFLATE_BEST: RefCell<Compress> = RefCell::new(Compress::new(Compression::best(), false));
}

/// Magic, deflate, no flags, mtime 0, extra flags (0 for the default level,
/// 2 for the best), OS unknown: the header flate2's `GzBuilder` writes for
/// these settings.
const fn header(best: bool) -> [u8; 10] {
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, if best { 2 } else { 0 }, 0xff]
}

/// `bytes` gzip-compressed, or `None` as soon as the output passes `limit`:
/// a ruleset of thousands of forwards need not be compressed whole to learn
/// that it does not fit.
pub fn within(bytes: &[u8], limit: usize) -> Option<Vec<u8>> {
    compress(&DEFLATE, false, bytes, limit)
}

/// Like [`within`], at deflate's best level: for an input that the default
/// level leaves over `limit`. It too gives up as soon as it passes it.
pub fn best_within(bytes: &[u8], limit: usize) -> Option<Vec<u8>> {
    compress(&DEFLATE_BEST, true, bytes, limit)
}

fn compress(
    state: &'static std::thread::LocalKey<RefCell<Compress>>,
    best: bool,
    bytes: &[u8],
    limit: usize,
) -> Option<Vec<u8>> {
    state.with(|cell| {
        let mut z = cell.borrow_mut();
        z.reset();
        let header = header(best);
        let mut out = Vec::with_capacity(header.len() + bytes.len() / 3 + 64);
        out.extend_from_slice(&header);
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
            let best = super::best_within(input, usize::MAX).unwrap();
            assert_eq!(best, reference(input, flate2::Compression::best()));
            for gz in [gz, best] {
                let mut back = Vec::new();
                flate2::read::GzDecoder::new(&gz[..])
                    .read_to_end(&mut back)
                    .unwrap();
                assert_eq!(back, input);
            }
        }
    }

    /// What the best level is for: natbake's own scripts, which the
    /// default level leaves hundreds of bytes larger.
    #[test]
    fn the_best_level_is_smaller_on_natbakes_scripts() {
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
        let best = super::best_within(&text, usize::MAX).unwrap().len();
        assert!(best < default, "best {best}, default {default}");
    }

    #[test]
    fn gives_up_past_the_limit() {
        let text = b"natbake ".repeat(1000);
        let gz = super::all(&text);
        assert_eq!(super::within(&text, gz.len()), Some(gz.clone()));
        assert_eq!(super::within(&text, gz.len() - 1), None);
    }
}
