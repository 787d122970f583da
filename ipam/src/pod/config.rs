//! The IPAM section of a CNI network config, as host-local reads it.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;

use crate::error::ConfigError;

/// host-local's default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// One range of a range set: a subnet and the addresses handed out from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// The subnet (its prefix length goes with each address).
    pub subnet: IpNet,
    /// The first address handed out (default: the subnet's second address).
    pub range_start: IpAddr,
    /// The last address handed out (default: the last before broadcast; IPv6: the last).
    pub range_end: IpAddr,
    /// The gateway, never handed out (default: the subnet's second address).
    pub gateway: IpAddr,
}

/// A checked IPAM config.
///
/// ```
/// use podnet_ipam::IpamConfig;
/// let c = IpamConfig::parse(r#"{"cniVersion":"1.0.0","name":"pods","ipam":{"type":"host-local",
///     "dataDir":"/tmp/x","ranges":[[{"subnet":"10.244.1.0/24"}]],"exclude":["10.244.1.2"]}}"#)?;
/// assert_eq!(c.ranges[0][0].range_end.to_string(), "10.244.1.254");
/// assert_eq!(c.ranges[0][0].gateway.to_string(), "10.244.1.1");
/// # Ok::<(), podnet_ipam::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct IpamConfig {
    /// The network's name (`name`): the leases live in `<dataDir>/<name>/`.
    pub name: String,
    /// `cniVersion`.
    pub cni_version: String,
    /// `ipam.dataDir` (default `/var/lib/cni/networks`).
    pub data_dir: PathBuf,
    /// The range sets (`ipam.ranges`, after the legacy single range if present): one address
    /// is allocated from each.
    pub ranges: Vec<Vec<Range>>,
    /// `ipam.exclude` (a podnet extension host-local ignores): addresses or CIDRs never handed out.
    pub exclude: Vec<IpNet>,
    /// `ipam.routes`, passed through to the result.
    pub routes: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawNet {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "cniVersion")]
    cni_version: String,
    ipam: Option<RawIpam>,
}

#[derive(Deserialize, Default)]
struct RawRange {
    #[serde(default)]
    subnet: Option<String>,
    #[serde(default, rename = "rangeStart")]
    range_start: Option<String>,
    #[serde(default, rename = "rangeEnd")]
    range_end: Option<String>,
    #[serde(default)]
    gateway: Option<String>,
}

#[derive(Deserialize)]
struct RawIpam {
    #[serde(flatten)]
    legacy: RawRange,
    #[serde(default, rename = "dataDir")]
    data_dir: Option<String>,
    #[serde(default)]
    ranges: Vec<Vec<RawRange>>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    routes: Vec<serde_json::Value>,
}

pub(crate) fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

pub(crate) fn from_u128(v: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4((v as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(v.into()),
    }
}

fn parse_ip(field: &'static str, where_: &str, s: &str) -> Result<IpAddr, ConfigError> {
    s.parse()
        .map_err(|_| ConfigError::invalid(field, format!("{where_}: {s:?} is not an IP address")))
}

impl Range {
    /// Whether `ip` is in [range_start, range_end].
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.range_start.is_ipv4()
            && to_u128(ip) >= to_u128(self.range_start)
            && to_u128(ip) <= to_u128(self.range_end)
    }

    /// How many addresses [range_start, range_end] holds.
    pub(crate) fn len(&self) -> u128 {
        // Saturates for the one range that holds all 2^128 IPv6 addresses.
        (to_u128(self.range_end) - to_u128(self.range_start)).saturating_add(1)
    }

    fn overlaps(&self, o: &Range) -> bool {
        self.range_start.is_ipv4() == o.range_start.is_ipv4()
            && (self.contains(o.range_start)
                || self.contains(o.range_end)
                || o.contains(self.range_start)
                || o.contains(self.range_end))
    }

    fn check(raw: &RawRange, where_: &str) -> Result<Range, ConfigError> {
        let s = raw.subnet.as_deref().ok_or(ConfigError::Missing {
            field: "ipam.ranges.subnet",
        })?;
        let subnet: IpNet = s.parse().map_err(|_| {
            ConfigError::invalid(
                "ipam.ranges.subnet",
                format!("{where_}: {s:?} is not a CIDR"),
            )
        })?;
        let subnet = subnet.trunc();
        if subnet.prefix_len() + 2 > subnet.max_prefix_len() {
            return Err(ConfigError::invalid(
                "ipam.ranges.subnet",
                format!("{where_}: network {subnet} too small to allocate from"),
            ));
        }
        let net = to_u128(subnet.network());
        let last = to_u128(subnet.broadcast());
        let in_subnet = |a: IpAddr| a.is_ipv4() == subnet.addr().is_ipv4() && subnet.contains(&a);
        let gateway = match raw.gateway.as_deref() {
            None => from_u128(net + 1, subnet.addr()),
            Some(g) => {
                let g = parse_ip("ipam.ranges.gateway", where_, g)?;
                if !in_subnet(g) {
                    return Err(ConfigError::invalid(
                        "ipam.ranges.gateway",
                        format!("{where_}: gateway {g} not in network {subnet}"),
                    ));
                }
                g
            }
        };
        let range_start = match raw.range_start.as_deref() {
            None => from_u128(net + 1, subnet.addr()),
            Some(a) => {
                let a = parse_ip("ipam.ranges.rangeStart", where_, a)?;
                if !in_subnet(a) {
                    return Err(ConfigError::invalid(
                        "ipam.ranges.rangeStart",
                        format!("{where_}: {a} not in network {subnet}"),
                    ));
                }
                a
            }
        };
        let range_end = match raw.range_end.as_deref() {
            None => {
                let end = if subnet.addr().is_ipv4() {
                    last - 1
                } else {
                    last
                };
                from_u128(end, subnet.addr())
            }
            Some(a) => {
                let a = parse_ip("ipam.ranges.rangeEnd", where_, a)?;
                if !in_subnet(a) {
                    return Err(ConfigError::invalid(
                        "ipam.ranges.rangeEnd",
                        format!("{where_}: {a} not in network {subnet}"),
                    ));
                }
                a
            }
        };
        if to_u128(range_end) < to_u128(range_start) {
            let field = if raw.range_end.is_some() {
                "ipam.ranges.rangeEnd"
            } else {
                "ipam.ranges.rangeStart"
            };
            return Err(ConfigError::invalid(
                field,
                format!("{where_}: rangeEnd {range_end} is before rangeStart {range_start}"),
            ));
        }
        Ok(Range {
            subnet,
            range_start,
            range_end,
            gateway,
        })
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.range_start, self.range_end)
    }
}

