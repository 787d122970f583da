//! podnet's example programs, as a library so that their tests can drive them:
//!
//! - [`flannel`]: a flannel-compatible node agent (`flanneld`), with the vxlan, host-gw and udp
//!   backends, on the embedded store or on etcd.
//! - [`cluster`]: `podnet-cluster`, which builds a simulated cluster of nodes and pods in
//!   network namespaces, runs flanneld on every node, checks real traffic and tears it down.
//! - [`proxy`]: `kube-proxy`, a service proxy fed by Service and EndpointSlice files.
//! - [`cni`]: `podnet-cni`, a CNI 1.1 bridge plugin with host-local-compatible IPAM.
//! - [`explain`]: `podnet-cluster explain`, the path a packet takes, predicted from live kernel
//!   state and confirmed by a traced probe.
//! - [`http`]: the daemons' small HTTP server (health checks, metrics).
//! - `kubeapi` (feature `kube`, on by default): the Kubernetes API client (kube-rs) and its
//!   list/watch cache.
//!
//! # Handles
//!
//! The programs open every kernel handle through the libraries, by podnet's one handle
//! convention (the top README's "Architecture"): `Handle::in_ns(&ns)` for a node or pod
//! namespace, `&self` on shared handles, `&mut self` on one-owner sockets, and the verbs
//! add/del/replace/list/get.

pub mod cluster;
pub mod cni;
pub mod explain;
pub mod flannel;
pub mod http;
#[cfg(feature = "kube")]
pub mod kubeapi;
pub mod proxy;
