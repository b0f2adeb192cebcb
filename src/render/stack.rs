//! `stack.cfn.yaml`: one CloudFormation template that deploys the site.
//!
//! The template is built as a tree here and written by a small YAML
//! emitter in which every string is a double-quoted scalar made by
//! [`escape::yaml`], so spec text stays text. Nothing from the spec goes
//! through `Fn::Sub`: only the ARNs of [`failover::iam_policy`] and the
//! recover action, which are natbake's own text, are substituted.
//!
//! Two shapes. With `failover`, an Auto Scaling group of one replaces a
//! failed instance and the replacement takes over the floating interface,
//! which holds the elastic IP and is the private routes' target. Without
//! it, a replacement would come up with another interface, losing both,
//! so there is one instance and a CloudWatch alarm that recovers it in
//! place (same instance id, interface, address and routes).

use super::artifact::{Input, Output, SECURITY_GROUP, USER_DATA};
use super::escape;
use crate::failover;
use crate::site::Site;
use anyhow::Result;
use serde_json::Value;

/// How many private route tables the template takes. CloudFormation cannot
/// loop over a list parameter without the `AWS::LanguageExtensions`
/// transform, so each table is a parameter of its own, empty when unused.
pub const ROUTE_TABLES: usize = 4;

/// The largest template `aws cloudformation deploy` may upload directly;
/// larger ones go through S3 (`--s3-bucket`), up to 1 MB.
pub const DIRECT_UPLOAD_LIMIT: usize = 51_200;

/// The tag that names the site on the interface, instance and group; the
/// instance role's conditions read it.
pub(super) const SITE_TAG: &str = "natbake:site";

/// A node of the template.
#[derive(Debug, Clone)]
pub(super) enum Y {
    Str(String),
    Num(i64),
    Bool(bool),
    Map(Vec<(String, Y)>),
    List(Vec<Y>),
}

pub(super) fn s(text: &str) -> Y {
    Y::Str(text.into())
}

pub(super) fn map<const N: usize>(entries: [(&str, Y); N]) -> Y {
    Y::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

pub(super) fn r(name: &str) -> Y {
    map([("Ref", s(name))])
}

pub(super) fn att(resource: &str, attribute: &str) -> Y {
    map([("Fn::GetAtt", Y::List(vec![s(resource), s(attribute)]))])
}

pub(super) fn sub(text: &str) -> Y {
    map([("Fn::Sub", s(text))])
}

pub(super) fn when(condition: &str, then: Y, otherwise: Y) -> Y {
    map([("Fn::If", Y::List(vec![s(condition), then, otherwise]))])
}

pub(super) fn no_value() -> Y {
    r("AWS::NoValue")
}

pub(super) fn resource(kind: &str, properties: Y) -> Y {
    map([("Type", s(kind)), ("Properties", properties)])
}

pub(super) fn site_tags(site: &Site) -> Y {
    Y::List(vec![map([("Key", s(SITE_TAG)), ("Value", s(&site.name))])])
}

/// A JSON value as a tree; strings that hold `${` are natbake's ARNs
/// written for `Fn::Sub` (spec text never reaches here with one: site
/// names are letters, digits and dashes).
fn from_json(v: &Value, substitute: bool) -> Y {
    match v {
        Value::String(t) if substitute && t.contains("${") => sub(t),
        Value::String(t) => s(t),
        Value::Number(n) => n.as_i64().map_or_else(|| s(&n.to_string()), Y::Num),
        Value::Bool(b) => Y::Bool(*b),
        Value::Null => s(""),
        Value::Array(a) => Y::List(a.iter().map(|v| from_json(v, substitute)).collect()),
        Value::Object(o) => Y::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), from_json(v, substitute)))
                .collect(),
        ),
    }
}

