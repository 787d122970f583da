//! The network config, flannel's `net-conf.json` (stored at `<prefix>/config`).
//!
//! Parsing follows flannel's `ParseConfig` and `CheckNetworkConfig`: field names match
//! case-insensitively (as Go's JSON decoder does), `SubnetLen` defaults to 24 (or the network's
//! prefix + 2 when the network is smaller than a /22), `SubnetMin` defaults to the second
//! subnet and `SubnetMax` to the last one, and both must sit on a `SubnetLen` boundary.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::value::RawValue;

use crate::error::ConfigError;
use crate::json::{self, Fields};

/// A checked network config with every default filled in.
///
/// ```
/// use podnet_ipam::NetworkConfig;
/// let c = NetworkConfig::parse(r#"{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}}"#)?;
/// assert_eq!(c.subnet_len, 24);
/// assert_eq!(c.subnet_min.to_string(), "10.5.1.0");
/// assert_eq!(c.subnet_max.to_string(), "10.5.255.0");
/// assert_eq!(c.backend_type, "vxlan");
/// # Ok::<(), podnet_ipam::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NetworkConfig {
    /// `EnableIPv4` (default true).
    pub enable_ipv4: bool,
    /// `EnableIPv6` (default false).
    pub enable_ipv6: bool,
    /// `Network`: the cluster's IPv4 network (present when IPv4 is enabled).
    pub network: Option<Ipv4Net>,
    /// `SubnetLen`: the prefix length of each node's IPv4 subnet.
    pub subnet_len: u8,
    /// `SubnetMin`: the lowest IPv4 subnet handed out.
    pub subnet_min: Ipv4Addr,
    /// `SubnetMax`: the highest IPv4 subnet handed out.
    pub subnet_max: Ipv4Addr,
    /// `IPv6Network` (present when IPv6 is enabled).
    pub ipv6_network: Option<Ipv6Net>,
    /// `IPv6SubnetLen`.
    pub ipv6_subnet_len: u8,
    /// `IPv6SubnetMin`.
    pub ipv6_subnet_min: Ipv6Addr,
    /// `IPv6SubnetMax`.
    pub ipv6_subnet_max: Ipv6Addr,
    /// `Backend`, kept as the raw JSON text for the agent; `None` when absent.
    pub backend: Option<Box<RawValue>>,
    /// `Backend.Type`; `udp` when there is no `Backend` (flannel's default).
    pub backend_type: String,
    /// `EnableNFTables` (default false): masquerade and forward rules in flannel's nftables
    /// tables instead of iptables.
    pub enable_nftables: bool,
}

/// One address family's subnet layout, in u128 arithmetic so IPv4 and IPv6 share the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) bits: u8,
    pub(crate) network: u128,
    pub(crate) network_len: u8,
    pub(crate) subnet_len: u8,
    pub(crate) min: u128,
    pub(crate) max: u128,
}

impl Layout {
    pub(crate) fn subnet_size(&self) -> u128 {
        1u128 << (self.bits - self.subnet_len)
    }

    /// How many subnets lie in [min, max].
    pub(crate) fn capacity(&self) -> u128 {
        if self.max < self.min {
            0
        } else {
            (self.max - self.min) / self.subnet_size() + 1
        }
    }

    /// Whether `base/len` is a subnet this layout may hand out.
    pub(crate) fn fits(&self, base: u128, len: u8) -> bool {
        len == self.subnet_len && base >= self.min && base <= self.max
    }
}

fn last_of(network: u128, len: u8, bits: u8) -> u128 {
    let host = if len == 0 {
        if bits == 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        }
    } else {
        (1u128 << (bits - len)) - 1
    };
    network | host
}

struct FamilyNames {
    subnet_len: &'static str,
    subnet_min: &'static str,
    subnet_max: &'static str,
}

