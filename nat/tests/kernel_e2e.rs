//! Kernel end-to-end test: a client namespace, a node namespace that applies the compiled rules
//! with iptables-restore, and two endpoint namespaces running TCP and UDP echo servers.
//!
//! ```text
//!  client 198.18.0.1 ── eth0/eth0 ── 198.18.0.2 node ── vep1 10.244.1.1 ── 10.244.1.2 ep1
//!                                                  └── vep2 10.244.2.1 ── 10.244.2.2 ep2
//! ```

use podnet_nat::iptables::{Table, diff_tables};
use podnet_nat::kube::IpFamily;
use podnet_nat::kube_proxy::iptables_sync::IptablesSyncer;
use podnet_nat::kube_proxy::{LocalDetector, NodeSettings};
use podnet_testsupport::require_root;

mod e2e;

use e2e::*;

#[test]
fn services_over_iptables_in_namespaces() {
    require_root!();
    let pair = client_and_node("e2e");
    let (client, node) = (&pair.a, &pair.b);
    let ep1 = endpoint_ns(node, "e2e-ep1", 1);
    let ep2 = endpoint_ns(node, "e2e-ep2", 2);
    let _e1 = Echo::start(&ep1, "ep1", "10.244.1.2");
    let _e2 = Echo::start(&ep2, "ep2", "10.244.2.2");

    let mut settings = NodeSettings::new("node-1", IpFamily::V4);
    settings.node_ips = vec!["198.18.0.2".parse().unwrap()];
    settings.local_detector = LocalDetector::ClusterCidr("10.244.0.0/16".parse().unwrap());
    let mut syncer = IptablesSyncer::new(node.ns().clone(), settings);
    let report = syncer
        .sync(&state(&["10.244.1.2", "10.244.2.2"]))
        .expect("first sync");
    assert!(report.full);
    let nat = node.exec("iptables-save", &["-t", "nat"]);
    assert!(nat.contains("KUBE-SERVICES"), "{nat}");
    // What iptables-save reads back equals what was compiled, chain by chain.
    let wanted = podnet_nat::kube_proxy::iptables_mode::compile(
        &state(&["10.244.1.2", "10.244.2.2"]),
        syncer.settings(),
    )
    .full(&[]);
    for table in [Table::Filter, Table::Nat] {
        let live = syncer.read_back(table).expect("iptables-save parses");
        let diffs = diff_tables(wanted.table(table).unwrap(), &live[0]);
        assert!(diffs.is_empty(), "{table}: {diffs:#?}");
    }

    spread_and_affinity(client);

    // UDP: one socket is one flow, pinned to one endpoint by conntrack.
    let (udp, first) = udp_flow(client);
    // Remove the endpoint that serves this flow; the sync is partial and deletes its flows.
    let remaining = other_endpoint(&first);
    let report = syncer.sync(&state(&[remaining])).expect("second sync");
    assert!(!report.full, "{report:?}");
    assert!(report.conntrack_deleted >= 1, "{report:?}");
    let after = ask(&udp);
    assert_ne!(after, first, "UDP flow still goes to the removed endpoint");

    // TCP still works after the partial sync.
    let counts = spread(client, "10.96.0.10:80", 20);
    assert_eq!(counts.values().sum::<usize>(), 20);

    // A forced full sync keeps exactly one copy of each jump from the built-in chains.
    syncer.force_full_sync();
    let report = syncer.sync(&state(&[remaining])).expect("full resync");
    assert!(report.full);
    let input = node.exec("iptables", &["-S", "INPUT"]);
    assert_eq!(
        input.matches("-j KUBE-EXTERNAL-SERVICES").count(),
        1,
        "{input}"
    );
    assert_eq!(input.matches("-j KUBE-FIREWALL").count(), 1, "{input}");
    let pre = node.exec("iptables", &["-t", "nat", "-S", "PREROUTING"]);
    assert_eq!(pre.matches("-j KUBE-SERVICES").count(), 1, "{pre}");
    let counts = spread(client, "10.96.0.10:80", 20);
    assert_eq!(counts.values().sum::<usize>(), 20);
}
