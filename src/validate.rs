//! From YAML text to a validated [`Site`].
//!
//! Parsing stops at the first problem of shape (bad YAML, an unknown key, a
//! wrong type), since nothing after it can be trusted. Validation of
//! meaning then looks at the whole spec and reports every problem it finds,
//! each with its line, column and YAML path. Nothing is rendered unless the
//! list comes back empty.

use crate::cidr::{Cidr, addr_or_none, overlaps_earlier};
use crate::error::{Diagnostic, SpecError};
use crate::site::{Ami, Arch, Failover, Forward, Os, Partition, Ports, Proto, Site};
use crate::spec::{At, RawAmi, RawFailover, RawForward, RawSpec, ScalarText};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::Path;

/// Largest spec file accepted. A spec with 10,000 forwards is about 1.5 MB.
pub const MAX_SPEC_BYTES: u64 = 16 * 1024 * 1024;
/// Most forwards one spec may hold; more would not fit one NAT instance's
/// conntrack table sensibly and would make user data and rulesets unwieldy.
pub const MAX_FORWARDS: usize = 20_000;
const MAX_TEXT_CHARS: usize = 200;
/// AWS allows 50 tags per resource; natbake sets four itself.
const MAX_TAGS: usize = 46;
const MAX_SYSCTL: usize = 256;
/// A VPC holds 5 IPv4 CIDR blocks unless AWS raises the quota, and 50 at
/// most (Amazon VPC quotas, "IPv4 CIDR blocks per VPC").
pub const MAX_VPC_CIDRS: usize = 50;
/// Sources of one forward. Each becomes one inbound security group rule,
/// and a network interface carries at most 1,000 of them (rules per group
/// times groups per interface cannot exceed 1,000), so a longer list could
/// never be opened in AWS.
pub const MAX_SOURCES: usize = 1_000;
/// Seconds a booting instance may wait for the floating interface.
const ATTACH_TIMEOUT: std::ops::RangeInclusive<u32> = 30..=900;
const DEFAULT_ATTACH_TIMEOUT: u32 = 180;
/// VPC sizes AWS allows, as prefix lengths: /16 (65,536 addresses) to /28 (16).
const VPC_PREFIXES: std::ops::RangeInclusive<u8> = 16..=28;
/// Ranges AWS never gives a VPC: they mean something else to every host,
/// so a target there would not be a host in a private subnet.
/// 100.64.0.0/10 (shared address space) is allowed: AWS accepts it for VPC
/// blocks, and it is commonly used for secondary blocks.
const NOT_VPC_RANGES: &[(Cidr, &str)] = &[
    (Cidr::new(0, 0, 0, 0, 8), "\"this network\" addresses"),
    (Cidr::new(127, 0, 0, 0, 8), "loopback"),
    (
        Cidr::new(169, 254, 0, 0, 16),
        "link-local, where instance metadata and the Amazon DNS server answer",
    ),
    (Cidr::new(224, 0, 0, 0, 4), "multicast"),
    (
        Cidr::new(240, 0, 0, 0, 4),
        "reserved, with the broadcast address",
    ),
];

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
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return Err(invalid(vec![Diagnostic {
            line: 0,
            column: 0,
            path: String::new(),
            message: format!(
                "the file is larger than {} MiB; a site spec is a few kilobytes",
                MAX_SPEC_BYTES / 1024 / 1024
            ),
        }]));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_col(bytes, e.valid_up_to());
        invalid(vec![Diagnostic {
            line,
            column,
            path: String::new(),
            message: "the file is not valid UTF-8".into(),
        }])
    })?;
    let raw = parse_yaml(text).map_err(|d| invalid(vec![d]))?;
    let spec_sha256 = hex(&Sha256::digest(bytes));
    let mut v = Validator::default();
    let site = v.site(raw, spec_sha256);
    if v.diags.is_empty() {
        Ok(site)
    } else {
        v.diags.sort_by_key(|d| (d.line, d.column));
        Err(invalid(v.diags))
    }
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn line_col(bytes: &[u8], offset: usize) -> (u64, u64) {
    let before = &bytes[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let column = (offset
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1)) as u64
        + 1;
    (line, column)
}

