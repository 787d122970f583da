//! Pipelined bulk changes: many requests per system call, one outcome per request.

use crate::addr::AddressSpec;
use crate::error::{Error, Result};
use crate::fdb::FdbEntry;
use crate::handle::Handle;
use crate::link::{LinkSet, LinkSpec, link_message};
use crate::neigh::{Neighbour, NeighbourEntry};
use crate::route::Route;
use crate::types::LinkRef;
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::RouteNetlinkMessage;
use std::collections::HashMap;

/// A batch of changes, sent pipelined by [`execute`](Self::execute): like `ip -batch`, but
/// many requests go to the kernel in one system call and the acknowledgements are read
/// afterwards, and each request still gets its own outcome.
///
/// Arguments are checked and device names resolved (once per name) as requests are added, so
/// a bad argument is reported by the call that added it.
///
/// ```no_run
/// # fn main() -> Result<(), podnet_links::Error> {
/// use podnet_links::{Handle, Route};
/// let h = Handle::new()?;
/// let mut batch = h.batch();
/// for i in 0..100u32 {
///     let dst = format!("10.250.{}.{}/32", i / 256, i % 256).parse().unwrap();
///     batch.route().replace(&Route::new(dst).dev("eth0"))?;
/// }
/// let report = batch.execute()?;
/// report.into_result()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Batch<'h> {
    h: &'h Handle,
    requests: Vec<(RouteNetlinkMessage, u16)>,
    what: Vec<(&'static str, String)>,
    indexes: HashMap<String, u32>,
}

/// The outcome of every request of a [`Batch`], in the order they were added.
#[derive(Debug)]
pub struct BatchReport {
    results: Vec<Result<()>>,
}

impl BatchReport {
    /// One result per request.
    pub fn results(&self) -> &[Result<()>] {
        &self.results
    }

    /// The failed requests: their position in the batch and the error.
    pub fn failures(&self) -> impl Iterator<Item = (usize, &Error)> {
        self.results
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e)))
    }

    /// How many requests succeeded.
    pub fn succeeded(&self) -> usize {
        self.results.iter().filter(|r| r.is_ok()).count()
    }

    /// `Ok` when every request succeeded, else the first failure.
    pub fn into_result(self) -> Result<()> {
        self.results.into_iter().collect()
    }
}

impl<'h> Batch<'h> {
    pub(crate) fn new(h: &'h Handle) -> Batch<'h> {
        Batch {
            h,
            requests: Vec::new(),
            what: Vec::new(),
            indexes: HashMap::new(),
        }
    }

    /// Number of requests added.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// `true` when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    fn index(&mut self, link: &LinkRef) -> Result<u32> {
        match link {
            LinkRef::Index(i) => Ok(*i),
            LinkRef::Name(n) => {
                if let Some(i) = self.indexes.get(n) {
                    return Ok(*i);
                }
                let i = self.h.link().index(link.clone())?;
                self.indexes.insert(n.clone(), i);
                Ok(i)
            }
        }
    }

    fn push(&mut self, msg: RouteNetlinkMessage, flags: u16, op: &'static str, what: String) {
        self.requests.push((msg, flags));
        self.what.push((op, what));
    }

    /// Link requests: `batch.link().add(&spec)`, `del`, `set`.
    pub fn link(&mut self) -> BatchLinks<'_, 'h> {
        BatchLinks { b: self }
    }

    /// Address requests: `batch.addr().add(dev, net)`, `replace`, `del`.
    pub fn addr(&mut self) -> BatchAddresses<'_, 'h> {
        BatchAddresses { b: self }
    }

    /// Route requests: `batch.route().replace(&route)`, `add`, `del`.
    pub fn route(&mut self) -> BatchRoutes<'_, 'h> {
        BatchRoutes { b: self }
    }

    /// Neighbour requests: `batch.neigh().replace(&n)`, `add`, `del`.
    pub fn neigh(&mut self) -> BatchNeighbours<'_, 'h> {
        BatchNeighbours { b: self }
    }

    /// Forwarding database requests: `batch.fdb().append(&e)`, `add`, `replace`, `del`.
    pub fn fdb(&mut self) -> BatchFdb<'_, 'h> {
        BatchFdb { b: self }
    }

    fn push_addr(
        &mut self,
        op: &'static str,
        link: LinkRef,
        spec: AddressSpec,
        flags: u16,
    ) -> Result<()> {
        let index = self.index(&link)?;
        let net = spec.net();
        let msg = spec.to_message(index)?;
        let msg = if op == "address del" {
            RouteNetlinkMessage::DelAddress(msg)
        } else {
            RouteNetlinkMessage::NewAddress(msg)
        };
        self.push(msg, flags, op, format!("{net} dev {link}"));
        Ok(())
    }

