//! ICMPv4 echo request/reply and destination unreachable messages.
#![forbid(unsafe_code)]

use crate::buf::PacketBuf;
use crate::checksum;
use crate::error::{Error, Layer, Result, unsupported};
use crate::field::{get_u16, packet_view, set_u16};

mod field {
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: usize = 2;
    pub(super) const ECHO_IDENT: usize = 4;
    pub(super) const ECHO_SEQ: usize = 6;
    pub(super) const NEXT_HOP_MTU: usize = 6;
}

/// The length of an ICMPv4 header (type, code, checksum and the 4-byte rest of header).
pub const HEADER_LEN: usize = 8;

/// An ICMPv4 message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageType(pub u8);

impl MessageType {
    /// Echo reply.
    pub const ECHO_REPLY: MessageType = MessageType(0);
    /// Destination unreachable.
    pub const DST_UNREACHABLE: MessageType = MessageType(3);
    /// Echo request.
    pub const ECHO_REQUEST: MessageType = MessageType(8);
}

/// Destination-unreachable codes (RFC 792, RFC 1812).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnreachableCode(pub u8);

impl UnreachableCode {
    /// Net unreachable.
    pub const NET: UnreachableCode = UnreachableCode(0);
    /// Host unreachable.
    pub const HOST: UnreachableCode = UnreachableCode(1);
    /// Protocol unreachable.
    pub const PROTOCOL: UnreachableCode = UnreachableCode(2);
    /// Port unreachable.
    pub const PORT: UnreachableCode = UnreachableCode(3);
    /// Fragmentation needed and DF set (carries the next-hop MTU).
    pub const FRAG_NEEDED: UnreachableCode = UnreachableCode(4);
    /// Communication administratively prohibited.
    pub const ADMIN_PROHIBITED: UnreachableCode = UnreachableCode(13);
}

packet_view! {
    /// A read/write view of an ICMPv4 message.
    Packet;
    header: Layer::Icmpv4, HEADER_LEN;
    checked:
    /// Wraps a buffer after checking that it holds the 8-byte header, so that no accessor can
    /// panic. The message is the whole buffer (pass exactly the IPv4 payload).
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// The message type.
    #[inline]
    pub fn msg_type(&self) -> MessageType {
        MessageType(self.buffer.as_ref()[field::TYPE])
    }

    /// The message code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The echo identifier (meaningful for echo messages).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// The echo sequence number (meaningful for echo messages).
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// The next-hop MTU (meaningful for "fragmentation needed").
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }

    /// `true` when the checksum over the whole message verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }

    /// The data after the 8-byte header (echo data, or the original datagram's start).
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the type and code.
    #[inline]
    pub fn set_type_code(&mut self, t: MessageType, code: u8) {
        let b = self.buffer.as_mut();
        b[field::TYPE] = t.0;
        b[field::CODE] = code;
    }

    /// Sets the 4-byte "rest of header" as two 16-bit words.
    #[inline]
    pub fn set_rest_of_header(&mut self, hi: u16, lo: u16) {
        let b = self.buffer.as_mut();
        set_u16(b, 4, hi);
        set_u16(b, 6, lo);
    }

    /// Computes and writes the checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, 0);
        let c = checksum::finish(checksum::data(self.buffer.as_ref()));
        set_u16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    /// The data after the header, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// A supported ICMPv4 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Repr<'a> {
    /// Echo request (ping).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq: u16,
        /// Data echoed back.
        data: &'a [u8],
    },
    /// Echo reply.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq: u16,
        /// Data echoed back.
        data: &'a [u8],
    },
    /// Destination unreachable.
    DstUnreachable {
        /// Why.
        code: UnreachableCode,
        /// The next-hop MTU for [`UnreachableCode::FRAG_NEEDED`], otherwise 0.
        next_hop_mtu: u16,
        /// The original datagram's IP header and first bytes.
        original: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// Reads a checked message, verifying its checksum. Other types are unsupported.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum {
                layer: Layer::Icmpv4,
            });
        }
        let data = &packet.buffer.as_ref()[HEADER_LEN..];
        match (packet.msg_type(), packet.code()) {
            (MessageType::ECHO_REQUEST, 0) => Ok(Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq: packet.echo_seq(),
                data,
            }),
            (MessageType::ECHO_REPLY, 0) => Ok(Repr::EchoReply {
                ident: packet.echo_ident(),
                seq: packet.echo_seq(),
                data,
            }),
            (MessageType::DST_UNREACHABLE, code) if code <= 15 => Ok(Repr::DstUnreachable {
                code: UnreachableCode(code),
                next_hop_mtu: packet.next_hop_mtu(),
                original: data,
            }),
            _ => Err(unsupported(Layer::Icmpv4, "message type")),
        }
    }

    /// The length this representation emits.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Repr::EchoRequest { data, .. } | Repr::EchoReply { data, .. } => data.len(),
                Repr::DstUnreachable { original, .. } => original.len(),
            }
    }

    /// Writes the message (header, data and checksum) into a buffer of exactly
    /// [`Repr::buffer_len`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let data = match *self {
            Repr::EchoRequest { ident, seq, data } => {
                packet.set_type_code(MessageType::ECHO_REQUEST, 0);
                packet.set_rest_of_header(ident, seq);
                data
            }
            Repr::EchoReply { ident, seq, data } => {
                packet.set_type_code(MessageType::ECHO_REPLY, 0);
                packet.set_rest_of_header(ident, seq);
                data
            }
            Repr::DstUnreachable {
                code,
                next_hop_mtu,
                original,
            } => {
                packet.set_type_code(MessageType::DST_UNREACHABLE, code.0);
                packet.set_rest_of_header(0, next_hop_mtu);
                original
            }
        };
        packet.data_mut()[..data.len()].copy_from_slice(data);
        packet.fill_checksum();
    }

    /// Appends this message to `buf` (usually empty, with headroom for IP and below).
    pub fn append_to(&self, buf: &mut PacketBuf) {
        let n = self.buffer_len();
        self.emit(&mut Packet::new_unchecked(buf.append(n)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Echo request, ident 0x1234, seq 1, data "abcd".
    const ECHO: [u8; 12] = [
        0x08, 0x00, 0x21, 0x04, 0x12, 0x34, 0x00, 0x01, b'a', b'b', b'c', b'd',
    ];

    #[test]
    fn parses_and_emits_echo() {
        let p = Packet::new_checked(&ECHO[..]).unwrap();
        assert!(p.verify_checksum(), "{:04x}", p.checksum());
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Repr::EchoRequest {
                ident: 0x1234,
                seq: 1,
                data: b"abcd"
            }
        );
        let mut out = [0u8; 12];
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, ECHO);
    }

    #[test]
    fn refuses_bad_checksum_and_other_types() {
        let mut b = ECHO;
        b[11] ^= 0xff;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(Repr::parse(&p).is_err());
        let mut b = [0u8; 8];
        b[0] = 11; // time exceeded
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.fill_checksum();
        let b2 = b;
        let p = Packet::new_checked(&b2[..]).unwrap();
        assert_eq!(
            Repr::parse(&p).unwrap_err(),
            unsupported(Layer::Icmpv4, "message type")
        );
    }
}
