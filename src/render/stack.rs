//! `stack.cfn.yaml`: one CloudFormation template that deploys the site.
//!
//! The template is a [`cfn::Template`] built from typed inputs (the site,
//! the NAT's inbound rules as [`json`] makes them for
//! `security-group.json`, the role's statements from [`failover`], the
//! user data's bytes) and written by [`cfn`]'s one YAML writer, in which
//! every string is a double-quoted scalar, so spec text stays text.
//! Nothing from the spec goes through `Fn::Sub`: only the ARNs of
//! [`failover::statements`] and the recover action, which are natbake's
//! own text, are substituted.
//!
//! Two shapes. With `failover`, an Auto Scaling group of one replaces a
//! failed instance and the replacement takes over the floating interface,
//! which holds the elastic IP and is the private routes' target. Without
//! it, a replacement would come up with another interface, losing both,
//! so there is one instance and a CloudWatch alarm that recovers it in
//! place (same instance id, interface, address and routes).

use super::artifact::{Input, Output, USER_DATA};
use super::cfn::{
    self, Entries, Node, Parameter, Resource, RouteTarget, Template, Text, att, entries, given,
    map, no_value, not, r, s, site_tags, sub, when,
};
use super::json;
use crate::cidr::Cidr;
use crate::failover::{self, Arn};
use crate::site::Site;
use anyhow::Result;

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
pub fn target_route_destinations(site: &Site) -> Vec<Cidr> {
    let d = json::return_routes(site, site.forwards.iter().filter(|f| !f.public));
    if d.len() > ROUTES_PER_TABLE {
        Vec::new()
    } else {
        d
    }
}

