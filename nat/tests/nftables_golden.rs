//! Golden tests of kube-proxy's nftables mode: the compiled objects equal kube-proxy's expected
//! output from its own unit tests (pkg/proxy/nftables/proxier_test.go: TestOverallNFTablesRules
//! and every step of TestSyncProxyRulesRepeated, operation counts included), compared after
//! kube-proxy's own sort (`sortNFTablesTransaction`). As root, the same objects sent over
//! netlink are accepted by the kernel, and the table reads back exactly like the one `nft -f`
//! makes from kube-proxy's text.

mod common;

use common::{fake_proxier_settings, state_from_yaml};
use podnet_nat::kube::ClusterState;
use podnet_nat::kube_proxy::iptables_sync::run_with_input;
use podnet_nat::kube_proxy::nftables_mode::{NftProxySettings, TABLE};
use podnet_nat::nftables::expr::Insn;
use podnet_nat::nftables::{FakeTable, Family, NftSocket, NftablesSyncer, Planner};
use podnet_testsupport::{TestNs, require_root};
use std::time::{Duration, Instant};

/// kube-proxy's fake proxier (`NewFakeProxier`) for nftables: the iptables fake's settings,
/// `--nodeport-addresses 192.168.0.2/32` and the Service CIDR 172.30.0.0/16.
fn nft_fake_settings() -> NftProxySettings {
    let mut node = fake_proxier_settings();
    node.nodeport_addresses = vec!["192.168.0.2/32".parse().unwrap()];
    NftProxySettings {
        node,
        service_cidrs: vec!["172.30.0.0/16".parse().unwrap()],
    }
}

/// `baseRules` of proxier_test.go.
const BASE_RULES: &str = include_str!("fixtures/nftables-base.expected");

/// TestOverallNFTablesRules' expectation after `baseRules`.
const OVERALL: &str = include_str!("fixtures/overall-nftables.expected");

/// kube-proxy's `sortNFTablesTransaction`: blank lines and comments dropped; lines sorted by
/// object type (table, chain, rule, set, map, element), then object name; rules keep their
/// order, other lines sort whole.
fn sort_like_kube_proxy(tx: &str) -> Vec<String> {
    let rank = |w: &str| match w {
        "table" => 10,
        "chain" => 9,
        "rule" => 8,
        "set" => 7,
        "map" => 6,
        "element" => 5,
        _ => 0,
    };
    let mut lines: Vec<String> = tx
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    lines.sort_by(|a, b| {
        let wa: Vec<&str> = a.split(' ').collect();
        let wb: Vec<&str> = b.split(' ').collect();
        if wa.len() < 5 || wb.len() < 5 {
            return std::cmp::Ordering::Equal;
        }
        rank(wb[1])
            .cmp(&rank(wa[1]))
            .then_with(|| wa[4].cmp(wb[4]))
            .then_with(|| {
                if wa[1] == "rule" {
                    std::cmp::Ordering::Equal
                } else {
                    a.cmp(b)
                }
            })
    });
    lines
}

fn assert_dump_eq(expected: &str, actual: &str, what: &str) {
    let e = sort_like_kube_proxy(expected);
    let a = sort_like_kube_proxy(actual);
    if e != a {
        let mut diff = String::new();
        for l in &e {
            if !a.contains(l) {
                diff.push_str(&format!("- {l}\n"));
            }
        }
        for l in &a {
            if !e.contains(l) {
                diff.push_str(&format!("+ {l}\n"));
            }
        }
        panic!(
            "{what}: tables differ (- kube-proxy, + podnet):\n{diff}\n--- podnet ---\n{}",
            a.join("\n")
        );
    }
}

fn overall_state() -> ClusterState {
    state_from_yaml(include_str!("fixtures/overall.yaml"))
}

#[test]
fn overall_nftables_rules() {
    let mut planner = Planner::new(nft_fake_settings());
    let plan = planner.plan_full(&overall_state(), &[], &[]);
    let mut table = FakeTable::new(Family::Ip, TABLE);
    table.apply(&plan.tx).expect("the transaction applies");
    assert_dump_eq(
        &format!("{BASE_RULES}{OVERALL}"),
        &table.dump(),
        "TestOverallNFTablesRules",
    );
}

