//! The IPv6 side of the simulated cluster: which families the flannel network has, its
//! net-conf.json, the nodes' IPv6 underlay, and waiting for IPv6 addresses to settle.

use super::{
    CLUSTER_NETWORK, CLUSTER_NETWORK6, Cluster, ClusterError, FABRIC_IP6, Options, wait_for,
};
use ipnet::IpNet;
use podnet_links::{AddressSpec, Handle, Route};
use podnet_netns::NetNs;
use std::net::Ipv6Addr;
use std::time::Duration;

/// The address families of the cluster's flannel network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Families {
    /// IPv4 only.
    #[default]
    V4,
    /// IPv4 and IPv6 (`EnableIPv6`).
    Dual,
    /// IPv6 only (`EnableIPv4: false`).
    V6,
}

impl Families {
    /// Whether the flannel network has IPv4.
    pub fn v4(self) -> bool {
        self != Families::V6
    }

    /// Whether the flannel network has IPv6.
    pub fn v6(self) -> bool {
        self != Families::V4
    }
}

/// The flannel network config of the cluster.
pub(super) fn net_conf(backend: &str, families: Families) -> String {
    match families {
        Families::V4 => {
            format!(r#"{{"Network": "{CLUSTER_NETWORK}", "Backend": {{"Type": "{backend}"}}}}"#)
        }
        Families::Dual => format!(
            r#"{{"Network": "{CLUSTER_NETWORK}", "EnableIPv6": true, "IPv6Network": "{CLUSTER_NETWORK6}", "Backend": {{"Type": "{backend}"}}}}"#
        ),
        Families::V6 => format!(
            r#"{{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "{CLUSTER_NETWORK6}", "Backend": {{"Type": "{backend}"}}}}"#
        ),
    }
}

/// Node `i`'s IPv6 underlay on a cluster with IPv6: fd18::i/64 on `eth0` (no duplicate address
/// detection: it is usable at once), the default route via the fabric, forwarding on.
pub(super) fn node_ipv6(
    opts: &Options,
    ns: &NetNs,
    h: &Handle,
    i: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<Ipv6Addr>, ClusterError> {
    if !opts.families.v6() {
        return Ok(None);
    }
    let ip6 = Ipv6Addr::new(0xfd18, 0, 0, 0, 0, 0, 0, i as u16);
    progress(&format!("node{i}: eth0 {ip6}/64"));
    let net = IpNet::new(ip6.into(), 64).expect("prefix");
    h.addr().add("eth0", AddressSpec::new(net).nodad())?;
    h.route()
        .add(&Route::new("::/0".parse().expect("literal")).via(FABRIC_IP6.into()))?;
    ns.sysctl_set("net.ipv6.conf.all.forwarding", "1")?;
    Ok(Some(ip6))
}

impl Cluster {
    /// Waits until no IPv6 address of a node or pod is still tentative (duplicate address
    /// detection running): until then the kernel neither answers neighbour solicitations for
    /// it nor sends from it, and the first packets to or from a fresh pod are lost.
    pub fn wait_ipv6_settled(&self, timeout: Duration) -> Result<(), ClusterError> {
        // IFA_F_TENTATIVE.
        const TENTATIVE: u32 = 0x40;
        let handles: Vec<Handle> = self
            .nodes
            .iter()
            .map(|n| &n.ns)
            .chain(self.pods.iter().map(|p| &p.ns))
            .map(Handle::in_ns)
            .collect::<Result<_, _>>()?;
        wait_for(
            timeout,
            "IPv6 addresses past duplicate address detection",
            || {
                let settled = handles.iter().all(|h| {
                    h.addr().list(None).is_ok_and(|addrs| {
                        addrs
                            .iter()
                            .all(|a| a.addr.addr().is_ipv4() || a.flags & TENTATIVE == 0)
                    })
                });
                settled.then_some(())
            },
        )
    }
}
