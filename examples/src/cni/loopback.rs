//! The `loopback` plugin: sets `lo` up in the container (ADD), down again (DEL), and checks
//! that it is up (CHECK), as the reference plugin does. Its result is the `prevResult` when
//! there is one, else `lo` with its first IPv4 and IPv6 address.

use super::bridge::open_container;
use super::error::{CniError, CniErrorExt, INVALID_ENVIRONMENT, KERNEL};
use podnet_cni::{Args, CniResult, Interface, IpCfg, Plugin, PluginConf};
use podnet_links::Handle;

/// The `loopback` plugin.
pub struct Loopback;

fn handle(netns: &str) -> Result<Handle, CniError> {
    let ns = open_container(netns)?;
    Handle::in_ns(&ns).map_err(|e| CniError::kernel("netlink in the container namespace", e))
}

impl Plugin for Loopback {
    fn add(&self, args: &Args, stdin: &[u8]) -> Result<CniResult, CniError> {
        let conf = PluginConf::parse(stdin, self.supported_versions())?;
        let prev = conf.prev_result()?;
        let h = handle(&args.netns)?;
        h.link()
            .set("lo")
            .up()
            .apply()
            .map_err(|e| CniError::kernel("setting lo up in the container", e))?;
        let addrs = h
            .addr()
            .list(Some("lo".into()))
            .map_err(|e| CniError::kernel("listing the addresses of lo", e))?;
        if let Some(a) = addrs.iter().find(|a| !a.addr.addr().is_loopback()) {
            return Err(CniError::new(
                KERNEL,
                format!(
                    "loopback interface found with non-loopback address {}",
                    a.addr
                ),
            ));
        }
        if let Some(prev) = prev {
            return Ok(prev);
        }
        let first = |v4: bool| addrs.iter().find(|a| a.addr.addr().is_ipv4() == v4);
        Ok(CniResult {
            interfaces: vec![Interface {
                name: "lo".into(),
                mac: "00:00:00:00:00:00".into(),
                mtu: None,
                sandbox: Some(args.netns.clone()),
            }],
            ips: [first(true), first(false)]
                .into_iter()
                .flatten()
                .map(|a| IpCfg {
                    interface: Some(0),
                    address: a.addr,
                    gateway: None,
                })
                .collect(),
            ..CniResult::default()
        })
    }

    fn del(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        PluginConf::parse(stdin, self.supported_versions())?;
        if args.netns.is_empty() {
            return Ok(());
        }
        let h = match handle(&args.netns) {
            // The namespace is gone already: nothing to undo.
            Err(e) if e.code == INVALID_ENVIRONMENT => return Ok(()),
            other => other?,
        };
        h.link()
            .set("lo")
            .down()
            .apply()
            .map_err(|e| CniError::kernel("setting lo down in the container", e))
    }

    fn check(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        PluginConf::parse(stdin, self.supported_versions())?;
        let h = handle(&args.netns)?;
        let lo = h
            .link()
            .get("lo")
            .map_err(|e| CniError::kernel("reading lo in the container", e))?;
        if lo.is_up() {
            Ok(())
        } else {
            Err(CniError::new(
                super::error::CHECK_FAILED,
                "loopback interface is down",
            ))
        }
    }
}
