//! The error type of podnet-links: what was asked, the errno, and the kernel's message.

use crate::netlink::{KernelError, NetlinkError};
use std::fmt;
use std::io;

/// Errors returned by podnet-links.
///
/// Kernel refusals keep the errno and the kernel's extended-ack message, and name the object
/// that was asked for (a link name, an address, a route prefix).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object already exists (EEXIST).
    #[error("{name} already exists{}", Suffix(message))]
    Exists {
        /// The object asked for: a link name, an address, a route prefix.
        name: String,
        /// The kernel's message, if it gave one.
        message: Option<String>,
    },
    /// The object, or one it refers to, does not exist (ENODEV, ENOENT, ESRCH, EADDRNOTAVAIL).
    #[error("{name} not found{}", Suffix(message))]
    NotFound {
        /// The object asked for.
        name: String,
        /// The errno the kernel answered with, or ENODEV when podnet found it missing.
        errno: i32,
        /// The kernel's message, if it gave one.
        message: Option<String>,
    },
    /// A link name that the kernel would refuse; checked before any system call.
    #[error("invalid link name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An argument that cannot be sent to the kernel; checked before any system call.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// The argument.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Any other refusal by the kernel.
    #[error("{op} {name}: {}", KernelError { errno: *errno, message: message.clone() })]
    Kernel {
        /// The operation, in iproute2's words (`"link add"`, `"route replace"`).
        op: &'static str,
        /// The object asked for.
        name: String,
        /// The positive errno.
        errno: i32,
        /// The kernel's extended-ack message, if it gave one.
        message: Option<String>,
    },
    /// The netlink socket failed or the kernel's answer could not be decoded.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// The namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] podnet_netns::NetNsError),
}

struct Suffix<'a>(&'a Option<String>);

impl fmt::Display for Suffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(m) => write!(f, " ({m})"),
            None => Ok(()),
        }
    }
}

impl Error {
    /// The errno behind this error, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Exists { .. } => Some(libc::EEXIST),
            Error::NotFound { errno, .. } | Error::Kernel { errno, .. } => Some(*errno),
            Error::InvalidName { .. } | Error::InvalidArgument { .. } => Some(libc::EINVAL),
            Error::Netlink(NetlinkError::Kernel(k)) => Some(k.errno),
            Error::Netlink(NetlinkError::Io(e)) => e.raw_os_error(),
            Error::Netns(e) => e.errno(),
            Error::Netlink(_) => None,
        }
    }

    /// The kernel's extended-ack message, when it gave one.
    pub fn kernel_message(&self) -> Option<&str> {
        match self {
            Error::Exists { message, .. }
            | Error::NotFound { message, .. }
            | Error::Kernel { message, .. } => message.as_deref(),
            Error::Netlink(NetlinkError::Kernel(k)) => k.message.as_deref(),
            _ => None,
        }
    }

    /// `true` for [`Error::Exists`].
    pub fn is_exists(&self) -> bool {
        matches!(self, Error::Exists { .. })
    }

    /// `true` for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Gives a kernel refusal of `op` on `name` its most specific variant.
    pub(crate) fn from_kernel(op: &'static str, name: impl Into<String>, k: KernelError) -> Error {
        let name = name.into();
        match k.errno {
            libc::EEXIST => Error::Exists {
                name,
                message: k.message,
            },
            libc::ENODEV | libc::ENOENT | libc::ESRCH => Error::NotFound {
                name,
                errno: k.errno,
                message: k.message,
            },
            libc::EADDRNOTAVAIL if op.starts_with("address del") => Error::NotFound {
                name,
                errno: k.errno,
                message: k.message,
            },
            errno => Error::Kernel {
                op,
                name,
                errno,
                message: k.message,
            },
        }
    }

    /// Like [`from_kernel`](Self::from_kernel) for any netlink-level failure.
    pub(crate) fn from_netlink(
        op: &'static str,
        name: impl Into<String>,
        e: NetlinkError,
    ) -> Error {
        match e {
            NetlinkError::Kernel(k) => Error::from_kernel(op, name, k),
            other => Error::Netlink(other),
        }
    }

    pub(crate) fn link_missing(name: impl Into<String>) -> Error {
        Error::NotFound {
            name: name.into(),
            errno: libc::ENODEV,
            message: None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Netlink(NetlinkError::Io(e))
    }
}

/// Result alias for podnet-links.
pub type Result<T, E = Error> = std::result::Result<T, E>;
