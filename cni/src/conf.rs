//! The network configuration on stdin: the keys every plugin shares (`cniVersion`, `name`,
//! `type`, `ipam`, `dns`, `prevResult`, `runtimeConfig`, `args`,
//! `cni.dev/valid-attachments`), checked, plus typed readers for a plugin's own keys.

use crate::error::{CniError, DECODING_FAILURE};
use crate::result::{CniResult, Dns};
use crate::version;
use serde_json::{Map, Value};

/// A container attachment named by GC's `cni.dev/valid-attachments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// `containerID`.
    pub container_id: String,
    /// `ifname`.
    pub ifname: String,
}

/// A checked network configuration: the shared keys, and the whole object for the plugin's own.
///
/// ```
/// use podnet_cni::{PluginConf, SUPPORTED_VERSIONS};
/// let conf = PluginConf::parse(
///     br#"{"cniVersion":"1.0.0","name":"net","type":"mine","mtu":1400,"ipam":{"type":"static"}}"#,
///     SUPPORTED_VERSIONS,
/// )
/// .unwrap();
/// assert_eq!(conf.plugin_type, "mine");
/// assert_eq!(conf.u32("mtu").unwrap(), Some(1400));
/// assert_eq!(conf.ipam_type.as_deref(), Some("static"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConf {
    /// `cniVersion` (`0.1.0` when absent, as the reference library reads it).
    pub cni_version: String,
    /// `name`.
    pub name: String,
    /// `type`.
    pub plugin_type: String,
    /// `ipam.type`, when there is an ipam section with a type.
    pub ipam_type: Option<String>,
    /// `dns`.
    pub dns: Dns,
    /// `prevResult`, as given (see [`PluginConf::prev_result`] for it parsed).
    pub prev_result: Option<Value>,
    /// `runtimeConfig` (empty when absent).
    pub runtime_config: Map<String, Value>,
    /// `cni.dev/valid-attachments` (GC).
    pub valid_attachments: Vec<Attachment>,
    /// The whole object.
    pub raw: Map<String, Value>,
}

impl PluginConf {
    /// Parses and checks the shared keys. Not JSON (or not an object) is code 6; a
    /// `cniVersion` not in `supported` is code 1; anything else wrong is code 7 naming the
    /// field.
    pub fn parse(stdin: &[u8], supported: &[&str]) -> Result<PluginConf, CniError> {
        let v: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                DECODING_FAILURE,
                format!("the network config on stdin is not valid JSON: {e}"),
            )
        })?;
        let Value::Object(o) = v else {
            return Err(CniError::new(
                DECODING_FAILURE,
                "the network config on stdin must be a JSON object",
            ));
        };
        let cni_version = version::of_config(&o, supported)?;
        let name = get_str(&o, "name")?.unwrap_or_default().to_owned();
        check_name(&name)?;
        let plugin_type = get_str(&o, "type")?.unwrap_or_default().to_owned();
        let ipam_type = match o.get("ipam") {
            None | Some(Value::Null) => None,
            Some(Value::Object(ipam)) => get_str(ipam, "type")
                .map_err(|_| CniError::invalid("ipam.type", "not a string"))?
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
            Some(_) => return Err(CniError::invalid("ipam", "not an object")),
        };
        let runtime_config = match o.get("runtimeConfig") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(CniError::invalid("runtimeConfig", "not an object")),
        };
        Ok(PluginConf {
            cni_version,
            name,
            plugin_type,
            ipam_type,
            dns: parse_dns(&o)?,
            prev_result: o.get("prevResult").filter(|v| !v.is_null()).cloned(),
            runtime_config,
            valid_attachments: parse_valid_attachments(&o)?,
            raw: o,
        })
    }

    /// `prevResult` parsed (any spec version's shape), `None` when absent.
    pub fn prev_result(&self) -> Result<Option<CniResult>, CniError> {
        self.prev_result
            .as_ref()
            .map(CniResult::from_prev)
            .transpose()
    }

    /// A boolean key: `false` when absent or null, code 7 when not a boolean.
    pub fn bool(&self, key: &str) -> Result<bool, CniError> {
        get_bool(&self.raw, key)
    }

    /// A string key: `None` when absent or null, code 7 when not a string.
    pub fn str(&self, key: &str) -> Result<Option<&str>, CniError> {
        get_str(&self.raw, key)
    }

    /// A non-negative 32-bit number: `None` when absent or null, code 7 otherwise.
    pub fn u32(&self, key: &str) -> Result<Option<u32>, CniError> {
        get_u32(&self.raw, key, key)
    }

    /// A list of strings: empty when absent or null.
    pub fn strings(&self, key: &str) -> Result<Vec<String>, CniError> {
        get_strings(&self.raw, key, key)
    }

    /// Refuses each of `keys` that is set to something other than null, `false`, `0`, `""`
    /// or an empty list/object, with code 2 naming it (for keys the reference plugin accepts
    /// and this one does not implement).
    pub fn refuse(&self, plugin: &str, keys: &[&str], hint: &str) -> Result<(), CniError> {
        refuse_in(&self.raw, "", plugin, keys, hint)
    }
}

/// [`PluginConf::refuse`] on a nested object; `prefix` (e.g. `runtimeConfig.`) goes before the
/// key in the message.
pub fn refuse_in(
    o: &Map<String, Value>,
    prefix: &str,
    plugin: &str,
    keys: &[&str],
    hint: &str,
) -> Result<(), CniError> {
    for key in keys {
        let Some(v) = o.get(*key) else { continue };
        let unset = match v {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(m) => m.is_empty(),
        };
        if !unset {
            return Err(CniError::unsupported(
                plugin,
                &format!("{prefix}{key}"),
                v,
                hint,
            ));
        }
    }
    Ok(())
}

