//! `deployment: nlb`: the NLB stack of every fixture that can take that
//! shape passes cfn-lint without a warning; the instance's ruleset and
//! security group and the NLB's security group and listeners admit
//! exactly the spec's (source, protocol, port) set; and the stack,
//! replayed into moto through the EC2 and Elastic Load Balancing APIs
//! (`nlb_replay.py`), holds the listeners, target groups, targets, rules,
//! NAT gateways and routes the spec asks for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::failover::lab::moto_venv;
use crate::fixtures::{self, RenderedSite, Spec, natbake, nlb_specs, render, valid_specs};
use crate::support::{self, ScratchDir};

const NLB_STACK: &str = "nlb-stack.cfn.yaml";

/// What a shape admits from the Internet: (source, protocol, first port,
/// last port).
type Admitted = BTreeSet<(String, String, u16, u16)>;

/// Per chain, the jumps into it: protocol, port range, and the chain the
/// jump is in.
type Jumps = BTreeMap<String, Vec<(String, (u16, u16), String)>>;

/// The spec's forwards as the fixture's YAML says them, read here
/// without natbake: each source, protocol and listen port range.
fn spec_set(spec: &Value) -> Admitted {
    let mut set = Admitted::new();
    for f in spec["forwards"].as_array().into_iter().flatten() {
        let proto = f["proto"].as_str().unwrap_or("tcp").to_string();
        let (first, last) = match &f["port"] {
            Value::Number(n) => {
                let p = n.as_u64().unwrap() as u16;
                (p, p)
            }
            Value::String(s) => {
                let (a, b) = s.split_once('-').unwrap_or((s, s));
                (a.parse().unwrap(), b.parse().unwrap())
            }
            other => panic!("port {other}"),
        };
        for c in f["from"].as_array().unwrap() {
            set.insert((c.as_str().unwrap().to_string(), proto.clone(), first, last));
        }
    }
    set
}

