//! A validated site: the one value every renderer reads.
//!
//! Everything here has passed [`crate::validate`]: names use safe
//! characters, networks are canonical, forwards do not overlap and their
//! targets lie inside the VPC. Renderers can rely on that and stay simple.

use crate::cidr::Cidr;
use std::net::Ipv4Addr;

pub use crate::os::Os;

/// CPU architecture of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Arm64];

    /// The name used in the spec and in AMI filters.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }
}

/// An AWS partition: a set of regions with its own accounts, so its own
/// image owners. An AMI cannot be copied from one partition to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// `aws`: every region not named below.
    Aws,
    /// `aws-cn`: `cn-north-1`, `cn-northwest-1`.
    China,
    /// `aws-us-gov`: `us-gov-west-1`, `us-gov-east-1`.
    GovCloud,
    /// `aws-eusc`, the AWS European Sovereign Cloud: `eusc-de-east-1`.
    EuropeanSovereignCloud,
}

impl Partition {
    /// The partition of a region name.
    pub fn of(region: &str) -> Partition {
        if region.starts_with("cn-") {
            Partition::China
        } else if region.starts_with("us-gov-") {
            Partition::GovCloud
        } else if region.starts_with("eusc-") {
            Partition::EuropeanSovereignCloud
        } else {
            Partition::Aws
        }
    }

    /// The partition's name, as ARNs write it.
    pub fn name(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::China => "aws-cn",
            Partition::GovCloud => "aws-us-gov",
            Partition::EuropeanSovereignCloud => "aws-eusc",
        }
    }
}

/// What carries the site: natbake's NAT instance, or AWS's Network Load
/// Balancer for the forwards and NAT gateways for egress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    Instance,
    Nlb,
}

impl Deployment {
    pub const ALL: [Deployment; 2] = [Deployment::Instance, Deployment::Nlb];

    /// The name used in the spec.
    pub fn name(self) -> &'static str {
        match self {
            Deployment::Instance => "instance",
            Deployment::Nlb => "nlb",
        }
    }
}

/// Transport protocol of a forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// An inclusive range of ports; a single port has `first == last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ports {
    pub first: u16,
    pub last: u16,
}

impl Ports {
    pub fn single(port: u16) -> Ports {
        Ports {
            first: port,
            last: port,
        }
    }

    pub fn is_range(&self) -> bool {
        self.first != self.last
    }

    pub fn overlaps(&self, other: &Ports) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    /// `51532` or `60000:60010`, as iptables writes a port match.
    pub fn iptables(&self) -> String {
        if self.is_range() {
            format!("{}:{}", self.first, self.last)
        } else {
            self.first.to_string()
        }
    }
}

impl std::fmt::Display for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_range() {
            write!(f, "{}-{}", self.first, self.last)
        } else {
            write!(f, "{}", self.first)
        }
    }
}

/// One inward port forward.
#[derive(Debug, Clone)]
pub struct Forward {
    pub name: String,
    pub proto: Proto,
    /// Ports on the NAT instance.
    pub ports: Ports,
    /// Host in a private subnet.
    pub target: Ipv4Addr,
    /// Ports on the target; the same length as `ports` (equal to them for a range).
    pub target_ports: Ports,
    /// Allowed sources; exactly `[0.0.0.0/0]` when `public`.
    pub from: Vec<Cidr>,
    pub public: bool,
    pub log: bool,
    pub description: Option<String>,
}

/// Settings of the Packer AMI build, with defaults filled in.
#[derive(Debug, Clone)]
pub struct Ami {
    pub region: Option<String>,
    pub instance_type: String,
    pub name_prefix: String,
    pub copy_to: Vec<String>,
    pub share_with: Vec<String>,
    pub subnet_id: Option<String>,
    /// Extra tags, in the order written.
    pub tags: Vec<(String, String)>,
    /// Days after its build at which EC2 marks the image deprecated.
    pub deprecate_after_days: u32,
}

/// Taking over a floating network interface at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failover {
    /// Seconds to wait for the interface to become free before failing.
    pub attach_timeout: u32,
    /// A second instance that takes over in seconds (`failover.standby`).
    pub standby: Option<Standby>,
}

/// A warm standby: two instances, keepalived electing the holder of the
/// floating interface, conntrackd keeping the standby's connection table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standby {
    /// Milliseconds between two VRRP adverts of the active.
    pub advert_interval_ms: u32,
}

/// CloudWatch metrics, published by the health check once a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metrics {
    /// Also one set per forward (dimension `Forward`); each costs money.
    pub per_forward: bool,
}

/// A validated site spec.
#[derive(Debug, Clone)]
pub struct Site {
    pub name: String,
    pub description: Option<String>,
    pub os: Os,
    pub arch: Arch,
    pub vpc_cidrs: Vec<Cidr>,
    pub egress: bool,
    pub forwards: Vec<Forward>,
    /// Extra kernel settings, in the order written.
    pub sysctl: Vec<(String, String)>,
    pub ami: Ami,
    /// Set when `failover.floating_eni` is true; `None` leaves every
    /// artifact exactly as without the `failover` key.
    pub failover: Option<Failover>,
    /// Seconds between two runs of the health check; `None` when the spec
    /// turns it off (`health.enabled: false`), which leaves it out.
    pub health_interval: Option<u32>,
    /// Set when `metrics.cloudwatch` is true; `None` publishes nothing and
    /// grants no CloudWatch permission.
    pub metrics: Option<Metrics>,
    /// `instance` unless the spec says `deployment: nlb`, which renders
    /// the NLB stack instead of the instance's artifacts.
    pub deployment: Deployment,
    /// SHA-256 of the spec file's bytes, in hex.
    pub spec_sha256: String,
}

impl Site {
    /// The SSM parameter where the image build publishes each new image
    /// id (one per region), and where the stack takes its image from.
    /// Outside `/aws/`, which only AWS may write.
    pub fn image_parameter(&self) -> String {
        format!("/natbake/{}/ami-id", self.name)
    }
}