/// Renders the stack; a note (and the manifest) says when it is too large
/// to upload directly.
pub fn render(i: &mut Input<'_>) -> Result<Option<Output>> {
    let site = i.site;
    let ingress = match i.rendered(SECURITY_GROUP) {
        Ok(a) => serde_json::from_slice(&a.bytes)?,
        Err(_) => Value::Array(Vec::new()),
    };
    let user_data = i
        .done
        .iter()
        .find(|a| a.name.starts_with(USER_DATA))
        .map(|a| super::escape::base64(&a.bytes));
    let template = Stack::new(site, user_data).template(&ingress);
    let mut text = String::new();
    emit(&template, 0, &mut text);
    if text.len() > DIRECT_UPLOAD_LIMIT {
        i.notes.push(too_large_note(text.len()));
    }
    Ok(Some(i.output(text.into_bytes())))
}

/// What the user is told when the template passes the direct upload limit.
pub fn too_large_note(bytes: usize) -> String {
    format!(
        "{} is {bytes} bytes, more than the {DIRECT_UPLOAD_LIMIT} bytes CloudFormation takes directly: deploy it \
         with `aws cloudformation deploy --s3-bucket BUCKET ...` (templates up to 1 MB)",
        super::artifact::STACK
    )
}

struct Stack<'a> {
    site: &'a Site,
    /// Base64 of the rendered user data, when the site has one.
    user_data: Option<String>,
    /// The official image's SSM parameter, when the stack can launch it
    /// (the os has one and the user data carries natbake).
    official: Option<&'static str>,
}

