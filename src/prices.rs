//! The prices `natbake plan` uses: AWS's published on-demand prices for one
//! region, in US dollars, each with where it comes from. One place, so a
//! new price list is one edit here and the plan's tests.
//!
//! Sources, as read for this table:
//! - Elastic Load Balancing pricing, <https://aws.amazon.com/elasticloadbalancing/pricing/>,
//!   US East (N. Virginia), as published on 2026-09-20: Network Load
//!   Balancer $0.0225 an hour and $0.006 per NLCU-hour; one NLCU is, for
//!   TCP, 800 new connections a second, 100,000 active connections
//!   (sampled each minute) or 1 GB processed an hour; for UDP, 400 new
//!   flows a second, 50,000 active flows or 1 GB an hour, whichever is
//!   highest.
//! - Amazon VPC pricing, <https://aws.amazon.com/vpc/pricing/>: NAT
//!   gateway $0.045 an hour and $0.045 per GB processed (either way) in
//!   US East (N. Virginia); a public IPv4 address, in use or idle,
//!   $0.005 an hour (since 2024-02-01).
//! - Amazon EC2 On-Demand pricing, <https://aws.amazon.com/ec2/pricing/on-demand/>,
//!   Linux, US East (N. Virginia): the instance hours below; data
//!   transfer out to the Internet $0.09 per GB (the first 10 TB a month,
//!   after the 100 GB a month that are free account-wide, which the plan
//!   does not subtract); data between zones of one region $0.01 per GB
//!   in each direction.
//! - Amazon EBS pricing, <https://aws.amazon.com/ebs/pricing/>: gp3
//!   $0.08 per GB-month.
//! - Baseline network bandwidth: the EC2 User Guide's network
//!   specifications of each instance type; traffic to the Internet is
//!   limited to 5 Gbps for instances of fewer than 32 vCPUs.
//!
//! How each was checked for this table: the load balancer's figures
//! against a transcription of AWS's page dated 2026-09-20 ([`DATE`]); the
//! NAT gateway's against several 2026 write-ups that quote AWS's VPC page;
//! the instance hours, EBS, data transfer and public IPv4 figures are
//! AWS's long-standing us-east-1 list prices, not read again from AWS's
//! pages for this table. Check them before relying on a total.

use crate::site::Arch;

/// The region every price here is for.
pub const REGION: &str = "us-east-1";
/// The date of the prices: that of the newest source read (see above).
pub const DATE: &str = "2026-09-20";
/// Where they come from, in one line for the plan's output.
pub const SOURCE: &str =
    "AWS's on-demand price pages for Elastic Load Balancing, Amazon VPC, Amazon EC2 and Amazon EBS";

/// Hours in a month, as AWS's own calculator counts them.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// Network Load Balancer, per hour.
pub const NLB_HOUR: f64 = 0.0225;
/// Network Load Balancer capacity unit, per hour.
pub const NLCU_HOUR: f64 = 0.006;
/// One NLCU: GB processed in an hour (TCP and UDP alike).
pub const NLCU_GB_PER_HOUR: f64 = 1.0;
/// One NLCU: new TCP connections a second.
pub const NLCU_TCP_NEW_PER_SECOND: f64 = 800.0;
/// One NLCU: active TCP connections.
pub const NLCU_TCP_ACTIVE: f64 = 100_000.0;
/// One NLCU: new UDP flows a second.
pub const NLCU_UDP_NEW_PER_SECOND: f64 = 400.0;
/// One NLCU: active UDP flows.
pub const NLCU_UDP_ACTIVE: f64 = 50_000.0;

/// NAT gateway, per hour.
pub const NAT_GATEWAY_HOUR: f64 = 0.045;
/// NAT gateway, per GB processed.
pub const NAT_GATEWAY_GB: f64 = 0.045;

/// A public IPv4 address (an elastic IP, or one a launch template asks
/// for), per hour.
pub const PUBLIC_IPV4_HOUR: f64 = 0.005;
/// Data out to the Internet, per GB (first 10 TB a month).
pub const INTERNET_OUT_GB: f64 = 0.09;
/// Data between two zones of one region, per GB, charged on each side.
pub const CROSS_ZONE_GB_EACH_WAY: f64 = 0.01;
/// gp3 storage, per GB-month.
pub const GP3_GB_MONTH: f64 = 0.08;
/// The root volume natbake's instances boot from, in GB.
pub const ROOT_VOLUME_GB: f64 = 8.0;

/// Traffic to the Internet from an instance of fewer than 32 vCPUs, at most.
pub const INTERNET_GBPS_BELOW_32_VCPUS: f64 = 5.0;
/// What one NAT gateway carries at most.
pub const NAT_GATEWAY_GBPS: f64 = 100.0;

/// An instance type the plan can price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceType {
    pub name: &'static str,
    pub arch: Arch,
    /// On-demand, Linux, per hour.
    pub hour: f64,
    /// Sustained network bandwidth; more only in bursts.
    pub baseline_gbps: f64,
    /// Burst bandwidth ("up to").
    pub burst_gbps: f64,
}

const fn t(
    name: &'static str,
    arch: Arch,
    hour: f64,
    baseline_gbps: f64,
    burst_gbps: f64,
) -> InstanceType {
    InstanceType {
        name,
        arch,
        hour,
        baseline_gbps,
        burst_gbps,
    }
}

/// The types natbake suggests or defaults to, smallest first per family.
pub const INSTANCE_TYPES: &[InstanceType] = &[
    t("t4g.nano", Arch::Arm64, 0.0042, 0.032, 5.0),
    t("t4g.micro", Arch::Arm64, 0.0084, 0.064, 5.0),
    t("t4g.small", Arch::Arm64, 0.0168, 0.128, 5.0),
    t("t4g.medium", Arch::Arm64, 0.0336, 0.256, 5.0),
    t("t3.nano", Arch::X86_64, 0.0052, 0.032, 5.0),
    t("t3.micro", Arch::X86_64, 0.0104, 0.064, 5.0),
    t("t3.small", Arch::X86_64, 0.0208, 0.128, 5.0),
    t("t3.medium", Arch::X86_64, 0.0416, 0.256, 5.0),
    t("c6gn.medium", Arch::Arm64, 0.0432, 1.6, 16.0),
    t("c6gn.large", Arch::Arm64, 0.0864, 3.0, 25.0),
    t("c6gn.xlarge", Arch::Arm64, 0.1728, 6.3, 25.0),
    t("c5n.large", Arch::X86_64, 0.108, 3.0, 25.0),
    t("c5n.xlarge", Arch::X86_64, 0.216, 5.0, 25.0),
];

/// The priced type called `name`, if there is one.
pub fn instance_type(name: &str) -> Option<&'static InstanceType> {
    INSTANCE_TYPES.iter().find(|t| t.name == name)
}

/// GB a month that `gbps`, held all month, carries.
pub fn gb_per_month(gbps: f64) -> f64 {
    gbps / 8.0 * 3600.0 * HOURS_PER_MONTH
}
