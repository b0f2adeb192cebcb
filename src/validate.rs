//! From a parsed spec to a validated [`Site`].
//!
//! [`crate::yaml`] parses the bytes and stops at the first problem of shape.
//! Validation of meaning then looks at the whole spec and reports every
//! problem it finds, each with its line, column and YAML path. Nothing is
//! rendered unless the list comes back empty.
//!
//! Single values are parsed by [`crate::values`]; this module adds where
//! they were written, fills in defaults, and checks what needs more than
//! one field: caps on list lengths, duplicates, overlapping ports and
//! networks, targets inside the VPC, regions of one partition. Each
//! section of the spec has one method on `Validator`, called from
//! `Validator::site` with the section's path.

use crate::cidr::{Cidr, overlaps_earlier};
use crate::error::{Diagnostic, SpecError};
use crate::site::{
    Ami, Arch, Deployment, Failover, Forward, Metrics, Os, Partition, Ports, Proto, Site, Standby,
};
use crate::spec::{
    At, RawAmi, RawFailover, RawForward, RawHealth, RawMetrics, RawSpec, ScalarText, SpannedMap,
};
use crate::values::{self, Region, Target};
use crate::yaml::{self, YamlPath};
use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::Path;

pub use crate::yaml::MAX_SPEC_BYTES;

mod nlb;

/// Most forwards one spec may hold; more would not fit one NAT instance's
/// conntrack table sensibly and would make user data and rulesets unwieldy.
pub const MAX_FORWARDS: usize = 20_000;
/// AWS allows 50 tags per resource; natbake sets some itself.
const MAX_TAGS: usize = 50 - crate::render::view::NATBAKE_IMAGE_TAGS;
const MAX_SYSCTL: usize = 256;
/// A VPC holds 5 IPv4 CIDR blocks unless AWS raises the quota, and 50 at
/// most (Amazon VPC quotas, "IPv4 CIDR blocks per VPC").
pub const MAX_VPC_CIDRS: usize = 50;
/// Sources of one forward. Each becomes one inbound security group rule,
/// and a network interface carries at most 1,000 of them (rules per group
/// times groups per interface cannot exceed 1,000), so a longer list could
/// never be opened in AWS.
pub const MAX_SOURCES: usize = 1_000;

