//! flannel's Kubernetes subnet manager (`--kube-subnet-mgr`): the leases are the Nodes.
//!
//! As flannel's `pkg/subnet/kube`:
//! - this node's subnet is its Node's `spec.podCIDRs` (or `spec.podCIDR`), assigned by the
//!   controller manager; it must lie inside the net-conf's `Network`;
//! - this node publishes its lease attributes as annotations of its Node, patched (strategic
//!   merge) through the `status` subresource: `<prefix>/backend-type`, `<prefix>/backend-data`,
//!   `<prefix>/public-ip` (or the value of `<prefix>/public-ip-overwrite` when an operator set
//!   one) and `<prefix>/kube-subnet-manager: "true"`, with the default prefix
//!   `flannel.alpha.coreos.com`;
//! - every Node annotated `kube-subnet-manager: "true"` is a lease, read through a list/watch
//!   of Nodes ([`crate::kubeapi::Watched`]), which must have synced before the lease is taken;
//! - once the backend is up, the Node's `NetworkUnavailable` condition is set to `False`
//!   (reason `FlannelIsUp`), unless `--set-node-network-unavailable=false`;
//! - leases have no TTL (the Node is the lease), so there is nothing to renew; the network
//!   config comes only from the net-conf file.
//!
//! Dual-stack as flannel: with `EnableIPv6` the Node's IPv6 pod CIDR (the IPv6 one of
//! `spec.podCIDRs`) is the lease's IPv6 subnet and must lie inside `IPv6Network`, and the
//! Node also carries `<prefix>/public-ipv6` (or `<prefix>/public-ipv6-overwrite`) and
//! `<prefix>/backend-v6-data`; with `EnableIPv4: false` only the IPv6 ones.

use super::{AgentError, LeaseEvents, LeaseSource, Stack};
use crate::kubeapi::{Change, Kube, KubeOptions, WatchOptions, Watched};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use podnet_ipam::{Lease, LeaseAttrs, LeaseEvent, LeaseSubnets, NetworkConfig};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// flannel's default `--kube-annotation-prefix`.
pub const DEFAULT_ANNOTATION_PREFIX: &str = "flannel.alpha.coreos.com";

/// The annotation names for a prefix (flannel's `newAnnotations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotations {
    /// `kube-subnet-manager`: `"true"` on Nodes whose annotations are a lease.
    pub subnet_kube_managed: String,
    /// `backend-data`.
    pub backend_data: String,
    /// `backend-v6-data`.
    pub backend_v6_data: String,
    /// `backend-type`.
    pub backend_type: String,
    /// `public-ip`.
    pub public_ip: String,
    /// `public-ipv6`.
    pub public_ipv6: String,
    /// `public-ip-overwrite`: set by an operator, wins over the detected address.
    pub public_ip_overwrite: String,
    /// `public-ipv6-overwrite`: the same for the IPv6 address.
    pub public_ipv6_overwrite: String,
}

impl Annotations {
    /// The names under `prefix`: `example.com` gives `example.com/backend-type`,
    /// `example.com/net` gives `example.com/net-backend-type`. The prefix must be a DNS name
    /// with at most one slash, as flannel checks.
    pub fn new(prefix: &str) -> Result<Annotations, AgentError> {
        let bad = || {
            AgentError::Config(format!(
                "--kube-annotation-prefix {prefix:?}: must be in the format fqdn/[0-9a-z-_]* \
                 (at most one slash)"
            ))
        };
        let mut p = prefix.to_string();
        match p.matches('/').count() {
            0 => p.push('/'),
            1 => {}
            _ => return Err(bad()),
        }
        if !p.ends_with('/') && !p.ends_with('-') {
            p.push('-');
        }
        let (domain, rest) = p.split_once('/').ok_or_else(bad)?;
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        };
        let labels: Vec<&str> = domain.split('.').collect();
        let rest_ok = rest.is_empty()
            || rest
                .strip_suffix('-')
                .is_some_and(|r| !r.is_empty() && label_ok(r));
        if labels.len() < 2 || !labels.iter().all(|l| label_ok(l)) || !rest_ok {
            return Err(bad());
        }
        let n = |s: &str| format!("{p}{s}");
        Ok(Annotations {
            subnet_kube_managed: n("kube-subnet-manager"),
            backend_data: n("backend-data"),
            backend_v6_data: n("backend-v6-data"),
            backend_type: n("backend-type"),
            public_ip: n("public-ip"),
            public_ipv6: n("public-ipv6"),
            public_ip_overwrite: n("public-ip-overwrite"),
            public_ipv6_overwrite: n("public-ipv6-overwrite"),
        })
    }
}

