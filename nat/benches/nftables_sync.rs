//! One endpoint change at 1,000, 10,000 and 30,000 Services (5 endpoints each): podnet's
//! incremental netlink transaction against `nft -f` of the same kube-proxy-style transaction
//! (the text kube-proxy's nftables mode would hand to nft), in one run, each on an identical
//! table in its own test namespace.
//!
//! The same change in the maps layout (`NftLayout::Maps`: endpoints in data maps, so the
//! change is element updates only), on a table loaded by one full sync of all the Services
//! in one transaction; the ratio of the two layouts' one-endpoint changes, and how the maps
//! layout's full sync grows from one size to the next.
//!
//! `cargo bench -p podnet-nat --bench nftables_sync` (as root). `PODNET_BENCH_SIZES` (e.g.
//! `1000,10000`), `PODNET_BENCH_ROUNDS` and `PODNET_BENCH_LAYOUTS` (`kube-proxy,maps`, the
//! default; `maps` alone skips kube-proxy's layout and its `nft -f` peer) change what is
//! measured.

mod common;

use common::{can_run, cluster_ip_service, endpoint, median, ms, node_settings, port_name};
use podnet_nat::kube::{ClusterState, Endpoint, ServiceKey};
use podnet_nat::kube_proxy::iptables_sync::run_with_input;
use podnet_nat::kube_proxy::nftables_maps::NftLayout;
use podnet_nat::kube_proxy::nftables_mode::NftProxySettings;
use podnet_nat::kube_proxy::nftables_mode::TABLE;
use podnet_nat::nftables::{NftSocket, NftablesSyncer, Planner};
use podnet_testsupport::TestNs;
use std::time::{Duration, Instant};

const ENDPOINTS: u32 = 5;
/// Services added per transaction while the tables are built.
const CHUNK: u32 = 1_000;

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

fn endpoints(i: u32, variant: u32) -> Vec<Endpoint> {
    let mut eps: Vec<Endpoint> = (0..ENDPOINTS)
        .map(|e| {
            // Variant 1 moves the first endpoint elsewhere: a one-endpoint change.
            let n = if e == 0 && variant == 1 {
                0x00ff_0000 + i
            } else {
                i * ENDPOINTS + e
            };
            endpoint(n, format!("node-{}", n % 50))
        })
        .collect();
    eps.sort_by_key(|e| e.addr.to_string());
    eps
}

/// Adds Services `range` (with their endpoints) to `s`.
fn add_services(s: &mut ClusterState, range: std::ops::Range<u32>) {
    for i in range {
        s.services.insert(port_name(i), cluster_ip_service(i));
        s.endpoints.insert(port_name(i), endpoints(i, 0));
    }
}

fn settings() -> NftProxySettings {
    NftProxySettings {
        node: node_settings(),
        service_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
    }
}

/// The maps layout at `n` Services: (full sync of all in one transaction, median one-endpoint
/// change, its median send + kernel time, its operations).
fn maps_layout(n: u32, rounds: usize) -> (Duration, Duration, Duration, usize) {
    let mut st = ClusterState::default();
    add_services(&mut st, 0..n);
    let ns = TestNs::new("bench-nft-mp");
    let mut syncer = NftablesSyncer::with_layout(ns.ns().clone(), settings(), NftLayout::Maps);
    let t = Instant::now();
    let r = syncer.sync(&st).expect("maps layout: full sync");
    let full = t.elapsed();
    assert!(r.full);
    let target = n / 2;
    let key = port_name(target).service;
    let mut times = Vec::new();
    let mut kernel = Vec::new();
    let mut ops = 0;
    for r in 0..rounds {
        let variant = (r as u32 + 1) % 2;
        st.endpoints
            .insert(port_name(target), endpoints(target, variant));
        let t = Instant::now();
        let report = syncer
            .sync_services(&st, std::slice::from_ref(&key))
            .expect("maps layout: incremental sync");
        times.push(t.elapsed());
        kernel.push(report.apply_time);
        assert!(!report.full);
        // Element updates only: no chain written.
        assert_eq!(report.services_written, 0, "{report:?}");
        ops = report.operations;
    }
    (full, median(times), median(kernel), ops)
}

