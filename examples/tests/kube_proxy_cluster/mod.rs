//! The kube-proxy end-to-end check on the simulated cluster, shared by `proxy.rs` (iptables
//! and nftables modes, on this machine) and `proxy_vm.rs` (ipvs mode, inside a VM): two nodes
//! with two pods each, echo servers in every pod, kube-proxy on every node for [`SERVICES`].
#![allow(dead_code, unreachable_pub)]

use podnet_examples::cluster::traffic::tcp_echo_from;
use podnet_examples::cluster::{Cluster, EchoServer, Options, Pod};
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

/// Where kube-proxy reads its Services and EndpointSlices from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Its config directory (`--config-dir`), edited as files.
    Files,
    /// The test API server in the fabric (`--master`), changed through the API: watch events.
    Api,
}

/// A cluster with kube-proxy in `mode` for the Services of `services` (a YAML List).
pub fn up_with(tag: &str, mode: &str, services: &str) -> Guard {
    up_with_input(tag, mode, services, Input::Files)
}

/// The same, kube-proxy started with the flags `args` too.
pub fn up_with_args(tag: &str, mode: &str, services: &str, args: &[&str]) -> Guard {
    up_with_input_args(tag, mode, services, Input::Files, args)
}

/// A cluster with kube-proxy in `mode` for the Services of `services` (a YAML List), fed by
/// `input`. With [`Input::Api`] the cluster runs in kube mode (the test API server in the
/// fabric); the objects podnet-cluster wrote into the config directories are created in the
/// API server and every node's kube-proxy is restarted with `--master` instead of
/// `--config-dir`.
pub fn up_with_input(tag: &str, mode: &str, services: &str, input: Input) -> Guard {
    up_with_input_args(tag, mode, services, input, &[])
}

/// [`up_with_input`] with kube-proxy started with the flags `args` too.
pub fn up_with_input_args(
    tag: &str,
    mode: &str,
    services: &str,
    input: Input,
    args: &[&str],
) -> Guard {
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
    if input == Input::Api {
        o.kube = true;
        if let Some(p) = option_env!("CARGO_BIN_EXE_podnet-test-apiserver") {
            o.test_apiserver = program("podnet-test-apiserver", p);
        }
    }
    let mut g = Guard(Some(
        Cluster::up(o, &mut |m| eprintln!("{m}")).expect("cluster up"),
    ));
    if input == Input::Api {
        switch_to_api(g.0.as_mut().unwrap(), mode);
    }
    g
}

/// The test API server's address in the fabric.
const API: (std::net::Ipv4Addr, u16) = (
    podnet_examples::cluster::FABRIC_IP,
    podnet_examples::cluster::KUBE_API_PORT,
);

/// One request to the test API server, from inside `ns`: the status and the body.
pub fn api(
    ns: &podnet_netns::NetNs,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> (u16, String) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: apiserver\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    ns.run(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(API).expect("the test API server");
        s.write_all(req.as_bytes()).unwrap();
        let mut b = String::new();
        s.read_to_string(&mut b).unwrap();
        let code = b
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = b.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        (code, body.to_owned())
    })
    .unwrap()
}

/// The API path of an object's collection (`namespace` for namespaced kinds).
fn collection(kind: &str, namespace: &str) -> String {
    match kind {
        "Service" => format!("/api/v1/namespaces/{namespace}/services"),
        "EndpointSlice" => {
            format!("/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices")
        }
        other => panic!("no collection for {other}"),
    }
}

