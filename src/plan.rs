//! `natbake plan`: what each shape of a site costs a month, where another
//! shape wins, and what each cannot do.
//!
//! Three shapes, each priced whether or not the spec deploys it: one NAT
//! instance (the stack without failover: one instance and its elastic
//! IP), an instance with a warm standby (two instances, the floating
//! interface's elastic IP and each instance's own public address, as the
//! failover stack's launch template asks for), and a Network Load Balancer
//! with one NAT gateway per zone (`deployment: nlb`). The prices are
//! [`crate::prices`]; the model is linear in the traffic, so each shape is
//! a fixed monthly cost plus a cost per GB, and the traffic at which two
//! shapes cost the same is one division.

use crate::prices::{self as p, InstanceType};
use crate::site::{Proto, Site};
use serde::Serialize;

/// What the user tells the plan about the site's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Traffic {
    /// GB a month through the forwards, both directions.
    pub forward_gb: f64,
    /// GB a month of the private hosts' Internet traffic, both directions.
    pub egress_gb: f64,
    /// Zones the private hosts (and, for the NLB, its nodes) are spread over.
    pub zones: u32,
    /// New connections or flows a second through the forwards, on average.
    pub new_flows_per_second: f64,
    /// Connections or flows open through the forwards at once, on average.
    pub active_flows: f64,
}

impl Traffic {
    /// The defaults `natbake plan` states in its help.
    pub const DEFAULT: Traffic = Traffic {
        forward_gb: 100.0,
        egress_gb: 100.0,
        zones: 2,
        new_flows_per_second: 1.0,
        active_flows: 100.0,
    };

    /// Share of the traffic taken to leave AWS for the Internet: about
    /// half goes each way. The same in every shape.
    pub const INTERNET_OUT_SHARE: f64 = 0.5;

    fn total_gb(&self) -> f64 {
        self.forward_gb + self.egress_gb
    }

    /// Share of traffic from or to a zone other than one given zone.
    fn other_zones(&self) -> f64 {
        let z = f64::from(self.zones.max(1));
        (z - 1.0) / z
    }
}

/// One line of a shape's bill.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub what: String,
    /// US dollars a month at the traffic given.
    pub usd: f64,
    /// The part of `usd` that does not depend on the traffic.
    pub fixed_usd: f64,
}

/// A shape's monthly bill and what it cannot do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shape {
    pub name: &'static str,
    pub title: String,
    pub monthly_usd: f64,
    pub fixed_usd: f64,
    /// Cost of one more GB a month, spread as the given traffic is.
    pub per_gb_usd: f64,
    pub items: Vec<Item>,
    pub limits: Vec<String>,
}

/// Where another shape becomes the cheaper one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Crossover {
    pub cheaper: &'static str,
    pub other: &'static str,
    /// Total GB a month (forwards and egress, in the given proportion)
    /// from which `other` costs less; `None`: at no traffic.
    pub from_gb: Option<f64>,
    pub says: String,
}

/// The plan of one site.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub site: String,
    pub deployment: &'static str,
    pub forwards: usize,
    pub instance_type: String,
    pub traffic: Traffic,
    pub shapes: Vec<Shape>,
    pub crossovers: Vec<Crossover>,
    /// Where the instance's type stops carrying the traffic steadily.
    pub instance_ceiling: Vec<String>,
}

/// The header every plan is priced under.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriceBasis {
    pub region: &'static str,
    pub date: &'static str,
    pub source: &'static str,
    pub hours_per_month: f64,
    pub assumptions: Vec<String>,
}

pub fn price_basis() -> PriceBasis {
    PriceBasis {
        region: p::REGION,
        date: p::DATE,
        source: p::SOURCE,
        hours_per_month: p::HOURS_PER_MONTH,
        assumptions: vec![
            format!(
                "half of all traffic leaves AWS for the Internet (${}/GB, the same in every shape; the 100 GB free each month are not subtracted)",
                p::INTERNET_OUT_GB
            ),
            "private hosts and clients are spread evenly over the zones; traffic that crosses zones costs $0.01/GB on each side".into(),
            "NLCUs from the monthly average (AWS bills each hour's highest dimension)".into(),
            "on-demand prices, no savings plans or reservations".into(),
        ],
    }
}

