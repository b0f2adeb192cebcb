//! The artifact table: every file natbake writes for a site, in one place.
//!
//! Each entry says what the file is called, how it is made (a template,
//! a Rust function, or a function that finishes the view model and then
//! renders a template), where it is installed on the instance and with
//! which mode, which operating systems get it, and when it is written at
//! all. The renderer, the view model (and so every template), the manifest
//! and the tests all read this table; adding an artifact is one entry here
//! plus one template or one function.
//!
//! The table's order is the order of rendering, and of the manifest and
//! SHA256SUMS: an artifact may use any artifact above it. site.conf
//! carries the digests of rules.v4 and ipsets.v4, the user data carries every installed
//! file, the manifest lists every file above it, and SHA256SUMS comes last.
//! The instance's scripts are the same for every site ([`instance`]); what
//! they need to know of the site is in site.conf ([`site_conf`]).

use super::{Artifact, Templates, instance, json, nlb, site_conf, stack, user_data, view::View};
use crate::os::Os;
use crate::site::{Deployment, Site};
use anyhow::{Result, anyhow};
use handlebars::Context;

/// The iptables-restore ruleset.
pub const RULES: &str = "rules.v4";
/// The ipsets that count each forward's bytes, loaded before the ruleset.
pub const IPSETS: &str = "ipsets.v4";
/// The kernel settings.
pub const SYSCTL: &str = "sysctl.conf";
/// The site's settings, which the instance's scripts read.
pub const SITE_CONF: &str = "site.conf";
/// The boot step.
pub const SCRIPT: &str = "configure-pat.sh";
/// Shell functions the scripts share (logging, the ruleset checks, counters).
pub const LIB: &str = "natbake-lib.sh";
/// The systemd unit that runs the boot step.
pub const UNIT: &str = "natbake.service";
/// The AWS API helpers that configure-pat.sh sources (floating interface).
pub const AWS_LIB: &str = "natbake-aws.sh";
/// The floating interface's steps, at boot and in the health check.
pub const FAILOVER_LIB: &str = "natbake-failover.sh";
/// The health check's CloudWatch metrics.
pub const METRICS_LIB: &str = "natbake-metrics.sh";
/// The periodic check that repairs drift.
pub const HEALTH: &str = "natbake-health.sh";
/// The table of counters and health on the instance.
pub const STATUS: &str = "natbake-status.sh";
/// The systemd unit that runs the health check once.
pub const HEALTH_UNIT: &str = "natbake-health.service";
/// The systemd timer that starts the health check every interval.
pub const HEALTH_TIMER: &str = "natbake-health.timer";
/// The cron schedule of the health check where there is no systemd.
pub const HEALTH_CRON: &str = "natbake-health.cron";
/// The launch template's user data (`.gz` when it had to be compressed whole).
pub const USER_DATA: &str = "user-data.yaml";
/// What Packer runs on the build instance.
pub const PROVISION: &str = "provision.sh";
/// The Packer plugins block.
pub const PACKER_PLUGINS: &str = "plugins.pkr.hcl";
/// The Packer build.
pub const PACKER_BUILD: &str = "nat-ami.pkr.hcl";
/// The NAT instance's inbound security-group rules.
pub const SECURITY_GROUP: &str = "security-group.json";
/// What the targets' security group must allow.
pub const TARGET_SECURITY_GROUPS: &str = "target-security-groups.json";
/// The CloudFormation template that deploys the site.
pub const STACK: &str = "stack.cfn.yaml";
/// The CloudFormation template of `deployment: nlb`: a Network Load
/// Balancer for the forwards, NAT gateways for egress.
pub const NLB_STACK: &str = "nlb-stack.cfn.yaml";
/// What was rendered from what.
pub const MANIFEST: &str = "manifest.json";
/// Digests of every file above.
pub const SUMS: &str = "SHA256SUMS";

/// Where the installed scripts keep volatile state: the expected view of
/// the ruleset, the health check's findings, when each forward was last
/// seen. On a tmpfs, so a reboot starts afresh, as the boot step does.
pub const STATE_DIR: &str = "/run/natbake";

