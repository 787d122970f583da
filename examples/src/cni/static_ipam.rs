//! The `static` IPAM plugin: the addresses, routes and DNS of the config (and of `IP=`/
//! `GATEWAY=` in CNI_ARGS, `args.cni.ips`, `runtimeConfig.ips`), as the reference plugin hands
//! them out. It allocates nothing, so DEL has nothing to do.

use super::error::{CniError, INVALID_CONFIG, INVALID_ENVIRONMENT};
use ipnet::IpNet;
use podnet_cni::conf::get_strings;
use podnet_cni::{Args, CniResult, IpCfg, Plugin, PluginConf, RouteCfg};
use serde_json::Value;
use std::net::IpAddr;

/// The `static` IPAM plugin.
pub struct Static;

/// What the reference gives CHECK when prevResult is missing or does not match.
const OTHER: u32 = 999;

struct Addr {
    address: IpNet,
    gateway: Option<IpAddr>,
}

fn cidr(field: &str, s: &str) -> Result<IpNet, CniError> {
    s.trim().parse().map_err(|_| {
        CniError::invalid(
            field,
            format!("{s:?} is not in CIDR notation (an address with its prefix, like 10.1.2.3/24)"),
        )
    })
}

fn cidrs(list: &[String], field: &str) -> Result<Vec<Addr>, CniError> {
    list.iter()
        .map(|s| {
            Ok(Addr {
                address: cidr(field, s)?,
                gateway: None,
            })
        })
        .collect()
}

/// The addresses, routes and DNS of an ADD, checked.
fn load(conf: &PluginConf, cni_args: &str) -> Result<(Vec<Addr>, CniResult), CniError> {
    let Some(Value::Object(ipam)) = conf.raw.get("ipam") else {
        return Err(CniError::invalid(
            "ipam",
            "missing: static needs an ipam section",
        ));
    };
    let mut addrs = Vec::new();
    match ipam.get("addresses") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, a) in list.iter().enumerate() {
                let field = format!("ipam.addresses[{i}]");
                let s = a.get("address").and_then(Value::as_str).unwrap_or_default();
                let address = cidr(&format!("{field}.address"), s)?;
                let gateway = match a.get("gateway") {
                    None | Some(Value::Null) => None,
                    Some(g) => Some(g.as_str().and_then(|g| g.parse().ok()).ok_or_else(|| {
                        CniError::invalid(
                            &format!("{field}.gateway"),
                            format!("{g} is not an IP address"),
                        )
                    })?),
                };
                addrs.push(Addr { address, gateway });
            }
        }
        Some(_) => return Err(CniError::invalid("ipam.addresses", "not a list")),
    }
    // CNI_ARGS: IP= (CIDRs, appended) and GATEWAY= (set on the addresses holding it); other
    // keys are an error unless IgnoreUnknown is set, as the reference's LoadArgs has it.
    let pairs: Vec<(&str, &str)> = cni_args
        .split(';')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            kv.split_once('=').ok_or_else(|| {
                CniError::new(
                    INVALID_ENVIRONMENT,
                    format!("CNI_ARGS: {kv:?} is not KEY=VALUE"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let ignore_unknown = pairs.iter().any(|(k, v)| {
        *k == "IgnoreUnknown" && matches!(v.to_ascii_lowercase().as_str(), "1" | "true")
    });
    for (k, v) in &pairs {
        match *k {
            "IP" if !v.is_empty() => {
                for item in v.split(',') {
                    addrs.push(Addr {
                        address: cidr("CNI_ARGS IP", item)?,
                        gateway: None,
                    });
                }
            }
            "IP" | "GATEWAY" | "IgnoreUnknown" => {}
            other if !ignore_unknown => {
                return Err(CniError::new(
                    INVALID_ENVIRONMENT,
                    format!(
                        "CNI_ARGS: unknown key {other:?}: static knows IP and GATEWAY; add IgnoreUnknown=1 to pass others"
                    ),
                ));
            }
            _ => {}
        }
    }
    if let Some((_, gws)) = pairs.iter().find(|(k, v)| *k == "GATEWAY" && !v.is_empty()) {
        for item in gws.split(',') {
            let gw: IpAddr = item.trim().parse().map_err(|_| {
                CniError::new(
                    INVALID_ENVIRONMENT,
                    format!("CNI_ARGS: invalid gateway address: {item}"),
                )
            })?;
            for a in addrs.iter_mut().filter(|a| a.address.contains(&gw)) {
                a.gateway = Some(gw);
            }
        }
    }
    let args_ips = conf
        .raw
        .get("args")
        .and_then(|a| a.get("cni"))
        .and_then(Value::as_object)
        .map(|c| get_strings(c, "ips", "args.cni.ips"))
        .transpose()?
        .unwrap_or_default();
    if !args_ips.is_empty() {
        addrs = cidrs(&args_ips, "args.cni.ips")?;
    }
    let rt_ips = get_strings(&conf.runtime_config, "ips", "runtimeConfig.ips")?;
    if !rt_ips.is_empty() {
        addrs = cidrs(&rt_ips, "runtimeConfig.ips")?;
    }
    let v4 = addrs.iter().filter(|a| a.address.addr().is_ipv4()).count();
    if (v4 > 1 || addrs.len() - v4 > 1)
        && !podnet_cni::version::at_least(&conf.cni_version, "0.3.0")
    {
        return Err(CniError::new(
            INVALID_CONFIG,
            format!(
                "CNI version {} does not support more than 1 address per family: set cniVersion to 0.3.0 or later",
                conf.cni_version
            ),
        ));
    }
    let routes = match ipam.get("routes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, r)| RouteCfg::from_json(r, &format!("ipam.routes[{i}]")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(CniError::invalid("ipam.routes", "not a list")),
    };
    let dns = podnet_cni::conf::parse_dns(ipam)
        .map_err(|e| CniError::new(e.code, e.msg.replacen("dns", "ipam.dns", 1)))?;
    let result = CniResult {
        interfaces: Vec::new(),
        ips: addrs
            .iter()
            .map(|a| IpCfg {
                interface: None,
                address: a.address,
                gateway: a.gateway,
            })
            .collect(),
        routes,
        dns,
    };
    Ok((addrs, result))
}

impl Plugin for Static {
    fn add(&self, args: &Args, stdin: &[u8]) -> Result<CniResult, CniError> {
        let conf = PluginConf::parse(stdin, self.supported_versions())?;
        Ok(load(&conf, &args.cni_args)?.1)
    }

    fn del(&self, _args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        PluginConf::parse(stdin, self.supported_versions()).map(drop)
    }

    fn check(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let conf = PluginConf::parse(stdin, self.supported_versions())?;
        let (addrs, _) = load(&conf, &args.cni_args)?;
        let prev = conf
            .prev_result()?
            .ok_or_else(|| CniError::new(OTHER, "Required prevResult missing"))?;
        for a in &addrs {
            if let Some(ip) = prev
                .ips
                .iter()
                .find(|ip| ip.address.addr() == a.address.addr())
            {
                if a.gateway.is_some() && a.gateway != ip.gateway {
                    return Err(CniError::new(
                        OTHER,
                        format!(
                            "static: Failed to match addr {} on interface {}",
                            ip.address.addr(),
                            args.ifname
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