/// The settings of the Kubernetes subnet manager (flanneld's flags).
#[derive(Debug, Clone)]
pub struct KubeSubnetOptions {
    /// `--kube-api-url` and `--kubeconfig-file`.
    pub api: KubeOptions,
    /// `--kube-annotation-prefix`.
    pub annotation_prefix: String,
    /// The Node this agent runs on (`NODE_NAME`, or the node of `POD_NAMESPACE`/`POD_NAME`).
    pub node_name: String,
    /// The net-conf.json text (`--net-config-path`).
    pub net_config: String,
    /// `--set-node-network-unavailable`.
    pub set_node_network_unavailable: bool,
    /// How long to wait for the first list of Nodes (flannel: 10 minutes).
    pub sync_timeout: Duration,
}

/// Finds this node's name as flannel does: `NODE_NAME`, else the `spec.nodeName` of the pod
/// named by `POD_NAMESPACE`/`POD_NAME`.
pub fn node_name_from_env(api: &KubeOptions) -> Result<String, AgentError> {
    if let Ok(n) = std::env::var("NODE_NAME") {
        if !n.is_empty() {
            return Ok(n);
        }
    }
    let (Ok(pod), Ok(ns)) = (std::env::var("POD_NAME"), std::env::var("POD_NAMESPACE")) else {
        return Err(AgentError::Config(
            "env variables POD_NAME and POD_NAMESPACE must be set (or NODE_NAME)".into(),
        ));
    };
    let kube = Kube::connect(api).map_err(|e| AgentError::Kube(e.to_string()))?;
    let pods: Api<Pod> = Api::namespaced(kube.client(), &ns);
    let p = kube
        .runtime()
        .block_on(pods.get(&pod))
        .map_err(|e| AgentError::Kube(format!("retrieving pod {ns}/{pod}: {e}")))?;
    p.spec
        .and_then(|s| s.node_name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| AgentError::Kube(format!("node name not present in pod spec {ns}/{pod}")))
}

/// Leases from Node objects; see the module documentation.
#[derive(Debug)]
pub struct KubeSubnetManager {
    kube: Kube,
    nodes: Watched<Node>,
    annotations: Annotations,
    opts: KubeSubnetOptions,
    config: NetworkConfig,
}

fn kube_err(e: impl std::fmt::Display) -> AgentError {
    AgentError::Kube(e.to_string())
}

/// The IPv4 pod CIDR of a Node: `spec.podCIDRs` (at most two, one per family), else
/// `spec.podCIDR`.
pub fn node_ipv4_cidr(n: &Node) -> Result<Option<Ipv4Net>, String> {
    node_cidrs(n).map(|(v4, _)| v4)
}

