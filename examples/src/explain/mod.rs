//! `podnet-cluster explain`: the path a packet takes, predicted from live kernel state and
//! confirmed by a traced probe.
//!
//! Given a source namespace and a packet (protocol, source, destination, port), [`explain`]
//! walks the kernel's state hop by hop, the way the classic debugging write-ups do it by hand
//! with `ip route get`, `ip neigh`, `bridge fdb` and `iptables -t nat -nL`:
//!
//! - in each namespace, the route the kernel chooses, asked of the kernel itself (RTM_GETROUTE
//!   with the input interface, source and mark: `ip route get DST from SRC iif DEV`), never a
//!   re-implementation of the lookup;
//! - the neighbour entry of the next hop, or its absence (and who would answer the ARP);
//! - the bridge FDB decision (the bridge's own address, a learnt port, or flooding);
//! - the VXLAN FDB entry and the outer header the frame gets (local and remote VTEP, UDP port,
//!   VNI), and its decapsulation on the other side; flannel's udp backend (a TUN device read by
//!   flanneld) likewise;
//! - the rules that match at each hook, in iptables mode (read with `iptables-save` and parsed
//!   by podnet-nat's parser) and in nftables mode (`nft -j list ruleset`): which chain, which
//!   rule, which DNAT target and with what probability, MASQUERADE, marks, DROP and REJECT;
//!   ipset matches (`-m set --match-set`, kube-proxy's ipvs mode) against `ipset save`;
//! - IPVS, for kube-proxy's ipvs mode (the table read over generic netlink with podnet-nat's
//!   client): a local destination that is a virtual service (a ClusterIP on `kube-ipvs0`, a
//!   NodePort on a node address) is taken at LOCAL_IN (LOCAL_OUT for the namespace's own
//!   packets), every real server the scheduler can pick is named with its share, the
//!   destination rewritten (masquerade forwarding) and the packet routed on to the endpoint;
//!   a virtual service without real servers drops it;
//! - the veth crossing into the next namespace (the peer found by interface index and
//!   `link-netnsid`, resolved against the topology's namespaces with RTM_GETNSID);
//!
//! until the packet is delivered, dropped (the walk says what is missing), or leaves the known
//! namespaces.
//!
//! [`probe`] then optionally sends one real packet from the source namespace with tracing on
//! (a temporary nftables table per namespace that sets `meta nftrace` on the probe, and the
//! trace events read over netlink from NFNLGRP_NFTRACE; iptables-nft rule sets are nftables
//! underneath, so their chains show up in the trace too) and reports where the kernel's trace
//! agrees with the prediction and where it does not.
//!
//! What the walk assumes, and where it stops knowing:
//! - IPv4, and the first packet of a new connection (conntrack state NEW, so the nat table is
//!   consulted); `-m recent --rcheck` (session affinity) is taken as "no earlier connection".
//! - iptables rule sets (legacy or nft-backed, read with `iptables-save`, parsed by podnet-nat)
//!   and native nftables tables (kube-proxy's nftables mode, read with `nft -j list ruleset`),
//!   their chains interleaved by hook priority. A rule beyond what the evaluators know is left
//!   out and named in the walk's caveats. At LOCAL_IN, IPVS is taken after every INPUT chain
//!   (the kernel runs it between filter's and nat's, and kube-proxy puts nothing in nat's).
//! - The hops are recorded as what happened and put into words at the end (`narrate`), so
//!   the text and the pictures tell the same walk.
//! - Userspace datapaths are inferred: for flannel's udp backend (a TUN device), the peer is
//!   the node of the topology whose connected routes hold the destination, on UDP 8285.
//! - Neighbour resolution that has not happened yet is predicted from who holds the address
//!   on the link; a bridge without an FDB entry floods, unless that very ARP exchange taught it.
//! - Routing, policy routing included, is always the kernel's answer at the time of the walk;
//!   the state can change between the walk and the probe (the probe then says so).
//!
//! Why here, in podnet-examples, and not in podnet-links or podnet-nat: the walk needs all of
//! them at once (links for the kernel's tables, nat for the rule model, netns to move between
//! namespaces), and the arrows of the design point from the examples to those crates, never
//! between links and nat. It also knows the shape of the simulated cluster (its namespace
//! names, flannel's devices and ports), which belongs with the cluster tool.
//!
//! ```no_run
//! use podnet_examples::explain::{Packet, Proto, Topology, explain};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let topo = Topology::cluster("podnet")?; // podnet-fabric, podnet-node1, podnet-node1-pod1...
//! let packet = Packet::new(Proto::Tcp, "10.96.0.10".parse()?).port(80);
//! let walk = explain(&topo, "node1-pod1", &packet, &Default::default())?;
//! print!("{walk}");
//! # Ok(())
//! # }
//! ```

