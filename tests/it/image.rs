//! Minimal Debian 12 (bookworm) root file systems for the boot tests.
//!
//! The image is built with `debootstrap --variant=minbase` from the Debian
//! mirror that this machine's apt sources name, so the test needs no mirror
//! setting of its own and contacts nothing else. Two layers are cached
//! between runs in [`cache_dir`]:
//!
//! - the downloaded packages (`debootstrap --make-tarball`), and
//! - the root file system unpacked from them (`--unpack-tarball`).
//!
//! Both are named after a digest of everything that goes into them, so a
//! changed package list or mirror builds afresh instead of reusing a stale
//! image. Each is built under an exclusive file lock into a `.partial` path
//! and renamed into place when complete: two test processes (or threads) may
//! ask for the same image at once, and a build that is interrupted never
//! leaves anything that looks finished.
//!
//! Every test then gets its own copy of the cached root ([`fresh_root`]), so
//! what one test bakes into its image cannot leak into another's.
//!
//! Package scripts run while the root is configured act on the firewall and
//! sysctls of the network namespace they run in, so everything that runs
//! inside the root runs under `unshare --net` (a new, empty namespace), and
//! under `--mount` and `--pid` so that mounts and stray processes die with it.

use std::env;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use tempfile::TempDir;

use crate::support;

/// The Debian release the images are built from.
pub const SUITE: &str = "bookworm";

/// Overrides where downloads and built roots are kept between runs.
pub const CACHE_DIR_ENV: &str = "NATBAKE_CACHE_DIR";

/// Bump when the way a root is prepared changes in a way the digest of
/// the inputs cannot see, to stop reusing roots built the old way.
const LAYOUT_REVISION: u32 = 1;

/// Limits for the slow steps; generous because the mirror or a busy machine
/// can be slow, but bounded so a hang fails the test instead of the CI run.
const DOWNLOAD_LIMIT: Duration = Duration::from_secs(15 * 60);
const UNPACK_LIMIT: Duration = Duration::from_secs(10 * 60);
const COPY_LIMIT: Duration = Duration::from_secs(3 * 60);

/// Which image to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// The image Packer bakes natbake into: systemd plus the programs that
    /// natbake's scripts call.
    Plain,
    /// A stock cloud image for the launch-template path: the same plus
    /// cloud-init, which installs natbake from user data at first boot.
    CloudInit,
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Plain => "plain",
            Flavor::CloudInit => "cloud-init",
        }
    }

    /// Packages on top of minbase's required set.
    pub fn packages(self) -> Vec<&'static str> {
        let mut packages = vec![
            // Boot with systemd as PID 1; dbus for systemctl's usual paths.
            "systemd",
            "systemd-sysv",
            "dbus",
            // sysctl, iptables-restore, ipset, ip: what configure-pat.sh
            // and provision.sh use.
            "procps",
            "iptables",
            "ipset",
            "iproute2",
            "kmod",
            // IMDSv2 from configure-pat.sh.
            "curl",
            "ca-certificates",
            // The health check's nf_tables generation reader and the AWS
            // client; on every cloud image, where cloud-init needs it.
            "python3",
            // Part of minbase already; named because the scripts rely on
            // them (logger, flock, ...).
            "util-linux",
            "bsdutils",
            // Debian's firewall service, installed but not enabled, as on
            // Debian's own images; a boot test enables it.
            "nftables",
        ];
        if self == Flavor::CloudInit {
            packages.push("cloud-init");
            // debootstrap does not resolve virtual packages:
            // python3-cryptography (cloud-init -> python3-oauthlib) depends on
            // python3-cffi-backend-api-{min,max}, which only this provides.
            packages.push("python3-cffi-backend");
        }
        packages
    }
}

/// Where downloads and built roots are kept between runs: `$NATBAKE_CACHE_DIR`,
/// else `natbake-cache` in cargo's target directory (found from the path of
/// the binary under test, so `CARGO_TARGET_DIR` is honoured).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = env::var_os(CACHE_DIR_ENV) {
        return PathBuf::from(dir);
    }
    let exe = Path::new(env!("CARGO_BIN_EXE_natbake"));
    // target/<profile>/natbake -> target
    let target = exe
        .parent()
        .and_then(Path::parent)
        .expect("the binary under test lives in target/<profile>/");
    target.join("natbake-cache")
}

