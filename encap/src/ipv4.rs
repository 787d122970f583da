//! IPv4 packets: header with options, header checksum, and the TTL decrement of a router.
#![forbid(unsafe_code)]

use crate::buf::PacketBuf;
use crate::checksum;
use crate::error::{Error, Layer, Result, malformed, need};
use crate::field::{Field, get_array, get_u16, packet_view, set_u16};
use crate::ip::{IpPair, IpProtocol};
use std::net::Ipv4Addr;

mod field {
    use crate::field::Field;
    pub(super) const VER_IHL: usize = 0;
    pub(super) const DSCP_ECN: usize = 1;
    pub(super) const TOTAL_LEN: usize = 2;
    pub(super) const IDENT: usize = 4;
    pub(super) const FLAGS_FRAG: usize = 6;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: usize = 10;
    pub(super) const SRC: Field = 12..16;
    pub(super) const DST: Field = 16..20;
}

/// The length of an IPv4 header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// The length of an IPv4 header with the most options (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;

packet_view! {
    /// A read/write view of an IPv4 packet.
    Packet;
    checked:
    /// Wraps a buffer after checking the version, the header length and the total length, so
    /// that no accessor can panic. The buffer may be longer than the total length (link-layer
    /// padding); [`Packet::payload`] ends at the total length.
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// The checks of [`Packet::new_checked`].
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        need(Layer::Ipv4, MIN_HEADER_LEN, b.len())?;
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(malformed(Layer::Ipv4, "version"));
        }
        let hl = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if hl < MIN_HEADER_LEN {
            return Err(malformed(Layer::Ipv4, "header length"));
        }
        need(Layer::Ipv4, hl, b.len())?;
        let total = usize::from(get_u16(b, field::TOTAL_LEN));
        if total < hl {
            return Err(malformed(Layer::Ipv4, "total length"));
        }
        need(Layer::Ipv4, total, b.len())?;
        Ok(())
    }

    /// The version field (4 in a checked packet).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in bytes, options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The differentiated services code point.
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// The explicit congestion notification bits.
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 3
    }

    /// The total length field: header and payload.
    #[inline]
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::TOTAL_LEN)
    }

    /// The identification field.
    #[inline]
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// The "don't fragment" flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_DF != 0
    }

    /// The "more fragments" flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_MF != 0
    }

    /// The fragment offset, in 8-byte units.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & 0x1fff
    }

    /// `true` when this packet is a fragment (not a whole datagram).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// The time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The payload's protocol.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// The header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The source address.
    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::SRC))
    }

    /// The destination address.
    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::DST))
    }

    /// The address pair, for a transport checksum.
    #[inline]
    pub fn addrs(&self) -> IpPair {
        IpPair::V4 {
            src: self.src(),
            dst: self.dst(),
        }
    }

    /// The raw option bytes (between the fixed header and the payload).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }

    /// What [`Repr::parse`] checks beyond [`Packet::new_checked`], without building a
    /// [`Repr`]: the header checksum and the options' structure.
    #[inline]
    pub fn validate(&self) -> Result<()> {
        self.check_len()?;
        if !self.verify_checksum() {
            return Err(Error::BadChecksum { layer: Layer::Ipv4 });
        }
        if self.header_len() > MIN_HEADER_LEN {
            Options::new(self.options())?;
        }
        Ok(())
    }

    /// `true` when the header checksum verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(&self.buffer.as_ref()[..self.header_len()]) == 0xffff
    }

    /// The payload's byte range in the buffer (ends at the total length).
    #[inline]
    pub fn payload_range(&self) -> Field {
        self.header_len()..usize::from(self.total_len())
    }

    /// The payload (ends at the total length, dropping link-layer padding).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_range()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version and header length (in bytes, a multiple of 4 from 20 to 60).
    #[inline]
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    /// Sets the DSCP and ECN bits.
    #[inline]
    pub fn set_dscp_ecn(&mut self, dscp: u8, ecn: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = (dscp << 2) | (ecn & 3);
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::TOTAL_LEN, len);
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, ident);
    }

    /// Sets the flags and the fragment offset (8-byte units, 13 bits).
    #[inline]
    pub fn set_flags_and_frag_offset(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let v = (if dont_frag { FLAG_DF } else { 0 })
            | (if more_frags { FLAG_MF } else { 0 })
            | (offset & 0x1fff);
        set_u16(self.buffer.as_mut(), field::FLAGS_FRAG, v);
    }

    /// Sets the TTL (without updating the checksum).
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol.
    #[inline]
    pub fn set_protocol(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = p.0;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// Computes and writes the header checksum.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let sum = checksum::data(&self.buffer.as_ref()[..hl]);
        self.set_checksum(checksum::finish(sum));
    }

    /// Decrements the TTL as a router does, updating the checksum incrementally (RFC 1624)
    /// instead of summing the header again. Returns the new TTL, or `None` (and changes
    /// nothing) when the TTL is already zero.
    #[inline]
    pub fn decrement_ttl(&mut self) -> Option<u8> {
        let b = self.buffer.as_mut();
        let ttl = b[field::TTL];
        let new_ttl = ttl.checked_sub(1)?;
        let old_word = u16::from_be_bytes([ttl, b[field::PROTOCOL]]);
        let new_word = u16::from_be_bytes([new_ttl, b[field::PROTOCOL]]);
        let sum = checksum::update(get_u16(b, field::CHECKSUM), old_word, new_word);
        b[field::TTL] = new_ttl;
        set_u16(b, field::CHECKSUM, sum);
        Some(new_ttl)
    }

    /// The option bytes, writable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[MIN_HEADER_LEN..hl]
    }

    /// The payload, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.payload_range();
        &mut self.buffer.as_mut()[r]
    }
}

