//! The kernel state the walk reads, in its own small, serializable model, and the trait that
//! reads it: [`KernelReads`], answered by a live namespace (`state::LiveNs`) or by a recorded
//! snapshot ([`RecordedNs`]).
//!
//! The model keeps only what the walk and the pictures use: devices with their kind, MAC,
//! master and veth peer, addresses, neighbour and FDB entries, the rule sets as text, a few
//! sysctls, the sockets table, and the kernel's answers to route lookups. A recording is the
//! same model written down ([`Recording`]), so a walk driven from it asks the same questions
//! and gets the same answers, without root and without namespaces.

use super::ipvs::IpvsService;
use super::state::{RouteAnswer, RouteQuery};
use ipnet::IpNet;
use podnet_links::MacAddr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// The kind of a device, as the walk distinguishes them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DevKind {
    /// A veth pair end.
    Veth,
    /// A Linux bridge.
    Bridge,
    /// A VXLAN device.
    Vxlan,
    /// A TUN or TAP device.
    Tun,
    /// A dummy device.
    Dummy,
    /// Any other kind, by its kernel name.
    Other(String),
}

impl DevKind {
    fn from_links(k: &podnet_links::LinkKind) -> DevKind {
        use podnet_links::LinkKind as L;
        match k {
            L::Veth => DevKind::Veth,
            L::Bridge => DevKind::Bridge,
            L::Vxlan => DevKind::Vxlan,
            L::Tun => DevKind::Tun,
            L::Dummy => DevKind::Dummy,
            other => DevKind::Other(other.to_string()),
        }
    }
}

impl fmt::Display for DevKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DevKind::Veth => "veth",
            DevKind::Bridge => "bridge",
            DevKind::Vxlan => "vxlan",
            DevKind::Tun => "tun",
            DevKind::Dummy => "dummy",
            DevKind::Other(s) => s,
        })
    }
}

/// A VXLAN device's settings (`ip -d link show`), as far as the walk needs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VxlanConf {
    /// VXLAN network identifier.
    pub vni: u32,
    /// Outer source address.
    pub local: Option<IpAddr>,
    /// Default remote.
    pub remote: Option<IpAddr>,
    /// Underlay device index.
    pub dev: Option<u32>,
    /// Destination UDP port.
    pub port: u16,
}

/// A network device (`ip link show`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dev {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Kind, when the device has one.
    pub kind: Option<DevKind>,
    /// Administratively up.
    pub up: bool,
    /// MTU.
    pub mtu: u32,
    /// Hardware address.
    #[serde(with = "opt_mac")]
    pub mac: Option<MacAddr>,
    /// Index of the master (bridge).
    pub master: Option<u32>,
    /// IFLA_LINK: a veth's peer index (in the peer's namespace).
    pub link: Option<u32>,
    /// The namespace id of the peer's namespace, when it lives elsewhere.
    pub link_netnsid: Option<i32>,
    /// VXLAN settings.
    pub vxlan: Option<VxlanConf>,
}

impl Dev {
    /// From podnet-links' link.
    pub(crate) fn from_link(l: &podnet_links::Link) -> Dev {
        Dev {
            index: l.index,
            name: l.name.clone(),
            kind: l.kind.as_ref().map(DevKind::from_links),
            up: l.is_up(),
            mtu: l.mtu,
            mac: l.mac,
            master: l.master,
            link: l.link,
            link_netnsid: l.link_netnsid,
            vxlan: l.vxlan.as_ref().map(|v| VxlanConf {
                vni: v.vni,
                local: v.local,
                remote: v.remote,
                dev: v.dev,
                port: v.port,
            }),
        }
    }

    /// Administratively up.
    pub fn is_up(&self) -> bool {
        self.up
    }
}

/// An address on a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addr {
    /// The device's index.
    pub index: u32,
    /// Address and prefix length.
    pub addr: IpNet,
    /// Scope global (`RT_SCOPE_UNIVERSE`).
    pub global: bool,
}

/// A neighbour (ARP) entry (`ip neigh`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neigh {
    /// The neighbour's address.
    pub ip: IpAddr,
    /// Its MAC, when resolved.
    #[serde(with = "opt_mac")]
    pub mac: Option<MacAddr>,
    /// The device's name.
    pub dev: String,
    /// The state as `ip neigh` prints it (`REACHABLE`, `PERMANENT`, ...).
    pub state: String,
    /// A proxy entry.
    pub proxy: bool,
    /// A router (IPv6).
    pub router: bool,
    /// Learnt from an external control plane.
    pub ext_learned: bool,
}

