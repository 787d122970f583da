//! The `host-local` IPAM plugin in process: podnet-ipam's allocator on host-local's config and
//! on-disk leases (what `podnet-host-local` does as a binary of its own), with `resolvConf`
//! read into the result's DNS as the reference does.

use super::error::{CniError, alloc};
use super::ipam;
use podnet_cni::{Args, CniResult, Dns, IpCfg, Plugin, PluginConf, RouteCfg};

/// The `host-local` IPAM plugin.
pub struct HostLocal;

/// Code host-local gives errors that are not CNI errors.
const OTHER: u32 = 999;

/// Reads a resolv.conf-format file into DNS settings, as the reference `parseResolvConf` does.
pub(crate) fn resolv_conf(path: &str) -> Result<Dns, CniError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CniError::new(OTHER, format!("ipam.resolvConf: reading {path}: {e}")))?;
    let mut dns = Dns::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.nameservers.extend(words.next().map(str::to_owned)),
            Some("domain") => dns.domain = words.next().map(str::to_owned),
            Some("search") => dns.search.extend(words.map(str::to_owned)),
            Some("options") => dns.options.extend(words.map(str::to_owned)),
            _ => {}
        }
    }
    Ok(dns)
}

impl Plugin for HostLocal {
    fn add(&self, args: &Args, stdin: &[u8]) -> Result<CniResult, CniError> {
        PluginConf::parse(stdin, self.supported_versions())?;
        let raw: serde_json::Value = serde_json::from_slice(stdin).unwrap_or_default();
        let allocator = ipam::open(stdin)?;
        let requested = ipam::requested_all(&args.cni_args, stdin)?;
        let got = allocator
            .allocate_with(&args.container_id, &args.ifname, &requested)
            .map_err(alloc)?;
        let routes = allocator
            .config()
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| RouteCfg::from_json(r, &format!("ipam.routes[{i}]")))
            .collect::<Result<Vec<_>, _>>();
        let dns = match raw["ipam"]["resolvConf"].as_str().filter(|p| !p.is_empty()) {
            Some(path) => resolv_conf(path),
            None => Ok(Dns::default()),
        };
        let (routes, dns) = match (routes, dns) {
            (Ok(r), Ok(d)) => (r, d),
            (Err(e), _) | (_, Err(e)) => {
                let _ = allocator.release(&args.container_id, &args.ifname);
                return Err(e);
            }
        };
        Ok(CniResult {
            interfaces: Vec::new(),
            ips: got
                .iter()
                .map(|a| IpCfg {
                    interface: None,
                    address: a.address,
                    gateway: Some(a.gateway),
                })
                .collect(),
            routes,
            dns,
        })
    }

    fn del(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        PluginConf::parse(stdin, self.supported_versions())?;
        ipam::open(stdin)?
            .release(&args.container_id, &args.ifname)
            .map(drop)
            .map_err(alloc)
    }

    fn check(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        PluginConf::parse(stdin, self.supported_versions())?;
        let id = args.container_id.trim();
        let found =
            ipam::open(stdin)?.leases().map_err(alloc)?.iter().any(|l| {
                l.container_id == id && l.ifname.as_deref().is_none_or(|i| i == args.ifname)
            });
        if found {
            Ok(())
        } else {
            Err(CniError::new(
                OTHER,
                format!("host-local: failed to find address added by container {id}"),
            ))
        }
    }

    fn status(&self, _args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        PluginConf::parse(stdin, self.supported_versions())?;
        ipam::status(stdin)
    }

    fn gc(&self, _args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let conf = PluginConf::parse(stdin, self.supported_versions())?;
        let live = conf
            .valid_attachments
            .iter()
            .map(|a| (a.container_id.clone(), a.ifname.clone()));
        let report = ipam::open(stdin)?.gc(live).map_err(alloc)?;
        for ip in report.removed.iter().chain(&report.removed_empty) {
            eprintln!("host-local: GC released {ip}");
        }
        Ok(())
    }
}
