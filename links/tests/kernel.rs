//! Kernel tests for podnet-links. Each test builds its own namespaces with the shared test
//! harness (deleted on drop, also when a test fails) and checks the result with iproute2.

use ipnet::IpNet;
use podnet_links::{Bridge, Error, Handle, LinkKind, MacAddr, Route, RouteKind, Scope, Veth};
use podnet_testsupport::{TestNs, require_root};
use std::net::IpAddr;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn veth_across_namespaces_with_addresses_pings() {
    require_root!();
    let a = TestNs::new("veth-a");
    let b = TestNs::new("veth-b");
    let ha = Handle::in_ns(&a).unwrap();
    let hb = Handle::in_ns(&b).unwrap();
    ha.link()
        .add(&Veth::new("to-b").peer("to-a").peer_netns(&b))
        .unwrap();
    // The peer was created directly inside b, never in a.
    assert!(ha.link().get("to-a").unwrap_err().is_not_found());
    let peer = hb.link().get("to-a").unwrap();
    assert_eq!(peer.kind, Some(LinkKind::Veth));
    ha.addr()
        .add("to-b", "198.18.1.1/24".parse::<IpNet>().unwrap())
        .unwrap();
    hb.addr()
        .add("to-a", "198.18.1.2/24".parse::<IpNet>().unwrap())
        .unwrap();
    hb.addr()
        .add("to-a", "fd10::2/64".parse::<IpNet>().unwrap())
        .unwrap();
    ha.link().set("to-b").up().apply().unwrap();
    hb.link().set("to-a").up().apply().unwrap();
    assert!(a.ping("198.18.1.2", 2), "ping across the veth pair");

    let link = ha.link().get("to-b").unwrap();
    assert!(link.is_up());
    assert!(
        link.link_netnsid.is_some(),
        "peer lives in another namespace"
    );
    let shown = a.exec("ip", &["-o", "link", "show", "to-b"]);
    assert!(
        shown.contains(&format!("{}: to-b@if{}", link.index, peer.index)),
        "{shown}"
    );
    let text = link.to_string();
    assert!(
        text.starts_with(&format!("{}: to-b@if{}: <", link.index, peer.index)),
        "{text}"
    );

    let addrs = hb.addr().list(Some("to-a".into())).unwrap();
    let mut nets: Vec<String> = addrs.iter().map(|a| a.addr.to_string()).collect();
    nets.sort();
    assert!(nets.contains(&"198.18.1.2/24".to_string()));
    assert!(nets.contains(&"fd10::2/64".to_string()));
    let v4 = addrs.iter().find(|a| a.addr.addr().is_ipv4()).unwrap();
    assert_eq!(v4.to_string(), "inet 198.18.1.2/24 scope global to-a");
    assert!(
        b.exec("ip", &["-o", "addr", "show", "dev", "to-a"])
            .contains("inet 198.18.1.2/24 scope global to-a")
    );

    // Duplicate address: Exists; replace is idempotent; del removes; del again NotFound.
    let net = "198.18.1.2/24".parse::<IpNet>().unwrap();
    assert!(hb.addr().add("to-a", net).unwrap_err().is_exists());
    hb.addr().replace("to-a", net).unwrap();
    hb.addr().del("to-a", net).unwrap();
    assert!(hb.addr().del("to-a", net).unwrap_err().is_not_found());
    assert!(!a.ping("198.18.1.2", 1));

    // Deleting one end deletes both.
    ha.link().del("to-b").unwrap();
    assert!(hb.link().get("to-a").unwrap_err().is_not_found());
}

