//! The test Kubernetes API server speaks the list/watch protocol: checked over plain HTTP/1.0
//! (close-delimited bodies, one JSON object per line on a watch). No root needed.

use podnet_testsupport::kube_api::{ApiServer, ApiServerOptions, Kind};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn node(name: &str, cidr: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
           "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
}

/// Sends one request; returns the status code and the open reader positioned at the body.
fn send(
    s: &ApiServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, BufReader<TcpStream>) {
    let mut c = TcpStream::connect(s.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: test\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    c.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(c);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let code: u16 = status.split_whitespace().nth(1).unwrap().parse().unwrap();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
    }
    (code, r)
}

fn call(s: &ApiServer, method: &str, path: &str, ct: &str, body: &str) -> (u16, Value) {
    let (code, mut r) = send(s, method, path, &[("Content-Type", ct)], body);
    let mut text = String::new();
    r.read_to_string(&mut text).unwrap();
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn get(s: &ApiServer, path: &str) -> (u16, Value) {
    call(s, "GET", path, "application/json", "")
}

fn next_event(r: &mut BufReader<TcpStream>) -> Option<Value> {
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) => None,
        Ok(_) => Some(serde_json::from_str(&line).unwrap()),
        Err(e) => panic!("reading a watch: {e}"),
    }
}

fn rv(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn lists_carry_resource_versions_and_page_through_a_snapshot() {
    let s = ApiServer::start(ApiServerOptions::default()).unwrap();
    for i in 0..5 {
        s.create(node(&format!("n{i}"), &format!("10.244.{i}.0/24")))
            .unwrap();
    }
    let (code, all) = get(&s, "/api/v1/nodes");
    assert_eq!(code, 200);
    assert_eq!(all["kind"], "NodeList");
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
    assert_eq!(rv(&all), 5);
    assert_eq!(rv(&all["items"][4]), 5);

    let (_, p1) = get(&s, "/api/v1/nodes?limit=2");
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    assert_eq!(p1["metadata"]["remainingItemCount"], 3);
    let token = p1["metadata"]["continue"].as_str().unwrap().to_string();
    // A change after the first page does not show in the next ones: one snapshot.
    s.create(node("n9", "10.244.9.0/24")).unwrap();
    let (_, p2) = get(&s, &format!("/api/v1/nodes?limit=2&continue={token}"));
    let (_, p3) = get(
        &s,
        &format!(
            "/api/v1/nodes?limit=2&continue={}",
            p2["metadata"]["continue"].as_str().unwrap()
        ),
    );
    assert_eq!(p3["items"].as_array().unwrap().len(), 1);
    assert!(p3["metadata"].get("continue").is_none());
    assert_eq!(
        rv(&p3),
        5,
        "every page has the first page's resourceVersion"
    );
    let names: Vec<&str> = [&p1, &p2, &p3]
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap())
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["n0", "n1", "n2", "n3", "n4"]);

    // A continue token from before a compaction is expired: 410.
    let (_, p1) = get(&s, "/api/v1/nodes?limit=2");
    s.compact();
    let (code, st) = get(
        &s,
        &format!(
            "/api/v1/nodes?limit=2&continue={}",
            p1["metadata"]["continue"].as_str().unwrap()
        ),
    );
    assert_eq!(code, 410);
    assert_eq!(st["kind"], "Status");
    assert_eq!(st["reason"], "Expired");
    let (code, _) = get(
        &s,
        "/api/v1/nodes?resourceVersion=3&resourceVersionMatch=Exact",
    );
    assert_eq!(code, 410);

    let (_, one) = get(&s, "/api/v1/nodes?fieldSelector=metadata.name%3Dn3");
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    assert_eq!(one["items"][0]["metadata"]["name"], "n3");
}

