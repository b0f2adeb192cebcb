//! A warm standby pair (`failover.standby`): the fixed facts that the
//! rendered keepalived and conntrackd configurations, their drop-ins, the
//! fixed `natbake-standby` script and the stack share.
//!
//! The script is not a template, so its paths are written in it as well;
//! a test checks that they are these.

use crate::site::{Site, Standby};
use serde::Serialize;

/// conntrackd's own default UDP port for state sync.
pub const SYNC_PORT: u16 = 3780;
/// VRRP's IP protocol number (keepalived's adverts).
pub const VRRP_PROTOCOL: u8 = 112;
/// keepalived's one virtual address, which it needs at least one of: a
/// host-scoped link-local marker on the loopback device (the floating
/// interface is what moves). Outside EC2's own link-local addresses
/// (169.254.169.x).
pub const ROLE_MARKER: &str = "169.254.254.1";

/// The stack's termination lifecycle hook; the script names it too.
pub const LIFECYCLE_HOOK: &str = "natbake-handover";
/// Seconds the group waits on the hook before it terminates anyway: the
/// script's own wait for the peer (30 s) and its API calls, with room.
pub const HANDOVER_HEARTBEAT: u32 = 120;

/// Where the standby's files are on the instance.
#[derive(Debug, Serialize)]
pub struct Paths {
    pub script: &'static str,
    pub keepalived: &'static str,
    pub keepalived_local: &'static str,
    pub keepalived_dropin: &'static str,
    pub conntrackd_template: &'static str,
    pub conntrackd: &'static str,
    pub conntrackd_lock: &'static str,
    pub conntrackd_socket: &'static str,
    pub conntrackd_dropin: &'static str,
    pub unit: &'static str,
    pub watch_unit: &'static str,
    pub timer: &'static str,
}

/// The standby's files; the installed ones match the artifact table.
pub const PATHS: Paths = Paths {
    script: "/usr/local/sbin/natbake-standby",
    keepalived: "/etc/natbake/keepalived.conf",
    keepalived_local: "/run/natbake/standby/keepalived-local.conf",
    keepalived_dropin: "/etc/systemd/system/keepalived.service.d/50-natbake.conf",
    conntrackd_template: "/etc/natbake/conntrackd.conf.in",
    conntrackd: "/run/natbake/standby/conntrackd.conf",
    conntrackd_lock: "/run/natbake/standby/conntrackd.lock",
    conntrackd_socket: "/run/natbake/standby/conntrackd.ctl",
    conntrackd_dropin: "/etc/systemd/system/conntrackd.service.d/50-natbake.conf",
    unit: "/etc/systemd/system/natbake-standby.service",
    watch_unit: "/etc/systemd/system/natbake-standby-watch.service",
    timer: "/etc/systemd/system/natbake-standby.timer",
};

/// Seconds between the standby's looks at the target lifecycle state
/// (AWS suggests 5) and, less often, at the peer.
pub const WATCH_INTERVAL: u32 = 5;
/// The standby unit's start: a minute of asking the API for the peer,
/// then a takeover alone within the attach timeout (added per site).
const START_BASE: u32 = 90;
/// The handover at a stop: the wait for the peer (30 s) and the API's calls.
pub const STOP_TIMEOUT: u32 = 90;

/// What the standby's templates read.
#[derive(Debug, Serialize)]
pub struct StandbyView {
    /// keepalived's `advert_int`, in seconds (`0.3`).
    pub advert_int: String,
    pub virtual_router_id: u8,
    pub sync_port: u16,
    pub role_marker: &'static str,
    pub paths: Paths,
    pub watch_interval: u32,
    /// The units the image enables: the standby's own and its timer.
    pub enabled_units: String,
    /// natbake-standby.service's start and stop timeouts, seconds.
    pub start_timeout: u32,
    pub stop_timeout: u32,
}

/// The VRRP router id, 1..=255, from the site's name: the pair only
/// hears its own unicast adverts, but two sites' pairs in one subnet should
/// not share one by default.
pub fn virtual_router_id(site: &str) -> u8 {
    // FNV-1a: stable across releases, unlike std's hasher.
    let hash = site.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    u8::try_from(hash % 255).expect("below 255") + 1
}

/// keepalived's interval, seconds with up to two decimals.
fn advert_int(ms: u32) -> String {
    let text = format!("{}.{:02}", ms / 1000, (ms % 1000) / 10);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The view for a standby site.
pub fn view(site: &Site, standby: Standby) -> StandbyView {
    StandbyView {
        advert_int: advert_int(standby.advert_interval_ms),
        virtual_router_id: virtual_router_id(&site.name),
        sync_port: SYNC_PORT,
        role_marker: ROLE_MARKER,
        paths: PATHS,
        watch_interval: WATCH_INTERVAL,
        enabled_units: format!(
            "{} {}",
            crate::render::artifact::STANDBY_UNIT,
            crate::render::artifact::STANDBY_TIMER
        ),
        start_timeout: START_BASE + site.failover.map_or(0, |f| f.attach_timeout) + 30,
        stop_timeout: STOP_TIMEOUT,
    }
}

/// The standby settings of `site`, if it has a standby.
pub fn of(site: &Site) -> Option<Standby> {
    site.failover.and_then(|f| f.standby)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advert_intervals_read_as_keepalived_writes_them() {
        assert_eq!(advert_int(300), "0.3");
        assert_eq!(advert_int(1000), "1");
        assert_eq!(advert_int(1250), "1.25");
        assert_eq!(advert_int(100), "0.1");
        assert_eq!(advert_int(5000), "5");
    }

    #[test]
    fn router_ids_are_in_range_and_stable() {
        assert_eq!(virtual_router_id("pair"), virtual_router_id("pair"));
        for name in ["a", "pair", "corp-prod", "z-very-long-site-name-0123456789"] {
            assert!(virtual_router_id(name) >= 1);
        }
    }

    #[test]
    fn the_fixed_script_uses_these_paths() {
        let script = include_str!("../instance/natbake-standby.sh");
        for (name, path) in [
            ("CONF_FILE", "/etc/natbake/standby.conf"),
            ("STATE", "/run/natbake/standby"),
            ("KEEPALIVED_LOCAL", "$STATE/keepalived-local.conf"),
            ("CONNTRACKD_TEMPLATE", PATHS.conntrackd_template),
            ("CONNTRACKD_CONF", "$STATE/conntrackd.conf"),
            ("LIFECYCLE_HOOK", LIFECYCLE_HOOK),
            (
                "SITE_LIB",
                crate::render::install_path(crate::render::artifact::LIB),
            ),
            (
                "BOOT_SCRIPT",
                crate::render::install_path(crate::render::artifact::SCRIPT),
            ),
            (
                "AWS_LIB",
                crate::render::install_path(crate::render::artifact::AWS_LIB),
            ),
            (
                "FLOATING_KEPT",
                &format!("{}/floating", crate::render::artifact::STATE_DIR),
            ),
        ] {
            assert!(
                script.contains(&format!("\n{name}={path}\n")),
                "{name}={path}"
            );
        }
        let state = "/run/natbake/standby";
        assert_eq!(
            PATHS.keepalived_local,
            format!("{state}/keepalived-local.conf")
        );
        assert_eq!(PATHS.conntrackd, format!("{state}/conntrackd.conf"));
    }
}