/// A range set as host-local prints it in errors: `start-end,start-end`.
pub(crate) fn set_string(set: &[Range]) -> String {
    set.iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl IpamConfig {
    /// Parses a CNI network config (the JSON a runtime passes on stdin).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawNet =
            serde_json::from_str(text).map_err(|source| ConfigError::NotJson { source })?;
        if raw.name.is_empty() {
            return Err(ConfigError::Missing { field: "name" });
        }
        if raw.name.contains('/') || raw.name == "." || raw.name == ".." {
            return Err(ConfigError::invalid(
                "name",
                "must be usable as a directory name",
            ));
        }
        let ipam = raw.ipam.ok_or(ConfigError::Missing { field: "ipam" })?;
        let mut raw_sets: Vec<Vec<RawRange>> = Vec::new();
        if ipam.legacy.subnet.is_some() {
            raw_sets.push(vec![ipam.legacy]);
        }
        raw_sets.extend(ipam.ranges);
        if raw_sets.is_empty() {
            return Err(ConfigError::Missing {
                field: "ipam.ranges",
            });
        }
        let mut ranges: Vec<Vec<Range>> = Vec::new();
        for (i, set) in raw_sets.iter().enumerate() {
            if set.is_empty() {
                return Err(ConfigError::invalid(
                    "ipam.ranges",
                    format!("range set {i} is empty"),
                ));
            }
            let mut checked = Vec::with_capacity(set.len());
            for (j, r) in set.iter().enumerate() {
                let r = Range::check(r, &format!("range set {i}, range {j}"))?;
                if let Some(first) = checked.first() {
                    let first: &Range = first;
                    if first.subnet.addr().is_ipv4() != r.subnet.addr().is_ipv4() {
                        return Err(ConfigError::invalid(
                            "ipam.ranges",
                            format!("range set {i}: mixed address families"),
                        ));
                    }
                }
                if let Some(o) = checked.iter().find(|o: &&Range| o.overlaps(&r)) {
                    return Err(ConfigError::invalid(
                        "ipam.ranges",
                        format!("range set {i}: subnets {o} and {r} overlap"),
                    ));
                }
                checked.push(r);
            }
            for (k, other) in ranges.iter().enumerate() {
                if other.iter().any(|o| checked.iter().any(|r| o.overlaps(r))) {
                    return Err(ConfigError::invalid(
                        "ipam.ranges",
                        format!("range set {k} overlaps with {i}"),
                    ));
                }
            }
            ranges.push(checked);
        }
        let mut exclude = Vec::with_capacity(ipam.exclude.len());
        for e in &ipam.exclude {
            let net = match e.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => match e.parse::<IpAddr>() {
                    Ok(a) => IpNet::from(a),
                    Err(_) => {
                        return Err(ConfigError::invalid(
                            "ipam.exclude",
                            format!("{e:?} is neither an address nor a CIDR"),
                        ));
                    }
                },
            };
            exclude.push(net);
        }
        Ok(IpamConfig {
            name: raw.name,
            cni_version: raw.cni_version,
            data_dir: PathBuf::from(
                ipam.data_dir
                    .unwrap_or_else(|| DEFAULT_DATA_DIR.to_string()),
            ),
            ranges,
            exclude,
            routes: ipam.routes,
        })
    }

    /// The directory holding this network's leases: `<dataDir>/<name>`.
    pub fn lease_dir(&self) -> PathBuf {
        self.data_dir.join(&self.name)
    }
}

