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

/// How many target route tables the template takes (each gets a route
/// per destination, so fewer than [`ROUTE_TABLES`]: targets usually sit
/// in a subnet or two, and more routes make the template larger).
pub const TARGET_ROUTE_TABLES: usize = 2;

/// Routes a route table holds by default (EC2's quota, which can be
/// raised to 1,000): the most destinations the target route tables get.
/// More would also take the stack past CloudFormation's 500 resources.
pub const ROUTES_PER_TABLE: usize = 50;

/// The destinations every target route table of the stack gets: the
/// return routes of the forwards that restrict their sources (a public
/// forward's target needs `0.0.0.0/0`, which a table whose default route
/// is a NAT gateway's cannot take: its subnet is a private route
/// table's). None when there are more than a route table holds by
/// default.
pub fn target_route_destinations(site: &Site) -> Vec<crate::cidr::Cidr> {
    let d = super::json::return_routes(site, site.forwards.iter().filter(|f| !f.public));
    if d.len() > ROUTES_PER_TABLE {
        Vec::new()
    } else {
        d
    }
}

/// What the user is told when the forwards have more return routes than
/// the stack takes.
pub fn target_routes_note(site: &Site) -> Option<String> {
    let n = super::json::return_routes(site, site.forwards.iter().filter(|f| !f.public)).len();
    (n > ROUTES_PER_TABLE).then(|| {
        format!(
            "{} has no target route tables: the forwards' sources need {n} routes in each target subnet's \
             route table, more than the {ROUTES_PER_TABLE} a route table holds by default; send those subnets' \
             0.0.0.0/0 through the NAT (PrivateRouteTable) or add the routes of manifest.json's `targets` \
             yourself (after raising the quota)",
            super::artifact::STACK
        )
    })
}

/// The largest template `aws cloudformation deploy` may upload directly;
/// larger ones go through S3 (`--s3-bucket`), up to [`S3_LIMIT`].
pub const DIRECT_UPLOAD_LIMIT: usize = 51_200;

/// The largest template CloudFormation takes at all, from an S3 object:
/// "1 MB" in its quotas, read as 1,000,000 bytes (cfn-lint's reading, and
/// the smaller one). A larger stack is not written.
pub const S3_LIMIT: usize = 1_000_000;

/// The tag that names the site on the interface, instance and group; the
/// instance role's conditions read it.
pub(super) const SITE_TAG: &str = "natbake:site";

/// The group's tag naming the image it launches.
const IMAGE_TAG: &str = "natbake:image-id";

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
    if text.len() > S3_LIMIT {
        i.notes.push(unusable_note(text.len(), site));
        return Ok(None);
    }
    if text.len() > DIRECT_UPLOAD_LIMIT {
        i.notes.push(too_large_note(text.len()));
    }
    i.notes.extend(target_routes_note(site));
    if site.failover.is_none() && !crate::values::recoverable(&site.ami.instance_type) {
        i.notes.push(format!(
            "{}: EC2's recover action is not documented for {} (metal, instance store, or a family natbake does not \
             know to recover), and EC2 refuses such an alarm: the stack's RecoverAlarm only notifies. EC2's own \
             automatic recovery still acts where the type has it (`aws ec2 describe-instance-types --filters \
             Name=auto-recovery-supported,Values=true`)",
            super::artifact::STACK,
            site.ami.instance_type
        ));
    }
    Ok(Some(i.output(text.into_bytes())))
}

/// What the user is told when no CloudFormation upload can take the stack:
/// nothing is written, and the note names what made it large.
pub fn unusable_note(bytes: usize, site: &Site) -> String {
    format!(
        "{} is not written: it would be {bytes} bytes, more than the {S3_LIMIT} bytes (1 MB) CloudFormation takes \
         even from S3, mostly the security group's {} inbound rules (one per source CIDR of each forward); use \
         fewer, wider sources, or apply security-group.json and the other files by hand",
        super::artifact::STACK,
        super::json::nat_inbound_rules(site),
    )
}

