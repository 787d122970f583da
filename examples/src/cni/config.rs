//! The network configuration on stdin: the reference bridge plugin's fields, the ipam section
//! in host-local's format, and the protocol's own keys (`prevResult`, `runtimeConfig`,
//! `cni.dev/valid-attachments`).

use super::error::{CniError, UNSUPPORTED_FIELD};
use podnet_cni::conf::{get_bool, get_str};
use podnet_cni::{Dns, PluginConf, RouteCfg, SUPPORTED_VERSIONS};
use podnet_links::MacAddr;
use serde_json::{Map, Value};

/// The bridge the reference plugin uses when `bridge` is not set.
pub(crate) const DEFAULT_BRIDGE: &str = "cni0";

/// IPAM types handled in-process (host-local's format and leases).
const IPAM_TYPES: &[&str] = &["host-local", "podnet-host-local"];

/// A checked network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion` (`0.1.0` when absent, as the reference library reads it).
    pub cni_version: String,
    /// `name`.
    pub name: String,
    /// `bridge` (default `cni0`).
    pub bridge: String,
    /// `isGateway` (also true when `isDefaultGateway` is).
    pub is_gateway: bool,
    /// `isDefaultGateway`.
    pub is_default_gateway: bool,
    /// `forceAddress`: replace a conflicting IPv4 address on the bridge instead of failing.
    pub force_address: bool,
    /// `ipMasq`.
    pub ip_masq: bool,
    /// `mtu` (`None`: the kernel's default).
    pub mtu: Option<u32>,
    /// `hairpinMode`.
    pub hairpin_mode: bool,
    /// `promiscMode`.
    pub promisc_mode: bool,
    /// `enabledad`: keep duplicate address detection on the container interface.
    pub enable_dad: bool,
    /// Whether there is an ipam section of a type done in process (host-local's format).
    pub has_ipam: bool,
    /// `ipam.type` of any other IPAM plugin: run from `CNI_PATH`, as the reference does.
    pub ipam_delegate: Option<String>,
    /// `ipam.routes`, checked.
    pub ipam_routes: Vec<RouteCfg>,
    /// `dns`.
    pub dns: Dns,
    /// The container interface's MAC, from `runtimeConfig.mac`, `args.cni.mac` or `MAC=` in
    /// CNI_ARGS (in that order of preference).
    pub mac: Option<MacAddr>,
    /// `prevResult`, as given.
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (GC): container id and interface name.
    pub valid_attachments: Vec<(String, String)>,
}

fn invalid(field: &str, what: impl std::fmt::Display) -> CniError {
    CniError::invalid(field, what)
}

fn parse_mac(field: &str, s: &str) -> Result<MacAddr, CniError> {
    s.parse().map_err(|_| {
        invalid(
            field,
            format!("{s:?} is not a MAC address like 0a:58:0a:f4:00:05"),
        )
    })
}

impl NetConf {
    /// Parses and checks the configuration. `cni_args` is CNI_ARGS (for `MAC=`).
    ///
    /// Not JSON is code 6; a `cniVersion` podnet-cni does not speak is code 1; fields of the
    /// reference plugin that podnet-cni does not implement (`vlan`, `macspoofchk`, another
    /// IPAM type) are code 2 naming key and value; anything else wrong is code 7 naming the
    /// field.
    pub fn parse(stdin: &[u8], cni_args: &str) -> Result<NetConf, CniError> {
        let shared = PluginConf::parse(stdin, SUPPORTED_VERSIONS)?;
        let o = &shared.raw;

        check_unsupported(o)?;

        let bridge = get_str(o, "bridge")?
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_BRIDGE)
            .to_owned();
        podnet_links::validate_ifname(&bridge)
            .map_err(|e| invalid("bridge", format!("{e}: use a Linux interface name")))?;
        let is_default_gateway = get_bool(o, "isDefaultGateway")?;
        let is_gateway = get_bool(o, "isGateway")? || is_default_gateway;
        let hairpin_mode = get_bool(o, "hairpinMode")?;
        let promisc_mode = get_bool(o, "promiscMode")?;
        if hairpin_mode && promisc_mode {
            return Err(invalid(
                "hairpinMode, promiscMode",
                "cannot set hairpin mode and promiscuous mode at the same time; set one of them to false",
            ));
        }
        let mtu = parse_mtu(o)?;

