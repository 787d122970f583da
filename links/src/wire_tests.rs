//! Byte tests of every message type the link settings, stacked kinds, addresses with options,
//! multipath routes, route lookups, rules and traffic control use; no root needed.
//!
//! The fixtures (`links/tests/fixtures/*.hex`) are bytes captured once from this kernel and
//! iproute2 by `links/tests/fixtures/capture.py`: the requests `ip`/`tc` sent and the kernel's
//! replies. A request fixture is compared byte for byte with the message podnet-links builds for
//! the same command (the netlink header aside: iproute2 and podnet ask for acks differently). A
//! reply fixture is parsed, read into podnet-links' types and asserted, then emitted again and
//! compared with the captured bytes, so nothing the kernel sent is lost on the way.

use crate::addr::{Address, AddressSpec};
use crate::kinds::{
    Ipvlan, IpvlanMode, Macvlan, MacvlanMode, Macvtap, StackedInfo, Vlan, VlanInfo, VlanProtocol,
};
use crate::link::{Ifb, Link, LinkKind, LinkSpec};
use crate::route::{NextHop, Route, RouteGet};
use crate::rule::{Family, Rule, rules_of};
use crate::settings::AddrGenMode;
use crate::tc::{Filter, Htb, Qdisc, QdiscKind, Tbf, TcId, kernel_form};
use crate::types::LinkRef;
use crate::{Handle, Scope};
use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// The bytes of fixture `name`.
fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn parse(bytes: &[u8]) -> NetlinkMessage<RouteNetlinkMessage> {
    NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).expect("a fixture parses")
}

fn payload(msg: &NetlinkMessage<RouteNetlinkMessage>) -> &RouteNetlinkMessage {
    match &msg.payload {
        NetlinkPayload::InnerMessage(m) => m,
        other => panic!("not an rtnetlink message: {other:?}"),
    }
}

/// `msg` serialised with `header`'s flags, type from `msg`.
fn emit(header: NetlinkHeader, msg: RouteNetlinkMessage) -> Vec<u8> {
    let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    m.finalize();
    let mut buf = vec![0u8; m.buffer_len()];
    m.serialize(&mut buf);
    buf
}

/// Compares the message podnet-links builds with iproute2's request, after the 16-byte
/// netlink header (flags and type say how each asks, not what).
fn same_request(name: &str, ours: RouteNetlinkMessage) {
    let want = fixture(name);
    let got = emit(NetlinkHeader::default(), ours);
    assert_eq!(
        hex(&got[16..]),
        hex(&want[16..]),
        "{name}: podnet-links (left) and iproute2 (right) differ"
    );
    assert_eq!(got.len(), want.len(), "{name}");
}

/// Parses a reply fixture of traffic control, emits it again in the kernel's encoding
/// ([`crate::tc::kernel_form`]: netlink-packet-route 0.34 alone wraps the options of kinds it
/// does not know twice and flags action options as nested) and checks that the bytes are the
/// same.
fn tc_reply(name: &str) -> RouteNetlinkMessage {
    let bytes = fixture(name);
    let msg = parse(&bytes);
    let again = match payload(&msg) {
        RouteNetlinkMessage::NewQueueDiscipline(m) => {
            RouteNetlinkMessage::NewQueueDiscipline(kernel_form(m))
        }
        RouteNetlinkMessage::NewTrafficFilter(m) => {
            RouteNetlinkMessage::NewTrafficFilter(kernel_form(m))
        }
        other => panic!("{name}: not traffic control: {other:?}"),
    };
    assert_eq!(
        hex(&emit(msg.header, again)),
        hex(&bytes),
        "{name}: emitted again differs"
    );
    payload(&msg).clone()
}

/// Parses a reply fixture, emits it again and checks that the bytes are the same.
fn reply(name: &str) -> RouteNetlinkMessage {
    let bytes = fixture(name);
    let msg = parse(&bytes);
    let again = emit(msg.header, payload(&msg).clone());
    assert_eq!(hex(&again), hex(&bytes), "{name}: emitted again differs");
    payload(&msg).clone()
}

/// Parses a reply fixture captured in the qemu VM (links/tests/links_vm.rs), emits it again and
/// compares the bytes, attribute by attribute, all of them exactly but one: netlink-packet-route
/// 0.34 reads IFLA_INET6_CONF (IPv6 devconf, one u32 per setting, inside IFLA_AF_SPEC's
/// AF_INET6) into a struct with the settings of the kernels it was written for, and emits all
/// of them; the VM's Debian kernel (6.1) sends fewer. For that one attribute the kernel's bytes must
/// be the start of ours and the rest zeros (settings the kernel does not have).
fn reply_from_the_vm(name: &str) -> RouteNetlinkMessage {
    let bytes = fixture(name);
    let msg = parse(&bytes);
    let again = emit(msg.header, payload(&msg).clone());
    assert_eq!(hex(&again[4..32]), hex(&bytes[4..32]), "{name}: headers");
    same_attributes(name, &again[32..], &bytes[32..], &[]);
    payload(&msg).clone()
}

