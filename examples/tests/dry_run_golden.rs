//! `kube-proxy --dry-run` in nftables and ipvs modes against kube-proxy's own expectations: the
//! binary reads kube-proxy's test Services and EndpointSlices from a directory, is given the
//! fake proxier's node by flags, and what it prints is compared with what kube-proxy's unit
//! tests (pkg/proxy/nftables/proxier_test.go, pkg/proxy/ipvs/proxier_test.go) state. Where the
//! real binary must differ from kube-proxy's fake proxier the output is normalised, each time
//! with the reason next to it. Needs no root: `--dry-run` changes nothing.

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
    let expected: Vec<String> = include_str!("fixtures/overall-nftables.expected")
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