/// Builds a shape from items whose fixed part and per-GB part are given.
struct Bill {
    traffic: Traffic,
    items: Vec<Item>,
    per_gb: f64,
}

impl Bill {
    fn new(traffic: Traffic) -> Bill {
        Bill {
            traffic,
            items: Vec::new(),
            per_gb: 0.0,
        }
    }

    fn fixed(&mut self, what: String, usd: f64) {
        self.items.push(Item {
            what,
            usd,
            fixed_usd: usd,
        });
    }

    /// A cost proportional to `gb`, which is part of the total traffic.
    fn by_traffic(&mut self, what: String, usd: f64) {
        self.items.push(Item {
            what,
            usd,
            fixed_usd: 0.0,
        });
        let total = self.traffic.total_gb();
        if total > 0.0 {
            self.per_gb += usd / total;
        }
    }

    fn common(&mut self) {
        let t = self.traffic;
        let out = t.total_gb() * Traffic::INTERNET_OUT_SHARE;
        self.by_traffic(
            format!("{} GB out to the Internet", round(out)),
            out * p::INTERNET_OUT_GB,
        );
    }

    fn shape(
        self,
        name: &'static str,
        title: String,
        limits: Vec<String>,
        per_gb_floor: f64,
    ) -> Shape {
        let monthly: f64 = self.items.iter().map(|i| i.usd).sum();
        let fixed: f64 = self.items.iter().map(|i| i.fixed_usd).sum();
        Shape {
            name,
            title,
            monthly_usd: monthly,
            fixed_usd: fixed,
            per_gb_usd: self.per_gb.max(per_gb_floor),
            items: self.items,
            limits,
        }
    }
}

fn round(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round() as i64)
    } else {
        format!("{x:.1}")
    }
}

fn instance_hours(ty: &InstanceType, count: u32) -> (String, f64) {
    (
        format!("{count} × {} at ${}/h", ty.name, ty.hour),
        f64::from(count) * ty.hour * p::HOURS_PER_MONTH,
    )
}

fn addresses(count: u32, what: &str) -> (String, f64) {
    (
        format!(
            "{count} public IPv4 address{} ({what})",
            if count == 1 { "" } else { "es" }
        ),
        f64::from(count) * p::PUBLIC_IPV4_HOUR * p::HOURS_PER_MONTH,
    )
}

/// The instance shapes' bill: `count` instances, `ips` addresses.
fn instance_bill(site: &Site, ty: &InstanceType, t: Traffic, count: u32, ips: (u32, &str)) -> Bill {
    let mut b = Bill::new(t);
    let (what, usd) = instance_hours(ty, count);
    b.fixed(what, usd);
    b.fixed(
        format!("{count} × {} GB gp3 root volume", p::ROOT_VOLUME_GB),
        f64::from(count) * p::ROOT_VOLUME_GB * p::GP3_GB_MONTH,
    );
    let (what, usd) = addresses(ips.0, ips.1);
    b.fixed(what, usd);
    if site.egress {
        // The instance is in one zone: egress from the others crosses.
        let gb = t.egress_gb * t.other_zones();
        b.by_traffic(
            format!(
                "{} GB of egress from other zones to the instance's",
                round(gb)
            ),
            gb * 2.0 * p::CROSS_ZONE_GB_EACH_WAY,
        );
    }
    // And forwards to targets in the other zones.
    if !site.forwards.is_empty() {
        let gb = t.forward_gb * t.other_zones();
        b.by_traffic(
            format!(
                "{} GB of forwarded traffic to targets in other zones",
                round(gb)
            ),
            gb * 2.0 * p::CROSS_ZONE_GB_EACH_WAY,
        );
    }
    b.common();
    b
}

