//! podnet-links: rtnetlink replies and notifications (links, addresses, routes, neighbours,
//! FDB entries), from the bytes of a datagram to the typed values podnet returns.

use crate::nl::{self, MsgType};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoTun, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage, State,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

/// rtnetlink message types with their fixed headers, then netlink's control messages.
pub const TYPES: [MsgType; 13] = [
    (16, 16), // RTM_NEWLINK, ifinfomsg
    (17, 16), // RTM_DELLINK
    (20, 8),  // RTM_NEWADDR, ifaddrmsg
    (21, 8),  // RTM_DELADDR
    (24, 12), // RTM_NEWROUTE, rtmsg
    (25, 12), // RTM_DELROUTE
    (28, 12), // RTM_NEWNEIGH, ndmsg
    (29, 12), // RTM_DELNEIGH
    (30, 12), // RTM_GETNEIGH (a VXLAN miss report)
    nl::CONTROL[0],
    nl::CONTROL[1],
    nl::CONTROL[2],
    nl::CONTROL[3],
];

/// A datagram read as a dump reply (every list operation's conversion) and as notifications
/// (the event monitor), everything accepted formatted like `ip` prints it.
pub fn rtnetlink(data: &[u8]) {
    let (buf, seq) = nl::datagram(data, &TYPES);
    if let Ok(d) = podnet_links::parse_dump_datagram(&buf, seq) {
        for l in &d.links {
            black_box((l.to_string(), l.is_up(), l.is_lower_up()));
        }
        for a in &d.addresses {
            black_box(a.to_string());
        }
        for r in &d.routes {
            black_box(r.to_string());
        }
        for n in d.neighbours.iter().chain(&d.proxy_neighbours) {
            black_box(n.to_string());
        }
        for e in &d.fdb {
            black_box(e.to_string());
        }
        if let Some(Err(e)) = &d.finished {
            black_box(e.to_string());
        }
    }
    let mut events = Vec::new();
    let _ = podnet_links::parse_events(&buf, &mut events);
    black_box(format!("{events:?}"));
}

fn link(index: u32, name: &str, attrs: Vec<LinkAttribute>) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(LinkAttribute::IfName(name.into()));
    m.attributes.push(LinkAttribute::Mtu(1450));
    m.attributes.push(LinkAttribute::TxQueueLen(1000));
    m.attributes.push(LinkAttribute::OperState(State::Up));
    m.attributes
        .push(LinkAttribute::Address(vec![2, 0, 0, 0, 0, index as u8]));
    m.attributes.extend(attrs);
    RouteNetlinkMessage::NewLink(m)
}

fn neighbour(family: AddressFamily, attrs: Vec<NeighbourAttribute>) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = family;
    m.header.ifindex = 3;
    m.header.state = NeighbourState::Permanent;
    m.header.flags = NeighbourFlags::Own;
    m.attributes = attrs;
    m
}