#[test]
fn watch_streams_events_bookmarks_and_410() {
    let s = ApiServer::start(ApiServerOptions::default()).unwrap();
    s.create(node("a", "10.244.1.0/24")).unwrap();
    let (_, list) = get(&s, "/api/v1/nodes");
    let from = rv(&list);
    let (code, mut w) = send(
        &s,
        "GET",
        &format!("/api/v1/nodes?watch=1&resourceVersion={from}&allowWatchBookmarks=true"),
        &[],
        "",
    );
    assert_eq!(code, 200);
    s.create(node("b", "10.244.2.0/24")).unwrap();
    let e = next_event(&mut w).unwrap();
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["object"]["metadata"]["name"], "b");
    s.merge_patch(
        Kind::Node,
        "",
        "b",
        &json!({"metadata": {"labels": {"x": "y"}}}),
    )
    .unwrap();
    let e = next_event(&mut w).unwrap();
    assert_eq!(e["type"], "MODIFIED");
    assert_eq!(e["object"]["metadata"]["labels"]["x"], "y");
    s.send_bookmarks();
    let e = next_event(&mut w).unwrap();
    assert_eq!(e["type"], "BOOKMARK");
    assert_eq!(rv(&e["object"]), s.resource_version());
    s.delete(Kind::Node, "", "a").unwrap();
    let e = next_event(&mut w).unwrap();
    assert_eq!(e["type"], "DELETED");
    assert_eq!(e["object"]["metadata"]["name"], "a");
    // Compaction alone leaves running watches alone; expiring them sends the 410 ERROR.
    s.compact();
    s.expire_watches();
    let e = next_event(&mut w).unwrap();
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    assert!(next_event(&mut w).is_none(), "the watch ends after ERROR");

    // A new watch from the old resourceVersion: 410 at once.
    let (code, mut w) = send(
        &s,
        "GET",
        &format!("/api/v1/nodes?watch=true&resourceVersion={from}"),
        &[],
        "",
    );
    assert_eq!(code, 200);
    let e = next_event(&mut w).unwrap();
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["reason"], "Expired");

    // Without a resourceVersion: the current objects as ADDED first; dropped watches end.
    let (_, mut w) = send(
        &s,
        "GET",
        "/api/v1/nodes?watch=1&fieldSelector=metadata.name%3Db",
        &[],
        "",
    );
    let e = next_event(&mut w).unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("b"))
    );
    s.create(node("c", "10.244.3.0/24")).unwrap();
    s.drop_watches();
    assert!(
        next_event(&mut w).is_none(),
        "c is filtered out, then the stream ends"
    );
}

#[test]
fn periodic_bookmarks_only_when_asked() {
    let s = ApiServer::start(ApiServerOptions {
        bookmark_interval: Some(Duration::from_millis(100)),
        ..ApiServerOptions::default()
    })
    .unwrap();
    let (_, mut w) = send(
        &s,
        "GET",
        "/api/v1/nodes?watch=1&resourceVersion=0&allowWatchBookmarks=true",
        &[],
        "",
    );
    assert_eq!(next_event(&mut w).unwrap()["type"], "BOOKMARK");
    let (_, mut w) = send(
        &s,
        "GET",
        "/api/v1/nodes?watch=1&resourceVersion=0&timeoutSeconds=1",
        &[],
        "",
    );
    assert!(
        next_event(&mut w).is_none(),
        "no bookmark without allowWatchBookmarks; the watch ends at timeoutSeconds"
    );
}

