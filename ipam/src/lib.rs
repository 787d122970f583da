//! podnet-ipam: who gets which addresses.
//!
//! Two kinds of leases, both compatible with what clusters already run:
//!
//! - **Node subnets**, in flannel's etcd schema ([`SubnetManager`]): a node acquires a subnet
//!   of the cluster network ([`NetworkConfig`], flannel's `net-conf.json`), renews it before
//!   its TTL runs out and watches the other nodes' leases. Keys, values and `subnet.env`
//!   ([`SubnetEnv`]) are byte-compatible with flannel, so podnet and flannel nodes can share
//!   one etcd.
//! - **Pod addresses**, in CNI host-local's on-disk layout ([`PodAllocator`]): one file per
//!   address, round-robin allocation, the same lock file, so a node can switch between
//!   host-local and podnet without losing leases.
//!
//! Node-subnet leases live in a [`Store`]: the embedded [`FileStore`] (a directory) or, with
//! feature `etcd`, `EtcdStore` (etcd v3). Everything is synchronous.
//!
//! ```
//! use podnet_ipam::{FileStore, LeaseAttrs, SubnetManager, SubnetEnv};
//! let dir = tempfile::tempdir()?;
//! let sm = SubnetManager::new(FileStore::open(dir.path().join("store"))?);
//! let config = sm.put_network_config(r#"{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}}"#)?;
//! let attrs = LeaseAttrs::new("198.18.0.1".parse()?, "vxlan").with_backend_data(r#"{"VNI":1}"#)?;
//! let lease = sm.acquire(&attrs, None)?;
//! SubnetEnv::from_lease(&config, &lease, 1450, true).write(dir.path().join("subnet.env"))?;
//! println!("got {} until {:?}", lease.subnets, lease.expiration);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![doc = ""]
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

pub use config::NetworkConfig;
pub use error::{AllocError, ConfigError, LeaseError, StoreError, SubnetEnvError};
pub use lease::{AttrsError, DEFAULT_PREFIX, Lease, LeaseAttrs, LeaseSubnets};
pub use manager::{LeaseEvent, LeaseWatch, ManagerOptions, SubnetManager};
pub use pod::{Allocation, DEFAULT_DATA_DIR, GcReport, IpamConfig, PodAllocator, PodLease, Range};
#[cfg(feature = "etcd")]
pub use store::EtcdStore;
pub use store::{FileStore, FileStoreOptions, KeyValue, Listing, Store, StoreEvent, StoreWatch};
pub use subnet_env::SubnetEnv;
