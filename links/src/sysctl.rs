//! Per-link sysctls (`net.ipv4.conf.DEV.*`, `net.ipv6.conf.DEV.*`) of the handle's namespace,
//! named by what they do rather than by their /proc path.
//!
//! /proc/sys/net shows the namespace of the thread that opens it, so the files are read and
//! written from inside the handle's namespace: directly when the calling thread is in it
//! already, on a helper thread that entered it otherwise.

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::types::validate_ifname;
use std::fmt;
use std::os::unix::fs::MetadataExt;

/// A per-link setting kept in /proc/sys/net.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinkSysctl {
    /// `net.ipv4.conf.DEV.forwarding`: route IPv4 packets that arrive on the link.
    Ipv4Forwarding,
    /// `net.ipv6.conf.DEV.forwarding`.
    Ipv6Forwarding,
    /// `net.ipv4.conf.DEV.proxy_arp`: answer ARP for addresses routed elsewhere.
    ProxyArp,
    /// `net.ipv4.conf.DEV.rp_filter`: 0 off, 1 strict, 2 loose reverse-path filtering.
    RpFilter,
    /// `net.ipv4.conf.DEV.arp_notify`: send gratuitous ARP when the link comes up or its
    /// address changes.
    ArpNotify,
    /// `net.ipv4.conf.DEV.route_localnet`: route 127/8 from this link.
    RouteLocalnet,
    /// `net.ipv6.conf.DEV.accept_dad`: 0 no duplicate address detection, 1 on, 2 on and
    /// disable IPv6 on a duplicate link-local address.
    AcceptDad,
    /// `net.ipv6.conf.DEV.enhanced_dad` (RFC 7527).
    EnhancedDad,
    /// `net.ipv6.conf.DEV.accept_ra`: take router advertisements.
    AcceptRa,
    /// `net.ipv6.conf.DEV.disable_ipv6`.
    DisableIpv6,
}

impl LinkSysctl {
    /// The family directory and the file name.
    fn parts(self) -> (&'static str, &'static str) {
        match self {
            LinkSysctl::Ipv4Forwarding => ("ipv4", "forwarding"),
            LinkSysctl::Ipv6Forwarding => ("ipv6", "forwarding"),
            LinkSysctl::ProxyArp => ("ipv4", "proxy_arp"),
            LinkSysctl::RpFilter => ("ipv4", "rp_filter"),
            LinkSysctl::ArpNotify => ("ipv4", "arp_notify"),
            LinkSysctl::RouteLocalnet => ("ipv4", "route_localnet"),
            LinkSysctl::AcceptDad => ("ipv6", "accept_dad"),
            LinkSysctl::EnhancedDad => ("ipv6", "enhanced_dad"),
            LinkSysctl::AcceptRa => ("ipv6", "accept_ra"),
            LinkSysctl::DisableIpv6 => ("ipv6", "disable_ipv6"),
        }
    }

    /// The sysctl's key for link `dev` (`all` and `default` name the namespace-wide entries),
    /// with '/' separators as dots may appear in link names: `net/ipv4/conf/eth0.5/proxy_arp`.
    pub fn key(self, dev: &str) -> String {
        let (family, name) = self.parts();
        format!("net/{family}/conf/{dev}/{name}")
    }
}

impl fmt::Display for LinkSysctl {
    /// The sysctl(8) name with `DEV` for the link: `net.ipv4.conf.DEV.proxy_arp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (family, name) = self.parts();
        write!(f, "net.{family}.conf.DEV.{name}")
    }
}

/// Per-link sysctl operations of one [`Handle`]: `h.sysctl().set("eth0", LinkSysctl::ProxyArp,
/// 1)`, like `sysctl -w net.ipv4.conf.eth0.proxy_arp=1` run inside the handle's namespace.
#[derive(Debug, Clone, Copy)]
pub struct Sysctls<'h> {
    pub(crate) h: &'h Handle,
}

/// The inode of the calling thread's network namespace.
fn current_ns_inode() -> Option<u64> {
    std::fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| m.ino())
}

impl Sysctls<'_> {
    /// Runs `f` where /proc/sys/net is the handle's namespace's.
    fn in_ns<T: Send>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send,
    ) -> Result<std::io::Result<T>> {
        match self.h.home() {
            Some((ns, inode)) if current_ns_inode() != Some(inode) => Ok(ns.run(f)?),
            _ => Ok(f()),
        }
    }

    fn path(dev: &str, key: LinkSysctl) -> Result<String> {
        if dev != "all" && dev != "default" {
            validate_ifname(dev)?;
        }
        Ok(format!("/proc/sys/{}", key.key(dev)))
    }

    fn error(op: &'static str, dev: &str, key: LinkSysctl, e: std::io::Error) -> Error {
        match e.raw_os_error() {
            // No such directory: the link does not exist (or the family is off).
            Some(libc::ENOENT) => Error::NotFound {
                name: format!("{dev} ({})", key.key(dev)),
                errno: libc::ENOENT,
                message: None,
            },
            Some(errno) => Error::Kernel {
                op,
                name: key.key(dev),
                errno,
                message: None,
            },
            None => Error::InvalidArgument {
                what: key.key(dev),
                reason: e.to_string(),
            },
        }
    }

    /// Reads a per-link sysctl (`sysctl net.ipv4.conf.DEV.KEY`); [`Error::NotFound`] when the
    /// link (or its IPv6 configuration) does not exist.
    pub fn get(&self, dev: &str, key: LinkSysctl) -> Result<i64> {
        let path = Self::path(dev, key)?;
        let text = self
            .in_ns(|| std::fs::read_to_string(&path))?
            .map_err(|e| Self::error("sysctl get", dev, key, e))?;
        text.trim().parse().map_err(|_| Error::InvalidArgument {
            what: key.key(dev),
            reason: format!("{:?} is not a number", text.trim()),
        })
    }

    /// Writes a per-link sysctl (`sysctl -w net.ipv4.conf.DEV.KEY=VALUE`).
    pub fn set(&self, dev: &str, key: LinkSysctl, value: i64) -> Result<()> {
        let path = Self::path(dev, key)?;
        let text = value.to_string();
        self.in_ns(|| std::fs::write(&path, text.as_bytes()))?
            .map_err(|e| Self::error("sysctl set", dev, key, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_proc_paths() {
        assert_eq!(
            LinkSysctl::ProxyArp.key("eth0.5"),
            "net/ipv4/conf/eth0.5/proxy_arp"
        );
        assert_eq!(
            LinkSysctl::AcceptDad.key("all"),
            "net/ipv6/conf/all/accept_dad"
        );
        assert_eq!(
            LinkSysctl::RpFilter.to_string(),
            "net.ipv4.conf.DEV.rp_filter"
        );
        assert!(Sysctls::path("../x", LinkSysctl::RpFilter).is_err());
        assert!(Sysctls::path("default", LinkSysctl::RpFilter).is_ok());
    }
}
