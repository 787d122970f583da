//! The udp backend: flannel's userspace tunnel, on podnet's `UdpTunnel`. One `flannel0` TUN
//! device with `<subnet>.0/32`, MTU underlay - 28 (IPv4 and UDP headers), a route for the
//! whole Network through it, and a tunnel on UDP port 8285 whose peers are the other nodes'
//! leases. Wire-compatible with flannel's own udp backend (an IPv4 packet as the UDP payload).
//!
//! Beyond flannel, each peer's subnet also gets a route through `flannel0` (same path, but
//! `ip route` then shows which peers the tunnel knows).
//!
//! IPv4 only, as flannel's udp backend: `EnableIPv6` with `"Type": "udp"` is refused by name
//! when the config is read.
//!
//! The device is persistent, so a restarted agent finds it (and the route through it) in
//! place and attaches to it again; the tunnel runs inside the agent and stops with it.

use super::AgentError;
use super::backend::{Backend, Peer, Underlay, overlay_mtu, prune_routes};
use ipnet::{IpNet, Ipv4Net};
use podnet_encap::tunnel::{self, Mode, UdpTunnel};
use podnet_links::{Handle, Route};
use std::net::{IpAddr, SocketAddrV4};

const DEV: &str = "flannel0";
/// IPv4 and UDP headers.
const OVERHEAD: u32 = 28;

/// flannel's udp backend.
#[derive(Debug)]
pub(crate) struct UdpBackend {
    port: u16,
    queues: u32,
    tunnel: Option<UdpTunnel>,
    peers: Vec<tunnel::Peer>,
}

impl UdpBackend {
    /// From the config's Backend object: Port (8285).
    pub(crate) fn from_json(v: &serde_json::Value) -> Result<UdpBackend, AgentError> {
        let port = match v.get("Port") {
            None | Some(serde_json::Value::Null) => u64::from(tunnel::PORT),
            Some(x) => x.as_u64().ok_or_else(|| {
                AgentError::Config(format!("Backend.Port must be a number, not {x}"))
            })?,
        };
        let port = u16::try_from(port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| AgentError::Config(format!("Backend.Port {port} is not a UDP port")))?;
        // One queue (and worker) per CPU, up to four.
        let queues = std::thread::available_parallelism()
            .map(|n| n.get().min(4) as u32)
            .unwrap_or(1);
        Ok(UdpBackend {
            port,
            queues,
            tunnel: None,
            peers: Vec::new(),
        })
    }

    /// Creates (or attaches to) flannel0, configures it, and starts the tunnel on it.
    fn start(
        &mut self,
        h: &Handle,
        under: &Underlay,
        network: Ipv4Net,
        subnet: Ipv4Net,
    ) -> Result<u32, AgentError> {
        if let Some(t) = self.tunnel.take() {
            if let Err(e) = t.stop() {
                tracing::warn!("previous tunnel ended with: {e}");
            }
        }
        let spec = tunnel::tun_spec(DEV, self.queues, Mode::Fast).persist(true);
        let dev = match h.link().add(&spec) {
            Ok(dev) => dev,
            Err(e) => {
                // A device left with other settings (queues, offloads) refuses to attach.
                tracing::warn!("attaching to {DEV}: {e}; recreating it");
                match h.link().del(DEV) {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
                h.link().add(&spec)?
            }
        };
        let mtu = overlay_mtu(under, OVERHEAD, "udp")?;
        let local = IpNet::new(IpAddr::V4(subnet.network()), 32).expect("/32");
        for a in h.addr().list(Some(DEV.into()))? {
            if a.addr.addr().is_ipv4() && a.addr != local {
                h.addr().del(DEV, a.addr)?;
            }
        }
        h.addr().replace(DEV, local)?;
        h.link().set(DEV).mtu(mtu).up().apply()?;
        h.route()
            .replace(&Route::new(IpNet::V4(network)).dev(DEV))?;
        let addr = SocketAddrV4::new(under.iface_addr, self.port);
        let sockets = tunnel::bind_sockets(addr, self.queues as usize)
            .map_err(|e| AgentError::Other(format!("binding UDP {addr}: {e}")))?;
        let t = UdpTunnel::builder()
            .tun(dev.into_queues())
            .sockets(sockets)
            // The Network's own address: in the cluster network but held by no node (leases
            // start one subnet above it), so the kernel does not drop the ICMP as a martian.
            .icmp_source(network.network())
            .local_subnet(subnet)
            .peers(&self.peers)
            .start()
            .map_err(|e| AgentError::Other(format!("starting the UDP tunnel: {e}")))?;
        tracing::info!(dev = DEV, %addr, workers = t.workers(), mtu, "UDP tunnel running");
        self.tunnel = Some(t);
        Ok(mtu)
    }
}

impl Backend for UdpBackend {
    fn kind(&self) -> &'static str {
        "udp"
    }

