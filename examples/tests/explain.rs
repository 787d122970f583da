//! End-to-end tests of `explain` on the simulated cluster: the predicted hop list (namespaces,
//! devices, NAT decisions) for each kind of path, checked against what is known to be true of
//! the topology; the traced probe agreeing with it; and broken clusters explained at the
//! broken hop.
//!
//! Cluster namespaces are named `ptest-<pid>-<tag>-...` and torn down on drop.

mod cluster_support;
mod explain_ipvs;

use cluster_support::Guard;
use podnet_examples::cluster::{Cluster, EchoServer};
use podnet_examples::explain::{
    Choice, Outcome, Packet, ProbeReport, Proto, Spread, Step, Topology, Walk, explain, probe,
};
use podnet_testsupport::require_root;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// The Services of the recordings: one with endpoints on both nodes, one without.
const SERVICES: &str = include_str!("fixtures/explain/services.yaml");

fn up(tag: &str, backend: &str, services: bool) -> Guard {
    up_with(tag, backend, services, "iptables")
}

fn up_with(tag: &str, backend: &str, services: bool, proxy_mode: &str) -> Guard {
    let mut o = cluster_support::options(tag, backend, 2, 2, false);
    o.kube_proxy = PathBuf::from(env!("CARGO_BIN_EXE_kube-proxy"));
    o.proxy_mode = proxy_mode.into();
    if services {
        let file = std::env::temp_dir().join(format!("{}-services.yaml", o.prefix));
        std::fs::write(&file, SERVICES).unwrap();
        o.services = Some(file);
    }
    cluster_support::up(o)
}

/// An echo server on port 7777 in every pod, answering with the pod's label.
fn echo_servers(c: &Cluster) -> Vec<EchoServer> {
    c.pods
        .iter()
        .map(|p| EchoServer::start_named(&p.ns, 7777, &p.label()).unwrap())
        .collect()
}

fn topology(c: &Cluster) -> Topology {
    Topology::cluster(&c.opts.prefix).expect("topology")
}

fn walk(topo: &Topology, src: &str, packet: Packet) -> Walk {
    let w = explain(topo, src, &packet, &Choice::First).expect("explain");
    eprintln!("{w}");
    w
}

/// Sends the traced probe and checks the trace agrees with the prediction; returns the walk
/// (along the endpoint the kernel picked) and the report.
fn probed(topo: &Topology, src: &str, packet: Packet) -> (Walk, ProbeReport) {
    let (w, r) = probe(topo, src, &packet, &Choice::First).expect("probe");
    eprintln!("{w}{r}");
    assert!(r.agrees(), "the trace disagrees:\n{w}{r}");
    // Every namespace of the walk was seen by the trace.
    for ns in w.namespaces() {
        assert!(r.traced.iter().any(|t| t.ns == ns), "{ns} not traced:\n{r}");
    }
    (w, r)
}

fn ping(dst: Ipv4Addr) -> Packet {
    Packet::new(Proto::Icmp, dst)
}

fn tcp(dst: Ipv4Addr, port: u16) -> Packet {
    Packet::new(Proto::Tcp, dst).port(port)
}

/// The namespace of the pod with this address.
fn pod_label(c: &Cluster, ip: Ipv4Addr) -> String {
    c.pods
        .iter()
        .find(|p| p.ip == ip)
        .map(|p| p.label())
        .unwrap_or_default()
}

/// The devices a walk crosses by veth, as `ns:dev>ns:dev`.
fn crossings(w: &Walk) -> Vec<String> {
    w.crossings()
        .iter()
        .map(|(a, b, c, d)| format!("{a}:{b}>{c}:{d}"))
        .collect()
}

