//! IPv6 packets: the fixed header, and skipping extension headers to the upper layer.
#![forbid(unsafe_code)]

use crate::buf::PacketBuf;
use crate::error::{Layer, Result, malformed, need, truncated, unsupported};
use crate::field::{Field, get_array, get_u16, get_u32, packet_view, set_u16, set_u32};
use crate::ip::{IpPair, IpProtocol};
use std::net::Ipv6Addr;

mod field {
    use crate::field::Field;
    pub(super) const VER_TC_FLOW: usize = 0;
    pub(super) const PAYLOAD_LEN: usize = 4;
    pub(super) const NEXT_HEADER: usize = 6;
    pub(super) const HOP_LIMIT: usize = 7;
    pub(super) const SRC: Field = 8..24;
    pub(super) const DST: Field = 24..40;
}

/// The length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

packet_view! {
    /// A read/write view of an IPv6 packet.
    Packet;
    checked:
    /// Wraps a buffer after checking the version and that the payload length fits, so that no
    /// accessor can panic. Jumbograms (payload length 0 with a hop-by-hop jumbo option) are
    /// read as an empty payload.
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// The checks of [`Packet::new_checked`].
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        need(Layer::Ipv6, HEADER_LEN, b.len())?;
        if b[0] >> 4 != 6 {
            return Err(malformed(Layer::Ipv6, "version"));
        }
        let total = HEADER_LEN + usize::from(get_u16(b, field::PAYLOAD_LEN));
        need(Layer::Ipv6, total, b.len())?;
        Ok(())
    }

    /// The version field (6 in a checked packet).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// The traffic class.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (get_u32(self.buffer.as_ref(), field::VER_TC_FLOW) >> 20) as u8
    }

    /// The flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    /// The payload length field (extension headers included).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// The next header field of the fixed header.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NEXT_HEADER])
    }

    /// The hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// The source address.
    #[inline]
    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(get_array::<16>(self.buffer.as_ref(), field::SRC))
    }

    /// The destination address.
    #[inline]
    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(get_array::<16>(self.buffer.as_ref(), field::DST))
    }

    /// The address pair, for a transport checksum.
    #[inline]
    pub fn addrs(&self) -> IpPair {
        IpPair::V6 {
            src: self.src(),
            dst: self.dst(),
        }
    }

    /// The payload's byte range in the buffer (extension headers included).
    #[inline]
    pub fn payload_range(&self) -> Field {
        HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())
    }

    /// The payload after the fixed header (extension headers included).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_range()]
    }

    /// Skips the extension headers: the upper-layer protocol and the byte range of its data in
    /// the buffer.
    ///
    /// Skips hop-by-hop, routing, destination options and authentication headers, and a
    /// fragment header that describes a whole datagram (offset 0, no more fragments). Fails on
    /// real fragments and on ESP, which cannot be skipped.
    pub fn upper_layer(&self) -> Result<(IpProtocol, Field)> {
        let (proto, off) = skip_extension_headers(self.next_header(), self.payload())?;
        Ok((proto, HEADER_LEN + off..self.payload_range().end))
    }
}

/// Walks a chain of IPv6 extension headers that starts with `next_header` at the start of
/// `payload`; returns the upper-layer protocol and the offset of its data in `payload`.
///
/// See [`Packet::upper_layer`] for what is skipped and what fails.
pub fn skip_extension_headers(
    mut next_header: IpProtocol,
    payload: &[u8],
) -> Result<(IpProtocol, usize)> {
    let mut off = 0usize;
    loop {
        let rest = &payload[off.min(payload.len())..];
        let len = match next_header {
            IpProtocol::HOP_BY_HOP | IpProtocol::ROUTING | IpProtocol::DESTINATION_OPTIONS => {
                if rest.len() < 8 {
                    return Err(truncated(Layer::Ipv6, off + 8, payload.len()));
                }
                (usize::from(rest[1]) + 1) * 8
            }
            IpProtocol::AH => {
                if rest.len() < 8 {
                    return Err(truncated(Layer::Ipv6, off + 8, payload.len()));
                }
                (usize::from(rest[1]) + 2) * 4
            }
            IpProtocol::FRAGMENT => {
                if rest.len() < 8 {
                    return Err(truncated(Layer::Ipv6, off + 8, payload.len()));
                }
                if get_u16(rest, 2) & 0xfff9 != 0 {
                    return Err(unsupported(Layer::Ipv6, "fragment"));
                }
                8
            }
            IpProtocol::ESP => return Err(unsupported(Layer::Ipv6, "ESP")),
            upper => return Ok((upper, off)),
        };
        if rest.len() < len {
            return Err(truncated(Layer::Ipv6, off + len, payload.len()));
        }
        next_header = IpProtocol(rest[0]);
        off += len;
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version (6), traffic class and flow label.
    #[inline]
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        set_u32(self.buffer.as_mut(), field::VER_TC_FLOW, v);
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::PAYLOAD_LEN, len);
    }

    /// Sets the next header.
    #[inline]
    pub fn set_next_header(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[field::NEXT_HEADER] = p.0;
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// Decrements the hop limit as a router does; `None` (and no change) when it is zero.
    #[inline]
    pub fn decrement_hop_limit(&mut self) -> Option<u8> {
        let v = self.hop_limit().checked_sub(1)?;
        self.set_hop_limit(v);
        Some(v)
    }
}