mod cli;
mod fuzzing;
mod ipset;
mod ipvs;
mod model;
mod narrate;
mod nft;
pub mod picture;
mod rules;
mod state;
mod trace;
mod view;
mod walk;

pub use cli::{ExplainArgs, ShowArgs, run as run_cli, run_show};
#[doc(hidden)]
pub use fuzzing::{iptables_rules, nft_ruleset, nft_trace};
pub use ipvs::{IpvsDest, IpvsService};
pub use model::{Addr, Dev, DevKind, Fdb, Neigh, RecordedNs, RecordedRoute, Recording, VxlanConf};
pub use rules::{Alternative, Jump, Spread};
pub use state::{RouteAnswer, RouteQuery, RouteType};
pub use trace::{Agreement, ProbeReport, TracedNs, probe};
pub use walk::explain;

use podnet_netns::NetNs;
use serde::Serialize;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;
use view::NsView;

/// What can go wrong before a walk can start (a walk that finds a broken path is not an
/// error: it ends with [`Outcome::Dropped`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExplainError {
    /// A namespace could not be opened or read.
    #[error("namespace {0}: {1}")]
    Namespace(String, String),
    /// A netlink socket could not be opened.
    #[error("netlink in {0}: {1}")]
    Netlink(String, String),
    /// The source namespace is not part of the topology.
    #[error("no namespace {0:?} in the topology (known: {1})")]
    UnknownSource(String, String),
    /// A destination could not be understood.
    #[error("bad destination {0:?}: {1}")]
    BadDestination(String, String),
    /// No namespace of the cluster was found.
    #[error(
        "no namespaces with prefix {0:?}: is the cluster up (`podnet-cluster up --prefix {0}`)?"
    )]
    NoCluster(String),
    /// The traced probe could not be set up or sent.
    #[error("probe: {0}")]
    Probe(String),
    /// A recording could not be read or written.
    #[error("recording {0}: {1}")]
    Recording(String, String),
}

impl ExplainError {
    fn ns(label: &str, e: impl fmt::Display) -> ExplainError {
        ExplainError::Namespace(label.to_owned(), e.to_string())
    }
}

/// A transport protocol of the packet to explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// ICMP echo request (ping).
    Icmp,
    /// TCP (the first SYN of a connection).
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Icmp => 1,
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    /// Parses `icmp`, `tcp` or `udp` in any case.
    pub fn from_name(s: &str) -> Option<Proto> {
        match s.to_ascii_lowercase().as_str() {
            "icmp" | "ping" => Some(Proto::Icmp),
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Icmp => "icmp",
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// The packet to explain: the first packet of a new connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Packet {
    /// Protocol.
    pub proto: Proto,
    /// Source address; `None` lets the source namespace's route choose it.
    pub src: Option<Ipv4Addr>,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Destination port (TCP and UDP).
    pub port: Option<u16>,
}

impl Packet {
    /// A packet to `dst` with the source chosen by the route.
    pub fn new(proto: Proto, dst: Ipv4Addr) -> Packet {
        Packet {
            proto,
            src: None,
            dst,
            port: None,
        }
    }

    /// Sets the destination port.
    pub fn port(mut self, port: u16) -> Packet {
        self.port = Some(port);
        self
    }

    /// Sets the source address.
    pub fn src(mut self, src: Ipv4Addr) -> Packet {
        self.src = Some(src);
        self
    }
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.proto)?;
        if let Some(s) = self.src {
            write!(f, "{s} -> ")?;
        }
        write!(f, "{}", self.dst)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// How the walk chooses between the rules of a `-m statistic --mode random` spread (a Service
/// with several endpoints). Every alternative is reported with its probability either way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Choice {
    /// Follow the first alternative.
    #[default]
    First,
    /// Follow the alternative whose chain (`KUBE-SEP-...`), endpoint `IP:PORT` or endpoint IP
    /// is in the list; the first alternative when none is.
    Prefer(Vec<String>),
}

