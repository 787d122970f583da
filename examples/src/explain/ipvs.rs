//! The IPVS table as the walk reads it (`ipvsadm -Ln`): the virtual services of kube-proxy's
//! ipvs mode with their real servers, read live through podnet-nat's generic netlink client or
//! from a recording, and the questions the walk asks of it (which virtual service a packet
//! hits, which real servers the scheduler can pick).
//!
//! In ipvs mode kube-proxy binds every ClusterIP (and external IP) to the `kube-ipvs0` dummy
//! device, so a packet for one is local (the `local` route table); IPVS's hook at LOCAL_IN
//! (and LOCAL_OUT for the node's own traffic) then matches the virtual service by protocol,
//! address and port (or by firewall mark), the scheduler picks a real server, the destination
//! is rewritten (masquerade forwarding, kube-proxy's only method) and the packet is sent on
//! through the routing table to the endpoint.

use podnet_nat::ipvs::{DestinationEntry, ForwardMethod, Ipvs, IpvsError, ServiceEntry, ServiceId};
use podnet_netns::NetNs;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// One IPVS virtual service and its real servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpvsService {
    /// `tcp`, `udp` or `sctp`; empty for a firewall-mark service.
    pub proto: String,
    /// The virtual address and port (`None` for a firewall-mark service).
    pub addr: Option<SocketAddr>,
    /// The firewall mark the service matches, for a firewall-mark service.
    pub fwmark: Option<u32>,
    /// The scheduler's name (`rr`, `wrr`, `sh`, ...).
    pub scheduler: String,
    /// The persistence timeout in seconds, when the service is persistent (session affinity).
    pub persistent: Option<u32>,
    /// The real servers.
    pub dests: Vec<IpvsDest>,
}

/// One real server of a virtual service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpvsDest {
    /// Address and port.
    pub addr: SocketAddr,
    /// The weight (0: takes no new connections).
    pub weight: u32,
    /// The forwarding method as `ipvsadm` names it (`Masq`, `Route`, `Tunnel`, `Local`).
    pub forward: String,
}

impl IpvsService {
    /// From podnet-nat's entries.
    fn from_entries(s: &ServiceEntry, dests: &[DestinationEntry]) -> IpvsService {
        let svc = &s.service;
        let (proto, addr, fwmark) = match svc.id {
            ServiceId::Addr { protocol, addr } => (protocol.to_string(), Some(addr), None),
            ServiceId::FwMark { mark, .. } => (String::new(), None, Some(mark)),
        };
        let persistent = svc
            .flags
            .contains(podnet_nat::ipvs::ServiceFlags::PERSISTENT)
            .then_some(svc.timeout);
        IpvsService {
            proto,
            addr,
            fwmark,
            scheduler: svc.scheduler.name().to_owned(),
            persistent,
            dests: dests
                .iter()
                .map(|d| IpvsDest {
                    addr: d.destination.addr,
                    weight: d.destination.weight,
                    forward: forward_name(d.destination.forward).to_owned(),
                })
                .collect(),
        }
    }

    /// Whether a packet (protocol name, destination, port, mark) hits this service.
    pub(crate) fn matches(
        &self,
        proto: &str,
        dst: Ipv4Addr,
        dport: Option<u16>,
        mark: u32,
    ) -> bool {
        match (self.addr, self.fwmark) {
            (Some(a), _) => {
                self.proto.eq_ignore_ascii_case(proto)
                    && a.ip() == IpAddr::V4(dst)
                    && (a.port() == 0 || Some(a.port()) == dport)
            }
            (None, Some(m)) => m != 0 && m == mark,
            (None, None) => false,
        }
    }

    /// The real servers that can take a new connection (weight above 0).
    pub(crate) fn usable(&self) -> Vec<&IpvsDest> {
        self.dests.iter().filter(|d| d.weight > 0).collect()
    }
}

impl fmt::Display for IpvsService {
    /// `TCP 10.96.0.10:80 rr` (as `ipvsadm -Ln` heads a service), `FWM 4 rr`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.addr, self.fwmark) {
            (Some(a), _) => write!(f, "{} {a} {}", self.proto.to_uppercase(), self.scheduler)?,
            (None, m) => write!(f, "FWM {} {}", m.unwrap_or(0), self.scheduler)?,
        }
        if let Some(t) = self.persistent {
            write!(f, " persistent {t}")?;
        }
        Ok(())
    }
}

fn forward_name(f: ForwardMethod) -> &'static str {
    f.ipvsadm_name()
}

/// The IPVS table of `ns`: empty when the kernel has no IPVS (there can be no virtual service
/// then), the error when it has one and the table could not be read.
pub(crate) fn read_live(ns: &NetNs) -> Result<Vec<IpvsService>, String> {
    let mut ipvs = match Ipvs::in_ns(ns) {
        Ok(i) => i,
        Err(IpvsError::NotAvailable) => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let services = ipvs.list_services().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for s in &services {
        let dests = ipvs
            .list_destinations(&s.service.id)
            .map_err(|e| e.to_string())?;
        out.push(IpvsService::from_entries(s, &dests));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(addr: &str, dests: &[(&str, u32)]) -> IpvsService {
        IpvsService {
            proto: "tcp".into(),
            addr: Some(addr.parse().unwrap()),
            fwmark: None,
            scheduler: "rr".into(),
            persistent: None,
            dests: dests
                .iter()
                .map(|(a, w)| IpvsDest {
                    addr: a.parse().unwrap(),
                    weight: *w,
                    forward: "Masq".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn services_match_by_protocol_address_and_port() {
        let s = svc(
            "10.96.0.10:80",
            &[("10.244.1.2:7777", 1), ("10.244.2.2:7777", 0)],
        );
        let vip: Ipv4Addr = "10.96.0.10".parse().unwrap();
        assert!(s.matches("tcp", vip, Some(80), 0));
        assert!(!s.matches("udp", vip, Some(80), 0));
        assert!(!s.matches("tcp", vip, Some(81), 0));
        assert!(!s.matches("tcp", "10.96.0.11".parse().unwrap(), Some(80), 0));
        assert_eq!(
            s.usable().len(),
            1,
            "a real server of weight 0 takes nothing new"
        );
        assert_eq!(s.to_string(), "TCP 10.96.0.10:80 rr");
        let fwm = IpvsService {
            proto: String::new(),
            addr: None,
            fwmark: Some(4),
            persistent: Some(10800),
            ..s
        };
        assert!(fwm.matches("tcp", vip, Some(1), 4));
        assert!(!fwm.matches("tcp", vip, Some(1), 0));
        assert_eq!(fwm.to_string(), "FWM 4 rr persistent 10800");
    }
}
