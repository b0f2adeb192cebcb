//! Kernel settings for the sysctl.d file.
//!
//! A sysctl.d line has no quoting, so keys and values are restricted to
//! characters that cannot end the line or start another setting.

use super::without_leading_zeros;

/// Why text is not a kernel setting natbake writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SysctlKeyProblem {
    #[error(
        "`{key}` is not a sysctl key; keys use lower-case letters, digits, `_` and `.`, such as `net.netfilter.nf_conntrack_max`"
    )]
    NotAKey { key: String },
    #[error(
        "`{key}` switches packet forwarding or ICMP redirects, which natbake manages: configure-pat.sh switches IPv4 forwarding on only after the ruleset is loaded, keeps redirects off, and forwards no IPv6; remove this key"
    )]
    Managed { key: String },
    #[error(
        "`{key}` is not a kernel setting: keys start with one of {}; a key the instance's kernel lacks fails configure-pat.sh at every boot",
        roots()
    )]
    NoSuchRoot { key: String },
    #[error(
        "`{key}` names the interface `{iface}`; interface names differ between images (eth0, ens5, enX0) and a key for an interface the instance lacks fails configure-pat.sh at every boot; use `all` or `default` instead of `{iface}`"
    )]
    Interface { key: String, iface: String },
}

/// Why text is not a value natbake writes for a kernel setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SysctlValueProblem {
    #[error(
        "`{value}` is not a sysctl value: use a number or words of letters, digits, `_.:-` separated by single spaces"
    )]
    NotAValue { value: String },
    #[error(
        "`{word}` has a leading zero, which the kernel reads as an octal number; write the number without it"
    )]
    LeadingZero { word: String },
}

/// The folders of `/proc/sys` on Linux: a key outside them exists on no
/// kernel.
const SYSCTL_ROOTS: &[&str] = &[
    "abi", "crypto", "debug", "dev", "fs", "kernel", "net", "sunrpc", "user", "vm",
];

fn roots() -> String {
    let roots: Vec<String> = SYSCTL_ROOTS.iter().map(|r| format!("`{r}.`")).collect();
    roots.join(", ")
}

/// A key such as `net.netfilter.nf_conntrack_max` that the spec may set.
///
/// configure-pat.sh applies the settings with `sysctl -p` and fails the
/// boot (forwarding off) on a key the kernel lacks, so a key that cannot
/// exist on the instance is refused here, where that can be known.
pub fn sysctl_key(key: &str) -> Result<String, SysctlKeyProblem> {
    let owned = || key.to_owned();
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
        || key.starts_with('.')
        || key.ends_with('.')
        || key.contains("..")
    {
        return Err(SysctlKeyProblem::NotAKey { key: owned() });
    }
    if is_managed(key) {
        return Err(SysctlKeyProblem::Managed { key: owned() });
    }
    let parts: Vec<&str> = key.split('.').collect();
    if !SYSCTL_ROOTS.contains(&parts[0]) {
        return Err(SysctlKeyProblem::NoSuchRoot { key: owned() });
    }
    // net.ipv4.conf.eth0.rp_filter, net.ipv6.neigh.ens5.…: per-interface keys.
    if let ["net", "ipv4" | "ipv6", "conf" | "neigh", iface, _, ..] = parts.as_slice()
        && !matches!(*iface, "all" | "default" | "lo")
    {
        return Err(SysctlKeyProblem::Interface {
            key: owned(),
            iface: (*iface).to_owned(),
        });
    }
    Ok(owned())
}

/// Kernel settings that natbake's boot script owns or that would undo what
/// it guarantees: forwarding of any address family and ICMP redirects.
/// IPv4 forwarding in particular must not come from sysctl.d:
/// systemd-sysctl applies that folder early at boot, before the ruleset is
/// loaded. IPv6 forwarding would route IPv6 with no natbake rule at all.
fn is_managed(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    key == "net.ipv4.ip_forward"
        || (key.starts_with("net.")
            && matches!(
                last,
                "forwarding"
                    | "mc_forwarding"
                    | "send_redirects"
                    | "accept_redirects"
                    | "secure_redirects"
            ))
}

