//! kube-proxy's upstream command line and `--config` file: a kubeadm-style
//! `KubeProxyConfiguration` runs kube-proxy (its conntrack settings applied through the
//! sysctls of the proxy's namespace, its masquerade bit in the rules); flags given override
//! the file; `--write-config-to` writes a file that reads back; `--init-only` applies the
//! privileged settings and exits; upstream flags podnet does not implement are refused by
//! name.

use podnet_testsupport::{TestNs, require_root};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const KP: &str = env!("CARGO_BIN_EXE_kube-proxy");

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("podnet-kpcfg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join("objects")).unwrap();
        TempDir(p)
    }

    fn objects(&self) -> PathBuf {
        self.0.join("objects")
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: demo}\n\
spec: {type: NodePort, clusterIP: 10.96.0.50, ports: [{name: http, port: 80, nodePort: 30050}]}\n\
---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
metadata: {name: web-1, namespace: demo, labels: {kubernetes.io/service-name: web}}\n\
addressType: IPv4\nports: [{name: http, port: 8080}]\n\
endpoints: [{addresses: [10.244.1.5], nodeName: node1}]\n";

/// A kubeadm-style file (what `kubeadm init` puts in the kube-proxy ConfigMap), with the
/// settings this test checks filled in.
fn kubeadm_config(extra_conntrack: &str, masquerade_bit: &str) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
bindAddress: 0.0.0.0
bindAddressHardFail: false
clientConnection:
  acceptContentTypes: ""
  burst: 0
  contentType: ""
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 0
clusterCIDR: 10.244.0.0/16
configSyncPeriod: 0s
conntrack:
  maxPerCore: null
  min: null
  tcpBeLiberal: false
{extra_conntrack}  udpStreamTimeout: 0s
  udpTimeout: 0s
detectLocal:
  bridgeInterface: ""
  interfaceNamePrefix: ""
detectLocalMode: ""
enableProfiling: false
healthzBindAddress: 127.0.0.1:10256
hostnameOverride: node1
iptables:
  localhostNodePorts: null
  masqueradeAll: false
  masqueradeBit: {masquerade_bit}
  minSyncPeriod: 0s
  syncPeriod: 0s
ipvs:
  excludeCIDRs: null
  minSyncPeriod: 0s
  scheduler: ""
  strictARP: false
  syncPeriod: 0s
  tcpFinTimeout: 0s
  tcpTimeout: 0s
  udpTimeout: 0s
kind: KubeProxyConfiguration
logging:
  flushFrequency: 0
  options:
    json:
      infoBufferSize: "0"
    text:
      infoBufferSize: "0"
  verbosity: 0
metricsBindAddress: ""
mode: ""
nftables:
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
nodePortAddresses: null
oomScoreAdj: null
portRange: ""
showHiddenMetricsForVersion: ""
winkernel:
  enableDSR: false
  forwardHealthCheckVip: false
  networkName: ""
  rootHnsEndpointName: ""
  sourceVip: ""
"#
    )
}

fn kube_proxy(args: &[&str], paths: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(KP);
    for (flag, p) in paths {
        cmd.arg(flag).arg(p);
    }
    cmd.args(args).output().unwrap()
}

