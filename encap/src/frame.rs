//! Whole-frame encapsulation: an outer Ethernet/IP/UDP (and VXLAN) header around an inner
//! frame, and the reverse.
#![forbid(unsafe_code)]

use crate::buf::PacketBuf;
use crate::error::{Error, Layer, Result, truncated, unsupported};
use crate::ethernet::{self, EtherType, MacAddr, VlanTag};
use crate::flow::{PortRange, flow_hash};
use crate::ip::{IpPair, IpProtocol};
use crate::{ipv4, ipv6, udp, vxlan};
use std::ops::Range;

/// The outer addressing of a tunnel: who sends, to whom, over which link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Underlay {
    /// The sender's Ethernet address.
    pub src_mac: MacAddr,
    /// The next hop's Ethernet address.
    pub dst_mac: MacAddr,
    /// An 802.1Q tag for the outer frame, if the underlay is a VLAN.
    pub vlan: Option<VlanTag>,
    /// The tunnel endpoints' addresses (IPv4 or IPv6).
    pub addrs: IpPair,
    /// The outer TTL or hop limit.
    pub ttl: u8,
    /// Compute the outer UDP checksum over IPv4 (always computed over IPv6). Linux VXLAN
    /// devices leave it at zero unless `udpcsum` is set.
    pub udp_checksum: bool,
}

impl Underlay {
    /// An underlay between `addrs` over an untagged link, TTL 64, no UDP checksum over IPv4.
    pub fn new(src_mac: MacAddr, dst_mac: MacAddr, addrs: IpPair) -> Underlay {
        Underlay {
            src_mac,
            dst_mac,
            vlan: None,
            addrs,
            ttl: 64,
            udp_checksum: false,
        }
    }

    /// The largest outer header this underlay prepends before the tunnel's own header.
    pub const MAX_HEADER_LEN: usize =
        ethernet::TAGGED_HEADER_LEN + ipv6::HEADER_LEN + udp::HEADER_LEN;

    /// Prepends UDP, IP and Ethernet headers to the UDP payload in `buf`.
    pub fn prepend(&self, buf: &mut PacketBuf, src_port: u16, dst_port: u16) -> Result<()> {
        udp::Repr {
            src_port,
            dst_port,
            payload_len: 0,
        }
        .prepend(buf, &self.addrs, self.udp_checksum)?;
        let ethertype = match self.addrs {
            IpPair::V4 { src, dst } => {
                ipv4::Repr::new(src, dst, IpProtocol::UDP, self.ttl, 0).prepend(buf)?;
                EtherType::IPV4
            }
            IpPair::V6 { src, dst } => {
                ipv6::Repr::new(src, dst, IpProtocol::UDP, self.ttl, 0).prepend(buf)?;
                EtherType::IPV6
            }
        };
        ethernet::Repr {
            dst: self.dst_mac,
            src: self.src_mac,
            vlan: self.vlan,
            ethertype,
        }
        .prepend(buf);
        Ok(())
    }
}

/// An IPv4 or IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpRepr {
    /// IPv4.
    V4(ipv4::Repr),
    /// IPv6 (the fixed header).
    V6(ipv6::Repr),
}

impl IpRepr {
    /// The address pair.
    pub fn addrs(&self) -> IpPair {
        match self {
            IpRepr::V4(r) => r.addrs(),
            IpRepr::V6(r) => r.addrs(),
        }
    }
}

/// The outer headers of a received tunnel frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Outer {
    /// The outer Ethernet header.
    pub eth: ethernet::Repr,
    /// The outer IP header.
    pub ip: IpRepr,
    /// The outer UDP header.
    pub udp: udp::Repr,
}

/// Where the validated outer headers of a tunnel frame lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Layout {
    l3: usize,
    l4: usize,
    payload_start: usize,
    payload_end: usize,
    v6: bool,
}

/// Validates the outer headers without building their `Repr`s (the fast path of
/// decapsulation); see [`parse_outer`].
fn check_outer(frame: &[u8], port: u16) -> Result<Layout> {
    let eth = ethernet::Frame::new_checked(frame)?;
    let l3 = eth.header_len();
    let ethertype = eth.ethertype();
    let l3buf = eth.payload();
    let (l4, l4_end, addrs, v6) = match ethertype {
        EtherType::IPV4 => {
            let p = ipv4::Packet::new_checked(l3buf)?;
            p.validate()?;
            if p.is_fragment() {
                return Err(unsupported(Layer::Ipv4, "fragment"));
            }
            if p.protocol() != IpProtocol::UDP {
                return Err(unsupported(Layer::Ipv4, "protocol (not UDP)"));
            }
            let r = p.payload_range();
            (l3 + r.start, l3 + r.end, p.addrs(), false)
        }
        EtherType::IPV6 => {
            let p = ipv6::Packet::new_checked(l3buf)?;
            let (proto, r) = p.upper_layer()?;
            if proto != IpProtocol::UDP {
                return Err(unsupported(Layer::Ipv6, "next header (not UDP)"));
            }
            (l3 + r.start, l3 + r.end, p.addrs(), true)
        }
        EtherType::VLAN => return Err(unsupported(Layer::Ethernet, "stacked VLAN tags")),
        _ => return Err(unsupported(Layer::Ethernet, "ethertype (not IP)")),
    };
    let seg = frame
        .get(l4..l4_end)
        .ok_or_else(|| truncated(Layer::Udp, l4_end, frame.len()))?;
    let u = udp::Packet::new_checked(seg)?;
    if !u.verify_checksum(&addrs) {
        return Err(Error::BadChecksum { layer: Layer::Udp });
    }
    if u.dst_port() != port || port == 0 {
        return Err(unsupported(Layer::Udp, "destination port"));
    }
    let pr = u.payload_range();
    Ok(Layout {
        l3,
        l4,
        payload_start: l4 + pr.start,
        payload_end: l4 + pr.end,
        v6,
    })
}

