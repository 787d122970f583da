//! `podnet-cluster explain <pod> <destination>[:port]` and `podnet-cluster show`.

use super::{Choice, Packet, Proto, Recording, Topology, Walk, explain, parse_destination, probe};
use std::path::{Path, PathBuf};

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
    /// Also draw the topology and the packet's path as SVG into this file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Also write one self-contained HTML page (the picture and the text walk) into this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Record the state the walk read (every table of every namespace, and the route lookups
    /// of this walk) into this JSON file, adding to what it already holds.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Walk a recording (made with `--record`) instead of the live cluster; needs no root.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
}

/// The arguments of `podnet-cluster show`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// Draw the cluster as SVG into this file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Write the picture as one self-contained HTML page into this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Draw a recording (made with `explain --record`) instead of the live cluster.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
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

/// Runs `podnet-cluster show`: draws the cluster (live, or a recording) without a packet.
pub fn run_show(prefix: &str, args: &ShowArgs) -> i32 {
    let drawn = topology(prefix, args.replay.as_deref()).and_then(|topo| {
        let rec = topo.record(&[])?;
        draw(&rec, None, args.svg.as_deref(), args.html.as_deref())
    });
    match drawn {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("podnet-cluster show: {e}");
            2
        }
    }
}

fn topology(prefix: &str, replay: Option<&Path>) -> Result<Topology, super::ExplainError> {
    match replay {
        Some(path) => Ok(Topology::recorded(Recording::load(path)?)),
        None => Topology::cluster(prefix),
    }
}

fn write(path: &Path, text: &str) -> Result<(), super::ExplainError> {
    std::fs::write(path, text)
        .map_err(|e| super::ExplainError::Recording(path.display().to_string(), e.to_string()))
}

/// Writes the picture files asked for.
fn draw(
    rec: &Recording,
    walk: Option<&Walk>,
    svg: Option<&Path>,
    html: Option<&Path>,
) -> Result<(), super::ExplainError> {
    if let Some(p) = svg {
        write(p, &super::picture::svg(rec, walk))?;
    }
    if let Some(p) = html {
        write(p, &super::picture::html(rec, walk))?;
    }
    Ok(())
}

fn packet_and_choice(
    topo: &Topology,
    args: &ExplainArgs,
) -> Result<(Packet, Choice), super::ExplainError> {
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
    Ok((packet, choice))
}

fn try_run(prefix: &str, args: &ExplainArgs) -> Result<i32, super::ExplainError> {
    let topo = topology(prefix, args.replay.as_deref())?;
    let (packet, choice) = packet_and_choice(&topo, args)?;
    if args.probe {
        let (walk, report) = probe(&topo, &args.source, &packet, &choice)?;
        if args.json {
            let v = serde_json::json!({"walk": walk.to_json(), "probe": report});
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            print!("{walk}");
            print!("{report}");
        }
        pictures(&topo, args, &walk, &packet, &choice)?;
        return Ok(if walk.delivered() && report.agrees() {
            0
        } else {
            1
        });
    }
    let walk = explain(&topo, &args.source, &packet, &choice)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&walk.to_json()).unwrap_or_default()
        );
    } else {
        print!("{walk}");
    }
    pictures(&topo, args, &walk, &packet, &choice)?;
    Ok(if walk.delivered() { 0 } else { 1 })
}

/// The recording and the pictures, when asked for.
fn pictures(
    topo: &Topology,
    args: &ExplainArgs,
    walk: &Walk,
    packet: &Packet,
    choice: &Choice,
) -> Result<(), super::ExplainError> {
    if args.record.is_none() && args.svg.is_none() && args.html.is_none() {
        return Ok(());
    }
    let rec = topo.record(&[(args.source.as_str(), packet.clone(), choice.clone())])?;
    if let Some(path) = &args.record {
        let mut all = match Recording::load(path) {
            Ok(old) if path.exists() => old,
            _ => Recording {
                prefix: rec.prefix.clone(),
                namespaces: Vec::new(),
            },
        };
        all.merge(rec.clone());
        all.save(path)?;
    }
    draw(&rec, Some(walk), args.svg.as_deref(), args.html.as_deref())
}
