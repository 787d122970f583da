//! The Kubernetes client layer (`podnet_examples::kubeapi`) against the test API server: the
//! watcher's reflector semantics one by one (paged initial list, synced only after it, watch
//! from the list's resourceVersion, bookmarks, resuming a dropped watch, relisting on 410
//! Gone, backoff on errors), and flanneld's kube subnet manager on top of it. No root needed.

use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::Api;
use podnet_examples::flannel::kube::{
    Annotations, KubeSubnetManager, KubeSubnetOptions, node_to_lease,
};
use podnet_examples::flannel::{LeaseEvents, LeaseSource};
use podnet_examples::kubeapi::{Change, Kube, KubeOptions, WatchOptions, Watched};
use podnet_ipam::{LeaseAttrs, LeaseEvent};
use podnet_testsupport::kube_api::{ApiServer, ApiServerOptions, Kind};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn node(name: &str, cidr: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
           "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
}

fn connect(s: &ApiServer) -> Kube {
    Kube::connect(&KubeOptions {
        kubeconfig: None,
        master: Some(s.url()),
    })
    .unwrap()
}

fn names(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| n.metadata.name.clone().unwrap())
        .collect()
}

/// Waits for a change that satisfies `f`, skipping others.
fn wait_change(w: &Watched<Node>, what: &str, f: impl Fn(&Change<Node>) -> bool) -> Change<Node> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(c) = w.next(Duration::from_millis(200)) {
            if f(&c) {
                return c;
            }
        }
    }
    panic!("no change: {what}");
}

fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out: {what}");
}

fn count(s: &ApiServer, pred: impl Fn(&str) -> bool) -> usize {
    s.requests().iter().filter(|r| pred(r)).count()
}

#[test]
fn paged_initial_list_then_watch_from_its_resource_version() {
    let s = ApiServer::start(ApiServerOptions::default()).unwrap();
    for i in 0..5 {
        s.create(node(&format!("n{i}"), &format!("10.244.{i}.0/24")))
            .unwrap();
    }
    let rv = s.resource_version();
    let kube = connect(&s);
    let w = kube.watch(
        Api::<Node>::all(kube.client()),
        WatchOptions {
            page_size: Some(2),
            ..WatchOptions::default()
        },
    );
    assert!(w.wait_synced(Duration::from_secs(20)));
    assert_eq!(names(&w.snapshot()), ["n0", "n1", "n2", "n3", "n4"]);
    match wait_change(&w, "synced", |c| matches!(c, Change::Synced(_))) {
        Change::Synced(all) => assert_eq!(all.len(), 5),
        _ => unreachable!(),
    }
    // Three pages: limit=2, then two continues.
    let lists: Vec<String> = s
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET /api/v1/nodes?") && !r.contains("watch=true"))
        .collect();
    assert_eq!(lists.len(), 3, "{lists:?}");
    assert!(lists.iter().all(|r| r.contains("limit=2")), "{lists:?}");
    assert_eq!(lists.iter().filter(|r| r.contains("continue=")).count(), 2);
    // The watch starts from the list's resourceVersion, with bookmarks allowed.
    until("a watch", || {
        count(&s, |r| {
            r.contains("watch=true")
                && r.contains(&format!("resourceVersion={rv}"))
                && r.contains("allowWatchBookmarks=true")
        }) == 1
    });
    s.create(node("n5", "10.244.5.0/24")).unwrap();
    wait_change(
        &w,
        "n5 added",
        |c| matches!(c, Change::Applied(n) if n.metadata.name.as_deref() == Some("n5")),
    );
    s.delete(Kind::Node, "", "n0").unwrap();
    wait_change(
        &w,
        "n0 deleted",
        |c| matches!(c, Change::Deleted(n) if n.metadata.name.as_deref() == Some("n0")),
    );
    assert_eq!(names(&w.snapshot()), ["n1", "n2", "n3", "n4", "n5"]);
    assert_eq!(w.stats().lists, 1);
}

