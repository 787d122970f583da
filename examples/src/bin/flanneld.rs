//! flanneld: a flannel-compatible node agent built from podnet's crates.
//!
//! Flags and `FLANNELD_*` variables follow flannel's where they apply. Leases live in etcd when
//! `--etcd-endpoints` is given (flannel's schema, so podnet and flannel nodes can share one
//! network), else in an embedded store directory (`--store-dir`). The network config comes from
//! `--net-config-path` or from `<etcd-prefix>/config`.
//!
//! With `--kube-subnet-mgr` the leases are the Kubernetes Nodes (flannel's kube subnet
//! manager): the subnet is the Node's `spec.podCIDRs`, the lease is published in the Node's
//! `flannel.alpha.coreos.com/*` annotations, the network config is the file
//! `--net-config-path` (default `/etc/kube-flannel/net-conf.json`), and the node's name comes
//! from `NODE_NAME` (or the pod named by `POD_NAMESPACE`/`POD_NAME`).

use clap::Parser;
use podnet_examples::flannel::{AgentOptions, run};
use podnet_ipam::{FileStore, ManagerOptions, Store, SubnetManager};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "flanneld",
    version,
    about = "flannel-compatible overlay agent (podnet)"
)]
struct Args {
    /// etcd endpoints, comma separated (e.g. http://127.0.0.1:2379). Without them leases live
    /// in the embedded store.
    #[arg(long, env = "FLANNELD_ETCD_ENDPOINTS", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// The CA that signed etcd's certificate, PEM (https endpoints; the system's roots when
    /// not given).
    #[arg(long, env = "FLANNELD_ETCD_CAFILE")]
    etcd_cafile: Option<std::path::PathBuf>,
    /// The client certificate for etcd's `--client-cert-auth`, PEM.
    #[arg(long, env = "FLANNELD_ETCD_CERTFILE")]
    etcd_certfile: Option<std::path::PathBuf>,
    /// The client certificate's key, PEM.
    #[arg(long, env = "FLANNELD_ETCD_KEYFILE")]
    etcd_keyfile: Option<std::path::PathBuf>,
    /// The etcd user, when etcd has authentication on.
    #[arg(long, env = "FLANNELD_ETCD_USERNAME")]
    etcd_username: Option<String>,
    /// The etcd user's password.
    #[arg(long, env = "FLANNELD_ETCD_PASSWORD", hide_env_values = true)]
    etcd_password: Option<String>,
    /// The etcd key prefix of the network.
    #[arg(long, env = "FLANNELD_ETCD_PREFIX", default_value = podnet_ipam::DEFAULT_PREFIX)]
    etcd_prefix: String,
    /// Use the Kubernetes API (the Nodes) for leases instead of etcd or the embedded store.
    #[arg(long, env = "FLANNELD_KUBE_SUBNET_MGR")]
    kube_subnet_mgr: bool,
    /// The Kubernetes API server's URL (overrides the kubeconfig's server).
    #[arg(long, env = "FLANNELD_KUBE_API_URL")]
    kube_api_url: Option<String>,
    /// A kubeconfig file; without it and without `--kube-api-url`, the in-cluster config.
    #[arg(long, env = "FLANNELD_KUBECONFIG_FILE")]
    kubeconfig_file: Option<PathBuf>,
    /// The prefix of the Node annotations flannel writes.
    #[arg(
        long,
        env = "FLANNELD_KUBE_ANNOTATION_PREFIX",
        default_value = "flannel.alpha.coreos.com"
    )]
    kube_annotation_prefix: String,
    /// Set the Node's NetworkUnavailable condition to False once the backend is up (kube
    /// mode); `--set-node-network-unavailable=false` turns it off.
    #[arg(
        long,
        env = "FLANNELD_SET_NODE_NETWORK_UNAVAILABLE",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    set_node_network_unavailable: bool,
    /// The embedded store's directory (used when no etcd endpoint is given).
    #[arg(
        long,
        env = "FLANNELD_STORE_DIR",
        default_value = "/var/lib/podnet/flannel"
    )]
    store_dir: PathBuf,
    /// The network config (net-conf.json); stored when the store has none. In kube mode the
    /// only source of the config; default `/etc/kube-flannel/net-conf.json` there.
    #[arg(long, env = "FLANNELD_NET_CONFIG_PATH")]
    net_config_path: Option<PathBuf>,
    /// The interface to use, by name or by one of its addresses (IPv4, or IPv6 on an
    /// IPv6-only network). Repeat it (or give a
    /// comma-separated list) to try each in order; the first that exists wins.
    #[arg(long, env = "FLANNELD_IFACE", value_delimiter = ',')]
    iface: Vec<String>,
    /// A regular expression matched against every interface's IPv4 addresses, then against
    /// the interface names; repeatable, tried in order after the `--iface` values.
    #[arg(long, env = "FLANNELD_IFACE_REGEX")]
    iface_regex: Vec<String>,
    /// Use the interface (and source address) of the route to this address, as
    /// `ip route get` answers; tried after `--iface` and `--iface-regex`.
    #[arg(long, env = "FLANNELD_IFACE_CAN_REACH")]
    iface_can_reach: Option<IpAddr>,
    /// The address other nodes send to (default: the interface's). Without any `--iface*`
    /// flag, the interface that holds this address is used.
    #[arg(long, env = "FLANNELD_PUBLIC_IP")]
    public_ip: Option<Ipv4Addr>,
    /// The IPv6 address other nodes send to, with `EnableIPv6` (default: the interface's
    /// first global IPv6 address). On an IPv6-only network without any `--iface*` flag, the
    /// interface that holds this address is used.
    #[arg(long, env = "FLANNELD_PUBLIC_IPV6")]
    public_ipv6: Option<Ipv6Addr>,
    /// Where to write subnet.env.
    #[arg(
        long,
        env = "FLANNELD_SUBNET_FILE",
        default_value = "/run/flannel/subnet.env"
    )]
    subnet_file: PathBuf,
    /// Renew the lease this many minutes before it expires (1 to 1439).
    #[arg(long, env = "FLANNELD_SUBNET_LEASE_RENEW_MARGIN", default_value_t = 60)]
    subnet_lease_renew_margin: u64,
    /// Install masquerade rules for traffic leaving the flannel network.
    #[arg(long, env = "FLANNELD_IP_MASQ")]
    ip_masq: bool,
    /// Masquerade without `--random-fully`.
    #[arg(long, env = "FLANNELD_IP_MASQ_FULLY_RANDOM_DISABLE")]
    ip_masq_fully_random_disable: bool,
    /// Accept the flannel network's traffic in the FORWARD chain (FLANNEL-FWD); on by
    /// default, `--iptables-forward-rules=false` turns it off.
    #[arg(
        long,
        env = "FLANNELD_IPTABLES_FORWARD_RULES",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    iptables_forward_rules: bool,
    /// Keep a blackhole route for this node's subnet (for setups without a bridge that
    /// routes it).
    #[arg(long, env = "FLANNELD_IP_BLACKHOLE_ROUTE")]
    ip_blackhole_route: bool,
    /// The healthz listen address.
    #[arg(long, env = "FLANNELD_HEALTHZ_IP", default_value = "0.0.0.0")]
    healthz_ip: IpAddr,
    /// The healthz port (0 disables it).
    #[arg(long, env = "FLANNELD_HEALTHZ_PORT", default_value_t = 0)]
    healthz_port: u16,
    /// Seconds between full reconciliations (routes, neighbours, FDB, masquerade rules).
    #[arg(long, env = "FLANNELD_IPTABLES_RESYNC", default_value_t = 5)]
    iptables_resync: u64,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLANNELD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let net_config_path = args.net_config_path.clone().or_else(|| {
        args.kube_subnet_mgr
            .then(|| PathBuf::from("/etc/kube-flannel/net-conf.json"))
    });
    let net_config = match &net_config_path {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => Some(t),
            Err(e) => fail(format!("reading {}: {e}", p.display())),
        },
        None => None,
    };
    let opts = AgentOptions {
        interface: podnet_examples::flannel::IfaceChoice {
            iface: args
                .iface
                .iter()
                .filter(|i| !i.is_empty())
                .cloned()
                .collect(),
            iface_regex: args.iface_regex.clone(),
            iface_can_reach: args.iface_can_reach,
            public_ip: args.public_ip,
            public_ipv6: args.public_ipv6,
        },
        subnet_file: args.subnet_file.clone(),
        ip_masq: args.ip_masq,
        ip_masq_random_fully: !args.ip_masq_fully_random_disable,
        iptables_forward_rules: args.iptables_forward_rules,
        blackhole_route: args.ip_blackhole_route,
        healthz: (args.healthz_port != 0)
            .then(|| SocketAddr::new(args.healthz_ip, args.healthz_port)),
        resync: Duration::from_secs(args.iptables_resync.max(1)),
        net_config,
    };
    // flannel's range: at least a minute, and less than the 24 h lease.
    let margin = args.subnet_lease_renew_margin;
    if !(1..24 * 60).contains(&margin) {
        fail(format!(
            "--subnet-lease-renew-margin {margin}: must be between 1 and 1439 minutes (less \
             than the 24 h lease)"
        ));
    }
    let manager_options =
        ManagerOptions::default().with_renew_margin(Duration::from_secs(margin * 60));
    let result = if args.kube_subnet_mgr {
        start_kube(&args, opts, stop)
    } else if args.etcd_endpoints.is_empty() {
        let store = FileStore::open(&args.store_dir)
            .unwrap_or_else(|e| fail(format!("store {}: {e}", args.store_dir.display())));
        start(store, &args, opts, manager_options, stop)
    } else {
        start_etcd(&args, opts, manager_options, stop)
    };
    if let Err(e) = result {
        fail(e.to_string());
    }
}