/// One kind of file natbake writes.
#[derive(Debug)]
pub struct ArtifactDef {
    /// File name inside the site folder, and the template's name.
    pub name: &'static str,
    /// The embedded template `templates/<name>.hbs`, if it has one.
    pub template: Option<&'static str>,
    /// Makes the file's bytes; `None` writes nothing (a note says why).
    pub render: fn(&mut Input<'_>) -> Result<Option<Output>>,
    /// Where the file goes on the instance; `None` for a file that stays
    /// in the site folder.
    pub install_path: Option<&'static str>,
    /// Unix permission bits, in the site folder and on the instance.
    pub mode: u32,
    /// Which operating systems get it.
    pub os: ForOs,
    /// When it is written at all.
    pub when: When,
}

/// Which operating systems get an artifact: those of the NAT instance,
/// or none, for the files of `deployment: nlb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForOs {
    /// Every instance, whatever its os.
    All,
    /// Every site, the NLB shape too.
    EveryShape,
    /// Only `deployment: nlb`, which runs no instance.
    NoInstance,
    /// Those that boot with systemd.
    Systemd,
    /// Those that do not (the legacy AWS NAT AMI, with upstart and cron).
    WithoutSystemd,
}

/// When an artifact is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// When the NAT instance has an inbound rule (a forward, or egress):
    /// EC2 refuses an empty request.
    NatInboundRules,
    /// When the site has forwards, which the targets must allow.
    Forwards,
    /// When the scripts call AWS: with failover or metrics.
    Aws,
    /// With failover (the floating interface).
    Failover,
    /// With CloudWatch metrics.
    Metrics,
    /// Unless the spec turns the health check off.
    Health,
    /// When it fits EC2's user data limit, compressed if need be; a note
    /// says so when it does not.
    FitsUserDataLimit,
    /// When it fits the largest template CloudFormation takes (from S3);
    /// a note says so when it does not.
    FitsStackLimit,
}

impl ForOs {
    /// Whether `site` gets the artifact: instance files go to instance
    /// sites of the right os only.
    pub fn includes(self, site: &Site) -> bool {
        let instance = site.deployment == Deployment::Instance;
        let os: Os = site.os;
        match self {
            ForOs::EveryShape => true,
            ForOs::NoInstance => !instance,
            ForOs::All => instance,
            ForOs::Systemd => instance && os.has_systemd(),
            ForOs::WithoutSystemd => instance && !os.has_systemd(),
        }
    }

    /// The README's words for it.
    pub fn describe(self) -> &'static str {
        match self {
            ForOs::All => "all",
            ForOs::EveryShape => "all, and the NLB",
            ForOs::NoInstance => "none: the NLB",
            ForOs::Systemd => "with systemd",
            ForOs::WithoutSystemd => "without systemd",
        }
    }
}

impl When {
    /// Whether the artifact is rendered for `site`. An artifact that
    /// learns only while rendering that it does not fit returns `None`.
    pub fn holds(self, site: &Site) -> bool {
        match self {
            When::Always | When::FitsUserDataLimit | When::FitsStackLimit => true,
            When::NatInboundRules => json::nat_inbound_rules(site) > 0,
            When::Forwards => json::target_inbound_rules(site) > 0,
            When::Aws => site.failover.is_some() || site.metrics.is_some(),
            When::Failover => site.failover.is_some(),
            When::Metrics => site.metrics.is_some(),
            When::Health => site.health_interval.is_some(),
        }
    }

    /// The README's words for it.
    pub fn describe(self) -> &'static str {
        match self {
            When::Always => "always",
            When::NatInboundRules => "with an inbound rule",
            When::Forwards => "with forwards",
            When::Aws => "with failover or metrics",
            When::Failover => "with failover",
            When::Metrics => "with metrics",
            When::Health => "with health",
            When::FitsUserDataLimit => "if it fits 16 KiB",
            When::FitsStackLimit => "if it fits 1 MB",
        }
    }
}

impl ArtifactDef {
    /// Whether `site` gets this artifact (before it is rendered).
    pub fn applies(&self, site: &Site) -> bool {
        self.os.includes(site) && self.when.holds(site)
    }

