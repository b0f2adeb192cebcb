//! What natbake knows about each operating system it renders for: how it
//! installs packages, where its images come from, who logs in to build
//! them, how the boot step runs at every boot.
//!
//! Every fact that differs between distributions lives here, so that the
//! renderers ask an [`Os`] instead of matching on it themselves.

use crate::render::escape::ere_literal;
use crate::site::{Arch, Partition};

/// Operating system of the image the artifacts are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    AmazonLinux2023,
    Ubuntu2404,
    Debian12,
    /// The legacy AWS NAT AMI (`amzn-ami-vpc-nat`): Amazon Linux 1, no systemd.
    AmznAmiVpcNat,
}

/// How the boot step runs at every boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// natbake's own systemd unit.
    SystemdUnit,
    /// The AWS NAT AMI's upstart job, which natbake points at its script
    /// (see [`Os::legacy_takeover`]).
    AmiNatJob,
}

/// A command the boot step needs and the package that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub command: &'static str,
    pub package: &'static str,
}

/// The tools the boot step needs and how this OS installs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packages {
    pub needs: &'static [Need],
    /// The install command, to which the missing package names are appended.
    pub install: &'static str,
    /// Run once before the first install (refreshing package lists), if
    /// this package manager needs it.
    pub refresh: Option<&'static str>,
}

/// The image a Packer build starts from: an AMI name pattern and its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceImage {
    pub name: &'static str,
    pub owner: &'static str,
}

const fn need(command: &'static str, package: &'static str) -> Need {
    Need { command, package }
}

const AL2023_NEEDS: &[Need] = &[
    need("iptables-restore", "iptables-nft"),
    need("curl", "curl-minimal"),
    need("logger", "util-linux"),
    need("python3", "python3"),
    need("ipset", "ipset"),
];
const DEBIAN_NEEDS: &[Need] = &[
    need("iptables-restore", "iptables"),
    need("curl", "curl"),
    need("logger", "bsdutils"),
    need("python3", "python3"),
    need("ipset", "ipset"),
];
/// A warm standby's daemons, by os (see docs/failover.md for how each
/// was checked). Fedora's packaging, which AL2023 follows, ships
/// conntrackd in `conntrack-tools`; Debian and Ubuntu split it out.
const AL2023_STANDBY_NEEDS: &[Need] = &[
    need("keepalived", "keepalived"),
    need("conntrackd", "conntrack-tools"),
];
const DEBIAN_STANDBY_NEEDS: &[Need] = &[
    need("keepalived", "keepalived"),
    need("conntrackd", "conntrackd"),
];
const AMZN1_NEEDS: &[Need] = &[
    need("iptables-restore", "iptables"),
    need("curl", "curl"),
    need("logger", "util-linux"),
];

impl Os {
    /// Every accepted spelling, in the order the docs list them.
    pub const ALL: [Os; 4] = [
        Os::AmazonLinux2023,
        Os::Ubuntu2404,
        Os::Debian12,
        Os::AmznAmiVpcNat,
    ];

