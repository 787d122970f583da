//! What is known to be true of the ipvs-mode recording (`fixtures/explain/vxlan-ipvs.json`),
//! checked by `explain_vm.rs` on a recording fresh from the VM and by `explain_recorded.rs` on
//! the committed one: the walks it was recorded with, replayed without root.
#![allow(dead_code, unreachable_pub)]

use podnet_examples::explain::picture;
use podnet_examples::explain::{
    Choice, Outcome, Packet, Proto, Recording, Step, Topology, Walk, explain,
};
use std::net::Ipv4Addr;

/// The committed recording, relative to the package.
pub const FIXTURE: &str = "tests/fixtures/explain/vxlan-ipvs.json";

/// The ClusterIP with endpoints on both nodes, and the one without endpoints.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// A Service whose only endpoints would be on a node that does not exist.
pub const EMPTY_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 13);

fn tcp(dst: Ipv4Addr, port: u16) -> Packet {
    Packet::new(Proto::Tcp, dst).port(port)
}

fn walk(topo: &Topology, src: &str, packet: Packet, choice: Choice) -> Walk {
    let w = explain(topo, src, &packet, &choice).expect("explain");
    eprintln!("{w}");
    w
}

/// node1's NodePort address: the address of node1's IPVS service on port 30080.
pub fn node_port_addr(rec: &Recording) -> Ipv4Addr {
    let node1 = rec.namespaces.iter().find(|n| n.label == "node1").unwrap();
    node1
        .ipvs
        .iter()
        .filter_map(|s| s.addr)
        .find_map(|a| match a.ip() {
            std::net::IpAddr::V4(ip) if a.port() == 30080 && !ip.octets().starts_with(&[10]) => {
                Some(ip)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("node1 has no NodePort virtual service: {:?}", node1.ipvs))
}

/// The hook where node1's rules set kube-proxy's masquerade mark (through an ipset match),
/// and whether KUBE-POSTROUTING masqueraded after IPVS.
fn marked_then_masqueraded(w: &Walk) -> (&str, bool) {
    let marked = w
        .rules()
        .find(|(ns, r)| *ns == "node1" && r.jumps.iter().any(|j| j.to == "KUBE-MARK-MASQ"))
        .map_or("", |(_, r)| r.hook.as_str());
    let masq = w.rules().any(|(ns, r)| {
        ns == "node1"
            && r.hook == "POSTROUTING"
            && r.snat.is_some()
            && r.rules.iter().any(|l| l.contains("-A KUBE-POSTROUTING"))
    });
    (marked, masq)
}

/// The IPVS hop of `w`, in `ns`.
fn ipvs_hop<'w>(w: &'w Walk, ns: &str) -> &'w podnet_examples::explain::Hop {
    w.hops_of(Step::Ipvs)
        .find(|h| h.ns == ns)
        .unwrap_or_else(|| panic!("no IPVS hop in {ns}:\n{w}"))
}

/// Every check of the recording.
pub fn check(rec: &Recording) {
    // kube-proxy's ipvs mode: the ClusterIPs on kube-ipvs0, the virtual services with their
    // real servers.
    let node1 = rec.namespaces.iter().find(|n| n.label == "node1").unwrap();
    assert!(node1.links.iter().any(|l| l.name == "kube-ipvs0"));
    let echo = node1
        .ipvs
        .iter()
        .find(|s| s.addr.is_some_and(|a| a.to_string() == "10.96.0.10:80"))
        .expect("the echo Service's virtual service");
    assert_eq!(echo.scheduler, "rr");
    assert_eq!(echo.dests.len(), 4, "{echo:?}");
    let topo = Topology::recorded(rec.clone());
    let node2_pod = topo.resolve("node2-pod1").unwrap();
    let to_node2 = Choice::Prefer(vec![node2_pod.to_string()]);

    cluster_ip_across_nodes(rec, &topo, node2_pod, &to_node2);
    without_endpoints(&topo);
    node_port(rec, &topo, node2_pod, &to_node2);
    // The node's own traffic meets OUTPUT's nat chains (a source outside the pod network to a
    // ClusterIP: KUBE-CLUSTER-IP's masquerade mark), then IPVS at LOCAL_OUT, then
    // KUBE-POSTROUTING's masquerade.
    let w = walk(&topo, "node1", tcp(VIP, 80), to_node2.clone());
    let h = ipvs_hop(&w, "node1");
    assert_eq!(h.ipvs.as_ref().unwrap().hook, "LOCAL_OUT", "{w}");
    assert_eq!(marked_then_masqueraded(&w), ("OUTPUT", true), "{w}");
    assert!(w.delivered(), "{w}");
    // Pod to pod takes no IPVS.
    let w = walk(
        &topo,
        "node1-pod1",
        Packet::new(Proto::Icmp, node2_pod),
        Choice::First,
    );
    assert!(w.delivered(), "{w}");
    assert_eq!(w.hops_of(Step::Ipvs).count(), 0, "{w}");
}