/// Reads, parses and validates the spec at `path`.
pub fn load(path: &Path) -> Result<Site, SpecError> {
    let read_err = |source| SpecError::Read {
        file: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    // Read one byte past the limit so an oversized file is caught without
    // trusting the size the file system reports (a FIFO reports 0).
    file.take(MAX_SPEC_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    parse(path, &bytes)
}

/// Parses and validates spec bytes; `path` is only used in messages.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Site, SpecError> {
    let invalid = |diagnostics| SpecError::Invalid {
        file: path.to_owned(),
        diagnostics,
    };
    let raw = yaml::parse_spec(bytes).map_err(|d| invalid(vec![d]))?;
    let spec_sha256 = crate::digest::sha256_hex(bytes);
    let mut v = Validator::default();
    let site = v.site(raw, spec_sha256);
    if v.diags.is_empty() {
        Ok(site)
    } else {
        v.diags.sort_by_key(|d| (d.line, d.column));
        Err(invalid(v.diags))
    }
}

/// Collects every problem of one spec while building its [`Site`].
#[derive(Default)]
struct Validator {
    diags: Vec<Diagnostic>,
}

impl Validator {
    fn err<T>(&mut self, at: &At<T>, path: &YamlPath, message: impl Display) {
        self.diags.push(Diagnostic {
            line: at.referenced.line(),
            column: at.referenced.column(),
            path: path.to_string(),
            message: message.to_string(),
        });
    }

    /// The parsed value, or `None` once its problem is reported at `at`.
    fn check<T, V>(
        &mut self,
        at: &At<T>,
        path: &YamlPath,
        parsed: Result<V, impl Display>,
    ) -> Option<V> {
        parsed.map_err(|problem| self.err(at, path, problem)).ok()
    }

    fn site(&mut self, raw: RawSpec, spec_sha256: String) -> Site {
        let root = YamlPath::root();
        if raw.version.value.0 != "1" {
            self.err(
                &raw.version,
                &root.key("version"),
                format!(
                    "version `{}` is not supported; this natbake reads version 1",
                    raw.version.value.0
                ),
            );
        }
        self.check(
            &raw.site,
            &root.key("site"),
            values::site_name(&raw.site.value),
        );
        let description = raw
            .description
            .as_ref()
            .map(|d| self.free_text(d, &root.key("description")));
        let os = match &raw.os {
            None => Os::AmazonLinux2023,
            Some(at) => self
                .check(
                    at,
                    &root.key("os"),
                    values::choice(&at.value, &Os::ALL, Os::name),
                )
                .unwrap_or(Os::AmazonLinux2023),
        };
        let arch = match &raw.arch {
            None => Arch::X86_64,
            Some(at) => self
                .check(
                    at,
                    &root.key("arch"),
                    values::choice(&at.value, &Arch::ALL, Arch::name),
                )
                .unwrap_or(Arch::X86_64),
        };
        if let (Os::AmznAmiVpcNat, Arch::Arm64, Some(at)) = (os, arch, &raw.arch) {
            self.err(at, &root.key("arch"), "the legacy AWS NAT AMI (`amzn-ami-vpc-nat`) exists for x86_64 only; use `os: amazon-linux-2023` for arm64");
        }
        let vpc_cidrs = self.vpc_cidrs(&raw.vpc_cidrs, &root.key("vpc_cidrs"));
        let forwards = self.forwards(&raw.forwards, &root.key("forwards"), &vpc_cidrs);
        let sysctl = raw
            .sysctl
            .as_ref()
            .map(|s| self.sysctl(s, &root.key("sysctl")))
            .unwrap_or_default();
        let ami = self.ami(
            raw.ami.as_ref(),
            &root.key("ami"),
            &raw.site.value,
            os,
            arch,
        );
        let failover = raw
            .failover
            .as_ref()
            .and_then(|f| self.failover(f, &root.key("failover"), os));
        let health_interval = self.health(raw.health.as_ref(), &root.key("health"));
        let metrics = raw
            .metrics
            .as_ref()
            .and_then(|m| self.metrics(m, &root.key("metrics"), health_interval.is_some(), os));
        let deployment = match &raw.deployment {
            None => Deployment::Instance,
            Some(at) => self
                .check(
                    at,
                    &root.key("deployment"),
                    values::choice(&at.value, &Deployment::ALL, Deployment::name),
                )
                .unwrap_or(Deployment::Instance),
        };
        if deployment == Deployment::Nlb {
            self.nlb_shape(&raw, &forwards);
        }
        Site {
            name: raw.site.value,
            description,
            os,
            arch,
            vpc_cidrs,
            egress: raw.egress.is_none_or(|e| e.value),
            forwards,
            sysctl,
            ami,
            failover,
            health_interval,
            metrics,
            deployment,
            spec_sha256,
        }
    }

    /// `health:`: the seconds between two checks, or `None` when the spec
    /// turns the check off (`enabled: false`). Without the section the
    /// check runs at the default interval.
    fn health(&mut self, raw: Option<&At<RawHealth>>, path: &YamlPath) -> Option<u32> {
        let Some(raw) = raw else {
            return Some(values::HEALTH_INTERVAL_DEFAULT);
        };
        let h = &raw.value;
        if h.enabled.as_ref().is_some_and(|b| !b.value) {
            if let Some(at) = &h.interval {
                self.err(
                    at,
                    &path.key("interval"),
                    "`interval` is set, but `enabled: false` turns the health check off; remove one of them",
                );
            }
            return None;
        }
        let interval = h.interval.as_ref().and_then(|at| {
            self.check(
                at,
                &path.key("interval"),
                values::health_interval(&at.value.0),
            )
        });
        Some(interval.unwrap_or(values::HEALTH_INTERVAL_DEFAULT))
    }

    /// `metrics:`; `None` unless `cloudwatch` is true. The health check
    /// publishes them, so they need it on.
    fn metrics(
        &mut self,
        raw: &At<RawMetrics>,
        path: &YamlPath,
        health: bool,
        os: Os,
    ) -> Option<Metrics> {
        let m = &raw.value;
        let cloudwatch = m.cloudwatch.as_ref().is_some_and(|b| b.value);
        let per_forward = m.per_forward.as_ref().filter(|b| b.value);
        if let (false, Some(at)) = (cloudwatch, per_forward) {
            self.err(
                at,
                &path.key("per_forward"),
                "`per_forward` adds to the metrics published with `cloudwatch: true`, which is not set; set `cloudwatch: true` or remove `per_forward`",
            );
        }
        let on = m.cloudwatch.as_ref().filter(|b| b.value)?;
        if !health {
            self.err(
                on,
                &path.key("cloudwatch"),
                "metrics are published by the health check, which `health.enabled: false` turns off; remove `enabled: false` or set `cloudwatch: false`",
            );
            return None;
        }
        if !os.has_systemd() {
            self.err(
                on,
                &path.key("cloudwatch"),
                format!(
                    "publishing to CloudWatch needs curl 7.75 or later (for `--aws-sigv4`), which the legacy AWS NAT AMI (`{}`) does not have; use `os: amazon-linux-2023`, `ubuntu-24.04` or `debian-12`",
                    os.name()
                ),
            );
            return None;
        }
        Some(Metrics {
            per_forward: per_forward.is_some(),
        })
    }

    /// `failover:`; `None` unless `floating_eni` is true. The timeout is
    /// checked either way, so a typo does not wait until it is switched on.
    fn failover(&mut self, raw: &At<RawFailover>, path: &YamlPath, os: Os) -> Option<Failover> {
        let f = &raw.value;
        let attach_timeout = match &f.attach_timeout {
            Some(at) => self.check(
                at,
                &path.key("attach_timeout"),
                values::attach_timeout(&at.value.0),
            ),
            None => Some(values::DEFAULT_ATTACH_TIMEOUT),
        };
        let standby = self.standby(f, path, os);
        let Some(on) = f.floating_eni.as_ref().filter(|b| b.value) else {
            if let Some(at) = f.standby.as_ref().filter(|b| b.value) {
                self.err(
                    at,
                    &path.key("standby"),
                    "a standby takes over the floating interface when the active fails; add `floating_eni: true`",
                );
            }
            return None;
        };
        if !os.has_systemd() {
            self.err(
                on,
                &path.key("floating_eni"),
                format!(
                    "a floating interface needs an image with systemd and curl 7.75 or later (for `--aws-sigv4`); the legacy AWS NAT AMI (`{}`) has neither; use `os: amazon-linux-2023`, `ubuntu-24.04` or `debian-12`",
                    os.name()
                ),
            );
            return None;
        }
        Some(Failover {
            attach_timeout: attach_timeout?,
            standby: standby?,
        })
    }

    /// `failover.standby` and its knobs: `Some(None)` without a standby,
    /// `None` once a problem is reported. The interval is checked either
    /// way, so a typo does not wait until the standby is switched on.
    fn standby(&mut self, f: &RawFailover, path: &YamlPath, os: Os) -> Option<Option<Standby>> {
        let advert_interval_ms = match &f.advert_interval_ms {
            Some(at) => self.check(
                at,
                &path.key("advert_interval_ms"),
                values::advert_interval_ms(&at.value.0),
            ),
            None => Some(values::DEFAULT_ADVERT_INTERVAL_MS),
        };
        let Some(on) = f.standby.as_ref().filter(|b| b.value) else {
            return Some(None);
        };
        if os.standby_needs().is_none() {
            self.err(
                on,
                &path.key("standby"),
                format!(
                    "a standby needs keepalived and conntrackd from the image's own repositories, and systemd to run them; the legacy AWS NAT AMI (`{}`) has none of them; use `os: amazon-linux-2023`, `ubuntu-24.04` or `debian-12`",
                    os.name()
                ),
            );
            return None;
        }
        Some(Some(Standby {
            advert_interval_ms: advert_interval_ms?,
        }))
    }

    /// Free text as written; every problem with it is reported.
    fn free_text(&mut self, at: &At<String>, path: &YamlPath) -> String {
        if let Err(problems) = values::free_text(&at.value) {
            for problem in problems {
                self.err(at, path, problem);
            }
        }
        at.value.clone()
    }

    fn vpc_cidrs(&mut self, list: &At<Vec<At<String>>>, path: &YamlPath) -> Vec<Cidr> {
        if list.value.is_empty() {
            self.err(
                list,
                path,
                "at least one VPC CIDR block is needed, such as `[10.0.0.0/16]`",
            );
        }
        if let Some(extra) = list.value.get(MAX_VPC_CIDRS) {
            self.err(
                extra,
                &path.index(MAX_VPC_CIDRS),
                format!("a VPC has at most {MAX_VPC_CIDRS} IPv4 CIDR blocks (5 unless AWS raised the quota); list the VPC's own blocks"),
            );
        }
        let mut listed: Vec<(usize, Cidr)> = Vec::new();
        for (i, at) in list.value.iter().enumerate().take(MAX_VPC_CIDRS) {
            if let Some(c) = self.check(at, &path.index(i), values::vpc_block(&at.value)) {
                listed.push((i, c));
            }
        }
        let nets: Vec<Cidr> = listed.iter().map(|&(_, c)| c).collect();
        let mut out = Vec::new();
        for (k, earlier) in overlaps_earlier(&nets).into_iter().enumerate() {
            let (i, c) = listed[k];
            match earlier {
                Some(e) => self.err(
                    &list.value[i],
                    &path.index(i),
                    format!("`{c}` overlaps `{}`, listed before it", nets[e]),
                ),
                None => out.push(c),
            }
        }
        out
    }

    fn forwards(&mut self, raw: &[At<RawForward>], path: &YamlPath, vpc: &[Cidr]) -> Vec<Forward> {
        if raw.len() > MAX_FORWARDS {
            self.err(
                &raw[MAX_FORWARDS],
                &path.index(MAX_FORWARDS),
                format!("a spec may hold at most {MAX_FORWARDS} forwards"),
            );
        }
        let mut out: Vec<(usize, Forward)> = Vec::new();
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, at) in raw.iter().enumerate() {
            let f = &at.value;
            let name_path = path.index(i).key("name");
            self.check(&f.name, &name_path, values::forward_name(&f.name.value));
            if let Some(&first) = names.get(f.name.value.as_str()) {
                self.err(
                    &f.name,
                    &name_path,
                    format!(
                        "the name `{}` is already used by {}",
                        f.name.value,
                        path.index(first)
                    ),
                );
            } else {
                names.insert(&f.name.value, i);
            }
            if let Some(fwd) = self.forward(f, &path.index(i), vpc) {
                out.push((i, fwd));
            }
        }
        // Overlap check: per protocol, sorted by first port, each forward is
        // compared with the one that reaches furthest among those before it.
        // Every overlapping forward meets it, so all are reported at once in
        // one sweep.
        let mut sorted: Vec<&(usize, Forward)> = out.iter().collect();
        sorted.sort_by_key(|(i, f)| (f.proto, f.ports, *i));
        let mut furthest: Option<&(usize, Forward)> = None;
        for &cur in &sorted {
            let Some(reach) = furthest.filter(|r| r.1.proto == cur.1.proto) else {
                furthest = Some(cur);
                continue;
            };
            if reach.1.ports.overlaps(&cur.1.ports) {
                let (earlier, later) = if reach.0 < cur.0 {
                    (reach, cur)
                } else {
                    (cur, reach)
                };
                let at = &raw[later.0].value.port;
                self.err(
                    at,
                    &path.index(later.0).key("port"),
                    format!(
                        "{} port {} overlaps port {} of forward `{}` ({}); every port may be forwarded once",
                        later.1.proto.name(), later.1.ports, earlier.1.ports, earlier.1.name, path.index(earlier.0)
                    ),
                );
            }
            if cur.1.ports.last > reach.1.ports.last {
                furthest = Some(cur);
            }
        }
        out.into_iter().map(|(_, f)| f).collect()
    }

    fn forward(&mut self, f: &RawForward, path: &YamlPath, vpc: &[Cidr]) -> Option<Forward> {
        let proto = match &f.proto {
            None => Some(Proto::Tcp),
            Some(at) => self.check(
                at,
                &path.key("proto"),
                values::choice(&at.value, &[Proto::Tcp, Proto::Udp], Proto::name),
            ),
        };
        let ports = self.check(
            &f.port,
            &path.key("port"),
            values::listen_ports(&f.port.value.0),
        );
        let target = self.target(&f.to, &path.key("to"), ports, vpc);
        let public = f.public.as_ref().is_some_and(|b| b.value);
        let from = self.sources(&f.from, path, public, f.public.as_ref());
        let description = f
            .description
            .as_ref()
            .map(|d| self.free_text(d, &path.key("description")));
        let (ports, (target, target_ports)) = (ports?, target?);
        Some(Forward {
            name: f.name.value.clone(),
            proto: proto?,
            ports,
            target,
            target_ports,
            from: from?,
            public,
            log: f.log.as_ref().is_some_and(|b| b.value),
            description,
        })
    }

    /// The target host and its ports: a host inside the VPC, not the
    /// network or broadcast address of the block it is in. `None` without
    /// a report when the listen ports were invalid and the target gave
    /// none of its own, since that problem is already reported.
    fn target(
        &mut self,
        at: &At<String>,
        path: &YamlPath,
        ports: Option<Ports>,
        vpc: &[Cidr],
    ) -> Option<(Ipv4Addr, Ports)> {
        let listen_is_range = ports.is_some_and(|p| p.is_range());
        let target = self.check(at, path, Target::parse(&at.value, listen_is_range))?;
        let target_ports = match (target.port, ports) {
            (Some(n), _) => Ports::single(n),
            (None, Some(ports)) => ports,
            (None, None) => return None,
        };
        let addr = target.addr;
        match vpc.iter().find(|c| c.contains(addr)) {
            None if !vpc.is_empty() => {
                let list: Vec<String> = vpc.iter().map(|c| format!("`{c}`")).collect();
                self.err(at, path, format!("`{addr}` is not inside the VPC ({}); a forward must lead to a host in the VPC", list.join(", ")));
                None
            }
            Some(c) if addr == c.network() || addr == c.broadcast() => {
                let which = if addr == c.network() {
                    "network"
                } else {
                    "broadcast"
                };
                self.err(
                    at,
                    path,
                    format!("`{addr}` is the {which} address of `{c}`, not a host"),
                );
                None
            }
            _ => Some((addr, target_ports)),
        }
    }

    /// The `from` list of the forward at `forward`, checked against its
    /// `public` flag.
    fn sources(
        &mut self,
        list: &At<Vec<At<String>>>,
        forward: &YamlPath,
        public: bool,
        public_at: Option<&At<bool>>,
    ) -> Option<Vec<Cidr>> {
        let path = forward.key("from");
        if list.value.is_empty() {
            self.err(list, &path, "at least one source is needed, such as `[203.0.113.110/32]`; for any source write `[0.0.0.0/0]` with `public: true`");
            return None;
        }
        let mut ok = true;
        if let Some(extra) = list.value.get(MAX_SOURCES) {
            self.err(extra, &path.index(MAX_SOURCES), format!("a forward may have at most {MAX_SOURCES} sources: each is one security group rule, and AWS allows at most 1,000 inbound rules on an instance's interface; use wider networks or split the forward"));
            ok = false;
        }
        let mut out: Vec<Cidr> = Vec::new();
        let mut seen: std::collections::HashSet<Cidr> = std::collections::HashSet::new();
        for (j, at) in list.value.iter().enumerate().take(MAX_SOURCES) {
            let p = path.index(j);
            let Some(c) = self.check(at, &p, Cidr::parse(&at.value)) else {
                ok = false;
                continue;
            };
            if c.is_any() && !public {
                self.err(at, &p, "`0.0.0.0/0` lets the whole Internet in; add `public: true` to the forward if that is meant");
                ok = false;
            } else if !seen.insert(c) {
                self.err(at, &p, format!("`{c}` is listed twice"));
                ok = false;
            } else {
                out.push(c);
            }
        }
        if public && ok && !(out.len() == 1 && out[0].is_any()) {
            if let Some(at) = public_at {
                self.err(at, &forward.key("public"), "`public: true` means any source; set `from: [0.0.0.0/0]`, or drop `public` to keep the listed sources");
            }
            ok = false;
        }
        ok.then_some(out)
    }

    fn sysctl(
        &mut self,
        map: &At<SpannedMap<At<ScalarText>>>,
        path: &YamlPath,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if map.value.0.len() > MAX_SYSCTL {
            let n = map.value.0.len();
            self.err(
                map,
                path,
                format!("{n} settings are more than the {MAX_SYSCTL} natbake accepts"),
            );
            return out;
        }
        for (key, value) in &map.value.0 {
            let path = path.key(&key.value);
            let Some(k) = self.check(key, &path, values::sysctl_key(&key.value)) else {
                continue;
            };
            if let Some(v) = self.check(value, &path, values::sysctl_value(&value.value.0)) {
                out.push((k, v));
            }
        }
        out
    }

    fn ami(
        &mut self,
        raw: Option<&At<RawAmi>>,
        path: &YamlPath,
        site: &str,
        os: Os,
        arch: Arch,
    ) -> Ami {
        let mut ami = Ami {
            region: None,
            instance_type: values::default_instance_type(arch).into(),
            name_prefix: format!("natbake-{site}"),
            copy_to: Vec::new(),
            share_with: Vec::new(),
            subnet_id: None,
            tags: Vec::new(),
            deprecate_after_days: values::DEFAULT_DEPRECATE_AFTER_DAYS,
        };
        let Some(raw) = raw else { return ami };
        let raw = &raw.value;
        if let Some(at) = &raw.region {
            ami.region = self
                .region(at, &path.key("region"), os, None)
                .map(|r| r.name);
        }
        if let Some(at) = &raw.instance_type
            && let Some(t) = self.check(
                at,
                &path.key("instance_type"),
                values::instance_type(&at.value, arch),
            )
        {
            ami.instance_type = t;
        }
        if let Some(at) = &raw.name_prefix
            && let Some(p) = self.check(
                at,
                &path.key("name_prefix"),
                values::ami_name_prefix(&at.value),
            )
        {
            ami.name_prefix = p;
        }
        for (i, at) in raw.copy_to.iter().enumerate() {
            let path = path.key("copy_to").index(i);
            let first = ami
                .region
                .as_deref()
                .or(ami.copy_to.first().map(String::as_str));
            let Some(region) = self.region(at, &path, os, first) else {
                continue;
            };
            if ami.copy_to.contains(&region.name) || ami.region.as_ref() == Some(&region.name) {
                self.err(
                    at,
                    &path,
                    format!("`{}` is listed twice (or is the build region)", at.value),
                );
            } else {
                ami.copy_to.push(region.name);
            }
        }
        for (i, at) in raw.share_with.iter().enumerate() {
            let path = path.key("share_with").index(i);
            if let Some(id) = self.check(at, &path, values::account_id(&at.value.0))
                && !ami.share_with.contains(&id)
            {
                ami.share_with.push(id);
            }
        }
        if let Some(at) = &raw.subnet_id {
            ami.subnet_id = self.check(at, &path.key("subnet_id"), values::subnet_id(&at.value));
        }
        if let Some(at) = &raw.deprecate_after_days
            && let Some(days) = self.check(
                at,
                &path.key("deprecate_after_days"),
                values::deprecate_after_days(&at.value.0),
            )
        {
            ami.deprecate_after_days = days;
        }
        if let Some(tags) = &raw.tags {
            let path = path.key("tags");
            if tags.value.0.len() > MAX_TAGS {
                self.err(tags, &path, format!("{} tags are too many: AWS allows 50 per resource, and natbake sets {} of them", tags.value.0.len(), crate::render::view::NATBAKE_IMAGE_TAGS));
            }
            for (key, value) in &tags.value.0 {
                let path = path.key(&key.value);
                let Some(k) = self.check(key, &path, values::tag_key(&key.value)) else {
                    continue;
                };
                if let Some(v) = self.check(value, &path, values::tag_value(&value.value.0)) {
                    ami.tags.push((k, v));
                }
            }
        }
        ami
    }

    /// A region in a partition where `os` has a known image owner, and in
    /// the same partition as `first` (the build region, or the first
    /// region listed): AMIs cannot be copied across partitions.
    fn region(
        &mut self,
        at: &At<String>,
        path: &YamlPath,
        os: Os,
        first: Option<&str>,
    ) -> Option<Region> {
        let region = self.check(at, path, Region::parse(&at.value))?;
        let partition = region.partition;
        if os == Os::Ubuntu2404 && partition == Partition::EuropeanSovereignCloud {
            self.err(at, path, format!(
                "`{}` is in the `{}` partition, where natbake does not know the account that publishes Canonical's images; build `ubuntu-24.04` elsewhere, or use `os: amazon-linux-2023` there",
                at.value, partition.name()
            ));
            return None;
        }
        if os == Os::Debian12 && partition != Partition::Aws {
            self.err(at, path, format!(
                "`{}` is in the `{}` partition, where natbake does not know the account that publishes Debian's images; build `debian-12` in a standard region, or use {}",
                at.value, partition.name(),
                if partition == Partition::EuropeanSovereignCloud {
                    "`os: amazon-linux-2023`"
                } else {
                    "`os: ubuntu-24.04` or `amazon-linux-2023`"
                }
            ));
            return None;
        }
        if let Some(first) = first
            && Partition::of(first) != partition
        {
            self.err(at, path, format!(
                "`{}` is in the `{}` partition and `{first}` in `{}`: an AMI cannot be copied between partitions; build a separate image in each",
                at.value, partition.name(), Partition::of(first).name()
            ));
            return None;
        }
        Some(region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Result<Site, Vec<Diagnostic>> {
        parse(Path::new("t.yaml"), yaml.as_bytes()).map_err(|e| e.diagnostics().to_vec())
    }

    const SEED: &str = "version: 1\nsite: corp-prod\nvpc_cidrs: [10.0.0.0/16]\nforwards:\n  - name: oracle\n    port: 51532\n    to: 10.0.1.25:1532\n    from: [203.0.113.110/32]\n";

    #[test]
    fn health_check_is_on_unless_turned_off() {
        assert_eq!(check(SEED).unwrap().health_interval, Some(15));
        let with = |extra: &str| check(&format!("{SEED}{extra}"));
        assert_eq!(with("health: {}\n").unwrap().health_interval, Some(15));
        assert_eq!(
            with("health: {interval: 60}\n").unwrap().health_interval,
            Some(60)
        );
        assert_eq!(
            with("health: {enabled: false}\n").unwrap().health_interval,
            None
        );
        assert_eq!(
            with("health: {enabled: true, interval: 5}\n")
                .unwrap()
                .health_interval,
            Some(5)
        );
        let e = with("health: {enabled: false, interval: 30}\n").unwrap_err();
        assert_eq!(e[0].path, "health.interval", "{:?}", e[0]);
        let e = with("health: {enabled: false}\nmetrics: {cloudwatch: true}\n").unwrap_err();
        assert_eq!(e[0].path, "metrics.cloudwatch", "{:?}", e[0]);
        let e = with("health: {interval: 4}\n").unwrap_err();
        assert!(e[0].message.contains("outside 5 to 300"), "{:?}", e[0]);
    }

    #[test]
    fn seed_spec_validates() {
        let site = check(SEED).unwrap();
        assert_eq!(site.forwards.len(), 1);
        let f = &site.forwards[0];
        assert_eq!(
            (f.ports, f.target_ports),
            (Ports::single(51532), Ports::single(1532))
        );
        assert_eq!(site.os, Os::AmazonLinux2023);
        assert!(site.egress);
        assert_eq!(site.ami.instance_type, "t3.micro");
    }

    #[test]
    fn all_problems_are_reported_together() {
        let yaml = SEED
            .replace("10.0.0.0/16", "10.0.0.1/16")
            .replace("51532", "22");
        let diags = check(&yaml).unwrap_err();
        assert_eq!(diags.len(), 2, "{diags:?}");
        assert!(diags[0].message.contains("did you mean `10.0.0.0/16`?"));
        assert_eq!(diags[0].path, "vpc_cidrs[0]");
        assert_eq!(
            (diags[1].line, diags[1].path.as_str()),
            (6, "forwards[0].port")
        );
    }

    #[test]
    fn overlapping_ranges_are_refused() {
        let yaml = format!(
            "{SEED}  - name: range\n    port: 51530-51540\n    to: 10.0.1.26\n    from: [203.0.113.110/32]\n"
        );
        let diags = check(&yaml).unwrap_err();
        assert_eq!(diags.len(), 1);
        assert!(
            diags[0]
                .message
                .contains("overlaps port 51532 of forward `oracle`"),
            "{diags:?}"
        );
        // The same ports over udp are a different forward.
        let udp = yaml.replace("  - name: range\n", "  - name: range\n    proto: udp\n");
        assert!(check(&udp).is_ok());
    }

    #[test]
    fn parse_errors_carry_path_and_location() {
        let diags = check(&SEED.replace("    from:", "    form:")).unwrap_err();
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].path, "forwards[0].form");
        assert!(
            diags[0].message.contains("unknown field `form`"),
            "{diags:?}"
        );
        assert_eq!(diags[0].line, 8);
    }

    #[test]
    fn forwarding_cannot_be_set_through_sysctl() {
        let diags = check(&format!("{SEED}sysctl:\n  net.ipv4.ip_forward: 0\n")).unwrap_err();
        assert!(diags[0].message.contains("which natbake manages"));
    }

    fn messages(yaml: &str) -> Vec<String> {
        check(yaml)
            .unwrap_err()
            .iter()
            .map(|d| format!("{}:{}: {}: {}", d.line, d.column, d.path, d.message))
            .collect()
    }

    #[test]
    fn text_outside_what_yaml_can_carry_is_refused() {
        for escaped in [
            r"\uFFFE",
            r"\uFFFF",
            r"\uFDD0",
            r"\uFDEF",
            r"\U0001FFFE",
            r"\U0010FFFF",
            r"\x85",
            r"\x9f",
            r"\x7f",
            r"\x00",
        ] {
            let yaml = SEED.replace(
                "    from:",
                &format!("    description: \"C:\\\\temp\\\\ {escaped} x\"\n    from:"),
            );
            let m = messages(&yaml);
            assert_eq!(m.len(), 1, "{escaped}: {m:?}");
            assert!(
                m[0].starts_with("8:18: forwards[0].description: text contains"),
                "{m:?}"
            );
        }
        let m = messages(&SEED.replace(
            "site: corp-prod\n",
            "site: corp-prod\ndescription: \"a\\uFFFEb\"\n",
        ));
        assert!(
            m[0].contains("U+FFFE, a Unicode noncharacter that YAML cannot carry"),
            "{m:?}"
        );
        // Printable characters at the edges of YAML's ranges stay allowed.
        for ok in [
            r"\uFFFD",
            r"\uE000",
            r"\uD7FF",
            r"\u00A0",
            r"\U00010000",
            r"\U0001F600",
            r"\\",
        ] {
            let yaml = SEED.replace(
                "site: corp-prod\n",
                &format!("site: corp-prod\ndescription: \"a{ok}b\"\n"),
            );
            assert!(check(&yaml).is_ok(), "{ok}");
        }
    }

    #[test]
    fn vpc_cidrs_are_blocks_a_vpc_can_have() {
        let vpc = |c: &str| SEED.replace("[10.0.0.0/16]", &format!("[{c}]"));
        for bad in [
            "0.0.0.0/16",
            "127.0.0.0/16",
            "169.254.0.0/16",
            "224.0.0.0/16",
            "239.255.255.0/24",
            "240.0.0.0/16",
            "255.255.255.240/28",
        ] {
            let m = messages(&vpc(bad).replace("10.0.1.25", bad.split('/').next().unwrap()));
            assert!(
                m.iter()
                    .any(|m| m.contains("which AWS never assigns to a VPC")),
                "{bad}: {m:?}"
            );
        }
        for (bad, size) in [
            ("10.0.0.0/8", "/8"),
            ("10.0.0.0/15", "/15"),
            ("10.0.1.0/29", "/29"),
        ] {
            let m = messages(&vpc(bad));
            assert!(
                m[0].contains(&format!(
                    "is a {size} block; AWS allows VPC CIDR blocks from /16"
                )),
                "{m:?}"
            );
        }
        for ok in [
            "100.64.0.0/16",
            "172.31.0.0/16",
            "192.168.0.0/28",
            "198.19.0.0/16",
            "203.0.113.0/24",
        ] {
            let yaml = vpc(ok).replace("10.0.1.25:1532", &format!("{}:1532", host_in(ok)));
            let m = check(&yaml).map(|_| ()).map_err(|d| d[0].message.clone());
            assert_eq!(m, Ok(()), "{ok}");
        }
        // The metadata service and loopback cannot become targets.
        let m = messages(&vpc("169.254.169.0/24").replace("10.0.1.25:1532", "169.254.169.254:80"));
        assert!(m.len() == 1 && m[0].starts_with("3:"), "{m:?}");
        let m = messages(&vpc("127.0.0.0/16").replace("10.0.1.25:1532", "127.0.0.1:22"));
        assert!(m.len() == 1 && m[0].starts_with("3:"), "{m:?}");
    }

    /// The first host of a network given as text.
    fn host_in(cidr: &str) -> String {
        let c = Cidr::parse(cidr).unwrap();
        Ipv4Addr::from(u32::from(c.network()) + 1).to_string()
    }

    #[test]
    fn list_lengths_are_capped_at_what_aws_can_carry() {
        let blocks = |n: usize| -> String {
            (0..n)
                .map(|i| format!("10.{i}.0.0/16"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let at_cap = SEED.replace("[10.0.0.0/16]", &format!("[{}]", blocks(MAX_VPC_CIDRS)));
        assert!(check(&at_cap).is_ok());
        let over = SEED.replace("[10.0.0.0/16]", &format!("[{}]", blocks(MAX_VPC_CIDRS + 1)));
        let m = messages(&over);
        assert!(
            m.len() == 1 && m[0].contains("vpc_cidrs[50]: a VPC has at most 50 IPv4 CIDR blocks"),
            "{m:?}"
        );

        let sources = |n: usize| -> String {
            (0..n)
                .map(|i| format!("203.0.{}.{}/32", i / 256, i % 256))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let at_cap = SEED.replace("[203.0.113.110/32]", &format!("[{}]", sources(MAX_SOURCES)));
        assert_eq!(check(&at_cap).unwrap().forwards[0].from.len(), MAX_SOURCES);
        let over = SEED.replace(
            "[203.0.113.110/32]",
            &format!("[{}]", sources(MAX_SOURCES + 1)),
        );
        let m = messages(&over);
        assert!(
            m.len() == 1
                && m[0].contains("forwards[0].from[1000]: a forward may have at most 1000 sources"),
            "{m:?}"
        );
    }

    #[test]
    fn every_overlapping_forward_is_reported_at_once() {
        let yaml = "version: 1\nsite: s\nvpc_cidrs: [10.0.0.0/16]\nforwards:\n  - {name: wide, port: 1000-2000, to: 10.0.0.9, from: [192.0.2.0/24]}\n  - {name: low, port: 1001, to: 10.0.0.9:80, from: [192.0.2.0/24]}\n  - {name: high, port: 1500-1600, to: 10.0.0.9, from: [192.0.2.0/24]}\n  - {name: apart, port: 3000, to: 10.0.0.9, from: [192.0.2.0/24]}\n";
        let m = messages(yaml);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(
            m[0].contains(
                "forwards[1].port: tcp port 1001 overlaps port 1000-2000 of forward `wide`"
            ),
            "{m:?}"
        );
        assert!(
            m[1].contains(
                "forwards[2].port: tcp port 1500-1600 overlaps port 1000-2000 of forward `wide`"
            ),
            "{m:?}"
        );
    }

    #[test]
    fn sysctl_cannot_touch_forwarding_or_redirects_of_any_family() {
        for key in [
            "net.ipv4.ip_forward",
            "net.ipv4.conf.all.forwarding",
            "net.ipv4.conf.default.mc_forwarding",
            "net.ipv6.conf.all.forwarding",
            "net.ipv6.conf.default.forwarding",
            "net.ipv4.conf.all.send_redirects",
            "net.ipv4.conf.all.accept_redirects",
            "net.ipv6.conf.all.accept_redirects",
            "net.ipv4.conf.default.secure_redirects",
        ] {
            let m = messages(&format!("{SEED}sysctl:\n  {key}: 1\n"));
            assert!(
                m.len() == 1 && m[0].contains("which natbake manages"),
                "{key}: {m:?}"
            );
        }
    }

    #[test]
    fn sysctl_keys_that_cannot_exist_on_the_instance_are_refused() {
        for (key, says) in [
            ("nte.ipv4.tcp_syncookies", "is not a kernel setting"),
            ("netfilter.nf_conntrack_max", "is not a kernel setting"),
            ("net.ipv4.conf.eth0.rp_filter", "names the interface `eth0`"),
            (
                "net.ipv6.neigh.ens5.base_reachable_time_ms",
                "names the interface `ens5`",
            ),
        ] {
            let m = messages(&format!("{SEED}sysctl:\n  {key}: 1\n"));
            assert!(m.len() == 1 && m[0].contains(says), "{key}: {m:?}");
        }
        let ok = format!(
            "{SEED}sysctl:\n  net.netfilter.nf_conntrack_max: 262144\n  net.ipv4.conf.all.rp_filter: 2\n  net.ipv4.neigh.default.gc_thresh3: 4096\n  net.ipv4.conf.lo.rp_filter: 0\n  vm.swappiness: 10\n"
        );
        assert_eq!(check(&ok).unwrap().sysctl.len(), 5);
        let m = messages(&format!("{SEED}sysctl:\n  net.core.somaxconn: 01024\n"));
        assert!(
            m[0].contains("`01024` has a leading zero, which the kernel reads as an octal number"),
            "{m:?}"
        );
    }

    #[test]
    fn empty_forwards_mean_none() {
        let base = "version: 1\nsite: s\nvpc_cidrs: [10.0.0.0/16]\n";
        for empty in ["forwards:\n", "forwards: ~\n", "forwards: []\n", ""] {
            assert!(
                check(&format!("{base}{empty}"))
                    .unwrap()
                    .forwards
                    .is_empty(),
                "{empty:?}"
            );
        }
        let m = messages(&format!(
            "{base}forwards:\n  - name: x\n    port: 80\n    to: 10.0.0.9\n    from:\n"
        ));
        assert!(m[0].contains("forwards[0].from: expected a list"), "{m:?}");
    }

    #[test]
    fn ports_with_leading_zeros_say_so() {
        let m = messages(&SEED.replace("port: 51532", "port: 080"));
        assert_eq!(
            m,
            [
                "6:11: forwards[0].port: `080` has a leading zero, which some tools read as an octal number; write `80`"
            ]
        );
        let m = messages(&SEED.replace("port: 51532", "port: \"08000-08010\""));
        assert!(m[0].ends_with("write `8000-8010`"), "{m:?}");
        let m = messages(&SEED.replace("10.0.1.25:1532", "10.0.1.25:01532"));
        assert!(
            m[0].contains("`01532` has a leading zero") && m[0].ends_with("(in `10.0.1.25:01532`)"),
            "{m:?}"
        );
    }

    /// The European Sovereign Cloud's regions are regions of their own
    /// partition: Amazon's images build there, Canonical's and Debian's
    /// owners are not known, and AMIs do not copy to other partitions.
    #[test]
    fn the_european_sovereign_cloud_is_a_partition_of_its_own() {
        let spec = |os: &str, copy: &str| {
            format!(
                "version: 1\nsite: s\nos: {os}\nvpc_cidrs: [10.0.0.0/16]\nami:\n  region: eusc-de-east-1\n  copy_to: [{copy}]\n"
            )
        };
        assert!(check(&spec("amazon-linux-2023", "")).is_ok());
        for os in ["ubuntu-24.04", "debian-12"] {
            let e = check(&spec(os, "")).unwrap_err();
            assert!(
                e[0].message.contains("`aws-eusc` partition"),
                "{}",
                e[0].message
            );
            assert!(
                e[0].message.contains("amazon-linux-2023"),
                "{}",
                e[0].message
            );
        }
        let e = check(&spec("amazon-linux-2023", "eu-central-1")).unwrap_err();
        assert!(
            e[0].message.contains("cannot be copied between partitions"),
            "{}",
            e[0].message
        );
    }
}
