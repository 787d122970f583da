//! Tunnels: VXLAN encapsulation (the FDB entry and the outer header), flannel's udp backend
//! (a TUN device read by flanneld), and the unwrapping on the far side.
use super::{Encap, EncapKind, FLANNEL_UDP_PORT, Next, Walker};
use crate::explain::model::{Dev, DevKind};
use crate::explain::narrate::Says;
use crate::explain::state::{RouteQuery, RouteType};
use crate::explain::view::NsView;
use crate::explain::{Encapsulation, Flow, Proto, Step};
use podnet_links::MacAddr;
use std::net::{IpAddr, Ipv4Addr};

impl<'t> Walker<'t> {
    /// VXLAN: the FDB entry for `mac` gives the remote VTEP; the frame leaves inside UDP.
    pub(super) fn vxlan(&mut self, ns: usize, link: &Dev, mac: MacAddr) -> Next {
        let v = self.view(ns);
        let Some(vx) = link.vxlan.clone() else {
            return self.drop(
                ns,
                Some(&link.name),
                "VXLAN device without VXLAN settings".into(),
                None,
            );
        };
        let entries = v.own_fdb(&link.name, mac);
        let (entry, by_default) = match entries.first() {
            Some(e) => ((*e).clone(), false),
            None => match v.own_fdb(&link.name, MacAddr::ZERO).first() {
                Some(e) => ((*e).clone(), true),
                None => {
                    let label = v.label.clone();
                    // Whose VTEP is it? A VXLAN device of the topology with that MAC.
                    let vtep = self.topo.views().iter().find_map(|w| {
                        w.links()
                            .iter()
                            .find(|l| l.kind == Some(DevKind::Vxlan) && l.mac == Some(mac))
                            .map(|l| {
                                let local = l
                                    .vxlan
                                    .as_ref()
                                    .and_then(|x| x.local)
                                    .map(|a| a.to_string())
                                    .unwrap_or_else(|| "<remote VTEP>".into());
                                (w.label.clone(), local)
                            })
                    });
                    let (whose, dst) = vtep
                        .map(|(w, d)| (format!(" ({w}'s VTEP)"), d))
                        .unwrap_or_else(|| (String::new(), "<remote VTEP>".into()));
                    return self.drop(
                        ns,
                        Some(&link.name),
                        format!(
                            "{} has no FDB entry for {mac} and no default destination: the VXLAN driver drops the frame",
                            link.name
                        ),
                        Some(format!(
                            "the FDB entry `{mac} dev {} dst {dst}`{whose} in {label}",
                            link.name
                        )),
                    );
                }
            },
        };
        let Some(IpAddr::V4(remote)) = entry.dst.or(vx.remote) else {
            return self.drop(
                ns,
                Some(&link.name),
                format!("FDB entry for {mac} without an IPv4 destination"),
                None,
            );
        };
        let port = entry.port.unwrap_or(vx.port);
        let vni = entry.vni.unwrap_or(vx.vni);
        let local = match vx.local {
            Some(IpAddr::V4(a)) => a,
            _ => Ipv4Addr::UNSPECIFIED,
        };
        let says = Says::VxlanWrap {
            dev: link.name.clone(),
            mac,
            by_default,
            remote,
            src: (!local.is_unspecified()).then_some(local),
            port,
            vni,
        };
        self.hop(ns, Step::Vxlan, Some(&link.name), says);
        self.encap(Encapsulation {
            kind: "vxlan".into(),
            src: (!local.is_unspecified()).then_some(local),
            dst: remote,
            port,
            vni: Some(vni),
            inner: self.flow.to_string(),
        });
        let inner = self.flow.clone();
        self.stack.push(Encap {
            kind: EncapKind::Vxlan { vni, port },
            inner,
            inner_mac: Some(mac),
        });
        self.flow = Flow {
            proto: Proto::Udp,
            src: local,
            dst: remote,
            sport: None,
            dport: Some(port),
            mark: self.flow.mark,
            dnat: false,
        };
        Next::Send { ns, oif: vx.dev }
    }

