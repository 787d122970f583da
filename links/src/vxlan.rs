//! VXLAN devices: `ip link add NAME type vxlan id VNI ...`, and their details read back.

use crate::error::{Error, Result};
use crate::link::{LinkSpec, Resolver, common_attrs, sealed};
use crate::types::{LinkRef, MacAddr, validate_ifname};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage, VxlanDf,
};
use std::fmt;
use std::net::IpAddr;

/// The largest VNI: 24 bits.
pub const VNI_MAX: u32 = (1 << 24) - 1;

/// The kernel's default VXLAN port, and flannel's.
pub const PORT_LINUX: u16 = 8472;
/// The IANA VXLAN port.
pub const PORT_IANA: u16 = 4789;

/// How the outer header's Don't Fragment bit is set (`df unset|set|inherit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Df {
    /// Never set.
    Unset,
    /// Always set.
    Set,
    /// Copied from the inner IPv4 header.
    Inherit,
}

impl fmt::Display for Df {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Df::Unset => "unset",
            Df::Set => "set",
            Df::Inherit => "inherit",
        })
    }
}

/// A VXLAN device to create, with the options flannel and other overlays use.
///
/// ```
/// use podnet_links::Vxlan;
/// // flannel's vxlan backend: VNI 1, port 8472, no learning, local = node IP.
/// let spec = Vxlan::new("flannel.1", 1)
///     .local("198.18.0.1".parse().unwrap())
///     .dev("eth0")
///     .port(8472)
///     .learning(false)
///     .mtu(1450);
/// # let _ = spec;
/// ```
#[derive(Debug, Clone)]
pub struct Vxlan {
    name: String,
    vni: u32,
    local: Option<IpAddr>,
    remote: Option<IpAddr>,
    dev: Option<LinkRef>,
    port: Option<u16>,
    learning: Option<bool>,
    gbp: bool,
    l2miss: bool,
    l3miss: bool,
    proxy: bool,
    ttl: Option<u8>,
    tos: Option<u8>,
    udp_csum: Option<bool>,
    udp6_zero_csum_tx: Option<bool>,
    udp6_zero_csum_rx: Option<bool>,
    df: Option<Df>,
    ageing: Option<u32>,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
}

impl Vxlan {
    /// A VXLAN device `name` with network identifier `vni` (at most 2^24 - 1).
    pub fn new(name: impl Into<String>, vni: u32) -> Vxlan {
        Vxlan {
            name: name.into(),
            vni,
            local: None,
            remote: None,
            dev: None,
            port: None,
            learning: None,
            gbp: false,
            l2miss: false,
            l3miss: false,
            proxy: false,
            ttl: None,
            tos: None,
            udp_csum: None,
            udp6_zero_csum_tx: None,
            udp6_zero_csum_rx: None,
            df: None,
            ageing: None,
            mtu: None,
            mac: None,
        }
    }

    /// `local ADDR`: the source address of the outer header (the node's underlay address).
    pub fn local(mut self, addr: IpAddr) -> Vxlan {
        self.local = Some(addr);
        self
    }

    /// `remote ADDR` (unicast) or `group ADDR` (multicast): the default destination.
    pub fn remote(mut self, addr: IpAddr) -> Vxlan {
        self.remote = Some(addr);
        self
    }

    /// `dev LINK`: the underlay device.
    pub fn dev(mut self, link: impl Into<LinkRef>) -> Vxlan {
        self.dev = Some(link.into());
        self
    }

    /// `dstport N` (8472 by default in Linux; 4789 is IANA's).
    pub fn port(mut self, port: u16) -> Vxlan {
        self.port = Some(port);
        self
    }

    /// `learning` / `nolearning`: learn remote MACs from received frames.
    pub fn learning(mut self, on: bool) -> Vxlan {
        self.learning = Some(on);
        self
    }

    /// `gbp`: the Group Based Policy extension.
    pub fn gbp(mut self, on: bool) -> Vxlan {
        self.gbp = on;
        self
    }

    /// `l2miss`: report FDB misses to userspace.
    pub fn l2miss(mut self, on: bool) -> Vxlan {
        self.l2miss = on;
        self
    }

    /// `l3miss`: report neighbour misses to userspace.
    pub fn l3miss(mut self, on: bool) -> Vxlan {
        self.l3miss = on;
        self
    }

    /// `proxy`: answer ARP/NDP from the neighbour table (and report `l3miss` when it has no
    /// entry).
    pub fn proxy(mut self, on: bool) -> Vxlan {
        self.proxy = on;
        self
    }

    /// `ttl N` of the outer header (0 = inherit).
    pub fn ttl(mut self, ttl: u8) -> Vxlan {
        self.ttl = Some(ttl);
        self
    }

    /// `tos N` of the outer header (1 = inherit).
    pub fn tos(mut self, tos: u8) -> Vxlan {
        self.tos = Some(tos);
        self
    }

