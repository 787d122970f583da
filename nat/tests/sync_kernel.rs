//! Syncs in a namespace: a failing partial sync falls back to a full one (kube-proxy's
//! TestSyncProxyRulesRepeated failure scenario), a failed restore leaves the previous rules
//! in place, and rules other programs wrote into the built-in chains (matches the rule model
//! does not know) neither hide our jumps nor get touched; rule counts come from what was
//! written; full syncs repair jumps deleted by hand and delete chains left by an earlier run.

use podnet_nat::kube::{ClusterState, IpFamily, parse_objects};
use podnet_nat::kube_proxy::NodeSettings;
use podnet_nat::kube_proxy::iptables_sync::{IptablesSyncer, PartialMode};
use podnet_testsupport::{TestNs, require_root};

fn svc(ns: &str, name: &str, ip: &str, ep: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  clusterIP: {ip}\n  ports: [{{name: p80, port: 80, protocol: TCP}}]\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nports: [{{name: p80, port: 80, protocol: TCP}}]\nendpoints: [{{addresses: [{ep}]}}]\n"
    )
}

fn state(yaml: &str) -> ClusterState {
    let (objs, w) = parse_objects(yaml, "t");
    assert!(w.is_empty(), "{w:?}");
    ClusterState::from_objects(&objs, IpFamily::V4).0
}

#[test]
fn failed_partial_sync_falls_back_to_full() {
    require_root!();
    let node = TestNs::new("sync-fallback");
    for mode in [PartialMode::KubeProxy, PartialMode::Minimal] {
        let mut syncer =
            IptablesSyncer::new(node.ns().clone(), NodeSettings::new("n1", IpFamily::V4))
                .with_partial_mode(mode);
        let s3 = svc("ns3", "svc3", "10.96.0.43", "10.244.0.3");
        let s4 = svc("ns4", "svc4", "10.96.0.44", "10.244.0.4");
        assert!(syncer.sync(&state(&(s3.clone() + &s4))).unwrap().full);
        // A stray jump from svc3's chain to svc4's endpoint chain: deleting svc4 in a partial
        // sync fails (its chain is still referenced); the full sync rewrites svc3's chain too.
        let nat = node.exec("iptables-save", &["-t", "nat"]);
        let sep4 = nat
            .lines()
            .find(|l| l.starts_with("-A KUBE-SEP-") && l.contains("10.244.0.4:80"))
            .and_then(|l| l.split(' ').nth(1))
            .unwrap()
            .to_owned();
        let svc3 = nat
            .lines()
            .find(|l| l.contains("ns3/svc3:p80 cluster IP") && l.starts_with("-A KUBE-SERVICES"))
            .and_then(|l| l.split("-j ").nth(1))
            .unwrap()
            .to_owned();
        node.exec("iptables", &["-t", "nat", "-A", &svc3, "-j", &sep4]);
        let report = syncer
            .sync(&state(&s3))
            .expect("fallback full sync succeeds");
        assert!(report.full && report.fell_back, "{mode:?}: {report:?}");
        let nat = node.exec("iptables-save", &["-t", "nat"]);
        assert!(
            !nat.contains(&sep4),
            "{mode:?}: svc4's chain should be gone:\n{nat}"
        );
        assert!(nat.contains("ns3/svc3:p80 cluster IP"));
        // Clean up for the next mode.
        syncer.sync(&ClusterState::default()).unwrap();
    }
}

