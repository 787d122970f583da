//! podnet-cluster: a simulated cluster in network namespaces.
//!
//! A fabric namespace holds the bridge `fabric0` that plays the physical L2 network
//! (198.18.0.0/24, the fabric itself at .254) and an "outside" address (198.19.0.1) that pods
//! reach only through masquerade. Each node is a namespace with an `eth0` into the fabric
//! (198.18.0.N), runs `flanneld` as a process, and has a `cni0` bridge with pods attached by
//! veth, addressed from the node's lease. Every namespace is named `<prefix>-...`, so `down`
//! finds and removes everything, even after the demo was killed with SIGKILL.

pub mod bench;
mod report;
pub mod services;
pub mod traffic;

pub use report::{CheckResult, Report, picture};
pub use traffic::{EchoServer, run_checks};

use ipnet::{IpNet, Ipv4Net};
use podnet_ipam::SubnetEnv;
use podnet_links::{Bridge, Handle, Route, Veth};
use podnet_netns::NetNs;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The fabric's address on the simulated L2 network.
pub const FABRIC_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
/// The "outside" address, reachable from pods only through masquerade.
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// The cluster network given to flannel.
pub const CLUSTER_NETWORK: &str = "10.244.0.0/16";
/// The port of the test API server in the fabric (kube mode).
pub const KUBE_API_PORT: u16 = 6443;

/// Errors of the cluster tool.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A namespace operation failed.
    #[error("{0}")]
    Netns(#[from] podnet_netns::NetNsError),
    /// A netlink operation failed.
    #[error("{0}")]
    Links(#[from] podnet_links::Error),
    /// Anything else, said in words.
    #[error("{0}")]
    Other(String),
}

fn other(msg: impl Into<String>) -> ClusterError {
    ClusterError::Other(msg.into())
}

/// How to build the cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// Namespace name prefix.
    pub prefix: String,
    /// flannel backend: vxlan, host-gw or udp.
    pub backend: String,
    /// Number of nodes.
    pub nodes: usize,
    /// Pods per node.
    pub pods: usize,
    /// Keep leases in a real etcd (started in the fabric) instead of the embedded store.
    pub etcd: bool,
    /// Serve etcd's clients over TLS with client certificates (`etcd` only): the server's and
    /// the nodes' certificates. The server certificate must name the fabric's address
    /// ([`FABRIC_IP`]).
    pub etcd_tls: Option<EtcdTlsFiles>,
    /// Kubernetes mode: run the test API server (`podnet-test-apiserver`, a fixture) in the
    /// fabric at [`KUBE_API_PORT`], create a Node object with a podCIDR for every node, and
    /// run flanneld with `--kube-subnet-mgr` (leases are the Nodes' annotations).
    pub kube: bool,
    /// The test API server binary, for `kube`.
    pub test_apiserver: PathBuf,
    /// Where logs, the store and subnet files go.
    pub state_dir: PathBuf,
    /// The flanneld binary.
    pub flanneld: PathBuf,
    /// Services to run kube-proxy for (a file of Service objects), if any.
    pub services: Option<PathBuf>,
    /// kube-proxy's `--proxy-mode`.
    pub proxy_mode: String,
    /// More kube-proxy flags (`--nftables-layout maps`, ...).
    pub kube_proxy_args: Vec<String>,
    /// The kube-proxy binary.
    pub kube_proxy: PathBuf,
    /// The CNI plugin that attaches pods.
    pub cni: PathBuf,
}

/// The PEM files of an etcd served over TLS with `--client-cert-auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTlsFiles {
    /// The CA that signed both certificates (etcd's `--trusted-ca-file`, flanneld's
    /// `--etcd-cafile`).
    pub ca: PathBuf,
    /// etcd's certificate and key.
    pub server_cert: PathBuf,
    /// etcd's key.
    pub server_key: PathBuf,
    /// The nodes' client certificate (flanneld's `--etcd-certfile`).
    pub client_cert: PathBuf,
    /// The nodes' client key (flanneld's `--etcd-keyfile`).
    pub client_key: PathBuf,
}