/// A ClusterIP Service with one TCP port and, optionally, its endpoints.
fn svc(ns: &str, name: &str, ip: &str, port_name: &str, port: u16, eps: &[&str]) -> String {
    let mut y = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  clusterIP: {ip}\n  ports:\n  - {{name: {port_name}, port: {port}, protocol: TCP}}\n"
    );
    y.push_str(&format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nports:\n- {{name: {port_name}, port: {port}, protocol: TCP}}\n"
    ));
    y.push_str(if eps.is_empty() {
        "endpoints: []\n"
    } else {
        "endpoints:\n"
    });
    for e in eps {
        y.push_str(&format!("- addresses: [{e}]\n"));
    }
    y
}

/// The dump lines of one ClusterIP Service with endpoints, as TestSyncProxyRulesRepeated
/// writes them.
fn svc_lines(svc_chain: &str, ip: &str, eps: &[(&str, &str)]) -> String {
    let mut s = format!(
        "add chain ip kube-proxy {svc_chain}\n\
         add rule ip kube-proxy {svc_chain} ip daddr {ip} ip saddr != 10.0.0.0/8 jump mark-for-masquerade\n"
    );
    let targets: Vec<String> = eps
        .iter()
        .enumerate()
        .map(|(i, (c, _))| format!("{i} : goto {c}"))
        .collect();
    s.push_str(&format!(
        "add rule ip kube-proxy {svc_chain} numgen random mod {} vmap {{ {} }}\n",
        eps.len(),
        targets.join(" , ")
    ));
    for (c, ep) in eps {
        let ep_ip = ep.split(':').next().unwrap();
        s.push_str(&format!(
            "add chain ip kube-proxy {c}\n\
             add rule ip kube-proxy {c} ip saddr {ep_ip} jump mark-for-masquerade\n\
             add rule ip kube-proxy {c} meta l4proto tcp dnat to {ep}\n"
        ));
    }
    s
}

const SVC1_CHAIN: &str = "service-ULMVA6XW-ns1/svc1/tcp/p80";
const EP1: (&str, &str) = (
    "endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80",
    "10.0.1.1:80",
);
const SVC2_CHAIN: &str = "service-MHHHYRWA-ns2/svc2/tcp/p8080";
const EP2: (&str, &str) = (
    "endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080",
    "10.0.2.1:8080",
);
const SVC3_CHAIN: &str = "service-4AT6LBPK-ns3/svc3/tcp/p80";
const EP31: (&str, &str) = (
    "endpoint-2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80",
    "10.0.3.1:80",
);
const EP32: (&str, &str) = (
    "endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80",
    "10.0.3.2:80",
);
const EP33: (&str, &str) = (
    "endpoint-TQ2QKHCZ-ns3/svc3/tcp/p80__10.0.3.3/80",
    "10.0.3.3:80",
);
const SVC4_CHAIN: &str = "service-LAUZTJTB-ns4/svc4/tcp/p80";
const EP4: (&str, &str) = (
    "endpoint-WAHRBT2B-ns4/svc4/tcp/p80__10.0.4.1/80",
    "10.0.4.1:80",
);

fn svc1_yaml() -> String {
    svc("ns1", "svc1", "172.30.0.41", "p80", 80, &["10.0.1.1"])
}

fn svc2_yaml() -> String {
    svc("ns2", "svc2", "172.30.0.42", "p8080", 8080, &["10.0.2.1"])
}

fn svc3_with(eps: &[&str]) -> String {
    svc("ns3", "svc3", "172.30.0.43", "p80", 80, eps)
}

fn svc4_with(eps: &[&str]) -> String {
    svc("ns4", "svc4", "172.30.0.44", "p80", 80, eps)
}

