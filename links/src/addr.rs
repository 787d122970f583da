//! Addresses: add, replace, del, list, like `ip address`.

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::scope::Scope;
use crate::types::LinkRef;
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressMessage, AddressScope, CacheInfo,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// A lifetime of `forever` (the kernel's INFINITY_LIFE_TIME).
const FOREVER: u32 = u32::MAX;

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
    /// The broadcast address (`brd`), IPv4.
    pub broadcast: Option<Ipv4Addr>,
    /// Seconds the address stays valid; `None` for `forever`.
    pub valid_lft: Option<u32>,
    /// Seconds the address stays preferred; `None` for `forever`.
    pub preferred_lft: Option<u32>,
    /// IFA_F_* flags (`noprefixroute`, `nodad`, `tentative`, `dadfailed`, ...), all kept.
    pub flags: u32,
}

/// Address flag names in the order `ip address` prints them.
const ADDR_FLAG_NAMES: &[(AddressFlags, &str)] = &[
    (AddressFlags::Secondary, "secondary"),
    (AddressFlags::Tentative, "tentative"),
    (AddressFlags::Deprecated, "deprecated"),
    (AddressFlags::Homeaddress, "home"),
    (AddressFlags::Nodad, "nodad"),
    (AddressFlags::Optimistic, "optimistic"),
    (AddressFlags::Dadfailed, "dadfailed"),
    (AddressFlags::Noprefixroute, "noprefixroute"),
    (AddressFlags::Mcautojoin, "autojoin"),
];

impl Address {
    /// `noprefixroute`: the kernel made no route for the address's prefix.
    pub fn noprefixroute(&self) -> bool {
        self.flags & AddressFlags::Noprefixroute.bits() != 0
    }
}

impl fmt::Display for Address {
    /// Formats like `ip -o address` after the link name: `inet 10.0.0.1/24 scope global eth0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let family = if self.addr.addr().is_ipv4() {
            "inet"
        } else {
            "inet6"
        };
        write!(f, "{family} {}", self.addr)?;
        if let Some(b) = self.broadcast {
            write!(f, " brd {b}")?;
        }
        write!(f, " scope {}", self.scope)?;
        if self.flags & AddressFlags::Permanent.bits() == 0 {
            f.write_str(" dynamic")?;
        }
        for (flag, name) in ADDR_FLAG_NAMES {
            if self.flags & flag.bits() != 0 {
                write!(f, " {name}")?;
            }
        }
        match (&self.label, &self.dev) {
            (Some(l), _) => write!(f, " {l}")?,
            (None, Some(d)) => write!(f, " {d}")?,
            _ => write!(f, " if{}", self.index)?,
        }
        if self.valid_lft.is_some() || self.preferred_lft.is_some() {
            let lft = |v: Option<u32>| v.map_or("forever".to_owned(), |s| format!("{s}sec"));
            write!(
                f,
                "\\       valid_lft {} preferred_lft {}",
                lft(self.valid_lft),
                lft(self.preferred_lft)
            )?;
        }
        Ok(())
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

/// An address to add, replace or delete: `ip address add NET [brd ADDR|+] [label L]
/// [valid_lft S] [preferred_lft S] [noprefixroute] dev LINK`. An [`IpNet`] converts into one
/// with nothing else set.
///
/// ```
/// use podnet_links::AddressSpec;
/// let a = AddressSpec::new("10.244.1.1/24".parse().unwrap()).broadcast_auto().label("cni0:gw");
/// assert_eq!(a.broadcast_address(), Some("10.244.1.255".parse().unwrap()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressSpec {
    net: IpNet,
    broadcast: Option<Ipv4Addr>,
    broadcast_auto: bool,
    label: Option<String>,
    valid_lft: Option<u32>,
    preferred_lft: Option<u32>,
    noprefixroute: bool,
    nodad: bool,
}

impl From<IpNet> for AddressSpec {
    fn from(net: IpNet) -> AddressSpec {
        AddressSpec::new(net)
    }
}

