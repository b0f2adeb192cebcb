//! The view model every template reads.
//!
//! Templates get precomputed, typed values rather than the raw spec: strict
//! mode catches a misspelt `{{name}}` but not a misspelt `{{#if name}}`, so
//! templates should need as little logic as possible. Text from the spec
//! stays raw here; templates escape it with the helper for their format.

use super::artifact::{self, ARTIFACTS, STATE_DIR, install_path};
use super::{Artifact, escape, ipsets, rules};
use crate::os::{Boot, Packages};
use crate::site::{Partition, Site};
use serde::Serialize;

/// Conntrack fill at which the health check fails: well before full, when
/// the kernel starts dropping new connections.
pub const CONNTRACK_LIMIT_PERCENT: u32 = 90;

/// Seconds configure-pat.sh gives the floating interface's device, its
/// metadata (which EC2 publishes a while after the device appears) and its
/// configuration once the interface is attached, however late.
pub const POST_ATTACH: u32 = 60;

/// natbake.service's start timeout without failover (its template says
/// 120): the lock (60), metadata (5) and the ruleset, with room to spare.
pub const BOOT_TIMEOUT: u32 = 120;

/// What configure-pat.sh may take besides the wait for the floating
/// interface: its lock (60 s), metadata for the VPC check (5), the last
/// turn of API calls past the wait (12), the device and its configuration
/// ([`POST_ATTACH`]), the ruleset (20) and the unhealthy report of a
/// failure (20), rounded up.
pub const BOOT_AROUND_ATTACH: u32 = 180;

/// What natbake-health may take besides one repair (a run of
/// configure-pat.sh, bounded by natbake.service's start timeout): its lock
/// before and after the repair (60 s each), a look at the floating
/// interface before and after (each 20 for metadata and 20 for the EC2 API
/// now and then), the unhealthy report (20), the metrics (20) and reading
/// the ruleset twice (20 each).
pub const HEALTH_AROUND_REPAIR: u32 = 60 + 60 + 2 * (20 + 20) + 20 + 20 + 20 + 20;

#[derive(Debug, Serialize)]
pub struct View {
    pub version: &'static str,
    pub site: String,
    pub description: Option<String>,
    pub spec_sha256: String,
    pub os: &'static str,
    pub arch: &'static str,
    pub systemd: bool,
    pub legacy: bool,
    /// Set only with `failover.floating_eni`.
    pub failover: Option<FailoverView>,
    /// Set only with `failover.standby`: keepalived's and conntrackd's
    /// settings and where the standby's files go.
    pub standby: Option<crate::standby::StandbyView>,
    /// Whether the scripts call AWS (failover or metrics), and so get
    /// natbake-aws.sh and natbake-aws.
    pub aws: bool,
    pub vpc_cidrs: Vec<String>,
    pub egress: bool,
    pub sysctl: Vec<KeyValue>,
    pub tables: Vec<rules::Table>,
    /// The sets counting each forward's bytes (none without forwards).
    pub ipsets: Vec<ipsets::IpSet>,
    /// Whether the site has those sets, and so needs the `ipset` tool:
    /// with forwards, on every os but the legacy AWS NAT AMI.
    pub byte_sets: bool,
    /// The sets' names: from the clients, back to them.
    pub ipset_in: &'static str,
    pub ipset_out: &'static str,
    pub ami: AmiView,
    /// Prints the image's installed packages, one tab-separated line each.
    pub package_query: &'static str,
    /// Shell lines installing the tools the boot step misses, shared by
    /// provision.sh and the user data.
    pub install_script: String,
    /// The same as a YAML block scalar for the user data.
    pub install_script_yaml: String,
    /// Shell lines that take NAT over from the AWS NAT AMI's own boot
    /// pieces, shared by provision.sh and the user data (legacy os only).
    pub legacy_takeover: String,
    /// The same as a YAML block scalar for the user data.
    pub legacy_takeover_yaml: String,
    /// Where the installed artifacts go, for templates that name them.
    pub paths: Paths,
    /// The systemd unit's name.
    pub unit: &'static str,
    /// The health check's systemd unit and timer names.
    pub health_unit: &'static str,
    pub health_timer: &'static str,
    /// Whether the site gets the health check (unless `health.enabled:
    /// false`).
    pub health: bool,
    /// Seconds between two health checks.
    pub health_interval: u32,
    /// Where there is no systemd, the cron lines that run the check about
    /// every `health_interval` seconds.
    pub health_cron: Vec<CronLine>,
    /// The health check unit's start timeout: the longest repair
    /// (natbake.service's start timeout) plus what the check does around it
    /// ([`HEALTH_AROUND_REPAIR`]), so that systemd never stops a check that
    /// is still within its own bounds.
    pub health_unit_timeout: u32,
    /// The files this os gets installed, in the artifact table's order.
    pub installed: Vec<InstalledView>,
    /// An extended regular expression matching the file name of each
    /// installed artifact, for picking their SHA256SUMS lines.
    pub installed_names_ere: String,
    /// Files the user data writes (filled after they are rendered).
    pub files: Vec<FileView>,
}

