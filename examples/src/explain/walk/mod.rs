//! The walk itself: a small state machine over "the local stack sends", "a frame arrives on a
//! device" and "an IP packet arrives on a device", each step asking the namespace's kernel
//! (through [`super::view::NsView`], live or recorded). The steps live by layer: [`l3`]
//! (routing, local delivery), [`l2`] (neighbours, bridges, veth crossings), [`tunnel`]
//! (VXLAN and flannel's udp TUN tunnel, out and back in), [`hooks`] (the netfilter hooks'
//! rules).

mod hooks;
mod ipvs;
mod l2;
mod l3;
mod tunnel;

use super::model::Dev;
use super::narrate::{self, Says};
use super::rules;
use super::state::RouteAnswer;
use super::view::NsView;
use super::{
    Checkpoint, Choice, ExplainError, Flow, Hop, Outcome, Packet, Proto, Snapshot, Step, Topology,
    Walk,
};
use podnet_links::MacAddr;
use std::net::{IpAddr, Ipv4Addr};

/// More states than any sane path has: beyond this, the packet is in a loop.
const MAX_STATES: usize = 64;
/// flannel's udp backend port.
pub(crate) const FLANNEL_UDP_PORT: u16 = 8285;

/// Walks the path of `packet` sent from the namespace `source` (a label or name of `topo`).
pub fn explain(
    topo: &Topology,
    source: &str,
    packet: &Packet,
    choice: &Choice,
) -> Result<Walk, ExplainError> {
    walk_snapshot(&topo.open()?, source, packet, choice)
}

/// Walks the path of `packet` over namespaces already opened (one snapshot of their state).
pub(crate) fn walk_snapshot(
    topo: &Snapshot,
    source: &str,
    packet: &Packet,
    choice: &Choice,
) -> Result<Walk, ExplainError> {
    let src = topo
        .find(source)
        .ok_or_else(|| ExplainError::UnknownSource(source.to_owned(), topo.labels().join(", ")))?;
    let flow = Flow {
        proto: packet.proto,
        src: packet.src.unwrap_or(Ipv4Addr::UNSPECIFIED),
        dst: packet.dst,
        sport: None,
        dport: match packet.proto {
            Proto::Icmp => None,
            _ => packet.port,
        },
        mark: 0,
        dnat: false,
    };
    let mut w = Walker {
        topo,
        choice,
        flow,
        stack: Vec::new(),
        hops: Vec::new(),
        says: Vec::new(),
        checkpoints: Vec::new(),
        jumps: Vec::new(),
        caveats: Vec::new(),
        defaulted: None,
        arp_macs: Vec::new(),
    };
    let outcome = w.run(src);
    // The narration, told once the walk is over.
    for (h, says) in w.hops.iter_mut().zip(&w.says) {
        h.text = narrate::render(h, says);
    }
    let mut caveats = Vec::new();
    for c in w.caveats {
        if !caveats.contains(&c) {
            caveats.push(c);
        }
    }
    Ok(Walk {
        source: topo.views()[src].label.clone(),
        packet: packet.clone(),
        hops: w.hops,
        outcome,
        checkpoints: w.checkpoints,
        jumps: w.jumps,
        caveats,
    })
}

/// A packet wrapped inside the current one.
#[derive(Debug, Clone)]
struct Encap {
    kind: EncapKind,
    inner: Flow,
    inner_mac: Option<MacAddr>,
}

#[derive(Debug, Clone, Copy)]
enum EncapKind {
    Vxlan { vni: u32, port: u16 },
    Udp { port: u16 },
}

enum Next {
    /// The local stack of a namespace sends the current packet (out of `oif` if given).
    Send {
        ns: usize,
        oif: Option<u32>,
    },
    /// A frame to `mac` arrives on device `dev`.
    Frame {
        ns: usize,
        dev: u32,
        mac: MacAddr,
    },
    /// An IP packet arrives on `iif` (after any bridging; `port`: the bridge port the frame
    /// came in by, when `iif` is a bridge).
    Packet {
        ns: usize,
        iif: u32,
        port: Option<u32>,
    },
    Done(Outcome),
}

struct Walker<'t> {
    topo: &'t Snapshot,
    choice: &'t Choice,
    /// The packet on the wire (the outer one while encapsulated).
    flow: Flow,
    /// Packets wrapped inside `flow`, innermost first.
    stack: Vec<Encap>,
    hops: Vec<Hop>,
    /// What each hop of `hops` says, put into words when the walk is over.
    says: Vec<Says>,
    checkpoints: Vec<Checkpoint>,
    jumps: Vec<(String, rules::Jump)>,
    caveats: Vec<String>,
    /// A forwarding namespace that sent a destination owned by a known namespace down its
    /// default route: the likely missing route when the packet is dropped further on.
    defaulted: Option<String>,
    /// MACs this walk had the kernel resolve by ARP: the replies teach the bridges on the way.
    arp_macs: Vec<MacAddr>,
}

fn is_ether(l: &Dev) -> bool {
    l.mac.is_some_and(|m| m != MacAddr::ZERO)
}

