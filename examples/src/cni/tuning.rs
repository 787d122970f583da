//! The `tuning` meta plugin: sysctls under `net.` in the container's namespace, and the MAC,
//! MTU, promiscuous and all-multicast settings of the container's interface, with the previous
//! values saved in `dataDir` (default `/run/cni/tuning`) and restored by DEL, as the reference
//! plugin does. The result is `prevResult`, with the new MAC.

use super::bridge::open_container;
use super::error::{CHECK_FAILED, CniError, CniErrorExt, INVALID_CONFIG, KERNEL};
use podnet_cni::conf::{get_bool, get_str, get_u32};
use podnet_cni::{Args, CniResult, Plugin, PluginConf};
use podnet_links::{Handle, MacAddr};
use serde_json::{Map, Value};
use std::path::PathBuf;

/// The `tuning` plugin.
pub struct Tuning;

const DEFAULT_DATA_DIR: &str = "/run/cni/tuning";
const IFF_PROMISC: u32 = 0x100;
const IFF_ALLMULTI: u32 = 0x200;

/// What DEL restores, saved by ADD (the reference's `configToRestore`).
#[derive(serde::Serialize)]
struct Backup {
    #[serde(skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    promisc: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allmulti: Option<bool>,
}

#[derive(Debug, Default)]
struct Conf {
    data_dir: PathBuf,
    sysctl: Vec<(String, String)>,
    mac: Option<MacAddr>,
    promisc: bool,
    mtu: Option<u32>,
    allmulti: Option<bool>,
}

fn sysctls(o: &Map<String, Value>, field: &str) -> Result<Vec<(String, String)>, CniError> {
    match o.get("sysctl") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|v| (k.clone(), v.to_owned()))
                    .ok_or_else(|| CniError::invalid(&format!("{field}.{k}"), "not a string"))
            })
            .collect(),
        Some(_) => Err(CniError::invalid(field, "not an object of strings")),
    }
}

fn mac(field: &str, s: &str) -> Result<MacAddr, CniError> {
    s.parse()
        .map_err(|_| CniError::invalid(field, format!("{s:?} is not a MAC address")))
}

fn parse(base: &PluginConf, cni_args: &str) -> Result<Conf, CniError> {
    let o = &base.raw;
    let mut c = Conf {
        data_dir: PathBuf::from(
            get_str(o, "dataDir")?
                .filter(|d| !d.is_empty())
                .unwrap_or(DEFAULT_DATA_DIR),
        ),
        sysctl: sysctls(o, "sysctl")?,
        promisc: get_bool(o, "promisc")?,
        mtu: get_u32(o, "mtu", "mtu")?.filter(|m| *m != 0),
        allmulti: match o.get("allmulti") {
            None | Some(Value::Null) => None,
            Some(_) => Some(get_bool(o, "allmulti")?),
        },
        ..Conf::default()
    };
    if let Some(m) = get_str(o, "mac")?.filter(|m| !m.is_empty()) {
        c.mac = Some(mac("mac", m)?);
    }
    if let Some(m) = cni_args
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "MAC")
        .map(|(_, v)| v)
        .filter(|m| !m.is_empty())
    {
        c.mac = Some(mac("CNI_ARGS MAC", m)?);
    }
    if let Some(m) = get_str(&base.runtime_config, "mac")?.filter(|m| !m.is_empty()) {
        c.mac = Some(mac("runtimeConfig.mac", m)?);
    }
    if let Some(Value::Object(a)) = o.get("args").and_then(|a| a.get("cni")) {
        for (k, v) in sysctls(a, "args.cni.sysctl")? {
            c.sysctl.retain(|(key, _)| *key != k);
            c.sysctl.push((k, v));
        }
        if let Some(m) = get_str(a, "mac")? {
            c.mac = Some(mac("args.cni.mac", m)?);
        }
        if a.get("promisc").is_some_and(|v| !v.is_null()) {
            c.promisc = get_bool(a, "promisc")?;
        }
        if let Some(m) = get_u32(a, "mtu", "args.cni.mtu")? {
            c.mtu = Some(m).filter(|m| *m != 0);
        }
        if a.get("allmulti").is_some_and(|v| !v.is_null()) {
            c.allmulti = Some(get_bool(a, "allmulti")?);
        }
    }
    Ok(c)
}