/// The flow as the walk carries it from namespace to namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flow {
    pub(crate) proto: Proto,
    pub(crate) src: Ipv4Addr,
    pub(crate) dst: Ipv4Addr,
    pub(crate) sport: Option<u16>,
    pub(crate) dport: Option<u16>,
    pub(crate) mark: u32,
    /// A DNAT happened in this namespace (conntrack's DNAT state).
    pub(crate) dnat: bool,
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.proto, self.src)?;
        if let Some(p) = self.sport {
            write!(f, ":{p}")?;
        }
        write!(f, " -> {}", self.dst)?;
        if let Some(p) = self.dport {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// A netfilter hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    /// The built-in chain of the hook.
    pub(crate) fn chain_name(self) -> &'static str {
        match self {
            Hook::Prerouting => "PREROUTING",
            Hook::Input => "INPUT",
            Hook::Forward => "FORWARD",
            Hook::Output => "OUTPUT",
            Hook::Postrouting => "POSTROUTING",
        }
    }
}

/// What one hop of the walk is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Step {
    /// The packet leaves the source's stack.
    Send,
    /// The kernel's route lookup.
    Route,
    /// iptables rules that changed or judged the packet (nat, mangle, filter).
    Rules,
    /// IPVS (kube-proxy's ipvs mode): a virtual service picks a real server and rewrites the
    /// destination.
    Ipvs,
    /// The neighbour (ARP) entry of the next hop.
    Neigh,
    /// A bridge's forwarding decision.
    Bridge,
    /// VXLAN encapsulation (FDB entry, outer header).
    Vxlan,
    /// A userspace tunnel (TUN device).
    Tunnel,
    /// A veth crossing into another namespace.
    Veth,
    /// An encapsulated packet is unwrapped.
    Decap,
    /// The packet reaches its destination.
    Deliver,
    /// The packet is dropped.
    Drop,
    /// The packet leaves the namespaces the walk knows.
    Leave,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Send => "send",
            Step::Route => "route",
            Step::Rules => "rules",
            Step::Ipvs => "ipvs",
            Step::Neigh => "neigh",
            Step::Bridge => "bridge",
            Step::Vxlan => "vxlan",
            Step::Tunnel => "tunnel",
            Step::Veth => "veth",
            Step::Decap => "decap",
            Step::Deliver => "deliver",
            Step::Drop => "DROP",
            Step::Leave => "leave",
        })
    }
}

/// What iptables did at one hook of one namespace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RulesHop {
    /// The hook's chain (`PREROUTING`, `FORWARD`, `POSTROUTING`, ...).
    pub hook: String,
    /// Chains entered, in order.
    pub jumps: Vec<Jump>,
    /// Random spreads met (Service endpoints) and the alternative followed.
    pub spreads: Vec<Spread>,
    /// `(before, after)` destination, when DNAT changed it.
    pub dnat: Option<(String, String)>,
    /// `(before, after)` source, when SNAT or MASQUERADE changed it.
    pub snat: Option<(String, String)>,
    /// `(before, after)` packet mark, when the rules changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mark: Option<(u32, u32)>,
    /// The rules that decided (DNAT, MASQUERADE, MARK, ACCEPT, DROP, REJECT), as
    /// `iptables-save` lines with their table.
    pub rules: Vec<String>,
    /// `accept`, `drop` or `reject`.
    pub verdict: String,
}

/// What IPVS did at one hook of one namespace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IpvsHop {
    /// The hook: `LOCAL_IN` (traffic that arrived) or `LOCAL_OUT` (the namespace's own).
    pub hook: String,
    /// The virtual service, as `ipvsadm -Ln` heads it (`TCP 10.96.0.10:80 rr`).
    pub service: String,
    /// Its scheduler (`rr`, `wrr`, `sh`, ...).
    pub scheduler: String,
    /// Every real server the scheduler can pick (chain: the server as `IP:PORT`), with its
    /// share of new connections, and the one the walk follows; `None` when there is none.
    pub spread: Option<Spread>,
    /// `(virtual, real)` destination, when a real server was picked.
    pub rewrite: Option<(String, String)>,
}

/// One hop of the walk: one decision in one namespace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hop {
    /// The namespace (its label: `node1`, `node1-pod1`, `fabric`).
    pub ns: String,
    /// What the hop is about.
    pub step: Step,
    /// The device involved, if any.
    pub dev: Option<String>,
    /// The hop in words.
    pub text: String,
    /// For [`Step::Veth`]: the namespace entered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_ns: Option<String>,
    /// For [`Step::Veth`]: the device the packet enters by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_dev: Option<String>,
    /// For [`Step::Rules`]: what the rules did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<RulesHop>,
    /// For [`Step::Vxlan`], [`Step::Tunnel`] and [`Step::Decap`]: the outer header put around
    /// the packet, or taken off it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encap: Option<Encapsulation>,
    /// For [`Step::Ipvs`]: the virtual service, the real servers and the rewrite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipvs: Option<IpvsHop>,
    /// The packet inside a tunnel (`false` for the outer packet of an encapsulation).
    pub inner: bool,
}