/// The IPv4 and IPv6 pod CIDRs of a Node: from `spec.podCIDRs` (at most two, one per family),
/// else `spec.podCIDR`.
pub fn node_cidrs(n: &Node) -> Result<(Option<Ipv4Net>, Option<Ipv6Net>), String> {
    let name = n.metadata.name.as_deref().unwrap_or("");
    let spec = n.spec.as_ref();
    let cidrs: Vec<String> = match spec.and_then(|s| s.pod_cidrs.clone()) {
        Some(c) if !c.is_empty() => c,
        _ => spec.and_then(|s| s.pod_cidr.clone()).into_iter().collect(),
    };
    if cidrs.len() > 2 {
        return Err(format!(
            "node {name:?} pod cidrs should be IPv4/IPv6 only or dualstack"
        ));
    }
    let (mut v4, mut v6) = (None, None);
    for c in cidrs {
        match c.parse::<IpNet>() {
            Ok(IpNet::V4(n)) => v4 = v4.or(Some(n.trunc())),
            Ok(IpNet::V6(n)) => v6 = v6.or(Some(n.trunc())),
            Err(e) => return Err(format!("node {name:?} pod CIDR {c:?}: {e}")),
        }
    }
    Ok((v4, v6))
}

impl KubeSubnetManager {
    /// Connects, starts the Node watch and waits until it has synced.
    pub fn connect(opts: KubeSubnetOptions) -> Result<KubeSubnetManager, AgentError> {
        let annotations = Annotations::new(&opts.annotation_prefix)?;
        let config = NetworkConfig::parse(&opts.net_config)
            .map_err(|e| AgentError::Config(format!("error parsing subnet config: {e}")))?;
        let kube = Kube::connect(&opts.api).map_err(kube_err)?;
        let nodes = kube.watch(Api::<Node>::all(kube.client()), WatchOptions::default());
        tracing::info!(timeout = ?opts.sync_timeout, "waiting for the node controller to sync");
        if !nodes.wait_synced(opts.sync_timeout) {
            let last = nodes.stats().last_error.unwrap_or_default();
            return Err(AgentError::Kube(format!(
                "error waiting for the Node list/watch to sync (last error: {last})"
            )));
        }
        tracing::info!("node controller sync successful");
        Ok(KubeSubnetManager {
            kube,
            nodes,
            annotations,
            opts,
            config,
        })
    }

    /// The lease a Node's annotations describe; `None` for Nodes not managed by a flannel in
    /// kube mode.
    pub fn node_to_lease(&self, n: &Node) -> Option<Lease> {
        let stack = Stack::of(self.config.enable_ipv4, self.config.enable_ipv6);
        node_to_lease_for(&self.annotations, n, stack)
    }
}

/// The lease a Node's annotations describe (flannel's `nodeToLease`) on an IPv4 network;
/// `None` for Nodes not annotated `kube-subnet-manager: "true"` or without a usable IPv4 pod
/// CIDR and public IP.
pub fn node_to_lease(a: &Annotations, n: &Node) -> Option<Lease> {
    node_to_lease_for(a, n, Stack::V4)
}

