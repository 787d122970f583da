//! Real traffic between the cluster's namespaces: ping, a TCP echo service that reports the
//! source address it saw (to prove masquerade), and a bulk TCP transfer for throughput.

use super::report::{CheckResult, Report};
use super::{Cluster, OUTSIDE_IP};
use podnet_netns::NetNs;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The TCP port of the echo service in every pod and in the fabric.
pub const ECHO_PORT: u16 = 7777;

/// `true` when etcd answers /health on the fabric address (call inside the fabric namespace).
pub(crate) fn etcd_healthy() -> bool {
    // The metrics listener (`--listen-metrics-urls`): plain HTTP also when clients use TLS.
    let addr = SocketAddr::new(super::FABRIC_IP.into(), 2381);
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("true")
}

/// A TCP service inside a namespace: `E` + payload is answered with
/// `SEEN <source ip> AT <server label>\n` and the payload; `S` + bytes is answered with the
/// number of bytes received.
#[derive(Debug)]
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Listens on `[::]:port` inside `ns` (IPv4 and IPv6; `0.0.0.0:port` where the namespace
    /// has no IPv6).
    pub fn start(ns: &NetNs, port: u16) -> std::io::Result<EchoServer> {
        Self::start_named(ns, port, "-")
    }

    /// Like [`start`](Self::start), answering with `label` so clients see which server answered.
    pub fn start_named(ns: &NetNs, port: u16, label: &str) -> std::io::Result<EchoServer> {
        let label: std::sync::Arc<str> = label.into();
        let listener = ns
            .run(move || {
                TcpListener::bind((std::net::Ipv6Addr::UNSPECIFIED, port))
                    .or_else(|_| TcpListener::bind(("0.0.0.0", port)))
            })
            .map_err(std::io::Error::other)??;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, peer)) => {
                        let label = label.clone();
                        std::thread::spawn(move || serve(s, peer, &label));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(EchoServer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut s: TcpStream, peer: SocketAddr, label: &str) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut mode = [0u8; 1];
    if s.read_exact(&mut mode).is_err() {
        return;
    }
    match mode[0] {
        b'E' => {
            let mut data = Vec::new();
            let _ = s.read_to_end(&mut data);
            // An IPv4 client of the dual-stack socket shows as ::ffff:a.b.c.d: say a.b.c.d.
            let ip = peer.ip().to_canonical();
            let _ = s.write_all(format!("SEEN {ip} AT {label}\n").as_bytes());
            let _ = s.write_all(&data);
        }
        b'S' => {
            let mut buf = vec![0u8; 256 * 1024];
            let mut total: u64 = 0;
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            let _ = s.write_all(total.to_string().as_bytes());
        }
        _ => {}
    }
}

/// Sends a payload from `src` to the echo service at `dst` and returns the source address the
/// service saw, after checking the payload came back intact.
pub fn tcp_echo(src: &NetNs, dst: SocketAddr) -> Result<IpAddr, String> {
    tcp_echo_from(src, dst).map(|(ip, _)| ip)
}

