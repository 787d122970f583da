//! The ipsets of kube-proxy's ipvs mode, and their `ipset restore` input.

use crate::iptables::Protocol;
use crate::kube::IpFamily;
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;

/// An ipset type, as kube-proxy uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetType {
    /// `hash:ip`.
    HashIp,
    /// `hash:ip,port`.
    HashIpPort,
    /// `hash:ip,port,ip`.
    HashIpPortIp,
    /// `hash:ip,port,net`.
    HashIpPortNet,
    /// `bitmap:port` (range 0-65535).
    BitmapPort,
}

impl SetType {
    /// The type's name for `ipset create`.
    pub fn as_str(self) -> &'static str {
        match self {
            SetType::HashIp => "hash:ip",
            SetType::HashIpPort => "hash:ip,port",
            SetType::HashIpPortIp => "hash:ip,port,ip",
            SetType::HashIpPortNet => "hash:ip,port,net",
            SetType::BitmapPort => "bitmap:port",
        }
    }

    /// The match direction of `-m set --match-set NAME DIR` that kube-proxy uses to look up a
    /// packet's destination in a set of this type.
    pub fn dst_match(self) -> &'static str {
        match self {
            SetType::HashIp | SetType::BitmapPort => "dst",
            _ => "dst,dst",
        }
    }
}

/// One ipset: its name, type and family, kube-proxy's comment for the rules that use it,
/// and its entries as `ipset add` spells them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpSet {
    /// The name (`KUBE-CLUSTER-IP`; IPv6 sets are named `KUBE-6-...`, at most 31 characters).
    pub name: String,
    /// The type.
    pub set_type: SetType,
    /// The family of its addresses.
    pub family: IpFamily,
    /// The comment kube-proxy puts on the iptables rules that match this set.
    pub comment: &'static str,
    /// The entries, e.g. `10.96.0.10,tcp:80`.
    pub entries: BTreeSet<String>,
}

/// kube-proxy's set names, types and comments (`pkg/proxy/ipvs/ipset.go`), in the order of its
/// `ipsetInfo`.
pub const SETS: [(&str, SetType, &str); 17] = [
    (
        LOOP_BACK,
        SetType::HashIpPortIp,
        "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose",
    ),
    (
        CLUSTER_IP,
        SetType::HashIpPort,
        "Kubernetes service cluster ip + port for masquerade purpose",
    ),
    (
        EXTERNAL_IP,
        SetType::HashIpPort,
        "Kubernetes service external ip + port for masquerade and filter purpose",
    ),
    (
        EXTERNAL_IP_LOCAL,
        SetType::HashIpPort,
        "Kubernetes service external ip + port with externalTrafficPolicy=local",
    ),
    (
        LOAD_BALANCER,
        SetType::HashIpPort,
        "Kubernetes service lb portal",
    ),
    (
        LOAD_BALANCER_FW,
        SetType::HashIpPort,
        "Kubernetes service load balancer ip + port for load balancer with sourceRange",
    ),
    (
        LOAD_BALANCER_LOCAL,
        SetType::HashIpPort,
        "Kubernetes service load balancer ip + port with externalTrafficPolicy=local",
    ),
    (
        LOAD_BALANCER_SOURCE_IP,
        SetType::HashIpPortIp,
        "Kubernetes service load balancer ip + port + source IP for packet filter purpose",
    ),
    (
        LOAD_BALANCER_SOURCE_CIDR,
        SetType::HashIpPortNet,
        "Kubernetes service load balancer ip + port + source cidr for packet filter purpose",
    ),
    (
        NODE_PORT_TCP,
        SetType::BitmapPort,
        "Kubernetes nodeport TCP port for masquerade purpose",
    ),
    (
        NODE_PORT_LOCAL_TCP,
        SetType::BitmapPort,
        "Kubernetes nodeport TCP port with externalTrafficPolicy=local",
    ),
    (
        NODE_PORT_UDP,
        SetType::BitmapPort,
        "Kubernetes nodeport UDP port for masquerade purpose",
    ),
    (
        NODE_PORT_LOCAL_UDP,
        SetType::BitmapPort,
        "Kubernetes nodeport UDP port with externalTrafficPolicy=local",
    ),
    (
        NODE_PORT_SCTP,
        SetType::HashIpPort,
        "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'",
    ),
    (
        NODE_PORT_LOCAL_SCTP,
        SetType::HashIpPort,
        "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'",
    ),
    (
        HEALTH_CHECK_NODE_PORT,
        SetType::BitmapPort,
        "Kubernetes health check node port",
    ),
    (IPVS_IPS, SetType::HashIp, "Addresses on the ipvs interface"),
];

