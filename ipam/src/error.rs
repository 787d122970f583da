//! Error types. Each names what was asked: the config field, the store key, the file.

use std::io;
use std::path::PathBuf;

/// A network or IPAM configuration that cannot be used; names the field at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The document is not JSON (or not a JSON object).
    #[error("config is not a JSON object: {source}")]
    NotJson {
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A required field is absent.
    #[error("{field}: required but missing")]
    Missing {
        /// The field's name as it is spelled in the config.
        field: &'static str,
    },
    /// A field is present but its value cannot be used.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field's name as it is spelled in the config.
        field: &'static str,
        /// Why the value cannot be used.
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// A key-value store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file of the file store could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A file of the file store holds something this crate did not write.
    #[error("{path}: corrupt store file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The watch's start revision is older than the store's history: re-list and watch again.
    #[error("revision {requested} has been compacted (history starts after {compacted})")]
    Compacted {
        /// The revision the watch wanted to start from.
        requested: u64,
        /// The newest compacted revision.
        compacted: u64,
    },
    /// An etcd request failed.
    #[cfg(feature = "etcd")]
    #[error("etcd {op} {key}: {source}")]
    Etcd {
        /// The operation (get, put, txn, watch, ...).
        op: &'static str,
        /// The key or prefix it was about.
        key: String,
        /// What etcd or the connection said.
        #[source]
        source: crate::store::EtcdError,
    },
    /// The etcd client's runtime or connection could not be set up, or the watch ended.
    #[error("{0}")]
    Backend(String),
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Acquiring, renewing or watching node-subnet leases failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The network config under `<prefix>/config` is not usable.
    #[error("network config at {key}: {source}")]
    Config {
        /// The config's key.
        key: String,
        /// What is wrong with it.
        #[source]
        source: ConfigError,
    },
    /// There is no network config under `<prefix>/config`.
    #[error("no network config at {key}")]
    ConfigNotFound {
        /// The key that was read.
        key: String,
    },
    /// Every subnet in [SubnetMin, SubnetMax] is leased.
    #[error("network full: no free /{subnet_len} left in {network}")]
    NetworkFull {
        /// The network (IPv4 or IPv6) that has no room left.
        network: String,
        /// The subnet length that was asked for.
        subnet_len: u8,
    },
    /// Other nodes took every subnet this node tried, again and again.
    #[error("lost the race for a subnet {attempts} times in a row")]
    RaceRetriesExhausted {
        /// How many attempts were made.
        attempts: u32,
    },
    /// The lease was taken by another node (or deleted and re-leased) before it could be renewed.
    #[error("lease {key} now belongs to another node")]
    Lost {
        /// The lease's key.
        key: String,
    },
    /// A lease needs at least one subnet (IPv4 or IPv6).
    #[error("lease has neither an IPv4 nor an IPv6 subnet")]
    Empty,
}

/// Allocating or releasing pod addresses failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AllocError {
    /// The IPAM config is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file of the data directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Every address of a range set is taken.
    #[error("no IP addresses available in range set {index}: {ranges}")]
    Exhausted {
        /// The range set's index in `ranges`.
        index: usize,
        /// The range set, as host-local prints it.
        ranges: String,
    },
    /// A requested address is outside every range set, is a gateway, excluded, or taken.
    #[error("requested IP address {ip} is not available: {reason}")]
    Unavailable {
        /// The address that was asked for.
        ip: std::net::IpAddr,
        /// Why it cannot be had.
        reason: String,
    },
    /// The container id or interface name cannot be stored in a lease file.
    #[error("{field}: {reason}")]
    BadArgument {
        /// `container_id` or `ifname`.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
}

impl AllocError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        AllocError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Reading or writing subnet.env failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubnetEnvError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A line holds a value that cannot be parsed.
    #[error("{path}: {key}={value}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The variable, e.g. `FLANNEL_SUBNET`.
        key: String,
        /// Its value.
        value: String,
        /// Why it cannot be parsed.
        reason: String,
    },
}
