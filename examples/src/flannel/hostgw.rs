//! The host-gw backend: a route to every peer's subnet via the peer's public address. All
//! nodes must share one L2 network; a peer that is not directly reachable is reported. For
//! IPv6 (`EnableIPv6`) a second instance routes every peer's IPv6 subnet via its
//! `PublicIPv6`, as flannel does.

use super::AgentError;
use super::backend::{Backend, Peer, Underlay, directly_reachable, prune_routes};
use ipnet::IpNet;
use podnet_links::{Handle, Route};

/// flannel's host-gw backend.
#[derive(Debug)]
pub(crate) struct HostGw;

impl Backend for HostGw {
    fn kind(&self) -> &'static str {
        "host-gw"
    }

    fn prepare(
        &mut self,
        _: &Handle,
        _: &Underlay,
    ) -> Result<Option<serde_json::Value>, AgentError> {
        Ok(None)
    }

    fn configure(
        &mut self,
        _: &Handle,
        under: &Underlay,
        _: IpNet,
        _: IpNet,
    ) -> Result<u32, AgentError> {
        Ok(under.mtu)
    }

    fn reconcile(
        &mut self,
        h: &Handle,
        under: &Underlay,
        network: IpNet,
        subnet: IpNet,
        peers: &[Peer],
    ) -> Result<(), AgentError> {
        let mut wanted = Vec::new();
        for p in peers {
            if !directly_reachable(h, p.public_ip, &under.name) {
                tracing::error!(
                    peer = %p.subnet,
                    public_ip = %p.public_ip,
                    "peer is not directly reachable on {}: host-gw needs every node on one L2 network; skipping it",
                    under.name
                );
                continue;
            }
            wanted.push(
                Route::new(p.subnet)
                    .via(p.public_ip)
                    .dev(under.name.as_str()),
            );
        }
        let mut b = h.batch();
        for r in &wanted {
            b.route().replace(r)?;
        }
        for (i, e) in b.execute()?.failures() {
            tracing::warn!(route = %wanted[i], "programming route: {e}");
        }
        prune_routes(h, network, subnet, &[under.name.as_str()], &wanted)
    }
}
