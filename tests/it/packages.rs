//! Package installs in an image without the Internet: a tool taken out of
//! the image, and a local apt repository (a folder inside the image, a
//! `file:` source) that holds its package, from the download the image was
//! built from. Also the test that provision.sh waits for another package
//! manager's dpkg lock, and gives up clearly when it is held too long.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::boot::{FIXTURE, in_chroot, provision_with};
use crate::fixtures::{fixture_spec, render};
use crate::image::{self, Flavor, RootFs};
use crate::support;

/// Where the local repository lives inside the image.
const REPO_IN_IMAGE: &str = "srv/natbake-test-repo";

/// Takes `package` out of the image (dpkg --purge, in a chroot in an empty
/// network namespace), leaving what it depends on.
pub fn remove_package(root: &RootFs, package: &str) {
    let run = in_chroot(
        root.path(),
        &format!("dpkg --purge {package}"),
        Duration::from_secs(60),
    );
    assert!(run.success(), "cannot remove {package}\n{}", run.explain());
}

/// Makes a local repository holding `packages` (from the download the
/// image was built from) the image's only apt source: a package mirror
/// that needs no network.
pub fn use_local_repo(root: &RootFs, packages: &[&str]) {
    let tarball = image::package_tarball(root.flavor());
    let unpacked = root.scratch().join("debs");
    fs::create_dir_all(&unpacked).expect("create debs folder");
    let patterns: Vec<String> = packages
        .iter()
        .map(|p| format!("var/cache/apt/archives/{p}_*.deb"))
        .collect();
    support::run(
        Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&unpacked)
            .arg("--wildcards")
            .args(&patterns),
    );
    let repo = root.join(REPO_IN_IMAGE);
    fs::create_dir_all(&repo).expect("create repository folder");
    let mut index = String::new();
    let debs = unpacked.join("var/cache/apt/archives");
    let mut names: Vec<_> = fs::read_dir(&debs)
        .expect("list debs")
        .map(|e| e.expect("dir entry").file_name())
        .collect();
    names.sort();
    for name in names {
        let deb = debs.join(&name);
        fs::copy(&deb, repo.join(&name)).expect("copy deb");
        // The index apt reads: the package's control fields, then where
        // the file is, its size and digest.
        index.push_str(&support::run_stdout(
            Command::new("dpkg-deb").arg("-f").arg(&deb),
        ));
        let bytes = fs::read(&deb).expect("read deb");
        let digest = support::run_stdout(Command::new("sha256sum").arg(&deb));
        index.push_str(&format!(
            "Filename: ./{}\nSize: {}\nSHA256: {}\n\n",
            name.to_string_lossy(),
            bytes.len(),
            digest.split_whitespace().next().expect("a digest")
        ));
    }
    fs::write(repo.join("Packages"), index).expect("write Packages");
    fs::write(
        root.join("etc/apt/sources.list"),
        format!("deb [trusted=yes] file:/{REPO_IN_IMAGE} ./\n"),
    )
    .expect("write sources.list");
}

/// Another process holding the dpkg lock of an image, as unattended-upgrades
/// or cloud-init's package module would; let go when dropped.
struct LockHolder {
    child: std::process::Child,
}

impl LockHolder {
    /// Locks `root`'s /var/lib/dpkg/lock-frontend for at most `seconds`.
    fn hold(root: &RootFs, seconds: u64) -> LockHolder {
        let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/hold_lock.py");
        let mut child = Command::new("python3")
            .arg(helper)
            .arg(root.join("var/lib/dpkg/lock-frontend"))
            .arg(seconds.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start hold_lock.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read from hold_lock.py");
        assert_eq!(line.trim(), "locked", "hold_lock.py did not take the lock");
        LockHolder { child }
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// provision.sh on Debian with a tool to install while another package
/// manager holds the dpkg lock: it waits and succeeds once the lock is
/// let go, and with a lock held past NATBAKE_WAIT_TIMEOUT it fails saying
/// why, within that time.
#[test]
fn provision_waits_for_the_dpkg_lock_and_gives_up_clearly() {
    if !support::require_root("provision.sh waits for the dpkg lock") {
        return;
    }
    let rendered = render(&fixture_spec(FIXTURE));
    let site = &rendered.site_dir;
    let root = image::fresh_root(Flavor::Plain);
    remove_package(&root, "curl");
    use_local_repo(&root, &["curl"]);

    // Held longer than the wait allows: a clear failure, in about that time.
    let holder = LockHolder::hold(&root, 60);
    let started = Instant::now();
    let run = provision_with(&root, site, "NATBAKE_WAIT_TIMEOUT=3");
    let took = started.elapsed();
    drop(holder);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        !run.success()
            && said.contains("/var/lib/dpkg/lock-frontend")
            && said.contains("NATBAKE_WAIT_TIMEOUT"),
        "provision.sh did not fail clearly on a held dpkg lock\n{}",
        run.explain()
    );
    assert!(
        took < Duration::from_secs(30),
        "provision.sh took {took:.1?} to give up on the lock"
    );
    assert!(
        !root.join("usr/bin/curl").exists(),
        "curl was installed although the lock was held"
    );

    // Let go after a few seconds: provision.sh waits, then succeeds.
    let holder = LockHolder::hold(&root, 5);
    let started = Instant::now();
    let run = provision_with(&root, site, "NATBAKE_WAIT_TIMEOUT=60");
    let took = started.elapsed();
    drop(holder);
    assert!(
        run.success(),
        "provision.sh failed after the lock was let go\n{}",
        run.explain()
    );
    assert!(
        took >= Duration::from_secs(4),
        "provision.sh finished in {took:.1?}, before the lock was let go\n{}",
        run.explain()
    );
    assert!(root.join("usr/bin/curl").exists(), "curl was not installed");
    eprintln!("dpkg lock: waited, then succeeded after {took:.1?}");
}
