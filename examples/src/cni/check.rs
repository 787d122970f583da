//! CHECK of the bridge plugin: the lease, the bridge, the veth pair, and the container's
//! addresses and routes compared with `prevResult`, each by a function of its own.

use super::bridge::{IFF_PROMISC, open_container};
use super::config::NetConf;
use super::error::CniErrorExt;
use super::error::{CHECK_FAILED, CniError, INVALID_CONFIG};
use super::ipam;
use podnet_cni::Args;
use podnet_cni::CniResult;
use podnet_links::{Handle, Link, LinkKind};
use std::net::IpAddr;

fn check_failed(msg: impl Into<String>) -> CniError {
    CniError::new(CHECK_FAILED, msg)
}

/// CHECK: compares the lease, the bridge, the veth pair, and the container's addresses and
/// routes with `prevResult`.
pub(crate) fn check(args: &Args, conf: &NetConf, stdin: &[u8]) -> Result<(), CniError> {
    let Some(prev) = &conf.prev_result else {
        return Err(CniError::new(
            INVALID_CONFIG,
            "CHECK needs prevResult: pass the result of the ADD in the config's \"prevResult\"",
        ));
    };
    let prev = CniResult::from_prev(prev)?;
    if let Some(ipam) = &conf.ipam_delegate {
        podnet_cni::invoke::exec_check(ipam, args, stdin)?;
    }
    if conf.has_ipam {
        check_lease(args, conf, stdin, &prev)?;
    }
    let host = Handle::new().map_err(|e| CniError::kernel("netlink socket", e))?;
    let bridge = check_bridge(&host, conf, &prev)?;
    let Some(slot) = prev
        .interfaces
        .iter()
        .position(|i| i.name == args.ifname && i.sandbox.as_deref() == Some(args.netns.as_str()))
    else {
        return Err(check_failed(format!(
            "prevResult has no interface {} in sandbox {}",
            args.ifname, args.netns
        )));
    };
    let netns = open_container(&args.netns)?;
    let container = Handle::in_ns(&netns)
        .map_err(|e| CniError::kernel("netlink in the container namespace", e))?;
    let container_end = check_veth_pair(args, conf, &prev, slot, (&host, &bridge), &container)?;
    check_container_config(args, &prev, slot, &container, &container_end)
}

/// The addresses of `prevResult` in the network's ranges are leased to this container.
fn check_lease(
    args: &Args,
    conf: &NetConf,
    stdin: &[u8],
    prev: &CniResult,
) -> Result<(), CniError> {
    let alloc = ipam::open(stdin)?;
    let leases = alloc.leases().map_err(super::error::alloc)?;
    let mine: Vec<IpAddr> = leases
        .iter()
        .filter(|l| {
            l.container_id == args.container_id
                && l.ifname.as_deref().is_none_or(|i| i == args.ifname)
        })
        .map(|l| l.ip)
        .collect();
    if mine.is_empty() {
        return Err(check_failed(format!(
            "ipam: no address is leased to container {} ({}) in network {:?}",
            args.container_id, args.ifname, conf.name
        )));
    }
    for ip in &prev.ips {
        let ours = alloc
            .config()
            .ranges
            .iter()
            .any(|s| s.iter().any(|r| r.contains(ip.address.addr())));
        if ours && !mine.contains(&ip.address.addr()) {
            return Err(check_failed(format!(
                "ipam: {} is not leased to container {}",
                ip.address, args.container_id
            )));
        }
    }
    Ok(())
}

/// The bridge is there, a bridge, with the MAC of `prevResult` and the promiscuous mode of the
/// config.
fn check_bridge(host: &Handle, conf: &NetConf, prev: &CniResult) -> Result<Link, CniError> {
    let bridge = host
        .link()
        .get(conf.bridge.as_str())
        .map_err(|e| check_failed(format!("bridge {}: {e}", conf.bridge)))?;
    if bridge.kind != Some(LinkKind::Bridge) {
        return Err(check_failed(format!("{} is not a bridge", conf.bridge)));
    }
    if let Some(i) = prev.interfaces.iter().find(|i| i.name == conf.bridge) {
        let mac = bridge.mac.map(|m| m.to_string()).unwrap_or_default();
        if !i.mac.is_empty() && i.mac != mac {
            return Err(check_failed(format!(
                "bridge {} has MAC {mac}, prevResult says {}",
                conf.bridge, i.mac
            )));
        }
    }
    let promisc = bridge.flags & IFF_PROMISC != 0;
    if promisc != conf.promisc_mode {
        return Err(check_failed(format!(
            "bridge {}: promiscuous mode is {promisc}, the config says {}",
            conf.bridge, conf.promisc_mode
        )));
    }
    Ok(bridge)
}

