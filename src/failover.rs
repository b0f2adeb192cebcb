//! What the instance's scripts need from AWS: a replaceable instance with
//! a floating interface, and the health check's CloudWatch metrics.
//!
//! [`ACTIONS`] is the one list of API actions the instance's scripts call;
//! the IAM policy in the manifest and docs/failover.md is built from the actions
//! a spec turns on ([`actions`]), and a test compares that with the
//! `Action=` calls in the rendered scripts, so a new call cannot ship
//! without its permission (or a permission without a call).

use crate::site::Site;
use serde_json::{Value, json};

/// How an action's permission can be narrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The action has no resource type: `Resource: "*"` is the only form.
    Any,
    /// Both the interface and the instance must carry `natbake:site=<site>`.
    SiteInterfaceAndInstance,
    /// The Auto Scaling group must carry `natbake:site=<site>`.
    SiteGroup,
    /// Only into CloudWatch namespace `natbake` (`cloudwatch:namespace`).
    Namespace,
}

/// Which part of the spec makes the scripts call an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// `failover.floating_eni`.
    Failover,
    /// `metrics.cloudwatch`.
    Metrics,
    /// `failover.standby`.
    Standby,
}

/// One API action the instance calls, with why and how it is scoped.
#[derive(Debug, Clone, Copy)]
pub struct Action {
    /// IAM service prefix (the Query API signs CloudWatch as `monitoring`).
    pub service: &'static str,
    pub name: &'static str,
    pub scope: Scope,
    pub needs: Needs,
    pub why: &'static str,
}

/// Every action the scripts call, for any spec.
pub const ACTIONS: &[Action] = &[
    Action {
        service: "ec2",
        name: "DescribeNetworkInterfaces",
        scope: Scope::Any,
        needs: Needs::Failover,
        why: "find the interface tagged with the site in this availability zone, and who holds it",
    },
    Action {
        service: "ec2",
        name: "DescribeInstances",
        scope: Scope::Any,
        needs: Needs::Failover,
        why: "the state of the instance holding the interface, this instance's Auto Scaling group, and a standby pair's peers (the site's other instances in the zone)",
    },
    Action {
        service: "ec2",
        name: "AttachNetworkInterface",
        scope: Scope::SiteInterfaceAndInstance,
        needs: Needs::Failover,
        why: "attach the site's interface to this instance as device 1",
    },
    Action {
        service: "ec2",
        name: "DetachNetworkInterface",
        scope: Scope::SiteInterfaceAndInstance,
        needs: Needs::Failover,
        why: "take the interface back from a stopped instance of the site, which EC2 never releases",
    },
    Action {
        service: "autoscaling",
        name: "SetInstanceHealth",
        scope: Scope::SiteGroup,
        needs: Needs::Failover,
        why: "report this instance unhealthy after a failed boot or a lost interface, so that the group replaces it",
    },
    Action {
        service: "autoscaling",
        name: "CompleteLifecycleAction",
        scope: Scope::SiteGroup,
        needs: Needs::Standby,
        why: "let the group terminate this instance once the standby has taken the interface over (the termination lifecycle hook)",
    },
    Action {
        service: "cloudwatch",
        name: "PutMetricData",
        scope: Scope::Namespace,
        needs: Needs::Metrics,
        why: "publish the site's metrics once a minute",
    },
];

/// The actions the scripts rendered for `site` call.
pub fn actions(site: &Site) -> Vec<&'static Action> {
    ACTIONS
        .iter()
        .filter(|a| match a.needs {
            Needs::Failover => site.failover.is_some(),
            Needs::Metrics => site.metrics.is_some(),
            Needs::Standby => crate::standby::of(site).is_some(),
        })
        .collect()
}

/// What a statement of the instance role's policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arn {
    /// `*`: the action has no resource type, or one that cannot be
    /// narrowed by tag.
    Any,
    /// The resources of a service in the stack's partition, region and
    /// account.
    Of {
        service: &'static str,
        path: &'static str,
    },
}

impl Arn {
    /// The ARN as `Fn::Sub` takes it: partition, region and account are
    /// `${AWS::Partition}`, `${AWS::Region}` and `${AWS::AccountId}`.
    pub fn for_sub(self) -> String {
        match self {
            Arn::Any => "*".into(),
            Arn::Of { service, path } => format!(
                "arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{path}"
            ),
        }
    }
}