    /// The name used in the spec.
    pub fn name(self) -> &'static str {
        match self {
            Os::AmazonLinux2023 => "amazon-linux-2023",
            Os::Ubuntu2404 => "ubuntu-24.04",
            Os::Debian12 => "debian-12",
            Os::AmznAmiVpcNat => "amzn-ami-vpc-nat",
        }
    }

    /// How the boot step runs at every boot.
    pub fn boot(self) -> Boot {
        match self {
            Os::AmznAmiVpcNat => Boot::AmiNatJob,
            Os::AmazonLinux2023 | Os::Ubuntu2404 | Os::Debian12 => Boot::SystemdUnit,
        }
    }

    /// Whether the image boots with systemd (all but the legacy NAT AMI).
    pub fn has_systemd(self) -> bool {
        self.boot() == Boot::SystemdUnit
    }

    /// The packages behind the commands the boot step needs, and how the
    /// package manager installs them.
    pub fn packages(self) -> Packages {
        match self {
            Os::AmazonLinux2023 => Packages {
                needs: AL2023_NEEDS,
                install: "dnf install -y",
                refresh: None,
            },
            Os::Ubuntu2404 | Os::Debian12 => Packages {
                needs: DEBIAN_NEEDS,
                // Another package manager (cloud-init, unattended-upgrades)
                // may hold the dpkg lock: wait for it, but not for ever.
                install: "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=\"${NATBAKE_WAIT_TIMEOUT:-120}\" install -y -q --no-install-recommends",
                refresh: Some(
                    "apt-get -o DPkg::Lock::Timeout=\"${NATBAKE_WAIT_TIMEOUT:-120}\" update -q",
                ),
            },
            Os::AmznAmiVpcNat => Packages {
                needs: AMZN1_NEEDS,
                install: "yum install -y",
                refresh: None,
            },
        }
    }

    /// The packages of a warm standby's keepalived and conntrackd in the
    /// os's own repositories; `None` where it cannot run them (the legacy
    /// NAT AMI has no systemd, and no floating interface).
    pub fn standby_needs(self) -> Option<&'static [Need]> {
        match self {
            Os::AmazonLinux2023 => Some(AL2023_STANDBY_NEEDS),
            Os::Ubuntu2404 | Os::Debian12 => Some(DEBIAN_STANDBY_NEEDS),
            Os::AmznAmiVpcNat => None,
        }
    }

    /// The image a build for `arch` in `partition` starts from.
    ///
    /// Amazon-owned images are found through the owner alias `amazon`,
    /// which names Amazon's publishing account in every partition.
    /// Canonical publishes from one account per partition. Debian's
    /// account is known for the standard partition only, and validation
    /// refuses Debian elsewhere. AL2023 is published for several kernel
    /// lines at once (6.1, 6.12, ...), on the same days: a `kernel-*`
    /// pattern would pick one by chance. The legacy AMI never had arm64,
    /// which validation refuses too.
    pub fn source_image(self, arch: Arch, partition: Partition) -> SourceImage {
        // Canonical's account in the European Sovereign Cloud is not
        // known to natbake: validation refuses Ubuntu builds there, as it
        // refuses Debian's outside the standard partition.
        let canonical = match partition {
            Partition::Aws | Partition::EuropeanSovereignCloud => "099720109477",
            Partition::China => "837727238323",
            Partition::GovCloud => "513442679011",
        };
        let (name, owner) = match (self, arch) {
            (Os::AmazonLinux2023, Arch::X86_64) => {
                ("al2023-ami-2023.*-kernel-6.1-x86_64", "amazon")
            }
            (Os::AmazonLinux2023, Arch::Arm64) => ("al2023-ami-2023.*-kernel-6.1-arm64", "amazon"),
            (Os::Ubuntu2404, Arch::X86_64) => (
                "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
                canonical,
            ),
            (Os::Ubuntu2404, Arch::Arm64) => (
                "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-*",
                canonical,
            ),
            (Os::Debian12, Arch::X86_64) => ("debian-12-amd64-*", "136693071363"),
            (Os::Debian12, Arch::Arm64) => ("debian-12-arm64-*", "136693071363"),
            (Os::AmznAmiVpcNat, _) => ("amzn-ami-vpc-nat-*-x86_64-ebs", "amazon"),
        };
        SourceImage { name, owner }
    }

    /// The public SSM parameter that names the newest official image for
    /// `arch`, which a stack can launch with the rendered user data.
    /// `None` for the legacy NAT AMI: AWS publishes no such parameter for
    /// it, and it is deprecated, so its stack needs a baked image id.
    /// Amazon publishes AL2023 per kernel line like the Packer pattern
    /// above; Canonical per release, architecture and volume type;
    /// Debian per release and architecture.
    pub fn official_image_parameter(self, arch: Arch) -> Option<&'static str> {
        Some(match (self, arch) {
            (Os::AmazonLinux2023, Arch::X86_64) => {
                "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64"
            }
            (Os::AmazonLinux2023, Arch::Arm64) => {
                "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-arm64"
            }
            (Os::Ubuntu2404, Arch::X86_64) => {
                "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
            }
            (Os::Ubuntu2404, Arch::Arm64) => {
                "/aws/service/canonical/ubuntu/server/24.04/stable/current/arm64/hvm/ebs-gp3/ami-id"
            }
            (Os::Debian12, Arch::X86_64) => "/aws/service/debian/release/12/latest/amd64",
            (Os::Debian12, Arch::Arm64) => "/aws/service/debian/release/12/latest/arm64",
            (Os::AmznAmiVpcNat, _) => return None,
        })
    }

    /// Whether the source lookup must also see deprecated images: only the
    /// legacy NAT AMI, which AWS deprecated and no longer updates.
    pub fn image_is_deprecated(self) -> bool {
        self == Os::AmznAmiVpcNat
    }

    /// A shell command that prints every installed package as
    /// `name<TAB>version<TAB>architecture` lines (the version with its
    /// epoch when it has one), for the image's package list.
    pub fn package_query(self) -> &'static str {
        match self {
            Os::AmazonLinux2023 | Os::AmznAmiVpcNat => {
                r#"rpm -qa --queryformat '%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\n'"#
            }
            // Packages removed but not purged are still known to dpkg.
            Os::Ubuntu2404 | Os::Debian12 => {
                r#"dpkg-query --show --showformat '${db:Status-Status}\t${Package}\t${Version}\t${Architecture}\n' | awk -F '\t' -v OFS='\t' '$1 == "installed" { print $2, $3, $4 }'"#
            }
        }
    }

    /// The user Packer logs in as on the build instance.
    pub fn ssh_user(self) -> &'static str {
        match self {
            Os::AmazonLinux2023 | Os::AmznAmiVpcNat => "ec2-user",
            Os::Ubuntu2404 => "ubuntu",
            Os::Debian12 => "admin",
        }
    }

    /// Shell lines that take NAT over from the image's own boot pieces so
    /// that natbake's script, installed at `script`, is the only one; `None`
    /// where the image has none (all but the legacy AMI).
    pub fn legacy_takeover(self, script: &str) -> Option<String> {
        (self.boot() == Boot::AmiNatJob).then(|| amzn_ami_vpc_nat_takeover(script))
    }
}

