//! AWS identifiers: regions, instance types, subnet and account ids, tags,
//! AMI names and VPC blocks, each in the form AWS accepts.

use super::word;
use crate::cidr::Cidr;
use crate::site::{Arch, Partition};

/// A region name, such as `eu-central-1`, with the partition it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    pub partition: Partition,
}

/// Why text is not a region.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not an AWS region such as `us-east-1`")]
pub struct RegionProblem {
    pub text: String,
}

impl Region {
    /// Parses the shape every region name has (`us-east-1`, `eu-central-2`,
    /// `us-gov-west-1`, `ap-southeast-5`, and the European Sovereign
    /// Cloud's `eusc-de-east-1`), so that new regions are accepted without
    /// a list to keep up to date.
    pub fn parse(text: &str) -> Result<Region, RegionProblem> {
        let parts: Vec<&str> = text.split('-').collect();
        let ok = parts.len() >= 3
            && (word(parts[0], 2, 2, |c| c.is_ascii_lowercase()) || parts[0] == "eusc")
            && parts[1..parts.len() - 1]
                .iter()
                .all(|p| word(p, 1, 16, |c| c.is_ascii_lowercase()))
            && word(parts[parts.len() - 1], 1, 2, |c| c.is_ascii_digit());
        if !ok {
            return Err(RegionProblem { text: text.into() });
        }
        Ok(Region {
            name: text.into(),
            partition: Partition::of(text),
        })
    }
}

/// The instance type natbake builds with when the spec names none: the
/// smallest current burstable type of the architecture.
pub fn default_instance_type(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "t3.micro",
        Arch::Arm64 => "t4g.micro",
    }
}

/// Why text is not an instance type; the example fits the architecture.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not an EC2 instance type such as `{example}`")]
pub struct InstanceTypeProblem {
    pub text: String,
    pub example: &'static str,
}

/// An instance type such as `t3.micro` or `c7gn.medium`: family, `.`,
/// size. Whether AWS offers it in a region is left to AWS.
pub fn instance_type(text: &str, arch: Arch) -> Result<String, InstanceTypeProblem> {
    let ok = text.split_once('.').is_some_and(|(family, size)| {
        word(family, 1, 16, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
        }) && word(size, 1, 16, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit()
        })
    });
    if ok {
        Ok(text.into())
    } else {
        Err(InstanceTypeProblem {
            text: text.into(),
            example: default_instance_type(arch),
        })
    }
}

/// Instance families whose instances EC2's CloudWatch recover action
/// takes, as EC2's user guide lists them ("Recover your instance":
/// simplified automatic recovery, which the recover action also covers,
/// and the families the action takes with instance store volumes). Metal
/// sizes are excluded for all. Newer families may recover too: EC2 says
/// which with `aws ec2 describe-instance-types --filters
/// Name=auto-recovery-supported,Values=true`, which natbake cannot ask.
pub const RECOVERABLE_FAMILIES: &[&str] = &[
    // General purpose.
    "a1", "m3", "m4", "m5", "m5a", "m5n", "m5zn", "m6a", "m6g", "m6i", "t1", "t2", "t3", "t3a",
    "t4g", // Compute optimized.
    "c3", "c4", "c5", "c5a", "c5n", "c6a", "c6g", "c6gn", "c6i", "hpc6a", "c7g",
    // Memory optimized.
    "r3", "r4", "r5", "r5a", "r5b", "r5n", "r6g", "r6i", "x1", "x1e", "x2idn", "x2iedn",
    // Accelerated computing.
    "g3", "g5g", "inf1", "p2", "p3", "vt1",
];

/// Whether EC2's recover action is documented for `instance_type` (a
/// valid type: family, `.`, size): a family of [`RECOVERABLE_FAMILIES`],
/// or a virtualized high-memory `u-*` type, in a size that is not metal.
pub fn recoverable(instance_type: &str) -> bool {
    let Some((family, size)) = instance_type.split_once('.') else {
        return false;
    };
    !size.starts_with("metal")
        && (RECOVERABLE_FAMILIES.contains(&family) || family.starts_with("u-"))
}

