//! Routes: add, replace, del, list and get (the kernel's own lookup), like `ip route`.

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::nl_enum::nl_enum;
use crate::scope::Scope;
use crate::types::LinkRef;
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteNextHop,
    RouteNextHopFlags, RouteProtocol, RouteScope, RouteType,
};
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

/// RTM_F_CLONED: a route lookup's answer (or a cached clone), not a table entry.
const RTM_F_CLONED: u32 = 0x200;

/// The main routing table (what `ip route` shows).
pub const TABLE_MAIN: u32 = 254;
/// The local table (addresses of this host).
pub const TABLE_LOCAL: u32 = 255;

/// The type of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum RouteKind {
    /// A gateway or direct route.
    #[default]
    Unicast,
    /// Local delivery.
    Local,
    /// Broadcast.
    Broadcast,
    /// Anycast.
    Anycast,
    /// Multicast.
    Multicast,
    /// Silently drop.
    Blackhole,
    /// Drop with ICMP host unreachable.
    Unreachable,
    /// Drop with ICMP administratively prohibited.
    Prohibit,
    /// Continue the lookup in the next table.
    Throw,
    /// Any other type number.
    Other(u8),
}

nl_enum! {
    RouteKind <=> RouteType, other: u8 => RouteType::from, shown "{}", also [Unspec => Unicast];
    Unicast => Unicast, "unicast";
    Local => Local, "local";
    Broadcast => Broadcast, "broadcast";
    Anycast => Anycast, "anycast";
    Multicast => Multicast, "multicast";
    Blackhole => BlackHole, "blackhole";
    Unreachable => Unreachable, "unreachable";
    Prohibit => Prohibit, "prohibit";
    Throw => Throw, "throw";
}

/// Who installed a route (`proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// Unknown.
    Unspec,
    /// An ICMP redirect.
    Redirect,
    /// The kernel (routes of connected prefixes).
    Kernel,
    /// An administrator (`ip route add`'s default).
    #[default]
    Boot,
    /// A routing daemon or agent that wants its routes recognised.
    Static,
    /// DHCP.
    Dhcp,
    /// Any other number.
    Other(u8),
}

nl_enum! {
    Protocol <=> RouteProtocol, other: u8 => RouteProtocol::from, shown "{}";
    Unspec => Unspec, "unspec";
    Redirect => IcmpRedirect, "redirect";
    Kernel => Kernel, "kernel";
    Boot => Boot, "boot";
    Static => Static, "static";
    Dhcp => Dhcp, "dhcp";
}

/// A route: built with the methods below to add, replace or delete one, and returned by
/// [`Routes::list`] and [`Routes::get`].
///
/// ```
/// use podnet_links::Route;
/// let r = Route::new("10.244.1.0/24".parse().unwrap())
///     .via("10.244.1.0".parse().unwrap())
///     .dev("flannel.1")
///     .onlink();
/// assert_eq!(r.to_string(), "10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Route {
    /// Destination prefix (`default` is 0.0.0.0/0 or ::/0).
    pub dst: IpNet,
    /// Next hop (`via`).
    pub gateway: Option<IpAddr>,
    /// Output device (`dev`); on routes read from the kernel, its name when known.
    pub dev: Option<LinkRef>,
    /// Output device index, on routes read from the kernel.
    pub oif: Option<u32>,
    /// Preferred source address (`src`).
    pub src: Option<IpAddr>,
    /// Metric (`metric`).
    pub metric: Option<u32>,
    /// Table (`table`), [`TABLE_MAIN`] by default.
    pub table: u32,
    /// Scope; when unset for a change, chosen as `ip route` does (link for routes without a
    /// gateway, global otherwise).
    pub scope: Option<Scope>,
    /// Protocol (`proto`), `boot` by default like `ip route add`.
    pub protocol: Protocol,
    /// Type (`unicast`, `blackhole`, ...).
    pub kind: RouteKind,
    /// `onlink`: the gateway is on the link even without a matching prefix.
    pub onlink: bool,
    /// `nexthop via GW dev DEV weight W ...`: the paths of a multipath route (then `gateway`
    /// and `dev` are unset).
    pub nexthops: Vec<NextHop>,
    /// Input device of a `route get ... iif DEV` answer.
    pub iif: Option<u32>,
    /// Every RTM_F_*/RTNH_F_* flag the kernel set, decoded or not (`onlink` is one of them).
    pub flags: u32,
}