fn instance_limits(ty: &InstanceType, standby: bool) -> Vec<String> {
    let mut l = vec![
        format!(
            "{}: {} Gbps sustained, bursts up to {} Gbps; at most {} Gbps to the Internet below 32 vCPUs",
            ty.name,
            ty.baseline_gbps,
            ty.burst_gbps,
            p::INTERNET_GBPS_BELOW_32_VCPUS
        ),
        "one zone: a zone's outage stops the forwards and egress".into(),
        "one connection-tracking table (`net.netfilter.nf_conntrack_max`)".into(),
        "up to 20000 forwards, port ranges included; security-group rules: 60 by default, 1000 at most per interface".into(),
    ];
    l.push(if standby {
        "the standby takes over in seconds; established connections are meant to survive".into()
    } else {
        "a failed host is recovered in place in minutes; open connections are lost".into()
    });
    l
}

/// Prices the three shapes of `site` for `traffic`, with the instance type
/// `ty` (the spec's `ami.instance_type` unless the user names another).
pub fn plan(site: &Site, ty: &InstanceType, traffic: Traffic) -> Plan {
    let t = traffic;
    let one = instance_bill(site, ty, t, 1, (1, "the elastic IP"));
    let one = one.shape(
        "instance",
        format!("one instance ({})", ty.name),
        instance_limits(ty, false),
        0.0,
    );
    let pair = instance_bill(
        site,
        ty,
        t,
        2,
        (
            3,
            "the floating interface's elastic IP, and each instance's own",
        ),
    );
    let pair = pair.shape(
        "standby",
        format!("instance + warm standby (2 × {})", ty.name),
        instance_limits(ty, true),
        0.0,
    );
    let nlb = nlb_shape(site, t);
    let shapes = vec![one, pair, nlb];
    let crossovers = crossovers(&shapes);
    let mut ceiling = vec![
        format!(
            "{} carries {} GB a month at its sustained {} Gbps, held all month",
            ty.name,
            round(p::gb_per_month(ty.baseline_gbps)),
            ty.baseline_gbps
        ),
        format!(
            "no instance below 32 vCPUs sends more than {} GB a month to the Internet ({} Gbps held all month); one NAT gateway carries up to {} Gbps",
            round(p::gb_per_month(p::INTERNET_GBPS_BELOW_32_VCPUS)),
            p::INTERNET_GBPS_BELOW_32_VCPUS,
            p::NAT_GATEWAY_GBPS
        ),
    ];
    // The traffic given, as a steady rate, against what the type sustains.
    let gbps = t.total_gb() * 8.0 / (3600.0 * p::HOURS_PER_MONTH);
    if gbps > ty.baseline_gbps {
        let larger = p::INSTANCE_TYPES
            .iter()
            .filter(|c| c.arch == ty.arch && c.baseline_gbps >= gbps)
            .min_by(|a, b| a.hour.total_cmp(&b.hour));
        ceiling.push(match larger {
            Some(c) => format!(
                "the traffic given averages {gbps:.3} Gbps, more than {} sustains: price a larger type, such as {} (--instance-type {})",
                ty.name, c.name, c.name
            ),
            None => format!(
                "the traffic given averages {gbps:.3} Gbps, more than any type natbake prices sustains: that is the NLB's and NAT gateways' ground"
            ),
        });
    }
    Plan {
        site: site.name.clone(),
        deployment: site.deployment.name(),
        forwards: site.forwards.len(),
        instance_type: ty.name.into(),
        traffic: t,
        shapes,
        crossovers,
        instance_ceiling: ceiling,
    }
}

