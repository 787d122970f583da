//! Kernel end-to-end test of kube-proxy's nftables mode: the same traffic test as the
//! iptables mode (`kernel_e2e.rs`), with the node's rules written over netlink by
//! [`NftablesSyncer`]. A client namespace, a node namespace, and two endpoint namespaces with
//! TCP and UDP echo servers.
//!
//! ```text
//!  client 198.18.0.1 ── eth0/eth0 ── 198.18.0.2 node ── vep1 10.244.1.1 ── 10.244.1.2 ep1
//!                                                  └── vep2 10.244.2.1 ── 10.244.2.2 ep2
//! ```

use podnet_nat::kube::{IpFamily, ServiceKey};
use podnet_nat::kube_proxy::nftables_maps::NftLayout;
use podnet_nat::kube_proxy::nftables_mode::NftProxySettings;
use podnet_nat::kube_proxy::{LocalDetector, NodeSettings};
use podnet_nat::nftables::NftablesSyncer;
use podnet_testsupport::require_root;
use std::net::TcpStream;
use std::time::Duration;

mod e2e;

use e2e::*;

#[test]
fn services_over_nftables_in_namespaces() {
    require_root!();
    services_in_layout(NftLayout::KubeProxy, "nfte2e");
}

/// The same checks on the maps layout, whose endpoint changes are element updates only.
#[test]
fn services_over_nftables_maps_layout_in_namespaces() {
    require_root!();
    services_in_layout(NftLayout::Maps, "nfte2m");
}

fn services_in_layout(layout: NftLayout, tag: &str) {
    let pair = client_and_node(tag);
    let (client, node) = (&pair.a, &pair.b);
    // The node routes the service range (as a node with a default route would), so packets
    // for addresses no rule rewrote reach the forward hook.
    node.exec("ip", &["route", "add", "10.96.0.0/12", "dev", "eth0"]);
    // Such packets leave by the interface they came in on; an ICMP redirect would use up the
    // ICMP rate-limit token the reject's port-unreachable needs.
    node.sysctl_set("net.ipv4.conf.all.send_redirects", "0")
        .unwrap();
    node.sysctl_set("net.ipv4.conf.eth0.send_redirects", "0")
        .unwrap();
    let ep1 = endpoint_ns(node, &format!("{tag}-ep1"), 1);
    let ep2 = endpoint_ns(node, &format!("{tag}-ep2"), 2);
    let _e1 = Echo::start(&ep1, "ep1", "10.244.1.2");
    let _e2 = Echo::start(&ep2, "ep2", "10.244.2.2");

    let mut node_settings = NodeSettings::new("node-1", IpFamily::V4);
    node_settings.node_ips = vec!["198.18.0.2".parse().unwrap()];
    node_settings.local_detector = LocalDetector::ClusterCidr("10.244.0.0/16".parse().unwrap());
    let settings = NftProxySettings {
        node: node_settings,
        service_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
    };
    let mut syncer = NftablesSyncer::with_layout(node.ns().clone(), settings, layout);
    let report = syncer
        .sync(&state(&["10.244.1.2", "10.244.2.2"]))
        .expect("first sync");
    assert!(report.full, "{report:?}");
    match layout {
        NftLayout::KubeProxy => {
            let listed = node.exec("nft", &["list", "table", "ip", "kube-proxy"]);
            assert!(listed.contains("numgen random mod 2 vmap"), "{listed}");
        }
        NftLayout::Maps => {
            // The web Service's chain: its endpoints are a slot map, not chains. (nft 1.0.6
            // cannot print the affinity rules: their keys start with a constant.)
            let chain = node.exec("nft", &["list", "chains", "ip"]);
            let web = chain
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("chain service-") && l.contains("demo/web/"))
                .map(|l| l.trim_start_matches("chain ").trim_end_matches(" {"))
                .expect("the web Service's chain");
            let listed = node.exec("nft", &["list", "chain", "ip", "kube-proxy", web]);
            assert!(
                listed.contains("dnat ip to numgen random mod 8 offset")
                    && listed.contains("map @slots-0"),
                "{listed}"
            );
            assert!(!listed.contains("vmap"), "{listed}");
            let listed = node.exec("nft", &["list", "map", "ip", "kube-proxy", "slots-0"]);
            assert!(listed.contains("map slots-0"), "{listed}");
        }
    }
    // No iptables rules are involved.
    let nat = node.exec("iptables-save", &["-t", "nat"]);
    assert!(!nat.contains("KUBE-SERVICES"), "{nat}");

    // ClusterIP and NodePort spread over both endpoints; session affinity.
    spread_and_affinity(client);

    // Hairpin: an endpoint reaching its own Service, and sometimes itself, is masqueraded so
    // the replies come back through the node.
    let counts = spread(&ep1, "10.96.0.10:80", 40);
    assert_eq!(counts.values().sum::<usize>(), 40, "{counts:?}");
    assert!(
        counts.contains_key("ep1"),
        "no hairpin connection: {counts:?}"
    );

    // A port the ClusterIP does not serve is rejected, an unallocated ClusterIP dropped.
    let refused = client
        .run(|| {
            TcpStream::connect_timeout(&"10.96.0.10:81".parse().unwrap(), Duration::from_secs(2))
        })
        .unwrap();
    let err = refused.expect_err("port 81 of the web ClusterIP is not a service port");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    let dropped = client
        .run(|| {
            TcpStream::connect_timeout(
                &"10.96.0.99:80".parse().unwrap(),
                Duration::from_millis(300),
            )
        })
        .unwrap();
    let err = dropped.expect_err("10.96.0.99 is not allocated");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");

    // UDP: one socket is one flow, pinned to one endpoint by conntrack.
    let (udp, first) = udp_flow(client);
    // Remove the endpoint that serves this flow: an incremental sync of that Service only,
    // then conntrack cleanup moves the flow.
    let remaining = other_endpoint(&first);
    let report = syncer
        .sync_services(&state(&[remaining]), &[ServiceKey::new("demo", "dns")])
        .expect("incremental sync");
    assert!(!report.full, "{report:?}");
    match layout {
        NftLayout::KubeProxy => assert_eq!(report.services_written, 1, "{report:?}"),
        // Element updates only: no chain of the Service is written again.
        NftLayout::Maps => assert_eq!(report.services_written, 0, "{report:?}"),
    }
    assert!(report.conntrack_deleted >= 1, "{report:?}");
    let after = ask(&udp);
    assert_ne!(after, first, "UDP flow still goes to the removed endpoint");

    // TCP still works after the partial sync.
    let counts = spread(client, "10.96.0.10:80", 20);
    assert_eq!(counts.values().sum::<usize>(), 20);

    // A forced full sync rewrites everything in one batch and traffic keeps flowing.
    syncer.planner_mut().force_full();
    let report = syncer.sync(&state(&[remaining])).expect("full resync");
    assert!(report.full);
    let counts = spread(client, "198.18.0.2:30080", 20);
    assert_eq!(counts.values().sum::<usize>(), 20);
}