/// Creates `obj` in the API server (or replaces it).
pub fn api_put(ns: &podnet_netns::NetNs, obj: &serde_json::Value) {
    let kind = obj["kind"].as_str().unwrap();
    let namespace = obj["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = obj["metadata"]["name"].as_str().unwrap();
    let coll = collection(kind, namespace);
    let (code, body) = api(ns, "PUT", &format!("{coll}/{name}"), Some(obj));
    if code == 404 {
        let (code, body) = api(ns, "POST", &coll, Some(obj));
        assert_eq!(code, 201, "creating {kind} {namespace}/{name}: {body}");
    } else {
        assert_eq!(code, 200, "replacing {kind} {namespace}/{name}: {body}");
    }
}

/// Deletes an object from the API server.
pub fn api_delete(ns: &podnet_netns::NetNs, kind: &str, namespace: &str, name: &str) {
    let (code, body) = api(
        ns,
        "DELETE",
        &format!("{}/{name}", collection(kind, namespace)),
        None,
    );
    assert_eq!(code, 200, "deleting {kind} {namespace}/{name}: {body}");
}

/// The items of a List in node `index`'s config directory file `file`.
fn config_items(c: &Cluster, index: usize, file: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(c.kube_proxy_dir(index).join(file)).unwrap();
    let v: serde_json::Value = yaml_serde::from_str(&text).unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

/// The EndpointSlices podnet-cluster wrote for the Services (the same on every node).
pub fn slices(c: &Cluster) -> Vec<serde_json::Value> {
    config_items(c, 1, "endpointslices.json")
}

/// Creates the config directory's objects in the API server, and restarts every node's
/// kube-proxy on the API server.
fn switch_to_api(c: &mut Cluster, mode: &str) {
    let ns = c.nodes[0].ns.clone();
    for o in config_items(c, 1, "services.yaml")
        .iter()
        .chain(slices(c).iter())
    {
        api_put(&ns, o);
    }
    let url = c.opts.kube_api_url();
    for i in 0..c.nodes.len() {
        if let Some(mut old) = c.nodes[i].kube_proxy.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        let n = &c.nodes[i];
        let dir = c.kube_proxy_dir(n.index);
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.join("kube-proxy.log"))
            .unwrap();
        let child =
            n.ns.command(&c.opts.kube_proxy)
                .args(["--master", &url])
                .args(["--proxy-mode", mode])
                .args(["--hostname-override", &format!("node{}", n.index)])
                .args(["--cluster-cidr", podnet_examples::cluster::CLUSTER_NETWORK])
                .args(["--iptables-min-sync-period", "0.5"])
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
        c.nodes[i].kube_proxy = Some(child);
    }
    for n in &c.nodes {
        let start = Instant::now();
        while try_metric(
            &n.ns,
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            mode,
        )
        .is_none_or(|t| t <= 0.0)
        {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "node{}: kube-proxy on the API server never synced",
                n.index
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Waits until `f` holds (what a client sees), within `deadline`.
fn settle(what: &str, deadline: Duration, mut f: impl FnMut() -> Result<bool, String>) {
    let start = Instant::now();
    loop {
        match f() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => eprintln!("{what}: {e}"),
        }
        assert!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("{what}: after {:?}", start.elapsed());
}

/// The changes only the API server makes (after [`services_behave_from`], whose endpoint
/// change this undoes first): an endpoint added and removed as watch events
/// while traffic flows, a 410 Gone that forces every watch to relist in the middle, and the
/// Service deleted.
pub fn api_changes_behave(g: &Guard, mode: &str) {
    let c = g.0.as_ref().unwrap();
    let _servers: Vec<EchoServer> = c
        .pods
        .iter()
        .map(|p| EchoServer::start_named(&p.ns, 7777, &p.label()).unwrap())
        .collect();
    let client = &c.pods[0];
    let ns = c.nodes[0].ns.clone();
    let vip = SocketAddr::new([10, 96, 0, 10].into(), 80);
    let sync_time = mean_sync_seconds(&c.nodes[0].ns, mode);
    let deadline = Duration::from_secs_f64(0.5 + 2.0 * sync_time + 5.0);
    let echo = |keep: &dyn Fn(&serde_json::Value) -> bool| {
        for mut s in slices(c) {
            if s["metadata"]["labels"]["kubernetes.io/service-name"] != "echo" {
                continue;
            }
            s["endpoints"].as_array_mut().unwrap().retain(|e| keep(e));
            api_put(&ns, &s);
        }
    };
    let serves = |want: &[&str]| {
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        move || labels(&client.ns, vip, 10).map(|l| nodes(&l) == want)
    };
    // Traffic flows all along, from a thread, while the changes land: it may see a failed
    // connection while a rule changes (IPVS), never a long outage.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flowing = {
        let (stop, src) = (stop.clone(), client.ns.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match tcp_echo_from(&src, SocketAddr::new([10, 96, 0, 11].into(), 80)) {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (ok, failed)
        })
    };
    // Every endpoint (back) in.
    echo(&|_| true);
    settle("both nodes serve", deadline, serves(&["node1", "node2"]));
    // Remove node1's endpoints.
    echo(&|e| e["nodeName"] == "node2");
    settle("node1's endpoints removed", deadline, serves(&["node2"]));
    // Add them back.
    echo(&|_| true);
    settle(
        "node1's endpoints added",
        deadline,
        serves(&["node1", "node2"]),
    );
    // 410 Gone: history compacted and every watch expired; the change made meanwhile comes
    // with the relist.
    let (code, body) = api(&ns, "POST", "/podnet-test/compact", None);
    assert_eq!(code, 200, "{body}");
    let (code, body) = api(&ns, "POST", "/podnet-test/expire-watches", None);
    assert_eq!(code, 200, "{body}");
    echo(&|e| e["nodeName"] == "node1");
    settle(
        "node2's endpoints removed, after a relist",
        deadline,
        serves(&["node1"]),
    );
    // The Service deleted: its cluster IP is served no more.
    api_delete(&ns, "Service", "demo", "echo");
    settle("the deleted Service", deadline, || {
        Ok(tcp_echo_from(&client.ns, vip).is_err())
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = flowing.join().unwrap();
    eprintln!("traffic to another Service during the changes: {ok} answered, {failed} failed");
    assert!(
        ok > 0 && failed <= ok / 10 + 2,
        "{ok} answered, {failed} failed"
    );
    for n in &c.nodes {
        assert_eq!(
            metric(&n.ns, "kubeproxy_sync_proxy_rules_failures_total", mode),
            0.0,
            "node{}: a sync failed",
            n.index
        );
    }
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
    services_behave_from(&g, mode, Input::Files);
}

/// ClusterIP from a pod and NodePort from the fabric, balanced over pods on both nodes;
/// session affinity: one pod answers every time.
fn balanced_and_affine(c: &Cluster, client: &Pod) {
    let vip = |last: u8, port: u16| SocketAddr::new([10, 96, 0, last].into(), port);
    let l = labels(&client.ns, vip(10, 80), 40).unwrap();
    assert_eq!(nodes(&l).len(), 2, "{l:?}");
    let np = SocketAddr::new(c.nodes[0].ip.into(), 30080);
    let l = labels(&c.fabric, np, 40).unwrap();
    assert_eq!(nodes(&l).len(), 2, "{l:?}");
    let l = labels(&client.ns, vip(11, 80), 20).unwrap();
    assert_eq!(l.len(), 1, "{l:?}");
}

/// Every check, in `mode`, with the endpoint change made through `input` (a file edit, or an
/// update of the EndpointSlices in the API server: watch events).
pub fn services_behave_from(g: &Guard, mode: &str, input: Input) {
    let c = g.0.as_ref().unwrap();
    let _servers: Vec<EchoServer> = c
        .pods
        .iter()
        .map(|p| EchoServer::start_named(&p.ns, 7777, &p.label()).unwrap())
        .collect();
    let client = &c.pods[0]; // on node1
    let vip = |last: u8, port: u16| SocketAddr::new([10, 96, 0, last].into(), port);

    balanced_and_affine(c, client);
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
    match input {
        Input::Files => {
            let dir = c.kube_proxy_dir(1);
            let slices = dir.join("endpointslices.json");
            let text = std::fs::read_to_string(&slices).unwrap();
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            for item in v["items"].as_array_mut().unwrap() {
                let eps = item["endpoints"].as_array_mut().unwrap();
                eps.retain(|e| e["nodeName"] == "node2");
            }
            std::fs::write(&slices, serde_json::to_string(&v).unwrap()).unwrap();
        }
        Input::Api => {
            for mut item in slices(c) {
                item["endpoints"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|e| e["nodeName"] == "node2");
                api_put(&c.nodes[0].ns, &item);
            }
        }
    }
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

/// The value of kube-proxy's metric `name` for `mode` on this node, if it answers.
pub fn try_metric(ns: &podnet_netns::NetNs, name: &str, mode: &str) -> Option<f64> {
    let key = format!("{name}{{mode=\"{mode}\"}} ");
    let body = ns
        .run(|| {
            podnet_examples::http::get(
                std::net::SocketAddr::from(([127, 0, 0, 1], 10249)),
                "/metrics",
            )
            .ok()
        })
        .ok()
        .flatten()?
        .1;
    body.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
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
