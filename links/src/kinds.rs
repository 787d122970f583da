//! Link kinds stacked on a parent device: macvlan and macvtap, ipvlan, VLAN (802.1Q/802.1ad),
//! like `ip link add NAME link PARENT type KIND ...`; and how they read back.

use crate::error::{Error, Result};
use crate::link::{LinkSpec, Resolver, common_attrs, kind_attr, sealed};
use crate::nl_enum::nl_enum;
use crate::types::{LinkRef, MacAddr, validate_ifname};
use netlink_packet_route::link::{
    InfoData, InfoIpVlan, InfoKind, InfoMacVlan, InfoMacVtap, InfoVlan, IpVlanFlags, IpVlanMode,
    LinkAttribute, LinkInfo, LinkMessage, MacVlanMode, VlanProtocol as NlVlanProtocol,
};
use std::fmt;

/// The mode of a macvlan or macvtap device (`mode bridge|private|vepa|passthru|source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum MacvlanMode {
    /// No traffic between sibling devices of the same parent.
    Private,
    /// Sibling traffic goes out through the parent, to a hairpinning switch.
    Vepa,
    /// Siblings talk to each other directly (the CNI `macvlan` plugin's default).
    #[default]
    Bridge,
    /// One device takes over the parent (`passthru`).
    Passthru,
    /// Only frames from listed source MACs.
    Source,
    /// Any other mode number.
    Other(u32),
}

nl_enum! {
    MacvlanMode <=> MacVlanMode, other: u32 => MacVlanMode::Other, shown "{}";
    Private => Private, "private";
    Vepa => Vepa, "vepa";
    Bridge => Bridge, "bridge";
    Passthru => Passthrough, "passthru";
    Source => Source, "source";
}

/// The mode of an ipvlan device (`mode l2|l3|l3s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum IpvlanMode {
    /// Layer 2: the devices share the parent's MAC and see ARP/NDP.
    #[default]
    L2,
    /// Layer 3: the parent routes; no broadcast or multicast.
    L3,
    /// Layer 3 with the host's netfilter hooks on the way (`l3s`).
    L3s,
    /// Any other mode number.
    Other(u16),
}

nl_enum! {
    IpvlanMode <=> IpVlanMode, other: u16 => IpVlanMode::Other, shown "{}";
    L2 => L2, "l2";
    L3 => L3, "l3";
    L3s => L3S, "l3s";
}

/// The tag protocol of a VLAN device (`protocol 802.1Q|802.1ad`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VlanProtocol {
    /// 802.1Q, ethertype 0x8100 (the default).
    #[default]
    Dot1Q,
    /// 802.1ad (QinQ service tag), ethertype 0x88a8.
    Dot1Ad,
}

impl fmt::Display for VlanProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VlanProtocol::Dot1Q => "802.1Q",
            VlanProtocol::Dot1Ad => "802.1ad",
        })
    }
}

/// VLAN settings read back from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanInfo {
    /// The VLAN id (0-4094).
    pub id: u16,
    /// The tag protocol.
    pub protocol: VlanProtocol,
}

/// Kind-specific settings of a stacked device, read back from IFLA_INFO_DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StackedInfo {
    /// A macvlan device and its mode.
    Macvlan(MacvlanMode),
    /// A macvtap device and its mode.
    Macvtap(MacvlanMode),
    /// An ipvlan device and its mode.
    Ipvlan(IpvlanMode),
    /// A VLAN device.
    Vlan(VlanInfo),
}