/// Dumps and notifications as a kernel sends them: a bridge, a VXLAN device on an underlay, a
/// TUN device, a veth in a bridge, addresses, routes, neighbours, FDB entries.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let vxlan = vec![
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(vec![
                InfoVxlan::Id(1),
                InfoVxlan::Local(Ipv4Addr::new(198, 18, 0, 1)),
                InfoVxlan::Group(Ipv4Addr::new(239, 1, 1, 1)),
                InfoVxlan::Link(2),
                InfoVxlan::Port(8472),
                InfoVxlan::Learning(false),
                InfoVxlan::Ttl(64),
                InfoVxlan::Ageing(300),
                InfoVxlan::Gbp,
            ])),
        ]),
        LinkAttribute::Link(2),
    ];
    let tun_nla = |kind: u16, v: &[u8]| {
        InfoTun::Other(netlink_packet_core::DefaultNla::new(kind, v.to_vec()))
    };
    let tun = vec![LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Tun),
        LinkInfo::Data(InfoData::Tun(vec![
            tun_nla(3, &[1]),
            tun_nla(5, &[1]),
            tun_nla(7, &[1]),
            tun_nla(8, &2u32.to_ne_bytes()),
        ])),
    ])];
    let veth = vec![
        LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
        LinkAttribute::Controller(4),
        LinkAttribute::Link(9),
        LinkAttribute::LinkNetNsId(0),
    ];
    let bridge = vec![LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
        InfoKind::Bridge,
    )])];
    let mut addr4 = AddressMessage::default();
    addr4.header.family = AddressFamily::Inet;
    addr4.header.index = 4;
    addr4.header.prefix_len = 24;
    addr4.attributes = vec![
        AddressAttribute::Address(Ipv4Addr::new(10, 244, 1, 1).into()),
        AddressAttribute::Local(Ipv4Addr::new(10, 244, 1, 1).into()),
        AddressAttribute::Label("cni0".into()),
    ];
    let mut addr6 = AddressMessage::default();
    addr6.header.family = AddressFamily::Inet6;
    addr6.header.index = 4;
    addr6.header.prefix_len = 64;
    addr6.attributes = vec![AddressAttribute::Address(
        "fd10::1".parse::<Ipv6Addr>().unwrap().into(),
    )];
    let route = |family: AddressFamily, dst: RouteAddress, gw: RouteAddress, len: u8| {
        let mut m = RouteMessage::default();
        m.header.address_family = family;
        m.header.destination_prefix_length = len;
        m.header.table = 254;
        m.attributes = vec![
            RouteAttribute::Destination(dst),
            RouteAttribute::Gateway(gw),
            RouteAttribute::Oif(3),
            RouteAttribute::Priority(100),
            RouteAttribute::Table(254),
        ];
        RouteNetlinkMessage::NewRoute(m)
    };
    let arp = neighbour(
        AddressFamily::Inet,
        vec![
            NeighbourAttribute::Destination(NeighbourAddress::Inet(Ipv4Addr::new(10, 244, 2, 0))),
            NeighbourAttribute::LinkLayerAddress(vec![0x0e, 0xf1, 0x7f, 0x1f, 0x1d, 0x24]),
        ],
    );
    let fdb = neighbour(
        AddressFamily::Bridge,
        vec![
            NeighbourAttribute::LinkLayerAddress(vec![0x0e, 0xf1, 0x7f, 0x1f, 0x1d, 0x24]),
            NeighbourAttribute::Destination(NeighbourAddress::Inet(Ipv4Addr::new(198, 18, 0, 2))),
            NeighbourAttribute::Vni(1),
            NeighbourAttribute::Port(8472),
            NeighbourAttribute::Vlan(7),
            NeighbourAttribute::Controller(4),
        ],
    );
    let mut dump = Vec::new();
    for m in [
        link(4, "cni0", bridge),
        link(2, "eth0", Vec::new()),
        link(3, "flannel.1", vxlan),
        link(5, "veth1", veth),
        link(6, "tun0", tun),
        RouteNetlinkMessage::NewAddress(addr4),
        RouteNetlinkMessage::NewAddress(addr6),
        route(
            AddressFamily::Inet,
            RouteAddress::Inet(Ipv4Addr::new(10, 244, 2, 0)),
            RouteAddress::Inet(Ipv4Addr::new(10, 244, 2, 0)),
            24,
        ),
        route(
            AddressFamily::Inet6,
            RouteAddress::Inet6("fd10:2::".parse().unwrap()),
            RouteAddress::Inet6("fe80::1".parse().unwrap()),
            64,
        ),
        RouteNetlinkMessage::NewNeighbour(arp.clone()),
        RouteNetlinkMessage::NewNeighbour(fdb.clone()),
        RouteNetlinkMessage::GetNeighbour(fdb),
        RouteNetlinkMessage::DelNeighbour(arp),
    ] {
        nl::emit(&mut dump, m, 2);
    }
    let mut done = dump.clone();
    nl::done(&mut done);
    let mut failed = Vec::new();
    nl::error(&mut failed, 17, "File exists");
    [dump, done, failed]
        .iter()
        .flat_map(|d| nl::seeds(d, &TYPES))
        .map(|s| ("rtnetlink", s))
        .collect()
}
