//! podnet's example programs, as a library so that their tests can drive them:
//!
//! - [`flannel`]: a flannel-compatible node agent (`flanneld`), with the vxlan, host-gw and udp
//!   backends, on the embedded store or on etcd.
//! - [`cluster`]: `podnet-cluster`, which builds a simulated cluster of nodes and pods in
//!   network namespaces, runs flanneld on every node, checks real traffic and tears it down.

pub mod cluster;
pub mod flannel;
