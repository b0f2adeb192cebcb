//! CloudFormation templates: one tree ([`Node`]), the template's typed
//! skeleton ([`Template`], [`Parameter`], [`Resource`], [`Output`]), and
//! one YAML writer, which both stacks (`stack.cfn.yaml`,
//! `nlb-stack.cfn.yaml`) go through.
//!
//! The writer emits block-style YAML. Every string is a double-quoted
//! scalar made by [`escape::yaml_into`], so spec text stays text whatever
//! it holds; keys are natbake's own names, plain unless they hold more
//! than letters, digits, `:` and `_`. Intrinsic functions are nodes of
//! their own: only an [`Node::Sub`] is ever substituted, and what goes
//! into one is natbake's own text (ARNs), never the spec's.

use super::escape;
use std::borrow::Cow;

/// Text of the tree: natbake's fixed words are borrowed, the rest owned.
pub type Text = Cow<'static, str>;

/// A mapping's entries, in the order written.
pub type Entries = Vec<(Text, Node)>;

/// A node of a template.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Str(Text),
    Int(i64),
    Bool(bool),
    Map(Entries),
    List(Vec<Node>),
    /// `Ref: name`.
    Ref(Text),
    /// `Fn::GetAtt: [resource, attribute]`.
    GetAtt(Text, Text),
    /// `Fn::Sub: text`: the only node whose `${…}` CloudFormation reads.
    Sub(Text),
    /// `Fn::If: [condition, then, else]`.
    If(Text, Box<(Node, Node)>),
    /// `Condition: name`, inside a condition function.
    Condition(Text),
    /// Another intrinsic function whose argument is a list
    /// (`Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Join`).
    Fn(&'static str, Vec<Node>),
}

/// A string node.
pub fn s(text: impl Into<Text>) -> Node {
    Node::Str(text.into())
}

