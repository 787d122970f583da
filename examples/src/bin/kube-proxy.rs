//! kube-proxy: a service proxy built from podnet's crates, fed by the API server
//! (`--kubeconfig`, `--master`, or the in-cluster config) or by Service and EndpointSlice
//! objects in a directory (`--config-dir`, watched), with kube-proxy's flags where they apply.

use clap::{Parser, ValueEnum};
use ipnet::IpNet;
use podnet_examples::proxy::config::{
    DetectLocalMode, FileSettings, HEALTHZ_PORT, KubeProxyConfiguration, METRICS_PORT,
    NodePortAddresses, default_config_yaml, parse_bind_address,
};
use podnet_examples::proxy::flags::{
    ConntrackSettings, check_sync_periods, ipvs_scheduler, parse_duration,
};
use podnet_examples::proxy::node_addrs::NodeIpSource;
use podnet_examples::proxy::{
    FileInput, Input, IptablesMode, IpvsMode, Mode, NftablesMode, ProxyOptions, compile_read,
    run_with,
};
use podnet_nat::kube::IpFamily;
use podnet_nat::kube_proxy::iptables_sync::Backend;
use podnet_nat::kube_proxy::ipvs_mode::IpvsModeSettings;
use podnet_nat::kube_proxy::{LocalDetector, MasqueradeMark, NodeSettings};
use podnet_netns::NetNs;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "kube-proxy",
    version,
    about = "kube-proxy-style service proxy (podnet)",
    after_help = "Upstream's flags keep their names and syntax. Settings come from the defaults, \
                  then the --config file, then the flags given (which win). Upstream flags \
                  podnet does not implement (--feature-gates, --profiling, --kube-api-qps, \
                  --healthz-port, ...) are refused by name."
)]
struct Args {
    /// A KubeProxyConfiguration file (kubeproxy.config.k8s.io/v1alpha1, as kubeadm writes it).
    /// Flags given on the command line override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write the default configuration to this file and exit.
    #[arg(long)]
    write_config_to: Option<PathBuf>,
    /// Apply the settings that need full root privileges (conntrack sysctls, oom_score_adj),
    /// then exit.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    init_only: Option<bool>,
    /// iptables, nftables or ipvs (default iptables).
    #[arg(long)]
    proxy_mode: Option<String>,
    /// nftables mode only: `kube-proxy` (the default: exactly upstream's objects) or `maps`
    /// (endpoints in data maps, so an endpoint change only updates map elements; a podnet
    /// flag, not upstream's).
    #[arg(long)]
    nftables_layout: Option<podnet_nat::kube_proxy::nftables_maps::NftLayout>,
    /// Directory of Service and EndpointSlice objects (YAML or JSON; and this node's Node, for
    /// its zone), watched for changes, instead of the API server. A file that is malformed or
    /// empty (caught half-written) keeps its last good version, with a warning; a deleted
    /// file's objects are gone.
    #[arg(long, conflicts_with_all = ["kubeconfig", "master"])]
    config_dir: Option<PathBuf>,
    /// The kubeconfig file of the API server to list and watch Services, EndpointSlices, this
    /// node's Node and ServiceCIDRs from (overrides the --config file's
    /// clientConnection.kubeconfig). With neither this nor --master (nor --config-dir), the
    /// in-cluster config: the service account's token and CA and KUBERNETES_SERVICE_HOST/PORT.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The API server's address (overrides the kubeconfig's server).
    #[arg(long)]
    master: Option<String>,
    /// The pod network; with --detect-local-mode ClusterCIDR (the default), traffic from
    /// outside it to services is masqueraded.
    #[arg(long, value_delimiter = ',')]
    cluster_cidr: Vec<IpNet>,
    /// ClusterCIDR, BridgeInterface or InterfaceNamePrefix (NodeCIDR needs the Node object
    /// from the API server and is refused).
    #[arg(long)]
    detect_local_mode: Option<String>,
    /// The pods' bridge, for --detect-local-mode BridgeInterface.
    #[arg(long)]
    pod_bridge_interface: Option<String>,
    /// The pods' interface name prefix, for --detect-local-mode InterfaceNamePrefix.
    #[arg(long)]
    pod_interface_name_prefix: Option<String>,
    /// This node's name (endpoints with this nodeName are local).
    #[arg(long)]
    hostname_override: Option<String>,
    /// The mark bit for packets to masquerade (0 to 31, default 14).
    #[arg(
        long,
        value_parser = clap::value_parser!(u8).range(0..=31),
        allow_hyphen_values = true,
        conflicts_with = "masquerade_bit"
    )]
    iptables_masquerade_bit: Option<u8>,
    /// podnet's earlier name of --iptables-masquerade-bit.
    #[arg(
        long,
        hide = true,
        value_parser = clap::value_parser!(u8).range(0..=31),
        allow_hyphen_values = true
    )]
    masquerade_bit: Option<u8>,
    /// Masquerade all traffic to service IPs.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    masquerade_all: Option<bool>,
    /// Accept NodePort traffic to 127.0.0.1 (iptables mode, IPv4; default true).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    iptables_localhost_nodeports: Option<bool>,
    /// Networks whose addresses accept NodePort traffic, or `primary` (the node's primary IP);
    /// default: all local addresses.
    #[arg(long, value_delimiter = ',')]
    nodeport_addresses: Vec<String>,
    /// This node's addresses, primary first, used as given. Default: every address of the
    /// node's interfaces (any name) but loopback and kube-ipvs0, followed as they change; the
    /// primary is --bind-address when set, else the source of the route to the default gateway.
    #[arg(long, value_delimiter = ',')]
    node_ip: Vec<std::net::IpAddr>,
    /// The node's primary IP when set to a specific address (as kube-proxy's flag; 0.0.0.0:
    /// none given).
    #[arg(long)]
    bind_address: Option<std::net::IpAddr>,
    /// Accepted for compatibility: podnet always treats a port it cannot bind as fatal.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    bind_address_hard_fail: Option<bool>,
    /// The Service CIDRs (nftables mode drops traffic to unallocated cluster IPs in them).
    #[arg(long, value_delimiter = ',')]
    service_cluster_ip_range: Vec<IpNet>,
    /// IPVS scheduler (ipvs mode; default rr).
    #[arg(long)]
    ipvs_scheduler: Option<String>,
    /// CIDRs whose IPVS services ipvs mode leaves alone when cleaning up.
    #[arg(long, value_delimiter = ',')]
    ipvs_exclude_cidrs: Vec<IpNet>,
    /// Strict ARP (arp_ignore 1, arp_announce 2) in ipvs mode.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    ipvs_strict_arp: Option<bool>,
    /// IPVS idle TCP timeout (0: leave as is).
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true)]
    ipvs_tcp_timeout: Option<Duration>,
    /// IPVS TCP timeout after FIN (0: leave as is).
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true)]
    ipvs_tcpfin_timeout: Option<Duration>,
    /// IPVS UDP timeout (0: leave as is).
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true)]
    ipvs_udp_timeout: Option<Duration>,
    /// Which iptables implementation iptables mode uses: `system` (the `iptables-restore` on
    /// PATH), `legacy` (`iptables-legacy-restore`, the x_tables interface) or `nft`
    /// (`iptables-nft-restore`, nf_tables). podnet's own flag: upstream kube-proxy picks one by
    /// probing which has rules already.
    #[arg(long, value_enum, default_value = "system")]
    iptables_backend: IptablesBackend,
    /// Full resync period: a duration as kube-proxy takes it (`30s`, `1m`) or seconds (`30`);
    /// above zero (default 30s).
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true)]
    iptables_sync_period: Option<Duration>,
    /// Minimum time between syncs (`1s`, `500ms`, `0.5`); at most the sync period (default
    /// 1s).
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true)]
    iptables_min_sync_period: Option<Duration>,
    /// The full resync period in ipvs mode (default 30s).
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true)]
    ipvs_sync_period: Option<Duration>,
    /// The minimum time between syncs in ipvs mode (default 1s, as in the other modes;
    /// upstream's is 0s).
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true)]
    ipvs_min_sync_period: Option<Duration>,
    /// Conntrack entries per CPU core (nf_conntrack_max = max(this x cores, --conntrack-min)
    /// when larger than now; 0 leaves it). Only applied when given.
    #[arg(long)]
    conntrack_max_per_core: Option<u32>,
    /// The least nf_conntrack_max set with --conntrack-max-per-core.
    #[arg(long)]
    conntrack_min: Option<u32>,
    /// nf_conntrack_tcp_timeout_established (0: leave as is). Only applied when given.
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true)]
    conntrack_tcp_timeout_established: Option<Duration>,
    /// nf_conntrack_tcp_timeout_close_wait (0: leave as is). Only applied when given.
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true)]
    conntrack_tcp_timeout_close_wait: Option<Duration>,
    /// nf_conntrack_tcp_be_liberal = 1.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    conntrack_tcp_be_liberal: Option<bool>,
    /// nf_conntrack_udp_timeout (0: leave as is).
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true)]
    conntrack_udp_timeout: Option<Duration>,
    /// nf_conntrack_udp_timeout_stream (0: leave as is).
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true)]
    conntrack_udp_timeout_stream: Option<Duration>,
    /// The process's oom_score_adj (-1000 to 1000). Only applied when given.
    #[arg(long, value_parser = clap::value_parser!(i32).range(-1000..=1000), allow_hyphen_values = true)]
    oom_score_adj: Option<i32>,
    /// Log verbosity as upstream's klog `-v` (4 and up: debug, 6 and up: trace), unless
    /// KUBE_PROXY_LOG is set.
    #[arg(long = "v", short = 'v')]
    verbosity: Option<u8>,
    /// Remove what this mode installs (its own chains and jumps; in ipvs mode also its IPVS
    /// services, ipsets and kube-ipvs0; in nftables mode its tables) and nothing another
    /// program owns, then exit.
    #[arg(long)]
    cleanup: bool,
    /// Print what would be applied and exit, changing nothing.
    #[arg(long)]
    dry_run: bool,
    /// Where /metrics is served: IP:port, or an IP for port 10249 (default 127.0.0.1:10249;
    /// empty: not served).
    #[arg(long, value_parser = metrics_address)]
    metrics_bind_address: Option<BindAddress>,
    /// Where /healthz and /livez are served: IP:port, or an IP for port 10256 (default
    /// 0.0.0.0:10256; empty: not served).
    #[arg(long, value_parser = healthz_address)]
    healthz_bind_address: Option<BindAddress>,
}

