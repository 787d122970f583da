//! Link settings read back with a link and changed with `ip link set`: statistics
//! (`ip -s link`), bridge port flags (`bridge link`/`type bridge_slave`), and IPv6 address
//! generation mode (`addrgenmode`).

use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoBridgePort, LinkAttribute, Stats64,
};
use std::fmt;

/// A link's counters (IFLA_STATS64), as `ip -s link` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LinkStats {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Receive packets missed (no buffer).
    pub rx_missed: u64,
    /// Multicast packets received.
    pub multicast: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Packets dropped on transmit.
    pub tx_dropped: u64,
    /// Carrier errors.
    pub tx_carrier_errors: u64,
    /// Collisions.
    pub collisions: u64,
}

impl LinkStats {
    pub(crate) fn from_nl(s: &Stats64) -> LinkStats {
        LinkStats {
            rx_bytes: s.rx_bytes,
            rx_packets: s.rx_packets,
            rx_errors: s.rx_errors,
            rx_dropped: s.rx_dropped,
            rx_missed: s.rx_missed_errors,
            multicast: s.multicast,
            tx_bytes: s.tx_bytes,
            tx_packets: s.tx_packets,
            tx_errors: s.tx_errors,
            tx_dropped: s.tx_dropped,
            tx_carrier_errors: s.tx_carrier_errors,
            collisions: s.collisions,
        }
    }
}

impl fmt::Display for LinkStats {
    /// The four lines `ip -s link` prints under a link (each column right-aligned to its
    /// widest cell, as iproute2 does).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rx = [
            ("bytes", self.rx_bytes),
            ("packets", self.rx_packets),
            ("errors", self.rx_errors),
            ("dropped", self.rx_dropped),
            ("missed", self.rx_missed),
            ("mcast", self.multicast),
        ];
        let tx = [
            ("bytes", self.tx_bytes),
            ("packets", self.tx_packets),
            ("errors", self.tx_errors),
            ("dropped", self.tx_dropped),
            ("carrier", self.tx_carrier_errors),
            ("collsns", self.collisions),
        ];
        for (i, (dir, row)) in [("RX", rx), ("TX", tx)].into_iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            let widths: Vec<usize> = row
                .iter()
                .map(|(h, v)| h.len().max(v.to_string().len()))
                .collect();
            write!(f, "    {dir}:")?;
            for ((h, _), w) in row.iter().zip(&widths) {
                write!(f, " {h:>w$}")?;
            }
            f.write_str("\n       ")?;
            for ((_, v), w) in row.iter().zip(&widths) {
                write!(f, " {v:>w$}")?;
            }
        }
        Ok(())
    }
}

/// How a link makes its IPv6 link-local address (`addrgenmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AddrGenMode {
    /// From the MAC address (EUI-64), the default.
    Eui64,
    /// No link-local address at all (`none`): a CNI plugin sets this before DAD matters.
    None,
    /// RFC 7217 stable privacy addresses.
    StablePrivacy,
    /// Random.
    Random,
    /// Any other mode number.
    Other(u8),
}

impl AddrGenMode {
    pub(crate) fn to_nl(self) -> In6AddrGenMode {
        match self {
            AddrGenMode::Eui64 => In6AddrGenMode::Eui64,
            AddrGenMode::None => In6AddrGenMode::None,
            AddrGenMode::StablePrivacy => In6AddrGenMode::StablePrivacy,
            AddrGenMode::Random => In6AddrGenMode::Random,
            AddrGenMode::Other(n) => In6AddrGenMode::Other(n),
        }
    }

    fn from_nl(m: &In6AddrGenMode) -> AddrGenMode {
        match m {
            In6AddrGenMode::Eui64 => AddrGenMode::Eui64,
            In6AddrGenMode::None => AddrGenMode::None,
            In6AddrGenMode::StablePrivacy => AddrGenMode::StablePrivacy,
            In6AddrGenMode::Random => AddrGenMode::Random,
            In6AddrGenMode::Other(n) => AddrGenMode::Other(*n),
            _ => AddrGenMode::Other(u8::MAX),
        }
    }

