//! The node's addresses, taken the way kube-proxy takes them rather than guessed from
//! interface names: every address of the node, on any interface, followed as they change.
//!
//! - Node ports: with `--nodeport-addresses` empty, iptables and nftables modes match every
//!   local address in the kernel (`-m addrtype --dst-type LOCAL`, `fib daddr type local`) and
//!   need no list; ipvs mode, and every mode with `--nodeport-addresses`, pick from the list
//!   returned here: every address of the family on any interface (`ens3`, `bond0`, `eth0`,
//!   ...), except loopback and `kube-ipvs0` (whose addresses are Service IPs).
//! - Where one concrete node IP is needed (the allow-from-node rule of load-balancer source
//!   ranges), it comes first: `--bind-address` when set to a specific address (as upstream),
//!   else the source address of the route to the default gateway, else none.
//! - [`AddressWatch`] follows address and route changes (podnet-links' event monitor), so
//!   the sync loop can read them again and resync when they changed.

use podnet_links::{Event, Group, Handle, Monitor};
use podnet_nat::kube::IpFamily;
use podnet_nat::kube_proxy::ipvs_mode::DUMMY_DEVICE;
use podnet_netns::NetNs;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where a proxy's node addresses come from.
#[derive(Debug, Clone)]
pub enum NodeIpSource {
    /// Given (`--node-ip`): used as they are, never read again.
    Fixed(Vec<IpAddr>),
    /// Read from the kernel of `ns`, and again whenever its addresses or routes change.
    Kernel {
        /// The namespace whose addresses are the node's.
        ns: NetNs,
        /// `--bind-address`, when set to a specific address: the primary node IP.
        bind_address: Option<IpAddr>,
    },
}

/// One address of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddr {
    /// The interface's name (or the address label).
    pub dev: String,
    /// The address.
    pub ip: IpAddr,
}

/// The node IPs of `family` from the interfaces' addresses: the primary first (`bind` when
/// given, else `default_src`, the source of the route to the default gateway, when it is one
/// of them), then every other address of the family except loopback and those of
/// `kube-ipvs0`, in address order, each once.
pub fn node_ips(
    family: IpFamily,
    bind: Option<IpAddr>,
    default_src: Option<IpAddr>,
    addrs: &[LocalAddr],
) -> Vec<IpAddr> {
    let mut all: Vec<IpAddr> = addrs
        .iter()
        .filter(|a| a.dev != DUMMY_DEVICE)
        .map(|a| a.ip)
        .filter(|ip| IpFamily::of(ip) == family && !ip.is_loopback())
        .collect();
    all.sort();
    all.dedup();
    let primary = bind
        .filter(|ip| IpFamily::of(ip) == family && !ip.is_unspecified())
        .or(default_src.filter(|ip| all.contains(ip)));
    match primary {
        Some(p) => std::iter::once(p)
            .chain(all.into_iter().filter(|ip| *ip != p))
            .collect(),
        None => all,
    }
}