/// Why text is not an AMI name prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "an AMI name prefix is 1 to 100 letters, digits, `.`, `_` or `-` (natbake appends `-` and a timestamp)"
)]
pub struct AmiNameProblem;

/// The start of the AMI's name. AWS allows a few more characters in AMI
/// names; these are the ones that need no quoting anywhere natbake writes
/// the name.
pub fn ami_name_prefix(text: &str) -> Result<String, AmiNameProblem> {
    if word(text, 1, 100, |c| {
        c.is_ascii_alphanumeric() || "._-".contains(c)
    }) {
        Ok(text.into())
    } else {
        Err(AmiNameProblem)
    }
}

/// Why text is not an account id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not an AWS account id: 12 digits, written in quotes so that leading zeros survive"
)]
pub struct AccountIdProblem {
    pub text: String,
}

/// A 12-digit account id. YAML reads an unquoted id as a number and drops
/// its leading zeros, which then leaves fewer than 12 digits here.
pub fn account_id(text: &str) -> Result<String, AccountIdProblem> {
    if word(text, 12, 12, |c| c.is_ascii_digit()) {
        Ok(text.into())
    } else {
        Err(AccountIdProblem { text: text.into() })
    }
}

/// Why text is not a subnet id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a subnet id such as `subnet-0abc1234`")]
pub struct SubnetIdProblem {
    pub text: String,
}

/// A subnet id: `subnet-` and 1 to 17 lower-case hex digits (8 in old
/// ids, 17 in current ones).
pub fn subnet_id(text: &str) -> Result<String, SubnetIdProblem> {
    let ok = text.strip_prefix("subnet-").is_some_and(|h| {
        word(h, 1, 17, |c| {
            c.is_ascii_hexdigit() && !c.is_ascii_uppercase()
        })
    });
    if ok {
        Ok(text.into())
    } else {
        Err(SubnetIdProblem { text: text.into() })
    }
}

/// Why text cannot be the key of an extra tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagKeyProblem {
    #[error(
        "`{key}` is not a usable tag key: 1-128 letters, digits, spaces or `+-=._:/@`, not starting with `aws:`"
    )]
    NotUsable { key: String },
    #[error("the tag `{key}` is set by natbake itself")]
    SetByNatbake { key: String },
}

/// A tag key in the characters every AWS service accepts; `aws:` keys
/// belong to AWS, and `Name` and `natbake:` keys to natbake.
pub fn tag_key(key: &str) -> Result<String, TagKeyProblem> {
    if !word(key, 1, 128, tag_char) || key.to_ascii_lowercase().starts_with("aws:") {
        Err(TagKeyProblem::NotUsable { key: key.into() })
    } else if key == "Name" || key.starts_with("natbake:") {
        Err(TagKeyProblem::SetByNatbake { key: key.into() })
    } else {
        Ok(key.into())
    }
}

/// Why text cannot be a tag's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a tag value is up to 256 letters, digits, spaces or `+-=._:/@`")]
pub struct TagValueProblem;

/// A tag value in the characters every AWS service accepts; it may be empty.
pub fn tag_value(value: &str) -> Result<String, TagValueProblem> {
    if word(value, 0, 256, tag_char) {
        Ok(value.into())
    } else {
        Err(TagValueProblem)
    }
}

fn tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " +-=._:/@".contains(c)
}

/// VPC sizes AWS allows, as prefix lengths: /16 (65,536 addresses) to /28 (16).
const VPC_PREFIXES: std::ops::RangeInclusive<u8> = 16..=28;

