//! Addresses: add, replace, del, list, like `ip address`.

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::scope::Scope;
use crate::types::LinkRef;
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

/// An address on a link, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Address {
    /// Index of the link.
    pub index: u32,
    /// Name of the link.
    pub dev: Option<String>,
    /// The address with its prefix length.
    pub addr: IpNet,
    /// Scope.
    pub scope: Scope,
    /// The label (IPv4), e.g. `eth0` or `eth0:1`.
    pub label: Option<String>,
}

impl fmt::Display for Address {
    /// Formats like `ip -o address` after the link name: `inet 10.0.0.1/24 scope global eth0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let family = if self.addr.addr().is_ipv4() {
            "inet"
        } else {
            "inet6"
        };
        write!(f, "{family} {} scope {}", self.addr, self.scope)?;
        match (&self.label, &self.dev) {
            (Some(l), _) => write!(f, " {l}"),
            (None, Some(d)) => write!(f, " {d}"),
            _ => write!(f, " if{}", self.index),
        }
    }
}

pub(crate) fn family(addr: &IpAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

pub(crate) fn address_message(index: u32, net: &IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family(&net.addr());
    msg.header.prefix_len = net.prefix_len();
    msg.header.index = index;
    msg.header.scope = if net.addr().is_loopback() {
        AddressScope::Host
    } else {
        AddressScope::Universe
    };
    msg.attributes.push(AddressAttribute::Local(net.addr()));
    msg.attributes.push(AddressAttribute::Address(net.addr()));
    msg
}

/// Address operations of one [`Handle`]: `h.addr().add("eth0", net)`, like `ip address`.
#[derive(Debug, Clone, Copy)]
pub struct Addresses<'h> {
    pub(crate) h: &'h Handle,
}

impl Addresses<'_> {
    fn change(
        &self,
        op: &'static str,
        link: LinkRef,
        net: IpNet,
        flags: u16,
        del: bool,
    ) -> Result<()> {
        let index = self.h.link().index(link.clone())?;
        let msg = address_message(index, &net);
        let msg = if del {
            RouteNetlinkMessage::DelAddress(msg)
        } else {
            RouteNetlinkMessage::NewAddress(msg)
        };
        self.h
            .request(msg, flags)
            .map_err(|e| Error::from_netlink(op, format!("{net} dev {link}"), e))?;
        Ok(())
    }

    /// `ip address add NET dev LINK`; [`Error::Exists`] if the link has it already.
    pub fn add(&self, link: impl Into<LinkRef>, net: IpNet) -> Result<()> {
        self.change(
            "address add",
            link.into(),
            net,
            NLM_F_CREATE | NLM_F_EXCL,
            false,
        )
    }

    /// `ip address replace NET dev LINK`: add, or update if present (idempotent).
    pub fn replace(&self, link: impl Into<LinkRef>, net: IpNet) -> Result<()> {
        self.change(
            "address replace",
            link.into(),
            net,
            NLM_F_CREATE | NLM_F_REPLACE,
            false,
        )
    }

    /// `ip address del NET dev LINK`; [`Error::NotFound`] if the link does not have it.
    pub fn del(&self, link: impl Into<LinkRef>, net: IpNet) -> Result<()> {
        self.change("address del", link.into(), net, 0, true)
    }

    /// The addresses of one link, or of all links (`ip address show [dev LINK]`).
    pub fn list(&self, link: Option<LinkRef>) -> Result<Vec<Address>> {
        let index = match link {
            Some(l) => Some(self.h.link().index(l)?),
            None => None,
        };
        let replies = self
            .h
            .request(
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
                NLM_F_DUMP,
            )
            .map_err(|e| Error::from_netlink("address show", "all", e))?;
        let names: HashMap<u32, String> = self.h.link().names()?;
        Ok(addresses_of(&replies, index, &names))
    }
}

/// The addresses of an address dump's replies, of link `index` or of all.
pub(crate) fn addresses_of(
    replies: &[RouteNetlinkMessage],
    index: Option<u32>,
    names: &HashMap<u32, String>,
) -> Vec<Address> {
    let mut out = Vec::new();
    for r in replies {
        let RouteNetlinkMessage::NewAddress(m) = r else {
            continue;
        };
        if index.is_some_and(|i| i != m.header.index) {
            continue;
        }
        let mut addr = None;
        let mut local = None;
        let mut label = None;
        for a in &m.attributes {
            match a {
                AddressAttribute::Address(ip) => addr = Some(*ip),
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Label(l) => label = Some(l.clone()),
                _ => {}
            }
        }
        let Some(ip) = local.or(addr) else { continue };
        let Ok(net) = IpNet::new(ip, m.header.prefix_len) else {
            continue;
        };
        out.push(Address {
            index: m.header.index,
            dev: names.get(&m.header.index).cloned(),
            addr: net,
            scope: Scope::from_u8(u8::from(m.header.scope)),
            label,
        });
    }
    out
}
