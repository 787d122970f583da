//! Kernel tests for the overlay pieces of podnet-links: flannel's vxlan backend built by hand,
//! a TUN device answered from userspace, the event monitor, and argument checks.

use ipnet::IpNet;
use podnet_links::{
    Bridge, Dummy, Error, Event, FdbEntry, Group, Handle, LinkKind, MacAddr, Monitor, Neighbour,
    Offload, Route, Tun, Veth, Vxlan,
};
use podnet_testsupport::{TestNs, require_root};
use std::io::{Read, Write};
use std::net::IpAddr;
use std::time::Duration;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Node {
    ns: TestNs,
    pod: TestNs,
    h: Handle,
    vtep_mac: MacAddr,
}

/// One flannel vxlan node: flannel.1 (VNI 1, 8472, nolearning, local = node IP, MTU - 50) with
/// `<subnet>.0/32`, a cni0 bridge at `<subnet>.1/24`, and one pod at `<subnet>.2`.
fn node(ns: TestNs, n: u8, node_ip: &str) -> Node {
    let pod = TestNs::new(&format!("vx-pod{n}"));
    let h = Handle::in_ns(&ns).unwrap();
    ns.sysctl_set("net.ipv4.ip_forward", "1").unwrap();
    let underlay_mtu = h.link().get("eth0").unwrap().mtu;
    h.link()
        .add(
            &Vxlan::new("flannel.1", 1)
                .local(ip(node_ip))
                .dev("eth0")
                .port(8472)
                .learning(false)
                .mtu(underlay_mtu - 50),
        )
        .unwrap();
    h.addr()
        .add(
            "flannel.1",
            format!("10.244.{n}.0/32").parse::<IpNet>().unwrap(),
        )
        .unwrap();
    h.link().set("flannel.1").up().apply().unwrap();
    h.link().add(&Bridge::new("cni0")).unwrap();
    h.addr()
        .add("cni0", format!("10.244.{n}.1/24").parse::<IpNet>().unwrap())
        .unwrap();
    h.link().set("cni0").up().apply().unwrap();
    h.link()
        .add(&Veth::new("veth-pod").peer("eth0").peer_netns(&pod))
        .unwrap();
    h.link()
        .set("veth-pod")
        .master("cni0")
        .up()
        .apply()
        .unwrap();
    let hp = Handle::in_ns(&pod).unwrap();
    hp.addr()
        .add("eth0", format!("10.244.{n}.2/24").parse::<IpNet>().unwrap())
        .unwrap();
    hp.link().set("eth0").up().apply().unwrap();
    hp.route()
        .add(&Route::new("0.0.0.0/0".parse().unwrap()).via(ip(&format!("10.244.{n}.1"))))
        .unwrap();
    let vtep_mac = h.link().get("flannel.1").unwrap().mac.unwrap();
    Node {
        ns,
        pod,
        h,
        vtep_mac,
    }
}

/// What flannel programs on `local` for `peer` (subnet `n`, node IP `peer_ip`), pipelined.
fn program_peer(local: &Node, peer: &Node, n: u8, peer_ip: &str) {
    let mut b = local.h.batch();
    b.neigh()
        .replace(&Neighbour::new(
            ip(&format!("10.244.{n}.0")),
            peer.vtep_mac,
            "flannel.1",
        ))
        .unwrap();
    b.fdb()
        .replace(&FdbEntry::new(peer.vtep_mac, "flannel.1").dst(ip(peer_ip)))
        .unwrap();
    b.route()
        .replace(
            &Route::new(format!("10.244.{n}.0/24").parse().unwrap())
                .via(ip(&format!("10.244.{n}.0")))
                .dev("flannel.1")
                .onlink(),
        )
        .unwrap();
    b.execute().unwrap().into_result().unwrap();
}

