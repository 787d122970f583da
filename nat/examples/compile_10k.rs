//! Compiles N services x 5 endpoints repeatedly (for profiling the compiler):
//! `cargo run --release -p podnet-nat --example compile_10k -- 10000`.

#[path = "../benches/common/mod.rs"]
mod common;

use common::{cluster_ip_service, endpoint, node_settings};
use podnet_nat::kube::ClusterState;
use podnet_nat::kube_proxy::iptables_mode::{Compiler, compile};
use podnet_nat::kube_proxy::iptables_sync::{PartialMode, plan, plan_with};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let mut s = ClusterState::default();
    for i in 0..n {
        let svc = cluster_ip_service(i);
        let eps = (0..5)
            .map(|e| endpoint(i * 5 + e, format!("node-{e}")))
            .collect();
        s.endpoints.insert(svc.name.clone(), eps);
        s.services.insert(svc.name.clone(), svc);
    }
    let settings = node_settings();
    // A partial sync's CPU side: cached compile of the whole state with one endpoint changed,
    // then planning (both partial modes).
    let mut compiler = Compiler::new();
    let applied = plan(
        None,
        true,
        compiler.compile(&s, &settings),
        &Default::default(),
    )
    .into_applied();
    for round in 0..5u32 {
        let mut changed = s.clone();
        let first = changed.endpoints.values_mut().next().unwrap();
        first[0].addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 250, 0, round as u8)), 8080);
        let t = Instant::now();
        let c = compiler.compile(&changed, &settings);
        let t1 = t.elapsed();
        let p = plan_with(
            PartialMode::Minimal,
            Some(&applied),
            false,
            c.clone(),
            &Default::default(),
        );
        let t2 = t.elapsed();
        let k = plan(Some(&applied), false, c, &Default::default());
        println!(
            "partial: cached compile {:?}, minimal plan {:?} ({} bytes), kube-proxy plan {:?} ({} bytes)",
            t1,
            t2 - t1,
            p.input.len(),
            t.elapsed() - t2,
            k.input.len()
        );
    }
    for _ in 0..10 {
        let t = Instant::now();
        let c = compile(&s, &settings);
        let t1 = t.elapsed();
        let text = c.render();
        println!(
            "compile {:?} render {:?} ({} bytes)",
            t1,
            t.elapsed() - t1,
            text.len()
        );
    }
}
