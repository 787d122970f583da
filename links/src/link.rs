//! Links (network devices): list, get, add (veth, bridge), delete, and `set` (up/down, MTU,
//! MAC address, master, name, namespace), like `ip link`.

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::kinds::StackedInfo;
use crate::settings::{AddrGenMode, BridgePort, BridgePortSet, LinkStats};
use crate::types::{LinkRef, MacAddr, validate_ifname};
use netlink_packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoPortData, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    State,
};
use podnet_netns::NetNs;
use std::collections::HashMap;
use std::fmt;
use std::os::fd::AsRawFd;

/// The kind of a link, from IFLA_INFO_KIND.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinkKind {
    /// A veth pair end.
    Veth,
    /// A Linux bridge.
    Bridge,
    /// A VXLAN tunnel device.
    Vxlan,
    /// A TUN or TAP device.
    Tun,
    /// A dummy device.
    Dummy,
    /// An intermediate functional block device (traffic redirected to it by tc is shaped
    /// there, as the CNI `bandwidth` plugin does for ingress).
    Ifb,
    /// A macvlan device.
    Macvlan,
    /// A macvtap device.
    Macvtap,
    /// An ipvlan device.
    Ipvlan,
    /// An 802.1Q/802.1ad VLAN device.
    Vlan,
    /// Any other kind, by its kernel name.
    Other(String),
}

impl LinkKind {
    fn from_info(kind: &InfoKind) -> LinkKind {
        match kind {
            InfoKind::Veth => LinkKind::Veth,
            InfoKind::Bridge => LinkKind::Bridge,
            InfoKind::Vxlan => LinkKind::Vxlan,
            InfoKind::Tun => LinkKind::Tun,
            InfoKind::Dummy => LinkKind::Dummy,
            InfoKind::Ifb => LinkKind::Ifb,
            InfoKind::MacVlan => LinkKind::Macvlan,
            InfoKind::MacVtap => LinkKind::Macvtap,
            InfoKind::IpVlan => LinkKind::Ipvlan,
            InfoKind::Vlan => LinkKind::Vlan,
            other => LinkKind::Other(other.to_string()),
        }
    }
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkKind::Veth => "veth",
            LinkKind::Bridge => "bridge",
            LinkKind::Vxlan => "vxlan",
            LinkKind::Tun => "tun",
            LinkKind::Dummy => "dummy",
            LinkKind::Ifb => "ifb",
            LinkKind::Macvlan => "macvlan",
            LinkKind::Macvtap => "macvtap",
            LinkKind::Ipvlan => "ipvlan",
            LinkKind::Vlan => "vlan",
            LinkKind::Other(s) => s,
        })
    }
}

/// A link as the kernel reports it (`ip link show`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Kind, when the device has one (physical devices and loopback have none).
    pub kind: Option<LinkKind>,
    /// Raw IFF_* flags.
    pub flags: u32,
    /// MTU.
    pub mtu: u32,
    /// Hardware address, for devices that have one.
    pub mac: Option<MacAddr>,
    /// Index of the master (bridge) device.
    pub master: Option<u32>,
    /// Name of the master device, when it is in the same namespace.
    pub master_name: Option<String>,
    /// IFLA_LINK: for a veth, the peer's index (in the peer's namespace).
    pub link: Option<u32>,
    /// Name of the IFLA_LINK device, when it is in the same namespace.
    pub link_name: Option<String>,
    /// The namespace id of the peer's namespace, when it lives elsewhere.
    pub link_netnsid: Option<i32>,
    /// Operational state (`UP`, `DOWN`, `UNKNOWN`, `LOWERLAYERDOWN`, ...).
    pub oper_state: String,
    /// Transmit queue length.
    pub txqlen: Option<u32>,
    /// VXLAN settings, for VXLAN devices.
    pub vxlan: Option<crate::vxlan::VxlanInfo>,
    /// Name of the VXLAN underlay device, when it is in the same namespace.
    pub vxlan_dev_name: Option<String>,
    /// TUN/TAP settings, for TUN/TAP devices.
    pub tun: Option<crate::tun::TunInfo>,
    /// macvlan, macvtap, ipvlan and VLAN settings, for those kinds.
    pub stacked: Option<StackedInfo>,
    /// Bridge port settings, for a link attached to a bridge.
    pub bridge_port: Option<BridgePort>,
    /// `alias`: the link's description (IFLA_IFALIAS).
    pub alias: Option<String>,
    /// `group`: the link's device group (0 is `default`).
    pub group: u32,
    /// How many times promiscuous mode was asked for (IFF_PROMISC shows whether it is on).
    pub promiscuity: u32,
    /// How many times all-multicast mode was asked for (IFF_ALLMULTI shows whether it is on).
    pub allmulti: u32,
    /// IPv6 address generation mode, when the link has IPv6.
    pub addrgenmode: Option<AddrGenMode>,
    /// Counters (`ip -s link`).
    pub stats: Option<LinkStats>,
}

