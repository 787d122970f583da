#![doc = include_str!("../README.md")]
//!
//! # Handles
//!
//! podnet's one handle convention (the top README's "Architecture"): [`FileStore::open`]
//! opens a store directory that may already exist, `EtcdStore::connect` makes a client
//! of an etcd server, [`PodAllocator::open`] opens host-local's files. A [`Store`] is shared
//! and takes `&self`; its verbs are `add`, `del`, `replace` (unconditional, idempotent),
//! `replace_if` (compare-and-swap), `list`, `get` (the earlier `create`, `update`, `put` and
//! `delete` stay as hidden aliases). [`SubnetManager`] keeps flannel's lease words
//! (`acquire`, `renew`, `reserve`, `release`): they are lease operations, not one key's.

mod config;
mod error;
mod json;
mod lease;
mod manager;
mod pod;
mod store;
mod subnet_env;
mod sys;
mod time;

pub use config::NetworkConfig;
pub use error::{AllocError, ConfigError, LeaseError, StoreError, SubnetEnvError};
pub use lease::{AttrsError, DEFAULT_PREFIX, Lease, LeaseAttrs, LeaseSubnets};
pub use manager::{LeaseEvent, LeaseWatch, ManagerOptions, SubnetManager};
pub use pod::{
    Allocation, DEFAULT_DATA_DIR, GcReport, IpamConfig, PodAllocator, PodLease, Range,
    valid_attachments,
};
#[cfg(feature = "etcd")]
pub use store::{EtcdConfig, EtcdError, EtcdStore, EtcdTls};
pub use store::{FileStore, FileStoreOptions, KeyValue, Listing, Store, StoreEvent, StoreWatch};
pub use subnet_env::SubnetEnv;

#[doc(hidden)]
pub use pod::parse_lease_file;