/// Endpoint ip:port and source ip, for hairpin masquerade.
pub const LOOP_BACK: &str = "KUBE-LOOP-BACK";
/// Service cluster ip + port.
pub const CLUSTER_IP: &str = "KUBE-CLUSTER-IP";
/// Service external ip + port.
pub const EXTERNAL_IP: &str = "KUBE-EXTERNAL-IP";
/// External ip + port with externalTrafficPolicy=Local.
pub const EXTERNAL_IP_LOCAL: &str = "KUBE-EXTERNAL-IP-LOCAL";
/// Load-balancer ingress ip + port.
pub const LOAD_BALANCER: &str = "KUBE-LOAD-BALANCER";
/// Load-balancer ip + port with source ranges.
pub const LOAD_BALANCER_FW: &str = "KUBE-LOAD-BALANCER-FW";
/// Load-balancer ip + port with externalTrafficPolicy=Local.
pub const LOAD_BALANCER_LOCAL: &str = "KUBE-LOAD-BALANCER-LOCAL";
/// Load-balancer ip + port + allowed source ip.
pub const LOAD_BALANCER_SOURCE_IP: &str = "KUBE-LOAD-BALANCER-SOURCE-IP";
/// Load-balancer ip + port + allowed source cidr.
pub const LOAD_BALANCER_SOURCE_CIDR: &str = "KUBE-LOAD-BALANCER-SOURCE-CIDR";
/// TCP node ports.
pub const NODE_PORT_TCP: &str = "KUBE-NODE-PORT-TCP";
/// TCP node ports with externalTrafficPolicy=Local.
pub const NODE_PORT_LOCAL_TCP: &str = "KUBE-NODE-PORT-LOCAL-TCP";
/// UDP node ports.
pub const NODE_PORT_UDP: &str = "KUBE-NODE-PORT-UDP";
/// UDP node ports with externalTrafficPolicy=Local.
pub const NODE_PORT_LOCAL_UDP: &str = "KUBE-NODE-PORT-LOCAL-UDP";
/// SCTP node ports (node ip + port).
pub const NODE_PORT_SCTP: &str = "KUBE-NODE-PORT-SCTP-HASH";
/// SCTP node ports with externalTrafficPolicy=Local.
pub const NODE_PORT_LOCAL_SCTP: &str = "KUBE-NODE-PORT-LOCAL-SCTP-HASH";
/// Health-check node ports.
pub const HEALTH_CHECK_NODE_PORT: &str = "KUBE-HEALTH-CHECK-NODE-PORT";
/// Addresses bound to kube-ipvs0.
pub const IPVS_IPS: &str = "KUBE-IPVS-IPS";

/// The name of set `base` for `family`: IPv6 sets are `KUBE-6-...`, cut to 31 characters
/// (kube-proxy's `NewIPSet`).
pub fn set_name(base: &str, family: IpFamily) -> String {
    match (family, base.strip_prefix("KUBE-")) {
        (IpFamily::V6, Some(rest)) => {
            let mut n = format!("KUBE-6-{rest}");
            n.truncate(31);
            n
        }
        _ => base.to_owned(),
    }
}

/// `ip,proto:port` (hash:ip,port).
pub(crate) fn ip_port(ip: IpAddr, proto: Protocol, port: u16) -> String {
    format!("{ip},{}:{port}", proto.as_str())
}

/// `ip,proto:port,ip2` (hash:ip,port,ip).
pub(crate) fn ip_port_ip(ip: IpAddr, proto: Protocol, port: u16, ip2: IpAddr) -> String {
    format!("{ip},{}:{port},{ip2}", proto.as_str())
}

/// `ip,proto:port,net` (hash:ip,port,net).
pub(crate) fn ip_port_net(ip: IpAddr, proto: Protocol, port: u16, net: IpNet) -> String {
    format!("{ip},{}:{port},{net}", proto.as_str())
}

