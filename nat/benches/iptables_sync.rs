//! 10,000 services x 5 endpoints: render time against `iptables-restore` of the same text, a
//! full sync, and a one-endpoint-change partial sync, in one run, inside test namespaces.
//!
//! `cargo bench -p podnet-nat --bench iptables_sync` (as root). `PODNET_BENCH_SERVICES` and
//! `PODNET_BENCH_ENDPOINTS` change the size.

use podnet_nat::iptables::Protocol;
use podnet_nat::kube::{
    ClusterState, Endpoint, IpFamily, ServiceKey, ServicePort, ServicePortName, ServiceType,
    SessionAffinity, TargetPort,
};
use podnet_nat::kube_proxy::iptables_mode::compile;
use podnet_nat::kube_proxy::iptables_sync::{
    Backend, IptablesSyncer, PartialMode, plan, plan_with, run_with_input,
};
use podnet_nat::kube_proxy::{LocalDetector, NodeSettings};
use podnet_testsupport::TestNs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn state(services: usize, endpoints: usize, bump: u32) -> ClusterState {
    let mut s = ClusterState::default();
    for i in 0..services as u32 {
        let name = ServicePortName {
            service: ServiceKey::new(format!("ns{}", i % 100), format!("svc{i}")),
            port: "http".into(),
            protocol: Protocol::Tcp,
        };
        let vip = Ipv4Addr::from(0x0a60_0000 + i + 10); // 10.96.0.0/12
        s.services.insert(
            name.clone(),
            ServicePort {
                name: name.clone(),
                cluster_ip: IpAddr::V4(vip),
                port: 80,
                node_port: None,
                external_ips: vec![],
                load_balancer_vips: vec![],
                load_balancer_source_ranges: vec![],
                session_affinity: SessionAffinity::None,
                health_check_node_port: None,
                external_policy_local: false,
                internal_policy_local: false,
                service_type: ServiceType::ClusterIp,
                target_port: TargetPort::Number(8080),
            },
        );
        let eps = (0..endpoints as u32)
            .map(|e| {
                let n = i * endpoints as u32 + e + if i == 0 && e == 0 { bump } else { 0 };
                Endpoint {
                    addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0af4_0000 + n)), 8080), // 10.244.0.0/16
                    node_name: Some(format!("node-{}", n % 50)),
                    zone: None,
                    ready: true,
                    serving: true,
                    terminating: false,
                }
            })
            .collect::<Vec<_>>();
        let mut eps = eps;
        eps.sort_by_key(|e| e.addr.to_string());
        s.endpoints.insert(name, eps);
    }
    s
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    if euid != 0 || std::env::args().any(|a| a == "--list") {
        eprintln!("iptables_sync: needs root (it uses network namespaces); skipped");
        return;
    }
    let services = env("PODNET_BENCH_SERVICES", 10_000);
    let endpoints = env("PODNET_BENCH_ENDPOINTS", 5);
    let mut settings = NodeSettings::new("node-1", IpFamily::V4);
    settings.node_ips = vec!["198.18.0.2".parse().unwrap()];
    settings.local_detector = LocalDetector::ClusterCidr("10.244.0.0/16".parse().unwrap());
    let st = state(services, endpoints, 0);

    // Render: compile + render, median of 5.
    let mut times = Vec::new();
    let mut text = String::new();
    for _ in 0..5 {
        let t = Instant::now();
        text = compile(&st, &settings).render();
        times.push(t.elapsed());
    }
    let render = median(times);
    let mut compile_times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        std::hint::black_box(compile(&st, &settings));
        compile_times.push(t.elapsed());
    }
    let compile_only = median(compile_times);
    let rules = text.lines().filter(|l| l.starts_with("-A ")).count();

    // The one-endpoint-change partial sync input, planned against the full state.
    let changed = state(services, endpoints, 1_000_000);
    let full_plan = plan(None, true, compile(&st, &settings), &Default::default());
    let applied = full_plan.clone().into_applied();
    let partial_plan = plan(
        Some(&applied),
        false,
        compile(&changed, &settings),
        &Default::default(),
    );
    assert_eq!(partial_plan.written.len(), 1);
    let minimal_plan = plan_with(
        PartialMode::Minimal,
        Some(&applied),
        false,
        compile(&changed, &settings),
        &Default::default(),
    );

    // iptables-restore of the same text into a fresh namespace, then the partial input on top.
    let restore_in = |prog: &str| -> (Duration, Duration, Duration, TestNs) {
        let ns = TestNs::new("bench-nat-restore");
        let t = Instant::now();
        run_with_input(&ns, prog, &["--noflush", "--counters"], text.as_bytes()).expect("restore");
        let full = t.elapsed();
        let t = Instant::now();
        run_with_input(
            &ns,
            prog,
            &["--noflush", "--counters"],
            partial_plan.input.as_bytes(),
        )
        .expect("partial restore");
        let partial = t.elapsed();
        let t = Instant::now();
        run_with_input(
            &ns,
            prog,
            &["--noflush", "--counters"],
            minimal_plan.input.as_bytes(),
        )
        .expect("minimal restore");
        (full, partial, t.elapsed(), ns)
    };
    let (restore_legacy, partial_restore_legacy, minimal_restore_legacy, _ns) =
        restore_in("iptables-legacy-restore");
    drop(_ns);
    let skip_nft = std::env::var("PODNET_BENCH_SKIP_NFT").is_ok();
    let mut nft_syncer_partial = None;
    let nft = (!skip_nft).then(|| {
        let (full, partial, minimal, ns) = restore_in("iptables-nft-restore");
        // The syncer, nft backend, minimal partial mode, resuming from the rules just restored
        // (the kernel now holds `changed`): one warm-up sync fills the compile cache, then
        // one-endpoint changes are timed end to end.
        let mut syncer = IptablesSyncer::new(ns.ns().clone(), settings.clone())
            .with_backend(Backend::Nft)
            .with_partial_mode(PartialMode::Minimal);
        let p = syncer.plan(compile(&changed, &settings), &Default::default());
        syncer.commit(p);
        syncer.sync(&changed).expect("warm-up sync");
        let mut times = Vec::new();
        for round in 1..=5u32 {
            let next = state(services, endpoints, 2_000_000 + round);
            let t = Instant::now();
            let r = syncer.sync(&next).expect("nft partial sync");
            times.push(t.elapsed());
            assert!(!r.full && r.services_written == 1, "{r:?}");
        }
        nft_syncer_partial = Some(median(times));
        (full, partial, minimal)
    });

    // Full sync, then one-endpoint-change partial syncs, through the syncer (legacy backend).
    let ns = TestNs::new("bench-nat-sync");
    let mut syncer =
        IptablesSyncer::new(ns.ns().clone(), settings.clone()).with_backend(Backend::Legacy);
    let t = Instant::now();
    let full = syncer.sync(&st).expect("full sync");
    let full_time = t.elapsed();
    assert!(full.full);
    let mut partial_times = Vec::new();
    let mut partial_render = Vec::new();
    let mut partial_bytes = 0;
    for round in 1..=5u32 {
        let changed = state(services, endpoints, 1_000_000 + round);
        let t = Instant::now();
        let r = syncer.sync(&changed).expect("partial sync");
        partial_times.push(t.elapsed());
        assert!(!r.full && r.services_written == 1, "{r:?}");
        partial_render.push(r.render_time);
        partial_bytes = r.input_bytes;
    }
    let partial = median(partial_times);
    syncer.set_partial_mode(PartialMode::Minimal);
    let mut minimal_times = Vec::new();
    for round in 10..=14u32 {
        let changed = state(services, endpoints, 1_000_000 + round);
        let t = Instant::now();
        let r = syncer.sync(&changed).expect("minimal partial sync");
        minimal_times.push(t.elapsed());
        assert!(!r.full && r.services_written == 1, "{r:?}");
    }
    let minimal = median(minimal_times);

    let pct = |a: Duration, b: Duration| 100.0 * a.as_secs_f64() / b.as_secs_f64();
    println!(
        "podnet-nat iptables-mode benchmark: {services} services x {endpoints} endpoints ({rules} rules, {} KiB of iptables-restore input)",
        text.len() / 1024
    );
    println!(
        "  render (compile + render, full)               {:>10.1} ms   (compile {:.1} ms)",
        ms(render),
        ms(compile_only)
    );
    println!(
        "  iptables-legacy-restore, same text            {:>10.1} ms   render/restore = {:.2}%",
        ms(restore_legacy),
        pct(render, restore_legacy)
    );
    if let Some((restore_nft, partial_nft, minimal_nft)) = nft {
        println!(
            "  iptables-nft-restore, same text               {:>10.1} ms   render/restore = {:.2}%",
            ms(restore_nft),
            pct(render, restore_nft)
        );
        println!(
            "  iptables-nft-restore, partial input           {:>10.1} ms   ({} KiB)",
            ms(partial_nft),
            partial_plan.input.len() / 1024
        );
        println!(
            "  iptables-nft-restore, minimal partial input   {:>10.1} ms   ({} bytes)",
            ms(minimal_nft),
            minimal_plan.input.len()
        );
    }
    if let Some(p) = nft_syncer_partial {
        println!(
            "  partial sync, minimal mode (syncer, nft)      {:>10.1} ms   (compile + plan + restore, one endpoint changed)",
            ms(p)
        );
    }
    println!(
        "  iptables-legacy-restore, partial input        {:>10.1} ms   ({} KiB)",
        ms(partial_restore_legacy),
        partial_plan.input.len() / 1024
    );
    println!(
        "  iptables-legacy-restore, minimal partial      {:>10.1} ms   ({} bytes)",
        ms(minimal_restore_legacy),
        minimal_plan.input.len()
    );
    println!(
        "  full sync (syncer, legacy)                    {:>10.1} ms",
        ms(full_time)
    );
    println!(
        "  partial sync, one endpoint changed (legacy)   {:>10.1} ms   ({} KiB input, compile+render {:.1} ms; partial/full = {:.2}%)",
        ms(partial),
        partial_bytes / 1024,
        ms(median(partial_render)),
        pct(partial, full_time)
    );
    println!(
        "  partial sync, minimal mode (legacy)           {:>10.1} ms",
        ms(minimal)
    );
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let nft_ratio = nft.map(|n| pct(render, n.0));
    println!(
        "  goal render <= 5% of restore: vs iptables-nft-restore {} ({}), vs iptables-legacy-restore {} ({:.2}%)",
        nft_ratio
            .map(|r| verdict(r <= 5.0))
            .unwrap_or("not measured"),
        nft_ratio.map(|r| format!("{r:.2}%")).unwrap_or_default(),
        verdict(pct(render, restore_legacy) <= 5.0),
        pct(render, restore_legacy)
    );
    let fifty = Duration::from_millis(50);
    println!(
        "  goal partial sync <= 50 ms: nft minimal {}, legacy minimal {}, legacy kube-proxy mode {}",
        nft_syncer_partial
            .map(|p| verdict(p <= fifty))
            .unwrap_or("not measured"),
        verdict(minimal <= fifty),
        verdict(partial <= fifty)
    );
}
