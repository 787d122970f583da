//! Neighbours (ARP and NDP entries): add, replace, del, list, like `ip neigh`.

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::types::{LinkRef, MacAddr};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

/// The state of a neighbour entry (NUD_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum NeighState {
    /// Resolution in progress.
    Incomplete,
    /// Confirmed reachable.
    Reachable,
    /// Valid but unconfirmed.
    Stale,
    /// Waiting before probing.
    Delay,
    /// Probing.
    Probe,
    /// Resolution failed.
    Failed,
    /// No resolution needed (`static` in `bridge fdb`).
    Noarp,
    /// Set by an administrator or agent, never expires.
    #[default]
    Permanent,
    /// No state.
    None,
    /// Any other value.
    Other(u16),
}

impl NeighState {
    pub(crate) fn to_nl(self) -> NeighbourState {
        match self {
            NeighState::Incomplete => NeighbourState::Incomplete,
            NeighState::Reachable => NeighbourState::Reachable,
            NeighState::Stale => NeighbourState::Stale,
            NeighState::Delay => NeighbourState::Delay,
            NeighState::Probe => NeighbourState::Probe,
            NeighState::Failed => NeighbourState::Failed,
            NeighState::Noarp => NeighbourState::Noarp,
            NeighState::Permanent => NeighbourState::Permanent,
            NeighState::None => NeighbourState::None,
            NeighState::Other(n) => NeighbourState::Other(n),
        }
    }

    pub(crate) fn from_nl(s: NeighbourState) -> NeighState {
        match s {
            NeighbourState::Incomplete => NeighState::Incomplete,
            NeighbourState::Reachable => NeighState::Reachable,
            NeighbourState::Stale => NeighState::Stale,
            NeighbourState::Delay => NeighState::Delay,
            NeighbourState::Probe => NeighState::Probe,
            NeighbourState::Failed => NeighState::Failed,
            NeighbourState::Noarp => NeighState::Noarp,
            NeighbourState::Permanent => NeighState::Permanent,
            NeighbourState::None => NeighState::None,
            other => NeighState::Other(u16::from(other)),
        }
    }
}

impl fmt::Display for NeighState {
    /// As `ip neigh` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NeighState::Incomplete => f.write_str("INCOMPLETE"),
            NeighState::Reachable => f.write_str("REACHABLE"),
            NeighState::Stale => f.write_str("STALE"),
            NeighState::Delay => f.write_str("DELAY"),
            NeighState::Probe => f.write_str("PROBE"),
            NeighState::Failed => f.write_str("FAILED"),
            NeighState::Noarp => f.write_str("NOARP"),
            NeighState::Permanent => f.write_str("PERMANENT"),
            NeighState::None => f.write_str("NONE"),
            NeighState::Other(n) => write!(f, "{n:#x}"),
        }
    }
}

/// An ARP (IPv4) or NDP (IPv6) entry.
///
/// ```
/// use podnet_links::Neighbour;
/// // flannel's vxlan backend: peer subnet's .0 address -> the peer's VTEP MAC, permanent.
/// let n = Neighbour::new(
///     "10.244.2.0".parse().unwrap(),
///     "c6:d2:32:6f:8f:44".parse().unwrap(),
///     "flannel.1",
/// );
/// assert_eq!(n.to_string(), "10.244.2.0 dev flannel.1 lladdr c6:d2:32:6f:8f:44 PERMANENT");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Neighbour {
    /// The neighbour's address.
    pub ip: IpAddr,
    /// Its link-layer address (none for incomplete and proxy entries).
    pub mac: Option<MacAddr>,
    /// The link.
    pub dev: LinkRef,
    /// State.
    pub state: NeighState,
    /// A proxy entry (answer ARP/NDP for `ip` on `dev`).
    pub proxy: bool,
    /// The neighbour is a router (IPv6).
    pub router: bool,
    /// Learnt from an external control plane.
    pub ext_learned: bool,
}

impl Neighbour {
    /// A permanent entry `ip -> mac` on `dev`.
    pub fn new(ip: IpAddr, mac: MacAddr, dev: impl Into<LinkRef>) -> Neighbour {
        Neighbour {
            ip,
            mac: Some(mac),
            dev: dev.into(),
            state: NeighState::Permanent,
            proxy: false,
            router: false,
            ext_learned: false,
        }
    }

    /// A proxy entry: `ip neigh add proxy IP dev DEV`.
    pub fn proxy(ip: IpAddr, dev: impl Into<LinkRef>) -> Neighbour {
        Neighbour {
            ip,
            mac: None,
            dev: dev.into(),
            state: NeighState::None,
            proxy: true,
            router: false,
            ext_learned: false,
        }
    }

    /// `nud STATE`.
    pub fn state(mut self, state: NeighState) -> Neighbour {
        self.state = state;
        self
    }

    /// `router`.
    pub fn router(mut self) -> Neighbour {
        self.router = true;
        self
    }