impl From<&AddressSpec> for AddressSpec {
    fn from(spec: &AddressSpec) -> AddressSpec {
        spec.clone()
    }
}

impl AddressSpec {
    /// The address `net` (address and prefix length).
    pub fn new(net: IpNet) -> AddressSpec {
        AddressSpec {
            net,
            broadcast: None,
            broadcast_auto: false,
            label: None,
            valid_lft: None,
            preferred_lft: None,
            noprefixroute: false,
            nodad: false,
        }
    }

    /// The address.
    pub fn net(&self) -> IpNet {
        self.net
    }

    /// `brd ADDR` (IPv4).
    pub fn broadcast(mut self, brd: Ipv4Addr) -> AddressSpec {
        self.broadcast = Some(brd);
        self
    }

    /// `brd +`: the prefix's broadcast address (IPv4 prefixes shorter than /31; nothing
    /// otherwise), as the reference CNI plugins add their addresses.
    pub fn broadcast_auto(mut self) -> AddressSpec {
        self.broadcast_auto = true;
        self
    }

    /// The broadcast address that will be sent, if any.
    pub fn broadcast_address(&self) -> Option<Ipv4Addr> {
        match (self.broadcast, self.net) {
            (Some(b), _) => Some(b),
            (None, IpNet::V4(n)) if self.broadcast_auto && n.prefix_len() < 31 => {
                Some(n.broadcast())
            }
            _ => None,
        }
    }

    /// `label LABEL` (IPv4): must be the link's name or start with it and a ':'.
    pub fn label(mut self, label: impl Into<String>) -> AddressSpec {
        self.label = Some(label.into());
        self
    }

    /// `valid_lft SECONDS`.
    pub fn valid_lft(mut self, secs: u32) -> AddressSpec {
        self.valid_lft = Some(secs);
        self
    }

    /// `preferred_lft SECONDS` (0 marks the address deprecated).
    pub fn preferred_lft(mut self, secs: u32) -> AddressSpec {
        self.preferred_lft = Some(secs);
        self
    }

    /// `noprefixroute`: do not add a route for the address's prefix.
    pub fn noprefixroute(mut self) -> AddressSpec {
        self.noprefixroute = true;
        self
    }

    /// `nodad` (IPv6): no duplicate address detection for this address.
    pub fn nodad(mut self) -> AddressSpec {
        self.nodad = true;
        self
    }

    fn check(&self) -> Result<()> {
        let bad = |reason: &str| {
            Err(Error::InvalidArgument {
                what: format!("address {}", self.net),
                reason: reason.into(),
            })
        };
        if self.net.addr().is_ipv6() && (self.broadcast.is_some() || self.label.is_some()) {
            return bad("broadcast and label are IPv4 only");
        }
        if let Some(l) = &self.label {
            if l.is_empty() || l.len() > crate::IFNAME_MAX {
                return bad("a label has 1 to 15 bytes");
            }
        }
        match (self.valid_lft, self.preferred_lft) {
            (Some(v), Some(p)) if p > v => bad("preferred_lft is longer than valid_lft"),
            (None, Some(p)) if p != FOREVER => bad("preferred_lft without valid_lft"),
            _ => Ok(()),
        }
    }