impl<'a> Stack<'a> {
    fn new(site: &'a Site, user_data: Option<String>) -> Stack<'a> {
        let official = user_data
            .as_ref()
            .and_then(|_| site.os.official_image_parameter(site.arch));
        Stack {
            site,
            user_data,
            official,
        }
    }

    fn template(&self, ingress: &Value) -> Y {
        let mut top = vec![
            ("AWSTemplateFormatVersion".to_string(), s("2010-09-09")),
            ("Description".to_string(), s(&self.description())),
            ("Parameters".to_string(), Y::Map(self.parameters())),
            ("Conditions".to_string(), Y::Map(self.conditions())),
        ];
        let mut resources = vec![("SecurityGroup".to_string(), self.security_group(ingress))];
        resources.extend(self.address_and_routes());
        if self.has_role() {
            resources.extend(self.role());
        }
        resources.push(("LaunchTemplate".into(), self.launch_template()));
        resources.extend(self.instance_or_group());
        resources.extend(self.alarms());
        top.push(("Resources".into(), Y::Map(resources)));
        top.push(("Outputs".into(), Y::Map(self.outputs())));
        Y::Map(top)
    }

    fn description(&self) -> String {
        let mut d = format!("natbake NAT instance of site {}", self.site.name);
        if let Some(text) = &self.site.description {
            // CloudFormation keeps at most 1024 bytes of description.
            if d.len() + 2 + text.len() <= 1024 {
                d = format!("{d}: {text}");
            }
        }
        d
    }

    fn parameters(&self) -> Vec<(String, Y)> {
        let mut p = vec![
            (
                "VpcId".to_string(),
                map([
                    ("Type", s("AWS::EC2::VPC::Id")),
                    ("Description", s("The VPC of the NAT instance")),
                ]),
            ),
            (
                "PublicSubnetId".to_string(),
                map([
                    ("Type", s("AWS::EC2::Subnet::Id")),
                    (
                        "Description",
                        s("The public subnet (one availability zone) the NAT instance runs in"),
                    ),
                ]),
            ),
        ];
        for n in 1..=ROUTE_TABLES {
            p.push((
                format!("PrivateRouteTable{n}"),
                map([
                    ("Type", s("String")),
                    ("Default", s("")),
                    ("AllowedPattern", s("^(rtb-[0-9a-f]+)?$")),
                    (
                        "Description",
                        s("A private route table whose 0.0.0.0/0 route goes through the NAT; empty for none"),
                    ),
                ]),
            ));
        }
        if let Some(name) = self.official {
            p.push((
                "ImageId".into(),
                map([
                    ("Type", s("String")),
                    ("Default", s("")),
                    ("AllowedPattern", s("^(ami-[0-9a-f]+)?$")),
                    (
                        "Description",
                        s("A baked natbake AMI; empty launches the official image of the spec's os with the rendered user data"),
                    ),
                ]),
            ));
            p.push((
                "OfficialImageId".into(),
                map([
                    ("Type", s("AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>")),
                    ("Default", s(name)),
                    (
                        "Description",
                        s("The public SSM parameter naming the official image, used when ImageId is empty"),
                    ),
                ]),
            ));
        } else {
            p.push((
                "ImageId".into(),
                map([
                    ("Type", s("AWS::EC2::Image::Id")),
                    ("Description", s(&self.required_image_why())),
                ]),
            ));
        }
        p.push((
            "InstanceType".into(),
            map([
                ("Type", s("String")),
                ("Default", s(&self.site.ami.instance_type)),
            ]),
        ));
        p.push((
            "KeyName".into(),
            map([
                ("Type", s("String")),
                ("Default", s("")),
                ("Description", s("An EC2 key pair for SSH; empty for none")),
            ]),
        ));
        p.push((
            "AlarmTopicArn".into(),
            map([
                ("Type", s("String")),
                ("Default", s("")),
                (
                    "Description",
                    s("An SNS topic the alarms notify; empty for none"),
                ),
            ]),
        ));
        p
    }

    fn required_image_why(&self) -> String {
        if self.user_data.is_none() {
            "A baked natbake AMI (required: the user data is too large for EC2, so the official image cannot be configured at launch)".into()
        } else {
            format!(
                "A baked natbake AMI (required: {} has no official image parameter)",
                self.site.os.name()
            )
        }
    }

    fn conditions(&self) -> Vec<(String, Y)> {
        let is_empty = |param: &str| map([("Fn::Equals", Y::List(vec![r(param), s("")]))]);
        let not = |c: Y| map([("Fn::Not", Y::List(vec![c]))]);
        let mut c = Vec::new();
        for n in 1..=ROUTE_TABLES {
            c.push((
                format!("HasPrivateRouteTable{n}"),
                not(is_empty(&format!("PrivateRouteTable{n}"))),
            ));
        }
        if self.official.is_some() {
            c.push(("UseOfficialImage".into(), is_empty("ImageId")));
        }
        c.push(("HasKeyName".into(), not(is_empty("KeyName"))));
        c.push(("HasAlarmTopic".into(), not(is_empty("AlarmTopicArn"))));
        c
    }

    /// Inbound exactly as `security-group.json` (the same function makes
    /// both), one CloudFormation rule per source; outbound the default.
    fn security_group(&self, ingress: &Value) -> Y {
        let mut rules = Vec::new();
        for p in ingress.as_array().into_iter().flatten() {
            for range in p["IpRanges"].as_array().into_iter().flatten() {
                let mut rule = vec![("IpProtocol".to_string(), from_json(&p["IpProtocol"], false))];
                for port in ["FromPort", "ToPort"] {
                    if let Some(v) = p.get(port) {
                        rule.push((port.into(), from_json(v, false)));
                    }
                }
                rule.push(("CidrIp".into(), from_json(&range["CidrIp"], false)));
                rule.push((
                    "Description".into(),
                    from_json(&range["Description"], false),
                ));
                rules.push(Y::Map(rule));
            }
        }
        let mut props = vec![
            (
                "GroupDescription".to_string(),
                s(&format!("natbake {} NAT instance", self.site.name)),
            ),
            ("VpcId".into(), r("VpcId")),
        ];
        if !rules.is_empty() {
            props.push(("SecurityGroupIngress".into(), Y::List(rules)));
        }
        props.push(("Tags".into(), site_tags(self.site)));
        resource("AWS::EC2::SecurityGroup", Y::Map(props))
    }

    /// The elastic IP and the private routes, on the floating interface
    /// (failover) or on the one instance.
    fn address_and_routes(&self) -> Vec<(String, Y)> {
        let (target_key, target) = if self.site.failover.is_some() {
            ("NetworkInterfaceId", r("Interface"))
        } else {
            ("InstanceId", r("Instance"))
        };
        let mut out = Vec::new();
        if self.site.failover.is_some() {
            out.push((
                "Interface".to_string(),
                resource(
                    "AWS::EC2::NetworkInterface",
                    map([
                        (
                            "Description",
                            s(&format!("natbake {} floating interface", self.site.name)),
                        ),
                        ("SubnetId", r("PublicSubnetId")),
                        ("GroupSet", Y::List(vec![att("SecurityGroup", "GroupId")])),
                        ("SourceDestCheck", Y::Bool(false)),
                        ("Tags", site_tags(self.site)),
                    ]),
                ),
            ));
        }
        if self.site.failover.is_some() {
            // An address resource names an instance only: the interface
            // takes it through an association.
            out.push((
                "ElasticIp".into(),
                resource(
                    "AWS::EC2::EIP",
                    map([("Domain", s("vpc")), ("Tags", site_tags(self.site))]),
                ),
            ));
            out.push((
                "ElasticIpAssociation".into(),
                resource(
                    "AWS::EC2::EIPAssociation",
                    map([
                        ("AllocationId", att("ElasticIp", "AllocationId")),
                        (target_key, target.clone()),
                    ]),
                ),
            ));
        } else {
            out.push((
                "ElasticIp".into(),
                resource(
                    "AWS::EC2::EIP",
                    map([
                        ("Domain", s("vpc")),
                        (target_key, target.clone()),
                        ("Tags", site_tags(self.site)),
                    ]),
                ),
            ));
        }
        for n in 1..=ROUTE_TABLES {
            out.push((
                format!("PrivateRoute{n}"),
                map([
                    ("Type", s("AWS::EC2::Route")),
                    ("Condition", s(&format!("HasPrivateRouteTable{n}"))),
                    (
                        "Properties",
                        map([
                            ("RouteTableId", r(&format!("PrivateRouteTable{n}"))),
                            ("DestinationCidrBlock", s("0.0.0.0/0")),
                            (target_key, target.clone()),
                        ]),
                    ),
                ]),
            ));
        }
        out
    }

    /// Whether the instance's scripts call any AWS API (failover,
    /// metrics): only then does it get a role.
    fn has_role(&self) -> bool {
        !failover::actions(self.site).is_empty()
    }

    /// The instance role: exactly the permissions the scripts use, from
    /// [`failover::iam_policy`].
    fn role(&self) -> Vec<(String, Y)> {
        let assume = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }],
        });
        vec![
            (
                "InstanceRole".to_string(),
                resource(
                    "AWS::IAM::Role",
                    map([
                        ("AssumeRolePolicyDocument", from_json(&assume, false)),
                        (
                            "Policies",
                            Y::List(vec![map([
                                ("PolicyName", s("natbake-instance")),
                                (
                                    "PolicyDocument",
                                    from_json(&failover::iam_policy(self.site), true),
                                ),
                            ])]),
                        ),
                        ("Tags", site_tags(self.site)),
                    ]),
                ),
            ),
            (
                "InstanceProfile".to_string(),
                resource(
                    "AWS::IAM::InstanceProfile",
                    map([("Roles", Y::List(vec![r("InstanceRole")]))]),
                ),
            ),
        ]
    }

    /// The baked image, or the official one when ImageId is empty.
    fn image(&self) -> Y {
        match self.official {
            Some(_) => when("UseOfficialImage", r("OfficialImageId"), r("ImageId")),
            None => r("ImageId"),
        }
    }

    fn launch_template(&self) -> Y {
        let mut data = vec![
            ("ImageId".to_string(), self.image()),
            ("InstanceType".into(), r("InstanceType")),
            (
                "KeyName".into(),
                when("HasKeyName", r("KeyName"), no_value()),
            ),
        ];
        if self.site.failover.is_some() {
            // Before it holds the floating interface, the instance reaches
            // the EC2 API (and, on the official image, its package
            // mirrors) through its own interface: that one needs a public
            // address of its own, whatever the subnet's default.
            data.push((
                "NetworkInterfaces".into(),
                Y::List(vec![map([
                    ("DeviceIndex", Y::Num(0)),
                    ("AssociatePublicIpAddress", Y::Bool(true)),
                    ("DeleteOnTermination", Y::Bool(true)),
                    ("Groups", Y::List(vec![att("SecurityGroup", "GroupId")])),
                ])]),
            ));
        } else {
            data.push((
                "SecurityGroupIds".into(),
                Y::List(vec![att("SecurityGroup", "GroupId")]),
            ));
        }
        if self.has_role() {
            data.push((
                "IamInstanceProfile".into(),
                map([("Arn", att("InstanceProfile", "Arn"))]),
            ));
        }
        data.push((
            "MetadataOptions".into(),
            map([
                ("HttpEndpoint", s("enabled")),
                ("HttpTokens", s("required")),
                ("HttpPutResponseHopLimit", Y::Num(1)),
            ]),
        ));
        data.push((
            "TagSpecifications".into(),
            Y::List(vec![map([
                ("ResourceType", s("instance")),
                ("Tags", site_tags(self.site)),
            ])]),
        ));
        if let (Some(_), Some(user_data)) = (self.official, &self.user_data) {
            data.push((
                "UserData".into(),
                when("UseOfficialImage", s(user_data), no_value()),
            ));
        }
        resource(
            "AWS::EC2::LaunchTemplate",
            map([("LaunchTemplateData", Y::Map(data))]),
        )
    }

    fn launch_template_ref() -> Y {
        map([
            ("LaunchTemplateId", r("LaunchTemplate")),
            ("Version", att("LaunchTemplate", "LatestVersionNumber")),
        ])
    }

    fn instance_or_group(&self) -> Vec<(String, Y)> {
        if self.site.failover.is_some() {
            let group = map([
                ("Type", s("AWS::AutoScaling::AutoScalingGroup")),
                // The first instance finds the interface, and the elastic
                // IP on it, at its first boot.
                (
                    "DependsOn",
                    Y::List(vec![s("Interface"), s("ElasticIpAssociation")]),
                ),
                (
                    "Properties",
                    map([
                        ("MinSize", s("1")),
                        ("MaxSize", s("1")),
                        ("DesiredCapacity", s("1")),
                        ("VPCZoneIdentifier", Y::List(vec![r("PublicSubnetId")])),
                        ("LaunchTemplate", Self::launch_template_ref()),
                        ("HealthCheckType", s("EC2")),
                        (
                            "MetricsCollection",
                            Y::List(vec![map([("Granularity", s("1Minute"))])]),
                        ),
                        (
                            "Tags",
                            Y::List(vec![map([
                                ("Key", s(SITE_TAG)),
                                ("Value", s(&self.site.name)),
                                ("PropagateAtLaunch", Y::Bool(true)),
                            ])]),
                        ),
                    ]),
                ),
            ]);
            vec![("Group".into(), group)]
        } else {
            vec![(
                "Instance".into(),
                resource(
                    "AWS::EC2::Instance",
                    map([
                        ("LaunchTemplate", Self::launch_template_ref()),
                        // The launch template's image again: CloudFormation
                        // takes the same value either way, and moto's
                        // launches an instance only from its own ImageId.
                        ("ImageId", self.image()),
                        ("SubnetId", r("PublicSubnetId")),
                        ("SourceDestCheck", Y::Bool(false)),
                    ]),
                ),
            )]
        }
    }

    /// The alarms on what AWS measures itself. Alarms on natbake's own
    /// health metrics join this list when the instance publishes them.
    fn alarms(&self) -> Vec<(String, Y)> {
        let topic = || {
            when(
                "HasAlarmTopic",
                Y::List(vec![r("AlarmTopicArn")]),
                no_value(),
            )
        };
        let mut alarms = if self.site.failover.is_some() {
            let group = || {
                Y::List(vec![map([
                    ("Name", s("AutoScalingGroupName")),
                    ("Value", r("Group")),
                ])])
            };
            vec![
                (
                    "NoInstanceAlarm".into(),
                    alarm(Alarm {
                        description: "The NAT's Auto Scaling group has no instance in service",
                        namespace: "AWS/AutoScaling",
                        metric: "GroupInServiceInstances",
                        dimensions: group(),
                        statistic: "Minimum",
                        periods: 3,
                        operator: "LessThanThreshold",
                        threshold: 1,
                        missing: "breaching",
                        actions: topic(),
                    }),
                ),
                (
                    "ReplacementAlarm".into(),
                    alarm(Alarm {
                        description: "The NAT's Auto Scaling group is replacing its instance",
                        namespace: "AWS/AutoScaling",
                        metric: "GroupTerminatingInstances",
                        dimensions: group(),
                        statistic: "Maximum",
                        periods: 1,
                        operator: "GreaterThanThreshold",
                        threshold: 0,
                        missing: "notBreaching",
                        actions: topic(),
                    }),
                ),
            ]
        } else {
            let recover = sub("arn:${AWS::Partition}:automate:${AWS::Region}:ec2:recover");
            vec![(
                "RecoverAlarm".into(),
                alarm(Alarm {
                    description: "EC2 recovers the NAT instance in place (same id, address and routes) when its host fails",
                    namespace: "AWS/EC2",
                    metric: "StatusCheckFailed_System",
                    dimensions: Y::List(vec![map([
                        ("Name", s("InstanceId")),
                        ("Value", r("Instance")),
                    ])]),
                    statistic: "Maximum",
                    periods: 2,
                    operator: "GreaterThanThreshold",
                    threshold: 0,
                    missing: "missing",
                    actions: when(
                        "HasAlarmTopic",
                        Y::List(vec![recover.clone(), r("AlarmTopicArn")]),
                        Y::List(vec![recover]),
                    ),
                }),
            )]
        };
        alarms.extend(self.metric_alarms(&topic));
        alarms
    }

    /// With `metrics.cloudwatch`: no health data for three minutes, a
    /// failed check, and conntrack above 90% of its maximum, from the
    /// metrics the health check publishes (namespace natbake, dimension Site).
    fn metric_alarms(&self, topic: &dyn Fn() -> Y) -> Vec<(String, Y)> {
        if self.site.metrics.is_none() {
            return Vec::new();
        }
        let site = || {
            Y::List(vec![map([
                ("Name", s("Site")),
                ("Value", s(&self.site.name)),
            ])])
        };
        let natbake = crate::metrics::NAMESPACE;
        vec![
            (
                "NoHealthDataAlarm".into(),
                alarm(Alarm {
                    description: "The NAT's health check has published nothing for three minutes",
                    namespace: natbake,
                    metric: "Healthy",
                    dimensions: site(),
                    statistic: "SampleCount",
                    periods: 3,
                    operator: "LessThanThreshold",
                    threshold: 1,
                    missing: "breaching",
                    actions: topic(),
                }),
            ),
            (
                "UnhealthyAlarm".into(),
                alarm(Alarm {
                    description: "The NAT's health check failed: drift it could not repair, or a lost floating interface",
                    namespace: natbake,
                    metric: "Healthy",
                    dimensions: site(),
                    statistic: "Minimum",
                    periods: 1,
                    operator: "LessThanThreshold",
                    threshold: 1,
                    missing: "notBreaching",
                    actions: topic(),
                }),
            ),
            (
                "ConntrackFullAlarm".into(),
                alarm(Alarm {
                    description: "The NAT's connection tracking table is above 90% of its maximum",
                    namespace: natbake,
                    metric: "ConntrackFillPercent",
                    dimensions: site(),
                    statistic: "Maximum",
                    periods: 2,
                    operator: "GreaterThanThreshold",
                    threshold: 90,
                    missing: "notBreaching",
                    actions: topic(),
                }),
            ),
        ]
    }

    fn outputs(&self) -> Vec<(String, Y)> {
        let out =
            |value: Y, description: &str| map([("Description", s(description)), ("Value", value)]);
        let mut o = vec![
            (
                "ElasticIp".to_string(),
                out(
                    r("ElasticIp"),
                    "The NAT's public address, which clients allow",
                ),
            ),
            (
                "SecurityGroupId".to_string(),
                out(att("SecurityGroup", "GroupId"), "The NAT's security group"),
            ),
        ];
        if self.site.failover.is_some() {
            o.push((
                "InterfaceId".into(),
                out(
                    r("Interface"),
                    "The floating interface that holds the elastic IP",
                ),
            ));
            o.push((
                "AutoScalingGroupName".into(),
                out(r("Group"), "The Auto Scaling group of one"),
            ));
        } else {
            o.push(("InstanceId".into(), out(r("Instance"), "The NAT instance")));
        }
        o
    }
}

