//! A standby site's keepalived and conntrackd configurations through the
//! programs that read them, as the instance has them once the fixed
//! script has written this instance's part (`natbake-standby peer`):
//! `keepalived -t` (its configuration test, which also needs the
//! interface to exist: a veth in a throwaway network namespace),
//! conntrackd's own parser (`conntrackd -C FILE -s` parses the whole file
//! before it asks the daemon for statistics; with no daemon running, a
//! file that parses fails only to connect), and the drop-ins with the
//! distribution's units through `systemd-analyze verify`.

use super::{node_script, standby_specs};
use crate::fixtures::render;
use crate::support::{output_of, require_root, run};
use natbake::render::artifact::{
    CONNTRACKD, CONNTRACKD_DROPIN, KEEPALIVED, KEEPALIVED_DROPIN, LIB, SCRIPT, STANDBY_SCRIPT,
    STANDBY_TIMER, STANDBY_UNIT, STANDBY_WATCH_UNIT, UNIT,
};
use natbake::render::install_path;
use std::process::Command;

#[test]
fn keepalived_and_conntrackd_accept_the_rendered_configurations() {
    if !require_root("keepalived -t in a network namespace with a veth") {
        return;
    }
    for spec in standby_specs() {
        let site = render(&spec.path);
        let dir = &site.site_dir;
        let out = run(Command::new("unshare")
            .args(["-m", "-n", "--propagation", "private", "sh"])
            .arg(node_script("config_check.sh"))
            .arg(dir));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("keepalived ok"), "{}: {text}", spec.label);
        assert!(text.contains("conntrackd ok"), "{}: {text}", spec.label);
    }
}

/// The checks above fail on a broken file: a keyword keepalived does not
/// know, a conntrackd clause it does not know.
#[test]
fn the_configuration_checks_catch_a_broken_file() {
    if !require_root("keepalived -t in a network namespace with a veth") {
        return;
    }
    let spec = &standby_specs()[0];
    let site = render(&spec.path);
    let dir = &site.site_dir;
    for (file, from, to) in [
        (KEEPALIVED, "nopreempt", "nopreemptx"),
        (CONNTRACKD, "Checksum on", "Checksumx on"),
    ] {
        let copy = tempfile::tempdir().unwrap();
        run(Command::new("cp")
            .arg("-r")
            .arg(format!("{}/.", dir.display()))
            .arg(copy.path()));
        let path = copy.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from));
        std::fs::write(&path, text.replace(from, to)).unwrap();
        let out = output_of(
            Command::new("unshare")
                .args(["-m", "-n", "--propagation", "private", "sh"])
                .arg(node_script("config_check.sh"))
                .arg(copy.path()),
        );
        assert!(!out.status.success(), "{file} with {to} passed");
    }
}

#[test]
fn drop_ins_pass_systemd_analyze_verify_with_the_distributions_units() {
    for spec in standby_specs() {
        let site = render(&spec.path);
        let dir = &site.site_dir;
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/lib/systemd")).unwrap();
        run(Command::new("cp")
            .args(["-r", "/usr/lib/systemd/system"])
            .arg(r.join("usr/lib/systemd/")));
        for (bin, at) in [
            ("/usr/sbin/keepalived", "usr/sbin/keepalived"),
            ("/usr/sbin/conntrackd", "usr/sbin/conntrackd"),
            ("/bin/kill", "bin/kill"),
        ] {
            let to = r.join(at);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(bin, to).unwrap();
        }
        for name in [
            UNIT,
            SCRIPT,
            LIB,
            KEEPALIVED_DROPIN,
            CONNTRACKD_DROPIN,
            STANDBY_SCRIPT,
            STANDBY_UNIT,
            STANDBY_WATCH_UNIT,
            STANDBY_TIMER,
        ] {
            let installed = r.join(install_path(name).trim_start_matches('/'));
            std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
            std::fs::copy(dir.join(name), installed).unwrap();
        }
        let out = run(Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(format!("--root={}", r.display()))
            .args([
                "keepalived.service",
                "conntrackd.service",
                UNIT,
                STANDBY_UNIT,
                STANDBY_WATCH_UNIT,
                STANDBY_TIMER,
            ]));
        assert!(
            out.stderr.is_empty(),
            "{}: {}",
            spec.label,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_fixed_script_passes_shellcheck_and_bash_n() {
    let script = crate::fixtures::repo().join("instance/natbake-standby.sh");
    run(Command::new("shellcheck").args(["-f", "gcc"]).arg(&script));
    run(Command::new("bash").arg("-n").arg(&script));
}
