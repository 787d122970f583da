//! Reading Kubernetes objects: YAML and JSON, List kinds, and bad input skipped with warnings
//! naming the object, never a crash and never a partly compiled Service.

use podnet_nat::kube::{ClusterState, IpFamily, KubeObject, parse_objects};
use podnet_nat::kube_proxy::NodeSettings;
use podnet_nat::kube_proxy::iptables_mode::compile;

const GOOD: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: good, namespace: app}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: good-abc, namespace: app, labels: {kubernetes.io/service-name: good}}
addressType: IPv4
endpoints: [{addresses: [10.244.1.5], conditions: {ready: true}}]
ports: [{name: http, port: 8080, protocol: TCP}]
"#;

fn warnings_for(extra: &str) -> (String, Vec<String>) {
    let text = format!("{GOOD}---\n{extra}");
    let (objects, mut warnings) = parse_objects(&text, "input.yaml");
    let (state, w2) = ClusterState::from_objects(&objects, IpFamily::V4);
    warnings.extend(w2);
    let rules = compile(&state, &NodeSettings::new("n1", IpFamily::V4)).render();
    assert!(
        rules.contains("app/good:http cluster IP"),
        "the good service must still compile"
    );
    (rules, warnings.iter().map(|w| w.to_string()).collect())
}

#[test]
fn service_with_invalid_ip_is_skipped_with_warning() {
    let (rules, w) = warnings_for(
        "apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: app}\n\
         spec:\n  clusterIP: 10.96.0.300\n  ports: [{name: http, port: 80}]\n",
    );
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("Service app/bad:") && w[0].contains("10.96.0.300"),
        "{w:?}"
    );
    assert!(!rules.contains("app/bad"));
}

#[test]
fn service_with_invalid_external_ip_or_range_is_skipped_whole() {
    let (rules, w) = warnings_for(
        "apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: app}\n\
         spec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.21\n  externalIPs: [nope]\n\
         \x20 ports: [{name: a, port: 80, nodePort: 30001}]\n",
    );
    assert!(
        w.len() == 1 && w[0].contains("Service app/bad") && w[0].contains("externalIP"),
        "{w:?}"
    );
    assert!(!rules.contains("app/bad"), "no half-compiled service");
    let (rules, w) = warnings_for(
        "apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: app}\n\
         spec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.21\n  loadBalancerSourceRanges: [1.2.3.0/99]\n\
         \x20 ports: [{name: a, port: 80}]\n",
    );
    assert!(
        w.len() == 1 && w[0].contains("loadBalancerSourceRange"),
        "{w:?}"
    );
    assert!(!rules.contains("app/bad"));
}

#[test]
fn service_with_invalid_port_is_skipped_with_warning() {
    for port in ["70000", "0", "-1"] {
        let (rules, w) = warnings_for(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: bad, namespace: app}}\n\
             spec:\n  clusterIP: 10.96.0.22\n  ports: [{{name: ok, port: 81}}, {{name: a, port: {port}}}]\n"
        ));
        assert!(
            w.len() == 1 && w[0].starts_with("Service app/bad") && w[0].contains("port"),
            "{w:?}"
        );
        assert!(
            !rules.contains("app/bad"),
            "the valid port of a bad service is not applied either"
        );
    }
    // A port of the wrong type.
    let (_, w) = warnings_for(
        "apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: app}\n\
         spec:\n  clusterIP: 10.96.0.22\n  ports: [{name: a, port: eighty}]\n",
    );
    assert!(w.len() == 1 && w[0].starts_with("Service app/bad"), "{w:?}");
}

#[test]
fn endpoint_slice_for_unknown_service_is_skipped_with_warning() {
    let (rules, w) = warnings_for(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {name: ghost-1, namespace: app, labels: {kubernetes.io/service-name: ghost}}\n\
         addressType: IPv4\nendpoints: [{addresses: [10.244.9.9]}]\nports: [{name: http, port: 80}]\n",
    );
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("EndpointSlice app/ghost-1") && w[0].contains("unknown Service app/ghost"),
        "{w:?}"
    );
    assert!(!rules.contains("10.244.9.9"));
}