/// Like [`tcp_echo`], also returning the label of the server that answered.
pub fn tcp_echo_from(src: &NetNs, dst: SocketAddr) -> Result<(IpAddr, String), String> {
    src.run(move || -> Result<(IpAddr, String), String> {
        let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(3))
            .map_err(|e| format!("connect {dst}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let payload: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        s.write_all(b"E")
            .and_then(|()| s.write_all(&payload))
            .map_err(|e| e.to_string())?;
        s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
        let mut back = Vec::new();
        s.read_to_end(&mut back)
            .map_err(|e| format!("reading reply: {e}"))?;
        let nl = back
            .iter()
            .position(|b| *b == b'\n')
            .ok_or("no reply header")?;
        let header = String::from_utf8_lossy(&back[..nl]).to_string();
        if back[nl + 1..] != payload[..] {
            return Err("payload came back corrupted".into());
        }
        let mut words = header.split_whitespace();
        let ip = (words.next() == Some("SEEN"))
            .then(|| words.next().and_then(|ip| ip.parse().ok()))
            .flatten()
            .ok_or_else(|| format!("bad reply header {header:?}"))?;
        let label = match (words.next(), words.next()) {
            (Some("AT"), Some(l)) => l.to_owned(),
            _ => String::new(),
        };
        Ok((ip, label))
    })
    .map_err(|e| e.to_string())?
}

/// Sends bytes from `src` to the service at `dst` for `secs` seconds; Gbit/s received.
pub fn throughput(src: &NetNs, dst: SocketAddr, secs: f64) -> Result<f64, String> {
    src.run(move || -> Result<f64, String> {
        let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(3))
            .map_err(|e| format!("connect {dst}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let buf = vec![0x5au8; 128 * 1024];
        s.write_all(b"S").map_err(|e| e.to_string())?;
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < secs {
            s.write_all(&buf).map_err(|e| e.to_string())?;
        }
        s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
        let mut reply = String::new();
        s.read_to_string(&mut reply).map_err(|e| e.to_string())?;
        let elapsed = start.elapsed().as_secs_f64();
        let bytes: f64 = reply
            .trim()
            .parse()
            .map_err(|_| format!("bad reply {reply:?}"))?;
        Ok(bytes * 8.0 / elapsed / 1e9)
    })
    .map_err(|e| e.to_string())?
}

/// One ping from `src`; the round-trip time in ms when answered.
pub fn ping(src: &NetNs, dst: IpAddr) -> Option<f64> {
    let out = src
        .command("ping")
        .args(["-c", "1", "-W", "2", &dst.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let t = text.split("time=").nth(1)?;
    t.split_whitespace().next()?.parse().ok()
}

/// A pod's address of one family, if it has one.
type AddrOf = fn(&super::Pod) -> Option<IpAddr>;

/// A pod's IPv4 address (none on an IPv6-only cluster).
fn v4(p: &super::Pod) -> Option<IpAddr> {
    (!p.ip.is_unspecified()).then_some(IpAddr::V4(p.ip))
}

/// A pod's IPv6 address (dual-stack and IPv6-only clusters).
fn v6(p: &super::Pod) -> Option<IpAddr> {
    p.ip6.map(IpAddr::V6)
}

/// Runs every check of the demo: ping and TCP between every pair of pods on different nodes,
/// each pod to the outside address through masquerade, and a throughput sample.
pub fn run_checks(cluster: &Cluster, stop: &AtomicBool) -> Report {
    let mut report = Report::default();
    let mut servers = Vec::new();
    for p in &cluster.pods {
        match EchoServer::start_named(&p.ns, ECHO_PORT, &p.label()) {
            Ok(s) => servers.push(s),
            Err(e) => report.results.push(CheckResult::fail(
                format!("echo server in {}", p.label()),
                e.to_string(),
            )),
        }
    }
    match EchoServer::start(&cluster.fabric, ECHO_PORT) {
        Ok(s) => servers.push(s),
        Err(e) => report.results.push(CheckResult::fail(
            "echo server in the fabric",
            e.to_string(),
        )),
    }
    // Each family the pods have: IPv4 (unless the cluster is IPv6-only), then IPv6.
    let families: [(AddrOf, &str); 2] = [(v4, ""), (v6, "6")];
    for (addr_of, suffix) in families {
        for a in &cluster.pods {
            for b in &cluster.pods {
                if a.node == b.node || stop.load(Ordering::Relaxed) {
                    continue;
                }
                let (Some(src), Some(dst)) = (addr_of(a), addr_of(b)) else {
                    continue;
                };
                let what = format!("{} -> {} ({dst})", a.label(), b.label());
                match ping(&a.ns, dst) {
                    Some(ms) => report.results.push(
                        CheckResult::ok(format!("ping{suffix} {what}"), format!("{ms:.3} ms"))
                            .with_latency(ms),
                    ),
                    None => report.results.push(CheckResult::fail(
                        format!("ping{suffix} {what}"),
                        "no reply",
                    )),
                }
                let tcp = if suffix.is_empty() { "tcp " } else { "tcp6" };
                match tcp_echo(&a.ns, SocketAddr::new(dst, ECHO_PORT)) {
                    Ok(seen) if seen == src => report.results.push(CheckResult::ok(
                        format!("{tcp} {what}"),
                        "4 KiB echoed, source kept",
                    )),
                    Ok(seen) => report.results.push(CheckResult::fail(
                        format!("{tcp} {what}"),
                        format!("source rewritten to {seen}: pod traffic must not be masqueraded"),
                    )),
                    Err(e) => report
                        .results
                        .push(CheckResult::fail(format!("{tcp} {what}"), e)),
                }
            }
        }
    }
    for a in &cluster.pods {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let node = cluster.nodes.iter().find(|n| n.index == a.node);
        let mut targets = Vec::new();
        if v4(a).is_some() {
            targets.push((IpAddr::V4(OUTSIDE_IP), node.map(|n| IpAddr::V4(n.ip)), ""));
        }
        if v6(a).is_some() {
            let node_ip6 = node.and_then(|n| n.ip6).map(IpAddr::V6);
            targets.push((IpAddr::V6(super::OUTSIDE_IP6), node_ip6, "6"));
        }
        for (outside, node_ip, suffix) in targets {
            let what = format!("{} -> outside {outside}", a.label());
            match tcp_echo(&a.ns, SocketAddr::new(outside, ECHO_PORT)) {
                Ok(seen) if Some(seen) == node_ip => report.results.push(CheckResult::ok(
                    format!("masq{suffix} {what}"),
                    format!("seen as the node's {seen}"),
                )),
                Ok(seen) => report.results.push(CheckResult::fail(
                    format!("masq{suffix} {what}"),
                    format!("seen as {seen}, expected the node's address"),
                )),
                Err(e) => report
                    .results
                    .push(CheckResult::fail(format!("masq{suffix} {what}"), e)),
            }
        }
    }
    if !cluster.services.is_empty() && !stop.load(Ordering::Relaxed) {
        report
            .results
            .extend(super::services::check(cluster, &cluster.services));
    }
    let remote = cluster.pods.iter().find(|p| p.node != cluster.pods[0].node);
    if let (Some(a), Some(b)) = (cluster.pods.first(), remote) {
        let dst = v4(b).or(v6(b)).unwrap_or(IpAddr::V4(b.ip));
        match throughput(&a.ns, SocketAddr::new(dst, ECHO_PORT), 1.0) {
            Ok(g) => report.throughput = Some((format!("{} -> {}", a.label(), b.label()), g)),
            Err(e) => report.results.push(CheckResult::fail("throughput", e)),
        }
    }
    report
}
