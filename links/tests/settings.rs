//! Kernel tests of link settings, stacked kinds, addresses with options, multipath routes,
//! route lookups, policy rules and traffic control. Each test works in namespaces of its own
//! (deleted on drop) and checks the result with iproute2 (`ip`, `bridge`, `tc`) as an oracle
//! independent of podnet-links.

use podnet_links::{
    AddrGenMode, AddressSpec, Bridge, Family, Filter, Handle, Htb, Ifb, LinkKind, LinkSysctl,
    Macvlan, MacvlanMode, Macvtap, NextHop, Qdisc, QdiscKind, Route, RouteGet, Rule, StackedInfo,
    Tbf, TcId, Veth,
};
use podnet_testsupport::{TestNs, linked_pair, require_root};
use std::net::IpAddr;
use std::time::Duration;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn link_settings_read_back_as_ip_shows_them() {
    require_root!();
    let ns = TestNs::new("lset");
    let h = Handle::in_ns(&ns).unwrap();
    h.link().add(&Bridge::new("br0")).unwrap();
    h.link().add(&Veth::new("v0").peer("v1")).unwrap();
    h.link()
        .set("v0")
        .master("br0")
        .promisc(true)
        .allmulticast(true)
        .txqueuelen(0)
        .alias("pod web-1")
        .group(7)
        .addrgenmode(AddrGenMode::None)
        .up()
        .apply()
        .unwrap();
    // Bridge port flags go in RTM_NEWLINK; the same builder sends them.
    h.link()
        .set("v0")
        .hairpin(true)
        .isolated(true)
        .learning(false)
        .flood(false)
        .apply()
        .unwrap();

    let l = h.link().get("v0").unwrap();
    assert_eq!(l.flags & 0x100, 0x100, "PROMISC");
    assert_eq!(l.flags & 0x200, 0x200, "ALLMULTI");
    assert!(l.promiscuity >= 1, "{}", l.promiscuity); // the bridge port counts one too
    assert_eq!(l.txqlen, Some(0));
    assert_eq!(l.alias.as_deref(), Some("pod web-1"));
    assert_eq!(l.group, 7);
    assert_eq!(l.addrgenmode, Some(AddrGenMode::None));
    let port = l.bridge_port.expect("a bridge port");
    assert!(port.hairpin && port.isolated && !port.learning && !port.unicast_flood);
    assert!(port.multicast_flood && port.broadcast_flood);

    let shown = ns.exec("ip", &["-d", "link", "show", "v0"]);
    for want in [
        "PROMISC",
        "ALLMULTI",
        "group 7",
        "alias pod web-1",
        "addrgenmode none",
        "hairpin on",
        "learning off",
        "flood off",
        "isolated on",
    ] {
        assert!(shown.contains(want), "{want:?} missing in:\n{shown}");
    }
    let text = l.to_string();
    assert!(
        !shown.contains("qlen"),
        "ip leaves a zero qlen out:\n{shown}"
    );
    for want in ["PROMISC", "group 7", "alias pod web-1", "hairpin on"] {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }

    // Off again.
    h.link()
        .set("v0")
        .promisc(false)
        .hairpin(false)
        .alias("")
        .apply()
        .unwrap();
    let l = h.link().get("v0").unwrap();
    assert_eq!(l.flags & 0x100, 0);
    assert!(!l.bridge_port.unwrap().hairpin);
    assert_eq!(l.alias, None);
}

#[test]
fn statistics_count_what_crossed_the_link() {
    require_root!();
    let pair = linked_pair("lstat", "198.18.30.1/24", "198.18.30.2/24");
    let h = Handle::in_ns(&pair.a).unwrap();
    let before = h.link().get("eth0").unwrap().stats.unwrap();
    assert!(pair.a.ping("198.18.30.2", 2));
    let after = h.link().get("eth0").unwrap().stats.unwrap();
    assert!(after.tx_packets > before.tx_packets, "{before:?} {after:?}");
    assert!(after.rx_bytes > before.rx_bytes);
    // The kernel's own count, read by ip, matches ours (nothing else sends meanwhile).
    let json = pair.a.exec("ip", &["-s", "-o", "link", "show", "eth0"]);
    assert!(
        json.contains(&format!(" {} ", after.tx_packets)),
        "{after:?}\n{json}"
    );
    let text = format!("{:#}", h.link().get("eth0").unwrap());
    assert!(text.contains("RX:") && text.contains("TX:"), "{text}");
}

