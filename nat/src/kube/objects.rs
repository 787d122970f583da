//! Kubernetes objects as `kubectl get -o yaml|json` writes them: v1 Service,
//! discovery.k8s.io/v1 EndpointSlice, v1 Node (its labels), and the List kinds that wrap them.
//!
//! Only the fields a service proxy reads are kept; everything else is ignored. Numbers that a
//! proxy validates (ports) are read as `i64` so that an out-of-range value becomes a warning
//! naming the object rather than a parse failure of the whole file.

use serde::Deserialize;
use std::collections::BTreeMap;

/// `metadata`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// `name`.
    #[serde(default)]
    pub name: String,
    /// `namespace` (empty means `default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// `labels`.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// `annotations` (an EndpointSlice's `endpoints.kubernetes.io/last-change-trigger-time`).
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ObjectMeta {
    /// The namespace, `default` when unset.
    pub fn namespace(&self) -> &str {
        match self.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns,
            _ => "default",
        }
    }
}

/// A v1 Service.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec`.
    #[serde(default)]
    pub spec: ServiceSpec,
    /// `status`.
    #[serde(default)]
    pub status: ServiceStatus,
}

/// `spec` of a Service.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `type`: ClusterIP (default), NodePort, LoadBalancer, ExternalName.
    #[serde(rename = "type", default)]
    pub type_: Option<String>,
    /// `clusterIP` (`None` for headless).
    #[serde(rename = "clusterIP", default)]
    pub cluster_ip: Option<String>,
    /// `clusterIPs` (dual-stack).
    #[serde(rename = "clusterIPs", default)]
    pub cluster_ips: Option<Vec<String>>,
    /// `ports`.
    #[serde(default)]
    pub ports: Option<Vec<ServicePortSpec>>,
    /// `externalIPs`.
    #[serde(rename = "externalIPs", default)]
    pub external_ips: Option<Vec<String>>,
    /// `loadBalancerSourceRanges`.
    #[serde(default)]
    pub load_balancer_source_ranges: Option<Vec<String>>,
    /// `sessionAffinity`: None or ClientIP.
    #[serde(default)]
    pub session_affinity: Option<String>,
    /// `sessionAffinityConfig`.
    #[serde(default)]
    pub session_affinity_config: Option<SessionAffinityConfig>,
    /// `externalTrafficPolicy`: Cluster or Local.
    #[serde(default)]
    pub external_traffic_policy: Option<String>,
    /// `internalTrafficPolicy`: Cluster or Local.
    #[serde(default)]
    pub internal_traffic_policy: Option<String>,
    /// `healthCheckNodePort`.
    #[serde(default)]
    pub health_check_node_port: Option<i64>,
    /// `trafficDistribution`: `PreferClose` (or its newer names `PreferSameZone`,
    /// `PreferSameNode`) asks for topology hints on the Service's endpoints.
    #[serde(default)]
    pub traffic_distribution: Option<String>,
}

/// `sessionAffinityConfig`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionAffinityConfig {
    /// `clientIP`.
    #[serde(rename = "clientIP", default)]
    pub client_ip: Option<ClientIpConfig>,
}

/// `sessionAffinityConfig.clientIP`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClientIpConfig {
    /// `timeoutSeconds` (default 10800).
    #[serde(default)]
    pub timeout_seconds: Option<i64>,
}

/// One entry of `spec.ports`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServicePortSpec {
    /// `name` (may be empty for a single-port service).
    #[serde(default)]
    pub name: Option<String>,
    /// `protocol` (default TCP).
    #[serde(default)]
    pub protocol: Option<String>,
    /// `port`.
    #[serde(default)]
    pub port: i64,
    /// `targetPort`: a number or a named port.
    #[serde(default)]
    pub target_port: Option<serde_json::Value>,
    /// `nodePort`.
    #[serde(default)]
    pub node_port: Option<i64>,
}

/// `status` of a Service.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// `loadBalancer`.
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerStatus>,
}

/// `status.loadBalancer`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerStatus {
    /// `ingress`.
    #[serde(default)]
    pub ingress: Option<Vec<LoadBalancerIngress>>,
}

/// One `status.loadBalancer.ingress` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerIngress {
    /// `ip`.
    #[serde(default)]
    pub ip: Option<String>,
    /// `hostname`.
    #[serde(default)]
    pub hostname: Option<String>,
    /// `ipMode`: VIP (default) or Proxy; Proxy ingress IPs get no rules.
    #[serde(default)]
    pub ip_mode: Option<String>,
}

/// A discovery.k8s.io/v1 EndpointSlice.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    /// `metadata` (the label `kubernetes.io/service-name` names the Service).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `addressType`: IPv4, IPv6 or FQDN.
    #[serde(default)]
    pub address_type: String,
    /// `endpoints`.
    #[serde(default)]
    pub endpoints: Option<Vec<EndpointSpec>>,
    /// `ports`.
    #[serde(default)]
    pub ports: Option<Vec<EndpointPortSpec>>,
}

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

