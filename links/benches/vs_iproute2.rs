//! podnet-links against iproute2 in the same run: 10,000 /32 routes, pipelined, against
//! `ip -batch`; 1,000 veth pairs likewise. Needs root; works only in namespaces it creates.
//!
//! Run: `cargo bench -p podnet-links --bench vs_iproute2` (or `bash bench/links.sh`).

use ipnet::{IpNet, Ipv4Net};
use podnet_links::{FdbEntry, Handle, MacAddr, Neighbour, Route, Veth, Vxlan};
use podnet_testsupport::TestNs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const ROUTES: u32 = 10_000;
const VETHS: u32 = 1_000;
const ROUNDS: usize = 3;
const PEERS: u32 = 1_000;

fn route_dst(i: u32) -> String {
    format!("10.{}.{}.{}/32", 100 + i / 65536, (i / 256) % 256, i % 256)
}

/// The same prefix as [`route_dst`], built the way an agent holding typed addresses would.
fn route_net(i: u32) -> IpNet {
    let a = Ipv4Addr::new(
        10,
        (100 + i / 65536) as u8,
        ((i / 256) % 256) as u8,
        (i % 256) as u8,
    );
    IpNet::V4(Ipv4Net::new(a, 32).unwrap())
}

/// Lets the kernel finish tearing down the previous namespace (it does so asynchronously and
/// holds the RTNL lock while it does), so one side's cleanup does not slow the other side down.
fn settle() {
    std::thread::sleep(Duration::from_millis(1500));
}