/// IPv4 options, kept as their raw bytes (a multiple of 4, at most 40), validated as a
/// sequence of type-length-value options.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Options {
    bytes: [u8; 40],
    len: u8,
}

impl Default for Options {
    fn default() -> Options {
        Options::NONE
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Options").field(&self.as_bytes()).finish()
    }
}

impl Options {
    /// No options.
    pub const NONE: Options = Options {
        bytes: [0; 40],
        len: 0,
    };

    /// Options from their raw bytes: a multiple of 4 bytes, at most 40, and well-formed
    /// (end-of-list, no-operation, and options whose length byte stays inside the area).
    #[inline]
    pub fn new(bytes: &[u8]) -> Result<Options> {
        if bytes.is_empty() {
            return Ok(Options::NONE);
        }
        if bytes.len() > 40 || bytes.len() % 4 != 0 {
            return Err(malformed(Layer::Ipv4, "options length"));
        }
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                0 => break,
                1 => i += 1,
                _ => {
                    let Some(&len) = bytes.get(i + 1) else {
                        return Err(malformed(Layer::Ipv4, "options"));
                    };
                    let len = usize::from(len);
                    if len < 2 || i + len > bytes.len() {
                        return Err(malformed(Layer::Ipv4, "options"));
                    }
                    i += len;
                }
            }
        }
        let mut o = Options::NONE;
        o.bytes[..bytes.len()].copy_from_slice(bytes);
        o.len = bytes.len() as u8;
        Ok(o)
    }

    /// The raw option bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len).min(40)]
    }

    /// The options' length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// `true` when there are no options.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The fields of an IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// The payload's protocol.
    pub protocol: IpProtocol,
    /// Time to live.
    pub ttl: u8,
    /// Differentiated services code point (6 bits).
    pub dscp: u8,
    /// Explicit congestion notification (2 bits).
    pub ecn: u8,
    /// Identification.
    pub ident: u16,
    /// The "don't fragment" flag.
    pub dont_frag: bool,
    /// The "more fragments" flag.
    pub more_frags: bool,
    /// Fragment offset in 8-byte units (13 bits).
    pub frag_offset: u16,
    /// Options.
    pub options: Options,
    /// The payload length in bytes.
    pub payload_len: usize,
}

impl Repr {
    /// A plain header: no options, DF set, identification 0, DSCP/ECN 0.
    pub fn new(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        protocol: IpProtocol,
        ttl: u8,
        payload_len: usize,
    ) -> Repr {
        Repr {
            src,
            dst,
            protocol,
            ttl,
            dscp: 0,
            ecn: 0,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            options: Options::NONE,
            payload_len,
        }
    }

