//! Spec versions: which ones a plugin speaks, how they order, and the VERSION reply.

use crate::error::{CniError, INCOMPATIBLE_VERSION};
use serde_json::Value;

/// The spec versions podnet-cni speaks, oldest first (the reference plugins' list).
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The newest spec version, used when the input names none that can be trusted.
pub const LATEST_VERSION: &str = "1.1.0";

/// Orders two dotted version strings numerically; unparsable parts count as 0.
///
/// ```
/// use podnet_cni::version::at_least;
/// assert!(at_least("1.1.0", "0.4.0"));
/// assert!(!at_least("0.3.1", "0.4.0"));
/// ```
pub fn at_least(v: &str, min: &str) -> bool {
    let parts = |s: &str| -> Vec<u64> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parts(v) >= parts(min)
}

/// Reads just `cniVersion` from raw input (for VERSION and for the version of error results).
pub fn peek(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_owned)
}

/// Code 1 naming the version given and those supported.
pub fn incompatible(v: &str, supported: &[&str]) -> CniError {
    CniError::new(
        INCOMPATIBLE_VERSION,
        format!(
            "incompatible CNI version: the config's cniVersion is {v:?}; set it to one of {}",
            supported.join(", ")
        ),
    )
    .details(format!("config is {v:?}, plugin supports {supported:?}"))
}

/// `cniVersion` of a config object: `0.1.0` when absent or empty (as the reference library
/// reads it), else it must be one of `supported` (code 1 otherwise).
pub fn of_config(
    o: &serde_json::Map<String, Value>,
    supported: &[&str],
) -> Result<String, CniError> {
    let v = match o.get("cniVersion") {
        None | Some(Value::Null) => "0.1.0".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "0.1.0".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(incompatible(&other.to_string(), supported)),
    };
    if !supported.contains(&v.as_str()) {
        return Err(incompatible(&v, supported));
    }
    Ok(v)
}

/// The VERSION reply: `{"cniVersion": <the config's, else latest>, "supportedVersions": [...]}`.
///
/// ```
/// let v: serde_json::Value = serde_json::from_str(&podnet_cni::version::reply(
///     br#"{"cniVersion":"0.4.0"}"#,
///     podnet_cni::SUPPORTED_VERSIONS,
/// ))
/// .unwrap();
/// assert_eq!(v["cniVersion"], "0.4.0");
/// ```
pub fn reply(stdin: &[u8], supported: &[&str]) -> String {
    let version = peek(stdin)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| LATEST_VERSION.to_owned());
    serde_json::json!({"cniVersion": version, "supportedVersions": supported}).to_string()
}

/// Code 1 unless `version` is `min` or later: `what` (CHECK, STATUS, GC) names the command.
pub fn require(version: &str, min: &str, what: &str) -> Result<(), CniError> {
    if at_least(version, min) {
        Ok(())
    } else {
        Err(CniError::new(
            INCOMPATIBLE_VERSION,
            format!("{what} needs cniVersion {min} or later, the config says {version}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_peek() {
        assert!(at_least("1.1.0", "0.4.0"));
        assert!(at_least("0.4.0", "0.4.0"));
        assert!(!at_least("0.3.1", "0.4.0"));
        assert!(!at_least("1.0.0", "1.1.0"));
        assert_eq!(peek(br#"{"cniVersion":"0.4.0"}"#).as_deref(), Some("0.4.0"));
        assert_eq!(peek(b"nope"), None);
        assert!(require("0.3.1", "0.4.0", "CHECK").is_err());
        let o = serde_json::from_str(r#"{"cniVersion":"9.9.9"}"#).unwrap();
        let e = of_config(&o, SUPPORTED_VERSIONS).unwrap_err();
        assert!(e.code == INCOMPATIBLE_VERSION && e.msg.contains("9.9.9"));
        let o = serde_json::from_str("{}").unwrap();
        assert_eq!(of_config(&o, SUPPORTED_VERSIONS).unwrap(), "0.1.0");
    }
}
