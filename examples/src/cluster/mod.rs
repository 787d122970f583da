//! podnet-cluster: a simulated cluster in network namespaces.
//!
//! A fabric namespace holds the bridge `fabric0` that plays the physical L2 network
//! (198.18.0.0/24, the fabric itself at .254) and an "outside" address (198.19.0.1) that pods
//! reach only through masquerade. Each node is a namespace with an `eth0` into the fabric
//! (198.18.0.N), runs `flanneld` as a process, and has a `cni0` bridge with pods attached by
//! veth, addressed from the node's lease: each pod through flannel's shipped CNI config,
//! `{"type": "flannel"}`, run with podnet's plugins (flannel reading the node's `subnet.env`,
//! delegating to bridge and host-local). Every namespace is named `<prefix>-...`, so `down`
//! finds and removes everything, even after the demo was killed with SIGKILL.
//!
//! Dual-stack ([`Options::families`]): the fabric also has fd18::fe/64 (and the outside
//! address fd19::1), each node fd18::N/64, flannel gets `EnableIPv6` with `IPv6Network`
//! [`CLUSTER_NETWORK6`] (each node leases a /64 of it), and pods get an address of each family
//! from the node's two leases (host-local with two ranges, as flannel's CNI does with
//! `FLANNEL_IPV6_SUBNET`). IPv6-only: the same without the IPv4 flannel network
//! (`EnableIPv4: false`); the nodes keep their IPv4 underlay addresses.

pub mod bench;
mod dualstack;
mod report;
pub mod services;
pub mod traffic;

pub use dualstack::Families;
use dualstack::net_conf;
pub use report::{CheckResult, Report, picture};
pub use traffic::{EchoServer, run_checks};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use podnet_ipam::SubnetEnv;
use podnet_links::{Bridge, Handle, Route, Veth};
use podnet_netns::NetNs;
use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
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
/// The fabric's IPv6 address (dual-stack and IPv6-only clusters).
pub const FABRIC_IP6: Ipv6Addr = Ipv6Addr::new(0xfd18, 0, 0, 0, 0, 0, 0, 0xfe);
/// The "outside" IPv6 address, reachable from pods only through masquerade.
pub const OUTSIDE_IP6: Ipv6Addr = Ipv6Addr::new(0xfd19, 0, 0, 0, 0, 0, 0, 1);
/// The IPv6 cluster network given to flannel (`IPv6Network`; each node leases a /64).
pub const CLUSTER_NETWORK6: &str = "fd10:244::/56";
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
    /// The address families of the flannel network (`--ipv6`, `--ipv6-only`).
    pub families: Families,
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
            families: Families::V4,
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
    /// Its IPv4 address (`0.0.0.0` on an IPv6-only cluster).
    pub ip: Ipv4Addr,
    /// Its IPv6 address (dual-stack and IPv6-only clusters).
    pub ip6: Option<Ipv6Addr>,
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
    /// Its IPv6 underlay address (dual-stack and IPv6-only clusters).
    pub ip6: Option<Ipv6Addr>,
    /// Its lease (IPv4; `None` on an IPv6-only cluster).
    pub subnet: Option<Ipv4Net>,
    /// Its IPv6 lease (dual-stack and IPv6-only clusters).
    pub subnet6: Option<Ipv6Net>,
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

