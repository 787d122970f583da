//! `kube-proxy --dry-run` in nftables and ipvs modes against kube-proxy's own expectations: the
//! binary reads kube-proxy's test Services and EndpointSlices from a directory, is given the
//! fake proxier's node by flags, and what it prints is compared with what kube-proxy's unit
//! tests (pkg/proxy/nftables/proxier_test.go, pkg/proxy/ipvs/proxier_test.go) state. Where the
//! real binary must differ from kube-proxy's fake proxier the output is normalised, each time
//! with the reason next to it. Needs no root: `--dry-run` changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// A directory of object files, removed on drop.
struct ConfigDir(PathBuf);

impl ConfigDir {
    fn new(tag: &str, yaml: &str) -> ConfigDir {
        let dir = std::env::temp_dir().join(format!("podnet-kp-dry-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("objects.yaml"), yaml).unwrap();
        ConfigDir(dir)
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `kube-proxy --dry-run` on `yaml` with `args`; its standard output.
fn dry_run(tag: &str, yaml: &str, args: &[&str]) -> String {
    let dir = ConfigDir::new(tag, yaml);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-proxy"))
        .arg("--dry-run")
        .args(args)
        .arg("--config-dir")
        .arg(&dir.0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

// ---------------------------------------------------------------------------------------------
// nftables mode
// ---------------------------------------------------------------------------------------------

/// The table a transaction leaves behind when applied to an empty one, as knftables' fake
/// `Dump()`s it: objects, then rules in the order they were added, then elements. `flush
/// chain` drops the rules added to the chain before it and `flush set`/`flush map` its
/// elements, as the kernel does.
fn replay(tx: &str) -> Vec<String> {
    let mut objects: Vec<String> = Vec::new();
    let mut rules: Vec<(String, String)> = Vec::new();
    let mut elements: Vec<(String, String)> = Vec::new();
    for line in tx.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let w: Vec<&str> = line.split(' ').collect();
        assert!(w.len() >= 4, "unexpected line {line:?}");
        let name = w.get(4).copied().unwrap_or("").to_owned();
        match (w[0], w[1]) {
            ("add", "table" | "chain" | "set" | "map") => {
                if !objects.iter().any(|o| o == line) {
                    objects.push(line.to_owned());
                }
            }
            ("add", "rule") => rules.push((name, line.to_owned())),
            ("add", "element") => {
                if !elements.iter().any(|(_, l)| l == line) {
                    elements.push((name, line.to_owned()));
                }
            }
            ("flush", "chain") => rules.retain(|(c, _)| *c != name),
            ("flush", "set" | "map") => elements.retain(|(s, _)| *s != name),
            _ => panic!("a first sync of an empty table should not {line:?}"),
        }
    }
    objects
        .into_iter()
        .chain(rules.into_iter().map(|(_, l)| l))
        .chain(elements.into_iter().map(|(_, l)| l))
        .collect()
}

/// kube-proxy's `sortNFTablesTransaction`, applied to both sides by its
/// `assertNFTablesTransactionEqual`: blank lines and comments dropped; the table first, then
/// by object type (chain, rule, set, map, element), then by object name; rules keep their
/// order, other lines sort whole.
fn sort_like_kube_proxy(lines: &[String]) -> Vec<String> {
    let rank = |w: &str| match w {
        "chain" => 9,
        "rule" => 8,
        "set" => 7,
        "map" => 6,
        "element" => 5,
        _ => 0,
    };
    let mut lines: Vec<String> = lines
        .iter()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    lines.sort_by(|a, b| {
        use std::cmp::Ordering::*;
        let wa: Vec<&str> = a.split(' ').collect();
        let wb: Vec<&str> = b.split(' ').collect();
        match (wa[1] == "table", wb[1] == "table") {
            (true, true) => return Equal,
            (true, false) => return Less,
            (false, true) => return Greater,
            _ => {}
        }
        rank(wb[1])
            .cmp(&rank(wa[1]))
            .then_with(|| wa[4].cmp(wb[4]))
            .then_with(|| if wa[1] == "rule" { Equal } else { a.cmp(b) })
    });
    lines
}

/// kube-proxy's TestOverallNFTablesRules: the services of TestOverallIPTablesRules
/// (nat/tests/fixtures/overall.yaml) give the table kube-proxy expects.
///
/// The flags reproduce `NewFakeProxier(v1.IPv4Protocol)`: node `test-node` whose IPv4
/// addresses are 192.168.0.2 (the node IP), 192.168.1.2 and 192.168.99.11, pod CIDR
/// 10.0.0.0/8, `--nodeport-addresses 192.168.0.2/32` (its IPv6 half is the other family's) and
/// the Service CIDR 172.30.0.0/16. The masquerade bit is the default, 14.
///
/// Normalisations, each because the real binary must differ from the fake:
/// - the binary prints the transaction a first sync sends (every object added and flushed,
///   then filled), kube-proxy's test compares the table knftables' fake holds after it: the
///   transaction is replayed onto an empty table (see [`replay`]);
/// - kube-proxy's real binary formats the mark with `%#08x` of the bit (`0x00004000`), its
///   fake proxier is given the literal `0x4000`: the expected text is read with the former;
/// - both sides are sorted as kube-proxy's own test sorts them.
#[test]
fn nftables_dry_run_equals_kube_proxys_overall_rules() {
    let out = dry_run(
        "nft",
        include_str!("../../nat/tests/fixtures/overall.yaml"),
        &[
            "--proxy-mode",
            "nftables",
            "--hostname-override",
            "test-node",
            "--node-ip",
            "192.168.0.2,192.168.1.2,192.168.99.11",
            "--cluster-cidr",
            "10.0.0.0/8",
            "--nodeport-addresses",
            "192.168.0.2/32",
            "--service-cluster-ip-range",
            "172.30.0.0/16",
        ],
    );
    // kube-proxy's `baseRules` followed by TestOverallNFTablesRules' own expectation, as
    // podnet-nat's compiler-level golden test holds them.
    let expected: Vec<String> = [
        include_str!("../../nat/tests/fixtures/nftables-base.expected"),
        include_str!("../../nat/tests/fixtures/overall-nftables.expected"),
    ]
    .concat()
    .lines()
    .map(|l| l.replace("0x4000", "0x00004000"))
    .collect();
    let expected = sort_like_kube_proxy(&expected);
    let ours = sort_like_kube_proxy(&replay(&out));
    let missing: Vec<&String> = expected.iter().filter(|l| !ours.contains(l)).collect();
    let extra: Vec<&String> = ours.iter().filter(|l| !expected.contains(l)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing from --dry-run: {missing:#?}\nnot expected: {extra:#?}\n--- dry run ---\n{out}"
    );
    // Same lines, and the same order where order matters (rules within a chain).
    for (i, (o, e)) in ours.iter().zip(&expected).enumerate() {
        assert_eq!(o, e, "line {} of the sorted table", i + 1);
    }
    assert_eq!(ours.len(), expected.len());
}

// ---------------------------------------------------------------------------------------------
// ipvs mode
// ---------------------------------------------------------------------------------------------

/// What `--dry-run --proxy-mode ipvs` prints, read back.
#[derive(Debug, Default)]
struct IpvsDryRun {
    /// Virtual services by their `ipvsadm` identity (`-t 10.20.30.41:80`): the `-A` line and
    /// the `-a` lines of their real servers.
    services: BTreeMap<String, (String, BTreeSet<String>)>,
    /// The ipsets by name, with their entries once restored.
    sets: BTreeMap<String, BTreeSet<String>>,
    /// The `iptables-restore` input: chain declarations and rules, by table.
    chains: BTreeMap<String, Vec<String>>,
    rules: Vec<String>,
    /// Addresses bound to kube-ipvs0.
    bound: BTreeSet<String>,
}

fn parse_ipvs(out: &str) -> IpvsDryRun {
    let mut r = IpvsDryRun::default();
    let mut section = "";
    let mut table = String::new();
    // ipset restore fills a scratch set and swaps it with the real one: entries are read as
    // the real set's once swapped.
    let mut scratch: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in out.lines() {
        if let Some(h) = line.strip_prefix("# ") {
            section = if h.starts_with("IPVS") {
                "ipvs"
            } else if h.starts_with("ipsets") {
                "ipset"
            } else if h.starts_with("iptables") {
                "iptables"
            } else if h.starts_with("jumps") {
                "jumps"
            } else if h.starts_with("addresses") {
                "bound"
            } else {
                panic!("unknown section {h:?}")
            };
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        match section {
            "ipvs" => {
                let id = format!("{} {}", w[1], w[2]);
                let e = r.services.entry(id).or_default();
                match w[0] {
                    "-A" => e.0 = line.to_owned(),
                    "-a" => {
                        e.1.insert(line.to_owned());
                    }
                    _ => panic!("{line:?}"),
                }
            }
            "ipset" => match w[0] {
                "create" | "flush" => {
                    scratch.entry(w[1].to_owned()).or_default();
                }
                "add" => {
                    scratch
                        .entry(w[1].to_owned())
                        .or_default()
                        .insert(w[2].to_owned());
                }
                "swap" => {
                    let entries = scratch.remove(w[1]).unwrap_or_default();
                    r.sets.insert(w[2].to_owned(), entries);
                }
                "destroy" => {}
                _ => panic!("{line:?}"),
            },
            "iptables" => {
                if let Some(t) = line.strip_prefix('*') {
                    table = t.to_owned();
                } else if let Some(c) = line.strip_prefix(':') {
                    r.chains
                        .entry(table.clone())
                        .or_default()
                        .push(c.split(' ').next().unwrap().to_owned());
                } else if line.starts_with("-A ") {
                    r.rules.push(line.to_owned());
                }
            }
            "jumps" => {}
            "bound" => {
                r.bound.insert(line.trim_end_matches("/32").to_owned());
            }
            _ => panic!("output before any section: {line:?}"),
        }
    }
    r
}

mod dry_run_ipvs;

use dry_run_ipvs::{Expect, IpvsCase, Vs, ipvs_cases};
fn jumps(rule: &str, chain: &str, target: &str, set: &str) -> bool {
    let w: Vec<&str> = rule.split_whitespace().collect();
    if w.get(1) != Some(&chain) {
        return false;
    }
    let jump = w
        .iter()
        .rposition(|x| *x == "-j")
        .and_then(|i| w.get(i + 1));
    if jump != Some(&target) {
        return false;
    }
    let after = |flag: &str| {
        w.windows(2)
            .find(|p| p[0] == flag)
            .map(|p| p[1])
            .unwrap_or("")
    };
    if set.is_empty() {
        true
    } else if set.contains('/') {
        after("-s") == set
    } else {
        after("--match-set") == set
    }
}

fn check_ipvs_case(case: &IpvsCase, out: &str) -> Vec<String> {
    let got = parse_ipvs(out);
    let mut errors = Vec::new();
    for e in &case.expect {
        match e {
            Expect::Ipvs(want) => {
                let want: BTreeMap<String, (String, BTreeSet<String>)> =
                    want.iter().map(Vs::lines).collect();
                if want != got.services {
                    errors.push(format!(
                        "IPVS state differs:\n  kube-proxy: {want:#?}\n  podnet: {:#?}",
                        got.services
                    ));
                }
            }
            Expect::CheckIpvs(n, want) => {
                if got.services.len() != *n {
                    errors.push(format!(
                        "expected {n} virtual services, got {:#?}",
                        got.services
                    ));
                }
                if let Some(want) = want {
                    let (id, (_, rs)) = want.lines();
                    match got.services.get(&id) {
                        Some((_, got_rs)) if *got_rs == rs => {}
                        other => errors
                            .push(format!("{id}: expected real servers {rs:?}, got {other:?}")),
                    }
                }
            }
            Expect::AllPersistent(t) => {
                for (id, (head, _)) in &got.services {
                    if !head.ends_with(&format!(" -p {t}")) {
                        errors.push(format!("{id} is not persistent for {t}s: {head}"));
                    }
                }
            }
            Expect::IpSet(name, want) => {
                let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
                if got.sets.get(*name) != Some(&want) {
                    errors.push(format!(
                        "ipset {name}: expected {want:?}, got {:?}",
                        got.sets.get(*name)
                    ));
                }
            }
            Expect::Jump(chain, target, set) => {
                if !got.rules.iter().any(|r| jumps(r, chain, target, set)) {
                    errors.push(format!(
                        "no rule in {chain} jumping to {target} (match {set:?})"
                    ));
                }
            }
            Expect::Chains(table, want) => {
                let got_chains = got.chains.get(*table).cloned().unwrap_or_default();
                if got_chains != *want {
                    errors.push(format!(
                        "{table} chains: expected {want:?}, got {got_chains:?}"
                    ));
                }
            }
            Expect::Bound(want) => {
                let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
                if got.bound != want {
                    errors.push(format!(
                        "kube-ipvs0: expected {want:?}, got {:?}",
                        got.bound
                    ));
                }
            }
        }
    }
    errors
}

/// kube-proxy's ipvs tests (pkg/proxy/ipvs/proxier_test.go), each run through the binary:
/// ClusterIP (TestIPv4Proxier), NodePort over TCP, UDP and SCTP with one or several node IPs
/// and with policy Local (TestNodePortIPv4, TestOnlyLocalNodePorts), external IPs
/// (TestExternalIPs*, TestOnlyLocalExternalIPs), load balancers with policy Local and source
/// ranges (TestLoadBalancer, TestOnlyLocalLoadBalancing, TestLoadBalancerSourceRanges),
/// health check node ports, session affinity, the addresses bound to kube-ipvs0 and the
/// chains declared. Each expectation is what the test states, in its own form (exact IPVS
/// state, `checkIPVS`, `checkIPSet`, `checkIptables`).
///
/// The flags reproduce `NewFakeProxier`: node name `test-node`, no local-traffic detector (no
/// `--cluster-cidr`: kube-proxy's fake has the no-op detector), scheduler `rr`, IPv4; node IPs
/// and `--nodeport-addresses` as each test sets them.
///
/// Normalisations, each because the real binary must differ from the fake:
/// - the fake IPVS's structs are written in `ipvsadm-save -n` form, which the binary prints
///   (see [`ipvsadm_id`]);
/// - a test whose fake has no node addresses runs the binary with `--node-ip 127.0.0.1`
///   (see [`NO_NODE_IPS`]);
/// - the ipsets are read from the binary's `ipset restore` input, which fills a scratch set
///   and swaps it in: entries count for the set they are swapped into.
#[test]
fn ipvs_dry_run_matches_kube_proxys_expectations() {
    let mut failures = Vec::new();
    for (i, case) in ipvs_cases().iter().enumerate() {
        let mut args = vec!["--proxy-mode", "ipvs", "--hostname-override", "test-node"];
        args.extend_from_slice(case.flags);
        let out = dry_run(&format!("ipvs{i}"), case.objects, &args);
        let errors = check_ipvs_case(case, &out);
        if !errors.is_empty() {
            failures.push(format!(
                "{}:\n  {}\n--- dry run ---\n{out}",
                case.name,
                errors.join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