/// One path of a multipath route: `nexthop via GW dev DEV weight W [onlink]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NextHop {
    /// Next hop (`via`).
    pub gateway: Option<IpAddr>,
    /// Output device (`dev`); on routes read from the kernel, its name when known.
    pub dev: Option<LinkRef>,
    /// Output device index, on routes read from the kernel.
    pub oif: Option<u32>,
    /// Relative weight, 1 to 256 (`weight`).
    pub weight: u16,
    /// `onlink`.
    pub onlink: bool,
    /// RTNH_F_* flags as the kernel reported them (`dead`, `linkdown`, ...).
    pub flags: u8,
}

impl NextHop {
    /// A path through `gateway`, weight 1.
    pub fn via(gateway: IpAddr) -> NextHop {
        NextHop {
            gateway: Some(gateway),
            dev: None,
            oif: None,
            weight: 1,
            onlink: false,
            flags: 0,
        }
    }

    /// A path out of `dev` without a gateway, weight 1.
    pub fn dev_only(dev: impl Into<LinkRef>) -> NextHop {
        NextHop {
            gateway: None,
            dev: Some(dev.into()),
            oif: None,
            weight: 1,
            onlink: false,
            flags: 0,
        }
    }

    /// `dev DEV`.
    pub fn dev(mut self, dev: impl Into<LinkRef>) -> NextHop {
        self.dev = Some(dev.into());
        self
    }

    /// `weight W` (1 to 256).
    pub fn weight(mut self, weight: u16) -> NextHop {
        self.weight = weight;
        self
    }

    /// `onlink`.
    pub fn onlink(mut self) -> NextHop {
        self.onlink = true;
        self
    }
}

impl fmt::Display for NextHop {
    /// Like a `nexthop` line of `ip route`: `nexthop via 10.0.0.1 dev eth0 weight 1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nexthop")?;
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        if let Some(dev) = &self.dev {
            write!(f, " dev {dev}")?;
        }
        write!(f, " weight {}", self.weight)?;
        if self.onlink {
            f.write_str(" onlink")?;
        }
        if self.flags & RouteNextHopFlags::Dead.bits() != 0 {
            f.write_str(" dead")?;
        }
        if self.flags & RouteNextHopFlags::Linkdown.bits() != 0 {
            f.write_str(" linkdown")?;
        }
        Ok(())
    }
}

impl Route {
    /// A unicast route to `dst` in the main table.
    pub fn new(dst: IpNet) -> Route {
        Route {
            dst: dst.trunc(),
            gateway: None,
            dev: None,
            oif: None,
            src: None,
            metric: None,
            table: TABLE_MAIN,
            scope: None,
            protocol: Protocol::Boot,
            kind: RouteKind::Unicast,
            onlink: false,
            nexthops: Vec::new(),
            iif: None,
            flags: 0,
        }
    }

    /// `nexthop ...`: adds a path, making this a multipath route.
    pub fn nexthop(mut self, hop: NextHop) -> Route {
        self.nexthops.push(hop);
        self
    }

    /// `blackhole DST`.
    pub fn blackhole(dst: IpNet) -> Route {
        Route::new(dst).kind(RouteKind::Blackhole)
    }

    /// `via GATEWAY`.
    pub fn via(mut self, gateway: IpAddr) -> Route {
        self.gateway = Some(gateway);
        self
    }

    /// `dev LINK`.
    pub fn dev(mut self, link: impl Into<LinkRef>) -> Route {
        self.dev = Some(link.into());
        self
    }

    /// `onlink`.
    pub fn onlink(mut self) -> Route {
        self.onlink = true;
        self
    }

    /// `metric N`.
    pub fn metric(mut self, metric: u32) -> Route {
        self.metric = Some(metric);
        self
    }

    /// `table N`.
    pub fn table(mut self, table: u32) -> Route {
        self.table = table;
        self
    }