    /// The mode in IFLA_AF_SPEC, if the link has IPv6.
    pub(crate) fn from_attr(attr: &LinkAttribute) -> Option<AddrGenMode> {
        let LinkAttribute::AfSpecUnspec(specs) = attr else {
            return None;
        };
        specs.iter().find_map(|s| match s {
            AfSpecUnspec::Inet6(v) => v.iter().find_map(|a| match a {
                AfSpecInet6::AddrGenMode(m) => Some(AddrGenMode::from_nl(m)),
                _ => None,
            }),
            _ => None,
        })
    }

    /// The IFLA_AF_SPEC attribute that sets this mode.
    pub(crate) fn attr(self) -> LinkAttribute {
        LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
            self.to_nl(),
        )])])
    }
}

impl fmt::Display for AddrGenMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrGenMode::Eui64 => f.write_str("eui64"),
            AddrGenMode::None => f.write_str("none"),
            AddrGenMode::StablePrivacy => f.write_str("stable_secret"),
            AddrGenMode::Random => f.write_str("random"),
            AddrGenMode::Other(n) => write!(f, "{n}"),
        }
    }
}

/// A bridge port's settings (`bridge -d link show`, IFLA_INFO_SLAVE_DATA of a bridge port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BridgePort {
    /// `hairpin`: frames may leave through the port they came in (a pod reaching itself
    /// through a Service).
    pub hairpin: bool,
    /// `isolated`: no traffic to other isolated ports.
    pub isolated: bool,
    /// `learning`: source MACs of incoming frames are learnt into the FDB.
    pub learning: bool,
    /// `flood`: unknown unicast is flooded to this port.
    pub unicast_flood: bool,
    /// `mcast_flood`.
    pub multicast_flood: bool,
    /// `bcast_flood`.
    pub broadcast_flood: bool,
}

impl BridgePort {
    pub(crate) fn from_nl(attrs: &[InfoBridgePort]) -> BridgePort {
        let mut p = BridgePort::default();
        for a in attrs {
            match a {
                InfoBridgePort::HairpinMode(b) => p.hairpin = *b,
                InfoBridgePort::Isolated(b) => p.isolated = *b,
                InfoBridgePort::Learning(b) => p.learning = *b,
                InfoBridgePort::UnicastFlood(b) => p.unicast_flood = *b,
                InfoBridgePort::MulticastFlood(b) => p.multicast_flood = *b,
                InfoBridgePort::BroadcastFlood(b) => p.broadcast_flood = *b,
                _ => {}
            }
        }
        p
    }
}

impl fmt::Display for BridgePort {
    /// Like the port flags of `ip -d link show`: `bridge_slave hairpin off learning on ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = |b: bool| if b { "on" } else { "off" };
        write!(
            f,
            "bridge_slave hairpin {} learning {} flood {} mcast_flood {} bcast_flood {} \
             isolated {}",
            on(self.hairpin),
            on(self.learning),
            on(self.unicast_flood),
            on(self.multicast_flood),
            on(self.broadcast_flood),
            on(self.isolated)
        )
    }
}

/// Changes to a bridge port, collected by [`LinkSet`](crate::LinkSet).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BridgePortSet {
    pub(crate) hairpin: Option<bool>,
    pub(crate) isolated: Option<bool>,
    pub(crate) learning: Option<bool>,
    pub(crate) unicast_flood: Option<bool>,
    pub(crate) multicast_flood: Option<bool>,
    pub(crate) broadcast_flood: Option<bool>,
}

impl BridgePortSet {
    pub(crate) fn attrs(&self) -> Vec<InfoBridgePort> {
        type Make = fn(bool) -> InfoBridgePort;
        let mut out = Vec::new();
        let pairs: [(Option<bool>, Make); 6] = [
            (self.hairpin, InfoBridgePort::HairpinMode),
            (self.isolated, InfoBridgePort::Isolated),
            (self.learning, InfoBridgePort::Learning),
            (self.unicast_flood, InfoBridgePort::UnicastFlood),
            (self.multicast_flood, InfoBridgePort::MulticastFlood),
            (self.broadcast_flood, InfoBridgePort::BroadcastFlood),
        ];
        for (v, make) in pairs {
            if let Some(b) = v {
                out.push(make(b));
            }
        }
        out
    }
}