/// `--iptables-backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum IptablesBackend {
    System,
    Legacy,
    Nft,
}

impl From<IptablesBackend> for Backend {
    fn from(b: IptablesBackend) -> Backend {
        match b {
            IptablesBackend::System => Backend::System,
            IptablesBackend::Legacy => Backend::Legacy,
            IptablesBackend::Nft => Backend::Nft,
        }
    }
}

fn fail(msg: String) -> ! {
    eprintln!("kube-proxy: error: {msg}");
    std::process::exit(1);
}

/// A bind address flag's value (`None`: empty, not served).
#[derive(Debug, Clone, Copy)]
struct BindAddress(Option<SocketAddr>);

fn healthz_address(text: &str) -> Result<BindAddress, String> {
    parse_bind_address(text, HEALTHZ_PORT).map(BindAddress)
}

fn metrics_address(text: &str) -> Result<BindAddress, String> {
    parse_bind_address(text, METRICS_PORT).map(BindAddress)
}

/// The settings, from the defaults, the `--config` file, and the flags given (which win).
#[derive(Debug)]
struct Resolved {
    mode: String,
    node: String,
    bind_address: Option<IpAddr>,
    healthz: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    masquerade_bit: u8,
    masquerade_all: bool,
    localhost_nodeports: bool,
    sync_period: Duration,
    min_sync_period: Duration,
    ipvs: IpvsModeSettings,
    detector: LocalDetector,
    nodeport_addresses: NodePortAddresses,
    conntrack: ConntrackSettings,
    oom_score_adj: Option<i32>,
}

