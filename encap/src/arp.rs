//! ARP packets (RFC 826) for IPv4 over Ethernet.
#![forbid(unsafe_code)]

use crate::buf::PacketBuf;
use crate::error::{Layer, Result, malformed, need, unsupported};
use crate::ethernet::{EtherType, MacAddr};
use crate::field::{get_u16, packet_view, set_u16};
use std::net::Ipv4Addr;

mod field {
    pub(super) const HTYPE: usize = 0;
    pub(super) const PTYPE: usize = 2;
    pub(super) const HLEN: usize = 4;
    pub(super) const PLEN: usize = 5;
    pub(super) const OPER: usize = 6;
    pub(super) const SHA: usize = 8;
}

/// The length of an ARP packet for IPv4 over Ethernet.
pub const PACKET_LEN: usize = 28;

const HTYPE_ETHERNET: u16 = 1;

/// An ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Operation(pub u16);

impl Operation {
    /// Who has this address?
    pub const REQUEST: Operation = Operation(1);
    /// This address is at this hardware address.
    pub const REPLY: Operation = Operation(2);
}

packet_view! {
    /// A read/write view of an ARP packet of any hardware and protocol type.
    Packet;
    checked:
    /// Wraps a buffer after checking that it holds the addresses its length fields announce,
    /// so that no accessor can panic.
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// The checks of [`Packet::new_checked`].
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        need(Layer::Arp, field::SHA, b.len())?;
        let len = field::SHA + 2 * (usize::from(b[field::HLEN]) + usize::from(b[field::PLEN]));
        need(Layer::Arp, len, b.len())?;
        Ok(())
    }

    /// The hardware type (1 for Ethernet).
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::HTYPE)
    }

    /// The protocol type (an EtherType).
    #[inline]
    pub fn protocol_type(&self) -> EtherType {
        EtherType(get_u16(self.buffer.as_ref(), field::PTYPE))
    }

    /// The hardware address length.
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// The protocol address length.
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// The operation.
    #[inline]
    pub fn operation(&self) -> Operation {
        Operation(get_u16(self.buffer.as_ref(), field::OPER))
    }

    fn at(&self, i: usize) -> &[u8] {
        let h = usize::from(self.hardware_len());
        let p = usize::from(self.protocol_len());
        let (start, len) = match i {
            0 => (field::SHA, h),
            1 => (field::SHA + h, p),
            2 => (field::SHA + h + p, h),
            _ => (field::SHA + 2 * h + p, p),
        };
        &self.buffer.as_ref()[start..start + len]
    }

    /// The sender hardware address.
    #[inline]
    pub fn sender_hardware_addr(&self) -> &[u8] {
        self.at(0)
    }

    /// The sender protocol address.
    #[inline]
    pub fn sender_protocol_addr(&self) -> &[u8] {
        self.at(1)
    }

    /// The target hardware address.
    #[inline]
    pub fn target_hardware_addr(&self) -> &[u8] {
        self.at(2)
    }

    /// The target protocol address.
    #[inline]
    pub fn target_protocol_addr(&self) -> &[u8] {
        self.at(3)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes the fixed part for IPv4 over Ethernet and the operation.
    #[inline]
    pub fn set_ethernet_ipv4(&mut self, op: Operation) {
        let b = self.buffer.as_mut();
        set_u16(b, field::HTYPE, HTYPE_ETHERNET);
        set_u16(b, field::PTYPE, EtherType::IPV4.0);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        set_u16(b, field::OPER, op.0);
    }

    /// Writes the four addresses of an IPv4-over-Ethernet packet (28 bytes needed).
    #[inline]
    pub fn set_addrs(&mut self, sha: MacAddr, spa: Ipv4Addr, tha: MacAddr, tpa: Ipv4Addr) {
        let b = self.buffer.as_mut();
        b[8..14].copy_from_slice(&sha.0);
        b[14..18].copy_from_slice(&spa.octets());
        b[18..24].copy_from_slice(&tha.0);
        b[24..28].copy_from_slice(&tpa.octets());
    }
}

/// An ARP packet for IPv4 over Ethernet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The operation.
    pub operation: Operation,
    /// Sender hardware address.
    pub sender_mac: MacAddr,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address (zero in a request).
    pub target_mac: MacAddr,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

fn mac(b: &[u8]) -> MacAddr {
    let mut m = [0u8; 6];
    m.copy_from_slice(b);
    MacAddr(m)
}

fn ip(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

impl Repr {
    /// Reads a checked packet; only Ethernet hardware and IPv4 protocol addresses, and only
    /// requests and replies, are supported.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.hardware_type() != HTYPE_ETHERNET {
            return Err(unsupported(Layer::Arp, "hardware type"));
        }
        if packet.protocol_type() != EtherType::IPV4 {
            return Err(unsupported(Layer::Arp, "protocol type"));
        }
        if packet.hardware_len() != 6 {
            return Err(malformed(Layer::Arp, "hardware address length"));
        }
        if packet.protocol_len() != 4 {
            return Err(malformed(Layer::Arp, "protocol address length"));
        }
        let operation = packet.operation();
        if operation != Operation::REQUEST && operation != Operation::REPLY {
            return Err(unsupported(Layer::Arp, "operation"));
        }
        Ok(Repr {
            operation,
            sender_mac: mac(packet.sender_hardware_addr()),
            sender_ip: ip(packet.sender_protocol_addr()),
            target_mac: mac(packet.target_hardware_addr()),
            target_ip: ip(packet.target_protocol_addr()),
        })
    }

    /// The length this representation emits (28).
    #[inline]
    pub fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet into the first 28 bytes.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_ethernet_ipv4(self.operation);
        packet.set_addrs(
            self.sender_mac,
            self.sender_ip,
            self.target_mac,
            self.target_ip,
        );
    }

    /// Prepends this packet to `buf` (usually empty).
    #[inline]
    pub fn prepend(&self, buf: &mut PacketBuf) {
        self.emit(&mut Packet::new_unchecked(buf.prepend_unzeroed(PACKET_LEN)));
    }

    /// The reply a host owning `target_ip` with address `mac` sends to this request.
    pub fn reply(&self, mac: MacAddr) -> Repr {
        Repr {
            operation: Operation::REPLY,
            sender_mac: mac,
            sender_ip: self.target_ip,
            target_mac: self.sender_mac,
            target_ip: self.sender_ip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // eth/ipv4 request
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 10, 244, 1, 1, // sender
        0, 0, 0, 0, 0, 0, 10, 244, 1, 2, // target
    ];

    #[test]
    fn parses_and_emits_a_request() {
        let p = Packet::new_checked(&REQUEST[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.operation, Operation::REQUEST);
        assert_eq!(r.sender_ip, Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(r.target_ip, Ipv4Addr::new(10, 244, 1, 2));
        let mut out = [0u8; 28];
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, REQUEST);
        assert!(Packet::new_checked(&REQUEST[..27]).is_err());
    }
}