/// Ranges AWS never gives a VPC: they mean something else to every host,
/// so a target there would not be a host in a private subnet.
/// 100.64.0.0/10 (shared address space) is allowed: AWS accepts it for VPC
/// blocks, and it is commonly used for secondary blocks.
const NOT_VPC_RANGES: &[(Cidr, &str)] = &[
    (Cidr::new(0, 0, 0, 0, 8), "\"this network\" addresses"),
    (Cidr::new(127, 0, 0, 0, 8), "loopback"),
    (
        Cidr::new(169, 254, 0, 0, 16),
        "link-local, where instance metadata and the Amazon DNS server answer",
    ),
    (Cidr::new(224, 0, 0, 0, 4), "multicast"),
    (
        Cidr::new(240, 0, 0, 0, 4),
        "reserved, with the broadcast address",
    ),
];

/// Why text is not a CIDR block a VPC can have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VpcBlockProblem {
    /// Not a canonical network at all; the message comes from [`Cidr::parse`].
    #[error("{0}")]
    NotANetwork(String),
    #[error(
        "`{block}` lies in {range} ({what}), which AWS never assigns to a VPC; use a range from RFC 1918 (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16) or the VPC's own public block"
    )]
    Reserved {
        block: Cidr,
        range: Cidr,
        what: &'static str,
    },
    #[error(
        "`{block}` is a /{} block; AWS allows VPC CIDR blocks from /{} (65,536 addresses) to /{} (16 addresses)",
        block.prefix(), VPC_PREFIXES.start(), VPC_PREFIXES.end()
    )]
    Size { block: Cidr },
}