/// The lease a Node's annotations describe on a network of `stack`: each family the network
/// uses needs its pod CIDR and public address (`public-ip`, `public-ipv6`), as flannel's
/// `nodeToLease`; `None` when one is missing.
pub fn node_to_lease_for(a: &Annotations, n: &Node, stack: Stack) -> Option<Lease> {
    let ann = n.metadata.annotations.as_ref()?;
    if ann.get(&a.subnet_kube_managed).map(String::as_str) != Some("true") {
        return None;
    }
    let name = n.metadata.name.as_deref().unwrap_or("");
    let skip = |why: String| {
        tracing::info!(node = name, "error turning node to lease: {why}");
    };
    let (v4_cidr, v6_cidr) = match node_cidrs(n) {
        Ok(c) => c,
        Err(e) => {
            skip(e);
            return None;
        }
    };
    let (want_v4, want_v6) = (stack != Stack::V6, stack != Stack::V4);
    let mut subnets = LeaseSubnets {
        ipv4: None,
        ipv6: None,
    };
    let mut public_ip = Ipv4Addr::UNSPECIFIED;
    if want_v4 {
        public_ip = match ann.get(&a.public_ip).map(|s| s.parse()) {
            Some(Ok(ip)) => ip,
            _ => {
                skip("no valid public-ip annotation".into());
                return None;
            }
        };
        subnets.ipv4 = Some(v4_cidr?);
    }
    let mut attrs = LeaseAttrs::new(
        public_ip,
        ann.get(&a.backend_type).cloned().unwrap_or_default(),
    );
    if want_v4 {
        if let Some(d) = ann.get(&a.backend_data).filter(|d| !d.is_empty()) {
            match attrs.clone().with_backend_data(d) {
                Ok(with) => attrs = with,
                Err(e) => {
                    skip(format!("backend-data: {e}"));
                    return None;
                }
            }
        }
    }
    if want_v6 {
        let ip: Ipv6Addr = match ann.get(&a.public_ipv6).map(|s| s.parse()) {
            Some(Ok(ip)) => ip,
            _ => {
                skip("no valid public-ipv6 annotation".into());
                return None;
            }
        };
        attrs.public_ipv6 = Some(ip);
        let Some(v6) = v6_cidr else {
            skip("missing IPv6 address on spec.podCIDRs".into());
            return None;
        };
        subnets.ipv6 = Some(v6);
        if let Some(d) = ann.get(&a.backend_v6_data).filter(|d| !d.is_empty()) {
            match attrs.clone().with_backend_v6_data(d) {
                Ok(with) => attrs = with,
                Err(e) => {
                    skip(format!("backend-v6-data: {e}"));
                    return None;
                }
            }
        }
    }
    Some(Lease {
        subnets,
        attrs,
        expiration: None,
        revision: n
            .metadata
            .resource_version
            .as_deref()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
    })
}

impl LeaseSource for KubeSubnetManager {
    fn network_config(&self) -> Result<NetworkConfig, AgentError> {
        Ok(self.config.clone())
    }

    fn put_network_config(&self, _text: &str) -> Result<(), AgentError> {
        // In kube mode the config is the file; there is nothing to store.
        Ok(())
    }