fn resolve(args: &Args, file: &FileSettings) -> Result<Resolved, String> {
    let mode = args
        .proxy_mode
        .clone()
        .or_else(|| file.mode.clone())
        .unwrap_or_else(|| "iptables".into());
    let node = args
        .hostname_override
        .clone()
        .or_else(|| file.hostname_override.clone())
        .unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into())
        });
    let ipvs_mode = mode == "ipvs";
    let (sync_flag, min_flag) = if ipvs_mode {
        (
            args.ipvs_sync_period.or(args.iptables_sync_period),
            args.ipvs_min_sync_period.or(args.iptables_min_sync_period),
        )
    } else {
        (args.iptables_sync_period, args.iptables_min_sync_period)
    };
    let sync_period = sync_flag
        .or(file.sync_period)
        .unwrap_or(Duration::from_secs(30));
    let min_sync_period = min_flag
        .or(file.min_sync_period)
        .unwrap_or(Duration::from_secs(1));
    check_sync_periods(sync_period, min_sync_period)?;
    let scheduler = ipvs_scheduler(
        args.ipvs_scheduler
            .as_deref()
            .or(file.ipvs_scheduler.as_deref())
            .unwrap_or(""),
    )?
    .to_owned();
    let secs =
        |d: Option<Duration>| d.map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    let ipvs = IpvsModeSettings {
        scheduler: podnet_nat::ipvs::Scheduler::from_name(&scheduler),
        exclude_cidrs: if args.ipvs_exclude_cidrs.is_empty() {
            file.ipvs_exclude_cidrs.clone().unwrap_or_default()
        } else {
            args.ipvs_exclude_cidrs.clone()
        },
        strict_arp: args
            .ipvs_strict_arp
            .or(file.ipvs_strict_arp)
            .unwrap_or(false),
        timeouts: podnet_nat::ipvs::Timeouts {
            tcp: secs(args.ipvs_tcp_timeout.or(file.ipvs_timeouts[0])),
            tcp_fin: secs(args.ipvs_tcpfin_timeout.or(file.ipvs_timeouts[1])),
            udp: secs(args.ipvs_udp_timeout.or(file.ipvs_timeouts[2])),
        },
    };
    let cluster_cidrs = if args.cluster_cidr.is_empty() {
        file.cluster_cidr.clone().unwrap_or_default()
    } else {
        args.cluster_cidr.clone()
    };
    let detector = local_detector(args, file, &cluster_cidrs)?;
    let nodeport_addresses = if args.nodeport_addresses.is_empty() {
        file.nodeport_addresses
            .clone()
            .unwrap_or(NodePortAddresses::Cidrs(Vec::new()))
    } else {
        NodePortAddresses::parse(&args.nodeport_addresses)?
    };
    let conntrack = conntrack_settings(args, file);
    Ok(Resolved {
        node,
        bind_address: args
            .bind_address
            .or(file.bind_address)
            .filter(|ip| !ip.is_unspecified()),
        healthz: args
            .healthz_bind_address
            .map(|b| b.0)
            .or(file.healthz_bind_address)
            .unwrap_or(Some(SocketAddr::from(([0, 0, 0, 0], HEALTHZ_PORT)))),
        metrics: args
            .metrics_bind_address
            .map(|b| b.0)
            .or(file.metrics_bind_address)
            .unwrap_or(Some(SocketAddr::from(([127, 0, 0, 1], METRICS_PORT)))),
        masquerade_bit: args
            .iptables_masquerade_bit
            .or(args.masquerade_bit)
            .or(file.masquerade_bit)
            .unwrap_or(14),
        masquerade_all: args.masquerade_all.or(file.masquerade_all).unwrap_or(false),
        localhost_nodeports: args
            .iptables_localhost_nodeports
            .or(file.localhost_nodeports)
            .unwrap_or(true),
        sync_period,
        min_sync_period,
        ipvs,
        detector,
        nodeport_addresses,
        conntrack,
        oom_score_adj: args.oom_score_adj.or(file.oom_score_adj),
        mode,
    })
}