    /// Reads the header of a checked packet, verifying the header checksum and the options.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        packet.validate()?;
        Ok(Repr::read(packet, Options::new(packet.options())?))
    }

    /// The fields of a packet already validated by [`Packet::validate`].
    #[inline]
    pub(crate) fn read<T: AsRef<[u8]>>(packet: &Packet<T>, options: Options) -> Repr {
        Repr {
            src: packet.src(),
            dst: packet.dst(),
            protocol: packet.protocol(),
            ttl: packet.ttl(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
            options,
            payload_len: usize::from(packet.total_len()).saturating_sub(packet.header_len()),
        }
    }

    /// The header length this representation emits.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN + self.options.len()
    }

    /// The address pair.
    #[inline]
    pub fn addrs(&self) -> IpPair {
        IpPair::V4 {
            src: self.src,
            dst: self.dst,
        }
    }

    /// Writes the header, with its checksum, into the first [`Repr::buffer_len`] bytes.
    ///
    /// Fails when the total length would exceed 65535 bytes.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        let hl = self.buffer_len();
        let total = u16::try_from(hl + self.payload_len)
            .map_err(|_| malformed(Layer::Ipv4, "total length"))?;
        packet.set_version_and_header_len(hl);
        packet.set_dscp_ecn(self.dscp, self.ecn);
        packet.set_total_len(total);
        packet.set_ident(self.ident);
        packet.set_flags_and_frag_offset(self.dont_frag, self.more_frags, self.frag_offset);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src(self.src);
        packet.set_dst(self.dst);
        packet
            .options_mut()
            .copy_from_slice(self.options.as_bytes());
        packet.fill_checksum();
        Ok(())
    }

    /// Prepends this header to the payload in `buf`; `payload_len` is taken from the buffer.
    #[inline]
    pub fn prepend(&self, buf: &mut PacketBuf) -> Result<()> {
        let r = Repr {
            payload_len: buf.len(),
            ..*self
        };
        if MIN_HEADER_LEN + r.options.len() + r.payload_len > usize::from(u16::MAX) {
            return Err(malformed(Layer::Ipv4, "total length"));
        }
        let n = r.buffer_len();
        r.emit(&mut Packet::new_unchecked(buf.prepend_unzeroed(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ICMP echo request from 10.0.0.1 to 10.0.0.2, as captured (header only).
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x54, 0xa6, 0xf2, 0x40, 0x00, 0x40, 0x01, 0x7f, 0xb4, 0x0a, 0x00, 0x00,
        0x01, 0x0a, 0x00, 0x00, 0x02,
    ];

    fn packet() -> Vec<u8> {
        let mut v = HEADER.to_vec();
        v.resize(0x54, 0xab);
        v
    }

    #[test]
    fn reads_a_captured_header() {
        let bytes = packet();
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.verify_checksum());
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.src, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(r.dst, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(r.protocol, IpProtocol::ICMP);
        assert_eq!(r.ttl, 64);
        assert!(r.dont_frag);
        assert_eq!(r.payload_len, 0x54 - 20);
        let mut out = [0u8; 0x54];
        r.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out[..20], HEADER);
    }

    #[test]
    fn ttl_decrement_keeps_the_checksum_valid() {
        let mut bytes = packet();
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        for expect in (0..64).rev() {
            assert_eq!(p.decrement_ttl(), Some(expect));
            assert!(p.verify_checksum());
        }
        assert_eq!(p.decrement_ttl(), None);
    }

    #[test]
    fn refuses_bad_headers() {
        let bytes = packet();
        let mut b = bytes.clone();
        b[0] = 0x65;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            malformed(Layer::Ipv4, "version")
        );
        let mut b = bytes.clone();
        b[0] = 0x44;
        assert!(Packet::new_checked(&b[..]).is_err());
        assert!(Packet::new_checked(&bytes[..0x53]).is_err());
        let mut b = bytes.clone();
        b[11] ^= 1;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            Repr::parse(&p).unwrap_err(),
            Error::BadChecksum { layer: Layer::Ipv4 }
        );
    }

    #[test]
    fn options_are_validated() {
        assert!(Options::new(&[1, 1, 1, 0]).is_ok());
        assert!(Options::new(&[0x94, 4, 0, 0]).is_ok()); // router alert
        assert!(Options::new(&[0x94, 5, 0, 0]).is_err());
        assert!(Options::new(&[1, 1, 1, 0x94]).is_err());
        assert!(Options::new(&[1, 1, 0x94, 1]).is_err());
        assert!(Options::new(&[1, 1, 1]).is_err());
    }
}
