//! Node-subnet leases in flannel's etcd schema: the subnet key and the JSON value.
//!
//! A lease lives at `<prefix>/subnets/10.5.52.0-24` (dual stack:
//! `<prefix>/subnets/10.5.52.0-24&fc00:0:0:34::-64`) and its value is the JSON flannel writes,
//! byte for byte:
//! `{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::SystemTime;

use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::value::RawValue;

use crate::json::{self, Fields};

/// The default key prefix, flannel's `--etcd-prefix`.
pub const DEFAULT_PREFIX: &str = "/coreos.com/network";

/// The subnets a lease holds: IPv4, IPv6 or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseSubnets {
    /// The IPv4 subnet.
    pub ipv4: Option<Ipv4Net>,
    /// The IPv6 subnet.
    pub ipv6: Option<Ipv6Net>,
}

impl LeaseSubnets {
    /// The last component of the lease's key: `10.5.52.0-24`, or with IPv6
    /// `10.5.52.0-24&fc00:0:0:34::-64` (flannel's `MakeSubnetKey`).
    ///
    /// ```
    /// use podnet_ipam::LeaseSubnets;
    /// let s = LeaseSubnets { ipv4: Some("10.5.52.0/24".parse()?), ipv6: None };
    /// assert_eq!(s.key_name(), "10.5.52.0-24");
    /// assert_eq!(LeaseSubnets::parse_key_name("10.5.52.0-24"), Some(s));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn key_name(&self) -> String {
        let v4 = match self.ipv4 {
            Some(n) => format!("{}-{}", n.addr(), n.prefix_len()),
            None => "0.0.0.0-0".to_string(),
        };
        match self.ipv6 {
            Some(n) => format!("{v4}&{}-{}", n.addr(), n.prefix_len()),
            None => v4,
        }
    }

    /// Parses a key (or its last component) written by flannel or by [`key_name`](Self::key_name).
    /// Returns `None` for anything that is not a subnet key.
    pub fn parse_key_name(key: &str) -> Option<Self> {
        let name = key.rsplit('/').next()?;
        let (v4, v6) = match name.split_once('&') {
            Some((a, b)) => (a, Some(b)),
            None => (name, None),
        };
        let (addr, len) = v4.rsplit_once('-')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        // flannel parses the length into 5 bits (at most 31).
        let len: u8 = parse_len(len, 31)?;
        let ipv4 = if addr.is_unspecified() && len == 0 {
            None
        } else {
            Some(Ipv4Net::new(addr, len).ok()?)
        };
        let ipv6 = match v6 {
            None => None,
            Some(v6) => {
                let (addr, len) = v6.rsplit_once('-')?;
                if !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                    return None;
                }
                let addr: Ipv6Addr = addr.parse().ok()?;
                Some(Ipv6Net::new(addr, parse_len(len, 127)?).ok()?)
            }
        };
        if ipv4.is_none() && ipv6.is_none() {
            return None;
        }
        Some(LeaseSubnets { ipv4, ipv6 })
    }

    /// Whether the two leases hold an overlapping subnet in either family.
    pub fn overlaps(&self, other: &LeaseSubnets) -> bool {
        let v4 = match (self.ipv4, other.ipv4) {
            (Some(a), Some(b)) => a.contains(&b.network()) || b.contains(&a.network()),
            _ => false,
        };
        let v6 = match (self.ipv6, other.ipv6) {
            (Some(a), Some(b)) => a.contains(&b.network()) || b.contains(&a.network()),
            _ => false,
        };
        v4 || v6
    }
}

fn parse_len(s: &str, max: u8) -> Option<u8> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u8>().ok().filter(|&l| l <= max)
}

impl fmt::Display for LeaseSubnets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ipv4, self.ipv6) {
            (Some(a), Some(b)) => write!(f, "{a} + {b}"),
            (Some(a), None) => write!(f, "{a}"),
            (None, Some(b)) => write!(f, "{b}"),
            (None, None) => f.write_str("(none)"),
        }
    }
}