/// `--detect-local-mode` (or the file's `detectLocalMode`) and what it needs: how traffic from
/// this node's pods is told apart.
fn local_detector(
    args: &Args,
    file: &FileSettings,
    cluster_cidrs: &[ipnet::IpNet],
) -> Result<LocalDetector, String> {
    let detect_mode = match &args.detect_local_mode {
        Some(m) => DetectLocalMode::parse(m)?,
        None => file.detect_local_mode.clone(),
    };
    let bridge = args
        .pod_bridge_interface
        .clone()
        .or_else(|| file.pod_bridge_interface.clone());
    let prefix = args
        .pod_interface_name_prefix
        .clone()
        .or_else(|| file.pod_interface_name_prefix.clone());
    Ok(match detect_mode.unwrap_or(DetectLocalMode::ClusterCidr) {
        DetectLocalMode::ClusterCidr => match cluster_cidrs.first() {
            Some(c) => LocalDetector::ClusterCidr(*c),
            None => LocalDetector::None,
        },
        DetectLocalMode::NodeCidr => {
            return Err(
                "--detect-local-mode NodeCIDR: needs the Node object's podCIDR from \
                        the API server, which this build does not read"
                    .into(),
            );
        }
        DetectLocalMode::BridgeInterface => LocalDetector::BridgeInterface(
            bridge
                .filter(|b| !b.is_empty())
                .ok_or("--detect-local-mode BridgeInterface needs --pod-bridge-interface")?,
        ),
        DetectLocalMode::InterfaceNamePrefix => {
            LocalDetector::InterfaceNamePrefix(prefix.filter(|p| !p.is_empty()).ok_or(
                "--detect-local-mode InterfaceNamePrefix needs --pod-interface-name-prefix",
            )?)
        }
    })
}

