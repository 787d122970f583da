//! `explain` and its pictures driven from recorded snapshots of the simulated cluster, without
//! root: the recordings under `tests/fixtures/explain/` were made from live clusters by
//! `tests/fixtures/explain/record.sh` (`podnet-cluster explain --record`), one per backend,
//! proxy mode and breakage; `vxlan-ipvs.json` (kube-proxy's ipvs mode) by `tests/explain_vm.rs`
//! in a VM whose kernel has IPVS. The walks replayed here are the ones recorded; the assertions are
//! what is known to be true of the topology (the same as `tests/explain.rs` checks live).

mod explain_ipvs;

use podnet_examples::explain::picture;
use podnet_examples::explain::{
    Choice, Outcome, Packet, Proto, Recording, Step, Topology, Walk, explain,
};
use std::net::Ipv4Addr;
use std::path::PathBuf;

fn fixture(name: &str) -> Topology {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/explain")
        .join(format!("{name}.json"));
    Topology::recorded(Recording::load(&path).expect("recording"))
}

fn recording(name: &str) -> Recording {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/explain")
        .join(format!("{name}.json"));
    Recording::load(&path).expect("recording")
}

fn walk(topo: &Topology, dst: &str, port: Option<u16>) -> Walk {
    let ip = topo.resolve(dst).expect("destination");
    let packet = match port {
        Some(p) => Packet::new(Proto::Tcp, ip).port(p),
        None => Packet::new(Proto::Icmp, ip),
    };
    let w = explain(topo, "node1-pod1", &packet, &Choice::First).expect("explain");
    eprintln!("{w}");
    w
}

fn crossings(w: &Walk) -> Vec<String> {
    w.crossings()
        .iter()
        .map(|(a, b, c, d)| format!("{a}:{b}>{c}:{d}"))
        .collect()
}

fn delivered_in(w: &Walk) -> &str {
    match &w.outcome {
        Outcome::Delivered { ns, .. } => ns,
        o => panic!("not delivered: {o:?}\n{w}"),
    }
}

