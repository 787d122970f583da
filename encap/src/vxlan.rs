//! VXLAN headers (RFC 7348), with the Group Based Policy extension.
//!
//! ```text
//!  0                   1                   2                   3
//! |G|R|R|R|I|R|R|R|R|D|R|R|A|R|R|R|       Group Policy ID         |
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! ```
//! Without G, the second to fourth bytes are reserved. Reserved bits are ignored on receipt
//! and sent as zero, as RFC 7348 asks.
#![forbid(unsafe_code)]

use crate::buf::PacketBuf;
use crate::error::{Layer, Result, malformed};
use crate::field::{get_u16, get_u32, packet_view, set_u16, set_u32};

/// The length of a VXLAN header.
pub const HEADER_LEN: usize = 8;
/// The IANA VXLAN port (4789) and the one Linux uses when none is given, as flannel's VXLAN
/// backend does (8472): podnet-links' constants.
pub use podnet_links::{PORT_IANA, PORT_LINUX};

const FLAG_I: u8 = 0x08;
const FLAG_G: u8 = 0x80;
const GBP_DONT_LEARN: u8 = 0x40;
const GBP_POLICY_APPLIED: u8 = 0x08;

/// A 24-bit VXLAN network identifier: podnet-links' type, one for the whole of podnet.
pub use podnet_links::Vni;

/// The Group Based Policy extension fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Gbp {
    /// The sender's group policy ID.
    pub policy_id: u16,
    /// The D bit: the receiver must not learn the inner source address.
    pub dont_learn: bool,
    /// The A bit: policy was already applied.
    pub policy_applied: bool,
}

packet_view! {
    /// A read/write view of a VXLAN header and the inner frame after it.
    Packet;
    header: Layer::Vxlan, HEADER_LEN;
    checked:
    /// Wraps a buffer after checking that it holds the 8-byte header.
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// The first flags byte.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// The I flag: the VNI is valid.
    #[inline]
    pub fn vni_valid(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// The G flag: the GBP extension is present.
    #[inline]
    pub fn has_gbp(&self) -> bool {
        self.flags() & FLAG_G != 0
    }

    /// The GBP fields (meaningful when [`Packet::has_gbp`]).
    #[inline]
    pub fn gbp(&self) -> Gbp {
        let b = self.buffer.as_ref();
        Gbp {
            policy_id: get_u16(b, 2),
            dont_learn: b[1] & GBP_DONT_LEARN != 0,
            policy_applied: b[1] & GBP_POLICY_APPLIED != 0,
        }
    }

    /// The VNI field.
    #[inline]
    pub fn vni(&self) -> Vni {
        Vni::from_low_bits(get_u32(self.buffer.as_ref(), 4) >> 8)
    }

    /// The inner frame.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes the flags (I, and G with the GBP fields when given), the VNI, and zeroes the
    /// reserved bits.
    #[inline]
    pub fn set_header(&mut self, vni: Vni, gbp: Option<Gbp>) {
        let b = self.buffer.as_mut();
        match gbp {
            Some(g) => {
                b[0] = FLAG_I | FLAG_G;
                b[1] = (if g.dont_learn { GBP_DONT_LEARN } else { 0 })
                    | (if g.policy_applied {
                        GBP_POLICY_APPLIED
                    } else {
                        0
                    });
                set_u16(b, 2, g.policy_id);
            }
            None => {
                b[0] = FLAG_I;
                b[1] = 0;
                set_u16(b, 2, 0);
            }
        }
        set_u32(b, 4, vni.get() << 8);
    }

    /// The inner frame, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// The fields of a VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The network identifier.
    pub vni: Vni,
    /// The GBP extension, when the G flag is set.
    pub gbp: Option<Gbp>,
}

impl Repr {
    /// Reads a checked header. The I flag must be set; reserved bits are ignored.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if !packet.vni_valid() {
            return Err(malformed(Layer::Vxlan, "flags (I bit clear)"));
        }
        Ok(Repr {
            vni: packet.vni(),
            gbp: packet.has_gbp().then(|| packet.gbp()),
        })
    }

    /// The header length (8).
    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first 8 bytes.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_header(self.vni, self.gbp);
    }

    /// Prepends this header to the inner frame in `buf`.
    #[inline]
    pub fn prepend(&self, buf: &mut PacketBuf) {
        self.emit(&mut Packet::new_unchecked(buf.prepend_unzeroed(HEADER_LEN)));
    }
}

/// Parses a VXLAN UDP payload (what a UDP socket receives): the header, and the inner
/// Ethernet frame, which must hold at least an Ethernet header.
pub fn parse_payload(payload: &[u8]) -> Result<(Repr, &[u8])> {
    let p = Packet::new_checked(payload)?;
    let repr = Repr::parse(&p)?;
    let inner = &payload[HEADER_LEN..];
    crate::ethernet::Frame::new_checked(inner)?;
    Ok((repr, inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_gbp_headers() {
        let plain = [0x08, 0, 0, 0, 0x00, 0x00, 0x2a, 0x00];
        let r = Repr::parse(&Packet::new_checked(&plain[..]).unwrap()).unwrap();
        assert_eq!(r.vni.get(), 42);
        assert_eq!(r.gbp, None);
        let gbp = [0x88, 0x48, 0x12, 0x34, 0xab, 0xcd, 0xef, 0x00];
        let r = Repr::parse(&Packet::new_checked(&gbp[..]).unwrap()).unwrap();
        assert_eq!(r.vni.get(), 0xabcdef);
        assert_eq!(
            r.gbp,
            Some(Gbp {
                policy_id: 0x1234,
                dont_learn: true,
                policy_applied: true
            })
        );
        let mut out = [0u8; 8];
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, gbp);
        assert!(Repr::parse(&Packet::new_checked(&[0u8; 8][..]).unwrap()).is_err());
        assert!(Packet::new_checked(&plain[..7]).is_err());
        assert_eq!(Vni::new(1 << 24), None);
    }
}
