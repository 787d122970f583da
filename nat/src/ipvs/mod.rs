//! IPVS over generic netlink, and kube-proxy's ipvs mode.
//!
//! - [`Ipvs`]: a client of the kernel's "IPVS" generic netlink family, bound to one network
//!   namespace: virtual services and their destinations added, edited, deleted and listed;
//!   schedulers `rr`, `wrr`, `lc`, `wlc`, `sh`, `dh`, `sed`, `nq`, `mh` (and any other by
//!   name); persistence timeout and netmask; service flags; connection timeouts. Errors are
//!   [`IpvsError`]s that keep the errno and say what was asked.
//! - [`wire`]: the messages themselves, encoded and decoded without panics.
//! - [`diff`]: what a partial ipvs-mode sync writes, computed without I/O.
//! - [`ipset`]: the ipsets of kube-proxy's ipvs mode (as `ipset restore` input), and
//!   [`sync::IpvsSyncer`], which applies what [`crate::kube_proxy::ipvs_mode`] compiles from
//!   the service model (virtual services and destinations, the `kube-ipvs0` addresses, the
//!   ipsets and the iptables rules ipvs mode keeps) inside a network namespace and keeps them
//!   in step.
//!
//! The kernel must have `ip_vs` (and `ip_vs_<scheduler>` for each scheduler used); without
//! it [`Ipvs::new`] fails with [`IpvsError::NotAvailable`].

mod attr;
mod client;
pub mod diff;
pub mod ipset;
pub mod sync;
mod types;
pub mod wire;

pub use client::{Ipvs, IpvsError, IpvsObject};
#[doc(hidden)]
pub use client::{ReplyDatagram, parse_family_reply, parse_reply_datagram};
pub use types::{
    Destination, DestinationEntry, ForwardMethod, Info, Scheduler, ServiceEntry, ServiceFlags,
    ServiceId, Timeouts, VirtualService,
};
pub use wire::Stats;
