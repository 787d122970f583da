//! IPVS services and destinations as typed values, and their conversion to and from the wire.

use super::wire::{DestAttrs, FlagsMask, ServiceAttrs, Stats};
use crate::iptables::Protocol;
use crate::kube::IpFamily;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;
/// `IP_VS_SCHEDNAME_MAXLEN` - 1 (the kernel keeps a terminating NUL).
pub(crate) const NAME_MAX: usize = 15;

/// A scheduler: how a service picks a destination for a new connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Scheduler {
    /// `rr`: round robin (kube-proxy's default).
    #[default]
    RoundRobin,
    /// `wrr`: weighted round robin.
    WeightedRoundRobin,
    /// `lc`: least connections.
    LeastConnection,
    /// `wlc`: weighted least connections.
    WeightedLeastConnection,
    /// `sh`: source hashing.
    SourceHashing,
    /// `dh`: destination hashing.
    DestinationHashing,
    /// `sed`: shortest expected delay.
    ShortestExpectedDelay,
    /// `nq`: never queue.
    NeverQueue,
    /// `mh`: Maglev hashing.
    MaglevHashing,
    /// Any other scheduler module, by name (`lblc`, `lblcr`, `fo`, `ovf`, `twos`, ...).
    Other(String),
}

impl Scheduler {
    /// The name the kernel knows it by (the module is `ip_vs_<name>`).
    pub fn name(&self) -> &str {
        match self {
            Scheduler::RoundRobin => "rr",
            Scheduler::WeightedRoundRobin => "wrr",
            Scheduler::LeastConnection => "lc",
            Scheduler::WeightedLeastConnection => "wlc",
            Scheduler::SourceHashing => "sh",
            Scheduler::DestinationHashing => "dh",
            Scheduler::ShortestExpectedDelay => "sed",
            Scheduler::NeverQueue => "nq",
            Scheduler::MaglevHashing => "mh",
            Scheduler::Other(name) => name,
        }
    }

    /// The scheduler called `name`.
    pub fn from_name(name: &str) -> Scheduler {
        match name {
            "rr" => Scheduler::RoundRobin,
            "wrr" => Scheduler::WeightedRoundRobin,
            "lc" => Scheduler::LeastConnection,
            "wlc" => Scheduler::WeightedLeastConnection,
            "sh" => Scheduler::SourceHashing,
            "dh" => Scheduler::DestinationHashing,
            "sed" => Scheduler::ShortestExpectedDelay,
            "nq" => Scheduler::NeverQueue,
            "mh" => Scheduler::MaglevHashing,
            other => Scheduler::Other(other.to_owned()),
        }
    }

    /// The schedulers this library names (those kube-proxy's `--ipvs-scheduler` documents).
    pub const KNOWN: [Scheduler; 9] = [
        Scheduler::RoundRobin,
        Scheduler::WeightedRoundRobin,
        Scheduler::LeastConnection,
        Scheduler::WeightedLeastConnection,
        Scheduler::SourceHashing,
        Scheduler::DestinationHashing,
        Scheduler::ShortestExpectedDelay,
        Scheduler::NeverQueue,
        Scheduler::MaglevHashing,
    ];
}

