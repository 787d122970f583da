//! An event monitor: link, address, route and neighbour changes in one namespace, as typed
//! events (`ip monitor`).

use crate::addr::Address;
use crate::error::Result;
use crate::fdb::FdbEntry;
use crate::link::Link;
use crate::neigh::Neighbour;
use crate::netlink::{NetlinkError, decode, decode_error};
use crate::nlattr::{SocketBuffer, messages, set_buffer_force};
use crate::route::Route;
use crate::sys;
use netlink_packet_route::neighbour::NeighbourMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::Socket;
use netlink_sys::protocols::NETLINK_ROUTE;
use podnet_netns::NetNs;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// A multicast group to subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Group {
    /// Links (RTNLGRP_LINK).
    Link,
    /// Neighbours, FDB entries and VXLAN miss reports (RTNLGRP_NEIGH).
    Neigh,
    /// IPv4 addresses.
    Ipv4Addr,
    /// IPv4 routes.
    Ipv4Route,
    /// IPv6 addresses.
    Ipv6Addr,
    /// IPv6 routes.
    Ipv6Route,
}

impl Group {
    /// Every group above.
    pub const ALL: [Group; 6] = [
        Group::Link,
        Group::Neigh,
        Group::Ipv4Addr,
        Group::Ipv4Route,
        Group::Ipv6Addr,
        Group::Ipv6Route,
    ];

    fn number(self) -> u32 {
        match self {
            Group::Link => 1,
            Group::Neigh => 3,
            Group::Ipv4Addr => 5,
            Group::Ipv4Route => 7,
            Group::Ipv6Addr => 9,
            Group::Ipv6Route => 11,
        }
    }
}

/// A change in the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A link appeared or changed.
    NewLink(Link),
    /// A link was deleted.
    DelLink(Link),
    /// An address was added.
    NewAddress(Address),
    /// An address was removed.
    DelAddress(Address),
    /// A route was added or changed.
    NewRoute(Route),
    /// A route was deleted.
    DelRoute(Route),
    /// A neighbour entry appeared or changed.
    NewNeighbour(Neighbour),
    /// A neighbour entry was deleted.
    DelNeighbour(Neighbour),
    /// An FDB entry appeared or changed.
    NewFdb(FdbEntry),
    /// An FDB entry was deleted.
    DelFdb(FdbEntry),
    /// A VXLAN device with `l3miss` found no neighbour entry for this address (`ip` set,
    /// `mac` unset), or one with `l2miss` found no FDB entry for a MAC (RTM_GETNEIGH).
    Miss(Neighbour),
    /// A VXLAN device with `l2miss` found no FDB entry for this MAC.
    FdbMiss(FdbEntry),
}

/// Receives [`Event`]s for the groups it subscribed to, in the namespace it was opened in.
///
/// Blocking with a timeout ([`next_timeout`](Self::next_timeout)), as an iterator, or through
/// its raw descriptor for callers that poll ([`try_next`](Self::try_next) never blocks).
#[derive(Debug)]
pub struct Monitor {
    sock: Socket,
    buf: Vec<u8>,
    pending: VecDeque<Event>,
}