impl Options {
    /// etcd's client URL: `https://` when etcd serves TLS.
    pub fn etcd_endpoint(&self) -> String {
        let scheme = if self.etcd_tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{FABRIC_IP}:2379")
    }

    /// The test API server's URL, in kube mode.
    pub fn kube_api_url(&self) -> String {
        format!("http://{FABRIC_IP}:{KUBE_API_PORT}")
    }

    /// Defaults for `prefix`: 3 nodes, 2 pods, vxlan, state under /run/podnet-cluster.
    pub fn new(prefix: &str) -> Options {
        Options {
            prefix: prefix.to_owned(),
            backend: "vxlan".into(),
            nodes: 3,
            pods: 2,
            etcd: false,
            etcd_tls: None,
            kube: false,
            test_apiserver: sibling_binary("podnet-test-apiserver"),
            state_dir: state_dir(prefix),
            flanneld: sibling_binary("flanneld"),
            services: None,
            proxy_mode: "iptables".into(),
            kube_proxy_args: Vec::new(),
            kube_proxy: sibling_binary("kube-proxy"),
            cni: sibling_binary("podnet-cni"),
        }
    }
}

/// The state directory of the cluster with this prefix.
pub fn state_dir(prefix: &str) -> PathBuf {
    Path::new("/run/podnet-cluster").join(prefix)
}

/// A binary next to the running one (cargo puts all of a package's binaries together).
pub fn sibling_binary(name: &str) -> PathBuf {
    let me = std::env::current_exe().unwrap_or_default();
    let dir = me.parent().map(Path::to_path_buf).unwrap_or_default();
    // Test binaries live in target/<profile>/deps; the binaries one level up.
    let candidates = [dir.join(name), dir.join("..").join(name)];
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| candidates[0].clone())
}

/// One pod.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Node number (1-based).
    pub node: usize,
    /// Pod number on its node (1-based).
    pub index: usize,
    /// Its namespace.
    pub ns: NetNs,
    /// Its address.
    pub ip: Ipv4Addr,
}

impl Pod {
    /// `node1-pod2`.
    pub fn label(&self) -> String {
        format!("node{}-pod{}", self.node, self.index)
    }
}

/// One node.
#[derive(Debug)]
pub struct Node {
    /// Node number (1-based).
    pub index: usize,
    /// Its namespace.
    pub ns: NetNs,
    /// Its underlay address.
    pub ip: Ipv4Addr,
    /// Its lease.
    pub subnet: Option<Ipv4Net>,
    /// Its pods' MTU (FLANNEL_MTU).
    pub mtu: u32,
    /// The running flanneld.
    pub flanneld: Option<Child>,
    /// The running kube-proxy, with `--services`.
    pub kube_proxy: Option<Child>,
}

impl Node {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        self.ns.name().unwrap_or("?")
    }
}

/// A running simulated cluster.
#[derive(Debug)]
pub struct Cluster {
    /// How it was built.
    pub opts: Options,
    /// The fabric namespace.
    pub fabric: NetNs,
    /// The nodes.
    pub nodes: Vec<Node>,
    /// The pods.
    pub pods: Vec<Pod>,
    /// The etcd server, when `--etcd`.
    pub etcd: Option<Child>,
    /// The test API server, when `--kube`.
    pub apiserver: Option<Child>,
    /// The Services kube-proxy serves, with `--services`.
    pub services: Vec<services::ServiceUnderTest>,
}

fn ns_name(prefix: &str, rest: &str) -> String {
    format!("{prefix}-{rest}")
}

/// Names of existing namespaces that belong to the cluster `prefix`.
pub fn existing(prefix: &str) -> Vec<String> {
    let p = format!("{prefix}-");
    NetNs::list()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.starts_with(&p))
        .collect()
}