/// One CloudWatch alarm, evaluated every minute.
struct Alarm {
    description: &'static str,
    namespace: &'static str,
    metric: &'static str,
    dimensions: Y,
    statistic: &'static str,
    periods: i64,
    operator: &'static str,
    threshold: i64,
    missing: &'static str,
    actions: Y,
}

fn alarm(a: Alarm) -> Y {
    resource(
        "AWS::CloudWatch::Alarm",
        map([
            ("AlarmDescription", s(a.description)),
            ("Namespace", s(a.namespace)),
            ("MetricName", s(a.metric)),
            ("Dimensions", a.dimensions),
            ("Statistic", s(a.statistic)),
            ("Period", Y::Num(60)),
            ("EvaluationPeriods", Y::Num(a.periods)),
            ("ComparisonOperator", s(a.operator)),
            ("Threshold", Y::Num(a.threshold)),
            ("TreatMissingData", s(a.missing)),
            ("AlarmActions", a.actions),
        ]),
    )
}

/// Keys are natbake's own names (letters, digits, `:`), plain in YAML.
fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '_')
    {
        k.to_string()
    } else {
        escape::yaml(k)
    }
}

fn scalar(y: &Y) -> Option<String> {
    match y {
        Y::Str(t) => Some(escape::yaml(t)),
        Y::Num(n) => Some(n.to_string()),
        Y::Bool(b) => Some(b.to_string()),
        Y::Map(m) if m.is_empty() => Some("{}".into()),
        Y::List(l) if l.is_empty() => Some("[]".into()),
        _ => None,
    }
}