#[test]
fn sysctls_are_the_namespaces_own() {
    require_root!();
    let ns = TestNs::new("lsysctl");
    let h = Handle::in_ns(&ns).unwrap();
    h.link().add(&Veth::new("sv0").peer("sv1")).unwrap();
    h.sysctl().set("sv0", LinkSysctl::ProxyArp, 1).unwrap();
    h.sysctl().set("sv0", LinkSysctl::RpFilter, 2).unwrap();
    h.sysctl().set("sv0", LinkSysctl::AcceptDad, 0).unwrap();
    h.sysctl()
        .set("sv0", LinkSysctl::Ipv4Forwarding, 1)
        .unwrap();
    assert_eq!(h.sysctl().get("sv0", LinkSysctl::ProxyArp).unwrap(), 1);
    assert_eq!(h.sysctl().get("sv0", LinkSysctl::RpFilter).unwrap(), 2);
    // The oracle: sysctl(8)'s file inside the namespace.
    assert_eq!(ns.sysctl_get("net/ipv4/conf/sv0/proxy_arp").unwrap(), "1");
    assert_eq!(ns.sysctl_get("net/ipv6/conf/sv0/accept_dad").unwrap(), "0");
    assert_eq!(ns.sysctl_get("net/ipv4/conf/sv0/forwarding").unwrap(), "1");
    // A link this namespace does not have.
    let e = h.sysctl().get("nosuch0", LinkSysctl::ProxyArp).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    // A handle opened inside the namespace by a thread that is in it reads directly.
    let inside = ns
        .run(|| {
            let h = Handle::new().unwrap();
            h.sysctl().get("sv0", LinkSysctl::RpFilter).unwrap()
        })
        .unwrap();
    assert_eq!(inside, 2);
}

#[test]
fn macvlan_macvtap_and_ifb_in_every_mode() {
    require_root!();
    let ns = TestNs::new("lkinds");
    let h = Handle::in_ns(&ns).unwrap();
    h.link().add(&Veth::new("up0").peer("up1")).unwrap();
    h.link().add(&Veth::new("pt0").peer("pt1")).unwrap();
    for (name, mode) in [
        ("mvb", MacvlanMode::Bridge),
        ("mvp", MacvlanMode::Private),
        ("mvv", MacvlanMode::Vepa),
    ] {
        h.link().add(&Macvlan::new(name, "up0").mode(mode)).unwrap();
        let l = h.link().get(name).unwrap();
        assert_eq!(l.kind, Some(LinkKind::Macvlan));
        assert_eq!(l.stacked, Some(StackedInfo::Macvlan(mode)));
        assert_eq!(l.link_name.as_deref(), Some("up0"));
        let shown = ns.exec("ip", &["-d", "link", "show", name]);
        assert!(shown.contains(&format!("macvlan mode {mode} ")), "{shown}");
        assert!(l.to_string().contains(&format!("macvlan mode {mode}")));
    }
    h.link()
        .add(&Macvlan::new("mvpt", "pt0").mode(MacvlanMode::Passthru))
        .unwrap();
    assert_eq!(
        h.link().get("mvpt").unwrap().stacked,
        Some(StackedInfo::Macvlan(MacvlanMode::Passthru))
    );
    h.link()
        .add(&Macvtap::new("mtv", "up0").mode(MacvlanMode::Vepa))
        .unwrap();
    let l = h.link().get("mtv").unwrap();
    assert_eq!(l.kind, Some(LinkKind::Macvtap));
    assert_eq!(l.stacked, Some(StackedInfo::Macvtap(MacvlanMode::Vepa)));
    assert!(
        ns.exec("ip", &["-d", "link", "show", "mtv"])
            .contains("macvtap mode vepa")
    );
    let e = h.link().add(&Macvlan::new("mvb", "up0")).unwrap_err();
    assert!(e.is_exists(), "{e}");
    let e = h.link().add(&Macvlan::new("mvx", "nosuch")).unwrap_err();
    assert!(e.is_not_found(), "{e}");

    h.link().add(&Ifb::new("ifb0")).unwrap();
    assert_eq!(h.link().get("ifb0").unwrap().kind, Some(LinkKind::Ifb));
    assert!(
        ns.exec("ip", &["-d", "link", "show", "ifb0"])
            .contains("ifb")
    );
}