#[test]
fn a_refused_restore_leaves_the_previous_rules() {
    require_root!();
    let node = TestNs::new("sync-refused");
    let mut syncer = IptablesSyncer::new(node.ns().clone(), NodeSettings::new("n1", IpFamily::V4));
    let s1 = svc("ns1", "svc1", "10.96.0.41", "10.244.0.1");
    syncer.sync(&state(&s1)).unwrap();
    let before = node.exec("iptables-save", &["-t", "nat"]);
    // A chain we do not own jumps to the endpoint chain the next sync must delete, so the nat
    // commit fails (partial, then full): nothing of it may be applied.
    let sep = before
        .lines()
        .find(|l| l.starts_with("-A KUBE-SEP-"))
        .and_then(|l| l.split(' ').nth(1))
        .unwrap()
        .to_owned();
    node.exec("iptables", &["-t", "nat", "-N", "OTHER"]);
    node.exec("iptables", &["-t", "nat", "-A", "OTHER", "-j", &sep]);
    let err = syncer.sync(&ClusterState::default());
    assert!(err.is_err(), "deleting a referenced chain must fail");
    let after = node.exec("iptables-save", &["-t", "nat"]);
    let rules = |t: &str| {
        t.lines()
            .filter(|l| l.starts_with("-A KUBE-"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        rules(&before),
        rules(&after),
        "rules changed by a refused sync"
    );
}

/// What Docker, a distribution's firewall and a transparent proxy write into the built-in
/// chains, in `iptables-save`'s own spelling: matches and targets the rule model does not
/// represent (`-m state`, `-m multiport`, `-p icmp --icmp-type`, port ranges, `REDIRECT
/// --to-ports`), next to ones it does.
const FOREIGN: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A INPUT -p tcp -m multiport --dports 22,80,443 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 30000:32767 -j ACCEPT
-A INPUT -m conntrack --ctstate INVALID -j DROP
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A OUTPUT -p udp -m udp --dport 53 -m owner --uid-owner 0 -j ACCEPT
-A DOCKER-USER -j RETURN
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A PREROUTING -i eth1 -p tcp -m multiport --dports 80,443 -j REDIRECT --to-ports 3128
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 192.168.122.0/24 ! -d 192.168.122.0/24 -p tcp -j MASQUERADE --to-ports 1024-65535
-A DOCKER -i docker0 -j RETURN
COMMIT
";

/// The `-A` lines of `text` that are not ours (no `KUBE-` in them).
fn foreign_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("-A ") && !l.contains("KUBE-"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn foreign_rules_in_builtin_chains_do_not_duplicate_our_jumps() {
    require_root!();
    let node = TestNs::new("sync-foreign");
    let load = node
        .ns()
        .command("iptables-restore")
        .arg("--noflush")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(FOREIGN.as_bytes())?;
            c.wait()
        })
        .unwrap();
    assert!(load.success(), "loading the foreign rules");
    let before = node.exec("iptables-save", &[]);
    let mut syncer = IptablesSyncer::new(node.ns().clone(), NodeSettings::new("n1", IpFamily::V4));
    let s1 = svc("ns1", "svc1", "10.96.0.41", "10.244.0.1");
    for _ in 0..3 {
        syncer.force_full_sync();
        assert!(syncer.sync(&state(&s1)).unwrap().full);
    }
    let after = node.exec("iptables-save", &[]);
    // Each jump from a built-in chain to one of ours, once.
    for (table, builtin, rule) in podnet_nat::kube_proxy::iptables_mode::jump_rules() {
        let text = node.exec("iptables-save", &["-t", table.as_str()]);
        let dst = match &rule.target {
            Some(podnet_nat::iptables::Target::Jump(d)) => d.to_string(),
            other => panic!("{other:?}"),
        };
        let comment = rule
            .matches
            .iter()
            .find_map(|m| match m {
                podnet_nat::iptables::Match::Comment(c) => Some(c.to_string()),
                _ => None,
            })
            .unwrap_or_default();
        let n = text
            .lines()
            .filter(|l| l.starts_with(&format!("-A {builtin} ")))
            .filter(|l| l.contains(&comment) && l.ends_with(&format!("-j {dst}")))
            .count();
        assert_eq!(
            n, 1,
            "{table} {builtin} -> {dst} appears {n} times:\n{text}"
        );
    }
    // The foreign rules are untouched, in their order.
    assert_eq!(foreign_lines(&before), foreign_lines(&after));
}

/// kubelet's `KUBE-FIREWALL` (with its `-m mark` rule), Docker's chains, a distribution's INPUT
/// rules and firewalld's table stay byte for byte as they were through full and partial syncs
/// (kube-proxy adds its rule to kubelet's chain only when missing, and never flushes it).
#[test]
fn foreign_chains_stay_intact_through_syncs() {
    use podnet_testsupport::foreign::{self, HostState};
    require_root!();
    let node = TestNs::new("sync-foreign-host");
    foreign::load(&node, &foreign::ALL);
    let before = HostState::read(&node);
    let mut syncer = IptablesSyncer::new(node.ns().clone(), NodeSettings::new("n1", IpFamily::V4));
    let s1 = svc("ns1", "svc1", "10.96.0.41", "10.244.0.1");
    let s2 = svc("ns2", "svc2", "10.96.0.42", "10.244.0.2");
    assert!(syncer.sync(&state(&s1)).unwrap().full);
    assert!(!syncer.sync(&state(&(s1.clone() + &s2))).unwrap().full);
    syncer.force_full_sync();
    assert!(syncer.sync(&state(&s2)).unwrap().full);
    let after = HostState::read(&node);
    if let Err(why) = before.foreign_intact(&after) {
        panic!("{why}\n{}", after.iptables_save());
    }
    // Our own rules are there.
    assert!(after.iptables_save().contains("ns2/svc2:p80 cluster IP"));
}

/// The rule count a sync reports is counted from what it wrote and equals what the kernel
/// holds in kube-proxy's nat chains; a minimal partial sync writes only the changed Service's
/// chains; a full sync puts back a jump deleted by hand (in the same restore as the rules);
/// a restarted syncer deletes the chains of Services that went away while it was down.
#[test]
fn counts_come_from_what_was_written_and_full_syncs_repair() {
    require_root!();
    let node = TestNs::new("sync-count");
    let new_syncer = || {
        IptablesSyncer::new(node.ns().clone(), NodeSettings::new("n1", IpFamily::V4))
            .with_partial_mode(PartialMode::Minimal)
    };
    let ours = || {
        node.exec("iptables-save", &["-t", "nat"])
            .lines()
            .filter(|l| l.starts_with("-A KUBE-"))
            .count()
    };
    let s1 = svc("ns1", "svc1", "10.96.0.41", "10.244.0.1");
    let s2 = svc("ns2", "svc2", "10.96.0.42", "10.244.0.2");
    let s2b = svc("ns2", "svc2", "10.96.0.42", "10.244.0.3");
    let mut syncer = new_syncer();
    let r = syncer.sync(&state(&(s1.clone() + &s2))).unwrap();
    assert!(r.full);
    assert_eq!(r.nat_rules, ours(), "{r:?}");
    assert!(r.filter_rules > 0, "{r:?}");
    // One endpoint of svc2 replaced: only svc2's chains are written.
    let r = syncer.sync(&state(&(s1.clone() + &s2b))).unwrap();
    assert!(!r.full && r.services_written == 1, "{r:?}");
    assert!(r.input_bytes < 2048, "{r:?}");
    assert_eq!(r.nat_rules, ours(), "{r:?}");
    let nat = node.exec("iptables-save", &["-t", "nat"]);
    assert!(
        nat.contains("10.244.0.3:80") && !nat.contains("10.244.0.2:80"),
        "{nat}"
    );
    // A jump deleted by hand comes back with the next full sync, once.
    let jump = [
        "-t",
        "nat",
        "-D",
        "PREROUTING",
        "-m",
        "comment",
        "--comment",
        "kubernetes service portals",
        "-j",
        "KUBE-SERVICES",
    ];
    node.exec("iptables", &jump);
    syncer.force_full_sync();
    assert!(syncer.sync(&state(&(s1.clone() + &s2b))).unwrap().full);
    let nat = node.exec("iptables-save", &["-t", "nat"]);
    let jumps = nat
        .lines()
        .filter(|l| l.starts_with("-A PREROUTING") && l.ends_with("-j KUBE-SERVICES"))
        .count();
    assert_eq!(jumps, 1, "{nat}");
    // Restarted without svc1: its chains go with the first sync.
    drop(syncer);
    let mut syncer = new_syncer();
    let r = syncer.sync(&state(&s2b)).unwrap();
    assert!(r.full && r.chains_deleted >= 2, "{r:?}");
    let nat = node.exec("iptables-save", &["-t", "nat"]);
    assert!(
        !nat.contains("10.244.0.1:80") && !nat.contains("svc1"),
        "{nat}"
    );
    assert_eq!(r.nat_rules, ours(), "{r:?}");
}