/// The table text of svc1 (elements and chains), and the elements of svc3 and svc4 with
/// endpoints: the parts every expected table of [`repeated_syncs`] is made of.
fn repeated_parts() -> (String, String, String) {
    let svc1_all = format!(
        "add element ip kube-proxy cluster-ips {{ 172.30.0.41 }}\n\
         add element ip kube-proxy service-ips {{ 172.30.0.41 . tcp . 80 : goto {SVC1_CHAIN} }}\n{}",
        svc_lines(SVC1_CHAIN, "172.30.0.41", &[EP1])
    );
    let svc3_elems = format!(
        "add element ip kube-proxy cluster-ips {{ 172.30.0.43 }}\n\
         add element ip kube-proxy service-ips {{ 172.30.0.43 . tcp . 80 : goto {SVC3_CHAIN} }}\n"
    );
    let svc4_elems = format!(
        "add element ip kube-proxy cluster-ips {{ 172.30.0.44 }}\n\
         add element ip kube-proxy service-ips {{ 172.30.0.44 . tcp . 80 : goto {SVC4_CHAIN} }}\n"
    );
    (svc1_all, svc3_elems, svc4_elems)
}

/// kube-proxy's proxier in [`repeated_syncs`]: the planner, the fake table it writes, and
/// the clock stale chains age by.
struct Syncs {
    planner: Planner,
    table: FakeTable,
    clock: Instant,
}

impl Syncs {
    fn new() -> Syncs {
        Syncs {
            planner: Planner::new(nft_fake_settings()),
            table: FakeTable::new(Family::Ip, TABLE),
            clock: Instant::now(),
        }
    }

    /// Two seconds pass: chains stale since before are due for deletion.
    fn age(&mut self) {
        self.clock += Duration::from_secs(2);
    }

    /// One kube-proxy `syncProxyRules`: stale chains that are due go in a transaction of
    /// their own, then the sync's transaction is applied and checked (the table equals
    /// `expected` after the base rules; the transaction has `ops` operations when given).
    /// Returns the chains now stale.
    fn step(&mut self, yaml: &str, expected: &str, ops: Option<usize>, what: &str) -> Vec<String> {
        let (planner, table) = (&mut self.planner, &mut self.table);
        let dels = planner.stale_deletions(self.clock);
        table.apply(&dels).expect("stale chains delete");
        let state = state_from_yaml(yaml);
        let plan = if planner.needs_full() {
            let chains: Vec<String> = table.chain_names().map(str::to_owned).collect();
            let sets: Vec<String> = table.set_names().map(str::to_owned).collect();
            planner.plan_full(&state, &chains, &sets)
        } else {
            planner.plan_partial(&state, None)
        };
        table
            .apply(&plan.tx)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        if let Some(n) = ops {
            assert_eq!(plan.tx.len(), n, "{what}: operations\n{}", plan.tx.render());
        }
        planner.commit(plan, self.clock);
        assert_dump_eq(&format!("{BASE_RULES}{expected}"), &table.dump(), what);
        planner
            .stale_chains()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    }
}

/// kube-proxy's TestSyncProxyRulesRepeated: after each sync the table equals kube-proxy's, and
/// each partial transaction has exactly kube-proxy's number of operations.
#[test]
fn repeated_syncs() {
    let mut run = Syncs::new();
    services_come_and_go(&mut run);
    endpoints_come_and_go(&mut run);
}