/// One statement of the instance role's policy: it allows `actions` on
/// `resources`, when the condition (`StringEquals` of one key) holds.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sid: &'static str,
    pub actions: Vec<String>,
    /// One is written as a string, more as a list.
    pub resources: Vec<Arn>,
    pub condition: Option<(&'static str, String)>,
}

/// The instance role's policy for what `site` turns on, least privilege:
/// describe calls (which EC2 cannot scope) on `*`, EC2 and Auto Scaling
/// changes only on resources tagged `natbake:site=<site>`, metrics only
/// into namespace `natbake`.
pub fn statements(site: &Site) -> Vec<Statement> {
    let mut statements = Vec::new();
    let granted = actions(site);
    let names = |scope: Scope| -> Vec<String> {
        granted
            .iter()
            .filter(|a| a.scope == scope)
            .map(|a| format!("{}:{}", a.service, a.name))
            .collect()
    };
    let tagged = || Some(("aws:ResourceTag/natbake:site", site.name.clone()));
    if site.failover.is_some() {
        statements.push(Statement {
            sid: "FindInterfaceAndHolder",
            actions: names(Scope::Any),
            resources: vec![Arn::Any],
            condition: None,
        });
        statements.push(Statement {
            sid: "MoveSiteInterfaceBetweenSiteInstances",
            actions: names(Scope::SiteInterfaceAndInstance),
            resources: vec![
                Arn::Of {
                    service: "ec2",
                    path: "network-interface/*",
                },
                Arn::Of {
                    service: "ec2",
                    path: "instance/*",
                },
            ],
            condition: tagged(),
        });
        statements.push(Statement {
            sid: "ReportOwnHealth",
            actions: names(Scope::SiteGroup),
            resources: vec![Arn::Of {
                service: "autoscaling",
                path: "autoScalingGroup:*:autoScalingGroupName/*",
            }],
            condition: tagged(),
        });
    }
    if site.metrics.is_some() {
        // PutMetricData has no resource type; the namespace is its only
        // narrowing.
        statements.push(Statement {
            sid: "PublishSiteMetrics",
            actions: names(Scope::Namespace),
            resources: vec![Arn::Any],
            condition: Some(("cloudwatch:namespace", crate::metrics::NAMESPACE.into())),
        });
    }
    statements
}

/// [`statements`] as an IAM policy document, its ARNs written for
/// `Fn::Sub` ([`Arn::for_sub`]).
pub fn iam_policy(site: &Site) -> Value {
    let statements: Vec<Value> = statements(site)
        .into_iter()
        .map(|s| {
            let resources: Vec<String> = s.resources.iter().map(|a| a.for_sub()).collect();
            let mut v = json!({
                "Sid": s.sid,
                "Effect": "Allow",
                "Action": s.actions,
                "Resource": match resources.as_slice() {
                    [one] => json!(one),
                    _ => json!(resources),
                },
            });
            if let Some((key, value)) = s.condition {
                v["Condition"] = json!({"StringEquals": {key: value}});
            }
            v
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_in_exactly_one_statement() {
        let base = "version: 1\nsite: s\nvpc_cidrs: [10.0.0.0/16]\n";
        for (extra, expected) in [
            ("failover: {floating_eni: true}\n", 5),
            ("health: {}\nmetrics: {cloudwatch: true}\n", 1),
            (
                "failover: {floating_eni: true}\nhealth: {}\nmetrics: {cloudwatch: true}\n",
                6,
            ),
            ("failover: {floating_eni: true, standby: true}\n", 6),
        ] {
            let site = crate::validate::parse(
                std::path::Path::new("t.yaml"),
                format!("{base}{extra}").as_bytes(),
            )
            .unwrap();
            assert_eq!(actions(&site).len(), expected, "{extra}");
            granted_equals_actions(&site);
        }
    }

    fn granted_equals_actions(site: &Site) {
        let policy = iam_policy(site);
        let mut granted: Vec<String> = policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["Action"].as_array().unwrap().clone())
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        granted.sort();
        let mut listed: Vec<String> = actions(site)
            .iter()
            .map(|a| format!("{}:{}", a.service, a.name))
            .collect();
        listed.sort();
        assert_eq!(granted, listed);
    }
}