impl Neigh {
    fn from_links(n: &podnet_links::Neighbour) -> Neigh {
        Neigh {
            ip: n.ip,
            mac: n.mac,
            dev: n.dev.to_string(),
            state: n.state.to_string(),
            proxy: n.proxy,
            router: n.router,
            ext_learned: n.ext_learned,
        }
    }

    /// Usable: resolved, neither incomplete nor failed.
    pub(crate) fn usable_mac(&self) -> Option<MacAddr> {
        self.mac
            .filter(|_| !matches!(self.state.as_str(), "INCOMPLETE" | "FAILED"))
    }
}

impl Neigh {
    /// The entry as podnet-links has it (the state back from its `ip neigh` name).
    fn to_links(&self) -> podnet_links::Neighbour {
        use podnet_links::NeighState as S;
        let state = [
            S::Incomplete,
            S::Reachable,
            S::Stale,
            S::Delay,
            S::Probe,
            S::Failed,
            S::Noarp,
            S::Permanent,
            S::None,
        ]
        .into_iter()
        .find(|s| s.to_string() == self.state)
        .unwrap_or_else(|| {
            let hex = self.state.trim_start_matches("0x");
            S::Other(u16::from_str_radix(hex, 16).unwrap_or(0))
        });
        let mut n = podnet_links::Neighbour::new(self.ip, MacAddr::ZERO, self.dev.as_str());
        n.mac = self.mac;
        n.state = state;
        n.proxy = self.proxy;
        n.router = self.router;
        n.ext_learned = self.ext_learned;
        n
    }
}

impl fmt::Display for Neigh {
    /// One line of `ip neigh` (podnet-links' own).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_links().fmt(f)
    }
}

/// A forwarding database entry (`bridge fdb`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fdb {
    /// The MAC address.
    #[serde(with = "mac")]
    pub mac: MacAddr,
    /// The port or VXLAN device's name.
    pub dev: String,
    /// Remote VTEP.
    pub dst: Option<IpAddr>,
    /// VNI.
    pub vni: Option<u32>,
    /// UDP port.
    pub port: Option<u16>,
    /// VLAN.
    pub vlan: Option<u16>,
    /// In the master bridge's table.
    pub master: bool,
    /// The master bridge's index.
    pub master_index: Option<u32>,
    /// Static (`permanent` or `noarp`) rather than learnt.
    pub fixed: bool,
}

impl Fdb {
    fn from_links(e: &podnet_links::FdbEntry) -> Fdb {
        use podnet_links::NeighState as S;
        Fdb {
            mac: e.mac,
            dev: e.dev.to_string(),
            dst: e.dst,
            vni: e.vni,
            port: e.port,
            vlan: e.vlan,
            master: e.master,
            master_index: e.master_index,
            fixed: matches!(e.state, S::Permanent | S::Noarp),
        }
    }
}

/// Converts podnet-links' tables into the model.
pub(crate) fn devs(links: &[podnet_links::Link]) -> Vec<Dev> {
    links.iter().map(Dev::from_link).collect()
}

/// Converts podnet-links' addresses into the model.
pub(crate) fn addrs(a: &[podnet_links::Address]) -> Vec<Addr> {
    a.iter()
        .map(|a| Addr {
            index: a.index,
            addr: a.addr,
            global: a.scope == podnet_links::Scope::Universe,
        })
        .collect()
}

/// Converts podnet-links' neighbour entries into the model.
pub(crate) fn neighs(n: &[podnet_links::Neighbour]) -> Vec<Neigh> {
    n.iter().map(Neigh::from_links).collect()
}

/// Converts podnet-links' FDB entries into the model.
pub(crate) fn fdbs(f: &[podnet_links::FdbEntry]) -> Vec<Fdb> {
    f.iter().map(Fdb::from_links).collect()
}