#[test]
fn not_synced_until_the_first_list_completes_and_errors_back_off() {
    // A server that refuses the client: every list fails with 401.
    let s = ApiServer::start(ApiServerOptions {
        token: Some("right".into()),
        ..ApiServerOptions::default()
    })
    .unwrap();
    let kube = connect(&s);
    let w = kube.watch(Api::<Node>::all(kube.client()), WatchOptions::default());
    let start = Instant::now();
    assert!(!w.wait_synced(Duration::from_secs(3)));
    let elapsed = start.elapsed().as_secs_f64();
    let tries = count(&s, |r| r.starts_with("GET /api/v1/nodes"));
    assert!(tries >= 2, "it retried ({tries})");
    // client-go's backoff: 0.8 s, 1.6 s, ... (with jitter): a handful in 3 s, not a busy loop.
    assert!(
        (tries as f64) <= elapsed / 0.4 + 1.0,
        "{tries} tries in {elapsed:.1} s: no backoff"
    );
    let stats = w.stats();
    assert!(stats.errors >= 2);
    assert!(stats.last_error.unwrap().contains("401"));
    assert!(!w.is_synced());
    assert!(w.snapshot().is_empty());
}

/// A Node watcher on `s`, synced, with its one watch request open.
fn synced_node_watch(s: &ApiServer) -> (Kube, Watched<Node>) {
    let kube = connect(s);
    let w = kube.watch(Api::<Node>::all(kube.client()), WatchOptions::default());
    assert!(w.wait_synced(Duration::from_secs(20)));
    until("a watch", || {
        count(s, |r| r.contains("watch=true")) == 1 && s.active_watches() == 1
    });
    (kube, w)
}