/// The first syncs of [`repeated_syncs`]: Services added and deleted.
fn services_come_and_go(run: &mut Syncs) {
    let (svc1_all, svc3_elems, _) = repeated_parts();

    // Create initial state.
    run.step(
        &(svc1_yaml() + &svc2_yaml()),
        &format!(
            "{svc1_all}\
             add element ip kube-proxy cluster-ips {{ 172.30.0.42 }}\n\
             add element ip kube-proxy service-ips {{ 172.30.0.42 . tcp . 8080 : goto {SVC2_CHAIN} }}\n{}",
            svc_lines(SVC2_CHAIN, "172.30.0.42", &[EP2])
        ),
        None,
        "initial state",
    );

    // Add a new service and its endpoints: 2 elements, 2 chains added, flushed and refilled.
    run.step(
        &(svc1_yaml() + &svc2_yaml() + &svc3_with(&["10.0.3.1"])),
        &format!(
            "{svc1_all}\
             add element ip kube-proxy cluster-ips {{ 172.30.0.42 }}\n\
             add element ip kube-proxy service-ips {{ 172.30.0.42 . tcp . 8080 : goto {SVC2_CHAIN} }}\n{}{svc3_elems}{}",
            svc_lines(SVC2_CHAIN, "172.30.0.42", &[EP2]),
            svc_lines(SVC3_CHAIN, "172.30.0.43", &[EP31])
        ),
        Some(10),
        "add svc3",
    );

    // Delete a service: its chains are flushed, not yet deleted.
    let stale = run.step(
        &(svc1_yaml() + &svc3_with(&["10.0.3.1"])),
        &format!(
            "{svc1_all}add chain ip kube-proxy {SVC2_CHAIN}\nadd chain ip kube-proxy {}\n{svc3_elems}{}",
            EP2.0,
            svc_lines(SVC3_CHAIN, "172.30.0.43", &[EP31])
        ),
        Some(4),
        "delete svc2",
    );
    assert_eq!(stale.len(), 2, "{stale:?}");

    // Time passes: the stale chains go, in a transaction of their own.
    run.age();
    run.step(
        &(svc1_yaml() + &svc3_with(&["10.0.3.1"])),
        &format!(
            "{svc1_all}{svc3_elems}{}",
            svc_lines(SVC3_CHAIN, "172.30.0.43", &[EP31])
        ),
        Some(0),
        "stale chains deleted",
    );

    // Add a service without endpoints: two elements.
    run.step(
        &(svc1_yaml() + &svc3_with(&["10.0.3.1"]) + &svc4_with(&[])),
        &format!(
            "{svc1_all}{svc3_elems}{}\
             add element ip kube-proxy cluster-ips {{ 172.30.0.44 }}\n\
             add element ip kube-proxy no-endpoint-services {{ 172.30.0.44 . tcp . 80 comment \"ns4/svc4:p80\" : goto reject-chain }}\n",
            svc_lines(SVC3_CHAIN, "172.30.0.43", &[EP31])
        ),
        Some(2),
        "add svc4 without endpoints",
    );
}

