//! The binaries on a host that other agents already wrote to: the node and the run shared by
//! `foreign_host.rs` (iptables and nftables modes, on this machine) and `proxy_vm.rs` (ipvs
//! mode, inside a VM whose kernel has IPVS).
//!
//! Each test builds one node namespace pre-loaded with [`foreign::ALL`] (a Docker daemon's
//! iptables rules, kubelet's chains, a distribution's INPUT rules, a firewalld-style nftables
//! table; see `podnet_testsupport::foreign`), runs every binary there the way a node runs them,
//! together:
//!
//! 1. flanneld (one backend per test) with the embedded file store, `--ip-masq`, and a resync
//!    every second;
//! 2. a pod attached with `podnet-cni ADD` (bridge, `ipMasq`), in flannel's subnet;
//! 3. kube-proxy (one mode per test) with a one-second full resync, for Services backed by
//!    that pod;
//!
//! then lets them sync several times, edits the Services, restarts flanneld and kube-proxy,
//! and at the end runs `podnet-cni DEL` and `kube-proxy --cleanup` and stops flanneld. After
//! every step every foreign chain, rule, policy and table is byte for byte what it was, and no
//! rule of ours appears twice in a chain; at the end nothing of kube-proxy's or the CNI
//! plugin's is left (flanneld has no cleanup, as flannel: its chains stay, and only they).
//!
//! In ipvs mode kube-proxy's own state is also its IPVS virtual servers, its ipsets and the
//! `kube-ipvs0` device: after `--cleanup` none of them is left either.
//!
//! Programs are found with [`program`]: where cargo built them, or in the guest's program
//! directory inside the VM.
#![allow(dead_code, unreachable_pub)]

use podnet_testsupport::TestNs;
use podnet_testsupport::foreign::{self, HostState};
use std::path::{Path, PathBuf};

pub use super::kube_proxy_cluster::program;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The node's underlay address, its gateway (a namespace of its own) and flannel's network.
const NODE_IP: &str = "198.18.9.1";
const GATEWAY_IP: &str = "198.18.9.254";
const NETWORK: &str = "10.244.0.0/16";

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("podnet-foreign-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One of our daemons running in the node, its stderr in a log file; killed when dropped.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(
        node: &TestNs,
        name: &'static str,
        program: &Path,
        args: &[String],
        log: PathBuf,
    ) -> Daemon {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = node
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        Daemon { name, child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `what` `n` times.
    fn wait_for(&mut self, what: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log().matches(what).count() < n {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}):\n{}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what:?} x{n} in its log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} log\n{}", self.name, self.log());
        }
    }
}

/// The node: a namespace pre-loaded with the foreign fixture, its `eth0` into a gateway
/// namespace (the default route), and a state directory for our programs.
struct Node {
    ns: TestNs,
    _gateway: TestNs,
    dir: TempDir,
    /// The host as the other agents left it, before any of ours ran.
    before: HostState,
}