/// Block-style YAML; `indent` is the column of a mapping's keys. The first
/// line of a mapping inside a list item follows its `- ` directly.
pub(super) fn emit(y: &Y, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match y {
        Y::Map(entries) => {
            for (n, (k, v)) in entries.iter().enumerate() {
                if n > 0 || !out.ends_with("- ") {
                    out.push_str(&pad);
                }
                out.push_str(&key(k));
                out.push(':');
                match scalar(v) {
                    Some(text) => {
                        out.push(' ');
                        out.push_str(&text);
                        out.push('\n');
                    }
                    None => {
                        out.push('\n');
                        emit(v, indent + 2, out);
                    }
                }
            }
        }
        Y::List(items) => {
            for (n, item) in items.iter().enumerate() {
                if n > 0 || !out.ends_with("- ") {
                    out.push_str(&pad);
                }
                out.push_str("- ");
                match scalar(item) {
                    Some(text) => {
                        out.push_str(&text);
                        out.push('\n');
                    }
                    None => emit(item, indent + 2, out),
                }
            }
        }
        scalar_node => {
            out.push_str(&pad);
            out.push_str(&scalar(scalar_node).unwrap_or_default());
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_lists_and_maps_are_block_yaml() {
        let y = map([
            (
                "A",
                Y::List(vec![map([("K", s("v")), ("L", Y::List(vec![s("x")]))])]),
            ),
            ("B", Y::Num(1)),
        ]);
        let mut out = String::new();
        emit(&y, 0, &mut out);
        assert_eq!(out, "A:\n  - K: \"v\"\n    L:\n      - \"x\"\nB: 1\n");
    }
}
