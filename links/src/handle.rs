//! [`Handle`]: one rtnetlink socket bound to one network namespace.

use crate::addr::Addresses;
use crate::batch::Batch;
use crate::error::Result;
use crate::link::Links;
use crate::netlink::{Connection, KernelError, NetlinkError};
use crate::route::Routes;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::protocols::NETLINK_ROUTE;
use podnet_netns::NetNs;
use std::sync::{Mutex, MutexGuard};

/// An rtnetlink client bound to one network namespace.
///
/// The socket is opened inside the namespace (on a helper thread, for [`Handle::in_ns`]) and
/// stays bound to it, so every request acts on that namespace whichever thread sends it. A
/// handle is `Send + Sync`; requests from several threads are serialised.
///
/// Operations are grouped like iproute2's objects: [`link`](Self::link),
/// [`addr`](Self::addr), [`route`](Self::route), and [`batch`](Self::batch) for pipelined bulk
/// changes.
#[derive(Debug)]
pub struct Handle {
    conn: Mutex<Connection>,
    ns: Option<NetNs>,
    /// The namespace the socket lives in and its inode, for what is not netlink (sysctls).
    home: Option<(NetNs, u64)>,
}

impl Handle {
    /// A handle on the calling thread's current namespace.
    pub fn new() -> Result<Handle> {
        let conn = Connection::new(NETLINK_ROUTE)?;
        let home = NetNs::current()
            .ok()
            .and_then(|ns| ns.inode().ok().map(|i| (ns, i)));
        Ok(Handle {
            conn: Mutex::new(conn),
            ns: None,
            home,
        })
    }

    /// A handle on `ns`; the caller's thread does not change namespace.
    pub fn in_ns(ns: &NetNs) -> Result<Handle> {
        Ok(Handle {
            conn: Mutex::new(Connection::new_in(ns, NETLINK_ROUTE)?),
            ns: Some(ns.clone()),
            home: ns.inode().ok().map(|i| (ns.clone(), i)),
        })
    }

    /// The namespace given to [`in_ns`](Self::in_ns), if any.
    pub fn netns(&self) -> Option<&NetNs> {
        self.ns.as_ref()
    }

    /// Link operations (`ip link`).
    pub fn link(&self) -> Links<'_> {
        Links { h: self }
    }

    /// Address operations (`ip address`).
    pub fn addr(&self) -> Addresses<'_> {
        Addresses { h: self }
    }

    /// Neighbour operations (`ip neigh`).
    pub fn neigh(&self) -> crate::neigh::Neighbours<'_> {
        crate::neigh::Neighbours {
            h: self,
            proxy: false,
        }
    }

    /// Bridge FDB operations (`bridge fdb`).
    pub fn fdb(&self) -> crate::fdb::Fdb<'_> {
        crate::fdb::Fdb { h: self }
    }

    /// Route operations (`ip route`).
    pub fn route(&self) -> Routes<'_> {
        Routes {
            h: self,
            table: crate::route::TABLE_MAIN,
        }
    }

    /// Per-link sysctls of the handle's namespace (`sysctl net.ipv4.conf.DEV.*`).
    pub fn sysctl(&self) -> crate::sysctl::Sysctls<'_> {
        crate::sysctl::Sysctls { h: self }
    }

    /// Policy routing rules (`ip rule`).
    pub fn rule(&self) -> crate::rule::Rules<'_> {
        crate::rule::Rules { h: self }
    }

    /// Queueing disciplines (`tc qdisc`).
    pub fn qdisc(&self) -> crate::tc::Qdiscs<'_> {
        crate::tc::Qdiscs { h: self }
    }

    /// Traffic control filters (`tc filter`).
    pub fn filter(&self) -> crate::tc::Filters<'_> {
        crate::tc::Filters { h: self }
    }

    /// The id this namespace gives namespace `other` (`ip netns list-id`; what `link-netnsid`
    /// shows on a veth whose peer lives there), if it assigned one.
    pub fn nsid_of(&self, other: &NetNs) -> Result<Option<i32>> {
        use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
        use std::os::fd::AsRawFd;
        let mut msg = NsidMessage::default();
        msg.attributes
            .push(NsidAttribute::Fd(other.as_raw_fd() as u32));
        let replies = self
            .request(RouteNetlinkMessage::GetNsId(msg), 0)
            .map_err(|e| crate::Error::from_netlink("netns list-id", "namespace", e))?;
        Ok(replies.iter().find_map(|r| match r {
            RouteNetlinkMessage::NewNsId(m) => m.attributes.iter().find_map(|a| match a {
                NsidAttribute::Id(i) if *i >= 0 => Some(*i),
                _ => None,
            }),
            _ => None,
        }))
    }

    /// A batch of changes sent pipelined, many per system call (`ip -batch`, faster).
    pub fn batch(&self) -> Batch<'_> {
        Batch::new(self)
    }

    pub(crate) fn home(&self) -> Option<(&NetNs, u64)> {
        self.home.as_ref().map(|(ns, i)| (ns, *i))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave the connection inconsistent: every
        // request starts with a fresh sequence number and skips stale replies.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn request(
        &self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.conn().request(msg, flags)
    }

    pub(crate) fn pipeline(
        &self,
        msgs: impl IntoIterator<Item = (RouteNetlinkMessage, u16)>,
    ) -> Result<Vec<Result<(), KernelError>>, NetlinkError> {
        self.conn().pipeline(msgs)
    }
}