    /// `scope S`.
    pub fn scope(mut self, scope: Scope) -> Route {
        self.scope = Some(scope);
        self
    }

    /// `proto P`.
    pub fn protocol(mut self, protocol: Protocol) -> Route {
        self.protocol = protocol;
        self
    }

    /// `src ADDR` (preferred source).
    pub fn src(mut self, src: IpAddr) -> Route {
        self.src = Some(src);
        self
    }

    /// The route type.
    pub fn kind(mut self, kind: RouteKind) -> Route {
        self.kind = kind;
        self
    }

    fn check(&self) -> Result<()> {
        let v4 = self.dst.addr().is_ipv4();
        for hop in &self.nexthops {
            if hop.gateway.is_some_and(|a| a.is_ipv4() != v4) {
                return Err(Error::InvalidArgument {
                    what: format!("route {}", self.dst),
                    reason: "a nexthop gateway is not of the destination's address family".into(),
                });
            }
            if !(1..=256).contains(&hop.weight) {
                return Err(Error::InvalidArgument {
                    what: format!("route {}", self.dst),
                    reason: format!("nexthop weight {} is not within 1..=256", hop.weight),
                });
            }
        }
        for (what, addr) in [("gateway", self.gateway), ("src", self.src)] {
            if addr.is_some_and(|a| a.is_ipv4() != v4) {
                return Err(Error::InvalidArgument {
                    what: format!("route {}", self.dst),
                    reason: format!("{what} is not of the destination's address family"),
                });
            }
        }
        Ok(())
    }

    /// Builds the netlink message; `oif` is the resolved output device, `hop_oifs` those of
    /// the nexthops.
    pub(crate) fn to_message(
        &self,
        oif: Option<u32>,
        hop_oifs: &[Option<u32>],
        delete: bool,
    ) -> Result<RouteMessage> {
        self.check()?;
        let mut msg = RouteMessage::default();
        let h = &mut msg.header;
        h.address_family = if self.dst.addr().is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        h.destination_prefix_length = self.dst.prefix_len();
        if let Ok(t) = u8::try_from(self.table) {
            h.table = t;
        } else {
            h.table = RouteHeader::RT_TABLE_UNSPEC;
        }
        let explicit_kind = self.kind != RouteKind::Unicast;
        if delete {
            h.protocol = RouteProtocol::Unspec;
            h.scope = self
                .scope
                .map_or(RouteScope::NoWhere, |s| RouteScope::from(s.to_u8()));
            h.kind = if explicit_kind {
                self.kind.to_nl()
            } else {
                RouteType::Unspec
            };
        } else {
            h.protocol = self.protocol.to_nl();
            h.kind = self.kind.to_nl();
            let scope = self.scope.unwrap_or(match self.kind {
                RouteKind::Local => Scope::Host,
                RouteKind::Broadcast | RouteKind::Multicast | RouteKind::Anycast => Scope::Link,
                RouteKind::Unicast if self.gateway.is_none() && self.nexthops.is_empty() => {
                    Scope::Link
                }
                _ => Scope::Universe,
            });
            h.scope = RouteScope::from(scope.to_u8());
        }
        if self.onlink {
            h.flags |= RouteFlags::Onlink;
        }
        if self.dst.prefix_len() > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(route_address(self.dst.addr())));
        }
        if let Some(gw) = self.gateway {
            msg.attributes
                .push(RouteAttribute::Gateway(route_address(gw)));
        }
        if let Some(i) = oif {
            msg.attributes.push(RouteAttribute::Oif(i));
        }
        if let Some(src) = self.src {
            msg.attributes
                .push(RouteAttribute::PrefSource(route_address(src)));
        }
        if let Some(m) = self.metric {
            msg.attributes.push(RouteAttribute::Priority(m));
        }
        if u8::try_from(self.table).is_err() {
            msg.attributes.push(RouteAttribute::Table(self.table));
        }
        if !self.nexthops.is_empty() {
            let hops = self
                .nexthops
                .iter()
                .zip(hop_oifs.iter().chain(std::iter::repeat(&None)))
                .map(|(hop, oif)| {
                    let mut nh = RouteNextHop::default();
                    nh.hops = (hop.weight.saturating_sub(1)) as u8;
                    nh.interface_index = oif.or(hop.oif).unwrap_or(0);
                    if hop.onlink {
                        nh.flags |= RouteNextHopFlags::Onlink;
                    }
                    if let Some(gw) = hop.gateway {
                        nh.attributes
                            .push(RouteAttribute::Gateway(route_address(gw)));
                    }
                    nh
                })
                .collect();
            msg.attributes.push(RouteAttribute::MultiPath(hops));
        }
        Ok(msg)
    }

    pub(crate) fn from_message(m: &RouteMessage, names: &HashMap<u32, String>) -> Option<Route> {
        let h = &m.header;
        let v4 = match h.address_family {
            AddressFamily::Inet => true,
            AddressFamily::Inet6 => false,
            _ => return None,
        };
        let mut dst: IpAddr = if v4 {
            IpAddr::from([0u8; 4])
        } else {
            IpAddr::from([0u16; 8])
        };
        let mut r = Route::new(IpNet::new(dst, 0).ok()?);
        r.table = u32::from(h.table);
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(d) => dst = ip_of(d)?,
                RouteAttribute::Gateway(g) => r.gateway = ip_of(g),
                RouteAttribute::Oif(i) => r.oif = Some(*i),
                RouteAttribute::PrefSource(s) => r.src = ip_of(s),
                RouteAttribute::Priority(p) => r.metric = Some(*p),
                RouteAttribute::Table(t) => r.table = *t,
                RouteAttribute::Iif(i) => r.iif = Some(*i),
                RouteAttribute::MultiPath(hops) => {
                    r.nexthops = hops.iter().map(|nh| NextHop::from_nl(nh, names)).collect()
                }
                _ => {}
            }
        }
        r.dst = IpNet::new(dst, h.destination_prefix_length).ok()?;
        r.dev = r.oif.map(|i| match names.get(&i) {
            Some(n) => LinkRef::Name(n.clone()),
            None => LinkRef::Index(i),
        });
        r.scope = Some(Scope::from_u8(u8::from(h.scope)));
        r.protocol = Protocol::from_nl(h.protocol);
        r.kind = RouteKind::from_nl(h.kind);
        r.onlink = h.flags.contains(RouteFlags::Onlink);
        r.flags = h.flags.bits();
        Some(r)
    }
}