/// The attachments a CNI GC keeps (`cni.dev/valid-attachments` of the config a runtime passes
/// on stdin): pairs of container id and interface name. A config without the field keeps none.
///
/// Strict, as the spec's schema is: an entry without string fields `containerID` and `ifname`,
/// or a field that is not a list, is an error naming the field. A GC must not guess what a
/// malformed list meant: dropping an entry would release a live container's addresses.
///
/// ```
/// let kept = podnet_ipam::valid_attachments(
///     r#"{"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}"#,
/// )?;
/// assert_eq!(kept, [("c1".to_string(), "eth0".to_string())]);
/// assert!(podnet_ipam::valid_attachments(r#"{"cni.dev/valid-attachments":[{"containerID":1}]}"#).is_err());
/// # Ok::<(), podnet_ipam::ConfigError>(())
/// ```
pub fn valid_attachments(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    const FIELD: &str = "cni.dev/valid-attachments";
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|source| ConfigError::NotJson { source })?;
    match v.get(FIELD) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, att)| {
                let field = |name: &str| att.get(name).and_then(serde_json::Value::as_str);
                match (field("containerID"), field("ifname")) {
                    (Some(id), Some(ifname)) => Ok((id.to_string(), ifname.to_string())),
                    _ => Err(ConfigError::invalid(
                        FIELD,
                        format!("entry {i} ({att}) needs string fields containerID and ifname"),
                    )),
                }
            })
            .collect(),
        Some(other) => Err(ConfigError::invalid(
            FIELD,
            format!("a list of {{containerID, ifname}} was expected, not {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(text: &str) -> &'static str {
        match IpamConfig::parse(text).unwrap_err() {
            ConfigError::Missing { field } | ConfigError::Invalid { field, .. } => field,
            e => panic!("{e}"),
        }
    }

    #[test]
    fn legacy_and_sets() {
        let c = IpamConfig::parse(
            r#"{"name":"n","ipam":{"subnet":"10.1.0.0/16","rangeStart":"10.1.0.10","ranges":[[{"subnet":"fd10::/64"}]]}}"#,
        )
        .unwrap();
        assert_eq!(c.ranges.len(), 2);
        assert_eq!(c.ranges[0][0].range_start.to_string(), "10.1.0.10");
        assert_eq!(c.ranges[0][0].range_end.to_string(), "10.1.255.254");
        assert_eq!(
            c.ranges[1][0].range_end.to_string(),
            "fd10::ffff:ffff:ffff:ffff"
        );
        assert_eq!(c.ranges[1][0].gateway.to_string(), "fd10::1");
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn errors_name_fields() {
        assert_eq!(field(r#"{"ipam":{}}"#), "name");
        assert_eq!(field(r#"{"name":"n"}"#), "ipam");
        assert_eq!(field(r#"{"name":"n","ipam":{}}"#), "ipam.ranges");
        assert_eq!(
            field(r#"{"name":"n","ipam":{"subnet":"10.0.0.0/31"}}"#),
            "ipam.ranges.subnet"
        );
        assert_eq!(
            field(r#"{"name":"n","ipam":{"subnet":"10.0.0.0/24","gateway":"10.0.1.1"}}"#),
            "ipam.ranges.gateway"
        );
        assert_eq!(
            field(
                r#"{"name":"n","ipam":{"subnet":"10.0.0.0/24","rangeStart":"10.0.0.9","rangeEnd":"10.0.0.5"}}"#
            ),
            "ipam.ranges.rangeEnd"
        );
        assert_eq!(
            field(
                r#"{"name":"n","ipam":{"ranges":[[{"subnet":"10.0.0.0/24"},{"subnet":"fd00::/64"}]]}}"#
            ),
            "ipam.ranges"
        );
        assert_eq!(
            field(
                r#"{"name":"n","ipam":{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"10.0.0.0/25"}]]}}"#
            ),
            "ipam.ranges"
        );
        assert_eq!(
            field(r#"{"name":"n","ipam":{"subnet":"10.0.0.0/24","exclude":["x"]}}"#),
            "ipam.exclude"
        );
    }
}
