//! The kube-proxy end-to-end check on the simulated cluster, shared by `proxy.rs` (iptables
//! and nftables modes, on this machine) and `proxy_vm.rs` (ipvs mode, inside a VM): two nodes
//! with two pods each, echo servers in every pod, kube-proxy on every node for [`SERVICES`].
#![allow(dead_code, unreachable_pub)]

use podnet_examples::cluster::traffic::tcp_echo_from;
use podnet_examples::cluster::{Cluster, EchoServer, Options};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A cluster taken down when dropped (its logs and rules printed first if a test failed).
pub struct Guard(pub Option<Cluster>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            if std::thread::panicking() {
                dump(&c);
            }
            c.down();
        }
    }
}

/// What a failed test needs to be understood: every node's kube-proxy log and the rules it
/// installed (the tools that exist on this machine or in the VM).
fn dump(c: &Cluster) {
    for n in &c.nodes {
        let log = c.kube_proxy_dir(n.index).join("kube-proxy.log");
        eprintln!(
            "=== node{} kube-proxy.log\n{}",
            n.index,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        for cmd in [
            &["iptables-save"][..],
            &["nft", "list", "ruleset"],
            &["ipvsadm", "-Ln"],
            &["ipset", "list"],
            &["ip", "addr"],
            &["ip", "route"],
        ] {
            if let Ok(out) = n.ns.command(cmd[0]).args(&cmd[1..]).output() {
                eprintln!(
                    "=== node{} {}\n{}{}",
                    n.index,
                    cmd.join(" "),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// The Services: NodePort, ClientIP affinity, externalTrafficPolicy Local (endpoints on node2
/// only), UDP, and one without endpoints.
pub const SERVICES: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: echo, namespace: demo}
  spec:
    type: NodePort
    clusterIP: 10.96.0.10
    ports: [{name: tcp, port: 80, targetPort: 7777, nodePort: 30080, protocol: TCP}]
- apiVersion: v1
  kind: Service
  metadata: {name: sticky, namespace: demo}
  spec:
    clusterIP: 10.96.0.11
    sessionAffinity: ClientIP
    sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
    ports: [{name: tcp, port: 80, targetPort: 7777, protocol: TCP}]
- apiVersion: v1
  kind: Service
  metadata:
    name: local
    namespace: demo
    labels: {podnet.io/node: node2}
  spec:
    type: NodePort
    externalTrafficPolicy: Local
    clusterIP: 10.96.0.12
    ports: [{name: tcp, port: 80, targetPort: 7777, nodePort: 30082, protocol: TCP}]
- apiVersion: v1
  kind: Service
  metadata: {name: udp, namespace: demo}
  spec:
    clusterIP: 10.96.0.14
    ports: [{name: udp, port: 53, targetPort: 7777, protocol: UDP}]
- apiVersion: v1
  kind: Service
  metadata:
    name: empty
    namespace: demo
    labels: {podnet.io/node: node9}
  spec:
    clusterIP: 10.96.0.13
    ports: [{name: tcp, port: 80, targetPort: 7777, protocol: TCP}]
"#;

/// The environment variable naming a directory that holds the package's programs (`flanneld`,
/// `podnet-cni`, `kube-proxy`) where cargo's paths do not apply: inside the VM, which has
/// them at fixed paths (`proxy_vm.rs`).
pub const PROGRAM_DIR_VAR: &str = "PODNET_TEST_PROGRAM_DIR";

/// Program `name`: in [`PROGRAM_DIR_VAR`] when it is set, else where cargo built it.
pub fn program(name: &str, built: &str) -> PathBuf {
    match std::env::var_os(PROGRAM_DIR_VAR) {
        Some(dir) => PathBuf::from(dir).join(name),
        None => PathBuf::from(built),
    }
}

/// A cluster with kube-proxy in iptables mode.
pub fn up(tag: &str) -> Guard {
    up_mode(tag, "iptables")
}

/// A cluster with kube-proxy in `mode`, namespaces named after this process and `tag`.
pub fn up_mode(tag: &str, mode: &str) -> Guard {
    up_with(tag, mode, SERVICES)
}

/// A cluster with kube-proxy in `mode` for the Services of `services` (a YAML List).
pub fn up_with(tag: &str, mode: &str, services: &str) -> Guard {
    up_with_args(tag, mode, services, &[])
}

/// The same, kube-proxy started with the flags `args` too.
pub fn up_with_args(tag: &str, mode: &str, services: &str, args: &[&str]) -> Guard {
    let prefix = format!("{}{}-{tag}", podnet_testsupport::PREFIX, std::process::id());
    let mut o = Options::new(&prefix);
    o.nodes = 2;
    o.pods = 2;
    o.flanneld = program("flanneld", env!("CARGO_BIN_EXE_flanneld"));
    o.cni = program("podnet-cni", env!("CARGO_BIN_EXE_podnet-cni"));
    o.kube_proxy = program("kube-proxy", env!("CARGO_BIN_EXE_kube-proxy"));
    let file = std::env::temp_dir().join(format!("{prefix}-services.yaml"));
    std::fs::write(&file, services).unwrap();
    o.services = Some(file);
    o.proxy_mode = mode.into();
    o.kube_proxy_args = args.iter().map(|a| a.to_string()).collect();
    Guard(Some(
        Cluster::up(o, &mut |m| eprintln!("{m}")).expect("cluster up"),
    ))
}

/// The labels of the pods that answered `n` connections from `src` to `dst`.
pub fn labels(
    src: &podnet_netns::NetNs,
    dst: SocketAddr,
    n: usize,
) -> Result<BTreeSet<String>, String> {
    let mut s = BTreeSet::new();
    for _ in 0..n {
        s.insert(tcp_echo_from(src, dst)?.1);
    }
    Ok(s)
}

/// The nodes those pods are on.
pub fn nodes(labels: &BTreeSet<String>) -> BTreeSet<String> {
    labels
        .iter()
        .map(|l| l.split('-').next().unwrap().to_owned())
        .collect()
}

/// Every check, in `mode`.
pub fn services_behave(g: Guard, mode: &str) {
    let c = g.0.as_ref().unwrap();
    let _servers: Vec<EchoServer> = c
        .pods
        .iter()
        .map(|p| EchoServer::start_named(&p.ns, 7777, &p.label()).unwrap())
        .collect();
    let client = &c.pods[0]; // on node1
    let vip = |last: u8, port: u16| SocketAddr::new([10, 96, 0, last].into(), port);

    // ClusterIP from a pod, balanced over pods on both nodes.
    let l = labels(&client.ns, vip(10, 80), 40).unwrap();
    assert_eq!(nodes(&l).len(), 2, "{l:?}");
    // NodePort from the fabric.
    let np = SocketAddr::new(c.nodes[0].ip.into(), 30080);
    let l = labels(&c.fabric, np, 40).unwrap();
    assert_eq!(nodes(&l).len(), 2, "{l:?}");
    // Session affinity: one pod answers every time.
    let l = labels(&client.ns, vip(11, 80), 20).unwrap();
    assert_eq!(l.len(), 1, "{l:?}");
    // externalTrafficPolicy Local: node2 (with local endpoints) answers from node2's pods only;
    // node1 (none) drops.
    let l = labels(&c.fabric, SocketAddr::new(c.nodes[1].ip.into(), 30082), 10).unwrap();
    assert_eq!(nodes(&l), BTreeSet::from(["node2".to_string()]));
    let err = tcp_echo_from(&c.fabric, SocketAddr::new(c.nodes[0].ip.into(), 30082)).unwrap_err();
    assert!(
        err.contains("timed out") || err.contains("refused"),
        "{err}"
    );
    // A Service without endpoints is rejected at once (REJECT, not a timeout).
    let start = Instant::now();
    let err = tcp_echo_from(&client.ns, vip(13, 80)).unwrap_err();
    assert!(
        err.contains("refused") || err.contains("unreachable"),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));

    // A UDP flow (one socket) answered by a pod on node1, for the endpoint change below.
    let _udp_servers = UdpEcho::start(&c.pods, 7777);
    let udp = (0..40)
        .find_map(|_| {
            let f = UdpFlow::open(&client.ns, vip(14, 53)).ok()?;
            let who = f.ask().ok()?;
            who.starts_with("node1").then_some(f)
        })
        .expect("a UDP flow answered by a pod on node1");
    // Still alive after two seconds: conntrack takes it for a stream and keeps it 120 s (not
    // 30), longer than a sync takes under emulation, so it is still there for the cleanup.
    std::thread::sleep(Duration::from_millis(2200));
    let who = udp.ask().expect("the UDP flow still answers");
    assert!(
        who.starts_with("node1"),
        "the UDP flow moved by itself: {who}"
    );
    let deleted_before = conntrack_deleted(&c.nodes[0].ns, mode);

    // Editing the files (scaling endpoints down to node2) changes the rules within the minimum
    // sync period (0.5 s here), plus the time a sync takes (kube-proxy's own figure: slow
    // under emulation in the VM) and a poll.
    let sync_time = mean_sync_seconds(&c.nodes[0].ns, mode);
    let deadline = Duration::from_secs_f64(0.5 + 2.0 * sync_time + 2.0);
    let dir = c.kube_proxy_dir(1);
    let slices = dir.join("endpointslices.json");
    let text = std::fs::read_to_string(&slices).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for item in v["items"].as_array_mut().unwrap() {
        let eps = item["endpoints"].as_array_mut().unwrap();
        eps.retain(|e| e["nodeName"] == "node2");
    }
    std::fs::write(&slices, serde_json::to_string(&v).unwrap()).unwrap();
    let start = Instant::now();
    loop {
        // A connection may fail while the change lands (IPVS drops the first SYN that
        // reuses a connection entry of a removed destination); the deadline still holds.
        match labels(&client.ns, vip(10, 80), 10) {
            Ok(l) if nodes(&l) == BTreeSet::from(["node2".to_string()]) => break,
            Ok(l) => assert!(start.elapsed() < deadline, "rules not updated: {l:?}"),
            Err(e) => {
                eprintln!("during the endpoint change: {e}");
                assert!(start.elapsed() < deadline, "rules not updated: {e}");
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "endpoint change applied after {:?} (a sync takes {sync_time:.3} s)",
        start.elapsed()
    );
    // The UDP flow moves to node2 too: its conntrack entry to the pod that went away is gone.
    // In iptables and nftables modes kube-proxy deletes it (and says so in /metrics). In ipvs
    // mode the kernel is faster: deleting a destination with expire_nodest_conn=1 (kube-proxy
    // sets it) flushes its connections and their conntrack entries at once (Linux 5.9+), so
    // kube-proxy's own cleanup finds nothing left here; it matters where the kernel does not.
    let start = Instant::now();
    loop {
        match udp.ask() {
            Ok(who) if who.starts_with("node2") => break,
            other => assert!(
                start.elapsed() < deadline,
                "UDP flow stuck: {other:?}; node1's UDP flows: {:#?}",
                udp_flows(&c.nodes[0].ns)
            ),
        }
    }
    if mode != "ipvs" {
        // The sync that deleted the entry records it in /metrics when it ends, which can be a
        // moment after the flow has moved: wait for it.
        let start = Instant::now();
        while conntrack_deleted(&c.nodes[0].ns, mode) <= deleted_before {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{mode}: no stale UDP conntrack entry deleted on node1; its UDP flows now: {:#?}",
                udp_flows(&c.nodes[0].ns)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // No sync failed (the conntrack cleanup included).
    for n in &c.nodes {
        assert_eq!(
            metric(&n.ns, "kubeproxy_sync_proxy_rules_failures_total", mode),
            0.0,
            "node{}: a sync failed",
            n.index
        );
    }

    // /metrics and /healthz answer inside the node.
    let body = metrics(&c.nodes[0].ns);
    assert!(
        body.contains(&format!(
            "kubeproxy_sync_proxy_rules_duration_seconds_count{{mode=\"{mode}\"}}"
        )),
        "{body}"
    );
}

/// A UDP server in every pod answering each datagram with the pod's label.
pub struct UdpEcho {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl UdpEcho {
    /// Starts one on `port` in each pod.
    pub fn start(pods: &[podnet_examples::cluster::Pod], port: u16) -> UdpEcho {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = pods
            .iter()
            .map(|p| {
                let sock =
                    p.ns.run(move || std::net::UdpSocket::bind(("0.0.0.0", port)))
                        .unwrap()
                        .unwrap();
                sock.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let label = p.label();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if let Ok((_, from)) = sock.recv_from(&mut buf) {
                            let _ = sock.send_to(label.as_bytes(), from);
                        }
                    }
                })
            })
            .collect();
        UdpEcho { stop, threads }
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One UDP socket in a namespace talking to one address: one flow for conntrack.
pub struct UdpFlow(std::net::UdpSocket);

impl UdpFlow {
    /// A socket in `ns` connected to `dst`.
    pub fn open(ns: &podnet_netns::NetNs, dst: SocketAddr) -> std::io::Result<UdpFlow> {
        let sock = ns
            .run(|| std::net::UdpSocket::bind("0.0.0.0:0"))
            .map_err(std::io::Error::other)??;
        sock.connect(dst)?;
        sock.set_read_timeout(Some(Duration::from_millis(500)))?;
        Ok(UdpFlow(sock))
    }

    /// Sends a datagram and returns the label of the pod that answered.
    pub fn ask(&self) -> Result<String, String> {
        self.0.send(b"?").map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let n = self.0.recv(&mut buf).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

/// The UDP conntrack flows of `ns` (for failure messages).
fn udp_flows(ns: &podnet_netns::NetNs) -> Vec<podnet_nat::conntrack::Flow> {
    podnet_nat::conntrack::Conntrack::open_in(ns)
        .and_then(|mut c| c.list(podnet_nat::kube::IpFamily::V4))
        .map(|f| {
            f.into_iter()
                .filter(|f| f.protocol == podnet_nat::iptables::Protocol::Udp)
                .collect()
        })
        .unwrap_or_default()
}

/// The stale conntrack flows kube-proxy on this node says it deleted (`/metrics`).
pub fn conntrack_deleted(ns: &podnet_netns::NetNs, mode: &str) -> f64 {
    metric(ns, "kubeproxy_conntrack_entries_deleted_total", mode)
}

/// The value of kube-proxy's metric `name` for `mode` on this node.
pub fn metric(ns: &podnet_netns::NetNs, name: &str, mode: &str) -> f64 {
    let body = metrics(ns);
    let key = format!("{name}{{mode=\"{mode}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {body}"))
}

/// The mean sync duration kube-proxy reports in `/metrics` on this node.
pub fn mean_sync_seconds(ns: &podnet_netns::NetNs, mode: &str) -> f64 {
    let body = metrics(ns);
    let value = |name: &str| -> f64 {
        let key = format!("kubeproxy_sync_proxy_rules_duration_seconds_{name}{{mode=\"{mode}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {body}"))
    };
    value("sum") / value("count").max(1.0)
}

/// kube-proxy's `/metrics` text in `ns`.
pub fn metrics(ns: &podnet_netns::NetNs) -> String {
    ns.run(|| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect("127.0.0.1:10249").unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut b = String::new();
        s.read_to_string(&mut b).unwrap();
        b
    })
    .unwrap()
}