    fn acquire(
        &self,
        attrs: &LeaseAttrs,
        _previous: Option<LeaseSubnets>,
    ) -> Result<Lease, AgentError> {
        let name = &self.opts.node_name;
        let node = self.kube.get_node(name).map_err(kube_err)?;
        let (v4_cidr, v6_cidr) = node_cidrs(&node).map_err(AgentError::Kube)?;
        if v4_cidr.is_none() && v6_cidr.is_none() {
            return Err(AgentError::Kube(format!(
                "node {name:?} pod cidr not assigned"
            )));
        }
        let mut subnets = LeaseSubnets {
            ipv4: None,
            ipv6: None,
        };
        if self.config.enable_ipv4 {
            let subnet = v4_cidr.ok_or_else(|| {
                AgentError::Kube(format!("node {name:?}: no IPv4 pod cidr assigned"))
            })?;
            if let Some(network) = self.config.network {
                if !network.contains(&subnet) {
                    return Err(AgentError::Config(format!(
                        "subnet {network} specified in the flannel net config doesn't contain \
                         {subnet} PodCIDR of the {name:?} node"
                    )));
                }
            }
            subnets.ipv4 = Some(subnet);
        }
        if self.config.enable_ipv6 {
            let subnet = v6_cidr.ok_or_else(|| {
                AgentError::Kube(format!(
                    "node {name:?}: no IPv6 pod cidr in spec.podCIDRs, but EnableIPv6 is set"
                ))
            })?;
            let inside = self
                .config
                .ipv6_network
                .is_some_and(|n| n.contains(&subnet));
            if !inside {
                return Err(AgentError::Config(format!(
                    "subnet {} specified in the flannel net config doesn't contain {subnet} \
                     IPv6 PodCIDR of the {name:?} node",
                    self.config
                        .ipv6_network
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                )));
            }
            subnets.ipv6 = Some(subnet);
        }
        let a = &self.annotations;
        let ann = node.metadata.annotations.clone().unwrap_or_default();
        let bd = attrs
            .backend_data
            .as_ref()
            .map(|d| d.get().to_string())
            .unwrap_or_else(|| "null".into());
        let overwrite = ann
            .get(&a.public_ip_overwrite)
            .filter(|o| !o.is_empty())
            .cloned();
        let mut public_ip = attrs.public_ip;
        let mut public_ipv6 = attrs.public_ipv6;
        let mut want: BTreeMap<String, String> = BTreeMap::new();
        want.insert(a.backend_type.clone(), attrs.backend_type.clone());
        // flannel leaves a vxlan node's backend-data alone while it has none (an IPv6-only
        // vxlan node has none; an IPv6-only host-gw node writes "null" and 0.0.0.0, as flannel).
        if attrs.backend_type != "vxlan" || bd != "null" {
            want.insert(a.backend_data.clone(), bd.clone());
            let ip = match &overwrite {
                Some(o) => {
                    tracing::info!(
                        "overriding public ip with {o:?} from node annotation {:?}",
                        a.public_ip_overwrite
                    );
                    public_ip = o.parse().map_err(|e| {
                        AgentError::Config(format!("{}: {o:?}: {e}", a.public_ip_overwrite))
                    })?;
                    o.clone()
                }
                None => attrs.public_ip.to_string(),
            };
            want.insert(a.public_ip.clone(), ip);
        }
        // The IPv6 side, as flannel writes it for vxlan (with v6 data) and host-gw.
        let v6bd = attrs
            .backend_v6_data
            .as_ref()
            .map(|d| d.get().to_string())
            .unwrap_or_else(|| "null".into());
        if let Some(v6) = attrs.public_ipv6.filter(|_| self.config.enable_ipv6) {
            if (attrs.backend_type == "vxlan" && v6bd != "null") || attrs.backend_type == "host-gw"
            {
                want.insert(a.backend_v6_data.clone(), v6bd.clone());
                let overwrite6 = ann
                    .get(&a.public_ipv6_overwrite)
                    .filter(|o| !o.is_empty())
                    .cloned();
                let ip = match overwrite6 {
                    Some(o) => {
                        tracing::info!(
                            "overriding public ipv6 with {o:?} from node annotation {:?}",
                            a.public_ipv6_overwrite
                        );
                        public_ipv6 = Some(o.parse().map_err(|e| {
                            AgentError::Config(format!("{}: {o:?}: {e}", a.public_ipv6_overwrite))
                        })?);
                        o
                    }
                    None => v6.to_string(),
                };
                want.insert(a.public_ipv6.clone(), ip);
            }
        }
        want.insert(a.subnet_kube_managed.clone(), "true".into());
        let changes: serde_json::Map<String, serde_json::Value> = want
            .into_iter()
            .filter(|(k, v)| ann.get(k) != Some(v))
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        if !changes.is_empty() {
            let patch = serde_json::json!({"metadata": {"annotations": changes}});
            self.kube
                .patch_node_status(name, &patch)
                .map_err(|e| AgentError::Kube(format!("annotating node {name:?}: {e}")))?;
            tracing::info!(node = %name, %subnets, "node annotated with this node's lease");
        }
        let mut attrs = attrs.clone();
        attrs.public_ip = public_ip;
        attrs.public_ipv6 = public_ipv6;
        Ok(Lease {
            subnets,
            attrs,
            expiration: None,
            revision: 0,
        })
    }

    fn leases(&self) -> Result<Vec<Lease>, AgentError> {
        Ok(self
            .nodes
            .snapshot()
            .iter()
            .filter_map(|n| self.node_to_lease(n))
            .collect())
    }