/// `/proc/sys/<key with dots as slashes>`, `IFNAME` replaced; only under `net/`.
fn sysctl_path(key: &str, ifname: &str) -> Result<PathBuf, CniError> {
    let key = key.replacen("IFNAME", ifname, 1);
    let rel = key.replace('.', "/");
    let ok = rel.starts_with("net/") && rel.split('/').all(|p| !p.is_empty() && p != "..");
    if ok {
        Ok(PathBuf::from("/proc/sys").join(rel))
    } else {
        Err(CniError::invalid(
            "sysctl",
            format!("invalid net sysctl key: {key:?}"),
        ))
    }
}

fn backup_path(c: &Conf, args: &Args) -> PathBuf {
    c.data_dir
        .join(format!("{}_{}.json", args.container_id, args.ifname))
}

impl Plugin for Tuning {
    fn add(&self, args: &Args, stdin: &[u8]) -> Result<CniResult, CniError> {
        let base = PluginConf::parse(stdin, self.supported_versions())?;
        let c = parse(&base, &args.cni_args)?;
        let mut result = base
            .prev_result()?
            .ok_or_else(|| CniError::new(INVALID_CONFIG, "Required prevResult missing"))?;
        let netns = open_container(&args.netns)?;
        // Sysctls: /proc/sys/net shows the namespace of the thread that opens it.
        let paths: Vec<(PathBuf, &str)> = c
            .sysctl
            .iter()
            .map(|(k, v)| Ok((sysctl_path(k, &args.ifname)?, v.as_str())))
            .collect::<Result<_, CniError>>()?;
        netns
            .run(|| -> Result<(), CniError> {
                for (p, v) in &paths {
                    std::fs::write(p, v).map_err(|e| {
                        CniError::new(KERNEL, format!("writing {}: {e}", p.display()))
                    })?;
                }
                Ok(())
            })
            .map_err(|e| CniError::new(KERNEL, format!("entering CNI_NETNS: {e}")))??;
        if c.mac.is_none() && c.mtu.is_none() && !c.promisc && c.allmulti.is_none() {
            return Ok(result);
        }
        let h = Handle::in_ns(&netns)
            .map_err(|e| CniError::kernel("netlink in the container namespace", e))?;
        let link = h
            .link()
            .get(args.ifname.as_str())
            .map_err(|e| CniError::kernel(format!("failed to get {:?}", args.ifname), e))?;
        // The backup, in the reference's field order and indentation.
        let backup = Backup {
            mac: c
                .mac
                .map(|_| link.mac.map(|m| m.to_string()).unwrap_or_default()),
            promisc: c.promisc.then_some(link.flags & IFF_PROMISC != 0),
            mtu: c.mtu.map(|_| link.mtu),
            allmulti: c.allmulti.map(|_| link.flags & IFF_ALLMULTI != 0),
        };
        std::fs::create_dir_all(&c.data_dir)
            .and_then(|()| {
                let mut text = Vec::new();
                let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
                let mut ser = serde_json::Serializer::with_formatter(&mut text, fmt);
                serde::Serialize::serialize(&backup, &mut ser).map_err(std::io::Error::other)?;
                std::fs::write(backup_path(&c, args), text)
            })
            .map_err(|e| {
                CniError::new(
                    KERNEL,
                    format!("failed to save the backup in {}: {e}", c.data_dir.display()),
                )
            })?;
        let mut set = h.link().set(link.index);
        if let Some(m) = c.mac {
            set = set.mac(m);
            for i in result
                .interfaces
                .iter_mut()
                .filter(|i| i.name == args.ifname)
            {
                i.mac = m.to_string();
            }
        }
        if c.promisc {
            set = set.promisc(true);
        }
        if let Some(m) = c.mtu {
            set = set.mtu(m);
        }
        if let Some(a) = c.allmulti {
            set = set.allmulticast(a);
        }
        set.apply()
            .map_err(|e| CniError::kernel(format!("tuning {}", args.ifname), e))?;
        Ok(result)
    }