/// IFLA_AF_SPEC, AF_INET6, IFLA_INET6_CONF: the path of the one attribute
/// [`reply_from_the_vm`] lets differ.
const INET6_CONF: [u16; 3] = [26, libc::AF_INET6 as u16, 2];

/// Compares two attribute lists (`ours`, `kernel`) at `path`, descending into the nests on
/// the way to [`INET6_CONF`].
fn same_attributes(name: &str, ours: &[u8], kernel: &[u8], path: &[u16]) {
    use crate::nlattr::attrs_with_flags;
    let ours: Vec<_> = attrs_with_flags(ours).map(Result::unwrap).collect();
    let kernel: Vec<_> = attrs_with_flags(kernel).map(Result::unwrap).collect();
    let kinds = |v: &[(u16, &[u8])]| v.iter().map(|a| a.0).collect::<Vec<_>>();
    assert_eq!(
        kinds(&ours),
        kinds(&kernel),
        "{name}: attributes at {path:?}"
    );
    for ((kind, o), (_, k)) in ours.into_iter().zip(kernel) {
        let at = [path, &[kind & crate::nlattr::NLA_TYPE_MASK]].concat();
        if at[..] == INET6_CONF[..] {
            assert_eq!(hex(&o[..k.len()]), hex(k), "{name}: IFLA_INET6_CONF");
            assert!(
                o[k.len()..].iter().all(|b| *b == 0),
                "{name}: extra settings"
            );
        } else if INET6_CONF.starts_with(&at) {
            same_attributes(name, o, k, &at);
        } else {
            assert_eq!(hex(o), hex(k), "{name}: attribute {at:?}");
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.chunks(16)
        .map(|c| {
            c.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The indexes of the VM capture's parents (links_vm.rs `kind_replies_as_captured`): va 3,
/// vb 2 (its peer, made first), vc 5.
const VM_VA: u32 = 3;
const VM_VB: u32 = 2;
const VM_VC: u32 = 5;

/// The link names the captures used: lo 1, va 3, vb 2, vc 5, vd 4 (after its peer),
/// br0 6, ifb0 7.
fn resolve(l: &LinkRef) -> crate::Result<u32> {
    Ok(match l {
        LinkRef::Index(i) => *i,
        LinkRef::Name(n) => match n.as_str() {
            "va" => 3,
            "vb" => 2,
            "vc" => 5,
            "vd" => 4,
            "ifb0" => 7,
            other => panic!("no index for {other}"),
        },
    })
}

fn new_link(spec: &impl LinkSpec) -> RouteNetlinkMessage {
    RouteNetlinkMessage::NewLink(spec.to_message(&mut resolve).unwrap())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn stacked_kinds_are_requested_as_ip_link_add() {
    // IFLA_INFO_KIND without the NUL, as ip sends it (link::kind_attr).
    same_request(
        "macvlan_add",
        new_link(&Macvlan::new("mv0", "va").mode(MacvlanMode::Vepa)),
    );
    same_request(
        "macvtap_add",
        new_link(&Macvtap::new("mt0", "va").mode(MacvlanMode::Passthru)),
    );
    same_request(
        "ipvlan_add",
        new_link(&Ipvlan::new("iv0", "va").mode(IpvlanMode::L3s)),
    );
    same_request(
        "vlan_add",
        new_link(&Vlan::new("vl0", "va", 5).protocol(VlanProtocol::Dot1Ad)),
    );
    same_request("ifb_add", new_link(&Ifb::new("ifb1")));
    assert!(
        Vlan::new("vl1", "va", 4095)
            .to_message(&mut resolve)
            .is_err()
    );
}

#[test]
fn a_macvlan_reads_back_from_the_kernels_reply() {
    let RouteNetlinkMessage::NewLink(m) = reply("macvlan_link") else {
        panic!("not a link")
    };
    let l = Link::from_message(&m);
    assert_eq!(l.name, "mv0");
    assert_eq!(l.kind, Some(LinkKind::Macvlan));
    assert_eq!(l.stacked, Some(StackedInfo::Macvlan(MacvlanMode::Vepa)));
    assert_eq!(l.link, Some(3));
    assert_eq!(l.group, 0);
    assert!(l.stats.is_some());
    assert_eq!(l.addrgenmode, Some(AddrGenMode::Eui64));
    let text = l.to_string();
    assert!(text.contains("\n    macvlan mode vepa"), "{text}");
}

#[test]
fn an_ifb_reads_back_from_the_kernels_reply() {
    let RouteNetlinkMessage::NewLink(m) = reply("ifb_link") else {
        panic!("not a link")
    };
    let l = Link::from_message(&m);
    assert_eq!(l.name, "ifb1");
    assert_eq!(l.kind, Some(LinkKind::Ifb));
    assert_eq!(l.stacked, None);
    assert!(
        l.to_string().ends_with("\n    ifb addrgenmode eui64"),
        "{l}"
    );
}

#[test]
fn link_settings_are_requested_as_ip_link_set() {
    let h = Handle::new().unwrap();
    let set = h
        .link()
        .set(2)
        .hairpin(true)
        .isolated(true)
        .learning(false)
        .flood(false);
    same_request("hairpin_set", set.to_request().unwrap());
    let set = h
        .link()
        .set(2)
        .promisc(true)
        .allmulticast(true)
        .txqueuelen(0)
        .alias("pod-web-1")
        .group(7);
    // ip sends these in RTM_NEWLINK, podnet in RTM_SETLINK (both change an existing link):
    // the same bytes after the header.
    same_request("settings_set", set.to_request().unwrap());
    let set = h.link().set(2).addrgenmode(AddrGenMode::None);
    same_request("addrgenmode_set", set.to_request().unwrap());
}

#[test]
fn a_bridge_port_reads_back_with_its_settings() {
    let RouteNetlinkMessage::NewLink(m) = reply("bridge_port_link") else {
        panic!("not a link")
    };
    let l = Link::from_message(&m);
    assert_eq!(l.name, "vb");
    assert_eq!(l.master, Some(6));
    assert_eq!(l.flags & 0x300, 0x300, "PROMISC and ALLMULTI");
    assert_eq!(l.txqlen, Some(0));
    assert_eq!(l.alias.as_deref(), Some("pod-web-1"));
    assert_eq!(l.group, 7);
    assert_eq!(l.addrgenmode, Some(AddrGenMode::None));
    let p = l.bridge_port.unwrap();
    assert!(p.hairpin && p.isolated && !p.learning && !p.unicast_flood);
    assert!(p.multicast_flood && p.broadcast_flood);
    let text = l.to_string();
    assert!(
        text.contains("bridge_slave hairpin on learning off flood off"),
        "{text}"
    );
    assert!(text.contains("alias pod-web-1") && text.contains("group 7"));
}

#[test]
fn addresses_with_options_are_requested_as_ip_address_add() {
    let gw = AddressSpec::new("10.244.7.1/24".parse().unwrap())
        .broadcast_auto()
        .label("va:gw");
    same_request(
        "address_add",
        RouteNetlinkMessage::NewAddress(gw.to_message(3).unwrap()),
    );
    let tmp = AddressSpec::new("10.244.8.1/24".parse().unwrap())
        .valid_lft(3600)
        .preferred_lft(1800)
        .noprefixroute();
    same_request(
        "address_lifetimes_add",
        RouteNetlinkMessage::NewAddress(tmp.to_message(3).unwrap()),
    );
}

#[test]
fn addresses_read_back_with_broadcast_label_and_lifetimes() {
    let names = HashMap::from([(3, "va".to_string())]);
    let RouteNetlinkMessage::NewAddress(m) = reply("address_brd_label") else {
        panic!("not an address")
    };
    let a = Address::from_message(&m, &names).unwrap();
    assert_eq!(a.addr.to_string(), "10.244.7.1/24");
    assert_eq!(a.broadcast, Some("10.244.7.255".parse().unwrap()));
    assert_eq!(a.label.as_deref(), Some("va:gw"));
    assert_eq!((a.valid_lft, a.preferred_lft), (None, None));
    assert_eq!(a.scope, Scope::Universe);
    assert_eq!(
        a.to_string(),
        "inet 10.244.7.1/24 brd 10.244.7.255 scope global va:gw"
    );
    let RouteNetlinkMessage::NewAddress(m) = reply("address_lifetimes") else {
        panic!("not an address")
    };
    let a = Address::from_message(&m, &names).unwrap();
    assert!(a.noprefixroute());
    assert!(a.valid_lft.is_some_and(|v| v <= 3600 && v > 3000), "{a:?}");
    assert!(a.preferred_lft.is_some_and(|v| v <= 1800 && v > 1200));
    assert!(
        a.to_string()
            .starts_with("inet 10.244.8.1/24 scope global dynamic noprefixroute va\\"),
        "{a}"
    );
}

#[test]
fn multipath_routes_on_the_wire() {
    let r = Route::new("10.96.0.0/12".parse().unwrap())
        .nexthop(NextHop::via(ip("198.18.40.2")).weight(1))
        .nexthop(NextHop::via(ip("198.18.41.2")).weight(3));
    let msg = r.to_message(None, &[Some(5), Some(4)], false).unwrap();
    same_request("multipath_add", RouteNetlinkMessage::NewRoute(msg));

    let names = HashMap::from([(5, "vc".to_string()), (4, "vd".to_string())]);
    let RouteNetlinkMessage::NewRoute(m) = reply("multipath_route") else {
        panic!("not a route")
    };
    let r = Route::from_message(&m, &names).unwrap();
    assert_eq!(r.nexthops.len(), 2);
    assert_eq!(r.nexthops[0].gateway, Some(ip("198.18.40.2")));
    assert_eq!(r.nexthops[0].dev, Some(LinkRef::Name("vc".into())));
    assert_eq!(r.nexthops[1].weight, 3);
    assert_eq!(
        r.to_string(),
        "10.96.0.0/12\n\tnexthop via 198.18.40.2 dev vc weight 1\
         \n\tnexthop via 198.18.41.2 dev vd weight 3"
    );
}

#[test]
fn route_lookups_are_requested_as_ip_route_get() {
    let q = RouteGet::new(ip("8.8.8.8")).mark(0x4000);
    same_request(
        "route_get_mark",
        RouteNetlinkMessage::GetRoute(q.to_message(None, None).unwrap()),
    );
    let q = RouteGet::new(ip("198.18.41.2")).from(ip("198.18.40.2"));
    same_request(
        "route_get_iif",
        RouteNetlinkMessage::GetRoute(q.to_message(Some(5), None).unwrap()),
    );
    let names = HashMap::from([(4, "vd".to_string())]);
    let RouteNetlinkMessage::NewRoute(m) = reply("route_get_mark_reply") else {
        panic!("not a route")
    };
    let r = Route::from_message(&m, &names).unwrap();
    assert_eq!(r.table, 100);
    assert_eq!(r.gateway, Some(ip("198.18.41.2")));
    assert_eq!(r.dev, Some(LinkRef::Name("vd".into())));
    // RTM_F_CLONED, which Route does not decode, kept.
    assert_eq!(r.flags, 0x200, "{:#x}", r.flags);
}

#[test]
fn rules_on_the_wire() {
    let r = Rule::new_v4()
        .fwmark(0x4000, Some(0x4000))
        .table(100)
        .priority(100);
    same_request(
        "rule_add",
        RouteNetlinkMessage::NewRule(r.to_message().unwrap()),
    );
    let r6 = Rule::new_v6()
        .from("fd30::/64".parse().unwrap())
        .iif("va")
        .table(200)
        .priority(200);
    same_request(
        "rule6_add",
        RouteNetlinkMessage::NewRule(r6.to_message().unwrap()),
    );
    let got = rules_of(&[reply("rule_rule")]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].family, Family::Inet);
    assert_eq!((got[0].fwmark, got[0].fwmask), (Some(0x4000), Some(0x4000)));
    assert_eq!(
        got[0].to_string(),
        "100:\tfrom all fwmark 0x4000/0x4000 lookup 100"
    );
    let got = rules_of(&[reply("rule6_rule")]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].family, Family::Inet6);
    assert_eq!(got[0].to_string(), "200:\tfrom fd30::/64 iif va lookup 200");
    assert_eq!(got[0].from, r6.from);
}

#[test]
fn qdiscs_on_the_wire() {
    let msg = |q: &Qdisc, index| {
        RouteNetlinkMessage::NewQueueDiscipline(q.to_message(index, false).unwrap())
    };
    same_request("ingress_add", msg(&Qdisc::ingress(), 3));
    same_request("clsact_add", msg(&Qdisc::clsact(), 5));
    let htb = Htb {
        default_class: 0x30,
        r2q: 10,
        direct_qlen: None,
    };
    same_request("htb_add", msg(&Qdisc::htb(htb), 4));

    // tc sends a rate table the kernel no longer needs (podnet sends an Ethernet link layer
    // instead): compare what the two ask for.
    let RouteNetlinkMessage::NewQueueDiscipline(theirs) =
        payload(&parse(&fixture("tbf_add"))).clone()
    else {
        panic!("not a qdisc")
    };
    let theirs = Qdisc::from_message(&theirs);
    let ours = Qdisc::tbf(Tbf::new(10_000_000, 32 * 1024, Duration::from_millis(25)));
    assert_eq!(theirs.kind, ours.kind, "tc's tbf and ours");
    assert_eq!(theirs.parent, TcId::ROOT);

    let RouteNetlinkMessage::NewQueueDiscipline(m) = tc_reply("tbf_qdisc") else {
        panic!("not a qdisc")
    };
    let q = Qdisc::from_message(&m);
    assert_eq!(q.kind, ours.kind);
    assert_eq!(q.index, 3);
    let RouteNetlinkMessage::NewQueueDiscipline(m) = tc_reply("htb_qdisc") else {
        panic!("not a qdisc")
    };
    let q = Qdisc::from_message(&m);
    assert_eq!(q.handle, TcId::new(1, 0));
    let QdiscKind::Htb(back) = q.kind else {
        panic!("{q:?}")
    };
    assert_eq!((back.default_class, back.r2q), (0x30, 10));
    for (name, kind, index) in [
        ("ingress_qdisc", QdiscKind::Ingress, 3),
        ("clsact_qdisc", QdiscKind::Clsact, 5),
    ] {
        let RouteNetlinkMessage::NewQueueDiscipline(m) = tc_reply(name) else {
            panic!("not a qdisc")
        };
        let q = Qdisc::from_message(&m);
        assert_eq!((q.kind, q.index), (kind, index), "{name}");
        assert_eq!((q.handle, q.parent), (TcId::INGRESS, TcId::INGRESS_PARENT));
    }
}

#[test]
fn the_bandwidth_plugins_redirect_filter_on_the_wire() {
    let f = Filter::redirect(TcId::INGRESS, "ifb0").priority(1);
    same_request(
        "u32_mirred_add",
        RouteNetlinkMessage::NewTrafficFilter(f.to_message(3, 7).unwrap()),
    );
    let names = HashMap::from([(7, "ifb0".to_string())]);
    let RouteNetlinkMessage::NewTrafficFilter(m) = tc_reply("u32_mirred_filter") else {
        panic!("not a filter")
    };
    let got = Filter::from_message(&m, &names);
    assert_eq!(got.kind, "u32");
    assert_eq!(got.priority, 1);
    assert_eq!(got.parent, TcId::INGRESS);
    assert_eq!(got.redirect_to, Some(LinkRef::Name("ifb0".into())));
    assert_eq!(
        got.to_string(),
        "filter parent ffff: protocol all pref 1 u32 action mirred egress redirect dev ifb0"
    );
}

#[test]
fn ipvlan_links_read_back_from_the_kernels_reply() {
    for (name, dev, mode, parent) in [
        ("ipvlan_l2_link", "ivl2", IpvlanMode::L2, VM_VA),
        ("ipvlan_l3_link", "ivl3", IpvlanMode::L3, VM_VB),
        ("ipvlan_l3s_link", "ivl3s", IpvlanMode::L3s, VM_VC),
    ] {
        let RouteNetlinkMessage::NewLink(m) = reply_from_the_vm(name) else {
            panic!("not a link")
        };
        let l = Link::from_message(&m);
        assert_eq!(l.name, dev);
        assert_eq!(l.kind, Some(LinkKind::Ipvlan));
        assert_eq!(l.stacked, Some(StackedInfo::Ipvlan(mode)), "{name}");
        assert_eq!(l.link, Some(parent), "{name}");
        assert_eq!(l.mtu, 1500);
        assert!(
            l.to_string()
                .contains(&format!("\n    ipvlan  mode {mode} bridge")),
            "{l}"
        );
    }
}

#[test]
fn vlan_links_read_back_from_the_kernels_reply() {
    for (name, dev, id, protocol, parent) in [
        ("vlan_8021q_link", "va.5", 5, VlanProtocol::Dot1Q, VM_VA),
        (
            "vlan_8021ad_link",
            "vb.100",
            100,
            VlanProtocol::Dot1Ad,
            VM_VB,
        ),
    ] {
        let RouteNetlinkMessage::NewLink(m) = reply_from_the_vm(name) else {
            panic!("not a link")
        };
        let l = Link::from_message(&m);
        assert_eq!(l.name, dev);
        assert_eq!(l.kind, Some(LinkKind::Vlan));
        assert_eq!(
            l.stacked,
            Some(StackedInfo::Vlan(VlanInfo { id, protocol })),
            "{name}"
        );
        assert_eq!(l.link, Some(parent), "{name}");
        assert!(
            l.to_string()
                .contains(&format!("\n    vlan protocol {protocol} id {id}")),
            "{l}"
        );
    }
}
