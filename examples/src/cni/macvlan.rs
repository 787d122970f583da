//! The `macvlan` plugin: a macvlan device on `master` (in the namespace the plugin runs in)
//! moved into the container under CNI_IFNAME, addresses from the IPAM plugin run from
//! `CNI_PATH` (or none: layer 2 only), as the reference plugin does.

use super::bridge::{
    add_address, container_route, del_container_link, del_interface, open_container,
    random_veth_name,
};
use super::check;
use super::error::{CHECK_FAILED, CniError, CniErrorExt, KERNEL};
use podnet_cni::{Args, CniResult, Interface, IpCfg, Plugin, PluginConf, invoke};
use podnet_links::{Handle, LinkKind, LinkSysctl, MacAddr, Macvlan as MacvlanSpec, MacvlanMode};
use podnet_netns::NetNs;

/// The `macvlan` plugin.
pub struct Macvlan;

struct Conf {
    base: PluginConf,
    master: String,
    mode: MacvlanMode,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
}

fn parse(
    stdin: &[u8],
    supported: &[&str],
    cni_args: &str,
    host: &Handle,
) -> Result<Conf, CniError> {
    let base = PluginConf::parse(stdin, supported)?;
    let master = base
        .str("master")?
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            CniError::invalid(
                "master",
                "missing: podnet's macvlan needs the parent interface named (the reference \
                 falls back to the default route's)",
            )
        })?
        .to_owned();
    let mode = match base.str("mode")?.unwrap_or("") {
        "" | "bridge" => MacvlanMode::Bridge,
        "private" => MacvlanMode::Private,
        "vepa" => MacvlanMode::Vepa,
        "passthru" => MacvlanMode::Passthru,
        other => {
            return Err(CniError::invalid(
                "mode",
                format!("unknown macvlan mode: {other:?}"),
            ));
        }
    };
    let parent = host.link().get(master.as_str()).map_err(|e| {
        if e.is_not_found() {
            CniError::invalid(
                "master",
                format!("failed to lookup master {master:?}: no such interface"),
            )
        } else {
            CniError::kernel(format!("failed to lookup master {master:?}"), e)
        }
    })?;
    let mtu = match base.raw.get("mtu").and_then(serde_json::Value::as_i64) {
        None | Some(0) => None,
        Some(m) if m > 0 && m <= i64::from(parent.mtu) => Some(m as u32),
        Some(m) => {
            return Err(CniError::invalid(
                "mtu",
                format!("invalid MTU {m}, must be [0, master MTU({})]", parent.mtu),
            ));
        }
    };
    let mut mac = None;
    let parse_mac = |f: &str, s: &str| {
        s.parse::<MacAddr>()
            .map_err(|_| CniError::invalid(f, format!("invalid args {s} for MAC addr")))
    };
    if let Some(m) = base.str("mac")?.filter(|m| !m.is_empty()) {
        mac = Some(parse_mac("mac", m)?);
    }
    if let Some(m) = args_mac(cni_args) {
        mac = Some(parse_mac("CNI_ARGS MAC", m)?);
    }
    if let Some(m) = base
        .runtime_config
        .get("mac")
        .and_then(serde_json::Value::as_str)
        .filter(|m| !m.is_empty())
    {
        mac = Some(parse_mac("runtimeConfig.mac", m)?);
    }
    Ok(Conf {
        base,
        master,
        mode,
        mtu,
        mac,
    })
}

fn args_mac(cni_args: &str) -> Option<&str> {
    cni_args
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "MAC")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

fn host() -> Result<Handle, CniError> {
    Handle::new().map_err(|e| CniError::kernel("netlink socket", e))
}