/// Install paths of the artifacts that templates name, from the artifact
/// table.
#[derive(Debug, Serialize)]
pub struct Paths {
    pub rules: &'static str,
    pub ipsets: &'static str,
    pub sysctl: &'static str,
    pub script: &'static str,
    pub unit: &'static str,
    pub aws_lib: &'static str,
    pub aws_program: &'static str,
    pub lib: &'static str,
    pub health: &'static str,
    pub status: &'static str,
    pub health_unit: &'static str,
    pub health_timer: &'static str,
    pub health_cron: &'static str,
    /// Where the scripts keep volatile state (a tmpfs, emptied at boot).
    pub state: &'static str,
}

/// One line of the health check's cron file: a schedule, and the seconds
/// to wait after it fires (cron counts in minutes).
#[derive(Debug, Serialize)]
pub struct CronLine {
    pub schedule: String,
    pub delay: u32,
}

/// Cron lines that run a command about every `interval` seconds, never
/// more often: under a minute, as many starts as fit in a minute, one line
/// each, delayed by its offset (an interval that does not divide 60 leaves
/// a longer gap before the minute); from a minute, every whole number of
/// minutes, rounded up.
pub fn cron_lines(interval: u32) -> Vec<CronLine> {
    let interval = interval.max(1);
    if interval < 60 {
        (0..60 / interval)
            .map(|k| CronLine {
                schedule: "* * * * *".into(),
                delay: k * interval,
            })
            .collect()
    } else {
        let minutes = interval.div_ceil(60);
        let schedule = if minutes == 1 {
            "* * * * *".to_string()
        } else {
            format!("*/{minutes} * * * *")
        };
        vec![CronLine { schedule, delay: 0 }]
    }
}

/// One installed artifact.
#[derive(Debug, Serialize)]
pub struct InstalledView {
    /// File name in the site folder.
    pub name: &'static str,
    pub path: &'static str,
    /// `0644`, as `install -m` and cloud-init take it.
    pub mode: String,
}

#[derive(Debug, Serialize)]
pub struct FailoverView {
    pub attach_timeout: u32,
    /// The unit's start timeout: the wait for the interface, plus room for
    /// the API calls, metadata and the ruleset around it
    /// ([`BOOT_AROUND_ATTACH`]).
    pub unit_timeout: u32,
    /// Seconds for the device, its metadata and its configuration once the
    /// interface is attached ([`POST_ATTACH`]).
    pub post_attach: u32,
}

#[derive(Debug, Serialize)]
pub struct ForwardView {
    pub name: String,
    /// One line saying what the forward does, for logs.
    pub summary: String,
    /// What its bytes are counted on: target address, protocol and the
    /// first and last target port.
    pub counted_as: String,
    /// Whether another forward has the same target address, protocol and
    /// a port in common, and so shares the counted bytes.
    pub bytes_shared: bool,
}

#[derive(Debug, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Serialize)]
pub struct AmiView {
    pub region: Option<String>,
    pub instance_type: String,
    pub name_prefix: String,
    pub copy_to: Vec<String>,
    pub share_with: Vec<String>,
    pub subnet_id: String,
    /// The build instance's tags as aligned HCL lines, natbake's own first.
    pub tag_lines: Vec<String>,
    /// The image's and its snapshots' tags: those, and what the image was
    /// built from ([`provenance`]).
    pub image_tag_lines: Vec<String>,
    /// Days after the build at which EC2 marks the image deprecated.
    pub deprecate_after_days: u32,
    /// The SSM parameter the build publishes the image id to, in each
    /// region it made the image in.
    pub image_parameter: String,
    pub description: String,
    pub source_name: &'static str,
    pub source_owner: &'static str,
    /// Whether the source lookup must also see deprecated images: only the
    /// legacy NAT AMI, which AWS deprecated and no longer updates.
    pub include_deprecated: bool,
    pub ssh_username: &'static str,
}

