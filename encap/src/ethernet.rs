//! Ethernet II frames, with an optional 802.1Q VLAN tag.
#![forbid(unsafe_code)]

use crate::buf::PacketBuf;
use crate::error::{Layer, Result, malformed, need, truncated, unsupported};
use crate::field::{Field, get_array, get_u16, packet_view, set_u16};
use std::fmt;

mod field {
    use crate::field::Field;
    pub(super) const DST: Field = 0..6;
    pub(super) const SRC: Field = 6..12;
    pub(super) const ETHERTYPE: usize = 12;
    pub(super) const TCI: usize = 14;
    pub(super) const INNER_ETHERTYPE: usize = 16;
}

/// The length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = 14;
/// The length of an Ethernet II header with one 802.1Q tag.
pub const TAGGED_HEADER_LEN: usize = 18;

/// A 48-bit Ethernet (MAC) address: podnet-links' type, one for the whole of podnet.
pub use podnet_links::MacAddr;

/// An EtherType (the protocol of an Ethernet frame's payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// ARP.
    pub const ARP: EtherType = EtherType(0x0806);
    /// An 802.1Q VLAN tag follows.
    pub const VLAN: EtherType = EtherType(0x8100);
    /// IPv6.
    pub const IPV6: EtherType = EtherType(0x86dd);
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04x}", self.0)
    }
}

/// An 802.1Q tag's control information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VlanTag {
    /// Priority code point (3 bits).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier (12 bits).
    pub vid: u16,
}

impl VlanTag {
    fn from_tci(tci: u16) -> VlanTag {
        VlanTag {
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0fff,
        }
    }

    fn tci(&self) -> u16 {
        (u16::from(self.pcp & 7) << 13) | (u16::from(self.dei) << 12) | (self.vid & 0x0fff)
    }
}

packet_view! {
    /// A read/write view of an Ethernet II frame.
    Frame;
    checked:
    /// Wraps a buffer after checking that it holds the whole header (with the tag, when the
    /// EtherType says one follows), so that no accessor can panic.
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Checks that the buffer holds the header. [`Frame::new_checked`] calls it.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        need(Layer::Ethernet, HEADER_LEN, b.len())?;
        if get_u16(b, field::ETHERTYPE) == EtherType::VLAN.0 && b.len() < TAGGED_HEADER_LEN {
            return Err(truncated(Layer::Ethernet, TAGGED_HEADER_LEN, b.len()));
        }
        Ok(())
    }

    /// The destination address.
    #[inline]
    pub fn dst(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::DST))
    }

    /// The source address.
    #[inline]
    pub fn src(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::SRC))
    }

    /// The 802.1Q tag, when there is one.
    #[inline]
    pub fn vlan(&self) -> Option<VlanTag> {
        let b = self.buffer.as_ref();
        (get_u16(b, field::ETHERTYPE) == EtherType::VLAN.0)
            .then(|| VlanTag::from_tci(get_u16(b, field::TCI)))
    }

    /// The EtherType of the payload (after the tag, when there is one).
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        let b = self.buffer.as_ref();
        let outer = get_u16(b, field::ETHERTYPE);
        if outer == EtherType::VLAN.0 {
            EtherType(get_u16(b, field::INNER_ETHERTYPE))
        } else {
            EtherType(outer)
        }
    }

    /// The header length: 14, or 18 with a tag.
    #[inline]
    pub fn header_len(&self) -> usize {
        if get_u16(self.buffer.as_ref(), field::ETHERTYPE) == EtherType::VLAN.0 {
            TAGGED_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// The payload's byte range in the buffer.
    #[inline]
    pub fn payload_range(&self) -> Field {
        self.header_len()..self.buffer.as_ref().len()
    }

    /// The payload (everything after the header, including any trailing padding).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination address.
    #[inline]
    pub fn set_dst(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Writes the EtherType field(s) and the tag: tagged frames need 18 bytes.
    #[inline]
    pub fn set_ethertype(&mut self, vlan: Option<VlanTag>, ethertype: EtherType) {
        let b = self.buffer.as_mut();
        match vlan {
            Some(tag) => {
                set_u16(b, field::ETHERTYPE, EtherType::VLAN.0);
                set_u16(b, field::TCI, tag.tci());
                set_u16(b, field::INNER_ETHERTYPE, ethertype.0);
            }
            None => set_u16(b, field::ETHERTYPE, ethertype.0),
        }
    }

    /// The payload, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        &mut self.buffer.as_mut()[h..]
    }
}

/// The fields of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Destination address.
    pub dst: MacAddr,
    /// Source address.
    pub src: MacAddr,
    /// The 802.1Q tag, if any.
    pub vlan: Option<VlanTag>,
    /// The payload's EtherType (never [`EtherType::VLAN`]: stacked tags are unsupported).
    pub ethertype: EtherType,
}

impl Repr {
    /// Reads the header of a checked frame.
    ///
    /// Refuses 802.3 length fields (EtherType below 0x0600) and stacked VLAN tags.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr> {
        frame.check_len()?;
        let ethertype = frame.ethertype();
        if ethertype.0 < 0x0600 {
            return Err(unsupported(Layer::Ethernet, "802.3 length field"));
        }
        let vlan = frame.vlan();
        if vlan.is_some() && ethertype == EtherType::VLAN {
            return Err(unsupported(Layer::Ethernet, "stacked VLAN tags"));
        }
        if let Some(tag) = vlan {
            if tag.vid == 0x0fff {
                return Err(malformed(Layer::Ethernet, "VLAN id"));
            }
        }
        Ok(Repr {
            dst: frame.dst(),
            src: frame.src(),
            vlan,
            ethertype,
        })
    }

    /// The header length this representation emits.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        if self.vlan.is_some() {
            TAGGED_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Writes the header into the first [`Repr::buffer_len`] bytes of the frame.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.set_dst(self.dst);
        frame.set_src(self.src);
        frame.set_ethertype(self.vlan, self.ethertype);
    }

    /// Prepends this header to the packet in `buf`.
    #[inline]
    pub fn prepend(&self, buf: &mut PacketBuf) {
        let n = self.buffer_len();
        self.emit(&mut Frame::new_unchecked(buf.prepend_unzeroed(n)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAGGED: [u8; 20] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x81, 0x00, 0xa0, 0x64, // tag: pcp 5, vid 100
        0x08, 0x06, // ARP
        0xaa, 0xbb,
    ];

    #[test]
    fn reads_a_tagged_frame() {
        let f = Frame::new_checked(&TAGGED[..]).unwrap();
        let r = Repr::parse(&f).unwrap();
        assert_eq!(r.dst, MacAddr::BROADCAST);
        assert_eq!(r.src.to_string(), "02:00:00:00:00:01");
        assert_eq!(
            r.vlan,
            Some(VlanTag {
                pcp: 5,
                dei: false,
                vid: 100
            })
        );
        assert_eq!(r.ethertype, EtherType::ARP);
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
        let mut out = [0u8; 18];
        r.emit(&mut Frame::new_unchecked(&mut out[..]));
        assert_eq!(out, TAGGED[..18]);
    }

    #[test]
    fn refuses_short_frames() {
        assert!(Frame::new_checked(&TAGGED[..13]).is_err());
        assert!(Frame::new_checked(&TAGGED[..17]).is_err());
        assert!(Frame::new_checked(&TAGGED[..18]).is_ok());
    }
}
