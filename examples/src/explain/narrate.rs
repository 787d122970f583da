//! The walk in words, rendered at the end: the walk records each hop as what happened
//! ([`Says`], with the rules' and IPVS's typed outcomes on the hop itself), and [`render`] is
//! the one place that turns a hop into its line of text.

use super::model::Neigh;
use super::walk::{FLANNEL_UDP_PORT, jump_path};
use super::{Flow, Hop, IpvsHop, RulesHop};
use podnet_links::MacAddr;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// The kernel's route lookup, as the walk tells it: `ip route get ...: PREFIX via GW dev DEV
/// onlink src SRC table T`, or `local DST (table local)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RouteSays {
    pub(crate) asked: String,
    /// The destination, when the route is local.
    pub(crate) local: Option<Ipv4Addr>,
    pub(crate) prefix: String,
    pub(crate) via: Option<IpAddr>,
    pub(crate) dev: Option<String>,
    pub(crate) onlink: bool,
    /// The preferred source (told for the namespace's own packets only).
    pub(crate) src: Option<IpAddr>,
    /// A table other than main.
    pub(crate) table: Option<u32>,
}

impl fmt::Display for RouteSays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.asked)?;
        if let Some(dst) = self.local {
            return write!(f, "local {dst} (table local)");
        }
        f.write_str(&self.prefix)?;
        if let Some(gw) = self.via {
            write!(f, " via {gw}")?;
        }
        if let Some(d) = &self.dev {
            write!(f, " dev {d}")?;
        }
        if self.onlink {
            f.write_str(" onlink")?;
        }
        if let Some(s) = self.src {
            write!(f, " src {s}")?;
        }
        if let Some(t) = self.table {
            write!(f, " table {t}")?;
        }
        Ok(())
    }
}

/// What one hop says, before it is put into words.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Says {
    /// Text already in words: a drop's reason (the walk's outcome carries the same text) and
    /// the packet leaving the known namespaces.
    Text(String),
    /// The namespace's stack sends the packet (`outer`: the outer packet of a tunnel).
    Send { flow: Flow, outer: bool },
    /// A route lookup, with a lead-in (`after DNAT, `).
    Route(&'static str, RouteSays),
    /// The packet is for an address of `ns`; whether a socket listens on its port.
    Deliver {
        addr: Ipv4Addr,
        ns: String,
        listener: Option<bool>,
    },
    /// A VXLAN device wraps the frame: the FDB entry (for the MAC, or the default one), the
    /// outer header.
    VxlanWrap {
        dev: String,
        mac: MacAddr,
        by_default: bool,
        remote: Ipv4Addr,
        /// The outer source, unless the route chooses it.
        src: Option<Ipv4Addr>,
        port: u16,
        vni: u32,
    },
    /// A TUN device: flanneld's udp backend sends the packet to its peer.
    TunSend {
        tun: String,
        peer_ip: Ipv4Addr,
        peer: String,
        dst: Ipv4Addr,
    },
    /// A VXLAN device unwraps the packet.
    VxlanDecap {
        port: u16,
        vni: u32,
        dev: String,
        inner: Flow,
    },
    /// The udp tunnel's socket takes the packet and writes the inner one into the TUN device.
    TunDecap { port: u16, inner: Flow, tun: String },
    /// A frame to `mac` crosses a veth pair into the peer's namespace (onto a bridge port).
    Veth {
        dev: String,
        peer_ns: String,
        peer_dev: String,
        bridge: Option<String>,
        mac: MacAddr,
    },
    /// The rules at a hook: told from the hop's [`RulesHop`].
    Rules,
    /// IPVS: told from the hop's [`IpvsHop`].
    Ipvs,
    /// br_netfilter bridges a frame DNATed to an address on the bridge it came from.
    BridgedDnat { bridge: String, dst: Ipv4Addr },
    /// The next hop's neighbour entry, as `ip neigh` shows it.
    Neighbour(Neigh),
    /// The next hop has no neighbour entry; its owner answers the ARP request.
    ArpAnswered {
        nexthop: Ipv4Addr,
        dev: String,
        state: Option<String>,
        owner: String,
        owner_dev: String,
        mac: MacAddr,
    },
    /// The bridge's FDB has the MAC on a port.
    FdbPort {
        bridge: String,
        mac: MacAddr,
        port: String,
        state: &'static str,
        back: String,
    },
    /// No FDB entry, but the ARP exchange of this walk taught the bridge the port.
    FdbLearnt {
        bridge: String,
        mac: MacAddr,
        port: String,
    },
    /// No FDB entry: the frame is flooded; one port leads to the MAC.
    Flooded {
        bridge: String,
        mac: MacAddr,
        ports: usize,
        port: String,
    },
    /// The frame is for the bridge itself: up to the namespace's IP stack.
    BridgeOwn {
        bridge: String,
        mac: MacAddr,
        ns: String,
    },
}

impl From<String> for Says {
    fn from(s: String) -> Says {
        Says::Text(s)
    }
}

