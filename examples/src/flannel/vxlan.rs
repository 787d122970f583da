//! The vxlan backend: one `flannel.<VNI>` device; per peer a permanent neighbour entry
//! (`<peer subnet>.0` -> peer VTEP MAC), an FDB entry (peer VTEP MAC -> peer public IP) and the
//! route `<peer subnet> via <peer subnet>.0 dev flannel.<VNI> onlink`. With DirectRouting, a
//! peer on the same L2 network gets a plain route via its public IP instead.
//!
//! IPv6 (`EnableIPv6`) is a second instance, as flannel has it: the device
//! `flannel-v6.<VNI>` over the underlay's IPv6 address (same VNI and port), `<subnet>::/128`
//! on it, and per peer the neighbour `<peer IPv6 subnet>::` -> the VtepMAC of the peer's
//! `BackendV6Data`, the FDB entry to its `PublicIPv6` and the route
//! `<peer IPv6 subnet> via <peer IPv6 subnet>:: dev flannel-v6.<VNI> onlink`.

use super::AgentError;
use super::backend::{
    Backend, Family, MIN_MTU, Peer, Underlay, directly_reachable, overlay_mtu, prune_routes,
};
use ipnet::IpNet;
use podnet_links::{Error, FdbEntry, Handle, LinkSysctl, MacAddr, Neighbour, Route, Vni, Vxlan};
use std::net::IpAddr;

/// The smallest MTU a link may have and still carry IPv6 (RFC 8200).
const MIN_MTU_V6: u32 = 1280;

/// flannel's vxlan backend.
#[derive(Debug)]
pub(crate) struct VxlanBackend {
    family: Family,
    vni: Vni,
    port: u16,
    gbp: bool,
    direct_routing: bool,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    subnet: Option<IpNet>,
}