/// The outer header of an encapsulation, on the hop that wraps or unwraps the packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Encapsulation {
    /// `vxlan`, or `udp` for flannel's udp backend.
    pub kind: String,
    /// Outer source address; `None` when the route chooses it.
    pub src: Option<Ipv4Addr>,
    /// Outer destination: the remote VTEP or tunnel peer.
    pub dst: Ipv4Addr,
    /// Outer UDP destination port.
    pub port: u16,
    /// The VXLAN network identifier.
    pub vni: Option<u32>,
    /// The packet inside.
    pub inner: String,
}

impl fmt::Display for Encapsulation {
    /// `udp 198.18.0.1 -> 198.18.0.2:8472 VNI 1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("udp ")?;
        if let Some(s) = self.src {
            write!(f, "{s} ")?;
        }
        write!(f, "-> {}:{}", self.dst, self.port)?;
        if let Some(v) = self.vni {
            write!(f, " VNI {v}")?;
        }
        Ok(())
    }
}

/// How the walk ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Outcome {
    /// The packet reached a namespace that owns its destination address.
    Delivered {
        /// The namespace.
        ns: String,
        /// The destination address (after any DNAT).
        addr: Ipv4Addr,
        /// The destination port, if any.
        port: Option<u16>,
        /// Whether a socket listens there (`None` for ICMP, answered by the kernel).
        listener: Option<bool>,
    },
    /// The packet is dropped.
    Dropped {
        /// Where.
        ns: String,
        /// Why, in the kernel's terms.
        reason: String,
        /// What is missing, when the walk can tell (a route, an FDB entry, endpoints...).
        missing: Option<String>,
    },
    /// The packet leaves the namespaces of the topology.
    Left {
        /// The last known namespace.
        ns: String,
        /// The device it leaves by.
        dev: String,
    },
}

/// A point where the kernel's trace should see the probe: a netfilter hook of one family in one
/// namespace, with the device(s) the packet is on there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Checkpoint {
    /// The namespace label.
    pub ns: String,
    /// `inet` or `bridge`.
    pub family: String,
    /// `pre`, `in`, `fwd`, `out` or `post`.
    pub hook: String,
    /// The input device (`pre`, `in`, `fwd`) or output device (`out`, `post`), and both for
    /// `fwd` as `IN>OUT`.
    pub dev: String,
    /// `true` for the probe's own packet, `false` for an outer (encapsulating) packet.
    pub inner: bool,
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.family, self.hook, self.dev)?;
        if !self.inner {
            f.write_str(" (outer)")?;
        }
        Ok(())
    }
}

/// The predicted path of one packet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Walk {
    /// The source namespace (label).
    pub source: String,
    /// The packet as asked.
    pub packet: Packet,
    /// The hops, in order.
    pub hops: Vec<Hop>,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Where a trace should see the packet (netfilter hooks and devices, per namespace).
    pub checkpoints: Vec<Checkpoint>,
    /// Chains the probe's own packet enters in each namespace (`(namespace, jump)`).
    pub jumps: Vec<(String, Jump)>,
    /// Things the walk could not model exactly.
    pub caveats: Vec<String>,
}

impl Walk {
    /// The namespaces visited, in order, each once per consecutive stay.
    pub fn namespaces(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for h in &self.hops {
            if out.last() != Some(&h.ns.as_str()) {
                out.push(&h.ns);
            }
        }
        out
    }

    /// The veth crossings as `(from ns, from dev, to ns, to dev)`.
    pub fn crossings(&self) -> Vec<(&str, &str, &str, &str)> {
        self.hops
            .iter()
            .filter(|h| h.step == Step::Veth)
            .map(|h| {
                (
                    h.ns.as_str(),
                    h.dev.as_deref().unwrap_or(""),
                    h.to_ns.as_deref().unwrap_or(""),
                    h.to_dev.as_deref().unwrap_or(""),
                )
            })
            .collect()
    }

    /// The hops of one kind.
    pub fn hops_of(&self, step: Step) -> impl Iterator<Item = &Hop> {
        self.hops.iter().filter(move |h| h.step == step)
    }

