//! kube-proxy: a service proxy built from podnet's crates, fed by Service and EndpointSlice
//! objects in a directory (`--config-dir`, watched), with kube-proxy's flags where they apply.

use clap::{Parser, ValueEnum};
use ipnet::IpNet;
use podnet_examples::proxy::flags::{check_sync_periods, ipvs_scheduler, parse_duration};
use podnet_examples::proxy::node_addrs::NodeIpSource;
use podnet_examples::proxy::{
    IptablesMode, IpvsMode, Mode, NftablesMode, ProxyOptions, load_state, run,
};
use podnet_nat::kube::IpFamily;
use podnet_nat::kube_proxy::iptables_sync::Backend;
use podnet_nat::kube_proxy::{LocalDetector, MasqueradeMark, NodeSettings};
use podnet_netns::NetNs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "kube-proxy",
    version,
    about = "kube-proxy-style service proxy (podnet)"
)]
struct Args {
    /// iptables, nftables or ipvs.
    #[arg(long, default_value = "iptables")]
    proxy_mode: String,
    /// Directory of Service and EndpointSlice objects (YAML or JSON), watched for changes. A
    /// file that is malformed or empty (caught half-written) keeps its last good version, with
    /// a warning; a deleted file's objects are gone.
    #[arg(long)]
    config_dir: Option<PathBuf>,
    /// The pod network; traffic from outside it to services is masqueraded.
    #[arg(long)]
    cluster_cidr: Option<IpNet>,
    /// This node's name (endpoints with this nodeName are local).
    #[arg(long)]
    hostname_override: Option<String>,
    /// The mark bit for packets to masquerade (0 to 31).
    #[arg(
        long,
        default_value_t = 14,
        value_parser = clap::value_parser!(u8).range(0..=31),
        allow_hyphen_values = true
    )]
    masquerade_bit: u8,
    /// Masquerade all traffic to service IPs.
    #[arg(long)]
    masquerade_all: bool,
    /// Networks whose addresses accept NodePort traffic (default: all local addresses).
    #[arg(long, value_delimiter = ',')]
    nodeport_addresses: Vec<IpNet>,
    /// This node's addresses, primary first, used as given. Default: every address of the
    /// node's interfaces (any name) but loopback and kube-ipvs0, followed as they change; the
    /// primary is --bind-address when set, else the source of the route to the default gateway.
    #[arg(long, value_delimiter = ',')]
    node_ip: Vec<std::net::IpAddr>,
    /// The node's primary IP when set to a specific address (as kube-proxy's flag; 0.0.0.0:
    /// none given).
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: std::net::IpAddr,
    /// The Service CIDRs (nftables mode drops traffic to unallocated cluster IPs in them).
    #[arg(long, value_delimiter = ',')]
    service_cluster_ip_range: Vec<IpNet>,
    /// IPVS scheduler (ipvs mode).
    #[arg(long, default_value = "rr")]
    ipvs_scheduler: String,
    /// Which iptables implementation iptables mode uses: `system` (the `iptables-restore` on
    /// PATH), `legacy` (`iptables-legacy-restore`, the x_tables interface) or `nft`
    /// (`iptables-nft-restore`, nf_tables). podnet's own flag: upstream kube-proxy picks one by
    /// probing which has rules already.
    #[arg(long, value_enum, default_value = "system")]
    iptables_backend: IptablesBackend,
    /// Full resync period: a duration as kube-proxy takes it (`30s`, `1m`) or seconds (`30`);
    /// above zero.
    #[arg(long, default_value = "30s", value_parser = parse_duration, allow_hyphen_values = true)]
    iptables_sync_period: Duration,
    /// Minimum time between syncs (`1s`, `500ms`, `0.5`); at most the sync period.
    #[arg(long, default_value = "1s", value_parser = parse_duration, allow_hyphen_values = true)]
    iptables_min_sync_period: Duration,
    /// Remove what this mode installs (its own chains and jumps; in ipvs mode also its IPVS
    /// services, ipsets and kube-ipvs0; in nftables mode its tables) and nothing another
    /// program owns, then exit.
    #[arg(long)]
    cleanup: bool,
    /// Print what would be applied and exit, changing nothing.
    #[arg(long)]
    dry_run: bool,
    /// Where /metrics is served.
    #[arg(long, default_value = "127.0.0.1:10249")]
    metrics_bind_address: SocketAddr,
    /// Where /healthz is served.
    #[arg(long, default_value = "0.0.0.0:10256")]
    healthz_bind_address: SocketAddr,
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

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KUBE_PROXY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // Checked before anything is done, --dry-run and --cleanup included (upstream validates
    // its whole configuration first).
    if let Err(e) = check_sync_periods(args.iptables_sync_period, args.iptables_min_sync_period) {
        fail(e);
    }
    let scheduler = ipvs_scheduler(&args.ipvs_scheduler).unwrap_or_else(|e| fail(e));
    let ns = NetNs::current().unwrap_or_else(|e| fail(e.to_string()));
    let node = args.hostname_override.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into())
    });
    let mut settings = NodeSettings::new(node, IpFamily::V4);
    let node_ips = if args.node_ip.is_empty() {
        NodeIpSource::Kernel {
            ns: ns.clone(),
            bind_address: Some(args.bind_address).filter(|ip| !ip.is_unspecified()),
        }
    } else {
        NodeIpSource::Fixed(args.node_ip.clone())
    };
    settings.node_ips = node_ips.read(IpFamily::V4).unwrap_or_else(|e| fail(e));
    settings.masquerade_mark = MasqueradeMark::from_bit(args.masquerade_bit);
    settings.masquerade_all = args.masquerade_all;
    settings.nodeport_addresses = args.nodeport_addresses.clone();
    if let Some(c) = args.cluster_cidr {
        settings.local_detector = LocalDetector::ClusterCidr(c);
    }
    let mut mode: Box<dyn Mode> = match args.proxy_mode.as_str() {
        "iptables" => {
            Box::new(IptablesMode::new(ns, settings).with_backend(args.iptables_backend.into()))
        }
        "ipvs" if args.iptables_backend != IptablesBackend::System => fail(
            "--iptables-backend is not supported in ipvs mode yet: it uses the system's iptables"
                .into(),
        ),
        "ipvs" => {
            let ipvs = podnet_nat::kube_proxy::ipvs_mode::IpvsModeSettings {
                scheduler: podnet_nat::ipvs::Scheduler::from_name(scheduler),
                ..Default::default()
            };
            Box::new(IpvsMode::new(ns, settings, ipvs))
        }
        "nftables" => {
            let mut nft = podnet_nat::kube_proxy::nftables_mode::NftProxySettings::new(settings);
            nft.service_cidrs = args.service_cluster_ip_range.clone();
            Box::new(NftablesMode::new(ns, nft))
        }
        other => fail(format!(
            "unknown --proxy-mode {other:?} (iptables, nftables, ipvs)"
        )),
    };
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
    let dir = args
        .config_dir
        .clone()
        .unwrap_or_else(|| fail("--config-dir is required".into()));
    if args.dry_run {
        let state = load_state(&dir, IpFamily::V4);
        print!("{}", mode.dry_run(&state));
        return;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let http = podnet_examples::proxy::HttpAddresses {
        metrics: Some(args.metrics_bind_address),
        healthz: Some(args.healthz_bind_address),
    };
    let opts = ProxyOptions {
        config_dir: dir,
        sync_period: args.iptables_sync_period,
        min_sync_period: args.iptables_min_sync_period,
        http,
        node_ips,
    };
    if let Err(e) = run(mode, opts, IpFamily::V4, stop) {
        fail(e);
    }
}
