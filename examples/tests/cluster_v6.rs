//! Dual-stack and IPv6-only flannel networks on the simulated cluster: flanneld with
//! `EnableIPv6` (vxlan's `flannel-v6.1` device, host-gw's IPv6 routes), pods with an address of
//! each family, ping6 and TCP between pods on different nodes, IPv6 masquerade to the outside,
//! kube mode with an IPv6 podCIDR and flannel's IPv6 Node annotations, and nothing left behind.

mod cluster_support;

use cluster_support::{options, up};
use podnet_examples::cluster::{self, Cluster, Families, run_checks};
use podnet_links::{Handle, MacAddr};
use podnet_netns::NetNs;
use podnet_testsupport::require_root;
use std::net::IpAddr;
use std::sync::atomic::AtomicBool;

fn v6_options(tag: &str, backend: &str, families: Families) -> cluster::Options {
    let mut o = options(tag, backend, 3, 2, false);
    o.families = families;
    o
}

/// A program's standard output inside `ns` (it must succeed).
fn exec(ns: &NetNs, program: &str, args: &[&str]) -> String {
    let out = ns.command(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every traffic check of the demo, for the families of `c`; `per_family` results each.
fn check_traffic(c: &Cluster, families: usize) {
    let report = run_checks(c, &AtomicBool::new(false));
    eprintln!("{report}");
    assert!(report.passed(), "failed checks:\n{report}");
    // 6 pods: 24 ordered pairs on different nodes, ping and TCP each, and 6 masquerade checks.
    assert_eq!(report.results.len(), families * (24 * 2 + 6), "{report}");
    let v6_pings = report
        .results
        .iter()
        .filter(|r| r.what.starts_with("ping6 "))
        .count();
    assert_eq!(v6_pings, 24, "{report}");
}

/// Tears the cluster down and checks that none of its namespaces is left.
fn down_and_check(c: cluster_support::Guard) {
    let prefix = c.opts.prefix.clone();
    drop(c);
    assert!(
        cluster::existing(&prefix).is_empty(),
        "left behind: {:?}",
        cluster::existing(&prefix)
    );
}

/// The pods' IPv6 addresses are in their node's IPv6 lease, which is in the IPv6 network.
fn check_addresses(c: &Cluster) {
    let network: ipnet::Ipv6Net = cluster::CLUSTER_NETWORK6.parse().unwrap();
    for n in &c.nodes {
        let s6 = n.subnet6.expect("IPv6 lease");
        assert!(network.contains(&s6) && s6.prefix_len() == 64, "{s6}");
        assert!(n.ip6.is_some());
    }
    for p in &c.pods {
        let node = &c.nodes[p.node - 1];
        let ip6 = p.ip6.expect("pod IPv6 address");
        assert!(
            node.subnet6.unwrap().contains(&ip6),
            "{ip6} outside its lease"
        );
    }
}

#[test]
fn vxlan_dual_stack_three_nodes() {
    require_root!();
    let c = up(v6_options("v6vx", "vxlan", Families::Dual));
    check_addresses(&c);
    for p in &c.pods {
        let node = &c.nodes[p.node - 1];
        assert!(node.subnet.unwrap().contains(&p.ip), "{} outside", p.ip);
    }
    // flannel-v6.1 over the node's IPv6 address, <lease>::/128 on it, and per peer the
    // neighbour <peer lease>:: -> its VTEP MAC, the FDB entry to its IPv6 address and the
    // onlink route.
    let n1 = &c.nodes[0];
    let h = Handle::in_ns(&n1.ns).unwrap();
    let dev = h.link().get("flannel-v6.1").unwrap();
    let vx = dev.vxlan.as_ref().expect("a VXLAN device");
    assert_eq!(vx.vni, 1);
    assert_eq!(vx.local, n1.ip6.map(IpAddr::V6));
    assert!(h.link().get("flannel.1").is_ok(), "the IPv4 device too");
    let own = n1.subnet6.unwrap();
    let addrs = h.addr().list(Some("flannel-v6.1".into())).unwrap();
    assert!(
        addrs
            .iter()
            .any(|a| a.addr.to_string() == format!("{}/128", own.network())),
        "{addrs:?}"
    );
    let routes = h.route().list().unwrap();
    let neighs = h.neigh().list(Some("flannel-v6.1".into())).unwrap();
    let fdb = h.fdb().list(Some("flannel-v6.1".into())).unwrap();
    for peer in &c.nodes[1..] {
        let s6 = peer.subnet6.unwrap();
        let gw = IpAddr::V6(s6.network());
        assert!(
            routes.iter().any(|r| r.dst == ipnet::IpNet::V6(s6)
                && r.gateway == Some(gw)
                && r.onlink
                && r.dev.as_ref().map(|d| d.to_string()).as_deref() == Some("flannel-v6.1")),
            "no route to {s6}: {routes:?}"
        );
        let n = neighs
            .iter()
            .find(|n| n.ip == gw)
            .unwrap_or_else(|| panic!("no neighbour {gw}: {neighs:?}"));
        let peer_mac: MacAddr = Handle::in_ns(&peer.ns)
            .unwrap()
            .link()
            .get("flannel-v6.1")
            .unwrap()
            .mac
            .unwrap();
        assert_eq!(n.mac, Some(peer_mac));
        assert!(
            fdb.iter()
                .any(|e| e.mac == peer_mac && e.dst == peer.ip6.map(IpAddr::V6)),
            "no FDB entry for {peer_mac} -> {:?}: {fdb:?}",
            peer.ip6
        );
    }
    // subnet.env has both families, and the IPv6 masquerade rules are flannel's in ip6tables.
    let env = std::fs::read_to_string(c.subnet_file(0)).unwrap();
    assert!(
        env.contains(&format!("FLANNEL_IPV6_SUBNET={}", own.network())),
        "{env}"
    );
    assert!(env.contains("FLANNEL_IPV6_NETWORK=fd10:244::/56"), "{env}");
    let save = exec(&n1.ns, "ip6tables-save", &["-t", "nat"]);
    assert!(
        save.contains(
            "-A FLANNEL-POSTRTG -s fd10:244::/56 ! -d ff00::/8 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully"
        ),
        "{save}"
    );
    check_traffic(&c, 2);
    down_and_check(c);
}

#[test]
fn host_gw_dual_stack_three_nodes() {
    require_root!();
    let c = up(v6_options("v6hg", "host-gw", Families::Dual));
    check_addresses(&c);
    let h = Handle::in_ns(&c.nodes[0].ns).unwrap();
    let routes = h.route().list().unwrap();
    for peer in &c.nodes[1..] {
        let s6 = ipnet::IpNet::V6(peer.subnet6.unwrap());
        assert!(
            routes
                .iter()
                .any(|r| r.dst == s6 && r.gateway == peer.ip6.map(IpAddr::V6)),
            "no route to {s6} via {:?}: {routes:?}",
            peer.ip6
        );
    }
    check_traffic(&c, 2);
    down_and_check(c);
}

#[test]
fn vxlan_ipv6_only_network() {
    require_root!();
    let c = up(v6_options("v6only", "vxlan", Families::V6));
    check_addresses(&c);
    for n in &c.nodes {
        assert_eq!(n.subnet, None, "an IPv6-only network has no IPv4 lease");
        let h = Handle::in_ns(&n.ns).unwrap();
        assert!(h.link().get("flannel.1").is_err(), "no IPv4 device");
        assert!(h.link().get("flannel-v6.1").is_ok());
    }
    for p in &c.pods {
        assert!(p.ip.is_unspecified(), "a pod with IPv4 {}", p.ip);
    }
    let env = std::fs::read_to_string(c.subnet_file(0)).unwrap();
    assert!(!env.contains("FLANNEL_SUBNET="), "{env}");
    assert!(env.contains("FLANNEL_IPV6_SUBNET="), "{env}");
    check_traffic(&c, 1);
    down_and_check(c);
}

#[test]
fn host_gw_ipv6_only_network() {
    require_root!();
    let c = up(v6_options("v6onlyhg", "host-gw", Families::V6));
    check_addresses(&c);
    check_traffic(&c, 1);
    down_and_check(c);
}

#[cfg(feature = "kube")]
/// One GET to the test API server from the fabric namespace: the JSON body.
fn api_get(c: &Cluster, path: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let req = format!("GET {path} HTTP/1.0\r\nHost: api\r\n\r\n");
    let text = c
        .fabric
        .run(move || {
            let mut s =
                std::net::TcpStream::connect((cluster::FABRIC_IP, cluster::KUBE_API_PORT)).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .unwrap();
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    serde_json::from_str(body).unwrap()
}

#[cfg(feature = "kube")]
#[test]
fn vxlan_dual_stack_in_kube_mode() {
    require_root!();
    let mut o = v6_options("v6kube", "vxlan", Families::Dual);
    o.kube = true;
    o.test_apiserver = std::path::PathBuf::from(env!("CARGO_BIN_EXE_podnet-test-apiserver"));
    let c = up(o);
    for (i, n) in c.nodes.iter().enumerate() {
        // The leases are the Nodes' podCIDRs of each family.
        assert_eq!(
            n.subnet6.map(|s| s.to_string()),
            Some(Cluster::kube_pod_cidr6(i + 1))
        );
        let node = api_get(&c, &format!("/api/v1/nodes/node{}", i + 1));
        let ann = &node["metadata"]["annotations"];
        assert_eq!(
            ann["flannel.alpha.coreos.com/public-ipv6"],
            n.ip6.unwrap().to_string()
        );
        assert_eq!(ann["flannel.alpha.coreos.com/public-ip"], n.ip.to_string());
        let v6: serde_json::Value = serde_json::from_str(
            ann["flannel.alpha.coreos.com/backend-v6-data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(v6["VNI"], 1);
        let mac = Handle::in_ns(&n.ns)
            .unwrap()
            .link()
            .get("flannel-v6.1")
            .unwrap()
            .mac
            .unwrap();
        assert_eq!(v6["VtepMAC"], mac.to_string());
    }
    check_traffic(&c, 2);
    down_and_check(c);
}

#[test]
fn udp_backend_refuses_ipv6() {
    // Refused before anything is built: no root needed.
    let o = v6_options("v6udp", "udp", Families::Dual);
    let e = Cluster::up(o, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("udp backend is IPv4-only"), "{e}");
}
