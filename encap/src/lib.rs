//! Zero-copy, never-panicking wire codecs for container networking: Ethernet II (with
//! 802.1Q), ARP, IPv4, IPv6, UDP, ICMPv4, VXLAN (with GBP) and flannel-UDP, and whole-frame
//! VXLAN and flannel-UDP encapsulation.
//!
//! Each protocol module follows smoltcp's `wire` layout:
//! - `Packet<T: AsRef<[u8]>>` is a view over a buffer. `Packet::new_checked` validates the
//!   lengths and versions once, after which no accessor can panic; `new_unchecked` is for
//!   writing into a buffer of the right size.
//! - `Repr` holds the header's fields. `Repr::parse` reads a checked packet and validates what
//!   the view does not (checksums, supported values); `Repr::emit` writes exactly
//!   `Repr::buffer_len()` bytes. `parse(emit(x)) == x` for every `Repr` (property-tested).
//! - `Repr::prepend` writes the header in front of the payload already in a [`PacketBuf`],
//!   using its headroom, so building a packet and encapsulating it never moves the payload.
//!
//! Errors are one small [`Error`] type. No input makes a parser panic: every parser has a
//! property test and a fuzz target that feed it arbitrary bytes.
//!
//! ```
//! use podnet_encap::{EthernetRepr, EtherType, IpPair, IpProtocol, Ipv4Repr, MacAddr};
//! use podnet_encap::{PacketBuf, UdpRepr, Underlay, Vni, VxlanEncap, decapsulate_vxlan};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pods = IpPair::V4 { src: "10.244.1.2".parse()?, dst: "10.244.2.3".parse()? };
//! let mut buf = PacketBuf::from_payload(VxlanEncap::HEADROOM + 42, b"hello");
//! UdpRepr { src_port: 5000, dst_port: 53, payload_len: 0 }.prepend(&mut buf, &pods, true)?;
//! Ipv4Repr::new("10.244.1.2".parse()?, "10.244.2.3".parse()?, IpProtocol::UDP, 64, 0)
//!     .prepend(&mut buf)?;
//! let (a, b) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
//! EthernetRepr { dst: b, src: a, vlan: None, ethertype: EtherType::IPV4 }.prepend(&mut buf);
//! let nodes = IpPair::V4 { src: "198.18.0.1".parse()?, dst: "198.18.0.2".parse()? };
//! VxlanEncap::new(Underlay::new(a, b, nodes), Vni::new(1).unwrap()).encapsulate(&mut buf)?;
//! let frame = decapsulate_vxlan(buf.as_slice(), 4789)?;
//! assert_eq!((frame.vxlan.vni.get(), frame.inner.len()), (1, 14 + 20 + 8 + 5));
//! # Ok(())
//! # }
//! ```
//!
//! # Handles
//!
//! The codecs are pure and open nothing. The udp backend's tunnel takes the TUN queues and
//! UDP sockets its caller opened (the TUN device from `podnet_links`, whose `Handle` follows
//! podnet's one handle convention, the top README's "Architecture") and starts with
//! `tunnel::Builder::start`.
#![deny(unsafe_code)]

pub mod arp;
mod buf;
pub mod checksum;
mod error;
pub mod ethernet;
mod field;
pub mod flannel;
pub mod flow;
pub mod frame;
pub mod icmpv4;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
#[cfg(all(feature = "tunnel", target_os = "linux"))]
pub mod tunnel;
pub mod udp;
pub mod vxlan;

pub use arp::{Packet as ArpPacket, Repr as ArpRepr};
pub use buf::PacketBuf;
pub use error::{Error, Layer, Result};
pub use ethernet::{EtherType, Frame as EthernetFrame, MacAddr, Repr as EthernetRepr, VlanTag};
pub use flannel::{FlannelDecap, FlannelEncap, decapsulate as decapsulate_flannel};
pub use flow::{PortRange, flow_hash};
pub use frame::{IpRepr, Outer, Underlay, VxlanDecap, VxlanEncap, decapsulate_vxlan};
pub use icmpv4::{Packet as Icmpv4Packet, Repr as Icmpv4Repr};
pub use ip::{IpPair, IpProtocol};
pub use ipv4::{Packet as Ipv4Packet, Repr as Ipv4Repr};
pub use ipv6::{Packet as Ipv6Packet, Repr as Ipv6Repr};
pub use udp::{Packet as UdpPacket, Repr as UdpRepr};
pub use vxlan::{Gbp, Packet as VxlanPacket, Repr as VxlanRepr, Vni};

/// The README's examples, compiled (and the codec example run) as doc tests. The tunnel's
/// example needs the `tunnel` feature.
#[cfg(all(doctest, feature = "tunnel"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