fn dry_run(t: &TempDir, args: &[&str]) -> String {
    let out = kube_proxy(
        &[&["--dry-run", "--node-ip", "198.18.0.1"][..], args].concat(),
        &[("--config-dir", &t.objects())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn upstream_flags_podnet_does_not_implement_are_refused_by_name() {
    let t = TempDir::new("refused");
    for args in [
        &["--feature-gates", "Foo=true"][..],
        &["--profiling"],
        &["--kube-api-qps", "5"],
        &["--kube-api-burst", "10"],
        &["--kube-api-content-type", "application/json"],
        &["--healthz-port", "10256"],
        &["--metrics-port", "10249"],
        &["--show-hidden-metrics-for-version", "1.30"],
        &["--config-sync-period", "15m"],
        &["--logging-format", "json"],
        &["--detect-local-mode", "NodeCIDR"],
        &["--nodeport-addresses", "primary,10.0.0.0/8"],
        &["--iptables-masquerade-bit", "32"],
        &["--conntrack-tcp-timeout-established", "forever"],
    ] {
        let out = kube_proxy(
            &[&["--dry-run"][..], args].concat(),
            &[("--config-dir", &t.objects())],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains(args[0]), "{args:?} not named: {stderr}");
    }
}

#[test]
fn flags_override_the_file_and_upstream_spellings_work() {
    let t = TempDir::new("override");
    std::fs::write(t.objects().join("svc.yaml"), SERVICE).unwrap();
    // The file's masquerade bit (5: 0x20) ...
    let cfg = t.write("kube-proxy.conf", &kubeadm_config("", "5"));
    let cfg_args = |more: &[&str]| -> String {
        let mut a = vec!["--config", cfg.to_str().unwrap()];
        a.extend_from_slice(more);
        dry_run(&t, &a)
    };
    let rules = cfg_args(&[]);
    assert!(rules.contains("0x00000020/0x00000020"), "{rules}");
    // ... and its cluster CIDR.
    assert!(rules.contains("! -s 10.244.0.0/16"), "{rules}");
    // A flag given wins over the file.
    let rules = cfg_args(&["--iptables-masquerade-bit", "7"]);
    assert!(rules.contains("0x00000080/0x00000080"), "{rules}");
    assert!(!rules.contains("0x00000020"), "{rules}");
    let rules = cfg_args(&["--cluster-cidr", "10.32.0.0/12"]);
    assert!(rules.contains("! -s 10.32.0.0/12"), "{rules}");
    // --detect-local-mode and its companions.
    let rules = dry_run(
        &t,
        &[
            "--detect-local-mode",
            "InterfaceNamePrefix",
            "--pod-interface-name-prefix",
            "veth",
        ],
    );
    assert!(rules.contains("! -i veth+"), "{rules}");
    let rules = dry_run(
        &t,
        &[
            "--detect-local-mode",
            "BridgeInterface",
            "--pod-bridge-interface",
            "cni0",
        ],
    );
    assert!(rules.contains("! -i cni0"), "{rules}");
    // --nodeport-addresses primary: the node's primary IP only.
    let rules = dry_run(&t, &["--nodeport-addresses", "primary"]);
    assert!(rules.contains("198.18.0.1"), "{rules}");
    assert!(
        !rules.contains("--dst-type LOCAL -j KUBE-NODEPORTS"),
        "{rules}"
    );
    // Durations as upstream writes them, bools as pflag takes them.
    dry_run(
        &t,
        &[
            "--iptables-sync-period",
            "1m0s",
            "--iptables-min-sync-period",
            "10s",
            "--masquerade-all=false",
            "--ipvs-strict-arp",
            "--ipvs-exclude-cidrs",
            "10.1.0.0/16,10.2.0.0/16",
            "--iptables-localhost-nodeports=false",
            "--healthz-bind-address",
            "0.0.0.0",
            "--metrics-bind-address",
            "",
        ],
    );
    // An unknown field in the file is named.
    let bad = t.write(
        "bad.conf",
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nipvs: {strictArp: true}\n",
    );
    let out = kube_proxy(
        &["--dry-run"],
        &[("--config", &bad), ("--config-dir", &t.objects())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("strictArp"),
        "{stderr}"
    );
}

#[test]
fn written_defaults_read_back() {
    let t = TempDir::new("write");
    let f = t.0.join("defaults.yaml");
    let out = kube_proxy(&[], &[("--write-config-to", &f)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&f).unwrap();
    assert!(text.contains("kind: KubeProxyConfiguration"), "{text}");
    assert!(text.contains("masqueradeBit: 14"), "{text}");
    let rules = dry_run(&t, &["--config", f.to_str().unwrap()]);
    assert!(rules.contains("0x00004000/0x00004000"), "{rules}");
}

fn sysctl(ns: &TestNs, name: &str) -> String {
    let path = format!("/proc/sys/net/netfilter/{name}");
    ns.ns()
        .run(move || std::fs::read_to_string(path).unwrap().trim().to_owned())
        .unwrap()
}

#[test]
fn init_only_applies_the_conntrack_settings_and_exits() {
    require_root!();
    let node = TestNs::new("kpcfg-init");
    // nf_conntrack's sysctls exist once the module is loaded: a conntrack rule loads it.
    node.exec(
        "iptables",
        &[
            "-t",
            "raw",
            "-A",
            "PREROUTING",
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
        ],
    );
    let t = TempDir::new("init");
    let cfg = t.write(
        "kube-proxy.conf",
        &kubeadm_config(
            "  tcpCloseWaitTimeout: 30m0s\n  tcpEstablishedTimeout: 2h0m0s\n",
            "null",
        ),
    );
    let out = node
        .ns()
        .command(KP)
        .arg("--config")
        .arg(&cfg)
        .args(["--init-only", "--conntrack-tcp-timeout-close-wait", "45m"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sysctl(&node, "nf_conntrack_tcp_timeout_established"),
        "7200"
    );
    // The flag given wins over the file.
    assert_eq!(sysctl(&node, "nf_conntrack_tcp_timeout_close_wait"), "2700");
}

#[test]
fn a_kubeadm_style_config_file_runs_kube_proxy() {
    require_root!();
    let node = TestNs::new("kpcfg-run");
    node.exec("ip", &["link", "set", "lo", "up"]);
    node.exec(
        "iptables",
        &[
            "-t",
            "raw",
            "-A",
            "PREROUTING",
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
        ],
    );
    let t = TempDir::new("run");
    std::fs::write(t.objects().join("svc.yaml"), SERVICE).unwrap();
    let cfg = t.write(
        "kube-proxy.conf",
        &kubeadm_config("  tcpEstablishedTimeout: 3h0m0s\n", "15"),
    );
    let log = t.0.join("kube-proxy.log");
    let mut child = node
        .ns()
        .command(KP)
        .arg("--config")
        .arg(&cfg)
        .arg("--config-dir")
        .arg(t.objects())
        .args(["--node-ip", "198.18.0.1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _kill = Kill(&mut child);
    // healthzBindAddress from the file; metricsBindAddress "" is the default (127.0.0.1:10249).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = node
            .ns()
            .run(|| podnet_examples::http::get("127.0.0.1:10256".parse().unwrap(), "/healthz"))
            .unwrap()
            .is_ok_and(|(code, _)| code == 200);
        let rules = node.exec("iptables-save", &["-t", "nat"]);
        if ok && rules.contains("demo/web:http") {
            // iptables-save prints the mark without leading zeros.
            assert!(rules.contains("--set-xmark 0x8000/0x8000"), "{rules}");
            assert!(rules.contains("! -s 10.244.0.0/16"), "{rules}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not synced: {}\n{rules}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, body) = node
        .ns()
        .run(|| podnet_examples::http::get("127.0.0.1:10249".parse().unwrap(), "/proxyMode"))
        .unwrap()
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "iptables"));
    assert_eq!(
        sysctl(&node, "nf_conntrack_tcp_timeout_established"),
        "10800"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("kubeconfig") && text.contains("not used"),
        "the unused kubeconfig is not reported: {text}"
    );
}
