//! The few rtnetlink requests podnet-links does not offer, sent on its [`Connection`]:
//! addresses with a broadcast address (as the reference plugins add them), a bridge port's
//! hairpin mode, and a link's promiscuous flag.

use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoBridgePort, InfoPortData, InfoPortKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use podnet_links::netlink::{Connection, KernelError, NetlinkError};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

/// NETLINK_ROUTE.
const NETLINK_ROUTE: isize = 0;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

/// A raw rtnetlink socket in the calling thread's namespace.
pub(crate) fn connect() -> Result<Connection, NetlinkError> {
    Connection::new(NETLINK_ROUTE)
}

/// The IPv4 broadcast address of a prefix, when it has one (prefixes shorter than /31).
pub(crate) fn broadcast(net: &IpNet) -> Option<Ipv4Addr> {
    match net {
        IpNet::V4(n) if n.prefix_len() < 31 => Some(n.broadcast()),
        _ => None,
    }
}

/// `ip address add NET brd + dev INDEX`. `Ok(false)` when the link has the address already.
pub(crate) fn add_address(
    conn: &mut Connection,
    index: u32,
    net: &IpNet,
) -> Result<bool, NetlinkError> {
    let mut msg = AddressMessage::default();
    msg.header.family = match net.addr() {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.prefix_len = net.prefix_len();
    msg.header.index = index;
    msg.header.scope = AddressScope::Universe;
    msg.attributes.push(AddressAttribute::Local(net.addr()));
    msg.attributes.push(AddressAttribute::Address(net.addr()));
    if let Some(b) = broadcast(net) {
        msg.attributes.push(AddressAttribute::Broadcast(b));
    }
    match conn.request(
        RouteNetlinkMessage::NewAddress(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    ) {
        Ok(_) => Ok(true),
        Err(NetlinkError::Kernel(KernelError { errno, .. })) if errno == libc::EEXIST => Ok(false),
        Err(e) => Err(e),
    }
}

/// `ip link set dev INDEX type bridge_slave hairpin on|off` (the link must be a bridge port).
pub(crate) fn set_hairpin(conn: &mut Connection, index: u32, on: bool) -> Result<(), NetlinkError> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(InfoPortKind::Bridge),
        LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
            on,
        )])),
    ]));
    conn.request(RouteNetlinkMessage::NewLink(msg), 0)
        .map(|_| ())
}

/// `ip link set dev INDEX promisc on`.
pub(crate) fn set_promisc(conn: &mut Connection, index: u32) -> Result<(), NetlinkError> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = LinkFlags::Promisc;
    msg.header.change_mask = LinkFlags::Promisc;
    conn.request(RouteNetlinkMessage::SetLink(msg), 0)
        .map(|_| ())
}

/// `ip link set dev INDEX txqueuelen N`.
pub(crate) fn set_txqlen(conn: &mut Connection, index: u32, qlen: u32) -> Result<(), NetlinkError> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::TxQueueLen(qlen));
    conn.request(RouteNetlinkMessage::SetLink(msg), 0)
        .map(|_| ())
}

/// The addresses of one link (`ip address show dev INDEX`), without resolving link names.
pub(crate) fn addresses(conn: &mut Connection, index: u32) -> Result<Vec<IpNet>, NetlinkError> {
    const NLM_F_DUMP: u16 = 0x300;
    let mut msg = AddressMessage::default();
    msg.header.index = index;
    let replies = conn.request(RouteNetlinkMessage::GetAddress(msg), NLM_F_DUMP)?;
    let mut out = Vec::new();
    for r in replies {
        let RouteNetlinkMessage::NewAddress(m) = r else {
            continue;
        };
        if m.header.index != index {
            continue;
        }
        let mut local = None;
        let mut address = None;
        for a in &m.attributes {
            match a {
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Address(ip) => address = Some(*ip),
                _ => {}
            }
        }
        if let Some(net) = local
            .or(address)
            .and_then(|ip| IpNet::new(ip, m.header.prefix_len).ok())
        {
            out.push(net);
        }
    }
    Ok(out)
}