/// What a node says about itself in its lease (flannel's `LeaseAttrs`).
#[derive(Debug, Clone)]
pub struct LeaseAttrs {
    /// `PublicIP`: the node's underlay IPv4 address (`0.0.0.0` when it has none).
    pub public_ip: Ipv4Addr,
    /// `PublicIPv6`: the node's underlay IPv6 address, written as `null` when absent.
    pub public_ipv6: Option<Ipv6Addr>,
    /// `BackendType`, e.g. `vxlan` (omitted when empty).
    pub backend_type: String,
    /// `BackendData`: backend-specific JSON, kept raw (omitted when absent).
    pub backend_data: Option<Box<RawValue>>,
    /// `BackendV6Data`: backend-specific JSON for IPv6 (omitted when absent).
    pub backend_v6_data: Option<Box<RawValue>>,
}

impl PartialEq for LeaseAttrs {
    fn eq(&self, o: &Self) -> bool {
        let raw_eq = |a: &Option<Box<RawValue>>, b: &Option<Box<RawValue>>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => json::compact(a.get()) == json::compact(b.get()),
            _ => false,
        };
        self.public_ip == o.public_ip
            && self.public_ipv6 == o.public_ipv6
            && self.backend_type == o.backend_type
            && raw_eq(&self.backend_data, &o.backend_data)
            && raw_eq(&self.backend_v6_data, &o.backend_v6_data)
    }
}

/// Why a lease value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct AttrsError {
    /// The field at fault (or `value` when the whole value is not a JSON object).
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl LeaseAttrs {
    /// Attributes with a public IPv4 address and a backend type, no backend data.
    pub fn new(public_ip: Ipv4Addr, backend_type: impl Into<String>) -> Self {
        LeaseAttrs {
            public_ip,
            public_ipv6: None,
            backend_type: backend_type.into(),
            backend_data: None,
            backend_v6_data: None,
        }
    }

    /// Sets `BackendData` from JSON text (kept compact, as Go marshals it).
    pub fn with_backend_data(mut self, json_text: &str) -> Result<Self, AttrsError> {
        self.backend_data = Some(raw(json_text, "BackendData")?);
        Ok(self)
    }

    /// Sets `BackendV6Data` from JSON text (kept compact, as Go marshals it): the IPv6
    /// device's data of a dual-stack or IPv6-only lease.
    ///
    /// ```
    /// use podnet_ipam::LeaseAttrs;
    /// let mut a = LeaseAttrs::new("0.0.0.0".parse()?, "vxlan")
    ///     .with_backend_v6_data(r#"{"VNI": 1, "VtepMAC": "c6:d2:32:6f:8f:45"}"#)?;
    /// a.public_ipv6 = Some("fd00::3".parse()?);
    /// assert_eq!(
    ///     a.to_json(),
    ///     r#"{"PublicIP":"0.0.0.0","PublicIPv6":"fd00::3","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:45"}}"#
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_backend_v6_data(mut self, json_text: &str) -> Result<Self, AttrsError> {
        self.backend_v6_data = Some(raw(json_text, "BackendV6Data")?);
        Ok(self)
    }

    /// Encodes the value exactly as flannel's Go code does.
    ///
    /// ```
    /// use podnet_ipam::LeaseAttrs;
    /// let a = LeaseAttrs::new("192.168.64.3".parse()?, "vxlan")
    ///     .with_backend_data(r#"{"VNI": 1, "VtepMAC": "c6:d2:32:6f:8f:44"}"#)?;
    /// assert_eq!(
    ///     a.to_json(),
    ///     r#"{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}"#
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_json(&self) -> String {
        let mut s = format!("{{\"PublicIP\":\"{}\",\"PublicIPv6\":", self.public_ip);
        match self.public_ipv6 {
            Some(a) => s.push_str(&format!("\"{a}\"")),
            None => s.push_str("null"),
        }
        if !self.backend_type.is_empty() {
            s.push_str(",\"BackendType\":");
            s.push_str(&json::go_string(&self.backend_type));
        }
        if let Some(d) = &self.backend_data {
            s.push_str(",\"BackendData\":");
            s.push_str(&json::compact(d.get()));
        }
        if let Some(d) = &self.backend_v6_data {
            s.push_str(",\"BackendV6Data\":");
            s.push_str(&json::compact(d.get()));
        }
        s.push('}');
        s
    }

    /// Decodes a value written by flannel or by [`to_json`](Self::to_json).
    pub fn from_json(text: &str) -> Result<Self, AttrsError> {
        let f = Fields::parse(text).map_err(|e| AttrsError {
            field: "value",
            reason: e.to_string(),
        })?;
        let bad = |field: &'static str| move |reason: String| AttrsError { field, reason };
        let public_ip = match f.string("PublicIP").map_err(bad("PublicIP"))? {
            None => Ipv4Addr::UNSPECIFIED,
            Some(s) => s.parse().map_err(|_| AttrsError {
                field: "PublicIP",
                reason: format!("{s:?} is not an IPv4 address"),
            })?,
        };
        let public_ipv6 = match f.string("PublicIPv6").map_err(bad("PublicIPv6"))? {
            None => None,
            Some(s) => Some(s.parse().map_err(|_| AttrsError {
                field: "PublicIPv6",
                reason: format!("{s:?} is not an IPv6 address"),
            })?),
        };
        let backend_type = f
            .string("BackendType")
            .map_err(bad("BackendType"))?
            .unwrap_or_default();
        let backend_data = f.get_raw("BackendData").map(|r| r.to_owned());
        let backend_v6_data = f.get_raw("BackendV6Data").map(|r| r.to_owned());
        Ok(LeaseAttrs {
            public_ip,
            public_ipv6,
            backend_type,
            backend_data,
            backend_v6_data,
        })
    }
}

