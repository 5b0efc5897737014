//! Server addresses as the known-servers file records them: `host:port`.

use core::fmt;
use core::str::FromStr;
use std::net::Ipv6Addr;

use crate::error::Error;

/// Longest host name accepted (the DNS limit).
const MAX_HOST_LEN: usize = 253;

/// A server's `host:port`, normalised so that one server has one spelling:
/// host names are lowercased, IPv6 addresses are written in their canonical
/// form inside brackets (`[::1]:7878`). The port is part of the identity:
/// two servers on one host are two entries.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ServerAddr {
    host: String,
    port: u16,
}

impl ServerAddr {
    /// A server address from its parts. `host` is a DNS name, an IPv4
    /// address, or an IPv6 address with or without brackets.
    pub fn new(host: &str, port: u16) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidServerAddress { input: format!("{host}:{port}"), reason };
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if let Ok(v6) = bare.parse::<Ipv6Addr>() {
            return Ok(ServerAddr { host: format!("[{v6}]"), port });
        }
        if bare.is_empty() {
            return Err(invalid("the host is empty"));
        }
        if bare.len() > MAX_HOST_LEN {
            return Err(invalid("the host name is longer than 253 characters"));
        }
        // Letters, digits, '-', '.' and '_': enough for DNS names and IPv4,
        // and nothing that could break a line of the known-servers file.
        if !bare.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
            return Err(invalid("the host may only hold letters, digits, '-', '.' and '_'"));
        }
        Ok(ServerAddr { host: bare.to_ascii_lowercase(), port })
    }

    /// The host as written in the address (IPv6 in brackets).
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl FromStr for ServerAddr {
    type Err = Error;

    /// Parses `host:port` or `[ipv6]:port`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidServerAddress { input: s.chars().take(300).collect(), reason };
        let (host, port) = s.rsplit_once(':').ok_or(invalid("expected host:port"))?;
        if host.contains(':') && !host.starts_with('[') {
            return Err(invalid("the host holds ':'; an IPv6 address goes in brackets, as in [::1]:7878"));
        }
        let port: u16 = port.parse().map_err(|_| invalid("the port is not a number from 1 to 65535"))?;
        if port == 0 {
            return Err(invalid("the port is not a number from 1 to 65535"));
        }
        ServerAddr::new(host, port)
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl fmt::Debug for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerAddr({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        let cases = [
            ("Chat.Example.ORG:7878", "chat.example.org:7878"),
            ("127.0.0.1:1", "127.0.0.1:1"),
            ("[::1]:7878", "[::1]:7878"),
            ("[2001:DB8:0:0::1]:443", "[2001:db8::1]:443"),
            ("localhost:65535", "localhost:65535"),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<ServerAddr>().unwrap().to_string(), want);
        }
        assert_eq!(ServerAddr::new("::1", 9).unwrap().to_string(), "[::1]:9");
    }

    #[test]
    fn rejects() {
        for bad in
            ["", "host", "host:", ":80", "host:0", "host:65536", "ho st:80", "a#b:80", "::1:80", "[::1:80", "h\n:1"]
        {
            assert!(bad.parse::<ServerAddr>().is_err(), "{bad:?}");
        }
    }
}
