//! podnet-links against iproute2 in the same run: 10,000 /32 routes, pipelined, against
//! `ip -batch`; 1,000 veth pairs likewise. Needs root; works only in namespaces it creates.
//!
//! Run: `cargo bench -p podnet-links --bench vs_iproute2` (or `bash bench/links.sh`).

use ipnet::{IpNet, Ipv4Net};
use podnet_links::{Handle, Route, Veth};
use podnet_testsupport::TestNs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const ROUTES: u32 = 10_000;
const VETHS: u32 = 1_000;
const ROUNDS: usize = 3;

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

fn ip_batch(ns: &TestNs, lines: &str) -> Duration {
    let path = std::env::temp_dir().join(format!("podnet-bench-{}.batch", std::process::id()));
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(lines.as_bytes()))
        .expect("write batch file");
    let start = Instant::now();
    let out = ns
        .command("ip")
        .arg("-batch")
        .arg(&path)
        .output()
        .expect("run ip -batch");
    let took = start.elapsed();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "ip -batch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn count_lines(ns: &TestNs, args: &[&str]) -> usize {
    ns.exec("ip", args).lines().count()
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
                .route_add(&Route::new(route_net(i)).via(gw).dev("v0"))
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
    assert_eq!(count_lines(&ns, &["route"]), ROUTES as usize + 1);
    took
}

fn routes_ip() -> Duration {
    let ns = route_ns("bench-rt-ip");
    let lines: String = (0..ROUTES)
        .map(|i| format!("route add {} via 198.18.0.2 dev v0\n", route_dst(i)))
        .collect();
    let took = ip_batch(&ns, &lines);
    assert_eq!(count_lines(&ns, &["route"]), ROUTES as usize + 1);
    took
}

fn veths_podnet() -> Duration {
    let ns = TestNs::new("bench-veth");
    let h = Handle::in_ns(&ns).unwrap();
    let start = Instant::now();
    let mut batch = h.batch();
    for i in 0..VETHS {
        batch
            .link_add(&Veth::new(format!("vb{i}")).peer(format!("vp{i}")))
            .unwrap();
    }
    batch.execute().unwrap().into_result().unwrap();
    let took = start.elapsed();
    assert_eq!(count_lines(&ns, &["-o", "link"]), 2 * VETHS as usize + 1);
    took
}

fn veths_ip() -> Duration {
    let ns = TestNs::new("bench-veth-ip");
    let lines: String = (0..VETHS)
        .map(|i| format!("link add vb{i} type veth peer name vp{i}\n"))
        .collect();
    let took = ip_batch(&ns, &lines);
    assert_eq!(count_lines(&ns, &["-o", "link"]), 2 * VETHS as usize + 1);
    took
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
