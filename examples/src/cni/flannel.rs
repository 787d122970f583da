//! The `flannel` meta plugin, as flannel's own CNI plugin: reads flanneld's `subnet.env`
//! (`subnetFile`, default `/run/flannel/subnet.env`), builds the delegate's config (default
//! type `bridge`, `isGateway`, `ipMasq` the opposite of `FLANNEL_IPMASQ`, `mtu`
//! `FLANNEL_MTU`, an `ipam` of type host-local with the node's subnets as ranges and the
//! cluster networks as routes), saves it under `dataDir` (default `/var/lib/cni/flannel`) by
//! container id, and runs the delegate from `CNI_PATH`; DEL runs the saved config's DEL.

use super::error::{CniError, INVALID_CONFIG, KERNEL};
use ipnet::IpNet;
use podnet_cni::{Args, CniResult, Command, Plugin, PluginConf, invoke};
use serde_json::{Map, Value, json};
use std::path::PathBuf;

/// The `flannel` plugin.
pub struct Flannel;

const DEFAULT_SUBNET_FILE: &str = "/run/flannel/subnet.env";
const DEFAULT_DATA_DIR: &str = "/var/lib/cni/flannel";

/// What `subnet.env` says.
#[derive(Debug, Default, PartialEq)]
struct SubnetEnv {
    networks: Vec<IpNet>,
    subnet: Option<IpNet>,
    ip6_networks: Vec<IpNet>,
    ip6_subnet: Option<IpNet>,
    mtu: Option<u32>,
    ipmasq: Option<bool>,
}

fn cidr_list(file: &str, key: &str, value: &str) -> Result<Vec<IpNet>, CniError> {
    let mut out: Vec<IpNet> = Vec::new();
    for c in value.split(',') {
        let n = cidr(file, key, c)?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

fn cidr(file: &str, key: &str, value: &str) -> Result<IpNet, CniError> {
    value.parse::<IpNet>().map(|n| n.trunc()).map_err(|_| {
        CniError::new(
            INVALID_CONFIG,
            format!(
                "failed to load flannel 'subnet.env' file: {file}: {key}={value:?} is not a CIDR"
            ),
        )
    })
}

/// Reads `subnet.env` as flannel's plugin does; the error names what is missing.
fn subnet_env(file: &str) -> Result<SubnetEnv, CniError> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        CniError::new(
            INVALID_CONFIG,
            format!(
                "failed to load flannel 'subnet.env' file: {file}: {e}. Check the flannel pod log \
                 for this node."
            ),
        )
    })?;
    let mut se = SubnetEnv::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "FLANNEL_NETWORK" => se.networks = cidr_list(file, k, v)?,
            "FLANNEL_SUBNET" => se.subnet = Some(cidr(file, k, v)?),
            "FLANNEL_IPV6_NETWORK" => se.ip6_networks = cidr_list(file, k, v)?,
            "FLANNEL_IPV6_SUBNET" => se.ip6_subnet = Some(cidr(file, k, v)?),
            "FLANNEL_MTU" => {
                se.mtu = Some(v.parse().map_err(|_| {
                    CniError::new(
                        INVALID_CONFIG,
                        format!(
                            "failed to load flannel 'subnet.env' file: {file}: FLANNEL_MTU={v:?}"
                        ),
                    )
                })?)
            }
            "FLANNEL_IPMASQ" => se.ipmasq = Some(v == "true"),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    if se.networks.is_empty() && se.ip6_networks.is_empty() {
        missing.extend(["FLANNEL_NETWORK", "FLANNEL_IPV6_NETWORK"]);
    }
    if se.subnet.is_none() && se.ip6_subnet.is_none() {
        missing.extend(["FLANNEL_SUBNET", "FLANNEL_IPV6_SUBNET"]);
    }
    if se.mtu.is_none() {
        missing.push("FLANNEL_MTU");
    }
    if se.ipmasq.is_none() {
        missing.push("FLANNEL_IPMASQ");
    }
    if !missing.is_empty() {
        return Err(CniError::new(
            INVALID_CONFIG,
            format!(
                "failed to load flannel 'subnet.env' file: {file} is missing {}. Check the flannel \
                 pod log for this node.",
                missing.join(", ")
            ),
        ));
    }
    Ok(se)
}

fn data_dir(base: &PluginConf) -> Result<PathBuf, CniError> {
    Ok(PathBuf::from(
        base.str("dataDir")?
            .filter(|d| !d.is_empty())
            .unwrap_or(DEFAULT_DATA_DIR),
    ))
}