    /// The rules hops (iptables decisions), with their namespace.
    pub fn rules(&self) -> impl Iterator<Item = (&str, &RulesHop)> {
        self.hops
            .iter()
            .filter_map(|h| h.rules.as_ref().map(|r| (h.ns.as_str(), r)))
    }

    /// `true` when the walk ended with the packet delivered.
    pub fn delivered(&self) -> bool {
        matches!(self.outcome, Outcome::Delivered { .. })
    }

    /// The walk as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl fmt::Display for Walk {
    /// One line per hop, then the outcome.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} from {}:", self.packet, self.source)?;
        let width = self.hops.iter().map(|h| h.ns.len()).max().unwrap_or(4);
        for h in &self.hops {
            let outer = if h.inner { "" } else { "  (outer)" };
            writeln!(
                f,
                "  {:<width$}  {:<7}  {}{outer}",
                h.ns,
                h.step.to_string(),
                h.text
            )?;
        }
        match &self.outcome {
            Outcome::Delivered {
                ns,
                addr,
                port,
                listener,
            } => {
                write!(f, "=> delivered to {addr}")?;
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                write!(f, " in {ns}")?;
                match listener {
                    Some(true) => writeln!(f, " (a socket listens)")?,
                    Some(false) => writeln!(f, " (no socket listens: the kernel refuses it)")?,
                    None => writeln!(f)?,
                }
            }
            Outcome::Dropped {
                ns,
                reason,
                missing,
            } => {
                writeln!(f, "=> dropped in {ns}: {reason}")?;
                if let Some(m) = missing {
                    writeln!(f, "   missing: {m}")?;
                }
            }
            Outcome::Left { ns, dev } => {
                writeln!(f, "=> leaves the known namespaces from {ns} by {dev}")?
            }
        }
        for c in &self.caveats {
            writeln!(f, "   note: {c}")?;
        }
        Ok(())
    }
}

/// The namespaces a walk may visit: live namespaces, whose state each walk reads afresh, or a
/// [`Recording`] of them, which drives the walk without root.
#[derive(Debug, Clone)]
pub struct Topology {
    source: Source,
    prefix: Option<String>,
}

#[derive(Debug, Clone)]
enum Source {
    Live(Vec<(String, String, NetNs)>),
    Recorded(Arc<Recording>),
}

/// The namespaces of a topology opened for one walk: their state is read once, on first use,
/// so one walk sees one consistent picture and the next one sees the changes.
#[derive(Debug)]
pub(crate) struct Snapshot {
    views: Vec<NsView>,
}

impl Snapshot {
    pub(crate) fn views(&self) -> &[NsView] {
        &self.views
    }

    /// The index of the namespace with this label or name.
    pub(crate) fn find(&self, label: &str) -> Option<usize> {
        self.views
            .iter()
            .position(|v| v.label == label || v.name == label)
    }

    /// The labels, in order.
    pub(crate) fn labels(&self) -> Vec<&str> {
        self.views.iter().map(|v| v.label.as_str()).collect()
    }

    /// What the views read, as a recording; with every veth's peer namespace resolved, so the
    /// recording can draw the pairs.
    pub(crate) fn record(&self, prefix: Option<&str>) -> Recording {
        for v in &self.views {
            if v.links().iter().any(|l| l.link_netnsid.is_some()) {
                for o in self.views.iter().filter(|o| o.name != v.name) {
                    v.nsid_of(o);
                }
            }
        }
        Recording {
            prefix: prefix.map(str::to_owned),
            namespaces: self.views.iter().map(NsView::record).collect(),
        }
    }
}

impl Topology {
    /// The namespaces of the simulated cluster made by `podnet-cluster up --prefix PREFIX`:
    /// `PREFIX-fabric`, `PREFIX-nodeN`, `PREFIX-nodeN-podM`, labelled without the prefix.
    pub fn cluster(prefix: &str) -> Result<Topology, ExplainError> {
        let names = crate::cluster::existing(prefix);
        if names.is_empty() {
            return Err(ExplainError::NoCluster(prefix.to_owned()));
        }
        let mut entries = Vec::new();
        for name in names {
            let label = name
                .strip_prefix(&format!("{prefix}-"))
                .unwrap_or(&name)
                .to_owned();
            let ns = NetNs::open(&name).map_err(|e| ExplainError::ns(&name, e))?;
            entries.push((label, name, ns));
        }
        // fabric, then nodes, then pods (by name within each).
        entries.sort_by_key(|(label, _, _)| {
            let rank = if label == "fabric" {
                0
            } else if label.contains("-pod") {
                2
            } else {
                1
            };
            (rank, natural_key(label))
        });
        let mut t = Topology::from_namespaces(entries)?;
        t.prefix = Some(prefix.to_owned());
        Ok(t)
    }