/// The mirror that apt on this machine uses for `bookworm` `main`, read
/// from /etc/apt/sources.list and /etc/apt/sources.list.d (both the
/// one-line and the deb822 format). Panics when there is none: the test
/// must not guess a mirror.
pub fn debian_mirror() -> String {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            // apt reads only these two suffixes; anything else is disabled.
            .filter(|p| {
                p.extension()
                    .is_some_and(|ext| ext == "list" || ext == "sources")
            })
            .collect();
        more.sort();
        files.extend(more);
    }
    for file in &files {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        let sources = if file.extension().is_some_and(|ext| ext == "sources") {
            parse_deb822_sources(&text)
        } else {
            parse_one_line_sources(&text)
        };
        if let Some(source) = sources.into_iter().find(Source::serves_debian_main) {
            return source.uri.trim_end_matches('/').to_string();
        }
    }
    panic!(
        "no apt source for `deb ... {SUITE} main` over http(s) in {}; \
         the boot test builds its image from the mirror configured there",
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// One `deb` source line (or one URI of a deb822 stanza).
#[derive(Debug, PartialEq)]
struct Source {
    uri: String,
    suites: Vec<String>,
    components: Vec<String>,
}

impl Source {
    fn serves_debian_main(&self) -> bool {
        // debootstrap fetches over http(s) only; `bookworm` itself, not
        // `bookworm-security` or `bookworm-updates`.
        (self.uri.starts_with("http://") || self.uri.starts_with("https://"))
            && self.suites.iter().any(|s| s == SUITE)
            && self.components.iter().any(|c| c == "main")
    }
}

/// `deb [options] URI SUITE COMPONENT...` lines; `deb-src` and comments are
/// ignored.
fn parse_one_line_sources(text: &str) -> Vec<Source> {
    let mut sources = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        else {
            continue;
        };
        let mut rest = rest.trim_start();
        // Options: `[arch=amd64 signed-by=...]`.
        if rest.starts_with('[') {
            match rest.find(']') {
                Some(end) => rest = rest[end + 1..].trim_start(),
                None => continue,
            }
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        sources.push(Source {
            uri: uri.to_string(),
            suites: vec![suite.to_string()],
            components: words.map(str::to_string).collect(),
        });
    }
    sources
}

/// deb822 stanzas (`Types:`, `URIs:`, `Suites:`, `Components:`,
/// `Enabled:`), separated by blank lines; continuation lines (indented) and
/// comments are skipped, since none of the fields needed here spans lines.
fn parse_deb822_sources(text: &str) -> Vec<Source> {
    let mut sources = Vec::new();
    // Stanzas end at a line that is empty or only white space.
    let mut stanzas = vec![Vec::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            stanzas.push(Vec::new());
        } else if let Some(stanza) = stanzas.last_mut() {
            stanza.push(line);
        }
    }
    for stanza in stanzas {
        let mut types = Vec::new();
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        let mut components = Vec::new();
        let mut enabled = true;
        for line in stanza {
            if line.starts_with('#') || line.starts_with(char::is_whitespace) {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let words = || {
                value
                    .split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "types" => types = words(),
                "uris" => uris = words(),
                "suites" => suites = words(),
                "components" => components = words(),
                "enabled" => enabled = value.trim() != "no",
                _ => {}
            }
        }
        if !enabled || !types.iter().any(|t| t == "deb") {
            continue;
        }
        for uri in uris {
            sources.push(Source {
                uri,
                suites: suites.clone(),
                components: components.clone(),
            });
        }
    }
    sources
}

/// What identifies a build: the digest of every input, short enough for a
/// file name.
fn cache_key(flavor: Flavor, mirror: &str) -> String {
    let arch = support::run_stdout(Command::new("dpkg").arg("--print-architecture"));
    let mut hasher = Sha256::new();
    for part in [
        format!("layout={LAYOUT_REVISION}"),
        format!("suite={SUITE}"),
        "variant=minbase".to_string(),
        format!("arch={}", arch.trim()),
        format!("mirror={mirror}"),
        format!("packages={}", flavor.packages().join(",")),
        format!("prepare={}", prepare_script(flavor)),
    ] {
        hasher.update(part.as_bytes());
        hasher.update(b"\n");
    }
    let digest = hasher.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// An exclusive lock on `<cache>/<name>.lock`, held until dropped. `flock`
/// locks belong to the open file, so threads of one process exclude each
/// other as well as separate processes do.
struct CacheLock {
    _file: File,
}

impl CacheLock {
    fn acquire(cache: &Path, name: &str) -> CacheLock {
        let path = cache.join(format!("{name}.lock"));
        let file = File::create(&path)
            .unwrap_or_else(|err| panic!("cannot create lock file {}: {err}", path.display()));
        file.lock()
            .unwrap_or_else(|err| panic!("cannot lock {}: {err}", path.display()));
        CacheLock { _file: file }
    }
}

/// Ready-built root of `flavor`: downloads and unpacks it on first use (a
/// minute or two), reuses the cached one afterwards. Treat it as read-only;
/// use [`fresh_root`] for a copy to change.
pub fn base_root(flavor: Flavor) -> PathBuf {
    let cache = cache_dir();
    fs::create_dir_all(&cache)
        .unwrap_or_else(|err| panic!("cannot create cache {}: {err}", cache.display()));
    let mirror = debian_mirror();
    let key = cache_key(flavor, &mirror);
    let name = format!("{}-{key}", flavor.name());
    let root = cache.join(format!("root-{name}"));
    if root.is_dir() {
        // Only complete roots are ever renamed to this name.
        return root;
    }

    let _lock = CacheLock::acquire(&cache, &name);
    // Someone else may have finished it while we waited for the lock.
    if root.is_dir() {
        return root;
    }
    let tarball = ensure_tarball(&cache, flavor, &name, &mirror);

    let started = Instant::now();
    let partial = cache.join(format!("root-{name}.partial"));
    remove_tree(&partial);
    // Unpacking runs every package's maintainer scripts in a chroot: give
    // them an empty network namespace, a private mount namespace (debootstrap
    // mounts /proc and /sys in the target) and a pid namespace (anything
    // they leave running dies with it).
    let finished = support::run_bounded(
        Command::new("unshare")
            .args(["--mount", "--net", "--pid", "--fork", "--kill-child"])
            .args(["--propagation", "private", "--mount-proc", "--"])
            .arg("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--unpack-tarball={}", tarball.display()))
            .arg(SUITE)
            .arg(&partial)
            .arg(&mirror),
        b"",
        UNPACK_LIMIT,
    );
    if !finished.success() {
        // debootstrap's log inside the target is the one packed into the
        // tarball by the download, not this run's; dpkg says which package
        // failed to configure and why.
        let dpkg = support::run_bounded(
            Command::new("unshare")
                .args(["--mount", "--net", "--pid", "--fork", "--kill-child"])
                .args(["--propagation", "private", "--", "/bin/sh", "-c"])
                .arg(r#"mount -t proc proc "$1/proc" && exec chroot "$1" dpkg --configure -a"#)
                .arg("sh")
                .arg(&partial),
            b"",
            UNPACK_LIMIT,
        );
        panic!(
            "debootstrap could not unpack {} (the half-built root is left in {})\n{}\n{}",
            tarball.display(),
            partial.display(),
            finished.explain(),
            dpkg.explain()
        );
    }

    let prepared = support::run_bounded(
        Command::new("unshare")
            .args(["--mount", "--net", "--pid", "--fork", "--kill-child"])
            .args(["--propagation", "private", "--"])
            .args(["chroot"])
            .arg(&partial)
            .args(["/bin/sh", "-euc", &prepare_script(flavor)])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C"),
        b"",
        Duration::from_secs(60),
    );
    assert!(
        prepared.success(),
        "preparing the root failed\n{}",
        prepared.explain()
    );

    fs::rename(&partial, &root).unwrap_or_else(|err| {
        panic!(
            "cannot rename {} to {}: {err}",
            partial.display(),
            root.display()
        )
    });
    eprintln!(
        "image: built {} root {} in {:.0?}",
        flavor.name(),
        root.display(),
        started.elapsed()
    );
    root
}

/// The cached package download behind `flavor`'s root: every .deb the
/// image was built from, under `var/cache/apt/archives/`.
pub fn package_tarball(flavor: Flavor) -> PathBuf {
    base_root(flavor);
    let name = format!("{}-{}", flavor.name(), cache_key(flavor, &debian_mirror()));
    cache_dir().join(format!("debs-{name}.tgz"))
}

/// Shell run inside a freshly unpacked root (in a chroot, in an empty
/// network namespace) to make it a test image. Part of the cache key.
fn prepare_script(flavor: Flavor) -> String {
    let mut script = String::from(
        r#"
# debootstrap copies the build machine's name and resolver; an image of
# its own should carry neither.
echo natbake-test > /etc/hostname
printf '# no resolver: the boot test has no DNS\n' > /etc/resolv.conf
# The downloaded packages and package lists only make each copy bigger.
rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin
rm -rf /var/lib/apt/lists/*
mkdir -p /var/lib/apt/lists/partial
# The apt timers would try to reach a mirror from inside the test network
# and, failing, show up in `systemctl --failed`; they are not what the
# test is about.
systemctl mask apt-daily.timer apt-daily-upgrade.timer
"#,
    );
    if flavor == Flavor::CloudInit {
        script.push_str(
            r#"
# Left to itself cloud-init's locale module tries to generate en_US.UTF-8,
# which a minbase image cannot; its network module would rewrite the
# lab's interface configuration. Both are image settings, not user data,
# so they live in the image like a cloud vendor's cloud.cfg.d.
cat > /etc/cloud/cloud.cfg.d/90-natbake-test-image.cfg <<'EOF'
locale: C.UTF-8
network:
  config: disabled
EOF
"#,
        );
    }
    script
}

/// The cached package download for `flavor`, made with
/// `debootstrap --make-tarball` if missing. The caller holds the lock.
fn ensure_tarball(cache: &Path, flavor: Flavor, name: &str, mirror: &str) -> PathBuf {
    let tarball = cache.join(format!("debs-{name}.tgz"));
    if tarball.is_file() {
        return tarball;
    }
    let started = Instant::now();
    // debootstrap's scratch directory and the tarball being written.
    let work = cache.join(format!("debs-{name}.partial"));
    let partial = cache.join(format!("debs-{name}.partial.tgz"));
    remove_tree(&work);
    let _ = fs::remove_file(&partial);
    eprintln!(
        "image: downloading {} packages from {mirror} (cached afterwards)",
        flavor.name()
    );
    // Only downloads: no package is unpacked or configured, so this runs in
    // the host's network namespace, the one that reaches the mirror.
    let finished = support::run_bounded(
        Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--include={}", flavor.packages().join(",")))
            .arg(format!("--make-tarball={}", partial.display()))
            .arg(SUITE)
            .arg(&work)
            .arg(mirror),
        b"",
        DOWNLOAD_LIMIT,
    );
    if !finished.success() {
        remove_tree(&work);
        let _ = fs::remove_file(&partial);
        panic!(
            "debootstrap could not download the packages\n{}",
            finished.explain()
        );
    }
    remove_tree(&work);
    fs::rename(&partial, &tarball).unwrap_or_else(|err| {
        panic!(
            "cannot rename {} to {}: {err}",
            partial.display(),
            tarball.display()
        )
    });
    eprintln!(
        "image: downloaded {} in {:.0?}",
        tarball.display(),
        started.elapsed()
    );
    tarball
}

/// Mount points at or below `dir`, as the host sees them. The tests never
/// mount anything in the host's mount namespace; this is how they check.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = dir.to_string_lossy().into_owned();
    mountinfo
        .lines()
        // Field 5 is the mount point (spaces escaped as \040).
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| *point == dir || point.starts_with(&format!("{dir}/")))
        .map(str::to_string)
        .collect()
}

/// Removes a directory tree (a no-op if it is missing), refusing if anything
/// is mounted inside it: deleting through a bind mount of /dev or /proc
/// would do real damage.
fn remove_tree(dir: &Path) {
    if fs::symlink_metadata(dir).is_err() {
        return;
    }
    let mounts = mounts_under(dir);
    assert!(
        mounts.is_empty(),
        "refusing to delete {}: mounted inside it: {mounts:?}",
        dir.display()
    );
    fs::remove_dir_all(dir).unwrap_or_else(|err| panic!("cannot remove {}: {err}", dir.display()));
}

/// A private copy of a cached root, deleted when dropped.
pub struct RootFs {
    /// Holds the copy; `None` only while being dropped.
    dir: Option<TempDir>,
    path: PathBuf,
    flavor: Flavor,
}

impl RootFs {
    /// The root directory of the image (what `/` is to the guest).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// `relative` inside the image, e.g. `etc/natbake/rules.v4`.
    pub fn join(&self, relative: &str) -> PathBuf {
        self.path.join(relative.trim_start_matches('/'))
    }

    /// The scratch directory around the root, for logs that belong to it.
    pub fn scratch(&self) -> &Path {
        self.dir.as_ref().expect("not dropped").path()
    }
}

impl Drop for RootFs {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        // All mounts the tests make live in private mount namespaces, so the
        // host never sees one here. Should one leak all the same, deleting
        // the tree could go through it into /dev or /proc: keep the tree and
        // say so loudly instead.
        let mounts = mounts_under(dir.path());
        if !mounts.is_empty() {
            let kept = dir.keep();
            eprintln!("kept {}", kept.display());
            if !std::thread::panicking() {
                panic!("mounts left under {}: {mounts:?}", kept.display());
            }
            eprintln!("mounts left under {}: {mounts:?}", kept.display());
        }
        // Otherwise dropping `dir` removes the copy.
    }
}

/// A copy of the cached `flavor` root that this test alone may change.
pub fn fresh_root(flavor: Flavor) -> RootFs {
    let base = base_root(flavor);
    let started = Instant::now();
    // Next to the cache, not in /tmp: on the same file system as the cached
    // root (so reflinks work where the file system has them), and with the
    // other big files of the test run, in the target directory.
    let parent = cache_dir().join("scratch");
    fs::create_dir_all(&parent)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", parent.display()));
    let dir = tempfile::Builder::new()
        .prefix(&format!("{}-", flavor.name()))
        .tempdir_in(&parent)
        .unwrap_or_else(|err| panic!("cannot create a directory in {}: {err}", parent.display()));
    let path = dir.path().join("root");
    // -a keeps owners, modes, device nodes and links; reflinks, where the
    // file system has them, make it nearly free.
    let copied = support::run_bounded(
        Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(&base)
            .arg(&path),
        b"",
        COPY_LIMIT,
    );
    assert!(
        copied.success(),
        "copying the cached root failed\n{}",
        copied.explain()
    );
    eprintln!(
        "image: copied the {} root in {:.1?}",
        flavor.name(),
        started.elapsed()
    );
    RootFs {
        dir: Some(dir),
        path,
        flavor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_sources_are_parsed() {
        let text = "\
# deb http://old.example/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://deb.example/debian bookworm main contrib
deb-src http://deb.example/debian bookworm main
deb http://security.example/debian-security bookworm-security main
";
        let sources = parse_one_line_sources(text);
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].uri, "http://deb.example/debian");
        assert!(sources[0].serves_debian_main());
        assert!(!sources[1].serves_debian_main());
    }

    #[test]
    fn deb822_sources_are_parsed() {
        let text = "\
Types: deb
# a comment
URIs: http://deb.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
  \t
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main
";
        let sources = parse_deb822_sources(text);
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0].uri, "http://deb.example/debian");
        assert!(sources[0].serves_debian_main());
    }

    #[test]
    fn the_security_suite_is_not_the_release() {
        let source = Source {
            uri: "http://deb.example/debian-security".into(),
            suites: vec!["bookworm-security".into()],
            components: vec!["main".into()],
        };
        assert!(!source.serves_debian_main());
    }
}