/// Reads the outer headers of a frame that [`check_outer`] accepted.
fn read_outer(frame: &[u8], l: &Layout) -> Outer {
    let eth = ethernet::Frame::new_unchecked(frame);
    let eth = ethernet::Repr {
        dst: eth.dst(),
        src: eth.src(),
        vlan: eth.vlan(),
        ethertype: eth.ethertype(),
    };
    let l3 = &frame[l.l3..];
    let ip = if l.v6 {
        let p = ipv6::Packet::new_unchecked(l3);
        IpRepr::V6(ipv6::Repr {
            src: p.src(),
            dst: p.dst(),
            next_header: p.next_header(),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
            payload_len: usize::from(p.payload_len()),
        })
    } else {
        let p = ipv4::Packet::new_unchecked(l3);
        let options = ipv4::Options::new(p.options()).unwrap_or_default();
        IpRepr::V4(ipv4::Repr::read(&p, options))
    };
    let u = udp::Packet::new_unchecked(&frame[l.l4..]);
    let udp = udp::Repr {
        src_port: u.src_port(),
        dst_port: u.dst_port(),
        payload_len: l.payload_end - l.payload_start,
    };
    Outer { eth, ip, udp }
}

/// Parses and validates outer Ethernet, IP and UDP headers addressed to `port`; returns them
/// and the UDP payload's byte range in `frame`.
///
/// Verifies the IPv4 header checksum and the UDP checksum (a zero one is accepted over IPv4),
/// and refuses fragments.
pub fn parse_outer(frame: &[u8], port: u16) -> Result<(Outer, Range<usize>)> {
    let l = check_outer(frame, port)?;
    Ok((read_outer(frame, &l), l.payload_start..l.payload_end))
}

/// VXLAN encapsulation parameters: the underlay, the VNI, and how ports are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanEncap {
    /// The outer addressing.
    pub underlay: Underlay,
    /// The network identifier.
    pub vni: vxlan::Vni,
    /// The GBP extension to send, if any.
    pub gbp: Option<vxlan::Gbp>,
    /// The destination UDP port ([`vxlan::PORT_IANA`] or [`vxlan::PORT_LINUX`]).
    pub dst_port: u16,
    /// The range the source port is picked from.
    pub src_ports: PortRange,
    /// The seed of the flow hash that picks the source port.
    pub hash_seed: u32,
}

impl VxlanEncap {
    /// Headroom that lets [`VxlanEncap::encapsulate`] prepend every header without copying:
    /// tagged Ethernet, IPv6, UDP and VXLAN.
    pub const HEADROOM: usize = Underlay::MAX_HEADER_LEN + vxlan::HEADER_LEN;

    /// Encapsulation to the IANA port with the Linux default source port range.
    pub fn new(underlay: Underlay, vni: vxlan::Vni) -> VxlanEncap {
        VxlanEncap {
            underlay,
            vni,
            gbp: None,
            dst_port: vxlan::PORT_IANA,
            src_ports: PortRange::LINUX_DEFAULT,
            hash_seed: 0,
        }
    }

    /// The outer UDP source port for an inner frame.
    #[inline]
    pub fn src_port(&self, inner: &[u8]) -> u16 {
        self.src_ports.pick(flow_hash(inner, self.hash_seed))
    }

    /// Prepends VXLAN, UDP, IP and Ethernet headers to the inner Ethernet frame in `buf`.
    ///
    /// Fails when `buf` does not hold at least an Ethernet header, or the result would exceed
    /// the IP length limit.
    pub fn encapsulate(&self, buf: &mut PacketBuf) -> Result<()> {
        ethernet::Frame::new_checked(buf.as_slice())?;
        let src_port = self.src_port(buf.as_slice());
        vxlan::Repr {
            vni: self.vni,
            gbp: self.gbp,
        }
        .prepend(buf);
        self.underlay.prepend(buf, src_port, self.dst_port)
    }
}

