//! Node settings a service proxy compiles with, shared by every proxy mode (kube-proxy's
//! flags: `--hostname-override`, `--cluster-cidr`, `--masquerade-bit`, `--masquerade-all`,
//! `--nodeport-addresses`, `--iptables-localhost-nodeports`).

use crate::kube::IpFamily;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How the proxy tells traffic from local pods apart from other traffic (kube-proxy's
/// `--detect-local-mode`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LocalDetector {
    /// No detection: no "masquerade off-cluster traffic" rule, no pod short-circuit.
    #[default]
    None,
    /// Pods are sources inside the cluster CIDR (`--cluster-cidr`): `-s CIDR`.
    ClusterCidr(IpNet),
    /// Pods arrive through this bridge: `-i NAME`.
    BridgeInterface(String),
    /// Pods arrive through interfaces with this prefix: `-i PREFIX+`.
    InterfaceNamePrefix(String),
}

/// The masquerade mark: one bit of the packet mark (kube-proxy's `--masquerade-bit`, default 14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasqueradeMark {
    /// The mark value.
    pub value: u32,
    /// How it is written in rules.
    pub text: String,
}

impl MasqueradeMark {
    /// The mark for `bit`, written as kube-proxy writes it (`fmt.Sprintf("%#08x", 1<<bit)`, so
    /// bit 14 is `0x00004000`). Bits above 31 are clamped to 31.
    pub fn from_bit(bit: u8) -> MasqueradeMark {
        let value = 1u32 << bit.min(31);
        MasqueradeMark {
            value,
            text: format!("0x{value:08x}"),
        }
    }

    /// A mark written exactly as `text` (e.g. `0x4000`, as kube-proxy's unit tests write it).
    /// Returns `None` unless `text` is a hexadecimal or decimal number.
    pub fn literal(text: &str) -> Option<MasqueradeMark> {
        let value = match text.strip_prefix("0x") {
            Some(h) => u32::from_str_radix(h, 16).ok()?,
            None => text.parse().ok()?,
        };
        Some(MasqueradeMark {
            value,
            text: text.to_owned(),
        })
    }

    /// `value/value`, as the mark match writes it.
    pub fn match_text(&self) -> String {
        format!("{}/{}", self.text, self.text)
    }
}

impl Default for MasqueradeMark {
    fn default() -> Self {
        MasqueradeMark::from_bit(14)
    }
}

/// Everything about the node that the compilers need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    /// This node's name: endpoints with this `nodeName` are local.
    pub node_name: String,
    /// The IP family this proxier handles.
    pub family: IpFamily,
    /// The node's addresses (primary first): the allow-from-node rule of load-balancer source
    /// ranges, and `--nodeport-addresses` selection, use them.
    pub node_ips: Vec<IpAddr>,
    /// How local pod traffic is recognised.
    pub local_detector: LocalDetector,
    /// The masquerade mark.
    pub masquerade_mark: MasqueradeMark,
    /// Masquerade all traffic to cluster IPs (`--masquerade-all`).
    pub masquerade_all: bool,
    /// Networks whose node addresses accept node ports (`--nodeport-addresses`); empty means
    /// every local address.
    pub nodeport_addresses: Vec<IpNet>,
    /// Accept node ports on 127.0.0.0/8 (IPv4 only), with the KUBE-FIREWALL anti-martian rule.
    pub localhost_nodeports: bool,
    /// Write `MASQUERADE --random-fully`.
    pub masquerade_random_fully: bool,
    /// `net.netfilter.nf_conntrack_tcp_be_liberal` is set: no DROP of INVALID packets.
    pub conntrack_tcp_liberal: bool,
    /// The nfacct counters `ct_state_invalid_dropped_pkts` and `localhost_nps_accepted_pkts`
    /// exist, so rules count through them.
    pub nfacct_counters: bool,
}

impl NodeSettings {
    /// Settings with kube-proxy's defaults: mark bit 14, localhost node ports on, no
    /// `--random-fully`, no nfacct counters, no local detection.
    pub fn new(node_name: impl Into<String>, family: IpFamily) -> NodeSettings {
        NodeSettings {
            node_name: node_name.into(),
            family,
            node_ips: Vec::new(),
            local_detector: LocalDetector::None,
            masquerade_mark: MasqueradeMark::default(),
            masquerade_all: false,
            nodeport_addresses: Vec::new(),
            localhost_nodeports: true,
            masquerade_random_fully: false,
            conntrack_tcp_liberal: false,
            nfacct_counters: false,
        }
    }

    /// Node ports are accepted on every local address.
    pub fn nodeports_match_all(&self) -> bool {
        self.nodeport_addresses.is_empty()
    }

    fn loopback(&self) -> IpAddr {
        match self.family {
            IpFamily::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpFamily::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        }
    }

    /// Localhost node ports are in effect: asked for, IPv4, and loopback within
    /// `nodeport_addresses` (or that list empty).
    pub fn localhost_nodeports_effective(&self) -> bool {
        self.localhost_nodeports
            && self.family == IpFamily::V4
            && (self.nodeport_addresses.is_empty()
                || self
                    .nodeport_addresses
                    .iter()
                    .any(|n| n.contains(&self.loopback())))
    }

    /// The addresses that accept node ports when `nodeport_addresses` is not empty: node IPs
    /// (and loopback, when localhost node ports are in effect) inside those networks.
    pub fn nodeport_ips(&self) -> Vec<IpAddr> {
        let mut candidates: Vec<IpAddr> = self
            .node_ips
            .iter()
            .copied()
            .filter(|ip| IpFamily::of(ip) == self.family)
            .collect();
        if self.localhost_nodeports_effective() {
            candidates.push(self.loopback());
        }
        candidates
            .into_iter()
            .filter(|ip| self.nodeport_addresses.iter().any(|n| n.contains(ip)))
            .collect()
    }
}