/// The `--conntrack-*` flags over the file's `conntrack` section.
fn conntrack_settings(args: &Args, file: &FileSettings) -> ConntrackSettings {
    ConntrackSettings {
        max_per_core: args.conntrack_max_per_core.or(file.conntrack_max_per_core),
        min: args.conntrack_min.or(file.conntrack_min),
        tcp_established: args
            .conntrack_tcp_timeout_established
            .or(file.conntrack_tcp_established),
        tcp_close_wait: args
            .conntrack_tcp_timeout_close_wait
            .or(file.conntrack_tcp_close_wait),
        tcp_be_liberal: args
            .conntrack_tcp_be_liberal
            .or(file.conntrack_tcp_be_liberal)
            .unwrap_or(false),
        udp: args.conntrack_udp_timeout.or(file.conntrack_udp_timeout),
        udp_stream: args
            .conntrack_udp_timeout_stream
            .or(file.conntrack_udp_stream_timeout),
    }
}

/// The API server as the input (the `kube` feature's client).
#[cfg(feature = "kube")]
fn api_input(kubeconfig: Option<PathBuf>, master: Option<String>, node: &str) -> Box<dyn Input> {
    let api = podnet_examples::kubeapi::KubeOptions { kubeconfig, master };
    Box::new(
        podnet_examples::proxy::KubeInput::start(&api, node)
            .unwrap_or_else(|e| fail(format!("the API server: {e}"))),
    )
}

/// Without the `kube` feature there is no client: the config directory is the only input.
#[cfg(not(feature = "kube"))]
fn api_input(_: Option<PathBuf>, _: Option<String>, _: &str) -> Box<dyn Input> {
    fail("this build has no Kubernetes client (the kube feature); give --config-dir".into())
}