/// The last syncs of [`repeated_syncs`]: endpoints added, changed, emptied and restored.
fn endpoints_come_and_go(run: &mut Syncs) {
    let (svc1_all, svc3_elems, svc4_elems) = repeated_parts();

    // Its endpoints arrive.
    run.step(
        &(svc1_yaml() + &svc3_with(&["10.0.3.1"]) + &svc4_with(&["10.0.4.1"])),
        &format!(
            "{svc1_all}{svc3_elems}{}{svc4_elems}{}",
            svc_lines(SVC3_CHAIN, "172.30.0.43", &[EP31]),
            svc_lines(SVC4_CHAIN, "172.30.0.44", &[EP4])
        ),
        Some(10),
        "svc4 endpoints",
    );

    // An endpoint of svc3 changes: the old endpoint chain stays, flushed.
    run.step(
        &(svc1_yaml() + &svc3_with(&["10.0.3.2"]) + &svc4_with(&["10.0.4.1"])),
        &format!(
            "{svc1_all}{svc3_elems}{}add chain ip kube-proxy {}\n{svc4_elems}{}",
            svc_lines(SVC3_CHAIN, "172.30.0.43", &[EP32]),
            EP31.0,
            svc_lines(SVC4_CHAIN, "172.30.0.44", &[EP4])
        ),
        Some(9),
        "svc3 endpoint changed",
    );

    // Time passes; an endpoint is added to svc3.
    run.age();
    let svc3_two = format!(
        "{svc1_all}{svc3_elems}{}{svc4_elems}{}",
        svc_lines(SVC3_CHAIN, "172.30.0.43", &[EP32, EP33]),
        svc_lines(SVC4_CHAIN, "172.30.0.44", &[EP4])
    );
    run.step(
        &(svc1_yaml() + &svc3_with(&["10.0.3.2", "10.0.3.3"]) + &svc4_with(&["10.0.4.1"])),
        &svc3_two,
        Some(12),
        "svc3 endpoint added",
    );

    // svc3 loses all endpoints: its chains are flushed, its element replaced.
    let stale = run.step(
        &(svc1_yaml() + &svc3_with(&[]) + &svc4_with(&["10.0.4.1"])),
        &format!(
            "{svc1_all}\
             add element ip kube-proxy cluster-ips {{ 172.30.0.43 }}\n\
             add element ip kube-proxy no-endpoint-services {{ 172.30.0.43 . tcp . 80 comment \"ns3/svc3:p80\" : goto reject-chain }}\n\
             add chain ip kube-proxy {SVC3_CHAIN}\nadd chain ip kube-proxy {}\nadd chain ip kube-proxy {}\n{svc4_elems}{}",
            EP32.0,
            EP33.0,
            svc_lines(SVC4_CHAIN, "172.30.0.44", &[EP4])
        ),
        Some(5),
        "svc3 endpoints emptied",
    );
    let mut want = vec![SVC3_CHAIN.to_owned(), EP32.0.to_owned(), EP33.0.to_owned()];
    want.sort();
    assert_eq!(stale, want);

    // They come back at once: the chains are rewritten and no longer stale.
    let stale = run.step(
        &(svc1_yaml() + &svc3_with(&["10.0.3.2", "10.0.3.3"]) + &svc4_with(&["10.0.4.1"])),
        &svc3_two,
        Some(14),
        "svc3 endpoints restored",
    );
    assert!(stale.is_empty(), "{stale:?}");

    // Emptied, aged, restored: deleted, then recreated.
    run.step(
        &(svc1_yaml() + &svc3_with(&[]) + &svc4_with(&["10.0.4.1"])),
        &format!(
            "{svc1_all}\
             add element ip kube-proxy cluster-ips {{ 172.30.0.43 }}\n\
             add element ip kube-proxy no-endpoint-services {{ 172.30.0.43 . tcp . 80 comment \"ns3/svc3:p80\" : goto reject-chain }}\n\
             add chain ip kube-proxy {SVC3_CHAIN}\nadd chain ip kube-proxy {}\nadd chain ip kube-proxy {}\n{svc4_elems}{}",
            EP32.0,
            EP33.0,
            svc_lines(SVC4_CHAIN, "172.30.0.44", &[EP4])
        ),
        Some(5),
        "svc3 emptied again",
    );
    run.age();
    run.step(
        &(svc1_yaml() + &svc3_with(&["10.0.3.2", "10.0.3.3"]) + &svc4_with(&["10.0.4.1"])),
        &svc3_two,
        Some(14),
        "svc3 restored after aging",
    );

    // No changes: nothing written.
    run.step(
        &(svc1_yaml() + &svc3_with(&["10.0.3.2", "10.0.3.3"]) + &svc4_with(&["10.0.4.1"])),
        &svc3_two,
        Some(0),
        "no changes",
    );
}

/// kube-proxy's expected text reordered so that nft can load it: objects before the rules and
/// elements that refer to them (the order knftables' fake dumps them in).
fn creation_order(text: &str) -> String {
    let rank = |l: &str| match l.split(' ').nth(1) {
        Some("table") => 0,
        Some("chain") => 1,
        Some("set") => 2,
        Some("map") => 3,
        Some("rule") => 4,
        _ => 5,
    };
    let mut lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    lines.sort_by_key(|l| rank(l));
    lines.join("\n") + "\n"
}

/// `nft list table` output with the parts that depend on creation order or hashing made
/// canonical: blocks sorted by their header, set elements sorted.
fn normalize_listing(text: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    let mut elements: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(acc) = elements.as_mut() {
            acc.push(' ');
            acc.push_str(t);
            if t.ends_with('}') {
                let inner = acc
                    .trim_start_matches("elements = {")
                    .trim_end_matches('}')
                    .to_owned();
                let mut items: Vec<String> =
                    inner.split(',').map(|i| i.trim().to_owned()).collect();
                items.sort();
                cur.push(format!("elements = {{ {} }}", items.join(", ")));
                elements = None;
            }
            continue;
        }
        if t.starts_with("elements = {") {
            elements = Some(String::new());
            let acc = elements.as_mut().unwrap();
            acc.push_str(t);
            if t.ends_with('}') {
                let inner = t
                    .trim_start_matches("elements = {")
                    .trim_end_matches('}')
                    .to_owned();
                let mut items: Vec<String> =
                    inner.split(',').map(|i| i.trim().to_owned()).collect();
                items.sort();
                cur.push(format!("elements = {{ {} }}", items.join(", ")));
                elements = None;
            }
            continue;
        }
        if line.starts_with("\t") && !line.starts_with("\t\t") {
            if t == "}" {
                blocks.push(cur.join("\n"));
                cur.clear();
                continue;
            }
            if t.ends_with('{') {
                cur.clear();
            }
        }
        if !t.is_empty() {
            cur.push(t.to_owned());
        }
    }
    blocks.push(cur.join("\n"));
    blocks.sort();
    blocks
}