const IFF_UP: u32 = 0x1;
const IFF_RUNNING: u32 = 0x40;
const IFF_LOWER_UP: u32 = 0x1_0000;

impl Link {
    /// Administratively up (IFF_UP).
    pub fn is_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }

    /// Carrier present (IFF_LOWER_UP).
    pub fn is_lower_up(&self) -> bool {
        self.flags & IFF_LOWER_UP != 0
    }

    pub(crate) fn from_message(msg: &LinkMessage) -> Link {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            flags: msg.header.flags.bits(),
            mtu: 0,
            mac: None,
            master: None,
            master_name: None,
            link: None,
            link_name: None,
            link_netnsid: None,
            oper_state: "UNKNOWN".into(),
            txqlen: None,
            vxlan: None,
            vxlan_dev_name: None,
            tun: None,
            stacked: None,
            bridge_port: None,
            alias: None,
            group: 0,
            promiscuity: 0,
            allmulti: 0,
            addrgenmode: None,
            stats: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Mtu(m) => link.mtu = *m,
                LinkAttribute::Address(a) => link.mac = MacAddr::from_slice(a).ok(),
                LinkAttribute::Controller(m) if *m != 0 => link.master = Some(*m),
                // The kernel omits IFLA_LINK when it names the device itself.
                LinkAttribute::Link(l) if *l != 0 => link.link = Some(*l),
                LinkAttribute::LinkNetNsId(id) => link.link_netnsid = Some(*id),
                LinkAttribute::TxQueueLen(q) => link.txqlen = Some(*q),
                LinkAttribute::OperState(s) => link.oper_state = oper_state_name(s).into(),
                LinkAttribute::IfAlias(a) => link.alias = Some(a.clone()),
                LinkAttribute::Group(g) => link.group = *g,
                LinkAttribute::Promiscuity(n) => link.promiscuity = *n,
                LinkAttribute::AllMulticast(n) => link.allmulti = *n,
                LinkAttribute::Stats64(st) => link.stats = Some(LinkStats::from_nl(st)),
                LinkAttribute::AfSpecUnspec(_) => link.addrgenmode = AddrGenMode::from_attr(attr),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(k) => link.kind = Some(LinkKind::from_info(k)),
                            LinkInfo::Data(InfoData::Vxlan(v)) => {
                                link.vxlan = Some(crate::vxlan::VxlanInfo::from_attrs(v))
                            }
                            LinkInfo::Data(InfoData::Tun(t)) => {
                                let nlas: Vec<_> = t
                                    .iter()
                                    .filter_map(|t| match t {
                                        netlink_packet_route::link::InfoTun::Other(n) => {
                                            Some(n.clone())
                                        }
                                        _ => None,
                                    })
                                    .collect();
                                link.tun = Some(crate::tun::TunInfo::from_nlas(&nlas))
                            }
                            LinkInfo::Data(d) => link.stacked = StackedInfo::from_data(d),
                            LinkInfo::PortData(InfoPortData::BridgePort(p)) => {
                                link.bridge_port = Some(BridgePort::from_nl(p))
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }

    /// Fills `master_name` and `link_name` from a table of the namespace's links.
    pub(crate) fn resolve_names(&mut self, names: &HashMap<u32, String>) {
        self.master_name = self.master.and_then(|m| names.get(&m).cloned());
        if self.link_netnsid.is_none() {
            self.link_name = self.link.and_then(|l| names.get(&l).cloned());
        }
        self.vxlan_dev_name = self
            .vxlan
            .as_ref()
            .and_then(|v| v.dev)
            .and_then(|i| names.get(&i).cloned());
    }
}