/// A value: a number, or words separated by single spaces
/// (`4096 87380 6291456`, `bbr`). Numbers with a leading zero are refused,
/// since the kernel reads some of them as octal.
pub fn sysctl_value(value: &str) -> Result<String, SysctlValueProblem> {
    let words_ok = !value.is_empty()
        && value.split(' ').all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
        });
    if !words_ok {
        return Err(SysctlValueProblem::NotAValue {
            value: value.to_owned(),
        });
    }
    if let Some(word) = value
        .split(' ')
        .find(|w| without_leading_zeros(w).is_some())
    {
        return Err(SysctlValueProblem::LeadingZero {
            word: word.to_owned(),
        });
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_keys_parse() {
        for key in [
            "net.netfilter.nf_conntrack_max",
            "net.ipv4.conf.all.rp_filter",
            "net.ipv4.conf.lo.rp_filter",
            "net.ipv4.neigh.default.gc_thresh3",
            "net.ipv4.conf.default",
            "vm.swappiness",
            "kernel.pid_max",
        ] {
            assert_eq!(sysctl_key(key).as_deref(), Ok(key));
        }
    }

    #[test]
    fn malformed_keys_are_refused() {
        for key in [
            "", ".net.a", "net.a.", "net..a", "Net.a", "net.a b", "net/ipv4", "net.a\n",
        ] {
            assert_eq!(
                sysctl_key(key),
                Err(SysctlKeyProblem::NotAKey { key: key.into() }),
                "{key:?}"
            );
        }
    }

    #[test]
    fn forwarding_and_redirects_belong_to_natbake() {
        for key in [
            "net.ipv4.ip_forward",
            "net.ipv4.conf.all.forwarding",
            "net.ipv4.conf.eth0.forwarding",
            "net.ipv6.conf.default.forwarding",
            "net.ipv4.conf.default.mc_forwarding",
            "net.ipv4.conf.all.send_redirects",
            "net.ipv6.conf.all.accept_redirects",
            "net.ipv4.conf.all.secure_redirects",
        ] {
            assert_eq!(
                sysctl_key(key),
                Err(SysctlKeyProblem::Managed { key: key.into() }),
                "{key}"
            );
        }
        // Only the network stack's forwarding is natbake's.
        assert_eq!(sysctl_key("vm.forwarding").as_deref(), Ok("vm.forwarding"));
    }

    #[test]
    fn keys_that_exist_on_no_instance_are_refused() {
        assert_eq!(
            sysctl_key("netfilter.nf_conntrack_max")
                .unwrap_err()
                .to_string(),
            "`netfilter.nf_conntrack_max` is not a kernel setting: keys start with one of `abi.`, `crypto.`, `debug.`, `dev.`, `fs.`, `kernel.`, `net.`, `sunrpc.`, `user.`, `vm.`; a key the instance's kernel lacks fails configure-pat.sh at every boot"
        );
        assert_eq!(
            sysctl_key("net.ipv6.neigh.ens5.base_reachable_time_ms"),
            Err(SysctlKeyProblem::Interface {
                key: "net.ipv6.neigh.ens5.base_reachable_time_ms".into(),
                iface: "ens5".into()
            })
        );
    }

    #[test]
    fn values_are_numbers_or_plain_words() {
        for value in ["262144", "0", "4096 87380 6291456", "bbr", "1-2", "a:b.c_d"] {
            assert_eq!(sysctl_value(value).as_deref(), Ok(value));
        }
        for value in ["", " 1", "1 ", "1  2", "a;b", "$(x)", "a\nb", "1,2"] {
            assert_eq!(
                sysctl_value(value),
                Err(SysctlValueProblem::NotAValue {
                    value: value.into()
                }),
                "{value:?}"
            );
        }
        assert_eq!(
            sysctl_value("4096 0644"),
            Err(SysctlValueProblem::LeadingZero {
                word: "0644".into()
            })
        );
    }
}