    fn del(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        // Only dataDir matters: a config ADD refused (a bad MAC, say) still deletes.
        let base = PluginConf::parse(stdin, self.supported_versions())?;
        let c = Conf {
            data_dir: PathBuf::from(
                get_str(&base.raw, "dataDir")?
                    .filter(|d| !d.is_empty())
                    .unwrap_or(DEFAULT_DATA_DIR),
            ),
            ..Conf::default()
        };
        let path = backup_path(&c, args);
        let Ok(text) = std::fs::read(&path) else {
            return Ok(());
        };
        let Ok(Value::Object(saved)) = serde_json::from_slice::<Value>(&text) else {
            return Ok(());
        };
        // A namespace or interface that is gone has nothing to restore.
        let Ok(netns) = open_container(&args.netns) else {
            return Ok(());
        };
        let Ok(h) = Handle::in_ns(&netns) else {
            return Ok(());
        };
        let Ok(link) = h.link().get(args.ifname.as_str()) else {
            return Ok(());
        };
        let mut set = h.link().set(link.index);
        if let Some(m) = saved.get("mtu").and_then(Value::as_u64).filter(|m| *m != 0) {
            set = set.mtu(m as u32);
        }
        if let Some(m) = saved
            .get("mac")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
        {
            set = set.mac(mac("backup mac", m)?);
        }
        if let Some(p) = saved.get("promisc").and_then(Value::as_bool) {
            set = set.promisc(p);
        }
        if let Some(a) = saved.get("allmulti").and_then(Value::as_bool) {
            set = set.allmulticast(a);
        }
        set.apply()
            .map_err(|e| CniError::kernel(format!("restoring {}", args.ifname), e))?;
        std::fs::remove_file(&path).map_err(|e| {
            CniError::new(
                KERNEL,
                format!("failed to remove file {}: {e}", path.display()),
            )
        })
    }

    fn check(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let base = PluginConf::parse(stdin, self.supported_versions())?;
        let c = parse(&base, &args.cni_args)?;
        base.prev_result()?
            .ok_or_else(|| CniError::new(INVALID_CONFIG, "Required prevResult missing"))?;
        let netns = open_container(&args.netns)?;
        let paths: Vec<(PathBuf, &str)> = c
            .sysctl
            .iter()
            .map(|(k, v)| Ok((sysctl_path(k, &args.ifname)?, v.as_str())))
            .collect::<Result<_, CniError>>()?;
        netns
            .run(|| -> Result<(), CniError> {
                for (p, v) in &paths {
                    let now = std::fs::read_to_string(p).unwrap_or_default();
                    if now.trim() != v.trim() {
                        return Err(CniError::new(
                            CHECK_FAILED,
                            format!("{} is {:?}, not {v:?}", p.display(), now.trim()),
                        ));
                    }
                }
                Ok(())
            })
            .map_err(|e| CniError::new(KERNEL, format!("entering CNI_NETNS: {e}")))??;
        let h = Handle::in_ns(&netns)
            .map_err(|e| CniError::kernel("netlink in the container namespace", e))?;
        let link = h
            .link()
            .get(args.ifname.as_str())
            .map_err(|e| CniError::kernel(format!("failed to get {:?}", args.ifname), e))?;
        let wrong = |what: &str| {
            Err(CniError::new(
                CHECK_FAILED,
                format!("{} {what} is not as configured", args.ifname),
            ))
        };
        if c.mac.is_some() && link.mac != c.mac {
            return wrong("MAC");
        }
        if c.mtu.is_some_and(|m| m != link.mtu) {
            return wrong("MTU");
        }
        if c.promisc && link.flags & IFF_PROMISC == 0 {
            return wrong("promiscuous mode");
        }
        if c.allmulti
            .is_some_and(|a| a != (link.flags & IFF_ALLMULTI != 0))
        {
            return wrong("all-multicast mode");
        }
        Ok(())
    }
}