fn main() {
    if !can_run("nftables_sync") {
        return;
    }
    let sizes = env_list("PODNET_BENCH_SIZES", &[1_000, 10_000, 30_000]);
    let rounds = env_list("PODNET_BENCH_ROUNDS", &[20])[0].max(2);
    let layouts =
        std::env::var("PODNET_BENCH_LAYOUTS").unwrap_or_else(|_| "kube-proxy,maps".into());
    let kube_proxy_layout = layouts.split(',').any(|l| l.trim() == "kube-proxy");
    let maps = layouts.split(',').any(|l| l.trim() == "maps");
    let mut kp_change: Vec<(u32, Duration)> = Vec::new();
    let nft_rounds = (rounds / 2).max(3);
    println!(
        "one endpoint change, {ENDPOINTS} endpoints per Service; podnet: median of {rounds}, nft -f: median of {nft_rounds}"
    );
    println!(
        "{:>8} | {:>10} {:>10} | {:>10} {:>10} {:>10} {:>6} | {:>12} | {:>8}",
        "services",
        "load pn s",
        "load nft s",
        "podnet ms",
        "plan ms",
        "kernel ms",
        "ops",
        "nft -f ms",
        "ratio"
    );
    for &n in sizes.iter().filter(|_| kube_proxy_layout) {
        let n = n as u32;
        // Both tables are built the same way: a full sync of the first chunk, then chunks
        // of Services added by incremental transactions. (One transaction of 30,000 Services
        // costs the kernel minutes: each anonymous map bound walks the whole transaction.)
        let chunk = CHUNK.min(n);
        let mut st = ClusterState::default();
        add_services(&mut st, 0..chunk);
        let pn = TestNs::new("bench-nft-pn");
        let mut syncer = NftablesSyncer::new(pn.ns().clone(), settings());
        // Stale chains are left alone during the measurement (kube-proxy waits before it
        // deletes them, in a transaction of its own).
        syncer
            .planner_mut()
            .set_stale_chain_delay(Duration::from_secs(3600));
        let kp = TestNs::new("bench-nft-kp");
        let mut peer = Planner::new(settings());
        peer.set_stale_chain_delay(Duration::from_secs(3600));
        let mut load_pn = Duration::ZERO;
        let mut load_nft = Duration::ZERO;
        let t = Instant::now();
        syncer.sync(&st).expect("full sync");
        load_pn += t.elapsed();
        let full = peer.plan_full(&st, &[], &[]);
        let t = Instant::now();
        run_with_input(&kp, "nft", &["-f", "-"], full.tx.render().as_bytes())
            .expect("nft loads the table");
        load_nft += t.elapsed();
        peer.commit(full, Instant::now());
        let mut next = chunk;
        while next < n {
            let end = (next + chunk).min(n);
            add_services(&mut st, next..end);
            let keys: Vec<ServiceKey> = (next..end).map(|i| port_name(i).service).collect();
            let t = Instant::now();
            syncer.sync_services(&st, &keys).expect("services added");
            load_pn += t.elapsed();
            let plan = peer.plan_partial(&st, Some(&keys));
            let t = Instant::now();
            run_with_input(&kp, "nft", &["-f", "-"], plan.tx.render().as_bytes())
                .expect("nft adds the services");
            load_nft += t.elapsed();
            peer.commit(plan, Instant::now());
            next = end;
        }

        // Same table on both sides.
        let count = |ns: &TestNs| {
            let mut s = NftSocket::open_in(ns).unwrap();
            let chains = s
                .list_chains(podnet_nat::nftables::Family::Ip, TABLE)
                .unwrap();
            chains.len()
        };
        assert_eq!(count(&pn), count(&kp));

        let target = n / 2;
        let key = port_name(target).service;
        let mut pn_times = Vec::new();
        let mut plan_times = Vec::new();
        let mut kernel_times = Vec::new();
        let mut ops = 0;
        for r in 0..rounds {
            let variant = (r as u32 + 1) % 2;
            st.endpoints
                .insert(port_name(target), endpoints(target, variant));
            let t = Instant::now();
            let report = syncer
                .sync_services(&st, std::slice::from_ref(&key))
                .expect("incremental sync");
            pn_times.push(t.elapsed());
            plan_times.push(report.plan_time);
            kernel_times.push(report.apply_time);
            assert!(!report.full);
            assert_eq!(report.services_written, 1);
            ops = report.operations;
        }
        // Leave the podnet side in variant 0, as the peer starts.
        if rounds % 2 == 1 {
            st.endpoints.insert(port_name(target), endpoints(target, 0));
            syncer
                .sync_services(&st, std::slice::from_ref(&key))
                .expect("sync back");
        }

        let mut nft_times = Vec::new();
        for r in 0..nft_rounds {
            let variant = (r as u32 + 1) % 2;
            st.endpoints
                .insert(port_name(target), endpoints(target, variant));
            let plan = peer.plan_partial(&st, Some(std::slice::from_ref(&key)));
            let text = plan.tx.render();
            let t = Instant::now();
            run_with_input(&kp, "nft", &["-f", "-"], text.as_bytes()).expect("nft -f");
            nft_times.push(t.elapsed());
            peer.commit(plan, Instant::now());
        }
        let (p, nf) = (median(pn_times), median(nft_times));
        kp_change.push((n, p));
        println!(
            "{:>8} | {:>10.1} {:>10.1} | {:>10.3} {:>10.3} {:>10.3} {:>6} | {:>12.1} | {:>7.0}x",
            n,
            load_pn.as_secs_f64(),
            load_nft.as_secs_f64(),
            ms(p),
            ms(median(plan_times)),
            ms(median(kernel_times)),
            ops,
            ms(nf),
            nf.as_secs_f64() / p.as_secs_f64()
        );
    }
    if maps {
        maps_layout_table(&sizes, rounds, &kp_change);
    }
}