fn oper_state_name(s: &State) -> &'static str {
    match s {
        State::Up => "UP",
        State::Down => "DOWN",
        State::LowerLayerDown => "LOWERLAYERDOWN",
        State::Dormant => "DORMANT",
        State::NotPresent => "NOTPRESENT",
        State::Testing => "TESTING",
        _ => "UNKNOWN",
    }
}

/// The links of a link dump's replies, in index order (names of masters and lower devices not
/// resolved yet).
pub(crate) fn links_of(replies: &[RouteNetlinkMessage]) -> Vec<Link> {
    let mut links: Vec<Link> = replies
        .iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewLink(m) => Some(Link::from_message(m)),
            _ => None,
        })
        .collect();
    links.sort_by_key(|l| l.index);
    links
}

/// Flag names in the order `ip link` prints them.
const FLAG_NAMES: &[(u32, &str)] = &[
    (0x8, "LOOPBACK"),
    (0x2, "BROADCAST"),
    (0x10, "POINTOPOINT"),
    (0x1000, "MULTICAST"),
    (0x80, "NOARP"),
    (0x200, "ALLMULTI"),
    (0x100, "PROMISC"),
    (0x400, "MASTER"),
    (0x800, "SLAVE"),
    (0x1, "UP"),
    (0x1_0000, "LOWER_UP"),
    (0x2_0000, "DORMANT"),
];

impl fmt::Display for Link {
    /// Formats like `ip -d link show`: two lines, then the kind's settings, bridge port flags
    /// and alias when there are any; with `{:#}`, the counters as `ip -s link` adds them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.index, self.name)?;
        match (&self.link_name, self.link) {
            (Some(n), _) => write!(f, "@{n}")?,
            (None, Some(i)) => write!(f, "@if{i}")?,
            _ => {}
        }
        f.write_str(": <")?;
        let mut names: Vec<&str> = Vec::new();
        if self.flags & IFF_UP != 0 && self.flags & IFF_RUNNING == 0 {
            names.push("NO-CARRIER");
        }
        names.extend(
            FLAG_NAMES
                .iter()
                .filter(|(bit, _)| self.flags & bit != 0)
                .map(|(_, n)| *n),
        );
        write!(f, "{}> mtu {}", names.join(","), self.mtu)?;
        match (&self.master_name, self.master) {
            (Some(n), _) => write!(f, " master {n}")?,
            (None, Some(i)) => write!(f, " master if{i}")?,
            _ => {}
        }
        write!(f, " state {}", self.oper_state)?;
        if self.group != 0 {
            write!(f, " group {}", self.group)?;
        }
        if let Some(q) = self.txqlen.filter(|q| *q != 0) {
            write!(f, " qlen {q}")?;
        }
        f.write_str("\n    ")?;
        match self.mac {
            Some(mac) if self.flags & 0x8 != 0 => write!(f, "link/loopback {mac} brd {mac}")?,
            Some(mac) => write!(f, "link/ether {mac} brd {}", MacAddr::BROADCAST)?,
            None => f.write_str("link/none")?,
        }
        if let Some(id) = self.link_netnsid {
            write!(f, " link-netnsid {id}")?;
        }
        if let Some(v) = &self.vxlan {
            f.write_str("\n    ")?;
            v.write(f, self.vxlan_dev_name.as_deref())?;
        } else if let Some(t) = &self.tun {
            write!(f, "\n    {t}")?;
        } else if let Some(s) = &self.stacked {
            write!(f, "\n    {s}")?;
        } else if let Some(kind) = &self.kind {
            write!(f, "\n    {kind}")?;
        }
        if let Some(p) = &self.bridge_port {
            write!(f, "\n    {p}")?;
        }
        if let Some(m) = self.addrgenmode {
            write!(f, " addrgenmode {m}")?;
        }
        if let Some(a) = &self.alias {
            write!(f, "\n    alias {a}")?;
        }
        if let (true, Some(st)) = (f.alternate(), &self.stats) {
            write!(f, "\n{st}")?;
        }
        Ok(())
    }
}