    /// The README's words for how it is made.
    pub fn made_from(&self) -> String {
        match self.template {
            Some(_) => format!("`templates/{}.hbs`", self.name),
            None if instance::SCRIPTS.iter().any(|s| s.artifact == self.name) => {
                format!("`instance/{}`", self.name)
            }
            None => "code".into(),
        }
    }
}

/// Everything an artifact's function may read: the site, the view model
/// (which it may complete for its template), and the artifacts above it.
pub struct Input<'a> {
    pub def: &'static ArtifactDef,
    pub site: &'a Site,
    pub templates: &'a Templates,
    view: &'a mut View,
    /// The view model as the templates read it, made once and kept until
    /// the view changes: a site's view, with the user data's files, is
    /// tens of kilobytes, and a dozen templates read it.
    context: &'a mut Option<Context>,
    /// Every artifact rendered so far, in the table's order.
    pub done: &'a [Artifact],
    /// Notes for the user, such as why a file was not written.
    pub notes: &'a mut Vec<String>,
}

/// A rendered file's name and bytes.
pub struct Output {
    /// The table's name, or a variant of it (`user-data.yaml.gz`).
    pub name: String,
    pub bytes: Vec<u8>,
}

impl<'a> Input<'a> {
    pub fn new(
        def: &'static ArtifactDef,
        site: &'a Site,
        templates: &'a Templates,
        view: &'a mut View,
        context: &'a mut Option<Context>,
        done: &'a [Artifact],
        notes: &'a mut Vec<String>,
    ) -> Input<'a> {
        Input {
            def,
            site,
            templates,
            view,
            context,
            done,
            notes,
        }
    }

    /// The view model.
    pub fn view(&self) -> &View {
        self.view
    }

    /// The view model, to change (which the next template sees).
    pub fn view_mut(&mut self) -> &mut View {
        *self.context = None;
        self.view
    }

    /// `bytes` under the artifact's own name.
    pub fn output(&self, bytes: Vec<u8>) -> Output {
        Output {
            name: self.def.name.into(),
            bytes,
        }
    }

    /// The artifact's template rendered with the view model as it is.
    pub fn template(&mut self) -> Result<Output> {
        let text = self.template_text()?;
        Ok(self.output(text.into_bytes()))
    }

    /// The artifact's template rendered, as text.
    pub fn template_text(&mut self) -> Result<String> {
        if self.context.is_none() {
            *self.context = Some(Context::wraps(&*self.view)?);
        }
        let context = self.context.as_ref().expect("made above");
        self.templates
            .render_context(self.def.name, context, &self.view.site)
    }

    /// An artifact above this one, by name.
    pub fn rendered(&self, name: &str) -> Result<&Artifact> {
        self.done.iter().find(|a| a.name == name).ok_or_else(|| {
            anyhow!(
                "`{}` needs `{name}`, which is not rendered before it",
                self.def.name
            )
        })
    }
}

/// Embeds `templates/<name>.hbs`.
macro_rules! template {
    ($name:literal) => {
        Some(include_str!(concat!("../../templates/", $name, ".hbs")))
    };
}

