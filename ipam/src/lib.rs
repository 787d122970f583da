#![doc = include_str!("../README.md")]

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