#[derive(Debug, Serialize)]
pub struct FileView {
    pub path: String,
    pub permissions: String,
    /// `content: |` followed by the indented text, or base64 when a literal
    /// block could not carry the bytes exactly.
    pub content: String,
}

impl View {
    pub fn new(site: &Site) -> View {
        let sets = ipsets::sets(site);
        // A standby's daemons are installed with the boot step's tools.
        let standby_needs = match crate::standby::of(site) {
            Some(_) => site.os.standby_needs().unwrap_or_default(),
            None => &[],
        };
        let install = install_script(&site.os.packages(), standby_needs);
        let paths = Paths {
            rules: install_path(artifact::RULES),
            ipsets: install_path(artifact::IPSETS),
            sysctl: install_path(artifact::SYSCTL),
            script: install_path(artifact::SCRIPT),
            unit: install_path(artifact::UNIT),
            aws_lib: install_path(artifact::AWS_LIB),
            aws_program: install_path(artifact::AWS_PROGRAM),
            lib: install_path(artifact::LIB),
            health: install_path(artifact::HEALTH),
            status: install_path(artifact::STATUS),
            health_unit: install_path(artifact::HEALTH_UNIT),
            health_timer: install_path(artifact::HEALTH_TIMER),
            health_cron: install_path(artifact::HEALTH_CRON),
            state: STATE_DIR,
        };
        let takeover = site.os.legacy_takeover(paths.script).unwrap_or_default();
        let installed: Vec<InstalledView> = ARTIFACTS
            .iter()
            .filter(|a| a.install_path.is_some() && a.applies(site))
            .filter_map(|a| {
                Some(InstalledView {
                    name: a.name,
                    path: a.install_path?,
                    mode: format!("{:04o}", a.mode),
                })
            })
            .collect();
        let installed_names_ere = installed
            .iter()
            .map(|a| escape::ere_literal(a.name))
            .collect::<Vec<_>>()
            .join("|");
        View {
            version: env!("CARGO_PKG_VERSION"),
            site: site.name.clone(),
            description: site.description.clone(),
            spec_sha256: site.spec_sha256.clone(),
            os: site.os.name(),
            arch: site.arch.name(),
            systemd: site.os.has_systemd(),
            legacy: site.os.boot() == Boot::AmiNatJob,
            failover: site.failover.map(|f| FailoverView {
                attach_timeout: f.attach_timeout,
                unit_timeout: f.attach_timeout + BOOT_AROUND_ATTACH,
                post_attach: POST_ATTACH,
            }),
            standby: crate::standby::of(site).map(|s| crate::standby::view(site, s)),
            aws: site.failover.is_some() || site.metrics.is_some(),
            vpc_cidrs: site.vpc_cidrs.iter().map(|c| c.to_string()).collect(),
            egress: site.egress,
            sysctl: site
                .sysctl
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            tables: rules::tables(site),
            byte_sets: !sets.is_empty(),
            ipsets: sets,
            ipset_in: ipsets::SET_IN,
            ipset_out: ipsets::SET_OUT,
            ami: ami_view(site),
            package_query: site.os.package_query(),
            install_script_yaml: yaml_block(&install, 6),
            install_script: install,
            legacy_takeover_yaml: yaml_block(&takeover, 6),
            legacy_takeover: takeover,
            paths,
            unit: artifact::UNIT,
            health_unit: artifact::HEALTH_UNIT,
            health_timer: artifact::HEALTH_TIMER,
            health: site.health_interval.is_some(),
            health_interval: site
                .health_interval
                .unwrap_or(crate::values::HEALTH_INTERVAL_DEFAULT),
            health_cron: match site.health_interval {
                Some(interval) if !site.os.has_systemd() => cron_lines(interval),
                _ => Vec::new(),
            },
            health_unit_timeout: site
                .failover
                .map_or(BOOT_TIMEOUT, |f| f.attach_timeout + BOOT_AROUND_ATTACH)
                + HEALTH_AROUND_REPAIR,
            installed,
            installed_names_ere,
            files: Vec::new(),
        }
    }

