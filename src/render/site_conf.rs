//! `site.conf`: everything site-specific that the instance's scripts need,
//! as data.
//!
//! The scripts under `instance/` are the same bytes for every site; they
//! learn the site from this one file, installed at `/etc/natbake/site.conf`.
//! It is `NAME=VALUE` lines, read by `load_site_conf` in natbake-lib.sh,
//! which knows every name and the kind of value each takes, refuses
//! anything else naming the file and line, and never sources it: a value
//! is text, never code. Text from the spec (the description, the forwards'
//! summaries) is written as it is: validation has kept control characters
//! (a newline among them) out of it, and [`SiteConf::render`] checks that
//! again, so a value cannot end its line.
//!
//! The names and their order are those of `SITE_CONF_KEYS` in
//! natbake-lib.sh; a unit test checks that the two lists agree. A
//! feature's settings (failover's, metrics') are written only with it.

use super::artifact;
use super::ipsets;
use crate::site::Site;
use anyhow::{Result, bail};

/// The site's settings as the instance's scripts read them. What is the
/// same on every site (install paths, set names, the metrics' namespace)
/// is not here: the scripts have it, and a test checks their copy against
/// natbake's definition ([`super::instance`]'s contract test).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteConf {
    pub site: String,
    /// The spec's description, or empty.
    pub description: String,
    pub spec_sha256: String,
    /// Digests of the rendered ruleset and sets: the scripts refuse others.
    pub rules_sha256: String,
    pub ipsets_sha256: String,
    pub vpc_cidrs: Vec<String>,
    pub systemd: bool,
    /// Whether the site has the sets counting each forward's bytes.
    pub byte_sets: bool,
    pub ipset_names: Vec<String>,
    /// Elements in each set, in the order of `ipset_names`, which the
    /// health check expects to find.
    pub ipset_elements: Vec<usize>,
    /// With failover: seconds to wait for the floating interface.
    pub attach_timeout: Option<u32>,
    /// With failover: whether a warm standby pair serves (natbake-standby
    /// decides the role, the interface and forwarding).
    pub standby: bool,
    /// With metrics: whether each forward gets its own.
    pub per_forward: Option<bool>,
    pub forwards: Vec<ForwardConf>,
}

/// One forward, as the status and the counters read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConf {
    pub name: String,
    /// What its bytes are counted on: target address, protocol, first and
    /// last target port.
    pub counted_as: String,
    /// Whether another forward counts some of the same bytes.
    pub bytes_shared: bool,
    /// One line saying what it does, for the log.
    pub summary: String,
}

impl SiteConf {
    /// The settings of `site`, with the digests of its rendered ruleset
    /// and sets.
    pub fn new(site: &Site, rules_sha256: &str, ipsets_sha256: &str) -> SiteConf {
        let sets = ipsets::sets(site);
        SiteConf {
            site: site.name.clone(),
            description: site.description.clone().unwrap_or_default(),
            spec_sha256: site.spec_sha256.clone(),
            rules_sha256: rules_sha256.into(),
            ipsets_sha256: ipsets_sha256.into(),
            vpc_cidrs: site.vpc_cidrs.iter().map(|c| c.to_string()).collect(),
            systemd: site.os.has_systemd(),
            byte_sets: !sets.is_empty(),
            ipset_names: sets.iter().map(|s| s.name.to_string()).collect(),
            ipset_elements: sets.iter().map(|s| s.elements).collect(),
            attach_timeout: site.failover.map(|f| f.attach_timeout),
            standby: crate::standby::of(site).is_some(),
            per_forward: site.metrics.map(|m| m.per_forward),
            forwards: super::view::forward_views(site)
                .into_iter()
                .map(|f| ForwardConf {
                    name: f.name,
                    counted_as: f.counted_as,
                    bytes_shared: f.bytes_shared,
                    summary: f.summary,
                })
                .collect(),
        }
    }