/// A boolean key of `o`: `false` when absent or null, code 7 when not a boolean.
pub fn get_bool(o: &Map<String, Value>, key: &str) -> Result<bool, CniError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(CniError::invalid(
            key,
            format!("{other} is not true or false"),
        )),
    }
}

/// A string key of `o`: `None` when absent or null, code 7 when not a string.
pub fn get_str<'a>(o: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, CniError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(CniError::invalid(key, format!("{other} is not a string"))),
    }
}

/// A non-negative 32-bit number key of `o`; `field` names it in errors.
pub fn get_u32(o: &Map<String, Value>, key: &str, field: &str) -> Result<Option<u32>, CniError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                CniError::invalid(field, format!("{n} is not a non-negative 32-bit number"))
            }),
    }
}

/// A list of strings of `o`: empty when absent or null; `field` names it in errors.
pub fn get_strings(
    o: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Vec<String>, CniError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| CniError::invalid(field, format!("{v} is not a string")))
            })
            .collect(),
        Some(other) => Err(CniError::invalid(
            field,
            format!("{other} is not a list of strings"),
        )),
    }
}

/// The spec's rule for network names: a letter or digit, then letters, digits, `_`, `.`, `-`.
pub fn check_name(name: &str) -> Result<(), CniError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else if name.is_empty() {
        Err(CniError::invalid(
            "name",
            "missing: every network needs a name",
        ))
    } else {
        Err(CniError::invalid(
            "name",
            format!(
                "{name:?}: must start with a letter or digit, followed by letters, digits, '_', '.' or '-'"
            ),
        ))
    }
}

/// `dns` of a config object.
pub fn parse_dns(o: &Map<String, Value>) -> Result<Dns, CniError> {
    Ok(match o.get("dns") {
        None | Some(Value::Null) => Dns::default(),
        Some(Value::Object(d)) => Dns {
            nameservers: get_strings(d, "nameservers", "dns.nameservers")?,
            domain: get_str(d, "domain")
                .map_err(|_| CniError::invalid("dns.domain", "not a string"))?
                .map(str::to_owned),
            search: get_strings(d, "search", "dns.search")?,
            options: get_strings(d, "options", "dns.options")?,
        },
        Some(_) => return Err(CniError::invalid("dns", "not an object")),
    })
}

fn parse_valid_attachments(o: &Map<String, Value>) -> Result<Vec<Attachment>, CniError> {
    Ok(match o.get("cni.dev/valid-attachments") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|att| {
                let id = att.get("containerID").and_then(Value::as_str);
                let ifname = att.get("ifname").and_then(Value::as_str);
                match (id, ifname) {
                    (Some(i), Some(n)) => Ok(Attachment {
                        container_id: i.to_owned(),
                        ifname: n.to_owned(),
                    }),
                    _ => Err(CniError::invalid(
                        "cni.dev/valid-attachments",
                        format!("{att} needs string fields containerID and ifname"),
                    )),
                }
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(CniError::invalid("cni.dev/valid-attachments", "not a list")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SUPPORTED_VERSIONS;
    use crate::error::{INCOMPATIBLE_VERSION, INVALID_CONFIG, UNSUPPORTED_FIELD};

    fn err(text: &str) -> CniError {
        PluginConf::parse(text.as_bytes(), SUPPORTED_VERSIONS).unwrap_err()
    }

    #[test]
    fn shared_keys() {
        let c = PluginConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","type":"t","dns":{"nameservers":["10.96.0.10"]},
                "runtimeConfig":{"mac":"02:00:00:00:00:01"},
                "cni.dev/valid-attachments":[{"containerID":"c","ifname":"eth0"}],
                "prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.1.0.2/24"}]}}"#,
            SUPPORTED_VERSIONS,
        )
        .unwrap();
        assert_eq!(c.dns.nameservers, ["10.96.0.10"]);
        assert_eq!(c.runtime_config["mac"], "02:00:00:00:00:01");
        assert_eq!(c.valid_attachments[0].ifname, "eth0");
        assert_eq!(c.prev_result().unwrap().unwrap().ips.len(), 1);
    }

    #[test]
    fn error_codes() {
        assert_eq!(err("{bad").code, DECODING_FAILURE);
        assert_eq!(err("[1]").code, DECODING_FAILURE);
        assert_eq!(
            err(r#"{"cniVersion":"9.9.9","name":"n"}"#).code,
            INCOMPATIBLE_VERSION
        );
        assert_eq!(err(r#"{"cniVersion":"1.0.0"}"#).code, INVALID_CONFIG);
        assert_eq!(
            err(r#"{"cniVersion":"1.0.0","name":"a/b"}"#).code,
            INVALID_CONFIG
        );
        let c = PluginConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","a":false,"b":7,"c":""}"#,
            SUPPORTED_VERSIONS,
        )
        .unwrap();
        assert!(c.refuse("p", &["a", "c", "z"], "remove it").is_ok());
        let e = c.refuse("p", &["b"], "remove it").unwrap_err();
        assert!(e.code == UNSUPPORTED_FIELD && e.msg.contains("b=7"), "{e}");
        assert!(c.bool("b").is_err());
    }
}