pub(crate) mod sealed {
    pub trait Sealed {}
    pub trait SealedAdd {}
    impl<T: super::LinkSpec> SealedAdd for T {}
    impl SealedAdd for crate::tun::Tun {}
}

/// What [`Links::add`] makes: every [`LinkSpec`] (made by an RTM_NEWLINK request; `add`
/// returns `()`) and [`Tun`](crate::Tun) (made through /dev/net/tun inside the handle's
/// namespace; `add` returns the [`TunDevice`](crate::TunDevice) with its queue files).
pub trait LinkAdd: sealed::SealedAdd {
    /// What `add` returns.
    type Added;
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn add_with(&self, links: &Links<'_>) -> Result<Self::Added>;
}

impl<T: LinkSpec> LinkAdd for T {
    type Added = ();

    #[allow(private_interfaces)]
    fn add_with(&self, links: &Links<'_>) -> Result<()> {
        let msg = self.to_message(&mut |l: &LinkRef| links.index(l.clone()))?;
        links
            .h
            .request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
            .map_err(|e| Error::from_netlink("link add", self.name(), e))?;
        Ok(())
    }
}

/// Resolves a link reference to an index (for specs that name another device).
pub(crate) type Resolver<'a> = dyn FnMut(&LinkRef) -> Result<u32> + 'a;

/// A link that can be created with [`Links::add`]: [`Veth`], [`Bridge`],
/// [`Vxlan`](crate::Vxlan), [`Dummy`].
pub trait LinkSpec: sealed::Sealed {
    /// The name of the link to create.
    fn name(&self) -> &str;
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn to_message(&self, resolve: &mut Resolver<'_>) -> Result<LinkMessage>;
}

pub(crate) fn common_attrs(
    msg: &mut LinkMessage,
    name: &str,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
) {
    msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
    if let Some(m) = mtu {
        msg.attributes.push(LinkAttribute::Mtu(m));
    }
    if let Some(mac) = mac {
        msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    }
}

/// `IFLA_INFO_KIND` of a link podnet-links asks for: the kind's name without the C string's
/// NUL, as iproute2 sends it (`addattr_l(.., strlen(type))`), so that a request is the same
/// bytes as `ip link add ... type KIND`. The kernel takes both (it copies the name with
/// `nla_strscpy`); its replies carry the NUL, which netlink-packet-route's
/// `LinkInfo::Kind` writes and reads.
pub(crate) fn kind_attr(kind: InfoKind) -> LinkInfo {
    const IFLA_INFO_KIND: u16 = 1;
    LinkInfo::Other(DefaultNla::new(
        IFLA_INFO_KIND,
        kind.to_string().into_bytes(),
    ))
}

/// A veth pair: `ip link add NAME type veth peer name PEER [netns NS]`.
#[derive(Debug, Clone)]
pub struct Veth {
    name: String,
    peer: Option<String>,
    peer_ns: Option<NetNs>,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    peer_mac: Option<MacAddr>,
}

impl Veth {
    /// A veth pair whose first end is `name`; the kernel names the peer unless
    /// [`peer`](Self::peer) is given.
    pub fn new(name: impl Into<String>) -> Veth {
        Veth {
            name: name.into(),
            peer: None,
            peer_ns: None,
            mtu: None,
            mac: None,
            peer_mac: None,
        }
    }