/// Parses the YAML within [`yaml_options`]'s limits.
fn parse_yaml(text: &str) -> Result<RawSpec, Diagnostic> {
    // Tracking the YAML path doubles the cost of a parse; it is only needed
    // to describe a failure, so a failed parse runs again with it.
    serde_saphyr::from_str_with_options(text, yaml_options()).or_else(|_| {
        // serde_path_to_error knows the path but must hand back
        // serde-saphyr's error type from the closure; the path waits
        // outside until then.
        let mut path = None;
        serde_saphyr::with_deserializer_from_str_with_options(text, yaml_options(), |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                path = Some(e.path().to_string());
                e.into_inner()
            })
        })
        .map_err(|e| diagnostic_of(path.unwrap_or_default(), &e))
    })
}

/// Limits that keep hostile input (alias bombs, deep nesting, huge
/// documents) cheap to refuse.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        with_snippet: false,
        strict_booleans: true,
        // `port: 080` stays the text `080`, so that validation can say what
        // is wrong with it instead of the parser reading it as a decimal.
        leading_zero_numbers_as_strings: true,
        budget: serde_saphyr::budget! {
            max_events: 2_000_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_depth: 32,
            max_documents: 1,
            max_nodes: 1_000_000,
            max_total_scalar_bytes: MAX_SPEC_BYTES as usize,
            max_merge_keys: 100,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 100_000,
            max_replay_stack_depth: 16,
        },
    }
}

fn diagnostic_of(path: String, err: &serde_saphyr::Error) -> Diagnostic {
    let (line, column) = err.location().map_or((0, 0), |l| (l.line(), l.column()));
    let mut message = err.without_snippet().to_string();
    // The location is reported in its own fields.
    if let Some(cut) = message.rfind(" at line ") {
        message.truncate(cut);
    }
    let message = explain(&message, path.is_empty() || path == "." || path == "?");
    // serde_path_to_error shows the root as "." and Spanned adds a `.value` step.
    let path = path.replace(".value", "");
    let path = if path == "." || path == "?" {
        String::new()
    } else {
        path
    };
    Diagnostic {
        line,
        column,
        path,
        message,
    }
}

/// Adds the advice a person needs to the parser's terse messages.
fn explain(message: &str, at_root: bool) -> String {
    if let Some(dup) = message.strip_suffix(", set DuplicateKeyPolicy in Options if acceptable") {
        format!("{dup}; each key may appear once")
    } else if message == "unexpected end of input" && at_root {
        "the file holds no spec; a site spec needs at least `version: 1`, `site` and `vpc_cidrs`"
            .into()
    } else if message == "expected mapping start" && at_root {
        "a site spec is a mapping of keys such as `version: 1`, not a list or a single value".into()
    } else if message == "expected sequence start" {
        "expected a list, such as `[10.0.0.0/16]` or lines starting with `- `; an empty value is not a list".into()
    } else if message == "expected mapping start" {
        "expected a mapping of `key: value` lines".into()
    } else if message.starts_with("unknown field") {
        format!(
            "{message}; check the spelling (unknown keys are refused so that typos cannot hide)"
        )
    } else if message.contains("budget")
        || message.contains("limit")
        || message.contains("exceeded")
    {
        format!(
            "{message}; the spec is too large or too deeply nested (anchors and aliases are limited)"
        )
    } else {
        message.to_owned()
    }
}

#[derive(Default)]
struct Validator {
    diags: Vec<Diagnostic>,
}