#[test]
fn bridge_with_two_veths() {
    require_root!();
    let node = TestNs::new("br-node");
    let p1 = TestNs::new("br-p1");
    let p2 = TestNs::new("br-p2");
    let h = Handle::in_ns(&node).unwrap();
    h.link().add(&Bridge::new("cni0")).unwrap();
    h.addr()
        .add("cni0", "10.244.7.1/24".parse::<IpNet>().unwrap())
        .unwrap();
    h.link().set("cni0").up().apply().unwrap();
    for (i, pod) in [(2, &p1), (3, &p2)] {
        let host_end = format!("veth{i}");
        h.link()
            .add(&Veth::new(&host_end).peer("eth0").peer_netns(pod))
            .unwrap();
        h.link().set(&host_end).master("cni0").up().apply().unwrap();
        let hp = Handle::in_ns(pod).unwrap();
        hp.addr()
            .add("eth0", format!("10.244.7.{i}/24").parse::<IpNet>().unwrap())
            .unwrap();
        hp.link().set("eth0").up().apply().unwrap();
        hp.route()
            .add(&Route::new("0.0.0.0/0".parse().unwrap()).via(ip("10.244.7.1")))
            .unwrap();
    }
    let bridge = h.link().get("cni0").unwrap();
    assert_eq!(bridge.kind, Some(LinkKind::Bridge));
    for name in ["veth2", "veth3"] {
        let l = h.link().get(name).unwrap();
        assert_eq!(l.master, Some(bridge.index));
        assert_eq!(l.master_name.as_deref(), Some("cni0"));
        assert!(l.to_string().contains(" master cni0 "), "{l}");
    }
    let shown = node.exec("ip", &["-o", "link", "show", "master", "cni0"]);
    assert!(
        shown.contains("veth2") && shown.contains("veth3"),
        "{shown}"
    );
    assert!(p1.ping("10.244.7.3", 2), "pod to pod through the bridge");
    assert!(p2.ping("10.244.7.1", 2), "pod to the bridge address");

    // nomaster detaches: traffic stops.
    h.link().set("veth3").nomaster().apply().unwrap();
    assert_eq!(h.link().get("veth3").unwrap().master, None);
    assert!(!p1.ping("10.244.7.3", 1));
}

#[test]
fn link_set_mtu_mac_rename_and_move() {
    require_root!();
    let a = TestNs::new("set-a");
    let b = TestNs::new("set-b");
    let h = Handle::in_ns(&a).unwrap();
    h.link().add(&Veth::new("v0").peer("v1").mtu(1400)).unwrap();
    assert_eq!(h.link().get("v1").unwrap().mtu, 1400);
    let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
    h.link().set("v0").mtu(1450).mac(mac).apply().unwrap();
    let v0 = h.link().get("v0").unwrap();
    assert_eq!((v0.mtu, v0.mac), (1450, Some(mac)));
    assert!(
        a.exec("ip", &["link", "show", "v0"])
            .contains("02:00:00:00:00:01")
    );
    h.link().set("v0").name("renamed").apply().unwrap();
    assert_eq!(h.link().get("renamed").unwrap().index, v0.index);
    assert!(h.link().get("v0").unwrap_err().is_not_found());
    h.link().set("v1").netns(&b).apply().unwrap();
    assert!(h.link().get("v1").unwrap_err().is_not_found());
    let hb = Handle::in_ns(&b).unwrap();
    assert_eq!(hb.link().get("v1").unwrap().kind, Some(LinkKind::Veth));
    let names: Vec<String> = hb
        .link()
        .list()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["lo", "v1"]);
}