fn raw(text: &str, field: &'static str) -> Result<Box<RawValue>, AttrsError> {
    RawValue::from_string(json::compact(text)).map_err(|e| AttrsError {
        field,
        reason: e.to_string(),
    })
}

/// A node-subnet lease as read from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// The subnets the lease holds.
    pub subnets: LeaseSubnets,
    /// What the holder says about itself.
    pub attrs: LeaseAttrs,
    /// When the lease expires; `None` for a reservation (a lease with no TTL).
    pub expiration: Option<SystemTime>,
    /// The store revision of the lease's last change (for compare-and-swap).
    pub revision: u64,
}

impl Lease {
    /// Whether this lease is a reservation (no TTL: an operator pinned the subnet to a node).
    pub fn is_reservation(&self) -> bool {
        self.expiration.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let s = LeaseSubnets {
            ipv4: Some("10.5.52.0/24".parse().unwrap()),
            ipv6: Some("fc00:0:0:34::/64".parse().unwrap()),
        };
        assert_eq!(s.key_name(), "10.5.52.0-24&fc00:0:0:34::-64");
        assert_eq!(
            LeaseSubnets::parse_key_name(
                "/coreos.com/network/subnets/10.5.52.0-24&fc00:0:0:34::-64"
            ),
            Some(s)
        );
        for bad in [
            "10.5.52.0",
            "10.5.52.0-33",
            "10.5.52-24",
            "x-24",
            "10.5.52.0-24&zz::-64",
            "0.0.0.0-0",
            "10.5.52.0-+4",
        ] {
            assert_eq!(LeaseSubnets::parse_key_name(bad), None, "{bad}");
        }
        let v6only = LeaseSubnets::parse_key_name("0.0.0.0-0&fc00::-64").unwrap();
        assert!(v6only.ipv4.is_none());
        assert_eq!(v6only.key_name(), "0.0.0.0-0&fc00::-64");
    }

    #[test]
    fn attrs_roundtrip_flannel_bytes() {
        let text = r#"{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}"#;
        let a = LeaseAttrs::from_json(text).unwrap();
        assert_eq!(a.public_ip, Ipv4Addr::new(192, 168, 64, 3));
        assert_eq!(a.to_json(), text);
        let b = LeaseAttrs::from_json(r#"{"publicip":"1.2.3.4","PublicIPv6":"fd00::1"}"#).unwrap();
        assert_eq!(
            b.to_json(),
            r#"{"PublicIP":"1.2.3.4","PublicIPv6":"fd00::1"}"#
        );
        assert_eq!(
            LeaseAttrs::from_json("{not json").unwrap_err().field,
            "value"
        );
        assert_eq!(
            LeaseAttrs::from_json(r#"{"PublicIP":"x"}"#)
                .unwrap_err()
                .field,
            "PublicIP"
        );
    }
}