#[test]
fn addresses_with_broadcast_label_lifetimes_and_noprefixroute() {
    require_root!();
    let ns = TestNs::new("laddr");
    let h = Handle::in_ns(&ns).unwrap();
    h.link().add(&Veth::new("a0").peer("a1")).unwrap();
    h.link().set("a0").up().apply().unwrap();
    h.addr()
        .add(
            "a0",
            AddressSpec::new("10.244.7.1/24".parse().unwrap())
                .broadcast_auto()
                .label("a0:gw"),
        )
        .unwrap();
    h.addr()
        .add(
            "a0",
            AddressSpec::new("10.244.8.1/24".parse().unwrap())
                .valid_lft(3600)
                .preferred_lft(1800)
                .noprefixroute(),
        )
        .unwrap();
    h.addr()
        .add(
            "a0",
            AddressSpec::new("fd20::1/64".parse().unwrap()).nodad(),
        )
        .unwrap();
    // replace is idempotent.
    let gw = AddressSpec::new("10.244.7.1/24".parse().unwrap())
        .broadcast_auto()
        .label("a0:gw");
    h.addr().replace("a0", &gw).unwrap();
    assert!(h.addr().add("a0", &gw).unwrap_err().is_exists());
    let list = h.addr().list(Some("a0".into())).unwrap();
    let gw = list
        .iter()
        .find(|a| a.addr.to_string() == "10.244.7.1/24")
        .unwrap();
    assert_eq!(gw.broadcast, Some("10.244.7.255".parse().unwrap()));
    assert_eq!(gw.label.as_deref(), Some("a0:gw"));
    assert_eq!(gw.valid_lft, None);
    let tmp = list
        .iter()
        .find(|a| a.addr.to_string() == "10.244.8.1/24")
        .unwrap();
    assert!(tmp.noprefixroute());
    assert!(
        tmp.valid_lft.is_some_and(|v| v > 3500 && v <= 3600),
        "{tmp:?}"
    );
    assert!(tmp.preferred_lft.is_some_and(|v| v > 1700 && v <= 1800));
    // No route for the noprefixroute address's prefix.
    let routes = ns.exec("ip", &["route", "show"]);
    assert!(
        routes.contains("10.244.7.0/24") && !routes.contains("10.244.8.0/24"),
        "{routes}"
    );
    let shown = ns.exec("ip", &["-o", "-4", "addr", "show", "dev", "a0"]);
    assert!(
        shown.contains("inet 10.244.7.1/24 brd 10.244.7.255 scope global a0:gw"),
        "{shown}"
    );
    assert!(shown.contains("noprefixroute"), "{shown}");
    assert!(
        gw.to_string()
            .starts_with("inet 10.244.7.1/24 brd 10.244.7.255 scope global a0:gw"),
        "{gw}"
    );
    assert!(
        tmp.to_string().contains("dynamic noprefixroute a0"),
        "{tmp}"
    );
    let v6 = ns.exec("ip", &["-o", "-6", "addr", "show", "dev", "a0"]);
    assert!(v6.contains("fd20::1/64") && v6.contains("nodad"), "{v6}");
    // A label and a broadcast are IPv4 only.
    let e = h
        .addr()
        .add(
            "a0",
            AddressSpec::new("fd20::2/64".parse().unwrap()).label("a0:x"),
        )
        .unwrap_err();
    assert!(
        matches!(e, podnet_links::Error::InvalidArgument { .. }),
        "{e}"
    );
}