/// A pod-to-pod walk: through `nodes` (the fabric aside), delivered to `to`, leaving `from` by
/// its eth0 and entering `to` by its eth0.
fn assert_pod_to_pod(w: &Walk, from: &str, to: &str, nodes: &[&str]) {
    let mut expected = vec![from];
    expected.extend_from_slice(nodes);
    expected.push(to);
    let visited: Vec<&str> = w
        .namespaces()
        .into_iter()
        .filter(|n| *n != "fabric")
        .collect();
    let mut dedup = visited.clone();
    dedup.dedup();
    assert_eq!(dedup, expected, "{w}");
    assert!(w.delivered(), "{w}");
    match &w.outcome {
        Outcome::Delivered { ns, .. } => assert_eq!(ns, to),
        o => panic!("{o:?}"),
    }
    // The pod leaves by its eth0 into its node, and the destination pod is entered by eth0.
    let x = crossings(w);
    assert!(
        x.first().unwrap().starts_with(&format!("{from}:eth0>")),
        "{x:?}"
    );
    assert!(x.last().unwrap().ends_with(&format!("{to}:eth0")), "{x:?}");
}

#[test]
fn vxlan_cluster_paths() {
    require_root!();
    let c = up("xv", "vxlan", true);
    let _servers = echo_servers(&c);
    let topo = topology(&c);
    let (p11, p12, p21) = (&c.pods[0], &c.pods[1], &c.pods[2]);
    assert_eq!((p11.node, p12.node, p21.node), (1, 1, 2));
    let spread = pod_and_service_paths(&c, &topo);
    endpoints_outside_and_unreachable(&c, &topo, &spread);
    traces_agree(&c, &topo);
    unknown_unicast_is_flooded(&c, &topo);
}

/// Pod to pod on one node and across, and a ClusterIP, predicted.
fn pod_and_service_paths(c: &Cluster, topo: &Topology) -> Spread {
    let (p12, p21) = (&c.pods[1], &c.pods[2]);
    // Pod to pod on one node: over the bridge only, never routed by the node.
    let w = walk(topo, "node1-pod1", ping(p12.ip));
    assert_eq!(w.namespaces(), ["node1-pod1", "node1", "node1-pod2"], "{w}");
    assert_pod_to_pod(&w, "node1-pod1", "node1-pod2", &["node1"]);
    assert!(w.hops_of(Step::Route).all(|h| h.ns != "node1"), "{w}");
    let bridge: Vec<_> = w.hops_of(Step::Bridge).collect();
    assert_eq!(bridge.len(), 1, "{w}");
    assert_eq!(bridge[0].dev.as_deref(), Some("cni0"));
    assert!(w.hops_of(Step::Vxlan).next().is_none());

    // Pod to pod across nodes: cni0 -> flannel.1 -> VXLAN over eth0 and the fabric -> node2.
    let w = walk(topo, "node1-pod1", ping(p21.ip));
    assert_pod_to_pod(&w, "node1-pod1", "node2-pod1", &["node1", "node2"]);
    assert_eq!(
        w.namespaces(),
        ["node1-pod1", "node1", "fabric", "node2", "node2-pod1"],
        "{w}"
    );
    let route_node1 = w
        .hops_of(Step::Route)
        .find(|h| h.ns == "node1" && h.inner)
        .unwrap();
    assert_eq!(route_node1.dev.as_deref(), Some("cni0"));
    let node2_subnet = c.nodes[1].subnet.unwrap();
    assert!(
        route_node1.text.contains(&format!(
            "{node2_subnet} via {} dev flannel.1 onlink",
            node2_subnet.network()
        )),
        "{}",
        route_node1.text
    );
    let vx: Vec<_> = w.hops_of(Step::Vxlan).collect();
    assert_eq!(vx.len(), 1);
    assert_eq!(vx[0].ns, "node1");
    assert!(
        vx[0]
            .text
            .contains("udp 198.18.0.1 -> 198.18.0.2:8472, VNI 1"),
        "{}",
        vx[0].text
    );
    let decap: Vec<_> = w.hops_of(Step::Decap).collect();
    assert_eq!(decap.len(), 1);
    assert_eq!(
        (decap[0].ns.as_str(), decap[0].dev.as_deref()),
        ("node2", Some("flannel.1"))
    );
    let x = crossings(&w);
    assert!(x.contains(&"node1:eth0>fabric:n1".to_string()), "{x:?}");
    assert!(x.contains(&"fabric:n2>node2:eth0".to_string()), "{x:?}");
    // No NAT between pods.
    assert!(w.rules().all(|(_, r)| r.dnat.is_none() && r.snat.is_none()));

    // A ClusterIP: DNAT in node1's PREROUTING to one of the four endpoints, each 25%.
    let w = walk(topo, "node1-pod1", tcp([10, 96, 0, 10].into(), 80));
    let (ns, r) = w.rules().next().expect("a rules hop");
    assert_eq!((ns, r.hook.as_str()), ("node1", "PREROUTING"));
    let chains: Vec<&str> = r.jumps.iter().map(|j| j.to.as_str()).collect();
    assert_eq!(chains[0], "KUBE-SERVICES");
    assert!(chains[1].starts_with("KUBE-SVC-"), "{chains:?}");
    assert!(chains[2].starts_with("KUBE-SEP-"), "{chains:?}");
    let spread = &r.spreads[0];
    assert_eq!(spread.alternatives.len(), 4);
    for a in &spread.alternatives {
        assert!((a.probability - 0.25).abs() < 1e-6, "{a:?}");
        assert_eq!(a.dnat.unwrap().port(), 7777);
    }
    let (from, to) = r.dnat.clone().unwrap();
    assert_eq!(from, "10.96.0.10:80");
    let target: std::net::SocketAddr = to.parse().unwrap();
    assert_eq!(Some(target), spread.alternatives[0].dnat);
    let Outcome::Delivered {
        ns, addr, listener, ..
    } = &w.outcome
    else {
        panic!("{w}")
    };
    assert_eq!(std::net::IpAddr::V4(*addr), target.ip());
    assert_eq!(ns, &pod_label(c, *addr));
    assert_eq!(*listener, Some(true), "the echo server listens on 7777");
    spread.clone()
}

