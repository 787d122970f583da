//! Pod-address leases, compatible with the CNI host-local IPAM plugin: its config, its
//! round-robin allocation and its on-disk layout.

mod allocator;
mod config;

#[doc(hidden)]
pub use allocator::parse_lease_file;
pub use allocator::{Allocation, GcReport, PodAllocator, PodLease};
pub use config::{DEFAULT_DATA_DIR, IpamConfig, Range, valid_attachments};