impl StackedInfo {
    /// Reads IFLA_INFO_DATA of the kinds above; `None` for any other.
    pub(crate) fn from_data(data: &InfoData) -> Option<StackedInfo> {
        Some(match data {
            InfoData::MacVlan(attrs) => StackedInfo::Macvlan(
                attrs
                    .iter()
                    .find_map(|a| match a {
                        InfoMacVlan::Mode(m) => Some(MacvlanMode::from_nl(*m)),
                        _ => None,
                    })
                    .unwrap_or_default(),
            ),
            InfoData::MacVtap(attrs) => StackedInfo::Macvtap(
                attrs
                    .iter()
                    .find_map(|a| match a {
                        InfoMacVtap::Mode(m) => Some(MacvlanMode::from_nl(*m)),
                        _ => None,
                    })
                    .unwrap_or_default(),
            ),
            InfoData::IpVlan(attrs) => StackedInfo::Ipvlan(
                attrs
                    .iter()
                    .find_map(|a| match a {
                        InfoIpVlan::Mode(m) => Some(IpvlanMode::from_nl(*m)),
                        _ => None,
                    })
                    .unwrap_or_default(),
            ),
            InfoData::Vlan(attrs) => {
                let mut v = VlanInfo {
                    id: 0,
                    protocol: VlanProtocol::Dot1Q,
                };
                for a in attrs {
                    match a {
                        InfoVlan::Id(id) => v.id = *id,
                        InfoVlan::Protocol(NlVlanProtocol::Ieee8021Ad) => {
                            v.protocol = VlanProtocol::Dot1Ad
                        }
                        _ => {}
                    }
                }
                StackedInfo::Vlan(v)
            }
            _ => return None,
        })
    }
}

impl fmt::Display for StackedInfo {
    /// The kind's line of `ip -d link show`: `macvlan mode bridge`, `vlan protocol 802.1Q id 5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackedInfo::Macvlan(m) => write!(f, "macvlan mode {m}"),
            StackedInfo::Macvtap(m) => write!(f, "macvtap mode {m}"),
            StackedInfo::Ipvlan(m) => write!(f, "ipvlan  mode {m} bridge"),
            StackedInfo::Vlan(v) => write!(f, "vlan protocol {} id {}", v.protocol, v.id),
        }
    }
}

/// The fields every stacked kind has: its name, its parent, MTU and MAC.
#[derive(Debug, Clone)]
struct Stacked {
    name: String,
    parent: LinkRef,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
}

impl Stacked {
    fn message(
        &self,
        resolve: &mut Resolver<'_>,
        data: InfoData,
        kind: InfoKind,
    ) -> Result<LinkMessage> {
        validate_ifname(&self.name)?;
        let parent = resolve(&self.parent)?;
        let mut msg = LinkMessage::default();
        // IFLA_LINK first, as `ip link add ... link PARENT` sends it.
        msg.attributes.push(LinkAttribute::Link(parent));
        common_attrs(&mut msg, &self.name, self.mtu, self.mac);
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            kind_attr(kind),
            LinkInfo::Data(data),
        ]));
        Ok(msg)
    }
}

impl Stacked {
    fn new(name: String, parent: LinkRef) -> Stacked {
        Stacked {
            name,
            parent,
            mtu: None,
            mac: None,
        }
    }
}

/// Defines the builder methods every stacked kind has.
macro_rules! stacked_methods {
    ($ty:ident) => {
        impl $ty {
            /// MTU (at most the parent's).
            pub fn mtu(mut self, mtu: u32) -> $ty {
                self.base.mtu = Some(mtu);
                self
            }

            /// MAC address (otherwise the kernel picks one; ipvlan devices take the parent's).
            pub fn mac(mut self, mac: MacAddr) -> $ty {
                self.base.mac = Some(mac);
                self
            }
        }

        impl sealed::Sealed for $ty {}
    };
}

/// Defines macvlan and macvtap, which differ only in their kind: a device on a parent, with a
/// [`MacvlanMode`] (bridge by default).
macro_rules! macvlan_kind {
    ($(#[$doc:meta])* $ty:ident, $kind:ident, $data:ident, $mode:ident, $new_doc:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $ty {
            base: Stacked,
            mode: MacvlanMode,
        }

        impl $ty {
            #[doc = $new_doc]
            pub fn new(name: impl Into<String>, parent: impl Into<LinkRef>) -> $ty {
                $ty {
                    base: Stacked::new(name.into(), parent.into()),
                    mode: MacvlanMode::Bridge,
                }
            }

            /// `mode MODE`.
            pub fn mode(mut self, mode: MacvlanMode) -> $ty {
                self.mode = mode;
                self
            }
        }

        stacked_methods!($ty);

        impl LinkSpec for $ty {
            fn name(&self) -> &str {
                &self.base.name
            }

            #[allow(private_interfaces)]
            fn to_message(&self, resolve: &mut Resolver<'_>) -> Result<LinkMessage> {
                let data = InfoData::$kind(vec![$data::$mode(self.mode.to_nl())]);
                self.base.message(resolve, data, InfoKind::$kind)
            }
        }
    };
}

