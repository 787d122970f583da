//! flanneld with `--kube-subnet-mgr` on the simulated cluster: the test API server (a
//! fixture) runs in the fabric with a Node per node, every flanneld takes its Node's podCIDR
//! and publishes its lease in the Node's annotations, and the traffic checks of etcd mode
//! pass. A Node written straight into the API server with annotations in flannel's exact
//! format (a foreign flannel) is programmed as flannel programs it.

mod cluster_support;

use cluster_support::{check_all, options, up, wait_programmed};
use podnet_examples::cluster::{self, Cluster};
use podnet_links::Handle;
use podnet_testsupport::require_root;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

fn kube_options(tag: &str, backend: &str) -> cluster::Options {
    let mut o = options(tag, backend, 3, 2, false);
    o.kube = true;
    o.test_apiserver = PathBuf::from(env!("CARGO_BIN_EXE_podnet-test-apiserver"));
    o
}

/// One request to the test API server from the fabric namespace; the status and body.
fn api(c: &Cluster, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: api\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let text = c
        .fabric
        .run(move || {
            let mut s =
                std::net::TcpStream::connect((cluster::FABRIC_IP, cluster::KUBE_API_PORT)).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .unwrap();
    let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (code, serde_json::from_str(body).unwrap_or_default())
}

#[test]
fn vxlan_in_kube_mode() {
    require_root!();
    let mut c = up(kube_options("kube", "vxlan"));
    // Every node's lease is its Node's podCIDR, published in flannel's annotations.
    for (i, n) in c.nodes.iter().enumerate() {
        assert_eq!(
            n.subnet.map(|s| s.to_string()),
            Some(Cluster::kube_pod_cidr(i + 1))
        );
        let (code, node) = api(&c, "GET", &format!("/api/v1/nodes/node{}", i + 1), "");
        assert_eq!(code, 200);
        let ann = &node["metadata"]["annotations"];
        assert_eq!(ann["flannel.alpha.coreos.com/kube-subnet-manager"], "true");
        assert_eq!(ann["flannel.alpha.coreos.com/backend-type"], "vxlan");
        assert_eq!(ann["flannel.alpha.coreos.com/public-ip"], n.ip.to_string());
        let data: serde_json::Value = serde_json::from_str(
            ann["flannel.alpha.coreos.com/backend-data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(data["VNI"], 1);
        assert!(data["VtepMAC"].is_string());
        assert_eq!(node["status"]["conditions"][0]["reason"], "FlannelIsUp");
    }
    check_all(&c);

    // A foreign flannel's Node, in flannel's exact annotation format.
    let foreign = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"foreign","annotations":{
        "flannel.alpha.coreos.com/backend-data":"{\"VNI\":1,\"VtepMAC\":\"c6:d2:32:6f:8f:44\"}",
        "flannel.alpha.coreos.com/backend-type":"vxlan",
        "flannel.alpha.coreos.com/kube-subnet-manager":"true",
        "flannel.alpha.coreos.com/public-ip":"198.18.0.99"}},
        "spec":{"podCIDR":"10.244.250.0/24","podCIDRs":["10.244.250.0/24"]}}"#;
    let (code, _) = api(&c, "POST", "/api/v1/nodes", foreign);
    assert_eq!(code, 201);
    let h = Handle::in_ns(&c.nodes[0].ns).unwrap();
    wait_programmed(
        &h,
        "10.244.250.0/24",
        "198.18.0.99",
        Duration::from_secs(30),
        &c.opts.state_dir.join("node1/flanneld.log"),
    );
    // flanneld restarts on node2: the same lease (its Node's podCIDR), traffic flows.
    let log = c.opts.state_dir.join("node2/flanneld.log");
    let acquired = |log: &std::path::Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches("lease acquired")
            .count()
    };
    assert_eq!(acquired(&log), 1);
    let before = std::fs::read_to_string(c.subnet_file(1)).unwrap();
    if let Some(mut child) = c.nodes[1].flanneld.take() {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    c.start_flanneld(1).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while acquired(&log) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "flanneld on node2 did not restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(std::fs::read_to_string(c.subnet_file(1)).unwrap(), before);
    check_all(&c);

    // The API server expires every watch (410) and compacts its history; the foreign Node
    // leaves meanwhile: the flanneld watchers list again and remove its route.
    let node_lists = |c: &Cluster| {
        let (_, log) = api(c, "GET", "/podnet-test/requests", "");
        log.as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                let r = r.as_str().unwrap();
                r.starts_with("GET /api/v1/nodes?") && !r.contains("watch=")
            })
            .count()
    };
    let lists_before = node_lists(&c);
    let (code, _) = api(&c, "POST", "/podnet-test/compact", "");
    assert_eq!(code, 200);
    let (code, _) = api(&c, "POST", "/podnet-test/expire-watches", "");
    assert_eq!(code, 200);
    let (code, _) = api(&c, "DELETE", "/api/v1/nodes/foreign", "");
    assert_eq!(code, 200);
    let (code, _) = api(&c, "POST", "/podnet-test/compact", "");
    assert_eq!(code, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while h
        .route()
        .list()
        .unwrap()
        .iter()
        .any(|r| r.dst.to_string() == "10.244.250.0/24")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "route to the deleted Node stays"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every flanneld listed the Nodes again after its watch got 410.
    let lists_after = node_lists(&c);
    assert!(
        lists_after >= lists_before + 3,
        "{lists_before} -> {lists_after}"
    );
}

#[test]
fn host_gw_in_kube_mode() {
    require_root!();
    let c = up(kube_options("kubehg", "host-gw"));
    check_all(&c);
}