/// Fills defaults and checks one family, following flannel's `CheckNetworkConfig`.
fn resolve(
    bits: u8,
    network: u128,
    network_len: u8,
    subnet_len: Option<u64>,
    min: Option<u128>,
    max: Option<u128>,
    names: &FamilyNames,
) -> Result<Layout, ConfigError> {
    let (max_len, default_len, min_net) = if bits == 32 {
        (30, 24, 28)
    } else {
        (126, 64, 124)
    };
    let subnet_len = match subnet_len {
        Some(len) if len > 0 => {
            if len > max_len {
                return Err(ConfigError::invalid(
                    names.subnet_len,
                    format!(
                        "{len} is too long: SubnetLen must be less than /{}",
                        max_len + 1
                    ),
                ));
            }
            if len < u64::from(network_len) + 2 {
                return Err(ConfigError::invalid(
                    names.subnet_len,
                    format!(
                        "/{len} is too short: the network /{network_len} must hold at least four subnets"
                    ),
                ));
            }
            len as u8
        }
        _ => {
            if network_len > min_net {
                return Err(ConfigError::invalid(
                    if bits == 32 { "Network" } else { "IPv6Network" },
                    format!("network is too small: minimum useful prefix is /{min_net}"),
                ));
            } else if network_len <= default_len - 2 {
                default_len
            } else {
                network_len + 2
            }
        }
    };
    let size = 1u128 << (bits - subnet_len);
    let last = last_of(network, network_len, bits);
    let contains = |a: u128| a >= network && a <= last;
    let min = match min {
        None | Some(0) => network + size,
        Some(a) if contains(a) => a,
        Some(_) => {
            return Err(ConfigError::invalid(
                names.subnet_min,
                "not in the range of the network",
            ));
        }
    };
    let max = match max {
        None | Some(0) => last - size + 1,
        Some(a) if contains(a) => a,
        Some(_) => {
            return Err(ConfigError::invalid(
                names.subnet_max,
                "not in the range of the network",
            ));
        }
    };
    if min % size != 0 {
        return Err(ConfigError::invalid(
            names.subnet_min,
            format!("not on a /{subnet_len} boundary"),
        ));
    }
    if max % size != 0 {
        return Err(ConfigError::invalid(
            names.subnet_max,
            format!("not on a /{subnet_len} boundary"),
        ));
    }
    if min > max {
        return Err(ConfigError::invalid(
            names.subnet_min,
            "greater than SubnetMax",
        ));
    }
    Ok(Layout {
        bits,
        network,
        network_len,
        subnet_len,
        min,
        max,
    })
}

fn field_err(field: &'static str) -> impl Fn(String) -> ConfigError {
    move |reason| ConfigError::invalid(field, reason)
}

fn parse_v4_addr(f: &Fields, field: &'static str) -> Result<Option<u128>, ConfigError> {
    match f.string(field).map_err(field_err(field))? {
        None => Ok(None),
        Some(s) => s
            .parse::<Ipv4Addr>()
            .map(|a| Some(u128::from(u32::from(a))))
            .map_err(|_| ConfigError::invalid(field, format!("{s:?} is not an IPv4 address"))),
    }
}

fn parse_v6_addr(f: &Fields, field: &'static str) -> Result<Option<u128>, ConfigError> {
    match f.string(field).map_err(field_err(field))? {
        None => Ok(None),
        Some(s) => s
            .parse::<Ipv6Addr>()
            .map(|a| Some(u128::from(a)))
            .map_err(|_| ConfigError::invalid(field, format!("{s:?} is not an IPv6 address"))),
    }
}

impl NetworkConfig {
    /// Parses and checks a `net-conf.json` document. Errors name the field at fault.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let f = Fields::parse(text).map_err(|source| ConfigError::NotJson { source })?;
        let enable_ipv4 = f
            .bool("EnableIPv4")
            .map_err(field_err("EnableIPv4"))?
            .unwrap_or(true);
        let enable_ipv6 = f
            .bool("EnableIPv6")
            .map_err(field_err("EnableIPv6"))?
            .unwrap_or(false);
        let enable_nftables = f
            .bool("EnableNFTables")
            .map_err(field_err("EnableNFTables"))?
            .unwrap_or(false);
        if !enable_ipv4 && !enable_ipv6 {
            return Err(ConfigError::invalid(
                "EnableIPv4",
                "neither IPv4 nor IPv6 is enabled",
            ));
        }

        let backend = f.get_raw("Backend").map(|raw| {
            RawValue::from_string(json::compact(raw.get())).unwrap_or_else(|_| raw.to_owned())
        });
        let backend_type = match &backend {
            None => "udp".to_string(),
            Some(raw) => {
                let b = Fields::parse(raw.get())
                    .map_err(|e| ConfigError::invalid("Backend", e.to_string()))?;
                b.string("Type")
                    .map_err(field_err("Backend.Type"))?
                    .unwrap_or_default()
            }
        };

        let mut c = NetworkConfig {
            enable_ipv4,
            enable_ipv6,
            network: None,
            subnet_len: 0,
            subnet_min: Ipv4Addr::UNSPECIFIED,
            subnet_max: Ipv4Addr::UNSPECIFIED,
            ipv6_network: None,
            ipv6_subnet_len: 0,
            ipv6_subnet_min: Ipv6Addr::UNSPECIFIED,
            ipv6_subnet_max: Ipv6Addr::UNSPECIFIED,
            backend,
            backend_type,
            enable_nftables,
        };