/// One of a VPC's IPv4 CIDR blocks.
pub fn vpc_block(text: &str) -> Result<Cidr, VpcBlockProblem> {
    let block = Cidr::parse(text).map_err(VpcBlockProblem::NotANetwork)?;
    if let Some(&(range, what)) = NOT_VPC_RANGES.iter().find(|(r, _)| r.overlaps(&block)) {
        return Err(VpcBlockProblem::Reserved { block, range, what });
    }
    if !VPC_PREFIXES.contains(&block.prefix()) {
        return Err(VpcBlockProblem::Size { block });
    }
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_parse_with_their_partition() {
        for (name, partition) in [
            ("us-east-1", Partition::Aws),
            ("ap-southeast-5", Partition::Aws),
            ("eu-central-2", Partition::Aws),
            ("cn-northwest-1", Partition::China),
            ("us-gov-west-1", Partition::GovCloud),
            ("eusc-de-east-1", Partition::EuropeanSovereignCloud),
        ] {
            assert_eq!(
                Region::parse(name),
                Ok(Region {
                    name: name.into(),
                    partition
                })
            );
        }
        for bad in [
            "",
            "us-east",
            "useast1",
            "US-EAST-1",
            "us-east-123",
            "usa-east-1",
            "eusa-de-east-1",
            "us--1",
            "us-east-1 ",
        ] {
            assert_eq!(
                Region::parse(bad),
                Err(RegionProblem { text: bad.into() }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn instance_types_are_family_dot_size() {
        for ok in ["t3.micro", "c7gn.medium", "u-6tb1.metal", "m5.24xlarge"] {
            assert_eq!(instance_type(ok, Arch::X86_64).as_deref(), Ok(ok));
        }
        for bad in ["t3", "t3.", ".micro", "T3.micro", "t3.micro.x", "t3 .micro"] {
            assert!(instance_type(bad, Arch::X86_64).is_err(), "{bad}");
        }
        assert_eq!(
            instance_type("t4g", Arch::Arm64).unwrap_err().to_string(),
            "`t4g` is not an EC2 instance type such as `t4g.micro`"
        );
    }

    #[test]
    fn ids_have_the_form_aws_gives_them() {
        assert_eq!(account_id("012345678901").as_deref(), Ok("012345678901"));
        for bad in ["12345678901", "1234567890123", "12345678901a", ""] {
            assert!(account_id(bad).is_err(), "{bad}");
        }
        for ok in ["subnet-0abc1234", "subnet-0123456789abcdef0", "subnet-a"] {
            assert_eq!(subnet_id(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "subnet-",
            "subnet-0ABC1234",
            "subnet-0123456789abcdef01",
            "sn-0abc",
            "subnet-xyz",
        ] {
            assert!(subnet_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ami_name_prefixes_need_no_quoting() {
        assert!(ami_name_prefix("natbake-corp_prod.v2").is_ok());
        assert!(ami_name_prefix(&"a".repeat(100)).is_ok());
        for bad in ["", "a b", "a/b", "a$b", &"a".repeat(101)] {
            assert_eq!(ami_name_prefix(bad), Err(AmiNameProblem), "{bad}");
        }
    }

    #[test]
    fn tags_keep_to_what_every_service_accepts() {
        assert_eq!(tag_key("team:owner @x").as_deref(), Ok("team:owner @x"));
        for bad in ["", "AWS:x", "aws:cloudformation", "a|b", &"k".repeat(129)] {
            assert_eq!(
                tag_key(bad),
                Err(TagKeyProblem::NotUsable { key: bad.into() }),
                "{bad}"
            );
        }
        for ours in ["Name", "natbake:site"] {
            assert_eq!(
                tag_key(ours),
                Err(TagKeyProblem::SetByNatbake { key: ours.into() })
            );
        }
        assert_eq!(tag_value("").as_deref(), Ok(""));
        assert!(tag_value(&"v".repeat(256)).is_ok());
        assert_eq!(tag_value(&"v".repeat(257)), Err(TagValueProblem));
        assert_eq!(tag_value("a\"b"), Err(TagValueProblem));
    }

    #[test]
    fn vpc_blocks_are_sizes_and_ranges_aws_assigns() {
        for ok in [
            "10.0.0.0/16",
            "100.64.0.0/16",
            "192.168.0.0/28",
            "203.0.113.0/24",
        ] {
            assert_eq!(vpc_block(ok).map(|c| c.to_string()).as_deref(), Ok(ok));
        }
        assert_eq!(
            vpc_block("10.0.0.1/16"),
            Err(VpcBlockProblem::NotANetwork(
                "`10.0.0.1/16` is not a network address; did you mean `10.0.0.0/16`?".into()
            ))
        );
        assert_eq!(
            vpc_block("169.254.0.0/16").unwrap_err().to_string(),
            "`169.254.0.0/16` lies in 169.254.0.0/16 (link-local, where instance metadata and the Amazon DNS server answer), which AWS never assigns to a VPC; use a range from RFC 1918 (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16) or the VPC's own public block"
        );
        for reserved in [
            "0.0.0.0/16",
            "127.0.0.0/16",
            "239.255.255.0/24",
            "255.255.255.240/28",
        ] {
            assert!(
                matches!(vpc_block(reserved), Err(VpcBlockProblem::Reserved { .. })),
                "{reserved}"
            );
        }
        assert_eq!(
            vpc_block("10.0.0.0/15").unwrap_err().to_string(),
            "`10.0.0.0/15` is a /15 block; AWS allows VPC CIDR blocks from /16 (65,536 addresses) to /28 (16 addresses)"
        );
        assert!(matches!(
            vpc_block("10.0.1.0/29"),
            Err(VpcBlockProblem::Size { .. })
        ));
    }

    #[test]
    fn recoverable_types_are_the_documented_families_but_metal() {
        for t in [
            "t3.micro",
            "t4g.micro",
            "c5n.large",
            "m6i.2xlarge",
            "x2iedn.xlarge",
            "u-6tb1.112xlarge",
        ] {
            assert!(recoverable(t), "{t}");
        }
        for t in [
            "c5d.large",
            "m5d.xlarge",
            "i3.large",
            "m5.metal",
            "c6g.metal",
            "t3",
            "z1d.large",
        ] {
            assert!(!recoverable(t), "{t}");
        }
    }
}