fn nlb_shape(site: &Site, t: Traffic) -> Shape {
    let zones = t.zones.max(1);
    let mut b = Bill::new(t);
    let forwards = !site.forwards.is_empty();
    if forwards {
        b.fixed(
            format!("Network Load Balancer at ${}/h", p::NLB_HOUR),
            p::NLB_HOUR * p::HOURS_PER_MONTH,
        );
        let udp_only = site.forwards.iter().all(|f| f.proto == Proto::Udp);
        let (new_per_unit, active_per_unit) = if udp_only {
            (p::NLCU_UDP_NEW_PER_SECOND, p::NLCU_UDP_ACTIVE)
        } else {
            (p::NLCU_TCP_NEW_PER_SECOND, p::NLCU_TCP_ACTIVE)
        };
        let by_bytes = t.forward_gb / p::HOURS_PER_MONTH / p::NLCU_GB_PER_HOUR;
        let by_new = t.new_flows_per_second / new_per_unit;
        let by_active = t.active_flows / active_per_unit;
        let nlcu = by_bytes.max(by_new).max(by_active);
        let usd = nlcu * p::NLCU_HOUR * p::HOURS_PER_MONTH;
        let what = format!(
            "{nlcu:.4} NLCU on average ({}) at ${}/NLCU-h",
            if nlcu == by_bytes {
                "bytes"
            } else if nlcu == by_new {
                "new flows"
            } else {
                "active flows"
            },
            p::NLCU_HOUR
        );
        if nlcu == by_bytes {
            b.by_traffic(what, usd);
        } else {
            b.fixed(what, usd);
        }
        let (what, usd) = addresses(zones, "the load balancer's elastic IPs");
        b.fixed(what, usd);
        // Cross-zone load balancing: a target is in one zone, the
        // other zones' nodes send it their share.
        let gb = t.forward_gb * t.other_zones();
        b.by_traffic(
            format!("{} GB of forwarded traffic between zones", round(gb)),
            gb * 2.0 * p::CROSS_ZONE_GB_EACH_WAY,
        );
    }
    if site.egress {
        b.fixed(
            format!(
                "{zones} NAT gateway{} at ${}/h",
                if zones == 1 { "" } else { "s" },
                p::NAT_GATEWAY_HOUR
            ),
            f64::from(zones) * p::NAT_GATEWAY_HOUR * p::HOURS_PER_MONTH,
        );
        b.by_traffic(
            format!(
                "{} GB through the NAT gateways at ${}/GB",
                round(t.egress_gb),
                p::NAT_GATEWAY_GB
            ),
            t.egress_gb * p::NAT_GATEWAY_GB,
        );
        let (what, usd) = addresses(zones, "the NAT gateways' elastic IPs");
        b.fixed(what, usd);
    }
    b.common();
    let mut limits = vec![
        format!(
            "at most {} listeners (one per forward, or per TCP and UDP pair on one port to one target), no port ranges",
            crate::render::nlb::MAX_LISTENERS
        ),
        "the load balancer's security group is the only filter of sources: 60 rules by default, 1000 at most".into(),
        format!(
            "{zones} zone{}; AWS scales the load balancer and each NAT gateway (up to {} Gbps)",
            if zones == 1 { "" } else { "s" },
            p::NAT_GATEWAY_GBPS
        ),
        "a NAT gateway opens at most 55,000 connections at once to one destination per address".into(),
        "clients dial new addresses: the load balancer's elastic IPs, not the instance's".into(),
    ];
    if !forwards {
        limits.remove(0);
    }
    let mut parts = Vec::new();
    if forwards {
        parts.push("NLB".to_string());
    }
    if site.egress {
        parts.push(format!(
            "{zones} NAT gateway{}",
            if zones == 1 { "" } else { "s" }
        ));
    }
    let title = parts.join(" + ");
    b.shape("nlb", title, limits, 0.0)
}

fn crossovers(shapes: &[Shape]) -> Vec<Crossover> {
    let mut out = Vec::new();
    let cheapest = shapes
        .iter()
        .min_by(|a, b| a.monthly_usd.total_cmp(&b.monthly_usd))
        .expect("three shapes");
    for other in shapes.iter().filter(|s| s.name != cheapest.name) {
        let slope = cheapest.per_gb_usd - other.per_gb_usd;
        let gap = other.fixed_usd - cheapest.fixed_usd;
        let from_gb = (slope > 0.0 && gap > 0.0).then(|| gap / slope);
        let says = match from_gb {
            Some(gb) => format!(
                "{} costs less than {} from {} GB a month",
                other.title,
                cheapest.title,
                round(gb.ceil())
            ),
            None if (other.per_gb_usd - cheapest.per_gb_usd).abs() < 1e-9 => format!(
                "{} costs ${:.2} a month more than {} at any traffic; it wins on availability or limits, not price",
                other.title, gap, cheapest.title
            ),
            None => format!(
                "{} never costs less than {} at any traffic: ${:.2} more a month fixed, ${:.4} more per GB; it wins on availability or limits, not price",
                other.title,
                cheapest.title,
                gap,
                other.per_gb_usd - cheapest.per_gb_usd
            ),
        };
        out.push(Crossover {
            cheaper: cheapest.name,
            other: other.name,
            from_gb,
            says,
        });
    }
    out
}