impl Validator {
    fn err<T>(&mut self, at: &At<T>, path: impl Into<String>, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            line: at.referenced.line(),
            column: at.referenced.column(),
            path: path.into(),
            message: message.into(),
        });
    }

    fn site(&mut self, raw: RawSpec, spec_sha256: String) -> Site {
        if raw.version.value.0 != "1" {
            self.err(
                &raw.version,
                "version",
                format!(
                    "version `{}` is not supported; this natbake reads version 1",
                    raw.version.value.0
                ),
            );
        }
        self.name(&raw.site, "site", 40);
        let description = raw
            .description
            .as_ref()
            .map(|d| self.free_text(d, "description"));
        let os = match &raw.os {
            None => Os::AmazonLinux2023,
            Some(at) => self
                .choice(at, "os", &Os::ALL, |o| o.name())
                .unwrap_or(Os::AmazonLinux2023),
        };
        let arch = match &raw.arch {
            None => Arch::X86_64,
            Some(at) => self
                .choice(at, "arch", &Arch::ALL, |a| a.name())
                .unwrap_or(Arch::X86_64),
        };
        if let (Os::AmznAmiVpcNat, Arch::Arm64, Some(at)) = (os, arch, &raw.arch) {
            self.err(at, "arch", "the legacy AWS NAT AMI (`amzn-ami-vpc-nat`) exists for x86_64 only; use `os: amazon-linux-2023` for arm64");
        }
        let vpc_cidrs = self.vpc_cidrs(&raw.vpc_cidrs);
        let forwards = self.forwards(&raw.forwards, &vpc_cidrs);
        let sysctl = raw
            .sysctl
            .as_ref()
            .map(|s| self.sysctl(s))
            .unwrap_or_default();
        let ami = self.ami(raw.ami.as_ref(), &raw.site.value, os, arch);
        let failover = raw.failover.as_ref().and_then(|f| self.failover(f, os));
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
            spec_sha256,
        }
    }

    /// `failover:`; `None` unless `floating_eni` is true. The timeout is
    /// checked either way, so a typo does not wait until it is switched on.
    fn failover(&mut self, raw: &At<RawFailover>, os: Os) -> Option<Failover> {
        let f = &raw.value;
        let mut attach_timeout = Some(DEFAULT_ATTACH_TIMEOUT);
        if let Some(at) = &f.attach_timeout {
            let text = at.value.0.trim();
            attach_timeout = text
                .parse::<u32>()
                .ok()
                .filter(|n| ATTACH_TIMEOUT.contains(n) && !text.starts_with('0'));
            if attach_timeout.is_none() {
                self.err(
                    at,
                    "failover.attach_timeout",
                    format!(
                        "`{text}` is not a number of seconds from {} to {}: long enough for EC2 to detach the interface from an instance that is shutting down, short enough that a stuck boot is replaced",
                        ATTACH_TIMEOUT.start(),
                        ATTACH_TIMEOUT.end()
                    ),
                );
            }
        }
        let on = f.floating_eni.as_ref().filter(|b| b.value)?;
        if !os.has_systemd() {
            self.err(
                on,
                "failover.floating_eni",
                format!(
                    "a floating interface needs an image with systemd and curl 7.75 or later (for `--aws-sigv4`); the legacy AWS NAT AMI (`{}`) has neither; use `os: amazon-linux-2023`, `ubuntu-24.04` or `debian-12`",
                    os.name()
                ),
            );
            return None;
        }
        Some(Failover {
            attach_timeout: attach_timeout?,
        })
    }

    /// A name that ends up in file names, chain comments, tags and log
    /// prefixes: `^[a-z][a-z0-9-]{0,max-1}$`.
    fn name(&mut self, at: &At<String>, path: &str, max: usize) {
        let s = &at.value;
        let ok = s.len() <= max
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            let suggestion: String = s
                .to_ascii_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .skip_while(|c| !c.is_ascii_lowercase())
                .take(max)
                .collect();
            let mut msg = format!(
                "`{s}` is not a valid name: use a lower-case letter, then up to {} lower-case letters, digits or `-`",
                max - 1
            );
            if !suggestion.is_empty() && suggestion != *s {
                msg.push_str(&format!("; for example `{suggestion}`"));
            }
            self.err(at, path, msg);
        }
    }

    /// Free text: at most 200 characters, no control characters, no
    /// invisible direction or line-separator characters that could make an
    /// artifact read differently from what it does, and nothing outside the
    /// characters YAML can carry (cloud-init drops user data that has one).
    fn free_text(&mut self, at: &At<String>, path: &str) -> String {
        let s = &at.value;
        let count = s.chars().count();
        if count > MAX_TEXT_CHARS {
            self.err(
                at,
                path,
                format!("text is {count} characters long; the limit is {MAX_TEXT_CHARS}"),
            );
        }
        if let Some(c) = s.chars().find(|&c| forbidden_in_text(c)) {
            let message = if is_noncharacter(c) {
                format!(
                    "text contains U+{:04X}, a Unicode noncharacter that YAML cannot carry (cloud-init would ignore the whole user data); remove it",
                    c as u32
                )
            } else {
                format!(
                    "text contains the control or formatting character U+{:04X}; write it on one line without control characters",
                    c as u32
                )
            };
            self.err(at, path, message);
        }
        s.clone()
    }

    fn choice<T: Copy>(
        &mut self,
        at: &At<String>,
        path: &str,
        all: &[T],
        name: impl Fn(T) -> &'static str,
    ) -> Option<T> {
        if let Some(&found) = all.iter().find(|&&t| name(t) == at.value) {
            return Some(found);
        }
        let names: Vec<String> = all.iter().map(|&t| format!("`{}`", name(t))).collect();
        self.err(
            at,
            path,
            format!("`{}` is not one of {}", at.value, names.join(", ")),
        );
        None
    }

    fn cidr(&mut self, at: &At<String>, path: &str) -> Option<Cidr> {
        match Cidr::parse(&at.value) {
            Ok(c) => Some(c),
            Err(msg) => {
                self.err(at, path, msg);
                None
            }
        }
    }

    fn vpc_cidrs(&mut self, list: &At<Vec<At<String>>>) -> Vec<Cidr> {
        if list.value.is_empty() {
            self.err(
                list,
                "vpc_cidrs",
                "at least one VPC CIDR block is needed, such as `[10.0.0.0/16]`",
            );
        }
        if let Some(extra) = list.value.get(MAX_VPC_CIDRS) {
            self.err(
                extra,
                format!("vpc_cidrs[{MAX_VPC_CIDRS}]"),
                format!("a VPC has at most {MAX_VPC_CIDRS} IPv4 CIDR blocks (5 unless AWS raised the quota); list the VPC's own blocks"),
            );
        }
        let mut listed: Vec<(usize, Cidr)> = Vec::new();
        for (i, at) in list.value.iter().enumerate().take(MAX_VPC_CIDRS) {
            let path = format!("vpc_cidrs[{i}]");
            let Some(c) = self.cidr(at, &path) else {
                continue;
            };
            if let Some(problem) = not_a_vpc_block(c) {
                self.err(at, &path, problem);
            } else {
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
                    format!("vpc_cidrs[{i}]"),
                    format!("`{c}` overlaps `{}`, listed before it", nets[e]),
                ),
                None => out.push(c),
            }
        }
        out
    }

    fn forwards(&mut self, raw: &[At<RawForward>], vpc: &[Cidr]) -> Vec<Forward> {
        if raw.len() > MAX_FORWARDS {
            self.err(
                &raw[MAX_FORWARDS],
                format!("forwards[{MAX_FORWARDS}]"),
                format!("a spec may hold at most {MAX_FORWARDS} forwards"),
            );
        }
        let mut out: Vec<(usize, Forward)> = Vec::new();
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, at) in raw.iter().enumerate() {
            let f = &at.value;
            let p = |field: &str| format!("forwards[{i}].{field}");
            self.name(&f.name, &p("name"), 24);
            if let Some(&first) = names.get(f.name.value.as_str()) {
                self.err(
                    &f.name,
                    p("name"),
                    format!(
                        "the name `{}` is already used by forwards[{first}]",
                        f.name.value
                    ),
                );
            } else {
                names.insert(&f.name.value, i);
            }
            if let Some(fwd) = self.forward(f, i, vpc) {
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
                    format!("forwards[{}].port", later.0),
                    format!(
                        "{} port {} overlaps port {} of forward `{}` (forwards[{}]); every port may be forwarded once",
                        later.1.proto.name(), later.1.ports, earlier.1.ports, earlier.1.name, earlier.0
                    ),
                );
            }
            if cur.1.ports.last > reach.1.ports.last {
                furthest = Some(cur);
            }
        }
        out.into_iter().map(|(_, f)| f).collect()
    }

    fn forward(&mut self, f: &RawForward, i: usize, vpc: &[Cidr]) -> Option<Forward> {
        let p = |field: &str| format!("forwards[{i}].{field}");
        let proto = match &f.proto {
            None => Some(Proto::Tcp),
            Some(at) => self.choice(at, &p("proto"), &[Proto::Tcp, Proto::Udp], |x| x.name()),
        };
        let ports = self.ports(&f.port, &p("port"));
        let target = self.target(&f.to, &p("to"), ports, vpc);
        let public = f.public.as_ref().is_some_and(|b| b.value);
        let from = self.sources(&f.from, &p("from"), public, f.public.as_ref());
        let description = f
            .description
            .as_ref()
            .map(|d| self.free_text(d, &p("description")));
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

    fn ports(&mut self, at: &At<ScalarText>, path: &str) -> Option<Ports> {
        let text = at.value.0.trim();
        let parsed = match text.split_once('-') {
            Some((a, b)) => port_number(a)
                .zip(port_number(b))
                .map(|(first, last)| Ports { first, last }),
            None => port_number(text).map(Ports::single),
        };
        let Some(ports) = parsed else {
            let message = match leading_zero_advice(text) {
                Some(advice) => advice,
                None => {
                    format!("`{text}` is not a port (1-65535) or a range such as `60000-60010`")
                }
            };
            self.err(at, path, message);
            return None;
        };
        if ports.first > ports.last {
            self.err(
                at,
                path,
                format!(
                    "the range `{text}` runs backwards; did you mean `{}-{}`?",
                    ports.last, ports.first
                ),
            );
            return None;
        }
        if ports.overlaps(&Ports::single(22)) {
            self.err(at, path, "port 22 cannot be forwarded: it would take SSH to the NAT instance itself away from these sources; pick another listen port and forward it to the target's port 22");
            return None;
        }
        Some(ports)
    }

    fn target(
        &mut self,
        at: &At<String>,
        path: &str,
        ports: Option<Ports>,
        vpc: &[Cidr],
    ) -> Option<(Ipv4Addr, Ports)> {
        let text = at.value.trim();
        let (addr_text, port_text) = match text.rsplit_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let Some(addr) = addr_or_none(addr_text) else {
            self.err(at, path, format!("`{text}` is not a target such as `10.0.1.25:1532` (an IPv4 address, then optionally `:port`)"));
            return None;
        };
        let target_ports = match (port_text, ports) {
            (Some(pt), Some(ports)) if ports.is_range() => {
                self.err(at, path, format!("a port range is forwarded to the same ports; write `to: {addr}` without `:{pt}`"));
                return None;
            }
            (Some(pt), _) => match port_number(pt) {
                Some(n) => Ports::single(n),
                None => {
                    let message = match leading_zero_advice(pt) {
                        Some(advice) => format!("{advice} (in `{text}`)"),
                        None => format!("`{pt}` in `{text}` is not a port (1-65535)"),
                    };
                    self.err(at, path, message);
                    return None;
                }
            },
            (None, Some(ports)) => ports,
            (None, None) => return None,
        };
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

    fn sources(
        &mut self,
        list: &At<Vec<At<String>>>,
        path: &str,
        public: bool,
        public_at: Option<&At<bool>>,
    ) -> Option<Vec<Cidr>> {
        if list.value.is_empty() {
            self.err(list, path, "at least one source is needed, such as `[203.0.113.110/32]`; for any source write `[0.0.0.0/0]` with `public: true`");
            return None;
        }
        let mut ok = true;
        if let Some(extra) = list.value.get(MAX_SOURCES) {
            self.err(extra, format!("{path}[{MAX_SOURCES}]"), format!("a forward may have at most {MAX_SOURCES} sources: each is one security group rule, and AWS allows at most 1,000 inbound rules on an instance's interface; use wider networks or split the forward"));
            ok = false;
        }
        let mut out: Vec<Cidr> = Vec::new();
        let mut seen: std::collections::HashSet<Cidr> = std::collections::HashSet::new();
        for (j, at) in list.value.iter().enumerate().take(MAX_SOURCES) {
            let p = format!("{path}[{j}]");
            let Some(c) = self.cidr(at, &p) else {
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
                self.err(at, path.replace(".from", ".public"), "`public: true` means any source; set `from: [0.0.0.0/0]`, or drop `public` to keep the listed sources");
            }
            ok = false;
        }
        ok.then_some(out)
    }

    fn sysctl(
        &mut self,
        map: &At<crate::spec::SpannedMap<At<ScalarText>>>,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if map.value.0.len() > MAX_SYSCTL {
            let n = map.value.0.len();
            self.err(
                map,
                "sysctl",
                format!("{n} settings are more than the {MAX_SYSCTL} natbake accepts"),
            );
            return out;
        }
        for (key, value) in &map.value.0 {
            let path = format!("sysctl.{}", key.value);
            let k = &key.value;
            if k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
                || k.starts_with('.')
                || k.ends_with('.')
                || k.contains("..")
            {
                self.err(key, &path, format!("`{k}` is not a sysctl key; keys use lower-case letters, digits, `_` and `.`, such as `net.netfilter.nf_conntrack_max`"));
                continue;
            }
            if is_managed_sysctl(k) {
                self.err(key, &path, format!("`{k}` switches packet forwarding or ICMP redirects, which natbake manages: configure-pat.sh switches IPv4 forwarding on only after the ruleset is loaded, keeps redirects off, and forwards no IPv6; remove this key"));
                continue;
            }
            if let Some(problem) = sysctl_key_problem(k) {
                self.err(key, &path, problem);
                continue;
            }
            let v = value.value.0.as_str();
            let words_ok = !v.is_empty()
                && v.split(' ').all(|w| {
                    !w.is_empty()
                        && w.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
                });
            if !words_ok {
                self.err(value, &path, format!("`{v}` is not a sysctl value: use a number or words of letters, digits, `_.:-` separated by single spaces"));
                continue;
            }
            if let Some(word) = v.split(' ').find(|w| leading_zero_advice(w).is_some()) {
                self.err(value, &path, format!("`{word}` has a leading zero, which the kernel reads as an octal number; write the number without it"));
                continue;
            }
            out.push((k.clone(), v.to_owned()));
        }
        out
    }

    fn ami(&mut self, raw: Option<&At<RawAmi>>, site: &str, os: Os, arch: Arch) -> Ami {
        let default_type = match arch {
            Arch::X86_64 => "t3.micro",
            Arch::Arm64 => "t4g.micro",
        };
        let mut ami = Ami {
            region: None,
            instance_type: default_type.into(),
            name_prefix: format!("natbake-{site}"),
            copy_to: Vec::new(),
            share_with: Vec::new(),
            subnet_id: None,
            tags: Vec::new(),
        };
        let Some(raw) = raw else { return ami };
        let raw = &raw.value;
        if let Some(at) = &raw.region
            && self.region(at, "ami.region", os, None)
        {
            ami.region = Some(at.value.clone());
        }
        if let Some(at) = &raw.instance_type {
            let ok = at.value.split_once('.').is_some_and(|(family, size)| {
                word(family, 1, 16, |c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
                }) && word(size, 1, 16, |c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit()
                })
            });
            if ok {
                ami.instance_type = at.value.clone();
            } else {
                self.err(
                    at,
                    "ami.instance_type",
                    format!(
                        "`{}` is not an EC2 instance type such as `{default_type}`",
                        at.value
                    ),
                );
            }
        }
        if let Some(at) = &raw.name_prefix {
            if word(&at.value, 1, 100, |c| {
                c.is_ascii_alphanumeric() || "._-".contains(c)
            }) {
                ami.name_prefix = at.value.clone();
            } else {
                self.err(at, "ami.name_prefix", "an AMI name prefix is 1 to 100 letters, digits, `.`, `_` or `-` (natbake appends `-` and a timestamp)");
            }
        }
        for (i, at) in raw.copy_to.iter().enumerate() {
            let path = format!("ami.copy_to[{i}]");
            let first = ami
                .region
                .as_deref()
                .or(ami.copy_to.first().map(String::as_str));
            if self.region(at, &path, os, first) {
                if ami.copy_to.contains(&at.value) || ami.region.as_ref() == Some(&at.value) {
                    self.err(
                        at,
                        path,
                        format!("`{}` is listed twice (or is the build region)", at.value),
                    );
                } else {
                    ami.copy_to.push(at.value.clone());
                }
            }
        }
        for (i, at) in raw.share_with.iter().enumerate() {
            let id = &at.value.0;
            if word(id, 12, 12, |c| c.is_ascii_digit()) {
                if !ami.share_with.contains(id) {
                    ami.share_with.push(id.clone());
                }
            } else {
                self.err(at, format!("ami.share_with[{i}]"), format!("`{id}` is not an AWS account id: 12 digits, written in quotes so that leading zeros survive"));
            }
        }
        if let Some(at) = &raw.subnet_id {
            let ok = at.value.strip_prefix("subnet-").is_some_and(|h| {
                word(h, 1, 17, |c| {
                    c.is_ascii_hexdigit() && !c.is_ascii_uppercase()
                })
            });
            if ok {
                ami.subnet_id = Some(at.value.clone());
            } else {
                self.err(
                    at,
                    "ami.subnet_id",
                    format!(
                        "`{}` is not a subnet id such as `subnet-0abc1234`",
                        at.value
                    ),
                );
            }
        }
        if let Some(tags) = &raw.tags {
            if tags.value.0.len() > MAX_TAGS {
                self.err(tags, "ami.tags", format!("{} tags are too many: AWS allows 50 per resource, and natbake sets 4 of them", tags.value.0.len()));
            }
            for (key, value) in &tags.value.0 {
                let path = format!("ami.tags.{}", key.value);
                let k = &key.value;
                if !word(k, 1, 128, tag_char) || k.to_ascii_lowercase().starts_with("aws:") {
                    self.err(key, &path, format!("`{k}` is not a usable tag key: 1-128 letters, digits, spaces or `+-=._:/@`, not starting with `aws:`"));
                } else if k == "Name" || k.starts_with("natbake:") {
                    self.err(
                        key,
                        &path,
                        format!("the tag `{k}` is set by natbake itself"),
                    );
                } else if !word(&value.value.0, 0, 256, tag_char) {
                    self.err(
                        value,
                        &path,
                        "a tag value is up to 256 letters, digits, spaces or `+-=._:/@`",
                    );
                } else {
                    ami.tags.push((k.clone(), value.value.0.clone()));
                }
            }
        }
        ami
    }

    /// A region name, in a partition where `os` has a known image owner,
    /// and in the same partition as `first` (the build region, or the
    /// first region listed): AMIs cannot be copied across partitions.
    fn region(&mut self, at: &At<String>, path: &str, os: Os, first: Option<&str>) -> bool {
        // us-east-1, eu-central-2, us-gov-west-1, ap-southeast-5
        let parts: Vec<&str> = at.value.split('-').collect();
        let ok = parts.len() >= 3
            && word(parts[0], 2, 2, |c| c.is_ascii_lowercase())
            && parts[1..parts.len() - 1]
                .iter()
                .all(|p| word(p, 1, 16, |c| c.is_ascii_lowercase()))
            && word(parts[parts.len() - 1], 1, 2, |c| c.is_ascii_digit());
        if !ok {
            self.err(
                at,
                path,
                format!("`{}` is not an AWS region such as `us-east-1`", at.value),
            );
            return false;
        }
        let partition = Partition::of(&at.value);
        if os == Os::Debian12 && partition != Partition::Aws {
            self.err(at, path, format!(
                "`{}` is in the `{}` partition, where natbake does not know the account that publishes Debian's images; build `debian-12` in a standard region, or use `os: ubuntu-24.04` or `amazon-linux-2023`",
                at.value, partition.name()
            ));
            return false;
        }
        if let Some(first) = first
            && Partition::of(first) != partition
        {
            self.err(at, path, format!(
                "`{}` is in the `{}` partition and `{first}` in `{}`: an AMI cannot be copied between partitions; build a separate image in each",
                at.value, partition.name(), Partition::of(first).name()
            ));
            return false;
        }
        true
    }
}

