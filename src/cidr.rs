//! IPv4 networks in CIDR notation, parsed strictly.
//!
//! Only the canonical form is accepted (`10.0.0.0/16`, never `10.0.0.1/16`
//! or `010.0.0.0/16`), because every rendered artifact repeats the text and
//! iptables, AWS and humans should all read the same network.

use std::fmt;
use std::net::Ipv4Addr;

/// An IPv4 network: a base address with all host bits zero, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    base: u32,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` in canonical form; the error says what to write instead.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let Some((addr, prefix)) = text.split_once('/') else {
            return Err(match addr_or_none(text) {
                Some(_) => format!(
                    "`{text}` is an address, not a network; write `{text}/32` for this one address"
                ),
                None => format!("`{text}` is not an IPv4 network such as `10.0.0.0/16`"),
            });
        };
        let Some(addr) = addr_or_none(addr) else {
            return Err(format!(
                "`{text}` does not start with an IPv4 address (four numbers 0-255 without leading zeros)"
            ));
        };
        let prefix: u8 = match prefix.parse() {
            Ok(p)
                if p <= 32
                    && !prefix.starts_with('+')
                    && (prefix == "0" || !prefix.starts_with('0')) =>
            {
                p
            }
            _ => {
                return Err(format!(
                    "`{text}` has prefix length `{prefix}`; it must be a number from 0 to 32"
                ));
            }
        };
        let base = u32::from(addr) & mask(prefix);
        let cidr = Cidr { base, prefix };
        if base != u32::from(addr) {
            return Err(format!(
                "`{text}` is not a network address; did you mean `{cidr}`?"
            ));
        }
        Ok(cidr)
    }

    /// The network with prefix 0, which matches every address.
    pub fn is_any(&self) -> bool {
        self.prefix == 0
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The first address (the network address).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    /// The last address (the broadcast address).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base | !mask(self.prefix))
    }

    /// Whether `addr` lies inside this network.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == self.base
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let shorter = self.prefix.min(other.prefix);
        self.base & mask(shorter) == other.base & mask(shorter)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// Parses a dotted-quad address; the standard parser already rejects leading
/// zeros, so `010.0.0.1` (octal to some tools) never sneaks through.
pub fn addr_or_none(text: &str) -> Option<Ipv4Addr> {
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_networks_parse() {
        let c = Cidr::parse("10.0.0.0/16").unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/16");
        assert_eq!(c.network(), Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 0, 255, 255));
        assert!(c.contains(Ipv4Addr::new(10, 0, 1, 25)));
        assert!(!c.contains(Ipv4Addr::new(10, 1, 0, 0)));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().is_any());
        assert_eq!(Cidr::parse("203.0.113.110/32").unwrap().prefix(), 32);
    }

    #[test]
    fn host_bits_get_a_suggestion() {
        let err = Cidr::parse("10.0.0.1/16").unwrap_err();
        assert!(err.contains("did you mean `10.0.0.0/16`?"), "{err}");
    }

    #[test]
    fn malformed_networks_are_refused() {
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/016",
            "010.0.0.0/8",
            "10.0.0/8",
            "10.0.0.0/+8",
            "x/8",
            "",
            "10.0.0.0/8/8",
            " 10.0.0.0/8",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad} should be refused");
        }
        assert!(
            Cidr::parse("10.0.0.5")
                .unwrap_err()
                .contains("`10.0.0.5/32`")
        );
    }

    #[test]
    fn overlap_is_symmetric() {
        let a = Cidr::parse("10.0.0.0/16").unwrap();
        let b = Cidr::parse("10.0.5.0/24").unwrap();
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
    }
}