/// A decapsulated VXLAN frame: validated, and read lazily from the frame's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanDecap<'a> {
    frame: &'a [u8],
    layout: Layout,
    /// The VXLAN header.
    pub vxlan: vxlan::Repr,
    /// The inner Ethernet frame (at least an Ethernet header long).
    pub inner: &'a [u8],
    /// Where `inner` lies in the outer frame (to slice a `Bytes` without copying).
    pub inner_range: Range<usize>,
}

impl<'a> VxlanDecap<'a> {
    /// The outer Ethernet, IP and UDP headers.
    pub fn outer(&self) -> Outer {
        read_outer(self.frame, &self.layout)
    }

    /// The outer IP addresses (the tunnel endpoints).
    pub fn outer_addrs(&self) -> IpPair {
        let l3 = &self.frame[self.layout.l3..];
        if self.layout.v6 {
            ipv6::Packet::new_unchecked(l3).addrs()
        } else {
            ipv4::Packet::new_unchecked(l3).addrs()
        }
    }

    /// The outer UDP source and destination ports.
    pub fn outer_ports(&self) -> (u16, u16) {
        let u = udp::Packet::new_unchecked(&self.frame[self.layout.l4..]);
        (u.src_port(), u.dst_port())
    }

    /// The whole frame.
    pub fn frame(&self) -> &'a [u8] {
        self.frame
    }
}

/// Validates a whole VXLAN frame sent to UDP `port` and returns its VXLAN header and inner
/// frame; the outer headers are read on demand with [`VxlanDecap::outer`].
///
/// Verifies the outer IPv4 header checksum and the outer UDP checksum (a zero one is accepted
/// over IPv4), refuses fragments, other ports, a clear I flag, and inner frames shorter than
/// an Ethernet header.
pub fn decapsulate_vxlan(frame: &[u8], port: u16) -> Result<VxlanDecap<'_>> {
    let layout = check_outer(frame, port)?;
    let payload = frame
        .get(layout.payload_start..layout.payload_end)
        .ok_or_else(|| truncated(Layer::Vxlan, layout.payload_end, frame.len()))?;
    let (vxlan, inner) = vxlan::parse_payload(payload)?;
    let start = layout.payload_start + vxlan::HEADER_LEN;
    Ok(VxlanDecap {
        frame,
        layout,
        vxlan,
        inner,
        inner_range: start..layout.payload_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::PacketBuf;
    use std::net::Ipv4Addr;

    fn frame(udp_checksum: bool) -> Vec<u8> {
        let mut buf = PacketBuf::from_payload(VxlanEncap::HEADROOM, &[0x5a; 60]);
        let mut u = Underlay::new(
            MacAddr([2, 0, 0, 0, 0, 1]),
            MacAddr([2, 0, 0, 0, 0, 2]),
            IpPair::V4 {
                src: Ipv4Addr::new(198, 18, 0, 1),
                dst: Ipv4Addr::new(198, 18, 0, 2),
            },
        );
        u.udp_checksum = udp_checksum;
        VxlanEncap::new(u, vxlan::Vni::new(9).unwrap())
            .encapsulate(&mut buf)
            .unwrap();
        buf.as_slice().to_vec()
    }

    #[test]
    fn decapsulation_refuses_what_it_must() {
        let good = frame(true);
        assert!(decapsulate_vxlan(&good, 4789).is_ok());
        assert_eq!(
            decapsulate_vxlan(&good, 8472).unwrap_err(),
            unsupported(Layer::Udp, "destination port")
        );
        // A flipped payload bit breaks the UDP checksum ...
        let mut b = good.clone();
        *b.last_mut().unwrap() ^= 1;
        assert_eq!(
            decapsulate_vxlan(&b, 4789).unwrap_err(),
            Error::BadChecksum { layer: Layer::Udp }
        );
        // ... which a zero checksum over IPv4 does not have.
        let mut b = frame(false);
        *b.last_mut().unwrap() ^= 1;
        assert!(decapsulate_vxlan(&b, 4789).is_ok());
        // A fragment (MF set, header checksum repaired).
        let mut b = good.clone();
        b[14 + 6] |= 0x20;
        ipv4::Packet::new_checked(&mut b[14..])
            .unwrap()
            .fill_checksum();
        assert_eq!(
            decapsulate_vxlan(&b, 4789).unwrap_err(),
            unsupported(Layer::Ipv4, "fragment")
        );
        // A bad outer header checksum.
        let mut b = good.clone();
        b[14 + 8] ^= 1;
        assert_eq!(
            decapsulate_vxlan(&b, 4789).unwrap_err(),
            Error::BadChecksum { layer: Layer::Ipv4 }
        );
        // Cut anywhere: an error, never a panic.
        for n in 0..good.len() {
            assert!(decapsulate_vxlan(&good[..n], 4789).is_err(), "cut at {n}");
        }
    }
}
