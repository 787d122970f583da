//! The ADD result: interfaces, IPs referencing them, routes and DNS, printed in the shape of the
//! requested spec version (1.x; 0.3.x/0.4.0 with `version` in every IP; 0.1.0/0.2.0 with
//! `ip4`/`ip6`), field for field as the reference plugins print them.

use crate::error::{CniError, INVALID_CONFIG};
use ipnet::IpNet;
use serde::Serialize;
use serde_json::Value;
use std::net::IpAddr;

/// DNS settings (`dns`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Dns {
    /// Name servers, in order of priority.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// The local domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// A route of the result (and of `ipam.routes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteCfg {
    /// Destination.
    pub dst: IpNet,
    /// Next hop; when absent, the gateway of the container's address of the same family.
    pub gw: Option<IpAddr>,
    /// Path MTU (spec 1.1).
    pub mtu: Option<u32>,
    /// Advertised MSS (spec 1.1).
    pub advmss: Option<u32>,
    /// Priority, i.e. metric (spec 1.1).
    pub priority: Option<u32>,
    /// Routing table (spec 1.1).
    pub table: Option<u32>,
    /// Scope: 0 global, 253 link, 254 host (spec 1.1).
    pub scope: Option<u8>,
}

impl RouteCfg {
    /// A route to `dst` via `gw`.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> RouteCfg {
        RouteCfg {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }

    /// Reads a route object; `field` names it in errors (`ipam.routes[0]`).
    pub fn from_json(v: &Value, field: &str) -> Result<RouteCfg, CniError> {
        let bad = |f: &str, what: String| {
            CniError::new(
                INVALID_CONFIG,
                format!("invalid network config: {field}.{f}: {what}"),
            )
        };
        let dst = v.get("dst").and_then(Value::as_str).ok_or_else(|| {
            bad(
                "dst",
                "missing: every route needs a destination CIDR".into(),
            )
        })?;
        let dst: IpNet = dst
            .parse()
            .map_err(|_| bad("dst", format!("{dst:?} is not a CIDR like 10.96.0.0/12")))?;
        let gw = match v.get("gw") {
            None | Some(Value::Null) => None,
            Some(g) => {
                let s = g.as_str().unwrap_or_default();
                let ip: IpAddr = s
                    .parse()
                    .map_err(|_| bad("gw", format!("{g} is not an IP address")))?;
                if ip.is_ipv4() != dst.addr().is_ipv4() {
                    return Err(bad("gw", format!("{ip} is not of the family of {dst}")));
                }
                Some(ip)
            }
        };
        let num = |k: &str| -> Result<Option<u32>, CniError> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(n) => n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| bad(k, format!("{n} is not a non-negative 32-bit number"))),
            }
        };
        let scope = match num("scope")? {
            None => None,
            Some(s) => Some(u8::try_from(s).map_err(|_| bad("scope", format!("{s} > 255")))?),
        };
        Ok(RouteCfg {
            dst: dst.trunc(),
            gw,
            mtu: num("mtu")?,
            advmss: num("advmss")?,
            priority: num("priority")?,
            table: num("table")?,
            scope,
        })
    }
}

/// An interface of the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its MAC address.
    pub mac: String,
    /// Its MTU (printed for spec 1.1).
    pub mtu: Option<u32>,
    /// The namespace path, for interfaces inside the container.
    pub sandbox: Option<String>,
}

/// An address of the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpCfg {
    /// Index into the interfaces.
    pub interface: Option<usize>,
    /// The address with its prefix length.
    pub address: IpNet,
    /// The gateway of its subnet.
    pub gateway: Option<IpAddr>,
}

/// An ADD result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    /// Interfaces: the bridge, the host veth, the container interface.
    pub interfaces: Vec<Interface>,
    /// Addresses, in range set order.
    pub ips: Vec<IpCfg>,
    /// Routes: `ipam.routes`, then the default routes `isDefaultGateway` adds.
    pub routes: Vec<RouteCfg>,
    /// DNS.
    pub dns: Dns,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Out<'a> {
    cni_version: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<IfaceOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ips: Vec<IpOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<RouteOut>,
    dns: &'a Dns,
}

#[derive(Serialize)]
struct IfaceOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    mac: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sandbox: Option<&'a str>,
}

#[derive(Serialize)]
struct IpOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
    address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<String>,
}

#[derive(Serialize)]
struct RouteOut {
    dst: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    gw: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    advmss: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    table: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<u8>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LegacyOut<'a> {
    cni_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip4: Option<LegacyIp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip6: Option<LegacyIp>,
    dns: &'a Dns,
}

