//! 10,000 services x 5 endpoints: render time against `iptables-restore` of the same text, a
//! full sync, and a one-endpoint-change partial sync, in one run, inside test namespaces.
//!
//! `cargo bench -p podnet-nat --bench iptables_sync` (as root). `PODNET_BENCH_SERVICES` and
//! `PODNET_BENCH_ENDPOINTS` change the size.

mod common;

use common::{can_run, cluster_ip_service, endpoint, env_usize, median, ms, node_settings};
use podnet_nat::kube::ClusterState;
use podnet_nat::kube_proxy::NodeSettings;
use podnet_nat::kube_proxy::iptables_mode::compile;
use podnet_nat::kube_proxy::iptables_sync::{
    Backend, IptablesSyncer, PartialMode, SyncPlan, plan, plan_with, run_with_input,
};
use podnet_testsupport::TestNs;
use std::time::{Duration, Instant};

/// `services` Services with `endpoints` endpoints each; `bump` moves the very first endpoint
/// (a one-endpoint change when it differs between two states).
fn state(services: usize, endpoints: usize, bump: u32) -> ClusterState {
    let mut s = ClusterState::default();
    for i in 0..services as u32 {
        let svc = cluster_ip_service(i);
        let mut eps: Vec<_> = (0..endpoints as u32)
            .map(|e| {
                let n = i * endpoints as u32 + e + if i == 0 && e == 0 { bump } else { 0 };
                endpoint(n, format!("node-{}", n % 50))
            })
            .collect();
        eps.sort_by_key(|e| e.addr.to_string());
        s.endpoints.insert(svc.name.clone(), eps);
        s.services.insert(svc.name.clone(), svc);
    }
    s
}

/// Times of the restore tool on one text: the full input, the kube-proxy partial input and
/// the minimal partial input, one after the other into one fresh namespace.
struct Restore {
    full: Duration,
    partial: Duration,
    minimal: Duration,
}

/// The inputs the benchmark restores: the full text and the two partial plans of a
/// one-endpoint change.
struct Inputs {
    text: String,
    partial: SyncPlan,
    minimal: SyncPlan,
}

impl Inputs {
    fn restore(&self, prog: &str) -> (Restore, TestNs) {
        let ns = TestNs::new("bench-nat-restore");
        let run = |input: &str, what: &str| {
            let t = Instant::now();
            run_with_input(&ns, prog, &["--noflush", "--counters"], input.as_bytes())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            t.elapsed()
        };
        let full = run(&self.text, "restore");
        let partial = run(&self.partial.input, "partial restore");
        let minimal = run(&self.minimal.input, "minimal restore");
        let times = Restore {
            full,
            partial,
            minimal,
        };
        (times, ns)
    }
}

/// The median of 5 runs of `f`, and its last result.
fn median_of_5<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed());
    }
    (median(times), last.expect("five runs"))
}

/// The syncer on the nft backend in minimal partial mode, resuming from the rules `ns` holds
/// (the state `changed`): one warm-up sync fills the compile cache, then one-endpoint changes
/// are timed end to end.
fn nft_syncer_partial(
    ns: &TestNs,
    settings: &NodeSettings,
    changed: &ClusterState,
    size: (usize, usize),
) -> Duration {
    let mut syncer = IptablesSyncer::new(ns.ns().clone(), settings.clone())
        .with_backend(Backend::Nft)
        .with_partial_mode(PartialMode::Minimal);
    let p = syncer.plan(compile(changed, settings), &Default::default());
    syncer.commit(p);
    syncer.sync(changed).expect("warm-up sync");
    let mut round = 0;
    median_of_5(|| {
        round += 1;
        let next = state(size.0, size.1, 2_000_000 + round);
        let r = syncer.sync(&next).expect("nft partial sync");
        assert!(!r.full && r.services_written == 1, "{r:?}");
    })
    .0
}

/// Through the syncer on the legacy backend: the full sync, one-endpoint-change partial
/// syncs in kube-proxy's mode (with their render time and input size), then in minimal mode.
struct LegacySyncs {
    full: Duration,
    partial: Duration,
    partial_render: Duration,
    partial_bytes: usize,
    minimal: Duration,
}

fn legacy_syncs(st: &ClusterState, settings: &NodeSettings, size: (usize, usize)) -> LegacySyncs {
    let ns = TestNs::new("bench-nat-sync");
    let mut syncer =
        IptablesSyncer::new(ns.ns().clone(), settings.clone()).with_backend(Backend::Legacy);
    let t = Instant::now();
    let full = syncer.sync(st).expect("full sync");
    let full_time = t.elapsed();
    assert!(full.full);
    let mut partial_render = Vec::new();
    let mut partial_bytes = 0;
    let mut round = 0;
    let (partial, ()) = median_of_5(|| {
        round += 1;
        let changed = state(size.0, size.1, 1_000_000 + round);
        let r = syncer.sync(&changed).expect("partial sync");
        assert!(!r.full && r.services_written == 1, "{r:?}");
        partial_render.push(r.render_time);
        partial_bytes = r.input_bytes;
    });
    syncer.set_partial_mode(PartialMode::Minimal);
    let mut round = 9;
    let (minimal, ()) = median_of_5(|| {
        round += 1;
        let changed = state(size.0, size.1, 1_000_000 + round);
        let r = syncer.sync(&changed).expect("minimal partial sync");
        assert!(!r.full && r.services_written == 1, "{r:?}");
    });
    LegacySyncs {
        full: full_time,
        partial,
        partial_render: median(partial_render),
        partial_bytes,
        minimal,
    }
}