#[test]
fn flannel_vxlan_backend_by_hand() {
    require_root!();
    let pair = podnet_testsupport::linked_pair("vx", "198.18.0.1/24", "198.18.0.2/24");
    let n1 = node(pair.a, 1, "198.18.0.1");
    let n2 = node(pair.b, 2, "198.18.0.2");
    program_peer(&n1, &n2, 2, "198.18.0.2");
    program_peer(&n2, &n1, 1, "198.18.0.1");

    assert!(
        n1.pod.ping("10.244.2.2", 3),
        "pod on node1 reaches pod on node2 over VXLAN"
    );
    assert!(n2.pod.ping("10.244.1.2", 3), "and back");

    // Read back as typed fields.
    let link = n1.h.link().get("flannel.1").unwrap();
    assert_eq!(link.kind, Some(LinkKind::Vxlan));
    assert_eq!(link.mtu, 1450);
    let v = link.vxlan.clone().unwrap();
    assert_eq!((v.vni, v.port, v.learning), (1, 8472, false));
    assert_eq!(v.local, Some(ip("198.18.0.1")));
    assert_eq!(link.vxlan_dev_name.as_deref(), Some("eth0"));

    // What flannel's documentation shows, from iproute2 and from our Display.
    let shown = n1.ns.exec("ip", &["-d", "link", "show", "flannel.1"]);
    assert!(
        shown.contains("vxlan id 1 local 198.18.0.1 dev eth0 srcport 0 0 dstport 8472 nolearning"),
        "{shown}"
    );
    let ours = link.to_string();
    assert!(
        ours.contains(
            "vxlan id 1 local 198.18.0.1 dev eth0 dstport 8472 nolearning ttl auto ageing 300"
        ),
        "{ours}"
    );
    let mac = n2.vtep_mac.to_string();
    let neigh = n1.ns.exec("ip", &["neigh", "show", "dev", "flannel.1"]);
    assert!(
        neigh.contains(&format!("10.244.2.0 lladdr {mac} PERMANENT")),
        "{neigh}"
    );
    let ours: Vec<_> =
        n1.h.neigh()
            .list(Some("flannel.1".into()))
            .unwrap()
            .into_iter()
            .filter(|n| n.ip.is_ipv4())
            .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(
        ours[0].to_string(),
        format!("10.244.2.0 dev flannel.1 lladdr {mac} PERMANENT")
    );
    let fdb = n1.ns.exec("bridge", &["fdb", "show", "dev", "flannel.1"]);
    assert!(
        fdb.contains(&format!("{mac} dst 198.18.0.2 self permanent")),
        "{fdb}"
    );
    let ours = n1.h.fdb().list(Some("flannel.1".into())).unwrap();
    assert!(
        ours.iter()
            .any(|e| e.to_string() == format!("{mac} dev flannel.1 dst 198.18.0.2 self permanent")),
        "{ours:?}"
    );
    let routes = n1.ns.exec("ip", &["route"]);
    assert!(
        routes.contains("10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"),
        "{routes}"
    );

    // Reprogramming is idempotent; removing the FDB entry breaks the path; restoring heals it.
    program_peer(&n1, &n2, 2, "198.18.0.2");
    let entry = FdbEntry::new(n2.vtep_mac, "flannel.1").dst(ip("198.18.0.2"));
    n1.h.fdb().del(&entry).unwrap();
    assert!(!n1.pod.ping("10.244.2.2", 1));
    n1.h.fdb().append(&entry).unwrap();
    assert!(n1.pod.ping("10.244.2.2", 2));
    n1.h.neigh()
        .del(&Neighbour::new(ip("10.244.2.0"), n2.vtep_mac, "flannel.1"))
        .unwrap();
    assert!(
        n1.h.neigh()
            .list(Some("flannel.1".into()))
            .unwrap()
            .iter()
            .all(|n| n.ip.is_ipv6())
    );
}