impl VxlanBackend {
    /// From the config's Backend object: VNI (1), Port (8472), GBP, DirectRouting, MTU.
    pub(crate) fn from_json(
        v: &serde_json::Value,
        family: Family,
    ) -> Result<VxlanBackend, AgentError> {
        let num = |k: &str, default: u64| -> Result<u64, AgentError> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(default),
                Some(x) => x.as_u64().ok_or_else(|| {
                    AgentError::Config(format!("Backend.{k} must be a number, not {x}"))
                }),
            }
        };
        let vni = num("VNI", 1)?;
        let vni = u32::try_from(vni)
            .ok()
            .and_then(Vni::new)
            .ok_or_else(|| AgentError::Config(format!("Backend.VNI {vni} is above 2^24-1")))?;
        let port = num("Port", 8472)?;
        let port = u16::try_from(port)
            .map_err(|_| AgentError::Config(format!("Backend.Port {port} is not a UDP port")))?;
        let flag = |k: &str| v.get(k).and_then(|x| x.as_bool()).unwrap_or(false);
        let mtu = match num("MTU", 0)? {
            0 => None,
            m => Some(
                u32::try_from(m)
                    .ok()
                    .filter(|m| (MIN_MTU..=65535).contains(m))
                    .ok_or_else(|| {
                        AgentError::Config(format!(
                            "Backend.MTU {m} is not an MTU ({MIN_MTU} to 65535; 0 or absent: \
                             the underlay's less 50)"
                        ))
                    })?,
            ),
        };
        Ok(VxlanBackend {
            family,
            vni,
            port: if port == 0 { 8472 } else { port },
            gbp: flag("GBP"),
            direct_routing: flag("DirectRouting"),
            mtu,
            mac: None,
            subnet: None,
        })
    }

    fn dev(&self) -> String {
        match self.family {
            Family::V4 => format!("flannel.{}", self.vni),
            Family::V6 => format!("flannel-v6.{}", self.vni),
        }
    }

    /// The underlay address of this family (the device's local address).
    fn local(&self, under: &Underlay) -> Result<IpAddr, AgentError> {
        under.local(self.family).ok_or_else(|| {
            AgentError::Underlay(format!("{} has no {} address", under.name, self.family))
        })
    }

    /// The device's MTU: `Backend.MTU`, else the underlay's less the 50 bytes of VXLAN over
    /// IPv4 (70 over IPv6) (an error when the underlay is too small for that).
    fn mtu(&self, under: &Underlay) -> Result<u32, AgentError> {
        match (self.mtu, self.family) {
            (Some(m), _) => Ok(m),
            (None, Family::V4) => overlay_mtu(under, 50, "vxlan"),
            (None, Family::V6) => {
                let m = overlay_mtu(under, 70, "vxlan")?;
                if m < MIN_MTU_V6 {
                    return Err(AgentError::Underlay(format!(
                        "{} has MTU {}: VXLAN over IPv6 leaves {m}, less than the {MIN_MTU_V6} \
                         IPv6 needs (raise the MTU, or choose --iface)",
                        under.name, under.mtu
                    )));
                }
                Ok(m)
            }
        }
    }

    fn spec(&self, under: &Underlay, mtu: u32) -> Result<Vxlan, AgentError> {
        let mut spec = Vxlan::new(self.dev(), self.vni.get())
            .local(self.local(under)?)
            .dev(under.index)
            .port(self.port)
            .learning(false)
            .gbp(self.gbp)
            .mtu(mtu);
        if let Some(mac) = self.mac {
            spec = spec.mac(mac);
        }
        Ok(spec)
    }

    /// Creates the device, or adopts an existing one that matches (keeping its MAC, so peers'
    /// entries stay valid across a restart).
    fn ensure_device(&mut self, h: &Handle, under: &Underlay) -> Result<bool, AgentError> {
        let dev = self.dev();
        let mtu = self.mtu(under)?;
        let local = self.local(under)?;
        match h.link().get(dev.as_str()) {
            Ok(link) => {
                let matches = link.vxlan.as_ref().is_some_and(|v| {
                    v.vni == self.vni.get()
                        && v.port == self.port
                        && v.local == Some(local)
                        && v.dev == Some(under.index)
                        && v.gbp == self.gbp
                });
                if matches {
                    self.mac = self.mac.or(link.mac);
                    return Ok(false);
                }
                tracing::warn!(%dev, "existing device does not match the config; recreating it");
                h.link().del(dev.as_str())?;
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        h.link().add(&self.spec(under, mtu)?)?;
        if self.family == Family::V6 {
            // As flannel: no router advertisements on the overlay device.
            if let Err(e) = h.sysctl().set(dev.as_str(), LinkSysctl::AcceptRa, 0) {
                tracing::warn!(%dev, "accept_ra=0: {e}");
            }
        }
        self.mac = h.link().get(dev.as_str())?.mac;
        tracing::info!(%dev, mac = ?self.mac, "created VXLAN device");
        Ok(true)
    }

    /// `<subnet>.0/32` (IPv6: `<subnet>::/128`) on the device, and nothing else of the family
    /// (the IPv6 link-local address stays).
    fn address(&self, h: &Handle, subnet: IpNet) -> Result<(), AgentError> {
        let dev = self.dev();
        let want = IpNet::new(subnet.network(), subnet.max_prefix_len()).expect("host prefix");
        for a in h.addr().list(Some(dev.as_str().into()))? {
            let same_family = a.addr.addr().is_ipv4() == want.addr().is_ipv4();
            let link_local = matches!(a.addr, IpNet::V6(n) if n.addr().is_unicast_link_local());
            if same_family && !link_local && a.addr != want {
                h.addr().del(dev.as_str(), a.addr)?;
            }
        }
        h.addr().replace(dev.as_str(), want)?;
        h.link().set(dev.as_str()).up().apply()?;
        Ok(())
    }
}

impl Backend for VxlanBackend {
    fn kind(&self) -> &'static str {
        "vxlan"
    }

    fn prepare(
        &mut self,
        h: &Handle,
        under: &Underlay,
    ) -> Result<Option<serde_json::Value>, AgentError> {
        self.ensure_device(h, under)?;
        let mac = self
            .mac
            .ok_or_else(|| AgentError::Other(format!("{} has no MAC address", self.dev())))?;
        Ok(Some(
            serde_json::json!({"VNI": self.vni.get(), "VtepMAC": mac.to_string()}),
        ))
    }

    fn configure(
        &mut self,
        h: &Handle,
        _: &Underlay,
        _: IpNet,
        subnet: IpNet,
    ) -> Result<u32, AgentError> {
        self.subnet = Some(subnet);
        self.address(h, subnet)?;
        Ok(h.link().get(self.dev().as_str())?.mtu)
    }

    fn reconcile(
        &mut self,
        h: &Handle,
        under: &Underlay,
        network: IpNet,
        subnet: IpNet,
        peers: &[Peer],
    ) -> Result<(), AgentError> {
        let dev = self.dev();
        if self.ensure_device(h, under)? {
            tracing::warn!(%dev, "device was missing: recreated it");
            self.address(h, subnet)?;
        }
        let mut routes = Vec::new();
        let mut neighs = Vec::new();
        let mut fdbs = Vec::new();
        for p in peers {
            if p.backend_type != "vxlan" {
                tracing::warn!(peer = %p.subnet, backend = %p.backend_type, "peer uses another backend; skipping");
                continue;
            }
            let gw = p.subnet.network();
            if self.direct_routing && directly_reachable(h, p.public_ip, &under.name) {
                routes.push(
                    Route::new(p.subnet)
                        .via(p.public_ip)
                        .dev(under.name.as_str()),
                );
                continue;
            }
            let Some(mac) = p
                .backend_data
                .get("VtepMAC")
                .and_then(|m| m.as_str())
                .and_then(|m| m.parse::<MacAddr>().ok())
            else {
                tracing::warn!(peer = %p.subnet, "lease has no valid VtepMAC; skipping");
                continue;
            };
            neighs.push(Neighbour::new(gw, mac, dev.as_str()));
            fdbs.push(FdbEntry::new(mac, dev.as_str()).dst(p.public_ip));
            routes.push(Route::new(p.subnet).via(gw).dev(dev.as_str()).onlink());
        }
        let mut b = h.batch();
        for n in &neighs {
            b.neigh().replace(n)?;
        }
        for f in &fdbs {
            b.fdb().replace(f)?;
        }
        for r in &routes {
            b.route().replace(r)?;
        }
        for (i, e) in b.execute()?.failures() {
            tracing::warn!(request = i, "programming a peer: {e}");
        }
        // What no peer accounts for goes (flannel #2554: stale entries after a restart).
        for n in h.neigh().list(Some(dev.as_str().into()))? {
            let ours = n.ip.is_ipv4() == (self.family == Family::V4);
            if ours && !neighs.iter().any(|w| w.ip == n.ip && w.mac == n.mac) {
                tracing::info!(neighbour = %n, "removing stale neighbour");
                let _ = h.neigh().del(&n);
            }
        }
        for f in h.fdb().list(Some(dev.as_str().into()))? {
            if f.own && f.dst.is_some() && !fdbs.iter().any(|w| w.mac == f.mac && w.dst == f.dst) {
                tracing::info!(fdb = %f, "removing stale FDB entry");
                match h.fdb().del(&f) {
                    Ok(()) | Err(Error::NotFound { .. }) => {}
                    Err(e) => tracing::warn!("removing FDB entry: {e}"),
                }
            }
        }
        prune_routes(
            h,
            network,
            subnet,
            &[dev.as_str(), under.name.as_str()],
            &routes,
        )
    }
}
