//! The error type of podnet-netns.

use std::io;
use std::path::PathBuf;

/// Errors returned by namespace operations.
///
/// Every variant says what was asked (a name, a path or a sysctl key) and, where the kernel
/// answered, keeps its errno in the `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetNsError {
    /// The named namespace (or namespace file) does not exist.
    #[error("network namespace {name:?} not found")]
    NotFound {
        /// The name or path that was asked for.
        name: String,
    },
    /// A namespace with this name already exists.
    #[error("network namespace {name:?} already exists")]
    Exists {
        /// The name that was asked for.
        name: String,
    },
    /// The caller lacks the privilege (CAP_SYS_ADMIN) for the operation.
    #[error("permission denied: {op} needs CAP_SYS_ADMIN (run as root)")]
    PermissionDenied {
        /// The operation that was refused.
        op: &'static str,
        /// The underlying error, with its errno.
        #[source]
        source: io::Error,
    },
    /// The name cannot be a namespace name; nothing was asked of the kernel.
    #[error("invalid network namespace name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A sysctl key is malformed or does not exist in the namespace.
    #[error("sysctl {key}: {source}")]
    Sysctl {
        /// The key as given, e.g. `net.ipv4.ip_forward`.
        key: String,
        /// The underlying error, with its errno.
        #[source]
        source: io::Error,
    },
    /// The closure given to [`NetNs::run`](crate::NetNs::run) panicked.
    #[error("closure run in network namespace panicked: {message}")]
    Panicked {
        /// The panic message, when it was a string.
        message: String,
    },
    /// Any other system call failure.
    #[error("{op}{}: {source}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Io {
        /// The operation that failed (`"mount"`, `"setns"`, ...).
        op: &'static str,
        /// The file involved, if any.
        path: Option<PathBuf>,
        /// The underlying error, with its errno.
        #[source]
        source: io::Error,
    },
}

impl NetNsError {
    /// The errno behind this error, when the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetNsError::PermissionDenied { source, .. }
            | NetNsError::Sysctl { source, .. }
            | NetNsError::Io { source, .. } => source.raw_os_error(),
            NetNsError::NotFound { .. } => Some(libc::ENOENT),
            NetNsError::Exists { .. } => Some(libc::EEXIST),
            NetNsError::InvalidName { .. } => Some(libc::EINVAL),
            NetNsError::Panicked { .. } => None,
        }
    }

    /// Maps an `io::Error` from operation `op` on `path` to the most specific variant.
    pub(crate) fn from_io(op: &'static str, path: Option<PathBuf>, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => NetNsError::PermissionDenied { op, source },
            _ => NetNsError::Io { op, path, source },
        }
    }
}

/// Result alias for namespace operations.
pub type Result<T, E = NetNsError> = std::result::Result<T, E>;