impl IpSet {
    /// An empty set of kube-proxy's, by its base name (e.g. [`CLUSTER_IP`]), for `family`.
    /// `None` for a name that is not one of [`SETS`].
    pub fn kube(base: &str, family: IpFamily) -> Option<IpSet> {
        let (_, set_type, comment) = SETS.iter().find(|(n, _, _)| *n == base)?;
        Some(IpSet {
            name: set_name(base, family),
            set_type: *set_type,
            family,
            comment,
            entries: BTreeSet::new(),
        })
    }

    /// The `create` line kube-proxy's `ipset create` arguments make (without `-exist`).
    pub fn create_line(&self, name: &str) -> String {
        let family = match self.family {
            IpFamily::V4 => "inet",
            IpFamily::V6 => "inet6",
        };
        match self.set_type {
            SetType::BitmapPort => format!("create {name} bitmap:port range 0-65535"),
            t => format!(
                "create {name} {} family {family} hashsize 1024 maxelem 65536",
                t.as_str()
            ),
        }
    }

    /// The comment as kube-proxy writes it in a rule: in double quotes.
    pub fn quoted_comment(&self) -> String {
        format!("\"{}\"", self.comment)
    }
}

/// `ipset restore` input that makes each set hold exactly its entries, atomically per set: the
/// set is created if missing, a scratch set of the same type is filled and swapped in, and the
/// scratch set (now holding the old entries) destroyed. Apply with `ipset -exist restore`.
pub fn render_restore(sets: &[IpSet]) -> String {
    let mut out = String::new();
    for (i, set) in sets.iter().enumerate() {
        let scratch = format!("podnet-swap-{i}");
        let _ = writeln!(out, "{}", set.create_line(&set.name));
        let _ = writeln!(out, "{}", set.create_line(&scratch));
        let _ = writeln!(out, "flush {scratch}");
        for e in &set.entries {
            let _ = writeln!(out, "add {scratch} {e}");
        }
        let _ = writeln!(out, "swap {scratch} {}", set.name);
        let _ = writeln!(out, "destroy {scratch}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_create_lines_follow_kube_proxy() {
        assert_eq!(set_name(CLUSTER_IP, IpFamily::V4), "KUBE-CLUSTER-IP");
        assert_eq!(set_name(CLUSTER_IP, IpFamily::V6), "KUBE-6-CLUSTER-IP");
        // 30 characters grow to 32, cut to 31.
        assert_eq!(
            set_name(LOAD_BALANCER_SOURCE_CIDR, IpFamily::V6),
            "KUBE-6-LOAD-BALANCER-SOURCE-CID"
        );
        let set = IpSet::kube(CLUSTER_IP, IpFamily::V4).unwrap();
        assert_eq!(
            set.create_line(&set.name),
            "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536"
        );
        let np = IpSet::kube(NODE_PORT_TCP, IpFamily::V6).unwrap();
        assert_eq!(
            np.create_line(&np.name),
            "create KUBE-6-NODE-PORT-TCP bitmap:port range 0-65535"
        );
        assert!(IpSet::kube("KUBE-NOPE", IpFamily::V4).is_none());
    }

    #[test]
    fn entries_are_spelled_like_ipset() {
        let ip: IpAddr = "10.96.0.10".parse().unwrap();
        assert_eq!(ip_port(ip, Protocol::Tcp, 80), "10.96.0.10,tcp:80");
        assert_eq!(
            ip_port_ip(ip, Protocol::Udp, 53, "10.244.1.2".parse().unwrap()),
            "10.96.0.10,udp:53,10.244.1.2"
        );
        assert_eq!(
            ip_port_net(ip, Protocol::Tcp, 80, "192.168.0.0/16".parse().unwrap()),
            "10.96.0.10,tcp:80,192.168.0.0/16"
        );
    }

    #[test]
    fn restore_swaps_each_set() {
        let mut set = IpSet::kube(CLUSTER_IP, IpFamily::V4).unwrap();
        set.entries.insert("10.96.0.10,tcp:80".into());
        let text = render_restore(&[set]);
        assert_eq!(
            text,
            "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536\n\
             create podnet-swap-0 hash:ip,port family inet hashsize 1024 maxelem 65536\n\
             flush podnet-swap-0\n\
             add podnet-swap-0 10.96.0.10,tcp:80\n\
             swap podnet-swap-0 KUBE-CLUSTER-IP\n\
             destroy podnet-swap-0\n"
        );
    }
}