/// What the walk asks of one namespace's kernel. Each table is read once per walk (the view
/// caches it); route lookups and namespace ids are asked as the walk goes.
pub(crate) trait KernelReads: fmt::Debug {
    /// `ip link show`.
    fn links(&self) -> Vec<Dev>;
    /// `ip addr show`.
    fn addrs(&self) -> Vec<Addr>;
    /// `ip neigh show`.
    fn neighbours(&self) -> Vec<Neigh>;
    /// `bridge fdb show`.
    fn fdb(&self) -> Vec<Fdb>;
    /// `iptables-save`'s output, or why it could not be read.
    fn iptables_save(&self) -> Result<String, String>;
    /// `nft -j list ruleset`'s output, or why it could not be read.
    fn nft_ruleset(&self) -> Result<String, String>;
    /// A sysctl's value.
    fn sysctl(&self, key: &str) -> Option<String>;
    /// `/proc/net/tcp` or `/proc/net/udp` as read inside the namespace.
    fn proc_net(&self, proto: &str) -> String;
    /// The kernel's route lookup.
    fn route_get(&self, q: &RouteQuery) -> Result<RouteAnswer, (i32, String)>;
    /// The id this namespace gives `other` (`link-netnsid`).
    fn nsid_of(&self, other: &dyn KernelReads, other_name: &str) -> Option<i32>;
    /// The live namespace, when there is one (the traced probe needs it).
    fn netns(&self) -> Option<&podnet_netns::NetNs>;
    /// The IPVS table (`ipvsadm -Ln`): empty where the kernel has no IPVS.
    fn ipvs(&self) -> Result<Vec<IpvsService>, String>;
    /// `ipset save`'s output, or why it could not be read.
    fn ipset_save(&self) -> Result<String, String>;
}

/// One route lookup and the kernel's answer, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRoute {
    /// The question.
    pub query: RouteQuery,
    /// The answer: the route, or `(errno, message)`.
    pub answer: Result<RouteAnswer, (i32, String)>,
}

/// One namespace's state, recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedNs {
    /// Short name (`node1-pod1`).
    pub label: String,
    /// The namespace's name when recorded.
    pub name: String,
    /// Devices.
    pub links: Vec<Dev>,
    /// Addresses.
    pub addrs: Vec<Addr>,
    /// Neighbour entries.
    pub neighbours: Vec<Neigh>,
    /// FDB entries.
    pub fdb: Vec<Fdb>,
    /// `iptables-save` output, or the error.
    pub iptables_save: Result<String, String>,
    /// `nft -j list ruleset` output, or the error.
    pub nft_ruleset: Result<String, String>,
    /// Sysctls asked (`None`: absent).
    pub sysctls: BTreeMap<String, Option<String>>,
    /// `/proc/net/{tcp,udp}`.
    pub proc_net: BTreeMap<String, String>,
    /// Namespace ids given to the other namespaces, by their name.
    pub nsids: BTreeMap<String, Option<i32>>,
    /// Route lookups asked during the recorded walks, with the kernel's answers.
    pub routes: Vec<RecordedRoute>,
    /// The IPVS virtual services (none in recordings made before IPVS was read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipvs: Vec<IpvsService>,
    /// Why the IPVS table could not be read, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipvs_error: Option<String>,
    /// `ipset save`'s output, or the error (none in recordings made before ipsets were read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipsets: Option<Result<String, String>>,
}

impl KernelReads for RecordedNs {
    fn links(&self) -> Vec<Dev> {
        self.links.clone()
    }
    fn addrs(&self) -> Vec<Addr> {
        self.addrs.clone()
    }
    fn neighbours(&self) -> Vec<Neigh> {
        self.neighbours.clone()
    }
    fn fdb(&self) -> Vec<Fdb> {
        self.fdb.clone()
    }
    fn iptables_save(&self) -> Result<String, String> {
        self.iptables_save.clone()
    }
    fn nft_ruleset(&self) -> Result<String, String> {
        self.nft_ruleset.clone()
    }
    fn sysctl(&self, key: &str) -> Option<String> {
        self.sysctls.get(key).cloned().flatten()
    }
    fn proc_net(&self, proto: &str) -> String {
        self.proc_net.get(proto).cloned().unwrap_or_default()
    }
    fn route_get(&self, q: &RouteQuery) -> Result<RouteAnswer, (i32, String)> {
        self.routes
            .iter()
            .find(|r| r.query == *q)
            .map(|r| r.answer.clone())
            .unwrap_or_else(|| {
                Err((
                    libc::ENODATA,
                    format!(
                        "not in the recording: {}",
                        q.describe(&|i| format!("if{i}"))
                    ),
                ))
            })
    }
    fn nsid_of(&self, _other: &dyn KernelReads, other_name: &str) -> Option<i32> {
        self.nsids.get(other_name).copied().flatten()
    }
    fn netns(&self) -> Option<&podnet_netns::NetNs> {
        None
    }
    fn ipvs(&self) -> Result<Vec<IpvsService>, String> {
        match &self.ipvs_error {
            Some(e) => Err(e.clone()),
            None => Ok(self.ipvs.clone()),
        }
    }
    fn ipset_save(&self) -> Result<String, String> {
        self.ipsets
            .clone()
            .unwrap_or_else(|| Err("not in the recording".into()))
    }
}