fn main() {
    if !can_run("iptables_sync") {
        return;
    }
    let services = env_usize("PODNET_BENCH_SERVICES", 10_000);
    let endpoints = env_usize("PODNET_BENCH_ENDPOINTS", 5);
    let size = (services, endpoints);
    let settings = node_settings();
    let st = state(services, endpoints, 0);

    // Render: compile + render, median of 5; compile alone, median of 5.
    let (render, text) = median_of_5(|| compile(&st, &settings).render());
    let (compile_only, _) = median_of_5(|| std::hint::black_box(compile(&st, &settings)));
    let rules = text.lines().filter(|l| l.starts_with("-A ")).count();

    // The one-endpoint-change partial sync input, planned against the full state.
    let changed = state(services, endpoints, 1_000_000);
    let full_plan = plan(None, true, compile(&st, &settings), &Default::default());
    let applied = full_plan.clone().into_applied();
    let partial = plan(
        Some(&applied),
        false,
        compile(&changed, &settings),
        &Default::default(),
    );
    assert_eq!(partial.written.len(), 1);
    let minimal = plan_with(
        PartialMode::Minimal,
        Some(&applied),
        false,
        compile(&changed, &settings),
        &Default::default(),
    );
    let inputs = Inputs {
        text,
        partial,
        minimal,
    };

    // iptables-restore of the same text into a fresh namespace, then the partial input on top.
    let (legacy, _) = inputs.restore("iptables-legacy-restore");
    let nft = (std::env::var("PODNET_BENCH_SKIP_NFT").is_err()).then(|| {
        let (times, ns) = inputs.restore("iptables-nft-restore");
        (times, nft_syncer_partial(&ns, &settings, &changed, size))
    });
    let syncs = legacy_syncs(&st, &settings, size);
    report(
        size,
        rules,
        &inputs,
        (render, compile_only),
        &legacy,
        nft.as_ref(),
        &syncs,
    );
}

/// Prints the figures and the two goals.
fn report(
    (services, endpoints): (usize, usize),
    rules: usize,
    inputs: &Inputs,
    (render, compile_only): (Duration, Duration),
    legacy: &Restore,
    nft: Option<&(Restore, Duration)>,
    syncs: &LegacySyncs,
) {
    let pct = |a: Duration, b: Duration| 100.0 * a.as_secs_f64() / b.as_secs_f64();
    let (partial_plan, minimal_plan) = (&inputs.partial, &inputs.minimal);
    println!(
        "podnet-nat iptables-mode benchmark: {services} services x {endpoints} endpoints ({rules} rules, {} KiB of iptables-restore input)",
        inputs.text.len() / 1024
    );
    println!(
        "  render (compile + render, full)               {:>10.1} ms   (compile {:.1} ms)",
        ms(render),
        ms(compile_only)
    );
    println!(
        "  iptables-legacy-restore, same text            {:>10.1} ms   render/restore = {:.2}%",
        ms(legacy.full),
        pct(render, legacy.full)
    );
    if let Some((restore, syncer_partial)) = nft {
        println!(
            "  iptables-nft-restore, same text               {:>10.1} ms   render/restore = {:.2}%",
            ms(restore.full),
            pct(render, restore.full)
        );
        println!(
            "  iptables-nft-restore, partial input           {:>10.1} ms   ({} KiB)",
            ms(restore.partial),
            partial_plan.input.len() / 1024
        );
        println!(
            "  iptables-nft-restore, minimal partial input   {:>10.1} ms   ({} bytes)",
            ms(restore.minimal),
            minimal_plan.input.len()
        );
        println!(
            "  partial sync, minimal mode (syncer, nft)      {:>10.1} ms   (compile + plan + restore, one endpoint changed)",
            ms(*syncer_partial)
        );
    }
    println!(
        "  iptables-legacy-restore, partial input        {:>10.1} ms   ({} KiB)",
        ms(legacy.partial),
        partial_plan.input.len() / 1024
    );
    println!(
        "  iptables-legacy-restore, minimal partial      {:>10.1} ms   ({} bytes)",
        ms(legacy.minimal),
        minimal_plan.input.len()
    );
    println!(
        "  full sync (syncer, legacy)                    {:>10.1} ms",
        ms(syncs.full)
    );
    println!(
        "  partial sync, one endpoint changed (legacy)   {:>10.1} ms   ({} KiB input, compile+render {:.1} ms; partial/full = {:.2}%)",
        ms(syncs.partial),
        syncs.partial_bytes / 1024,
        ms(syncs.partial_render),
        pct(syncs.partial, syncs.full)
    );
    println!(
        "  partial sync, minimal mode (legacy)           {:>10.1} ms",
        ms(syncs.minimal)
    );
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let nft_ratio = nft.map(|n| pct(render, n.0.full));
    println!(
        "  goal render <= 5% of restore: vs iptables-nft-restore {} ({}), vs iptables-legacy-restore {} ({:.2}%)",
        nft_ratio
            .map(|r| verdict(r <= 5.0))
            .unwrap_or("not measured"),
        nft_ratio.map(|r| format!("{r:.2}%")).unwrap_or_default(),
        verdict(pct(render, legacy.full) <= 5.0),
        pct(render, legacy.full)
    );
    let fifty = Duration::from_millis(50);
    println!(
        "  goal partial sync <= 50 ms: nft minimal {}, legacy minimal {}, legacy kube-proxy mode {}",
        nft.map(|n| verdict(n.1 <= fifty)).unwrap_or("not measured"),
        verdict(syncs.minimal <= fifty),
        verdict(syncs.partial <= fifty)
    );
}