/// Everything the kernel holds in table `ip kube-proxy`, with handles dropped and anonymous
/// sets replaced by their contents.
fn kernel_view(ns: &TestNs, f: Family) -> Vec<String> {
    let mut sock = NftSocket::open_in(ns).expect("netlink socket");
    let mut out = Vec::new();
    let mut chains = sock.list_chains(f, TABLE).unwrap();
    chains.sort_by(|a, b| a.name.cmp(&b.name));
    for c in &chains {
        out.push(format!("chain {} {:?} {:?}", c.name, c.base, c.comment));
    }
    let mut sets = sock.list_sets(f, TABLE).unwrap();
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    let mut anon = std::collections::BTreeMap::new();
    for s in &sets {
        let mut els = sock.list_elements(f, TABLE, &s.name).unwrap();
        els.sort();
        if s.name.starts_with("__") {
            anon.insert(
                s.name.clone(),
                format!("{:x} {} {} {els:?}", s.flags, s.key_type, s.key_len),
            );
        } else {
            out.push(format!(
                "set {} flags {:x} key {} {} map {} timeout {:?} comment {:?}",
                s.name, s.flags, s.key_type, s.key_len, s.verdict_map, s.timeout_ms, s.comment
            ));
            for e in els {
                out.push(format!("element {} {e:?}", s.name));
            }
        }
    }
    for c in &chains {
        for r in sock.list_rules(f, TABLE, Some(&c.name)).unwrap() {
            assert_eq!(r.undecoded, 0, "{r:?}");
            let insns: Vec<Insn> = r
                .insns
                .into_iter()
                .map(|i| match i {
                    Insn::Lookup {
                        set,
                        sreg,
                        dreg,
                        invert,
                        ..
                    } => Insn::Lookup {
                        set: anon.get(&set).cloned().unwrap_or(set),
                        set_id: None,
                        sreg,
                        dreg,
                        invert,
                    },
                    other => other,
                })
                .collect();
            out.push(format!("rule {} {insns:?} {:?}", r.chain, r.comment));
        }
    }
    out
}

/// As root: the kernel accepts podnet's netlink batch, and the table it holds is the one `nft`
/// makes from kube-proxy's expected text: the same `nft list table` output, and the same
/// objects read back over netlink, expression by expression.
#[test]
fn kernel_holds_what_nft_makes_of_kube_proxys_text() {
    require_root!();
    let kp = TestNs::new("nft-kp");
    let script = creation_order(&format!("{BASE_RULES}{OVERALL}"));
    run_with_input(&kp, "nft", &["-f", "-"], script.as_bytes())
        .expect("nft loads kube-proxy's expected rules");
    let pn = TestNs::new("nft-pn");
    let mut syncer = NftablesSyncer::new(pn.ns().clone(), nft_fake_settings());
    let report = syncer
        .sync(&overall_state())
        .expect("the kernel accepts podnet's batch");
    assert!(report.full, "{report:?}");
    let listed = pn.exec("nft", &["list", "table", "ip", "kube-proxy"]);
    assert_eq!(
        normalize_listing(&listed),
        normalize_listing(&kp.exec("nft", &["list", "table", "ip", "kube-proxy"])),
        "nft list table differs; podnet's:\n{listed}"
    );
    assert!(listed.contains("numgen random mod 2 vmap { 0 : goto endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80, 1 : goto endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 }"), "{listed}");
    let (a, b) = (kernel_view(&pn, Family::Ip), kernel_view(&kp, Family::Ip));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "netlink read-back differs (podnet, nft)");
    }
    assert_eq!(a.len(), b.len());

    // A second sync with nothing changed writes nothing.
    let report = syncer.sync(&overall_state()).unwrap();
    assert!(!report.full);
    assert_eq!(report.operations, 0, "{report:?}");
}