fn yaml_value(path: &Path) -> Value {
    let text = std::fs::read_to_string(fixtures::repo().join(path)).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ports(text: &str) -> (u16, u16) {
    let (a, b) = text.split_once(':').unwrap_or((text, text));
    (a.parse().unwrap(), b.parse().unwrap())
}

/// What rules.v4 DNATs: every `-j DNAT` rule of the nat table, each
/// reachable from NATBAKE-DNAT through jumps whose port ranges hold its
/// port (a rule in a sub-chain that no jump reaches admits nothing).
fn ruleset_set(rules: &str) -> Admitted {
    let mut in_nat = false;
    let mut jumps = Jumps::new();
    let mut dnat = Vec::new();
    for line in rules.lines() {
        if line.starts_with('*') {
            in_nat = line == "*nat";
            continue;
        }
        let Some(rest) = line.strip_prefix("-A ").filter(|_| in_nat) else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let after = |flag: &str| {
            words
                .iter()
                .position(|w| *w == flag)
                .map(|i| words[i + 1].to_string())
        };
        let chain = words[0].to_string();
        let target = after("-j");
        match target.as_deref() {
            Some("DNAT") => dnat.push((
                chain,
                after("-s").unwrap_or_else(|| "0.0.0.0/0".into()),
                after("-p").expect("a DNAT rule names its protocol"),
                ports(&after("--dport").expect("a DNAT rule names its port")),
            )),
            Some(t) if t.starts_with("NATBAKE-") && t != "NATBAKE-DNAT" => {
                if let (Some(p), Some(d)) = (after("-p"), after("--dport")) {
                    jumps
                        .entry(t.to_string())
                        .or_default()
                        .push((p, ports(&d), chain));
                }
            }
            _ => {}
        }
    }
    fn reachable(jumps: &Jumps, chain: &str, proto: &str, p: (u16, u16), depth: usize) -> bool {
        if chain == "NATBAKE-DNAT" {
            return true;
        }
        depth < 16
            && jumps
                .get(chain)
                .into_iter()
                .flatten()
                .any(|(jp, r, parent)| {
                    jp == proto
                        && r.0 <= p.0
                        && p.1 <= r.1
                        && reachable(jumps, parent, proto, p, depth + 1)
                })
    }
    dnat.into_iter()
        .filter(|(chain, _, proto, p)| reachable(&jumps, chain, proto, *p, 0))
        .map(|(_, s, proto, (a, b))| (s, proto, a, b))
        .collect()
}

/// The instance's group: its tcp and udp rules, and the sources of its
/// all-traffic rules (egress from the VPC) apart.
fn security_group_set(perms: &Value) -> (Admitted, BTreeSet<String>) {
    let mut set = Admitted::new();
    let mut all = BTreeSet::new();
    for p in perms.as_array().unwrap() {
        for r in p["IpRanges"].as_array().unwrap() {
            let cidr = r["CidrIp"].as_str().unwrap().to_string();
            if p["IpProtocol"] == "-1" {
                all.insert(cidr);
            } else {
                set.insert((
                    cidr,
                    p["IpProtocol"].as_str().unwrap().to_string(),
                    p["FromPort"].as_u64().unwrap() as u16,
                    p["ToPort"].as_u64().unwrap() as u16,
                ));
            }
        }
    }
    (set, all)
}

fn stack(site_dir: &Path) -> Value {
    let text = std::fs::read_to_string(site_dir.join(NLB_STACK)).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

/// What the NLB admits: a rule of its security group on a port where a
/// listener of the same protocol is; and the listeners themselves.
fn nlb_set(t: &Value) -> (Admitted, BTreeSet<(String, u16)>) {
    let resources = t["Resources"].as_object().unwrap();
    let listeners: BTreeSet<(String, u16)> = resources
        .values()
        .filter(|r| r["Type"] == "AWS::ElasticLoadBalancingV2::Listener")
        .flat_map(|r| {
            let port = r["Properties"]["Port"].as_u64().unwrap() as u16;
            let protos: &[&str] = match r["Properties"]["Protocol"].as_str().unwrap() {
                "TCP" => &["tcp"],
                "UDP" => &["udp"],
                "TCP_UDP" => &["tcp", "udp"],
                other => panic!("listener protocol {other}"),
            };
            protos.iter().map(move |p| (p.to_string(), port))
        })
        .collect();
    let mut set = Admitted::new();
    if let Some(g) = resources.get("LoadBalancerSecurityGroup") {
        for r in g["Properties"]["SecurityGroupIngress"].as_array().unwrap() {
            let proto = r["IpProtocol"].as_str().unwrap().to_string();
            let (a, b) = (
                r["FromPort"].as_u64().unwrap() as u16,
                r["ToPort"].as_u64().unwrap() as u16,
            );
            if (a..=b).all(|p| listeners.contains(&(proto.clone(), p))) {
                set.insert((r["CidrIp"].as_str().unwrap().to_string(), proto, a, b));
            }
        }
    }
    (set, listeners)
}

/// The fixture as `deployment: nlb`, without what only an instance has
/// (`failover`, `health`, `metrics`, `sysctl`, `log`); JSON is YAML.
fn as_nlb(spec: &Value) -> Value {
    let mut v = spec.clone();
    let map = v.as_object_mut().unwrap();
    for key in ["failover", "health", "metrics", "sysctl"] {
        map.remove(key);
    }
    map.insert("deployment".into(), Value::from("nlb"));
    for f in map
        .get_mut("forwards")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        f.as_object_mut().unwrap().remove("log");
    }
    v
}

/// Every valid fixture, and for each the spec it was rendered from as an
/// NLB site, rendered, or the refusal that says why it cannot take that
/// shape.
struct NlbVariant {
    label: String,
    spec: Value,
    rendered: Result<RenderedSite, String>,
    _dir: ScratchDir,
}

fn nlb_variants() -> Vec<NlbVariant> {
    let mut specs: Vec<Spec> = valid_specs();
    specs.extend(nlb_specs());
    specs
        .into_iter()
        .map(|s| {
            let original = yaml_value(&s.path);
            let spec = as_nlb(&original);
            let dir = ScratchDir::new("nlb-variant");
            let path = dir.path().join(format!("{}.yaml", s.label));
            std::fs::write(&path, serde_json::to_string(&spec).unwrap()).unwrap();
            let check = support::output_of(natbake().arg("check").arg(&path));
            let rendered = if check.status.success() {
                Ok(render(&path))
            } else {
                Err(String::from_utf8_lossy(&check.stderr).into_owned())
            };
            NlbVariant {
                label: s.label,
                spec,
                rendered,
                _dir: dir,
            }
        })
        .collect()
}

/// Why a fixture cannot be an NLB: only the refusals of that shape.
fn assert_refused_for_the_nlb(v: &NlbVariant, why: &str) {
    assert!(
        why.contains("Network Load Balancer") || why.contains("load balancer's security group"),
        "{}: refused for another reason than the NLB's limits:\n{why}",
        v.label
    );
}

#[test]
fn nlb_stacks_pass_cfn_lint_without_a_warning() {
    let variants = nlb_variants();
    let mut stacks = Vec::new();
    let mut linted = Vec::new();
    for v in &variants {
        match &v.rendered {
            Ok(site) => {
                stacks.push(site.site_dir.join(NLB_STACK));
                linted.push(v.label.as_str());
            }
            Err(why) => assert_refused_for_the_nlb(v, why),
        }
    }
    // Every fixture of the nlb folder, and most instance fixtures.
    assert!(linted.len() >= 10, "only {linted:?} can be NLB sites");
    support::assert_cfn_lint_clean(&stacks);
}

/// One proof that the shapes admit the same traffic: for every fixture,
/// the instance's ruleset and security group, and the NLB's security
/// group and listeners, each admit exactly the spec's set.
#[test]
fn every_shape_admits_exactly_the_spec_traffic() {
    let mut instances = 0;
    for s in valid_specs() {
        let spec = yaml_value(&s.path);
        let want = spec_set(&spec);
        let site = render(&s.path);
        let rules = std::fs::read_to_string(site.site_dir.join("rules.v4")).unwrap();
        assert_eq!(ruleset_set(&rules), want, "{}: rules.v4", s.label);
        let sg = site.site_dir.join("security-group.json");
        let (sg_set, all) = match std::fs::read(&sg) {
            Ok(bytes) => security_group_set(&serde_json::from_slice(&bytes).unwrap()),
            Err(_) => Default::default(),
        };
        assert_eq!(sg_set, want, "{}: security-group.json", s.label);
        let egress = spec["egress"].as_bool().unwrap_or(true);
        let vpc: BTreeSet<String> = spec["vpc_cidrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            all,
            if egress { vpc } else { BTreeSet::new() },
            "{}: all-traffic rules are egress from the VPC only",
            s.label
        );
        instances += 1;
    }
    let mut nlbs = 0;
    for v in nlb_variants() {
        let site = match &v.rendered {
            Ok(site) => site,
            Err(why) => {
                assert_refused_for_the_nlb(&v, why);
                continue;
            }
        };
        let want = spec_set(&v.spec);
        let (admitted, listeners) = nlb_set(&stack(&site.site_dir));
        assert_eq!(admitted, want, "{}: the NLB's group and listeners", v.label);
        let ports: BTreeSet<(String, u16)> =
            want.iter().map(|(_, p, a, _)| (p.clone(), *a)).collect();
        assert_eq!(listeners, ports, "{}: one listener per forward", v.label);
        nlbs += 1;
    }
    assert!(
        instances >= 10 && nlbs >= 10,
        "{instances} instance and {nlbs} NLB sites"
    );
}

/// The checker itself: a rule dropped from either side, a source widened,
/// a listener missing, or a rule in a chain nothing jumps to, is seen.
#[test]
fn the_traffic_checker_sees_a_difference() {
    let rules = "*nat\n-A NATBAKE-DNAT -p tcp -s 192.0.2.0/24 --dport 80 -j DNAT --to-destination 10.0.0.5\n-A NATBAKE-DNAT -p udp --dport 1000:1010 -j NATBAKE-UDP-1\n-A NATBAKE-UDP-1 -p udp --dport 1000 -j DNAT --to-destination 10.0.0.6\n-A NATBAKE-UDP-2 -p udp --dport 2000 -j DNAT --to-destination 10.0.0.6\nCOMMIT\n";
    let got = ruleset_set(rules);
    let want: Admitted = [
        ("192.0.2.0/24", "tcp", 80, 80),
        ("0.0.0.0/0", "udp", 1000, 1000),
    ]
    .into_iter()
    .map(|(s, p, a, b)| (s.to_string(), p.to_string(), a, b))
    .collect();
    assert_eq!(got, want, "the unreachable chain admits nothing");
    let t: Value = serde_json::json!({"Resources": {
        "LoadBalancerSecurityGroup": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"SecurityGroupIngress": [
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "CidrIp": "192.0.2.0/24"},
            {"IpProtocol": "udp", "FromPort": 1000, "ToPort": 1000, "CidrIp": "0.0.0.0/0"}]}},
        "L": {"Type": "AWS::ElasticLoadBalancingV2::Listener", "Properties": {"Protocol": "TCP", "Port": 80}}}});
    let (admitted, _) = nlb_set(&t);
    assert_ne!(admitted, want, "a rule without its listener admits nothing");
    assert_eq!(admitted.len(), 1);
}

