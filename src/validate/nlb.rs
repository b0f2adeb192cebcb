//! What a Network Load Balancer cannot carry, refused where the spec says it.
//!
//! `deployment: nlb` renders the forwards as an NLB's listeners and target
//! groups and its security group, and egress as NAT gateways. A spec that
//! works on the instance may ask for what an NLB has no way to do; each
//! such problem is reported at its line and column, with the reason and
//! what to write instead, and nothing is rendered.

use super::Validator;
use crate::render::json::{SG_RULES_DEFAULT_QUOTA, SG_RULES_PER_INTERFACE};
use crate::render::nlb::MAX_LISTENERS;
use crate::site::Forward;
use crate::spec::RawSpec;
use crate::values;
use crate::yaml::YamlPath;
use std::collections::BTreeMap;

/// Kept in step with the message of the quota note: the default quota is
/// a note at render time, the interface's ceiling a refusal here.
const _: () = assert!(SG_RULES_DEFAULT_QUOTA < SG_RULES_PER_INTERFACE);

impl Validator {
    /// The refusals of `deployment: nlb`; `forwards` are the forwards that
    /// validated (by name: names are unique once valid).
    pub(super) fn nlb_shape(&mut self, raw: &RawSpec, forwards: &[Forward]) {
        let root = YamlPath::root();
        let path = root.key("forwards");
        if raw.forwards.is_empty()
            && let Some(egress) = raw.egress.as_ref().filter(|e| !e.value)
        {
            self.err(
                egress,
                &root.key("egress"),
                "with `deployment: nlb`, a site without forwards and without egress deploys nothing; add a forward, or remove `egress: false`",
            );
        }
        // One listener per listen port (a TCP and a UDP forward on one port
        // share one); the forward that needs the 51st is refused.
        let mut ports = std::collections::BTreeSet::new();
        for (i, at) in raw.forwards.iter().enumerate() {
            let Ok(p) = values::listen_ports(&at.value.port.value.0) else {
                continue;
            };
            if ports.insert(p.first) && ports.len() == MAX_LISTENERS + 1 {
                self.err(
                    at,
                    &path.index(i),
                    format!(
                        "a Network Load Balancer has at most {MAX_LISTENERS} listeners (an AWS quota that cannot be raised), one per forwarded port; split the forwards over several specs, one load balancer each, or keep `deployment: instance`"
                    ),
                );
            }
        }
        let mut rules = 0usize;
        let mut reported_rules = false;
        for (i, at) in raw.forwards.iter().enumerate() {
            let f = &at.value;
            let fpath = path.index(i);
            if let Ok(ports) = values::listen_ports(&f.port.value.0)
                && ports.is_range()
            {
                self.err(
                    &f.port,
                    &fpath.key("port"),
                    format!(
                        "a Network Load Balancer listener takes one port, not the range `{ports}`; write one forward per port (at most {MAX_LISTENERS} in all), or keep `deployment: instance`, which forwards ranges"
                    ),
                );
            }
            if let Some(log) = f.log.as_ref().filter(|b| b.value) {
                self.err(
                    log,
                    &fpath.key("log"),
                    "a Network Load Balancer does not log TCP or UDP connections; remove `log` and turn on VPC Flow Logs for the load balancer's network interfaces instead",
                );
            }
            // Each source is one inbound rule of the load balancer's group,
            // its only filter: unlike the instance, no ruleset behind it
            // checks the source again.
            for (j, source) in f.from.value.iter().enumerate() {
                rules += 1;
                if rules > SG_RULES_PER_INTERFACE && !reported_rules {
                    reported_rules = true;
                    self.err(
                        source,
                        &fpath.key("from").index(j),
                        format!(
                            "the load balancer's security group would need more than {SG_RULES_PER_INTERFACE} inbound rules (one per source of each forward), more than AWS allows on a network interface, and it is the only filter of sources in front of the targets; use fewer, wider networks, `public: true` where any source is meant, or split the forwards over several specs"
                        ),
                    );
                }
            }
        }
        self.same_port_both_protocols(raw, forwards, &path);
        if let Some(f) = &raw.failover
            && let Some(on) = f.value.floating_eni.as_ref().filter(|b| b.value)
        {
            self.err(
                on,
                &root.key("failover").key("floating_eni"),
                "with `deployment: nlb` there is no instance to fail over: the load balancer and the NAT gateways are redundant across zones themselves; remove `failover`, or keep `deployment: instance`",
            );
        }
        if let Some(m) = &raw.metrics
            && let Some(on) = m.value.cloudwatch.as_ref().filter(|b| b.value)
        {
            self.err(
                on,
                &root.key("metrics").key("cloudwatch"),
                "with `deployment: nlb` there is no instance to publish natbake's metrics: the load balancer publishes its own to CloudWatch (namespace AWS/NetworkELB) at no charge; remove `metrics`",
            );
        }
        if let Some(at) = &raw.health {
            self.err(
                at,
                &root.key("health"),
                "with `deployment: nlb` there is no instance to check: the load balancer checks its targets itself (TCP, every 30 seconds); remove `health`",
            );
        }
        if let Some(at) = &raw.sysctl
            && !at.value.0.is_empty()
        {
            self.err(
                at,
                &root.key("sysctl"),
                "with `deployment: nlb` there is no kernel of the site's to set: remove `sysctl`",
            );
        }
    }