    /// The peer's name.
    pub fn peer(mut self, name: impl Into<String>) -> Veth {
        self.peer = Some(name.into());
        self
    }

    /// Creates the peer directly inside another namespace (no move afterwards, so no name clash
    /// in this one).
    pub fn peer_netns(mut self, ns: &NetNs) -> Veth {
        self.peer_ns = Some(ns.clone());
        self
    }

    /// MTU of both ends.
    pub fn mtu(mut self, mtu: u32) -> Veth {
        self.mtu = Some(mtu);
        self
    }

    /// MAC address of the first end.
    pub fn mac(mut self, mac: MacAddr) -> Veth {
        self.mac = Some(mac);
        self
    }

    /// MAC address of the peer.
    pub fn peer_mac(mut self, mac: MacAddr) -> Veth {
        self.peer_mac = Some(mac);
        self
    }
}

impl sealed::Sealed for Veth {}

impl LinkSpec for Veth {
    fn name(&self) -> &str {
        &self.name
    }

    #[allow(private_interfaces)]
    fn to_message(&self, _: &mut Resolver<'_>) -> Result<LinkMessage> {
        validate_ifname(&self.name)?;
        let mut peer = LinkMessage::default();
        if let Some(p) = &self.peer {
            validate_ifname(p)?;
            peer.attributes.push(LinkAttribute::IfName(p.clone()));
        }
        if let Some(m) = self.mtu {
            peer.attributes.push(LinkAttribute::Mtu(m));
        }
        if let Some(mac) = self.peer_mac {
            peer.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        }
        if let Some(ns) = &self.peer_ns {
            peer.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        }
        let mut msg = LinkMessage::default();
        common_attrs(&mut msg, &self.name, self.mtu, self.mac);
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            kind_attr(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        Ok(msg)
    }
}

/// Defines a link kind whose creation takes only a name, an MTU and a MAC address.
macro_rules! simple_kind {
    ($(#[$doc:meta])* $ty:ident, $kind:expr, $new_doc:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $ty {
            name: String,
            mtu: Option<u32>,
            mac: Option<MacAddr>,
        }

        impl $ty {
            #[doc = $new_doc]
            pub fn new(name: impl Into<String>) -> $ty {
                $ty {
                    name: name.into(),
                    mtu: None,
                    mac: None,
                }
            }

            /// MTU.
            pub fn mtu(mut self, mtu: u32) -> $ty {
                self.mtu = Some(mtu);
                self
            }

            /// MAC address (otherwise the kernel picks one).
            pub fn mac(mut self, mac: MacAddr) -> $ty {
                self.mac = Some(mac);
                self
            }
        }

        impl sealed::Sealed for $ty {}

        impl LinkSpec for $ty {
            fn name(&self) -> &str {
                &self.name
            }

            #[allow(private_interfaces)]
            fn to_message(&self, _: &mut Resolver<'_>) -> Result<LinkMessage> {
                validate_ifname(&self.name)?;
                let mut msg = LinkMessage::default();
                common_attrs(&mut msg, &self.name, self.mtu, self.mac);
                msg.attributes
                    .push(LinkAttribute::LinkInfo(vec![kind_attr($kind)]));
                Ok(msg)
            }
        }
    };
}

simple_kind!(
    /// A Linux bridge: `ip link add NAME type bridge`.
    Bridge,
    InfoKind::Bridge,
    "A bridge named `name`."
);

simple_kind!(
    /// An intermediate functional block: `ip link add NAME type ifb`. Traffic redirected to it
    /// with a tc `mirred` action is queued there (the CNI `bandwidth` plugin shapes a pod's
    /// ingress on one).
    Ifb,
    InfoKind::Ifb,
    "An ifb device named `name`."
);

simple_kind!(
    /// A dummy device: `ip link add NAME type dummy`. (Kernels without CONFIG_DUMMY refuse it
    /// with EOPNOTSUPP, "Unknown device type".)
    Dummy,
    InfoKind::Dummy,
    "A dummy device named `name`."
);

/// Link operations of one [`Handle`]: `h.link().add(...)`, like `ip link`.
#[derive(Debug, Clone, Copy)]
pub struct Links<'h> {
    pub(crate) h: &'h Handle,
}

/// A message that names a link by index, or by name with index 0 (the kernel looks it up).
pub(crate) fn link_message(link: &LinkRef) -> Result<LinkMessage> {
    let mut msg = LinkMessage::default();
    match link {
        LinkRef::Index(i) => msg.header.index = *i,
        LinkRef::Name(n) => {
            validate_ifname(n)?;
            msg.attributes.push(LinkAttribute::IfName(n.clone()));
        }
    }
    Ok(msg)
}

impl<'h> Links<'h> {
    /// Creates a link (`ip link add`, `ip tuntap add`). Fails with [`Error::Exists`] if the
    /// name is taken. Returns `()` for the kinds of [`LinkSpec`], and the queue files
    /// ([`TunDevice`](crate::TunDevice)) for a [`Tun`](crate::Tun).
    pub fn add<S: LinkAdd>(&self, spec: &S) -> Result<S::Added> {
        spec.add_with(self)
    }