#[derive(Serialize)]
struct LegacyIp {
    ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<RouteOut>,
}

fn route_out(r: &RouteCfg, v11: bool) -> RouteOut {
    RouteOut {
        dst: r.dst.to_string(),
        gw: r.gw.map(|g| g.to_string()),
        mtu: r.mtu.filter(|_| v11),
        advmss: r.advmss.filter(|_| v11),
        priority: r.priority.filter(|_| v11),
        table: r.table.filter(|_| v11),
        scope: r.scope.filter(|_| v11),
    }
}

impl CniResult {
    /// The result as the JSON of spec version `version` (one of the supported versions).
    pub fn to_json(&self, version: &str) -> String {
        let text = if version.starts_with("0.1.") || version.starts_with("0.2.") {
            serde_json::to_string_pretty(&self.legacy(version))
        } else {
            let v1 = version.starts_with("1.");
            let v11 = crate::version::at_least(version, "1.1.0");
            let out = Out {
                cni_version: version,
                interfaces: self
                    .interfaces
                    .iter()
                    .map(|i| IfaceOut {
                        name: &i.name,
                        mac: &i.mac,
                        mtu: i.mtu.filter(|_| v11),
                        sandbox: i.sandbox.as_deref(),
                    })
                    .collect(),
                ips: self
                    .ips
                    .iter()
                    .map(|ip| IpOut {
                        version: if v1 {
                            None
                        } else if ip.address.addr().is_ipv4() {
                            Some("4")
                        } else {
                            Some("6")
                        },
                        interface: ip.interface,
                        address: ip.address.to_string(),
                        gateway: ip.gateway.map(|g| g.to_string()),
                    })
                    .collect(),
                routes: self.routes.iter().map(|r| route_out(r, v11)).collect(),
                dns: &self.dns,
            };
            serde_json::to_string_pretty(&out)
        };
        text.unwrap_or_default()
    }

    fn legacy<'a>(&'a self, version: &'a str) -> LegacyOut<'a> {
        let family = |v4: bool| -> Option<LegacyIp> {
            let ip = self.ips.iter().find(|i| i.address.addr().is_ipv4() == v4)?;
            Some(LegacyIp {
                ip: ip.address.to_string(),
                gateway: ip.gateway.map(|g| g.to_string()),
                routes: self
                    .routes
                    .iter()
                    .filter(|r| r.dst.addr().is_ipv4() == v4)
                    .map(|r| route_out(r, false))
                    .collect(),
            })
        };
        LegacyOut {
            cni_version: version,
            ip4: family(true),
            ip6: family(false),
            dns: &self.dns,
        }
    }

    /// Reads a result of any spec version (a `prevResult`, or what a delegated plugin printed):
    /// the 0.3.0 to 1.1.0 shape (`version` in IPs ignored), or the 0.1.0/0.2.0 shape with
    /// `ip4`/`ip6`, converted.
    ///
    /// ```
    /// use podnet_cni::CniResult;
    /// let v = serde_json::json!({"cniVersion": "0.2.0",
    ///     "ip4": {"ip": "10.1.0.5/24", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}]}});
    /// let r = CniResult::from_prev(&v).unwrap();
    /// assert_eq!(r.ips[0].address.to_string(), "10.1.0.5/24");
    /// let v1: serde_json::Value = serde_json::from_str(&r.to_json("1.0.0")).unwrap();
    /// assert_eq!(v1["routes"][0]["dst"], "0.0.0.0/0");
    /// ```
    pub fn from_prev(v: &Value) -> Result<CniResult, CniError> {
        let bad = |what: String| {
            CniError::new(
                INVALID_CONFIG,
                format!("invalid network config: prevResult: {what}"),
            )
        };
        let mut r = CniResult::default();
        for key in ["ip4", "ip6"] {
            let Some(ip) = v.get(key).filter(|i| !i.is_null()) else {
                continue;
            };
            let (address, gateway) = address_and_gateway(ip, key, "ip").map_err(bad)?;
            r.ips.push(IpCfg {
                interface: None,
                address,
                gateway,
            });
            for (i, route) in items(ip, "routes") {
                let at = format!("prevResult.{key}.routes[{i}]");
                r.routes.push(RouteCfg::from_json(route, &at)?);
            }
        }
        for (i, iface) in items(v, "interfaces") {
            let s = |k: &str| iface.get(k).and_then(Value::as_str).map(str::to_owned);
            r.interfaces.push(Interface {
                name: s("name").ok_or_else(|| bad(format!("interfaces[{i}] has no name")))?,
                mac: s("mac").unwrap_or_default(),
                mtu: iface
                    .get("mtu")
                    .and_then(Value::as_u64)
                    .and_then(|m| u32::try_from(m).ok()),
                sandbox: s("sandbox").filter(|s| !s.is_empty()),
            });
        }
        for (i, ip) in items(v, "ips") {
            let (address, gateway) =
                address_and_gateway(ip, &format!("ips[{i}]"), "address").map_err(bad)?;
            r.ips.push(IpCfg {
                interface: ip
                    .get("interface")
                    .and_then(Value::as_u64)
                    .map(|n| n as usize),
                address,
                gateway,
            });
        }
        for (i, route) in items(v, "routes") {
            let at = format!("prevResult.routes[{i}]");
            r.routes.push(RouteCfg::from_json(route, &at)?);
        }
        if let Some(d) = v.get("dns") {
            let list = |k: &str| -> Vec<String> {
                items(d, k)
                    .filter_map(|(_, s)| s.as_str().map(str::to_owned))
                    .collect()
            };
            r.dns = Dns {
                nameservers: list("nameservers"),
                domain: d.get("domain").and_then(Value::as_str).map(str::to_owned),
                search: list("search"),
                options: list("options"),
            };
        }
        Ok(r)
    }
}

