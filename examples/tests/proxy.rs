//! End-to-end tests of kube-proxy on the simulated cluster in iptables and nftables modes
//! (ClusterIP from a pod on another node, NodePort from the fabric, session affinity,
//! externalTrafficPolicy Local, a Service without endpoints, file edits applied within the
//! minimum sync period: `kube_proxy_cluster::services_behave`), bad input, and `--dry-run`
//! against kube-proxy's expected iptables rules. This machine's kernel has no IPVS: the ipvs
//! mode runs the same checks inside a virtual machine (`proxy_vm.rs`).

mod kube_proxy_cluster;

use kube_proxy_cluster::{SERVICES, services_behave, up, up_mode, up_with_args};
use podnet_testsupport::foreign::{self, HostState};
use podnet_testsupport::{TestNs, require_root};

#[test]
fn iptables_mode_on_the_cluster() {
    require_root!();
    services_behave(up("kp"), "iptables");
}

#[test]
fn nftables_mode_on_the_cluster() {
    require_root!();
    services_behave(up_mode("kpnft", "nftables"), "nftables");
}

/// The same checks with the nftables mode's maps layout (endpoints in data maps).
#[test]
fn nftables_maps_layout_on_the_cluster() {
    require_root!();
    let g = up_with_args(
        "kpnfm",
        "nftables",
        SERVICES,
        &["--nftables-layout", "maps"],
    );
    services_behave(g, "nftables");
}