    /// An NLB has one listener per port, whatever the protocol: TCP and UDP
    /// on one port share a TCP_UDP listener, so they must share a target.
    fn same_port_both_protocols(&mut self, raw: &RawSpec, forwards: &[Forward], path: &YamlPath) {
        let index: BTreeMap<&str, usize> = raw
            .forwards
            .iter()
            .enumerate()
            .map(|(i, f)| (f.value.name.value.as_str(), i))
            .collect();
        let mut by_port: BTreeMap<u16, &Forward> = BTreeMap::new();
        for f in forwards.iter().filter(|f| !f.ports.is_range()) {
            let Some(first) = by_port.get(&f.ports.first).copied() else {
                by_port.insert(f.ports.first, f);
                continue;
            };
            let (Some(&i), Some(&j)) = (index.get(f.name.as_str()), index.get(first.name.as_str()))
            else {
                continue;
            };
            if (f.target, f.target_ports) == (first.target, first.target_ports) {
                // One TCP_UDP listener carries both.
                continue;
            }
            let (earlier, later, at) = if j < i { (first, f, i) } else { (f, first, j) };
            self.err(
                &raw.forwards[at].value.port,
                &path.index(at).key("port"),
                format!(
                    "{} port {} is also the {} port of forward `{}`: a Network Load Balancer has one listener per port, so TCP and UDP on one port share a TCP_UDP listener and its one target, but `{}` leads to {}:{} and `{}` to {}:{}; lead both to one target and port, move one to another port, or keep `deployment: instance`",
                    later.proto.name(),
                    later.ports,
                    earlier.proto.name(),
                    earlier.name,
                    earlier.name,
                    earlier.target,
                    earlier.target_ports,
                    later.name,
                    later.target,
                    later.target_ports,
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn spec(forwards: &str) -> String {
        format!(
            "version: 1\nsite: s\ndeployment: nlb\nvpc_cidrs: [10.0.0.0/16]\nforwards:\n{forwards}"
        )
    }

    fn forward(name: &str, proto: &str, port: u32, to: &str) -> String {
        format!(
            "  - {{name: {name}, proto: {proto}, port: {port}, to: {to}, from: [192.0.2.0/24]}}\n"
        )
    }

    fn messages(yaml: &str) -> Vec<String> {
        match crate::validate::parse(Path::new("t.yaml"), yaml.as_bytes()) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .diagnostics()
                .iter()
                .map(|d| format!("{}: {}", d.path, d.message))
                .collect(),
        }
    }

    #[test]
    fn listeners_are_counted_per_port() {
        let fifty: String = (0..50)
            .map(|i| forward(&format!("f{i}"), "tcp", 20000 + i, "10.0.1.5"))
            .collect();
        // A UDP twin on a port to the same target shares its listener.
        let twin = forward("twin", "udp", 20000, "10.0.1.5");
        assert_eq!(
            messages(&spec(&format!("{fifty}{twin}"))),
            Vec::<String>::new()
        );
        let more = forward("more", "tcp", 30000, "10.0.1.5");
        let m = messages(&spec(&format!("{fifty}{twin}{more}")));
        assert!(
            m.len() == 1
                && m[0]
                    .starts_with("forwards[51]: a Network Load Balancer has at most 50 listeners"),
            "{m:?}"
        );
        // A twin to another target cannot share it.
        let other = forward("other", "udp", 20001, "10.0.1.6");
        let m = messages(&spec(&format!(
            "{}{other}",
            forward("a", "tcp", 20001, "10.0.1.5")
        )));
        assert!(
            m.len() == 1 && m[0].contains("share a TCP_UDP listener and its one target"),
            "{m:?}"
        );
    }
}