/// The fields of the fixed IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// The next header of the fixed header (the first extension header or the upper layer).
    pub next_header: IpProtocol,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
    /// The payload length in bytes (extension headers included).
    pub payload_len: usize,
}

impl Repr {
    /// A plain header: traffic class and flow label 0.
    pub fn new(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        next_header: IpProtocol,
        hop_limit: u8,
        payload_len: usize,
    ) -> Repr {
        Repr {
            src,
            dst,
            next_header,
            hop_limit,
            traffic_class: 0,
            flow_label: 0,
            payload_len,
        }
    }

    /// Reads the fixed header of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            src: packet.src(),
            dst: packet.dst(),
            next_header: packet.next_header(),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
            payload_len: usize::from(packet.payload_len()),
        })
    }

    /// The header length this representation emits (40).
    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// The address pair.
    #[inline]
    pub fn addrs(&self) -> IpPair {
        IpPair::V6 {
            src: self.src,
            dst: self.dst,
        }
    }

    /// Writes the fixed header into the first 40 bytes. Fails when the payload length exceeds
    /// 65535 (jumbograms are not built).
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        let len =
            u16::try_from(self.payload_len).map_err(|_| unsupported(Layer::Ipv6, "jumbogram"))?;
        packet.set_version_tc_flow(self.traffic_class, self.flow_label);
        packet.set_payload_len(len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src(self.src);
        packet.set_dst(self.dst);
        Ok(())
    }

    /// Prepends this header to the payload in `buf`; `payload_len` is taken from the buffer.
    #[inline]
    pub fn prepend(&self, buf: &mut PacketBuf) -> Result<()> {
        let r = Repr {
            payload_len: buf.len(),
            ..*self
        };
        if r.payload_len > usize::from(u16::MAX) {
            return Err(unsupported(Layer::Ipv6, "jumbogram"));
        }
        r.emit(&mut Packet::new_unchecked(buf.prepend_unzeroed(HEADER_LEN)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ext_headers() -> Vec<u8> {
        let mut v = vec![0u8; 40];
        let repr = Repr::new(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            IpProtocol::HOP_BY_HOP,
            64,
            8 + 16 + 8 + 4,
        );
        repr.emit(&mut Packet::new_unchecked(&mut v[..])).unwrap();
        // hop-by-hop: next = routing, len 0 (8 bytes), PadN
        v.extend_from_slice(&[43, 0, 1, 4, 0, 0, 0, 0]);
        // routing: next = fragment, len 1 (16 bytes)
        v.extend_from_slice(&[44, 1, 0, 0, 0, 0, 0, 0]);
        v.extend_from_slice(&[0; 8]);
        // fragment header of an atomic fragment: next = UDP
        v.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 1]);
        v.extend_from_slice(&[1, 2, 3, 4]);
        v
    }

    #[test]
    fn skips_extension_headers() {
        let v = with_ext_headers();
        let p = Packet::new_checked(&v[..]).unwrap();
        let (proto, range) = p.upper_layer().unwrap();
        assert_eq!(proto, IpProtocol::UDP);
        assert_eq!(&v[range], &[1, 2, 3, 4]);
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.next_header, IpProtocol::HOP_BY_HOP);
        assert_eq!(r.payload_len, 36);
    }

    #[test]
    fn refuses_real_fragments_and_short_chains() {
        let mut v = with_ext_headers();
        v[40 + 24 + 3] = 0x01; // more fragments
        let p = Packet::new_checked(&v[..]).unwrap();
        assert!(p.upper_layer().is_err());
        let mut v = with_ext_headers();
        v[40 + 9] = 200; // routing header longer than the packet
        let p = Packet::new_checked(&v[..]).unwrap();
        assert!(p.upper_layer().is_err());
        assert!(Packet::new_checked(&with_ext_headers()[..70]).is_err());
    }
}
