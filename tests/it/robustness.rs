//! No input makes natbake panic: thousands of mutations of the fixture
//! specs go through parsing, validation and (when they still validate)
//! rendering. Deterministic, so a failure reproduces.

use crate::fixtures::{invalid_specs, repo, valid_specs};
use std::path::Path;

/// A small deterministic generator (xorshift), so the test needs no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SIGNIFICANT: &[&[u8]] = &[
    b"[",
    b"]",
    b"{",
    b"}",
    b":",
    b",",
    b"&a ",
    b"*a",
    b"!!str ",
    b"|",
    b">",
    b"'",
    b"\"",
    b"#",
    b"- ",
    b"\n",
    b"\t",
    b"\0",
    b"\xff",
    b"  ",
    b"0",
    b"65536",
    b"-1",
    b"/33",
    b"0.0.0.0/0",
    b"~",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                let s = SIGNIFICANT[rng.below(SIGNIFICANT.len())];
                out.splice(at..at, s.iter().copied());
            }
            2 => out.truncate(at),
            3 if !out.is_empty() => {
                let end = (at + rng.below(40)).min(out.len());
                let piece = out[at.min(end)..end].to_vec();
                let to = rng.below(out.len() + 1);
                out.splice(to..to, piece);
            }
            _ => {
                let end = (at + rng.below(20)).min(out.len());
                out.drain(at.min(end)..end);
            }
        }
    }
    out
}

#[test]
fn mutated_specs_never_panic() {
    let templates = natbake::render::Templates::load(None).unwrap();
    let seeds: Vec<Vec<u8>> = valid_specs()
        .iter()
        .chain(invalid_specs().iter())
        .map(|s| std::fs::read(repo().join(&s.path)).unwrap())
        .filter(|b| b.len() < 20_000)
        .collect();
    let mut rng = Rng(0x5eed_2026_1126);
    let (mut valid, mut invalid) = (0, 0);
    for round in 0..3_000 {
        let seed = &seeds[round % seeds.len()];
        let input = mutate(&mut rng, seed);
        match natbake::validate::parse(Path::new("fuzz.yaml"), &input) {
            Ok(site) => {
                valid += 1;
                natbake::render::render_site(&templates, &site).unwrap();
            }
            Err(e) => {
                invalid += 1;
                assert!(!e.diagnostics().is_empty(), "an error with nothing to say");
            }
        }
    }
    // Both paths were exercised, or the mutations say nothing.
    assert!(
        valid > 50 && invalid > 1_000,
        "valid {valid}, invalid {invalid}"
    );
}