/// Kills every process inside `ns`.
fn kill_processes_in(ns: &NetNs) -> usize {
    let Ok(inode) = ns.inode() else { return 0 };
    let mut killed = 0;
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(meta) = fs::metadata(format!("/proc/{pid}/ns/net")) else {
            continue;
        };
        if meta.ino() == inode && pid != std::process::id() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            killed += 1;
        }
    }
    killed
}

/// Removes everything of the cluster `prefix`: processes inside its namespaces, the
/// namespaces (their devices go with them) and the state directory. Returns how many
/// namespaces it deleted. Works from any state, including after the demo was SIGKILLed.
pub fn down(prefix: &str) -> usize {
    let names = existing(prefix);
    for name in &names {
        if let Ok(ns) = NetNs::open(name) {
            kill_processes_in(&ns);
        }
    }
    for name in &names {
        if let Err(e) = NetNs::del(name) {
            eprintln!("warning: deleting {name}: {e}");
        }
    }
    let _ = fs::remove_dir_all(state_dir(prefix));
    names.len()
}

fn create_ns(name: &str) -> Result<NetNs, ClusterError> {
    let ns = NetNs::add(name)?;
    Handle::in_ns(&ns)?.link().set("lo").up().apply()?;
    Ok(ns)
}

fn net_conf(backend: &str) -> String {
    format!(r#"{{"Network": "{CLUSTER_NETWORK}", "Backend": {{"Type": "{backend}"}}}}"#)
}

/// Polls `f` every 50 ms until it returns `Some`, or fails after `timeout` with `what`
/// (`Duration::MAX`: waits as long as it takes).
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, ClusterError> {
    // No deadline when `timeout` is longer than the clock can count.
    let deadline = Instant::now().checked_add(timeout);
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(other(format!(
                "timed out after {timeout:?} waiting for {what}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Cluster {
    /// Builds the cluster: fabric, nodes, flanneld on every node (and etcd), then the pods.
    /// On failure everything built so far is removed.
    pub fn up(opts: Options, progress: &mut dyn FnMut(&str)) -> Result<Cluster, ClusterError> {
        if !matches!(opts.backend.as_str(), "vxlan" | "host-gw" | "udp") {
            return Err(other(format!(
                "unknown backend {:?} (choose vxlan, host-gw or udp)",
                opts.backend
            )));
        }
        if opts.nodes == 0 || opts.nodes > 200 {
            return Err(other("--nodes must be between 1 and 200"));
        }
        if !existing(&opts.prefix).is_empty() {
            return Err(other(format!(
                "a cluster with prefix {:?} exists already; run `podnet-cluster down` first",
                opts.prefix
            )));
        }
        if !opts.flanneld.exists() {
            return Err(other(format!(
                "flanneld not found at {} (build it: cargo build --release -p podnet-examples)",
                opts.flanneld.display()
            )));
        }
        match Self::build(opts.clone(), progress) {
            Ok(c) => Ok(c),
            Err(e) => {
                down(&opts.prefix);
                Err(e)
            }
        }
    }

    fn build(opts: Options, progress: &mut dyn FnMut(&str)) -> Result<Cluster, ClusterError> {
        let _ = fs::remove_dir_all(&opts.state_dir);
        fs::create_dir_all(&opts.state_dir)
            .map_err(|e| other(format!("{}: {e}", opts.state_dir.display())))?;
        progress("fabric: bridge fabric0 (198.18.0.254/24) and the outside address 198.19.0.1");
        let fabric = create_ns(&ns_name(&opts.prefix, "fabric"))?;
        let hf = Handle::in_ns(&fabric)?;
        hf.link().add(&Bridge::new("fabric0"))?;
        hf.addr()
            .add("fabric0", IpNet::new(FABRIC_IP.into(), 24).expect("prefix"))?;
        hf.addr().add(
            "fabric0",
            IpNet::new(OUTSIDE_IP.into(), 24).expect("prefix"),
        )?;
        hf.link().set("fabric0").up().apply()?;

        let mut cluster = Cluster {
            opts: opts.clone(),
            fabric,
            nodes: Vec::new(),
            pods: Vec::new(),
            etcd: None,
            apiserver: None,
            services: Vec::new(),
        };
        if opts.etcd {
            progress("etcd: starting a server in the fabric (198.18.0.254:2379)");
            cluster.start_etcd()?;
        }
        if opts.kube {
            progress(&format!(
                "kube: starting the test API server (a fixture) in the fabric ({}), with a \
                 Node and its podCIDR for every node",
                opts.kube_api_url()
            ));
            cluster.start_apiserver()?;
        }
        let conf_path = opts.state_dir.join("net-conf.json");
        fs::write(&conf_path, net_conf(&opts.backend)).map_err(|e| other(e.to_string()))?;
        for i in 1..=opts.nodes {
            let ip = Ipv4Addr::new(198, 18, 0, i as u8);
            progress(&format!("node{i}: eth0 {ip}/24 into the fabric"));
            let ns = create_ns(&ns_name(&opts.prefix, &format!("node{i}")))?;
            hf.link()
                .add(&Veth::new(format!("n{i}")).peer("eth0").peer_netns(&ns))?;
            hf.link()
                .set(format!("n{i}"))
                .master("fabric0")
                .up()
                .apply()?;
            let h = Handle::in_ns(&ns)?;
            h.addr()
                .add("eth0", IpNet::new(ip.into(), 24).expect("prefix"))?;
            h.link().set("eth0").up().apply()?;
            h.route()
                .add(&Route::new("0.0.0.0/0".parse().expect("literal")).via(FABRIC_IP.into()))?;
            ns.sysctl_set("net.ipv4.ip_forward", "1")?;
            cluster.nodes.push(Node {
                index: i,
                ns,
                ip,
                subnet: None,
                mtu: 1500,
                flanneld: None,
                kube_proxy: None,
            });
        }
        for i in 0..cluster.nodes.len() {
            progress(&format!(
                "node{}: starting flanneld ({} backend)",
                i + 1,
                opts.backend
            ));
            cluster.start_flanneld(i)?;
        }
        for i in 0..cluster.nodes.len() {
            let env = cluster.wait_subnet_env(i)?;
            let subnet = env
                .subnet
                .ok_or_else(|| other("subnet.env without FLANNEL_SUBNET"))?;
            cluster.nodes[i].subnet = Some(subnet.trunc());
            cluster.nodes[i].mtu = env.mtu;
            progress(&format!(
                "node{}: lease {} (MTU {}), {} pods attached with podnet-cni",
                i + 1,
                subnet.trunc(),
                env.mtu,
                opts.pods
            ));
            cluster.add_pods(i)?;
        }
        progress("waiting until every node has a route to every other node's pods");
        cluster.wait_ready(Duration::from_secs(30))?;
        if let Some(file) = opts.services.clone() {
            progress(&format!(
                "kube-proxy ({} mode) on every node for the Services in {}",
                opts.proxy_mode,
                file.display()
            ));
            cluster.services = services::write_config(&cluster, &file)?;
            // Service traffic between pods on one bridge must cross iptables (as kubeadm
            // requires): bridged packets go through the nat table.
            for n in &cluster.nodes {
                n.ns.sysctl_set("net.bridge.bridge-nf-call-iptables", "1")?;
            }
            for i in 0..cluster.nodes.len() {
                cluster.start_kube_proxy(i)?;
            }
            // Ready when /metrics reports a successful sync: the whole rule set is in (IPVS
            // services come after the iptables chains in ipvs mode).
            for n in &cluster.nodes {
                let ns = n.ns.clone();
                wait_for(Duration::from_secs(60), "kube-proxy's first sync", || {
                    ns.run(kube_proxy_synced).ok().filter(|ok| *ok)
                })?;
            }
        }
        Ok(cluster)
    }

    /// kube-proxy's config directory on node `index` (1-based).
    pub fn kube_proxy_dir(&self, index: usize) -> PathBuf {
        self.opts
            .state_dir
            .join(format!("node{index}"))
            .join("kube-proxy")
    }

    /// Starts (or restarts) kube-proxy on node `i` (0-based).
    pub fn start_kube_proxy(&mut self, i: usize) -> Result<(), ClusterError> {
        let node = &self.nodes[i];
        let dir = self.kube_proxy_dir(node.index);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("kube-proxy.log"))
            .map_err(|e| other(e.to_string()))?;
        let child = node
            .ns
            .command(&self.opts.kube_proxy)
            .arg("--config-dir")
            .arg(&dir)
            .args(["--proxy-mode", &self.opts.proxy_mode])
            .args(&self.opts.kube_proxy_args)
            .args(["--hostname-override", &format!("node{}", node.index)])
            .args(["--cluster-cidr", CLUSTER_NETWORK])
            .args(["--iptables-min-sync-period", "0.5"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| other(e.to_string()))?)
            .stderr(log)
            .spawn()
            .map_err(|e| other(format!("starting {}: {e}", self.opts.kube_proxy.display())))?;
        self.nodes[i].kube_proxy = Some(child);
        Ok(())
    }

    fn start_etcd(&mut self) -> Result<(), ClusterError> {
        let dir = self.opts.state_dir.join("etcd");
        let log = fs::File::create(self.opts.state_dir.join("etcd.log"))
            .map_err(|e| other(e.to_string()))?;
        let client = self.opts.etcd_endpoint();
        let mut cmd = self.fabric.command("etcd");
        cmd.args(["--name", "podnet", "--data-dir"])
            .arg(&dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            // /health on plain HTTP whatever the client URL's scheme.
            .args(["--listen-metrics-urls", &format!("http://{FABRIC_IP}:2381")]);
        if let Some(tls) = &self.opts.etcd_tls {
            cmd.arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--cert-file")
                .arg(&tls.server_cert)
                .arg("--key-file")
                .arg(&tls.server_key);
        }
        let child = cmd
            .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-cluster", "podnet=http://127.0.0.1:2380"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| other(e.to_string()))?)
            .stderr(log)
            .spawn()
            .map_err(|e| other(format!("starting etcd (Debian package etcd-server): {e}")))?;
        self.etcd = Some(child);
        let fabric = self.fabric.clone();
        wait_for(Duration::from_secs(15), "etcd to answer", || {
            fabric.run(traffic::etcd_healthy).ok().filter(|ok| *ok)
        })?;
        Ok(())
    }

    /// The podCIDR the test API server's Node object gives node `index` (1-based).
    pub fn kube_pod_cidr(index: usize) -> String {
        format!("10.244.{index}.0/24")
    }

    fn start_apiserver(&mut self) -> Result<(), ClusterError> {
        let nodes: Vec<serde_json::Value> = (1..=self.opts.nodes)
            .map(|i| {
                let cidr = Self::kube_pod_cidr(i);
                serde_json::json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": format!("node{i}")},
                    "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
            })
            .collect();
        let objects = self.opts.state_dir.join("kube-objects.json");
        fs::write(&objects, serde_json::Value::Array(nodes).to_string())
            .map_err(|e| other(e.to_string()))?;
        let log = fs::File::create(self.opts.state_dir.join("apiserver.log"))
            .map_err(|e| other(e.to_string()))?;
        let child = self
            .fabric
            .command(&self.opts.test_apiserver)
            .args(["--listen", &format!("{FABRIC_IP}:{KUBE_API_PORT}")])
            .arg("--objects")
            .arg(&objects)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| other(e.to_string()))?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                other(format!(
                    "starting {}: {e}",
                    self.opts.test_apiserver.display()
                ))
            })?;
        self.apiserver = Some(child);
        let fabric = self.fabric.clone();
        wait_for(
            Duration::from_secs(15),
            "the test API server to answer",
            || {
                fabric
                    .run(|| std::net::TcpStream::connect((FABRIC_IP, KUBE_API_PORT)).is_ok())
                    .ok()
                    .filter(|ok| *ok)
            },
        )?;
        Ok(())
    }

    /// Starts (or restarts) flanneld on node `i` (0-based).
    pub fn start_flanneld(&mut self, i: usize) -> Result<(), ClusterError> {
        let node = &self.nodes[i];
        let dir = self.opts.state_dir.join(format!("node{}", node.index));
        fs::create_dir_all(&dir).map_err(|e| other(e.to_string()))?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("flanneld.log"))
            .map_err(|e| other(e.to_string()))?;
        let mut cmd = node.ns.command(&self.opts.flanneld);
        cmd.args(["--iface", "eth0", "--ip-masq", "--iptables-resync", "2"])
            .arg("--subnet-file")
            .arg(dir.join("subnet.env"))
            .arg("--net-config-path")
            .arg(self.opts.state_dir.join("net-conf.json"));
        if self.opts.kube {
            cmd.args([
                "--kube-subnet-mgr",
                "--kube-api-url",
                &self.opts.kube_api_url(),
            ])
            .env("NODE_NAME", format!("node{}", node.index));
        } else if self.opts.etcd {
            cmd.args(["--etcd-endpoints", &self.opts.etcd_endpoint()]);
            if let Some(tls) = &self.opts.etcd_tls {
                cmd.arg("--etcd-cafile")
                    .arg(&tls.ca)
                    .arg("--etcd-certfile")
                    .arg(&tls.client_cert)
                    .arg("--etcd-keyfile")
                    .arg(&tls.client_key);
            }
        } else {
            cmd.arg("--store-dir")
                .arg(self.opts.state_dir.join("store"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| other(e.to_string()))?)
            .stderr(log)
            .spawn()
            .map_err(|e| other(format!("starting {}: {e}", self.opts.flanneld.display())))?;
        self.nodes[i].flanneld = Some(child);
        Ok(())
    }

    /// The last lines of flanneld's log on node `i` (0-based).
    fn flanneld_log_tail(&self, i: usize) -> String {
        let log = self
            .opts
            .state_dir
            .join(format!("node{}", i + 1))
            .join("flanneld.log");
        let text = fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    /// The subnet file of node `i` (0-based).
    pub fn subnet_file(&self, i: usize) -> PathBuf {
        self.opts
            .state_dir
            .join(format!("node{}", self.nodes[i].index))
            .join("subnet.env")
    }

    fn wait_subnet_env(&mut self, i: usize) -> Result<SubnetEnv, ClusterError> {
        let path = self.subnet_file(i);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(env)) = SubnetEnv::read(&path) {
                return Ok(env);
            }
            if let Some(child) = self.nodes[i].flanneld.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(other(format!(
                        "flanneld on node{} exited ({status}):\n{}",
                        i + 1,
                        self.flanneld_log_tail(i)
                    )));
                }
            }
            if Instant::now() >= deadline {
                return Err(other(format!(
                    "node{}: no subnet.env after 20 s; flanneld's log ends:\n{}",
                    i + 1,
                    self.flanneld_log_tail(i)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Attaches node `i`'s pods with podnet-cni, exactly as a container runtime would: the
    /// plugin runs inside the node's namespace with the node's lease as its host-local range.
    fn add_pods(&mut self, i: usize) -> Result<(), ClusterError> {
        let node = &self.nodes[i];
        let subnet = node.subnet.ok_or_else(|| other("node without a lease"))?;
        let data_dir = self
            .opts
            .state_dir
            .join(format!("node{}", node.index))
            .join("ipam");
        let conf = serde_json::json!({
            "cniVersion": "1.1.0",
            "name": "podnet",
            "type": "podnet-cni",
            "bridge": "cni0",
            "isGateway": true,
            "isDefaultGateway": true,
            // A pod reaching itself through a Service IP needs its port to send back out the
            // way the packet came (kubelet's hairpin-veth mode).
            "hairpinMode": true,
            "mtu": node.mtu,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": subnet.to_string()}]],
                "dataDir": data_dir.display().to_string(),
            },
        })
        .to_string();
        for j in 1..=self.opts.pods {
            let name = ns_name(&self.opts.prefix, &format!("node{}-pod{j}", node.index));
            let ns = create_ns(&name)?;
            let mut child = node
                .ns
                .command(&self.opts.cni)
                .env("CNI_COMMAND", "ADD")
                .env("CNI_CONTAINERID", &name)
                .env(
                    "CNI_NETNS",
                    format!("{}/{name}", podnet_netns::NETNS_RUN_DIR),
                )
                .env("CNI_IFNAME", "eth0")
                .env("CNI_PATH", "/usr/lib/cni")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| other(format!("starting {}: {e}", self.opts.cni.display())))?;
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write;
                stdin
                    .write_all(conf.as_bytes())
                    .map_err(|e| other(e.to_string()))?;
            }
            let out = child.wait_with_output().map_err(|e| other(e.to_string()))?;
            let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            if !out.status.success() {
                return Err(other(format!("podnet-cni ADD for {name} failed: {result}")));
            }
            let ip = result["ips"][0]["address"]
                .as_str()
                .and_then(|a| a.split('/').next())
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
                .ok_or_else(|| other(format!("podnet-cni gave no IPv4 address: {result}")))?;
            self.pods.push(Pod {
                node: node.index,
                index: j,
                ns,
                ip,
            });
        }
        Ok(())
    }

    /// Waits until every node routes to every other node's subnet.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), ClusterError> {
        let subnets: Vec<Ipv4Net> = self.nodes.iter().filter_map(|n| n.subnet).collect();
        let handles: Vec<Handle> = self
            .nodes
            .iter()
            .map(|n| Handle::in_ns(&n.ns))
            .collect::<Result<_, _>>()?;
        wait_for(timeout, "routes to every node's pods", || {
            let all = self.nodes.iter().zip(&handles).all(|(n, h)| {
                let routes = h.route().list().unwrap_or_default();
                subnets
                    .iter()
                    .filter(|s| Some(**s) != n.subnet)
                    .all(|s| routes.iter().any(|r| r.dst == IpNet::V4(*s)))
            });
            all.then_some(())
        })
    }

    /// Stops every process and removes every namespace of the cluster.
    pub fn down(mut self) -> usize {
        for n in &mut self.nodes {
            for mut c in [n.flanneld.take(), n.kube_proxy.take()]
                .into_iter()
                .flatten()
            {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for mut c in [self.etcd.take(), self.apiserver.take()]
            .into_iter()
            .flatten()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        down(&self.opts.prefix)
    }
}

/// `true` once kube-proxy in the current namespace reports a successful sync in `/metrics`
/// (`kubeproxy_sync_proxy_rules_last_timestamp_seconds` above zero). `/healthz` cannot say it:
/// like upstream's, it is healthy while kube-proxy starts.
fn kube_proxy_synced() -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 10249));
    let Ok((200, body)) = crate::http::get(addr, "/metrics") else {
        return false;
    };
    body.lines()
        .filter(|l| l.starts_with("kubeproxy_sync_proxy_rules_last_timestamp_seconds{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .any(|t| t > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_as_long_as_it_takes_works() {
        assert_eq!(wait_for(Duration::MAX, "a value", || Some(7)).unwrap(), 7);
        let mut n = 0;
        let err = wait_for(Duration::from_millis(60), "never", || {
            n += 1;
            None::<()>
        });
        assert!(err.is_err() && n >= 1);
    }
}