    /// Records the installed files for the user data template: as text
    /// where a YAML literal block carries them exactly, else base64; with
    /// `compress`, every file gzip-compressed and base64-encoded (cloud-init's
    /// `gz+b64`), which keeps the user data readable YAML when the plain form
    /// is over EC2's size limit.
    ///
    /// The instance scripts are listed together, after every other file
    /// (cloud-init writes every file before it runs anything, so their
    /// order does not matter to the instance): the scripts are the same
    /// bytes for every site, and one unbroken stretch of them is compressed
    /// once per build (see [`instance_script_ranges`]). With the units
    /// before the scripts rather than after, the whole file also compresses
    /// smaller (34 bytes of debian-mixed's).
    pub fn add_files(&mut self, artifacts: &[Artifact], compress: bool) {
        let is_script = |a: &Artifact| {
            super::instance::SCRIPTS
                .iter()
                .any(|s| s.artifact == a.name)
        };
        // Every other file, then the scripts; each in table order (the
        // sort is stable).
        let mut ordered: Vec<&Artifact> = artifacts.iter().collect();
        ordered.sort_by_key(|a| is_script(a));
        self.files = ordered
            .into_iter()
            .filter(|a| !ARTIFACTS.iter().any(|d| d.name == a.name && d.image_only()))
            .filter_map(|a| {
                let path = a.install_path?;
                let content = if compress {
                    format!(
                        "encoding: gz+b64\n    content: {}",
                        escape::base64(&super::gzip::all(&a.bytes))
                    )
                } else {
                    instance_script_content(a)
                        .map_or_else(|| plain_content(&a.bytes), str::to_owned)
                };
                Some(FileView {
                    path: path.into(),
                    permissions: format!("{:04o}", a.mode),
                    content,
                })
            })
            .collect();
    }
}

/// The plain user data's `content` of an instance script: the scripts are
/// the same bytes for every site (see [`super::instance`]), so their
/// indented literal blocks, most of a site's user data, are made once per
/// process. `None` for any other file, or bytes that are not the script's.
fn instance_script_content(a: &Artifact) -> Option<&'static str> {
    let (name, content) = instance_scripts_contents()
        .iter()
        .find(|(name, _)| *name == a.name)?;
    (a.bytes == super::instance::installed(name)).then_some(content.as_str())
}

/// Where the instance scripts' literal blocks lie in a plain user data,
/// in order: the stretches that are the same bytes in every site's user
/// data (with what lies between two of them when that is short, the next
/// file's path and mode), for [`super::gzip::within_shared`]. Found by
/// their bytes, so a range is only ever bytes equal to a script's block.
pub fn instance_script_ranges(user_data: &[u8]) -> Vec<std::ops::Range<usize>> {
    /// Two blocks closer than this are one range: the file entry between
    /// them is a path, an owner and a mode.
    const JOIN: usize = 256;
    let Ok(text) = std::str::from_utf8(user_data) else {
        return Vec::new();
    };
    let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
    let mut at = 0;
    for (_, content) in instance_scripts_contents() {
        // Found by its first bytes, then compared whole: a search for the
        // whole block costs more than compressing it.
        let head = content.get(..256).unwrap_or(content);
        let mut from = at;
        let found = loop {
            let Some(i) = text[from..].find(head) else {
                break None;
            };
            let start = from + i;
            if text[start..].starts_with(content.as_str()) {
                break Some(start);
            }
            from = start + 1;
        };
        let Some(start) = found else {
            continue;
        };
        let range = start..start + content.len();
        at = range.end;
        match ranges.last_mut() {
            Some(last) if range.start - last.end <= JOIN => last.end = range.end,
            _ => ranges.push(range),
        }
    }
    ranges
}