/// Logs to stderr at `KUBE_PROXY_LOG`'s filter, else at the level `-v` asks for.
fn init_logging(args: &Args) {
    let filter = std::env::var("KUBE_PROXY_LOG").ok().unwrap_or_else(|| {
        match args.verbosity.unwrap_or(0) {
            0..=3 => "info",
            4 | 5 => "debug",
            _ => "trace",
        }
        .into()
    });
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// The proxier of the resolved `--proxy-mode`, refusing flags of another mode.
fn make_mode(args: &Args, r: &Resolved, ns: NetNs, settings: NodeSettings) -> Box<dyn Mode> {
    match r.mode.as_str() {
        "iptables" => {
            Box::new(IptablesMode::new(ns, settings).with_backend(args.iptables_backend.into()))
        }
        "ipvs" if args.iptables_backend != IptablesBackend::System => fail(
            "--iptables-backend is not supported in ipvs mode yet: it uses the system's iptables"
                .into(),
        ),
        _ if args.nftables_layout.is_some() && r.mode != "nftables" => {
            fail("--nftables-layout is only for --proxy-mode nftables".into())
        }
        "ipvs" => Box::new(IpvsMode::new(ns, settings, r.ipvs.clone())),
        "nftables" => {
            let mut nft = podnet_nat::kube_proxy::nftables_mode::NftProxySettings::new(settings);
            nft.service_cidrs = args.service_cluster_ip_range.clone();
            Box::new(NftablesMode::with_layout(
                ns,
                nft,
                args.nftables_layout.unwrap_or_default(),
            ))
        }
        other => fail(format!(
            "unknown --proxy-mode {other:?} (iptables, nftables, ipvs)"
        )),
    }
}

fn main() {
    let args = Args::parse();
    init_logging(&args);
    if let Some(path) = &args.write_config_to {
        std::fs::write(path, default_config_yaml())
            .unwrap_or_else(|e| fail(format!("--write-config-to {}: {e}", path.display())));
        return;
    }
    let file = match &args.config {
        Some(path) => KubeProxyConfiguration::load(path)
            .and_then(|c| FileSettings::from_config(&c))
            .unwrap_or_else(|e| fail(format!("--config {}: {e}", path.display()))),
        None => FileSettings::default(),
    };
    // Checked before anything is done, --dry-run and --cleanup included (upstream validates
    // its whole configuration first).
    let r = resolve(&args, &file).unwrap_or_else(|e| fail(e));
    if let Some(adj) = r.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .unwrap_or_else(|e| fail(format!("--oom-score-adj {adj}: {e}")));
    }
    if !args.dry_run {
        for e in r.conntrack.apply() {
            // Upstream logs these and goes on (a read-only /proc/sys in a container).
            tracing::error!("{e}");
        }
    }
    if args.init_only == Some(true) {
        return;
    }
    let ns = NetNs::current().unwrap_or_else(|e| fail(e.to_string()));
    let mut settings = NodeSettings::new(r.node.clone(), IpFamily::V4);
    let node_ips = if args.node_ip.is_empty() {
        NodeIpSource::Kernel {
            ns: ns.clone(),
            bind_address: r.bind_address,
        }
    } else {
        NodeIpSource::Fixed(args.node_ip.clone())
    };
    settings.node_ips = node_ips.read(IpFamily::V4).unwrap_or_else(|e| fail(e));
    let settings_node_ips = settings.node_ips.clone();
    settings.masquerade_mark = MasqueradeMark::from_bit(r.masquerade_bit);
    settings.masquerade_all = r.masquerade_all;
    settings.localhost_nodeports = r.localhost_nodeports;
    settings.nodeport_addresses = match &r.nodeport_addresses {
        NodePortAddresses::Cidrs(c) => c.clone(),
        // The primary IP alone (the first of the node's addresses).
        NodePortAddresses::Primary => settings_node_ips
            .first()
            .map(|ip| vec![IpNet::from(*ip)])
            .unwrap_or_default(),
    };
    let nodeport_nets = settings.nodeport_addresses.clone();
    settings.local_detector = r.detector.clone();
    let mut mode = make_mode(&args, &r, ns, settings);
    if args.cleanup {
        match mode.cleanup() {
            Ok(kept) => {
                for k in kept {
                    tracing::warn!("cleanup left {k}: something else still uses it");
                }
            }
            Err(e) => fail(format!("cleanup: {e}")),
        }
        return;
    }
    let mut input: Box<dyn Input> = match &args.config_dir {
        Some(dir) => {
            if let Some(k) = &file.kubeconfig {
                tracing::warn!(
                    "clientConnection.kubeconfig {} is not used: --config-dir gives the objects",
                    k.display()
                );
            }
            Box::new(FileInput::new(dir))
        }
        None => api_input(
            args.kubeconfig.clone().or_else(|| file.kubeconfig.clone()),
            args.master.clone(),
            &r.node,
        ),
    };
    if args.dry_run {
        // From the API server: once every first list is complete.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while let Err(why) = input.synced() {
            if std::time::Instant::now() >= deadline {
                fail(format!("--dry-run: {why}"));
            }
            input.wait(Duration::from_millis(100));
        }
        if let Some(cidrs) = input.service_cidrs() {
            mode.set_service_cidrs(cidrs);
        }
        let state = compile_read(&input.read(), IpFamily::V4, &r.node);
        print!("{}", mode.dry_run(&state));
        return;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let http = podnet_examples::proxy::HttpAddresses {
        metrics: r.metrics,
        healthz: r.healthz,
    };
    // Upstream listens on the node's addresses within --nodeport-addresses, or on every
    // address (also when none of them matches).
    let health_check_addresses = settings_node_ips
        .iter()
        .copied()
        .filter(|ip| nodeport_nets.iter().any(|n| n.contains(ip)))
        .collect();
    let opts = ProxyOptions {
        config_dir: args.config_dir.clone().unwrap_or_default(),
        node_name: r.node.clone(),
        health_check_addresses,
        sync_period: r.sync_period,
        min_sync_period: r.min_sync_period,
        http,
        node_ips,
    };
    if let Err(e) = run_with(mode, opts, input, IpFamily::V4, stop) {
        fail(e);
    }
}
