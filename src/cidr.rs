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
    /// A network written in code; `base` must have no host bits.
    pub const fn new(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Cidr {
        let base = u32::from_be_bytes([a, b, c, d]);
        assert!(prefix <= 32 && base & !mask(prefix) == 0);
        Cidr { base, prefix }
    }

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

    /// The addresses a host can have, in order: all but the network and
    /// broadcast addresses, except in a /31 or /32, which have no such
    /// addresses to spare (RFC 3021).
    pub fn hosts(self) -> impl Iterator<Item = Ipv4Addr> {
        let last = self.base | !mask(self.prefix);
        let (first, last) = if self.prefix >= 31 {
            (self.base, last)
        } else {
            (self.base + 1, last - 1)
        };
        (first..=last).map(Ipv4Addr::from)
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

/// For each network, the index of a network listed before it that it
/// overlaps, if there is one; `None` for networks that overlap nothing
/// listed earlier.
///
/// Sorted by base address, networks either nest or are disjoint, so those
/// containing the current one form a chain of at most 33 (one per prefix
/// length): a sweep with that chain costs `O(n log n)`, where comparing
/// every pair would cost `O(n²)`. A network flagged because it overlaps an
/// earlier one stays off the chain, as it is refused anyway; every pair of
/// overlapping networks still yields at least one flag, on the later one.
pub fn overlaps_earlier(nets: &[Cidr]) -> Vec<Option<usize>> {
    let mut order: Vec<usize> = (0..nets.len()).collect();
    order.sort_by_key(|&i| (nets[i], i));
    let mut found: Vec<Option<usize>> = vec![None; nets.len()];
    let mut chain: Vec<usize> = Vec::new();
    for i in order {
        let net = nets[i];
        while chain
            .last()
            .is_some_and(|&top| !nets[top].contains(net.network()))
        {
            chain.pop();
        }
        for &outer in &chain {
            let (earlier, later) = (outer.min(i), outer.max(i));
            let slot = &mut found[later];
            *slot = Some(slot.map_or(earlier, |e| e.min(earlier)));
        }
        if found[i].is_none() {
            chain.push(i);
        }
    }
    found
}

const fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
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
    fn overlaps_with_earlier_networks_are_found_by_the_sweep() {
        let nets: Vec<Cidr> = [
            "10.0.1.0/24",
            "10.1.0.0/16",
            "10.0.0.0/16",
            "10.0.1.0/25",
            "10.2.0.0/16",
            "10.1.0.0/16",
        ]
        .iter()
        .map(|t| Cidr::parse(t).unwrap())
        .collect();
        assert_eq!(
            overlaps_earlier(&nets),
            [None, None, Some(0), Some(0), None, Some(1)]
        );
        // The same answer as comparing every pair, for every order of a
        // nested and duplicated set.
        let mut rng = 0x2545_f491_u64;
        for _ in 0..200 {
            let mut shuffled = nets.clone();
            for k in (1..shuffled.len()).rev() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                shuffled.swap(k, (rng % (k as u64 + 1)) as usize);
            }
            let found = overlaps_earlier(&shuffled);
            for (j, n) in shuffled.iter().enumerate() {
                if let Some(e) = found[j] {
                    assert!(e < j && shuffled[e].overlaps(n), "{shuffled:?}");
                }
                for i in 0..j {
                    if shuffled[i].overlaps(n) {
                        assert!(
                            found[i].is_some() || found[j].is_some(),
                            "{shuffled:?}: {i} and {j} overlap, neither is flagged"
                        );
                    }
                }
            }
        }
    }

    /// 200,000 networks, mostly disjoint, with some that contain others:
    /// comparing each with those before it would take 2·10¹⁰ comparisons
    /// (minutes); the sweep takes well under a second, also in a debug
    /// build.
    #[test]
    fn the_overlap_sweep_is_near_linear() {
        let nets: Vec<Cidr> = (0..200_000u32)
            .map(|i| {
                // Distinct /28 blocks of 10.0.0.0/8 in scrambled order, and
                // every thousandth the /16 around the one before it.
                let block = 10 << 24 | ((i.wrapping_sub(i % 1000 / 999) * 7919) % (1 << 20)) << 4;
                if i % 1000 == 999 {
                    Cidr {
                        base: block & mask(16),
                        prefix: 16,
                    }
                } else {
                    Cidr {
                        base: block,
                        prefix: 28,
                    }
                }
            })
            .collect();
        let start = std::time::Instant::now();
        let found = overlaps_earlier(&nets);
        let took = start.elapsed();
        assert!((999..nets.len()).step_by(1000).all(|i| found[i].is_some()));
        assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    }

    #[test]
    fn hosts_leave_out_network_and_broadcast_except_in_tiny_networks() {
        let hosts = |text: &str| -> Vec<String> {
            let cidr = Cidr::parse(text).unwrap();
            cidr.hosts().map(|a| a.to_string()).collect()
        };
        assert_eq!(hosts("10.0.0.0/30"), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(hosts("10.0.0.4/31"), ["10.0.0.4", "10.0.0.5"]);
        assert_eq!(hosts("10.0.0.7/32"), ["10.0.0.7"]);
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert_eq!(all.hosts().next(), Some(Ipv4Addr::new(0, 0, 0, 1)));
        let net = Cidr::parse("10.0.0.0/16").unwrap();
        assert_eq!(net.hosts().count(), 65534);
        assert_eq!(net.hosts().last(), Some(Ipv4Addr::new(10, 0, 255, 254)));
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