        let (has_ipam, ipam_routes) = parse_ipam(o)?;
        let ipam_delegate = shared
            .ipam_type
            .clone()
            .filter(|t| !IPAM_TYPES.contains(&t.as_str()));

        let mac = parse_container_mac(o, cni_args)?;

        Ok(NetConf {
            cni_version: shared.cni_version.clone(),
            name: shared.name.clone(),
            bridge,
            is_gateway,
            is_default_gateway,
            force_address: get_bool(o, "forceAddress")?,
            ip_masq: get_bool(o, "ipMasq")?,
            mtu,
            hairpin_mode,
            promisc_mode,
            enable_dad: get_bool(o, "enabledad")?,
            has_ipam,
            ipam_delegate,
            ipam_routes,
            dns: shared.dns.clone(),
            mac,
            prev_result: shared.prev_result.clone(),
            valid_attachments: shared
                .valid_attachments
                .iter()
                .map(|a| (a.container_id.clone(), a.ifname.clone()))
                .collect(),
        })
    }
}

/// The reference bridge plugin's fields podnet-cni does not implement, refused when set.
fn check_unsupported(o: &Map<String, Value>) -> Result<(), CniError> {
    for (key, unsupported) in [
        ("vlan", o.get("vlan").is_some_and(|v| v.as_u64() != Some(0))),
        ("macspoofchk", get_bool(o, "macspoofchk").unwrap_or(true)),
        (
            "vlanTrunk",
            o.get("vlanTrunk").is_some_and(|v| !v.is_null()),
        ),
        // Newer reference keys: podnet masquerades with iptables only, does not isolate
        // ports, and always configures the container interface.
        (
            "ipMasqBackend",
            o.get("ipMasqBackend")
                .is_some_and(|v| !v.is_null() && v.as_str() != Some("iptables")),
        ),
        (
            "portIsolation",
            get_bool(o, "portIsolation").unwrap_or(true),
        ),
        (
            "disableContainerInterface",
            get_bool(o, "disableContainerInterface").unwrap_or(true),
        ),
    ] {
        if unsupported {
            return Err(CniError::new(
                UNSUPPORTED_FIELD,
                format!(
                    "unsupported field {key}={}: podnet-cni does not implement it; remove it \
                     or use the reference bridge plugin",
                    o.get(key).map(Value::to_string).unwrap_or_default()
                ),
            ));
        }
    }
    Ok(())
}

/// `mtu`: 68 to 65535; 0 or absent for the kernel's default.
fn parse_mtu(o: &Map<String, Value>) -> Result<Option<u32>, CniError> {
    let mtu = match o.get("mtu") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(0) => None,
            Some(m @ 68..=65535) => Some(m as u32),
            _ => {
                return Err(invalid(
                    "mtu",
                    format!("{v}: use a number from 68 to 65535, or leave it out"),
                ));
            }
        },
    };
    Ok(mtu)
}

/// The ipam section: whether there is one of a type podnet does in process, and its routes.
fn parse_ipam(o: &Map<String, Value>) -> Result<(bool, Vec<RouteCfg>), CniError> {
    let (has_ipam, ipam_routes) = match o.get("ipam") {
        None | Some(Value::Null) => (false, Vec::new()),
        Some(Value::Object(ipam)) => {
            let ty = get_str(ipam, "type").map_err(|_| invalid("ipam.type", "not a string"))?;
            match ty {
                None | Some("") => (false, Vec::new()),
                Some(t) if IPAM_TYPES.contains(&t) => {
                    let routes = match ipam.get("routes") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(Value::Array(a)) => a
                            .iter()
                            .enumerate()
                            .map(|(i, r)| RouteCfg::from_json(r, &format!("ipam.routes[{i}]")))
                            .collect::<Result<_, _>>()?,
                        Some(_) => return Err(invalid("ipam.routes", "not a list")),
                    };
                    (true, routes)
                }
                // Another IPAM plugin, run from CNI_PATH: its result has the routes.
                Some(_) => (false, Vec::new()),
            }
        }
        Some(_) => return Err(invalid("ipam", "not an object")),
    };
    Ok((has_ipam, ipam_routes))
}