/// Each instance script's name and its plain user data `content`, made
/// once per process.
fn instance_scripts_contents() -> &'static [(&'static str, String)] {
    static MADE: std::sync::OnceLock<Vec<(&'static str, String)>> = std::sync::OnceLock::new();
    MADE.get_or_init(|| {
        super::instance::SCRIPTS
            .iter()
            .map(|s| {
                (
                    s.artifact,
                    plain_content(super::instance::installed(s.artifact)),
                )
            })
            .collect()
    })
}

/// A file's `content` in the plain user data: a literal block when that
/// carries the bytes exactly, base64 otherwise.
fn plain_content(bytes: &[u8]) -> String {
    const INDENT: usize = 6;
    match std::str::from_utf8(bytes)
        .ok()
        .and_then(|t| escape::yaml_literal_body(t, INDENT))
    {
        Some(body) => format!("content: |\n{}", body.strip_suffix('\n').unwrap_or(&body)),
        None => format!("encoding: b64\n    content: {}", escape::base64(bytes)),
    }
}

/// Each forward as the scripts and their settings see it.
pub fn forward_views(site: &Site) -> Vec<ForwardView> {
    let shared = ipsets::shared(site);
    site.forwards
        .iter()
        .zip(shared)
        .map(|(f, bytes_shared)| {
            let to = if f.ports.is_range() {
                format!("{} (same ports)", f.target)
            } else {
                format!("{}:{}", f.target, f.target_ports.first)
            };
            let from: Vec<String> = f.from.iter().map(|c| c.to_string()).collect();
            let mut summary = format!(
                "forward {}: {} {} -> {} from {}",
                f.name,
                f.proto.name(),
                f.ports,
                to,
                from.join(" ")
            );
            if let Some(d) = &f.description {
                summary.push_str(&format!(" ({d})"));
            }
            ForwardView {
                name: f.name.clone(),
                summary,
                counted_as: format!(
                    "{} {} {} {}",
                    f.target,
                    f.proto.name(),
                    f.target_ports.first,
                    f.target_ports.last
                ),
                bytes_shared,
            }
        })
        .collect()
}

/// How many tags natbake itself puts on an image and its snapshots: the
/// four of every resource it builds, and the four of [`provenance`]. EC2
/// allows 50, so the spec's `ami.tags` may add the rest (a unit test
/// fills them to exactly 50).
pub const NATBAKE_IMAGE_TAGS: usize = 8;

/// What an image was built from, as HCL keys and value expressions.
/// `{{ .SourceAMI }}` and `{{ .SourceAMIName }}` are the Amazon plugin's
/// build template data, which it fills in `tags` and `snapshot_tags` once
/// it has looked the source image up (they stay plain strings to HCL,
/// which knows only `${`); `local.now` is the time the build started, in
/// RFC 3339.
fn provenance(site: &Site) -> [(String, String); 4] {
    [
        (escape::hcl("natbake:os"), escape::hcl(site.os.name())),
        (
            escape::hcl("natbake:source-ami"),
            "\"{{ .SourceAMI }}\"".into(),
        ),
        (
            escape::hcl("natbake:source-ami-name"),
            "\"{{ .SourceAMIName }}\"".into(),
        ),
        (escape::hcl("natbake:build-time"), "local.now".into()),
    ]
}

fn ami_view(site: &Site) -> AmiView {
    let a = &site.ami;
    let image = site.os.source_image(site.arch, site_partition(site));
    let mut tags = vec![
        ("Name".to_string(), format!("{}-nat", site.name)),
        ("natbake:site".to_string(), site.name.clone()),
        ("natbake:spec-sha256".to_string(), site.spec_sha256.clone()),
        (
            "natbake:version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ];
    let mut image_tags: Vec<(String, String)> = tags
        .iter()
        .map(|(k, v)| (escape::hcl(k), escape::hcl(v)))
        .collect();
    image_tags.extend(provenance(site));
    image_tags.extend(a.tags.iter().map(|(k, v)| (escape::hcl(k), escape::hcl(v))));
    tags.extend(a.tags.iter().cloned());
    AmiView {
        region: a.region.clone(),
        instance_type: a.instance_type.clone(),
        name_prefix: a.name_prefix.clone(),
        copy_to: a.copy_to.clone(),
        share_with: a.share_with.clone(),
        subnet_id: a.subnet_id.clone().unwrap_or_default(),
        tag_lines: hcl_map_lines(&tags),
        image_tag_lines: aligned(&image_tags),
        deprecate_after_days: a.deprecate_after_days,
        image_parameter: site.image_parameter(),
        description: ami_description(&site.name, site.description.as_deref()),
        source_name: image.name,
        source_owner: image.owner,
        include_deprecated: site.os.image_is_deprecated(),
        ssh_username: site.os.ssh_user(),
    }
}

/// The partition of the spec's regions; validation has made them agree.
/// A spec without regions builds wherever the `region` variable says, and
/// is rendered for the standard partition.
fn site_partition(site: &Site) -> Partition {
    let a = &site.ami;
    a.region
        .iter()
        .chain(&a.copy_to)
        .next()
        .map_or(Partition::Aws, |r| Partition::of(r))
}

/// EC2 refuses an AMI description longer than this.
pub const AMI_DESCRIPTION_LIMIT: usize = 255;

/// The AMI description, within EC2's limit. The limit is counted in bytes
/// of UTF-8, which is never less than the count of characters, so the text
/// fits however EC2 counts. A site of 40 characters and an ASCII
/// description of 200 fit whole; longer text is cut at a character
/// boundary and ends with `...`.
pub fn ami_description(site: &str, description: Option<&str>) -> String {
    let full = match description {
        Some(d) => format!("natbake {site}: {d}"),
        None => format!("natbake NAT instance for {site}"),
    };
    if full.len() <= AMI_DESCRIPTION_LIMIT {
        return full;
    }
    let mut cut = AMI_DESCRIPTION_LIMIT - "...".len();
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &full[..cut])
}

/// `"key" = "value"` lines with the `=` aligned, as `packer fmt` writes them.
fn hcl_map_lines(pairs: &[(String, String)]) -> Vec<String> {
    let quoted: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (escape::hcl(k), escape::hcl(v)))
        .collect();
    aligned(&quoted)
}

/// `key = value` lines of HCL keys and expressions, the `=` aligned.
fn aligned(pairs: &[(String, String)]) -> Vec<String> {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:<width$} = {v}"))
        .collect()
}