/// ClusterIP from node1-pod1 to the pod on node2: the IPVS hop in node1 names the virtual
/// service, every real server and the rewrite; the packet crosses the VXLAN tunnel and is
/// delivered to the echo server; the picture draws the rewrite at that hop.
fn cluster_ip_across_nodes(rec: &Recording, topo: &Topology, node2_pod: Ipv4Addr, to: &Choice) {
    let w = walk(topo, "node1-pod1", tcp(VIP, 80), to.clone());
    let h = ipvs_hop(&w, "node1");
    let i = h.ipvs.as_ref().unwrap();
    assert_eq!(i.hook, "LOCAL_IN");
    assert_eq!(i.service, "TCP 10.96.0.10:80 rr");
    let spread = i.spread.as_ref().expect("real servers");
    assert_eq!(spread.alternatives.len(), 4, "{w}");
    assert!(
        spread
            .alternatives
            .iter()
            .all(|a| (a.probability - 0.25).abs() < 1e-9)
    );
    let real = format!("{node2_pod}:7777");
    assert_eq!(i.rewrite, Some(("10.96.0.10:80".into(), real.clone())));
    assert!(
        h.text
            .contains(&format!("destination 10.96.0.10:80 -> {real}")),
        "{}",
        h.text
    );
    // The route lookup before IPVS says local; the one after goes to the real server.
    let steps: Vec<(String, Step)> = w.hops.iter().map(|h| (h.ns.clone(), h.step)).collect();
    let at = steps
        .iter()
        .position(|(ns, s)| ns == "node1" && *s == Step::Ipvs)
        .unwrap();
    assert!(
        w.hops[..at].iter().any(|h| h.ns == "node1"
            && h.step == Step::Route
            && h.text.contains("local 10.96.0.10"))
    );
    assert!(
        w.hops[at..]
            .iter()
            .any(|h| h.ns == "node1" && h.step == Step::Vxlan)
    );
    match &w.outcome {
        Outcome::Delivered {
            ns, addr, listener, ..
        } => {
            assert_eq!(ns, "node2-pod1");
            assert_eq!(*addr, node2_pod);
            assert_eq!(*listener, Some(true), "{w}");
        }
        o => panic!("{o:?}\n{w}"),
    }
    assert!(w.to_string().contains("ipvs"), "{w}");
    // From a pod, to a ClusterIP: no masquerade mark, the pod's address arrives.
    assert_eq!(marked_then_masqueraded(&w), ("", false), "{w}");
    // The picture: the rewrite is noted at the IPVS hop's number.
    let n = w.hops.iter().position(|h| h.step == Step::Ipvs).unwrap() + 1;
    let svg = picture::svg(rec, Some(&w));
    let note = format!("{n}: IPVS 10.96.0.10:80 \u{2192} {real}");
    assert!(svg.contains(&note), "no {note:?} in the picture");
    let marker = format!("data-hop=\"{n}\" data-step=\"ipvs\" data-ns=\"node1\"");
    assert!(svg.contains(&marker), "hop {n} not drawn as IPVS in node1");
}

/// A Service without endpoints: IPVS has the virtual service with no real server; the walk
/// drops there and says what is missing.
fn without_endpoints(topo: &Topology) {
    let w = walk(topo, "node1-pod1", tcp(EMPTY_VIP, 80), Choice::First);
    let h = ipvs_hop(&w, "node1");
    assert!(h.ipvs.as_ref().unwrap().spread.is_none());
    assert_dropped(&w, "node1", "no real server", "endpoints");
}

/// Asserts that `w` ended dropped in `ns`, with a reason that contains `reason` and a missing
/// piece that contains `missing` (for every walk test, not only ipvs mode's).
pub fn assert_dropped(w: &Walk, ns: &str, reason: &str, missing: &str) {
    match &w.outcome {
        Outcome::Dropped {
            ns: at,
            reason: why,
            missing: what,
        } => {
            assert_eq!(at, ns, "{w}");
            assert!(why.contains(reason), "{why}");
            assert!(what.as_deref().unwrap_or("").contains(missing), "{what:?}");
        }
        o => panic!("{o:?}\n{w}"),
    }
}

/// NodePort from the fabric to node1: IPVS on node1 sends it to the pod on node2.
fn node_port(rec: &Recording, topo: &Topology, node2_pod: Ipv4Addr, to: &Choice) {
    let node1_ip = node_port_addr(rec);
    let w = walk(topo, "fabric", tcp(node1_ip, 30080), to.clone());
    let h = ipvs_hop(&w, "node1");
    assert_eq!(
        h.ipvs.as_ref().unwrap().rewrite,
        Some((format!("{node1_ip}:30080"), format!("{node2_pod}:7777")))
    );
    // KUBE-NODE-PORT-TCP's set match marks it in PREROUTING; KUBE-POSTROUTING masquerades.
    assert_eq!(marked_then_masqueraded(&w), ("PREROUTING", true), "{w}");
    assert_eq!(
        match &w.outcome {
            Outcome::Delivered { ns, .. } => ns.as_str(),
            o => panic!("{o:?}\n{w}"),
        },
        "node2-pod1"
    );
}