impl NextHop {
    fn from_nl(nh: &RouteNextHop, names: &HashMap<u32, String>) -> NextHop {
        let oif = (nh.interface_index != 0).then_some(nh.interface_index);
        NextHop {
            gateway: nh.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(g) => ip_of(g),
                _ => None,
            }),
            dev: oif.map(|i| match names.get(&i) {
                Some(n) => LinkRef::Name(n.clone()),
                None => LinkRef::Index(i),
            }),
            oif,
            weight: u16::from(nh.hops) + 1,
            onlink: nh.flags.contains(RouteNextHopFlags::Onlink),
            flags: nh.flags.bits(),
        }
    }
}

/// The routes of a route dump's replies, of one table (`0`: every table), cached clones left
/// out.
pub(crate) fn routes_of(
    replies: &[RouteNetlinkMessage],
    table: u32,
    names: &HashMap<u32, String>,
) -> Vec<Route> {
    replies
        .iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewRoute(m) if !m.header.flags.contains(RouteFlags::Cloned) => {
                Route::from_message(m, names)
            }
            _ => None,
        })
        .filter(|r| table == 0 || r.table == table)
        .collect()
}

fn route_address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

impl fmt::Display for Route {
    /// Formats like one line of `ip route`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind != RouteKind::Unicast {
            write!(f, "{} ", self.kind)?;
        }
        if self.dst.prefix_len() == 0 {
            f.write_str("default")?;
        } else if self.dst.prefix_len() == self.dst.max_prefix_len() {
            write!(f, "{}", self.dst.addr())?;
        } else {
            write!(f, "{}", self.dst)?;
        }
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        if let Some(dev) = &self.dev {
            write!(f, " dev {dev}")?;
        }
        if self.table != TABLE_MAIN {
            match self.table {
                TABLE_LOCAL => f.write_str(" table local")?,
                t => write!(f, " table {t}")?,
            }
        }
        // As ip: no proto for boot routes, nor for the answers of a lookup (RTM_F_CLONED).
        if self.protocol != Protocol::Boot && self.flags & RTM_F_CLONED == 0 {
            write!(f, " proto {}", self.protocol)?;
        }
        if let Some(s) = self.scope {
            let default = if self.gateway.is_none() && self.kind == RouteKind::Unicast {
                Scope::Link
            } else {
                Scope::Universe
            };
            if s != Scope::Universe && !(s == default && self.dev.is_none()) {
                write!(f, " scope {s}")?;
            }
        }
        if let Some(src) = self.src {
            write!(f, " src {src}")?;
        }
        if let Some(m) = self.metric {
            write!(f, " metric {m}")?;
        }
        if self.onlink {
            f.write_str(" onlink")?;
        }
        for hop in &self.nexthops {
            write!(f, "\n\t{hop}")?;
        }
        Ok(())
    }
}