impl fmt::Display for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Service flags (`IP_VS_SVC_F_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ServiceFlags(pub u32);

impl ServiceFlags {
    /// No flags.
    pub const NONE: ServiceFlags = ServiceFlags(0);
    /// Persistent (client affinity for the persistence timeout).
    pub const PERSISTENT: ServiceFlags = ServiceFlags(0x0001);
    /// Kernel-internal: the service is in the hash table. Never sent; removed when read.
    pub const HASHED: ServiceFlags = ServiceFlags(0x0002);
    /// One-packet scheduling (UDP).
    pub const ONE_PACKET: ServiceFlags = ServiceFlags(0x0004);
    /// Scheduler flag 1: for `sh` and `mh`, fall back to another destination when the chosen
    /// one is unavailable (`sh-fallback`, `mh-fallback`).
    pub const SCHED1: ServiceFlags = ServiceFlags(0x0008);
    /// Scheduler flag 2: for `sh` and `mh`, hash the source port too (`sh-port`, `mh-port`;
    /// kube-proxy's `FlagSourceHash`, which it sets for `mh`).
    pub const SCHED2: ServiceFlags = ServiceFlags(0x0010);
    /// Scheduler flag 3.
    pub const SCHED3: ServiceFlags = ServiceFlags(0x0020);

    /// `true` when every flag of `other` is set.
    pub fn contains(self, other: ServiceFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets of flags.
    pub fn union(self, other: ServiceFlags) -> ServiceFlags {
        ServiceFlags(self.0 | other.0)
    }

    /// Without the flags of `other`.
    pub fn without(self, other: ServiceFlags) -> ServiceFlags {
        ServiceFlags(self.0 & !other.0)
    }
}

impl std::ops::BitOr for ServiceFlags {
    type Output = ServiceFlags;
    fn bitor(self, rhs: ServiceFlags) -> ServiceFlags {
        self.union(rhs)
    }
}

/// What identifies a virtual service: protocol, address and port, or a firewall mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceId {
    /// `-t`/`-u`/`--sctp-service ADDR:PORT`.
    Addr {
        /// The protocol.
        protocol: Protocol,
        /// Virtual address and port (port 0: every port).
        addr: SocketAddr,
    },
    /// `-f MARK`: packets carrying this firewall mark, of one family.
    FwMark {
        /// The address family.
        family: IpFamily,
        /// The mark (not 0).
        mark: u32,
    },
}

fn af(family: IpFamily) -> u16 {
    match family {
        IpFamily::V4 => AF_INET,
        IpFamily::V6 => AF_INET6,
    }
}

fn from_af(af: u16) -> Option<IpFamily> {
    match af {
        AF_INET => Some(IpFamily::V4),
        AF_INET6 => Some(IpFamily::V6),
        _ => None,
    }
}

fn max_prefix(family: IpFamily) -> u8 {
    match family {
        IpFamily::V4 => 32,
        IpFamily::V6 => 128,
    }
}

impl ServiceId {
    /// A TCP service.
    pub fn tcp(addr: SocketAddr) -> ServiceId {
        ServiceId::Addr {
            protocol: Protocol::Tcp,
            addr,
        }
    }

    /// A UDP service.
    pub fn udp(addr: SocketAddr) -> ServiceId {
        ServiceId::Addr {
            protocol: Protocol::Udp,
            addr,
        }
    }

    /// An SCTP service.
    pub fn sctp(addr: SocketAddr) -> ServiceId {
        ServiceId::Addr {
            protocol: Protocol::Sctp,
            addr,
        }
    }

    /// The address family.
    pub fn family(&self) -> IpFamily {
        match self {
            ServiceId::Addr { addr, .. } => IpFamily::of(&addr.ip()),
            ServiceId::FwMark { family, .. } => *family,
        }
    }

    /// The identifying attributes, as every service and destination command sends them.
    pub(crate) fn to_attrs(self) -> ServiceAttrs {
        let mut a = ServiceAttrs {
            af: Some(af(self.family())),
            ..ServiceAttrs::default()
        };
        match self {
            ServiceId::Addr { protocol, addr } => {
                a.protocol = Some(protocol_number(protocol));
                a.addr = Some(addr_bytes(addr.ip()));
                a.port = Some(addr.port());
            }
            ServiceId::FwMark { mark, .. } => a.fwmark = Some(mark),
        }
        a
    }

    fn from_attrs(a: &ServiceAttrs) -> Result<ServiceId, String> {
        let af = a.af.ok_or("service without address family")?;
        let family = from_af(af).ok_or_else(|| format!("unknown address family {af}"))?;
        if let Some(mark) = a.fwmark.filter(|m| *m != 0) {
            return Ok(ServiceId::FwMark { family, mark });
        }
        let proto = a.protocol.ok_or("service without protocol")?;
        let protocol =
            protocol_from_number(proto).ok_or_else(|| format!("unknown protocol {proto}"))?;
        let ip = addr_from_bytes(family, a.addr.as_deref().ok_or("service without address")?)?;
        let port = a.port.ok_or("service without port")?;
        Ok(ServiceId::Addr {
            protocol,
            addr: SocketAddr::new(ip, port),
        })
    }
}

impl fmt::Display for ServiceId {
    /// As `ipvsadm -Ln` writes it: `TCP  10.96.0.10:80` (one space here), `FWM  42`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceId::Addr { protocol, addr } => {
                write!(f, "{} {addr}", protocol.as_str().to_ascii_uppercase())
            }
            ServiceId::FwMark { family, mark } => match family {
                IpFamily::V4 => write!(f, "FWM {mark}"),
                IpFamily::V6 => write!(f, "FWM {mark} IPv6"),
            },
        }
    }
}

pub(crate) fn protocol_number(p: Protocol) -> u16 {
    match p {
        Protocol::Tcp => libc::IPPROTO_TCP as u16,
        Protocol::Udp => libc::IPPROTO_UDP as u16,
        Protocol::Sctp => libc::IPPROTO_SCTP as u16,
    }
}

fn protocol_from_number(n: u16) -> Option<Protocol> {
    match i32::from(n) {
        libc::IPPROTO_TCP => Some(Protocol::Tcp),
        libc::IPPROTO_UDP => Some(Protocol::Udp),
        libc::IPPROTO_SCTP => Some(Protocol::Sctp),
        _ => None,
    }
}

/// `union nf_inet_addr`: 16 bytes, an IPv4 address in the first four.
fn addr_bytes(ip: IpAddr) -> Vec<u8> {
    let mut b = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    b.resize(16, 0);
    b
}

fn addr_from_bytes(family: IpFamily, b: &[u8]) -> Result<IpAddr, String> {
    match family {
        IpFamily::V4 => b
            .get(..4)
            .map(|o| IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3])))
            .ok_or_else(|| format!("IPv4 address of {} bytes", b.len())),
        IpFamily::V6 => b
            .get(..16)
            .and_then(|o| <[u8; 16]>::try_from(o).ok())
            .map(|o| IpAddr::V6(Ipv6Addr::from(o)))
            .ok_or_else(|| format!("IPv6 address of {} bytes", b.len())),
    }
}

/// A virtual service: what `ipvsadm -A` creates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VirtualService {
    /// What it matches.
    pub id: ServiceId,
    /// The scheduler.
    pub scheduler: Scheduler,
    /// Flags ([`ServiceFlags::PERSISTENT`] is set by [`VirtualService::persistent`]).
    pub flags: ServiceFlags,
    /// Persistence timeout in seconds (used with [`ServiceFlags::PERSISTENT`]).
    pub timeout: u32,
    /// Persistence granularity: clients whose addresses share this prefix length stick to the
    /// same destination (`-M`; 32 or 128, one client, by default).
    pub netmask: u8,
    /// Persistence engine (`--pe`, e.g. `sip`), if any.
    pub pe_name: Option<String>,
}

impl VirtualService {
    /// A service with round-robin scheduling, no flags and no persistence.
    pub fn new(id: ServiceId) -> VirtualService {
        VirtualService {
            id,
            scheduler: Scheduler::RoundRobin,
            flags: ServiceFlags::NONE,
            timeout: 0,
            netmask: max_prefix(id.family()),
            pe_name: None,
        }
    }

    /// Uses `scheduler`.
    pub fn scheduler(mut self, scheduler: Scheduler) -> VirtualService {
        self.scheduler = scheduler;
        self
    }

    /// Adds `flags`.
    pub fn flags(mut self, flags: ServiceFlags) -> VirtualService {
        self.flags = self.flags | flags;
        self
    }

    /// Persistent with `timeout` seconds (`-p TIMEOUT`), as kube-proxy's ClientIP affinity.
    pub fn persistent(mut self, timeout: u32) -> VirtualService {
        self.flags = self.flags | ServiceFlags::PERSISTENT;
        self.timeout = timeout;
        self
    }

    /// Checks what the kernel would refuse with a bare EINVAL, so the error can say why.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let name = self.scheduler.name();
        if name.is_empty() || name.len() > NAME_MAX || name.contains('\0') {
            return Err(format!("scheduler name {name:?} must be 1 to 15 bytes"));
        }
        if let Some(pe) = &self.pe_name {
            if pe.is_empty() || pe.len() > NAME_MAX || pe.contains('\0') {
                return Err(format!(
                    "persistence engine name {pe:?} must be 1 to 15 bytes"
                ));
            }
        }
        let max = max_prefix(self.id.family());
        if self.netmask > max || (self.id.family() == IpFamily::V6 && self.netmask == 0) {
            return Err(format!(
                "persistence netmask /{} out of range",
                self.netmask
            ));
        }
        if let ServiceId::FwMark { mark: 0, .. } = self.id {
            return Err("firewall mark 0 does not identify a service".into());
        }
        Ok(())
    }

    /// Every attribute: what `NEW_SERVICE` and `SET_SERVICE` send. The mask covers every flag
    /// but [`ServiceFlags::HASHED`], which only the kernel sets.
    pub(crate) fn to_attrs(&self) -> ServiceAttrs {
        let mut a = self.id.to_attrs();
        a.sched_name = Some(self.scheduler.name().to_owned());
        a.flags = Some(FlagsMask {
            flags: self.flags.without(ServiceFlags::HASHED).0,
            mask: !ServiceFlags::HASHED.0,
        });
        a.timeout = Some(self.timeout);
        a.netmask = Some(match self.id.family() {
            IpFamily::V4 => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.netmask))
                    .unwrap_or(0);
                u32::from_ne_bytes(mask.to_be_bytes())
            }
            IpFamily::V6 => u32::from(self.netmask),
        });
        a.pe_name = self.pe_name.clone();
        a
    }

    fn from_attrs(a: &ServiceAttrs) -> Result<VirtualService, String> {
        let id = ServiceId::from_attrs(a)?;
        let netmask = match (id.family(), a.netmask) {
            (_, None) => max_prefix(id.family()),
            (IpFamily::V4, Some(raw)) => u32::from_be_bytes(raw.to_ne_bytes()).count_ones() as u8,
            (IpFamily::V6, Some(raw)) => raw.min(128) as u8,
        };
        Ok(VirtualService {
            id,
            scheduler: Scheduler::from_name(a.sched_name.as_deref().unwrap_or("")),
            flags: ServiceFlags(a.flags.map(|f| f.flags).unwrap_or(0))
                .without(ServiceFlags::HASHED),
            timeout: a.timeout.unwrap_or(0),
            netmask,
            pe_name: a.pe_name.clone().filter(|p| !p.is_empty()),
        })
    }
}

/// A service as the kernel lists it: its settings and its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// The service.
    pub service: VirtualService,
    /// Its counters (64-bit ones when the kernel sends them).
    pub stats: Stats,
}

impl ServiceEntry {
    pub(crate) fn from_attrs(a: &ServiceAttrs) -> Result<ServiceEntry, String> {
        Ok(ServiceEntry {
            service: VirtualService::from_attrs(a)?,
            stats: a.stats64.or(a.stats).unwrap_or_default(),
        })
    }
}

/// How packets reach a destination (`IP_VS_CONN_F_*` forwarding methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ForwardMethod {
    /// NAT (`-m`, "Masq"): the destination address is rewritten. kube-proxy uses this.
    #[default]
    Masquerade,
    /// Local node (`Local`).
    Local,
    /// IP-in-IP tunnel (`-i`, "Tunnel").
    Tunnel,
    /// Direct routing (`-g`, "Route").
    DirectRoute,
    /// Cache bypass.
    Bypass,
}

impl ForwardMethod {
    fn value(self) -> u32 {
        match self {
            ForwardMethod::Masquerade => 0,
            ForwardMethod::Local => 1,
            ForwardMethod::Tunnel => 2,
            ForwardMethod::DirectRoute => 3,
            ForwardMethod::Bypass => 4,
        }
    }

    fn from_value(v: u32) -> Option<ForwardMethod> {
        Some(match v & 0x7 {
            0 => ForwardMethod::Masquerade,
            1 => ForwardMethod::Local,
            2 => ForwardMethod::Tunnel,
            3 => ForwardMethod::DirectRoute,
            4 => ForwardMethod::Bypass,
            _ => return None,
        })
    }

    /// The name `ipvsadm -L` shows.
    pub fn ipvsadm_name(self) -> &'static str {
        match self {
            ForwardMethod::Masquerade => "Masq",
            ForwardMethod::Local => "Local",
            ForwardMethod::Tunnel => "Tunnel",
            ForwardMethod::DirectRoute => "Route",
            ForwardMethod::Bypass => "Bypass",
        }
    }
}

/// A destination (real server) of a service: what `ipvsadm -a` creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Destination {
    /// Address and port.
    pub addr: SocketAddr,
    /// Forwarding method.
    pub forward: ForwardMethod,
    /// Weight (0 stops new connections; at most `i32::MAX`).
    pub weight: u32,
    /// Upper connection threshold (0: none).
    pub upper_threshold: u32,
    /// Lower connection threshold (0: none).
    pub lower_threshold: u32,
}

impl Destination {
    /// A NAT destination with weight 1 and no thresholds, as kube-proxy adds them.
    pub fn new(addr: SocketAddr) -> Destination {
        Destination {
            addr,
            forward: ForwardMethod::Masquerade,
            weight: 1,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }

    /// With `weight`.
    pub fn weight(mut self, weight: u32) -> Destination {
        self.weight = weight;
        self
    }

    /// With forwarding method `forward`.
    pub fn forward(mut self, forward: ForwardMethod) -> Destination {
        self.forward = forward;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.weight > i32::MAX as u32 {
            return Err(format!("weight {} above {}", self.weight, i32::MAX));
        }
        if self.upper_threshold != 0 && self.lower_threshold > self.upper_threshold {
            return Err(format!(
                "lower threshold {} above upper threshold {}",
                self.lower_threshold, self.upper_threshold
            ));
        }
        Ok(())
    }

    /// The identifying attributes (address and port), as `DEL_DEST` sends them.
    pub(crate) fn key_attrs(addr: SocketAddr) -> DestAttrs {
        DestAttrs {
            addr: Some(addr_bytes(addr.ip())),
            port: Some(addr.port()),
            addr_family: Some(af(IpFamily::of(&addr.ip()))),
            ..DestAttrs::default()
        }
    }

    /// Every attribute, as `NEW_DEST` and `SET_DEST` send them.
    pub(crate) fn to_attrs(self) -> DestAttrs {
        DestAttrs {
            fwd_method: Some(self.forward.value()),
            weight: Some(self.weight),
            u_thresh: Some(self.upper_threshold),
            l_thresh: Some(self.lower_threshold),
            ..Destination::key_attrs(self.addr)
        }
    }

    fn from_attrs(a: &DestAttrs, service_family: IpFamily) -> Result<Destination, String> {
        let family = match a.addr_family {
            Some(af) => from_af(af).ok_or_else(|| format!("unknown address family {af}"))?,
            None => service_family,
        };
        let ip = addr_from_bytes(
            family,
            a.addr.as_deref().ok_or("destination without address")?,
        )?;
        let fwd = a.fwd_method.unwrap_or(0);
        Ok(Destination {
            addr: SocketAddr::new(ip, a.port.ok_or("destination without port")?),
            forward: ForwardMethod::from_value(fwd)
                .ok_or_else(|| format!("unknown forwarding method {fwd}"))?,
            weight: a.weight.unwrap_or(0),
            upper_threshold: a.u_thresh.unwrap_or(0),
            lower_threshold: a.l_thresh.unwrap_or(0),
        })
    }
}

/// A destination as the kernel lists it, with its connection counts and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationEntry {
    /// The destination.
    pub destination: Destination,
    /// Active (established TCP) connections.
    pub active_conns: u32,
    /// Inactive connections.
    pub inactive_conns: u32,
    /// Persistence templates pointing at it.
    pub persistent_conns: u32,
    /// Its counters.
    pub stats: Stats,
}

impl DestinationEntry {
    pub(crate) fn from_attrs(
        a: &DestAttrs,
        service_family: IpFamily,
    ) -> Result<DestinationEntry, String> {
        Ok(DestinationEntry {
            destination: Destination::from_attrs(a, service_family)?,
            active_conns: a.active_conns.unwrap_or(0),
            inactive_conns: a.inact_conns.unwrap_or(0),
            persistent_conns: a.persist_conns.unwrap_or(0),
            stats: a.stats64.or(a.stats).unwrap_or_default(),
        })
    }
}

/// The IPVS version and connection table size (`ipvsadm`'s first line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// Major, minor, patch: `(1, 2, 1)` on current kernels.
    pub version: (u8, u8, u8),
    /// Size of the connection hash table.
    pub conn_table_size: u32,
}

/// Connection timeouts in seconds (`ipvsadm --set TCP TCPFIN UDP`; 0 leaves one unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeouts {
    /// Established TCP connections.
    pub tcp: u32,
    /// TCP connections after FIN.
    pub tcp_fin: u32,
    /// UDP.
    pub udp: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn service_attributes_roundtrip() {
        let cases = [
            VirtualService::new(ServiceId::tcp(sa("10.96.0.10:80"))),
            VirtualService::new(ServiceId::udp(sa("[fd00:10:96::a]:53")))
                .scheduler(Scheduler::MaglevHashing)
                .flags(ServiceFlags::SCHED2)
                .persistent(10800),
            VirtualService::new(ServiceId::FwMark {
                family: IpFamily::V4,
                mark: 0x4000,
            })
            .scheduler(Scheduler::Other("lblc".into())),
        ];
        for svc in cases {
            let mut a = svc.to_attrs();
            // The kernel adds HASHED to what it lists.
            a.flags = a.flags.map(|f| FlagsMask {
                flags: f.flags | ServiceFlags::HASHED.0,
                mask: u32::MAX,
            });
            assert_eq!(VirtualService::from_attrs(&a).unwrap(), svc);
        }
    }

    #[test]
    fn netmask_encodings() {
        let mut svc = VirtualService::new(ServiceId::tcp(sa("10.96.0.10:80"))).persistent(60);
        assert_eq!(
            svc.to_attrs().netmask,
            Some(u32::from_ne_bytes([255, 255, 255, 255]))
        );
        svc.netmask = 24;
        let a = svc.to_attrs();
        assert_eq!(a.netmask, Some(u32::from_ne_bytes([255, 255, 255, 0])));
        assert_eq!(VirtualService::from_attrs(&a).unwrap().netmask, 24);
        svc.netmask = 0;
        assert_eq!(svc.to_attrs().netmask, Some(0));
        let v6 = VirtualService::new(ServiceId::tcp(sa("[fd00::1]:80")));
        assert_eq!(v6.to_attrs().netmask, Some(128));
    }

    #[test]
    fn validation_names_the_problem() {
        let long = VirtualService::new(ServiceId::tcp(sa("10.96.0.1:1")))
            .scheduler(Scheduler::Other("a-very-long-scheduler".into()));
        assert!(long.validate().unwrap_err().contains("scheduler name"));
        let fw0 = VirtualService::new(ServiceId::FwMark {
            family: IpFamily::V4,
            mark: 0,
        });
        assert!(fw0.validate().is_err());
        let heavy = Destination::new(sa("10.244.1.2:80")).weight(u32::MAX);
        assert!(heavy.validate().unwrap_err().contains("weight"));
        assert!(Destination::new(sa("10.244.1.2:80")).validate().is_ok());
    }

    #[test]
    fn destination_attributes_roundtrip() {
        let d = Destination::new(sa("10.244.1.2:8080"))
            .weight(3)
            .forward(ForwardMethod::DirectRoute);
        assert_eq!(
            Destination::from_attrs(&d.to_attrs(), IpFamily::V4).unwrap(),
            d
        );
        // Without ADDR_FAMILY (older kernels) the service's family applies.
        let mut a = d.to_attrs();
        a.addr_family = None;
        assert_eq!(Destination::from_attrs(&a, IpFamily::V4).unwrap(), d);
    }

    #[test]
    fn display_like_ipvsadm() {
        assert_eq!(
            ServiceId::tcp(sa("10.96.0.10:80")).to_string(),
            "TCP 10.96.0.10:80"
        );
        assert_eq!(
            ServiceId::FwMark {
                family: IpFamily::V6,
                mark: 7
            }
            .to_string(),
            "FWM 7 IPv6"
        );
        assert_eq!(
            Scheduler::from_name("sed"),
            Scheduler::ShortestExpectedDelay
        );
        for s in Scheduler::KNOWN {
            assert_eq!(Scheduler::from_name(s.name()), s);
        }
    }
}