impl<'t> Walker<'t> {
    fn view(&self, ns: usize) -> &'t NsView {
        let topo: &'t Snapshot = self.topo;
        &topo.views()[ns]
    }

    fn label(&self, ns: usize) -> String {
        self.view(ns).label.clone()
    }

    fn inner(&self) -> bool {
        self.stack.is_empty()
    }

    /// Records a hop: where, what kind, and what it says (worded at the end).
    fn hop(&mut self, ns: usize, step: Step, dev: Option<&str>, says: impl Into<Says>) {
        self.says.push(says.into());
        self.hops.push(Hop {
            ns: self.label(ns),
            step,
            dev: dev.map(str::to_owned),
            text: String::new(),
            to_ns: None,
            to_dev: None,
            rules: None,
            encap: None,
            ipvs: None,
            inner: self.inner(),
        });
    }

    /// Notes the outer header on the hop just told.
    fn encap(&mut self, e: super::Encapsulation) {
        if let Some(h) = self.hops.last_mut() {
            h.encap = Some(e);
        }
    }

    fn checkpoint(&mut self, ns: usize, family: &str, hook: &str, dev: String) {
        self.checkpoints.push(Checkpoint {
            ns: self.label(ns),
            family: family.to_owned(),
            hook: hook.to_owned(),
            dev,
            inner: self.inner(),
        });
    }

    fn drop(
        &mut self,
        ns: usize,
        dev: Option<&str>,
        reason: String,
        missing: Option<String>,
    ) -> Next {
        self.hop(ns, Step::Drop, dev, reason.clone());
        Next::Done(Outcome::Dropped {
            ns: self.label(ns),
            reason,
            missing,
        })
    }

    /// The packet leaves the known namespaces from `ns` by `dev`.
    fn leave(&mut self, ns: usize, dev: &str, text: String) -> Next {
        self.hop(ns, Step::Leave, Some(dev), text);
        Next::Done(Outcome::Left {
            ns: self.label(ns),
            dev: dev.to_owned(),
        })
    }

    fn run(&mut self, src: usize) -> Outcome {
        let mut next = Next::Send { ns: src, oif: None };
        for _ in 0..MAX_STATES {
            next = match next {
                Next::Send { ns, oif } => self.send(ns, oif),
                Next::Frame { ns, dev, mac } => self.frame(ns, dev, mac),
                Next::Packet { ns, iif, port } => self.packet(ns, iif, port),
                Next::Done(o) => return o,
            };
        }
        match next {
            Next::Done(o) => o,
            _ => {
                let ns = self.hops.last().map(|h| h.ns.clone()).unwrap_or_default();
                Outcome::Dropped {
                    ns,
                    reason: format!("more than {MAX_STATES} steps: the packet is in a loop"),
                    missing: None,
                }
            }
        }
    }
}

/// The chains entered, per table: `nat KUBE-SERVICES > KUBE-SVC-X > KUBE-MARK-MASQ,
/// KUBE-SVC-X > KUBE-SEP-Y; filter KUBE-FORWARD` (a jump from the chain last entered continues
/// the line; one from elsewhere starts a new one).
pub(crate) fn jump_path(jumps: &[rules::Jump], hook_chain: &str) -> String {
    let mut tables: Vec<(String, String)> = Vec::new();
    let mut last_to: Option<(String, String)> = None;
    for j in jumps {
        if !tables.iter().any(|(t, _)| *t == j.table) {
            tables.push((j.table.clone(), String::new()));
        }
        let Some((_, text)) = tables.iter_mut().find(|(t, _)| *t == j.table) else {
            continue;
        };
        let continues = last_to
            .as_ref()
            .is_some_and(|(t, to)| *t == j.table && *to == j.from);
        if continues {
            text.push_str(&format!(" > {}", j.to));
        } else {
            if !text.is_empty() {
                text.push_str(", ");
            }
            if j.from == hook_chain {
                text.push_str(&j.to);
            } else {
                text.push_str(&format!("{} > {}", j.from, j.to));
            }
        }
        last_to = Some((j.table.clone(), j.to.clone()));
    }
    tables
        .iter()
        .map(|(t, text)| format!("{t} {text}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn gw4(a: &RouteAnswer) -> Option<Ipv4Addr> {
    match a.gateway {
        Some(IpAddr::V4(g)) => Some(g),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(table: &str, from: &str, to: &str) -> rules::Jump {
        rules::Jump {
            table: table.into(),
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn jump_paths_read_per_table() {
        let jumps = [
            j("nat", "OUTPUT", "KUBE-SERVICES"),
            j("nat", "KUBE-SERVICES", "KUBE-SVC-A"),
            j("nat", "KUBE-SVC-A", "KUBE-MARK-MASQ"),
            j("nat", "KUBE-SVC-A", "KUBE-SEP-1"),
            j("filter", "OUTPUT", "KUBE-FIREWALL"),
            j("filter", "OUTPUT", "KUBE-SERVICES"),
        ];
        assert_eq!(
            jump_path(&jumps, "OUTPUT"),
            "nat KUBE-SERVICES > KUBE-SVC-A > KUBE-MARK-MASQ, KUBE-SVC-A > KUBE-SEP-1; \
             filter KUBE-FIREWALL, KUBE-SERVICES"
        );
    }
}
