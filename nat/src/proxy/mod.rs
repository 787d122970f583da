//! Service proxies: node settings shared by every mode, and the kube-proxy iptables-mode
//! compiler and syncer.

pub mod cleanup;
pub mod iptables;
mod settings;
pub mod sync;

pub use settings::{LocalDetector, MasqueradeMark, NodeSettings};
