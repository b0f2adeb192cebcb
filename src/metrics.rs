//! The CloudWatch metrics the health check publishes, and what they cost.
//!
//! Every custom metric is billed each month it receives data, so the
//! number of metrics a spec turns on, and the price that number implies,
//! are stated by `natbake render` and in the manifest before anyone pays.

use crate::site::Site;
use serde_json::{Value, json};

/// The CloudWatch namespace of every metric; the IAM permission is limited
/// to it.
pub const NAMESPACE: &str = "natbake";

/// Metrics with the dimension `Site` only, as the health check publishes
/// them: (name, unit).
pub const SITE_METRICS: &[(&str, &str)] = &[
    ("NewConnections", "Count"),
    ("DeniedAttempts", "Count"),
    ("ConntrackEntries", "Count"),
    ("ConntrackFillPercent", "Percent"),
    ("ForwardedBytesIn", "Bytes"),
    ("ForwardedBytesOut", "Bytes"),
    ("ForwardDrops", "Count"),
    ("Healthy", "None"),
];

/// A standby pair's metrics (dimension `Site`): `Active` is 1 on the
/// instance that is the pair's active, so that its Sum over the pair is 1
/// while one serves (0: none; 2: both, which the split-brain rule makes
/// brief); `Takeovers` counts this instance's takeovers.
pub const STANDBY_METRICS: &[(&str, &str)] = &[("Active", "None"), ("Takeovers", "Count")];

/// ENA's allowance counters (`ethtool -S`) and the metrics (dimension
/// `Site`, unit Count) they become: packets the instance's limits dropped
/// or queued, summed over its ENA interfaces. Published only where the
/// driver has them (every Nitro instance with a recent driver); the cost
/// counts them.
pub const ENA_METRICS: &[(&str, &str)] = &[
    ("bw_in_allowance_exceeded", "BwInAllowanceExceeded"),
    ("bw_out_allowance_exceeded", "BwOutAllowanceExceeded"),
    ("pps_allowance_exceeded", "PpsAllowanceExceeded"),
    ("conntrack_allowance_exceeded", "ConntrackAllowanceExceeded"),
    ("linklocal_allowance_exceeded", "LinklocalAllowanceExceeded"),
];

/// Metrics with the dimensions `Site` and `Forward`, with `per_forward`:
/// new connections for every forward, denied attempts for those that
/// restrict their sources (a public forward has no counter for them).
pub const FORWARD_METRICS: &[&str] = &["NewConnections", "DeniedAttempts"];

/// Most metrics in one PutMetricData request (CloudWatch's limit).
pub const PER_REQUEST: usize = 1000;

/// Seconds in a month as AWS bills them (730 hours).
pub const SECONDS_PER_MONTH: u64 = 730 * 3600;

/// Seconds after a publish before a check publishes again: a little under
/// a minute, so that a check that comes a moment early still publishes
/// (`a_minute_since` in the health check).
pub const PUBLISH_GAP: u64 = 55;

/// The shortest time between two publishes for a check every `interval`
/// seconds: the first check at least [`PUBLISH_GAP`] after the last
/// publish. A minute at most intervals (15 s: every fourth check), 90 s at
/// 45 s, the interval itself from 55 s up; each check's own run time makes
/// real gaps a little longer.
pub fn publish_spacing(interval: u32) -> u64 {
    let interval = u64::from(interval.max(1));
    PUBLISH_GAP.div_ceil(interval) * interval
}

/// The health check's interval, for a site with metrics (which needs it).
fn interval(site: &Site) -> u32 {
    site.health_interval
        .unwrap_or(crate::values::HEALTH_INTERVAL_DEFAULT)
}

/// US dollars per custom metric and month: the list price of the first
/// tier (the first 10,000 metrics) in us-east-1.
pub const PRICE_PER_METRIC_MONTH: f64 = 0.30;

/// US dollars per 1,000 PutMetricData requests (us-east-1 list price).
pub const PRICE_PER_1000_REQUESTS: f64 = 0.01;

/// How many custom metrics `site` publishes (0 without metrics).
pub fn count(site: &Site) -> usize {
    let Some(m) = site.metrics else { return 0 };
    let mut n = SITE_METRICS.len() + ENA_METRICS.len();
    if crate::standby::of(site).is_some() {
        n += STANDBY_METRICS.len();
    }
    if m.per_forward {
        n += site.forwards.len() + site.forwards.iter().filter(|f| !f.public).count();
    }
    n
}

/// Publishes a month, at most: one every [`publish_spacing`] (none
/// without metrics).
pub fn publishes_per_month(site: &Site) -> u64 {
    match site.metrics {
        Some(_) => SECONDS_PER_MONTH / publish_spacing(interval(site)),
        None => 0,
    }
}

/// PutMetricData requests a month: each publish's metrics in requests of
/// at most [`PER_REQUEST`].
pub fn requests_per_month(site: &Site) -> u64 {
    count(site).div_ceil(PER_REQUEST) as u64 * publishes_per_month(site)
}

/// The monthly cost in US dollars, at the prices above.
pub fn monthly_cost(site: &Site) -> f64 {
    count(site) as f64 * PRICE_PER_METRIC_MONTH
        + requests_per_month(site) as f64 / 1000.0 * PRICE_PER_1000_REQUESTS
}

