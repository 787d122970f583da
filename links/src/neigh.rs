//! Neighbours (ARP and NDP entries): add, replace, del, list, like `ip neigh`.

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::nl_enum::nl_enum;
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

nl_enum! {
    NeighState <=> NeighbourState, other: u16 => NeighbourState::Other, shown "{:#x}";
    Incomplete => Incomplete, "INCOMPLETE";
    Reachable => Reachable, "REACHABLE";
    Stale => Stale, "STALE";
    Delay => Delay, "DELAY";
    Probe => Probe, "PROBE";
    Failed => Failed, "FAILED";
    Noarp => Noarp, "NOARP";
    Permanent => Permanent, "PERMANENT";
    None => None, "NONE";
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
            .push(NeighbourAttribute::Destination(neigh_address(self.ip)));
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

/// `NDA_DST`'s value for `ip`.
pub(crate) fn neigh_address(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }
}

/// What neighbour entries (`ip neigh`) and forwarding entries (`bridge fdb`) have in common:
/// both are RTM_*NEIGH messages on a device, changed and dumped the same way
/// ([`change_entry`], [`dump_entries`]).
pub(crate) trait NeighbourEntry: Sized {
    /// The device the entry is on.
    fn dev(&self) -> &LinkRef;
    /// The entry in errors: `10.0.0.1 dev eth0`.
    fn what(&self) -> String;
    /// The request for device `index`.
    fn request(&self, index: u32) -> Result<NeighbourMessage>;
    /// The entry of a kernel message, if it is one of this kind.
    fn read(m: &NeighbourMessage, names: &HashMap<u32, String>) -> Option<Self>;
}

impl NeighbourEntry for Neighbour {
    fn dev(&self) -> &LinkRef {
        &self.dev
    }

    fn what(&self) -> String {
        format!("{} dev {}", self.ip, self.dev)
    }

    fn request(&self, index: u32) -> Result<NeighbourMessage> {
        Ok(self.to_message(index))
    }

    fn read(m: &NeighbourMessage, names: &HashMap<u32, String>) -> Option<Self> {
        Neighbour::from_message(m, names)
    }
}

/// Adds (`delete`: deletes) entry `e` with netlink `flags`; `op` names the command in errors.
pub(crate) fn change_entry<E: NeighbourEntry>(
    h: &Handle,
    op: &'static str,
    e: &E,
    flags: u16,
    delete: bool,
) -> Result<()> {
    let index = h.link().index(e.dev().clone())?;
    let msg = e.request(index)?;
    let msg = if delete {
        RouteNetlinkMessage::DelNeighbour(msg)
    } else {
        RouteNetlinkMessage::NewNeighbour(msg)
    };
    h.request(msg, flags)
        .map_err(|err| Error::from_netlink(op, e.what(), err))?;
    Ok(())
}

/// Dumps with request `req` and returns the entries of device `dev` (or of all).
pub(crate) fn dump_entries<E: NeighbourEntry>(
    h: &Handle,
    op: &'static str,
    dev: Option<LinkRef>,
    req: NeighbourMessage,
) -> Result<Vec<E>> {
    let index = dev.map(|d| h.link().index(d)).transpose()?;
    let replies = h
        .request(RouteNetlinkMessage::GetNeighbour(req), NLM_F_DUMP)
        .map_err(|e| Error::from_netlink(op, "all", e))?;
    let names = h.link().names()?;
    Ok(entries_of(&replies, index, &names))
}

/// The entries of a neighbour dump's replies, of link `index` or of all.
pub(crate) fn entries_of<E: NeighbourEntry>(
    replies: &[RouteNetlinkMessage],
    index: Option<u32>,
    names: &HashMap<u32, String>,
) -> Vec<E> {
    replies
        .iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewNeighbour(m) if index.is_none_or(|i| i == m.header.ifindex) => {
                E::read(m, names)
            }
            _ => None,
        })
        .collect()
}

/// Neighbour operations of one [`Handle`]: `h.neigh().replace(&n)`, like `ip neigh`.
/// `h.neigh().proxy().list(dev)` lists the proxy entries (`ip neigh show proxy`).
#[derive(Debug, Clone, Copy)]
pub struct Neighbours<'h> {
    pub(crate) h: &'h Handle,
    /// [`list`](Self::list) shows the proxy entries.
    pub(crate) proxy: bool,
}

impl Neighbours<'_> {
    /// `ip neigh add`; [`Error::Exists`] if an entry is there.
    pub fn add(&self, n: &Neighbour) -> Result<()> {
        change_entry(self.h, "neigh add", n, NLM_F_CREATE | NLM_F_EXCL, false)
    }

    /// `ip neigh replace`: add or overwrite (idempotent).
    pub fn replace(&self, n: &Neighbour) -> Result<()> {
        change_entry(
            self.h,
            "neigh replace",
            n,
            NLM_F_CREATE | NLM_F_REPLACE,
            false,
        )
    }

    /// `ip neigh del`.
    pub fn del(&self, n: &Neighbour) -> Result<()> {
        change_entry(self.h, "neigh del", n, 0, true)
    }

    /// `ip neigh ... proxy`: these operations with [`list`](Self::list) showing the proxy
    /// entries (those added with [`Neighbour::proxy`] are changed as any other).
    pub fn proxy(self) -> Self {
        Neighbours {
            proxy: true,
            ..self
        }
    }

    /// The ARP and NDP entries of one link or all (`ip neigh show nud all`), or the proxy
    /// entries after [`proxy`](Self::proxy) (`ip neigh show proxy`).
    pub fn list(&self, dev: Option<LinkRef>) -> Result<Vec<Neighbour>> {
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Unspec;
        if self.proxy {
            req.header.flags |= NeighbourFlags::Proxy;
        }
        let all: Vec<Neighbour> = dump_entries(self.h, "neigh show", dev, req)?;
        Ok(all.into_iter().filter(|n| n.proxy == self.proxy).collect())
    }

    #[deprecated(note = "use proxy().list(dev)")]
    #[doc(hidden)]
    pub fn list_proxy(&self, dev: Option<LinkRef>) -> Result<Vec<Neighbour>> {
        self.proxy().list(dev)
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
    let all: Vec<Neighbour> = entries_of(replies, index, names);
    all.into_iter().filter(|n| n.proxy == proxy).collect()
}