    /// Any set of namespaces, as `(label, name, namespace)`.
    pub fn from_namespaces(
        entries: impl IntoIterator<Item = (String, String, NetNs)>,
    ) -> Result<Topology, ExplainError> {
        Ok(Topology {
            source: Source::Live(entries.into_iter().collect()),
            prefix: None,
        })
    }

    /// A recorded topology: walks over it read the recording, not the kernel, and need no
    /// root. A route lookup the recording does not hold is answered as an error that says so.
    pub fn recorded(recording: Recording) -> Topology {
        Topology {
            prefix: recording.prefix.clone(),
            source: Source::Recorded(Arc::new(recording)),
        }
    }

    /// Opens every namespace for one walk.
    pub(crate) fn open(&self) -> Result<Snapshot, ExplainError> {
        let views = match &self.source {
            Source::Live(entries) => entries
                .iter()
                .map(|(label, name, ns)| {
                    let live = state::LiveNs::open(label, ns.clone())?;
                    Ok(NsView::new(label.clone(), name.clone(), Box::new(live)))
                })
                .collect::<Result<Vec<_>, ExplainError>>()?,
            Source::Recorded(r) => r
                .namespaces
                .iter()
                .map(|n| NsView::new(n.label.clone(), n.name.clone(), Box::new(n.clone())))
                .collect(),
        };
        Ok(Snapshot { views })
    }

    /// Reads the whole state of the topology (every table of every namespace) as a recording,
    /// with the route lookups of `walks` (`(source, packet, choice)`) made on the way, so those
    /// walks can be replayed from it.
    pub fn record(&self, walks: &[(&str, Packet, Choice)]) -> Result<Recording, ExplainError> {
        let snap = self.open()?;
        for (src, packet, choice) in walks {
            walk::walk_snapshot(&snap, src, packet, choice)?;
        }
        Ok(snap.record(self.prefix.as_deref()))
    }

    /// Whether the topology is a recording.
    pub fn is_recorded(&self) -> bool {
        matches!(self.source, Source::Recorded(_))
    }

    /// The labels of the namespaces, in order.
    pub fn labels(&self) -> Vec<&str> {
        match &self.source {
            Source::Live(e) => e.iter().map(|(l, _, _)| l.as_str()).collect(),
            Source::Recorded(r) => r.namespaces.iter().map(|n| n.label.as_str()).collect(),
        }
    }

    /// The cluster prefix, for a topology made by [`Topology::cluster`].
    pub fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    /// Resolves a destination given as an address, or as the label of a namespace (its first
    /// global IPv4 address, e.g. a pod's), or `outside` (the cluster's outside address).
    pub fn resolve(&self, what: &str) -> Result<Ipv4Addr, ExplainError> {
        if let Ok(ip) = what.parse::<Ipv4Addr>() {
            return Ok(ip);
        }
        if what == "outside" {
            return Ok(crate::cluster::OUTSIDE_IP);
        }
        let snap = self.open()?;
        let i = snap.find(what).ok_or_else(|| {
            ExplainError::BadDestination(
                what.to_owned(),
                "neither an IPv4 address nor a namespace of the topology".into(),
            )
        })?;
        snap.views()[i].first_global_v4().ok_or_else(|| {
            ExplainError::BadDestination(what.to_owned(), "it has no IPv4 address".into())
        })
    }
}

/// `node10` after `node9`.
fn natural_key(s: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            if !num.is_empty() {
                out.push((std::mem::take(&mut text), num.parse().unwrap_or(0)));
                num.clear();
            }
            text.push(c);
        }
    }
    out.push((text, num.parse().unwrap_or(0)));
    out
}

/// Parses `DEST[:PORT]` as given on the command line.
pub fn parse_destination(s: &str) -> (String, Option<u16>) {
    match s.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => (host.to_owned(), port.parse().ok()),
        _ => (s.to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_and_ordering() {
        assert_eq!(
            parse_destination("10.96.0.10:80"),
            ("10.96.0.10".into(), Some(80))
        );
        assert_eq!(parse_destination("node2-pod1"), ("node2-pod1".into(), None));
        let mut v = vec!["node10", "node9", "node1"];
        v.sort_by_key(|s| natural_key(s));
        assert_eq!(v, ["node1", "node9", "node10"]);
    }
}