/// Services exercising what the overall fixture does not: several source ranges (an anonymous
/// interval set), Local policies with local endpoints (`local-` chains), internal traffic
/// policy, UDP and SCTP, affinity over several endpoints.
fn rich_objects(v6: bool) -> String {
    let (cip, lb1, lb2, ranges, ep) = if v6 {
        (
            "fd00:172:30::",
            "2001:db8:ff::4",
            "2001:db8:ff::8",
            "[\"2001:db8::/64\", \"2001:db8:77::/48\"]",
            "fd00:10:180::",
        )
    } else {
        (
            "172.30.0.",
            "1.2.3.4",
            "5.6.7.8",
            "[\"192.168.0.0/24\", \"203.0.113.0/25\"]",
            "10.180.0.",
        )
    };
    let fam = if v6 { "IPv6" } else { "IPv4" };
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: lb, namespace: ns1}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  clusterIP: "{cip}41"
  healthCheckNodePort: 30000
  loadBalancerSourceRanges: {ranges}
  ports: [{{name: p80, port: 80, protocol: TCP, nodePort: 3001}}]
status: {{loadBalancer: {{ingress: [{{ip: "{lb1}"}}, {{ip: "{lb2}"}}]}}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: lb-1, namespace: ns1, labels: {{kubernetes.io/service-name: lb}}}}
addressType: {fam}
ports: [{{name: p80, port: 80, protocol: TCP}}]
endpoints:
- {{addresses: ["{ep}1"], nodeName: test-node}}
- {{addresses: ["{ep}2"], nodeName: other-node}}
---
apiVersion: v1
kind: Service
metadata: {{name: dns, namespace: ns2}}
spec:
  clusterIP: "{cip}42"
  sessionAffinity: ClientIP
  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: 300}}}}
  ports:
  - {{name: dns, port: 53, protocol: UDP}}
  - {{name: sctp, port: 9999, protocol: SCTP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: dns-1, namespace: ns2, labels: {{kubernetes.io/service-name: dns}}}}
addressType: {fam}
ports: [{{name: dns, port: 5353, protocol: UDP}}, {{name: sctp, port: 9999, protocol: SCTP}}]
endpoints:
- {{addresses: ["{ep}3"]}}
- {{addresses: ["{ep}4"]}}
- {{addresses: ["{ep}5"]}}
---
apiVersion: v1
kind: Service
metadata: {{name: itp, namespace: ns3}}
spec:
  type: NodePort
  internalTrafficPolicy: Local
  clusterIP: "{cip}43"
  ports: [{{name: http, port: 8080, protocol: TCP, nodePort: 3003}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: itp-1, namespace: ns3, labels: {{kubernetes.io/service-name: itp}}}}
addressType: {fam}
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
- {{addresses: ["{ep}6"], nodeName: test-node}}
- {{addresses: ["{ep}7"], nodeName: other-node}}
"#
    )
}