#[test]
fn routes_onlink_gateway_blackhole_replace_and_get() {
    require_root!();
    let pair = podnet_testsupport::linked_pair("rt", "198.18.2.1/24", "198.18.2.2/24");
    let h = Handle::in_ns(&pair.a).unwrap();

    // Gateway route.
    let gw = Route::new("10.244.1.0/24".parse().unwrap()).via(ip("198.18.2.2"));
    h.route().add(&gw).unwrap();
    match h.route().add(&gw) {
        Err(Error::Exists { name, .. }) => assert_eq!(name, "10.244.1.0/24"),
        other => panic!("expected Exists, got {other:?}"),
    }
    // Onlink: a gateway outside every connected prefix, like flannel's vxlan routes.
    let onlink = Route::new("10.244.2.0/24".parse().unwrap())
        .via(ip("10.244.2.0"))
        .dev("eth0")
        .onlink();
    let refused = h
        .route()
        .add(
            &Route::new("10.244.2.0/24".parse().unwrap())
                .via(ip("10.244.2.0"))
                .dev("eth0"),
        )
        .unwrap_err();
    assert!(
        matches!(refused, Error::Kernel { errno, .. } if errno == libc_enetunreach()),
        "{refused}"
    );
    h.route().add(&onlink).unwrap();
    // Blackhole with a metric.
    h.route()
        .add(&Route::blackhole("10.244.3.0/24".parse().unwrap()).metric(50))
        .unwrap();
    let shown = pair.a.exec("ip", &["route"]);
    for line in [
        "10.244.1.0/24 via 198.18.2.2 dev eth0",
        "10.244.2.0/24 via 10.244.2.0 dev eth0 onlink",
        "blackhole 10.244.3.0/24 metric 50",
        "198.18.2.0/24 dev eth0 proto kernel scope link src 198.18.2.1",
    ] {
        assert!(
            shown.lines().any(|l| l.trim() == line),
            "{line:?} not in\n{shown}"
        );
    }
    // Our Display matches iproute2's lines.
    let ours: Vec<String> = h
        .route()
        .list()
        .unwrap()
        .iter()
        .map(|r| r.to_string())
        .collect();
    for line in shown.lines() {
        assert!(
            ours.iter().any(|o| o == line.trim()),
            "{line:?} not in {ours:?}"
        );
    }

    // Replace changes the gateway in place.
    h.route()
        .replace(&Route::new("10.244.1.0/24".parse().unwrap()).via(ip("198.18.2.3")))
        .unwrap();
    let routes = h.route().list().unwrap();
    let r = routes
        .iter()
        .find(|r| r.dst == "10.244.1.0/24".parse().unwrap())
        .unwrap();
    assert_eq!(r.gateway, Some(ip("198.18.2.3")));
    assert_eq!(
        routes
            .iter()
            .filter(|r| r.dst == r.dst.trunc() && r.dst.to_string() == "10.244.1.0/24")
            .count(),
        1
    );

    // route get: the kernel's own lookup.
    let got = h.route().get(ip("10.244.2.9")).unwrap();
    assert_eq!(got.gateway, Some(ip("10.244.2.0")));
    assert_eq!(got.dev, Some("eth0".into()));
    let got = h.route().get(ip("198.18.2.2")).unwrap();
    assert_eq!((got.gateway, got.src), (None, Some(ip("198.18.2.1"))));
    let bh = h.route().get(ip("10.244.3.1"));
    assert!(bh.is_err() || bh.unwrap().kind == RouteKind::Blackhole);
    let unreachable = h.route().get(ip("203.0.113.1")).unwrap_err();
    assert_eq!(unreachable.errno(), Some(libc_enetunreach()));

    // Delete, then NotFound.
    h.route().del(&onlink).unwrap();
    assert!(h.route().del(&onlink).unwrap_err().is_not_found());

    // IPv6 and a route in another table.
    h.addr()
        .add("eth0", "fd10:2::1/64".parse::<IpNet>().unwrap())
        .unwrap();
    h.route()
        .add(
            &Route::new("fd10:99::/64".parse().unwrap())
                .dev("eth0")
                .table(100)
                .scope(Scope::Link),
        )
        .unwrap();
    assert!(
        pair.a
            .exec("ip", &["-6", "route", "show", "table", "100"])
            .contains("fd10:99::/64 dev eth0")
    );
    let t100 = h.route().table(100).list().unwrap();
    assert_eq!(t100.len(), 1);
    assert_eq!(
        t100[0].to_string(),
        "fd10:99::/64 dev eth0 table 100 metric 1024"
    );
}

/// ENETUNREACH on Linux.
fn libc_enetunreach() -> i32 {
    101
}