/// The elements of the array `v[key]` with their indexes; none when it is missing or not an
/// array.
fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = (usize, &'a Value)> + 'a {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
}

/// The CIDR at `ip[field]` and the optional `ip.gateway` of an IP entry at `at` in a result;
/// the error says which is wrong.
fn address_and_gateway(
    ip: &Value,
    at: &str,
    field: &str,
) -> Result<(IpNet, Option<IpAddr>), String> {
    let address = ip
        .get(field)
        .and_then(Value::as_str)
        .and_then(|a| a.parse::<IpNet>().ok())
        .ok_or_else(|| format!("{at}.{field} is not a CIDR"))?;
    let gateway = match ip.get("gateway").and_then(Value::as_str) {
        None | Some("") => None,
        Some(g) => Some(
            g.parse()
                .map_err(|_| format!("{at}.gateway is not an IP address"))?,
        ),
    };
    Ok((address, gateway))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "cni0".into(),
                    mac: "ee:e5:bd:ba:c5:c7".into(),
                    mtu: Some(1500),
                    sandbox: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: "8e:a1:73:98:7d:2f".into(),
                    mtu: Some(1500),
                    sandbox: Some("/run/netns/c".into()),
                },
            ],
            ips: vec![IpCfg {
                interface: Some(1),
                address: "10.244.7.2/24".parse().unwrap(),
                gateway: Some("10.244.7.1".parse().unwrap()),
            }],
            routes: vec![
                RouteCfg::new("10.96.0.0/12".parse().unwrap(), None),
                RouteCfg::new(
                    "0.0.0.0/0".parse().unwrap(),
                    Some("10.244.7.1".parse().unwrap()),
                ),
            ],
            dns: Dns {
                nameservers: vec!["10.96.0.10".into()],
                ..Dns::default()
            },
        }
    }

    #[test]
    fn shapes_per_version() {
        let r = sample();
        let v1: Value = serde_json::from_str(&r.to_json("1.0.0")).unwrap();
        assert_eq!(v1["cniVersion"], "1.0.0");
        assert_eq!(v1["ips"][0]["interface"], 1);
        assert!(v1["ips"][0].get("version").is_none());
        assert!(v1["interfaces"][0].get("mtu").is_none());
        assert!(v1["interfaces"][0].get("sandbox").is_none());
        assert_eq!(v1["interfaces"][1]["sandbox"], "/run/netns/c");
        assert!(v1["routes"][0].get("gw").is_none());
        let v11: Value = serde_json::from_str(&r.to_json("1.1.0")).unwrap();
        assert_eq!(v11["interfaces"][0]["mtu"], 1500);
        let v04: Value = serde_json::from_str(&r.to_json("0.4.0")).unwrap();
        assert_eq!(v04["ips"][0]["version"], "4");
        let v02: Value = serde_json::from_str(&r.to_json("0.2.0")).unwrap();
        assert_eq!(v02["ip4"]["ip"], "10.244.7.2/24");
        assert_eq!(v02["ip4"]["routes"][1]["gw"], "10.244.7.1");
        assert!(v02.get("ip6").is_none());
        let empty: Value = serde_json::from_str(&CniResult::default().to_json("1.0.0")).unwrap();
        assert_eq!(empty, serde_json::json!({"cniVersion": "1.0.0", "dns": {}}));
    }

    #[test]
    fn prev_result_roundtrip() {
        let r = sample();
        let back =
            CniResult::from_prev(&serde_json::from_str(&r.to_json("1.1.0")).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
