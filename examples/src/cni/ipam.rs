//! In-process IPAM: host-local's config and on-disk leases through podnet-ipam's
//! [`PodAllocator`], so podnet-cni, host-local and podnet-host-local can share a data directory.

use super::error::{CniError, INVALID_CONFIG, NOT_AVAILABLE};
use podnet_ipam::{IpamConfig, PodAllocator};
use std::net::IpAddr;

/// Reads the ipam section (host-local's format) of the network config.
pub(crate) fn config(stdin: &[u8]) -> Result<IpamConfig, CniError> {
    let text = std::str::from_utf8(stdin)
        .map_err(|_| CniError::new(INVALID_CONFIG, "invalid network config: not UTF-8 text"))?;
    IpamConfig::parse(text)
        .map_err(|e| CniError::new(INVALID_CONFIG, format!("invalid network config: {e}")))
}

/// Opens the network's lease directory.
pub(crate) fn open(stdin: &[u8]) -> Result<PodAllocator, CniError> {
    PodAllocator::open(config(stdin)?).map_err(super::error::alloc)
}

/// Addresses asked for with `IP=` in CNI_ARGS (comma separated), as host-local reads them.
/// Public (hidden) for the fuzz targets.
#[doc(hidden)]
pub fn requested(cni_args: &str) -> Result<Vec<IpAddr>, CniError> {
    let Some(list) = cni_args
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "IP")
        .map(|(_, v)| v)
    else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(|s| {
            s.trim().parse().map_err(|_| {
                CniError::new(
                    super::error::INVALID_ENVIRONMENT,
                    format!("CNI_ARGS: IP={s:?} is not an IP address"),
                )
            })
        })
        .collect()
}

/// Every address asked for, as host-local gathers them: `IP=` in CNI_ARGS, then
/// `args.cni.ips`, then `runtimeConfig.ips` (each an address, or an address with a prefix
/// whose prefix is dropped). `runtimeConfig.ipRanges`, which host-local puts before the
/// configured ranges, is refused by name: the in-process allocator does not take it.
pub(crate) fn requested_all(cni_args: &str, stdin: &[u8]) -> Result<Vec<IpAddr>, CniError> {
    let mut out = requested(cni_args)?;
    let v: serde_json::Value = serde_json::from_slice(stdin).unwrap_or_default();
    if v["runtimeConfig"]["ipRanges"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        return Err(CniError::unsupported(
            "podnet-cni's in-process host-local",
            "runtimeConfig.ipRanges",
            &v["runtimeConfig"]["ipRanges"],
            "configure ipam.ranges instead, or drop the ipRanges capability",
        ));
    }
    for (field, list) in [
        ("args.cni.ips", &v["args"]["cni"]["ips"]),
        ("runtimeConfig.ips", &v["runtimeConfig"]["ips"]),
    ] {
        for item in list.as_array().into_iter().flatten() {
            let s = item.as_str().unwrap_or_default();
            let ip = s
                .parse::<IpAddr>()
                .ok()
                .or_else(|| s.parse::<ipnet::IpNet>().ok().map(|n| n.addr()))
                .ok_or_else(|| CniError::invalid(field, format!("{item} is not an IP address")))?;
            out.push(ip);
        }
    }
    Ok(out)
}

/// STATUS: code 50 when a range set has no free address left (its gateway, exclusions and
/// leases counted). Changes nothing on disk.
pub(crate) fn status(stdin: &[u8]) -> Result<(), CniError> {
    let config = config(stdin)?;
    if !config.lease_dir().exists() {
        return Ok(());
    }
    let name = config.name.clone();
    let alloc = PodAllocator::open(config).map_err(super::error::alloc)?;
    match alloc.check_free() {
        Err(e @ podnet_ipam::AllocError::Exhausted { .. }) => Err(CniError::new(
            NOT_AVAILABLE,
            format!("network {name:?}: {e}: widen ipam.ranges or remove stale leases with GC"),
        )),
        other => other.map_err(super::error::alloc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_ips() {
        assert!(requested("K8S_POD_NAME=a").unwrap().is_empty());
        assert_eq!(
            requested("IP=10.244.0.5,fd10::5;X=1").unwrap(),
            vec![
                "10.244.0.5".parse::<IpAddr>().unwrap(),
                "fd10::5".parse().unwrap()
            ]
        );
        assert!(requested("IP=nope").is_err());
    }

    #[test]
    fn status_of_a_full_range() {
        let dir = std::env::temp_dir().join(format!("podnet-cni-status-{}", std::process::id()));
        let conf = format!(
            r#"{{"cniVersion":"1.1.0","name":"st","ipam":{{"type":"host-local","dataDir":{:?},
               "subnet":"10.244.9.0/30"}}}}"#,
            dir
        );
        assert!(status(conf.as_bytes()).is_ok());
        let alloc = open(conf.as_bytes()).unwrap();
        assert!(status(conf.as_bytes()).is_ok());
        // /30: .1 is the gateway, .2 the only address.
        alloc.allocate("c1", "eth0").unwrap();
        alloc.allocate("c2", "eth0").unwrap_err();
        assert_eq!(status(conf.as_bytes()).unwrap_err().code, NOT_AVAILABLE);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
