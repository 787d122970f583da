//! CNI error results: the spec's well-known codes, podnet-cni's own codes, and the JSON shape.

use std::fmt;

/// Incompatible CNI version.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// Unsupported field in the network configuration (the message names key and value).
pub const UNSUPPORTED_FIELD: u32 = 2;
/// Container unknown or does not exist.
pub const UNKNOWN_CONTAINER: u32 = 3;
/// Invalid necessary environment variables (the message names them).
pub const INVALID_ENVIRONMENT: u32 = 4;
/// I/O failure, e.g. reading the configuration from stdin.
pub const IO_FAILURE: u32 = 5;
/// Failed to decode content, e.g. the configuration is not JSON.
pub const DECODING_FAILURE: u32 = 6;
/// Invalid network configuration.
pub const INVALID_CONFIG: u32 = 7;
/// Try again later: a transient condition.
pub const TRY_AGAIN_LATER: u32 = 11;
/// STATUS: the plugin cannot service ADD requests.
pub const NOT_AVAILABLE: u32 = 50;

/// podnet-cni: the kernel refused a change (the message says which, with the errno).
pub const KERNEL: u32 = 100;
/// podnet-cni: the bridge already holds an address that conflicts with the gateway.
pub const ADDRESS_CONFLICT: u32 = 101;
/// podnet-cni: the container already has an interface of the requested name.
pub const INTERFACE_EXISTS: u32 = 102;
/// podnet-cni: no free address in a range set, or a requested address is not available.
pub const NO_ADDRESS: u32 = 103;
/// podnet-cni: the IPAM lease directory could not be read or written.
pub const IPAM_STORE: u32 = 104;
/// podnet-cni: CHECK found the container's network different from `prevResult`.
pub const CHECK_FAILED: u32 = 105;
/// podnet-cni: an external program (iptables-restore for ipMasq) failed.
pub const EXTERNAL_PROGRAM: u32 = 106;

/// A CNI error: printed on stdout as `{"cniVersion", "code", "msg", "details"}` with a non-zero
/// exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// The error code (1-99 from the spec, 100+ podnet-cni's own).
    pub code: u32,
    /// A short message that says what went wrong and what to fix.
    pub msg: String,
    /// Longer details (the underlying error), when there are any.
    pub details: Option<String>,
}

impl CniError {
    /// An error with a code and a message.
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: None,
        }
    }

    /// Adds details.
    pub fn details(mut self, details: impl Into<String>) -> CniError {
        self.details = Some(details.into());
        self
    }

    /// The error result as JSON, for the given protocol version.
    pub fn to_json(&self, cni_version: &str) -> String {
        let mut v = serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
        });
        if let Some(d) = &self.details {
            v["details"] = serde_json::Value::String(d.clone());
        }
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }

    /// An error from a podnet-links request, `what` saying what was being done.
    pub(crate) fn kernel(what: impl fmt::Display, e: podnet_links::Error) -> CniError {
        CniError::new(KERNEL, format!("{what}: {e}"))
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "code {}: {}", self.code, self.msg)?;
        if let Some(d) = &self.details {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

impl From<podnet_ipam::AllocError> for CniError {
    fn from(e: podnet_ipam::AllocError) -> CniError {
        use podnet_ipam::AllocError as A;
        let code = match &e {
            A::Config(_) => INVALID_CONFIG,
            A::Exhausted { .. } | A::Unavailable { .. } => NO_ADDRESS,
            A::BadArgument { .. } => INVALID_ENVIRONMENT,
            _ => IPAM_STORE,
        };
        let hint = match &e {
            A::Exhausted { .. } => {
                "; widen ipam.ranges or remove stale leases (CNI GC, or DEL of gone containers)"
            }
            A::Io { .. } => "; check that ipam.dataDir is on a writable file system",
            _ => "",
        };
        CniError::new(code, format!("ipam: {e}{hint}"))
    }
}