/// Advice for a number written with leading zeros (`080`, `0443-0450`),
/// which some tools read as octal and natbake therefore refuses.
fn leading_zero_advice(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split('-').collect();
    let padded =
        |p: &&str| p.len() > 1 && p.starts_with('0') && p.bytes().all(|b| b.is_ascii_digit());
    if parts.len() > 2 || !parts.iter().any(padded) {
        return None;
    }
    let fixed: Vec<&str> = parts
        .iter()
        .map(|p| match p.trim_start_matches('0') {
            "" => "0",
            t => t,
        })
        .collect();
    let fixed = fixed.join("-");
    Some(format!(
        "`{text}` has a leading zero, which some tools read as an octal number; write `{fixed}`"
    ))
}

fn port_number(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.starts_with('0') {
        return None;
    }
    text.parse().ok().filter(|&n| n >= 1)
}

fn word(s: &str, min: usize, max: usize, ok: impl Fn(char) -> bool) -> bool {
    let n = s.chars().count();
    n >= min && n <= max && s.chars().all(ok)
}

fn tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " +-=._:/@".contains(c)
}

/// Control characters (C0, DEL and C1, NEL among them, which YAML 1.1
/// reads as a line break), direction and line-separator marks, and the
/// noncharacters, of which U+FFFE and U+FFFF are outside YAML's printable
/// set. Surrogates cannot occur in a Rust string.
fn forbidden_in_text(c: char) -> bool {
    c.is_control()
        || is_noncharacter(c)
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// The 66 code points Unicode reserves as never meaning a character:
/// U+FDD0..U+FDEF and the last two of every plane.
fn is_noncharacter(c: char) -> bool {
    let n = c as u32;
    (0xfdd0..=0xfdef).contains(&n) || n & 0xfffe == 0xfffe
}

/// Why `c` cannot be a VPC's CIDR block, if it cannot.
fn not_a_vpc_block(c: Cidr) -> Option<String> {
    if let Some((range, what)) = NOT_VPC_RANGES.iter().find(|(r, _)| r.overlaps(&c)) {
        return Some(format!(
            "`{c}` lies in {range} ({what}), which AWS never assigns to a VPC; use a range from RFC 1918 (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16) or the VPC's own public block"
        ));
    }
    if !VPC_PREFIXES.contains(&c.prefix()) {
        return Some(format!(
            "`{c}` is a /{} block; AWS allows VPC CIDR blocks from /{} (65,536 addresses) to /{} (16 addresses)",
            c.prefix(),
            VPC_PREFIXES.start(),
            VPC_PREFIXES.end()
        ));
    }
    None
}

/// Kernel settings that natbake's boot script owns or that would undo what
/// it guarantees: forwarding of any address family and ICMP redirects.
/// IPv4 forwarding in particular must not come from sysctl.d:
/// systemd-sysctl applies that folder early at boot, before the ruleset is
/// loaded. IPv6 forwarding would route IPv6 with no natbake rule at all.
fn is_managed_sysctl(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    key == "net.ipv4.ip_forward"
        || (key.starts_with("net.")
            && matches!(
                last,
                "forwarding"
                    | "mc_forwarding"
                    | "send_redirects"
                    | "accept_redirects"
                    | "secure_redirects"
            ))
}

/// The folders of `/proc/sys` on Linux: a key outside them exists on no
/// kernel.
const SYSCTL_ROOTS: &[&str] = &[
    "abi", "crypto", "debug", "dev", "fs", "kernel", "net", "sunrpc", "user", "vm",
];

/// Why `key` would not exist on an instance, when that can be known here.
/// configure-pat.sh applies the settings with `sysctl -p` and fails the
/// boot (forwarding off) on a key the kernel lacks.
fn sysctl_key_problem(key: &str) -> Option<String> {
    let parts: Vec<&str> = key.split('.').collect();
    if !SYSCTL_ROOTS.contains(&parts[0]) {
        let roots: Vec<String> = SYSCTL_ROOTS.iter().map(|r| format!("`{r}.`")).collect();
        return Some(format!(
            "`{key}` is not a kernel setting: keys start with one of {}; a key the instance's kernel lacks fails configure-pat.sh at every boot",
            roots.join(", ")
        ));
    }
    // net.ipv4.conf.eth0.rp_filter, net.ipv6.neigh.ens5.…: per-interface keys.
    if let ["net", "ipv4" | "ipv6", "conf" | "neigh", iface, _, ..] = parts.as_slice()
        && !matches!(*iface, "all" | "default" | "lo")
    {
        return Some(format!(
            "`{key}` names the interface `{iface}`; interface names differ between images (eth0, ens5, enX0) and a key for an interface the instance lacks fails configure-pat.sh at every boot; use `all` or `default` instead of `{iface}`"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Result<Site, Vec<Diagnostic>> {
        parse(Path::new("t.yaml"), yaml.as_bytes()).map_err(|e| e.diagnostics().to_vec())
    }

    const SEED: &str = "version: 1\nsite: corp-prod\nvpc_cidrs: [10.0.0.0/16]\nforwards:\n  - name: oracle\n    port: 51532\n    to: 10.0.1.25:1532\n    from: [203.0.113.110/32]\n";

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
}