impl Macvlan {
    fn attach(
        &self,
        args: &Args,
        stdin: &[u8],
        conf: &Conf,
        netns: &NetNs,
        host: &Handle,
    ) -> Result<CniResult, CniError> {
        let container = Handle::in_ns(netns)
            .map_err(|e| CniError::kernel("netlink in the container namespace", e))?;
        let tmp = random_veth_name();
        let mut spec = MacvlanSpec::new(&tmp, conf.master.as_str()).mode(conf.mode);
        if let Some(m) = conf.mtu {
            spec = spec.mtu(m);
        }
        if let Some(m) = conf.mac {
            spec = spec.mac(m);
        }
        host.link()
            .add(&spec)
            .map_err(|e| CniError::kernel("failed to create macvlan", e))?;
        if let Err(e) = host.link().set(tmp.as_str()).netns(netns).apply() {
            let _ = host.link().del(tmp.as_str());
            return Err(CniError::kernel("moving the macvlan into the container", e));
        }
        container
            .link()
            .set(tmp.as_str())
            .name(args.ifname.clone())
            .apply()
            .map_err(|e| {
                let _ = container.link().del(tmp.as_str());
                CniError::kernel(format!("failed to rename macvlan to {:?}", args.ifname), e)
            })?;
        let link = container.link().get(args.ifname.as_str()).map_err(|e| {
            CniError::kernel(format!("failed to refetch macvlan {:?}", args.ifname), e)
        })?;
        let mut result = CniResult {
            interfaces: vec![Interface {
                name: args.ifname.clone(),
                mac: link.mac.map(|m| m.to_string()).unwrap_or_default(),
                mtu: Some(link.mtu),
                sandbox: Some(args.netns.clone()),
            }],
            dns: conf.base.dns.clone(),
            ..CniResult::default()
        };
        if let Some(ipam) = &conf.base.ipam_type {
            let r = invoke::exec_add(ipam, args, stdin)?;
            if r.ips.is_empty() {
                return Err(CniError::new(
                    KERNEL,
                    "IPAM plugin returned missing IP config",
                ));
            }
            result.ips = r
                .ips
                .into_iter()
                .map(|ip| IpCfg {
                    interface: Some(0),
                    ..ip
                })
                .collect();
            result.routes = r.routes;
            let _ = container
                .sysctl()
                .set(&args.ifname, LinkSysctl::ArpNotify, 1);
            container
                .link()
                .set(link.index)
                .up()
                .apply()
                .map_err(|e| CniError::kernel(format!("failed to set {:?} UP", args.ifname), e))?;
            for ip in &result.ips {
                add_address(&container, link.index, ip.address)
                    .map_err(|e| CniError::kernel(format!("adding {}", ip.address), e))?;
            }
            for r in &result.routes {
                let route = container_route(r, link.index, &result);
                match container.route().add(&route) {
                    Ok(()) => {}
                    Err(e) if e.is_exists() => {}
                    Err(e) => return Err(CniError::kernel(format!("adding route {route}"), e)),
                }
            }
        } else {
            container
                .link()
                .set(link.index)
                .up()
                .apply()
                .map_err(|e| CniError::kernel(format!("failed to set {:?} UP", args.ifname), e))?;
        }
        Ok(result)
    }
}

impl Plugin for Macvlan {
    fn add(&self, args: &Args, stdin: &[u8]) -> Result<CniResult, CniError> {
        let host = host()?;
        let conf = parse(stdin, self.supported_versions(), &args.cni_args, &host)?;
        let netns = open_container(&args.netns)?;
        let out = self.attach(args, stdin, &conf, &netns, &host);
        if out.is_err() {
            let _ = del_interface(&netns, &args.ifname);
            if let Some(ipam) = &conf.base.ipam_type {
                let _ = invoke::exec_del(ipam, args, stdin);
            }
        }
        out
    }

    fn del(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let base = PluginConf::parse(stdin, self.supported_versions())?;
        del_container_link(base.ipam_type.as_deref(), args, stdin)
    }

    fn check(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let host = host()?;
        let conf = parse(stdin, self.supported_versions(), &args.cni_args, &host)?;
        let prev = conf.base.prev_result()?.ok_or_else(|| {
            CniError::invalid("prevResult", "missing: CHECK needs the result of ADD")
        })?;
        if let Some(ipam) = &conf.base.ipam_type {
            invoke::exec_check(ipam, args, stdin)?;
        }
        check::sandbox_matches(&prev, &args.ifname, &args.netns)?;
        let netns = open_container(&args.netns)?;
        let container = Handle::in_ns(&netns)
            .map_err(|e| CniError::kernel("netlink in the container namespace", e))?;
        let link = container.link().get(args.ifname.as_str()).map_err(|e| {
            CniError::new(
                CHECK_FAILED,
                format!("{} in the container: {e}", args.ifname),
            )
        })?;
        if link.kind != Some(LinkKind::Macvlan) {
            return Err(CniError::new(
                CHECK_FAILED,
                format!(
                    "Error: Container interface {} not of type macvlan",
                    args.ifname
                ),
            ));
        }
        check::interface_ips_and_routes(&container, &args.ifname, &prev)
    }
}
