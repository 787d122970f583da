//! Layer 2: the next hop's neighbour entry (or who answers its ARP), the bridge's forwarding
//! decision, br_netfilter's bridged DNAT, and the veth crossing into the next namespace.
use super::{Next, Walker, is_ether};
use crate::explain::model::{Dev, DevKind};
use crate::explain::narrate::Says;
use crate::explain::{Hook, Step};
use podnet_links::MacAddr;
use std::net::Ipv4Addr;

impl<'t> Walker<'t> {
    /// br_netfilter's bridged DNAT: the frame goes back out of bridge `br` (from `port`) to the
    /// DNAT target's MAC, through the FORWARD and POSTROUTING hooks but without routing.
    pub(super) fn bridged_dnat(&mut self, ns: usize, br: u32, port: u32) -> Next {
        let Some(brl) = self.view(ns).link(br).cloned() else {
            return self.drop(ns, None, format!("bridge if{br} vanished"), None);
        };
        let dst = self.flow.dst;
        let says = Says::BridgedDnat {
            bridge: brl.name.clone(),
            dst,
        };
        self.hop(ns, Step::Bridge, Some(&brl.name), says);
        let mac = match self.neighbour(ns, &brl, dst) {
            Ok(m) => m,
            Err(n) => return n,
        };
        let (out, flooded) = match self.bridge_port(ns, &brl, mac, Some(port)) {
            Ok(p) => p,
            Err(n) => return n,
        };
        let b = brl.name.clone();
        self.checkpoint(ns, "inet", "fwd", format!("{b}>{b}"));
        if let Err(n) = self.rules(ns, Hook::Forward, Some(&b), Some(&b), Some(dst)) {
            return n;
        }
        self.checkpoint(ns, "inet", "post", b.clone());
        if let Err(n) = self.rules(ns, Hook::Postrouting, Some(&b), Some(&b), Some(dst)) {
            return n;
        }
        let pname = self.view(ns).dev_name(port);
        for q in std::iter::once(&out).chain(&flooded) {
            self.checkpoint(ns, "bridge", "fwd", format!("{pname}>{}", q.name));
        }
        self.cross(ns, &out, mac)
    }

    /// The next hop's link-layer address on `link`: the neighbour entry, or who answers ARP.
    pub(super) fn neighbour(
        &mut self,
        ns: usize,
        link: &Dev,
        nexthop: Ipv4Addr,
    ) -> Result<MacAddr, Next> {
        let v = self.view(ns);
        let entry = v.neighbour(&link.name, nexthop).cloned();
        if let Some(n) = &entry {
            if let Some(mac) = n.usable_mac() {
                self.hop(
                    ns,
                    Step::Neigh,
                    Some(&link.name),
                    Says::Neighbour(n.clone()),
                );
                return Ok(mac);
            }
        }
        let state = entry
            .as_ref()
            .map(|n| format!(" ({})", n.state))
            .unwrap_or_default();
        let label = v.label.clone();
        if link.kind == Some(DevKind::Vxlan) {
            return Err(self.drop(
                ns,
                Some(&link.name),
                format!(
                    "no usable neighbour entry for {nexthop} on {}{state}: an ARP request over VXLAN finds no one",
                    link.name
                ),
                Some(format!(
                    "the neighbour entry `{nexthop} dev {} lladdr <remote VTEP MAC>` in {label} (flannel programs one per remote node)",
                    link.name
                )),
            ));
        }
        match self.l2_owner(ns, link, nexthop, 0) {
            Some((owner_ns, owner_dev, mac)) => {
                self.arp_macs.push(mac);
                let says = Says::ArpAnswered {
                    nexthop,
                    dev: link.name.clone(),
                    state: entry.as_ref().map(|n| n.state.clone()),
                    owner: self.label(owner_ns),
                    owner_dev,
                    mac,
                };
                self.hop(ns, Step::Neigh, Some(&link.name), says);
                Ok(mac)
            }
            None => Err(self.drop(
                ns,
                Some(&link.name),
                format!(
                    "no neighbour entry for {nexthop} on {}{state} and no device on that link has {nexthop}: ARP goes unanswered",
                    link.name
                ),
                Some(format!("a host with address {nexthop} on the link of {} in {label}", link.name)),
            )),
        }
    }