#[test]
fn fdb_head_end_replication_and_neighbour_states() {
    require_root!();
    let ns = TestNs::new("fdb");
    let h = Handle::in_ns(&ns).unwrap();
    h.link()
        .add(
            &Vxlan::new("vx0", 42)
                .port(4789)
                .learning(true)
                .local(ip("198.18.9.1")),
        )
        .unwrap();
    for dst in ["198.18.9.2", "198.18.9.3"] {
        h.fdb()
            .append(&FdbEntry::new(MacAddr::ZERO, "vx0").dst(ip(dst)))
            .unwrap();
    }
    h.fdb()
        .append(
            &FdbEntry::new("02:00:00:00:00:09".parse().unwrap(), "vx0")
                .dst(ip("198.18.9.4"))
                .vni(7)
                .port(8472),
        )
        .unwrap();
    let shown = ns.exec("bridge", &["fdb", "show", "dev", "vx0"]);
    for line in [
        "00:00:00:00:00:00 dst 198.18.9.2 self permanent",
        "00:00:00:00:00:00 dst 198.18.9.3 self permanent",
        "02:00:00:00:00:09 dst 198.18.9.4 port 8472 vni 7 self permanent",
    ] {
        assert!(shown.contains(line), "{line:?} not in {shown}");
    }
    let ours: Vec<String> = h
        .fdb()
        .list(Some("vx0".into()))
        .unwrap()
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert!(
        ours.contains(&"00:00:00:00:00:00 dev vx0 dst 198.18.9.3 self permanent".to_string()),
        "{ours:?}"
    );
    // Appending the same destination again changes nothing; add (exclusive) is refused.
    h.fdb()
        .append(&FdbEntry::new(MacAddr::ZERO, "vx0").dst(ip("198.18.9.2")))
        .unwrap();
    let zeros = h
        .fdb()
        .list(Some("vx0".into()))
        .unwrap()
        .into_iter()
        .filter(|e| e.mac == MacAddr::ZERO)
        .count();
    assert_eq!(zeros, 2);
    let dup = h
        .fdb()
        .add(&FdbEntry::new("02:00:00:00:00:09".parse().unwrap(), "vx0").dst(ip("198.18.9.4")));
    assert!(dup.unwrap_err().is_exists());

    // Neighbour states and proxy entries.
    h.link().add(&Bridge::new("br0")).unwrap();
    h.link().set("br0").up().apply().unwrap();
    let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
    h.neigh()
        .add(&Neighbour::new(ip("10.1.0.5"), mac, "br0").state(podnet_links::NeighState::Reachable))
        .unwrap();
    h.neigh()
        .replace(&Neighbour::new(ip("10.1.0.5"), mac, "br0").state(podnet_links::NeighState::Stale))
        .unwrap();
    h.neigh()
        .add(&Neighbour::new(ip("fd10::5"), mac, "br0").router())
        .unwrap();
    h.neigh()
        .add(&Neighbour::proxy(ip("10.1.0.99"), "br0"))
        .unwrap();
    let shown = ns.exec("ip", &["neigh", "show", "dev", "br0"]);
    assert!(
        shown.contains("10.1.0.5 lladdr 02:00:00:00:00:01 STALE"),
        "{shown}"
    );
    assert!(
        shown.contains("fd10::5 lladdr 02:00:00:00:00:01 router PERMANENT"),
        "{shown}"
    );
    let proxies = h.neigh().proxy().list(Some("br0".into())).unwrap();
    assert_eq!(proxies.len(), 1);
    assert_eq!(proxies[0].to_string(), "10.1.0.99 dev br0 proxy");
    assert!(
        ns.exec("ip", &["neigh", "show", "proxy"])
            .contains("10.1.0.99 dev br0 proxy")
    );
    assert!(
        h.neigh()
            .add(&Neighbour::new(ip("10.1.0.5"), mac, "br0"))
            .unwrap_err()
            .is_exists()
    );

    // A static entry in the bridge's own table: listed with `master`, and deletable as listed.
    h.link().add(&Veth::new("bp0").peer("bp1")).unwrap();
    h.link().set("bp0").master("br0").up().apply().unwrap();
    let static_mac: MacAddr = "02:00:00:00:00:42".parse().unwrap();
    h.fdb()
        .add(
            &FdbEntry::new(static_mac, "bp0")
                .in_master()
                .state(podnet_links::NeighState::Noarp),
        )
        .unwrap();
    let listed = h
        .fdb()
        .list(Some("bp0".into()))
        .unwrap()
        .into_iter()
        .find(|e| e.mac == static_mac)
        .expect("the static entry is listed");
    assert!(listed.master && !listed.own, "{listed:?}");
    assert!(
        ns.exec("bridge", &["fdb", "show", "dev", "bp0"])
            .contains("02:00:00:00:00:42 master br0 static")
    );
    h.fdb().del(&listed).unwrap();
    assert!(
        !ns.exec("bridge", &["fdb", "show", "dev", "bp0"])
            .contains("02:00:00:00:00:42")
    );
}

