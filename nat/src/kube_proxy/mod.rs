//! kube-proxy's proxy modes: the node settings every mode shares, one compiler per mode, and
//! the iptables-mode syncer and `--cleanup`.
//!
//! Each compiler writes out the [`crate::kube::plan`] of every service port, so the three
//! modes agree on what a Service needs and differ only in how they say it:
//!
//! - [`iptables_mode`]: the `filter` and `nat` rules of kube-proxy's iptables mode (as the
//!   [`crate::iptables`] rule model), applied by [`iptables_sync`];
//! - [`nftables_mode`]: table `kube-proxy`, applied by [`crate::nftables::sync`]; its
//!   opt-in maps layout, whose endpoint changes are element updates only, in
//!   [`nftables_maps`];
//! - [`ipvs_mode`]: IPVS virtual services, ipsets and the iptables rules ipvs mode keeps,
//!   applied by [`crate::ipvs::sync`];
//! - [`cleanup`]: what a mode leaves in iptables, removed.

pub mod cleanup;
pub mod iptables_mode;
pub mod iptables_sync;
pub mod ipvs_mode;
pub mod nftables_maps;
pub mod nftables_mode;
mod settings;

pub use settings::{LocalDetector, MasqueradeMark, NodeSettings};