    /// Who on the link of `link` holds `ip`: (namespace, device, MAC).
    pub(super) fn l2_owner(
        &self,
        ns: usize,
        link: &Dev,
        ip: Ipv4Addr,
        depth: usize,
    ) -> Option<(usize, String, MacAddr)> {
        if depth > 3 {
            return None;
        }
        match link.kind {
            Some(DevKind::Veth) => {
                let (pns, pidx) = self.peer(ns, link)?;
                let pv = self.view(pns);
                let plink = pv.link(pidx)?;
                if pv.owner_of(ip).is_some_and(|o| o.index == pidx) {
                    return Some((pns, plink.name.clone(), plink.mac?));
                }
                let br = plink.master?;
                let brl = pv.link(br)?;
                if pv.owner_of(ip).is_some_and(|o| o.index == br) {
                    return Some((pns, brl.name.clone(), brl.mac?));
                }
                pv.ports_of(br)
                    .into_iter()
                    .filter(|q| q.index != pidx)
                    .find_map(|q| self.l2_owner(pns, q, ip, depth + 1))
            }
            Some(DevKind::Bridge) => self
                .view(ns)
                .ports_of(link.index)
                .into_iter()
                .find_map(|q| self.l2_owner(ns, q, ip, depth + 1)),
            _ => None,
        }
    }

    /// The veth peer of `link`: (namespace, index), when it is in the topology.
    pub(super) fn peer(&self, ns: usize, link: &Dev) -> Option<(usize, u32)> {
        let idx = link.link?;
        let Some(id) = link.link_netnsid else {
            return Some((ns, idx));
        };
        let here = self.view(ns);
        self.topo.views().iter().enumerate().find_map(|(i, v)| {
            if i == ns {
                return None;
            }
            let l = v.link(idx)?;
            (l.link == Some(link.index) && here.nsid_of(v) == Some(id)).then_some((i, idx))
        })
    }

    /// The port of bridge `br` a frame to `mac` leaves by (`from`: the port it came in on).
    pub(super) fn bridge_port(
        &mut self,
        ns: usize,
        br: &Dev,
        mac: MacAddr,
        from: Option<u32>,
    ) -> Result<(Dev, Vec<Dev>), Next> {
        let v = self.view(ns);
        if let Some(e) = v.bridge_fdb(br.index, mac) {
            let dev = e.dev.to_string();
            if let Some(port) = v.link_named(&dev).filter(|p| p.index != br.index).cloned() {
                let state = if e.fixed { "static" } else { "learnt" };
                let back = if Some(port.index) == from {
                    " (back out the port it came in by: hairpin)"
                } else {
                    ""
                };
                let says = Says::FdbPort {
                    bridge: br.name.clone(),
                    mac,
                    port: port.name.clone(),
                    state,
                    back: back.to_owned(),
                };
                self.hop(ns, Step::Bridge, Some(&br.name), says);
                return Ok((port, Vec::new()));
            }
        }
        // Unknown unicast: flooded to every port; the one whose far end owns the MAC takes it.
        // Unless this walk just had the kernel ask by ARP for it: the reply taught the bridge.
        let ports: Vec<Dev> = v.ports_of(br.index).into_iter().cloned().collect();
        let n = ports.len();
        let owner = ports
            .iter()
            .filter(|p| Some(p.index) != from)
            .find(|p| {
                self.peer(ns, p)
                    .and_then(|(pns, pidx)| self.view(pns).link(pidx).and_then(|l| l.mac))
                    == Some(mac)
            })
            .cloned();
        match owner {
            Some(p) if self.arp_macs.contains(&mac) => {
                let says = Says::FdbLearnt {
                    bridge: br.name.clone(),
                    mac,
                    port: p.name.clone(),
                };
                self.hop(ns, Step::Bridge, Some(&br.name), says);
                Ok((p, Vec::new()))
            }
            Some(p) => {
                let says = Says::Flooded {
                    bridge: br.name.clone(),
                    mac,
                    ports: n,
                    port: p.name.clone(),
                };
                self.hop(ns, Step::Bridge, Some(&br.name), says);
                let others = ports
                    .into_iter()
                    .filter(|q| Some(q.index) != from && q.index != p.index)
                    .collect();
                Ok((p, others))
            }
            None => {
                let label = self.label(ns);
                Err(self.drop(
                    ns,
                    Some(&br.name),
                    format!(
                        "{}: no fdb entry for {mac} and no port leads to it",
                        br.name
                    ),
                    Some(format!(
                        "a device with MAC {mac} on bridge {} in {label}",
                        br.name
                    )),
                ))
            }
        }
    }

