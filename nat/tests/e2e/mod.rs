//! The topology and traffic helpers shared by the iptables-mode and nftables-mode kernel
//! end-to-end tests: TCP and UDP echo servers in endpoint namespaces, the Services under test,
//! and connection-spread measurement.
#![allow(dead_code)]

use podnet_nat::kube::{ClusterState, IpFamily, parse_objects};
use podnet_testsupport::{LinkedPair, TestNs, linked_pair};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The client (`a`) and the node (`b`) of the end-to-end tests: joined by a veth (198.18.0.1
/// and 198.18.0.2), the client routing the service and pod ranges via the node, which
/// forwards.
pub(crate) fn client_and_node(tag: &str) -> LinkedPair {
    let pair = linked_pair(tag, "198.18.0.1/24", "198.18.0.2/24");
    for range in ["10.96.0.0/12", "10.244.0.0/16"] {
        pair.a
            .exec("ip", &["route", "add", range, "via", "198.18.0.2"]);
    }
    pair.b.sysctl_set("net.ipv4.ip_forward", "1").unwrap();
    pair
}

/// TCP and UDP echo servers that answer with their name; stopped and joined on drop.
pub(crate) struct Echo {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Echo {
    pub(crate) fn start(ns: &TestNs, name: &'static str, addr: &str) -> Echo {
        let tcp_addr: SocketAddr = format!("{addr}:8080").parse().unwrap();
        let udp_addr: SocketAddr = format!("{addr}:5353").parse().unwrap();
        let (listener, udp) = ns
            .run(move || {
                (
                    TcpListener::bind(tcp_addr).unwrap(),
                    UdpSocket::bind(udp_addr).unwrap(),
                )
            })
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s1 = stop.clone();
        let t1 = std::thread::spawn(move || {
            while !s1.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.write_all(format!("{name}\n").as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        let s2 = stop.clone();
        let t2 = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !s2.load(Ordering::Relaxed) {
                if let Ok((_, from)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(name.as_bytes(), from);
                }
            }
        });
        Echo {
            stop,
            threads: vec![t1, t2],
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

pub(crate) fn endpoint_ns(node: &TestNs, tag: &str, n: u8) -> TestNs {
    let ep = TestNs::new(tag);
    let node_if = format!("vep{n}");
    node.add_veth(&node_if, &ep, "eth0");
    node.exec(
        "ip",
        &["addr", "add", &format!("10.244.{n}.1/24"), "dev", &node_if],
    );
    node.exec("ip", &["link", "set", &node_if, "up"]);
    ep.exec(
        "ip",
        &["addr", "add", &format!("10.244.{n}.2/24"), "dev", "eth0"],
    );
    ep.exec("ip", &["link", "set", "eth0", "up"]);
    ep.exec(
        "ip",
        &["route", "add", "default", "via", &format!("10.244.{n}.1")],
    );
    ep
}

pub(crate) fn objects(udp_endpoints: &[&str]) -> String {
    let mut y = String::from(
        r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky, namespace: demo}
spec:
  clusterIP: 10.96.0.11
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
  ports: [{name: http, port: 81, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: demo}
spec:
  clusterIP: 10.96.0.12
  ports: [{name: dns, port: 53, targetPort: 5353, protocol: UDP}]
"#,
    );
    for svc in ["web", "sticky"] {
        y.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: {svc}-1, namespace: demo, labels: {{kubernetes.io/service-name: {svc}}}}}\n\
             addressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\n\
             endpoints:\n- addresses: [10.244.1.2]\n  nodeName: node-1\n- addresses: [10.244.2.2]\n  nodeName: node-1\n"
        ));
    }
    y.push_str(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {name: dns-1, namespace: demo, labels: {kubernetes.io/service-name: dns}}\n\
         addressType: IPv4\nports: [{name: dns, port: 5353, protocol: UDP}]\nendpoints:\n",
    );
    for e in udp_endpoints {
        y.push_str(&format!("- addresses: [{e}]\n"));
    }
    y
}

pub(crate) fn state(udp_endpoints: &[&str]) -> ClusterState {
    let (objs, w) = parse_objects(&objects(udp_endpoints), "e2e");
    assert!(w.is_empty(), "{w:?}");
    let (s, w) = ClusterState::from_objects(&objs, IpFamily::V4);
    assert!(w.is_empty(), "{w:?}");
    s
}

/// Opens `n` TCP connections from the client namespace and counts which endpoint answered.
pub(crate) fn spread(client: &TestNs, to: &str, n: usize) -> BTreeMap<String, usize> {
    let to: SocketAddr = to.parse().unwrap();
    client
        .run(move || {
            let mut counts = BTreeMap::new();
            for _ in 0..n {
                let mut s =
                    TcpStream::connect_timeout(&to, Duration::from_secs(2)).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut who = String::new();
                s.read_to_string(&mut who).expect("read");
                *counts.entry(who.trim().to_owned()).or_insert(0) += 1;
            }
            counts
        })
        .unwrap()
}

pub(crate) fn assert_spread(counts: &BTreeMap<String, usize>, n: usize) {
    assert_eq!(counts.values().sum::<usize>(), n, "{counts:?}");
    for ep in ["ep1", "ep2"] {
        let c = counts.get(ep).copied().unwrap_or(0);
        assert!(c * 5 >= n, "{ep} got {c} of {n}: {counts:?}");
    }
}

/// The services every proxy mode's end-to-end test checks first: the ClusterIP and the
/// NodePort spread 200 connections over both endpoints, and the Service with session affinity
/// sends every connection to the same endpoint.
pub(crate) fn spread_and_affinity(client: &TestNs) {
    let n = 200;
    let counts = spread(client, "10.96.0.10:80", n);
    assert_spread(&counts, n);
    let counts = spread(client, "198.18.0.2:30080", n);
    assert_spread(&counts, n);
    let counts = spread(client, "10.96.0.11:81", n);
    assert_eq!(counts.len(), 1, "affinity broken: {counts:?}");
    assert_eq!(counts.values().sum::<usize>(), n);
}

/// Opens one UDP flow from `client` to the DNS Service and checks that conntrack pins it to
/// one endpoint; returns the socket and that endpoint's name.
pub(crate) fn udp_flow(client: &TestNs) -> (UdpSocket, String) {
    let udp = client
        .run(|| {
            let s = UdpSocket::bind("198.18.0.1:0").unwrap();
            s.connect("10.96.0.12:53").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s
        })
        .unwrap();
    let first = ask(&udp);
    for _ in 0..5 {
        assert_eq!(ask(&udp), first);
    }
    (udp, first)
}

/// Asks the UDP echo service behind `s` who answers.
pub(crate) fn ask(s: &UdpSocket) -> String {
    s.send(b"who").unwrap();
    let mut buf = [0u8; 64];
    let n = s.recv(&mut buf).expect("udp reply");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The address of the endpoint that is not `name`.
pub(crate) fn other_endpoint(name: &str) -> &'static str {
    if name == "ep1" {
        "10.244.2.2"
    } else {
        "10.244.1.2"
    }
}