    /// `udpcsum` / `noudpcsum`: compute the outer UDP checksum over IPv4.
    pub fn udp_csum(mut self, on: bool) -> Vxlan {
        self.udp_csum = Some(on);
        self
    }

    /// `udp6zerocsumtx`: send zero UDP checksums over IPv6.
    pub fn udp6_zero_csum_tx(mut self, on: bool) -> Vxlan {
        self.udp6_zero_csum_tx = Some(on);
        self
    }

    /// `udp6zerocsumrx`: accept zero UDP checksums over IPv6.
    pub fn udp6_zero_csum_rx(mut self, on: bool) -> Vxlan {
        self.udp6_zero_csum_rx = Some(on);
        self
    }

    /// `df unset|set|inherit`.
    pub fn df(mut self, df: Df) -> Vxlan {
        self.df = Some(df);
        self
    }

    /// `ageing SECONDS` of learnt FDB entries.
    pub fn ageing(mut self, seconds: u32) -> Vxlan {
        self.ageing = Some(seconds);
        self
    }

    /// MTU (flannel: underlay MTU - 50 over IPv4, - 70 over IPv6).
    pub fn mtu(mut self, mtu: u32) -> Vxlan {
        self.mtu = Some(mtu);
        self
    }

    /// MAC address of the device (the VTEP MAC peers put in their FDB).
    pub fn mac(mut self, mac: MacAddr) -> Vxlan {
        self.mac = Some(mac);
        self
    }
}

fn bad(what: &str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        what: what.into(),
        reason: reason.into(),
    }
}

impl sealed::Sealed for Vxlan {}

impl LinkSpec for Vxlan {
    fn name(&self) -> &str {
        &self.name
    }

    #[allow(private_interfaces)]
    fn to_message(&self, resolve: &mut Resolver<'_>) -> Result<LinkMessage> {
        validate_ifname(&self.name)?;
        if self.vni > VNI_MAX {
            return Err(bad(
                "VNI",
                format!("{} is above 2^24-1 ({VNI_MAX})", self.vni),
            ));
        }
        if let (Some(l), Some(r)) = (self.local, self.remote) {
            if l.is_ipv4() != r.is_ipv4() {
                return Err(bad("vxlan local/remote", "address families differ"));
            }
        }
        let mut data = vec![InfoVxlan::Id(self.vni)];
        match self.local {
            Some(IpAddr::V4(a)) => data.push(InfoVxlan::Local(a)),
            Some(IpAddr::V6(a)) => data.push(InfoVxlan::Local6(a)),
            None => {}
        }
        match self.remote {
            Some(IpAddr::V4(a)) => data.push(InfoVxlan::Group(a)),
            Some(IpAddr::V6(a)) => data.push(InfoVxlan::Group6(a)),
            None => {}
        }
        if let Some(dev) = &self.dev {
            data.push(InfoVxlan::Link(resolve(dev)?));
        }
        if let Some(p) = self.port {
            data.push(InfoVxlan::Port(p));
        }
        if let Some(l) = self.learning {
            data.push(InfoVxlan::Learning(l));
        }
        if self.gbp {
            data.push(InfoVxlan::Gbp);
        }
        if self.l2miss {
            data.push(InfoVxlan::L2Miss(true));
        }
        if self.l3miss {
            data.push(InfoVxlan::L3Miss(true));
        }
        if self.proxy {
            data.push(InfoVxlan::Proxy(true));
        }
        if let Some(t) = self.ttl {
            data.push(InfoVxlan::Ttl(t));
        }
        if let Some(t) = self.tos {
            data.push(InfoVxlan::Tos(t));
        }
        if let Some(c) = self.udp_csum {
            data.push(InfoVxlan::UDPCsum(c));
        }
        if let Some(c) = self.udp6_zero_csum_tx {
            data.push(InfoVxlan::UDPZeroCsumTX(c));
        }
        if let Some(c) = self.udp6_zero_csum_rx {
            data.push(InfoVxlan::UDPZeroCsumRX(c));
        }
        if let Some(df) = self.df {
            data.push(InfoVxlan::Df(match df {
                Df::Unset => VxlanDf::Unset,
                Df::Set => VxlanDf::Set,
                Df::Inherit => VxlanDf::Inherit,
            }));
        }
        if let Some(a) = self.ageing {
            data.push(InfoVxlan::Ageing(a));
        }
        let mut msg = LinkMessage::default();
        common_attrs(&mut msg, &self.name, self.mtu, self.mac);
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            crate::link::kind_attr(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(data)),
        ]));
        Ok(msg)
    }
}