        if enable_ipv4 {
            let s = f
                .string("Network")
                .map_err(field_err("Network"))?
                .ok_or(ConfigError::Missing { field: "Network" })?;
            let net: Ipv4Net = s.parse().map_err(|_| {
                ConfigError::invalid("Network", format!("{s:?} is not an IPv4 CIDR"))
            })?;
            let net = net.trunc();
            if net.prefix_len() == 0 && net.addr().is_unspecified() {
                return Err(ConfigError::invalid("Network", "0.0.0.0/0 is empty"));
            }
            let layout = resolve(
                32,
                u128::from(u32::from(net.addr())),
                net.prefix_len(),
                f.uint("SubnetLen").map_err(field_err("SubnetLen"))?,
                parse_v4_addr(&f, "SubnetMin")?,
                parse_v4_addr(&f, "SubnetMax")?,
                &FamilyNames {
                    subnet_len: "SubnetLen",
                    subnet_min: "SubnetMin",
                    subnet_max: "SubnetMax",
                },
            )?;
            c.network = Some(net);
            c.subnet_len = layout.subnet_len;
            c.subnet_min = Ipv4Addr::from(layout.min as u32);
            c.subnet_max = Ipv4Addr::from(layout.max as u32);
        }
        if enable_ipv6 {
            let s = f
                .string("IPv6Network")
                .map_err(field_err("IPv6Network"))?
                .ok_or(ConfigError::Missing {
                    field: "IPv6Network",
                })?;
            let net: Ipv6Net = s.parse().map_err(|_| {
                ConfigError::invalid("IPv6Network", format!("{s:?} is not an IPv6 CIDR"))
            })?;
            let net = net.trunc();
            if net.prefix_len() == 0 && net.addr().is_unspecified() {
                return Err(ConfigError::invalid("IPv6Network", "::/0 is empty"));
            }
            let layout = resolve(
                128,
                u128::from(net.addr()),
                net.prefix_len(),
                f.uint("IPv6SubnetLen")
                    .map_err(field_err("IPv6SubnetLen"))?,
                parse_v6_addr(&f, "IPv6SubnetMin")?,
                parse_v6_addr(&f, "IPv6SubnetMax")?,
                &FamilyNames {
                    subnet_len: "IPv6SubnetLen",
                    subnet_min: "IPv6SubnetMin",
                    subnet_max: "IPv6SubnetMax",
                },
            )?;
            c.ipv6_network = Some(net);
            c.ipv6_subnet_len = layout.subnet_len;
            c.ipv6_subnet_min = Ipv6Addr::from(layout.min);
            c.ipv6_subnet_max = Ipv6Addr::from(layout.max);
        }
        Ok(c)
    }

    pub(crate) fn v4_layout(&self) -> Option<Layout> {
        let net = self.network.filter(|_| self.enable_ipv4)?;
        Some(Layout {
            bits: 32,
            network: u128::from(u32::from(net.addr())),
            network_len: net.prefix_len(),
            subnet_len: self.subnet_len,
            min: u128::from(u32::from(self.subnet_min)),
            max: u128::from(u32::from(self.subnet_max)),
        })
    }

    pub(crate) fn v6_layout(&self) -> Option<Layout> {
        let net = self.ipv6_network.filter(|_| self.enable_ipv6)?;
        Some(Layout {
            bits: 128,
            network: u128::from(net.addr()),
            network_len: net.prefix_len(),
            subnet_len: self.ipv6_subnet_len,
            min: u128::from(self.ipv6_subnet_min),
            max: u128::from(self.ipv6_subnet_max),
        })
    }

    /// Whether an IPv4 subnet may be leased under this config (right length, within
    /// [SubnetMin, SubnetMax]); flannel's `isSubnetConfigCompat`.
    pub fn fits_v4(&self, subnet: Ipv4Net) -> bool {
        self.v4_layout()
            .is_some_and(|l| l.fits(u128::from(u32::from(subnet.addr())), subnet.prefix_len()))
    }

    /// Whether an IPv6 subnet may be leased under this config.
    pub fn fits_v6(&self, subnet: Ipv6Net) -> bool {
        self.v6_layout()
            .is_some_and(|l| l.fits(u128::from(subnet.addr()), subnet.prefix_len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_field(text: &str) -> &'static str {
        match NetworkConfig::parse(text).unwrap_err() {
            ConfigError::Missing { field } | ConfigError::Invalid { field, .. } => field,
            e => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn defaults_like_flannel() {
        let c = NetworkConfig::parse(r#"{"Network":"10.5.0.0/16"}"#).unwrap();
        assert_eq!(c.subnet_len, 24);
        assert_eq!(c.subnet_min, Ipv4Addr::new(10, 5, 1, 0));
        assert_eq!(c.subnet_max, Ipv4Addr::new(10, 5, 255, 0));
        assert_eq!(c.backend_type, "udp");
        assert!(c.enable_ipv4 && !c.enable_ipv6);

        // Smaller than /22: prefix + 2.
        let c = NetworkConfig::parse(r#"{"Network":"10.5.0.0/24"}"#).unwrap();
        assert_eq!(c.subnet_len, 26);
        assert_eq!(c.subnet_min, Ipv4Addr::new(10, 5, 0, 64));
        assert_eq!(c.subnet_max, Ipv4Addr::new(10, 5, 0, 192));
        let c = NetworkConfig::parse(r#"{"Network":"10.5.0.0/22"}"#).unwrap();
        assert_eq!(c.subnet_len, 24);
        let c = NetworkConfig::parse(r#"{"Network":"10.5.0.0/23"}"#).unwrap();
        assert_eq!(c.subnet_len, 25);
        // Host bits are dropped, as Go's ParseCIDR does.
        let c = NetworkConfig::parse(r#"{"network":"10.5.7.9/16","subnetlen":20}"#).unwrap();
        assert_eq!(c.network.unwrap().to_string(), "10.5.0.0/16");
        assert_eq!(c.subnet_min, Ipv4Addr::new(10, 5, 16, 0));
        assert_eq!(c.subnet_max, Ipv4Addr::new(10, 5, 240, 0));
    }

    #[test]
    fn ipv6_defaults() {
        let c = NetworkConfig::parse(
            r#"{"EnableIPv6":true,"Network":"10.5.0.0/16","IPv6Network":"fc00::/48"}"#,
        )
        .unwrap();
        assert_eq!(c.ipv6_subnet_len, 64);
        assert_eq!(c.ipv6_subnet_min.to_string(), "fc00:0:0:1::");
        assert_eq!(c.ipv6_subnet_max.to_string(), "fc00:0:0:ffff::");
        let c = NetworkConfig::parse(
            r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/120"}"#,
        )
        .unwrap();
        assert_eq!(c.ipv6_subnet_len, 122);
        assert!(c.network.is_none());
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err_field(r#"{}"#), "Network");
        assert_eq!(err_field(r#"{"Network":"10.5.0.0"}"#), "Network");
        assert_eq!(err_field(r#"{"Network":"10.5.0.0/29"}"#), "Network");
        assert_eq!(
            err_field(r#"{"Network":"10.5.0.0/16","SubnetLen":31}"#),
            "SubnetLen"
        );
        assert_eq!(
            err_field(r#"{"Network":"10.5.0.0/16","SubnetLen":17}"#),
            "SubnetLen"
        );
        assert_eq!(
            err_field(r#"{"Network":"10.5.0.0/16","SubnetLen":"x"}"#),
            "SubnetLen"
        );
        assert_eq!(
            err_field(r#"{"Network":"10.5.0.0/16","SubnetMin":"10.6.0.0"}"#),
            "SubnetMin"
        );
        assert_eq!(
            err_field(r#"{"Network":"10.5.0.0/16","SubnetMin":"10.5.1.1"}"#),
            "SubnetMin"
        );
        assert_eq!(
            err_field(r#"{"Network":"10.5.0.0/16","SubnetMax":"10.5.1.128"}"#),
            "SubnetMax"
        );
        assert_eq!(
            err_field(r#"{"Network":"10.5.0.0/16","EnableIPv6":true}"#),
            "IPv6Network"
        );
        assert_eq!(
            err_field(
                r#"{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetLen":127}"#
            ),
            "IPv6SubnetLen"
        );
        assert_eq!(
            err_field(r#"{"Network":"10.5.0.0/16","Backend":{"Type":5}}"#),
            "Backend.Type"
        );
        assert!(matches!(
            NetworkConfig::parse("[1,2]").unwrap_err(),
            ConfigError::NotJson { .. }
        ));
    }

    #[test]
    fn backend_kept_raw_and_compact() {
        let c = NetworkConfig::parse(
            r#"{"Network":"10.5.0.0/16","Backend":{ "Type": "vxlan", "VNI": 1, "Port": 8472 }}"#,
        )
        .unwrap();
        assert_eq!(c.backend_type, "vxlan");
        assert_eq!(
            c.backend.unwrap().get(),
            r#"{"Type":"vxlan","VNI":1,"Port":8472}"#
        );
    }
}
