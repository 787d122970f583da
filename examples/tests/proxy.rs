//! End-to-end tests of kube-proxy on the simulated cluster, one per mode (iptables, nftables,
//! ipvs): ClusterIP from a pod on another node, NodePort from the fabric, session affinity,
//! externalTrafficPolicy Local, a Service without endpoints, file edits applied within the
//! minimum sync period; and bad input.
//!
//! This machine's kernel has no IPVS: `ipvs_mode_on_the_cluster` skips here and runs inside a
//! virtual machine booted by `proxy_vm.rs` (Debian's kernel, with `PODNET_REQUIRE_IPVS=1`).

use podnet_examples::cluster::traffic::tcp_echo_from;
use podnet_examples::cluster::{Cluster, EchoServer, Options};
use podnet_testsupport::require_root;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Guard(Option<Cluster>);

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

const SERVICES: &str = r#"
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
  metadata:
    name: empty
    namespace: demo
    labels: {podnet.io/node: node9}
  spec:
    clusterIP: 10.96.0.13
    ports: [{name: tcp, port: 80, targetPort: 7777, protocol: TCP}]
"#;

fn up(tag: &str) -> Guard {
    up_mode(tag, "iptables")
}

fn up_mode(tag: &str, mode: &str) -> Guard {
    let prefix = format!("{}{}-{tag}", podnet_testsupport::PREFIX, std::process::id());
    let mut o = Options::new(&prefix);
    o.nodes = 2;
    o.pods = 2;
    o.flanneld = PathBuf::from(env!("CARGO_BIN_EXE_flanneld"));
    o.cni = PathBuf::from(env!("CARGO_BIN_EXE_podnet-cni"));
    o.kube_proxy = PathBuf::from(env!("CARGO_BIN_EXE_kube-proxy"));
    let file = std::env::temp_dir().join(format!("{prefix}-services.yaml"));
    std::fs::write(&file, SERVICES).unwrap();
    o.services = Some(file);
    o.proxy_mode = mode.into();
    Guard(Some(
        Cluster::up(o, &mut |m| eprintln!("{m}")).expect("cluster up"),
    ))
}

fn labels(
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

fn nodes(labels: &BTreeSet<String>) -> BTreeSet<String> {
    labels
        .iter()
        .map(|l| l.split('-').next().unwrap().to_owned())
        .collect()
}

#[test]
fn iptables_mode_on_the_cluster() {
    require_root!();
    services_behave(up("kp"), "iptables");
}

#[test]
fn nftables_mode_on_the_cluster() {
    require_root!();
    services_behave(up_mode("kpnft", "nftables"), "nftables");
}

#[test]
fn ipvs_mode_on_the_cluster() {
    require_root!();
    // ip_vs makes /proc/net/ip_vs in every namespace once it is loaded (or built in).
    if !std::path::Path::new("/proc/net/ip_vs").exists() {
        assert!(
            std::env::var_os("PODNET_REQUIRE_IPVS").is_none(),
            "PODNET_REQUIRE_IPVS is set, but this kernel has no IPVS"
        );
        eprintln!(
            "skipped ipvs_mode_on_the_cluster: this kernel has no IPVS (proxy_vm.rs runs it in a VM)"
        );
        return;
    }
    services_behave(up_mode("kpipvs", "ipvs"), "ipvs");
}

fn services_behave(g: Guard, mode: &str) {
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

    // /metrics and /healthz answer inside the node.
    let body = metrics(&c.nodes[0].ns);
    assert!(
        body.contains(&format!(
            "kubeproxy_sync_proxy_rules_duration_seconds_count{{mode=\"{mode}\"}}"
        )),
        "{body}"
    );
}

/// The mean sync duration kube-proxy reports in `/metrics` on this node.
fn mean_sync_seconds(ns: &podnet_netns::NetNs, mode: &str) -> f64 {
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
fn metrics(ns: &podnet_netns::NetNs) -> String {
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

#[test]
fn bad_files_are_reported_by_name_and_the_rest_still_syncs() {
    let dir = std::env::temp_dir().join(format!("podnet-kp-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a-bad.yaml"), "kind: [unclosed\n").unwrap();
    std::fs::write(
        dir.join("b-cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    )
    .unwrap();
    std::fs::write(dir.join("c-good.yaml"), SERVICES).unwrap();
    let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: echo-1, namespace: demo, labels: {kubernetes.io/service-name: echo}}\naddressType: IPv4\nports: [{name: tcp, port: 7777, protocol: TCP}]\nendpoints:\n- addresses: [10.244.1.2]\n  conditions: {ready: true}\n";
    std::fs::write(dir.join("d-slice.yaml"), slice).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-proxy"))
        .args([
            "--dry-run",
            "--hostname-override",
            "node1",
            "--node-ip",
            "198.18.0.1",
            "--config-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("a-bad.yaml"), "{stderr}");
    assert!(
        stderr.contains("b-cm.yaml") && stderr.contains("ConfigMap"),
        "{stderr}"
    );
    assert!(stdout.contains("demo/echo:tcp cluster IP"), "{stdout}");
    assert!(
        stdout.contains("--to-destination 10.244.1.2:7777"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"demo/empty:tcp has no endpoints\""),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// kube-proxy's own expected iptables rules for its TestOverallIPTablesRules services
/// (nat/tests/fixtures), with the two differences between its fake proxier and a real binary
/// made explicit: the real binary writes the mark as `%#08x` of the bit (0x00004000) and runs
/// without nfacct counters here (podnet does not create the nfacct objects), so the nfacct
/// matches and the localhost node-port rules that only exist with them are left out.
#[test]
fn dry_run_equals_kube_proxys_expected_rules() {
    let dir = std::env::temp_dir().join(format!("podnet-kp-golden-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("overall.yaml"),
        include_str!("../../nat/tests/fixtures/overall.yaml"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-proxy"))
        .args(["--dry-run", "--hostname-override", "test-node"])
        .args(["--node-ip", "192.168.0.2", "--cluster-cidr", "10.0.0.0/8"])
        .arg("--config-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = String::from_utf8_lossy(&out.stdout);
    let expected: Vec<String> = include_str!("../../nat/tests/fixtures/overall.expected")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            !(l.contains("-d 127.0.0.0/8") && l.contains("KUBE-NODEPORTS") && l.contains("nfacct"))
        })
        .map(|l| {
            let mut l = l
                .replace("0x4000/0x4000", "0x00004000/0x00004000")
                .replace("--or-mark 0x4000", "--or-mark 0x00004000")
                .replace("--xor-mark 0x4000", "--xor-mark 0x00004000");
            while let Some(i) = l.find(" -m nfacct --nfacct-name ") {
                let rest = &l[i + " -m nfacct --nfacct-name ".len()..];
                let end = rest
                    .find(' ')
                    .map_or(l.len(), |e| i + " -m nfacct --nfacct-name ".len() + e);
                l.replace_range(i..end, "");
            }
            l
        })
        .collect();
    let mut expected = expected;
    let mut ours: Vec<String> = ours.lines().map(str::to_owned).collect();
    expected.sort();
    ours.sort();
    let missing: Vec<&String> = expected.iter().filter(|l| !ours.contains(l)).collect();
    let extra: Vec<&String> = ours.iter().filter(|l| !expected.contains(l)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing from --dry-run: {missing:#?}\nnot expected: {extra:#?}"
    );
    assert_eq!(ours.len(), expected.len());
    let _ = std::fs::remove_dir_all(&dir);
}