#[test]
fn errors_name_what_was_asked() {
    require_root!();
    let ns = TestNs::new("errs");
    let h = Handle::in_ns(&ns).unwrap();
    h.link().add(&Bridge::new("br0")).unwrap();
    match h.link().add(&Bridge::new("br0")) {
        Err(Error::Exists { name, .. }) => assert_eq!(name, "br0"),
        other => panic!("expected Exists, got {other:?}"),
    }
    match h.link().set("nope0").up().apply() {
        Err(Error::NotFound { name, errno, .. }) => {
            assert_eq!(name, "nope0");
            assert_eq!(errno, 19); // ENODEV
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(h.link().del("nope0").unwrap_err().is_not_found());
    assert!(
        h.addr()
            .add("nope0", "10.0.0.1/8".parse::<IpNet>().unwrap())
            .unwrap_err()
            .is_not_found()
    );
    match h.link().set("br0").master("nobridge").apply() {
        Err(Error::NotFound { name, .. }) => assert_eq!(name, "nobridge"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    // The kernel's extended-ack message is kept.
    let e = h.link().set("lo").master("br0").apply().unwrap_err();
    assert!(e.errno().is_some(), "{e}");
}

#[test]
fn invalid_names_are_refused_before_any_syscall() {
    // No root needed: nothing reaches the kernel. A handle in the current namespace only opens
    // a socket, which any user may.
    let h = Handle::new().unwrap();
    for bad in ["sixteen-bytes-xx", "", "a/b", "has space"] {
        match h.link().add(&Bridge::new(bad)) {
            Err(Error::InvalidName { name, .. }) => assert_eq!(name, bad),
            other => panic!("{bad:?}: expected InvalidName, got {other:?}"),
        }
        assert!(matches!(h.link().get(bad), Err(Error::InvalidName { .. })));
        assert!(matches!(h.link().del(bad), Err(Error::InvalidName { .. })));
    }
    match h.link().add(&Veth::new("ok0").peer("sixteen-bytes-xx")) {
        Err(Error::InvalidName { name, .. }) => assert_eq!(name, "sixteen-bytes-xx"),
        other => panic!("expected InvalidName, got {other:?}"),
    }
    let mixed = Route::new("10.0.0.0/8".parse().unwrap()).via(ip("fd00::1"));
    assert!(matches!(
        h.route().add(&mixed),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn batch_reports_each_failure_by_request() {
    require_root!();
    let pair = podnet_testsupport::linked_pair("batch", "198.18.3.1/24", "198.18.3.2/24");
    let h = Handle::in_ns(&pair.a).unwrap();
    let mut batch = h.batch();
    for i in 0..3000u32 {
        let dst = format!("10.{}.{}.{}/32", 100 + i / 65536, (i / 256) % 256, i % 256);
        batch
            .route()
            .add(&Route::new(dst.parse().unwrap()).via(ip("198.18.3.2")))
            .unwrap();
    }
    // Request 3000 duplicates request 5; 3001 is fine; 3002 points at a missing gateway.
    batch
        .route()
        .add(&Route::new("10.100.0.5/32".parse().unwrap()).via(ip("198.18.3.2")))
        .unwrap();
    batch
        .route()
        .add(&Route::new("10.200.0.1/32".parse().unwrap()).dev("eth0"))
        .unwrap();
    batch
        .route()
        .add(&Route::new("10.200.0.2/32".parse().unwrap()).via(ip("10.9.9.9")))
        .unwrap();
    assert_eq!(batch.len(), 3003);
    let report = batch.execute().unwrap();
    let failures: Vec<(usize, String)> =
        report.failures().map(|(i, e)| (i, e.to_string())).collect();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert_eq!(failures[0].0, 3000);
    assert!(
        failures[0].1.contains("10.100.0.5/32 already exists"),
        "{}",
        failures[0].1
    );
    assert_eq!(failures[1].0, 3002);
    assert_eq!(report.succeeded(), 3001);
    let count = pair.a.exec("ip", &["route", "show"]).lines().count();
    assert_eq!(count, 3001 + 1);
    assert!(
        h.batch().execute().unwrap().into_result().is_ok(),
        "empty batch"
    );
}

#[test]
fn handles_are_bound_to_their_namespace_from_any_thread() {
    require_root!();
    let ns = TestNs::new("bound");
    let h = Handle::in_ns(&ns).unwrap();
    std::thread::scope(|s| {
        for i in 0..4 {
            let h = &h;
            s.spawn(move || h.link().add(&Bridge::new(format!("br{i}"))).unwrap());
        }
    });
    let shown = ns.exec("ip", &["-br", "link"]);
    for i in 0..4 {
        assert!(shown.contains(&format!("br{i}")), "{shown}");
    }
    // The test process's own namespace has none of them.
    let own = Handle::new().unwrap();
    assert!(own.link().get("br0").unwrap_err().is_not_found());
}