    /// Deletes a link (`ip link del`); deleting one end of a veth pair deletes both.
    pub fn del(&self, link: impl Into<LinkRef>) -> Result<()> {
        let link = link.into();
        let msg = link_message(&link)?;
        self.h
            .request(RouteNetlinkMessage::DelLink(msg), 0)
            .map_err(|e| Error::from_netlink("link del", link.to_string(), e))?;
        Ok(())
    }

    /// Gets one link by name or index (`ip link show dev X`).
    pub fn get(&self, link: impl Into<LinkRef>) -> Result<Link> {
        let link = link.into();
        let mut found = self.get_raw(&link)?;
        if found.master.is_some()
            || (found.link.is_some() && found.link_netnsid.is_none())
            || found.vxlan.as_ref().is_some_and(|v| v.dev.is_some())
        {
            let names = self.names()?;
            found.resolve_names(&names);
        }
        Ok(found)
    }

    fn get_raw(&self, link: &LinkRef) -> Result<Link> {
        let msg = link_message(link)?;
        let replies = self
            .h
            .request(RouteNetlinkMessage::GetLink(msg), 0)
            .map_err(|e| Error::from_netlink("link show", link.to_string(), e))?;
        replies
            .iter()
            .find_map(|r| match r {
                RouteNetlinkMessage::NewLink(m) => Some(Link::from_message(m)),
                _ => None,
            })
            .ok_or_else(|| Error::link_missing(link.to_string()))
    }

    /// The index of a link.
    pub fn index(&self, link: impl Into<LinkRef>) -> Result<u32> {
        match link.into() {
            LinkRef::Index(i) => Ok(i),
            named => self.get_raw(&named).map(|l| l.index),
        }
    }

    /// All links of the namespace (`ip link show`), in index order.
    pub fn list(&self) -> Result<Vec<Link>> {
        let mut links = self.list_raw()?;
        let names: HashMap<u32, String> = links.iter().map(|l| (l.index, l.name.clone())).collect();
        for l in &mut links {
            l.resolve_names(&names);
        }
        Ok(links)
    }

    fn list_raw(&self) -> Result<Vec<Link>> {
        let replies = self
            .h
            .request(
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
                NLM_F_DUMP,
            )
            .map_err(|e| Error::from_netlink("link show", "all", e))?;
        Ok(links_of(&replies))
    }

    /// Index -> name of every link in the namespace.
    pub(crate) fn names(&self) -> Result<HashMap<u32, String>> {
        Ok(self
            .list_raw()?
            .into_iter()
            .map(|l| (l.index, l.name))
            .collect())
    }