/// Three Services, which move the cluster's resourceVersion past a Node watcher's.
fn three_services(s: &ApiServer) {
    for i in 0..3 {
        s.create(json!({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": format!("s{i}"), "namespace": "default"}}))
            .unwrap();
    }
}

#[test]
fn bookmarks_move_the_resource_version_a_dropped_watch_resumes_from() {
    let s = ApiServer::start(ApiServerOptions::default()).unwrap();
    s.create(node("a", "10.244.1.0/24")).unwrap();
    let (_kube, w) = synced_node_watch(&s);
    // Changes to other resources move the cluster's resourceVersion; only a bookmark tells
    // the Node watcher about it.
    three_services(&s);
    let bookmarked = s.resource_version();
    s.send_bookmarks();
    s.drop_watches();
    until("a second watch from the bookmark", || {
        count(&s, |r| {
            r.contains("watch=true") && r.contains(&format!("resourceVersion={bookmarked}&"))
                || r.contains("watch=true") && r.ends_with(&format!("resourceVersion={bookmarked}"))
        }) == 1
    });
    // Dropping the connection is not an error and needs no relist.
    assert_eq!(w.stats().lists, 1);
    s.create(node("b", "10.244.2.0/24")).unwrap();
    wait_change(
        &w,
        "b added after the resumed watch",
        |c| matches!(c, Change::Applied(n) if n.metadata.name.as_deref() == Some("b")),
    );
    let list_requests = count(&s, |r| {
        r.starts_with("GET /api/v1/nodes?") && !r.contains("watch=true")
    });
    assert_eq!(list_requests, 1);
}

#[test]
fn gone_410_relists() {
    let s = ApiServer::start(ApiServerOptions::default()).unwrap();
    s.create(node("a", "10.244.1.0/24")).unwrap();
    s.create(node("b", "10.244.2.0/24")).unwrap();
    let (_kube, w) = synced_node_watch(&s);
    // Other resources move on and the history is compacted past the Node watcher's
    // resourceVersion (no bookmark told it); the connection drops, and the resumed watch
    // gets 410: the watcher lists again.
    three_services(&s);
    s.compact();
    s.drop_watches();
    until("a relist", || w.stats().lists == 2);
    let stats = w.stats();
    assert!(
        stats
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("too old resource version")),
        "the 410 was seen: {stats:?}"
    );
    assert_eq!(names(&w.snapshot()), ["a", "b"]);
    // Expiring a running watch (an ERROR event with 410) relists too, and changes made
    // after it are seen.
    until("a watch after the relist", || {
        count(&s, |r| r.contains("watch=true")) >= 3 && s.active_watches() == 1
    });
    s.expire_watches();
    until("a third list", || w.stats().lists == 3);
    s.delete(Kind::Node, "", "a").unwrap();
    until("a gone from the cache", || names(&w.snapshot()) == ["b"]);
    assert!(w.is_synced());
}

#[test]
fn field_selected_watch_of_one_service() {
    let s = ApiServer::start(ApiServerOptions::default()).unwrap();
    for n in ["a", "b"] {
        s.create(json!({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": n, "namespace": "web"},
                        "spec": {"clusterIP": "10.96.0.10"}}))
            .unwrap();
    }
    let kube = connect(&s);
    let w = kube.watch(
        Api::<Service>::namespaced(kube.client(), "web"),
        WatchOptions {
            fields: Some("metadata.name=b".into()),
            ..WatchOptions::default()
        },
    );
    assert!(w.wait_synced(Duration::from_secs(20)));
    let got: Vec<String> = w
        .snapshot()
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(got, ["b"]);
}

fn kube_sm(s: &ApiServer, node_name: &str) -> KubeSubnetManager {
    KubeSubnetManager::connect(KubeSubnetOptions {
        api: KubeOptions {
            kubeconfig: None,
            master: Some(s.url()),
        },
        annotation_prefix: "flannel.alpha.coreos.com".into(),
        node_name: node_name.into(),
        net_config: r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}"#.into(),
        set_node_network_unavailable: true,
        sync_timeout: Duration::from_secs(20),
    })
    .unwrap()
}

#[test]
fn kube_subnet_manager_publishes_and_reads_flannel_annotations() {
    let s = ApiServer::start(ApiServerOptions::default()).unwrap();
    s.create(node("me", "10.244.1.0/24")).unwrap();
    // A node of a foreign flannel, annotated exactly as flannel writes it.
    let mut foreign = node("other", "10.244.7.0/24");
    foreign["metadata"]["annotations"] = json!({
        "flannel.alpha.coreos.com/backend-data": "{\"VNI\":1,\"VtepMAC\":\"62:00:00:00:00:07\"}",
        "flannel.alpha.coreos.com/backend-type": "vxlan",
        "flannel.alpha.coreos.com/kube-subnet-manager": "true",
        "flannel.alpha.coreos.com/public-ip": "192.0.2.7",
    });
    s.create(foreign).unwrap();
    // A node without flannel: not a lease.
    s.create(node("bare", "10.244.9.0/24")).unwrap();

    let sm = kube_sm(&s, "me");
    let attrs = LeaseAttrs::new("192.0.2.1".parse().unwrap(), "vxlan")
        .with_backend_data(r#"{"VNI":1,"VtepMAC":"62:00:00:00:00:01"}"#)
        .unwrap();
    let lease = sm.acquire(&attrs, None).unwrap();
    assert_eq!(lease.subnets.ipv4, Some("10.244.1.0/24".parse().unwrap()));
    let me = s.get(Kind::Node, "", "me").unwrap();
    let ann = &me["metadata"]["annotations"];
    assert_eq!(ann["flannel.alpha.coreos.com/backend-type"], "vxlan");
    assert_eq!(
        ann["flannel.alpha.coreos.com/backend-data"],
        r#"{"VNI":1,"VtepMAC":"62:00:00:00:00:01"}"#
    );
    assert_eq!(ann["flannel.alpha.coreos.com/public-ip"], "192.0.2.1");
    assert_eq!(ann["flannel.alpha.coreos.com/kube-subnet-manager"], "true");
    // flannel patches the status subresource, strategic merge.
    assert!(
        s.requests()
            .iter()
            .any(|r| r.starts_with("PATCH /api/v1/nodes/me/status"))
    );
    // Acquiring again with the same attributes patches nothing.
    let patches = count(&s, |r| r.starts_with("PATCH"));
    sm.acquire(&attrs, None).unwrap();
    assert_eq!(count(&s, |r| r.starts_with("PATCH")), patches);

    sm.started(&lease).unwrap();
    let me = s.get(Kind::Node, "", "me").unwrap();
    assert_eq!(me["status"]["conditions"][0]["type"], "NetworkUnavailable");
    assert_eq!(me["status"]["conditions"][0]["status"], "False");
    assert_eq!(me["status"]["conditions"][0]["reason"], "FlannelIsUp");

    let mut w = sm.watch().unwrap();
    let mut leases = match w.next(Duration::from_secs(1)).unwrap() {
        Some(LeaseEvent::Snapshot(all)) => all,
        other => panic!("{other:?}"),
    };
    // The snapshot may predate our own annotation's watch event; wait for both.
    let deadline = Instant::now() + Duration::from_secs(20);
    while leases.len() < 2 && Instant::now() < deadline {
        if let Some(LeaseEvent::Added(l) | LeaseEvent::Changed(l)) =
            w.next(Duration::from_millis(200)).unwrap()
        {
            leases.retain(|x| x.subnets != l.subnets);
            leases.push(l);
        }
    }
    leases.sort_by_key(|l| l.subnets);
    assert_eq!(leases.len(), 2, "{leases:?}");
    let other = &leases[1];
    assert_eq!(other.subnets.ipv4, Some("10.244.7.0/24".parse().unwrap()));
    assert_eq!(other.attrs.public_ip.to_string(), "192.0.2.7");
    assert_eq!(other.attrs.backend_type, "vxlan");
    assert_eq!(
        other.attrs.backend_data.as_ref().unwrap().get(),
        r#"{"VNI":1,"VtepMAC":"62:00:00:00:00:07"}"#
    );

    // A foreign node changes its VTEP MAC, then leaves.
    s.merge_patch(
        Kind::Node,
        "",
        "other",
        &json!({"metadata": {"annotations": {
            "flannel.alpha.coreos.com/backend-data": "{\"VNI\":1,\"VtepMAC\":\"62:00:00:00:00:08\"}"}}}),
    )
    .unwrap();
    let ev = next_lease_event(&mut *w);
    assert!(
        matches!(&ev, LeaseEvent::Changed(l) if l.attrs.backend_data.as_ref().unwrap().get().contains(":08")),
        "{ev:?}"
    );
    s.delete(Kind::Node, "", "other").unwrap();
    let ev = next_lease_event(&mut *w);
    assert!(
        matches!(&ev, LeaseEvent::Removed(l) if l.subnets.ipv4 == Some("10.244.7.0/24".parse().unwrap())),
        "{ev:?}"
    );
    assert_eq!(sm.leases().unwrap().len(), 1);
}

fn next_lease_event(w: &mut dyn LeaseEvents) -> LeaseEvent {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(e) = w.next(Duration::from_millis(200)).unwrap() {
            return e;
        }
    }
    panic!("no lease event");
}

#[test]
fn kube_subnet_manager_refuses_what_flannel_refuses() {
    let s = ApiServer::start(ApiServerOptions::default()).unwrap();
    s.create(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "nocidr"}}))
        .unwrap();
    s.create(node("outside", "10.99.1.0/24")).unwrap();
    let attrs = LeaseAttrs::new("192.0.2.1".parse().unwrap(), "host-gw");
    let e = kube_sm(&s, "nocidr").acquire(&attrs, None).unwrap_err();
    assert!(e.to_string().contains("pod cidr not assigned"), "{e}");
    let e = kube_sm(&s, "outside").acquire(&attrs, None).unwrap_err();
    assert!(
        e.to_string().contains("doesn't contain 10.99.1.0/24"),
        "{e}"
    );
    for bad in ["noslash", "a.b/c/d", "UPPER.case", "a.b/x y"] {
        assert!(Annotations::new(bad).is_err(), "{bad}");
    }
    let a = Annotations::new("example.com/net").unwrap();
    assert_eq!(a.backend_type, "example.com/net-backend-type");
    let a = Annotations::new("flannel.alpha.coreos.com").unwrap();
    assert_eq!(a.public_ip, "flannel.alpha.coreos.com/public-ip");
    let n: Node = serde_json::from_value(s.get(Kind::Node, "", "outside").unwrap()).unwrap();
    assert!(
        node_to_lease(&a, &n).is_none(),
        "not annotated: not a lease"
    );
}

