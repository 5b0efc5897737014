//! The source of a connection, as the per-address limits see it
//! (PROTOCOL.md §13.5): an IPv4 address as it is, an IPv6 address by its
//! /64 prefix.
//!
//! One IPv6 host is usually given a whole /64 and can pick any of its 2^64
//! addresses for each connection; counting per full address would give
//! such a host 2^64 separate budgets. An IPv4-mapped IPv6 address
//! (`::ffff:a.b.c.d`, as seen by a dual-stack listener) is the IPv4 address
//! it carries, so one host is one source whichever socket it arrives on.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The key every per-address limit counts by: an IPv4 address, or an IPv6
/// /64 prefix (the lower 64 bits cleared).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Source(IpAddr);

impl Source {
    /// The source a connection from `ip` counts against.
    pub(crate) fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let [a, b, c, d, ..] = v6.segments();
                Source(IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0)))
            }
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(s: &str) -> Source {
        Source::of(s.parse().unwrap())
    }

    #[test]
    fn ipv6_is_grouped_by_its_64_prefix_and_ipv4_is_kept_whole() {
        // Any two addresses in one /64 are one source.
        assert_eq!(of("2001:db8:1:2::1"), of("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_eq!(of("2001:db8:1:2:abcd::7"), of("2001:db8:1:2::"));
        assert_eq!(of("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
        // A neighbouring /64 is another source.
        assert_ne!(of("2001:db8:1:2::1"), of("2001:db8:1:3::1"));
        assert_ne!(of("2001:db8:1:2::1"), of("2001:db9:1:2::1"));
        // IPv4 addresses are not grouped.
        assert_ne!(of("127.0.0.1"), of("127.0.0.2"));
        assert_eq!(of("192.0.2.7").to_string(), "192.0.2.7");
        // A v4-mapped address is the IPv4 address, not the ::ffff:0:0/64.
        assert_eq!(of("::ffff:192.0.2.7"), of("192.0.2.7"));
        assert_ne!(of("::ffff:192.0.2.7"), of("::ffff:192.0.2.8"));
    }
}