/// What the user is told when the template passes the direct upload limit.
pub fn too_large_note(bytes: usize) -> String {
    format!(
        "{} is {bytes} bytes, more than the {DIRECT_UPLOAD_LIMIT} bytes CloudFormation takes directly: deploy it \
         with `aws cloudformation deploy --s3-bucket BUCKET ...` (templates from S3 up to {S3_LIMIT} bytes)",
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
            (
                "Parameters".to_string(),
                Y::Map(
                    self.constrain_instance_type(
                        [
                            self.parameters(),
                            self.address_parameters(),
                            self.target_route_parameters(),
                        ]
                        .concat(),
                    ),
                ),
            ),
            (
                "Conditions".to_string(),
                Y::Map(
                    [
                        self.conditions(),
                        self.address_conditions(),
                        self.target_route_conditions(),
                    ]
                    .concat(),
                ),
            ),
        ];
        let mut resources = vec![("SecurityGroup".to_string(), self.security_group(ingress))];
        resources.extend(self.address_and_routes());
        resources.extend(self.target_routes());
        if self.has_role() {
            resources.extend(self.role());
        }
        resources.push(("LaunchTemplate".into(), self.launch_template()));
        resources.extend(self.instance_or_group());
        resources.extend(self.standby_resources());
        resources.extend(self.alarms());
        top.push(("Resources".into(), Y::Map(resources)));
        top.push(("Outputs".into(), Y::Map(self.outputs())));
        Y::Map(top)
    }

    /// The site's name, and its description when CloudFormation and its
    /// linter take it as it is: at most 1024 bytes in all, and no `${`,
    /// which cfn-lint reads as a substitution outside `Fn::Sub` (E1029)
    /// when it names a parameter, resource or pseudo parameter. A template
    /// description cannot be an `Fn::Sub`, so such text is left out
    /// rather than changed.
    fn description(&self) -> String {
        let mut d = format!("natbake NAT instance of site {}", self.site.name);
        if let Some(text) = &self.site.description
            && d.len() + 2 + text.len() <= 1024
            && !text.contains("${")
        {
            d = format!("{d}: {text}");
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
        // The image: the SSM parameter the image build publishes to (or,
        // where the stack can launch it, the official image's public one),
        // resolved again at every stack update, which is how a new image
        // rolls out; or a fixed id that overrides it.
        let published = self.site.image_parameter();
        let (default, what) = match self.official {
            Some(name) => (
                name.to_string(),
                format!(
                    "The SSM parameter naming the image to launch: the official image's (the default; launched with the rendered user data), or {published}, where the image build publishes each baked image"
                ),
            ),
            None => (
                published.clone(),
                format!(
                    "The SSM parameter naming the baked image to launch, {published} unless you say otherwise; the image build publishes each new image there ({})",
                    self.required_image_why()
                ),
            ),
        };
        p.push((
            "ImageParameter".into(),
            map([
                ("Type", s("AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>")),
                ("Default", s(&default)),
                ("Description", s(&what)),
            ]),
        ));
        if let Some(name) = self.official {
            p.push((
                "OfficialImageId".into(),
                map([
                    ("Type", s("AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>")),
                    ("Default", s(name)),
                    (
                        "Description",
                        s("The official image's public SSM parameter: the user data goes with the image only when it is this one"),
                    ),
                ]),
            ));
        }
        p.push((
            "ImageId".into(),
            map([
                ("Type", s("String")),
                ("Default", s("")),
                ("AllowedPattern", s("^(ami-[0-9a-f]+)?$")),
                (
                    "Description",
                    s("A baked natbake AMI id that overrides ImageParameter (to pin or roll back); empty for none"),
                ),
            ]),
        ));
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
            "a baked image is required: the user data is too large for EC2, so the official image cannot be configured at launch".into()
        } else {
            format!(
                "a baked image is required: {} has no official image parameter",
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
        c.push(("HasImageId".into(), not(is_empty("ImageId"))));
        if self.official.is_some() {
            // The user data installs natbake on the official image only: a
            // baked image has it, and would run it twice.
            c.push((
                "UseOfficialImage".into(),
                map([(
                    "Fn::And",
                    Y::List(vec![
                        not(map([("Condition", s("HasImageId"))])),
                        map([(
                            "Fn::Equals",
                            Y::List(vec![r("ImageParameter"), r("OfficialImageId")]),
                        )]),
                    ]),
                )]),
            ));
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
                    map([
                        ("Domain", s("vpc")),
                        ("NetworkBorderGroup", Self::border_group()),
                        ("Tags", site_tags(self.site)),
                    ]),
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
                        ("NetworkBorderGroup", Self::border_group()),
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

    /// Whether the one instance's alarm recovers it: without failover,
    /// for a type EC2's recover action is documented for.
    fn recovers(&self) -> bool {
        self.site.failover.is_none() && crate::values::recoverable(&self.site.ami.instance_type)
    }

    /// With the recover action, the `InstanceType` parameter takes only
    /// types it is documented for: a type EC2 refuses fails at the
    /// parameter, with this reason, not halfway through the stack.
    fn constrain_instance_type(&self, mut parameters: Vec<(String, Y)>) -> Vec<(String, Y)> {
        if !self.recovers() {
            return parameters;
        }
        let families = crate::values::RECOVERABLE_FAMILIES.join("|");
        for (name, p) in &mut parameters {
            if let (true, Y::Map(entries)) = (name == "InstanceType", p) {
                entries.push((
                    "AllowedPattern".into(),
                    s(&format!(
                        "^({families}|u-[a-z0-9-]+)\\.(?!metal)[a-z0-9-]+$"
                    )),
                ));
                entries.push((
                    "ConstraintDescription".into(),
                    s("must be a type EC2's recover action takes (not metal, no instance store but the documented few): the stack's alarm recovers the instance; for other types render the spec with that ami.instance_type"),
                ));
            }
        }
        parameters
    }

    /// The elastic IP's network border group, for a public subnet in a
    /// Local Zone or Wavelength Zone: there an address of the region's
    /// own border group cannot be associated. CloudFormation cannot read
    /// a subnet's border group, so it is a parameter, empty in the
    /// region's own availability zones.
    fn address_parameters(&self) -> Vec<(String, Y)> {
        vec![(
            "NetworkBorderGroup".into(),
            map([
                ("Type", s("String")),
                ("Default", s("")),
                ("AllowedPattern", s("^([a-z]{2,4}(-[a-z0-9]+)+)?$")),
                (
                    "Description",
                    s(
                        "The network border group of the public subnet's zone when it is a Local Zone (us-west-2-lax-1) or Wavelength Zone (us-east-1-wl1-bos-wlz-1); empty in the region's availability zones",
                    ),
                ),
            ]),
        )]
    }

    fn address_conditions(&self) -> Vec<(String, Y)> {
        let empty = map([("Fn::Equals", Y::List(vec![r("NetworkBorderGroup"), s("")]))]);
        vec![(
            "HasNetworkBorderGroup".into(),
            map([("Fn::Not", Y::List(vec![empty]))]),
        )]
    }

    fn border_group() -> Y {
        when("HasNetworkBorderGroup", r("NetworkBorderGroup"), no_value())
    }

    /// Where the routes through the NAT go: the floating interface, or
    /// the one instance.
    fn route_target(&self) -> (&'static str, Y) {
        if self.site.failover.is_some() {
            ("NetworkInterfaceId", r("Interface"))
        } else {
            ("InstanceId", r("Instance"))
        }
    }

    fn target_route_destinations(&self) -> Vec<crate::cidr::Cidr> {
        target_route_destinations(self.site)
    }

    fn target_route_parameters(&self) -> Vec<(String, Y)> {
        if self.target_route_destinations().is_empty() {
            return Vec::new();
        }
        (1..=TARGET_ROUTE_TABLES)
            .map(|n| {
                (
                    format!("TargetRouteTable{n}"),
                    map([
                        ("Type", s("String")),
                        ("Default", s("")),
                        ("AllowedPattern", s("^(rtb-[0-9a-f]+)?$")),
                        (
                            "Description",
                            s("A route table of forward targets whose 0.0.0.0/0 goes elsewhere (a NAT gateway): it gets a route to each forward's sources through the NAT; empty for none"),
                        ),
                    ]),
                )
            })
            .collect()
    }

    fn target_route_conditions(&self) -> Vec<(String, Y)> {
        if self.target_route_destinations().is_empty() {
            return Vec::new();
        }
        (1..=TARGET_ROUTE_TABLES)
            .map(|n| {
                let empty = map([(
                    "Fn::Equals",
                    Y::List(vec![r(&format!("TargetRouteTable{n}")), s("")]),
                )]);
                (
                    format!("HasTargetRouteTable{n}"),
                    map([("Fn::Not", Y::List(vec![empty]))]),
                )
            })
            .collect()
    }

    /// In each target route table given, a route to each destination of
    /// [`Self::target_route_destinations`] through the NAT.
    fn target_routes(&self) -> Vec<(String, Y)> {
        let (target_key, target) = self.route_target();
        let destinations = self.target_route_destinations();
        let mut out = Vec::new();
        for n in 1..=TARGET_ROUTE_TABLES {
            for (k, d) in destinations.iter().enumerate() {
                out.push((
                    format!("TargetRoute{n}To{}", k + 1),
                    map([
                        ("Type", s("AWS::EC2::Route")),
                        ("Condition", s(&format!("HasTargetRouteTable{n}"))),
                        (
                            "Properties",
                            map([
                                ("RouteTableId", r(&format!("TargetRouteTable{n}"))),
                                ("DestinationCidrBlock", s(&d.to_string())),
                                (target_key, target.clone()),
                            ]),
                        ),
                    ]),
                ));
            }
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

    /// The fixed image id when one is given, else the image parameter's.
    fn image(&self) -> Y {
        when("HasImageId", r("ImageId"), r("ImageParameter"))
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

    /// How a stack update that changes the launch template (a new image,
    /// user data or instance type) reaches the running instance. Without
    /// a policy it never does: the group keeps its instance. The floating
    /// interface is attached to one instance at a time, so the old
    /// instance must go before the new one can take it: a rolling update
    /// of one instance at a time with none kept in service (the group's
    /// `MaxSize` of 1 leaves no room to launch first anyway) terminates,
    /// then launches. A replacing update (a whole new group, the old one
    /// kept until the new is up) would start the new instance while the
    /// old still holds the interface, so it is off. Scaling processes that
    /// could act on the group meanwhile are suspended for the update.
    fn update_policy() -> Y {
        map([
            (
                "AutoScalingReplacingUpdate",
                map([("WillReplace", Y::Bool(false))]),
            ),
            (
                "AutoScalingRollingUpdate",
                map([
                    ("MaxBatchSize", Y::Num(1)),
                    ("MinInstancesInService", Y::Num(0)),
                    (
                        "SuspendProcesses",
                        Y::List(
                            [
                                "HealthCheck",
                                "ReplaceUnhealthy",
                                "AZRebalance",
                                "AlarmNotification",
                                "ScheduledActions",
                            ]
                            .into_iter()
                            .map(s)
                            .collect(),
                        ),
                    ),
                ]),
            ),
        ])
    }

    // ---- The warm standby pair (`failover.standby`) ----------------
    // Everything a standby site changes in the stack is here: the group's
    // size and policies, the rules between the pair, the lifecycle hook.

    /// Instances in the group: a pair with a standby, else one.
    fn group_size(&self) -> &'static str {
        if crate::standby::of(self.site).is_some() {
            "2"
        } else {
            "1"
        }
    }

    /// Without a standby, see [`Self::update_policy`]. With one, a rolling
    /// update replaces one instance at a time and keeps the other in
    /// service: a standby that goes is replaced with no effect on
    /// traffic, and an active that goes hands the interface over first
    /// (the lifecycle hook gives it the time).
    fn group_update_policy(&self) -> Y {
        if crate::standby::of(self.site).is_none() {
            return Self::update_policy();
        }
        map([
            (
                "AutoScalingReplacingUpdate",
                map([("WillReplace", Y::Bool(false))]),
            ),
            (
                "AutoScalingRollingUpdate",
                map([
                    ("MaxBatchSize", Y::Num(1)),
                    ("MinInstancesInService", Y::Num(1)),
                    (
                        "SuspendProcesses",
                        Y::List(
                            [
                                "HealthCheck",
                                "ReplaceUnhealthy",
                                "AZRebalance",
                                "AlarmNotification",
                                "ScheduledActions",
                            ]
                            .into_iter()
                            .map(s)
                            .collect(),
                        ),
                    ),
                ]),
            ),
        ])
    }

    /// Replacements for health or an instance refresh: one at a time, the
    /// other in service, with a standby; else terminate first.
    fn maintenance_policy(&self) -> Y {
        let min = if crate::standby::of(self.site).is_some() {
            50
        } else {
            0
        };
        map([
            ("MinHealthyPercentage", Y::Num(min)),
            ("MaxHealthyPercentage", Y::Num(100)),
        ])
    }

    /// With a standby: VRRP (IP protocol 112) and conntrackd's sync port
    /// between the pair, by the group referencing itself; and the
    /// termination lifecycle hook that gives an active instance time to
    /// hand the interface over (`natbake-standby handover`).
    fn standby_resources(&self) -> Vec<(String, Y)> {
        if crate::standby::of(self.site).is_none() {
            return Vec::new();
        }
        let pair_rule = |protocol: &str, port: Option<u16>, what: &str| {
            let mut props = vec![
                ("GroupId".to_string(), att("SecurityGroup", "GroupId")),
                ("IpProtocol".into(), s(protocol)),
            ];
            // Ports mean nothing to a protocol other than TCP, UDP and
            // ICMP (cfn-lint warns that they are ignored).
            if let Some(p) = port {
                props.push(("FromPort".into(), Y::Num(i64::from(p))));
                props.push(("ToPort".into(), Y::Num(i64::from(p))));
            }
            props.push((
                "SourceSecurityGroupId".into(),
                att("SecurityGroup", "GroupId"),
            ));
            props.push(("Description".into(), s(what)));
            resource("AWS::EC2::SecurityGroupIngress", Y::Map(props))
        };
        vec![
            (
                "PairVrrpIngress".into(),
                pair_rule(
                    &crate::standby::VRRP_PROTOCOL.to_string(),
                    None,
                    "natbake standby pair: VRRP (keepalived)",
                ),
            ),
            (
                "PairSyncIngress".into(),
                pair_rule(
                    "udp",
                    Some(crate::standby::SYNC_PORT),
                    "natbake standby pair: connection state sync (conntrackd)",
                ),
            ),
            (
                "HandoverHook".into(),
                resource(
                    "AWS::AutoScaling::LifecycleHook",
                    map([
                        ("AutoScalingGroupName", r("Group")),
                        ("LifecycleHookName", s(crate::standby::LIFECYCLE_HOOK)),
                        (
                            "LifecycleTransition",
                            s("autoscaling:EC2_INSTANCE_TERMINATING"),
                        ),
                        (
                            "HeartbeatTimeout",
                            Y::Num(i64::from(crate::standby::HANDOVER_HEARTBEAT)),
                        ),
                        ("DefaultResult", s("CONTINUE")),
                    ]),
                ),
            ),
        ]
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
                ("UpdatePolicy", self.group_update_policy()),
                (
                    "Properties",
                    map([
                        ("MinSize", s(self.group_size())),
                        ("MaxSize", s(self.group_size())),
                        ("DesiredCapacity", s(self.group_size())),
                        ("VPCZoneIdentifier", Y::List(vec![r("PublicSubnetId")])),
                        ("LaunchTemplate", Self::launch_template_ref()),
                        ("HealthCheckType", s("EC2")),
                        // Replacements for health or an instance refresh
                        // terminate first, as the update policy does.
                        ("InstanceMaintenancePolicy", self.maintenance_policy()),
                        (
                            "MetricsCollection",
                            Y::List(vec![map([("Granularity", s("1Minute"))])]),
                        ),
                        (
                            "Tags",
                            Y::List(vec![
                                map([
                                    ("Key", s(SITE_TAG)),
                                    ("Value", s(&self.site.name)),
                                    ("PropagateAtLaunch", Y::Bool(true)),
                                ]),
                                // The image the group last rolled out.
                                map([
                                    ("Key", s(IMAGE_TAG)),
                                    ("Value", self.image()),
                                    ("PropagateAtLaunch", Y::Bool(false)),
                                ]),
                            ]),
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
            // EC2 refuses a recover action on a type it cannot recover,
            // and the stack would fail there: such a type's alarm only
            // notifies (EC2's own automatic recovery still acts where the
            // type has it).
            let (description, actions) = if self.recovers() {
                (
                    "EC2 recovers the NAT instance in place (same id, address and routes) when its host fails",
                    when(
                        "HasAlarmTopic",
                        Y::List(vec![recover.clone(), r("AlarmTopicArn")]),
                        Y::List(vec![recover]),
                    ),
                )
            } else {
                (
                    "The NAT instance's host failed (its type is not one EC2's recover action documents: no recover action)",
                    topic(),
                )
            };
            vec![(
                "RecoverAlarm".into(),
                alarm(Alarm {
                    description,
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
                    actions,
                }),
            )]
        };
        alarms.extend(self.metric_alarms(&topic));
        alarms
    }

    /// With `metrics.cloudwatch`: no health data for longer than a
    /// publish gap or a start-up takes ([`no_health_data_minutes`]), a
    /// failed check, and conntrack above 90% of its maximum, from the
    /// metrics the health check publishes (namespace natbake, dimension
    /// Site). They are made after the instance or group, so that their
    /// first minutes are the instance's first minutes.
    fn metric_alarms(&self, topic: &dyn Fn() -> Y) -> Vec<(String, Y)> {
        if self.site.metrics.is_none() {
            return Vec::new();
        }
        let silence = no_health_data_minutes(self.site);
        let no_data_why = format!(
            "The NAT's health check has published nothing for {silence} minutes (a publish is due every {} s; \
             a new or replaced instance publishes within {} s)",
            crate::metrics::publish_spacing(health_interval(self.site)),
            start_up_seconds(self.site),
        );
        let after = if self.site.failover.is_some() {
            "Group"
        } else {
            "Instance"
        };
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
                depends_on(
                    alarm(Alarm {
                        description: &no_data_why,
                        namespace: natbake,
                        metric: "Healthy",
                        dimensions: site(),
                        statistic: "SampleCount",
                        periods: silence,
                        operator: "LessThanThreshold",
                        threshold: 1,
                        missing: "breaching",
                        actions: topic(),
                    }),
                    after,
                ),
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

/// Seconds a new instance may take to its health check's first publish,
/// beyond `health.interval` (the first check comes that long after boot)
/// and, with failover, the wait for the floating interface: the Auto
/// Scaling group terminating a failed instance and launching another (or
/// EC2 recovering one in place), boot of the baked image (metrics need
/// it: their scripts do not fit user data), natbake.service.
pub const START_UP_ALLOWANCE: u64 = 300;

fn health_interval(site: &Site) -> u32 {
    site.health_interval
        .unwrap_or(crate::values::HEALTH_INTERVAL_DEFAULT)
}

/// The longest a healthy start-up keeps the health check silent: launch
/// and boot, the first check one interval after boot, and with failover
/// the wait for the previous instance to release the interface.
pub fn start_up_seconds(site: &Site) -> u64 {
    START_UP_ALLOWANCE
        + u64::from(health_interval(site))
        + site.failover.map_or(0, |f| u64::from(f.attach_timeout))
}

/// How many one-minute periods without a `Healthy` sample make
/// `NoHealthDataAlarm` fire: more than the longest gap between two
/// publishes ([`crate::metrics::publish_spacing`]: up to 300 s at the
/// longest interval) and than a start-up or replacement takes
/// ([`start_up_seconds`]), plus a minute for the periods' edges and
/// CloudWatch's delivery. Missing data counts as breaching, so a stack
/// whose instance never publishes (no permission, no route to
/// CloudWatch) pages that many minutes after it is made.
pub fn no_health_data_minutes(site: &Site) -> i64 {
    let gap = crate::metrics::publish_spacing(health_interval(site)).max(start_up_seconds(site));
    i64::try_from(gap.div_ceil(60) + 1).unwrap_or(i64::MAX)
}

/// `resource` made only after `other`.
fn depends_on(resource: Y, other: &str) -> Y {
    match resource {
        Y::Map(mut entries) => {
            entries.insert(1, ("DependsOn".into(), s(other)));
            Y::Map(entries)
        }
        y => y,
    }
}

/// One CloudWatch alarm, evaluated every minute.
struct Alarm<'a> {
    description: &'a str,
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

fn alarm(a: Alarm<'_>) -> Y {
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

    fn site(extra: &str) -> Site {
        let yaml = format!("version: 1\nsite: t\nvpc_cidrs: [10.0.0.0/16]\n{extra}");
        crate::validate::parse(std::path::Path::new("t.yaml"), yaml.as_bytes()).unwrap()
    }

    /// The no-data alarm waits longer than the longest gap between two
    /// publishes and than a start-up, so that neither pages; it is made
    /// after the instance, treats silence as breaching, and stays within
    /// CloudWatch's one-day evaluation range.
    #[test]
    fn the_no_health_data_alarm_follows_the_interval_and_start_up() {
        for (extra, minutes) in [
            ("health: {interval: 5}\n", 7),
            ("", 7),
            ("health: {interval: 45}\n", 7),
            ("health: {interval: 181}\n", 10),
            ("health: {interval: 300}\n", 11),
            ("failover: {floating_eni: true}\n", 10),
            (
                "failover: {floating_eni: true, attach_timeout: 900}\nhealth: {interval: 300}\n",
                26,
            ),
        ] {
            let s = site(&format!("{extra}metrics: {{cloudwatch: true}}\n"));
            let interval = u64::from(health_interval(&s));
            let n = no_health_data_minutes(&s);
            assert_eq!(n, minutes, "{extra}");
            let quiet = (n as u64 - 1) * 60;
            assert!(
                quiet >= crate::metrics::publish_spacing(health_interval(&s)),
                "{extra}"
            );
            assert!(quiet >= START_UP_ALLOWANCE + interval, "{extra}");
            if let Some(f) = s.failover {
                assert!(quiet >= START_UP_ALLOWANCE + interval + u64::from(f.attach_timeout));
            }
            assert!(n as u64 * 60 <= 86_400);

            let stack = Stack::new(&s, None);
            let alarms = stack.metric_alarms(&|| no_value());
            let Y::Map(entries) = &alarms[0].1 else {
                panic!()
            };
            let get = |k: &str| {
                entries
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
            };
            assert_eq!(alarms[0].0, "NoHealthDataAlarm");
            let after = if s.failover.is_some() {
                "Group"
            } else {
                "Instance"
            };
            assert!(
                matches!(get("DependsOn"), Some(Y::Str(d)) if d == after),
                "{extra}"
            );
            let Some(Y::Map(props)) = get("Properties") else {
                panic!()
            };
            let prop = |k: &str| {
                props
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
            };
            assert!(matches!(prop("Period"), Some(Y::Num(60))));
            assert!(matches!(prop("EvaluationPeriods"), Some(Y::Num(p)) if p == minutes));
            assert!(matches!(prop("TreatMissingData"), Some(Y::Str(m)) if m == "breaching"));
            assert!(matches!(prop("Statistic"), Some(Y::Str(m)) if m == "SampleCount"));
        }
    }

    /// Up to a route table's default quota, each target route table
    /// gets a route per destination; past it, none, and a note says why.
    #[test]
    fn target_route_tables_take_the_forwards_sources_up_to_the_quota() {
        for (sources, routes) in [
            (ROUTES_PER_TABLE, ROUTES_PER_TABLE),
            (ROUTES_PER_TABLE + 1, 0),
        ] {
            let from: Vec<String> = (0..sources).map(|i| format!("198.51.{i}.0/24")).collect();
            let s = site(&format!(
                "forwards:\n  - {{name: a, port: 1001, to: 10.0.1.5:22, from: [{}]}}\n  - {{name: p, port: 1002, to: 10.0.1.6:80, from: [0.0.0.0/0], public: true}}\n",
                from.join(", ")
            ));
            let stack = Stack::new(&s, None);
            assert_eq!(stack.target_routes().len(), routes * TARGET_ROUTE_TABLES);
            assert_eq!(stack.target_route_parameters().is_empty(), routes == 0);
            assert_eq!(stack.target_route_conditions().is_empty(), routes == 0);
            assert_eq!(target_routes_note(&s).is_some(), routes == 0);
            let no_default = stack.target_routes().iter().all(|(_, y)| {
                let mut text = String::new();
                emit(y, 0, &mut text);
                !text.contains("0.0.0.0/0")
            });
            assert!(
                no_default,
                "a public forward's 0.0.0.0/0 is not a target route"
            );
        }
    }

    /// Both shapes' elastic IP take the border group of a Local Zone or
    /// Wavelength Zone when one is given, and nothing otherwise.
    #[test]
    fn the_elastic_ip_takes_a_network_border_group() {
        for extra in ["", "failover: {floating_eni: true}\n"] {
            let s = site(extra);
            let stack = Stack::new(&s, None);
            let mut text = String::new();
            emit(&Y::Map(stack.address_and_routes()), 0, &mut text);
            let eip = &text[text.find("ElasticIp:").unwrap()..];
            let eip = &eip[..eip
                .find("\n  ElasticIp")
                .or(eip.find("\nPrivateRoute"))
                .unwrap_or(eip.len())];
            assert!(
                eip.contains("NetworkBorderGroup:\n      Fn::If:\n        - \"HasNetworkBorderGroup\"\n        - Ref: \"NetworkBorderGroup\"\n        - Ref: \"AWS::NoValue\""),
                "{extra}: {eip}"
            );
            assert_eq!(stack.address_parameters()[0].0, "NetworkBorderGroup");
            assert_eq!(stack.address_conditions()[0].0, "HasNetworkBorderGroup");
        }
    }

    /// Without failover the alarm recovers a type EC2 documents recovery
    /// for, and the InstanceType parameter keeps to such types; another
    /// type's alarm only notifies, with no constraint.
    #[test]
    fn the_recover_action_is_only_for_types_ec2_recovers() {
        let pattern_of = |stack: &Stack<'_>| {
            let params = stack.constrain_instance_type(stack.parameters());
            let mut text = String::new();
            emit(&Y::Map(params), 0, &mut text);
            let p = &text[text.find("InstanceType:").unwrap()..];
            p[..p.find("\nKeyName").unwrap_or(p.len())].to_string()
        };
        for (extra, recovers) in [
            ("", true),
            ("ami: {instance_type: c5d.large}\n", false),
            ("ami: {instance_type: m5.metal}\n", false),
            (
                "ami: {instance_type: c5d.large}\nfailover: {floating_eni: true}\n",
                false,
            ),
        ] {
            let s = site(extra);
            let stack = Stack::new(&s, None);
            let mut text = String::new();
            emit(&Y::Map(stack.alarms()), 0, &mut text);
            assert_eq!(text.contains(":ec2:recover"), recovers, "{extra}");
            assert_eq!(
                pattern_of(&stack).contains("AllowedPattern"),
                recovers,
                "{extra}"
            );
        }
        let s = site("");
        let p = pattern_of(&Stack::new(&s, None));
        let pattern = p
            .split("AllowedPattern: \"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .replace("\\\\", "\\");
        assert!(pattern.starts_with("^(a1|m3|"), "{pattern}");
        assert!(pattern.ends_with(")\\.(?!metal)[a-z0-9-]+$"), "{pattern}");
    }

    #[test]
    fn the_description_is_kept_unless_cfn_lint_would_read_a_substitution() {
        let described = |text: &str| {
            let s = site(&format!("description: {}\n", escape::yaml(text)));
            Stack::new(&s, None).description()
        };
        assert_eq!(
            described("Oracle ‘DDL’ “x” $HOME {y} $ {z}"),
            "natbake NAT instance of site t: Oracle ‘DDL’ “x” $HOME {y} $ {z}"
        );
        for text in [
            "${AWS::Region}",
            "a ${VpcId} b",
            "${Instance.PrivateIp}",
            "${x",
        ] {
            assert_eq!(described(text), "natbake NAT instance of site t", "{text}");
        }
    }

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