/// The delegate's config, as flannel's plugin assembles it.
fn delegate_conf(base: &PluginConf, se: &SubnetEnv) -> Result<Map<String, Value>, CniError> {
    let mut d = match base.raw.get("delegate") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(CniError::invalid("delegate", "not an object")),
    };
    if d.get("type").is_some_and(|t| !t.is_string()) {
        return Err(CniError::invalid(
            "delegate.type",
            "'delegate' dictionary, if present, must have (string) 'type' field",
        ));
    }
    for k in ["name", "ipam"] {
        if d.contains_key(k) {
            return Err(CniError::invalid(
                &format!("delegate.{k}"),
                format!("'delegate' dictionary must not have '{k}' field, it'll be set by flannel"),
            ));
        }
    }
    if let Some(rc) = base.raw.get("runtimeConfig").filter(|v| !v.is_null()) {
        d.insert("runtimeConfig".into(), rc.clone());
    }
    d.insert("name".into(), json!(base.name));
    d.entry("type").or_insert(json!("bridge"));
    d.entry("ipMasq")
        .or_insert(json!(!se.ipmasq.unwrap_or(false)));
    d.entry("mtu").or_insert(json!(se.mtu));
    if d.get("type") == Some(&json!("bridge")) {
        d.entry("isGateway").or_insert(json!(true));
    }
    if let Some(v) = base
        .raw
        .get("cniVersion")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
    {
        d.insert("cniVersion".into(), json!(v));
    }
    let mut ipam = match base.raw.get("ipam") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(CniError::invalid("ipam", "not an object")),
    };
    ipam.entry("type").or_insert(json!("host-local"));
    let ranges: Vec<Value> = [se.subnet, se.ip6_subnet]
        .into_iter()
        .flatten()
        .map(|s| json!([{"subnet": s.to_string()}]))
        .collect();
    ipam.insert("ranges".into(), json!(ranges));
    let mut routes = match ipam.get("routes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(CniError::invalid("ipam.routes", "not a list")),
    };
    for nw in se.networks.iter().chain(&se.ip6_networks) {
        routes.push(json!({"dst": nw.to_string()}));
    }
    ipam.insert("routes".into(), json!(routes));
    d.insert("ipam".into(), Value::Object(ipam));
    Ok(d)
}

impl Plugin for Flannel {
    fn add(&self, args: &Args, stdin: &[u8]) -> Result<CniResult, CniError> {
        let base = PluginConf::parse(stdin, self.supported_versions())?;
        let file = base
            .str("subnetFile")?
            .filter(|f| !f.is_empty())
            .unwrap_or(DEFAULT_SUBNET_FILE)
            .to_owned();
        let se = subnet_env(&file)?;
        let delegate = delegate_conf(&base, &se)?;
        let ty = delegate["type"].as_str().unwrap_or("bridge").to_owned();
        let bytes = serde_json::to_vec(&Value::Object(delegate)).unwrap_or_default();
        let dir = data_dir(&base)?;
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join(&args.container_id), &bytes))
            .map_err(|e| {
                CniError::new(
                    KERNEL,
                    format!("saving the delegate config in {}: {e}", dir.display()),
                )
            })?;
        invoke::exec_add(&ty, args, &bytes).map_err(|e| CniError {
            msg: format!("failed to delegate add: {}", e.msg),
            ..e
        })
    }

    fn del(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let base = PluginConf::parse(stdin, self.supported_versions())?;
        let path = data_dir(&base)?.join(&args.container_id);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(CniError::new(
                    KERNEL,
                    format!("reading {}: {e}", path.display()),
                ));
            }
        };
        let Some(ty) = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_owned))
        else {
            eprintln!("flannel: {} is not a network config", path.display());
            return Ok(());
        };
        invoke::exec(&ty, Command::Del, args, &bytes)?;
        let _ = std::fs::remove_file(&path);
        Ok(())
    }

    fn check(&self, _args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        PluginConf::parse(stdin, self.supported_versions()).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delegate_as_flannel_builds_it() {
        let base = PluginConf::parse(
            br#"{"cniVersion":"1.0.0","name":"cbr0","type":"flannel",
                 "delegate":{"hairpinMode":true,"isDefaultGateway":true}}"#,
            podnet_cni::SUPPORTED_VERSIONS,
        )
        .unwrap();
        let se = SubnetEnv {
            networks: vec!["10.244.0.0/16".parse().unwrap()],
            subnet: Some("10.244.3.0/24".parse().unwrap()),
            mtu: Some(1450),
            ipmasq: Some(true),
            ..SubnetEnv::default()
        };
        let d = delegate_conf(&base, &se).unwrap();
        assert_eq!(
            serde_json::to_string(&Value::Object(d)).unwrap(),
            r#"{"cniVersion":"1.0.0","hairpinMode":true,"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.244.3.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},"isDefaultGateway":true,"isGateway":true,"mtu":1450,"name":"cbr0","type":"bridge"}"#
        );
        let bad = PluginConf::parse(
            br#"{"cniVersion":"1.0.0","name":"cbr0","delegate":{"name":"x"}}"#,
            podnet_cni::SUPPORTED_VERSIONS,
        )
        .unwrap();
        assert!(delegate_conf(&bad, &se).unwrap_err().msg.contains("'name'"));
    }
}