    fn push_route(
        &mut self,
        op: &'static str,
        route: &Route,
        flags: u16,
        delete: bool,
    ) -> Result<()> {
        let oif = match &route.dev {
            Some(d) => Some(self.index(d)?),
            None => route.oif,
        };
        let hop_oifs = route
            .nexthops
            .iter()
            .map(|hop| match &hop.dev {
                Some(d) => self.index(d).map(Some),
                None => Ok(hop.oif),
            })
            .collect::<Result<Vec<_>>>()?;
        let msg = route.to_message(oif, &hop_oifs, delete)?;
        let msg = if delete {
            RouteNetlinkMessage::DelRoute(msg)
        } else {
            RouteNetlinkMessage::NewRoute(msg)
        };
        self.push(msg, flags, op, route.dst.to_string());
        Ok(())
    }

    /// A neighbour or forwarding entry request.
    fn push_entry<E: NeighbourEntry>(
        &mut self,
        op: &'static str,
        e: &E,
        flags: u16,
        delete: bool,
    ) -> Result<()> {
        let index = self.index(e.dev())?;
        let msg = e.request(index)?;
        let msg = if delete {
            RouteNetlinkMessage::DelNeighbour(msg)
        } else {
            RouteNetlinkMessage::NewNeighbour(msg)
        };
        self.push(msg, flags, op, e.what());
        Ok(())
    }

    /// Sends every request, pipelined, and returns one outcome per request. `Err` only when
    /// the socket itself failed.
    pub fn execute(self) -> Result<BatchReport> {
        let outcomes = self.h.pipeline(self.requests)?;
        let results = outcomes
            .into_iter()
            .zip(self.what)
            .map(|(o, (op, what))| o.map_err(|k| Error::from_kernel(op, what, k)))
            .collect();
        Ok(BatchReport { results })
    }
}

/// The link requests of a [`Batch`] ([`Batch::link`]), with the verbs of [`Links`](crate::Links).
#[derive(Debug)]
pub struct BatchLinks<'b, 'h> {
    b: &'b mut Batch<'h>,
}

impl BatchLinks<'_, '_> {
    /// `ip link add`.
    pub fn add(&mut self, spec: &impl LinkSpec) -> Result<()> {
        let msg = spec.to_message(&mut |l: &LinkRef| self.b.index(l))?;
        let name = spec.name().to_owned();
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.b
            .push(RouteNetlinkMessage::NewLink(msg), flags, "link add", name);
        Ok(())
    }

    /// `ip link del`.
    pub fn del(&mut self, link: impl Into<LinkRef>) -> Result<()> {
        let link = link.into();
        let msg = link_message(&link)?;
        let what = link.to_string();
        self.b
            .push(RouteNetlinkMessage::DelLink(msg), 0, "link del", what);
        Ok(())
    }

    /// An `ip link set` built with [`Links::set`](crate::Links::set).
    pub fn set(&mut self, set: LinkSet<'_>) -> Result<()> {
        let msg = set.to_request()?;
        let (RouteNetlinkMessage::SetLink(m) | RouteNetlinkMessage::NewLink(m)) = &msg else {
            unreachable!("to_request makes link messages only")
        };
        let name = m
            .attributes
            .iter()
            .find_map(|a| match a {
                netlink_packet_route::link::LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })
            .unwrap_or_else(|| format!("if{}", m.header.index));
        self.b.push(msg, 0, "link set", name);
        Ok(())
    }
}

/// The address requests of a [`Batch`] ([`Batch::addr`]), with the verbs of
/// [`Addresses`](crate::Addresses).
#[derive(Debug)]
pub struct BatchAddresses<'b, 'h> {
    b: &'b mut Batch<'h>,
}

impl BatchAddresses<'_, '_> {
    /// `ip address add`: an [`IpNet`] or an [`AddressSpec`].
    pub fn add(&mut self, link: impl Into<LinkRef>, addr: impl Into<AddressSpec>) -> Result<()> {
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.b
            .push_addr("address add", link.into(), addr.into(), flags)
    }

    /// `ip address replace`: an [`IpNet`] or an [`AddressSpec`].
    pub fn replace(
        &mut self,
        link: impl Into<LinkRef>,
        addr: impl Into<AddressSpec>,
    ) -> Result<()> {
        let flags = NLM_F_CREATE | NLM_F_REPLACE;
        self.b
            .push_addr("address replace", link.into(), addr.into(), flags)
    }

    /// `ip address del`.
    pub fn del(&mut self, link: impl Into<LinkRef>, net: IpNet) -> Result<()> {
        self.b
            .push_addr("address del", link.into(), AddressSpec::new(net), 0)
    }
}

