//! podnet-examples: podnet-cni's network configuration on stdin (with its `ipam` section and
//! `prevResult`), the CNI_* environment and CNI_ARGS; kube-proxy's flag values.

use podnet_examples::cni::{Args, CniResult, NetConf, SUPPORTED_VERSIONS};
use std::hint::black_box;

/// Splits the input at its first NUL byte (none: all of it is the first part).
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// A network configuration, then a NUL and CNI_ARGS: read as every command reads them before
/// it touches the system (the bridge plugin's fields, host-local's `ipam`, `prevResult`,
/// `IP=` and `MAC=`), and answered as VERSION.
pub fn cni_config(data: &[u8]) {
    let (stdin, cni_args) = split(data);
    let cni_args = String::from_utf8_lossy(cni_args);
    if let Ok(conf) = NetConf::parse(stdin, &cni_args) {
        if let Some(prev) = &conf.prev_result {
            black_box(CniResult::from_prev(prev).ok());
        }
        black_box(format!("{conf:?}"));
    }
    if let Ok(text) = std::str::from_utf8(stdin) {
        black_box(podnet_ipam::IpamConfig::parse(text).ok());
    }
    black_box(podnet_examples::cni::requested(&cni_args).ok());
    let env = |k: &str| (k == "CNI_COMMAND").then(|| "VERSION".to_owned());
    let out = podnet_examples::cni::run(env, Ok(stdin.to_vec()));
    assert!(out.success, "VERSION always answers");
}

/// A `prevResult` (JSON): read, printed in every supported version, and read back the same
/// from the 1.1.0 form.
pub fn cni_prev_result(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(r) = CniResult::from_prev(&v) else {
        return;
    };
    for version in SUPPORTED_VERSIONS {
        black_box(r.to_json(version));
    }
    let again: serde_json::Value = serde_json::from_str(&r.to_json("1.1.0")).unwrap();
    assert_eq!(CniResult::from_prev(&again).unwrap(), r);
}

/// The CNI_* environment: five NUL-separated values (COMMAND, CONTAINERID, NETNS, IFNAME,
/// ARGS).
pub fn cni_args(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let vars: Vec<(&str, String)> = [
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_ARGS",
    ]
    .into_iter()
    .map(|k| (k, parts.next().unwrap_or_default().to_owned()))
    .collect();
    let get = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    if let Ok(args) = Args::from_env(get) {
        black_box((
            args.cni_arg("IP"),
            args.cni_arg("MAC"),
            args.cni_arg("K8S_POD_NAME"),
        ));
        black_box(podnet_examples::cni::requested(&args.cni_args).ok());
    }
}

/// kube-proxy's flag values that are parsed beyond clap: durations (`--iptables-sync-period`
/// and the like), the IPVS scheduler, and the check of the two sync periods.
pub fn kube_proxy_flags(data: &[u8]) {
    use podnet_examples::proxy::flags;
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_once('\0').unwrap_or((&text, "1s"));
    if let (Ok(x), Ok(y)) = (flags::parse_duration(a), flags::parse_duration(b)) {
        black_box(flags::check_sync_periods(x, y).ok());
    }
    black_box(flags::ipvs_scheduler(&text).ok());
}

/// Configurations as the tests and the reference plugins' documentation write them.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let prev = r#"{"cniVersion":"1.1.0","interfaces":[{"name":"cni0","mac":"ee:e5:bd:ba:c5:c7","mtu":1500},{"name":"eth0","mac":"8e:a1:73:98:7d:2f","sandbox":"/run/netns/c"}],"ips":[{"interface":1,"address":"10.244.7.2/24","gateway":"10.244.7.1"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.244.7.1","mtu":1400,"advmss":1360,"priority":10,"table":100,"scope":0}],"dns":{"nameservers":["10.96.0.10"],"domain":"cluster.local","search":["svc.cluster.local"],"options":["ndots:5"]}}"#;
    for conf in [
        r#"{"cniVersion":"1.0.0","name":"podnet-test","type":"bridge","bridge":"cni0","isGateway":true,"isDefaultGateway":true,"ipMasq":true,"mtu":1400,"hairpinMode":true,"ipam":{"type":"host-local","dataDir":"/run/podnet-fuzz","ranges":[[{"subnet":"10.244.7.0/24"}]],"routes":[{"dst":"10.96.0.0/12"}]},"dns":{"nameservers":["10.96.0.10"],"search":["svc.cluster.local"]}}"#.to_owned(),
        format!(r#"{{"cniVersion":"1.1.0","name":"n","type":"bridge","args":{{"cni":{{"mac":"0a:58:0a:f4:00:05"}}}},"runtimeConfig":{{"mac":"0a:58:0a:f4:00:06"}},"cni.dev/valid-attachments":[{{"containerID":"c1","ifname":"eth0"}}],"prevResult":{prev}}}"#),
        r#"{"cniVersion":"0.4.0","name":"old","type":"bridge","vlan":0,"macspoofchk":false,"promiscMode":true,"ipam":{}}"#.to_owned(),
    ] {
        let mut c = conf.into_bytes();
        c.push(0);
        c.extend_from_slice(b"IgnoreUnknown=1;IP=10.244.7.9,fd10::9;MAC=0a:58:0a:f4:00:07");
        out.push(("cni_config", c));
    }
    out.push(("cni_prev_result", prev.as_bytes().to_vec()));
    out.push((
        "cni_args",
        b"ADD\0c0ffee-1.a_b\0/run/netns/pod1\0eth0\0K8S_POD_NAME=web;IP=10.244.7.9".to_vec(),
    ));
    out.push(("cni_args", b"GC\0\0\0\0".to_vec()));
    for t in [
        "30s\x001s",
        "1m30.5s\x00500ms",
        "0.5\x002h45m",
        "rr",
        "1e20\x00inf",
    ] {
        out.push(("kube_proxy_flags", t.as_bytes().to_vec()));
    }
    out
}
