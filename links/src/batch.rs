//! Pipelined bulk changes: many requests per system call, one outcome per request.

use crate::addr::AddressSpec;
use crate::error::{Error, Result};
use crate::fdb::FdbEntry;
use crate::handle::Handle;
use crate::link::{LinkSet, LinkSpec, link_message};
use crate::neigh::Neighbour;
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
///     batch.route_replace(&Route::new(dst).dev("eth0"))?;
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

    /// Adds `ip link add`.
    pub fn link_add(&mut self, spec: &impl LinkSpec) -> Result<()> {
        let msg = spec.to_message(&mut |l: &LinkRef| self.index(l))?;
        let name = spec.name().to_owned();
        self.push(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            "link add",
            name,
        );
        Ok(())
    }

    /// Adds `ip link del`.
    pub fn link_del(&mut self, link: impl Into<LinkRef>) -> Result<()> {
        let link = link.into();
        let msg = link_message(&link)?;
        self.push(
            RouteNetlinkMessage::DelLink(msg),
            0,
            "link del",
            link.to_string(),
        );
        Ok(())
    }

    /// Adds an `ip link set` built with [`Links::set`](crate::Links::set).
    pub fn link_set(&mut self, set: LinkSet<'_>) -> Result<()> {
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
        self.push(msg, 0, "link set", name);
        Ok(())
    }

    fn addr(
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

    /// Adds `ip address add`.
    pub fn addr_add(
        &mut self,
        link: impl Into<LinkRef>,
        addr: impl Into<AddressSpec>,
    ) -> Result<()> {
        self.addr(
            "address add",
            link.into(),
            addr.into(),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Adds `ip address replace`.
    pub fn addr_replace(&mut self, link: impl Into<LinkRef>, net: IpNet) -> Result<()> {
        self.addr(
            "address replace",
            link.into(),
            AddressSpec::new(net),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Adds `ip address del`.
    pub fn addr_del(&mut self, link: impl Into<LinkRef>, net: IpNet) -> Result<()> {
        self.addr("address del", link.into(), AddressSpec::new(net), 0)
    }

    fn route(&mut self, op: &'static str, route: &Route, flags: u16, delete: bool) -> Result<()> {
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

    /// Adds `ip route add`.
    pub fn route_add(&mut self, route: &Route) -> Result<()> {
        self.route("route add", route, NLM_F_CREATE | NLM_F_EXCL, false)
    }

    /// Adds `ip route replace`.
    pub fn route_replace(&mut self, route: &Route) -> Result<()> {
        self.route("route replace", route, NLM_F_CREATE | NLM_F_REPLACE, false)
    }

    /// Adds `ip route del`.
    pub fn route_del(&mut self, route: &Route) -> Result<()> {
        self.route("route del", route, 0, true)
    }

    fn neigh(&mut self, op: &'static str, n: &Neighbour, flags: u16, delete: bool) -> Result<()> {
        let index = self.index(&n.dev)?;
        let msg = n.to_message(index);
        let msg = if delete {
            RouteNetlinkMessage::DelNeighbour(msg)
        } else {
            RouteNetlinkMessage::NewNeighbour(msg)
        };
        self.push(msg, flags, op, format!("{} dev {}", n.ip, n.dev));
        Ok(())
    }

    /// Adds `ip neigh add`.
    pub fn neigh_add(&mut self, n: &Neighbour) -> Result<()> {
        self.neigh("neigh add", n, NLM_F_CREATE | NLM_F_EXCL, false)
    }

    /// Adds `ip neigh replace`.
    pub fn neigh_replace(&mut self, n: &Neighbour) -> Result<()> {
        self.neigh("neigh replace", n, NLM_F_CREATE | NLM_F_REPLACE, false)
    }

    /// Adds `ip neigh del`.
    pub fn neigh_del(&mut self, n: &Neighbour) -> Result<()> {
        self.neigh("neigh del", n, 0, true)
    }

    fn fdb(&mut self, op: &'static str, e: &FdbEntry, flags: u16, delete: bool) -> Result<()> {
        let index = self.index(&e.dev)?;
        let msg = e.to_message(index)?;
        let msg = if delete {
            RouteNetlinkMessage::DelNeighbour(msg)
        } else {
            RouteNetlinkMessage::NewNeighbour(msg)
        };
        self.push(msg, flags, op, format!("{} dev {}", e.mac, e.dev));
        Ok(())
    }

    /// Adds `bridge fdb add`.
    pub fn fdb_add(&mut self, e: &FdbEntry) -> Result<()> {
        self.fdb("fdb add", e, NLM_F_CREATE | NLM_F_EXCL, false)
    }

    /// Adds `bridge fdb append`.
    pub fn fdb_append(&mut self, e: &FdbEntry) -> Result<()> {
        self.fdb("fdb append", e, NLM_F_CREATE | NLM_F_APPEND, false)
    }

    /// Adds `bridge fdb replace`.
    pub fn fdb_replace(&mut self, e: &FdbEntry) -> Result<()> {
        self.fdb("fdb replace", e, NLM_F_CREATE | NLM_F_REPLACE, false)
    }

    /// Adds `bridge fdb del`.
    pub fn fdb_del(&mut self, e: &FdbEntry) -> Result<()> {
        self.fdb("fdb del", e, 0, true)
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