/// A YAML block scalar (`|` and indented lines) when that carries the text
/// exactly, a double-quoted scalar otherwise.
fn yaml_block(text: &str, indent: usize) -> String {
    match escape::yaml_literal_body(text, indent) {
        Some(body) => format!("|\n{}", body.strip_suffix('\n').unwrap_or(&body)),
        None => escape::yaml(text),
    }
}

/// The shell lines that install whatever the boot step misses.
fn install_script(p: &Packages, extra: &[crate::os::Need]) -> String {
    let mut s = String::from("missing=()\n");
    for need in p.needs.iter().chain(extra) {
        s.push_str(&format!(
            "command -v {} >/dev/null 2>&1 || missing+=({})\n",
            escape::sh(need.command),
            escape::sh(need.package)
        ));
    }
    // The status of the whole is that of the install, so that the caller
    // can tell a failure from success (set -e does not reach into here).
    s.push_str("if [ \"${#missing[@]}\" -gt 0 ]; then\n");
    if let Some(refresh) = p.refresh {
        s.push_str(&format!("  {refresh} &&\n"));
    }
    s.push_str(&format!("  {} \"${{missing[@]}}\"\nfi\n", p.install));
    s
}

#[cfg(test)]
mod tests {

    /// A script's content made once is what the file would get made
    /// afresh, and only for the script's own bytes.
    #[test]
    fn instance_scripts_content_is_made_once_for_their_bytes_only() {
        for s in crate::render::instance::SCRIPTS {
            let bytes = crate::render::instance::installed(s.artifact).to_vec();
            let mut a = crate::render::Artifact {
                name: s.artifact.into(),
                install_path: None,
                mode: 0o755,
                sha256: String::new(),
                bytes: bytes.clone(),
            };
            assert_eq!(
                super::instance_script_content(&a),
                Some(super::plain_content(&bytes).as_str())
            );
            a.bytes.extend_from_slice(b"echo changed\n");
            assert_eq!(super::instance_script_content(&a), None, "{}", s.artifact);
            a.bytes = bytes;
            a.name = "rules.v4".into();
            assert_eq!(super::instance_script_content(&a), None);
        }
    }

    fn ami(os: &str, region: &str) -> super::AmiView {
        let yaml = format!(
            "version: 1\nsite: s\nos: {os}\nvpc_cidrs: [10.0.0.0/16]\nami:\n  region: {region}\n"
        );
        let site = crate::validate::parse(std::path::Path::new("t.yaml"), yaml.as_bytes()).unwrap();
        super::ami_view(&site)
    }

