//! Egress policy: which addresses a delivery may connect to (the SSRF guard).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused: the rule's name, as shown to users in errors and attempts.
pub type Rule = &'static str;

/// An IPv4 or IPv6 network, e.g. `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_match(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_match(u128::from(net), u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_match(net: u128, ip: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = bits - prefix;
    (net >> shift) == (ip >> shift)
}

impl std::str::FromStr for Cidr {
    type Err = String;

    /// `a.b.c.d/n`, `x::y/n`, or a bare address (a single host).
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim_matches(|c| c == '[' || c == ']')
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}` has a prefix length outside 0..={max}"))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Cidr {
    Cidr {
        addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        prefix,
    }
}

const fn v6(segments: [u16; 8], prefix: u8) -> Cidr {
    let [a, b, c, d, e, f, g, h] = segments;
    Cidr {
        addr: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
        prefix,
    }
}

/// IPv4 ranges no delivery may reach, most specific first, each with the rule it breaks.
const BLOCKED_V4: &[(Cidr, Rule)] = &[
    (v4(255, 255, 255, 255, 32), "broadcast address"),
    (
        v4(0, 0, 0, 0, 8),
        "unspecified or 'this network' address (0.0.0.0/8)",
    ),
    (v4(10, 0, 0, 0, 8), "private address (10.0.0.0/8)"),
    (
        v4(100, 64, 0, 0, 10),
        "carrier-grade NAT address (100.64.0.0/10)",
    ),
    (v4(127, 0, 0, 0, 8), "loopback address (127.0.0.0/8)"),
    (
        v4(169, 254, 0, 0, 16),
        "link-local address (169.254.0.0/16, includes cloud metadata)",
    ),
    (v4(172, 16, 0, 0, 12), "private address (172.16.0.0/12)"),
    (
        v4(192, 0, 0, 0, 24),
        "IETF protocol assignment (192.0.0.0/24)",
    ),
    (v4(192, 0, 2, 0, 24), "documentation address (192.0.2.0/24)"),
    (
        v4(192, 88, 99, 0, 24),
        "6to4 relay anycast (192.88.99.0/24)",
    ),
    (v4(192, 168, 0, 0, 16), "private address (192.168.0.0/16)"),
    (
        v4(198, 18, 0, 0, 15),
        "benchmarking address (198.18.0.0/15)",
    ),
    (
        v4(198, 51, 100, 0, 24),
        "documentation address (198.51.100.0/24)",
    ),
    (
        v4(203, 0, 113, 0, 24),
        "documentation address (203.0.113.0/24)",
    ),
    (v4(224, 0, 0, 0, 4), "multicast address (224.0.0.0/4)"),
    (v4(240, 0, 0, 0, 4), "reserved address (240.0.0.0/4)"),
];

/// IPv6 ranges no delivery may reach (forms that embed an IPv4 address are judged by it).
const BLOCKED_V6: &[(Cidr, Rule)] = &[
    (
        v6([0, 0, 0, 0, 0, 0, 0, 0], 128),
        "unspecified address (::)",
    ),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback address (::1)"),
    (
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "local-use NAT64 address (64:ff9b:1::/48)",
    ),
    (
        v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        "discard-only address (100::/64)",
    ),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32),
        "Teredo address (2001::/32)",
    ),
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        "documentation address (2001:db8::/32)",
    ),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        "IETF protocol assignment (2001::/23)",
    ),
    (
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "unique local address (fc00::/7)",
    ),
    (
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        "link-local address (fe80::/10)",
    ),
    (
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "site-local address (fec0::/10)",
    ),
    (
        v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        "multicast address (ff00::/8)",
    ),
];

/// The IPv4 address an IPv6 address carries, for the forms that route to it: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4
/// (`2002:AABB:CCDD::/16`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail()),
        // `::` and `::1` are judged as IPv6 above; other `::a.b.c.d` forms carry IPv4.
        [0, 0, 0, 0, 0, 0, _, _] if u128::from(ip) > 1 => Some(tail()),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail()),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// The rule `ip` breaks, if any, before any opt-in is considered.
pub fn blocked_by(ip: IpAddr) -> Option<Rule> {
    match ip {
        IpAddr::V4(v4) => BLOCKED_V4
            .iter()
            .find(|(net, _)| net.contains(IpAddr::V4(v4)))
            .map(|(_, rule)| *rule),
        IpAddr::V6(v6) => {
            if let Some(inner) = embedded_v4(v6) {
                return blocked_by(IpAddr::V4(inner));
            }
            BLOCKED_V6
                .iter()
                .find(|(net, _)| net.contains(IpAddr::V6(v6)))
                .map(|(_, rule)| *rule)
        }
    }
}

/// Which addresses deliveries may reach: every public address, plus what the operator opted
/// into for local development and tests (`ETP_ALLOW_PRIVATE_TARGETS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allowed_nets: Vec<Cidr>,
    allowed_hosts: Vec<String>,
}