/// As root, for several Service shapes, node settings and both families: the table podnet
/// sends over netlink is the one `nft -f` builds from podnet's own script of it.
#[test]
fn kernel_netlink_equals_nft_of_the_script() {
    require_root!();
    use podnet_nat::kube::{IpFamily, parse_objects};
    use podnet_nat::kube_proxy::{LocalDetector, MasqueradeMark, NodeSettings};
    let cases: Vec<(&str, bool, LocalDetector, bool)> = vec![
        (
            "v4-cidr",
            false,
            LocalDetector::ClusterCidr("10.0.0.0/8".parse().unwrap()),
            false,
        ),
        (
            "v4-bridge-masqall",
            false,
            LocalDetector::BridgeInterface("cni0".into()),
            true,
        ),
        (
            "v6-prefix",
            true,
            LocalDetector::InterfaceNamePrefix("veth".into()),
            false,
        ),
        (
            "v6-cidr",
            true,
            LocalDetector::ClusterCidr("fd00:10::/64".parse().unwrap()),
            false,
        ),
    ];
    for (tag, v6, detector, masq_all) in cases {
        let family = if v6 { IpFamily::V6 } else { IpFamily::V4 };
        let (objects, w) = parse_objects(&rich_objects(v6), tag);
        assert!(w.is_empty(), "{w:?}");
        let (state, w) = ClusterState::from_objects(&objects, family);
        assert!(w.is_empty(), "{w:?}");
        let mut node = NodeSettings::new("test-node", family);
        node.node_ips = vec![
            if v6 { "2001:db8::1" } else { "192.168.0.2" }
                .parse()
                .unwrap(),
        ];
        node.local_detector = detector;
        node.masquerade_all = masq_all;
        node.masquerade_mark = MasqueradeMark::from_bit(14);
        let cidrs: &[&str] = if v6 {
            &["fd00:172:30::/112", "fd00:172:31::/112"]
        } else {
            &["172.30.0.0/16", "172.31.0.0/16"]
        };
        let settings = NftProxySettings {
            node,
            service_cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
        };
        let fam = if v6 { Family::Ip6 } else { Family::Ip };
        let script = Planner::new(settings.clone())
            .plan_full(&state, &[], &[])
            .tx
            .render();
        let kp = TestNs::new("nft-script");
        run_with_input(&kp, "nft", &["-f", "-"], script.as_bytes())
            .unwrap_or_else(|e| panic!("{tag}: nft refuses podnet's script: {e}\n{script}"));
        let pn = TestNs::new("nft-netlink");
        let mut syncer = NftablesSyncer::new(pn.ns().clone(), settings);
        syncer
            .sync(&state)
            .unwrap_or_else(|e| panic!("{tag}: the kernel refuses podnet's batch: {e}"));
        let list = |ns: &TestNs| ns.exec("nft", &["list", "table", fam.name(), "kube-proxy"]);
        let listed = list(&pn);
        assert_eq!(
            normalize_listing(&listed),
            normalize_listing(&list(&kp)),
            "{tag}: nft list differs; podnet's:\n{listed}"
        );
        let (a, b) = (kernel_view(&pn, fam), kernel_view(&kp, fam));
        assert_eq!(a.len(), b.len(), "{tag}");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x, y, "{tag}: netlink read-back differs (netlink, nft -f)");
        }
        // The shapes that matter are really there.
        assert!(listed.contains("local-"), "{tag}: {listed}");
        assert!(
            listed.contains(" != { "),
            "{tag}: no interval set: {listed}"
        );
    }
}

/// As root: a new syncer (a restarted proxy) takes over a table another one wrote: its first
/// sync is a full one, flushes the chains of Services that went away while it was down and
/// deletes them later, and leaves the table equal to a fresh one.
#[test]
fn a_restarted_syncer_takes_over_the_table() {
    require_root!();
    let ns = TestNs::new("nft-restart");
    let all = overall_state();
    let mut first = NftablesSyncer::new(ns.ns().clone(), nft_fake_settings());
    first.sync(&all).expect("first syncer");
    drop(first);
    // While no proxy ran, svc4 went away.
    let mut fewer = all.clone();
    fewer.services.retain(|k, _| &*k.service.name != "svc4");
    fewer.endpoints.retain(|k, _| &*k.service.name != "svc4");
    let mut second = NftablesSyncer::new(ns.ns().clone(), nft_fake_settings());
    second.planner_mut().set_stale_chain_delay(Duration::ZERO);
    let report = second.sync(&fewer).expect("second syncer");
    assert!(report.full);
    let stale: Vec<&str> = second.planner().stale_chains().collect();
    assert_eq!(stale.len(), 4, "{stale:?}"); // service, external and two endpoint chains
    assert!(stale.iter().all(|c| c.contains("ns4/svc4")), "{stale:?}");
    // The next sync deletes them; then the table is what a fresh full sync makes.
    let report = second.sync(&fewer).expect("third sync");
    assert_eq!(report.chains_deleted, 4, "{report:?}");
    assert_eq!(report.operations, 0, "{report:?}");
    let fresh = TestNs::new("nft-fresh");
    NftablesSyncer::new(fresh.ns().clone(), nft_fake_settings())
        .sync(&fewer)
        .expect("fresh");
    let list =
        |n: &TestNs| normalize_listing(&n.exec("nft", &["list", "table", "ip", "kube-proxy"]));
    assert_eq!(list(&ns), list(&fresh));
}
