//! Listen ports, port ranges and forward targets.

use super::without_leading_zeros;
use crate::cidr::addr_or_none;
use crate::site::Ports;
use std::net::Ipv4Addr;

/// Why text is not a port or a port range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortsProblem {
    #[error(
        "`{text}` has a leading zero, which some tools read as an octal number; write `{fixed}`"
    )]
    LeadingZero { text: String, fixed: String },
    #[error("`{text}` is not a port (1-65535) or a range such as `60000-60010`")]
    NotPorts { text: String },
    #[error("the range `{text}` runs backwards; did you mean `{}`?", Ports { first: ports.last, last: ports.first })]
    Backwards { text: String, ports: Ports },
    #[error(
        "port 22 cannot be forwarded: it would take SSH to the NAT instance itself away from these sources; pick another listen port and forward it to the target's port 22"
    )]
    Ssh,
}

/// A port from 1 to 65535, in decimal without a sign or leading zeros.
fn port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.starts_with('0') {
        return None;
    }
    text.parse().ok().filter(|&n| n >= 1)
}

/// A port (`51532`) or an inclusive range (`60000-60010`); surrounding
/// spaces are ignored.
pub fn ports(text: &str) -> Result<Ports, PortsProblem> {
    let text = text.trim();
    let parsed = match text.split_once('-') {
        Some((a, b)) => port(a)
            .zip(port(b))
            .map(|(first, last)| Ports { first, last }),
        None => port(text).map(Ports::single),
    };
    let Some(ports) = parsed else {
        return Err(match without_leading_zeros(text) {
            Some(fixed) => PortsProblem::LeadingZero {
                text: text.into(),
                fixed,
            },
            None => PortsProblem::NotPorts { text: text.into() },
        });
    };
    if ports.first > ports.last {
        return Err(PortsProblem::Backwards {
            text: text.into(),
            ports,
        });
    }
    Ok(ports)
}

/// [`ports`] that the NAT instance can listen on for a forward: never 22,
/// where the instance's own SSH answers.
pub fn listen_ports(text: &str) -> Result<Ports, PortsProblem> {
    let ports = ports(text)?;
    if ports.overlaps(&Ports::single(22)) {
        return Err(PortsProblem::Ssh);
    }
    Ok(ports)
}

/// Where a forward leads: a host, and the port there unless the forward
/// keeps the port it listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub addr: Ipv4Addr,
    pub port: Option<u16>,
}

/// Why text is not a forward's target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetProblem {
    #[error(
        "`{text}` is not a target such as `10.0.1.25:1532` (an IPv4 address, then optionally `:port`)"
    )]
    NotATarget { text: String },
    #[error("a port range is forwarded to the same ports; write `to: {addr}` without `:{port}`")]
    PortWithRange { addr: Ipv4Addr, port: String },
    #[error(
        "`{port}` has a leading zero, which some tools read as an octal number; write `{fixed}` (in `{text}`)"
    )]
    LeadingZero {
        text: String,
        port: String,
        fixed: String,
    },
    #[error("`{port}` in `{text}` is not a port (1-65535)")]
    NotAPort { text: String, port: String },
}

impl Target {
    /// Parses `10.0.1.25` or `10.0.1.25:1532`; surrounding spaces are
    /// ignored. A forward that listens on a range forwards each port to
    /// the same port, so a port here would be a mistake (`listen_is_range`).
    pub fn parse(text: &str, listen_is_range: bool) -> Result<Target, TargetProblem> {
        let text = text.trim();
        let (addr_text, port_text) = match text.rsplit_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let Some(addr) = addr_or_none(addr_text) else {
            return Err(TargetProblem::NotATarget { text: text.into() });
        };
        let Some(port_text) = port_text else {
            return Ok(Target { addr, port: None });
        };
        if listen_is_range {
            return Err(TargetProblem::PortWithRange {
                addr,
                port: port_text.into(),
            });
        }
        match port(port_text) {
            Some(n) => Ok(Target {
                addr,
                port: Some(n),
            }),
            None => Err(match without_leading_zeros(port_text) {
                Some(fixed) => TargetProblem::LeadingZero {
                    text: text.into(),
                    port: port_text.into(),
                    fixed,
                },
                None => TargetProblem::NotAPort {
                    text: text.into(),
                    port: port_text.into(),
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: u16, last: u16) -> Ports {
        Ports { first, last }
    }

    #[test]
    fn ports_and_ranges_parse() {
        assert_eq!(ports("51532"), Ok(Ports::single(51532)));
        assert_eq!(ports(" 1 "), Ok(Ports::single(1)));
        assert_eq!(ports("65535"), Ok(Ports::single(65535)));
        assert_eq!(ports("60000-60010"), Ok(range(60000, 60010)));
        assert_eq!(ports("80-80"), Ok(Ports::single(80)));
    }

    #[test]
    fn malformed_ports_are_refused() {
        for bad in [
            "", "0", "65536", "-1", "+80", "80-", "-80", "1-2-3", "http", "8 0", "1e3",
        ] {
            assert_eq!(
                ports(bad),
                Err(PortsProblem::NotPorts {
                    text: bad.trim().into()
                }),
                "{bad}"
            );
        }
        assert_eq!(
            ports("0443-0450").unwrap_err().to_string(),
            "`0443-0450` has a leading zero, which some tools read as an octal number; write `443-450`"
        );
        assert_eq!(
            ports("2000-1000").unwrap_err().to_string(),
            "the range `2000-1000` runs backwards; did you mean `1000-2000`?"
        );
    }

    #[test]
    fn ssh_cannot_be_a_listen_port() {
        assert_eq!(ports("22"), Ok(Ports::single(22)));
        for ssh in ["22", "20-30", "22-22", "1-65535"] {
            assert_eq!(listen_ports(ssh), Err(PortsProblem::Ssh), "{ssh}");
        }
        assert_eq!(listen_ports("23-30"), Ok(range(23, 30)));
        assert_eq!(listen_ports("1-21"), Ok(range(1, 21)));
    }

    #[test]
    fn targets_parse_with_or_without_a_port() {
        let addr = Ipv4Addr::new(10, 0, 1, 25);
        assert_eq!(
            Target::parse("10.0.1.25:1532", false),
            Ok(Target {
                addr,
                port: Some(1532)
            })
        );
        assert_eq!(
            Target::parse(" 10.0.1.25 ", true),
            Ok(Target { addr, port: None })
        );
    }

    #[test]
    fn malformed_targets_say_what_is_wrong() {
        let message = |text, range| Target::parse(text, range).unwrap_err().to_string();
        assert_eq!(
            message("db:1532", false),
            "`db:1532` is not a target such as `10.0.1.25:1532` (an IPv4 address, then optionally `:port`)"
        );
        assert_eq!(
            message("10.0.1.025", false),
            "`10.0.1.025` is not a target such as `10.0.1.25:1532` (an IPv4 address, then optionally `:port`)"
        );
        assert_eq!(
            message("10.0.1.25:x", true),
            "a port range is forwarded to the same ports; write `to: 10.0.1.25` without `:x`"
        );
        assert_eq!(
            message("10.0.1.25:01532", false),
            "`01532` has a leading zero, which some tools read as an octal number; write `1532` (in `10.0.1.25:01532`)"
        );
        assert_eq!(
            message("10.0.1.25:70000", false),
            "`70000` in `10.0.1.25:70000` is not a port (1-65535)"
        );
        assert_eq!(
            message("10.0.1.25:", false),
            "`` in `10.0.1.25:` is not a port (1-65535)"
        );
    }
}
