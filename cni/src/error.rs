//! CNI error results: the spec's well-known codes and the JSON shape a plugin prints.
//!
//! Codes 1 to 99 are the spec's (those below, the rest reserved); a plugin picks its own from
//! 100.

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
/// STATUS: the plugin's network is not available (e.g. a dependency is down).
pub const LIMITED_CONNECTIVITY: u32 = 51;
/// STATUS: the plugin has no network connectivity at all.
pub const NO_CONNECTIVITY: u32 = 52;

/// A CNI error: printed on stdout as `{"cniVersion", "code", "msg", "details"}` with a non-zero
/// exit status.
///
/// ```
/// use podnet_cni::{CniError, error::INVALID_CONFIG};
/// let e = CniError::new(INVALID_CONFIG, "invalid network config: mtu: 9").details("too small");
/// let v: serde_json::Value = serde_json::from_str(&e.to_json("1.0.0")).unwrap();
/// assert_eq!(v["code"], 7);
/// assert_eq!(v["details"], "too small");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CniError {
    /// The error code (1-99 from the spec, 100+ the plugin's own).
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

    /// Code 7 for a field of the network config: `invalid network config: <field>: <what>`.
    pub fn invalid(field: &str, what: impl fmt::Display) -> CniError {
        CniError::new(
            INVALID_CONFIG,
            format!("invalid network config: {field}: {what}"),
        )
    }

    /// Code 2 for a key the plugin does not implement: names key and value, and says what to
    /// do instead.
    pub fn unsupported(plugin: &str, key: &str, value: &serde_json::Value, hint: &str) -> CniError {
        CniError::new(
            UNSUPPORTED_FIELD,
            format!("unsupported field {key}={value}: {plugin} does not implement it; {hint}"),
        )
    }

    /// Reads an error result a plugin printed (e.g. a delegated IPAM plugin's).
    pub fn from_json(v: &serde_json::Value) -> Option<CniError> {
        let code = v
            .get("code")?
            .as_u64()
            .and_then(|c| u32::try_from(c).ok())?;
        Some(CniError {
            code,
            msg: v
                .get("msg")
                .and_then(|m| m.as_str())
                .unwrap_or_default()
                .to_owned(),
            details: v
                .get("details")
                .and_then(|d| d.as_str())
                .filter(|d| !d.is_empty())
                .map(str::to_owned),
        })
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