/// Every artifact, in the order it is rendered.
pub const ARTIFACTS: &[ArtifactDef] = &[
    ArtifactDef {
        name: RULES,
        template: template!("rules.v4"),
        render: just_the_template,
        install_path: Some("/etc/natbake/rules.v4"),
        mode: 0o644,
        os: ForOs::All,
        when: When::Always,
    },
    ArtifactDef {
        name: IPSETS,
        template: template!("ipsets.v4"),
        render: just_the_template,
        install_path: Some("/etc/natbake/ipsets.v4"),
        mode: 0o644,
        os: ForOs::All,
        when: When::Always,
    },
    ArtifactDef {
        name: SYSCTL,
        template: template!("sysctl.conf"),
        render: just_the_template,
        install_path: Some("/etc/sysctl.d/90-natbake.conf"),
        mode: 0o644,
        os: ForOs::All,
        when: When::Always,
    },
    ArtifactDef {
        name: SITE_CONF,
        template: None,
        render: site_conf::render,
        install_path: Some("/etc/natbake/site.conf"),
        mode: 0o644,
        os: ForOs::All,
        when: When::Always,
    },
    ArtifactDef {
        name: SCRIPT,
        template: None,
        render: instance_script,
        install_path: Some("/usr/local/sbin/configure-pat.sh"),
        mode: 0o755,
        os: ForOs::All,
        when: When::Always,
    },
    ArtifactDef {
        name: LIB,
        template: None,
        render: instance_script,
        install_path: Some("/usr/local/lib/natbake/natbake-lib.sh"),
        mode: 0o644,
        os: ForOs::All,
        when: When::Always,
    },
    ArtifactDef {
        name: UNIT,
        template: template!("natbake.service"),
        render: just_the_template,
        install_path: Some("/etc/systemd/system/natbake.service"),
        mode: 0o644,
        os: ForOs::Systemd,
        when: When::Always,
    },
    ArtifactDef {
        name: AWS_LIB,
        template: None,
        render: instance_script,
        install_path: Some("/usr/local/lib/natbake/natbake-aws.sh"),
        mode: 0o644,
        os: ForOs::Systemd,
        when: When::Aws,
    },
    ArtifactDef {
        name: FAILOVER_LIB,
        template: None,
        render: instance_script,
        install_path: Some("/usr/local/lib/natbake/natbake-failover.sh"),
        mode: 0o644,
        os: ForOs::Systemd,
        when: When::Failover,
    },
    ArtifactDef {
        name: HEALTH,
        template: None,
        render: instance_script,
        install_path: Some("/usr/local/sbin/natbake-health"),
        mode: 0o755,
        os: ForOs::All,
        when: When::Health,
    },
    ArtifactDef {
        name: STATUS,
        template: None,
        render: instance_script,
        install_path: Some("/usr/local/sbin/natbake-status"),
        mode: 0o755,
        os: ForOs::All,
        when: When::Health,
    },
    ArtifactDef {
        name: METRICS_LIB,
        template: None,
        render: instance_script,
        install_path: Some("/usr/local/lib/natbake/natbake-metrics.sh"),
        mode: 0o644,
        os: ForOs::Systemd,
        when: When::Metrics,
    },
    ArtifactDef {
        name: HEALTH_UNIT,
        template: template!("natbake-health.service"),
        render: just_the_template,
        install_path: Some("/etc/systemd/system/natbake-health.service"),
        mode: 0o644,
        os: ForOs::Systemd,
        when: When::Health,
    },
    ArtifactDef {
        name: HEALTH_TIMER,
        template: template!("natbake-health.timer"),
        render: just_the_template,
        install_path: Some("/etc/systemd/system/natbake-health.timer"),
        mode: 0o644,
        os: ForOs::Systemd,
        when: When::Health,
    },
    ArtifactDef {
        name: HEALTH_CRON,
        template: template!("natbake-health.cron"),
        render: just_the_template,
        install_path: Some("/etc/cron.d/natbake-health"),
        mode: 0o644,
        os: ForOs::WithoutSystemd,
        when: When::Health,
    },
    ArtifactDef {
        name: USER_DATA,
        template: template!("user-data.yaml"),
        render: user_data::render,
        install_path: None,
        mode: 0o644,
        os: ForOs::All,
        when: When::FitsUserDataLimit,
    },
    ArtifactDef {
        name: PROVISION,
        template: template!("provision.sh"),
        render: just_the_template,
        install_path: None,
        mode: 0o755,
        os: ForOs::All,
        when: When::Always,
    },
    ArtifactDef {
        name: PACKER_PLUGINS,
        template: template!("plugins.pkr.hcl"),
        render: just_the_template,
        install_path: None,
        mode: 0o644,
        os: ForOs::All,
        when: When::Always,
    },
    ArtifactDef {
        name: PACKER_BUILD,
        template: template!("nat-ami.pkr.hcl"),
        render: just_the_template,
        install_path: None,
        mode: 0o644,
        os: ForOs::All,
        when: When::Always,
    },
    ArtifactDef {
        name: SECURITY_GROUP,
        template: None,
        render: |i| Ok(Some(i.output(json::security_group(i.site)))),
        install_path: None,
        mode: 0o644,
        os: ForOs::All,
        when: When::NatInboundRules,
    },
    ArtifactDef {
        name: TARGET_SECURITY_GROUPS,
        template: None,
        render: |i| Ok(Some(i.output(json::target_security_groups(i.site)))),
        install_path: None,
        mode: 0o644,
        os: ForOs::EveryShape,
        when: When::Forwards,
    },
    ArtifactDef {
        name: STACK,
        template: None,
        render: stack::render,
        install_path: None,
        mode: 0o644,
        os: ForOs::All,
        when: When::FitsStackLimit,
    },
    ArtifactDef {
        name: NLB_STACK,
        template: None,
        render: nlb::render,
        install_path: None,
        mode: 0o644,
        os: ForOs::NoInstance,
        when: When::Always,
    },
    ArtifactDef {
        name: MANIFEST,
        template: None,
        render: |i| Ok(Some(i.output(json::manifest(i.site, i.done)))),
        install_path: None,
        mode: 0o644,
        os: ForOs::EveryShape,
        when: When::Always,
    },
    ArtifactDef {
        name: SUMS,
        template: None,
        render: sums,
        install_path: None,
        mode: 0o644,
        os: ForOs::EveryShape,
        when: When::Always,
    },
];