#[cfg(feature = "etcd")]
fn start_etcd(
    args: &Args,
    opts: AgentOptions,
    mo: ManagerOptions,
    stop: Arc<AtomicBool>,
) -> Result<(), podnet_examples::flannel::AgentError> {
    let config = podnet_ipam::EtcdConfig {
        endpoints: args.etcd_endpoints.clone(),
        tls: podnet_ipam::EtcdTls {
            ca_file: args.etcd_cafile.clone(),
            cert_file: args.etcd_certfile.clone(),
            key_file: args.etcd_keyfile.clone(),
        },
        username: args.etcd_username.clone(),
        password: args.etcd_password.clone(),
    };
    // The error names the endpoints and what failed (TLS file, handshake, credentials).
    let store =
        podnet_ipam::EtcdStore::connect_with(&config).unwrap_or_else(|e| fail(e.to_string()));
    start(store, args, opts, mo, stop)
}

#[cfg(not(feature = "etcd"))]
fn start_etcd(
    _: &Args,
    _: AgentOptions,
    _: ManagerOptions,
    _: Arc<AtomicBool>,
) -> Result<(), podnet_examples::flannel::AgentError> {
    fail("this flanneld was built without the etcd feature".into())
}

fn start<S: Store>(
    store: S,
    args: &Args,
    opts: AgentOptions,
    mo: ManagerOptions,
    stop: Arc<AtomicBool>,
) -> Result<(), podnet_examples::flannel::AgentError> {
    let sm = SubnetManager::with_prefix(store, &args.etcd_prefix).options(mo);
    run(sm, opts, stop)
}

