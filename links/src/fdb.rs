//! Bridge forwarding database entries on bridges and VXLAN devices: add, append, replace,
//! del, list, like `bridge fdb`.

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::neigh::{
    NeighState, NeighbourEntry, change_entry, dump_entries, entries_of, neigh_address,
};
use crate::types::{LinkRef, MacAddr};
use crate::vxlan::VNI_MAX;
use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

/// One forwarding entry: frames to `mac` leave through `dev` (to `dst`, for VXLAN).
///
/// ```
/// use podnet_links::{FdbEntry, MacAddr};
/// // flannel's vxlan backend: peer VTEP MAC -> peer node IP.
/// let e = FdbEntry::new("c6:d2:32:6f:8f:44".parse().unwrap(), "flannel.1")
///     .dst("198.18.0.2".parse().unwrap());
/// assert_eq!(e.to_string(), "c6:d2:32:6f:8f:44 dev flannel.1 dst 198.18.0.2 self permanent");
/// // Head-end replication: the all-zeros MAC, appended once per remote VTEP.
/// let flood = FdbEntry::new(MacAddr::ZERO, "vxlan0").dst("198.18.0.3".parse().unwrap());
/// # let _ = flood;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FdbEntry {
    /// The MAC address (all zeros: default destination, for head-end replication).
    pub mac: MacAddr,
    /// The bridge port or VXLAN device.
    pub dev: LinkRef,
    /// Remote VTEP address (VXLAN).
    pub dst: Option<IpAddr>,
    /// VNI (VXLAN, when it differs from the device's).
    pub vni: Option<u32>,
    /// UDP destination port (VXLAN, when it differs from the device's).
    pub port: Option<u16>,
    /// VLAN id.
    pub vlan: Option<u16>,
    /// The entry lives in the device's own table (`self`, NTF_SELF).
    pub own: bool,
    /// The entry lives in the master bridge's table (`master`, NTF_MASTER).
    pub master: bool,
    /// Index of the master bridge, on entries read from the kernel.
    pub master_index: Option<u32>,
    /// State: `permanent`, `static` (noarp), or learnt (reachable/stale).
    pub state: NeighState,
}

impl FdbEntry {
    /// A permanent `self` entry for `mac` on `dev`, as `bridge fdb add MAC dev DEV` makes.
    pub fn new(mac: MacAddr, dev: impl Into<LinkRef>) -> FdbEntry {
        FdbEntry {
            mac,
            dev: dev.into(),
            dst: None,
            vni: None,
            port: None,
            vlan: None,
            own: true,
            master: false,
            master_index: None,
            state: NeighState::Permanent,
        }
    }

    /// `dst IP`.
    pub fn dst(mut self, ip: IpAddr) -> FdbEntry {
        self.dst = Some(ip);
        self
    }

    /// `vni N`.
    pub fn vni(mut self, vni: u32) -> FdbEntry {
        self.vni = Some(vni);
        self
    }

    /// `port N`.
    pub fn port(mut self, port: u16) -> FdbEntry {
        self.port = Some(port);
        self
    }

    /// `vlan N`.
    pub fn vlan(mut self, vlan: u16) -> FdbEntry {
        self.vlan = Some(vlan);
        self
    }

    /// `master`: program the master bridge's table instead of the device's own.
    pub fn in_master(mut self) -> FdbEntry {
        self.master = true;
        self.own = false;
        self
    }

    /// The entry's state (`permanent` by default; `Noarp` is `static`).
    pub fn state(mut self, state: NeighState) -> FdbEntry {
        self.state = state;
        self
    }