#[test]
fn https_with_a_token_from_a_kubeconfig_file() {
    use podnet_testsupport::kube_api::ServerTls;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let s = ApiServer::start(ApiServerOptions {
        token: Some("sekret".into()),
        tls: Some(ServerTls {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: ca.pem(),
        }),
        ..ApiServerOptions::default()
    })
    .unwrap();
    s.create(node("a", "10.244.1.0/24")).unwrap();
    assert!(s.url().starts_with("https://"));
    let path = std::env::temp_dir().join(format!("podnet-kubeconfig-{}", std::process::id()));
    std::fs::write(&path, s.kubeconfig()).unwrap();
    let kube = Kube::connect(&KubeOptions {
        kubeconfig: Some(path.clone()),
        master: None,
    });
    let _ = std::fs::remove_file(&path);
    let kube = kube.unwrap();
    assert_eq!(
        kube.get_node("a")
            .unwrap()
            .spec
            .unwrap()
            .pod_cidr
            .as_deref(),
        Some("10.244.1.0/24")
    );
    let w = kube.watch(Api::<Node>::all(kube.client()), WatchOptions::default());
    assert!(w.wait_synced(Duration::from_secs(20)));
    assert_eq!(names(&w.snapshot()), ["a"]);
    // A --master that is no URL is refused, named.
    let e = Kube::connect(&KubeOptions {
        kubeconfig: None,
        master: Some("not a url".into()),
    })
    .unwrap_err();
    assert!(e.to_string().contains("API server URL"), "{e}");
}