/// A VXLAN device's settings as the kernel reports them (`ip -d link show`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct VxlanInfo {
    /// VXLAN network identifier.
    pub vni: u32,
    /// Outer source address.
    pub local: Option<IpAddr>,
    /// Default destination (unicast remote or multicast group).
    pub remote: Option<IpAddr>,
    /// Underlay device index.
    pub dev: Option<u32>,
    /// Destination UDP port.
    pub port: u16,
    /// Learning of remote MACs.
    pub learning: bool,
    /// Group Based Policy extension.
    pub gbp: bool,
    /// FDB misses reported.
    pub l2miss: bool,
    /// Neighbour misses reported.
    pub l3miss: bool,
    /// ARP/NDP proxy.
    pub proxy: bool,
    /// Outer TTL (0 = auto).
    pub ttl: u8,
    /// Outer TOS (1 = inherit).
    pub tos: u8,
    /// UDP checksum over IPv4.
    pub udp_csum: bool,
    /// Zero UDP checksums sent over IPv6.
    pub udp6_zero_csum_tx: bool,
    /// Zero UDP checksums accepted over IPv6.
    pub udp6_zero_csum_rx: bool,
    /// DF handling.
    pub df: Option<Df>,
    /// Ageing of learnt entries, seconds.
    pub ageing: u32,
}

impl VxlanInfo {
    pub(crate) fn from_attrs(attrs: &[InfoVxlan]) -> VxlanInfo {
        let mut v = VxlanInfo::default();
        for a in attrs {
            match a {
                InfoVxlan::Id(id) => v.vni = *id,
                InfoVxlan::Local(a) => v.local = Some(IpAddr::V4(*a)),
                InfoVxlan::Local6(a) => v.local = Some(IpAddr::V6(*a)),
                InfoVxlan::Group(a) => v.remote = Some(IpAddr::V4(*a)),
                InfoVxlan::Group6(a) => v.remote = Some(IpAddr::V6(*a)),
                InfoVxlan::Link(i) if *i != 0 => v.dev = Some(*i),
                InfoVxlan::Port(p) => v.port = *p,
                InfoVxlan::Learning(l) => v.learning = *l,
                InfoVxlan::Gbp => v.gbp = true,
                InfoVxlan::L2Miss(b) => v.l2miss = *b,
                InfoVxlan::L3Miss(b) => v.l3miss = *b,
                InfoVxlan::Proxy(b) => v.proxy = *b,
                InfoVxlan::Ttl(t) => v.ttl = *t,
                InfoVxlan::Tos(t) => v.tos = *t,
                InfoVxlan::UDPCsum(b) => v.udp_csum = *b,
                InfoVxlan::UDPZeroCsumTX(b) => v.udp6_zero_csum_tx = *b,
                InfoVxlan::UDPZeroCsumRX(b) => v.udp6_zero_csum_rx = *b,
                InfoVxlan::Ageing(s) => v.ageing = *s,
                InfoVxlan::Df(df) => {
                    v.df = match df {
                        VxlanDf::Unset => Some(Df::Unset),
                        VxlanDf::Set => Some(Df::Set),
                        VxlanDf::Inherit => Some(Df::Inherit),
                        _ => None,
                    }
                }
                _ => {}
            }
        }
        v
    }

    /// Writes the details like `ip -d link`, naming the underlay device `dev`.
    pub(crate) fn write(&self, f: &mut fmt::Formatter<'_>, dev: Option<&str>) -> fmt::Result {
        write!(f, "vxlan id {}", self.vni)?;
        if let Some(r) = self.remote {
            let word = if r.is_multicast() { "group" } else { "remote" };
            write!(f, " {word} {r}")?;
        }
        if let Some(l) = self.local {
            write!(f, " local {l}")?;
        }
        match (dev, self.dev) {
            (Some(d), _) => write!(f, " dev {d}")?,
            (None, Some(i)) => write!(f, " dev if{i}")?,
            _ => {}
        }
        write!(f, " dstport {}", self.port)?;
        if !self.learning {
            f.write_str(" nolearning")?;
        }
        if self.proxy {
            f.write_str(" proxy")?;
        }
        if self.l2miss {
            f.write_str(" l2miss")?;
        }
        if self.l3miss {
            f.write_str(" l3miss")?;
        }
        if self.ttl == 0 {
            f.write_str(" ttl auto")?;
        } else {
            write!(f, " ttl {}", self.ttl)?;
        }
        if self.tos == 1 {
            f.write_str(" tos inherit")?;
        } else if self.tos != 0 {
            write!(f, " tos {:#x}", self.tos)?;
        }
        if let Some(df) = self.df.filter(|d| *d != Df::Unset) {
            write!(f, " df {df}")?;
        }
        write!(f, " ageing {}", self.ageing)?;
        f.write_str(if self.udp_csum {
            " udpcsum"
        } else {
            " noudpcsum"
        })?;
        f.write_str(if self.udp6_zero_csum_tx {
            " udp6zerocsumtx"
        } else {
            " noudp6zerocsumtx"
        })?;
        f.write_str(if self.udp6_zero_csum_rx {
            " udp6zerocsumrx"
        } else {
            " noudp6zerocsumrx"
        })?;
        if self.gbp {
            f.write_str(" gbp")?;
        }
        Ok(())
    }
}