/// The line of text of hop `h`.
pub(crate) fn render(h: &Hop, says: &Says) -> String {
    match says {
        Says::Text(t) => t.clone(),
        Says::Rules => h.rules.as_ref().map(rules).unwrap_or_default(),
        Says::Ipvs => h.ipvs.as_ref().map(ipvs).unwrap_or_default(),
        Says::Neighbour(n) => n.to_string(),
        Says::Send { flow, outer: false } => flow.to_string(),
        Says::Send { flow, outer: true } => format!("{flow} (the outer packet)"),
        Says::Route(lead, r) => format!("{lead}{r}"),
        Says::Veth {
            dev,
            peer_ns,
            peer_dev,
            bridge,
            mac,
        } => {
            let port = bridge
                .as_ref()
                .map(|b| format!(" (a port of {b})"))
                .unwrap_or_default();
            format!("{dev} -> {peer_ns} {peer_dev}{port}, to {mac}")
        }
        Says::VxlanWrap {
            dev,
            mac,
            by_default,
            remote,
            src,
            port,
            vni,
        } => {
            let how = if *by_default {
                format!("no fdb entry for {mac}; default (00:00:00:00:00:00)")
            } else {
                format!("fdb {mac}")
            };
            let src = src.map_or_else(|| "(chosen by route)".to_string(), |s| s.to_string());
            format!("{dev}: {how} dst {remote}: wrapped in udp {src} -> {remote}:{port}, VNI {vni}")
        }
        Says::TunSend {
            tun,
            peer_ip,
            peer,
            dst,
        } => format!(
            "{tun} is a TUN device: the process reading it (flanneld's udp backend) sends the packet as the payload of udp -> {peer_ip}:{FLANNEL_UDP_PORT} ({peer}, whose subnet holds {dst})"
        ),
        Says::VxlanDecap {
            port,
            vni,
            dev,
            inner,
        } => format!("udp port {port} VNI {vni}: {dev} unwraps {inner}"),
        Says::TunDecap { port, inner, tun } => {
            format!("udp port {port}: the tunnel's socket takes it and writes {inner} into {tun}")
        }
        Says::Deliver { addr, ns, listener } => {
            let what = match listener {
                Some(true) => ": a socket listens",
                Some(false) => {
                    ": no socket listens (the kernel answers with a reset or port unreachable)"
                }
                None => "",
            };
            format!("{addr} is an address of {ns}{what}")
        }
        Says::BridgedDnat { bridge, dst } => format!(
            "{bridge}: {dst} is on {bridge} itself, so br_netfilter bridges the DNATed frame instead of routing it"
        ),
        Says::ArpAnswered {
            nexthop,
            dev,
            state,
            owner,
            owner_dev,
            mac,
        } => {
            let state = state
                .as_ref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            format!(
                "no entry for {nexthop} on {dev}{state}: the kernel asks by ARP; {owner} {owner_dev} ({mac}) answers"
            )
        }
        Says::FdbPort {
            bridge,
            mac,
            port,
            state,
            back,
        } => format!("{bridge}: fdb {mac} is on port {port} ({state}){back}"),
        Says::FdbLearnt { bridge, mac, port } => {
            format!("{bridge}: no fdb entry for {mac} yet; the ARP reply teaches it: port {port}")
        }
        Says::Flooded {
            bridge,
            mac,
            ports,
            port,
        } => format!(
            "{bridge}: no fdb entry for {mac}: flooded to its {ports} ports; {port} leads to it"
        ),
        Says::BridgeOwn { bridge, mac, ns } => {
            format!("{bridge}: {mac} is the bridge's own address: up to {ns}'s IP stack")
        }
    }
}

/// What the rules did at one hook: the chains entered, the spreads met, the translations and
/// the verdict.
fn rules(r: &RulesHop) -> String {
    let mut text = format!("{}:", r.hook);
    let path = jump_path(&r.jumps, &r.hook);
    if !path.is_empty() {
        text += &format!(" {path}");
    }
    for s in &r.spreads {
        let n = s.alternatives.len();
        let list: Vec<String> = s
            .alternatives
            .iter()
            .map(|a| {
                let what = a.dnat.map_or_else(|| a.chain.clone(), |d| d.to_string());
                format!("{what} {:.0}%", a.probability * 100.0)
            })
            .collect();
        let chosen = s
            .alternatives
            .iter()
            .find(|a| a.chain == s.chosen)
            .map(|a| a.dnat.map_or_else(|| a.chain.clone(), |d| d.to_string()))
            .unwrap_or_else(|| s.chosen.clone());
        text += &format!(
            "; {} spreads over {n} endpoint{} [{}], follows {chosen}",
            s.chain,
            if n == 1 { "" } else { "s" },
            list.join(", ")
        );
    }
    if let Some((old, new)) = &r.dnat {
        text += &format!("; DNAT {old} -> {new}");
    }
    if let Some((old, new)) = &r.snat {
        text += &format!("; MASQUERADE/SNAT source {old} -> {new}");
    }
    if let Some((old, new)) = r.mark {
        text += &format!("; mark {old:#x} -> {new:#x}");
    }
    if r.verdict != "accept" {
        text += &format!("; {}", r.verdict.to_uppercase());
    }
    text
}

/// What IPVS did: the virtual service, the real servers it picks among, the rewrite.
fn ipvs(i: &IpvsHop) -> String {
    let mut text = format!("{}: IPVS virtual service {}", i.hook, i.service);
    let Some(s) = &i.spread else {
        return text + ", no real server";
    };
    let n = s.alternatives.len();
    let list: Vec<String> = s
        .alternatives
        .iter()
        .map(|a| format!("{} {:.0}%", a.chain, a.probability * 100.0))
        .collect();
    let how = match i.scheduler.as_str() {
        "rr" => "in turn",
        "wrr" => "in turn by weight",
        "sh" | "dh" | "mh" => "by hash",
        _ => "by its scheduler",
    };
    text += &format!(
        "; picks {how} among {n} real server{} [{}], follows {}",
        if n == 1 { "" } else { "s" },
        list.join(", "),
        s.chosen
    );
    if let Some((old, new)) = &i.rewrite {
        text += &format!("; masquerade forwarding: destination {old} -> {new}");
    }
    text
}
