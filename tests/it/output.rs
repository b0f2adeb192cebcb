//! Replacing a site folder survives a kill at any moment: `OUT/<site>` is
//! always the complete previous folder or the complete new one, and the
//! next run into the same output folder removes what the killed one left.

use crate::fixtures::{assert_success, natbake, repo};
use natbake::render::sha256_hex;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Instant;

/// Two versions of the corp-prod spec that render differently, and what a
/// complete folder of each holds (its SHA256SUMS, which lists every file).
struct Versions {
    _dir: tempfile::TempDir,
    old: PathBuf,
    new: PathBuf,
    old_sums: Vec<u8>,
    new_sums: Vec<u8>,
}

impl Versions {
    fn new() -> Versions {
        let dir = tempfile::tempdir().unwrap();
        let seed = std::fs::read_to_string(repo().join("images/corp-prod.yaml")).unwrap();
        let write = |name: &str, description: &str| {
            let path = dir.path().join(name);
            let text = seed.replace(
                "description: Oracle access for DDL scripts",
                &format!("description: {description}"),
            );
            assert_ne!(text, seed);
            std::fs::write(&path, text).unwrap();
            path
        };
        let old = write("old.yaml", "the previous render");
        let new = write("new.yaml", "the next render");
        let sums = |spec: &Path| {
            let out = dir.path().join("reference");
            assert!(render(spec, &out, &[]).success());
            std::fs::read(out.join("corp-prod/SHA256SUMS")).unwrap()
        };
        let old_sums = sums(&old);
        let new_sums = sums(&new);
        assert_ne!(old_sums, new_sums);
        Versions {
            _dir: dir,
            old,
            new,
            old_sums,
            new_sums,
        }
    }

    /// Panics unless `site` is a complete render of one of the versions;
    /// returns whether it is the new one.
    fn assert_whole(&self, site: &Path, context: &str) -> bool {
        let sums = std::fs::read(site.join("SHA256SUMS"))
            .unwrap_or_else(|e| panic!("{context}: no complete folder at {}: {e}", site.display()));
        let is_new = sums == self.new_sums;
        assert!(
            is_new || sums == self.old_sums,
            "{context}: SHA256SUMS is neither version's"
        );
        let mut listed = vec!["SHA256SUMS".to_string()];
        for line in String::from_utf8(sums).unwrap().lines() {
            let (digest, name) = line.split_once("  ").unwrap();
            let bytes = std::fs::read(site.join(name))
                .unwrap_or_else(|e| panic!("{context}: {name} is missing: {e}"));
            assert_eq!(
                sha256_hex(&bytes),
                digest,
                "{context}: {name} is incomplete"
            );
            listed.push(name.to_string());
        }
        listed.sort();
        assert_eq!(entries(site), listed, "{context}: extra files");
        is_new
    }
}

fn render(spec: &Path, out: &Path, env: &[(&str, &str)]) -> ExitStatus {
    command(spec, out, env).status().unwrap()
}

fn command(spec: &Path, out: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = natbake();
    cmd.arg("render")
        .arg(spec)
        .arg("-o")
        .arg(out)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A run of another site into the same output folder: it must clean up
/// after the killed run and leave corp-prod whole.
fn next_run_cleans_up(v: &Versions, out: &Path, context: &str) -> bool {
    assert_success(
        &natbake()
            .args(["render", "images/media-edge.yaml", "-o"])
            .arg(out)
            .output()
            .unwrap(),
        "the next run",
    );
    assert_eq!(
        entries(out),
        ["corp-prod", "media-edge"],
        "{context}: the next run removes what the killed one left"
    );
    v.assert_whole(
        &out.join("corp-prod"),
        &format!("{context}, after the next run"),
    )
}

/// The process dies right after each step of a replacement, with folders
/// swapped in one step and, as on file systems that cannot swap, in two.
#[test]
fn a_kill_between_the_steps_of_a_replacement_leaves_a_whole_folder() {
    let v = Versions::new();
    for (two_steps, step, new_in_place) in [
        (false, "staged", false),
        (false, "exchanged", true),
        (true, "staged", false),
        (true, "moved-aside", false),
    ] {
        let context = format!("killed after `{step}` (two steps: {two_steps})");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        assert!(render(&v.old, &out, &[]).success());
        let mut env = vec![("NATBAKE_TEST_CRASH_AFTER", step)];
        if two_steps {
            env.push(("NATBAKE_TEST_NO_EXCHANGE", "1"));
        }
        let status = render(&v.new, &out, &env);
        assert!(!status.success(), "{context}: the run was not stopped");
        let site = out.join("corp-prod");
        if step == "moved-aside" {
            // The one moment without a folder at the site's name: the
            // previous one is whole under the name the next run restores.
            assert!(!site.exists(), "{context}");
            let aside: Vec<String> = entries(&out)
                .into_iter()
                .filter(|e| e.starts_with(".corp-prod.old-"))
                .collect();
            assert_eq!(aside.len(), 1, "{context}: {:?}", entries(&out));
            assert!(!v.assert_whole(&out.join(&aside[0]), &context));
        } else {
            assert_eq!(v.assert_whole(&site, &context), new_in_place, "{context}");
        }
        assert_eq!(next_run_cleans_up(&v, &out, &context), new_in_place);
    }
}

/// SIGKILL at moments spread over a whole run, old and new version in
/// turn: the site folder is whole after every kill, and one more run
/// leaves nothing else behind.
#[test]
fn sigkill_at_any_moment_leaves_a_whole_folder() {
    let v = Versions::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    assert!(render(&v.old, &out, &[]).success());
    // How long a whole run takes here, the slowest of three.
    let full = (0..3)
        .map(|_| {
            let start = Instant::now();
            assert!(render(&v.new, &out, &[]).success());
            start.elapsed()
        })
        .max()
        .unwrap();
    let kills = 60;
    let mut killed_mid_run = 0;
    for i in 0..kills {
        let spec = if i % 2 == 0 { &v.old } else { &v.new };
        let mut child = command(spec, &out, &[]).spawn().unwrap();
        std::thread::sleep(full.mul_f64(i as f64 / kills as f64));
        let _ = child.kill();
        let status = child.wait().unwrap();
        killed_mid_run += usize::from(!status.success());
        v.assert_whole(
            &out.join("corp-prod"),
            &format!("kill {i} after {:?}", full),
        );
    }
    assert!(
        killed_mid_run >= kills / 4,
        "only {killed_mid_run} of {kills} kills landed during a run"
    );
    next_run_cleans_up(&v, &out, "after the kills");
}