    /// The netlink message for link `index`.
    pub(crate) fn to_message(&self, index: u32) -> Result<AddressMessage> {
        self.check()?;
        // In iproute2's order: local, label, flags, address, broadcast, cacheinfo.
        let mut msg = address_message(index, &self.net);
        let address = msg.attributes.pop();
        if let Some(l) = &self.label {
            msg.attributes.push(AddressAttribute::Label(l.clone()));
        }
        let mut flags = AddressFlags::empty();
        if self.noprefixroute {
            flags |= AddressFlags::Noprefixroute;
        }
        if self.nodad {
            flags |= AddressFlags::Nodad;
        }
        if !flags.is_empty() {
            msg.attributes.push(AddressAttribute::Flags(flags));
        }
        msg.attributes.extend(address);
        if let Some(b) = self.broadcast_address() {
            msg.attributes.push(AddressAttribute::Broadcast(b));
        }
        if self.valid_lft.is_some() || self.preferred_lft.is_some() {
            let valid = self.valid_lft.unwrap_or(FOREVER);
            let mut info = CacheInfo::default();
            info.ifa_preferred = self.preferred_lft.unwrap_or(valid);
            info.ifa_valid = valid;
            msg.attributes.push(AddressAttribute::CacheInfo(info));
        }
        Ok(msg)
    }
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
        spec: AddressSpec,
        flags: u16,
        del: bool,
    ) -> Result<()> {
        let net = spec.net;
        let index = self.h.link().index(link.clone())?;
        let msg = spec.to_message(index)?;
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

    /// `ip address add NET [brd ..] [label ..] [valid_lft ..] [noprefixroute] dev LINK`;
    /// [`Error::Exists`] if the link has it already. `addr` is an [`IpNet`] (`add(dev, net)`)
    /// or an [`AddressSpec`] (by value or reference) for the options.
    pub fn add(&self, link: impl Into<LinkRef>, addr: impl Into<AddressSpec>) -> Result<()> {
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.change("address add", link.into(), addr.into(), flags, false)
    }

    /// `ip address replace ...`: add, or update if present (idempotent). `addr` as for
    /// [`add`](Self::add).
    pub fn replace(&self, link: impl Into<LinkRef>, addr: impl Into<AddressSpec>) -> Result<()> {
        let flags = NLM_F_CREATE | NLM_F_REPLACE;
        self.change("address replace", link.into(), addr.into(), flags, false)
    }

    #[deprecated(note = "use add, which takes an AddressSpec too")]
    #[doc(hidden)]
    pub fn add_spec(&self, link: impl Into<LinkRef>, spec: &AddressSpec) -> Result<()> {
        self.add(link, spec)
    }

    #[deprecated(note = "use replace, which takes an AddressSpec too")]
    #[doc(hidden)]
    pub fn replace_spec(&self, link: impl Into<LinkRef>, spec: &AddressSpec) -> Result<()> {
        self.replace(link, spec)
    }

    /// `ip address del NET dev LINK`; [`Error::NotFound`] if the link does not have it.
    pub fn del(&self, link: impl Into<LinkRef>, net: IpNet) -> Result<()> {
        self.change("address del", link.into(), AddressSpec::new(net), 0, true)
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
    replies
        .iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewAddress(m) if index.is_none_or(|i| i == m.header.index) => {
                Address::from_message(m, names)
            }
            _ => None,
        })
        .collect()
}

impl Address {
    /// Reads an address message; the link's name from `names`, else from the label.
    pub(crate) fn from_message(
        m: &AddressMessage,
        names: &HashMap<u32, String>,
    ) -> Option<Address> {
        let mut addr = None;
        let mut local = None;
        let mut label = None;
        let mut broadcast = None;
        let mut lifetimes = (None, None);
        // The header's byte holds the low flags; IFA_FLAGS, when present, all of them.
        let mut flags = u32::from(m.header.flags.bits());
        for a in &m.attributes {
            match a {
                AddressAttribute::Address(ip) => addr = Some(*ip),
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Label(l) => label = Some(l.clone()),
                AddressAttribute::Broadcast(b) => broadcast = Some(*b),
                AddressAttribute::Flags(f) => flags = f.bits(),
                AddressAttribute::CacheInfo(c) => {
                    let finite = |s: u32| (s != FOREVER).then_some(s);
                    lifetimes = (finite(c.ifa_valid), finite(c.ifa_preferred));
                }
                _ => {}
            }
        }
        let net = IpNet::new(local.or(addr)?, m.header.prefix_len).ok()?;
        Some(Address {
            index: m.header.index,
            dev: names
                .get(&m.header.index)
                .cloned()
                .or_else(|| label.clone()),
            addr: net,
            scope: Scope::from_u8(u8::from(m.header.scope)),
            label,
            broadcast,
            valid_lft: lifetimes.0,
            preferred_lft: lifetimes.1,
            flags,
        })
    }
}