/// A namespace with a link `v0` at 198.18.0.1/16, up, to route through.
fn route_ns(tag: &str) -> TestNs {
    let ns = TestNs::new(tag);
    ns.exec(
        "ip",
        &["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
    );
    ns.exec("ip", &["addr", "add", "198.18.0.1/16", "dev", "v0"]);
    ns.exec("ip", &["link", "set", "v0", "up"]);
    ns.exec("ip", &["link", "set", "v1", "up"]);
    ns
}

fn ip_batch(ns: &TestNs, tool: &str, lines: &str) -> Duration {
    let path = std::env::temp_dir().join(format!("podnet-bench-{}.batch", std::process::id()));
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(lines.as_bytes()))
        .expect("write batch file");
    let start = Instant::now();
    let out = ns
        .command(tool)
        .arg("-batch")
        .arg(&path)
        .output()
        .expect("run ip -batch");
    let took = start.elapsed();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{tool} -batch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn count_lines(ns: &TestNs, tool: &str, args: &[&str]) -> usize {
    ns.exec(tool, args).lines().count()
}

fn routes_podnet(pipelined: bool) -> Duration {
    let ns = route_ns("bench-rt");
    let h = Handle::in_ns(&ns).unwrap();
    let gw = "198.18.0.2".parse().unwrap();
    let start = Instant::now();
    if pipelined {
        let mut batch = h.batch();
        for i in 0..ROUTES {
            batch
                .route()
                .add(&Route::new(route_net(i)).via(gw).dev("v0"))
                .unwrap();
        }
        let built = start.elapsed();
        batch.execute().unwrap().into_result().unwrap();
        if std::env::var_os("PODNET_BENCH_PHASES").is_some() {
            eprintln!(
                "  build {:.1} ms, execute {:.1} ms",
                ms(built),
                ms(start.elapsed() - built)
            );
        }
    } else {
        for i in 0..ROUTES {
            h.route()
                .add(&Route::new(route_net(i)).via(gw).dev("v0"))
                .unwrap();
        }
    }
    let took = start.elapsed();
    assert_eq!(count_lines(&ns, "ip", &["route"]), ROUTES as usize + 1);
    took
}

fn routes_ip() -> Duration {
    let ns = route_ns("bench-rt-ip");
    let lines: String = (0..ROUTES)
        .map(|i| format!("route add {} via 198.18.0.2 dev v0\n", route_dst(i)))
        .collect();
    let took = ip_batch(&ns, "ip", &lines);
    assert_eq!(count_lines(&ns, "ip", &["route"]), ROUTES as usize + 1);
    took
}

fn veths_podnet() -> Duration {
    let ns = TestNs::new("bench-veth");
    let h = Handle::in_ns(&ns).unwrap();
    let start = Instant::now();
    let mut batch = h.batch();
    for i in 0..VETHS {
        batch
            .link()
            .add(&Veth::new(format!("vb{i}")).peer(format!("vp{i}")))
            .unwrap();
    }
    batch.execute().unwrap().into_result().unwrap();
    let took = start.elapsed();
    assert_eq!(
        count_lines(&ns, "ip", &["-o", "link"]),
        2 * VETHS as usize + 1
    );
    took
}

fn veths_ip() -> Duration {
    let ns = TestNs::new("bench-veth-ip");
    let lines: String = (0..VETHS)
        .map(|i| format!("link add vb{i} type veth peer name vp{i}\n"))
        .collect();
    let took = ip_batch(&ns, "ip", &lines);
    assert_eq!(
        count_lines(&ns, "ip", &["-o", "link"]),
        2 * VETHS as usize + 1
    );
    took
}

/// A namespace with flannel's `flannel.1` over an underlay `v0`, as the vxlan backend makes it.
fn vxlan_ns(tag: &str) -> TestNs {
    let ns = route_ns(tag);
    let h = Handle::in_ns(&ns).unwrap();
    h.link()
        .add(
            &Vxlan::new("flannel.1", 1)
                .local("198.18.0.1".parse().unwrap())
                .dev("v0")
                .learning(false),
        )
        .unwrap();
    h.link().set("flannel.1").up().apply().unwrap();
    ns
}

/// Peer `i`: its subnet's .0 address, its VTEP MAC and its node address.
fn peer(i: u32) -> (Ipv4Addr, MacAddr, Ipv4Addr) {
    let gw = Ipv4Addr::new(10, (200 + i / 256) as u8, (i % 256) as u8, 0);
    let mac = MacAddr([2, 0, 0, 0, (i >> 8) as u8, (i & 0xff) as u8]);
    let node = Ipv4Addr::new(198, 18, (1 + i / 250) as u8, (1 + i % 250) as u8);
    (gw, mac, node)
}

fn peers_podnet() -> Duration {
    let ns = vxlan_ns("bench-peers");
    let h = Handle::in_ns(&ns).unwrap();
    let start = Instant::now();
    let mut b = h.batch();
    for i in 0..PEERS {
        let (gw, mac, node) = peer(i);
        b.neigh()
            .replace(&Neighbour::new(gw.into(), mac, "flannel.1"))
            .unwrap();
        b.fdb()
            .replace(&FdbEntry::new(mac, "flannel.1").dst(node.into()))
            .unwrap();
        let net = IpNet::V4(Ipv4Net::new(gw, 24).unwrap());
        b.route()
            .replace(&Route::new(net).via(gw.into()).dev("flannel.1").onlink())
            .unwrap();
    }
    b.execute().unwrap().into_result().unwrap();
    let took = start.elapsed();
    check_peers(&ns);
    took
}

fn peers_iproute2() -> Duration {
    let ns = vxlan_ns("bench-peers-ip");
    let mut ip_lines = String::new();
    let mut bridge_lines = String::new();
    for i in 0..PEERS {
        let (gw, mac, node) = peer(i);
        ip_lines.push_str(&format!(
            "neigh replace {gw} lladdr {mac} dev flannel.1 nud permanent\n\
             route replace {gw}/24 via {gw} dev flannel.1 onlink\n"
        ));
        bridge_lines.push_str(&format!(
            "fdb replace {mac} dev flannel.1 dst {node} self permanent\n"
        ));
    }
    let took = ip_batch(&ns, "ip", &ip_lines) + ip_batch(&ns, "bridge", &bridge_lines);
    check_peers(&ns);
    took
}

fn check_peers(ns: &TestNs) {
    let fdb = count_lines(ns, "bridge", &["fdb", "show", "dev", "flannel.1"]);
    assert!(fdb >= PEERS as usize, "{fdb} fdb entries");
    let neigh = count_lines(ns, "ip", &["neigh", "show", "dev", "flannel.1"]);
    assert_eq!(neigh, PEERS as usize);
    assert_eq!(count_lines(ns, "ip", &["route"]), PEERS as usize + 1);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    if podnet_testsupport::skip_root_test("vs_iproute2 benchmark") {
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` runs us too: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = if quick { 1 } else { ROUNDS };
    println!("podnet-links vs iproute2 (median of {rounds} rounds, fresh namespace each)");
    let (mut p, mut s, mut q) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        s.push(routes_ip());
        settle();
        p.push(routes_podnet(true));
        settle();
        q.push(routes_podnet(false));
        settle();
    }
    let (p, q, s) = (median(p), median(q), median(s));
    println!(
        "{ROUTES} /32 routes: podnet pipelined {:.1} ms, podnet one-by-one {:.1} ms, ip -batch {:.1} ms; ratio podnet/ip = {:.2}x (goal <= 0.30x)",
        ms(p),
        ms(q),
        ms(s),
        p.as_secs_f64() / s.as_secs_f64()
    );
    let (mut p, mut s) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        s.push(peers_iproute2());
        settle();
        p.push(peers_podnet());
        settle();
    }
    let (p, s) = (median(p), median(s));
    println!(
        "{PEERS} VXLAN peers (neighbour + FDB + onlink route each): podnet pipelined {:.1} ms, ip -batch + bridge -batch {:.1} ms; ratio podnet/iproute2 = {:.2}x (goal <= 0.30x)",
        ms(p),
        ms(s),
        p.as_secs_f64() / s.as_secs_f64()
    );
    let (mut p, mut s) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        s.push(veths_ip());
        settle();
        p.push(veths_podnet());
        settle();
    }
    let (p, s) = (median(p), median(s));
    println!(
        "{VETHS} veth pairs: podnet pipelined {:.1} ms, ip -batch {:.1} ms; ratio podnet/ip = {:.2}x (goal <= 0.50x)",
        ms(p),
        ms(s),
        p.as_secs_f64() / s.as_secs_f64()
    );
}