/// Turns an ICMP echo request (IPv4, no options) into its reply in place.
fn echo_reply(pkt: &mut [u8]) -> bool {
    if pkt.len() < 28 || pkt[0] != 0x45 || pkt[9] != 1 || pkt[20] != 8 {
        return false;
    }
    let (src, dst) = (pkt[12..16].to_vec(), pkt[16..20].to_vec());
    pkt[12..16].copy_from_slice(&dst);
    pkt[16..20].copy_from_slice(&src);
    pkt[20] = 0; // echo reply
    pkt[22] = 0;
    pkt[23] = 0;
    let c = checksum(&pkt[20..]);
    pkt[22..24].copy_from_slice(&c.to_be_bytes());
    pkt[10] = 0;
    pkt[11] = 0;
    let c = checksum(&pkt[..20]);
    pkt[10..12].copy_from_slice(&c.to_be_bytes());
    true
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn tun_answered_from_userspace() {
    require_root!();
    let ns = TestNs::new("tun");
    let h = Handle::in_ns(&ns).unwrap();
    let dev = h.link().add(&Tun::new("tun0")).unwrap();
    h.addr()
        .add("tun0", "10.250.0.1/24".parse::<IpNet>().unwrap())
        .unwrap();
    h.link().set("tun0").up().apply().unwrap();
    let mut queue = dev.into_queues().pop().unwrap();
    let responder = std::thread::spawn(move || {
        let mut answered = 0;
        let mut buf = vec![0u8; 2048];
        // Ends when the device is deleted (the read fails).
        while let Ok(n) = queue.read(&mut buf) {
            if echo_reply(&mut buf[..n]) {
                queue.write_all(&buf[..n]).unwrap();
                answered += 1;
            }
        }
        answered
    });
    let out = ns.output("ping", &["-c", "3", "-i", "0.2", "-W", "2", "10.250.0.2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    h.link().del("tun0").unwrap();
    assert!(responder.join().unwrap() >= 3);

    // Multi-queue, virtio-net header and offloads, read back.
    let dev = h
        .link()
        .add(
            &Tun::new("tun1")
                .queues(3)
                .vnet_hdr(true)
                .vnet_hdr_size(12)
                .offload(
                    Offload::CSUM | Offload::TSO4 | Offload::TSO6 | Offload::USO4 | Offload::USO6,
                ),
        )
        .unwrap();
    assert_eq!(dev.queues().len(), 3);
    let info = h.link().get("tun1").unwrap();
    assert_eq!(info.kind, Some(LinkKind::Tun));
    let t = info.tun.clone().unwrap();
    assert!(t.multi_queue && t.vnet_hdr && !t.packet_info && !t.tap && !t.persist);
    assert_eq!(t.queues, 3);
    assert!(
        info.to_string()
            .contains("tun type tun pi off vnet_hdr on persist off multi_queue numqueues 3"),
        "{info}"
    );
    let k = ns.exec("ethtool", &["-k", "tun1"]);
    for feature in [
        "tx-checksumming: on",
        "tcp-segmentation-offload: on",
        "tx-udp-segmentation: on",
    ] {
        assert!(k.contains(feature), "{feature} not in {k}");
    }
    drop(dev);
    assert!(
        h.link().get("tun1").unwrap_err().is_not_found(),
        "not persistent: gone with its files"
    );

    // Persistent TAP outlives its file.
    drop(h.link().add(&Tun::tap("tap0").persist(true)).unwrap());
    let tap = h.link().get("tap0").unwrap();
    assert!(tap.tun.unwrap().tap);
    h.link().del("tap0").unwrap();
}

#[test]
fn events_arrive_typed_and_in_order() {
    require_root!();
    let ns = TestNs::new("events");
    let h = Handle::in_ns(&ns).unwrap();
    let mut mon = Monitor::in_ns(&ns, &Group::ALL).unwrap();
    h.link().add(&Veth::new("ev0").peer("ev1")).unwrap();
    h.link().set("ev0").up().apply().unwrap();
    h.link().set("ev1").up().apply().unwrap();
    h.addr()
        .add("ev0", "10.9.0.1/24".parse::<IpNet>().unwrap())
        .unwrap();
    let r = Route::new("10.10.0.0/24".parse().unwrap()).via(ip("10.9.0.2"));
    h.route().add(&r).unwrap();
    h.route().del(&r).unwrap();
    h.addr().del("ev0", "10.9.0.1/24".parse().unwrap()).unwrap();
    h.link().del("ev0").unwrap();

    let mut seen = Vec::new();
    while let Some(ev) = mon.next_timeout(Some(Duration::from_millis(500))).unwrap() {
        let tag = match &ev {
            Event::NewLink(l) if l.name == "ev0" => "new link ev0",
            Event::NewAddress(a) if a.addr.to_string() == "10.9.0.1/24" => "new address",
            Event::NewRoute(r) if r.dst.to_string() == "10.10.0.0/24" => "new route",
            Event::DelRoute(r) if r.dst.to_string() == "10.10.0.0/24" => "del route",
            Event::DelAddress(a) if a.addr.to_string() == "10.9.0.1/24" => "del address",
            Event::DelLink(l) if l.name == "ev0" => "del link ev0",
            _ => continue,
        };
        seen.push(tag);
    }
    // In this order (a link also reports changes, e.g. going down before it is deleted).
    let expected = [
        "new link ev0",
        "new address",
        "new route",
        "del route",
        "del address",
        "del link ev0",
    ];
    let mut rest = seen.iter();
    for want in expected {
        assert!(
            rest.any(|s| *s == want),
            "{want:?} missing or out of order in {seen:?}"
        );
    }

    // A VXLAN device with l3miss (and proxy) reports the address it has no neighbour entry
    // for, when an ARP request crosses it: here a pod behind a bridge asks for 10.11.0.2.
    let pod = TestNs::new("events-pod");
    h.link()
        .add(
            &Vxlan::new("vx0", 5)
                .local(ip("198.18.5.1"))
                .learning(false)
                .proxy(true)
                .l3miss(true),
        )
        .unwrap();
    h.link().add(&Bridge::new("br-l3")).unwrap();
    h.link()
        .add(&Veth::new("vp0").peer("eth0").peer_netns(&pod))
        .unwrap();
    for dev in ["vx0", "vp0"] {
        h.link().set(dev).master("br-l3").up().apply().unwrap();
    }
    h.link().set("br-l3").up().apply().unwrap();
    let hp = Handle::in_ns(&pod).unwrap();
    hp.addr()
        .add("eth0", "10.11.0.5/24".parse::<IpNet>().unwrap())
        .unwrap();
    hp.link().set("eth0").up().apply().unwrap();
    let v = h.link().get("vx0").unwrap().vxlan.unwrap();
    assert!(v.l3miss && v.proxy);
    let _ = pod.output("ping", &["-c", "1", "-W", "1", "10.11.0.2"]);
    let mut missed = None;
    while let Some(ev) = mon.next_timeout(Some(Duration::from_millis(500))).unwrap() {
        if let Event::Miss(n) = ev {
            if n.ip == ip("10.11.0.2") {
                missed = Some(n);
                break;
            }
        }
    }
    let n = missed.expect("an l3miss event");
    assert_eq!(n.ip, ip("10.11.0.2"));
}

#[test]
fn dummy_refusal_is_reported_clearly() {
    require_root!();
    let ns = TestNs::new("dummy");
    let h = Handle::in_ns(&ns).unwrap();
    match h.link().add(&Dummy::new("dummy0")) {
        // Kernels with CONFIG_DUMMY (the IPVS virtual machine) create it.
        Ok(()) => assert_eq!(h.link().get("dummy0").unwrap().kind, Some(LinkKind::Dummy)),
        Err(Error::Kernel {
            name,
            errno,
            message,
            ..
        }) => {
            assert_eq!(name, "dummy0");
            assert_eq!(errno, 95, "EOPNOTSUPP");
            eprintln!("dummy refused as expected here: {message:?}");
            let e = h.link().add(&Dummy::new("dummy0")).unwrap_err();
            assert!(e.to_string().contains("link add dummy0"), "{e}");
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn bad_arguments_are_refused_before_the_kernel() {
    // No root: nothing reaches the kernel.
    let h = Handle::new().unwrap();
    match h.link().add(&Vxlan::new("vx0", 1 << 24)) {
        Err(Error::InvalidArgument { what, reason }) => {
            assert_eq!(what, "VNI");
            assert!(reason.contains("16777216"), "{reason}");
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert!(matches!(
        h.fdb()
            .add(&FdbEntry::new(MacAddr::ZERO, "lo").vni(1 << 24)),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        MacAddr::from_slice(&[1, 2, 3, 4, 5]),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        "02:00:00:00:00".parse::<MacAddr>(),
        Err(Error::InvalidArgument { .. })
    ));
    match h.link().add(&Tun::new("tun9").queues(0)) {
        Err(Error::InvalidArgument { reason, .. }) => assert!(reason.contains("queue count 0")),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert!(matches!(
        h.link().add(&Tun::new("sixteen-bytes-xx")),
        Err(Error::InvalidName { .. })
    ));
}

/// A wait of `Duration::MAX` means "until an event comes" and does not overflow the clock.
#[test]
fn the_longest_wait_for_an_event_works() {
    require_root!();
    let ns = TestNs::new("events-max");
    let mut mon = Monitor::in_ns(&ns, &[Group::Link]).unwrap();
    let h = Handle::in_ns(&ns).unwrap();
    let maker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        h.link().add(&Veth::new("mx0").peer("mx1")).unwrap();
    });
    let ev = mon.next_timeout(Some(Duration::MAX)).unwrap();
    assert!(ev.is_some(), "no event");
    maker.join().unwrap();
}