fn replay(site: &RenderedSite, zones: u32) -> Value {
    let script = fixtures::repo().join("tests/it/nlb_replay.py");
    let done = support::run_bounded(
        Command::new(moto_venv().join("bin/python3"))
            .arg(&script)
            .arg(&site.site_dir)
            .arg(zones.to_string()),
        b"",
        Duration::from_secs(300),
    );
    assert!(
        done.success(),
        "replaying {}: {}",
        site.site_dir.display(),
        done.explain()
    );
    serde_json::from_str(done.stdout.trim()).expect("nlb_replay.py prints JSON")
}

/// The NLB fixtures' stacks, replayed into moto: what the Elastic Load
/// Balancing and EC2 APIs hold afterwards is what the spec says.
#[test]
fn nlb_stacks_replayed_into_moto_hold_what_the_spec_says() {
    for s in nlb_specs() {
        let loaded = natbake::validate::load(&fixtures::repo().join(&s.path)).unwrap();
        let site = render(&s.path);
        for zones in [1, 2, 3] {
            let seen = replay(&site, zones);
            let label = format!("{} in {zones} zone(s)", s.label);
            let params = &seen["parameters"];
            let subnets: Vec<String> = (1..=zones)
                .map(|n| {
                    params[format!("PublicSubnet{n}")]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect();
            let lbs = seen["load_balancers"].as_array().unwrap();
            if loaded.forwards.is_empty() {
                assert!(lbs.is_empty(), "{label}: a load balancer without forwards");
            } else {
                assert_eq!(lbs.len(), 1, "{label}");
                let lb = &lbs[0];
                assert_eq!(lb["type"], "network", "{label}");
                assert_eq!(lb["scheme"], "internet-facing", "{label}");
                assert_eq!(lb["cross_zone"], "true", "{label}");
                let mut sorted = subnets.clone();
                sorted.sort();
                assert_eq!(lb["subnets"], serde_json::json!(sorted), "{label}");
                let mappings = lb["sent_subnet_mappings"].as_array().unwrap();
                assert_eq!(
                    mappings.len(),
                    zones as usize,
                    "{label}: one address per zone"
                );
                assert!(
                    mappings
                        .iter()
                        .all(|m| m["AllocationId"].as_str().unwrap().starts_with("eipalloc-"))
                );
                let mut want: Vec<Value> = Vec::new();
                for f in &loaded.forwards {
                    // TCP and UDP on one port: one TCP_UDP listener.
                    if let Some(l) = want.iter_mut().find(|l| l["port"] == f.ports.first) {
                        l["protocol"] = "TCP_UDP".into();
                        l["target_group"]["protocol"] = "TCP_UDP".into();
                        l["target_group"]["preserve_client_ip"] = Value::Null;
                        continue;
                    }
                    let proto = f.proto.name().to_uppercase();
                    want.push(serde_json::json!({
                        "protocol": proto,
                        "port": f.ports.first,
                        "action": "forward",
                        "target_group": {
                            "protocol": proto,
                            "port": f.target_ports.first,
                            "target_type": "ip",
                            "vpc": true,
                            "health_check": ["TCP", "traffic-port"],
                            "targets": [[f.target.to_string(), f.target_ports.first]],
                            "preserve_client_ip": if f.proto == natbake::site::Proto::Tcp { Value::from("true") } else { Value::Null },
                        },
                    }));
                }
                want.sort_by_key(|l| (l["protocol"].to_string(), l["port"].as_u64()));
                assert_eq!(lb["listeners"], Value::Array(want), "{label}");
                let groups = &seen["security_groups"];
                let mut ingress = Vec::new();
                let mut to_targets = BTreeSet::new();
                let mut targets_in = BTreeSet::new();
                for f in &loaded.forwards {
                    for c in &f.from {
                        ingress.push(serde_json::json!([
                            f.proto.name(),
                            f.ports.first,
                            f.ports.last,
                            c.to_string()
                        ]));
                    }
                    let mut protos = vec![f.proto.name()];
                    if f.proto == natbake::site::Proto::Udp {
                        protos.push("tcp");
                    }
                    for p in protos {
                        to_targets.insert(
                            serde_json::json!([
                                p,
                                f.target_ports.first,
                                f.target_ports.first,
                                format!("{}/32", f.target)
                            ])
                            .to_string(),
                        );
                        targets_in.insert(
                            serde_json::json!([
                                p,
                                f.target_ports.first,
                                f.target_ports.first,
                                "sg:LoadBalancerSecurityGroup"
                            ])
                            .to_string(),
                        );
                    }
                }
                ingress.sort_by_key(|v| v.to_string());
                let mut got_ingress = groups["LoadBalancerSecurityGroup"]["ingress"]
                    .as_array()
                    .unwrap()
                    .clone();
                got_ingress.sort_by_key(|v| v.to_string());
                assert_eq!(
                    got_ingress, ingress,
                    "{label}: the load balancer admits each forward's sources"
                );
                let set = |v: &Value| -> BTreeSet<String> {
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.to_string())
                        .collect()
                };
                assert_eq!(
                    set(&groups["LoadBalancerSecurityGroup"]["egress"]),
                    to_targets,
                    "{label}: it sends only to the targets"
                );
                assert_eq!(
                    set(&groups["TargetSecurityGroup"]["ingress"]),
                    targets_in,
                    "{label}: the targets admit the load balancer"
                );
            }
            let nats = seen["nat_gateways"].as_array().unwrap();
            let routes = seen["routes"].as_array().unwrap();
            if loaded.egress {
                let mut nat_subnets: Vec<String> = nats
                    .iter()
                    .map(|n| n["subnet"].as_str().unwrap().to_string())
                    .collect();
                nat_subnets.sort();
                let mut sorted = subnets.clone();
                sorted.sort();
                assert_eq!(nat_subnets, sorted, "{label}: one NAT gateway per zone");
                assert!(
                    nats.iter()
                        .all(|n| n["allocations"].as_array().unwrap().len() == 1),
                    "{label}"
                );
                // Each zone's private route table goes to that zone's gateway.
                for n in 1..=zones {
                    let rtb = params[format!("PrivateRouteTable{n}")].as_str().unwrap();
                    let subnet = params[format!("PublicSubnet{n}")].as_str().unwrap();
                    let nat = nats.iter().find(|x| x["subnet"] == subnet).unwrap()["id"].clone();
                    assert!(
                        routes.contains(&serde_json::json!([rtb, "0.0.0.0/0", nat])),
                        "{label}: {rtb} does not go to its zone's NAT gateway: {routes:?}"
                    );
                }
                assert_eq!(routes.len(), zones as usize, "{label}");
            } else {
                assert!(
                    nats.is_empty() && routes.is_empty(),
                    "{label}: egress without `egress`"
                );
            }
        }
    }
}

/// The spec-level proof for the valid NLB fixtures' folder itself: they
/// render the stack, the manifest, the sums and the targets' rules, and
/// none of the instance's files.
#[test]
fn nlb_sites_render_no_instance_artifact() {
    for s in nlb_specs() {
        let site = render(&s.path);
        let names: Vec<String> = fixtures::files(&site.site_dir)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let loaded = natbake::validate::load(&fixtures::repo().join(&s.path)).unwrap();
        let mut want = vec![
            NLB_STACK.to_string(),
            "SHA256SUMS".into(),
            "manifest.json".into(),
        ];
        if !loaded.forwards.is_empty() {
            want.push("target-security-groups.json".into());
        }
        want.sort();
        assert_eq!(names, want, "{}", s.label);
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(site.site_dir.join("manifest.json")).unwrap())
                .unwrap();
        assert_eq!(manifest["deployment"], "nlb", "{}", s.label);
        assert_eq!(manifest["stack"]["file"], NLB_STACK, "{}", s.label);
    }
}

