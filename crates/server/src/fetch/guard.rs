//! The fetch guard: which addresses a fetch from a URL may reach. Deny by default: loopback,
//! private, link-local (the cloud metadata address among them), shared (CGNAT), unspecified,
//! documentation, benchmarking, multicast, broadcast and reserved ranges, and their IPv6 forms,
//! including IPv4 addresses embedded in IPv6 ones (mapped, compatible, NAT64, 6to4). Spellings
//! (decimal, octal, hex, short forms, trailing dots, IDNA digits) are undone by the URL parser
//! before an address is looked at; host names are vetted on the addresses they resolve to,
//! which are then the addresses connected to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// What the operator opened (`[fetch] allow`): address ranges and host names.
#[derive(Debug, Clone, Default)]
pub struct Allow {
    nets: Vec<IpNet>,
    hosts: Vec<String>,
}

impl Allow {
    /// Parses entries: a CIDR range (`10.1.0.0/16`), one address (`10.1.2.3`, `::1`), or a host
    /// name (`files.internal`, matched exactly, case-insensitively, without a trailing dot).
    pub fn parse(entries: &[String]) -> Result<Allow, String> {
        let mut allow = Allow::default();
        for e in entries {
            let e = e.trim();
            if let Ok(net) = e.parse::<IpNet>() {
                allow.nets.push(net);
            } else if let Ok(ip) = e.parse::<IpAddr>() {
                allow.nets.push(IpNet::from(ip));
            } else if !e.is_empty() && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
                allow.hosts.push(normal_host(e));
            } else {
                return Err(format!(
                    "[fetch] allow: '{e}' is neither an address range nor a host name"
                ));
            }
        }
        Ok(allow)
    }

    /// Whether a host name was opened by name.
    pub fn host(&self, host: &str) -> bool {
        let h = normal_host(host);
        self.hosts.contains(&h)
    }

    fn addr(&self, ip: IpAddr) -> bool {
        let v4 = embedded_v4(ip);
        self.nets
            .iter()
            .any(|n| n.contains(&ip) || v4.is_some_and(|v| n.contains(&IpAddr::V4(v))))
    }

    /// Why `ip` may not be fetched from, unless the operator opened it.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        if self.addr(ip) { None } else { denied(ip) }
    }
}

fn normal_host(h: &str) -> String {
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// The IPv4 address an IPv6 address carries (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`,
/// NAT64 `64:ff9b::a.b.c.d`), or the address itself when it is IPv4.
fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v) => Some(v),
        IpAddr::V6(v) => {
            let s = v.segments();
            let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
            let mapped = s[..5] == [0; 5] && s[5] == 0xffff;
            let compatible = s[..6] == [0; 6];
            let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1);
            (mapped || compatible || nat64).then_some(tail)
        }
    }
}

/// Why an address is denied by default, or `None` for a public address.
pub fn denied(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v) => denied_v4(v),
        IpAddr::V6(v) => denied_v6(v),
    }
}

fn denied_v4(v: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = v.octets();
    Some(match (a, b, c) {
        (0, _, _) => "an unspecified ('this network') address",
        (127, _, _) => "a loopback address",
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => "a private address",
        (169, 254, _) => "a link-local address (cloud metadata among them)",
        (100, 64..=127, _) => "a shared (carrier-grade NAT) address",
        (192, 0, 0) | (192, 88, 99) => "a reserved protocol address",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation address",
        (198, 18..=19, _) => "a benchmarking address",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved or broadcast address",
        _ => return None,
    })
}

fn denied_v6(v: Ipv6Addr) -> Option<&'static str> {
    if v.is_unspecified() {
        return Some("an unspecified address");
    }
    if v.is_loopback() {
        return Some("a loopback address");
    }
    if let Some(v4) = embedded_v4(IpAddr::V6(v)) {
        return Some(denied_v4(v4).unwrap_or("an IPv4 address embedded in IPv6 (fetch it as IPv4)"));
    }
    let s = v.segments();
    Some(match s[0] {
        0xfc00..=0xfdff => "a unique local (private) address",
        0xfe80..=0xfebf => "a link-local address",
        0xfec0..=0xfeff => "a site-local address",
        0xff00..=0xffff => "a multicast address",
        0x2002 => "a 6to4 address",
        0x2001 if s[1] == 0 => "a Teredo address",
        0x2001 if s[1] == 0xdb8 => "a documentation address",
        0x0100 if s[1..4] == [0, 0, 0] => "a discard address",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        denied(s.parse().expect("address")).is_some()
    }

    #[test]
    fn ranges_are_denied_and_public_addresses_pass() {
        for a in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2002:7f00:1::",
            "2001:0:4136:e378::1",
            "2001:db8::1",
            "100::1",
            // A public IPv4 address in IPv6 clothing: fetch it as IPv4.
            "::ffff:8.8.8.8",
        ] {
            assert!(refused(a), "{a} must be refused");
        }
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "172.15.255.255",
            "100.128.0.1",
            "100.63.255.255",
            "192.169.0.1",
            "169.253.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
        ] {
            assert!(!refused(a), "{a} must pass");
        }
    }

    #[test]
    fn the_allowlist_opens_ranges_and_names() {
        let allow = Allow::parse(&["127.0.0.0/8".into(), "Files.Internal.".into(), "fd00::5".into()]).expect("parse");
        assert_eq!(allow.refusal("127.0.0.1".parse().expect("ip")), None);
        assert_eq!(allow.refusal("::ffff:127.0.0.1".parse().expect("ip")), None);
        assert_eq!(allow.refusal("fd00::5".parse().expect("ip")), None);
        assert!(allow.refusal("fd00::6".parse().expect("ip")).is_some());
        assert!(allow.refusal("10.0.0.1".parse().expect("ip")).is_some());
        assert!(allow.host("files.internal"));
        assert!(allow.host("FILES.internal."));
        assert!(!allow.host("other.internal"));
        assert!(Allow::parse(&["not a host!".into()]).is_err());
    }
}