    fn watch(&self) -> Result<Box<dyn LeaseEvents + '_>, AgentError> {
        // The snapshot covers what is queued; later changes come as events (one that lands
        // in both is no event, as it equals what is known).
        self.nodes.drain_changes();
        let known: BTreeMap<String, Lease> = self
            .nodes
            .snapshot()
            .iter()
            .filter_map(|n| Some((n.metadata.name.clone()?, self.node_to_lease(n)?)))
            .collect();
        let first = LeaseEvent::Snapshot(known.values().cloned().collect());
        Ok(Box::new(NodeLeaseEvents {
            manager: self,
            known,
            pending: vec![first],
        }))
    }

    fn renew(&self, lease: &mut Lease) -> Result<(), AgentError> {
        // The Node's annotations went away: publish them again.
        let fresh = self.acquire(&lease.attrs, Some(lease.subnets))?;
        if fresh.subnets != lease.subnets {
            return Err(AgentError::Lease(podnet_ipam::LeaseError::Lost {
                key: format!("node {} podCIDR", self.opts.node_name),
            }));
        }
        Ok(())
    }

    fn renew_if_due(&self, _lease: &mut Lease) -> Result<bool, AgentError> {
        // Nodes are leases without a TTL (flannel's RenewLease is unimplemented in kube mode).
        Ok(false)
    }

    fn started(&self, _lease: &Lease) -> Result<(), AgentError> {
        if !self.opts.set_node_network_unavailable {
            return Ok(());
        }
        let now = chrono_now();
        let patch = serde_json::json!({"status": {"conditions": [{
            "type": "NetworkUnavailable", "status": "False", "reason": "FlannelIsUp",
            "message": "Flannel is running on this node",
            "lastTransitionTime": now, "lastHeartbeatTime": now,
        }]}});
        self.kube
            .patch_node_status(&self.opts.node_name, &patch)
            .map_err(kube_err)?;
        Ok(())
    }
}

/// The current time as RFC 3339 in UTC, seconds, as Kubernetes writes timestamps.
fn chrono_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (the civil-from-days algorithm).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

struct NodeLeaseEvents<'a> {
    manager: &'a KubeSubnetManager,
    known: BTreeMap<String, Lease>,
    pending: Vec<LeaseEvent>,
}

impl NodeLeaseEvents<'_> {
    fn update(&mut self, name: String, lease: Option<Lease>) {
        match (self.known.get(&name), lease) {
            (None, None) => {}
            (Some(old), None) => {
                self.pending.push(LeaseEvent::Removed(old.clone()));
                self.known.remove(&name);
            }
            (None, Some(new)) => {
                self.pending.push(LeaseEvent::Added(new.clone()));
                self.known.insert(name, new);
            }
            (Some(old), Some(new)) => {
                if old.subnets != new.subnets || old.attrs != new.attrs {
                    if old.subnets != new.subnets {
                        self.pending.push(LeaseEvent::Removed(old.clone()));
                    }
                    self.pending.push(LeaseEvent::Changed(new.clone()));
                }
                self.known.insert(name, new);
            }
        }
    }
}

impl LeaseEvents for NodeLeaseEvents<'_> {
    fn next(&mut self, timeout: Duration) -> Result<Option<LeaseEvent>, AgentError> {
        if self.pending.is_empty() {
            match self.manager.nodes.next(timeout) {
                None => {}
                Some(Change::Synced(all)) => {
                    let fresh: BTreeMap<String, Lease> = all
                        .iter()
                        .filter_map(|n| {
                            Some((n.metadata.name.clone()?, self.manager.node_to_lease(n)?))
                        })
                        .collect();
                    self.known = fresh;
                    self.pending
                        .push(LeaseEvent::Snapshot(self.known.values().cloned().collect()));
                }
                Some(Change::Applied(n)) => {
                    let lease = self.manager.node_to_lease(&n);
                    self.update(n.metadata.name.clone().unwrap_or_default(), lease);
                }
                Some(Change::Deleted(n)) => {
                    self.update(n.metadata.name.clone().unwrap_or_default(), None);
                }
            }
        }
        if self.pending.is_empty() {
            Ok(None)
        } else {
            Ok(Some(self.pending.remove(0)))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
