//! The reading of rtnetlink dump replies, from the bytes of one received datagram to the typed
//! values the list operations return: one entry point for the fuzz targets.

use crate::addr::{Address, addresses_of};
use crate::fdb::{FdbEntry, fdb_entries_of};
use crate::link::{Link, links_of};
use crate::neigh::{Neighbour, neighbours_of};
use crate::netlink::{KernelError, NetlinkError, parse_reply};
use crate::route::{Route, routes_of};
use netlink_packet_route::RouteNetlinkMessage;
use std::collections::HashMap;

/// One datagram of a dump reply, read every way the list operations read replies.
#[doc(hidden)]
#[derive(Debug)]
pub struct DumpDatagram {
    /// The acknowledgement or `NLMSG_DONE` that ends the reply, if the datagram held it.
    pub finished: Option<Result<(), KernelError>>,
    /// A message carried `NLM_F_DUMP_INTR`.
    pub interrupted: bool,
    /// As [`Links::list`](crate::Links::list) returns them (names resolved among these links).
    pub links: Vec<Link>,
    /// As [`Addresses::list`](crate::Addresses::list) returns them.
    pub addresses: Vec<Address>,
    /// As [`Routes::list`](crate::Routes::list) returns them after `table(0)`.
    pub routes: Vec<Route>,
    /// As [`Neighbours::list`](crate::Neighbours::list) returns them.
    pub neighbours: Vec<Neighbour>,
    /// As [`Neighbours::list`](crate::Neighbours::list) returns them after `proxy()`.
    pub proxy_neighbours: Vec<Neighbour>,
    /// As [`Fdb::list`](crate::Fdb::list) returns them.
    pub fdb: Vec<FdbEntry>,
}

/// Reads one datagram of the reply to dump request `seq` into every typed form. Public (hidden)
/// for the fuzz targets: malformed bytes are an error or are left out, never a panic.
#[doc(hidden)]
pub fn parse_dump_datagram(buf: &[u8], seq: u32) -> Result<DumpDatagram, NetlinkError> {
    let reply = parse_reply::<RouteNetlinkMessage>(buf, seq)?;
    let r = &reply.replies;
    let mut links = links_of(r);
    let names: HashMap<u32, String> = links.iter().map(|l| (l.index, l.name.clone())).collect();
    for l in &mut links {
        l.resolve_names(&names);
    }
    Ok(DumpDatagram {
        finished: reply.finished,
        interrupted: reply.interrupted,
        links,
        addresses: addresses_of(r, None, &names),
        routes: routes_of(r, 0, &names),
        neighbours: neighbours_of(r, None, false, &names),
        proxy_neighbours: neighbours_of(r, None, true, &names),
        fdb: fdb_entries_of(r, None, &names),
    })
}
