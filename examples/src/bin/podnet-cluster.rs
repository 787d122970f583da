//! podnet-cluster: build a simulated cluster in network namespaces, run real traffic through
//! it, show it, and tear it down.
//!
//! ```text
//! podnet-cluster demo [--backend vxlan|host-gw|udp] [--nodes N] [--pods M] [--etcd | --kube]
//!                     [--ipv6 | --ipv6-only]
//! podnet-cluster up ... / down / bench
//! podnet-cluster explain SRC DST[:PORT] [--svg FILE] [--html FILE] [--record FILE]
//! podnet-cluster show --svg FILE
//! ```

use clap::{Parser, Subcommand};
use podnet_examples::cluster::{self, Cluster, Options, picture, run_checks};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

#[derive(Debug, Parser)]
#[command(
    name = "podnet-cluster",
    version,
    about = "a simulated cluster in network namespaces"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
    /// flannel backend.
    #[arg(long, global = true, default_value = "vxlan")]
    backend: String,
    /// Number of nodes.
    #[arg(long, global = true, default_value_t = 3)]
    nodes: usize,
    /// Pods per node.
    #[arg(long, global = true, default_value_t = 2)]
    pods: usize,
    /// Keep leases in a real etcd server (Debian etcd-server) started in the fabric.
    #[arg(long, global = true)]
    etcd: bool,
    /// Kubernetes mode: a test API server (a fixture) in the fabric holds a Node per node,
    /// and flanneld runs with --kube-subnet-mgr.
    #[arg(long, global = true, conflicts_with = "etcd")]
    kube: bool,
    /// Run kube-proxy on every node for the Services in this file (YAML or JSON), with echo
    /// servers in every pod as their endpoints.
    #[arg(long, global = true)]
    services: Option<std::path::PathBuf>,
    /// kube-proxy's mode, with --services.
    #[arg(long, global = true, default_value = "iptables")]
    proxy_mode: String,
    /// Dual-stack: nodes and pods also get IPv6 addresses, flannel runs with EnableIPv6
    /// (IPv6Network fd10:244::/56); vxlan or host-gw.
    #[arg(long, global = true)]
    ipv6: bool,
    /// An IPv6-only flannel network (EnableIPv4: false): pods get IPv6 addresses only.
    #[arg(long, global = true, conflicts_with = "ipv6")]
    ipv6_only: bool,
    /// Prefix of every namespace the cluster makes.
    #[arg(long, global = true, default_value = "podnet")]
    prefix: String,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build the cluster and leave it running.
    Up,
    /// Build it, check traffic between every pair of pods on different nodes and to the
    /// outside, print the picture and the results, and tear it down. Exit status 0 only when
    /// every check passed.
    Demo,
    /// Remove everything a cluster with this prefix made (also after a killed demo).
    Down,
    /// iperf3 pod to pod across two nodes for each backend, and over a plain veth pair.
    Bench {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u32,
        /// Backends to measure (default: vxlan, host-gw, udp).
        #[arg(long, value_delimiter = ',')]
        backends: Vec<String>,
        /// Interleaved rounds; each path keeps its best.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Explain the path a packet takes from a pod to a destination (`IP`, a pod, `outside`,
    /// with an optional `:PORT`), hop by hop, from the live kernel state of a cluster made by
    /// `up`; `--probe` confirms it with a traced packet.
    Explain(podnet_examples::explain::ExplainArgs),
    /// Draw the cluster (fabric, nodes, bridges, veth pairs, tunnel devices, pods, with their
    /// addresses) as SVG or as an HTML page, without a packet.
    Show(podnet_examples::explain::ShowArgs),
}

fn main() {
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let mut opts = Options::new(&args.prefix);
    opts.backend = args.backend.clone();
    opts.nodes = args.nodes;
    opts.pods = args.pods;
    opts.etcd = args.etcd;
    opts.kube = args.kube;
    opts.services = args.services.clone();
    opts.proxy_mode = args.proxy_mode.clone();
    opts.families = match (args.ipv6, args.ipv6_only) {
        (_, true) => cluster::Families::V6,
        (true, false) => cluster::Families::Dual,
        (false, false) => cluster::Families::V4,
    };
    let code = match args.cmd {
        Cmd::Down => {
            let n = cluster::down(&args.prefix);
            println!("removed {n} namespaces of cluster {:?}", args.prefix);
            0
        }
        Cmd::Up => match up(opts) {
            Ok(c) => {
                print!("{}", picture(&c));
                println!(
                    "cluster {:?} is up; `podnet-cluster down --prefix {}` removes it",
                    args.prefix, args.prefix
                );
                0
            }
            Err(code) => code,
        },
        Cmd::Demo => demo(opts, &stop),
        Cmd::Bench {
            seconds,
            backends,
            rounds,
        } => bench(opts, seconds, backends, rounds),
        Cmd::Explain(a) => podnet_examples::explain::run_cli(&args.prefix, &a),
        Cmd::Show(a) => podnet_examples::explain::run_show(&args.prefix, &a),
    };
    std::process::exit(code);
}

fn up(opts: Options) -> Result<Cluster, i32> {
    let start = Instant::now();
    let mut progress = |msg: &str| eprintln!("[{:5.1}s] {msg}", start.elapsed().as_secs_f64());
    Cluster::up(opts, &mut progress).map_err(|e| {
        eprintln!("podnet-cluster: error: {e}");
        1
    })
}

fn demo(opts: Options, stop: &AtomicBool) -> i32 {
    let backend = opts.backend.clone();
    let cluster = match up(opts) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if stop.load(Ordering::Relaxed) {
        eprintln!("interrupted: tearing down");
        cluster.down();
        return 130;
    }
    eprintln!("running traffic checks");
    let report = run_checks(&cluster, stop);
    println!(
        "\npodnet-cluster: {} nodes x {} pods, flannel {backend} backend\n",
        cluster.nodes.len(),
        cluster.opts.pods
    );
    print!("{}", picture(&cluster));
    println!("\nresults:");
    print!("{report}");
    let interrupted = stop.load(Ordering::Relaxed);
    let removed = cluster.down();
    eprintln!("torn down: {removed} namespaces removed");
    if interrupted {
        130
    } else if report.passed() {
        println!("\nall checks passed");
        0
    } else {
        println!("\nSOME CHECKS FAILED");
        1
    }
}

fn bench(opts: Options, secs: u32, backends: Vec<String>, rounds: usize) -> i32 {
    let backends: Vec<String> = if backends.is_empty() {
        vec!["vxlan".into(), "host-gw".into(), "udp".into()]
    } else {
        backends
    };
    let names: Vec<&str> = backends.iter().map(String::as_str).collect();
    let start = Instant::now();
    let mut progress = |msg: &str| eprintln!("[{:5.1}s] {msg}", start.elapsed().as_secs_f64());
    match cluster::bench::run(&opts, &names, secs, rounds, &mut progress) {
        Ok(results) => {
            let limit = results[0].gbps;
            println!(
                "\niperf3 TCP, one stream, {secs} s, pod to pod across two nodes (best of {rounds} interleaved rounds):"
            );
            println!("  {:<22} {:>10} {:>10}", "path", "Gbit/s", "vs veth");
            for r in &results {
                println!("  {:<22} {:>10.2} {:>9.2}x", r.path, r.gbps, r.gbps / limit);
            }
            0
        }
        Err(e) => {
            eprintln!("podnet-cluster: bench failed: {e}");
            for b in &backends {
                cluster::down(&format!("{}-{}", opts.prefix, b.replace('-', "")));
            }
            1
        }
    }
}