#[test]
fn multipath_routes_with_weights() {
    require_root!();
    let ns = TestNs::new("lmpath");
    let h = Handle::in_ns(&ns).unwrap();
    for (a, b, net) in [
        ("m0", "m0p", "198.18.40.1/24"),
        ("m1", "m1p", "198.18.41.1/24"),
    ] {
        h.link().add(&Veth::new(a).peer(b)).unwrap();
        h.link().set(a).up().apply().unwrap();
        h.link().set(b).up().apply().unwrap();
        h.addr()
            .add(a, net.parse::<ipnet::IpNet>().unwrap())
            .unwrap();
    }
    let r = Route::new("10.96.0.0/12".parse().unwrap())
        .nexthop(NextHop::via(ip("198.18.40.2")).dev("m0").weight(1))
        .nexthop(NextHop::via(ip("198.18.41.2")).dev("m1").weight(3));
    h.route().add(&r).unwrap();
    let shown = ns.exec("ip", &["route", "show", "10.96.0.0/12"]);
    assert!(
        shown.contains("nexthop via 198.18.40.2 dev m0 weight 1")
            && shown.contains("nexthop via 198.18.41.2 dev m1 weight 3"),
        "{shown}"
    );
    let got = h
        .route()
        .list()
        .unwrap()
        .into_iter()
        .find(|x| x.dst.to_string() == "10.96.0.0/12")
        .unwrap();
    assert_eq!(got.nexthops.len(), 2);
    assert_eq!(got.nexthops[1].weight, 3);
    assert_eq!(got.nexthops[1].gateway, Some(ip("198.18.41.2")));
    let text = got.to_string();
    assert!(
        text.contains("\n\tnexthop via 198.18.40.2 dev m0 weight 1"),
        "{text}"
    );
    h.route().del(&got).unwrap();
    assert!(!ns.exec("ip", &["route"]).contains("10.96.0.0"));
    // A weight out of range is refused before any system call.
    let bad = Route::new("10.97.0.0/16".parse().unwrap())
        .nexthop(NextHop::via(ip("198.18.40.2")).weight(0));
    assert!(h.route().add(&bad).is_err());
}

