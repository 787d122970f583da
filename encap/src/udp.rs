//! UDP datagrams, with the pseudo-header checksum for IPv4 and IPv6.
#![forbid(unsafe_code)]

use crate::buf::PacketBuf;
use crate::checksum;
use crate::error::{Error, Layer, Result, malformed, need, truncated};
use crate::field::{Field, get_u16, packet_view, set_u16};
use crate::ip::{IpPair, IpProtocol};

mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const LENGTH: usize = 4;
    pub(super) const CHECKSUM: usize = 6;
}

/// The length of a UDP header.
pub const HEADER_LEN: usize = 8;

packet_view! {
    /// A read/write view of a UDP datagram.
    Packet;
    checked:
    /// Wraps a buffer after checking that the header fits and that the length field is at
    /// least 8 and fits in the buffer, so that no accessor can panic.
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// The checks of [`Packet::new_checked`].
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        need(Layer::Udp, HEADER_LEN, b.len())?;
        let len = usize::from(get_u16(b, field::LENGTH));
        if len < HEADER_LEN {
            return Err(malformed(Layer::Udp, "length"));
        }
        need(Layer::Udp, len, b.len())?;
        Ok(())
    }

    /// The source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// The destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header and payload.
    #[inline]
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// `true` when the length field says there is no payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// The checksum field (0 means "not computed", allowed over IPv4 only).
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// `true` when the checksum verifies against the pseudo-header of `addrs`. A zero checksum
    /// verifies over IPv4 (it was not computed) and fails over IPv6.
    #[inline]
    pub fn verify_checksum(&self, addrs: &IpPair) -> bool {
        if self.checksum() == 0 {
            return matches!(addrs, IpPair::V4 { .. });
        }
        let len = self.len();
        let data = &self.buffer.as_ref()[..usize::from(len)];
        checksum::combine(&[
            addrs.pseudo_header_sum(IpProtocol::UDP, u32::from(len)),
            checksum::data(data),
        ]) == 0xffff
    }

    /// The payload's byte range in the buffer (ends at the length field).
    #[inline]
    pub fn payload_range(&self) -> Field {
        HEADER_LEN..usize::from(self.len())
    }

    /// The payload.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_range()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, v);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Computes the checksum over the header and the payload (up to the length field) with the
    /// pseudo-header of `addrs`, and writes it (a computed zero goes out as 0xffff).
    #[inline]
    pub fn fill_checksum(&mut self, addrs: &IpPair) {
        self.set_checksum(0);
        let len = self.len();
        let sum = checksum::combine(&[
            addrs.pseudo_header_sum(IpProtocol::UDP, u32::from(len)),
            checksum::data(&self.buffer.as_ref()[..usize::from(len)]),
        ]);
        let c = checksum::finish(sum);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// The payload, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.payload_range();
        &mut self.buffer.as_mut()[r]
    }
}

/// The fields of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// The payload length in bytes.
    pub payload_len: usize,
}

impl Repr {
    /// Reads the header of a checked datagram and verifies its checksum against `addrs` (a zero
    /// checksum is accepted over IPv4 only).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>, addrs: &IpPair) -> Result<Repr> {
        packet.check_len()?;
        if !packet.verify_checksum(addrs) {
            return Err(Error::BadChecksum { layer: Layer::Udp });
        }
        Repr::parse_unverified(packet)
    }

    /// Reads the header of a checked datagram without looking at the checksum (for payloads
    /// whose checksum was verified by the kernel or a NIC).
    pub fn parse_unverified<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.dst_port() == 0 {
            return Err(malformed(Layer::Udp, "destination port"));
        }
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: usize::from(packet.len()).saturating_sub(HEADER_LEN),
        })
    }

    /// The header length (8).
    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into a buffer that already holds the payload after 8 bytes of room.
    ///
    /// The checksum is computed when `checksum` is `true` and always over IPv6; otherwise it
    /// is 0 (IPv4 only). Fails when the length would exceed 65535 or the buffer is shorter
    /// than header plus payload.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        addrs: &IpPair,
        checksum: bool,
    ) -> Result<()> {
        let len = u16::try_from(HEADER_LEN + self.payload_len)
            .map_err(|_| malformed(Layer::Udp, "length"))?;
        let have = packet.buffer.as_ref().len();
        if have < usize::from(len) {
            return Err(truncated(Layer::Udp, usize::from(len), have));
        }
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        if checksum || matches!(addrs, IpPair::V6 { .. }) {
            packet.fill_checksum(addrs);
        } else {
            packet.set_checksum(0);
        }
        Ok(())
    }

    /// Prepends this header to the payload in `buf`; `payload_len` is taken from the buffer.
    #[inline]
    pub fn prepend(&self, buf: &mut PacketBuf, addrs: &IpPair, checksum: bool) -> Result<()> {
        let r = Repr {
            payload_len: buf.len(),
            ..*self
        };
        if HEADER_LEN + r.payload_len > usize::from(u16::MAX) {
            return Err(malformed(Layer::Udp, "length"));
        }
        buf.prepend_unzeroed(HEADER_LEN);
        r.emit(
            &mut Packet::new_unchecked(buf.as_mut_slice()),
            addrs,
            checksum,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    // A DNS query header from 192.168.1.1:48896 to 192.168.1.2:53 (smoltcp's fixture values).
    const BYTES: [u8; 12] = [
        0xbf, 0x00, 0x00, 0x35, 0x00, 0x0c, 0x12, 0x4d, 0xaa, 0x00, 0x00, 0xff,
    ];

    fn addrs() -> IpPair {
        IpPair::V4 {
            src: Ipv4Addr::new(192, 168, 1, 1),
            dst: Ipv4Addr::new(192, 168, 1, 2),
        }
    }

    #[test]
    fn parses_and_emits_a_known_datagram() {
        let p = Packet::new_checked(&BYTES[..]).unwrap();
        let r = Repr::parse(&p, &addrs()).unwrap();
        assert_eq!(
            r,
            Repr {
                src_port: 48896,
                dst_port: 53,
                payload_len: 4
            }
        );
        assert_eq!(p.payload(), &[0xaa, 0, 0, 0xff]);
        let mut out = BYTES;
        out[..8].fill(0);
        r.emit(&mut Packet::new_unchecked(&mut out[..]), &addrs(), true)
            .unwrap();
        assert_eq!(out, BYTES);
    }

    #[test]
    fn zero_checksum_is_accepted_over_ipv4_only() {
        let mut b = BYTES;
        b[6] = 0;
        b[7] = 0;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(Repr::parse(&p, &addrs()).is_ok());
        let v6 = IpPair::V6 {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
        };
        assert_eq!(
            Repr::parse(&p, &v6).unwrap_err(),
            Error::BadChecksum { layer: Layer::Udp }
        );
        b[7] = 1;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(Repr::parse(&p, &addrs()).is_err());
    }

    #[test]
    fn refuses_bad_lengths() {
        let mut b = BYTES;
        b[5] = 7;
        assert!(Packet::new_checked(&b[..]).is_err());
        b[5] = 13;
        assert!(Packet::new_checked(&b[..]).is_err());
        assert!(Packet::new_checked(&BYTES[..7]).is_err());
    }
}