impl EndpointSlice {
    /// The Service this slice belongs to (its `kubernetes.io/service-name` label).
    pub fn service_name(&self) -> Option<&str> {
        self.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// One entry of `endpoints`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSpec {
    /// `addresses` (only the first is used, as the API defines).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// `conditions`.
    #[serde(default)]
    pub conditions: EndpointConditions,
    /// `nodeName`.
    #[serde(default)]
    pub node_name: Option<String>,
    /// `zone`.
    #[serde(default)]
    pub zone: Option<String>,
    /// `hints`: where the EndpointSlice controller wants this endpoint used.
    #[serde(default)]
    pub hints: Option<EndpointHints>,
}

/// `endpoints[].hints`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointHints {
    /// `forZones`: the zones whose nodes should use this endpoint.
    #[serde(default)]
    pub for_zones: Option<Vec<HintName>>,
    /// `forNodes`: the nodes that should use this endpoint.
    #[serde(default)]
    pub for_nodes: Option<Vec<HintName>>,
}

/// One entry of `hints.forZones` or `hints.forNodes`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct HintName {
    /// `name`.
    #[serde(default)]
    pub name: String,
}

/// A v1 Node: only what a service proxy reads of it (its labels, for the zone).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// `metadata` (the label `topology.kubernetes.io/zone` names the node's zone).
    #[serde(default)]
    pub metadata: ObjectMeta,
}

/// `endpoints[].conditions`; unset means ready and serving, not terminating.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointConditions {
    /// `ready`.
    #[serde(default)]
    pub ready: Option<bool>,
    /// `serving`.
    #[serde(default)]
    pub serving: Option<bool>,
    /// `terminating`.
    #[serde(default)]
    pub terminating: Option<bool>,
}

/// One entry of an EndpointSlice's `ports`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPortSpec {
    /// `name` (matches the Service port's name).
    #[serde(default)]
    pub name: Option<String>,
    /// `port`.
    #[serde(default)]
    pub port: Option<i64>,
    /// `protocol` (default TCP).
    #[serde(default)]
    pub protocol: Option<String>,
}

/// An object read from a file.
// Objects are few and short-lived (read, compiled, dropped): boxing the Service would cost
// every match and constructor for no memory anyone notices.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum KubeObject {
    /// A v1 Service.
    Service(Service),
    /// A discovery.k8s.io/v1 EndpointSlice.
    EndpointSlice(EndpointSlice),
    /// A v1 Node (its zone label, for topology).
    Node(Node),
}

/// Something in the input that was skipped, and why. The object is named as `Kind ns/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The object (or file) concerned, e.g. `Service ns1/svc1`.
    pub object: String,
    /// What was wrong.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.message)
    }
}

fn describe(v: &serde_json::Value) -> String {
    let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("object");
    let meta = v.get("metadata");
    let ns = meta
        .and_then(|m| m.get("namespace"))
        .and_then(|n| n.as_str())
        .unwrap_or("default");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("<unnamed>");
    format!("{kind} {ns}/{name}")
}

/// Reads Services and EndpointSlices from YAML (one or more `---` documents) or JSON text,
/// unwrapping `List`, `ServiceList` and `EndpointSliceList` objects.
///
/// Nothing here fails as a whole: a malformed document or object, or an object of another kind,
/// becomes a [`Warning`] naming it (or `source`, for a document that does not parse), and the
/// rest is still returned. [`parse_document`] also says whether the text was malformed.
pub fn parse_objects(text: &str, source: &str) -> (Vec<KubeObject>, Vec<Warning>) {
    let p = parse_document(text, source);
    (p.objects, p.warnings)
}

/// What [`parse_document`] read from one text.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    /// The Services and EndpointSlices, in order.
    pub objects: Vec<KubeObject>,
    /// Everything skipped, in order, as [`parse_objects`] returns it.
    pub warnings: Vec<Warning>,
    /// The text is not all it should be: YAML or JSON that does not parse, a document without
    /// a `kind`, a Service or EndpointSlice that does not fit its schema, a list whose `items`
    /// is not a list. Objects of kinds kube-proxy does not read are skipped, not malformed.
    /// A file caught half-written is malformed (or empty: see [`Parsed::empty`]).
    pub malformed: bool,
    /// The text holds no document at all (empty, blank or only comments).
    pub empty: bool,
}

