//! What a replaceable instance with a floating interface needs from AWS.
//!
//! [`ACTIONS`] is the one list of API actions the instance's scripts call;
//! the IAM policy in the manifest and the README is built from it, and a
//! test compares it with the `Action=` calls in the rendered scripts, so a
//! new call cannot ship without its permission (or a permission without a
//! call).

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
}

/// One API action the instance calls, with why and how it is scoped.
#[derive(Debug, Clone, Copy)]
pub struct Action {
    /// IAM service prefix, which is also the Query API's signing name.
    pub service: &'static str,
    pub name: &'static str,
    pub scope: Scope,
    pub why: &'static str,
}

/// Every action configure-pat.sh calls with `failover.floating_eni`.
pub const ACTIONS: &[Action] = &[
    Action {
        service: "ec2",
        name: "DescribeNetworkInterfaces",
        scope: Scope::Any,
        why: "find the interface tagged with the site in this availability zone, and who holds it",
    },
    Action {
        service: "ec2",
        name: "DescribeInstances",
        scope: Scope::Any,
        why: "the state of the instance holding the interface, and this instance's Auto Scaling group",
    },
    Action {
        service: "ec2",
        name: "AttachNetworkInterface",
        scope: Scope::SiteInterfaceAndInstance,
        why: "attach the site's interface to this instance as device 1",
    },
    Action {
        service: "ec2",
        name: "DetachNetworkInterface",
        scope: Scope::SiteInterfaceAndInstance,
        why: "take the interface back from a stopped instance of the site, which EC2 never releases",
    },
    Action {
        service: "autoscaling",
        name: "SetInstanceHealth",
        scope: Scope::SiteGroup,
        why: "report this instance unhealthy after a failed boot, so that the group replaces it",
    },
];

/// The ARN prefix of a service, written for CloudFormation's `Fn::Sub`.
fn arn(service: &str, rest: &str) -> String {
    format!("arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{rest}")
}

/// The instance role's policy document, least privilege: describe calls
/// (which EC2 cannot scope) on `*`, everything else only on resources
/// tagged `natbake:site=<site>`. ARNs hold `${AWS::Partition}`,
/// `${AWS::Region}` and `${AWS::AccountId}` for `Fn::Sub`.
pub fn iam_policy(site: &Site) -> Value {
    let mut statements = Vec::new();
    let names = |scope: Scope| -> Vec<String> {
        ACTIONS
            .iter()
            .filter(|a| a.scope == scope)
            .map(|a| format!("{}:{}", a.service, a.name))
            .collect()
    };
    statements.push(json!({
        "Sid": "FindInterfaceAndHolder",
        "Effect": "Allow",
        "Action": names(Scope::Any),
        "Resource": "*",
    }));
    statements.push(json!({
        "Sid": "MoveSiteInterfaceBetweenSiteInstances",
        "Effect": "Allow",
        "Action": names(Scope::SiteInterfaceAndInstance),
        "Resource": [arn("ec2", "network-interface/*"), arn("ec2", "instance/*")],
        "Condition": {"StringEquals": {"aws:ResourceTag/natbake:site": site.name}},
    }));
    statements.push(json!({
        "Sid": "ReportOwnHealth",
        "Effect": "Allow",
        "Action": names(Scope::SiteGroup),
        "Resource": arn("autoscaling", "autoScalingGroup:*:autoScalingGroupName/*"),
        "Condition": {"StringEquals": {"aws:ResourceTag/natbake:site": site.name}},
    }));
    json!({"Version": "2012-10-17", "Statement": statements})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_in_exactly_one_statement() {
        let site = crate::validate::parse(
            std::path::Path::new("t.yaml"),
            b"version: 1\nsite: s\nvpc_cidrs: [10.0.0.0/16]\nfailover: {floating_eni: true}\n",
        )
        .unwrap();
        let policy = iam_policy(&site);
        let mut granted: Vec<String> = policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["Action"].as_array().unwrap().clone())
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        granted.sort();
        let mut listed: Vec<String> = ACTIONS
            .iter()
            .map(|a| format!("{}:{}", a.service, a.name))
            .collect();
        listed.sort();
        assert_eq!(granted, listed);
    }
}