/// The route requests of a [`Batch`] ([`Batch::route`]), with the verbs of
/// [`Routes`](crate::Routes).
#[derive(Debug)]
pub struct BatchRoutes<'b, 'h> {
    b: &'b mut Batch<'h>,
}

impl BatchRoutes<'_, '_> {
    /// `ip route add`.
    pub fn add(&mut self, route: &Route) -> Result<()> {
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.b.push_route("route add", route, flags, false)
    }

    /// `ip route replace`.
    pub fn replace(&mut self, route: &Route) -> Result<()> {
        let flags = NLM_F_CREATE | NLM_F_REPLACE;
        self.b.push_route("route replace", route, flags, false)
    }

    /// `ip route del`.
    pub fn del(&mut self, route: &Route) -> Result<()> {
        self.b.push_route("route del", route, 0, true)
    }
}

/// The neighbour requests of a [`Batch`] ([`Batch::neigh`]), with the verbs of
/// [`Neighbours`](crate::Neighbours).
#[derive(Debug)]
pub struct BatchNeighbours<'b, 'h> {
    b: &'b mut Batch<'h>,
}

impl BatchNeighbours<'_, '_> {
    /// `ip neigh add`.
    pub fn add(&mut self, n: &Neighbour) -> Result<()> {
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.b.push_entry("neigh add", n, flags, false)
    }

    /// `ip neigh replace`.
    pub fn replace(&mut self, n: &Neighbour) -> Result<()> {
        let flags = NLM_F_CREATE | NLM_F_REPLACE;
        self.b.push_entry("neigh replace", n, flags, false)
    }

    /// `ip neigh del`.
    pub fn del(&mut self, n: &Neighbour) -> Result<()> {
        self.b.push_entry("neigh del", n, 0, true)
    }
}

/// The forwarding database requests of a [`Batch`] ([`Batch::fdb`]), with the verbs of
/// [`Fdb`](crate::Fdb).
#[derive(Debug)]
pub struct BatchFdb<'b, 'h> {
    b: &'b mut Batch<'h>,
}

impl BatchFdb<'_, '_> {
    /// `bridge fdb add`.
    pub fn add(&mut self, e: &FdbEntry) -> Result<()> {
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.b.push_entry("fdb add", e, flags, false)
    }

    /// `bridge fdb append`.
    pub fn append(&mut self, e: &FdbEntry) -> Result<()> {
        let flags = NLM_F_CREATE | NLM_F_APPEND;
        self.b.push_entry("fdb append", e, flags, false)
    }

    /// `bridge fdb replace`.
    pub fn replace(&mut self, e: &FdbEntry) -> Result<()> {
        let flags = NLM_F_CREATE | NLM_F_REPLACE;
        self.b.push_entry("fdb replace", e, flags, false)
    }

    /// `bridge fdb del`.
    pub fn del(&mut self, e: &FdbEntry) -> Result<()> {
        self.b.push_entry("fdb del", e, 0, true)
    }
}

/// Writes an earlier name of a batch request as a `#[deprecated] #[doc(hidden)]` alias, one row
/// each: `old => group().verb(argument: type, ...);`.
macro_rules! earlier_names {
    ($($old:ident => $group:ident().$verb:ident($($arg:ident: $ty:ty),*);)+) => {
        $(
            #[deprecated = concat!("use ", stringify!($group), "().", stringify!($verb))]
            #[doc(hidden)]
            pub fn $old(&mut self, $($arg: $ty),*) -> Result<()> {
                self.$group().$verb($($arg),*)
            }
        )+
    };
}

/// The earlier names of the batch's requests, one alias each.
impl Batch<'_> {
    earlier_names! {
        link_add => link().add(spec: &impl LinkSpec);
        link_del => link().del(link: impl Into<LinkRef>);
        link_set => link().set(set: LinkSet<'_>);
        addr_add => addr().add(link: impl Into<LinkRef>, addr: impl Into<AddressSpec>);
        addr_replace => addr().replace(link: impl Into<LinkRef>, net: IpNet);
        addr_del => addr().del(link: impl Into<LinkRef>, net: IpNet);
        route_add => route().add(route: &Route);
        route_replace => route().replace(route: &Route);
        route_del => route().del(route: &Route);
        neigh_add => neigh().add(n: &Neighbour);
        neigh_replace => neigh().replace(n: &Neighbour);
        neigh_del => neigh().del(n: &Neighbour);
        fdb_add => fdb().add(e: &FdbEntry);
        fdb_append => fdb().append(e: &FdbEntry);
        fdb_replace => fdb().replace(e: &FdbEntry);
        fdb_del => fdb().del(e: &FdbEntry);
    }
}