impl EgressPolicy {
    /// Parses a comma-separated list of CIDRs, addresses and host names.
    pub fn with_allowed(list: &str) -> Result<Self, String> {
        let mut policy = Self::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let looks_like_ip = item.contains('/')
                || item.contains(':')
                || item.chars().all(|c| c.is_ascii_digit() || c == '.');
            if looks_like_ip {
                policy.allowed_nets.push(item.parse()?);
            } else {
                policy.allowed_hosts.push(item.to_ascii_lowercase());
            }
        }
        Ok(policy)
    }

    /// Whether anything beyond public addresses is allowed (worth a loud log line).
    pub fn is_relaxed(&self) -> bool {
        !self.allowed_nets.is_empty() || !self.allowed_hosts.is_empty()
    }

    /// The opt-in as configured, for the start-up warning.
    pub fn describe(&self) -> String {
        let nets = self
            .allowed_nets
            .iter()
            .map(|c| format!("{}/{}", c.addr, c.prefix));
        nets.chain(self.allowed_hosts.iter().cloned())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed_hosts.contains(&host)
    }

    /// `Err(rule)` when `ip`, reached through `host`, is refused.
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), Rule> {
        match blocked_by(ip) {
            None => Ok(()),
            Some(_) if self.host_allowed(host) => Ok(()),
            Some(_) if self.allowed_nets.iter().any(|n| n.contains(ip)) => Ok(()),
            Some(rule) => Err(rule),
        }
    }

    /// Checks a host name before any lookup: names that always mean this machine are refused
    /// outright (their addresses are checked again, when connecting).
    pub fn check_name(&self, host: &str) -> Result<(), Rule> {
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        let local = name == "localhost"
            || name.ends_with(".localhost")
            || name.ends_with(".local")
            || name.ends_with(".internal");
        if local && !self.host_allowed(&name) {
            Err("host name for this machine or a private network")
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_special_range_is_refused() {
        for addr in [
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
        ] {
            assert!(blocked_by(ip(addr)).is_some(), "{addr} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(blocked_by(ip(addr)), None, "{addr} is public");
        }
    }

    #[test]
    fn rules_name_the_range() {
        assert_eq!(
            blocked_by(ip("169.254.169.254")),
            Some("link-local address (169.254.0.0/16, includes cloud metadata)")
        );
        assert_eq!(
            blocked_by(ip("::ffff:127.0.0.1")),
            Some("loopback address (127.0.0.0/8)")
        );
    }

    #[test]
    fn the_opt_in_allows_only_what_it_names() {
        let p = EgressPolicy::with_allowed("127.0.0.1/32, receiver.test, fd00::/8").unwrap();
        assert!(p.is_relaxed());
        assert_eq!(p.check("x", ip("127.0.0.1")), Ok(()));
        assert!(p.check("x", ip("127.0.0.2")).is_err());
        assert_eq!(p.check("receiver.test", ip("10.0.0.1")), Ok(()));
        assert_eq!(p.check("x", ip("fd00::5")), Ok(()));
        assert!(p.check("x", ip("169.254.169.254")).is_err());
        assert!(EgressPolicy::default().check("x", ip("127.0.0.1")).is_err());
        assert!(EgressPolicy::with_allowed("10.0.0.0/33").is_err());
    }

    #[test]
    fn local_names_are_refused_before_lookup() {
        let p = EgressPolicy::default();
        for host in [
            "localhost",
            "LOCALHOST.",
            "api.localhost",
            "printer.local",
            "db.internal",
        ] {
            assert!(p.check_name(host).is_err(), "{host}");
        }
        assert_eq!(p.check_name("example.com"), Ok(()));
        let relaxed = EgressPolicy::with_allowed("localhost").unwrap();
        assert_eq!(relaxed.check_name("localhost"), Ok(()));
    }
}
