//! Helpers shared by the integration tests.
#![allow(dead_code)]

use podnet_nat::kube::{ClusterState, IpFamily, parse_objects};
use podnet_nat::kube_proxy::{LocalDetector, MasqueradeMark, NodeSettings};

/// The node settings of kube-proxy's `NewFakeProxier`.
pub(crate) fn fake_proxier_settings() -> NodeSettings {
    let mut s = NodeSettings::new("test-node", IpFamily::V4);
    s.node_ips = vec!["192.168.0.2".parse().unwrap()];
    s.local_detector = LocalDetector::ClusterCidr("10.0.0.0/8".parse().unwrap());
    s.masquerade_mark = MasqueradeMark::literal("0x4000").unwrap();
    s.localhost_nodeports = true;
    s.nfacct_counters = true;
    s
}

pub(crate) fn state_from_yaml(text: &str) -> ClusterState {
    let (objects, warnings) = parse_objects(text, "fixture");
    assert!(warnings.is_empty(), "{warnings:?}");
    let (state, warnings) = ClusterState::from_objects(&objects, IpFamily::V4);
    assert!(warnings.is_empty(), "{warnings:?}");
    state
}

/// The service name in a rule's comment: the comment up to the first space or colon.
fn comment_service(line: &str) -> Option<String> {
    let i = line.find("--comment ")?;
    let rest = &line[i + 10..];
    let text = if let Some(r) = rest.strip_prefix('"') {
        &r[..r.find('"')?]
    } else {
        rest.split(' ').next()?
    };
    Some(text.split([' ', ':']).next()?.to_owned())
}

fn chain_of(line: &str) -> &str {
    line.split(' ').nth(1).unwrap_or("")
}

fn chain_order(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    let rank = |c: &str| match c {
        "KUBE-NODEPORTS" => 0,
        "KUBE-SERVICES" => 1,
        c if c.starts_with("KUBE-") => 2,
        _ => 3,
    };
    rank(a)
        .cmp(&rank(b))
        .then_with(|| if rank(a) < 2 { Equal } else { a.cmp(b) })
}

/// kube-proxy's `sortIPTablesRules` (proxier_test.go): tables by name; chains KUBE-NODEPORTS,
/// KUBE-SERVICES, other KUBE-* alphabetically, then the rest; rules grouped by chain in that
/// order, keeping their relative order, except KUBE-NODEPORTS and KUBE-SERVICES, which are
/// stably sorted by the service named in their comment (the "must be the last rule" rule of
/// nat KUBE-SERVICES last); `-X` lines at the end.
pub(crate) fn sort_like_kube_proxy(text: &str) -> String {
    // (name, declared chains, rules, deleted chains)
    type Block = (String, Vec<String>, Vec<String>, Vec<String>);
    let mut tables: Vec<Block> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            tables.push((name.to_owned(), vec![], vec![], vec![]));
        } else if line == "COMMIT" {
        } else if let Some(decl) = line.strip_prefix(':') {
            tables
                .last_mut()
                .unwrap()
                .1
                .push(decl.split(' ').next().unwrap().to_owned());
        } else if let Some(c) = line.strip_prefix("-X ") {
            tables.last_mut().unwrap().3.push(c.to_owned());
        } else {
            tables.last_mut().unwrap().2.push(line.to_owned());
        }
    }
    tables.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (name, mut chains, rules, mut deleted) in tables {
        chains.sort_by(|a, b| chain_order(a, b));
        chains.dedup();
        deleted.sort_by(|a, b| chain_order(a, b));
        out.push_str(&format!("*{name}\n"));
        for c in &chains {
            out.push_str(&format!(":{c} - [0:0]\n"));
        }
        for c in &chains {
            let mut mine: Vec<&String> = rules.iter().filter(|r| chain_of(r) == c).collect();
            if c == "KUBE-NODEPORTS" || c == "KUBE-SERVICES" {
                let last = |r: &str| r.contains("must be the last rule");
                mine.sort_by(|a, b| {
                    last(a).cmp(&last(b)).then_with(|| {
                        match (comment_service(a), comment_service(b)) {
                            (Some(x), Some(y)) => x.cmp(&y),
                            _ => std::cmp::Ordering::Equal,
                        }
                    })
                });
            }
            for r in mine {
                out.push_str(r);
                out.push('\n');
            }
        }
        for c in &deleted {
            out.push_str(&format!("-X {c}\n"));
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// Asserts two rule texts are equal after sorting both, with a readable diff.
pub(crate) fn assert_rules_eq(expected: &str, actual: &str) {
    let e = sort_like_kube_proxy(expected);
    let a = sort_like_kube_proxy(actual);
    if e != a {
        let el: Vec<&str> = e.lines().collect();
        let al: Vec<&str> = a.lines().collect();
        let mut diff = String::new();
        for l in &el {
            if !al.contains(l) {
                diff.push_str(&format!("- {l}\n"));
            }
        }
        for l in &al {
            if !el.contains(l) {
                diff.push_str(&format!("+ {l}\n"));
            }
        }
        panic!("rules differ (- expected, + actual):\n{diff}\n--- actual sorted ---\n{a}");
    }
}