/// Entries from fixed keys.
pub fn entries<const N: usize>(items: [(&'static str, Node); N]) -> Entries {
    items.into_iter().map(|(k, v)| (Text::from(k), v)).collect()
}

/// A mapping with fixed keys.
pub fn map<const N: usize>(items: [(&'static str, Node); N]) -> Node {
    Node::Map(entries(items))
}

pub fn r(name: impl Into<Text>) -> Node {
    Node::Ref(name.into())
}

pub fn att(resource: impl Into<Text>, attribute: &'static str) -> Node {
    Node::GetAtt(resource.into(), attribute.into())
}

pub fn sub(text: impl Into<Text>) -> Node {
    Node::Sub(text.into())
}

pub fn when(condition: impl Into<Text>, then: Node, otherwise: Node) -> Node {
    Node::If(condition.into(), Box::new((then, otherwise)))
}

/// `Ref: AWS::NoValue`: the property is left out.
pub fn no_value() -> Node {
    r("AWS::NoValue")
}

pub fn equals(a: Node, b: Node) -> Node {
    Node::Fn("Fn::Equals", vec![a, b])
}

pub fn not(condition: Node) -> Node {
    Node::Fn("Fn::Not", vec![condition])
}

/// The condition that every one of `conditions` holds.
pub fn all(conditions: Vec<Node>) -> Node {
    Node::Fn("Fn::And", conditions)
}

/// The condition that a parameter is not empty.
pub fn given(param: impl Into<Text>) -> Node {
    not(equals(r(param), s("")))
}

/// The tag that names the site, on everything that takes tags.
pub fn site_tags(site: &str) -> Node {
    Node::List(vec![map([
        ("Key", s(super::stack::SITE_TAG)),
        ("Value", s(site.to_owned())),
    ])])
}

impl Node {
    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The node as YAML, from column 0.
    pub fn to_yaml(&self) -> String {
        let mut w = Writer {
            out: String::with_capacity(4096),
        };
        w.block(self, 0, false);
        w.out
    }
}

/// A template parameter; `Type` first, then what is given, in
/// CloudFormation's documented order.
#[derive(Debug, Clone)]
pub struct Parameter {
    pub kind: &'static str,
    pub default: Option<Text>,
    pub allowed_pattern: Option<Text>,
    pub description: Option<Text>,
    pub constraint_description: Option<Text>,
}

impl Parameter {
    /// A parameter of `kind`.
    pub fn new(kind: &'static str) -> Parameter {
        Parameter {
            kind,
            default: None,
            allowed_pattern: None,
            description: None,
            constraint_description: None,
        }
    }

    /// An optional resource id (`rtb`, `subnet`, `ami`): a string that is
    /// empty or an id with that prefix.
    pub fn optional_id(prefix: &str, description: impl Into<Text>) -> Parameter {
        Parameter::new("String")
            .default("")
            .pattern(format!("^({prefix}-[0-9a-f]+)?$"))
            .describe(description)
    }

    pub fn describe(mut self, description: impl Into<Text>) -> Parameter {
        self.description = Some(description.into());
        self
    }

    pub fn default(mut self, value: impl Into<Text>) -> Parameter {
        self.default = Some(value.into());
        self
    }

    pub fn pattern(mut self, pattern: impl Into<Text>) -> Parameter {
        self.allowed_pattern = Some(pattern.into());
        self
    }

    fn into_node(self) -> Node {
        let mut e = vec![(Text::from("Type"), s(self.kind))];
        let fields = [
            ("Default", self.default),
            ("AllowedPattern", self.allowed_pattern),
            ("Description", self.description),
            ("ConstraintDescription", self.constraint_description),
        ];
        for (key, value) in fields {
            if let Some(v) = value {
                e.push((key.into(), Node::Str(v)));
            }
        }
        Node::Map(e)
    }
}

/// A resource: its type, attributes, and properties.
#[derive(Debug, Clone)]
pub struct Resource {
    pub kind: &'static str,
    /// Made only when this condition holds.
    pub condition: Option<Text>,
    /// Made after these (one is written as a string, more as a list).
    pub depends_on: Vec<Text>,
    pub update_policy: Option<Node>,
    pub properties: Entries,
}

impl Resource {
    pub fn new(kind: &'static str, properties: Entries) -> Resource {
        Resource {
            kind,
            condition: None,
            depends_on: Vec::new(),
            update_policy: None,
            properties,
        }
    }

    /// Made only when `condition` holds.
    pub fn when(mut self, condition: impl Into<Text>) -> Resource {
        self.condition = Some(condition.into());
        self
    }

    /// Made after `other`.
    pub fn after(mut self, other: impl Into<Text>) -> Resource {
        self.depends_on.push(other.into());
        self
    }

    /// The value of a property.
    pub fn property(&self, key: &str) -> Option<&Node> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn into_node(self) -> Node {
        let mut e = vec![(Text::from("Type"), s(self.kind))];
        if let Some(c) = self.condition {
            e.push(("Condition".into(), Node::Str(c)));
        }
        let mut after = self.depends_on;
        match after.len() {
            0 => {}
            1 => e.push(("DependsOn".into(), Node::Str(after.remove(0)))),
            _ => e.push((
                "DependsOn".into(),
                Node::List(after.into_iter().map(Node::Str).collect()),
            )),
        }
        if let Some(p) = self.update_policy {
            e.push(("UpdatePolicy".into(), p));
        }
        e.push(("Properties".into(), Node::Map(self.properties)));
        Node::Map(e)
    }
}

/// A template output.
#[derive(Debug, Clone)]
pub struct Output {
    pub description: &'static str,
    pub value: Node,
}

/// A whole template.
#[derive(Debug, Clone, Default)]
pub struct Template {
    pub description: String,
    pub parameters: Vec<(Text, Parameter)>,
    pub conditions: Entries,
    pub resources: Vec<(Text, Resource)>,
    pub outputs: Vec<(Text, Output)>,
}

impl Template {
    /// The template's description: `what`, then the site's own
    /// description when CloudFormation and its linter take it as it is:
    /// at most 1024 bytes in all, and no `${`, which cfn-lint reads as a
    /// substitution outside `Fn::Sub` (E1029) when it names a parameter,
    /// resource or pseudo parameter. A template description cannot be an
    /// `Fn::Sub`, so such text is left out rather than changed.
    pub fn describe(what: String, site_description: Option<&str>) -> String {
        match site_description {
            Some(text) if what.len() + 2 + text.len() <= 1024 && !text.contains("${") => {
                format!("{what}: {text}")
            }
            _ => what,
        }
    }

    /// The resource named `name`.
    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The template as one tree.
    pub fn into_node(self) -> Node {
        Node::Map(vec![
            ("AWSTemplateFormatVersion".into(), s("2010-09-09")),
            ("Description".into(), s(self.description)),
            (
                "Parameters".into(),
                Node::Map(
                    self.parameters
                        .into_iter()
                        .map(|(k, p)| (k, p.into_node()))
                        .collect(),
                ),
            ),
            ("Conditions".into(), Node::Map(self.conditions)),
            (
                "Resources".into(),
                Node::Map(
                    self.resources
                        .into_iter()
                        .map(|(k, r)| (k, r.into_node()))
                        .collect(),
                ),
            ),
            (
                "Outputs".into(),
                Node::Map(
                    self.outputs
                        .into_iter()
                        .map(|(k, o)| {
                            (
                                k,
                                map([("Description", s(o.description)), ("Value", o.value)]),
                            )
                        })
                        .collect(),
                ),
            ),
        ])
    }

    /// The template as YAML.
    pub fn to_yaml(self) -> String {
        self.into_node().to_yaml()
    }
}

/// Where a route sends its traffic.
#[derive(Debug, Clone, Copy)]
pub enum RouteTarget<'a> {
    /// The NAT instance (the stack without failover).
    Instance,
    /// The floating interface (failover).
    Interface,
    /// A NAT gateway resource, by name.
    NatGateway(&'a str),
}

/// A route in the table a parameter names, made when `condition` holds
/// (the parameter is not empty).
pub fn route(table: Text, condition: Text, destination: Text, to: RouteTarget<'_>) -> Resource {
    let (key, target) = match to {
        RouteTarget::Instance => ("InstanceId", r("Instance")),
        RouteTarget::Interface => ("NetworkInterfaceId", r("Interface")),
        RouteTarget::NatGateway(name) => ("NatGatewayId", r(name.to_owned())),
    };
    Resource::new(
        "AWS::EC2::Route",
        entries([
            ("RouteTableId", Node::Ref(table)),
            ("DestinationCidrBlock", Node::Str(destination)),
            (key, target),
        ]),
    )
    .when(condition)
}

/// Block-style YAML into one string.
struct Writer {
    out: String,
}

impl Writer {
    fn pad(&mut self, indent: usize) {
        self.out.extend(std::iter::repeat_n(' ', indent));
    }

    /// Writes `node` when it fits on its key's or item's line, and says
    /// whether it did (writing nothing when it does not).
    fn inline(&mut self, node: &Node) -> bool {
        match node {
            Node::Str(t) => escape::yaml_into(&mut self.out, t),
            Node::Int(n) => {
                use std::fmt::Write;
                let _ = write!(self.out, "{n}");
            }
            Node::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Node::Map(m) if m.is_empty() => self.out.push_str("{}"),
            Node::List(l) if l.is_empty() => self.out.push_str("[]"),
            _ => return false,
        }
        true
    }

    /// `key:`; `inline` says the line is begun (a list item's `- `).
    fn key(&mut self, key: &str, indent: usize, inline: bool) {
        if !inline {
            self.pad(indent);
        }
        let plain = !key.is_empty()
            && key
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b':' || c == b'_');
        if plain {
            self.out.push_str(key);
        } else {
            escape::yaml_into(&mut self.out, key);
        }
        self.out.push(':');
    }

    /// `key:` and its value: on the line, or in a block indented by two.
    fn entry(&mut self, key: &str, value: &Node, indent: usize, inline: bool) {
        self.key(key, indent, inline);
        let mark = self.out.len();
        self.out.push(' ');
        if !self.inline(value) {
            self.out.truncate(mark);
            self.out.push('\n');
            self.block(value, indent + 2, false);
            return;
        }
        self.out.push('\n');
    }

    /// `key: "text"`.
    fn str_entry(&mut self, key: &str, text: &str, indent: usize, inline: bool) {
        self.key(key, indent, inline);
        self.out.push(' ');
        escape::yaml_into(&mut self.out, text);
        self.out.push('\n');
    }

    /// `- ` and an item: on the line, or a block whose first line follows
    /// the `- `.
    fn item(&mut self, item: &Node, indent: usize, inline: bool) {
        if !inline {
            self.pad(indent);
        }
        self.out.push_str("- ");
        if self.inline(item) {
            self.out.push('\n');
        } else {
            self.block(item, indent + 2, true);
        }
    }

    /// `- "text"`.
    fn str_item(&mut self, text: &str, indent: usize) {
        self.pad(indent);
        self.out.push_str("- ");
        escape::yaml_into(&mut self.out, text);
        self.out.push('\n');
    }

    /// A node that does not fit on a line, its lines indented by
    /// `indent`. An intrinsic function is a mapping of one key.
    fn block(&mut self, node: &Node, indent: usize, inline: bool) {
        match node {
            Node::Map(entries) => {
                for (n, (k, v)) in entries.iter().enumerate() {
                    self.entry(k, v, indent, inline && n == 0);
                }
            }
            Node::List(items) => {
                for (n, item) in items.iter().enumerate() {
                    self.item(item, indent, inline && n == 0);
                }
            }
            Node::Ref(name) => self.str_entry("Ref", name, indent, inline),
            Node::Sub(text) => self.str_entry("Fn::Sub", text, indent, inline),
            Node::Condition(name) => self.str_entry("Condition", name, indent, inline),
            Node::GetAtt(resource, attribute) => {
                self.key("Fn::GetAtt", indent, inline);
                self.out.push('\n');
                self.str_item(resource, indent + 2);
                self.str_item(attribute, indent + 2);
            }
            Node::If(condition, branches) => {
                self.key("Fn::If", indent, inline);
                self.out.push('\n');
                self.str_item(condition, indent + 2);
                self.item(&branches.0, indent + 2, false);
                self.item(&branches.1, indent + 2, false);
            }
            Node::Fn(name, args) => {
                self.key(name, indent, inline);
                if args.is_empty() {
                    self.out.push_str(" []\n");
                    return;
                }
                self.out.push('\n');
                for a in args {
                    self.item(a, indent + 2, false);
                }
            }
            scalar => {
                if !inline {
                    self.pad(indent);
                }
                self.inline(scalar);
                self.out.push('\n');
            }
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
                Node::List(vec![map([("K", s("v")), ("L", Node::List(vec![s("x")]))])]),
            ),
            ("B", Node::Int(1)),
            (
                "C",
                Node::List(vec![Node::List(vec![s("y"), Node::Bool(false)])]),
            ),
            ("D", Node::Map(Vec::new())),
        ]);
        assert_eq!(
            y.to_yaml(),
            "A:\n  - K: \"v\"\n    L:\n      - \"x\"\nB: 1\nC:\n  - - \"y\"\n    - false\nD: {}\n"
        );
    }

    /// Each intrinsic function is a mapping of one key, as CloudFormation
    /// reads it, in a value and in a list item alike.
    #[test]
    fn intrinsics_are_mappings_of_one_key() {
        let y = map([
            ("Ref", r("VpcId")),
            ("Att", Node::List(vec![att("Group", "GroupId")])),
            ("If", when("HasKey", r("Key"), no_value())),
            (
                "Given",
                all(vec![Node::Condition("HasZone2".into()), given("Table")]),
            ),
            ("Sub", sub("arn:${AWS::Partition}:x")),
            (
                "Join",
                Node::Fn("Fn::Join", vec![s(","), Node::List(vec![r("A")])]),
            ),
        ]);
        assert_eq!(
            y.to_yaml(),
            "Ref:\n  Ref: \"VpcId\"\n\
             Att:\n  - Fn::GetAtt:\n      - \"Group\"\n      - \"GroupId\"\n\
             If:\n  Fn::If:\n    - \"HasKey\"\n    - Ref: \"Key\"\n    - Ref: \"AWS::NoValue\"\n\
             Given:\n  Fn::And:\n    - Condition: \"HasZone2\"\n    - Fn::Not:\n        - Fn::Equals:\n            - Ref: \"Table\"\n            - \"\"\n\
             Sub:\n  Fn::Sub: \"arn:${AWS::Partition}:x\"\n\
             Join:\n  Fn::Join:\n    - \",\"\n    - - Ref: \"A\"\n"
        );
    }

    /// A string is a double-quoted scalar whatever it holds: `${…}` stays
    /// text outside an `Fn::Sub`, and YAML's own syntax is escaped. A key
    /// that is not natbake's plain kind is quoted too.
    #[test]
    fn strings_and_odd_keys_are_quoted() {
        let hostile = "${AWS::Region} \"x\" \\ #: - [y] {{z}}\n\u{7}é";
        let y = Node::Map(vec![
            ("aws:ResourceTag/natbake:site".into(), s(hostile)),
            ("".into(), s("")),
            ("cloudwatch:namespace".into(), s("natbake")),
        ]);
        let text = y.to_yaml();
        assert_eq!(
            text,
            "\"aws:ResourceTag/natbake:site\": \"${AWS::Region} \\\"x\\\" \\\\ #: - [y] {{z}}\\n\\x07\\u00e9\"\n\
             \"\": \"\"\ncloudwatch:namespace: \"natbake\"\n"
        );
        let back: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back["aws:ResourceTag/natbake:site"], hostile);
    }

    /// A resource's attributes come in CloudFormation's usual order; one
    /// dependency is a string, more a list.
    #[test]
    fn resources_write_their_attributes_in_order() {
        let one = Resource::new("AWS::X::Y", entries([("A", Node::Int(1))]))
            .when("HasY")
            .after("Z");
        assert_eq!(
            Node::Map(vec![("Y".into(), one.into_node())]).to_yaml(),
            "Y:\n  Type: \"AWS::X::Y\"\n  Condition: \"HasY\"\n  DependsOn: \"Z\"\n  Properties:\n    A: 1\n"
        );
        let mut two = Resource::new("AWS::X::Y", Vec::new()).after("A").after("B");
        two.update_policy = Some(map([("P", Node::Bool(true))]));
        assert_eq!(
            two.into_node().to_yaml(),
            "Type: \"AWS::X::Y\"\nDependsOn:\n  - \"A\"\n  - \"B\"\nUpdatePolicy:\n  P: true\nProperties: {}\n"
        );
    }

    #[test]
    fn parameters_write_their_fields_in_order() {
        let mut p = Parameter::optional_id("rtb", "A table");
        p.constraint_description = Some("why".into());
        assert_eq!(
            p.into_node().to_yaml(),
            "Type: \"String\"\nDefault: \"\"\nAllowedPattern: \"^(rtb-[0-9a-f]+)?$\"\nDescription: \"A table\"\nConstraintDescription: \"why\"\n"
        );
    }

    /// The site's description joins the template's unless it is too long
    /// or cfn-lint would read a substitution in it.
    #[test]
    fn descriptions_keep_the_sites_text_when_cloudformation_takes_it() {
        let what = || "natbake site t".to_string();
        assert_eq!(Template::describe(what(), None), "natbake site t");
        assert_eq!(
            Template::describe(what(), Some("$HOME {x} $ {y}")),
            "natbake site t: $HOME {x} $ {y}"
        );
        for text in ["${AWS::Region}", "a ${VpcId}", "${x"] {
            assert_eq!(Template::describe(what(), Some(text)), "natbake site t");
        }
        let long = "x".repeat(1024 - "natbake site t: ".len());
        assert_eq!(Template::describe(what(), Some(&long)).len(), 1024);
        assert_eq!(
            Template::describe(what(), Some(&format!("{long}x"))),
            "natbake site t"
        );
    }
}