impl Node {
    fn new(tag: &str) -> Node {
        let ns = TestNs::new(tag);
        let gateway = TestNs::new(&format!("{tag}-gw"));
        foreign::load(&ns, &foreign::ALL);
        ns.exec(
            "ip",
            &[
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                "up0",
                "netns",
                gateway.name(),
            ],
        );
        ns.exec(
            "ip",
            &["addr", "add", &format!("{NODE_IP}/24"), "dev", "eth0"],
        );
        ns.exec("ip", &["link", "set", "eth0", "up"]);
        gateway.exec(
            "ip",
            &["addr", "add", &format!("{GATEWAY_IP}/24"), "dev", "up0"],
        );
        gateway.exec("ip", &["link", "set", "up0", "up"]);
        ns.exec("ip", &["route", "add", "default", "via", GATEWAY_IP]);
        let before = HostState::read(&ns);
        Node {
            ns,
            _gateway: gateway,
            dir: TempDir::new(tag),
            before,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    /// Every foreign chain, rule and table as it was; nothing of ours twice.
    fn assert_foreign_intact(&self, step: &str) {
        let now = HostState::read(&self.ns);
        if let Err(why) = self.before.foreign_intact(&now) {
            panic!(
                "after {step}:\n{why}\n--- iptables-save now\n{}",
                now.iptables_save()
            );
        }
        // Our nftables table (nftables mode): once, and no rule twice in a chain.
        let tables = self.ns.exec("nft", &["list", "tables"]);
        assert!(
            tables.matches("table ip kube-proxy\n").count() <= 1,
            "{step}: {tables}"
        );
        if tables.contains("table ip kube-proxy\n") {
            let table = self.ns.exec("nft", &["list", "table", "ip", "kube-proxy"]);
            if let Some(twice) = rule_twice_in_a_chain(&table) {
                panic!("after {step}: a rule twice in kube-proxy's table: {twice}\n{table}");
            }
        }
    }

    /// kube-proxy's rules in `mode`: `iptables-save`, its nftables table, or (ipvs) the IPVS
    /// table followed by `iptables-save`.
    fn kube_proxy_rules(&self, mode: &str) -> String {
        match mode {
            "nftables" => self.ns.exec("nft", &["list", "table", "ip", "kube-proxy"]),
            "ipvs" => self.ns.exec("ipvsadm", &["-Ln"]) + &self.ns.exec("iptables-save", &[]),
            _ => self.ns.exec("iptables-save", &[]),
        }
    }

    /// What kube-proxy's ipvs mode keeps besides iptables rules and is still there: IPVS
    /// virtual servers, `KUBE-` ipsets, the `kube-ipvs0` device (one line each).
    fn ipvs_state_left(&self) -> Vec<String> {
        let mut left: Vec<String> = self
            .ns
            .exec("ipvsadm", &["-Ln"])
            .lines()
            .filter(|l| l.starts_with("TCP") || l.starts_with("UDP") || l.starts_with("SCTP"))
            .map(|l| format!("IPVS virtual server {}", l.trim()))
            .collect();
        left.extend(
            self.ns
                .exec("ipset", &["list", "-n"])
                .lines()
                .filter(|l| l.starts_with("KUBE-"))
                .map(|l| format!("ipset {l}")),
        );
        if self
            .ns
            .output("ip", &["link", "show", "kube-ipvs0"])
            .status
            .success()
        {
            left.push("device kube-ipvs0".into());
        }
        left
    }

    /// flanneld's `run`th start (each with a log of its own).
    fn flanneld(&self, backend: &str, run: usize) -> Daemon {
        let conf = self.path("net-conf.json");
        std::fs::write(
            &conf,
            serde_json::json!({"Network": NETWORK, "Backend": {"Type": backend}}).to_string(),
        )
        .unwrap();
        let args: Vec<String> = [
            "--iface",
            "eth0",
            "--ip-masq",
            "--iptables-resync",
            "1",
            "--subnet-file",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            self.path("subnet.env").display().to_string(),
            "--net-config-path".into(),
            conf.display().to_string(),
            "--store-dir".into(),
            self.path("store").display().to_string(),
        ])
        .collect();
        Daemon::start(
            &self.ns,
            "flanneld",
            &program("flanneld", env!("CARGO_BIN_EXE_flanneld")),
            &args,
            self.path(&format!("flanneld-{run}.log")),
        )
    }

    /// flannel's subnet for this node (`FLANNEL_SUBNET` of subnet.env), once written.
    fn flannel_subnet(&self) -> ipnet::Ipv4Net {
        let file = self.path("subnet.env");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if let Some(s) = text
                .lines()
                .find_map(|l| l.strip_prefix("FLANNEL_SUBNET="))
                .and_then(|s| s.parse().ok())
            {
                return s;
            }
            assert!(Instant::now() < deadline, "flanneld wrote no subnet.env");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs podnet-cni `command` for the pod `pod`, with the bridge in flannel's subnet.
    fn cni(&self, command: &str, pod: &TestNs, subnet: ipnet::Ipv4Net) -> serde_json::Value {
        use std::io::Write;
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "podnet-foreign",
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "ipMasq": true,
            "ipam": {
                "type": "host-local",
                "dataDir": self.path("ipam"),
                "ranges": [[{"subnet": subnet.trunc().to_string(), "gateway": subnet.addr().to_string()}]],
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        });
        let mut child = self
            .ns
            .command(program("podnet-cni", env!("CARGO_BIN_EXE_podnet-cni")))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", "foreign-pod-1")
            .env("CNI_NETNS", format!("/run/netns/{}", pod.name()))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/nonexistent")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "podnet-cni {command}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// The Services kube-proxy reads: a NodePort and a UDP Service backed by `pod_ip`.
    fn write_services(&self, pod_ip: &str, node_port: u16) {
        let dir = self.path("kube-proxy");
        std::fs::create_dir_all(&dir).unwrap();
        let services = format!(
            "apiVersion: v1\nkind: List\nitems:\n\
             - apiVersion: v1\n  kind: Service\n  metadata: {{name: web, namespace: demo}}\n  \
               spec: {{type: NodePort, clusterIP: 10.96.0.10, ports: [{{name: http, port: 80, targetPort: 8080, nodePort: {node_port}, protocol: TCP}}]}}\n\
             - apiVersion: v1\n  kind: Service\n  metadata: {{name: dns, namespace: demo}}\n  \
               spec: {{clusterIP: 10.96.0.11, ports: [{{name: dns, port: 53, protocol: UDP}}]}}\n"
        );
        let slices = format!(
            "apiVersion: v1\nkind: List\nitems:\n\
             - apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n  \
               metadata: {{name: web-1, namespace: demo, labels: {{kubernetes.io/service-name: web}}}}\n  \
               addressType: IPv4\n  ports: [{{name: http, port: 8080, protocol: TCP}}]\n  \
               endpoints: [{{addresses: [{pod_ip}], nodeName: node1}}]\n\
             - apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n  \
               metadata: {{name: dns-1, namespace: demo, labels: {{kubernetes.io/service-name: dns}}}}\n  \
               addressType: IPv4\n  ports: [{{name: dns, port: 53, protocol: UDP}}]\n  \
               endpoints: [{{addresses: [{pod_ip}], nodeName: node1}}]\n"
        );
        std::fs::write(dir.join("services.yaml"), services).unwrap();
        std::fs::write(dir.join("slices.yaml"), slices).unwrap();
    }

    fn kube_proxy_args(&self, mode: &str) -> Vec<String> {
        [
            "--proxy-mode",
            mode,
            "--hostname-override",
            "node1",
            "--cluster-cidr",
            NETWORK,
            "--iptables-sync-period",
            "1s",
            "--iptables-min-sync-period",
            "100ms",
            "--config-dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([self.path("kube-proxy").display().to_string()])
        .collect()
    }

    /// kube-proxy's `run`th start (each with a log of its own).
    fn kube_proxy(&self, mode: &str, run: usize) -> Daemon {
        Daemon::start(
            &self.ns,
            "kube-proxy",
            &program("kube-proxy", env!("CARGO_BIN_EXE_kube-proxy")),
            &self.kube_proxy_args(mode),
            self.path(&format!("kube-proxy-{run}.log")),
        )
    }

    fn kube_proxy_cleanup(&self, mode: &str) {
        let out = self
            .ns
            .command(program("kube-proxy", env!("CARGO_BIN_EXE_kube-proxy")))
            .args(["--cleanup", "--proxy-mode", mode])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kube-proxy --cleanup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A rule line that appears twice in one chain of `nft list table` output.
fn rule_twice_in_a_chain(table: &str) -> Option<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut chain = String::new();
    for line in table.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("chain ") {
            chain = name.trim_end_matches(" {").to_owned();
            seen.clear();
        } else if line.starts_with("set ") || line.starts_with("map ") {
            chain.clear();
        } else if chain.is_empty() || line == "}" || line.is_empty() || line.starts_with("type ") {
            continue;
        } else if !seen.insert(line.to_owned()) {
            return Some(format!("{chain}: {line}"));
        }
    }
    None
}

/// Every binary on the foreign host, with flannel `backend` and kube-proxy in `mode`.
pub fn every_binary_keeps_the_foreign_host_intact(tag: &str, backend: &str, mode: &str) {
    let node = Node::new(tag);
    let pod = TestNs::new(&format!("{tag}-pod"));

    // flanneld, several resyncs.
    let flanneld = node.flanneld(backend, 1);
    let subnet = node.flannel_subnet();
    std::thread::sleep(Duration::from_millis(2500));
    node.assert_foreign_intact(&format!("flanneld ({backend}) started"));

    // A pod.
    let result = node.cni("ADD", &pod, subnet);
    let pod_ip = result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no address in {result}"))
        .to_owned();
    node.assert_foreign_intact("podnet-cni ADD");

    // kube-proxy: its first sync, a change, several full resyncs.
    node.write_services(&pod_ip, 30080);
    let mut kube_proxy = node.kube_proxy(mode, 1);
    kube_proxy.wait_for("synced", 1);
    node.assert_foreign_intact(&format!("kube-proxy ({mode}) started"));
    node.write_services(&pod_ip, 30081);
    // A sync for the edit, then full resyncs every second.
    kube_proxy.wait_for("synced", 4);
    node.assert_foreign_intact(&format!("kube-proxy ({mode}) resynced"));

    // Restarts.
    flanneld.stop();
    let flanneld = node.flanneld(backend, 2);
    kube_proxy.stop();
    let mut kube_proxy = node.kube_proxy(mode, 2);
    kube_proxy.wait_for("synced", 3);
    std::thread::sleep(Duration::from_millis(1500));
    node.assert_foreign_intact("flanneld and kube-proxy restarted");
    let ours = node.kube_proxy_rules(mode);
    assert!(
        ours.contains("30081"),
        "kube-proxy's rules after the restart:\n{ours}"
    );

    // Cleanup: the pod, kube-proxy, then flanneld stops (it has no cleanup).
    node.cni("DEL", &pod, subnet);
    kube_proxy.stop();
    node.kube_proxy_cleanup(mode);
    flanneld.stop();
    node.assert_foreign_intact("podnet-cni DEL, kube-proxy --cleanup");
    let after = HostState::read(&node.ns);
    let left: Vec<&str> = after
        .iptables_save()
        .lines()
        .filter(|l| !node.before.iptables_save().lines().any(|b| b == *l))
        .collect();
    // Only flannel's own chains and their jumps may stay.
    let not_flannel: Vec<&&str> = left.iter().filter(|l| !l.contains("FLANNEL-")).collect();
    assert!(
        not_flannel.is_empty(),
        "left behind by kube-proxy --cleanup or podnet-cni DEL:\n{not_flannel:#?}"
    );
    let tables = node.ns.exec("nft", &["list", "tables"]);
    assert!(!tables.contains("kube-proxy"), "{tables}");
    if mode == "ipvs" {
        let left = node.ipvs_state_left();
        assert!(
            left.is_empty(),
            "left behind by kube-proxy --cleanup: {left:#?}"
        );
    }
}