    pub(crate) fn to_message(&self, index: u32) -> Result<NeighbourMessage> {
        if let Some(v) = self.vni {
            if v > VNI_MAX {
                return Err(Error::InvalidArgument {
                    what: format!("fdb {} vni", self.mac),
                    reason: format!("{v} is above 2^24-1"),
                });
            }
        }
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        m.header.ifindex = index;
        m.header.state = self.state.to_nl();
        if self.own {
            m.header.flags |= NeighbourFlags::Own;
        }
        if self.master {
            m.header.flags |= NeighbourFlags::Controller;
        }
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(self.mac.0.to_vec()));
        if let Some(ip) = self.dst {
            m.attributes
                .push(NeighbourAttribute::Destination(neigh_address(ip)));
        }
        if let Some(v) = self.vlan {
            m.attributes.push(NeighbourAttribute::Vlan(v));
        }
        if let Some(p) = self.port {
            m.attributes.push(NeighbourAttribute::Port(p));
        }
        if let Some(v) = self.vni {
            m.attributes.push(NeighbourAttribute::Vni(v));
        }
        Ok(m)
    }

    pub(crate) fn from_message(
        m: &NeighbourMessage,
        names: &HashMap<u32, String>,
    ) -> Option<FdbEntry> {
        let index = m.header.ifindex;
        let mut e = FdbEntry::new(
            MacAddr::ZERO,
            names
                .get(&index)
                .map_or(LinkRef::Index(index), |n| LinkRef::Name(n.clone())),
        );
        let mut mac = None;
        for a in &m.attributes {
            match a {
                NeighbourAttribute::LinkLayerAddress(b) => mac = MacAddr::from_slice(b).ok(),
                NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                    e.dst = Some(IpAddr::V4(*a))
                }
                // In AF_BRIDGE messages the address is not typed by the family: by length.
                NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                    e.dst = match b.len() {
                        4 => <[u8; 4]>::try_from(b.as_slice()).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(b.as_slice()).ok().map(IpAddr::from),
                        _ => None,
                    }
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                    e.dst = Some(IpAddr::V6(*a))
                }
                NeighbourAttribute::Vlan(v) => e.vlan = Some(*v),
                NeighbourAttribute::Port(p) => e.port = Some(*p),
                NeighbourAttribute::Vni(v) => e.vni = Some(*v),
                NeighbourAttribute::Controller(c) => e.master_index = Some(*c),
                _ => {}
            }
        }
        e.mac = mac?;
        e.own = m.header.flags.contains(NeighbourFlags::Own);
        // Entries of a bridge's own table come back with NDA_MASTER but not always NTF_MASTER;
        // mark them so that passing a listed entry to `del` targets the right table.
        e.master = m.header.flags.contains(NeighbourFlags::Controller)
            || (e.master_index.is_some() && !e.own);
        e.state = NeighState::from_nl(m.header.state);
        Some(e)
    }
}

impl fmt::Display for FdbEntry {
    /// Formats like one line of `bridge fdb show`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} dev {}", self.mac, self.dev)?;
        if let Some(v) = self.vlan {
            write!(f, " vlan {v}")?;
        }
        if let Some(d) = self.dst {
            write!(f, " dst {d}")?;
        }
        if let Some(p) = self.port {
            write!(f, " port {p}")?;
        }
        if let Some(v) = self.vni {
            write!(f, " vni {v}")?;
        }
        if self.own {
            f.write_str(" self")?;
        }
        if let Some(m) = self.master_index {
            write!(f, " master if{m}")?;
        } else if self.master {
            f.write_str(" master")?;
        }
        match self.state {
            NeighState::Permanent => f.write_str(" permanent"),
            NeighState::Noarp => f.write_str(" static"),
            NeighState::Stale => f.write_str(" stale"),
            _ => Ok(()),
        }
    }
}

/// FDB operations of one [`Handle`]: `h.fdb().append(&e)`, like `bridge fdb`.
#[derive(Debug, Clone, Copy)]
pub struct Fdb<'h> {
    pub(crate) h: &'h Handle,
}

impl NeighbourEntry for FdbEntry {
    fn dev(&self) -> &LinkRef {
        &self.dev
    }

    fn what(&self) -> String {
        format!("{} dev {}", self.mac, self.dev)
    }

    fn request(&self, index: u32) -> Result<NeighbourMessage> {
        self.to_message(index)
    }

    fn read(m: &NeighbourMessage, names: &HashMap<u32, String>) -> Option<Self> {
        FdbEntry::from_message(m, names)
    }
}

impl Fdb<'_> {
    /// `bridge fdb add`; [`Error::Exists`] if the MAC has an entry.
    pub fn add(&self, e: &FdbEntry) -> Result<()> {
        change_entry(self.h, "fdb add", e, NLM_F_CREATE | NLM_F_EXCL, false)
    }

    /// `bridge fdb append`: another destination for the same MAC (head-end replication).
    pub fn append(&self, e: &FdbEntry) -> Result<()> {
        change_entry(self.h, "fdb append", e, NLM_F_CREATE | NLM_F_APPEND, false)
    }

    /// `bridge fdb replace`: add or overwrite (idempotent).
    pub fn replace(&self, e: &FdbEntry) -> Result<()> {
        change_entry(
            self.h,
            "fdb replace",
            e,
            NLM_F_CREATE | NLM_F_REPLACE,
            false,
        )
    }

    /// `bridge fdb del` (with `dst`, only that destination of the MAC).
    pub fn del(&self, e: &FdbEntry) -> Result<()> {
        change_entry(self.h, "fdb del", e, 0, true)
    }

    /// The entries of one device, or of every device (`bridge fdb show [dev DEV]`).
    pub fn list(&self, dev: Option<LinkRef>) -> Result<Vec<FdbEntry>> {
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Bridge;
        dump_entries(self.h, "fdb show", dev, req)
    }
}

/// The FDB entries of an `AF_BRIDGE` neighbour dump's replies, of link `index` or of all.
pub(crate) fn fdb_entries_of(
    replies: &[RouteNetlinkMessage],
    index: Option<u32>,
    names: &HashMap<u32, String>,
) -> Vec<FdbEntry> {
    entries_of(replies, index, names)
}