/// [`parse_objects`], telling apart text that is malformed (caught half-written, say) from
/// objects skipped on purpose.
pub fn parse_document(text: &str, source: &str) -> Parsed {
    let mut values = Vec::new();
    let mut warnings = Vec::new();
    let mut malformed = false;
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        // JSON: possibly several concatenated values.
        let stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
        for v in stream {
            match v {
                Ok(v) => values.push(v),
                Err(e) => {
                    malformed = true;
                    warnings.push(Warning {
                        object: source.to_owned(),
                        message: format!("malformed JSON: {e}"),
                    });
                    break;
                }
            }
        }
    } else {
        for doc in yaml_serde::Deserializer::from_str(text) {
            match serde_json::Value::deserialize(doc) {
                Ok(serde_json::Value::Null) => {}
                Ok(v) => values.push(v),
                Err(e) => {
                    malformed = true;
                    warnings.push(Warning {
                        object: source.to_owned(),
                        message: format!("malformed YAML: {e}"),
                    });
                    break;
                }
            }
        }
    }
    let empty = values.is_empty() && !malformed;
    let mut objects = Vec::new();
    let mut stack: Vec<serde_json::Value> = values.into_iter().rev().collect();
    while let Some(v) = stack.pop() {
        if let serde_json::Value::Array(items) = v {
            stack.extend(items.into_iter().rev());
            continue;
        }
        let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        match kind {
            "Service" => match serde_json::from_value::<Service>(v.clone()) {
                Ok(s) => objects.push(KubeObject::Service(s)),
                Err(e) => {
                    malformed = true;
                    warnings.push(Warning {
                        object: describe(&v),
                        message: format!("malformed Service: {e}"),
                    });
                }
            },
            "EndpointSlice" => match serde_json::from_value::<EndpointSlice>(v.clone()) {
                Ok(s) => objects.push(KubeObject::EndpointSlice(s)),
                Err(e) => {
                    malformed = true;
                    warnings.push(Warning {
                        object: describe(&v),
                        message: format!("malformed EndpointSlice: {e}"),
                    });
                }
            },
            "Node" => match serde_json::from_value::<Node>(v.clone()) {
                Ok(n) => objects.push(KubeObject::Node(n)),
                Err(e) => {
                    malformed = true;
                    warnings.push(Warning {
                        object: describe(&v),
                        message: format!("malformed Node: {e}"),
                    });
                }
            },
            k if k == "List" || k.ends_with("List") => match v.get("items") {
                Some(serde_json::Value::Array(items)) => {
                    stack.extend(items.iter().rev().cloned());
                }
                Some(serde_json::Value::Null) | None => {}
                Some(_) => {
                    malformed = true;
                    warnings.push(Warning {
                        object: format!("{k} in {source}"),
                        message: "items is not a list".into(),
                    });
                }
            },
            "" => {
                // kubectl writes a List's `kind` last: a List cut short has none.
                malformed = true;
                warnings.push(Warning {
                    object: describe(&v),
                    message: format!("no kind in {source}"),
                });
            }
            _ => warnings.push(Warning {
                object: describe(&v),
                message: format!("unsupported kind {kind:?} in {source}; skipped"),
            }),
        }
    }
    Parsed {
        objects,
        warnings,
        malformed,
        empty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `kubectl get svc,endpointslices -o yaml` writes: the List's kind comes last.
    const KUBECTL: &str = "apiVersion: v1
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: web
    namespace: demo
  spec:
    clusterIP: 10.96.0.10
    ports:
    - name: http
      port: 80
      protocol: TCP
- apiVersion: v1
  kind: Service
  metadata:
    name: dns
    namespace: demo
  spec:
    clusterIP: 10.96.0.11
    ports:
    - name: dns
      port: 53
      protocol: UDP
kind: List
metadata:
  resourceVersion: \"\"
";

    #[test]
    fn a_file_cut_anywhere_is_malformed_or_empty() {
        let whole = parse_document(KUBECTL, "f.yaml");
        assert!(!whole.malformed && !whole.empty, "{:?}", whole.warnings);
        assert_eq!(whole.objects.len(), 2);
        // Every cut short of the List's `kind` line (a line boundary or not) is malformed or
        // empty: never read as a smaller, valid set of Services.
        let kind_at = KUBECTL.find("kind: List").unwrap();
        for cut in 0..kind_at {
            let p = parse_document(&KUBECTL[..cut], "f.yaml");
            assert!(p.malformed || p.empty, "cut at {cut}: {:?}", p.objects);
        }
        let json =
            serde_json::to_string(&yaml_serde::from_str::<serde_json::Value>(KUBECTL).unwrap())
                .unwrap();
        for cut in 0..json.len() {
            let p = parse_document(&json[..cut], "f.json");
            assert!(p.malformed || p.empty, "cut at {cut}");
        }
        assert!(!parse_document(&json, "f.json").malformed);
    }

    #[test]
    fn other_kinds_are_skipped_not_malformed() {
        let p = parse_document(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            "cm.yaml",
        );
        assert!(!p.malformed && !p.empty);
        assert_eq!(p.warnings.len(), 1);
        let p = parse_document("# nothing yet\n\n", "e.yaml");
        assert!(p.empty && !p.malformed);
        let p = parse_document(
            "kind: Service\nmetadata: {name: x}\nspec: {ports: nope}\n",
            "s.yaml",
        );
        assert!(p.malformed);
        let p = parse_document("kind: List\nitems: 3\n", "l.yaml");
        assert!(p.malformed);
    }
}