/// Every endpoint of a spread, the outside address and an unreachable one, predicted.
fn endpoints_outside_and_unreachable(c: &Cluster, topo: &Topology, spread: &Spread) {
    let (p11, p12) = (&c.pods[0], &c.pods[1]);
    // Every endpoint can be followed on request.
    for a in &spread.alternatives {
        let d = a.dnat.unwrap();
        let w = explain(
            topo,
            "node1-pod1",
            &tcp([10, 96, 0, 10].into(), 80),
            &Choice::Prefer(vec![d.to_string()]),
        )
        .unwrap();
        match &w.outcome {
            Outcome::Delivered { addr, port, .. } => {
                assert_eq!((std::net::IpAddr::V4(*addr), *port), (d.ip(), Some(7777)))
            }
            o => panic!("{o:?}"),
        }
    }

    // An endpoint on the client's own bridge: br_netfilter bridges the DNATed frame back out of
    // cni0 (no routing), to node1-pod2.
    let w = explain(
        topo,
        "node1-pod1",
        &tcp([10, 96, 0, 10].into(), 80),
        &Choice::Prefer(vec![p12.ip.to_string()]),
    )
    .unwrap();
    eprintln!("{w}");
    assert_eq!(w.namespaces(), ["node1-pod1", "node1", "node1-pod2"], "{w}");
    assert!(
        w.hops_of(Step::Bridge)
            .any(|h| h.text.contains("br_netfilter bridges the DNATed frame")),
        "{w}"
    );
    assert!(
        w.checkpoints
            .iter()
            .any(|c| c.ns == "node1" && c.family == "bridge" && c.hook == "fwd"),
        "{w}"
    );

    // The outside address: masqueraded to node1's address in POSTROUTING, delivered in the
    // fabric.
    let w = walk(
        topo,
        "node1-pod1",
        ping(podnet_examples::cluster::OUTSIDE_IP),
    );
    assert_eq!(w.namespaces(), ["node1-pod1", "node1", "fabric"], "{w}");
    let (ns, r) = w.rules().find(|(_, r)| r.snat.is_some()).expect("SNAT");
    assert_eq!((ns, r.hook.as_str()), ("node1", "POSTROUTING"));
    assert_eq!(
        r.snat,
        Some((p11.ip.to_string(), c.nodes[0].ip.to_string()))
    );
    assert!(
        r.jumps.iter().any(|j| j.to == "FLANNEL-POSTRTG"),
        "{:?}",
        r.jumps
    );
    assert!(r.rules.iter().any(|l| l.contains("MASQUERADE")), "{r:?}");
    assert!(matches!(&w.outcome, Outcome::Delivered { ns, .. } if ns == "fabric"));

    // An unreachable destination: out of node1 (masqueraded), dropped by the fabric, which has
    // no route for it.
    let w = walk(topo, "node1-pod1", ping([198, 19, 99, 99].into()));
    match &w.outcome {
        Outcome::Dropped {
            ns,
            reason,
            missing,
        } => {
            assert_eq!(ns, "fabric");
            assert!(reason.contains("No route to host"), "{reason}");
            assert_eq!(
                missing.as_deref(),
                Some("a route to 198.19.99.99 in fabric")
            );
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(w.hops.last().unwrap().step, Step::Drop);
}

/// The kernel's trace agrees with every prediction.
fn traces_agree(c: &Cluster, topo: &Topology) {
    let (p12, p21) = (&c.pods[1], &c.pods[2]);
    // The kernel's trace agrees with every prediction above.
    probed(topo, "node1-pod1", ping(p12.ip));
    let (w, r) = probed(topo, "node1-pod1", ping(p21.ip));
    assert!(w.delivered());
    // The trace saw both the probe and its VXLAN outer packet in node1.
    let node1 = r.traced.iter().find(|t| t.ns == "node1").unwrap();
    assert!(
        node1
            .checkpoints
            .iter()
            .any(|c| c.inner && c.dev == "cni0>flannel.1")
    );
    assert!(
        node1
            .checkpoints
            .iter()
            .any(|c| !c.inner && c.dev == "eth0")
    );
    let (w, r) = probed(topo, "node1-pod1", tcp([10, 96, 0, 10].into(), 80));
    assert!(r.sent.ends_with("connected"), "{}", r.sent);
    let sep = w
        .rules()
        .flat_map(|(_, r)| r.jumps.iter())
        .find(|j| j.to.starts_with("KUBE-SEP-"))
        .unwrap()
        .to
        .clone();
    assert!(
        r.traced
            .iter()
            .any(|t| t.ns == "node1" && t.jumps.iter().any(|j| j.to == sep)),
        "the kernel's choice {sep} is the one walked"
    );
    assert!(matches!(
        w.outcome,
        Outcome::Delivered {
            listener: Some(true),
            ..
        }
    ));
    // Whichever endpoint the kernel picks (on node2, the other pod of node1 or the client
    // itself), the trace agrees with the walk along it.
    for _ in 0..6 {
        let (w, _) = probed(topo, "node1-pod1", tcp([10, 96, 0, 10].into(), 80));
        assert!(w.delivered());
    }
    let (w, _) = probed(
        topo,
        "node1-pod1",
        ping(podnet_examples::cluster::OUTSIDE_IP),
    );
    assert!(w.delivered());
    let (w, r) = probed(topo, "node1-pod1", ping([198, 19, 99, 99].into()));
    assert!(!w.delivered());
    let fabric = r.traced.iter().find(|t| t.ns == "fabric").unwrap();
    assert!(
        !fabric
            .checkpoints
            .iter()
            .any(|c| c.hook == "in" && c.family == "inet"),
        "never delivered in the fabric: {r}"
    );
}

/// A bridge floods a frame whose MAC it has not learnt.
fn unknown_unicast_is_flooded(c: &Cluster, topo: &Topology) {
    let (p11, p21) = (&c.pods[0], &c.pods[2]);
    // A bridge without an FDB entry for the destination floods the frame to all its ports
    // (node2's neighbour entry for the pod stays, so no ARP reply teaches the bridge first).
    // The pod's own frames (IPv6 link-local chatter) can teach the bridge again between the
    // prediction and the probe, so this is tried a few times.
    let mac = podnet_links::Handle::in_ns(&p21.ns)
        .unwrap()
        .link()
        .get("eth0")
        .unwrap()
        .mac
        .unwrap();
    let h2 = podnet_links::Handle::in_ns(&c.nodes[1].ns).unwrap();
    let mut last = String::new();
    let flooded = (0..5).any(|_| {
        assert!(podnet_examples::cluster::traffic::ping(&p11.ns, p21.ip.into()).is_some());
        let Some(learnt) = h2
            .fdb()
            .list(None)
            .unwrap()
            .into_iter()
            .find(|e| e.mac == mac && e.master_index.is_some())
        else {
            return false;
        };
        h2.fdb()
            .del(&podnet_links::FdbEntry::new(mac, learnt.dev.clone()).in_master())
            .unwrap();
        let (w, r) = probe(topo, "node1-pod1", &ping(p21.ip), &Choice::First).unwrap();
        last = format!("{w}{r}");
        let predicted = w
            .hops_of(Step::Bridge)
            .any(|h| h.ns == "node2" && h.text.contains("flooded"));
        let copies = r.traced.iter().find(|t| t.ns == "node2").map_or(0, |t| {
            t.checkpoints
                .iter()
                .filter(|c| c.family == "bridge" && c.hook == "out")
                .count()
        });
        predicted && copies == 2 && r.agrees()
    });
    assert!(
        flooded,
        "a flood predicted and traced, one copy per port:\n{last}"
    );
}

#[test]
fn host_gw_across_nodes() {
    require_root!();
    let c = up("xh", "host-gw", false);
    let topo = topology(&c);
    let p21 = &c.pods[2];
    assert_eq!(p21.node, 2);
    let w = walk(&topo, "node1-pod1", ping(p21.ip));
    assert_pod_to_pod(&w, "node1-pod1", "node2-pod1", &["node1", "node2"]);
    assert_eq!(
        w.namespaces(),
        ["node1-pod1", "node1", "fabric", "node2", "node2-pod1"],
        "{w}"
    );
    // Routed straight to node2's underlay address: no tunnel, no encapsulation.
    let r = w.hops_of(Step::Route).find(|h| h.ns == "node1").unwrap();
    let subnet = c.nodes[1].subnet.unwrap();
    assert!(
        r.text
            .ends_with(&format!("{subnet} via {} dev eth0", c.nodes[1].ip)),
        "{}",
        r.text
    );
    assert!(w.hops.iter().all(|h| h.inner), "{w}");
    assert!(
        w.hops_of(Step::Vxlan)
            .chain(w.hops_of(Step::Tunnel))
            .chain(w.hops_of(Step::Decap))
            .next()
            .is_none()
    );
    let x = crossings(&w);
    assert_eq!(
        x[1..3],
        [
            "node1:eth0>fabric:n1".to_string(),
            "fabric:n2>node2:eth0".to_string()
        ]
    );
    probed(&topo, "node1-pod1", ping(p21.ip));
}

#[test]
fn udp_across_nodes() {
    require_root!();
    let c = up("xu", "udp", false);
    let topo = topology(&c);
    let p21 = &c.pods[2];
    let w = walk(&topo, "node1-pod1", ping(p21.ip));
    assert_pod_to_pod(&w, "node1-pod1", "node2-pod1", &["node1", "node2"]);
    let r = w
        .hops_of(Step::Route)
        .find(|h| h.ns == "node1" && h.inner)
        .unwrap();
    let subnet = c.nodes[1].subnet.unwrap();
    assert!(
        r.text.ends_with(&format!("{subnet} dev flannel0")),
        "{}",
        r.text
    );
    let t: Vec<_> = w.hops_of(Step::Tunnel).collect();
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].ns.as_str(), t[0].dev.as_deref()),
        ("node1", Some("flannel0"))
    );
    assert!(t[0].text.contains("198.18.0.2:8285"), "{}", t[0].text);
    let d: Vec<_> = w.hops_of(Step::Decap).collect();
    assert_eq!(
        (d[0].ns.as_str(), d[0].dev.as_deref()),
        ("node2", Some("flannel0"))
    );
    // The outer packet crosses the fabric; the pod's packet never does.
    assert!(w.hops.iter().filter(|h| h.ns == "fabric").all(|h| !h.inner));
    let (_, r) = probed(&topo, "node1-pod1", ping(p21.ip));
    let node2 = r.traced.iter().find(|t| t.ns == "node2").unwrap();
    assert!(
        node2
            .checkpoints
            .iter()
            .any(|c| c.inner && c.hook == "pre" && c.dev == "flannel0")
    );
}

