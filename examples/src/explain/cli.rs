//! `podnet-cluster explain <pod> <destination>[:port]`.

use super::{Choice, Packet, Proto, Topology, explain, parse_destination, probe};

/// The arguments of `podnet-cluster explain`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExplainArgs {
    /// The source: a pod (`node1-pod1`), a node (`node2`), `fabric`, or a namespace name.
    pub source: String,
    /// The destination: an IPv4 address, a pod or node label, or `outside`, with an optional
    /// `:PORT`.
    pub destination: String,
    /// Protocol: icmp, tcp or udp (default: tcp with a port, icmp without).
    #[arg(long)]
    pub proto: Option<String>,
    /// Print the walk (and the probe's report) as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also send one real packet with nftables tracing on and compare the kernel's trace with
    /// the prediction.
    #[arg(long)]
    pub probe: bool,
    /// Follow this Service endpoint (`IP`, `IP:PORT` or `KUBE-SEP-...` chain) where kube-proxy
    /// spreads connections at random.
    #[arg(long)]
    pub endpoint: Option<String>,
}

/// Runs `podnet-cluster explain` on the cluster with namespace prefix `prefix`; the exit
/// status: 0 when the packet is delivered (and the trace agrees), 1 when it is not, 2 on
/// errors.
pub fn run(prefix: &str, args: &ExplainArgs) -> i32 {
    match try_run(prefix, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("podnet-cluster explain: {e}");
            2
        }
    }
}

fn try_run(prefix: &str, args: &ExplainArgs) -> Result<i32, super::ExplainError> {
    let topo = Topology::cluster(prefix)?;
    let (host, port) = parse_destination(&args.destination);
    let dst = topo.resolve(&host)?;
    let proto = match &args.proto {
        Some(p) => Proto::from_name(p).ok_or_else(|| {
            super::ExplainError::BadDestination(
                args.destination.clone(),
                format!("unknown protocol {p:?} (icmp, tcp, udp)"),
            )
        })?,
        None if port.is_some() => Proto::Tcp,
        None => Proto::Icmp,
    };
    let mut packet = Packet::new(proto, dst);
    packet.port = port;
    let choice = match &args.endpoint {
        Some(e) => Choice::Prefer(vec![e.clone()]),
        None => Choice::First,
    };
    if args.probe {
        let (walk, report) = probe(&topo, &args.source, &packet, &choice)?;
        if args.json {
            let v = serde_json::json!({"walk": walk.to_json(), "probe": report});
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            print!("{walk}");
            print!("{report}");
        }
        Ok(if walk.delivered() && report.agrees() {
            0
        } else {
            1
        })
    } else {
        let walk = explain(&topo, &args.source, &packet, &choice)?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&walk.to_json()).unwrap_or_default()
            );
        } else {
            print!("{walk}");
        }
        Ok(if walk.delivered() { 0 } else { 1 })
    }
}