/// Route operations of one [`Handle`]: `h.route().add(&route)`, like `ip route`.
/// [`list`](Self::list) shows the main table; `h.route().table(100).list()` another, as
/// `ip route show table 100` (add, replace and del take the table from the [`Route`]).
#[derive(Debug, Clone, Copy)]
pub struct Routes<'h> {
    pub(crate) h: &'h Handle,
    /// The table [`list`](Self::list) shows (0: all).
    pub(crate) table: u32,
}

impl Routes<'_> {
    fn oif(&self, route: &Route) -> Result<Option<u32>> {
        match &route.dev {
            Some(d) => self.h.link().index(d.clone()).map(Some),
            None => Ok(route.oif),
        }
    }

    fn change(&self, op: &'static str, route: &Route, flags: u16, delete: bool) -> Result<()> {
        let hop_oifs = route
            .nexthops
            .iter()
            .map(|hop| match &hop.dev {
                Some(d) => self.h.link().index(d.clone()).map(Some),
                None => Ok(hop.oif),
            })
            .collect::<Result<Vec<_>>>()?;
        let msg = route.to_message(self.oif(route)?, &hop_oifs, delete)?;
        let msg = if delete {
            RouteNetlinkMessage::DelRoute(msg)
        } else {
            RouteNetlinkMessage::NewRoute(msg)
        };
        self.h
            .request(msg, flags)
            .map_err(|e| Error::from_netlink(op, route.dst.to_string(), e))?;
        Ok(())
    }

    /// `ip route add`; [`Error::Exists`] if an equal route is there.
    pub fn add(&self, route: &Route) -> Result<()> {
        self.change("route add", route, NLM_F_CREATE | NLM_F_EXCL, false)
    }

    /// `ip route replace`: add, or replace the route to the same prefix (idempotent).
    pub fn replace(&self, route: &Route) -> Result<()> {
        self.change("route replace", route, NLM_F_CREATE | NLM_F_REPLACE, false)
    }

    /// `ip route del`; fields that are set must match. [`Error::NotFound`] if nothing does.
    pub fn del(&self, route: &Route) -> Result<()> {
        self.change("route del", route, 0, true)
    }

    /// `ip route show table T`: these operations with [`list`](Self::list) showing table
    /// `table` (0: every table; [`TABLE_MAIN`] unless set).
    pub fn table(self, table: u32) -> Self {
        Routes { table, ..self }
    }

    /// The routes of the main table (or of the one chosen with [`table`](Self::table)), IPv4
    /// and IPv6 (`ip route; ip -6 route`).
    pub fn list(&self) -> Result<Vec<Route>> {
        let replies = self
            .h
            .request(
                RouteNetlinkMessage::GetRoute(RouteMessage::default()),
                NLM_F_DUMP,
            )
            .map_err(|e| Error::from_netlink("route show", "all", e))?;
        let names = self.h.link().names()?;
        Ok(routes_of(&replies, self.table, &names))
    }

    #[deprecated(note = "use table(t).list()")]
    #[doc(hidden)]
    pub fn list_table(&self, table: u32) -> Result<Vec<Route>> {
        self.table(table).list()
    }

    /// `ip route get DST [from SRC] [iif DEV] [oif DEV] [mark M] ...`: the route the kernel
    /// would choose, computed by its own lookup. `q` is a destination (`get(dst)`) or a
    /// [`RouteGet`] with selectors (by value or reference). Unreachable is [`Error::Kernel`]
    /// with ENETUNREACH (EHOSTUNREACH; EINVAL for a martian source with `iif`).
    pub fn get(&self, q: impl Into<RouteGet>) -> Result<Route> {
        let q: RouteGet = q.into();
        let iif = q.iif.clone().map(|l| self.h.link().index(l)).transpose()?;
        let oif = q.oif.clone().map(|l| self.h.link().index(l)).transpose()?;
        let msg = q.to_message(iif, oif)?;
        let replies = self
            .h
            .request(RouteNetlinkMessage::GetRoute(msg), 0)
            .map_err(|e| Error::from_netlink("route get", q.dst.to_string(), e))?;
        let names = self.h.link().names()?;
        replies
            .iter()
            .find_map(|r| match r {
                RouteNetlinkMessage::NewRoute(m) => Route::from_message(m, &names),
                _ => None,
            })
            .ok_or_else(|| Error::NotFound {
                name: q.dst.to_string(),
                errno: libc::ENOENT,
                message: Some("no route returned".into()),
            })
    }

    #[deprecated(note = "use get, which takes a RouteGet too")]
    #[doc(hidden)]
    pub fn get_with(&self, q: &RouteGet) -> Result<Route> {
        self.get(q)
    }

    #[deprecated(note = "use get(RouteGet::new(dst).from(src).oif(dev))")]
    #[doc(hidden)]
    pub fn get_from(
        &self,
        dst: IpAddr,
        src: Option<IpAddr>,
        oif: Option<LinkRef>,
    ) -> Result<Route> {
        let mut q = RouteGet::new(dst);
        q.from = src;
        q.oif = oif;
        self.get(q)
    }
}