/// The assumption behind [`monthly_cost`], in words.
pub const PRICE_BASIS: &str = "CloudWatch list prices in us-east-1: $0.30 per custom metric-month (the first tier, up to 10,000 metrics; higher tiers cost less, other regions differ) and $0.01 per 1,000 PutMetricData requests, one request per 1,000 metrics at each publish (once a minute, or at every check when health.interval is longer; 730 hours a month); excludes the free tier, alarms and dashboards";

/// What `natbake render` says about the metrics, if the spec has them.
pub fn notes(site: &Site) -> Vec<String> {
    if site.metrics.is_none() {
        return Vec::new();
    }
    let n = count(site);
    let requests = requests_per_month(site);
    vec![format!(
        "CloudWatch metrics: {} custom metrics in namespace `{NAMESPACE}`, about ${:.2} a month ({} × ${PRICE_PER_METRIC_MONTH:.2} per metric-month plus {} PutMetricData requests, a publish every {} s, × ${PRICE_PER_1000_REQUESTS:.2} per 1,000), assuming the first-tier list price in us-east-1",
        thousands(n as u64),
        monthly_cost(site),
        thousands(n as u64),
        thousands(requests),
        publish_spacing(interval(site))
    )]
}

/// `43800` as `43,800`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The manifest's `metrics` object, or `None` without metrics.
pub fn manifest(site: &Site) -> Option<Value> {
    let m = site.metrics?;
    let mut dimensions = vec!["Site"];
    if m.per_forward {
        dimensions.push("Forward");
    }
    let mut v = json!({
        "cloudwatch": true,
        "namespace": NAMESPACE,
        "per_forward": m.per_forward,
        "dimensions": dimensions,
        "site_metrics": SITE_METRICS.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        "ena_metrics": ENA_METRICS.iter().map(|(_, name)| *name).collect::<Vec<_>>(),
        "standby_metrics": if crate::standby::of(site).is_some() {
            STANDBY_METRICS.iter().map(|(name, _)| *name).collect::<Vec<_>>()
        } else {
            Vec::new()
        },
        "forward_metrics": if m.per_forward { FORWARD_METRICS.to_vec() } else { Vec::new() },
        "custom_metrics": count(site),
        "publish_every_seconds": publish_spacing(interval(site)),
        "put_metric_data_requests_per_month": requests_per_month(site),
        "monthly_cost_usd": format!("{:.2}", monthly_cost(site)),
        "price_basis": PRICE_BASIS,
    });
    // With failover the role's one policy is `failover.iam_policy`.
    if site.failover.is_none() {
        v["iam_policy"] = crate::failover::iam_policy(site);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(yaml: &str) -> Site {
        crate::validate::parse(std::path::Path::new("t.yaml"), yaml.as_bytes()).unwrap()
    }

    #[test]
    fn count_and_cost_follow_the_forwards() {
        let base = "version: 1\nsite: s\nvpc_cidrs: [10.0.0.0/16]\nhealth: {}\nforwards:\n  - {name: a, port: 8080, to: 10.0.1.1:80, from: [203.0.113.0/24]}\n  - {name: b, port: 443, to: 10.0.1.2:443, from: [0.0.0.0/0], public: true}\n";
        assert_eq!(count(&site(base)), 0);
        assert!(notes(&site(base)).is_empty());
        let plain = site(&format!("{base}metrics: {{cloudwatch: true}}\n"));
        // 8 site metrics and ENA's 5.
        assert_eq!(count(&plain), 13);
        assert_eq!(requests_per_month(&plain), 43_800);
        assert!((monthly_cost(&plain) - (3.90 + 0.438)).abs() < 1e-9);
        assert!(
            notes(&plain)[0].contains("13 custom metrics"),
            "{:?}",
            notes(&plain)
        );
        assert!(
            notes(&plain)[0].contains("$4.34 a month"),
            "{:?}",
            notes(&plain)
        );
        // a: connections and denied; b (public): connections only.
        let per = site(&format!(
            "{base}metrics: {{cloudwatch: true, per_forward: true}}\n"
        ));
        assert_eq!(count(&per), 16);
    }

    /// A publish is due 55 s after the last one, at the first check then:
    /// the requests (and their cost) follow the interval.
    #[test]
    fn publishes_follow_the_interval() {
        for (interval, spacing) in [
            (5, 55),
            (10, 60),
            (15, 60),
            (30, 60),
            (45, 90),
            (55, 55),
            (60, 60),
            (181, 181),
            (300, 300),
        ] {
            assert_eq!(publish_spacing(interval), spacing, "{interval}");
        }
        let at = |interval: u32| {
            site(&format!(
                "version: 1\nsite: s\nvpc_cidrs: [10.0.0.0/16]\nhealth: {{interval: {interval}}}\nmetrics: {{cloudwatch: true}}\n"
            ))
        };
        assert_eq!(requests_per_month(&at(15)), 43_800);
        assert_eq!(requests_per_month(&at(300)), 8_760);
        assert_eq!(requests_per_month(&at(45)), 29_200);
        assert!((monthly_cost(&at(300)) - (3.90 + 0.0876)).abs() < 1e-9);
        assert!(notes(&at(300))[0].contains("8,760 PutMetricData requests, a publish every 300 s"));
    }
}