/// The container's interface (at `slot` of `prevResult`'s interfaces) is a veth with the MAC
/// of `prevResult`, whose peer is one of `prevResult`'s host interfaces on the bridge. Returns
/// the container's end.
fn check_veth_pair(
    args: &Args,
    conf: &NetConf,
    prev: &CniResult,
    slot: usize,
    (host, bridge): (&Handle, &Link),
    container: &Handle,
) -> Result<Link, CniError> {
    let container_end = container
        .link()
        .get(args.ifname.as_str())
        .map_err(|e| check_failed(format!("{} in the container: {e}", args.ifname)))?;
    if container_end.kind != Some(LinkKind::Veth) {
        return Err(check_failed(format!(
            "{} in the container is not a veth",
            args.ifname
        )));
    }
    let want_mac = &prev.interfaces[slot].mac;
    let have_mac = container_end.mac.map(|m| m.to_string()).unwrap_or_default();
    if !want_mac.is_empty() && *want_mac != have_mac {
        return Err(check_failed(format!(
            "{} has MAC {have_mac}, prevResult says {want_mac}",
            args.ifname
        )));
    }
    let peer = prev.interfaces.iter().enumerate().find_map(|(i, intf)| {
        if i == slot || intf.name == conf.bridge || intf.sandbox.is_some() {
            return None;
        }
        let l = host.link().get(intf.name.as_str()).ok()?;
        (l.kind == Some(LinkKind::Veth)
            && l.master == Some(bridge.index)
            && container_end.link == Some(l.index)
            && l.link == Some(container_end.index))
        .then_some(l)
    });
    if peer.is_none() {
        return Err(check_failed(format!(
            "no veth of prevResult on bridge {} is the peer of {} in the container",
            conf.bridge, args.ifname
        )));
    }
    Ok(container_end)
}

/// The container's interface has `prevResult`'s addresses, and the container its routes.
fn check_container_config(
    args: &Args,
    prev: &CniResult,
    slot: usize,
    container: &Handle,
    container_end: &Link,
) -> Result<(), CniError> {
    let have = container
        .addr()
        .list(Some(container_end.index.into()))
        .map_err(|e| CniError::kernel(format!("listing the addresses of {}", args.ifname), e))?;
    for ip in prev.ips.iter().filter(|i| i.interface == Some(slot)) {
        if !have.iter().any(|a| a.addr == ip.address) {
            return Err(check_failed(format!(
                "{} in the container does not have {}",
                args.ifname, ip.address
            )));
        }
    }
    let routes = container
        .route()
        .table(0)
        .list()
        .map_err(|e| CniError::kernel("listing the container's routes", e))?;
    // A route to each address's prefix, as the reference's ip.ValidateExpectedInterfaceIPs.
    for ip in prev.ips.iter().filter(|i| i.interface == Some(slot)) {
        let prefix = ip.address.trunc();
        if !routes.iter().any(|k| k.dst == prefix && k.table == 254) {
            return Err(check_failed(format!(
                "Failed to find a route to {prefix} (the prefix of {}) for interface {}",
                ip.address, args.ifname
            )));
        }
    }
    for r in &prev.routes {
        let gw = r.gw.or_else(|| {
            prev.ips
                .iter()
                .find(|i| i.address.addr().is_ipv4() == r.dst.addr().is_ipv4())
                .and_then(|i| i.gateway)
        });
        let found = routes
            .iter()
            .any(|k| k.dst == r.dst && (gw.is_none() || k.gateway == gw));
        if !found {
            return Err(check_failed(format!(
                "route {}{} is missing in the container",
                r.dst,
                gw.map(|g| format!(" via {g}")).unwrap_or_default()
            )));
        }
    }
    Ok(())
}

/// CHECK of a container interface's IP configuration against `prevResult`, as the reference
/// plugins' `ip.ValidateExpectedInterfaceIPs` and `ip.ValidateExpectedRoute` do it (ptp,
/// macvlan, ipvlan, host-device): every address of `prevResult` is on `ifname`, with a route
/// to its prefix in the main table; every route of `prevResult` is in the main table, matched
/// by destination and, when it names one, gateway (a default route by family alone).
pub(crate) fn interface_ips_and_routes(
    container: &Handle,
    ifname: &str,
    prev: &CniResult,
) -> Result<(), CniError> {
    let link = container
        .link()
        .get(ifname)
        .map_err(|e| check_failed(format!("{ifname} in the container: {e}")))?;
    let have = container
        .addr()
        .list(Some(link.index.into()))
        .map_err(|e| CniError::kernel(format!("listing the addresses of {ifname}"), e))?;
    let routes = container
        .route()
        .list()
        .map_err(|e| CniError::kernel("listing the container's routes", e))?;
    for ip in &prev.ips {
        if !have.iter().any(|a| a.addr == ip.address) {
            return Err(check_failed(format!(
                "Failed to match addr {} on interface {ifname}",
                ip.address
            )));
        }
        let prefix = ip.address.trunc();
        if !routes.iter().any(|r| r.dst == prefix) {
            return Err(check_failed(format!(
                "Failed to find a route to {prefix} (the prefix of {}) for interface {ifname}",
                ip.address
            )));
        }
    }
    for r in &prev.routes {
        let default = r.dst.prefix_len() == 0;
        let found = routes
            .iter()
            .any(|k| k.dst == r.dst && (default || r.gw.is_none() || k.gateway == r.gw));
        if !found {
            return Err(check_failed(format!(
                "Expected Route {}{} not found in routing table",
                r.dst,
                r.gw.map(|g| format!(" via {g}")).unwrap_or_default()
            )));
        }
    }
    Ok(())
}

/// The interface of `prevResult` named `ifname` is in sandbox `netns`, as the reference
/// plugins' CHECK requires.
pub(crate) fn sandbox_matches(prev: &CniResult, ifname: &str, netns: &str) -> Result<(), CniError> {
    let found = prev
        .interfaces
        .iter()
        .find(|i| i.name == ifname && i.sandbox.as_deref() == Some(netns));
    if found.is_none() {
        let other = prev
            .interfaces
            .iter()
            .find(|i| i.name == ifname)
            .and_then(|i| i.sandbox.clone())
            .unwrap_or_default();
        return Err(check_failed(format!(
            "Sandbox in prevResult {other} doesn't match configured netns: {netns}"
        )));
    }
    Ok(())
}