    /// The settings as `(name, value)`, in the order of `SITE_CONF_KEYS`,
    /// then one `forward` and one `summary` line per forward.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
        let mut e: Vec<(&'static str, String)> = vec![
            ("site", self.site.clone()),
            ("description", self.description.clone()),
            ("spec_sha256", self.spec_sha256.clone()),
            ("rules_sha256", self.rules_sha256.clone()),
            ("ipsets_sha256", self.ipsets_sha256.clone()),
            ("vpc_cidrs", self.vpc_cidrs.join(" ")),
            ("systemd", yes(self.systemd)),
            ("byte_sets", yes(self.byte_sets)),
            ("ipset_names", self.ipset_names.join(" ")),
            (
                "ipset_elements",
                self.ipset_elements
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            ("failover", yes(self.attach_timeout.is_some())),
        ];
        if let Some(t) = self.attach_timeout {
            e.push(("attach_timeout", t.to_string()));
            e.push(("standby", yes(self.standby)));
        }
        e.push(("metrics", yes(self.per_forward.is_some())));
        if let Some(p) = self.per_forward {
            e.push(("per_forward", yes(p)));
        }
        for f in &self.forwards {
            let kind = if f.bytes_shared { "shared" } else { "own" };
            e.push(("forward", format!("{} {} {kind}", f.name, f.counted_as)));
            e.push(("summary", f.summary.clone()));
        }
        e
    }

    /// The file's bytes. Refuses a value with a control character, which
    /// validation keeps out of the spec: one would end or break its line.
    pub fn render(&self) -> Result<Vec<u8>> {
        let mut out =
            String::from("# natbake site settings, read by natbake-lib.sh's load_site_conf\n");
        for (name, value) in self.entries() {
            if value.chars().any(char::is_control) {
                bail!(
                    "the site setting `{name}` has a control character, which site.conf cannot carry"
                );
            }
            out.push_str(name);
            out.push('=');
            out.push_str(&value);
            out.push('\n');
        }
        Ok(out.into_bytes())
    }
}

/// The artifact's function: the settings, once the ruleset and sets they
/// name by digest are rendered.
pub(super) fn render(i: &mut artifact::Input<'_>) -> Result<Option<artifact::Output>> {
    let rules = i.rendered(artifact::RULES)?.sha256.clone();
    let ipsets = i.rendered(artifact::IPSETS)?.sha256.clone();
    let bytes = SiteConf::new(i.site, &rules, &ipsets).render()?;
    Ok(Some(i.output(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names natbake-lib.sh knows, in its order.
    fn lib_keys() -> Vec<String> {
        let lib = super::super::instance::source(artifact::LIB);
        let start = lib
            .find("SITE_CONF_KEYS='")
            .expect("SITE_CONF_KEYS in the lib")
            + 16;
        let end = start + lib[start..].find('\'').unwrap();
        lib[start..end]
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    }

    fn site(yaml: &str) -> Site {
        crate::validate::parse(std::path::Path::new("t.yaml"), yaml.as_bytes()).unwrap()
    }

    /// The Rust side writes exactly the names the lib reads, in its order,
    /// for a site with every feature.
    #[test]
    fn the_names_are_those_of_the_lib() {
        let s = site(
            "version: 1\nsite: s\nvpc_cidrs: [10.0.0.0/16]\nfailover:\n  floating_eni: true\n\
             metrics:\n  cloudwatch: true\n  per_forward: true\nforwards:\n  - name: a\n    port: 8080\n    to: 10.0.0.5:80\n    from: [192.0.2.0/24]\n",
        );
        let conf = SiteConf::new(&s, &"0".repeat(64), &"1".repeat(64));
        let names: Vec<String> = conf
            .entries()
            .into_iter()
            .map(|(n, _)| n.to_string())
            .filter(|n| n != "forward" && n != "summary")
            .collect();
        assert_eq!(names, lib_keys());
    }
}
