//! kube-proxy's input from the API server (`--kubeconfig` / `--master`, or the in-cluster
//! config): list/watch caches ([`crate::kubeapi::Watched`], client-go reflector semantics:
//! initial list, watch from its resourceVersion, bookmarks, relist on 410 Gone, backoff on
//! errors) of Services, discovery.k8s.io/v1 EndpointSlices, this node's Node (by
//! `metadata.name`) and networking.k8s.io/v1 ServiceCIDRs.
//!
//! As upstream, nothing is synced before every first list is complete
//! ([`Input::synced`](super::input::Input::synced) says which is still missing, and
//! `/healthz` answers 503 with it). An API server without ServiceCIDRs (404 on their list:
//! older than 1.33, or the feature off) is tolerated: they are not watched, and
//! `--service-cluster-ip-range` stands. The proxy-name and headless labels are filtered on
//! this side ([`super::input::filter_objects`]), with the effect of upstream's
//! `!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless` selector.

use super::input::{Input, InputRead, filter_objects};
use crate::kubeapi::{Kube, KubeError, KubeOptions, WatchOptions, Watched};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::api::{Api, ListParams};
use podnet_nat::kube::{KubeObject, Warning};
use serde::Serialize;
use std::sync::mpsc;
use std::time::Duration;

/// The API server as kube-proxy's input.
pub struct KubeInput {
    services: Watched<Service>,
    slices: Watched<EndpointSlice>,
    node: Watched<Node>,
    /// `None`: the API server has no ServiceCIDRs.
    cidrs: Option<Watched<ServiceCIDR>>,
    wake: mpsc::Receiver<()>,
    node_name: String,
    // Last: the watchers' tasks are aborted (when they drop) before the runtime goes.
    _kube: Kube,
}

impl std::fmt::Debug for KubeInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeInput")
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

impl KubeInput {
    /// Connects (no request yet but the ServiceCIDR probe) and starts the watches; the caches
    /// fill in the background, with retries and backoff while the server cannot be reached.
    pub fn start(api: &KubeOptions, node_name: &str) -> Result<KubeInput, KubeError> {
        let kube = Kube::connect(api)?;
        let (tx, wake) = mpsc::channel();
        let opts = |fields: Option<String>| WatchOptions {
            fields,
            wake: Some(tx.clone()),
            ..WatchOptions::default()
        };
        let client = kube.client();
        let cidr_api: Api<ServiceCIDR> = Api::all(client.clone());
        let cidrs = match kube
            .runtime()
            .block_on(cidr_api.list(&ListParams::default().limit(1)))
        {
            Err(kube::Error::Api(e)) if e.code == 404 => {
                tracing::info!(
                    "the API server has no networking.k8s.io/v1 ServiceCIDRs; \
                     --service-cluster-ip-range stands"
                );
                None
            }
            // Listed, or another error (the watcher retries it with backoff).
            _ => Some(kube.watch(cidr_api, opts(None))),
        };
        Ok(KubeInput {
            services: kube.watch(Api::all(client.clone()), opts(None)),
            slices: kube.watch(Api::all(client.clone()), opts(None)),
            node: kube.watch(
                Api::all(client),
                opts(Some(format!("metadata.name={node_name}"))),
            ),
            cidrs,
            wake,
            node_name: node_name.to_owned(),
            _kube: kube,
        })
    }

    /// Drops the queued changes of every cache (their snapshots are what is read).
    fn drain(&self) {
        self.services.drain_changes();
        self.slices.drain_changes();
        self.node.drain_changes();
        if let Some(c) = &self.cidrs {
            c.drain_changes();
        }
    }
}

/// `o` as podnet-nat's object of kind `K` (k8s-openapi writes `apiVersion` and `kind`).
fn convert<T: Serialize, K: serde::de::DeserializeOwned>(
    o: &T,
    what: &str,
    warnings: &mut Vec<Warning>,
) -> Option<K> {
    let v = match serde_json::to_value(o) {
        Ok(v) => v,
        Err(e) => {
            warnings.push(Warning {
                object: what.to_owned(),
                message: e.to_string(),
            });
            return None;
        }
    };
    let name = |v: &serde_json::Value, f: &str| {
        v.pointer(&format!("/metadata/{f}"))
            .and_then(|s| s.as_str())
            .unwrap_or("")
            .to_owned()
    };
    let object = format!("{what} {}/{}", name(&v, "namespace"), name(&v, "name"));
    match serde_json::from_value(v) {
        Ok(k) => Some(k),
        Err(e) => {
            warnings.push(Warning {
                object,
                message: format!("malformed: {e}; skipped"),
            });
            None
        }
    }
}

impl Input for KubeInput {
    fn wait(&mut self, timeout: Duration) -> bool {
        let changed = match self.wake.recv_timeout(timeout) {
            Ok(()) => true,
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            // Every watcher is gone (cannot happen while they are held): nothing to wait for.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(timeout);
                false
            }
        };
        while self.wake.try_recv().is_ok() {}
        self.drain();
        changed
    }

    fn read(&mut self) -> InputRead {
        let mut warnings = Vec::new();
        let mut objects = Vec::new();
        for s in self.services.snapshot() {
            if let Some(o) = convert(&s, "Service", &mut warnings) {
                objects.push(KubeObject::Service(o));
            }
        }
        for s in self.slices.snapshot() {
            if let Some(o) = convert(&s, "EndpointSlice", &mut warnings) {
                objects.push(KubeObject::EndpointSlice(o));
            }
        }
        for n in self.node.snapshot() {
            if let Some(o) = convert(&n, "Node", &mut warnings) {
                objects.push(KubeObject::Node(o));
            }
        }
        InputRead {
            objects: filter_objects(objects),
            warnings,
        }
    }

    fn synced(&self) -> Result<(), String> {
        let mut missing = Vec::new();
        let mut check = |synced: bool, what: &str, err: Option<String>| {
            if !synced {
                missing.push(match err {
                    Some(e) => format!("{what} ({e})"),
                    None => what.to_owned(),
                });
            }
        };
        check(
            self.services.is_synced(),
            "Services",
            self.services.stats().last_error,
        );
        check(
            self.slices.is_synced(),
            "EndpointSlices",
            self.slices.stats().last_error,
        );
        check(
            self.node.is_synced(),
            &format!("Node {}", self.node_name),
            self.node.stats().last_error,
        );
        if let Some(c) = &self.cidrs {
            check(c.is_synced(), "ServiceCIDRs", c.stats().last_error);
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "waiting for the first list of {} from the API server",
                missing.join(", ")
            ))
        }
    }

    fn service_cidrs(&self) -> Option<Vec<ipnet::IpNet>> {
        let c = self.cidrs.as_ref()?;
        let mut out = Vec::new();
        for sc in c.snapshot() {
            for text in sc.spec.iter().flat_map(|s| s.cidrs.iter().flatten()) {
                match podnet_nat::kube::parse_cidr_sloppy(text) {
                    Some(net) => out.push(net),
                    None => tracing::warn!(
                        "ServiceCIDR {}: invalid CIDR {text:?}; skipped",
                        sc.metadata.name.as_deref().unwrap_or("")
                    ),
                }
            }
        }
        out.sort();
        out.dedup();
        Some(out)
    }
}
