//! What every backend does, and the choice of backend from the network config.

use super::AgentError;
use ipnet::IpNet;
use podnet_ipam::NetworkConfig;
use podnet_links::Handle;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address family of the flannel network: each backend instance serves one (flannel's
/// vxlan backend has a device per family, `flannel.<VNI>` and `flannel-v6.<VNI>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4: the lease's `Subnet`, `PublicIP` and `BackendData`.
    V4,
    /// IPv6: the lease's `IPv6Subnet`, `PublicIPv6` and `BackendV6Data`.
    V6,
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// The node's underlay interface.
#[derive(Debug, Clone)]
pub struct Underlay {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// Its MTU.
    pub mtu: u32,
    /// The interface's IPv4 address: the VXLAN device's and the UDP socket's local address
    /// (`0.0.0.0` on an IPv6-only network).
    pub iface_addr: Ipv4Addr,
    /// The IPv4 address peers send to (`--public-ip`, else the interface's address; `0.0.0.0`
    /// on an IPv6-only network, as flannel's lease then says).
    pub public_ip: Ipv4Addr,
    /// The interface's IPv6 address, when the network has IPv6: the local address of the
    /// `flannel-v6.<VNI>` device.
    pub iface_addr6: Option<Ipv6Addr>,
    /// The IPv6 address peers send to (`--public-ipv6`, else the interface's IPv6 address).
    pub public_ipv6: Option<Ipv6Addr>,
}

impl Underlay {
    /// The interface's address of `family`.
    pub fn local(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::V4 => (!self.iface_addr.is_unspecified()).then_some(self.iface_addr.into()),
            Family::V6 => self.iface_addr6.map(IpAddr::V6),
        }
    }

    /// The public address of `family`.
    pub fn public(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::V4 => (!self.public_ip.is_unspecified()).then_some(self.public_ip.into()),
            Family::V6 => self.public_ipv6.map(IpAddr::V6),
        }
    }
}

/// The smallest MTU an IPv4 link may have (RFC 791); the kernel refuses less.
pub(crate) const MIN_MTU: u32 = 68;

/// The MTU of a device that carries `backend`'s encapsulation (`overhead` bytes of headers)
/// over `under`: an error naming the interface when that leaves pods less than [`MIN_MTU`].
pub(crate) fn overlay_mtu(
    under: &Underlay,
    overhead: u32,
    backend: &str,
) -> Result<u32, AgentError> {
    under
        .mtu
        .checked_sub(overhead)
        .filter(|m| *m >= MIN_MTU)
        .ok_or_else(|| {
            AgentError::Underlay(format!(
                "{} has MTU {}, too small for the {backend} backend: its {overhead} bytes of \
                 headers must leave pods at least {MIN_MTU} (raise the MTU, or choose --iface)",
                under.name, under.mtu
            ))
        })
}

/// Another node, from its lease, in one address family.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    /// Its subnet (`Subnet` or `IPv6Subnet`).
    pub subnet: IpNet,
    /// Its public (underlay) address (`PublicIP` or `PublicIPv6`).
    pub public_ip: IpAddr,
    /// The backend type its lease announces.
    pub backend_type: String,
    /// Its BackendData, or BackendV6Data for IPv6 (for vxlan: VNI and VtepMAC).
    pub backend_data: serde_json::Value,
}

/// One of flannel's backends.
pub trait Backend {
    /// Its type name as leases carry it (`vxlan`, `host-gw`, `udp`).
    fn kind(&self) -> &'static str;

    /// Sets up (or adopts) the backend's device before the lease is taken; returns the
    /// BackendData to publish in the lease.
    fn prepare(
        &mut self,
        h: &Handle,
        under: &Underlay,
    ) -> Result<Option<serde_json::Value>, AgentError>;

    /// Configures the device for this node's subnet; returns the MTU pods should use.
    fn configure(
        &mut self,
        h: &Handle,
        under: &Underlay,
        network: IpNet,
        subnet: IpNet,
    ) -> Result<u32, AgentError>;

    /// Converges the kernel to exactly what `peers` need: adds or replaces what is missing,
    /// deletes what no peer accounts for, and recreates a deleted device.
    fn reconcile(
        &mut self,
        h: &Handle,
        under: &Underlay,
        network: IpNet,
        subnet: IpNet,
        peers: &[Peer],
    ) -> Result<(), AgentError>;
}

/// Reads net-conf.json's `Backend` section as flanneld does when it starts: an error names
/// what is wrong. Public (hidden) for the fuzz targets.
#[doc(hidden)]
pub fn check_backend_config(config: &NetworkConfig) -> Result<(), AgentError> {
    from_config(config, Family::V4).map(drop)
}