/// What the user is told when the forwards have more return routes than
/// the stack takes.
pub fn target_routes_note(site: &Site) -> Option<String> {
    let n = json::return_routes(site, site.forwards.iter().filter(|f| !f.public)).len();
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

/// Renders the stack; a note (and the manifest) says when it is too large
/// to upload directly.
pub fn render(i: &mut Input<'_>) -> Result<Option<Output>> {
    let site = i.site;
    // The user data as rendered above (plain, or `.gz` when it had to be
    // compressed whole): the launch template carries its bytes.
    let user_data = i
        .done
        .iter()
        .find(|a| a.name.starts_with(USER_DATA))
        .map(|a| a.bytes.as_slice());
    let text = Stack::new(site, user_data).template().to_yaml();
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
        json::nat_inbound_rules(site),
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

/// A named entry of the template.
type Named<T> = Vec<(Text, T)>;

struct Stack<'a> {
    site: &'a Site,
    /// Base64 of the rendered user data, when the site has one.
    user_data: Option<String>,
    /// The official image's SSM parameter, when the stack can launch it
    /// (the os has one and the user data carries natbake).
    official: Option<&'static str>,
    /// [`target_route_destinations`], worked out once.
    target_destinations: Vec<Cidr>,
}

impl<'a> Stack<'a> {
    fn new(site: &'a Site, user_data: Option<&[u8]>) -> Stack<'a> {
        let official = user_data.and_then(|_| site.os.official_image_parameter(site.arch));
        Stack {
            site,
            user_data: user_data.map(super::escape::base64),
            official,
            target_destinations: target_route_destinations(site),
        }
    }

    fn template(&self) -> Template {
        let mut resources = vec![("SecurityGroup".into(), self.security_group())];
        resources.extend(self.address_and_routes());
        resources.extend(self.target_routes());
        if self.has_role() {
            resources.extend(self.role());
        }
        resources.push(("LaunchTemplate".into(), self.launch_template()));
        resources.extend(self.instance_or_group());
        resources.extend(self.standby_resources());
        resources.extend(self.alarms());
        Template {
            description: self.description(),
            parameters: self.constrain_instance_type(
                [
                    self.parameters(),
                    self.address_parameters(),
                    self.target_route_parameters(),
                ]
                .concat(),
            ),
            conditions: [
                self.conditions(),
                self.address_conditions(),
                self.target_route_conditions(),
            ]
            .concat(),
            resources,
            outputs: self.outputs(),
        }
    }

    /// The site's name, and its description when CloudFormation and its
    /// linter take it ([`Template::describe`]).
    fn description(&self) -> String {
        Template::describe(
            format!("natbake NAT instance of site {}", self.site.name),
            self.site.description.as_deref(),
        )
    }

    fn parameters(&self) -> Named<Parameter> {
        let mut p: Named<Parameter> = vec![
            (
                "VpcId".into(),
                Parameter::new("AWS::EC2::VPC::Id").describe("The VPC of the NAT instance"),
            ),
            (
                "PublicSubnetId".into(),
                Parameter::new("AWS::EC2::Subnet::Id")
                    .describe("The public subnet (one availability zone) the NAT instance runs in"),
            ),
        ];
        for n in 1..=ROUTE_TABLES {
            p.push((
                format!("PrivateRouteTable{n}").into(),
                Parameter::optional_id(
                    "rtb",
                    "A private route table whose 0.0.0.0/0 route goes through the NAT; empty for none",
                ),
            ));
        }
        // The image: the SSM parameter the image build publishes to (or,
        // where the stack can launch it, the official image's public one),
        // resolved again at every stack update, which is how a new image
        // rolls out; or a fixed id that overrides it.
        let published = self.site.image_parameter();
        let (default, what) = match self.official {
            Some(name) => (
                Text::from(name),
                format!(
                    "The SSM parameter naming the image to launch: the official image's (the default; launched with the rendered user data), or {published}, where the image build publishes each baked image"
                ),
            ),
            None => (
                Text::from(published.clone()),
                format!(
                    "The SSM parameter naming the baked image to launch, {published} unless you say otherwise; the image build publishes each new image there ({})",
                    self.required_image_why()
                ),
            ),
        };
        const IMAGE_ID_PARAMETER: &str = "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>";
        p.push((
            "ImageParameter".into(),
            Parameter::new(IMAGE_ID_PARAMETER)
                .default(default)
                .describe(what),
        ));
        if let Some(name) = self.official {
            p.push((
                "OfficialImageId".into(),
                Parameter::new(IMAGE_ID_PARAMETER).default(name).describe(
                    "The official image's public SSM parameter: the user data goes with the image only when it is this one",
                ),
            ));
        }
        p.push((
            "ImageId".into(),
            Parameter::optional_id(
                "ami",
                "A baked natbake AMI id that overrides ImageParameter (to pin or roll back); empty for none",
            ),
        ));
        p.push((
            "InstanceType".into(),
            Parameter::new("String").default(self.site.ami.instance_type.clone()),
        ));
        p.push((
            "KeyName".into(),
            Parameter::new("String")
                .default("")
                .describe("An EC2 key pair for SSH; empty for none"),
        ));
        p.push((
            "AlarmTopicArn".into(),
            Parameter::new("String")
                .default("")
                .describe("An SNS topic the alarms notify; empty for none"),
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

    fn conditions(&self) -> Entries {
        let mut c: Entries = Vec::new();
        for n in 1..=ROUTE_TABLES {
            c.push((
                format!("HasPrivateRouteTable{n}").into(),
                given(format!("PrivateRouteTable{n}")),
            ));
        }
        c.push(("HasImageId".into(), given("ImageId")));
        if self.official.is_some() {
            // The user data installs natbake on the official image only: a
            // baked image has it, and would run it twice.
            c.push((
                "UseOfficialImage".into(),
                cfn::all(vec![
                    not(Node::Condition("HasImageId".into())),
                    cfn::equals(r("ImageParameter"), r("OfficialImageId")),
                ]),
            ));
        }
        c.push(("HasKeyName".into(), given("KeyName")));
        c.push(("HasAlarmTopic".into(), given("AlarmTopicArn")));
        c
    }

    /// Inbound exactly as `security-group.json` (the same function makes
    /// both), one CloudFormation rule per source; outbound the default.
    fn security_group(&self) -> Resource {
        let rules: Vec<Node> = json::nat_ingress(self.site)
            .each()
            .map(|(proto, ports, (cidr, description))| {
                let mut rule: Entries = Vec::with_capacity(5);
                match (proto, ports) {
                    (Some(proto), Some(ports)) => {
                        rule.push(("IpProtocol".into(), s(proto.name())));
                        rule.push(("FromPort".into(), Node::Int(ports.first.into())));
                        rule.push(("ToPort".into(), Node::Int(ports.last.into())));
                    }
                    _ => rule.push(("IpProtocol".into(), s("-1"))),
                }
                rule.push(("CidrIp".into(), s(cidr.to_string())));
                rule.push(("Description".into(), s(description.clone())));
                Node::Map(rule)
            })
            .collect();
        let mut props: Entries = vec![
            (
                "GroupDescription".into(),
                s(format!("natbake {} NAT instance", self.site.name)),
            ),
            ("VpcId".into(), r("VpcId")),
        ];
        if !rules.is_empty() {
            props.push(("SecurityGroupIngress".into(), Node::List(rules)));
        }
        props.push(("Tags".into(), site_tags(&self.site.name)));
        Resource::new("AWS::EC2::SecurityGroup", props)
    }

    /// The elastic IP and the private routes, on the floating interface
    /// (failover) or on the one instance.
    fn address_and_routes(&self) -> Named<Resource> {
        let mut out: Named<Resource> = Vec::new();
        if self.site.failover.is_some() {
            out.push((
                "Interface".into(),
                Resource::new(
                    "AWS::EC2::NetworkInterface",
                    entries([
                        (
                            "Description",
                            s(format!("natbake {} floating interface", self.site.name)),
                        ),
                        ("SubnetId", r("PublicSubnetId")),
                        (
                            "GroupSet",
                            Node::List(vec![att("SecurityGroup", "GroupId")]),
                        ),
                        ("SourceDestCheck", Node::Bool(false)),
                        ("Tags", site_tags(&self.site.name)),
                    ]),
                ),
            ));
            // An address resource names an instance only: the interface
            // takes it through an association.
            out.push((
                "ElasticIp".into(),
                Resource::new(
                    "AWS::EC2::EIP",
                    entries([
                        ("Domain", s("vpc")),
                        ("NetworkBorderGroup", Self::border_group()),
                        ("Tags", site_tags(&self.site.name)),
                    ]),
                ),
            ));
            out.push((
                "ElasticIpAssociation".into(),
                Resource::new(
                    "AWS::EC2::EIPAssociation",
                    entries([
                        ("AllocationId", att("ElasticIp", "AllocationId")),
                        ("NetworkInterfaceId", r("Interface")),
                    ]),
                ),
            ));
        } else {
            out.push((
                "ElasticIp".into(),
                Resource::new(
                    "AWS::EC2::EIP",
                    entries([
                        ("Domain", s("vpc")),
                        ("NetworkBorderGroup", Self::border_group()),
                        ("InstanceId", r("Instance")),
                        ("Tags", site_tags(&self.site.name)),
                    ]),
                ),
            ));
        }
        for n in 1..=ROUTE_TABLES {
            out.push((
                format!("PrivateRoute{n}").into(),
                cfn::route(
                    format!("PrivateRouteTable{n}").into(),
                    format!("HasPrivateRouteTable{n}").into(),
                    "0.0.0.0/0".into(),
                    self.route_target(),
                ),
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
    fn constrain_instance_type(&self, mut parameters: Named<Parameter>) -> Named<Parameter> {
        if !self.recovers() {
            return parameters;
        }
        let families = crate::values::RECOVERABLE_FAMILIES.join("|");
        for (name, p) in &mut parameters {
            if name == "InstanceType" {
                p.allowed_pattern =
                    Some(format!("^({families}|u-[a-z0-9-]+)\\.(?!metal)[a-z0-9-]+$").into());
                p.constraint_description = Some(
                    "must be a type EC2's recover action takes (not metal, no instance store but the documented few): the stack's alarm recovers the instance; for other types render the spec with that ami.instance_type".into(),
                );
            }
        }
        parameters
    }

    /// The elastic IP's network border group, for a public subnet in a
    /// Local Zone or Wavelength Zone: there an address of the region's
    /// own border group cannot be associated. CloudFormation cannot read
    /// a subnet's border group, so it is a parameter, empty in the
    /// region's own availability zones.
    fn address_parameters(&self) -> Named<Parameter> {
        vec![(
            "NetworkBorderGroup".into(),
            Parameter::new("String")
                .default("")
                .pattern("^([a-z]{2,4}(-[a-z0-9]+)+)?$")
                .describe(
                    "The network border group of the public subnet's zone when it is a Local Zone (us-west-2-lax-1) or Wavelength Zone (us-east-1-wl1-bos-wlz-1); empty in the region's availability zones",
                ),
        )]
    }

    fn address_conditions(&self) -> Entries {
        vec![("HasNetworkBorderGroup".into(), given("NetworkBorderGroup"))]
    }

    fn border_group() -> Node {
        when("HasNetworkBorderGroup", r("NetworkBorderGroup"), no_value())
    }

    /// Where the routes through the NAT go: the floating interface, or
    /// the one instance.
    fn route_target(&self) -> RouteTarget<'static> {
        if self.site.failover.is_some() {
            RouteTarget::Interface
        } else {
            RouteTarget::Instance
        }
    }

    fn target_route_parameters(&self) -> Named<Parameter> {
        if self.target_destinations.is_empty() {
            return Vec::new();
        }
        (1..=TARGET_ROUTE_TABLES)
            .map(|n| {
                (
                    format!("TargetRouteTable{n}").into(),
                    Parameter::optional_id(
                        "rtb",
                        "A route table of forward targets whose 0.0.0.0/0 goes elsewhere (a NAT gateway): it gets a route to each forward's sources through the NAT; empty for none",
                    ),
                )
            })
            .collect()
    }

    fn target_route_conditions(&self) -> Entries {
        if self.target_destinations.is_empty() {
            return Vec::new();
        }
        (1..=TARGET_ROUTE_TABLES)
            .map(|n| {
                (
                    format!("HasTargetRouteTable{n}").into(),
                    given(format!("TargetRouteTable{n}")),
                )
            })
            .collect()
    }

    /// In each target route table given, a route to each destination of
    /// [`target_route_destinations`] through the NAT.
    fn target_routes(&self) -> Named<Resource> {
        let mut out: Named<Resource> = Vec::new();
        for n in 1..=TARGET_ROUTE_TABLES {
            for (k, d) in self.target_destinations.iter().enumerate() {
                out.push((
                    format!("TargetRoute{n}To{}", k + 1).into(),
                    cfn::route(
                        format!("TargetRouteTable{n}").into(),
                        format!("HasTargetRouteTable{n}").into(),
                        d.to_string().into(),
                        self.route_target(),
                    ),
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

    /// The instance role's policy document: exactly the permissions the
    /// scripts use, from [`failover::statements`], each ARN an
    /// `Fn::Sub`. Keys in the order of the manifest's copy (serde_json's,
    /// sorted).
    fn policy(&self) -> Node {
        let statements = failover::statements(self.site)
            .into_iter()
            .map(|st| {
                let mut e: Entries = vec![(
                    "Action".into(),
                    Node::List(st.actions.into_iter().map(s).collect()),
                )];
                if let Some((key, value)) = st.condition {
                    e.push((
                        "Condition".into(),
                        map([("StringEquals", Node::Map(vec![(key.into(), s(value))]))]),
                    ));
                }
                e.push(("Effect".into(), s("Allow")));
                let arn = |a: &Arn| match a {
                    Arn::Any => s("*"),
                    Arn::Of { .. } => sub(a.for_sub()),
                };
                let resource = match st.resources.as_slice() {
                    [one] => arn(one),
                    all => Node::List(all.iter().map(arn).collect()),
                };
                e.push(("Resource".into(), resource));
                e.push(("Sid".into(), s(st.sid)));
                Node::Map(e)
            })
            .collect();
        map([
            ("Statement", Node::List(statements)),
            ("Version", s("2012-10-17")),
        ])
    }

    fn role(&self) -> Named<Resource> {
        let assume = map([
            (
                "Statement",
                Node::List(vec![map([
                    ("Action", s("sts:AssumeRole")),
                    ("Effect", s("Allow")),
                    ("Principal", map([("Service", s("ec2.amazonaws.com"))])),
                ])]),
            ),
            ("Version", s("2012-10-17")),
        ]);
        vec![
            (
                "InstanceRole".into(),
                Resource::new(
                    "AWS::IAM::Role",
                    entries([
                        ("AssumeRolePolicyDocument", assume),
                        (
                            "Policies",
                            Node::List(vec![map([
                                ("PolicyName", s("natbake-instance")),
                                ("PolicyDocument", self.policy()),
                            ])]),
                        ),
                        ("Tags", site_tags(&self.site.name)),
                    ]),
                ),
            ),
            (
                "InstanceProfile".into(),
                Resource::new(
                    "AWS::IAM::InstanceProfile",
                    entries([("Roles", Node::List(vec![r("InstanceRole")]))]),
                ),
            ),
        ]
    }

    /// The fixed image id when one is given, else the image parameter's.
    fn image() -> Node {
        when("HasImageId", r("ImageId"), r("ImageParameter"))
    }

    fn launch_template(&self) -> Resource {
        let mut data = entries([
            ("ImageId", Self::image()),
            ("InstanceType", r("InstanceType")),
            ("KeyName", when("HasKeyName", r("KeyName"), no_value())),
        ]);
        if self.site.failover.is_some() {
            // Before it holds the floating interface, the instance reaches
            // the EC2 API (and, on the official image, its package
            // mirrors) through its own interface: that one needs a public
            // address of its own, whatever the subnet's default.
            data.push((
                "NetworkInterfaces".into(),
                Node::List(vec![map([
                    ("DeviceIndex", Node::Int(0)),
                    ("AssociatePublicIpAddress", Node::Bool(true)),
                    ("DeleteOnTermination", Node::Bool(true)),
                    ("Groups", Node::List(vec![att("SecurityGroup", "GroupId")])),
                ])]),
            ));
        } else {
            data.push((
                "SecurityGroupIds".into(),
                Node::List(vec![att("SecurityGroup", "GroupId")]),
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
                ("HttpPutResponseHopLimit", Node::Int(1)),
            ]),
        ));
        data.push((
            "TagSpecifications".into(),
            Node::List(vec![map([
                ("ResourceType", s("instance")),
                ("Tags", site_tags(&self.site.name)),
            ])]),
        ));
        if let (Some(_), Some(user_data)) = (self.official, &self.user_data) {
            data.push((
                "UserData".into(),
                when("UseOfficialImage", s(user_data.clone()), no_value()),
            ));
        }
        Resource::new(
            "AWS::EC2::LaunchTemplate",
            entries([("LaunchTemplateData", Node::Map(data))]),
        )
    }

    fn launch_template_ref() -> Node {
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
    /// `in_service` is the instances kept in service: 0 for one instance,
    /// 1 for a standby pair (see [`Self::group_update_policy`]).
    fn update_policy(in_service: i64) -> Node {
        map([
            (
                "AutoScalingReplacingUpdate",
                map([("WillReplace", Node::Bool(false))]),
            ),
            (
                "AutoScalingRollingUpdate",
                map([
                    ("MaxBatchSize", Node::Int(1)),
                    ("MinInstancesInService", Node::Int(in_service)),
                    (
                        "SuspendProcesses",
                        Node::List(
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
    fn group_update_policy(&self) -> Node {
        let in_service = if crate::standby::of(self.site).is_some() {
            1
        } else {
            0
        };
        Self::update_policy(in_service)
    }

    /// Replacements for health or an instance refresh: one at a time, the
    /// other in service, with a standby; else terminate first.
    fn maintenance_policy(&self) -> Node {
        let min = if crate::standby::of(self.site).is_some() {
            50
        } else {
            0
        };
        map([
            ("MinHealthyPercentage", Node::Int(min)),
            ("MaxHealthyPercentage", Node::Int(100)),
        ])
    }

    /// With a standby: VRRP (IP protocol 112) and conntrackd's sync port
    /// between the pair, by the group referencing itself; and the
    /// termination lifecycle hook that gives an active instance time to
    /// hand the interface over (`natbake-standby handover`).
    fn standby_resources(&self) -> Named<Resource> {
        if crate::standby::of(self.site).is_none() {
            return Vec::new();
        }
        let pair_rule = |protocol: String, port: Option<u16>, what: &'static str| {
            let mut props = entries([
                ("GroupId", att("SecurityGroup", "GroupId")),
                ("IpProtocol", s(protocol)),
            ]);
            // Ports mean nothing to a protocol other than TCP, UDP and
            // ICMP (cfn-lint warns that they are ignored).
            if let Some(p) = port {
                props.push(("FromPort".into(), Node::Int(i64::from(p))));
                props.push(("ToPort".into(), Node::Int(i64::from(p))));
            }
            props.push((
                "SourceSecurityGroupId".into(),
                att("SecurityGroup", "GroupId"),
            ));
            props.push(("Description".into(), s(what)));
            Resource::new("AWS::EC2::SecurityGroupIngress", props)
        };
        vec![
            (
                "PairVrrpIngress".into(),
                pair_rule(
                    crate::standby::VRRP_PROTOCOL.to_string(),
                    None,
                    "natbake standby pair: VRRP (keepalived)",
                ),
            ),
            (
                "PairSyncIngress".into(),
                pair_rule(
                    "udp".to_string(),
                    Some(crate::standby::SYNC_PORT),
                    "natbake standby pair: connection state sync (conntrackd)",
                ),
            ),
            (
                "HandoverHook".into(),
                Resource::new(
                    "AWS::AutoScaling::LifecycleHook",
                    entries([
                        ("AutoScalingGroupName", r("Group")),
                        ("LifecycleHookName", s(crate::standby::LIFECYCLE_HOOK)),
                        (
                            "LifecycleTransition",
                            s("autoscaling:EC2_INSTANCE_TERMINATING"),
                        ),
                        (
                            "HeartbeatTimeout",
                            Node::Int(i64::from(crate::standby::HANDOVER_HEARTBEAT)),
                        ),
                        ("DefaultResult", s("CONTINUE")),
                    ]),
                ),
            ),
        ]
    }

    fn instance_or_group(&self) -> Named<Resource> {
        if self.site.failover.is_some() {
            let mut group = Resource::new(
                "AWS::AutoScaling::AutoScalingGroup",
                entries([
                    ("MinSize", s(self.group_size())),
                    ("MaxSize", s(self.group_size())),
                    ("DesiredCapacity", s(self.group_size())),
                    ("VPCZoneIdentifier", Node::List(vec![r("PublicSubnetId")])),
                    ("LaunchTemplate", Self::launch_template_ref()),
                    ("HealthCheckType", s("EC2")),
                    // Replacements for health or an instance refresh, as
                    // the update policy does them.
                    ("InstanceMaintenancePolicy", self.maintenance_policy()),
                    (
                        "MetricsCollection",
                        Node::List(vec![map([("Granularity", s("1Minute"))])]),
                    ),
                    (
                        "Tags",
                        Node::List(vec![
                            map([
                                ("Key", s(SITE_TAG)),
                                ("Value", s(self.site.name.clone())),
                                ("PropagateAtLaunch", Node::Bool(true)),
                            ]),
                            // The image the group last rolled out.
                            map([
                                ("Key", s(IMAGE_TAG)),
                                ("Value", Self::image()),
                                ("PropagateAtLaunch", Node::Bool(false)),
                            ]),
                        ]),
                    ),
                ]),
            )
            // The first instance finds the interface, and the elastic IP
            // on it, at its first boot.
            .after("Interface")
            .after("ElasticIpAssociation");
            group.update_policy = Some(self.group_update_policy());
            vec![("Group".into(), group)]
        } else {
            vec![(
                "Instance".into(),
                Resource::new(
                    "AWS::EC2::Instance",
                    entries([
                        ("LaunchTemplate", Self::launch_template_ref()),
                        // The launch template's image again: CloudFormation
                        // takes the same value either way, and moto's
                        // launches an instance only from its own ImageId.
                        ("ImageId", Self::image()),
                        ("SubnetId", r("PublicSubnetId")),
                        ("SourceDestCheck", Node::Bool(false)),
                    ]),
                ),
            )]
        }
    }

    /// The alarms on what AWS measures itself. Alarms on natbake's own
    /// health metrics join this list when the instance publishes them.
    fn alarms(&self) -> Named<Resource> {
        let topic = || {
            when(
                "HasAlarmTopic",
                Node::List(vec![r("AlarmTopicArn")]),
                no_value(),
            )
        };
        let mut alarms: Named<Resource> = if self.site.failover.is_some() {
            let group = || {
                Node::List(vec![map([
                    ("Name", s("AutoScalingGroupName")),
                    ("Value", r("Group")),
                ])])
            };
            vec![
                (
                    "NoInstanceAlarm".into(),
                    alarm(Alarm {
                        description: "The NAT's Auto Scaling group has no instance in service"
                            .into(),
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
                        description: "The NAT's Auto Scaling group is replacing its instance"
                            .into(),
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
                        Node::List(vec![recover.clone(), r("AlarmTopicArn")]),
                        Node::List(vec![recover]),
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
                    description: description.into(),
                    namespace: "AWS/EC2",
                    metric: "StatusCheckFailed_System",
                    dimensions: Node::List(vec![map([
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
    fn metric_alarms(&self, topic: &dyn Fn() -> Node) -> Named<Resource> {
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
            Node::List(vec![map([
                ("Name", s("Site")),
                ("Value", s(self.site.name.clone())),
            ])])
        };
        let natbake = crate::metrics::NAMESPACE;
        vec![
            (
                "NoHealthDataAlarm".into(),
                alarm(Alarm {
                    description: no_data_why.into(),
                    namespace: natbake,
                    metric: "Healthy",
                    dimensions: site(),
                    statistic: "SampleCount",
                    periods: silence,
                    operator: "LessThanThreshold",
                    threshold: 1,
                    missing: "breaching",
                    actions: topic(),
                })
                .after(after),
            ),
            (
                "UnhealthyAlarm".into(),
                alarm(Alarm {
                    description: "The NAT's health check failed: drift it could not repair, or a lost floating interface".into(),
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
                    description: "The NAT's connection tracking table is above 90% of its maximum".into(),
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

    fn outputs(&self) -> Named<cfn::Output> {
        let out = |value: Node, description: &'static str| cfn::Output { description, value };
        let mut o: Named<cfn::Output> = vec![
            (
                "ElasticIp".into(),
                out(
                    r("ElasticIp"),
                    "The NAT's public address, which clients allow",
                ),
            ),
            (
                "SecurityGroupId".into(),
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

/// One CloudWatch alarm, evaluated every minute.
struct Alarm {
    description: Text,
    namespace: &'static str,
    metric: &'static str,
    dimensions: Node,
    statistic: &'static str,
    periods: i64,
    operator: &'static str,
    threshold: i64,
    missing: &'static str,
    actions: Node,
}

fn alarm(a: Alarm) -> Resource {
    Resource::new(
        "AWS::CloudWatch::Alarm",
        entries([
            ("AlarmDescription", Node::Str(a.description)),
            ("Namespace", s(a.namespace)),
            ("MetricName", s(a.metric)),
            ("Dimensions", a.dimensions),
            ("Statistic", s(a.statistic)),
            ("Period", Node::Int(60)),
            ("EvaluationPeriods", Node::Int(a.periods)),
            ("ComparisonOperator", s(a.operator)),
            ("Threshold", Node::Int(a.threshold)),
            ("TreatMissingData", s(a.missing)),
            ("AlarmActions", a.actions),
        ]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(extra: &str) -> Site {
        let yaml = format!("version: 1\nsite: t\nvpc_cidrs: [10.0.0.0/16]\n{extra}");
        crate::validate::parse(std::path::Path::new("t.yaml"), yaml.as_bytes()).unwrap()
    }

    /// Resources written as a template of their own.
    fn yaml_of(resources: Named<Resource>) -> String {
        Template {
            resources,
            ..Template::default()
        }
        .to_yaml()
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
            let alarms = stack.metric_alarms(&no_value);
            let (name, a) = &alarms[0];
            assert_eq!(name, "NoHealthDataAlarm");
            let after = if s.failover.is_some() {
                "Group"
            } else {
                "Instance"
            };
            assert_eq!(a.depends_on, [after], "{extra}");
            assert_eq!(a.property("Period"), Some(&Node::Int(60)));
            assert_eq!(a.property("EvaluationPeriods"), Some(&Node::Int(minutes)));
            assert_eq!(a.property("TreatMissingData"), Some(&cfn::s("breaching")));
            assert_eq!(a.property("Statistic"), Some(&cfn::s("SampleCount")));
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
            let no_default = stack.target_routes().iter().all(|(_, route)| {
                route.property("DestinationCidrBlock") != Some(&cfn::s("0.0.0.0/0"))
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
            let template = stack.template();
            let eip = template.resource("ElasticIp").unwrap();
            assert_eq!(eip.kind, "AWS::EC2::EIP");
            assert_eq!(
                eip.property("NetworkBorderGroup"),
                Some(&when(
                    "HasNetworkBorderGroup",
                    r("NetworkBorderGroup"),
                    no_value()
                )),
                "{extra}"
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
            let (_, p) = params
                .into_iter()
                .find(|(k, _)| k == "InstanceType")
                .unwrap();
            p.allowed_pattern.map(String::from)
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
            let text = yaml_of(stack.alarms());
            assert_eq!(text.contains(":ec2:recover"), recovers, "{extra}");
            assert_eq!(pattern_of(&stack).is_some(), recovers, "{extra}");
        }
        let s = site("");
        let pattern = pattern_of(&Stack::new(&s, None)).unwrap();
        assert!(pattern.starts_with("^(a1|m3|"), "{pattern}");
        assert!(pattern.ends_with(")\\.(?!metal)[a-z0-9-]+$"), "{pattern}");
    }

    #[test]
    fn the_description_is_kept_unless_cfn_lint_would_read_a_substitution() {
        let described = |text: &str| {
            let s = site(&format!(
                "description: {}\n",
                super::super::escape::yaml(text)
            ));
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

    /// The role's policy is the manifest's, its ARNs `Fn::Sub`s and
    /// nothing else substituted.
    #[test]
    fn the_role_policy_is_the_manifests_with_its_arns_substituted() {
        let s = site("failover: {floating_eni: true}\nhealth: {}\nmetrics: {cloudwatch: true}\n");
        let stack = Stack::new(&s, None);
        let policy = stack.policy();
        let json = crate::failover::iam_policy(&s);
        let Some(Node::List(statements)) = policy.get("Statement") else {
            panic!("{policy:?}")
        };
        let in_json = json["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), in_json.len());
        let mut subs = 0;
        for (st, js) in statements.iter().zip(in_json) {
            let Node::Map(e) = st else { panic!() };
            let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_ref()).collect();
            let json_keys: Vec<&str> = js.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, json_keys);
            let arns: Vec<&Node> = match st.get("Resource").unwrap() {
                Node::List(l) => l.iter().collect(),
                one => vec![one],
            };
            let json_arns: Vec<&str> = match &js["Resource"] {
                serde_json::Value::Array(a) => a.iter().map(|v| v.as_str().unwrap()).collect(),
                one => vec![one.as_str().unwrap()],
            };
            for (a, j) in arns.iter().zip(&json_arns) {
                match a {
                    Node::Sub(t) => {
                        subs += 1;
                        assert_eq!(t, j);
                        assert!(t.starts_with("arn:${AWS::Partition}:"), "{t}");
                    }
                    Node::Str(t) => assert_eq!((t.as_ref(), *j), ("*", "*")),
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(subs, 3);
    }
}