macvlan_kind!(
    /// A macvlan device: `ip link add NAME link PARENT type macvlan mode MODE`.
    Macvlan,
    MacVlan,
    InfoMacVlan,
    Mode,
    "A macvlan device `name` on `parent`, in bridge mode."
);

macvlan_kind!(
    /// A macvtap device (a macvlan with a /dev/tapN character device):
    /// `ip link add NAME link PARENT type macvtap mode MODE`.
    Macvtap,
    MacVtap,
    InfoMacVtap,
    Mode,
    "A macvtap device `name` on `parent`, in bridge mode."
);

/// An ipvlan device: `ip link add NAME link PARENT type ipvlan mode MODE` (kernels without
/// CONFIG_IPVLAN refuse it with EOPNOTSUPP, "Unknown device type").
///
/// The mode belongs to the parent, not to each device: all ipvlan devices on one parent share
/// it, and adding one in another mode switches it for all of them (each then reads back with
/// the new mode), as the kernel keeps it in the parent's ipvlan port.
#[derive(Debug, Clone)]
pub struct Ipvlan {
    base: Stacked,
    mode: IpvlanMode,
}

impl Ipvlan {
    /// An ipvlan device `name` on `parent`, in l2 mode.
    pub fn new(name: impl Into<String>, parent: impl Into<LinkRef>) -> Ipvlan {
        Ipvlan {
            base: Stacked::new(name.into(), parent.into()),
            mode: IpvlanMode::L2,
        }
    }

    /// `mode MODE`.
    pub fn mode(mut self, mode: IpvlanMode) -> Ipvlan {
        self.mode = mode;
        self
    }
}

stacked_methods!(Ipvlan);

impl LinkSpec for Ipvlan {
    fn name(&self) -> &str {
        &self.base.name
    }

    #[allow(private_interfaces)]
    fn to_message(&self, resolve: &mut Resolver<'_>) -> Result<LinkMessage> {
        let data = InfoData::IpVlan(vec![
            InfoIpVlan::Mode(self.mode.to_nl()),
            InfoIpVlan::Flags(IpVlanFlags::empty()),
        ]);
        self.base.message(resolve, data, InfoKind::IpVlan)
    }
}

/// The largest VLAN id (4095 is reserved).
pub const VLAN_ID_MAX: u16 = 4094;

/// A VLAN device: `ip link add NAME link PARENT type vlan [protocol P] id ID` (kernels without
/// CONFIG_VLAN_8021Q refuse it with EOPNOTSUPP).
#[derive(Debug, Clone)]
pub struct Vlan {
    base: Stacked,
    id: u16,
    protocol: VlanProtocol,
}

impl Vlan {
    /// VLAN `id` on `parent`, 802.1Q. The id is checked (at most [`VLAN_ID_MAX`]) by `add`.
    pub fn new(name: impl Into<String>, parent: impl Into<LinkRef>, id: u16) -> Vlan {
        Vlan {
            base: Stacked::new(name.into(), parent.into()),
            id,
            protocol: VlanProtocol::Dot1Q,
        }
    }

    /// `protocol 802.1Q|802.1ad`.
    pub fn protocol(mut self, protocol: VlanProtocol) -> Vlan {
        self.protocol = protocol;
        self
    }
}

stacked_methods!(Vlan);

impl LinkSpec for Vlan {
    fn name(&self) -> &str {
        &self.base.name
    }

    #[allow(private_interfaces)]
    fn to_message(&self, resolve: &mut Resolver<'_>) -> Result<LinkMessage> {
        if self.id > VLAN_ID_MAX {
            return Err(Error::InvalidArgument {
                what: format!("VLAN id of {}", self.base.name),
                reason: format!("{} is above {VLAN_ID_MAX}", self.id),
            });
        }
        let protocol = match self.protocol {
            VlanProtocol::Dot1Q => NlVlanProtocol::Ieee8021Q,
            VlanProtocol::Dot1Ad => NlVlanProtocol::Ieee8021Ad,
        };
        let data = InfoData::Vlan(vec![InfoVlan::Protocol(protocol), InfoVlan::Id(self.id)]);
        self.base.message(resolve, data, InfoKind::Vlan)
    }
}