/// The source address of the route to the default gateway of `family` (the kernel's own
/// lookup of the gateway, as `ip route get GATEWAY` shows it), if there is a default route.
fn default_route_source(h: &Handle, family: IpFamily) -> podnet_links::Result<Option<IpAddr>> {
    let mut defaults: Vec<podnet_links::Route> = h
        .route()
        .list()?
        .into_iter()
        .filter(|r| r.dst.prefix_len() == 0 && IpFamily::of(&r.dst.addr()) == family)
        .filter(|r| r.table == podnet_links::TABLE_MAIN)
        .collect();
    defaults.sort_by_key(|r| r.metric.unwrap_or(0));
    let Some(route) = defaults.first() else {
        return Ok(None);
    };
    if let Some(src) = route.src {
        return Ok(Some(src));
    }
    let Some(gw) = route.gateway else {
        return Ok(None);
    };
    match h.route().get(gw) {
        Ok(r) => Ok(r.src),
        // The gateway is not reachable now: no source to name.
        Err(e)
            if matches!(
                e.errno(),
                Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Reads the node IPs of `family` in `ns` (see [`node_ips`]).
pub fn read_node_ips(
    ns: &NetNs,
    family: IpFamily,
    bind: Option<IpAddr>,
) -> podnet_links::Result<Vec<IpAddr>> {
    let h = Handle::in_ns(ns)?;
    let addrs: Vec<LocalAddr> = h
        .addr()
        .list(None)?
        .into_iter()
        .map(|a| LocalAddr {
            dev: a.dev.clone().or(a.label.clone()).unwrap_or_default(),
            ip: a.addr.addr(),
        })
        .collect();
    let src = default_route_source(&h, family)?;
    Ok(node_ips(family, bind, src, &addrs))
}

impl NodeIpSource {
    /// The node IPs of `family` now.
    pub fn read(&self, family: IpFamily) -> Result<Vec<IpAddr>, String> {
        match self {
            NodeIpSource::Fixed(ips) => Ok(ips.clone()),
            NodeIpSource::Kernel { ns, bind_address } => read_node_ips(ns, family, *bind_address)
                .map_err(|e| format!("reading the node's addresses: {e}")),
        }
    }
}

/// Follows a namespace's address and route changes on a thread of its own until `stop` is
/// set; [`AddressWatch::changed`] says whether something changed since it was last asked.
#[derive(Debug)]
pub struct AddressWatch {
    changed: Arc<AtomicBool>,
}

impl AddressWatch {
    /// Starts watching `ns`.
    pub fn start(ns: &NetNs, stop: Arc<AtomicBool>) -> podnet_links::Result<AddressWatch> {
        let mut monitor = Monitor::in_ns(
            ns,
            &[
                Group::Ipv4Addr,
                Group::Ipv6Addr,
                Group::Ipv4Route,
                Group::Ipv6Route,
            ],
        )?;
        let changed = Arc::new(AtomicBool::new(false));
        let flag = changed.clone();
        std::thread::Builder::new()
            .name("node-addresses".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match monitor.next_timeout(Some(Duration::from_millis(200))) {
                        Ok(Some(
                            Event::NewAddress(_)
                            | Event::DelAddress(_)
                            | Event::NewRoute(_)
                            | Event::DelRoute(_),
                        )) => flag.store(true, Ordering::Relaxed),
                        Ok(_) => {}
                        Err(e) => {
                            // Events may have been lost (a full socket buffer): read again.
                            tracing::warn!("watching the node's addresses: {e}");
                            flag.store(true, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_secs(1));
                        }
                    }
                }
            })
            .map_err(|e| {
                podnet_links::Error::Netlink(podnet_links::netlink::NetlinkError::Io(e))
            })?;
        Ok(AddressWatch { changed })
    }

    /// `true` once after addresses or routes changed.
    pub fn changed(&self) -> bool {
        self.changed.swap(false, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(dev: &str, ip: &str) -> LocalAddr {
        LocalAddr {
            dev: dev.into(),
            ip: ip.parse().unwrap(),
        }
    }

    #[test]
    fn every_interface_counts_and_the_primary_comes_first() {
        let addrs = [
            a("lo", "127.0.0.1"),
            a("ens3", "198.18.5.1"),
            a("bond0", "198.18.6.1"),
            a("ens3", "198.18.5.7"),
            a("kube-ipvs0", "10.96.0.10"),
            a("ens3", "fd01::1"),
            a("bond0", "198.18.6.1"),
        ];
        let v4 = IpFamily::V4;
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert_eq!(
            node_ips(v4, None, None, &addrs),
            [ip("198.18.5.1"), ip("198.18.5.7"), ip("198.18.6.1")]
        );
        assert_eq!(
            node_ips(v4, None, Some(ip("198.18.6.1")), &addrs),
            [ip("198.18.6.1"), ip("198.18.5.1"), ip("198.18.5.7")]
        );
        // --bind-address wins; 0.0.0.0 is no choice; a default source that is not a node
        // address (a stale route) is ignored.
        assert_eq!(
            node_ips(v4, Some(ip("198.18.5.7")), Some(ip("198.18.6.1")), &addrs)[0],
            ip("198.18.5.7")
        );
        assert_eq!(
            node_ips(v4, Some(ip("0.0.0.0")), Some(ip("198.18.6.1")), &addrs)[0],
            ip("198.18.6.1")
        );
        assert_eq!(
            node_ips(v4, None, Some(ip("203.0.113.9")), &addrs)[0],
            ip("198.18.5.1")
        );
        assert_eq!(node_ips(IpFamily::V6, None, None, &addrs), [ip("fd01::1")]);
        assert!(node_ips(v4, None, None, &[]).is_empty());
    }
}