/// The table for people.
pub fn table(basis: &PriceBasis, plans: &[Plan]) -> String {
    let mut o = format!(
        "prices: {} on-demand, as of {} ({}); {} hours a month\n",
        basis.region, basis.date, basis.source, basis.hours_per_month
    );
    for a in &basis.assumptions {
        o.push_str(&format!("assumed: {a}\n"));
    }
    for plan in plans {
        let t = plan.traffic;
        o.push_str(&format!(
            "\nsite {} (deployment: {}, {} forward{}): {} GB/month through the forwards, {} GB/month egress, {} zone{}, {} new flows/s, {} active flows\n",
            plan.site,
            plan.deployment,
            plan.forwards,
            if plan.forwards == 1 { "" } else { "s" },
            round(t.forward_gb),
            round(t.egress_gb),
            t.zones,
            if t.zones == 1 { "" } else { "s" },
            round(t.new_flows_per_second),
            round(t.active_flows),
        ));
        o.push_str(&format!(
            "  {:<40} {:>12} {:>12} {:>10}\n",
            "shape", "USD/month", "fixed", "per GB"
        ));
        for s in &plan.shapes {
            o.push_str(&format!(
                "  {:<40} {:>12.2} {:>12.2} {:>10.4}\n",
                s.title, s.monthly_usd, s.fixed_usd, s.per_gb_usd
            ));
            for i in &s.items {
                o.push_str(&format!("      {:<58} {:>10.2}\n", i.what, i.usd));
            }
        }
        o.push_str("  where another shape wins:\n");
        for c in &plan.crossovers {
            o.push_str(&format!("    {}\n", c.says));
        }
        for c in &plan.instance_ceiling {
            o.push_str(&format!("    {c}\n"));
        }
        o.push_str("  limits:\n");
        for s in &plan.shapes {
            for l in &s.limits {
                o.push_str(&format!("    {}: {l}\n", s.name));
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn site(yaml: &str) -> Site {
        crate::validate::parse(Path::new("t.yaml"), yaml.as_bytes()).unwrap()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 0.005, "{a} != {b}");
    }

    fn shape<'a>(p: &'a Plan, name: &str) -> &'a Shape {
        p.shapes.iter().find(|s| s.name == name).unwrap()
    }

    /// The seed's site: one TCP forward, egress, t3.micro; 100 GB each
    /// way, 2 zones, by hand:
    /// - instance: 0.0104×730 = 7.592; 8×0.08 = 0.64; 0.005×730 = 3.65;
    ///   egress across zones 100×½×0.02 = 1.00; forwards to targets in
    ///   the other zone 100×½×0.02 = 1.00; out 200×½×0.09 = 9.00; total
    ///   22.882.
    /// - standby: 15.184 + 1.28 + 10.95 + 1.00 + 1.00 + 9.00 = 38.414.
    /// - NLB: 0.0225×730 = 16.425; NLCU max(100/730, 1/800, 100/100000)
    ///   = 0.136986 × 0.006 × 730 = 0.60; 2 addresses 7.30; forwards
    ///   across zones 100×½×0.02 = 1.00; 2 NAT gateways 65.70; 100 GB ×
    ///   0.045 = 4.50; 2 addresses 7.30; out 9.00; total 111.825.
    #[test]
    fn seed_priced_by_hand() {
        let s = site(
            "version: 1\nsite: corp-prod\nvpc_cidrs: [10.0.0.0/16]\nforwards:\n  - name: oracle\n    port: 51532\n    to: 10.0.1.25:1532\n    from: [203.0.113.110/32]\n",
        );
        let ty = p::instance_type(&s.ami.instance_type).unwrap();
        let plan = plan(&s, ty, Traffic::DEFAULT);
        close(shape(&plan, "instance").monthly_usd, 22.882);
        close(shape(&plan, "instance").fixed_usd, 11.882);
        close(shape(&plan, "standby").monthly_usd, 38.414);
        close(shape(&plan, "nlb").monthly_usd, 111.825);
        close(shape(&plan, "nlb").fixed_usd, 16.425 + 7.30 + 65.70 + 7.30);
        // Per GB of 200: instance (1 + 1 + 9)/200; NLB (0.6 + 1 + 4.5 + 9)/200.
        close(shape(&plan, "instance").per_gb_usd * 1000.0, 55.0);
        close(shape(&plan, "nlb").per_gb_usd * 1000.0, 75.5);
        assert_eq!(plan.crossovers.len(), 2);
        assert!(plan.crossovers.iter().all(|c| c.from_gb.is_none()));
        assert!(
            plan.instance_ceiling[0].contains("21024 GB"),
            "{:?}",
            plan.instance_ceiling
        );
        assert_eq!(
            plan.instance_ceiling.len(),
            2,
            "100 + 100 GB fit a t3.micro"
        );
    }

    /// UDP only, no egress, arm64 (t4g.micro), one zone, 10,000 GB through
    /// the forwards, 1,000 new flows a second, by hand:
    /// - instance: 0.0084×730 = 6.132; 0.64; 3.65; no egress; out
    ///   10000×½×0.09 = 450; total 460.422.
    /// - NLB: 16.425; NLCU max(10000/730 = 13.6986, 1000/400 = 2.5,
    ///   100/50000) = 13.6986 × 4.38 = 60.00; 1 address 3.65; no zone
    ///   crossing; no NAT gateway; out 450; total 530.075.
    #[test]
    fn udp_without_egress_priced_by_hand() {
        let s = site(
            "version: 1\nsite: relay\narch: arm64\nvpc_cidrs: [10.0.0.0/16]\negress: false\nforwards:\n  - name: media\n    proto: udp\n    port: 10000\n    to: 10.0.1.5\n    from: [0.0.0.0/0]\n    public: true\n",
        );
        let ty = p::instance_type(&s.ami.instance_type).unwrap();
        let t = Traffic {
            forward_gb: 10_000.0,
            egress_gb: 0.0,
            zones: 1,
            new_flows_per_second: 1000.0,
            active_flows: 100.0,
        };
        let plan = plan(&s, ty, t);
        assert_eq!(plan.instance_type, "t4g.micro");
        close(shape(&plan, "instance").monthly_usd, 460.422);
        close(
            shape(&plan, "standby").monthly_usd,
            12.264 + 1.28 + 10.95 + 450.0,
        );
        close(shape(&plan, "nlb").monthly_usd, 530.075);
        assert_eq!(shape(&plan, "nlb").title, "NLB");
        // 10,000 GB a month average 0.030 Gbps, under t4g.micro's 0.064.
        assert_eq!(plan.instance_ceiling.len(), 2);
        let t = Traffic {
            forward_gb: 100_000.0,
            ..t
        };
        let plan = super::plan(&s, ty, t);
        // 0.304 Gbps: t4g.small sustains 0.128, t4g.medium 0.256, the
        // cheapest type of the table that sustains it is c6gn.medium.
        assert!(
            plan.instance_ceiling[2].contains("averages 0.304 Gbps, more than t4g.micro sustains")
                && plan.instance_ceiling[2].contains("--instance-type c6gn.medium"),
            "{:?}",
            plan.instance_ceiling
        );
    }

    #[test]
    fn a_cheaper_per_gb_shape_crosses_over() {
        let mk = |name, fixed: f64, per_gb: f64| Shape {
            name,
            title: name.to_string(),
            monthly_usd: fixed + per_gb * 100.0,
            fixed_usd: fixed,
            per_gb_usd: per_gb,
            items: Vec::new(),
            limits: Vec::new(),
        };
        let c = crossovers(&[mk("a", 10.0, 0.1), mk("b", 30.0, 0.0)]);
        assert_eq!(c[0].from_gb, Some(200.0));
        assert!(c[0].says.contains("from 200 GB"), "{}", c[0].says);
    }
}