/// The recorded state of a whole topology: what `podnet-cluster explain --record` writes, and
/// what a walk can be driven from without root ([`super::Topology::recorded`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    /// The cluster's prefix when recorded.
    pub prefix: Option<String>,
    /// The namespaces, in the topology's order.
    pub namespaces: Vec<RecordedNs>,
}

impl Recording {
    /// Reads a recording written by [`Recording::save`].
    pub fn load(path: &std::path::Path) -> Result<Recording, super::ExplainError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            super::ExplainError::Recording(path.display().to_string(), e.to_string())
        })?;
        serde_json::from_str(&text)
            .map_err(|e| super::ExplainError::Recording(path.display().to_string(), e.to_string()))
    }

    /// Writes the recording as pretty JSON.
    pub fn save(&self, path: &std::path::Path) -> Result<(), super::ExplainError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| {
            super::ExplainError::Recording(path.display().to_string(), e.to_string())
        })?;
        std::fs::write(path, text + "\n")
            .map_err(|e| super::ExplainError::Recording(path.display().to_string(), e.to_string()))
    }

    /// Adds the route answers of `other` (more walks over the same state) to this one.
    pub fn merge(&mut self, other: Recording) {
        for ns in other.namespaces {
            match self.namespaces.iter_mut().find(|n| n.label == ns.label) {
                Some(mine) => {
                    for r in ns.routes {
                        if !mine.routes.iter().any(|m| m.query == r.query) {
                            mine.routes.push(r);
                        }
                    }
                    mine.sysctls.extend(ns.sysctls);
                    mine.nsids.extend(ns.nsids);
                }
                None => self.namespaces.push(ns),
            }
        }
    }
}

mod mac {
    use podnet_links::MacAddr;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(m: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(m)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MacAddr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

mod opt_mac {
    use podnet_links::MacAddr;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(m: &Option<MacAddr>, s: S) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => s.collect_str(m),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<MacAddr>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| s.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VXLAN: &str = include_str!("../../tests/fixtures/explain/vxlan-iptables.json");

    #[test]
    fn recordings_round_trip_and_merge() {
        let rec: Recording = serde_json::from_str(VXLAN).unwrap();
        let again: Recording = serde_json::from_str(&serde_json::to_string(&rec).unwrap()).unwrap();
        assert_eq!(rec, again);
        let node1 = rec.namespaces.iter().find(|n| n.label == "node1").unwrap();
        let vx = node1.links.iter().find(|l| l.name == "flannel.1").unwrap();
        assert_eq!(vx.kind, Some(DevKind::Vxlan));
        assert_eq!(vx.vxlan.as_ref().map(|v| (v.vni, v.port)), Some((1, 8472)));
        // The replayed lookup answers what was recorded, and only that.
        let asked = &node1.routes[0];
        assert_eq!(node1.route_get(&asked.query), asked.answer);
        let mut other = asked.query.clone();
        other.mark = 0x4242;
        assert_eq!(node1.route_get(&other).unwrap_err().0, libc::ENODATA);
        // Merging the same walks again adds nothing; a new lookup is added once.
        let mut merged = rec.clone();
        merged.merge(rec.clone());
        assert_eq!(merged, rec);
        let mut more = rec.clone();
        let n1 = more
            .namespaces
            .iter_mut()
            .find(|n| n.label == "node1")
            .unwrap();
        n1.routes.push(RecordedRoute {
            query: other.clone(),
            answer: Err((libc::ENETUNREACH, "Network is unreachable".into())),
        });
        merged.merge(more.clone());
        merged.merge(more);
        let n1 = merged
            .namespaces
            .iter()
            .find(|n| n.label == "node1")
            .unwrap();
        assert_eq!(n1.routes.len(), node1.routes.len() + 1);
        assert_eq!(n1.route_get(&other).unwrap_err().0, libc::ENETUNREACH);
    }

    #[test]
    fn neighbour_lines_read_like_ip_neigh() {
        let n = Neigh {
            ip: "10.244.2.0".parse().unwrap(),
            mac: Some("c6:d2:32:6f:8f:44".parse().unwrap()),
            dev: "flannel.1".into(),
            state: "PERMANENT".into(),
            proxy: false,
            router: false,
            ext_learned: false,
        };
        assert_eq!(
            n.to_string(),
            "10.244.2.0 dev flannel.1 lladdr c6:d2:32:6f:8f:44 PERMANENT"
        );
        assert!(n.usable_mac().is_some());
        let failed = Neigh {
            state: "FAILED".into(),
            ..n
        };
        assert_eq!(failed.usable_mac(), None);
    }
}