#[test]
fn rules_and_route_get_with_mark_iif_and_table() {
    require_root!();
    let pair = linked_pair("lrule", "198.18.50.1/24", "198.18.50.2/24");
    let h = Handle::in_ns(&pair.a).unwrap();
    h.link().add(&Veth::new("alt0").peer("alt1")).unwrap();
    h.link().set("alt0").up().apply().unwrap();
    h.link().set("alt1").up().apply().unwrap();
    h.addr()
        .add("alt0", "198.18.51.1/24".parse::<ipnet::IpNet>().unwrap())
        .unwrap();
    h.route()
        .add(
            &Route::new("0.0.0.0/0".parse().unwrap())
                .via(ip("198.18.51.2"))
                .table(100),
        )
        .unwrap();
    let rule = Rule::new_v4()
        .fwmark(0x4000, Some(0x4000))
        .priority(100)
        .table(100);
    h.rule().add(&rule).unwrap();
    let rule6 = Rule::new_v6()
        .from("fd30::/64".parse().unwrap())
        .iif("eth0")
        .priority(200)
        .table(200);
    h.rule().add(&rule6).unwrap();
    assert!(h.rule().add(&rule).unwrap_err().is_exists());

    let shown = pair.a.exec("ip", &["rule", "show"]);
    assert!(
        shown.contains("100:\tfrom all fwmark 0x4000/0x4000 lookup 100"),
        "{shown}"
    );
    let rules = h.rule().list(Some(Family::Inet)).unwrap();
    let got = rules.iter().find(|r| r.priority == Some(100)).unwrap();
    assert_eq!(
        got.to_string(),
        "100:\tfrom all fwmark 0x4000/0x4000 lookup 100"
    );
    // The three default rules are there too, as ip shows them.
    assert!(
        rules
            .iter()
            .any(|r| r.to_string() == "0:\tfrom all lookup local")
    );
    assert!(
        rules
            .iter()
            .any(|r| r.to_string() == "32766:\tfrom all lookup main")
    );
    let v6 = h.rule().list(Some(Family::Inet6)).unwrap();
    let got6 = v6.iter().find(|r| r.priority == Some(200)).unwrap();
    assert_eq!(got6.to_string(), "200:\tfrom fd30::/64 iif eth0 lookup 200");
    assert!(
        pair.a
            .exec("ip", &["-6", "rule"])
            .contains("200:\tfrom fd30::/64 iif eth0 lookup 200")
    );

    // Without the mark: the main table's connected route. With it: table 100's default.
    let plain = h.route().get(ip("8.8.8.8"));
    assert!(plain.is_err(), "no default route in main: {plain:?}");
    let marked = h
        .route()
        .get(RouteGet::new(ip("8.8.8.8")).mark(0x4000))
        .unwrap();
    assert_eq!(marked.gateway, Some(ip("198.18.51.2")));
    assert_eq!(marked.table, 100, "{marked:?}");
    assert_eq!(
        marked.dev.as_ref().map(|d| d.to_string()).as_deref(),
        Some("alt0")
    );
    let oracle = pair
        .a
        .exec("ip", &["route", "get", "8.8.8.8", "mark", "0x4000"]);
    assert!(
        oracle.contains("via 198.18.51.2 dev alt0 table 100"),
        "{oracle}"
    );

    // iif: as a packet forwarded from eth0 (forwarding on), from the peer's address.
    h.sysctl()
        .set("all", LinkSysctl::Ipv4Forwarding, 1)
        .unwrap();
    let fwd = h
        .route()
        .get(
            RouteGet::new(ip("198.18.51.2"))
                .iif("eth0")
                .from(ip("198.18.50.2")),
        )
        .unwrap();
    assert_eq!(fwd.iif, h.link().index("eth0").ok());
    assert_eq!(fwd.dev.map(|d| d.to_string()).as_deref(), Some("alt0"));
    let oracle = pair.a.exec(
        "ip",
        &[
            "route",
            "get",
            "198.18.51.2",
            "from",
            "198.18.50.2",
            "iif",
            "eth0",
        ],
    );
    assert!(oracle.contains("dev alt0"), "{oracle}");

    h.rule().del(&rule).unwrap();
    h.rule().del(&rule6).unwrap();
    assert!(h.rule().del(&rule).unwrap_err().is_not_found());
    assert!(!pair.a.exec("ip", &["rule"]).contains("fwmark 0x4000"));
}