/// The maps layout at each size: its full sync (and its growth from the size before) and one
/// endpoint change, against the kube-proxy layout's change where that ran (`kp_change`).
fn maps_layout_table(sizes: &[usize], rounds: usize, kp_change: &[(u32, Duration)]) {
    println!();
    println!(
        "maps layout (endpoints in data maps): full sync of all Services in one transaction, then one endpoint change (median of {rounds})"
    );
    println!(
        "{:>8} | {:>12} {:>12} | {:>10} {:>10} {:>6} | {:>16}",
        "services",
        "full sync s",
        "vs previous",
        "change ms",
        "kernel ms",
        "ops",
        "kube-proxy / maps"
    );
    let mut previous: Option<(u32, Duration)> = None;
    for &n in sizes {
        let n = n as u32;
        let (full, change, kernel, ops) = maps_layout(n, rounds);
        let growth = previous.map_or("".to_string(), |(pn, pf)| {
            format!(
                "{:.2}x ({:.0}x Services)",
                full.as_secs_f64() / pf.as_secs_f64(),
                f64::from(n) / f64::from(pn)
            )
        });
        let ratio = kp_change
            .iter()
            .find(|(kn, _)| *kn == n)
            .map_or("".to_string(), |(_, kp)| {
                format!("{:.0}x", kp.as_secs_f64() / change.as_secs_f64())
            });
        println!(
            "{:>8} | {:>12.2} {:>12} | {:>10.3} {:>10.3} {:>6} | {:>16}",
            n,
            full.as_secs_f64(),
            growth,
            ms(change),
            ms(kernel),
            ops,
            ratio
        );
        previous = Some((n, full));
    }
}