/// `natbake build` takes a folder of NLB specs as it takes instance specs.
#[test]
fn build_renders_a_folder_of_nlb_specs() {
    let out = ScratchDir::new("nlb-build");
    let run = support::output_of(
        natbake()
            .arg("build")
            .arg("tests/fixtures/nlb")
            .arg("-o")
            .arg(out.path()),
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for site in ["corp-nlb", "forwards-nlb", "egress-nlb"] {
        assert!(out.path().join(site).join(NLB_STACK).exists(), "{site}");
        assert!(!out.path().join(site).join("rules.v4").exists(), "{site}");
    }
}

/// Free text that CloudFormation or another consumer reads as syntax
/// (`${AWS::Region}` among it) stays out of the NLB stack's reach: every
/// such description renders a stack cfn-lint takes without a warning (a
/// description with a substitution of a real name is left out, E1029).
#[test]
fn hostile_descriptions_leave_the_nlb_stack_clean() {
    let dir = ScratchDir::new("nlb-hostile");
    let mut sites = Vec::new();
    for (n, token) in crate::specgen::TOKENS.iter().enumerate() {
        let spec = dir.path().join(format!("h{n}.yaml"));
        std::fs::write(
            &spec,
            format!(
                "version: 1\nsite: h{n}\ndeployment: nlb\ndescription: {}\nvpc_cidrs: [10.0.0.0/16]\n\
                 forwards:\n  - {{name: a, port: 1000, to: 10.0.0.9, from: [192.0.2.0/24]}}\n",
                serde_json::to_string(&format!("reach {token} here")).unwrap()
            ),
        )
        .unwrap();
        sites.push(render(&spec));
    }
    support::assert_cfn_lint_clean(sites.iter().map(|s| s.site_dir.join(NLB_STACK)));
}