#[test]
fn node_patches_as_clients_send_them() {
    let s = ApiServer::start(ApiServerOptions::default()).unwrap();
    s.create(node("n1", "10.244.1.0/24")).unwrap();
    let (code, n) = call(
        &s,
        "PATCH",
        "/api/v1/nodes/n1",
        "application/strategic-merge-patch+json",
        r#"{"metadata":{"annotations":{"flannel.alpha.coreos.com/public-ip":"192.0.2.1"}}}"#,
    );
    assert_eq!(code, 200);
    assert_eq!(
        n["metadata"]["annotations"]["flannel.alpha.coreos.com/public-ip"],
        "192.0.2.1"
    );
    assert_eq!(n["spec"]["podCIDR"], "10.244.1.0/24");
    let (code, n) = call(
        &s,
        "PATCH",
        "/api/v1/nodes/n1",
        "application/json-patch+json",
        r#"[{"op":"add","path":"/metadata/annotations/flannel.alpha.coreos.com~1backend-type","value":"vxlan"},
            {"op":"test","path":"/spec/podCIDR","value":"10.244.1.0/24"}]"#,
    );
    assert_eq!(code, 200);
    assert_eq!(
        n["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-type"],
        "vxlan"
    );
    // Status through the subresource only; the subresource keeps the spec.
    let (_, n) = call(
        &s,
        "PATCH",
        "/api/v1/nodes/n1",
        "application/merge-patch+json",
        r#"{"status":{"phase":"ignored"}}"#,
    );
    assert!(n.get("status").is_none());
    let (code, n) = call(
        &s,
        "PATCH",
        "/api/v1/nodes/n1/status",
        "application/merge-patch+json",
        r#"{"status":{"conditions":[{"type":"NetworkUnavailable","status":"False"}]},"spec":{"podCIDR":"x"},"metadata":{"annotations":{"a":"b"}}}"#,
    );
    assert_eq!(code, 200);
    assert_eq!(n["metadata"]["annotations"]["a"], "b");
    assert_eq!(n["status"]["conditions"][0]["type"], "NetworkUnavailable");
    assert_eq!(n["spec"]["podCIDR"], "10.244.1.0/24");
    // A strategic merge patch merges conditions by type (flannel patches only its own).
    let (code, n) = call(
        &s,
        "PATCH",
        "/api/v1/nodes/n1/status",
        "application/strategic-merge-patch+json",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True"},{"type":"NetworkUnavailable","status":"False","reason":"FlannelIsUp"}]}}"#,
    );
    assert_eq!(code, 200);
    let conds = n["status"]["conditions"].as_array().unwrap();
    assert_eq!(conds.len(), 2, "{conds:?}");
    assert_eq!(conds[0]["reason"], "FlannelIsUp");
    assert_eq!(conds[1]["type"], "Ready");
    // A stale resourceVersion conflicts.
    let (code, st) = call(
        &s,
        "PATCH",
        "/api/v1/nodes/n1",
        "application/merge-patch+json",
        r#"{"metadata":{"resourceVersion":"1","labels":{"a":"b"}}}"#,
    );
    assert_eq!((code, st["reason"].as_str()), (409, Some("Conflict")));
    let (code, _) = call(
        &s,
        "PATCH",
        "/api/v1/nodes/n1",
        "application/apply-patch+yaml",
        "{}",
    );
    assert_eq!(code, 415);
    let (code, _) = get(&s, "/api/v1/nodes/nope");
    assert_eq!(code, 404);
}

#[test]
fn namespaced_resources_and_tokens() {
    let s = ApiServer::start(ApiServerOptions {
        token: Some("sekret".into()),
        ..ApiServerOptions::default()
    })
    .unwrap();
    let (code, _) = get(&s, "/api/v1/services");
    assert_eq!(code, 401);
    let auth = [
        ("Authorization", "Bearer sekret"),
        ("Content-Type", "application/json"),
    ];
    let (code, mut r) = send(
        &s,
        "POST",
        "/api/v1/namespaces/web/services",
        &auth,
        r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"svc"},"spec":{"clusterIP":"10.96.0.10"}}"#,
    );
    assert_eq!(code, 201);
    let mut t = String::new();
    r.read_to_string(&mut t).unwrap();
    s.create(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": "svc-1", "namespace": "web",
                                 "labels": {"kubernetes.io/service-name": "svc"}},
                    "addressType": "IPv4", "endpoints": []}),
    )
    .unwrap();
    s.create(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
                    "metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.96.0.0/12"]}}),
    )
    .unwrap();
    for (path, n) in [
        ("/api/v1/services", 1),
        ("/api/v1/namespaces/web/services", 1),
        ("/api/v1/namespaces/other/services", 0),
        (
            "/apis/discovery.k8s.io/v1/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dsvc",
            1,
        ),
        ("/apis/networking.k8s.io/v1/servicecidrs", 1),
    ] {
        let (code, mut r) = send(&s, "GET", path, &auth, "");
        assert_eq!(code, 200, "{path}");
        let mut t = String::new();
        r.read_to_string(&mut t).unwrap();
        let v: Value = serde_json::from_str(&t).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), n, "{path}");
    }
    assert!(s.kubeconfig().contains("token: sekret"));
}