/// The table's entry for `name`.
///
/// # Panics
///
/// If no artifact has that name: names are the constants above.
pub fn artifact(name: &str) -> &'static ArtifactDef {
    ARTIFACTS
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("natbake has no artifact `{name}`"))
}

/// Where the artifact `name` is installed on the instance.
///
/// # Panics
///
/// If no artifact has that name, or it is not installed.
pub fn install_path(name: &str) -> &'static str {
    artifact(name)
        .install_path
        .unwrap_or_else(|| panic!("natbake does not install `{name}`"))
}

fn just_the_template(i: &mut Input<'_>) -> Result<Option<Output>> {
    i.template().map(Some)
}

/// A script the instance runs: the same bytes for every site (see
/// [`instance`]).
fn instance_script(i: &mut Input<'_>) -> Result<Option<Output>> {
    Ok(Some(i.output(instance::installed(i.def.name).to_vec())))
}

/// `sha256sum --check` input for every file above it.
fn sums(i: &mut Input<'_>) -> Result<Option<Output>> {
    let sums: String = i
        .done
        .iter()
        .map(|a| format!("{}  {}\n", a.sha256, a.name))
        .collect();
    Ok(Some(i.output(sums.into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_the_sums_come_last() {
        for (n, a) in ARTIFACTS.iter().enumerate() {
            assert!(
                ARTIFACTS[n + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
        }
        assert_eq!(ARTIFACTS.last().map(|a| a.name), Some(SUMS));
        assert_eq!(ARTIFACTS[ARTIFACTS.len() - 2].name, MANIFEST);
    }

    #[test]
    fn each_embedded_template_is_the_file_of_its_artifacts_name() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".hbs"))
            .collect();
        files.sort();
        let mut names = Vec::new();
        for a in ARTIFACTS {
            if let Some(text) = a.template {
                let file = format!("{}.hbs", a.name);
                let on_disk = std::fs::read_to_string(dir.join(&file)).unwrap();
                assert!(
                    text == on_disk,
                    "{} embeds another file than {file}",
                    a.name
                );
                names.push(file);
            }
        }
        names.sort();
        assert_eq!(names, files, "every template belongs to one artifact");
    }

    #[test]
    fn installed_files_are_above_the_user_data_that_carries_them() {
        let user_data = ARTIFACTS.iter().position(|a| a.name == USER_DATA).unwrap();
        for (n, a) in ARTIFACTS.iter().enumerate() {
            if let Some(path) = a.install_path {
                assert!(
                    n < user_data,
                    "{} is installed but rendered after the user data",
                    a.name
                );
                assert!(path.starts_with('/'), "{path}");
            }
        }
    }

    #[test]
    fn executables_are_the_scripts() {
        for a in ARTIFACTS {
            // A library under /usr/local/lib is sourced, never run.
            let library = a
                .install_path
                .is_some_and(|p| p.starts_with("/usr/local/lib/"));
            let script = a.name.ends_with(".sh") && !library;
            assert_eq!(a.mode, if script { 0o755 } else { 0o644 }, "{}", a.name);
        }
    }
}