/// The legacy AMI's own boot script, which its upstart job runs.
const AMI_SCRIPT: &str = "/usr/sbin/configure-pat.sh";

/// Takes NAT over from the AWS NAT AMI (package `aws-vpc-nat`). Left
/// alone, its `/etc/sysctl.d/10-nat-settings.conf` switches forwarding on
/// early in boot, before any ruleset, and its upstart job
/// `/etc/init/nat.conf` runs `/usr/sbin/configure-pat.sh`, which adds a
/// MASQUERADE rule for everything leaving eth0 ahead of natbake's chains,
/// hiding every forwarded client's address from the private host. So: the
/// AMI's job stays the one boot path but runs natbake's script, forwarding
/// stays off until that script turns it on, rc.local runs neither script,
/// and yum leaves the package alone so that an update cannot bring its
/// files back. Every step writes a fixed result, so a second run changes
/// nothing.
fn amzn_ami_vpc_nat_takeover(script: &str) -> String {
    let ami_script = AMI_SCRIPT;
    let ami_script_re = ere_literal(AMI_SCRIPT);
    // A line of rc.local that runs either script.
    let either_script_re = match (script.rsplit_once('/'), AMI_SCRIPT.rsplit_once('/')) {
        (Some((dir, file)), Some((ami_dir, ami_file))) if file == ami_file => {
            format!(
                "({}|{})/{}",
                ere_literal(dir),
                ere_literal(ami_dir),
                ere_literal(file)
            )
        }
        _ => format!("({}|{ami_script_re})", ere_literal(script)),
    };
    format!(
        r#"AMI_JOB=/etc/init/nat.conf
if ! grep -Eqs '^exec[[:space:]]+{ami_script_re}[[:space:]]*$' "$AMI_JOB"; then
  echo "natbake: $AMI_JOB does not run {ami_script}; this is not the AWS NAT AMI (amzn-ami-vpc-nat) that the spec names." >&2
  exit 1
fi
cat >{ami_script} <<'EOF'
#!/bin/bash
# natbake: the AWS NAT AMI's boot job (/etc/init/nat.conf) runs this file;
# natbake's script configures NAT and port forwarding in its place.
exec {script} "$@"
EOF
chmod 0755 {ami_script}
cat >/etc/sysctl.d/10-nat-settings.conf <<'EOF'
# natbake: the AWS NAT AMI's settings, but IP forwarding stays off here;
# {script} switches it on once its ruleset is loaded.
net.ipv4.ip_forward = 0
net.ipv4.conf.eth0.send_redirects = 0
EOF
if [ -f /etc/rc.d/rc.local ]; then
  sed -i -E '\#^[[:space:]]*{either_script_re}[[:space:]]*$#d' /etc/rc.d/rc.local
fi
if [ -f /etc/yum.conf ]; then
  awk '
    function add() {{ if (!added) print "exclude=aws-vpc-nat"; added = 1 }}
    /^\[/ {{ if (main) add(); main = ($0 == "[main]") }}
    main && /^exclude[[:space:]]*=/ {{
      if ($0 !~ /[=[:space:],]aws-vpc-nat([[:space:],]|$)/) $0 = $0 " aws-vpc-nat"
      added = 1
    }}
    {{ print }}
    END {{ if (main) add() }}
  ' /etc/yum.conf >/etc/yum.conf.natbake
  cat /etc/yum.conf.natbake >/etc/yum.conf
  rm -f /etc/yum.conf.natbake
fi
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_owners_follow_the_partition() {
        // Canonical's accounts, as Canonical's own documentation lists them.
        for (partition, owner) in [
            (Partition::Aws, "099720109477"),
            (Partition::China, "837727238323"),
            (Partition::GovCloud, "513442679011"),
        ] {
            for arch in Arch::ALL {
                assert_eq!(Os::Ubuntu2404.source_image(arch, partition).owner, owner);
                // The alias `amazon` resolves in every partition.
                assert_eq!(
                    Os::AmazonLinux2023.source_image(arch, partition).owner,
                    "amazon"
                );
            }
            assert_eq!(
                Os::AmznAmiVpcNat
                    .source_image(Arch::X86_64, partition)
                    .owner,
                "amazon"
            );
        }
        assert_eq!(
            Os::Debian12.source_image(Arch::Arm64, Partition::Aws).owner,
            "136693071363"
        );
    }

    #[test]
    fn image_names_name_the_architecture() {
        for os in [Os::AmazonLinux2023, Os::Ubuntu2404, Os::Debian12] {
            let x86 = os.source_image(Arch::X86_64, Partition::Aws).name;
            let arm = os.source_image(Arch::Arm64, Partition::Aws).name;
            assert!(x86.contains("x86_64") || x86.contains("amd64"), "{x86}");
            assert!(arm.contains("arm64"), "{arm}");
        }
    }

    #[test]
    fn official_image_parameters_are_public_and_name_the_architecture() {
        for os in Os::ALL {
            for arch in Arch::ALL {
                let p = os.official_image_parameter(arch);
                assert_eq!(p.is_none(), os == Os::AmznAmiVpcNat, "{}", os.name());
                if let Some(p) = p {
                    assert!(p.starts_with("/aws/service/"), "{p}");
                    let wanted = match arch {
                        Arch::X86_64 if os == Os::AmazonLinux2023 => "x86_64",
                        Arch::X86_64 => "amd64",
                        Arch::Arm64 => "arm64",
                    };
                    assert!(p.contains(wanted), "{p}");
                }
            }
        }
    }

    #[test]
    fn only_the_legacy_ami_boots_without_systemd_and_is_taken_over() {
        for os in Os::ALL {
            let legacy = os == Os::AmznAmiVpcNat;
            assert_eq!(os.has_systemd(), !legacy, "{}", os.name());
            assert_eq!(os.image_is_deprecated(), legacy, "{}", os.name());
            assert_eq!(
                os.legacy_takeover("/usr/local/sbin/configure-pat.sh")
                    .is_some(),
                legacy,
                "{}",
                os.name()
            );
        }
    }

    #[test]
    fn the_takeover_hands_the_amis_job_to_the_script_it_is_given() {
        let t = Os::AmznAmiVpcNat
            .legacy_takeover("/opt/nb/configure-pat.sh")
            .unwrap();
        assert!(
            t.contains("\nexec /opt/nb/configure-pat.sh \"$@\"\n"),
            "{t}"
        );
        assert!(
            t.contains("cat >/usr/sbin/configure-pat.sh <<'EOF'\n"),
            "{t}"
        );
        // rc.local may run either script; neither line may stay.
        assert!(
            t.contains(r"(/opt/nb|/usr/sbin)/configure-pat\.sh[[:space:]]*$#d"),
            "{t}"
        );
        assert!(t.contains(r"'^exec[[:space:]]+/usr/sbin/configure-pat\.sh[[:space:]]*$'"));
        // A script of another name: both paths in full.
        let t = Os::AmznAmiVpcNat
            .legacy_takeover("/opt/nb/boot.sh")
            .unwrap();
        assert!(
            t.contains(r"(/opt/nb/boot\.sh|/usr/sbin/configure-pat\.sh)[[:space:]]*$#d"),
            "{t}"
        );
    }

    #[test]
    fn every_os_installs_the_tools_the_boot_step_needs() {
        for os in Os::ALL {
            let p = os.packages();
            let commands: Vec<&str> = p.needs.iter().map(|n| n.command).collect();
            // python3 reads the nf_tables generation for the health check
            // and runs the AWS client, and ipset counts bytes per forward;
            // the legacy AMI's iptables does not use nf_tables, its ipset
            // predates counters, and AWS features are refused there.
            let want: &[&str] = if os.has_systemd() {
                &["iptables-restore", "curl", "logger", "python3", "ipset"]
            } else {
                &["iptables-restore", "curl", "logger"]
            };
            assert_eq!(commands, want, "{}", os.name());
            // apt needs its lists before the first install; the others do not.
            let apt = p.install.contains("apt-get");
            assert_eq!(p.refresh.is_some(), apt, "{}", os.name());
        }
    }
}