/// The backend named by the config's `Backend.Type`, for `family`.
pub(crate) fn from_config(
    config: &NetworkConfig,
    family: Family,
) -> Result<Box<dyn Backend>, AgentError> {
    let raw: serde_json::Value = config
        .backend
        .as_ref()
        .and_then(|b| serde_json::from_str(b.get()).ok())
        .unwrap_or(serde_json::Value::Null);
    let raw = canonical_keys(&config.backend_type, &raw)?;
    match config.backend_type.as_str() {
        "vxlan" => Ok(Box::new(super::vxlan::VxlanBackend::from_json(
            &raw, family,
        )?)),
        "host-gw" => Ok(Box::new(super::hostgw::HostGw)),
        // flannel's udp backend is IPv4-only: it takes only `Subnet` and `PublicIP`.
        "udp" if config.enable_ipv6 || family == Family::V6 => Err(AgentError::Config(
            "EnableIPv6: flannel's udp backend is IPv4-only (its tunnel carries IPv4 packets \
             over IPv4); use the vxlan or host-gw backend for IPv6"
                .into(),
        )),
        "udp" => Ok(Box::new(super::udp::UdpBackend::from_json(&raw)?)),
        other => Err(AgentError::UnknownBackend(other.to_owned())),
    }
}

/// The `Backend` keys each backend of flannel reads, as flannel spells them, and those of
/// them podnet does not implement.
fn backend_keys(kind: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        "vxlan" => (
            &[
                "Type",
                "VNI",
                "Port",
                "MTU",
                "GBP",
                "Learning",
                "DirectRouting",
            ],
            &["Learning"],
        ),
        "udp" => (&["Type", "Port"], &[]),
        _ => (&["Type"], &[]),
    }
}

/// The `Backend` object with its keys spelled as flannel spells them: flannel decodes it with
/// Go's JSON, which matches keys regardless of case (`vni`, `directRouting`), so podnet reads
/// them so too. A key flannel reads but podnet does not implement is refused when it asks for
/// anything (`"Learning": true`); a key flannel does not read is ignored, as flannel does,
/// with a warning naming it.
fn canonical_keys(kind: &str, raw: &serde_json::Value) -> Result<serde_json::Value, AgentError> {
    let serde_json::Value::Object(map) = raw else {
        return Ok(raw.clone());
    };
    let (known, unimplemented) = backend_keys(kind);
    let mut out = serde_json::Map::new();
    for (key, value) in map {
        // Go prefers an exact match, then any match without regard to case.
        let Some(name) = known
            .iter()
            .find(|k| **k == key)
            .or_else(|| known.iter().find(|k| k.eq_ignore_ascii_case(key)))
        else {
            tracing::warn!("Backend.{key}: flannel's {kind} backend does not read it; ignored");
            continue;
        };
        let asks = !matches!(
            value,
            serde_json::Value::Null | serde_json::Value::Bool(false)
        );
        if unimplemented.contains(name) && asks {
            return Err(AgentError::Config(format!(
                "Backend.{key}: {value} is not implemented by podnet's {kind} backend"
            )));
        }
        if *key != **name && map.contains_key(*name) {
            continue; // the exact spelling wins
        }
        out.insert((*name).to_owned(), value.clone());
    }
    Ok(serde_json::Value::Object(out))
}

/// Removes routes into the cluster network that no peer accounts for: those through `dev`
/// (or, with `gateway_routes`, those via a gateway on the underlay).
pub(crate) fn prune_routes(
    h: &Handle,
    network: IpNet,
    own: IpNet,
    devs: &[&str],
    wanted: &[podnet_links::Route],
) -> Result<(), AgentError> {
    for r in h.route().list()? {
        let dst = r.dst;
        if !network.contains(&dst) || dst == own || dst == network {
            continue;
        }
        let dev = r.dev.as_ref().map(|d| d.to_string()).unwrap_or_default();
        if !devs.contains(&dev.as_str()) || r.gateway.is_none() {
            continue;
        }
        let keep = wanted
            .iter()
            .any(|w| w.dst == r.dst && w.gateway == r.gateway);
        if !keep {
            tracing::info!(route = %r, "removing stale route");
            let _ = h.route().del(&r);
        }
    }
    Ok(())
}

/// Whether `ip` is on a directly connected network of `dev` (the kernel's own lookup).
pub(crate) fn directly_reachable(h: &Handle, ip: IpAddr, dev: &str) -> bool {
    match h.route().get(ip) {
        Ok(r) => r.gateway.is_none() && r.dev.as_ref().is_some_and(|d| d.to_string() == dev),
        Err(_) => false,
    }
}

#[cfg(test)]
mod keys_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_read_regardless_of_case_as_go_does() {
        let got = canonical_keys(
            "vxlan",
            &json!({"type": "vxlan", "vni": 4096, "directRouting": true, "Port": 4789, "port": 1}),
        )
        .unwrap();
        assert_eq!(
            got,
            json!({"Type": "vxlan", "VNI": 4096, "DirectRouting": true, "Port": 4789})
        );
    }

    #[test]
    fn unimplemented_keys_are_refused_by_name_unknown_ones_ignored() {
        let e = canonical_keys("vxlan", &json!({"Type": "vxlan", "learning": true})).unwrap_err();
        assert!(e.to_string().contains("Backend.learning"), "{e}");
        assert!(canonical_keys("vxlan", &json!({"Learning": false})).is_ok());
        assert_eq!(
            canonical_keys("host-gw", &json!({"Type": "host-gw", "Colour": "blue"})).unwrap(),
            json!({"Type": "host-gw"})
        );
    }
}