    /// A TUN device: the process reading it (flanneld's udp backend) sends the packet inside
    /// UDP to the node whose pods own the destination.
    pub(super) fn tunnel(&mut self, ns: usize, tun: &Dev) -> Next {
        let dst = self.flow.dst;
        let peer = self.topo.views().iter().enumerate().find_map(|(i, v)| {
            if i == ns || v.tun_device().is_none() {
                return None;
            }
            let a = v
                .route_get(&RouteQuery {
                    dst: Some(dst),
                    ..RouteQuery::default()
                })
                .ok()?;
            let tun_idx = v.tun_device().map(|t| t.index);
            let owns = match a.kind {
                RouteType::Local => true,
                RouteType::Unicast => a.gateway.is_none() && a.oif != tun_idx,
                _ => false,
            };
            owns.then(|| underlay_addr(v).map(|ip| (i, ip))).flatten()
        });
        let label = self.label(ns);
        let Some((pns, peer_ip)) = peer else {
            return self.drop(
                ns,
                Some(&tun.name),
                format!(
                    "{} is a TUN device; no node of the topology owns {dst}, so its tunnel has no peer for it",
                    tun.name
                ),
                Some(format!("a node whose subnet holds {dst} (a flannel lease)")),
            );
        };
        let plabel = self.label(pns);
        let says = Says::TunSend {
            tun: tun.name.clone(),
            peer_ip,
            peer: plabel,
            dst,
        };
        self.hop(ns, Step::Tunnel, Some(&tun.name), says);
        let _ = label;
        self.encap(Encapsulation {
            kind: "udp".into(),
            src: None,
            dst: peer_ip,
            port: FLANNEL_UDP_PORT,
            vni: None,
            inner: self.flow.to_string(),
        });
        let inner = self.flow.clone();
        self.stack.push(Encap {
            kind: EncapKind::Udp {
                port: FLANNEL_UDP_PORT,
            },
            inner,
            inner_mac: None,
        });
        self.flow = Flow {
            proto: Proto::Udp,
            src: Ipv4Addr::UNSPECIFIED,
            dst: peer_ip,
            sport: None,
            dport: Some(FLANNEL_UDP_PORT),
            mark: 0,
            dnat: false,
        };
        Next::Send { ns, oif: None }
    }

    /// An encapsulated packet reached the address of its tunnel's far end in `ns`: the device
    /// that takes it unwraps the inner packet.
    pub(super) fn decap(&mut self, ns: usize, encap: Encap) -> Next {
        let v = self.view(ns);
        let label = v.label.clone();
        match encap.kind {
            EncapKind::Vxlan { vni, port } => {
                let dev = v
                    .links()
                    .iter()
                    .find(|l| {
                        l.vxlan
                            .as_ref()
                            .is_some_and(|x| x.port == port && x.vni == vni)
                    })
                    .cloned();
                let Some(dev) = dev else {
                    return self.drop(
                        ns,
                        None,
                        format!("no VXLAN device of {label} takes UDP port {port} with VNI {vni}: the kernel answers port unreachable"),
                        Some(format!("a VXLAN device with VNI {vni} on port {port} in {label}")),
                    );
                };
                self.stack.pop();
                let outer = std::mem::replace(&mut self.flow, encap.inner.clone());
                let says = Says::VxlanDecap {
                    port,
                    vni,
                    dev: dev.name.clone(),
                    inner: self.flow.clone(),
                };
                self.hop(ns, Step::Decap, Some(&dev.name), says);
                self.encap(Encapsulation {
                    kind: "vxlan".into(),
                    src: Some(outer.src),
                    dst: outer.dst,
                    port,
                    vni: Some(vni),
                    inner: self.flow.to_string(),
                });
                let mac = encap.inner_mac.unwrap_or(MacAddr::ZERO);
                if dev.master.is_some() {
                    return Next::Frame {
                        ns,
                        dev: dev.index,
                        mac,
                    };
                }
                if dev.mac != Some(mac) {
                    return self.drop(
                        ns,
                        Some(&dev.name),
                        format!(
                            "the inner frame is for {mac}, not {} ({}): the sender's neighbour entry names another VTEP",
                            dev.name,
                            dev.mac.map(|m| m.to_string()).unwrap_or_default()
                        ),
                        None,
                    );
                }
                Next::Packet {
                    ns,
                    iif: dev.index,
                    port: None,
                }
            }
            EncapKind::Udp { port } => {
                let tun = v.tun_device().cloned();
                let listening = v.udp_listening(port);
                match (tun, listening) {
                    (Some(tun), true) => {
                        self.stack.pop();
                        let outer = std::mem::replace(&mut self.flow, encap.inner.clone());
                        let says = Says::TunDecap {
                            port,
                            inner: self.flow.clone(),
                            tun: tun.name.clone(),
                        };
                        self.hop(ns, Step::Decap, Some(&tun.name), says);
                        self.encap(Encapsulation {
                            kind: "udp".into(),
                            src: Some(outer.src),
                            dst: outer.dst,
                            port,
                            vni: None,
                            inner: self.flow.to_string(),
                        });
                        Next::Packet {
                            ns,
                            iif: tun.index,
                            port: None,
                        }
                    }
                    _ => self.drop(
                        ns,
                        None,
                        format!("nothing in {label} takes UDP port {port} into a TUN device"),
                        Some(format!(
                            "flanneld's udp tunnel (UDP {port}, a TUN device) in {label}"
                        )),
                    ),
                }
            }
        }
    }
}

/// A namespace's underlay address: the first global IPv4 address on a device that is neither
/// a bridge, a bridge port, a tunnel nor loopback (a node's `eth0`).
fn underlay_addr(v: &NsView) -> Option<Ipv4Addr> {
    v.links()
        .iter()
        .filter(|l| {
            l.name != "lo"
                && l.master.is_none()
                && !matches!(
                    l.kind,
                    Some(DevKind::Bridge | DevKind::Vxlan | DevKind::Tun)
                )
        })
        .find_map(|l| v.v4_addrs_of(l.index).first().map(|(a, _)| *a))
}