/// The container interface's MAC: `runtimeConfig.mac`, `args.cni.mac` or `MAC=` in CNI_ARGS,
/// in that order of preference.
fn parse_container_mac(
    o: &Map<String, Value>,
    cni_args: &str,
) -> Result<Option<MacAddr>, CniError> {
    let mut mac = None;
    if let Some(m) = cni_args
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "MAC")
        .map(|(_, v)| v)
    {
        mac = Some(parse_mac("CNI_ARGS MAC", m)?);
    }
    if let Some(m) = o
        .get("args")
        .and_then(|a| a.get("cni"))
        .and_then(|c| c.get("mac"))
        .and_then(Value::as_str)
    {
        mac = Some(parse_mac("args.cni.mac", m)?);
    }
    if let Some(m) = o
        .get("runtimeConfig")
        .and_then(|a| a.get("mac"))
        .and_then(Value::as_str)
    {
        mac = Some(parse_mac("runtimeConfig.mac", m)?);
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_cni::error::{DECODING_FAILURE, INCOMPATIBLE_VERSION, INVALID_CONFIG};

    fn err(text: &str) -> CniError {
        NetConf::parse(text.as_bytes(), "").unwrap_err()
    }

    #[test]
    fn reference_fields() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"pods","type":"podnet-cni","bridge":"br1",
                "isDefaultGateway":true,"ipMasq":true,"mtu":1400,"hairpinMode":true,
                "ipam":{"type":"host-local","subnet":"10.244.1.0/24","routes":[{"dst":"10.96.0.0/12"}]},
                "dns":{"nameservers":["10.96.0.10"],"search":["svc"]},
                "runtimeConfig":{"mac":"0a:58:0a:f4:01:05"}}"#,
            "",
        )
        .unwrap();
        assert!(c.is_gateway && c.is_default_gateway && c.ip_masq && c.hairpin_mode);
        assert_eq!(c.bridge, "br1");
        assert_eq!(c.mtu, Some(1400));
        assert!(c.has_ipam);
        assert_eq!(c.ipam_routes.len(), 1);
        assert_eq!(c.dns.nameservers, ["10.96.0.10"]);
        assert_eq!(c.mac.unwrap().to_string(), "0a:58:0a:f4:01:05");
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"l2"}"#,
            "MAC=02:00:00:00:00:01",
        )
        .unwrap();
        assert_eq!(c.bridge, DEFAULT_BRIDGE);
        assert!(!c.has_ipam && !c.is_gateway);
        assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:01");
    }

    #[test]
    fn error_codes() {
        assert_eq!(err("{bad").code, DECODING_FAILURE);
        assert_eq!(err("[1]").code, DECODING_FAILURE);
        let e = err(r#"{"cniVersion":"9.9.9","name":"n"}"#);
        assert_eq!(e.code, INCOMPATIBLE_VERSION);
        assert!(e.msg.contains("9.9.9") && e.msg.contains("1.1.0"));
        assert_eq!(err(r#"{"cniVersion":"1.0.0"}"#).code, INVALID_CONFIG);
        assert_eq!(
            err(r#"{"cniVersion":"1.0.0","name":"a/b"}"#).code,
            INVALID_CONFIG
        );
        let e = err(r#"{"cniVersion":"1.0.0","name":"n","vlan":5}"#);
        assert_eq!(e.code, UNSUPPORTED_FIELD);
        assert!(e.msg.contains("vlan=5"), "{}", e.msg);
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"dhcp"}}"#,
            "",
        )
        .unwrap();
        assert_eq!(c.ipam_delegate.as_deref(), Some("dhcp"));
        assert!(!c.has_ipam);
        let e = err(r#"{"cniVersion":"1.0.0","name":"n","mtu":"big"}"#);
        assert!(e.code == INVALID_CONFIG && e.msg.contains("mtu"), "{e}");
        let e = err(r#"{"cniVersion":"1.0.0","name":"n","hairpinMode":true,"promiscMode":true}"#);
        assert_eq!(e.code, INVALID_CONFIG);
        let e = err(r#"{"cniVersion":"1.0.0","name":"n","isGateway":"yes"}"#);
        assert!(e.msg.contains("isGateway"), "{e}");
        let e = err(
            r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"host-local","routes":[{"dst":"x"}]}}"#,
        );
        assert!(e.msg.contains("ipam.routes[0].dst"), "{e}");
    }
}