impl Monitor {
    /// Subscribes in the calling thread's namespace.
    pub fn new(groups: &[Group]) -> Result<Monitor> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        for g in groups {
            sock.add_membership(g.number())?;
        }
        if set_buffer_force(&sock, SocketBuffer::Receive, 4 << 20).is_err() {
            let _ = sock.set_rx_buf_sz(4usize << 20);
        }
        Ok(Monitor {
            sock,
            buf: Vec::with_capacity(64 * 1024),
            pending: VecDeque::new(),
        })
    }

    /// Subscribes inside `ns`.
    pub fn in_ns(ns: &NetNs, groups: &[Group]) -> Result<Monitor> {
        ns.run(|| Monitor::new(groups))?
    }

    /// The next event, waiting at most `timeout` (`None`, or a wait longer than the clock can
    /// count such as `Duration::MAX`: forever). `Ok(None)` on timeout.
    pub fn next_timeout(&mut self, timeout: Option<Duration>) -> Result<Option<Event>> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(Some(e));
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if !sys::poll_readable(&self.sock, left)? {
                return Ok(None);
            }
            self.read(0)?;
        }
    }

    /// The next event if one is queued, without blocking.
    pub fn try_next(&mut self) -> Result<Option<Event>> {
        if self.pending.is_empty() {
            match self.read(libc::MSG_DONTWAIT) {
                Ok(()) => {}
                Err(crate::Error::Netlink(NetlinkError::Io(e)))
                    if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.pending.pop_front())
    }

    fn read(&mut self, flags: libc::c_int) -> Result<()> {
        self.buf.clear();
        self.sock.recv(&mut self.buf, flags)?;
        parse_events(&self.buf, &mut self.pending)?;
        Ok(())
    }
}

/// Adds the events of one received datagram of notifications to `out`, as [`Monitor`] reads
/// them: control messages and message types this library does not know are skipped; the
/// events before a malformed message are kept. Public (hidden) for the fuzz targets; malformed
/// bytes are an error, never a panic.
#[doc(hidden)]
pub fn parse_events(
    buf: &[u8],
    out: &mut impl Extend<Event>,
) -> std::result::Result<(), NetlinkError> {
    let names = HashMap::new();
    for m in messages(buf) {
        let (hdr, body) = m.map_err(decode_error)?;
        if hdr.message_type < 16 {
            continue; // control messages
        }
        let Ok(msg) = decode::<RouteNetlinkMessage>(&hdr, body) else {
            continue; // a message type this library does not know: skip, never fail
        };
        out.extend(to_event(msg, &names));
    }
    Ok(())
}

impl Iterator for Monitor {
    type Item = Result<Event>;
    /// Blocks until the next event.
    fn next(&mut self) -> Option<Result<Event>> {
        self.next_timeout(None).transpose()
    }
}

impl AsRawFd for Monitor {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

fn is_bridge(m: &NeighbourMessage) -> bool {
    m.header.family == AddressFamily::Bridge
}

fn to_event(msg: RouteNetlinkMessage, names: &HashMap<u32, String>) -> Option<Event> {
    Some(match msg {
        RouteNetlinkMessage::NewLink(m) => Event::NewLink(Link::from_message(&m)),
        RouteNetlinkMessage::DelLink(m) => Event::DelLink(Link::from_message(&m)),
        RouteNetlinkMessage::NewAddress(m) => Event::NewAddress(Address::from_message(&m, names)?),
        RouteNetlinkMessage::DelAddress(m) => Event::DelAddress(Address::from_message(&m, names)?),
        RouteNetlinkMessage::NewRoute(m) => Event::NewRoute(Route::from_message(&m, names)?),
        RouteNetlinkMessage::DelRoute(m) => Event::DelRoute(Route::from_message(&m, names)?),
        RouteNetlinkMessage::NewNeighbour(m) if is_bridge(&m) => {
            Event::NewFdb(FdbEntry::from_message(&m, names)?)
        }
        RouteNetlinkMessage::DelNeighbour(m) if is_bridge(&m) => {
            Event::DelFdb(FdbEntry::from_message(&m, names)?)
        }
        RouteNetlinkMessage::GetNeighbour(m) if is_bridge(&m) => {
            Event::FdbMiss(FdbEntry::from_message(&m, names)?)
        }
        RouteNetlinkMessage::NewNeighbour(m) => {
            Event::NewNeighbour(Neighbour::from_message(&m, names)?)
        }
        RouteNetlinkMessage::DelNeighbour(m) => {
            Event::DelNeighbour(Neighbour::from_message(&m, names)?)
        }
        RouteNetlinkMessage::GetNeighbour(m) => Event::Miss(Neighbour::from_message(&m, names)?),
        _ => return None,
    })
}