/// Makes node `i` (1-based): its namespace, its `eth0` into the fabric with its addresses
/// (IPv6 too on a dual-stack or IPv6-only cluster), default routes and forwarding.
fn add_node(
    opts: &Options,
    hf: &Handle,
    i: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<Node, ClusterError> {
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
    let ip6 = dualstack::node_ipv6(opts, &ns, &h, i, progress)?;
    Ok(Node {
        index: i,
        ns,
        ip,
        ip6,
        subnet: None,
        subnet6: None,
        mtu: 1500,
        flanneld: None,
        kube_proxy: None,
    })
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
        if opts.families.v6() && opts.backend == "udp" {
            return Err(other(
                "the udp backend is IPv4-only (as flannel's): --ipv6 needs vxlan or host-gw",
            ));
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
        if opts.families.v6() {
            for ip in [FABRIC_IP6, OUTSIDE_IP6] {
                let net = IpNet::new(ip.into(), 64).expect("prefix");
                hf.addr()
                    .add("fabric0", podnet_links::AddressSpec::new(net).nodad())?;
            }
        }

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
        fs::write(&conf_path, net_conf(&opts.backend, opts.families))
            .map_err(|e| other(e.to_string()))?;
        for i in 1..=opts.nodes {
            let node = add_node(&opts, &hf, i, progress)?;
            cluster.nodes.push(node);
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
            let subnet = env.subnet.map(|s| s.trunc());
            let subnet6 = env.ipv6_subnet.map(|s| s.trunc());
            if opts.families.v4() && subnet.is_none() {
                return Err(other("subnet.env without FLANNEL_SUBNET"));
            }
            if opts.families.v6() && subnet6.is_none() {
                return Err(other("subnet.env without FLANNEL_IPV6_SUBNET"));
            }
            cluster.nodes[i].subnet = subnet;
            cluster.nodes[i].subnet6 = subnet6;
            cluster.nodes[i].mtu = env.mtu;
            let leases: Vec<String> = subnet
                .map(|s| s.to_string())
                .into_iter()
                .chain(subnet6.map(|s| s.to_string()))
                .collect();
            progress(&format!(
                "node{}: lease {} (MTU {}), {} pods attached through podnet's flannel CNI plugin",
                i + 1,
                leases.join(" + "),
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
            // services come after the iptables chains in ipvs mode). Generous: in a qemu guest
            // under emulation on a busy host a first sync was seen to take 52 s.
            for n in &cluster.nodes {
                let ns = n.ns.clone();
                wait_for(Duration::from_secs(180), "kube-proxy's first sync", || {
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

    /// The IPv6 podCIDR the test API server's Node object gives node `index` (1-based), on a
    /// dual-stack or IPv6-only cluster.
    pub fn kube_pod_cidr6(index: usize) -> String {
        format!("fd10:244:0:{index:x}::/64")
    }

    fn start_apiserver(&mut self) -> Result<(), ClusterError> {
        let nodes: Vec<serde_json::Value> = (1..=self.opts.nodes)
            .map(|i| {
                let mut cidrs = Vec::new();
                if self.opts.families.v4() {
                    cidrs.push(Self::kube_pod_cidr(i));
                }
                if self.opts.families.v6() {
                    cidrs.push(Self::kube_pod_cidr6(i));
                }
                serde_json::json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": format!("node{i}")},
                    "spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs}})
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

    /// Attaches node `i`'s pods as a container runtime would with flannel's shipped CNI
    /// config: `{"type": "flannel"}` chained with `portmap` (podnet's, from a `CNI_PATH`
    /// directory of links to the podnet-cni binary); flannel reads the `subnet.env` podnet's
    /// flanneld wrote on the node and delegates to `bridge` with host-local IPAM, both podnet's
    /// from the same directory. Each plugin runs inside the node's namespace.
    fn add_pods(&mut self, i: usize) -> Result<(), ClusterError> {
        let node = &self.nodes[i];
        let node_dir = self.opts.state_dir.join(format!("node{}", node.index));
        let cni_path = self.opts.state_dir.join("cni-bin");
        crate::cni::install_links(&self.opts.cni, &cni_path)
            .map_err(|e| other(format!("CNI_PATH {}: {e}", cni_path.display())))?;
        let conflist = pod_conflist(&self.subnet_file(i), &node_dir);
        for j in 1..=self.opts.pods {
            let name = ns_name(&self.opts.prefix, &format!("node{}-pod{j}", node.index));
            let ns = create_ns(&name)?;
            let netns = format!("{}/{name}", podnet_netns::NETNS_RUN_DIR);
            let result = run_conflist(&node.ns, &cni_path, &conflist, &name, &netns)?;
            let addrs: Vec<std::net::IpAddr> = result["ips"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["address"].as_str()?.split('/').next()?.parse().ok())
                .collect();
            let ip = addrs.iter().find_map(|a| match a {
                std::net::IpAddr::V4(a) => Some(*a),
                _ => None,
            });
            let ip6 = addrs.iter().find_map(|a| match a {
                std::net::IpAddr::V6(a) => Some(*a),
                _ => None,
            });
            if (node.subnet.is_some() && ip.is_none()) || (node.subnet6.is_some() && ip6.is_none())
            {
                return Err(other(format!(
                    "the flannel plugin gave no address of each family: {result}"
                )));
            }
            self.pods.push(Pod {
                node: node.index,
                index: j,
                ns,
                ip: ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                ip6,
            });
        }
        Ok(())
    }

    /// Waits until every node routes to every other node's subnet.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), ClusterError> {
        let subnets: Vec<IpNet> = self
            .nodes
            .iter()
            .flat_map(|n| {
                n.subnet
                    .map(IpNet::V4)
                    .into_iter()
                    .chain(n.subnet6.map(IpNet::V6))
            })
            .collect();
        let handles: Vec<Handle> = self
            .nodes
            .iter()
            .map(|n| Handle::in_ns(&n.ns))
            .collect::<Result<_, _>>()?;
        wait_for(timeout, "routes to every node's pods", || {
            let all = self.nodes.iter().zip(&handles).all(|(n, h)| {
                let routes = h.route().list().unwrap_or_default();
                let own = |s: &IpNet| {
                    n.subnet.map(IpNet::V4) == Some(*s) || n.subnet6.map(IpNet::V6) == Some(*s)
                };
                subnets
                    .iter()
                    .filter(|s| !own(s))
                    .all(|s| routes.iter().any(|r| r.dst == *s))
            });
            all.then_some(())
        })?;
        if self.opts.families.v6() {
            self.wait_ipv6_settled(timeout)?;
        }
        Ok(())
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

/// The pods' network: flannel's shipped `10-flannel.conflist` (kube-flannel.yml's
/// `cni-conf.json`), with this node's `subnet.env` and data directories under the cluster's
/// state directory instead of `/run/flannel` and `/var/lib/cni`. A pod reaching itself
/// through a Service IP needs its port to send back out the way the packet came (kubelet's
/// hairpin-veth mode): `hairpinMode`, as flannel ships it.
fn pod_conflist(subnet_file: &Path, node_dir: &Path) -> serde_json::Value {
    serde_json::json!({
        "name": "cbr0",
        "cniVersion": "1.1.0",
        "plugins": [{
            "type": "flannel",
            "subnetFile": subnet_file.display().to_string(),
            "dataDir": node_dir.join("flannel").display().to_string(),
            "delegate": {"hairpinMode": true, "isDefaultGateway": true},
            "ipam": {"dataDir": node_dir.join("ipam").display().to_string()},
        }, {
            // As kube-flannel.yml's conflist: hostPort mappings, when the runtime gives any.
            "type": "portmap",
            "capabilities": {"portMappings": true},
        }],
    })
}

/// ADD of a conflist as a runtime runs it: each plugin from `cni_path` in turn, inside `node`,
/// with the list's `name` and `cniVersion` and the previous plugin's result as `prevResult`.
/// Returns the last result.
fn run_conflist(
    node: &NetNs,
    cni_path: &Path,
    conflist: &serde_json::Value,
    id: &str,
    netns: &str,
) -> Result<serde_json::Value, ClusterError> {
    let mut prev: Option<serde_json::Value> = None;
    for plugin in conflist["plugins"].as_array().into_iter().flatten() {
        let mut conf = plugin.clone();
        conf["name"] = conflist["name"].clone();
        conf["cniVersion"] = conflist["cniVersion"].clone();
        if let Some(p) = prev.take() {
            conf["prevResult"] = p;
        }
        let ty = conf["type"].as_str().unwrap_or_default().to_owned();
        let mut child = node
            .command(cni_path.join(&ty))
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| other(format!("starting the {ty} plugin: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin
                .write_all(conf.to_string().as_bytes())
                .map_err(|e| other(e.to_string()))?;
        }
        let out = child.wait_with_output().map_err(|e| other(e.to_string()))?;
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if !out.status.success() {
            return Err(other(format!(
                "{ty} ADD for {id} failed: {result} {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        prev = Some(result);
    }
    prev.ok_or_else(|| other("the pods' conflist has no plugin"))
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