#[test]
fn bad_files_are_reported_by_name_and_the_rest_still_syncs() {
    let dir = std::env::temp_dir().join(format!("podnet-kp-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a-bad.yaml"), "kind: [unclosed\n").unwrap();
    std::fs::write(
        dir.join("b-cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    )
    .unwrap();
    std::fs::write(dir.join("c-good.yaml"), SERVICES).unwrap();
    let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: echo-1, namespace: demo, labels: {kubernetes.io/service-name: echo}}\naddressType: IPv4\nports: [{name: tcp, port: 7777, protocol: TCP}]\nendpoints:\n- addresses: [10.244.1.2]\n  conditions: {ready: true}\n";
    std::fs::write(dir.join("d-slice.yaml"), slice).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-proxy"))
        .args([
            "--dry-run",
            "--hostname-override",
            "node1",
            "--node-ip",
            "198.18.0.1",
            "--config-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("a-bad.yaml"), "{stderr}");
    assert!(
        stderr.contains("b-cm.yaml") && stderr.contains("ConfigMap"),
        "{stderr}"
    );
    assert!(stdout.contains("demo/echo:tcp cluster IP"), "{stdout}");
    assert!(
        stdout.contains("--to-destination 10.244.1.2:7777"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"demo/empty:tcp has no endpoints\""),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// kube-proxy's own expected iptables rules for its TestOverallIPTablesRules services
/// (nat/tests/fixtures), with the two differences between its fake proxier and a real binary
/// made explicit: the real binary writes the mark as `%#08x` of the bit (0x00004000) and runs
/// without nfacct counters here (podnet does not create the nfacct objects), so the nfacct
/// matches and the localhost node-port rules that only exist with them are left out.
#[test]
fn dry_run_equals_kube_proxys_expected_rules() {
    let dir = std::env::temp_dir().join(format!("podnet-kp-golden-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("overall.yaml"),
        include_str!("../../nat/tests/fixtures/overall.yaml"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-proxy"))
        .args(["--dry-run", "--hostname-override", "test-node"])
        .args(["--node-ip", "192.168.0.2", "--cluster-cidr", "10.0.0.0/8"])
        .arg("--config-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = String::from_utf8_lossy(&out.stdout);
    let expected: Vec<String> = include_str!("../../nat/tests/fixtures/overall.expected")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            !(l.contains("-d 127.0.0.0/8") && l.contains("KUBE-NODEPORTS") && l.contains("nfacct"))
        })
        .map(|l| {
            let mut l = l
                .replace("0x4000/0x4000", "0x00004000/0x00004000")
                .replace("--or-mark 0x4000", "--or-mark 0x00004000")
                .replace("--xor-mark 0x4000", "--xor-mark 0x00004000");
            while let Some(i) = l.find(" -m nfacct --nfacct-name ") {
                let rest = &l[i + " -m nfacct --nfacct-name ".len()..];
                let end = rest
                    .find(' ')
                    .map_or(l.len(), |e| i + " -m nfacct --nfacct-name ".len() + e);
                l.replace_range(i..end, "");
            }
            l
        })
        .collect();
    let mut expected = expected;
    let mut ours: Vec<String> = ours.lines().map(str::to_owned).collect();
    expected.sort();
    ours.sort();
    let missing: Vec<&String> = expected.iter().filter(|l| !ours.contains(l)).collect();
    let extra: Vec<&String> = ours.iter().filter(|l| !expected.contains(l)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing from --dry-run: {missing:#?}\nnot expected: {extra:#?}"
    );
    assert_eq!(ours.len(), expected.len());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `kube-proxy --cleanup` (iptables mode) removes kube-proxy's chains and every copy of its
/// jumps, and nothing else: kubelet's `KUBE-*` chains (`KUBE-FIREWALL` and its jumps,
/// `KUBE-KUBELET-CANARY`, `KUBE-IPTABLES-HINT`, `KUBE-MARK-DROP`), Docker's and the rest of the
/// foreign host stay as they were, byte for byte.
#[test]
fn cleanup_removes_only_what_kube_proxy_made() {
    use podnet_nat::kube::{ClusterState, IpFamily, parse_objects};
    use podnet_nat::kube_proxy::NodeSettings;
    use podnet_nat::kube_proxy::iptables_sync::IptablesSyncer;
    require_root!();
    let node = TestNs::new("kp-cleanup");
    foreign::load(&node, &foreign::ALL);
    let before = HostState::read(&node);
    let (objects, _) = parse_objects(SERVICES, "services");
    let (state, _) = ClusterState::from_objects(&objects, IpFamily::V4);
    let mut syncer =
        IptablesSyncer::new(node.ns().clone(), NodeSettings::new("node1", IpFamily::V4));
    syncer.sync(&state).unwrap();
    // One jump twice, as the duplicate-jump bug of earlier versions left them.
    node.exec(
        "iptables",
        &[
            "-I",
            "INPUT",
            "-m",
            "comment",
            "--comment",
            "kubernetes health check service ports",
            "-j",
            "KUBE-NODEPORTS",
        ],
    );
    let out = node
        .ns()
        .command(env!("CARGO_BIN_EXE_kube-proxy"))
        .args(["--cleanup", "--proxy-mode", "iptables"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = HostState::read(&node);
    if let Err(diff) = before.same_as(&after) {
        panic!("--cleanup changed the host:\n{diff}");
    }
}

/// A temporary config directory, removed when dropped (also when a test fails).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("podnet-kp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// kube-proxy running in a test namespace on a config directory, killed when dropped.
struct KubeProxy {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl KubeProxy {
    fn start(node: &TestNs, dir: &std::path::Path, args: &[&str]) -> KubeProxy {
        let log = dir.with_extension("log");
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = node.ns().command(env!("CARGO_BIN_EXE_kube-proxy"));
        cmd.arg("--config-dir")
            .arg(dir)
            .args(["--hostname-override", "node1"]);
        if !args.contains(&"--iptables-min-sync-period") {
            cmd.args(["--iptables-min-sync-period", "0.1"]);
        }
        let child = cmd
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        KubeProxy { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for KubeProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- kube-proxy log\n{}", self.log());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Polls `f` every 100 ms for up to `secs` seconds.
fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    f()
}

/// A config file caught half-written (as `kubectl get -o yaml > f` leaves it for a moment:
/// empty, then cut anywhere) keeps its last good version, with a warning naming it; a good
/// version replaces it; a deleted file is gone.
#[test]
fn a_half_written_file_keeps_its_last_good_version() {
    require_root!();
    let node = TestNs::new("kp-halfwritten");
    let dir = TempDir::new("half");
    let services = dir.join("services.yaml");
    std::fs::write(&services, SERVICES).unwrap();
    let other = "apiVersion: v1\nkind: Service\nmetadata: {name: other, namespace: demo}\n\
                 spec: {clusterIP: 10.96.0.20, ports: [{name: dns, port: 53, protocol: UDP}]}\n";
    std::fs::write(dir.join("other.yaml"), other).unwrap();
    let kp = KubeProxy::start(&node, &dir, &["--proxy-mode", "iptables"]);
    // Without endpoints, each Service port is one REJECT rule in filter's KUBE-SERVICES.
    let has = |what: &str| node.exec("iptables-save", &[]).contains(what);
    assert!(eventually(20, || has("demo/echo:tcp has no endpoints")
        && has("demo/other:dns has no endpoints")));

    // Cut in the middle of a line, the way a reader catches a file being written (here what
    // came before still parses: this List has its kind first); then empty.
    let cut = &SERVICES[..SERVICES.find("name: sticky").unwrap() + 8];
    for (what, text) in [("cut", cut), ("empty", "")] {
        let seen = kp.log().matches("services.yaml").count();
        std::fs::write(&services, text).unwrap();
        if what == "cut" {
            assert!(
                eventually(5, || kp.log().matches("services.yaml").count() > seen),
                "{what}: no warning naming the file:\n{}",
                kp.log()
            );
        }
        // A later edit of another file syncs; the held file's Services stay.
        std::fs::write(
            dir.join("other.yaml"),
            other.replace("port: 53", "port: 5353"),
        )
        .unwrap();
        assert!(eventually(5, || has("--dport 5353")));
        assert!(
            has("demo/echo:tcp"),
            "{what}: the held file's Services are gone"
        );
        std::fs::write(dir.join("other.yaml"), other).unwrap();
        assert!(eventually(5, || !has("--dport 5353")));
        assert!(
            has("demo/echo:tcp"),
            "{what}: the held file's Services are gone"
        );
        assert!(
            kp.log().contains("keeping its last good version"),
            "{what}: the warning does not say the last good version is kept:\n{}",
            kp.log()
        );
    }
    // A good version replaces the held one.
    std::fs::write(&services, SERVICES.replace("name: sticky", "name: sticky2")).unwrap();
    assert!(eventually(5, || has("demo/sticky2:tcp")));
    assert!(!has("demo/sticky:tcp"));
    // A deleted file is gone.
    std::fs::remove_file(&services).unwrap();
    assert!(eventually(5, || !has("demo/echo:tcp")));
    assert!(has("demo/other:dns"));
    drop(kp);
}

/// Every value a user can type into kube-proxy's numeric flags is either a clear error that
/// names the flag (never a panic) or works: periods that are not finite, negative, zero where
/// upstream refuses it, or beyond what a duration holds; a minimum sync period above the sync
/// period (upstream's validation); a masquerade bit above 31; an unknown IPVS scheduler.
#[test]
fn extreme_flag_values_are_errors_naming_the_flag() {
    let dir = TempDir::new("flags");
    let bad: &[&[&str]] = &[
        &["--iptables-sync-period", "inf"],
        &["--iptables-sync-period", "1e20"],
        &["--iptables-sync-period", "NaN"],
        &["--iptables-sync-period", "-1"],
        &["--iptables-sync-period", "0"],
        &["--iptables-sync-period", "-inf"],
        &["--iptables-sync-period", "30x"],
        &["--iptables-min-sync-period", "inf"],
        &["--iptables-min-sync-period", "1e300"],
        &["--iptables-min-sync-period", "-0.5"],
        &["--iptables-min-sync-period", "60"],
        &["--masquerade-bit", "32"],
        &["--masquerade-bit", "255"],
        &["--masquerade-bit", "-1"],
        &["--proxy-mode", "ipvs", "--ipvs-scheduler", "bogus"],
    ];
    for args in bad {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-proxy"))
            .args(["--dry-run", "--config-dir"])
            .arg(&*dir)
            .args(*args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let flag = args
            .iter()
            .rev()
            .find(|a| a.starts_with("--") && **a != "--proxy-mode")
            .unwrap();
        assert!(
            !out.status.success() && out.status.code() != Some(101),
            "{args:?}: {}\n{stderr}",
            out.status
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            stderr.contains(flag),
            "{args:?}: the error does not name {flag}: {stderr}"
        );
    }
    // Go duration syntax (kube-proxy's own) and plain seconds both work.
    for args in [
        &[
            "--iptables-sync-period",
            "1m30s",
            "--iptables-min-sync-period",
            "500ms",
        ][..],
        &[
            "--iptables-sync-period",
            "0.5",
            "--iptables-min-sync-period",
            "0",
        ],
        &["--iptables-sync-period", "1e19"],
        &["--masquerade-bit", "31"],
        &["--proxy-mode", "ipvs", "--ipvs-scheduler", "wlc"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-proxy"))
            .args(["--dry-run", "--config-dir"])
            .arg(&*dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A sync period too long for the clock to add (`Instant + period` would overflow) runs:
/// the periodic resync simply never comes.
#[test]
fn a_huge_sync_period_runs() {
    require_root!();
    let node = TestNs::new("kp-hugeperiod");
    let dir = TempDir::new("huge");
    std::fs::write(dir.join("services.yaml"), SERVICES).unwrap();
    let mut kp = KubeProxy::start(
        &node,
        &dir,
        &[
            "--iptables-sync-period",
            "1e19",
            "--iptables-min-sync-period",
            "1e19",
        ],
    );
    assert!(
        eventually(20, || kp.log().contains("synced")),
        "{}",
        kp.log()
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        kp.child.try_wait().unwrap().is_none(),
        "kube-proxy exited:\n{}",
        kp.log()
    );
    drop(kp);
}

/// The addresses that accept node ports in `mode`, as the kernel has them: the `-d` of nat
/// KUBE-SERVICES' jumps to KUBE-NODEPORTS (iptables), the `nodeport-ips` set (nftables).
fn nodeport_addresses(node: &TestNs, mode: &str) -> String {
    match mode {
        "iptables" => node
            .exec("iptables-save", &["-t", "nat"])
            .lines()
            .filter(|l| l.starts_with("-A KUBE-SERVICES -d ") && l.ends_with("-j KUBE-NODEPORTS"))
            .map(|l| format!("{l}\n"))
            .collect(),
        _ => node
            .output("nft", &["list", "set", "ip", "kube-proxy", "nodeport-ips"])
            .stdout
            .iter()
            .map(|b| *b as char)
            .collect(),
    }
}

/// A node whose interfaces are not called eth*: `ens3` 198.18.5.1/24 and `bond0`
/// 198.18.6.1/24 (each a veth whose peer stays in the node), up.
fn node_with_ens3_and_bond0(tag: &str) -> TestNs {
    let node = TestNs::new(tag);
    for (dev, addr) in [("ens3", "198.18.5.1/24"), ("bond0", "198.18.6.1/24")] {
        let peer = format!("{dev}p");
        node.exec(
            "ip",
            &["link", "add", dev, "type", "veth", "peer", "name", &peer],
        );
        node.exec("ip", &["addr", "add", addr, "dev", dev]);
        node.exec("ip", &["link", "set", dev, "up"]);
        node.exec("ip", &["link", "set", &peer, "up"]);
    }
    node
}

/// On a host whose interfaces are not called eth* (`ens3`, `bond0`), `--nodeport-addresses`
/// selects among all of the node's addresses, and kube-proxy follows them: an address added
/// later accepts node ports, one removed stops (iptables and nftables modes).
#[test]
fn node_ports_follow_the_addresses_of_any_interface() {
    require_root!();
    for mode in ["iptables", "nftables"] {
        let node = node_with_ens3_and_bond0("kp-ens3");
        node.exec(
            "ip",
            &[
                "route",
                "add",
                "default",
                "via",
                "198.18.5.254",
                "dev",
                "ens3",
            ],
        );
        let dir = TempDir::new(&format!("ens3-{mode}"));
        std::fs::write(dir.join("services.yaml"), SERVICES).unwrap();
        let kp = KubeProxy::start(
            &node,
            &dir,
            &[
                "--proxy-mode",
                mode,
                "--nodeport-addresses",
                "198.18.5.0/24,198.18.6.0/24",
            ],
        );
        let has = |ip: &str| nodeport_addresses(&node, mode).contains(ip);
        assert!(
            eventually(20, || has("198.18.5.1") && has("198.18.6.1")),
            "{mode}: {}",
            nodeport_addresses(&node, mode)
        );
        node.exec("ip", &["addr", "add", "198.18.5.7/24", "dev", "ens3"]);
        assert!(
            eventually(10, || has("198.18.5.7")),
            "{mode}: an added address"
        );
        node.exec("ip", &["addr", "del", "198.18.6.1/24", "dev", "bond0"]);
        assert!(
            eventually(10, || !has("198.18.6.1")),
            "{mode}: a removed address"
        );
        assert!(has("198.18.5.1") && has("198.18.5.7"));
        drop(kp);
    }
}

/// The node's primary IP is the source of the route to the default gateway (or
/// `--bind-address`), whatever the interfaces are called; the rest follow in address order.
#[test]
fn the_primary_node_ip_is_the_default_routes_source() {
    use podnet_examples::proxy::node_addrs::read_node_ips;
    use podnet_nat::kube::IpFamily;
    require_root!();
    let node = node_with_ens3_and_bond0("kp-primary");
    let ip = |s: &str| -> std::net::IpAddr { s.parse().unwrap() };
    // No default route: no primary, every address in order.
    assert_eq!(
        read_node_ips(node.ns(), IpFamily::V4, None).unwrap(),
        [ip("198.18.5.1"), ip("198.18.6.1")]
    );
    node.exec(
        "ip",
        &[
            "route",
            "add",
            "default",
            "via",
            "198.18.6.254",
            "dev",
            "bond0",
        ],
    );
    assert_eq!(
        read_node_ips(node.ns(), IpFamily::V4, None).unwrap(),
        [ip("198.18.6.1"), ip("198.18.5.1")]
    );
    assert_eq!(
        read_node_ips(node.ns(), IpFamily::V4, Some(ip("198.18.5.1"))).unwrap(),
        [ip("198.18.5.1"), ip("198.18.6.1")]
    );
}