/// Runs flanneld in kube mode with `env`; it must fail before touching the kernel. Its stderr.
fn flanneld_fails(
    s: &ApiServer,
    net_conf: Option<&str>,
    args: &[&str],
    env: &[(&str, &str)],
) -> String {
    let dir = std::env::temp_dir().join(format!("podnet-kubeflags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_flanneld"));
    cmd.args(["--kube-subnet-mgr", "--kube-api-url", &s.url()])
        .arg("--subnet-file")
        .arg(dir.join("subnet.env"))
        .args(args)
        .env_remove("NODE_NAME")
        .env_remove("POD_NAME")
        .env_remove("POD_NAMESPACE")
        .envs(env.iter().copied());
    if let Some(text) = net_conf {
        let p = dir.join("net-conf.json");
        std::fs::write(&p, text).unwrap();
        cmd.arg("--net-config-path").arg(p);
    }
    let out = cmd.output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn flanneld_kube_mode_says_what_is_missing() {
    let s = ApiServer::start(ApiServerOptions::default()).unwrap();
    let conf = Some(r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}"#);
    // flannel's default net-conf path in kube mode.
    let e = flanneld_fails(&s, None, &[], &[("NODE_NAME", "me")]);
    assert!(e.contains("/etc/kube-flannel/net-conf.json"), "{e}");
    let e = flanneld_fails(&s, conf, &[], &[]);
    assert!(e.contains("POD_NAME and POD_NAMESPACE must be set"), "{e}");
    // The node's name from the pod's spec: the pod must exist.
    let e = flanneld_fails(
        &s,
        conf,
        &[],
        &[("POD_NAME", "flannel-x"), ("POD_NAMESPACE", "kube-flannel")],
    );
    assert!(e.contains("retrieving pod kube-flannel/flannel-x"), "{e}");
    assert!(
        s.requests()
            .iter()
            .any(|r| r.starts_with("GET /api/v1/namespaces/kube-flannel/pods/flannel-x")),
        "{:?}",
        s.requests()
    );
    let e = flanneld_fails(
        &s,
        conf,
        &["--kube-annotation-prefix", "Not/A/Prefix"],
        &[("NODE_NAME", "me")],
    );
    assert!(e.contains("--kube-annotation-prefix"), "{e}");
    let e = flanneld_fails(&s, Some("{not json"), &[], &[("NODE_NAME", "me")]);
    assert!(e.contains("subnet config"), "{e}");
}