#[test]
fn bandwidth_shaping_as_the_cni_plugin_does_it() {
    require_root!();
    let pair = linked_pair("ltc", "198.18.60.1/24", "198.18.60.2/24");
    let h = Handle::in_ns(&pair.a).unwrap();
    // Egress: tbf on the device.
    let egress = Tbf::new(10_000_000, 32 * 1024, Duration::from_millis(25));
    h.qdisc().add("eth0", &Qdisc::tbf(egress)).unwrap();
    // Ingress: redirect to an ifb, shaped with tbf there.
    h.link().add(&Ifb::new("ifb-eth0")).unwrap();
    h.link().set("ifb-eth0").up().apply().unwrap();
    let ingress = Tbf::new(5_000_000, 16 * 1024, Duration::from_millis(25));
    h.qdisc().add("ifb-eth0", &Qdisc::tbf(ingress)).unwrap();
    h.qdisc().add("eth0", &Qdisc::ingress()).unwrap();
    h.filter()
        .add(
            "eth0",
            &Filter::redirect(TcId::INGRESS, "ifb-eth0").priority(1),
        )
        .unwrap();

    let shown = pair.a.exec("tc", &["qdisc", "show", "dev", "eth0"]);
    assert!(
        shown.contains("qdisc tbf") && shown.contains("rate 10Mbit"),
        "{shown}"
    );
    assert!(shown.contains("burst 32Kb"), "{shown}");
    assert!(shown.contains("qdisc ingress ffff:"), "{shown}");
    let filters = pair
        .a
        .exec("tc", &["filter", "show", "dev", "eth0", "parent", "ffff:"]);
    assert!(
        filters.contains("mirred (Egress Redirect to device ifb-eth0)"),
        "{filters}"
    );

    let qs = h.qdisc().list(Some("eth0".into())).unwrap();
    let tbf = qs
        .iter()
        .find(|q| matches!(q.kind, QdiscKind::Tbf(_)))
        .unwrap();
    assert_eq!(tbf.kind, QdiscKind::Tbf(egress));
    assert_eq!(tbf.parent, TcId::ROOT);
    assert!(qs.iter().any(|q| q.kind == QdiscKind::Ingress));
    let on_ifb = h.qdisc().list(Some("ifb-eth0".into())).unwrap();
    assert!(
        on_ifb.iter().any(|q| q.kind == QdiscKind::Tbf(ingress)),
        "{on_ifb:?}"
    );
    let fl = h.filter().list("eth0", TcId::INGRESS).unwrap();
    assert!(
        fl.iter()
            .any(|f| f.redirect_to.as_ref().map(|t| t.to_string()).as_deref() == Some("ifb-eth0")),
        "{fl:?}"
    );

    // Traffic coming in on eth0 now crosses the ifb.
    let before = h.link().get("ifb-eth0").unwrap().stats.unwrap().tx_packets;
    assert!(pair.a.ping("198.18.60.2", 2));
    let after = h.link().get("ifb-eth0").unwrap().stats.unwrap().tx_packets;
    assert!(after > before, "the ifb saw nothing: {before} -> {after}");

    // Replace is idempotent; del removes.
    h.qdisc().replace("eth0", &Qdisc::tbf(egress)).unwrap();
    h.qdisc().replace("eth0", &Qdisc::tbf(egress)).unwrap();
    h.filter().del("eth0", TcId::INGRESS, 1).unwrap();
    h.qdisc().del("eth0", &Qdisc::ingress()).unwrap();
    h.qdisc().del("eth0", &Qdisc::tbf(egress)).unwrap();
    let after = pair.a.exec("tc", &["qdisc", "show", "dev", "eth0"]);
    assert!(
        !after.contains("tbf") && !after.contains("ingress"),
        "{after}"
    );
    let e = h.qdisc().del("eth0", &Qdisc::ingress()).unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
}

#[test]
fn htb_and_clsact_qdiscs() {
    require_root!();
    let ns = TestNs::new("lhtb");
    let h = Handle::in_ns(&ns).unwrap();
    h.link().add(&Veth::new("h0").peer("h1")).unwrap();
    let htb = Htb {
        default_class: 0x30,
        r2q: 10,
        direct_qlen: None,
    };
    h.qdisc().add("h0", &Qdisc::htb(htb)).unwrap();
    h.qdisc().add("h1", &Qdisc::clsact()).unwrap();
    let shown = ns.exec("tc", &["qdisc", "show", "dev", "h0"]);
    assert!(
        shown.contains("qdisc htb 1: root") && shown.contains("default 0x30"),
        "{shown}"
    );
    assert!(
        ns.exec("tc", &["qdisc", "show", "dev", "h1"])
            .contains("qdisc clsact ffff:")
    );
    let qs = h.qdisc().list(Some("h0".into())).unwrap();
    let got = qs
        .iter()
        .find(|q| matches!(q.kind, QdiscKind::Htb(_)))
        .unwrap();
    assert_eq!(got.handle, TcId::new(1, 0));
    let QdiscKind::Htb(back) = got.kind else {
        unreachable!()
    };
    assert_eq!(back.default_class, 0x30);
    assert!(
        h.qdisc()
            .list(Some("h1".into()))
            .unwrap()
            .iter()
            .any(|q| q.kind == QdiscKind::Clsact)
    );
    // A second clsact is EEXIST.
    assert!(
        h.qdisc()
            .add("h1", &Qdisc::clsact())
            .unwrap_err()
            .is_exists()
    );
}