#[test]
fn broken_cluster_is_explained_at_the_broken_hop() {
    require_root!();
    let mut c = up("xb", "vxlan", true);
    let topo = topology(&c);
    let p21 = c.pods[2].clone();

    // A Service without endpoints: kube-proxy's REJECT in node1's filter table.
    let w = walk(&topo, "node1-pod1", tcp([10, 96, 0, 13].into(), 80));
    let missing = "endpoints for Service demo/empty:tcp";
    let reason = "REJECT by iptables (filter KUBE-SERVICES)";
    explain_ipvs::assert_dropped(&w, "node1", reason, missing);
    let (_, r) = w.rules().last().unwrap();
    assert_eq!((r.hook.as_str(), r.verdict.as_str()), ("FORWARD", "reject"));
    let (_, r) = probed(&topo, "node1-pod1", tcp([10, 96, 0, 13].into(), 80));
    assert!(
        r.sent.contains("refused") || r.sent.contains("unreachable"),
        "{}",
        r.sent
    );
    assert!(
        r.traced.iter().all(|t| t.ns.starts_with("node1")),
        "the probe never leaves node1: {r}"
    );

    // Stop node1's flanneld, so that nothing repairs what we break.
    let mut agent = c.nodes[0].flanneld.take().unwrap();
    agent.kill().unwrap();
    agent.wait().unwrap();
    let h1 = podnet_links::Handle::in_ns(&c.nodes[0].ns).unwrap();
    let h2 = podnet_links::Handle::in_ns(&c.nodes[1].ns).unwrap();
    let vtep2 = h2.link().get("flannel.1").unwrap().mac.unwrap();

    // A deleted FDB entry: node1's flannel.1 does not know where node2's VTEP is.
    let entry = h1
        .fdb()
        .list(Some("flannel.1".into()))
        .unwrap()
        .into_iter()
        .find(|e| e.mac == vtep2)
        .expect("node2's VTEP in node1's FDB");
    h1.fdb().del(&entry).unwrap();
    let topo = topology(&c);
    let w = walk(&topo, "node1-pod1", ping(p21.ip));
    match &w.outcome {
        Outcome::Dropped {
            ns,
            reason,
            missing,
        } => {
            assert_eq!(ns, "node1");
            assert!(
                reason.contains(&format!("flannel.1 has no FDB entry for {vtep2}")),
                "{reason}"
            );
            assert_eq!(
                missing.as_deref(),
                Some(
                    format!(
                        "the FDB entry `{vtep2} dev flannel.1 dst 198.18.0.2` (node2's VTEP) in node1"
                    )
                    .as_str()
                )
            );
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(w.namespaces(), ["node1-pod1", "node1"]);
    let last = w.hops.last().unwrap();
    assert_eq!(
        (last.step, last.dev.as_deref()),
        (Step::Drop, Some("flannel.1"))
    );
    let (_, r) = probed(&topo, "node1-pod1", ping(p21.ip));
    assert!(r.sent.ends_with("no answer"), "{}", r.sent);

    // A missing route: node1 sends node2's pods to its default route, the fabric drops them.
    let subnet = c.nodes[1].subnet.unwrap();
    let route = h1
        .route()
        .list()
        .unwrap()
        .into_iter()
        .find(|r| r.dst == ipnet::IpNet::V4(subnet))
        .expect("node1's route to node2's pods");
    h1.route().del(&route).unwrap();
    let topo = topology(&c);
    let w = walk(&topo, "node1-pod1", ping(p21.ip));
    match &w.outcome {
        Outcome::Dropped { ns, missing, .. } => {
            assert_eq!(ns, "fabric");
            let m = missing.as_deref().unwrap_or("");
            assert!(
                m.starts_with(&format!(
                    "a route in node1 for {} (an address of node2-pod1): it has none, so its default route via 198.18.0.254 dev eth0 took the packet",
                    p21.ip
                )),
                "{m}"
            );
        }
        o => panic!("{o:?}"),
    }
    let r = w.hops_of(Step::Route).find(|h| h.ns == "node1").unwrap();
    assert!(
        r.text.ends_with("default via 198.18.0.254 dev eth0"),
        "{}",
        r.text
    );
    probed(&topo, "node1-pod1", ping(p21.ip));
    let _ = &mut c;
}

#[test]
fn nftables_mode_services() {
    require_root!();
    let c = up_with("xn", "vxlan", true, "nftables");
    let _servers = echo_servers(&c);
    let topo = topology(&c);

    // kube-proxy's table `ip kube-proxy`: a verdict map to the Service's chain, then
    // `numgen random mod 4` over the endpoint chains, each with its `dnat to`.
    let w = walk(&topo, "node1-pod1", tcp([10, 96, 0, 10].into(), 80));
    assert!(w.caveats.is_empty(), "{w}");
    let (ns, r) = w.rules().find(|(_, r)| r.dnat.is_some()).expect("DNAT");
    assert_eq!((ns, r.hook.as_str()), ("node1", "PREROUTING"));
    let kp: Vec<&str> = r
        .jumps
        .iter()
        .filter(|j| j.table == "kube-proxy")
        .map(|j| j.to.as_str())
        .collect();
    assert!(kp.contains(&"services"), "{kp:?}");
    assert!(kp.iter().any(|c| c.starts_with("service-")), "{kp:?}");
    assert!(kp.iter().any(|c| c.starts_with("endpoint-")), "{kp:?}");
    let spread = &r.spreads[0];
    assert_eq!(spread.alternatives.len(), 4);
    for a in &spread.alternatives {
        assert!((a.probability - 0.25).abs() < 1e-9, "{a:?}");
        assert_eq!(a.dnat.unwrap().port(), 7777);
    }
    assert!(matches!(
        w.outcome,
        Outcome::Delivered {
            listener: Some(true),
            ..
        }
    ));
    for _ in 0..6 {
        let (w, r) = probed(&topo, "node1-pod1", tcp([10, 96, 0, 10].into(), 80));
        assert!(w.delivered());
        assert!(r.sent.ends_with("connected"), "{}", r.sent);
    }

    // A Service without endpoints: rejected by kube-proxy's filter-forward, which names it.
    let w = walk(&topo, "node1-pod1", tcp([10, 96, 0, 13].into(), 80));
    let missing = "endpoints for Service demo/empty:tcp";
    let reason = "REJECT by nftables (kube-proxy reject-chain)";
    explain_ipvs::assert_dropped(&w, "node1", reason, missing);
    probed(&topo, "node1-pod1", tcp([10, 96, 0, 13].into(), 80));
}