    pub(crate) fn to_message(&self, index: u32) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = crate::addr::family(&self.ip);
        m.header.ifindex = index;
        m.header.state = self.state.to_nl();
        if self.proxy {
            m.header.flags |= NeighbourFlags::Proxy;
        }
        if self.router {
            m.header.flags |= NeighbourFlags::Router;
        }
        m.attributes
            .push(NeighbourAttribute::Destination(match self.ip {
                IpAddr::V4(a) => NeighbourAddress::Inet(a),
                IpAddr::V6(a) => NeighbourAddress::Inet6(a),
            }));
        if let Some(mac) = self.mac {
            m.attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
        }
        m
    }

    pub(crate) fn from_message(
        m: &NeighbourMessage,
        names: &HashMap<u32, String>,
    ) -> Option<Neighbour> {
        let mut ip = None;
        let mut mac = None;
        for a in &m.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => {
                    ip = Some(IpAddr::V4(*v))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(v)) => {
                    ip = Some(IpAddr::V6(*v))
                }
                NeighbourAttribute::LinkLayerAddress(b) => mac = MacAddr::from_slice(b).ok(),
                _ => {}
            }
        }
        let index = m.header.ifindex;
        Some(Neighbour {
            ip: ip?,
            mac,
            dev: names
                .get(&index)
                .map_or(LinkRef::Index(index), |n| LinkRef::Name(n.clone())),
            state: NeighState::from_nl(m.header.state),
            proxy: m.header.flags.contains(NeighbourFlags::Proxy),
            router: m.header.flags.contains(NeighbourFlags::Router),
            ext_learned: m.header.flags.contains(NeighbourFlags::ExtLearned),
        })
    }
}

impl fmt::Display for Neighbour {
    /// Formats like one line of `ip neigh`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} dev {}", self.ip, self.dev)?;
        if self.proxy {
            return f.write_str(" proxy");
        }
        if let Some(mac) = self.mac {
            write!(f, " lladdr {mac}")?;
        }
        if self.router {
            f.write_str(" router")?;
        }
        if self.ext_learned {
            f.write_str(" extern_learn")?;
        }
        write!(f, " {}", self.state)
    }
}

/// Neighbour operations of one [`Handle`]: `h.neigh().replace(&n)`, like `ip neigh`.
#[derive(Debug, Clone, Copy)]
pub struct Neighbours<'h> {
    pub(crate) h: &'h Handle,
}

impl Neighbours<'_> {
    fn change(&self, op: &'static str, n: &Neighbour, flags: u16, delete: bool) -> Result<()> {
        let index = self.h.link().index(n.dev.clone())?;
        let msg = n.to_message(index);
        let msg = if delete {
            RouteNetlinkMessage::DelNeighbour(msg)
        } else {
            RouteNetlinkMessage::NewNeighbour(msg)
        };
        self.h
            .request(msg, flags)
            .map_err(|e| Error::from_netlink(op, format!("{} dev {}", n.ip, n.dev), e))?;
        Ok(())
    }

    /// `ip neigh add`; [`Error::Exists`] if an entry is there.
    pub fn add(&self, n: &Neighbour) -> Result<()> {
        self.change("neigh add", n, NLM_F_CREATE | NLM_F_EXCL, false)
    }

    /// `ip neigh replace`: add or overwrite (idempotent).
    pub fn replace(&self, n: &Neighbour) -> Result<()> {
        self.change("neigh replace", n, NLM_F_CREATE | NLM_F_REPLACE, false)
    }

    /// `ip neigh del`.
    pub fn del(&self, n: &Neighbour) -> Result<()> {
        self.change("neigh del", n, 0, true)
    }

    /// The ARP and NDP entries of one link or all (`ip neigh show nud all`).
    pub fn list(&self, dev: Option<LinkRef>) -> Result<Vec<Neighbour>> {
        self.dump(dev, false)
    }

    /// The proxy entries (`ip neigh show proxy`).
    pub fn list_proxy(&self, dev: Option<LinkRef>) -> Result<Vec<Neighbour>> {
        self.dump(dev, true)
    }

    fn dump(&self, dev: Option<LinkRef>, proxy: bool) -> Result<Vec<Neighbour>> {
        let index = match dev {
            Some(d) => Some(self.h.link().index(d)?),
            None => None,
        };
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Unspec;
        if proxy {
            req.header.flags |= NeighbourFlags::Proxy;
        }
        let replies = self
            .h
            .request(RouteNetlinkMessage::GetNeighbour(req), NLM_F_DUMP)
            .map_err(|e| Error::from_netlink("neigh show", "all", e))?;
        let names = self.h.link().names()?;
        Ok(neighbours_of(&replies, index, proxy, &names))
    }
}

/// The neighbour entries (`proxy`: the proxy entries) of a neighbour dump's replies, of link
/// `index` or of all.
pub(crate) fn neighbours_of(
    replies: &[RouteNetlinkMessage],
    index: Option<u32>,
    proxy: bool,
    names: &HashMap<u32, String>,
) -> Vec<Neighbour> {
    replies
        .iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewNeighbour(m) if index.is_none_or(|i| i == m.header.ifindex) => {
                Neighbour::from_message(m, names)
            }
            _ => None,
        })
        .filter(|n| n.proxy == proxy)
        .collect()
}
