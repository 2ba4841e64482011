//! `trusted_network`: the address ranges that may join the cluster.

use std::fmt;
use std::net::IpAddr;

/// An IPv4 or IPv6 network: an address and a prefix length. A single
/// address is a network of one (/32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    base: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `10.0.0.0/24`, `fd00::/64`, `127.0.0.1` or `[::1]`.
    pub fn parse(text: &str) -> Result<Network, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let base: IpAddr = addr.parse().map_err(|_| format!("{text:?} is not an IP address or network (a.b.c.d/n, x::/n)"))?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
            },
        };
        Ok(Network { base: mask(base, prefix), prefix })
    }

    /// Whether `ip` is inside. An IPv4-mapped IPv6 address counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.base.is_ipv4() && mask(ip, self.prefix) == self.base
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a) & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(bits.into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a) & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(bits.into())
        }
    }
}

/// The configured trusted networks; empty means "any host may join"
/// (the stock module's behaviour).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedNetworks(pub Vec<Network>);

impl TrustedNetworks {
    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether `ip` may join: always when none are set.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.0.is_empty() || self.0.iter().any(|n| n.contains(ip))
    }

    /// Whether a node with these addresses may be listed: it needs at least
    /// one address, and every one inside (a name that resolves partly
    /// outside is refused).
    pub fn allows_all(&self, ips: &[IpAddr]) -> bool {
        self.0.is_empty() || (!ips.is_empty() && ips.iter().all(|ip| self.allows(*ip)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_and_single_addresses() {
        let n = Network::parse("10.0.0.0/24").unwrap();
        assert!(n.contains(ip("10.0.0.200")));
        assert!(!n.contains(ip("10.0.1.1")));
        assert!(!n.contains(ip("::1")));
        let one = Network::parse("127.0.0.3").unwrap();
        assert!(one.contains(ip("127.0.0.3")) && !one.contains(ip("127.0.0.4")));
        assert_eq!(Network::parse("192.168.1.77/16").unwrap().to_string(), "192.168.0.0/16");
        let all = Network::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("8.8.8.8")));
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let n = Network::parse("fd00:1::/32").unwrap();
        assert!(n.contains(ip("fd00:1:ffff::1")));
        assert!(!n.contains(ip("fd00:2::1")));
        assert!(Network::parse("[::1]").unwrap().contains(ip("::1")));
        assert!(Network::parse("127.0.0.0/8").unwrap().contains(ip("::ffff:127.0.0.9")));
        assert!(Network::parse("::/0").unwrap().contains(ip("2001:db8::1")));
    }

    #[test]
    fn bad_networks_are_refused() {
        for bad in ["", "10.0.0.0/33", "fd00::/129", "10.0.0/8", "host.example", "10.0.0.0/x", "10.0.0.0/-1"] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn trusted_networks() {
        let none = TrustedNetworks::default();
        assert!(none.allows(ip("203.0.113.9")) && none.allows_all(&[]));
        let t = TrustedNetworks(vec![Network::parse("10.0.0.0/8").unwrap(), Network::parse("fd00::/8").unwrap()]);
        assert!(t.allows(ip("10.1.2.3")) && t.allows(ip("fd12::1")) && !t.allows(ip("192.168.0.1")));
        assert!(t.allows_all(&[ip("10.0.0.1"), ip("fd00::1")]));
        assert!(!t.allows_all(&[ip("10.0.0.1"), ip("192.168.0.1")]));
        assert!(!t.allows_all(&[]));
    }
}