    #[test]
    fn cron_lines_start_the_check_about_every_interval() {
        let lines = |interval| {
            super::cron_lines(interval)
                .into_iter()
                .map(|l| format!("{}+{}", l.schedule, l.delay))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            lines(15),
            [
                "* * * * *+0",
                "* * * * *+15",
                "* * * * *+30",
                "* * * * *+45"
            ]
        );
        // 7 does not divide 60: starts at 0, 7, ..., 49, then 11 s to the minute.
        assert_eq!(lines(7).len(), 8);
        assert_eq!(lines(7).last().unwrap(), "* * * * *+49");
        assert_eq!(lines(31), ["* * * * *+0"]);
        assert_eq!(lines(5).len(), 12);
        assert_eq!(lines(59), ["* * * * *+0"]);
        assert_eq!(lines(60), ["* * * * *+0"]);
        assert_eq!(lines(61), ["*/2 * * * *+0"]);
        assert_eq!(lines(300), ["*/5 * * * *+0"]);
    }

    #[test]
    fn image_owners_follow_the_partition_of_the_build_region() {
        // Canonical's accounts, as Canonical's own documentation lists them.
        for (region, owner) in [
            ("eu-west-1", "099720109477"),
            ("cn-northwest-1", "837727238323"),
            ("us-gov-west-1", "513442679011"),
        ] {
            assert_eq!(ami("ubuntu-24.04", region).source_owner, owner, "{region}");
            // The alias `amazon` resolves in every partition.
            assert_eq!(ami("amazon-linux-2023", region).source_owner, "amazon");
            assert_eq!(ami("amzn-ami-vpc-nat", region).source_owner, "amazon");
        }
        assert_eq!(ami("debian-12", "us-east-1").source_owner, "136693071363");
    }

    /// The count the spec's tag limit leaves room for is the count the
    /// image gets, so a spec at the limit fills EC2's 50 exactly.
    #[test]
    fn natbake_puts_exactly_its_counted_tags_on_the_image() {
        let mut yaml = String::from(
            "version: 1\nsite: s\nvpc_cidrs: [10.0.0.0/16]\nami:\n  region: us-east-1\n  tags:\n",
        );
        let room = 50 - super::NATBAKE_IMAGE_TAGS;
        for n in 0..room {
            yaml.push_str(&format!("    k{n}: v\n"));
        }
        let site = crate::validate::parse(std::path::Path::new("t.yaml"), yaml.as_bytes()).unwrap();
        assert_eq!(super::ami_view(&site).image_tag_lines.len(), 50);
        yaml.push_str("    one-more: v\n");
        let e = crate::validate::parse(std::path::Path::new("t.yaml"), yaml.as_bytes())
            .unwrap_err()
            .diagnostics()
            .to_vec();
        assert!(e[0].message.contains("natbake sets 8 of them"), "{e:?}");
    }

    #[test]
    fn only_the_deprecated_legacy_image_is_looked_up_among_deprecated_ones() {
        assert!(ami("amzn-ami-vpc-nat", "us-east-1").include_deprecated);
        for os in ["amazon-linux-2023", "ubuntu-24.04", "debian-12"] {
            assert!(!ami(os, "us-east-1").include_deprecated, "{os}");
        }
    }

    #[test]
    fn ami_description_fits_ec2s_limit_at_the_longest_site_and_description() {
        let site = format!("s{}", "x".repeat(39));
        let ascii = "d".repeat(200);
        let d = super::ami_description(&site, Some(&ascii));
        assert!(d.len() <= super::AMI_DESCRIPTION_LIMIT, "{} bytes", d.len());
        assert!(
            d.ends_with(&ascii),
            "ASCII text of the longest kind fits whole"
        );
        // Two hundred characters of two, three or four bytes each.
        for wide in ["ü", "✓", "𝄞"] {
            let text = wide.repeat(200);
            let d = super::ami_description(&site, Some(&text));
            assert!(d.len() <= super::AMI_DESCRIPTION_LIMIT, "{} bytes", d.len());
            assert!(d.ends_with("..."), "{d}");
            assert!(d.starts_with(&format!("natbake {site}: {wide}")));
        }
    }
}