#[test]
fn recorded_walks_need_no_kernel() {
    let topo = fixture("vxlan-iptables");
    assert!(topo.is_recorded());
    assert_eq!(topo.prefix(), Some("hxrec-vxlan"));
    assert_eq!(
        topo.labels(),
        [
            "fabric",
            "node1",
            "node2",
            "node1-pod1",
            "node1-pod2",
            "node2-pod1",
            "node2-pod2"
        ]
    );
    // A lookup that was not recorded is answered as such, not guessed.
    let w = walk(&topo, "203.0.113.9", None);
    match &w.outcome {
        Outcome::Dropped { reason, .. } => {
            assert!(reason.contains("not in the recording"), "{reason}")
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn vxlan_pod_to_pod_same_node_and_across() {
    let topo = fixture("vxlan-iptables");
    let w = walk(&topo, "node1-pod2", None);
    assert_eq!(w.namespaces(), ["node1-pod1", "node1", "node1-pod2"], "{w}");
    assert!(w.hops_of(Step::Route).all(|h| h.ns != "node1"), "{w}");
    assert_eq!(delivered_in(&w), "node1-pod2");

    let w = walk(&topo, "node2-pod1", None);
    assert_eq!(
        w.namespaces(),
        ["node1-pod1", "node1", "fabric", "node2", "node2-pod1"],
        "{w}"
    );
    let vx: Vec<_> = w.hops_of(Step::Vxlan).collect();
    assert_eq!(vx.len(), 1);
    assert!(
        vx[0]
            .text
            .contains("udp 198.18.0.1 -> 198.18.0.2:8472, VNI 1"),
        "{}",
        vx[0].text
    );
    let e = vx[0].encap.as_ref().expect("the outer header");
    assert_eq!(
        (e.src, e.dst, e.port, e.vni),
        (
            Some([198, 18, 0, 1].into()),
            [198, 18, 0, 2].into(),
            8472,
            Some(1)
        )
    );
    let decap: Vec<_> = w.hops_of(Step::Decap).collect();
    assert_eq!(
        (decap[0].ns.as_str(), decap[0].dev.as_deref()),
        ("node2", Some("flannel.1"))
    );
    assert_eq!(decap[0].encap.as_ref().map(|d| d.dst), Some(e.dst));
    assert_eq!(decap[0].encap.as_ref().map(|d| &d.inner), Some(&e.inner));
    // The legs between encapsulation and decapsulation are the outer packet's.
    let outer: Vec<_> = w.hops.iter().filter(|h| !h.inner).collect();
    assert!(outer.iter().any(|h| h.ns == "fabric"), "{w}");
    assert!(outer.iter().all(|h| h.ns != "node2-pod1"), "{w}");
    let x = crossings(&w);
    assert!(x.contains(&"node1:eth0>fabric:n1".to_string()), "{x:?}");
    assert!(x.contains(&"fabric:n2>node2:eth0".to_string()), "{x:?}");
    assert_eq!(delivered_in(&w), "node2-pod1");
}

#[test]
fn every_backend_crosses_nodes() {
    for (backend, step, dev) in [
        ("vxlan", Some(Step::Vxlan), "flannel.1"),
        ("udp", Some(Step::Tunnel), "flannel0"),
        ("host-gw", None, "eth0"),
    ] {
        let topo = fixture(&format!("{backend}-iptables"));
        let w = walk(&topo, "node2-pod1", None);
        assert_eq!(delivered_in(&w), "node2-pod1", "{backend}");
        let route = w
            .hops_of(Step::Route)
            .find(|h| h.ns == "node1" && h.inner)
            .expect("node1 routes the pod's packet");
        assert!(
            route.text.contains(&format!("dev {dev}")),
            "{backend}: {}",
            route.text
        );
        match step {
            Some(s) => {
                assert_eq!(w.hops_of(s).count(), 1, "{backend}: {w}");
                let e = w.hops_of(s).next().unwrap().encap.clone().unwrap();
                let port = if backend == "udp" { 8285 } else { 8472 };
                assert_eq!((e.dst, e.port), ([198, 18, 0, 2].into(), port), "{backend}");
            }
            None => assert!(w.hops.iter().all(|h| h.inner), "{backend}: {w}"),
        }
    }
}

#[test]
fn cluster_ip_in_both_proxy_modes() {
    for mode in ["iptables", "nftables"] {
        let topo = fixture(&format!("vxlan-{mode}"));
        let w = walk(&topo, "10.96.0.10", Some(80));
        let (ns, r) = w.rules().find(|(_, r)| r.dnat.is_some()).expect("DNAT");
        assert_eq!((ns, r.hook.as_str()), ("node1", "PREROUTING"), "{mode}");
        let (from, to) = r.dnat.clone().unwrap();
        assert_eq!(from, "10.96.0.10:80");
        assert!(to.ends_with(":7777"), "{to}");
        assert_eq!(r.spreads[0].alternatives.len(), 4, "{mode}");
        match &w.outcome {
            Outcome::Delivered { addr, port, .. } => {
                assert_eq!(format!("{addr}:{}", port.unwrap()), to)
            }
            o => panic!("{o:?}"),
        }
        // A Service without endpoints is rejected at node1.
        let w = walk(&topo, "10.96.0.13", Some(80));
        match &w.outcome {
            Outcome::Dropped { ns, missing, .. } => {
                assert_eq!(ns, "node1", "{mode}");
                assert!(
                    missing
                        .as_deref()
                        .unwrap_or("")
                        .contains("Service demo/empty"),
                    "{mode}: {missing:?}"
                );
            }
            o => panic!("{mode}: {o:?}"),
        }
    }
}

#[test]
fn every_recorded_endpoint_can_be_followed() {
    let topo = fixture("vxlan-iptables");
    let pod2: Ipv4Addr = topo.resolve("node1-pod2").unwrap();
    let w = explain(
        &topo,
        "node1-pod1",
        &Packet::new(Proto::Tcp, [10, 96, 0, 10].into()).port(80),
        &Choice::Prefer(vec![pod2.to_string()]),
    )
    .unwrap();
    // br_netfilter bridges the DNATed frame back out of cni0.
    assert_eq!(w.namespaces(), ["node1-pod1", "node1", "node1-pod2"], "{w}");
    assert!(
        w.hops_of(Step::Bridge)
            .any(|h| h.text.contains("br_netfilter bridges the DNATed frame")),
        "{w}"
    );
}

#[test]
fn outside_is_masqueraded_and_unknown_is_dropped() {
    let topo = fixture("vxlan-iptables");
    let w = walk(&topo, "outside", None);
    let (ns, r) = w.rules().find(|(_, r)| r.snat.is_some()).expect("SNAT");
    assert_eq!((ns, r.hook.as_str()), ("node1", "POSTROUTING"));
    assert_eq!(delivered_in(&w), "fabric");
    let w = walk(&topo, "198.19.99.99", None);
    match &w.outcome {
        Outcome::Dropped { ns, reason, .. } => {
            assert_eq!(ns, "fabric");
            assert!(reason.contains("No route to host"), "{reason}");
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn broken_clusters_are_explained_at_the_broken_hop() {
    let topo = fixture("vxlan-broken-fdb");
    let w = walk(&topo, "node2-pod1", None);
    explain_ipvs::assert_dropped(
        &w,
        "node1",
        "flannel.1 has no FDB entry for",
        "(node2's VTEP)",
    );
    assert_eq!(w.hops.last().unwrap().dev.as_deref(), Some("flannel.1"));

    let topo = fixture("vxlan-broken-route");
    let w = walk(&topo, "node2-pod1", None);
    match &w.outcome {
        Outcome::Dropped { ns, missing, .. } => {
            assert_eq!(ns, "fabric");
            assert!(
                missing
                    .as_deref()
                    .unwrap_or("")
                    .starts_with("a route in node1"),
                "{missing:?}"
            );
        }
        o => panic!("{o:?}"),
    }
}

/// The markers of a picture: `(hop number, step)` of every `<g class="hop...">`.
fn markers(svg: &str) -> Vec<(usize, String)> {
    svg.split("<g class=\"hop")
        .skip(1)
        .map(|g| {
            let n = g
                .split("data-hop=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let step = g
                .split("data-step=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or("")
                .to_owned();
            (n, step)
        })
        .collect()
}

#[test]
fn the_cluster_is_drawn_without_a_packet() {
    for name in [
        "vxlan-iptables",
        "udp-iptables",
        "host-gw-iptables",
        "vxlan-nftables",
    ] {
        let rec = recording(name);
        let svg = picture::svg(&rec, None);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(markers(&svg).is_empty());
        for ns in &rec.namespaces {
            assert!(
                svg.contains(&format!("data-ns=\"{}\"><rect", ns.label)),
                "{name}: {} not drawn",
                ns.label
            );
            for l in ns.links.iter().filter(|l| l.name != "lo") {
                assert!(
                    svg.contains(&format!("data-ns=\"{}\" data-dev=\"{}\"", ns.label, l.name)),
                    "{name}: {} {} not drawn",
                    ns.label,
                    l.name
                );
            }
        }
        // Every veth pair is one line: 2 nodes x (eth0 + 2 pods).
        assert_eq!(svg.matches("class=\"wire veth\"").count(), 6, "{name}");
        // Addresses written on their devices.
        assert!(svg.contains("198.18.0.1/24"), "{name}");
        assert!(svg.contains("198.19.0.1/24"), "{name}: the outside address");
        let tunnel = match name {
            "udp-iptables" => Some("dev-tun"),
            "host-gw-iptables" => None,
            _ => Some("dev-vxlan"),
        };
        if let Some(t) = tunnel {
            assert_eq!(
                svg.matches(&format!("class=\"dev {t}")).count(),
                2,
                "{name}"
            );
        }
    }
}

#[test]
fn the_path_is_drawn_hop_by_hop() {
    let rec = recording("vxlan-iptables");
    let topo = Topology::recorded(rec.clone());
    let w = walk(&topo, "10.96.0.10", Some(80));
    let svg = picture::svg(&rec, Some(&w));
    let m = markers(&svg);
    assert_eq!(m.len(), w.hops.len());
    for (i, ((n, step), h)) in m.iter().zip(&w.hops).enumerate() {
        assert_eq!((*n, step.as_str()), (i + 1, h.step.to_string().as_str()));
    }
    // The NAT rewrite where it happens, the outer header on the tunnel leg.
    let (_, r) = w.rules().find(|(_, r)| r.dnat.is_some()).unwrap();
    let (a, b) = r.dnat.clone().unwrap();
    assert!(svg.contains(&format!("DNAT {a} \u{2192} {b}")), "{svg}");
    assert!(
        svg.contains("outer: udp 198.18.0.1 -&gt; 198.18.0.2:8472 VNI 1"),
        "{svg}"
    );
    let outer_legs = svg.matches("class=\"leg outer\"").count();
    assert_eq!(
        outer_legs,
        w.hops.iter().filter(|h| !h.inner).count() + 1,
        "a pipe from the wrapping to the unwrapping"
    );
    // The page links every marker to its line of the text walk.
    let page = picture::html(&rec, Some(&w));
    for (i, h) in w.hops.iter().enumerate() {
        let n = i + 1;
        assert!(page.contains(&format!("<a href=\"#hop-{n}\">")));
        assert!(page.contains(&format!("<li id=\"hop-{n}\"")));
        let text = h
            .text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;");
        assert!(page.contains(&text), "{text}");
    }
}

#[test]
fn a_drop_is_marked_where_and_why() {
    for name in ["vxlan-broken-fdb", "vxlan-broken-route"] {
        let rec = recording(name);
        let topo = Topology::recorded(rec.clone());
        let w = walk(&topo, "node2-pod1", None);
        let svg = picture::svg(&rec, Some(&w));
        let n = w.hops.len();
        let last = svg
            .split(&format!("id=\"hop-marker-{n}\""))
            .nth(1)
            .expect("the drop's marker");
        let last = &last[..last.find("</g>").unwrap()];
        assert!(last.contains("class=\"drop-x\""), "{last}");
        assert!(last.contains("DROP: "), "{last}");
        assert!(svg.contains("<g class=\"hop drop\""));
    }
}

#[test]
fn the_command_draws_recordings() {
    let dir = std::env::temp_dir().join(format!("podnet-explain-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/explain");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_podnet-cluster"))
            .args(args)
            .output()
            .expect("podnet-cluster runs")
    };
    let svg = dir.join("show.svg");
    let rec = fixtures.join("udp-iptables.json");
    let out = run(&[
        "show",
        "--replay",
        rec.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("data-dev=\"flannel0\""), "the TUN devices");
    assert!(!text.contains("class=\"hop"), "no packet");

    // A drop exits 1, with the picture and the page written all the same.
    let (svg, html) = (dir.join("walk.svg"), dir.join("walk.html"));
    let rec = fixtures.join("vxlan-broken-fdb.json");
    let out = run(&[
        "explain",
        "--replay",
        rec.to_str().unwrap(),
        "node1-pod1",
        "node2-pod1",
        "--svg",
        svg.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let hops = stdout
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .count();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(markers(&text).len(), hops, "{stdout}");
    assert!(text.contains("class=\"drop-x\""));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains(&format!("<li id=\"hop-{hops}\" class=\"drop\"")));
    assert!(
        !page.contains("http://") || page.matches("http://").count() == 1,
        "only the SVG namespace"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// kube-proxy's ipvs mode, recorded in the VM (`explain_vm.rs`): ClusterIP across nodes,
/// NodePort, a Service without endpoints, the node's own traffic, each with IPVS in the walk
/// and the rewrite in the picture.
#[test]
fn ipvs_mode_walks() {
    explain_ipvs::check(&recording("vxlan-ipvs"));
}
