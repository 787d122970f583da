//! The walk in words, rendered at the end: the walk records each hop as what happened
//! ([`Says`], with the rules' and IPVS's typed outcomes on the hop itself), and [`render`] is
//! the one place that turns a hop into its line of text.

use super::model::Neigh;
use super::walk::jump_path;
use super::{Hop, IpvsHop, RulesHop};
use podnet_links::MacAddr;
use std::net::Ipv4Addr;

/// What one hop says, before it is put into words.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Says {
    /// Text already in words (drops, and the steps that tell a kernel answer as is).
    Text(String),
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