    /// Sends a frame to `mac` out of veth `link` into its peer's namespace.
    pub(super) fn cross(&mut self, ns: usize, link: &Dev, mac: MacAddr) -> Next {
        if link.kind != Some(DevKind::Veth) {
            let text = format!("out of {}, beyond the known namespaces", link.name);
            return self.leave(ns, &link.name, text);
        }
        match self.peer(ns, link) {
            Some((pns, pidx)) => {
                let pv = self.view(pns);
                let pname = pv.dev_name(pidx);
                let says = Says::Veth {
                    dev: link.name.clone(),
                    peer_ns: pv.label.clone(),
                    peer_dev: pname.clone(),
                    bridge: pv.link(pidx).and_then(|l| l.master).map(|m| pv.dev_name(m)),
                    mac,
                };
                let plabel = pv.label.clone();
                self.hop(ns, Step::Veth, Some(&link.name), says);
                if let Some(h) = self.hops.last_mut() {
                    h.to_ns = Some(plabel);
                    h.to_dev = Some(pname);
                }
                // The namespace boundary clears the mark (skb_scrub_packet).
                self.flow.mark = 0;
                self.flow.dnat = false;
                Next::Frame {
                    ns: pns,
                    dev: pidx,
                    mac,
                }
            }
            None => {
                let text = format!(
                    "{}'s peer is in a namespace outside the topology",
                    link.name
                );
                self.leave(ns, &link.name, text)
            }
        }
    }

    /// A frame to `mac` arrives on `dev`.
    pub(super) fn frame(&mut self, ns: usize, dev: u32, mac: MacAddr) -> Next {
        let v = self.view(ns);
        let Some(link) = v.link(dev).cloned() else {
            return self.drop(ns, None, format!("device if{dev} vanished"), None);
        };
        let Some(br) = link.master.and_then(|m| v.link(m)).cloned() else {
            if link.mac == Some(mac) || !is_ether(&link) {
                return Next::Packet {
                    ns,
                    iif: dev,
                    port: None,
                };
            }
            return self.drop(
                ns,
                Some(&link.name),
                format!(
                    "the frame is for {mac}, not {} ({}): not for this host",
                    link.name,
                    link.mac.map(|m| m.to_string()).unwrap_or_default()
                ),
                None,
            );
        };
        self.checkpoint(ns, "bridge", "pre", link.name.clone());
        let own = br.mac == Some(mac) || v.ports_of(br.index).iter().any(|p| p.mac == Some(mac));
        if own {
            let label = v.label.clone();
            let says = Says::BridgeOwn {
                bridge: br.name.clone(),
                mac,
                ns: label,
            };
            self.hop(ns, Step::Bridge, Some(&br.name), says);
            return Next::Packet {
                ns,
                iif: br.index,
                port: Some(dev),
            };
        }
        let (port, flooded) = match self.bridge_port(ns, &br, mac, Some(dev)) {
            Ok(p) => p,
            Err(n) => return n,
        };
        if self.view(ns).bridge_calls_iptables() {
            // br_netfilter: bridged IPv4 crosses the iptables hooks, with the bridge as device.
            self.checkpoint(ns, "inet", "pre", br.name.clone());
            if let Err(n) = self.rules(ns, Hook::Prerouting, Some(&br.name), None, None) {
                return n;
            }
            self.checkpoint(ns, "inet", "fwd", format!("{}>{}", br.name, br.name));
            if let Err(n) = self.rules(ns, Hook::Forward, Some(&br.name), Some(&br.name), None) {
                return n;
            }
            self.checkpoint(ns, "inet", "post", br.name.clone());
            if let Err(n) = self.rules(ns, Hook::Postrouting, Some(&br.name), Some(&br.name), None)
            {
                return n;
            }
        }
        for q in std::iter::once(&port).chain(&flooded) {
            self.checkpoint(ns, "bridge", "fwd", format!("{}>{}", link.name, q.name));
        }
        self.cross(ns, &port, mac)
    }
}