/// A route lookup: `ip route get DST [from SRC] [iif DEV] [oif DEV] [mark M] [ipproto P]
/// [sport S] [dport D] [fibmatch]`. The answer's [`Route::table`] is the table the lookup
/// found the route in (asked with RTM_F_LOOKUP_TABLE, as iproute2 does).
///
/// There is no `table T`: the kernel has no lookup restricted to one table. It ignores both
/// RTA_TABLE and `rtm_table` in an RTM_GETROUTE and always looks up through the policy rules;
/// observed on this machine's kernel (6.18), IPv4 and IPv6 alike: with a route to 10.1.0.0/16
/// only in table 100, a get of 10.1.2.3 "in table 100" answers ENETUNREACH, or, once main has
/// a default route, that default route from table 254. iproute2 (6.1) accordingly refuses
/// `ip route get ... table T`. To ask what a table answers, give the packet what the rule
/// selecting that table matches: [`mark`](Self::mark) for an `fwmark` rule,
/// [`iif`](Self::iif)/[`from`](Self::from) for `iif`/`from` rules (the wire test
/// `route_lookups_are_requested_as_ip_route_get` reads such an answer from table 100).
///
/// ```
/// use podnet_links::RouteGet;
/// let q = RouteGet::new("10.96.0.10".parse().unwrap()).iif("cni0").mark(0x4000);
/// assert_eq!(q.to_string(), "10.96.0.10 iif cni0 mark 0x4000");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteGet {
    dst: IpAddr,
    from: Option<IpAddr>,
    iif: Option<LinkRef>,
    oif: Option<LinkRef>,
    mark: Option<u32>,
    ipproto: Option<u8>,
    sport: Option<u16>,
    dport: Option<u16>,
    fibmatch: bool,
}

impl From<IpAddr> for RouteGet {
    fn from(dst: IpAddr) -> RouteGet {
        RouteGet::new(dst)
    }
}

impl From<&RouteGet> for RouteGet {
    fn from(q: &RouteGet) -> RouteGet {
        q.clone()
    }
}

impl RouteGet {
    /// A lookup of `dst`.
    pub fn new(dst: IpAddr) -> RouteGet {
        RouteGet {
            dst,
            from: None,
            iif: None,
            oif: None,
            mark: None,
            ipproto: None,
            sport: None,
            dport: None,
            fibmatch: false,
        }
    }