#[test]
fn endpoint_slice_with_bad_address_is_skipped_with_warning() {
    let (rules, w) = warnings_for(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {name: good-2, namespace: app, labels: {kubernetes.io/service-name: good}}\n\
         addressType: IPv4\nendpoints: [{addresses: [10.244.1.6]}, {addresses: [banana]}]\nports: [{name: http, port: 8080}]\n",
    );
    assert!(
        w.len() == 1 && w[0].starts_with("EndpointSlice app/good-2"),
        "{w:?}"
    );
    assert!(!rules.contains("10.244.1.6"), "the slice is skipped whole");
    assert!(rules.contains("10.244.1.5:8080"));
}

#[test]
fn malformed_documents_and_unknown_kinds_are_reported() {
    let (_, w) =
        warnings_for("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, namespace: app}\n");
    assert!(
        w.len() == 1 && w[0].starts_with("ConfigMap app/cm"),
        "{w:?}"
    );
    let (objects, w) = parse_objects("kind: Service\nmetadata: {name: [unclosed\n", "broken.yaml");
    assert!(objects.is_empty());
    assert!(w.len() == 1 && w[0].object == "broken.yaml", "{w:?}");
    let (objects, w) = parse_objects("{\"kind\": \"Service\", ", "broken.json");
    assert!(objects.is_empty() && w.len() == 1, "{w:?}");
}

#[test]
fn reads_kubectl_json_lists() {
    let json = r#"{
      "apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
      "items": [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "api", "namespace": "prod", "uid": "x", "annotations": {"a": "b"}},
         "spec": {"clusterIP": "10.96.1.1", "clusterIPs": ["10.96.1.1"], "ipFamilies": ["IPv4"],
                  "internalTrafficPolicy": "Cluster", "type": "NodePort", "externalTrafficPolicy": "Local",
                  "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https", "nodePort": 31443}],
                  "selector": {"app": "api"}, "sessionAffinity": "None"},
         "status": {"loadBalancer": {}}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "api-x1", "namespace": "prod",
                      "labels": {"kubernetes.io/service-name": "api", "endpointslice.kubernetes.io/managed-by": "x"}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": ["10.244.3.3"], "conditions": {"ready": true, "serving": true, "terminating": false},
                        "nodeName": "n1", "targetRef": {"kind": "Pod", "name": "api-1"}, "zone": "z"}],
         "ports": [{"name": "https", "port": 8443, "protocol": "TCP"}]}
      ]}"#;
    let (objects, w) = parse_objects(json, "list.json");
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(objects.len(), 2);
    assert!(matches!(objects[0], KubeObject::Service(_)));
    let (state, w) = ClusterState::from_objects(&objects, IpFamily::V4);
    assert!(w.is_empty(), "{w:?}");
    let svc = state.services.values().next().unwrap();
    assert!(svc.external_policy_local);
    assert_eq!(svc.node_port, Some(31443));
    assert_eq!(svc.service_type, podnet_nat::kube::ServiceType::NodePort);
    assert_eq!(
        svc.target_port,
        podnet_nat::kube::TargetPort::Name("https".into())
    );
    let rules = compile(&state, &NodeSettings::new("n1", IpFamily::V4)).render();
    assert!(
        rules.contains("KUBE-SVL-"),
        "local endpoint chain expected:\n{rules}"
    );
    assert!(rules.contains("--to-destination 10.244.3.3:8443"));
}

#[test]
fn never_panics_on_odd_input() {
    for text in [
        "",
        "---\n---\n",
        "[]",
        "kind: List\nitems: 5\n",
        "kind: Service\nspec: 7\n",
        "kind: EndpointSlice\nendpoints: [{addresses: []}]\nmetadata: {labels: {kubernetes.io/service-name: x}}\n",
        "kind: Service\nmetadata: {name: s}\nspec: {clusterIP: '::1', ports: [{port: 1, protocol: ICMP}]}\n",
        "\u{0}\u{1}",
    ] {
        let (objects, _) = parse_objects(text, "odd");
        let (state, _) = ClusterState::from_objects(&objects, IpFamily::V4);
        let _ = compile(&state, &NodeSettings::new("n", IpFamily::V4)).render();
    }
}