#[cfg(not(feature = "kube"))]
fn start_kube(
    _: &Args,
    _: AgentOptions,
    _: Arc<AtomicBool>,
) -> Result<(), podnet_examples::flannel::AgentError> {
    fail("this flanneld was built without the kube feature (--kube-subnet-mgr)".into())
}

#[cfg(feature = "kube")]
fn start_kube(
    args: &Args,
    opts: AgentOptions,
    stop: Arc<AtomicBool>,
) -> Result<(), podnet_examples::flannel::AgentError> {
    use podnet_examples::flannel::kube::{KubeSubnetManager, KubeSubnetOptions};
    let api = podnet_examples::kubeapi::KubeOptions {
        kubeconfig: args.kubeconfig_file.clone(),
        master: args.kube_api_url.clone(),
    };
    let node_name = podnet_examples::flannel::kube::node_name_from_env(&api)?;
    let sm = KubeSubnetManager::connect(KubeSubnetOptions {
        api,
        annotation_prefix: args.kube_annotation_prefix.clone(),
        node_name,
        net_config: opts.net_config.clone().unwrap_or_default(),
        set_node_network_unavailable: args.set_node_network_unavailable,
        // flannel's nodeControllerSyncTimeout.
        sync_timeout: Duration::from_secs(600),
    })?;
    run(sm, opts, stop)
}

fn fail(msg: String) -> ! {
    eprintln!("flanneld: error: {msg}");
    std::process::exit(1);
}
