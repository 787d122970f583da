//! Small value types shared by links, addresses and routes: interface names and MAC addresses.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// The longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// Checks an interface name as the kernel would, before any system call: not empty, at most
/// 15 bytes, no '/', ':' or white space, not "." or "..".
pub fn validate_ifname(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > IFNAME_MAX {
        "longer than 15 bytes"
    } else if name == "." || name == ".." {
        "reserved"
    } else if name.contains('/') {
        "contains '/'"
    } else if name.contains(':') {
        "contains ':'"
    } else if name.chars().any(|c| c.is_whitespace() || c == '\0') {
        "contains white space or NUL"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.into(),
        reason,
    })
}

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The all-zeros address (used by FDB default-destination entries).
    pub const ZERO: MacAddr = MacAddr([0; 6]);
    /// The broadcast address.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Builds a MAC address from a byte slice, checking its length.
    pub fn from_slice(bytes: &[u8]) -> Result<MacAddr> {
        <[u8; 6]>::try_from(bytes)
            .map(MacAddr)
            .map_err(|_| Error::InvalidArgument {
                what: "MAC address".into(),
                reason: format!("{} bytes, expected 6", bytes.len()),
            })
    }

    /// The six bytes.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = Error;
    fn from_str(s: &str) -> Result<MacAddr> {
        let bad = || Error::InvalidArgument {
            what: "MAC address".into(),
            reason: format!("{s:?} is not six hex bytes separated by ':'"),
        };
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || p.len() > 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

/// A link named by name or by index, as iproute2's `dev` argument.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LinkRef {
    /// By interface name.
    Name(String),
    /// By interface index.
    Index(u32),
}

impl fmt::Display for LinkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkRef::Name(n) => f.write_str(n),
            LinkRef::Index(i) => write!(f, "if{i}"),
        }
    }
}

impl From<&str> for LinkRef {
    fn from(s: &str) -> Self {
        LinkRef::Name(s.to_owned())
    }
}

impl From<String> for LinkRef {
    fn from(s: String) -> Self {
        LinkRef::Name(s)
    }
}

impl From<&String> for LinkRef {
    fn from(s: &String) -> Self {
        LinkRef::Name(s.clone())
    }
}

impl From<u32> for LinkRef {
    fn from(i: u32) -> Self {
        LinkRef::Index(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifnames() {
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("a23456789012345").is_ok());
        for bad in [
            "",
            "a234567890123456",
            "a/b",
            "a b",
            "a:1",
            ".",
            "..",
            "tab\t",
        ] {
            match validate_ifname(bad) {
                Err(Error::InvalidName { name, .. }) => assert_eq!(name, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn macs() {
        let m: MacAddr = "c6:d2:32:6f:8f:44".parse().unwrap();
        assert_eq!(m.to_string(), "c6:d2:32:6f:8f:44");
        assert_eq!(
            "0:1:2:3:4:5".parse::<MacAddr>().unwrap().0,
            [0, 1, 2, 3, 4, 5]
        );
        for bad in [
            "",
            "c6:d2:32:6f:8f",
            "c6:d2:32:6f:8f:44:00",
            "zz:d2:32:6f:8f:44",
            "c6::32:6f:8f:44",
            "123:d2:32:6f:8f:44",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert!(MacAddr::from_slice(&[1, 2, 3]).is_err());
    }
}