    /// `from SRC`: the source address (with `iif`, the packet's; otherwise the one to use).
    pub fn from(mut self, src: IpAddr) -> RouteGet {
        self.from = Some(src);
        self
    }

    /// `iif DEV`: look up as for a packet received on `DEV` (forwarding), not sent locally.
    pub fn iif(mut self, dev: impl Into<LinkRef>) -> RouteGet {
        self.iif = Some(dev.into());
        self
    }

    /// `oif DEV`: force the output device.
    pub fn oif(mut self, dev: impl Into<LinkRef>) -> RouteGet {
        self.oif = Some(dev.into());
        self
    }

    /// `mark M`: the packet's firewall mark (policy routing rules match on it).
    pub fn mark(mut self, mark: u32) -> RouteGet {
        self.mark = Some(mark);
        self
    }

    /// `ipproto P [sport S] [dport D]`: the flow's protocol and ports (for rules and
    /// multipath hashing that use them).
    pub fn ipproto(mut self, proto: u8, sport: Option<u16>, dport: Option<u16>) -> RouteGet {
        self.ipproto = Some(proto);
        self.sport = sport;
        self.dport = dport;
        self
    }

    /// `fibmatch`: answer with the matching route entry rather than the resulting route.
    pub fn fibmatch(mut self) -> RouteGet {
        self.fibmatch = true;
        self
    }

    /// The destination looked up.
    pub fn dst(&self) -> IpAddr {
        self.dst
    }

    pub(crate) fn to_message(&self, iif: Option<u32>, oif: Option<u32>) -> Result<RouteMessage> {
        if self.from.is_some_and(|s| s.is_ipv4() != self.dst.is_ipv4()) {
            return Err(Error::InvalidArgument {
                what: format!("route get {}", self.dst),
                reason: "from is not of the destination's address family".into(),
            });
        }
        let full = if self.dst.is_ipv4() { 32 } else { 128 };
        let mut msg = RouteMessage::default();
        msg.header.address_family = crate::addr::family(&self.dst);
        msg.header.destination_prefix_length = full;
        // As iproute2 asks: report the table the lookup found the route in (else: main).
        msg.header.flags |= RouteFlags::LookupTable;
        if self.fibmatch {
            msg.header.flags |= RouteFlags::FibMatch;
        }
        msg.attributes
            .push(RouteAttribute::Destination(route_address(self.dst)));
        if let Some(s) = self.from {
            msg.header.source_prefix_length = full;
            msg.attributes
                .push(RouteAttribute::Source(route_address(s)));
        }
        if let Some(i) = iif {
            msg.attributes.push(RouteAttribute::Iif(i));
        }
        if let Some(o) = oif {
            msg.attributes.push(RouteAttribute::Oif(o));
        }
        if let Some(m) = self.mark {
            msg.attributes.push(RouteAttribute::Mark(m));
        }
        if let Some(p) = self.ipproto {
            msg.attributes.push(RouteAttribute::IpProto(p));
            if let Some(sp) = self.sport {
                msg.attributes.push(RouteAttribute::Sport(sp));
            }
            if let Some(dp) = self.dport {
                msg.attributes.push(RouteAttribute::Dport(dp));
            }
        }
        Ok(msg)
    }
}

impl fmt::Display for RouteGet {
    /// The arguments of `ip route get`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.dst)?;
        if let Some(s) = self.from {
            write!(f, " from {s}")?;
        }
        if let Some(i) = &self.iif {
            write!(f, " iif {i}")?;
        }
        if let Some(o) = &self.oif {
            write!(f, " oif {o}")?;
        }
        if let Some(m) = self.mark {
            write!(f, " mark {m:#x}")?;
        }
        if let Some(p) = self.ipproto {
            write!(f, " ipproto {p}")?;
            if let Some(sp) = self.sport {
                write!(f, " sport {sp}")?;
            }
            if let Some(dp) = self.dport {
                write!(f, " dport {dp}")?;
            }
        }
        if self.fibmatch {
            f.write_str(" fibmatch")?;
        }
        Ok(())
    }
}