    fn prepare(
        &mut self,
        _: &Handle,
        under: &Underlay,
    ) -> Result<Option<serde_json::Value>, AgentError> {
        // Refuse an underlay too small for the tunnel before anything is built or leased.
        overlay_mtu(under, OVERHEAD, "udp")?;
        // flannel's udp leases carry no BackendData; the device needs the subnet first.
        Ok(None)
    }

    fn configure(
        &mut self,
        h: &Handle,
        under: &Underlay,
        network: IpNet,
        subnet: IpNet,
    ) -> Result<u32, AgentError> {
        let (network, subnet) = v4_only(network, subnet)?;
        self.start(h, under, network, subnet)
    }

    fn reconcile(
        &mut self,
        h: &Handle,
        under: &Underlay,
        network: IpNet,
        subnet: IpNet,
        peers: &[Peer],
    ) -> Result<(), AgentError> {
        let (network, subnet) = v4_only(network, subnet)?;
        let device_gone = match h.link().get(DEV) {
            Ok(_) => false,
            Err(e) if e.is_not_found() => true,
            Err(e) => return Err(e.into()),
        };
        let running = self.tunnel.as_ref().is_some_and(|t| t.is_running());
        if device_gone || !running {
            tracing::warn!(
                dev = DEV,
                device_gone,
                "device or tunnel missing: recreating them"
            );
            self.start(h, under, network, subnet)?;
        }
        let mut wanted = Vec::new();
        for p in peers {
            if p.backend_type != "udp" {
                tracing::warn!(peer = %p.subnet, backend = %p.backend_type, "peer uses another backend; skipping");
                continue;
            }
            let (IpNet::V4(peer_subnet), IpAddr::V4(peer_ip)) = (p.subnet, p.public_ip) else {
                tracing::warn!(peer = %p.subnet, "an IPv6 peer for the udp backend; skipping");
                continue;
            };
            wanted.push(tunnel::Peer::new(peer_subnet, peer_ip).with_port(self.port));
        }
        wanted.sort_by_key(|p| (p.subnet, *p.addr.ip()));
        if let Some(t) = &self.tunnel {
            if wanted != self.peers {
                tracing::info!(peers = wanted.len(), "UDP tunnel peers updated");
                t.replace_peers(&wanted);
            }
            tracing::debug!(counters = %t.counters(), "UDP tunnel");
        }
        // The whole Network through flannel0 (flannel's one route, restored if someone
        // removed it), and, for `ip route` to show what the tunnel knows, each peer's subnet
        // through it too.
        let mut routes = vec![Route::new(IpNet::V4(network)).dev(DEV)];
        routes.extend(
            wanted
                .iter()
                .map(|p| Route::new(IpNet::V4(p.subnet)).dev(DEV)),
        );
        let mut b = h.batch();
        for r in &routes {
            b.route().replace(r)?;
        }
        for (i, e) in b.execute()?.failures() {
            tracing::warn!(route = %routes[i], "programming route: {e}");
        }
        for r in h.route().list()? {
            let IpNet::V4(dst) = r.dst else { continue };
            let on_dev = r.dev.as_ref().is_some_and(|d| d.to_string() == DEV);
            if on_dev
                && r.gateway.is_none()
                && network.contains(&dst)
                && dst != network
                && !wanted.iter().any(|p| p.subnet == dst)
            {
                tracing::info!(route = %r, "removing stale route");
                let _ = h.route().del(&r);
            }
        }
        self.peers = wanted;
        prune_routes(
            h,
            IpNet::V4(network),
            IpNet::V4(subnet),
            &[DEV, under.name.as_str()],
            &[],
        )
    }
}

/// The udp backend's IPv4 network and subnet (it is never built for IPv6).
fn v4_only(network: IpNet, subnet: IpNet) -> Result<(Ipv4Net, Ipv4Net), AgentError> {
    match (network, subnet) {
        (IpNet::V4(n), IpNet::V4(s)) => Ok((n, s)),
        _ => Err(AgentError::Config(
            "flannel's udp backend is IPv4-only".into(),
        )),
    }
}