    /// Changes a link (`ip link set dev X ...`); nothing is sent until
    /// [`apply`](LinkSet::apply).
    pub fn set(&self, link: impl Into<LinkRef>) -> LinkSet<'h> {
        LinkSet {
            h: self.h,
            link: link.into(),
            up: None,
            mtu: None,
            mac: None,
            master: None,
            name: None,
            netns: None,
            promisc: None,
            allmulticast: None,
            txqueuelen: None,
            alias: None,
            group: None,
            addrgenmode: None,
            port: BridgePortSet::default(),
        }
    }
}

/// A pending `ip link set`; build it with the methods, send it with [`apply`](Self::apply).
#[derive(Debug)]
#[must_use = "nothing changes until apply() is called"]
pub struct LinkSet<'h> {
    h: &'h Handle,
    link: LinkRef,
    up: Option<bool>,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    master: Option<Option<LinkRef>>,
    name: Option<String>,
    netns: Option<NetNs>,
    promisc: Option<bool>,
    allmulticast: Option<bool>,
    txqueuelen: Option<u32>,
    alias: Option<String>,
    group: Option<u32>,
    addrgenmode: Option<AddrGenMode>,
    port: BridgePortSet,
}

impl LinkSet<'_> {
    /// `promisc on|off`.
    pub fn promisc(mut self, on: bool) -> Self {
        self.promisc = Some(on);
        self
    }

    /// `allmulticast on|off`.
    pub fn allmulticast(mut self, on: bool) -> Self {
        self.allmulticast = Some(on);
        self
    }

    /// `txqueuelen N` (0 for veths, as the reference CNI plugins set it).
    pub fn txqueuelen(mut self, len: u32) -> Self {
        self.txqueuelen = Some(len);
        self
    }

    /// `alias TEXT`: a description, shown by `ip link`; the empty string removes it.
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.alias = Some(alias.into());
        self
    }

    /// `group N`: the device group (0 is `default`).
    pub fn group(mut self, group: u32) -> Self {
        self.group = Some(group);
        self
    }

    /// `addrgenmode MODE`: how the link makes its IPv6 link-local address.
    pub fn addrgenmode(mut self, mode: AddrGenMode) -> Self {
        self.addrgenmode = Some(mode);
        self
    }

    /// `type bridge_slave hairpin on|off` (`bridge link set dev X hairpin on`): the link must
    /// be a bridge port.
    pub fn hairpin(mut self, on: bool) -> Self {
        self.port.hairpin = Some(on);
        self
    }

    /// `type bridge_slave isolated on|off`: isolated ports do not talk to each other.
    pub fn isolated(mut self, on: bool) -> Self {
        self.port.isolated = Some(on);
        self
    }

    /// `type bridge_slave learning on|off`.
    pub fn learning(mut self, on: bool) -> Self {
        self.port.learning = Some(on);
        self
    }

    /// `type bridge_slave flood on|off`: unknown unicast flooded to this port.
    pub fn flood(mut self, on: bool) -> Self {
        self.port.unicast_flood = Some(on);
        self
    }

    /// `type bridge_slave mcast_flood on|off`.
    pub fn mcast_flood(mut self, on: bool) -> Self {
        self.port.multicast_flood = Some(on);
        self
    }

    /// `type bridge_slave bcast_flood on|off`.
    pub fn bcast_flood(mut self, on: bool) -> Self {
        self.port.broadcast_flood = Some(on);
        self
    }

    /// `up`.
    pub fn up(mut self) -> Self {
        self.up = Some(true);
        self
    }

    /// `down`.
    pub fn down(mut self) -> Self {
        self.up = Some(false);
        self
    }

    /// `mtu N`.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// `address MAC`.
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }

    /// `master DEV`: attach to a bridge.
    pub fn master(mut self, master: impl Into<LinkRef>) -> Self {
        self.master = Some(Some(master.into()));
        self
    }

    /// `nomaster`: detach from its bridge.
    pub fn nomaster(mut self) -> Self {
        self.master = Some(None);
        self
    }

    /// `name NEW`: rename (the link must be down).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// `netns NS`: move the link into another namespace.
    pub fn netns(mut self, ns: &NetNs) -> Self {
        self.netns = Some(ns.clone());
        self
    }

    /// Sends the change as one request (RTM_NEWLINK without NLM_F_CREATE when it changes
    /// bridge port settings, which RTM_SETLINK does not carry; RTM_SETLINK otherwise).
    pub fn apply(self) -> Result<()> {
        let what = self.link.to_string();
        let msg = self.to_request()?;
        self.h
            .request(msg, 0)
            .map_err(|e| Error::from_netlink("link set", what, e))?;
        Ok(())
    }

    /// The request: RTM_SETLINK, or RTM_NEWLINK when bridge port settings are changed.
    pub(crate) fn to_request(&self) -> Result<RouteNetlinkMessage> {
        let msg = self.to_message()?;
        Ok(if self.port.attrs().is_empty() {
            RouteNetlinkMessage::SetLink(msg)
        } else {
            RouteNetlinkMessage::NewLink(msg)
        })
    }

    pub(crate) fn to_message(&self) -> Result<LinkMessage> {
        let links = Links { h: self.h };
        let mut msg = if let Some(new) = &self.name {
            validate_ifname(new)?;
            // The new name takes IFLA_IFNAME, so the link must be named by index.
            let index = links.index(self.link.clone())?;
            let mut m = LinkMessage::default();
            m.header.index = index;
            m.attributes.push(LinkAttribute::IfName(new.clone()));
            m
        } else {
            link_message(&self.link)?
        };
        if let Some(up) = self.up {
            msg.header.change_mask |= LinkFlags::Up;
            if up {
                msg.header.flags |= LinkFlags::Up;
            }
        }
        if let Some(m) = self.mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        if let Some(mac) = self.mac {
            msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        }
        match &self.master {
            Some(Some(master)) => {
                let idx = links.index(master.clone())?;
                msg.attributes.push(LinkAttribute::Controller(idx));
            }
            Some(None) => msg.attributes.push(LinkAttribute::Controller(0)),
            None => {}
        }
        if let Some(ns) = &self.netns {
            msg.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        }
        self.settings_attrs(&mut msg);
        Ok(msg)
    }

    /// Flags and attributes of the settings that need no lookup.
    fn settings_attrs(&self, msg: &mut LinkMessage) {
        for (want, flag) in [
            (self.promisc, LinkFlags::Promisc),
            (self.allmulticast, LinkFlags::Allmulti),
        ] {
            if let Some(on) = want {
                msg.header.change_mask |= flag;
                if on {
                    msg.header.flags |= flag;
                }
            }
        }
        if let Some(q) = self.txqueuelen {
            msg.attributes.push(LinkAttribute::TxQueueLen(q));
        }
        if let Some(a) = &self.alias {
            // Without the NUL, as `ip link set DEV alias A` sends it (the kernel stores the
            // bytes given and terminates them itself).
            const IFLA_IFALIAS: u16 = 20;
            msg.attributes.push(LinkAttribute::Other(DefaultNla::new(
                IFLA_IFALIAS,
                a.as_bytes().to_vec(),
            )));
        }
        if let Some(g) = self.group {
            msg.attributes.push(LinkAttribute::Group(g));
        }
        if let Some(m) = self.addrgenmode {
            msg.attributes.push(m.attr());
        }
        let port = self.port.attrs();
        if !port.is_empty() {
            // As `ip link set DEV type bridge_slave ...` asks: IFLA_INFO_KIND "bridge_slave"
            // (the kernel looks up no kind for a change of an existing link; it hands
            // IFLA_INFO_SLAVE_DATA to the port's master).
            msg.attributes.push(LinkAttribute::LinkInfo(vec![
                kind_attr(InfoKind::Other("bridge_slave".into())),
                LinkInfo::PortData(InfoPortData::BridgePort(port)),
            ]));
        }
    }
}
